//! Receiver side of the token stream (upstream: token.c `recv_token()`,
//! `simple_recv_token`, `recv_deflated_token`, `recv_zstd_token`,
//! `recv_compressed_token`, `see_deflate_token`).
//!
//! The decoder reads from untrusted input: every length is bounded before
//! use (a compressed chunk is at most 16383 bytes by construction, literal
//! output is returned in pieces of at most [`MAX_LITERAL_LEN`] bytes, block
//! numbers and runs are range-checked as upstream does), and no byte
//! sequence makes it panic or loop without consuming input.

use std::io::Read;

use flate2::{Decompress, FlushDecompress, Status};
use zstd::stream::raw::{Decoder as ZstdDecoder, InBuffer, Operation, OutBuffer};

use super::{
    flag, zlib_history_tail, CompressKind, TokenError, CHUNK_SIZE, MAX_BLOCK_INDEX, MAX_DATA_COUNT,
    MAX_LITERAL_LEN,
};

/// One item of a file's delta, as returned by [`TokenDecoder::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// Literal data to append (1..=[`MAX_LITERAL_LEN`] bytes). It borrows the
    /// decoder's buffer, so copy it out before the next call.
    Literal(&'a [u8]),
    /// Copy basis block `i` (the caller must check `i < count`), then call
    /// [`TokenDecoder::see_block`] with its data.
    Block(u32),
    /// End of this file's data; the next call starts the next file.
    End,
}

/// Receiver state (upstream: `recv_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first flag of a file.
    Init,
    /// Waiting for a flag byte.
    Idle,
    /// Decompressing the chunk in `cbuf`.
    Inflating,
    /// Deflate only: a chunk was fully inflated; the next non-data flag must
    /// be preceded by the stripped sync marker.
    Inflated,
    /// Returning the remaining blocks of a run.
    Running,
}

enum Codec {
    Plain,
    Deflate(Box<Decompress>),
    Zstd(Box<ZstdDecoder<'static>>),
    Lz4,
}

/// Output cap per call for streaming decompressors (deflate, zstd).
const STREAM_OUT: usize = CHUNK_SIZE;

/// Decodes the delta token stream for one session (upstream: token.c
/// `recv_token()` / `see_token()`).
pub struct TokenDecoder {
    kind: CompressKind,
    protocol: u8,
    codec: Codec,
    init_error: Option<String>,
    state: State,
    /// Current block number (the relative base) of this file.
    rx_token: u32,
    /// Blocks still to return in the current run.
    rx_run: u32,
    /// Plain: literal bytes of the current token not yet returned.
    residue: u32,
    /// Current compressed chunk and how much of it is consumed.
    cbuf: Vec<u8>,
    clen: usize,
    cpos: usize,
    /// Decompressed output handed out as `Token::Literal`.
    obuf: Vec<u8>,
}

impl std::fmt::Debug for TokenDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenDecoder")
            .field("kind", &self.kind)
            .field("protocol", &self.protocol)
            .field("state", &self.state)
            .field("rx_token", &self.rx_token)
            .field("rx_run", &self.rx_run)
            .field("residue", &self.residue)
            .finish_non_exhaustive()
    }
}

impl TokenDecoder {
    /// Creates the session's decoder for `kind` at protocol `protocol`.
    pub fn new(kind: CompressKind, protocol: u8) -> Self {
        let mut init_error = None;
        let codec = match kind {
            CompressKind::None => Codec::Plain,
            CompressKind::Zlib | CompressKind::Zlibx => {
                Codec::Deflate(Box::new(Decompress::new(false)))
            }
            CompressKind::Zstd => match ZstdDecoder::new() {
                Ok(d) => Codec::Zstd(Box::new(d)),
                Err(e) => {
                    init_error = Some(e.to_string());
                    Codec::Plain
                }
            },
            CompressKind::Lz4 => Codec::Lz4,
        };
        let (cbuf, obuf) = match kind {
            CompressKind::None => (Vec::new(), vec![0; CHUNK_SIZE]),
            _ => (vec![0; MAX_DATA_COUNT], vec![0; MAX_LITERAL_LEN]),
        };
        TokenDecoder {
            kind,
            protocol,
            codec,
            init_error,
            state: State::Init,
            rx_token: 0,
            rx_run: 0,
            residue: 0,
            cbuf,
            clen: 0,
            cpos: 0,
            obuf,
        }
    }

    /// The algorithm this decoder speaks.
    pub fn kind(&self) -> CompressKind {
        self.kind
    }

    /// Reads the next token of the current file from `r`.
    ///
    /// After [`Token::End`] the decoder is ready for the next file (zlib
    /// state is reset, zstd continues its session stream). An error leaves
    /// the decoder unusable for this session.
    pub fn next<R: Read + ?Sized>(&mut self, r: &mut R) -> Result<Token<'_>, TokenError> {
        if let Some(msg) = &self.init_error {
            return Err(self.decompress_error(msg.clone()));
        }
        if matches!(self.codec, Codec::Plain) {
            return self.next_plain(r);
        }
        loop {
            match self.state {
                State::Init => {
                    if let Codec::Deflate(d) = &mut self.codec {
                        d.reset(false);
                    }
                    self.rx_token = 0;
                    self.rx_run = 0;
                    self.state = State::Idle;
                }
                State::Idle | State::Inflated => {
                    let f = read_u8(r)?;
                    if f & 0xc0 == flag::DEFLATED_DATA {
                        let n = (usize::from(f & 0x3f) << 8) | usize::from(read_u8(r)?);
                        // n <= 0x3fff = MAX_DATA_COUNT = cbuf.len().
                        r.read_exact(&mut self.cbuf[..n])?;
                        if n != 0 {
                            self.clen = n;
                            self.cpos = 0;
                            self.state = State::Inflating;
                        }
                        continue;
                    }
                    if self.state == State::Inflated {
                        self.resync()?;
                        self.state = State::Idle;
                    }
                    if f == flag::END {
                        self.state = State::Init;
                        return Ok(Token::End);
                    }
                    return self.token_number(r, f);
                }
                State::Inflating => {
                    let n = self.inflate_step()?;
                    if n != 0 {
                        return Ok(Token::Literal(&self.obuf[..n]));
                    }
                }
                State::Running => {
                    if self.rx_run == 0 || self.rx_token >= MAX_BLOCK_INDEX {
                        return Err(TokenError::BadTokenNumber);
                    }
                    self.rx_token += 1;
                    self.rx_run -= 1;
                    if self.rx_run == 0 {
                        self.state = State::Idle;
                    }
                    return Ok(Token::Block(self.rx_token));
                }
            }
        }
    }

    /// Tells the decoder the content of the block just returned as
    /// [`Token::Block`] (upstream: `see_token()`). Legacy zlib needs it to
    /// keep its inflate history in step with the sender; for the other kinds
    /// it does nothing. Call it after every block token, in order.
    pub fn see_block(&mut self, data: &[u8]) -> Result<(), TokenError> {
        if self.kind != CompressKind::Zlib || data.is_empty() {
            return Ok(());
        }
        let tail = zlib_history_tail(data, self.protocol);
        // A fake stored block (tail.len() <= 32 KiB < 0xffff): header byte
        // (BFINAL 0, BTYPE 00, byte-aligned), LEN, NLEN, then the data.
        let len = tail.len() as u16;
        let [lo, hi] = len.to_le_bytes();
        let hdr = [0u8, lo, hi, !lo, !hi];
        self.inflate_discard(&hdr)?;
        self.inflate_discard(&tail)
    }

    fn next_plain<R: Read + ?Sized>(&mut self, r: &mut R) -> Result<Token<'_>, TokenError> {
        if self.residue == 0 {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            let i = i32::from_le_bytes(b);
            if i == 0 {
                return Ok(Token::End);
            }
            if i < 0 {
                // -(i+1): i32::MIN maps to 0x7fffffff, no overflow in i64.
                let block = -(i64::from(i) + 1);
                return Ok(Token::Block(block as u32));
            }
            // Upstream >= 3.4.3 reads long literal runs CHUNK_SIZE bytes at a
            // time; so do we, which keeps the buffer bounded.
            self.residue = i as u32;
        }
        let n = (self.residue as usize).min(CHUNK_SIZE);
        r.read_exact(&mut self.obuf[..n])?;
        self.residue -= n as u32;
        Ok(Token::Literal(&self.obuf[..n]))
    }

    /// Decodes a block-token flag (upstream: `recv_compressed_token_num()`).
    fn token_number<R: Read + ?Sized>(
        &mut self,
        r: &mut R,
        f: u8,
    ) -> Result<Token<'static>, TokenError> {
        let run_follows;
        if f & flag::TOKEN_REL != 0 {
            let incr = u32::from(f & 0x3f);
            if self.rx_token > MAX_BLOCK_INDEX - incr {
                return Err(TokenError::BadTokenNumber);
            }
            self.rx_token += incr;
            run_follows = f & 0x40 != 0;
        } else if f == flag::TOKEN_LONG || f == flag::TOKENRUN_LONG {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            let v = i32::from_le_bytes(b);
            if v < 0 || v as u32 > MAX_BLOCK_INDEX {
                return Err(TokenError::BadTokenNumber);
            }
            self.rx_token = v as u32;
            run_follows = f == flag::TOKENRUN_LONG;
        } else {
            return Err(TokenError::BadFlag(f));
        }
        if run_follows {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            let run = u32::from(u16::from_le_bytes(b));
            if run == 0 || self.rx_token > MAX_BLOCK_INDEX - run {
                return Err(TokenError::BadTokenNumber);
            }
            self.rx_run = run;
            self.state = State::Running;
        }
        Ok(Token::Block(self.rx_token))
    }

    /// Decompresses some of the current chunk into `obuf`; returns how many
    /// bytes were produced (0 = nothing yet, keep going).
    fn inflate_step(&mut self) -> Result<usize, TokenError> {
        let kind = self.kind;
        let input = &self.cbuf[self.cpos..self.clen];
        match &mut self.codec {
            Codec::Plain => Err(TokenError::BadFlag(flag::DEFLATED_DATA)),
            Codec::Deflate(d) => {
                let (in0, out0) = (d.total_in(), d.total_out());
                let status = d
                    .decompress(input, &mut self.obuf[..STREAM_OUT], FlushDecompress::None)
                    .map_err(|e| TokenError::Decompress {
                        kind,
                        msg: e.to_string(),
                    })?;
                let consumed = usize::try_from(d.total_in() - in0).unwrap_or(usize::MAX);
                let produced = usize::try_from(d.total_out() - out0).unwrap_or(usize::MAX);
                if status == Status::StreamEnd {
                    return Err(TokenError::Decompress {
                        kind,
                        msg: "unexpected end of deflate stream".into(),
                    });
                }
                if consumed > input.len() || produced > STREAM_OUT {
                    return Err(TokenError::Decompress {
                        kind,
                        msg: "bad counts".into(),
                    });
                }
                self.cpos += consumed;
                // miniz_oxide may hold decoded bytes back even when the
                // output had room, so the chunk is done only once a call
                // with no input left yields nothing.
                if self.cpos == self.clen && produced == 0 {
                    self.state = State::Inflated;
                } else if consumed == 0 && produced == 0 {
                    return Err(TokenError::Decompress {
                        kind,
                        msg: "inflate made no progress".into(),
                    });
                }
                Ok(produced)
            }
            Codec::Zstd(z) => {
                let mut inb = InBuffer::around(input);
                let mut outb = OutBuffer::around(&mut self.obuf[..STREAM_OUT]);
                z.run(&mut inb, &mut outb)
                    .map_err(|e| TokenError::Decompress {
                        kind,
                        msg: e.to_string(),
                    })?;
                let consumed = inb.pos();
                let produced = outb.pos();
                self.cpos += consumed;
                if self.cpos >= self.clen && produced < STREAM_OUT {
                    self.state = State::Idle;
                } else if consumed == 0 && produced == 0 {
                    return Err(TokenError::Decompress {
                        kind,
                        msg: "zstd made no progress".into(),
                    });
                }
                Ok(produced)
            }
            Codec::Lz4 => {
                let n = lz4_flex::block::decompress_into(input, &mut self.obuf[..MAX_LITERAL_LEN])
                    .map_err(|e| TokenError::Decompress {
                        kind,
                        msg: e.to_string(),
                    })?;
                self.cpos = self.clen;
                self.state = State::Idle;
                // An empty block yields nothing (upstream would mistake it
                // for the end of the file; no stock sender produces one).
                Ok(n.min(MAX_LITERAL_LEN))
            }
        }
    }

    /// Feeds the stripped `00 00 FF FF` back after a run of deflated data
    /// (upstream: the `r_inflated` branch of `recv_deflated_token()`).
    fn resync(&mut self) -> Result<(), TokenError> {
        const SYNC_MARKER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
        let kind = self.kind;
        let Codec::Deflate(d) = &mut self.codec else {
            return Ok(());
        };
        let (in0, out0) = (d.total_in(), d.total_out());
        let status = d
            .decompress(
                &SYNC_MARKER,
                &mut self.obuf[..STREAM_OUT],
                FlushDecompress::Sync,
            )
            .map_err(|e| TokenError::Decompress {
                kind,
                msg: e.to_string(),
            })?;
        if status == Status::StreamEnd
            || d.total_in() - in0 != SYNC_MARKER.len() as u64
            || d.total_out() != out0
        {
            return Err(TokenError::Decompress {
                kind,
                msg: "decompressor lost sync".into(),
            });
        }
        Ok(())
    }

    /// Runs `data` through the inflater, discarding the output.
    fn inflate_discard(&mut self, mut data: &[u8]) -> Result<(), TokenError> {
        let kind = self.kind;
        let Codec::Deflate(d) = &mut self.codec else {
            return Ok(());
        };
        loop {
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = d
                .decompress(data, &mut self.obuf[..STREAM_OUT], FlushDecompress::None)
                .map_err(|e| TokenError::Decompress {
                    kind,
                    msg: e.to_string(),
                })?;
            let consumed = usize::try_from(d.total_in() - in0).unwrap_or(usize::MAX);
            let produced = usize::try_from(d.total_out() - out0).unwrap_or(usize::MAX);
            if status == Status::StreamEnd || consumed > data.len() {
                return Err(TokenError::Decompress {
                    kind,
                    msg: "history insertion failed".into(),
                });
            }
            data = &data[consumed..];
            if data.is_empty() && produced == 0 {
                return Ok(());
            }
            if consumed == 0 && produced == 0 {
                return Err(TokenError::Decompress {
                    kind,
                    msg: "inflate made no progress".into(),
                });
            }
        }
    }

    fn decompress_error(&self, msg: String) -> TokenError {
        TokenError::Decompress {
            kind: self.kind,
            msg,
        }
    }
}

fn read_u8<R: Read + ?Sized>(r: &mut R) -> Result<u8, TokenError> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

/// Fuzz entry point: drives a decoder over arbitrary bytes. The first byte
/// picks the kind (low bits) and the protocol (bit 7: 30, else 31); the
/// rest is the token stream. Block tokens are answered with `see_block` on
/// synthetic data (sometimes longer than 0xFFFF, for the pre-31 quirk).
/// Must never panic.
#[doc(hidden)]
pub fn decoder_fuzz_entry(data: &[u8]) {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let kind = match sel % 5 {
        0 => CompressKind::None,
        1 => CompressKind::Zlib,
        2 => CompressKind::Zlibx,
        3 => CompressKind::Zstd,
        _ => CompressKind::Lz4,
    };
    let protocol = if sel & 0x80 != 0 { 30 } else { 31 };
    let block: Vec<u8> = (0..0x1_0010u32).map(|i| (i % 251) as u8).collect();
    let mut dec = TokenDecoder::new(kind, protocol);
    for _ in 0..4096 {
        match dec.next(&mut rest) {
            Ok(Token::Block(i)) => {
                let len = if i % 7 == 3 {
                    block.len()
                } else {
                    1 + (i as usize % 700)
                };
                if dec.see_block(&block[..len]).is_err() {
                    return;
                }
            }
            Ok(Token::Literal(_)) | Ok(Token::End) => {}
            Err(_) => return,
        }
    }
}
