//! The combined live view of a push on a terminal: one line per target
//! (state, files and bytes so far, attempt), redrawn in place a few times a
//! second while the targets run, then replaced by the final table. Only
//! when stdout is a terminal and nothing else prints per-file lines.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not started (waiting for a `--jobs` slot).
    Waiting = 0,
    /// Connected and sending.
    Sending = 1,
    /// Failed; waiting to retry.
    Retrying = 2,
    /// In sync.
    Done = 3,
    /// Failed for good.
    Failed = 4,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Sending,
            2 => State::Retrying,
            3 => State::Done,
            4 => State::Failed,
            _ => State::Waiting,
        }
    }

    fn label(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Sending => "sending",
            State::Retrying => "retrying",
            State::Done => "done",
            State::Failed => "FAILED",
        }
    }
}

/// One target's counters, updated by its transfer as files go out.
#[derive(Debug, Default)]
pub struct TargetLive {
    state: AtomicU8,
    files: AtomicU64,
    bytes: AtomicU64,
    attempt: AtomicU32,
}

impl TargetLive {
    /// A file was sent (its size in bytes).
    pub fn file_sent(&self, size: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// A new attempt starts (counters restart).
    pub fn attempt(&self, n: u32) {
        self.attempt.store(n, Ordering::Relaxed);
        self.files.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.set(State::Sending);
    }

    /// Move to `s`.
    pub fn set(&self, s: State) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    fn snapshot(&self) -> (State, u64, u64, u32) {
        (
            State::from_u8(self.state.load(Ordering::Relaxed)),
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.attempt.load(Ordering::Relaxed),
        )
    }
}

/// The lines of the view for these targets.
pub fn render(targets: &[(String, Arc<TargetLive>)]) -> Vec<String> {
    let width = targets
        .iter()
        .map(|(t, _)| t.len())
        .max()
        .unwrap_or(6)
        .max(6);
    targets
        .iter()
        .map(|(t, l)| {
            let (state, files, bytes, attempt) = l.snapshot();
            let mut line = format!(
                "{t:<width$}  {:<8}  {:>7} files  {:>14} bytes",
                state.label(),
                files,
                crate::role::stats::big_num(bytes as i64, 1)
            );
            if attempt > 1 {
                line.push_str(&format!("  (attempt {attempt})"));
            }
            line
        })
        .collect()
}

/// Redraws the view until dropped (then erases it).
pub struct LiveView {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveView {
    /// Start redrawing `targets` on stdout every 250 ms.
    pub fn start(targets: Vec<(String, Arc<TargetLive>)>) -> LiveView {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut drawn = 0usize;
            loop {
                let done = s.load(Ordering::Relaxed);
                let mut out = String::new();
                if drawn > 0 {
                    out.push_str(&format!("\x1b[{drawn}A"));
                }
                if done {
                    // Erase the view: the final table takes its place.
                    for _ in 0..drawn {
                        out.push_str("\x1b[2K\n");
                    }
                    if drawn > 0 {
                        out.push_str(&format!("\x1b[{drawn}A"));
                    }
                } else {
                    let lines = render(&targets);
                    for l in &lines {
                        out.push_str("\x1b[2K");
                        out.push_str(l);
                        out.push('\n');
                    }
                    drawn = lines.len();
                }
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(out.as_bytes());
                let _ = o.flush();
                if done {
                    return;
                }
                drop(o);
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        LiveView {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether stdout is a terminal (the view is for people, not pipes).
pub fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_state_counts_and_retries() {
        let a = Arc::new(TargetLive::default());
        let b = Arc::new(TargetLive::default());
        a.attempt(1);
        a.file_sent(1000);
        a.file_sent(2500);
        b.attempt(2);
        b.set(State::Retrying);
        let lines = render(&[
            ("rsync://h1/m/".to_string(), a.clone()),
            ("h2:/srv".to_string(), b),
        ]);
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("rsync://h1/m/  sending"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("      2 files"), "{}", lines[0]);
        assert!(lines[0].contains("3,500 bytes"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("h2:/srv        retrying"),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("(attempt 2)"), "{}", lines[1]);
        a.set(State::Done);
        assert!(render(&[("t".into(), a)])[0].contains("done"));
    }
}
