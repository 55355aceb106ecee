//! Walking the source tree into a file list (upstream: flist.c
//! send_file_list, send_directory, make_file, send_implied_dirs).
//!
//! Arguments are interpreted as stock rsync does: `dir/` sends `.` plus the
//! contents of `dir`, `dir` sends the entry `dir` plus its contents, and with
//! `--relative` the path (after an optional `/./` anchor) is kept, with its
//! leading directories sent as implied directories.

use super::sort::f_name_cmp;
use crate::protocol::flist::{mode, FileEntry, HardLink};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Decides which names are left out of the list (filters, daemon excludes).
pub trait Excluder {
    /// Is `path` (relative to the transfer root) excluded?
    fn excluded(&mut self, path: &[u8], is_dir: bool) -> bool;
    /// Called before the contents of `dir` (transfer-root relative) are listed;
    /// `local` is where it lives on disk (for per-directory merge files).
    fn enter_dir(&mut self, _dir: &[u8], _local: &Path) {}
    /// Called after the contents of a directory were listed.
    fn leave_dir(&mut self) {}
}

/// An excluder that keeps everything.
pub struct NoFilter;
impl Excluder for NoFilter {
    fn excluded(&mut self, _: &[u8], _: bool) -> bool {
        false
    }
}

/// What the walk needs to know from the options.
#[derive(Debug, Clone, Default)]
pub struct BuildOpts {
    /// Protocol version (sort order, hard-link form).
    pub proto: u8,
    /// -r
    pub recursive: bool,
    /// -d (or implied by -r)
    pub xfer_dirs: bool,
    /// -R
    pub relative: bool,
    /// --no-implied-dirs not given
    pub implied_dirs: bool,
    /// -l
    pub preserve_links: bool,
    /// -H
    pub preserve_hard_links: bool,
    /// --devices
    pub preserve_devices: bool,
    /// --specials
    pub preserve_specials: bool,
    /// -L
    pub copy_links: bool,
    /// -k
    pub copy_dirlinks: bool,
    /// --copy-unsafe-links
    pub copy_unsafe_links: bool,
    /// --safe-links
    pub safe_links: bool,
    /// -x count
    pub one_file_system: u8,
    /// -o
    pub preserve_uid: bool,
    /// -g
    pub preserve_gid: bool,
    /// Never follow a symlink to a target outside this directory (daemon module root).
    pub confine_to: Option<PathBuf>,
}

/// A listed file: its wire entry plus where it lives locally.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// The entry as sent.
    pub entry: FileEntry,
    /// Absolute or cwd-relative local path.
    pub path: PathBuf,
    dev: u64,
    ino: u64,
    nlink: u64,
}

/// A built, sorted file list.
#[derive(Debug, Default)]
pub struct FileList {
    /// Entries in sorted (= wire index) order.
    pub files: Vec<LocalFile>,
    /// Non-fatal problems, already formatted as rsync prints them.
    pub errors: Vec<String>,
    /// IOERR_* bits.
    pub io_error: i32,
    /// uid -> name for the id list.
    pub uid_names: Vec<(u32, Vec<u8>)>,
    /// gid -> name for the id list.
    pub gid_names: Vec<(u32, Vec<u8>)>,
}

/// IOERR_GENERAL.
pub const IOERR_GENERAL: i32 = 1;
/// IOERR_VANISHED.
pub const IOERR_VANISHED: i32 = 2;

struct Walker<'a> {
    o: &'a BuildOpts,
    ex: &'a mut dyn Excluder,
    out: FileList,
    root_dev: u64,
}

fn os(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() || a == b"." {
        return b.to_vec();
    }
    let mut v = a.to_vec();
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

/// Remove `.` components, duplicate slashes and a trailing slash (upstream clean_fname, partly).
fn clean(path: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> = path.split(|&c| c == b'/').filter(|p| !p.is_empty() && *p != b".").collect();
    let mut v = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            v.push(b'/');
        }
        v.extend_from_slice(p);
    }
    v
}

impl Walker<'_> {
    fn err(&mut self, msg: String) {
        self.out.errors.push(msg);
        self.out.io_error |= IOERR_GENERAL;
    }

    fn inside_confinement(&self, local: &Path) -> bool {
        match &self.o.confine_to {
            None => true,
            Some(root) => match std::fs::canonicalize(local) {
                Ok(real) => real.starts_with(root),
                Err(_) => false,
            },
        }
    }

    /// lstat or stat as the options ask.
    fn stat(&mut self, local: &Path, name: &[u8], follow_top: bool) -> Option<std::fs::Metadata> {
        let lmd = match std::fs::symlink_metadata(local) {
            Ok(m) => m,
            Err(e) => {
                let code = e.raw_os_error().unwrap_or(0);
                if e.kind() == std::io::ErrorKind::NotFound {
                    self.out.io_error |= IOERR_VANISHED;
                    self.out.errors.push(format!(
                        "file has vanished: \"{}\"",
                        String::from_utf8_lossy(name)
                    ));
                } else {
                    self.err(format!("rsync: [sender] link_stat \"{}\" failed: {} ({code})", String::from_utf8_lossy(name), strip_os(&e)));
                }
                return None;
            }
        };
        if !lmd.file_type().is_symlink() {
            return Some(lmd);
        }
        let follow = follow_top || self.o.copy_links || self.o.copy_dirlinks || self.o.copy_unsafe_links;
        if !follow {
            return Some(lmd);
        }
        let md = match std::fs::metadata(local) {
            Ok(m) => m,
            Err(_) => {
                if self.o.copy_links {
                    self.err(format!("symlink has no referent: \"{}\"", String::from_utf8_lossy(name)));
                    return None;
                }
                return Some(lmd);
            }
        };
        let want = if self.o.copy_links || follow_top {
            true
        } else if self.o.copy_dirlinks && md.is_dir() {
            true
        } else if self.o.copy_unsafe_links {
            let target = std::fs::read_link(local).ok();
            target.map(|t| unsafe_symlink(t.as_os_str().as_bytes(), name)).unwrap_or(false)
        } else {
            false
        };
        if !want {
            return Some(lmd);
        }
        if !self.inside_confinement(local) {
            self.err(format!(
                "rsync: [sender] symlink \"{}\" points outside the module: not followed",
                String::from_utf8_lossy(name)
            ));
            return None;
        }
        Some(md)
    }

    /// make_file + send_file_name: add one entry (returns true when it is a dir to descend into).
    fn add(&mut self, local: &Path, name: Vec<u8>, md: &std::fs::Metadata, top: bool) -> bool {
        let m = md.mode();
        let ft = md.file_type();
        let mut e = FileEntry { name, mode: m, mtime: md.mtime(), mtime_nsec: md.mtime_nsec() as u32, uid: md.uid(), gid: md.gid(), ..Default::default() };
        if ft.is_symlink() {
            if !self.o.preserve_links {
                self.out.errors.push(format!("skipping non-regular file \"{}\"", String::from_utf8_lossy(&e.name)));
                return false;
            }
            match std::fs::read_link(local) {
                Ok(t) => {
                    let t = t.as_os_str().as_bytes().to_vec();
                    if self.o.safe_links && unsafe_symlink(&t, &e.name) {
                        self.out.errors.push(format!("ignoring unsafe symlink \"{}\" -> \"{}\"", String::from_utf8_lossy(&e.name), String::from_utf8_lossy(&t)));
                        return false;
                    }
                    e.size = t.len() as i64;
                    e.link_target = Some(t);
                }
                Err(err) => {
                    self.err(format!("rsync: [sender] readlink \"{}\" failed: {}", String::from_utf8_lossy(&e.name), strip_os(&err)));
                    return false;
                }
            }
        } else if mode::is_device(m) {
            if !self.o.preserve_devices {
                self.out.errors.push(format!("skipping non-regular file \"{}\"", String::from_utf8_lossy(&e.name)));
                return false;
            }
            let rdev = md.rdev();
            e.rdev_major = nix::sys::stat::major(rdev) as u32;
            e.rdev_minor = nix::sys::stat::minor(rdev) as u32;
        } else if mode::is_special(m) {
            if !self.o.preserve_specials {
                self.out.errors.push(format!("skipping non-regular file \"{}\"", String::from_utf8_lossy(&e.name)));
                return false;
            }
        } else if ft.is_dir() {
            e.size = md.size() as i64;
            e.top_dir = top;
        } else if ft.is_file() {
            e.size = md.size() as i64;
        } else {
            return false;
        }
        let is_dir = ft.is_dir();
        self.out.files.push(LocalFile { entry: e, path: local.to_path_buf(), dev: md.dev(), ino: md.ino(), nlink: md.nlink() });
        is_dir
    }

    /// send_directory: list the contents of a directory, depth first.
    fn descend(&mut self, local: &Path, name: &[u8], dev: u64) {
        if self.o.one_file_system > 0 && dev != self.root_dev {
            return;
        }
        self.ex.enter_dir(name, local);
        let rd = match std::fs::read_dir(local) {
            Ok(rd) => rd,
            Err(e) => {
                let shown = if name == b"." { "." } else { &String::from_utf8_lossy(name) };
                self.err(format!("rsync: [sender] opendir \"{shown}\" failed: {} ({})", strip_os(&e), e.raw_os_error().unwrap_or(0)));
                self.ex.leave_dir();
                return;
            }
        };
        let mut names: Vec<Vec<u8>> = rd.filter_map(|d| d.ok()).map(|d| d.file_name().as_bytes().to_vec()).collect();
        names.sort();
        let mut subdirs = Vec::new();
        for n in names {
            let child_name = join(name, &n);
            let child_local = local.join(OsStr::from_bytes(&n));
            let Some(md) = self.stat(&child_local, &child_name, false) else { continue };
            if self.ex.excluded(&child_name, md.is_dir()) {
                continue;
            }
            if md.is_dir() && !self.o.recursive {
                continue;
            }
            if md.is_dir() && self.o.one_file_system > 1 && md.dev() != self.root_dev {
                continue;
            }
            if self.add(&child_local, child_name.clone(), &md, false) && self.o.recursive {
                subdirs.push((child_local, child_name, md.dev()));
            }
        }
        for (l, n, d) in subdirs {
            self.descend(&l, &n, d);
        }
        self.ex.leave_dir();
    }

    fn implied_dirs(&mut self, base: &Path, path: &[u8]) {
        let mut prefix: Vec<u8> = Vec::new();
        let comps: Vec<&[u8]> = path.split(|&c| c == b'/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            prefix = join(&prefix, c);
            if self.out.files.iter().any(|f| f.entry.name == prefix) {
                continue;
            }
            let local = base.join(os(&prefix));
            if let Ok(md) = std::fs::metadata(&local) {
                if md.is_dir() {
                    let before = self.out.files.len();
                    self.add(&local, prefix.clone(), &md, false);
                    if let Some(f) = self.out.files.get_mut(before) {
                        f.entry.implied_dir = self.o.proto >= 30;
                    }
                }
            }
        }
    }

    fn arg(&mut self, root: &Path, arg: &[u8]) {
        let (dir, fname): (Vec<u8>, Vec<u8>) = if self.o.relative {
            match find_sub(arg, b"/./") {
                Some(p) => (arg[..p].to_vec(), clean(&arg[p + 3..])),
                None => (Vec::new(), clean(arg)),
            }
        } else {
            let mut a = arg.to_vec();
            if a.is_empty() || a.ends_with(b"/") {
                if a == b"./" {
                    a.truncate(1);
                } else {
                    a.push(b'.');
                }
            } else if a == b".." || a.ends_with(b"/..") {
                a.extend_from_slice(b"/.");
            }
            match a.iter().rposition(|&c| c == b'/') {
                Some(p) => (a[..p].to_vec(), a[p + 1..].to_vec()),
                None => (Vec::new(), a),
            }
        };
        let fname = if fname.is_empty() { b".".to_vec() } else { fname };
        let is_dotdir = fname == b"." || fname.ends_with(b"/.");
        let base = if dir.is_empty() { root.to_path_buf() } else { root.join(os(&dir)) };
        let local = base.join(os(&fname));
        let Some(md) = self.stat(&local, &fname, is_dotdir || self.o.copy_dirlinks) else { return };
        if !is_dotdir && self.ex.excluded(&fname, md.is_dir()) {
            return;
        }
        if md.is_dir() && !self.o.xfer_dirs {
            self.out.errors.push(format!("skipping directory {}", String::from_utf8_lossy(&fname)));
            return;
        }
        if self.o.relative && self.o.implied_dirs {
            self.implied_dirs(&base, &fname);
        }
        self.root_dev = md.dev();
        let descend = self.o.recursive || (self.o.xfer_dirs && is_dotdir);
        let is_dir = self.add(&local, fname.clone(), &md, descend || md.is_dir());
        if is_dir && descend {
            if let Some(f) = self.out.files.last_mut() {
                f.entry.top_dir = true;
            }
            self.descend(&local, &fname, md.dev());
        } else if is_dir {
            if let Some(f) = self.out.files.last_mut() {
                f.entry.top_dir = false;
                f.entry.no_content_dir = true;
            }
        }
    }
}

fn find_sub(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Is a symlink target "unsafe" (upstream util1.c unsafe_symlink): absolute, or climbing above the transfer root.
pub fn unsafe_symlink(target: &[u8], link_name: &[u8]) -> bool {
    if target.is_empty() || target[0] == b'/' {
        return true;
    }
    let mut depth: i64 = link_name.iter().filter(|&&c| c == b'/').count() as i64;
    for c in target.split(|&c| c == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

fn strip_os(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}

fn user_name(uid: u32) -> Option<Vec<u8>> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name.into_bytes())
}

fn group_name(gid: u32) -> Option<Vec<u8>> {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)).ok().flatten().map(|g| g.name.into_bytes())
}

/// Build the sorted file list for `args` under `root` (send_file_list).
pub fn build_file_list(root: &Path, args: &[Vec<u8>], opts: &BuildOpts, ex: &mut dyn Excluder, numeric_ids: bool) -> FileList {
    let mut w = Walker { o: opts, ex, out: FileList::default(), root_dev: 0 };
    for a in args {
        w.arg(root, a);
    }
    let mut out = w.out;
    let proto = opts.proto;
    out.files.sort_by(|a, b| f_name_cmp(&a.entry.name, mode::is_dir(a.entry.mode), &b.entry.name, mode::is_dir(b.entry.mode), proto));
    // Drop exact duplicates (overlapping arguments), keeping the first.
    out.files.dedup_by(|b, a| a.entry.name == b.entry.name && mode::is_dir(a.entry.mode) == mode::is_dir(b.entry.mode));
    if opts.preserve_hard_links {
        let mut leaders: HashMap<(u64, u64), i32> = HashMap::new();
        for (i, f) in out.files.iter_mut().enumerate() {
            if mode::is_dir(f.entry.mode) || f.nlink <= 1 {
                if proto < 28 && mode::is_reg(f.entry.mode) {
                    f.entry.hard_link = Some(HardLink::DevIno { dev: f.dev as i64, ino: f.ino as i64 });
                }
                continue;
            }
            if proto < 30 {
                f.entry.hard_link = Some(HardLink::DevIno { dev: f.dev as i64, ino: f.ino as i64 });
            } else if let Some(&first) = leaders.get(&(f.dev, f.ino)) {
                f.entry.hard_link = Some(HardLink::Follower { first });
            } else {
                leaders.insert((f.dev, f.ino), i as i32);
                f.entry.hard_link = Some(HardLink::First);
            }
        }
    }
    if !numeric_ids {
        let mut seen_u = std::collections::HashSet::new();
        let mut seen_g = std::collections::HashSet::new();
        for f in &out.files {
            if opts.preserve_uid && f.entry.uid != 0 && seen_u.insert(f.entry.uid) {
                if let Some(n) = user_name(f.entry.uid) {
                    out.uid_names.push((f.entry.uid, n));
                }
            }
            if opts.preserve_gid && f.entry.gid != 0 && seen_g.insert(f.entry.gid) {
                if let Some(n) = group_name(f.entry.gid) {
                    out.gid_names.push((f.entry.gid, n));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_symlinks() {
        assert!(unsafe_symlink(b"/etc/passwd", b"a"));
        assert!(unsafe_symlink(b"../x", b"a"));
        assert!(!unsafe_symlink(b"../x", b"d/a"));
        assert!(unsafe_symlink(b"../../x", b"d/a"));
        assert!(!unsafe_symlink(b"x/../y", b"a"));
    }

    #[test]
    fn trailing_slash_sends_dot_and_contents() {
        let d = std::env::temp_dir().join(format!("rrsync-flist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("src/sub")).unwrap();
        std::fs::write(d.join("src/f"), b"x").unwrap();
        std::fs::write(d.join("src/sub/g"), b"y").unwrap();
        let o = BuildOpts { proto: 31, recursive: true, xfer_dirs: true, ..Default::default() };
        let names = |fl: &FileList| fl.files.iter().map(|f| String::from_utf8_lossy(&f.entry.name).into_owned()).collect::<Vec<_>>();
        let fl = build_file_list(&d, &[b"src/".to_vec()], &o, &mut NoFilter, true);
        assert_eq!(names(&fl), [".", "f", "sub", "sub/g"]);
        assert!(fl.files[0].entry.top_dir);
        let fl = build_file_list(&d, &[b"src".to_vec()], &o, &mut NoFilter, true);
        assert_eq!(names(&fl), ["src", "src/f", "src/sub", "src/sub/g"]);
        let o = BuildOpts { relative: true, implied_dirs: true, ..o };
        let fl = build_file_list(&d, &[b"src/sub/g".to_vec()], &o, &mut NoFilter, true);
        assert_eq!(names(&fl), ["src", "src/sub", "src/sub/g"]);
        assert!(fl.files[0].entry.implied_dir);
        let fl = build_file_list(&d, &[b"src/./sub".to_vec()], &o, &mut NoFilter, true);
        assert_eq!(names(&fl), ["sub", "sub/g"]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
