//! Bad input: hostile paths and symlinks, and broken conversations on the
//! daemon socket. Ours must behave like stock, never hang, and keep serving.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::compare::{PullCase, PullSpec, Servers, MODULE};
use crate::harness::daemon::Daemon;
use crate::harness::fixture::{self, small_tree};
use crate::harness::net;

/// How long a daemon may take to hang up on a broken conversation.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);

const SECRET: &[u8] = b"OUTSIDE-THE-MODULE-SECRET";

/// What a raw conversation produced.
#[derive(Debug)]
struct Raw {
    greeting: String,
    /// Bytes received after the greeting, until the daemon closed.
    response: Vec<u8>,
}

impl Raw {
    fn first_line(&self) -> String {
        let end = self
            .response
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(self.response.len());
        String::from_utf8_lossy(&self.response[..end]).into_owned()
    }
}

/// Connects to `daemon`, reads its greeting line, sends `send`, optionally
/// half-closes, then reads until the daemon closes. Panics if the daemon
/// keeps the connection open longer than `CLOSE_WITHIN`.
fn converse(daemon: &Daemon, send: &[u8], half_close: bool) -> Raw {
    let who = daemon.label().to_string();
    let mut s = TcpStream::connect_timeout(&net::addr(daemon.port()), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{who}: connect: {e}"));
    s.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    s.set_write_timeout(Some(CLOSE_WITHIN)).unwrap();
    let mut greeting = Vec::new();
    let mut b = [0u8; 1];
    while greeting.len() < 4096 {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(_) => {
                greeting.push(b[0]);
                if b[0] == b'\n' {
                    break;
                }
            }
            Err(e) => panic!("{who}: no greeting within {CLOSE_WITHIN:?}: {e}"),
        }
    }
    let greeting = String::from_utf8_lossy(&greeting).into_owned();
    let start = Instant::now();
    match s.write_all(send) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
            "{who}: daemon stopped reading but kept the connection open for {CLOSE_WITHIN:?} (hang)"
        ),
        Err(_) => {} // reset / broken pipe: the daemon hung up, which is fine
    }
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "{who}: daemon did not close the connection within {CLOSE_WITHIN:?} (hang); got so far: {:?}",
                String::from_utf8_lossy(&response)
            ),
            Err(_) => break, // reset counts as closed
        }
        assert!(
            start.elapsed() < CLOSE_WITHIN,
            "{who}: daemon kept talking for {CLOSE_WITHIN:?}"
        );
    }
    Raw { greeting, response }
}

/// Both daemons serving the small tree, not yet pulled from: the raw-socket
/// tests abuse them first.
fn small_servers(name: &str) -> Servers {
    PullCase::new(name, small_tree).serve()
}

/// After abuse, both daemons must still serve a normal pull identically.
fn still_serves(servers: &Servers) {
    let spec = PullSpec {
        args: vec!["-a".into(), "-i".into()],
        ..PullSpec::default()
    };
    servers.pull(&spec);
}

fn contains_secret(root: &Path) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        } else if meta.is_file() {
            let data = std::fs::read(&p).unwrap_or_default();
            if data.windows(SECRET.len()).any(|w| w == SECRET) {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

compat_test! {
    fn bad_path_dotdot_is_clamped_to_module() {
        let run = PullCase::new("bad_path_dotdot_is_clamped_to_module", small_tree)
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/../etc"))
            .compare_stderr()
            .run();
        let dest = run.ours.dest.as_ref().unwrap();
        assert!(!dest.join("etc/passwd").exists() && !dest.join("passwd").exists(), "read the host's /etc");
    }
}

compat_test! {
    fn bad_path_dotdot_to_host_file_fails() {
        PullCase::new("bad_path_dotdot_to_host_file_fails", small_tree)
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/../../../../etc/passwd"))
            .expect_stock_code(Some(23))
            .compare_stderr()
            .run();
    }
}

/// Module `src` holding symlinks (relative, absolute, to a dir) that lead to
/// `../outside`, which holds a secret.
fn escaping_links(src: &Path) {
    small_tree(src);
    let work = src.parent().unwrap();
    fixture::write(work, "outside/secret.txt", SECRET);
    fixture::write(work, "outside/deeper/secret2.txt", SECRET);
    fixture::symlink(src, "escape_rel", "../outside/secret.txt");
    let abs = work.join("outside/secret.txt");
    fixture::symlink(src, "escape_abs", abs.to_str().unwrap());
    fixture::symlink(src, "escape_dir", "../outside");
    fixture::symlink(src, "sub/escape_deep", "../../outside/deeper/secret2.txt");
    fixture::pin_times(src, &[]);
}

fn symlink_escape(name: &str, args: &[&str]) {
    let run = PullCase::new(name, escaping_links)
        .args(args)
        .expect_stock_code(None)
        .compare_stderr()
        .run();
    let stock_hits = contains_secret(run.stock.dest.as_ref().unwrap());
    let ours_hits = contains_secret(run.ours.dest.as_ref().unwrap());
    assert!(
        stock_hits.is_empty() || !ours_hits.is_empty(),
        "inconsistent: stock leaked {stock_hits:?}"
    );
    assert!(
        ours_hits.is_empty(),
        "ours read outside the module: {ours_hits:?}"
    );
}

compat_test! {
    fn bad_symlink_escape_with_copy_links() {
        symlink_escape("bad_symlink_escape_with_copy_links", &["-a", "-i", "-L"]);
    }
}

compat_test! {
    fn bad_symlink_escape_with_copy_unsafe_links() {
        symlink_escape("bad_symlink_escape_with_copy_unsafe_links", &["-a", "-i", "--copy-unsafe-links"]);
    }
}

compat_test! {
    fn bad_symlink_escape_with_copy_dirlinks() {
        symlink_escape("bad_symlink_escape_with_copy_dirlinks", &["-a", "-i", "--copy-dirlinks"]);
    }
}

fn same_greeting_kind(stock: &Raw, ours: &Raw) {
    assert!(
        stock.greeting.starts_with("@RSYNCD: "),
        "stock greeting {:?}",
        stock.greeting
    );
    assert!(
        ours.greeting.starts_with("@RSYNCD: "),
        "ours greeting {:?}",
        ours.greeting
    );
}

compat_test! {
    fn bad_garbage_greeting_is_closed_then_serves() {
        let srv = small_servers("bad_garbage_greeting_is_closed_then_serves");
        let garbage = b"\x00\xff\x16\x03\x01GARBAGE, not a greeting\r\n\n\n";
        let s = converse(&srv.pair.stock, garbage, false);
        let o = converse(&srv.pair.ours, garbage, false);
        same_greeting_kind(&s, &o);
        let ok = |r: &Raw| !String::from_utf8_lossy(&r.response).contains("@RSYNCD: OK");
        assert!(ok(&s) && ok(&o), "garbage was accepted: stock {s:?} ours {o:?}");
        still_serves(&srv);
    }
}

compat_test! {
    fn bad_oversized_greeting_is_closed_then_serves() {
        let srv = small_servers("bad_oversized_greeting_is_closed_then_serves");
        let huge = vec![b'A'; 1 << 20];
        let s = converse(&srv.pair.stock, &huge, false);
        let o = converse(&srv.pair.ours, &huge, false);
        same_greeting_kind(&s, &o);
        still_serves(&srv);
    }
}

compat_test! {
    fn bad_truncated_after_greeting_then_serves() {
        let srv = small_servers("bad_truncated_after_greeting_then_serves");
        let hello = b"@RSYNCD: 32.0 md5 md4\n";
        let s = converse(&srv.pair.stock, hello, true);
        let o = converse(&srv.pair.ours, hello, true);
        assert_eq!(s.first_line(), o.first_line(), "stock {s:?}\nours {o:?}");
        still_serves(&srv);
    }
}

compat_test! {
    fn bad_truncated_after_module_then_serves() {
        let srv = small_servers("bad_truncated_after_module_then_serves");
        let msg = format!("@RSYNCD: 32.0 md5 md4\n{MODULE}\n");
        let s = converse(&srv.pair.stock, msg.as_bytes(), true);
        let o = converse(&srv.pair.ours, msg.as_bytes(), true);
        assert_eq!(s.first_line(), "@RSYNCD: OK");
        assert_eq!(s.first_line(), o.first_line(), "stock {s:?}\nours {o:?}");
        still_serves(&srv);
    }
}

compat_test! {
    fn bad_truncated_mid_arguments_then_serves() {
        let srv = small_servers("bad_truncated_mid_arguments_then_serves");
        let msg = format!("@RSYNCD: 32.0 md5 md4\n{MODULE}\n--server\0--sen");
        let s = converse(&srv.pair.stock, msg.as_bytes(), true);
        let o = converse(&srv.pair.ours, msg.as_bytes(), true);
        assert_eq!(s.first_line(), o.first_line(), "stock {s:?}\nours {o:?}");
        still_serves(&srv);
    }
}

compat_test! {
    fn bad_truncated_after_sender_arguments_then_serves() {
        let srv = small_servers("bad_truncated_after_sender_arguments_then_serves");
        let msg = format!("@RSYNCD: 32.0 md5 md4\n{MODULE}\n--server\0--sender\0-r\0.\0{MODULE}/\0\0");
        let s = converse(&srv.pair.stock, msg.as_bytes(), true);
        let o = converse(&srv.pair.ours, msg.as_bytes(), true);
        assert_eq!(s.first_line(), o.first_line(), "stock {s:?}\nours {o:?}");
        still_serves(&srv);
    }
}

compat_test! {
    fn bad_unknown_module_error_matches() {
        let srv = small_servers("bad_unknown_module_error_matches");
        let msg = b"@RSYNCD: 32.0 md5 md4\nnosuchmodule\n";
        let s = converse(&srv.pair.stock, msg, false);
        let o = converse(&srv.pair.ours, msg, false);
        assert_eq!(
            String::from_utf8_lossy(&s.response),
            String::from_utf8_lossy(&o.response)
        );
        still_serves(&srv);
    }
}

compat_test! {
    fn bad_connect_and_hang_up_then_serves() {
        let srv = small_servers("bad_connect_and_hang_up_then_serves");
        for d in [&srv.pair.stock, &srv.pair.ours] {
            for _ in 0..5 {
                drop(TcpStream::connect(net::addr(d.port())).unwrap());
            }
        }
        still_serves(&srv);
    }
}

/// Runs the text phase and the argument list of a pull on a raw socket,
/// reads the server's setup (compat flags + seed; no negotiation because no
/// capability letters are sent), and returns the socket ready for the
/// multiplexed stream.
fn raw_pull_setup(daemon: &Daemon) -> TcpStream {
    let mut s =
        TcpStream::connect_timeout(&net::addr(daemon.port()), Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(CLOSE_WITHIN)).unwrap();
    s.write_all(format!("@RSYNCD: 32.0 md5 md4\n{MODULE}\n").as_bytes())
        .unwrap();
    let mut text = Vec::new();
    let mut b = [0u8; 1];
    while !String::from_utf8_lossy(&text).contains("@RSYNCD: OK\n") {
        assert!(
            s.read(&mut b).unwrap() == 1,
            "{}: closed during the text phase",
            daemon.label()
        );
        text.push(b[0]);
    }
    s.write_all(format!("--server\0--sender\0-r\0.\0{MODULE}/\0\0").as_bytes())
        .unwrap();
    let mut setup = [0u8; 5]; // varint compat flags (1 byte) + int32 seed
    s.read_exact(&mut setup).unwrap();
    s
}

/// Reads until the daemon closes; panics if it keeps the socket open.
fn expect_close(mut s: TcpStream, who: &str) {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{who}: still open after {:?} (hang)", start.elapsed())
            }
            Err(_) => return,
        }
    }
}

compat_test! {
    fn bad_huge_filter_rule_length_is_refused() {
        let srv = small_servers("bad_huge_filter_rule_length_is_refused");
        for d in [&srv.pair.stock, &srv.pair.ours] {
            let mut s = raw_pull_setup(d);
            // One MSG_DATA frame carrying a filter rule that claims 2 GiB.
            let mut frame = vec![4, 0, 0, 7];
            frame.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
            s.write_all(&frame).unwrap();
            let _ = s.shutdown(Shutdown::Write);
            expect_close(s, d.label());
        }
        still_serves(&srv);
    }
}

compat_test! {
    fn bad_huge_message_frame_is_refused() {
        let srv = small_servers("bad_huge_message_frame_is_refused");
        for d in [&srv.pair.stock, &srv.pair.ours] {
            let mut s = raw_pull_setup(d);
            // An MSG_INFO frame header announcing 16 MiB - 1, then nothing more.
            s.write_all(&[0xff, 0xff, 0xff, 7 + 2]).unwrap();
            s.write_all(b"short").unwrap();
            let _ = s.shutdown(Shutdown::Write);
            expect_close(s, d.label());
        }
        still_serves(&srv);
    }
}

compat_test! {
    fn bad_bogus_file_index_is_refused() {
        let srv = small_servers("bad_bogus_file_index_is_refused");
        for d in [&srv.pair.stock, &srv.pair.ours] {
            let mut s = raw_pull_setup(d);
            // Empty filter list, then (after the file list arrives) a request for index 1000000.
            s.write_all(&[4, 0, 0, 7, 0, 0, 0, 0]).unwrap();
            // ndx 1000000 in the 5-byte form, iflags ITEM_TRANSFER.
            s.write_all(&[7, 0, 0, 7, 0xfe, 0x80, 0x40, 0x42, 0x0f, 0x00, 0x80]).unwrap();
            let _ = s.shutdown(Shutdown::Write);
            expect_close(s, d.label());
        }
        still_serves(&srv);
    }
}

// A client that connects and then says nothing must not stop others being served.
compat_test! {
    fn bad_idle_connections_do_not_block_others() {
        let srv = small_servers("bad_idle_connections_do_not_block_others");
        let idle: Vec<TcpStream> = (0..20)
            .flat_map(|_| [&srv.pair.stock, &srv.pair.ours])
            .map(|d| TcpStream::connect_timeout(&net::addr(d.port()), Duration::from_secs(5)).unwrap())
            .collect();
        still_serves(&srv);
        drop(idle);
    }
}
