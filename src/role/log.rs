//! What a client shows on its terminal (upstream log.c: rwrite, log_item,
//! maybe_log_item, log_delete, log_formatted): messages from either side of
//! the transfer, one line per item in the `--out-format` syntax, and
//! deletions. A server sends the same texts to its client as MSG_* frames
//! instead; `ClientLog` is the client's end of them.

use crate::protocol::flist::{mode, FileEntry};
use crate::protocol::mux::MsgCode;
use crate::protocol::ndx::iflags;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Item flag beyond the wire's 16 bits: the item was deleted (log_formatted only).
pub const ITEM_DELETED: u32 = 1 << 17;
/// Item flag beyond the wire's 16 bits: the data is missing (log_formatted only).
pub const ITEM_MISSING_DATA: u32 = 1 << 16;

/// The flags an item of a sender or receiver is logged with: below
/// protocol 29 none come over the wire, and upstream's
/// read_ndx_and_attrs makes them ITEM_TRANSFER | ITEM_MISSING_DATA
/// (shown as `>f?????????`).
pub fn logged_iflags(proto: u8, fl: u16) -> u32 {
    if proto < 29 {
        fl as u32 | ITEM_MISSING_DATA
    } else {
        fl as u32
    }
}

/// upstream clean_fname with no flags: adjacent slashes made one, `.`
/// components dropped but a last one, no trailing slash.
fn clean_fname(p: &[u8]) -> Vec<u8> {
    let abs = p.first() == Some(&b'/');
    let comps: Vec<&[u8]> = p.split(|&c| c == b'/').filter(|c| !c.is_empty()).collect();
    let last = comps.len().saturating_sub(1);
    let kept: Vec<&[u8]> = comps
        .iter()
        .enumerate()
        .filter(|&(i, c)| *c != b"." || (i == last && i > 0))
        .map(|(_, c)| *c)
        .collect();
    crate::filter::parse::rooted_join(abs, &kept)
}

/// Flags worth reporting (upstream SIGNIFICANT_ITEM_FLAGS).
pub fn significant(fl: u32) -> bool {
    fl & !(iflags::BASIS_TYPE_FOLLOWS | iflags::XNAME_FOLLOWS | iflags::LOCAL_CHANGE) as u32
        & 0xffff
        != 0
}

/// How the client's output is configured (upstream: stdout_format and the
/// `--info` levels that decide what is shown).
#[derive(Debug, Clone, Default)]
pub struct OutputOpts {
    /// `--out-format` (or the implied `%i %n%L` / `%n%L`).
    pub format: Option<String>,
    /// stdout_format_has_i: 0, 1, or 2 (`-ii`).
    pub has_i: u8,
    /// The format has `%i` or `%o` (deletions use it then).
    pub has_o_or_i: bool,
    /// `--info=name` level (`-v` = 1, `-vv` = 2).
    pub name: u8,
    /// `--info=del` level.
    pub del: u8,
    /// `--info=flist` level.
    pub flist: u8,
    /// `--info=stats` level.
    pub stats: u8,
    /// `--info=misc` level.
    pub misc: u8,
    /// `--info=progress` level.
    pub progress: u8,
    /// `--info=nonreg` level.
    pub nonreg: u8,
    /// `--info=skip` level.
    pub skip: u8,
    /// `-q`: informational messages are not shown.
    pub quiet: bool,
    /// We are the sending side (the `%o` operation is "send").
    pub am_sender: bool,
    /// Both sides are local (the `%i` arrow is always `>`).
    pub local_server: bool,
    /// `-t`.
    pub preserve_mtimes: bool,
    /// `-8`: high-bit bytes are shown as they are.
    pub eight_bit: bool,
    /// The terminal's locale takes UTF-8 (multibyte names are shown as they are).
    pub utf8_locale: bool,
    /// Number formatting (`-h` level: 0 plain, 1 commas, 2/3 units).
    pub human: u8,
    /// `-n`: a daemon logs nothing of a dry run.
    pub dry_run: bool,
    /// Put before every line (a push names the target a line is about).
    pub prefix: Option<String>,
    /// A daemon's transfer log: lines go to this sink (the log file) instead
    /// of the terminal, under the server's rules for what is logged.
    pub sink: Option<fn(&[u8])>,
    /// The connection, for `%h %a %m %u %P` in a daemon's `log format`.
    pub daemon: Option<DaemonCtx>,
}

/// What a daemon's `log format` can name about the connection.
#[derive(Debug, Clone, Default)]
pub struct DaemonCtx {
    /// `%h`: the client's host name (or "UNDETERMINED").
    pub host: String,
    /// `%a`: its address.
    pub addr: String,
    /// `%m`: the module.
    pub module: String,
    /// `%u`: the authenticated user ("" without auth).
    pub user: String,
    /// `%P`: the module's path.
    pub path: String,
}

impl OutputOpts {
    /// Options for lines in log format `fmt` (a log file's, or a module's
    /// transfer log): whether it itemizes (`%i`, `%o`) follows from it.
    pub fn for_format(fmt: String) -> OutputOpts {
        let has_i = fmt.contains("%i");
        OutputOpts {
            has_i: u8::from(has_i),
            has_o_or_i: has_i || fmt.contains("%o"),
            format: Some(fmt),
            ..Default::default()
        }
    }

    /// Log the item before its transfer (upstream log_before_transfer): the
    /// format needs no byte counts.
    pub fn log_before_transfer(&self) -> bool {
        if self.sink.is_some() {
            return false; // a server logs after the transfer (with its byte counts)
        }
        match &self.format {
            Some(f) => !f.contains("%b") && !f.contains("%c") && !f.contains("%C"),
            None => false,
        }
    }
}

/// The client's terminal: stdout for information, stderr for errors.
#[derive(Debug)]
pub struct ClientLog {
    /// Output configuration.
    pub o: OutputOpts,
    receiver_symlink_times: AtomicBool,
    got_xfer_error: AtomicBool,
    needs_newline: AtomicBool,
    /// "building/receiving file list ... " was shown and waits for its end.
    filelist_open: AtomicBool,
    lock: Mutex<()>,
    progress: Mutex<Progress>,
    /// A client's `--log-file`: items and deletions also go there, under
    /// that log's own format and rules.
    file: Option<std::sync::Arc<ClientLog>>,
    /// The sending side: the directory of the argument the item being
    /// logged came from (upstream F_PATHNAME), which `%f` puts before its
    /// name.
    pathname: Mutex<Option<std::sync::Arc<std::path::Path>>>,
    /// Told about each file sent (a push's live view counts them).
    on_file: Option<HookBox>,
}

/// See [`ClientLog::with_file_hook`].
pub type FileHook = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// A [`FileHook`] that can sit in a `Debug` struct.
struct HookBox(FileHook);

impl std::fmt::Debug for HookBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileHook")
    }
}

/// `--progress` state of the file in flight (upstream progress.c).
#[derive(Debug, Default)]
struct Progress {
    start: Option<(std::time::Instant, i64)>,
    last: Option<(std::time::Instant, i64)>,
    /// `--info=progress2`: bytes of the files started so far (this one
    /// included) and of every file listed so far.
    transferred: i64,
    total: i64,
    /// progress2: the longest end-of-line seen (shorter ones are padded).
    eol_len: usize,
}

/// Where a file stands in the transfer, for the end of its progress line.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressPos {
    /// Files transferred so far (this one included).
    pub xferred: u64,
    /// Entries listed so far.
    pub num_files: u64,
    /// This file's place among them.
    pub index: u64,
    /// Every list has arrived (`to-chk`, else `ir-chk`).
    pub flist_eof: bool,
}

impl ProgressPos {
    /// The end of a file's last progress line: ` (xfr#N, to-chk=R/T)`.
    fn eol(&self) -> String {
        format!(
            " (xfr#{}, {}-chk={}/{})",
            self.xferred,
            if self.flist_eof { "to" } else { "ir" },
            self.num_files.saturating_sub(self.index + 1),
            self.num_files
        )
    }
}

impl ClientLog {
    /// A log with these options.
    pub fn new(o: OutputOpts) -> Self {
        ClientLog {
            o,
            receiver_symlink_times: AtomicBool::new(true),
            got_xfer_error: AtomicBool::new(false),
            needs_newline: AtomicBool::new(false),
            filelist_open: AtomicBool::new(false),
            lock: Mutex::new(()),
            progress: Mutex::new(Progress::default()),
            file: None,
            on_file: None,
            pathname: Mutex::new(None),
        }
    }

    /// The sender is about to log items of an argument under `dir`
    /// (upstream F_PATHNAME, which `%f` shows).
    pub fn set_pathname(&self, dir: Option<&std::sync::Arc<std::path::Path>>) {
        if let Some(f) = &self.file {
            f.set_pathname(dir);
        }
        let mut p = self.pathname.lock().unwrap_or_else(|e| e.into_inner());
        let same = match (&*p, dir) {
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            *p = dir.cloned();
        }
    }

    /// Call `hook` with the size of every file sent.
    pub fn with_file_hook(mut self, hook: FileHook) -> Self {
        self.on_file = Some(HookBox(hook));
        self
    }

    /// A file went out (for the hook, if any).
    pub fn file_sent(&self, size: u64) {
        if let Some(h) = &self.on_file {
            (h.0)(size);
        }
    }

    /// Also log items and deletions to `file` (a client's `--log-file`).
    pub fn with_file_log(mut self, file: ClientLog) -> Self {
        self.file = Some(std::sync::Arc::new(file));
        self
    }

    /// Whether the receiving side can set symlink times (the `%i` `T` column).
    pub fn set_receiver_symlink_times(&self, on: bool) {
        self.receiver_symlink_times.store(on, Ordering::Relaxed);
    }

    /// An FERROR_XFER message was shown (the run ends with code 23).
    pub fn got_xfer_error(&self) -> bool {
        self.got_xfer_error.load(Ordering::Relaxed)
    }

    /// A progress line was left open (the next message starts on a new line).
    /// The end of the run: a progress line left open gets its newline
    /// (upstream exit_cleanup).
    pub fn end_line(&self) {
        if self.needs_newline.swap(false, Ordering::Relaxed) {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(b"\n");
            let _ = o.flush();
        }
    }

    /// upstream start_filelist_progress: "building file list ... " with
    /// the line left open (a message before its end starts a new line).
    pub fn start_filelist_progress(&self, kind: &str) {
        if self.o.quiet || self.o.sink.is_some() {
            return;
        }
        self.filelist_open.store(true, Ordering::Relaxed);
        self.put_progress_line(&format!("{kind} ... "), true);
    }

    /// upstream finish_filelist_progress: "done", or with `--info=flist2`
    /// the number of entries; only after [`ClientLog::start_filelist_progress`].
    /// With `--info=flist2` upstream also shows a count every 100 entries
    /// while the list grows (" N files...\r", the first on a line of its
    /// own): the same lines are written here, all at once, the sender's
    /// from 0 (counted before each entry), the receiver's from 100 (after).
    pub fn finish_filelist_progress(&self, entries: usize, sending: bool) {
        if !self.filelist_open.swap(false, Ordering::Relaxed) {
            return;
        }
        if self.o.flist >= 2 {
            let ticks: Vec<usize> = if sending {
                (0..entries).step_by(100).collect()
            } else {
                (100..=entries).step_by(100).collect()
            };
            if !ticks.is_empty() {
                let mut text = String::from("\n");
                for t in ticks {
                    text.push_str(&format!(" {t} files...\r"));
                }
                self.put_progress_line(&text, false);
            }
        }
        let line = if self.o.flist >= 2 {
            format!(
                "{entries} file{}to consider\n",
                if entries == 1 { " " } else { "s " }
            )
        } else {
            "done\n".to_string()
        };
        self.put_progress_line(&line, false);
    }

    pub fn set_needs_newline(&self, on: bool) {
        self.needs_newline.store(on, Ordering::Relaxed);
    }

    fn progress_state(&self) -> std::sync::MutexGuard<'_, Progress> {
        match self.progress.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The transfer's totals before a file starts (for `--info=progress2`,
    /// whose line is about the whole transfer).
    pub fn progress_totals(&self, transferred: i64, total: i64) {
        if self.o.progress >= 2 {
            let mut p = self.progress_state();
            p.transferred = transferred;
            p.total = total;
        }
    }

    /// show_progress: at most once a second, the file's running line (no newline).
    pub fn progress_update(&self, ofs: i64, size: i64) {
        if self.o.progress == 0 || self.o.quiet {
            return;
        }
        let (ofs, size) = if self.o.progress >= 2 {
            let p = self.progress_state();
            (p.transferred - size + ofs, p.total.max(p.transferred))
        } else {
            (ofs, size)
        };
        let now = std::time::Instant::now();
        let line = {
            let mut p = self.progress_state();
            let Some((t0, o0)) = p.start else {
                // The first call shows the file's start at once.
                p.start = Some((now, ofs));
                p.last = Some((now, ofs));
                drop(p);
                let line = progress_line(ofs, size, 0.0, 0.0, "  ", self.o.human);
                self.put_progress_line(&line, true);
                return;
            };
            let (tl, ol) = p.last.unwrap_or((t0, o0));
            if now.duration_since(tl).as_millis() < 1000 {
                return;
            }
            p.last = Some((now, ofs));
            let ms = now.duration_since(tl).as_millis().max(1) as f64;
            let rate = (ofs - ol) as f64 * 1000.0 / ms / 1024.0;
            let remain = if rate > 0.0 {
                (size - ofs) as f64 / rate / 1000.0
            } else {
                0.0
            };
            progress_line(ofs, size, rate, remain, "  ", self.o.human)
        };
        self.put_progress_line(&line, true);
    }

    /// end_progress: the file's final line, with its totals.
    pub fn progress_end(&self, size: i64, pos: ProgressPos) {
        if self.o.progress == 0 || self.o.quiet {
            return;
        }
        let now = std::time::Instant::now();
        if self.o.progress >= 2 {
            // One line for the whole transfer: its rate since the start,
            // the end padded over a longer previous one, no newline.
            let line = {
                let mut p = self.progress_state();
                let (ofs, total) = (p.transferred, p.total.max(p.transferred));
                let (t0, o0) = *p.start.get_or_insert((now, ofs));
                p.last = Some((now, ofs));
                let eol = pos.eol();
                p.eol_len = p.eol_len.max(eol.len());
                let eol = format!("{eol:<width$}", width = p.eol_len);
                let ms = now.duration_since(t0).as_millis().max(1) as f64;
                let rate = (ofs - o0) as f64 * 1000.0 / ms / 1024.0;
                progress_line(ofs, total, rate, ms / 1000.0, &eol, self.o.human)
            };
            self.put_progress_line(&line, true);
            return;
        }
        let (t0, o0) = {
            let mut p = self.progress_state();
            let s = p.start.unwrap_or((now, 0));
            *p = Progress::default();
            s
        };
        let ms = now.duration_since(t0).as_millis().max(1) as f64;
        let rate = (size - o0) as f64 * 1000.0 / ms / 1024.0;
        let eol = format!("{}\n", pos.eol());
        let line = progress_line(size, size, rate, ms / 1000.0, &eol, self.o.human);
        self.put_progress_line(&line, false);
    }

    /// A progress line to stdout at once; `open` when it does not end its
    /// line (what is printed next starts with a newline).
    fn put_progress_line(&self, line: &str, open: bool) {
        self.needs_newline.store(open, Ordering::Relaxed);
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(line.as_bytes());
        let _ = o.flush();
    }

    /// rwrite: show `text` as a message of kind `code`.
    pub fn text(&self, code: MsgCode, text: &[u8]) {
        let text: &[u8] = &crate::protocol::text::raw(text);
        if let Some(sink) = self.o.sink {
            let body = text.strip_suffix(b"\n").unwrap_or(text);
            let mut buf = Vec::with_capacity(body.len() + 8);
            escape_into(&mut buf, body, HighBytes::Raw);
            sink(&buf);
            return;
        }
        let to_err = match code {
            MsgCode::ErrorXfer => {
                self.got_xfer_error.store(true, Ordering::Relaxed);
                true
            }
            MsgCode::Error | MsgCode::ErrorSocket | MsgCode::ErrorUtf8 | MsgCode::Warning => true,
            MsgCode::Info | MsgCode::Client => {
                if self.o.quiet {
                    return;
                }
                false
            }
            _ => return,
        };
        let _g = match self.lock.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut body = text;
        let trailing = match body.last() {
            Some(&c) if c == b'\n' || c == b'\r' => {
                body = &body[..body.len() - 1];
                Some(c)
            }
            _ => None,
        };
        let mut buf = Vec::with_capacity(body.len() + 8);
        if self.needs_newline.swap(false, Ordering::Relaxed) {
            buf.push(b'\n');
        }
        if let Some(p) = &self.o.prefix {
            buf.extend_from_slice(p.as_bytes());
        }
        if let Some(rest) = body.strip_prefix(b"\r") {
            buf.push(b'\r');
            body = rest;
        }
        let high = if self.o.eight_bit {
            HighBytes::Raw
        } else if self.o.utf8_locale {
            HighBytes::Utf8
        } else {
            HighBytes::Ascii
        };
        escape_into(&mut buf, body, high);
        buf.push(trailing.unwrap_or(b'\n'));
        if to_err {
            let _ = std::io::stdout().flush();
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(&buf);
            let _ = e.flush();
        } else {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(&buf);
            let _ = o.flush();
        }
    }

    /// An informational line (a newline is added when missing).
    pub fn info(&self, line: &str) {
        let mut t = line.as_bytes().to_vec();
        if !t.ends_with(b"\n") {
            t.push(b'\n');
        }
        self.text(MsgCode::Info, &t);
    }

    /// An error line (a newline is added when missing).
    pub fn error(&self, line: &str) {
        let mut t = line.as_bytes().to_vec();
        if !t.ends_with(b"\n") {
            t.push(b'\n');
        }
        self.text(MsgCode::Error, &t);
    }

    /// list_file_entry: one `--list-only` line, `ls -l` style.
    pub fn list_entry(&self, e: &FileEntry) {
        self.text(MsgCode::Info, &list_line(e, self.o.human));
    }

    /// log_item: one item in the output format (a transferred file).
    pub fn log_item(&self, e: &FileEntry, fl: u32, hlink: Option<&[u8]>) {
        if let Some(f) = &self.file {
            f.log_item(e, fl, hlink);
        }
        self.emit_item(e, fl, hlink);
    }

    fn emit_item(&self, e: &FileEntry, fl: u32, hlink: Option<&[u8]>) {
        if self.o.sink.is_some() && self.o.dry_run {
            return;
        }
        let Some(fmt) = self.o.format.as_deref() else {
            return;
        };
        let line = self.format_item(fmt, e, None, fl, hlink, ByteCounts::default());
        self.text(MsgCode::Info, &line);
    }

    /// log_item with the bytes moved for this file (`%b`/`%c`).
    pub fn log_item_bytes(&self, e: &FileEntry, fl: u32, bytes: ByteCounts) {
        if let Some(f) = &self.file {
            f.log_item_bytes(e, fl, bytes);
        }
        if self.o.sink.is_some() && self.o.dry_run {
            return;
        }
        let Some(fmt) = self.o.format.as_deref() else {
            return;
        };
        let line = self.format_item(fmt, e, None, fl, None, bytes);
        self.text(MsgCode::Info, &line);
    }

    /// maybe_log_item: an item that is not transferred, shown when it is
    /// worth showing.
    pub fn maybe_log_item(&self, e: &FileEntry, fl: u32, xname: &[u8]) {
        let sig = significant(fl);
        if self.o.sink.is_some() {
            // A daemon's log (upstream: am_server branch): with %i, items
            // that changed; nothing in a dry run.
            let itemizing = self.o.has_i > 0;
            let see_item = itemizing && (sig || !xname.is_empty());
            if see_item && !self.o.dry_run {
                let hl = (!xname.is_empty()).then_some(xname);
                self.emit_item(e, fl, hl);
            }
            return;
        }
        let itemizing = self.o.has_i > 0;
        let see_item =
            itemizing && (sig || !xname.is_empty() || self.o.has_i > 1 || self.o.name >= 2);
        let local_change = fl & iflags::LOCAL_CHANGE as u32 != 0 && sig;
        if see_item || local_change || !xname.is_empty() || (mode::is_dir(e.mode) && sig) {
            let hl = (!xname.is_empty()).then_some(xname);
            self.emit_item(e, fl, hl);
            // upstream log_item: the log file has it when it changed something
            // or its format itemizes.
            if let Some(f) = self.file.as_ref().filter(|f| sig || f.o.has_i > 0) {
                f.emit_item(e, fl, hl);
            }
        }
    }

    /// log_delete: "deleting NAME" (or the item format with `*deleting`).
    pub fn log_delete(&self, name: &[u8], file_mode: u32) {
        if let Some(f) = &self.file {
            f.log_delete(name, file_mode);
        }
        if self.o.sink.is_some() && self.o.dry_run {
            return;
        }
        if self.o.del == 0 && self.o.format.is_none() {
            return;
        }
        let fmt = if self.o.has_o_or_i {
            self.o
                .format
                .clone()
                .unwrap_or_else(|| "deleting %n".into())
        } else {
            "deleting %n".into()
        };
        let e = FileEntry {
            name: name.to_vec(),
            mode: file_mode,
            ..Default::default()
        };
        let line = self.format_item(
            &fmt,
            &e,
            Some(name),
            ITEM_DELETED,
            None,
            ByteCounts::default(),
        );
        self.text(MsgCode::Info, &line);
    }

    /// log_formatted: expand the %-escapes of `fmt` for one item.
    pub fn format_item(
        &self,
        fmt: &str,
        e: &FileEntry,
        fname: Option<&[u8]>,
        fl: u32,
        hlink: Option<&[u8]>,
        bytes: ByteCounts,
    ) -> Vec<u8> {
        let op = if fl & ITEM_DELETED != 0 {
            "del."
        } else if self.o.am_sender {
            "send"
        } else {
            "recv"
        };
        let f = fmt.as_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(fmt.len() + e.name.len() + 16);
        let mut i = 0;
        while i < f.len() {
            if f[i] != b'%' {
                out.push(f[i]);
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            while i < f.len() && f[i] == b'\'' {
                i += 1;
            }
            let left = i < f.len() && f[i] == b'-';
            if left {
                i += 1;
            }
            let mut width = 0usize;
            while i < f.len() && f[i].is_ascii_digit() {
                width = (width * 10 + (f[i] - b'0') as usize).min(4096);
                i += 1;
            }
            while i < f.len() && f[i] == b'\'' {
                i += 1;
            }
            let Some(&c) = f.get(i) else {
                out.extend_from_slice(&f[start..]);
                break;
            };
            i += 1;
            let has_width = left || width > 0;
            let name = || -> Vec<u8> { fname.unwrap_or(&e.name).to_vec() };
            let val: Option<Vec<u8>> = match c {
                b'n' => {
                    let mut n = name();
                    if mode::is_dir(e.mode) {
                        n.push(b'/');
                    }
                    Some(n)
                }
                b'f' => {
                    let mut n = name();
                    // (A deletion's is its bare name, whatever was sent last.)
                    let dir = (self.o.am_sender && fl & ITEM_DELETED == 0).then(|| {
                        self.pathname
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .clone()
                    });
                    if let Some(d) = dir.flatten().filter(|d| !d.as_os_str().is_empty()) {
                        use std::os::unix::ffi::OsStrExt;
                        let mut p = d.as_os_str().as_bytes().to_vec();
                        p.push(b'/');
                        p.extend_from_slice(&n);
                        n = clean_fname(&p);
                    }
                    Some(n.strip_prefix(b"/").map(<[u8]>::to_vec).unwrap_or(n))
                }
                b'L' => {
                    let (arrow, target): (&[u8], Vec<u8>) = match (hlink, e.link_target()) {
                        (Some(h), _) if !h.is_empty() => (b" => ", h.to_vec()),
                        (_, Some(t)) if mode::is_lnk(e.mode) && fname.is_none() => {
                            (b" -> ", t.to_vec())
                        }
                        _ => {
                            if !has_width {
                                continue;
                            }
                            (b"    ", Vec::new())
                        }
                    };
                    let mut v = arrow.to_vec();
                    v.extend(pad(&target, width, left));
                    out.extend(v);
                    continue;
                }
                b'l' => Some(e.size.to_string().into_bytes()),
                b'o' => Some(op.as_bytes().to_vec()),
                b'i' => Some(self.item_string(e, fl, op)),
                b'h' => self.o.daemon.as_ref().map(|d| d.host.clone().into_bytes()),
                b'a' => self.o.daemon.as_ref().map(|d| d.addr.clone().into_bytes()),
                b'm' => self
                    .o
                    .daemon
                    .as_ref()
                    .map(|d| d.module.clone().into_bytes()),
                b'u' => self.o.daemon.as_ref().map(|d| d.user.clone().into_bytes()),
                b'P' => self.o.daemon.as_ref().map(|d| d.path.clone().into_bytes()),
                b'U' => Some(e.uid.to_string().into_bytes()),
                b'G' => Some(e.gid.to_string().into_bytes()),
                b'p' => Some(std::process::id().to_string().into_bytes()),
                b'M' => Some(timestring(e.mtime).replace(' ', "-").into_bytes()),
                b't' => Some(timestring(now_secs()).into_bytes()),
                b'B' => Some(perm_string(e.mode).as_bytes()[1..].to_vec()),
                b'b' | b'c' => {
                    let v = if fl & iflags::TRANSFER as u32 == 0 {
                        0
                    } else if self.o.am_sender ^ (c == b'c') {
                        bytes.written
                    } else {
                        bytes.read
                    };
                    Some(v.to_string().into_bytes())
                }
                b'%' => Some(b"%".to_vec()),
                _ => None,
            };
            if let Some(v) = val {
                out.extend(pad(&v, width, left));
            }
        }
        out.push(b'\n');
        out
    }

    /// The 11-character `%i` string.
    fn item_string(&self, e: &FileEntry, fl: u32, op: &str) -> Vec<u8> {
        if fl & ITEM_DELETED != 0 {
            return b"*deleting  ".to_vec();
        }
        let has = |b: u16| fl & b as u32 != 0;
        let mut c = [b'.'; 11];
        c[0] = if has(iflags::LOCAL_CHANGE) {
            if has(iflags::XNAME_FOLLOWS) {
                b'h'
            } else {
                b'c'
            }
        } else if !has(iflags::TRANSFER) {
            b'.'
        } else if !self.o.local_server && op.starts_with('s') {
            b'<'
        } else {
            b'>'
        };
        if mode::is_lnk(e.mode) {
            c[1] = b'L';
            c[3] = b'.';
            c[4] = if !has(iflags::REPORT_TIME) {
                b'.'
            } else if !self.o.preserve_mtimes
                || !self.receiver_symlink_times.load(Ordering::Relaxed)
                || has(iflags::REPORT_SIZE)
            {
                // (REPORT_TIMEFAIL shares REPORT_SIZE's bit for symlinks.)
                b'T'
            } else {
                b't'
            };
        } else {
            c[1] = if mode::is_dir(e.mode) {
                b'd'
            } else if mode::is_special(e.mode) {
                b'S'
            } else if mode::is_device(e.mode) {
                b'D'
            } else {
                b'f'
            };
            c[3] = if has(iflags::REPORT_SIZE) { b's' } else { b'.' };
            c[4] = if !has(iflags::REPORT_TIME) {
                b'.'
            } else if !self.o.preserve_mtimes {
                b'T'
            } else {
                b't'
            };
        }
        c[2] = if has(iflags::REPORT_CHANGE) {
            b'c'
        } else {
            b'.'
        };
        c[5] = if has(iflags::REPORT_PERMS) {
            b'p'
        } else {
            b'.'
        };
        c[6] = if has(iflags::REPORT_OWNER) {
            b'o'
        } else {
            b'.'
        };
        c[7] = if has(iflags::REPORT_GROUP) {
            b'g'
        } else {
            b'.'
        };
        c[8] = match (has(iflags::REPORT_ATIME), has(iflags::REPORT_CRTIME)) {
            (false, false) => b'.',
            (true, true) => b'b',
            (true, false) => b'u',
            (false, true) => b'n',
        };
        c[9] = if has(iflags::REPORT_ACL) { b'a' } else { b'.' };
        c[10] = if has(iflags::REPORT_XATTR) {
            b'x'
        } else {
            b'.'
        };
        if has(iflags::IS_NEW) || fl & ITEM_MISSING_DATA != 0 {
            let ch = if has(iflags::IS_NEW) { b'+' } else { b'?' };
            for x in c.iter_mut().skip(2) {
                *x = ch;
            }
        } else if (c[0] == b'.' || c[0] == b'h' || c[0] == b'c')
            && c.iter().skip(2).all(|&x| x == b'.')
        {
            for x in c.iter_mut().skip(2) {
                *x = b' ';
            }
        }
        c.to_vec()
    }
}

/// rprint_progress's line: `\r`, bytes, percent, rate, time, then `eol`.
fn progress_line(ofs: i64, size: i64, rate_kib: f64, remain: f64, eol: &str, human: u8) -> String {
    let (rate, units) = if rate_kib > 1024.0 * 1024.0 {
        (rate_kib / (1024.0 * 1024.0), "GB/s")
    } else if rate_kib > 1024.0 {
        (rate_kib / 1024.0, "MB/s")
    } else {
        (rate_kib, "kB/s")
    };
    let rem = if !(0.0..=9999.0 * 3600.0).contains(&remain) {
        "  ??:??:??".to_string()
    } else {
        let r = remain as u64;
        format!("{:4}:{:02}:{:02}", r / 3600, (r / 60) % 60, r % 60)
    };
    let pct = if ofs == size || size == 0 {
        100
    } else {
        (100.0 * ofs as f64 / size as f64) as i64
    };
    format!(
        "\r{:>15} {:>3}% {:>7.2}{units} {rem}{eol}",
        crate::role::stats::big_num(ofs, human),
        pct,
        rate
    )
}

/// list_file_entry's line for `e` (with its newline).
pub fn list_line(e: &FileEntry, human: u8) -> Vec<u8> {
    let width = if human > 0 { 14 } else { 11 };
    if e.mode == 0 {
        // A "missing" argument (--delete-missing-args), as upstream lists it.
        let mut line = format!("{:<w$} ", "*missing", w = 10 + 1 + width + 1 + 19).into_bytes();
        line.extend_from_slice(&e.name);
        line.push(b'\n');
        return line;
    }
    let mut line = format!(
        "{} {:>width$} {} ",
        perm_string(e.mode),
        crate::role::stats::big_num(e.size, human),
        timestring(e.mtime)
    )
    .into_bytes();
    line.extend_from_slice(&e.name);
    if let (true, Some(t)) = (mode::is_lnk(e.mode), e.link_target()) {
        line.extend_from_slice(b" -> ");
        line.extend_from_slice(t);
    }
    line.push(b'\n');
    line
}

/// Bytes read and written for one file (`%b`, `%c`).
#[derive(Debug, Default, Clone, Copy)]
pub struct ByteCounts {
    /// Bytes read from the peer for the file.
    pub read: u64,
    /// Bytes written to the peer for the file.
    pub written: u64,
}

/// printf-style `%-Ns` / `%Ns` padding.
fn pad(v: &[u8], width: usize, left: bool) -> Vec<u8> {
    if v.len() >= width {
        return v.to_vec();
    }
    let fill = vec![b' '; width - v.len()];
    if left {
        [v, &fill].concat()
    } else {
        [&fill, v].concat()
    }
}

/// How bytes at or above 0x80 are shown (upstream rwrite's `ic_chck`
/// iconv check, then filtered_fwrite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighBytes {
    /// `-8`: shown as they are.
    Raw,
    /// A UTF-8 locale: valid sequences as they are, each byte of an
    /// invalid or incomplete one as `\#ooo`.
    Utf8,
    /// Any other locale (ASCII): every high byte as `\#ooo`.
    Ascii,
}

/// filtered_fwrite: control bytes below 0x20 (not tab) become `\#ooo`, and
/// so does a literal `\#` followed by three digits; high bytes as `high`
/// says. DEL passes, as through upstream's iconv check.
fn escape_into(out: &mut Vec<u8>, s: &[u8], high: HighBytes) {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b >= 0x80 && high != HighBytes::Raw {
            let valid = match high {
                HighBytes::Utf8 => utf8_char_len(&s[i..]),
                _ => 0,
            };
            if valid > 0 {
                out.extend_from_slice(&s[i..i + valid]);
                i += valid;
            } else {
                out.extend_from_slice(format!("\\#{b:03o}").as_bytes());
                i += 1;
            }
            continue;
        }
        let literal_escape = b == b'\\'
            && i + 4 < s.len()
            && s[i + 1] == b'#'
            && s[i + 2..i + 5].iter().all(u8::is_ascii_digit);
        if literal_escape || (b != b'\t' && b < b' ') {
            out.extend_from_slice(format!("\\#{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
        i += 1;
    }
}

/// The length of the character starting `s` if glibc's UTF-8 converter
/// takes it (up to six bytes and 0x7fffffff, not overlong, no surrogate),
/// else 0.
fn utf8_char_len(s: &[u8]) -> usize {
    let (want, lead_bits, min) = match s.first() {
        Some(b @ 0xc2..=0xdf) => (2, u32::from(b & 0x1f), 0x80),
        Some(b @ 0xe0..=0xef) => (3, u32::from(b & 0x0f), 0x800),
        Some(b @ 0xf0..=0xf7) => (4, u32::from(b & 0x07), 0x1_0000),
        Some(b @ 0xf8..=0xfb) => (5, u32::from(b & 0x03), 0x20_0000),
        Some(b @ 0xfc..=0xfd) => (6, u32::from(b & 0x01), 0x400_0000),
        _ => return 0,
    };
    let Some(tail) = s.get(1..want) else {
        return 0;
    };
    let mut v = lead_bits;
    for &c in tail {
        if c & 0xc0 != 0x80 {
            return 0;
        }
        v = (v << 6) | u32::from(c & 0x3f);
    }
    if v < min || (0xd800..=0xdfff).contains(&v) {
        return 0;
    }
    want
}

/// Whether the environment's locale is a UTF-8 one (LC_ALL, LC_CTYPE, LANG).
pub fn utf8_locale() -> bool {
    for var in ["LC_ALL", "LC_CTYPE", "LANG"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                let l = v.to_ascii_lowercase();
                return l.contains("utf-8") || l.contains("utf8");
            }
        }
    }
    false
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// upstream timestring: `YYYY/MM/DD HH:MM:SS` in local time.
pub fn timestring(t: i64) -> String {
    let tm = nix::libc::time_t::try_from(t).unwrap_or(0);
    let mut out: nix::libc::tm = zeroed_tm();
    // SAFETY: localtime_r writes into `out` only; both pointers are valid.
    let ok = unsafe { !nix::libc::localtime_r(&tm, &mut out).is_null() };
    if !ok {
        return "1970/01/01 00:00:00".into();
    }
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}",
        out.tm_year + 1900,
        out.tm_mon + 1,
        out.tm_mday,
        out.tm_hour,
        out.tm_min,
        out.tm_sec
    )
}

fn zeroed_tm() -> nix::libc::tm {
    nix::libc::tm {
        tm_sec: 0,
        tm_min: 0,
        tm_hour: 0,
        tm_mday: 0,
        tm_mon: 0,
        tm_year: 0,
        tm_wday: 0,
        tm_yday: 0,
        tm_isdst: 0,
        tm_gmtoff: 0,
        tm_zone: std::ptr::null(),
    }
}

/// upstream permstring: `drwxr-xr-x` style, 10 characters.
pub fn perm_string(m: u32) -> String {
    let t = if mode::is_dir(m) {
        'd'
    } else if mode::is_lnk(m) {
        'l'
    } else if m & 0o170000 == 0o020000 {
        'c'
    } else if m & 0o170000 == 0o060000 {
        'b'
    } else if m & 0o170000 == 0o010000 {
        'p'
    } else if m & 0o170000 == 0o140000 {
        's'
    } else {
        '-'
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (i, (b, ch)) in bits.iter().enumerate() {
        let mut c = if m & b != 0 { *ch } else { '-' };
        if i == 2 && m & 0o4000 != 0 {
            c = if m & 0o100 != 0 { 's' } else { 'S' };
        }
        if i == 5 && m & 0o2000 != 0 {
            c = if m & 0o010 != 0 { 's' } else { 'S' };
        }
        if i == 8 && m & 0o1000 != 0 {
            c = if m & 0o001 != 0 { 't' } else { 'T' };
        }
        s.push(c);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_fname_keeps_a_last_dot_only() {
        assert_eq!(clean_fname(b"src/."), b"src/.");
        assert_eq!(clean_fname(b"src/./sub"), b"src/sub");
        assert_eq!(clean_fname(b"./a//b/"), b"a/b");
        assert_eq!(clean_fname(b"/x/./y"), b"/x/y");
        assert_eq!(clean_fname(b"."), b".");
        assert_eq!(clean_fname(b"./."), b".");
    }

    fn log(format: &str, has_i: u8) -> ClientLog {
        ClientLog::new(OutputOpts {
            format: Some(format.into()),
            has_i,
            has_o_or_i: has_i > 0,
            preserve_mtimes: true,
            ..Default::default()
        })
    }

    fn file(name: &str, m: u32) -> FileEntry {
        FileEntry {
            name: name.as_bytes().to_vec(),
            mode: m,
            size: 12,
            ..Default::default()
        }
    }

    #[test]
    fn item_strings_as_upstream() {
        let l = log("%i %n%L", 1);
        let new_file = iflags::TRANSFER | iflags::IS_NEW;
        let s = l.format_item(
            "%i %n%L",
            &file("a", 0o100644),
            None,
            new_file as u32,
            None,
            ByteCounts::default(),
        );
        assert_eq!(s, b">f+++++++++ a\n");
        let s = l.format_item(
            "%i %n%L",
            &file("d", 0o040755),
            None,
            (iflags::REPORT_TIME) as u32,
            None,
            ByteCounts::default(),
        );
        assert_eq!(s, b".d..t...... d/\n");
        let s = l.format_item(
            "%i %n%L",
            &file("d", 0o040755),
            None,
            0,
            None,
            ByteCounts::default(),
        );
        assert_eq!(s, b".d          d/\n");
        let mut link = file("l", 0o120777);
        link.set_link_target(Some(b"t".to_vec()));
        let s = l.format_item(
            "%i %n%L",
            &link,
            None,
            (iflags::IS_NEW) as u32,
            None,
            ByteCounts::default(),
        );
        assert_eq!(s, b".L+++++++++ l -> t\n");
        let s = l.format_item(
            "%i %n%L",
            &file("gone", 0o100644),
            Some(b"gone"),
            ITEM_DELETED,
            None,
            ByteCounts::default(),
        );
        assert_eq!(s, b"*deleting   gone\n");
        let s = l.format_item(
            "%i %n%L",
            &file("h", 0o100644),
            None,
            (iflags::LOCAL_CHANGE | iflags::XNAME_FOLLOWS | iflags::IS_NEW) as u32,
            Some(b"a"),
            ByteCounts::default(),
        );
        assert_eq!(s, b"hf+++++++++ h => a\n");
    }

    #[test]
    fn widths_and_literals() {
        let l = log("%-5n|%5l|%%", 0);
        let s = l.format_item(
            "%-5n|%5l|%%",
            &file("ab", 0o100644),
            None,
            0,
            None,
            ByteCounts::default(),
        );
        assert_eq!(s, b"ab   |   12|%\n");
    }

    #[test]
    fn escapes_like_filtered_fwrite() {
        let mut v = Vec::new();
        escape_into(&mut v, "a\u{1}b\\#123é\u{7f}".as_bytes(), HighBytes::Ascii);
        assert_eq!(v, b"a\\#001b\\#134#123\\#303\\#251\x7f");
        let mut v = Vec::new();
        escape_into(&mut v, "é\tx".as_bytes(), HighBytes::Raw);
        assert_eq!(v, "é\tx".as_bytes());
        // A UTF-8 locale: valid characters pass (C1 controls too), each
        // byte of a broken sequence is escaped on its own.
        let mut v = Vec::new();
        escape_into(
            &mut v,
            b"c\xc3\xa9 \xc2\x85 g\xe2\x80h \xff \xed\xa0\x80",
            HighBytes::Utf8,
        );
        assert_eq!(
            v,
            b"c\xc3\xa9 \xc2\x85 g\\#342\\#200h \\#377 \\#355\\#240\\#200".as_slice()
        );
        // As glibc: old five- and six-byte forms pass, overlong ones do not.
        let mut v = Vec::new();
        escape_into(
            &mut v,
            b"\xf4\x90\x80\x80\xfc\x84\x80\x80\x80\x80\xe0\x80\x80",
            HighBytes::Utf8,
        );
        assert_eq!(
            v,
            b"\xf4\x90\x80\x80\xfc\x84\x80\x80\x80\x80\\#340\\#200\\#200".as_slice()
        );
    }

    #[test]
    fn perm_strings() {
        assert_eq!(perm_string(0o040755), "drwxr-xr-x");
        assert_eq!(perm_string(0o104755), "-rwsr-xr-x");
        assert_eq!(perm_string(0o041777), "drwxrwxrwt");
    }
}
