//! Checksums: the rolling block checksum and the strong digests (MD4 in its
//! protocol-dependent variants, MD5, XXH64, XXH3, XXH128) behind one type.
//!
//! Pure computation: no I/O.

pub mod rolling;
pub mod strong;

pub use strong::{ChecksumKind, StrongHasher};
