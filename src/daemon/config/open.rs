//! Reading config files without following planted symlinks
//! (upstream: params.c OpenConfFile() via open_no_attacker_symlinks()).
//!
//! Stock rsync refuses to read a config file through a symlink that is not
//! owned by root or by the daemon's effective uid, at any path component.
//! We resolve the path one component at a time, checking the owner of every
//! symlink met on the way, then open the fully resolved path with
//! `O_NOFOLLOW`.  (A symlink swapped in between the walk and the open makes
//! the open fail rather than be followed.)

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Refuse config files larger than this (bytes).
pub(crate) const MAX_CONFIG_FILE: u64 = 16 * 1024 * 1024;

/// Symlinks followed while resolving one path, at most (like Linux MAXSYMLINKS).
const MAX_SYMLINK_HOPS: usize = 40;

fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Resolve `path` to a symlink-free absolute path, refusing any symlink
/// owned by someone other than root or `euid`.
pub(crate) fn resolve_trusted(path: &Path, euid: u32) -> io::Result<PathBuf> {
    let mut cur = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir()?
    };
    let mut todo = components(path);
    let mut hops = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        let next = cur.join(&name);
        let meta = std::fs::symlink_metadata(&next)?;
        if !meta.file_type().is_symlink() {
            cur = next;
            continue;
        }
        if meta.uid() != 0 && meta.uid() != euid {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to follow symlink {} owned by uid {}",
                    next.display(),
                    meta.uid()
                ),
            ));
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(io::Error::other("too many levels of symbolic links"));
        }
        let target = std::fs::read_link(&next)?;
        if target.is_absolute() {
            cur = PathBuf::from("/");
        }
        for c in components(&target).into_iter().rev() {
            todo.push_front(c);
        }
    }
    Ok(cur)
}

/// Open and read a config file: the trusted-symlink walk, a regular-file
/// check and a size bound.  Returns the bytes and the file's metadata (whose
/// dev/ino identify it for include-loop detection).
pub(crate) fn read_config_file(path: &Path) -> io::Result<(Vec<u8>, Metadata)> {
    let euid = nix::unistd::geteuid().as_raw();
    let resolved = resolve_trusted(path, euid)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&resolved)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    read_bounded(file, meta)
}

fn read_bounded(file: File, meta: Metadata) -> io::Result<(Vec<u8>, Metadata)> {
    let mut buf = Vec::new();
    file.take(MAX_CONFIG_FILE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_CONFIG_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("config file larger than {MAX_CONFIG_FILE} bytes"),
        ));
    }
    Ok((buf, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::config::tests::TempDir;

    #[test]
    fn reads_plain_and_own_symlinked_files() {
        let d = TempDir::new("open");
        let f = d.write("a.conf", "x = 1\n");
        std::os::unix::fs::symlink(&f, d.path().join("link.conf")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("../a.conf", d.path().join("sub/rel.conf")).unwrap();
        for p in ["a.conf", "link.conf", "sub/rel.conf", "sub/../a.conf"] {
            let (bytes, _) = read_config_file(&d.path().join(p)).unwrap();
            assert_eq!(bytes, b"x = 1\n", "{p}");
        }
    }

    #[test]
    fn refuses_foreign_symlink() {
        let d = TempDir::new("open-foreign");
        d.write("a.conf", "x = 1\n");
        std::os::unix::fs::symlink("a.conf", d.path().join("link.conf")).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        // Pretend we are someone else: the link (owned by us) is foreign.
        let other = if me == 12345 { 12346 } else { 12345 };
        if me != 0 {
            let e = resolve_trusted(&d.path().join("link.conf"), other).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        }
        assert!(resolve_trusted(&d.path().join("a.conf"), other).is_ok());
    }

    #[test]
    fn symlink_loop_is_bounded() {
        let d = TempDir::new("open-loop");
        std::os::unix::fs::symlink("b", d.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", d.path().join("b")).unwrap();
        assert!(read_config_file(&d.path().join("a")).is_err());
    }

    #[test]
    fn refuses_directory() {
        let d = TempDir::new("open-dir");
        assert!(read_config_file(d.path()).is_err());
    }
}
