//! Command line: dispatch between daemon, server, client and push modes, and
//! the rsync option grammar (`options`).

pub mod about;
pub mod options;
pub mod server;
pub mod size_arg;
pub mod stop_at;

use std::ffi::OsString;
use std::io::Write;

/// Entry point used by `main`; returns the process exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    let args: Vec<String> = args
        .into_iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let quiet_logs = args.first().map(String::as_str) != Some("push")
        && (args.iter().any(|a| a == "--server") || !args.iter().any(|a| a == "--daemon"));
    crate::logging::init(if quiet_logs { "off" } else { "warn" });
    if args.first().map(String::as_str) == Some("push") {
        return crate::push::run(args[1..].to_vec());
    }
    let server = args.iter().any(|a| a == "--server");
    let daemon = args.iter().any(|a| a == "--daemon");
    let (opts, rest) = match options::parse(&args) {
        Ok(v) => v,
        Err(e) => return usage_line(&e.line()),
    };
    if !server && !daemon {
        // Tools probe with `rrsync OPTION --version`: what we cannot do is unknown.
        if let Some(bad) = opts.seen.iter().find(|s| {
            about::UNSUPPORTED_CLIENT_OPTIONS.contains(&s.as_str()) && !opts.negated.contains(s)
        }) {
            let shown = match options::short_of(bad) {
                Some(c)
                    if args
                        .iter()
                        .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(c)) =>
                {
                    format!("-{c}")
                }
                _ => format!("--{bad}"),
            };
            return usage_line(&format!("rsync: {shown}: unknown option"));
        }
        let versions = opts.seen.iter().filter(|s| *s == "version").count();
        if versions >= 2 {
            print!("{}", about::version_json());
            return 0;
        }
        if versions == 1 {
            print!("{}", about::version_text());
            return 0;
        }
        if opts.seen.iter().any(|s| s == "help") {
            print!("{}", about::usage());
            return 0;
        }
        if opts.info.iter().any(|w| w.eq_ignore_ascii_case("help")) {
            print!("{}", about::info_help());
            return 0;
        }
        if opts.debug.iter().any(|w| w.eq_ignore_ascii_case("help")) {
            print!("{}", about::debug_help());
            return 0;
        }
        // A lone `-h` (or `-hh`, `-hv`...) is --help (upstream: its old meaning).
        if opts.human > 0 && args.len() == 1 {
            print!("{}", about::usage());
            return 0;
        }
        if rest.is_empty() {
            print!("{}", about::usage());
            let _ = std::io::stdout().flush();
            eprintln!(
                "rsync error: syntax or usage error (code 1) at main.c(1) [client=rrsync-{}]",
                env!("CARGO_PKG_VERSION")
            );
            return 1;
        }
    } else if opts.seen.iter().any(|s| s == "version") && !server {
        print!("{}", about::version_text());
        return 0;
    }
    if opts.daemon && !opts.server {
        return crate::daemon::run_daemon(&opts, &rest);
    }
    if opts.server && !opts.daemon {
        crate::interrupt::install(if opts.sender { "sender" } else { "receiver" });
        return server::run(opts, rest, &args);
    }
    if opts.server && opts.daemon {
        crate::interrupt::install("daemon");
        return crate::daemon::run_rsh_daemon(&opts);
    }
    let mut opts = opts;
    // upstream parse_arguments: without -s/--no-s (or --old-args) on the
    // command line, RSYNC_PROTECT_ARGS decides (a number, non-zero is on).
    if !opts.old_args && !opts.seen.iter().any(|s| s == "secluded-args") {
        if let Some(v) = std::env::var("RSYNC_PROTECT_ARGS")
            .ok()
            .filter(|v| !v.is_empty())
        {
            opts.protect_args = crate::sockopts::atoi(&v) != 0;
        }
    }
    if opts.protect_args && opts.old_args {
        return usage_line("rsync: --secluded-args conflicts with --old-args.");
    }
    crate::interrupt::install("client");
    crate::client::run(opts, rest)
}

/// An option error: rsync's message line and exit 1.
fn usage_line(line: &str) -> i32 {
    eprintln!("{line}");
    eprintln!(
        "rsync error: syntax or usage error (code 1) at options.c(1) [client=rrsync-{}]",
        env!("CARGO_PKG_VERSION")
    );
    1
}
