//! Fixture builders: a fast seeded PRNG, small file-system helpers, and the
//! trees the cases pull from (the "issue 2" tree with every kind of entry,
//! a small tree, a tree with `.rsync-filter` files). Every builder pins all
//! mtimes, so a tree built twice is identical (prefilled destinations rely
//! on that).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;

/// Sizes of the plain files in the issue-2 tree (name, size).
pub const SIZED_FILES: &[(&str, usize)] = &[
    ("empty.bin", 0),
    ("one.bin", 1),
    ("f700.bin", 700),
    ("f4095.bin", 4095),
    ("f4096.bin", 4096),
    ("f65537.bin", 65537),
    ("f1m13.bin", (1 << 20) + 13),
    ("big24m.bin", 24 << 20),
];

/// Base of the pinned mtimes (2023-11-14T22:13:20Z).
pub const BASE_MTIME: i64 = 1_700_000_000;
/// A pre-1970 mtime with nanoseconds (1960-01-01T00:00:01.123456789Z).
pub const MTIME_1960: (i64, u32) = (-315_619_199, 123_456_789);
/// A post-2038 mtime with nanoseconds (2100-01-01T00:00:00.987654321Z).
pub const MTIME_2100: (i64, u32) = (4_102_444_800, 987_654_321);

/// splitmix64: fast, seeded, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        let n = rest.len();
        rest.copy_from_slice(&last[..n]);
    }
}

/// `len` pseudo-random bytes from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

fn parent_dirs(p: &Path) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", d.display()));
    }
}

/// Writes `bytes` to `root/rel`, creating parent directories.
pub fn write(root: &Path, rel: &str, bytes: &[u8]) -> PathBuf {
    let p = root.join(rel);
    parent_dirs(&p);
    std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

/// Writes `len` pseudo-random bytes (seeded) to `root/rel`, in chunks.
pub fn write_random(root: &Path, rel: &str, seed: u64, len: usize) -> PathBuf {
    let p = root.join(rel);
    parent_dirs(&p);
    let mut f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill(&mut buf[..n]);
        f.write_all(&buf[..n]).expect("write random");
        left -= n;
    }
    p
}

/// `mkdir -p root/rel`.
pub fn mkdir(root: &Path, rel: &str) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
    p
}

/// Creates symlink `root/rel -> target`.
pub fn symlink(root: &Path, rel: &str, target: &str) -> PathBuf {
    let p = root.join(rel);
    parent_dirs(&p);
    std::os::unix::fs::symlink(target, &p)
        .unwrap_or_else(|e| panic!("symlink {}: {e}", p.display()));
    p
}

/// Hard-links `root/new` to `root/existing`.
pub fn hardlink(root: &Path, existing: &str, new: &str) {
    let n = root.join(new);
    parent_dirs(&n);
    std::fs::hard_link(root.join(existing), &n)
        .unwrap_or_else(|e| panic!("link {}: {e}", n.display()));
}

/// `chmod mode root/rel` (not for symlinks).
pub fn chmod(root: &Path, rel: &str, mode: u32) {
    let p = root.join(rel);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// `lchown uid:gid root/rel`.
pub fn chown(root: &Path, rel: &str, uid: u32, gid: u32) {
    let p = root.join(rel);
    std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
}

/// Creates a fifo at `root/rel`.
pub fn mkfifo(root: &Path, rel: &str) {
    let p = root.join(rel);
    parent_dirs(&p);
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o644))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", p.display()));
}

/// Creates a character device at `root/rel` (needs root / CAP_MKNOD).
pub fn mknod_char(root: &Path, rel: &str, major: u64, minor: u64) {
    let p = root.join(rel);
    parent_dirs(&p);
    nix::sys::stat::mknod(
        &p,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
        nix::sys::stat::makedev(major, minor),
    )
    .unwrap_or_else(|e| panic!("mknod {}: {e} (compat tests run as root)", p.display()));
}

/// Sets mtime (and atime) of `path` without following a symlink.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t)
        .unwrap_or_else(|e| panic!("set mtime {}: {e}", path.display()));
}

/// Pins every mtime under `root` (root included) to a deterministic value:
/// `overrides` (relative path, secs, nanos) where given, otherwise
/// `BASE_MTIME` plus a step per path in sorted order. Children are set
/// before their directories.
pub fn pin_times(root: &Path, overrides: &[(&str, (i64, u32))]) {
    let mut all = Vec::new();
    collect(root, Path::new(""), &mut all);
    all.sort();
    let mut indexed: Vec<(usize, PathBuf)> = all.into_iter().enumerate().collect();
    // Deepest first so directories are stamped after their contents.
    indexed.sort_by_key(|(_, p)| std::cmp::Reverse(p.components().count()));
    for (i, rel) in indexed {
        let (secs, nanos) = overrides
            .iter()
            .find(|(p, _)| Path::new(p) == rel)
            .map(|(_, t)| *t)
            .unwrap_or((
                BASE_MTIME + 61 * i as i64,
                ((i as u32).wrapping_mul(7_654_321)) % 1_000_000_000,
            ));
        set_mtime(&root.join(&rel), secs, nanos);
    }
    let root_time = overrides
        .iter()
        .find(|(p, _)| p.is_empty() || *p == ".")
        .map(|(_, t)| *t)
        .unwrap_or((BASE_MTIME - 86_400, 500_000_000));
    set_mtime(root, root_time.0, root_time.1);
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for ent in rd {
        let ent = ent.expect("dir entry");
        let r = rel.join(ent.file_name());
        let is_dir = ent.file_type().expect("file type").is_dir();
        out.push(r.clone());
        if is_dir {
            collect(root, &r, out);
        }
    }
}

/// uid and gid of the `nobody` account (65534 if it has no entry).
pub fn nobody_ids() -> (u32, u32) {
    match nix::unistd::User::from_name("nobody") {
        Ok(Some(u)) => (u.uid.as_raw(), u.gid.as_raw()),
        _ => (65534, 65534),
    }
}

/// The tree of issue 2, with every kind of entry a pull must reproduce:
/// sized pseudo-random files (0 B .. 24 MiB), empty and nested dirs,
/// dangling/absolute/relative/dir symlinks, unicode and space names, a dir
/// of 1000 entries, pre-1970 and post-2038 mtimes with nanoseconds, modes
/// 0600/0755/0444 and a setgid dir, hard links, a fifo, a char device, and
/// files owned by 1234:2345 and by `nobody`.
pub fn issue2_tree(root: &Path) {
    mkdir(root, "");
    for (i, (name, size)) in SIZED_FILES.iter().enumerate() {
        write_random(root, name, 1000 + i as u64, *size);
    }
    mkdir(root, "empty_dir");
    write(root, "nested/a/b/c/deep.txt", b"deep file\n");
    write(root, "nested/a/sib.txt", b"sibling\n");
    write(root, "nested/a/b/notes.md", b"# notes\n");
    mkdir(root, "nested/a/b/empty");
    symlink(root, "links/dangling", "does/not/exist");
    symlink(root, "links/absolute", "/nonexistent-rrsync-compat/target");
    symlink(root, "links/relative", "../f700.bin");
    symlink(root, "links/dir_link", "../nested");
    write(root, "unicode/naïve café.txt", "crème brûlée\n".as_bytes());
    write(
        root,
        "unicode/日本語のファイル.txt",
        "こんにちは\n".as_bytes(),
    );
    write(root, "unicode/emoji 🎉 party.txt", b"party\n");
    write(root, "with space/file with  two spaces.txt", b"spaces\n");
    write(root, "with space/ leading space", b"lead\n");
    for i in 0..1000 {
        write(
            root,
            &format!("many/f{i:04}"),
            format!("entry {i}\n").as_bytes(),
        );
    }
    write(root, "times/old_1960.txt", b"before the epoch\n");
    write(root, "times/future_2100.txt", b"after 2038\n");
    mkdir(root, "times/old_dir");
    write(root, "modes/m0600", b"0600\n");
    write(root, "modes/m0755", b"#!/bin/sh\n");
    write(root, "modes/m0444", b"read only\n");
    // Modes the umask would cut (0666, 0777) and none at all.
    write(root, "modes/m0666", b"everyone writes\n");
    write(root, "modes/m0777", b"everyone runs\n");
    write(root, "modes/m0000", b"no bits\n");
    write(root, "modes/setgid_dir/inside", b"in setgid dir\n");
    mkdir(root, "modes/sticky_dir");
    write(root, "hl/one", b"hard linked content\n");
    hardlink(root, "hl/one", "hl/two");
    hardlink(root, "hl/one", "hl_other/three");
    write_random(root, "hl/big_a", 77, 70_000);
    hardlink(root, "hl/big_a", "hl/big_b");
    mkfifo(root, "special/fifo");
    mknod_char(root, "special/null_dev", 1, 3);
    write(root, "owners/u1234", b"owned by 1234:2345\n");
    write(root, "owners/nobody", b"owned by nobody\n");
    write(root, "owners/dir_1234/file", b"in dir owned by 1234\n");
    symlink(root, "owners/link_1234", "u1234");

    let (nuid, ngid) = nobody_ids();
    chown(root, "owners/u1234", 1234, 2345);
    chown(root, "owners/nobody", nuid, ngid);
    chown(root, "owners/dir_1234", 1234, 2345);
    chown(root, "owners/link_1234", 1234, 2345);
    chmod(root, "modes/m0600", 0o600);
    chmod(root, "modes/m0755", 0o755);
    chmod(root, "modes/m0444", 0o444);
    chmod(root, "modes/m0666", 0o666);
    chmod(root, "modes/m0777", 0o777);
    chmod(root, "modes/m0000", 0o000);
    chmod(root, "modes/setgid_dir", 0o2755);
    chmod(root, "modes/sticky_dir", 0o1777);
    pin_times(
        root,
        &[
            ("times/old_1960.txt", MTIME_1960),
            ("times/future_2100.txt", MTIME_2100),
            ("times/old_dir", (-1, 1)),
        ],
    );
}

/// A small tree (a few files and dirs, one symlink), for cases where the
/// issue-2 tree would only add time.
pub fn small_tree(root: &Path) {
    mkdir(root, "");
    write(root, "a.txt", b"alpha\n");
    write(root, "b.txt", b"bravo bravo\n");
    write_random(root, "r.bin", 5, 10_000);
    write(root, "sub/c.txt", b"charlie\n");
    write(root, "sub/deeper/d.txt", b"delta\n");
    mkdir(root, "etc");
    write(root, "etc/inside.txt", b"module-local etc\n");
    symlink(root, "sub/link", "../a.txt");
    pin_times(root, &[]);
}

/// The issue-2 tree plus `.rsync-filter` files (for `-F`) and a few
/// `*.tmp` files they exclude.
pub fn filter_tree(root: &Path) {
    issue2_tree(root);
    write(root, ".rsync-filter", b"- *.tmp\n- /many/\n");
    write(
        root,
        "nested/.rsync-filter",
        b"- deep.txt\n+ sib.txt\n- *.md\n",
    );
    write(root, "scratch.tmp", b"scratch\n");
    write(root, "nested/a/x.tmp", b"x\n");
    write(root, "nested/a/kept.txt", b"kept\n");
    pin_times(
        root,
        &[
            ("times/old_1960.txt", MTIME_1960),
            ("times/future_2100.txt", MTIME_2100),
            ("times/old_dir", (-1, 1)),
        ],
    );
}

/// Copies `src` to `dst` with `cp -a` (keeps hard links, devices, owners,
/// times), for prefilled destinations.
pub fn copy_tree(src: &Path, dst: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .expect("run cp -a");
    assert!(
        st.success(),
        "cp -a {} {} failed",
        src.display(),
        dst.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_rng_is_deterministic_and_fills_tails() {
        assert_eq!(random_bytes(7, 33), random_bytes(7, 33));
        assert_ne!(random_bytes(7, 33), random_bytes(8, 33));
        let v = random_bytes(1, 13);
        assert_eq!(&v[..8], &random_bytes(1, 8)[..]);
    }
}
