//! The push family: a stock client uploading into a writable module
//! (`rsync -a src/ rsync://127.0.0.1:PORT/mod/`), stock daemon vs ours side
//! by side (see `harness::push`). Each test is named after the option,
//! module setting or behaviour it guards.
//!
//! Small fixtures except where size is the point (the issue-2 tree for the
//! initial syncs, 24 MiB for the delta, a few MiB where a client must be
//! killed mid-transfer).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::compare::{parse_stats, stats_number, Client, MODULE};
use crate::harness::fixture::{
    self, chmod, chown, copy_tree, hardlink, issue2_tree, mkdir, pin_times, set_mtime, symlink,
    write, write_random, Rng,
};
use crate::harness::push::{
    diff_against_source, dot_files, wait_sessions_end, PushCase, PushServers, PushSpec, Which,
    SESSION_END_TIMEOUT,
};
use crate::harness::tree::{format_diff, snapshot, Content};

/// A small tree with what an upload must reproduce beyond plain files: a
/// delta-sized file, hard links, symlinks (relative, absolute), modes,
/// an owner, nested and empty dirs.
fn push_tree(root: &Path) {
    fixture::small_tree(root);
    write_random(root, "m.bin", 21, 1_200_000);
    write(root, "hl/one", b"hard linked\n");
    hardlink(root, "hl/one", "hl/two");
    symlink(root, "links/abs", "/nonexistent-rrsync-compat/abs");
    write(root, "modes/world_w", b"o+w\n");
    write(root, "modes/private", b"0600\n");
    mkdir(root, "modes/dir_700");
    mkdir(root, "empty_dir");
    write(root, "owners/u1234", b"owned by 1234:2345\n");
    chown(root, "owners/u1234", 1234, 2345);
    chmod(root, "modes/world_w", 0o666);
    chmod(root, "modes/private", 0o600);
    chmod(root, "modes/dir_700", 0o700);
    pin_times(root, &[]);
}

/// Overwrites bytes at `offset` of `root/rel` in place.
fn poke(root: &Path, rel: &str, offset: u64, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join(rel))
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn mtime_of(p: &Path) -> (i64, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec() as u32)
}

/// Module = copy of the source.
fn prefill_copy(dir: &Path, src: &Path) {
    copy_tree(src, dir);
}

/// Module = copy of the source with differences each quick-check option
/// treats its own way:
/// * `a.txt`: other content, same size, NEWER mtime (`-u` keeps it,
///   `--size-only` only fixes its time);
/// * `sub/c.txt`: other content, same size and mtime (only `-c` sees it);
/// * `r.bin`, `m.bin`: edited in the middle, older mtime (delta);
/// * `b.txt`, `sub/deeper/d.txt`: missing (`--existing` does not create);
/// * `extra.txt`: not in the source.
fn prefill_mixed(dir: &Path, src: &Path) {
    copy_tree(src, dir);
    write(dir, "a.txt", b"ALPHA\n");
    set_mtime(&dir.join("a.txt"), 2_000_000_000, 5);
    let t = mtime_of(&dir.join("sub/c.txt"));
    write(dir, "sub/c.txt", b"CHARLIE\n");
    set_mtime(&dir.join("sub/c.txt"), t.0, t.1);
    poke(dir, "r.bin", 5_000, b"stale bytes");
    set_mtime(&dir.join("r.bin"), 1_500_000_000, 0);
    poke(dir, "m.bin", 600_000, &fixture::random_bytes(3, 2_000));
    set_mtime(&dir.join("m.bin"), 1_500_000_001, 0);
    std::fs::remove_file(dir.join("b.txt")).unwrap();
    std::fs::remove_file(dir.join("sub/deeper/d.txt")).unwrap();
    write(dir, "extra.txt", b"only in the module\n");
    set_mtime(&dir.join("extra.txt"), 1_600_000_000, 0);
    let t = mtime_of(&src.join("sub/deeper"));
    set_mtime(&dir.join("sub/deeper"), t.0, t.1);
    let t = mtime_of(&src.join("sub"));
    set_mtime(&dir.join("sub"), t.0, t.1);
}

/// Module = copy of the source plus files and dirs the source lacks (for
/// the deletion options), one file changed, and `*.log` files (excluded
/// by the `--delete-excluded` case).
fn prefill_extras(dir: &Path, src: &Path) {
    copy_tree(src, dir);
    write(dir, "a.txt", b"older and longer alpha\n");
    set_mtime(&dir.join("a.txt"), 1_500_000_000, 0);
    write(dir, "extra.txt", b"not in the source\n");
    write(dir, "extra_dir/x.txt", b"x\n");
    write(dir, "extra_dir/sub/y.bin", b"y\n");
    write(dir, "sub/zzz_extra", b"zzz\n");
    write(dir, "sub/deeper/gone.txt", b"gone\n");
    write(dir, "keep.log", b"log in the module\n");
    write(dir, "sub/deeper/old.log", b"old log\n");
    symlink(dir, "sub/extra_link", "../extra.txt");
    for rel in [
        "extra.txt",
        "extra_dir/x.txt",
        "extra_dir/sub/y.bin",
        "extra_dir/sub",
        "extra_dir",
        "sub/zzz_extra",
        "sub/deeper/gone.txt",
        "keep.log",
        "sub/deeper/old.log",
        "sub/extra_link",
    ] {
        set_mtime(&dir.join(rel), 1_600_000_000, 0);
    }
    for rel in ["sub/deeper", "sub", ""] {
        let t = mtime_of(&src.join(rel));
        set_mtime(&dir.join(rel), t.0, t.1);
    }
}

// ---------------------------------------------------------------- initial

compat_test! {
    fn push_archive() {
        PushCase::new("push_archive", issue2_tree).args(&["-a", "-i"]).run();
    }
}

compat_test! {
    fn push_archive_hardlinks() {
        PushCase::new("push_archive_hardlinks", issue2_tree).args(&["-aH", "-i"]).run();
    }
}

compat_test! {
    fn push_archive_hardlinks_devices_sparse() {
        PushCase::new("push_archive_hardlinks_devices_sparse", issue2_tree)
            .args(&["-aHDS", "-i"])
            .run();
    }
}

compat_test! {
    fn push_without_perms_new_dirs_get_default_modes() {
        // -rlt: new directories get the source's mode minus the umask, even
        // though they are made writable while their contents arrive.
        let modes_tree = |src: &Path| {
            fixture::small_tree(src);
            for (d, m) in [("ro", 0o555), ("grp", 0o750), ("ro/inner", 0o700), ("open", 0o777)] {
                mkdir(src, d);
                fixture::write(src, &format!("{d}/f.txt"), d.as_bytes());
                chmod(src, d, m);
            }
            chmod(src, "ro", 0o555);
            pin_times(src, &[]);
        };
        PushCase::new("push_without_perms_new_dirs_get_default_modes", modes_tree)
            .args(&["-rlt", "-i"])
            .run();
    }
}

// ------------------------------------------------------------------ delta

compat_test! {
    fn push_delta_literal_data_matches_stock() {
        let big = |src: &Path| {
            mkdir(src, "");
            write_random(src, "big24m.bin", 4242, 24 << 20);
            pin_times(src, &[]);
        };
        let servers = PushCase::new("push_delta_literal_data_matches_stock", big)
            .prefill(prefill_copy)
            .serve();
        // Edit the middle of the source (and a little elsewhere).
        poke(&servers.src, "big24m.bin", 12 << 20, &fixture::random_bytes(9, 3000));
        poke(&servers.src, "big24m.bin", 3 << 20, b"small edit");
        set_mtime(&servers.src.join("big24m.bin"), 1_800_000_000, 5);
        let (stock, ours) = servers.push(&PushSpec::with_args(&["-a", "-i", "--stats", "--no-whole-file"]));
        let s = stats_number(&parse_stats(&stock.outcome.stdout), "Literal data").expect("stock Literal data");
        let o = stats_number(&parse_stats(&ours.outcome.stdout), "Literal data").expect("ours Literal data");
        assert!(s > 0 && s < 1 << 20, "stock literal data {s} is not a delta transfer");
        let tolerance = s.div_ceil(100);
        assert!(o.abs_diff(s) <= tolerance, "Literal data: ours {o} vs stock {s} (allowed ±{tolerance})");
    }
}

/// Initial push of the push tree, `edit` on the source, then a second
/// push with `args`; both pushes compared.
fn resync_after(name: &str, args: &[&str], edit: impl Fn(&Path)) {
    let run = PushCase::new(name, push_tree).args(&["-a", "-i"]).run();
    edit(run.src());
    run.push_again(&PushSpec::with_args(args));
}

compat_test! {
    fn push_resync_appended_file() {
        resync_after("push_resync_appended_file", &["-a", "-i", "--stats"], |src| {
            let mut f = std::fs::OpenOptions::new().append(true).open(src.join("m.bin")).unwrap();
            f.write_all(&fixture::random_bytes(77, 5_000)).unwrap();
            let mut f = std::fs::OpenOptions::new().append(true).open(src.join("a.txt")).unwrap();
            f.write_all(b"appended line\n").unwrap();
            set_mtime(&src.join("m.bin"), 1_750_000_000, 1);
            set_mtime(&src.join("a.txt"), 1_750_000_000, 2);
        });
    }
}

compat_test! {
    fn push_resync_truncated_file() {
        resync_after("push_resync_truncated_file", &["-a", "-i", "--stats"], |src| {
            std::fs::OpenOptions::new().write(true).open(src.join("m.bin")).unwrap().set_len(500_000).unwrap();
            std::fs::OpenOptions::new().write(true).open(src.join("r.bin")).unwrap().set_len(0).unwrap();
            set_mtime(&src.join("m.bin"), 1_750_000_000, 1);
            set_mtime(&src.join("r.bin"), 1_750_000_000, 2);
        });
    }
}

compat_test! {
    fn push_resync_chmod_only() {
        resync_after("push_resync_chmod_only", &["-a", "-i", "--stats"], |src| {
            chmod(src, "a.txt", 0o640);
            chmod(src, "m.bin", 0o600);
            chmod(src, "sub", 0o750);
            chmod(src, "modes/private", 0o644);
        });
    }
}

compat_test! {
    fn push_resync_touch_only() {
        resync_after("push_resync_touch_only", &["-a", "-i", "--stats"], |src| {
            set_mtime(&src.join("a.txt"), 1_750_000_000, 123);
            set_mtime(&src.join("m.bin"), 1_750_000_001, 456);
            set_mtime(&src.join("sub/deeper"), 1_750_000_002, 789);
        });
    }
}

compat_test! {
    fn push_resync_renamed_file_and_dir() {
        resync_after("push_resync_renamed_file_and_dir", &["-a", "-i", "--delete", "--stats"], |src| {
            std::fs::rename(src.join("b.txt"), src.join("b_renamed.txt")).unwrap();
            std::fs::rename(src.join("sub/deeper"), src.join("sub/deeper_renamed")).unwrap();
            for (i, rel) in ["", "sub"].iter().enumerate() {
                set_mtime(&src.join(rel), 1_750_000_000 + i as i64, 0);
            }
        });
    }
}

// -------------------------------------------------------------- deletions

fn deletion(name: &str, extra: &[&str]) {
    let args = [&["-a", "-i", "--stats"], extra].concat();
    PushCase::new(name, push_tree)
        .prefill(prefill_extras)
        .args(&args)
        .run();
}

compat_test! { fn push_delete() { deletion("push_delete", &["--delete"]); } }
compat_test! { fn push_delete_before() { deletion("push_delete_before", &["--delete-before"]); } }
compat_test! { fn push_delete_during() { deletion("push_delete_during", &["--delete-during"]); } }
compat_test! { fn push_delete_delay() { deletion("push_delete_delay", &["--delete-delay"]); } }
compat_test! { fn push_delete_after() { deletion("push_delete_after", &["--delete-after"]); } }
compat_test! {
    fn push_delete_excluded() {
        deletion("push_delete_excluded", &["--delete-excluded", "--exclude=*.log", "--exclude=/modes/"]);
    }
}

compat_test! {
    fn push_max_delete_one() {
        PushCase::new("push_max_delete_one", push_tree)
            .prefill(prefill_extras)
            .args(&["-a", "-i", "--delete", "--max-delete=1"])
            // A pushing client exits 0 here: the limit is hit on the
            // receiving side, which only warns.
            .expect_stock_code(Some(0))
            .run();
    }
}

// ----------------------------------------------------------- update modes

compat_test! {
    fn push_backup() {
        PushCase::new("push_backup", push_tree).prefill(prefill_mixed).args(&["-a", "-i", "--backup"]).run();
    }
}

compat_test! {
    fn push_backup_dir_and_suffix() {
        PushCase::new("push_backup_dir_and_suffix", push_tree)
            .prefill(prefill_mixed)
            .args(&["-a", "-i", "--delete", "--backup", "--backup-dir=bak", "--suffix=.old"])
            .run();
    }
}

// `--backup-dir` alone implies `--backup` (upstream parse_arguments); a
// stock client does not add `-b` to the server's options for it.
compat_test! {
    fn push_backup_dir_alone() {
        PushCase::new("push_backup_dir_alone", push_tree)
            .prefill(prefill_mixed)
            .args(&["-a", "-i", "--delete", "--backup-dir=bak"])
            .run();
    }
}

/// `-b --delete` makes a stock client send a protect rule for its backup
/// suffix (`P *~`): a receiver-side rule of the client's, which must not
/// make the daemon refuse to receive a name that ends in `~` (it did:
/// "daemon refused to receive file", exit 23).
fn tilde_names(root: &Path) {
    push_tree(root);
    write(root, "notes~", b"an editor's backup, sent like any file\n");
    write(root, "sub/old.txt~", b"another\n");
    fixture::pin_times(root, &[]);
}

compat_test! {
    fn push_backup_delete_sends_tilde_names() {
        PushCase::new("push_backup_delete_sends_tilde_names", tilde_names)
            .prefill(prefill_mixed)
            .args(&["-a", "-i", "-b", "--delete"])
            .run();
    }
}

// A `--compare-dest` that is missing and one that is a file: stock's
// receiver warns for each ("arg does not exist", "arg is not a dir") and
// goes on.
compat_test! {
    fn push_basis_dir_warnings() {
        PushCase::new("push_basis_dir_warnings", push_tree)
            .prefill(prefill_mixed)
            .args(&["-a", "-i", "--compare-dest=missing", "--compare-dest=a.txt"])
            .run();
    }
}

/// Links that leave the transfer and one that stays in it.
fn links_in_and_out(root: &Path) {
    push_tree(root);
    symlink(root, "safe", "a.txt");
    symlink(root, "sub/up", "../a.txt");
    symlink(root, "abs", "/etc/hostname");
    symlink(root, "sub/out", "../../outside");
    fixture::pin_times(root, &[]);
}

// `--safe-links` is the receiver's (upstream recv_generator): a stock
// client sends every link, the daemon leaves out the unsafe ones (here
// all, as stock: the module munges, and a munged target is absolute).
compat_test! {
    fn push_safe_links() {
        PushCase::new("push_safe_links", links_in_and_out)
            .args(&["-a", "-i", "--safe-links"])
            .run();
    }
}

compat_test! {
    fn push_inplace() {
        PushCase::new("push_inplace", push_tree)
            .prefill(prefill_mixed)
            .args(&["-a", "-i", "--inplace", "--stats"])
            .run();
    }
}

// --inplace with --backup: the old file is copied to its backup name
// first and is the basis of the delta (stock sends FNAMECMP_BACKUP).
compat_test! {
    fn push_inplace_backup() {
        PushCase::new("push_inplace_backup", push_tree)
            .prefill(prefill_mixed)
            .args(&["-a", "-i", "--inplace", "--backup", "--stats"])
            .run();
    }
}

compat_test! {
    fn push_inplace_backup_dir_and_suffix() {
        PushCase::new("push_inplace_backup_dir_and_suffix", push_tree)
            .prefill(prefill_mixed)
            .args(&["-a", "-i", "--inplace", "--backup-dir=bak", "--suffix=.old", "--stats"])
            .run();
    }
}

// The module's `incoming chmod` applies to the backup too (upstream
// set_file_attrs on it).
compat_test! {
    fn push_inplace_backup_incoming_chmod() {
        PushCase::new("push_inplace_backup_incoming_chmod", push_tree)
            .prefill(prefill_mixed)
            .module_line("incoming chmod = Fo-r,Fg+w")
            .args(&["-a", "-i", "--inplace", "-b"])
            .run();
    }
}

/// A source for `--fuzzy` (see the client family's `fuzzy_src`): a
/// renamed file, an edited one under last year's name, one nothing is like.
fn fuzzy_tree(root: &Path) {
    mkdir(root, "");
    write_random(root, "report-2024.txt", 71, 200_000);
    write_random(root, "moved.bin", 72, 100_000);
    write(root, "same.txt", b"same\n");
    write(root, "zzz-unrelated-name.iso", b"nothing like it\n");
    pin_times(root, &[]);
}

/// The module holds `moved.bin` as `oldname.dat` and an edited
/// `report-2024.txt` as `report-2023.txt`.
fn fuzzy_prefill(dir: &Path, src: &Path) {
    mkdir(dir, "");
    let report = std::fs::read(src.join("report-2024.txt")).unwrap();
    write(dir, "report-2023.txt", &report);
    poke(dir, "report-2023.txt", 5_000, b"last year");
    set_mtime(&dir.join("report-2023.txt"), 1_400_000_000, 0);
    copy_tree(&src.join("moved.bin"), &dir.join("oldname.dat"));
    copy_tree(&src.join("same.txt"), &dir.join("same.txt"));
}

// --fuzzy into our daemon: the basis found among the module's files, the
// matched data stock's.
compat_test! {
    fn push_fuzzy() {
        PushCase::new("push_fuzzy", fuzzy_tree)
            .prefill(fuzzy_prefill)
            .args(&["-a", "-i", "-y", "--stats"])
            .run();
    }
}

// What the module's rules hide is no basis (upstream get_dirlist keeps
// the daemon's filters); the client's own rules do not count.
compat_test! {
    fn push_fuzzy_module_exclude() {
        PushCase::new("push_fuzzy_module_exclude", fuzzy_tree)
            .prefill(fuzzy_prefill)
            .module_line("exclude = oldname.dat")
            .args(&["-a", "-i", "-y", "--exclude=report-2023.txt", "--stats"])
            .run();
    }
}

compat_test! {
    fn push_link_dest_relative_to_module() {
        // mod/other = the source with two files changed; the push goes to
        // mod/dest/ and hard-links unchanged files to ../other.
        PushCase::new("push_link_dest_relative_to_module", push_tree)
            .prefill(|dir, src| {
                mkdir(dir, "");
                copy_tree(src, &dir.join("other"));
                write(&dir.join("other"), "a.txt", b"other alpha\n");
                poke(&dir.join("other"), "m.bin", 1000, b"differs");
                set_mtime(&dir.join("other/m.bin"), 1_500_000_000, 0);
                let t = mtime_of(src);
                set_mtime(&dir.join("other"), t.0, t.1);
            })
            .args(&["-a", "-i", "--link-dest=../other"])
            .remote(&format!("{MODULE}/dest/"))
            .run();
    }
}

compat_test! {
    fn push_relative_with_dot_dir() {
        PushCase::new("push_relative_with_dot_dir", push_tree)
            .args(&["-a", "-i", "-R"])
            .sources(&["src/./sub/deeper", "src/./modes/"])
            .ignore_root()
            .run();
    }
}

compat_test! {
    fn push_files_from() {
        PushCase::new("push_files_from", |src: &Path| {
            push_tree(src);
            let list = "a.txt\nsub/deeper/d.txt\nhl/two\nlinks/abs\nempty_dir\nm.bin\n";
            std::fs::write(src.parent().unwrap().join("list.txt"), list).unwrap();
        })
        .args(&["-a", "-i", "--files-from=list.txt"])
        .ignore_root()
        .run();
    }
}

fn quick_check(name: &str, opt: &str) {
    PushCase::new(name, push_tree)
        .prefill(prefill_mixed)
        .args(&["-a", "-i", "--stats", opt])
        .run();
}

compat_test! { fn push_existing() { quick_check("push_existing", "--existing"); } }
compat_test! { fn push_ignore_existing() { quick_check("push_ignore_existing", "--ignore-existing"); } }
compat_test! { fn push_update() { quick_check("push_update", "-u"); } }
compat_test! { fn push_size_only() { quick_check("push_size_only", "--size-only"); } }
compat_test! { fn push_checksum() { quick_check("push_checksum", "-c"); } }

// ------------------------------------------------------- partial + resume

/// Finds a receiver temp file `.<name>.XXXXXX` with data in `dir`.
fn temp_with_data(dir: &Path, name: &str) -> bool {
    let prefix = format!(".{name}.");
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(&prefix)
                && e.metadata().is_ok_and(|m| m.len() > 0)
        })
    })
}

compat_test! {
    fn push_partial_resumes_after_killed_client() {
        const BIG: usize = 4 << 20;
        let servers = PushCase::new("push_partial_resumes_after_killed_client", |src: &Path| {
            mkdir(src, "");
            write(src, "a.txt", b"first, small\n");
            write_random(src, "big.bin", 99, BIG);
            pin_times(src, &[]);
        })
        .serve();
        let slow = PushSpec::with_args(&["-a", "--partial", "--bwlimit=1000"]);
        let full = std::fs::read(servers.src.join("big.bin")).unwrap();
        for side in Which::BOTH {
            let module = servers.module(side);
            let mut client = servers.spawn_push(side, &slow);
            // Kill once the receiver has written some of big.bin: the kill
            // lands mid-file on both sides (how far in is timing, so the
            // partial files' sizes are not compared, only their nature).
            let deadline = Instant::now() + Duration::from_secs(10);
            while client.running() && !temp_with_data(&module, "big.bin") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let killed = client.kill().unwrap_or_else(|o| {
                panic!("{}: the push ended before it could be killed mid-file:\n{}", side.label(), o.describe())
            });
            wait_sessions_end(servers.daemon(side), SESSION_END_TIMEOUT).unwrap();
            let kept = std::fs::read(module.join("big.bin")).unwrap_or_else(|e| {
                panic!("{}: --partial kept no big.bin after the kill ({e}); client:\n{}", side.label(), killed.describe())
            });
            assert!(
                !kept.is_empty() && kept.len() < BIG && full.starts_with(&kept),
                "{}: kept big.bin ({} bytes) is not a proper prefix of the source",
                side.label(),
                kept.len()
            );
            assert_eq!(dot_files(&module), Vec::<std::path::PathBuf>::new(), "{}: temp files left", side.label());
            // Our receiver preallocated the whole file: what was not
            // written must not stay allocated past the kept prefix.
            let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(module.join("big.bin")).unwrap());
            let cap = (kept.len() as u64).div_ceil(4096) * 4096;
            assert!(
                blocks * 512 <= cap,
                "{}: kept big.bin occupies {} bytes for {} bytes of data",
                side.label(),
                blocks * 512,
                kept.len()
            );
        }
        servers.push(&PushSpec::with_args(&["-a", "-i", "--partial"]));
        for side in Which::BOTH {
            let d = diff_against_source(&servers.src, &servers.module(side));
            assert!(d.is_empty(), "{}: after the resumed push:\n{}", side.label(), format_diff(&d, 20));
        }
    }
}

// ---------------------------------------------- checksums, codecs, protocols

fn with_option(name: &str, extra: &[&str]) {
    let args = [&["-a", "-i", "--stats"], extra].concat();
    PushCase::new(name, push_tree)
        .prefill(prefill_mixed)
        .args(&args)
        .run();
}

compat_test! { fn push_checksum_choice_xxh128() { with_option("push_checksum_choice_xxh128", &["-c", "--checksum-choice=xxh128"]); } }
compat_test! { fn push_checksum_choice_xxh3() { with_option("push_checksum_choice_xxh3", &["-c", "--checksum-choice=xxh3"]); } }
compat_test! { fn push_checksum_choice_xxh64() { with_option("push_checksum_choice_xxh64", &["-c", "--checksum-choice=xxh64"]); } }
compat_test! { fn push_checksum_choice_md5() { with_option("push_checksum_choice_md5", &["-c", "--checksum-choice=md5"]); } }
compat_test! { fn push_checksum_choice_md4() { with_option("push_checksum_choice_md4", &["-c", "--checksum-choice=md4"]); } }
compat_test! { fn push_checksum_choice_sha1() { with_option("push_checksum_choice_sha1", &["-c", "--checksum-choice=sha1"]); } }
compat_test! { fn push_compress_choice_zstd() { with_option("push_compress_choice_zstd", &["-z", "--compress-choice=zstd"]); } }
compat_test! { fn push_compress_choice_lz4() { with_option("push_compress_choice_lz4", &["-z", "--compress-choice=lz4"]); } }
compat_test! { fn push_compress_choice_zlibx() { with_option("push_compress_choice_zlibx", &["-z", "--compress-choice=zlibx"]); } }
compat_test! { fn push_compress_choice_zlib() { with_option("push_compress_choice_zlib", &["-z", "--compress-choice=zlib"]); } }
compat_test! { fn push_protocol_31() { with_option("push_protocol_31", &["-H", "--protocol=31"]); } }
compat_test! { fn push_protocol_30() { with_option("push_protocol_30", &["-H", "--protocol=30"]); } }
compat_test! { fn push_protocol_29() { with_option("push_protocol_29", &["-H", "--protocol=29"]); } }

compat_test! {
    fn push_client_327() {
        PushCase::new("push_client_327", push_tree)
            .client(Client::Rsync327)
            .prefill(prefill_mixed)
            .args(&["-aH", "-i", "--stats", "--delete"])
            .run();
    }
}

// -------------------------------------------------------- module settings

compat_test! {
    fn push_module_read_only_refused() {
        PushCase::new("push_module_read_only_refused", push_tree)
            .not_writable()
            .module_line("read only = yes")
            .args(&["-a", "-i"])
            .expect_stock_code(Some(1))
            .run();
    }
}

compat_test! {
    fn push_module_incoming_chmod() {
        PushCase::new("push_module_incoming_chmod", push_tree)
            .module_line("incoming chmod = Fo-w,D+x")
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn push_module_refuse_options_delete() {
        PushCase::new("push_module_refuse_options_delete", push_tree)
            .module_line("refuse options = delete")
            .prefill(prefill_extras)
            .args(&["-a", "-i", "--delete"])
            .expect_stock_code(Some(4))
            .run();
    }
}

/// Set-id files, owned by us and by others: a receiver that chowns after
/// setting the mode loses the bits (a chown clears them).
fn setid_source(src: &Path) {
    push_tree(src);
    write(src, "setid/own_suid", b"suid\n");
    chmod(src, "setid/own_suid", 0o4755);
    write(src, "setid/other_suid_sgid", b"both\n");
    chown(src, "setid/other_suid_sgid", 1234, 2345);
    chmod(src, "setid/other_suid_sgid", 0o6750);
    write(src, "setid/other_sgid", b"sgid\n");
    chown(src, "setid/other_sgid", 0, 2345);
    chmod(src, "setid/other_sgid", 0o2711);
    pin_times(src, &[]);
}

compat_test! {
    fn push_setid_files_keep_their_bits() {
        PushCase::new("push_setid_files_keep_their_bits", setid_source)
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn push_setid_files_over_existing_ones() {
        // Re-sync after the contents changed: the new temp file gets owner,
        // then mode.
        PushCase::new("push_setid_files_over_existing_ones", setid_source)
            .prefill(|dir: &Path, src: &Path| {
                copy_tree(src, dir);
                write(dir, "setid/own_suid", b"older\n");
                write(dir, "setid/other_suid_sgid", b"older\n");
            })
            .args(&["-a", "-i", "--partial"])
            .run();
    }
}

fn dangling_source(src: &Path) {
    push_tree(src);
    symlink(src, "gone", "no/such/target");
    pin_times(src, &[]);
}

compat_test! {
    fn push_io_error_skips_deletion() {
        // -L with a dangling link: the sender reports an I/O error, and a
        // receiving daemon then deletes nothing.
        PushCase::new("push_io_error_skips_deletion", dangling_source)
            .prefill(prefill_extras)
            .args(&["-a", "-L", "-i", "--delete"])
            .expect_stock_code(Some(23))
            .run();
    }
}

compat_test! {
    fn push_module_ignore_errors() {
        // The same push into a module with `ignore errors`: deletions go ahead.
        PushCase::new("push_module_ignore_errors", dangling_source)
            .module_line("ignore errors = yes")
            .prefill(prefill_extras)
            .args(&["-a", "-L", "-i", "--delete"])
            .expect_stock_code(Some(23))
            .run();
    }
}

fn symlink_source(src: &Path) {
    push_tree(src);
    symlink(src, "links/rel_up", "../sub/c.txt");
    symlink(src, "links/escape", "../../../etc/passwd");
    pin_times(src, &[]);
}

compat_test! {
    fn push_module_munge_symlinks() {
        PushCase::new("push_module_munge_symlinks", symlink_source)
            .module_line("munge symlinks = yes")
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn push_module_munge_symlinks_off() {
        PushCase::new("push_module_munge_symlinks_off", symlink_source)
            .module_line("munge symlinks = no")
            .args(&["-a", "-i"])
            .run();
    }
}

compat_test! {
    fn push_module_symlinks_into_a_subdir() {
        // Without munging, targets are cleaned at the entry's depth in the
        // transfer (upstream sanitize_path as the list arrives), not at its
        // depth in the module: pushed two levels down, "../sub/c.txt" and
        // "../../../etc/passwd" end up as stock leaves them.
        PushCase::new("push_module_symlinks_into_a_subdir", symlink_source)
            .module_line("munge symlinks = no")
            .prefill(|dir, _src| {
                mkdir(dir, "deep/er");
                pin_times(dir, &[]);
            })
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/deep/er/"))
            .run();
    }
}

compat_test! {
    fn push_module_exclude_tmp() {
        // The upload cannot create excluded names, and --delete does not
        // remove them either (daemon excludes protect both ways).
        PushCase::new("push_module_exclude_tmp", |src: &Path| {
            push_tree(src);
            write(src, "scratch.tmp", b"scratch\n");
            write(src, "sub/deeper/x.tmp", b"x\n");
            pin_times(src, &[]);
        })
        .module_line("exclude = *.tmp")
        .prefill(|dir, _src| {
            write(dir, "old.tmp", b"old tmp in the module\n");
            write(dir, "gone.txt", b"deleted by --delete\n");
            pin_times(dir, &[]);
        })
        .args(&["-a", "-i", "--delete"])
        // "ERROR: daemon refused to receive file ..." per excluded name.
        .expect_stock_code(Some(23))
        .run();
    }
}

compat_test! {
    fn push_module_write_only() {
        let run = PushCase::new("push_module_write_only", push_tree)
            .module_line("write only = yes")
            .args(&["-a", "-i"])
            .run();
        let (stock, _) = run.servers.pull_both(&["-a"], &format!("{MODULE}/"));
        assert_ne!(stock.code, 0, "stock allowed a pull from a write-only module");
    }
}

// ------------------------------------------------ killed client, atomicity

/// Many small files (one of them 1 MiB) and then a big one, for a push
/// long enough to kill: `many/` is sent before `zz/`, so a kill can land
/// among the small files, inside the 1 MiB one or inside the big one.
fn atomic_new(src: &Path) {
    mkdir(src, "");
    for i in 0..300u64 {
        let len = if i == 150 {
            1 << 20
        } else {
            2_000 + (i as usize * 37) % 9_000
        };
        write_random(src, &format!("many/f{i:03}"), 10_000 + i, len);
    }
    write_random(src, "zz/big.bin", 1, 4 << 20);
    pin_times(src, &[]);
}

/// The module's old state: every other small file and the big file with
/// other content (a subset of the new names).
fn atomic_old(dir: &Path, _src: &Path) {
    mkdir(dir, "");
    for i in (0..300u64).step_by(2) {
        write_random(
            dir,
            &format!("many/f{i:03}"),
            50_000 + i,
            1_000 + (i as usize * 53) % 7_000,
        );
    }
    write_random(dir, "zz/big.bin", 2, 3 << 20);
    pin_times(dir, &[]);
}

/// After a killed push: every regular file of `module` has the content of
/// `old` or of `new` at its path, and no temp files remain.
fn old_or_new(label: &str, module: &Path, old: &Path, new: &Path) -> Vec<String> {
    let m = snapshot(module);
    let o = snapshot(old);
    let n = snapshot(new);
    let mut bad = Vec::new();
    for (p, e) in &m.entries {
        if p.file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with('.'))
        {
            bad.push(format!("{label}: leftover temp file {}", p.display()));
            continue;
        }
        if !matches!(e.content, Content::Bytes(_) | Content::Hash { .. }) {
            continue;
        }
        let same = |t: &crate::harness::tree::Tree| {
            t.entries.get(p).is_some_and(|x| x.content == e.content)
        };
        if !same(&o) && !same(&n) {
            bad.push(format!(
                "{label}: {} is neither the old nor the new version",
                p.display()
            ));
        }
    }
    bad
}

compat_test! {
    fn push_killed_client_leaves_old_or_new_files() {
        // Compared against the source, not against stock: where the kill
        // lands is random (seeded from the clock, printed on failure).
        // Stock runs the same scenario first as a check of the case itself.
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let mut rng = Rng::new(seed);
        let servers: PushServers = PushCase::new("push_killed_client_leaves_old_or_new_files", atomic_new)
            .prefill(atomic_old)
            .serve();
        let slow = PushSpec::with_args(&["-a", "--bwlimit=5000"]);
        for side in Which::BOTH {
            let module = servers.module(side);
            let delay = Duration::from_millis(50 + rng.next_u64() % 1_400);
            let client = servers.spawn_push(side, &slow);
            std::thread::sleep(delay);
            let killed = client.kill();
            let ctx = format!("seed {seed}, kill after {delay:?}, side {}: {:?}", side.label(), killed.as_ref().map(|o| o.code));
            wait_sessions_end(servers.daemon(side), SESSION_END_TIMEOUT).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let bad = old_or_new(side.label(), &module, &servers.prefilled(), &servers.src);
            assert!(bad.is_empty(), "{ctx}:\n{}", bad.join("\n"));
            let done = snapshot(&module).entries.len();
            eprintln!("{ctx}: {} differences from the source after the kill ({done} entries)", diff_against_source(&servers.src, &module).len());
            let again = servers.push_one(side, &PushSpec::with_args(&["-a", "--delete"]));
            assert_eq!(again.outcome.code, 0, "{ctx}: second push failed:\n{}\n{}", again.outcome.describe(), servers.daemon(side).logs());
            wait_sessions_end(servers.daemon(side), SESSION_END_TIMEOUT).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let d = diff_against_source(&servers.src, &module);
            assert!(d.is_empty(), "{ctx}: module differs from the source after the second push:\n{}", format_diff(&d, 20));
        }
    }
}

compat_test! {
    fn push_delay_updates() {
        PushCase::new("push_delay_updates", push_tree)
            .prefill(prefill_mixed)
            .args(&["-a", "-i", "--delay-updates"])
            .run();
    }
}

compat_test! {
    fn push_remove_source_files_and_temp_dir() {
        // The module gets a temp dir; the sources are removed once they are in place.
        let servers = PushCase::new("push_remove_source_files_and_temp_dir", push_tree)
            .prefill(|dir, _src| {
                mkdir(dir, "");
                mkdir(dir, "tmpd");
            })
            .serve();
        for side in Which::BOTH {
            let copy = servers.src.parent().unwrap().join(format!("src-{}", side.label()));
            crate::harness::fixture::copy_tree(&servers.src, &copy);
        }
        let run = |side: Which| {
            let copy = servers.src.parent().unwrap().join(format!("src-{}", side.label()));
            crate::harness::process::run_cmd(
                &crate::harness::bins::stock(),
                ["-a".to_string(), "-i".into(), "--remove-source-files".into(), "--temp-dir=tmpd".into(), format!("{}/", copy.display()), servers.daemon(side).url(&format!("{MODULE}/"))],
                None,
                crate::harness::process::client_timeout(),
            )
        };
        let (s, o) = (run(Which::Stock), run(Which::Ours));
        assert_eq!(s.code, o.code, "stock {}\nours {}", s.describe(), o.describe());
        assert_eq!(s.stdout, o.stdout, "itemize output");
        for side in Which::BOTH {
            let copy = servers.src.parent().unwrap().join(format!("src-{}", side.label()));
            let left: Vec<_> = walk_files(&copy);
            assert!(left.is_empty(), "{}: source files not removed: {left:?}", side.label());
        }
    }
}

fn walk_files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

compat_test! {
    fn push_partial_dir_resumes_after_killed_client() {
        const BIG: usize = 4 << 20;
        let servers = PushCase::new("push_partial_dir_resumes_after_killed_client", |src: &Path| {
            mkdir(src, "");
            write(src, "a.txt", b"first, small\n");
            write_random(src, "big.bin", 98, BIG);
            pin_times(src, &[]);
        })
        .serve();
        let slow = PushSpec::with_args(&["-a", "--partial-dir=.rsync-partial", "--bwlimit=1000"]);
        let full = std::fs::read(servers.src.join("big.bin")).unwrap();
        for side in Which::BOTH {
            let module = servers.module(side);
            let mut client = servers.spawn_push(side, &slow);
            let deadline = Instant::now() + Duration::from_secs(10);
            while client.running() && !temp_with_data(&module, "big.bin") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            client.kill().unwrap_or_else(|o| panic!("{}: ended before the kill:\n{}", side.label(), o.describe()));
            wait_sessions_end(servers.daemon(side), SESSION_END_TIMEOUT).unwrap();
            assert!(!module.join("big.bin").exists(), "{}: a partial file under the real name", side.label());
            let kept = std::fs::read(module.join(".rsync-partial/big.bin"))
                .unwrap_or_else(|e| panic!("{}: no partial file in the partial dir ({e})", side.label()));
            assert!(!kept.is_empty() && kept.len() < BIG && full.starts_with(&kept), "{}: partial file is not a prefix", side.label());
        }
        servers.push(&PushSpec::with_args(&["-a", "-i", "--partial-dir=.rsync-partial"]));
        for side in Which::BOTH {
            let d = diff_against_source(&servers.src, &servers.module(side));
            assert!(d.is_empty(), "{}: after the resumed push:\n{}", side.label(), format_diff(&d, 20));
        }
    }
}

compat_test! {
    fn push_prune_empty_dirs() {
        PushCase::new("push_prune_empty_dirs", issue2_tree)
            .args(&["-a", "-i", "-m", "--exclude=*.bin"])
            .run();
    }
}

fn prefill_appendable(dir: &Path, src: &Path) {
    copy_tree(src, dir);
    // Shorter copies of two files (a prefix), with another mtime: --append sends only the tails.
    let m = std::fs::read(src.join("m.bin")).unwrap();
    std::fs::write(dir.join("m.bin"), &m[..m.len() / 2]).unwrap();
    set_mtime(&dir.join("m.bin"), 1_500_000_000, 0);
    let a = std::fs::read(src.join("a.txt")).unwrap();
    std::fs::write(dir.join("a.txt"), &a[..a.len() / 2]).unwrap();
    set_mtime(&dir.join("a.txt"), 1_500_000_000, 0);
}

compat_test! {
    fn push_append() {
        PushCase::new("push_append", push_tree).prefill(prefill_appendable).args(&["-a", "-i", "--append", "--stats"]).run();
    }
}

compat_test! {
    fn push_append_verify() {
        PushCase::new("push_append_verify", push_tree).prefill(prefill_appendable).args(&["-a", "-i", "--append-verify", "--stats"]).run();
    }
}

compat_test! {
    fn push_verbose_incremental() {
        // -v shows "sending incremental file list": the daemon must offer incremental recursion.
        PushCase::new("push_verbose_incremental", issue2_tree).prefill(|dir, _| {
            mkdir(dir, "");
        }).args(&["-av", "--delete"]).run();
    }
}

compat_test! {
    fn push_secluded_args() {
        PushCase::new("push_secluded_args", issue2_tree)
            .args(&["-s", "-a", "-i"])
            .run();
        PushCase::new("push_secluded_args_protocol_29", issue2_tree)
            .args(&["-s", "-a", "-i", "--protocol=29"])
            .run();
    }
}

compat_test! {
    fn push_chown_and_maps() {
        // A stock client's --chown / --usermap / --groupmap reach the
        // daemon's receiver as maps; before, ours ignored them.
        PushCase::new("push_chown_and_maps", push_tree)
            .args(&["-ai", "--chown=daemon:bin"])
            .run();
        PushCase::new("push_usermap_groupmap", push_tree)
            .args(&["-ai", "--usermap=1234:bin,0-99:nobody,*:daemon", "--groupmap=2345:sys,*:nogroup"])
            .run();
        PushCase::new("push_usermap_unparsable", push_tree)
            .args(&["-ai", "--usermap=1x:bin"])
            .expect_stock_code(Some(1))
            .run();
    }
}

compat_test! {
    fn push_escaped_option_values() {
        // A stock 3.5 client escapes option values for a shell (`a\ b`,
        // `\*`); a daemon undoes that (upstream read_args), so these land
        // in "old dir" with the suffix ".b*k" as on a stock daemon.
        PushCase::new("push_escaped_option_values", push_tree)
            .prefill(prefill_mixed)
            .args(&["-ai", "-b", "--backup-dir=old dir", "--suffix=.b*k"])
            .run();
    }
}

// --files-from=:FILE on a push: the daemon reads the list in the module
// and sends the names to the client, which sends what they name.
compat_test! {
    fn push_files_from_server_side_list() {
        for proto in ["--protocol=32", "--protocol=30", "--protocol=29"] {
            PushCase::new("push_files_from_server_side_list", issue2_tree)
                .args(&["-a", "-i", proto, "--files-from=:names.txt"])
                .prefill(|dir, _src| {
                    write(dir, "names.txt", b"f700.bin\n# kept: a name to the sender\nnested/a/b/c/deep.txt\r\n/many/f0007\n");
                })
                // (the comment line goes to the sender as a name, missing there)
                .expect_stock_code(Some(23))
                .run();
        }
    }
}

// Module `temp dir`: the default for --temp-dir, taken inside the module
// (a missing one stops the upload as stock does; a client's own wins).
compat_test! {
    fn push_module_temp_dir() {
        PushCase::new("push_module_temp_dir", issue2_tree)
            .module_line("temp dir = /.tmpd")
            .prefill(|dir, _src| {
                std::fs::create_dir_all(dir.join(".tmpd")).unwrap();
            })
            .args(&["-a", "-i"])
            .run();
        PushCase::new("push_module_temp_dir_missing", issue2_tree)
            .module_line("temp dir = /nonexistent")
            .args(&["-a", "-i"])
            .expect_stock_code(Some(1))
            .run();
        PushCase::new("push_module_temp_dir_client_wins", issue2_tree)
            .module_line("temp dir = /nonexistent")
            .prefill(|dir, _src| {
                std::fs::create_dir_all(dir.join("mine")).unwrap();
            })
            .args(&["-a", "-i", "--temp-dir=mine"])
            .run();
    }
}
