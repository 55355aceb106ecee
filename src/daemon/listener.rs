//! The daemon process (upstream: clientserver.c daemon_main,
//! socket.c start_accept_loop): loads the config, listens, and serves each
//! connection in a forked child whose stdin/stdout is the accepted socket
//! (the same path inetd/xinetd use), so per-connection chroot and uid
//! changes never touch the listener. As upstream, the child re-reads the
//! config, so a changed file counts from the next connection; forking
//! without exec keeps the listener's pages shared, which is most of a
//! session's memory.

use super::config::{self, DaemonConfig};
use crate::cli::options::Options;
use crate::exit::*;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

/// The embedded configuration used when no config file exists: one
/// read-only example module on 127.0.0.1:8730 (README's first command).
pub const EMBEDDED_CONFIG: &str = "# rrsync embedded example configuration\n\
port = 8730\n\
address = 127.0.0.1\n\
use chroot = no\n\
\n\
[example]\n\
    path = %EXAMPLE_DIR%\n\
    comment = rrsync example module\n\
    read only = yes\n";

/// Where the config comes from when `--config` is not given: /etc/rsyncd.conf,
/// or, when that does not exist, the embedded example written to a temp dir.
fn config_path(opts: &Options) -> PathBuf {
    if let Some(c) = &opts.config {
        return PathBuf::from(c);
    }
    let sys = PathBuf::from(config::DEFAULT_CONFIG_PATH);
    if sys.exists() {
        return sys;
    }
    match write_embedded() {
        Ok(p) => p,
        Err(_) => sys,
    }
}

fn write_embedded() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("rrsync-example-{}", nix::unistd::getuid()));
    let module = base.join("module");
    std::fs::create_dir_all(module.join("docs"))?;
    std::fs::write(
        module.join("hello.txt"),
        b"Hello from the rrsync example module.\n",
    )?;
    std::fs::write(
        module.join("docs/README"),
        b"Pull this module with: rsync -av rsync://127.0.0.1:8730/example/ dest/\n",
    )?;
    let conf = base.join("rsyncd.conf");
    std::fs::write(
        &conf,
        EMBEDDED_CONFIG.replace("%EXAMPLE_DIR%", &module.to_string_lossy()),
    )?;
    Ok(conf)
}

fn load(opts: &Options) -> Result<DaemonConfig, String> {
    let mut cfg = config::load(&config_path(opts)).map_err(|e| e.to_string())?;
    for d in &opts.dparams {
        cfg.apply_dparam(d).map_err(|e| e.to_string())?;
    }
    Ok(cfg)
}

/// Is fd 0 a socket (inetd mode)?
fn stdin_is_socket() -> bool {
    nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(0).is_ok()
}

/// `rrsync --server --daemon .`: a daemon session on stdin/stdout, started by
/// a client's remote shell (upstream am_daemon = -1); the config is
/// `--config`, else `rsyncd.conf` in the home directory, else the system one.
pub fn run_rsh_daemon(opts: &Options) -> i32 {
    let mut opts = opts.clone();
    if opts.config.is_none() {
        let home = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join("rsyncd.conf"))
            .filter(|p| p.exists());
        opts.config = Some(
            home.unwrap_or_else(|| config_path(&opts))
                .to_string_lossy()
                .into_owned(),
        );
    }
    let cfg = match load(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rsync: {e}");
            eprintln!("rsync error: syntax or usage error (code 1)");
            return RERR_SYNTAX;
        }
    };
    open_log(&opts, &cfg);
    serve_stdin(&cfg)
}

/// The daemon's log: `--log-file`, else the config's `log file`, else syslog.
fn open_log(opts: &Options, cfg: &DaemonConfig) {
    let path = opts.log_file.as_deref().or(cfg.global.log_file());
    super::log::init(
        path,
        cfg.global.syslog_facility().0,
        Some(cfg.global.syslog_tag()).filter(|t| !t.is_empty()),
    );
}

/// `rrsync --daemon ...`: returns the exit code.
pub fn run_daemon(opts: &Options, _rest: &[String]) -> i32 {
    let mut opts = opts.clone();
    if opts.config.is_none() {
        opts.config = Some(config_path(&opts).to_string_lossy().into_owned());
    }
    let opts = &opts;
    let cfg = match load(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rsync: {e}");
            eprintln!("rsync error: syntax or usage error (code 1)");
            return RERR_SYNTAX;
        }
    };
    open_log(opts, &cfg);
    if let Some(b) = opts.bwlimit.as_deref() {
        match crate::role::bwlimit::parse_kib(b) {
            Some(k) => {
                let _ = super::session::DAEMON_BWLIMIT.set(k);
            }
            None => {
                eprintln!("rsync: --bwlimit={b}: invalid number");
                eprintln!("rsync error: syntax or usage error (code 1)");
                return RERR_SYNTAX;
            }
        }
    }
    if stdin_is_socket() && opts.port.is_none() {
        return serve_stdin(&cfg);
    }
    listen(opts, cfg)
}

/// Serve the one connection on stdin/stdout (inetd mode and per-connection children).
fn serve_stdin(cfg: &DaemonConfig) -> i32 {
    let peer = nix::sys::socket::getpeername::<nix::sys::socket::SockaddrStorage>(0)
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "UNKNOWN".into());
    let peer_ip = peer
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']').to_string())
        .unwrap_or(peer);
    // TCP_NODELAY: our writes are buffered and flushed only where the
    // protocol turns, and a small flush held back by Nagle until the
    // client's delayed ACK cost 40 ms per session (the checksum seed after
    // the negotiation). A socket that is not TCP just refuses it.
    let _ = crate::sockopts::apply(std::io::stdin().as_fd(), "SO_KEEPALIVE TCP_NODELAY");
    let r = match nix::unistd::dup(std::io::stdin().as_fd()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return RERR_SOCKETIO,
    };
    let w = match nix::unistd::dup(std::io::stdout().as_fd()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return RERR_SOCKETIO,
    };
    // Buffered both ways: the demultiplexer reads 4-byte headers and small
    // items, which must not each cost a system call (the input pump's
    // reads outgrow the reader's buffer and then bypass it). The writer's buffer
    // only gathers small writes (lines before multiplexing, messages,
    // short frames): full frames from the multiplexer's own buffer go
    // past it in one write each.
    let outcome = super::session::serve(
        cfg,
        std::io::BufReader::with_capacity(8 * 1024, crate::sockopts::QuickAck(r)),
        std::io::BufWriter::with_capacity(8 * 1024, w),
        &peer_ip,
    );
    // Half-close so the client sees EOF after our last bytes, not a reset.
    if outcome.close == super::session::Close::HalfClose {
        let _ = nix::sys::socket::shutdown(1, nix::sys::socket::Shutdown::Write);
    } else if outcome.close == super::session::Close::Reset {
        let reset = nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        let _ = nix::sys::socket::setsockopt(
            &std::io::stdout().as_fd(),
            nix::sys::socket::sockopt::Linger,
            &reset,
        );
    }
    outcome.code
}

/// The shortest accept queue the listener has (`listen backlog` asks for more).
const MIN_BACKLOG: i32 = 1024;

/// The listening sockets (upstream open_socket_in): every address the
/// given one resolves to, or without one the wildcard address of each
/// family the host has (IPv4 and IPv6, the IPv6 socket IPv6-only), with
/// SO_REUSEADDR. Fails only when none could be bound.
fn bind_all(
    addr: Option<&str>,
    port: u16,
    backlog: i32,
) -> Result<Vec<std::net::TcpListener>, String> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
    let addrs: Vec<SocketAddr> = match addr {
        None => vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        ],
        Some(a) => {
            let host = a.trim_start_matches('[').trim_end_matches(']');
            match (host, port).to_socket_addrs() {
                Ok(v) => v.collect(),
                Err(e) => return Err(format!("rsync: getaddrinfo: bind address {a}: {e}")),
            }
        }
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for a in addrs {
        match bind_one(a, backlog) {
            Ok(l) => out.push(l),
            Err(e) => errors.push(format!("rsync: failed to bind to {a}: {e}")),
        }
    }
    if out.is_empty() {
        return Err(errors.join("\n"));
    }
    for e in errors {
        tracing::info!("{e}");
    }
    Ok(out)
}

fn bind_one(a: std::net::SocketAddr, backlog: i32) -> std::io::Result<std::net::TcpListener> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};
    let fam = if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket::socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if a.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(a),
    )?;
    let b = socket::Backlog::new(backlog).unwrap_or(socket::Backlog::MAXCONN);
    socket::listen(&fd, b)?;
    Ok(std::net::TcpListener::from(fd))
}

/// Write our pid into `path`, locked (upstream create_pid_file): what is
/// there and not a regular file is removed first, the file is opened
/// without following a symlink, its first bytes locked, then truncated and
/// written. The error is upstream's line ("failed to lock pid file P: ...").
fn create_pid_file(path: &str) -> Result<std::fs::File, String> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let fail = |what: &str, e: std::io::Error| {
        format!(
            "failed to {what} pid file {path}: {}",
            crate::fs::strerror(&e)
        )
    };
    let before = std::fs::symlink_metadata(path).ok();
    if let Some(m) = &before {
        if !m.file_type().is_file() {
            std::fs::remove_file(path).map_err(|e| fail("unlink", e))?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o664)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            let what = if before.as_ref().is_some_and(|m| m.file_type().is_file()) {
                "open"
            } else {
                "create"
            };
            fail(what, e)
        })?;
    super::access::lock_range(&f, 0, 4).map_err(|e| fail("lock", e))?;
    let opened = f.metadata().map_err(|e| fail("fstat opened", e))?;
    let now = std::fs::symlink_metadata(path).map_err(|e| fail("lstat", e))?;
    if opened.dev() != now.dev() || opened.ino() != now.ino() {
        return Err(fail(
            "verify stat info for",
            std::io::Error::from_raw_os_error(0),
        ));
    }
    f.set_len(0).map_err(|e| fail("truncate", e))?;
    f.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(|e| fail("write", e))?;
    Ok(f)
}

fn listen(opts: &Options, cfg: DaemonConfig) -> i32 {
    let port = opts.port.unwrap_or_else(|| cfg.global.listen_port());
    let addr = opts.address.clone().or_else(|| cfg.global.address.clone());
    if cfg.global.proxy_protocol
        && cfg
            .global
            .proxy_protocol_hosts
            .as_deref()
            .is_none_or(|h| h.trim().is_empty())
    {
        // As upstream: said while stderr is still open.
        eprintln!(
            "\"proxy protocol = true\" but \"proxy protocol hosts\" is unset: all connections will be rejected as untrusted proxy peers.  Set \"proxy protocol hosts\" to your trusted proxy's address."
        );
    }
    // `listen backlog`, but never below 1024: a burst of connections (a
    // fan-out, or someone opening a thousand and saying nothing) then
    // waits in the queue instead of having its handshakes dropped and
    // retried.
    let backlog = cfg.global.listen_backlog.max(MIN_BACKLOG);
    let listeners = match bind_all(addr.as_deref(), port, backlog) {
        Ok(l) => l,
        Err(msg) => {
            eprintln!("{msg}");
            eprintln!("rsync error: error in socket IO (code 10)");
            return RERR_SOCKETIO;
        }
    };
    let bind = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    // --sockopts, else the config's `socket options`, on the listening
    // socket (accepted connections inherit them), as upstream.
    let spec = opts
        .sockopts
        .clone()
        .or_else(|| cfg.global.socket_options.clone());
    if let Some(spec) = spec {
        for l in &listeners {
            for m in crate::sockopts::apply(l.as_fd(), &spec) {
                eprintln!("{m}");
                super::log::line(&m);
            }
        }
    }
    if !opts.no_detach {
        // Daemonize: fork, let the parent exit, start a new session.
        // SAFETY: single-threaded at this point; the child only continues normal execution.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
            Ok(nix::unistd::ForkResult::Child) => {
                let _ = nix::unistd::setsid();
            }
            Err(e) => {
                eprintln!("rsync: fork failed: {e}");
                return RERR_SOCKETIO;
            }
        }
    }
    // Held (and locked) while the daemon runs: a second daemon with the
    // same pid file fails to lock it.
    let _pid_lock = match cfg.global.pid_file.as_deref().filter(|p| !p.is_empty()) {
        Some(pf) => match create_pid_file(pf) {
            Ok(f) => Some(f),
            Err(msg) => {
                eprintln!("{msg}");
                super::log::line(&msg);
                return RERR_FILEIO;
            }
        },
        None => None,
    };
    let config = config_path(opts);
    tracing::info!("serving {} on {bind}", config.display());
    super::log::line(&format!(
        "rsyncd version {} starting, listening on port {port}",
        env!("CARGO_PKG_VERSION")
    ));
    let pid_file = cfg.global.pid_file.clone();
    drop(cfg);
    let code = accept_loop(opts, &listeners);
    if let Some(pf) = pid_file {
        let _ = std::fs::remove_file(pf);
    }
    super::log::line("sent 0 bytes  received 0 bytes  total size 0");
    code
}

/// Signals seen by the listener (set by the handlers, read by the loop).
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static HUP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Write end of the self-pipe that wakes the loop's poll from a handler.
static WAKE_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_signal(sig: nix::libc::c_int) {
    use std::sync::atomic::Ordering;
    match sig {
        nix::libc::SIGTERM | nix::libc::SIGINT => STOP.store(true, Ordering::SeqCst),
        nix::libc::SIGHUP => HUP.store(true, Ordering::SeqCst),
        _ => {}
    }
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte.
        unsafe {
            nix::libc::write(fd, b"x".as_ptr().cast(), 1);
        }
    }
}

const LOOP_SIGNALS: [nix::sys::signal::Signal; 4] = [
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGCHLD,
];

fn set_handlers(handler: nix::sys::signal::SigHandler) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigSet};
    let act = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    for sig in LOOP_SIGNALS {
        // SAFETY: the handler only touches atomics and calls write(2).
        let _ = unsafe { sigaction(sig, &act) };
    }
}

/// Reap finished sessions without waiting.
fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Accept until SIGTERM/SIGINT; each connection is served by a forked child.
fn accept_loop(opts: &Options, listeners: &[std::net::TcpListener]) -> i32 {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;
    let Ok((wake_r, wake_w)) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
    else {
        return RERR_SOCKETIO;
    };
    WAKE_FD.store(wake_w.as_raw_fd(), Ordering::SeqCst);
    set_handlers(nix::sys::signal::SigHandler::Handler(on_signal));
    let code = loop {
        reap();
        if STOP.load(Ordering::SeqCst) {
            break 0;
        }
        if HUP.swap(false, Ordering::SeqCst) {
            tracing::info!("SIGHUP: the config is re-read by every new connection");
        }
        let mut fds = vec![PollFd::new(wake_r.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            listeners
                .iter()
                .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!("poll: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let is_in = |f: &PollFd<'_>| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
        let woken = is_in(&fds[0]);
        let ready = fds[1..].iter().position(is_in);
        drop(fds);
        if woken {
            let mut sink = [0u8; 64];
            while nix::unistd::read(&wake_r, &mut sink).is_ok_and(|n| n > 0) {}
        }
        let Some(ready) = ready else {
            continue;
        };
        let listener = &listeners[ready];
        let sock = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors or the like: pause instead of spinning.
                tracing::warn!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        // SAFETY: the listener is single-threaded (no runtime, no helper
        // threads), so the child may run normally after the fork.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                set_handlers(nix::sys::signal::SigHandler::SigDfl);
                // A connection's temp files go with it on SIGTERM (a
                // stopping service) as with stock's.
                crate::interrupt::install("daemon");
                WAKE_FD.store(-1, Ordering::SeqCst);
                drop(wake_r);
                drop(wake_w);
                for l in listeners {
                    let _ = nix::unistd::close(l.as_raw_fd());
                }
                let code = serve_forked(opts, OwnedFd::from(sock));
                std::process::exit(code);
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => drop(sock),
            Err(e) => {
                tracing::warn!("could not start a session process: {e}");
                drop(sock);
            }
        }
    };
    set_handlers(nix::sys::signal::SigHandler::SigDfl);
    WAKE_FD.store(-1, Ordering::SeqCst);
    code
}

/// A forked session: the socket becomes stdin/stdout, the config is read
/// again (as upstream's start_daemon does) and the connection served.
fn serve_forked(opts: &Options, sock: OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    for target in [0, 1] {
        // SAFETY: dup2 onto the standard descriptors of this process.
        if unsafe { nix::libc::dup2(sock.as_raw_fd(), target) } < 0 {
            return RERR_SOCKETIO;
        }
    }
    drop(sock);
    let cfg = match load(opts) {
        Ok(c) => c,
        Err(e) => {
            super::log::line(&format!("rsync: {e}"));
            return RERR_SYNTAX;
        }
    };
    open_log(opts, &cfg);
    serve_stdin(&cfg)
}
