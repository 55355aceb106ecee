//! Reaching the far side (upstream: main.c do_cmd / piped_child /
//! local_child, socket.c open_socket_out): a remote shell running
//! `rsync --server`, a TCP connection to a daemon, or, for a local copy,
//! ourselves started as the server on a pipe pair.

use crate::exit::*;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The two directions of the connection, and the child behind them.
pub struct Conn {
    /// What the far side writes.
    pub reader: Box<dyn Read + Send>,
    /// What the far side reads.
    pub writer: Box<dyn Write + Send>,
    /// The remote shell (or local server) process.
    pub child: Option<Child>,
    /// A second handle on what the child reads: kept open after a failure
    /// until the error lines are out, so the child learns of it from our
    /// signal, not from a closed pipe (see `Fail::end_child`).
    pub hold: Option<std::os::fd::OwnedFd>,
}

/// A failure to connect, with the exit code stock uses for it.
#[derive(Debug)]
pub struct ConnectError {
    /// rsync exit code.
    pub code: i32,
    /// The message (without the final `rsync error:` line).
    pub msg: String,
}

/// A command line as upstream's print_child_argv shows it (`-vv`, debug
/// CMD): `prefix arg arg ...  (N args)`, an argument with characters
/// outside `[A-Za-z0-9,.-_=+@/]` in double quotes.
pub fn child_argv_line(prefix: &str, args: &[String]) -> String {
    let mut line = format!("{prefix} ");
    for a in args {
        let plain = a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b",.-_=+@/".contains(&c));
        if plain {
            line.push_str(&format!("{a} "));
        } else {
            line.push_str(&format!("\"{a}\" "));
        }
    }
    line.push_str(&format!(" ({} args)", args.len()));
    line
}

/// Split a `-e` command the way upstream does: words at spaces, single and
/// double quotes group (a doubled quote inside quotes is a literal quote).
pub fn split_rsh(cmd: &str) -> Result<Vec<String>, ConnectError> {
    let mut out = Vec::new();
    let b: Vec<char> = cmd.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == ' ' {
            i += 1;
            continue;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while i < b.len() && (b[i] != ' ' || quote.is_some()) {
            let c = b[i];
            if c == '\'' || c == '"' {
                match quote {
                    None => {
                        quote = Some(c);
                        i += 1;
                        continue;
                    }
                    Some(q) if q == c => {
                        if b.get(i + 1) == Some(&q) {
                            word.push(q);
                            i += 2;
                            continue;
                        }
                        quote = None;
                        i += 1;
                        continue;
                    }
                    _ => {}
                }
            }
            word.push(c);
            i += 1;
        }
        if let Some(q) = quote {
            return Err(ConnectError {
                code: RERR_SYNTAX,
                msg: format!("Missing trailing-{q} in remote-shell command."),
            });
        }
        out.push(word);
    }
    Ok(out)
}

/// A pipe from the remote shell whose reads give up with `TimedOut` after
/// `--timeout` seconds without data (a socket gets SO_RCVTIMEO instead).
struct TimedPipe {
    pipe: std::process::ChildStdout,
    timeout_ms: i32,
}

impl Read for TimedPipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::fd::AsFd;
        loop {
            let mut fds = [nix::poll::PollFd::new(
                self.pipe.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let timeout = nix::poll::PollTimeout::try_from(self.timeout_ms)
                .unwrap_or(nix::poll::PollTimeout::MAX);
            match nix::poll::poll(&mut fds, timeout) {
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "io timeout after {} seconds -- exiting",
                            self.timeout_ms / 1000
                        ),
                    ))
                }
                Ok(_) => return self.pipe.read(buf),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Start `argv` with its stdin and stdout as our connection.
pub fn spawn(argv: &[String]) -> Result<Conn, ConnectError> {
    spawn_timed(argv, None)
}

/// The variable our local copy's `--server` child finds set: it is the
/// other half of a local copy (upstream's forked local_server).
pub const LOCAL_SERVER_ENV: &str = "RRSYNC_LOCAL_SERVER";

/// [`spawn`] for the other half of a local copy (see [`LOCAL_SERVER_ENV`]).
pub fn spawn_local(argv: &[String]) -> Result<Conn, ConnectError> {
    spawn_env(argv, None, &[(LOCAL_SERVER_ENV, "1")])
}

/// [`spawn`], with reads bounded by `io_timeout` seconds (`--timeout`).
pub fn spawn_timed(argv: &[String], io_timeout: Option<u32>) -> Result<Conn, ConnectError> {
    spawn_env(argv, io_timeout, &[])
}

fn spawn_env(
    argv: &[String],
    io_timeout: Option<u32>,
    env: &[(&str, &str)],
) -> Result<Conn, ConnectError> {
    let Some((prog, rest)) = argv.split_first() else {
        return Err(ConnectError {
            code: RERR_SYNTAX,
            msg: "empty remote-shell command".into(),
        });
    };
    let mut child = Command::new(prog)
        .args(rest)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| ConnectError {
            code: if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                RERR_IPC
            },
            msg: format!(
                "rsync: Failed to exec {prog}: {}",
                crate::fs::os_error_text(&e)
            ),
        })?;
    let (Some(w), Some(r)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        return Err(ConnectError {
            code: RERR_IPC,
            msg: "rsync: pipe failed".into(),
        });
    };
    let reader: Box<dyn Read + Send> = match io_timeout.filter(|t| *t > 0) {
        Some(t) => Box::new(TimedPipe {
            pipe: r,
            timeout_ms: i32::try_from(u64::from(t) * 1000).unwrap_or(i32::MAX),
        }),
        None => Box::new(r),
    };
    let hold = std::os::fd::AsFd::as_fd(&w).try_clone_to_owned().ok();
    Ok(Conn {
        reader,
        writer: Box::new(w),
        child: Some(child),
        hold,
    })
}

/// How to reach a daemon over TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpOpts<'a> {
    /// `--contimeout` (seconds; 0 or none: the system's).
    pub contimeout: Option<u32>,
    /// `-4` / `-6`.
    pub family: Option<u8>,
    /// `--timeout` (seconds), as the socket's read timeout.
    pub io_timeout: Option<u32>,
    /// `--sockopts`.
    pub sockopts: Option<&'a str>,
    /// `--address`: the local address to connect from.
    pub bind: Option<&'a str>,
}

/// One connection attempt, from `local` when given (upstream
/// try_bind_local), bounded by `timeout`.
fn connect_one(
    a: &std::net::SocketAddr,
    local: Option<std::net::IpAddr>,
    timeout: Option<Duration>,
) -> std::io::Result<TcpStream> {
    let Some(local) = local else {
        return match timeout {
            Some(t) => TcpStream::connect_timeout(a, t),
            None => TcpStream::connect(a),
        };
    };
    use nix::sys::socket::{bind, connect, setsockopt, socket, sockopt, AddressFamily};
    use nix::sys::socket::{SockFlag, SockType, SockaddrStorage};
    let fam = if a.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    use std::os::fd::AsRawFd;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(std::net::SocketAddr::new(local, 0)),
    )?;
    if let Some(t) = timeout {
        // A blocking connect gives up after SO_SNDTIMEO (EINPROGRESS).
        let tv = nix::sys::time::TimeVal::new(t.as_secs() as i64, 0);
        setsockopt(&fd, sockopt::SendTimeout, &tv)?;
    }
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(*a)) {
        Ok(()) => {}
        Err(nix::errno::Errno::EINPROGRESS) => {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        Err(e) => return Err(e.into()),
    }
    if timeout.is_some() {
        let zero = nix::sys::time::TimeVal::new(0, 0);
        setsockopt(&fd, sockopt::SendTimeout, &zero)?;
    }
    Ok(TcpStream::from(fd))
}

/// Connect to a daemon (upstream open_socket_out): every address of the
/// host in turn, each bounded by `--contimeout`.
pub fn tcp(host: &str, port: u16, role: &str, t: &TcpOpts<'_>) -> Result<Conn, ConnectError> {
    // `--address`: its addresses, each used for a remote one of its family.
    let locals: Option<Vec<std::net::IpAddr>> = match t.bind {
        Some(b) => match (b.trim_start_matches('[').trim_end_matches(']'), 0).to_socket_addrs() {
            Ok(v) => Some(v.map(|sa| sa.ip()).collect()),
            Err(_) => {
                return Err(ConnectError {
                    code: RERR_SOCKETIO,
                    msg: format!("rsync: getaddrinfo {b}: Name or service not known"),
                })
            }
        },
        None => None,
    };
    let mut bind_failure = None;
    let target = host.trim_start_matches('[').trim_end_matches(']');
    // RSYNC_PROXY: connect to the proxy, then ask it for a tunnel.
    let proxy = match std::env::var("RSYNC_PROXY").ok().filter(|p| !p.is_empty()) {
        Some(spec) => Some(
            super::wrapped::parse_proxy(&spec).map_err(|msg| ConnectError {
                code: RERR_SOCKETIO,
                msg,
            })?,
        ),
        None => None,
    };
    let (h, port_str) = match &proxy {
        Some(p) => (p.host.as_str(), p.port.clone()),
        None => (target, port.to_string()),
    };
    let Ok(connect_port) = port_str.parse::<u16>() else {
        return Err(ConnectError {
            code: RERR_SOCKETIO,
            msg: format!(
                "rsync: getaddrinfo: {h} {port_str}: Servname not supported for ai_socktype"
            ),
        });
    };
    let mut proxy_errors: Vec<String> = Vec::new();
    let addrs: Vec<std::net::SocketAddr> = match (h, connect_port).to_socket_addrs() {
        Ok(a) => a
            .filter(|a| match t.family {
                Some(4) => a.is_ipv4(),
                Some(6) => a.is_ipv6(),
                _ => true,
            })
            .collect(),
        Err(e) => {
            return Err(ConnectError {
                code: RERR_SOCKETIO,
                msg: format!("rsync: getaddrinfo: {h} {port_str}: {e}"),
            })
        }
    };
    let timeout = t
        .contimeout
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64));
    let mut last = None;
    for a in &addrs {
        let local = match &locals {
            None => None,
            Some(l) => match l.iter().find(|ip| ip.is_ipv4() == a.is_ipv4()) {
                Some(ip) => Some(*ip),
                None => {
                    // upstream try_bind_local: no address of this family.
                    bind_failure = Some(format!(
                        "rsync: getaddrinfo {}: Address family for hostname not supported",
                        t.bind.unwrap_or_default()
                    ));
                    continue;
                }
            },
        };
        let r = connect_one(a, local, timeout);
        let r = match (r, &proxy) {
            (Ok(mut s), Some(p)) => {
                match super::wrapped::establish(&mut s, target, port, p.auth.as_ref()) {
                    Ok(()) => Ok(s),
                    Err(m) => {
                        proxy_errors.push(m);
                        continue;
                    }
                }
            }
            (r, _) => r,
        };
        match r {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                if let Some(spec) = t.sockopts {
                    use std::os::fd::AsFd;
                    for m in crate::sockopts::apply(s.as_fd(), spec) {
                        eprintln!("{m}");
                    }
                }
                let reader =
                    crate::sockopts::QuickAck(s.try_clone().map_err(|e| ConnectError {
                        code: RERR_SOCKETIO,
                        msg: format!("rsync: socket: {e}"),
                    })?);
                if let Some(secs) = t.io_timeout.filter(|s| *s > 0) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(secs as u64)));
                }
                return Ok(Conn {
                    reader: Box::new(reader),
                    writer: Box::new(s),
                    child: None,
                    hold: None,
                });
            }
            Err(e) => last = Some((a.ip(), e)),
        }
    }
    if last.is_none() && !proxy_errors.is_empty() {
        return Err(ConnectError {
            code: RERR_SOCKETIO,
            msg: proxy_errors.join("\n"),
        });
    }
    if let (None, Some(msg)) = (&last, bind_failure) {
        return Err(ConnectError {
            code: RERR_SOCKETIO,
            msg,
        });
    }
    let (msg, code) = match last {
        Some((ip, e)) if e.kind() == std::io::ErrorKind::TimedOut => (
            format!(
                "rsync: [{role}] failed to connect to {h} ({ip}): {}",
                crate::fs::os_error_text(&e)
            ),
            RERR_CONTIMEOUT,
        ),
        Some((ip, e)) => (
            format!(
                "rsync: [{role}] failed to connect to {h} ({ip}): {}",
                crate::fs::os_error_text(&e)
            ),
            RERR_SOCKETIO,
        ),
        None => (
            format!("rsync: getaddrinfo: {h} {port_str}: Name or service not known"),
            RERR_SOCKETIO,
        ),
    };
    Err(ConnectError { code, msg })
}

/// The version exchange of a remote-shell or local connection (upstream
/// setup_protocol, `remote_protocol == 0`): each side writes its version,
/// then reads the other's.
pub fn exchange_versions(conn: &mut Conn, ours: u8, role: &str) -> Result<u8, ConnectError> {
    let io = |_e: std::io::Error| ConnectError {
        code: RERR_STREAMIO,
        msg: format!("rsync: connection unexpectedly closed (0 bytes received so far) [{role}]"),
    };
    conn.writer
        .write_all(&(ours as i32).to_le_bytes())
        .and_then(|_| conn.writer.flush())
        .map_err(io)?;
    let mut b = [0u8; 4];
    conn.reader.read_exact(&mut b).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut => ConnectError {
            code: RERR_TIMEOUT,
            msg: format!("[{role}] {e}"),
        },
        _ => ConnectError {
            code: RERR_STREAMIO,
            msg: format!(
                "rsync: connection unexpectedly closed (0 bytes received so far) [{role}]"
            ),
        },
    })?;
    let theirs = i32::from_le_bytes(b);
    if !(crate::protocol::MIN_PROTOCOL_VERSION as i32..=40).contains(&theirs) {
        return Err(ConnectError {
            code: RERR_PROTOCOL,
            msg: "protocol version mismatch -- is your shell clean?\n(see the rsync manpage for an explanation)".into(),
        });
    }
    Ok((theirs as u8).min(ours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_argv_lines_quote_as_upstream() {
        let args: Vec<String> = ["ssh", "h", "rsync", "--server", "-vve.iLsfxCIvu", "a b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            child_argv_line("opening connection using:", &args),
            "opening connection using: ssh h rsync --server -vve.iLsfxCIvu \"a b\"  (6 args)"
        );
    }

    #[test]
    fn rsh_words_as_upstream() {
        assert_eq!(split_rsh("ssh -p 22").unwrap(), ["ssh", "-p", "22"]);
        assert_eq!(
            split_rsh("sh -c 'a b'  \"c\"\"d\"").unwrap(),
            ["sh", "-c", "a b", "c\"d"]
        );
        assert!(split_rsh("ssh 'x").is_err());
    }
}
