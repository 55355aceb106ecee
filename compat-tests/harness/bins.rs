//! Which binaries play which part: the stock rsync client/daemon, the 3.2.7
//! client, and "ours" (rrsync, or stock again in self-test mode).

use std::path::PathBuf;

/// Stock rsync 3.5.0 (client and reference daemon).
pub const STOCK_RSYNC: &str = "/usr/bin/rsync";

/// Default location of the rsync 3.2.7 client (override with `RSYNC_327`).
pub const DEFAULT_RSYNC_327: &str = "/opt/rsync327/usr/bin/rsync";

/// True when `RRSYNC_COMPAT_SELF=1`: "ours" is stock rsync, so every case
/// must pass and the harness itself is what is being tested.
pub fn self_mode() -> bool {
    std::env::var_os("RRSYNC_COMPAT_SELF").is_some_and(|v| v == "1")
}

/// The stock rsync binary.
pub fn stock() -> PathBuf {
    PathBuf::from(STOCK_RSYNC)
}

/// The rsync 3.2.7 client; panics with a clear message when it is missing.
pub fn rsync_327() -> PathBuf {
    // The test command unpacks it under target/ (compat-tests/run-all.sh).
    let unpacked =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/rsync-3.2.7/usr/bin/rsync");
    let path = std::env::var_os("RSYNC_327")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if unpacked.is_file() {
                unpacked
            } else {
                PathBuf::from(DEFAULT_RSYNC_327)
            }
        });
    assert!(
        path.is_file(),
        "this case needs the rsync 3.2.7 client, not found at {} (set RSYNC_327=/path/to/rsync-3.2.7)",
        path.display()
    );
    path
}

/// The daemon under test: `RRSYNC_COMPAT_OURS` if set (e.g. a release
/// build), stock rsync in self mode, else the rrsync this crate builds.
pub fn ours() -> PathBuf {
    if self_mode() {
        stock()
    } else if let Some(p) = std::env::var_os("RRSYNC_COMPAT_OURS").filter(|p| !p.is_empty()) {
        PathBuf::from(p)
    } else {
        PathBuf::from(env!("CARGO_BIN_EXE_rrsync"))
    }
}

/// Human label for "ours" in messages.
pub fn ours_label() -> &'static str {
    if self_mode() {
        "ours(stock, self mode)"
    } else {
        "ours(rrsync)"
    }
}
