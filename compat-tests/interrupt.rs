//! Interrupted transfers: SIGINT to a client's process group (a Ctrl-C) or
//! SIGTERM to a process mid-file. Stock removes the temp file it was
//! writing, says "received SIGINT, SIGTERM, or SIGHUP (code 20)" and exits
//! 20; the old file stays as it was. Ours must do the same (it died by
//! the signal, leaving `.big.XXXXXX` behind).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::bins;
use crate::harness::daemon::Daemon;
use crate::harness::fixture;
use crate::harness::tmp::TempDir;

/// What a side's interrupted run left.
struct Interrupted {
    code: Option<i32>,
    stderr: String,
}

/// Who gets the signal.
enum Target {
    /// The client's process group (a Ctrl-C at a terminal).
    Group,
    /// The client process alone.
    Client,
    /// The connection process of a daemon (its child).
    DaemonChild(u32),
    /// The client's child (a server started over a remote shell that execs).
    ClientChild,
}

/// Run `program args` in its own process group, wait until `dest` holds a
/// temp file (the transfer is mid-file), then send `sig` to `target` and
/// wait for the end.
fn interrupt(
    program: &Path,
    args: &[String],
    dest: &Path,
    sig: nix::sys::signal::Signal,
    target: Target,
) -> Interrupted {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn client");
    let pid = child.id() as i32;
    let start = Instant::now();
    while temp_files(dest).is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !temp_files(dest).is_empty(),
        "no temp file appeared in {}",
        dest.display()
    );
    std::thread::sleep(Duration::from_millis(200));
    let to = match target {
        Target::Group => -pid,
        Target::Client => pid,
        Target::DaemonChild(daemon) => children_of(daemon)
            .first()
            .copied()
            .expect("a connection process"),
        Target::ClientChild => children_of(pid as u32)
            .first()
            .copied()
            .expect("the server process"),
    };
    let to = nix::unistd::Pid::from_raw(to);
    let _ = nix::sys::signal::kill(to, sig);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(-pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    Interrupted {
        code: status.and_then(|s| s.code()),
        stderr,
    }
}

/// The child processes of `pid`.
fn children_of(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Temp files (`.name.XXXXXX`) in `dir`.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let n = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    n.starts_with('.') && n.len() > 8 && n.as_bytes()[n.len() - 7] == b'.'
                })
                .collect()
        })
        .unwrap_or_default()
}

fn source(work: &TempDir) -> PathBuf {
    let src = work.join("src");
    fixture::write_random(&src, "big", 11, 16 << 20);
    fixture::pin_times(&src, &[]);
    src
}

/// The old `big` at each side's destination, kept to compare after.
fn old_dest(dest: &Path) -> Vec<u8> {
    fixture::write_random(dest, "big", 12, 100_000);
    std::fs::read(dest.join("big")).expect("old big")
}

fn check(side: &str, r: &Interrupted, dest: &Path, old: &[u8]) {
    assert_eq!(r.code, Some(20), "{side}: exit code; stderr:\n{}", r.stderr);
    assert!(
        r.stderr
            .contains("received SIGINT, SIGTERM, or SIGHUP (code 20)"),
        "{side}: stderr:\n{}",
        r.stderr
    );
    assert_eq!(
        temp_files(dest),
        Vec::<PathBuf>::new(),
        "{side}: temp files left"
    );
    let now = std::fs::read(dest.join("big")).expect("big is there");
    assert!(now == old, "{side}: the old file changed");
}

compat_test! {
    fn interrupt_local_copy_with_ctrl_c() {
        let work = TempDir::new("interrupt_local");
        let src = source(&work);
        for (side, bin) in [("stock", bins::stock()), ("ours", bins::ours())] {
            let dest = work.join(side);
            let old = old_dest(&dest);
            let args = vec!["-a".to_string(), "--bwlimit=2000".into(), format!("{}/", src.display()), format!("{}/", dest.display())];
            let r = interrupt(&bin, &args, &dest, nix::sys::signal::Signal::SIGINT, Target::Group);
            check(side, &r, &dest, &old);
        }
    }
}

compat_test! {
    fn interrupt_client_pulling_from_a_daemon() {
        // SIGTERM to the client alone, as `kill PID` does.
        let work = TempDir::new("interrupt_pull");
        let src = source(&work);
        let conf = format!("use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n", src.display());
        let d = Daemon::start(&bins::stock(), &conf, "stock");
        for (side, bin) in [("stock", bins::stock()), ("ours", bins::ours())] {
            let dest = work.join(side);
            let old = old_dest(&dest);
            let args = vec!["-a".to_string(), "--bwlimit=2000".into(), d.url("mod/"), format!("{}/", dest.display())];
            let r = interrupt(&bin, &args, &dest, nix::sys::signal::Signal::SIGTERM, Target::Client);
            check(side, &r, &dest, &old);
        }
    }
}

compat_test! {
    fn interrupt_daemon_connection_receiving() {
        // A stock client pushes; the daemon's connection process gets
        // SIGTERM (a service being stopped): its temp file goes, the old
        // file stays. (The client's own exit code is the peer's business:
        // only the module's state is compared.)
        let work = TempDir::new("interrupt_daemon");
        let src = source(&work);
        for side in ["stock", "ours"] {
            let dest = work.join(side);
            let old = old_dest(&dest);
            let conf = format!(
                "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n    read only = no\n",
                dest.display()
            );
            let bin = if side == "stock" { bins::stock() } else { bins::ours() };
            let d = Daemon::start(&bin, &conf, side);
            let args = vec!["-a".to_string(), "--bwlimit=2000".into(), format!("{}/", src.display()), d.url("mod/")];
            let r = interrupt(&bins::stock(), &args, &dest, nix::sys::signal::Signal::SIGTERM, Target::DaemonChild(d.pid()));
            assert!(r.code.is_some_and(|c| c != 0), "{side}: the client should fail: {:?}\n{}", r.code, r.stderr);
            assert_eq!(temp_files(&dest), Vec::<PathBuf>::new(), "{side}: temp files left in the module");
            let now = std::fs::read(dest.join("big")).expect("big is there");
            assert!(now == old, "{side}: the old file changed");
        }
    }
}

/// Ctrl-C to a local copy run with `opt`, by stock and by ours: each
/// exits 20 leaving no temp file; `check(side, dest, old, whole)` then
/// looks at what was kept (`old`: the destination's file before, `whole`:
/// the source's).
fn ctrl_c_with(tag: &str, opt: &str, check: impl Fn(&str, &Path, &[u8], &[u8])) {
    let work = TempDir::new(tag);
    let src = source(&work);
    let whole = std::fs::read(src.join("big")).expect("source big");
    for (side, bin) in [("stock", bins::stock()), ("ours", bins::ours())] {
        let dest = work.join(side);
        let old = old_dest(&dest);
        let args = vec![
            "-a".to_string(),
            opt.to_string(),
            "--bwlimit=2000".into(),
            format!("{}/", src.display()),
            format!("{}/", dest.display()),
        ];
        let r = interrupt(
            &bin,
            &args,
            &dest,
            nix::sys::signal::Signal::SIGINT,
            Target::Group,
        );
        assert_eq!(r.code, Some(20), "{side}: exit code; stderr:\n{}", r.stderr);
        assert_eq!(
            temp_files(&dest),
            Vec::<PathBuf>::new(),
            "{side}: temp files left"
        );
        check(side, &dest, &old, &whole);
    }
}

compat_test! {
    fn interrupt_with_partial_keeps_what_arrived() {
        // `-P` (--partial): what arrived before the Ctrl-C replaces the old
        // file, for the next run to resume from (upstream's cleanup keeps
        // it); no temp file stays.
        ctrl_c_with("interrupt_partial", "--partial", |side, dest, old, whole| {
            let now = std::fs::read(dest.join("big")).expect("big is there");
            assert!(now != old && !now.is_empty(), "{side}: the partial file was not kept");
            assert!(whole.starts_with(&now), "{side}: the partial file is not a prefix of the source");
        });
    }
}

compat_test! {
    fn interrupt_with_partial_dir_keeps_what_arrived_there() {
        // --partial-dir: the partial file goes into the partial dir (made
        // on the way); the old file stays as it was.
        ctrl_c_with("interrupt_partial_dir", "--partial-dir=.part", |side, dest, old, whole| {
            let now = std::fs::read(dest.join("big")).expect("big is there");
            assert!(now == old, "{side}: the old file changed");
            let part = std::fs::read(dest.join(".part/big")).unwrap_or_default();
            assert!(!part.is_empty() && whole.starts_with(&part), "{side}: no partial file in .part/");
        });
    }
}

compat_test! {
    fn interrupt_server_receiving_gets_sigusr1() {
        // What a failing stock client does to its remote-shell child:
        // SIGUSR1. The server (stock's, or ours by --rsync-path) removes its
        // temp file and leaves the old file whole.
        let work = TempDir::new("interrupt_usr1");
        let src = source(&work);
        let rsh = work.join("rsh.sh");
        std::fs::write(&rsh, "#!/bin/sh\nshift\nexec \"$@\"\n").expect("rsh script");
        std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod rsh");
        for (side, bin) in [("stock", bins::stock()), ("ours", bins::ours())] {
            let dest = work.join(side);
            let old = old_dest(&dest);
            let args = vec![
                "-a".to_string(),
                "--bwlimit=2000".into(),
                "-e".into(),
                rsh.display().to_string(),
                format!("--rsync-path={}", bin.display()),
                format!("{}/", src.display()),
                format!("lh:{}/", dest.display()),
            ];
            let r = interrupt(&bins::stock(), &args, &dest, nix::sys::signal::Signal::SIGUSR1, Target::ClientChild);
            assert!(r.code.is_some_and(|c| c != 0), "{side}: the client should fail: {:?}\n{}", r.code, r.stderr);
            assert_eq!(temp_files(&dest), Vec::<PathBuf>::new(), "{side}: temp files left");
            let now = std::fs::read(dest.join("big")).expect("big is there");
            assert!(now == old, "{side}: the old file changed");
        }
    }
}

/// The next local minute boundary at least 8 s away, as `--stop-at` takes
/// it (HH:MM), and its Unix time.
fn next_minute() -> (String, u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut at = (now / 60 + 1) * 60;
    if at - now < 8 {
        at += 60;
    }
    let out = Command::new("date")
        .arg("-d")
        .arg(format!("@{at}"))
        .arg("+%H:%M")
        .output()
        .expect("date");
    (String::from_utf8_lossy(&out.stdout).trim().to_string(), at)
}

compat_test! {
    fn stop_at_ends_pulls_and_pushes_as_stock() {
        // --stop-at (minute resolution): four slow clients run at once,
        // stock's and ours pulling from and pushing to a stock daemon, and
        // all stop at the same minute. A pull stops in its receiver (stock:
        // code 30 there, then its generator's lost connection, exit 12), a
        // push in its sender (exit 30); no temp file stays, the old file
        // is untouched.
        let work = TempDir::new("stop_at");
        let src = source(&work);
        let up = |side: &str| work.join(format!("up-{side}"));
        let mut conf = format!("use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n", src.display());
        for side in ["stock", "ours"] {
            std::fs::create_dir_all(up(side)).expect("module dir");
            conf.push_str(&format!("[up-{side}]\n    path = {}\n    read only = no\n", up(side).display()));
        }
        let d = Daemon::start(&bins::stock(), &conf, "stock");
        let (when, at) = next_minute();
        let mut runs = Vec::new();
        for (side, bin) in [("stock", bins::stock()), ("ours", bins::ours())] {
            let dest = work.join(format!("pull-{side}"));
            let old = old_dest(&dest);
            let common = ["-a".to_string(), "--bwlimit=100".into(), format!("--stop-at={when}")];
            let mut pull: Vec<String> = common.to_vec();
            pull.extend([d.url("mod/"), format!("{}/", dest.display())]);
            let mut push: Vec<String> = common.to_vec();
            push.extend([format!("{}/", src.display()), d.url(&format!("up-{side}/"))]);
            for (kind, args, dir) in [("pull", pull, dest.clone()), ("push", push, up(side))] {
                let child = Command::new(&bin)
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .process_group(0)
                    .spawn()
                    .expect("spawn client");
                runs.push((side, kind, child, dir, old.clone()));
            }
        }
        let mut results = Vec::new();
        for (side, kind, mut child, dir, old) in runs {
            let deadline = Instant::now() + Duration::from_secs(at.saturating_sub(unix_now()) + 30);
            let status = loop {
                if let Ok(Some(s)) = child.try_wait() {
                    break s.code();
                }
                if Instant::now() > deadline {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(-(child.id() as i32)), nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let stopped = unix_now();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut stderr);
            }
            assert!(stopped >= at, "{side} {kind}: ended before the limit ({stopped} < {at}): {stderr}");
            assert!(stderr.contains("stopping at requested limit"), "{side} {kind}: stderr:\n{stderr}");
            // The daemon's side of a push cleans up once the client is gone.
            let start = Instant::now();
            while !temp_files(&dir).is_empty() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(temp_files(&dir), Vec::<PathBuf>::new(), "{side} {kind}: temp files left");
            if kind == "pull" {
                let now = std::fs::read(dir.join("big")).expect("big is there");
                assert!(now == old, "{side} {kind}: the old file changed");
            }
            results.push(((kind, side), status));
        }
        for kind in ["pull", "push"] {
            let code = |side| results.iter().find(|r| r.0 == (kind, side)).map(|r| r.1);
            assert_eq!(code("ours"), code("stock"), "{kind}: exit codes differ");
        }
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}
