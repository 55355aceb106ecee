//! Reaching a daemon without a direct connection, our client beside stock's
//! (upstream socket.c): `RSYNC_CONNECT_PROG` (a command whose stdin and
//! stdout are the connection; here a stock daemon in inetd mode) and
//! `RSYNC_PROXY` (a web proxy's CONNECT; here a small proxy in the test
//! that records what it was asked).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::harness::bins;
use crate::harness::daemon::Daemon;
use crate::harness::fixture;
use crate::harness::process::{client_timeout, run_cmd_env, Outcome};
use crate::harness::tmp::TempDir;
use crate::harness::tree::{diff, format_diff, snapshot};

fn config(src: &Path) -> String {
    format!(
        "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n    comment = the tree\n",
        src.display()
    )
}

/// Run both clients with `env` and `args` + a destination each; compare
/// exit codes, stdout and trees.
fn both(work: &TempDir, env: &[(&str, &str)], args: &[String]) -> (Outcome, Outcome) {
    let mut outs = Vec::new();
    for (side, bin) in [("stock", bins::stock()), ("ours", bins::ours())] {
        let mut a = args.to_vec();
        a.push(format!("{}/", work.join(side).display()));
        outs.push(run_cmd_env(&bin, &a, env, client_timeout()));
    }
    let ours = outs.pop().expect("ours");
    let stock = outs.pop().expect("stock");
    assert_eq!(
        stock.code, ours.code,
        "exit codes differ\nstock: {}\nours: {}",
        stock.stderr, ours.stderr
    );
    assert_eq!(
        stock.stdout.replace("/stock", "/SIDE"),
        ours.stdout.replace("/ours", "/SIDE"),
        "stdout differs"
    );
    let (a, b) = (snapshot(&work.join("stock")), snapshot(&work.join("ours")));
    let d = diff("stock", &a, "ours", &b);
    assert!(d.is_empty(), "trees differ:\n{}", format_diff(&d, 20));
    (stock, ours)
}

compat_test! {
    fn connect_prog_runs_a_daemon_over_its_stdio() {
        let work = TempDir::new("connect_prog");
        let src = work.join("src");
        fixture::small_tree(&src);
        let conf = work.join("rsyncd.conf");
        std::fs::write(&conf, config(&src)).expect("config");
        // %H arrives quoted; the program checks it, then serves.
        let prog = format!(
            "test %H = 127.0.0.1 && exec {} --daemon --config={}",
            bins::stock().display(),
            conf.display()
        );
        let env = [("RSYNC_CONNECT_PROG", prog.as_str())];
        let (stock, _) = both(&work, &env, &["-a".into(), "-i".into(), "rsync://127.0.0.1/mod/".into()]);
        assert_eq!(stock.code, 0, "{}", stock.stderr);
        // A module listing through it, and a host the program refuses.
        let list: Vec<Outcome> = [bins::stock(), bins::ours()]
            .iter()
            .map(|b| run_cmd_env(b, ["rsync://127.0.0.1/"], &env, client_timeout()))
            .collect();
        assert_eq!(list[0].stdout, list[1].stdout, "listing differs");
        assert!(list[0].stdout.contains("the tree"), "{}", list[0].stdout);
        for bin in [bins::stock(), bins::ours()] {
            let o = run_cmd_env(&bin, ["rsync://-x/mod/"], &env, client_timeout());
            assert!(
                o.code != 0 && o.stderr.contains("unsafe host characters for RSYNC_CONNECT_PROG"),
                "{}: {} {}",
                bin.display(),
                o.code,
                o.stderr
            );
        }
    }
}

/// A web proxy on loopback that accepts CONNECT (answering `status`),
/// records each request's header lines, and relays bytes both ways.
fn start_proxy(status: &'static str) -> (u16, Arc<Mutex<Vec<Vec<String>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("proxy listen");
    let port = l.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || relay(c, status, &log));
        }
    });
    (port, seen)
}

fn relay(c: TcpStream, status: &str, log: &Mutex<Vec<Vec<String>>>) {
    let mut r = BufReader::new(c.try_clone().expect("clone"));
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 {
            return;
        }
        let l = l.trim_end().to_string();
        if l.is_empty() {
            break;
        }
        lines.push(l);
    }
    let target = lines
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    log.lock().expect("log").push(lines);
    let mut w = c;
    if !status.starts_with("HTTP/1.0 200") {
        let _ = write!(w, "{status}\r\n\r\n");
        return;
    }
    let Ok(up) = TcpStream::connect(&target) else {
        return;
    };
    let _ = write!(w, "{status}\r\nProxy-Agent: test\r\n\r\n");
    let (mut up_r, mut up_w) = (up.try_clone().expect("clone"), up);
    let mut down_w = w.try_clone().expect("clone");
    // What the client sent after its request (none: it waits for us).
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut r, &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_r, &mut down_w);
    let _ = down_w.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

compat_test! {
    fn proxy_connect_with_and_without_credentials() {
        let work = TempDir::new("proxy");
        let src = work.join("src");
        fixture::small_tree(&src);
        let d = Daemon::start(&bins::stock(), &config(&src), "stock");
        let (port, seen) = start_proxy("HTTP/1.0 200 Connection established");
        for spec in [format!("127.0.0.1:{port}"), format!("joe:s3cr:et@127.0.0.1:{port}")] {
            seen.lock().expect("log").clear();
            let env = [("RSYNC_PROXY", spec.as_str())];
            let (stock, _) = both(&work, &env, &["-a".into(), "-i".into(), d.url("mod/")]);
            assert_eq!(stock.code, 0, "{}", stock.stderr);
            let reqs = seen.lock().expect("log").clone();
            assert_eq!(reqs.len(), 2, "one CONNECT per client: {reqs:?}");
            assert_eq!(reqs[0], reqs[1], "the requests differ");
            assert_eq!(reqs[0][0], format!("CONNECT 127.0.0.1:{} HTTP/1.0", d.port()));
            if spec.contains('@') {
                // base64("joe:s3cr:et")
                assert_eq!(reqs[0].get(1).map(String::as_str), Some("Proxy-Authorization: Basic am9lOnMzY3I6ZXQ="));
            }
        }
        // A proxy that refuses, and a malformed setting.
        let (port, _) = start_proxy("HTTP/1.0 403 Forbidden");
        for spec in [format!("127.0.0.1:{port}"), "no-port-here".to_string()] {
            let env = [("RSYNC_PROXY", spec.as_str())];
            let (stock, ours) = both(&work, &env, &["-a".into(), d.url("mod/")]);
            assert_ne!(stock.code, 0);
            let first = |s: &str| s.lines().next().unwrap_or_default().to_string();
            assert_eq!(first(&stock.stderr), first(&ours.stderr), "first error line");
        }
    }
}
