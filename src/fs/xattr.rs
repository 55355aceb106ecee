//! Extended attributes on disk (`-X`; upstream xattrs.c and
//! lib/sysxattrs.c): which names a side copies, reading an entry's set,
//! and making a destination's set equal the sender's.
//!
//! Entries are reached without following a final symlink: a path with
//! the `l*xattr` calls (the sender), a directory fd and a leaf name (the
//! destination: the `*xattrat` system calls of Linux 6.13+, else the
//! `l*xattr` calls through `/proc/self/fd`), or an open file (a temp file).

pub use crate::protocol::xattr::{NameRule, Names};
use crate::protocol::xattr::{Xattr, XattrSet};
use nix::libc;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where an entry's attributes are read and written.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A path; a final symlink is not followed.
    Path(&'a CStr),
    /// `leaf` in the directory `dir`; a final symlink is not followed.
    At {
        /// The directory.
        dir: RawFd,
        /// A single component (or `.`).
        leaf: &'a CStr,
    },
    /// An open file.
    Fd(RawFd),
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// 0: not tried; 1: the `*xattrat` calls work; 2: they do not exist.
static AT_CALLS: AtomicU8 = AtomicU8::new(0);
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

/// The kernel's `struct xattr_args`.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// getxattrat or setxattrat: the value buffer `value` of `len` bytes.
fn xattrat(
    call: libc::c_long,
    dir: RawFd,
    leaf: &CStr,
    name: &CStr,
    value: u64,
    len: usize,
) -> isize {
    let args = XattrArgs {
        value,
        size: u32::try_from(len).unwrap_or(u32::MAX),
        flags: 0,
    };
    // SAFETY: valid fd and C strings; args names a buffer of `len` bytes
    // that the caller keeps alive for the call.
    unsafe {
        libc::syscall(
            call,
            dir,
            leaf.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            name.as_ptr(),
            &args as *const XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        ) as isize
    }
}

fn at_calls() -> bool {
    cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
        && AT_CALLS.load(Ordering::Relaxed) != 2
}

/// The `/proc/self/fd` path of `leaf` in `dir` (for the `l*xattr` calls).
fn proc_path(dir: RawFd, leaf: &CStr) -> io::Result<CString> {
    let mut p = format!("/proc/self/fd/{dir}/").into_bytes();
    p.extend_from_slice(leaf.to_bytes());
    CString::new(p).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Run one of the calls; `Err(ENOSYS)` from an `*xattrat` call switches
/// to the `/proc` path for good.
fn call(
    t: Target<'_>,
    at: impl Fn(RawFd, &CStr) -> isize,
    path: impl Fn(&CStr) -> isize,
    fd: impl Fn(RawFd) -> isize,
) -> io::Result<usize> {
    let r = match t {
        Target::Path(p) => path(p),
        Target::Fd(f) => fd(f),
        Target::At { dir, leaf } => {
            let mut r = -1;
            let mut tried = false;
            if at_calls() {
                r = at(dir, leaf);
                tried = true;
                if r < 0 && errno() == libc::ENOSYS {
                    AT_CALLS.store(2, Ordering::Relaxed);
                    tried = false;
                } else {
                    AT_CALLS.store(1, Ordering::Relaxed);
                }
            }
            if !tried {
                let p = proc_path(dir, leaf)?;
                r = path(&p);
            }
            r
        }
    };
    if r < 0 {
        Err(io::Error::from_raw_os_error(errno()))
    } else {
        Ok(r as usize)
    }
}

fn raw_list(t: Target<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let (ptr, len) = (buf.as_mut_ptr() as *mut libc::c_char, buf.len());
    call(
        t,
        // SAFETY: valid fd, C string and buffer of `len` bytes.
        |d, l| unsafe {
            libc::syscall(
                SYS_LISTXATTRAT,
                d,
                l.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
                ptr,
                len,
            ) as isize
        },
        // SAFETY: as above.
        |p| unsafe { libc::llistxattr(p.as_ptr(), ptr, len) },
        // SAFETY: as above.
        |f| unsafe { libc::flistxattr(f, ptr, len) },
    )
}

fn raw_get(t: Target<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    let (ptr, len) = (buf.as_mut_ptr(), buf.len());
    call(
        t,
        |d, l| xattrat(SYS_GETXATTRAT, d, l, name, ptr as u64, len),
        // SAFETY: as above.
        |p| unsafe { libc::lgetxattr(p.as_ptr(), name.as_ptr(), ptr as *mut libc::c_void, len) },
        // SAFETY: as above.
        |f| unsafe { libc::fgetxattr(f, name.as_ptr(), ptr as *mut libc::c_void, len) },
    )
}

/// The names of `t`'s attributes (none where the filesystem has no
/// attributes).
pub fn list(t: Target<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    loop {
        match raw_list(t, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|&c| c == 0)
                    .filter(|n| !n.is_empty())
                    .map(|n| n.to_vec())
                    .collect());
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
                let need = raw_list(t, &mut [])?;
                buf = vec![0u8; need + 1024];
            }
            Err(e) => return Err(e),
        }
    }
}

/// The value of `t`'s attribute `name`.
pub fn get(t: Target<'_>, name: &[u8]) -> io::Result<Vec<u8>> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 256];
    loop {
        match raw_get(t, &name, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
                let need = raw_get(t, &name, &mut [])?;
                buf = vec![0u8; need + 1];
            }
            Err(e) => return Err(e),
        }
    }
}

/// Set `t`'s attribute `name` to `value`.
pub fn set(t: Target<'_>, name: &[u8], value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let (ptr, len) = (value.as_ptr(), value.len());
    call(
        t,
        |d, l| xattrat(SYS_SETXATTRAT, d, l, &name, ptr as u64, len),
        // SAFETY: as above.
        |p| unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                name.as_ptr(),
                ptr as *const libc::c_void,
                len,
                0,
            ) as isize
        },
        // SAFETY: as above.
        |f| unsafe {
            libc::fsetxattr(f, name.as_ptr(), ptr as *const libc::c_void, len, 0) as isize
        },
    )
    .map(|_| ())
}

/// Remove `t`'s attribute `name`.
pub fn remove(t: Target<'_>, name: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    call(
        t,
        // SAFETY: valid fd and C strings.
        |d, l| unsafe {
            libc::syscall(
                SYS_REMOVEXATTRAT,
                d,
                l.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
                name.as_ptr(),
            ) as isize
        },
        // SAFETY: as above.
        |p| unsafe { libc::lremovexattr(p.as_ptr(), name.as_ptr()) as isize },
        // SAFETY: as above.
        |f| unsafe { libc::fremovexattr(f, name.as_ptr()) as isize },
    )
    .map(|_| ())
}

/// `t`'s attributes that `keep` counts, with their values, by name.
pub fn read(t: Target<'_>, keep: impl Fn(&[u8]) -> bool) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in list(t)? {
        if !keep(&name) {
            continue;
        }
        match get(t, &name) {
            Ok(v) => out.push((name, v)),
            // Removed since it was listed.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Does an entry of this mode carry attributes on the sending side
/// (upstream get_xattr: links, devices and specials only when they are
/// sent as such)?
pub fn mode_has_xattrs(mode: u32, links: bool, devices: bool, specials: bool) -> bool {
    use crate::protocol::flist::mode as m;
    if m::is_reg(mode) || m::is_dir(mode) {
        true
    } else if m::is_lnk(mode) {
        links
    } else if m::is_device(mode) {
        devices
    } else if m::is_special(mode) {
        specials
    } else {
        false
    }
}

/// The set a sender lists for the entry at `path`.
pub fn read_for_send(path: &CStr, names: &Names) -> io::Result<XattrSet> {
    let items = read(Target::Path(path), |n| names.sender_keeps(n))?
        .into_iter()
        .map(|(n, v)| Xattr::from_value(n, &v))
        .collect();
    Ok(XattrSet::sorted(items))
}

/// Does the local set `local` (sorted, as [`read`] gives it) differ from
/// the sender's `set` (upstream xattr_diff)? `differs` is told of each
/// sender's item that is missing or different here.
pub fn differs(
    set: &XattrSet,
    local: &[(Vec<u8>, Vec<u8>)],
    mut differs: impl FnMut(&Xattr),
) -> bool {
    let mut any = set.items.len() != local.len();
    for x in &set.items {
        let same = local
            .binary_search_by(|(n, _)| n.as_slice().cmp(&x.name))
            .ok()
            .is_some_and(|i| x.matches(&local[i].1));
        if !same {
            any = true;
            differs(x);
        }
    }
    // (Same count and every sender's item here: nothing extra either.)
    any
}

/// Make `t`'s attributes equal `set` (upstream rsync_xal_set): each item
/// set (an abbreviated one with the value `full` finds for it), then the
/// names `names` counts that the set lacks removed. Returns the failures
/// as (what failed, errno), and the items whose values were missing.
pub fn apply(
    t: Target<'_>,
    wanted: &XattrSet,
    names: &Names,
    mut full: impl FnMut(&Xattr) -> Option<Vec<u8>>,
) -> io::Result<Applied> {
    let local = read(t, |n| names.local_keeps(n))?;
    let mut done = Applied::default();
    for x in &wanted.items {
        let have = local
            .binary_search_by(|(n, _)| n.as_slice().cmp(&x.name))
            .ok()
            .map(|i| &local[i].1);
        if have.is_some_and(|v| x.matches(v)) {
            continue;
        }
        let value = if x.abbreviated() {
            match full(x) {
                Some(v) => v,
                None => {
                    done.missing.push(x.name.clone());
                    continue;
                }
            }
        } else {
            x.value.clone()
        };
        match set(t, &x.name, &value) {
            Ok(()) => done.changed = true,
            Err(e) => done.failed.push((
                format!("setxattr \"{}\"", String::from_utf8_lossy(&x.name)),
                e.raw_os_error().unwrap_or(libc::EIO),
            )),
        }
    }
    for (name, _) in &local {
        if wanted.items.iter().any(|x| &x.name == name) {
            continue;
        }
        match remove(t, name) {
            Ok(()) => done.changed = true,
            Err(e) => done.failed.push((
                format!("removexattr \"{}\"", String::from_utf8_lossy(name)),
                e.raw_os_error().unwrap_or(libc::EIO),
            )),
        }
    }
    Ok(done)
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Something was set or removed.
    pub changed: bool,
    /// Calls that failed: (what, errno).
    pub failed: Vec<(String, i32)>,
    /// Abbreviated items whose value was not found.
    pub missing: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    fn user(level: u8) -> Names {
        Names {
            am_root: false,
            level,
            excluded: None,
        }
    }

    #[test]
    fn namespaces_as_upstream() {
        let u = user(1);
        assert!(u.sender_keeps(b"user.a") && u.sender_keeps(b"security.selinux"));
        assert!(!u.sender_keeps(b"system.posix_acl_access"));
        assert!(!u.sender_keeps(b"user.rsync.%stat") && user(2).sender_keeps(b"user.rsync.%stat"));
        assert!(u.local_keeps(b"user.a") && !u.local_keeps(b"trusted.a"));
        assert_eq!(u.wire_keep(b"trusted.a"), None);
        assert_eq!(u.wire_keep(b"user.a"), Some(b"user.a".to_vec()));
        let root = Names {
            am_root: true,
            ..user(1)
        };
        assert!(root.local_keeps(b"trusted.a") && !root.local_keeps(b"system.x"));
        assert_eq!(root.wire_keep(b"trusted.a"), Some(b"trusted.a".to_vec()));
        let ruled = Names {
            excluded: Some(Arc::new(|n: &[u8]| n.ends_with(b".skip"))),
            ..user(1)
        };
        assert_eq!(
            ruled.wire_keep(b"trusted.a"),
            Some(b"user.rsync.trusted.a".to_vec())
        );
        assert_eq!(ruled.wire_keep(b"user.x.skip"), None);
        assert!(ruled.local_keeps(b"trusted.b") && !ruled.local_keeps(b"user.x.skip"));
    }

    #[test]
    fn read_apply_and_compare_on_a_real_file() {
        let dir = std::env::temp_dir().join(format!("rrsync-xattr-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src");
        let dst = dir.join("dst");
        std::fs::write(&src, b"x").unwrap();
        std::fs::write(&dst, b"y").unwrap();
        let csrc = CString::new(src.as_os_str().as_encoded_bytes()).unwrap();
        let long = vec![b'L'; 100];
        if set(Target::Path(&csrc), b"user.short", b"s").is_err() {
            return; // no user xattrs on this filesystem
        }
        set(Target::Path(&csrc), b"user.long", &long).unwrap();
        let names = user(1);
        let sent = read_for_send(&csrc, &names).unwrap();
        assert_eq!(sent.items.len(), 2);
        assert!(sent.items[0].abbreviated());
        let d = std::fs::File::open(&dir).unwrap();
        let leaf = CString::new("dst").unwrap();
        let at = Target::At {
            dir: d.as_raw_fd(),
            leaf: &leaf,
        };
        set(at, b"user.extra", b"e").unwrap();
        let local = read(at, |n| names.local_keeps(n)).unwrap();
        let mut wanted = Vec::new();
        assert!(differs(&sent, &local, |x| wanted.push(x.name.clone())));
        assert_eq!(wanted.len(), 2);
        // The long value missing: reported, the rest applied.
        let done = apply(at, &sent, &names, |_| None).unwrap();
        assert_eq!(done.missing, vec![b"user.long".to_vec()]);
        let done = apply(at, &sent, &names, |_| Some(long.clone())).unwrap();
        assert!(done.changed && done.missing.is_empty() && done.failed.is_empty());
        let local = read(at, |n| names.local_keeps(n)).unwrap();
        assert!(!differs(&sent, &local, |_| {}));
        assert_eq!(get(at, b"user.long").unwrap(), long);
        assert!(get(at, b"user.extra").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
