//! The daemon process (upstream: clientserver.c daemon_main,
//! socket.c start_accept_loop): loads the config, listens, and serves each
//! connection in a fresh `rrsync --daemon` process whose stdin/stdout is the
//! accepted socket (the same path inetd/xinetd use), so per-connection
//! chroot and uid changes never touch the listener.

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
    let _ = crate::sockopts::apply(std::io::stdin().as_fd(), "SO_KEEPALIVE");
    let r = match nix::unistd::dup(std::io::stdin().as_fd()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return RERR_SOCKETIO,
    };
    let w = match nix::unistd::dup(std::io::stdout().as_fd()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(_) => return RERR_SOCKETIO,
    };
    // Buffered both ways: the demultiplexer reads 4-byte headers and small
    // items, which must not each cost a system call.
    let outcome = super::session::serve(
        cfg,
        std::io::BufReader::with_capacity(64 * 1024, r),
        std::io::BufWriter::with_capacity(64 * 1024, w),
        &peer_ip,
    );
    // Half-close so the client sees EOF after our last bytes, not a reset.
    if outcome.half_close {
        let _ = nix::sys::socket::shutdown(1, nix::sys::socket::Shutdown::Write);
    }
    outcome.code
}

fn listen(opts: &Options, cfg: DaemonConfig) -> i32 {
    let port = opts.port.unwrap_or_else(|| cfg.global.listen_port());
    let addr = opts
        .address
        .clone()
        .or_else(|| cfg.global.address.clone())
        .unwrap_or_else(|| "0.0.0.0".into());
    let bind = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    let listener = match std::net::TcpListener::bind(&bind) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rsync: failed to bind to {bind}: {e}");
            eprintln!("rsync error: error in socket IO (code 10)");
            return RERR_SOCKETIO;
        }
    };
    // --sockopts, else the config's `socket options`, on the listening
    // socket (accepted connections inherit them), as upstream.
    let spec = opts
        .sockopts
        .clone()
        .or_else(|| cfg.global.socket_options.clone());
    if let Some(spec) = spec {
        for m in crate::sockopts::apply(listener.as_fd(), &spec) {
            eprintln!("{m}");
            super::log::line(&m);
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
    if let Some(pf) = cfg.global.pid_file.as_deref() {
        if let Err(e) = std::fs::write(pf, format!("{}\n", std::process::id())) {
            eprintln!("rsync: failed to create pid file {pf}: {e}");
            return RERR_FILEIO;
        }
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("rrsync"));
    let config = config_path(opts);
    tracing::info!("serving {} on {bind}", config.display());
    super::log::line(&format!(
        "rsyncd version {} starting, listening on port {port}",
        env!("CARGO_PKG_VERSION")
    ));
    let log_file = opts.log_file.clone();
    let dparams = opts.dparams.clone();
    let bwlimit = opts.bwlimit.clone();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return RERR_SOCKETIO,
    };
    let pid_file = cfg.global.pid_file.clone();
    let code = rt.block_on(async move {
        if listener.set_nonblocking(true).is_err() {
            return RERR_SOCKETIO;
        }
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return RERR_SOCKETIO;
        };
        let (Ok(mut term), Ok(mut hup), Ok(mut int)) = (
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()),
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
        ) else {
            return RERR_SOCKETIO;
        };
        loop {
            tokio::select! {
                _ = term.recv() => return 0,
                _ = int.recv() => return 0,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: the config is re-read by every new connection");
                }
                acc = listener.accept() => {
                    let Ok((sock, peer)) = acc else { continue };
                    let Ok(std_sock) = sock.into_std() else { continue };
                    let _ = std_sock.set_nonblocking(false);
                    let fd: OwnedFd = std_sock.into();
                    let Ok(fd2) = nix::unistd::dup(&fd) else { continue };
                    let mut cmd = tokio::process::Command::new(&exe);
                    cmd.arg("--daemon").arg(format!("--config={}", config.display()));
                    if let Some(l) = &log_file {
                        cmd.arg(format!("--log-file={l}"));
                    }
                    for d in &dparams {
                        cmd.arg(format!("--dparam={d}"));
                    }
                    if let Some(b) = &bwlimit {
                        cmd.arg(format!("--bwlimit={b}"));
                    }
                    cmd.stdin(std::process::Stdio::from(fd)).stdout(std::process::Stdio::from(fd2));
                    match cmd.spawn() {
                        Ok(mut child) => {
                            tokio::spawn(async move { let _ = child.wait().await; });
                        }
                        Err(e) => tracing::warn!(%peer, "could not start a session process: {e}"),
                    }
                }
            }
        }
    });
    if let Some(pf) = pid_file {
        let _ = std::fs::remove_file(pf);
    }
    super::log::line("sent 0 bytes  received 0 bytes  total size 0");
    code
}
