//! Tree snapshots and their comparison: relative path -> type, mode, mtime
//! (with nanoseconds), owner, content (bytes when small, else length + hash),
//! symlink target, device numbers, extended attributes (`user.` and
//! `trusted.`); plus hard-link groups as sets of paths.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Files up to this size are kept whole (diffs then show the first
/// differing byte); larger ones as length + xxh3-128.
pub const SMALL_FILE: u64 = 4096;

/// File type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDev,
    BlockDev,
    Socket,
}

/// What an entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Directories, fifos, sockets, devices.
    None,
    /// A small regular file, whole.
    Bytes(Vec<u8>),
    /// A large regular file: length and xxh3-128 of its bytes.
    Hash { len: u64, xxh128: u128 },
    /// A symlink's target, verbatim.
    Target(OsString),
}

/// One path's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Full `st_mode` (type bits + permission/setid/sticky bits).
    pub mode: u32,
    /// mtime seconds and nanoseconds.
    pub mtime: (i64, i64),
    pub uid: u32,
    pub gid: u32,
    /// `st_rdev` for character and block devices.
    pub rdev: Option<u64>,
    pub content: Content,
    /// `user.` and `trusted.` attributes, by name (read with llistxattr
    /// and lgetxattr directly, not through the crate under test).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A snapshot of a directory tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    /// False if the root did not exist (e.g. a pull that failed early).
    pub exists: bool,
    /// Relative path ("" is the root itself) -> entry.
    pub entries: BTreeMap<PathBuf, Entry>,
    /// Each group: sorted paths (>= 2) of non-directories sharing an inode.
    pub hardlink_groups: BTreeSet<Vec<PathBuf>>,
}

/// Stand-in mtime for "set by the run itself" (see `Tree::mark_fresh`).
pub const FRESH_MTIME: (i64, i64) = (i64::MIN, 0);

impl Tree {
    /// Replaces every mtime within `[from, to]` (Unix seconds) by
    /// [`FRESH_MTIME`]: times a run did not preserve but took from the clock
    /// differ between two runs without meaning anything. Fixtures pin all
    /// their times far from "now", so a preserved time is never fresh.
    pub fn mark_fresh(&mut self, from: i64, to: i64) {
        for e in self.entries.values_mut() {
            if e.mtime.0 >= from && e.mtime.0 <= to {
                e.mtime = FRESH_MTIME;
            }
        }
    }
}

/// What to leave out of a snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapOptions {
    /// Drop the root directory's own entry (its mode/mtime/owner).
    pub ignore_root: bool,
}

/// Snapshots `root` (not following symlinks, root included).
pub fn snapshot(root: &Path) -> Tree {
    snapshot_with(root, SnapOptions::default())
}

/// Snapshots `root` with options.
pub fn snapshot_with(root: &Path, opts: SnapOptions) -> Tree {
    let mut tree = Tree::default();
    let Ok(meta) = std::fs::symlink_metadata(root) else {
        return tree;
    };
    tree.exists = true;
    let mut inodes: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
    let mut stack = vec![(PathBuf::new(), meta)];
    while let Some((rel, meta)) = stack.pop() {
        let abs = if rel.as_os_str().is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let entry = entry_of(&abs, &meta);
        if entry.kind != Kind::Dir && meta.nlink() > 1 {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
        if entry.kind == Kind::Dir {
            let rd = std::fs::read_dir(&abs)
                .unwrap_or_else(|e| panic!("snapshot: read_dir {}: {e}", abs.display()));
            for child in rd {
                let child = child.unwrap_or_else(|e| panic!("snapshot: {}: {e}", abs.display()));
                let cmeta = child
                    .metadata()
                    .unwrap_or_else(|e| panic!("snapshot: lstat {}: {e}", child.path().display()));
                stack.push((rel.join(child.file_name()), cmeta));
            }
        }
        if !(opts.ignore_root && rel.as_os_str().is_empty()) {
            tree.entries.insert(rel, entry);
        }
    }
    for (_, mut paths) in inodes {
        if paths.len() >= 2 {
            paths.sort();
            tree.hardlink_groups.insert(paths);
        }
    }
    tree
}

fn entry_of(abs: &Path, meta: &std::fs::Metadata) -> Entry {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::CharDev
    } else if ft.is_block_device() {
        Kind::BlockDev
    } else {
        Kind::Socket
    };
    let content = match kind {
        Kind::File => file_content(abs, meta.len()),
        Kind::Symlink => Content::Target(
            std::fs::read_link(abs)
                .unwrap_or_else(|e| panic!("snapshot: readlink {}: {e}", abs.display()))
                .into_os_string(),
        ),
        _ => Content::None,
    };
    Entry {
        kind,
        mode: meta.mode(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: matches!(kind, Kind::CharDev | Kind::BlockDev).then(|| meta.rdev()),
        content,
        xattrs: xattrs_of(abs),
    }
}

/// The entry's `user.` and `trusted.` attributes, sorted.
pub fn xattrs_of(abs: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    use nix::libc;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(abs.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: valid C string and buffer.
    let n = unsafe {
        libc::llistxattr(
            c.as_ptr(),
            names.as_mut_ptr() as *mut libc::c_char,
            names.len(),
        )
    };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !(name.starts_with(b"user.") || name.starts_with(b"trusted.")) {
            continue;
        }
        let Ok(cn) = std::ffi::CString::new(name) else {
            continue;
        };
        let mut v = vec![0u8; 64 * 1024];
        // SAFETY: valid C strings and buffer.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cn.as_ptr(),
                v.as_mut_ptr() as *mut libc::c_void,
                v.len(),
            )
        };
        if len >= 0 {
            v.truncate(len as usize);
            out.push((name.to_vec(), v));
        }
    }
    out.sort();
    out
}

fn file_content(abs: &Path, len: u64) -> Content {
    let mut f = std::fs::File::open(abs)
        .unwrap_or_else(|e| panic!("snapshot: open {}: {e}", abs.display()));
    if len <= SMALL_FILE {
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .unwrap_or_else(|e| panic!("snapshot: read {}: {e}", abs.display()));
        return Content::Bytes(buf);
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("snapshot: read {}: {e}", abs.display()));
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Content::Hash {
        len: total,
        xxh128: hasher.digest128(),
    }
}

fn show_path(p: &Path) -> String {
    if p.as_os_str().is_empty() {
        ".".to_string()
    } else {
        p.display().to_string()
    }
}

fn show_mtime(t: (i64, i64)) -> String {
    if t == FRESH_MTIME {
        "(fresh: set during the run)".into()
    } else {
        format!("{}.{:09}", t.0, t.1)
    }
}

fn show_content(c: &Content) -> String {
    match c {
        Content::None => "-".into(),
        Content::Bytes(b) => format!("{} bytes (small)", b.len()),
        Content::Hash { len, xxh128 } => format!("{len} bytes xxh128={xxh128:032x}"),
        Content::Target(t) => format!("-> {}", t.to_string_lossy()),
    }
}

fn content_diff(a: &Content, b: &Content) -> String {
    if let (Content::Bytes(x), Content::Bytes(y)) = (a, b) {
        let at = x
            .iter()
            .zip(y.iter())
            .position(|(p, q)| p != q)
            .unwrap_or(x.len().min(y.len()));
        return format!(
            "content: {} vs {} bytes, first difference at offset {at}",
            x.len(),
            y.len()
        );
    }
    format!("content: {} vs {}", show_content(a), show_content(b))
}

/// Human-readable differences between `a` and `b` (empty = same).
pub fn diff(a_label: &str, a: &Tree, b_label: &str, b: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    if a.exists != b.exists {
        out.push(format!(
            "root exists: {a_label}={} {b_label}={}",
            a.exists, b.exists
        ));
    }
    for (p, ea) in &a.entries {
        let Some(eb) = b.entries.get(p) else {
            out.push(format!(
                "only in {a_label}: {} ({:?})",
                show_path(p),
                ea.kind
            ));
            continue;
        };
        let mut d = Vec::new();
        if ea.kind != eb.kind {
            d.push(format!("type {:?} vs {:?}", ea.kind, eb.kind));
        }
        if ea.mode != eb.mode {
            d.push(format!("mode {:o} vs {:o}", ea.mode, eb.mode));
        }
        if ea.mtime != eb.mtime {
            d.push(format!(
                "mtime {} vs {}",
                show_mtime(ea.mtime),
                show_mtime(eb.mtime)
            ));
        }
        if (ea.uid, ea.gid) != (eb.uid, eb.gid) {
            d.push(format!(
                "owner {}:{} vs {}:{}",
                ea.uid, ea.gid, eb.uid, eb.gid
            ));
        }
        if ea.rdev != eb.rdev {
            d.push(format!("rdev {:?} vs {:?}", ea.rdev, eb.rdev));
        }
        if ea.content != eb.content {
            d.push(content_diff(&ea.content, &eb.content));
        }
        if ea.xattrs != eb.xattrs {
            let show = |x: &[(Vec<u8>, Vec<u8>)]| {
                x.iter()
                    .map(|(n, v)| format!("{}={}b", String::from_utf8_lossy(n), v.len()))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            d.push(format!(
                "xattrs [{}] vs [{}]",
                show(&ea.xattrs),
                show(&eb.xattrs)
            ));
        }
        if !d.is_empty() {
            out.push(format!("{}: {}", show_path(p), d.join("; ")));
        }
    }
    for (p, eb) in &b.entries {
        if !a.entries.contains_key(p) {
            out.push(format!(
                "only in {b_label}: {} ({:?})",
                show_path(p),
                eb.kind
            ));
        }
    }
    for g in a.hardlink_groups.difference(&b.hardlink_groups) {
        out.push(format!("hard-link group only in {a_label}: {g:?}"));
    }
    for g in b.hardlink_groups.difference(&a.hardlink_groups) {
        out.push(format!("hard-link group only in {b_label}: {g:?}"));
    }
    out
}

/// Formats the first `max` differences (and how many more there are).
pub fn format_diff(diffs: &[String], max: usize) -> String {
    let mut s = String::new();
    for d in diffs.iter().take(max) {
        let _ = writeln!(s, "  {d}");
    }
    if diffs.len() > max {
        let _ = writeln!(s, "  ... and {} more", diffs.len() - max);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::tmp::TempDir;

    #[test]
    fn harness_tree_diff_sees_mode_mtime_content_and_links() {
        let t = TempDir::new("tree-selftest");
        for side in ["a", "b"] {
            let r = t.join(side);
            std::fs::create_dir_all(r.join("d")).unwrap();
            std::fs::write(r.join("d/f"), b"hello").unwrap();
            std::fs::hard_link(r.join("d/f"), r.join("g")).unwrap();
            std::os::unix::fs::symlink("d/f", r.join("l")).unwrap();
        }
        assert!(!snapshot(&t.join("missing")).exists);
        let a = snapshot_with(&t.join("a"), SnapOptions { ignore_root: true });
        let b = snapshot_with(&t.join("b"), SnapOptions { ignore_root: true });
        assert_eq!(a.hardlink_groups.len(), 1);
        // The two trees were made at different instants: pin mtimes.
        let mut b2 = b.clone();
        for (p, e) in b2.entries.iter_mut() {
            e.mtime = a.entries[p].mtime;
        }
        assert!(diff("a", &a, "b", &b2).is_empty());
        std::fs::write(t.join("b/d/f"), b"hellO").unwrap();
        std::fs::remove_file(t.join("b/g")).unwrap();
        let b3 = snapshot_with(&t.join("b"), SnapOptions { ignore_root: true });
        let d = diff("a", &a, "b", &b3);
        assert!(
            d.iter().any(|l| l.contains("first difference at offset 4")),
            "{d:?}"
        );
        assert!(d.iter().any(|l| l.contains("only in a: g")), "{d:?}");
        assert!(
            d.iter().any(|l| l.contains("hard-link group only in a")),
            "{d:?}"
        );
    }
}
