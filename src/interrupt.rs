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
        // SAFETY: write(2) on a valid buffer; async-signal-safe.
        unsafe { libc::write(2, l.as_ptr().cast(), l.len()) };
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
            "rsync error: {} (code {code}) at {}({}) [{who}=rrsync-{}]\n",
            crate::exit::text(code),
            file!().rsplit('/').next().unwrap_or("interrupt.rs"),
            line!(),
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes()
    };
    let _ = LINES.set([
        line(crate::exit::RERR_SIGNAL),
        line(crate::exit::RERR_SIGNAL1),
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
