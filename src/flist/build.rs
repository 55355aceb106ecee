//! Walking the source tree into a file list (upstream: flist.c
//! send_file_list, send_directory, make_file, send_implied_dirs).
//!
//! Arguments are interpreted as stock rsync does: `dir/` sends `.` plus the
//! contents of `dir`, `dir` sends the entry `dir` plus its contents, and with
//! `--relative` the path (after an optional `/./` anchor) is kept, with its
//! leading directories sent as implied directories.

use super::sort::f_name_cmp;
use crate::fs::dest::{stat_at, Stat};
use crate::protocol::flist::{mode, FileEntry, HardLink};
use nix::libc;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Decides which names are left out of the list (filters, daemon excludes).
pub trait Excluder {
    /// Is `path` (relative to the transfer root) excluded?
    fn excluded(&mut self, path: &[u8], is_dir: bool) -> bool;
    /// Called before the contents of `dir` (transfer-root relative) are listed;
    /// `local` is where it lives on disk (for per-directory merge files).
    fn enter_dir(&mut self, _dir: &[u8], _local: &Path) {}
    /// Called after the contents of a directory were listed.
    fn leave_dir(&mut self) {}
    /// Called for each argument: its directory relative to the module root and
    /// the transfer root on disk.
    fn set_base(&mut self, _dir_in_module: &[u8], _root: &Path) {}
    /// Move the reports of the checks so far (`--debug=filter`) to `out`.
    fn drain_notes(&mut self, _out: &mut Vec<(MsgKind, String)>) {}
    /// A per-directory rules file that could not be used (upstream exits
    /// with RERR_SYNTAX): the message, once.
    fn take_fatal(&mut self) -> Option<String> {
        None
    }
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
    /// -x count
    pub one_file_system: u8,
    /// -o
    pub preserve_uid: bool,
    /// -g
    pub preserve_gid: bool,
    /// Never read through a symlink whose target lies outside this directory (daemon module root).
    pub confine_to: Option<PathBuf>,
    /// Daemon module name, for messages (`"name" (in module)`).
    pub module: Option<String>,
    /// `--ignore-missing-args`: a top-level argument that does not exist is
    /// skipped without an error (upstream missing_args == 1).
    pub ignore_missing_args: bool,
    /// `--delete-missing-args`: such an argument is sent as a "missing"
    /// entry (mode 0), which tells the receiver to delete it (upstream
    /// missing_args == 2).
    pub delete_missing_args: bool,
    /// Module `ignore nonreadable`: entries (other than symlinks) the
    /// daemon cannot read are left out of the list silently.
    pub ignore_nonreadable: bool,
}

/// `faccessat(R_OK)`: whether the process may read the entry (upstream's
/// `access(name, R_OK)`, with the real ids, which a daemon has dropped to).
fn readable(dir: RawFd, leaf: &CStr) -> bool {
    // SAFETY: a valid C string; the fd is an open directory.
    unsafe { libc::faccessat(dir, leaf.as_ptr(), libc::R_OK, 0) == 0 }
}

/// A listed file: its wire entry plus where it lives locally.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// The entry as sent.
    pub entry: FileEntry,
    /// The directory the entry's name is relative to (its argument's
    /// directory, shared by every entry of the argument): the local path
    /// is `base/name`, made when it is needed ([`LocalFile::path`]), not
    /// kept per entry.
    base: Arc<Path>,
    dev: u64,
    ino: u64,
    nlink: u64,
    /// Device of the top argument this entry came from (for `-x`).
    pub(crate) top_dev: u64,
    /// Reached through a followed symlink that leads outside the confinement root:
    /// reading it fails as stock's confined open does (ELOOP).
    pub escapes: bool,
}

/// How a message from the walk is reported to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgKind {
    /// MSG_INFO, always shown.
    Info,
    /// MSG_WARNING.
    Warning,
    /// MSG_ERROR (shown as an error; the exit code stays).
    Error,
    /// MSG_ERROR_XFER (the client's exit code becomes 23).
    ErrorXfer,
}

impl ListState {
    /// State for a transfer: names inline or not, id 0 named or not, names at all or not.
    pub fn new(inline_names: bool, id0_names: bool, numeric_ids: bool) -> Self {
        ListState {
            inline_names,
            id0_names,
            numeric_ids,
            ..Default::default()
        }
    }
}

impl MsgKind {
    /// The multiplexed message that carries it.
    pub fn msg_code(self) -> crate::protocol::mux::MsgCode {
        use crate::protocol::mux::MsgCode;
        match self {
            MsgKind::Info => MsgCode::Info,
            MsgKind::Warning => MsgCode::Warning,
            MsgKind::Error => MsgCode::Error,
            MsgKind::ErrorXfer => MsgCode::ErrorXfer,
        }
    }
}

impl LocalFile {
    /// The absolute or cwd-relative local path.
    pub fn path(&self) -> PathBuf {
        self.base.join(os(&self.entry.name))
    }

    /// The directory the entry's name is relative to.
    pub(crate) fn base(&self) -> &Arc<Path> {
        &self.base
    }

    /// The device the entry lives on.
    pub fn dev_of(&self) -> u64 {
        self.dev
    }
}

/// A built, sorted file list.
#[derive(Debug, Default, Clone)]
pub struct FileList {
    /// Entries in sorted (= wire index) order.
    pub files: Vec<LocalFile>,
    /// The order entries are sent in (arrival order, as stock's readdir walk
    /// produces it): indexes into `files`.
    pub send_order: Vec<usize>,
    /// Non-fatal problems, formatted as rsync prints them.
    pub errors: Vec<(MsgKind, String)>,
    /// The walk stopped on an unusable per-directory rules file: the
    /// message (the sender then exits with code 1).
    pub fatal: Option<String>,
    /// Wire index of the first entry (0, or with incremental recursion the
    /// running count upstream's flist_new keeps).
    pub ndx_start: i32,
    /// IOERR_* bits.
    pub io_error: i32,
    /// uid -> name for the id list.
    pub uid_names: Vec<(u32, Vec<u8>)>,
    /// gid -> name for the id list.
    pub gid_names: Vec<(u32, Vec<u8>)>,
    /// Incremental recursion: the directory whose contents this list holds.
    pub parent_entry: Option<crate::protocol::flist::FileEntry>,
    /// Incremental recursion: the directory the parent's name is relative
    /// to (an empty list has no entry to tell).
    pub parent_base: Option<Arc<Path>>,
    /// Entries sent in earlier lists (a file's place in the whole transfer).
    pub index_base: u64,
}

/// IOERR_GENERAL.
pub const IOERR_GENERAL: i32 = 1;
/// IOERR_VANISHED.
pub const IOERR_VANISHED: i32 = 2;

/// The tree walk (upstream: send_file_list / send_directory / make_file).
pub(crate) struct Walker<'a> {
    o: &'a BuildOpts,
    pub(crate) ex: &'a mut dyn Excluder,
    out: FileList,
    pub(crate) root_dev: u64,
    /// The transfer root the arguments are taken in (`--files-from`'s
    /// first argument, upstream's change_dir(argv[0])), for messages.
    root: Vec<u8>,
    /// The current argument's directory relative to the module root (for messages).
    dir: Vec<u8>,
    /// The current argument's local directory (the entries' base).
    base: Arc<Path>,
    /// Incremental recursion: list directories one level at a time; the
    /// caller drives the descent and the per-directory filter stack.
    divert: bool,
    /// The NUL-terminated name of the entry being looked up (reused: no
    /// allocation per stat).
    cbuf: Vec<u8>,
    /// The last top-level lookup found nothing, and it goes out as a
    /// "missing" entry (`--delete-missing-args`).
    missing: bool,
    /// Incremental recursion: the directory the last argument left entered
    /// in the filter stack (a `dir/` argument's contents were listed).
    pub(crate) entered_top: Option<Vec<u8>>,
    /// Incremental recursion with `-R`: names still to send below an
    /// implied directory, each when that directory's list is made
    /// (upstream F_DIR_RELNAMES).
    /// Each with the arrival index (in this list) of the directory it
    /// belongs to.
    pub(crate) relnames: Vec<(usize, RelName)>,
    /// The implied directory made last, to which the next name below the
    /// same directory is added (upstream send_implied_dirs' lastpath).
    last_implied: Option<(Arc<Path>, Vec<u8>, usize)>,
    /// The directories above the previous argument (whole-list `-R`):
    /// upstream send_implied_dirs' lastpath.
    last_parents: Vec<u8>,
}

/// A name to send below an implied directory of `-R` (incremental
/// recursion): `rest` relative to `dir`, in `base`.
#[derive(Debug, Clone)]
pub(crate) struct RelName {
    pub(crate) dir: Vec<u8>,
    pub(crate) base: Arc<Path>,
    pub(crate) rest: Vec<u8>,
    /// The argument ended in a slash or a dot: a symlink there is followed.
    pub(crate) follow: bool,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(o: &'a BuildOpts, ex: &'a mut dyn Excluder, divert: bool) -> Self {
        Walker {
            o,
            ex,
            out: FileList::default(),
            root_dev: 0,
            root: Vec::new(),
            dir: Vec::new(),
            base: Arc::from(Path::new("")),
            divert,
            cbuf: Vec::with_capacity(256),
            missing: false,
            entered_top: None,
            relnames: Vec::new(),
            last_implied: None,
            last_parents: Vec::new(),
        }
    }

    /// `-R` with incremental recursion: send `implied` (unfiltered, a
    /// symlink followed) unless it is the implied directory made last, and
    /// remember `rest` to send below it (upstream send_implied_dirs).
    fn implied_with_rest(&mut self, implied: Vec<u8>, rest: Vec<u8>, follow: bool) {
        let same = self
            .last_implied
            .as_ref()
            .filter(|(b, n, _)| **b == *self.base && *n == implied)
            .map(|l| l.2);
        let at = if let Some(at) = same {
            at
        } else {
            self.last_implied = None;
            let base = self.base.clone();
            // Not a directory (any more): nothing goes below it.
            let Some(at) = self.add_implied(&base, &implied) else {
                return;
            };
            self.last_implied = Some((base, implied.clone(), at));
            at
        };
        self.relnames.push((
            at,
            RelName {
                dir: implied,
                base: self.base.clone(),
                rest,
                follow,
            },
        ));
    }

    /// Send a name kept below an implied directory (upstream send1extra's
    /// relname loop): the next implied directory, or the named entry
    /// itself, a top directory whose contents get a list of their own.
    pub(crate) fn relname(&mut self, r: RelName) {
        if let Some(p) = r.rest.iter().position(|&c| c == b'/') {
            let implied = join(&r.dir, &r.rest[..p]);
            self.implied_with_rest(implied, r.rest[p + 1..].to_vec(), r.follow);
            return;
        }
        let name = join(&r.dir, &r.rest);
        let local = self.base.join(os(&name));
        let Some((md, followed)) = self.stat(None, &local, &name, r.follow, true) else {
            return;
        };
        if self.excluded(&name, md.is_dir()) {
            return;
        }
        let before = self.out.files.len();
        if self.add(&local, name, &md, true, followed) {
            if let Some(f) = self.out.files.get_mut(before) {
                f.entry.top_dir = true;
            }
        }
    }

    /// The current argument's directory (relative to the root, for
    /// messages and module filters) and its local path.
    pub(crate) fn arg_context(&self) -> (Vec<u8>, Arc<Path>) {
        (self.dir.clone(), self.base.clone())
    }

    /// The entries (and messages) gathered since the last call.
    pub(crate) fn take(&mut self) -> FileList {
        self.last_implied = None;
        std::mem::take(&mut self.out)
    }

    /// Set the argument directory used in messages and module-relative filters.
    pub(crate) fn set_dir(&mut self, dir: &[u8], base: &Path) {
        self.dir = dir.to_vec();
        if *self.base != *base {
            self.base = Arc::from(base);
        }
        self.ex.set_base(dir, base);
    }

    /// List one directory's immediate contents (incremental recursion).
    pub(crate) fn list_dir(&mut self, local: &Path, name: &[u8], dev: u64, escapes: bool) {
        self.descend(local, name, dev, escapes);
    }
}

/// ELOOP, what a confined open reports for a path escaping through a symlink.
const ELOOP_TEXT: &str = "Too many levels of symbolic links (40)";

fn os(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() || a == b"." {
        return b.to_vec();
    }
    let mut v = Vec::with_capacity(a.len() + 1 + b.len());
    v.extend_from_slice(a);
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

/// An absolute directory path with `.` and `dir/..` pairs removed
/// (lexically, as upstream's clean_fname with CFN_COLLAPSE_DOT_DOT_DIRS).
pub(crate) fn collapse_dot_dot(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if parts.last().is_some_and(|l| *l != b"..") => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut v = Vec::new();
    for c in parts {
        v.push(b'/');
        v.extend_from_slice(c);
    }
    v
}

/// Remove `.` components, duplicate slashes and a trailing slash (upstream clean_fname, partly).
fn clean(path: &[u8]) -> Vec<u8> {
    let parts: Vec<&[u8]> = path
        .split(|&c| c == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
        .collect();
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
    /// The filters' verdict on `name`, their `--debug=filter` report kept
    /// in order with the list's other messages.
    fn excluded(&mut self, name: &[u8], is_dir: bool) -> bool {
        let excluded = self.ex.excluded(name, is_dir);
        self.ex.drain_notes(&mut self.out.errors);
        excluded
    }

    /// Did the filters just meet an unusable rules file? The walk then stops.
    pub(crate) fn check_fatal(&mut self) -> bool {
        if self.out.fatal.is_none() {
            self.out.fatal = self.ex.take_fatal();
        }
        if self.out.fatal.is_some() {
            self.ex.drain_notes(&mut self.out.errors);
        }
        self.out.fatal.is_some()
    }

    fn err(&mut self, msg: String) {
        self.out.errors.push((MsgKind::ErrorXfer, msg));
        self.out.io_error |= IOERR_GENERAL;
    }

    /// upstream full_fname: `"path"` relative to the module root, plus ` (in module)`.
    /// upstream full_fname: a module shows the path inside the module, a
    /// plain run the absolute path (relative names under the working
    /// directory).
    fn full(&self, name: &[u8]) -> String {
        self.full_in(&self.dir, name)
    }

    /// [`Walker::full`] with `cur` as the current directory.
    fn full_in(&self, cur: &[u8], name: &[u8]) -> String {
        let dir = (!cur.is_empty() && cur != b".").then_some(cur);
        if self.o.module.is_none() && name.starts_with(b"/") {
            return format!("\"{}\"", crate::protocol::text::name(name));
        }
        let mut p = String::new();
        match (&self.o.module, dir) {
            (Some(_), Some(d)) => {
                p.push('/');
                p.push_str(&crate::protocol::text::name(d));
                p.push('/');
            }
            (Some(_), None) => {}
            (None, Some(d)) if d.starts_with(b"/") => {
                p.push_str(crate::protocol::text::name(d).trim_end_matches('/'));
                p.push('/');
            }
            (None, d) => {
                let mut abs = if self.root.starts_with(b"/") {
                    self.root.clone()
                } else {
                    let mut a = std::env::current_dir()
                        .map(|c| c.as_os_str().as_bytes().to_vec())
                        .unwrap_or_default();
                    if !self.root.is_empty() {
                        a.push(b'/');
                        a.extend_from_slice(&self.root);
                    }
                    a
                };
                if let Some(d) = d {
                    abs.push(b'/');
                    abs.extend_from_slice(d);
                }
                // upstream change_dir: clean_fname(CFN_COLLAPSE_DOT_DOT_DIRS).
                p.push_str(&crate::protocol::text::name(&collapse_dot_dot(&abs)));
                p.push('/');
            }
        }
        if name.starts_with(b"/") && p.ends_with('/') {
            p.pop();
        }
        p.push_str(&crate::protocol::text::name(name));
        match &self.o.module {
            Some(m) => format!("\"{p}\" (in {m})"),
            None => format!("\"{p}\""),
        }
    }

    fn escapes(&self, local: &Path) -> bool {
        match &self.o.confine_to {
            None => false,
            Some(root) => match std::fs::canonicalize(local) {
                Ok(real) => !real.starts_with(root),
                Err(_) => true,
            },
        }
    }

    /// lstat, or stat where the options follow links. Returns the metadata and
    /// whether a symlink was followed.
    /// `at` names the entry by its directory's open fd and its leaf name
    /// (a one-component lookup, as upstream's dirfd-relative walk); without
    /// it, `local` is looked up from the working directory.
    fn stat(
        &mut self,
        at: Option<(RawFd, &CStr)>,
        local: &Path,
        name: &[u8],
        follow_top: bool,
        top: bool,
    ) -> Option<(Stat, bool)> {
        if at.is_none() {
            self.cbuf.clear();
            self.cbuf.extend_from_slice(local.as_os_str().as_bytes());
            self.cbuf.push(0);
        }
        let lookup = |this: &Self, follow: bool| match at {
            Some((fd, leaf)) => stat_at(fd, leaf, follow),
            None => CStr::from_bytes_with_nul(&this.cbuf)
                .map_err(|_| libc::EINVAL)
                .and_then(|c| stat_at(libc::AT_FDCWD, c, follow)),
        };
        let looked = lookup(self, false).map_err(std::io::Error::from_raw_os_error);
        let lmd = match looked {
            Ok(m) => m,
            Err(e) => {
                let code = e.raw_os_error().unwrap_or(0);
                if top && self.o.ignore_missing_args && e.kind() == std::io::ErrorKind::NotFound {
                    return None;
                }
                if top && self.o.delete_missing_args && e.kind() == std::io::ErrorKind::NotFound {
                    self.missing = true;
                    return None;
                }
                if top {
                    let msg = format!(
                        "rsync: [sender] link_stat {} failed: {} ({code})",
                        self.full(name),
                        crate::fs::strerror(&e)
                    );
                    self.out.errors.push((MsgKind::ErrorXfer, msg));
                    if e.kind() != std::io::ErrorKind::NotFound {
                        self.out.io_error |= IOERR_GENERAL;
                    }
                } else if e.kind() == std::io::ErrorKind::NotFound {
                    self.out.io_error |= IOERR_VANISHED;
                    let msg = format!("file has vanished: {}", self.full(name));
                    self.out.errors.push((MsgKind::Warning, msg));
                } else {
                    let msg = format!(
                        "rsync: [sender] readlink_stat({}) failed: {} ({code})",
                        self.full(name),
                        crate::fs::strerror(&e)
                    );
                    self.err(msg);
                }
                return None;
            }
        };
        if !lmd.is_symlink() {
            return Some((lmd, false));
        }
        let follow =
            follow_top || self.o.copy_links || self.o.copy_dirlinks || self.o.copy_unsafe_links;
        if !follow {
            return Some((lmd, false));
        }
        let Ok(md) = lookup(self, true) else {
            if self.o.copy_links {
                let msg = format!("symlink has no referent: {}", self.full(name));
                self.err(msg);
                return None;
            }
            return Some((lmd, false));
        };
        let want = if self.o.copy_links || follow_top || (self.o.copy_dirlinks && md.is_dir()) {
            true
        } else if self.o.copy_unsafe_links {
            let target = std::fs::read_link(local).ok();
            target
                .map(|t| unsafe_symlink(t.as_os_str().as_bytes(), name))
                .unwrap_or(false)
        } else {
            false
        };
        if want {
            Some((md, true))
        } else {
            Some((lmd, false))
        }
    }

    /// make_file + send_file_name: add one entry (returns true when it is a dir).
    /// Every file type is listed; the receiving generator decides what to skip.
    fn add(&mut self, local: &Path, name: Vec<u8>, md: &Stat, top: bool, followed: bool) -> bool {
        let m = md.mode;
        let mut e = FileEntry {
            name,
            mode: m,
            mtime: md.mtime,
            mtime_nsec: md.mtime_nsec,
            uid: md.uid,
            gid: md.gid,
            ..Default::default()
        };
        if md.is_symlink() {
            match std::fs::read_link(local) {
                Ok(t) => {
                    // (--safe-links is the receiver's: upstream's sender lists them.)
                    let t = t.as_os_str().as_bytes().to_vec();
                    e.size = t.len() as i64;
                    if self.o.preserve_links {
                        e.set_link_target(Some(t));
                    }
                }
                Err(err) => {
                    let msg = format!(
                        "rsync: [sender] readlink {} failed: {}",
                        self.full(&e.name),
                        crate::fs::strerror(&err)
                    );
                    self.err(msg);
                    return false;
                }
            }
        } else if mode::is_device(m) {
            e.rdev_major = md.rdev_major;
            e.rdev_minor = md.rdev_minor;
        } else if mode::is_special(m) {
        } else if md.is_dir() {
            e.size = md.size as i64;
            e.top_dir = top;
        } else if md.is_file() {
            e.size = md.size as i64;
        } else {
            return false;
        }
        let is_dir = md.is_dir();
        let escapes = followed && self.escapes(local);
        self.out.files.push(LocalFile {
            entry: e,
            base: self.base.clone(),
            dev: md.dev,
            ino: md.ino,
            nlink: md.nlink,
            top_dev: self.root_dev,
            escapes,
        });
        is_dir
    }

    /// send_directory: list the contents of a directory (readdir order), then
    /// descend into its subdirectories in the same order.
    fn descend(&mut self, local: &Path, name: &[u8], dev: u64, escapes: bool) {
        if self.out.fatal.is_some() || (self.o.one_file_system > 0 && dev != self.root_dev) {
            return;
        }
        if escapes {
            let shown = if name == b"." {
                self.full(b".")
            } else {
                self.full(name)
            };
            self.err(format!(
                "rsync: [sender] opendir {shown} failed: {ELOOP_TEXT}"
            ));
            return;
        }
        // Incremental recursion: the lister has entered this directory (and
        // its parents) already, and leaves it when it moves elsewhere.
        if !self.divert {
            self.ex.enter_dir(name, local);
            if self.check_fatal() {
                return;
            }
        }
        // readdir order, names without per-entry allocations beyond our copy.
        let opened = nix::dir::Dir::open(
            local,
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        );
        let mut dir = match opened {
            Ok(d) => d,
            Err(errno) => {
                let e = std::io::Error::from(errno);
                let shown = self.full(name);
                self.err(format!(
                    "rsync: [sender] opendir {shown} failed: {} ({})",
                    crate::fs::strerror(&e),
                    e.raw_os_error().unwrap_or(0)
                ));
                if !self.divert {
                    self.ex.leave_dir();
                }
                return;
            }
        };
        let dirfd = dir.as_raw_fd();
        let mut subdirs = Vec::new();
        let mut path_buf: Vec<u8> = Vec::with_capacity(local.as_os_str().len() + 64);
        path_buf.extend_from_slice(local.as_os_str().as_bytes());
        if !path_buf.is_empty() && !path_buf.ends_with(b"/") {
            path_buf.push(b'/');
        }
        let dir_len = path_buf.len();
        // Each entry straight from the readdir buffer (no copy of its name
        // but the two the list keeps).
        for ent in dir.iter() {
            let Ok(ent) = ent else {
                continue;
            };
            let cname = ent.file_name();
            let n = cname.to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            let child_name = join(name, n);
            // The local path in one buffer for the whole directory (only a
            // subdirectory's is kept).
            path_buf.truncate(dir_len);
            path_buf.extend_from_slice(n);
            let child_local = Path::new(OsStr::from_bytes(&path_buf));
            let Some((md, followed)) =
                self.stat(Some((dirfd, cname)), child_local, &child_name, false, false)
            else {
                continue;
            };
            if md.is_dir() && !self.o.xfer_dirs {
                let msg = format!(
                    "skipping directory {}",
                    crate::protocol::text::name(&child_name)
                );
                self.out.errors.push((MsgKind::Info, msg));
                continue;
            }
            if md.is_dir() && self.o.one_file_system > 1 && md.dev != self.root_dev {
                continue;
            }
            if self.excluded(&child_name, md.is_dir()) {
                continue;
            }
            if self.o.ignore_nonreadable && !md.is_symlink() && !readable(dirfd, cname) {
                continue;
            }
            let before = self.out.files.len();
            // Only a directory needs its names again (to descend into it).
            let keep = (md.is_dir() && self.o.recursive)
                .then(|| (child_local.to_path_buf(), child_name.clone()));
            let added = self.add(child_local, child_name, &md, false, followed);
            if added && md.is_dir() && !self.o.recursive {
                // -d without -r: the directory is sent, its contents are not
                // (upstream: no FLAG_CONTENT_DIR, so no deletions in it).
                if let Some(f) = self.out.files.get_mut(before) {
                    f.entry.no_content_dir = true;
                }
            }
            if added && self.o.recursive {
                let esc = self
                    .out
                    .files
                    .get(before)
                    .map(|f| f.escapes)
                    .unwrap_or(false);
                if let Some((l, n)) = keep {
                    subdirs.push((l, n, md.dev, esc));
                }
            }
        }
        // One open directory at a time, however deep the tree.
        drop(dir);
        if self.divert {
            return;
        }
        for (l, n, d, esc) in subdirs {
            if self.out.fatal.is_some() {
                break;
            }
            self.descend(&l, &n, d, esc);
        }
        self.ex.leave_dir();
    }

    /// Send `name` under `base` as an implied directory of `-R` (looked up
    /// through a symlink, unfiltered); its index in the list, or None when
    /// it is not a directory.
    fn add_implied(&mut self, base: &Path, name: &[u8]) -> Option<usize> {
        let local = base.join(os(name));
        let md = CString::new(local.as_os_str().as_bytes())
            .ok()
            .and_then(|c| stat_at(libc::AT_FDCWD, &c, true).ok())
            .filter(|m| m.is_dir())?;
        let at = self.out.files.len();
        self.add(&local, name.to_vec(), &md, false, false);
        let f = self.out.files.get_mut(at)?;
        f.entry.implied_dir = self.o.proto >= 30;
        Some(at)
    }

    /// upstream send_implied_dirs (whole list): the directories above
    /// `path` that the previous argument's did not share are sent (so an
    /// implied directory comes again after an argument elsewhere, as
    /// stock's; one comparison per argument, however long the list).
    fn implied_dirs(&mut self, base: &Path, path: &[u8]) {
        // An absolute name's implied dirs keep its leading slash ("/a", "/a/b").
        let rooted = path.starts_with(b"/");
        let mut prefix: Vec<u8> = Vec::new();
        let comps: Vec<&[u8]> = path
            .split(|&c| c == b'/')
            .filter(|c| !c.is_empty())
            .collect();
        let parents = &comps[..comps.len().saturating_sub(1)];
        if parents.is_empty() {
            return;
        }
        let last = std::mem::take(&mut self.last_parents);
        let shared =
            |p: &[u8]| last.starts_with(p) && (last.len() == p.len() || last[p.len()] == b'/');
        let mut all_shared = true;
        for c in parents {
            prefix = if prefix.is_empty() && rooted {
                [b"/", *c].concat()
            } else {
                join(&prefix, c)
            };
            if shared(&prefix) {
                continue;
            }
            all_shared = false;
            self.add_implied(base, &prefix);
        }
        // All of them shared: the previous path stays the one compared.
        self.last_parents = if all_shared { last } else { prefix };
    }

    pub(crate) fn arg(&mut self, root: &Path, arg: &[u8]) {
        let r = root.as_os_str().as_bytes();
        let r = match r.iter().rposition(|&c| c != b'/') {
            Some(end) => &r[..=end],
            None => r,
        };
        self.root = if r == b"." { Vec::new() } else { r.to_vec() };
        // -R: a name with a trailing slash (upstream SLASH_ENDING_NAME)
        // sends the directory's contents too with -d (as "dir/" does
        // without -R), is looked up through a symlink, and is filtered.
        let mut contents = false;
        let (dir, fname): (Vec<u8>, Vec<u8>) = if self.o.relative {
            match find_sub(arg, b"/./") {
                Some(p) => {
                    let rest = &arg[p + 3..];
                    let f = clean(rest);
                    contents = !f.is_empty() && (rest.ends_with(b"/") || rest.ends_with(b"/."));
                    (arg[..p].to_vec(), f)
                }
                // An absolute name is read from "/" and sent with its slash
                // (the receiver strips it after sorting, as upstream).
                None if arg.starts_with(b"/") => {
                    let mut n = b"/".to_vec();
                    n.extend_from_slice(&clean(arg));
                    contents = n.len() > 1 && arg.ends_with(b"/");
                    (b"/".to_vec(), n)
                }
                None => {
                    let f = clean(arg);
                    contents = !f.is_empty() && f != b"." && arg.ends_with(b"/");
                    (Vec::new(), f)
                }
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
                // "/name": the directory is the root (upstream: dir = "/").
                Some(0) => (b"/".to_vec(), a[1..].to_vec()),
                Some(p) => (a[..p].to_vec(), a[p + 1..].to_vec()),
                None => (Vec::new(), a),
            }
        };
        let fname = if fname.is_empty() {
            b".".to_vec()
        } else {
            fname
        };
        let dotdir = fname == b"." || fname.ends_with(b"/.");
        let is_dotdir = dotdir || contents;
        let base = if dir.is_empty() {
            root.to_path_buf()
        } else {
            root.join(os(&dir))
        };
        if !self.o.relative && !dir.is_empty() {
            // upstream send_file_list changes into the argument's directory
            // first, and names that directory when it cannot.
            let err = match std::fs::metadata(&base) {
                Ok(m) if m.is_dir() => None,
                Ok(_) => Some(std::io::Error::from_raw_os_error(libc::ENOTDIR)),
                Err(e) => Some(e),
            };
            if let Some(e) = err {
                let msg = format!(
                    "rsync: [sender] change_dir {} failed: {} ({})",
                    self.full_in(b"", &dir),
                    crate::fs::strerror(&e),
                    e.raw_os_error().unwrap_or(0)
                );
                self.err(msg);
                return;
            }
        }
        self.set_dir(&dir, &base);
        let local = base.join(os(&fname));
        let Some((md, followed)) = self.stat(
            None,
            &local,
            &fname,
            is_dotdir || self.o.copy_dirlinks,
            true,
        ) else {
            if std::mem::take(&mut self.missing) {
                // Mode 0, everything else zero, as upstream's memset stat.
                self.out.files.push(LocalFile {
                    entry: FileEntry {
                        name: fname,
                        ..Default::default()
                    },
                    base: self.base.clone(),
                    dev: 0,
                    ino: 0,
                    nlink: 0,
                    top_dev: self.root_dev,
                    escapes: false,
                });
            }
            return;
        };
        if !dotdir && self.excluded(&fname, md.is_dir()) {
            return;
        }
        if md.is_dir() && !self.o.xfer_dirs {
            self.out.errors.push((
                MsgKind::Info,
                format!("skipping directory {}", crate::protocol::text::name(&fname)),
            ));
            return;
        }
        self.root_dev = md.dev;
        if self.divert && self.o.relative {
            // Incremental recursion: the first list holds the first
            // component, the rest follows in its list (upstream sends
            // implied directories this way even with --no-implied-dirs).
            if let Some(p) = fname.iter().skip(1).position(|&c| c == b'/') {
                let p = p + 1;
                let rest = fname[p + 1..].to_vec();
                self.implied_with_rest(fname[..p].to_vec(), rest, is_dotdir);
                return;
            }
        } else if self.o.relative && (self.o.implied_dirs || self.o.proto >= 30) {
            // upstream send_file_list: from protocol 30 the implied
            // directories go out flagged even with --no-implied-dirs (a
            // receiver checks each name's parent against the list, then
            // leaves them alone).
            self.implied_dirs(&base, &fname);
        }
        let descend = self.o.recursive || (self.o.xfer_dirs && is_dotdir);
        let before = self.out.files.len();
        let is_dir = self.add(&local, fname.clone(), &md, descend || md.is_dir(), followed);
        if is_dir && descend {
            let mut esc = false;
            if let Some(f) = self.out.files.get_mut(before) {
                f.entry.top_dir = true;
                esc = f.escapes;
            }
            // Incremental recursion lists a "." argument's contents now
            // (upstream DOTDIR_NAME); a "dir/" of -R waits for its list.
            let dot = fname == b"." || fname.ends_with(b"/.");
            if !self.divert {
                self.descend(&local, &fname, md.dev, esc);
            } else if dot {
                self.ex.enter_dir(&fname, &local);
                if self.check_fatal() {
                    return;
                }
                self.entered_top = Some(fname.clone());
                self.descend(&local, &fname, md.dev, esc);
            }
        } else if is_dir {
            if let Some(f) = self.out.files.get_mut(before) {
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

fn user_name(uid: u32) -> Option<Vec<u8>> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name.into_bytes())
}

fn group_name(gid: u32) -> Option<Vec<u8>> {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name.into_bytes())
}

/// State carried from one list to the next (hard-link leaders, ids whose
/// names were already sent).
#[derive(Debug, Default)]
pub struct ListState {
    leaders: HashMap<(u64, u64), i32>,
    seen_uids: std::collections::HashSet<u32>,
    seen_gids: std::collections::HashSet<u32>,
    /// Send id names inline (incremental recursion) instead of in id lists.
    pub inline_names: bool,
    /// Names for id 0 are sent (CF_ID0_NAMES).
    pub id0_names: bool,
    /// No names at all (`--numeric-ids`, or a daemon's `numeric ids`).
    pub numeric_ids: bool,
}

/// Turn the entries walked for one list into a sent list: drop duplicate
/// names, number hard links in arrival order (`ndx_start` + position), sort,
/// remember the arrival order, and collect id names.
pub fn finish_list(out: &mut FileList, opts: &BuildOpts, ndx_start: i32, st: &mut ListState) {
    let proto = opts.proto;
    // Sort (stable, as upstream's merge sort): `order[sorted] = arrival`.
    let sort_order = |files: &[LocalFile]| {
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&files[a].entry, &files[b].entry);
            f_name_cmp(
                &x.name,
                mode::is_dir(x.mode),
                &y.name,
                mode::is_dir(y.mode),
                proto,
            )
        });
        order
    };
    let order = sort_order(&out.files);
    // Overlapping arguments list a name twice: both go out, as upstream's
    // sender keeps them (FLAG_DUPLICATE dirs) and counts them; the
    // receiver keeps the first.
    if opts.preserve_hard_links {
        for (i, f) in out.files.iter_mut().enumerate() {
            let linkable = if proto >= 28 {
                !mode::is_dir(f.entry.mode) && f.nlink > 1
            } else {
                mode::is_reg(f.entry.mode)
            };
            if !linkable {
                continue;
            }
            if proto < 30 {
                f.entry.set_hard_link(Some(HardLink::DevIno {
                    dev: f.dev as i64,
                    ino: f.ino as i64,
                }));
            } else if let Some(&first) = st.leaders.get(&(f.dev, f.ino)) {
                f.entry.set_hard_link(Some(HardLink::Follower { first }));
            } else {
                st.leaders.insert((f.dev, f.ino), ndx_start + i as i32);
                f.entry.set_hard_link(Some(HardLink::First));
            }
        }
    }
    if !st.numeric_ids {
        // Most entries share the previous entry's owner: skip the set then.
        let (mut last_uid, mut last_gid) = (None, None);
        for f in out.files.iter_mut() {
            let e = &mut f.entry;
            let new_uid = last_uid != Some(e.uid);
            let new_gid = last_gid != Some(e.gid);
            last_uid = Some(e.uid);
            last_gid = Some(e.gid);
            if new_uid
                && opts.preserve_uid
                && (e.uid != 0 || st.id0_names)
                && st.seen_uids.insert(e.uid)
            {
                if let Some(n) = user_name(e.uid) {
                    if st.inline_names {
                        e.set_user_name(Some(n));
                    } else if e.uid != 0 {
                        out.uid_names.push((e.uid, n));
                    }
                }
            }
            if new_gid
                && opts.preserve_gid
                && (e.gid != 0 || st.id0_names)
                && st.seen_gids.insert(e.gid)
            {
                if let Some(n) = group_name(e.gid) {
                    if st.inline_names {
                        e.set_group_name(Some(n));
                    } else if e.gid != 0 {
                        out.gid_names.push((e.gid, n));
                    }
                }
            }
        }
    }
    // Remember where each arrival went.
    let mut pos_of_arrival = vec![0usize; order.len()];
    for (sorted_pos, &arrival) in order.iter().enumerate() {
        pos_of_arrival[arrival] = sorted_pos;
    }
    super::sort::permute(&mut out.files, &order);
    // A sender keeps its lists until their files are done, up to thousands
    // of entries ahead: no growth slack in them.
    out.files.shrink_to_fit();
    out.send_order = pos_of_arrival;
    out.ndx_start = ndx_start;
}

/// Build the whole file list for `args` under `root` at once (send_file_list
/// without incremental recursion).
pub fn build_file_list(
    root: &Path,
    args: &[Vec<u8>],
    opts: &BuildOpts,
    ex: &mut dyn Excluder,
    numeric_ids: bool,
) -> FileList {
    build_file_list_with(
        root,
        args,
        opts,
        ex,
        ListState::new(false, false, numeric_ids),
    )
}

/// `build_file_list` with explicit list state (id name handling).
pub fn build_file_list_with(
    root: &Path,
    args: &[Vec<u8>],
    opts: &BuildOpts,
    ex: &mut dyn Excluder,
    mut st: ListState,
) -> FileList {
    let mut w = Walker::new(opts, ex, false);
    for a in args {
        if w.out.fatal.is_some() {
            break;
        }
        w.arg(root, a);
    }
    let mut out = w.take();
    finish_list(&mut out, opts, 0, &mut st);
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
    fn every_entry_path_is_the_file_listed() {
        // Entries keep their argument's directory, not a path each: the
        // path made from it and the name must be the file that was listed,
        // whatever the shape of the argument.
        use std::os::unix::fs::MetadataExt;
        let d = std::env::temp_dir().join(format!("rrsync-flist-path-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("a/src/sub")).unwrap();
        std::fs::write(d.join("a/src/f"), b"x").unwrap();
        std::fs::write(d.join("a/src/sub/g"), b"y").unwrap();
        std::os::unix::fs::symlink("f", d.join("a/src/l")).unwrap();
        let abs = format!("{}/a/src", d.display());
        let o = BuildOpts {
            proto: 31,
            recursive: true,
            xfer_dirs: true,
            preserve_links: true,
            ..Default::default()
        };
        let rel = BuildOpts {
            relative: true,
            implied_dirs: true,
            ..o.clone()
        };
        let cases: Vec<(&BuildOpts, Vec<u8>)> = vec![
            (&o, b"a/src/".to_vec()),
            (&o, b"a/src".to_vec()),
            (&o, b"a/src/.".to_vec()),
            (&o, b"a/./src/sub/".to_vec()),
            (&o, b"a/src/sub/g".to_vec()),
            (&o, format!("{abs}/").into_bytes()),
            (&rel, b"a/src/sub".to_vec()),
            (&rel, b"a/./src/sub/".to_vec()),
            (&rel, b"a/src/./sub/g".to_vec()),
            (&rel, abs.clone().into_bytes()),
        ];
        for (opts, arg) in cases {
            let fl = build_file_list(&d, std::slice::from_ref(&arg), opts, &mut NoFilter, true);
            assert!(fl.files.len() > 1 || arg.ends_with(b"g"), "{arg:?}");
            for f in &fl.files {
                let md = std::fs::symlink_metadata(f.path())
                    .unwrap_or_else(|e| panic!("{:?} for {:?}: {e}", f.path(), arg));
                assert_eq!(md.ino(), f.ino, "{:?} for {:?}", f.path(), arg);
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn trailing_slash_sends_dot_and_contents() {
        let d = std::env::temp_dir().join(format!("rrsync-flist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("src/sub")).unwrap();
        std::fs::write(d.join("src/f"), b"x").unwrap();
        std::fs::write(d.join("src/sub/g"), b"y").unwrap();
        let o = BuildOpts {
            proto: 31,
            recursive: true,
            xfer_dirs: true,
            ..Default::default()
        };
        let names = |fl: &FileList| {
            fl.files
                .iter()
                .map(|f| crate::protocol::text::name(&f.entry.name).into_owned())
                .collect::<Vec<_>>()
        };
        let fl = build_file_list(&d, &[b"src/".to_vec()], &o, &mut NoFilter, true);
        assert_eq!(names(&fl), [".", "f", "sub", "sub/g"]);
        assert!(fl.files[0].entry.top_dir);
        let fl = build_file_list(&d, &[b"src".to_vec()], &o, &mut NoFilter, true);
        assert_eq!(names(&fl), ["src", "src/f", "src/sub", "src/sub/g"]);
        let o = BuildOpts {
            relative: true,
            implied_dirs: true,
            ..o
        };
        let fl = build_file_list(&d, &[b"src/sub/g".to_vec()], &o, &mut NoFilter, true);
        assert_eq!(names(&fl), ["src", "src/sub", "src/sub/g"]);
        assert!(fl.files[0].entry.implied_dir);
        let fl = build_file_list(&d, &[b"src/./sub".to_vec()], &o, &mut NoFilter, true);
        assert_eq!(names(&fl), ["sub", "sub/g"]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
