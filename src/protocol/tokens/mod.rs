//! The delta token stream (upstream: token.c), plain and compressed, both
//! directions.
//!
//! This module owns the byte format that carries a file's delta from the
//! sender to the receiver (protocol doc §9.2 and §9.4): literal data, copies
//! of basis blocks, and the end-of-file marker, either as plain int32 tokens
//! or in the compressed byte-oriented format (`zlib`, `zlibx`, `zstd`,
//! `lz4`). It is sans-I/O: the encoder appends to a `Vec<u8>`, the decoder
//! pulls from any [`std::io::Read`].
//!
//! * [`TokenEncoder`] (sender side): one per session. It mirrors upstream's
//!   `send_token()` state: runs of consecutive blocks are coalesced into
//!   `TOKENRUN_*` tokens, literal data is flushed before every token, the
//!   zstd stream lives for the whole session, deflate is reset per file, and
//!   for legacy `zlib` every matched block is fed into the compressor's
//!   history (the receiver mirrors that in [`TokenDecoder::see_block`]).
//! * [`TokenDecoder`] (receiver side): one per session, yields [`Token`]s.
//!   Every length read from the peer is bounded; no byte sequence panics.

mod decoder;
mod encoder;

#[cfg(test)]
mod tests;

pub use decoder::{decoder_fuzz_entry, Token, TokenDecoder};
pub use encoder::TokenEncoder;

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

impl CompressKind {
    /// Resolves `--compress-level` for this algorithm
    /// (upstream: token.c `init_compression_level()`).
    ///
    /// `level` is the user's value (`None` = not given). Returns the kind
    /// actually in effect (a level of 0 with zlib/zlibx turns compression
    /// off, as upstream does) and the clamped level to hand to
    /// [`TokenEncoder::new`].
    pub fn resolve_level(self, level: Option<i32>) -> (CompressKind, i32) {
        match self {
            CompressKind::None => (CompressKind::None, 0),
            CompressKind::Zlib | CompressKind::Zlibx => match level {
                None | Some(-1) => (self, ZLIB_DEFAULT_LEVEL),
                Some(0) => (CompressKind::None, 0),
                Some(l) => (self, l.clamp(1, 9)),
            },
            CompressKind::Zstd => match level {
                None | Some(0) => (self, zstd::DEFAULT_COMPRESSION_LEVEL),
                Some(l) => {
                    let min = zstd::zstd_safe::min_c_level();
                    let max = zstd::zstd_safe::max_c_level();
                    (self, l.clamp(min, max))
                }
            },
            CompressKind::Lz4 => (self, 0),
        }
    }
}

/// Upstream's default zlib level (`Z_DEFAULT_COMPRESSION` resolved to 6).
const ZLIB_DEFAULT_LEVEL: i32 = 6;

/// Maximum literal bytes per plain token (upstream `CHUNK_SIZE`).
pub const CHUNK_SIZE: usize = 32 * 1024;

/// Maximum payload of one `DEFLATED_DATA` chunk (upstream `MAX_DATA_COUNT`).
pub const MAX_DATA_COUNT: usize = 16383;

/// Largest block index the compressed format can carry (upstream
/// `MAX_TOKEN_INDEX`); also enforced for plain tokens by the encoder.
pub const MAX_BLOCK_INDEX: u32 = 0x7fff_fffe;

/// Upper bound on the length of one [`Token::Literal`] returned by the
/// decoder: `LZ4_compressBound(CHUNK_SIZE)`, the largest output upstream
/// accepts from one lz4 chunk. Other kinds return at most [`CHUNK_SIZE`].
pub const MAX_LITERAL_LEN: usize = CHUNK_SIZE + CHUNK_SIZE / 255 + 16;

/// Flag bytes of the compressed format (upstream token.c).
pub(crate) mod flag {
    /// End of this file's data.
    pub const END: u8 = 0x00;
    /// Followed by an int32 absolute block number.
    pub const TOKEN_LONG: u8 = 0x20;
    /// As `TOKEN_LONG`, then a 16-bit run count.
    pub const TOKENRUN_LONG: u8 = 0x21;
    /// `+ hi6`, then `lo8`: that many compressed bytes follow.
    pub const DEFLATED_DATA: u8 = 0x40;
    /// `+ r` (0..=63): block `last + r`.
    pub const TOKEN_REL: u8 = 0x80;
    /// `+ r`, then a 16-bit run count.
    pub const TOKENRUN_REL: u8 = 0xc0;
}

/// Errors of the token layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Reading the token stream failed (including truncation).
    #[error("reading the token stream: {0}")]
    Io(#[from] std::io::Error),
    /// A compressed-stream flag byte that no rsync sender produces.
    #[error("invalid flag byte {0:#04x} in compressed token stream")]
    BadFlag(u8),
    /// A block number or run outside `0..=MAX_BLOCK_INDEX`, or a zero run.
    #[error("invalid token number in compressed stream")]
    BadTokenNumber,
    /// The peer's compressed data did not decompress.
    #[error("{kind:?} decompression failed: {msg}")]
    Decompress {
        /// The algorithm in use.
        kind: CompressKind,
        /// What went wrong.
        msg: String,
    },
    /// Our own compressor failed (should not happen).
    #[error("{kind:?} compression failed: {msg}")]
    Compress {
        /// The algorithm in use.
        kind: CompressKind,
        /// What went wrong.
        msg: String,
    },
    /// The encoder was asked to send a block index it cannot represent.
    #[error("block index {0} is out of range for the token stream")]
    BlockIndex(u32),
}

/// Size of the deflate window: only this much history can be referenced.
const DEFLATE_WINDOW: usize = 32 * 1024;

/// The part of a matched block that legacy `zlib` feeds into the deflate
/// history, as both sides see it (upstream: token.c `send_deflated_token()`
/// and `see_deflate_token()`).
///
/// Upstream feeds the block in pieces of at most 0xFFFF bytes. Before
/// protocol 31 a bug feeds the *first* piece again for every later piece of
/// a block longer than 0xFFFF, and both sides reproduce it. Only the last
/// [`DEFLATE_WINDOW`] bytes of what is fed can ever be referenced, so that
/// tail is all we compute; feeding just the tail leaves the same window.
pub(crate) fn zlib_history_tail(block: &[u8], protocol: u8) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    const PIECE: usize = 0xffff;
    let len = block.len();
    if protocol >= 31 || len <= PIECE {
        return Cow::Borrowed(&block[len.saturating_sub(DEFLATE_WINDOW)..]);
    }
    // Pieces: block[..PIECE] (len / PIECE times), then block[..len % PIECE].
    let rem = len % PIECE;
    if rem >= DEFLATE_WINDOW {
        return Cow::Borrowed(&block[rem - DEFLATE_WINDOW..rem]);
    }
    if rem == 0 {
        return Cow::Borrowed(&block[PIECE - DEFLATE_WINDOW..PIECE]);
    }
    let mut tail = Vec::with_capacity(DEFLATE_WINDOW);
    tail.extend_from_slice(&block[PIECE - (DEFLATE_WINDOW - rem)..PIECE]);
    tail.extend_from_slice(&block[..rem]);
    Cow::Owned(tail)
}
