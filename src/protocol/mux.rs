//! Multiplexed I/O (upstream: io.c send_msg, read_a_msg; rsync.h enum msgcode).
//!
//! A frame is an int32 LE header `((7 + code) << 24) | len` followed by `len`
//! payload bytes. `MSG_DATA` payloads concatenated form the protocol stream;
//! every other code is an out-of-band message.

use super::{ProtoError, Result};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};

/// Offset added to message codes in the frame header.
pub const MPLEX_BASE: u8 = 7;
/// Largest payload a frame can carry.
pub const MAX_FRAME: usize = 0xFF_FFFF;
/// Data frames we write from the buffer are at most this long (header and
/// payload make one 32 KiB write, as upstream's 32 KiB output buffer). The
/// buffer never grows past it. Large literal runs do not pass through it
/// (`write_data_vectored`).
const OUT_CHUNK: usize = 32 * 1024 - 4;
/// Pieces per vectored write (well below the kernel's IOV_MAX of 1024).
const MAX_IOV: usize = 256;

/// Message codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MsgCode {
    /// Protocol stream data.
    Data = 0,
    /// Transfer error (counts toward exit 23).
    ErrorXfer = 1,
    /// Informational text.
    Info = 2,
    /// Error text.
    Error = 3,
    /// Warning text.
    Warning = 4,
    /// Sibling-pipe only.
    ErrorSocket = 5,
    /// Sibling-pipe only.
    Log = 6,
    /// Sibling-pipe only.
    Client = 7,
    /// Sibling-pipe only.
    ErrorUtf8 = 8,
    /// Receiver -> generator: redo this index.
    Redo = 9,
    /// Receiver -> generator: statistics.
    Stats = 10,
    /// The sender had I/O errors.
    IoError = 22,
    /// Daemon's timeout announcement.
    IoTimeout = 33,
    /// Legacy keep-alive.
    Noop = 42,
    /// Synchronised error exit.
    ErrorExit = 86,
    /// A file was updated (for --remove-source-files).
    Success = 100,
    /// "deleting NAME".
    Deleted = 101,
    /// The sender could not send this index.
    NoSend = 102,
}

impl MsgCode {
    /// Map a raw code to a known message, if any.
    pub fn from_u8(c: u8) -> Option<MsgCode> {
        use MsgCode::*;
        Some(match c {
            0 => Data,
            1 => ErrorXfer,
            2 => Info,
            3 => Error,
            4 => Warning,
            5 => ErrorSocket,
            6 => Log,
            7 => Client,
            8 => ErrorUtf8,
            9 => Redo,
            10 => Stats,
            22 => IoError,
            33 => IoTimeout,
            42 => Noop,
            86 => ErrorExit,
            100 => Success,
            101 => Deleted,
            102 => NoSend,
            _ => return None,
        })
    }
}

/// Encode a frame header.
pub fn frame_header(code: MsgCode, len: usize) -> [u8; 4] {
    debug_assert!(len <= MAX_FRAME);
    let h = ((MPLEX_BASE as u32 + code as u32) << 24) | (len as u32 & 0xFF_FFFF);
    h.to_le_bytes()
}

/// Decode a frame header into (code, length).
pub fn parse_header(h: [u8; 4]) -> Result<(MsgCode, usize)> {
    let v = u32::from_le_bytes(h);
    let tag = (v >> 24) as u8;
    let len = (v & 0xFF_FFFF) as usize;
    let code = tag
        .checked_sub(MPLEX_BASE)
        .and_then(MsgCode::from_u8)
        .ok_or(ProtoError::UnexpectedTag(tag))?;
    Ok((code, len))
}

/// Encode one whole frame.
pub fn frame(code: MsgCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + payload.len());
    v.extend_from_slice(&frame_header(code, payload.len()));
    v.extend_from_slice(payload);
    v
}

/// Output side: buffers protocol data and wraps it in `MSG_DATA` frames when
/// multiplexing is on; passes it through raw otherwise.
pub struct MuxWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    muxed: bool,
    /// Protocol-stream bytes accepted so far (excluding frame headers).
    pub bytes_written: u64,
    /// A daemon's log: every text message sent also goes there, but those
    /// for the client only (upstream rwrite logs all but FCLIENT).
    text_log: Option<fn(&[u8])>,
}

impl<W: Write> MuxWriter<W> {
    /// A writer that starts out raw.
    pub fn new(inner: W) -> Self {
        MuxWriter {
            inner,
            buf: Vec::with_capacity(OUT_CHUNK),
            muxed: false,
            bytes_written: 0,
            text_log: None,
        }
    }

    /// Copy every text message but MSG_CLIENT's to `log` (a daemon's log).
    pub fn set_text_log(&mut self, log: fn(&[u8])) {
        self.text_log = Some(log);
    }

    /// Turn framing on (flushes pending raw bytes first).
    pub fn start_mux(&mut self) -> io::Result<()> {
        self.flush_data()?;
        self.muxed = true;
        Ok(())
    }

    /// Whether framing is on.
    pub fn is_muxed(&self) -> bool {
        self.muxed
    }

    fn flush_data(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.muxed {
            // Header and payload in one write: a frame is one system call
            // (and one segment), and bypasses a small buffer below us.
            for chunk in self.buf.chunks(MAX_FRAME) {
                let hdr = frame_header(MsgCode::Data, chunk.len());
                write_all_vectored(
                    &mut self.inner,
                    &mut [IoSlice::new(&hdr), IoSlice::new(chunk)],
                )?;
            }
        } else {
            self.inner.write_all(&self.buf)?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Send an out-of-band message (pending data goes out first, keeping order).
    pub fn send_msg(&mut self, code: MsgCode, payload: &[u8]) -> io::Result<()> {
        if !self.muxed {
            return Err(io::Error::other("message sent before multiplexing started"));
        }
        self.flush_data()?;
        self.send_msg_ahead(code, payload)
    }

    /// Send an out-of-band message ahead of the data still buffered here, as
    /// upstream's io.c does (its message buffer is written before pending
    /// data): a generator's note goes out before the item records it has
    /// queued but not flushed.
    pub fn send_msg_ahead(&mut self, code: MsgCode, payload: &[u8]) -> io::Result<()> {
        if !self.muxed {
            return Err(io::Error::other("message sent before multiplexing started"));
        }
        // A message's names go out as their own bytes (see `text`).
        let text = matches!(
            code,
            MsgCode::ErrorXfer
                | MsgCode::Info
                | MsgCode::Error
                | MsgCode::Warning
                | MsgCode::ErrorSocket
                | MsgCode::Log
                | MsgCode::Client
                | MsgCode::ErrorUtf8
        );
        let payload = if text {
            super::text::raw(payload)
        } else {
            std::borrow::Cow::Borrowed(payload)
        };
        let payload: &[u8] = &payload;
        if let (true, Some(log)) = (text, self.text_log) {
            if !matches!(code, MsgCode::Client | MsgCode::Log) {
                log(payload);
            }
        }
        // What is meant for the client only goes to it as info (upstream
        // rwrite turns FCLIENT into FINFO before sending).
        let code = if code == MsgCode::Client {
            MsgCode::Info
        } else {
            code
        };
        let mut f = Vec::with_capacity(4 + payload.len().min(MAX_FRAME));
        for chunk in payload.chunks(MAX_FRAME).chain(if payload.is_empty() {
            Some(&[][..])
        } else {
            None
        }) {
            f.clear();
            f.extend_from_slice(&frame_header(code, chunk.len()));
            f.extend_from_slice(chunk);
            self.inner.write_all(&f)?;
        }
        Ok(())
    }

    /// Write `parts` as protocol data without copying them into the
    /// buffer: pending data goes out first (keeping order), then the parts
    /// in `MSG_DATA` frames (header and payload in one vectored write per
    /// frame). For large payloads (whole literal runs): this skips the
    /// buffer copies and lets a frame carry far more than `OUT_CHUNK`.
    pub fn write_data_vectored(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        self.flush_data()?;
        let (mut i, mut off) = (0usize, 0usize);
        let mut pieces: Vec<&[u8]> = Vec::with_capacity(parts.len().min(MAX_IOV));
        while i < parts.len() {
            // Up to MAX_FRAME bytes (and MAX_IOV pieces) from (i, off) on.
            pieces.clear();
            let mut len = 0usize;
            while i < parts.len() && len < MAX_FRAME && pieces.len() < MAX_IOV {
                let p = &parts[i][off..];
                let take = p.len().min(MAX_FRAME - len);
                if take > 0 {
                    pieces.push(&p[..take]);
                }
                len += take;
                if take == p.len() {
                    i += 1;
                    off = 0;
                } else {
                    off += take;
                }
            }
            if len == 0 {
                continue;
            }
            self.bytes_written += len as u64;
            let hdr = frame_header(MsgCode::Data, len);
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(pieces.len() + 1);
            if self.muxed {
                slices.push(IoSlice::new(&hdr));
            }
            slices.extend(pieces.iter().map(|p| IoSlice::new(p)));
            write_all_vectored(&mut self.inner, &mut slices)?;
        }
        Ok(())
    }

    /// The wrapped writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

/// `Write::write_all_vectored` (not stable yet): write every slice, in order.
fn write_all_vectored<W: Write>(w: &mut W, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl<W: Write> Write for MuxWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Fill the buffer up to OUT_CHUNK and send it on: it never grows
        // beyond its first allocation.
        let mut rest = data;
        while !rest.is_empty() {
            let take = (OUT_CHUNK - self.buf.len().min(OUT_CHUNK)).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            self.bytes_written += take as u64;
            rest = &rest[take..];
            if self.buf.len() >= OUT_CHUNK {
                self.flush_data()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_data()?;
        self.inner.flush()
    }
}

/// An out-of-band message received from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its code.
    pub code: MsgCode,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Handles a peer's message as it arrives (a client shows the server's
/// texts at once); returns the message when the role should see it too.
pub type MsgHandler = Box<dyn FnMut(Message) -> Option<Message> + Send>;

/// Messages queued for the role at most (older ones are dropped).
const MAX_QUEUED: usize = 1024;

/// Input side: strips frames (when on) and queues out-of-band messages.
pub struct Demux<R: Read> {
    inner: R,
    muxed: bool,
    /// Bytes of the current MSG_DATA frame still to be read.
    remaining: usize,
    /// Messages received and not yet taken.
    pub messages: VecDeque<Message>,
    /// Protocol-stream bytes delivered so far.
    pub bytes_read: u64,
    /// Largest non-data payload accepted.
    max_msg: usize,
    /// [`Demux::read_chunk`]: header bytes of a frame cut by a chunk end.
    head_part: ([u8; 4], usize),
    /// [`Demux::read_chunk`]: a message whose payload is still arriving.
    msg_part: Option<(MsgCode, usize, Vec<u8>)>,
    /// [`Demux::read_chunk`]: the error that ends the input, reported on
    /// the call after the pieces that preceded it.
    failed: Option<ProtoError>,
    handler: Option<MsgHandler>,
}

/// What [`Demux::read_chunk`] found in one read, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Protocol-stream bytes: this range of the chunk buffer.
    Data(std::ops::Range<usize>),
    /// An out-of-band message.
    Msg(Message),
}

impl<R: Read> Demux<R> {
    /// A reader that starts out raw.
    pub fn new(inner: R) -> Self {
        Demux {
            inner,
            muxed: false,
            remaining: 0,
            messages: VecDeque::new(),
            bytes_read: 0,
            max_msg: 64 * 1024,
            head_part: ([0; 4], 0),
            msg_part: None,
            failed: None,
            handler: None,
        }
    }

    /// Pass every message to `h` as it arrives.
    pub fn set_handler(&mut self, h: MsgHandler) {
        self.handler = Some(h);
    }

    /// The handler, taken out (to wrap it).
    pub fn take_handler(&mut self) -> Option<MsgHandler> {
        self.handler.take()
    }

    /// The handler's verdict on a message: `None` when it consumed it.
    fn handled(&mut self, m: Message) -> Option<Message> {
        match self.handler.as_mut() {
            Some(h) => h(m),
            None => Some(m),
        }
    }

    fn queue(&mut self, m: Message) {
        let Some(m) = self.handled(m) else {
            return;
        };
        if self.messages.len() >= MAX_QUEUED {
            self.messages.pop_front();
        }
        self.messages.push_back(m);
    }

    /// One read of the underlying stream into `buf` (no copy of the data
    /// afterwards): the frames in it are parsed in place and `pieces` gets
    /// the data ranges and messages in stream order; frames may straddle
    /// chunks. Returns the bytes read (0 at end of input). A bad frame, an
    /// over-long message or `MSG_ERROR_EXIT` (which is also delivered as a
    /// message) ends parsing: the pieces before it are returned, and the
    /// next call fails with the error, as [`Demux`]'s `Read` would. Not to
    /// be mixed with `read` on the same stream.
    pub fn read_chunk(&mut self, buf: &mut [u8], pieces: &mut Vec<Piece>) -> io::Result<usize> {
        pieces.clear();
        if let Some(e) = self.failed.take() {
            return Err(to_io(e));
        }
        let n = loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if n == 0 {
            return Ok(0);
        }
        if !self.muxed {
            self.bytes_read += n as u64;
            pieces.push(Piece::Data(0..n));
            return Ok(n);
        }
        let mut pos = 0usize;
        while pos < n {
            if self.remaining > 0 {
                let take = self.remaining.min(n - pos);
                pieces.push(Piece::Data(pos..pos + take));
                self.remaining -= take;
                self.bytes_read += take as u64;
                pos += take;
                continue;
            }
            if let Some((code, len, mut payload)) = self.msg_part.take() {
                let take = (len - payload.len()).min(n - pos);
                payload.extend_from_slice(&buf[pos..pos + take]);
                pos += take;
                if payload.len() < len {
                    self.msg_part = Some((code, len, payload));
                    continue;
                }
                if self.message_done(code, payload, pieces) {
                    return Ok(n);
                }
                continue;
            }
            let (mut h, mut got) = self.head_part;
            let take = (4 - got).min(n - pos);
            h[got..got + take].copy_from_slice(&buf[pos..pos + take]);
            got += take;
            pos += take;
            if got < 4 {
                self.head_part = (h, got);
                continue;
            }
            self.head_part = ([0; 4], 0);
            match parse_header(h) {
                Ok((MsgCode::Data, len)) => self.remaining = len,
                Ok((code, len)) if len <= self.max_msg => {
                    if len == 0 {
                        if self.message_done(code, Vec::new(), pieces) {
                            return Ok(n);
                        }
                    } else {
                        self.msg_part = Some((code, len, Vec::with_capacity(len)));
                    }
                }
                Ok((_, len)) => {
                    self.failed = Some(ProtoError::invalid(format!(
                        "message of {len} bytes is too long"
                    )));
                    return Ok(n);
                }
                Err(e) => {
                    self.failed = Some(e);
                    return Ok(n);
                }
            }
        }
        Ok(n)
    }

    /// A whole message arrived: keep it (in order) unless it is a keep-alive.
    /// Returns true when it ends the input (`MSG_ERROR_EXIT`).
    fn message_done(&mut self, code: MsgCode, payload: Vec<u8>, pieces: &mut Vec<Piece>) -> bool {
        match code {
            MsgCode::Noop => false,
            MsgCode::ErrorExit => {
                let c = if payload.len() >= 4 {
                    i32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]])
                } else {
                    0
                };
                pieces.push(Piece::Msg(Message { code, payload }));
                self.failed = Some(ProtoError::PeerExit(c));
                true
            }
            _ => {
                if let Some(m) = self.handled(Message { code, payload }) {
                    pieces.push(Piece::Msg(m));
                }
                false
            }
        }
    }

    /// Turn frame parsing on or off (only between frames).
    pub fn set_mux(&mut self, on: bool) {
        self.muxed = on;
    }

    /// Whether frames are being parsed.
    pub fn is_muxed(&self) -> bool {
        self.muxed
    }

    /// Read frames until data is available; out-of-band messages are queued.
    /// `MSG_ERROR_EXIT` ends reading with `ProtoError::PeerExit`.
    fn fill(&mut self) -> Result<()> {
        while self.remaining == 0 {
            let mut h = [0u8; 4];
            self.inner.read_exact(&mut h)?;
            let (code, len) = parse_header(h)?;
            if code == MsgCode::Data {
                self.remaining = len;
                continue;
            }
            if len > self.max_msg {
                return Err(ProtoError::invalid(format!(
                    "message of {len} bytes is too long"
                )));
            }
            let mut payload = vec![0u8; len];
            self.inner.read_exact(&mut payload)?;
            match code {
                MsgCode::Noop => {}
                MsgCode::ErrorExit => {
                    let c = if payload.len() >= 4 {
                        i32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]])
                    } else {
                        0
                    };
                    self.queue(Message { code, payload });
                    return Err(ProtoError::PeerExit(c));
                }
                _ => self.queue(Message { code, payload }),
            }
        }
        Ok(())
    }

    /// Take the next queued message.
    pub fn take_message(&mut self) -> Option<Message> {
        self.messages.pop_front()
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

fn to_io(e: ProtoError) -> io::Error {
    match e {
        ProtoError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<R: Read> Read for Demux<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if !self.muxed {
            let n = self.inner.read(out)?;
            self.bytes_read += n as u64;
            return Ok(n);
        }
        self.fill().map_err(to_io)?;
        let want = out.len().min(self.remaining);
        let n = self.inner.read(&mut out[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.remaining -= n;
        self.bytes_read += n as u64;
        Ok(n)
    }
}

/// Recover a `ProtoError` carried inside an `io::Error` produced by `Demux`.
pub fn from_io(e: io::Error) -> ProtoError {
    if e.get_ref().map(|i| i.is::<ProtoError>()).unwrap_or(false) {
        match e.into_inner().map(|b| b.downcast::<ProtoError>()) {
            Some(Ok(p)) => *p,
            Some(Err(b)) => ProtoError::Io(io::Error::other(b.to_string())),
            None => ProtoError::invalid("unknown"),
        }
    } else {
        ProtoError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_layout_matches_upstream() {
        assert_eq!(frame_header(MsgCode::Data, 5), [5, 0, 0, 7]);
        assert_eq!(
            parse_header([0x17, 0, 0, 7]).unwrap(),
            (MsgCode::Data, 0x17)
        );
        assert!(matches!(
            parse_header([0, 0, 0, 6]),
            Err(ProtoError::UnexpectedTag(6))
        ));
        assert!(matches!(
            parse_header([0, 0, 0, 7 + 50]),
            Err(ProtoError::UnexpectedTag(57))
        ));
    }

    #[test]
    fn demux_skips_keepalives_and_queues_messages() {
        let mut s = Vec::new();
        s.extend(frame(MsgCode::Data, b""));
        s.extend(frame(MsgCode::Info, b"hi\n"));
        s.extend(frame(MsgCode::Data, b"abc"));
        s.extend(frame(MsgCode::Noop, b""));
        s.extend(frame(MsgCode::Data, b"de"));
        let mut d = Demux::new(&s[..]);
        d.set_mux(true);
        let mut out = Vec::new();
        let mut buf = [0u8; 10];
        while out.len() < 5 {
            let n = d.read(&mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, b"abcde");
        assert_eq!(d.take_message().unwrap().payload, b"hi\n");
        assert!(d.read(&mut buf).is_err());
    }

    #[test]
    fn chunked_error_exit_comes_after_the_data_before_it() {
        let mut s = frame(MsgCode::Data, b"ab");
        s.extend(frame(MsgCode::ErrorExit, &23i32.to_le_bytes()));
        s.extend(frame(MsgCode::Data, b"cd"));
        let mut d = Demux::new(&s[..]);
        d.set_mux(true);
        let mut buf = vec![0u8; 100];
        let mut pieces = Vec::new();
        d.read_chunk(&mut buf, &mut pieces).unwrap();
        assert_eq!(pieces[0], Piece::Data(4..6));
        assert!(matches!(&pieces[1], Piece::Msg(m) if m.code == MsgCode::ErrorExit));
        assert_eq!(pieces.len(), 2);
        let e = d.read_chunk(&mut buf, &mut pieces).unwrap_err();
        assert!(matches!(from_io(e), ProtoError::PeerExit(23)));
    }

    #[test]
    fn a_message_sent_ahead_overtakes_buffered_data_only() {
        let mut w = MuxWriter::new(Vec::new());
        w.start_mux().unwrap();
        w.write_all(b"first").unwrap();
        w.flush().unwrap();
        w.write_all(b"queued").unwrap();
        w.send_msg_ahead(MsgCode::Info, b"note\n").unwrap();
        w.flush().unwrap();
        let mut want = frame(MsgCode::Data, b"first");
        want.extend(frame(MsgCode::Info, b"note\n"));
        want.extend(frame(MsgCode::Data, b"queued"));
        assert_eq!(w.inner, want);
        // Not before multiplexing: there is no frame to put it in.
        let mut raw = MuxWriter::new(Vec::new());
        assert!(raw.send_msg_ahead(MsgCode::Info, b"x").is_err());
    }

    #[test]
    fn error_exit_stops_reading() {
        let s = frame(MsgCode::ErrorExit, &23i32.to_le_bytes());
        let mut d = Demux::new(&s[..]);
        d.set_mux(true);
        let e = d.read(&mut [0u8; 4]).unwrap_err();
        assert!(matches!(from_io(e), ProtoError::PeerExit(23)));
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn writer_reader_round_trip(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..70000), 0..5)) {
            let mut w = MuxWriter::new(Vec::new());
            w.start_mux().unwrap();
            for c in &chunks {
                w.write_all(c).unwrap();
                w.send_msg(MsgCode::Info, b"x").unwrap();
            }
            w.flush().unwrap();
            let bytes = w.get_mut().clone();
            let mut d = Demux::new(&bytes[..]);
            d.set_mux(true);
            let total: usize = chunks.iter().map(|c| c.len()).sum();
            let mut out = vec![0u8; total];
            d.read_exact(&mut out).unwrap();
            prop_assert_eq!(out, chunks.concat());
        }

        #[test]
        fn vectored_data_round_trips(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..6),
            before in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut w = MuxWriter::new(Vec::new());
            w.start_mux().unwrap();
            w.write_all(&before).unwrap();
            let refs: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
            w.write_data_vectored(&refs).unwrap();
            w.write_all(b"after").unwrap();
            w.flush().unwrap();
            let mut want = before.clone();
            want.extend(parts.concat());
            want.extend_from_slice(b"after");
            prop_assert_eq!(w.bytes_written, want.len() as u64);
            let bytes = w.get_mut().clone();
            let mut d = Demux::new(&bytes[..]);
            d.set_mux(true);
            let mut out = vec![0u8; want.len()];
            d.read_exact(&mut out).unwrap();
            prop_assert_eq!(out, want);
        }

        #[test]
        fn chunked_demux_equals_demux(
            frames in proptest::collection::vec((0u8..4, proptest::collection::vec(any::<u8>(), 0..300)), 0..12),
            cut in 1usize..50,
        ) {
            // Data, Info, Noop and Warning frames, read in chunks of `cut` bytes.
            let mut s = Vec::new();
            for (k, p) in &frames {
                let code = [MsgCode::Data, MsgCode::Info, MsgCode::Noop, MsgCode::Warning][*k as usize];
                let p = if code == MsgCode::Noop { &[][..] } else { &p[..] };
                s.extend(frame(code, p));
            }
            let mut want_data = Vec::new();
            let mut want_msgs = Vec::new();
            for (k, p) in &frames {
                match k {
                    0 => want_data.extend_from_slice(p),
                    1 => want_msgs.push((MsgCode::Info, p.clone())),
                    3 => want_msgs.push((MsgCode::Warning, p.clone())),
                    _ => {}
                }
            }
            struct Trickle<'a>(&'a [u8], usize);
            impl Read for Trickle<'_> {
                fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                    let n = self.0.len().min(b.len()).min(self.1);
                    b[..n].copy_from_slice(&self.0[..n]);
                    self.0 = &self.0[n..];
                    Ok(n)
                }
            }
            let mut d = Demux::new(Trickle(&s, cut));
            d.set_mux(true);
            let (mut data, mut msgs, mut pieces) = (Vec::new(), Vec::new(), Vec::new());
            let mut buf = vec![0u8; 64];
            loop {
                let n = d.read_chunk(&mut buf, &mut pieces).unwrap();
                if n == 0 {
                    break;
                }
                for p in &pieces {
                    match p {
                        Piece::Data(r) => data.extend_from_slice(&buf[r.clone()]),
                        Piece::Msg(m) => msgs.push((m.code, m.payload.clone())),
                    }
                }
            }
            prop_assert_eq!(d.bytes_read, want_data.len() as u64);
            prop_assert_eq!(data, want_data);
            prop_assert_eq!(msgs, want_msgs);
        }

        #[test]
        fn chunked_demux_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = Demux::new(&bytes[..]);
            d.set_mux(true);
            let mut buf = [0u8; 16];
            let mut pieces = Vec::new();
            for _ in 0..20 {
                match d.read_chunk(&mut buf, &mut pieces) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }

        #[test]
        fn demux_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = Demux::new(&bytes[..]);
            d.set_mux(true);
            let mut buf = [0u8; 64];
            for _ in 0..10 { if d.read(&mut buf).is_err() { break; } }
        }
    }
}
