//! Fatal signals in a transfer (upstream's `sig_int` and `exit_cleanup`):
//! SIGINT, SIGTERM or SIGHUP removes the temp files being written
//! ([`crate::fs::cleanup`]), prints rsync's "received SIGINT, SIGTERM, or
//! SIGHUP (code 20)" line on stderr and exits with code 20.
//!
//! Installed by the client, `--server` and each daemon connection; the
//! daemon's listener and `push --watch` have their own handlers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nix::libc;

/// The line printed by the handler (built before it is installed).
static LINE: OnceLock<Vec<u8>> = OnceLock::new();
/// The handler ran already (a second signal waits for the first's exit).
static FIRED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_fatal(_sig: libc::c_int) {
    if FIRED.swap(true, Ordering::AcqRel) {
        return;
    }
    crate::fs::cleanup::remove_all();
    if let Some(l) = LINE.get() {
        // SAFETY: write(2) on a valid buffer; async-signal-safe.
        unsafe { libc::write(2, l.as_ptr().cast(), l.len()) };
    }
    // SAFETY: _exit is async-signal-safe and ends the whole process.
    unsafe { libc::_exit(crate::exit::RERR_SIGNAL) };
}

/// Handle SIGINT, SIGTERM and SIGHUP for a transfer run as `who`
/// ("client", "sender", "receiver", "daemon").
pub fn install(who: &str) {
    let _ = LINE.set(
        format!(
            "rsync error: received SIGINT, SIGTERM, or SIGHUP (code {}) at {}({}) [{who}=rrsync-{}]\n",
            crate::exit::RERR_SIGNAL,
            file!().rsplit('/').next().unwrap_or("interrupt.rs"),
            line!(),
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes(),
    );
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_fatal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only uses async-signal-safe calls.
        let _ = unsafe { sigaction(sig, &act) };
    }
}
