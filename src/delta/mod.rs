//! Delta transfer: the block-size rule and block sums (`sums`), the
//! sender-side matcher (`matcher`) and the receiver-side patcher (`patcher`).
//!
//! Pure computation over `std::io::Read`/`Write`/`Seek` and slices: this
//! layer never opens files, touches sockets or uses an async runtime. Wire encoding
//! of sum headers and tokens belongs to `protocol`.

pub mod matcher;
pub mod patcher;
pub mod sums;

#[cfg(test)]
mod testutil;

pub use matcher::{match_file, MatchOutcome, MatchStats, Matcher, TokenSink};
pub use patcher::Patcher;
pub use sums::{generate_sums, generate_sums_with, BlockSums, SumHead};

/// Largest literal run handed to a [`TokenSink`] in one call, and the
/// largest uncompressed literal token on the wire (upstream: CHUNK_SIZE).
pub const CHUNK_SIZE: usize = 32 * 1024;

/// Errors of the delta layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// Reading the source/basis or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The file is too large (or has a negative length) for block sums
    /// (upstream: "file is too large for checksum sending").
    #[error("file length {0} cannot be described by a sum header")]
    FileTooLarge(i64),
    /// A `--block-size` outside what the protocol allows.
    #[error("invalid block size {block_size} (maximum {max})")]
    InvalidBlockSize {
        /// The requested block size.
        block_size: u32,
        /// The protocol's maximum.
        max: i32,
    },
    /// A sum header field out of bounds (upstream: io.c `read_sum_head`).
    #[error("invalid sum header: {field} = {value}")]
    InvalidSumHead {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// More block sums pushed than the header's count, or a strong sum
    /// shorter than its `s2length`.
    #[error("block sums do not fit their header: {0}")]
    SumsMismatch(&'static str),
    /// A block token named a block the header does not have.
    #[error("block index {index} out of range (count {count})")]
    BlockIndexOutOfRange {
        /// The index from the token.
        index: u32,
        /// The header's block count.
        count: i32,
    },
    /// A block token arrived but there is no basis file.
    #[error("block token {0} without a basis file")]
    NoBasis(u32),
    /// The basis file ended before the data of a referenced block.
    #[error("basis file too short for block {0}")]
    BasisTooShort(u32),
}
