//! Diagnostics: `tracing` to stderr, filtered by `RRSYNC_LOG` (default: warn).
//! User-facing rsync messages are not logs; they go through the protocol or
//! the CLI's output functions.

/// Install the subscriber once (idempotent).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RRSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
