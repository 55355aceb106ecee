//! The generator of the receiving side (upstream: generator.c
//! generate_files, recv_generator, itemize, delete_in_dir): walks the
//! received list, creates directories, symlinks and specials, decides which
//! files need data (quick check), asks the sender for them with block sums
//! of the current file, deletes extraneous files, and drives the phase
//! handshake. It owns the output direction of the connection.

use super::hlink::{Check, HardLinks, State as HlState};
use super::setup::Negotiated;
use super::RoleError;
use crate::cli::options::Options;
use crate::delta::sums::{generate_file_sums, SumHead};
use crate::flist::recv::{HlinkGroup, RecvList};
use crate::flist::sort::f_name_cmp;
use crate::fs::dest::{DestRoot, Stat};
use crate::protocol::flist::{mode, FileEntry};
use crate::protocol::mux::{MsgCode, MuxWriter};
use crate::protocol::ndx::{iflags, NdxCodec, NDX_DEL_STATS, NDX_DONE};
use crate::protocol::sums::WireSumHead;
use crate::protocol::varint::{put_int, put_short, put_varint};
use std::collections::HashMap;
use std::io::Write;
use std::sync::mpsc::Receiver;
use std::sync::Mutex;

/// What the receiver tells the generator.
#[derive(Debug)]
pub enum RecvEvent {
    /// This index failed its checksum: request it again (redo phase).
    Redo(i32),
    /// The receiver saw the sender's end of a phase.
    PhaseDone,
    /// The receiver is finished.
    Finished,
    /// The receiver failed; stop.
    Failed,
    /// Incremental recursion: another list arrived (see the registry).
    NewList,
    /// Incremental recursion: no more lists will come.
    FlistEof,
    /// The receiver is done with these indexes: whether each file is now
    /// in place under its name.
    FilesDone(Vec<(i32, bool)>),
}

/// The lists received so far (shared by receiver and generator under
/// incremental recursion; one list otherwise).
pub struct Registry {
    /// Reads further lists off the wire.
    pub recv: crate::flist::recv::ListReceiver,
    /// Lists in arrival order.
    pub lists: Vec<std::sync::Arc<RecvList>>,
    /// No more lists will come.
    pub eof: bool,
}

impl RecvConfig {
    /// Whether deletions run after the transfer (--delete-after/-delay),
    /// walking every received list then.
    pub fn deletes_after_transfer(&self) -> bool {
        self.opts.delete
            && !self.opts.list_only
            && matches!(
                self.opts.delete_when,
                Some("delete-after") | Some("delete-delay")
            )
    }
}

impl Registry {
    /// The list holding wire index `ndx`, and the position in it.
    pub fn find(&self, ndx: i32) -> Option<(std::sync::Arc<RecvList>, usize)> {
        self.lists
            .iter()
            .find_map(|l| l.get(ndx).map(|(i, _)| (l.clone(), i)))
    }
}

/// Decides whether a name (and whether it is a directory) is off limits.
pub type NameFilter = Box<dyn Fn(&[u8], bool) -> bool + Send + Sync>;
/// The client's rules on the receiving side: what deletions (and making
/// room) leave alone. The destination's per-directory rules files are read
/// as deletions reach each directory (upstream change_local_filter_dir
/// under delete_in_dir, push_local_filters in delete_dir_contents).
pub struct DirRules {
    /// The rules (receiver side), no directory entered yet.
    pub stack: crate::filter::FilterStack,
    /// Rules files outside the destination may be read (not in a daemon).
    pub outside: bool,
    /// `--debug=filter`: report the rule that protects or risks each name
    /// a deletion scan meets (upstream get_dirlist's is_excluded at `-vv`).
    pub report: bool,
}

/// The generator's copy of the [`DirRules`]: the directories entered, by depth.
struct DirRulesState {
    stack: crate::filter::FilterStack,
    entered: Vec<(usize, crate::filter::DirToken)>,
}

/// Upstream F_DEPTH of a directory: its name's components, "." none.
fn dir_depth(name: &[u8]) -> usize {
    name.split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .count()
}

/// Settings shared by generator and receiver.
pub struct RecvConfig {
    /// Negotiated session parameters.
    pub n: Negotiated,
    /// The client's options.
    pub opts: Options,
    /// Where files go.
    pub dest: DestRoot,
    /// We run as root (owners, devices).
    pub am_root: bool,
    /// `incoming chmod` of the module.
    pub chmod: Option<crate::flist::chmod::Chmod>,
    /// Names the module's filters hide (never received, made or cleared away).
    pub daemon_excluded: NameFilter,
    /// The client's rules: deletions leave alone what they exclude on the
    /// receiving side (and what `daemon_excluded` hides).
    pub client_rules: DirRules,
    /// The process umask (for modes when -p is off).
    pub umask: u32,
    /// `--compare-dest` / `--copy-dest` / `--link-dest` directories, in order.
    pub basis_dirs: Vec<(BasisKind, DestRoot)>,
    /// The destination directory was created for this transfer (its `.` is new).
    pub dest_created: bool,
    /// `--temp-dir`, relative to the destination (inside the module).
    pub temp_dir: Option<Vec<u8>>,
    /// A client shows messages and items itself (and reads the sender's stats).
    pub local: Option<std::sync::Arc<crate::role::log::ClientLog>>,
    /// The single file's name in the list, when it is written under another
    /// name (messages show the list's name, as upstream).
    pub shown_name: Option<Vec<u8>>,
    /// A daemon's transfer log (`transfer logging`).
    pub xfer_log: Option<std::sync::Arc<crate::role::log::ClientLog>>,
    /// `-X`: the attribute sets and what each half holds of them.
    pub xattrs: Option<crate::role::xattrs::XattrState>,
}

/// Upstream's default partial dir for --delay-updates.
pub const DELAY_DIR: &[u8] = b".~tmp~";

impl RecvConfig {
    /// The partial dir (`--partial-dir`, or `.~tmp~` with `--delay-updates`), if any.
    pub fn partial_dir(&self) -> Option<Vec<u8>> {
        match &self.opts.partial_dir {
            Some(d) => {
                let d = crate::daemon::paths::sanitize(d.as_bytes());
                (!d.is_empty()).then_some(d)
            }
            None if self.opts.delay_updates => Some(DELAY_DIR.to_vec()),
            None => None,
        }
    }

    /// Where `rel`'s partial file lives: `DIR/name` beside it (a relative
    /// partial dir is per directory, as upstream's partial_dir_fname).
    pub fn partial_path(&self, rel: &[u8]) -> Option<Vec<u8>> {
        let pd = self.partial_dir()?;
        let (dir, base) = match rel.iter().rposition(|&c| c == b'/') {
            Some(p) => (&rel[..p], &rel[p + 1..]),
            None => (&b""[..], rel),
        };
        let mut v = Vec::new();
        if !dir.is_empty() {
            v.extend_from_slice(dir);
            v.push(b'/');
        }
        v.extend_from_slice(&pd);
        v.push(b'/');
        v.extend_from_slice(base);
        Some(v)
    }
}

/// FNAMECMP_PARTIAL_DIR: the basis is the partial file.
pub const PARTIAL_BASIS: u8 = 0x81;

/// FNAMECMP_BACKUP: the basis is the copy made of the file before an
/// `--inplace` update rewrites it (`--backup`).
pub const BACKUP_BASIS: u8 = 0x82;

/// FNAMECMP_FUZZY: the basis is a file of similar name in the file's
/// directory (`--fuzzy`), named by the item's xname; `FUZZY_BASIS + 1 + j`
/// is the same in basis dir `j` (`-yy`).
pub const FUZZY_BASIS: u8 = 0x83;

/// Where a requested file's basis is, when it is not the file itself
/// (upstream fnamecmp_type, sent after ITEM_BASIS_TYPE_FOLLOWS).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Basis {
    /// The same name in basis dir `j` (FNAMECMP_BASIS_DIR_LOW + j).
    Dir(usize),
    /// The partial file (FNAMECMP_PARTIAL_DIR).
    Partial,
    /// The copy an in-place update made first (FNAMECMP_BACKUP).
    Backup,
    /// The file `name` of the same directory, in listing `list`: 0 the
    /// destination, `j + 1` basis dir `j` (FNAMECMP_FUZZY + list).
    Fuzzy {
        /// Which listing.
        list: usize,
        /// The file's name in the directory.
        name: Vec<u8>,
    },
}

impl Basis {
    /// The basis type byte on the wire.
    fn type_byte(&self) -> u8 {
        match self {
            Basis::Dir(j) => *j as u8,
            Basis::Partial => PARTIAL_BASIS,
            Basis::Backup => BACKUP_BASIS,
            Basis::Fuzzy { list, .. } => FUZZY_BASIS.saturating_add(*list as u8),
        }
    }
}

/// What a basis directory is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasisKind {
    /// `--compare-dest`: an identical file there means "skip".
    Compare,
    /// `--copy-dest`: an identical file there is copied locally.
    Copy,
    /// `--link-dest`: an identical file there is hard-linked.
    Link,
}

impl BasisKind {
    /// From the option name.
    pub fn from_option(name: &str) -> Option<Self> {
        match name {
            "compare-dest" => Some(BasisKind::Compare),
            "copy-dest" => Some(BasisKind::Copy),
            "link-dest" => Some(BasisKind::Link),
            _ => None,
        }
    }

    /// The option that names this kind, as upstream's alt_dest_opt shows it.
    pub fn option_name(self) -> &'static str {
        match self {
            BasisKind::Compare => "--compare-dest",
            BasisKind::Copy => "--copy-dest",
            BasisKind::Link => "--link-dest",
        }
    }
}

/// upstream sanitize_path for a symlink target at `depth` directories below
/// the root: a leading `/` is dropped and `..` may climb at most to the root.
pub fn sanitize_link_target(target: &[u8], depth: usize) -> Vec<u8> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut ups = 0usize;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.last().is_some_and(|l| *l != b"..") {
                    out.pop();
                } else if ups < depth {
                    ups += 1;
                    out.push(b"..");
                }
            }
            _ => out.push(c),
        }
    }
    let v = out.join(&b'/');
    if v.is_empty() {
        b".".to_vec()
    } else {
        v
    }
}

/// Parse an rsync size argument (`--max-size=1.5M`, `100K`, `5GB`, `2MiB`;
/// upstream options.c parse_size_arg, see [`crate::cli::size_arg`]).
pub fn parse_size(arg: &str) -> Option<u64> {
    let rule = crate::cli::size_arg::FILE_SIZE;
    crate::cli::size_arg::parse("max-size", arg, &rule)
        .ok()
        .and_then(|n| u64::try_from(n).ok())
}

impl RecvConfig {
    /// Files go whole, without a delta (`-W`, a local copy's default);
    /// never with `--append` (upstream generate_files).
    pub fn whole_file(&self) -> bool {
        self.opts.whole_file == Some(true) && self.opts.append == 0
    }

    /// `--backup`: the suffix and the backup dir (relative to the destination).
    pub fn backup(&self) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        if !self.opts.backup {
            return None;
        }
        let dir = self
            .opts
            .backup_dir
            .as_ref()
            .map(|d| crate::daemon::paths::sanitize(d.as_bytes()))
            .filter(|d| !d.is_empty());
        let suffix = match &self.opts.suffix {
            Some(s) => s.as_bytes().to_vec(),
            None if dir.is_some() => Vec::new(),
            None => b"~".to_vec(),
        };
        Some((suffix, dir))
    }

    /// The backup name of `rel` (None without `--backup`, or for a name
    /// that cannot have one).
    pub fn backup_path(&self, rel: &[u8]) -> Option<Vec<u8>> {
        let (suffix, dir) = self.backup()?;
        crate::fs::backup::backup_name(rel, &suffix, dir.as_deref()).ok()
    }

    /// Files are rewritten where they are (`--inplace`, implied by `--append`).
    pub fn inplace(&self) -> bool {
        self.opts.inplace || self.opts.append > 0
    }

    /// upstream make_backup's `-vv` line (`--info=backup`), when wanted.
    pub fn backed_up_line(&self, rel: &[u8]) -> Option<String> {
        if self.opts.info_level("backup") < 1 {
            return None;
        }
        let bak = self.backup_path(rel)?;
        Some(format!(
            "backed up {} to {}",
            crate::protocol::text::name(rel),
            crate::protocol::text::name(&bak)
        ))
    }
}

/// Upstream's SYMLINK_PREFIX for munged symlinks.
pub const MUNGE_PREFIX: &[u8] = b"/rsyncd-munged/";

/// `--munge-links` outside a daemon is refused when the prefix names a real
/// directory (a munged link would then lead somewhere): upstream's message,
/// exit RERR_UNSUPPORTED.
pub fn munge_links_unsafe() -> Option<String> {
    std::fs::metadata("/rsyncd-munged")
        .is_ok_and(|m| m.is_dir())
        .then(|| "Symlink munging is unsafe when a /rsyncd-munged directory exists.".to_string())
}

/// Counts for the deletion statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct DelStats {
    /// Regular files and other non-dirs.
    pub files: i32,
    /// Directories.
    pub dirs: i32,
    /// Symlinks.
    pub symlinks: i32,
    /// Devices.
    pub devices: i32,
    /// Specials.
    pub specials: i32,
}

/// The connection's output, shared by generator and receiver (the receiver
/// only sends messages).
pub struct SharedOut<'o, W: Write>(pub Mutex<&'o mut MuxWriter<W>>);

impl<'o, W: Write> SharedOut<'o, W> {
    /// Exclusive use of the writer.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, &'o mut MuxWriter<W>> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

impl RecvConfig {
    /// Does the mtime of `st` equal the entry's (seconds, and nanoseconds where the protocol carries them)?
    pub fn same_mtime(&self, e: &FileEntry, st: &Stat) -> bool {
        // upstream same_time: whole seconds, unless --modify-window asks for
        // a window (> 0) or for the nanoseconds too (< 0).
        let window = self.opts.modify_window.unwrap_or(0) as i64;
        if window > 0 {
            return (e.mtime - st.mtime).abs() <= window;
        }
        e.mtime == st.mtime && (window == 0 || e.mtime_nsec == st.mtime_nsec)
    }

    /// The permission bits a file gets (upstream: dest_mode).
    pub fn dest_perms(&self, e: &FileEntry, existing: Option<&Stat>) -> u32 {
        let mut m = if self.opts.perms {
            e.mode & 0o7777
        } else if let Some(st) = existing.filter(|st| st.mode & 0o170000 == e.mode & 0o170000) {
            st.mode & 0o7777
        } else {
            let mut p = e.mode & 0o777 & !self.umask;
            if !self.opts.executability && mode::is_reg(e.mode) {
                p = e.mode & 0o777 & !self.umask;
            }
            p
        };
        if let Some(c) = &self.chmod {
            m = c.apply((e.mode & 0o170000) | m) & 0o7777;
        }
        m
    }

    /// Owner and group to set (None = leave). Not root, a group we are
    /// not in is left alone (upstream's FLAG_SKIP_GROUP).
    pub fn dest_owner(&self, e: &FileEntry) -> (Option<u32>, Option<u32>) {
        let uid = (self.opts.owner && self.am_root).then_some(e.uid);
        let gid = (self.opts.group && (self.am_root || crate::fs::meta::in_our_groups(e.gid)))
            .then_some(e.gid);
        (uid, gid)
    }

    /// upstream itemize(): the report bits for an entry against what exists.
    pub fn itemize(&self, e: &FileEntry, st: Option<&Stat>, base: u16) -> u16 {
        let mut fl = base;
        match st {
            None => fl |= iflags::IS_NEW,
            Some(st) => {
                if mode::is_reg(e.mode) && e.size as u64 != st.size {
                    fl |= iflags::REPORT_SIZE;
                }
                let keep_time = self.opts.times
                    && !(mode::is_dir(e.mode) && self.opts.omit_dir_times)
                    && !(mode::is_lnk(e.mode) && self.opts.omit_link_times);
                if keep_time {
                    if !self.same_mtime(e, st) {
                        fl |= iflags::REPORT_TIME;
                    }
                } else if fl & (iflags::TRANSFER | iflags::LOCAL_CHANGE) != 0 {
                    fl |= iflags::REPORT_TIME;
                }
                if !mode::is_lnk(e.mode)
                    && self.dest_perms(e, Some(st)) != st.mode & 0o7777
                    && self.opts.perms
                {
                    fl |= iflags::REPORT_PERMS;
                }
                if self.opts.owner && self.am_root && e.uid != st.uid {
                    fl |= iflags::REPORT_OWNER;
                }
                if self.dest_owner(e).1.is_some_and(|g| g != st.gid) {
                    fl |= iflags::REPORT_GROUP;
                }
            }
        }
        if let Some(x) = &self.xattrs {
            if x.differs(e, &self.dest, &e.name, st.is_some()) {
                fl |= iflags::REPORT_XATTR;
            }
        }
        fl
    }

    /// Set perms, owner and (unless told not to) times on an existing
    /// entry; whether anything needed changing (in a dry run, only that).
    pub fn fix_attrs(
        &self,
        rel: &[u8],
        e: &FileEntry,
        st: &Stat,
        times: bool,
    ) -> Result<bool, crate::fs::dest::FsError> {
        self.fix_attrs_as(rel, e, st, times, false)
    }

    /// [`RecvConfig::fix_attrs`]; `fresh`: this run made the entry (a
    /// directory made writable for its contents), so without `-p` it gets
    /// the mode of a new entry, not the one it has now.
    pub fn fix_attrs_as(
        &self,
        rel: &[u8],
        e: &FileEntry,
        st: &Stat,
        times: bool,
        fresh: bool,
    ) -> Result<bool, crate::fs::dest::FsError> {
        self.fix_attrs_from(rel, e, st, times, (!fresh).then_some(st))
    }

    /// [`RecvConfig::fix_attrs`], with the permissions a file keeps
    /// without `-p` taken from `perms_from` (upstream dest_mode with the
    /// basis's stat: none for a new file, which gets a new file's mode).
    pub fn fix_attrs_from(
        &self,
        rel: &[u8],
        e: &FileEntry,
        st: &Stat,
        times: bool,
        perms_from: Option<&Stat>,
    ) -> Result<bool, crate::fs::dest::FsError> {
        let (uid, gid) = self.dest_owner(e);
        let uid = uid.filter(|u| *u != st.uid);
        let gid = gid.filter(|g| *g != st.gid);
        let mut updated = uid.is_some() || gid.is_some();
        // A dry run only tells what would change.
        let apply = !self.opts.dry_run;
        // With -K, `st` may be a kept symlink's directory while the
        // attributes go to the symlink itself, as stock 3.5 does (its times
        // change; a mode change fails with ELOOP).
        if apply {
            self.dest.set_owner(rel, uid, gid)?;
        }
        // A failed chmod does not keep the times from being set (upstream
        // set_file_attrs sets them before the mode).
        let mut moded = Ok(());
        if !mode::is_lnk(e.mode) {
            let p = self.dest_perms(e, perms_from);
            if p != st.mode & 0o7777 {
                if apply {
                    moded = self.dest.set_mode(rel, p);
                }
                updated = true;
            }
        }
        if times
            && self.opts.times
            && !self.same_mtime(e, st)
            && !(mode::is_lnk(e.mode) && self.opts.omit_link_times)
        {
            if apply {
                self.dest.set_times(rel, e.mtime, e.mtime_nsec, None)?;
            }
            updated = true;
        }
        moded.map(|()| updated)
    }
}

/// What became of the backup an `--inplace` update makes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InplaceBackup {
    /// No backup for this file (no `--backup`, not in place, a dry run).
    NotWanted,
    /// The old file is copied to its backup name.
    Made,
    /// The copy failed (reported): the file is not updated.
    Failed,
}

/// When the generator deletes extraneous files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeleteTiming {
    None,
    Before,
    During,
    After,
}

/// Whether an item record is worth sending (SIGNIFICANT_ITEM_FLAGS).
fn significant(fl: u16) -> bool {
    fl & !(iflags::BASIS_TYPE_FOLLOWS | iflags::XNAME_FOLLOWS | iflags::LOCAL_CHANGE) != 0
}

/// The generator's state for one run.
pub struct Generator<'a, 'o, W: Write> {
    cfg: &'a RecvConfig,
    /// The client's rules, with the destination's per-directory rules
    /// files in force.
    rules: DirRulesState,
    /// A rules file could not be parsed: the generator requests and
    /// deletes nothing more, and the run ends with exit code 1.
    pub stop: Option<String>,
    list: std::sync::Arc<RecvList>,
    registry: &'a Mutex<Registry>,
    /// Incremental recursion is on.
    inc: bool,
    /// Directories this run created (reported as new when handled in full).
    created: std::collections::HashSet<Vec<u8>>,
    /// Directories that could not be made: what lies below them is skipped
    /// without a word (upstream skip_dir and FLAG_MISSING_DIR, which also
    /// holds for their subdirectories' later lists).
    missing_dirs: std::collections::HashSet<Vec<u8>>,
    /// The parent directory of the entry handled last (upstream's
    /// prior_dir_file): with `-R --no-implied-dirs` a missing one is made.
    prior_parent: Option<Vec<u8>>,
    /// Transfers requested and not yet finished, per list (by ndx_start).
    pending: HashMap<i32, usize>,
    out: &'a SharedOut<'o, W>,
    tx: NdxCodec,
    buf: Vec<u8>,
    /// Per directory (by name), the indexes of its entries in the list.
    children: HashMap<Vec<u8>, Vec<usize>>,
    /// Deletion statistics.
    pub del: DelStats,
    /// IOERR_* bits met while generating.
    pub io_error: i32,
    itemize_all: bool,
    skipped_deletes: i32,
    /// The sender's io_error bits from every list received so far
    /// (upstream's global io_error on the receiving side).
    sender_io_error: i32,
    /// "IO error encountered -- skipping file deletion" was said (once).
    warned_io_error: bool,
    /// -H: the hard-link groups.
    hl: HardLinks,
    /// The hard-linked member being handled, and how its handling ends.
    hl_cur: Option<HlCur>,
    /// Incremental recursion: members waiting for another's transfer, per
    /// list (by ndx_start); a list ends after them (upstream in_progress).
    hl_hold: HashMap<i32, usize>,
    /// Lists noted in `hl` so far.
    hl_noted: usize,
    /// --fuzzy: the directory of the entries being handled, and the
    /// listings of it (the destination's, then each basis dir's with
    /// `-yy`), made when a file there first needs a basis (upstream
    /// parent_dirname and fuzzy_dirlist).
    fuzzy_dir: Option<Vec<u8>>,
    fuzzy_lists: Option<Vec<Vec<crate::role::fuzzy::Candidate>>>,
}

/// A hard-linked member while the generator handles it.
struct HlCur {
    key: HlinkGroup,
    wire: i32,
    src: (std::sync::Arc<RecvList>, usize),
    /// How its handling ended (the first word counts); `None` at the end
    /// means neither made nor linked.
    end: Option<HlEnd>,
}

/// How the handling of a hard-linked member ended.
#[derive(Clone, Copy)]
enum HlEnd {
    /// Left out: refused, --existing, --ignore-existing, below a missing
    /// directory (upstream handle_skipped_hlink).
    Skipped,
    /// Linked to the group's file.
    Linked,
    /// Made, sent, deferred or waiting, as the state says.
    As(HlState),
}

/// Per directory (by name), the indexes of its entries in `list`.
fn children_of(list: &RecvList) -> HashMap<Vec<u8>, Vec<usize>> {
    let mut children: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for (i, e) in list.files.iter().enumerate() {
        if e.name != b"." && list.active[i] {
            children
                .entry(parent_of(&e.name).to_vec())
                .or_default()
                .push(i);
        }
    }
    children
}

fn parent_of(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&c| c == b'/') {
        Some(p) => &name[..p],
        None => b".",
    }
}

impl<'a, 'o, W: Write> Generator<'a, 'o, W> {
    /// A generator over `list` writing to `out`.
    pub fn new(
        cfg: &'a RecvConfig,
        registry: &'a Mutex<Registry>,
        inc: bool,
        out: &'a SharedOut<'o, W>,
    ) -> Self {
        let list = match registry.lock() {
            Ok(r) => r.lists.first().cloned(),
            Err(p) => p.into_inner().lists.first().cloned(),
        }
        .unwrap_or_default();
        let children = children_of(&list);
        let itemize_all = cfg
            .opts
            .log_format
            .as_deref()
            .is_some_and(|f| f.contains("%i%I"))
            || cfg.opts.itemize > 1
            // upstream itemize(): every item goes out at --info=name2 (-vv).
            || cfg.opts.info_level("name") >= 2;
        Generator {
            cfg,
            rules: DirRulesState {
                stack: cfg.client_rules.stack.clone(),
                entered: Vec::new(),
            },
            stop: None,
            registry,
            inc,
            created: std::collections::HashSet::new(),
            missing_dirs: std::collections::HashSet::new(),
            prior_parent: None,
            pending: HashMap::new(),
            out,
            tx: NdxCodec::new(cfg.n.proto),
            buf: Vec::with_capacity(64 * 1024),
            children,
            del: DelStats::default(),
            io_error: 0,
            itemize_all,
            skipped_deletes: 0,
            sender_io_error: list.io_error,
            warned_io_error: false,
            hl: HardLinks::default(),
            hl_cur: None,
            hl_hold: HashMap::new(),
            hl_noted: 0,
            fuzzy_dir: None,
            fuzzy_lists: None,
            list,
        }
    }

    fn flush_buf(&mut self) -> Result<(), RoleError> {
        if !self.buf.is_empty() {
            let mut o = self.out.lock();
            o.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// A `--list-only` line: shown by a client, sent to it by a server.
    fn list_entry(&mut self, e: &FileEntry) -> Result<(), RoleError> {
        // (A client's --chmod is in the modes already: upstream
        // recv_file_entry applies it to what it receives.)
        if let Some(l) = &self.cfg.local {
            l.list_entry(e);
            return Ok(());
        }
        let line = crate::role::log::list_line(e, 1);
        self.message(MsgCode::Info, &crate::protocol::text::name(&line))
    }

    fn message(&mut self, code: MsgCode, text: &str) -> Result<(), RoleError> {
        if let Some(l) = &self.cfg.local {
            l.text(code, text.as_bytes());
            if code == MsgCode::ErrorXfer {
                self.io_error |= crate::flist::build::IOERR_GENERAL;
            }
            return Ok(());
        }
        // Ahead of the records still buffered (ours and the writer's), as
        // upstream's generator messages overtake its queued data.
        let (code, t) = super::sender::text_message(self.cfg.n.proto, code, text);
        self.out.lock().send_msg_ahead(code, t.as_bytes())?;
        Ok(())
    }

    fn error(&mut self, text: String) -> Result<(), RoleError> {
        self.io_error |= crate::flist::build::IOERR_GENERAL;
        self.message(MsgCode::ErrorXfer, &text)
    }

    fn item(&mut self, ndx: usize, fl: u16) -> Result<(), RoleError> {
        let wire = self.list.ndx_start + ndx as i32;
        let list = self.list.clone();
        match list.files.get(ndx) {
            Some(e) => self.item_at(wire, fl, e),
            None => Ok(()),
        }
    }

    /// An item record for entry `e` at a wire index (the parent-dir hole
    /// included).
    fn item_at(&mut self, wire: i32, fl: u16, e: &FileEntry) -> Result<(), RoleError> {
        if !(significant(fl) || self.itemize_all) {
            return Ok(());
        }
        if self.cfg.n.proto < 29 {
            return self.log_own_item(e, fl, b"");
        }
        self.tx.write(&mut self.buf, wire);
        put_short(&mut self.buf, fl);
        self.xattr_request(e, fl);
        Ok(())
    }

    /// `-X`: after an item record, ask for the long attribute values the
    /// destination lacks (upstream itemize's send_xattr_request).
    fn xattr_request(&mut self, e: &FileEntry, fl: u16) {
        let Some(x) = &self.cfg.xattrs else {
            return;
        };
        if self.cfg.opts.dry_run || fl & (iflags::REPORT_XATTR | iflags::TRANSFER) == 0 {
            return;
        }
        let report = fl & iflags::REPORT_XATTR != 0 && !self.cfg.n.xattr_optim(fl);
        let nums = x.request(e, &self.cfg.dest, &e.name, report);
        if report {
            crate::protocol::xattr::put_request(&mut self.buf, &nums);
        }
    }

    /// Below protocol 29 no item record goes to the sender: the generator
    /// reports the items that are not transfers itself (upstream
    /// generate_files' itemizing and code): a client on its terminal (and
    /// its --log-file); a server does not itemize, but its transfer log
    /// does when the log format has %i, and what it changed it names to
    /// the client at -v (set_file_attrs' report, a directory with its
    /// slash, a link with its target). A local copy's receiving side is a
    /// server.
    fn log_own_item(&mut self, e: &FileEntry, fl: u16, xname: &[u8]) -> Result<(), RoleError> {
        let hl = (!xname.is_empty()).then_some(xname);
        let shown;
        let e = match &self.cfg.shown_name {
            Some(n) => {
                shown = FileEntry {
                    name: n.clone(),
                    ..e.clone()
                };
                &shown
            }
            None => e,
        };
        if let Some(l) = &self.cfg.local {
            l.log_item(e, fl as u32, hl);
            return Ok(());
        }
        if let Some(l) = self.cfg.xfer_log.as_ref().filter(|l| l.o.has_i > 0) {
            l.log_item(e, fl as u32, hl);
        }
        if significant(fl) && self.cfg.opts.info_level("name") >= 1 {
            let line = self.server_line("%n%L", e, fl as u32, hl);
            self.message(MsgCode::Info, &line)?;
        }
        Ok(())
    }

    /// A line a server words itself in its own options' terms (upstream
    /// log_formatted on the server).
    fn server_line(&self, fmt: &str, e: &FileEntry, fl: u32, hl: Option<&[u8]>) -> String {
        let o = &self.cfg.opts;
        let mut oo = o
            .log_format
            .clone()
            .map(crate::role::log::OutputOpts::for_format)
            .unwrap_or_default();
        oo.del = o.info_level("del");
        oo.eight_bit = o.eight_bit;
        oo.preserve_mtimes = o.times;
        let log = crate::role::log::ClientLog::new(oo);
        let fname = (fl & crate::role::log::ITEM_DELETED != 0).then_some(e.name.as_slice());
        let line = log.format_item(
            fmt,
            e,
            fname,
            fl,
            hl,
            crate::role::log::ByteCounts::default(),
        );
        crate::protocol::text::name(&line).into_owned()
    }

    fn deleted(&mut self, rel: &[u8], m: u32) -> Result<(), RoleError> {
        let is_dir = mode::is_dir(m);
        if let Some(l) = &self.cfg.local {
            l.log_delete(rel, m);
            return Ok(());
        }
        if let Some(l) = &self.cfg.xfer_log {
            l.log_delete(rel, m);
        }
        if self.cfg.n.proto >= 29 {
            let mut p = rel.to_vec();
            if is_dir {
                p.push(0);
            }
            self.flush_buf()?;
            self.out.lock().send_msg(MsgCode::Deleted, &p)?;
        } else {
            self.deleted_below_29(rel, m)?;
        }
        Ok(())
    }

    /// upstream log_delete on a server below protocol 29 (no MSG_DELETED):
    /// the server words the line itself and sends it as text, in its own
    /// format (the `--log-format` the client gave it) when that itemizes,
    /// else "deleting NAME", if it shows deletions (`-v`) or has a format.
    fn deleted_below_29(&mut self, rel: &[u8], m: u32) -> Result<(), RoleError> {
        let o = &self.cfg.opts;
        let fmt = match o.log_format.as_deref() {
            Some(f) if f.contains("%i") || f.contains("%o") => f.to_string(),
            Some(_) => "deleting %n".to_string(),
            None if o.info_level("del") > 0 => "deleting %n".to_string(),
            None => return Ok(()),
        };
        let e = FileEntry {
            name: rel.to_vec(),
            mode: m,
            ..Default::default()
        };
        let line = self.server_line(&fmt, &e, crate::role::log::ITEM_DELETED, None);
        // (upstream log_formatted(FCLIENT): not in a daemon's log.)
        self.message(MsgCode::Client, &line)
    }

    /// Deletions still allowed by --max-delete (None = no limit).
    fn delete_allowed(&mut self) -> bool {
        let limit = match self.cfg.opts.max_delete {
            None => return true,
            Some(-1) => 0,
            Some(n) if n < 0 => return true,
            Some(n) => n,
        };
        let done = self.del.files
            + self.del.dirs
            + self.del.symlinks
            + self.del.devices
            + self.del.specials;
        if done >= limit {
            self.skipped_deletes += 1;
            return false;
        }
        true
    }

    /// Remove one existing item (recursively for dirs), reporting each
    /// deletion; false when it (or, for a directory, part of it) stayed.
    fn delete_item(&mut self, rel: &[u8], st: &Stat) -> Result<bool, RoleError> {
        if self.is_protected(rel, mode::is_dir(st.mode)) {
            return Ok(false);
        }
        if mode::is_dir(st.mode) {
            return self.remove_dir(rel, st.mode, true, true);
        }
        if !self.delete_allowed() {
            return Ok(false);
        }
        if !self.remove_nondir(rel)? {
            return Ok(false);
        }
        match st.mode & 0o170000 {
            m if m == mode::S_IFLNK => self.del.symlinks += 1,
            m if m == mode::S_IFCHR || m == mode::S_IFBLK => self.del.devices += 1,
            m if m == mode::S_IFIFO || m == mode::S_IFSOCK => self.del.specials += 1,
            _ => self.del.files += 1,
        }
        self.deleted(rel, st.mode)?;
        Ok(true)
    }

    /// upstream's "cannot delete non-empty directory" (an info line).
    fn say_not_empty(&mut self, rel: &[u8]) -> Result<(), RoleError> {
        self.message(
            MsgCode::Info,
            &format!(
                "cannot delete non-empty directory: {}",
                crate::protocol::text::name(rel)
            ),
        )
    }

    /// Remove directory `rel` with its contents, in reverse list order
    /// (upstream delete_dir_contents), each content item a deletion. A
    /// `counted` directory is a deletion itself (logged, counted, limited by
    /// --max-delete); without `contents_may_go` only an empty one goes.
    /// False (after upstream's "cannot delete non-empty directory" when
    /// something stayed inside) unless it is gone.
    fn remove_dir(
        &mut self,
        rel: &[u8],
        dir_mode: u32,
        counted: bool,
        contents_may_go: bool,
    ) -> Result<bool, RoleError> {
        // upstream delete_dir_contents: the directory's own rules files
        // count below it, and `-vv` reports each name's rule.
        let token = self.push_filter_dir(rel)?;
        let kids = self.deletion_scan(rel, |_| false)?;
        let mut all_gone = contents_may_go || kids.is_empty();
        if all_gone {
            for (child, cst) in kids.iter().rev() {
                all_gone &= self.delete_item(child, cst)?;
            }
        }
        if let Some(t) = token {
            self.rules.stack.leave_dir(t);
        }
        if !all_gone {
            self.say_not_empty(rel)?;
            return Ok(false);
        }
        if counted && !self.delete_allowed() {
            return Ok(false);
        }
        let removed = if self.cfg.opts.dry_run {
            Ok(())
        } else {
            self.cfg.dest.rmdir(rel)
        };
        match removed {
            Ok(()) => {
                if counted {
                    self.del.dirs += 1;
                    self.deleted(rel, dir_mode)?;
                }
                Ok(true)
            }
            Err(e) if e.errno() == nix::libc::ENOTEMPTY || e.errno() == nix::libc::EEXIST => {
                self.say_not_empty(rel)?;
                Ok(false)
            }
            Err(e) => {
                self.error(format!("rsync: [generator] {e}"))?;
                Ok(false)
            }
        }
    }

    /// Unlink (or back up, with --backup) one non-directory; false after
    /// reporting a failure.
    fn remove_nondir(&mut self, rel: &[u8]) -> Result<bool, RoleError> {
        if self.cfg.opts.dry_run {
            return Ok(true);
        }
        let r = match self.cfg.backup() {
            Some((suffix, dir)) => self.cfg.dest.backup(rel, &suffix, dir.as_deref()),
            None => self.cfg.dest.unlink(rel).map(|()| false),
        };
        match r {
            Ok(backed_up) => {
                // upstream make_backup's report, before the deletion's.
                if let Some(line) = backed_up.then(|| self.cfg.backed_up_line(rel)).flatten() {
                    self.message(MsgCode::Info, &line)?;
                }
                Ok(true)
            }
            Err(e) => {
                self.error(format!("rsync: [generator] {e}"))?;
                Ok(false)
            }
        }
    }

    /// delete_item with DEL_MAKE_ROOM: clear what is in the way of a new
    /// entry of mode `new_mode`. The item itself is neither logged nor
    /// counted nor limited by --max-delete (a directory's contents are,
    /// and go only with --delete or --force); on failure, upstream's "could
    /// not make way" error, and false.
    fn make_room(&mut self, rel: &[u8], st: &Stat, new_mode: u32) -> Result<bool, RoleError> {
        let is_dir = mode::is_dir(st.mode);
        let ok = if (self.cfg.daemon_excluded)(rel, is_dir) {
            false
        } else if is_dir {
            let may_empty = self.cfg.opts.delete || self.cfg.opts.force;
            self.remove_dir(rel, st.mode, false, may_empty)?
        } else {
            self.remove_nondir(rel)?
        };
        if !ok {
            let desc = match new_mode & 0o170000 {
                m if m == mode::S_IFREG => "regular file",
                m if m == mode::S_IFDIR => "directory",
                m if m == mode::S_IFLNK => "symlink",
                m if m == mode::S_IFCHR || m == mode::S_IFBLK => "device file",
                _ => "special file",
            };
            self.error(format!(
                "could not make way for new {desc}: {}",
                crate::protocol::text::name(rel)
            ))?;
        }
        Ok(ok)
    }

    /// Is `rel` left alone by deletions (module rules, the client's)?
    fn is_protected(&self, rel: &[u8], is_dir: bool) -> bool {
        (self.cfg.daemon_excluded)(rel, is_dir)
            || self
                .rules
                .stack
                .is_excluded(rel, is_dir, crate::filter::Side::Receiver)
    }

    /// What exists in `dir` and is not `keep`, in file-list order; at
    /// `--debug=filter` each name's rule is reported first, in the
    /// directory's own order (upstream get_dirlist checks every name).
    fn deletion_scan(
        &mut self,
        dir: &[u8],
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<(Vec<u8>, Stat)>, RoleError> {
        let mut v = if self.cfg.client_rules.report {
            let all = self.dir_entries(dir, |_| false);
            for (rel, st) in &all {
                let hit =
                    self.rules
                        .stack
                        .hit(rel, mode::is_dir(st.mode), crate::filter::Side::Receiver);
                if let Some(line) = hit.map(|h| h.report("generator", rel, mode::is_dir(st.mode))) {
                    self.message(MsgCode::Info, &line)?;
                }
            }
            all.into_iter().filter(|(rel, _)| !keep(rel)).collect()
        } else {
            self.dir_entries(dir, keep)
        };
        self.sort_entries(&mut v);
        Ok(v)
    }

    /// change_local_filter_dir: the rules files of `dir` (and of the
    /// entered directories above it) are in force. A file that cannot be
    /// parsed ends the transfer, as upstream.
    fn change_filter_dir(&mut self, dir: &[u8]) -> Result<(), RoleError> {
        if !self.rules.stack.has_dir_merge() {
            return Ok(());
        }
        let depth = dir_depth(dir);
        let d = &mut self.rules;
        while d.entered.last().is_some_and(|(at, _)| *at >= depth) {
            if let Some((_, t)) = d.entered.pop() {
                d.stack.leave_dir(t);
            }
        }
        if let Some(t) = self.push_filter_dir(dir)? {
            self.rules.entered.push((depth, t));
        }
        Ok(())
    }

    /// push_local_filters: read `dir`'s rules files on top of those in
    /// force; the token to leave it by.
    fn push_filter_dir(
        &mut self,
        dir: &[u8],
    ) -> Result<Option<crate::filter::DirToken>, RoleError> {
        let cfg = self.cfg;
        if !self.rules.stack.has_dir_merge() {
            return Ok(None);
        }
        let outside = cfg.client_rules.outside;
        let mut read = |rel: &[u8]| -> Option<Vec<u8>> {
            use std::os::unix::ffi::OsStrExt;
            let f = if rel.first() == Some(&b'/') {
                if !outside {
                    return None;
                }
                std::fs::File::open(std::ffi::OsStr::from_bytes(rel)).ok()?
            } else {
                cfg.dest.open_read(rel).ok()?
            };
            crate::flist::filters::read_bounded(f)
        };
        let d = &mut self.rules;
        let r = d.stack.enter_dir(dir, &mut read);
        let warnings = d.stack.list_mut().take_warnings();
        let t = match r {
            Ok(t) => t,
            Err(e) => {
                // upstream exits here (RERR_SYNTAX); the transfer stops
                // short: nothing more is requested or deleted.
                let m = e.to_string();
                self.message(MsgCode::Error, &m)?;
                self.stop = Some(m.clone());
                return Err(RoleError::Refused(m));
            }
        };
        for w in warnings {
            self.message(MsgCode::Error, &w)?;
        }
        Ok(Some(t))
    }

    /// delete_in_dir: remove what the list does not have in directory `dir`.
    fn delete_in_dir(&mut self, dir: &[u8]) -> Result<(), RoleError> {
        if self.sender_io_error & crate::flist::build::IOERR_GENERAL != 0
            && !self.cfg.opts.ignore_errors
        {
            if std::mem::replace(&mut self.warned_io_error, true) {
                return Ok(());
            }
            return self.message(
                MsgCode::Info,
                "IO error encountered -- skipping file deletion",
            );
        }
        self.change_filter_dir(dir)?;
        let list = self.list.clone();
        let keep: std::collections::HashSet<Vec<u8>> = self
            .children
            .get(dir)
            .map(|v| v.iter().map(|&i| list.files[i].name.clone()).collect())
            .unwrap_or_default();
        let gone = self.deletion_scan(dir, |rel| keep.contains(rel))?;
        for (rel, st) in gone.iter().rev() {
            self.delete_item(rel, st)?;
        }
        Ok(())
    }

    /// The first basis directory holding `rel` with the entry's type (upstream try_dests_*).
    fn find_in_basis(&self, rel: &[u8], e: &FileEntry) -> Option<(usize, Stat)> {
        self.cfg
            .basis_dirs
            .iter()
            .enumerate()
            .find_map(|(j, (_, root))| {
                let st = root.stat(rel).ok().flatten()?;
                ((st.mode & 0o170000) == (e.mode & 0o170000)).then_some((j, st))
            })
    }

    /// Is the basis file `j` the same as the entry (quick check, or `-c`)?
    fn basis_matches(&self, j: usize, rel: &[u8], e: &FileEntry, st: &Stat) -> bool {
        let cfg = self.cfg;
        if st.size != e.size as u64 {
            return false;
        }
        if cfg.opts.checksum {
            let Some(want) = e.checksum() else {
                return false;
            };
            let Ok(mut f) = cfg.basis_dirs[j].1.open_read(rel) else {
                return false;
            };
            return crate::checksum::strong::file_checksum(cfg.n.file_checksum, &mut f)
                .map(|d| d.as_bytes().get(..want.len()) == Some(want))
                .unwrap_or(false);
        }
        cfg.opts.size_only || cfg.same_mtime(e, st)
    }

    /// A regular file missing here: an identical one in a basis dir is
    /// skipped, copied or linked; a different one serves as the delta basis.
    /// Returns true when the entry is done.
    fn try_basis_dirs(&mut self, ndx: usize, rel: &[u8]) -> Result<bool, RoleError> {
        let cfg = self.cfg;
        let list = self.list.clone();
        let e = &list.files[ndx];
        let mut first: Option<(usize, Stat)> = None;
        for (j, (kind, root)) in cfg.basis_dirs.iter().enumerate() {
            let Some(st) = root.stat(rel).ok().flatten() else {
                continue;
            };
            if !mode::is_reg(st.mode) {
                continue;
            }
            if first.is_none() {
                first = Some((j, st));
            }
            if !self.basis_matches(j, rel, e, &st) {
                continue;
            }
            let same_attrs = cfg.itemize(e, Some(&st), 0)
                & (iflags::REPORT_PERMS
                    | iflags::REPORT_OWNER
                    | iflags::REPORT_GROUP
                    | iflags::REPORT_TIME)
                == 0
                // -X: a link takes the basis's attributes too.
                && cfg.xattrs.as_ref().is_none_or(|x| !x.differs(e, root, rel, true));
            match kind {
                BasisKind::Compare => return Ok(true),
                BasisKind::Link if same_attrs => {
                    if !cfg.opts.dry_run {
                        if let Err(err) = cfg.dest.link_from(root, rel, rel) {
                            self.error(format!("rsync: [generator] {err}"))?;
                        }
                    }
                    let fl = cfg.itemize(e, Some(&st), iflags::LOCAL_CHANGE);
                    self.item(ndx, fl)?;
                    return Ok(true);
                }
                _ => {
                    // --copy-dest (or a link-dest file whose attributes differ): a local copy.
                    if !cfg.opts.dry_run {
                        let copied = (|| -> Result<(), crate::fs::dest::FsError> {
                            let mut from = root.open_read(rel)?;
                            let (mut to, tname) = cfg.dest.create_temp(rel)?;
                            std::io::copy(&mut from, &mut to).map_err(|e| {
                                crate::fs::dest::FsError::os(
                                    format!("copy {}", cfg.dest.show(rel)),
                                    e.raw_os_error().unwrap_or(nix::libc::EIO),
                                )
                            })?;
                            tname.set_mode(&to, cfg.dest_perms(e, None))?;
                            let (uid, gid) = cfg.dest_owner(e);
                            tname.set_owner(&to, uid, gid)?;
                            if cfg.opts.times {
                                tname.set_times(&to, e.mtime, e.mtime_nsec, None)?;
                            }
                            drop(to);
                            tname.commit(rel)
                        })();
                        if let Err(err) = copied {
                            self.error(format!("rsync: [generator] {err}"))?;
                        }
                    }
                    let fl = cfg.itemize(e, Some(&st), iflags::LOCAL_CHANGE);
                    self.item(ndx, fl)?;
                    return Ok(true);
                }
            }
        }
        if let Some((j, st)) = first {
            let fl = cfg.itemize(e, Some(&st), iflags::TRANSFER);
            self.request_from(ndx, fl, Some(&st), false, Some(Basis::Dir(j)))?;
            return Ok(true);
        }
        Ok(false)
    }

    /// What exists in directory `dir`, in the directory's own order;
    /// `skip` is asked before the stat.
    fn dir_entries(&self, dir: &[u8], skip: impl Fn(&[u8]) -> bool) -> Vec<(Vec<u8>, Stat)> {
        let mut v: Vec<(Vec<u8>, Stat)> = Vec::new();
        for n in self.cfg.dest.list_dir(dir).unwrap_or_default() {
            let rel = join(dir, &n);
            if skip(&rel) {
                continue;
            }
            if let Ok(Some(st)) = self.cfg.dest.stat(&rel) {
                v.push((rel, st));
            }
        }
        v
    }

    /// Sort entries of one directory in file-list order.
    fn sort_entries(&self, v: &mut [(Vec<u8>, Stat)]) {
        let proto = self.cfg.n.proto;
        v.sort_by(|a, b| {
            f_name_cmp(
                &a.0,
                mode::is_dir(a.1.mode),
                &b.0,
                mode::is_dir(b.1.mode),
                proto,
            )
        });
    }

    /// Send a transfer request for entry `ndx` (with block sums of the existing file when there is one).
    fn request(
        &mut self,
        ndx: usize,
        fl: u16,
        basis: Option<&Stat>,
        redo: bool,
    ) -> Result<(), RoleError> {
        self.request_from(ndx, fl, basis, redo, None)
    }

    /// `request` with the basis elsewhere, `alt` (ITEM_BASIS_TYPE_FOLLOWS,
    /// and ITEM_XNAME_FOLLOWS with a fuzzy basis's name).
    fn request_from(
        &mut self,
        ndx: usize,
        mut fl: u16,
        basis: Option<&Stat>,
        redo: bool,
        alt: Option<Basis>,
    ) -> Result<(), RoleError> {
        let list = self.list.clone();
        let e = &list.files[ndx];
        let wire = list.ndx_start + ndx as i32;
        if !redo {
            self.hl_outcome(HlState::Sent);
        }
        self.tx.write(&mut self.buf, wire);
        if fl & iflags::TRANSFER != 0 && !redo && !self.cfg.opts.dry_run {
            *self.pending.entry(list.ndx_start).or_default() += 1;
        }
        if alt.is_some() {
            fl |= iflags::BASIS_TYPE_FOLLOWS;
        }
        if let Some(Basis::Fuzzy { .. }) = alt {
            fl |= iflags::XNAME_FOLLOWS;
        }
        if self.cfg.n.proto >= 29 {
            put_short(&mut self.buf, fl);
            if let Some(b) = &alt {
                self.buf.push(b.type_byte());
            }
            if let Some(Basis::Fuzzy { name, .. }) = &alt {
                crate::protocol::varint::put_vstring(&mut self.buf, name)?;
            }
            self.xattr_request(e, fl);
        }
        if self.cfg.opts.dry_run {
            return self.flush_buf();
        }
        let whole = self.cfg.whole_file();
        if !whole && !redo {
            self.fuzzy_mark_sent(&e.name);
        }
        let basis_len = basis
            .filter(|st| mode::is_reg(st.mode) && !whole)
            .map(|st| st.size as i64);
        let digest_len = self.cfg.n.checksum.digest_len();
        let head = match basis_len {
            Some(len) if len > 0 => SumHead::for_file(
                len,
                self.cfg.n.proto,
                self.cfg.opts.block_size,
                redo,
                digest_len,
            )
            .unwrap_or(SumHead::EMPTY),
            _ => SumHead::EMPTY,
        };
        // The basis under another name: a partial file, an in-place
        // backup, a fuzzy match.
        let other_name = match &alt {
            Some(Basis::Partial) => self.cfg.partial_path(&e.name),
            Some(Basis::Backup) => self.cfg.backup_path(&e.name),
            Some(Basis::Fuzzy { name, .. }) => Some(join(parent_of(&e.name), name)),
            _ => None,
        };
        let root = match &alt {
            Some(Basis::Dir(j)) => self.cfg.basis_dirs.get(*j).map(|b| &b.1),
            Some(Basis::Fuzzy { list, .. }) if *list > 0 => {
                self.cfg.basis_dirs.get(*list - 1).map(|b| &b.1)
            }
            _ => None,
        }
        .unwrap_or(&self.cfg.dest);
        let src = other_name.as_deref().unwrap_or(&e.name);
        let file = if head.count > 0 {
            root.open_read(src).ok()
        } else {
            None
        };
        let head = if file.is_some() { head } else { SumHead::EMPTY };
        WireSumHead {
            count: head.count,
            blength: head.blength,
            s2length: head.s2length,
            remainder: head.remainder,
        }
        .write(&mut self.buf, self.cfg.n.proto);
        // --append: the header alone tells the sender how much is already
        // here (not in a redo, which sends sums as usual).
        if let Some(f) = file.filter(|_| self.cfg.opts.append == 0 || redo) {
            let (kind, seed, pso) = (
                self.cfg.n.checksum,
                self.cfg.n.seed as u32,
                self.cfg.n.proper_seed_order(),
            );
            let mut sums = Vec::with_capacity(64 * 1024);
            let r = generate_file_sums(&f, &head, kind, seed, pso, |s1, strong| {
                put_int(&mut sums, s1 as i32);
                sums.extend_from_slice(strong);
                Ok(())
            });
            if r.is_err() {
                // The basis changed under us: the zero-filled sums only cost matches.
            }
            self.buf.extend_from_slice(&sums);
        }
        if self.buf.len() >= 32 * 1024 {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// -H: the group of entry `ndx` of `list`, when it has one.
    fn hlink_group(&self, list: &RecvList, ndx: usize) -> Option<HlinkGroup> {
        if self.cfg.opts.hard_links == 0 || self.cfg.opts.list_only {
            return None;
        }
        list.hlink.get(ndx).copied().flatten()
    }

    /// Notes the lists received since the last call (their members are the
    /// last of their groups so far).
    fn note_hlink_lists(&mut self) {
        if self.cfg.opts.hard_links == 0 {
            return;
        }
        if !self.inc {
            if self.hl_noted == 0 {
                let l = self.list.clone();
                self.hl.note_list(&l);
                self.hl_noted = 1;
            }
            return;
        }
        let lists: Vec<std::sync::Arc<RecvList>> = {
            let r = match self.registry.lock() {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            r.lists.iter().skip(self.hl_noted).cloned().collect()
        };
        for l in &lists {
            self.hl.note_list(l);
        }
        self.hl_noted += lists.len();
    }

    /// A hard-linked member (upstream recv_generator with hard_link_check
    /// and handle_skipped_hlink): handled as any entry, with the group's
    /// say on whether it is made, linked or waits.
    fn hlinked_entry(
        &mut self,
        key: HlinkGroup,
        list: std::sync::Arc<RecvList>,
        ndx: usize,
    ) -> Result<(), RoleError> {
        let wire = list.ndx_start + ndx as i32;
        let saved = std::mem::replace(&mut self.list, list.clone());
        self.hl_cur = Some(HlCur {
            key,
            wire,
            src: (list.clone(), ndx),
            end: None,
        });
        let r = self.entry_at(&list.files[ndx], wire, ndx);
        let cur = self.hl_cur.take();
        self.list = saved;
        r?;
        let Some(cur) = cur else {
            return Ok(());
        };
        match cur.end {
            Some(HlEnd::Skipped) => {
                if let Some(m) = self.hl.skipped(key, wire) {
                    // The member before it is the last now: handled again.
                    if let Some((l, i)) = m.src {
                        self.hold(l.ndx_start, -1, m.state);
                        return self.hlinked_entry(key, l, i);
                    }
                }
                Ok(())
            }
            Some(HlEnd::Linked) => {
                self.hl.handled(key, wire, cur.src, HlState::Done);
                self.flush_buf()
            }
            Some(HlEnd::As(HlState::Waiting)) => {
                self.hold(list.ndx_start, 1, HlState::Waiting);
                Ok(())
            }
            Some(HlEnd::As(HlState::Done)) => {
                self.hl.handled(key, wire, cur.src, HlState::Done);
                self.hl_finish(key, wire, &list.files[ndx].name)
            }
            Some(HlEnd::As(HlState::Sent)) => {
                self.hl.handled(key, wire, cur.src, HlState::Sent);
                if self.cfg.opts.dry_run {
                    // Nothing comes: the group counts it as made (upstream
                    // finish_hard_link when !do_xfers).
                    self.hl.arrived(wire);
                    return self.hl_finish(key, wire, &list.files[ndx].name);
                }
                Ok(())
            }
            Some(HlEnd::As(st)) => {
                self.hold(list.ndx_start, 1, st);
                self.hl.handled(key, wire, cur.src, st);
                Ok(())
            }
            None => {
                self.hl.handled(key, wire, cur.src, HlState::Other);
                Ok(())
            }
        }
    }

    /// Counts a deferred or waiting member of a list in or out: it holds
    /// its list until it is linked (upstream in_progress), as the sender
    /// resolves its index to report the link.
    fn hold(&mut self, start: i32, by: i64, state: HlState) {
        if !matches!(state, HlState::Waiting | HlState::Deferred) || !self.inc {
            return;
        }
        let h = self.hl_hold.entry(start).or_default();
        *h = (*h as i64 + by).max(0) as usize;
    }

    /// The hard-linked member being handled ends so (the first word counts).
    fn hl_end(&mut self, end: HlEnd) {
        if let Some(c) = &mut self.hl_cur {
            c.end.get_or_insert(end);
        }
    }

    /// The hard-linked member being handled ends in `state`.
    fn hl_outcome(&mut self, state: HlState) {
        self.hl_end(HlEnd::As(state));
    }

    /// The hard-linked member being handled is left out.
    fn hl_skip(&mut self) {
        self.hl_end(HlEnd::Skipped);
    }

    /// Member `wire`'s file, `name`, is in place: the members behind it
    /// are linked to it (upstream finish_hard_link).
    fn hl_finish(&mut self, key: HlinkGroup, wire: i32, name: &[u8]) -> Result<(), RoleError> {
        for m in self.hl.finish(key, wire, name) {
            let Some((l, i)) = &m.src else { continue };
            self.hold(l.ndx_start, -1, m.state);
            self.hl_link(m.wire, &l.files[*i], name)?;
        }
        self.flush_buf()
    }

    /// Transfers the receiver finished (and whether each file landed): a
    /// hard-link member on its way is in place, or not.
    fn transfers_done(&mut self, ndxs: &[(i32, bool)]) -> Result<(), RoleError> {
        if self.cfg.opts.hard_links == 0 {
            return Ok(());
        }
        for &(ndx, ok) in ndxs {
            let Some(key) = self.hl.arrived(ndx) else {
                continue;
            };
            if !ok {
                self.hl.failed(key, ndx);
            } else if let Some(name) = self.hl.name_of(key, ndx) {
                self.hl_finish(key, ndx, &name)?;
            }
        }
        Ok(())
    }

    /// Link member `e` (at `wire`) to `target`, the group's file (upstream
    /// maybe_hard_link), reporting an `hf` item. Returns whether it is
    /// linked.
    fn hl_link(&mut self, wire: i32, e: &FileEntry, target: &[u8]) -> Result<bool, RoleError> {
        let cfg = self.cfg;
        let name = &e.name;
        let lst = cfg.dest.stat(target).ok().flatten();
        let st = cfg.dest.stat(name).ok().flatten();
        if let (Some(a), Some(b)) = (&lst, &st) {
            if a.dev == b.dev && a.ino == b.ino {
                let fl = cfg.itemize(e, st.as_ref(), iflags::LOCAL_CHANGE | iflags::XNAME_FOLLOWS);
                self.item_xname(wire, fl, b"", e)?;
                return Ok(true);
            }
        }
        if lst.is_none() && !cfg.opts.dry_run {
            return Ok(false);
        }
        let fl = cfg.itemize(e, st.as_ref(), iflags::LOCAL_CHANGE | iflags::XNAME_FOLLOWS);
        if !cfg.opts.dry_run {
            if let Some(s) = &st {
                if mode::is_dir(s.mode) {
                    let s = *s;
                    if !self.make_room(name, &s, e.mode)? {
                        return Ok(false);
                    }
                } else {
                    let _ = cfg.dest.unlink(name);
                }
            }
            if let Err(err) = cfg.dest.hard_link(target, name) {
                self.error(format!("rsync: [generator] {err}"))?;
                return Ok(false);
            }
        }
        if self.cfg.n.proto >= 29 {
            self.tx.write(&mut self.buf, wire);
            put_short(&mut self.buf, fl);
            crate::protocol::varint::put_vstring(&mut self.buf, target)?;
            self.xattr_request(e, fl);
            // The sender may remove this name too (upstream
            // hard_link_check and finish_hard_link).
            self.success(wire)?;
        }
        Ok(true)
    }

    /// A symlink, device or special already as the sender's: its
    /// attributes fixed, its item, and the `-vv` report.
    fn current_special(
        &mut self,
        rel: &[u8],
        e: &FileEntry,
        s: &Stat,
        (ndx, wire): (usize, i32),
    ) -> Result<(), RoleError> {
        let cfg = self.cfg;
        let fl = cfg.itemize(e, Some(s), 0);
        let updated = cfg.fix_attrs(rel, e, s, true).unwrap_or(true);
        self.hl_outcome(HlState::Done);
        self.item(ndx, fl)?;
        self.attrs_report(rel, updated)?;
        self.success(wire)
    }

    /// `--remove-source-files`: tell the sender that `wire` is at the
    /// destination, so it may remove its own (upstream recv_generator's
    /// return_with_success, for symlinks, devices and specials too).
    fn success(&mut self, wire: i32) -> Result<(), RoleError> {
        if self.cfg.opts.remove_source_files && !self.cfg.opts.dry_run {
            self.flush_buf()?;
            self.out
                .lock()
                .send_msg(MsgCode::Success, &wire.to_le_bytes())?;
        }
        Ok(())
    }

    /// upstream set_file_attrs with ATTRS_REPORT: at `--info=name2` (`-vv`)
    /// without itemized output, a current entry is named, "is uptodate"
    /// when nothing about it needed changing.
    fn attrs_report(&mut self, rel: &[u8], updated: bool) -> Result<(), RoleError> {
        let o = &self.cfg.opts;
        let itemizing = o.itemize > 0 || o.log_format.as_deref().is_some_and(|f| f.contains("%i"));
        if o.info_level("name") < 2 || itemizing {
            return Ok(());
        }
        let name = crate::protocol::text::name(rel);
        let line = if updated {
            name.into_owned()
        } else {
            format!("{name} is uptodate")
        };
        self.message(MsgCode::Client, &line)
    }

    /// An item record with a name after it (`XNAME_FOLLOWS`), when shown.
    fn item_xname(
        &mut self,
        wire: i32,
        fl: u16,
        xname: &[u8],
        e: &FileEntry,
    ) -> Result<(), RoleError> {
        if !(significant(fl) || self.itemize_all || !xname.is_empty()) {
            return Ok(());
        }
        if self.cfg.n.proto < 29 {
            return self.log_own_item(e, fl, xname);
        }
        self.tx.write(&mut self.buf, wire);
        put_short(&mut self.buf, fl);
        crate::protocol::varint::put_vstring(&mut self.buf, xname)?;
        self.xattr_request(e, fl);
        Ok(())
    }

    /// recv_generator for one entry.
    fn entry(&mut self, ndx: usize) -> Result<(), RoleError> {
        if self.stop.is_some() {
            return Ok(());
        }
        let r = self.entry_inner(ndx);
        self.absorb(r)
    }

    /// A rules file that could not be parsed stopped the generator: what
    /// it was doing is dropped, the rest of the protocol goes on.
    fn absorb(&self, r: Result<(), RoleError>) -> Result<(), RoleError> {
        match r {
            Err(RoleError::Refused(_)) if self.stop.is_some() => Ok(()),
            r => r,
        }
    }

    fn entry_inner(&mut self, ndx: usize) -> Result<(), RoleError> {
        let cfg = self.cfg;
        let list = self.list.clone();
        let e = &list.files[ndx];
        if let Some(key) = self.hlink_group(&list, ndx) {
            return self.hlinked_entry(key, list.clone(), ndx);
        }
        if cfg.opts.list_only {
            // A directory of incremental recursion is listed under its own list.
            let handled_later = self.inc && mode::is_dir(e.mode);
            if !handled_later && !e.implied_dir {
                self.list_entry(e)?;
            }
            return Ok(());
        }
        if self.unwanted_implied_dir(e) {
            return Ok(());
        }
        if self.inc && mode::is_dir(e.mode) {
            // Incremental recursion: only make sure it exists now; it is
            // handled in full right before its own list (upstream is_dir < 0).
            let rel = e.name.clone();
            if !(cfg.daemon_excluded)(&rel, true) {
                self.fuzzy_note_parent(&rel);
            }
            if e.name != b"." && !cfg.opts.dry_run && !(cfg.daemon_excluded)(&rel, true) {
                match cfg.dest.stat_keep_dirlink(&rel) {
                    Ok(Some(s)) if mode::is_dir(s.mode) => {}
                    // --existing: a missing directory is not made (upstream
                    // recv_generator returns for is_dir < 0; its own pass
                    // says "not creating new directory").
                    Ok(None) if cfg.opts.existing => {}
                    Ok(other) => {
                        if let Some(s) = other {
                            self.make_room(&rel, &s, e.mode)?;
                        }
                        if cfg.dest.mkdir(&rel, (e.mode | 0o700) & 0o700).is_ok() {
                            self.created.insert(rel);
                        }
                    }
                    Err(_) => {}
                }
            }
            return Ok(());
        }
        self.entry_at(e, list.ndx_start + ndx as i32, ndx)
    }

    /// An implied directory of -R with --no-implied-dirs: sent only to
    /// carry the incremental lists below it, not made here (upstream
    /// recv_generator's FLAG_IMPLIED_DIR check).
    fn unwanted_implied_dir(&self, e: &FileEntry) -> bool {
        mode::is_dir(e.mode) && e.implied_dir && self.cfg.opts.no_implied_dirs
    }

    /// upstream recv_generator: with `-R --no-implied-dirs` the sender
    /// leaves out the directories above a name, so when the entries move to
    /// another directory that is missing here, its path is made (mode 0777
    /// less the umask, as make_path).
    fn make_missing_parent(&mut self, rel: &[u8], mode: u32) -> Result<(), RoleError> {
        let cfg = self.cfg;
        if !(cfg.opts.relative_paths() && cfg.opts.no_implied_dirs) || mode == 0 {
            return Ok(());
        }
        let Some(slash) = rel.iter().rposition(|&c| c == b'/') else {
            return Ok(());
        };
        let dn = &rel[..slash];
        if dn.is_empty() || self.prior_parent.as_deref() == Some(dn) {
            return Ok(());
        }
        self.prior_parent = Some(dn.to_vec());
        if cfg.opts.dry_run || matches!(cfg.dest.stat_keep_dirlink(dn), Ok(Some(_))) {
            return Ok(());
        }
        if let Err(err) = cfg.dest.make_path(dn, 0o777) {
            self.error(format!("rsync: [generator] recv_generator: {err}"))?;
        }
        Ok(())
    }

    /// recv_generator for one entry at wire index `wire` (`ndx` its position in the current list).
    fn entry_at(&mut self, e: &FileEntry, wire: i32, ndx: usize) -> Result<(), RoleError> {
        let cfg = self.cfg;
        if self.unwanted_implied_dir(e) {
            return Ok(());
        }
        if cfg.opts.list_only {
            if !e.implied_dir {
                self.list_entry(e)?;
            }
            return Ok(());
        }
        if !self.missing_dirs.is_empty() {
            let below = e
                .name
                .iter()
                .enumerate()
                .any(|(i, &c)| c == b'/' && self.missing_dirs.contains(&e.name[..i]));
            if below {
                self.hl_skip();
                return Ok(());
            }
        }
        let rel = e.name.clone();
        let is_dir = mode::is_dir(e.mode);
        if e.name != b"." && (cfg.daemon_excluded)(&rel, is_dir) {
            self.hl_skip();
            return self.error(format!(
                "ERROR: daemon refused to receive {} \"{}\"",
                if is_dir { "directory" } else { "file" },
                crate::protocol::text::name(&rel)
            ));
        }
        self.make_missing_parent(&rel, e.mode)?;
        self.fuzzy_note_parent(&rel);
        // upstream gen_entry_stat: -K follows a symlink where a directory
        // goes (stat_keep_dirlink is a plain lstat without -K).
        let looked = if is_dir {
            cfg.dest.stat_keep_dirlink(&rel)
        } else {
            cfg.dest.stat(&rel)
        };
        let st = match looked {
            Ok(s) => s,
            // upstream recv_generator: only a file's data needs its stat.
            // Anything else is made as if nothing were there, and that
            // fails with its own message (a directory's after its item
            // line); a missing argument's is simply not deleted.
            Err(_) if !mode::is_reg(e.mode) => None,
            Err(err) => {
                return self.error(format!(
                    "rsync: [generator] recv_generator: failed to stat {}: {}",
                    cfg.dest.show(&rel),
                    stock_os_text(&err)
                ));
            }
        };
        if e.mode == 0 {
            // A "missing" argument (--delete-missing-args): what is here
            // goes; a directory with its contents only under --delete or
            // --force (upstream recv_generator, del_opts).
            if let (Some(s), true) = (st, cfg.opts.delete_missing_args) {
                if mode::is_dir(s.mode) {
                    let recurse = cfg.opts.delete || cfg.opts.force;
                    self.remove_dir(&rel, s.mode, true, recurse)?;
                } else {
                    self.delete_item(&rel, &s)?;
                }
            }
            return Ok(());
        }
        if cfg.opts.existing && st.is_none() {
            self.hl_skip();
            if is_dir {
                self.missing_dirs.insert(rel.clone());
            }
            if cfg.opts.info_level("skip") >= 1 {
                let line = format!(
                    "not creating new {} \"{}\"",
                    if is_dir { "directory" } else { "file" },
                    crate::protocol::text::name(&rel)
                );
                self.message(MsgCode::Info, &line)?;
            }
            return Ok(());
        }
        if let (true, Some(s), false) = (cfg.opts.ignore_existing, &st, is_dir) {
            self.hl_skip();
            return self.exists_note(&rel, e, s);
        }
        // A hard-linked member: its group may have a file to link it to,
        // or one on its way to wait for (upstream hard_link_check).
        if let Some((key, src)) = self.hl_cur.as_ref().map(|c| (c.key, c.src.clone())) {
            match self.hl.check(key, wire, src) {
                Check::Handle => {}
                Check::Wait => {
                    self.hl_outcome(HlState::Waiting);
                    return Ok(());
                }
                Check::LinkTo(target) => {
                    if self.hl_link(wire, e, &target)? {
                        self.hl_end(HlEnd::Linked);
                    }
                    return Ok(());
                }
            }
        }
        if is_dir {
            let mut st = st;
            if let Some(s) = &st {
                if !mode::is_dir(s.mode) {
                    let s = *s;
                    self.make_room(&rel, &s, e.mode)?;
                    st = None;
                }
            }
            // A directory missing here but present in a basis dir is reported against that one.
            let fresh =
                st.is_none() || (e.name == b"." && cfg.dest_created) || self.created.contains(&rel);
            let basis_st = if fresh {
                self.find_in_basis(&rel, e).map(|(_, b)| b)
            } else {
                None
            };
            let shown = if fresh {
                basis_st.as_ref()
            } else {
                st.as_ref()
            };
            let fl = cfg.itemize(e, shown, if fresh { iflags::LOCAL_CHANGE } else { 0 });
            if st.is_none() && !cfg.opts.dry_run {
                if let Err(err) = cfg.dest.mkdir(&rel, cfg.dest_perms(e, None) | 0o700) {
                    // upstream: the item line, then the failure, and the
                    // directory's contents are skipped.
                    self.item_at(wire, fl, e)?;
                    self.error(format!("rsync: [generator] recv_generator: {err}"))?;
                    self.message(
                        MsgCode::Error,
                        "*** Skipping any contents from this failed directory ***",
                    )?;
                    self.missing_dirs.insert(rel);
                    return Ok(());
                }
                self.created.insert(rel.clone());
            }
            self.item_at(wire, fl, e)?;
            // Its time now, and again once its contents stop changing (so
            // a transfer that ends early leaves it right, as upstream's).
            let dir_times = !cfg.opts.omit_dir_times;
            if let (Some(s), false) = (&st, cfg.opts.dry_run) {
                let _ = cfg.fix_attrs(&rel, e, s, dir_times);
            } else if st.is_none() && !cfg.opts.dry_run && dir_times && cfg.opts.times {
                let _ = cfg.dest.set_times(&rel, e.mtime, e.mtime_nsec, None);
            }
            if self.delete_timing() == DeleteTiming::During && (st.is_some() || cfg.opts.dry_run) {
                if !e.no_content_dir && !e.implied_dir {
                    self.delete_in_dir(&rel)?;
                } else {
                    self.change_filter_dir(&rel)?;
                }
            }
            return Ok(());
        }
        // A type we do not keep is skipped before anything in its way is
        // touched (upstream recv_generator deletes inside each type's branch).
        let kept = if mode::is_lnk(e.mode) {
            cfg.opts.links
        } else if mode::is_device(e.mode) {
            cfg.opts.devices && cfg.am_root
        } else if mode::is_special(e.mode) {
            cfg.opts.specials
        } else {
            true
        };
        if !kept {
            return self.message(
                MsgCode::Info,
                &format!(
                    "skipping non-regular file \"{}\"",
                    crate::protocol::text::name(&rel)
                ),
            );
        }
        // upstream recv_generator: --safe-links leaves out a link that
        // leads outside the transfer (named at -v).
        // (A munging daemon checks the munged target, as upstream's, which
        // munges as the list arrives: every link is then unsafe.)
        let unsafe_link = e.link_target().filter(|t| {
            cfg.opts.safe_links
                && mode::is_lnk(e.mode)
                && crate::flist::build::unsafe_symlink(t, &rel)
        });
        if let Some(target) = unsafe_link {
            self.hl_skip();
            if cfg.opts.info_level("name") >= 1 {
                return self.message(
                    MsgCode::Info,
                    &format!(
                        "ignoring unsafe symlink \"{}\" -> \"{}\"",
                        crate::protocol::text::name(&rel),
                        crate::protocol::text::name(target)
                    ),
                );
            }
            return Ok(());
        }
        // A non-directory: anything else in the way goes first (for a
        // regular file only once the size and update checks let it
        // through, as upstream recv_generator).
        let mut st = st;
        if let Some(s) = st {
            if (s.mode & 0o170000) != (e.mode & 0o170000) && !mode::is_reg(e.mode) {
                if !self.make_room(&rel, &s, e.mode)? {
                    return Ok(());
                }
                st = None;
            }
        }
        if mode::is_lnk(e.mode) {
            // Sanitized (or munged) already as the list arrived, at the
            // entry's own depth: climbing less far than its place in the
            // module allows, so nothing is left to do for a deeper
            // destination.
            let target = e.link_target().map(ToOwned::to_owned).unwrap_or_default();
            let mut changed = 0;
            let mut report_st = st;
            if st.is_none() {
                // Reported against a basis dir's symlink, when one has it.
                if let Some((j, b)) = self.find_in_basis(&rel, e) {
                    if cfg.basis_dirs[j].1.read_link(&rel).ok().as_deref() != Some(&target[..]) {
                        changed = iflags::REPORT_CHANGE;
                    }
                    report_st = Some(b);
                }
            }
            if let Some(s) = &st {
                if cfg.dest.read_link(&rel).ok().as_deref() == Some(&target[..]) {
                    return self.current_special(&rel, e, s, (ndx, wire));
                }
                changed = iflags::REPORT_CHANGE;
                if !cfg.opts.dry_run {
                    match cfg.backup() {
                        Some((suffix, dir)) => {
                            let _ = cfg.dest.backup(&rel, &suffix, dir.as_deref());
                        }
                        None => {
                            let _ = cfg.dest.unlink(&rel);
                        }
                    }
                }
            }
            let fl = cfg.itemize(e, report_st.as_ref(), iflags::LOCAL_CHANGE | changed);
            if !cfg.opts.dry_run {
                if let Err(err) = cfg.dest.symlink(&target, &rel) {
                    return self.error(format!("rsync: [generator] {err}"));
                }
                let (uid, gid) = cfg.dest_owner(e);
                let _ = cfg.dest.set_owner(&rel, uid, gid);
                if cfg.opts.times && !cfg.opts.omit_link_times {
                    let _ = cfg.dest.set_times(&rel, e.mtime, e.mtime_nsec, None);
                }
            }
            self.hl_outcome(HlState::Done);
            self.item(ndx, fl)?;
            return self.success(wire);
        }
        if mode::is_device(e.mode) || mode::is_special(e.mode) {
            if let Some(s) = &st {
                if !mode::is_device(e.mode)
                    || (s.rdev_major == e.rdev_major && s.rdev_minor == e.rdev_minor)
                {
                    return self.current_special(&rel, e, s, (ndx, wire));
                }
                if !cfg.opts.dry_run {
                    let _ = cfg.dest.unlink(&rel);
                }
            }
            let fl = cfg.itemize(e, st.as_ref(), iflags::LOCAL_CHANGE);
            if !cfg.opts.dry_run {
                let m = (e.mode & 0o170000) | cfg.dest_perms(e, None);
                if let Err(err) = cfg.dest.mknod(&rel, m, e.rdev_major, e.rdev_minor) {
                    return self.error(format!("rsync: [generator] {err}"));
                }
                if let Ok(Some(s)) = cfg.dest.stat(&rel) {
                    let _ = cfg.fix_attrs(&rel, e, &s, true);
                }
            }
            self.hl_outcome(HlState::Done);
            self.item(ndx, fl)?;
            return self.success(wire);
        }
        if !mode::is_reg(e.mode) {
            return Ok(());
        }
        // Regular file: which ones to skip, which are current, which to send.
        if let Some(max) = cfg.opts.max_size.as_deref().and_then(parse_size) {
            if e.size as u64 > max {
                return self.skip_note(&e.name, "is over max-size");
            }
        }
        if let Some(min) = cfg.opts.min_size.as_deref().and_then(parse_size) {
            if (e.size as u64) < min {
                return self.skip_note(&e.name, "is under min-size");
            }
        }
        if cfg.opts.existing && st.is_none() {
            self.hl_skip();
            return Ok(());
        }
        if let (true, Some(s)) = (cfg.opts.ignore_existing, &st) {
            self.hl_skip();
            return self.exists_note(&rel, e, s);
        }
        if let Some(s) = &st {
            if cfg.opts.update && mode::is_reg(s.mode) && s.mtime > e.mtime {
                return self.skip_note(&rel, "is newer");
            }
        }
        if let Some(s) = st {
            if !mode::is_reg(s.mode) {
                if !self.make_room(&rel, &s, e.mode)? {
                    return Ok(());
                }
                st = None;
            }
        }
        let current = match &st {
            Some(s) if !cfg.opts.ignore_times => self.quick_check_ok(&rel, e, s),
            _ => false,
        };
        if let (true, Some(s)) = (current, &st) {
            self.success(wire)?;
            let fl = cfg.itemize(e, Some(s), 0);
            // With -c the time is set exactly, nanoseconds included
            // (upstream ATTRS_ACCURATE_TIME), though the quick check ignores them.
            let exact = cfg.opts.checksum
                && cfg.opts.times
                && !cfg.opts.dry_run
                && (s.mtime != e.mtime || s.mtime_nsec != e.mtime_nsec);
            let r = cfg.fix_attrs(&rel, e, s, true).and_then(|u| {
                if exact {
                    cfg.dest.set_times(&rel, e.mtime, e.mtime_nsec, None)?;
                }
                Ok(u || exact)
            });
            let updated = match r {
                Ok(u) => u,
                Err(err) => {
                    self.error(format!("rsync: [generator] {err}"))?;
                    false
                }
            };
            self.hl_outcome(HlState::Done);
            self.item(ndx, fl)?;
            return self.attrs_report(&rel, updated);
        }
        if let (true, Some(s)) = (cfg.opts.append > 0, &st) {
            if s.size >= e.size as u64 {
                return Ok(());
            }
        }
        if st.is_none() && !cfg.basis_dirs.is_empty() && self.try_basis_dirs(ndx, &rel)? {
            // Linked or copied from a basis dir, or requested from one.
            if cfg.opts.dry_run || cfg.dest.stat(&rel).ok().flatten().is_some() {
                self.hl_outcome(HlState::Done);
            }
            return Ok(());
        }
        if st.is_none() && cfg.opts.fuzzy > 0 && self.partial_basis(&rel).is_none() {
            if let Some((basis, fst)) = self.fuzzy_basis(e)? {
                // upstream: --append leaves a file whose basis is as long.
                if cfg.opts.append > 0 && fst.size >= e.size as u64 {
                    self.hl_skip();
                    return Ok(());
                }
                let mut fl = cfg.itemize(e, None, iflags::TRANSFER);
                if cfg.opts.checksum {
                    fl |= iflags::REPORT_CHANGE;
                }
                return self.request_from(ndx, fl, Some(&fst), false, Some(basis));
            }
        }
        // A missing member waits for the group's last one, which gets the
        // data (upstream: F_HLINK_NOT_LAST when statret != 0).
        if let (None, Some(c)) = (&st, &self.hl_cur) {
            if !self.hl.is_last(c.key, c.wire) {
                self.hl_outcome(HlState::Deferred);
                return Ok(());
            }
        }
        // A partial file from an interrupted transfer is the better basis (FNAMECMP_PARTIAL_DIR).
        if let Some(pst) = self.partial_basis(&rel) {
            let fl = cfg.itemize(e, st.as_ref(), iflags::TRANSFER);
            return self.request_from(ndx, fl, Some(&pst), false, Some(Basis::Partial));
        }
        let mut fl = cfg.itemize(e, st.as_ref(), iflags::TRANSFER);
        if cfg.opts.checksum {
            fl |= iflags::REPORT_CHANGE;
        }
        if let Some(s) = &st {
            match self.inplace_backup(&rel, s)? {
                InplaceBackup::Failed => return Ok(()),
                InplaceBackup::Made if !cfg.whole_file() => {
                    let basis = Some(Basis::Backup);
                    return self.request_from(ndx, fl, st.as_ref(), false, basis);
                }
                InplaceBackup::Made | InplaceBackup::NotWanted => {}
            }
        }
        self.request(ndx, fl, st.as_ref(), false)
    }

    /// `--inplace` with `--backup` (upstream recv_generator): before the
    /// file is rewritten where it is, it is copied to its backup name with
    /// its attributes; with a delta, that copy is the basis
    /// (FNAMECMP_BACKUP). Not in a dry run, nor for a redo (upstream
    /// negates make_backups then). A failed copy is reported and the file
    /// left alone.
    fn inplace_backup(&mut self, rel: &[u8], st: &Stat) -> Result<InplaceBackup, RoleError> {
        let cfg = self.cfg;
        let Some((suffix, dir)) = cfg.backup() else {
            return Ok(InplaceBackup::NotWanted);
        };
        if !cfg.inplace() || cfg.opts.dry_run || !mode::is_reg(st.mode) {
            return Ok(InplaceBackup::NotWanted);
        }
        let mut perms = st.mode & 0o7777;
        if let Some(c) = &cfg.chmod {
            perms = c.apply((st.mode & 0o170000) | perms) & 0o7777;
        }
        let attrs = crate::fs::backup::CopyAttrs {
            xattrs: cfg.xattrs.as_ref().map(|x| x.names.clone()),
            mode: perms,
            mtime: cfg.opts.times.then_some((st.mtime, st.mtime_nsec)),
            uid: (cfg.opts.owner && cfg.am_root).then_some(st.uid),
            gid: cfg.opts.group.then_some(st.gid),
        };
        match cfg.dest.backup_copy(rel, &suffix, dir.as_deref(), &attrs) {
            Ok((_, attr_err)) => {
                if let Some(err) = attr_err {
                    self.error(format!("rsync: [generator] {err}"))?;
                }
                if let Some(line) = cfg.backed_up_line(rel) {
                    self.message(MsgCode::Info, &line)?;
                }
                Ok(InplaceBackup::Made)
            }
            Err(err) => {
                self.error(format!("rsync: [generator] {err}"))?;
                Ok(InplaceBackup::Failed)
            }
        }
    }

    /// A partial file of `rel` left by an interrupted transfer
    /// (`--partial-dir`), the basis it then gets.
    fn partial_basis(&self, rel: &[u8]) -> Option<Stat> {
        let cfg = self.cfg;
        cfg.opts.partial_dir.as_ref()?;
        let pp = cfg.partial_path(rel)?;
        cfg.dest
            .stat(&pp)
            .ok()
            .flatten()
            .filter(|s| mode::is_reg(s.mode))
    }

    /// --fuzzy: the entry `rel` is handled now; a new directory's listings
    /// are made afresh when needed (upstream recv_generator's
    /// parent_dirname).
    fn fuzzy_note_parent(&mut self, rel: &[u8]) {
        if self.cfg.opts.fuzzy == 0 {
            return;
        }
        let dir = parent_of(rel);
        if self.fuzzy_dir.as_deref() != Some(dir) {
            self.fuzzy_dir = Some(dir.to_vec());
            self.fuzzy_lists = None;
        }
    }

    /// How many listings `--fuzzy` searches: the destination's directory,
    /// and with `-yy` the same directory in every basis dir.
    fn fuzzy_list_count(&self) -> usize {
        match self.cfg.opts.fuzzy {
            0 => 0,
            1 => 1,
            _ => self.cfg.basis_dirs.len() + 1,
        }
    }

    /// The regular files of directory `dir` under `root`, in file-list
    /// order, but for what the module's filters hide (upstream get_dirlist
    /// with GDL_IGNORE_FILTER_RULES: only the daemon's rules apply).
    fn fuzzy_listing(&self, root: &DestRoot, dir: &[u8]) -> Vec<crate::role::fuzzy::Candidate> {
        let mut v = Vec::new();
        for name in root.list_dir(dir).unwrap_or_default() {
            let rel = join(dir, &name);
            let Ok(Some(st)) = root.stat(&rel) else {
                continue;
            };
            if !mode::is_reg(st.mode) || (self.cfg.daemon_excluded)(&rel, false) {
                continue;
            }
            v.push(crate::role::fuzzy::Candidate {
                name,
                st,
                sent: false,
            });
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The listings of the current directory, made now if not yet.
    fn fuzzy_listings(&mut self) -> &[Vec<crate::role::fuzzy::Candidate>] {
        if self.fuzzy_lists.is_none() {
            let dir = self.fuzzy_dir.clone().unwrap_or_else(|| b".".to_vec());
            let cfg = self.cfg;
            let roots = std::iter::once(&cfg.dest).chain(cfg.basis_dirs.iter().map(|b| &b.1));
            let lists = roots
                .take(self.fuzzy_list_count())
                .map(|root| self.fuzzy_listing(root, &dir))
                .collect();
            self.fuzzy_lists = Some(lists);
        }
        self.fuzzy_lists.as_deref().unwrap_or_default()
    }

    /// How upstream names a listed file in its `--debug=fuzzy` lines.
    fn fuzzy_shown(&self, c: crate::role::fuzzy::Choice, name: &[u8]) -> String {
        let dir = self.fuzzy_dir.as_deref().unwrap_or(b".");
        let mut path = join(dir, name);
        if c.list > 0 {
            if let Some((_, bd)) = self.cfg.opts.basis_dirs.get(c.list - 1) {
                path = join(bd.trim_end_matches('/').as_bytes(), &path);
            }
        }
        crate::protocol::text::name(&path).into_owned()
    }

    /// upstream find_fuzzy for the missing regular file `e`: a basis
    /// among the files of its directory, with its listing's stat.
    fn fuzzy_basis(&mut self, e: &FileEntry) -> Result<Option<(Basis, Stat)>, RoleError> {
        let cfg = self.cfg;
        // The name the list gave it, even when it is written under another
        // (upstream weighs file->basename).
        let listed = cfg.shown_name.as_deref().unwrap_or(&e.name);
        let base = listed.rsplit(|&c| c == b'/').next().unwrap_or(listed);
        let want = crate::role::fuzzy::Wanted {
            name: base,
            size: e.size as u64,
            mtime: e.mtime,
        };
        let window = cfg.opts.modify_window.unwrap_or(0) as i64;
        let same_time = |a: i64, b: i64| {
            if window > 0 {
                (a - b).abs() <= window
            } else {
                a == b
            }
        };
        let level = cfg.opts.debug_level("FUZZY");
        let mut notes: Vec<(crate::role::fuzzy::Choice, Option<u32>)> = Vec::new();
        let lists = self.fuzzy_listings();
        let found = crate::role::fuzzy::find(lists, &want, same_time, |c, d| {
            if level >= 2 {
                notes.push((c, d));
            }
        });
        let chosen = found.and_then(|c| Some((c, lists.get(c.list)?.get(c.at)?.clone())));
        for (c, d) in notes {
            let Some(name) = self
                .fuzzy_lists
                .as_ref()
                .and_then(|l| Some(l.get(c.list)?.get(c.at)?.name.clone()))
            else {
                continue;
            };
            let shown = self.fuzzy_shown(c, &name);
            let line = match d {
                None => format!("fuzzy size/modtime match for {shown}"),
                Some(d) => format!("fuzzy distance for {shown} = {}.{:05}", d >> 16, d & 0xFFFF),
            };
            self.message(MsgCode::Info, &line)?;
        }
        let Some((c, cand)) = chosen else {
            return Ok(None);
        };
        if level >= 1 {
            let line = format!(
                "fuzzy basis selected for {}: {}",
                crate::protocol::text::name(&e.name),
                self.fuzzy_shown(c, &cand.name)
            );
            self.message(MsgCode::Info, &line)?;
        }
        let basis = Basis::Fuzzy {
            list: c.list,
            name: cand.name,
        };
        Ok(Some((basis, cand.st)))
    }

    /// A file of the current directory is sent (with a delta): it is no
    /// basis for another (upstream FLAG_FILE_SENT in fuzzy_dirlist[0]).
    fn fuzzy_mark_sent(&mut self, rel: &[u8]) {
        let Some(first) = self.fuzzy_lists.as_mut().and_then(|l| l.first_mut()) else {
            return;
        };
        let base = rel.rsplit(|&c| c == b'/').next().unwrap_or(rel);
        if let Ok(i) = first.binary_search_by(|c| c.name.as_slice().cmp(base)) {
            first[i].sent = true;
        }
    }

    /// `--info=skip`: why an entry is left alone ("NAME is newer"...).
    fn skip_note(&mut self, name: &[u8], why: &str) -> Result<(), RoleError> {
        if self.cfg.opts.info_level("skip") == 0 {
            return Ok(());
        }
        let line = format!("{} {why}", crate::protocol::text::name(name));
        self.message(MsgCode::Info, &line)
    }

    /// `--ignore-existing` at `--info=skip`: "NAME exists", and at level 2
    /// what differs (upstream recv_generator: type, then the quick check,
    /// then the attributes).
    fn exists_note(&mut self, rel: &[u8], e: &FileEntry, st: &Stat) -> Result<(), RoleError> {
        let cfg = self.cfg;
        let level = cfg.opts.info_level("skip");
        if level == 0 {
            return Ok(());
        }
        let why = if level < 2 {
            "exists"
        } else if st.mode & 0o170000 != e.mode & 0o170000 {
            "exists (type change)"
        } else if mode::is_reg(e.mode) && !self.quick_check_ok(rel, e, st) {
            if cfg.opts.checksum {
                "exists (sum change)"
            } else {
                "exists (file change)"
            }
        } else if cfg.itemize(e, Some(st), 0)
            & (iflags::REPORT_TIME
                | iflags::REPORT_PERMS
                | iflags::REPORT_OWNER
                | iflags::REPORT_GROUP
                | iflags::REPORT_XATTR)
            != 0
        {
            "exists (attr change)"
        } else {
            "exists (uptodate)"
        };
        self.skip_note(rel, why)
    }

    /// upstream quick_check_ok for a regular file: same size and, as the
    /// options say, same time or same `-c` digest.
    fn quick_check_ok(&self, rel: &[u8], e: &FileEntry, st: &Stat) -> bool {
        let o = &self.cfg.opts;
        st.size == e.size as u64
            && (o.size_only
                || if o.checksum {
                    self.same_checksum(rel, e)
                } else {
                    self.cfg.same_mtime(e, st)
                })
    }

    fn same_checksum(&self, rel: &[u8], e: &FileEntry) -> bool {
        let Some(want) = e.checksum() else {
            return false;
        };
        let Ok(mut f) = self.cfg.dest.open_read(rel) else {
            return false;
        };
        match crate::checksum::strong::file_checksum(self.cfg.n.file_checksum, &mut f) {
            Ok(d) => d.as_bytes().get(..want.len()) == Some(want),
            Err(_) => false,
        }
    }

    /// An NDX_DONE, sent with what follows it up to our next wait (as
    /// upstream's buffered output: the DONEs that end a run go out in
    /// one frame).
    fn done(&mut self) -> Result<(), RoleError> {
        self.tx.write(&mut self.buf, NDX_DONE);
        Ok(())
    }

    /// Everything written so far goes out: before we wait for the receiver.
    fn flush_out(&mut self) -> Result<(), RoleError> {
        self.flush_buf()?;
        self.out.lock().flush()?;
        Ok(())
    }

    /// When deletions happen (a plain --delete is "before" below protocol 30).
    fn delete_timing(&self) -> DeleteTiming {
        let o = &self.cfg.opts;
        // upstream: a listing never deletes (do_delete_pass, delete_in_dir).
        if !o.delete || o.list_only {
            return DeleteTiming::None;
        }
        match o.delete_when {
            Some("delete-before") => DeleteTiming::Before,
            Some("delete-after") | Some("delete-delay") => DeleteTiming::After,
            Some(_) => DeleteTiming::During,
            None if self.cfg.n.proto < 30 => DeleteTiming::Before,
            None => DeleteTiming::During,
        }
    }

    /// do_delete_pass: clean every directory whose contents were sent.
    fn delete_pass(&mut self) -> Result<(), RoleError> {
        if self.stop.is_some() {
            return Ok(());
        }
        let r = self.delete_pass_inner();
        self.absorb(r)
    }

    fn delete_pass_inner(&mut self) -> Result<(), RoleError> {
        if self.inc {
            // Each list holds exactly the contents of its parent directory.
            let (lists, dirs) = match self.registry.lock() {
                Ok(r) => (r.lists.clone(), r.recv.dirs.clone()),
                Err(p) => {
                    let r = p.into_inner();
                    (r.lists.clone(), r.recv.dirs.clone())
                }
            };
            for l in &lists {
                self.sender_io_error |= l.io_error;
            }
            for l in lists {
                let Some(dir) = l.parent.and_then(|p| dirs.get(p)) else {
                    continue;
                };
                if dir.no_content_dir || dir.implied_dir {
                    self.change_filter_dir(&dir.name)?;
                    continue;
                }
                self.list = l.clone();
                self.children = children_of(&l);
                let name = dir.name.clone();
                self.deleting_in(dir)?;
                if matches!(self.cfg.dest.stat(&name), Ok(Some(st)) if mode::is_dir(st.mode)) {
                    self.delete_in_dir(&name)?;
                }
            }
            return Ok(());
        }
        let list = self.list.clone();
        for i in 0..list.files.len() {
            let e = &list.files[i];
            if !list.active[i] || !mode::is_dir(e.mode) {
                continue;
            }
            if e.no_content_dir || e.implied_dir {
                self.change_filter_dir(&e.name)?;
                continue;
            }
            let name = e.name.clone();
            self.deleting_in(e)?;
            if matches!(self.cfg.dest.stat(&name), Ok(Some(st)) if mode::is_dir(st.mode)) {
                self.delete_in_dir(&name)?;
            }
        }
        Ok(())
    }

    /// do_delete_pass at --debug=del: each top directory it cleans.
    fn deleting_in(&mut self, dir: &FileEntry) -> Result<(), RoleError> {
        if dir.top_dir && self.cfg.opts.debug_level("DEL") >= 1 {
            let line = format!("deleting in {}", crate::protocol::text::name(&dir.name));
            self.message(MsgCode::Info, &line)?;
        }
        Ok(())
    }

    /// generate_files: the whole run, phases included. `events` come from the receiver.
    pub fn run(&mut self, events: &Receiver<RecvEvent>) -> Result<(), RoleError> {
        let proto = self.cfg.n.proto;
        if self.delete_timing() == DeleteTiming::Before {
            self.delete_pass()?;
        }
        // upstream generate_files (-vv, --debug=FLIST).
        if self.cfg.opts.debug_level("FLIST") >= 1 {
            let whole = self.cfg.whole_file();
            self.message(
                MsgCode::Info,
                if whole {
                    "delta-transmission disabled for local transfer or --whole-file"
                } else {
                    "delta-transmission enabled"
                },
            )?;
        }
        let mut redo_queue: Vec<i32> = Vec::new();
        if !self.inc {
            self.note_hlink_lists();
            let list = self.list.clone();
            for i in 0..list.files.len() {
                if list.active[i] {
                    self.entry(i)?;
                }
            }
            self.done()?; // DONE#1: end of the file pass
        } else {
            self.generate_incremental(events)?;
        }
        // Redo phase: re-request files whose checksum failed, until the receiver ends phase 0.
        for ndx in std::mem::take(&mut redo_queue) {
            self.redo(ndx)?;
        }
        loop {
            self.flush_out()?;
            match events.recv() {
                Ok(RecvEvent::Redo(ndx)) => self.redo(ndx)?,
                Ok(RecvEvent::PhaseDone) => break,
                Ok(RecvEvent::FilesDone(ndxs)) => self.transfers_done(&ndxs)?,
                Ok(RecvEvent::NewList) | Ok(RecvEvent::FlistEof) => {}
                Ok(RecvEvent::Finished) | Ok(RecvEvent::Failed) | Err(_) => {
                    return Err(RoleError::Protocol("receiver ended early".into()))
                }
            }
        }
        self.done()?; // DONE#2: end of the redo phase
        if self.cfg.opts.hard_links > 0 || self.cfg.opts.delay_updates {
            // Hard links to files of the redo phase (or delayed updates)
            // are made once the receiver has them all in place.
            loop {
                self.flush_out()?;
                match events.recv() {
                    Ok(RecvEvent::PhaseDone) => break,
                    Ok(RecvEvent::FilesDone(ndxs)) => self.transfers_done(&ndxs)?,
                    Ok(RecvEvent::Redo(_)) | Ok(RecvEvent::NewList) | Ok(RecvEvent::FlistEof) => {}
                    Ok(RecvEvent::Finished) | Ok(RecvEvent::Failed) | Err(_) => {
                        return Err(RoleError::Protocol("receiver ended early".into()))
                    }
                }
            }
        }
        if proto >= 29 {
            self.done()?; // DONE#3: no --delay-updates
        }
        if self.delete_timing() == DeleteTiming::After {
            self.delete_pass()?;
        }
        if self.skipped_deletes > 0 {
            let n = self.skipped_deletes;
            self.message(
                MsgCode::Warning,
                &format!("Deletions stopped due to --max-delete limit ({n} skipped)"),
            )?;
            self.io_error |= 4; // IOERR_DEL_LIMIT
        }
        if proto >= 31 {
            if self.cfg.opts.delete || self.cfg.opts.force {
                let d = self.del;
                self.tx.write(&mut self.buf, NDX_DEL_STATS);
                for v in [d.files, d.dirs, d.symlinks, d.devices, d.specials] {
                    put_varint(&mut self.buf, v);
                }
            }
            self.done()?; // DONE#4: deletions done
        }
        loop {
            self.flush_out()?;
            match events.recv() {
                Ok(RecvEvent::Finished) => break,
                Ok(RecvEvent::PhaseDone)
                | Ok(RecvEvent::Redo(_))
                | Ok(RecvEvent::NewList)
                | Ok(RecvEvent::FlistEof)
                | Ok(RecvEvent::FilesDone(_)) => {}
                Ok(RecvEvent::Failed) | Err(_) => {
                    return Err(RoleError::Protocol("receiver failed".into()))
                }
            }
        }
        self.touch_up_dirs();
        self.done()?; // the final goodbye
        self.flush_out()
    }

    /// Request a file again in the redo phase (full-length strong sums).
    fn redo(&mut self, ndx: i32) -> Result<(), RoleError> {
        let found = match self.registry.lock() {
            Ok(r) => r.find(ndx),
            Err(p) => p.into_inner().find(ndx),
        };
        let Some((list, i)) = found else {
            return Err(RoleError::Protocol(format!("invalid redo index {ndx}")));
        };
        self.list = list.clone();
        let e = &list.files[i];
        let st = self.cfg.dest.stat(&e.name).ok().flatten();
        let fl = self.cfg.itemize(e, st.as_ref(), iflags::TRANSFER);
        self.request(i, fl, st.as_ref(), true)
    }

    /// Incremental recursion: generate each list as it arrives (its parent
    /// directory first, in full, under the hole index `ndx_start - 1`), and
    /// send a DONE for every list whose transfers are over once the next one
    /// exists; the last of them is DONE#1.
    fn generate_incremental(&mut self, events: &Receiver<RecvEvent>) -> Result<(), RoleError> {
        let mut next = 0usize;
        let mut done_next = 0usize;
        loop {
            loop {
                if self.cfg.opts.hard_links > 0 && !self.hlink_lookahead(done_next) {
                    break;
                }
                self.note_hlink_lists();
                let (l, parent) = {
                    let r = match self.registry.lock() {
                        Ok(r) => r,
                        Err(p) => p.into_inner(),
                    };
                    match r.lists.get(next) {
                        Some(l) => (
                            l.clone(),
                            l.parent.and_then(|p| r.recv.dirs.get(p).cloned()),
                        ),
                        None => break,
                    }
                };
                self.sender_io_error |= l.io_error;
                self.list = l.clone();
                self.children = children_of(&l);
                if let (Some(dir), None) = (parent, &self.stop) {
                    let r = self.entry_at(&dir, l.ndx_start - 1, usize::MAX);
                    self.absorb(r)?;
                }
                for i in 0..l.files.len() {
                    if l.active[i] {
                        self.entry(i)?;
                    }
                }
                next += 1;
            }
            let (count, eof, starts) = {
                let r = match self.registry.lock() {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                (
                    r.lists.len(),
                    r.eof,
                    r.lists.iter().map(|l| l.ndx_start).collect::<Vec<_>>(),
                )
            };
            if eof && next == count && self.pending.values().all(|&p| p == 0) {
                // Members waiting for a transfer that failed, or deferred
                // for a last member that was not made, are never linked;
                // they hold their lists no longer.
                self.hl_hold.clear();
            }
            while done_next < next
                && self.pending.get(&starts[done_next]).copied().unwrap_or(0) == 0
                && self.hl_hold.get(&starts[done_next]).copied().unwrap_or(0) == 0
                && (done_next + 1 < count || eof)
            {
                self.tx.write(&mut self.buf, NDX_DONE);
                done_next += 1;
            }
            self.flush_buf()?;
            self.out.lock().flush()?;
            if eof && done_next == count && next == count {
                return Ok(());
            }
            match events.recv() {
                Ok(RecvEvent::NewList) | Ok(RecvEvent::FlistEof) => {}
                Ok(RecvEvent::FilesDone(ndxs)) => {
                    for &(ndx, _) in &ndxs {
                        if let Some(&start) = starts.iter().rev().find(|&&s| s <= ndx) {
                            if let Some(p) = self.pending.get_mut(&start) {
                                *p = p.saturating_sub(1);
                            }
                        }
                    }
                    self.transfers_done(&ndxs)?;
                }
                // A failed file is asked for again at once, so its list can finish.
                Ok(RecvEvent::Redo(ndx)) => self.redo(ndx)?,
                Ok(RecvEvent::PhaseDone)
                | Ok(RecvEvent::Finished)
                | Ok(RecvEvent::Failed)
                | Err(_) => return Err(RoleError::Protocol("receiver ended early".into())),
            }
        }
    }

    /// -H under incremental recursion: a list is generated once 500 files
    /// are listed ahead of the generator or the lists are all here
    /// (upstream generate_files' MIN_FILECNT_LOOKAHEAD/2 wait), so a group's
    /// last member is usually known when its first is met.
    fn hlink_lookahead(&self, done_next: usize) -> bool {
        let r = match self.registry.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        let listed: usize = r.lists.iter().skip(done_next).map(|l| l.files.len()).sum();
        r.eof || listed >= 500
    }

    /// Directory times (and modes) are set last, once their contents stopped changing.
    fn touch_up_dirs(&mut self) {
        if self.cfg.opts.dry_run {
            return;
        }
        let lists: Vec<std::sync::Arc<RecvList>> = match self.registry.lock() {
            Ok(r) => r.lists.clone(),
            Err(p) => p.into_inner().lists.clone(),
        };
        for (i, e) in lists.iter().rev().flat_map(|l| {
            l.files
                .iter()
                .enumerate()
                .rev()
                .map(move |(i, e)| ((l.clone(), i), e))
        }) {
            let (l, i) = i;
            // An implied directory of --no-implied-dirs is not ours to touch.
            if !l.active[i] || !mode::is_dir(e.mode) || self.unwanted_implied_dir(e) {
                continue;
            }
            // -K: a kept symlink's directory is compared, and the symlink
            // itself gets the attributes (stock 3.5 alike).
            if let Ok(Some(st)) = self.cfg.dest.stat_keep_dirlink(&e.name) {
                if mode::is_dir(st.mode) {
                    let fresh = self.created.contains(&e.name);
                    let r = self.cfg.fix_attrs_as(
                        &e.name,
                        e,
                        &st,
                        !self.cfg.opts.omit_dir_times,
                        fresh,
                    );
                    if let Err(err) = r {
                        let text =
                            format!("rsync: [generator] {}: {}", err.what(), stock_os_text(&err));
                        let _ = self.error(text);
                    }
                }
            }
        }
    }
}

/// The OS error of `err` as stock 3.5 reports it: a path that leaves the
/// destination through a symlink is ELOOP for its confined lookups, where
/// our resolver says EXDEV.
fn stock_os_text(err: &crate::fs::dest::FsError) -> String {
    let code = match err.errno() {
        nix::libc::EXDEV => nix::libc::ELOOP,
        c => c,
    };
    crate::fs::os_error_text(&std::io::Error::from_raw_os_error(code))
}

/// `a/b` from `a` and `b` (`.` is the root).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() || dir == b"." {
        return name.to_vec();
    }
    let mut v = dir.to_vec();
    v.push(b'/');
    v.extend_from_slice(name);
    v
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    proptest::proptest! {
        /// A target sanitized at its entry's depth (as the list arrives)
        /// stays as it is at any deeper allowance: the generator need not
        /// sanitize again for a destination deeper in the module.
        #[test]
        fn sanitizing_again_deeper_changes_nothing(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["..", ".", "", "a", "b", "/"]), 0..12),
            d1 in 0usize..4,
            extra in 0usize..4,
        ) {
            use super::sanitize_link_target as s;
            let t: Vec<u8> = parts.join("/").into_bytes();
            let once = s(&t, d1);
            proptest::prop_assert_eq!(s(&once, d1 + extra), once);
        }
    }

    #[test]
    fn link_targets_are_sanitized() {
        use super::sanitize_link_target as s;
        assert_eq!(s(b"/etc/passwd", 0), b"etc/passwd");
        assert_eq!(s(b"../../../etc/passwd", 1), b"../etc/passwd");
        assert_eq!(s(b"../a.txt", 1), b"../a.txt");
        assert_eq!(s(b"a/../../x", 0), b"x");
        assert_eq!(s(b"x/./y", 3), b"x/y");
    }

    #[test]
    fn size_arguments() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("1.5M"), Some(1_572_864));
        assert_eq!(parse_size("2MB"), Some(2_000_000));
        assert_eq!(parse_size("1KiB"), Some(1024));
        assert_eq!(parse_size("1k-1"), Some(1023));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("5q"), None);
    }
}
