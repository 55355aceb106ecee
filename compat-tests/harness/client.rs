//! The client families' runner: the same transfer done by stock rsync on
//! both ends and with rrsync in one role (client against a stock daemon,
//! client over a remote shell against stock `rsync --server`, stock client
//! with `--rsync-path=rrsync`, local copy), then exit codes, trees, item
//! lines and `--stats` compared as in the pull and push families.

use std::path::{Path, PathBuf};

use super::bins;
use super::compare::{stats_problems, stdout_problems, tree_problem, unix_now};
use super::daemon::Daemon;
use super::process::{client_timeout, run_cmd_in_env, Outcome};
use super::tmp::TempDir;
use super::tree::SnapOptions;

/// Where rrsync plays its part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// rrsync client pulls from a stock daemon.
    DaemonPull,
    /// rrsync client pushes to a stock daemon.
    DaemonPush,
    /// rrsync client pulls over a remote shell from stock `rsync --server`.
    RshPull,
    /// rrsync client pushes over a remote shell to stock `rsync --server`.
    RshPush,
    /// Stock client pulls from `rrsync --server` (`--rsync-path`).
    ServerPull,
    /// Stock client pushes to `rrsync --server` (`--rsync-path`).
    ServerPush,
    /// rrsync copies between local directories.
    Local,
}

impl Mode {
    fn is_push(self) -> bool {
        matches!(
            self,
            Mode::DaemonPush | Mode::RshPush | Mode::ServerPush | Mode::Local
        )
    }
    fn uses_daemon(self) -> bool {
        matches!(self, Mode::DaemonPull | Mode::DaemonPush)
    }
}

type TreeFn = Box<dyn Fn(&Path)>;
type PrefillFn = Box<dyn Fn(&Path, &Path)>;
type DestCheck = Box<dyn Fn(&Path) -> Result<(), String>>;

/// One step of a case: an optional change to the source first, then a run.
struct Step {
    mutate: Option<TreeFn>,
    args: Vec<String>,
}

/// A client case, built up and then run with [`ClientCase::run`].
pub struct ClientCase {
    name: String,
    mode: Mode,
    fixture: TreeFn,
    prefill: Option<PrefillFn>,
    steps: Vec<Step>,
    /// Source inside the fixture (`""` = the fixture root, sent with a trailing slash).
    src_sub: String,
    /// Several sources inside the fixture instead of `src_sub` (each as
    /// written, trailing slash or not).
    sources: Vec<String>,
    /// Destination argument relative to the side's directory.
    dest: String,
    compare_stdout: bool,
    /// Compare stdout as a set of lines (see [`ClientCase::sorted_stdout`]).
    sort_stdout: bool,
    compare_stderr: bool,
    /// Texts both sides' stderr must hold (messages naming side-specific paths).
    stderr_has: Vec<String>,
    /// Asked of both sides' destinations after every step.
    dest_check: Option<DestCheck>,
    expect_code: Option<i32>,
    module_lines: Vec<String>,
    extra_config: String,
    remote_override: Option<String>,
    rsh_script: String,
    no_dest: bool,
    compare_tree: bool,
    /// Environment variables for both sides' client runs.
    env: Vec<(String, String)>,
}

/// A remote shell stand-in: drops `-l user` and the host, then runs the
/// command line through `sh -c`, as ssh hands it to the remote user's shell.
pub const RSH_SCRIPT: &str =
    "#!/bin/sh\nif [ \"$1\" = \"-l\" ]; then shift 2; fi\nshift\nexec /bin/sh -c \"$*\"\n";

impl ClientCase {
    /// A case named `name` (the test's name) in `mode` over `fixture`.
    pub fn new(name: &str, mode: Mode, fixture: impl Fn(&Path) + 'static) -> ClientCase {
        ClientCase {
            name: name.to_string(),
            mode,
            fixture: Box::new(fixture),
            prefill: None,
            steps: Vec::new(),
            src_sub: String::new(),
            sources: Vec::new(),
            dest: "dest/".into(),
            compare_stdout: true,
            sort_stdout: false,
            compare_stderr: false,
            stderr_has: Vec::new(),
            dest_check: None,
            expect_code: None,
            module_lines: Vec::new(),
            extra_config: String::new(),
            remote_override: None,
            rsh_script: RSH_SCRIPT.to_string(),
            no_dest: false,
            compare_tree: true,
            env: Vec::new(),
        }
    }

    /// Run both sides' clients with `key=value` in their environment.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The options of the first run.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.steps.push(Step {
            mutate: None,
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
        });
        self
    }

    /// Change the source, then run again with `args` (same destinations).
    pub fn then<S: AsRef<str>>(mut self, mutate: impl Fn(&Path) + 'static, args: &[S]) -> Self {
        self.steps.push(Step {
            mutate: Some(Box::new(mutate)),
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
        });
        self
    }

    /// Fill each destination before the first run (`dest`, `src`).
    pub fn prefill(mut self, f: impl Fn(&Path, &Path) + 'static) -> Self {
        self.prefill = Some(Box::new(f));
        self
    }

    /// Transfer this path of the fixture instead of its root.
    /// Several sources inside the fixture (not with the daemon modes).
    #[allow(dead_code)]
    pub fn sources(mut self, subs: &[&str]) -> Self {
        self.sources = subs.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn source(mut self, sub: &str) -> Self {
        self.src_sub = sub.to_string();
        self
    }

    /// Destination argument (default `dest/`).
    pub fn dest(mut self, d: &str) -> Self {
        self.dest = d.to_string();
        self
    }

    /// Don't compare stdout (outputs that legitimately differ in order).
    #[allow(dead_code)]
    pub fn no_stdout(mut self) -> Self {
        self.compare_stdout = false;
        self
    }

    /// Compare stdout's lines whatever their order: with `-vv` and no
    /// `-i`, names from the generator ("... is uptodate", attribute
    /// changes) and from the receiver (transfers) interleave as their
    /// processes run, in stock too.
    pub fn sorted_stdout(mut self) -> Self {
        self.sort_stdout = true;
        self
    }

    /// Compare normalised stderr too.
    pub fn compare_stderr(mut self) -> Self {
        self.compare_stderr = true;
        self
    }

    /// Both sides' stderr must contain `text` in every step.
    pub fn stderr_has(mut self, text: &str) -> Self {
        self.stderr_has.push(text.to_string());
        self
    }

    /// Both sides' destinations must pass `f` after every step (for what
    /// holds even where the trees may differ by timing).
    pub fn dest_check(mut self, f: impl Fn(&Path) -> Result<(), String> + 'static) -> Self {
        self.dest_check = Some(Box::new(f));
        self
    }

    /// Stock's exit code must be this (guards the case itself).
    pub fn expect_code(mut self, c: i32) -> Self {
        self.expect_code = Some(c);
        self
    }

    /// A line for the daemon's `[mod]` and `[up]` modules.
    pub fn module_line(mut self, l: &str) -> Self {
        self.module_lines.push(l.to_string());
        self
    }

    /// More config text (extra modules).
    pub fn extra_config(mut self, t: &str) -> Self {
        self.extra_config.push_str(t);
        self
    }

    /// Use this script as the remote shell (default [`RSH_SCRIPT`]).
    pub fn rsh_script(mut self, text: &str) -> Self {
        self.rsh_script = text.to_string();
        self
    }

    /// Don't compare the trees (an interrupted run leaves timing-dependent state).
    pub fn no_tree(mut self) -> Self {
        self.compare_tree = false;
        self
    }

    /// A pull without a destination (a listing).
    pub fn no_dest(mut self) -> Self {
        self.no_dest = true;
        self
    }

    /// Use this remote argument verbatim (`{port}` is the daemon's port).
    pub fn remote(mut self, r: &str) -> Self {
        self.remote_override = Some(r.to_string());
        self
    }

    /// Runs every step on both sides and compares after each.
    pub fn run(self) {
        let work = TempDir::new(&self.name);
        let src = work.join("src");
        (self.fixture)(&src);
        let rsh = work.join("rsh.sh");
        std::fs::write(&rsh, &self.rsh_script).expect("write rsh script");
        std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod rsh script");
        // The runs' outputs are kept in a directory of their own: the work
        // directory is an implied parent of the source in the `-R` cases
        // with absolute paths, and a file written into it between the two
        // sides' runs changed its time for one side only.
        let logs = work.join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");
        let up = work.join("up");
        std::fs::create_dir_all(up.join("stock")).expect("up dir");
        std::fs::create_dir_all(up.join("ours")).expect("up dir");
        let daemon = self.mode.uses_daemon().then(|| {
            let mut conf = String::from("use chroot = no\nuid = root\ngid = root\n");
            let extra = self
                .extra_config
                .replace("{work}", &work.path().display().to_string());
            let lines: String = self
                .module_lines
                .iter()
                .map(|l| format!("    {l}\n"))
                .collect();
            conf.push_str(&format!("[mod]\n    path = {}\n{lines}", src.display()));
            for side in ["stock", "ours"] {
                conf.push_str(&format!(
                    "[up-{side}]\n    path = {}\n    read only = no\n{lines}",
                    up.join(side).display()
                ));
            }
            conf.push_str(&extra);
            Daemon::start(&bins::stock(), &conf, "stock")
        });
        let side_dir = |side: &str| -> PathBuf {
            if self.mode == Mode::DaemonPush {
                up.join(side)
            } else {
                work.join(side)
            }
        };
        for side in ["stock", "ours"] {
            let d = side_dir(side);
            std::fs::create_dir_all(&d).expect("side dir");
            if let Some(p) = &self.prefill {
                p(&d.join(self.dest.trim_end_matches('/')), &src);
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            if let Some(m) = &step.mutate {
                m(&src);
            }
            let started = unix_now();
            let mut outs: Vec<(Outcome, PathBuf)> = Vec::new();
            for side in ["stock", "ours"] {
                let ours = side == "ours";
                let dir = side_dir(side);
                let (prog, args, cwd) =
                    self.command(ours, &step.args, &src, &dir, &rsh, daemon.as_ref());
                let env: Vec<(&str, &str)> = self
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let o = run_cmd_in_env(&prog, &args, &cwd, &env, client_timeout());
                let _ = std::fs::write(logs.join(format!("{side}-{i}.stdout")), &o.stdout);
                let _ = std::fs::write(logs.join(format!("{side}-{i}.stderr")), &o.stderr);
                outs.push((o, dir.join(self.dest.trim_end_matches('/'))));
            }
            let (stock, ours) = (&outs[0], &outs[1]);
            if let (0, Some(want)) = (i, self.expect_code) {
                assert_eq!(
                    stock.0.code,
                    want,
                    "case {}: STOCK did not behave as the case expects:\n{}",
                    self.name,
                    stock.0.describe()
                );
            }
            let mut problems = Vec::new();
            if stock.0.code != ours.0.code {
                problems.push(format!(
                    "exit code: stock {} vs ours {}",
                    stock.0.code, ours.0.code
                ));
            }
            if self.compare_tree && (stock.1.exists() || ours.1.exists()) {
                problems.extend(tree_problem(
                    "destination",
                    &stock.1,
                    &ours.1,
                    SnapOptions { ignore_root: false },
                    started,
                ));
            }
            let stats = step.args.iter().any(|a| a == "--stats");
            if self.compare_stdout {
                let prep = |out: &str| {
                    let text = without_ancestor_times(out, work.path());
                    if !self.sort_stdout {
                        return text;
                    }
                    let mut lines: Vec<&str> = text.lines().collect();
                    lines.sort_unstable();
                    lines.join("\n")
                };
                problems.extend(stdout_problems(
                    "transfer lines",
                    &prep(&stock.0.stdout),
                    &prep(&ours.0.stdout),
                    stats,
                ));
            }
            if stats {
                problems.extend(stats_problems(&stock.0.stdout, &ours.0.stdout));
            }
            if let Some(f) = &self.dest_check {
                for (who, dest) in [("stock", &stock.1), ("ours", &ours.1)] {
                    if let Err(e) = f(dest) {
                        problems.push(format!("{who}'s destination: {e}"));
                    }
                }
            }
            for t in &self.stderr_has {
                for (who, o) in [("stock", &stock.0), ("ours", &ours.0)] {
                    if !format!("\n{}", o.stderr).contains(t.as_str()) {
                        problems.push(format!("{who}'s stderr lacks {t:?}"));
                    }
                }
            }
            if self.compare_stderr {
                let a = super::compare::normalize_stderr(&stock.0.stderr);
                let b = super::compare::normalize_stderr(&ours.0.stderr);
                if a != b {
                    problems.push(format!(
                        "stderr differs: {}",
                        super::compare::first_line_diff(&a, &b)
                    ));
                }
            }
            if !problems.is_empty() {
                panic!(
                    "case {} ({:?}, step {i}, args {:?}): rrsync disagrees with stock rsync\n\n{}\n\n=== stock run ===\n{}\n=== ours run ===\n{}",
                    self.name,
                    self.mode,
                    step.args,
                    problems.join("\n"),
                    stock.0.describe(),
                    ours.0.describe()
                );
            }
        }
    }

    /// The program, arguments and working directory of one side's run.
    fn command(
        &self,
        ours: bool,
        args: &[String],
        src: &Path,
        dir: &Path,
        rsh: &Path,
        daemon: Option<&Daemon>,
    ) -> (PathBuf, Vec<String>, PathBuf) {
        let client = if ours && !matches!(self.mode, Mode::ServerPull | Mode::ServerPush) {
            bins::ours()
        } else {
            bins::stock()
        };
        let side = if ours { "ours" } else { "stock" };
        let work = src.parent().unwrap_or(src).display().to_string();
        let mut a: Vec<String> = args.iter().map(|x| x.replace("{work}", &work)).collect();
        let local_src = if self.src_sub.is_empty() {
            format!("{}/", src.display())
        } else {
            format!("{}/{}", src.display(), self.src_sub)
        };
        let local_srcs: Vec<String> = if self.sources.is_empty() {
            vec![local_src.clone()]
        } else {
            self.sources
                .iter()
                .map(|s| format!("{}/{s}", src.display()))
                .collect()
        };
        let rsh_arg = format!("--rsh={}", rsh.display());
        match self.mode {
            Mode::DaemonPull => {
                let d = daemon.expect("daemon");
                let remote = match &self.remote_override {
                    Some(r) => r.replace("{port}", &d.port().to_string()),
                    None => d.url(&format!("mod/{}", self.src_sub)),
                };
                a.push(remote);
                if !self.no_dest {
                    a.push(self.dest.clone());
                }
            }
            Mode::DaemonPush => {
                let d = daemon.expect("daemon");
                a.push(local_src);
                let remote = match &self.remote_override {
                    Some(r) => r
                        .replace("{port}", &d.port().to_string())
                        .replace("{side}", side),
                    None => d.url(&format!("up-{side}/{}", self.dest)),
                };
                a.push(remote);
            }
            Mode::RshPull | Mode::ServerPull => {
                a.insert(0, rsh_arg);
                if self.mode == Mode::ServerPull && ours {
                    a.insert(1, format!("--rsync-path={}", bins::ours().display()));
                }
                for s in local_srcs {
                    a.push(format!("localhost:{s}"));
                }
                a.push(self.dest.clone());
            }
            Mode::RshPush | Mode::ServerPush => {
                a.insert(0, rsh_arg);
                if self.mode == Mode::ServerPush && ours {
                    a.insert(1, format!("--rsync-path={}", bins::ours().display()));
                }
                // Relative to the side's directory: the stand-in shell runs there.
                a.extend(local_srcs);
                a.push(format!("localhost:{}", self.dest));
            }
            Mode::Local => {
                a.extend(local_srcs);
                a.push(self.dest.clone());
            }
        }
        let _ = self.mode.is_push();
        (client, a, dir.to_path_buf())
    }
}

/// Drops the itemized time-only changes of the directories above `work`
/// (`-R` with absolute sources sends them as implied directories): their
/// times move whenever a test running alongside makes or removes its own
/// directory, between the stock run and ours.
fn without_ancestor_times(stdout: &str, work: &Path) -> String {
    let work = work.to_string_lossy();
    let work = work.trim_start_matches('/');
    stdout
        .lines()
        .filter(|l| {
            let Some(dir) = l
                .strip_prefix(".d..t...... ")
                .and_then(|d| d.strip_suffix('/'))
            else {
                return true;
            };
            let dir = dir.trim_start_matches('/');
            let above = work.starts_with(dir) && work[dir.len()..].starts_with('/');
            !above
        })
        .map(|l| format!("{l}\n"))
        .collect()
}
