//! rrsync: a Rust reimplementation of rsync.
//!
//! The library is layered so that each layer can be tested without the ones
//! above it (see `docs/design.md`):
//! `protocol` (sans-I/O wire codecs), `checksum`, `delta`, `filter`, `flist`,
//! `fs`, `role` (sender/generator/receiver), `daemon`, `cli`.

pub mod checksum;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod delta;
pub mod exit;
pub mod filter;
pub mod flist;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod interrupt;
pub mod iobuf;
pub mod logging;
pub mod protocol;
pub mod push;
pub mod role;
pub mod sockopts;
#[cfg(test)]
mod testing;
