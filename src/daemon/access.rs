//! Who may use a module (upstream: access.c allow_access, match_address,
//! match_hostname; connection.c claim_connection): `hosts allow` /
//! `hosts deny` with addresses, CIDR bits, dotted masks, host-name
//! wildcards; and `max connections` slots held as record locks in the
//! module's `lock file`.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// Parse a token's address part (IPv4 or IPv6).
fn parse_ip(s: &str) -> Option<IpAddr> {
    s.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// An IPv4-mapped IPv6 peer is treated as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// match_address: `addr`, `addr/bits` or `addr/mask`.
fn match_address(addr: IpAddr, tok: &str) -> bool {
    let (a, m) = match tok.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (tok, None),
    };
    if a.chars().any(|c| !(c.is_ascii_digit() || c == '.')) && !a.contains(':') {
        return false; // a host name, not an address
    }
    let Some(want) = parse_ip(a).map(canonical) else {
        return false;
    };
    let have = canonical(addr);
    let (w, h) = (bytes(want), bytes(have));
    if w.len() != h.len() {
        return false;
    }
    let bits = w.len() * 8;
    let mask: Vec<u8> = match m {
        None => vec![0xff; w.len()],
        Some(m) if m.chars().all(|c| c.is_ascii_digit()) => {
            let Ok(n) = m.parse::<usize>() else {
                return false;
            };
            if n > bits {
                return false;
            }
            (0..w.len())
                .map(|i| {
                    let left = n.saturating_sub(i * 8).min(8);
                    if left == 0 {
                        0
                    } else {
                        0xffu8 << (8 - left)
                    }
                })
                .collect()
        }
        Some(m) => match parse_ip(m) {
            Some(mk) if bytes(mk).len() == w.len() => bytes(mk),
            _ => return false,
        },
    };
    w.iter()
        .zip(&h)
        .zip(&mask)
        .all(|((a, b), m)| a & m == b & m)
}

/// `forward lookup`: a plain host name in the list (not an address, not a
/// pattern) matches when it resolves to the peer's IPv4 address (upstream
/// gethostbyname). A name that does not resolve matches in a deny list
/// (fails closed, as upstream) and not in an allow list.
fn forward_match(addr: IpAddr, tok: &str, deny: bool) -> bool {
    let is_address = tok.bytes().all(|c| c == b'.' || c.is_ascii_digit());
    if is_address || tok.contains([':', '/', '*', '?', '[']) {
        return false;
    }
    use std::net::ToSocketAddrs;
    let Ok(found) = (tok, 0u16).to_socket_addrs() else {
        return deny;
    };
    let mut v4 = found.filter(|a| a.is_ipv4()).peekable();
    if v4.peek().is_none() {
        return deny;
    }
    let peer = canonical(addr);
    v4.any(|a| a.ip() == peer)
}

/// access_match: does any token of the list match the peer?
fn access_match(list: &str, addr: IpAddr, host: Option<&str>, forward: bool, deny: bool) -> bool {
    let list = list.to_ascii_lowercase();
    let host = host.filter(|h| !h.is_empty()).map(str::to_ascii_lowercase);
    list.split([' ', ',', '\t'])
        .filter(|t| !t.is_empty())
        .any(|tok| {
            let by_name = host.as_ref().is_some_and(|h| {
                crate::filter::wildmatch::wildmatch(tok.as_bytes(), h.as_bytes())
                    || (forward && forward_match(addr, tok, deny))
            });
            by_name || match_address(addr, tok)
        })
}

/// allow_access: an allow-list match always wins; without a deny list, a
/// non-match is refused; a deny-list match is refused; anything else is allowed.
///
/// `host` is the reverse-lookup name, or upstream's "UNDETERMINED" when
/// `reverse lookup` is off; `forward` is the module's `forward lookup`.
pub fn allow_access(
    allow: Option<&str>,
    deny: Option<&str>,
    addr: IpAddr,
    host: Option<&str>,
    forward: bool,
) -> bool {
    let allow = allow.filter(|a| !a.trim().is_empty());
    let deny = deny.filter(|d| !d.trim().is_empty());
    if let Some(a) = allow {
        if access_match(a, addr, host, forward, false) {
            return true;
        }
        if deny.is_none() {
            return false;
        }
    }
    !deny.is_some_and(|d| access_match(d, addr, host, forward, true))
}

/// The peer's host name by reverse lookup (`reverse lookup = yes`), if any.
pub fn reverse_name(addr: IpAddr) -> Option<String> {
    use nix::sys::socket::SockaddrLike;
    let sa = std::net::SocketAddr::new(addr, 0);
    let storage: nix::sys::socket::SockaddrStorage = sa.into();
    let mut host = [0 as nix::libc::c_char; 1025];
    // SAFETY: a valid sockaddr of the given length and a writable buffer of the given size.
    let rc = unsafe {
        nix::libc::getnameinfo(
            storage.as_ptr(),
            storage.len(),
            host.as_mut_ptr(),
            host.len() as nix::libc::socklen_t,
            std::ptr::null_mut(),
            0,
            nix::libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo NUL-terminated the buffer on success.
    let c = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    Some(c.to_string_lossy().into_owned())
}

/// A held `max connections` slot; released when dropped (the lock goes with the fd).
pub struct Slot {
    _file: std::fs::File,
}

/// claim_connection: take one of `max` record locks in `lock_file`; None when all are taken.
pub fn claim_connection(lock_file: &str, max: i32) -> std::io::Result<Option<Slot>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_file)?;
    for i in 0..max.max(0) {
        if lock_range(&f, i as i64 * 4, 4).is_ok() {
            return Ok(Some(Slot { _file: f }));
        }
    }
    Ok(None)
}

/// A write lock on `len` bytes at `start` of `f`, without waiting
/// (upstream lock_range): held until the process closes the file or ends.
pub fn lock_range(f: &std::fs::File, start: i64, len: i64) -> std::io::Result<()> {
    let fl = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: start,
        l_len: len,
        l_pid: 0,
    };
    // SAFETY: a valid fd and a flock struct that lives across the call.
    if unsafe { nix::libc::fcntl(f.as_raw_fd(), nix::libc::F_SETLK, &fl) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_masks() {
        assert!(match_address(ip("127.0.0.1"), "127.0.0.1"));
        assert!(match_address(ip("127.0.0.1"), "127.0.0.0/8"));
        assert!(match_address(ip("127.0.0.1"), "127.0.0.0/255.0.0.0"));
        assert!(!match_address(ip("127.0.0.1"), "10.0.0.0/8"));
        assert!(match_address(ip("::ffff:127.0.0.1"), "127.0.0.0/8"));
        assert!(match_address(ip("fe80::1"), "fe80::/10"));
        assert!(!match_address(ip("127.0.0.1"), "localhost"));
        assert!(!match_address(ip("127.0.0.1"), "127.0.0.0/33"));
    }

    #[test]
    fn allow_and_deny_lists() {
        let a = ip("127.0.0.1");
        assert!(allow_access(None, None, a, None, false));
        assert!(allow_access(Some("127.0.0.0/8"), None, a, None, false));
        assert!(!allow_access(Some("10.0.0.0/8"), None, a, None, false));
        assert!(!allow_access(None, Some("127.0.0.1"), a, None, false));
        assert!(allow_access(Some("127.0.0.1"), Some("*"), a, None, false));
        assert!(!allow_access(
            Some("10.1.1.1"),
            Some("*"),
            a,
            Some("localhost"),
            false
        ));
        assert!(allow_access(
            Some("local*"),
            None,
            a,
            Some("LocalHost"),
            false
        ));
    }

    #[test]
    fn forward_lookup_of_plain_names() {
        let a = ip("127.0.0.1");
        let host = Some("UNDETERMINED");
        // "localhost" resolves to the peer: allowed only with forward lookups.
        assert!(allow_access(Some("localhost"), None, a, host, true));
        assert!(!allow_access(Some("localhost"), None, a, host, false));
        // Patterns and addresses are never resolved.
        assert!(!allow_access(Some("localhos?"), None, a, host, true));
        // An unresolvable name in a deny list denies (fails closed); in an
        // allow list it just does not match.
        assert!(!allow_access(
            None,
            Some("no-such-host.invalid"),
            a,
            host,
            true
        ));
        assert!(allow_access(
            None,
            Some("no-such-host.invalid"),
            a,
            host,
            false
        ));
        assert!(!allow_access(
            Some("no-such-host.invalid"),
            None,
            a,
            host,
            true
        ));
    }

    #[test]
    fn connection_slots() {
        let p = std::env::temp_dir().join(format!("rrsync-lock-{}", std::process::id()));
        let path = p.to_string_lossy().into_owned();
        let a = claim_connection(&path, 1).unwrap();
        assert!(a.is_some());
        // fcntl locks are per process: a second claim from this process succeeds,
        // so only check that the file is usable and the count bound is respected.
        assert!(claim_connection(&path, 0).unwrap().is_none());
        drop(a);
        let _ = std::fs::remove_file(p);
    }
}
