//! The rsync roles, transport-agnostic: protocol setup (`setup`), the
//! background input pump (`input`) and the sender (`sender`). The generator
//! and receiver come with uploads.

pub mod bwlimit;
pub mod fuzzy;
pub mod generator;
pub mod hlink;
pub mod input;
pub mod log;
pub mod receiver;
pub mod sender;
pub mod server;
pub mod setup;
pub mod stats;
pub mod xattrs;

/// Errors of a role run, each mapped to an rsync exit code at the edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoleError {
    /// Wire-level failure.
    #[error(transparent)]
    Proto(#[from] crate::protocol::ProtoError),
    /// The peer broke the protocol (bad index, unexpected request...).
    #[error("{0}")]
    Protocol(String),
    /// Options that cannot work together or are not supported.
    #[error("{0}")]
    Unsupported(String),
    /// The request is not allowed here (read-only / write-only module...): exit 1 like stock.
    #[error("{0}")]
    Refused(String),
    /// Local file selection failed (chdir to the source...).
    #[error("{0}")]
    FileSelect(String),
    /// A local file operation of the receiver failed.
    #[error("{0}")]
    FileIo(String),
    /// The destination could not be made, before the receiver starts
    /// (upstream get_local_name: its messages name the "Receiver").
    #[error("{0}")]
    DestIo(String),
    /// The peer asked us to exit with this code.
    #[error("peer exited with code {0}")]
    PeerExit(i32),
}

impl From<std::io::Error> for RoleError {
    fn from(e: std::io::Error) -> Self {
        RoleError::Proto(crate::protocol::mux::from_io(e))
    }
}

impl RoleError {
    /// The rsync exit code for this error.
    pub fn exit_code(&self) -> i32 {
        use crate::exit::*;
        use crate::protocol::ProtoError;
        match self {
            RoleError::Proto(ProtoError::PeerExit(c)) | RoleError::PeerExit(c) => *c,
            RoleError::Proto(ProtoError::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                RERR_TIMEOUT
            }
            RoleError::Proto(ProtoError::Io(_)) => RERR_STREAMIO,
            RoleError::Proto(ProtoError::UnexpectedTag(_)) => RERR_STREAMIO,
            RoleError::Proto(_) => RERR_PROTOCOL,
            RoleError::Protocol(_) => RERR_PROTOCOL,
            RoleError::Unsupported(_) => RERR_UNSUPPORTED,
            RoleError::FileSelect(_) => RERR_FILESELECT,
            RoleError::FileIo(_) | RoleError::DestIo(_) => RERR_FILEIO,
            RoleError::Refused(_) => RERR_SYNTAX,
        }
    }
}
