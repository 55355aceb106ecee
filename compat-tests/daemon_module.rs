//! Module settings of rsyncd.conf that shape a pull (`exclude`, `filter`,
//! `outgoing chmod`, `refuse options`, `write only`, `read only`,
//! `numeric ids`, `timeout`, `dont compress`, `&include`), and config errors.
//! Each compares ours with a stock daemon on the same config.

use crate::harness::bins;
use crate::harness::compare::{normalize_stderr, PullCase, PullSpec, MODULE};
use crate::harness::daemon::Daemon;
use crate::harness::fixture::{issue2_tree, small_tree};
use crate::harness::process::{client_timeout, run_cmd};
use crate::harness::tmp::TempDir;

/// Error lines of a client run, with version tags and source locations removed.
fn error_lines(stderr: &str) -> Vec<String> {
    let keep: Vec<String> = stderr
        .lines()
        .filter(|l| l.starts_with("rsync") || l.starts_with("ERROR") || l.starts_with("@ERROR"))
        .filter(|l| {
            !l.contains("connection unexpectedly closed")
                && !l.contains("read error")
                && !l.contains("write error")
        })
        .map(str::to_string)
        .collect();
    normalize_stderr(&keep.join("\n"))
        .into_iter()
        .chain(
            keep.iter()
                .filter(|l| {
                    !l.starts_with("rsync error:")
                        && !l.contains("[sender]")
                        && !l.starts_with("@ERROR")
                })
                .cloned(),
        )
        .collect()
}

compat_test! {
    fn module_exclude_hides_files() {
        PullCase::new("module_exclude_hides_files", issue2_tree)
            .module_line("exclude = *.bin nested/a/ many/")
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn module_filter_and_include() {
        PullCase::new("module_filter_and_include", issue2_tree)
            .module_line("filter = - /many/ - *.bin")
            .module_line("include = f700.bin")
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn module_outgoing_chmod() {
        PullCase::new("module_outgoing_chmod", issue2_tree)
            .module_line("outgoing chmod = Fo-w,Fg+w,D+x,Da-s")
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn module_numeric_ids() {
        PullCase::new("module_numeric_ids", issue2_tree)
            .module_line("numeric ids = yes")
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn module_timeout_announced() {
        PullCase::new("module_timeout_announced", issue2_tree)
            .module_line("timeout = 60")
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn module_dont_compress_with_z() {
        PullCase::new("module_dont_compress_with_z", issue2_tree)
            .module_line("dont compress = *.bin *.txt")
            .args(&["-a", "-i", "-z"])
            .run();
    }
}

/// A tree that compresses well: 1 MiB of repeated text in two files.
fn text_tree(root: &std::path::Path) {
    crate::harness::fixture::mkdir(root, "");
    let line = b"a line of text that deflate squeezes to almost nothing\n";
    let body: Vec<u8> = line.iter().copied().cycle().take(512 << 10).collect();
    crate::harness::fixture::write(root, "a.txt", &body);
    crate::harness::fixture::write(root, "b.log", &body);
    crate::harness::fixture::pin_times(root, &[]);
}

/// "Total bytes received" of a client's `--stats`.
fn bytes_received(stdout: &str) -> u64 {
    use crate::harness::compare::{parse_stats, stats_number};
    stats_number(&parse_stats(stdout), "Total bytes received").expect("Total bytes received")
}

compat_test! {
    fn module_dont_compress_star_stores_zlib() {
        // A lone `*` in `dont compress` makes upstream deflate at level 0
        // (zlib, zlibx); zstd keeps compressing. Every file is 1 MiB of
        // compressible text, so the byte counts tell the two apart.
        for (choice, stored) in [("zlib", true), ("zlibx", true), ("zstd", false)] {
            let name = format!("module_dont_compress_star_{choice}");
            let run = PullCase::new(&name, text_tree)
                .module_line("dont compress = *.gz *")
                .args(&["-a", "-i", "-z", "--stats", &format!("--compress-choice={choice}")])
                .run();
            let stock = bytes_received(&run.stock.outcome.stdout);
            let ours = bytes_received(&run.ours.outcome.stdout);
            let content = 1u64 << 20;
            if stored {
                assert!(stock > content, "{choice}: stock received {stock}: it compressed");
                assert!(
                    ours.abs_diff(stock) <= stock.div_ceil(100),
                    "{choice}: ours sent {ours} bytes, stock {stock}"
                );
            } else {
                assert!(stock < content / 10, "{choice}: stock received {stock}: stored");
                assert!(ours < content / 10, "{choice}: ours sent {ours} bytes, stock {stock}");
            }
        }
    }
}

compat_test! {
    fn module_refuse_options_checksum() {
        PullCase::new("module_refuse_options_checksum", small_tree)
            .module_line("refuse options = checksum")
            .args(&["-a", "-c"])
            .expect_stock_code(None)
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn module_refuse_options_wildcard_delete() {
        PullCase::new("module_refuse_options_wildcard_delete", small_tree)
            .module_line("refuse options = delete*")
            .args(&["-a", "--delete"])
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn module_write_only_refuses_pull() {
        PullCase::new("module_write_only_refuses_pull", small_tree)
            .module_line("write only = yes")
            .args(&["-a"])
            .expect_stock_code(Some(1))
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn module_included_from_other_file() {
        let inc = TempDir::new("include");
        let inc_path = inc.join("extra.conf");
        std::fs::write(&inc_path, format!("[incl]\n    path = {}\n    comment = from an include\n", inc.path().display())).unwrap();
        std::fs::write(inc.join("hello.txt"), b"hi\n").unwrap();
        let servers = PullCase::new("module_included_from_other_file", small_tree)
            .extra_config(&format!("&include {}\n", inc_path.display()))
            .serve();
        let spec = PullSpec { args: vec!["-a".into(), "-i".into()], remote: "incl/".into(), ..PullSpec::default() };
        servers.pull(&spec);
        let list = PullSpec { args: vec![], remote: String::new(), dest: None, ..PullSpec::default() };
        servers.pull(&list);
    }
}

// A push into a read-only module: both refuse it the same way.
compat_test! {
    fn module_read_only_refuses_push() {
        let servers = PullCase::new("module_read_only_refuses_push", small_tree).serve();
        let src = TempDir::new("push-src");
        small_tree(&src.join("tree"));
        let run = |d: &crate::harness::daemon::Daemon| {
            run_cmd(&bins::stock(), ["-a".to_string(), format!("{}/", src.join("tree").display()), d.url(&format!("{MODULE}/"))], None, client_timeout())
        };
        let s = run(&servers.pair.stock);
        let o = run(&servers.pair.ours);
        assert_eq!(s.code, o.code, "exit codes: stock {}\nours {}", s.describe(), o.describe());
        assert_eq!(error_lines(&s.stderr), error_lines(&o.stderr), "stock {}\nours {}", s.describe(), o.describe());
    }
}

// A config error names the file and line, and the daemon does not start.
compat_test! {
    fn config_error_names_file_and_line() {
        let dir = TempDir::new("badconf");
        let conf = dir.join("rsyncd.conf");
        std::fs::write(&conf, "use chroot = no\n[mod]\n    path = /tmp\n    frobnicate = yes\n").unwrap();
        let port = crate::harness::net::free_port().to_string();
        let o = run_cmd(
            &bins::ours(),
            ["--daemon", "--no-detach", &format!("--config={}", conf.display()), &format!("--port={port}"), "--address=127.0.0.1"],
            None,
            client_timeout(),
        );
        assert_ne!(o.code, 0, "{}", o.describe());
        let want = format!("{}:4", conf.display());
        assert!(o.stderr.contains(&want) && o.stderr.contains("frobnicate"), "stderr lacks {want}: {}", o.describe());
    }
}

/// Writes the daemon's secrets file and the client's password file (both
/// mode 0600, as strict modes and the client require) under `dir`.
fn secret_files(
    dir: &TempDir,
    secrets: &str,
    password: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let s = dir.join("secrets");
    let p = dir.join("pw");
    for (path, text) in [(&s, secrets.to_string()), (&p, format!("{password}\n"))] {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (s, p)
}

/// A pull as `user` with the password in a file; returns both outcomes.
fn auth_pull(
    name: &str,
    module_lines: &[&str],
    user: &str,
    password: &str,
    extra: &[&str],
) -> (
    crate::harness::process::Outcome,
    crate::harness::process::Outcome,
) {
    let dir = TempDir::new(name);
    let (secrets, pwfile) = secret_files(
        &dir,
        "# users\nalice:s3cret\nbob:b0b\n@root:grouppw\n",
        password,
    );
    let mut case = PullCase::new(name, small_tree)
        .module_line(&format!("secrets file = {}", secrets.display()));
    for l in module_lines {
        case = case.module_line(l);
    }
    let servers = case.serve();
    let run = |d: &crate::harness::daemon::Daemon, tag: &str| {
        let dest = dir.join(format!("dest-{tag}"));
        let mut args: Vec<String> = vec![
            "-a".into(),
            "-i".into(),
            format!("--password-file={}", pwfile.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("rsync://{user}@127.0.0.1:{}/{MODULE}/", d.port()));
        args.push(format!("{}/", dest.display()));
        run_cmd(&bins::stock(), args, None, client_timeout())
    };
    (
        run(&servers.pair.stock, "stock"),
        run(&servers.pair.ours, "ours"),
    )
}

compat_test! {
    fn auth_right_password_pulls() {
        let (s, o) = auth_pull("auth_right_password_pulls", &["auth users = alice, bob:ro"], "alice", "s3cret", &[]);
        assert_eq!(s.code, 0, "stock {}", s.describe());
        assert_eq!(o.code, s.code, "ours {}", o.describe());
        assert_eq!(o.stdout.replace("dest-ours", "dest-X"), s.stdout.replace("dest-stock", "dest-X"));
    }
}

compat_test! {
    fn auth_wrong_password_is_refused() {
        let (s, o) = auth_pull("auth_wrong_password_is_refused", &["auth users = alice"], "alice", "wrong", &[]);
        assert_eq!(s.code, 5, "stock {}", s.describe());
        assert_eq!(o.code, s.code, "ours {}", o.describe());
        assert_eq!(error_lines(&o.stderr), error_lines(&s.stderr));
    }
}

compat_test! {
    fn auth_unlisted_user_and_deny_are_refused() {
        let (s, o) = auth_pull("auth_unlisted_user_is_refused", &["auth users = bob"], "alice", "s3cret", &[]);
        assert_eq!((s.code, o.code), (5, 5), "stock {}\nours {}", s.describe(), o.describe());
        let (s, o) = auth_pull("auth_deny_is_refused", &["auth users = alice:deny, *"], "alice", "s3cret", &[]);
        assert_eq!((s.code, o.code), (5, 5), "stock {}\nours {}", s.describe(), o.describe());
    }
}

compat_test! {
    fn auth_group_secret() {
        let (s, o) = auth_pull("auth_group_secret", &["auth users = @root"], "root", "grouppw", &[]);
        assert_eq!(s.code, 0, "stock {}", s.describe());
        assert_eq!(o.code, s.code, "ours {}", o.describe());
    }
}

compat_test! {
    fn auth_protocol_29_client() {
        let (s, o) = auth_pull("auth_protocol_29_client", &["auth users = alice"], "alice", "s3cret", &["--protocol=29"]);
        assert_eq!(s.code, 0, "stock {}", s.describe());
        assert_eq!(o.code, s.code, "ours {}", o.describe());
        assert_eq!(o.stdout.replace("dest-ours", "dest-X"), s.stdout.replace("dest-stock", "dest-X"));
    }
}

compat_test! {
    fn hosts_deny_by_address() {
        PullCase::new("hosts_deny_by_address", small_tree)
            .module_line("hosts deny = 127.0.0.1")
            .args(&["-a"])
            .expect_stock_code(Some(5))
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn hosts_allow_by_cidr() {
        PullCase::new("hosts_allow_by_cidr", small_tree)
            .module_line("hosts allow = 127.0.0.0/8")
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn hosts_allow_other_net_refuses() {
        PullCase::new("hosts_allow_other_net_refuses", small_tree)
            .module_line("hosts allow = 10.0.0.0/255.0.0.0")
            .args(&["-a"])
            .expect_stock_code(Some(5))
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn hosts_allow_name_by_forward_lookup() {
        // No reverse lookup (a global one would name the peer for every
        // module, as upstream): "localhost" matches only by resolving it.
        PullCase::new("hosts_allow_name_by_forward_lookup", small_tree)
            .global_line("reverse lookup = no")
            .module_line("hosts allow = localhost")
            .args(&["-a", "-i"])
            .expect_stock_code(Some(0))
            .run();
    }
}

compat_test! {
    fn hosts_allow_name_without_forward_lookup() {
        PullCase::new("hosts_allow_name_without_forward_lookup", small_tree)
            .global_line("reverse lookup = no")
            .module_line("forward lookup = no")
            .module_line("hosts allow = localhost")
            .args(&["-a"])
            .expect_stock_code(Some(5))
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn hosts_module_reverse_lookup_off_keeps_the_connect_name() {
        // The global lookup at connect time names the peer "localhost"; a
        // module's `reverse lookup = no` does not undo it (upstream).
        PullCase::new("hosts_module_reverse_lookup_off_keeps_the_connect_name", small_tree)
            .module_line("reverse lookup = no")
            .module_line("forward lookup = no")
            .module_line("hosts allow = localhost")
            .args(&["-a", "-i"])
            .expect_stock_code(Some(0))
            .run();
    }
}

compat_test! {
    fn hosts_deny_unresolvable_name_fails_closed() {
        PullCase::new("hosts_deny_unresolvable_name_fails_closed", small_tree)
            .module_line("hosts deny = no-such-host.invalid")
            .args(&["-a"])
            .expect_stock_code(Some(5))
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn max_connections_one() {
        use std::io::{Read, Write};
        let dir = TempDir::new("maxconn");
        let lock = dir.join("rsyncd.lock");
        let servers = PullCase::new("max_connections_one", small_tree)
            .module_line("max connections = 1")
            .module_line(&format!("lock file = {}", lock.display()))
            .serve();
        let mut outs = Vec::new();
        for d in [&servers.pair.stock, &servers.pair.ours] {
            // Hold the only slot with a connection that got past the module line.
            let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port())).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            s.write_all(format!("@RSYNCD: 32.0 md5 md4\n{MODULE}\n").as_bytes()).unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while !String::from_utf8_lossy(&got).contains("@RSYNCD: OK") {
                assert_eq!(s.read(&mut b).unwrap(), 1, "{}: closed before OK", d.label());
                got.push(b[0]);
            }
            let dest = dir.join(format!("dest-{}", d.label()));
            let o = run_cmd(&bins::stock(), ["-a".to_string(), d.url(&format!("{MODULE}/")), format!("{}/", dest.display())], None, client_timeout());
            drop(s);
            outs.push(o);
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let (s, o) = (&outs[0], &outs[1]);
        assert_eq!(s.code, 5, "stock {}", s.describe());
        assert_eq!(o.code, s.code, "ours {}", o.describe());
        assert_eq!(error_lines(&o.stderr), error_lines(&s.stderr));
    }
}

/// Like [`auth_pull`], but our daemon offers only the digests in
/// `ours_offer` (stock's offers all of its own), and the client runs with
/// `--debug=nstr` so the negotiated digest shows in its output.
fn auth_pull_offering(
    name: &str,
    ours_offer: &str,
    module_lines: &[&str],
    password: &str,
    extra: &[&str],
) -> (
    crate::harness::process::Outcome,
    crate::harness::process::Outcome,
) {
    let dir = TempDir::new(name);
    let src = dir.join("src");
    small_tree(&src);
    let (secrets, pwfile) = secret_files(&dir, "alice:s3cret\n", password);
    let mut lines = vec![format!("secrets file = {}", secrets.display())];
    lines.extend(module_lines.iter().map(|s| s.to_string()));
    let config = crate::harness::compare::config_text(&src, &[], &lines, "");
    let stock = Daemon::start(&bins::stock(), &config, "stock");
    let ours = Daemon::start_env(
        &bins::ours(),
        &config,
        "ours",
        &[("RRSYNC_AUTH_DIGESTS", ours_offer)],
    );
    let run = |d: &Daemon, tag: &str| {
        let mut args: Vec<String> = vec![
            "-a".into(),
            "--debug=nstr".into(),
            format!("--password-file={}", pwfile.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(format!("rsync://alice@127.0.0.1:{}/{MODULE}/", d.port()));
        args.push(format!("{}/", dir.join(format!("dest-{tag}")).display()));
        run_cmd(&bins::stock(), args, None, client_timeout())
    };
    (run(&stock, "stock"), run(&ours, "ours"))
}

/// The digest the client reports having negotiated (`--debug=nstr`).
fn negotiated_digest(o: &crate::harness::process::Outcome) -> Option<String> {
    let all = format!("{}\n{}", o.stdout, o.stderr);
    all.lines()
        .find_map(|l| l.split_once("negotiated daemon auth checksum: "))
        .map(|(_, d)| d.trim().to_string())
}

compat_test! {
    fn auth_each_digest_right_and_wrong_password() {
        let (s, o) = auth_pull_offering("auth_digest_default", "", &["auth users = alice"], "s3cret", &[]);
        assert_eq!((s.code, o.code), (0, 0), "stock {}\nours {}", s.describe(), o.describe());
        assert_eq!(negotiated_digest(&o).as_deref(), Some("sha512"), "{}", o.describe());
        assert_eq!(negotiated_digest(&s).as_deref(), Some("sha512"), "{}", s.describe());
        for digest in ["sha512", "sha256", "sha1", "md5", "md4"] {
            let name = format!("auth_digest_{digest}");
            let (s, o) = auth_pull_offering(&name, digest, &["auth users = alice"], "s3cret", &[]);
            assert_eq!(s.code, 0, "stock {}", s.describe());
            assert_eq!(o.code, 0, "{digest}: ours {}", o.describe());
            if !bins::self_mode() {
                // (In self mode "ours" is stock, which ignores the offer limit.)
                assert_eq!(negotiated_digest(&o).as_deref(), Some(digest), "{}", o.describe());
            }
            let (s, o) = auth_pull_offering(&name, digest, &["auth users = alice"], "wrong", &[]);
            assert_eq!((s.code, o.code), (5, 5), "{digest}: stock {}\nours {}", s.describe(), o.describe());
            assert_eq!(error_lines(&o.stderr), error_lines(&s.stderr), "{digest}");
        }
    }
}

compat_test! {
    fn auth_digest_floor_refuses_weaker_client() {
        let lines = ["auth users = alice", "auth digest = sha256"];
        // (Every stock client since 3.2 sends its digest list, even with
        // --protocol=29, so only a daemon limited to weak digests falls
        // below the floor here.)
        // A modern client negotiates sha512 and passes the floor.
        let (s, o) = auth_pull_offering("auth_floor_ok", "", &lines, "s3cret", &[]);
        assert_eq!((s.code, o.code), (0, 0), "stock {}\nours {}", s.describe(), o.describe());
        if bins::self_mode() {
            return; // stock ignores the offer limit used below
        }
        // Our daemon limited to md5 is below the floor even for a modern client.
        let (_, o) = auth_pull_offering("auth_floor_md5", "md5", &lines, "s3cret", &[]);
        assert_eq!(o.code, 5, "ours {}", o.describe());
        assert!(o.stderr.contains("@ERROR: auth failed on module mod"), "{}", o.describe());
        // Without the floor the same md5-only daemon lets the client in.
        let (_, o) = auth_pull_offering("auth_nofloor_md5", "md5", &lines[..1], "s3cret", &[]);
        assert_eq!(o.code, 0, "ours {}", o.describe());
    }
}

compat_test! {
    fn pre_xfer_exec_refuses_transfer_with_its_output() {
        // The command's output reaches the client only on failure; it
        // reports the environment, which must match stock's line for line.
        let run = PullCase::new("pre_xfer_exec_refuses_transfer", small_tree)
            .module_line(
                "pre-xfer exec = echo \"m=$RSYNC_MODULE_NAME r=$RSYNC_REQUEST a=$RSYNC_HOST_ADDR h=$RSYNC_HOST_NAME u=$RSYNC_USER_NAME\"; env | grep '^RSYNC_ARG' | sort; exit 3",
            )
            .args(&["-a", "--exclude=*.bin"])
            .expect_stock_code(None)
            .compare_stderr()
            .run();
        let script_lines = |s: &str| -> Vec<String> {
            s.lines().filter(|l| !l.starts_with("rsync")).map(str::to_string).collect()
        };
        let (s, o) = (&run.stock.outcome, &run.ours.outcome);
        let want = script_lines(&s.stderr);
        assert!(want.iter().any(|l| l.starts_with("pre-xfer exec returned failure (768):")), "stock {}", s.describe());
        assert!(want.iter().any(|l| l == "m=mod r=mod/ a=127.0.0.1 h=localhost u="), "stock {}", s.describe());
        assert_eq!(script_lines(&o.stderr), want, "ours {}", o.describe());
        assert!(!run.ours.dest.as_ref().is_some_and(|d| d.join("a.txt").exists()), "transfer ran");
    }
}

compat_test! {
    fn pre_xfer_exec_success_lets_transfer_run() {
        PullCase::new("pre_xfer_exec_success", small_tree)
            .module_line("pre-xfer exec = test \"$RSYNC_MODULE_NAME\" = mod")
            .args(&["-a", "-i"])
            .run();
    }
}

/// Runs one pull against a daemon whose `post-xfer exec` records its
/// environment into `record`; returns the client's outcome and the record.
fn post_xfer_pull(
    bin: &std::path::Path,
    label: &str,
    dir: &TempDir,
    remote: &str,
) -> (i32, String) {
    let src = dir.join("src");
    let record = dir.join(format!("post-{label}.txt"));
    let line = format!(
        "post-xfer exec = echo \"m=$RSYNC_MODULE_NAME e=$RSYNC_EXIT_STATUS raw=$RSYNC_RAW_STATUS r=$RSYNC_REQUEST a=$RSYNC_HOST_ADDR u=$RSYNC_USER_NAME\" > {}.tmp && mv {0}.tmp {0}",
        record.display()
    );
    let config = crate::harness::compare::config_text(&src, &[], &[line], "");
    let d = Daemon::start(bin, &config, label);
    let dest = dir.join(format!("dest-{label}"));
    let o = run_cmd(
        &bins::stock(),
        [
            "-a".to_string(),
            d.url(remote),
            format!("{}/", dest.display()),
        ],
        None,
        client_timeout(),
    );
    // The command runs after the session ends: wait for its record.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !record.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&record)
        .unwrap_or_else(|_| format!("no record; daemon log:\n{}", d.logs()));
    let _ = std::fs::remove_file(&record);
    (o.code, text)
}

compat_test! {
    fn post_xfer_exec_sees_exit_status() {
        let dir = TempDir::new("post_xfer_exec");
        small_tree(&dir.join("src"));
        for remote in ["mod/", "mod/missing-file"] {
            let (sc, st) = post_xfer_pull(&bins::stock(), "stock", &dir, remote);
            let (oc, ot) = post_xfer_pull(&bins::ours(), "ours", &dir, remote);
            assert_eq!(oc, sc, "{remote}: exit code");
            assert!(st.starts_with("m=mod e="), "{remote}: stock record {st}");
            assert_eq!(ot, st, "{remote}: post-xfer exec environment");
        }
    }
}

/// A log file's lines without their time and pid prefix, the parts that
/// differ between two runs (times, pids, byte totals, versions) masked,
/// sorted (sessions of different connections interleave).
pub(crate) fn normalized_log(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .map(|l| {
            let l = l.splitn(4, ' ').nth(3).unwrap_or(l);
            if l.starts_with("sent ") && l.contains(" bytes  received ") {
                let size = l.rsplit(' ').next().unwrap_or("");
                return format!("sent N bytes  received N bytes  total size {size}");
            }
            if l.starts_with("rsyncd version ") {
                return "rsyncd version V starting".to_string();
            }
            l.to_string()
        })
        .collect();
    v.sort();
    v
}

/// A daemon of `side` logging to `WORK/SIDE.log`, with `globals`, a module
/// `mod` serving `src` and a writable `up` (`WORK/SIDE-up`, with
/// `up_lines`); and its log's path.
fn daemon_with_log(
    work: &TempDir,
    side: &str,
    globals: &str,
    src: &std::path::Path,
    up_lines: &str,
) -> (Daemon, std::path::PathBuf) {
    let up = work.join(format!("{side}-up"));
    std::fs::create_dir_all(&up).expect("up dir");
    let log = work.join(format!("{side}.log"));
    let conf = format!(
        "use chroot = no\n{globals}log file = {}\n[mod]\n    path = {}\n[up]\n    path = {}\n    read only = no\n{up_lines}",
        log.display(),
        src.display(),
        up.display()
    );
    let bin = if side == "stock" {
        bins::stock()
    } else {
        bins::ours()
    };
    (Daemon::start_config_log(&bin, &conf, side), log)
}

compat_test! {
    fn log_file_transfer_logging_and_log_format() {
        let work = TempDir::new("log_file");
        let src = work.join("src");
        small_tree(&src);
        let mut logs = Vec::new();
        for side in ["stock", "ours"] {
            let (d, log) = daemon_with_log(
                &work,
                side,
                "uid = root\ngid = root\nmunge symlinks = no\ntransfer logging = yes\n",
                &src,
                "    log format = %o|%h|%a|%m|%u|%f|%l|%b|%i|%n|%L|%M|%B|%U|%G\n",
            );
            let dest = work.join(format!("{side}-dest"));
            let run = |args: &[String]| {
                let o = run_cmd(&bins::stock(), args, Some(work.path()), client_timeout());
                assert_eq!(o.code, 0, "{side}: {args:?}\n{}", o.describe());
            };
            run(&["-a".into(), d.url("mod/"), format!("{}/", dest.display())]);
            run(&["-a".into(), format!("{}/", src.display()), d.url("up/")]);
            std::fs::write(dest.join("sub/new.txt"), b"new\n").expect("write");
            crate::harness::fixture::set_mtime(&dest.join("sub/new.txt"), 1_600_000_000, 0);
            crate::harness::fixture::set_mtime(&dest.join("sub"), 1_600_000_100, 0);
            run(&[
                "-a".into(),
                "--delete".into(),
                format!("{}/", dest.join("sub").display()),
                d.url("up/"),
            ]);
            run(&[d.url("")]);
            let o = run_cmd(&bins::stock(), [d.url("nosuch/")], Some(work.path()), client_timeout());
            assert_eq!(o.code, 5);
            // A receiving daemon logs its totals after the client has gone.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches("total size")
                .count()
                < 3
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            drop(d);
            logs.push(normalized_log(&std::fs::read_to_string(&log).unwrap_or_default()));
        }
        assert_eq!(
            logs[0], logs[1],
            "log files differ (stock first, ours second)"
        );
    }
}

// A daemon's log file has the messages it sends the client (but those for
// the client only) and its exit line, as stock's rwrite logs them: a file
// its uid cannot open on a pull, a destination it cannot make on a push.
compat_test! {
    fn log_file_has_the_sessions_errors() {
        let work = TempDir::new("log_file_errors");
        let src = work.join("src");
        small_tree(&src);
        std::fs::write(src.join("secret.txt"), b"root only\n").expect("write secret");
        std::fs::set_permissions(
            src.join("secret.txt"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod secret");
        let mut logs = Vec::new();
        for side in ["stock", "ours"] {
            let (d, log) = daemon_with_log(&work, side, "uid = 65534\ngid = 65534\n", &src, "");
            let dest = work.join(format!("{side}-dest"));
            let run = |args: &[String], want: i32| {
                let o = run_cmd(&bins::stock(), args, Some(work.path()), client_timeout());
                assert_eq!(o.code, want, "{side}: {args:?}\n{}", o.describe());
            };
            run(&["-a".into(), d.url("mod/"), format!("{}/", dest.display())], 23);
            run(&["-a".into(), format!("{}/", src.display()), d.url("up/new/")], 11);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("rsync error:")
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            drop(d);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<String> = normalized_log(&text)
                .into_iter()
                // The exit line's source location and version are each's own.
                .map(|l| match (l.starts_with("rsync error:"), l.find(" at ")) {
                    (true, Some(at)) => {
                        let role = l.rsplit('[').next().unwrap_or("").split('=').next().unwrap_or("");
                        format!("{} [{role}]", &l[..at])
                    }
                    _ => l,
                })
                .collect();
            logs.push(lines);
        }
        assert!(
            logs[0].iter().any(|l| l.contains("send_files failed to open")),
            "stock's log: {:?}",
            logs[0]
        );
        assert_eq!(logs[0], logs[1], "log files differ (stock first, ours second)");
    }
}

// What the module excludes is never matched by a wildcard in the request.
compat_test! {
    fn module_exclude_applies_to_wildcards() {
        PullCase::new("module_exclude_applies_to_wildcards", issue2_tree)
            .module_line("exclude = f7* many/")
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/[fm]*"))
            .run();
    }
}

// A --files-from=:FILE the module's rules hide is refused as an option.
compat_test! {
    fn module_exclude_rejects_files_from_list() {
        PullCase::new("module_exclude_rejects_files_from_list", |src: &std::path::Path| {
            issue2_tree(src);
            std::fs::write(src.join("names.lst"), b"f700.bin\n").unwrap();
        })
        .module_line("exclude = *.lst")
        .args(&["-a", "-i", "--files-from=:names.lst"])
        .expect_stock_code(None)
        .run();
    }
}

// `refuse options` as stock reads it: one-letter names, `a`/`archive` for
// what -a implies, `!NAME` taking back an earlier wildcard, deletion and
// compression refused however asked for, and the daemon's own refusals
// (--log-file from a client) without any setting.
compat_test! {
    fn module_refuse_options_like_stock() {
        let cases: &[(&str, &[&str])] = &[
            ("refuse options = c", &["-a", "-c"]),
            ("refuse options = delete", &["-a", "--delete-after"]),
            ("refuse options = * !a", &["-a"]),
            ("refuse options = * !a", &["-a", "-c"]),
            ("refuse options = a", &["-a"]),
            ("refuse options = z", &["-az"]),
            ("refuse options = compress", &["-a", "--zc=zstd", "-z"]),
            ("refuse options = *-dest", &["-a", "--link-dest=../x"]),
            ("refuse options = delete* !delete-after", &["-a", "--delete-after"]),
            ("comment = no refusals", &["-a", "-M--log-file=/tmp/rrsync-refused.log"]),
        ];
        for (i, (line, args)) in cases.iter().enumerate() {
            PullCase::new(&format!("module_refuse_options_like_stock_{i}"), small_tree)
                .module_line(line)
                .args(args)
                .expect_stock_code(None)
                .compare_stderr()
                .run();
        }
        assert!(!std::path::Path::new("/tmp/rrsync-refused.log").exists());
    }
}

// A negative `max connections` closes the module (no slot exists).
compat_test! {
    fn max_connections_negative_closes_the_module() {
        PullCase::new("max_connections_negative_closes_the_module", small_tree)
            .module_line("max connections = -1")
            .args(&["-a"])
            .expect_stock_code(Some(5))
            .compare_stderr()
            .run();
    }
}
