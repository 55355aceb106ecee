//! rsync's option grammar (upstream: options.c long_options, parse_arguments)
//! and the one parsed `Options` used by every role.
//!
//! rsync's popt table is reproduced as data: long names, short letters,
//! `--no-NAME` negations, `-vvv` counting, `--opt=value` / `--opt value` /
//! `-Bvalue`. The same parser reads a user's command line and the argv a
//! client sends to a server or daemon.

use std::fmt;

/// An option the parser does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptError {
    /// Unknown option.
    #[error("{0}: unknown option")]
    Unknown(String),
    /// Missing or malformed argument.
    #[error("{0}: {1}")]
    BadArg(String, String),
}

/// One filter option, kept in command-line order (the order of the rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterArg {
    /// `--filter=RULE` / `-f`.
    Filter(String),
    /// `--exclude=PATTERN`.
    Exclude(String),
    /// `--include=PATTERN`.
    Include(String),
    /// `--exclude-from=FILE`.
    ExcludeFrom(String),
    /// `--include-from=FILE`.
    IncludeFrom(String),
    /// `-F`.
    DashF,
}

/// Parsed options. Field names follow upstream's globals.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// --server
    pub server: bool,
    /// --sender
    pub sender: bool,
    /// --daemon
    pub daemon: bool,
    /// -v count
    pub verbose: u8,
    /// -q
    pub quiet: bool,
    /// -n
    pub dry_run: bool,
    /// -l
    pub links: bool,
    /// -d
    pub dirs: bool,
    /// -r
    pub recursive: bool,
    /// -W / --no-W
    pub whole_file: Option<bool>,
    /// -H count
    pub hard_links: u8,
    /// -o
    pub owner: bool,
    /// -g
    pub group: bool,
    /// --devices
    pub devices: bool,
    /// --specials
    pub specials: bool,
    /// -t
    pub times: bool,
    /// -p
    pub perms: bool,
    /// -E
    pub executability: bool,
    /// -A
    pub acls: bool,
    /// -X count
    pub xattrs: u8,
    /// -U count
    pub atimes: u8,
    /// -N
    pub crtimes: bool,
    /// -c
    pub checksum: bool,
    /// -C
    pub cvs_exclude: bool,
    /// -I
    pub ignore_times: bool,
    /// -R
    pub relative: bool,
    /// --no-implied-dirs
    pub no_implied_dirs: bool,
    /// -x count
    pub one_file_system: u8,
    /// -S
    pub sparse: bool,
    /// -z
    pub compress: bool,
    /// --compress-level
    pub compress_level: Option<i32>,
    /// --compress-choice (or --new-compress = zlibx, --old-compress = zlib)
    pub compress_choice: Option<String>,
    /// --checksum-choice
    pub checksum_choice: Option<String>,
    /// --checksum-seed
    pub checksum_seed: Option<i32>,
    /// The `-e` capability string of a server invocation.
    pub caps: Option<String>,
    /// -e / --rsh (client).
    pub rsh: Option<String>,
    /// -B
    pub block_size: Option<u32>,
    /// --timeout
    pub timeout: Option<u32>,
    /// --contimeout
    pub contimeout: Option<u32>,
    /// --bwlimit
    pub bwlimit: Option<String>,
    /// -b
    pub backup: bool,
    /// --backup-dir
    pub backup_dir: Option<String>,
    /// --suffix
    pub suffix: Option<String>,
    /// -u
    pub update: bool,
    /// --existing
    pub existing: bool,
    /// --ignore-existing
    pub ignore_existing: bool,
    /// --delete (any form)
    pub delete: bool,
    /// --delete-before/during/delay/after
    pub delete_when: Option<&'static str>,
    /// --delete-excluded
    pub delete_excluded: bool,
    /// --force
    pub force: bool,
    /// --max-delete
    pub max_delete: Option<i32>,
    /// --min-size
    pub min_size: Option<String>,
    /// --max-size
    pub max_size: Option<String>,
    /// --size-only
    pub size_only: bool,
    /// --stats
    pub stats: bool,
    /// --numeric-ids
    pub numeric_ids: bool,
    /// --files-from
    pub files_from: Option<String>,
    /// --from0
    pub from0: bool,
    /// --list-only
    pub list_only: bool,
    /// -L
    pub copy_links: bool,
    /// -k
    pub copy_dirlinks: bool,
    /// --copy-unsafe-links
    pub copy_unsafe_links: bool,
    /// --safe-links
    pub safe_links: bool,
    /// -K
    pub keep_dirlinks: bool,
    /// -m
    pub prune_empty_dirs: bool,
    /// -O
    pub omit_dir_times: bool,
    /// -J
    pub omit_link_times: bool,
    /// -y count
    pub fuzzy: u8,
    /// --modify-window
    pub modify_window: Option<i32>,
    /// --partial
    pub partial: bool,
    /// --partial-dir
    pub partial_dir: Option<String>,
    /// --delay-updates
    pub delay_updates: bool,
    /// --ignore-errors
    pub ignore_errors: bool,
    /// --open-noatime: source files are opened with O_NOATIME.
    pub open_noatime: bool,
    /// --inplace
    pub inplace: bool,
    /// --append count (2 = verify)
    pub append: u8,
    /// -T / --temp-dir
    pub temp_dir: Option<String>,
    /// --compare-dest/--copy-dest/--link-dest, in order, with their kind.
    pub basis_dirs: Vec<(String, String)>,
    /// --remove-source-files
    pub remove_source_files: bool,
    /// -s
    pub protect_args: bool,
    /// --iconv
    pub iconv: Option<String>,
    /// --log-format / --out-format
    pub log_format: Option<String>,
    /// --msgs2stderr
    pub msgs2stderr: Option<bool>,
    /// --skip-compress
    pub skip_compress: Option<String>,
    /// --max-alloc
    pub max_alloc: Option<String>,
    /// --mkpath
    pub mkpath: bool,
    /// --super
    pub super_: bool,
    /// --fake-super
    pub fake_super: bool,
    /// --usermap
    pub usermap: Option<String>,
    /// --groupmap
    pub groupmap: Option<String>,
    /// --delete-missing-args
    pub delete_missing_args: bool,
    /// --ignore-missing-args
    pub ignore_missing_args: bool,
    /// --info words
    pub info: Vec<String>,
    /// --debug words
    pub debug: Vec<String>,
    /// Filter options in command-line order (`--filter`, `--exclude`,
    /// `--include`, `--exclude-from`, `--include-from`, `-F`).
    pub filter_args: Vec<FilterArg>,
    /// `--chmod` values, in order.
    pub chmod: Vec<String>,
    /// `--no-motd`.
    pub no_motd: bool,
    /// `--old-args`.
    pub old_args: bool,
    /// `-4` / `-6` (0: either).
    pub ipv: u8,
    /// --port
    pub port: Option<u16>,
    /// --sockopts
    pub sockopts: Option<String>,
    /// --address
    pub address: Option<String>,
    /// --config
    pub config: Option<String>,
    /// --no-detach
    pub no_detach: bool,
    /// --dparam
    pub dparams: Vec<String>,
    /// --log-file
    pub log_file: Option<String>,
    /// --log-file-format
    pub log_file_format: Option<String>,
    /// --password-file
    pub password_file: Option<String>,
    /// --rsync-path
    pub rsync_path: Option<String>,
    /// --protocol
    pub protocol: Option<u8>,
    /// -8
    pub eight_bit: bool,
    /// -h count
    pub human: u8,
    /// --progress
    pub progress: bool,
    /// -i count
    pub itemize: u8,
    /// Options given in their `--no-` form.
    pub negated: Vec<String>,
    /// Every option seen, by its long name (for `refuse options`).
    pub seen: Vec<String>,
    /// Other accepted options, by long name, that roles look up where they
    /// act (--fsync, --preallocate, ...).
    pub misc: Vec<String>,
}

impl Options {
    /// `--munge-links`: this side munges symlinks (a sender strips the
    /// prefix, a receiver adds it). Not forwarded: each side needs its own.
    pub fn munge_links(&self) -> bool {
        self.misc.iter().any(|m| m == "munge-links")
    }

    /// The `--debug` level of `word` (those we act on: "FLIST",
    /// "DELTASUM", "CMD", "CONNECT"): what the verbosity implies (upstream
    /// debug_verbosity: `-vv` sets level 1 of each, further `-v`s raise
    /// FLIST and DELTASUM up to 4, CONNECT to 2, CMD to 2 at `-vvvv`), then the `--debug`
    /// words in order (`WORDn`, `ALLn`, `NONE`; no digit means 1).
    pub fn debug_level(&self, word: &str) -> u8 {
        // The verbosities at which the word's level goes up one.
        let steps: &[u8] = match word {
            "FLIST" | "DELTASUM" => &[2, 3, 4, 5],
            "CMD" => &[2, 4],
            "CONNECT" => &[2, 3],
            _ => &[],
        };
        let level = steps.iter().filter(|&&v| self.verbose >= v).count() as u8;
        word_level(&self.debug, word, level)
    }

    /// `--qsort` (sent to a server as `--use-qsort`).
    pub fn use_qsort(&self) -> bool {
        self.misc.iter().any(|m| m == "use-qsort" || m == "qsort")
    }

    /// `-R` in effect: as given, else on with `--files-from` (upstream relative_paths < 0).
    pub fn relative_paths(&self) -> bool {
        if self.seen.iter().any(|s| s == "relative") {
            self.relative
        } else {
            self.relative || self.files_from.is_some()
        }
    }

    /// The level of an `--info` word (`name`, `del`...): `-v` sets level 1
    /// of the verbose words (2 for `name` with `-vv`), `--info` overrides.
    pub fn info_level(&self, word: &str) -> u8 {
        let level = match word {
            "name" | "misc" => self.verbose.min(2),
            "del" | "flist" | "stats" | "copy" | "symsafe" => u8::from(self.verbose >= 1),
            "nonreg" => 1,
            _ => u8::from(self.verbose >= 2),
        };
        word_level(&self.info, word, level)
    }
}

/// The level of `word` after `--info`/`--debug` arguments `args` (each a
/// comma list of `WORDn`, `ALLn`, `NONE`; no digit means 1; case does not
/// matter), starting from `level`.
fn word_level(args: &[String], word: &str, mut level: u8) -> u8 {
    for w in args.iter().flat_map(|a| a.split(',')) {
        let w = w.trim();
        let name = w.trim_end_matches(|c: char| c.is_ascii_digit());
        let n = w[name.len()..].parse::<u8>().unwrap_or(1);
        if name.eq_ignore_ascii_case(word) || name.eq_ignore_ascii_case("all") {
            level = n;
        } else if name.eq_ignore_ascii_case("none") {
            level = 0;
        }
    }
    level
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.seen)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Arg {
    None,
    Required,
    Optional,
}

/// (long name, short letter, takes an argument)
const TABLE: &[(&str, Option<char>, Arg)] = &[
    ("server", None, Arg::None),
    ("sender", None, Arg::None),
    ("daemon", None, Arg::None),
    ("verbose", Some('v'), Arg::None),
    ("quiet", Some('q'), Arg::None),
    ("dry-run", Some('n'), Arg::None),
    ("archive", Some('a'), Arg::None),
    ("links", Some('l'), Arg::None),
    ("dirs", Some('d'), Arg::None),
    ("recursive", Some('r'), Arg::None),
    ("r", None, Arg::None),
    ("whole-file", Some('W'), Arg::None),
    ("W", None, Arg::None),
    ("hard-links", Some('H'), Arg::None),
    ("owner", Some('o'), Arg::None),
    ("group", Some('g'), Arg::None),
    ("devices", None, Arg::None),
    ("specials", None, Arg::None),
    ("D", Some('D'), Arg::None),
    ("times", Some('t'), Arg::None),
    ("perms", Some('p'), Arg::None),
    ("executability", Some('E'), Arg::None),
    ("acls", Some('A'), Arg::None),
    ("xattrs", Some('X'), Arg::None),
    ("atimes", Some('U'), Arg::None),
    ("crtimes", Some('N'), Arg::None),
    ("checksum", Some('c'), Arg::None),
    ("cvs-exclude", Some('C'), Arg::None),
    ("ignore-times", Some('I'), Arg::None),
    ("relative", Some('R'), Arg::None),
    ("implied-dirs", None, Arg::None),
    ("one-file-system", Some('x'), Arg::None),
    ("sparse", Some('S'), Arg::None),
    ("compress", Some('z'), Arg::None),
    ("compress-level", None, Arg::Required),
    ("zl", None, Arg::Required),
    ("compress-choice", None, Arg::Required),
    ("zc", None, Arg::Required),
    ("new-compress", None, Arg::None),
    ("old-compress", None, Arg::None),
    ("checksum-choice", None, Arg::Required),
    ("cc", None, Arg::Required),
    ("checksum-seed", None, Arg::Required),
    ("rsh", Some('e'), Arg::Required),
    ("block-size", Some('B'), Arg::Required),
    ("timeout", None, Arg::Required),
    ("contimeout", None, Arg::Required),
    ("bwlimit", None, Arg::Required),
    ("backup", Some('b'), Arg::None),
    ("backup-dir", None, Arg::Required),
    ("suffix", None, Arg::Required),
    ("update", Some('u'), Arg::None),
    ("existing", None, Arg::None),
    ("ignore-non-existing", None, Arg::None),
    ("ignore-existing", None, Arg::None),
    ("delete", None, Arg::None),
    ("del", None, Arg::None),
    ("delete-before", None, Arg::None),
    ("delete-during", None, Arg::None),
    ("delete-delay", None, Arg::None),
    ("delete-after", None, Arg::None),
    ("delete-excluded", None, Arg::None),
    ("force", None, Arg::None),
    ("max-delete", None, Arg::Required),
    ("min-size", None, Arg::Required),
    ("max-size", None, Arg::Required),
    ("size-only", None, Arg::None),
    ("stats", None, Arg::None),
    ("numeric-ids", None, Arg::None),
    ("files-from", None, Arg::Required),
    ("from0", Some('0'), Arg::None),
    ("list-only", None, Arg::None),
    ("copy-links", Some('L'), Arg::None),
    ("copy-dirlinks", Some('k'), Arg::None),
    ("copy-unsafe-links", None, Arg::None),
    ("safe-links", None, Arg::None),
    ("munge-links", None, Arg::None),
    ("keep-dirlinks", Some('K'), Arg::None),
    ("prune-empty-dirs", Some('m'), Arg::None),
    ("omit-dir-times", Some('O'), Arg::None),
    ("omit-link-times", Some('J'), Arg::None),
    ("fuzzy", Some('y'), Arg::None),
    ("modify-window", Some('@'), Arg::Required),
    ("partial", None, Arg::None),
    ("partial-dir", None, Arg::Required),
    ("delay-updates", None, Arg::None),
    ("ignore-errors", None, Arg::None),
    ("open-noatime", None, Arg::None),
    ("inplace", None, Arg::None),
    ("append", None, Arg::None),
    ("append-verify", None, Arg::None),
    ("temp-dir", Some('T'), Arg::Required),
    ("compare-dest", None, Arg::Required),
    ("copy-dest", None, Arg::Required),
    ("link-dest", None, Arg::Required),
    ("remove-source-files", None, Arg::None),
    ("remove-sent-files", None, Arg::None),
    ("secluded-args", Some('s'), Arg::None),
    ("protect-args", None, Arg::None),
    ("iconv", None, Arg::Required),
    ("log-format", None, Arg::Required),
    ("out-format", None, Arg::Required),
    ("msgs2stderr", None, Arg::None),
    ("skip-compress", None, Arg::Required),
    ("max-alloc", None, Arg::Required),
    ("mkpath", None, Arg::None),
    ("super", None, Arg::None),
    ("fake-super", None, Arg::None),
    ("usermap", None, Arg::Required),
    ("groupmap", None, Arg::Required),
    ("chown", None, Arg::Required),
    ("delete-missing-args", None, Arg::None),
    ("ignore-missing-args", None, Arg::None),
    ("info", None, Arg::Required),
    ("debug", None, Arg::Required),
    ("filter", Some('f'), Arg::Required),
    ("exclude", None, Arg::Required),
    ("include", None, Arg::Required),
    ("exclude-from", None, Arg::Required),
    ("include-from", None, Arg::Required),
    ("F", Some('F'), Arg::None),
    ("port", None, Arg::Required),
    ("address", None, Arg::Required),
    ("config", None, Arg::Required),
    ("detach", None, Arg::None),
    ("dparam", Some('M'), Arg::Required),
    ("log-file", None, Arg::Required),
    ("log-file-format", None, Arg::Required),
    ("password-file", None, Arg::Required),
    ("rsync-path", None, Arg::Required),
    ("protocol", None, Arg::Required),
    ("8-bit-output", Some('8'), Arg::None),
    ("human-readable", Some('h'), Arg::Optional),
    ("progress", None, Arg::None),
    ("P", Some('P'), Arg::None),
    ("itemize-changes", Some('i'), Arg::None),
    ("fsync", None, Arg::None),
    ("preallocate", None, Arg::None),
    ("open-noatime", None, Arg::None),
    ("use-qsort", None, Arg::None),
    ("qsort", None, Arg::None),
    ("write-devices", None, Arg::None),
    ("copy-devices", None, Arg::None),
    ("copy-as", None, Arg::Required),
    ("inc-recursive", None, Arg::None),
    ("i-r", None, Arg::None),
    ("old-args", None, Arg::None),
    ("ipv4", Some('4'), Arg::None),
    ("ipv6", Some('6'), Arg::None),
    ("no-motd", None, Arg::None),
    ("motd", None, Arg::None),
    ("blocking-io", None, Arg::None),
    ("outbuf", None, Arg::Required),
    ("sockopts", None, Arg::Required),
    ("stop-after", None, Arg::Required),
    ("stop-at", None, Arg::Required),
    ("time-limit", None, Arg::Required),
    ("early-input", None, Arg::Required),
    ("remote-option", None, Arg::Required),
    ("chmod", None, Arg::Required),
    ("no-detach", None, Arg::None),
    ("help", None, Arg::None),
    ("version", Some('V'), Arg::None),
    ("trust-sender", None, Arg::None),
    ("write-batch", None, Arg::Required),
    ("only-write-batch", None, Arg::Required),
    ("read-batch", None, Arg::Required),
];

/// The short letter of a long option, if it has one.
pub fn short_of(long: &str) -> Option<char> {
    TABLE
        .iter()
        .find(|(l, _, _)| *l == long)
        .and_then(|(_, s, _)| *s)
}

fn lookup_long(name: &str) -> Option<(&'static str, Arg)> {
    TABLE
        .iter()
        .find(|(l, _, _)| *l == name)
        .map(|(l, _, a)| (*l, *a))
}

fn lookup_short(c: char) -> Option<(&'static str, Arg)> {
    TABLE
        .iter()
        .find(|(_, s, _)| *s == Some(c))
        .map(|(l, _, a)| (*l, *a))
}

fn parse_num<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T, OptError> {
    v.trim()
        .parse()
        .map_err(|_| OptError::BadArg(format!("--{opt}"), format!("invalid numeric value \"{v}\"")))
}

/// The other name of a switch with two long names.
fn alias_of(name: &str) -> Option<&'static str> {
    match name {
        "inc-recursive" => Some("i-r"),
        "i-r" => Some("inc-recursive"),
        // Stock's switch is --qsort; its server argv says --use-qsort.
        "qsort" => Some("use-qsort"),
        "use-qsort" => Some("qsort"),
        _ => None,
    }
}

impl Options {
    fn set(&mut self, name: &'static str, on: bool, val: Option<String>) -> Result<(), OptError> {
        let v = || val.clone().unwrap_or_default();
        self.seen.push(name.to_string());
        if !on {
            self.negated.push(name.to_string());
        }
        match name {
            "server" => self.server = on,
            "sender" => self.sender = on,
            "daemon" => self.daemon = on,
            "verbose" => {
                self.verbose = if on {
                    self.verbose.saturating_add(1)
                } else {
                    0
                }
            }
            "quiet" => self.quiet = on,
            "dry-run" => self.dry_run = on,
            "archive" => {
                if on {
                    self.recursive = true;
                    self.links = true;
                    self.perms = true;
                    self.times = true;
                    self.group = true;
                    self.owner = true;
                    self.devices = true;
                    self.specials = true;
                }
            }
            "links" => self.links = on,
            "dirs" => self.dirs = on,
            "recursive" | "r" => self.recursive = on,
            "whole-file" | "W" => self.whole_file = Some(on),
            "hard-links" => {
                self.hard_links = if on {
                    self.hard_links.saturating_add(1)
                } else {
                    0
                }
            }
            "owner" => self.owner = on,
            "group" => self.group = on,
            "devices" => self.devices = on,
            "specials" => self.specials = on,
            "D" => {
                self.devices = on;
                self.specials = on;
            }
            "times" => self.times = on,
            "perms" => self.perms = on,
            "executability" => self.executability = on,
            "acls" => self.acls = on,
            "xattrs" => self.xattrs = if on { self.xattrs.saturating_add(1) } else { 0 },
            "atimes" => self.atimes = if on { self.atimes.saturating_add(1) } else { 0 },
            "crtimes" => self.crtimes = on,
            "checksum" => self.checksum = on,
            "cvs-exclude" => self.cvs_exclude = on,
            "ignore-times" => self.ignore_times = on,
            "relative" => self.relative = on,
            "implied-dirs" => self.no_implied_dirs = !on,
            "one-file-system" => {
                self.one_file_system = if on {
                    self.one_file_system.saturating_add(1)
                } else {
                    0
                }
            }
            "sparse" => self.sparse = on,
            "compress" => self.compress = on,
            "compress-level" | "zl" => self.compress_level = Some(parse_num(name, &v())?),
            "compress-choice" | "zc" => {
                self.compress_choice = Some(v());
                self.compress = true;
            }
            "new-compress" => {
                self.compress_choice = Some("zlibx".into());
                self.compress = true;
            }
            "old-compress" => {
                self.compress_choice = Some("zlib".into());
                self.compress = true;
            }
            "checksum-choice" | "cc" => self.checksum_choice = Some(v()),
            "checksum-seed" => self.checksum_seed = Some(parse_num(name, &v())?),
            "rsh" => {
                if self.server {
                    self.caps = Some(v());
                } else {
                    self.rsh = Some(v());
                }
            }
            "block-size" => self.block_size = Some(parse_num(name, &v())?),
            "timeout" => self.timeout = Some(parse_num(name, &v())?),
            "contimeout" => self.contimeout = Some(parse_num(name, &v())?),
            "bwlimit" => self.bwlimit = Some(v()),
            "backup" => self.backup = on,
            "backup-dir" => self.backup_dir = Some(v()),
            "suffix" => self.suffix = Some(v()),
            "update" => self.update = on,
            "existing" | "ignore-non-existing" => self.existing = on,
            "ignore-existing" => self.ignore_existing = on,
            "delete" | "del" => self.delete = on,
            "delete-before" | "delete-during" | "delete-delay" | "delete-after" => {
                self.delete = on;
                self.delete_when = Some(name);
            }
            "delete-excluded" => {
                self.delete_excluded = on;
                self.delete = self.delete || on;
            }
            "force" => self.force = on,
            "max-delete" => self.max_delete = Some(parse_num(name, &v())?),
            "min-size" => self.min_size = Some(v()),
            "max-size" => self.max_size = Some(v()),
            "size-only" => self.size_only = on,
            "stats" => self.stats = on,
            "numeric-ids" => self.numeric_ids = on,
            "files-from" => self.files_from = Some(v()),
            "from0" => self.from0 = on,
            "list-only" => self.list_only = on,
            "copy-links" => self.copy_links = on,
            "copy-dirlinks" => self.copy_dirlinks = on,
            "copy-unsafe-links" => self.copy_unsafe_links = on,
            "safe-links" => self.safe_links = on,
            "keep-dirlinks" => self.keep_dirlinks = on,
            "prune-empty-dirs" => self.prune_empty_dirs = on,
            "omit-dir-times" => self.omit_dir_times = on,
            "omit-link-times" => self.omit_link_times = on,
            "fuzzy" => self.fuzzy = if on { self.fuzzy.saturating_add(1) } else { 0 },
            "modify-window" => self.modify_window = Some(parse_num(name, &v())?),
            "partial" => self.partial = on,
            "partial-dir" => {
                self.partial_dir = Some(v());
                self.partial = true;
            }
            "delay-updates" => self.delay_updates = on,
            "ignore-errors" => self.ignore_errors = on,
            "open-noatime" => self.open_noatime = on,
            "inplace" => self.inplace = on,
            "append" => self.append = if on { self.append.saturating_add(1) } else { 0 },
            "append-verify" => self.append = if on { 2 } else { 0 },
            "temp-dir" => self.temp_dir = Some(v()),
            "compare-dest" | "copy-dest" | "link-dest" => {
                self.basis_dirs.push((name.to_string(), v()))
            }
            "remove-source-files" | "remove-sent-files" => self.remove_source_files = on,
            "secluded-args" | "protect-args" => self.protect_args = on,
            "iconv" => self.iconv = Some(v()),
            "log-format" | "out-format" => self.log_format = Some(v()),
            "msgs2stderr" => self.msgs2stderr = Some(on),
            "skip-compress" => self.skip_compress = Some(v()),
            "max-alloc" => self.max_alloc = Some(v()),
            "mkpath" => self.mkpath = on,
            "super" => self.super_ = on,
            "fake-super" => self.fake_super = on,
            "usermap" => self.usermap = Some(v()),
            "groupmap" => self.groupmap = Some(v()),
            "delete-missing-args" => self.delete_missing_args = on,
            "ignore-missing-args" => self.ignore_missing_args = on,
            "info" => self.info.push(v()),
            "debug" => self.debug.push(v()),
            "filter" => self.filter_args.push(FilterArg::Filter(v())),
            "exclude" => self.filter_args.push(FilterArg::Exclude(v())),
            "include" => self.filter_args.push(FilterArg::Include(v())),
            "exclude-from" => self.filter_args.push(FilterArg::ExcludeFrom(v())),
            "include-from" => self.filter_args.push(FilterArg::IncludeFrom(v())),
            "F" => self.filter_args.push(FilterArg::DashF),
            "chmod" => self.chmod.push(v()),
            "motd" => self.no_motd = !on,
            "no-motd" => self.no_motd = true,
            "old-args" => self.old_args = on,
            "ipv4" => self.ipv = if on { 4 } else { 0 },
            "ipv6" => self.ipv = if on { 6 } else { 0 },
            "port" => self.port = Some(parse_num(name, &v())?),
            "sockopts" => self.sockopts = Some(v()),
            "address" => self.address = Some(v()),
            "config" => self.config = Some(v()),
            "detach" => self.no_detach = !on,
            "no-detach" => self.no_detach = true,
            // -M is --dparam for a daemon and --remote-option for a client:
            // one list, read by whichever runs.
            "dparam" | "remote-option" => self.dparams.push(v()),
            "log-file" => self.log_file = Some(v()),
            "log-file-format" => self.log_file_format = Some(v()),
            "password-file" => self.password_file = Some(v()),
            "rsync-path" => self.rsync_path = Some(v()),
            "protocol" => self.protocol = Some(parse_num(name, &v())?),
            "8-bit-output" => self.eight_bit = on,
            "human-readable" => self.human = if on { self.human.saturating_add(1) } else { 0 },
            "progress" => self.progress = on,
            "P" => {
                self.progress = on;
                self.partial = on;
            }
            "itemize-changes" => {
                self.itemize = if on {
                    self.itemize.saturating_add(1)
                } else {
                    0
                }
            }
            // Switches kept by name: the last of `--X`/`--no-X` wins (an
            // alias pair such as inc-recursive/i-r counts as one switch).
            _ => {
                let same = |m: &String| m == name || alias_of(name) == Some(m.as_str());
                self.misc.retain(|m| !same(m));
                if on {
                    self.misc.push(name.to_string());
                }
            }
        }
        Ok(())
    }
}

/// Parse an argument vector (without argv[0]). Returns the options and the
/// non-option arguments. `--` ends option parsing.
pub fn parse(args: &[String]) -> Result<(Options, Vec<String>), OptError> {
    let mut o = Options::default();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            rest.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let (canon, kind, on) = match lookup_long(name) {
                Some((c, k)) => (c, k, true),
                None => match name.strip_prefix("no-").and_then(|n| {
                    // `--no-X` also names an option by its short letter (`--no-R`).
                    let mut cs = n.chars();
                    match (cs.next(), cs.next()) {
                        (Some(c), None) => lookup_short(c),
                        _ => lookup_long(n),
                    }
                }) {
                    Some((c, k)) if k == Arg::None || k == Arg::Optional => (c, Arg::None, false),
                    // popt shows the argument as given, `=value` and all.
                    _ => return Err(OptError::Unknown(a.clone())),
                },
            };
            let val = match kind {
                Arg::None => {
                    if inline.is_some() {
                        return Err(OptError::BadArg(
                            format!("--{name}"),
                            "option does not take an argument".into(),
                        ));
                    }
                    None
                }
                Arg::Optional => inline,
                Arg::Required => match inline {
                    Some(v) => Some(v),
                    None => {
                        let Some(v) = args.get(i) else {
                            return Err(OptError::BadArg(
                                format!("--{name}"),
                                "missing argument".into(),
                            ));
                        };
                        i += 1;
                        Some(v.clone())
                    }
                },
            };
            o.set(canon, on, val)?;
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let Some((canon, kind)) = lookup_short(c) else {
                    return Err(OptError::Unknown(format!("-{c}")));
                };
                if kind == Arg::Required {
                    let attached: String = chars[j..].iter().collect();
                    let v = if !attached.is_empty() {
                        attached
                    } else if let Some(v) = args.get(i) {
                        i += 1;
                        v.clone()
                    } else {
                        return Err(OptError::BadArg(format!("-{c}"), "missing argument".into()));
                    };
                    o.set(canon, true, Some(v))?;
                    break;
                }
                o.set(canon, true, None)?;
            }
        } else {
            rest.push(a.clone());
        }
    }
    // upstream parse_arguments: "--backup-dir implies --backup".
    if o.backup_dir.is_some() {
        o.backup = true;
    }
    Ok((o, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &[&str]) -> (Options, Vec<String>) {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn backup_dir_implies_backup() {
        assert!(p(&["--backup-dir=bk"]).0.backup);
        assert!(!p(&["--suffix=.x"]).0.backup);
    }

    #[test]
    fn debug_levels_follow_verbosity_then_the_debug_words() {
        let mut o = Options::default();
        assert_eq!(o.debug_level("FLIST"), 0);
        o.verbose = 2;
        assert_eq!((o.debug_level("FLIST"), o.debug_level("DELTASUM")), (1, 1));
        o.verbose = 9;
        assert_eq!(o.debug_level("DELTASUM"), 4);
        assert_eq!(o.debug_level("HLINK"), 0);
        assert_eq!(o.debug_level("CMD"), 2);
        o.debug = vec!["none,flist2".into(), "deltasum".into()];
        assert_eq!((o.debug_level("FLIST"), o.debug_level("DELTASUM")), (2, 1));
        o.debug = vec!["ALL3".into()];
        assert_eq!(o.debug_level("HLINK"), 3);
    }

    #[test]
    fn the_last_of_a_switch_and_its_negation_wins() {
        let on = |o: &Options, n: &str| o.misc.iter().any(|m| m == n);
        let (o, _) = p(&["--no-inc-recursive", "a", "b"]);
        assert!(!on(&o, "inc-recursive") && !on(&o, "i-r"));
        let (o, _) = p(&["--i-r", "--no-inc-recursive", "a", "b"]);
        assert!(!on(&o, "inc-recursive") && !on(&o, "i-r"));
        let (o, _) = p(&["--no-i-r", "--inc-recursive", "a", "b"]);
        assert!(on(&o, "inc-recursive"));
        let (o, _) = p(&["--use-qsort", "--no-use-qsort", "a", "b"]);
        assert!(!on(&o, "use-qsort"));
    }

    #[test]
    fn stock_server_argv() {
        let (o, rest) = p(&[
            "--server",
            "--sender",
            "-vlogDtpre.iLsfxCIvu",
            "--checksum-seed=12345",
            ".",
            "mod/sub/",
        ]);
        assert!(
            o.server
                && o.sender
                && o.links
                && o.owner
                && o.group
                && o.devices
                && o.specials
                && o.times
                && o.perms
                && o.recursive
        );
        assert_eq!(o.verbose, 1);
        assert_eq!(o.caps.as_deref(), Some(".iLsfxCIvu"));
        assert_eq!(o.checksum_seed, Some(12345));
        assert_eq!(rest, [".", "mod/sub/"]);
        let (o, _) = p(&[
            "--server",
            "-vvnB300",
            "--no-W",
            "--compress-level=3",
            "--no-r",
        ]);
        assert_eq!(o.verbose, 2);
        assert!(o.dry_run);
        assert_eq!(o.block_size, Some(300));
        assert_eq!(o.whole_file, Some(false));
        assert!(!o.recursive);
    }

    #[test]
    fn unknown_options_are_errors() {
        assert!(parse(&["--bogus".to_string()]).is_err());
        assert!(parse(&["-Q".to_string()]).is_err());
        assert!(parse(&["--timeout".to_string()]).is_err());
        assert!(parse(&["--timeout=x".to_string()]).is_err());
    }
}
