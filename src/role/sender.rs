//! The sender role (upstream: sender.c send_files, main.c do_server_sender,
//! handle_stats, read_final_goodbye): sends the file list, answers each
//! request of the receiving side's generator with delta data, then the
//! end-of-run statistics and goodbye.

use super::input::InputReader;
use super::setup::Negotiated;
use super::RoleError;
use crate::cli::options::Options;
use crate::delta::matcher::{Matcher, TokenSink};
use crate::delta::sums::{BlockSums, SumHead};
use crate::flist::{FileList, LocalFile};
use crate::protocol::flist::{mode, put_id_list, FlistEncoder, FlistOpts};
use crate::protocol::mux::{MsgCode, MuxWriter};
use crate::protocol::ndx::{
    iflags, NdxCodec, NDX_DEL_STATS, NDX_DONE, NDX_FLIST_EOF, NDX_FLIST_OFFSET,
};
use crate::protocol::sums::{read_sums, WireSumHead};
use crate::protocol::tokens::TokenEncoder;
use crate::protocol::varint::{
    put_int, put_short, put_varint, put_varlong30, put_vstring, read_byte, read_short, read_varint,
    read_vstring,
};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Transfer statistics the sender keeps.
#[derive(Debug, Default, Clone)]
pub struct SendStats {
    /// Sum of all file sizes in the list.
    pub total_size: i64,
    /// Files whose data was sent.
    pub xferred_files: u64,
    /// Literal bytes sent.
    pub literal_data: u64,
    /// Matched bytes.
    pub matched_data: u64,
    /// Block matches, rolling-sum hits and false alarms, over all files
    /// (upstream match_report's totals).
    pub matches: u64,
    pub hash_hits: u64,
    pub false_alarms: u64,
    /// Milliseconds to build the list.
    pub flist_buildtime: i64,
    /// Milliseconds to send the list.
    pub flist_xfertime: i64,
    /// IOERR_* bits.
    pub io_error: i32,
    /// Items the receiving side created, by type.
    pub created: crate::role::stats::TypeCounts,
    /// Size of the files whose data was sent.
    pub total_transferred_size: i64,
    /// Deletions the receiving side reported (protocol 31: files, dirs,
    /// symlinks, devices, specials).
    pub deleted: Option<[i32; 5]>,
    /// Entries of all lists sent, by type.
    pub num_files: crate::role::stats::TypeCounts,
    /// Bytes the file lists took on the wire.
    pub flist_size: i64,
}

/// The flist encoding options for a session.
pub fn flist_opts(n: &Negotiated, o: &Options) -> FlistOpts {
    FlistOpts {
        proto: n.proto,
        varint_flags: n.varint_flags(),
        preserve_uid: o.owner,
        preserve_gid: o.group,
        preserve_devices: o.devices,
        preserve_specials: o.specials,
        preserve_links: o.links,
        preserve_hard_links: o.hard_links > 0,
        csum_len: if o.checksum {
            n.file_checksum.flist_len()
        } else {
            0
        },
        safe_flist: n.safe_flist(),
        xattrs: o.xattrs > 0 && n.proto >= 30,
    }
}

/// `-X`: which attribute names this side copies.
pub fn xattr_names(o: &Options) -> crate::fs::xattr::Names {
    crate::fs::xattr::Names {
        am_root: nix::unistd::geteuid().is_root(),
        level: o.xattrs,
        excluded: None,
    }
}

/// Encode one entry of a list being sent, with `-X` its attribute set
/// after it (read now, as upstream send_file_name reads it). A set that
/// cannot be read goes out empty, and the error is returned for the
/// caller to report.
pub fn encode_entry(
    enc: &mut FlistEncoder,
    buf: &mut Vec<u8>,
    f: &mut LocalFile,
    o: &Options,
) -> Option<String> {
    enc.encode(buf, &f.entry);
    enc.xattrs.as_ref()?;
    let mut err = None;
    let set = if crate::fs::xattr::mode_has_xattrs(f.entry.mode, o.links, o.devices, o.specials) {
        let path = f.path();
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default();
        let names = enc.xattr_names.get_or_insert_with(|| xattr_names(o));
        match crate::fs::xattr::read_for_send(&c, names) {
            Ok(s) => s,
            Err(e) => {
                err = Some(format!(
                    "get_xattr_names: llistxattr({},1024) failed: {}",
                    crate::protocol::text::name(&f.entry.name),
                    crate::fs::dest::errno_text(e.raw_os_error().unwrap_or(0))
                ));
                Default::default()
            }
        }
    } else {
        Default::default()
    };
    f.entry.xattr = enc.encode_xattrs(buf, set);
    if mode::is_dir(f.entry.mode) {
        enc.dir_xattrs.insert(f.entry.name.clone(), f.entry.xattr);
    }
    err
}

/// Send a text message the way a server does (MSG_INFO etc.; errors become
/// MSG_ERROR_XFER below protocol 30 and warnings MSG_INFO).
pub fn send_text<W: Write>(
    out: &mut MuxWriter<W>,
    proto: u8,
    code: MsgCode,
    text: &str,
) -> std::io::Result<()> {
    let (code, t) = text_message(proto, code, text);
    out.send_msg(code, t.as_bytes())
}

/// A text message's code for `proto` (older peers know fewer kinds) and its
/// newline-terminated text.
pub fn text_message(proto: u8, code: MsgCode, text: &str) -> (MsgCode, String) {
    let code = match code {
        MsgCode::Error if proto < 30 => MsgCode::ErrorXfer,
        MsgCode::Warning if proto < 30 => MsgCode::Info,
        // (MSG_CLIENT goes out as info: MuxWriter::send_msg_ahead.)
        c => c,
    };
    let mut t = text.to_string();
    if !t.ends_with('\n') {
        t.push('\n');
    }
    (code, t)
}

/// Write the file list (entries, end marker, id lists, io_error).
pub fn send_file_list<W: Write>(
    out: &mut MuxWriter<W>,
    n: &Negotiated,
    o: &Options,
    fl: &mut FileList,
    inc_recurse: bool,
    xattr_rule: Option<crate::fs::xattr::NameRule>,
) -> Result<FlistEncoder, RoleError> {
    let fo = flist_opts(n, o);
    let mut enc = FlistEncoder::new(fo);
    if fo.xattrs {
        enc.xattr_names = Some(crate::fs::xattr::Names {
            excluded: xattr_rule,
            ..xattr_names(o)
        });
    }
    enc.set_ndx_start(fl.ndx_start);
    let mut buf = Vec::with_capacity(64 * 1024);
    for k in 0..fl.send_order.len() {
        let i = fl.send_order[k];
        if let Some(err) = encode_entry(&mut enc, &mut buf, &mut fl.files[i], o) {
            fl.io_error |= crate::flist::build::IOERR_GENERAL;
            send_text(out, n.proto, MsgCode::ErrorXfer, &err)?;
        }
        if buf.len() >= 32 * 1024 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    let io_error = fl.io_error;
    if n.proto >= 30 && !fo.safe_flist && io_error != 0 {
        enc.end(&mut buf, 0);
        out.write_all(&buf)?;
        buf.clear();
        let mut v = Vec::new();
        put_int(&mut v, io_error);
        out.send_msg(MsgCode::IoError, &v)?;
    } else {
        enc.end(&mut buf, if o.ignore_errors { 0 } else { io_error });
    }
    // Without incremental recursion the id lists follow, unless --numeric-ids.
    if !o.numeric_ids && !inc_recurse {
        let id0 = |g: bool| -> Option<Vec<u8>> {
            if !n.id0_names() {
                return None;
            }
            let name = if g {
                nix::unistd::Group::from_gid(0.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            } else {
                nix::unistd::User::from_uid(0.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            };
            Some(name.unwrap_or_default().into_bytes())
        };
        if o.owner {
            put_id_list(&mut buf, &fl.uid_names, n.proto, id0(false).as_deref());
        }
        if o.group {
            put_id_list(&mut buf, &fl.gid_names, n.proto, id0(true).as_deref());
        }
    }
    if n.proto < 30 {
        put_int(&mut buf, if o.ignore_errors { 0 } else { io_error });
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(enc)
}

fn read_del_stats(r: &mut impl Read) -> Result<[i32; 5], RoleError> {
    let mut v = [0i32; 5];
    for x in v.iter_mut() {
        *x = read_varint(r)?;
        if *x < 0 {
            return Err(RoleError::Protocol("invalid deletion statistics".into()));
        }
    }
    Ok(v)
}

fn write_del_stats(out: &mut Vec<u8>, ndx: &mut NdxCodec, v: &[i32; 5]) {
    ndx.write(out, NDX_DEL_STATS);
    for x in v {
        put_varint(out, *x);
    }
}

/// A request from the generator.
struct Request {
    ndx: i32,
    iflags: u16,
    basis_type: Option<u8>,
    xname: Option<Vec<u8>>,
    /// `-X`: the long attribute values the generator asked for (by
    /// number), when the record carries a request.
    xattr_nums: Option<Vec<u32>>,
    /// ... and the answer written after the echoed record.
    xattr_reply: Vec<u8>,
}

/// What reading a request depends on.
struct ReadCtx<'a> {
    proto: u8,
    /// Entries listed so far (an index must be below).
    nfiles: usize,
    /// `-X` (and not a dry run): records that report attributes carry a request.
    xattrs: Option<&'a Negotiated>,
}

/// read_ndx_and_attrs for the sender. Deletion stats are answered in place.
fn read_request<W: Write>(
    input: &mut InputReader,
    out: &mut MuxWriter<W>,
    rx: &mut NdxCodec,
    tx: &mut NdxCodec,
    rc: &ReadCtx<'_>,
    stats: &mut SendStats,
) -> Result<Request, RoleError> {
    let (proto, nfiles) = (rc.proto, rc.nfiles);
    loop {
        // Flush what we owe the peer before waiting for it, and only then.
        if !input.ready() {
            out.flush()?;
        }
        let ndx = rx.read(input)?;
        if ndx == NDX_DONE {
            return Ok(Request {
                ndx,
                iflags: 0,
                basis_type: None,
                xname: None,
                xattr_nums: None,
                xattr_reply: Vec::new(),
            });
        }
        if ndx == NDX_DEL_STATS {
            let v = read_del_stats(input)?;
            stats.deleted = Some(v);
            let mut b = Vec::new();
            write_del_stats(&mut b, tx, &v);
            out.write_all(&b)?;
            continue;
        }
        if ndx < 0 {
            return Err(RoleError::Protocol(format!(
                "Invalid file index: {ndx} (-1 - {}) [sender]",
                nfiles as i64 - 1
            )));
        }
        let fl = if proto >= 29 {
            read_short(input)?
        } else {
            iflags::TRANSFER
        };
        if proto < 30 && ndx as usize == nfiles && fl == iflags::IS_NEW {
            continue; // protocol-29 keep-alive
        }
        if ndx as usize >= nfiles {
            return Err(RoleError::Protocol(format!(
                "Invalid file index: {ndx} (-1 - {}) [sender]",
                nfiles as i64 - 1
            )));
        }
        let basis_type = if fl & iflags::BASIS_TYPE_FOLLOWS != 0 {
            Some(read_byte(input)?)
        } else {
            None
        };
        let xname = if fl & iflags::XNAME_FOLLOWS != 0 {
            Some(read_vstring(input, crate::protocol::MAX_PATH_LEN)?)
        } else {
            None
        };
        let xattr_nums = match rc.xattrs {
            Some(n) if fl & iflags::REPORT_XATTR != 0 && !n.xattr_optim(fl) => {
                Some(crate::protocol::xattr::read_request(input)?)
            }
            _ => None,
        };
        return Ok(Request {
            ndx,
            iflags: fl,
            basis_type,
            xname,
            xattr_nums,
            xattr_reply: Vec::new(),
        });
    }
}

fn write_ndx_and_attrs(
    buf: &mut Vec<u8>,
    tx: &mut NdxCodec,
    proto: u8,
    r: &Request,
) -> Result<(), RoleError> {
    tx.write(buf, r.ndx);
    if proto >= 29 {
        put_short(buf, r.iflags);
        if let Some(t) = r.basis_type {
            buf.push(t);
        }
        if let Some(x) = &r.xname {
            put_vstring(buf, x)?;
        }
        if r.xattr_nums.is_some() {
            buf.extend_from_slice(&r.xattr_reply);
        }
    }
    Ok(())
}

/// `-X`: the answer to the generator's request for `e`'s long values
/// (upstream send_xattr_request with a name): each re-read from `path`.
fn xattr_reply(
    enc: &FlistEncoder,
    e: &crate::protocol::flist::FileEntry,
    path: &std::path::Path,
    nums: &[u32],
) -> Result<(Vec<u8>, Vec<String>), RoleError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap_or_default();
    let set = e
        .xattr
        .checked_sub(1)
        .and_then(|i| enc.xattrs.as_ref()?.get(i));
    let mut values = Vec::new();
    for &num in nums {
        let Some(x) = set.and_then(|s| s.by_num(num)).filter(|x| x.abbreviated()) else {
            return Err(RoleError::Protocol(format!(
                "[sender] could not find xattr #{num} for {}",
                crate::protocol::text::name(&e.name)
            )));
        };
        match crate::fs::xattr::get(crate::fs::xattr::Target::Path(&c), &x.name) {
            Ok(v) => values.push((num, v)),
            Err(_) => {
                errors.push(format!(
                    "failed to re-read xattr {} for {}",
                    String::from_utf8_lossy(&x.name),
                    crate::protocol::text::name(&e.name)
                ));
                values.push((num, Vec::new()));
            }
        }
    }
    crate::protocol::xattr::put_values(&mut out, &values);
    Ok((out, errors))
}

/// Everything the sender loop needs besides the streams.
pub struct SenderCtx<'a> {
    /// Negotiated session parameters.
    pub n: Negotiated,
    /// Options of the run.
    pub opts: &'a Options,
    /// Incremental recursion is on (CF_INC_RECURSE): more lists follow the first.
    pub inc_recurse: bool,
    /// Whether we are the server (then we send the stats).
    pub am_server: bool,
    /// The encoder that wrote the first list (its state continues into the sub-lists).
    pub first_encoder: std::cell::Cell<Option<FlistEncoder>>,
    /// Renders a file name for messages (upstream full_fname).
    pub full_fname: &'a dyn Fn(&[u8], &std::path::Path) -> String,
    /// Raw byte counters (read, read at setup end, written, written at setup end).
    pub counters: Option<(Arc<AtomicU64>, u64, Arc<AtomicU64>, u64)>,
    /// A client shows items and messages on its terminal.
    pub local: Option<&'a crate::role::log::ClientLog>,
    /// A daemon's transfer log (`transfer logging`).
    pub xfer_log: Option<&'a crate::role::log::ClientLog>,
    /// `--remove-source-files`: indexes the receiver reported done
    /// (MSG_SUCCESS, queued as they arrive), whose sources go.
    pub removals: Option<Arc<std::sync::Mutex<Vec<i32>>>>,
    /// Compress nothing (a daemon module's `dont compress = *`).
    pub dont_compress_all: bool,
}

impl<'a> SenderCtx<'a> {
    /// Where item lines go: the client's terminal, or a daemon's log.
    fn items(&self) -> Option<&'a crate::role::log::ClientLog> {
        self.local.or(self.xfer_log)
    }
}

impl SenderCtx<'_> {
    /// A message for the user: to the client's terminal, or to the peer.
    fn say<W: Write>(
        &self,
        out: &mut MuxWriter<W>,
        code: MsgCode,
        text: &str,
    ) -> Result<(), RoleError> {
        match self.local {
            Some(l) => l.text(code, text.as_bytes()),
            None => send_text(out, self.n.proto, code, text)?,
        }
        Ok(())
    }
}

/// send_files + handle_stats + read_final_goodbye.
/// Where further file lists come from (incremental recursion).
pub trait MoreLists {
    /// The next list and the `dir_ndx` that announces it; `None` when done.
    fn next_list(&mut self) -> Option<(i32, FileList)>;
    /// No list is left to produce.
    fn done(&self) -> bool;
}

/// The lists sent and not yet finished by the generator.
struct ActiveLists {
    lists: std::collections::VecDeque<FileList>,
}

enum Lookup<'l> {
    File(&'l crate::flist::LocalFile),
    ParentDir,
    Invalid,
}

impl ActiveLists {
    fn lookup(&self, ndx: i32) -> Lookup<'_> {
        for l in &self.lists {
            let rel = ndx - l.ndx_start;
            if rel >= 0 && (rel as usize) < l.files.len() {
                return Lookup::File(&l.files[rel as usize]);
            }
            // The hole before a list stands for its parent directory; for the
            // first list that is its "." entry, when it has one.
            let first_is_dot = l.files.first().is_some_and(|f| f.entry.name == b".");
            if rel == -1 && (l.ndx_start > 1 || first_is_dot) {
                return Lookup::ParentDir;
            }
        }
        Lookup::Invalid
    }

    /// The directory a list's hole index stands for (its "." entry for the first list).
    /// The directory entry of a list's parent-dir hole, and the directory
    /// of the argument it came from (its list's, upstream F_PATHNAME).
    fn parent_dir(
        &self,
        ndx: i32,
    ) -> Option<(
        &crate::protocol::flist::FileEntry,
        Option<&Arc<std::path::Path>>,
    )> {
        for l in &self.lists {
            if ndx - l.ndx_start == -1 {
                let base = l.files.first().map(|f| f.base()).or(l.parent_base.as_ref());
                let e = l
                    .parent_entry
                    .as_ref()
                    .or_else(|| l.files.first().map(|f| &f.entry))?;
                return Some((e, base));
            }
        }
        None
    }

    /// A file's place among all entries listed (upstream current_file_index).
    fn index_of(&self, ndx: i32) -> u64 {
        for l in &self.lists {
            let rel = ndx - l.ndx_start;
            if rel >= 0 && (rel as usize) < l.files.len() {
                return l.index_base + rel as u64;
            }
        }
        ndx.max(0) as u64
    }

    /// The first index of the list holding `ndx` (its parent-dir hole
    /// included): upstream's cur_flist, named by its start.
    fn list_of(&self, ndx: i32) -> Option<i32> {
        self.lists
            .iter()
            .find(|l| ndx >= l.ndx_start - 1 && ((ndx - l.ndx_start + 1) as usize) <= l.files.len())
            .map(|l| l.ndx_start)
    }

    /// upstream set_current_file_index(NULL): the place of the last entry
    /// of the list starting at `start`.
    fn end_index(&self, start: i32) -> Option<u64> {
        self.lists
            .iter()
            .find(|l| l.ndx_start == start)
            .map(|l| (l.index_base + l.files.len() as u64).saturating_sub(1))
    }

    /// Files listed beyond the oldest unfinished list: what the generator
    /// can work on without waiting for us.
    fn upcoming(&self) -> usize {
        self.lists.iter().skip(1).map(|l| l.files.len()).sum()
    }
}

/// upstream successful_send: remove each source the receiver has taken,
/// unless it changed since it was listed.
fn remove_sent<W: Write>(
    ctx: &SenderCtx,
    active: &ActiveLists,
    out: &mut MuxWriter<W>,
    stats: &mut SendStats,
) -> Result<(), RoleError> {
    let Some(q) = &ctx.removals else {
        return Ok(());
    };
    let done = match q.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(_) => return Ok(()),
    };
    for ndx in done {
        let Lookup::File(f) = active.lookup(ndx) else {
            continue;
        };
        let name = crate::protocol::text::name(&f.entry.name).into_owned();
        let path = f.path();
        let st = if ctx.opts.copy_links {
            std::fs::metadata(&path)
        } else {
            std::fs::symlink_metadata(&path)
        };
        let result = st.map(|st| {
            use std::os::unix::fs::MetadataExt;
            st.size() as i64 != f.entry.size
                || st.mtime() != f.entry.mtime
                || (f.entry.mtime_nsec != 0 && st.mtime_nsec() as u32 != f.entry.mtime_nsec)
        });
        let failure = match result {
            Ok(true) => {
                stats.io_error |= crate::flist::build::IOERR_GENERAL;
                ctx.say(
                    out,
                    MsgCode::ErrorXfer,
                    &format!("ERROR: Skipping sender remove for changed file: {name}"),
                )?;
                continue;
            }
            Ok(false) => std::fs::remove_file(&path).err().map(|e| ("remove", e)),
            Err(e) => Some(("re-lstat", e)),
        };
        match failure {
            None => {
                if ctx.opts.verbose >= 2 {
                    ctx.say(out, MsgCode::Info, &format!("sender removed {name}"))?;
                }
            }
            Some((_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                ctx.say(
                    out,
                    MsgCode::Info,
                    &format!("sender file already removed: {name}"),
                )?;
            }
            Some((op, e)) => {
                stats.io_error |= crate::flist::build::IOERR_GENERAL;
                ctx.say(
                    out,
                    MsgCode::ErrorXfer,
                    &format!(
                        "rsync: [sender] sender failed to {op} {name}: {}",
                        crate::fs::os_error_text(&e)
                    ),
                )?;
            }
        }
    }
    Ok(())
}

/// How many files stay listed ahead of the generator (upstream's
/// MIN_FILECNT_LOOKAHEAD is 1000). A daemon's per-connection memory is
/// mostly the lists in flight, so we hold fewer: measured with a stock
/// client on 100-file directories, 300/600 keeps small-file and no-change
/// pulls as fast as 1000/1500 did (200/300 made the no-change pull wait
/// for lists, +25%), and 32 concurrent pulls of a 2,000-file tree take
/// ~0.4 MB less per connection.
const LOOKAHEAD: usize = 300;
/// How far ahead we list while the generator has nothing for us (upstream
/// goes up to 10,000, MAX_FILECNT_LOOKAHEAD).
const LOOKAHEAD_IDLE: usize = 600;

/// send_extra_file_list: announce and send one more list, or NDX_FLIST_EOF.
#[allow(clippy::too_many_arguments)]
fn send_extra_list<W: Write>(
    more: &mut dyn MoreLists,
    enc: &mut FlistEncoder,
    tx: &mut NdxCodec,
    out: &mut MuxWriter<W>,
    ctx: &SenderCtx,
    active: &mut ActiveLists,
    stats: &mut SendStats,
    eof: &mut bool,
) -> Result<(), RoleError> {
    let mut buf = Vec::new();
    match more.next_list() {
        None => {
            tx.write(&mut buf, NDX_FLIST_EOF);
            *eof = true;
        }
        Some((dir_ndx, mut list)) => {
            for (kind, text) in &list.errors {
                ctx.say(out, kind.msg_code(), text)?;
            }
            if let Some(m) = &list.fatal {
                return Err(RoleError::Refused(m.clone()));
            }
            tx.write(&mut buf, NDX_FLIST_OFFSET - dir_ndx);
            enc.set_ndx_start(list.ndx_start);
            for k in 0..list.send_order.len() {
                let i = list.send_order[k];
                if let Some(err) = encode_entry(enc, &mut buf, &mut list.files[i], ctx.opts) {
                    list.io_error |= crate::flist::build::IOERR_GENERAL;
                    ctx.say(out, MsgCode::ErrorXfer, &err)?;
                }
                if buf.len() >= 32 * 1024 {
                    out.write_all(&buf)?;
                    buf.clear();
                }
            }
            let err = if ctx.opts.ignore_errors || !ctx.n.safe_flist() {
                0
            } else {
                list.io_error
            };
            enc.end(&mut buf, err);
            stats.io_error |= list.io_error;
            stats.total_size += list_size(&list);
            let mut list = list;
            list.index_base = stats.num_files.total;
            for f in &list.files {
                stats.num_files.add(f.entry.mode);
            }
            active.lists.push_back(list);
            if more.done() {
                tx.write(&mut buf, NDX_FLIST_EOF);
                *eof = true;
            }
        }
    }
    out.write_all(&buf)?;
    Ok(())
}

/// The bytes a list accounts for in the stats' total size.
pub fn list_size(l: &FileList) -> i64 {
    l.files
        .iter()
        .filter(|f| !mode::is_dir(f.entry.mode))
        .map(|f| f.entry.size)
        .sum()
}

/// send_files + handle_stats + read_final_goodbye. `first` is the list
/// already sent; with incremental recursion `more` yields the rest.
pub fn run<W: Write>(
    ctx: &SenderCtx,
    first: FileList,
    mut more: Option<&mut dyn MoreLists>,
    input: &mut InputReader,
    out: &mut MuxWriter<W>,
    stats: &mut SendStats,
) -> Result<(), RoleError> {
    let proto = ctx.n.proto;
    let mut rx = NdxCodec::new(proto);
    let mut tx = NdxCodec::new(proto);
    let max_phase = if proto >= 29 { 2 } else { 1 };
    let mut phase = 0;
    let mut encoder = if ctx.dont_compress_all {
        TokenEncoder::skipping_compression(ctx.n.compress, ctx.opts.compress_level, proto)
    } else {
        TokenEncoder::new(ctx.n.compress, ctx.opts.compress_level, proto)
    };
    // One matcher for the run: its hash table and window buffer are reused per file.
    let mut matcher = Matcher::new();
    let mut opener = crate::fs::SendOpener::new(ctx.opts.open_noatime);
    let dry_run = ctx.opts.dry_run;
    // Index, attribute and stats records: a few bytes each.
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    // The token stream of the current file, reused across files.
    let mut token_buf: Vec<u8> = Vec::new();
    let first_len = first.files.len();
    let mut active = ActiveLists {
        lists: std::collections::VecDeque::from([first]),
    };
    let mut eof = !ctx.inc_recurse;
    // upstream's cur_flist (by its start): the list of the last index read,
    // where --info=progress2 stands at each DONE.
    let mut cur_list = active.lists.front().map(|l| l.ndx_start);
    let progress2 = ctx.local.is_some_and(|l| l.o.progress >= 2);
    // Files whose data went out once (a redo does not count them again).
    let mut sent = std::collections::HashSet::new();
    // Files sent once, when a redo is sent otherwise (--append, --inplace).
    let mut sent_once = std::collections::HashSet::new();
    let track_redos = ctx.opts.append > 0 || ctx.opts.inplace;
    // The first list's encoder goes on: later lists continue its state,
    // and its -X table answers requests.
    let mut flist_enc = ctx
        .first_encoder
        .take()
        .unwrap_or_else(|| FlistEncoder::new(flist_opts(&ctx.n, ctx.opts)));
    // -X: records that report attributes carry the generator's request.
    let xattr_reqs = (ctx.opts.xattrs > 0 && proto >= 30 && !ctx.opts.dry_run).then_some(&ctx.n);
    let nfiles_bound = if ctx.inc_recurse {
        usize::MAX
    } else {
        first_len
    };
    let rctx = ReadCtx {
        proto,
        nfiles: nfiles_bound,
        xattrs: xattr_reqs,
    };
    if let (false, Some(m)) = (eof, more.as_deref_mut()) {
        // Continue the encoder state of the first list (sent by the caller).
        if m.done() {
            tx.write(&mut buf, NDX_FLIST_EOF);
            out.write_all(&buf)?;
            buf.clear();
            eof = true;
        } else if first_len == 1 {
            send_extra_list(
                m,
                &mut flist_enc,
                &mut tx,
                out,
                ctx,
                &mut active,
                stats,
                &mut eof,
            )?;
        }
    }
    // -H: a receiver holds a list while a member of a hard-link group in it
    // waits for the group's last member, which may come many lists later;
    // list as far ahead as upstream does then (MAX_FILECNT_LOOKAHEAD).
    let idle_ahead = if ctx.opts.hard_links > 0 {
        10_000
    } else {
        LOOKAHEAD_IDLE
    };
    loop {
        if let (false, Some(m)) = (eof, more.as_deref_mut()) {
            while !eof && active.upcoming() < LOOKAHEAD {
                send_extra_list(
                    m,
                    &mut flist_enc,
                    &mut tx,
                    out,
                    ctx,
                    &mut active,
                    stats,
                    &mut eof,
                )?;
            }
            // Rather than wait for the generator, keep listing ahead (as
            // upstream's io.c does while it has no input): the receiving
            // side then never waits for a list.
            while !eof && active.upcoming() < idle_ahead && !input.ready() {
                send_extra_list(
                    m,
                    &mut flist_enc,
                    &mut tx,
                    out,
                    ctx,
                    &mut active,
                    stats,
                    &mut eof,
                )?;
                out.flush()?;
            }
        }
        let req = read_request(input, out, &mut rx, &mut tx, &rctx, stats)?;
        // Sources the receiver has finished go before their list can end.
        remove_sent(ctx, &active, out, stats)?;
        if req.ndx >= 0 && progress2 {
            cur_list = active.list_of(req.ndx).or(cur_list);
        }
        if req.ndx == NDX_DONE {
            // upstream send_files: progress2 shows where the transfer stands
            // at each DONE while a list is current.
            if let (true, Some(l), Some(idx)) = (
                progress2,
                ctx.local,
                cur_list.and_then(|c| active.end_index(c)),
            ) {
                l.progress_end(
                    0,
                    crate::role::log::ProgressPos {
                        xferred: stats.xferred_files,
                        num_files: stats.num_files.total,
                        index: idx,
                        flist_eof: eof,
                    },
                );
            }
            if ctx.inc_recurse && !active.lists.is_empty() {
                let gone = active.lists.pop_front().map(|l| l.ndx_start);
                if gone == cur_list {
                    cur_list = active.lists.front().map(|l| l.ndx_start);
                }
                if !active.lists.is_empty() {
                    tx.write(&mut buf, NDX_DONE);
                    out.write_all(&buf)?;
                    buf.clear();
                    continue;
                }
            }
            phase += 1;
            if phase > max_phase {
                break;
            }
            tx.write(&mut buf, NDX_DONE);
            out.write_all(&buf)?;
            buf.clear();
            continue;
        }
        let mut req = req;
        let file = match active.lookup(req.ndx) {
            Lookup::File(f) => {
                if let Some(nums) = &req.xattr_nums {
                    let (reply, errors) = xattr_reply(&flist_enc, &f.entry, &f.path(), nums)?;
                    req.xattr_reply = reply;
                    for err in errors {
                        stats.io_error |= crate::flist::build::IOERR_GENERAL;
                        ctx.say(out, MsgCode::ErrorXfer, &err)?;
                    }
                }
                f
            }
            Lookup::ParentDir if req.iflags & iflags::TRANSFER == 0 => {
                if let Some((d, base)) = active.parent_dir(req.ndx) {
                    if let Some(nums) = &req.xattr_nums {
                        // The directory's own entry went out earlier, with its set.
                        let mut dir = d.clone();
                        dir.xattr = flist_enc.dir_xattrs.get(&d.name).copied().unwrap_or(0);
                        let name = std::path::Path::new(
                            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&d.name),
                        );
                        let path = base.map_or_else(|| name.to_path_buf(), |b| b.join(name));
                        let (reply, errors) = xattr_reply(&flist_enc, &dir, &path, nums)?;
                        req.xattr_reply = reply;
                        for err in errors {
                            stats.io_error |= crate::flist::build::IOERR_GENERAL;
                            ctx.say(out, MsgCode::ErrorXfer, &err)?;
                        }
                    }
                    if let Some(l) = ctx.items() {
                        l.set_pathname(base);
                        l.maybe_log_item(
                            d,
                            crate::role::log::logged_iflags(proto, req.iflags),
                            req.xname.as_deref().unwrap_or(b""),
                        );
                    }
                    if req.iflags & iflags::IS_NEW != 0 {
                        stats.created.add(d.mode);
                    }
                }
                write_ndx_and_attrs(&mut buf, &mut tx, proto, &req)?;
                out.write_all(&buf)?;
                buf.clear();
                continue;
            }
            _ => {
                return Err(RoleError::Protocol(format!(
                    "Invalid file index: {} [sender]",
                    req.ndx
                )))
            }
        };
        if req.iflags & iflags::TRANSFER == 0 {
            if let Some(l) = ctx.items() {
                l.set_pathname(Some(file.base()));
                l.maybe_log_item(
                    &file.entry,
                    crate::role::log::logged_iflags(proto, req.iflags),
                    req.xname.as_deref().unwrap_or(b""),
                );
            }
            if req.iflags & iflags::IS_NEW != 0 {
                stats.created.add(file.entry.mode);
            }
            write_ndx_and_attrs(&mut buf, &mut tx, proto, &req)?;
            out.write_all(&buf)?;
            buf.clear();
            continue;
        }
        if phase == 2 {
            return Err(RoleError::Protocol(
                "got transfer request in phase 2 [sender]".into(),
            ));
        }
        if !mode::is_reg(file.entry.mode) {
            return Err(RoleError::Protocol(format!(
                "received request to transfer non-regular file: {} [sender]",
                req.ndx
            )));
        }
        // A file asked for again (upstream FLAG_FILE_SENT) goes as usual:
        // no --append, and the basis rewritten in place is the file itself.
        let redo = track_redos && !sent_once.insert(req.ndx);
        if req.iflags & iflags::IS_NEW != 0 && sent.insert(req.ndx) {
            stats.created.add(file.entry.mode);
        }
        stats.xferred_files += 1;
        stats.total_transferred_size += file.entry.size;
        if dry_run {
            if let Some(l) = ctx.items() {
                l.set_pathname(Some(file.base()));
                l.log_item(
                    &file.entry,
                    crate::role::log::logged_iflags(proto, req.iflags),
                    None,
                );
            }
            write_ndx_and_attrs(&mut buf, &mut tx, proto, &req)?;
            out.write_all(&buf)?;
            buf.clear();
            continue;
        }
        let head = WireSumHead::read(input, proto)?;
        // --append: the header alone describes what the receiver has; no
        // sums follow (not for a redo, upstream's negated append_mode).
        let append = append_prefix(ctx.opts.append, redo, proto, &head);
        let sums = if append.is_some() {
            crate::protocol::sums::WireSums::default()
        } else {
            read_sums(input, &head)?
        };
        matcher.set_in_place(updating_basis_file(ctx, redo, &req));
        let path = file.path();
        let opened = if file.escapes {
            Err(std::io::Error::from_raw_os_error(nix::libc::ELOOP))
        } else {
            opener.open(&path)
        };
        let f = match opened {
            // Reads stop at the size seen at open: no read that only meets EOF.
            Ok((f, size)) => std::io::Read::take(f, size),
            Err(e) => {
                let name = (ctx.full_fname)(&file.entry.name, &path);
                if e.kind() == std::io::ErrorKind::NotFound {
                    stats.io_error |= crate::flist::build::IOERR_VANISHED;
                    ctx.say(out, MsgCode::Warning, &format!("file has vanished: {name}"))?;
                } else {
                    stats.io_error |= crate::flist::build::IOERR_GENERAL;
                    ctx.say(
                        out,
                        MsgCode::ErrorXfer,
                        &format!(
                            "rsync: [sender] send_files failed to open {name}: {}",
                            crate::fs::os_error_text(&e)
                        ),
                    )?;
                }
                if proto >= 30 {
                    out.send_msg(MsgCode::NoSend, &req.ndx.to_le_bytes())?;
                }
                continue;
            }
        };
        // upstream remember_initial_stats: %b counts from the index on.
        let written_before = out.bytes_written;
        write_ndx_and_attrs(&mut buf, &mut tx, proto, &req)?;
        head.write(&mut buf, proto);
        out.write_all(&buf)?;
        buf.clear();
        let before_transfer = ctx.items().is_some_and(|l| l.o.log_before_transfer());
        if let (Some(l), true) = (ctx.items(), before_transfer) {
            l.set_pathname(Some(file.base()));
            l.log_item(
                &file.entry,
                crate::role::log::logged_iflags(proto, req.iflags),
                None,
            );
        }
        if let Some(l) = ctx.local {
            l.progress_totals(stats.total_transferred_size, stats.total_size);
            if before_transfer {
            } else if l.o.name >= 1 && l.o.progress == 1 {
                l.info(&crate::protocol::text::name(&file.entry.name));
            }
        }
        let ms = send_file_delta(
            f,
            (&head, &sums, append),
            &ctx.n,
            &mut matcher,
            &mut encoder,
            out,
            ctx.local.map(|l| (l, file.entry.size)),
            &mut token_buf,
        )?;
        if let Some(l) = ctx.local {
            l.file_sent(file.entry.size.max(0) as u64);
            l.progress_end(
                file.entry.size,
                crate::role::log::ProgressPos {
                    xferred: stats.xferred_files,
                    num_files: stats.num_files.total,
                    index: active.index_of(req.ndx),
                    flist_eof: eof,
                },
            );
        }
        stats.literal_data += ms.literal_bytes;
        stats.matched_data += ms.matched_bytes;
        stats.matches += ms.matches;
        stats.hash_hits += ms.hash_hits;
        stats.false_alarms += ms.false_alarms;
        if let (Some(l), false) = (ctx.items(), before_transfer) {
            let bytes = crate::role::log::ByteCounts {
                read: 0,
                written: out.bytes_written.saturating_sub(written_before),
            };
            l.set_pathname(Some(file.base()));
            l.log_item_bytes(
                &file.entry,
                crate::role::log::logged_iflags(proto, req.iflags),
                bytes,
            );
        }
    }
    if stats.io_error != 0 && proto >= 30 {
        out.send_msg(MsgCode::IoError, &stats.io_error.to_le_bytes())?;
    }
    // upstream match_report (-vv, --debug=DELTASUM).
    if ctx.opts.debug_level("DELTASUM") >= 1 {
        let line = format!(
            "total: matches={}  hash_hits={}  false_alarms={} data={}",
            stats.matches, stats.hash_hits, stats.false_alarms, stats.literal_data
        );
        ctx.say(out, MsgCode::Info, &line)?;
    }
    tx.write(&mut buf, NDX_DONE);
    out.write_all(&buf)?;
    buf.clear();
    if ctx.am_server {
        // upstream do_server_sender: everything so far is flushed before
        // handle_stats reads the byte counts (which then include it, as
        // the client's "received" shows); the stats go in a frame of
        // their own.
        out.flush()?;
        let (read, written) = match &ctx.counters {
            Some((r, rb, w, wb)) => (
                (r.load(Ordering::Relaxed) - rb) as i64,
                (w.load(Ordering::Relaxed) - wb) as i64,
            ),
            None => (0, out.bytes_written as i64),
        };
        put_varlong30(&mut buf, read, 3, proto);
        put_varlong30(&mut buf, written, 3, proto);
        put_varlong30(&mut buf, stats.total_size, 3, proto);
        if proto >= 29 {
            put_varlong30(&mut buf, stats.flist_buildtime, 3, proto);
            put_varlong30(&mut buf, stats.flist_xfertime, 3, proto);
        }
        out.write_all(&buf)?;
        buf.clear();
    }
    // read_final_goodbye
    if proto >= 24 {
        let req = read_request(input, out, &mut rx, &mut tx, &rctx, stats)?;
        remove_sent(ctx, &active, out, stats)?;
        let mut last = req.ndx;
        if proto >= 31 && last == NDX_DONE {
            tx.write(&mut buf, NDX_DONE);
            out.write_all(&buf)?;
            buf.clear();
            last = read_request(input, out, &mut rx, &mut tx, &rctx, stats)?.ndx;
        }
        if last != NDX_DONE {
            return Err(RoleError::Protocol(format!(
                "Invalid packet at end of run ({last}) [sender]"
            )));
        }
    }
    out.flush()?;
    Ok(())
}

/// Literal runs at least this long skip the token buffer (see `literal_run`).
const VECTORED_MIN: usize = 64 * 1024;
/// Data bytes per literal token of such a run: with its 4-byte length, a
/// token is CHUNK_SIZE bytes on the wire.
const LITERAL_TOKEN: usize = crate::delta::CHUNK_SIZE - 4;

/// Adapts the matcher's output to the token encoder and the output stream.
struct EncSink<'a, W: Write> {
    enc: &'a mut TokenEncoder,
    buf: &'a mut Vec<u8>,
    out: &'a mut MuxWriter<W>,
    /// Bytes of the file covered so far, and the progress display to tell.
    done: i64,
    progress: Option<(&'a crate::role::log::ClientLog, i64)>,
}

impl<W: Write> EncSink<'_, W> {
    fn spill(&mut self) -> std::io::Result<()> {
        if self.buf.len() >= 32 * 1024 {
            self.out.write_all(self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl<W: Write> EncSink<'_, W> {
    fn advance(&mut self, n: usize) {
        self.done += n as i64;
        if let Some((l, size)) = self.progress {
            l.progress_update(self.done, size);
        }
    }
}

impl<W: Write> TokenSink for EncSink<'_, W> {
    fn literal(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.advance(data.len());
        self.enc
            .literal(self.buf, data)
            .map_err(std::io::Error::other)?;
        self.spill()
    }
    fn literal_run(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.len() < VECTORED_MIN || !self.enc.is_plain() {
            for chunk in data.chunks(crate::delta::CHUNK_SIZE) {
                self.literal(chunk)?;
            }
            return Ok(());
        }
        // A long plain run: the token headers and the data go to the
        // socket in vectored writes, without copying the data. Tokens stay
        // at most CHUNK_SIZE long (patched older receivers, e.g. Debian's
        // 3.2.7, refuse longer ones), and carry LITERAL_TOKEN bytes so that
        // a token with its length is exactly the 32 KiB a stock receiver
        // reads at a time: one read per token instead of two.
        self.advance(data.len());
        if !self.buf.is_empty() {
            self.out.write_all(self.buf)?;
            self.buf.clear();
        }
        let pieces: Vec<&[u8]> = data.chunks(LITERAL_TOKEN).collect();
        // piece.len() <= CHUNK_SIZE, so the cast cannot truncate.
        let heads: Vec<[u8; 4]> = pieces
            .iter()
            .map(|p| (p.len() as i32).to_le_bytes())
            .collect();
        let mut parts: Vec<&[u8]> = Vec::with_capacity(pieces.len() * 2);
        for (h, p) in heads.iter().zip(&pieces) {
            parts.push(h);
            parts.push(p);
        }
        self.out.write_data_vectored(&parts)
    }
    fn matched(&mut self, block_index: u32, data: &[u8]) -> std::io::Result<()> {
        self.advance(data.len());
        if self.enc.emits_matches() {
            self.enc
                .matched(self.buf, block_index, data)
                .map_err(std::io::Error::other)?;
        } else {
            self.enc
                .literal(self.buf, data)
                .map_err(std::io::Error::other)?;
        }
        self.spill()
    }
}

/// upstream send_files' updating_basis_file: the receiver writes this
/// file into its basis as the data comes (`--inplace` with the file
/// itself as the basis, or a partial file updated in place), so the delta
/// may name only blocks it has not overwritten yet. Below protocol 29 the
/// basis is not named: `--backup` means a backup copy is (not for a
/// `redo`, where upstream negates make_backups).
fn updating_basis_file(ctx: &SenderCtx, redo: bool, req: &Request) -> bool {
    let n = &ctx.n;
    let partial = crate::role::generator::PARTIAL_BASIS;
    if n.compat & crate::protocol::handshake::cf::INPLACE_PARTIAL_DIR != 0
        && req.basis_type == Some(partial)
    {
        return true;
    }
    if !(ctx.opts.inplace || ctx.opts.append > 0) {
        return false;
    }
    if n.proto >= 29 {
        matches!(req.basis_type, None | Some(0x80))
    } else {
        !ctx.opts.backup || redo
    }
}

/// `--append` for one requested file (upstream receive_sums and
/// match_sums with append_mode): how many bytes the receiver already has,
/// as the sum header describes them, and whether they count in the
/// whole-file digest (`--append-verify`, and plain `--append` below
/// protocol 30). None when the file is sent as usual: no `--append`, or a
/// `redo` (upstream negates append_mode for it).
fn append_prefix(append: u8, redo: bool, proto: u8, head: &WireSumHead) -> Option<(u64, bool)> {
    if append == 0 || redo {
        return None;
    }
    let count = u64::try_from(head.count).unwrap_or(0);
    let blength = u64::try_from(head.blength).unwrap_or(0);
    let mut len = count.saturating_mul(blength);
    if head.remainder > 0 {
        len = len.saturating_sub(blength.saturating_sub(head.remainder as u64));
    }
    Some((len, append > 1 || proto < 30))
}

/// The generator's block sums of one file, as the matcher takes them.
fn block_sums(
    head: &WireSumHead,
    sums: &crate::protocol::sums::WireSums,
) -> Result<BlockSums, RoleError> {
    let sh = SumHead {
        count: head.count,
        blength: head.blength,
        s2length: head.s2length,
        remainder: head.remainder,
    };
    let mut bs = BlockSums::new(sh);
    for (i, s1) in sums.sum1.iter().enumerate() {
        bs.push(*s1, &sums.sum2[i * sums.s2length..(i + 1) * sums.s2length])
            .map_err(|e| RoleError::Protocol(e.to_string()))?;
    }
    Ok(bs)
}

/// match_sums: the delta of one file against the generator's block sums
/// (`basis`: the header, the sums, and the `--append` prefix instead of
/// them), followed by the whole-file digest. Returns (literal, matched)
/// byte counts.
#[allow(clippy::too_many_arguments)]
fn send_file_delta<W: Write>(
    mut f: impl std::io::Read,
    basis: (
        &WireSumHead,
        &crate::protocol::sums::WireSums,
        Option<(u64, bool)>,
    ),
    n: &Negotiated,
    matcher: &mut Matcher,
    enc: &mut TokenEncoder,
    out: &mut MuxWriter<W>,
    progress: Option<(&crate::role::log::ClientLog, i64)>,
    token_buf: &mut Vec<u8>,
) -> Result<crate::delta::matcher::MatchStats, RoleError> {
    let (head, sums, append) = basis;
    let bs = match append {
        Some(_) => None,
        None => Some(block_sums(head, sums)?),
    };
    token_buf.clear();
    let mut sink = EncSink {
        enc,
        buf: token_buf,
        out,
        done: 0,
        progress,
    };
    let (kind, seed) = (n.checksum, n.seed as u32);
    let outcome = match (append, &bs) {
        (Some((prefix, verify)), _) => {
            matcher.append_file(&mut f, prefix, verify, kind, seed, &mut sink)
        }
        (None, Some(bs)) => {
            matcher.match_file(&mut f, bs, kind, seed, n.proper_seed_order(), &mut sink)
        }
        (None, None) => return Err(RoleError::Protocol("no block sums [sender]".into())),
    }
    .map_err(|e| match e {
        crate::delta::DeltaError::Io(io) => RoleError::from(io),
        other => RoleError::Protocol(other.to_string()),
    })?;
    sink.enc
        .end_file(sink.buf)
        .map_err(|e| RoleError::Protocol(e.to_string()))?;
    let d = outcome.digest;
    sink.buf
        .extend_from_slice(&d.as_bytes()[..n.checksum.digest_len().min(d.len())]);
    let EncSink { buf, out, .. } = sink;
    out.write_all(buf)?;
    buf.clear();
    Ok(outcome.stats)
}
