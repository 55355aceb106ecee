//! `rrsync push` family (issue 6): one source to several targets (stock
//! daemons and an rrsync daemon), targets that are down and come back, and
//! `--watch` keeping every target equal to the source through each kind of
//! change. Targets are compared with the source by the tree comparator
//! (content, type, mode, mtime, links, owners).

use crate::harness::bins;
use crate::harness::compare::{tree_problem, unix_now};
use crate::harness::daemon::Daemon;
use crate::harness::fixture;
use crate::harness::process::{client_timeout, run_cmd, Outcome};
use crate::harness::tmp::TempDir;
use crate::harness::tree::SnapOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A writable module `[t]` at `dir`.
fn module_config(dir: &Path) -> String {
    format!(
        "use chroot = no\nuid = root\ngid = root\n[t]\n    path = {}\n    read only = no\n    munge symlinks = no\n",
        dir.display()
    )
}

/// Targets: three stock daemons and one rrsync daemon, each with its own module dir.
struct Targets {
    dirs: Vec<PathBuf>,
    daemons: Vec<Option<Daemon>>,
    bins: Vec<PathBuf>,
}

impl Targets {
    fn start(work: &TempDir) -> Targets {
        let bins = vec![bins::stock(), bins::stock(), bins::stock(), bins::ours()];
        let mut dirs = Vec::new();
        let mut daemons = Vec::new();
        for (i, b) in bins.iter().enumerate() {
            let d = work.join(format!("t{i}"));
            std::fs::create_dir_all(&d).expect("target dir");
            daemons.push(Some(Daemon::start(b, &module_config(&d), &format!("t{i}"))));
            dirs.push(d);
        }
        Targets {
            dirs,
            daemons,
            bins,
        }
    }

    fn urls(&self) -> Vec<String> {
        self.daemons
            .iter()
            .map(|d| d.as_ref().map(|d| d.url("t/")).unwrap_or_default())
            .collect()
    }

    fn port(&self, i: usize) -> u16 {
        self.daemons[i].as_ref().map(|d| d.port()).unwrap_or(0)
    }

    fn stop(&mut self, i: usize) {
        self.daemons[i] = None;
    }

    fn restart(&mut self, i: usize, port: u16) {
        self.daemons[i] = Some(Daemon::start_on(
            &self.bins[i],
            &module_config(&self.dirs[i]),
            &format!("t{i}-again"),
            port,
        ));
    }
}

/// Differences between the source and each target (empty: all equal).
fn mismatches(src: &Path, targets: &[PathBuf], started: i64) -> Vec<String> {
    targets
        .iter()
        .filter_map(|t| {
            tree_problem(
                &format!("target {}", t.display()),
                src,
                t,
                SnapOptions { ignore_root: false },
                started,
            )
        })
        .collect()
}

fn push(args: &[String]) -> Outcome {
    let mut a = vec!["push".to_string()];
    a.extend(args.iter().cloned());
    run_cmd(&bins::ours(), &a, None, client_timeout())
}

fn tree(root: &Path) {
    fixture::small_tree(root);
    fixture::write_random(root, "big.bin", 3, 2_000_000);
    fixture::write(root, "with space/é.txt", b"unicode\n");
    fixture::hardlink(root, "a.txt", "sub/a-link.txt");
    fixture::pin_times(root, &[]);
}

compat_test! {
    fn fanout_push_to_three_stock_daemons_and_rrsync() {
        let work = TempDir::new("fanout_push");
        let src = work.join("src");
        tree(&src);
        let t = Targets::start(&work);
        let started = unix_now();
        let mut args = vec!["-aH".to_string(), "--delete".into(), format!("{}/", src.display())];
        args.extend(t.urls());
        let out = push(&args);
        assert_eq!(out.code, 0, "push failed:\n{}", out.describe());
        let m = mismatches(&src, &t.dirs, started);
        assert!(m.is_empty(), "{}\n{}", m.join("\n"), out.describe());
        // Every target is named in the summary as in sync.
        for u in t.urls() {
            assert!(
                out.stdout.lines().any(|l| l.starts_with(&u) && l.ends_with("ok")),
                "{u} missing from the summary:\n{}",
                out.stdout
            );
        }
        // A second push of a changed source reaches all of them again.
        fixture::write(&src, "sub/c.txt", b"charlie, changed\n");
        std::fs::remove_file(src.join("b.txt")).expect("rm");
        fixture::pin_times(&src, &[]);
        let out = push(&args);
        assert_eq!(out.code, 0, "second push failed:\n{}", out.describe());
        let m = mismatches(&src, &t.dirs, started);
        assert!(m.is_empty(), "{}", m.join("\n"));
    }
}

compat_test! {
    fn fanout_target_down_then_back() {
        let work = TempDir::new("fanout_down");
        let src = work.join("src");
        tree(&src);
        let mut t = Targets::start(&work);
        let urls = t.urls();
        let port = t.port(1);
        t.stop(1);
        let started = unix_now();
        let mut args = vec![
            "-aH".to_string(),
            "--retries=1".into(),
            "--retry-delay=100".into(),
            format!("{}/", src.display()),
        ];
        args.extend(urls.iter().cloned());
        let out = push(&args);
        assert_eq!(out.code, 10, "a target down must fail the run:\n{}", out.describe());
        assert!(
            out.stderr.contains(&format!("{} failed", urls[1])),
            "the failed target is not named:\n{}",
            out.describe()
        );
        let up: Vec<PathBuf> = [0, 2, 3].iter().map(|&i| t.dirs[i].clone()).collect();
        let m = mismatches(&src, &up, started);
        assert!(m.is_empty(), "the other targets did not complete: {}", m.join("\n"));
        // It comes back while the push is retrying: the run completes it.
        let mut args2 = vec![
            "-aH".to_string(),
            "--retries=20".into(),
            "--retry-delay=200".into(),
            format!("{}/", src.display()),
        ];
        args2.extend(urls.iter().cloned());
        let bg = Bg::start(&args2, &work.join("retry.log"));
        std::thread::sleep(Duration::from_millis(700));
        t.restart(1, port);
        let log = work.join("retry.log");
        let code = bg.wait(Duration::from_secs(30));
        assert_eq!(
            code,
            Some(0),
            "the retry did not complete it:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let m = mismatches(&src, &t.dirs, started);
        assert!(m.is_empty(), "{}", m.join("\n"));
    }
}

/// A push run in the background (watch mode), killed by its process group.
struct Bg {
    child: Option<Child>,
    log: PathBuf,
}

impl Bg {
    fn start(args: &[String], log: &Path) -> Bg {
        let out = std::fs::File::create(log).expect("log");
        let err = out.try_clone().expect("dup log");
        let child = Command::new(bins::ours())
            .arg("push")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .env("RRSYNC_LOG", "info")
            .process_group(0)
            .spawn()
            .expect("start rrsync push");
        Bg {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The exit code if it ends within `limit` (else it is killed, None).
    fn wait(mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        crate::harness::process::kill_group(&mut child);
        None
    }

    /// SIGTERM, then the exit code (it pushes what is pending first).
    fn terminate(mut self) -> Option<i32> {
        let child = self.child.as_mut()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let child = self.child.take()?;
        Bg {
            child: Some(child),
            log: self.log.clone(),
        }
        .wait(Duration::from_secs(20))
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            crate::harness::process::kill_group(c);
        }
    }
}

/// One change made to the source.
type Step = Box<dyn Fn(&Path)>;

/// Wait until every target equals the source (or fail after `limit`).
fn settle(src: &Path, targets: &[PathBuf], started: i64, limit: Duration, what: &str, bg: &Bg) {
    let deadline = Instant::now() + limit;
    loop {
        // A tree may change while it is read (a transfer in flight): that
        // counts as not yet equal.
        let m = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mismatches(src, targets, started)
        }))
        .unwrap_or_else(|_| vec!["a tree changed while it was compared".to_string()]);
        if m.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "after {what}, the targets did not reach the source within {limit:?}:\n{}\n--- push log ---\n{}",
                m.join("\n"),
                crate::harness::process::truncate(&bg.log(), 6000)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

compat_test! {
    fn watch_keeps_targets_equal_through_every_change() {
        let work = TempDir::new("watch_changes");
        let src = work.join("src");
        fixture::small_tree(&src);
        let t = Targets::start(&work);
        let started = unix_now();
        let mut args = vec![
            "--watch".to_string(),
            "-a".into(),
            "--delete".into(),
            format!("{}/", src.display()),
        ];
        args.extend(t.urls());
        let bg = Bg::start(&args, &work.join("watch.log"));
        let limit = Duration::from_secs(15);
        settle(&src, &t.dirs, started, limit, "the first push", &bg);
        let steps: Vec<(&str, Step)> = vec![
            ("create", Box::new(|s: &Path| {
                fixture::write(s, "new.txt", b"new\n");
            })),
            ("modify", Box::new(|s: &Path| {
                std::fs::write(s.join("a.txt"), b"alpha rewritten\n").expect("write");
            })),
            ("append", Box::new(|s: &Path| {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(s.join("b.txt")).expect("open");
                f.write_all(b"more\n").expect("append");
            })),
            ("chmod", Box::new(|s: &Path| fixture::chmod(s, "sub/c.txt", 0o600))),
            ("rename a file", Box::new(|s: &Path| {
                std::fs::rename(s.join("new.txt"), s.join("renamed.txt")).expect("rename");
            })),
            ("rename a dir", Box::new(|s: &Path| {
                std::fs::rename(s.join("sub"), s.join("sub2")).expect("rename dir");
            })),
            ("delete a file", Box::new(|s: &Path| {
                std::fs::remove_file(s.join("renamed.txt")).expect("rm");
            })),
            ("delete a tree", Box::new(|s: &Path| {
                std::fs::remove_dir_all(s.join("sub2")).expect("rm -r");
            })),
            ("create then delete at once", Box::new(|s: &Path| {
                fixture::write(s, "flash.txt", b"here and gone\n");
                std::fs::remove_file(s.join("flash.txt")).expect("rm");
            })),
            ("a deep dir with files right after mkdir", Box::new(|s: &Path| {
                std::fs::create_dir_all(s.join("d1/d2/d3/d4")).expect("mkdir -p");
                for i in 0..20 {
                    std::fs::write(s.join(format!("d1/d2/d3/d4/f{i}")), format!("{i}\n")).expect("write");
                    std::fs::write(s.join(format!("d1/g{i}")), format!("{i}\n")).expect("write");
                }
            })),
            ("10,000 files in a burst", Box::new(|s: &Path| {
                std::fs::create_dir_all(s.join("burst")).expect("mkdir");
                for i in 0..10_000 {
                    std::fs::write(s.join(format!("burst/f{i:05}")), format!("{i}\n")).expect("write");
                }
            })),
        ];
        for (what, step) in steps {
            step(&src);
            settle(&src, &t.dirs, started, limit, what, &bg);
        }
        assert_eq!(bg.terminate(), Some(0), "watch did not stop cleanly on SIGTERM");
    }
}

compat_test! {
    fn watch_target_killed_and_restarted_catches_up() {
        let work = TempDir::new("watch_restart");
        let src = work.join("src");
        fixture::small_tree(&src);
        let mut t = Targets::start(&work);
        let started = unix_now();
        let mut args = vec![
            "--watch".to_string(),
            "-a".into(),
            "--delete".into(),
            "--retries=0".into(),
            format!("{}/", src.display()),
        ];
        args.extend(t.urls());
        let bg = Bg::start(&args, &work.join("watch.log"));
        let limit = Duration::from_secs(15);
        settle(&src, &t.dirs, started, limit, "the first push", &bg);
        let port = t.port(3);
        t.stop(3);
        for i in 0..50 {
            fixture::write(&src, &format!("while-down/f{i}"), format!("{i}\n").as_bytes());
        }
        std::fs::remove_file(src.join("a.txt")).expect("rm");
        let up: Vec<PathBuf> = t.dirs[..3].to_vec();
        settle(&src, &up, started, limit, "changes while a target is down", &bg);
        t.restart(3, port);
        settle(&src, &t.dirs, started, Duration::from_secs(20), "the target's return", &bg);
        assert_eq!(bg.terminate(), Some(0), "watch did not stop cleanly on SIGTERM");
    }
}

compat_test! {
    fn fanout_config_file_jobs() {
        let work = TempDir::new("fanout_config");
        let src = work.join("src");
        tree(&src);
        let src2 = work.join("src2");
        fixture::small_tree(&src2);
        let t = Targets::start(&work);
        let urls = t.urls();
        let conf = work.join("push.conf");
        std::fs::write(
            &conf,
            format!(
                "options = -aH --delete\nretries = 1\n[one]\n    source = {}/\n    targets = {} {}\n[two]\n    source = {}/\n    targets = {} \\\n        {}\n    options = -a\n",
                src.display(),
                urls[0],
                urls[3],
                src2.display(),
                urls[1],
                urls[2]
            ),
        )
        .expect("write config");
        let started = unix_now();
        let out = push(&[format!("--config={}", conf.display())]);
        assert_eq!(out.code, 0, "config push failed:\n{}", out.describe());
        let m = mismatches(&src, &[t.dirs[0].clone(), t.dirs[3].clone()], started);
        assert!(m.is_empty(), "{}", m.join("\n"));
        let m = mismatches(&src2, &[t.dirs[1].clone(), t.dirs[2].clone()], started);
        assert!(m.is_empty(), "{}", m.join("\n"));
        // A bad config names the file and line, and nothing runs.
        std::fs::write(&conf, "[x]\n  source = /tmp\n  targets = /tmp/y\n  colour = blue\n").expect("write");
        let out = push(&[format!("--config={}", conf.display())]);
        assert_eq!(out.code, 1, "{}", out.describe());
        assert!(
            out.stderr.contains(&format!("{}:4: unknown parameter", conf.display())),
            "{}",
            out.describe()
        );
    }
}

compat_test! {
    fn fanout_live_view_on_a_terminal() {
        // Under a pseudo-terminal (script(1)) the push draws one line per
        // target in place, then leaves the final table; through a pipe it
        // draws nothing (the other cases check that).
        let work = TempDir::new("fanout_live");
        let src = work.join("src");
        tree(&src);
        let dests: Vec<PathBuf> = (0..3).map(|i| work.join(format!("t{i}"))).collect();
        let mut cmd = format!("{} push -aH {}/", bins::ours().display(), src.display());
        for d in &dests {
            cmd.push_str(&format!(" {}/", d.display()));
        }
        let out = run_cmd(Path::new("/usr/bin/script"), ["-qec", cmd.as_str(), "/dev/null"], None, client_timeout());
        assert_eq!(out.code, 0, "{}", out.describe());
        assert!(out.stdout.contains("\x1b[2K"), "no live view drawn:\n{:?}", out.stdout);
        for d in &dests {
            let name = format!("{}/", d.display());
            assert!(
                out.stdout.lines().any(|l| l.contains(&name) && (l.contains("waiting") || l.contains("sending") || l.contains("done"))),
                "{name} has no live line:\n{:?}",
                out.stdout
            );
            assert!(
                out.stdout.lines().any(|l| l.trim_end().starts_with(&name) && l.trim_end().ends_with("ok")),
                "{name} missing from the final table:\n{:?}",
                out.stdout
            );
            if let Some(p) = tree_problem("target", &src, d, SnapOptions { ignore_root: true }, unix_now()) {
                panic!("{p}");
            }
        }
        // Piped, the same push prints only the table.
        let piped = push(&["-a".to_string(), format!("{}/", src.display()), format!("{}/", dests[0].display())]);
        assert!(!piped.stdout.contains('\x1b'), "escape codes through a pipe:\n{:?}", piped.stdout);
    }
}
