//! The PROXY protocol header (HAProxy, versions 1 and 2) that a load
//! balancer puts before the rsync greeting when the daemon runs with
//! `proxy protocol = yes` (upstream clientname.c read_proxy_protocol_header):
//! it names the real client, whose address then stands for the
//! connection's everywhere (hosts allow/deny, logs, RSYNC_HOST_ADDR).
//!
//! Bounded as upstream: a version 1 line is at most 107 bytes, a version 2
//! address block at most 216 bytes; anything else malformed refuses the
//! connection.

use std::io::Read;
use std::net::IpAddr;

/// The 12-byte signature of a version 2 header.
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest version 1 line, CRLF included (upstream's 108-byte buffer).
const V1_MAX: usize = 107;
/// Largest version 2 address block (upstream: the union's size).
const V2_MAX_ADDR: usize = 216;

/// What a well-formed header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxied {
    /// The real client's address.
    Client(IpAddr),
    /// LOCAL, UNKNOWN or an address family we do not use: the connection
    /// keeps its socket's address.
    Unchanged,
}

/// Why a header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Reading the header failed (closed, timed out).
    #[error("reading the proxy protocol header: {0}")]
    Io(#[from] std::io::Error),
    /// Neither version, or a malformed one.
    #[error("malformed proxy protocol header")]
    Malformed,
}

/// Read one PROXY header (either version) from `r`, consuming exactly its
/// bytes.
pub fn read_header<R: Read>(r: &mut R) -> Result<Proxied, ProxyError> {
    let mut sig = [0u8; 12];
    r.read_exact(&mut sig)?;
    if sig == V2_SIG {
        return read_v2(r);
    }
    if !sig.starts_with(b"PROXY") {
        return Err(ProxyError::Malformed);
    }
    let mut line = sig.to_vec();
    while !line.contains(&b'\n') {
        if line.len() >= V1_MAX {
            return Err(ProxyError::Malformed);
        }
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        line.push(b[0]);
    }
    parse_v1(&line)
}

/// A version 1 line, "PROXY TCP4 src dst sport dport\r\n".
pub fn parse_v1(line: &[u8]) -> Result<Proxied, ProxyError> {
    let bad = || ProxyError::Malformed;
    // The first CR must end the line, right before its LF.
    let cr = line.iter().position(|&c| c == b'\r').ok_or_else(bad)?;
    if &line[cr..] != b"\r\n" {
        return Err(bad());
    }
    let text = std::str::from_utf8(&line[..cr]).map_err(|_| bad())?;
    let rest = text.strip_prefix("PROXY ").ok_or_else(bad)?;
    if rest.starts_with("UNKNOWN") {
        return Ok(Proxied::Unchanged);
    }
    let rest = rest
        .strip_prefix("TCP4 ")
        .or_else(|| rest.strip_prefix("TCP6 "))
        .ok_or_else(bad)?;
    let mut parts = rest.splitn(4, ' ');
    let src: IpAddr = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let _dst: IpAddr = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    for _ in 0..2 {
        let port: i64 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        if port == 0 {
            return Err(bad());
        }
    }
    Ok(Proxied::Client(src))
}

fn read_v2<R: Read>(r: &mut R) -> Result<Proxied, ProxyError> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head)?;
    let (ver_cmd, fam) = (head[0], head[1]);
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    if ver_cmd >> 4 != 2 || len > V2_MAX_ADDR {
        return Err(ProxyError::Malformed);
    }
    let mut addr = vec![0u8; len];
    r.read_exact(&mut addr)?;
    match ver_cmd & 0x0f {
        // LOCAL: the balancer's own health check.
        0 => Ok(Proxied::Unchanged),
        1 => match fam {
            0x11 if len == 12 => {
                let b: [u8; 4] = addr[..4].try_into().map_err(|_| ProxyError::Malformed)?;
                Ok(Proxied::Client(IpAddr::from(b)))
            }
            0x21 if len == 36 => {
                let b: [u8; 16] = addr[..16].try_into().map_err(|_| ProxyError::Malformed)?;
                Ok(Proxied::Client(IpAddr::from(b)))
            }
            0x11 | 0x21 => Err(ProxyError::Malformed),
            _ => Ok(Proxied::Unchanged),
        },
        _ => Err(ProxyError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read(b: &[u8]) -> Result<Proxied, ProxyError> {
        let mut r = b;
        read_header(&mut r)
    }

    #[test]
    fn version_1_lines() {
        let got = read(b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 873\r\n@RSYNCD").unwrap();
        assert_eq!(got, Proxied::Client("10.1.2.3".parse().unwrap()));
        let got = read(b"PROXY TCP6 fd00::7 ::1 40000 873\r\n").unwrap();
        assert_eq!(got, Proxied::Client("fd00::7".parse().unwrap()));
        assert_eq!(read(b"PROXY UNKNOWN\r\n").unwrap(), Proxied::Unchanged);
        for bad in [
            &b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 873\n"[..],
            b"PROXY TCP4 10.1.2.3 127.0.0.1 0 873\r\n",
            b"PROXY TCP4 host 127.0.0.1 1 873\r\n",
            b"PROXY UDP4 10.1.2.3 127.0.0.1 1 2\r\n",
            b"@RSYNCD: 32.0 sha512\n",
        ] {
            assert!(read(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Over-long lines stop at upstream's bound.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        assert!(read(&long).is_err());
    }

    #[test]
    fn version_2_blocks() {
        let mut h = V2_SIG.to_vec();
        h.extend([
            0x21, 0x11, 0, 12, 10, 9, 8, 7, 127, 0, 0, 1, 0x9c, 0x40, 3, 105,
        ]);
        assert_eq!(
            read(&h).unwrap(),
            Proxied::Client("10.9.8.7".parse().unwrap())
        );
        let mut local = V2_SIG.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(read(&local).unwrap(), Proxied::Unchanged);
        let mut wrong_len = V2_SIG.to_vec();
        wrong_len.extend([0x21, 0x11, 0, 11]);
        wrong_len.extend([0u8; 11]);
        assert!(read(&wrong_len).is_err());
        let mut too_big = V2_SIG.to_vec();
        too_big.extend([0x21, 0x11, 0xff, 0xff]);
        assert!(read(&too_big).is_err());
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = read(&data);
            let mut sig = V2_SIG.to_vec();
            sig.extend(&data);
            let _ = read(&sig);
            let mut v1 = b"PROXY ".to_vec();
            v1.extend(&data);
            let _ = read(&v1);
        }
    }
}
