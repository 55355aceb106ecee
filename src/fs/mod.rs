//! Filesystem access for the roles: opening source files safely and
//! rendering OS errors the way rsync prints them.

pub mod backup;
pub mod cleanup;
pub mod dest;
pub mod glob;
pub mod meta;
pub mod sparse;
pub mod tempfile;
pub mod xattr;

use nix::fcntl::OFlag;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Opens listed regular files for sending, each relative to an open fd of
/// its directory (kept while consecutive files share it, as they do in list
/// order): one path component to resolve per file instead of the whole
/// path, as upstream's sender does after changing into each directory.
#[derive(Default)]
pub struct SendOpener {
    dir: Option<(Vec<u8>, OwnedFd)>,
    /// `--open-noatime` / module `open noatime`: reads leave atimes alone.
    noatime: bool,
}

impl SendOpener {
    /// An opener; `noatime` asks for O_NOATIME (dropped for a file the
    /// process may not open that way, i.e. one it does not own).
    pub fn new(noatime: bool) -> Self {
        SendOpener { dir: None, noatime }
    }

    /// Open `path` for sending: no following of a leaf symlink that appeared
    /// after the list was built (a listed symlink target, -L / -k, is
    /// followed: it was checked at list time), and no blocking on a fifo
    /// that replaced the file. Returns the file and its size at open time:
    /// the sender sends that many bytes and no more (as upstream, which
    /// maps `st_size` bytes), which also spares a read that would only see
    /// EOF.
    pub fn open(&mut self, path: &Path) -> io::Result<(File, u64)> {
        let bytes = path.as_os_str().as_bytes();
        let (parent, leaf): (&[u8], &[u8]) = match bytes.iter().rposition(|&c| c == b'/') {
            Some(0) => (b"/", &bytes[1..]),
            Some(p) => (&bytes[..p], &bytes[p + 1..]),
            None => (b".", bytes),
        };
        if leaf.is_empty() || leaf == b"." || leaf == b".." {
            return Err(io::Error::other("not a regular file"));
        }
        let cached = matches!(&self.dir, Some((p, _)) if p.as_slice() == parent);
        if !cached {
            self.dir = None;
            let fd = nix::fcntl::open(
                parent,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(io::Error::from)?;
            self.dir = Some((parent.to_vec(), fd));
        }
        let Some((_, dirfd)) = &self.dir else {
            return Err(io::Error::from_raw_os_error(nix::libc::EBADF));
        };
        let mut base = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        if self.noatime {
            base |= OFlag::O_NOATIME;
        }
        let mode = nix::sys::stat::Mode::empty();
        let open =
            |flags: OFlag| match nix::fcntl::openat(dirfd, leaf, flags | OFlag::O_NOFOLLOW, mode) {
                Err(nix::errno::Errno::ELOOP) => nix::fcntl::openat(dirfd, leaf, flags, mode),
                other => other,
            };
        let fd = match open(base) {
            Err(nix::errno::Errno::EPERM) if self.noatime => open(base - OFlag::O_NOATIME),
            other => other,
        }
        .map_err(io::Error::from)?;
        checked_regular(File::from(fd))
    }
}

fn checked_regular(f: File) -> io::Result<(File, u64)> {
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok((f, md.len()))
}

impl crate::delta::sums::PositionalRead for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

/// "No such file or directory", as strerror() gives it (std's text
/// without its "(os error N)").
pub fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}

/// "No such file or directory (2)" as rsync's rsyserr prints it.
pub fn os_error_text(e: &io::Error) -> String {
    let base = strerror(e);
    match e.raw_os_error() {
        Some(c) => format!("{base} ({c})"),
        None => base,
    }
}
