//! The side-by-side runner for uploads: a stock client pushes the same local
//! source tree into a writable module of a stock daemon and of ours, then
//! the two module trees, exit codes, itemized output, `--stats` fields and
//! error lines are compared. Also: clients killed mid-push (by PID) and
//! waiting until a daemon's per-connection sessions have ended.
//!
//! Layout of a case's work directory (also the client's cwd, so relative
//! arguments like `src/` or `--files-from=list.txt` mean the same on both
//! sides):
//! * `src/`: the source tree (shared: both pushes read it);
//! * `prefill/`: the prefilled module tree, copied with `cp -a` into
//! * `stock/mod/` and `ours/mod/`: the two module paths.
//!
//! The two rsyncd.conf files differ only in the module's `path`.

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::bins;
use super::compare::{
    config_text, first_line_diff, stats_problems, stdout_problems, strip_location_and_tag,
    tree_problem, unix_now, Client, Pair, MODULE,
};
use super::daemon::Daemon;
use super::fixture::copy_tree;
use super::process::{client_timeout, run_cmd, truncate, Outcome};
use super::tmp::TempDir;
use super::tree::{self, SnapOptions, Tree};

/// How long a daemon may take to end its sessions after the client is gone.
pub const SESSION_END_TIMEOUT: Duration = Duration::from_secs(15);

/// Which daemon of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Stock,
    Ours,
}

impl Which {
    /// Both, stock first.
    pub const BOTH: [Which; 2] = [Which::Stock, Which::Ours];

    /// "stock" / "ours": also the side's directory name under the work dir.
    pub fn label(self) -> &'static str {
        match self {
            Which::Stock => "stock",
            Which::Ours => "ours",
        }
    }
}

/// How one push is run and judged.
#[derive(Debug, Clone)]
pub struct PushSpec {
    pub client: Client,
    /// Client options; `{work}` and `{src}` are replaced by those paths.
    pub args: Vec<String>,
    /// Source arguments, relative to the work dir (the client's cwd);
    /// default `src/`.
    pub sources: Vec<String>,
    /// Remote part after `rsync://127.0.0.1:PORT/` (default `mod/`).
    pub remote: String,
    /// Leave the module root's own attributes out of the comparison.
    pub ignore_root: bool,
    /// Compare normalised stdout (itemize lines).
    pub compare_stdout: bool,
    /// ... in sorted order (the daemon's messages and the client's own
    /// lines interleave as they arrive, in stock too).
    pub sorted_stdout: bool,
    /// Compare the error lines of stderr (see [`push_error_lines`]).
    pub compare_errors: bool,
    /// Exit code stock must give; checks that the case tests what it says.
    pub expect_stock_code: Option<i32>,
}

impl Default for PushSpec {
    fn default() -> Self {
        PushSpec {
            client: Client::Stock,
            args: Vec::new(),
            sources: vec!["src/".into()],
            remote: format!("{MODULE}/"),
            ignore_root: false,
            compare_stdout: true,
            sorted_stdout: false,
            compare_errors: true,
            expect_stock_code: Some(0),
        }
    }
}

impl PushSpec {
    /// A default spec with these client options.
    pub fn with_args<S: AsRef<str>>(args: &[S]) -> PushSpec {
        PushSpec {
            args: args.iter().map(|s| s.as_ref().to_string()).collect(),
            ..PushSpec::default()
        }
    }
}

type Builder = Box<dyn Fn(&Path)>;
type Prefill = Box<dyn Fn(&Path, &Path)>;

/// A push case: module config, source fixture, optional module prefill,
/// and the first push.
pub struct PushCase {
    pub name: String,
    pub global_lines: Vec<String>,
    /// Whether the module gets `read only = no` before `module_lines`.
    pub writable: bool,
    pub module_lines: Vec<String>,
    /// Extra config text after the main module (`{work}`, `{src}` and
    /// `{module}` substituted; `{module}` is the side's module path).
    pub extra_config: String,
    pub source: Builder,
    /// Called once as `prefill(dir, src)`; `dir` (created if the function
    /// does not) is then copied with `cp -a` to both module paths.
    pub prefill: Option<Prefill>,
    pub spec: PushSpec,
}

impl PushCase {
    /// A case named `name` pushing the tree `source` builds.
    pub fn new(name: &str, source: impl Fn(&Path) + 'static) -> PushCase {
        PushCase {
            name: name.to_string(),
            global_lines: Vec::new(),
            writable: true,
            module_lines: Vec::new(),
            extra_config: String::new(),
            source: Box::new(source),
            prefill: None,
            spec: PushSpec::default(),
        }
    }
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.spec.args = args.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }
    pub fn sources<S: AsRef<str>>(mut self, sources: &[S]) -> Self {
        self.spec.sources = sources.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }
    pub fn remote(mut self, r: &str) -> Self {
        self.spec.remote = r.to_string();
        self
    }
    pub fn client(mut self, c: Client) -> Self {
        self.spec.client = c;
        self
    }
    pub fn module_line(mut self, l: &str) -> Self {
        self.module_lines.push(l.to_string());
        self
    }
    #[allow(dead_code)] // parity with PullCase
    pub fn global_line(mut self, l: &str) -> Self {
        self.global_lines.push(l.to_string());
        self
    }
    #[allow(dead_code)] // parity with PullCase
    pub fn extra_config(mut self, text: &str) -> Self {
        self.extra_config.push_str(text);
        self
    }
    /// Leaves out `read only = no` (the module is then read-only unless
    /// `module_lines` say otherwise).
    pub fn not_writable(mut self) -> Self {
        self.writable = false;
        self
    }
    pub fn prefill(mut self, f: impl Fn(&Path, &Path) + 'static) -> Self {
        self.prefill = Some(Box::new(f));
        self
    }
    pub fn ignore_root(mut self) -> Self {
        self.spec.ignore_root = true;
        self
    }
    pub fn expect_stock_code(mut self, code: Option<i32>) -> Self {
        self.spec.expect_stock_code = code;
        self
    }
    /// Compare stdout as sorted lines (see [`PushSpec::sorted_stdout`]).
    pub fn sorted_stdout(mut self) -> Self {
        self.spec.sorted_stdout = true;
        self
    }
    /// Serves the case and runs its push; see [`PushServers::push`].
    pub fn run(self) -> PushRun {
        let servers = self.serve();
        let (stock, ours) = servers.push(&self.spec);
        PushRun {
            stock,
            ours,
            servers,
        }
    }
    /// Builds the source and the module trees and starts both daemons,
    /// without pushing.
    pub fn serve(&self) -> PushServers {
        let work = TempDir::new(&self.name);
        let src = work.join("src");
        (self.source)(&src);
        let prefill = work.join("prefill");
        if let Some(f) = &self.prefill {
            f(&prefill, &src);
        }
        std::fs::create_dir_all(&prefill).expect("prefill dir");
        let mut configs = Vec::new();
        for side in Which::BOTH {
            let dir = work.join(side.label());
            std::fs::create_dir_all(&dir).expect("side dir");
            let module = dir.join(MODULE);
            copy_tree(&prefill, &module);
            let sub = |s: &str| {
                s.replace("{work}", &work.path().display().to_string())
                    .replace("{src}", &src.display().to_string())
                    .replace("{module}", &module.display().to_string())
            };
            let mut module_lines = Vec::new();
            if self.writable {
                module_lines.push("read only = no".to_string());
            }
            module_lines.extend(self.module_lines.iter().map(|l| sub(l)));
            let globals: Vec<String> = self.global_lines.iter().map(|l| sub(l)).collect();
            configs.push(config_text(
                &module,
                &globals,
                &module_lines,
                &sub(&self.extra_config),
            ));
        }
        let stock = Daemon::start(&bins::stock(), &configs[0], "stock");
        let ours = Daemon::start(&bins::ours(), &configs[1], "ours");
        PushServers {
            name: self.name.clone(),
            pair: Pair {
                stock,
                ours,
                config: configs[0].clone(),
            },
            src,
            work,
        }
    }
}

/// One side's result.
#[derive(Debug)]
pub struct PushSide {
    pub outcome: Outcome,
    /// The side's module path.
    pub module: PathBuf,
}

/// A source tree, two module trees, and the two daemons serving them.
#[derive(Debug)]
pub struct PushServers {
    pub name: String,
    /// `pair.config` is stock's config (ours differs only in `path`).
    pub pair: Pair,
    /// The source tree; edit it between pushes.
    pub src: PathBuf,
    /// Holds `src/`, `prefill/`, `stock/mod/`, `ours/mod/`.
    pub work: TempDir,
}

impl PushServers {
    /// The daemon of `side`.
    pub fn daemon(&self, side: Which) -> &Daemon {
        match side {
            Which::Stock => &self.pair.stock,
            Which::Ours => &self.pair.ours,
        }
    }

    /// The module path of `side`.
    pub fn module(&self, side: Which) -> PathBuf {
        self.work.join(side.label()).join(MODULE)
    }

    /// The tree both modules were prefilled with (empty without prefill).
    pub fn prefilled(&self) -> PathBuf {
        self.work.join("prefill")
    }

    /// The client command line of `spec` against `side`'s daemon.
    pub fn client_args(&self, side: Which, spec: &PushSpec) -> Vec<String> {
        let sub = |s: &str| {
            s.replace("{work}", &self.work.path().display().to_string())
                .replace("{src}", &self.src.display().to_string())
        };
        let mut args: Vec<String> = spec.args.iter().map(|a| sub(a)).collect();
        args.extend(spec.sources.iter().map(|a| sub(a)));
        args.push(self.daemon(side).url(&spec.remote));
        args
    }

    /// Runs `spec` against one side (no comparison).
    pub fn push_one(&self, side: Which, spec: &PushSpec) -> PushSide {
        let args = self.client_args(side, spec);
        let outcome = run_cmd(
            &spec.client.path(),
            &args,
            Some(self.work.path()),
            client_timeout(),
        );
        let dir = self.work.join(side.label());
        let _ = std::fs::write(dir.join("client.stdout"), &outcome.stdout);
        let _ = std::fs::write(dir.join("client.stderr"), &outcome.stderr);
        PushSide {
            outcome,
            module: self.module(side),
        }
    }

    /// Runs `spec` against both daemons (stock first), waits until both
    /// daemons' sessions have ended, and asserts that they agree: exit
    /// code, module tree, normalised stdout, `--stats` fields, error lines.
    /// Returns (stock, ours).
    pub fn push(&self, spec: &PushSpec) -> (PushSide, PushSide) {
        let started = unix_now();
        let stock = self.push_one(Which::Stock, spec);
        let ours = self.push_one(Which::Ours, spec);
        // The client may exit before the receiving side has finished
        // (e.g. on errors): let the sessions end before looking.
        for side in Which::BOTH {
            if let Err(e) = wait_sessions_end(self.daemon(side), SESSION_END_TIMEOUT) {
                panic!("case {}: {e}\n{}", self.name, self.daemon(side).logs());
            }
        }
        check_push(self, spec, &stock, &ours, started);
        (stock, ours)
    }

    /// Starts `spec` against one side without waiting (for kill tests);
    /// output goes to files beside the module.
    pub fn spawn_push(&self, side: Which, spec: &PushSpec) -> RunningClient {
        let args = self.client_args(side, spec);
        RunningClient::spawn(
            &spec.client.path(),
            &args,
            self.work.path(),
            &self.work.join(side.label()),
        )
    }

    /// Runs the same pull (`client args URL/remote <side>/pulled/`) against
    /// both daemons and asserts equal exit codes and error lines; returns
    /// (stock, ours).
    pub fn pull_both(&self, args: &[&str], remote: &str) -> (Outcome, Outcome) {
        let run = |side: Which| {
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            a.push(self.daemon(side).url(remote));
            a.push(format!("{}/pulled/", side.label()));
            run_cmd(&bins::stock(), &a, Some(self.work.path()), client_timeout())
        };
        let s = run(Which::Stock);
        let o = run(Which::Ours);
        let mut problems = Vec::new();
        if s.code != o.code {
            problems.push(format!("exit code: stock {} vs ours {}", s.code, o.code));
        }
        let se = push_error_lines(&s.stderr, &[]);
        let oe = push_error_lines(&o.stderr, &[]);
        if se != oe {
            problems.push(format!("error lines differ: {}", first_line_diff(&se, &oe)));
        }
        assert!(
            problems.is_empty(),
            "case {}: pull {args:?} {remote}: {} disagrees with stock\n{}\n=== stock ===\n{}\n=== ours ===\n{}",
            self.name,
            bins::ours_label(),
            problems.join("\n"),
            s.describe(),
            o.describe()
        );
        (s, o)
    }
}

/// A finished case; keeps daemons and trees for follow-up pushes.
#[derive(Debug)]
#[allow(dead_code)] // `stock`/`ours` are for cases that inspect the first push
pub struct PushRun {
    pub stock: PushSide,
    pub ours: PushSide,
    pub servers: PushServers,
}

impl PushRun {
    /// The source tree (edit it, then [`PushRun::push_again`]).
    pub fn src(&self) -> &Path {
        &self.servers.src
    }
    /// Pushes again into the same module trees and compares; returns
    /// (stock, ours).
    pub fn push_again(&self, spec: &PushSpec) -> (PushSide, PushSide) {
        self.servers.push(spec)
    }
}

/// Error lines of a client's stderr, normalised and sorted.
///
/// Kept: every line except socket noise whose presence depends on timing
/// (`connection unexpectedly closed`, `read error`, `write error`, broken
/// pipes, resets). Normalised: source locations and version tags removed
/// (see [`strip_location_and_tag`]), and each `(path, placeholder)` of
/// `paths` replaced. Sorted: messages from the daemon arrive multiplexed in
/// the data stream while the client writes its own directly, so their
/// relative order is a race even between two stock runs; which messages
/// appear is compared.
pub fn push_error_lines(stderr: &str, paths: &[(&Path, &str)]) -> Vec<String> {
    let mut out: Vec<String> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            !(l.contains("connection unexpectedly closed")
                || l.contains("read error")
                || l.contains("write error")
                || l.contains("Broken pipe")
                || l.contains("Connection reset"))
        })
        .map(|l| {
            let mut l = strip_location_and_tag(l);
            for (p, name) in paths {
                l = l.replace(&p.display().to_string(), name);
            }
            l
        })
        .collect();
    out.sort();
    out
}

/// Compares two sides of the same push; panics listing every disagreement.
/// `started` (Unix seconds) is when the runs began: mtimes from then on
/// are "fresh" (set by the run, not preserved) and compare equal.
pub fn check_push(
    servers: &PushServers,
    spec: &PushSpec,
    stock: &PushSide,
    ours: &PushSide,
    started: i64,
) {
    let name = &servers.name;
    if let Some(want) = spec.expect_stock_code {
        assert_eq!(
            stock.outcome.code,
            want,
            "case {name}: STOCK did not behave as the case expects (harness/case bug):\n{}\n--- stock daemon log ---\n{}",
            stock.outcome.describe(),
            servers.pair.stock.logs()
        );
    }
    let mut problems = Vec::new();
    if stock.outcome.code != ours.outcome.code {
        problems.push(format!(
            "exit code: stock {} vs ours {}",
            stock.outcome.code, ours.outcome.code
        ));
    }
    let opts = SnapOptions {
        ignore_root: spec.ignore_root,
    };
    problems.extend(tree_problem(
        "module",
        &stock.module,
        &ours.module,
        opts,
        started,
    ));
    let stats = spec.args.iter().any(|a| a == "--stats");
    if spec.compare_stdout {
        let sorted = |t: &str| {
            let mut l: Vec<&str> = t.lines().collect();
            l.sort_unstable();
            l.join("\n") + "\n"
        };
        let (a, b) = if spec.sorted_stdout {
            (sorted(&stock.outcome.stdout), sorted(&ours.outcome.stdout))
        } else {
            (stock.outcome.stdout.clone(), ours.outcome.stdout.clone())
        };
        problems.extend(stdout_problems(
            "hard-link and deletion lines",
            &a,
            &b,
            stats,
        ));
    }
    if stats {
        problems.extend(stats_problems(&stock.outcome.stdout, &ours.outcome.stdout));
    }
    if spec.compare_errors {
        let work = servers.work.path();
        let sa = push_error_lines(
            &stock.outcome.stderr,
            &[(&stock.module, "{module}"), (work, "{work}")],
        );
        let sb = push_error_lines(
            &ours.outcome.stderr,
            &[(&ours.module, "{module}"), (work, "{work}")],
        );
        if sa != sb {
            problems.push(format!(
                "error lines differ (sorted): {}",
                first_line_diff(&sa, &sb)
            ));
        }
    }
    if !problems.is_empty() {
        panic!(
            "case {name}: {} disagrees with stock rsync\nclient: {:?} {:?} {:?} URL=rsync://127.0.0.1:PORT/{}\n\n{}\n\n=== rsyncd.conf (stock; ours differs only in path) ===\n{}\n=== stock run ===\n{}\n=== ours run ===\n{}\n=== ours daemon log ===\n{}",
            bins::ours_label(),
            spec.client,
            spec.args,
            spec.sources,
            spec.remote,
            problems.join("\n"),
            servers.pair.config,
            stock.outcome.describe(),
            ours.outcome.describe(),
            truncate(&servers.pair.ours.logs(), 4000)
        );
    }
}

/// Differences between a module tree and the source it should equal
/// (empty = equal), with the module root's attributes included.
pub fn diff_against_source(src: &Path, module: &Path) -> Vec<String> {
    let a: Tree = tree::snapshot(src);
    let b: Tree = tree::snapshot(module);
    tree::diff("source", &a, "module", &b)
}

/// A client started in the background; killed by PID or waited for.
#[derive(Debug)]
pub struct RunningClient {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl RunningClient {
    /// Spawns `program args` in `cwd` (own process group, stdin closed),
    /// its stdout/stderr going to `client.stdout`/`client.stderr` in
    /// `out_dir`.
    pub fn spawn(program: &Path, args: &[String], cwd: &Path, out_dir: &Path) -> RunningClient {
        std::fs::create_dir_all(out_dir).expect("client output dir");
        let out = out_dir.join("client.stdout");
        let err = out_dir.join("client.stderr");
        let shown = format!("{} {}", program.display(), args.join(" "));
        let child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(File::create(&out).expect("client stdout file")))
            .stderr(Stdio::from(File::create(&err).expect("client stderr file")))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{shown}`: {e}"));
        RunningClient { child, out, err }
    }

    /// True while the client has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn outcome(&mut self, status: std::process::ExitStatus) -> Outcome {
        Outcome {
            code: status
                .code()
                .unwrap_or_else(|| -status.signal().unwrap_or(0)),
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
        }
    }

    /// SIGKILLs the client by its PID and reaps it. Returns `Err` with the
    /// outcome if it had already exited (nothing was killed).
    pub fn kill(mut self) -> Result<Outcome, Outcome> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Err(self.outcome(st));
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let st = self.child.wait().expect("reap killed client");
        Ok(self.outcome(st))
    }
}

impl Drop for RunningClient {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = self.child.wait();
        }
    }
}

/// Live (non-zombie) descendants of `pid`, from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`; comm may contain anything.
            let Some(close) = stat.rfind(')') else {
                continue;
            };
            let mut f = stat[close + 1..].split_whitespace();
            let state = f.next().unwrap_or("");
            let ppid = f.next().and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
            if state != "Z" && state != "X" {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let cur = found[i];
        for (p, pp) in &parent_of {
            if *pp == cur && !found.contains(p) {
                found.push(*p);
            }
        }
        i += 1;
    }
    found.remove(0);
    found
}

/// Waits until `daemon` has no per-connection processes left (its sessions
/// have ended), up to `timeout`.
pub fn wait_sessions_end(daemon: &Daemon, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = descendants(daemon.pid());
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} daemon: sessions still running {timeout:?} after the client ended (pids {left:?})",
                daemon.label()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every path under `root` whose last component starts with `.` (the
/// receiver's temp files are `.name.XXXXXX`), relative to `root`.
pub fn dot_files(root: &Path) -> Vec<PathBuf> {
    let t = tree::snapshot(root);
    t.entries
        .keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_push_error_lines_normalize() {
        let e = push_error_lines(
            "rsync: [generator] failed to set times on \"/w/stock/mod/x\": Operation not permitted (1)\n\
             rsync error: some files (code 23) at main.c(1338) [sender=3.5.0]\n\
             rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n\
             @ERROR: module is read only\n",
            &[(Path::new("/w/stock/mod"), "{module}")],
        );
        assert_eq!(
            e,
            vec![
                "@ERROR: module is read only".to_string(),
                "rsync error: some files (code 23) [sender]".to_string(),
                "rsync: [generator] failed to set times on \"{module}/x\": Operation not permitted (1)"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn harness_descendants_sees_children() {
        let mut c = Command::new("/bin/sh")
            .args(["-c", "sleep 5 & sleep 5; true"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = c.id();
        let deadline = Instant::now() + Duration::from_secs(3);
        while descendants(pid).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(descendants(pid).len(), 2);
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = c.wait();
    }
}
