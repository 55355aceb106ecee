//! Command line: dispatch between daemon, server, client and push modes, and
//! the rsync option grammar (`options`).

pub mod options;
pub mod server;

use std::ffi::OsString;

/// Entry point used by `main`; returns the process exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    crate::logging::init();
    let args: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.iter().any(|a| a == "--version" || a == "-V") && !args.iter().any(|a| a == "--server") {
        println!(
            "rrsync  version {}  protocol version {}",
            env!("CARGO_PKG_VERSION"),
            crate::protocol::PROTOCOL_VERSION
        );
        return 0;
    }
    let (opts, rest) = match options::parse(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("rsync: {e}");
            eprintln!("rsync error: syntax or usage error (code 1)");
            return 1;
        }
    };
    if opts.daemon && !opts.server {
        return crate::daemon::run_daemon(&opts, &rest);
    }
    if opts.server && !opts.daemon {
        return server::run(opts, rest);
    }
    crate::client::run(opts, rest)
}
