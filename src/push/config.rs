//! `rrsync push --config=FILE`: long-running push jobs in the rsyncd.conf
//! dialect (same lexer: sections, `name = value`, `\` continuations,
//! comments). Parameters before the first section are defaults for every
//! job; each section is one job:
//!
//! ```text
//! # /etc/rrsync-push.conf
//! options = -a --delete
//! retries = 5
//!
//! [www]
//!     source = /srv/www/
//!     targets = rsync://web1/www/ rsync://web2/www/ backup::www/
//!     options = -a --delete --exclude=*.tmp
//!     watch = yes
//!     delay = 0
//!     full every = 3600
//!     status file = /run/rrsync-push/www.status
//! ```
//!
//! Names are case- and blank-insensitive as in rsyncd.conf; an unknown name
//! or a bad value is an error naming the file and line.

use super::PushOpts;
use crate::daemon::config::lexer::{Item, Lexer};
use std::time::Duration;

/// One job of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The section name.
    pub name: String,
    /// The source directory.
    pub source: String,
    /// Its targets.
    pub targets: Vec<String>,
    /// rsync options, split at blanks.
    pub options: Vec<String>,
    /// Push options (`watch`, `jobs`, `retries`, `delay`, `full every`, `status file`).
    pub push: PushOptsSpec,
}

/// The push options a job sets (kept as given until run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushOptsSpec {
    /// `watch`.
    pub watch: bool,
    /// `jobs`.
    pub jobs: Option<usize>,
    /// `retries`.
    pub retries: Option<u32>,
    /// `delay` (ms).
    pub delay_ms: Option<u64>,
    /// `full every` (s).
    pub full_every_s: Option<u64>,
    /// `status file`.
    pub status: Option<String>,
}

impl PushOptsSpec {
    /// The run-time options.
    pub fn to_opts(&self) -> PushOpts {
        let d = PushOpts::default();
        PushOpts {
            jobs: self.jobs.unwrap_or(d.jobs),
            retries: self.retries.unwrap_or(d.retries),
            backoff: d.backoff,
            watch: self.watch,
            delay: self.delay_ms.map(Duration::from_millis).unwrap_or(d.delay),
            full_every: self.full_every_s.map(|s| Duration::from_secs(s.max(1))),
            status: self.status.clone(),
            config: None,
        }
    }
}

fn canon(name: &str) -> String {
    name.to_ascii_lowercase().replace([' ', '\t', '_'], "")
}

fn yes(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Some(true),
        "no" | "false" | "0" | "off" => Some(false),
        _ => None,
    }
}

/// Parse the text of a push config (`path` names it in errors).
pub fn parse(path: &str, text: &str) -> Result<Vec<Job>, String> {
    let mut defaults = Job {
        name: String::new(),
        source: String::new(),
        targets: Vec::new(),
        options: Vec::new(),
        push: PushOptsSpec::default(),
    };
    let mut jobs: Vec<Job> = Vec::new();
    let mut cur: Option<Job> = None;
    for item in Lexer::new(text) {
        let item = item.map_err(|(line, e)| format!("{path}:{line}: {e}"))?;
        match item {
            Item::Section { name, .. } => {
                if let Some(j) = cur.take() {
                    jobs.push(j);
                }
                let mut j = defaults.clone();
                j.name = name;
                cur = Some(j);
            }
            Item::Directive { line, name, .. } => {
                return Err(format!("{path}:{line}: unknown directive {name}"));
            }
            Item::Param { line, name, value } => {
                let j = cur.as_mut().unwrap_or(&mut defaults);
                let bad = |what: &str| format!("{path}:{line}: {name}: {what} \"{value}\"");
                let num = |v: &str| v.trim().parse::<u64>().map_err(|_| bad("not a number"));
                match canon(&name).as_str() {
                    "source" | "path" => j.source = value.clone(),
                    "targets" | "target" => {
                        j.targets = value.split_whitespace().map(str::to_string).collect()
                    }
                    "options" => j.options = value.split_whitespace().map(str::to_string).collect(),
                    "watch" => j.push.watch = yes(&value).ok_or_else(|| bad("not yes/no"))?,
                    "jobs" => j.push.jobs = Some(num(&value)? as usize),
                    "retries" => j.push.retries = Some(num(&value)?.min(1000) as u32),
                    "delay" => j.push.delay_ms = Some(num(&value)?),
                    "fullevery" => j.push.full_every_s = Some(num(&value)?),
                    "statusfile" | "status" => j.push.status = Some(value.clone()),
                    _ => return Err(format!("{path}:{line}: unknown parameter \"{name}\"")),
                }
            }
        }
    }
    if let Some(j) = cur.take() {
        jobs.push(j);
    }
    if jobs.is_empty() {
        return Err(format!("{path}: no [job] section"));
    }
    for j in &jobs {
        if j.source.is_empty() {
            return Err(format!("{path}: [{}]: no source", j.name));
        }
        if j.targets.is_empty() {
            return Err(format!("{path}: [{}]: no targets", j.name));
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_with_defaults() {
        let text = "options = -a\nRetries = 5\n[www]\n  Source = /srv/www/\n  targets = a::m/ \\\n     b::m/\n  watch = yes\n  full every = 60\n[etc]\n source=/etc/\n targets = c:/backup/etc/\n options = -a --delete\n";
        let jobs = parse("t.conf", text).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].name, "www");
        assert_eq!(jobs[0].targets, ["a::m/", "b::m/"]);
        assert_eq!(jobs[0].options, ["-a"]);
        assert!(jobs[0].push.watch);
        assert_eq!(jobs[0].push.retries, Some(5));
        assert_eq!(jobs[0].push.full_every_s, Some(60));
        assert_eq!(jobs[1].options, ["-a", "--delete"]);
        assert!(!jobs[1].push.watch);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("x.conf", "[a]\nsource = /s\ntargets = t\nbogus = 1\n").unwrap_err();
        assert_eq!(e, "x.conf:4: unknown parameter \"bogus\"");
        let e = parse("x.conf", "[a]\nsource = /s\ntargets = t\nwatch = maybe\n").unwrap_err();
        assert!(e.starts_with("x.conf:4: watch: not yes/no"), "{e}");
        assert!(parse("x.conf", "[a]\nsource = /s\n").is_err());
        assert!(parse("x.conf", "jobs = 2\n").is_err());
    }
}
