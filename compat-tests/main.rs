//! Interop tests: stock rsync against rrsync, compared side by side.
//!
//! One integration binary (`cargo test --test compat`), a module per scenario
//! family. Every case starts a stock `rsync --daemon` and ours
//! (`rrsync --daemon`) on the same rsyncd.conf, runs the same stock client
//! against both and compares exit codes, destination trees and output.
//!
//! Environment:
//! * `RRSYNC_COMPAT_SELF=1`: "ours" is stock rsync too (validates the harness;
//!   `expected-failures.txt` is ignored in this mode).
//! * `RSYNC_327`: path of the rsync 3.2.7 client (default
//!   `/opt/rsync327/usr/bin/rsync`).
//! * `RRSYNC_COMPAT_OURS`: daemon binary under test (default: the rrsync
//!   built with this test).
//! * `RRSYNC_COMPAT_TIMEOUT`: seconds one client run may take (default 30).
//! * `RRSYNC_COMPAT_KEEP=1`: keep temporary directories for inspection.
//! * `TMPDIR`: where temporary trees go (default `/dev/shm`).
//!
//! Known divergences live in `compat-tests/expected-failures.txt`.

#[macro_use]
mod harness;

mod bad_input;
mod client;
mod connect_via;
mod daemon_load;
mod daemon_module;
mod daemon_ops;
mod fanout;
mod full_disk;
mod interrupt;
mod malicious_push;
mod option_errors;
mod output_levels;
mod pull;
mod push;
mod remove_source;
mod service_units;
mod xattrs;
