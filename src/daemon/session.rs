//! One daemon connection (upstream: clientserver.c start_daemon,
//! rsync_module; main.c start_server): the text phase, module checks,
//! argument list, protocol setup and the role that serves the request.
//! Runs in its own process with the socket as stdin/stdout.

use super::config::{DaemonConfig, ModuleConfig};
use super::paths::module_args;
use crate::cli::options::{self, Options};
use crate::exit::*;
use crate::flist::build::{build_file_list_with, FileList, ListState};
use crate::flist::incremental::IncrementalLister;
use crate::flist::BuildOpts;
use crate::protocol::greeting::{greeting_line, listing_line, parse_greeting, read_arg, read_line};
use crate::protocol::mux::{Demux, MsgCode, MuxWriter};
use crate::protocol::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::role::input::InputReader;
use crate::role::sender::{self, send_text, MoreLists, SendStats, SenderCtx};
use crate::role::setup::{server_setup, Negotiated};
use crate::role::RoleError;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a session ended, for the exit status and the log.
#[derive(Debug)]
pub struct Outcome {
    /// rsync exit code.
    pub code: i32,
    /// Close with a FIN after our last bytes (false: just close, as upstream
    /// does after refusing the arguments, which the client sees as a reset).
    pub half_close: bool,
}

/// Write a text line and flush.
fn line<W: Write>(w: &mut W, s: &str) -> std::io::Result<()> {
    w.write_all(s.as_bytes())?;
    w.flush()
}

/// Serve one connection: `r`/`w` are the two directions of the client socket.
pub fn serve<R: Read + Send + 'static, W: Write + Send>(
    cfg: &DaemonConfig,
    mut r: R,
    mut w: W,
    peer: &str,
) -> Outcome {
    let outcome = match serve_inner(cfg, &mut r, &mut w, peer) {
        Ok(Some((n, opts, module, args))) => {
            let code = run_module(cfg, n, opts, module, args, r, w);
            Outcome {
                code,
                half_close: true,
            }
        }
        Ok(None) => Outcome {
            code: 0,
            half_close: true,
        },
        Err(code) => {
            drop(r);
            drop(w);
            Outcome {
                code,
                half_close: code != RERR_UNSUPPORTED,
            }
        }
    };
    super::xfer_exec::notify_post(outcome.code);
    outcome
}

type Accepted = (u8, Options, ModuleConfig, Vec<Vec<u8>>);

fn serve_inner<R: Read, W: Write>(
    cfg: &DaemonConfig,
    r: &mut R,
    w: &mut W,
    peer: &str,
) -> Result<Option<Accepted>, i32> {
    let io = |_e| RERR_SOCKETIO;
    let offered = super::auth::offered(std::env::var(super::auth::OFFER_ENV).ok().as_deref());
    line(w, &greeting_line(PROTOCOL_VERSION, &offered.join(" "))).map_err(io)?;
    if let Some(motd) = cfg.global.motd_file.as_deref() {
        if let Ok(text) = std::fs::read(motd) {
            w.write_all(&text).map_err(io)?;
            line(w, "\n").map_err(io)?;
        }
    }
    let greeting = match read_line(r) {
        Ok(Some(l)) => l,
        Ok(None) => return Err(RERR_STARTCLIENT),
        Err(_) => {
            let _ = line(w, "@ERROR: protocol startup error\n");
            return Err(RERR_STARTCLIENT);
        }
    };
    let Some(g) = parse_greeting(&greeting) else {
        let _ = line(w, "@ERROR: protocol startup error\n");
        tracing::warn!(peer, "bad greeting: {greeting:?}");
        return Err(RERR_STARTCLIENT);
    };
    if g.sub.is_none() && g.proto >= 30 {
        let _ = line(
            w,
            &format!("@ERROR: your client omitted the subprotocol value: {greeting}\n"),
        );
        return Err(RERR_STARTCLIENT);
    }
    if g.proto < MIN_PROTOCOL_VERSION as i32 {
        let _ = line(w, &format!("@ERROR: protocol version mismatch -- client speaks {}, rrsync needs {MIN_PROTOCOL_VERSION} or later\n", g.proto));
        return Err(RERR_PROTOCOL);
    }
    let proto = (g.proto.min(PROTOCOL_VERSION as i32)) as u8;
    let mut module_line = match read_line(r) {
        Ok(Some(l)) => l,
        _ => return Err(RERR_STARTCLIENT),
    };
    if let Some(n) = module_line.strip_prefix("#early_input=") {
        let n: usize = n.trim().parse().map_err(|_| RERR_STARTCLIENT)?;
        if n > 5 * 1024 {
            let _ = line(w, "@ERROR: early input too large\n");
            return Err(RERR_STARTCLIENT);
        }
        let mut skip = vec![0u8; n];
        r.read_exact(&mut skip).map_err(|_| RERR_STARTCLIENT)?;
        module_line = match read_line(r) {
            Ok(Some(l)) => l,
            _ => return Err(RERR_STARTCLIENT),
        };
    }
    if module_line.is_empty() || module_line == "#list" {
        for m in cfg.listed_modules() {
            w.write_all(listing_line(&m.name, m.comment.as_deref().unwrap_or("")).as_bytes())
                .map_err(io)?;
        }
        line(w, "@RSYNCD: EXIT\n").map_err(io)?;
        return Ok(None);
    }
    if module_line.starts_with('#') {
        let _ = line(w, &format!("@ERROR: Unknown command '{module_line}'\n"));
        return Err(RERR_STARTCLIENT);
    }
    let Some(module) = cfg.module(&module_line).cloned() else {
        let _ = line(w, &format!("@ERROR: Unknown module '{module_line}'\n"));
        tracing::info!(peer, "unknown module {module_line:?}");
        return Err(RERR_STARTCLIENT);
    };
    let mut module = module;
    // hosts allow / hosts deny (upstream rsync_module: before auth).
    if let Ok(addr) = peer.parse::<std::net::IpAddr>() {
        let host = if module.reverse_lookup {
            super::access::reverse_name(addr)
        } else {
            None
        };
        if !super::access::allow_access(
            module.hosts_allow.as_deref(),
            module.hosts_deny.as_deref(),
            addr,
            host.as_deref(),
        ) {
            let msg = if module.list {
                format!(
                    "@ERROR: access denied to {} from {} ({peer})\n",
                    module.name,
                    host.as_deref().unwrap_or("UNKNOWN")
                )
            } else {
                format!("@ERROR: Unknown module '{}'\n", module.name)
            };
            let _ = line(w, &msg);
            tracing::warn!(peer, "access denied to module {}", module.name);
            return Err(RERR_STARTCLIENT);
        }
    }
    // max connections: a record lock in the lock file, held until this process ends.
    if module.max_connections > 0 {
        match super::access::claim_connection(&module.lock_file, module.max_connections) {
            Ok(Some(slot)) => std::mem::forget(slot),
            Ok(None) => {
                let _ = line(
                    w,
                    &format!(
                        "@ERROR: max connections ({}) reached -- try again later\n",
                        module.max_connections
                    ),
                );
                return Err(RERR_STARTCLIENT);
            }
            Err(e) => {
                tracing::warn!(peer, "lock file {}: {e}", module.lock_file);
                let _ = line(w, "@ERROR: failed to open lock file\n");
                return Err(RERR_STARTCLIENT);
            }
        }
    }
    let mut auth_user = String::new();
    if let Some(users) = module.auth_users.clone().filter(|u| !u.trim().is_empty()) {
        match authenticate(r, w, &module, &users, &g, peer, &offered) {
            Ok((access, user)) => {
                auth_user = user;
                match access {
                    super::auth::Access::ReadOnly => module.read_only = true,
                    super::auth::Access::ReadWrite => module.read_only = false,
                    super::auth::Access::Default => {}
                }
            }
            Err(code) => {
                // A short pause makes guessing passwords slow (the client waits anyway).
                std::thread::sleep(Duration::from_millis(200));
                let _ = line(
                    w,
                    &format!("@ERROR: auth failed on module {}\n", module.name),
                );
                return Err(code);
            }
        }
    }
    let no_xfer_exec = std::env::var_os("RSYNC_NO_XFER_EXEC").is_some();
    // post-xfer exec is armed first, then pre-xfer exec starts, both before
    // the module is entered, as upstream.
    if let Some(cmd) = module.post_xfer_exec.as_deref().filter(|_| !no_xfer_exec) {
        if let Err(e) = super::xfer_exec::arm_post(cmd, &xfer_env(&module, peer, &auth_user)) {
            tracing::warn!(peer, "fork failed: {e}");
            let _ = line(w, "@ERROR: fork failed\n");
            return Err(RERR_STARTCLIENT);
        }
    }
    let pre_xfer = match module.pre_xfer_exec.as_deref().filter(|_| !no_xfer_exec) {
        Some(cmd) => match super::xfer_exec::start(cmd, &xfer_env(&module, peer, &auth_user)) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(peer, "pre-xfer exec preparation failed: {e}");
                let _ = line(w, "@ERROR: pre-xfer exec preparation failed\n");
                return Err(RERR_STARTCLIENT);
            }
        },
        None => None,
    };
    if let Err(msg) = enter_module(&module) {
        let _ = line(w, &format!("@ERROR: {msg}\n"));
        return Err(RERR_STARTCLIENT);
    }
    set_io_timeout(module.timeout);
    line(w, "@RSYNCD: OK\n").map_err(io)?;
    let nul = proto >= 30;
    let mut argv: Vec<Vec<u8>> = Vec::new();
    loop {
        match read_arg(r, nul) {
            Ok(Some(a)) => {
                if argv.len() >= 4096 {
                    return Err(RERR_PROTOCOL);
                }
                argv.push(a)
            }
            Ok(None) => break,
            Err(_) => return Err(RERR_STREAMIO),
        }
    }
    // Options up to and including the first ".", then paths.
    let dot = argv.iter().position(|a| a == b".");
    let (opt_args, path_args) = match dot {
        Some(p) => (&argv[..=p], &argv[p + 1..]),
        None => (&argv[..], &argv[argv.len()..]),
    };
    let opt_strs: Vec<String> = opt_args
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let parsed = options::parse(&opt_strs);
    let mut paths = Vec::new();
    for p in path_args {
        paths.extend(module_args(&module.name, p));
    }
    match parsed {
        Ok((mut opts, _rest)) => {
            opts.server = true;
            if let Some(refused) = refused_option(&module, &opts) {
                refuse(
                    r,
                    w,
                    proto,
                    &opts,
                    &format!("rsync: The server is configured to refuse {refused}"),
                    &opt_strs,
                );
                return Err(RERR_UNSUPPORTED);
            }
            if let Some(pre) = pre_xfer {
                let request: Vec<String> = path_args
                    .iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let mut args = vec!["rsyncd".to_string()];
                args.extend(opt_strs.iter().cloned());
                // (An empty path is the module root, which upstream's glob
                // expansion names ".".)
                args.extend(paths.iter().map(|p| {
                    String::from_utf8_lossy(if p.is_empty() { b"." } else { p }).into_owned()
                }));
                if let Some(text) = pre.finish(&request.join(" "), &args) {
                    tracing::warn!(peer, "{}", text.trim_end());
                    refuse(r, w, proto, &opts, &text, &opt_strs);
                    return Err(RERR_UNSUPPORTED);
                }
            }
            if opts.iconv.is_some() || opts.acls || opts.xattrs > 0 || opts.crtimes {
                refuse(
                    r,
                    w,
                    proto,
                    &opts,
                    "rsync: rrsync does not support --iconv, -A, -X or --crtimes yet",
                    &opt_strs,
                );
                return Err(RERR_UNSUPPORTED);
            }
            Ok(Some((proto, opts, module, paths)))
        }
        Err(e) => {
            let opts = Options {
                server: true,
                caps: caps_of(&opt_strs),
                ..Default::default()
            };
            refuse(
                r,
                w,
                proto,
                &opts,
                &format!("rsync: on remote machine: {e}"),
                &opt_strs,
            );
            Err(RERR_UNSUPPORTED)
        }
    }
}

/// auth_server: challenge, response, `auth users` and the secrets file.
fn authenticate<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    module: &ModuleConfig,
    users: &str,
    g: &crate::protocol::greeting::Greeting,
    peer: &str,
    offered: &[&str],
) -> Result<(super::auth::Access, String), i32> {
    use super::auth;
    let Some(digest) = auth::choose_digest(&g.digests, g.proto, offered) else {
        let _ = line(
            w,
            &format!(
                "@ERROR: your client does not support one of our daemon-auth checksums: {}\n",
                offered.join(" ")
            ),
        );
        return Err(RERR_STARTCLIENT);
    };
    // `auth digest`: a floor on the negotiated digest, checked before any
    // challenge is sent (upstream check_secret's downgrade guard).
    if let Some(floor) = module.auth_digest.as_deref().map(str::trim) {
        match (auth::digest_rank(floor), auth::digest_rank(digest.name())) {
            (None, _) => {
                tracing::warn!(
                    peer,
                    "auth failed on module {}: the configured 'auth digest = {floor}' is not a supported digest on this build",
                    module.name
                );
                return Err(RERR_STARTCLIENT);
            }
            (Some(want), Some(got)) if got <= want => {}
            _ => {
                tracing::warn!(
                    peer,
                    "auth failed on module {}: negotiated auth digest {} is weaker than the required 'auth digest = {floor}'",
                    module.name,
                    digest.name()
                );
                return Err(RERR_STARTCLIENT);
            }
        }
    }
    let chal = auth::challenge();
    line(w, &format!("@RSYNCD: AUTHREQD {chal}\n")).map_err(|_| RERR_SOCKETIO)?;
    let reply = match read_line(r) {
        Ok(Some(l)) => l,
        _ => return Err(RERR_STARTCLIENT),
    };
    let Some((user, resp)) = reply.split_once(' ') else {
        tracing::warn!(peer, "auth failed on module {}: no response", module.name);
        return Err(RERR_STARTCLIENT);
    };
    let Some((access, group)) = auth::match_user(users, user) else {
        tracing::warn!(
            peer,
            "auth failed on module {}: user {user} not allowed",
            module.name
        );
        return Err(RERR_STARTCLIENT);
    };
    let Some(secrets) = module.secrets_file.as_deref() else {
        tracing::warn!(
            peer,
            "auth failed on module {}: no secrets file",
            module.name
        );
        return Err(RERR_STARTCLIENT);
    };
    let pw = match auth::find_secret(secrets, module.strict_modes, user, group.as_deref()) {
        Ok(Some(pw)) => pw,
        Ok(None) => {
            tracing::warn!(
                peer,
                "auth failed on module {}: no secret for {user}",
                module.name
            );
            return Err(RERR_STARTCLIENT);
        }
        Err(e) => {
            tracing::warn!(peer, "auth failed on module {}: {e}", module.name);
            return Err(RERR_STARTCLIENT);
        }
    };
    let want = auth::response(digest, &pw, &chal);
    if !auth::constant_time_eq(want.as_bytes(), resp.trim().as_bytes()) {
        tracing::warn!(
            peer,
            "auth failed on module {}: password mismatch for {user}",
            module.name
        );
        return Err(RERR_STARTCLIENT);
    }
    Ok((access, user.to_string()))
}

/// The environment of `pre-xfer exec` known before the arguments arrive.
fn xfer_env(module: &ModuleConfig, peer: &str, user: &str) -> Vec<(String, String)> {
    let host = peer
        .parse::<std::net::IpAddr>()
        .ok()
        .filter(|_| module.reverse_lookup)
        .and_then(super::access::reverse_name)
        .unwrap_or_else(|| "UNDETERMINED".to_string());
    vec![
        ("RSYNC_MODULE_NAME".into(), module.name.clone()),
        (
            "RSYNC_MODULE_PATH".into(),
            module.path.clone().unwrap_or_default(),
        ),
        ("RSYNC_HOST_ADDR".into(), peer.to_string()),
        ("RSYNC_HOST_NAME".into(), host),
        ("RSYNC_USER_NAME".into(), user.to_string()),
        ("RSYNC_PID".into(), std::process::id().to_string()),
    ]
}

/// The `-e` capability letters in a raw server argv, for setup after a parse failure.
fn caps_of(args: &[String]) -> Option<String> {
    args.iter()
        .find(|a| a.starts_with('-') && !a.starts_with("--"))
        .and_then(|a| a.find('e').map(|p| a[p + 1..].to_string()))
}

/// `refuse options` (upstream: options.c set_refuse_options): a refused option that the client used.
fn refused_option(module: &ModuleConfig, opts: &Options) -> Option<String> {
    let list = module.refuse_options.as_deref()?;
    for pat in list.split_ascii_whitespace() {
        let pat = pat.trim_start_matches('!');
        for seen in &opts.seen {
            if crate::filter::wildmatch::wildmatch(pat.as_bytes(), seen.as_bytes())
                || (pat == "delete" && seen.starts_with("delete"))
            {
                return Some(match options::short_of(seen) {
                    Some(c) => format!("--{seen} (-{c})"),
                    None => format!("--{seen}"),
                });
            }
        }
    }
    None
}

/// Enter the module: chroot and privilege changes when root, then chdir.
fn enter_module(m: &ModuleConfig) -> Result<(), String> {
    let path = m
        .path
        .as_deref()
        .ok_or_else(|| "no path setting.".to_string())?;
    let is_root = nix::unistd::geteuid().is_root();
    let use_chroot = m.use_chroot_with(|| is_root);
    let uid = if is_root {
        m.effective_uid(true).map(str::to_string)
    } else {
        None
    };
    let gid = if is_root {
        m.effective_gids(true, super::config::default_nobody_group())
            .first()
            .map(|s| s.to_string())
    } else {
        None
    };
    // Look up ids before chroot (upstream does name lookups first too).
    let uid_num = match &uid {
        Some(u) => Some(lookup_uid(u).ok_or_else(|| format!("invalid uid {u}"))?),
        None => None,
    };
    let gid_num = match &gid {
        Some(g) => Some(lookup_gid(g).ok_or_else(|| format!("invalid gid {g}"))?),
        None => None,
    };
    if use_chroot {
        nix::unistd::chroot(path).map_err(|_| "chroot failed".to_string())?;
        nix::unistd::chdir("/").map_err(|_| "chdir failed".to_string())?;
    } else {
        nix::unistd::chdir(path).map_err(|_| "chdir failed".to_string())?;
    }
    if let Some(g) = gid_num {
        nix::unistd::setgroups(&[nix::unistd::Gid::from_raw(g)])
            .map_err(|_| "setgid failed".to_string())?;
        nix::unistd::setgid(nix::unistd::Gid::from_raw(g))
            .map_err(|_| "setgid failed".to_string())?;
    }
    if let Some(u) = uid_num {
        nix::unistd::setuid(nix::unistd::Uid::from_raw(u))
            .map_err(|_| "setuid failed".to_string())?;
    }
    Ok(())
}

/// A uid by number or name.
fn lookup_uid(u: &str) -> Option<u32> {
    u.parse().ok().or_else(|| {
        nix::unistd::User::from_name(u)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    })
}

/// A gid by number or name.
fn lookup_gid(g: &str) -> Option<u32> {
    g.parse().ok().or_else(|| {
        nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    })
}

/// Report an error after the text phase as stock does: finish protocol
/// setup, start multiplexing, send the error, then wait for the client to go.
fn refuse<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    proto: u8,
    opts: &Options,
    msg: &str,
    raw_args: &[String],
) {
    let seed = std::process::id() as i32;
    let Ok(_n) = server_setup(r, w, proto, opts, seed, false) else {
        return;
    };
    // A receiving server that was sent --files-from writes one byte first (upstream does).
    if !opts.sender && raw_args.iter().any(|a| a.starts_with("--files-from")) {
        let _ = w.write_all(&[0]);
    }
    let mut out = MuxWriter::new(&mut *w);
    if out.start_mux().is_err() {
        return;
    }
    // Upstream sends the message, sleeps 400 ms, its exit line and MSG_ERROR_EXIT,
    // then exits without draining (the unread input turns the close into a
    // reset, which the client may see first). We do the same.
    // One message per line, as upstream's rwrite per line (a newline inside
    // a message would be shown escaped).
    for l in msg.split_inclusive('\n') {
        let _ = send_text(&mut out, proto, MsgCode::Error, l);
    }
    let _ = out.flush();
    std::thread::sleep(Duration::from_millis(400));
    // Upstream's exit path flushes its exit line and MSG_ERROR_EXIT only when
    // it is not the sender; a refused pull loses them to the reset.
    if !opts.sender {
        let version = env!("CARGO_PKG_VERSION");
        let line = format!(
            "rsync error: {} (code {RERR_UNSUPPORTED}) at {}({}) [server=rrsync-{version}]",
            crate::exit::text(RERR_UNSUPPORTED),
            file!().rsplit('/').next().unwrap_or("session.rs"),
            line!()
        );
        let _ = send_text(&mut out, proto, MsgCode::Error, &line);
        if proto >= 31 {
            let _ = out.send_msg(MsgCode::ErrorExit, &RERR_UNSUPPORTED.to_le_bytes());
        }
        let _ = out.flush();
    }
    let _ = r;
}

/// End a multiplexed session with an error the way upstream's exit_cleanup
/// does: the message, the `rsync error: ... (code N)` line, MSG_ERROR_EXIT
/// (protocol 31+), then wait (bounded) for the client to hang up so our last
/// bytes are not lost to a reset.
pub fn end_with_error<W: Write>(
    out: &mut MuxWriter<W>,
    proto: u8,
    role: &str,
    code: i32,
    msg: Option<&str>,
    at: (&str, u32),
    rest: PeerInput<'_>,
) {
    if let Some(m) = msg {
        let _ = send_text(out, proto, MsgCode::Error, m);
    }
    let file = at.0.rsplit('/').next().unwrap_or(at.0);
    let version = env!("CARGO_PKG_VERSION");
    let (kind, code_msg) = if code == RERR_VANISHED {
        ("warning", MsgCode::Warning)
    } else {
        ("error", MsgCode::Error)
    };
    let line = format!(
        "rsync {kind}: {} (code {code}) at {file}({}) [{role}=rrsync-{version}]",
        crate::exit::text(code),
        at.1
    );
    let _ = send_text(out, proto, code_msg, &line);
    if proto >= 31 && !matches!(code, RERR_SOCKETIO | RERR_STREAMIO | 19 | RERR_TIMEOUT) {
        let _ = out.send_msg(MsgCode::ErrorExit, &code.to_le_bytes());
    }
    let _ = out.flush();
    rest.wait_for_exit(Duration::from_secs(30));
}

/// What is left of the client's input when a session fails: read from it
/// until the client exits (EOF or its MSG_ERROR_EXIT), bounded in time.
pub enum PeerInput<'a> {
    /// Read through the demultiplexer.
    Demux(&'a mut Demux<BoxedRead>),
    /// Read by the input pump.
    Pump(InputReader),
}

impl PeerInput<'_> {
    fn wait_for_exit(self, limit: Duration) {
        set_recv_timeout(1);
        let start = Instant::now();
        let mut buf = [0u8; 16 * 1024];
        match self {
            PeerInput::Pump(p) => p.wait_end(limit),
            PeerInput::Demux(d) => drain(d, &mut buf, start, limit),
        }
    }
}

fn drain<R: Read + ?Sized>(r: &mut R, buf: &mut [u8], start: Instant, limit: Duration) {
    while start.elapsed() < limit {
        match r.read(buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
}

/// A receive timeout on the client socket (so draining can watch the clock).
fn set_recv_timeout(secs: i64) {
    use std::os::fd::AsFd;
    let tv = nix::sys::time::TimeVal::new(secs, 0);
    let stdin = std::io::stdin();
    let _ = nix::sys::socket::setsockopt(
        &stdin.as_fd(),
        nix::sys::socket::sockopt::ReceiveTimeout,
        &tv,
    );
}

/// Counts bytes passing through (for the stats' total_read/total_written).
pub struct Counting<T> {
    inner: T,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<T> Counting<T> {
    /// Wrap `inner`, counting into `count`.
    pub fn new(inner: T, count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        Counting { inner, count }
    }
}

impl<T: Read> Read for Counting<T> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// A socket reader under a receive timeout that only gives up when the
/// other direction was idle too (upstream's timeout means "no I/O either
/// way"): a timed-out read is retried while `out_activity` keeps moving.
pub struct IdleTimeout<R> {
    inner: R,
    out_activity: std::sync::Arc<std::sync::atomic::AtomicU64>,
    seen: u64,
}

impl<R: Read> Read for IdleTimeout<R> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.inner.read(b) {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = self.out_activity.load(std::sync::atomic::Ordering::Relaxed);
                    if now == self.seen {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "io timeout",
                        ));
                    }
                    self.seen = now;
                }
                other => return other,
            }
        }
    }
}

impl<T: Write> Write for Counting<T> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
    fn write_vectored(&mut self, b: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = self.inner.write_vectored(b)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn run_module<R: Read + Send + 'static, W: Write + Send>(
    _cfg: &DaemonConfig,
    proto: u8,
    opts: Options,
    module: ModuleConfig,
    paths: Vec<Vec<u8>>,
    r: R,
    w: W,
) -> i32 {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let rc = Arc::new(AtomicU64::new(0));
    let wc = Arc::new(AtomicU64::new(0));
    let mut r = Counting::new(
        IdleTimeout {
            inner: r,
            out_activity: wc.clone(),
            seen: 0,
        },
        rc.clone(),
    );
    let mut w = Counting::new(w, wc.clone());
    let seed = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i32)
        ^ ((std::process::id() as i32) << 6);
    // Incremental recursion is offered for the plain recursive single-source pull.
    let allow_inc = if opts.sender {
        opts.recursive
            && !opts.relative
            && opts.files_from.is_none()
            && paths.len() <= 1
            && !opts.misc.iter().any(|m| m == "use-qsort")
    } else {
        // As a receiver (upstream set_allow_inc_recurse), minus what we do not
        // yet do incrementally (hard links, -R).
        opts.recursive
            && !matches!(
                opts.delete_when,
                Some("delete-before") | Some("delete-after")
            )
            && !opts.delay_updates
            && !opts.prune_empty_dirs
            && opts.hard_links == 0
            && !opts.relative
            && !opts.misc.iter().any(|m| m == "use-qsort")
    };
    let n = match server_setup(&mut r, &mut w, proto, &opts, seed, allow_inc) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("setup failed: {e}");
            return e.exit_code();
        }
    };
    let (rbase, wbase) = (rc.load(Ordering::Relaxed), wc.load(Ordering::Relaxed));
    let mut out = MuxWriter::new(w);
    if out.start_mux().is_err() {
        return RERR_SOCKETIO;
    }
    if proto >= 31 && module.timeout > 0 {
        let _ = out.send_msg(MsgCode::IoTimeout, &module.timeout.to_le_bytes());
    }
    let mut demux: Demux<BoxedRead> = Demux::new(Box::new(r));
    demux.set_mux(proto >= 30);
    let mut input: Option<InputReader> = None;
    let result = if opts.sender {
        serve_pull(
            n,
            &opts,
            &module,
            &paths,
            &mut demux,
            &mut input,
            &mut out,
            (rc, rbase),
            (wc, wbase),
        )
    } else if module.read_only {
        Err(RoleError::Refused("ERROR: module is read only".into()))
    } else {
        serve_push(n, &opts, &module, &paths, &mut demux, &mut input, &mut out)
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            let role = if opts.sender { "sender" } else { "Receiver" };
            match &e {
                RoleError::PeerExit(_)
                | RoleError::Proto(crate::protocol::ProtoError::PeerExit(_)) => {}
                RoleError::Proto(p) if p.is_eof() => {}
                _ => {
                    let msg = match &e {
                        RoleError::Proto(_) => format!("rsync: {e}"),
                        _ => e.to_string(),
                    };
                    let rest = match input.take() {
                        Some(p) => PeerInput::Pump(p),
                        None => PeerInput::Demux(&mut demux),
                    };
                    end_with_error(
                        &mut out,
                        proto,
                        role,
                        code,
                        Some(&msg),
                        (file!(), line!()),
                        rest,
                    );
                }
            }
            tracing::warn!("session ended: {e}");
            code
        }
    }
}

/// The client socket's read side, boxed so it can be handed to the input pump.
type BoxedRead = Box<dyn Read + Send>;

type Counter = (std::sync::Arc<std::sync::atomic::AtomicU64>, u64);

#[allow(clippy::too_many_arguments)]
fn serve_pull<W: Write>(
    n: Negotiated,
    opts: &Options,
    module: &ModuleConfig,
    paths: &[Vec<u8>],
    demux: &mut Demux<BoxedRead>,
    input_slot: &mut Option<InputReader>,
    out: &mut MuxWriter<W>,
    rcount: Counter,
    wcount: Counter,
) -> Result<i32, RoleError> {
    use std::sync::atomic::Ordering;
    if module.write_only {
        return Err(RoleError::Refused("ERROR: module is write only".into()));
    }
    let proto = n.proto;
    // Filter rules from the client.
    let confine = std::fs::canonicalize(".").ok();
    let popts = crate::filter::ParseOptions {
        protocol: proto as u32,
        delete_excluded: opts.delete_excluded,
        ..Default::default()
    };
    let mut client_rules = crate::filter::FilterList::new(popts.clone());
    if let Some(c) = &confine {
        client_rules.set_root_abs(c.as_os_str().as_encoded_bytes());
    }
    let x = crate::filter::XferOptions {
        protocol: proto as u32,
        am_sender: true,
        delete_mode: opts.delete,
        delete_excluded: opts.delete_excluded,
        prune_empty_dirs: opts.prune_empty_dirs,
        cvs_exclude: opts.cvs_exclude,
    };
    {
        let c = confine.clone();
        let mut read =
            |rel: &[u8]| crate::flist::filters::read_confined(Path::new("."), c.as_deref(), rel);
        crate::filter::recv_filter_list(demux, &mut client_rules, &x, &mut read).map_err(|e| {
            match e {
                crate::filter::FilterError::Io(io) => RoleError::from(io),
                other => RoleError::Protocol(other.to_string()),
            }
        })?;
    }
    let daemon_rules = module_filters(module, &popts)?;
    // --files-from=- : names follow on the input (raw below protocol 31).
    let mut args: Vec<Vec<u8>> = paths.to_vec();
    let mut root = PathBuf::from(".");
    if let Some(ff) = opts.files_from.as_deref() {
        if ff != "-" {
            return Err(RoleError::Unsupported(
                "--files-from from a server-side file is not supported yet".into(),
            ));
        }
        if proto < 31 {
            demux.set_mux(false);
        }
        let names = read_files_from(demux)?;
        if proto == 30 {
            demux.set_mux(true);
        }
        // Names are relative to the first path argument (upstream: change_dir(argv[0])).
        if let Some(base) = args.first() {
            if !base.is_empty() {
                use std::os::unix::ffi::OsStrExt;
                root = root.join(std::ffi::OsStr::from_bytes(base));
            }
        }
        args = names
            .iter()
            .map(|nm| super::paths::sanitize(nm))
            .filter(|n| !n.is_empty())
            .collect();
    }
    if args.is_empty()
        && opts.files_from.is_none()
        && (opts.recursive || opts.dirs || opts.list_only)
    {
        args.push(Vec::new());
    }
    let bo = BuildOpts {
        proto,
        recursive: opts.recursive,
        xfer_dirs: opts.recursive || opts.dirs || opts.list_only || opts.files_from.is_some(),
        relative: opts.relative || opts.files_from.is_some(),
        implied_dirs: !opts.no_implied_dirs,
        preserve_links: opts.links,
        preserve_hard_links: opts.hard_links > 0,
        preserve_devices: opts.devices,
        preserve_specials: opts.specials,
        copy_links: opts.copy_links,
        copy_dirlinks: opts.copy_dirlinks,
        copy_unsafe_links: opts.copy_unsafe_links,
        safe_links: opts.safe_links,
        one_file_system: opts.one_file_system,
        preserve_uid: opts.owner,
        preserve_gid: opts.group,
        confine_to: confine.clone(),
        module: Some(module.name.clone()),
    };
    let start = Instant::now();
    let client = if client_rules.is_empty() {
        None
    } else {
        Some(client_rules)
    };
    let mut excluder =
        crate::flist::filters::SenderFilters::new(client, daemon_rules, confine.clone());
    let numeric_ids = opts.numeric_ids
        || module.numeric_ids_with(module.use_chroot_with(|| nix::unistd::geteuid().is_root()));
    let chmod = match module.outgoing_chmod.as_deref() {
        Some(spec) => Some(
            crate::flist::chmod::Chmod::parse(spec, current_umask())
                .map_err(|e| RoleError::Unsupported(format!("outgoing chmod: {e}")))?,
        ),
        None => None,
    };
    let file_checksum = if opts.checksum {
        Some(n.file_checksum)
    } else {
        None
    };
    // What every list gets before it is sent: `-c` sums and `outgoing chmod`.
    let post = move |fl: &mut FileList| {
        for f in fl.files.iter_mut() {
            let m = f.entry.mode;
            if let (Some(kind), true) = (file_checksum, crate::protocol::flist::mode::is_reg(m)) {
                if let Ok(mut file) = crate::fs::open_for_send(&f.path) {
                    if let Ok(d) = crate::checksum::strong::file_checksum(kind, &mut file) {
                        f.entry.checksum = Some(d.as_bytes().to_vec());
                    }
                }
            }
            if let (Some(c), false) = (&chmod, crate::protocol::flist::mode::is_lnk(m) || m == 0) {
                f.entry.mode = c.apply(m);
            }
        }
    };
    let inc = n.compat & crate::protocol::handshake::cf::INC_RECURSE != 0;
    let state = ListState::new(inc, n.id0_names(), numeric_ids);
    let mut lister = None;
    let mut fl = if inc {
        let arg = args.first().cloned().unwrap_or_default();
        let (l, first) = IncrementalLister::start(&root, &arg, &bo, &mut excluder, state);
        lister = Some(l);
        first
    } else {
        build_file_list_with(&root, &args, &bo, &mut excluder, state)
    };
    post(&mut fl);
    let buildtime = start.elapsed().as_millis() as i64;
    for (kind, e) in &fl.errors {
        send_text(out, proto, kind.msg_code(), e)?;
    }
    // An error the client counts against the transfer counts against our
    // exit status too (upstream's got_xfer_error), e.g. a missing source.
    let list_errors = if fl
        .errors
        .iter()
        .any(|(k, _)| *k == crate::flist::build::MsgKind::ErrorXfer)
    {
        crate::flist::build::IOERR_GENERAL
    } else {
        0
    };
    let t1 = Instant::now();
    let enc = sender::send_file_list(out, &n, opts, &fl, inc)?;
    let xfertime = t1.elapsed().as_millis() as i64;
    if fl.files.is_empty() {
        out.flush()?;
        return Ok(io_error_code(fl.io_error | list_errors));
    }
    let pumped = std::mem::replace(demux, Demux::new(Box::new(std::io::empty())));
    let input = input_slot.insert(crate::role::input::spawn(pumped));
    let mut stats = SendStats {
        total_size: sender::list_size(&fl),
        flist_buildtime: buildtime,
        flist_xfertime: xfertime,
        io_error: fl.io_error,
        ..Default::default()
    };
    let modname = module.name.clone();
    let full = move |name: &[u8], path: &Path| -> String {
        use std::os::unix::ffi::OsStrExt;
        let rel = path.as_os_str().as_bytes();
        let rel = rel.strip_prefix(b"./").unwrap_or(rel);
        let dir = rel.strip_suffix(name).unwrap_or(b"");
        let dir = dir.strip_suffix(b"/").unwrap_or(dir);
        let mut p = String::new();
        if !dir.is_empty() && dir != b"." {
            p.push('/');
            p.push_str(&String::from_utf8_lossy(dir));
            p.push('/');
        }
        p.push_str(&String::from_utf8_lossy(name));
        format!("\"{p}\" (in {modname})")
    };
    let ctx = SenderCtx {
        n,
        opts,
        inc_recurse: inc,
        first_encoder: std::cell::Cell::new(Some(enc)),
        am_server: true,
        full_fname: &full,
        counters: Some((rcount.0.clone(), rcount.1, wcount.0.clone(), wcount.1)),
    };
    let mut feed = lister.map(|l| ListFeed {
        lister: l,
        post: &post,
    });
    sender::run(
        &ctx,
        fl,
        feed.as_mut().map(|f| f as &mut dyn MoreLists),
        input,
        out,
        &mut stats,
    )?;
    let _ = Ordering::Relaxed;
    Ok(io_error_code(stats.io_error | list_errors))
}

/// The sender's exit code for its accumulated io_error flags.
fn io_error_code(io_error: i32) -> i32 {
    if io_error & crate::flist::build::IOERR_GENERAL != 0 {
        RERR_PARTIAL
    } else if io_error != 0 {
        RERR_VANISHED
    } else {
        0
    }
}

/// Options an upload cannot honour yet: refused up front, like a module's
/// `refuse options`, so the client fails cleanly instead of getting a wrong tree.
fn unsupported_upload_option(o: &Options) -> Option<&'static str> {
    if o.backup && o.inplace {
        Some("--backup with --inplace")
    } else if o.basis_dirs.len() > 20 {
        Some("more than 20 --link-dest/--copy-dest/--compare-dest dirs")
    } else if o.fuzzy > 0 {
        Some("--fuzzy (-y)")
    } else if o.files_from.is_some() {
        Some("--files-from")
    } else {
        None
    }
}

/// do_server_recv: receive the list, then run generator and receiver side by side.
fn serve_push<W: Write + Send>(
    n: Negotiated,
    opts: &Options,
    module: &ModuleConfig,
    paths: &[Vec<u8>],
    demux: &mut Demux<BoxedRead>,
    input_slot: &mut Option<InputReader>,
    out: &mut MuxWriter<W>,
) -> Result<i32, RoleError> {
    use crate::role::generator::{Generator, RecvConfig, RecvEvent};
    let proto = n.proto;
    if let Some(what) = unsupported_upload_option(opts) {
        return Err(RoleError::Unsupported(format!(
            "rsync: uploads with {what} are not supported by this rrsync yet"
        )));
    }
    // Filter rules come first when the receiver needs them (deletions).
    let popts = crate::filter::ParseOptions {
        protocol: proto as u32,
        delete_excluded: opts.delete_excluded,
        ..Default::default()
    };
    let mut client_rules = crate::filter::FilterList::new(popts.clone());
    let x = crate::filter::XferOptions {
        protocol: proto as u32,
        am_sender: false,
        delete_mode: opts.delete,
        delete_excluded: opts.delete_excluded,
        prune_empty_dirs: opts.prune_empty_dirs,
        cvs_exclude: opts.cvs_exclude,
    };
    let mut no_files = |_: &[u8]| None;
    crate::filter::recv_filter_list(demux, &mut client_rules, &x, &mut no_files).map_err(|e| {
        match e {
            crate::filter::FilterError::Io(io) => RoleError::from(io),
            other => RoleError::Protocol(other.to_string()),
        }
    })?;
    let daemon_rules = module_filters(module, &popts)?;
    let am_root = nix::unistd::geteuid().is_root();
    let numeric_module = module.numeric_ids_with(module.use_chroot_with(|| am_root));
    let fo = sender::flist_opts(&n, opts);
    let inc = n.compat & crate::protocol::handshake::cf::INC_RECURSE != 0;
    let mut lists = crate::flist::recv::ListReceiver::new(
        fo,
        inc,
        opts.numeric_ids,
        n.id0_names(),
        am_root && !opts.numeric_ids && !numeric_module,
    );
    let mut list = lists.first(demux).map_err(|e| match e {
        crate::flist::recv::RecvListError::Proto(p) => RoleError::Proto(p),
        other => RoleError::Unsupported(other.to_string()),
    })?;
    if opts.prune_empty_dirs {
        crate::flist::recv::prune_empty_dirs(&mut list);
    }
    let list_io_error = list.io_error;
    let registry = std::sync::Mutex::new(crate::role::generator::Registry {
        recv: lists,
        lists: vec![Arc::new(list)],
        eof: !inc,
    });
    // The destination: the first path argument, relative to the module.
    let dest_rel = paths.first().cloned().unwrap_or_default();
    let dest_rel = super::paths::sanitize(&dest_rel);
    let dest_path = if dest_rel.is_empty() {
        PathBuf::from(".")
    } else {
        PathBuf::from(std::ffi::OsStr::from_bytes(&dest_rel))
    };
    let dest_created = !dest_path.exists();
    if dest_created && !opts.dry_run {
        if let Err(e) = std::fs::create_dir(&dest_path) {
            return Err(RoleError::FileSelect(format!(
                "rsync: [Receiver] mkdir {:?} failed: {e}",
                String::from_utf8_lossy(&dest_rel)
            )));
        }
    }
    if dest_created {
        let shown =
            String::from_utf8_lossy(dest_rel.strip_suffix(b"/").unwrap_or(&dest_rel)).into_owned();
        send_text(
            out,
            proto,
            MsgCode::Info,
            &format!("created directory {shown}"),
        )?;
    }
    let dest = crate::fs::dest::DestRoot::open(&dest_path).map_err(|e| {
        RoleError::FileSelect(format!(
            "rsync: [Receiver] change_dir {:?} failed: {e}",
            String::from_utf8_lossy(&dest_rel)
        ))
    })?;
    let client_rules = Arc::new(client_rules);
    let daemon_rules = daemon_rules.map(Arc::new);
    let prefix = dest_rel.clone();
    let excluded = {
        let d = daemon_rules.clone();
        let c = client_rules.clone();
        let delete_excluded = opts.delete_excluded;
        move |rel: &[u8], is_dir: bool| -> bool {
            if let Some(d) = &d {
                let mut mp = prefix.clone();
                if !mp.is_empty() && !mp.ends_with(b"/") {
                    mp.push(b'/');
                }
                mp.extend_from_slice(rel);
                if d.is_excluded(&mp, is_dir, crate::filter::Side::Receiver) {
                    return true;
                }
            }
            !delete_excluded && c.is_excluded(rel, is_dir, crate::filter::Side::Receiver)
        }
    };
    let chmod = match module.incoming_chmod.as_deref() {
        Some(spec) => Some(
            crate::flist::chmod::Chmod::parse(spec, current_umask())
                .map_err(|e| RoleError::Unsupported(format!("incoming chmod: {e}")))?,
        ),
        None => None,
    };
    // Basis dirs are relative to the destination and must stay inside the module.
    let mut basis_dirs = Vec::new();
    for (kind, arg) in &opts.basis_dirs {
        let Some(kind) = crate::role::generator::BasisKind::from_option(kind) else {
            continue;
        };
        let mut p = dest_rel.clone();
        if !p.is_empty() && !p.ends_with(b"/") {
            p.push(b'/');
        }
        p.extend_from_slice(arg.as_bytes());
        if arg.starts_with('/') {
            p = arg.as_bytes().to_vec();
        }
        let rel = super::paths::sanitize(&p);
        let path = if rel.is_empty() {
            PathBuf::from(".")
        } else {
            PathBuf::from(std::ffi::OsStr::from_bytes(&rel))
        };
        if let Ok(root) = crate::fs::dest::DestRoot::open(&path) {
            basis_dirs.push((kind, root));
        }
    }
    let mut ropts = opts.clone();
    if ropts.backup && ropts.backup_dir.is_none() {
        ropts.omit_dir_times = true; // upstream: --backup without --backup-dir implies -O
    }
    let cfg = RecvConfig {
        n,
        opts: ropts,
        dest,
        am_root,
        munge_symlinks: module.munge_symlinks_with(module.use_chroot_with(|| am_root), true),
        chmod,
        daemon_excluded: Box::new(excluded),
        umask: current_umask(),
        sanitize_links: !module.use_chroot_with(|| am_root),
        basis_dirs,
        dest_created,
        temp_dir: opts
            .temp_dir
            .as_ref()
            .map(|t| super::paths::sanitize(t.as_bytes()))
            .filter(|t| !t.is_empty()),
        dest_depth: dest_rel
            .split(|&c| c == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .count(),
    };
    let pumped = std::mem::replace(demux, Demux::new(Box::new(std::io::empty())));
    let input = input_slot.insert(crate::role::input::inline(pumped));
    // Generator and receiver share the writer (the receiver only sends messages).
    let shared = crate::role::generator::SharedOut(std::sync::Mutex::new(out));
    let (tx, rx) = std::sync::mpsc::channel::<RecvEvent>();
    let (gen_res, recv_res) = std::thread::scope(|s| {
        let recv = s.spawn(|| {
            let r = crate::role::receiver::run(&cfg, &registry, inc, input, &tx, &shared);
            if r.is_err() {
                let _ = tx.send(RecvEvent::Failed);
            }
            r
        });
        let mut g = Generator::new(&cfg, &registry, inc, &shared);
        let gr = g.run(&rx).map(|()| g.io_error);
        let rr = recv
            .join()
            .unwrap_or_else(|_| Err(RoleError::Protocol("receiver thread panicked".into())));
        (gr, rr)
    });
    let rstats = recv_res?;
    let gen_err = gen_res?;
    let io = (rstats.io_error | gen_err | list_io_error) & !4;
    Ok(if io & crate::flist::build::IOERR_GENERAL != 0 {
        RERR_PARTIAL
    } else if io != 0 {
        RERR_VANISHED
    } else {
        0
    })
}

/// Sub-lists for the sender, post-processed like the first list.
struct ListFeed<'a, 'b> {
    lister: IncrementalLister<'a>,
    post: &'b dyn Fn(&mut FileList),
}

impl MoreLists for ListFeed<'_, '_> {
    fn next_list(&mut self) -> Option<(i32, FileList)> {
        let (d, mut l) = self.lister.next_list()?;
        (self.post)(&mut l);
        Some((d, l))
    }
    fn done(&self) -> bool {
        self.lister.is_done()
    }
}

/// The process umask (read without changing it for longer than the call).
fn current_umask() -> u32 {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(old);
    old.bits()
}

/// Apply the module's `timeout` to both directions of the client socket.
fn set_io_timeout(secs: i32) {
    use std::os::fd::AsFd;
    if secs <= 0 {
        return;
    }
    let tv = nix::sys::time::TimeVal::new(secs as i64, 0);
    let stdin = std::io::stdin();
    let _ = nix::sys::socket::setsockopt(
        &stdin.as_fd(),
        nix::sys::socket::sockopt::ReceiveTimeout,
        &tv,
    );
    let _ =
        nix::sys::socket::setsockopt(&stdin.as_fd(), nix::sys::socket::sockopt::SendTimeout, &tv);
}

/// Read NUL-separated names until an empty one (upstream: forward_filesfrom_data receiver side).
fn read_files_from<R: Read>(r: &mut R) -> Result<Vec<Vec<u8>>, RoleError> {
    let mut names = Vec::new();
    let mut cur = Vec::new();
    let mut b = [0u8; 1];
    loop {
        r.read_exact(&mut b)?;
        if b[0] == 0 {
            if cur.is_empty() {
                return Ok(names);
            }
            names.push(std::mem::take(&mut cur));
            if names.len() > 10_000_000 {
                return Err(RoleError::Protocol("files-from list too long".into()));
            }
        } else {
            if cur.len() >= crate::protocol::MAX_PATH_LEN {
                return Err(RoleError::Protocol("files-from name too long".into()));
            }
            cur.push(b[0]);
        }
    }
}

/// Exists for the listener: whether a path is a module root we may serve.
pub fn module_root_ok(p: &Path) -> bool {
    p.is_dir()
}

/// The module's `filter`, `include`, `exclude` (and `*from`) lines as one list.
fn module_filters(
    m: &ModuleConfig,
    popts: &crate::filter::ParseOptions,
) -> Result<Option<crate::filter::FilterList>, RoleError> {
    if m.filter.is_none()
        && m.include.is_none()
        && m.exclude.is_none()
        && m.include_from.is_none()
        && m.exclude_from.is_none()
    {
        return Ok(None);
    }
    let cfg = crate::filter::DaemonFilterConfig {
        filter: m.filter.as_deref().map(str::as_bytes),
        include_from: m.include_from.as_deref().map(str::as_bytes),
        include: m.include.as_deref().map(str::as_bytes),
        exclude_from: m.exclude_from.as_deref().map(str::as_bytes),
        exclude: m.exclude.as_deref().map(str::as_bytes),
    };
    let mut read = |p: &[u8]| std::fs::read(std::ffi::OsStr::from_bytes(p)).ok();
    crate::filter::daemon_filter_list(&cfg, popts, &mut read)
        .map(Some)
        .map_err(|e| RoleError::Unsupported(format!("daemon filter rules: {e}")))
}
