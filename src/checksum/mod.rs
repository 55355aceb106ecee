//! Checksums: the rolling block checksum and the strong digests (MD4 in its
//! protocol-dependent variants, MD5, XXH64, XXH3, XXH128) behind one type.
//!
//! Pure computation over slices and `std::io::Read`: no files, no sockets.

pub mod rolling;
pub mod strong;

pub use rolling::{checksum1, Rolling};
pub use strong::{
    block_sum, file_checksum, ChecksumError, ChecksumKind, DigestBuf, StrongHasher, MAX_DIGEST_LEN,
};
