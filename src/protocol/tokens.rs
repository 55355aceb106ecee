//! The delta token stream (upstream: token.c), plain and compressed.

/// The token stream compression in use for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressKind {
    /// No compression: plain int32 tokens.
    None,
    /// Legacy "zlib" (deflate with matched-block history insertion).
    Zlib,
    /// "zlibx": deflate without history insertion.
    Zlibx,
    /// "zstd": one stream for the whole session.
    Zstd,
    /// "lz4": independent blocks.
    Lz4,
}
