//! Reaching a daemon other than by a direct TCP connection (upstream
//! socket.c): `RSYNC_CONNECT_PROG` runs a command whose stdin and stdout
//! are our end of a loopback TCP pair (`%H` in it is the host, quoted for
//! the shell), and `RSYNC_PROXY=[USER:PASS@]HOST:PORT` goes through a web
//! proxy's CONNECT method.

use super::connect::{Conn, ConnectError};
use crate::exit::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

/// The `RSYNC_CONNECT_PROG` command for `host`: `%H` becomes the host in
/// single quotes, `%%` a lone `%`, any other `%` stays. A host that a shell
/// could read as more than a name is refused, as upstream refuses it.
pub fn connect_prog_command(prog: &str, host: &str) -> Result<String, ConnectError> {
    if !prog.contains('%') {
        return Ok(prog.to_string());
    }
    if shell_unsafe(host) {
        return Err(ConnectError {
            code: RERR_SOCKETIO,
            msg: "unsafe host characters for RSYNC_CONNECT_PROG".into(),
        });
    }
    let quoted = format!("'{}'", host.replace('\'', "'\\''"));
    let mut out = String::with_capacity(prog.len() + quoted.len());
    let mut it = prog.chars().peekable();
    while let Some(c) = it.next() {
        if c == '%' {
            match it.peek() {
                Some('%') => {
                    it.next();
                    out.push('%');
                    continue;
                }
                Some('H') => {
                    it.next();
                    out.push_str(&quoted);
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    Ok(out)
}

/// A host that would not stay a plain word through a shell: empty, led by
/// `-`, `+`, `~` or `%`, or holding anything beyond letters, digits and
/// `._:-%+~`.
fn shell_unsafe(host: &str) -> bool {
    let Some(first) = host.chars().next() else {
        return true;
    };
    "-+~%".contains(first)
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-%+~".contains(c))
}

/// Run `cmd` (through `$RSYNC_SHELL -c`, else `sh -c`) on one end of a
/// loopback TCP pair and return the other end (upstream sock_exec). The
/// program is not waited for: it ends when the connection does.
pub fn connect_prog(cmd: &str) -> Result<Conn, ConnectError> {
    let (ours, theirs) = tcp_pair().map_err(|e| ConnectError {
        code: RERR_SOCKETIO,
        msg: format!(
            "rsync: socketpair_tcp failed: {}",
            crate::fs::os_error_text(&e)
        ),
    })?;
    let shell = std::env::var("RSYNC_SHELL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/bin/sh".into());
    let io = |e: std::io::Error| ConnectError {
        code: RERR_IPC,
        msg: format!("rsync: fork: {}", crate::fs::os_error_text(&e)),
    };
    let out = theirs.try_clone().map_err(io)?;
    Command::new(&shell)
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(out)))
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(io)?;
    let _ = ours.set_nodelay(true);
    let reader = ours.try_clone().map_err(io)?;
    Ok(Conn {
        reader: Box::new(reader),
        writer: Box::new(ours),
        child: None,
        hold: None,
    })
}

/// Two connected loopback TCP sockets (upstream socketpair_tcp): a daemon
/// run by the program sees a socket with a peer address, as from inetd.
fn tcp_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let a = TcpStream::connect(l.local_addr()?)?;
    loop {
        let (b, peer) = l.accept()?;
        if peer == a.local_addr()? {
            return Ok((a, b));
        }
    }
}

/// What `RSYNC_PROXY` says: the proxy's host and port, and the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub host: String,
    pub port: String,
    pub auth: Option<(String, String)>,
}

/// Parse `[USER:PASS@]HOST:PORT` (the last `@` ends the credentials).
pub fn parse_proxy(spec: &str) -> Result<Proxy, String> {
    let (auth, hp) = match spec.rfind('@') {
        Some(i) => {
            let (up, hp) = (&spec[..i], &spec[i + 1..]);
            let Some((u, p)) = up.split_once(':') else {
                return Err("invalid proxy specification: should be USER:PASS@HOST:PORT".into());
            };
            (Some((u.to_string(), p.to_string())), hp)
        }
        None => (None, spec),
    };
    let Some((host, port)) = hp.split_once(':') else {
        return Err("invalid proxy specification: should be HOST:PORT".into());
    };
    // (upstream copies the port into a 10-byte buffer)
    let port: String = port.chars().take(9).collect();
    Ok(Proxy {
        host: host.to_string(),
        port,
        auth,
    })
}

/// Longest request, response line or header line exchanged with a proxy.
const PROXY_BUF: usize = 1024;

/// Ask the proxy on `s` for a tunnel to `host:port` (HTTP/1.0 CONNECT,
/// Basic credentials when given) and read its answer up to the blank line;
/// a reply that is not 2xx fails with the proxy's line.
pub fn establish(
    s: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&(String, String)>,
) -> Result<(), String> {
    if host.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character in proxy CONNECT host".into());
    }
    let authhdr = match auth {
        Some((u, p)) => {
            let cred = format!("{u}:{p}");
            if (cred.len() * 8).div_ceil(6) >= PROXY_BUF - 3 {
                return Err("authentication information is too long".into());
            }
            let mut b64 = crate::daemon::auth::base64_nopad(cred.as_bytes());
            while b64.len() % 4 != 0 {
                b64.push('=');
            }
            format!("\r\nProxy-Authorization: Basic {b64}")
        }
        None => String::new(),
    };
    let req = format!("CONNECT {host}:{port} HTTP/1.0{authhdr}\r\n\r\n");
    if req.len() >= PROXY_BUF {
        return Err("proxy CONNECT request too long".into());
    }
    s.write_all(req.as_bytes()).map_err(|e| {
        format!(
            "rsync: failed to write to proxy: {}",
            crate::fs::os_error_text(&e)
        )
    })?;
    let status = read_line(s)?.ok_or("proxy response line too long")?;
    let ok = status.strip_prefix("HTTP/").is_some_and(|rest| {
        rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim_start_matches(' ')
            .starts_with('2')
    });
    if !ok {
        return Err(format!("bad response from proxy -- {status}"));
    }
    loop {
        match read_line(s)? {
            None => return Err("proxy response header line too long".into()),
            Some(l) if l.is_empty() => return Ok(()),
            Some(_) => {}
        }
    }
}

/// One line from the proxy, without its CR LF; None when it is too long.
fn read_line(s: &mut TcpStream) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(1) => {}
            Ok(_) => {
                return Err(format!(
                    "rsync: failed to read from proxy: {}",
                    crate::fs::os_error_text(&std::io::Error::from_raw_os_error(0))
                ))
            }
            Err(e) => {
                return Err(format!(
                    "rsync: failed to read from proxy: {}",
                    crate::fs::os_error_text(&e)
                ))
            }
        }
        if b[0] == b'\n' {
            break;
        }
        if line.len() >= PROXY_BUF - 2 {
            return Ok(None);
        }
        line.push(b[0]);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_prog_substitution() {
        assert_eq!(
            connect_prog_command("nc %H 873 %% %x", "h.example").unwrap(),
            "nc 'h.example' 873 % %x"
        );
        assert_eq!(connect_prog_command("plain", "-x").unwrap(), "plain");
        for bad in ["", "-e", "~root", "a b", "a;b", "a'b"] {
            assert!(connect_prog_command("x %H", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxy_specs() {
        assert_eq!(
            parse_proxy("u:p:x@proxy:3128").unwrap(),
            Proxy {
                host: "proxy".into(),
                port: "3128".into(),
                auth: Some(("u".into(), "p:x".into()))
            }
        );
        assert_eq!(parse_proxy("proxy:8080").unwrap().auth, None);
        assert!(parse_proxy("proxy").is_err());
        assert!(parse_proxy("user@proxy:1").is_err());
    }
}
