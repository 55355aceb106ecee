//! The input pump: a thread that keeps reading the peer's stream (demuxing
//! it) while the role writes, as upstream's non-blocking io.c does, so
//! neither side can block the other. Data reaches the role through a bounded
//! channel; out-of-band messages travel in the same channel, in order.

use crate::protocol::mux::{from_io, Demux, Message};
use crate::protocol::ProtoError;
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};

/// One thing read from the peer.
#[derive(Debug)]
pub enum Input {
    /// Protocol-stream bytes.
    Data(Vec<u8>),
    /// An out-of-band message.
    Msg(Message),
    /// Reading failed or ended; nothing follows.
    End(ProtoError),
}

/// The role's side of the pump: a `Read` over the data, with messages set aside.
pub struct InputReader {
    rx: Receiver<Input>,
    buf: Vec<u8>,
    pos: usize,
    /// Messages received (taken by the role when it wants them).
    pub messages: Vec<Message>,
    ended: Option<ProtoError>,
    /// The end of input, seen by [`InputReader::ready`] and not yet reported.
    pending_end: Option<ProtoError>,
}

/// Chunks in flight at most (each up to 64 KiB): bounds memory spent on read-ahead.
const DEPTH: usize = 16;

/// Start pumping `demux` on a thread.
pub fn spawn<R: Read + Send + 'static>(mut demux: Demux<R>) -> InputReader {
    let (tx, rx) = sync_channel(DEPTH);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let r = demux.read(&mut buf);
            while let Some(m) = demux.take_message() {
                if tx.send(Input::Msg(m)).is_err() {
                    return;
                }
            }
            match r {
                Ok(0) => {
                    let _ = tx.send(Input::End(ProtoError::Io(
                        io::ErrorKind::UnexpectedEof.into(),
                    )));
                    return;
                }
                Ok(n) => {
                    if tx.send(Input::Data(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Input::End(from_io(e)));
                    return;
                }
            }
        }
    });
    InputReader {
        rx,
        buf: Vec::new(),
        pos: 0,
        messages: Vec::new(),
        ended: None,
        pending_end: None,
    }
}

impl InputReader {
    /// Discard input until the peer ends the stream (EOF, error or its
    /// MSG_ERROR_EXIT) or `limit` passes.
    pub fn wait_end(self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.rx.recv_timeout(left) {
                Ok(Input::End(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Whether a read would return without waiting for the peer: data is
    /// buffered or already pumped, or the input has ended. A role flushes
    /// its output before it waits, and only then (as upstream's io.c does),
    /// so answers to requests that arrive together go out together.
    pub fn ready(&mut self) -> bool {
        use std::sync::mpsc::TryRecvError;
        loop {
            if self.pos < self.buf.len() || self.ended.is_some() || self.pending_end.is_some() {
                return true;
            }
            match self.rx.try_recv() {
                Ok(Input::Data(d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Ok(Input::Msg(m)) => self.messages.push(m),
                Ok(Input::End(e)) => self.pending_end = Some(e),
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => return true,
            }
        }
    }

    fn refill(&mut self) -> io::Result<bool> {
        if let Some(e) = &self.ended {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, e.to_string()));
        }
        let next = match self.pending_end.take() {
            Some(e) => Ok(Input::End(e)),
            None => self.rx.recv(),
        };
        match next {
            Ok(Input::Data(d)) => {
                self.buf = d;
                self.pos = 0;
                Ok(true)
            }
            Ok(Input::Msg(m)) => {
                if m.code == crate::protocol::mux::MsgCode::ErrorExit {
                    // The pump reports the exit itself right after.
                }
                self.messages.push(m);
                Ok(false)
            }
            Ok(Input::End(e)) => {
                let err = match &e {
                    ProtoError::PeerExit(c) => io::Error::other(ProtoError::PeerExit(*c)),
                    ProtoError::Io(x) => io::Error::new(x.kind(), x.to_string()),
                    other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
                };
                self.ended = Some(e);
                Err(err)
            }
            Err(_) => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

impl Read for InputReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            self.refill()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
