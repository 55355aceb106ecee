//! rsyncd.conf: parsing and the typed daemon configuration
//! (upstream: params.c, loadparm.c, daemon-parm.txt, rsyncd.conf(5)).
//!
//! This module owns reading the config file in stock rsync's dialect (see
//! `lexer.rs` for the line syntax and `loader.rs` for sections, includes and
//! `--dparam`), the typed result ([`DaemonConfig`], [`GlobalConfig`],
//! [`ModuleConfig`]) with stock defaults, `%VAR%` expansion helpers
//! ([`expand`]), and the small resolution rules stock applies when a module
//! is used (uid/gid defaults, `use chroot`, `numeric ids`, `munge symlinks`).
//!
//! Every parameter stock knows is accepted.  Where stock only logs and skips
//! something (an unknown parameter, a badly formed boolean, a global
//! parameter inside a module, a line without `=`), we fail with an error
//! naming the file and line, so the daemon refuses to start rather than
//! silently running with a different configuration.  Integers must be whole
//! decimal numbers (stock's `atoi` would read "12x" as 12 and "x" as 0);
//! booleans are yes/no, true/false, 1/0 in any case (stock does not accept
//! on/off, and neither do we: `read only = off` would leave a stock module
//! read-only).
//!
//! String values are stored raw: `%VAR%` references in them are expanded by
//! the user of the value (see [`expand::expand_vars`]), as stock defers them
//! until connection time.  Non-string values are expanded while parsing.

pub mod expand;
pub(crate) mod lexer;
mod loader;
mod open;
mod table;

use std::io;
use std::path::{Path, PathBuf};

pub use expand::{expand_vars, expand_vars_env, expand_vars_for_shell, UnsafeHookValue};

/// The config file a root daemon reads by default (stock RSYNCD_SYSCONF).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/rsyncd.conf";
/// The config file a non-root daemon started over a remote shell reads by
/// default, relative to its cwd (stock RSYNCD_USERCONF).
pub const USER_CONFIG_PATH: &str = "rsyncd.conf";
/// The daemon's port when neither `--port` nor `port =` says otherwise.
pub const DEFAULT_PORT: u16 = 873;
/// Default `lock file`.
pub const DEFAULT_LOCK_FILE: &str = "/var/run/rsyncd.lock";
/// Default `log format`.
pub const DEFAULT_LOG_FORMAT: &str = "%o %h [%a] %m (%u) %f %l";
/// Default `syslog tag`.
pub const DEFAULT_SYSLOG_TAG: &str = "rsyncd";
/// The user a root daemon switches to when a module sets no `uid`.
pub const NOBODY_USER: &str = "nobody";
/// Default `dont compress` (from rsync.1's `--skip-compress` list).
pub const DEFAULT_DONT_COMPRESS: &str = "*.3g2 *.3gp *.7z *.aac *.ace *.apk *.avi *.bz2 *.deb \
*.dmg *.ear *.f4v *.flac *.flv *.gpg *.gz *.iso *.jar *.jpeg *.jpg *.lrz *.lz *.lz4 *.lzma *.lzo \
*.m1a *.m1v *.m2a *.m2ts *.m2v *.m4a *.m4b *.m4p *.m4r *.m4v *.mka *.mkv *.mov *.mp1 *.mp2 *.mp3 \
*.mp4 *.mpa *.mpeg *.mpg *.mpv *.mts *.odb *.odf *.odg *.odi *.odm *.odp *.ods *.odt *.oga *.ogg \
*.ogm *.ogv *.ogx *.opus *.otg *.oth *.otp *.ots *.ott *.oxt *.png *.qt *.rar *.rpm *.rz *.rzip \
*.spx *.squashfs *.sxc *.sxd *.sxg *.sxm *.sxw *.sz *.tbz *.tbz2 *.tgz *.tlz *.ts *.txz *.tzo \
*.vob *.war *.webm *.webp *.xz *.z *.zip *.zst";

/// A problem found at one place in a config file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    /// The parameter name is not one stock rsync knows.
    #[error("unknown parameter '{0}'")]
    UnknownParameter(String),
    /// A boolean parameter's value is not yes/no/true/false/1/0 (or unset/-1).
    #[error("badly formed boolean for '{name}': \"{value}\"")]
    BadBoolean { name: &'static str, value: String },
    /// An integer parameter's value is not a (range-valid) whole number.
    #[error("bad integer for '{name}': \"{value}\"")]
    BadInteger { name: &'static str, value: String },
    /// `syslog facility` is neither a known name nor a positive number.
    #[error("unknown syslog facility \"{0}\"")]
    BadSyslogFacility(String),
    /// A daemon-wide parameter appeared inside a module section.
    #[error("global parameter '{0}' found in module section")]
    GlobalInModule(&'static str),
    /// A non-comment line without `=` (stock logs and ignores it).
    #[error("badly formed line (no '='): \"{0}\"")]
    MissingEquals(String),
    /// `= value` with nothing before the `=`.
    #[error("empty parameter name")]
    EmptyParameterName,
    /// `[]`.
    #[error("empty section name")]
    EmptySectionName,
    /// A `[` whose `]` never came on that (possibly continued) line.
    #[error("section header without closing ']': \"[{0}\"")]
    UnterminatedSection(String),
    /// A module name containing `/`.
    #[error("invalid module name \"{0}\" (contains '/')")]
    BadModuleName(String),
    /// A `&` line other than `&include` / `&merge`.
    #[error("unknown directive '{0}'")]
    UnknownDirective(String),
    /// An `&include`/`&merge` target could not be examined or read.
    #[error("unable to read include \"{}\": {source}", path.display())]
    Include { path: PathBuf, source: io::Error },
    /// An include of a file that is already being read (would recurse forever).
    #[error("include loop: \"{}\" is already being read", .0.display())]
    IncludeLoop(PathBuf),
    /// Includes nested deeper than the loader allows.
    #[error("includes nested too deeply")]
    IncludeTooDeep,
    /// An include target that is neither a regular file nor a directory.
    #[error("include \"{}\" is not a file or directory", .0.display())]
    IncludeNotFileOrDir(PathBuf),
    /// The line holds bytes that are not UTF-8.
    #[error("line is not valid UTF-8")]
    NotUtf8,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The top-level config file could not be opened or read.
    #[error("unable to open config file \"{}\": {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    /// A problem at `file:line`.
    #[error("{file}:{line}: {kind}")]
    Syntax {
        file: String,
        line: usize,
        kind: SyntaxError,
    },
    /// A bad `--dparam NAME=VALUE`.
    #[error("--dparam \"{spec}\": {kind}")]
    Dparam { spec: String, kind: SyntaxError },
    /// The top-level file is already being read (only seen internally; an
    /// include loop is reported as [`SyntaxError::IncludeLoop`]).
    #[error("include loop: \"{}\" is already being read", path.display())]
    IncludeLoop { path: PathBuf },
}

/// A syslog facility code (the `LOG_*` value, e.g. `LOG_DAEMON`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyslogFacility(pub i32);

impl SyslogFacility {
    pub const KERN: Self = Self(nix::libc::LOG_KERN);
    pub const USER: Self = Self(nix::libc::LOG_USER);
    pub const MAIL: Self = Self(nix::libc::LOG_MAIL);
    pub const DAEMON: Self = Self(nix::libc::LOG_DAEMON);
    pub const AUTH: Self = Self(nix::libc::LOG_AUTH);
    pub const SYSLOG: Self = Self(nix::libc::LOG_SYSLOG);
    pub const LPR: Self = Self(nix::libc::LOG_LPR);
    pub const NEWS: Self = Self(nix::libc::LOG_NEWS);
    pub const UUCP: Self = Self(nix::libc::LOG_UUCP);
    pub const CRON: Self = Self(nix::libc::LOG_CRON);
    pub const AUTHPRIV: Self = Self(nix::libc::LOG_AUTHPRIV);
    pub const FTP: Self = Self(nix::libc::LOG_FTP);
    pub const LOCAL0: Self = Self(nix::libc::LOG_LOCAL0);
    pub const LOCAL1: Self = Self(nix::libc::LOG_LOCAL1);
    pub const LOCAL2: Self = Self(nix::libc::LOG_LOCAL2);
    pub const LOCAL3: Self = Self(nix::libc::LOG_LOCAL3);
    pub const LOCAL4: Self = Self(nix::libc::LOG_LOCAL4);
    pub const LOCAL5: Self = Self(nix::libc::LOG_LOCAL5);
    pub const LOCAL6: Self = Self(nix::libc::LOG_LOCAL6);
    pub const LOCAL7: Self = Self(nix::libc::LOG_LOCAL7);

    const NAMES: &'static [(&'static str, SyslogFacility)] = &[
        ("auth", Self::AUTH),
        ("authpriv", Self::AUTHPRIV),
        ("cron", Self::CRON),
        ("daemon", Self::DAEMON),
        ("ftp", Self::FTP),
        ("kern", Self::KERN),
        ("lpr", Self::LPR),
        ("mail", Self::MAIL),
        ("news", Self::NEWS),
        ("security", Self::AUTH),
        ("syslog", Self::SYSLOG),
        ("user", Self::USER),
        ("uucp", Self::UUCP),
        ("local0", Self::LOCAL0),
        ("local1", Self::LOCAL1),
        ("local2", Self::LOCAL2),
        ("local3", Self::LOCAL3),
        ("local4", Self::LOCAL4),
        ("local5", Self::LOCAL5),
        ("local6", Self::LOCAL6),
        ("local7", Self::LOCAL7),
    ];

    /// A facility name (any case) or a positive raw facility number.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim_matches(lexer::is_c_space);
        if let Some(&(_, f)) = Self::NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
            return Some(f);
        }
        match s.parse::<i32>() {
            Ok(n) if n > 0 => Some(Self(n)),
            _ => None,
        }
    }

    /// The facility's (first) name, if it has one.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
    }
}

impl Default for SyslogFacility {
    fn default() -> Self {
        Self::DAEMON
    }
}

/// Raw `name = value` pairs, as written (name spelling kept).
pub type RawParams = Vec<(String, String)>;

/// Daemon-wide settings: stock's global parameters, plus the module
/// parameters given in a global context ([`GlobalConfig::defaults`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalConfig {
    /// `address`: the IP address to listen on (`--address` wins).
    pub address: Option<String>,
    /// `daemon chroot`: chroot the daemon before talking to clients.
    pub daemon_chroot: Option<String>,
    /// `daemon gid`: group to run the daemon as.
    pub daemon_gid: Option<String>,
    /// `daemon uid`: user to run the daemon as.
    pub daemon_uid: Option<String>,
    /// `motd file`: text sent to clients on connect.
    pub motd_file: Option<String>,
    /// `pid file`: where the daemon writes (and locks) its pid.
    pub pid_file: Option<String>,
    /// `proxy protocol hosts`: peers trusted to send a proxy header
    /// (`hosts allow` syntax).
    pub proxy_protocol_hosts: Option<String>,
    /// `socket options`: setsockopt list, like `--sockopts`.
    pub socket_options: Option<String>,
    /// `listen backlog` (default 5).
    pub listen_backlog: i32,
    /// `port`; 0 means "not set" (see [`GlobalConfig::listen_port`]).
    pub port: u16,
    /// `proxy protocol`: require a PROXY v1/v2 header on every connection.
    pub proxy_protocol: bool,
    /// Module parameters as set in the global context at the end of the
    /// file.  Also where the daemon's own `log file`, `syslog facility` and
    /// `syslog tag` live (stock reads them as module -1).
    pub defaults: ModuleConfig,
    /// Raw parameters set in global contexts (and by `--dparam`), in order.
    pub params: RawParams,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            address: None,
            daemon_chroot: None,
            daemon_gid: None,
            daemon_uid: None,
            motd_file: None,
            pid_file: None,
            proxy_protocol_hosts: None,
            socket_options: None,
            listen_backlog: 5,
            port: 0,
            proxy_protocol: false,
            defaults: ModuleConfig::default(),
            params: Vec::new(),
        }
    }
}

impl GlobalConfig {
    /// The port to listen on without `--port`: `port`, or 873.
    pub fn listen_port(&self) -> u16 {
        if self.port == 0 {
            DEFAULT_PORT
        } else {
            self.port
        }
    }

    /// The daemon's `log file` (global context); empty means syslog.
    pub fn log_file(&self) -> Option<&str> {
        self.defaults.log_file.as_deref()
    }

    /// The daemon's `syslog facility`.
    pub fn syslog_facility(&self) -> SyslogFacility {
        self.defaults.syslog_facility
    }

    /// The daemon's `syslog tag` (raw; may hold `%VAR%`).
    pub fn syslog_tag(&self) -> &str {
        &self.defaults.syslog_tag
    }

    /// The last raw value given in a global context for parameter `name`
    /// (any spelling).
    pub fn param(&self, name: &str) -> Option<&str> {
        last_param(&self.params, name)
    }
}

/// One module (`[name]` section) with every module parameter, defaults
/// filled in as stock does.  Option fields are `None` when unset or empty
/// (stock treats the two alike).  String values are raw (`%VAR%` unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleConfig {
    /// The module name (the section name; `name =` can change it, as in stock).
    pub name: String,
    /// `auth digest`: digest names allowed for auth.
    pub auth_digest: Option<String>,
    /// `auth users`: comma/space separated auth rules.
    pub auth_users: Option<String>,
    /// `charset`: the module's filename charset (needed for `--iconv`).
    pub charset: Option<String>,
    /// `comment`: shown in the module list.
    pub comment: Option<String>,
    /// `dont compress` (default [`DEFAULT_DONT_COMPRESS`]). Like stock
    /// rsync 3.2+ (whose per-file level switch in token.c is compiled out),
    /// only a lone `*` in it has an effect: zlib transfers from the module
    /// are not compressed.
    pub dont_compress: String,
    /// `early exec`: command run before the client's args are read.
    pub early_exec: Option<String>,
    /// `exclude`: space-separated daemon exclude patterns.
    pub exclude: Option<String>,
    /// `exclude from`: file of daemon exclude patterns.
    pub exclude_from: Option<String>,
    /// `filter`: daemon filter rules.
    pub filter: Option<String>,
    /// `gid`: group list (see [`ModuleConfig::effective_gids`]).
    pub gid: Option<String>,
    /// `hosts allow`.
    pub hosts_allow: Option<String>,
    /// `hosts deny`.
    pub hosts_deny: Option<String>,
    /// `include`: space-separated daemon include patterns.
    pub include: Option<String>,
    /// `include from`: file of daemon include patterns.
    pub include_from: Option<String>,
    /// `incoming chmod`: chmod rules for received files.
    pub incoming_chmod: Option<String>,
    /// `lock file` for `max connections` (default [`DEFAULT_LOCK_FILE`]).
    pub lock_file: String,
    /// `log file`: log here instead of syslog.
    pub log_file: Option<String>,
    /// `log format` (default [`DEFAULT_LOG_FORMAT`]).
    pub log_format: String,
    /// `name converter`: program for uid/gid name conversion.
    pub name_converter: Option<String>,
    /// `outgoing chmod`: chmod rules for sent files.
    pub outgoing_chmod: Option<String>,
    /// `post-xfer exec`.
    pub post_xfer_exec: Option<String>,
    /// `pre-xfer exec`.
    pub pre_xfer_exec: Option<String>,
    /// `refuse options`.
    pub refuse_options: Option<String>,
    /// `secrets file`.
    pub secrets_file: Option<String>,
    /// `syslog tag` (default "rsyncd").
    pub syslog_tag: String,
    /// `uid` (see [`ModuleConfig::effective_uid`]).
    pub uid: Option<String>,
    /// `path`, trailing slashes removed (keeps "/").
    pub path: Option<String>,
    /// `temp dir`, trailing slashes removed.
    pub temp_dir: Option<String>,
    /// `max connections`: 0 = unlimited, negative = module disabled.
    pub max_connections: i32,
    /// `max verbosity` (default 1).
    pub max_verbosity: i32,
    /// `timeout` in seconds (0 = none).
    pub timeout: i32,
    /// `syslog facility` (default daemon).
    pub syslog_facility: SyslogFacility,
    /// `fake super` (default no).
    pub fake_super: bool,
    /// `forward lookup` (default yes).
    pub forward_lookup: bool,
    /// `ignore errors` (default no).
    pub ignore_errors: bool,
    /// `ignore nonreadable` (default no).
    pub ignore_nonreadable: bool,
    /// `insecure links` (default no).
    pub insecure_links: bool,
    /// `list` (default yes).
    pub list: bool,
    /// `read only` (default yes).
    pub read_only: bool,
    /// `reverse lookup` (default yes).
    pub reverse_lookup: bool,
    /// `strict modes` (default yes).
    pub strict_modes: bool,
    /// `transfer logging` (default no).
    pub transfer_logging: bool,
    /// `write only` (default no).
    pub write_only: bool,
    /// `munge symlinks`; `None` = unset (see [`ModuleConfig::munge_symlinks_with`]).
    pub munge_symlinks: Option<bool>,
    /// `numeric ids`; `None` = unset (see [`ModuleConfig::numeric_ids_with`]).
    pub numeric_ids: Option<bool>,
    /// `open noatime`; `None` = unset (the client's `--open-noatime` decides).
    pub open_noatime: Option<bool>,
    /// `use chroot`; `None` = unset (see [`ModuleConfig::use_chroot_with`]).
    pub use_chroot: Option<bool>,
    /// Raw parameters given in this module's own section(s), in order.
    pub params: RawParams,
}

impl Default for ModuleConfig {
    fn default() -> Self {
        ModuleConfig {
            name: String::new(),
            auth_digest: None,
            auth_users: None,
            charset: None,
            comment: None,
            dont_compress: DEFAULT_DONT_COMPRESS.to_string(),
            early_exec: None,
            exclude: None,
            exclude_from: None,
            filter: None,
            gid: None,
            hosts_allow: None,
            hosts_deny: None,
            include: None,
            include_from: None,
            incoming_chmod: None,
            lock_file: DEFAULT_LOCK_FILE.to_string(),
            log_file: None,
            log_format: DEFAULT_LOG_FORMAT.to_string(),
            name_converter: None,
            outgoing_chmod: None,
            post_xfer_exec: None,
            pre_xfer_exec: None,
            refuse_options: None,
            secrets_file: None,
            syslog_tag: DEFAULT_SYSLOG_TAG.to_string(),
            uid: None,
            path: None,
            temp_dir: None,
            max_connections: 0,
            max_verbosity: 1,
            timeout: 0,
            syslog_facility: SyslogFacility::DAEMON,
            fake_super: false,
            forward_lookup: true,
            ignore_errors: false,
            ignore_nonreadable: false,
            insecure_links: false,
            list: true,
            read_only: true,
            reverse_lookup: true,
            strict_modes: true,
            transfer_logging: false,
            write_only: false,
            munge_symlinks: None,
            numeric_ids: None,
            open_noatime: None,
            use_chroot: None,
            params: Vec::new(),
        }
    }
}

fn last_param<'a>(params: &'a RawParams, name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(n, _)| table::names_equal(n, name))
        .map(|(_, v)| v.as_str())
}

/// Split a list the way stock's `gid` and `auth users` are split
/// (upstream: util1.c conf_strtok()): on spaces, tabs and commas; or, if the
/// value starts with a comma, on commas only (so items may hold spaces),
/// with each item trimmed.  Empty items are dropped.
pub fn split_conf_list(s: &str) -> Vec<&str> {
    let s = s.trim_start_matches(lexer::is_c_space);
    if let Some(rest) = s.strip_prefix(',') {
        rest.split(',')
            .map(|t| t.trim_matches(lexer::is_c_space))
            .filter(|t| !t.is_empty())
            .collect()
    } else {
        s.split([' ', ',', '\t', '\r', '\n'])
            .filter(|t| !t.is_empty())
            .collect()
    }
}

/// Stock picks its "nobody" group at build time: `nobody` if /etc/group
/// has it, else `nogroup` if it has that, else `nobody`.  This applies the
/// same rule to the given /etc/group text.
pub fn nobody_group_from_etc_group(etc_group: &str) -> &'static str {
    let has = |g: &str| etc_group.lines().any(|l| l.split(':').next() == Some(g));
    if has("nobody") {
        "nobody"
    } else if has("nogroup") {
        "nogroup"
    } else {
        "nobody"
    }
}

/// [`nobody_group_from_etc_group`] on this system's /etc/group.
pub fn default_nobody_group() -> &'static str {
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    nobody_group_from_etc_group(&text)
}

/// Turn an explicit empty string into `None` (stock reads both as "").
fn empty_to_none(f: &mut Option<String>) {
    if f.as_deref() == Some("") {
        *f = None;
    }
}

impl GlobalConfig {
    /// Normalise after loading: empty strings become `None`.
    pub(crate) fn finish_strings(&mut self) {
        for f in [
            &mut self.address,
            &mut self.daemon_chroot,
            &mut self.daemon_gid,
            &mut self.daemon_uid,
            &mut self.motd_file,
            &mut self.pid_file,
            &mut self.proxy_protocol_hosts,
            &mut self.socket_options,
        ] {
            empty_to_none(f);
        }
    }
}

impl ModuleConfig {
    /// Every `Option<String>` parameter field.
    fn optional_strings(&mut self) -> [&mut Option<String>; 24] {
        [
            &mut self.auth_digest,
            &mut self.auth_users,
            &mut self.charset,
            &mut self.comment,
            &mut self.early_exec,
            &mut self.exclude,
            &mut self.exclude_from,
            &mut self.filter,
            &mut self.gid,
            &mut self.hosts_allow,
            &mut self.hosts_deny,
            &mut self.include,
            &mut self.include_from,
            &mut self.incoming_chmod,
            &mut self.log_file,
            &mut self.name_converter,
            &mut self.outgoing_chmod,
            &mut self.post_xfer_exec,
            &mut self.pre_xfer_exec,
            &mut self.refuse_options,
            &mut self.secrets_file,
            &mut self.uid,
            &mut self.path,
            &mut self.temp_dir,
        ]
    }

    /// Finish a module after loading (upstream: the FN_LOCAL_STRING
    /// accessors).  A string parameter that was never set for the module --
    /// neither in its section nor in the defaults it copied when opened --
    /// reads as the *final* global-context value, even one given after the
    /// module.  An explicitly empty value does not fall back.  Then empty
    /// strings become `None`.
    pub(crate) fn finish_strings(&mut self, defaults: Option<&ModuleConfig>) {
        if let Some(d) = defaults {
            let mut d = d.clone();
            for (f, dv) in self
                .optional_strings()
                .into_iter()
                .zip(d.optional_strings())
            {
                if f.is_none() {
                    f.clone_from(dv);
                }
            }
        }
        for f in self.optional_strings() {
            empty_to_none(f);
        }
    }

    /// The last raw value given in this module's section for `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        last_param(&self.params, name)
    }

    /// `max connections < 0` disables the module.
    pub fn is_disabled(&self) -> bool {
        self.max_connections < 0
    }

    /// The user transfers run as (raw, `%VAR%` unexpanded): `uid` if set;
    /// otherwise "nobody" when the daemon runs as root, and `None` (do not
    /// switch) when it does not.
    pub fn effective_uid(&self, is_root: bool) -> Option<&str> {
        match self.uid.as_deref() {
            Some(u) => Some(u),
            None if is_root => Some(NOBODY_USER),
            None => None,
        }
    }

    /// The groups transfers run with: the `gid` list (see
    /// [`split_conf_list`]; a first item of `*` means "all of the user's
    /// groups"); if unset, `nobody_group` alone when root, else nothing
    /// (groups are left unchanged).
    pub fn effective_gids<'a>(&'a self, is_root: bool, nobody_group: &'a str) -> Vec<&'a str> {
        match self.gid.as_deref() {
            Some(g) if !split_conf_list(g).is_empty() => split_conf_list(g),
            _ if is_root => vec![nobody_group],
            _ => Vec::new(),
        }
    }

    /// Whether to chroot into the module: `use chroot` if set.  Unset (the
    /// default since 3.2.7) means yes when `path` holds a `/./` divider, and
    /// otherwise "try": stock tests `chroot("/")` and falls back to no chroot
    /// (with a log line) if that fails.  `chroot_works` performs that test.
    pub fn use_chroot_with(&self, chroot_works: impl FnOnce() -> bool) -> bool {
        match self.use_chroot {
            Some(b) => b,
            None if self.path.as_deref().is_some_and(|p| p.contains("/./")) => true,
            None => chroot_works(),
        }
    }

    /// Whether the daemon forces `--numeric-ids`: in a chroot, unless
    /// `numeric ids = no` or a `name converter` is set; outside a chroot,
    /// only when `numeric ids = yes`.
    pub fn numeric_ids_with(&self, use_chroot: bool) -> bool {
        if use_chroot {
            self.numeric_ids != Some(false) && self.name_converter.is_none()
        } else {
            self.numeric_ids == Some(true)
        }
    }

    /// Whether incoming symlinks are munged: `munge symlinks` if set, else
    /// yes unless the module is chrooted and serves the chroot's root
    /// (`serves_subdir` = the directory served, inside any chroot, is not "/").
    pub fn munge_symlinks_with(&self, use_chroot: bool, serves_subdir: bool) -> bool {
        self.munge_symlinks.unwrap_or(!use_chroot || serves_subdir)
    }

    /// O_NOATIME use: `open noatime` if set, else the client's choice.
    pub fn open_noatime_with(&self, client_requested: bool) -> bool {
        self.open_noatime.unwrap_or(client_requested)
    }
}

/// Options for loading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// `--dparam NAME=VALUE` items, applied where stock applies them (at the
    /// end of the first global section; see `loader.rs`).
    pub dparams: Vec<String>,
    /// Stock's listener pass: stop at the first section header (anywhere,
    /// even in an included file) and do not scope `&include` globals.
    pub globals_only: bool,
}

/// The whole configuration: global settings and the modules in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonConfig {
    pub global: GlobalConfig,
    pub modules: Vec<ModuleConfig>,
}

impl DaemonConfig {
    /// The module a client asked for by exact name (stock compares module
    /// requests case-sensitively).
    pub fn module(&self, name: &str) -> Option<&ModuleConfig> {
        self.modules.iter().rev().find(|m| m.name == name)
    }

    /// Modules shown in a module listing (`list = yes`), in file order.
    pub fn listed_modules(&self) -> impl Iterator<Item = &ModuleConfig> {
        self.modules.iter().filter(|m| m.list)
    }

    /// Apply one `--dparam NAME=VALUE` to an already-loaded configuration.
    ///
    /// A daemon-wide parameter simply takes the value.  A module parameter
    /// becomes the global default and is applied to every module that does
    /// not set it in its own section -- the same result as stock's (which
    /// applies dparams before the first module is read) except for modules
    /// after a later `[global]` section that sets the parameter again.  For
    /// exact stock behaviour pass dparams in [`ParseOptions::dparams`].
    pub fn apply_dparam(&mut self, spec: &str) -> Result<(), ConfigError> {
        let (name, value, p) = loader::split_dparam(spec)?;
        let dperr = |kind| ConfigError::Dparam {
            spec: spec.to_string(),
            kind,
        };
        table::set_global(p, &mut self.global, value).map_err(dperr)?;
        if !p.is_global() {
            for m in &mut self.modules {
                let own = m
                    .params
                    .iter()
                    .any(|(n, _)| table::Param::lookup(n) == Some(p));
                if !own {
                    table::set_local(p, m, value).map_err(dperr)?;
                }
            }
        }
        self.global
            .params
            .push((name.to_string(), value.to_string()));
        Ok(())
    }
}

/// Check a `--dparam` for the command line (stock validates the name at
/// startup): it must be `NAME=VALUE` with a known NAME and a valid value.
pub fn check_dparam(spec: &str) -> Result<(), ConfigError> {
    let (_, value, p) = loader::split_dparam(spec)?;
    let mut scratch = GlobalConfig::default();
    table::set_global(p, &mut scratch, value).map_err(|kind| ConfigError::Dparam {
        spec: spec.to_string(),
        kind,
    })
}

/// Load a config file (and its includes).
pub fn load(path: &Path) -> Result<DaemonConfig, ConfigError> {
    load_with(path, &ParseOptions::default())
}

/// Load a config file with options.
pub fn load_with(path: &Path, opts: &ParseOptions) -> Result<DaemonConfig, ConfigError> {
    let mut l = loader::Loader::new(opts);
    l.run_file(path)?;
    l.finish()
}

/// Parse config text; `origin` names it in error messages.  `&include` and
/// `&merge` in it read files relative to the current directory, as stock.
pub fn parse_str(text: &str, origin: &str) -> Result<DaemonConfig, ConfigError> {
    parse_str_with(text, origin, &ParseOptions::default())
}

/// Parse config text with options.
pub fn parse_str_with(
    text: &str,
    origin: &str,
    opts: &ParseOptions,
) -> Result<DaemonConfig, ConfigError> {
    let mut l = loader::Loader::new(opts);
    l.run_text(text, origin)?;
    l.finish()
}

#[cfg(test)]
pub(crate) mod tests;
