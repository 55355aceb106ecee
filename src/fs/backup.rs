//! Backups (--backup, --suffix, --backup-dir) beneath a `DestRoot`: the old
//! version of a file is moved (or hard-linked) to `rel+suffix`, or to
//! `backup_dir/rel+suffix`, creating missing directories in the backup dir.
//!
//! upstream: backup.c `make_backup()`, `get_backup_name()`,
//! `copy_valid_path()`, `link_or_rename()`. The default suffix (`~`, or ""
//! with a backup dir) is the caller's choice, as in options.c.

use std::fs::File;
use std::io;

use nix::libc;

use super::dest::{check, normalize_rel, openat, split_rel, DestRoot, FsError, Stat};

/// The attributes an in-place backup takes from its original (upstream
/// set_file_attrs on the backup: the mode always, the owner, the group and
/// the modification time as the transfer preserves them).
#[derive(Debug, Clone, Default)]
pub struct CopyAttrs {
    /// Permission bits (`& 07777`).
    pub mode: u32,
    /// The modification time (`-t`), else the copy's own.
    pub mtime: Option<(i64, u32)>,
    /// The owner (`-o` as root), else the copier's.
    pub uid: Option<u32>,
    /// The group (`-g`), else the copier's.
    pub gid: Option<u32>,
    /// `-X`: the original's attributes go along (the names this side
    /// copies; upstream copy_xattrs).
    pub xattrs: Option<super::xattr::Names>,
}

impl CopyAttrs {
    /// Owner, then times, then mode (a chown clears set-id bits), on the
    /// open copy; the first failure is returned with rsync's text.
    fn apply(&self, f: &File, shown: &str) -> Result<(), FsError> {
        use super::meta::{fchmod, fchown, file_err, futimens};
        if self.uid.is_some() || self.gid.is_some() {
            let op = if self.uid.is_some() { "chown" } else { "chgrp" };
            fchown(f, self.uid, self.gid).map_err(|e| file_err(op, shown, e))?;
        }
        if let Some((secs, nsec)) = self.mtime {
            futimens(f, secs, nsec, None).map_err(|e| file_err("times", shown, e))?;
        }
        fchmod(f, self.mode).map_err(|e| file_err("chmod", shown, e))
    }
}

/// How the old file gets to its backup name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// rename (deletions: the original goes away).
    Rename,
    /// hard link, keeping the original until the new file replaces it
    /// (finish_transfer); a regular file falls back to rename.
    Link,
}

/// The backup path of `rel`: `rel+suffix`, or `backup_dir/rel+suffix`.
/// A suffix with `/` (or NUL) is refused, as is an empty suffix without a
/// backup dir (the backup would be the file itself).
pub fn backup_name(rel: &[u8], suffix: &[u8], backup_dir: Option<&[u8]>) -> Result<Vec<u8>, i32> {
    if suffix.contains(&b'/') || suffix.contains(&0) {
        return Err(libc::EINVAL);
    }
    let r = normalize_rel(rel)?;
    if r == b"." {
        return Err(libc::EINVAL);
    }
    let mut out = match backup_dir {
        Some(d) => {
            let d = normalize_rel(d)?;
            if d == b"." {
                if suffix.is_empty() {
                    return Err(libc::EINVAL);
                }
                r
            } else {
                let mut v = d;
                v.push(b'/');
                v.extend_from_slice(&r);
                v
            }
        }
        None if suffix.is_empty() => return Err(libc::EINVAL),
        None => r,
    };
    out.extend_from_slice(suffix);
    Ok(out)
}

impl DestRoot {
    /// Move `rel` to its backup name (for deletions and replacements).
    /// `Ok(false)` when `rel` does not exist. An existing backup is
    /// replaced; across devices the entry is copied and then removed.
    pub fn backup(
        &self,
        rel: &[u8],
        suffix: &[u8],
        backup_dir: Option<&[u8]>,
    ) -> Result<bool, FsError> {
        self.make_backup(rel, suffix, backup_dir, Mode::Rename)
    }

    /// Back up `rel` by hard link, leaving it in place until the new version
    /// is renamed over it (upstream finish_transfer's make_backup(fname,
    /// False)). A regular file that cannot be linked is renamed; other
    /// entries are copied. Directories are not backed up (`Ok(false)`).
    pub fn backup_keep(
        &self,
        rel: &[u8],
        suffix: &[u8],
        backup_dir: Option<&[u8]>,
    ) -> Result<bool, FsError> {
        self.make_backup(rel, suffix, backup_dir, Mode::Link)
    }

    /// Copy the regular file `rel` to its backup name, which is replaced
    /// if it exists (upstream recv_generator's backup before an `--inplace`
    /// update: get_backup_name, robust_unlink, a new file 0600, the data,
    /// then set_file_attrs with the original's attributes, here `attrs`).
    /// Returns the backup's name. A failure to set an attribute after the
    /// data is copied is returned as the second value: the backup is still
    /// there and usable.
    pub fn backup_copy(
        &self,
        rel: &[u8],
        suffix: &[u8],
        backup_dir: Option<&[u8]>,
        attrs: &CopyAttrs,
    ) -> Result<(Vec<u8>, Option<FsError>), FsError> {
        let bak = self.backup_target(rel, suffix, backup_dir)?;
        match self.unlink(&bak) {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        let out = self.copy_data(
            rel,
            &bak,
            || format!("open {} failed", self.show(&bak)),
            || format!("write {} failed", self.show(&bak)),
        )?;
        let shown = self.show(&bak);
        let mut set = None;
        if let Some(names) = &attrs.xattrs {
            set = self.copy_xattrs(rel, &out, names, &shown).err();
        }
        let set = attrs.apply(&out, &shown).err().or(set);
        Ok((bak, set))
    }

    /// Give the open copy `to` the attributes of `rel` that `names` counts.
    fn copy_xattrs(
        &self,
        rel: &[u8],
        to: &File,
        names: &super::xattr::Names,
        shown: &str,
    ) -> Result<(), FsError> {
        use super::xattr::{read, set, Target};
        use std::os::fd::AsRawFd;
        let at = self.resolve(rel, || format!("copy_xattrs {}", self.show(rel)))?;
        let src = Target::At {
            dir: at.dirfd(),
            leaf: &at.leaf,
        };
        let fail = |what: &str, e: std::io::Error| {
            FsError::os(
                format!("copy_xattrs: {what}({shown}) failed"),
                e.raw_os_error().unwrap_or(libc::EIO),
            )
        };
        for (name, value) in
            read(src, |n| names.local_keeps(n)).map_err(|e| fail("llistxattr", e))?
        {
            set(Target::Fd(to.as_raw_fd()), &name, &value).map_err(|e| fail("fsetxattr", e))?;
        }
        Ok(())
    }

    /// The backup name of `rel`, with the missing directories of a backup
    /// dir made (upstream get_backup_name).
    fn backup_target(
        &self,
        rel: &[u8],
        suffix: &[u8],
        backup_dir: Option<&[u8]>,
    ) -> Result<Vec<u8>, FsError> {
        let bak = match backup_name(rel, suffix, backup_dir) {
            Ok(b) => b,
            Err(libc::EINVAL) => {
                return Err(FsError::UnsafePath {
                    what: format!("backup of {} failed", self.show(rel)),
                })
            }
            Err(e) => {
                return Err(FsError::os(
                    format!("backup of {} failed", self.show(rel)),
                    e,
                ))
            }
        };
        if let Some(d) = backup_dir {
            self.make_backup_dirs(rel, d, &bak)?;
        }
        Ok(bak)
    }

    fn make_backup(
        &self,
        rel: &[u8],
        suffix: &[u8],
        backup_dir: Option<&[u8]>,
        mode: Mode,
    ) -> Result<bool, FsError> {
        let Some(st) = self.stat(rel)? else {
            return Ok(false);
        };
        let bak = self.backup_target(rel, suffix, backup_dir)?;
        if st.is_dir() && mode == Mode::Link {
            return Ok(false);
        }
        let mut cleared = false;
        loop {
            let r = match mode {
                Mode::Link => self.hard_link(rel, &bak),
                Mode::Rename => self.rename(rel, &bak),
            };
            let e = match r {
                Ok(()) => {
                    if mode == Mode::Rename && st.nlink > 1 && !st.is_dir() {
                        // rename() between two links of one inode succeeds
                        // without doing anything.
                        match self.unlink(rel) {
                            Err(e) if !e.is_not_found() => return Err(e),
                            _ => {}
                        }
                    }
                    return Ok(true);
                }
                Err(e) => e,
            };
            match e.errno() {
                libc::EEXIST | libc::EISDIR | libc::ENOTEMPTY | libc::ENOTDIR if !cleared => {
                    match self.remove_tree(&bak) {
                        Ok(()) => {}
                        Err(e2) if e2.is_not_found() => return Err(e),
                        Err(e2) => return Err(e2),
                    }
                    cleared = true;
                }
                libc::EXDEV | libc::EPERM | libc::EMLINK | libc::ENOTSUP
                    if mode == Mode::Link && st.is_file() =>
                {
                    // upstream prefers renaming a regular file to copying it.
                    return self.make_backup(rel, suffix, backup_dir, Mode::Rename);
                }
                libc::EXDEV | libc::EPERM | libc::EMLINK | libc::ENOTSUP
                    if !st.is_dir() && (mode == Mode::Link || e.errno() == libc::EXDEV) =>
                {
                    self.copy_entry(rel, &bak, &st)?;
                    if mode == Mode::Rename {
                        self.unlink(rel)?;
                    }
                    return Ok(true);
                }
                _ => return Err(e),
            }
        }
    }

    /// Create the missing directories of `bak` inside the backup dir; those
    /// mirroring directories of `rel` get the source directory's mode.
    fn make_backup_dirs(&self, rel: &[u8], backup_dir: &[u8], bak: &[u8]) -> Result<(), FsError> {
        let bdir_len = split_rel(backup_dir).map(|c| c.len()).unwrap_or(0);
        let comps = split_rel(bak)
            .map_err(|e| FsError::os(format!("backup mkdir {} failed", self.show(bak)), e))?;
        let rel_comps = split_rel(rel).unwrap_or_default();
        for i in 0..comps.len().saturating_sub(1) {
            let prefix = comps[..=i].join(&b'/');
            match self.stat(&prefix)? {
                Some(s) if s.is_dir() => continue,
                Some(_) if i >= bdir_len => {
                    // An old backup of what is now a directory.
                    self.remove_tree(&prefix)?;
                }
                Some(_) => {
                    return Err(FsError::os(
                        format!("backup mkdir {} failed", self.show(&prefix)),
                        libc::ENOTDIR,
                    ))
                }
                None => {}
            }
            match self.mkdir(&prefix, 0o777) {
                Ok(()) => {}
                Err(e) if e.errno() == libc::EEXIST => continue,
                Err(e) => {
                    return Err(FsError::os(
                        format!("backup mkdir {} failed", self.show(&prefix)),
                        e.errno(),
                    ))
                }
            }
            if i >= bdir_len {
                let src =
                    rel_comps[..=(i - bdir_len).min(rel_comps.len().saturating_sub(1))].join(&b'/');
                if let Ok(Some(s)) = self.stat(&src) {
                    if s.is_dir() {
                        // Keep it usable for later backups into it.
                        let _ = self.set_mode(&prefix, s.perms() | 0o700);
                    }
                }
            }
        }
        Ok(())
    }

    /// Copy the data of the regular file `src` into a new file `dst` (0600,
    /// never through a symlink); a failed copy leaves no `dst` behind.
    /// `open_err` / `write_err` name the failing step in errors.
    fn copy_data(
        &self,
        src: &[u8],
        dst: &[u8],
        open_err: impl Fn() -> String,
        write_err: impl Fn() -> String,
    ) -> Result<File, FsError> {
        let mut input = self.open_read(src)?;
        let at = self.resolve_named(dst, &open_err)?;
        let fd = openat(
            at.dirfd(),
            &at.leaf,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        )
        .map_err(|e| FsError::os(open_err(), e))?;
        let mut out = File::from(fd);
        if let Err(e) = io::copy(&mut input, &mut out) {
            drop(out);
            // SAFETY: valid fd and C string.
            let _ = check(unsafe { libc::unlinkat(at.dirfd(), at.leaf.as_ptr(), 0) });
            return Err(FsError::os(
                write_err(),
                e.raw_os_error().unwrap_or(libc::EIO),
            ));
        }
        Ok(out)
    }

    /// Copy one non-directory entry (file content, link target, or device
    /// node) to `dst`, then its permissions, times and (best effort) owner.
    fn copy_entry(&self, src: &[u8], dst: &[u8], st: &Stat) -> Result<(), FsError> {
        let what = || {
            format!(
                "keep_backup failed: {} -> \"{}\"",
                self.show(src),
                crate::protocol::text::name(dst)
            )
        };
        match st.file_type() {
            libc::S_IFREG => {
                self.copy_data(src, dst, what, what)?;
            }
            libc::S_IFLNK => {
                let target = self.read_link(src)?;
                self.symlink(&target, dst)?;
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK => {
                self.mknod(dst, st.mode, st.rdev_major, st.rdev_minor)?;
            }
            _ => return Err(FsError::os(what(), libc::EINVAL)),
        }
        if !st.is_symlink() {
            self.set_mode(dst, st.perms())?;
        }
        match self.set_owner(dst, Some(st.uid), Some(st.gid)) {
            Err(e) if e.errno() != libc::EPERM => return Err(e),
            _ => {}
        }
        self.set_times(
            dst,
            st.mtime,
            st.mtime_nsec,
            Some((st.atime, st.atime_nsec)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::dest::test_support::Scratch;
    use std::os::unix::fs::{symlink, MetadataExt};

    #[test]
    fn backup_name_rules() {
        assert_eq!(backup_name(b"a/b", b"~", None).unwrap(), b"a/b~");
        assert_eq!(
            backup_name(b"./a//b", b"", Some(b"bak/")).unwrap(),
            b"bak/a/b"
        );
        assert_eq!(
            backup_name(b"a", b".old", Some(b"./x")).unwrap(),
            b"x/a.old"
        );
        assert_eq!(backup_name(b"a", b"x/y", None), Err(libc::EINVAL));
        assert_eq!(backup_name(b"a", b"", None), Err(libc::EINVAL));
        assert_eq!(backup_name(b"a", b"", Some(b".")), Err(libc::EINVAL));
        assert_eq!(backup_name(b"../a", b"~", None), Err(libc::EINVAL));
        assert_eq!(backup_name(b"a", b"~", Some(b"../bak")), Err(libc::EINVAL));
        assert_eq!(backup_name(b".", b"~", None), Err(libc::EINVAL));
    }

    #[test]
    fn backup_with_suffix() {
        let s = Scratch::new("baksuffix");
        let d = DestRoot::open(&s.root).unwrap();
        std::fs::create_dir(s.r("sub")).unwrap();
        std::fs::write(s.r("sub/f"), b"v1").unwrap();
        assert!(d.backup(b"sub/f", b"~", None).unwrap());
        assert!(!s.r("sub/f").exists());
        assert_eq!(std::fs::read(s.r("sub/f~")).unwrap(), b"v1");
        // A second backup replaces the first (even a directory in the way).
        std::fs::write(s.r("sub/f"), b"v2").unwrap();
        assert!(d.backup(b"sub/f", b"~", None).unwrap());
        assert_eq!(std::fs::read(s.r("sub/f~")).unwrap(), b"v2");
        std::fs::write(s.r("sub/g"), b"g").unwrap();
        std::fs::create_dir_all(s.r("sub/g~/inner")).unwrap();
        assert!(d.backup(b"sub/g", b"~", None).unwrap());
        assert_eq!(std::fs::read(s.r("sub/g~")).unwrap(), b"g");
        // Nothing to back up.
        assert!(!d.backup(b"sub/none", b"~", None).unwrap());
        // Keep mode: the original stays, the backup is the same inode.
        std::fs::write(s.r("sub/k"), b"k").unwrap();
        assert!(d.backup_keep(b"sub/k", b".bak", None).unwrap());
        let a = std::fs::metadata(s.r("sub/k")).unwrap();
        let b = std::fs::metadata(s.r("sub/k.bak")).unwrap();
        assert_eq!(a.ino(), b.ino());
        // Renaming onto another link of the same inode still moves it.
        assert!(d.backup(b"sub/k", b".bak", None).unwrap());
        assert!(!s.r("sub/k").exists());
        // Symlinks are backed up as links, never followed.
        symlink(s.outside.join("secret"), s.r("sub/l")).unwrap();
        let before = s.outside_snapshot();
        assert!(d.backup_keep(b"sub/l", b"~", None).unwrap());
        assert!(std::fs::symlink_metadata(s.r("sub/l~"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(d.backup(b"sub/l", b"~", None).unwrap());
        assert_eq!(before, s.outside_snapshot());
    }

    #[test]
    fn backup_into_backup_dir_creates_dirs() {
        let s = Scratch::new("bakdir");
        let d = DestRoot::open(&s.root).unwrap();
        std::fs::create_dir_all(s.r("a/b")).unwrap();
        std::fs::set_permissions(
            s.r("a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o751),
        )
        .unwrap();
        std::fs::write(s.r("a/b/f"), b"data").unwrap();
        assert!(d.backup(b"a/b/f", b"", Some(b"bak/day1")).unwrap());
        assert_eq!(std::fs::read(s.r("bak/day1/a/b/f")).unwrap(), b"data");
        assert!(!s.r("a/b/f").exists());
        assert_eq!(
            std::fs::metadata(s.r("bak/day1/a")).unwrap().mode() & 0o7777,
            0o751
        );
        // With a suffix, and replacing an old backup file where a dir is needed.
        std::fs::write(s.r("bak/day1/x"), b"old backup of a file named x").unwrap();
        std::fs::create_dir(s.r("x")).unwrap();
        std::fs::write(s.r("x/y"), b"y").unwrap();
        assert!(d.backup_keep(b"x/y", b".1", Some(b"bak/day1")).unwrap());
        assert_eq!(std::fs::read(s.r("bak/day1/x/y.1")).unwrap(), b"y");
        assert!(s.r("x/y").exists());
        // A backup dir that is a symlink to outside is refused.
        symlink(&s.outside, s.r("evil")).unwrap();
        let before = s.outside_snapshot();
        assert!(d.backup(b"x/y", b"", Some(b"evil")).is_err());
        assert!(d.backup(b"x/y", b"", Some(b"evil/deeper")).is_err());
        assert!(d
            .backup(b"x/y", b"~", Some(b"../outside"))
            .unwrap_err()
            .is_unsafe_path());
        assert_eq!(before, s.outside_snapshot());
        assert!(s.r("x/y").exists());
    }

    #[test]
    fn backup_copy_leaves_the_original_and_takes_its_attributes() {
        let s = Scratch::new("bakcopyinplace");
        let d = DestRoot::open(&s.root).unwrap();
        std::fs::create_dir_all(s.r("a/b")).unwrap();
        std::fs::write(s.r("a/b/f"), b"old content").unwrap();
        let orig = d.stat(b"a/b/f").unwrap().unwrap();
        // An old backup is replaced.
        std::fs::write(s.r("a/b/f~"), b"older backup").unwrap();
        let attrs = CopyAttrs {
            xattrs: None,
            mode: 0o640,
            mtime: Some((1_000_000_000, 5)),
            uid: None,
            gid: None,
        };
        let (bak, err) = d.backup_copy(b"a/b/f", b"~", None, &attrs).unwrap();
        assert!(err.is_none());
        assert_eq!(bak, b"a/b/f~");
        assert_eq!(std::fs::read(s.r("a/b/f~")).unwrap(), b"old content");
        let st = d.stat(b"a/b/f~").unwrap().unwrap();
        assert_eq!(
            (st.perms(), st.mtime, st.mtime_nsec),
            (0o640, 1_000_000_000, 5)
        );
        // The original stays where it is, untouched (another inode).
        let now = d.stat(b"a/b/f").unwrap().unwrap();
        assert_eq!((now.ino, now.mtime), (orig.ino, orig.mtime));
        assert_ne!(st.ino, orig.ino);
        // Into a backup dir, whose directories are made; no time asked for.
        let attrs = CopyAttrs {
            xattrs: None,
            mode: 0o604,
            ..CopyAttrs::default()
        };
        let (bak, _) = d
            .backup_copy(b"a/b/f", b".old", Some(b"bak"), &attrs)
            .unwrap();
        assert_eq!(bak, b"bak/a/b/f.old");
        assert_eq!(std::fs::read(s.r("bak/a/b/f.old")).unwrap(), b"old content");
        assert_eq!(d.stat(b"bak/a/b/f.old").unwrap().unwrap().perms(), 0o604);
        // A directory where the backup goes is an error, as is a missing file.
        std::fs::create_dir(s.r("dir~")).unwrap();
        std::fs::write(s.r("dir"), b"x").unwrap();
        assert!(d.backup_copy(b"dir", b"~", None, &attrs).is_err());
        assert!(d.backup_copy(b"none", b"~", None, &attrs).is_err());
        // A symlinked backup dir leading outside is refused.
        symlink(&s.outside, s.r("evil")).unwrap();
        let before = s.outside_snapshot();
        assert!(d.backup_copy(b"a/b/f", b"", Some(b"evil"), &attrs).is_err());
        assert_eq!(before, s.outside_snapshot());
    }

    #[test]
    fn copy_fallback_keeps_content_and_attributes() {
        let s = Scratch::new("bakcopy");
        let d = DestRoot::open(&s.root).unwrap();
        std::fs::write(s.r("f"), b"content").unwrap();
        d.set_mode(b"f", 0o640).unwrap();
        d.set_times(b"f", 1_000_000_000, 42, Some((1_000_000_000, 7)))
            .unwrap();
        symlink("f", s.r("l")).unwrap();
        d.set_times(b"l", 1_100_000_000, 9, None).unwrap();
        d.mknod(b"p", libc::S_IFIFO | 0o604, 0, 0).unwrap();
        for (src, dst) in [(&b"f"[..], &b"f.c"[..]), (b"l", b"l.c"), (b"p", b"p.c")] {
            let st = d.stat(src).unwrap().unwrap();
            d.copy_entry(src, dst, &st).unwrap();
            let c = d.stat(dst).unwrap().unwrap();
            assert_eq!(
                (c.mode, c.mtime, c.mtime_nsec, c.size),
                (st.mode, st.mtime, st.mtime_nsec, st.size)
            );
        }
        assert_eq!(std::fs::read(s.r("f.c")).unwrap(), b"content");
        assert_eq!(d.read_link(b"l.c").unwrap(), b"f");
        // An existing destination is not overwritten.
        let st = d.stat(b"f").unwrap().unwrap();
        assert_eq!(
            d.copy_entry(b"f", b"p.c", &st).unwrap_err().errno(),
            libc::EEXIST
        );
        // Directories are not backed up by link.
        std::fs::create_dir(s.r("dir")).unwrap();
        assert!(!d.backup_keep(b"dir", b"~", None).unwrap());
    }
}
