//! The input pump: a thread that keeps reading the peer's stream (demuxing
//! it) while the role writes, as upstream's non-blocking io.c does, so
//! neither side can block the other. Data reaches the role through a bounded
//! channel; out-of-band messages travel in the same channel, in order.
//!
//! The pump reads the socket straight into chunk buffers and parses the
//! frames in place ([`Demux::read_chunk`]); a chunk travels to the role with
//! the ranges of its data, and its buffer comes back for the next read, so
//! the data is copied once, from the chunk into what the role reads.

use crate::iobuf::IoBuf;
use crate::protocol::mux::{from_io, Demux, Message, Piece};
use crate::protocol::ProtoError;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// One thing read from the peer.
#[derive(Debug)]
pub enum Input {
    /// Protocol-stream bytes: these ranges of this buffer, in order.
    Data(Chunk, Vec<Range<usize>>),
    /// An out-of-band message.
    Msg(Message),
    /// Reading failed or ended; nothing follows.
    End(ProtoError),
}

/// A chunk of the peer's stream: the pump's page-aligned read buffer
/// (socket copies into it run at full speed, see [`crate::iobuf`]), or a
/// small copy of a short read.
#[derive(Debug)]
pub enum Chunk {
    /// A read buffer, handed back to the pump when used up.
    Read(IoBuf),
    /// A copy of a few bytes.
    Copy(Vec<u8>),
}

impl Default for Chunk {
    fn default() -> Self {
        Chunk::Copy(Vec::new())
    }
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Read(b) => b,
            Chunk::Copy(v) => v,
        }
    }
}

impl Chunk {
    /// Bytes the chunk holds allocated.
    pub fn capacity(&self) -> usize {
        match self {
            Chunk::Read(b) => b.capacity(),
            Chunk::Copy(v) => v.capacity(),
        }
    }

    /// This chunk as a read buffer of `len` bytes.
    fn read_buf(&mut self, len: usize) -> &mut IoBuf {
        if let Chunk::Copy(_) = self {
            *self = Chunk::Read(IoBuf::new());
        }
        match self {
            Chunk::Read(b) => {
                b.resize(len);
                b
            }
            Chunk::Copy(_) => unreachable!("replaced above"),
        }
    }
}

/// Reads the peer's stream in chunks (a [`Demux`] with any reader).
pub trait ChunkSource: Send {
    /// See [`Demux::read_chunk`].
    fn read_chunk(&mut self, buf: &mut [u8], pieces: &mut Vec<Piece>) -> io::Result<usize>;
}

impl<R: Read + Send> ChunkSource for Demux<R> {
    fn read_chunk(&mut self, buf: &mut [u8], pieces: &mut Vec<Piece>) -> io::Result<usize> {
        Demux::read_chunk(self, buf, pieces)
    }
}

/// Where the chunks come from.
enum Source {
    /// The pump thread, through a bounded channel.
    Pump {
        rx: Receiver<Input>,
        /// Empty chunk buffers back to the pump.
        recycle: SyncSender<IoBuf>,
    },
    /// Read by the role itself, when it needs data (see [`inline`]).
    Inline(Box<dyn ChunkSource>),
}

/// The role's side of the pump: a `Read` over the data, with messages set aside.
pub struct InputReader {
    source: Source,
    buf: Chunk,
    /// What is left of the current chunk, in stream order.
    pieces: std::collections::VecDeque<Piece>,
    /// Scratch for [`ChunkSource::read_chunk`].
    scratch: Vec<Piece>,
    /// Current range in `buf`.
    pos: usize,
    end: usize,
    /// Messages received (taken by the role when it wants them).
    pub messages: Vec<Message>,
    ended: Option<ProtoError>,
    /// The end of input, seen by [`InputReader::ready`] and not yet reported.
    pending_end: Option<ProtoError>,
    /// Protocol-stream bytes handed to the role so far (`%b` of a file).
    pub consumed: u64,
}

/// Messages kept for the role at most (older ones are dropped).
const MAX_KEPT_MESSAGES: usize = 1024;

/// Chunks in flight at most: bounds memory spent on read-ahead.
const DEPTH: usize = 16;
/// Bytes per read of the peer's stream, at most (larger than the daemon's
/// socket BufReader, so those reads go straight into the chunk).
const CHUNK: usize = 64 * 1024;
/// The pump's first reads: a sender's input is mostly requests of a few
/// bytes, so its chunks start this small and grow (4x, up to CHUNK) only
/// while reads fill them, as block sums and uploaded data do.
const FIRST_CHUNK: usize = 4 * 1024;
/// Reads of at most this many bytes travel as copies (see the pump): the
/// requests a busy sender leaves queued are a few bytes each. Larger reads
/// (block sums, data) keep the chunk: copying those, in sizes that vary,
/// fragmented the heap (measured: +500 KiB peak on a 1 GiB delta).
const SMALL_READ: usize = 1024;

/// Start pumping `demux` on a thread.
pub fn spawn<R: Read + Send + 'static>(mut demux: Demux<R>) -> InputReader {
    let (tx, rx) = sync_channel(DEPTH);
    let (recycle, recycled) = sync_channel::<IoBuf>(DEPTH + 2);
    std::thread::spawn(move || {
        // Messages the demultiplexer queued before the pump took over.
        while let Some(m) = demux.take_message() {
            if tx.send(Input::Msg(m)).is_err() {
                return;
            }
        }
        let mut pieces = Vec::new();
        // A chunk buffer kept for the next read (its data went out as a copy).
        let mut spare: Option<IoBuf> = None;
        let mut chunk = FIRST_CHUNK;
        loop {
            let mut buf = spare
                .take()
                .or_else(|| recycled.try_recv().ok())
                .unwrap_or_default();
            buf.resize(chunk);
            let n = match demux.read_chunk(&mut buf, &mut pieces) {
                Ok(0) => {
                    let _ = tx.send(Input::End(ProtoError::Io(
                        io::ErrorKind::UnexpectedEof.into(),
                    )));
                    return;
                }
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Input::End(from_io(e)));
                    return;
                }
            };
            if n == chunk {
                chunk = (chunk * 4).min(CHUNK);
            }
            let all_data = pieces.iter().all(|p| matches!(p, Piece::Data(_)));
            if n <= SMALL_READ || !all_data {
                // A short read (requests trickling in while the role is busy)
                // goes out as a copy of its size: a full chunk buffer per
                // short read would hold up to DEPTH chunks for a few bytes.
                // Messages among the data go out each in its place.
                let mut data = Vec::new();
                for p in pieces.drain(..) {
                    match p {
                        Piece::Data(r) => data.extend_from_slice(&buf[r]),
                        Piece::Msg(m) => {
                            if !data.is_empty() {
                                let len = data.len();
                                let chunk = std::mem::take(&mut data);
                                if tx
                                    .send(Input::Data(
                                        Chunk::Copy(chunk),
                                        std::iter::once(0..len).collect(),
                                    ))
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            if tx.send(Input::Msg(m)).is_err() {
                                return;
                            }
                        }
                    }
                }
                if !data.is_empty() {
                    let len = data.len();
                    if tx
                        .send(Input::Data(
                            Chunk::Copy(data),
                            std::iter::once(0..len).collect(),
                        ))
                        .is_err()
                    {
                        return;
                    }
                }
                spare = Some(buf);
                continue;
            }
            // The common case: all data, sent without a copy.
            let ranges: Vec<Range<usize>> = pieces
                .drain(..)
                .filter_map(|p| match p {
                    Piece::Data(r) => Some(r),
                    Piece::Msg(_) => None,
                })
                .collect();
            // `buf` keeps its length (the ranges say what is data), so
            // it needs no zeroing when it comes back.
            if !ranges.is_empty() && tx.send(Input::Data(Chunk::Read(buf), ranges)).is_err() {
                return;
            }
        }
    });
    InputReader::with_source(Source::Pump { rx, recycle })
}

/// An input reader without a thread: the role reads the peer itself, in
/// the same chunks as the pump would. For a role that never waits on its
/// own output while the peer waits on it (the receiver: the generator
/// writes, and the peer's sender always drains), this saves a thread
/// hand-off per chunk. `ready` then only reports data already read.
pub fn inline<R: Read + Send + 'static>(mut demux: Demux<R>) -> InputReader {
    // Messages the demultiplexer queued before we took over come first.
    let queued: Vec<Message> = std::iter::from_fn(|| demux.take_message()).collect();
    let mut r = InputReader::with_source(Source::Inline(Box::new(demux)));
    r.pieces.extend(queued.into_iter().map(Piece::Msg));
    r
}

impl InputReader {
    fn with_source(source: Source) -> Self {
        InputReader {
            source,
            buf: Chunk::default(),
            pieces: std::collections::VecDeque::new(),
            scratch: Vec::new(),
            pos: 0,
            end: 0,
            messages: Vec::new(),
            ended: None,
            pending_end: None,
            consumed: 0,
        }
    }

    /// Discard input until the peer ends the stream (EOF, error or its
    /// MSG_ERROR_EXIT) or `limit` passes; true when it was its MSG_ERROR_EXIT.
    pub fn wait_end(mut self, limit: std::time::Duration) -> bool {
        let is_exit = |e: &ProtoError| matches!(e, ProtoError::PeerExit(_));
        if let Some(e) = self.ended.as_ref().or(self.pending_end.as_ref()) {
            return is_exit(e);
        }
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            match &mut self.source {
                Source::Pump { rx, .. } => match rx.recv_timeout(left) {
                    Ok(Input::End(e)) => return is_exit(&e),
                    Err(_) => return false,
                    Ok(_) => {}
                },
                Source::Inline(src) => {
                    // The caller set a receive timeout, so this returns in time.
                    let buf = self.buf.read_buf(CHUNK);
                    match src.read_chunk(buf, &mut self.scratch) {
                        Ok(0) => return false,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock
                                    | io::ErrorKind::TimedOut
                                    | io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => return is_exit(&from_io(e)),
                    }
                }
            }
        }
    }

    /// Move to the next data of the current chunk (messages on the way are
    /// set aside); false when the chunk is used up (a pumped buffer then
    /// goes back to the pump).
    fn next_in_chunk(&mut self) -> bool {
        while self.pos >= self.end {
            match self.pieces.pop_front() {
                Some(Piece::Data(r)) => {
                    self.pos = r.start;
                    self.end = r.end;
                }
                Some(Piece::Msg(m)) => self.keep(m),
                None => {
                    if let Source::Pump { recycle, .. } = &self.source {
                        if let Chunk::Read(b) = std::mem::take(&mut self.buf) {
                            if b.capacity() >= FIRST_CHUNK {
                                let _ = recycle.try_send(b);
                            }
                        }
                    }
                    return false;
                }
            }
        }
        true
    }

    /// Take a chunk from the pump.
    fn set_chunk(&mut self, buf: Chunk, ranges: Vec<Range<usize>>) {
        self.buf = buf;
        self.pieces.extend(ranges.into_iter().map(Piece::Data));
        self.pos = 0;
        self.end = 0;
    }

    /// Whether a read would return without waiting for the peer: data is
    /// buffered or already pumped, or the input has ended. A role flushes
    /// its output before it waits, and only then (as upstream's io.c does),
    /// so answers to requests that arrive together go out together.
    pub fn ready(&mut self) -> bool {
        use std::sync::mpsc::TryRecvError;
        loop {
            if self.next_in_chunk() || self.ended.is_some() || self.pending_end.is_some() {
                return true;
            }
            let Source::Pump { rx, .. } = &self.source else {
                return false;
            };
            match rx.try_recv() {
                Ok(Input::Data(b, r)) => self.set_chunk(b, r),
                Ok(Input::Msg(m)) => self.keep(m),
                Ok(Input::End(e)) => self.pending_end = Some(e),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Keep a message for the role; bounded, so a peer flooding messages
    /// cannot grow memory.
    fn keep(&mut self, m: Message) {
        if self.messages.len() >= MAX_KEPT_MESSAGES {
            self.messages.remove(0);
        }
        self.messages.push(m);
    }

    /// The end of input as the role sees it (remembered for later reads).
    fn end_with(&mut self, e: ProtoError) -> io::Error {
        let err = match &e {
            ProtoError::PeerExit(c) => io::Error::other(ProtoError::PeerExit(*c)),
            ProtoError::Io(x) => io::Error::new(x.kind(), x.to_string()),
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        };
        self.ended = Some(e);
        err
    }

    fn refill(&mut self) -> io::Result<bool> {
        if let Some(e) = &self.ended {
            return Err(match e {
                ProtoError::PeerExit(c) => io::Error::other(ProtoError::PeerExit(*c)),
                other => io::Error::new(io::ErrorKind::UnexpectedEof, other.to_string()),
            });
        }
        if let Some(e) = self.pending_end.take() {
            return Err(self.end_with(e));
        }
        let next = match &mut self.source {
            Source::Pump { rx, .. } => rx.recv(),
            Source::Inline(src) => {
                let buf = self.buf.read_buf(CHUNK);
                let r = loop {
                    match src.read_chunk(buf, &mut self.scratch) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        r => break r,
                    }
                };
                return match r {
                    Ok(0) => {
                        Err(self.end_with(ProtoError::Io(io::ErrorKind::UnexpectedEof.into())))
                    }
                    Ok(_) => {
                        self.pieces.extend(self.scratch.drain(..));
                        self.pos = 0;
                        self.end = 0;
                        Ok(true)
                    }
                    Err(e) => Err(self.end_with(from_io(e))),
                };
            }
        };
        match next {
            Ok(Input::Data(b, r)) => {
                self.set_chunk(b, r);
                Ok(true)
            }
            Ok(Input::Msg(m)) => {
                self.keep(m);
                Ok(false)
            }
            Ok(Input::End(e)) => Err(self.end_with(e)),
            Err(_) => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl Read for InputReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while !self.next_in_chunk() {
            self.refill()?;
        }
        let n = out.len().min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.consumed += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::mux::{frame, MsgCode};

    #[test]
    fn inline_reader_reads_like_the_pump() {
        let mut s = frame(MsgCode::Info, b"early");
        for i in 0..100u32 {
            s.extend(frame(MsgCode::Data, &vec![i as u8; 3000]));
            if i == 60 {
                s.extend(frame(MsgCode::Info, b"m60"));
            }
        }
        let mut d = Demux::new(std::io::Cursor::new(s));
        d.set_mux(true);
        let mut input = inline(d);
        assert!(!input.ready());
        let mut all = Vec::new();
        let mut b = [0u8; 1000];
        while let Ok(n) = input.read(&mut b) {
            all.extend_from_slice(&b[..n]);
            if all.len() == 61 * 3000 {
                // The message after block 60 is not taken before its place.
                assert_eq!(input.messages.len(), 1);
            }
        }
        let want: Vec<u8> = (0..100u32).flat_map(|i| vec![i as u8; 3000]).collect();
        assert_eq!(all, want);
        let msgs: Vec<Vec<u8>> = input.messages.iter().map(|m| m.payload.clone()).collect();
        assert_eq!(msgs, [&b"early"[..], b"m60"]);
    }

    #[test]
    fn pumped_data_and_messages_arrive_in_order() {
        let mut s = Vec::new();
        for i in 0..200u32 {
            s.extend(frame(MsgCode::Data, &vec![i as u8; 1000 + i as usize]));
            if i % 50 == 0 {
                s.extend(frame(MsgCode::Info, format!("m{i}").as_bytes()));
            }
        }
        let mut d = Demux::new(std::io::Cursor::new(s));
        d.set_mux(true);
        let mut input = spawn(d);
        let mut all = Vec::new();
        let mut b = [0u8; 777];
        while let Ok(n) = input.read(&mut b) {
            all.extend_from_slice(&b[..n]);
        }
        let want: Vec<u8> = (0..200u32)
            .flat_map(|i| vec![i as u8; 1000 + i as usize])
            .collect();
        assert_eq!(all, want);
        let msgs: Vec<Vec<u8>> = input.messages.iter().map(|m| m.payload.clone()).collect();
        assert_eq!(msgs, [&b"m0"[..], b"m50", b"m100", b"m150"]);
    }

    /// A peer whose bytes trickle in (a few per read).
    struct Trickle(std::io::Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn short_reads_do_not_each_hold_a_chunk_buffer() {
        let mut s = Vec::new();
        for i in 0..400u32 {
            s.extend(frame(MsgCode::Data, &i.to_le_bytes()));
        }
        let mut d = Demux::new(Trickle(std::io::Cursor::new(s)));
        d.set_mux(true);
        let mut input = spawn(d);
        // Let the pump fill its channel while the role reads nothing.
        std::thread::sleep(std::time::Duration::from_millis(200));
        let Source::Pump { rx, .. } = &input.source else {
            panic!("not pumped");
        };
        let (mut held, mut chunks, mut data) = (0, 0, Vec::new());
        while let Ok(item) = rx.try_recv() {
            if let Input::Data(b, ranges) = item {
                held += b.capacity();
                chunks += 1;
                for r in ranges {
                    data.extend_from_slice(&b[r]);
                }
            }
        }
        assert!(chunks >= DEPTH, "{chunks} chunks queued");
        assert!(held < CHUNK, "{held} bytes held by {chunks} queued chunks");
        let mut b = [0u8; 100];
        while let Ok(n) = input.read(&mut b) {
            data.extend_from_slice(&b[..n]);
        }
        let want: Vec<u8> = (0..400u32).flat_map(|i| i.to_le_bytes()).collect();
        assert_eq!(data, want);
    }
}
