//! Tests of the whole config loader: dialect, sections, defaults,
//! includes, dparams, errors.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("rrsync-cfg-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse(text: &str) -> DaemonConfig {
    parse_str(text, "test.conf").unwrap()
}

fn parse_err(text: &str) -> String {
    parse_str(text, "test.conf").unwrap_err().to_string()
}

#[test]
fn defaults_match_stock() {
    let c = parse("[m]\npath = /srv\n");
    let m = c.module("m").unwrap();
    assert_eq!(m.path.as_deref(), Some("/srv"));
    assert!(m.list && m.read_only && !m.write_only && m.strict_modes);
    assert!(m.reverse_lookup && m.forward_lookup);
    assert!(!m.fake_super && !m.ignore_errors && !m.ignore_nonreadable);
    assert!(!m.transfer_logging && !m.insecure_links);
    assert_eq!(m.max_connections, 0);
    assert_eq!(m.max_verbosity, 1);
    assert_eq!(m.timeout, 0);
    assert_eq!(m.lock_file, "/var/run/rsyncd.lock");
    assert_eq!(m.log_format, "%o %h [%a] %m (%u) %f %l");
    assert_eq!(m.syslog_tag, "rsyncd");
    assert_eq!(m.syslog_facility, SyslogFacility::DAEMON);
    assert!(m.dont_compress.starts_with("*.3g2 *.3gp") && m.dont_compress.ends_with("*.zst"));
    assert_eq!(
        (
            m.use_chroot,
            m.numeric_ids,
            m.munge_symlinks,
            m.open_noatime
        ),
        (None, None, None, None)
    );
    assert_eq!(m.uid, None);
    assert_eq!(c.global.listen_backlog, 5);
    assert_eq!(c.global.port, 0);
    assert_eq!(c.global.listen_port(), 873);
    assert!(!c.global.proxy_protocol);
}

#[test]
fn a_full_config() {
    let c = parse(
        "# sample\n\
         motd file = /etc/motd\n\
         pid file = /run/rsyncd.pid\n\
         port = 8730\n\
         address = 127.0.0.1\n\
         socket options = SO_KEEPALIVE\n\
         log file = /var/log/rsyncd.log\n\
         syslog facility = local5\n\
         listen backlog = 64\n\
         proxy protocol = yes\n\
         proxy protocol hosts = 10.0.0.1\n\
         daemon chroot = /jail\n\
         daemon uid = rsync\n\
         daemon gid = rsync\n\
         \n\
         [ftp]\n\
         \tpath = /srv/ftp/\n\
         \tcomment = public area\n\
         \tread only = no\n\
         \tauth users = alice, @staff:ro\n\
         \tsecrets file = /etc/rsyncd.secrets\n\
         \thosts allow = 10.0.0.0/8\n\
         \thosts deny = *\n\
         \texclude = /private/***\n\
         \tpre-xfer exec = /bin/check %RSYNC_USER_NAME%\n\
         \tuse chroot = false\n\
         \tmax connections = 4\n\
         \trefuse options = delete\n",
    );
    let g = &c.global;
    assert_eq!(g.motd_file.as_deref(), Some("/etc/motd"));
    assert_eq!(g.pid_file.as_deref(), Some("/run/rsyncd.pid"));
    assert_eq!(g.port, 8730);
    assert_eq!(g.listen_port(), 8730);
    assert_eq!(g.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(g.socket_options.as_deref(), Some("SO_KEEPALIVE"));
    assert_eq!(g.log_file(), Some("/var/log/rsyncd.log"));
    assert_eq!(g.syslog_facility(), SyslogFacility::LOCAL5);
    assert_eq!(g.listen_backlog, 64);
    assert!(g.proxy_protocol);
    assert_eq!(g.proxy_protocol_hosts.as_deref(), Some("10.0.0.1"));
    assert_eq!(g.daemon_chroot.as_deref(), Some("/jail"));
    assert_eq!(g.daemon_uid.as_deref(), Some("rsync"));
    assert_eq!(g.daemon_gid.as_deref(), Some("rsync"));
    assert_eq!(g.param("MotdFile"), Some("/etc/motd"));

    let m = c.module("ftp").unwrap();
    assert_eq!(m.path.as_deref(), Some("/srv/ftp"));
    assert_eq!(m.comment.as_deref(), Some("public area"));
    assert!(!m.read_only);
    assert_eq!(m.auth_users.as_deref(), Some("alice, @staff:ro"));
    assert_eq!(m.secrets_file.as_deref(), Some("/etc/rsyncd.secrets"));
    assert_eq!(m.hosts_allow.as_deref(), Some("10.0.0.0/8"));
    assert_eq!(m.hosts_deny.as_deref(), Some("*"));
    assert_eq!(m.exclude.as_deref(), Some("/private/***"));
    assert_eq!(
        m.pre_xfer_exec.as_deref(),
        Some("/bin/check %RSYNC_USER_NAME%")
    );
    assert_eq!(m.use_chroot, Some(false));
    assert_eq!(m.max_connections, 4);
    assert_eq!(m.refuse_options.as_deref(), Some("delete"));
    // Module inherits the global log file.
    assert_eq!(m.log_file.as_deref(), Some("/var/log/rsyncd.log"));
    assert_eq!(m.param("read only"), Some("no"));
    assert_eq!(m.params.len(), 12);
}

#[test]
fn case_and_space_insensitive_names() {
    for spelling in [
        "read only",
        "ReadOnly",
        "readonly",
        "READ ONLY",
        "Read   Only",
        "read\tonly",
    ] {
        let c = parse(&format!("[m]\n{spelling} = no\n"));
        assert!(!c.modules[0].read_only, "{spelling}");
    }
}

#[test]
fn every_bool_form() {
    for (v, want) in [
        ("yes", true),
        ("Yes", true),
        ("YES", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("1", true),
        ("no", false),
        ("No", false),
        ("NO", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
        ("0", false),
    ] {
        let c = parse(&format!("[m]\nlist = {v}\nfake super = {v}\n"));
        assert_eq!(c.modules[0].list, want, "{v}");
        assert_eq!(c.modules[0].fake_super, want, "{v}");
    }
    for v in ["unset", "Unset", "-1"] {
        let c = parse(&format!("[m]\nuse chroot = {v}\nnumeric ids = {v}\n"));
        assert_eq!(c.modules[0].use_chroot, None);
        assert_eq!(c.modules[0].numeric_ids, None);
    }
    for v in ["on", "off", "enable", "2", ""] {
        let e = parse_err(&format!("[m]\nlist = {v}\n"));
        assert!(
            e.starts_with("test.conf:2: badly formed boolean for 'list'"),
            "{e}"
        );
    }
    let e = parse_err("[m]\nlist = unset\n");
    assert!(e.contains("boolean"), "{e}");
}

#[test]
fn errors_name_file_and_line() {
    assert_eq!(
        parse_err("# c\n\n[m]\n  path = /x\n  foo = 1\n"),
        "test.conf:5: unknown parameter 'foo'"
    );
    assert_eq!(
        parse_err("timeout = soon\n"),
        "test.conf:1: bad integer for 'timeout': \"soon\""
    );
    assert_eq!(
        parse_err("[m]\nmax connections = 3x\n"),
        "test.conf:2: bad integer for 'max connections': \"3x\""
    );
    assert_eq!(
        parse_err("[m]\nport = 99\n"),
        "test.conf:2: global parameter 'port' found in module section"
    );
    assert!(parse_err("[a/b]\n").starts_with("test.conf:1: invalid module name"));
    assert!(parse_err("x\n").starts_with("test.conf:1: badly formed line"));
    assert!(parse_err("\n\n[m\n").starts_with("test.conf:3: section header"));
    assert!(parse_err("&frobnicate x\n").starts_with("test.conf:1: unknown directive"));
    assert!(parse_err("syslog facility = bogus\n").starts_with("test.conf:1: unknown syslog"));
    assert!(parse_err("port = 65536\n").starts_with("test.conf:1: bad integer for 'port'"));
}

#[test]
fn continuation_lines() {
    let c = parse("[m]\npath = /srv/\\\nmod\ncomment = a \\\n  b\nread \\\n only = no\n");
    let m = &c.modules[0];
    assert_eq!(m.path.as_deref(), Some("/srv/mod"));
    assert_eq!(m.comment.as_deref(), Some("a   b"));
    assert!(!m.read_only);
    // A continued line counts for line numbers.
    assert_eq!(
        parse_err("comment = a\\\nb\nbad = 1\n"),
        "test.conf:3: unknown parameter 'bad'"
    );
}

#[test]
fn comments_and_values() {
    let c = parse("; semi\n  # hash\n[m] ; after header\ncomment = has # and ; and = sign\n");
    assert_eq!(
        c.modules[0].comment.as_deref(),
        Some("has # and ; and = sign")
    );
}

#[test]
fn global_module_params_are_defaults() {
    let c = parse("read only = no\nuid = rsync\n[a]\npath=/a\n[b]\npath=/b\nread only = yes\n");
    assert!(!c.module("a").unwrap().read_only);
    assert!(c.module("b").unwrap().read_only);
    assert_eq!(c.module("a").unwrap().uid.as_deref(), Some("rsync"));
    assert_eq!(c.module("b").unwrap().uid.as_deref(), Some("rsync"));
    assert!(!c.global.defaults.read_only);
    // Raw params: the module only records its own.
    assert!(c
        .module("a")
        .unwrap()
        .params
        .iter()
        .all(|(n, _)| n == "path"));
}

#[test]
fn later_global_section_affects_only_later_modules() {
    let c = parse(
        "[a]\npath=/a\n[ GLOBAL ]\ncomment = late\nmotd file = /m\n[b]\npath=/b\n[Global]\nlist = no\n",
    );
    // Booleans are copied when the module opens...
    assert!(c.module("a").unwrap().list);
    assert!(c.module("b").unwrap().list);
    // ...but an unset string reads as the final global value (stock quirk).
    assert_eq!(c.module("a").unwrap().comment.as_deref(), Some("late"));
    assert_eq!(c.module("b").unwrap().comment.as_deref(), Some("late"));
    assert!(!c.global.defaults.list);
    assert_eq!(c.global.motd_file.as_deref(), Some("/m"));
    assert_eq!(c.modules.len(), 2);
}

/// Mirrors a listing from stock rsync 3.5.0 (`rsync rsync://host/`) of
/// this exact file: m "a    bc", empty "", early/hidden/late "final", and
/// `list = no` in the later [global] not hiding the earlier modules.
#[test]
fn matches_stock_listing_of_late_global_and_empty() {
    let c = parse(
        "[m]\npath = /tmp\ncomment = a \\\n   b\\\nc\n[empty]\npath = /tmp\ncomment =\n\
         [early]\npath = /tmp\n[hidden]\npath = /tmp\n[global]\ncomment = final\nlist = no\n\
         [late]\npath = /tmp\nlist = yes\n",
    );
    let got: Vec<_> = c
        .listed_modules()
        .map(|m| (m.name.as_str(), m.comment.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        got,
        [
            ("m", "a    bc"),
            ("empty", ""),
            ("early", "final"),
            ("hidden", "final"),
            ("late", "final")
        ]
    );
}

/// Mirrors stock rsync 3.5.0's listing of a file using &include (file and
/// directory), &merge inside a module, a reopened section and a later
/// [global].
#[test]
fn matches_stock_listing_with_includes() {
    let d = TempDir::new("stock-inc");
    d.write("d/b.conf", "comment = b-inc\n[bmod]\npath = /tmp\n");
    d.write("d/a.conf", "[amod]\npath = /tmp\n");
    d.write("d/x.inc", "comment = merged-global\n");
    let inc1 = d.write("inc1.conf", "[incm]\npath = /tmp\n");
    let dir = d.path().join("d");
    let main = d.write(
        "rsyncd.conf",
        &format!(
            "[m]\npath = /tmp\ncomment = a \\\n   b\\\nc\n&include {inc1}\ncomment = after-include\n\
             [n]\npath = /tmp\n[ GLOBAL ]\ncomment = late\n[later]\npath=/tmp\n[M]\ncomment = reopened\n\
             [multi   space]\npath = /tmp\n&include {dir}\n[afterdir]\npath = /tmp\n&merge {dir}\n\
             [aftermerge]\npath=/tmp\n",
            inc1 = inc1.display(),
            dir = dir.display()
        ),
    );
    let c = load(&main).unwrap();
    let got: Vec<_> = c
        .listed_modules()
        .map(|m| (m.name.as_str(), m.comment.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        got,
        [
            ("m", "reopened"),
            ("incm", "late"),
            ("n", "after-include"),
            ("later", "late"),
            ("multi space", "late"),
            ("amod", "late"),
            ("bmod", "b-inc"),
            ("afterdir", "merged-global"),
            ("aftermerge", "late"),
        ]
    );
}

#[test]
fn reopened_section_continues_module() {
    let c = parse("[a]\npath=/a\n[b]\npath=/b\n[A]\ncomment = again\n");
    assert_eq!(c.modules.len(), 2);
    assert_eq!(c.modules[0].name, "a");
    assert_eq!(c.modules[0].comment.as_deref(), Some("again"));
    assert_eq!(c.module("A"), None, "client lookup is exact");
}

/// Stock 3.5.0 lists this as "renamed x" and "Foo Bar merged-by-strwiEQ".
#[test]
fn matches_stock_rename_and_blank_insensitive_reopen() {
    let c = parse(
        "[a]\npath = /tmp\nname = renamed\ncomment = x\n[  Foo   Bar ]\npath=/tmp\n\
         [foobar]\ncomment = merged-by-strwiEQ\n",
    );
    let got: Vec<_> = c
        .modules
        .iter()
        .map(|m| (m.name.as_str(), m.comment.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(got, [("renamed", "x"), ("Foo Bar", "merged-by-strwiEQ")]);
}

#[test]
fn module_names_normalised() {
    let c = parse("[  my   mod  ]\npath=/x\n");
    assert_eq!(c.modules[0].name, "my mod");
    assert!(c.module("my mod").is_some());
}

#[test]
fn empty_string_is_unset() {
    let c = parse("exclude = *.o\n[a]\nexclude =\n[b]\n");
    assert_eq!(c.module("a").unwrap().exclude, None);
    assert_eq!(c.module("b").unwrap().exclude.as_deref(), Some("*.o"));
    // Explicitly empty does not fall back to a later global value.
    let c = parse("[a]\nuid =\n[b]\n[global]\nuid = late\nmotd file =\n");
    assert_eq!(c.module("a").unwrap().uid, None);
    assert_eq!(c.module("b").unwrap().uid.as_deref(), Some("late"));
    assert_eq!(c.global.motd_file, None);
    // A global path is every path-less module's path.
    let c = parse("[a]\n[global]\npath = /srv/\n");
    assert_eq!(c.module("a").unwrap().path.as_deref(), Some("/srv"));
}

#[test]
fn name_param_renames_module() {
    let c = parse("[a]\nname = b\n");
    assert!(c.module("a").is_none());
    assert!(c.module("b").is_some());
}

#[test]
fn env_expanded_in_non_string_values_only() {
    // Use an existing numeric variable rather than mutating the environment.
    let found = std::env::vars().find(|(k, v)| {
        k.starts_with(|c: char| c.is_ascii_uppercase())
            && !k.contains('%')
            && v.parse::<i32>().is_ok()
    });
    if let Some((k, v)) = found {
        let c = parse(&format!("[m]\ntimeout = %{k}%\npath = /h/%{k}%\n"));
        assert_eq!(c.modules[0].timeout, v.parse::<i32>().unwrap());
        assert_eq!(c.modules[0].path, Some(format!("/h/%{k}%")));
    }
    // An unset variable stays raw, which is then not a number.
    let e = parse_err("timeout = %RRSYNC_SURELY_UNSET_VAR%\n");
    assert!(e.contains("bad integer"), "{e}");
}

#[test]
fn include_file_scopes_globals() {
    let d = TempDir::new("inc-file");
    let inc = d.write(
        "mods.conf",
        "comment = from include\nmotd file = /inc-motd\n[inc]\npath = /inc\n",
    );
    let main = d.write(
        "rsyncd.conf",
        &format!(
            "read only = no\n[before]\npath=/b\n&include {}\n[after]\npath=/a\n",
            inc.display()
        ),
    );
    let c = load(&main).unwrap();
    let names: Vec<_> = c.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["before", "inc", "after"]);
    let inc_m = c.module("inc").unwrap();
    // Inherits the parent's defaults, plus its own global-context values.
    assert!(!inc_m.read_only);
    assert_eq!(inc_m.comment.as_deref(), Some("from include"));
    // The include's globals do not leak out.
    assert_eq!(c.module("after").unwrap().comment, None);
    assert_eq!(c.global.motd_file, None);
    assert!(!c.module("after").unwrap().read_only);
}

#[test]
fn after_include_parser_is_in_global_context() {
    let d = TempDir::new("inc-ctx");
    let inc = d.write("x.conf", "[inc]\npath=/i\n");
    let main = d.write(
        "rsyncd.conf",
        &format!(
            "[m]\npath=/m\n&include {}\ncomment = where\n[n]\n",
            inc.display()
        ),
    );
    let c = load(&main).unwrap();
    assert_eq!(c.global.defaults.comment.as_deref(), Some("where"));
    assert_eq!(c.module("n").unwrap().params, vec![]);
    // Unset strings fall back to that final global value.
    assert_eq!(c.module("m").unwrap().comment.as_deref(), Some("where"));
    assert_eq!(c.module("inc").unwrap().comment.as_deref(), Some("where"));
}

#[test]
fn merge_file_is_inline() {
    let d = TempDir::new("merge-file");
    let inc = d.write("snippet.inc", "comment = merged\nread only = no\n");
    let main = d.write(
        "rsyncd.conf",
        &format!(
            "motd file = /m\n&merge {p}\n[a]\npath=/a\n&merge {p}\n[b]\n",
            p = inc.display()
        ),
    );
    let c = load(&main).unwrap();
    // First merge set globals (leaks, by design); second set module a's params.
    assert_eq!(c.global.defaults.comment.as_deref(), Some("merged"));
    assert_eq!(c.module("a").unwrap().comment.as_deref(), Some("merged"));
    assert!(c
        .module("a")
        .unwrap()
        .params
        .iter()
        .any(|(n, _)| n == "comment"));
    assert_eq!(c.module("b").unwrap().comment.as_deref(), Some("merged"));
    assert_eq!(c.global.motd_file.as_deref(), Some("/m"));
}

#[test]
fn include_and_merge_directories() {
    let d = TempDir::new("inc-dir");
    d.write("rsyncd.d/b.conf", "comment = b\n[bmod]\npath=/b\n");
    d.write("rsyncd.d/a.conf", "[amod]\npath=/a\n");
    d.write("rsyncd.d/c.conf.disabled", "[nope]\n");
    d.write("rsyncd.d/z.inc", "list = no\n");
    d.write("rsyncd.d/y.inc", "max verbosity = 3\n");
    d.write("rsyncd.d/readme.txt", "not config\n");
    let dir = d.path().join("rsyncd.d");
    let main = d.write(
        "rsyncd.conf",
        &format!(
            "&merge {p}\n&include {p}\n&INCLUDE = {p}/b.conf\n",
            p = dir.display()
        ),
    );
    let c = load(&main).unwrap();
    let names: Vec<_> = c.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["amod", "bmod"]);
    let a = c.module("amod").unwrap();
    // Merged *.inc globals apply to included modules; b.conf's comment does
    // not leak into a.conf (each file starts from the saved defaults).
    assert!(!a.list);
    assert_eq!(a.max_verbosity, 3);
    assert_eq!(a.comment, None);
    assert_eq!(c.module("bmod").unwrap().comment.as_deref(), Some("b"));
    assert_eq!(c.global.defaults.comment, None);
}

#[test]
fn empty_include_dir_is_fine() {
    let d = TempDir::new("inc-empty");
    std::fs::create_dir(d.path().join("empty")).unwrap();
    let c = parse_str(
        &format!(
            "[m]\n&include {}\ncomment = still m\n",
            d.path().join("empty").display()
        ),
        "t",
    )
    .unwrap();
    // No files: no context switch either.
    assert_eq!(c.modules[0].comment.as_deref(), Some("still m"));
}

#[test]
fn include_loop_is_an_error() {
    let d = TempDir::new("inc-loop");
    let a = d.path().join("a.conf");
    let b = d.path().join("b.conf");
    d.write("a.conf", &format!("[a]\n&merge {}\n", b.display()));
    d.write("b.conf", &format!("# b\n&include {}\n", a.display()));
    let e = load(&a).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}:2: include loop", b.display())),
        "{e}"
    );

    // Self-include through a directory.
    let d2 = TempDir::new("inc-loop-dir");
    let s = d2.write("self.conf", &format!("&include {}\n", d2.path().display()));
    let e = load(&s).unwrap_err().to_string();
    assert!(e.contains("include loop"), "{e}");
}

#[test]
fn same_file_included_twice_is_not_a_loop() {
    let d = TempDir::new("inc-twice");
    let inc = d.write("x.inc", "comment = x\n");
    let main = d.write(
        "m.conf",
        &format!("&merge {p}\n&merge {p}\n", p = inc.display()),
    );
    assert!(load(&main).is_ok());
}

#[test]
fn include_errors() {
    let d = TempDir::new("inc-err");
    let e = parse_err(&format!(
        "\n&include {}\n",
        d.path().join("missing").display()
    ));
    assert!(e.starts_with("test.conf:2: unable to read include"), "{e}");
    let bad = d.write("bad.conf", "ok = 1\n");
    let main = d.write("m.conf", &format!("&include {}\n", bad.display()));
    let e = load(&main).unwrap_err().to_string();
    assert_eq!(e, format!("{}:1: unknown parameter 'ok'", bad.display()));
}

#[test]
fn relative_include_is_relative_to_cwd() {
    // Stock uses the path as given; a relative one names a cwd-relative file.
    let e = parse_err("&include surely/not/here/rrsync-cfg.conf\n");
    assert!(e.contains("\"surely/not/here/rrsync-cfg.conf\""), "{e}");
}

#[test]
fn load_missing_file() {
    let e = load(Path::new("/nonexistent/rrsync.conf")).unwrap_err();
    assert!(matches!(e, ConfigError::Open { .. }));
    assert!(e
        .to_string()
        .starts_with("unable to open config file \"/nonexistent/rrsync.conf\""));
}

#[test]
fn non_utf8_only_matters_in_items() {
    let d = TempDir::new("utf8");
    let p = d.path().join("x.conf");
    std::fs::write(&p, b"# caf\xe9 comment\n[m]\npath = /srv\n").unwrap();
    assert!(load(&p).is_ok());
    std::fs::write(&p, b"[m]\npath = /srv/caf\xe9\n").unwrap();
    let e = load(&p).unwrap_err().to_string();
    assert!(e.ends_with(":2: line is not valid UTF-8"), "{e}");
}

#[test]
fn dparams_in_options_apply_after_first_global_section() {
    let opts = ParseOptions {
        dparams: vec![
            "motdfile=/dp-motd".into(),
            "read only = no".into(),
            "Comment= dp ".into(),
        ],
        globals_only: false,
    };
    let c = parse_str_with(
        "motd file = /conf-motd\ncomment = conf\n[a]\npath=/a\n[b]\ncomment = own\n",
        "t",
        &opts,
    )
    .unwrap();
    assert_eq!(c.global.motd_file.as_deref(), Some("/dp-motd"));
    assert!(!c.module("a").unwrap().read_only);
    // Leading blanks skipped, trailing kept (as stock).
    assert_eq!(c.module("a").unwrap().comment.as_deref(), Some("dp "));
    assert_eq!(c.module("b").unwrap().comment.as_deref(), Some("own"));

    // No modules: applied at the end.
    let c = parse_str_with("motd file = /x\n", "t", &opts).unwrap();
    assert_eq!(c.global.motd_file.as_deref(), Some("/dp-motd"));

    let bad = ParseOptions {
        dparams: vec!["nosuch=1".into()],
        globals_only: false,
    };
    let e = parse_str_with("[a]\n", "t", &bad).unwrap_err().to_string();
    assert_eq!(e, "--dparam \"nosuch=1\": unknown parameter 'nosuch'");
}

#[test]
fn globals_only_stops_at_first_section() {
    let opts = ParseOptions {
        dparams: vec!["pidfile=/dp.pid".into()],
        globals_only: true,
    };
    let c = parse_str_with(
        "port = 1234\n[a]\nbogus = 1\n[global]\nport = 99\n",
        "t",
        &opts,
    )
    .unwrap();
    assert_eq!(c.global.port, 1234);
    assert!(c.modules.is_empty());
    assert_eq!(c.global.pid_file.as_deref(), Some("/dp.pid"));
}

#[test]
fn globals_only_include_does_not_scope() {
    let d = TempDir::new("globals-only");
    let inc = d.write("g.conf", "port = 555\n[m]\n");
    let opts = ParseOptions {
        dparams: vec![],
        globals_only: true,
    };
    let text = format!("&include {}\nmotd file = /never\n", inc.display());
    let c = parse_str_with(&text, "t", &opts).unwrap();
    assert_eq!(c.global.port, 555);
    assert_eq!(
        c.global.motd_file, None,
        "reading stopped at [m] inside the include"
    );
    // A full load scopes the include's globals away.
    let c = parse_str(&text, "t").unwrap();
    assert_eq!(c.global.port, 0);
    assert_eq!(c.global.motd_file.as_deref(), Some("/never"));
}

#[test]
fn apply_dparam_after_load() {
    let mut c = parse("[a]\npath=/a\n[b]\npath=/b\nread only = yes\n");
    c.apply_dparam("pid file=/p").unwrap();
    c.apply_dparam("readonly=no").unwrap();
    assert_eq!(c.global.pid_file.as_deref(), Some("/p"));
    assert!(!c.global.defaults.read_only);
    assert!(!c.module("a").unwrap().read_only);
    assert!(
        c.module("b").unwrap().read_only,
        "explicit module setting wins"
    );
    assert!(c.apply_dparam("nope").is_err());
    assert!(c.apply_dparam("nosuch=1").is_err());
    assert!(c.apply_dparam("timeout=x").is_err());
    assert!(check_dparam("port=873").is_ok());
    assert!(check_dparam("port").is_err());
}

#[test]
fn uid_gid_resolution() {
    let c = parse("[a]\n[b]\nuid = alice\ngid = ,Domain Users , wheel,\n[c]\ngid = * staff,adm\n");
    let a = c.module("a").unwrap();
    assert_eq!(a.effective_uid(true), Some("nobody"));
    assert_eq!(a.effective_uid(false), None);
    assert_eq!(a.effective_gids(true, "nogroup"), ["nogroup"]);
    assert!(a.effective_gids(false, "nogroup").is_empty());
    let b = c.module("b").unwrap();
    assert_eq!(b.effective_uid(true), Some("alice"));
    assert_eq!(b.effective_gids(false, "x"), ["Domain Users", "wheel"]);
    assert_eq!(
        c.module("c").unwrap().effective_gids(true, "x"),
        ["*", "staff", "adm"]
    );
    assert_eq!(
        nobody_group_from_etc_group("root:x:0:\nnogroup:x:65534:\n"),
        "nogroup"
    );
    assert_eq!(
        nobody_group_from_etc_group("nobody:x:99:\nnogroup:x:65534:\n"),
        "nobody"
    );
    assert_eq!(nobody_group_from_etc_group(""), "nobody");
}

#[test]
fn chroot_numeric_ids_munge_resolution() {
    let c = parse(
        "[plain]\npath=/srv\n[split]\npath=/srv/./inner\n[yes]\nuse chroot = yes\n\
         [conv]\nname converter = /bin/nc\n[numno]\nnumeric ids = no\n[numyes]\nnumeric ids=yes\n\
         [mungeoff]\nmunge symlinks = no\n[atime]\nopen noatime = yes\n",
    );
    let m = |n| c.module(n).unwrap();
    assert!(m("plain").use_chroot_with(|| true));
    assert!(!m("plain").use_chroot_with(|| false));
    assert!(m("split").use_chroot_with(|| false));
    assert!(m("yes").use_chroot_with(|| false));
    assert!(m("plain").numeric_ids_with(true));
    assert!(!m("plain").numeric_ids_with(false));
    assert!(!m("conv").numeric_ids_with(true));
    assert!(!m("numno").numeric_ids_with(true));
    assert!(m("numyes").numeric_ids_with(false));
    assert!(!m("plain").munge_symlinks_with(true, false));
    assert!(m("plain").munge_symlinks_with(true, true));
    assert!(m("plain").munge_symlinks_with(false, false));
    assert!(!m("mungeoff").munge_symlinks_with(false, true));
    assert!(m("atime").open_noatime_with(false));
    assert!(!m("plain").open_noatime_with(false));
    assert!(m("plain").open_noatime_with(true));
}

#[test]
fn disabled_and_listed() {
    let c = parse("[a]\nmax connections = -1\n[b]\nlist = no\n[c]\n");
    assert!(c.module("a").unwrap().is_disabled());
    let listed: Vec<_> = c.listed_modules().map(|m| m.name.as_str()).collect();
    assert_eq!(listed, ["a", "c"]);
}

#[test]
fn syslog_facilities() {
    assert_eq!(
        SyslogFacility::parse("Security"),
        Some(SyslogFacility::AUTH)
    );
    assert_eq!(
        SyslogFacility::parse("local7"),
        Some(SyslogFacility::LOCAL7)
    );
    assert_eq!(SyslogFacility::parse("kern"), Some(SyslogFacility::KERN));
    assert_eq!(SyslogFacility::parse("136"), Some(SyslogFacility(136)));
    assert_eq!(SyslogFacility::parse("0"), None);
    assert_eq!(SyslogFacility::parse("nope"), None);
    assert_eq!(SyslogFacility::DAEMON.name(), Some("daemon"));
}

#[test]
fn split_conf_list_forms() {
    assert_eq!(split_conf_list("a, b  c,,d"), ["a", "b", "c", "d"]);
    assert_eq!(split_conf_list("  ,a b, c ,"), ["a b", "c"]);
    assert!(split_conf_list("  ").is_empty());
}

proptest::proptest! {
    #![proptest_config(crate::testing::proptest_config())]
    #[test]
    fn parse_never_panics(text in "[\\[\\]=&#;\\\\ a-z\n\t/.%A-Z]{0,200}") {
        let _ = parse_str(&text, "fuzz");
    }

    #[test]
    fn comment_roundtrip(name in "[a-z][a-z0-9_.-]{0,12}", comment in "[!-~]([ -~]{0,30}[!-~])?") {
        proptest::prop_assume!(!comment.ends_with('\\') && !name.contains('/'));
        proptest::prop_assume!(!table::names_equal(&name, "global"));
        let c = parse_str(&format!("[{name}]\ncomment = {comment}\n"), "p").unwrap();
        proptest::prop_assert_eq!(c.modules[0].comment.as_deref(), Some(comment.as_str()));
        proptest::prop_assert_eq!(&c.modules[0].name, &name);
    }
}
