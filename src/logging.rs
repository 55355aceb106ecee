//! Diagnostics: `tracing` to stderr, filtered by `RRSYNC_LOG` (default:
//! warn for the daemon and `push`; off for the client and `--server`, whose
//! stderr is the user's terminal or the remote shell's channel, where stock
//! rsync prints nothing of the kind).
//! User-facing rsync messages are not logs; they go through the protocol or
//! the CLI's output functions.

/// Install the subscriber once (idempotent); `default` is the filter when
/// `RRSYNC_LOG` is not set.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RRSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
