//! `rrsync --server [--sender] OPTIONS . PATH...`: the program a remote
//! shell (or a stock client's `--rsync-path=rrsync`) starts on the far side
//! (upstream: main.c start_server). The version exchange happens on
//! stdin/stdout, then the shared server roles (`role::server`) run with no
//! module around them.

use crate::cli::options::Options;
use crate::exit::*;
use crate::protocol::PROTOCOL_VERSION;
use crate::role::server::{self, ServerEnv};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;

/// The oldest protocol a peer may announce before we call it garbage
/// (upstream: MIN_PROTOCOL_VERSION checks come after this sanity bound).
const SANE_MIN: i32 = 20;
/// The newest protocol a peer may announce before we call it garbage.
const SANE_MAX: i32 = 40;

/// Serve one transfer on stdin/stdout. `rest` holds `.` and the paths;
/// `args` is the whole command line (read again with `-s`).
pub fn run(opts: Options, rest: Vec<String>, args: &[String]) -> i32 {
    let (mut input, output) = match stdio() {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("stdio: {e}");
            return RERR_IPC;
        }
    };
    // -s (--secluded-args): the command line stops after the options; the
    // rest comes on stdin before the version exchange, NUL-separated, its
    // first word a stand-in for argv[0] (upstream main's read_args).
    let (opts, rest) = if opts.protect_args {
        let more = match read_secluded_args(&mut input) {
            Ok(v) => v,
            Err(e) => {
                report(&format!("rsync: reading the secluded arguments: {e}"));
                return RERR_PROTOCOL;
            }
        };
        let options_end = args
            .iter()
            .position(|a| !a.starts_with('-'))
            .unwrap_or(args.len());
        let mut all: Vec<String> = args[..options_end].to_vec();
        all.extend(more.into_iter().skip(1));
        match crate::cli::options::parse(&all) {
            Ok((o, r)) => (o, r),
            Err(e) => {
                report(&e.line());
                return RERR_SYNTAX;
            }
        }
    } else {
        (opts, rest)
    };
    let mut paths: Vec<Vec<u8>> = match rest.split_first() {
        Some((dot, p)) if dot == "." => p.iter().map(|s| s.as_bytes().to_vec()).collect(),
        _ => rest.iter().map(|s| s.as_bytes().to_vec()).collect(),
    };
    // Secluded paths reach us past any shell: wildcards are ours to expand
    // (upstream read_args' glob_expand).
    if opts.protect_args {
        let g = crate::fs::glob::Glob {
            base: std::path::Path::new("."),
            confine: None,
            excluded: None,
        };
        paths = paths.iter().flat_map(|p| g.expand(p)).collect();
    }
    // --files-from=FILE (a client's --files-from=:FILE) is opened as the
    // options are taken: a missing one is an option error (upstream
    // parse_arguments).
    let mut files_from = None;
    if let Some(ff) = opts.files_from.as_deref().filter(|f| *f != "-") {
        match server::server_files_from(ff, false, None) {
            Ok(d) => files_from = Some(std::sync::Arc::new(d)),
            Err(m) => {
                report(&format!("rsync: {m}"));
                report(&crate::exit::line(RERR_SYNTAX, "main.c", 1, "server"));
                return RERR_SYNTAX;
            }
        }
    }
    if let (true, Some(why)) = (
        opts.munge_links(),
        crate::role::generator::munge_links_unsafe(),
    ) {
        report(&why);
        report(&format!(
            "rsync error: requested action not supported (code {RERR_UNSUPPORTED})"
        ));
        return RERR_UNSUPPORTED;
    }
    serve(opts, paths, files_from, input, output)
}

/// The version exchange (upstream: compat.c setup_protocol, remote-shell
/// branch), then the role.
pub fn serve<R: Read + Send + 'static, W: Write + Send>(
    opts: Options,
    paths: Vec<Vec<u8>>,
    files_from: Option<std::sync::Arc<Vec<u8>>>,
    mut r: R,
    mut w: W,
) -> i32 {
    let ours = opts
        .protocol
        .map(i32::from)
        .unwrap_or(PROTOCOL_VERSION as i32);
    if w.write_all(&ours.to_le_bytes())
        .and_then(|_| w.flush())
        .is_err()
    {
        return RERR_STREAMIO;
    }
    let mut b = [0u8; 4];
    if r.read_exact(&mut b).is_err() {
        return RERR_STREAMIO;
    }
    let theirs = i32::from_le_bytes(b);
    if !(SANE_MIN..=SANE_MAX).contains(&theirs) {
        report(&format!(
            "protocol version mismatch -- is your shell clean?\n(see the rsync manpage for an explanation)\nrsync error: protocol incompatibility (code {RERR_PROTOCOL})"
        ));
        return RERR_PROTOCOL;
    }
    if theirs < crate::protocol::MIN_PROTOCOL_VERSION as i32 {
        report(&format!(
            "protocol version mismatch -- client speaks {theirs}, rrsync needs {} or later",
            crate::protocol::MIN_PROTOCOL_VERSION
        ));
        return RERR_PROTOCOL;
    }
    let proto = theirs.min(ours) as u8;
    let mut opts = opts;
    opts.server = true;
    opts.local_server = std::env::var_os(crate::client::connect::LOCAL_SERVER_ENV).is_some();
    // upstream setup_protocol's checks, on the server's stderr before
    // multiplexing (the client makes the same ones and says so too).
    let too_old = crate::client::checks::needs_protocol_29(&opts, proto).or_else(|| {
        (proto < 30 && opts.xattrs > 0 && !opts.local_server)
            .then(|| format!("--xattrs requires protocol 30 or higher (negotiated {proto})."))
    });
    if let Some(why) = too_old {
        report(&why);
        let role = if opts.sender { "sender" } else { "Receiver" };
        report(&crate::exit::line(RERR_PROTOCOL, "compat.c", 676, role));
        return RERR_PROTOCOL;
    }
    let env = ServerEnv {
        munge_symlinks: opts.munge_links(),
        files_from,
        ..Default::default()
    };
    server::run(&env, proto, opts, paths, r, w)
}

/// An error before multiplexing starts goes to stderr, which the remote
/// shell forwards to the client (as upstream's msgs2stderr).
fn report(msg: &str) {
    // One write per line: the client's own copy of a message may be
    // written to the same terminal at the same moment.
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{msg}\n").as_bytes());
}

/// Our own handles on stdin and stdout (unbuffered; the roles buffer), in
/// blocking mode: a client may hand us descriptors it made non-blocking
/// (stock rsync does, and waits with select; our roles block in threads).
/// The words of a secluded argument list (NUL-separated, up to the empty
/// one), read a byte at a time so nothing after it is taken; at most 4096.
fn read_secluded_args(input: &mut File) -> Result<Vec<String>, String> {
    const MAX_WORDS: usize = 4096;
    let words = crate::protocol::greeting::read_arg_list(input, true, MAX_WORDS)
        .map_err(|e| e.to_string())?;
    if words.len() > MAX_WORDS {
        return Err("too many arguments".into());
    }
    Ok(words
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect())
}

fn stdio() -> std::io::Result<(File, File)> {
    let i = std::io::stdin().as_fd().try_clone_to_owned()?;
    let o = std::io::stdout().as_fd().try_clone_to_owned()?;
    set_blocking(&i)?;
    set_blocking(&o)?;
    Ok((File::from(i), File::from(o)))
}

fn set_blocking(fd: &impl AsFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags);
    if flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    }
    Ok(())
}
