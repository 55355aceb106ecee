//! Option checks of the client (upstream options.c parse_arguments and the
//! start of main.c start_client): for each argument set, stock rsync and
//! rrsync run in the same scratch layout and must agree on the exit code,
//! on stderr (source locations and versions aside, the role kept), and on
//! what reaches the destination (nothing, when the options are refused).

use crate::harness::bins;
use crate::harness::process::{client_timeout, run_cmd, Outcome};
use crate::harness::tmp::TempDir;
use std::path::Path;

/// How much of stderr must agree.
#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    /// Every line.
    All,
    /// The first line only (stock's two sides both say it, and which
    /// exits first decides the rest).
    FirstLine,
    /// The last line only (the usage text before it is each program's own).
    LastLine,
}

/// One case: the arguments (run in a directory holding `src/a`, `src/sub/`
/// and an empty `dst/`) and what to compare.
struct Row {
    args: &'static [&'static str],
    cmp: Cmp,
}

const fn all(args: &'static [&'static str]) -> Row {
    Row {
        args,
        cmp: Cmp::All,
    }
}

/// The argument sets: each refused by stock (or accepted where rrsync once
/// refused it).
const ROWS: &[Row] = &[
    // Refusals printed after "rsync: " (upstream option_error).
    all(&["--del", "src/", "dst/"]),
    all(&["--chmod=Q+x", "-r", "src/", "dst/"]),
    all(&["--delete-before", "--delete-after", "-r", "src/", "dst/"]),
    all(&["--del", "--delete-after", "-r", "src/", "dst/"]),
    all(&["-r", "--suffix=/", "-b", "src/", "dst/"]),
    all(&["-b", "--suffix=", "-r", "src/", "dst/"]),
    all(&["-b", "--backup-dir=.", "-r", "src/", "dst/"]),
    all(&["--append", "--inplace", "-W", "-r", "src/", "dst/"]),
    all(&["-W", "--append-verify", "-r", "src/", "dst/"]),
    all(&["--partial-dir=x", "--inplace", "-r", "src/", "dst/"]),
    all(&["--append", "--delay-updates", "-r", "src/", "dst/"]),
    all(&["--link-dest=a", "--copy-dest=b", "-r", "src/", "dst/"]),
    all(&["-r", "--outbuf=Q", "src/", "dst/"]),
    all(&["--files-from=h:-", "src/", "dst/"]),
    // --stop-after / --time-limit / --stop-at values (upstream parse_time).
    all(&["--stop-after=0", "-r", "src/", "dst/"]),
    all(&["--time-limit=abc", "-r", "src/", "dst/"]),
    all(&["--stop-at=10:00x", "-r", "src/", "dst/"]),
    all(&["--stop-at=T10", "-r", "src/", "dst/"]),
    all(&["--stop-at=2001-01-01T00:00", "-r", "src/", "dst/"]),
    // Size arguments (upstream parse_size_arg).
    all(&["--max-size=zz", "-r", "src/", "dst/"]),
    all(&["--max-size=1x", "-r", "src/", "dst/"]),
    all(&["--min-size=-1", "-r", "src/", "dst/"]),
    all(&["--bwlimit=x", "-r", "src/", "dst/"]),
    all(&["--bwlimit=0.4", "-r", "src/", "dst/"]),
    all(&["--block-size=100000000", "-r", "src/", "dst/"]),
    all(&["-B", "200000", "--protocol=29", "-r", "src/", "dst/"]),
    all(&["--max-alloc=1", "-r", "src/", "dst/"]),
    // Numbers as popt reads them (the word it names is the one it took).
    all(&["--timeout=x", "-r", "src/", "dst/"]),
    all(&["--timeout", "x", "-r", "src/", "dst/"]),
    all(&["-@x", "-r", "src/", "dst/"]),
    all(&["--port=x", "-r", "src/", "dst/"]),
    all(&["--max-delete=x", "-r", "src/", "dst/"]),
    all(&["--modify-window=x", "-r", "src/", "dst/"]),
    all(&["--compress-level=x", "-r", "src/", "dst/"]),
    all(&["--protocol=x", "-r", "src/", "dst/"]),
    all(&["--checksum-seed=5x", "-r", "src/", "dst/"]),
    all(&["--contimeout=x", "-r", "src/", "dst/"]),
    all(&["--timeout=99999999999", "-r", "src/", "dst/"]),
    all(&["--recursive=5", "src/", "dst/"]),
    all(&["src/", "dst/", "-rT"]),
    // Printed without "rsync: ", exit 1 or 4.
    all(&["--info=bogus", "-r", "src/", "dst/"]),
    all(&["--debug=bogus", "-r", "src/", "dst/"]),
    all(&["--compress-choice=bogus", "-z", "-r", "src/", "dst/"]),
    all(&["--checksum-choice=bogus", "-r", "src/", "dst/"]),
    all(&["--cc=md5,bogus", "-r", "src/", "dst/"]),
    // Rule files read with the options: who failed, and why.
    all(&["--exclude-from=/nonexist", "-r", "src/", "dst/"]),
    all(&["--filter=merge /nonexist", "-r", "src/", "dst/"]),
    // start_client's checks name the side the client would have been.
    all(&["--contimeout=5", "src", "dst"]),
    all(&["--password-file=x", "src/", "dst/"]),
    all(&["a:x", "b:y"]),
    all(&["", "dst/"]),
    // The receiver's checks of --temp-dir and --backup-dir before the transfer.
    all(&["--temp-dir=", "-r", "src", "dst"]),
    all(&["--temp-dir=nonexist", "-r", "src/", "dst/"]),
    all(&["-b", "--backup-dir=../src/a", "-r", "src/", "dst/"]),
    // A lone -h is --help (the texts differ, on stdout).
    all(&["-h"]),
    all(&["-hv"]),
    // What protocol 28 cannot do, refused once it is negotiated.
    Row {
        args: &["--protocol=28", "-m", "-r", "src/", "dst/"],
        cmp: Cmp::FirstLine,
    },
    Row {
        args: &[
            "--protocol=28",
            "--link-dest=a",
            "--link-dest=b",
            "-r",
            "src/",
            "dst/",
        ],
        cmp: Cmp::FirstLine,
    },
    Row {
        args: &[
            "--protocol=28",
            "--link-dest=a",
            "--inplace",
            "-r",
            "src/",
            "dst/",
        ],
        cmp: Cmp::FirstLine,
    },
    Row {
        args: &[
            "--protocol=28",
            "-y",
            "--link-dest=a",
            "--inplace",
            "-r",
            "src/",
            "dst/",
        ],
        cmp: Cmp::FirstLine,
    },
    // stock's usage text, then its error line.
    Row {
        args: &["--files-from=/dev/null", "a", "b", "c"],
        cmp: Cmp::LastLine,
    },
    // Accepted by stock.
    all(&["--timeout=-1", "-r", "src/", "dst/"]),
    all(&["--timeout=0x10", "-r", "src/", "dst/"]),
    all(&["--timeout=", "-r", "src/", "dst/"]),
    all(&["--zc=ZSTD", "-r", "src/", "dst/"]),
    all(&["--zc=auto", "-r", "src/", "dst/"]),
    all(&["--cc=auto,md5", "-r", "src/", "dst/"]),
];

/// A stderr line without what legitimately differs: ` at main.c(1886)`
/// goes, `[client=3.5.0]` becomes `[client]`.
fn normalize(line: &str) -> String {
    let mut l = line.to_string();
    if let Some(i) = l.find(" at ") {
        let rest = &l[i + 4..];
        let loc = rest.find(".c(").or_else(|| rest.find(".rs("));
        if let Some(k) = loc.and_then(|j| rest[j..].find(')').map(|k| j + k)) {
            l.replace_range(i..i + 4 + k + 1, "");
        }
    }
    if l.ends_with(']') {
        if let (Some(open), Some(eq)) = (l.rfind(" ["), l.rfind('=')) {
            if eq > open {
                l.replace_range(eq..l.len() - 1, "");
            }
        }
    }
    l
}

/// Run `bin` on `args` in a fresh layout; the outcome and the names that
/// reached `dst/`.
fn run_in_layout(bin: &Path, args: &[&str], tag: &str) -> (Outcome, Vec<String>, TempDir) {
    let dir = TempDir::new(tag);
    std::fs::create_dir_all(dir.join("src/sub")).expect("mkdir src/sub");
    std::fs::create_dir_all(dir.join("dst")).expect("mkdir dst");
    std::fs::write(dir.join("src/a"), "hi\n").expect("write src/a");
    let out = run_cmd(bin, args, Some(dir.path()), client_timeout());
    let mut names: Vec<String> = std::fs::read_dir(dir.join("dst"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    (out, names, dir)
}

/// Where the two sides disagree on one row, if they do.
fn compare_row(row: &Row) -> Option<String> {
    let (s, s_dst, _sd) = run_in_layout(&bins::stock(), row.args, "opt_stock");
    let (o, o_dst, _od) = run_in_layout(&bins::ours(), row.args, "opt_ours");
    let lines = |out: &Outcome| -> Vec<String> {
        let all: Vec<String> = out.stderr.lines().map(normalize).collect();
        match row.cmp {
            Cmp::All => all,
            Cmp::FirstLine => all.first().cloned().into_iter().collect(),
            Cmp::LastLine => all.last().cloned().into_iter().collect(),
        }
    };
    let mut problems = Vec::new();
    if s.code != o.code {
        problems.push(format!("exit code: stock {}, ours {}", s.code, o.code));
    }
    let (sl, ol) = (lines(&s), lines(&o));
    if sl != ol {
        problems.push(format!("stderr:\n  stock: {sl:?}\n  ours:  {ol:?}"));
    }
    if s_dst != o_dst {
        problems.push(format!("dst/: stock {s_dst:?}, ours {o_dst:?}"));
    }
    (!problems.is_empty()).then(|| format!("{:?}: {}", row.args, problems.join("; ")))
}

compat_test! {
    fn client_option_errors_like_stock() {
        // The runs mostly wait (stock sleeps before it exits): a few at once.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut failures: Vec<(usize, String)> = std::thread::scope(|sc| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    sc.spawn(|| {
                        let mut found = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(row) = ROWS.get(i) else { break found };
                            if let Some(f) = compare_row(row) {
                                found.push((i, f));
                            }
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("worker"))
                .collect()
        });
        failures.sort();
        let failures: Vec<String> = failures.into_iter().map(|(_, f)| f).collect();
        assert!(
            failures.is_empty(),
            "{} of {} argument sets differ:\n{}",
            failures.len(),
            ROWS.len(),
            failures.join("\n")
        );
    }
}

#[test]
fn option_errors_normalizer() {
    assert_eq!(
        normalize("rsync error: syntax or usage error (code 1) at main.c(1886) [client=3.5.0]"),
        "rsync error: syntax or usage error (code 1) [client]"
    );
    assert_eq!(
        normalize("rsync error: x (code 1) at client.rs(426) [Receiver=rrsync-0.1.0]"),
        "rsync error: x (code 1) [Receiver]"
    );
    assert_eq!(
        normalize("rsync: --max-size=zz is invalid"),
        "rsync: --max-size=zz is invalid"
    );
}
