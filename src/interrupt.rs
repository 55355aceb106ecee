//! Fatal signals in a transfer (upstream's `sig_int`, `sigusr1_handler`
//! and `exit_cleanup`): SIGINT, SIGTERM or SIGHUP removes the temp files
//! being written ([`crate::fs::cleanup`]), prints rsync's "received
//! SIGINT, SIGTERM, or SIGHUP (code 20)" line on stderr and exits with
//! code 20; SIGUSR1 (what a failing client or parent sends its server)
//! does the same with "received SIGUSR1 (code 19)" and 19.
//!
//! Installed by the client, `--server` and each daemon connection; the
//! daemon's listener and `push --watch` have their own handlers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nix::libc;

/// The lines printed by the handler, for SIGINT/SIGTERM/SIGHUP and for
/// SIGUSR1 (built before it is installed).
static LINES: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
/// The handler ran already (a second signal waits for the first's exit).
static FIRED: AtomicBool = AtomicBool::new(false);
/// The process is ending on an error of its own (upstream's exit_cleanup
/// ignores SIGUSR1 from then on: the peer's kill must not add a line).
static EXITING: AtomicBool = AtomicBool::new(false);

/// This process reports its own error and ends: a SIGUSR1 from now on is
/// ignored (upstream _exit_cleanup sets it to SIG_IGN).
pub fn exiting() {
    EXITING.store(true, Ordering::Release);
}

extern "C" fn on_fatal(sig: libc::c_int) {
    if sig == libc::SIGUSR1 && EXITING.load(Ordering::Acquire) {
        return;
    }
    if FIRED.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::fs::cleanup::remove_all();
    let usr1 = sig == libc::SIGUSR1;
    if let Some(lines) = LINES.get() {
        let l = &lines[usize::from(usr1)];
        if !l.is_empty() {
            // SAFETY: write(2) on a valid buffer; async-signal-safe.
            unsafe { libc::write(2, l.as_ptr().cast(), l.len()) };
        }
    }
    let code = if usr1 {
        crate::exit::RERR_SIGNAL1
    } else {
        crate::exit::RERR_SIGNAL
    };
    // SAFETY: _exit is async-signal-safe and ends the whole process.
    unsafe { libc::_exit(code) };
}

/// Handle SIGINT, SIGTERM, SIGHUP and SIGUSR1 for a transfer run as `who`
/// ("client", "sender", "receiver", "daemon").
pub fn install(who: &str) {
    let line = |code: i32| {
        format!(
            "{}\n",
            crate::exit::line(code, "interrupt.rs", line!(), who)
        )
        .into_bytes()
    };
    // A server's SIGUSR1 comes from its client giving up: stock's line goes
    // into the multiplexed stream, which nobody reads any more, so none is
    // seen; ours would reach the client's terminal through stderr.
    let server = matches!(who, "sender" | "receiver");
    let _ = LINES.set([
        line(crate::exit::RERR_SIGNAL),
        if server {
            Vec::new()
        } else {
            line(crate::exit::RERR_SIGNAL1)
        },
    ]);
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_fatal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        // SAFETY: the handler only uses async-signal-safe calls.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

/// `--stop-after` / `--stop-at` (upstream's check in perform_io): at
/// `deadline` (Unix time) the transfer stops as stock's does. A sending
/// client says "stopping at requested limit" and exits 30; a receiving
/// client's receiver says so, and its generator, left without its partner,
/// reports the lost connection and the run exits 12. Temp files go (or
/// stay, with `--partial`) as on a signal. `received` counts what was read.
pub fn stop_at(
    deadline: i64,
    am_sender: bool,
    received: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    let spawn = std::thread::Builder::new().name("stop-at".into()).spawn(move || {
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let left = deadline as f64 - now;
            if left <= 0.0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs_f64(left.min(60.0)));
        }
        if FIRED.swap(true, Ordering::AcqRel) {
            return;
        }
        exiting();
        crate::fs::cleanup::remove_all();
        let timeout = crate::exit::RERR_TIMEOUT;
        let role = if am_sender { "sender" } else { "receiver" };
        let mut text = format!(
            "stopping at requested limit\n{}\n",
            crate::exit::line(timeout, "io.c", 927, role)
        );
        let code = if am_sender {
            timeout
        } else {
            let stream = crate::exit::RERR_STREAMIO;
            text.push_str(&format!(
                "rsync: connection unexpectedly closed ({} bytes received so far) [generator]\n{}\n",
                received.load(Ordering::Relaxed),
                crate::exit::line(stream, "io.c", 285, "generator")
            ));
            stream
        };
        // SAFETY: write(2) of a valid buffer, then _exit ends the process
        // (the other threads are mid-transfer and are not waited for).
        unsafe {
            libc::write(2, text.as_ptr().cast(), text.len());
            libc::_exit(code);
        }
    });
    if let Err(e) = spawn {
        tracing::warn!("--stop-at: no timer thread: {e}");
    }
}
