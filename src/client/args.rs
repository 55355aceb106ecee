//! The shape of a client run from its path arguments (upstream:
//! options.c check_for_hostspec / parse_hostspec, main.c start_client):
//! which side is remote, over which transport, and which paths each side
//! gets.

/// How the far side is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// `[user@]host:path`: a remote shell runs `rsync --server`.
    Shell {
        /// `user@host` as given (the user part is split off later).
        host: String,
    },
    /// `host::module/path` or `rsync://host[:port]/module/path`.
    Daemon {
        /// `user@host` as given.
        host: String,
        /// The port, or `None` for the default (`--port` / 873).
        port: Option<u16>,
    },
}

/// What the path arguments ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// We send (push or local copy); otherwise we receive (pull).
    pub am_sender: bool,
    /// The far side; `None` for a local copy.
    pub remote: Option<Remote>,
    /// Our paths: the sources of a push, or the destination of a pull
    /// (empty for a listing).
    pub local: Vec<String>,
    /// The far side's paths: the destination of a push, or the sources of
    /// a pull (for a daemon, each starts with the module name).
    pub remote_paths: Vec<String>,
    /// No destination: list the files instead (`rsync host:path`).
    pub list_only: bool,
}

/// A usage error in the arguments (exit 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

const URL_PREFIX: &str = "rsync://";

/// What `check_for_hostspec` finds: the host (with any `user@`), the path,
/// and the port (`None` for a remote shell, `Some(0)` for the default
/// daemon port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// `user@host` or `host`.
    pub host: String,
    /// The path after the host part.
    pub path: String,
    /// `None`: remote shell; `Some(0)`: daemon, default port; `Some(n)`: daemon on port n.
    pub port: Option<u16>,
}

/// parse_hostspec: `user@host` (or `[v6addr]`) up to `:` (or, in a URL, `/`).
/// Returns the host, the index where the path starts and the URL port.
fn parse_hostspec(s: &[u8], url: bool) -> Option<(String, usize, Option<u16>)> {
    let mut host_start = 0usize;
    let mut hostlen: Option<usize> = None;
    let mut userlen = 0usize;
    let mut port = None;
    let mut i = 0usize;
    loop {
        if i >= s.len() {
            if !url {
                return None;
            }
            if hostlen.is_none() {
                hostlen = Some(i - host_start);
            }
            break;
        }
        let c = s[i];
        if c == b':' || c == b'/' {
            if hostlen.is_none() {
                hostlen = Some(i - host_start);
            }
            i += 1;
            if c == b'/' {
                if !url {
                    return None;
                }
            } else if url {
                let ds = i;
                while i < s.len() && s[i].is_ascii_digit() {
                    i += 1;
                }
                let n: u32 = std::str::from_utf8(&s[ds..i])
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                port = Some(u16::try_from(n).unwrap_or(0));
                if i < s.len() {
                    if s[i] != b'/' {
                        return None;
                    }
                    i += 1;
                }
            }
            break;
        }
        if c == b'@' {
            userlen = i + 1;
            host_start = i + 1;
        } else if c == b'[' {
            if i != host_start {
                return None;
            }
            host_start += 1;
            while i < s.len() && s[i] != b']' && s[i] != b'/' {
                i += 1;
            }
            let hl = i - host_start;
            if i >= s.len()
                || s[i] != b']'
                || (i + 1 < s.len() && s[i + 1] != b'/' && s[i + 1] != b':')
                || hl == 0
            {
                return None;
            }
            hostlen = Some(hl);
        }
        i += 1;
    }
    let hl = hostlen.unwrap_or(0);
    let mut host = String::from_utf8_lossy(&s[..userlen]).into_owned();
    host.push_str(&String::from_utf8_lossy(&s[host_start..host_start + hl]));
    Some((host, i, port))
}

/// check_for_hostspec: is `arg` remote, and how.
pub fn check_for_hostspec(arg: &str) -> Option<HostSpec> {
    let b = arg.as_bytes();
    if b.len() >= URL_PREFIX.len()
        && b[..URL_PREFIX.len()].eq_ignore_ascii_case(URL_PREFIX.as_bytes())
    {
        if let Some((host, at, port)) = parse_hostspec(&b[URL_PREFIX.len()..], true) {
            let path = String::from_utf8_lossy(&b[URL_PREFIX.len() + at..]).into_owned();
            return Some(HostSpec {
                host,
                path,
                port: Some(port.unwrap_or(0)),
            });
        }
    }
    let (host, at, _) = parse_hostspec(b, false)?;
    let rest = &b[at..];
    if let Some(p) = rest.strip_prefix(b":") {
        return Some(HostSpec {
            host,
            path: String::from_utf8_lossy(p).into_owned(),
            port: Some(0),
        });
    }
    Some(HostSpec {
        host,
        path: String::from_utf8_lossy(rest).into_owned(),
        port: None,
    })
}

fn remote_of(h: &HostSpec) -> Remote {
    match h.port {
        None => Remote::Shell {
            host: h.host.clone(),
        },
        Some(p) => Remote::Daemon {
            host: h.host.clone(),
            port: (p != 0).then_some(p),
        },
    }
}

/// start_client's argument analysis.
pub fn plan(args: &[String]) -> Result<Plan, ArgError> {
    let Some(first) = args.first() else {
        return Err(ArgError("no source given".into()));
    };
    if let Some(src) = check_for_hostspec(first) {
        // A pull: every source on the same machine, the last arg (if any) local.
        let (sources, dest) = if args.len() == 1 {
            (args, None)
        } else {
            let d = &args[args.len() - 1];
            if check_for_hostspec(d).is_some() {
                return Err(ArgError(
                    "The source and destination cannot both be remote.".into(),
                ));
            }
            (&args[..args.len() - 1], Some(d.clone()))
        };
        let mut remote_paths = Vec::new();
        for (i, a) in sources.iter().enumerate() {
            let h = if i == 0 {
                src.clone()
            } else {
                match check_for_hostspec(a) {
                    Some(h) => h,
                    None => {
                        return Err(ArgError(format!(
                            "Unexpected local arg: {a}\nIf arg is a remote file/dir, prefix it with a colon (:)."
                        )))
                    }
                }
            };
            if i > 0 {
                if !h.host.is_empty() && h.host != src.host {
                    return Err(ArgError(
                        "All source args must come from the same machine.".into(),
                    ));
                }
                if h.port.is_some() != src.port.is_some() {
                    return Err(ArgError(
                        "All source args must use the same hostspec format.".into(),
                    ));
                }
                if h.port != src.port && h.port != Some(0) && src.port != Some(0) {
                    return Err(ArgError(
                        "All source args must use the same port number.".into(),
                    ));
                }
            }
            let p = if h.path.is_empty() && src.port.is_none() {
                ".".to_string()
            } else {
                h.path.clone()
            };
            remote_paths.push(p);
        }
        return Ok(Plan {
            am_sender: false,
            remote: Some(remote_of(&src)),
            list_only: dest.is_none(),
            local: dest.into_iter().collect(),
            remote_paths,
        });
    }
    // A push or a local copy: the sources are local.
    let (sources, dest) = if args.len() > 1 {
        let d = args[args.len() - 1].clone();
        (
            args[..args.len() - 1].to_vec(),
            if d.is_empty() { ".".to_string() } else { d },
        )
    } else {
        (args.to_vec(), ".".to_string())
    };
    for s in &sources {
        if s.is_empty() {
            return Err(ArgError("Empty source arg specified.".into()));
        }
        if check_for_hostspec(s).is_some() {
            return Err(ArgError(format!("Unexpected remote arg: {s}")));
        }
    }
    let list_only = args.len() < 2;
    match check_for_hostspec(&dest) {
        None => Ok(Plan {
            am_sender: true,
            remote: None,
            local: sources,
            remote_paths: vec![dest],
            list_only,
        }),
        Some(h) => {
            let p = if h.path.is_empty() && h.port.is_none() {
                ".".to_string()
            } else {
                h.path.clone()
            };
            Ok(Plan {
                am_sender: true,
                remote: Some(remote_of(&h)),
                local: sources,
                remote_paths: vec![p],
                list_only,
            })
        }
    }
}

/// Split `user@host` into its parts.
pub fn split_user(host: &str) -> (Option<String>, String) {
    match host.rfind('@') {
        Some(p) => (Some(host[..p].to_string()), host[p + 1..].to_string()),
        None => (None, host.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(s: &str) -> Option<(String, String, Option<u16>)> {
        check_for_hostspec(s).map(|h| (h.host, h.path, h.port))
    }

    #[test]
    fn hostspecs_as_upstream() {
        assert_eq!(hs("host:path"), Some(("host".into(), "path".into(), None)));
        assert_eq!(hs("u@host:"), Some(("u@host".into(), "".into(), None)));
        assert_eq!(
            hs("host::mod/p"),
            Some(("host".into(), "mod/p".into(), Some(0)))
        );
        assert_eq!(
            hs("rsync://u@h:8730/mod/p"),
            Some(("u@h".into(), "mod/p".into(), Some(8730)))
        );
        assert_eq!(
            hs("rsync://h/mod"),
            Some(("h".into(), "mod".into(), Some(0)))
        );
        assert_eq!(hs("RSYNC://h"), Some(("h".into(), "".into(), Some(0))));
        assert_eq!(hs("[::1]:p"), Some(("::1".into(), "p".into(), None)));
        assert_eq!(hs("a/b:c"), None);
        assert_eq!(hs("plain"), None);
        assert_eq!(hs("/abs/x:y"), None);
    }

    #[test]
    fn plans() {
        let p = plan(&["src/".into(), "h::m/d".into()]).unwrap();
        assert!(p.am_sender);
        assert_eq!(
            p.remote,
            Some(Remote::Daemon {
                host: "h".into(),
                port: None
            })
        );
        assert_eq!(p.remote_paths, ["m/d"]);
        let p = plan(&["h:a".into(), ":b".into(), "dst".into()]).unwrap();
        assert!(!p.am_sender);
        assert_eq!(p.remote_paths, ["a", "b"]);
        assert_eq!(p.local, ["dst"]);
        let p = plan(&["a".into(), "b".into()]).unwrap();
        assert_eq!(p.remote, None);
        assert!(plan(&["h:a".into(), "k:b".into()]).is_err());
        let p = plan(&["rsync://h:1/m/".into()]).unwrap();
        assert!(p.list_only);
    }
}
