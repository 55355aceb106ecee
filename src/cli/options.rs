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
    /// A value the option refuses, said as upstream says it
    /// (`--max-size=1x is invalid`); shown after "rsync: ".
    #[error("{0}")]
    Refused(String),
    /// A refusal upstream prints without the "rsync: " prefix
    /// (`Unknown --info item: "x"`).
    #[error("{0}")]
    Plain(String),
}

impl OptError {
    /// The line printed on stderr (before the "rsync error:" line).
    pub fn line(&self) -> String {
        match self {
            OptError::Plain(m) => m.clone(),
            e => format!("rsync: {e}"),
        }
    }
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
    /// Not an option: this run is one half of a local copy (upstream
    /// local_server), where `-X` works below protocol 30.
    pub local_server: bool,
    /// Not an option: a daemon module's `max verbosity`, which caps the
    /// `--info`/`--debug` levels too (upstream limit_output_verbosity).
    pub output_cap: Option<u8>,
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
    /// --contimeout (negative values are kept: only 0 means none)
    pub contimeout: Option<i32>,
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
    /// Which --delete-WHEN options are on (upstream's delete_before,
    /// delete_during, delete_after): bits [`DEL_BEFORE`], [`DEL_DURING`],
    /// [`DEL_AFTER`]; more than one is an error.
    pub delete_whens: u8,
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
    /// --early-input=FILE: bytes for a daemon's `early exec`.
    pub early_input: Option<String>,
    /// --stop-after / --time-limit / --stop-at: when a client stops (Unix time).
    pub stop_at: Option<i64>,
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
    /// --usermap came from --chown (for upstream's conflict messages).
    pub usermap_via_chown: bool,
    /// --groupmap came from --chown.
    pub groupmap_via_chown: bool,
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
    /// --protocol (a value outside 0..=255 is kept as 0: refused later)
    pub protocol: Option<u8>,
    /// --outbuf
    pub outbuf: Option<String>,
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
            "FUZZY" => &[3, 5],
            "CMD" => &[2, 4],
            "CONNECT" => &[2, 3],
            "DEL" => &[2, 3, 4],
            "FILTER" => &[2, 3],
            _ => &[],
        };
        let at = |verbose: u8| steps.iter().filter(|&&v| verbose >= v).count() as u8;
        let level = word_level(&self.debug, word, at(self.verbose));
        match self.output_cap {
            Some(cap) => level.min(at(cap)),
            None => level,
        }
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
        let at = |verbose: u8| match word {
            "name" | "misc" => verbose.min(2),
            "del" | "flist" | "stats" | "copy" | "symsafe" => u8::from(verbose >= 1),
            "nonreg" => 1,
            _ => u8::from(verbose >= 2),
        };
        let level = word_level(&self.info, word, at(self.verbose));
        match self.output_cap {
            Some(cap) => level.min(at(cap)),
            None => level,
        }
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
    ("stop-after", None, Arg::Required),
    ("time-limit", None, Arg::Required),
    ("stop-at", None, Arg::Required),
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

/// Set the `--usermap`/`--groupmap` slot (`kind` "user" or "group"),
/// given or from `--chown`; a second one is refused in upstream's words,
/// which say where each came from.
fn set_map(
    slot: &mut Option<String>,
    slot_via_chown: &mut bool,
    map: String,
    via_chown: bool,
    kind: &str,
) -> Result<(), OptError> {
    if slot.is_some() {
        return Err(OptError::Refused(match (via_chown, *slot_via_chown) {
            (false, false) => format!("You can only specify --{kind}map once."),
            (false, true) => format!("--{kind}map conflicts with prior --chown."),
            (true, true) => format!("You can only specify a {kind}-affecting --chown once."),
            (true, false) => format!("--chown conflicts with prior --{kind}map."),
        }));
    }
    *slot = Some(map);
    *slot_via_chown = via_chown;
    Ok(())
}

/// A POPT_ARG_INT value as popt reads it (strtoll, base 0: `0x1f`, `017`,
/// leading blanks and a sign allowed, the empty string is 0), refused as
/// popt refuses it; `shown` is the command-line word popt names in the
/// error (`--timeout=x`, or `x` when the value was a separate word).
fn popt_int(shown: &str, v: &str) -> Result<i32, OptError> {
    let bad = |why: &str| OptError::BadArg(shown.to_string(), why.to_string());
    let t = v.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let hex = t.len() > 2
        && (t.starts_with("0x") || t.starts_with("0X"))
        && t.as_bytes()[2].is_ascii_hexdigit();
    let (radix, digits) = if hex {
        (16, &t[2..])
    } else if t.starts_with('0') {
        (8, t)
    } else {
        (10, t)
    };
    if digits.is_empty() {
        // No number at all: fine only when nothing (but blanks) was there.
        return if v.is_empty() {
            Ok(0)
        } else {
            Err(bad("invalid numeric value"))
        };
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad("invalid numeric value"));
    }
    // Too many digits for any i64 is out of range as well (strtoll clamps).
    let n = i128::from_str_radix(digits, radix).unwrap_or(i128::MAX);
    let n = if neg { -n } else { n };
    i32::try_from(n).map_err(|_| bad("number too large or too small"))
}

/// A size option's value (upstream parse_size_arg), refused with its message.
fn size_arg(opt: &str, v: &str, rule: &super::size_arg::SizeRule) -> Result<i64, OptError> {
    super::size_arg::parse(opt, v, rule).map_err(|e| OptError::Refused(e.0))
}

/// The most `--link-dest` (or `--copy-dest`, `--compare-dest`) dirs (upstream MAX_BASIS_DIRS).
pub const MAX_BASIS_DIRS: usize = 20;

/// `whens` with `bit` set (`on`) or cleared.
fn when_bit(whens: u8, bit: u8, on: bool) -> u8 {
    if on {
        whens | bit
    } else {
        whens & !bit
    }
}

/// `--delete-before` in [`Options::delete_whens`].
pub const DEL_BEFORE: u8 = 1;
/// `--delete-during`, `--delete-delay` or `--del`.
pub const DEL_DURING: u8 = 2;
/// `--delete-after`.
pub const DEL_AFTER: u8 = 4;

/// The `--info` words (upstream info_words).
const INFO_WORDS: &[&str] = &[
    "BACKUP", "COPY", "DEL", "FLIST", "MISC", "MOUNT", "NAME", "NONREG", "PROGRESS", "REMOVE",
    "SKIP", "STATS", "SYMSAFE",
];

/// The `--debug` words (upstream debug_words).
const DEBUG_WORDS: &[&str] = &[
    "ACL", "BACKUP", "BIND", "CHDIR", "CONNECT", "CMD", "DEL", "DELTASUM", "DUP", "EXIT", "FILTER",
    "FLIST", "FUZZY", "GENR", "HASH", "HLINK", "ICONV", "IO", "NSTR", "OWN", "PROTO", "RECV",
    "SEND", "TIME",
];

/// Upstream parse_output_words' check of one `--info`/`--debug` value: each
/// comma-separated item is a word (any case) with an optional level, or
/// ALL/NONE/HELP.
fn check_output_words(opt: &str, words: &[&str], arg: &str) -> Result<(), OptError> {
    for item in arg.split(',').filter(|i| !i.is_empty()) {
        let name = if item.starts_with(|c: char| c.is_ascii_digit()) {
            item
        } else {
            item.trim_end_matches(|c: char| c.is_ascii_digit())
        };
        let known = ["HELP", "NONE", "ALL"]
            .iter()
            .chain(words)
            .any(|w| w.eq_ignore_ascii_case(name));
        if !known {
            return Err(OptError::Plain(format!("Unknown {opt} item: \"{name}\"")));
        }
    }
    Ok(())
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
    /// Apply one option; `shown` is the last command-line word it took
    /// (what popt names in an error).
    fn set(
        &mut self,
        name: &'static str,
        on: bool,
        val: Option<String>,
        shown: &str,
    ) -> Result<(), OptError> {
        let v = || val.clone().unwrap_or_default();
        let int = || popt_int(shown, &v());
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
            "compress-level" | "zl" => self.compress_level = Some(int()?),
            "compress-choice" | "zc" => {
                // "auto" is no choice (upstream sets it back to none).
                let c = v();
                if c.eq_ignore_ascii_case("auto") {
                    self.compress_choice = None;
                } else {
                    self.compress_choice = Some(c);
                    self.compress = true;
                }
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
            "checksum-seed" => self.checksum_seed = Some(int()?),
            "rsh" => {
                if self.server {
                    self.caps = Some(v());
                } else {
                    self.rsh = Some(v());
                }
            }
            "block-size" => {
                // The largest block depends on the protocol as given so far
                // (a server's is not known yet: its client checked, and the
                // old protocols' larger bound holds).
                let proto = match self.protocol {
                    _ if self.server => 29,
                    Some(p) => i32::from(p),
                    None => i32::from(crate::protocol::PROTOCOL_VERSION),
                };
                let rule = super::size_arg::block_size_rule(proto);
                let n = size_arg(name, &v(), &rule)?;
                self.block_size = u32::try_from(n).ok().filter(|n| *n > 0);
            }
            // (A negative timeout is accepted, and means none here.)
            "timeout" => self.timeout = Some(u32::try_from(int()?).unwrap_or(0)),
            "contimeout" => self.contimeout = Some(int()?),
            // Kept in KiB, as a client tells its server (a daemon's own
            // --bwlimit is read where it is used).
            "bwlimit" if self.daemon && !self.server => self.bwlimit = Some(v()),
            "bwlimit" => {
                let n = size_arg(name, &v(), &super::size_arg::BWLIMIT)?;
                self.bwlimit = Some(((n + 512) / 1024).to_string());
            }
            "backup" => self.backup = on,
            "backup-dir" => self.backup_dir = Some(v()),
            "suffix" => self.suffix = Some(v()),
            "update" => self.update = on,
            "existing" | "ignore-non-existing" => self.existing = on,
            "ignore-existing" => self.ignore_existing = on,
            "delete" => self.delete = on,
            "del" => {
                self.delete = on;
                self.delete_whens = when_bit(self.delete_whens, DEL_DURING, on);
            }
            "delete-before" | "delete-during" | "delete-delay" | "delete-after" => {
                self.delete = on;
                self.delete_when = Some(name);
                let bit = match name {
                    "delete-before" => DEL_BEFORE,
                    "delete-after" => DEL_AFTER,
                    _ => DEL_DURING,
                };
                self.delete_whens = when_bit(self.delete_whens, bit, on);
            }
            "delete-excluded" => {
                self.delete_excluded = on;
                self.delete = self.delete || on;
            }
            "force" => self.force = on,
            "max-delete" => self.max_delete = Some(int()?),
            // Kept as the number of bytes, as a client tells its server.
            "min-size" | "max-size" => {
                let n = size_arg(name, &v(), &super::size_arg::FILE_SIZE)?.to_string();
                if name == "min-size" {
                    self.min_size = Some(n);
                } else {
                    self.max_size = Some(n);
                }
            }
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
            "modify-window" => self.modify_window = Some(int()?),
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
                if let Some((kind, _)) = self.basis_dirs.first() {
                    if kind != name {
                        return Err(OptError::Refused(format!(
                            "ERROR: the --{name} option conflicts with the --{kind} option"
                        )));
                    }
                }
                if self.basis_dirs.len() >= MAX_BASIS_DIRS {
                    return Err(OptError::Refused(format!(
                        "ERROR: at most {MAX_BASIS_DIRS} --{name} args may be specified"
                    )));
                }
                self.basis_dirs.push((name.to_string(), v()))
            }
            "remove-source-files" | "remove-sent-files" => self.remove_source_files = on,
            "secluded-args" | "protect-args" => self.protect_args = on,
            "iconv" => self.iconv = Some(v()),
            "log-format" | "out-format" => self.log_format = Some(v()),
            "msgs2stderr" => self.msgs2stderr = Some(on),
            "skip-compress" => self.skip_compress = Some(v()),
            "max-alloc" => {
                size_arg(name, &v(), &super::size_arg::MAX_ALLOC)?;
                self.max_alloc = Some(v());
            }
            "stop-after" | "time-limit" => {
                let now = now_secs();
                self.stop_at = Some(super::stop_at::stop_after(&v(), now).ok_or_else(|| {
                    OptError::Refused(format!("invalid --stop-after value: {}", v()))
                })?);
            }
            "stop-at" => {
                let now = now_secs();
                let t = super::stop_at::stop_at(&v(), now).ok_or_else(|| {
                    OptError::Refused(format!("invalid --stop-at format: {}", v()))
                })?;
                if t <= now {
                    return Err(OptError::Refused(format!(
                        "--stop-at time is not in the future: {}",
                        v()
                    )));
                }
                self.stop_at = Some(t);
            }
            "mkpath" => self.mkpath = on,
            "super" => self.super_ = on,
            "fake-super" => self.fake_super = on,
            "early-input" => self.early_input = Some(v()),
            // upstream parse_arguments: one map each, --chown's or given;
            // a map implies -o / -g.
            "usermap" => {
                set_map(
                    &mut self.usermap,
                    &mut self.usermap_via_chown,
                    v(),
                    false,
                    "user",
                )?;
                self.owner = true;
            }
            "groupmap" => {
                set_map(
                    &mut self.groupmap,
                    &mut self.groupmap_via_chown,
                    v(),
                    false,
                    "group",
                )?;
                self.group = true;
            }
            "chown" => {
                let (u, g) = crate::flist::idmap::NameMap::chown_maps(&v());
                if let Some(u) = u {
                    set_map(
                        &mut self.usermap,
                        &mut self.usermap_via_chown,
                        u,
                        true,
                        "user",
                    )?;
                    self.owner = true;
                }
                if let Some(g) = g {
                    set_map(
                        &mut self.groupmap,
                        &mut self.groupmap_via_chown,
                        g,
                        true,
                        "group",
                    )?;
                    self.group = true;
                }
            }
            "delete-missing-args" => self.delete_missing_args = on,
            "ignore-missing-args" => self.ignore_missing_args = on,
            // (A server ignores the words it does not know, as upstream's.)
            "info" => {
                if !self.server {
                    check_output_words("--info", INFO_WORDS, &v())?;
                }
                self.info.push(v())
            }
            "debug" => {
                if !self.server {
                    check_output_words("--debug", DEBUG_WORDS, &v())?;
                }
                self.debug.push(v())
            }
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
            // (As the C int becomes a port: its low 16 bits.)
            "port" => self.port = Some(int()? as u16),
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
            "protocol" => self.protocol = Some(u8::try_from(int()?).unwrap_or(0)),
            "outbuf" => self.outbuf = Some(v()),
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
                            a.clone(),
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
                            return Err(OptError::BadArg(a.clone(), "missing argument".into()));
                        };
                        i += 1;
                        Some(v.clone())
                    }
                },
            };
            // popt names the last word it took: the value when separate.
            o.set(canon, on, val, &args[i - 1])?;
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
                        return Err(OptError::BadArg(a.clone(), "missing argument".into()));
                    };
                    o.set(canon, true, Some(v), &args[i - 1])?;
                    break;
                }
                o.set(canon, true, None, a)?;
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

/// The time now, in seconds since the epoch.
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
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

    fn err(v: &[&str]) -> String {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap_err()
            .line()
    }

    #[test]
    fn numbers_are_read_and_refused_as_popt_does() {
        assert_eq!(
            err(&["--timeout=x"]),
            "rsync: --timeout=x: invalid numeric value"
        );
        assert_eq!(err(&["--timeout", "x"]), "rsync: x: invalid numeric value");
        assert_eq!(err(&["-@x"]), "rsync: -@x: invalid numeric value");
        assert_eq!(err(&["-r@", "5x"]), "rsync: 5x: invalid numeric value");
        assert_eq!(
            err(&["--port=99999999999"]),
            "rsync: --port=99999999999: number too large or too small"
        );
        assert_eq!(
            err(&["--recursive=5"]),
            "rsync: --recursive=5: option does not take an argument"
        );
        assert_eq!(err(&["-rT"]), "rsync: -rT: missing argument");
        assert_eq!(err(&["--timeout"]), "rsync: --timeout: missing argument");
        let (o, _) = p(&[
            "--timeout=0x10",
            "--modify-window=-1",
            "--max-delete=010",
            "--contimeout=",
            "--checksum-seed= +7",
        ]);
        assert_eq!(o.timeout, Some(16));
        assert_eq!(o.modify_window, Some(-1));
        assert_eq!(o.max_delete, Some(8));
        assert_eq!(o.contimeout, Some(0));
        assert_eq!(o.checksum_seed, Some(7));
        // A negative timeout is accepted (and is no timeout here).
        assert_eq!(p(&["--timeout=-1"]).0.timeout, Some(0));
        for bad in ["-", " ", "08", "0x", "1 ", "1.5"] {
            assert!(popt_int("w", bad).is_err(), "{bad:?}");
        }
        assert_eq!(popt_int("w", "-2147483648"), Ok(i32::MIN));
        assert!(popt_int("w", "2147483648").is_err());
    }

    #[test]
    fn values_are_checked_as_they_are_read() {
        assert_eq!(err(&["--max-size=zz"]), "rsync: --max-size=zz is invalid");
        assert_eq!(
            err(&["-B", "100000000"]),
            "rsync: --block-size=100000000 is too large (max: 128.00K)"
        );
        // The protocol given before -B decides its bound.
        assert_eq!(
            p(&["--protocol=29", "-B200000"]).0.block_size,
            Some(200_000)
        );
        assert!(parse(&["-B200000".to_string(), "--protocol=29".to_string()]).is_err());
        assert_eq!(
            err(&["--link-dest=a", "--copy-dest=b"]),
            "rsync: ERROR: the --copy-dest option conflicts with the --link-dest option"
        );
        let many: Vec<String> = (0..21).map(|i| format!("--link-dest=d{i}")).collect();
        assert_eq!(
            parse(&many).unwrap_err().line(),
            "rsync: ERROR: at most 20 --link-dest args may be specified"
        );
        assert_eq!(err(&["--info=bogus"]), "Unknown --info item: \"bogus\"");
        assert_eq!(err(&["--info=name,nam2"]), "Unknown --info item: \"nam\"");
        assert_eq!(err(&["--debug=5"]), "Unknown --debug item: \"5\"");
        let (o, _) = p(&["--info=NAME2,,all", "--debug=none,FLIST4"]);
        assert_eq!(o.info.len(), 1);
        // A server takes the words it does not know.
        assert!(parse(&["--server".to_string(), "--info=newer".to_string()]).is_ok());
        // Sizes are kept as a client forwards them: bytes, and KiB for --bwlimit.
        let (o, _) = p(&["--max-size=1.5k", "--min-size=1kb", "--bwlimit=1m", "-B0"]);
        assert_eq!(o.max_size.as_deref(), Some("1536"));
        assert_eq!(o.min_size.as_deref(), Some("1000"));
        assert_eq!(o.bwlimit.as_deref(), Some("1024"));
        assert_eq!(o.block_size, None);
        assert_eq!(
            err(&["--max-alloc=1"]),
            "rsync: --max-alloc=1 is too small (min: 1.00M or 0 for unlimited)"
        );
        // --del is --delete-during for the --delete-WHEN count.
        let (o, _) = p(&["--del", "--delete-after", "--delete-delay"]);
        assert_eq!(o.delete_whens, DEL_DURING | DEL_AFTER);
    }

    #[test]
    fn unknown_options_are_errors() {
        assert!(parse(&["--bogus".to_string()]).is_err());
        assert!(parse(&["-Q".to_string()]).is_err());
        assert!(parse(&["--timeout".to_string()]).is_err());
        assert!(parse(&["--timeout=x".to_string()]).is_err());
    }
}
