//! Receiver temp files: `.<name>.XXXXXX` created exclusively beside the
//! final file (or in a temp dir), renamed into place on success and removed
//! in every other case, including when the `TempName` is dropped.
//!
//! upstream: receiver.c `get_tmpname()`, syscall.c `do_mkstemp()`,
//! rsync.c `finish_transfer()` / util1.c `robust_rename()`.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nix::libc;

use super::dest::{check, cstring, openat, split_rel, DestRoot, FsError, MAX_NAME_LEN};
use super::meta;

/// Length of the `.XXXXXX` suffix.
const SUFFIX_LEN: usize = 7;
/// Attempts at a fresh random name before giving up.
const MAX_TRIES: usize = 100;

/// The temp name for `leaf` (without the random part): `.name` beside the
/// final file, `name` in a temp dir; a leading dot of `leaf` is not doubled,
/// the name is cut so the whole fits NAME_MAX (not inside a UTF-8
/// sequence), and one trailing dot is dropped.
pub fn temp_stem(leaf: &[u8], in_temp_dir: bool) -> Vec<u8> {
    let mut f = leaf;
    let mut out = Vec::with_capacity(leaf.len() + 1 + SUFFIX_LEN);
    if !in_temp_dir {
        if f.first() == Some(&b'.') {
            f = &f[1..];
        }
        out.push(b'.');
    }
    // NAME_MAX minus the leading dot and the suffix.
    let room = MAX_NAME_LEN - 1 - SUFFIX_LEN;
    let mut take = f.len().min(room);
    if take < f.len() && f[take] & 0x80 != 0 {
        while take > 0 && f[take - 1] & 0x80 != 0 {
            take -= 1;
        }
    }
    out.extend_from_slice(&f[..take]);
    if out.len() > 1 && out.last() == Some(&b'.') {
        out.pop();
    }
    if out.is_empty() {
        out.push(b'x');
    }
    out
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Six random `[A-Za-z0-9]` characters: a per-thread generator seeded once
/// from the kernel (a getrandom call per temp file showed in profiles; the
/// O_EXCL create makes a collision harmless, it is retried).
fn random_suffix() -> [u8; 6] {
    const CHARS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let mut x = STATE.with(|s| s.get());
    if x == 0 {
        let mut seed = [0u8; 8];
        // SAFETY: getrandom fills the 8-byte buffer it is given.
        let n =
            unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), libc::GRND_NONBLOCK) };
        x = u64::from_le_bytes(seed);
        if n != 8 || x == 0 {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            h.write_u32(std::process::id());
            if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                h.write_u128(d.as_nanos());
            }
            x = h.finish() | 1;
        }
    }
    // xorshift64*
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    STATE.with(|s| s.set(x));
    let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut raw = [0u8; 6];
    raw.copy_from_slice(&v.to_le_bytes()[..6]);
    raw.map(|b| CHARS[usize::from(b) % CHARS.len()])
}

/// A temp file that has not been put in place yet. Dropping it (or
/// `discard`) unlinks it; `commit` renames it over the final name.
#[derive(Debug)]
pub struct TempName {
    root: DestRoot,
    /// The temp file's directory; `None` for the root itself.
    dir: Option<Arc<OwnedFd>>,
    /// The temp file's path relative to the root (for messages).
    rel: Vec<u8>,
    name: CString,
    live: bool,
    /// Known to the signal handler, which removes it on SIGINT/SIGTERM.
    reg: Option<super::cleanup::Registered>,
}

impl DestRoot {
    /// Create the temp file for `final_rel` beside it (mode 0600,
    /// O_EXCL|O_NOFOLLOW). upstream: receiver.c get_tmpname() + mkstemp.
    pub fn create_temp(&self, final_rel: &[u8]) -> Result<(File, TempName), FsError> {
        self.create_temp_in(final_rel, None, 0o600)
    }

    /// Like `create_temp`, but in the directory `temp_dir` (relative to the
    /// root) when given (--temp-dir), where the name has no leading dot, and
    /// created with `mode` (before the umask; no set-id or sticky bits).
    pub fn create_temp_in(
        &self,
        final_rel: &[u8],
        temp_dir: Option<&[u8]>,
        mode: u32,
    ) -> Result<(File, TempName), FsError> {
        let what0 = || format!("mkstemp {} failed", self.show(final_rel));
        let comps = match split_rel(final_rel) {
            Ok(c) if !c.is_empty() => c,
            Ok(_) | Err(libc::EINVAL) => return Err(FsError::UnsafePath { what: what0() }),
            Err(e) => return Err(FsError::os(what0(), e)),
        };
        let (leaf, parents) = match comps.split_last() {
            Some((l, p)) => (l.to_vec(), p),
            None => return Err(FsError::UnsafePath { what: what0() }),
        };
        let (dir, dir_rel) = match temp_dir {
            None => {
                let at = self.resolve_named(final_rel, what0)?;
                (at.into_dir(), parents.join(&b'/'))
            }
            Some(td) => {
                let what = || format!("mkstemp {} failed", self.show(td));
                let tcomps = match split_rel(td) {
                    Ok(c) => c,
                    Err(libc::EINVAL) => return Err(FsError::UnsafePath { what: what() }),
                    Err(e) => return Err(FsError::os(what(), e)),
                };
                let fd = self.open_dir(td).map_err(|e| FsError::os(what(), e))?;
                (fd.map(Arc::new), tcomps.join(&b'/'))
            }
        };
        let stem = temp_stem(&leaf, temp_dir.is_some());
        let dirfd = dir.as_ref().map_or(self.raw_root(), |d| d.as_raw_fd());
        let mut last = libc::EEXIST;
        let mut name_rel = Vec::new();
        for _ in 0..MAX_TRIES {
            let mut name = stem.clone();
            name.push(b'.');
            name.extend_from_slice(&random_suffix());
            name_rel = join_rel(&dir_rel, &name);
            let what = || format!("mkstemp {} failed", self.show(&name_rel));
            let cname = cstring(&name).map_err(|e| FsError::os(what(), e))?;
            match openat(
                dirfd,
                &cname,
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                mode & 0o777,
            ) {
                Ok(fd) => {
                    let reg = super::cleanup::register(dirfd, cname.as_bytes());
                    let tn = TempName {
                        root: self.clone(),
                        dir,
                        rel: name_rel,
                        name: cname,
                        live: true,
                        reg,
                    };
                    return Ok((File::from(fd), tn));
                }
                Err(libc::EEXIST) => continue,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(FsError::os(
            format!("mkstemp {} failed", self.show(&name_rel)),
            last,
        ))
    }
}

fn join_rel(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    let mut v = dir.to_vec();
    v.push(b'/');
    v.extend_from_slice(name);
    v
}

impl TempName {
    fn dirfd(&self) -> RawFd {
        self.dir
            .as_ref()
            .map_or(self.root.raw_root(), |d| d.as_raw_fd())
    }

    /// The temp file's own name (no directory).
    pub fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }

    /// The temp file's path relative to the root.
    pub fn rel(&self) -> &[u8] {
        &self.rel
    }

    /// The temp path quoted for messages.
    pub fn show(&self) -> String {
        self.root.show(&self.rel)
    }

    /// Rename the temp file onto `final_rel` (atomic replace). A directory
    /// in the way (EISDIR) or a cross-device temp dir (EXDEV) is an error;
    /// on any error the temp file is removed.
    pub fn commit(mut self, final_rel: &[u8]) -> Result<(), FsError> {
        let what = || {
            format!(
                "rename {} -> \"{}\" failed",
                self.show(),
                crate::protocol::text::name(final_rel)
            )
        };
        let root = self.root.clone();
        let at = root.resolve_named(final_rel, what)?;
        // SAFETY: valid fds and C strings.
        let r = check(unsafe {
            libc::renameat(
                self.dirfd(),
                self.name.as_ptr(),
                at.dirfd(),
                at.leaf.as_ptr(),
            )
        });
        // A regular file renamed over a name changes no directory path,
        // unless that name was a symlink to a directory we follow.
        if root.follow_dir_symlinks_inside() {
            root.changed();
        }
        match r {
            Ok(()) => {
                self.live = false;
                self.forget();
                Ok(())
            }
            Err(e) => Err(FsError::os(what(), e)),
        }
    }

    /// `--partial`: a fatal signal renames this temp file (when it holds
    /// data) onto `leaf`, relative to its directory (its final name, or
    /// `PARTIAL_DIR/name`), with `perms`.
    pub fn keep_on_signal(&self, leaf: &[u8], perms: u32) {
        if let Some(r) = &self.reg {
            super::cleanup::keep_as(r, leaf, perms);
        }
    }

    /// The signal handler no longer needs to know of it.
    fn forget(&mut self) {
        if let Some(r) = self.reg.take() {
            super::cleanup::unregister(r);
        }
    }

    /// Remove the temp file now.
    pub fn discard(mut self) -> Result<(), FsError> {
        self.live = false;
        self.forget();
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(self.dirfd(), self.name.as_ptr(), 0) })
            .map_err(|e| FsError::os(format!("unlink {} failed", self.show()), e))
    }

    /// fchmod the open temp file.
    pub fn set_mode(&self, file: &File, mode: u32) -> Result<(), FsError> {
        meta::fchmod(file, mode).map_err(|e| meta::file_err("chmod", &self.show(), e))
    }

    /// futimens the open temp file (atime `None` = keep).
    pub fn set_times(
        &self,
        file: &File,
        mtime: i64,
        mtime_nsec: u32,
        atime: Option<(i64, u32)>,
    ) -> Result<(), FsError> {
        meta::futimens(file, mtime, mtime_nsec, atime)
            .map_err(|e| meta::file_err("times", &self.show(), e))
    }

    /// fchown the open temp file (`None` = keep that id).
    pub fn set_owner(
        &self,
        file: &File,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(), FsError> {
        meta::fchown(file, uid, gid)
            .map_err(|e| meta::file_err(meta::chown_what(uid, gid), &self.show(), e))
    }
}

impl Drop for TempName {
    fn drop(&mut self) {
        if self.live {
            // SAFETY: valid fd and C string; failure is ignored on purpose.
            unsafe { libc::unlinkat(self.dirfd(), self.name.as_ptr(), 0) };
        }
        self.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::dest::test_support::Scratch;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn dot_files(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') || n.contains(".tmp"))
            .collect()
    }

    #[test]
    fn temp_stem_follows_upstream_naming() {
        assert_eq!(temp_stem(b"foo", false), b".foo");
        assert_eq!(temp_stem(b".bashrc", false), b".bashrc");
        assert_eq!(temp_stem(b"foo.", false), b".foo");
        assert_eq!(temp_stem(b"foo", true), b"foo");
        assert_eq!(temp_stem(b".foo", true), b".foo");
        let long = vec![b'a'; 255];
        assert_eq!(temp_stem(&long, false).len() + SUFFIX_LEN, 255);
        // Not cut inside a multi-byte character.
        let mut utf = vec![b'a'; 246];
        utf.extend_from_slice("éé".as_bytes());
        let st = temp_stem(&utf, false);
        assert_eq!(st.len(), 1 + 246);
        assert!(std::str::from_utf8(&st).is_ok());
        let mut utf = vec![b'a'; 245];
        utf.extend_from_slice("éé".as_bytes());
        assert_eq!(temp_stem(&utf, false).len(), 1 + 245);
    }

    #[test]
    fn temp_file_is_named_and_removed_on_drop_and_discard() {
        let s = Scratch::new("tmpdrop");
        for d in s.roots() {
            std::fs::create_dir_all(s.r("sub")).unwrap();
            let (mut f, tn) = d.create_temp(b"sub/file.txt").unwrap();
            f.write_all(b"partial").unwrap();
            let name = String::from_utf8(tn.name().to_vec()).unwrap();
            assert!(name.starts_with(".file.txt."), "{name}");
            assert_eq!(name.len(), ".file.txt.".len() + 6);
            assert!(name[".file.txt.".len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(tn.rel(), format!("sub/{name}").as_bytes());
            let md = std::fs::symlink_metadata(s.r(&format!("sub/{name}"))).unwrap();
            assert_eq!(md.mode() & 0o7777, 0o600);
            drop(tn);
            assert!(dot_files(&s.r("sub")).is_empty());
            let (_f, tn) = d.create_temp(b"top").unwrap();
            assert!(!dot_files(&s.root).is_empty());
            tn.discard().unwrap();
            assert!(dot_files(&s.root).is_empty());
            // A failed commit (a directory in the way) leaves no temp file.
            std::fs::create_dir_all(s.r("sub/isdir/x")).unwrap();
            let (_f, tn) = d.create_temp(b"sub/isdir").unwrap();
            let e = tn.commit(b"sub/isdir").unwrap_err();
            assert_eq!(e.errno(), libc::EISDIR, "{e}");
            assert!(e.to_string().starts_with("rename \""), "{e}");
            assert!(dot_files(&s.r("sub")).is_empty());
            std::fs::remove_dir_all(s.r("sub")).unwrap();
        }
    }

    #[test]
    fn commit_replaces_atomically() {
        let s = Scratch::new("tmpcommit");
        let d = DestRoot::open(&s.root).unwrap();
        std::fs::write(s.r("f"), b"old content").unwrap();
        let old_ino = std::fs::metadata(s.r("f")).unwrap().ino();
        let (mut f, tn) = d.create_temp(b"f").unwrap();
        f.write_all(b"new").unwrap();
        // Mid-write, the final name still holds the complete old version.
        assert_eq!(std::fs::read(s.r("f")).unwrap(), b"old content");
        f.write_all(b" content!").unwrap();
        tn.set_mode(&f, 0o640).unwrap();
        tn.set_times(&f, 1_500_000_000, 123_456_789, Some((1_400_000_000, 5)))
            .unwrap();
        tn.set_owner(&f, None, None).unwrap();
        drop(f);
        tn.commit(b"f").unwrap();
        // (metadata before reading: the read may update the atime)
        let md = std::fs::metadata(s.r("f")).unwrap();
        assert_ne!(md.ino(), old_ino);
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 123_456_789));
        assert_eq!((md.atime(), md.atime_nsec()), (1_400_000_000, 5));
        assert_eq!(std::fs::read(s.r("f")).unwrap(), b"new content!");
        assert!(dot_files(&s.root).is_empty());
    }

    #[test]
    fn temp_dir_and_escapes() {
        let s = Scratch::new("tmpdir");
        let before = s.outside_snapshot();
        let d = DestRoot::open(&s.root).unwrap();
        std::fs::create_dir_all(s.r("tmp")).unwrap();
        std::fs::create_dir_all(s.r("dst")).unwrap();
        let (mut f, tn) = d
            .create_temp_in(b"dst/.hidden", Some(b"tmp"), 0o600)
            .unwrap();
        assert!(tn.rel().starts_with(b"tmp/.hidden."), "{:?}", tn.show());
        f.write_all(b"x").unwrap();
        tn.commit(b"dst/.hidden").unwrap();
        assert_eq!(std::fs::read(s.r("dst/.hidden")).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(s.r("tmp")).unwrap().count(), 0);
        std::os::unix::fs::symlink(&s.outside, s.r("out")).unwrap();
        assert!(d.create_temp_in(b"dst/y", Some(b"out"), 0o600).is_err());
        assert!(d
            .create_temp_in(b"dst/y", Some(b"../outside"), 0o600)
            .unwrap_err()
            .is_unsafe_path());
        assert!(d.create_temp(b"out/y").is_err());
        assert!(d.create_temp(b"").unwrap_err().is_unsafe_path());
        // Committing to a name under a symlink is refused; temp removed.
        let (_f, tn) = d.create_temp(b"dst/z").unwrap();
        assert!(tn.commit(b"out/z").is_err());
        assert_eq!(dot_files(&s.r("dst")), vec![".hidden".to_string()]);
        assert_eq!(before, s.outside_snapshot());
    }

    #[test]
    fn random_names_differ() {
        let a = random_suffix();
        let b = random_suffix();
        let c = random_suffix();
        assert!(a != b || b != c);
    }
}
