//! The table of parameters stock rsync knows (upstream: daemon-parm.txt,
//! loadparm.c map_parameter()/do_parameter()) and typed assignment of values.
//!
//! Names match case-insensitively and ignoring all whitespace, so
//! "read only", "ReadOnly" and "r e a d o n l y" are one parameter; `-` and
//! `_` are significant ("pre-xfer exec" is not "prexfer exec").  Only the
//! public names exist: "address" and "port" (not "bind address"/"rsync port").

use super::expand::expand_vars_env;
use super::{GlobalConfig, ModuleConfig, SyntaxError, SyslogFacility};

/// Every parameter, named after its public label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    // Globals.
    Address,
    DaemonChroot,
    DaemonGid,
    DaemonUid,
    MotdFile,
    PidFile,
    ProxyProtocolHosts,
    SocketOptions,
    ListenBacklog,
    Port,
    ProxyProtocol,
    // Module (local) parameters.
    AuthDigest,
    AuthUsers,
    Charset,
    Comment,
    DontCompress,
    EarlyExec,
    Exclude,
    ExcludeFrom,
    Filter,
    Gid,
    HostsAllow,
    HostsDeny,
    Include,
    IncludeFrom,
    IncomingChmod,
    LockFile,
    LogFile,
    LogFormat,
    Name,
    NameConverter,
    OutgoingChmod,
    PostXferExec,
    PreXferExec,
    RefuseOptions,
    SecretsFile,
    SyslogTag,
    Uid,
    Path,
    TempDir,
    MaxConnections,
    MaxVerbosity,
    Timeout,
    SyslogFacility,
    FakeSuper,
    ForwardLookup,
    IgnoreErrors,
    IgnoreNonreadable,
    InsecureLinks,
    List,
    ReadOnly,
    ReverseLookup,
    StrictModes,
    TransferLogging,
    WriteOnly,
    MungeSymlinks,
    NumericIds,
    OpenNoatime,
    UseChroot,
}

/// (label, parameter), in stock's table order.
pub(crate) const TABLE: &[(&str, Param)] = &[
    ("address", Param::Address),
    ("daemon chroot", Param::DaemonChroot),
    ("daemon gid", Param::DaemonGid),
    ("daemon uid", Param::DaemonUid),
    ("motd file", Param::MotdFile),
    ("pid file", Param::PidFile),
    ("proxy protocol hosts", Param::ProxyProtocolHosts),
    ("socket options", Param::SocketOptions),
    ("listen backlog", Param::ListenBacklog),
    ("port", Param::Port),
    ("proxy protocol", Param::ProxyProtocol),
    ("auth digest", Param::AuthDigest),
    ("auth users", Param::AuthUsers),
    ("charset", Param::Charset),
    ("comment", Param::Comment),
    ("dont compress", Param::DontCompress),
    ("early exec", Param::EarlyExec),
    ("exclude", Param::Exclude),
    ("exclude from", Param::ExcludeFrom),
    ("filter", Param::Filter),
    ("gid", Param::Gid),
    ("hosts allow", Param::HostsAllow),
    ("hosts deny", Param::HostsDeny),
    ("include", Param::Include),
    ("include from", Param::IncludeFrom),
    ("incoming chmod", Param::IncomingChmod),
    ("lock file", Param::LockFile),
    ("log file", Param::LogFile),
    ("log format", Param::LogFormat),
    ("name", Param::Name),
    ("name converter", Param::NameConverter),
    ("outgoing chmod", Param::OutgoingChmod),
    ("post-xfer exec", Param::PostXferExec),
    ("pre-xfer exec", Param::PreXferExec),
    ("refuse options", Param::RefuseOptions),
    ("secrets file", Param::SecretsFile),
    ("syslog tag", Param::SyslogTag),
    ("uid", Param::Uid),
    ("path", Param::Path),
    ("temp dir", Param::TempDir),
    ("max connections", Param::MaxConnections),
    ("max verbosity", Param::MaxVerbosity),
    ("timeout", Param::Timeout),
    ("syslog facility", Param::SyslogFacility),
    ("fake super", Param::FakeSuper),
    ("forward lookup", Param::ForwardLookup),
    ("ignore errors", Param::IgnoreErrors),
    ("ignore nonreadable", Param::IgnoreNonreadable),
    ("insecure links", Param::InsecureLinks),
    ("list", Param::List),
    ("read only", Param::ReadOnly),
    ("reverse lookup", Param::ReverseLookup),
    ("strict modes", Param::StrictModes),
    ("transfer logging", Param::TransferLogging),
    ("write only", Param::WriteOnly),
    ("munge symlinks", Param::MungeSymlinks),
    ("numeric ids", Param::NumericIds),
    ("open noatime", Param::OpenNoatime),
    ("use chroot", Param::UseChroot),
];

/// Case- and whitespace-insensitive equality (upstream: strwiEQ()).
pub(crate) fn names_equal(a: &str, b: &str) -> bool {
    let mut a = a.chars().filter(|c| !super::lexer::is_c_space(*c));
    let mut b = b.chars().filter(|c| !super::lexer::is_c_space(*c));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(&y) => {}
            _ => return false,
        }
    }
}

impl Param {
    /// Look a parameter up by any spelling stock accepts.
    pub(crate) fn lookup(name: &str) -> Option<Param> {
        if name.starts_with('-') {
            return None;
        }
        TABLE
            .iter()
            .find(|(label, _)| names_equal(label, name))
            .map(|&(_, p)| p)
    }

    /// The public label ("read only").
    pub(crate) fn label(self) -> &'static str {
        TABLE
            .iter()
            .find(|&&(_, p)| p == self)
            .map_or("?", |&(label, _)| label)
    }

    /// Daemon-wide parameters, which a module section may not set.
    pub(crate) fn is_global(self) -> bool {
        matches!(
            self,
            Param::Address
                | Param::DaemonChroot
                | Param::DaemonGid
                | Param::DaemonUid
                | Param::MotdFile
                | Param::PidFile
                | Param::ProxyProtocolHosts
                | Param::SocketOptions
                | Param::ListenBacklog
                | Param::Port
                | Param::ProxyProtocol
        )
    }
}

/// Parse a boolean the way stock does: yes/true/1 and no/false/0, any case,
/// whitespace ignored; with `allow_unset`, also unset/-1 (giving `None`).
/// Stock does not accept on/off.
pub(crate) fn parse_bool3(value: &str, allow_unset: bool) -> Option<Option<bool>> {
    let any = |words: &[&str]| words.iter().any(|w| names_equal(w, value));
    if any(&["yes", "true", "1"]) {
        Some(Some(true))
    } else if any(&["no", "false", "0"]) {
        Some(Some(false))
    } else if allow_unset && any(&["unset", "-1"]) {
        Some(None)
    } else {
        None
    }
}

fn bool_value(p: Param, value: &str) -> Result<bool, SyntaxError> {
    let v = expand_vars_env(value);
    match parse_bool3(&v, false) {
        Some(Some(b)) => Ok(b),
        _ => Err(SyntaxError::BadBoolean {
            name: p.label(),
            value: value.to_string(),
        }),
    }
}

fn bool3_value(p: Param, value: &str) -> Result<Option<bool>, SyntaxError> {
    let v = expand_vars_env(value);
    parse_bool3(&v, true).ok_or_else(|| SyntaxError::BadBoolean {
        name: p.label(),
        value: value.to_string(),
    })
}

fn int_value(p: Param, value: &str) -> Result<i32, SyntaxError> {
    let v = expand_vars_env(value);
    v.trim_matches(super::lexer::is_c_space)
        .parse::<i32>()
        .map_err(|_| SyntaxError::BadInteger {
            name: p.label(),
            value: value.to_string(),
        })
}

/// A string value.  An explicit empty value is kept as `Some("")` while
/// loading, because it differs from "never set" (an unset module string
/// falls back to the final global value, an empty one does not); the loader
/// turns it into `None` at the end (see `ModuleConfig::finish_strings`).
fn opt(value: &str) -> Option<String> {
    Some(value.to_string())
}

/// A PATH parameter: trailing slashes removed, keeping at least one char.
fn path_value(value: &str) -> Option<String> {
    let mut s = value;
    while s.len() > 1 && s.ends_with('/') {
        s = &s[..s.len() - 1];
    }
    opt(s)
}

/// Assign a daemon-wide parameter.
pub(crate) fn set_global(p: Param, g: &mut GlobalConfig, value: &str) -> Result<(), SyntaxError> {
    match p {
        Param::Address => g.address = opt(value),
        Param::DaemonChroot => g.daemon_chroot = opt(value),
        Param::DaemonGid => g.daemon_gid = opt(value),
        Param::DaemonUid => g.daemon_uid = opt(value),
        Param::MotdFile => g.motd_file = opt(value),
        Param::PidFile => g.pid_file = opt(value),
        Param::ProxyProtocolHosts => g.proxy_protocol_hosts = opt(value),
        Param::SocketOptions => g.socket_options = opt(value),
        Param::ListenBacklog => g.listen_backlog = int_value(p, value)?,
        Param::Port => {
            let n = int_value(p, value)?;
            g.port = u16::try_from(n).map_err(|_| SyntaxError::BadInteger {
                name: p.label(),
                value: value.to_string(),
            })?;
        }
        Param::ProxyProtocol => g.proxy_protocol = bool_value(p, value)?,
        local => set_local(local, &mut g.defaults, value)?,
    }
    Ok(())
}

/// Assign a module parameter (in a module, or the global defaults).
pub(crate) fn set_local(p: Param, m: &mut ModuleConfig, value: &str) -> Result<(), SyntaxError> {
    match p {
        Param::AuthDigest => m.auth_digest = opt(value),
        Param::AuthUsers => m.auth_users = opt(value),
        Param::Charset => m.charset = opt(value),
        Param::Comment => m.comment = opt(value),
        Param::DontCompress => m.dont_compress = value.to_string(),
        Param::EarlyExec => m.early_exec = opt(value),
        Param::Exclude => m.exclude = opt(value),
        Param::ExcludeFrom => m.exclude_from = opt(value),
        Param::Filter => m.filter = opt(value),
        Param::Gid => m.gid = opt(value),
        Param::HostsAllow => m.hosts_allow = opt(value),
        Param::HostsDeny => m.hosts_deny = opt(value),
        Param::Include => m.include = opt(value),
        Param::IncludeFrom => m.include_from = opt(value),
        Param::IncomingChmod => m.incoming_chmod = opt(value),
        Param::LockFile => m.lock_file = value.to_string(),
        Param::LogFile => m.log_file = opt(value),
        Param::LogFormat => m.log_format = value.to_string(),
        Param::Name => m.name = value.to_string(),
        Param::NameConverter => m.name_converter = opt(value),
        Param::OutgoingChmod => m.outgoing_chmod = opt(value),
        Param::PostXferExec => m.post_xfer_exec = opt(value),
        Param::PreXferExec => m.pre_xfer_exec = opt(value),
        Param::RefuseOptions => m.refuse_options = opt(value),
        Param::SecretsFile => m.secrets_file = opt(value),
        Param::SyslogTag => m.syslog_tag = value.to_string(),
        Param::Uid => m.uid = opt(value),
        Param::Path => m.path = path_value(value),
        Param::TempDir => m.temp_dir = path_value(value),
        Param::MaxConnections => m.max_connections = int_value(p, value)?,
        Param::MaxVerbosity => m.max_verbosity = int_value(p, value)?,
        Param::Timeout => m.timeout = int_value(p, value)?,
        Param::SyslogFacility => {
            let v = expand_vars_env(value);
            m.syslog_facility = SyslogFacility::parse(&v)
                .ok_or_else(|| SyntaxError::BadSyslogFacility(value.to_string()))?;
        }
        Param::FakeSuper => m.fake_super = bool_value(p, value)?,
        Param::ForwardLookup => m.forward_lookup = bool_value(p, value)?,
        Param::IgnoreErrors => m.ignore_errors = bool_value(p, value)?,
        Param::IgnoreNonreadable => m.ignore_nonreadable = bool_value(p, value)?,
        Param::InsecureLinks => m.insecure_links = bool_value(p, value)?,
        Param::List => m.list = bool_value(p, value)?,
        Param::ReadOnly => m.read_only = bool_value(p, value)?,
        Param::ReverseLookup => m.reverse_lookup = bool_value(p, value)?,
        Param::StrictModes => m.strict_modes = bool_value(p, value)?,
        Param::TransferLogging => m.transfer_logging = bool_value(p, value)?,
        Param::WriteOnly => m.write_only = bool_value(p, value)?,
        Param::MungeSymlinks => m.munge_symlinks = bool3_value(p, value)?,
        Param::NumericIds => m.numeric_ids = bool3_value(p, value)?,
        Param::OpenNoatime => m.open_noatime = bool3_value(p, value)?,
        Param::UseChroot => m.use_chroot = bool3_value(p, value)?,
        global => return Err(SyntaxError::GlobalInModule(global.label())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stock_label_resolves() {
        // The full list from daemon-parm.txt, public names.
        let stock = [
            "address",
            "daemon chroot",
            "daemon gid",
            "daemon uid",
            "motd file",
            "pid file",
            "proxy protocol hosts",
            "socket options",
            "listen backlog",
            "port",
            "proxy protocol",
            "auth digest",
            "auth users",
            "charset",
            "comment",
            "dont compress",
            "early exec",
            "exclude",
            "exclude from",
            "filter",
            "gid",
            "hosts allow",
            "hosts deny",
            "include",
            "include from",
            "incoming chmod",
            "lock file",
            "log file",
            "log format",
            "name",
            "name converter",
            "outgoing chmod",
            "post-xfer exec",
            "pre-xfer exec",
            "refuse options",
            "secrets file",
            "syslog tag",
            "uid",
            "path",
            "temp dir",
            "max connections",
            "max verbosity",
            "timeout",
            "syslog facility",
            "fake super",
            "forward lookup",
            "ignore errors",
            "ignore nonreadable",
            "insecure links",
            "list",
            "read only",
            "reverse lookup",
            "strict modes",
            "transfer logging",
            "write only",
            "munge symlinks",
            "numeric ids",
            "open noatime",
            "use chroot",
        ];
        assert_eq!(stock.len(), TABLE.len());
        for name in stock {
            let p = Param::lookup(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(p.label(), name);
        }
    }

    #[test]
    fn spelling_variants() {
        for n in [
            "read only",
            "ReadOnly",
            "readonly",
            "READ   ONLY",
            " r e a d o n l y ",
        ] {
            assert_eq!(Param::lookup(n), Some(Param::ReadOnly), "{n}");
        }
        assert_eq!(Param::lookup("Pre-Xfer Exec"), Some(Param::PreXferExec));
        assert_eq!(Param::lookup("prexfer exec"), None);
        assert_eq!(Param::lookup("pre_xfer_exec"), None);
        assert_eq!(Param::lookup("bind address"), None);
        assert_eq!(Param::lookup("rsync port"), None);
        assert_eq!(Param::lookup("-path"), None);
        assert_eq!(Param::lookup("includefrom"), Some(Param::IncludeFrom));
        assert_eq!(Param::lookup("include"), Some(Param::Include));
    }

    #[test]
    fn booleans() {
        for v in ["yes", "YES", "Yes", "true", "TRUE", "True", "1", " y e s "] {
            assert_eq!(parse_bool3(v, false), Some(Some(true)), "{v}");
        }
        for v in ["no", "NO", "No", "false", "FALSE", "False", "0"] {
            assert_eq!(parse_bool3(v, false), Some(Some(false)), "{v}");
        }
        for v in ["unset", "UNSET", "-1"] {
            assert_eq!(parse_bool3(v, true), Some(None), "{v}");
            assert_eq!(parse_bool3(v, false), None, "{v}");
        }
        for v in ["on", "off", "", "2", "yess", "y", "n"] {
            assert_eq!(parse_bool3(v, true), None, "{v}");
        }
    }

    #[test]
    fn typed_assignment() {
        let mut m = ModuleConfig::default();
        set_local(Param::Path, &mut m, "/srv/x///").unwrap();
        assert_eq!(m.path.as_deref(), Some("/srv/x"));
        set_local(Param::Path, &mut m, "/").unwrap();
        assert_eq!(m.path.as_deref(), Some("/"));
        set_local(Param::Path, &mut m, "").unwrap();
        assert_eq!(m.path.as_deref(), Some(""));
        set_local(Param::MaxConnections, &mut m, "-1").unwrap();
        assert_eq!(m.max_connections, -1);
        assert!(matches!(
            set_local(Param::Timeout, &mut m, "12x"),
            Err(SyntaxError::BadInteger {
                name: "timeout",
                ..
            })
        ));
        assert!(matches!(
            set_local(Param::ReadOnly, &mut m, "off"),
            Err(SyntaxError::BadBoolean {
                name: "read only",
                ..
            })
        ));
        set_local(Param::UseChroot, &mut m, "unset").unwrap();
        assert_eq!(m.use_chroot, None);
        set_local(Param::SyslogFacility, &mut m, "LOCAL3").unwrap();
        assert_eq!(m.syslog_facility, SyslogFacility::LOCAL3);
        assert!(set_local(Param::SyslogFacility, &mut m, "nope").is_err());
        assert!(matches!(
            set_local(Param::Port, &mut m, "1"),
            Err(SyntaxError::GlobalInModule("port"))
        ));
        let mut g = GlobalConfig::default();
        set_global(Param::Port, &mut g, "8873").unwrap();
        assert_eq!(g.port, 8873);
        assert!(set_global(Param::Port, &mut g, "70000").is_err());
        set_global(Param::ReadOnly, &mut g, "false").unwrap();
        assert!(!g.defaults.read_only);
    }
}
