//! The client's side of a daemon's text phase (upstream: clientserver.c
//! start_inband_exchange, exchange_protocols; authenticate.c auth_client):
//! greetings, the module request, the MOTD, authentication, and the
//! argument list.

use super::connect::Conn;
use crate::daemon::auth::{self, AuthDigest};
use crate::exit::*;
use crate::protocol::greeting::{parse_greeting, read_line};
use crate::role::log::ClientLog;
use std::io::Write;

/// How the text phase ended.
pub enum Outcome {
    /// The daemon accepted the request: the protocol to speak.
    Ready(u8),
    /// The daemon listed its modules (or otherwise said EXIT): done, exit 0.
    Listed,
}

/// A failure, with its exit code and message.
#[derive(Debug)]
pub struct DaemonError {
    /// rsync exit code.
    pub code: i32,
    /// What to show (already formatted as stock does).
    pub msg: Option<String>,
}

fn fail(code: i32, msg: impl Into<String>) -> DaemonError {
    DaemonError {
        code,
        msg: Some(msg.into()),
    }
}

/// What the client needs for the exchange.
pub struct Request<'a> {
    /// Our protocol before negotiation.
    pub proto: u8,
    /// The user to authenticate as (`user@host`, else $USER / $LOGNAME).
    pub user: Option<String>,
    /// The remote paths (`module/path...`); the first names the module.
    pub paths: &'a [String],
    /// The server's arguments up to the `.` (without it).
    pub server_args: Vec<String>,
    /// `-s`: where the secluded arguments start in `server_args`.
    pub secluded_from: Option<usize>,
    /// `--password-file`.
    pub password_file: Option<&'a str>,
    /// Show the MOTD (`--no-motd` turns it off).
    pub motd: bool,
    /// `-vv` (debug CMD): show the arguments sent.
    pub show_args: bool,
    /// `--early-input=FILE`.
    pub early_input: Option<&'a str>,
}

/// Largest `--early-input` file (upstream's line buffer, BIGPATHBUFLEN).
const MAX_EARLY_INPUT: u64 = 4096 + 1024;

/// Run the exchange on `conn`.
pub fn exchange(
    conn: &mut Conn,
    req: &Request<'_>,
    log: &ClientLog,
) -> Result<Outcome, DaemonError> {
    let first = req.paths.first().map(String::as_str).unwrap_or("");
    if first.starts_with('/') {
        return Err(fail(
            RERR_STARTCLIENT,
            "ERROR: The remote path must start with a module name not a /",
        ));
    }
    let modname = first.split('/').next().unwrap_or("").to_string();
    let io = |_e| {
        fail(
            RERR_STREAMIO,
            "rsync: connection unexpectedly closed (0 bytes received so far) [Receiver]",
        )
    };
    let digests = auth::DIGESTS.join(" ");
    writeln!(conn.writer, "@RSYNCD: {}.0 {digests}", req.proto).map_err(io)?;
    conn.writer.flush().map_err(io)?;
    let line = match read_line(&mut conn.reader) {
        Ok(Some(l)) => l,
        _ => return Err(fail(RERR_STARTCLIENT, "rsync: did not see server greeting")),
    };
    let Some(g) = parse_greeting(&line) else {
        return Err(fail(
            RERR_STARTCLIENT,
            format!("rsync: server sent \"{line}\" rather than greeting"),
        ));
    };
    if g.sub.is_none() && g.proto >= 30 {
        return Err(fail(
            RERR_STARTCLIENT,
            format!("rsync: the server omitted the subprotocol value: {line}"),
        ));
    }
    let mut proto = (g.proto.clamp(0, 255) as u8).min(req.proto);
    if g.proto as u8 == req.proto && g.sub.unwrap_or(0) != 0 {
        proto = proto.saturating_sub(1);
    }
    let server_digests: Option<String> = (!g.digests.is_empty()).then(|| g.digests.join(" "));
    if proto < crate::protocol::MIN_PROTOCOL_VERSION {
        return Err(fail(
            RERR_PROTOCOL,
            format!(
                "protocol version mismatch -- server speaks {}, we need {} or later",
                g.proto,
                crate::protocol::MIN_PROTOCOL_VERSION
            ),
        ));
    }
    // --early-input: "#early_input=N" and N bytes, before the module name
    // (upstream start_inband_exchange).
    if let Some(path) = req.early_input {
        let data = std::fs::File::open(path)
            .and_then(|f| {
                let mut v = Vec::new();
                std::io::Read::read_to_end(
                    &mut std::io::Read::take(f, MAX_EARLY_INPUT + 1),
                    &mut v,
                )?;
                Ok(v)
            })
            .map_err(|e| {
                fail(
                    RERR_STARTCLIENT,
                    format!(
                        "rsync: [Receiver] failed to open {path}: {}",
                        crate::fs::os_error_text(&e)
                    ),
                )
            })?;
        if data.len() as u64 > MAX_EARLY_INPUT {
            return Err(fail(
                RERR_STARTCLIENT,
                format!("{path} is > {MAX_EARLY_INPUT} bytes."),
            ));
        }
        if !data.is_empty() {
            writeln!(conn.writer, "#early_input={}", data.len()).map_err(io)?;
            conn.writer.write_all(&data).map_err(io)?;
        }
    }
    writeln!(conn.writer, "{modname}").map_err(io)?;
    conn.writer.flush().map_err(io)?;
    loop {
        let line = match read_line(&mut conn.reader) {
            Ok(Some(l)) => l,
            _ => {
                return Err(fail(
                    RERR_STARTCLIENT,
                    "rsync: didn't get server startup line",
                ))
            }
        };
        if let Some(challenge) = line.strip_prefix("@RSYNCD: AUTHREQD ") {
            let reply = auth_reply(req, challenge, server_digests.as_deref(), proto)?;
            writeln!(conn.writer, "{reply}").map_err(io)?;
            conn.writer.flush().map_err(io)?;
            continue;
        }
        if line == "@RSYNCD: OK" {
            break;
        }
        if line == "@RSYNCD: EXIT" {
            return Ok(Outcome::Listed);
        }
        if line.starts_with("@ERROR") {
            return Err(fail(RERR_STARTCLIENT, line));
        }
        if req.motd || modname.is_empty() {
            log.info(&line);
        }
    }
    // The arguments: the server's options, ".", then the paths (each kept
    // from splitting at " module/" the way the daemon splits them).
    let mut sargs = req.server_args.clone();
    sargs.push(".".into());
    let guard = format!(" {modname}/");
    for p in req.paths {
        if *p == modname {
            sargs.push(format!("{modname}/"));
            continue;
        }
        let mut a = String::new();
        if p.starts_with('-') {
            a.push_str("./");
        }
        let mut rest = p.as_str();
        while let Some(i) = rest.find(&guard) {
            a.push_str(&rest[..i]);
            a.push_str("[ ]");
            rest = &rest[i + 1..];
        }
        a.push_str(rest);
        sargs.push(a);
    }
    // -s: the first list stops where the secluded arguments start (in
    // line mode, below protocol 30, upstream prints that NULL as "(null)"
    // and the rest in the clear); then all of them follow as a NUL list.
    let split = req.secluded_from.map(|k| k.min(sargs.len()));
    if req.show_args {
        log.info(&super::connect::child_argv_line(
            "sending daemon args:",
            &sargs[..split.unwrap_or(sargs.len())],
        ));
    }
    let mut buf = Vec::new();
    if proto >= 30 {
        for a in &sargs[..split.unwrap_or(sargs.len())] {
            buf.extend_from_slice(a.as_bytes());
            buf.push(0);
        }
        buf.push(0);
    } else {
        for (i, a) in sargs.iter().enumerate() {
            if split == Some(i) {
                buf.extend_from_slice(b"(null)\n");
            }
            buf.extend_from_slice(a.as_bytes());
            buf.push(b'\n');
        }
        buf.push(b'\n');
    }
    if let Some(k) = split {
        // upstream send_protected_args (-vv): what follows the first list.
        if req.show_args {
            log.info(&super::connect::child_argv_line(
                "protected args:",
                &sargs[k..],
            ));
        }
        buf.extend(super::server_args::protected_args_bytes(&sargs[k..]));
    }
    conn.writer.write_all(&buf).map_err(io)?;
    conn.writer.flush().map_err(io)?;
    Ok(Outcome::Ready(proto))
}

/// auth_client: `user response` for the challenge.
fn auth_reply(
    req: &Request<'_>,
    challenge: &str,
    server_digests: Option<&str>,
    proto: u8,
) -> Result<String, DaemonError> {
    let user = req
        .user
        .clone()
        .filter(|u| !u.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "nobody".into());
    let password = match req.password_file {
        Some(f) => read_password_file(f)?,
        None => match std::env::var("RSYNC_PASSWORD") {
            Ok(p) => p,
            Err(_) => prompt_password(),
        },
    };
    let digest = match server_digests {
        Some(list) => {
            let names: Vec<&str> = list.split_ascii_whitespace().collect();
            let Some(name) = auth::DIGESTS.iter().find(|d| names.contains(d)) else {
                return Err(fail(
                    RERR_UNSUPPORTED,
                    format!("Failed to negotiate a daemon_auth choice. Server list: {list}"),
                ));
            };
            digest_by_name(name)
        }
        None if proto >= 30 => AuthDigest::Md5,
        None => AuthDigest::Md4Old,
    };
    Ok(format!(
        "{user} {}",
        auth::response(digest, password.as_bytes(), challenge)
    ))
}

fn digest_by_name(n: &str) -> AuthDigest {
    match n {
        "sha512" => AuthDigest::Sha512,
        "sha256" => AuthDigest::Sha256,
        "sha1" => AuthDigest::Sha1,
        "md5" => AuthDigest::Md5,
        _ => AuthDigest::Md4,
    }
}

/// getpassf: the first line of the file; the file must not be readable by others.
fn read_password_file(path: &str) -> Result<String, DaemonError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut text = Vec::new();
    if path == "-" {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        text = line.into_bytes();
    } else {
        let mut f = std::fs::File::open(path).map_err(|e| {
            fail(
                RERR_SYNTAX,
                format!(
                    "rsync: could not open password file {path}: {}",
                    crate::fs::os_error_text(&e)
                ),
            )
        })?;
        let md = f
            .metadata()
            .map_err(|e| fail(RERR_SYNTAX, format!("fstat({path}): {e}")))?;
        if md.mode() & 0o006 != 0 {
            return Err(fail(
                RERR_SYNTAX,
                "ERROR: password file must not be other-accessible",
            ));
        }
        if nix::unistd::geteuid().is_root() && md.uid() != 0 {
            return Err(fail(
                RERR_SYNTAX,
                "ERROR: password file must be owned by root when running as root",
            ));
        }
        let _ = std::io::Read::by_ref(&mut f)
            .take(511)
            .read_to_end(&mut text);
    }
    let s = String::from_utf8_lossy(&text);
    match s.split(['\n', '\r']).find(|l| !l.is_empty()) {
        Some(p) => Ok(p.to_string()),
        None => Err(fail(
            RERR_SYNTAX,
            format!("ERROR: failed to read a password from {path}"),
        )),
    }
}

/// getpass: read a password from the terminal, if there is one.
fn prompt_password() -> String {
    use std::io::BufRead;
    let Ok(tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
    else {
        return String::new();
    };
    let mut w = &tty;
    let _ = w.write_all(b"Password: ");
    let _ = w.flush();
    let mut line = String::new();
    let _ = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = w.write_all(b"\n");
    line.trim_end_matches(['\n', '\r']).to_string()
}
