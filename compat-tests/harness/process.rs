//! Running client processes with a hard timeout: each child gets its own
//! process group, and on timeout the whole group is SIGKILLed and the test
//! fails with whatever output was captured.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Default limit for one client run, in seconds (stock pulls of the
/// fixtures take a few seconds at most); `RRSYNC_COMPAT_TIMEOUT` overrides.
pub const DEFAULT_CLIENT_TIMEOUT_SECS: u64 = 30;

/// The limit for one client run.
pub fn client_timeout() -> Duration {
    let secs = std::env::var("RRSYNC_COMPAT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CLIENT_TIMEOUT_SECS);
    Duration::from_secs(secs)
}

/// What a finished client run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code; `-N` when killed by signal N.
    pub code: i32,
    /// Everything written to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything written to stderr (lossy UTF-8).
    pub stderr: String,
}

impl Outcome {
    /// Panics with the full output unless the exit code is 0.
    #[allow(dead_code)]
    pub fn assert_success(&self, what: &str) {
        assert_eq!(self.code, 0, "{what} failed:\n{}", self.describe());
    }

    /// Multi-line description for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            truncate(&self.stdout, 4000),
            truncate(&self.stderr, 4000)
        )
    }
}

/// Keeps at most `max` bytes of `s` (head), marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n[... {} more bytes]", &s[..end], s.len() - end)
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| -status.signal().unwrap_or(0))
}

fn reader(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Kills the process group led by `child` with SIGKILL and reaps the child.
pub fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `program args...` in `cwd` (or the current directory) with stdin
/// closed; panics if it does not finish within `timeout`.
pub fn run_cmd<I, S>(program: &Path, args: I, cwd: Option<&Path>, timeout: Duration) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd_with(program, args, cwd, &[], timeout)
}

/// [`run_cmd`] in the current directory with extra environment variables.
#[allow(dead_code)]
pub fn run_cmd_env<I, S>(
    program: &Path,
    args: I,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd_with(program, args, None, env, timeout)
}

/// [`run_cmd`] in `cwd` with extra environment variables.
#[allow(dead_code)]
pub fn run_cmd_in_env<I, S>(
    program: &Path,
    args: I,
    cwd: &Path,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd_with(program, args, Some(cwd), env, timeout)
}

fn run_cmd_with<I, S>(
    program: &Path,
    args: I,
    cwd: Option<&Path>,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = Command::new(program);
    cmd.envs(env.iter().copied());
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let shown = format!(
        "{} {}",
        program.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{shown}`: {e}"));
    let out = reader(child.stdout.take().expect("piped stdout"));
    let err = reader(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for `{shown}`: {e}"),
        }
    };
    let status = match status {
        Some(s) => {
            // The leader is gone; anything left in its group (a forked
            // receiver) must not keep our pipes open forever.
            if let Ok(pid) = i32::try_from(child.id()) {
                let give_up = Instant::now() + Duration::from_secs(10);
                while killpg(Pid::from_raw(pid), None).is_ok() && Instant::now() < give_up {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            s
        }
        None => {
            kill_group(&mut child);
            let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            panic!(
                "TIMEOUT after {:?}: `{shown}` was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                timeout,
                truncate(&stdout, 4000),
                truncate(&stderr, 4000)
            );
        }
    };
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    Outcome {
        code: exit_code(status),
        stdout,
        stderr,
    }
}

/// Runs the stock client with `args` (current directory, default timeout).
#[allow(dead_code)]
pub fn run_client<I, S>(args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_cmd(&super::bins::stock(), args, None, client_timeout())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_timeout_kills_the_child_group() {
        let started = Instant::now();
        let r = std::panic::catch_unwind(|| {
            run_cmd(
                Path::new("/bin/sh"),
                ["-c", "sleep 30 & sleep 30; echo never"],
                None,
                Duration::from_millis(300),
            )
        });
        let msg = r.expect_err("must time out");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("TIMEOUT"), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn harness_run_cmd_captures_output_and_code() {
        let o = run_cmd(
            Path::new("/bin/sh"),
            ["-c", "echo out; echo err >&2; exit 3"],
            None,
            client_timeout(),
        );
        assert_eq!(
            (o.code, o.stdout.as_str(), o.stderr.as_str()),
            (3, "out\n", "err\n")
        );
    }
}
