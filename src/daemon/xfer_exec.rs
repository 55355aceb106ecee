//! `pre-xfer exec` (upstream: clientserver.c start_pre_exec,
//! write_pre_exec_args, finish_pre_exec): a shell command the daemon runs
//! before a transfer, whose failure refuses it; and `post-xfer exec`, run
//! after the session with `RSYNC_EXIT_STATUS` and `RSYNC_RAW_STATUS`.
//!
//! As upstream, the command is started *before* the module is entered (so
//! outside any chroot, with the daemon's privileges) and waits on a pipe
//! for the request and the client's arguments, which it receives as
//! `RSYNC_REQUEST` and `RSYNC_ARG0..N` next to `RSYNC_MODULE_NAME`,
//! `RSYNC_MODULE_PATH`, `RSYNC_HOST_ADDR`, `RSYNC_HOST_NAME`,
//! `RSYNC_USER_NAME` and `RSYNC_PID`. Its stdout is shown to the client
//! only when it fails. `early exec` runs the same way, earlier, with the
//! client's early input on its stdin.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};

/// Most bytes of the command's stdout kept for the error message
/// (upstream's BIGPATHBUFLEN - 1).
const MAX_OUTPUT: usize = 4095;
/// Most bytes of request + arguments the waiting child accepts.
const MAX_ARGS_BYTES: usize = 1 << 20;

/// A started `pre-xfer exec` waiting for its arguments.
#[derive(Debug)]
pub struct PreXfer {
    pid: Pid,
    args: File,
    output: File,
}

/// Forks the waiting child. `env` is what the session knows at this point
/// (module, host, user, pid).
pub fn start(cmd: &str, env: &[(String, String)]) -> std::io::Result<PreXfer> {
    spawn_hook(cmd, env, true)
}

/// `early exec` (upstream 3.2+): run before `pre-xfer exec`, with
/// `RSYNC_REQUEST=(NONE)`, no arguments, and the client's `--early-input`
/// bytes on its stdin; the session waits for it and refuses the
/// connection when it fails. Its stdout goes nowhere (upstream leaves the
/// daemon's, which is /dev/null for a detached daemon).
pub fn run_early(cmd: &str, env: &[(String, String)], early_input: &[u8]) -> Result<(), String> {
    let hook = spawn_hook(cmd, env, false).map_err(|e| e.to_string())?;
    match hook.finish_with("early exec", "", &[], early_input) {
        None => Ok(()),
        Some(text) => Err(text),
    }
}

fn spawn_hook(cmd: &str, env: &[(String, String)], capture: bool) -> std::io::Result<PreXfer> {
    let (args_r, args_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    // SAFETY: the session process is single-threaded here (no transfer
    // threads exist before the module is entered); the child only reads a
    // pipe and execs.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(args_w);
            drop(out_r);
            child(cmd, env, args_r, capture.then_some(out_w))
        }
        ForkResult::Parent { child } => {
            drop(args_r);
            drop(out_w);
            Ok(PreXfer {
                pid: child,
                args: File::from(args_w),
                output: File::from(out_r),
            })
        }
    }
}

/// One NUL-terminated string from the pipe, read a byte at a time so what
/// follows the arguments stays in the pipe for the command's stdin.
fn read_cstr(f: &mut File, budget: &mut usize) -> Option<Vec<u8>> {
    let mut s = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match f.read(&mut b) {
            Ok(1) if b[0] == 0 => return Some(s),
            Ok(1) => {
                *budget = budget.checked_sub(1)?;
                s.push(b[0]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => return None,
        }
    }
}

fn child(cmd: &str, env: &[(String, String)], args: OwnedFd, out: Option<OwnedFd>) -> ! {
    let mut args = File::from(args);
    let mut budget = MAX_ARGS_BYTES;
    let request = read_cstr(&mut args, &mut budget).filter(|r| !r.is_empty());
    let Some(request) = request else { exit_now(1) };
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(
            "RSYNC_REQUEST",
            String::from_utf8_lossy(&request).into_owned(),
        );
    let mut i = 0;
    loop {
        match read_cstr(&mut args, &mut budget) {
            Some(a) if a.is_empty() => break,
            Some(a) => command.env(
                format!("RSYNC_ARG{i}"),
                String::from_utf8_lossy(&a).into_owned(),
            ),
            None => exit_now(1),
        };
        i += 1;
    }
    command.stdin(Stdio::from(OwnedFd::from(args)));
    match out {
        Some(o) => command.stdout(Stdio::from(o)),
        None => command.stdout(Stdio::null()),
    };
    let _ = command.exec();
    exit_now(1)
}

/// Leaves a forked child without running the parent's exit handlers.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit only ends the process.
    unsafe { nix::libc::_exit(code) }
}

impl PreXfer {
    /// Sends the request and arguments, waits for the command and returns
    /// upstream's error text when it failed (`None` when it succeeded).
    pub fn finish(self, request: &str, args: &[String]) -> Option<String> {
        self.finish_with("pre-xfer exec", request, args, &[])
    }

    fn finish_with(
        mut self,
        desc: &str,
        request: &str,
        args: &[String],
        input: &[u8],
    ) -> Option<String> {
        let mut data = Vec::new();
        data.extend_from_slice(if request.is_empty() {
            b"(NONE)"
        } else {
            request.as_bytes()
        });
        data.push(0);
        for a in args {
            data.extend_from_slice(a.as_bytes());
            data.push(0);
        }
        data.push(0);
        data.extend_from_slice(input);
        // A command that does not read its stdin must not block us: the
        // pipe holds 64 KiB and the early input is at most 5 KiB.
        let _ = self.args.write_all(&data);
        drop(self.args);
        let mut out = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match self.output.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(out.len());
                    out.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
        let raw = loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, 0)) => return None,
                Ok(WaitStatus::Exited(_, code)) => break code << 8,
                Ok(WaitStatus::Signaled(_, sig, core)) => {
                    break sig as i32 | if core { 0x80 } else { 0 }
                }
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break -1,
            }
        };
        Some(failure_text(desc, raw, &out))
    }
}

/// finish_pre_exec's message: `pre-xfer exec returned failure (STATUS)`,
/// then `:` and the command's output (CR LF as LF) when it wrote any.
pub fn failure_text(desc: &str, raw_status: i32, output: &[u8]) -> String {
    let out = String::from_utf8_lossy(output).replace("\r\n", "\n");
    let colon = if out.is_empty() { "" } else { ":" };
    format!("{desc} returned failure ({raw_status}){colon}\n{out}")
}

/// A started `post-xfer exec` child waiting for the session's exit code.
#[derive(Debug)]
pub struct PostXfer {
    status: File,
}

/// The armed `post-xfer exec` of this session process, if any.
static POST_XFER: std::sync::Mutex<Option<PostXfer>> = std::sync::Mutex::new(None);

/// Forks the child that will run `cmd` once the session reports its exit
/// code (upstream forks a waiting parent instead; either way the command
/// runs outside any chroot, with the daemon's privileges). The child keeps
/// no descriptor of the connection open.
pub fn arm_post(cmd: &str, env: &[(String, String)]) -> std::io::Result<()> {
    let (status_r, status_w) = pipe()?;
    // SAFETY: as in `start`, the session is single-threaded here.
    match unsafe { fork() }? {
        ForkResult::Child => {
            drop(status_w);
            post_child(cmd, env, status_r)
        }
        ForkResult::Parent { .. } => {
            drop(status_r);
            if let Ok(mut slot) = POST_XFER.lock() {
                *slot = Some(PostXfer {
                    status: File::from(status_w),
                });
            }
            Ok(())
        }
    }
}

/// Reports the session's exit code to the armed `post-xfer exec`, if any.
pub fn notify_post(code: i32) {
    let armed = POST_XFER.lock().ok().and_then(|mut s| s.take());
    if let Some(mut p) = armed {
        let _ = p.status.write_all(&code.to_le_bytes());
    }
}

fn post_child(cmd: &str, env: &[(String, String)], status: OwnedFd) -> ! {
    use std::os::fd::AsRawFd;
    let keep = status.as_raw_fd();
    // Drop every inherited descriptor but the status pipe and stderr, so
    // the connection closes when the session ends.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        if fd != keep && fd != 2 {
            let _ = nix::unistd::close(fd);
        }
    }
    let mut code = [0u8; 4];
    let (exit, raw) = match File::from(status).read_exact(&mut code) {
        Ok(()) => {
            let c = i32::from_le_bytes(code);
            (c, c << 8)
        }
        // The session died without reporting (killed): upstream's -1.
        Err(_) => (-1, -1),
    };
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("RSYNC_EXIT_STATUS", exit.to_string())
        .env("RSYNC_RAW_STATUS", raw.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let code = match command.status() {
        Ok(st) => st.code().unwrap_or(-1),
        Err(_) => -1,
    };
    exit_now(code & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_text_shapes() {
        assert_eq!(
            failure_text("pre-xfer exec", 256, b""),
            "pre-xfer exec returned failure (256)\n"
        );
        assert_eq!(
            failure_text("pre-xfer exec", 512, b"no way\r\n"),
            "pre-xfer exec returned failure (512):\nno way\n"
        );
    }
}
