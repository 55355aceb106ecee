//! Daemon operations (issue 5): `early exec`, `daemon chroot` / `daemon
//! uid` / `daemon gid`, `--sockopts` and `socket options`, the daemon's
//! `--bwlimit`, SIGHUP (config re-read, keeps serving) and SIGTERM (clean
//! exit, pid file removed). Each case runs the same stock client against a
//! stock daemon and ours with the same config and compares what the client
//! sees, the resulting tree and what the hook commands record.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::bins;
use crate::harness::compare::normalize_stderr;
use crate::harness::daemon::Daemon;
use crate::harness::fixture::{nobody_ids, small_tree, write_random};
use crate::harness::process::{client_timeout, run_cmd, Outcome};
use crate::harness::tmp::TempDir;
use crate::harness::tree::{diff, format_diff, snapshot};

/// The two daemons of a case, by label.
const SIDES: [&str; 2] = ["stock", "ours"];

fn daemon_bin(side: &str) -> PathBuf {
    if side == "stock" {
        bins::stock()
    } else {
        bins::ours()
    }
}

/// A stock client pulling `remote` from `d` into `dest` with `args` first.
fn pull(d: &Daemon, args: &[&str], remote: &str, dest: &Path) -> Outcome {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.push(d.url(remote));
    v.push(format!("{}/", dest.display()));
    run_cmd(&bins::stock(), v, None, client_timeout())
}

/// Make every directory from `/` down to `p` searchable by others (the
/// temp base may be private), so a daemon running as nobody reaches it.
fn open_path(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut cur = PathBuf::new();
    for c in p.components() {
        cur.push(c);
        if let Ok(m) = std::fs::metadata(&cur) {
            let mode = m.permissions().mode();
            if mode & 0o005 != 0o005 {
                let _ =
                    std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(mode | 0o005));
            }
        }
    }
}

/// Every stderr line, minus source locations and version tags.
fn all_lines(s: &str) -> Vec<String> {
    s.lines()
        .map(crate::harness::compare::strip_location_and_tag)
        .collect()
}

fn assert_same_tree(src: &Path, dest: &Path, who: &str) {
    let d = diff("src", &snapshot(src), who, &snapshot(dest));
    assert!(
        d.is_empty(),
        "{who}: tree differs from the source:\n{}",
        format_diff(&d, 20)
    );
}

compat_test! {
    fn early_exec_failure_refuses_the_connection() {
        let work = TempDir::new("early_fail");
        let src = work.join("src");
        small_tree(&src);
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n    early exec = exit 2\n",
            src.display()
        );
        let mut seen = Vec::new();
        for side in SIDES {
            let d = Daemon::start(&daemon_bin(side), &conf, side);
            let dest = work.join(format!("dest-{side}"));
            let o = pull(&d, &["-a"], "mod/", &dest);
            assert!(!dest.join("a.txt").exists(), "{side}: transfer ran");
            seen.push((o.code, normalize_stderr(&o.stderr), o.describe()));
        }
        assert_eq!(seen[0].0, 5, "stock: {}", seen[0].2);
        assert_eq!((seen[1].0, &seen[1].1), (seen[0].0, &seen[0].1), "ours: {}\nstock: {}", seen[1].2, seen[0].2);
    }
}

compat_test! {
    fn early_exec_gets_environment_and_early_input() {
        let work = TempDir::new("early_env");
        let src = work.join("src");
        small_tree(&src);
        let input = work.join("early-input.txt");
        std::fs::write(&input, b"token=abc123\nsecond line\n").expect("write early input");
        let mut records = Vec::new();
        for side in SIDES {
            let record = work.join(format!("early-{side}.txt"));
            let conf = format!(
                "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n    early exec = {{ echo \"r=$RSYNC_REQUEST m=$RSYNC_MODULE_NAME a=$RSYNC_HOST_ADDR u=$RSYNC_USER_NAME arg0=$RSYNC_ARG0\"; cat; }} > {}\n",
                src.display(),
                record.display()
            );
            let d = Daemon::start(&daemon_bin(side), &conf, side);
            let dest = work.join(format!("dest-{side}"));
            let early = format!("--early-input={}", input.display());
            let o = pull(&d, &["-a", &early], "mod/", &dest);
            assert_eq!(o.code, 0, "{side}: {}", o.describe());
            assert_same_tree(&src, &dest, side);
            records.push(std::fs::read_to_string(&record).unwrap_or_else(|_| format!("no record; log:\n{}", d.logs())));
        }
        assert!(records[0].contains("token=abc123"), "stock record: {}", records[0]);
        assert_eq!(records[1], records[0], "early exec saw something else than stock's");
    }
}

compat_test! {
    fn daemon_uid_gid_apply_to_every_connection() {
        // As root: the connection drops to nobody before the greeting, so
        // hooks run as nobody and an unreadable file is not sent.
        let (uid, gid) = nobody_ids();
        let work = TempDir::new("daemon_uid");
        open_path(work.path());
        let src = work.join("src");
        small_tree(&src);
        crate::harness::fixture::chmod(&src, "b.txt", 0o600);
        let rec_dir = work.join("records");
        std::fs::create_dir_all(&rec_dir).expect("records dir");
        crate::harness::fixture::chmod(work.path(), "records", 0o777);
        let mut seen = Vec::new();
        for side in SIDES {
            let record = rec_dir.join(format!("pre-{side}.txt"));
            let conf = format!(
                "use chroot = no\ndaemon uid = {uid}\ndaemon gid = {gid}\n[mod]\n    path = {}\n    pre-xfer exec = echo \"uid=$(id -u) gid=$(id -g)\" > {}\n",
                src.display(),
                record.display()
            );
            let d = Daemon::start(&daemon_bin(side), &conf, side);
            let dest = work.join(format!("dest-{side}"));
            let o = pull(&d, &["-rt"], "mod/", &dest);
            let rec = std::fs::read_to_string(&record).unwrap_or_else(|_| format!("no record; log:\n{}", d.logs()));
            seen.push((o.code, dest.join("b.txt").exists(), dest.join("a.txt").exists(), rec, o.describe()));
        }
        assert_eq!(seen[0].3, format!("uid={uid} gid={gid}\n"), "stock: {}", seen[0].4);
        assert_eq!(seen[0].0, 23, "stock: {}", seen[0].4);
        assert_eq!(
            (seen[1].0, seen[1].1, seen[1].2, &seen[1].3),
            (seen[0].0, seen[0].1, seen[0].2, &seen[0].3),
            "ours: {}\nstock: {}",
            seen[1].4,
            seen[0].4
        );
    }
}

compat_test! {
    fn daemon_chroot_confines_every_module() {
        let work = TempDir::new("daemon_chroot");
        let jail = work.join("jail");
        small_tree(&jail.join("pub"));
        std::fs::write(work.join("outside.txt"), b"outside the jail\n").expect("write outside");
        let conf = format!(
            "use chroot = no\nuid = 0\ngid = 0\ndaemon chroot = {}\n[mod]\n    path = /pub\n[named]\n    path = /pub\n    uid = root\n",
            jail.display()
        );
        let mut codes = Vec::new();
        for side in SIDES {
            let d = Daemon::start(&daemon_bin(side), &conf, side);
            let dest = work.join(format!("dest-{side}"));
            let o = pull(&d, &["-a"], "mod/", &dest);
            assert_eq!(o.code, 0, "{side}: {}\n{}", o.describe(), d.logs());
            assert_same_tree(&jail.join("pub"), &dest, side);
            // What lies beside the jail cannot be named.
            let esc = work.join(format!("esc-{side}"));
            let o2 = pull(&d, &["-a"], "mod/../../outside.txt", &esc);
            assert!(!esc.join("outside.txt").exists(), "{side}: read outside the daemon chroot");
            // Names are looked up inside the daemon chroot, as upstream
            // does: with no passwd file there, "root" is unknown.
            let named = work.join(format!("named-{side}"));
            let o3 = pull(&d, &["-a"], "named/", &named);
            codes.push((o2.code, normalize_stderr(&o2.stderr), o3.code, normalize_stderr(&o3.stderr)));
        }
        assert_eq!(codes[1], codes[0], "escape attempt answered differently");
    }
}

compat_test! {
    fn sockopts_unknown_names_are_reported_and_the_rest_applies() {
        let work = TempDir::new("sockopts");
        let src = work.join("src");
        small_tree(&src);
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\nsocket options = SO_KEEPALIVE\n[mod]\n    path = {}\n",
            src.display()
        );
        let mut out = Vec::new();
        for side in SIDES {
            let d = Daemon::start_args(&daemon_bin(side), &conf, side, &["--sockopts=SO_RCVBUF=262144,BOGUS_OPT"]);
            let dest = work.join(format!("dest-{side}"));
            let o = pull(&d, &["-a", "--sockopts=TCP_NODELAY,NOPE_OPT"], "mod/", &dest);
            assert_eq!(o.code, 0, "{side}: {}", o.describe());
            assert_same_tree(&src, &dest, side);
            let logs = d.logs();
            assert!(logs.contains("Unknown socket option BOGUS_OPT"), "{side} daemon did not report: {logs}");
            out.push(all_lines(&o.stderr));
        }
        assert!(out[0].iter().any(|l| l.contains("Unknown socket option NOPE_OPT")), "stock client: {:?}", out[0]);
        // Our client, pulling from the stock daemon, reports as the stock client does.
        let d = Daemon::start(&bins::stock(), &conf, "stock-for-client");
        let dest = work.join("dest-client");
        let o = run_cmd(
            &bins::ours(),
            ["-a".to_string(), "--sockopts=TCP_NODELAY,NOPE_OPT".into(), d.url("mod/"), format!("{}/", dest.display())],
            None,
            client_timeout(),
        );
        assert_eq!(o.code, 0, "our client: {}", o.describe());
        assert_same_tree(&src, &dest, "our client");
        assert_eq!(all_lines(&o.stderr), out[0], "our client's report differs from stock's");
    }
}

compat_test! {
    fn daemon_bwlimit_caps_what_clients_get() {
        // 384 KiB at the daemon's 256 KiB/s takes over a second, whatever
        // the client asks for (a client may only ask for less).
        let work = TempDir::new("daemon_bwlimit");
        let src = work.join("src");
        write_random(&src, "big.bin", 7, 384 * 1024);
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n",
            src.display()
        );
        for side in SIDES {
            let d = Daemon::start_args(&daemon_bin(side), &conf, side, &["--bwlimit=256"]);
            let dest = work.join(format!("dest-{side}"));
            let t = Instant::now();
            let o = pull(&d, &["-a", "--bwlimit=100000"], "mod/", &dest);
            let took = t.elapsed();
            assert_eq!(o.code, 0, "{side}: {}", o.describe());
            assert_same_tree(&src, &dest, side);
            assert!(took >= Duration::from_millis(900), "{side}: 384 KiB at 256 KiB/s took only {took:?}");
        }
    }
}

compat_test! {
    fn sighup_keeps_serving_and_new_connections_read_the_new_config() {
        // Stock rsync exits on SIGHUP (upstream: "do not send the daemon a
        // HUP"); the issue asks that it re-read the config instead, which
        // ours does for every new connection.
        let work = TempDir::new("sighup");
        let src = work.join("src");
        small_tree(&src);
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n",
            src.display()
        );
        let d = Daemon::start(&bins::ours(), &conf, "ours");
        let listing = |d: &Daemon| run_cmd(&bins::stock(), [d.url("")], None, client_timeout());
        let before = listing(&d);
        assert_eq!(before.code, 0, "{}", before.describe());
        assert!(!before.stdout.contains("added"), "{}", before.stdout);
        std::fs::write(d.config_path(), format!("{conf}[added]\n    path = {}\n    comment = new module\n", src.display()))
            .expect("rewrite config");
        d.signal(nix::sys::signal::Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(100));
        let after = listing(&d);
        assert_eq!(after.code, 0, "after SIGHUP: {}\n{}", after.describe(), d.logs());
        assert!(after.stdout.lines().any(|l| l.starts_with("added") && l.ends_with("new module")), "{}", after.stdout);
        let dest = work.join("dest");
        let o = pull(&d, &["-a"], "added/", &dest);
        assert_eq!(o.code, 0, "{}", o.describe());
        assert_same_tree(&src, &dest, "ours");
    }
}

compat_test! {
    fn sigterm_ends_cleanly_and_removes_the_pid_file() {
        let work = TempDir::new("sigterm");
        let src = work.join("src");
        small_tree(&src);
        for side in SIDES {
            let pid_file = work.join(format!("{side}.pid"));
            let conf = format!(
                "use chroot = no\nuid = root\ngid = root\npid file = {}\n[mod]\n    path = {}\n",
                pid_file.display(),
                src.display()
            );
            let mut d = Daemon::start(&daemon_bin(side), &conf, side);
            let pid: u32 = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(|| panic!("{side}: no pid file"));
            assert_eq!(pid, d.pid(), "{side}: pid file names another process");
            let dest = work.join(format!("dest-{side}"));
            let o = pull(&d, &["-a"], "mod/", &dest);
            assert_eq!(o.code, 0, "{side}: {}", o.describe());
            d.signal(nix::sys::signal::Signal::SIGTERM);
            let st = d.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| panic!("{side}: still running after SIGTERM"));
            assert_eq!(st.code(), Some(0), "{side}: exit status {st:?}");
            assert!(!pid_file.exists(), "{side}: pid file left behind");
            let log = std::fs::read_to_string(d.log_path()).unwrap_or_default();
            assert!(log.contains("sent 0 bytes  received 0 bytes  total size 0"), "{side}: {log}");
        }
    }
}

compat_test! {
    fn chroot_modules_symlinks_and_inner_paths() {
        // use chroot = yes: links are stored as sent (no munging at the
        // chroot's root); a "outer/./inner" path chroots to outer and serves
        // inner, where links are munged again. Pushed, then pulled back.
        let work = TempDir::new("chroot_links");
        let src = work.join("src");
        small_tree(&src);
        crate::harness::fixture::symlink(&src, "abs", "/etc/passwd");
        crate::harness::fixture::symlink(&src, "up", "../../x");
        crate::harness::fixture::pin_times(&src, &[]);
        let mut got = Vec::new();
        for side in SIDES {
            let root = work.join(format!("root-{side}"));
            let outer = work.join(format!("outer-{side}"));
            std::fs::create_dir_all(&root).expect("root");
            std::fs::create_dir_all(outer.join("inner")).expect("inner");
            let conf = format!(
                "use chroot = yes\nuid = root\ngid = root\nread only = no\n[root]\n    path = {}\n[split]\n    path = {}/./inner\n",
                root.display(),
                outer.display()
            );
            let d = Daemon::start(&daemon_bin(side), &conf, side);
            for m in ["root", "split"] {
                let o = run_cmd(
                    &bins::stock(),
                    ["-a".to_string(), format!("{}/", src.display()), d.url(&format!("{m}/"))],
                    None,
                    client_timeout(),
                );
                assert_eq!(o.code, 0, "{side} push to {m}: {}", o.describe());
                let back = work.join(format!("back-{side}-{m}"));
                let o = pull(&d, &["-a"], &format!("{m}/"), &back);
                assert_eq!(o.code, 0, "{side} pull from {m}: {}", o.describe());
            }
            got.push((root, outer.join("inner")));
        }
        for m in ["root", "split"] {
            let (s, o) = (work.join(format!("back-stock-{m}")), work.join(format!("back-ours-{m}")));
            let d = diff("stock", &snapshot(&s), "ours", &snapshot(&o));
            assert!(d.is_empty(), "{m}: pulled back trees differ:\n{}", format_diff(&d, 20));
        }
        for i in [0, 1] {
            let (s, o) = (&got[0], &got[1]);
            let (a, b) = if i == 0 { (&s.0, &o.0) } else { (&s.1, &o.1) };
            for link in ["abs", "up"] {
                assert_eq!(
                    std::fs::read_link(b.join(link)).ok(),
                    std::fs::read_link(a.join(link)).ok(),
                    "stored link {link} in {}",
                    b.display()
                );
            }
        }
    }
}

compat_test! {
    fn percent_vars_expand_per_connection() {
        // path = .../homes/%RSYNC_USER_NAME%: each user gets their own
        // tree; %VAR% from the environment works anywhere.
        use std::os::unix::fs::PermissionsExt;
        let work = TempDir::new("percent_vars");
        small_tree(&work.join("homes/alice"));
        crate::harness::fixture::write_random(&work.join("homes/bob"), "bob.bin", 3, 5000);
        crate::harness::fixture::pin_times(&work.join("homes"), &[]);
        let secrets = work.join("secrets");
        std::fs::write(&secrets, "alice:apw\nbob:bpw\n").expect("secrets");
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\n[home]\n    path = {}/homes/%RSYNC_USER_NAME%\n    auth users = alice, bob\n    secrets file = %RRSYNC_TEST_SECRETS%\n",
            work.path().display()
        );
        let secrets_env = secrets.display().to_string();
        for user in ["alice", "bob"] {
            let mut trees = Vec::new();
            for side in SIDES {
                let d = Daemon::start_env(&daemon_bin(side), &conf, side, &[("RRSYNC_TEST_SECRETS", &secrets_env)]);
                let dest = work.join(format!("dest-{side}-{user}"));
                let o = crate::harness::process::run_cmd_env(
                    &bins::stock(),
                    ["-a".to_string(), d.url("home/").replacen("rsync://", &format!("rsync://{user}@"), 1), format!("{}/", dest.display())],
                    &[("RSYNC_PASSWORD", if user == "alice" { "apw" } else { "bpw" })],
                    client_timeout(),
                );
                assert_eq!(o.code, 0, "{side} as {user}: {}\n{}", o.describe(), d.logs());
                trees.push(dest);
            }
            assert_same_tree(&work.join("homes").join(user), &trees[0], "stock");
            assert_same_tree(&work.join("homes").join(user), &trees[1], "ours");
        }
    }
}

/// Time from connecting until the daemon closes a connection that says
/// `send` and then nothing (at most `limit`). Measured from the connect:
/// stock's handshake deadline is whole seconds counted from the session's
/// start (`time(NULL) + timeout`), so `timeout = 2` drops the client 1-2 s
/// after it connected, however long this side took to read the greeting.
fn silent_for(port: u16, send: &[u8], limit: Duration) -> Duration {
    use std::io::{Read, Write};
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(limit)).expect("timeout");
    let mut b = [0u8; 256];
    let _ = s.read(&mut b); // the greeting
    s.write_all(send).expect("send");
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return t.elapsed(),
            Ok(_) => {}
        }
    }
}

compat_test! {
    fn silent_and_stalled_clients_are_dropped_after_timeout() {
        let work = TempDir::new("timeouts");
        let src = work.join("src");
        // Too big to finish before the client is stopped, on any machine.
        std::fs::create_dir_all(&src).expect("src");
        std::fs::File::create(src.join("big.bin"))
            .and_then(|f| f.set_len(4 << 30))
            .expect("big file");
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\ntimeout = 2\n[mod]\n    path = {}\n",
            src.display()
        );
        for side in SIDES {
            let d = Daemon::start(&daemon_bin(side), &conf, side);
            // Silent before its greeting, and silent after the module's OK.
            let t = silent_for(d.port(), b"", Duration::from_secs(20));
            assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(8), "{side}: silent client dropped after {t:?}");
            let t = silent_for(d.port(), b"@RSYNCD: 32.0 sha512\nmod\n", Duration::from_secs(20));
            assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(8), "{side}: client silent after OK dropped after {t:?}");
            // A client that stops reading mid-transfer: its session ends.
            let dest = work.join(format!("dest-{side}"));
            let mut client = std::process::Command::new(bins::stock())
                .args(["-a", &d.url("mod/"), &format!("{}/", dest.display())])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .expect("client");
            std::thread::sleep(Duration::from_millis(300));
            let pgid = nix::unistd::Pid::from_raw(client.id() as i32);
            // Both of the client's processes stop reading.
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGSTOP);
            let sessions = || -> usize {
                std::fs::read_dir("/proc")
                    .map(|r| {
                        r.flatten()
                            .filter(|e| {
                                std::fs::read_to_string(e.path().join("stat"))
                                    .ok()
                                    .and_then(|s| s.rsplit_once(')').map(|(_, x)| x.split_whitespace().nth(1).map(str::to_string)))
                                    .flatten()
                                    .is_some_and(|pp| pp == d.pid().to_string())
                            })
                            .count()
                    })
                    .unwrap_or(0)
            };
            assert!(sessions() > 0, "{side}: no session running for the stalled client");
            let t = Instant::now();
            while sessions() > 0 && t.elapsed() < Duration::from_secs(15) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let gone = sessions() == 0;
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = client.wait();
            assert!(gone, "{side}: the stalled client's session still runs after {:?}", t.elapsed());
        }
    }
}

compat_test! {
    fn auth_ro_user_cannot_push_rw_user_can() {
        use std::os::unix::fs::PermissionsExt;
        let work = TempDir::new("auth_ro_push");
        let src = work.join("src");
        small_tree(&src);
        let secrets = work.join("secrets");
        std::fs::write(&secrets, "alice:apw\nbob:bpw\ncarol:cpw\n").expect("secrets");
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut seen = Vec::new();
        for side in SIDES {
            let up = work.join(format!("up-{side}"));
            let ro = work.join(format!("ro-{side}"));
            std::fs::create_dir_all(&up).expect("up");
            std::fs::create_dir_all(&ro).expect("ro");
            let conf = format!(
                "use chroot = no\nuid = root\ngid = root\nsecrets file = {}\n[up]\n    path = {}\n    read only = no\n    auth users = alice, bob:ro\n[ro]\n    path = {}\n    auth users = carol:rw, alice\n",
                secrets.display(),
                up.display(),
                ro.display()
            );
            let d = Daemon::start(&daemon_bin(side), &conf, side);
            let push = |user: &str, pw: &str, module: &str| {
                let url = d.url(&format!("{module}/")).replacen("rsync://", &format!("rsync://{user}@"), 1);
                let o = crate::harness::process::run_cmd_env(
                    &bins::stock(),
                    ["-a".to_string(), format!("{}/", src.display()), url],
                    &[("RSYNC_PASSWORD", pw)],
                    client_timeout(),
                );
                // (A reset after the refusal is timing noise: stock's own
                // daemon gives one now and then.)
                let lines: Vec<String> = normalize_stderr(&o.stderr)
                    .into_iter()
                    .filter(|l| !l.contains("Connection reset by peer"))
                    .collect();
                (o.code, lines)
            };
            let r = [push("bob", "bpw", "up"), push("alice", "apw", "up"), push("carol", "cpw", "ro"), push("alice", "apw", "ro")];
            seen.push((r, up.join("a.txt").exists(), ro.join("a.txt").exists()));
        }
        let (s, o) = (&seen[0], &seen[1]);
        assert_ne!(s.0[0].0, 0, "stock let a :ro user push");
        assert_eq!(s.0[1].0, 0, "stock refused a plain user on a writable module");
        assert_eq!(s.0[2].0, 0, "stock refused a :rw user on a read-only module");
        assert_ne!(s.0[3].0, 0, "stock let a plain user push to a read-only module");
        assert_eq!(o, s, "ours (left) differs from stock (right)");
    }
}

compat_test! {
    fn module_ignore_nonreadable() {
        // The module runs as nobody; a root-only file is an error (23)
        // without the setting and silently left out with it.
        let (uid, gid) = nobody_ids();
        let work = TempDir::new("ignore_nonreadable");
        open_path(work.path());
        let src = work.join("src");
        small_tree(&src);
        crate::harness::fixture::chmod(&src, "b.txt", 0o600);
        let mut seen = Vec::new();
        for setting in ["", "    ignore nonreadable = yes\n"] {
            let conf = format!(
                "use chroot = no\n[mod]\n    path = {}\n    uid = {uid}\n    gid = {gid}\n{setting}",
                src.display()
            );
            let mut per_side = Vec::new();
            for side in SIDES {
                let d = Daemon::start(&daemon_bin(side), &conf, side);
                let dest = work.join(format!("dest-{side}-{}", setting.len()));
                let o = pull(&d, &["-a"], "mod/", &dest);
                per_side.push((o.code, normalize_stderr(&o.stderr), snapshot(&dest), o.describe()));
            }
            let (s, o) = (&per_side[0], &per_side[1]);
            let d = diff("stock", &s.2, "ours", &o.2);
            assert!(d.is_empty(), "{setting:?}: trees differ:\n{}", format_diff(&d, 20));
            assert_eq!((o.0, &o.1), (s.0, &s.1), "{setting:?}: ours {}\nstock {}", o.3, s.3);
            seen.push((s.0, s.2.entries.contains_key(std::path::Path::new("b.txt"))));
        }
        assert_eq!(seen, [(23, false), (0, false)], "stock's outcomes were not the expected ones");
    }
}

compat_test! {
    fn module_open_noatime() {
        // Reading a source leaves its atime alone with `open noatime`;
        // without it the atime moves as the mount's atime rule says,
        // for stock and for us alike.
        let work = TempDir::new("open_noatime");
        let src = work.join("src");
        small_tree(&src);
        let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
        let mut seen = Vec::new();
        for setting in ["", "    open noatime = yes\n"] {
            let conf = format!(
                "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n{setting}",
                src.display()
            );
            let mut per_side = Vec::new();
            for side in SIDES {
                filetime::set_file_atime(src.join("a.txt"), old).expect("set atime");
                let d = Daemon::start(&daemon_bin(side), &conf, side);
                let dest = work.join(format!("dest-{side}-{}", setting.len()));
                let o = pull(&d, &["-a"], "mod/", &dest);
                assert_eq!(o.code, 0, "{side}: {}", o.describe());
                // (Before the tree comparison, which reads the sources.)
                let md = std::fs::metadata(src.join("a.txt")).expect("stat a.txt");
                per_side.push(filetime::FileTime::from_last_access_time(&md) == old);
                assert_same_tree(&src, &dest, side);
            }
            assert_eq!(per_side[1], per_side[0], "{setting:?}: atime kept (ours, stock) differ");
            seen.push(per_side[0]);
        }
        assert!(seen[1], "stock moved the atime despite open noatime");
    }
}

/// A one-connection balancer in front of `daemon_port`: it accepts the
/// client, opens the daemon connection, writes `header` first, then relays
/// both ways. Returns the port the client should use.
fn proxy_relay(daemon_port: u16, header: Vec<u8>) -> u16 {
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};
    let l = TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let port = l.local_addr().expect("relay addr").port();
    std::thread::spawn(move || {
        let Ok((client, _)) = l.accept() else { return };
        let Ok(mut daemon) = TcpStream::connect(("127.0.0.1", daemon_port)) else {
            return;
        };
        if daemon.write_all(&header).is_err() {
            return;
        }
        let (Ok(mut c2), Ok(mut d2)) = (client.try_clone(), daemon.try_clone()) else {
            return;
        };
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut c2, &mut d2);
            let _ = d2.shutdown(Shutdown::Write);
        });
        let (mut client, mut daemon) = (client, daemon);
        let _ = std::io::copy(&mut daemon, &mut client);
        let _ = client.shutdown(Shutdown::Write);
        let _ = up.join();
    });
    port
}

compat_test! {
    fn proxy_protocol_names_the_real_client() {
        // Behind a balancer (proxy protocol v1 and v2), the header's source
        // address is the client's for hosts allow/deny and the log; a
        // trusted peer without a header, and an untrusted peer, are refused.
        let work = TempDir::new("proxy_protocol");
        let src = work.join("src");
        small_tree(&src);
        let v1 = b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 873\r\n".to_vec();
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend([0x21, 0x11, 0, 12, 10, 1, 2, 3, 127, 0, 0, 1, 0x9c, 0x40, 3, 105]);
        let mut seen = Vec::new();
        for (trusted, hosts) in [("127.0.0.1", "hosts deny = 10.1.2.3"), ("127.0.0.1", "hosts allow = 10.1.2.3"), ("10.9.9.9", "")] {
            for side in SIDES {
                let log = work.join(format!("{side}-{}.log", seen.len()));
                let conf = format!(
                    "use chroot = no\nuid = root\ngid = root\nreverse lookup = no\nproxy protocol = yes\nproxy protocol hosts = {trusted}\nlog file = {}\n[mod]\n    path = {}\n    {hosts}\n",
                    log.display(),
                    src.display()
                );
                let d = Daemon::start_config_log(&daemon_bin(side), &conf, side);
                let mut outcomes = Vec::new();
                for header in [&v1, &v2] {
                    let port = proxy_relay(d.port(), header.clone());
                    let dest = work.join(format!("dest-{side}-{}-{}", seen.len(), outcomes.len()));
                    let o = run_cmd(
                        &bins::stock(),
                        ["-a".to_string(), format!("rsync://127.0.0.1:{port}/mod/"), format!("{}/", dest.display())],
                        None,
                        client_timeout(),
                    );
                    outcomes.push((o.code, normalize_stderr(&o.stderr), dest.join("a.txt").exists()));
                }
                // A trusted peer that sends no header at all.
                let dest = work.join(format!("dest-{side}-{}-direct", seen.len()));
                let o = pull(&d, &["-a"], "mod/", &dest);
                // (An untrusted peer is dropped before anything is read: the
                // client sees an EOF (5) or, when its greeting was already
                // in, a reset (12), for stock as for us.)
                let code = if trusted == "10.9.9.9" && o.code == 12 { 5 } else { o.code };
                outcomes.push((code, Vec::new(), dest.join("a.txt").exists()));
                let logged = std::fs::read_to_string(&log).unwrap_or_default().contains("(10.1.2.3)");
                seen.push((side, hosts, trusted, outcomes, logged));
            }
        }
        for pair in seen.chunks(2) {
            let (s, o) = (&pair[0], &pair[1]);
            assert_eq!((&o.3, o.4), (&s.3, s.4), "{} / trusted {}: ours {:?}\nstock {:?}", s.1, s.2, o, s);
        }
        // What stock did, so the case cannot pass vacuously.
        assert!(seen[0].3[0].0 != 0 && seen[0].4, "stock: deny by proxied address: {:?}", seen[0]);
        assert!(seen[2].3[0].0 == 0 && seen[2].3[1].2, "stock: allow by proxied address: {:?}", seen[2]);
        assert!(seen[4].3.iter().all(|x| x.0 != 0), "stock: untrusted peer: {:?}", seen[4]);
    }
}

compat_test! {
    fn daemon_without_address_listens_on_ipv4_and_ipv6() {
        // Without `address`, stock listens on every family's wildcard
        // address (an IPv6 socket IPv6-only beside the IPv4 one), so
        // clients reach it over 127.0.0.1 and over [::1]. Each daemon runs
        // in a network namespace of its own (only its loopback), so
        // nothing listens outside it.
        let work = TempDir::new("dual_stack");
        let src = work.join("src");
        small_tree(&src);
        let conf = work.join("rsyncd.conf");
        std::fs::write(
            &conf,
            format!("use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n    comment = dual\n", src.display()),
        )
        .expect("config");
        let stock = bins::stock();
        let mut outs = Vec::new();
        for bin in [bins::stock(), bins::ours()] {
            let script = format!(
                "ip link set lo up || exit 99\n\
                 {bin} --daemon --no-detach --config={conf} --port=8873 & pid=$!\n\
                 trap 'kill $pid 2>/dev/null' EXIT\n\
                 for i in $(seq 100); do {stock} rsync://127.0.0.1:8873/ >/dev/null 2>&1 && break; sleep 0.05; done\n\
                 {stock} rsync://127.0.0.1:8873/; echo rc4=$?\n\
                 {stock} rsync://[::1]:8873/; echo rc6=$?\n\
                 {stock} -a rsync://[::1]:8873/mod/ {dest}/; echo pull6=$?\n",
                bin = bin.display(),
                conf = conf.display(),
                stock = stock.display(),
                dest = work.join(if bin == stock { "d-stock" } else { "d-ours" }).display(),
            );
            let o = run_cmd(Path::new("unshare"), ["-n", "sh", "-c", &script], None, client_timeout());
            assert_eq!(o.code, 0, "{}: {}\n{}", bin.display(), o.stdout, o.stderr);
            outs.push(o.stdout);
        }
        assert_eq!(outs[0], outs[1], "stock and ours differ");
        for want in ["mod            \tdual\nrc4=0", "rc6=0", "pull6=0"] {
            assert!(outs[1].contains(want), "{want} missing:\n{}", outs[1]);
        }
        let d = diff("stock", &snapshot(&work.join("d-stock")), "ours", &snapshot(&work.join("d-ours")));
        assert!(d.is_empty(), "{}", format_diff(&d, 20));
    }
}

compat_test! {
    fn daemon_gid_star_is_all_groups_of_the_user() {
        // `gid = *` (first in the list): the connection takes every group
        // of the module's `uid`, its own group first, plus any named after.
        // Seen through a root-group-only file: readable with `* 0`, not
        // with `*` alone (exit 23).
        let (uid, _gid) = nobody_ids();
        let work = TempDir::new("daemon_gid_star");
        open_path(work.path());
        let src = work.join("src");
        small_tree(&src);
        crate::harness::fixture::chmod(&src, "b.txt", 0o640);
        let mut seen = Vec::new();
        for gids in ["*", "* 0"] {
            for side in SIDES {
                let conf = format!(
                    "use chroot = no\n[mod]\n    path = {}\n    uid = {uid}\n    gid = {gids}\n",
                    src.display(),
                );
                let d = Daemon::start(&daemon_bin(side), &conf, side);
                let dest = work.join(format!("dest-{side}-{}", gids.len()));
                let o = pull(&d, &["-rt"], "mod/", &dest);
                seen.push((gids, side, o.code, dest.join("b.txt").exists(), dest.join("a.txt").exists(), o.describe()));
            }
        }
        assert_eq!((seen[0].2, seen[0].3, seen[0].4), (23, false, true), "stock with *: {}", seen[0].5);
        assert_eq!((seen[2].2, seen[2].3, seen[2].4), (0, true, true), "stock with * 0: {}", seen[2].5);
        for i in [1, 3] {
            assert_eq!(
                (seen[i].2, seen[i].3, seen[i].4),
                (seen[i - 1].2, seen[i - 1].3, seen[i - 1].4),
                "ours with {}: {}",
                seen[i].0,
                seen[i].5
            );
        }
    }
}

compat_test! {
    fn daemon_filter_files_are_read_before_the_chroot() {
        // `exclude from` and `include from` name files outside a chrooted
        // module: stock reads them before entering it, so must we.
        let work = TempDir::new("filter_before_chroot");
        let src = work.join("src");
        small_tree(&src);
        std::fs::write(work.join("excl.txt"), "b.txt\n*/\n").expect("exclude file");
        std::fs::write(work.join("incl.txt"), "sub/\n").expect("include file");
        let mut outs = Vec::new();
        for side in SIDES {
            let conf = format!(
                "use chroot = yes\nuid = root\ngid = root\n[mod]\n    path = {}\n    include from = {}\n    exclude from = {}\n",
                src.display(),
                work.join("incl.txt").display(),
                work.join("excl.txt").display()
            );
            let d = Daemon::start(&daemon_bin(side), &conf, side);
            let dest = work.join(format!("dest-{side}"));
            let o = pull(&d, &["-a", "-i"], "mod/", &dest);
            outs.push((o.code, snapshot(&dest), o.describe()));
        }
        assert_eq!(outs[0].0, 0, "stock: {}", outs[0].2);
        assert_eq!(outs[1].0, 0, "ours: {}", outs[1].2);
        let d = diff("stock", &outs[0].1, "ours", &outs[1].1);
        assert!(d.is_empty(), "{}", format_diff(&d, 20));
        // b.txt excluded; sub/ included ahead of the "*/" exclude, etc/ not.
        assert!(!work.join("dest-ours/b.txt").exists() && work.join("dest-ours/sub").exists());
        assert!(work.join("dest-ours/a.txt").exists() && !work.join("dest-ours/etc").exists());
    }
}

compat_test! {
    fn client_early_input_reaches_early_exec() {
        // Our client's --early-input against a stock daemon: its early exec
        // reads what stock's client sends it. Too large a file fails as
        // stock's does (exit 5).
        let work = TempDir::new("early_client");
        let src = work.join("src");
        small_tree(&src);
        let input = work.join("early-input.txt");
        std::fs::write(&input, b"token=xyz\nline two\n").expect("write early input");
        let big = work.join("big.txt");
        std::fs::write(&big, vec![b'x'; 6000]).expect("write big input");
        let record = work.join("early.txt");
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n    early exec = cat >> {}\n",
            src.display(),
            record.display()
        );
        let d = Daemon::start(&bins::stock(), &conf, "stock");
        let mut records = Vec::new();
        for (side, bin) in [("stock", bins::stock()), ("ours", bins::ours())] {
            let _ = std::fs::remove_file(&record);
            let dest = work.join(format!("dest-{side}"));
            let args = vec![
                "-a".to_string(),
                format!("--early-input={}", input.display()),
                d.url("mod/"),
                format!("{}/", dest.display()),
            ];
            let o = run_cmd(&bin, &args, None, client_timeout());
            assert_eq!(o.code, 0, "{side}: {}", o.describe());
            records.push(std::fs::read_to_string(&record).unwrap_or_default());
            let args = vec!["-a".to_string(), format!("--early-input={}", big.display()), d.url("mod/"), format!("{}/", dest.display())];
            let o = run_cmd(&bin, &args, None, client_timeout());
            records.push(format!("{} {}", o.code, o.stderr.lines().next().unwrap_or_default()));
        }
        assert_eq!(records[0], "token=xyz\nline two\n");
        assert_eq!(records[1], records[3].clone(), "too large");
        assert_eq!(records[0], records[2], "the early exec saw something else");
    }
}

compat_test! {
    fn pid_file_is_locked_against_a_second_daemon() {
        // A second daemon given the same `pid file` fails to lock it and
        // exits 11, leaving the first's pid in place (stock's
        // create_pid_file).
        let work = TempDir::new("pid_lock");
        let src = work.join("src");
        small_tree(&src);
        let mut seen = Vec::new();
        for side in SIDES {
            let pid_file = work.join(format!("{side}.pid"));
            let conf = format!(
                "pid file = {}\nuse chroot = no\n[mod]\n    path = {}\n",
                pid_file.display(),
                src.display()
            );
            let d = Daemon::start(&daemon_bin(side), &conf, side);
            let first = std::fs::read_to_string(&pid_file).expect("pid file written");
            let conf_path = work.join(format!("{side}-second.conf"));
            std::fs::write(&conf_path, &conf).expect("config");
            let o = run_cmd(
                &daemon_bin(side),
                [
                    "--daemon".to_string(),
                    "--no-detach".into(),
                    format!("--config={}", conf_path.display()),
                    format!("--port={}", crate::harness::net::free_port()),
                    "--address=127.0.0.1".into(),
                ],
                None,
                client_timeout(),
            );
            let after = std::fs::read_to_string(&pid_file).unwrap_or_default();
            assert_eq!(first, after, "{side}: the first daemon's pid file changed");
            assert_eq!(first.trim(), d.pid().to_string(), "{side}: pid file content");
            seen.push((o.code, o.stderr.lines().next().unwrap_or_default().replace(&pid_file.display().to_string(), "PIDFILE")));
        }
        assert_eq!(seen[0].0, 11, "stock: {:?}", seen[0]);
        assert_eq!(seen[1], seen[0]);
    }
}
