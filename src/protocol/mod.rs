//! Sans-I/O wire format: pure encode/decode over `std::io::Read` and `Vec<u8>`,
//! no sockets, no files. Every decoder bounds what it reads.

pub mod flist;
pub mod greeting;
pub mod handshake;
pub mod mux;
pub mod ndx;
pub mod sums;
pub mod text;
pub mod tokens;
pub mod varint;
pub mod xattr;

/// Highest protocol version we speak.
pub const PROTOCOL_VERSION: u8 = 32;
/// Lowest protocol version we accept.
pub const MIN_PROTOCOL_VERSION: u8 = 27;
/// Longest path name accepted off the wire (upstream MAXPATHLEN).
pub const MAX_PATH_LEN: usize = 4096;

/// Errors of the wire layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The underlying stream failed or ended early.
    #[error("{0}")]
    Io(std::io::Error),
    /// A value read off the wire is out of its allowed range.
    #[error("protocol error: {0}")]
    Invalid(String),
    /// The peer sent a multiplexed message tag we do not know.
    #[error("unexpected tag {0}")]
    UnexpectedTag(u8),
    /// The peer announced it is exiting with this code.
    #[error("peer exited with code {0}")]
    PeerExit(i32),
}

impl From<std::io::Error> for ProtoError {
    /// An I/O error, unless it carries a wire error of ours (a reader that
    /// demultiplexes reports the peer's exit that way): then that error.
    fn from(e: std::io::Error) -> Self {
        if e.get_ref().is_some_and(|i| i.is::<ProtoError>()) {
            let kind = e.kind();
            return match e.into_inner().map(|b| b.downcast::<ProtoError>()) {
                Some(Ok(p)) => *p,
                Some(Err(b)) => ProtoError::Io(std::io::Error::new(kind, b.to_string())),
                None => ProtoError::Io(kind.into()),
            };
        }
        ProtoError::Io(e)
    }
}

impl ProtoError {
    /// Shorthand for an out-of-range value.
    pub fn invalid(msg: impl Into<String>) -> Self {
        ProtoError::Invalid(msg.into())
    }

    /// True when the stream simply ended (upstream reports "connection unexpectedly closed").
    pub fn is_eof(&self) -> bool {
        matches!(self, ProtoError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
    }
}

/// Result of the wire layer.
pub type Result<T> = std::result::Result<T, ProtoError>;
