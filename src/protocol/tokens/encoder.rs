//! Sender side of the token stream (upstream: token.c `send_token()` and the
//! per-algorithm `simple_send_token`, `send_deflated_token`,
//! `send_zstd_token`, `send_compressed_token`).
//!
//! The encoder is driven by three calls per file: [`TokenEncoder::literal`]
//! for unmatched data (any number of times, any sizes), [`TokenEncoder::matched`]
//! for each matched basis block, and [`TokenEncoder::end_file`]. Output is
//! appended to a caller-supplied `Vec<u8>`, ready for the (multiplexed) wire.
//!
//! Behaviour that matters to a stock receiver, mirrored here:
//! * compressed literal data is flushed (zlib: `Z_SYNC_FLUSH` with the
//!   trailing `00 00 FF FF` cut; zstd: `ZSTD_e_flush`; lz4: pending block
//!   compressed) before every block token and before `END_FLAG`, and only if
//!   literal data was given since the last flush;
//! * a block token is held back until the next call shows whether the run of
//!   consecutive blocks continues (at most 65536 blocks per run token); a
//!   pending run is written before any following literal data;
//! * the relative base (`last_run_end`) and the deflate state restart with
//!   each file; the zstd context lives for the whole session;
//! * legacy zlib: each matched block goes into the deflate history
//!   (compressed with a sync flush, output discarded, which is exactly what
//!   upstream does when built against a system zlib without
//!   `Z_INSERT_ONLY`), including the pre-31 repeated-piece quirk.

use flate2::{Compress, Compression, FlushCompress};
use zstd::stream::raw::{Encoder as ZstdEncoder, InBuffer, Operation, OutBuffer};

use super::{
    flag, zlib_history_tail, CompressKind, TokenError, CHUNK_SIZE, MAX_BLOCK_INDEX, MAX_DATA_COUNT,
};

/// The deflate sync-flush marker that upstream strips from the wire.
const SYNC_MARKER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// A run of consecutive blocks not yet written.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u32,
    last: u32,
}

enum Codec {
    Plain,
    Deflate(Box<Compress>),
    Zstd(Box<ZstdEncoder<'static>>),
    Lz4,
}

/// Encodes the delta token stream for one session (upstream: token.c
/// `send_token()`); see the module docs for the format rules it follows.
pub struct TokenEncoder {
    kind: CompressKind,
    protocol: u8,
    codec: Codec,
    /// Init failure of the zstd context, reported on first use.
    init_error: Option<String>,
    /// A file is in progress (upstream: `last_token != -1`).
    in_file: bool,
    /// Pending run of block tokens.
    run: Option<Run>,
    /// Last block of the previously written run (the relative base).
    last_run_end: u32,
    /// Literal data went into the compressor since the last flush.
    flush_pending: bool,
    /// Deflate: compressed bytes not yet framed. Lz4: raw literal bytes not
    /// yet compressed.
    pending: Vec<u8>,
    /// Scratch output buffer (zstd output, lz4 blocks, discarded deflate).
    scratch: Vec<u8>,
}

impl std::fmt::Debug for TokenEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEncoder")
            .field("kind", &self.kind)
            .field("protocol", &self.protocol)
            .field("in_file", &self.in_file)
            .field("run", &self.run)
            .field("last_run_end", &self.last_run_end)
            .field("flush_pending", &self.flush_pending)
            .finish_non_exhaustive()
    }
}

impl TokenEncoder {
    /// Creates the session's encoder.
    ///
    /// `level` is the resolved compression level (see
    /// [`CompressKind::resolve_level`]; `None` = the algorithm's default);
    /// out-of-range values are clamped. `protocol` is the negotiated
    /// protocol version (it selects the pre-31 zlib history quirk).
    pub fn new(kind: CompressKind, level: Option<i32>, protocol: u8) -> Self {
        let (_, default_level) = kind.resolve_level(None);
        let level = match level {
            Some(l) => kind.resolve_level(Some(l)).1,
            None => default_level,
        };
        let mut init_error = None;
        let codec = match kind {
            CompressKind::None => Codec::Plain,
            CompressKind::Zlib | CompressKind::Zlibx => {
                // Raw deflate, 32 KiB window (upstream: windowBits -15).
                let level = u32::try_from(level.clamp(1, 9)).unwrap_or(6);
                Codec::Deflate(Box::new(Compress::new(Compression::new(level), false)))
            }
            CompressKind::Zstd => match ZstdEncoder::new(level) {
                Ok(e) => Codec::Zstd(Box::new(e)),
                Err(e) => {
                    init_error = Some(e.to_string());
                    Codec::Plain
                }
            },
            CompressKind::Lz4 => Codec::Lz4,
        };
        TokenEncoder {
            kind,
            protocol,
            codec,
            init_error,
            in_file: false,
            run: None,
            last_run_end: 0,
            flush_pending: false,
            pending: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// An encoder for files whose compression is skipped (upstream
    /// set_compression with a lone `*` in the daemon's `dont compress`):
    /// zlib and zlibx deflate at level 0 (stored blocks, still in deflate
    /// token form); zstd and lz4 keep their level, as upstream's do.
    pub fn skipping_compression(kind: CompressKind, level: Option<i32>, protocol: u8) -> Self {
        let mut e = Self::new(kind, level, protocol);
        if matches!(kind, CompressKind::Zlib | CompressKind::Zlibx) {
            e.codec = Codec::Deflate(Box::new(Compress::new(Compression::new(0), false)));
        }
        e
    }

    /// The algorithm this encoder speaks.
    pub fn kind(&self) -> CompressKind {
        self.kind
    }

    /// Whether literal data goes out uncompressed, as a 4-byte length
    /// before each piece of at most `CHUNK_SIZE` bytes (what
    /// [`TokenEncoder::literal`] writes then), with nothing held back.
    pub fn is_plain(&self) -> bool {
        self.kind == CompressKind::None && matches!(self.codec, Codec::Plain)
    }

    /// Whether the caller may send block matches. Always true: every kind,
    /// including legacy zlib with its history insertion, is supported.
    pub fn emits_matches(&self) -> bool {
        true
    }

    /// Sends literal (unmatched) file data. Any length; empty is a no-op.
    pub fn literal(&mut self, out: &mut Vec<u8>, data: &[u8]) -> Result<(), TokenError> {
        if data.is_empty() {
            return Ok(());
        }
        self.check_init()?;
        if matches!(self.codec, Codec::Plain) {
            for piece in data.chunks(CHUNK_SIZE) {
                // piece.len() <= CHUNK_SIZE, so the cast cannot truncate.
                out.extend_from_slice(&(piece.len() as i32).to_le_bytes());
                out.extend_from_slice(piece);
            }
            return Ok(());
        }
        self.start_file();
        if let Some(run) = self.run.take() {
            self.write_run(out, run);
        }
        let kind = self.kind;
        match &mut self.codec {
            Codec::Plain => {}
            Codec::Deflate(c) => {
                for piece in data.chunks(CHUNK_SIZE) {
                    deflate_into(c, piece, FlushCompress::None, &mut self.pending, kind)?;
                    // Keep 4 bytes back: they may be the sync marker to cut.
                    frame_full_chunks(out, &mut self.pending, SYNC_MARKER.len());
                }
            }
            Codec::Zstd(z) => {
                zstd_feed(z, data, out, &mut self.scratch, kind)?;
            }
            Codec::Lz4 => {
                self.pending.extend_from_slice(data);
                lz4_blocks(out, &mut self.pending, &mut self.scratch, false, kind)?;
            }
        }
        self.flush_pending = true;
        Ok(())
    }

    /// Sends a match of basis block `block_index`; `block_data` is its
    /// content (used by legacy zlib for the history insertion; other kinds
    /// ignore it, so an empty slice is fine for them).
    pub fn matched(
        &mut self,
        out: &mut Vec<u8>,
        block_index: u32,
        block_data: &[u8],
    ) -> Result<(), TokenError> {
        if block_index > MAX_BLOCK_INDEX {
            return Err(TokenError::BlockIndex(block_index));
        }
        self.check_init()?;
        if matches!(self.codec, Codec::Plain) {
            // -(i+1); i <= 0x7ffffffe so this fits an i32.
            let t = -(i64::from(block_index) + 1);
            out.extend_from_slice(&(t as i32).to_le_bytes());
            return Ok(());
        }
        self.start_file();
        self.flush_literal(out)?;
        self.run = match self.run {
            Some(r)
                if r.last.checked_add(1) == Some(block_index)
                    && block_index - r.start <= 0xffff =>
            {
                Some(Run {
                    start: r.start,
                    last: block_index,
                })
            }
            Some(r) => {
                self.write_run(out, r);
                Some(Run {
                    start: block_index,
                    last: block_index,
                })
            }
            None => Some(Run {
                start: block_index,
                last: block_index,
            }),
        };
        if self.kind == CompressKind::Zlib && !block_data.is_empty() {
            let tail = zlib_history_tail(block_data, self.protocol);
            if let Codec::Deflate(c) = &mut self.codec {
                self.scratch.clear();
                deflate_into(c, &tail, FlushCompress::Sync, &mut self.scratch, self.kind)?;
                // The receiver rebuilds this history itself; nothing is sent.
                self.scratch.clear();
            }
        }
        Ok(())
    }

    /// Ends the current file: flushes literal data and any pending run, then
    /// writes the end marker. The next call starts a new file.
    pub fn end_file(&mut self, out: &mut Vec<u8>) -> Result<(), TokenError> {
        self.check_init()?;
        if matches!(self.codec, Codec::Plain) {
            out.extend_from_slice(&0i32.to_le_bytes());
            return Ok(());
        }
        self.start_file();
        self.flush_literal(out)?;
        if let Some(run) = self.run.take() {
            self.write_run(out, run);
        }
        out.push(flag::END);
        self.in_file = false;
        Ok(())
    }

    fn check_init(&self) -> Result<(), TokenError> {
        match &self.init_error {
            Some(msg) => Err(TokenError::Compress {
                kind: self.kind,
                msg: msg.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Per-file initialisation (upstream: the `last_token == -1` branch).
    fn start_file(&mut self) {
        if self.in_file {
            return;
        }
        self.in_file = true;
        self.run = None;
        self.last_run_end = 0;
        self.flush_pending = false;
        self.pending.clear();
        if let Codec::Deflate(c) = &mut self.codec {
            c.reset();
        }
    }

    /// Writes one run token (upstream: the "output previous run" block).
    fn write_run(&mut self, out: &mut Vec<u8>, run: Run) {
        let rel = i64::from(run.start) - i64::from(self.last_run_end);
        let n = run.last - run.start; // <= 0xffff by construction
        if (0..=63).contains(&rel) {
            let base = if n == 0 {
                flag::TOKEN_REL
            } else {
                flag::TOKENRUN_REL
            };
            out.push(base + rel as u8);
        } else {
            out.push(if n == 0 {
                flag::TOKEN_LONG
            } else {
                flag::TOKENRUN_LONG
            });
            // start <= MAX_BLOCK_INDEX, so it is a non-negative int32.
            out.extend_from_slice(&(run.start as i32).to_le_bytes());
        }
        if n != 0 {
            out.push(n as u8);
            out.push((n >> 8) as u8);
        }
        self.last_run_end = run.last;
    }

    /// Flushes literal data given since the last flush, if any.
    fn flush_literal(&mut self, out: &mut Vec<u8>) -> Result<(), TokenError> {
        if !self.flush_pending {
            return Ok(());
        }
        self.flush_pending = false;
        let kind = self.kind;
        match &mut self.codec {
            Codec::Plain => {}
            Codec::Deflate(c) => {
                deflate_into(c, &[], FlushCompress::Sync, &mut self.pending, kind)?;
                if !self.pending.ends_with(&SYNC_MARKER) {
                    return Err(TokenError::Compress {
                        kind,
                        msg: "sync flush did not end with 00 00 ff ff".into(),
                    });
                }
                let keep = self.pending.len() - SYNC_MARKER.len();
                self.pending.truncate(keep);
                frame_full_chunks(out, &mut self.pending, 0);
                if !self.pending.is_empty() {
                    frame_chunk(out, &self.pending);
                    self.pending.clear();
                }
            }
            Codec::Zstd(z) => zstd_flush(z, out, &mut self.scratch, kind)?,
            Codec::Lz4 => lz4_blocks(out, &mut self.pending, &mut self.scratch, true, kind)?,
        }
        Ok(())
    }
}

/// Writes one `DEFLATED_DATA` chunk (`data.len()` must be 1..=16383).
fn frame_chunk(out: &mut Vec<u8>, data: &[u8]) {
    debug_assert!(!data.is_empty() && data.len() <= MAX_DATA_COUNT);
    let n = data.len();
    out.push(flag::DEFLATED_DATA + (n >> 8) as u8);
    out.push(n as u8);
    out.extend_from_slice(data);
}

/// Frames full `MAX_DATA_COUNT` chunks from the front of `pending` while at
/// least `keep` bytes would remain after the chunk.
fn frame_full_chunks(out: &mut Vec<u8>, pending: &mut Vec<u8>, keep: usize) {
    let mut pos = 0;
    while pending.len() - pos >= MAX_DATA_COUNT + keep {
        frame_chunk(out, &pending[pos..pos + MAX_DATA_COUNT]);
        pos += MAX_DATA_COUNT;
    }
    pending.drain(..pos);
}

/// Runs raw deflate over all of `input` with `flush`, appending the output
/// to `dst` (until the compressor has nothing more to give for this flush).
fn deflate_into(
    c: &mut Compress,
    mut input: &[u8],
    flush: FlushCompress,
    dst: &mut Vec<u8>,
    kind: CompressKind,
) -> Result<(), TokenError> {
    loop {
        dst.reserve(input.len() + input.len() / 8 + 4096);
        let (in0, out0) = (c.total_in(), c.total_out());
        c.compress_vec(input, dst, flush)
            .map_err(|e| TokenError::Compress {
                kind,
                msg: e.to_string(),
            })?;
        let consumed = usize::try_from(c.total_in() - in0).unwrap_or(input.len());
        let produced = c.total_out() - out0;
        input = input.get(consumed..).unwrap_or(&[]);
        if input.is_empty() && dst.len() < dst.capacity() {
            return Ok(());
        }
        if consumed == 0 && produced == 0 {
            return Err(TokenError::Compress {
                kind,
                msg: "deflate made no progress".into(),
            });
        }
    }
}

/// Feeds literal data to the session's zstd stream (`ZSTD_e_continue`),
/// framing whatever output it produces.
fn zstd_feed(
    z: &mut ZstdEncoder<'static>,
    data: &[u8],
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    kind: CompressKind,
) -> Result<(), TokenError> {
    scratch.resize(MAX_DATA_COUNT, 0);
    let mut input = InBuffer::around(data);
    while input.pos() < data.len() {
        let before = input.pos();
        let mut output = OutBuffer::around(&mut scratch[..]);
        z.run(&mut input, &mut output)
            .map_err(|e| TokenError::Compress {
                kind,
                msg: e.to_string(),
            })?;
        let n = output.pos();
        if n != 0 {
            frame_chunk(out, &scratch[..n]);
        } else if input.pos() == before {
            return Err(TokenError::Compress {
                kind,
                msg: "zstd made no progress".into(),
            });
        }
    }
    Ok(())
}

/// Flushes the session's zstd stream (`ZSTD_e_flush`), framing the output.
fn zstd_flush(
    z: &mut ZstdEncoder<'static>,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    kind: CompressKind,
) -> Result<(), TokenError> {
    scratch.resize(MAX_DATA_COUNT, 0);
    loop {
        let mut output = OutBuffer::around(&mut scratch[..]);
        let remaining = z.flush(&mut output).map_err(|e| TokenError::Compress {
            kind,
            msg: e.to_string(),
        })?;
        let n = output.pos();
        if n != 0 {
            frame_chunk(out, &scratch[..n]);
        }
        if remaining == 0 {
            return Ok(());
        }
        if n == 0 {
            return Err(TokenError::Compress {
                kind,
                msg: "zstd flush made no progress".into(),
            });
        }
    }
}

/// Compresses buffered literal data into independent lz4 blocks of at most
/// `MAX_DATA_COUNT` input bytes, each compressing to at most
/// `MAX_DATA_COUNT` bytes (upstream halves the input until it fits). Without
/// `all`, only full-size input blocks are taken and the rest stays buffered.
fn lz4_blocks(
    out: &mut Vec<u8>,
    pending: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    all: bool,
    kind: CompressKind,
) -> Result<(), TokenError> {
    scratch.resize(lz4_flex::block::get_maximum_output_size(MAX_DATA_COUNT), 0);
    let mut pos = 0;
    while pending.len() - pos >= MAX_DATA_COUNT || (all && pos < pending.len()) {
        let mut take = (pending.len() - pos).min(MAX_DATA_COUNT);
        loop {
            let n = lz4_flex::block::compress_into(&pending[pos..pos + take], scratch).map_err(
                |e| TokenError::Compress {
                    kind,
                    msg: e.to_string(),
                },
            )?;
            if n <= MAX_DATA_COUNT {
                frame_chunk(out, &scratch[..n]);
                break;
            }
            take = (take / 2).max(1);
        }
        pos += take;
    }
    pending.drain(..pos);
    Ok(())
}
