//! A running `--daemon --no-detach` (stock or ours) on a free loopback port,
//! started from an rsyncd.conf text and killed by PID (its process group:
//! SIGTERM, then SIGKILL) when the guard drops.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::net;
use super::tmp::TempDir;

/// How long a daemon may take to accept its first connection.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts (each on a new port) before giving up.
const START_ATTEMPTS: usize = 4;

/// Serialises port picking + binding inside this test process so parallel
/// tests do not race each other for the same "free" port.
static START_LOCK: Mutex<()> = Mutex::new(());

/// A daemon guard; see the module docs.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    port: u16,
    label: String,
    dir: TempDir,
}

impl Daemon {
    /// Starts `bin --daemon --no-detach --config=FILE --port=N
    /// --address=127.0.0.1 --log-file=LOG` with `config` written to FILE,
    /// waits until the port accepts, and retries on a new port if the
    /// daemon dies first (port taken). Panics with the daemon's output if it
    /// never comes up.
    pub fn start(bin: &Path, config: &str, label: &str) -> Daemon {
        Daemon::start_env(bin, config, label, &[])
    }

    /// [`Daemon::start`] with extra environment variables for the daemon.
    pub fn start_env(bin: &Path, config: &str, label: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_full(bin, config, label, env, None, true, &[])
    }

    /// [`Daemon::start`] with extra daemon arguments (`--bwlimit=N` ...).
    #[allow(dead_code)]
    pub fn start_args(bin: &Path, config: &str, label: &str, args: &[&str]) -> Daemon {
        Daemon::start_full(bin, config, label, &[], None, true, args)
    }

    /// [`Daemon::start`] on a given port (a target that comes back).
    #[allow(dead_code)]
    pub fn start_on(bin: &Path, config: &str, label: &str, port: u16) -> Daemon {
        Daemon::start_full(bin, config, label, &[], Some(port), true, &[])
    }

    /// [`Daemon::start`] without `--log-file`: the config's `log file` rules.
    #[allow(dead_code)]
    pub fn start_config_log(bin: &Path, config: &str, label: &str) -> Daemon {
        Daemon::start_full(bin, config, label, &[], None, false, &[])
    }

    fn start_full(
        bin: &Path,
        config: &str,
        label: &str,
        env: &[(&str, &str)],
        fixed_port: Option<u16>,
        cli_log: bool,
        extra: &[&str],
    ) -> Daemon {
        let dir = TempDir::new(&format!("daemon-{label}"));
        let conf = dir.join("rsyncd.conf");
        std::fs::write(&conf, config).expect("write rsyncd.conf");
        let mut failures = Vec::new();
        for attempt in 0..START_ATTEMPTS {
            let guard = START_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            let port = fixed_port.unwrap_or_else(net::free_port);
            let out_path = dir.join(format!("stdout-{attempt}.txt"));
            let out = File::create(&out_path).expect("create daemon stdout file");
            let err = out.try_clone().expect("dup daemon output file");
            let mut cmd = Command::new(bin);
            cmd.arg("--daemon")
                .arg("--no-detach")
                .arg(format!("--config={}", conf.display()))
                .arg(format!("--port={port}"))
                .arg("--address=127.0.0.1")
                .args(cli_log.then(|| format!("--log-file={}", dir.join("daemon.log").display())))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .envs(env.iter().copied())
                .process_group(0);
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {label} daemon {}: {e}", bin.display()));
            let deadline = Instant::now() + START_TIMEOUT;
            let mut exited = None;
            let up = net::wait_accepts(port, deadline, || match child.try_wait() {
                Ok(None) => true,
                Ok(Some(st)) => {
                    exited = Some(st);
                    false
                }
                Err(_) => false,
            });
            // A listener from someone else on the same port would also
            // accept: make sure our daemon is still alive a moment later.
            let up = up && {
                std::thread::sleep(Duration::from_millis(30));
                matches!(child.try_wait(), Ok(None))
            };
            drop(guard);
            if up {
                return Daemon {
                    child,
                    port,
                    label: label.to_string(),
                    dir,
                };
            }
            super::process::kill_group(&mut child);
            let output = std::fs::read_to_string(&out_path).unwrap_or_default();
            failures.push(format!(
                "attempt {attempt} on port {port}: {}\n{}",
                match exited {
                    Some(st) => format!("daemon exited early ({st})"),
                    None => format!("port did not accept within {START_TIMEOUT:?}"),
                },
                super::process::truncate(&output, 2000)
            ));
            if exited.is_none() {
                // A hung daemon will not improve by retrying.
                break;
            }
        }
        panic!(
            "{label} daemon ({}) did not start:\n{}\n--- log ---\n{}",
            bin.display(),
            failures.join("\n"),
            std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
        );
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rsync://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("rsync://127.0.0.1:{}/{}", self.port, path)
    }

    /// PID of the daemon (the listener; per-connection sessions are its
    /// descendants).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Label given at start ("stock", "ours").
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Path of the daemon's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// The rsyncd.conf it was started with (rewrite it to test reloads).
    #[allow(dead_code)]
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("rsyncd.conf")
    }

    /// Send `sig` to the listening process only.
    #[allow(dead_code)]
    pub fn signal(&self, sig: Signal) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), sig);
    }

    /// Wait up to `limit` for the listener to exit; its status if it did.
    #[allow(dead_code)]
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log file plus captured stdout/stderr, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
            names.sort();
            for p in names {
                if p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("stdout-"))
                {
                    let t = std::fs::read_to_string(&p).unwrap_or_default();
                    if !t.is_empty() {
                        s.push_str("--- daemon stdout/stderr ---\n");
                        s.push_str(&t);
                    }
                }
            }
        }
        super::process::truncate(&s, 6000)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        let pgid = Pid::from_raw(pid);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Leader and any per-connection children still around: force.
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
