//! rsync's exit codes (upstream: errcode.h) and their texts.

/// Success.
pub const RERR_OK: i32 = 0;
/// Syntax or usage error.
pub const RERR_SYNTAX: i32 = 1;
/// Protocol incompatibility.
pub const RERR_PROTOCOL: i32 = 2;
/// Errors selecting input/output files, dirs.
pub const RERR_FILESELECT: i32 = 3;
/// Requested action not supported.
pub const RERR_UNSUPPORTED: i32 = 4;
/// Error starting client-server protocol.
pub const RERR_STARTCLIENT: i32 = 5;
/// Error in socket I/O.
pub const RERR_SOCKETIO: i32 = 10;
/// Error in file I/O.
pub const RERR_FILEIO: i32 = 11;
/// Error in rsync protocol data stream.
pub const RERR_STREAMIO: i32 = 12;
/// Error in IPC code (fork, pipe).
pub const RERR_IPC: i32 = 14;
/// Received SIGUSR1 (a parent or peer process ending us).
pub const RERR_SIGNAL1: i32 = 19;
/// Received SIGINT, SIGTERM, or SIGHUP.
pub const RERR_SIGNAL: i32 = 20;
/// Some files/attrs were not transferred.
pub const RERR_PARTIAL: i32 = 23;
/// Some files vanished before they could be transferred.
pub const RERR_VANISHED: i32 = 24;
/// Timeout in data send/receive.
pub const RERR_TIMEOUT: i32 = 30;
/// Skipped some deletes due to --max-delete.
pub const RERR_DEL_LIMIT: i32 = 25;
/// Timeout waiting for the daemon connection.
pub const RERR_CONTIMEOUT: i32 = 35;

/// rsync's last line for an exit `code` (upstream log_exit): "rsync error:
/// TEXT (code N) at FILE(LINE) [ROLE=rrsync-VERSION]", a warning for
/// vanished files.
pub fn line(code: i32, file: &str, at: u32, role: &str) -> String {
    let kind = if code == RERR_VANISHED {
        "warning"
    } else {
        "error"
    };
    format!(
        "rsync {kind}: {} (code {code}) at {file}({at}) [{role}=rrsync-{}]",
        text(code),
        env!("CARGO_PKG_VERSION")
    )
}

/// The text rsync prints for a code.
pub fn text(code: i32) -> &'static str {
    match code {
        RERR_SYNTAX => "syntax or usage error",
        RERR_PROTOCOL => "protocol incompatibility",
        RERR_FILESELECT => "errors selecting input/output files, dirs",
        RERR_UNSUPPORTED => "requested action not supported",
        RERR_STARTCLIENT => "error starting client-server protocol",
        RERR_SOCKETIO => "error in socket IO",
        RERR_FILEIO => "error in file IO",
        RERR_STREAMIO => "error in rsync protocol data stream",
        RERR_SIGNAL1 => "received SIGUSR1",
        RERR_SIGNAL => "received SIGINT, SIGTERM, or SIGHUP",
        RERR_PARTIAL => "some files/attrs were not transferred (see previous errors)",
        RERR_VANISHED => "some files vanished before they could be transferred",
        RERR_TIMEOUT => "timeout in data send/receive",
        RERR_DEL_LIMIT => "the --max-delete limit stopped deletions",
        RERR_CONTIMEOUT => "timeout waiting for daemon connection",
        RERR_IPC => "error in IPC code",
        13 => "errors with program diagnostics",
        124 => "remote shell failed",
        125 => "remote shell killed",
        126 => "remote command could not be run",
        127 => "remote command not found",
        _ => "unexplained error",
    }
}
