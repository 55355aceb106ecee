//! Load (issue 5): 200 stock clients pulling at once from one rrsync
//! daemon, and 50 concurrent stock clients across several modules of a
//! root config (`use chroot = yes`, `uid = nobody`, modules with their own
//! uids), each confined to its module and uid. Every client must succeed
//! with the right tree, and the daemon's memory must stay bounded.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::bins;
use crate::harness::daemon::Daemon;
use crate::harness::fixture::{nobody_ids, pin_times, write_random};
use crate::harness::tmp::TempDir;
use crate::harness::tree::{diff, format_diff, snapshot};

/// A tree of `n` small files in a few directories.
fn load_tree(root: &Path, n: usize, seed: u64) {
    for i in 0..n {
        write_random(
            root,
            &format!("d{}/f{i:03}.txt", i % 5),
            seed + i as u64,
            (i * 37) % 3000,
        );
    }
    pin_times(root, &[]);
}

/// Resident KiB of `pid` and all its descendants (listener + sessions).
fn tree_rss_kib(pid: u32) -> u64 {
    let mut kids: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(pp) = ppid {
                kids.entry(pp).or_default().push(p);
            }
        }
    }
    let mut total = 0;
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/status")) {
            total += st
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
        todo.extend(kids.get(&p).into_iter().flatten());
    }
    total
}

/// Samples the daemon tree's summed RSS until dropped; keeps the peak and
/// the most processes seen at once.
struct MemWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemWatch {
    fn start(pid: u32) -> MemWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(tree_rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        MemWatch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak_kib(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Stock clients started together; each is waited for with a deadline
/// and killed if it overruns.
fn run_all(cmds: Vec<Vec<String>>, limit: Duration) -> Vec<(i32, String)> {
    let mut children: Vec<Child> = cmds
        .iter()
        .map(|args| {
            Command::new(bins::stock())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn stock client")
        })
        .collect();
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    for c in children.iter_mut() {
        let code = loop {
            match c.try_wait() {
                Ok(Some(st)) => break st.code().unwrap_or(-1),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break -2;
                }
            }
        };
        let mut err = String::new();
        if let Some(mut e) = c.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        out.push((code, err));
    }
    out
}

/// [`same_tree`] where owners may differ (uploads belong to the module's uid;
/// their ownership is checked separately).
fn same_tree_but_owner(a: &Path, b: &Path, who: &str) -> Option<String> {
    let d: Vec<String> = diff("src", &snapshot(a), who, &snapshot(b))
        .into_iter()
        .filter_map(|l| {
            let (name, what) = l.split_once(": ")?;
            let rest: Vec<&str> = what
                .split("; ")
                .filter(|p| !p.starts_with("owner "))
                .collect();
            (!rest.is_empty()).then(|| format!("{name}: {}", rest.join("; ")))
        })
        .collect();
    (!d.is_empty()).then(|| format!("{who}:\n{}", format_diff(&d, 10)))
}

fn same_tree(a: &Path, b: &Path, who: &str) -> Option<String> {
    let d = diff("src", &snapshot(a), who, &snapshot(b));
    (!d.is_empty()).then(|| format!("{who}:\n{}", format_diff(&d, 10)))
}

compat_test! {
    fn load_200_clients_pull_at_once() {
        let work = TempDir::new("load200");
        let src = work.join("src");
        load_tree(&src, 100, 1);
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n",
            src.display()
        );
        let d = Daemon::start(&bins::ours(), &conf, "ours");
        let idle = tree_rss_kib(d.pid());
        let dests: Vec<PathBuf> = (0..200).map(|i| work.join(format!("dst{i:03}"))).collect();
        let cmds = dests
            .iter()
            .map(|p| vec!["-a".to_string(), d.url("mod/"), format!("{}/", p.display())])
            .collect();
        let watch = MemWatch::start(d.pid());
        let results = run_all(cmds, Duration::from_secs(240));
        let peak = watch.peak_kib();
        let failed: Vec<String> = results
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| *c != 0)
            .map(|(i, (c, e))| format!("client {i}: exit {c}: {}", e.lines().next().unwrap_or("")))
            .collect();
        assert!(failed.is_empty(), "{} of 200 failed:\n{}\n{}", failed.len(), failed[..failed.len().min(10)].join("\n"), d.logs());
        let wrong: Vec<String> = dests.iter().enumerate().filter_map(|(i, p)| same_tree(&src, p, &format!("dst{i:03}"))).collect();
        assert!(wrong.is_empty(), "{} trees differ:\n{}", wrong.len(), wrong[..wrong.len().min(3)].join("\n"));
        // Bounded: at most 200 sessions of a few MiB each plus the
        // listener, and the listener back to its size afterwards.
        assert!(peak < 200 * 16 * 1024, "daemon tree peaked at {peak} KiB for 200 sessions");
        std::thread::sleep(Duration::from_millis(500));
        let after = tree_rss_kib(d.pid());
        assert!(after < idle + 4096, "listener grew from {idle} KiB to {after} KiB");
    }
}

compat_test! {
    fn load_50_clients_across_chrooted_modules_with_their_own_uids() {
        // A stock root config: chroot on, nobody by default, modules with
        // their own uids. Clients pull each module's tree and push into
        // it at once; every upload must be owned by that module's uid and
        // every pull must see that module's tree only.
        let (nobody_uid, nobody_gid) = nobody_ids();
        let work = TempDir::new("load_uids");
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755));
        }
        let modules: Vec<(String, u32)> = (0..5).map(|k| (format!("m{k}"), 23000 + k as u32)).collect();
        let mut conf = format!("use chroot = yes\nuid = nobody\ngid = {nobody_gid}\nread only = no\n");
        for (k, (name, uid)) in modules.iter().enumerate() {
            let root = work.join(name);
            load_tree(&root.join("seed"), 30, 100 * k as u64);
            std::fs::write(root.join("seed/which.txt"), name.as_bytes()).expect("marker");
            pin_times(&root.join("seed"), &[]);
            std::fs::create_dir_all(root.join("up")).expect("up dir");
            nix::unistd::chown(&root.join("up"), Some(nix::unistd::Uid::from_raw(*uid)), Some(nix::unistd::Gid::from_raw(*uid)))
                .expect("chown up");
            // m4 keeps the global nobody.
            let uid_line = if k == 4 { String::new() } else { format!("    uid = {uid}\n    gid = {uid}\n") };
            conf.push_str(&format!("[{name}]\n    path = {}\n{uid_line}", root.display()));
        }
        // m4 runs as nobody: its upload dir belongs to nobody.
        nix::unistd::chown(&work.join("m4/up"), Some(nix::unistd::Uid::from_raw(nobody_uid)), Some(nix::unistd::Gid::from_raw(nobody_gid)))
            .expect("chown m4 up");
        let d = Daemon::start(&bins::ours(), &conf, "ours");
        let push_src = work.join("push-src");
        load_tree(&push_src, 20, 999);
        let mut cmds = Vec::new();
        let mut pulls = Vec::new();
        for i in 0..50 {
            let (name, _) = &modules[i % modules.len()];
            if i % 2 == 0 {
                let dest = work.join(format!("pull{i:02}"));
                cmds.push(vec!["-rlt".to_string(), d.url(&format!("{name}/seed/")), format!("{}/", dest.display())]);
                pulls.push((name.clone(), dest));
            } else {
                cmds.push(vec!["-rlt".to_string(), format!("{}/", push_src.display()), d.url(&format!("{name}/up/c{i:02}/"))]);
            }
        }
        let watch = MemWatch::start(d.pid());
        let results = run_all(cmds, Duration::from_secs(240));
        let peak = watch.peak_kib();
        let failed: Vec<String> = results
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| *c != 0)
            .map(|(i, (c, e))| format!("client {i}: exit {c}: {}", e.trim()))
            .collect();
        assert!(failed.is_empty(), "{} of 50 failed:\n{}\n{}", failed.len(), failed.join("\n"), d.logs());
        for (name, dest) in &pulls {
            let src = work.join(name).join("seed");
            if let Some(p) = same_tree(&src, dest, &dest.display().to_string()) {
                panic!("pull from {name} differs: {p}");
            }
        }
        for (k, (name, uid)) in modules.iter().enumerate() {
            let want = if k == 4 { nobody_uid } else { *uid };
            let up = work.join(name).join("up");
            let mut n = 0;
            for i in (0..50).filter(|i| i % 2 == 1 && i % modules.len() == k) {
                let dir = up.join(format!("c{i:02}"));
                if let Some(p) = same_tree_but_owner(&push_src, &dir, &dir.display().to_string()) {
                    panic!("push into {name} differs: {p}");
                }
                for e in walk(&dir) {
                    let owner = std::fs::symlink_metadata(&e).map(|m| m.uid()).unwrap_or(u32::MAX);
                    assert_eq!(owner, want, "{} in {name} is owned by {owner}, not the module's uid {want}", e.display());
                    n += 1;
                }
            }
            assert!(n > 0, "nothing was pushed into {name}");
            // Nothing from another module's uploads landed here.
            let names: Vec<String> = std::fs::read_dir(&up)
                .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            for nm in names {
                let i: usize = nm.trim_start_matches('c').parse().unwrap_or(usize::MAX);
                assert_eq!(i % modules.len(), k, "{nm} landed in {name}");
            }
        }
        assert!(peak < 50 * 16 * 1024, "daemon tree peaked at {peak} KiB for 50 sessions");
    }
}

/// Every path under `root` (not `root` itself).
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(p.clone());
                }
                out.push(p);
            }
        }
    }
    out
}

compat_test! {
    fn load_1000_idle_connections_do_not_starve_others() {
        // Someone opens 1000 connections and says nothing: a real client
        // is still served at once, and the idle ones go at the handshake
        // deadline (here the module timeout, 3 s).
        let work = TempDir::new("idle1000");
        let src = work.join("src");
        load_tree(&src, 20, 7);
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\ntimeout = 3\n[mod]\n    path = {}\n",
            src.display()
        );
        // Room for 1000 sockets in this process.
        if let Ok((_, hard)) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard.min(65536), hard);
        }
        let d = Daemon::start(&bins::ours(), &conf, "ours");
        let idle: Vec<std::net::TcpStream> = (0..1000)
            .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", d.port())).ok())
            .collect();
        assert!(idle.len() >= 1000, "only {} idle connections opened", idle.len());
        let dest = work.join("dest");
        let t = Instant::now();
        let results = run_all(vec![vec!["-a".to_string(), d.url("mod/"), format!("{}/", dest.display())]], Duration::from_secs(60));
        assert_eq!(results[0].0, 0, "pull beside 1000 idle connections: {}\n{}", results[0].1, d.logs());
        assert!(t.elapsed() < Duration::from_secs(20), "the pull waited {:?}", t.elapsed());
        if let Some(p) = same_tree(&src, &dest, "dest") {
            panic!("{p}");
        }
        // The idle ones are dropped by the deadline.
        let mut closed = 0;
        let mut open: std::collections::BTreeMap<String, usize> = Default::default();
        for mut s in idle {
            use std::io::{ErrorKind, Read};
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut b = [0u8; 128];
            let gone = loop {
                match s.read(&mut b) {
                    Ok(0) => break true,
                    Ok(_) => {}
                    // A signal to this process (a read with a timeout is
                    // not restarted): read again.
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    // Reset or aborted: the daemon let go of it (a
                    // connection it never accepted under this load ends so).
                    Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => break true,
                    Err(e) => {
                        *open.entry(format!("{:?}", e.kind())).or_default() += 1;
                        break false;
                    }
                }
            };
            closed += usize::from(gone);
        }
        assert_eq!(closed, 1000, "idle connections not dropped, by read outcome: {open:?}");
        assert!(t.elapsed() < Duration::from_secs(40), "idle connections were held {:?}", t.elapsed());
    }
}
