//! The receiving side's filesystem root (`DestRoot`): every path a peer
//! names is resolved beneath one directory fd, component by component,
//! so nothing outside the root is ever read or written.
//!
//! upstream: syscall.c `secure_relative_open()` and the `do_*_at()` wrappers.
//! Threat model: the sending peer is hostile (CVE-2024-12086/12087/12088
//! classes). Names with `..` or a leading `/` are refused with `EINVAL` (as
//! upstream's front door does); a symlink used as a directory component is
//! refused (`ELOOP`), unless `follow_dir_symlinks_inside` (--keep-dirlinks)
//! is on, in which case it is followed only while it stays beneath the root
//! (an escape gives `EXDEV`, as `openat2(RESOLVE_BENEATH)` reports it). The
//! last component is never followed by any operation here.
//!
//! Resolution uses `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` when the
//! kernel has it and otherwise walks with `openat(O_NOFOLLOW | O_DIRECTORY)`,
//! keeping a stack of directory fds so a followed link's `..` is resolved by
//! fd, never by name. Attribute setting lives in `meta.rs`, temp files in
//! `tempfile.rs`, backups in `backup.rs`.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use nix::libc;

/// Longest relative path accepted (PATH_MAX).
pub const MAX_REL_LEN: usize = 4096;
/// Longest single name component (NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;
/// Symlinks followed while resolving one path with dirlinks kept.
const MAX_SYMLINK_HOPS: u32 = 40;

/// Errors of the destination filesystem layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// A system call failed; `what` is rsync's context text
    /// (e.g. `mkdir "sub/x" failed`), `errno` the OS error.
    #[error("{what}: {}", errno_text(*errno))]
    Os {
        /// Context, printed before the OS error text.
        what: String,
        /// The OS error number.
        errno: i32,
    },
    /// The path was refused before any system call: a `..` component, a
    /// leading `/`, a NUL byte, or the root itself where a name is needed.
    /// Reported like upstream does, as `EINVAL`.
    #[error("{what}: {}", errno_text(libc::EINVAL))]
    UnsafePath {
        /// Context, printed before the error text.
        what: String,
    },
}

impl FsError {
    /// Build an OS error (an `EINVAL` for a path is still `Os`).
    pub fn os(what: impl Into<String>, errno: i32) -> FsError {
        FsError::Os {
            what: what.into(),
            errno,
        }
    }

    /// The OS error number (`EINVAL` for a refused path).
    pub fn errno(&self) -> i32 {
        match self {
            FsError::Os { errno, .. } => *errno,
            FsError::UnsafePath { .. } => libc::EINVAL,
        }
    }

    /// The context text without the OS error part.
    pub fn what(&self) -> &str {
        match self {
            FsError::Os { what, .. } | FsError::UnsafePath { what } => what,
        }
    }

    /// True for `ENOENT`.
    pub fn is_not_found(&self) -> bool {
        self.errno() == libc::ENOENT
    }

    /// True when the path was refused as unsafe (not an OS failure).
    pub fn is_unsafe_path(&self) -> bool {
        matches!(self, FsError::UnsafePath { .. })
    }

    /// As a `std::io::Error` (keeps the errno; the text is lost).
    pub fn to_io(&self) -> io::Error {
        io::Error::from_raw_os_error(self.errno())
    }
}

/// "Permission denied (13)", as rsync's rsyserr prints an errno.
pub fn errno_text(errno: i32) -> String {
    super::os_error_text(&io::Error::from_raw_os_error(errno))
}

/// The calling thread's errno after a failed libc call.
pub(crate) fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// What `lstat` says about one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Access time, seconds.
    pub atime: i64,
    /// Access time, nanoseconds.
    pub atime_nsec: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device of the filesystem holding it.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Hard link count.
    pub nlink: u64,
    /// Device major number (devices only).
    pub rdev_major: u32,
    /// Device minor number (devices only).
    pub rdev_minor: u32,
    /// 512-byte blocks allocated.
    pub blocks: u64,
}

impl Stat {
    pub(crate) fn from_raw(st: &libc::stat) -> Stat {
        Stat {
            mode: st.st_mode,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime,
            mtime_nsec: u32::try_from(st.st_mtime_nsec).unwrap_or(0),
            atime: st.st_atime,
            atime_nsec: u32::try_from(st.st_atime_nsec).unwrap_or(0),
            uid: st.st_uid,
            gid: st.st_gid,
            dev: st.st_dev,
            ino: st.st_ino,
            #[allow(clippy::useless_conversion)]
            nlink: u64::from(st.st_nlink),
            rdev_major: libc::major(st.st_rdev),
            rdev_minor: libc::minor(st.st_rdev),
            #[allow(clippy::useless_conversion)]
            blocks: u64::try_from(st.st_blocks).unwrap_or(0),
        }
    }

    /// The `S_IFMT` bits.
    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }
    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.file_type() == libc::S_IFREG
    }
    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.file_type() == libc::S_IFLNK
    }
    /// The permission bits (`mode & 07777`).
    pub fn perms(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// Split a peer-supplied relative path into its components, dropping empty
/// and `.` components. `..`, a leading `/`, NUL, and over-long paths or
/// names are refused (`Err` carries the errno).
pub fn split_rel(rel: &[u8]) -> Result<Vec<&[u8]>, i32> {
    if rel.len() > MAX_REL_LEN {
        return Err(libc::ENAMETOOLONG);
    }
    if rel.first() == Some(&b'/') || rel.contains(&0) {
        return Err(libc::EINVAL);
    }
    let mut out = Vec::new();
    for c in rel.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(libc::EINVAL),
            _ if c.len() > MAX_NAME_LEN => return Err(libc::ENAMETOOLONG),
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// The normalised form of a relative path (`.` for the root).
pub fn normalize_rel(rel: &[u8]) -> Result<Vec<u8>, i32> {
    let comps = split_rel(rel)?;
    if comps.is_empty() {
        return Ok(b".".to_vec());
    }
    Ok(comps.join(&b'/'))
}

/// A name inside a resolved parent directory: what the `*at()` calls take.
pub(crate) struct At<'a> {
    root: BorrowedFd<'a>,
    dir: Option<Arc<OwnedFd>>,
    /// The leaf name (`.` when the path is the root itself).
    pub(crate) leaf: CString,
    /// True when the path named the root itself.
    pub(crate) is_root: bool,
}

impl At<'_> {
    pub(crate) fn dirfd(&self) -> RawFd {
        match &self.dir {
            Some(d) => d.as_raw_fd(),
            None => self.root.as_raw_fd(),
        }
    }

    /// The parent directory fd; `None` when it is the root.
    pub(crate) fn into_dir(self) -> Option<Arc<OwnedFd>> {
        self.dir
    }
}

/// The parent directory resolved last by this thread, kept while nothing
/// could have changed what its path resolves to.
///
/// Each operation used to resolve its parent directory afresh (an
/// `openat2` and a `close`); consecutive operations mostly share it. An
/// entry is valid for one root (`id`), one resolution mode, and one
/// generation of that root: every operation of ours that can remove or
/// replace a directory or a symlink (rmdir, unlink, rename, tree removal,
/// creating links and nodes) starts a new generation, for all threads.
/// The fd keeps naming the directory it was opened as, so a later
/// operation never goes through a symlink that replaced a component (as
/// with a process's working directory).
struct DirCache {
    id: u64,
    generation: u64,
    follow_dirlinks: bool,
    manual_walk: bool,
    rel: Vec<u8>,
    fd: Arc<OwnedFd>,
}

thread_local! {
    static DIR_CACHE: std::cell::RefCell<Option<DirCache>> = const { std::cell::RefCell::new(None) };
}

/// Ids of roots, for [`DirCache`].
static NEXT_ROOT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether `rel` equals `comps` joined with '/'.
fn joined_eq(rel: &[u8], comps: &[&[u8]]) -> bool {
    let mut rest = rel;
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            match rest.split_first() {
                Some((b'/', r)) => rest = r,
                _ => return false,
            }
        }
        match rest.strip_prefix(*c) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

// openat2 support: 0 unknown, 1 yes, 2 no.
static OPENAT2: AtomicU8 = AtomicU8::new(0);

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat()` returning an owned fd or the errno.
pub(crate) fn openat(dir: RawFd, name: &CString, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    loop {
        // SAFETY: name is a valid C string; the returned fd is ours.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd >= 0 {
            // SAFETY: fd was just returned by openat and is not owned elsewhere.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = last_errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// `fstatat(AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn lstat_at(dir: RawFd, name: &CString) -> Result<Stat, i32> {
    stat_at(dir, name, false)
}

/// `fstatat()` relative to `dir` (`libc::AT_FDCWD` for the working
/// directory), following a leaf symlink only when `follow`.
pub(crate) fn stat_at(dir: RawFd, name: &std::ffi::CStr, follow: bool) -> Result<Stat, i32> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: valid C string and an out-buffer of the right type.
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), st.as_mut_ptr(), flags) };
    if r != 0 {
        return Err(last_errno());
    }
    // SAFETY: fstatat succeeded, so it filled the buffer.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
}

/// `fstat()` of an open fd.
pub(crate) fn fstat_fd(fd: RawFd) -> Result<Stat, i32> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: out-buffer of the right type.
    let r = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    if r != 0 {
        return Err(last_errno());
    }
    // SAFETY: fstat succeeded.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
}

/// `readlinkat()`, bounded by PATH_MAX.
pub(crate) fn readlink_at(dir: RawFd, name: &CString) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; MAX_REL_LEN + 1];
    // SAFETY: buffer pointer/length describe a live allocation.
    let n = unsafe {
        libc::readlinkat(
            dir,
            name.as_ptr(),
            buf.as_mut_ptr().cast::<libc::c_char>(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(last_errno());
    }
    let n = usize::try_from(n).unwrap_or(0);
    if n >= buf.len() {
        return Err(libc::ENAMETOOLONG);
    }
    buf.truncate(n);
    Ok(buf)
}

/// Map a `-1` return to the errno.
pub(crate) fn check(r: libc::c_int) -> Result<(), i32> {
    if r == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

pub(crate) fn cstring(b: &[u8]) -> Result<CString, i32> {
    CString::new(b).map_err(|_| libc::EINVAL)
}

/// A directory that received files are placed beneath; see the module doc.
#[derive(Debug, Clone)]
pub struct DestRoot {
    fd: Arc<OwnedFd>,
    follow_dirlinks: bool,
    manual_walk: bool,
    show_prefix: Vec<u8>,
    show_suffix: String,
    /// Identifies this root (and its clones) in the [`DirCache`].
    id: u64,
    /// Bumped by every change that may alter how a directory path resolves.
    generation: Arc<AtomicU64>,
}

impl DestRoot {
    /// Open `path` (following symlinks: it is operator-chosen) as the root.
    pub fn open(path: &Path) -> Result<DestRoot, FsError> {
        let what = || format!("open \"{}\" failed", path.display());
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| FsError::os(what(), libc::EINVAL))?;
        let fd = openat(libc::AT_FDCWD, &c, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| FsError::os(what(), e))?;
        Ok(DestRoot::from_dir_fd(fd))
    }

    /// Use an already open directory fd (e.g. opened before dropping
    /// privileges) as the root.
    pub fn from_dir_fd(fd: OwnedFd) -> DestRoot {
        DestRoot {
            fd: Arc::new(fd),
            follow_dirlinks: false,
            manual_walk: false,
            show_prefix: Vec::new(),
            show_suffix: String::new(),
            id: NEXT_ROOT_ID.fetch_add(1, Ordering::Relaxed),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A directory or symlink may have been removed or replaced: forget
    /// every thread's cached parent directory (see [`DirCache`]).
    pub(crate) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The directory `comps` (non-empty), from this thread's cache when valid.
    fn parent_dir(&self, comps: &[&[u8]]) -> Result<Arc<OwnedFd>, i32> {
        let generation = self.generation.load(Ordering::Acquire);
        let hit = DIR_CACHE.with(|c| match &*c.borrow() {
            Some(d)
                if d.id == self.id
                    && d.generation == generation
                    && d.follow_dirlinks == self.follow_dirlinks
                    && d.manual_walk == self.manual_walk
                    && joined_eq(&d.rel, comps) =>
            {
                Some(d.fd.clone())
            }
            _ => None,
        });
        if let Some(fd) = hit {
            return Ok(fd);
        }
        let fd = match self.open_dir_comps(comps)? {
            Some(fd) => Arc::new(fd),
            None => return Err(libc::ENOENT),
        };
        DIR_CACHE.with(|c| {
            *c.borrow_mut() = Some(DirCache {
                id: self.id,
                generation,
                follow_dirlinks: self.follow_dirlinks,
                manual_walk: self.manual_walk,
                rel: comps.join(&b'/'),
                fd: fd.clone(),
            })
        });
        Ok(fd)
    }

    /// --keep-dirlinks: follow a symlinked directory component when its
    /// target is a directory still beneath the root.
    pub fn set_follow_dir_symlinks_inside(&mut self, on: bool) {
        self.follow_dirlinks = on;
    }

    /// Whether symlinked directory components are followed (beneath only).
    pub fn follow_dir_symlinks_inside(&self) -> bool {
        self.follow_dirlinks
    }

    /// Never use `openat2`, always walk component by component (tests and
    /// kernels with a broken `openat2`).
    pub fn set_manual_walk_only(&mut self, on: bool) {
        self.manual_walk = on;
    }

    /// How paths appear in messages: `"<prefix><rel>"<suffix>`, e.g. a
    /// prefix of `dest/` or a suffix of ` (in mod)` like rsync's full_fname().
    pub fn set_display(&mut self, prefix: &[u8], suffix: &str) {
        self.show_prefix = prefix.to_vec();
        self.show_suffix = suffix.to_string();
    }

    /// `rel` quoted for a message, as rsync's full_fname() would.
    pub fn show(&self, rel: &[u8]) -> String {
        let mut b = self.show_prefix.clone();
        b.extend_from_slice(rel);
        format!(
            "\"{}\"{}",
            crate::protocol::text::name(&b),
            self.show_suffix
        )
    }

    /// The root directory fd.
    pub fn root_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    pub(crate) fn raw_root(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Resolve `rel` to (parent dir fd, leaf name).
    pub(crate) fn at(&self, rel: &[u8]) -> Result<At<'_>, i32> {
        let comps = split_rel(rel)?;
        let root = self.root_fd();
        match comps.split_last() {
            None => Ok(At {
                root,
                dir: None,
                leaf: c".".to_owned(),
                is_root: true,
            }),
            Some((leaf, parents)) => {
                let dir = if parents.is_empty() {
                    None
                } else {
                    Some(self.parent_dir(parents)?)
                };
                Ok(At {
                    root,
                    dir,
                    leaf: cstring(leaf)?,
                    is_root: false,
                })
            }
        }
    }

    /// Open the directory `rel` (all of it, as directory components).
    /// `None` means the root itself.
    pub(crate) fn open_dir(&self, rel: &[u8]) -> Result<Option<OwnedFd>, i32> {
        let comps = split_rel(rel)?;
        self.open_dir_comps(&comps)
    }

    /// Resolve, turning a path refusal into `UnsafePath`.
    pub(crate) fn resolve(&self, rel: &[u8], what: impl Fn() -> String) -> Result<At<'_>, FsError> {
        if let Err(e) = split_rel(rel) {
            return Err(if e == libc::EINVAL {
                FsError::UnsafePath { what: what() }
            } else {
                FsError::os(what(), e)
            });
        }
        self.at(rel).map_err(|e| FsError::os(what(), e))
    }

    /// `resolve`, refusing the root itself.
    pub(crate) fn resolve_named(
        &self,
        rel: &[u8],
        what: impl Fn() -> String,
    ) -> Result<At<'_>, FsError> {
        let at = self.resolve(rel, &what)?;
        if at.is_root {
            return Err(FsError::UnsafePath { what: what() });
        }
        Ok(at)
    }

    fn open_dir_comps(&self, comps: &[&[u8]]) -> Result<Option<OwnedFd>, i32> {
        if comps.is_empty() {
            return Ok(None);
        }
        if !self.manual_walk && OPENAT2.load(Ordering::Relaxed) != 2 {
            let joined = cstring(&comps.join(&b'/'))?;
            let mut resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
            if !self.follow_dirlinks {
                resolve |= RESOLVE_NO_SYMLINKS;
            }
            for _ in 0..4 {
                match self.openat2(&joined, resolve) {
                    Ok(fd) => {
                        OPENAT2.store(1, Ordering::Relaxed);
                        return Ok(Some(fd));
                    }
                    Err(libc::ENOSYS) => {
                        OPENAT2.store(2, Ordering::Relaxed);
                        break;
                    }
                    // EAGAIN: a concurrent rename; EPERM: a seccomp filter
                    // that refuses unknown syscalls. Walk by hand instead.
                    Err(libc::EAGAIN) | Err(libc::EINTR) => continue,
                    Err(libc::EPERM) => break,
                    Err(e) => return Err(e),
                }
            }
        }
        self.walk_manual(comps).map(Some)
    }

    fn openat2(&self, path: &CString, resolve: u64) -> Result<OwnedFd, i32> {
        let how = OpenHow {
            flags: (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
            mode: 0,
            resolve,
        };
        // SAFETY: raw openat2 with a valid path and a correctly sized open_how.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                self.raw_root(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if r < 0 {
            return Err(last_errno());
        }
        let fd = RawFd::try_from(r).map_err(|_| libc::EBADF)?;
        // SAFETY: the kernel returned a new fd that nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Component-by-component walk. With dirlinks followed, keeps a stack of
    /// fds so `..` inside a link target pops by fd and cannot climb above
    /// the root.
    fn walk_manual(&self, comps: &[&[u8]]) -> Result<OwnedFd, i32> {
        let root = self.raw_root();
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut queue: VecDeque<Vec<u8>> = comps.iter().map(|c| c.to_vec()).collect();
        let mut hops = 0u32;
        while let Some(c) = queue.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    // Only a followed link's target can contain "..".
                    if stack.pop().is_none() {
                        return Err(libc::EXDEV);
                    }
                    continue;
                }
                _ => {}
            }
            let cur = stack.last().map_or(root, |f| f.as_raw_fd());
            let name = cstring(&c)?;
            match openat(
                cur,
                &name,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            ) {
                Ok(fd) => {
                    if !self.follow_dirlinks {
                        stack.clear();
                    }
                    stack.push(fd);
                }
                Err(e) if e == libc::ENOTDIR || e == libc::ELOOP => {
                    let st = lstat_at(cur, &name)?;
                    if !st.is_symlink() {
                        return Err(libc::ENOTDIR);
                    }
                    if !self.follow_dirlinks {
                        return Err(libc::ELOOP);
                    }
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(libc::ELOOP);
                    }
                    let target = readlink_at(cur, &name)?;
                    if target.is_empty() {
                        return Err(libc::ENOENT);
                    }
                    if target[0] == b'/' {
                        return Err(libc::EXDEV);
                    }
                    if queue.len() + target.len() > MAX_REL_LEN * 2 {
                        return Err(libc::ENAMETOOLONG);
                    }
                    for t in target.split(|&b| b == b'/').rev() {
                        queue.push_front(t.to_vec());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match stack.pop() {
            Some(fd) => Ok(fd),
            // Resolved back to the root (e.g. a link to "."): dup it.
            None => dup_fd(root),
        }
    }

    /// lstat `rel`; `None` when it does not exist.
    pub fn stat(&self, rel: &[u8]) -> Result<Option<Stat>, FsError> {
        let what = || format!("stat {} failed", self.show(rel));
        let at = match self.resolve(rel, what) {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        match lstat_at(at.dirfd(), &at.leaf) {
            Ok(st) => Ok(Some(st)),
            Err(libc::ENOENT) => Ok(None),
            Err(e) => Err(FsError::os(what(), e)),
        }
    }

    /// Like `stat`, but with dirlinks kept, a symlink leaf whose target is a
    /// directory beneath the root reports that directory (what the
    /// generator needs for --keep-dirlinks). Otherwise identical to `stat`.
    pub fn stat_keep_dirlink(&self, rel: &[u8]) -> Result<Option<Stat>, FsError> {
        let st = self.stat(rel)?;
        match st {
            Some(s) if s.is_symlink() && self.follow_dirlinks => match self.open_dir(rel) {
                Ok(Some(fd)) => {
                    let what = || format!("stat {} failed", self.show(rel));
                    fstat_fd(fd.as_raw_fd())
                        .map(Some)
                        .map_err(|e| FsError::os(what(), e))
                }
                // A link to a directory outside the root still reads as a
                // directory (upstream's stat follows it), so it is kept; what
                // goes beneath it is refused when it is written.
                Err(libc::EXDEV) => {
                    let what = || format!("stat {} failed", self.show(rel));
                    let at = self.resolve(rel, what)?;
                    match stat_at(at.dirfd(), &at.leaf, true) {
                        Ok(t) if t.is_dir() => Ok(Some(t)),
                        _ => Ok(st),
                    }
                }
                _ => Ok(st),
            },
            _ => Ok(st),
        }
    }

    /// The target of the symlink `rel`.
    pub fn read_link(&self, rel: &[u8]) -> Result<Vec<u8>, FsError> {
        let what = || format!("readlink {} failed", self.show(rel));
        let at = self.resolve(rel, what)?;
        readlink_at(at.dirfd(), &at.leaf).map_err(|e| FsError::os(what(), e))
    }

    /// Open a regular file for reading (a basis file). A symlink leaf,
    /// fifo, device or directory is refused.
    pub fn open_read(&self, rel: &[u8]) -> Result<File, FsError> {
        let what = || format!("open {} failed", self.show(rel));
        let at = self.resolve_named(rel, what)?;
        let fd = openat(
            at.dirfd(),
            &at.leaf,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
            0,
        )
        .map_err(|e| FsError::os(what(), e))?;
        let st = fstat_fd(fd.as_raw_fd()).map_err(|e| FsError::os(what(), e))?;
        if !st.is_file() {
            let e = if st.is_dir() {
                libc::EISDIR
            } else {
                libc::EINVAL
            };
            return Err(FsError::os(what(), e));
        }
        clear_nonblock(fd.as_raw_fd());
        Ok(File::from(fd))
    }

    /// Open the directory `rel` (for listing it, e.g. for deletions).
    /// Symlinked components follow the dirlinks rule; the leaf must be a
    /// real directory unless dirlinks are kept.
    pub fn open_dir_read(&self, rel: &[u8]) -> Result<File, FsError> {
        let what = || format!("opendir {} failed", self.show(rel));
        let at = self.resolve(rel, what)?;
        let fd = if at.is_root {
            openat(
                self.raw_root(),
                &at.leaf,
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )
        } else {
            match openat(
                at.dirfd(),
                &at.leaf,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            ) {
                Err(e) if (e == libc::ELOOP || e == libc::ENOTDIR) && self.follow_dirlinks => {
                    match self.open_dir(rel) {
                        Ok(Some(p)) => openat(
                            p.as_raw_fd(),
                            &c".".to_owned(),
                            libc::O_RDONLY | libc::O_DIRECTORY,
                            0,
                        ),
                        Ok(None) => Err(libc::EINVAL),
                        Err(e) => Err(e),
                    }
                }
                r => r,
            }
        }
        .map_err(|e| FsError::os(what(), e))?;
        Ok(File::from(fd))
    }

    /// The names in directory `rel` (without `.` and `..`), unsorted.
    pub fn list_dir(&self, rel: &[u8]) -> Result<Vec<Vec<u8>>, FsError> {
        let what = || format!("opendir {} failed", self.show(rel));
        let f = self.open_dir_read(rel)?;
        read_dir_names(f.as_raw_fd()).map_err(|e| FsError::os(what(), e))
    }

    /// Open an existing (or create a new, mode 0600) regular file for
    /// writing in place (--inplace), never following a symlink leaf and
    /// never truncating.
    pub fn open_inplace(&self, rel: &[u8]) -> Result<File, FsError> {
        let what = || format!("open {} failed", self.show(rel));
        let at = self.resolve_named(rel, what)?;
        let fd = openat(
            at.dirfd(),
            &at.leaf,
            libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
            0o600,
        )
        .map_err(|e| FsError::os(what(), e))?;
        let st = fstat_fd(fd.as_raw_fd()).map_err(|e| FsError::os(what(), e))?;
        if !st.is_file() {
            return Err(FsError::os(what(), libc::EINVAL));
        }
        clear_nonblock(fd.as_raw_fd());
        Ok(File::from(fd))
    }

    /// mkdir every missing directory of `rel` (like `mkdir -p`); existing
    /// directories are fine, anything else in the way is an error.
    pub fn make_path(&self, rel: &[u8], mode: u32) -> Result<(), FsError> {
        let what = || format!("mkdir {} failed", self.show(rel));
        let comps = match split_rel(rel) {
            Ok(c) => c,
            Err(libc::EINVAL) => return Err(FsError::UnsafePath { what: what() }),
            Err(e) => return Err(FsError::os(what(), e)),
        };
        for i in 0..comps.len() {
            let p = comps[..=i].join(&b'/');
            match self.mkdir(&p, mode) {
                Ok(()) => {}
                Err(e) if e.errno() == libc::EEXIST => match self.stat_keep_dirlink(&p)? {
                    Some(s) if s.is_dir() => {}
                    _ => {
                        return Err(FsError::os(
                            format!("mkdir {} failed", self.show(&p)),
                            libc::ENOTDIR,
                        ))
                    }
                },
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// mkdir `rel` with `mode` (the umask applies, as in mkdir(2)).
    pub fn mkdir(&self, rel: &[u8], mode: u32) -> Result<(), FsError> {
        let what = || format!("mkdir {} failed", self.show(rel));
        let at = self.resolve(rel, what)?;
        // SAFETY: valid fd and C string.
        check(unsafe { libc::mkdirat(at.dirfd(), at.leaf.as_ptr(), mode & 0o7777) })
            .map_err(|e| FsError::os(what(), e))
    }

    /// Create the symlink `rel` pointing at `target` (stored verbatim; the
    /// target is never resolved here).
    pub fn symlink(&self, target: &[u8], rel: &[u8]) -> Result<(), FsError> {
        let what = || {
            format!(
                "symlink {} -> \"{}\" failed",
                self.show(rel),
                crate::protocol::text::name(target)
            )
        };
        let at = self.resolve_named(rel, what)?;
        if target.is_empty() {
            return Err(FsError::os(what(), libc::ENOENT));
        }
        if target.len() > MAX_REL_LEN {
            return Err(FsError::os(what(), libc::ENAMETOOLONG));
        }
        let t = cstring(target).map_err(|e| FsError::os(what(), e))?;
        // SAFETY: valid fd and C strings.
        let r = check(unsafe { libc::symlinkat(t.as_ptr(), at.dirfd(), at.leaf.as_ptr()) });
        self.changed();
        r.map_err(|e| FsError::os(what(), e))
    }

    /// Hard-link `new_rel` to the existing `existing_rel` (a symlink is
    /// linked itself, never followed).
    pub fn hard_link(&self, existing_rel: &[u8], new_rel: &[u8]) -> Result<(), FsError> {
        self.link_from(self, existing_rel, new_rel)
    }

    /// Hard-link `existing_rel` of another root (e.g. a `--link-dest` dir)
    /// to `new_rel` here, following neither leaf.
    pub fn link_from(
        &self,
        other: &DestRoot,
        existing_rel: &[u8],
        new_rel: &[u8],
    ) -> Result<(), FsError> {
        let what = || {
            format!(
                "link {} => {} failed",
                self.show(new_rel),
                other.show(existing_rel)
            )
        };
        let old = other.resolve_named(existing_rel, what)?;
        let new = self.resolve_named(new_rel, what)?;
        // SAFETY: valid fds and C strings; flags 0 = do not follow.
        let r = check(unsafe {
            libc::linkat(
                old.dirfd(),
                old.leaf.as_ptr(),
                new.dirfd(),
                new.leaf.as_ptr(),
                0,
            )
        });
        self.changed();
        r.map_err(|e| FsError::os(what(), e))
    }

    /// Create a device, fifo or socket. `mode` carries the type bits
    /// (`S_IFCHR`, `S_IFBLK`, `S_IFIFO`, `S_IFSOCK`) and the permissions.
    pub fn mknod(&self, rel: &[u8], mode: u32, major: u32, minor: u32) -> Result<(), FsError> {
        let what = || format!("mknod {} failed", self.show(rel));
        let at = self.resolve_named(rel, what)?;
        let ft = mode & libc::S_IFMT;
        let dev = match ft {
            libc::S_IFCHR | libc::S_IFBLK => libc::makedev(major, minor),
            libc::S_IFIFO | libc::S_IFSOCK => 0,
            _ => return Err(FsError::os(what(), libc::EINVAL)),
        };
        // SAFETY: valid fd and C string.
        let r = check(unsafe {
            libc::mknodat(at.dirfd(), at.leaf.as_ptr(), ft | (mode & 0o7777), dev)
        });
        self.changed();
        r.map_err(|e| FsError::os(what(), e))
    }

    /// Remove a non-directory.
    pub fn unlink(&self, rel: &[u8]) -> Result<(), FsError> {
        let what = || format!("unlink {} failed", self.show(rel));
        let at = self.resolve_named(rel, what)?;
        // SAFETY: valid fd and C string.
        let r = check(unsafe { libc::unlinkat(at.dirfd(), at.leaf.as_ptr(), 0) });
        self.changed();
        r.map_err(|e| FsError::os(what(), e))
    }

    /// Remove an empty directory.
    pub fn rmdir(&self, rel: &[u8]) -> Result<(), FsError> {
        let what = || format!("rmdir {} failed", self.show(rel));
        let at = self.resolve_named(rel, what)?;
        // SAFETY: valid fd and C string.
        let r = check(unsafe { libc::unlinkat(at.dirfd(), at.leaf.as_ptr(), libc::AT_REMOVEDIR) });
        self.changed();
        r.map_err(|e| FsError::os(what(), e))
    }

    /// rename `from_rel` to `to_rel` (both beneath the root).
    pub fn rename(&self, from_rel: &[u8], to_rel: &[u8]) -> Result<(), FsError> {
        let what = || {
            format!(
                "rename {} -> \"{}\" failed",
                self.show(from_rel),
                crate::protocol::text::name(to_rel)
            )
        };
        let from = self.resolve_named(from_rel, what)?;
        let to = self.resolve_named(to_rel, what)?;
        // SAFETY: valid fds and C strings.
        let r = check(unsafe {
            libc::renameat(
                from.dirfd(),
                from.leaf.as_ptr(),
                to.dirfd(),
                to.leaf.as_ptr(),
            )
        });
        self.changed();
        r.map_err(|e| FsError::os(what(), e))
    }

    /// Delete `rel` and, if it is a directory, everything below it. Never
    /// follows a symlink (a link is removed, not its target); depth is
    /// bounded by `MAX_TREE_DEPTH`. Stops at the first failure.
    pub fn remove_tree(&self, rel: &[u8]) -> Result<(), FsError> {
        let r = self.remove_tree_inner(rel);
        self.changed();
        r
    }

    fn remove_tree_inner(&self, rel: &[u8]) -> Result<(), FsError> {
        let shown = normalize_rel(rel).unwrap_or_else(|_| rel.to_vec());
        let what = |sub: &[u8], op: &str| format!("{op} {} failed", self.show(sub));
        let at = self.resolve_named(rel, || what(&shown, "delete"))?;
        let st =
            lstat_at(at.dirfd(), &at.leaf).map_err(|e| FsError::os(what(&shown, "delete"), e))?;
        if !st.is_dir() {
            // SAFETY: valid fd and C string.
            return check(unsafe { libc::unlinkat(at.dirfd(), at.leaf.as_ptr(), 0) })
                .map_err(|e| FsError::os(what(&shown, "unlink"), e));
        }
        remove_dir_contents(at.dirfd(), &at.leaf, &shown, &|sub, op, e| {
            FsError::os(what(sub, op), e)
        })?;
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(at.dirfd(), at.leaf.as_ptr(), libc::AT_REMOVEDIR) })
            .map_err(|e| FsError::os(what(&shown, "rmdir"), e))
    }
}

/// Deepest directory nesting `remove_tree` descends into.
pub const MAX_TREE_DEPTH: usize = 1024;

/// Back to blocking I/O (O_NONBLOCK only guarded the open itself).
fn clear_nonblock(fd: RawFd) {
    // SAFETY: fcntl on a valid fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

/// dup an fd (close-on-exec).
pub(crate) fn dup_fd(fd: RawFd) -> Result<OwnedFd, i32> {
    // SAFETY: fcntl dup of a valid fd; the new fd is ours.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if r < 0 {
        return Err(last_errno());
    }
    // SAFETY: freshly duplicated fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// All names in an open directory, except `.` and `..`.
pub(crate) fn read_dir_names(dirfd: RawFd) -> Result<Vec<Vec<u8>>, i32> {
    let fd = dup_fd(dirfd)?;
    // Rewind: the dup shares the offset with `dirfd`.
    // SAFETY: lseek on an fd we own.
    unsafe { libc::lseek(fd.as_raw_fd(), 0, libc::SEEK_SET) };
    let raw = {
        use std::os::fd::IntoRawFd;
        fd.into_raw_fd()
    };
    // SAFETY: fdopendir takes ownership of raw on success.
    let dir = unsafe { libc::fdopendir(raw) };
    if dir.is_null() {
        let e = last_errno();
        // SAFETY: fdopendir failed, so raw is still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut names = Vec::new();
    let result = loop {
        nix::errno::Errno::clear();
        // SAFETY: dir is a valid DIR* until closedir below.
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            let e = nix::errno::Errno::last_raw();
            break if e == 0 { Ok(()) } else { Err(e) };
        }
        // SAFETY: d_name is a NUL-terminated array inside the entry.
        let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    };
    // SAFETY: closes the DIR* (and raw) exactly once.
    unsafe { libc::closedir(dir) };
    result.map(|()| names)
}

type TreeErr<'a> = dyn Fn(&[u8], &str, i32) -> FsError + 'a;

/// Empty the directory `parent/leaf` without following symlinks, using an
/// explicit stack (bounded by MAX_TREE_DEPTH) instead of recursion.
pub(crate) fn remove_dir_contents(
    parent: RawFd,
    leaf: &CString,
    shown: &[u8],
    err: &TreeErr<'_>,
) -> Result<(), FsError> {
    struct Level {
        fd: OwnedFd,
        names: Vec<Vec<u8>>,
        rel: Vec<u8>,
        name: CString,
    }
    let open_level = |dir: RawFd, name: &CString, rel: Vec<u8>| -> Result<Level, FsError> {
        let fd = openat(
            dir,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )
        .map_err(|e| err(&rel, "opendir", e))?;
        let names = read_dir_names(fd.as_raw_fd()).map_err(|e| err(&rel, "readdir", e))?;
        Ok(Level {
            fd,
            names,
            rel,
            name: name.clone(),
        })
    };
    let mut stack = vec![open_level(parent, leaf, shown.to_vec())?];
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.pop() else {
            let done = stack.pop();
            if let (Some(done), Some(up)) = (done, stack.last()) {
                // SAFETY: valid fd and C string.
                check(unsafe {
                    libc::unlinkat(up.fd.as_raw_fd(), done.name.as_ptr(), libc::AT_REMOVEDIR)
                })
                .map_err(|e| err(&done.rel, "rmdir", e))?;
            }
            continue;
        };
        let mut sub = top.rel.clone();
        sub.push(b'/');
        sub.extend_from_slice(&name);
        let cname = cstring(&name).map_err(|e| err(&sub, "delete", e))?;
        let dirfd = top.fd.as_raw_fd();
        let st = match lstat_at(dirfd, &cname) {
            Ok(s) => s,
            Err(libc::ENOENT) => continue,
            Err(e) => return Err(err(&sub, "delete", e)),
        };
        if st.is_dir() {
            if stack.len() >= MAX_TREE_DEPTH {
                return Err(err(&sub, "delete", libc::ENAMETOOLONG));
            }
            if st.mode & 0o700 != 0o700 && !nix::unistd::geteuid().is_root() {
                // upstream delete.c: make a directory writable to empty it.
                let _ = super::meta::chmod_nofollow(dirfd, &cname, st.perms() | 0o700);
            }
            let lvl = open_level(dirfd, &cname, sub)?;
            stack.push(lvl);
        } else {
            // SAFETY: valid fd and C string.
            match check(unsafe { libc::unlinkat(dirfd, cname.as_ptr(), 0) }) {
                Ok(()) | Err(libc::ENOENT) => {}
                Err(e) => return Err(err(&sub, "unlink", e)),
            }
        }
    }
    Ok(())
}

/// Scratch directories for the fs tests: `<tmp>/rrsync-fs-<pid>-<n>/` with
/// `root/` (the DestRoot) and `outside/` (must never change), removed on drop.
#[cfg(test)]
pub(crate) mod test_support {
    use super::DestRoot;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    static N: AtomicU32 = AtomicU32::new(0);

    pub(crate) struct Scratch {
        pub base: PathBuf,
        pub root: PathBuf,
        pub outside: PathBuf,
    }

    impl Scratch {
        pub fn new(tag: &str) -> Scratch {
            let n = N.fetch_add(1, Ordering::Relaxed);
            let base =
                std::env::temp_dir().join(format!("rrsync-fs-{}-{n}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            let root = base.join("root");
            let outside = base.join("outside");
            std::fs::create_dir_all(&root).unwrap();
            std::fs::create_dir_all(&outside).unwrap();
            std::fs::write(outside.join("secret"), b"secret").unwrap();
            std::fs::create_dir(outside.join("sub")).unwrap();
            std::fs::write(outside.join("sub/f"), b"f").unwrap();
            Scratch {
                base,
                root,
                outside,
            }
        }

        /// The default root and one forced to walk by hand.
        pub fn roots(&self) -> Vec<DestRoot> {
            let a = DestRoot::open(&self.root).unwrap();
            let mut b = a.clone();
            b.set_manual_walk_only(true);
            vec![a, b]
        }

        pub fn r(&self, p: &str) -> PathBuf {
            self.root.join(p)
        }

        /// A fingerprint of everything outside the root: names, types,
        /// sizes, modes, mtimes, contents.
        pub fn outside_snapshot(&self) -> Vec<String> {
            let mut v = Vec::new();
            snap(&self.base, &self.base, &mut v, &self.root);
            v.sort();
            v
        }
    }

    fn snap(base: &Path, dir: &Path, out: &mut Vec<String>, skip: &Path) {
        use std::os::unix::fs::MetadataExt;
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p == skip {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let content = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.push(format!(
                "{} {:o} {} {} {}.{} {:?}",
                p.strip_prefix(base).unwrap().display(),
                m.mode(),
                m.size(),
                m.uid(),
                m.mtime(),
                m.mtime_nsec(),
                content
            ));
            if m.is_dir() {
                snap(base, &p, out, skip);
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::Scratch;
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt};

    /// Every mutating and reading operation on `rel`, each must fail.
    fn all_ops_fail(d: &DestRoot, rel: &[u8], label: &str) {
        let other = b"victim".as_slice();
        let mut p = rel.to_vec();
        p.extend_from_slice(b"/secret");
        let mut sub = rel.to_vec();
        sub.extend_from_slice(b"/sub");
        let mut x = rel.to_vec();
        x.extend_from_slice(b"/x");
        let checks: Vec<(&str, Result<(), FsError>)> = vec![
            ("mkdir", d.mkdir(&x, 0o755)),
            ("symlink", d.symlink(b"target", &x)),
            ("mknod", d.mknod(&x, libc::S_IFIFO | 0o644, 0, 0)),
            (
                "stat",
                d.stat(&p)
                    .and_then(|s| s.map(|_| ()).ok_or(FsError::os("none", 0))),
            ),
            ("read_link", d.read_link(&p).map(|_| ())),
            ("open_read", d.open_read(&p).map(|_| ())),
            ("list_dir", d.list_dir(&sub).map(|_| ())),
            ("create_temp", d.create_temp(&x).map(|_| ())),
            ("unlink", d.unlink(&p)),
            ("rmdir", d.rmdir(&sub)),
            ("remove_tree", d.remove_tree(&sub)),
            ("rename-from", d.rename(&p, other)),
            ("rename-to", d.rename(b"victim", &x)),
            ("hard_link-from", d.hard_link(&p, b"h")),
            ("hard_link-to", d.hard_link(b"victim", &x)),
            ("set_mode", d.set_mode(&p, 0o777)),
            ("set_times", d.set_times(&p, 1, 0, Some((1, 0)))),
            ("set_owner", d.set_owner(&p, Some(4242), Some(4242))),
            ("backup", d.backup(&p, b"~", None).map(|_| ())),
            (
                "backup-dir",
                d.backup(b"victim", b"", Some(&sub)).map(|_| ()),
            ),
        ];
        for (op, r) in checks {
            assert!(
                r.is_err(),
                "{label}: {op} on {:?} succeeded",
                crate::protocol::text::name(rel)
            );
        }
    }

    #[test]
    fn split_rel_refuses_unsafe_names() {
        for bad in [
            &b"../x"[..],
            b"a/../../x",
            b"/etc/passwd",
            b"a/..",
            b"..",
            b"a\0b",
            b"//x",
        ] {
            assert_eq!(split_rel(bad), Err(libc::EINVAL), "{bad:?}");
        }
        assert_eq!(
            split_rel(b"a//b/./c/").unwrap(),
            vec![&b"a"[..], b"b", b"c"]
        );
        assert!(split_rel(b"").unwrap().is_empty());
        assert!(split_rel(b".").unwrap().is_empty());
        assert_eq!(split_rel(&[b'a'; 256]), Err(libc::ENAMETOOLONG));
        assert_eq!(
            split_rel(&vec![b'a'; MAX_REL_LEN + 1]),
            Err(libc::ENAMETOOLONG)
        );
        assert_eq!(normalize_rel(b"./a//b/").unwrap(), b"a/b");
    }

    #[test]
    fn dotdot_and_absolute_refused_nothing_outside_changes() {
        let s = Scratch::new("dotdot");
        std::fs::write(s.r("victim"), b"v").unwrap();
        let before = s.outside_snapshot();
        for d in s.roots() {
            for bad in [&b"../outside"[..], b"a/../../outside", b"/tmp", b".."] {
                all_ops_fail(&d, bad, "dotdot");
            }
            let e = d.mkdir(b"../outside/new", 0o755).unwrap_err();
            assert!(e.is_unsafe_path());
            assert_eq!(e.errno(), libc::EINVAL);
            assert_eq!(
                e.to_string(),
                "mkdir \"../outside/new\" failed: Invalid argument (22)"
            );
            assert!(d.hard_link(b"../outside/secret", b"h").is_err());
        }
        assert_eq!(before, s.outside_snapshot());
        assert_eq!(std::fs::read(s.r("victim")).unwrap(), b"v");
        assert!(!s.r("h").exists());
    }

    #[test]
    fn symlinked_dir_component_pointing_outside_refused() {
        let s = Scratch::new("symdir");
        std::fs::write(s.r("victim"), b"v").unwrap();
        symlink(&s.outside, s.r("abs")).unwrap();
        symlink("../outside", s.r("rel")).unwrap();
        std::fs::create_dir(s.r("d")).unwrap();
        symlink("../../outside", s.r("d/deep")).unwrap();
        let before = s.outside_snapshot();
        for mut d in s.roots() {
            for follow in [false, true] {
                d.set_follow_dir_symlinks_inside(follow);
                for l in [&b"abs"[..], b"rel", b"d/deep"] {
                    all_ops_fail(&d, l, "symdir");
                }
                let e = d.mkdir(b"rel/x", 0o755).unwrap_err();
                let want = if follow { libc::EXDEV } else { libc::ELOOP };
                assert_eq!(e.errno(), want, "follow={follow}: {e}");
                assert_eq!(d.mkdir(b"abs/x", 0o755).unwrap_err().errno(), want);
            }
        }
        assert_eq!(before, s.outside_snapshot());
        assert!(std::fs::symlink_metadata(s.r("abs"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(s.r("victim")).unwrap(), b"v");
    }

    #[test]
    fn symlink_created_in_transfer_then_used_as_dir_refused() {
        let s = Scratch::new("created");
        std::fs::write(s.r("victim"), b"v").unwrap();
        let before = s.outside_snapshot();
        for (i, mut d) in s.roots().into_iter().enumerate() {
            let a = format!("evil{i}");
            let b = format!("up{i}");
            d.symlink(s.outside.as_os_str().as_bytes(), a.as_bytes())
                .unwrap();
            d.symlink(b"..", b.as_bytes()).unwrap();
            for follow in [false, true] {
                d.set_follow_dir_symlinks_inside(follow);
                all_ops_fail(&d, a.as_bytes(), "created-abs");
                all_ops_fail(&d, format!("{b}/outside").as_bytes(), "created-up");
                assert!(d.create_temp(format!("{b}/outside/f").as_bytes()).is_err());
                assert!(d
                    .hard_link(format!("{b}/outside/secret").as_bytes(), b"h")
                    .is_err());
            }
            // The links themselves are ordinary entries: stat/readlink work.
            assert!(d.stat(a.as_bytes()).unwrap().unwrap().is_symlink());
            assert_eq!(d.read_link(b.as_bytes()).unwrap(), b"..");
        }
        assert_eq!(before, s.outside_snapshot());
        assert!(!s.r("h").exists());
    }

    #[test]
    fn follow_dir_symlinks_only_beneath_root() {
        let s = Scratch::new("keepdirlinks");
        std::fs::create_dir_all(s.r("real/sub")).unwrap();
        symlink("real", s.r("ln")).unwrap();
        symlink("real/sub/../../real", s.r("ln2")).unwrap();
        symlink("ln", s.r("chain")).unwrap();
        symlink(".", s.r("dot")).unwrap();
        symlink("..", s.r("real/up")).unwrap();
        symlink("loop", s.r("loop")).unwrap();
        symlink("real/nothing", s.r("dangling")).unwrap();
        std::fs::write(s.r("file"), b"x").unwrap();
        symlink("file", s.r("tofile")).unwrap();
        let before = s.outside_snapshot();
        for (i, mut d) in s.roots().into_iter().enumerate() {
            assert_eq!(
                d.mkdir(format!("ln/a{i}").as_bytes(), 0o755)
                    .unwrap_err()
                    .errno(),
                libc::ELOOP
            );
            d.set_follow_dir_symlinks_inside(true);
            for (j, l) in ["ln", "ln2", "chain", "dot", "real/up", "real/up/ln"]
                .iter()
                .enumerate()
            {
                let p = format!("{l}/n{i}_{j}");
                d.mkdir(p.as_bytes(), 0o755)
                    .unwrap_or_else(|e| panic!("{p}: {e}"));
            }
            assert!(s.r(&format!("real/n{i}_0")).is_dir());
            assert!(s.r(&format!("real/n{i}_1")).is_dir());
            assert!(s.r(&format!("n{i}_3")).is_dir());
            assert!(s.r(&format!("n{i}_4")).is_dir());
            assert_eq!(
                d.mkdir(b"real/up/../x", 0o755).unwrap_err().errno(),
                libc::EINVAL
            );
            assert_eq!(d.mkdir(b"loop/x", 0o755).unwrap_err().errno(), libc::ELOOP);
            assert_eq!(
                d.mkdir(b"dangling/x", 0o755).unwrap_err().errno(),
                libc::ENOENT
            );
            assert_eq!(
                d.mkdir(b"tofile/x", 0o755).unwrap_err().errno(),
                libc::ENOTDIR
            );
            // keep-dirlinks stat of the leaf reports the directory.
            assert!(d.stat(b"ln").unwrap().unwrap().is_symlink());
            assert!(d.stat_keep_dirlink(b"ln").unwrap().unwrap().is_dir());
            assert!(d
                .stat_keep_dirlink(b"tofile")
                .unwrap()
                .unwrap()
                .is_symlink());
            assert!(d.list_dir(b"ln").unwrap().contains(&b"sub".to_vec()));
        }
        assert_eq!(before, s.outside_snapshot());
    }

    #[test]
    fn basic_operations() {
        let s = Scratch::new("basic");
        for (i, d) in s.roots().into_iter().enumerate() {
            let dir = format!("d{i}");
            d.mkdir(dir.as_bytes(), 0o755).unwrap();
            assert_eq!(
                d.mkdir(dir.as_bytes(), 0o755).unwrap_err().errno(),
                libc::EEXIST
            );
            assert!(d.stat(dir.as_bytes()).unwrap().unwrap().is_dir());
            assert!(d.stat(format!("{dir}/none").as_bytes()).unwrap().is_none());
            assert!(d.stat(format!("none{i}/x").as_bytes()).unwrap().is_none());
            assert!(d.stat(b".").unwrap().unwrap().is_dir());
            std::fs::write(s.r(&format!("{dir}/f")), b"hello").unwrap();
            let mut f = d.open_read(format!("{dir}/./f").as_bytes()).unwrap();
            let mut v = String::new();
            std::io::Read::read_to_string(&mut f, &mut v).unwrap();
            assert_eq!(v, "hello");
            d.symlink(b"f", format!("{dir}/l").as_bytes()).unwrap();
            assert_eq!(
                d.open_read(format!("{dir}/l").as_bytes())
                    .unwrap_err()
                    .errno(),
                libc::ELOOP
            );
            assert_eq!(
                d.open_read(dir.as_bytes()).unwrap_err().errno(),
                libc::EISDIR
            );
            d.mknod(
                format!("{dir}/fifo").as_bytes(),
                libc::S_IFIFO | 0o640,
                0,
                0,
            )
            .unwrap();
            assert_eq!(
                d.open_read(format!("{dir}/fifo").as_bytes())
                    .unwrap_err()
                    .errno(),
                libc::EINVAL
            );
            let st = d.stat(format!("{dir}/fifo").as_bytes()).unwrap().unwrap();
            assert_eq!(st.file_type(), libc::S_IFIFO);
            d.mknod(
                format!("{dir}/sock").as_bytes(),
                libc::S_IFSOCK | 0o600,
                0,
                0,
            )
            .unwrap();
            let st = d.stat(format!("{dir}/sock").as_bytes()).unwrap().unwrap();
            assert_eq!(st.file_type(), libc::S_IFSOCK);
            assert!(d
                .mknod(format!("{dir}/reg").as_bytes(), libc::S_IFREG | 0o600, 0, 0)
                .is_err());
            if nix::unistd::geteuid().is_root() {
                d.mknod(
                    format!("{dir}/null").as_bytes(),
                    libc::S_IFCHR | 0o666,
                    1,
                    3,
                )
                .unwrap();
                let st = d.stat(format!("{dir}/null").as_bytes()).unwrap().unwrap();
                assert_eq!(
                    (st.file_type(), st.rdev_major, st.rdev_minor),
                    (libc::S_IFCHR, 1, 3)
                );
            }
            d.hard_link(
                format!("{dir}/l").as_bytes(),
                format!("{dir}/l2").as_bytes(),
            )
            .unwrap();
            assert!(d
                .stat(format!("{dir}/l2").as_bytes())
                .unwrap()
                .unwrap()
                .is_symlink());
            d.hard_link(
                format!("{dir}/f").as_bytes(),
                format!("{dir}/f2").as_bytes(),
            )
            .unwrap();
            assert_eq!(
                d.stat(format!("{dir}/f").as_bytes())
                    .unwrap()
                    .unwrap()
                    .nlink,
                2
            );
            d.rename(
                format!("{dir}/f2").as_bytes(),
                format!("{dir}/f3").as_bytes(),
            )
            .unwrap();
            d.unlink(format!("{dir}/f3").as_bytes()).unwrap();
            let mut names = d.list_dir(dir.as_bytes()).unwrap();
            names.sort();
            assert!(names.contains(&b"f".to_vec()) && !names.contains(&b"f3".to_vec()));
            d.mkdir(format!("{dir}/e").as_bytes(), 0o700).unwrap();
            d.rmdir(format!("{dir}/e").as_bytes()).unwrap();
            assert_eq!(
                d.rmdir(dir.as_bytes()).unwrap_err().errno(),
                libc::ENOTEMPTY
            );
            // Root-level attributes and mkdir -p.
            d.set_times(b".", 1_600_000_000, 5, None).unwrap();
            d.set_mode(b"./", 0o755).unwrap();
            assert_eq!(std::fs::metadata(&s.root).unwrap().mtime_nsec(), 5);
            d.make_path(format!("{dir}/p/q/r").as_bytes(), 0o755)
                .unwrap();
            d.make_path(format!("{dir}/p/q").as_bytes(), 0o755).unwrap();
            assert!(s.r(&format!("{dir}/p/q/r")).is_dir());
            assert_eq!(
                d.make_path(format!("{dir}/f/x").as_bytes(), 0o755)
                    .unwrap_err()
                    .errno(),
                libc::ENOTDIR
            );
            let mut w = d.open_inplace(format!("{dir}/f").as_bytes()).unwrap();
            std::io::Write::write_all(&mut w, b"J").unwrap();
            assert_eq!(std::fs::read(s.r(&format!("{dir}/f"))).unwrap(), b"Jello");
            assert_eq!(
                d.open_inplace(format!("{dir}/l").as_bytes())
                    .unwrap_err()
                    .errno(),
                libc::ELOOP
            );
            // No reader: ENXIO from the non-blocking open, never a hang.
            assert!(d.open_inplace(format!("{dir}/fifo").as_bytes()).is_err());
            for root_name in [&b""[..], b".", b"./"] {
                assert!(d.unlink(root_name).unwrap_err().is_unsafe_path());
                assert!(d.remove_tree(root_name).unwrap_err().is_unsafe_path());
                assert!(d.rename(root_name, b"zz").is_err());
            }
        }
    }

    #[test]
    fn cached_parent_dir_is_dropped_when_a_directory_is_replaced() {
        let s = Scratch::new("dircache");
        std::fs::create_dir_all(s.r("a/b")).unwrap();
        std::fs::write(s.r("a/b/f"), b"1").unwrap();
        let d = DestRoot::open(&s.root).unwrap();
        assert!(d.stat(b"a/b/f").unwrap().is_some()); // "a/b" is cached now
                                                      // Replaced through this root by the other role's thread: the next
                                                      // operation here sees the new directory.
        let other = d.clone();
        let o = other.clone();
        std::thread::spawn(move || {
            o.remove_tree(b"a/b").unwrap();
            o.mkdir(b"a/b", 0o755).unwrap();
        })
        .join()
        .unwrap();
        assert!(d.stat(b"a/b/f").unwrap().is_none());
        let (mut f, t) = d.create_temp(b"a/b/g").unwrap();
        std::io::Write::write_all(&mut f, b"new").unwrap();
        t.commit(b"a/b/g").unwrap();
        assert_eq!(std::fs::read(s.r("a/b/g")).unwrap(), b"new");
        // A directory replaced by a symlink is refused again.
        let target = s.outside.to_str().unwrap().as_bytes().to_vec();
        std::thread::spawn(move || {
            other.remove_tree(b"a/b").unwrap();
            other.symlink(&target, b"a/b").unwrap();
        })
        .join()
        .unwrap();
        assert!(d.stat(b"a/b/secret").is_err());
        assert!(d.create_temp(b"a/b/x").is_err());
        assert!(!s.outside.join("x").exists());
    }

    #[test]
    fn remove_tree_never_follows_symlinks() {
        let s = Scratch::new("rmtree");
        std::fs::create_dir_all(s.r("t/a/b/c")).unwrap();
        std::fs::write(s.r("t/a/b/c/f"), b"1").unwrap();
        std::fs::write(s.r("t/top"), b"2").unwrap();
        symlink(&s.outside, s.r("t/a/out")).unwrap();
        symlink(s.outside.join("secret"), s.r("t/a/b/sec")).unwrap();
        symlink("../../outside", s.r("t/rel")).unwrap();
        std::fs::write(s.r("keep"), b"k").unwrap();
        let before = s.outside_snapshot();
        let d = DestRoot::open(&s.root).unwrap();
        d.remove_tree(b"t").unwrap();
        assert!(!s.r("t").exists());
        assert!(s.r("keep").exists());
        assert_eq!(before, s.outside_snapshot());
        // A symlink to a directory is removed itself.
        symlink(&s.outside, s.r("ln")).unwrap();
        d.remove_tree(b"ln").unwrap();
        assert!(std::fs::symlink_metadata(s.r("ln")).is_err());
        assert_eq!(before, s.outside_snapshot());
        assert!(d.remove_tree(b"missing").unwrap_err().is_not_found());
        // Depth is bounded (and deep trees are fine below the bound).
        let mut p = String::from("deep");
        for _ in 0..100 {
            p.push_str("/d");
        }
        std::fs::create_dir_all(s.r(&p)).unwrap();
        d.remove_tree(b"deep").unwrap();
        assert!(!s.r("deep").exists());
    }

    #[test]
    fn open_reports_missing_root() {
        let s = Scratch::new("openroot");
        let e = DestRoot::open(&s.base.join("nope")).unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT);
        assert!(
            e.to_string()
                .ends_with("failed: No such file or directory (2)"),
            "{e}"
        );
        let d = DestRoot::open(&s.root).unwrap();
        let mut d2 = d.clone();
        d2.set_display(b"dest/", " (in mod)");
        assert_eq!(
            d2.mkdir(b"a/b", 0o755).unwrap_err().to_string(),
            "mkdir \"dest/a/b\" (in mod) failed: No such file or directory (2)"
        );
        let md = std::fs::metadata(&s.root).unwrap();
        let st = d.stat(b".").unwrap().unwrap();
        assert_eq!((st.dev, st.ino), (md.dev(), md.ino()));
    }
}
