//! The rsync daemon: rsyncd.conf (`config`), the listener (`listener`) and
//! the per-connection session (`session`: greeting, module, arguments,
//! then the sender role) and `pre-xfer exec` (`xfer_exec`).

pub mod access;
pub mod auth;
pub mod config;
pub mod listener;
pub mod log;
pub mod paths;
pub mod proxy;
pub mod refuse;
pub mod session;
pub mod xfer_exec;

pub use listener::{run_daemon, run_rsh_daemon};
