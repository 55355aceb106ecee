//! The client: `rrsync [OPTIONS] SRC... DEST` the way stock rsync runs it
//! (upstream: main.c start_client, client_run; clientserver.c
//! start_socket_client). It picks the transport (`args`, `connect`,
//! `daemon`), tells the far side what to do (`server_args`), runs our role
//! (the sender for a push or a local copy, generator + receiver for a pull,
//! from `role::server`), prints the summary (`summary`) and exits with
//! stock's codes.

pub mod args;
pub mod checks;
pub mod connect;
pub mod daemon;
pub mod server_args;
pub mod summary;
pub mod wrapped;

use crate::cli::options::{FilterArg, Options};
use crate::exit::*;
use crate::protocol::mux::{Demux, Message, MsgCode, MuxWriter};
use crate::protocol::PROTOCOL_VERSION;
use crate::role::log::{ClientLog, OutputOpts};
use crate::role::server::{Counting, ServerEnv};
use crate::role::RoleError;
use args::{Plan, Remote};
use server_args::Quoting;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

/// What the options and arguments mean once combined (upstream: the
/// post-processing at the end of options.c parse_arguments).
#[derive(Debug, Clone)]
pub struct Settings {
    /// We send.
    pub am_sender: bool,
    /// Both sides are local.
    pub local_server: bool,
    /// Our protocol before negotiation (`--protocol`, else ours).
    pub pre_proto: u8,
    /// `-r` in effect.
    pub recursive: bool,
    /// xfer_dirs: 0, 1 (implied), 2 (`-d`).
    pub xfer_dirs: u8,
    /// list_only: 0, 1 (no destination), 2 (`--list-only`).
    pub list_only: u8,
    /// `-R` in effect.
    pub relative: bool,
    /// Implied directories with `-R`.
    pub implied_dirs: bool,
    /// Some `--delete*` mode.
    pub delete: bool,
    /// `-W` in effect.
    pub whole_file: bool,
    /// We may do incremental recursion (the `i` capability).
    pub allow_inc_recurse: bool,
    /// How arguments are quoted for the far side.
    pub quoting: Quoting,
    /// `--files-from` names a file on the far side.
    pub files_from_remote: bool,
    /// Its path there.
    pub files_from_remote_path: Option<String>,
    /// A local `--files-from` source, read while the options are checked
    /// (as upstream opens it then; `-` is stdin, read once).
    pub files_from_data: Option<std::sync::Arc<Vec<u8>>>,
    /// Terminal output.
    pub out: OutputOpts,
    /// Number formatting (0 plain, 1 commas, 2/3 units).
    pub human: u8,
    /// `--chmod`: applied to the modes of our side's list (what we send,
    /// or what we receive), as upstream does on the side that parses it.
    pub chmod: Option<crate::flist::chmod::Chmod>,
    /// Our filter rules, read with the options (as upstream reads
    /// `--exclude-from` files while parsing them).
    pub filters: crate::filter::FilterList,
}

/// A client failure: the exit code and what to print first.
#[derive(Debug)]
pub struct Fail {
    /// rsync exit code.
    pub code: i32,
    /// What to print first (already formatted as stock does).
    pub msg: Option<String>,
    /// The far side already said why it exits (MSG_ERROR_EXIT): no exit line of ours.
    pub silent: bool,
    /// Who failed, when not the role's name before the fork (upstream
    /// who_am_i: a file I/O error is the receiver's).
    pub who: Option<&'static str>,
    /// A remote shell still running, ended with SIGUSR1 once the error
    /// lines are out (upstream exit_cleanup's kill_all, after log_exit),
    /// and our still open end of its input.
    pub end_child: Option<(i32, Option<std::os::fd::OwnedFd>)>,
}

/// A finished run, for callers that run several (`push`).
#[derive(Debug)]
pub struct Finished {
    /// rsync exit code.
    pub code: i32,
    /// What the summary would report.
    pub summary: Option<summary::Summary>,
    /// The protocol spoken.
    pub proto: u8,
}

fn fail(code: i32, msg: impl Into<String>) -> Fail {
    Fail {
        code,
        msg: Some(msg.into()),
        silent: false,
        who: None,
        end_child: None,
    }
}

pub use crate::role::bwlimit::parse_kib as bwlimit_kib;

fn seen(o: &Options, name: &str) -> bool {
    o.seen.iter().any(|s| s == name)
}

/// Apply `--info` words over the verbosity defaults.
fn apply_info(out: &mut OutputOpts, words: &[String]) {
    for w in words.iter().flat_map(|w| w.split(',')) {
        let w = w.trim().to_ascii_lowercase();
        if w.is_empty() {
            continue;
        }
        let (name, level) = match w.find(|c: char| c.is_ascii_digit()) {
            Some(p) => (&w[..p], w[p..].parse::<u8>().unwrap_or(1)),
            None => (w.as_str(), 1),
        };
        let all = name == "all";
        let none = name == "none";
        let lvl = if none { 0 } else { level };
        let set = |n: &str| all || none || name == n;
        if set("name") {
            out.name = lvl;
        }
        if set("del") {
            out.del = lvl;
        }
        if set("flist") {
            out.flist = lvl;
        }
        if set("stats") {
            out.stats = lvl;
        }
        if set("misc") {
            out.misc = lvl;
        }
        if set("progress") {
            out.progress = lvl;
        }
        if set("nonreg") {
            out.nonreg = lvl;
        }
        if set("skip") {
            out.skip = lvl;
        }
    }
}

fn settings(o: &Options, plan: &Plan) -> Result<Settings, Fail> {
    if let Some(bad) = o.dparams.iter().find(|r| !r.starts_with('-')) {
        return Err(fail(
            RERR_SYNTAX,
            format!("rsync: Remote option must start with a dash: {bad}"),
        ));
    }
    let chmod = if o.chmod.is_empty() {
        None
    } else {
        let spec = o.chmod.join(",");
        Some(
            crate::flist::chmod::Chmod::parse(&spec, crate::role::server::current_umask())
                .map_err(|e| fail(RERR_SYNTAX, format!("rsync: {e}")))?,
        )
    };
    let local_server = plan.remote.is_none();
    let pre_proto = o.protocol.unwrap_or(PROTOCOL_VERSION);
    // (upstream setup_protocol: a number no rsync speaks is a "mismatch",
    // one newer than ours is refused; ours also refuses what is older
    // than the oldest protocol it speaks.)
    let min = crate::protocol::MIN_PROTOCOL_VERSION;
    let refusal = match pre_proto {
        p if !(20..=40).contains(&p) => Some(
            "protocol version mismatch -- is your shell clean?\n\
             (see the rsync manpage for an explanation)"
                .to_string(),
        ),
        p if p > PROTOCOL_VERSION => Some(format!(
            "--protocol must be no more than {PROTOCOL_VERSION} on the Client."
        )),
        p if p < min => Some(format!(
            "--protocol must be between {min} and {PROTOCOL_VERSION}"
        )),
        _ => None,
    };
    if let Some(why) = refusal {
        return Err(fail(RERR_PROTOCOL, why));
    }
    let files_from = o.files_from.is_some();
    let explicit_r = seen(o, "recursive") || seen(o, "r");
    let recursive = o.recursive && (!files_from || explicit_r);
    let list_only = if o.list_only {
        2
    } else if plan.list_only {
        1
    } else {
        0
    };
    let mut xfer_dirs: i8 = if seen(o, "dirs") {
        if o.dirs {
            2
        } else {
            0
        }
    } else {
        -1
    };
    if files_from && xfer_dirs < 0 {
        xfer_dirs = 1;
    }
    let xfer_dirs = if recursive {
        1
    } else if xfer_dirs < 0 {
        u8::from(list_only > 0)
    } else {
        xfer_dirs as u8
    };
    let relative = if seen(o, "relative") {
        o.relative
    } else {
        files_from
    };
    // (--delete without directories is refused by checks::check_options.)
    let delete = o.delete || o.delete_excluded || o.delete_when.is_some();
    let am_sender = plan.am_sender;
    let use_qsort = o.use_qsort();
    let mut allow_inc = recursive && !use_qsort;
    if !am_sender
        && (matches!(o.delete_when, Some("delete-before") | Some("delete-after"))
            || o.delay_updates
            || o.prune_empty_dirs)
    {
        allow_inc = false;
    }
    if seen(o, "inc-recursive") || seen(o, "i-r") {
        // --no-inc-recursive turns it off.
        if !o.misc.iter().any(|m| m == "inc-recursive" || m == "i-r") {
            allow_inc = false;
        }
    }
    let human = if seen(o, "human-readable") && o.human == 0 {
        0
    } else {
        1 + o.human.min(2)
    };
    let verbose = o.verbose;
    let mut out = OutputOpts {
        name: verbose.min(2),
        del: u8::from(verbose >= 1),
        flist: u8::from(verbose >= 1),
        stats: u8::from(verbose >= 1),
        misc: verbose.min(2),
        nonreg: 1,
        skip: u8::from(verbose >= 2),
        quiet: o.quiet,
        am_sender,
        local_server,
        preserve_mtimes: o.times,
        eight_bit: o.eight_bit,
        utf8_locale: crate::role::log::utf8_locale(),
        ..Default::default()
    };
    out.human = if seen(o, "human-readable") && o.human == 0 {
        0
    } else {
        1 + o.human.min(2)
    };
    if o.stats {
        out.stats = if verbose > 1 { 3 } else { 2 };
    }
    apply_info(&mut out, &o.info);
    if o.quiet {
        out.name = 0;
        out.del = 0;
        out.flist = 0;
        out.stats = out.stats.min(if o.stats { 3 } else { 0 });
        out.misc = 0;
    }
    match &o.log_format {
        Some(f) => {
            out.format = Some(f.clone());
            if f.contains("%i") {
                out.has_i = o.itemize.max(1);
            }
        }
        None if o.itemize > 0 => {
            out.format = Some("%i %n%L".into());
            out.has_i = o.itemize;
        }
        None => {}
    }
    if o.progress && !out.log_before_transfer() && out.name == 0 {
        out.name = 1;
    }
    if o.progress {
        out.progress = out.progress.max(1);
        out.flist = out.flist.max(2);
    }
    if out.name >= 1 && out.format.is_none() {
        out.format = Some("%n%L".into());
    }
    out.has_o_or_i = out.has_i > 0 || out.format.as_deref().is_some_and(|f| f.contains("%o"));
    let (files_from_remote, files_from_remote_path) = match o.files_from.as_deref() {
        Some(f) => match args::check_for_hostspec(f) {
            Some(h) if h.port.is_none() => (true, Some(h.path)),
            _ => (false, None),
        },
        None => (false, None),
    };
    if let (true, Some(why)) = (
        o.munge_links(),
        crate::role::generator::munge_links_unsafe(),
    ) {
        return Err(fail(crate::exit::RERR_UNSUPPORTED, why));
    }
    let filters = client_filters(o, pre_proto)?;
    Ok(Settings {
        am_sender,
        local_server,
        pre_proto,
        recursive,
        xfer_dirs,
        list_only,
        relative,
        implied_dirs: relative && !o.no_implied_dirs,
        delete,
        whole_file: o.whole_file.unwrap_or(local_server),
        allow_inc_recurse: allow_inc,
        quoting: if local_server || o.old_args || o.protect_args {
            Quoting::Raw
        } else {
            Quoting::Escape
        },
        files_from_data: match o.files_from.as_deref() {
            Some(ff) if !files_from_remote => Some(std::sync::Arc::new(read_files_from(ff)?)),
            _ => None,
        },
        files_from_remote,
        files_from_remote_path,
        out,
        human,
        chmod,
        filters,
    })
}

/// The client's own filter rules (upstream: the options' rules in order,
/// then `-C`), read and parsed locally.
fn client_filters(o: &Options, proto: u8) -> Result<crate::filter::FilterList, Fail> {
    let popts = crate::filter::ParseOptions {
        protocol: proto as u32,
        delete_excluded: o.delete_excluded,
        ..Default::default()
    };
    let mut list = crate::filter::FilterList::new(popts);
    // The last file that could not be read, and why (for stock's message).
    let failed: std::cell::RefCell<Option<(Vec<u8>, std::io::Error)>> = Default::default();
    let mut read = |p: &[u8]| -> Option<Vec<u8>> {
        let got = if p == b"-" {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v).map(|_| v)
        } else {
            std::fs::read(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(p))
        };
        got.map_err(|e| *failed.borrow_mut() = Some((p.to_vec(), e)))
            .ok()
    };
    let mut dash_f = 0;
    let err = |e: crate::filter::FilterError| {
        if let crate::filter::FilterError::OpenFailed { include, path } = &e {
            // A file named on the command line: who failed, and why.
            if let Some((_, io)) = failed
                .borrow()
                .as_ref()
                .filter(|(p, _)| p == path.as_bytes())
            {
                return checks::filter_open_failure(*include, path, io);
            }
        }
        // upstream says a rule's problem bare (rprintf, no "rsync: ").
        let code = e.exit_code();
        match e {
            crate::filter::FilterError::Io(_) => fail(code, format!("rsync: {e}")),
            _ => fail(code, e.to_string()),
        }
    };
    for a in &o.filter_args {
        match a {
            FilterArg::Filter(r) => list.add_filter(r.as_bytes(), &mut read).map_err(err)?,
            FilterArg::Exclude(p) => list.add_exclude(p.as_bytes()).map_err(err)?,
            FilterArg::Include(p) => list.add_include(p.as_bytes()).map_err(err)?,
            FilterArg::ExcludeFrom(f) => list
                .add_rules_file(f.as_bytes(), false, &mut read)
                .map_err(err)?,
            FilterArg::IncludeFrom(f) => list
                .add_rules_file(f.as_bytes(), true, &mut read)
                .map_err(err)?,
            FilterArg::DashF => {
                dash_f += 1;
                list.add_dash_f(dash_f).map_err(err)?
            }
        }
    }
    // upstream parse_arguments: backups kept beside their files are
    // protected from --delete ("P *SUFFIX", after the command line's rules).
    if o.backup && o.backup_dir.is_none() && o.delete && !o.delete_excluded {
        let suffix = o.suffix.as_deref().unwrap_or("~");
        if !suffix.is_empty() {
            let rule = format!("P *{suffix}");
            list.add_filter(rule.as_bytes(), &mut read).map_err(err)?;
        }
    }
    Ok(list)
}

/// Entry point for a client run: `args` are the path arguments.
pub fn run(opts: Options, args: Vec<String>) -> i32 {
    let start = std::time::SystemTime::now();
    let (code, role, silent, end_child) = match run_inner(&opts, &args, start) {
        Ok((c, r)) => (c, r, false, None),
        Err((f, role)) => {
            crate::interrupt::exiting();
            if let Some(m) = &f.msg {
                let _ = std::io::stdout().flush();
                let mut e = std::io::stderr().lock();
                let _ = writeln!(e, "{m}");
            }
            (f.code, role, f.silent, f.end_child)
        }
    };
    if code != 0 && !silent {
        let _ = std::io::stdout().flush();
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "{}", crate::exit::line(code, "client.rs", line!(), role));
    }
    if let Some((pid, hold)) = end_child {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1);
        drop(hold);
        // Reap it (bounded): an orphan left as a zombie lingers where
        // nobody reaps orphans.
        let until = std::time::Instant::now() + std::time::Duration::from_millis(500);
        while std::time::Instant::now() < until {
            match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                    std::thread::sleep(std::time::Duration::from_millis(2))
                }
                _ => break,
            }
        }
    }
    code
}

type RunResult = Result<(i32, &'static str), (Fail, &'static str)>;

fn run_inner(o: &Options, args: &[String], start: std::time::SystemTime) -> RunResult {
    let client = "client";
    let (plan, s) = prepare_as(o, args).map_err(|(f, role)| (f, role.unwrap_or(client)))?;
    let log = Arc::new(with_log_file(o, &s, ClientLog::new(s.out.clone())));
    let (done, role) = run_planned(o, &plan, &s, &log, None)?;
    if let (Some(sm), Some(_)) = (&done.summary, &o.log_file) {
        crate::daemon::log::line(&format!(
            "sent {} bytes  received {} bytes  total size {}",
            sm.total_written, sm.total_read, sm.total_size
        ));
    }
    if let Some(mut sm) = done.summary {
        sm.seconds = start.elapsed().map(|d| d.as_secs()).unwrap_or(0);
        summary::print(&log, &sm, done.proto, s.human);
    }
    log.end_line();
    Ok((done.code, role))
}

/// `--log-file`: the file is opened, and items and deletions also go there
/// in `--log-file-format` (default `%i %n%L`), as upstream's client logs.
pub fn with_log_file(o: &Options, s: &Settings, log: ClientLog) -> ClientLog {
    let Some(path) = o.log_file.as_deref() else {
        return log;
    };
    crate::daemon::log::init(Some(path), 0, None);
    let fmt = o
        .log_file_format
        .clone()
        .unwrap_or_else(|| "%i %n%L".to_string());
    let file = crate::role::log::OutputOpts {
        am_sender: s.am_sender,
        local_server: s.local_server,
        preserve_mtimes: o.times,
        dry_run: o.dry_run,
        sink: Some(crate::daemon::log::xfer_sink),
        ..crate::role::log::OutputOpts::for_format(fmt)
    };
    log.with_file_log(ClientLog::new(file))
}

/// What a client run needs once its arguments are understood: the options
/// checked first (as upstream's parse_arguments), then the paths (its
/// start_client, whose errors name the side we would have been: `Some`
/// role), then what they mean together.
fn prepare_as(
    o: &Options,
    args: &[String],
) -> Result<(Plan, Settings), (Fail, Option<&'static str>)> {
    checks::check_options(o, args).map_err(|f| (f, None))?;
    let plan = args::plan(args).map_err(|e| {
        let pulling = args
            .first()
            .is_some_and(|a| args::check_for_hostspec(a).is_some());
        let role = if pulling { "Receiver" } else { "sender" };
        (fail(RERR_SYNTAX, e.0), Some(role))
    })?;
    let s = settings(o, &plan).map_err(|f| (f, None))?;
    Ok((plan, s))
}

/// What a client run needs once its arguments are understood.
pub fn prepare(o: &Options, args: &[String]) -> Result<(Plan, Settings), Fail> {
    prepare_as(o, args).map_err(|(f, _)| f)
}

/// One client run for a planned transfer: connect, set up, run our role,
/// collect the far side's status. With `shared`, the sources are scanned
/// once for all the runs that share it (a push to many targets).
pub fn run_planned(
    o: &Options,
    plan: &Plan,
    s: &Settings,
    log: &Arc<ClientLog>,
    shared: Option<Arc<crate::role::server::ListCache>>,
) -> Result<(Finished, &'static str), (Fail, &'static str)> {
    // Past option parsing, upstream's who_am_i names the role.
    let role = if s.am_sender { "sender" } else { "Receiver" };
    let client = role;
    // (upstream start_client: these name the side we would have been.)
    let daemon = matches!(plan.remote, Some(Remote::Daemon { .. }));
    if o.password_file.is_some() && !daemon {
        return Err((
            fail(
                RERR_SYNTAX,
                "The --password-file option may only be used when accessing an rsync daemon.",
            ),
            role,
        ));
    }
    if o.contimeout.is_some_and(|t| t != 0) && !daemon {
        return Err((
            fail(
                RERR_SYNTAX,
                "The --contimeout option may only be used when connecting to an rsync daemon.",
            ),
            role,
        ));
    }
    let mut sargs = server_args::server_options(o, s);
    // Connect and reach the point where protocol setup starts.
    let (mut conn, proto) = match &plan.remote {
        Some(Remote::Daemon { host, port }) => {
            let (user, host) = args::split_user(host);
            let port = port.or(o.port).unwrap_or(873);
            let family = (o.ipv != 0).then_some(o.ipv);
            let connect_prog = std::env::var("RSYNC_CONNECT_PROG")
                .ok()
                .filter(|_| o.rsh.is_none());
            if o.rsh.is_none() && o.debug_level("CONNECT") >= 1 {
                let via = if connect_prog.is_some() {
                    "Using RSYNC_CONNECT_PROG instead of "
                } else {
                    ""
                };
                log.info(&format!(
                    "{via}opening tcp connection to {host} port {port}"
                ));
                if let (None, Some(p)) = (
                    &connect_prog,
                    std::env::var("RSYNC_PROXY")
                        .ok()
                        .and_then(|p| wrapped::parse_proxy(&p).ok()),
                ) {
                    log.info(&format!(
                        "connection via http proxy {} port {}",
                        p.host, p.port
                    ));
                }
            }
            let mut conn = match &o.rsh {
                // Daemon over a remote shell: it starts `rsync --server --daemon .`.
                Some(rsh) => {
                    let mut argv =
                        connect::split_rsh(rsh).map_err(|e| (fail(e.code, e.msg), client))?;
                    let dash_l = argv
                        .windows(2)
                        .any(|w| w[0] == "-l" && !w[1].starts_with('-'));
                    if let (Some(u), false) = (&user, dash_l) {
                        argv.push("-l".into());
                        argv.push(u.clone());
                    }
                    argv.push(host.clone());
                    argv.push(o.rsync_path.clone().unwrap_or_else(|| "rsync".into()));
                    argv.extend(["--server".into(), "--daemon".into(), ".".into()]);
                    show_command(o, log, &argv);
                    connect::spawn_timed(&argv, o.timeout)
                        .map_err(|e| (fail(e.code, e.msg), client))?
                }
                None if connect_prog.is_some() => {
                    let cmd = wrapped::connect_prog_command(
                        connect_prog.as_deref().unwrap_or_default(),
                        &host,
                    )
                    .map_err(|e| (fail(e.code, e.msg), client))?;
                    if o.debug_level("CMD") >= 1 {
                        log.info(&format!("Running socket program: \"{cmd}\""));
                    }
                    wrapped::connect_prog(&cmd).map_err(|e| (fail(e.code, e.msg), client))?
                }
                None => connect::tcp(
                    &host,
                    port,
                    role,
                    &connect::TcpOpts {
                        contimeout: o.contimeout.and_then(|t| u32::try_from(t).ok()),
                        family,
                        io_timeout: o.timeout,
                        sockopts: o.sockopts.as_deref(),
                        bind: o.address.as_deref(),
                    },
                )
                .map_err(|e| (fail(e.code, e.msg), client))?,
            };
            let req = daemon::Request {
                proto: s.pre_proto,
                user,
                paths: &plan.remote_paths,
                server_args: sargs.clone(),
                secluded_from: server_args::secluded_from(o, s),
                password_file: o.password_file.as_deref(),
                motd: !o.no_motd,
                show_args: o.debug_level("CMD") >= 1,
                early_input: o.early_input.as_deref(),
            };
            match daemon::exchange(&mut conn, &req, log) {
                Ok(daemon::Outcome::Ready(p)) => (conn, p),
                Ok(daemon::Outcome::Listed) => {
                    return Ok((
                        Finished {
                            code: 0,
                            summary: None,
                            proto: s.pre_proto,
                        },
                        client,
                    ))
                }
                Err(e) => {
                    return Err((
                        Fail {
                            code: e.code,
                            msg: e.msg,
                            silent: false,
                            who: None,
                            end_child: None,
                        },
                        client,
                    ))
                }
            }
        }
        Some(Remote::Shell { host }) => {
            let (user, host) = args::split_user(host);
            if host.starts_with('-') {
                return Err((
                    fail(
                        RERR_SYNTAX,
                        "Invalid remote host: hostnames may not start with '-'.",
                    ),
                    client,
                ));
            }
            let rsh = o
                .rsh
                .clone()
                .or_else(|| std::env::var("RSYNC_RSH").ok())
                .unwrap_or_else(|| "ssh".into());
            let mut argv = connect::split_rsh(&rsh).map_err(|e| (fail(e.code, e.msg), client))?;
            if let Some(u) = user {
                argv.push("-l".into());
                argv.push(u);
            }
            argv.push(host);
            argv.push(o.rsync_path.clone().unwrap_or_else(|| "rsync".into()));
            // -s: the command line ends after the letter bundle; the rest
            // goes to the server's stdin (upstream send_protected_args).
            let secluded = server_args::secluded_from(o, s);
            let mut rest = match secluded {
                Some(k) => sargs.split_off(k.min(sargs.len())),
                None => Vec::new(),
            };
            argv.append(&mut sargs);
            let tail = if secluded.is_some() {
                &mut rest
            } else {
                &mut argv
            };
            tail.push(".".into());
            for p in &plan.remote_paths {
                tail.push(server_args::safe_arg(
                    None,
                    p,
                    s.quoting,
                    s.am_sender,
                    s.relative,
                ));
            }
            show_command(o, log, &argv);
            let mut conn = connect::spawn_timed(&argv, o.timeout)
                .map_err(|e| (fail(e.code, e.msg), client))?;
            if secluded.is_some() {
                // upstream send_protected_args (-vv): what goes to stdin.
                if o.debug_level("CMD") >= 1 {
                    log.info(&connect::child_argv_line("protected args:", &rest));
                }
                let sent = conn
                    .writer
                    .write_all(&server_args::protected_args_bytes(&rest))
                    .and_then(|_| conn.writer.flush());
                if let Err(e) = sent {
                    let code = child_code(&mut conn).unwrap_or(RERR_STREAMIO);
                    return Err((fail(code, format!("rsync: sending arguments: {e}")), role));
                }
            }
            let p = match connect::exchange_versions(&mut conn, s.pre_proto, role) {
                Ok(p) => p,
                Err(e) => {
                    if e.code == RERR_TIMEOUT {
                        // A stalled far side is not waited for.
                        if let Some(c) = conn.child.as_mut() {
                            let _ = c.kill();
                        }
                    }
                    // Close its stdin first: a shell that waits for it to end
                    // must not wait for us while we wait for it.
                    drop(std::mem::replace(
                        &mut conn.writer,
                        Box::new(std::io::sink()),
                    ));
                    let code = child_code(&mut conn).unwrap_or(e.code);
                    return Err((fail(code.max(e.code), e.msg), role));
                }
            };
            (conn, p)
        }
        None => {
            let exe = std::env::current_exe()
                .map_err(|e| (fail(RERR_IPC, format!("rsync: current_exe: {e}")), client))?;
            let mut argv = vec![exe.to_string_lossy().into_owned()];
            argv.append(&mut sargs);
            argv.push(".".into());
            argv.extend(plan.remote_paths.iter().cloned());
            let mut conn =
                connect::spawn_local(&argv).map_err(|e| (fail(e.code, e.msg), client))?;
            let p = connect::exchange_versions(&mut conn, s.pre_proto, role)
                .map_err(|e| (fail(e.code, e.msg), role))?;
            (conn, p)
        }
    };
    let result = transfer(o, s, plan, log, &mut conn, proto, shared);
    // The far side's last word wins over what our side saw of the breakage.
    // Our side is done: close our end, then collect the far side's status.
    let Conn3 { mut code, summary } = match result {
        Ok(r) => r,
        Err(f) => {
            // Upstream exit_cleanup: a far side that has already exited adds
            // its exit status; one still running (or killed) does not.
            let mut child = 0;
            let mut end_child = None;
            if let Some(c) = conn.child.as_mut() {
                match c.try_wait() {
                    Ok(Some(st)) => child = st.code().unwrap_or(0),
                    // Still running: upstream's exit_cleanup ends its
                    // children with SIGUSR1 (kill_all) when it fails.
                    Ok(None) if f.code != 0 => {
                        end_child = i32::try_from(c.id()).ok().map(|p| (p, conn.hold.take()));
                    }
                    _ => {}
                }
            }
            drop(std::mem::replace(
                &mut conn.writer,
                Box::new(std::io::sink()),
            ));
            let mut f = f;
            f.end_child = end_child;
            f.code = f.code.max(child);
            let who = f.who.unwrap_or(role);
            return Err((f, who));
        }
    };
    drop(std::mem::replace(
        &mut conn.writer,
        Box::new(std::io::sink()),
    ));
    let child = child_code(&mut conn).unwrap_or(0);
    code = code.max(child);
    if log.got_xfer_error() && code == 0 {
        code = RERR_PARTIAL;
    }
    // A pull that got files has forked, upstream: the run ends in the
    // generator (the parent), which names itself in the exit line.
    let role = match &summary {
        Some(sm) if !s.am_sender && sm.num_files.total > 0 => "generator",
        _ => role,
    };
    Ok((
        Finished {
            code,
            summary,
            proto,
        },
        role,
    ))
}

/// `-vv` (debug CMD): the remote shell's command line, as upstream's
/// piped_child shows it.
fn show_command(o: &Options, log: &ClientLog, argv: &[String]) {
    if o.debug_level("CMD") >= 1 {
        log.info(&connect::child_argv_line("opening connection using:", argv));
    }
}

/// The local `--files-from` source (`-` is stdin); failing to open it is
/// an option error, as upstream reports it while parsing options.
fn read_files_from(ff: &str) -> Result<Vec<u8>, Fail> {
    if ff == "-" {
        let mut v = Vec::new();
        std::io::stdin()
            .read_to_end(&mut v)
            .map_err(|e| fail(RERR_FILEIO, format!("rsync: {e}")))?;
        return Ok(v);
    }
    std::fs::read(ff).map_err(|e| {
        fail(
            RERR_SYNTAX,
            format!(
                "rsync: failed to open files-from file {ff}: {}",
                crate::fs::strerror(&e)
            ),
        )
    })
}

/// The remote shell's (or local server's) exit status, as rsync maps it.
fn child_code(conn: &mut connect::Conn) -> Option<i32> {
    // Our end of its input closes first, or it would wait for more.
    conn.hold = None;
    let mut child = conn.child.take()?;
    let st = child.wait().ok()?;
    use std::os::unix::process::ExitStatusExt;
    if let Some(c) = st.code() {
        return Some(c);
    }
    // upstream wait_process_with_flush: a core dump is RERR_CRASHED, a signal RERR_TERMINATED.
    Some(if st.core_dumped() { 15 } else { 16 })
}

/// What a finished transfer leaves for the summary.
struct Conn3 {
    code: i32,
    summary: Option<summary::Summary>,
}

use connect::Conn;

/// Messages from the server during the transfer: texts are shown at once,
/// deletions are logged, the rest goes to the role.
fn message_handler(
    log: Arc<ClientLog>,
    io_error: Arc<AtomicI32>,
) -> crate::protocol::mux::MsgHandler {
    Box::new(move |m: Message| -> Option<Message> {
        match m.code {
            MsgCode::Info
            | MsgCode::Client
            | MsgCode::Error
            | MsgCode::ErrorXfer
            | MsgCode::Warning
            | MsgCode::ErrorSocket
            | MsgCode::ErrorUtf8 => {
                log.text(m.code, &m.payload);
                None
            }
            MsgCode::Log => None,
            MsgCode::Deleted => {
                let mut name = m.payload;
                let is_dir = name.last() == Some(&0);
                if is_dir {
                    name.pop();
                }
                let mode = if is_dir {
                    crate::protocol::flist::mode::S_IFDIR
                } else {
                    crate::protocol::flist::mode::S_IFREG
                };
                log.log_delete(&name, mode);
                None
            }
            MsgCode::IoError => {
                if m.payload.len() >= 4 {
                    let v = i32::from_le_bytes([
                        m.payload[0],
                        m.payload[1],
                        m.payload[2],
                        m.payload[3],
                    ]);
                    io_error.fetch_or(v, Ordering::Relaxed);
                }
                None
            }
            _ => Some(m),
        }
    })
}

/// A role's failure as the client reports it; `received` is what came in so far.
fn role_fail_at(e: RoleError, received: Option<u64>, role: &str) -> Fail {
    let code = e.exit_code();
    if let (RoleError::Proto(p), Some(n)) = (&e, received) {
        if p.is_eof() {
            return fail(
                code,
                format!(
                    "rsync: connection unexpectedly closed ({n} bytes received so far) [{role}]"
                ),
            );
        }
    }
    match &e {
        RoleError::PeerExit(_) | RoleError::Proto(crate::protocol::ProtoError::PeerExit(_)) => {
            Fail {
                code,
                msg: None,
                silent: true,
                who: None,
                end_child: None,
            }
        }
        RoleError::Proto(p) if p.is_eof() => fail(
            code,
            "rsync: connection unexpectedly closed [client]".to_string(),
        ),
        // upstream check_timeout: "[Receiver] io timeout after N seconds -- exiting"
        RoleError::Proto(crate::protocol::ProtoError::Io(io)) if code == RERR_TIMEOUT => {
            fail(code, format!("[{role}] {io}"))
        }
        RoleError::Proto(_) => fail(code, format!("rsync: {e}")),
        // (DestIo too: the client's exit line has always said "receiver".)
        RoleError::FileIo(_) | RoleError::DestIo(_) => Fail {
            who: Some("receiver"),
            ..fail(code, e.to_string())
        },
        _ => fail(code, e.to_string()),
    }
}

/// A role's failure; when the far side announced its exit, answer with our
/// MSG_ERROR_EXIT as stock does (protocol 31) so it can close cleanly.
fn ack_exit<W: Write>(
    e: RoleError,
    out: &mut MuxWriter<W>,
    proto: u8,
    am_sender: bool,
    received: u64,
) -> Fail {
    let role = if am_sender { "sender" } else { "receiver" };
    let f = role_fail_at(e, Some(received), role);
    if f.silent && proto >= 31 {
        let payload = if am_sender {
            Vec::new()
        } else {
            f.code.to_le_bytes().to_vec()
        };
        let _ = out.send_msg(MsgCode::ErrorExit, &payload);
        let _ = out.flush();
    }
    f
}

/// client_run: protocol setup, then our role.
fn transfer(
    o: &Options,
    s: &Settings,
    plan: &Plan,
    log: &Arc<ClientLog>,
    conn: &mut Conn,
    proto: u8,
    shared: Option<Arc<crate::role::server::ListCache>>,
) -> Result<Conn3, Fail> {
    let rc = Arc::new(AtomicU64::new(0));
    let wc = Arc::new(AtomicU64::new(0));
    let reader = std::mem::replace(&mut conn.reader, Box::new(std::io::empty()));
    let writer = std::mem::replace(&mut conn.writer, Box::new(std::io::sink()));
    let mut r = Counting::new(reader, rc.clone());
    let limit = o.bwlimit.as_deref().and_then(bwlimit_kib).unwrap_or(0);
    let mut w = Counting::new(
        crate::role::bwlimit::BwLimit::new(writer, limit),
        wc.clone(),
    );
    // (upstream who_am_i before the fork: "sender" or "Receiver")
    let who = if s.am_sender { "sender" } else { "Receiver" };
    if let Some(t) = o.stop_at {
        crate::interrupt::stop_at(t, s.am_sender, rc.clone());
    }
    // upstream setup_protocol checks these right after the versions are
    // known, before the rest of the setup (a stock server stops there too).
    if let Some(why) = checks::needs_protocol_29(o, proto) {
        return Err(fail(RERR_PROTOCOL, why));
    }
    // -X has no wire form below 30, except between the halves of a local
    // copy (upstream's local_server).
    if o.xattrs > 0 && proto < 30 && !s.local_server {
        return Err(fail(
            RERR_PROTOCOL,
            format!("--xattrs requires protocol 30 or higher (negotiated {proto})."),
        ));
    }
    let n = crate::role::setup::client_setup(&mut r, &mut w, proto, o)
        .map_err(|e| role_fail_at(e, None, who))?;
    let inc = n.compat & crate::protocol::handshake::cf::INC_RECURSE != 0;
    // upstream setup_protocol: from 30 the compat flags tell a sender; at
    // 29 only a receiver knows it can; below 29 nobody does.
    log.set_receiver_symlink_times(match proto {
        30.. => !s.am_sender || n.compat & crate::protocol::handshake::cf::SYMLINK_TIMES != 0,
        29 => !s.am_sender,
        _ => false,
    });
    let io_error = Arc::new(AtomicI32::new(0));
    let mut demux: Demux<Box<dyn Read + Send>> = Demux::new(Box::new(r));
    demux.set_mux(true);
    demux.set_handler(message_handler(log.clone(), io_error.clone()));
    let mut out = MuxWriter::new(w);
    // upstream: a receiver multiplexes what it sends from 30 on, or when its
    // generator has messages for the sender (--remove-source-files).
    if proto >= 30 || (!s.am_sender && o.remove_source_files) {
        out.start_mux()
            .map_err(|e| fail(RERR_SOCKETIO, format!("rsync: {e}")))?;
    }
    // The options as this run uses them.
    let mut ro = o.clone();
    ro.recursive = s.recursive;
    ro.relative = s.relative;
    ro.no_implied_dirs = !s.implied_dirs;
    ro.dirs = s.xfer_dirs > 0;
    ro.list_only = s.list_only > 0;
    ro.whole_file = Some(s.whole_file);
    if s.delete && ro.delete_when.is_none() {
        ro.delete_when = Some(if proto >= 30 {
            "delete-during"
        } else {
            "delete-before"
        });
    }
    ro.delete = s.delete;
    let mut filters = s.filters.clone();
    let x = crate::filter::XferOptions {
        protocol: proto as u32,
        am_sender: s.am_sender,
        delete_mode: s.delete,
        delete_excluded: o.delete_excluded,
        prune_empty_dirs: o.prune_empty_dirs,
        cvs_exclude: o.cvs_exclude,
    };
    let wire = crate::filter::wire::send_filter_list(&mut filters, &x).map_err(|e| match e {
        // upstream send_rules says it bare (rprintf, no "rsync: ").
        crate::filter::FilterError::TooModern => fail(e.exit_code(), e.to_string()),
        _ => fail(e.exit_code(), format!("rsync: {e}")),
    })?;
    if let Some(bytes) = wire {
        out.write_all(&bytes)
            .map_err(|e| fail(RERR_SOCKETIO, format!("rsync: {e}")))?;
    }
    let env = ServerEnv {
        log: o
            .log_file
            .is_some()
            .then_some(crate::daemon::log::bytes as fn(&[u8])),
        outgoing_chmod: s.chmod.clone().filter(|_| s.am_sender),
        received_chmod: s.chmod.clone().filter(|_| !s.am_sender),
        munge_symlinks: o.munge_links(),
        ..Default::default()
    };
    let mut input = None;
    let (rbase, wbase) = (rc.load(Ordering::Relaxed), wc.load(Ordering::Relaxed));
    let flist_verbose = s.out.flist >= 1 && !o.quiet;
    if s.am_sender {
        if flist_verbose && inc {
            log.info("sending incremental file list");
        } else if flist_verbose && s.xfer_dirs > 0 {
            log.start_filelist_progress("building file list");
        }
        let mut srcs: Vec<Vec<u8>> = plan.local.iter().map(|a| a.as_bytes().to_vec()).collect();
        if let Some(data) = &s.files_from_data {
            let base = srcs.first().cloned().unwrap_or_else(|| b".".to_vec());
            srcs = files_from_names(data, o.from0)
                .into_iter()
                .map(|n| join_base(&base, &n))
                .collect();
        } else if s.files_from_remote {
            // --files-from=HOST:FILE: the server reads the list and sends
            // the names once it has our rules (raw below protocol 31); each
            // is taken inside the first source (upstream send_file_list's
            // sanitize_path of every name read).
            out.flush()
                .map_err(|e| fail(RERR_SOCKETIO, format!("rsync: {e}")))?;
            if proto < 31 {
                demux.set_mux(false);
            }
            let names = crate::role::server::read_files_from(&mut demux)
                .map_err(|e| role_fail_at(e, None, who))?;
            demux.set_mux(true);
            let base = srcs.first().cloned().unwrap_or_else(|| b".".to_vec());
            srcs = names
                .iter()
                .map(|n| crate::daemon::paths::sanitize(n))
                .filter(|n| !n.is_empty())
                .map(|n| join_base(&base, &n))
                .collect();
        }
        let job = crate::role::server::SendJob {
            args: srcs,
            root: std::path::PathBuf::from("."),
            confine: None,
            client_rules: filters,
            local: Some(log.clone()),
            shared,
        };
        let (code, st) = crate::role::server::send_files(
            n,
            &ro,
            &env,
            job,
            &mut demux,
            &mut input,
            &mut out,
            (rc.clone(), rbase),
            (wc.clone(), wbase),
        )
        .map_err(|e| ack_exit(e, &mut out, proto, true, rc.load(Ordering::Relaxed)))?;
        let _ = out.flush();
        // Counted from the end of the protocol setup, as upstream counts
        // only what passes its buffered I/O (the version, compat flags,
        // checksum lists and seed are read and written before it starts).
        let total_read = rc.load(Ordering::Relaxed).saturating_sub(rbase) as i64;
        let total_written = wc.load(Ordering::Relaxed).saturating_sub(wbase) as i64;
        let code = code.max(io_code(io_error.load(Ordering::Relaxed)));
        let sm = summary::Summary {
            total_written,
            total_read,
            total_size: st.total_size,
            total_transferred_size: st.total_transferred_size,
            literal_data: st.literal_data as i64,
            matched_data: st.matched_data as i64,
            flist_size: st.flist_size,
            flist_buildtime: st.flist_buildtime,
            flist_xfertime: st.flist_xfertime,
            xferred_files: st.xferred_files,
            num_files: st.num_files,
            created: st.created,
            deleted: st
                .deleted
                .map(crate::role::stats::TypeCounts::from_del_stats)
                .unwrap_or_default(),
            seconds: 0,
            dry_run: o.dry_run,
        };
        return Ok(Conn3 {
            code,
            summary: Some(sm),
        });
    }
    // A pull: forward --files-from names, then receive.
    if let Some(data) = &s.files_from_data {
        let mut b = Vec::new();
        for nm in files_from_names(data, o.from0) {
            b.extend_from_slice(&nm);
            b.push(0);
        }
        b.push(0);
        let r = if proto < 31 {
            out.flush().and_then(|_| {
                let w = out.get_mut();
                w.write_all(&b)?;
                w.flush()
            })
        } else {
            out.write_all(&b).and_then(|_| out.flush())
        };
        r.map_err(|e| fail(RERR_SOCKETIO, format!("rsync: {e}")))?;
    }
    let _ = out.flush();
    if flist_verbose && inc {
        log.info("receiving incremental file list");
    } else if flist_verbose && s.xfer_dirs > 0 {
        log.start_filelist_progress("receiving file list");
    }
    let dest = plan.local.first().cloned().unwrap_or_else(|| ".".into());
    let (code, st) = crate::role::server::receive_files(
        n,
        &ro,
        &env,
        dest.as_bytes(),
        filters,
        &mut demux,
        &mut input,
        &mut out,
        Some(log.clone()),
    )
    .map_err(|e| ack_exit(e, &mut out, proto, false, rc.load(Ordering::Relaxed)))?;
    let _ = out.flush();
    let peer = st.peer.unwrap_or_default();
    let code = code.max(io_code(io_error.load(Ordering::Relaxed)));
    let sm = summary::Summary {
        total_written: peer[0],
        total_read: peer[1],
        total_size: peer[2],
        total_transferred_size: st.total_transferred_size,
        literal_data: st.literal_data as i64,
        matched_data: st.matched_data as i64,
        flist_size: st.flist_size,
        flist_buildtime: peer[3],
        flist_xfertime: peer[4],
        xferred_files: st.xferred_files,
        num_files: st.num_files,
        created: st.created,
        deleted: st
            .deleted
            .map(crate::role::stats::TypeCounts::from_del_stats)
            .unwrap_or_default(),
        seconds: 0,
        dry_run: o.dry_run,
    };
    Ok(Conn3 {
        code,
        summary: Some(sm),
    })
}

/// The exit code for an io_error the peer reported.
fn io_code(io: i32) -> i32 {
    if io & crate::flist::build::IOERR_GENERAL != 0 {
        RERR_PARTIAL
    } else if io & crate::flist::build::IOERR_VANISHED != 0 {
        RERR_VANISHED
    } else {
        0
    }
}

/// The names of a `--files-from` file: one per line (or NUL-terminated with
/// `--from0`), empty lines and `#`/`;` comment lines skipped unless `--from0`.
pub fn files_from_names(data: &[u8], from0: bool) -> Vec<Vec<u8>> {
    let sep = |c: &u8| {
        if from0 {
            *c == 0
        } else {
            *c == b'\n' || *c == b'\r' || *c == 0
        }
    };
    data.split(sep)
        .filter(|l| !l.is_empty())
        .filter(|l| from0 || !(l.starts_with(b"#") || l.starts_with(b";")))
        .map(<[u8]>::to_vec)
        .collect()
}

/// A files-from name under the source directory, keeping the `/./` anchor
/// so `-R` sends the name as given.
fn join_base(base: &[u8], name: &[u8]) -> Vec<u8> {
    let name = name.strip_prefix(b"/").unwrap_or(name);
    let mut v = base.to_vec();
    while v.ends_with(b"/") && v.len() > 1 {
        v.pop();
    }
    v.extend_from_slice(b"/./");
    v.extend_from_slice(name);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_from_parsing() {
        assert_eq!(
            files_from_names(b"a\n#c\n\nb\r\n", false),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(
            files_from_names(b"a\0#c\0", true),
            vec![b"a".to_vec(), b"#c".to_vec()]
        );
        assert_eq!(join_base(b"src/", b"x/y"), b"src/./x/y");
    }
}
