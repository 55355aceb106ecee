//! The receiver of the receiving side (upstream: receiver.c recv_files,
//! receive_data): reads each file's delta from the sender, rebuilds it from
//! the basis into a temp file beside the destination, checks the whole-file
//! digest and only then renames it into place. A mismatch is sent back to
//! the generator for the redo phase; a failed file never replaces the old one.

use super::generator::{
    RecvConfig, RecvEvent, Registry, SharedOut, BACKUP_BASIS, FUZZY_BASIS, PARTIAL_BASIS,
};
use super::RoleError;
use crate::checksum::StrongHasher;
use crate::delta::patcher::Patcher;
use crate::delta::sums::SumHead;
use crate::protocol::flist::mode;
use crate::protocol::mux::MsgCode;
use crate::protocol::ndx::{
    iflags, NdxCodec, NDX_DEL_STATS, NDX_DONE, NDX_FLIST_EOF, NDX_FLIST_OFFSET,
};
use crate::protocol::sums::WireSumHead;
use crate::protocol::tokens::{CompressKind, Token, TokenDecoder};
use crate::protocol::varint::{read_byte, read_short, read_varint, read_vstring};
use std::io::{BufWriter, Read, Write};
use std::sync::mpsc::Sender;

/// What the receiver counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecvStats {
    /// Files rebuilt and renamed into place.
    pub files: u64,
    /// IOERR_* bits.
    pub io_error: i32,
    /// Files whose data was requested.
    pub xferred_files: u64,
    /// Their size.
    pub total_transferred_size: i64,
    /// Literal bytes received.
    pub literal_data: u64,
    /// Bytes copied from the basis.
    pub matched_data: u64,
    /// Items created, by type.
    pub created: crate::role::stats::TypeCounts,
    /// Deletions (files, dirs, symlinks, devices, specials), from the generator.
    pub deleted: Option<[i32; 5]>,
    /// Entries of all lists received, by type.
    pub num_files: crate::role::stats::TypeCounts,
    /// Size of the files in all lists received.
    pub total_size: i64,
    /// Bytes the file lists took on the wire.
    pub flist_size: i64,
    /// A client's copy of the sender's statistics: the sender's bytes read,
    /// bytes written, total size, list build and transfer times (ms).
    pub peer: Option<[i64; 5]>,
}

/// A sink that discards (after a write error the stream must still be read to its end).
struct Sink<W: Write> {
    inner: Option<W>,
    error: Option<std::io::Error>,
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Some(w) = self.inner.as_mut() {
            if let Err(e) = w.write_all(b) {
                self.error = Some(e);
                self.inner = None;
            }
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.inner.as_mut() {
            if let Err(e) = w.flush() {
                self.error = Some(e);
                self.inner = None;
            }
        }
        Ok(())
    }
}

/// Where rebuilt data goes: buffered, or sparse (`-S`: runs of zeros become holes).
/// Where a received file's data goes: the temp (or in-place) file, borrowed
/// (no dup per file), buffered or with holes left for zero runs.
enum OutFile<'f> {
    Plain(BufWriter<&'f std::fs::File>),
    Sparse { file: &'f std::fs::File, hole: u64 },
}

impl Write for OutFile<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            OutFile::Plain(w) => w.write(b),
            OutFile::Sparse { file, hole } => {
                crate::fs::sparse::write_sparse(file, b, hole).map(|()| b.len())
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OutFile::Plain(w) => w.flush(),
            OutFile::Sparse { file, hole } => {
                crate::fs::sparse::finish_sparse(file, hole).map(|_| ())
            }
        }
    }
}

/// Files at least this large get their space allocated before their data
/// is written.
const PREALLOC_MIN: i64 = 1 << 20;

/// A preallocated file that got fewer bytes than its listed size (it
/// shrank at the sender, or its transfer broke off): the space past its
/// end goes back (it is beyond the size, so reads never saw it).
fn give_back_unwritten(f: &std::fs::File, written: u64, listed: i64) {
    let written = i64::try_from(written).unwrap_or(i64::MAX);
    if written < listed {
        let _ = nix::fcntl::fallocate(
            f,
            nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            written,
            listed - written,
        );
    }
}

/// recv_files: run until the sender's last phase ends.
pub fn run<W: Write>(
    cfg: &RecvConfig,
    registry: &std::sync::Mutex<Registry>,
    inc: bool,
    input: &mut super::input::InputReader,
    events: &Sender<RecvEvent>,
    out: &SharedOut<'_, W>,
) -> Result<RecvStats, RoleError> {
    let proto = cfg.n.proto;
    let mut rx = NdxCodec::new(proto);
    let max_phase = if proto >= 29 { 2 } else { 1 };
    let mut phase = 0;
    let mut dec = TokenDecoder::new(cfg.n.compress, proto);
    let mut stats = RecvStats::default();
    let do_fsync = cfg.opts.misc.iter().any(|m| m == "fsync");
    // --preallocate: every file's space before its data (large ones get it anyway).
    let preallocate = cfg.opts.misc.iter().any(|m| m == "preallocate");
    // --delay-updates: (partial path, final name) renamed once the redo phase is over.
    // --delay-updates: (where the file waits, its name, its index).
    let mut pending: Vec<(Vec<u8>, Vec<u8>, i32)> = Vec::new();
    let text = |code: MsgCode, t: String| -> Result<(), RoleError> {
        if let Some(l) = &cfg.local {
            l.text(code, t.as_bytes());
            return Ok(());
        }
        let mut o = out.lock();
        super::sender::send_text(&mut o, proto, code, &t)?;
        Ok(())
    };
    let log = cfg.local.as_deref();
    // Item lines: the client's terminal, or a daemon's transfer log.
    let ilog = log.or(cfg.xfer_log.as_deref());
    let shown = |e: &crate::protocol::flist::FileEntry| -> crate::protocol::flist::FileEntry {
        match &cfg.shown_name {
            Some(n) => crate::protocol::flist::FileEntry {
                name: n.clone(),
                ..e.clone()
            },
            None => e.clone(),
        }
    };
    // Files whose data arrived once (a redo does not count them as created again).
    let mut seen_new = std::collections::HashSet::new();
    // Lists received and not yet finished by the sender's DONEs (incremental recursion).
    let mut active_lists = 1usize;
    // Lists ended by the sender so far (they end in order).
    let mut retired_lists = 0usize;
    let mut redone = std::collections::HashSet::new();
    let lock = || match registry.lock() {
        Ok(r) => r,
        Err(p) => p.into_inner(),
    };
    // The first list's bytes (later lists are counted as they arrive), for
    // --info=progress2's whole-transfer total.
    let first_size: i64 = lock()
        .lists
        .first()
        .map(|l| {
            l.files
                .iter()
                .filter(|e| !mode::is_dir(e.mode))
                .map(|e| e.size)
                .sum()
        })
        .unwrap_or(0);
    // Finished indexes go to the generator in batches: before we wait for
    // input, before any other event, and every DONE_BATCH files (one
    // wake-up of the generator per batch instead of one per file).
    let done = DoneBatch {
        events,
        ndxs: std::cell::RefCell::new(Vec::new()),
    };
    let events = &done;
    loop {
        if !input.ready() {
            done.flush();
        }
        let ndx = rx.read(input)?;
        if inc && ndx == NDX_FLIST_EOF {
            lock().eof = true;
            let _ = events.send(RecvEvent::FlistEof);
            continue;
        }
        if inc && ndx <= NDX_FLIST_OFFSET {
            let dir_ndx = (NDX_FLIST_OFFSET - ndx) as usize;
            let mut r = lock();
            let l = r.recv.sub(input, dir_ndx).map_err(|e| match e {
                crate::flist::recv::RecvListError::Proto(p) => RoleError::Proto(p),
                other => RoleError::Unsupported(other.to_string()),
            })?;
            for e in &l.files {
                stats.num_files.add(e.mode);
                if !mode::is_dir(e.mode) {
                    stats.total_size += e.size;
                }
            }
            r.lists.push(std::sync::Arc::new(l));
            drop(r);
            active_lists += 1;
            let _ = events.send(RecvEvent::NewList);
            continue;
        }
        if ndx == NDX_DONE {
            // progress2 shows where the transfer stands at each end of a
            // list or phase (upstream receiver: end_progress(0)).
            // (Once incremental lists are all done there is no current
            // list, and nothing is shown.)
            let current_list = if inc {
                active_lists > 0
            } else {
                phase < max_phase
            };
            if let Some(l) = log.filter(|l| l.o.progress >= 2 && current_list) {
                let (num_files, eof) = {
                    let r = lock();
                    (r.recv.total, r.eof)
                };
                l.progress_end(
                    0,
                    crate::role::log::ProgressPos {
                        xferred: stats.xferred_files,
                        num_files,
                        index: num_files.saturating_sub(1),
                        flist_eof: eof,
                    },
                );
            }
            if inc && active_lists > 0 {
                active_lists -= 1;
                // The sender ended the oldest list: the generator had
                // finished it and its files are all here. Keep only what
                // the end of the run needs (unless deletions still walk
                // every list then).
                if !cfg.deletes_after_transfer() {
                    let mut r = lock();
                    if let Some(l) = r.lists.get_mut(retired_lists) {
                        *l = std::sync::Arc::new(l.retired());
                    }
                }
                retired_lists += 1;
                if active_lists > 0 {
                    continue;
                }
            }
            phase += 1;
            if phase == 2 && !pending.is_empty() {
                // In place now: hard-link members may be linked to them.
                let put: Vec<(i32, bool)> = pending.iter().map(|p| (p.2, true)).collect();
                finish_delayed(cfg, &mut pending, &text)?;
                let _ = events.send(RecvEvent::FilesDone(put));
            }
            let _ = events.send(RecvEvent::PhaseDone);
            if phase > max_phase {
                break;
            }
            continue;
        }
        if ndx == NDX_DEL_STATS {
            for _ in 0..5 {
                read_varint(input)?;
            }
            continue;
        }
        if ndx < 0 {
            return Err(RoleError::Protocol(format!(
                "Invalid file index: {ndx} [receiver]"
            )));
        }
        let fl = if proto >= 29 {
            read_short(input)?
        } else {
            iflags::TRANSFER
        };
        let mut basis_type: Option<u8> = None;
        if fl & iflags::BASIS_TYPE_FOLLOWS != 0 {
            basis_type = Some(read_byte(input)?);
        }
        let xname = if fl & iflags::XNAME_FOLLOWS != 0 {
            read_vstring(input, crate::protocol::MAX_PATH_LEN)?
        } else {
            Vec::new()
        };
        // -X: the long attribute values the generator asked for
        // (upstream recv_xattr_request).
        let xattr_values = match &cfg.xattrs {
            Some(_)
                if fl & iflags::REPORT_XATTR != 0
                    && !cfg.opts.dry_run
                    && !cfg.n.xattr_optim(fl) =>
            {
                Some(crate::protocol::xattr::read_values(input)?)
            }
            _ => None,
        };
        if fl & iflags::TRANSFER == 0 {
            // The entry a record names: a file, or a directory by the
            // index before its contents' list.
            let found = (xattr_values.is_some() || ilog.is_some())
                .then(|| {
                    let r = lock();
                    match r.find(ndx) {
                        Some((list, pos)) => Some(list.files[pos].clone()),
                        None => {
                            r.lists
                                .iter()
                                .find(|l| l.ndx_start - 1 == ndx)
                                .and_then(|l| match l.parent {
                                    Some(p) => r.recv.dirs.get(p).cloned(),
                                    None => l.files.first().cloned(),
                                })
                        }
                    }
                })
                .flatten();
            if let (Some(x), Some(values)) = (&cfg.xattrs, xattr_values) {
                if let Some(e) = &found {
                    x.received(e, values).map_err(RoleError::Protocol)?;
                    // The attributes are set now, unless the item is a
                    // local link or copy, which has them (upstream recv_files).
                    let both = iflags::XNAME_FOLLOWS | iflags::LOCAL_CHANGE;
                    if fl & both != both {
                        for err in x.apply_at(e, &cfg.dest, &e.name).errors {
                            text(MsgCode::ErrorXfer, format!("rsync: [receiver] {err}"))?;
                        }
                        // upstream then runs set_file_attrs with the
                        // receiver's copy of the entry, whose mode is the
                        // sender's even without -p (only the generator's
                        // copy took the destination's): it chmods to it.
                        if let Err(err) = receiver_mode(cfg, e) {
                            text(MsgCode::ErrorXfer, format!("rsync: [receiver] {err}"))?;
                        }
                    }
                }
            }
            if let Some(l) = ilog {
                if let Some(e) = found {
                    l.maybe_log_item(
                        &shown(&e),
                        crate::role::log::logged_iflags(proto, fl),
                        &xname,
                    );
                    if fl & iflags::IS_NEW != 0 {
                        stats.created.add(e.mode);
                    }
                }
            }
            continue;
        }
        let Some((list, pos)) = lock().find(ndx) else {
            return Err(RoleError::Protocol(format!(
                "Invalid file index: {ndx} [receiver]"
            )));
        };
        let e = &list.files[pos];
        let entry = e;
        if let (Some(x), Some(values)) = (&cfg.xattrs, xattr_values) {
            x.received(e, values).map_err(RoleError::Protocol)?;
        }
        let _done = FileDoneGuard {
            batch: &done,
            ndx,
            armed: std::cell::Cell::new(true),
            ok: std::cell::Cell::new(false),
        };
        if !mode::is_reg(e.mode) {
            return Err(RoleError::Protocol(format!(
                "received request to transfer non-regular file: {ndx} [receiver]"
            )));
        }
        if fl & iflags::IS_NEW != 0 && seen_new.insert(ndx) {
            stats.created.add(e.mode);
        }
        stats.xferred_files += 1;
        stats.total_transferred_size += e.size;
        if cfg.opts.dry_run {
            if let Some(l) = ilog {
                l.log_item(&shown(e), crate::role::log::logged_iflags(proto, fl), None);
            }
            continue;
        }
        let data_start = input.consumed;
        let head = WireSumHead::read(input, proto)?;
        let sh = SumHead {
            count: head.count,
            blength: head.blength,
            s2length: head.s2length,
            remainder: head.remainder,
        };
        let rel = &e.name;
        // Below protocol 29 no basis type comes: an in-place update with
        // --backup reads the copy the generator made first (upstream
        // recv_files; not for a redo, which the generator bases on the file).
        let basis_type = match basis_type {
            None if proto < 29
                && cfg.inplace()
                && cfg.backup().is_some()
                && !redone.contains(&ndx) =>
            {
                Some(BACKUP_BASIS)
            }
            t => t,
        };
        let (basis_root, other_name) = basis_of(cfg, basis_type, rel, &xname)?;
        let partial_basis = other_name
            .clone()
            .filter(|_| basis_type == Some(PARTIAL_BASIS));
        let basis_name = other_name.as_deref().unwrap_or(rel);
        let basis = if head.count > 0 {
            basis_root.open_read(basis_name).ok()
        } else {
            None
        };
        // upstream dest_mode: without -p, a file keeps its basis's
        // permissions (none: a new file's).
        let perms_from = match &basis {
            Some(f) => crate::fs::meta::fstat(f).ok(),
            None => basis_root.stat(basis_name).ok().flatten(),
        }
        .filter(|s| mode::is_reg(s.mode));
        // --append implies --inplace: the existing prefix stays, new data
        // goes after it (not in a redo: upstream negates append_mode then).
        let append = cfg.opts.append > 0 && head.count > 0 && !redone.contains(&ndx);
        let inplace = cfg.inplace();
        // The mode the temp file is created with (see temp_mode).
        let created_mode = temp_mode(cfg, e);
        let temp = if inplace {
            cfg.dest.open_inplace(rel).map(|f| (f, None))
        } else {
            cfg.dest
                .create_temp_in(rel, cfg.temp_dir.as_deref(), created_mode)
                .map(|(f, t)| (f, Some(t)))
        };
        let (file, tname) = match temp {
            Ok((f, t)) => {
                // --partial: what arrived before a fatal signal is kept
                // under the real name (or in the partial dir), as
                // upstream's cleanup.
                if let (Some(t), true) = (
                    &t,
                    cfg.opts.partial && !cfg.opts.delay_updates && cfg.temp_dir.is_none(),
                ) {
                    let leaf = rel.rsplit(|&c| c == b'/').next().unwrap_or(rel);
                    let keep = match cfg.partial_dir() {
                        Some(mut pd) => {
                            pd.push(b'/');
                            pd.extend_from_slice(leaf);
                            pd
                        }
                        None => leaf.to_vec(),
                    };
                    t.keep_on_signal(&keep, cfg.dest_perms(e, perms_from.as_ref()));
                }
                (Some(f), t)
            }
            Err(err) => {
                text(
                    MsgCode::ErrorXfer,
                    format!(
                        "rsync: [receiver] mkstemp {} failed: {}",
                        cfg.dest.show(rel),
                        err
                    ),
                )?;
                stats.io_error |= crate::flist::build::IOERR_GENERAL;
                (None, None)
            }
        };
        let sparse = cfg.opts.sparse && !inplace;
        // A large new file gets its space in one call before its data
        // comes (on tmpfs, page by page as writes arrive cost ~10% more of
        // a 1 GiB transfer). The size stays as written; what is not
        // written (the file shrank at the sender) is given back below.
        let prealloc = match file.as_ref() {
            Some(f)
                if !sparse && !inplace && e.size > 0 && (e.size >= PREALLOC_MIN || preallocate) =>
            {
                match nix::fcntl::fallocate(
                    f,
                    nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                    0,
                    e.size,
                ) {
                    Ok(()) => true,
                    Err(errno) => {
                        // Asked for: a warning, as upstream's do_fallocate.
                        if preallocate {
                            text(
                                MsgCode::Warning,
                                format!(
                                    "rsync: [receiver] do_fallocate {}: {}",
                                    cfg.dest.show(rel),
                                    crate::fs::os_error_text(&std::io::Error::from(errno))
                                ),
                            )?;
                        }
                        false
                    }
                }
            }
            _ => false,
        };
        let listed_size = e.size;
        let writer = Sink {
            inner: file.as_ref().map(|f| {
                if sparse {
                    OutFile::Sparse { file: f, hole: 0 }
                } else {
                    // Small files need small buffers (no 256 KiB each).
                    let cap = usize::try_from(e.size)
                        .unwrap_or(0)
                        .clamp(8 * 1024, 256 * 1024);
                    OutFile::Plain(BufWriter::with_capacity(cap, f))
                }
            }),
            error: None,
        };
        let mut patcher = Patcher::new(basis, writer, sh);
        let mut hasher = StrongHasher::new_file(cfg.n.checksum, cfg.n.seed as u32);
        let mut prefix = 0u64;
        if append {
            // upstream receive_data: the prefix length the header describes; with
            // --append-verify (and below protocol 30) it is part of the digest.
            prefix = (head.count as u64) * (head.blength as u64);
            if head.remainder != 0 {
                prefix -= (head.blength - head.remainder) as u64;
            }
            if cfg.opts.append > 1 || proto < 30 {
                if let Ok(mut f) = cfg.dest.open_read(rel) {
                    let mut left = prefix;
                    let mut buf = vec![0u8; 64 * 1024];
                    while left > 0 {
                        let want = buf.len().min(left as usize);
                        match f.read(&mut buf[..want]) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                hasher.update(&buf[..n]);
                                left -= n as u64;
                            }
                        }
                    }
                }
            }
            if let Some(f) = file.as_ref() {
                use std::io::Seek;
                let mut f = f;
                let _ = f.seek(std::io::SeekFrom::Start(prefix));
            }
        }
        let before_transfer = log.is_some_and(|l| l.o.log_before_transfer());
        if let Some(l) = log {
            if before_transfer {
                l.log_item(&shown(e), crate::role::log::logged_iflags(proto, fl), None);
            } else if l.o.name >= 1 && l.o.progress == 1 {
                l.info(&crate::protocol::text::name(&shown(e).name));
            }
        }
        let zlib = cfg.n.compress == CompressKind::Zlib;
        let mut block_data = Vec::new();
        let mut got = 0i64;
        if let Some(l) = log {
            l.progress_totals(stats.total_transferred_size, stats.total_size + first_size);
            l.progress_update(0, e.size);
        }
        let mut failed: Option<String> = None;
        loop {
            let tok = match dec.next(input) {
                Ok(t) => t,
                Err(e) => {
                    let err = match e {
                        crate::protocol::tokens::TokenError::Io(io) => RoleError::from(io),
                        other => RoleError::Protocol(other.to_string()),
                    };
                    // --partial: keep what arrived under the real name, as the next run's basis.
                    if cfg.opts.partial && !inplace {
                        if let (Ok((mut sink, written)), Some(t), Some(f)) =
                            (patcher.finish(), tname, file.as_ref())
                        {
                            let _ = sink.flush();
                            drop(sink);
                            if prealloc {
                                give_back_unwritten(f, written, listed_size);
                            }
                            // Like upstream's finish_transfer from cleanup: modes and owner, not the time.
                            // (Owner first: a chown clears set-id bits.)
                            let (uid, gid) = cfg.dest_owner(entry);
                            if uid.is_some() || gid.is_some() {
                                let _ = t.set_owner(f, uid, gid);
                            }
                            let existing = cfg.dest.stat(rel).ok().flatten();
                            let _ = t.set_mode(
                                f,
                                cfg.dest_perms(
                                    entry,
                                    existing.as_ref().filter(|s| mode::is_reg(s.mode)),
                                ),
                            );
                            match cfg
                                .partial_path(rel)
                                .filter(|_| cfg.opts.partial_dir.is_some())
                            {
                                Some(pp) => {
                                    if let Some(d) = pp.iter().rposition(|&c| c == b'/') {
                                        let _ = cfg.dest.make_path(&pp[..d], 0o700);
                                    }
                                    let _ = t.commit(&pp);
                                }
                                None => {
                                    let _ = t.commit(rel);
                                }
                            }
                        }
                    }
                    return Err(err);
                }
            };
            match tok {
                Token::End => break,
                Token::Literal(d) => {
                    stats.literal_data += d.len() as u64;
                    got += d.len() as i64;
                    if let Some(l) = log {
                        l.progress_update(got, e.size);
                    }
                    hasher.update(d);
                    if failed.is_none() {
                        if let Err(err) = patcher.literal(d) {
                            failed = Some(err.to_string());
                        }
                    }
                }
                Token::Block(i) => {
                    block_data.clear();
                    let r = patcher.copy_block(i, |d| {
                        stats.matched_data += d.len() as u64;
                        got += d.len() as i64;
                        hasher.update(d);
                        if zlib {
                            block_data.extend_from_slice(d);
                        }
                    });
                    if let Err(err) = r {
                        // Without the block the stream cannot be followed: the transfer is broken.
                        return Err(RoleError::Protocol(format!("{err} [receiver]")));
                    }
                    if zlib {
                        dec.see_block(&block_data)
                            .map_err(|e| RoleError::Protocol(e.to_string()))?;
                    }
                }
            }
        }
        let mut theirs = vec![0u8; cfg.n.checksum.digest_len()];
        input.read_exact(&mut theirs)?;
        if let Some(l) = log.filter(|l| l.o.progress > 0) {
            let (num_files, eof) = {
                let r = lock();
                (r.recv.total, r.eof)
            };
            let index = list.index_base + pos as u64;
            l.progress_end(
                e.size,
                crate::role::log::ProgressPos {
                    xferred: stats.xferred_files,
                    num_files,
                    index,
                    flist_eof: eof,
                },
            );
        }
        if let (Some(l), false) = (ilog, before_transfer) {
            let bytes = crate::role::log::ByteCounts {
                read: input.consumed - data_start,
                written: 0,
            };
            l.log_item_bytes(&shown(e), crate::role::log::logged_iflags(proto, fl), bytes);
        }
        let ours = hasher.finish();
        let (mut sink, written) = patcher
            .finish()
            .map_err(|e| RoleError::Protocol(e.to_string()))?;
        let _ = sink.flush();
        if let (true, Some(f)) = (prealloc, file.as_ref()) {
            give_back_unwritten(f, written, e.size);
        }
        if let Some(err) = sink.error.take() {
            // A full disk (or any failed write) ends the transfer, as
            // upstream receive_data does (exit 11); the temp file goes, an
            // existing file stays as it was.
            drop(sink);
            if let Some(t) = tname {
                let _ = t.discard();
            }
            return Err(RoleError::FileIo(format!(
                "rsync: [receiver] write failed on {}: {}",
                cfg.dest.show(rel),
                crate::fs::os_error_text(&err)
            )));
        }
        drop(sink);
        let Some(file) = file else {
            continue;
        };
        // --fsync: the data reaches the disk before the file is verified
        // and renamed; a failure ends the transfer (upstream receive_data).
        if do_fsync && failed.is_none() {
            if let Err(err) = file.sync_all() {
                if let Some(t) = tname {
                    let _ = t.discard();
                }
                return Err(RoleError::FileIo(format!(
                    "rsync: [receiver] fsync failed on {}: {}",
                    cfg.dest.show(rel),
                    crate::fs::os_error_text(&err)
                )));
            }
        }
        if inplace {
            let ok = ours.as_bytes() == &theirs[..];
            _done.ok.set(ok && failed.is_none());
            let end = InplaceEnd {
                len: prefix + written,
                failed,
                digest_ok: ok,
                perms_from: perms_from.as_ref(),
            };
            finish_inplace(cfg, rel, e, &file, end, &mut stats, &text)?;
            if !ok {
                let redo = phase == 0 && redone.insert(ndx);
                failed_verification(cfg, rel, "retained", redo, &mut stats, &text)?;
                if redo {
                    _done.armed.set(false);
                    let _ = events.send(RecvEvent::Redo(ndx));
                }
            }
            continue;
        }
        let Some(tname) = tname else {
            continue;
        };
        if let Some(why) = failed {
            let _ = tname.discard();
            stats.io_error |= crate::flist::build::IOERR_GENERAL;
            text(MsgCode::ErrorXfer, format!("rsync: [receiver] {why}"))?;
            continue;
        }
        if ours.as_bytes() != &theirs[..] {
            let _ = tname.discard();
            let redo = phase == 0 && redone.insert(ndx);
            failed_verification(cfg, rel, "discarded", redo, &mut stats, &text)?;
            if redo {
                _done.armed.set(false);
                let _ = events.send(RecvEvent::Redo(ndx));
            }
            continue;
        }
        // Attributes on the temp file, then the atomic rename.
        // What is already there matters only for kept permissions (no -p)
        // and backups.
        let existing = if cfg.opts.perms && cfg.backup().is_none() {
            None
        } else {
            cfg.dest.stat(rel).ok().flatten()
        };
        let kept = existing.as_ref().filter(|s| mode::is_reg(s.mode));
        let perms = cfg.dest_perms(e, kept.or(perms_from.as_ref()));
        let (mut uid, mut gid) = cfg.dest_owner(e);
        let mut mode_ok = false;
        if uid.is_some() || gid.is_some() || created_mode == perms {
            // Only what differs (upstream compares with a stat first): a
            // temp file usually has the wanted owner already, often the
            // wanted mode too (see temp_mode), and an fstat is cheaper than
            // a chown or a chmod.
            if let Ok(st) = crate::fs::meta::fstat(&file) {
                uid = uid.filter(|&u| u != st.uid);
                gid = gid.filter(|&g| g != st.gid);
                mode_ok = st.mode & 0o7777 == perms && perms & 0o6000 == 0;
            }
        }
        // Owner before mode, as upstream: a chown clears set-id bits.
        let mut res = Ok(());
        if uid.is_some() || gid.is_some() {
            res = tname.set_owner(&file, uid, gid);
        }
        // -X: the attributes, before the final mode (which may not let
        // their owner write them), long values found at the destination.
        if let Some(x) = cfg.xattrs.as_ref().filter(|x| x.set_of(e).is_some()) {
            if !cfg.am_root && created_mode & 0o200 == 0 {
                let _ = tname.set_mode(&file, created_mode | 0o200);
                mode_ok = false;
            }
            for err in xattrs_on_file(x, cfg, e, rel, &file) {
                stats.io_error |= crate::flist::build::IOERR_GENERAL;
                text(MsgCode::ErrorXfer, format!("rsync: [receiver] {err}"))?;
            }
        }
        if res.is_ok() && !mode_ok {
            res = tname.set_mode(&file, perms);
        }
        if res.is_ok() && cfg.opts.times {
            res = tname.set_times(&file, e.mtime, e.mtime_nsec, None);
        }
        if let Err(err) = res {
            text(MsgCode::ErrorXfer, format!("rsync: [receiver] {err}"))?;
            stats.io_error |= crate::flist::build::IOERR_GENERAL;
        }
        drop(file);
        if let (Some((suffix, dir)), Some(ex)) = (cfg.backup(), &existing) {
            if !mode::is_dir(ex.mode) {
                match cfg.dest.backup_keep(rel, &suffix, dir.as_deref()) {
                    Err(err) => text(MsgCode::ErrorXfer, format!("rsync: [receiver] {err}"))?,
                    Ok(true) => {
                        if let Some(line) = cfg.backed_up_line(rel) {
                            text(MsgCode::Info, line)?;
                        }
                    }
                    Ok(false) => {}
                }
            }
        }
        let delayed = if cfg.opts.delay_updates {
            cfg.partial_path(rel)
        } else {
            None
        };
        if let Some(pp) = &delayed {
            if let Some(d) = pp.iter().rposition(|&c| c == b'/') {
                let _ = cfg.dest.make_path(&pp[..d], 0o700);
            }
        }
        match tname.commit(delayed.as_deref().unwrap_or(rel)) {
            Ok(()) => {
                match delayed {
                    Some(pp) => pending.push((pp, rel.clone(), ndx)),
                    None => _done.ok.set(true),
                }
                // A partial file used as the basis is no longer needed.
                if let Some(pb) = &partial_basis {
                    let _ = cfg.dest.unlink(pb);
                    if let Some(d) = pb.iter().rposition(|&c| c == b'/') {
                        let _ = cfg.dest.rmdir(&pb[..d]);
                    }
                }
                stats.files += 1;
                if cfg.opts.remove_source_files {
                    // The sender may now remove its copy (upstream: MSG_SUCCESS).
                    let mut o = out.lock();
                    o.send_msg(MsgCode::Success, &ndx.to_le_bytes())?;
                }
            }
            Err(err) => {
                stats.io_error |= crate::flist::build::IOERR_GENERAL;
                text(MsgCode::ErrorXfer, format!("rsync: [receiver] {err}"))?;
            }
        }
    }
    if log.is_some() {
        // A client reads the sender's statistics here (upstream handle_stats).
        let mut v = [0i64; 5];
        let n = if proto >= 29 { 5 } else { 3 };
        for x in v.iter_mut().take(n) {
            *x = crate::protocol::varint::read_varlong30(input, 3, proto)?;
        }
        stats.peer = Some(v);
    }
    let _ = events.send(RecvEvent::Finished);
    // Protocol 31: the sender echoes the generator's DONE (read_final_goodbye); EOF may follow.
    if proto >= 31 {
        let _ = rx.read(input);
    }
    Ok(stats)
}

/// Where the basis of a transfer is (upstream recv_files' switch on the
/// basis type the generator chose and the sender echoed): the root it is
/// under, and its name there when it is not the file's own. An unknown
/// type, or a fuzzy basis `xname` that is no plain name of the file's
/// directory (or that the module's filters hide), falls back to the file
/// itself.
fn basis_of<'c>(
    cfg: &'c RecvConfig,
    basis_type: Option<u8>,
    rel: &[u8],
    xname: &[u8],
) -> Result<(&'c crate::fs::dest::DestRoot, Option<Vec<u8>>), RoleError> {
    let name = match basis_type {
        Some(j) if (j as usize) < cfg.basis_dirs.len() => {
            return Ok((&cfg.basis_dirs[j as usize].1, None))
        }
        Some(j) if j & 0x80 == 0 => {
            return Err(RoleError::Protocol(format!(
                "invalid basis type {j} [receiver]"
            )))
        }
        Some(PARTIAL_BASIS) => cfg.partial_path(rel),
        Some(BACKUP_BASIS) => cfg.backup_path(rel),
        Some(t) if t >= FUZZY_BASIS => return fuzzy_basis_of(cfg, t - FUZZY_BASIS, rel, xname),
        _ => None,
    };
    Ok((&cfg.dest, name))
}

/// A fuzzy basis (upstream FNAMECMP_FUZZY + `list`): `xname` in the
/// file's directory, at the destination (`list` 0) or in basis dir
/// `list - 1`. Refused without `--fuzzy`, as upstream does.
fn fuzzy_basis_of<'c>(
    cfg: &'c RecvConfig,
    list: u8,
    rel: &[u8],
    xname: &[u8],
) -> Result<(&'c crate::fs::dest::DestRoot, Option<Vec<u8>>), RoleError> {
    if list == 0 && cfg.opts.fuzzy == 0 {
        return Err(RoleError::Protocol(format!(
            "rsync: refusing malicious fuzzy operation for {}",
            crate::protocol::text::name(xname)
        )));
    }
    let root = match list.checked_sub(1) {
        None => &cfg.dest,
        Some(j) => match cfg.basis_dirs.get(j as usize) {
            Some(b) => &b.1,
            None => {
                let t = u32::from(FUZZY_BASIS) + u32::from(list);
                return Err(RoleError::Protocol(format!(
                    "invalid basis_dir index: {t}."
                )));
            }
        },
    };
    let plain = !xname.is_empty() && xname != b"." && xname != b".." && !xname.contains(&b'/');
    let dir = match rel.iter().rposition(|&c| c == b'/') {
        Some(p) => &rel[..p],
        None => b"".as_slice(),
    };
    let path = super::generator::join(dir, xname);
    if !plain || (cfg.daemon_excluded)(&path, false) {
        return Ok((&cfg.dest, None));
    }
    Ok((root, Some(path)))
}

/// Finished indexes not yet sent to the generator.
struct DoneBatch<'e> {
    events: &'e Sender<RecvEvent>,
    ndxs: std::cell::RefCell<Vec<(i32, bool)>>,
}

/// Files per `FilesDone` event at most.
const DONE_BATCH: usize = 256;

impl DoneBatch<'_> {
    fn push(&self, ndx: i32, ok: bool) {
        let full = {
            let mut v = self.ndxs.borrow_mut();
            v.push((ndx, ok));
            v.len() >= DONE_BATCH
        };
        if full {
            self.flush();
        }
    }

    fn flush(&self) {
        let v = std::mem::take(&mut *self.ndxs.borrow_mut());
        if !v.is_empty() {
            let _ = self.events.send(RecvEvent::FilesDone(v));
        }
    }

    /// Send another event, after the finished indexes before it.
    fn send(&self, ev: RecvEvent) -> Result<(), std::sync::mpsc::SendError<RecvEvent>> {
        self.flush();
        self.events.send(ev)
    }
}

/// Tells the generator a file is finished, whichever way the handling of it ends.
struct FileDoneGuard<'b, 'e> {
    batch: &'b DoneBatch<'e>,
    ndx: i32,
    armed: std::cell::Cell<bool>,
    /// The file is in place under its name.
    ok: std::cell::Cell<bool>,
}

impl Drop for FileDoneGuard<'_, '_> {
    fn drop(&mut self) {
        if self.armed.get() {
            self.batch.push(self.ndx, self.ok.get());
        }
    }
}

/// handle_delayed_updates: move every delayed file into place, then drop the
/// emptied partial dirs.
fn finish_delayed(
    cfg: &RecvConfig,
    pending: &mut Vec<(Vec<u8>, Vec<u8>, i32)>,
    text: &dyn Fn(MsgCode, String) -> Result<(), RoleError>,
) -> Result<(), RoleError> {
    let mut dirs = std::collections::BTreeSet::new();
    for (from, to, _) in pending.drain(..) {
        if let Err(err) = cfg.dest.rename(&from, &to) {
            text(MsgCode::ErrorXfer, format!("rsync: [receiver] {err}"))?;
        }
        if let Some(d) = from.iter().rposition(|&c| c == b'/') {
            dirs.insert(from[..d].to_vec());
        }
    }
    for d in dirs.iter().rev() {
        let _ = cfg.dest.rmdir(d);
    }
    Ok(())
}

/// upstream recv_files after a failed verification: the first time (a
/// `redo` follows) a warning, shown when names or items are; the second
/// time an error. `kept` says what became of the new data.
fn failed_verification(
    cfg: &RecvConfig,
    rel: &[u8],
    kept: &str,
    redo: bool,
    stats: &mut RecvStats,
    text: &dyn Fn(MsgCode, String) -> Result<(), RoleError>,
) -> Result<(), RoleError> {
    let name = crate::protocol::text::name(rel);
    if !redo {
        stats.io_error |= crate::flist::build::IOERR_GENERAL;
        return text(
            MsgCode::ErrorXfer,
            format!("ERROR: {name} failed verification -- update {kept}."),
        );
    }
    let shown = match &cfg.local {
        Some(l) => l.o.name >= 1 || l.o.has_i > 0,
        None => {
            cfg.opts.info_level("name") >= 1
                || cfg
                    .opts
                    .log_format
                    .as_deref()
                    .is_some_and(|f| f.contains("%i"))
        }
    };
    if !shown {
        return Ok(());
    }
    text(
        MsgCode::Warning,
        format!("WARNING: {name} failed verification -- update {kept} (will try again)."),
    )
}

/// How an in-place update ended.
struct InplaceEnd<'s> {
    /// The file's length now.
    len: u64,
    /// Why the data could not be written, if so.
    failed: Option<String>,
    /// The whole-file digest matched.
    digest_ok: bool,
    /// The basis's stat (upstream dest_mode's: the permissions kept
    /// without `-p`); none for a new file.
    perms_from: Option<&'s crate::fs::dest::Stat>,
}

/// --inplace: the data went straight into the file; cut it to length and
/// set its attributes (its time only when it verified; the caller reports
/// a failed verification).
fn finish_inplace(
    cfg: &RecvConfig,
    rel: &[u8],
    e: &crate::protocol::flist::FileEntry,
    file: &std::fs::File,
    end: InplaceEnd<'_>,
    stats: &mut RecvStats,
    text: &dyn Fn(MsgCode, String) -> Result<(), RoleError>,
) -> Result<(), RoleError> {
    if let Some(why) = end.failed {
        stats.io_error |= crate::flist::build::IOERR_GENERAL;
        return text(MsgCode::ErrorXfer, format!("rsync: [receiver] {why}"));
    }
    if let Err(err) = file.set_len(end.len) {
        stats.io_error |= crate::flist::build::IOERR_GENERAL;
        return text(
            MsgCode::ErrorXfer,
            format!(
                "rsync: [receiver] ftruncate {} failed: {}",
                cfg.dest.show(rel),
                crate::fs::os_error_text(&err)
            ),
        );
    }
    if let Some(x) = cfg.xattrs.as_ref() {
        for err in xattrs_on_file(x, cfg, e, rel, file) {
            stats.io_error |= crate::flist::build::IOERR_GENERAL;
            text(MsgCode::ErrorXfer, format!("rsync: [receiver] {err}"))?;
        }
    }
    let existing = cfg.dest.stat(rel).ok().flatten();
    if let Some(st) = existing {
        let _ = cfg.fix_attrs_from(rel, e, &st, end.digest_ok, end.perms_from);
    }
    if end.digest_ok {
        stats.files += 1;
    }
    Ok(())
}

/// The mode upstream's receiver gives an entry it sets attributes on
/// after a non-transfer record (set_file_attrs: the entry's own mode bits,
/// a directory keeping an inherited set-gid bit without -p).
fn receiver_mode(
    cfg: &RecvConfig,
    e: &crate::protocol::flist::FileEntry,
) -> Result<(), crate::fs::dest::FsError> {
    if mode::is_lnk(e.mode) || cfg.opts.dry_run {
        return Ok(());
    }
    let Some(st) = cfg.dest.stat(&e.name)? else {
        return Ok(());
    };
    let mut want = e.mode & 0o7777;
    if !cfg.opts.perms && mode::is_dir(e.mode) && st.mode & 0o2000 != 0 {
        want |= 0o2000;
    }
    if st.mode & 0o170000 != e.mode & 0o170000 || st.mode & 0o7777 == want {
        return Ok(());
    }
    cfg.dest.set_mode(&e.name, want)
}

/// `-X`: give the received file `file` (a temp file, or the file updated
/// in place) the entry's attributes; long values the sender did not send
/// are those of the destination's `rel` (upstream set_file_attrs with the
/// basis). Returns the errors to report.
fn xattrs_on_file(
    x: &crate::role::xattrs::XattrState,
    cfg: &RecvConfig,
    e: &crate::protocol::flist::FileEntry,
    rel: &[u8],
    file: &std::fs::File,
) -> Vec<String> {
    use std::os::fd::AsRawFd;
    let at = cfg.dest.at(rel).ok();
    let basis = at.as_ref().map(|a| crate::fs::xattr::Target::At {
        dir: a.dirfd(),
        leaf: &a.leaf,
    });
    x.apply(
        e,
        crate::fs::xattr::Target::Fd(file.as_raw_fd()),
        basis,
        &cfg.dest.show(rel),
    )
    .errors
}

/// The mode a temp file is created with: the final permissions when they
/// are known now (-p), plain (no set-id or sticky bits) and untouched by the
/// umask, so that no chmod is needed after the data (the fstat after it
/// tells: default ACLs or odd filesystems may give another mode); else
/// 0600, as upstream, and the chmod comes after.
fn temp_mode(cfg: &RecvConfig, e: &crate::protocol::flist::FileEntry) -> u32 {
    if !cfg.opts.perms {
        return 0o600;
    }
    let p = cfg.dest_perms(e, None);
    if p & 0o7000 == 0 && p & cfg.umask == 0 {
        p
    } else {
        0o600
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::dest::test_support::Scratch;
    use crate::fs::dest::DestRoot;

    /// A receiving configuration over `root` with `opts`.
    fn config(root: &std::path::Path, opts: crate::cli::options::Options) -> RecvConfig {
        RecvConfig {
            n: crate::role::setup::Negotiated {
                proto: 31,
                compat: 0,
                checksum: crate::checksum::ChecksumKind::Md5,
                file_checksum: crate::checksum::ChecksumKind::Md5,
                compress: CompressKind::None,
                seed: 0,
            },
            opts,
            dest: DestRoot::open(root).expect("open root"),
            am_root: false,
            chmod: None,
            daemon_excluded: Box::new(|rel: &[u8], _| rel.ends_with(b".secret")),
            client_rules: crate::role::generator::DirRules {
                stack: crate::filter::FilterStack::new(
                    crate::filter::FilterList::new(Default::default()),
                    crate::filter::Side::Receiver,
                ),
                outside: true,
                report: false,
            },
            umask: 0o022,
            basis_dirs: Vec::new(),
            dest_created: false,
            temp_dir: None,
            local: None,
            shown_name: None,
            xfer_log: None,
            xattrs: None,
        }
    }

    #[test]
    fn the_basis_types_the_sender_echoes() {
        let s = Scratch::new("basisof");
        let mut opts = crate::cli::options::Options::default();
        let cfg = config(&s.root, opts.clone());
        let named = |cfg: &RecvConfig, t: Option<u8>, x: &[u8]| {
            basis_of(cfg, t, b"sub/f", x).map(|(_, n)| n)
        };
        assert_eq!(named(&cfg, None, b"").ok(), Some(None));
        assert_eq!(named(&cfg, Some(0x80), b"").ok(), Some(None));
        // Without --fuzzy a fuzzy basis is refused (upstream: malicious).
        let err = named(&cfg, Some(FUZZY_BASIS), b"g")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refusing malicious fuzzy operation for g"),
            "{err}"
        );
        // No basis dir: an index beyond them is an error.
        assert!(named(&cfg, Some(0), b"").is_err());
        assert!(named(&cfg, Some(FUZZY_BASIS + 1), b"g").is_err());
        opts.fuzzy = 1;
        opts.backup = true;
        let cfg = config(&s.root, opts);
        assert_eq!(
            named(&cfg, Some(BACKUP_BASIS), b"").ok(),
            Some(Some(b"sub/f~".to_vec()))
        );
        // The fuzzy basis is a name in the file's directory...
        let fz = named(&cfg, Some(FUZZY_BASIS), b"g.old").ok();
        assert_eq!(fz, Some(Some(b"sub/g.old".to_vec())));
        let top = basis_of(&cfg, Some(FUZZY_BASIS), b"f", b"g")
            .map(|(_, n)| n)
            .ok();
        assert_eq!(top, Some(Some(b"g".to_vec())));
        // ...and nothing else: a path, a dot name, a hidden file fall back
        // to the file itself.
        for bad in [&b"../x"[..], b"a/b", b"..", b".", b"", b"k.secret"] {
            assert_eq!(
                named(&cfg, Some(FUZZY_BASIS), bad).ok(),
                Some(None),
                "{bad:?}"
            );
        }
    }
}
