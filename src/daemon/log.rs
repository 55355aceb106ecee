//! The daemon's log (upstream log.c: log_init, logit, rwrite's FLOG path):
//! `log file` (or `--log-file`), else syslog with `syslog facility` and
//! `syslog tag`. Each line is `YYYY/MM/DD HH:MM:SS [PID] message`, control
//! characters escaped as `\#ooo` so a file name cannot forge log lines.
//! The listener and every per-connection process write to it (appending).

use std::io::Write;
use std::sync::Mutex;

/// Where log lines go.
enum Sink {
    File(Mutex<std::fs::File>),
    Syslog,
    Nowhere,
}

/// The open log and the `log file` name it was opened for ("" = syslog).
static LOG: Mutex<Option<(String, Sink)>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<(String, Sink)>> {
    match LOG.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Open the log once: `path` (the `--log-file` option, else `log file`),
/// else syslog. A log file that cannot be opened falls back to syslog, as
/// upstream does.
pub fn init(path: Option<&str>, syslog_facility: i32, syslog_tag: Option<&str>) {
    let mut g = lock();
    if g.is_none() {
        *g = Some(open(path.unwrap_or(""), syslog_facility, syslog_tag));
    }
}

/// Entering a module (upstream log_init(1)): a module whose `log file`
/// differs from the one in use gets its own (its empty one means syslog).
pub fn for_module(path: Option<&str>, syslog_facility: i32, syslog_tag: Option<&str>) {
    let want = path.unwrap_or("");
    let mut g = lock();
    if g.as_ref().is_some_and(|(cur, _)| cur == want) {
        return;
    }
    *g = Some(open(want, syslog_facility, syslog_tag));
}

fn open(path: &str, syslog_facility: i32, syslog_tag: Option<&str>) -> (String, Sink) {
    if !path.is_empty() {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path);
        nix::sys::stat::umask(old);
        match f {
            Ok(f) => return (path.to_string(), Sink::File(Mutex::new(f))),
            Err(e) => tracing::warn!("log file {path}: {e}; logging to syslog"),
        }
    }
    let tag = std::ffi::CString::new(syslog_tag.unwrap_or("rsyncd")).unwrap_or_default();
    // openlog keeps the pointer: leak the tag for the life of the process.
    let tag: &'static std::ffi::CStr = Box::leak(tag.into_boxed_c_str());
    // SAFETY: a valid, 'static NUL-terminated ident string.
    unsafe {
        nix::libc::openlog(
            tag.as_ptr(),
            nix::libc::LOG_PID | nix::libc::LOG_NDELAY,
            syslog_facility,
        )
    };
    (path.to_string(), Sink::Syslog)
}

/// Logging off (tests of parts that run without a daemon).
pub fn disable() {
    *lock() = Some((String::new(), Sink::Nowhere));
}

/// One log line (a trailing newline is optional).
pub fn line(msg: &str) {
    bytes(msg.as_bytes());
}

/// One log line from raw bytes (already escaped, or escaped here).
pub fn bytes(msg: &[u8]) {
    let g = lock();
    let Some((_, sink)) = g.as_ref() else {
        return;
    };
    let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
    let mut body = Vec::with_capacity(msg.len() + 32);
    for &b in msg {
        if b < b' ' && b != b'\t' {
            body.extend_from_slice(format!("\\#{b:03o}").as_bytes());
        } else {
            body.push(b);
        }
    }
    match sink {
        Sink::File(f) => {
            let mut l = crate::role::log::timestring(now()).into_bytes();
            l.extend_from_slice(format!(" [{}] ", std::process::id()).as_bytes());
            l.extend_from_slice(&body);
            l.push(b'\n');
            let mut f = match f.lock() {
                Ok(f) => f,
                Err(p) => p.into_inner(),
            };
            let _ = f.write_all(&l);
        }
        Sink::Syslog => {
            if let Ok(c) = std::ffi::CString::new(body) {
                // SAFETY: "%s" with one valid NUL-terminated string argument.
                unsafe { nix::libc::syslog(nix::libc::LOG_INFO, c"%s".as_ptr(), c.as_ptr()) };
            }
        }
        Sink::Nowhere => {}
    }
}

/// A transfer-log sink for `role::log::ClientLog` (`transfer logging`).
pub fn xfer_sink(msg: &[u8]) {
    bytes(msg);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
