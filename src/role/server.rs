//! The server side of a transfer once the request is accepted (upstream:
//! main.c start_server, do_server_sender, do_server_recv): protocol setup,
//! multiplexing, then the sender for a pull or generator + receiver for an
//! upload, and the stock way of ending a session with an error. Shared by a
//! daemon module (`daemon::session`) and `rrsync --server` started by a
//! remote shell; what differs between them is a `ServerEnv`.

use crate::cli::options::Options;
use crate::exit::*;
use crate::filter::FilterList;
use crate::flist::build::{build_file_list_with, FileList, ListState};
use crate::flist::chmod::Chmod;
use crate::flist::incremental::IncrementalLister;
use crate::flist::BuildOpts;
use crate::protocol::mux::{Demux, MsgCode, MuxWriter};
use crate::role::input::InputReader;
use crate::role::sender::{self, send_text, MoreLists, SendStats, SenderCtx};
use crate::role::setup::{server_setup, Negotiated};
use crate::role::RoleError;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the host of a server role imposes: a daemon module's settings, or
/// nothing much for a plain `--server` started by a remote shell.
#[derive(Default)]
pub struct ServerEnv {
    /// The module's name (daemon): shown in messages, and client paths are
    /// confined beneath the working directory (the module root).
    pub module: Option<String>,
    /// Module `filter`/`include`/`exclude` rules.
    pub daemon_rules: Option<FilterList>,
    /// `outgoing chmod`.
    pub outgoing_chmod: Option<Chmod>,
    /// `incoming chmod`.
    pub incoming_chmod: Option<Chmod>,
    /// A receiving client's `--chmod`: applied to the modes of the list as
    /// it arrives (upstream recv_file_entry), so it is what `-p` keeps and
    /// what a listing shows; without `-p` an existing file keeps its own.
    pub received_chmod: Option<Chmod>,
    /// Ids are sent and applied numerically whatever the client asked (module `numeric ids`).
    pub numeric_ids: bool,
    /// `munge symlinks`.
    pub munge_symlinks: bool,
    /// Received symlink targets are made safe (a module without chroot).
    pub sanitize_links: bool,
    /// `read only`.
    pub read_only: bool,
    /// `write only`.
    pub write_only: bool,
    /// `timeout` (seconds, 0 = none), announced to protocol-31 clients.
    pub timeout: i32,
    /// The daemon's log (connection lines: file list, totals).
    pub log: Option<fn(&[u8])>,
    /// `transfer logging`: item lines in the module's `log format`.
    pub xfer_log: Option<Arc<crate::role::log::ClientLog>>,
    /// The daemon's `--bwlimit` (KiB/s, 0: none): a client's own limit
    /// may only be lower (upstream daemon_bwlimit).
    pub bwlimit_cap: u64,
    /// Module `ignore nonreadable`.
    pub ignore_nonreadable: bool,
    /// Module `dont compress` holds a lone `*`: zlib streams go out
    /// uncompressed (stored deflate blocks), as upstream's token.c does.
    pub dont_compress_all: bool,
    /// The names of a `--files-from=FILE` the server read itself (a
    /// client's `--files-from=:FILE`), as the file holds them.
    pub files_from: Option<Arc<Vec<u8>>>,
}

/// Largest `--files-from` file a server reads.
const MAX_FILES_FROM: u64 = 256 << 20;

/// Read a `--files-from=FILE` named to a server (a client's
/// `--files-from=:FILE`), as upstream's parse_arguments opens it: inside a
/// module the name is sanitized, must not be hidden by the module's own
/// rules, and may not lead out of the module through a symlink. The error
/// is the option error's text.
pub fn server_files_from(
    ff: &str,
    confined: bool,
    module_rules: Option<&FilterList>,
) -> Result<Vec<u8>, String> {
    let name: Vec<u8> = if confined {
        crate::daemon::paths::sanitize(ff.as_bytes())
    } else {
        ff.as_bytes().to_vec()
    };
    let shown = String::from_utf8_lossy(&name).into_owned();
    if let Some(rules) = module_rules {
        if name.is_empty() || rules.is_excluded(&name, false, crate::filter::Side::Sender) {
            return Err("Your options have been rejected by the server.".into());
        }
    }
    let fail = |e: std::io::Error| {
        format!(
            "failed to open files-from file {shown}: {}",
            crate::fs::strerror(&e)
        )
    };
    let path = Path::new(std::ffi::OsStr::from_bytes(&name));
    if confined {
        let root = std::fs::canonicalize(".").map_err(fail)?;
        let real = std::fs::canonicalize(path).map_err(fail)?;
        if !real.starts_with(&root) {
            return Err(fail(std::io::Error::from_raw_os_error(nix::libc::ELOOP)));
        }
    }
    let f = std::fs::File::open(path).map_err(fail)?;
    let mut data = Vec::new();
    f.take(MAX_FILES_FROM + 1)
        .read_to_end(&mut data)
        .map_err(fail)?;
    if data.len() as u64 > MAX_FILES_FROM {
        return Err(format!("files-from file {shown} is too large"));
    }
    Ok(data)
}

impl ServerEnv {
    /// The `--files-from=FILE` list: the one read as the options were
    /// taken (daemon, `--server`), else read now.
    fn files_from_list(&self, ff: &str) -> Result<Arc<Vec<u8>>, RoleError> {
        match &self.files_from {
            Some(d) => Ok(d.clone()),
            None => server_files_from(ff, self.confined(), None)
                .map(Arc::new)
                .map_err(RoleError::Refused),
        }
    }

    fn confined(&self) -> bool {
        self.module.is_some()
    }
    /// Sanitize a client path when serving a module; as given otherwise.
    fn client_path(&self, p: &[u8]) -> Vec<u8> {
        if self.confined() {
            crate::daemon::paths::sanitize(p)
        } else {
            p.to_vec()
        }
    }
}

/// End a multiplexed session with an error the way upstream's exit_cleanup
/// does: the message, the `rsync error: ... (code N)` line, MSG_ERROR_EXIT
/// (protocol 31+), then wait (bounded) for the client to hang up so our last
/// bytes are not lost to a reset.
pub fn end_with_error<W: Write>(
    out: &mut MuxWriter<W>,
    proto: u8,
    role: &str,
    code: i32,
    msg: Option<&str>,
    at: (&str, u32),
    rest: PeerInput<'_>,
) {
    if let Some(m) = msg {
        let _ = send_text(out, proto, MsgCode::Error, m);
    }
    let file = at.0.rsplit('/').next().unwrap_or(at.0);
    let code_msg = if code == RERR_VANISHED {
        MsgCode::Warning
    } else {
        MsgCode::Error
    };
    let line = crate::exit::line(code, file, at.1, role);
    let _ = send_text(out, proto, code_msg, &line);
    if proto >= 31 && !matches!(code, RERR_SOCKETIO | RERR_STREAMIO | 19 | RERR_TIMEOUT) {
        let _ = out.send_msg(MsgCode::ErrorExit, &code.to_le_bytes());
    }
    let _ = out.flush();
    // The client acknowledges with an empty MSG_ERROR_EXIT; a receiver
    // answers it in kind (upstream read_msg), so the client's wait for our
    // end sees a message, not a reset.
    if rest.wait_for_exit(Duration::from_secs(30)) && proto >= 31 && role == "Receiver" {
        let _ = out.send_msg(MsgCode::ErrorExit, &[]);
        let _ = out.flush();
    }
}

/// What is left of the client's input when a session fails: read from it
/// until the client exits (EOF or its MSG_ERROR_EXIT), bounded in time.
pub enum PeerInput<'a> {
    /// Read through the demultiplexer.
    Demux(&'a mut Demux<BoxedRead>),
    /// Read by the input pump.
    Pump(Box<InputReader>),
}

impl PeerInput<'_> {
    /// Read until the client ends; true when it ended with MSG_ERROR_EXIT.
    fn wait_for_exit(self, limit: Duration) -> bool {
        set_recv_timeout(1);
        let start = Instant::now();
        let mut buf = [0u8; 16 * 1024];
        match self {
            PeerInput::Pump(p) => p.wait_end(limit),
            PeerInput::Demux(d) => drain(d, &mut buf, start, limit),
        }
    }
}

/// Read and discard until EOF, an error or `limit`; true when the end was
/// the peer's MSG_ERROR_EXIT.
fn drain<R: Read + ?Sized>(r: &mut R, buf: &mut [u8], start: Instant, limit: Duration) -> bool {
    while start.elapsed() < limit {
        match r.read(buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            // The client's MSG_ERROR_EXIT: it is going, we may close.
            Err(e) => {
                return matches!(
                    crate::protocol::mux::from_io(e),
                    crate::protocol::ProtoError::PeerExit(_)
                )
            }
        }
    }
    true
}

/// A receive timeout on the client socket (so draining can watch the clock).
fn set_recv_timeout(secs: i64) {
    use std::os::fd::AsFd;
    let tv = nix::sys::time::TimeVal::new(secs, 0);
    let stdin = std::io::stdin();
    let _ = nix::sys::socket::setsockopt(
        &stdin.as_fd(),
        nix::sys::socket::sockopt::ReceiveTimeout,
        &tv,
    );
}

/// Counts bytes passing through (for the stats' total_read/total_written).
pub struct Counting<T> {
    inner: T,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<T> Counting<T> {
    /// Wrap `inner`, counting into `count`.
    pub fn new(inner: T, count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        Counting { inner, count }
    }
}

impl<T: Read> Read for Counting<T> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A socket reader under a receive timeout that only gives up when the
/// other direction was idle too (upstream's timeout means "no I/O either
/// way"): a timed-out read is retried while `out_activity` keeps moving.
pub struct IdleTimeout<R> {
    inner: R,
    out_activity: std::sync::Arc<std::sync::atomic::AtomicU64>,
    seen: u64,
}

impl<R: Read> Read for IdleTimeout<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.inner.read(b) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = self.out_activity.load(std::sync::atomic::Ordering::Relaxed);
                    if now == self.seen {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "io timeout",
                        ));
                    }
                    self.seen = now;
                }
                other => return other,
            }
        }
    }
}

impl<T: Write> Write for Counting<T> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
    fn write_vectored(&mut self, b: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = self.inner.write_vectored(b)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Serve one accepted request: setup, multiplexing, the role, and the
/// stock error ending. `paths` are the path arguments after the `.`.
pub fn run<R: Read + Send + 'static, W: Write + Send>(
    env: &ServerEnv,
    proto: u8,
    opts: Options,
    paths: Vec<Vec<u8>>,
    r: R,
    w: W,
) -> i32 {
    run_inner(env, proto, opts, paths, r, w, None)
}

/// Like `run`, for a request that already failed (a bad module setting):
/// setup and multiplexing happen, then the error is reported as stock does.
pub fn run_failed<R: Read + Send + 'static, W: Write + Send>(
    env: &ServerEnv,
    proto: u8,
    opts: Options,
    failure: RoleError,
    r: R,
    w: W,
) -> i32 {
    run_inner(env, proto, opts, Vec::new(), r, w, Some(failure))
}

fn run_inner<R: Read + Send + 'static, W: Write + Send>(
    env: &ServerEnv,
    proto: u8,
    opts: Options,
    paths: Vec<Vec<u8>>,
    r: R,
    w: W,
    failure: Option<RoleError>,
) -> i32 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let rc = Arc::new(AtomicU64::new(0));
    let wc = Arc::new(AtomicU64::new(0));
    let mut r = Counting::new(
        IdleTimeout {
            inner: r,
            out_activity: wc.clone(),
            seen: 0,
        },
        rc.clone(),
    );
    let limit = opts
        .bwlimit
        .as_deref()
        .and_then(crate::role::bwlimit::parse_kib)
        .unwrap_or(0);
    let limit = if env.bwlimit_cap > 0 && (limit == 0 || limit > env.bwlimit_cap) {
        env.bwlimit_cap
    } else {
        limit
    };
    let mut w = Counting::new(crate::role::bwlimit::BwLimit::new(w, limit), wc.clone());
    let seed = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i32)
        ^ ((std::process::id() as i32) << 6);
    // Incremental recursion is offered for recursive pulls (a --files-from
    // list's names are arguments like any other).
    let allow_inc = if opts.sender {
        opts.recursive && !opts.use_qsort()
    } else {
        // As a receiver (upstream set_allow_inc_recurse).
        opts.recursive
            && !matches!(
                opts.delete_when,
                Some("delete-before") | Some("delete-after")
            )
            && !opts.delay_updates
            && !opts.prune_empty_dirs
            && !opts.use_qsort()
    };
    let n = match server_setup(&mut r, &mut w, proto, &opts, seed, allow_inc) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("setup failed: {e}");
            return e.exit_code();
        }
    };
    let (rbase, wbase) = (rc.load(Ordering::Relaxed), wc.load(Ordering::Relaxed));
    let mut out = MuxWriter::new(w);
    if let Some(log) = env.log {
        out.set_text_log(log);
    }
    if out.start_mux().is_err() {
        return RERR_SOCKETIO;
    }
    if proto >= 31 && env.timeout > 0 {
        let _ = out.send_msg(MsgCode::IoTimeout, &env.timeout.to_le_bytes());
    }
    let mut demux: Demux<BoxedRead> = Demux::new(Box::new(r));
    // upstream: a sender reads a multiplexed input from 30 on, or when the
    // generator has messages for it (--remove-source-files), at any protocol.
    demux.set_mux(proto >= 30 || (opts.sender && opts.remove_source_files));
    let mut input: Option<InputReader> = None;
    let (rc_total, wc_total) = (rc.clone(), wc.clone());
    let result = if let Some(f) = failure {
        Err(f)
    } else if opts.sender {
        serve_sender(
            n,
            &opts,
            env,
            &paths,
            &mut demux,
            &mut input,
            &mut out,
            (rc, rbase),
            (wc, wbase),
        )
    } else if env.read_only {
        Err(RoleError::Refused("ERROR: module is read only".into()))
    } else {
        serve_receiver(n, &opts, env, &paths, &mut demux, &mut input, &mut out)
    };
    let totals = |code: i32, size: i64| {
        // upstream log_exit: the totals of a session, on success or from a sender.
        if let (Some(log), true) = (env.log, code == 0 || opts.sender) {
            // Counted from the end of the protocol setup, as upstream's
            // totals (its checksum and compression lists go uncounted).
            log(format!(
                "sent {} bytes  received {} bytes  total size {size}",
                wc_total.load(Ordering::Relaxed).saturating_sub(wbase),
                rc_total.load(Ordering::Relaxed).saturating_sub(rbase)
            )
            .as_bytes());
        }
    };
    match result {
        Ok((code, size)) => {
            totals(code, size);
            code
        }
        Err(e) => {
            crate::interrupt::exiting();
            let code = e.exit_code();
            totals(code, 0);
            let role = match &e {
                _ if opts.sender => "sender",
                RoleError::FileIo(_) => "receiver",
                _ => "Receiver",
            };
            match &e {
                RoleError::PeerExit(_)
                | RoleError::Proto(crate::protocol::ProtoError::PeerExit(_)) => {}
                RoleError::Proto(p) if p.is_eof() => {}
                // No I/O either way for `timeout` seconds: upstream exits at
                // once (the message to its log), the client being stuck.
                _ if code == RERR_TIMEOUT => {
                    let text = format!(
                        "[{}] io timeout after {} seconds -- exiting",
                        if opts.sender { "sender" } else { "receiver" },
                        env.timeout.max(0)
                    );
                    if let Some(log) = env.log {
                        log(text.as_bytes());
                    }
                    tracing::warn!("{text}");
                    return code;
                }
                _ => {
                    let msg = match &e {
                        RoleError::Proto(_) => format!("rsync: {e}"),
                        _ => e.to_string(),
                    };
                    let rest = match input.take() {
                        Some(p) => PeerInput::Pump(Box::new(p)),
                        None => PeerInput::Demux(&mut demux),
                    };
                    end_with_error(
                        &mut out,
                        proto,
                        role,
                        code,
                        Some(&msg),
                        (file!(), line!()),
                        rest,
                    );
                }
            }
            tracing::warn!("session ended: {e}");
            code
        }
    }
}

/// `--backup-dir`, when it exists, must be a directory (upstream do_recv,
/// before the transfer starts): `given` as the option has it, `rel` as used,
/// relative to the destination `dest`.
fn check_backup_dir(dest: &std::path::Path, given: &str, rel: &[u8]) -> Result<(), RoleError> {
    // As upstream shows it: without leading "./" and one trailing "/".
    let mut shown = given;
    while let Some(rest) = shown.strip_prefix("./") {
        shown = rest;
    }
    if shown.is_empty() || shown == "." {
        return Ok(()); // the destination itself
    }
    if shown.len() > 1 {
        shown = shown.strip_suffix('/').unwrap_or(shown);
    }
    let rel = match rel.strip_suffix(b"/") {
        Some(r) if !r.is_empty() => r,
        _ => rel,
    };
    match std::fs::metadata(dest.join(std::ffi::OsStr::from_bytes(rel))) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(RoleError::Refused(format!(
            "The backup-dir is not a directory: {shown}"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RoleError::FileIo(format!(
            "Failed to stat {shown}: {}",
            crate::fs::strerror(&e)
        ))),
    }
}

/// `--temp-dir` must be a directory (upstream do_recv, before the
/// transfer starts): `shown` as given, `rel` as used, relative to the
/// destination `dest`.
fn check_temp_dir(dest: &std::path::Path, shown: &str, rel: &[u8]) -> Result<(), RoleError> {
    let st = if rel.is_empty() {
        Err(std::io::Error::from(std::io::ErrorKind::NotFound))
    } else {
        std::fs::metadata(dest.join(std::ffi::OsStr::from_bytes(rel)))
    };
    match st {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(RoleError::Refused(format!(
            "The temp-dir is not a directory: {shown}"
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RoleError::Refused(format!(
            "The temp-dir does not exist: {shown}"
        ))),
        Err(e) => Err(RoleError::FileIo(format!(
            "Failed to stat temp-dir {shown}: {}",
            crate::fs::strerror(&e)
        ))),
    }
}

/// The client socket's read side, boxed so it can be handed to the input pump.
type BoxedRead = Box<dyn Read + Send>;

type Counter = (std::sync::Arc<std::sync::atomic::AtomicU64>, u64);

#[allow(clippy::too_many_arguments)]
fn serve_sender<W: Write>(
    n: Negotiated,
    opts: &Options,
    env: &ServerEnv,
    paths: &[Vec<u8>],
    demux: &mut Demux<BoxedRead>,
    input_slot: &mut Option<InputReader>,
    out: &mut MuxWriter<W>,
    rcount: Counter,
    wcount: Counter,
) -> Result<(i32, i64), RoleError> {
    if env.write_only {
        return Err(RoleError::Refused("ERROR: module is write only".into()));
    }
    if env.module.is_some() && env.read_only && opts.remove_source_files {
        return Err(RoleError::Refused(
            "ERROR: --remove-source-files cannot be used with a read-only module".into(),
        ));
    }
    let proto = n.proto;
    // Filter rules from the client.
    let confine = if env.confined() {
        std::fs::canonicalize(".").ok()
    } else {
        None
    };
    let popts = crate::filter::ParseOptions {
        protocol: proto as u32,
        delete_excluded: opts.delete_excluded,
        ..Default::default()
    };
    let mut client_rules = crate::filter::FilterList::new(popts.clone());
    if let Some(c) = &confine {
        client_rules.set_root_abs(c.as_os_str().as_encoded_bytes());
    }
    let x = crate::filter::XferOptions {
        protocol: proto as u32,
        am_sender: true,
        delete_mode: opts.delete,
        delete_excluded: opts.delete_excluded,
        prune_empty_dirs: opts.prune_empty_dirs,
        cvs_exclude: opts.cvs_exclude,
    };
    {
        let c = confine.clone();
        let mut read =
            |rel: &[u8]| crate::flist::filters::read_confined(Path::new("."), c.as_deref(), rel);
        crate::filter::recv_filter_list(demux, &mut client_rules, &x, &mut read).map_err(|e| {
            match e {
                crate::filter::FilterError::Io(io) => RoleError::from(io),
                other => RoleError::Protocol(other.to_string()),
            }
        })?;
    }
    // --files-from=- : names follow on the input (raw below protocol 31).
    let mut args: Vec<Vec<u8>> = paths.to_vec();
    let mut root = PathBuf::from(".");
    if let Some(ff) = opts.files_from.as_deref() {
        let names = if ff != "-" {
            let data = env.files_from_list(ff)?;
            crate::client::files_from_names(&data, opts.from0)
        } else {
            if proto < 31 {
                demux.set_mux(false);
            }
            let names = read_files_from(demux)?;
            if proto == 30 || opts.remove_source_files {
                demux.set_mux(true);
            }
            names
        };
        // Names are relative to the first path argument (upstream: change_dir(argv[0])).
        if let Some(base) = args.first() {
            if !base.is_empty() {
                use std::os::unix::ffi::OsStrExt;
                root = root.join(std::ffi::OsStr::from_bytes(base));
            }
        }
        // Each name is taken inside the source directory, as upstream's
        // sanitize_path(SP_KEEP_DOT_DIRS) of every line read: a leading
        // slash goes, ".." never climbs above it.
        args = names
            .iter()
            .map(|nm| crate::daemon::paths::sanitize(nm))
            .filter(|n| !n.is_empty())
            .collect();
    }
    let job = SendJob {
        args,
        root,
        confine,
        client_rules,
        local: None,
        shared: None,
    };
    send_files(n, opts, env, job, demux, input_slot, out, rcount, wcount)
        .map(|(code, st)| (code, st.total_size))
}

/// What the sending side works from once the peer's rules and names are in.
pub(crate) struct SendJob {
    /// The source arguments (relative to `root`, or absolute).
    pub args: Vec<Vec<u8>>,
    /// Where relative arguments start.
    pub root: PathBuf,
    /// Reads stay beneath this directory (a module root).
    pub confine: Option<PathBuf>,
    /// The receiving side's filter rules (or a client's own).
    pub client_rules: crate::filter::FilterList,
    /// A client shows items and messages itself.
    pub local: Option<Arc<crate::role::log::ClientLog>>,
    /// Lists shared between the runs of one push: the source is scanned
    /// once per list shape and each target gets a copy.
    pub shared: Option<Arc<ListCache>>,
}

/// File lists of one source, built once per shape (protocol family, uid-0
/// names, numeric ids, `-c` digest) and copied for every target of a push.
#[derive(Default)]
pub struct ListCache {
    lists: std::sync::Mutex<Vec<(ListKey, Arc<FileList>)>>,
}

/// What makes two targets' lists differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ListKey {
    proto_family: u8,
    id0_names: bool,
    numeric_ids: bool,
    checksum: Option<crate::checksum::ChecksumKind>,
}

impl ListCache {
    /// The list for `key`, built by `build` the first time.
    fn get(&self, key: ListKey, build: impl FnOnce() -> FileList) -> FileList {
        let mut lists = match self.lists.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        if let Some((_, l)) = lists.iter().find(|(k, _)| *k == key) {
            return FileList::clone(l);
        }
        let l = Arc::new(build());
        lists.push((key, l.clone()));
        FileList::clone(&l)
    }

    /// How many distinct scans were made.
    pub fn scans(&self) -> usize {
        self.lists.lock().map(|l| l.len()).unwrap_or(0)
    }
}

/// The sending side of a transfer: build and send the file list, then
/// answer the generator's requests (upstream: send_file_list + send_files).
/// Returns the exit code for the sender's own errors and its statistics.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_files<W: Write>(
    n: Negotiated,
    opts: &Options,
    env: &ServerEnv,
    job: SendJob,
    demux: &mut Demux<BoxedRead>,
    input_slot: &mut Option<InputReader>,
    out: &mut MuxWriter<W>,
    rcount: Counter,
    wcount: Counter,
) -> Result<(i32, SendStats), RoleError> {
    let proto = n.proto;
    if let Some(log) = env.log {
        log(b"building file list");
    }
    let SendJob {
        mut args,
        root,
        confine,
        client_rules,
        local,
        shared,
    } = job;
    let daemon_rules = env.daemon_rules.clone();
    if args.is_empty()
        && opts.files_from.is_none()
        && (opts.recursive || opts.dirs || opts.list_only)
    {
        args.push(Vec::new());
    }
    let bo = BuildOpts {
        proto,
        recursive: opts.recursive,
        xfer_dirs: opts.recursive || opts.dirs || opts.list_only || opts.files_from.is_some(),
        relative: opts.relative_paths(),
        implied_dirs: !opts.no_implied_dirs,
        preserve_links: opts.links,
        preserve_hard_links: opts.hard_links > 0,
        preserve_devices: opts.devices,
        preserve_specials: opts.specials,
        copy_links: opts.copy_links,
        copy_dirlinks: opts.copy_dirlinks,
        copy_unsafe_links: opts.copy_unsafe_links,
        one_file_system: opts.one_file_system,
        preserve_uid: opts.owner,
        preserve_gid: opts.group,
        confine_to: confine.clone(),
        module: env.module.clone(),
        ignore_missing_args: opts.ignore_missing_args && !opts.delete_missing_args,
        delete_missing_args: opts.delete_missing_args,
        ignore_nonreadable: env.ignore_nonreadable,
    };
    let start = Instant::now();
    let xattr_rule = client_rules.xattr_rule(crate::filter::Side::Sender);
    let client = if client_rules.is_empty() {
        None
    } else {
        Some(client_rules)
    };
    let mut excluder =
        crate::flist::filters::SenderFilters::new(client, daemon_rules, confine.clone());
    excluder.debug_filter = opts.debug_level("FILTER") >= 1;
    let numeric_ids = opts.numeric_ids || env.numeric_ids;
    let chmod = env.outgoing_chmod.clone();
    let file_checksum = if opts.checksum {
        Some(n.file_checksum)
    } else {
        None
    };
    let munged = env.munge_symlinks;
    // What every list gets before it is sent: `-c` sums, `outgoing chmod`,
    // and munged links shown as they were sent to us (upstream strips the
    // prefix when it reads such a link).
    // `-c` digests read each file through one opener (directory fds reused).
    let opener = std::cell::RefCell::new(crate::fs::SendOpener::new(opts.open_noatime));
    let post = move |fl: &mut FileList| {
        for f in fl.files.iter_mut() {
            let m = f.entry.mode;
            if munged && crate::protocol::flist::mode::is_lnk(m) {
                if let Some(t) = f.entry.link_target_mut() {
                    // upstream readlink_stat: only a target longer than the prefix.
                    let stripped = t
                        .strip_prefix(crate::role::generator::MUNGE_PREFIX)
                        .filter(|rest| !rest.is_empty());
                    if let Some(rest) = stripped {
                        *t = rest.to_vec();
                    }
                }
            }
            if let (Some(kind), true) = (file_checksum, crate::protocol::flist::mode::is_reg(m)) {
                let opened = opener.borrow_mut().open(&f.path());
                if let Ok((mut file, _)) = opened {
                    if let Ok(d) = crate::checksum::strong::file_checksum(kind, &mut file) {
                        f.entry.set_checksum(Some(d.as_bytes().to_vec()));
                    }
                }
            }
            if let (Some(c), false) = (&chmod, crate::protocol::flist::mode::is_lnk(m) || m == 0) {
                f.entry.mode = c.apply(m);
            }
        }
    };
    let inc = n.compat & crate::protocol::handshake::cf::INC_RECURSE != 0;
    let state = ListState::new(inc, n.id0_names(), numeric_ids);
    let mut lister = None;
    let mut fl = if let (Some(cache), false) = (&shared, inc) {
        let key = ListKey {
            proto_family: if proto >= 30 { 30 } else { proto },
            id0_names: n.id0_names(),
            numeric_ids,
            checksum: file_checksum,
        };
        let mut fresh = false;
        let l = cache.get(key, || {
            fresh = true;
            let mut l = build_file_list_with(&root, &args, &bo, &mut excluder, state);
            post(&mut l);
            l
        });
        if !fresh {
            // The copy is already prepared; its messages were shown by the first run.
            let mut l = l;
            l.errors.clear();
            l
        } else {
            l
        }
    } else if inc {
        let (l, first) = IncrementalLister::start(&root, &args, &bo, &mut excluder, state);
        lister = Some(l);
        first
    } else {
        build_file_list_with(&root, &args, &bo, &mut excluder, state)
    };
    if shared.is_none() || inc {
        post(&mut fl);
    }
    // upstream send_file_list: a build under a millisecond counts as one.
    let buildtime = (start.elapsed().as_millis() as i64).max(1);
    for (kind, e) in &fl.errors {
        match &local {
            Some(l) => l.text(kind.msg_code(), e.as_bytes()),
            None => send_text(out, proto, kind.msg_code(), e)?,
        }
    }
    // An unusable per-directory rules file ends the sender (upstream's
    // parse_filter_file exits with RERR_SYNTAX).
    if let Some(m) = fl.fatal.take() {
        return Err(RoleError::Refused(m));
    }
    // An error the client counts against the transfer counts against our
    // exit status too (upstream's got_xfer_error), e.g. a missing source.
    let list_errors = if fl
        .errors
        .iter()
        .any(|(k, _)| *k == crate::flist::build::MsgKind::ErrorXfer)
    {
        crate::flist::build::IOERR_GENERAL
    } else {
        0
    };
    let t1 = Instant::now();
    let flist_start = out.bytes_written;
    let enc = sender::send_file_list(out, &n, opts, &mut fl, inc, xattr_rule)?;
    let flist_size = (out.bytes_written - flist_start) as i64;
    if let Some(l) = local.as_deref() {
        l.finish_filelist_progress(fl.files.len(), true);
    }
    let xfertime = t1.elapsed().as_millis() as i64;
    // upstream do_server_sender: a server with nothing to send leaves at
    // once; a sending client goes through the whole exchange (client_run).
    if fl.files.is_empty() && local.is_none() {
        out.flush()?;
        return Ok((
            io_error_code(fl.io_error | list_errors),
            SendStats::default(),
        ));
    }
    let mut pumped = std::mem::replace(demux, Demux::new(Box::new(std::io::empty())));
    // --remove-source-files: the receiver's MSG_SUCCESS are taken as they
    // arrive (never dropped from a bounded queue), for the sender to act on.
    let removals = opts
        .remove_source_files
        .then(|| Arc::new(std::sync::Mutex::new(Vec::<i32>::new())));
    if let Some(q) = &removals {
        let q = q.clone();
        let mut prev = pumped.take_handler();
        pumped.set_handler(Box::new(move |m| {
            if m.code == MsgCode::Success {
                // (A local server adds the file's dev/ino after the index.)
                let head = m.payload.get(..4).and_then(|p| <[u8; 4]>::try_from(p).ok());
                if let (Some(b), Ok(mut v)) = (head, q.lock()) {
                    v.push(i32::from_le_bytes(b));
                }
                return None;
            }
            match prev.as_mut() {
                Some(h) => h(m),
                None => Some(m),
            }
        }));
    }
    let input = input_slot.insert(crate::role::input::spawn(pumped));
    let mut stats = SendStats {
        total_size: sender::list_size(&fl),
        flist_buildtime: buildtime,
        flist_xfertime: xfertime,
        io_error: fl.io_error,
        flist_size,
        ..Default::default()
    };
    for f in &fl.files {
        stats.num_files.add(f.entry.mode);
    }
    let modname = env.module.clone();
    let full = move |name: &[u8], path: &Path| -> String {
        use std::os::unix::ffi::OsStrExt;
        let rel = path.as_os_str().as_bytes();
        let rel = rel.strip_prefix(b"./").unwrap_or(rel);
        let dir = rel.strip_suffix(name).unwrap_or(b"");
        let dir = dir.strip_suffix(b"/").unwrap_or(dir);
        let mut p = String::new();
        if !dir.is_empty() && dir != b"." {
            p.push('/');
            p.push_str(&crate::protocol::text::name(dir));
            p.push('/');
        }
        p.push_str(&crate::protocol::text::name(name));
        match &modname {
            Some(m) => format!("\"{p}\" (in {m})"),
            None => {
                // upstream full_fname: relative names are shown under the cwd.
                let abs = std::env::current_dir()
                    .map(|d| d.join(path))
                    .unwrap_or_else(|_| path.to_path_buf());
                let shown = abs.as_os_str().as_bytes();
                let shown = shown.strip_suffix(b"/.").unwrap_or(shown);
                format!(
                    "\"{}\"",
                    crate::protocol::text::name(shown).replace("/./", "/")
                )
            }
        }
    };
    let ctx = SenderCtx {
        n,
        opts,
        inc_recurse: inc,
        first_encoder: std::cell::Cell::new(Some(enc)),
        am_server: local.is_none(),
        local: local.as_deref(),
        xfer_log: env.xfer_log.as_deref(),
        full_fname: &full,
        counters: Some((rcount.0.clone(), rcount.1, wcount.0.clone(), wcount.1)),
        removals,
        dont_compress_all: env.dont_compress_all,
    };
    let mut feed = lister.map(|l| ListFeed {
        lister: l,
        post: &post,
    });
    sender::run(
        &ctx,
        fl,
        feed.as_mut().map(|f| f as &mut dyn MoreLists),
        input,
        out,
        &mut stats,
    )?;
    Ok((io_error_code(stats.io_error | list_errors), stats))
}

/// The sender's exit code for its accumulated io_error flags.
fn io_error_code(io_error: i32) -> i32 {
    // upstream exit_cleanup: a partial transfer outranks vanished files,
    // which outrank the --max-delete stop.
    if io_error & crate::flist::build::IOERR_GENERAL != 0 {
        RERR_PARTIAL
    } else if io_error & 2 != 0 {
        RERR_VANISHED
    } else if io_error & 4 != 0 {
        RERR_DEL_LIMIT
    } else {
        0
    }
}

/// Options an upload cannot honour yet: refused up front, like a module's
/// `refuse options`, so the client fails cleanly instead of getting a wrong tree.
fn unsupported_upload_option(o: &Options) -> Option<&'static str> {
    if o.basis_dirs.len() > 20 {
        Some("more than 20 --link-dest/--copy-dest/--compare-dest dirs")
    } else if o.files_from.as_deref() == Some("-") {
        Some("--files-from=-")
    } else {
        None
    }
}

/// do_server_recv: receive the list, then run generator and receiver side by side.
fn serve_receiver<W: Write + Send>(
    n: Negotiated,
    opts: &Options,
    env: &ServerEnv,
    paths: &[Vec<u8>],
    demux: &mut Demux<BoxedRead>,
    input_slot: &mut Option<InputReader>,
    out: &mut MuxWriter<W>,
) -> Result<(i32, i64), RoleError> {
    let proto = n.proto;
    if let Some(what) = unsupported_upload_option(opts) {
        return Err(RoleError::Unsupported(format!(
            "rsync: uploads with {what} are not supported by this rrsync yet"
        )));
    }
    // Filter rules come first when the receiver needs them (deletions).
    let popts = crate::filter::ParseOptions {
        protocol: proto as u32,
        delete_excluded: opts.delete_excluded,
        ..Default::default()
    };
    let mut client_rules = crate::filter::FilterList::new(popts.clone());
    let x = crate::filter::XferOptions {
        protocol: proto as u32,
        am_sender: false,
        delete_mode: opts.delete,
        delete_excluded: opts.delete_excluded,
        prune_empty_dirs: opts.prune_empty_dirs,
        cvs_exclude: opts.cvs_exclude,
    };
    let mut no_files = |_: &[u8]| None;
    crate::filter::recv_filter_list(demux, &mut client_rules, &x, &mut no_files).map_err(|e| {
        match e {
            crate::filter::FilterError::Io(io) => RoleError::from(io),
            other => RoleError::Protocol(other.to_string()),
        }
    })?;
    // --files-from=FILE (a pushing client's --files-from=:FILE): the names
    // go to the client, which sends what they name (upstream
    // start_filesfrom_forwarding; raw bytes below protocol 31).
    if let Some(ff) = opts.files_from.as_deref() {
        let data = env.files_from_list(ff)?;
        let wire = files_from_wire(&data, opts.from0);
        if proto < 31 {
            out.flush()?;
            let w = out.get_mut();
            w.write_all(&wire)?;
            w.flush()?;
        } else {
            out.write_all(&wire)?;
            out.flush()?;
        }
    }
    let dest_arg = paths.first().cloned().unwrap_or_default();
    let dest_arg = env.client_path(&dest_arg);
    receive_files(
        n,
        opts,
        env,
        &dest_arg,
        client_rules,
        demux,
        input_slot,
        out,
        None,
    )
    .map(|(code, st)| (code, st.total_size))
}

/// The receiving side of a transfer: read the file list, decide the
/// destination, then run the generator and the receiver side by side
/// (upstream: recv_file_list, get_local_name, do_recv). `rules` are the
/// filter rules that protect the destination from deletion; `local` is set
/// for a client, which shows items itself and reads the sender's stats.
#[allow(clippy::too_many_arguments)]
pub(crate) fn receive_files<W: Write + Send>(
    n: Negotiated,
    opts: &Options,
    env: &ServerEnv,
    dest_arg: &[u8],
    client_rules: crate::filter::FilterList,
    demux: &mut Demux<BoxedRead>,
    input_slot: &mut Option<InputReader>,
    out: &mut MuxWriter<W>,
    local: Option<Arc<crate::role::log::ClientLog>>,
) -> Result<(i32, crate::role::receiver::RecvStats), RoleError> {
    use crate::role::generator::{Generator, RecvConfig, RecvEvent};
    let proto = n.proto;
    let daemon_rules = env.daemon_rules.clone();
    let am_root = nix::unistd::geteuid().is_root();
    let numeric_module = env.numeric_ids;
    let fo = sender::flist_opts(&n, opts);
    let inc = n.compat & crate::protocol::handshake::cf::INC_RECURSE != 0;
    // upstream recv_file_list -> parse_name_map: the maps are read as
    // the list starts; a TO name unknown here is only reported.
    let (maps, warnings) =
        crate::flist::idmap::parse_maps(opts.usermap.as_deref(), opts.groupmap.as_deref());
    for w in &warnings {
        match local.as_deref() {
            Some(l) => l.text(MsgCode::Error, w.as_bytes()),
            None => send_text(out, proto, MsgCode::Error, w)?,
        }
    }
    let maps = maps.map_err(|e| RoleError::Refused(e.0))?;
    let ids = crate::flist::idmap::IdPolicy::for_receiver(
        am_root,
        fo.preserve_uid,
        fo.preserve_gid,
        opts.numeric_ids,
        numeric_module,
        n.id0_names(),
        maps.0,
        maps.1,
    );
    let mut lists =
        crate::flist::recv::ListReceiver::new(fo, inc, opts.numeric_ids, n.id0_names(), ids);
    lists.relative = opts.relative_paths();
    lists.sanitize_links = env.sanitize_links && !env.munge_symlinks;
    lists.munge_links = env.munge_symlinks;
    lists.chmod = env.received_chmod.clone();
    let xattr_sets = fo.xattrs.then(|| {
        let names = crate::fs::xattr::Names {
            am_root,
            excluded: client_rules.xattr_rule(crate::filter::Side::Receiver),
            ..sender::xattr_names(opts)
        };
        let keep = names.clone();
        let sets = lists.receive_xattrs(std::sync::Arc::new(move |n: &[u8]| keep.wire_keep(n)));
        (sets, names)
    });
    if let Some(log) = env.log {
        log(b"receiving file list");
    }
    let flist_start = demux.bytes_read;
    let mut list = lists.first(demux).map_err(|e| match e {
        crate::flist::recv::RecvListError::Proto(p) => RoleError::Proto(p),
        other => RoleError::Unsupported(other.to_string()),
    })?;
    let flist_size = (demux.bytes_read - flist_start) as i64;
    if let Some(l) = local.as_deref() {
        l.finish_filelist_progress(list.files.len(), false);
    }
    if local.is_some() && list.files.is_empty() {
        // A client with nothing to receive stops here (upstream client_run):
        // no destination is made, the sender has already gone.
        let stats = crate::role::receiver::RecvStats {
            flist_size,
            io_error: list.io_error,
            ..Default::default()
        };
        return Ok((io_error_code(list.io_error), stats));
    }
    if opts.prune_empty_dirs {
        crate::flist::recv::prune_empty_dirs(&mut list);
    }
    // The destination (upstream get_local_name): the first path argument
    // (relative to the module for a daemon), a directory unless a single
    // non-directory is sent to a name that is not one.
    let dest_at = if opts.list_only {
        // Listing only: nothing is written (upstream get_local_name returns early).
        LocalDest {
            dir: Vec::new(),
            local_name: None,
            created: false,
        }
    } else {
        local_dest(
            dest_arg,
            &list,
            opts.dry_run,
            opts.mkpath,
            env.module.as_deref(),
        )?
    };
    let mut shown_name = None;
    if let Some(name) = &dest_at.local_name {
        if let Some(e) = list.files.first_mut() {
            shown_name = Some(std::mem::replace(&mut e.name, name.clone()));
        }
    }
    let dest_rel = dest_at.dir.clone();
    let dest_path = if dest_rel.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(std::ffi::OsStr::from_bytes(&dest_rel))
    };
    let dest_created = dest_at.created;
    let show_created = match &local {
        Some(l) => l.o.name >= 1 || l.o.has_i > 0,
        None => {
            opts.info_level("name") > 0
                || opts.log_format.as_deref().is_some_and(|f| f.contains("%i"))
        }
    };
    if dest_created && show_created {
        let shown = crate::protocol::text::name(dest_rel.strip_suffix(b"/").unwrap_or(&dest_rel))
            .into_owned();
        let text = format!("created directory {shown}");
        match &local {
            Some(l) => l.info(&text),
            None => send_text(out, proto, MsgCode::Info, &text)?,
        }
    }
    let mut dest = if dest_created && opts.dry_run {
        // Nothing exists yet (upstream: dry_run++): a directory that is gone.
        vanished_dir()
    } else {
        crate::fs::dest::DestRoot::open(&dest_path)
    }
    .map_err(|e| {
        RoleError::FileSelect(format!(
            "rsync: [Receiver] change_dir {:?} failed: {e}",
            crate::protocol::text::name(&dest_rel)
        ))
    })?;
    if !opts.list_only {
        if let Some(b) = opts.backup_dir.as_deref() {
            check_backup_dir(&dest_path, b, &env.client_path(b.as_bytes()))?;
        }
        if let Some(t) = opts.temp_dir.as_deref() {
            let rel = env.client_path(t.as_bytes());
            // A daemon names it in full, where it resolved (upstream full_fname).
            let shown = match (env.confined(), std::fs::canonicalize(&dest_path)) {
                (true, Ok(d)) => {
                    let r = String::from_utf8_lossy(&rel);
                    let r = r.trim_end_matches('/');
                    if r.is_empty() || r == "." {
                        d.display().to_string()
                    } else {
                        format!("{}/{r}", d.display().to_string().trim_end_matches('/'))
                    }
                }
                _ => t.to_string(),
            };
            check_temp_dir(&dest_path, &shown, &rel)?;
        }
    }
    // -K: symlinked directories here stand for their (in-tree) targets.
    dest.set_follow_dir_symlinks_inside(opts.keep_dirlinks);
    // Names in messages as upstream's full_fname shows them after its
    // change_dir into the destination: inside the module for a daemon,
    // absolute otherwise.
    match env.module.as_deref() {
        Some(m) => {
            let inner = crate::flist::build::collapse_dot_dot(&dest_rel);
            let mut prefix = inner;
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            dest.set_display(&prefix, &format!(" (in {m})"));
        }
        None => {
            let mut abs = if dest_rel.starts_with(b"/") {
                Vec::new()
            } else {
                std::env::current_dir()
                    .map(|c| c.as_os_str().as_bytes().to_vec())
                    .unwrap_or_default()
            };
            abs.push(b'/');
            abs.extend_from_slice(&dest_rel);
            let mut prefix = crate::flist::build::collapse_dot_dot(&abs);
            if prefix.last() != Some(&b'/') {
                prefix.push(b'/');
            }
            dest.set_display(&prefix, "");
        }
    }
    let list_io_error = list.io_error;
    let mut first_counts = crate::role::stats::TypeCounts::default();
    let mut first_size = 0i64;
    for e in &list.files {
        first_counts.add(e.mode);
        if !crate::protocol::flist::mode::is_dir(e.mode) {
            first_size += e.size;
        }
    }
    let registry = std::sync::Mutex::new(crate::role::generator::Registry {
        recv: lists,
        lists: vec![Arc::new(list)],
        eof: !inc,
    });
    let daemon_rules = daemon_rules.map(Arc::new);
    let prefix = dest_rel.clone();
    // What the module's rules hide: never received, made or cleared away.
    let daemon_excluded = {
        let d = daemon_rules.clone();
        move |rel: &[u8], is_dir: bool| -> bool {
            let Some(d) = &d else {
                return false;
            };
            let mut mp = prefix.clone();
            if !mp.is_empty() && !mp.ends_with(b"/") {
                mp.push(b'/');
            }
            mp.extend_from_slice(rel);
            d.is_excluded(&mp, is_dir, crate::filter::Side::Receiver)
        }
    };
    // What deletions leave alone, beside the module's names: what the
    // client's rules exclude on the receiving side (upstream get_dirlist
    // under delete_in_dir applies both; with --delete-excluded only the
    // rules made receiver-side, `P` and `R`, count: the parse sees to
    // that), with the destination's rules files (`-F`, `dir-merge`) named
    // by their absolute path as upstream's dirbuf.
    let report = opts.debug_level("FILTER") >= 1 && !client_rules.is_empty();
    let mut stack = crate::filter::FilterStack::new(client_rules, crate::filter::Side::Receiver);
    if stack.has_dir_merge() {
        let abs = std::fs::canonicalize(&dest_path)
            .or_else(|_| std::env::current_dir().map(|c| c.join(&dest_path)));
        if let Ok(a) = abs {
            stack.list_mut().set_root_abs(a.as_os_str().as_bytes());
        }
    }
    let client_rules = crate::role::generator::DirRules {
        stack,
        outside: env.module.is_none(),
        report,
    };
    let chmod = env.incoming_chmod.clone();
    // Basis dirs are relative to the destination and must stay inside the module.
    let mut basis_dirs = Vec::new();
    for (kind, arg) in &opts.basis_dirs {
        let Some(kind) = crate::role::generator::BasisKind::from_option(kind) else {
            continue;
        };
        let mut p = dest_rel.clone();
        if !p.is_empty() && !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(arg.as_bytes());
        if arg.starts_with('/') {
            p = arg.as_bytes().to_vec();
        }
        let rel = env.client_path(&p);
        let path = if rel.is_empty() {
            PathBuf::from(".")
        } else {
            PathBuf::from(std::ffi::OsStr::from_bytes(&rel))
        };
        // upstream check_alt_basis_dirs: a warning for a dir that is not
        // there, named absolute (from the destination) unless a module's
        // paths are sanitized.
        let bare = std::path::Path::new(std::ffi::OsStr::from_bytes(
            rel.strip_suffix(b"/")
                .filter(|r| !r.is_empty())
                .unwrap_or(&rel),
        ));
        let trouble = match std::fs::metadata(if rel.is_empty() { &path } else { bare }) {
            Err(_) => Some("does not exist"),
            Ok(m) if !m.is_dir() => Some("is not a dir"),
            Ok(_) => None,
        };
        if let Some(what) = trouble {
            let arg = arg
                .strip_suffix('/')
                .filter(|a| !a.is_empty())
                .unwrap_or(arg);
            let shown = if env.confined() {
                crate::protocol::text::name(&crate::daemon::paths::sanitize(arg.as_bytes()))
                    .into_owned()
            } else if arg.starts_with('/') {
                arg.to_string()
            } else {
                let dest = std::path::Path::new(std::ffi::OsStr::from_bytes(&dest_rel));
                let abs = std::env::current_dir()
                    .map(|c| c.join(dest))
                    .unwrap_or_default();
                let abs = abs.to_string_lossy();
                format!("{}/{arg}", abs.trim_end_matches('/'))
            };
            let text = format!("{} arg {what}: {shown}", kind.option_name());
            match &local {
                Some(l) => l.text(MsgCode::Warning, text.as_bytes()),
                None => send_text(out, proto, MsgCode::Warning, &text)?,
            }
        }
        if let Ok(root) = crate::fs::dest::DestRoot::open(&path) {
            basis_dirs.push((kind, root));
        }
    }
    let mut ropts = opts.clone();
    if ropts.backup && ropts.backup_dir.is_none() {
        ropts.omit_dir_times = true; // upstream: --backup without --backup-dir implies -O
    }
    let cfg = RecvConfig {
        n,
        opts: ropts,
        dest,
        am_root,
        chmod,
        daemon_excluded: Box::new(daemon_excluded),
        client_rules,
        umask: current_umask(),
        basis_dirs,
        dest_created,
        temp_dir: opts
            .temp_dir
            .as_ref()
            .map(|t| env.client_path(t.as_bytes()))
            .filter(|t| !t.is_empty()),
        local,
        shown_name,
        xfer_log: env.xfer_log.clone(),
        xattrs: xattr_sets.map(|(sets, names)| crate::role::xattrs::XattrState::new(sets, names)),
    };
    let mut pumped = std::mem::replace(demux, Demux::new(Box::new(std::io::empty())));
    let (tx, rx) = std::sync::mpsc::channel::<RecvEvent>();
    // MSG_NO_SEND: the sender could not open a file it was asked for; the
    // generator counts it as finished, not in place (upstream
    // got_flist_entry_status FES_NO_SEND). Without this a list never ended.
    {
        let tx = tx.clone();
        let mut prev = pumped.take_handler();
        pumped.set_handler(Box::new(move |m| {
            if m.code == MsgCode::NoSend {
                if let Some(b) = m.payload.get(..4).and_then(|p| <[u8; 4]>::try_from(p).ok()) {
                    let _ = tx.send(RecvEvent::FilesDone(vec![(i32::from_le_bytes(b), false)]));
                }
                return None;
            }
            match prev.as_mut() {
                Some(h) => h(m),
                None => Some(m),
            }
        }));
    }
    let input = input_slot.insert(crate::role::input::inline(pumped));
    // Generator and receiver share the writer (the receiver only sends messages).
    let shared = crate::role::generator::SharedOut(std::sync::Mutex::new(out));
    let (gen_res, recv_res) = std::thread::scope(|s| {
        let recv = s.spawn(|| {
            let r = crate::role::receiver::run(&cfg, &registry, inc, input, &tx, &shared);
            if r.is_err() {
                let _ = tx.send(RecvEvent::Failed);
            }
            r
        });
        let mut g = Generator::new(&cfg, &registry, inc, &shared);
        let gr = g.run(&rx).map(|()| (g.io_error, g.del, g.stop.is_some()));
        let rr = recv
            .join()
            .unwrap_or_else(|_| Err(RoleError::Protocol("receiver thread panicked".into())));
        (gr, rr)
    });
    let mut rstats = recv_res?;
    let (gen_err, del, stopped) = gen_res?;
    rstats.flist_size = flist_size;
    rstats.num_files = add_counts(rstats.num_files, first_counts);
    rstats.total_size += first_size;
    rstats.deleted = Some([del.files, del.dirs, del.symlinks, del.devices, del.specials]);
    let code = if stopped {
        crate::exit::RERR_SYNTAX
    } else {
        io_error_code(rstats.io_error | gen_err | list_io_error)
    };
    Ok((code, rstats))
}

/// Sub-lists for the sender, post-processed like the first list.
struct ListFeed<'a, 'b> {
    lister: IncrementalLister<'a>,
    post: &'b dyn Fn(&mut FileList),
}

impl MoreLists for ListFeed<'_, '_> {
    fn next_list(&mut self) -> Option<(i32, FileList)> {
        let (d, mut l) = self.lister.next_list()?;
        (self.post)(&mut l);
        Some((d, l))
    }
    fn done(&self) -> bool {
        self.lister.is_done()
    }
}

/// The process umask: from /proc (a read that cannot race with files being
/// created in other threads), else by setting and restoring it.
pub(crate) fn current_umask() -> u32 {
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        if let Some(v) = s
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        {
            return v & 0o777;
        }
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(old);
    old.bits()
}

/// Read NUL-separated names until an empty one (upstream: forward_filesfrom_data receiver side).
pub(crate) fn read_files_from<R: Read>(r: &mut R) -> Result<Vec<Vec<u8>>, RoleError> {
    let mut names = Vec::new();
    let mut cur = Vec::new();
    let mut b = [0u8; 1];
    loop {
        r.read_exact(&mut b)?;
        if b[0] == 0 {
            if cur.is_empty() {
                return Ok(names);
            }
            names.push(std::mem::take(&mut cur));
            if names.len() > 10_000_000 {
                return Err(RoleError::Protocol("files-from list too long".into()));
            }
        } else {
            if cur.len() >= crate::protocol::MAX_PATH_LEN {
                return Err(RoleError::Protocol("files-from name too long".into()));
            }
            cur.push(b[0]);
        }
    }
}

/// A files-from list as it travels from the side that read it: each name
/// NUL-terminated (line ends become NULs unless `--from0`, empty names
/// dropped, comment lines kept as upstream's forwarding keeps them), then
/// an empty name.
pub(crate) fn files_from_wire(data: &[u8], from0: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 2);
    let sep = |c: &u8| *c == 0 || (!from0 && (*c == b'\n' || *c == b'\r'));
    for name in data.split(sep).filter(|n| !n.is_empty()) {
        v.extend_from_slice(name);
        v.push(0);
    }
    v.push(0);
    v
}

/// Where received files go (upstream get_local_name).
#[derive(Debug)]
struct LocalDest {
    /// The directory the transfer writes beneath.
    dir: Vec<u8>,
    /// The name of the single file, when it is written under another name.
    local_name: Option<Vec<u8>>,
    /// The directory was created for this transfer.
    created: bool,
}

/// Decide the destination like upstream: an existing directory is entered;
/// several files, a directory, or a trailing slash need a directory (made if
/// missing); a single file otherwise takes the destination's name.
fn local_dest(
    dest: &[u8],
    list: &crate::flist::recv::RecvList,
    dry_run: bool,
    mkpath: bool,
    module: Option<&str>,
) -> Result<LocalDest, RoleError> {
    let shown = |d: &[u8]| crate::protocol::text::name(d).into_owned();
    // upstream full_fname: a module names the path inside it; otherwise a
    // relative path is shown under the current directory.
    let full = |d: &[u8]| -> String {
        let p = shown(d);
        match module {
            Some(m) => format!("\"{p}\" (in {m})"),
            None if p.starts_with('/') => format!("\"{p}\""),
            None => match std::env::current_dir() {
                Ok(c) => format!("\"{}/{p}\"", c.display()),
                Err(_) => format!("\"{p}\""),
            },
        }
    };
    let dest: Vec<u8> = if dest.is_empty() {
        b".".to_vec()
    } else {
        dest.to_vec()
    };
    let total = list.files.len();
    let first_is_dir = list
        .files
        .first()
        .is_some_and(|e| crate::protocol::flist::mode::is_dir(e.mode));
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(&dest));
    let st = std::fs::metadata(&path);
    let trailing = dest.ends_with(b"/");
    match &st {
        Ok(md) if md.is_dir() => {
            return Ok(LocalDest {
                dir: dest,
                local_name: None,
                created: false,
            })
        }
        Ok(_) if total > 1 => {
            return Err(RoleError::FileSelect(
                "ERROR: destination must be a directory when copying more than 1 file".into(),
            ))
        }
        Ok(_) if total == 1 && first_is_dir => {
            return Err(RoleError::FileSelect(
                "ERROR: cannot overwrite non-directory with a directory".into(),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(RoleError::FileSelect(format!(
                "ERROR: cannot stat destination \"{}\": {}",
                shown(&dest),
                crate::fs::os_error_text(e)
            )))
        }
    }
    if total > 1 || trailing || first_is_dir {
        let mut d = dest.clone();
        while d.len() > 1 && d.ends_with(b"/") {
            d.pop();
        }
        if st.is_ok() {
            return Err(RoleError::Refused(
                "ERROR: destination path is not a directory".into(),
            ));
        }
        if !dry_run {
            let dir = PathBuf::from(std::ffi::OsStr::from_bytes(&d));
            if mkpath {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let _ = std::fs::create_dir_all(parent);
                }
            }
            if let Err(e) = std::fs::create_dir(&dir) {
                return Err(RoleError::DestIo(format!(
                    "rsync: [Receiver] mkdir {} failed: {}",
                    full(&d),
                    crate::fs::os_error_text(&e)
                )));
            }
        }
        return Ok(LocalDest {
            dir: d,
            local_name: None,
            created: true,
        });
    }
    // A single file written under the destination's name, in its parent
    // (made first with --mkpath).
    if mkpath && !dry_run && st.is_err() {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
    }
    match dest.iter().rposition(|&c| c == b'/') {
        None => Ok(LocalDest {
            dir: Vec::new(),
            local_name: Some(dest),
            created: false,
        }),
        Some(p) => Ok(LocalDest {
            dir: if p == 0 {
                b"/".to_vec()
            } else {
                dest[..p].to_vec()
            },
            local_name: Some(dest[p + 1..].to_vec()),
            created: false,
        }),
    }
}

/// A destination root in which nothing exists: an opened, then removed,
/// empty directory (a dry run into a directory it would have created).
fn vanished_dir() -> Result<crate::fs::dest::DestRoot, crate::fs::dest::FsError> {
    let base = std::env::temp_dir().join(format!(
        "rrsync-dry-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir(&base).map_err(|e| {
        crate::fs::dest::FsError::os("mkdir", e.raw_os_error().unwrap_or(libc_eio()))
    })?;
    let root = crate::fs::dest::DestRoot::open(&base);
    let _ = std::fs::remove_dir(&base);
    root
}

fn libc_eio() -> i32 {
    nix::libc::EIO
}

fn add_counts(
    a: crate::role::stats::TypeCounts,
    b: crate::role::stats::TypeCounts,
) -> crate::role::stats::TypeCounts {
    crate::role::stats::TypeCounts {
        total: a.total + b.total,
        dirs: a.dirs + b.dirs,
        links: a.links + b.links,
        devices: a.devices + b.devices,
        specials: a.specials + b.specials,
    }
}
