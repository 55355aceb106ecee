//! Command line: dispatch between daemon, server, client and push modes.

/// Entry point used by `main`; returns the process exit code.
pub fn run(_args: Vec<std::ffi::OsString>) -> i32 {
    0
}
