//! `--remove-source-files`: the sender removes each source the receiver
//! reports done (MSG_SUCCESS). Checked with rrsync as the pushing client
//! (against a stock daemon) and as the daemon a stock client pulls from,
//! each beside stock doing the same, comparing what is left of the source,
//! the destination, exit codes and the `-vv` removal lines; and the refusal
//! on a read-only module.

use std::path::Path;

use crate::harness::bins;
use crate::harness::compare::normalize_stderr;
use crate::harness::daemon::Daemon;
use crate::harness::fixture::{copy_tree, small_tree};
use crate::harness::process::{client_timeout, run_cmd, Outcome};
use crate::harness::tmp::TempDir;
use crate::harness::tree::{diff, format_diff, snapshot};

/// The "sender removed" lines of a run, sorted.
fn removed_lines(o: &Outcome) -> Vec<String> {
    let mut v: Vec<String> = o
        .stdout
        .lines()
        .chain(o.stderr.lines())
        .filter(|l| l.contains("sender removed") || l.contains("Skipping sender remove"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// What is left under `root`: relative names with a type mark (the
/// directories' mtimes moved when their files went, at different moments).
fn left(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let t = e
                .file_type()
                .map(|t| {
                    if t.is_dir() {
                        "/"
                    } else if t.is_symlink() {
                        "@"
                    } else {
                        ""
                    }
                })
                .unwrap_or("?");
            if t == "/" {
                todo.push(p.clone());
            }
            out.push(format!(
                "{}{t}",
                p.strip_prefix(root).unwrap_or(&p).display()
            ));
        }
    }
    out.sort();
    out
}

fn same(a: &Path, b: &Path, what: &str) {
    let d = diff("stock", &snapshot(a), "ours", &snapshot(b));
    assert!(d.is_empty(), "{what} differs:\n{}", format_diff(&d, 20));
}

compat_test! {
    fn remove_source_files_as_pushing_client() {
        let work = TempDir::new("rsf_push");
        let src = work.join("src");
        small_tree(&src);
        for side in ["stock", "ours"] {
            copy_tree(&src, &work.join(format!("src-{side}")));
            std::fs::create_dir_all(work.join(format!("up-{side}"))).expect("up dir");
        }
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\n[up-stock]\n    path = {}\n    read only = no\n[up-ours]\n    path = {}\n    read only = no\n",
            work.join("up-stock").display(),
            work.join("up-ours").display()
        );
        let d = Daemon::start(&bins::stock(), &conf, "stock");
        let mut outs = Vec::new();
        for side in ["stock", "ours"] {
            let bin = if side == "stock" { bins::stock() } else { bins::ours() };
            let o = run_cmd(
                &bin,
                [
                    "-avv".to_string(),
                    "--remove-source-files".into(),
                    format!("{}/", work.join(format!("src-{side}")).display()),
                    d.url(&format!("up-{side}/")),
                ],
                None,
                client_timeout(),
            );
            outs.push(o);
        }
        assert_eq!(outs[0].code, 0, "stock: {}", outs[0].describe());
        assert_eq!(outs[1].code, outs[0].code, "ours: {}", outs[1].describe());
        assert!(!work.join("src-stock/a.txt").exists(), "stock kept its source");
        assert_eq!(left(&work.join("src-ours")), left(&work.join("src-stock")), "what is left of the source");
        same(&work.join("up-stock"), &work.join("up-ours"), "the destination");
        assert_eq!(removed_lines(&outs[1]), removed_lines(&outs[0]), "removal lines");
    }
}

compat_test! {
    fn remove_source_files_from_a_daemon_module() {
        let work = TempDir::new("rsf_pull");
        let src = work.join("src");
        small_tree(&src);
        let mut outs = Vec::new();
        for side in ["stock", "ours"] {
            let module = work.join(format!("mod-{side}"));
            copy_tree(&src, &module);
            let conf = format!(
                "use chroot = no\nuid = root\ngid = root\n[rw]\n    path = {}\n    read only = no\n[ro]\n    path = {}\n",
                module.display(),
                src.display()
            );
            let bin = if side == "stock" { bins::stock() } else { bins::ours() };
            let d = Daemon::start(&bin, &conf, side);
            let dest = work.join(format!("dest-{side}"));
            let o = run_cmd(
                &bins::stock(),
                ["-avv".to_string(), "--remove-source-files".into(), d.url("rw/"), format!("{}/", dest.display())],
                None,
                client_timeout(),
            );
            let ro = run_cmd(
                &bins::stock(),
                ["-a".to_string(), "--remove-source-files".into(), d.url("ro/"), format!("{}/", work.join(format!("ro-{side}")).display())],
                None,
                client_timeout(),
            );
            outs.push((o, ro));
        }
        let (s, o) = (&outs[0], &outs[1]);
        assert_eq!(s.0.code, 0, "stock: {}", s.0.describe());
        assert_eq!(o.0.code, s.0.code, "ours: {}", o.0.describe());
        assert!(!work.join("mod-stock/a.txt").exists(), "stock kept its module file");
        assert_eq!(left(&work.join("mod-ours")), left(&work.join("mod-stock")), "what is left of the module");
        same(&work.join("dest-stock"), &work.join("dest-ours"), "the destination");
        assert_eq!(removed_lines(&o.0), removed_lines(&s.0), "removal lines");
        // A read-only module refuses it, before anything is sent.
        assert_ne!(s.1.code, 0, "stock allowed removal from a read-only module");
        assert_eq!((o.1.code, normalize_stderr(&o.1.stderr)), (s.1.code, normalize_stderr(&s.1.stderr)), "read-only refusal: ours {}\nstock {}", o.1.describe(), s.1.describe());
        assert!(src.join("a.txt").exists(), "a read-only module lost a file");
    }
}

compat_test! {
    fn remove_source_files_current_files_in_incremental_lists() {
        // Files already current at the destination, in a directory's own
        // list (incremental recursion), are reported done by their wire
        // index. Ours once sent their place in that list instead, which
        // names entries of the first list (here `.`, `big`, never copied,
        // and `m`): a stock sender stops with a protocol error, and the
        // current files stay. A hard-link member linked here (`m`, to the
        // current `sub/n`) is reported done too.
        let work = TempDir::new("rsf_current");
        let src = work.join("src");
        crate::harness::fixture::write(&src, "big", &[b'x'; 4000]);
        crate::harness::fixture::write(&src, "m", b"linked\n");
        crate::harness::fixture::hardlink(&src, "m", "sub/n");
        for f in ["f0", "f1", "f2", "f3"] {
            crate::harness::fixture::write(&src, &format!("sub/{f}"), f.as_bytes());
        }
        crate::harness::fixture::pin_times(&src, &[]);
        for side in ["stock", "ours"] {
            copy_tree(&src, &work.join(format!("src-{side}")));
            // sub/ is current at the destination already.
            std::fs::create_dir_all(work.join(format!("dst-{side}"))).expect("dest dir");
            copy_tree(&src.join("sub"), &work.join(format!("dst-{side}/sub")));
        }
        let mut outs = Vec::new();
        for side in ["stock", "ours"] {
            let bin = if side == "stock" { bins::stock() } else { bins::ours() };
            let o = run_cmd(
                &bin,
                [
                    "-aHvv".to_string(),
                    "--remove-source-files".into(),
                    "--max-size=1000".into(),
                    format!("{}/", work.join(format!("src-{side}")).display()),
                    format!("{}/", work.join(format!("dst-{side}")).display()),
                ],
                None,
                client_timeout(),
            );
            outs.push(o);
        }
        assert_eq!(outs[0].code, 0, "stock: {}", outs[0].describe());
        assert_eq!(outs[1].code, outs[0].code, "ours: {}", outs[1].describe());
        assert!(work.join("src-stock/big").exists(), "stock removed a file it did not copy");
        assert_eq!(left(&work.join("src-ours")), left(&work.join("src-stock")), "what is left of the source");
        same(&work.join("dst-stock"), &work.join("dst-ours"), "the destination");
        assert_eq!(removed_lines(&outs[1]), removed_lines(&outs[0]), "removal lines");
    }
}

/// Pulls over a remote shell below protocol 30 with --remove-source-files
/// (and --files-from, whose names go raw below 31): the client's receiver
/// multiplexes what it sends, for its generator's MSG_SUCCESS, from
/// protocol 28 on (upstream need_messages_from_generator), and the sender
/// reads it so. Ours read plain bytes (a stock client's first message
/// ended our sender: "buffer overflow: recv_rules", exit 12), sent plain
/// ones as a client, and below 29 reported nothing done, so nothing was
/// removed. Each is run with rrsync as the server and as the client,
/// beside stock with stock, comparing exit codes, what is left of the
/// source, the destination and the sorted output (`-i` below 29 shows
/// upstream's `>f?????????`, the generator itemizing by itself).
fn rsf_old_protocol(name: &str, ours_is_server: bool) {
    let work = TempDir::new(name);
    let src = work.join("src");
    small_tree(&src);
    let rsh = work.join("rsh.sh");
    std::fs::write(&rsh, "#!/bin/sh\nshift\nexec \"$@\"\n").expect("rsh script");
    std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let list = work.join("list");
    std::fs::write(&list, ".\na.txt\nsub/c.txt\nsub/deeper/d.txt\n").expect("list");
    for proto in ["28", "29"] {
        for files_from in [false, true] {
            let mut outs = Vec::new();
            for side in ["stock", "ours"] {
                let s = work.join(format!("src-{side}-{proto}-{files_from}"));
                copy_tree(&src, &s);
                let (client, server) = match (side, ours_is_server) {
                    ("stock", _) => (bins::stock(), bins::stock()),
                    (_, true) => (bins::stock(), bins::ours()),
                    (_, false) => (bins::ours(), bins::stock()),
                };
                let mut args = vec![
                    "-e".to_string(),
                    rsh.display().to_string(),
                    format!("--rsync-path={}", server.display()),
                    format!("--protocol={proto}"),
                    "--remove-source-files".into(),
                    "-it".into(),
                ];
                if files_from {
                    args.push(format!("--files-from={}", list.display()));
                } else {
                    args.push("-r".into());
                }
                args.push(format!("lh:{}/", s.display()));
                args.push(format!(
                    "{}/",
                    work.join(format!("dst-{side}-{proto}-{files_from}"))
                        .display()
                ));
                outs.push((run_cmd(&client, args, None, client_timeout()), s));
            }
            let what = format!("protocol {proto}, files-from {files_from}");
            let ((so, ss), (oo, os)) = (&outs[0], &outs[1]);
            assert_eq!(so.code, 0, "stock ({what}): {}", so.describe());
            assert_eq!(oo.code, so.code, "ours ({what}): {}", oo.describe());
            assert!(!ss.join("a.txt").exists(), "stock kept its source ({what})");
            assert_eq!(left(os), left(ss), "what is left of the source ({what})");
            same(
                &work.join(format!("dst-stock-{proto}-{files_from}")),
                &work.join(format!("dst-ours-{proto}-{files_from}")),
                &format!("the destination ({what})"),
            );
            let sorted = |t: &str| {
                let mut v: Vec<String> = t
                    .lines()
                    .map(|l| l.replace("-stock-", "-X-").replace("-ours-", "-X-"))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(sorted(&oo.stdout), sorted(&so.stdout), "stdout ({what})");
        }
    }
}

compat_test! {
    fn remove_source_files_below_protocol_30_from_our_server() {
        rsf_old_protocol("rsf_old_server", true);
    }
}

compat_test! {
    fn remove_source_files_below_protocol_30_as_our_client() {
        rsf_old_protocol("rsf_old_client", false);
    }
}

compat_test! {
    fn remove_source_files_symlinks_and_specials_when_we_receive() {
        // Our generator tells the sender about symlinks, fifos (made or
        // already current) as upstream's return_with_success, so a local
        // copy removes them from the source as stock's does.
        let work = TempDir::new("rsf_local_specials");
        let src = work.join("src");
        small_tree(&src);
        crate::harness::fixture::mkfifo(&src, "fifo");
        crate::harness::fixture::mkfifo(&src, "sub/fifo2");
        crate::harness::fixture::symlink(&src, "dangling", "nowhere");
        let mut outs = Vec::new();
        for side in ["stock", "ours"] {
            let s = work.join(format!("src-{side}"));
            copy_tree(&src, &s);
            let dst = work.join(format!("dst-{side}"));
            // An already current fifo and symlink at the destination too.
            crate::harness::fixture::mkfifo(&dst, "fifo");
            crate::harness::fixture::symlink(&dst, "dangling", "nowhere");
            let bin = if side == "stock" { bins::stock() } else { bins::ours() };
            outs.push(run_cmd(
                &bin,
                [
                    "-avv".to_string(),
                    "--remove-source-files".into(),
                    format!("{}/", s.display()),
                    format!("{}/", dst.display()),
                ],
                None,
                client_timeout(),
            ));
        }
        assert_eq!(outs[0].code, 0, "stock: {}", outs[0].describe());
        assert_eq!(outs[1].code, outs[0].code, "ours: {}", outs[1].describe());
        assert!(!work.join("src-stock/fifo").exists(), "stock kept its fifo");
        assert_eq!(left(&work.join("src-ours")), left(&work.join("src-stock")), "what is left of the source");
        assert_eq!(removed_lines(&outs[1]), removed_lines(&outs[0]), "removal lines");
    }
}

compat_test! {
    fn remove_source_files_dry_run_removes_nothing() {
        // -n: nothing is removed, not even a source the destination already
        // has (ours removed those: its generator reported them done in a
        // dry run too). A local copy and a pull from a stock daemon, where
        // our generator decides.
        let work = TempDir::new("rsf_dry_run");
        let src = work.join("src");
        small_tree(&src);
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\nread only = no\n[src-stock]\n    path = {}\n[src-ours]\n    path = {}\n",
            work.join("pull-src-stock").display(),
            work.join("pull-src-ours").display()
        );
        for side in ["stock", "ours"] {
            for kind in ["local", "pull"] {
                copy_tree(&src, &work.join(format!("{kind}-src-{side}")));
                copy_tree(&src, &work.join(format!("{kind}-dst-{side}")));
            }
        }
        let d = Daemon::start(&bins::stock(), &conf, "stock");
        for side in ["stock", "ours"] {
            let bin = if side == "stock" { bins::stock() } else { bins::ours() };
            for (kind, from) in [
                ("local", format!("{}/", work.join(format!("local-src-{side}")).display())),
                ("pull", d.url(&format!("src-{side}/"))),
            ] {
                let o = run_cmd(
                    &bin,
                    [
                        "-ai".to_string(),
                        "-n".into(),
                        "--remove-source-files".into(),
                        from,
                        format!("{}/", work.join(format!("{kind}-dst-{side}")).display()),
                    ],
                    None,
                    client_timeout(),
                );
                assert_eq!(o.code, 0, "{side} {kind}: {}", o.describe());
                same(&src, &work.join(format!("{kind}-src-{side}")), &format!("{side} {kind}: the source after a dry run"));
            }
        }
    }
}
