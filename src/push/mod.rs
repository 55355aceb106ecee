//! `rrsync push [OPTIONS] SRC TARGET...`: one source to many targets (issue
//! 6). Every target is an rsync endpoint (daemon, remote shell, local dir),
//! stock or rrsync. The source is scanned once per list shape and shared
//! (`role::server::ListCache`); the targets run concurrently (`--jobs`),
//! each with its own connection and delta; a failed target is retried with
//! backoff (`--retries`) while the others go on; a per-target summary ends
//! the run, and the exit code is 0 only when every target is in sync.
//! `--watch` (`watch`) keeps pushing changes after the first run.

pub mod config;
pub mod live;
pub mod watch;

use crate::cli::options::{self, Options};
use crate::client::{self, Fail, Finished};
use crate::exit::*;
use crate::role::log::ClientLog;
use crate::role::server::ListCache;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The push's own options (the rest are rsync's).
#[derive(Debug, Clone)]
pub struct PushOpts {
    /// Targets pushed to at once (0: all).
    pub jobs: usize,
    /// Retries of a failed target.
    pub retries: u32,
    /// First retry delay; doubles each time (capped at 30 s).
    pub backoff: Duration,
    /// Keep watching the source after the first push.
    pub watch: bool,
    /// `--delay=MS`: a fixed window to gather changes before a watch push.
    pub delay: Duration,
    /// `--full-every=SECS`: a full re-sync this often in watch mode.
    pub full_every: Option<Duration>,
    /// `--status=FILE`: per-target state written here after every push.
    pub status: Option<String>,
    /// `--config=FILE`: the jobs to run (see `config`).
    pub config: Option<String>,
}

impl Default for PushOpts {
    fn default() -> Self {
        PushOpts {
            jobs: 0,
            retries: 3,
            backoff: Duration::from_secs(1),
            watch: false,
            delay: Duration::ZERO,
            full_every: None,
            status: None,
            config: None,
        }
    }
}

/// Take the push options out of `args`; what is left is rsync's.
pub fn split_args(args: &[String]) -> Result<(PushOpts, Vec<String>), String> {
    let mut p = PushOpts::default();
    let mut rest = Vec::new();
    let mut i = 0;
    let num = |name: &str, v: &str| -> Result<u64, String> {
        v.parse::<u64>()
            .map_err(|_| format!("--{name}: invalid number \"{v}\""))
    };
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            rest.extend(args[i - 1..].iter().cloned());
            break;
        }
        let (name, val) = match a.strip_prefix("--").and_then(|x| x.split_once('=')) {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (a.trim_start_matches("--").to_string(), None),
        };
        let takes = matches!(
            name.as_str(),
            "jobs" | "retries" | "delay" | "full-every" | "status" | "retry-delay" | "config"
        );
        if !a.starts_with("--") || !(takes || name == "watch") {
            rest.push(a.clone());
            continue;
        }
        if name == "watch" {
            p.watch = true;
            continue;
        }
        let v = match val {
            Some(v) => v,
            None => {
                let Some(v) = args.get(i) else {
                    return Err(format!("--{name}: missing argument"));
                };
                i += 1;
                v.clone()
            }
        };
        match name.as_str() {
            "jobs" => p.jobs = num(&name, &v)? as usize,
            "retries" => p.retries = num(&name, &v)?.min(1000) as u32,
            "retry-delay" => p.backoff = Duration::from_millis(num(&name, &v)?),
            "delay" => p.delay = Duration::from_millis(num(&name, &v)?),
            "full-every" => p.full_every = Some(Duration::from_secs(num(&name, &v)?.max(1))),
            "status" => p.status = Some(v),
            "config" => p.config = Some(v),
            _ => {}
        }
    }
    Ok((p, rest))
}

/// How one target's run went.
#[derive(Debug, Clone)]
pub struct TargetResult {
    /// The target as given.
    pub target: String,
    /// Exit code of the last attempt.
    pub code: i32,
    /// Attempts made.
    pub attempts: u32,
    /// Files whose data went out.
    pub files: u64,
    /// Bytes sent.
    pub bytes: i64,
    /// Time spent, all attempts included.
    pub elapsed: Duration,
    /// The last error's message, if it failed.
    pub error: Option<String>,
}

/// `rrsync push`: returns the exit code.
pub fn run(args: Vec<String>) -> i32 {
    let (popts, rest) = match split_args(&args) {
        Ok(v) => v,
        Err(e) => return usage(&e),
    };
    if let Some(path) = popts.config.clone() {
        return run_config(&path, &rest);
    }
    let (opts, paths) = match options::parse(&rest) {
        Ok(v) => v,
        Err(e) => return usage(&e.to_string()),
    };
    if paths.len() < 2 {
        return usage("push needs a source and at least one target");
    }
    let src = paths[0].clone();
    let targets: Vec<String> = paths[1..].to_vec();
    if client::args::check_for_hostspec(&src).is_some() {
        return usage("the push source must be local");
    }
    let plan = Plan::new(opts, popts, src, targets);
    let results = plan.push_all(None);
    let code = report(&results);
    if plan.popts.watch {
        return watch::run(&plan, results);
    }
    code
}

/// `--config=FILE`: every job at once (each in its own thread); the exit
/// code is the worst of them.
fn run_config(path: &str, extra: &[String]) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return usage(&format!("{path}: {e}")),
    };
    let jobs = match config::parse(path, &text) {
        Ok(j) => j,
        Err(e) => return usage(&e),
    };
    let mut plans = Vec::new();
    for j in jobs {
        let mut args = j.options.clone();
        args.extend(extra.iter().cloned());
        let opts = match options::parse(&args) {
            Ok((o, rest)) if rest.is_empty() => o,
            Ok(_) => return usage(&format!("[{}]: options may not name paths", j.name)),
            Err(e) => return usage(&format!("[{}]: {e}", j.name)),
        };
        plans.push(Plan::new(opts, j.push.to_opts(), j.source, j.targets));
    }
    let codes: Vec<i32> = std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|p| {
                s.spawn(move || {
                    let results = p.push_all(None);
                    let code = report(&results);
                    if p.popts.watch {
                        watch::run(p, results)
                    } else {
                        code
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(RERR_PARTIAL))
            .collect()
    });
    codes.into_iter().max().unwrap_or(0)
}

fn usage(msg: &str) -> i32 {
    eprintln!("rrsync push: {msg}");
    eprintln!("usage: rrsync push [rsync options] [--jobs=N] [--retries=N] [--watch [--delay=MS] [--full-every=SECS]] SRC TARGET...");
    RERR_SYNTAX
}

/// What a push run needs: the options, the source, the targets.
pub struct Plan {
    /// rsync options (as for a client).
    pub opts: Options,
    /// Push options.
    pub popts: PushOpts,
    /// The source directory (or file).
    pub src: String,
    /// The targets as given.
    pub targets: Vec<String>,
}

impl Plan {
    /// A plan for these targets.
    pub fn new(opts: Options, popts: PushOpts, src: String, targets: Vec<String>) -> Self {
        Plan {
            opts,
            popts,
            src,
            targets,
        }
    }

    /// Push to every target (or only `only`, by index), concurrently, with
    /// retries; one scan of the source is shared by all.
    pub fn push_all(&self, only: Option<&[usize]>) -> Vec<TargetResult> {
        self.push_with(only, &self.opts, std::slice::from_ref(&self.src))
    }

    /// Push `sources` with options `o` to the targets (all, or `only`).
    pub fn push_with(
        &self,
        only: Option<&[usize]>,
        o: &Options,
        sources: &[String],
    ) -> Vec<TargetResult> {
        let cache = Arc::new(ListCache::default());
        let picked: Vec<usize> = match only {
            Some(v) => v.to_vec(),
            None => (0..self.targets.len()).collect(),
        };
        let jobs = match self.popts.jobs {
            0 => picked.len().max(1),
            n => n,
        };
        let queue = Mutex::new(picked.clone());
        let results: Mutex<Vec<(usize, TargetResult)>> = Mutex::new(Vec::new());
        let labelled = self.targets.len() > 1;
        // The combined live view: for a person at a terminal, when nothing
        // else prints per-file lines (and not in watch mode's batches).
        let lives: Vec<Arc<live::TargetLive>> = (0..self.targets.len())
            .map(|_| Arc::new(live::TargetLive::default()))
            .collect();
        let _view = (live::stdout_is_terminal()
            && !self.popts.watch
            && o.verbose == 0
            && o.itemize == 0
            && !o.progress)
            .then(|| {
                live::LiveView::start(
                    picked
                        .iter()
                        .map(|&i| (self.targets[i].clone(), lives[i].clone()))
                        .collect(),
                )
            });
        std::thread::scope(|s| {
            for _ in 0..jobs.min(picked.len()) {
                s.spawn(|| loop {
                    let next = match queue.lock() {
                        Ok(mut q) => q.pop(),
                        Err(p) => p.into_inner().pop(),
                    };
                    let Some(i) = next else {
                        return;
                    };
                    let r =
                        self.push_one(&self.targets[i], o, sources, &cache, labelled, &lives[i]);
                    match results.lock() {
                        Ok(mut v) => v.push((i, r)),
                        Err(p) => p.into_inner().push((i, r)),
                    }
                });
            }
        });
        let mut v = results.into_inner().unwrap_or_else(|p| p.into_inner());
        v.sort_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, r)| r).collect()
    }

    /// One target, retried with backoff until it succeeds or the retries run out.
    fn push_one(
        &self,
        target: &str,
        o: &Options,
        sources: &[String],
        cache: &Arc<ListCache>,
        labelled: bool,
        live: &Arc<live::TargetLive>,
    ) -> TargetResult {
        let started = Instant::now();
        let mut args: Vec<String> = sources.to_vec();
        args.push(target.to_string());
        let mut result = TargetResult {
            target: target.to_string(),
            code: 0,
            attempts: 0,
            files: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            error: None,
        };
        let (plan, mut settings) = match client::prepare(o, &args) {
            Ok(v) => v,
            Err(f) => {
                result.code = f.code;
                result.error = f.msg;
                return result;
            }
        };
        if !plan.am_sender {
            result.code = RERR_SYNTAX;
            result.error = Some("a push target must be a destination".into());
            return result;
        }
        // The list is shared whole, so no incremental recursion.
        settings.allow_inc_recurse = false;
        if labelled {
            settings.out.prefix = Some(format!("[{target}] "));
        }
        let mut delay = self.popts.backoff;
        loop {
            result.attempts += 1;
            live.attempt(result.attempts);
            let counter = live.clone();
            let log = Arc::new(
                ClientLog::new(settings.out.clone())
                    .with_file_hook(Arc::new(move |size| counter.file_sent(size))),
            );
            let r = client::run_planned(o, &plan, &settings, &log, Some(cache.clone()));
            match r {
                Ok((Finished { code, summary, .. }, _)) => {
                    result.code = code;
                    result.error =
                        (code != 0).then(|| format!("rsync error: {} (code {code})", text(code)));
                    if let Some(sm) = summary {
                        result.files = sm.xferred_files;
                        result.bytes = sm.total_written;
                    }
                }
                Err((Fail { code, msg, .. }, _)) => {
                    result.code = code;
                    result.error =
                        Some(msg.unwrap_or_else(|| {
                            format!("rsync error: {} (code {code})", text(code))
                        }));
                }
            }
            if result.code == 0 || result.attempts > self.popts.retries {
                live.set(if result.code == 0 {
                    live::State::Done
                } else {
                    live::State::Failed
                });
                break;
            }
            live.set(live::State::Retrying);
            tracing::warn!(
                target,
                attempt = result.attempts,
                code = result.code,
                "push failed, retrying in {delay:?}: {}",
                result.error.as_deref().unwrap_or("")
            );
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        result.elapsed = started.elapsed();
        result
    }
}

/// The per-target summary, and the exit code: 0 when all are in sync, else
/// the worst code.
pub fn report(results: &[TargetResult]) -> i32 {
    let width = results
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:<width$}  {:>7}  {:>14}  {:>8}  {:>8}  result",
        "target", "files", "bytes sent", "seconds", "attempts"
    );
    for r in results {
        println!(
            "{:<width$}  {:>7}  {:>14}  {:>8.2}  {:>8}  {}",
            r.target,
            r.files,
            crate::role::stats::big_num(r.bytes, 1),
            r.elapsed.as_secs_f64(),
            r.attempts,
            if r.code == 0 {
                "ok".to_string()
            } else {
                format!("FAILED (code {})", r.code)
            }
        );
    }
    let failed: Vec<&TargetResult> = results.iter().filter(|r| r.code != 0).collect();
    if failed.is_empty() {
        return 0;
    }
    for r in &failed {
        eprintln!(
            "rrsync push: {} failed: {}",
            r.target,
            r.error.as_deref().unwrap_or("")
        );
    }
    eprintln!(
        "rrsync push: {} of {} targets failed",
        failed.len(),
        results.len()
    );
    failed.iter().map(|r| r.code).max().unwrap_or(RERR_PARTIAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_options_are_split_from_rsync_ones() {
        let args: Vec<String> = [
            "-a",
            "--jobs=2",
            "--retries",
            "5",
            "--watch",
            "--delay=20",
            "--delete",
            "src/",
            "host::m/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (p, rest) = split_args(&args).unwrap();
        assert_eq!(p.jobs, 2);
        assert_eq!(p.retries, 5);
        assert!(p.watch);
        assert_eq!(p.delay, Duration::from_millis(20));
        assert_eq!(rest, ["-a", "--delete", "src/", "host::m/"]);
        assert!(split_args(&["--jobs".to_string()]).is_err());
        // --delay-updates stays an rsync option.
        let (_, rest) = split_args(&["--delay-updates".to_string()]).unwrap();
        assert_eq!(rest, ["--delay-updates"]);
    }
}
