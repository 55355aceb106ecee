//! Sans-I/O wire format: pure encode/decode, no sockets, no files.

pub mod tokens;
