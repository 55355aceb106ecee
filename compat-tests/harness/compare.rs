//! The side-by-side runner: one rsyncd.conf, a stock daemon and ours serving
//! the same module from the same fixture, the same stock client command run
//! against each into two fresh (or identically prefilled) destinations, then
//! exit codes, trees, itemized output and `--stats` fields compared.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::bins;
use super::daemon::Daemon;
use super::process::{client_timeout, run_cmd, truncate, Outcome};
use super::tmp::TempDir;
use super::tree::{self, SnapOptions};

/// The module name both daemons serve.
pub const MODULE: &str = "mod";

/// `--stats` fields compared exactly between the two runs. Timing fields
/// and the byte totals of the wire (which include protocol overhead) are not.
pub const STATS_COMPARED: &[&str] = &[
    "Number of files",
    "Number of created files",
    "Number of deleted files",
    "Number of regular files transferred",
    "Total file size",
    "Total transferred file size",
];

/// `--stats` fields that depend on the sender's block matching: compared
/// with a tolerance of 1% of stock's value.
pub const STATS_APPROX: &[&str] = &["Literal data", "Matched data"];

const STATS_PREFIXES: &[&str] = &[
    "Number of files:",
    "Number of created files:",
    "Number of deleted files:",
    "Number of regular files transferred:",
    "Total file size:",
    "Total transferred file size:",
    "Literal data:",
    "Matched data:",
    "File list size:",
    "File list generation time:",
    "File list transfer time:",
    "Total bytes sent:",
    "Total bytes received:",
];

/// Which stock client runs the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// /usr/bin/rsync (3.5.0).
    Stock,
    /// rsync 3.2.7 (`RSYNC_327`).
    Rsync327,
}

impl Client {
    /// The client binary.
    pub fn path(self) -> PathBuf {
        match self {
            Client::Stock => bins::stock(),
            Client::Rsync327 => bins::rsync_327(),
        }
    }
}

/// The rsyncd.conf both daemons get: `use chroot = no`, `uid = root`,
/// `gid = root`, then `global_lines`, then `[mod]` with `path = src` and
/// `module_lines`, then `extra` verbatim (more modules).
pub fn config_text(
    src: &Path,
    global_lines: &[String],
    module_lines: &[String],
    extra: &str,
) -> String {
    let mut s = String::from("# rrsync compat harness\nuse chroot = no\nuid = root\ngid = root\n");
    for l in global_lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(&format!("\n[{MODULE}]\n    path = {}\n", src.display()));
    for l in module_lines {
        s.push_str("    ");
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(extra);
    s.push('\n');
    s
}

/// A stock daemon and ours, started from the same config text.
#[derive(Debug)]
pub struct Pair {
    pub stock: Daemon,
    pub ours: Daemon,
    pub config: String,
}

impl Pair {
    /// Starts both daemons on `config`.
    pub fn start(config: &str) -> Pair {
        let stock = Daemon::start(&bins::stock(), config, "stock");
        let ours = Daemon::start(&bins::ours(), config, "ours");
        Pair {
            stock,
            ours,
            config: config.to_string(),
        }
    }
}

/// How one pull is run and judged.
#[derive(Debug, Clone)]
pub struct PullSpec {
    pub client: Client,
    /// Client options; `{work}` and `{src}` are replaced by those paths.
    pub args: Vec<String>,
    /// Remote part after `rsync://127.0.0.1:PORT/` (default `mod/`).
    pub remote: String,
    /// Destination, relative to the side's own directory (default `dest/`);
    /// `None` for runs without one (module listing, `--list-only`).
    pub dest: Option<String>,
    /// Leave the destination root's own attributes out of the comparison.
    pub ignore_root: bool,
    /// Compare normalised stdout exactly (itemize lines, listings).
    pub compare_stdout: bool,
    /// Compare normalised stderr (versions and source locations removed).
    pub compare_stderr: bool,
    /// Exit code stock must give; checks that the case tests what it says.
    pub expect_stock_code: Option<i32>,
}

impl Default for PullSpec {
    fn default() -> Self {
        PullSpec {
            client: Client::Stock,
            args: Vec::new(),
            remote: format!("{MODULE}/"),
            dest: Some("dest/".into()),
            ignore_root: false,
            compare_stdout: true,
            compare_stderr: false,
            expect_stock_code: Some(0),
        }
    }
}

type Builder = Box<dyn Fn(&Path)>;
type Prefill = Box<dyn Fn(&Path, &Path)>;

/// A pull case: config, fixture, optional destination prefill, and the run.
pub struct PullCase {
    pub name: String,
    pub global_lines: Vec<String>,
    pub module_lines: Vec<String>,
    /// Extra config text appended after the main module (`{work}`/`{src}`
    /// substituted).
    pub extra_config: String,
    pub source: Builder,
    /// Called as `prefill(dest, src)` for each side before its pull.
    pub prefill: Option<Prefill>,
    pub spec: PullSpec,
}

impl PullCase {
    /// A case named `name` pulling from the tree `source` builds.
    pub fn new(name: &str, source: impl Fn(&Path) + 'static) -> PullCase {
        PullCase {
            name: name.to_string(),
            global_lines: Vec::new(),
            module_lines: Vec::new(),
            extra_config: String::new(),
            source: Box::new(source),
            prefill: None,
            spec: PullSpec::default(),
        }
    }
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.spec.args = args.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }
    pub fn remote(mut self, r: &str) -> Self {
        self.spec.remote = r.to_string();
        self
    }
    pub fn dest(mut self, d: Option<&str>) -> Self {
        self.spec.dest = d.map(str::to_string);
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
    pub fn global_line(mut self, l: &str) -> Self {
        self.global_lines.push(l.to_string());
        self
    }
    pub fn extra_config(mut self, text: &str) -> Self {
        self.extra_config.push_str(text);
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
    pub fn compare_stderr(mut self) -> Self {
        self.spec.compare_stderr = true;
        self
    }
    pub fn expect_stock_code(mut self, code: Option<i32>) -> Self {
        self.spec.expect_stock_code = code;
        self
    }
    /// Runs the case; see [`compare_pull`].
    pub fn run(self) -> PullRun {
        compare_pull(self)
    }
    /// Only builds the fixture and starts the daemons; see [`serve`].
    pub fn serve(self) -> Servers {
        serve(&self)
    }
}

/// One side's result.
#[derive(Debug)]
pub struct Side {
    pub outcome: Outcome,
    /// Absolute destination path, if the run had one.
    pub dest: Option<PathBuf>,
}

/// A fixture served by both daemons, ready for pulls (or for abuse on the
/// raw socket first).
#[derive(Debug)]
pub struct Servers {
    pub name: String,
    pub pair: Pair,
    /// The module's path (the fixture).
    pub src: PathBuf,
    /// Holds `src`, and the side directories `stock/` and `ours/`.
    pub work: TempDir,
}

impl Servers {
    /// Runs `spec` against both daemons, the client's cwd being
    /// `work/stock` and `work/ours` (destinations there are not reset), and
    /// compares; returns (stock, ours).
    pub fn pull(&self, spec: &PullSpec) -> (Side, Side) {
        self.pull_prefilled(spec, None)
    }

    fn pull_prefilled(&self, spec: &PullSpec, prefill: Option<&Prefill>) -> (Side, Side) {
        let started = unix_now();
        let stock = run_side(
            &self.pair.stock,
            &self.work.join("stock"),
            &self.work,
            &self.src,
            spec,
            prefill,
        );
        let ours = run_side(
            &self.pair.ours,
            &self.work.join("ours"),
            &self.work,
            &self.src,
            spec,
            prefill,
        );
        check(&self.name, spec, &self.pair, &stock, &ours, started);
        (stock, ours)
    }
}

/// A finished case; keeps the daemons and directories alive for follow-up
/// pulls (`pull_again`).
#[derive(Debug)]
pub struct PullRun {
    pub stock: Side,
    pub ours: Side,
    pub servers: Servers,
}

impl PullRun {
    /// Runs another pull into the same side directories (destinations are
    /// not reset) and compares again; returns (stock, ours).
    pub fn pull_again(&self, spec: &PullSpec) -> (Side, Side) {
        self.servers.pull(spec)
    }
}

/// Seconds since the epoch (for [`tree_problem`]'s fresh-time window).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn subst(s: &str, work: &Path, src: &Path) -> String {
    s.replace("{work}", &work.display().to_string())
        .replace("{src}", &src.display().to_string())
}

fn run_side(
    daemon: &Daemon,
    dir: &Path,
    work: &TempDir,
    src: &Path,
    spec: &PullSpec,
    prefill: Option<&Prefill>,
) -> Side {
    std::fs::create_dir_all(dir).expect("side dir");
    let dest = spec
        .dest
        .as_ref()
        .map(|d| dir.join(d.trim_end_matches('/')));
    if let (Some(f), Some(d)) = (prefill, dest.as_ref()) {
        f(d, src);
    }
    let mut args: Vec<String> = spec
        .args
        .iter()
        .map(|a| subst(a, work.path(), src))
        .collect();
    args.push(daemon.url(&spec.remote));
    if let Some(d) = &spec.dest {
        args.push(d.clone());
    }
    let outcome = run_cmd(&spec.client.path(), &args, Some(dir), client_timeout());
    // Kept beside the destination for debugging (RRSYNC_COMPAT_KEEP=1).
    let _ = std::fs::write(dir.join("client.stdout"), &outcome.stdout);
    let _ = std::fs::write(dir.join("client.stderr"), &outcome.stderr);
    Side { outcome, dest }
}

/// Builds the case's fixture and starts both daemons on its config,
/// without pulling.
pub fn serve(case: &PullCase) -> Servers {
    let work = TempDir::new(&case.name);
    let src = work.join("src");
    (case.source)(&src);
    let extra = subst(&case.extra_config, work.path(), &src);
    let globals: Vec<String> = case
        .global_lines
        .iter()
        .map(|l| subst(l, work.path(), &src))
        .collect();
    let config = config_text(&src, &globals, &case.module_lines, &extra);
    let pair = Pair::start(&config);
    Servers {
        name: case.name.clone(),
        pair,
        src,
        work,
    }
}

/// Starts both daemons for `case`, runs its pull against each and asserts
/// that they agree: exit code, destination tree, normalised stdout
/// (itemize lines, listings), `--stats` fields, and (if asked) stderr.
pub fn compare_pull(case: PullCase) -> PullRun {
    let servers = serve(&case);
    let (stock, ours) = servers.pull_prefilled(&case.spec, case.prefill.as_ref());
    PullRun {
        stock,
        ours,
        servers,
    }
}

/// Drops output lines that legitimately differ between runs (rates,
/// timings, the stats block, which is compared field by field).
pub fn normalize_stdout(s: &str, stats: bool) -> Vec<String> {
    s.lines()
        .filter(|l| !(l.starts_with("sent ") && l.contains("bytes/sec")))
        .filter(|l| !l.starts_with("total size is "))
        .filter(|l| !STATS_PREFIXES.iter().any(|p| l.starts_with(p)))
        .filter(|l| !(stats && l.is_empty()))
        .map(str::to_string)
        .collect()
}

/// Splits output into (transfer lines, everything else). A pulling client
/// prints `>f...` lines for received files from its receiver process and the
/// rest (deletions, dirs, links, attribute changes) from its generator, so
/// the interleaving of the two is a race even in stock rsync; the order
/// within each is deterministic and compared exactly.
///
/// Hard-link lines (`hf...`) are written by the generator when the receiver
/// reports the group leader done, which is a race too; they are compared as
/// their own stream and appended to the transfer lines.
pub fn split_streams(lines: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (mut xfer, rest): (Vec<String>, Vec<String>) =
        lines.into_iter().partition(|l| l.starts_with('>'));
    let (hard, rest): (Vec<String>, Vec<String>) = rest
        .into_iter()
        .partition(|l| l.starts_with('h') && l.contains(" => "));
    xfer.extend(hard);
    // Deletions: with incremental recursion (stock servers offer it, rrsync
    // does not; see docs/design.md) --delete-during runs per sub-list, so
    // where the deletion lines fall among the others differs; which
    // deletions happen, in what order, is compared.
    let (mut dels, rest): (Vec<String>, Vec<String>) = rest
        .into_iter()
        .partition(|l| l.starts_with("*deleting") || l.starts_with("deleting "));
    dels.sort();
    xfer.extend(dels);
    (xfer, rest)
}

/// Parses `Key: value` lines of a `--stats` block.
pub fn parse_stats(s: &str) -> Vec<(String, String)> {
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            STATS_PREFIXES
                .iter()
                .any(|p| p.trim_end_matches(':') == k)
                .then(|| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The number in a stats value like `1,234,567 bytes`.
pub fn stats_number(stats: &[(String, String)], key: &str) -> Option<u64> {
    let v = &stats.iter().find(|(k, _)| k == key)?.1;
    let digits: String = v
        .split_whitespace()
        .next()?
        .chars()
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

/// Keeps the error lines that say what went wrong (messages from the
/// daemon's sender, `@ERROR` lines, the client's `rsync error:` summary) and
/// strips what legitimately differs in them: version tags like
/// `[sender=3.5.0]` and source locations like ` at main.c(1234)`. Socket
/// noise whose presence depends on timing (`read error: Connection reset`)
/// is dropped.
pub fn normalize_stderr(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| {
            l.contains("[sender]") || l.starts_with("@ERROR") || l.starts_with("rsync error:")
        })
        // A stock process killed by its sibling after the sibling's own
        // error (a race in stock: the line comes or does not).
        .filter(|l| !l.contains("received SIGUSR1 (code 19)"))
        .map(strip_location_and_tag)
        .collect()
}

/// Removes what legitimately differs inside one error line: a source
/// location like ` at main.c(1234)` and a trailing version tag like
/// ` [sender=3.5.0]`.
pub fn strip_location_and_tag(l: &str) -> String {
    let mut l = l.to_string();
    if let Some(i) = l.find(" at ") {
        let rest = &l[i + 4..];
        if let Some(j) = rest.find(".c(").or_else(|| rest.find(".rs(")) {
            if let Some(k) = rest[j..].find(')') {
                let end = i + 4 + j + k + 1;
                l.replace_range(i..end, "");
            }
        }
    }
    // " [generator=3.5.0]" -> " [generator]": which process ended the
    // run is compared, its version is not.
    if l.ends_with(']') {
        if let Some(i) = l.rfind(" [") {
            if let Some(eq) = l[i..].find('=') {
                l.replace_range(i + eq..l.len() - 1, "");
            }
        }
    }
    l
}

/// Where two line lists first differ, for failure messages.
pub fn first_line_diff(a: &[String], b: &[String]) -> String {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).map(String::as_str);
        let y = b.get(i).map(String::as_str);
        if x != y {
            return format!(
                "first difference at line {}:\n  stock: {:?}\n  ours:  {:?}\n({} vs {} lines)",
                i + 1,
                x,
                y,
                a.len(),
                b.len()
            );
        }
    }
    "identical".into()
}

/// Compares two sides of the same pull; panics listing every disagreement.
/// `started` (Unix seconds) is when the runs began: mtimes from then on are
/// "fresh" (not preserved) and compare equal to each other.
pub fn check(name: &str, spec: &PullSpec, pair: &Pair, stock: &Side, ours: &Side, started: i64) {
    let mut problems = Vec::new();
    if let Some(want) = spec.expect_stock_code {
        assert_eq!(
            stock.outcome.code,
            want,
            "case {name}: STOCK did not behave as the case expects (harness/case bug):\n{}\n--- stock daemon log ---\n{}",
            stock.outcome.describe(),
            pair.stock.logs()
        );
    }
    if stock.outcome.code != ours.outcome.code {
        problems.push(format!(
            "exit code: stock {} vs ours {}",
            stock.outcome.code, ours.outcome.code
        ));
    }
    if let (Some(sd), Some(od)) = (&stock.dest, &ours.dest) {
        let opts = SnapOptions {
            ignore_root: spec.ignore_root,
        };
        problems.extend(tree_problem("destination", sd, od, opts, started));
    }
    let stats = spec.args.iter().any(|a| a == "--stats");
    if spec.compare_stdout {
        problems.extend(stdout_problems(
            "transfer lines",
            &stock.outcome.stdout,
            &ours.outcome.stdout,
            stats,
        ));
    }
    if stats {
        problems.extend(stats_problems(&stock.outcome.stdout, &ours.outcome.stdout));
    }
    if spec.compare_stderr {
        let a = normalize_stderr(&stock.outcome.stderr);
        let b = normalize_stderr(&ours.outcome.stderr);
        if a != b {
            problems.push(format!("stderr differs: {}", first_line_diff(&a, &b)));
        }
    }
    if !problems.is_empty() {
        panic!(
            "case {name}: {} disagrees with stock rsync\nclient: {:?} {:?} URL=rsync://127.0.0.1:PORT/{} dest={:?}\n\n{}\n\n=== rsyncd.conf ===\n{}\n=== stock run ===\n{}\n=== ours run ===\n{}\n=== ours daemon log ===\n{}",
            bins::ours_label(),
            spec.client,
            spec.args,
            spec.remote,
            spec.dest,
            problems.join("\n"),
            pair.config,
            stock.outcome.describe(),
            ours.outcome.describe(),
            truncate(&pair.ours.logs(), 4000)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_normalizers() {
        let out =
            "a\nsent 1 bytes  received 2 bytes  3.00 bytes/sec\ntotal size is 5  speedup is 1.0\n";
        assert_eq!(normalize_stdout(out, false), vec!["a".to_string()]);
        let st = parse_stats("Literal data: 1,234 bytes\nMatched data: 0 bytes\nfoo: bar\n");
        assert_eq!(stats_number(&st, "Literal data"), Some(1234));
        assert_eq!(st.len(), 2);
        let e = normalize_stderr(
            "rsync error: some files (code 23) at main.c(1338) [generator=3.5.0]\n\
             rsync: [Receiver] read error: Connection reset by peer (104)\n\
             rsync: [sender] link_stat \"/x\" (in mod) failed: No such file or directory (2)\n",
        );
        assert_eq!(
            e,
            vec![
                "rsync error: some files (code 23) [generator]".to_string(),
                "rsync: [sender] link_stat \"/x\" (in mod) failed: No such file or directory (2)"
                    .to_string()
            ]
        );
    }
}

#[cfg(test)]
mod divergence_tests {
    use super::*;
    use crate::harness::fixture;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// The comparison must notice a daemon that serves something else: here
    /// "ours" is stock with an extra exclude and a chmod.
    #[test]
    fn harness_detects_a_divergent_daemon() {
        let work = TempDir::new("harness-divergence");
        let src = work.join("src");
        fixture::small_tree(&src);
        let good = config_text(&src, &[], &[], "");
        let bad = config_text(
            &src,
            &[],
            &[
                "exclude = a.txt".to_string(),
                "outgoing chmod = F600".to_string(),
            ],
            "",
        );
        let pair = Pair {
            stock: Daemon::start(&bins::stock(), &good, "stock"),
            ours: Daemon::start(&bins::stock(), &bad, "ours"),
            config: good,
        };
        let spec = PullSpec {
            args: vec!["-a".into(), "-i".into()],
            ..PullSpec::default()
        };
        let started = unix_now();
        let s = run_side(&pair.stock, &work.join("stock"), &work, &src, &spec, None);
        let o = run_side(&pair.ours, &work.join("ours"), &work, &src, &spec, None);
        let err = catch_unwind(AssertUnwindSafe(|| {
            check("divergence", &spec, &pair, &s, &o, started)
        }))
        .expect_err("a divergent daemon must fail the comparison");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("only in stock: a.txt"), "{msg}");
        assert!(msg.contains("b.txt: mode 100644 vs 100600"), "{msg}");
        assert!(msg.contains("stdout"), "{msg}");
    }
}

/// Stock's and our tree under `a`/`b` compared (times set by the runs
/// themselves, since `started`, count as equal); `None` when equal.
pub fn tree_problem(
    what: &str,
    a: &Path,
    b: &Path,
    opts: SnapOptions,
    started: i64,
) -> Option<String> {
    let mut ta = tree::snapshot_with(a, opts);
    let mut tb = tree::snapshot_with(b, opts);
    let now = unix_now();
    ta.mark_fresh(started - 2, now + 2);
    tb.mark_fresh(started - 2, now + 2);
    let d = tree::diff("stock", &ta, "ours", &tb);
    (!d.is_empty()).then(|| {
        format!(
            "{what} trees differ ({} differences):\n{}",
            d.len(),
            tree::format_diff(&d, 30)
        )
    })
}

/// Normalised stdout of both runs compared, in its two streams (`first`
/// names the first: transfer lines, hard-link and deletion lines...).
pub fn stdout_problems(first: &str, stock: &str, ours: &str, stats: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let (a1, a2) = split_streams(normalize_stdout(stock, stats));
    let (b1, b2) = split_streams(normalize_stdout(ours, stats));
    if a1 != b1 {
        problems.push(format!(
            "stdout ({first}) differs: {}",
            first_line_diff(&a1, &b1)
        ));
    }
    if a2 != b2 {
        problems.push(format!("stdout differs: {}", first_line_diff(&a2, &b2)));
    }
    problems
}

/// `--stats` disagreements: [`STATS_COMPARED`] exactly, [`STATS_APPROX`]
/// within 1% of stock's value.
pub fn stats_problems(stock_stdout: &str, ours_stdout: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let a = parse_stats(stock_stdout);
    let b = parse_stats(ours_stdout);
    // The same lines in the same order, whatever their values.
    let keys = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    if keys(&a) != keys(&b) {
        problems.push(format!(
            "--stats lines: stock {:?} vs ours {:?}",
            keys(&a),
            keys(&b)
        ));
    }
    for key in STATS_COMPARED {
        let x = a.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let y = b.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        if x != y {
            problems.push(format!("--stats {key:?}: stock {x:?} vs ours {y:?}"));
        }
    }
    for key in STATS_APPROX {
        let x = stats_number(&a, key);
        let y = stats_number(&b, key);
        let close = match (x, y) {
            (Some(x), Some(y)) => x.abs_diff(y) <= x.div_ceil(100),
            (x, y) => x == y,
        };
        if !close {
            problems.push(format!(
                "--stats {key:?}: stock {x:?} vs ours {y:?} (more than 1% apart)"
            ));
        }
    }
    problems
}
