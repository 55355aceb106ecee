//! Socket options by name (`--sockopts`, rsyncd.conf `socket options`;
//! upstream socket.c set_socket_options): a list separated by spaces, tabs
//! or commas of `NAME` or `NAME=VALUE`. Unknown names and failed calls are
//! reported and skipped, as stock does; the rest still apply. Also
//! [`QuickAck`], the reading side of a TCP connection that acknowledges at
//! once.

use nix::libc;
use std::os::fd::{AsRawFd, BorrowedFd};

#[derive(Clone, Copy)]
enum Kind {
    /// An int, 1 unless given.
    Int,
    /// A fixed value; giving one is a syntax error (reported, still set).
    On(i32),
}

const TABLE: &[(&str, i32, i32, Kind)] = &[
    (
        "SO_KEEPALIVE",
        libc::SOL_SOCKET,
        libc::SO_KEEPALIVE,
        Kind::Int,
    ),
    (
        "SO_REUSEADDR",
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        Kind::Int,
    ),
    (
        "SO_BROADCAST",
        libc::SOL_SOCKET,
        libc::SO_BROADCAST,
        Kind::Int,
    ),
    (
        "TCP_NODELAY",
        libc::IPPROTO_TCP,
        libc::TCP_NODELAY,
        Kind::Int,
    ),
    (
        "IPTOS_LOWDELAY",
        libc::IPPROTO_IP,
        libc::IP_TOS,
        Kind::On(libc::IPTOS_LOWDELAY as i32),
    ),
    (
        "IPTOS_THROUGHPUT",
        libc::IPPROTO_IP,
        libc::IP_TOS,
        Kind::On(libc::IPTOS_THROUGHPUT as i32),
    ),
    ("SO_SNDBUF", libc::SOL_SOCKET, libc::SO_SNDBUF, Kind::Int),
    ("SO_RCVBUF", libc::SOL_SOCKET, libc::SO_RCVBUF, Kind::Int),
    (
        "SO_SNDLOWAT",
        libc::SOL_SOCKET,
        libc::SO_SNDLOWAT,
        Kind::Int,
    ),
    (
        "SO_RCVLOWAT",
        libc::SOL_SOCKET,
        libc::SO_RCVLOWAT,
        Kind::Int,
    ),
    (
        "SO_SNDTIMEO",
        libc::SOL_SOCKET,
        libc::SO_SNDTIMEO,
        Kind::Int,
    ),
    (
        "SO_RCVTIMEO",
        libc::SOL_SOCKET,
        libc::SO_RCVTIMEO,
        Kind::Int,
    ),
];

/// One parsed option: (level, name, value), or the message for a bad one.
type Parsed = Result<(i32, i32, i32), String>;

/// Parse a list into settings and messages (stock's wording).
fn parse(spec: &str) -> Vec<(Parsed, Option<String>)> {
    let mut out = Vec::new();
    for tok in spec.split([' ', '\t', ',']).filter(|t| !t.is_empty()) {
        let (name, value) = match tok.split_once('=') {
            Some((n, v)) => (n, Some(atoi(v))),
            None => (tok, None),
        };
        let Some(&(_, level, opt, kind)) = TABLE.iter().find(|e| e.0 == name) else {
            out.push((Err(format!("Unknown socket option {name}")), None));
            continue;
        };
        match kind {
            Kind::Int => out.push((Ok((level, opt, value.unwrap_or(1))), None)),
            Kind::On(v) => {
                let warn = value
                    .is_some()
                    .then(|| format!("syntax error -- {name} does not take a value"));
                out.push((Ok((level, opt, v)), warn));
            }
        }
    }
    out
}

/// C's atoi: leading digits with an optional sign, 0 when none.
pub(crate) fn atoi(s: &str) -> i32 {
    atol(s).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// C's atol (saturating instead of overflowing): optional spaces and
/// sign, then digits; anything else ends it.
pub(crate) fn atol(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for c in digits.bytes().take_while(u8::is_ascii_digit) {
        n = n.saturating_mul(10).saturating_add(i64::from(c - b'0'));
    }
    if neg {
        -n
    } else {
        n
    }
}

/// The reading side of a TCP connection that acknowledges at once what it
/// reads (TCP_QUICKACK, which the kernel drops again by itself, so it is
/// set before every read). A peer that sends two small writes in a row
/// (stock's seed after its lists; a stock client's one-byte string length,
/// then the string) would otherwise wait under Nagle for our delayed ACK,
/// 40 ms each time. On a socket that is not TCP the option just fails.
pub struct QuickAck<R>(pub R);

impl<R: std::io::Read + AsRawFd> std::io::Read for QuickAck<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let one: libc::c_int = 1;
        // SAFETY: a descriptor we own and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        self.0.read(b)
    }
}

/// Apply `spec` to `fd`; returns the lines stock prints for what was wrong
/// (to stderr; each bad item skipped, the rest applied).
pub fn apply(fd: BorrowedFd<'_>, spec: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    for (parsed, warn) in parse(spec) {
        msgs.extend(warn);
        match parsed {
            Err(m) => msgs.push(m),
            Ok((level, opt, value)) => {
                // SAFETY: a valid descriptor and a pointer to a live int of
                // the length passed.
                let rc = unsafe {
                    libc::setsockopt(
                        fd.as_raw_fd(),
                        level,
                        opt,
                        (&value as *const i32).cast(),
                        std::mem::size_of::<i32>() as libc::socklen_t,
                    )
                };
                if rc != 0 {
                    let e = std::io::Error::last_os_error();
                    let name = TABLE
                        .iter()
                        .find(|t| t.1 == level && t.2 == opt)
                        .map_or("?", |t| t.0);
                    msgs.push(format!(
                        "rsync: failed to set socket option {name}: {}",
                        crate::fs::os_error_text(&e)
                    ));
                }
            }
        }
    }
    msgs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn parses_names_values_and_unknowns() {
        let p = parse("SO_SNDBUF=65536, TCP_NODELAY\tSO_NOPE IPTOS_LOWDELAY=3");
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].0, Ok((libc::SOL_SOCKET, libc::SO_SNDBUF, 65536)));
        assert_eq!(p[1].0, Ok((libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)));
        assert_eq!(p[2].0, Err("Unknown socket option SO_NOPE".to_string()));
        assert!(p[3].1.as_deref().unwrap().contains("does not take a value"));
        assert_eq!(atoi("12abc"), 12);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atoi("-5"), -5);
        assert_eq!(atoi("99999999999"), i32::MAX);
    }

    #[test]
    fn applies_to_a_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let msgs = apply(l.as_fd(), "SO_KEEPALIVE SO_RCVBUF=131072 BOGUS");
        assert_eq!(msgs, ["Unknown socket option BOGUS"]);
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: valid fd, int out-parameter with its length.
        let rc = unsafe {
            libc::getsockopt(
                l.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_KEEPALIVE,
                (&mut v as *mut i32).cast(),
                &mut len,
            )
        };
        assert_eq!((rc, v), (0, 1));
    }
}
