//! `rrsync push --watch`: after the first push, watch the source with
//! inotify and push each change to every target.
//!
//! Every directory of the source is watched; a new directory is watched as
//! soon as its creation is seen, and its whole subtree is pushed (so files
//! made before its watch existed are not missed). A batch of changes is
//! pushed as rsync entries with `-R -d --delete`: a changed file as itself
//! (with its directory as an entry, for the directory's times), a directory
//! that lost an entry as its full contents (so the deletion happens on the
//! targets), a new directory as the contents of every directory under it.
//! When idle, a change goes out at once; changes that arrive during a push
//! are gathered into the next one (`--delay` adds a fixed window).
//!
//! Nothing is lost: on an event queue overflow the watches are rebuilt and
//! everything is pushed; when the kernel's watch limit is reached we say
//! which sysctl raises it and fall back to a full push every few seconds. A
//! target that fails is retried with a full push (which carries its
//! backlog) until it is back; `--full-every` forces full pushes. SIGTERM
//! and SIGINT push what is pending, then stop.

use super::{report, Plan, TargetResult};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::collections::{BTreeSet, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a batch has to carry, relative to the source directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Entries sent as themselves (changed files, symlinks, dirs' own attributes).
    pub entries: BTreeSet<Vec<u8>>,
    /// Directories sent with their contents (deletions happen there).
    pub contents: BTreeSet<Vec<u8>>,
    /// Directories whose whole subtree is sent (new or moved-in dirs).
    pub trees: BTreeSet<Vec<u8>>,
    /// Everything must be pushed (overflow, lost watch).
    pub full: bool,
}

impl Batch {
    fn is_empty(&self) -> bool {
        !self.full && self.entries.is_empty() && self.contents.is_empty() && self.trees.is_empty()
    }

    fn merge(&mut self, o: Batch) {
        self.entries.extend(o.entries);
        self.contents.extend(o.contents);
        self.trees.extend(o.trees);
        self.full |= o.full;
    }
}

fn parent(rel: &[u8]) -> Vec<u8> {
    match rel.iter().rposition(|&c| c == b'/') {
        Some(p) => rel[..p].to_vec(),
        None => Vec::new(),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

/// The rsync source arguments for a batch: `SRC/./entry` (an entry itself),
/// `SRC/./dir/` (a directory's contents); trees are expanded into the
/// contents of every directory under them, as they are now.
pub fn batch_sources(root: &Path, b: &Batch) -> Vec<String> {
    let base = root.as_os_str().as_bytes();
    let base = base.strip_suffix(b"/").unwrap_or(base);
    let mut contents = b.contents.clone();
    for t in &b.trees {
        collect_dirs(root, t, &mut contents);
    }
    // The top directory cannot be sent without its contents ("SRC/./").
    if b.entries.contains(&Vec::new()) {
        contents.insert(Vec::new());
    }
    let mut out = Vec::new();
    let arg = |rel: &[u8], slash: bool| -> String {
        let mut a = base.to_vec();
        a.extend_from_slice(b"/./");
        a.extend_from_slice(rel);
        if slash && !rel.is_empty() {
            a.push(b'/');
        }
        String::from_utf8_lossy(&a).into_owned()
    };
    for d in &contents {
        if root.join(std::ffi::OsStr::from_bytes(d)).is_dir() {
            out.push(arg(d, true));
        }
    }
    for e in &b.entries {
        if e.is_empty() || contents.contains(&parent(e)) {
            continue; // listed with its directory's contents
        }
        if std::fs::symlink_metadata(root.join(std::ffi::OsStr::from_bytes(e))).is_ok() {
            out.push(arg(e, false));
        }
    }
    out
}

fn collect_dirs(root: &Path, rel: &[u8], out: &mut BTreeSet<Vec<u8>>) {
    let p = root.join(std::ffi::OsStr::from_bytes(rel));
    let Ok(md) = std::fs::symlink_metadata(&p) else {
        return;
    };
    if !md.is_dir() {
        return;
    }
    out.insert(rel.to_vec());
    if let Ok(rd) = std::fs::read_dir(&p) {
        for ent in rd.flatten() {
            if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(root, &join(rel, ent.file_name().as_bytes()), out);
            }
        }
    }
}

/// What the watcher tells the push loop.
enum Note {
    /// Changes, ready to go.
    Changes(Batch),
    /// Changes that are expected to continue shortly (a file being written).
    Pending(Batch),
    /// Watches could not cover the tree: push everything from time to time.
    Degraded,
}

/// The inotify side: watches, and the translation of events into batches.
struct Watcher {
    ino: Arc<Inotify>,
    root: PathBuf,
    dirs: HashMap<WatchDescriptor, Vec<u8>>,
    degraded: bool,
}

const MASK: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MODIFY)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_ATTRIB)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_DELETE_SELF)
    .union(AddWatchFlags::IN_ONLYDIR)
    .union(AddWatchFlags::IN_DONT_FOLLOW);

impl Watcher {
    fn new(root: &Path) -> nix::Result<Watcher> {
        let ino = Inotify::init(InitFlags::IN_CLOEXEC)?;
        Ok(Watcher {
            ino: Arc::new(ino),
            root: root.to_path_buf(),
            dirs: HashMap::new(),
            degraded: false,
        })
    }

    /// Watch `rel` and every directory under it.
    fn watch_tree(&mut self, rel: &[u8]) {
        let mut all = BTreeSet::new();
        collect_dirs(&self.root, rel, &mut all);
        for d in all {
            let p = self.root.join(std::ffi::OsStr::from_bytes(&d));
            match self.ino.add_watch(&p, MASK) {
                Ok(wd) => {
                    self.dirs.insert(wd, d);
                }
                Err(nix::errno::Errno::ENOSPC) => {
                    if !self.degraded {
                        tracing::error!(
                            "inotify watch limit reached: raise it with `sysctl fs.inotify.max_user_watches=1048576`; pushing everything every 2 s meanwhile"
                        );
                    }
                    self.degraded = true;
                    return;
                }
                Err(e) => tracing::debug!("watch {}: {e}", p.display()),
            }
        }
    }

    /// Turn a read of events into a batch; `settling` is set when a file is
    /// still being written (a create or modify without its close yet).
    fn translate(&mut self, events: Vec<nix::sys::inotify::InotifyEvent>) -> (Batch, bool) {
        let mut b = Batch::default();
        // Files written to and not (yet) closed in this read.
        let mut open_files: BTreeSet<Vec<u8>> = BTreeSet::new();
        for ev in events {
            let m = ev.mask;
            if m.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                b.full = true;
                continue;
            }
            if m.contains(AddWatchFlags::IN_IGNORED) {
                self.dirs.remove(&ev.wd);
                continue;
            }
            let Some(dir) = self.dirs.get(&ev.wd).cloned() else {
                continue;
            };
            if m.contains(AddWatchFlags::IN_DELETE_SELF) {
                if !dir.is_empty() {
                    b.contents.insert(parent(&dir));
                }
                continue;
            }
            let Some(name) = ev.name else {
                // An event on the directory itself (its attributes).
                if m.contains(AddWatchFlags::IN_ATTRIB) {
                    b.entries.insert(dir.clone());
                }
                continue;
            };
            let rel = join(&dir, name.as_bytes());
            let is_dir = m.contains(AddWatchFlags::IN_ISDIR);
            if m.intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM) {
                b.contents.insert(dir.clone());
                continue;
            }
            if is_dir && m.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO) {
                self.watch_tree(&rel);
                b.trees.insert(rel);
                b.entries.insert(dir.clone());
                continue;
            }
            if m.contains(AddWatchFlags::IN_MOVED_TO) {
                b.entries.insert(rel);
                b.entries.insert(dir.clone());
                continue;
            }
            if m.intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MODIFY) {
                // A regular file being written: pushed at its close, or after a pause.
                let regular =
                    std::fs::symlink_metadata(self.root.join(std::ffi::OsStr::from_bytes(&rel)))
                        .map(|md| md.is_file())
                        .unwrap_or(false);
                if regular {
                    open_files.insert(rel.clone());
                }
                b.entries.insert(rel);
                b.entries.insert(dir.clone());
                continue;
            }
            if m.intersects(AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_ATTRIB) {
                if m.contains(AddWatchFlags::IN_CLOSE_WRITE) {
                    open_files.remove(&rel);
                }
                b.entries.insert(rel);
                if m.contains(AddWatchFlags::IN_CLOSE_WRITE) {
                    b.entries.insert(dir.clone());
                }
            }
        }
        let settling = !open_files.is_empty();
        (b, settling)
    }
}

/// How long a file being written may stay open before it is pushed anyway.
const SETTLE: Duration = Duration::from_millis(100);
/// Full pushes while the watches cannot cover the tree.
const DEGRADED_EVERY: Duration = Duration::from_secs(2);

/// Watch and push until SIGTERM/SIGINT; returns the exit code.
pub fn run(plan: &Plan, first: Vec<TargetResult>) -> i32 {
    let root = PathBuf::from(&plan.src);
    if !root.is_dir() {
        eprintln!("rrsync push: --watch needs a source directory");
        return crate::exit::RERR_SYNTAX;
    }
    stop_signal::install();
    let mut watcher = match Watcher::new(&root) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("rrsync push: inotify: {e}");
            return crate::exit::RERR_FILEIO;
        }
    };
    watcher.watch_tree(b"");
    // Targets that failed get full pushes until they are back.
    let mut failed: Vec<usize> = first
        .iter()
        .enumerate()
        .filter(|(_, r)| r.code != 0)
        .map(|(i, _)| i)
        .collect();
    let (tx, rx) = channel::<Note>();
    spawn_reader(watcher, tx);
    let mut worst = 0;
    let mut last_full = Instant::now();
    let mut last_retry = Instant::now();
    let mut pending = Batch::default();
    let mut degraded = false;
    let mut settle_deadline: Option<Instant> = None;
    loop {
        let stopping = stop_signal::requested();
        // Gather what is there (a push may have been running meanwhile).
        let wait = if stopping {
            Duration::ZERO
        } else if !pending.is_empty() {
            match settle_deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => plan.popts.delay,
            }
        } else {
            Duration::from_millis(200)
        };
        match rx.recv_timeout(wait) {
            Ok(Note::Changes(b)) => {
                pending.merge(b);
                settle_deadline = None;
                while let Ok(n) = rx.try_recv() {
                    absorb(n, &mut pending, &mut settle_deadline, &mut degraded);
                }
                if !plan.popts.delay.is_zero() && !stopping {
                    continue;
                }
            }
            Ok(n) => {
                absorb(n, &mut pending, &mut settle_deadline, &mut degraded);
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // The watcher is gone: fall back to periodic full pushes.
                degraded = true;
            }
        }
        let now = Instant::now();
        if degraded && now.duration_since(last_full) >= DEGRADED_EVERY {
            pending.full = true;
        }
        if let Some(every) = plan.popts.full_every {
            if now.duration_since(last_full) >= every {
                pending.full = true;
            }
        }
        let ok_targets: Vec<usize> = (0..plan.targets.len())
            .filter(|i| !failed.contains(i))
            .collect();
        if !pending.is_empty() {
            let b = std::mem::take(&mut pending);
            settle_deadline = None;
            let results = if b.full {
                last_full = Instant::now();
                plan.push_all(Some(&ok_targets))
            } else {
                push_batch(plan, &root, &b, &ok_targets)
            };
            for (k, r) in results.iter().enumerate() {
                let i = ok_targets[k];
                if r.code != 0 && !failed.contains(&i) {
                    tracing::warn!(target = %r.target, "push failed; full re-sync when it is back");
                    failed.push(i);
                }
                worst = worst.max(r.code);
            }
            tracing::info!(
                entries = b.entries.len(),
                dirs = b.contents.len(),
                trees = b.trees.len(),
                full = b.full,
                "pushed batch"
            );
            write_status(plan, &failed);
        }
        if !failed.is_empty()
            && (stopping
                || now.duration_since(last_retry) >= plan.popts.backoff.max(Duration::from_secs(1)))
        {
            last_retry = now;
            let results = plan.push_all(Some(&failed));
            let mut still = Vec::new();
            for (k, r) in results.iter().enumerate() {
                if r.code != 0 {
                    still.push(failed[k]);
                }
            }
            failed = still;
            write_status(plan, &failed);
        }
        if stopping && pending.is_empty() {
            let code = if failed.is_empty() {
                0
            } else {
                worst.max(crate::exit::RERR_PARTIAL)
            };
            if !failed.is_empty() {
                let rs: Vec<TargetResult> = failed
                    .iter()
                    .map(|&i| TargetResult {
                        target: plan.targets[i].clone(),
                        code: crate::exit::RERR_PARTIAL,
                        attempts: 0,
                        files: 0,
                        bytes: 0,
                        elapsed: Duration::ZERO,
                        error: Some("not in sync when stopped".into()),
                    })
                    .collect();
                return report(&rs).max(code);
            }
            return code;
        }
    }
}

fn absorb(n: Note, pending: &mut Batch, settle: &mut Option<Instant>, degraded: &mut bool) {
    match n {
        Note::Changes(b) => pending.merge(b),
        Note::Pending(b) => {
            pending.merge(b);
            if settle.is_none() {
                *settle = Some(Instant::now() + SETTLE);
            }
        }
        Note::Degraded => *degraded = true,
    }
}

/// Push one batch to `targets`: `-R -d --delete` over the batch's entries.
fn push_batch(plan: &Plan, root: &Path, b: &Batch, targets: &[usize]) -> Vec<TargetResult> {
    let sources = batch_sources(root, b);
    if sources.is_empty() {
        return targets
            .iter()
            .map(|&i| TargetResult {
                target: plan.targets[i].clone(),
                code: 0,
                attempts: 0,
                files: 0,
                bytes: 0,
                elapsed: Duration::ZERO,
                error: None,
            })
            .collect();
    }
    let mut o = plan.opts.clone();
    o.recursive = false;
    o.dirs = true;
    o.seen.push("dirs".into());
    o.relative = true;
    o.seen.push("relative".into());
    o.delete = true;
    o.files_from = None;
    plan.push_with(Some(targets), &o, &sources)
}

/// Per-target state for `--status=FILE` (lag and last error come from the log).
fn write_status(plan: &Plan, failed: &[usize]) {
    let Some(path) = &plan.popts.status else {
        return;
    };
    let mut s = String::new();
    for (i, t) in plan.targets.iter().enumerate() {
        s.push_str(&format!(
            "{t}\t{}\n",
            if failed.contains(&i) {
                "behind"
            } else {
                "in-sync"
            }
        ));
    }
    let _ = std::fs::write(path, s);
}

/// Read events on a thread; each read becomes one note.
fn spawn_reader(mut w: Watcher, tx: Sender<Note>) {
    std::thread::spawn(move || {
        if w.degraded {
            let _ = tx.send(Note::Degraded);
        }
        loop {
            let events = match w.ino.read_events() {
                Ok(e) => e,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("inotify read: {e}");
                    return;
                }
            };
            let overflow = events
                .iter()
                .any(|e| e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW));
            let (b, settling) = w.translate(events);
            if overflow {
                // Rebuild the watches: some changes were lost.
                w.dirs.clear();
                w.watch_tree(b"");
            }
            let was_degraded = w.degraded;
            let note = if settling {
                Note::Pending(b)
            } else {
                Note::Changes(b)
            };
            if tx.send(note).is_err() {
                return;
            }
            if w.degraded && !was_degraded && tx.send(Note::Degraded).is_err() {
                return;
            }
        }
    });
}

/// The stop flag set by SIGTERM/SIGINT (the handler only stores).
mod stop_signal {
    use std::sync::atomic::{AtomicBool, Ordering};

    static STOP: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_signal(_: i32) {
        STOP.store(true, Ordering::Relaxed);
    }

    /// Install the handlers (idempotent).
    pub fn install() {
        for sig in [
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::Signal::SIGINT,
        ] {
            let action = nix::sys::signal::SigAction::new(
                nix::sys::signal::SigHandler::Handler(on_signal),
                nix::sys::signal::SaFlags::SA_RESTART,
                nix::sys::signal::SigSet::empty(),
            );
            // SAFETY: the handler only performs an atomic store, which is async-signal-safe.
            let _ = unsafe { nix::sys::signal::sigaction(sig, &action) };
        }
    }

    /// Whether a stop was asked for.
    pub fn requested() -> bool {
        STOP.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sources_cover_contents_entries_and_trees() {
        let d = std::env::temp_dir().join(format!("rrsync-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/b/c")).unwrap();
        std::fs::write(d.join("a/f"), b"x").unwrap();
        std::fs::write(d.join("top"), b"y").unwrap();
        let mut b = Batch::default();
        b.entries.insert(b"top".to_vec());
        b.entries.insert(Vec::new());
        b.contents.insert(b"a".to_vec());
        b.entries.insert(b"a/f".to_vec());
        b.trees.insert(b"a/b".to_vec());
        b.entries.insert(b"gone".to_vec());
        let root = d.display().to_string();
        let s = batch_sources(&d, &b);
        assert!(s.contains(&format!("{root}/./a/")), "{s:?}");
        assert!(s.contains(&format!("{root}/./a/b/")), "{s:?}");
        assert!(s.contains(&format!("{root}/./a/b/c/")), "{s:?}");
        // The top directory's own change lists its contents ("top" with them).
        assert!(s.contains(&format!("{root}/./")), "{s:?}");
        assert!(!s.contains(&format!("{root}/./top")), "{s:?}");
        let mut b2 = Batch::default();
        b2.entries.insert(b"top".to_vec());
        b2.entries.insert(b"a/f".to_vec());
        let s2 = batch_sources(&d, &b2);
        assert_eq!(s2, [format!("{root}/./a/f"), format!("{root}/./top")]);
        assert!(
            !s.iter().any(|x| x.ends_with("/a/f")),
            "listed with a/: {s:?}"
        );
        assert!(!s.iter().any(|x| x.ends_with("gone")), "{s:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
