//! Applying metadata (permissions, times, ownership) beneath a `DestRoot`
//! without ever following a symlink at the leaf, plus the same operations
//! on an open `File` for a freshly written temp file before its rename.
//!
//! upstream: rsync.c `set_file_attrs()`, util1.c `set_times()`, syscall.c
//! `do_chmod_at()`, `do_utimensat_at()`, `do_lchown()`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::libc;

use super::dest::{check, fstat_fd, last_errno, lstat_at, openat, DestRoot, FsError, Stat};

// Set once fchmodat2 turned out to be missing (ENOSYS).
static NO_FCHMODAT2: AtomicBool = AtomicBool::new(false);

fn timespecs(
    mtime: i64,
    mtime_nsec: u32,
    atime: Option<(i64, u32)>,
) -> Result<[libc::timespec; 2], i32> {
    if mtime_nsec >= 1_000_000_000 || atime.is_some_and(|(_, n)| n >= 1_000_000_000) {
        return Err(libc::EINVAL);
    }
    let a = match atime {
        Some((s, n)) => libc::timespec {
            tv_sec: s as libc::time_t,
            tv_nsec: n as libc::c_long,
        },
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    };
    let m = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: mtime_nsec as libc::c_long,
    };
    Ok([a, m])
}

fn id_or_keep(v: Option<u32>) -> u32 {
    // (uid_t)-1 leaves the id unchanged.
    v.unwrap_or(u32::MAX)
}

pub(crate) fn chown_what(uid: Option<u32>, gid: Option<u32>) -> &'static str {
    match (uid.is_some(), gid.is_some()) {
        (true, true) => "chown",
        (true, false) => "chown uid",
        _ => "chown gid",
    }
}

/// chmod `leaf` in `dir` without following a symlink leaf; a symlink is
/// refused with ELOOP (Linux cannot change a link's mode; stock 3.5's
/// confined chmod reports ELOOP for it, e.g. a directory kept by -K).
pub(crate) fn chmod_nofollow(dir: RawFd, leaf: &CString, mode: u32) -> Result<(), i32> {
    if !NO_FCHMODAT2.load(Ordering::Relaxed) {
        // SAFETY: raw fchmodat2 with a valid fd and C string.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fchmodat2,
                dir,
                leaf.as_ptr(),
                mode,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r == 0 {
            return Ok(());
        }
        match last_errno() {
            libc::ENOSYS => NO_FCHMODAT2.store(true, Ordering::Relaxed),
            // A seccomp filter may say EPERM for an unknown syscall; the
            // fallback below gives the real answer.
            libc::EPERM => {}
            libc::EOPNOTSUPP => {
                return match lstat_at(dir, leaf) {
                    Ok(st) if st.is_symlink() => Err(libc::ELOOP),
                    Ok(_) => Err(libc::EOPNOTSUPP),
                    Err(e) => Err(e),
                }
            }
            e => return Err(e),
        }
    }
    // Fallback: pin the inode with O_PATH, refuse to touch a symlink, then
    // chmod it through /proc (what glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does).
    let fd = openat(dir, leaf, libc::O_PATH | libc::O_NOFOLLOW, 0)?;
    let st = fstat_fd(fd.as_raw_fd())?;
    if st.is_symlink() {
        return Err(libc::ELOOP);
    }
    let proc_path =
        CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|_| libc::EINVAL)?;
    // SAFETY: valid C string.
    match check(unsafe { libc::chmod(proc_path.as_ptr(), mode) }) {
        Ok(()) => Ok(()),
        // No /proc: the leaf was not a symlink a moment ago.
        // SAFETY: valid fd and C string.
        Err(libc::ENOENT) => check(unsafe { libc::fchmodat(dir, leaf.as_ptr(), mode, 0) }),
        Err(e) => Err(e),
    }
}

impl DestRoot {
    /// chmod `rel` (`mode & 07777`); a symlink is left alone (Ok).
    pub fn set_mode(&self, rel: &[u8], mode: u32) -> Result<(), FsError> {
        let what = || format!("failed to set permissions on {}", self.show(rel));
        let at = self.resolve(rel, what)?;
        chmod_nofollow(at.dirfd(), &at.leaf, mode & 0o7777).map_err(|e| FsError::os(what(), e))
    }

    /// Set the modification time (and the access time when given; `None`
    /// keeps the current one) of `rel`, a symlink itself included.
    pub fn set_times(
        &self,
        rel: &[u8],
        mtime: i64,
        mtime_nsec: u32,
        atime: Option<(i64, u32)>,
    ) -> Result<(), FsError> {
        let what = || format!("failed to set times on {}", self.show(rel));
        let at = self.resolve(rel, what)?;
        let ts = timespecs(mtime, mtime_nsec, atime).map_err(|e| FsError::os(what(), e))?;
        // SAFETY: valid fd, C string and a two-element timespec array.
        check(unsafe {
            libc::utimensat(
                at.dirfd(),
                at.leaf.as_ptr(),
                ts.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map_err(|e| FsError::os(what(), e))
    }

    /// lchown `rel`; `None` leaves that id unchanged.
    pub fn set_owner(&self, rel: &[u8], uid: Option<u32>, gid: Option<u32>) -> Result<(), FsError> {
        if uid.is_none() && gid.is_none() {
            return Ok(());
        }
        let what = || format!("{} {} failed", chown_what(uid, gid), self.show(rel));
        let at = self.resolve(rel, what)?;
        // SAFETY: valid fd and C string.
        check(unsafe {
            libc::fchownat(
                at.dirfd(),
                at.leaf.as_ptr(),
                id_or_keep(uid),
                id_or_keep(gid),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map_err(|e| FsError::os(what(), e))
    }
}

/// Whether this process may give files group `gid` without being root:
/// its effective gid or a supplementary group (upstream is_in_group;
/// read once, after any privilege drop).
pub fn in_our_groups(gid: u32) -> bool {
    static GROUPS: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    GROUPS
        .get_or_init(|| {
            let mut v: Vec<u32> = nix::unistd::getgroups()
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_default();
            v.push(nix::unistd::getegid().as_raw());
            v
        })
        .contains(&gid)
}

/// fchmod an open file (`mode & 07777`).
pub fn fchmod(file: &File, mode: u32) -> io::Result<()> {
    // SAFETY: fchmod on an fd owned by `file`.
    check(unsafe { libc::fchmod(file.as_raw_fd(), mode & 0o7777) })
        .map_err(io::Error::from_raw_os_error)
}

/// futimens an open file: mtime, and atime when given (else kept).
pub fn futimens(
    file: &File,
    mtime: i64,
    mtime_nsec: u32,
    atime: Option<(i64, u32)>,
) -> io::Result<()> {
    let ts = timespecs(mtime, mtime_nsec, atime).map_err(io::Error::from_raw_os_error)?;
    // SAFETY: fd owned by `file` and a two-element timespec array.
    check(unsafe { libc::futimens(file.as_raw_fd(), ts.as_ptr()) })
        .map_err(io::Error::from_raw_os_error)
}

/// fchown an open file; `None` leaves that id unchanged.
pub fn fchown(file: &File, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    if uid.is_none() && gid.is_none() {
        return Ok(());
    }
    // SAFETY: fd owned by `file`.
    check(unsafe { libc::fchown(file.as_raw_fd(), id_or_keep(uid), id_or_keep(gid)) })
        .map_err(io::Error::from_raw_os_error)
}

/// fstat an open file.
pub fn fstat(file: &File) -> io::Result<Stat> {
    fstat_fd(file.as_raw_fd()).map_err(io::Error::from_raw_os_error)
}

/// Same as the `fchmod`/`futimens`/`fchown` functions, with rsync-style
/// error text naming `shown` (already quoted, e.g. from `DestRoot::show`).
pub(crate) fn file_err(op: &str, shown: &str, e: io::Error) -> FsError {
    let what = match op {
        "chmod" => format!("failed to set permissions on {shown}"),
        "times" => format!("failed to set times on {shown}"),
        other => format!("{other} {shown} failed"),
    };
    FsError::os(what, e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use crate::fs::dest::test_support::Scratch;
    use std::os::unix::fs::{symlink, MetadataExt};

    #[test]
    fn times_with_nanoseconds_on_files_dirs_and_symlinks() {
        let s = Scratch::new("times");
        std::fs::write(s.r("f"), b"x").unwrap();
        std::fs::create_dir(s.r("d")).unwrap();
        symlink("f", s.r("l")).unwrap();
        for d in s.roots() {
            d.set_times(b"f", 1_234_567_890, 987_654_321, None).unwrap();
            d.set_times(b"d", 1_000_000_000, 1, Some((1_000_000_001, 2)))
                .unwrap();
            let before = std::fs::metadata(s.r("f")).unwrap();
            d.set_times(b"l", 1_111_111_111, 222_222_222, None).unwrap();
            let m = std::fs::metadata(s.r("f")).unwrap();
            assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 987_654_321));
            assert_eq!((m.mtime(), m.atime()), (before.mtime(), before.atime()));
            let l = std::fs::symlink_metadata(s.r("l")).unwrap();
            assert_eq!((l.mtime(), l.mtime_nsec()), (1_111_111_111, 222_222_222));
            let dm = std::fs::metadata(s.r("d")).unwrap();
            assert_eq!(
                (dm.mtime(), dm.mtime_nsec(), dm.atime(), dm.atime_nsec()),
                (1_000_000_000, 1, 1_000_000_001, 2)
            );
            let st = d.stat(b"f").unwrap().unwrap();
            assert_eq!((st.mtime, st.mtime_nsec), (1_234_567_890, 987_654_321));
            assert_eq!(
                d.set_times(b"f", 1, 1_000_000_000, None)
                    .unwrap_err()
                    .errno(),
                nix::libc::EINVAL
            );
            let e = d.set_times(b"missing", 1, 0, None).unwrap_err();
            assert_eq!(
                e.to_string(),
                "failed to set times on \"missing\": No such file or directory (2)"
            );
        }
    }

    #[test]
    fn modes_never_touch_a_symlink_target() {
        let s = Scratch::new("modes");
        std::fs::write(s.r("f"), b"x").unwrap();
        std::fs::create_dir(s.r("d")).unwrap();
        symlink(s.outside.join("secret"), s.r("l")).unwrap();
        let before = s.outside_snapshot();
        for (i, d) in s.roots().into_iter().enumerate() {
            // Second round: the fallback used without fchmodat2 (both
            // paths are correct, so other tests may race with this flag).
            super::NO_FCHMODAT2.store(i == 1, std::sync::atomic::Ordering::Relaxed);
            d.set_mode(b"f", 0o4640).unwrap();
            assert_eq!(std::fs::metadata(s.r("f")).unwrap().mode() & 0o7777, 0o4640);
            d.set_mode(b"f", 0o100600).unwrap();
            assert_eq!(std::fs::metadata(s.r("f")).unwrap().mode() & 0o7777, 0o600);
            d.set_mode(b"d", 0o2750).unwrap();
            assert_eq!(std::fs::metadata(s.r("d")).unwrap().mode() & 0o7777, 0o2750);
            // A symlink's mode cannot change: refused with ELOOP (as stock
            // 3.5), and its target is left alone.
            assert_eq!(
                d.set_mode(b"l", 0o777).unwrap_err().errno(),
                nix::libc::ELOOP
            );
            d.set_owner(b"l", Some(4242), None).ok();
            d.set_times(b"l", 5, 5, Some((5, 5))).unwrap();
        }
        super::NO_FCHMODAT2.store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(before, s.outside_snapshot());
    }

    #[test]
    fn owner_changes_use_lchown() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let s = Scratch::new("owner");
        std::fs::write(s.r("f"), b"x").unwrap();
        symlink("f", s.r("l")).unwrap();
        let d = crate::fs::dest::DestRoot::open(&s.root).unwrap();
        d.set_owner(b"f", Some(1234), Some(5678)).unwrap();
        let m = std::fs::metadata(s.r("f")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        d.set_owner(b"l", Some(4321), None).unwrap();
        let l = std::fs::symlink_metadata(s.r("l")).unwrap();
        assert_eq!(l.uid(), 4321);
        assert_eq!(std::fs::metadata(s.r("f")).unwrap().uid(), 1234);
        d.set_owner(b"f", None, Some(42)).unwrap();
        let m = std::fs::metadata(s.r("f")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1234, 42));
        let f = std::fs::File::open(s.r("f")).unwrap();
        super::fchown(&f, Some(7), Some(8)).unwrap();
        let st = super::fstat(&f).unwrap();
        assert_eq!((st.uid, st.gid), (7, 8));
    }
}
