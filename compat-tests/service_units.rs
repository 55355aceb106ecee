//! The shipped service definitions actually start a working daemon.
//!
//! Each case reads a file under `etc/` (the systemd unit's `ExecStart=`, the
//! socket-activated unit's `ExecStart=`, the xinetd entry's `server` +
//! `server_args`), swaps only the binary path and the `--config=` value for
//! test ones, and starts rrsync exactly so: as a plain listening process for
//! `rrsyncd.service`, and with an accepted TCP socket on stdin/stdout for
//! the inetd-style entries. A stock client then pulls a module from it and
//! from a stock `rsync --daemon` on the same config; exit codes and trees
//! must agree.

use std::fs::File;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::compare::{config_text, tree_problem, unix_now, MODULE};
use crate::harness::daemon::{Daemon, START_TIMEOUT};
use crate::harness::process::{client_timeout, kill_group, run_client, Outcome};
use crate::harness::tmp::TempDir;
use crate::harness::tree::{self, SnapOptions};
use crate::harness::{bins, fixture, net};

/// The binary path every shipped file names.
const SHIPPED_BIN: &str = "/usr/local/bin/rrsync";
/// The config path every shipped file names.
const SHIPPED_CONFIG: &str = "--config=/etc/rsyncd.conf";

fn etc_file(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// The words of the first `key=value` / `key = value` line whose key is `key`.
fn value_words(text: &str, key: &str) -> Vec<String> {
    for line in text.lines() {
        let line = line.trim();
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() == key {
            return v.split_whitespace().map(str::to_string).collect();
        }
    }
    panic!("no `{key}` line in:\n{text}");
}

/// Replaces the shipped binary and config path in `argv` (binary first) by
/// ours and `conf`; panics if the shipped file does not name them (the
/// test would no longer exercise what ships).
fn substitute(argv: &[String], conf: &Path) -> (PathBuf, Vec<String>) {
    assert_eq!(
        argv.first().map(String::as_str),
        Some(SHIPPED_BIN),
        "{argv:?}"
    );
    assert!(argv.iter().any(|a| a == SHIPPED_CONFIG), "{argv:?}");
    let args = argv[1..]
        .iter()
        .map(|a| {
            if a == SHIPPED_CONFIG {
                format!("--config={}", conf.display())
            } else {
                a.clone()
            }
        })
        .collect();
    (bins::ours(), args)
}

/// Kills a started process group when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        kill_group(&mut self.0);
    }
}

/// Pulls `rsync://127.0.0.1:PORT/mod/` with the stock client into a fresh
/// `dest` under `dir`.
fn pull(port: u16, dir: &TempDir, dest: &str) -> (Outcome, PathBuf) {
    let d = dir.join(dest);
    let url = format!("rsync://127.0.0.1:{port}/{MODULE}/");
    let out = run_client(["-a".to_string(), url, d.display().to_string()]);
    (out, d)
}

/// Pulls the same module from a stock daemon on `config` and asserts that
/// `ours` (exit code + tree) matches it.
fn assert_like_stock(
    what: &str,
    config: &str,
    dir: &TempDir,
    ours: (Outcome, PathBuf),
    started: i64,
) {
    let stock_daemon = Daemon::start(&bins::stock(), config, "stock");
    let (stock_out, stock_dest) = pull(stock_daemon.port(), dir, "dest-stock");
    assert_eq!(
        stock_out.code,
        0,
        "stock pull failed:\n{}",
        stock_out.describe()
    );
    assert_eq!(
        ours.0.code,
        stock_out.code,
        "{what}: pull from rrsync:\n{}",
        ours.0.describe()
    );
    let problem = tree_problem(
        "pulled",
        &stock_dest,
        &ours.1,
        SnapOptions::default(),
        started,
    );
    assert!(problem.is_none(), "{what}: {}", problem.unwrap_or_default());
    let pulled = tree::snapshot(&ours.1);
    assert!(
        pulled.entries.len() > 5,
        "{what}: pulled tree is nearly empty"
    );
}

/// Serves one accepted connection with `bin args` on stdin/stdout (what
/// xinetd and systemd's `StandardInput=socket` do), while the stock client
/// pulls through it.
fn inetd_case(what: &str, bin: &Path, args: &[String], dir: &TempDir) -> (Outcome, PathBuf) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local_addr").port();
    let err_path = dir.join(format!("{what}-stderr.txt"));
    let err = File::create(&err_path).expect("create stderr file");
    let bin = bin.to_path_buf();
    let args = args.to_vec();
    let server = std::thread::spawn(move || -> Result<i32, String> {
        let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        let input = OwnedFd::from(stream.try_clone().map_err(|e| format!("dup: {e}"))?);
        let output = OwnedFd::from(stream);
        let child = Command::new(&bin)
            .args(&args)
            .stdin(Stdio::from(input))
            .stdout(Stdio::from(output))
            .stderr(Stdio::from(err))
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut guard = Guard(child);
        let deadline = Instant::now() + client_timeout() + Duration::from_secs(5);
        loop {
            match guard.0.try_wait() {
                Ok(Some(st)) => return Ok(st.code().unwrap_or(-1)),
                Ok(None) if Instant::now() >= deadline => return Err("server timed out".into()),
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("wait: {e}")),
            }
        }
    });
    let pulled = pull(port, dir, &format!("dest-{what}"));
    let served = server
        .join()
        .unwrap_or_else(|_| Err("server thread panicked".into()));
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert_eq!(
        served,
        Ok(0),
        "{what}: inetd-mode rrsync did not exit cleanly; its stderr:\n{stderr}\nclient:\n{}",
        pulled.0.describe()
    );
    pulled
}

compat_test! {
    fn systemd_service_execstart_serves_stock_client() {
        let dir = TempDir::new("unit-service");
        let src = dir.join("src");
        fixture::small_tree(&src);
        let started = unix_now();
        let argv = value_words(&etc_file("rrsyncd.service"), "ExecStart");
        // The unit names no port or address: they come from the config, as
        // they would in production.
        let mut attempt = 0;
        let (ours, config) = loop {
            attempt += 1;
            let port = net::free_port();
            let globals = vec![
                format!("port = {port}"),
                "address = 127.0.0.1".to_string(),
                format!("log file = {}", dir.join("ours.log").display()),
            ];
            let config = config_text(&src, &globals, &[], "");
            let conf = dir.join("rsyncd.conf");
            std::fs::write(&conf, &config).expect("write config");
            let (bin, args) = substitute(&argv, &conf);
            let out = File::create(dir.join("ours-out.txt")).expect("create output file");
            let child = Command::new(bin)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::from(out.try_clone().expect("dup")))
                .stderr(Stdio::from(out))
                .process_group(0)
                .spawn()
                .expect("start rrsync from ExecStart");
            let mut guard = Guard(child);
            let up = net::wait_accepts(port, Instant::now() + START_TIMEOUT, || {
                matches!(guard.0.try_wait(), Ok(None))
            });
            if up {
                let pulled = pull(port, &dir, "dest-ours");
                drop(guard);
                // The stock daemon gets its own port from the harness.
                let stock_config = config_text(&src, &[], &[], "");
                break (pulled, stock_config);
            }
            let output = std::fs::read_to_string(dir.join("ours-out.txt")).unwrap_or_default();
            assert!(attempt < 4, "rrsync from ExecStart did not come up:\n{output}");
        };
        assert_like_stock("rrsyncd.service", &config, &dir, ours, started);
    }
}

compat_test! {
    fn socket_activated_unit_serves_stock_client_on_stdin() {
        let dir = TempDir::new("unit-socket");
        let src = dir.join("src");
        fixture::small_tree(&src);
        let started = unix_now();
        let unit = etc_file("rrsyncd@.service");
        assert!(unit.contains("StandardInput=socket"), "{unit}");
        let argv = value_words(&unit, "ExecStart");
        let config = config_text(&src, &[], &[], "");
        let conf = dir.join("rsyncd.conf");
        std::fs::write(&conf, &config).expect("write config");
        let (bin, args) = substitute(&argv, &conf);
        let ours = inetd_case("socket-unit", &bin, &args, &dir);
        assert_like_stock("rrsyncd@.service", &config, &dir, ours, started);
    }
}

compat_test! {
    fn xinetd_entry_serves_stock_client_on_stdin() {
        let dir = TempDir::new("unit-xinetd");
        let src = dir.join("src");
        fixture::small_tree(&src);
        let started = unix_now();
        let entry = etc_file("xinetd.rrsync");
        let mut argv = value_words(&entry, "server");
        argv.extend(value_words(&entry, "server_args"));
        let config = config_text(&src, &[], &[], "");
        let conf = dir.join("rsyncd.conf");
        std::fs::write(&conf, &config).expect("write config");
        let (bin, args) = substitute(&argv, &conf);
        let ours = inetd_case("xinetd", &bin, &args, &dir);
        assert_like_stock("xinetd.rrsync", &config, &dir, ours, started);
    }
}
