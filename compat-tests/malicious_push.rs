//! A hostile client pushing into a writable module, speaking the protocol
//! itself (with rrsync's own wire encoder): names with `..`, absolute names,
//! a symlink created in the transfer and then used as a directory, file data
//! for an index that does not exist. Both daemons must refuse, nothing
//! outside the module may change, and both must go on serving.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::daemon::Daemon;
use crate::harness::fixture::small_tree;
use crate::harness::net;
use crate::harness::push::{PushCase, PushSpec, Which};
use rrsync::protocol::flist::{FileEntry, FlistEncoder, FlistOpts};
use rrsync::protocol::mux::{frame, MsgCode};

const WAIT: Duration = Duration::from_secs(10);

/// Text phase + argument list of an upload of `-lr` into `mod/`; returns the
/// socket after the server's compat flags and seed.
fn open_upload(d: &Daemon) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&net::addr(d.port()), Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"@RSYNCD: 32.0 md5 md4\nmod\n").unwrap();
    let mut text = Vec::new();
    let mut b = [0u8; 1];
    while !String::from_utf8_lossy(&text).contains("@RSYNCD: OK\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "{}: closed in the text phase: {}",
            d.label(),
            String::from_utf8_lossy(&text)
        );
        text.push(b[0]);
    }
    s.write_all(b"--server\0-lr\0.\0mod/\0\0").unwrap();
    let mut setup = [0u8; 5]; // compat flags (one varint byte) + int32 seed
    s.read_exact(&mut setup).unwrap();
    s
}

/// A file list (protocol 32 without varint flags, `-l`) in one MSG_DATA frame.
fn flist_frame(entries: &[FileEntry]) -> Vec<u8> {
    let o = FlistOpts {
        proto: 32,
        preserve_links: true,
        safe_flist: true,
        ..Default::default()
    };
    let mut enc = FlistEncoder::new(o);
    let mut v = Vec::new();
    for e in entries {
        enc.encode(&mut v, e);
    }
    enc.end(&mut v, 0);
    frame(MsgCode::Data, &v)
}

/// Read until the daemon closes; panics if it keeps the connection open.
fn until_closed(mut s: TcpStream, who: &str) -> Vec<u8> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{who}: still open after {:?}", start.elapsed())
            }
            Err(_) => return got,
        }
    }
}

fn file(name: &str) -> FileEntry {
    FileEntry {
        name: name.as_bytes().to_vec(),
        mode: 0o100644,
        size: 5,
        mtime: 1_700_000_000,
        ..Default::default()
    }
}

fn dir(name: &str) -> FileEntry {
    FileEntry {
        name: name.as_bytes().to_vec(),
        mode: 0o040755,
        size: 4096,
        mtime: 1_700_000_000,
        top_dir: name == ".",
        ..Default::default()
    }
}

/// Everything under `p` (names only), to prove nothing appeared outside.
fn listing(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn hostile_upload(name: &str, entries: Vec<FileEntry>, extra: &[u8], module_lines: &[&str]) {
    hostile_upload_into(name, entries, extra, module_lines, |_| {});
}

/// [`hostile_upload`] into modules that `prepare` has filled first.
fn hostile_upload_into(
    name: &str,
    entries: Vec<FileEntry>,
    extra: &[u8],
    module_lines: &[&str],
    prepare: impl Fn(&Path),
) {
    let mut case = PushCase::new(name, small_tree);
    for l in module_lines {
        case = case.module_line(l);
    }
    let servers = case.serve();
    for side in [Which::Stock, Which::Ours] {
        let module = servers.module(side);
        prepare(&module);
        let outside = module.parent().unwrap().to_path_buf();
        let before = listing(&outside);
        let d = servers.daemon(side);
        let mut s = open_upload(d);
        s.write_all(&flist_frame(&entries)).unwrap();
        s.write_all(extra).unwrap();
        let _ = s.shutdown(Shutdown::Write);
        until_closed(s, d.label());
        assert_eq!(
            listing(&outside),
            before,
            "{}: something changed beside the module",
            d.label()
        );
        assert!(
            !Path::new("/tmp/rrsync-hostile-abs.txt").exists(),
            "{}: wrote an absolute path",
            d.label()
        );
        assert!(!outside.join("escape.txt").exists());
    }
    // Stock's receiver can be cut off by the client's hangup before it
    // removes its temp file (".escape.txt.XXXXXX"); that leftover is not
    // part of what the follow-up push compares.
    std::thread::sleep(std::time::Duration::from_millis(200));
    for side in [Which::Stock, Which::Ours] {
        let module = servers.module(side);
        for name in listing(&module) {
            let is_temp = name.starts_with('.')
                && name.rsplit_once('.').is_some_and(|(_, sfx)| sfx.len() == 6);
            if is_temp && side == Which::Stock {
                let _ = std::fs::remove_file(module.join(&name));
            }
        }
    }
    // Both still serve an ordinary push.
    servers.push(&PushSpec::with_args(&["-a", "-i"]));
}

compat_test! {
    fn hostile_push_dotdot_name_is_refused() {
        hostile_upload("hostile_push_dotdot_name_is_refused", vec![dir("."), file("../escape.txt")], &[], &[]);
    }
}

compat_test! {
    fn hostile_push_absolute_name_is_refused() {
        hostile_upload("hostile_push_absolute_name_is_refused", vec![dir("."), file("/tmp/rrsync-hostile-abs.txt")], &[], &[]);
    }
}

compat_test! {
    fn hostile_push_symlink_then_used_as_dir() {
        // "link" -> the directory beside the module, then "link/escape.txt":
        // the symlink may be created (munging off), but nothing may be written through it.
        let mut link = FileEntry { name: b"link".to_vec(), mode: 0o120777, size: 2, mtime: 1_700_000_000, ..Default::default() };
        link.set_link_target(Some(b"..".to_vec()));
        let mut data = Vec::new();
        // Unrequested data for index 2 ("link/escape.txt"): ndx, iflags TRANSFER, empty sum head, 5 literal bytes, end, digest.
        let mut body = vec![0x03, 0x00, 0x80];
        body.extend_from_slice(&[0u8; 16]);
        body.extend_from_slice(&5i32.to_le_bytes());
        body.extend_from_slice(b"owned");
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(&[0u8; 16]);
        data.extend(frame(MsgCode::Data, &body));
        hostile_upload(
            "hostile_push_symlink_then_used_as_dir",
            vec![dir("."), link, file("link/escape.txt")],
            &data,
            &["munge symlinks = no"],
        );
    }
}

compat_test! {
    fn hostile_push_index_out_of_range() {
        // A transfer for index 1000 of a 2-entry list.
        let body = [0xfe, 0x80, 0xe8, 0x03, 0x00, 0x00, 0x80];
        hostile_upload("hostile_push_index_out_of_range", vec![dir("."), file("ok.txt")], &frame(MsgCode::Data, &body), &[]);
    }
}

/// Transfer data for index 1 (`ok.txt`, requested or not): iflags
/// TRANSFER, an empty sum head, then `tokens` and the end of the stream.
fn transfer_for_index_1(tokens: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0x00, 0x80];
    body.extend_from_slice(&[0u8; 16]);
    body.extend_from_slice(tokens);
    frame(MsgCode::Data, &body)
}

compat_test! {
    fn hostile_push_declared_length_beyond_the_data() {
        // A literal token announcing ~2 GiB, followed by 5 bytes and a hangup:
        // no allocation of the declared size, no hang, nothing outside changes,
        // and both daemons serve the next push.
        let mut tokens = 0x7fff_0000i32.to_le_bytes().to_vec();
        tokens.extend_from_slice(b"short");
        hostile_upload(
            "hostile_push_declared_length_beyond_the_data",
            vec![dir("."), file("ok.txt")],
            &transfer_for_index_1(&tokens),
            &[],
        );
    }
}

compat_test! {
    fn hostile_push_through_a_symlink_already_in_the_module() {
        // The module already holds "out" -> its parent (CVE-2024-12087/12088
        // class); the upload names "out/escape.txt" without listing "out".
        let mut tokens = 5i32.to_le_bytes().to_vec();
        tokens.extend_from_slice(b"owned");
        tokens.extend_from_slice(&0i32.to_le_bytes());
        tokens.extend_from_slice(&[0u8; 16]);
        hostile_upload_into(
            "hostile_push_through_a_symlink_already_in_the_module",
            vec![dir("."), file("out/escape.txt")],
            &transfer_for_index_1(&tokens),
            &["munge symlinks = no"],
            |module| {
                let _ = std::os::unix::fs::symlink("..", module.join("out"));
            },
        );
    }
}
