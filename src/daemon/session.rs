//! One daemon connection (upstream: clientserver.c start_daemon,
//! rsync_module; main.c start_server): the text phase, module checks,
//! argument list, protocol setup and the role that serves the request.
//! Runs in its own process with the socket as stdin/stdout.

use super::config::{DaemonConfig, ModuleConfig};
use super::paths::module_args;
use crate::cli::options::{self, Options};
use crate::exit::*;
use crate::flist::chmod::Chmod;
use crate::protocol::greeting::{
    greeting_line, listing_line, parse_greeting, read_arg_list, read_line,
};
use crate::protocol::mux::{MsgCode, MuxWriter};
use crate::protocol::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::role::sender::send_text;
use crate::role::server::{self, current_umask, ServerEnv};
use crate::role::setup::server_setup;
use crate::role::RoleError;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Most arguments a client may send in one list.
const MAX_ARGS: usize = 4096;

/// How a session ended, for the exit status and the log.
#[derive(Debug)]
pub struct Outcome {
    /// rsync exit code.
    pub code: i32,
    /// How the socket is to be closed.
    pub close: Close,
}

/// How a session's socket is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// A FIN after our last bytes (the client reads everything we sent).
    HalfClose,
    /// Just close, as upstream does after refusing the arguments or on a
    /// broken socket (with unread input the client sees a reset).
    Plain,
    /// Reset at once (a refused proxy header: upstream closes before the
    /// greeting with the header's input unread).
    Reset,
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
    let outcome = match proxied_peer(cfg, &mut r, peer) {
        Err(refused) => {
            drop(r);
            drop(w);
            refused
        }
        Ok(peer) => match serve_inner(cfg, &mut r, &mut w, &peer) {
            Ok(Some(a)) => {
                let code = run_module(cfg, a, r, w);
                Outcome {
                    code,
                    close: Close::HalfClose,
                }
            }
            Ok(None) => Outcome {
                code: 0,
                close: Close::HalfClose,
            },
            Err(code) => {
                drop(r);
                drop(w);
                Outcome {
                    code,
                    // A refused-options reset or a broken/refused socket ends
                    // without the graceful half-close.
                    close: if code == RERR_UNSUPPORTED || code == RERR_SOCKETIO {
                        Close::Plain
                    } else {
                        Close::HalfClose
                    },
                }
            }
        },
    };
    super::xfer_exec::notify_post(outcome.code);
    outcome
}

/// The client's address: the peer's, or with `proxy protocol` the one a
/// trusted balancer's header names (upstream start_daemon: only a trusted
/// balancer may speak first, within the handshake deadline). A refusal is
/// the session's outcome.
fn proxied_peer<R: Read>(cfg: &DaemonConfig, r: &mut R, peer: &str) -> Result<String, Outcome> {
    if !cfg.global.proxy_protocol {
        return Ok(peer.to_string());
    }
    handshake_deadline(cfg.global.defaults.timeout);
    let trusted = cfg
        .global
        .proxy_protocol_hosts
        .as_deref()
        .filter(|l| !l.trim().is_empty());
    let allowed = match (trusted, peer.parse::<std::net::IpAddr>()) {
        (Some(list), Ok(a)) => {
            super::access::allow_access(Some(list), None, a, Some("UNDETERMINED"), false)
        }
        _ => false,
    };
    if !allowed {
        super::log::line(&format!(
            "proxy protocol rejected from untrusted peer UNDETERMINED ({peer})"
        ));
        return Err(Outcome {
            code: RERR_STARTCLIENT,
            close: Close::HalfClose,
        });
    }
    match super::proxy::read_header(r) {
        Ok(super::proxy::Proxied::Client(ip)) => Ok(ip.to_string()),
        Ok(super::proxy::Proxied::Unchanged) => Ok(peer.to_string()),
        Err(e) => {
            // Closed at once, unread input and all (upstream returns before
            // the greeting: the client sees a reset).
            tracing::info!(peer, "{e}");
            Err(Outcome {
                code: RERR_SOCKETIO,
                close: Close::Reset,
            })
        }
    }
}

/// The daemon's `--bwlimit` in KiB/s, set once at startup.
pub static DAEMON_BWLIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// A request accepted for a module, ready to be served.
struct Accepted {
    proto: u8,
    opts: Options,
    module: ModuleConfig,
    paths: Vec<Vec<u8>>,
    who: Who,
    user: String,
    /// A `--files-from=FILE` list read inside the module (the client's
    /// `--files-from=:FILE`).
    files_from: Option<Arc<Vec<u8>>>,
    /// The module's filter rules, read before entering it (or why not).
    module_rules: Result<Option<crate::filter::FilterList>, String>,
}

fn serve_inner<R: Read, W: Write>(
    cfg: &DaemonConfig,
    r: &mut R,
    w: &mut W,
    peer: &str,
) -> Result<Option<Accepted>, i32> {
    let io = |_e| RERR_SOCKETIO;
    let who = Who::of(cfg, peer);
    if let Err(msg) = enter_daemon_jail(cfg) {
        super::log::line(&msg);
        return Err(RERR_STARTCLIENT);
    }
    super::log::line(&format!("connect from {} ({})", who.host, who.addr));
    // The handshake has a deadline (upstream daemon_handshake_timeout): a
    // silent or trickling client cannot hold a session (or a max
    // connections slot) forever.
    handshake_deadline(cfg.global.defaults.timeout);
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
    // The client's --early-input (for `early exec`'s stdin).
    let mut early_input = Vec::new();
    if let Some(n) = module_line.strip_prefix("#early_input=") {
        let n: usize = n.trim().parse().map_err(|_| RERR_STARTCLIENT)?;
        if n > 5 * 1024 {
            let _ = line(w, "@ERROR: early input too large\n");
            return Err(RERR_STARTCLIENT);
        }
        early_input = vec![0u8; n];
        r.read_exact(&mut early_input)
            .map_err(|_| RERR_STARTCLIENT)?;
        module_line = match read_line(r) {
            Ok(Some(l)) => l,
            _ => return Err(RERR_STARTCLIENT),
        };
    }
    if module_line.is_empty() || module_line == "#list" {
        super::log::line(&format!(
            "module-list request from {} ({})",
            who.host, who.addr
        ));
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
        super::log::line(&format!(
            "unknown module '{module_line}' tried from {} ({})",
            who.host, who.addr
        ));
        let _ = line(w, &format!("@ERROR: Unknown module '{module_line}'\n"));
        tracing::info!(peer, "unknown module {module_line:?}");
        return Err(RERR_STARTCLIENT);
    };
    // String parameters with %VAR% expanded; again once the user is known.
    let raw = module;
    let expand = |user: &str| {
        raw.expanded(|name| match name {
            "RSYNC_MODULE_NAME" => Some(raw.name.clone()),
            "RSYNC_MODULE_PATH" => raw.path.clone(),
            "RSYNC_HOST_ADDR" => Some(who.addr.clone()),
            "RSYNC_HOST_NAME" => Some(who.host.clone()),
            "RSYNC_USER_NAME" => Some(user.to_string()),
            "RSYNC_PID" => Some(std::process::id().to_string()),
            other => std::env::var(other).ok(),
        })
    };
    let refuse_hook = |w: &mut W, e: super::config::expand::UnsafeHookValue| {
        super::log::line(&format!("rsync: {e}"));
        let _ = line(w, &format!("@ERROR: {e}\n"));
        RERR_UNSUPPORTED
    };
    let mut module = expand("").map_err(|e| refuse_hook(w, e))?;
    // The peer's name for this module: looked up (at most) once.
    let host = module_host(&who.host, &module, peer);
    // hosts allow / hosts deny (upstream rsync_module: before auth).
    if let Ok(addr) = peer.parse::<std::net::IpAddr>() {
        if !super::access::allow_access(
            module.hosts_allow.as_deref(),
            module.hosts_deny.as_deref(),
            addr,
            Some(&host),
            module.forward_lookup,
        ) {
            let msg = if module.list {
                format!(
                    "@ERROR: access denied to {} from {} ({peer})\n",
                    module.name, host
                )
            } else {
                format!("@ERROR: Unknown module '{}'\n", module.name)
            };
            let _ = line(w, &msg);
            super::log::line(&format!(
                "rsync denied on module {} from {} ({})",
                module.name, who.host, who.addr
            ));
            return Err(RERR_STARTCLIENT);
        }
    }
    // max connections: a record lock in the lock file, held until this
    // process ends; below 0 no slot exists, so the module is closed (as
    // upstream's claim_connection).
    if module.max_connections != 0 {
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
        match authenticate(r, w, &module, &users, &g, &who, &offered) {
            Ok((access, user)) => {
                auth_user = user;
                if !auth_user.is_empty() {
                    let read_only = module.read_only;
                    module = expand(&auth_user).map_err(|e| refuse_hook(w, e))?;
                    module.read_only = read_only;
                }
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
    // Local setup and hooks may take what they need.
    handshake_deadline_off();
    let no_xfer_exec = std::env::var_os("RSYNC_NO_XFER_EXEC").is_some();
    // post-xfer exec is armed first, then pre-xfer exec starts, both before
    // the module is entered, as upstream.
    if let Some(cmd) = module.post_xfer_exec.as_deref().filter(|_| !no_xfer_exec) {
        if let Err(e) = super::xfer_exec::arm_post(cmd, &xfer_env(&module, peer, &host, &auth_user))
        {
            tracing::warn!(peer, "fork failed: {e}");
            let _ = line(w, "@ERROR: fork failed\n");
            return Err(RERR_STARTCLIENT);
        }
    }
    if let Some(cmd) = module.early_exec.as_deref().filter(|_| !no_xfer_exec) {
        let env = xfer_env(&module, peer, &host, &auth_user);
        if let Err(text) = super::xfer_exec::run_early(cmd, &env, &early_input) {
            super::log::line(&format!("rsync: early exec failed: {}", text.trim_end()));
            let _ = line(w, "@ERROR: early exec failed\n");
            return Err(RERR_STARTCLIENT);
        }
    }
    let pre_xfer = match module.pre_xfer_exec.as_deref().filter(|_| !no_xfer_exec) {
        Some(cmd) => {
            match super::xfer_exec::start(cmd, &xfer_env(&module, peer, &host, &auth_user)) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(peer, "pre-xfer exec preparation failed: {e}");
                    let _ = line(w, "@ERROR: pre-xfer exec preparation failed\n");
                    return Err(RERR_STARTCLIENT);
                }
            }
        }
        None => None,
    };
    super::log::line(&format!(
        "rsync allowed access on module {} from {} ({})",
        module.name, who.host, who.addr
    ));
    super::log::for_module(
        module.log_file.as_deref(),
        module.syslog_facility.0,
        Some(module.syslog_tag.as_str()).filter(|t| !t.is_empty()),
    );
    // The module's filter files are read before the chroot and uid change
    // (upstream rsync_module parses them first): `exclude from =
    // /etc/...` names a file outside a chrooted module.
    let module_rules = module_filters(&module, &server_popts(proto, &Options::default()));
    if let Err(msg) = enter_module(&module) {
        // The log has it capitalised ("Invalid uid root"), the client not.
        let mut logged = msg.clone();
        if let Some(f) = logged.get_mut(..1) {
            f.make_ascii_uppercase();
        }
        super::log::line(&logged);
        let _ = line(w, &format!("@ERROR: {msg}\n"));
        return Err(RERR_STARTCLIENT);
    }
    set_io_timeout(module.timeout);
    handshake_deadline(module.timeout);
    line(w, "@RSYNCD: OK\n").map_err(io)?;
    let nul = proto >= 30;
    let mut argv = read_arg_list(r, nul, MAX_ARGS).map_err(|_| RERR_STREAMIO)?;
    if argv.len() > MAX_ARGS {
        return Err(RERR_PROTOCOL);
    }
    // A client escapes option values with backslashes (upstream safe_arg:
    // `--usermap=\*:u`, `--backup-dir=a\ b`) for a remote shell to undo;
    // for a daemon, upstream's read_args undoes it for the words up to the
    // "." (the paths after it are matched by glob_expand).
    for a in argv.iter_mut() {
        unbackslash(a);
        if a == b"." {
            break;
        }
    }
    // -s (--secluded-args): the arguments follow again as a second list,
    // NUL-separated whatever the protocol, its first element a stand-in
    // for argv[0] (upstream rsync_module's second read_args); of the first
    // list only the options before its first other word count (upstream's
    // first parse_arguments stops there; a 3.x client below protocol 30
    // sends "(null)" and the rest in the clear too).
    let first_list: Vec<String> = argv
        .iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if options::parse(&first_list).is_ok_and(|(o, _)| o.protect_args) {
        let options_end = argv
            .iter()
            .position(|a| !a.starts_with(b"-"))
            .unwrap_or(argv.len());
        argv.truncate(options_end);
        let more = read_arg_list(r, true, MAX_ARGS).map_err(|_| RERR_STREAMIO)?;
        argv.extend(more.into_iter().skip(1));
        if argv.len() > MAX_ARGS {
            return Err(RERR_PROTOCOL);
        }
    }
    handshake_deadline_off();
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
            if paths.iter().any(|p| crate::fs::glob::has_wildcard(p)) {
                paths =
                    expand_in_module(module_rules.as_ref().ok().and_then(Option::as_ref), paths);
            }
            if let Some(refused) =
                super::refuse::refused_option(module.refuse_options.as_deref(), &opts)
            {
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
            // --files-from=FILE (a client's --files-from=:FILE) is opened
            // inside the module as the options are taken (upstream
            // parse_arguments), so a bad one is an option error.
            let mut files_from = None;
            if let Some(ff) = opts.files_from.as_deref().filter(|f| *f != "-") {
                let rules = module_rules.as_ref().ok().and_then(Option::as_ref);
                match server::server_files_from(ff, true, rules) {
                    Ok(d) => files_from = Some(Arc::new(d)),
                    Err(m) => {
                        refuse(r, w, proto, &opts, &format!("rsync: {m}"), &opt_strs);
                        return Err(RERR_UNSUPPORTED);
                    }
                }
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
            if opts.iconv.is_some() || opts.acls || opts.crtimes {
                refuse(
                    r,
                    w,
                    proto,
                    &opts,
                    "rsync: rrsync does not support --iconv, -A or --crtimes yet",
                    &opt_strs,
                );
                return Err(RERR_UNSUPPORTED);
            }
            let request: Vec<String> = path_args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let from = if auth_user.is_empty() {
                who.host.clone()
            } else {
                format!("{auth_user}@{}", who.host)
            };
            super::log::line(&format!(
                "rsync {} {} from {from} ({})",
                if opts.sender { "on" } else { "to" },
                request.join(" "),
                who.addr
            ));
            Ok(Some(Accepted {
                proto,
                opts,
                module,
                paths,
                who,
                user: auth_user,
                files_from,
                module_rules,
            }))
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

/// Who is connecting, as the log names it.
pub(crate) struct Who {
    /// The host name (reverse lookup) or "UNDETERMINED".
    pub host: String,
    /// The address.
    pub addr: String,
}

impl Who {
    fn of(cfg: &DaemonConfig, peer: &str) -> Who {
        let host = peer
            .parse::<std::net::IpAddr>()
            .ok()
            .filter(|_| cfg.global.defaults.reverse_lookup)
            .and_then(super::access::reverse_name)
            .unwrap_or_else(|| "UNDETERMINED".to_string());
        Who {
            host,
            addr: peer.to_string(),
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
    who: &Who,
    offered: &[&str],
) -> Result<(super::auth::Access, String), i32> {
    use super::auth;
    let (host, addr) = (&who.host, &who.addr);
    let failed = |user: Option<&str>, why: &str| {
        super::log::line(&match user {
            Some(u) => format!(
                "auth failed on module {} from {host} ({addr}) for {u}: {why}",
                module.name
            ),
            None => format!(
                "auth failed on module {} from {host} ({addr}): {why}",
                module.name
            ),
        });
    };
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
                failed(
                    None,
                    &format!("the configured 'auth digest = {floor}' is not a supported digest on this build"),
                );
                return Err(RERR_STARTCLIENT);
            }
            (Some(want), Some(got)) if got <= want => {}
            _ => {
                failed(
                    None,
                    &format!(
                        "negotiated auth digest {} is weaker than the required 'auth digest = {floor}'",
                        digest.name()
                    ),
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
        failed(None, "invalid challenge response");
        return Err(RERR_STARTCLIENT);
    };
    let Some((access, group)) = auth::match_user(users, user) else {
        failed(Some(user), "no matching rule");
        return Err(RERR_STARTCLIENT);
    };
    let Some(secrets) = module.secrets_file.as_deref() else {
        failed(Some(user), "no secrets file");
        return Err(RERR_STARTCLIENT);
    };
    let pw = match auth::find_secret(secrets, module.strict_modes, user, group.as_deref()) {
        Ok(Some(pw)) => pw,
        Ok(None) => {
            failed(Some(user), "no matching rule");
            return Err(RERR_STARTCLIENT);
        }
        Err(e) => {
            failed(Some(user), &e.to_string());
            return Err(RERR_STARTCLIENT);
        }
    };
    let want = auth::response(digest, &pw, &chal);
    if !auth::constant_time_eq(want.as_bytes(), resp.trim().as_bytes()) {
        failed(Some(user), "password mismatch");
        return Err(RERR_STARTCLIENT);
    }
    Ok((access, user.to_string()))
}

/// The peer's name for a module (upstream rsync_module's `host`): the name
/// found at connect time (global `reverse lookup`), else a lookup now when
/// the module asks for one ("UNKNOWN" when there is no name), else
/// "UNDETERMINED". A module's `reverse lookup = no` does not undo a global
/// lookup.
fn module_host(connect_host: &str, module: &ModuleConfig, peer: &str) -> String {
    if connect_host != "UNDETERMINED" {
        return connect_host.to_string();
    }
    match peer.parse::<std::net::IpAddr>() {
        Ok(addr) if module.reverse_lookup => {
            super::access::reverse_name(addr).unwrap_or_else(|| "UNKNOWN".into())
        }
        _ => "UNDETERMINED".to_string(),
    }
}

/// The environment of `pre-xfer exec` known before the arguments arrive
/// (`host`: the peer's name for the module, see module_host).
fn xfer_env(module: &ModuleConfig, peer: &str, host: &str, user: &str) -> Vec<(String, String)> {
    vec![
        ("RSYNC_MODULE_NAME".into(), module.name.clone()),
        (
            "RSYNC_MODULE_PATH".into(),
            module.path.clone().unwrap_or_default(),
        ),
        ("RSYNC_HOST_ADDR".into(), peer.to_string()),
        ("RSYNC_HOST_NAME".into(), host.to_string()),
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

/// Enter the module: chroot and privilege changes when root, then chdir.
/// `daemon chroot`, `daemon gid`, `daemon uid` (upstream start_daemon):
/// applied to every connection before its greeting, after the host name
/// lookup, so modules' paths are then inside the daemon chroot.
fn enter_daemon_jail(cfg: &DaemonConfig) -> Result<(), String> {
    let g = &cfg.global;
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let (chroot, gid, uid) = (
        nonempty(&g.daemon_chroot),
        nonempty(&g.daemon_gid),
        nonempty(&g.daemon_uid),
    );
    if let Some(dir) = &chroot {
        nix::unistd::chroot(dir.as_str())
            .and_then(|()| nix::unistd::chdir("/"))
            .map_err(|e| {
                format!(
                    "rsync: daemon chroot(\"{dir}\") failed: {} ({})",
                    e.desc(),
                    e as i32
                )
            })?;
    }
    // Names are looked up inside the daemon chroot, as upstream does (its
    // passwd and group files are the ones that count).
    let gid_num = match &gid {
        Some(n) => Some(lookup_gid(n).ok_or_else(|| format!("Invalid daemon gid: {n}"))?),
        None => None,
    };
    let uid_num = match &uid {
        Some(n) => Some(lookup_uid(n).ok_or_else(|| format!("Invalid daemon uid: {n}"))?),
        None => None,
    };
    if let Some(g) = gid_num {
        let gid = nix::unistd::Gid::from_raw(g);
        let groups = if nix::unistd::geteuid().is_root() {
            nix::unistd::setgroups(&[gid])
        } else {
            Ok(())
        };
        groups
            .and_then(|()| nix::unistd::setgid(gid))
            .map_err(|e| {
                format!(
                    "rsync: Unable to set group to daemon gid {g}: {} ({})",
                    e.desc(),
                    e as i32
                )
            })?;
    }
    if let Some(u) = uid_num {
        nix::unistd::setuid(nix::unistd::Uid::from_raw(u)).map_err(|e| {
            format!(
                "rsync: Unable to set user to daemon uid {u}: {} ({})",
                e.desc(),
                e as i32
            )
        })?;
    }
    Ok(())
}

/// The directory served inside a module's chroot when its path has a
/// "/./" part (upstream: the module_dir after the split).
fn inner_dir(m: &ModuleConfig) -> Option<&str> {
    let p = m.path.as_deref()?;
    let i = p.find("/./")?;
    Some(&p[i + 2..]).filter(|d| !d.trim_matches('/').is_empty() && *d != "/.")
}

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
    let gids: Vec<String> = if is_root {
        m.effective_gids(true, super::config::default_nobody_group())
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        Vec::new()
    };
    // Look up ids before chroot (upstream does name lookups first too).
    let uid_num = match &uid {
        Some(u) => Some(lookup_uid(u).ok_or_else(|| format!("invalid uid {u}"))?),
        None => None,
    };
    let mut gid_nums = Vec::with_capacity(gids.len());
    for (i, g) in gids.iter().enumerate() {
        if i == 0 && g == "*" {
            // "*" first: every group of the module's user, its own group
            // first (upstream want_all_groups / getallgroups).
            let uid = uid_num.unwrap_or_else(|| nix::unistd::geteuid().as_raw());
            gid_nums.extend(all_groups_of(uid)?);
            continue;
        }
        gid_nums.push(lookup_gid(g).ok_or_else(|| format!("invalid gid {g}"))?);
    }
    if use_chroot {
        // "outer/./inner": chroot to outer, serve inner inside it.
        let (outer, inner) = match path.find("/./") {
            Some(i) => (&path[..i], &path[i + 2..]),
            None => (path, "/"),
        };
        let outer = if outer.is_empty() { "/" } else { outer };
        nix::unistd::chroot(outer).map_err(|_| "chroot failed".to_string())?;
        nix::unistd::chdir(inner).map_err(|_| "chdir failed".to_string())?;
    } else {
        nix::unistd::chdir(path).map_err(|_| "chdir failed".to_string())?;
    }
    // The first gid is the primary group, all of them the supplementary
    // groups (upstream: rsync_module's gid_list).
    if let Some(&g) = gid_nums.first() {
        let all: Vec<nix::unistd::Gid> = gid_nums
            .iter()
            .map(|&g| nix::unistd::Gid::from_raw(g))
            .collect();
        nix::unistd::setgroups(&all).map_err(|_| "setgid failed".to_string())?;
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

/// The groups of user `uid` (getgrouplist), its primary group first.
fn all_groups_of(uid: u32) -> Result<Vec<u32>, String> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .ok_or_else(|| "getpwuid failed".to_string())?;
    let name = std::ffi::CString::new(user.name.as_bytes())
        .map_err(|_| "getgrouplist failed".to_string())?;
    let mut all: Vec<u32> = nix::unistd::getgrouplist(&name, user.gid)
        .map_err(|_| "getgrouplist failed".to_string())?
        .iter()
        .map(|g| g.as_raw())
        .collect();
    let primary = user.gid.as_raw();
    all.retain(|&g| g != primary);
    all.insert(0, primary);
    Ok(all)
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
            "rsync error: {} (code {RERR_UNSUPPORTED}) at {}({}) [Receiver=rrsync-{version}]",
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

/// Serve the accepted request inside the module (the working directory is
/// its root by now): the module's settings become the server's environment.
#[allow(clippy::too_many_arguments)]
fn run_module<R: Read + Send + 'static, W: Write + Send>(
    _cfg: &DaemonConfig,
    a: Accepted,
    r: R,
    w: W,
) -> i32 {
    let Accepted {
        proto,
        mut opts,
        module,
        paths,
        who,
        user,
        files_from,
        module_rules,
    } = a;
    let (who, user) = (&who, user.as_str());
    // `max verbosity` (upstream limit_output_verbosity): what the client's
    // -v asks of the daemon is capped.
    let cap = module.max_verbosity.clamp(0, u8::MAX as i32) as u8;
    opts.verbose = opts.verbose.min(cap);
    opts.output_cap = Some(cap);
    // Module settings that override the client's (upstream rsync_module).
    opts.open_noatime = module.open_noatime_with(opts.open_noatime);
    if module.ignore_errors {
        opts.ignore_errors = true;
    }
    // `temp dir`: the module's default for --temp-dir (upstream sets it
    // before the client's options, which may name their own); it is then
    // taken inside the module like a client's.
    if opts.temp_dir.is_none() {
        opts.temp_dir = module
            .temp_dir
            .clone()
            .filter(|t| !t.is_empty() && t.len() < crate::protocol::MAX_PATH_LEN - 10);
    }
    let am_root = nix::unistd::geteuid().is_root();
    let chroot = module.use_chroot_with(|| am_root);
    let env = (|| -> Result<ServerEnv, RoleError> {
        let chmod = |spec: Option<&str>, what: &str| -> Result<Option<Chmod>, RoleError> {
            spec.map(|s| {
                Chmod::parse(s, current_umask())
                    .map_err(|e| RoleError::Unsupported(format!("{what}: {e}")))
            })
            .transpose()
        };
        Ok(ServerEnv {
            module: Some(module.name.clone()),
            daemon_rules: module_rules.map_err(RoleError::Unsupported)?,
            outgoing_chmod: chmod(module.outgoing_chmod.as_deref(), "outgoing chmod")?,
            incoming_chmod: chmod(module.incoming_chmod.as_deref(), "incoming chmod")?,
            received_chmod: None,
            numeric_ids: module.numeric_ids_with(chroot),
            // A chroot with an inner "/./" part serves a subdirectory of
            // it, where links and paths are still checked (upstream
            // module_dirlen).
            munge_symlinks: module.munge_symlinks_with(chroot, inner_dir(&module).is_some()),
            sanitize_links: !chroot || inner_dir(&module).is_some(),
            read_only: module.read_only,
            write_only: module.write_only,
            timeout: module.timeout,
            log: Some(super::log::bytes),
            xfer_log: transfer_log(&module, &opts, who, user),
            bwlimit_cap: DAEMON_BWLIMIT.get().copied().unwrap_or(0),
            ignore_nonreadable: module.ignore_nonreadable,
            dont_compress_all: module.dont_compress.split(' ').any(|w| w == "*"),
            files_from,
        })
    })();
    match env {
        Ok(env) => server::run(&env, proto, opts, paths, r, w),
        Err(e) => {
            // Reported like any failure after setup.
            let env = ServerEnv {
                module: Some(module.name.clone()),
                ..Default::default()
            };
            server::run_failed(&env, proto, opts, e, r, w)
        }
    }
}

/// `transfer logging`: item lines in the module's `log format` (upstream:
/// logfile_format in rsync_module).
fn transfer_log(
    module: &ModuleConfig,
    opts: &Options,
    who: &Who,
    user: &str,
) -> Option<Arc<crate::role::log::ClientLog>> {
    if !module.transfer_logging {
        return None;
    }
    let o = crate::role::log::OutputOpts {
        am_sender: opts.sender,
        preserve_mtimes: opts.times,
        dry_run: opts.dry_run,
        human: 0,
        sink: Some(super::log::xfer_sink),
        daemon: Some(crate::role::log::DaemonCtx {
            host: who.host.clone(),
            addr: who.addr.clone(),
            module: module.name.clone(),
            user: user.to_string(),
            path: module.path.clone().unwrap_or_default(),
        }),
        ..crate::role::log::OutputOpts::for_format(module.log_format.clone())
    };
    Some(Arc::new(crate::role::log::ClientLog::new(o)))
}

/// Seconds a daemon handshake may take at most.
const HANDSHAKE_TIMEOUT: u32 = 60;

/// Arm the handshake deadline: the `timeout` in force, at most (and when
/// unset) 60 seconds. When it passes, SIGALRM ends the session.
fn handshake_deadline(timeout: i32) {
    let secs = if timeout <= 0 || timeout as u32 > HANDSHAKE_TIMEOUT {
        HANDSHAKE_TIMEOUT
    } else {
        timeout as u32
    };
    nix::unistd::alarm::set(secs);
}

fn handshake_deadline_off() {
    nix::unistd::alarm::cancel();
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

/// Exists for the listener: whether a path is a module root we may serve.
pub fn module_root_ok(p: &Path) -> bool {
    p.is_dir()
}

/// Wildcards in a request's paths, expanded inside the module (the working
/// directory) as upstream's read_args does with glob_expand_module: what
/// the module's filter rules exclude never matches.
fn expand_in_module(
    rules: Option<&crate::filter::FilterList>,
    paths: Vec<Vec<u8>>,
) -> Vec<Vec<u8>> {
    // (A broken filter setting fails the session later, in its own words.)
    let excluded = |name: &[u8], is_dir: bool| {
        rules.is_some_and(|r| r.is_excluded(name, is_dir, crate::filter::Side::Sender))
    };
    let root = std::fs::canonicalize(".").ok();
    let g = crate::fs::glob::Glob {
        base: Path::new("."),
        confine: root.as_deref(),
        excluded: Some(&excluded),
    };
    paths.iter().flat_map(|p| g.expand(p)).collect()
}

/// How the module's filter lines are parsed for this session.
fn server_popts(proto: u8, opts: &Options) -> crate::filter::ParseOptions {
    crate::filter::ParseOptions {
        protocol: proto as u32,
        delete_excluded: opts.delete_excluded,
        ..Default::default()
    }
}

/// The module's `filter`, `include`, `exclude` (and `*from`) lines as one list.
fn module_filters(
    m: &ModuleConfig,
    popts: &crate::filter::ParseOptions,
) -> Result<Option<crate::filter::FilterList>, String> {
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
        .map_err(|e| format!("daemon filter rules: {e}"))
}

/// Undo upstream safe_arg's escaping in place: `\X` becomes `X` (a lone
/// trailing backslash stays), as upstream's unbackslash_arg.
fn unbackslash(a: &mut Vec<u8>) {
    if !a.contains(&b'\\') {
        return;
    }
    let mut out = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        if a[i] == b'\\' && i + 1 < a.len() {
            i += 1;
        }
        out.push(a[i]);
        i += 1;
    }
    *a = out;
}

#[cfg(test)]
mod tests {
    use super::unbackslash;

    #[test]
    fn unbackslash_undoes_safe_arg() {
        for (from, to) in [
            (&br"--usermap=\*:daemon"[..], &b"--usermap=*:daemon"[..]),
            (br"--backup-dir=a\ b", b"--backup-dir=a b"),
            (br"a\\b", br"a\b"),
            (br"trailing\", br"trailing\"),
            (b"plain", b"plain"),
        ] {
            let mut v = from.to_vec();
            unbackslash(&mut v);
            assert_eq!(v, to);
        }
    }
}
