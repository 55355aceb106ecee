//! The pull family: a stock client pulling from a module, stock daemon vs
//! ours side by side (see `harness::compare`). Each test is named after the
//! option or behaviour it guards.

use std::path::Path;

use crate::harness::compare::{parse_stats, stats_number, Client, PullCase, PullSpec, MODULE};
use crate::harness::fixture::{self, copy_tree, issue2_tree, pin_times, set_mtime, write};

/// Reads the mtime of `p` (secs, nanos) without following symlinks.
fn mtime_of(p: &Path) -> (i64, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec() as u32)
}

/// Overwrites `len` bytes at `offset` of `root/rel` in place.
fn poke(root: &Path, rel: &str, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join(rel))
        .unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Destination = copy of the source where some files differ in content but
/// keep size and mtime (only `-c` notices).
fn prefill_same_stat(dest: &Path, src: &Path) {
    copy_tree(src, dest);
    for (rel, off) in [
        ("f700.bin", 350),
        ("f65537.bin", 30_000),
        ("nested/a/sib.txt", 0),
        ("f1m13.bin", 700_000),
    ] {
        let t = mtime_of(&dest.join(rel));
        poke(dest, rel, off, b"X");
        set_mtime(&dest.join(rel), t.0, t.1);
    }
}

/// Destination = copy of the source where some files were edited in the
/// middle and have another mtime: the delta algorithm has work to do.
fn prefill_stale(dest: &Path, src: &Path) {
    copy_tree(src, dest);
    for (i, (rel, off)) in [
        ("f65537.bin", 33_000u64),
        ("f1m13.bin", 500_000),
        ("big24m.bin", 12 << 20),
        ("f4096.bin", 10),
        ("nested/a/sib.txt", 2),
    ]
    .into_iter()
    .enumerate()
    {
        poke(dest, rel, off, b"edited!");
        set_mtime(&dest.join(rel), 1_500_000_000 + i as i64, 0);
    }
}

/// Destination with a partial, different tree: extra files and dirs, some
/// files differing in size, some only in mtime.
fn prefill_partial(dest: &Path, _src: &Path) {
    fixture::mkdir(dest, "");
    write(dest, "f700.bin", b"shorter than before");
    write(dest, "nested/a/sib.txt", b"sibling\n");
    write(dest, "nested/a/b/extra2.txt", b"extra two\n");
    write(dest, "extra.txt", b"not in the source\n");
    write(dest, "extra_dir/x.txt", b"x\n");
    write(dest, "extra_dir/sub/y.bin", b"y\n");
    write(dest, "many/zzz_extra", b"zzz\n");
    write(dest, "unicode/naïve café.txt", b"old content\n");
    pin_times(dest, &[]);
}

/// `-a -i` followed by `extra`.
fn a_i(extra: &[&str]) -> Vec<String> {
    ["-a", "-i"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

compat_test! {
    fn pull_archive() {
        PullCase::new("pull_archive", issue2_tree).args(&["-a", "-i"]).run();
    }
}

compat_test! {
    fn pull_archive_hardlinks() {
        PullCase::new("pull_archive_hardlinks", issue2_tree).args(&["-aH", "-i"]).run();
    }
}

compat_test! {
    fn pull_archive_hardlinks_devices() {
        PullCase::new("pull_archive_hardlinks_devices", issue2_tree).args(&["-aHD", "-i"]).run();
    }
}

compat_test! {
    fn pull_archive_into_stale_dest_uses_delta() {
        PullCase::new("pull_archive_into_stale_dest_uses_delta", issue2_tree)
            .args(&["-aH", "-i", "--stats"])
            .prefill(prefill_stale)
            .run();
    }
}

compat_test! {
    fn pull_checksum_recursive() {
        PullCase::new("pull_checksum_recursive", issue2_tree)
            .args(&["-rc", "-i"])
            .prefill(prefill_same_stat)
            .run();
    }
}

compat_test! {
    fn pull_checksum_archive() {
        PullCase::new("pull_checksum_archive", issue2_tree)
            .args(&["-ac", "-i", "--stats"])
            .prefill(prefill_same_stat)
            .run();
    }
}

compat_test! {
    fn pull_dry_run_itemize() {
        PullCase::new("pull_dry_run_itemize", issue2_tree)
            .args(&["-a", "-n", "-i", "--delete"])
            .prefill(prefill_partial)
            .run();
    }
}

compat_test! {
    fn pull_delete_extra_files() {
        PullCase::new("pull_delete_extra_files", issue2_tree)
            .args(&["-a", "-i", "--delete", "--stats"])
            .prefill(prefill_partial)
            .run();
    }
}

compat_test! {
    fn pull_include_only_txt() {
        PullCase::new("pull_include_only_txt", issue2_tree)
            .args(&["-a", "-i", "--include=*/", "--include=*.txt", "--exclude=*"])
            .run();
    }
}

compat_test! {
    fn pull_exclude_anchored_and_dirs() {
        PullCase::new("pull_exclude_anchored_and_dirs", issue2_tree)
            .args(&[
                "-a",
                "-i",
                "--include=/big24m.bin",
                "--exclude=*.bin",
                "--exclude=/many/",
                "--exclude=nested/a/b/",
                "--exclude=**/emoji*",
            ])
            .run();
    }
}

compat_test! {
    fn pull_exclude_with_delete_keeps_excluded() {
        PullCase::new("pull_exclude_with_delete_keeps_excluded", issue2_tree)
            .args(&["-a", "-i", "--delete", "--exclude=extra_dir/", "--exclude=*.txt"])
            .prefill(prefill_partial)
            .run();
    }
}

compat_test! {
    fn pull_filter_rsync_filter_files() {
        PullCase::new("pull_filter_rsync_filter_files", fixture::filter_tree)
            .args(&["-a", "-i", "-F"])
            .run();
    }
}

compat_test! {
    fn pull_filter_rsync_filter_files_ff() {
        PullCase::new("pull_filter_rsync_filter_files_ff", fixture::filter_tree)
            .args(&["-a", "-i", "-FF", "--delete"])
            .prefill(prefill_partial)
            .run();
    }
}

fn checksum_choice(name: &str, algo: &str) {
    let arg = format!("--checksum-choice={algo}");
    PullCase::new(name, issue2_tree)
        .args(&a_i(&["-c", "--stats", &arg]))
        .prefill(|d, s| {
            prefill_same_stat(d, s);
            // and some stale files, so block checksums are used too
            poke(d, "f65537.bin", 100, b"stale");
            set_mtime(&d.join("f65537.bin"), 1_400_000_000, 0);
        })
        .run();
}

compat_test! { fn pull_checksum_choice_xxh128() { checksum_choice("pull_checksum_choice_xxh128", "xxh128"); } }
compat_test! { fn pull_checksum_choice_xxh3() { checksum_choice("pull_checksum_choice_xxh3", "xxh3"); } }
compat_test! { fn pull_checksum_choice_xxh64() { checksum_choice("pull_checksum_choice_xxh64", "xxh64"); } }
compat_test! { fn pull_checksum_choice_md5() { checksum_choice("pull_checksum_choice_md5", "md5"); } }
compat_test! { fn pull_checksum_choice_md4() { checksum_choice("pull_checksum_choice_md4", "md4"); } }
compat_test! { fn pull_checksum_choice_sha1() { checksum_choice("pull_checksum_choice_sha1", "sha1"); } }

fn compress(name: &str, extra: &[&str]) {
    PullCase::new(name, issue2_tree)
        .args(&a_i(&[&["-z", "--stats"], extra].concat()))
        .prefill(prefill_stale)
        .run();
}

compat_test! { fn pull_compress_choice_zstd() { compress("pull_compress_choice_zstd", &["--compress-choice=zstd"]); } }
compat_test! { fn pull_compress_choice_lz4() { compress("pull_compress_choice_lz4", &["--compress-choice=lz4"]); } }
compat_test! { fn pull_compress_choice_zlibx() { compress("pull_compress_choice_zlibx", &["--compress-choice=zlibx"]); } }
compat_test! { fn pull_compress_choice_zlib() { compress("pull_compress_choice_zlib", &["--compress-choice=zlib"]); } }
compat_test! { fn pull_compress_plain_z() { compress("pull_compress_plain_z", &[]); } }

fn protocol(name: &str, version: u32) {
    let arg = format!("--protocol={version}");
    PullCase::new(name, issue2_tree)
        .args(&a_i(&["-H", "--stats", &arg]))
        .prefill(prefill_stale)
        .run();
}

compat_test! { fn pull_protocol_31() { protocol("pull_protocol_31", 31); } }
compat_test! { fn pull_protocol_30() { protocol("pull_protocol_30", 30); } }
compat_test! { fn pull_protocol_29() { protocol("pull_protocol_29", 29); } }
compat_test! { fn pull_protocol_28() { protocol("pull_protocol_28", 28); } }
compat_test! { fn pull_protocol_27() { protocol("pull_protocol_27", 27); } }

compat_test! {
    fn pull_client_327_archive() {
        PullCase::new("pull_client_327_archive", issue2_tree)
            .client(Client::Rsync327)
            .args(&["-aH", "-i"])
            .run();
    }
}

compat_test! {
    fn pull_client_327_stale_delta() {
        PullCase::new("pull_client_327_stale_delta", issue2_tree)
            .client(Client::Rsync327)
            .args(&["-a", "-i", "--stats"])
            .prefill(prefill_stale)
            .run();
    }
}

compat_test! {
    fn pull_relative_with_dot_dir() {
        PullCase::new("pull_relative_with_dot_dir", issue2_tree)
            .args(&["-a", "-i", "-R"])
            .remote(&format!("{MODULE}/nested/./a/"))
            .run();
    }
}

compat_test! {
    fn pull_files_from_local_list() {
        PullCase::new("pull_files_from_local_list", |src: &Path| {
            issue2_tree(src);
            let list = "f700.bin\nnested/a/b/c/deep.txt\nunicode/日本語のファイル.txt\nmany/f0007\nhl/one\nlinks/relative\nempty_dir\n";
            std::fs::write(src.parent().unwrap().join("list.txt"), list).unwrap();
        })
        .args(&["-a", "-i", "--files-from={work}/list.txt"])
        .run();
    }
}

compat_test! {
    fn pull_numeric_ids() {
        PullCase::new("pull_numeric_ids", issue2_tree).args(&["-a", "-i", "--numeric-ids"]).run();
    }
}

compat_test! {
    fn pull_delete_excluded() {
        PullCase::new("pull_delete_excluded", issue2_tree)
            .args(&["-a", "-i", "--delete", "--delete-excluded", "--exclude=*.txt", "--exclude=/many/"])
            .prefill(prefill_partial)
            .run();
    }
}

compat_test! {
    fn pull_size_only() {
        PullCase::new("pull_size_only", issue2_tree)
            .args(&["-a", "-i", "--size-only"])
            .prefill(prefill_stale)
            .run();
    }
}

compat_test! {
    fn pull_max_size() {
        PullCase::new("pull_max_size", issue2_tree).args(&["-a", "-i", "--max-size=4K"]).run();
    }
}

compat_test! {
    fn pull_existing_only() {
        PullCase::new("pull_existing_only", issue2_tree)
            .args(&["-a", "-i", "--existing"])
            .prefill(prefill_partial)
            .run();
    }
}

compat_test! {
    fn pull_one_file_system() {
        PullCase::new("pull_one_file_system", issue2_tree).args(&["-ax", "-i"]).run();
    }
}

compat_test! {
    fn pull_single_file() {
        PullCase::new("pull_single_file", issue2_tree)
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/f65537.bin"))
            .ignore_root()
            .run();
    }
}

compat_test! {
    fn pull_single_file_to_new_name() {
        PullCase::new("pull_single_file_to_new_name", issue2_tree)
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/f700.bin"))
            .dest(Some("renamed.bin"))
            .run();
    }
}

compat_test! {
    fn pull_sub_directory_contents() {
        PullCase::new("pull_sub_directory_contents", issue2_tree)
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/nested/"))
            .run();
    }
}

compat_test! {
    fn pull_sub_directory_itself() {
        PullCase::new("pull_sub_directory_itself", issue2_tree)
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/unicode"))
            .run();
    }
}

compat_test! {
    fn pull_list_only() {
        PullCase::new("pull_list_only", issue2_tree).args(&["--list-only"]).dest(None).run();
    }
}

compat_test! {
    fn pull_list_only_recursive() {
        PullCase::new("pull_list_only_recursive", issue2_tree)
            .args(&["--list-only", "-r"])
            .dest(None)
            .run();
    }
}

fn listing_source(src: &Path) {
    fixture::small_tree(src);
    let work = src.parent().unwrap();
    std::fs::write(
        work.join("motd.txt"),
        "Welcome to the compat daemon.\nSecond motd line.\n",
    )
    .unwrap();
    std::fs::create_dir_all(work.join("other")).unwrap();
}

fn module_listing(name: &str, client: Client) {
    let run = PullCase::new(name, listing_source)
        .client(client)
        .global_line("motd file = {work}/motd.txt")
        .module_line("comment = The main test module")
        .extra_config(
            "\n[hidden]\n    path = {work}/other\n    list = no\n    comment = must not be listed\n\
             \n[other]\n    path = {work}/other\n    comment = Another module, with spaces\n\
             \n[nocomment]\n    path = {work}/other\n",
        )
        .remote("")
        .dest(None)
        .compare_stderr()
        .run();
    assert!(
        run.stock.outcome.stdout.contains("Welcome"),
        "motd missing:\n{}",
        run.stock.outcome.stdout
    );
    assert!(!run.stock.outcome.stdout.contains("hidden"));
}

compat_test! { fn pull_module_listing() { module_listing("pull_module_listing", Client::Stock); } }
compat_test! { fn pull_module_listing_client_327() { module_listing("pull_module_listing_client_327", Client::Rsync327); } }

compat_test! {
    fn pull_delta_literal_data_matches_stock() {
        let big = |src: &Path| {
            fixture::mkdir(src, "");
            fixture::write_random(src, "big24m.bin", 4242, 24 << 20);
            pin_times(src, &[]);
        };
        let run = PullCase::new("pull_delta_literal_data_matches_stock", big).args(&["-a", "-i"]).run();
        // Edit bytes in the middle of the source (and elsewhere, a little).
        poke(&run.servers.src, "big24m.bin", 12 << 20, &fixture::random_bytes(9, 3000));
        poke(&run.servers.src, "big24m.bin", 3 << 20, b"small edit");
        set_mtime(&run.servers.src.join("big24m.bin"), 1_800_000_000, 5);
        let spec = PullSpec {
            args: ["-a", "-i", "--stats", "--no-whole-file"].map(String::from).to_vec(),
            ..PullSpec::default()
        };
        let (stock, ours) = run.pull_again(&spec);
        let s = stats_number(&parse_stats(&stock.outcome.stdout), "Literal data").expect("stock Literal data");
        let o = stats_number(&parse_stats(&ours.outcome.stdout), "Literal data").expect("ours Literal data");
        assert!(s > 0 && s < 1 << 20, "stock literal data {s} is not a delta transfer");
        let tolerance = s.div_ceil(100);
        assert!(
            o.abs_diff(s) <= tolerance,
            "Literal data: ours {o} vs stock {s} (allowed ±{tolerance})"
        );
    }
}

compat_test! {
    fn pull_verbose_messages() {
        PullCase::new("pull_verbose_messages", issue2_tree).args(&["-av"]).run();
    }
}

compat_test! {
    fn pull_verbose_stats() {
        PullCase::new("pull_verbose_stats", issue2_tree).args(&["-av", "--stats"]).run();
    }
}

compat_test! {
    fn pull_relative_several_paths_incremental() {
        // Several module paths with -R: implied directories and their
        // partial lists, as a stock daemon sends them (incrementally).
        PullCase::new("pull_relative_several_paths_incremental", issue2_tree)
            .args(&["-a", "-v", "-R", "--delete", "--stats", "--old-args"])
            .remote(&format!("{MODULE}/nested/a/b {MODULE}/hl {MODULE}/nested/./a/"))
            .prefill(prefill_partial)
            .run();
    }
}

compat_test! {
    fn pull_files_from_recursive_incremental() {
        PullCase::new("pull_files_from_recursive_incremental", |src: &Path| {
            issue2_tree(src);
            let list = "nested/a\n/hl\nmany/f0007\nlinks/\n";
            std::fs::write(src.parent().unwrap().join("list.txt"), list).unwrap();
        })
        .args(&["-a", "-v", "-r", "--files-from={work}/list.txt", "--stats"])
        .run();
    }
}

/// A source for `--fuzzy`: a renamed file, an edited one under last
/// year's name.
fn fuzzy_tree(root: &Path) {
    fixture::write(root, "report-2024.txt", &fixture::random_bytes(71, 200_000));
    fixture::write(root, "moved.bin", &fixture::random_bytes(72, 100_000));
    fixture::write(root, "zzz-unrelated-name.iso", b"nothing like it\n");
    pin_times(root, &[]);
}

/// The destination holds `moved.bin` as `oldname.dat` (same size and
/// time) and last year's report.
fn fuzzy_dest(dest: &Path, src: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let mut report = std::fs::read(src.join("report-2024.txt")).unwrap();
    report[5_000..5_009].copy_from_slice(b"last year");
    write(dest, "report-2023.txt", &report);
    set_mtime(&dest.join("report-2023.txt"), 1_400_000_000, 0);
    copy_tree(&src.join("moved.bin"), &dest.join("oldname.dat"));
}

// --fuzzy from our daemon: the stock generator names a fuzzy basis (type
// and name after the index), which our sender reads and echoes.
compat_test! {
    fn pull_fuzzy() {
        PullCase::new("pull_fuzzy", fuzzy_tree)
            .args(&["-a", "-i", "-yy", "--stats"])
            .prefill(fuzzy_dest)
            .run();
    }
}

// -s (--secluded-args): the stock client sends its arguments again as a
// second NUL-separated list (below protocol 30 after a first one with
// "(null)" in it); names with spaces are not split.
compat_test! {
    fn pull_secluded_args() {
        PullCase::new("pull_secluded_args", issue2_tree)
            .args(&["-s", "-a", "-i"])
            .run();
        PullCase::new("pull_secluded_args_protocol_29", issue2_tree)
            .args(&["-s", "-a", "-i", "--protocol=29"])
            .remote(&format!("{MODULE}/with space/file with  two spaces.txt"))
            .run();
    }
}

// Wildcards in a pull's paths are expanded by the daemon inside the module
// (upstream read_args -> glob_expand_module); one that matches nothing is
// reported missing (exit 23).
compat_test! {
    fn pull_wildcard_paths() {
        PullCase::new("pull_wildcard_paths", issue2_tree)
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/f*.bin"))
            .run();
    }
}

compat_test! {
    fn pull_wildcard_dirs_and_classes() {
        PullCase::new("pull_wildcard_dirs_and_classes", issue2_tree)
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/m[ao]*/f00[0-4][!5-9]"))
            .run();
    }
}

compat_test! {
    fn pull_wildcard_relative_anchor() {
        PullCase::new("pull_wildcard_relative_anchor", issue2_tree)
            .args(&["-a", "-i", "-R"])
            .remote(&format!("{MODULE}/n?sted/./a/[bs]*"))
            .run();
    }
}

compat_test! {
    fn pull_wildcard_matching_nothing() {
        PullCase::new("pull_wildcard_matching_nothing", issue2_tree)
            .args(&["-a", "-i"])
            .remote(&format!("{MODULE}/nomatch*"))
            .expect_stock_code(Some(23))
            .run();
    }
}

/// A names list kept in the module, for `--files-from=:FILE` (comment and
/// empty lines skipped, a name climbing out clamped inside).
fn tree_with_server_list(src: &Path) {
    issue2_tree(src);
    write(
        src,
        "lists/names.txt",
        b"f700.bin\n# a comment\n\nnested/a/b/c/deep.txt\r\n../../many/f0007\nunicode/\n",
    );
}

// --files-from=:FILE: the daemon reads the list inside the module.
compat_test! {
    fn pull_files_from_server_side_list() {
        PullCase::new("pull_files_from_server_side_list", tree_with_server_list)
            .args(&["-a", "-i", "--files-from=:lists/names.txt"])
            .run();
    }
}

compat_test! {
    fn pull_files_from_server_side_list_protocol_29() {
        PullCase::new("pull_files_from_server_side_list_protocol_29", tree_with_server_list)
            .args(&["-a", "-i", "--protocol=29", "--files-from=:/lists/names.txt"])
            .run();
    }
}

compat_test! {
    fn pull_files_from_server_side_list_missing() {
        PullCase::new("pull_files_from_server_side_list_missing", issue2_tree)
            .args(&["-a", "-i", "--files-from=:nolist.txt"])
            .expect_stock_code(None)
            .run();
    }
}

/// Hard-linked symlinks and specials (a fifo), beside hard-linked files:
/// with -H each group is made again as links (stock -VV: hardlink_symlinks,
/// hardlink_specials).
fn linked_symlinks_and_specials(src: &Path) {
    fixture::mkdir(src, "");
    fixture::symlink(src, "s1", "target");
    fixture::hardlink(src, "s1", "s2");
    fixture::mkfifo(src, "f1");
    fixture::hardlink(src, "f1", "f2");
    write(src, "r1", b"x\n");
    fixture::hardlink(src, "r1", "sub/r2");
}

compat_test! {
    fn pull_hardlinked_symlinks_and_specials() {
        PullCase::new("pull_hardlinked_symlinks_and_specials", linked_symlinks_and_specials)
            .args(&["-aHi"])
            .run();
    }
}
