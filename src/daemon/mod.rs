//! The rsync daemon: rsyncd.conf, listener, per-connection session.

pub mod config;
