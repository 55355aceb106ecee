//! The temp files a fatal signal must remove (upstream's `cleanup_fname`):
//! each one is registered here while it is written, and the SIGINT /
//! SIGTERM / SIGHUP handler ([`crate::interrupt`]) unlinks the registered
//! ones using only async-signal-safe calls.
//!
//! With `--partial` (no partial or temp dir) a temp file that got data is
//! renamed onto its final name instead, with the file's permissions, as
//! upstream's cleanup keeps a partial file for the next run.
//!
//! A slot is a sequence lock over atomics: the owner makes the sequence odd
//! while it writes the name, the handler copies the name out and uses it
//! only when the sequence did not move meanwhile (so it never acts on a
//! half-written name). A temp file renamed into place before the handler
//! runs is simply not found (ENOENT), so a finished file is never removed.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU8, AtomicUsize, Ordering};

use nix::libc;

/// Temp files open at once (the receiver writes one at a time; a few
/// threads of one process may each hold one).
const SLOTS: usize = 16;
/// Longest name kept (a temp name fits NAME_MAX).
const NAME_CAP: usize = 256;

struct Slot {
    seq: AtomicU32,
    taken: AtomicBool,
    dirfd: AtomicI32,
    len: AtomicUsize,
    name: [AtomicU8; NAME_CAP],
    /// `--partial`: the final name in the same directory (0 = none).
    keep_len: AtomicUsize,
    keep: [AtomicU8; NAME_CAP],
    perms: AtomicU32,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            seq: AtomicU32::new(0),
            taken: AtomicBool::new(false),
            dirfd: AtomicI32::new(-1),
            len: AtomicUsize::new(0),
            name: [const { AtomicU8::new(0) }; NAME_CAP],
            keep_len: AtomicUsize::new(0),
            keep: [const { AtomicU8::new(0) }; NAME_CAP],
            perms: AtomicU32::new(0),
        }
    }
}

static TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];

/// A registration; [`unregister`] ends it.
#[derive(Debug)]
pub struct Registered(usize);

/// Note that `name` in directory `dirfd` is a temp file being written.
/// None when the table is full or the name too long (the file is then
/// only removed on the normal paths).
pub fn register(dirfd: i32, name: &[u8]) -> Option<Registered> {
    if name.is_empty() || name.len() >= NAME_CAP || name.contains(&0) {
        return None;
    }
    let i = TABLE.iter().position(|s| {
        s.taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })?;
    let s = &TABLE[i];
    s.seq.fetch_add(1, Ordering::AcqRel);
    s.dirfd.store(dirfd, Ordering::Relaxed);
    s.len.store(name.len(), Ordering::Relaxed);
    s.keep_len.store(0, Ordering::Relaxed);
    for (d, &b) in s.name.iter().zip(name) {
        d.store(b, Ordering::Relaxed);
    }
    s.seq.fetch_add(1, Ordering::AcqRel);
    Some(Registered(i))
}

/// `--partial`: on a signal, rename the temp file (if it holds data) onto
/// `leaf` in its own directory with permissions `perms`, not remove it.
/// `leaf` may name a partial dir first (`.rsync-partial/name`), made if
/// missing; it never climbs (`..`) nor starts at `/`.
pub fn keep_as(r: &Registered, leaf: &[u8], perms: u32) {
    let Some(s) = TABLE.get(r.0) else {
        return;
    };
    let climbs = leaf
        .split(|&c| c == b'/')
        .any(|c| c.is_empty() || c == b"..");
    if leaf.len() >= NAME_CAP || leaf.contains(&0) || climbs {
        return;
    }
    s.seq.fetch_add(1, Ordering::AcqRel);
    for (d, &b) in s.keep.iter().zip(leaf) {
        d.store(b, Ordering::Relaxed);
    }
    s.keep_len.store(leaf.len(), Ordering::Relaxed);
    s.perms.store(perms, Ordering::Relaxed);
    s.seq.fetch_add(1, Ordering::AcqRel);
}

/// The temp file was renamed into place or removed: forget it.
pub fn unregister(r: Registered) {
    if let Some(s) = TABLE.get(r.0) {
        s.seq.fetch_add(1, Ordering::AcqRel);
        s.dirfd.store(-1, Ordering::Relaxed);
        s.len.store(0, Ordering::Relaxed);
        s.taken.store(false, Ordering::Release);
        s.seq.fetch_add(1, Ordering::AcqRel);
    }
}

/// Unlink every registered temp file. Async-signal-safe: atomics, a stack
/// buffer and unlinkat(2) only.
pub fn remove_all() {
    for s in TABLE.iter() {
        let before = s.seq.load(Ordering::Acquire);
        if before & 1 == 1 || !s.taken.load(Ordering::Acquire) {
            continue;
        }
        let mut buf = [0u8; NAME_CAP];
        let len = s.len.load(Ordering::Relaxed).min(NAME_CAP - 1);
        for (d, b) in buf.iter_mut().zip(s.name.iter()).take(len) {
            *d = b.load(Ordering::Relaxed);
        }
        let mut keep = [0u8; NAME_CAP];
        let keep_len = s.keep_len.load(Ordering::Relaxed).min(NAME_CAP - 1);
        for (d, b) in keep.iter_mut().zip(s.keep.iter()).take(keep_len) {
            *d = b.load(Ordering::Relaxed);
        }
        let perms = s.perms.load(Ordering::Relaxed);
        let dirfd = s.dirfd.load(Ordering::Relaxed);
        if s.seq.load(Ordering::Acquire) != before || len == 0 || dirfd < 0 {
            continue;
        }
        // SAFETY: buf and keep are NUL-terminated (lengths < NAME_CAP,
        // zero-filled); fstatat, fchmodat, renameat and unlinkat are
        // async-signal-safe.
        unsafe {
            if keep_len > 0 {
                let mut st: libc::stat = std::mem::zeroed();
                let r = libc::fstatat(
                    dirfd,
                    buf.as_ptr().cast(),
                    &mut st,
                    libc::AT_SYMLINK_NOFOLLOW,
                );
                if r == 0 && st.st_size > 0 {
                    // The partial dir's components, made as needed.
                    for i in 0..keep_len {
                        if keep[i] == b'/' {
                            keep[i] = 0;
                            libc::mkdirat(dirfd, keep.as_ptr().cast(), 0o700);
                            keep[i] = b'/';
                        }
                    }
                    libc::fchmodat(dirfd, buf.as_ptr().cast(), perms & 0o7777, 0);
                    if libc::renameat(dirfd, buf.as_ptr().cast(), dirfd, keep.as_ptr().cast()) == 0
                    {
                        continue;
                    }
                }
            }
            libc::unlinkat(dirfd, buf.as_ptr().cast(), 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn registered_files_are_removed_and_unregistered_ones_kept() {
        let dir = std::env::temp_dir().join(format!("rrsync-cleanup-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(".a.XXXXXX"), b"partial").unwrap();
        std::fs::write(dir.join("done"), b"finished").unwrap();
        let d = std::fs::File::open(&dir).unwrap();
        let a = register(d.as_raw_fd(), b".a.XXXXXX").unwrap();
        let b = register(d.as_raw_fd(), b"done").unwrap();
        unregister(b);
        remove_all();
        assert!(!dir.join(".a.XXXXXX").exists());
        assert!(dir.join("done").exists());
        unregister(a);
        // --partial: a temp file with data goes onto its final name.
        std::fs::write(dir.join(".p.XXXXXX"), b"half").unwrap();
        std::fs::write(dir.join(".e.XXXXXX"), b"").unwrap();
        let p = register(d.as_raw_fd(), b".p.XXXXXX").unwrap();
        keep_as(&p, b"p", 0o640);
        let e = register(d.as_raw_fd(), b".e.XXXXXX").unwrap();
        keep_as(&e, b"e", 0o640);
        remove_all();
        assert_eq!(std::fs::read(dir.join("p")).unwrap(), b"half");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(dir.join("p"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        assert!(!dir.join(".p.XXXXXX").exists());
        assert!(!dir.join(".e.XXXXXX").exists() && !dir.join("e").exists());
        unregister(p);
        unregister(e);
        // --partial-dir: into the partial dir, made on the way.
        std::fs::write(dir.join(".q.XXXXXX"), b"half").unwrap();
        let q = register(d.as_raw_fd(), b".q.XXXXXX").unwrap();
        keep_as(&q, b".rsync-partial/q", 0o600);
        remove_all();
        assert_eq!(
            std::fs::read(dir.join(".rsync-partial/q")).unwrap(),
            b"half"
        );
        unregister(q);
        assert!(register(3, b"").is_none());
        assert!(register(3, &[b'x'; NAME_CAP]).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
