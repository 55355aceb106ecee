//! Daemon text phase (upstream: clientserver.c exchange_protocols,
//! start_inband_exchange, send_listing; io.c read_line_old): `@RSYNCD:`
//! greetings, module lines, listing and `@ERROR` lines.

use super::{ProtoError, Result};
use std::io::Read;

/// Longest text line accepted in the daemon phase.
pub const MAX_LINE: usize = 4096;

/// Our greeting line (auth digests in preference order).
pub fn greeting_line(proto: u8, digests: &str) -> String {
    if digests.is_empty() {
        format!("@RSYNCD: {proto}.0\n")
    } else {
        format!("@RSYNCD: {proto}.0 {digests}\n")
    }
}

/// A parsed peer greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Protocol number.
    pub proto: i32,
    /// Sub-protocol (None when absent).
    pub sub: Option<i32>,
    /// Auth digest names, if listed.
    pub digests: Vec<String>,
}

/// Parse `@RSYNCD: N[.M] [digests...]`.
pub fn parse_greeting(line: &str) -> Option<Greeting> {
    let rest = line.strip_prefix("@RSYNCD: ")?;
    let (ver, digests) = match rest.split_once(' ') {
        Some((v, d)) => (v, d),
        None => (rest, ""),
    };
    let (p, s) = match ver.split_once('.') {
        Some((p, s)) => (p, Some(s)),
        None => (ver, None),
    };
    let digits = |t: &str| -> Option<i32> {
        let d: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
        if d.is_empty() || d.len() > 9 {
            None
        } else {
            d.parse().ok()
        }
    };
    let proto = digits(p)?;
    let sub = match s {
        Some(s) => Some(digits(s)?),
        None => None,
    };
    Some(Greeting {
        proto,
        sub,
        digests: digests
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect(),
    })
}

/// Read one daemon-phase line: ends at `\n`, `\r` dropped, NUL and overlong lines are errors.
/// Returns `Ok(None)` at a clean EOF before any byte.
pub fn read_line(r: &mut impl Read) -> Result<Option<String>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = r.read(&mut b)?;
        if n == 0 {
            if line.is_empty() {
                return Ok(None);
            }
            return Err(ProtoError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        match b[0] {
            b'\n' => break,
            b'\r' => {}
            0 => return Err(ProtoError::invalid("NUL in daemon line")),
            c => {
                if line.len() >= MAX_LINE {
                    return Err(ProtoError::invalid("daemon line too long"));
                }
                line.push(c)
            }
        }
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

/// Read one argument of the daemon argument list: NUL-terminated (proto >= 30) or
/// newline-terminated. Returns `None` for the empty terminator.
pub fn read_arg(r: &mut impl Read, nul_terminated: bool) -> Result<Option<Vec<u8>>> {
    let mut arg = Vec::new();
    let mut b = [0u8; 1];
    loop {
        r.read_exact(&mut b)?;
        let end = if nul_terminated {
            b[0] == 0
        } else {
            b[0] == b'\n'
        };
        if end {
            break;
        }
        if !nul_terminated && b[0] == b'\r' {
            continue;
        }
        if arg.len() >= MAX_LINE {
            return Err(ProtoError::invalid("argument too long"));
        }
        arg.push(b[0]);
    }
    Ok(if arg.is_empty() { None } else { Some(arg) })
}

/// An argument list: arguments up to the empty terminator, each as
/// [`read_arg`] reads it. At most `max` are taken: with `max + 1` it stops
/// reading, and the caller refuses the list.
pub fn read_arg_list(r: &mut impl Read, nul_terminated: bool, max: usize) -> Result<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    while args.len() <= max {
        match read_arg(r, nul_terminated)? {
            Some(a) => args.push(a),
            None => break,
        }
    }
    Ok(args)
}

/// One module line of a listing (`%-15s\t%s\n`).
pub fn listing_line(name: &str, comment: &str) -> String {
    format!("{name:<15}\t{comment}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greetings() {
        let g = parse_greeting("@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4").unwrap();
        assert_eq!((g.proto, g.sub, g.digests.len()), (32, Some(0), 5));
        let g = parse_greeting("@RSYNCD: 29").unwrap();
        assert_eq!((g.proto, g.sub), (29, None));
        assert!(parse_greeting("HELLO").is_none());
        assert!(parse_greeting("@RSYNCD: x.0").is_none());
        assert_eq!(greeting_line(32, "md5 md4"), "@RSYNCD: 32.0 md5 md4\n");
    }

    #[test]
    fn lines_and_args() {
        let mut r = &b"mod\r\nnext\n"[..];
        assert_eq!(read_line(&mut r).unwrap().unwrap(), "mod");
        assert_eq!(read_line(&mut r).unwrap().unwrap(), "next");
        assert_eq!(read_line(&mut r).unwrap(), None);
        assert!(read_line(&mut &b"a\0b\n"[..]).is_err());
        let mut r = &b"--server\0.\0\0"[..];
        assert_eq!(read_arg(&mut r, true).unwrap().unwrap(), b"--server");
        assert_eq!(read_arg(&mut r, true).unwrap().unwrap(), b".");
        assert_eq!(read_arg(&mut r, true).unwrap(), None);
        assert_eq!(listing_line("pub", "x"), "pub            \tx\n");
    }

    proptest! {
        #![proptest_config(crate::testing::proptest_config())]
        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = parse_greeting(&s);
        }
    }
}
