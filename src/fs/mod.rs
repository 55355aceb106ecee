//! Filesystem access for the roles: opening source files safely and
//! rendering OS errors the way rsync prints them.

pub mod backup;
pub mod dest;
pub mod meta;
pub mod sparse;
pub mod tempfile;

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Open a listed regular file for sending: no following of a leaf symlink
/// that appeared after the list was built, and no blocking on a fifo that
/// replaced the file.
pub fn open_for_send(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .or_else(|e| {
            // A listed symlink target (-L / -k): follow it, it was checked at list time.
            if e.raw_os_error() == Some(nix::libc::ELOOP) {
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::libc::O_NONBLOCK)
                    .open(path)
            } else {
                Err(e)
            }
        })?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
}

/// "No such file or directory (2)" as rsync's rsyserr prints it.
pub fn os_error_text(e: &io::Error) -> String {
    let s = e.to_string();
    let base = match s.find(" (os error") {
        Some(p) => s[..p].to_string(),
        None => s,
    };
    match e.raw_os_error() {
        Some(c) => format!("{base} ({c})"),
        None => base,
    }
}
