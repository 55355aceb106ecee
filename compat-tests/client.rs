//! Client families (issue 4): rrsync in the client's seat against stock
//! daemons and stock `rsync --server`, rrsync as the server a stock client
//! starts, and rrsync local copies; each compared with stock rsync doing the
//! same transfer (trees, exit codes, item lines, `--stats`).

use crate::harness::client::{ClientCase, Mode};
use crate::harness::fixture;
use std::path::Path;

fn small(root: &Path) {
    fixture::small_tree(root);
}

fn edit_small(root: &Path) {
    fixture::write(root, "a.txt", b"alpha changed\n");
    let _ = std::fs::remove_file(root.join("b.txt"));
    fixture::write(root, "new/n.txt", b"new file\n");
    fixture::write_random(root, "r.bin", 5, 12_000);
    fixture::pin_times(root, &[]);
}

/// A destination holding extra files that `--delete` must remove.
fn stale_dest(dest: &Path, src: &Path) {
    fixture::copy_tree(src, dest);
    fixture::write(dest, "stale.txt", b"stale\n");
    fixture::write(dest, "olddir/x.txt", b"x\n");
    fixture::write(dest, "sub/stale2.txt", b"y\n");
}

// --- rrsync client against a stock daemon: pulls ---

compat_test! {
    fn client_daemon_pull_archive() {
        ClientCase::new("client_daemon_pull_archive", Mode::DaemonPull, fixture::issue2_tree)
            .args(&["-aH", "-i"])
            .run();
    }
}

compat_test! {
    fn client_daemon_pull_verbose_stats() {
        ClientCase::new("client_daemon_pull_verbose_stats", Mode::DaemonPull, small)
            .args(&["-av", "--stats"])
            .then(edit_small, &["-av", "--stats"])
            .run();
    }
}

compat_test! {
    fn client_daemon_pull_delete() {
        ClientCase::new("client_daemon_pull_delete", Mode::DaemonPull, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete"])
            .run();
    }
}

compat_test! {
    fn client_daemon_pull_exclude_compress_checksum() {
        ClientCase::new("client_daemon_pull_exclude_compress_checksum", Mode::DaemonPull, small)
            .args(&["-ai", "--exclude=*.bin", "-z", "--checksum-choice=md5"])
            .then(edit_small, &["-aic", "--compress-choice=zstd"])
            .run();
    }
}

compat_test! {
    fn client_daemon_pull_protocol_30_dry_run() {
        ClientCase::new("client_daemon_pull_protocol_30_dry_run", Mode::DaemonPull, small)
            .args(&["-ain", "--protocol=30"])
            .then(|_| {}, &["-ai", "--protocol=30"])
            .run();
    }
}

compat_test! {
    fn client_daemon_pull_single_file_renamed() {
        ClientCase::new("client_daemon_pull_single_file_renamed", Mode::DaemonPull, small)
            .source("sub/c.txt")
            .dest("renamed.txt")
            .args(&["-ai"])
            .run();
    }
}

compat_test! {
    fn client_daemon_unknown_module() {
        ClientCase::new("client_daemon_unknown_module", Mode::DaemonPull, small)
            .remote("rsync://127.0.0.1:{port}/nosuch/")
            .args(&["-a"])
            .expect_code(5)
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn client_daemon_missing_source_file() {
        ClientCase::new("client_daemon_missing_source_file", Mode::DaemonPull, small)
            .source("nothere.txt")
            .args(&["-a"])
            .expect_code(23)
            .run();
    }
}

/// The small tree, plus a secrets file (joe:secret) and password files
/// beside it for the auth module.
fn small_with_secrets(root: &Path) {
    fixture::small_tree(root);
    let work = root.parent().expect("work dir");
    for (name, text) in [
        ("secrets", "joe:secret\n"),
        ("pw-good", "secret\n"),
        ("pw-bad", "wrong\n"),
    ] {
        let p = work.join(name);
        std::fs::write(&p, text).expect("write secret");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod secret");
    }
}

const AUTH_MODULE: &str =
    "[auth]\n    path = {work}/src\n    auth users = joe\n    secrets file = {work}/secrets\n";

compat_test! {
    fn client_daemon_auth_right_password() {
        ClientCase::new("client_daemon_auth_right_password", Mode::DaemonPull, small_with_secrets)
            .extra_config(AUTH_MODULE)
            .remote("rsync://joe@127.0.0.1:{port}/auth/")
            .args(&["-ai", "--password-file={work}/pw-good"])
            .expect_code(0)
            .run();
    }
}

compat_test! {
    fn client_daemon_auth_wrong_password() {
        ClientCase::new("client_daemon_auth_wrong_password", Mode::DaemonPull, small_with_secrets)
            .extra_config(AUTH_MODULE)
            .remote("rsync://joe@127.0.0.1:{port}/auth/")
            .args(&["-ai", "--password-file={work}/pw-bad"])
            .expect_code(5)
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn client_missing_files_from_and_password_file() {
        // Option errors found before any transfer: exit 1 and stock's lines.
        for mode in [Mode::Local, Mode::DaemonPull] {
            ClientCase::new("client_missing_files_from", mode, small)
                .args(&["-a", "--files-from=/nonexistent-rrsync-compat/list"])
                .expect_code(1)
                .compare_stderr()
                .no_tree()
                .run();
        }
        ClientCase::new("client_missing_password_file", Mode::DaemonPull, small_with_secrets)
            .extra_config(AUTH_MODULE)
            .remote("rsync://joe@127.0.0.1:{port}/auth/")
            .args(&["-a", "--password-file=/nonexistent-rrsync-compat/pw"])
            .expect_code(1)
            .compare_stderr()
            .no_tree()
            .run();
    }
}

compat_test! {
    fn client_daemon_unreachable() {
        ClientCase::new("client_daemon_unreachable", Mode::DaemonPull, small)
            .remote("rsync://127.0.0.1:1/mod/")
            .args(&["-a"])
            .expect_code(10)
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn client_daemon_list_only() {
        ClientCase::new("client_daemon_list_only", Mode::DaemonPull, small)
            .no_dest()
            .args(&["-r"])
            .then(|_| {}, &["--list-only", "-a"])
            .run();
    }
}

compat_test! {
    fn client_daemon_module_listing() {
        ClientCase::new("client_daemon_module_listing", Mode::DaemonPull, small)
            .module_line("comment = the small tree")
            .extra_config("[hidden]\n    path = /tmp\n    list = no\n")
            .remote("rsync://127.0.0.1:{port}/")
            .no_dest()
            .args(&["-q"])
            .then(|_| {}, &["-v"])
            .run();
    }
}

compat_test! {
    fn client_rsh_that_exits() {
        ClientCase::new("client_rsh_that_exits", Mode::RshPush, small)
            .rsh_script("#!/bin/sh\nexit 0\n")
            .args(&["-a"])
            .expect_code(12)
            // (stock's message is a race: a broken pipe or an unexpected close)
            .run();
    }
}

compat_test! {
    fn client_rsh_connection_dropped_mid_transfer() {
        // The far side (a rate-limited stock sender) is killed a second
        // into the 24 MiB file.
        ClientCase::new("client_rsh_connection_dropped_mid_transfer", Mode::RshPull, fixture::issue2_tree)
            .rsh_script("#!/bin/sh\nif [ \"$1\" = \"-l\" ]; then shift 2; fi\nshift\nexec timeout -s KILL 1 /bin/sh -c \"$*\"\n")
            .args(&["-a", "--bwlimit=2000"])
            .expect_code(12)
            .no_stdout()
            .no_tree()
            .run();
    }
}

// --- rrsync client against a stock daemon: pushes ---

compat_test! {
    fn client_daemon_push_archive() {
        ClientCase::new("client_daemon_push_archive", Mode::DaemonPush, fixture::issue2_tree)
            .args(&["-aHi"])
            .run();
    }
}

compat_test! {
    fn client_daemon_push_resync_stats() {
        ClientCase::new("client_daemon_push_resync_stats", Mode::DaemonPush, small)
            .args(&["-ai", "--stats"])
            .then(edit_small, &["-ai", "--stats", "--delete"])
            .run();
    }
}

compat_test! {
    fn client_daemon_push_read_only_module() {
        ClientCase::new("client_daemon_push_read_only_module", Mode::DaemonPush, small)
            .remote("rsync://127.0.0.1:{port}/mod/dest/")
            .args(&["-a"])
            .expect_code(1)
            .run();
    }
}

// --- rrsync client over a remote shell, stock rsync --server on the far side ---

compat_test! {
    fn client_rsh_pull_archive() {
        ClientCase::new("client_rsh_pull_archive", Mode::RshPull, fixture::issue2_tree)
            .args(&["-aHi"])
            .run();
    }
}

compat_test! {
    fn client_rsh_pull_resync_delete() {
        ClientCase::new("client_rsh_pull_resync_delete", Mode::RshPull, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete", "--stats"])
            .then(edit_small, &["-ai", "--delete-after", "-z"])
            .run();
    }
}

compat_test! {
    fn client_rsh_push_archive() {
        ClientCase::new("client_rsh_push_archive", Mode::RshPush, fixture::issue2_tree)
            .args(&["-aHi"])
            .run();
    }
}

compat_test! {
    fn client_rsh_push_resync_delete() {
        ClientCase::new("client_rsh_push_resync_delete", Mode::RshPush, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete"])
            .then(edit_small, &["-aiv", "--stats", "--checksum-choice=xxh64"])
            .run();
    }
}

// --- stock client, rrsync --server on the far side ---

compat_test! {
    fn server_pull_archive() {
        ClientCase::new("server_pull_archive", Mode::ServerPull, fixture::issue2_tree)
            .args(&["-aHi"])
            .run();
    }
}

compat_test! {
    fn server_pull_resync() {
        ClientCase::new("server_pull_resync", Mode::ServerPull, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete", "--stats"])
            .then(edit_small, &["-ai", "-z"])
            .run();
    }
}

compat_test! {
    fn server_push_archive() {
        ClientCase::new("server_push_archive", Mode::ServerPush, fixture::issue2_tree)
            .args(&["-aHi"])
            .run();
    }
}

compat_test! {
    fn server_push_resync_delete() {
        ClientCase::new("server_push_resync_delete", Mode::ServerPush, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete", "--stats"])
            .then(edit_small, &["-ai", "--delete-delay", "--compress-choice=lz4"])
            .run();
    }
}

compat_test! {
    fn server_push_single_file_renamed() {
        ClientCase::new("server_push_single_file_renamed", Mode::ServerPush, small)
            .source("a.txt")
            .dest("renamed.txt")
            .args(&["-ai"])
            .run();
    }
}

// --- local copies ---

compat_test! {
    fn client_local_archive() {
        ClientCase::new("client_local_archive", Mode::Local, fixture::issue2_tree)
            .args(&["-aHi"])
            .run();
    }
}

compat_test! {
    fn client_local_resync_delete() {
        ClientCase::new("client_local_resync_delete", Mode::Local, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete"])
            .then(edit_small, &["-av", "--stats", "--delete"])
            .run();
    }
}

compat_test! {
    fn client_local_single_file_renamed() {
        ClientCase::new("client_local_single_file_renamed", Mode::Local, small)
            .source("r.bin")
            .dest("copy.bin")
            .args(&["-ai"])
            .run();
    }
}

/// A destination where entries of other types stand in the way: a
/// symlink and a non-empty directory where the source has files, a file
/// where it has a directory.
fn types_in_the_way(dest: &Path, _src: &Path) {
    fixture::write(dest, "keep.txt", b"kept\n");
    fixture::symlink(dest, "a.txt", "keep.txt");
    fixture::write(dest, "b.txt/inner.txt", b"inner\n");
    fixture::write(dest, "sub", b"a file where a dir goes\n");
}

compat_test! {
    fn client_local_types_in_the_way() {
        // Making room is not a deletion: no "*deleting" for the item itself,
        // and a non-empty directory only goes with --force (or --delete).
        ClientCase::new("client_local_types_in_the_way", Mode::Local, small)
            .prefill(types_in_the_way)
            .args(&["-ai"])
            .then(|_| {}, &["-ai", "--force"])
            .run();
    }
}

compat_test! {
    fn client_server_push_types_in_the_way() {
        ClientCase::new("client_server_push_types_in_the_way", Mode::ServerPush, small)
            .prefill(types_in_the_way)
            .args(&["-ai", "--delete"])
            .run();
    }
}

// --- option variety, each in the seat where its logic lives ---

fn big_file(root: &Path) {
    fixture::small_tree(root);
    fixture::write_random(root, "big.bin", 99, 3 * 1024 * 1024 + 17);
    fixture::pin_times(root, &[]);
}

fn edit_big(root: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("big.bin"))
        .expect("open big.bin");
    f.seek(SeekFrom::Start(1_500_000)).expect("seek");
    f.write_all(b"an edit in the middle").expect("write");
    drop(f);
    fixture::pin_times(root, &[]);
}

compat_test! {
    fn client_daemon_pull_delta_stats() {
        ClientCase::new("client_daemon_pull_delta_stats", Mode::DaemonPull, big_file)
            .args(&["-a", "--stats"])
            .then(edit_big, &["-ai", "--stats", "--no-whole-file"])
            .run();
    }
}

compat_test! {
    fn client_daemon_push_delta_stats() {
        ClientCase::new("client_daemon_push_delta_stats", Mode::DaemonPush, big_file)
            .args(&["-a", "--stats"])
            .then(edit_big, &["-ai", "--stats"])
            .run();
    }
}

compat_test! {
    fn client_local_delta_inplace_backup() {
        ClientCase::new("client_local_delta_inplace_backup", Mode::Local, big_file)
            .args(&["-a"])
            .then(edit_big, &["-ai", "--no-W", "--inplace", "--stats"])
            .then(edit_small, &["-ai", "--backup", "--suffix=.old"])
            .run();
    }
}

/// A source for `--inplace --backup`: a large file and a small one the
/// destination holds older versions of (the small one with another mode
/// and owner, which its backup keeps), one unchanged, one new, one in a
/// subdirectory (for the backup dir's directories).
fn inplace_backup_src(root: &Path) {
    fixture::mkdir(root, "");
    fixture::write_random(root, "big.bin", 61, 300_000);
    fixture::write(root, "small.txt", b"the new small file\n");
    fixture::write(root, "same.txt", b"unchanged\n");
    fixture::write(root, "new.txt", b"brand new\n");
    fixture::write_random(root, "sub/deep.bin", 62, 100_000);
    fixture::pin_times(root, &[]);
}

/// Overwrites bytes at `offset` of `root/rel` in place.
fn poke(root: &Path, rel: &str, offset: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(root.join(rel))
        .expect("open for poke");
    f.seek(SeekFrom::Start(offset)).expect("seek");
    f.write_all(bytes).expect("write");
}

/// Older versions of [`inplace_backup_src`]'s files.
fn inplace_backup_dest(dest: &Path, src: &Path) {
    fixture::copy_tree(src, dest);
    poke(dest, "big.bin", 150_000, b"the old version of this stretch");
    poke(dest, "sub/deep.bin", 5, b"old");
    fixture::write(dest, "small.txt", b"old\n");
    fixture::chmod(dest, "small.txt", 0o600);
    fixture::chown(dest, "small.txt", 1234, 2345);
    std::fs::remove_file(dest.join("new.txt")).expect("rm new.txt");
    for (name, t) in [
        ("big.bin", 1_500_000_000),
        ("small.txt", 1_500_000_100),
        ("sub/deep.bin", 1_500_000_200),
    ] {
        fixture::set_mtime(&dest.join(name), t, 123_456_789);
    }
}

/// A second change of the source (the backups of the first run are
/// replaced by those of this one).
fn edit_inplace_backup_src(root: &Path) {
    poke(root, "big.bin", 10, b"second edit");
    fixture::write(root, "small.txt", b"the small file, again\n");
    fixture::pin_times(root, &[]);
}

// --inplace with --backup: the old file is copied to its backup name (with
// its mode, owner and time) before it is rewritten in place, and that copy
// is the delta's basis (upstream FNAMECMP_BACKUP: unrestricted matching).
compat_test! {
    fn client_local_inplace_backup_delta() {
        ClientCase::new("client_local_inplace_backup_delta", Mode::Local, inplace_backup_src)
            .prefill(inplace_backup_dest)
            .args(&["-ai", "--inplace", "--backup", "--no-W", "--stats"])
            .then(edit_inplace_backup_src, &["-ai", "--inplace", "-b", "--suffix=.old"])
            .run();
    }
}

compat_test! {
    fn client_local_inplace_backup_dir() {
        ClientCase::new("client_local_inplace_backup_dir", Mode::Local, inplace_backup_src)
            .prefill(inplace_backup_dest)
            .args(&["-ai", "--inplace", "--backup-dir=bak", "--suffix=.old", "--no-W", "--stats"])
            .then(edit_inplace_backup_src, &["-ai", "--inplace", "--backup-dir=bak", "--stats"])
            .run();
    }
}

// Without -t, -p, -o, -g the backup keeps the old mode all the same (its
// time is the copy's own); a dry run backs nothing up.
compat_test! {
    fn client_local_inplace_backup_plain_and_dry_run() {
        ClientCase::new(
            "client_local_inplace_backup_plain_and_dry_run",
            Mode::Local,
            inplace_backup_src,
        )
        .prefill(inplace_backup_dest)
        .args(&["-ri", "--inplace", "-b", "-n", "--no-W"])
        .then(|_| {}, &["-ri", "--inplace", "-b", "--no-W", "--stats"])
        .run();
    }
}

// -vv: "backed up NAME to BACKUP" for each, as stock's generator says it
// (whole files: the delta's "total:" line counts stock's hash-table hits).
compat_test! {
    fn client_local_inplace_backup_verbose() {
        ClientCase::new("client_local_inplace_backup_verbose", Mode::Local, inplace_backup_src)
            .prefill(inplace_backup_dest)
            .args(&["-a", "-vv", "--inplace", "-b"])
            .sorted_stdout()
            .run();
    }
}

// Below protocol 29 the basis is not named: the receiver knows the backup
// is it (blocks moved back are then matched as stock matches them).
compat_test! {
    fn client_local_inplace_backup_protocol_28() {
        ClientCase::new("client_local_inplace_backup_protocol_28", Mode::Local, shifted_src)
            .prefill(shifted_dest)
            .args(&["-a", "--inplace", "-b", "--no-W", "--stats", "--protocol=28"])
            .run();
    }
}

compat_test! {
    fn client_daemon_pull_inplace_backup() {
        ClientCase::new("client_daemon_pull_inplace_backup", Mode::DaemonPull, inplace_backup_src)
            .prefill(inplace_backup_dest)
            .args(&["-ai", "--inplace", "-b", "--stats"])
            .then(edit_inplace_backup_src, &["-ai", "--inplace", "--backup-dir=bak", "--stats"])
            .run();
    }
}

compat_test! {
    fn client_server_push_inplace_backup() {
        ClientCase::new("client_server_push_inplace_backup", Mode::ServerPush, inplace_backup_src)
            .prefill(inplace_backup_dest)
            .args(&["-ai", "--inplace", "-b", "--stats"])
            .run();
    }
}

// --append is in place too: the backup is made first, the tail appended.
compat_test! {
    fn client_server_push_append_backup() {
        ClientCase::new("client_server_push_append_backup", Mode::ServerPush, append_src)
            .prefill(append_dest)
            .args(&["-ai", "--append", "-b", "--stats"])
            .run();
    }
}

/// A source for `--fuzzy`: files the destination has under other names
/// (one renamed as it is, one an older version under a similar name, one
/// in a subdirectory), one unchanged, one changed in place, one with
/// nothing like it.
fn fuzzy_src(root: &Path) {
    fixture::mkdir(root, "");
    fixture::write_random(root, "report-2024.txt", 71, 200_000);
    fixture::write_random(root, "moved.bin", 72, 100_000);
    fixture::write(root, "same.txt", b"same\n");
    fixture::write(root, "changed.txt", b"new changed content\n");
    fixture::write(root, "zzz-unrelated-name.iso", b"nothing like it\n");
    fixture::write_random(root, "sub/x.log", 73, 50_000);
    fixture::pin_times(root, &[]);
}

/// What a fuzzy basis is found among: `report-2023.txt` (last year's
/// report, edited), `oldname.dat` (`moved.bin` renamed: same size and
/// time, mode 0600), `sub/x.log.1`, and files not in the source; with
/// `basis/` beside the destination for `-yy` with a `--copy-dest`.
fn fuzzy_dest(dest: &Path, src: &Path) {
    fixture::mkdir(dest, "sub");
    let report = std::fs::read(src.join("report-2024.txt")).expect("read report");
    fixture::write(dest, "report-2023.txt", &report);
    poke(dest, "report-2023.txt", 5_000, b"last year");
    fixture::copy_tree(&src.join("moved.bin"), &dest.join("oldname.dat"));
    fixture::chmod(dest, "oldname.dat", 0o600);
    fixture::copy_tree(&src.join("same.txt"), &dest.join("same.txt"));
    fixture::write(dest, "changed.txt", b"old changed\n");
    let log = std::fs::read(src.join("sub/x.log")).expect("read x.log");
    fixture::write(dest, "sub/x.log.1", &log);
    poke(dest, "sub/x.log.1", 20_000, b"rotated");
    fixture::write(dest, "keep.txt", b"only here\n");
    for (name, t) in [
        ("report-2023.txt", 1_400_000_000),
        ("changed.txt", 1_400_000_100),
        ("sub/x.log.1", 1_400_000_200),
        ("keep.txt", 1_400_000_300),
    ] {
        fixture::set_mtime(&dest.join(name), t, 0);
    }
    if let Some(side) = dest.parent() {
        fixture::write(
            side,
            "basis/zzz-unrelated-name.iso.old",
            b"nothing like it, old\n",
        );
        fixture::write_random(side, "basis/sub/x.log.2", 73, 40_000);
        fixture::set_mtime(&side.join("basis/sub/x.log.2"), 1_400_000_400, 0);
    }
}

// --fuzzy: a file missing here is sent as a delta against a file of its
// directory, the same size and time first, else the closest name (stock's
// weighing); the item is new (>f+++++++++), the basis rides in the
// request (FNAMECMP_FUZZY and its name) and the matched data is stock's.
compat_test! {
    fn client_local_fuzzy() {
        ClientCase::new("client_local_fuzzy", Mode::Local, fuzzy_src)
            .prefill(fuzzy_dest)
            .args(&["-ai", "-y", "-n", "--stats"])
            .then(|_| {}, &["-ai", "-y", "--no-W", "--stats"])
            .run();
    }
}

// Whole files (a local copy's default) still name the basis, whose mode
// a new file takes without -p (upstream dest_mode).
compat_test! {
    fn client_local_fuzzy_whole_file_no_perms() {
        ClientCase::new("client_local_fuzzy_whole_file_no_perms", Mode::Local, fuzzy_src)
            .prefill(fuzzy_dest)
            .args(&["-rti", "--fuzzy", "--stats"])
            .run();
    }
}

// -yy: the same directory of each basis dir is searched too.
compat_test! {
    fn client_local_fuzzy_basis_dirs() {
        ClientCase::new("client_local_fuzzy_basis_dirs", Mode::Local, fuzzy_src)
            .prefill(|dest: &Path, src: &Path| {
                fuzzy_dest(dest, src);
                for gone in ["sub/x.log.1", "report-2023.txt"] {
                    std::fs::remove_file(dest.join(gone)).expect("rm");
                }
            })
            .args(&["-ai", "-yy", "--copy-dest=../basis", "--no-W", "--stats"])
            .run();
    }
}

// With --delete (during) the extraneous files go before their directory's
// files are looked at: no basis is left; --delete-after keeps them.
compat_test! {
    fn client_local_fuzzy_delete_after() {
        ClientCase::new("client_local_fuzzy_delete_after", Mode::Local, fuzzy_src)
            .prefill(fuzzy_dest)
            .args(&["-ai", "-y", "--delete-after", "--no-W", "--stats"])
            .run();
    }
}

// One file written under another name: the name it has in the list is
// weighed (upstream file->basename), the new one named in messages.
compat_test! {
    fn client_local_fuzzy_single_file_renamed() {
        ClientCase::new("client_local_fuzzy_single_file_renamed", Mode::Local, fuzzy_src)
            .prefill(|file: &Path, src: &Path| {
                if let Some(dir) = file.parent() {
                    fuzzy_dest(dir, src);
                }
            })
            .source("report-2024.txt")
            .dest("dest/newname.dat")
            .args(&["-ai", "-y", "--no-W", "--stats", "--debug=fuzzy"])
            .run();
    }
}

compat_test! {
    fn client_daemon_pull_fuzzy() {
        ClientCase::new("client_daemon_pull_fuzzy", Mode::DaemonPull, fuzzy_src)
            .prefill(fuzzy_dest)
            .args(&["-ai", "-y", "--stats"])
            .run();
    }
}

compat_test! {
    fn client_server_push_fuzzy() {
        ClientCase::new("client_server_push_fuzzy", Mode::ServerPush, fuzzy_src)
            .prefill(fuzzy_dest)
            .args(&["-ai", "-y", "--stats"])
            .run();
    }
}

/// A source for `--append`: a file that grew, an unchanged one, a new one,
/// and one shorter than the destination's (which `--append` leaves alone).
fn append_src(root: &Path) {
    fixture::mkdir(root, "");
    fixture::write_random(root, "grown.bin", 41, 300_000);
    fixture::write(root, "same.txt", b"same\n");
    fixture::write(root, "new.txt", b"new file\n");
    fixture::write(root, "short.txt", b"short\n");
    fixture::pin_times(root, &[]);
}

/// The destination of an interrupted transfer: `grown.bin` cut short,
/// `short.txt` longer than the source's, `new.txt` missing.
fn append_dest(dest: &Path, src: &Path) {
    fixture::copy_tree(src, dest);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dest.join("grown.bin"))
        .expect("open grown.bin");
    f.set_len(120_000).expect("truncate");
    drop(f);
    fixture::write(dest, "short.txt", b"longer than the source\n");
    std::fs::remove_file(dest.join("new.txt")).expect("rm new.txt");
    fixture::set_mtime(&dest.join("grown.bin"), 1_500_000_000, 0);
    fixture::set_mtime(&dest.join("short.txt"), 1_500_000_000, 0);
}

// --append: only what the destination lacks is sent (a local copy too,
// which is otherwise whole-file), and a server sender reads no block sums.
compat_test! {
    fn client_local_append() {
        ClientCase::new("client_local_append", Mode::Local, append_src)
            .prefill(append_dest)
            .args(&["-ai", "--append", "--stats"])
            .run();
    }
}

compat_test! {
    fn client_server_pull_append_verify() {
        ClientCase::new("client_server_pull_append_verify", Mode::ServerPull, append_src)
            .prefill(append_dest)
            .args(&["-ai", "--append-verify", "--stats"])
            .run();
    }
}

/// A destination whose `grown.bin` prefix differs from the source's:
/// `--append-verify` fails the file's check and sends it again in full.
fn append_bad_dest(dest: &Path, src: &Path) {
    append_dest(dest, src);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dest.join("grown.bin"))
        .expect("open grown.bin");
    std::io::Write::write_all(&mut f, b"not the source's first bytes").expect("write");
    drop(f);
    fixture::set_mtime(&dest.join("grown.bin"), 1_500_000_000, 0);
}

compat_test! {
    fn client_local_append_verify_mismatch_redone() {
        ClientCase::new("client_local_append_verify_mismatch_redone", Mode::Local, append_src)
            .prefill(append_bad_dest)
            .args(&["-ai", "--append-verify", "--stats"])
            .run();
    }
}

compat_test! {
    fn client_server_pull_append_verify_mismatch_redone() {
        ClientCase::new(
            "client_server_pull_append_verify_mismatch_redone",
            Mode::ServerPull,
            append_src,
        )
        .prefill(append_bad_dest)
        .args(&["-ai", "--append-verify", "--stats"])
        .run();
    }
}

/// The old version of each file in [`shifted_src`].
fn shifted_base() -> Vec<u8> {
    fixture::random_bytes(51, 400_000)
}

/// Files whose blocks moved: data inserted at the front (every old block
/// now lies behind where it would be written), cut from the front (the
/// blocks lie ahead), changed in the middle, and zeros moved a little
/// (upstream realigns on runs of zeros).
fn shifted_src(root: &Path) {
    let base = shifted_base();
    let mut front = fixture::random_bytes(52, 5_000);
    front.extend_from_slice(&base);
    fixture::write(root, "front.bin", &front);
    fixture::write(root, "cut.bin", &base[7_777..]);
    let mut mid = base.clone();
    mid[200_000..200_010].copy_from_slice(b"0123456789");
    fixture::write(root, "mid.bin", &mid);
    fixture::write(root, "zeros.bin", &zeros_file(333));
    fixture::pin_times(root, &[]);
}

/// Random data, `gap` more random bytes, 400,000 zeros, random data.
fn zeros_file(gap: usize) -> Vec<u8> {
    let mut v = fixture::random_bytes(53, 70_000);
    v.extend_from_slice(&fixture::random_bytes(55, gap));
    v.extend_from_slice(&vec![0u8; 400_000]);
    v.extend_from_slice(&fixture::random_bytes(54, 100_000));
    v
}

/// The destination holds the old versions of [`shifted_src`]'s files.
fn shifted_dest(dest: &Path, src: &Path) {
    fixture::copy_tree(src, dest);
    for name in ["front.bin", "cut.bin", "mid.bin"] {
        fixture::write(dest, name, &shifted_base());
    }
    fixture::write(dest, "zeros.bin", &zeros_file(0));
    for name in ["front.bin", "cut.bin", "mid.bin", "zeros.bin"] {
        fixture::set_mtime(&dest.join(name), 1_500_000_000, 0);
    }
}

// --inplace: the receiver reads its basis from the file it is writing, so
// the sender names only blocks not yet overwritten (a wrong delta failed
// its check, or the file was corrupt), and the matched and literal data
// are stock's.
compat_test! {
    fn client_local_inplace_moved_blocks() {
        ClientCase::new("client_local_inplace_moved_blocks", Mode::Local, shifted_src)
            .prefill(shifted_dest)
            .args(&["-ai", "--inplace", "--no-W", "--stats"])
            .run();
    }
}

compat_test! {
    fn client_server_pull_inplace_moved_blocks() {
        ClientCase::new("client_server_pull_inplace_moved_blocks", Mode::ServerPull, shifted_src)
            .prefill(shifted_dest)
            .args(&["-ai", "--inplace", "--stats"])
            .run();
    }
}

compat_test! {
    fn client_daemon_pull_each_checksum() {
        let mut c = ClientCase::new("client_daemon_pull_each_checksum", Mode::DaemonPull, big_file)
            .args(&["-a"]);
        for sum in ["xxh128", "xxh3", "xxh64", "md5", "md4", "sha1"] {
            let arg = format!("--checksum-choice={sum}");
            c = c.then(edit_big, &["-ai", "--no-W", &arg]);
        }
        c.run();
    }
}

compat_test! {
    fn client_daemon_push_each_compression() {
        let mut c = ClientCase::new("client_daemon_push_each_compression", Mode::DaemonPush, big_file)
            .args(&["-a", "-z"]);
        for z in ["zstd", "lz4", "zlibx", "zlib"] {
            let arg = format!("--compress-choice={z}");
            c = c.then(edit_big, &["-ai", &arg]);
        }
        c.run();
    }
}

// Protocol 28 sends no item flags: the sender's and receiver's lines show
// `?` for what is unknown (upstream ITEM_MISSING_DATA), and a pulling
// client's generator shows its own items (a directory's time, a new
// directory), which a server's keeps to itself.
compat_test! {
    fn client_protocol_28_item_lines() {
        for (name, mode) in [
            ("client_protocol_28_items_local", Mode::Local),
            ("client_protocol_28_items_rsh_pull", Mode::RshPull),
            ("client_protocol_28_items_rsh_push", Mode::RshPush),
            ("client_protocol_28_items_daemon_pull", Mode::DaemonPull),
            ("client_protocol_28_items_daemon_push", Mode::DaemonPush),
            ("client_protocol_28_items_server_pull", Mode::ServerPull),
            ("client_protocol_28_items_server_push", Mode::ServerPush),
        ] {
            ClientCase::new(name, mode, small)
                .args(&["-ai", "--protocol=28"])
                .then(edit_small, &["-ai", "--protocol=28", "--delete"])
                .then(|_| {}, &["-rtv", "--protocol=28", "-c", "--chmod=F600"])
                .run();
        }
    }
}

// A pulling client's --chmod tweaks the modes of the list it receives
// (upstream recv_file_entry): without -p an existing file keeps its own
// mode and a new one gets the tweaked one; with -p all get it.
compat_test! {
    fn client_pull_chmod_with_and_without_perms() {
        for (name, mode) in [
            ("client_pull_chmod_rsh", Mode::RshPull),
            ("client_pull_chmod_daemon", Mode::DaemonPull),
        ] {
            ClientCase::new(name, mode, small)
                .prefill(|dest: &Path, src: &Path| {
                    fixture::copy_tree(src, dest);
                    let _ = std::fs::remove_file(dest.join("a.txt"));
                })
                .args(&["-rlti", "--chmod=F600,Dg+s"])
                .then(|_| {}, &["-rltpi", "--chmod=F600,Dg+s"])
                .run();
        }
    }
}

// %f on the sending side is the name under its argument's directory
// (upstream F_PATHNAME): "src/." for "src/", "src/sub" for "-R src/./sub".
compat_test! {
    fn client_sender_full_path_escape() {
        for (name, mode) in [
            ("client_sender_full_path_local", Mode::Local),
            ("client_sender_full_path_rsh_push", Mode::RshPush),
            ("client_sender_full_path_daemon_push", Mode::DaemonPush),
        ] {
            ClientCase::new(name, mode, small)
                .args(&["-a", "--out-format=%f|%n|%o"])
                .then(edit_small, &["-a", "--out-format=%f|%n", "--no-inc-recursive"])
                .run();
        }
        ClientCase::new("client_sender_full_path_relative", Mode::Local, small)
            .source("./sub")
            .args(&["-aR", "--out-format=%f|%n"])
            .run();
    }
}

// A stock client's -s (--secluded-args) to our --server: the arguments
// after the options come on stdin, NUL-separated, before the version.
compat_test! {
    fn server_secluded_args() {
        for (name, mode, proto) in [
            ("server_secluded_args_push", Mode::ServerPush, "--protocol=32"),
            ("server_secluded_args_pull", Mode::ServerPull, "--protocol=32"),
            ("server_secluded_args_push_29", Mode::ServerPush, "--protocol=29"),
            ("server_secluded_args_pull_29", Mode::ServerPull, "--protocol=29"),
        ] {
            ClientCase::new(name, mode, fixture::issue2_tree)
                .args(&["-s", "-ai", "--delete", proto])
                .run();
        }
    }
}

compat_test! {
    fn client_rsh_pull_protocols() {
        ClientCase::new("client_rsh_pull_protocols", Mode::RshPull, small)
            .args(&["-ai", "--protocol=30"])
            .then(edit_small, &["-ai", "--protocol=31", "--delete"])
            .then(|_| {}, &["-ai", "--protocol=29", "-c"])
            .run();
    }
}

compat_test! {
    fn client_rsh_push_protocols() {
        ClientCase::new("client_rsh_push_protocols", Mode::RshPush, small)
            .args(&["-ai", "--protocol=30"])
            .then(edit_small, &["-ai", "--protocol=31", "--delete"])
            .then(|_| {}, &["-ai", "--protocol=29", "-c"])
            .run();
    }
}

compat_test! {
    fn client_daemon_pull_relative() {
        ClientCase::new("client_daemon_pull_relative", Mode::DaemonPull, small)
            .source("sub/./deeper")
            .args(&["-aiR"])
            .run();
    }
}

compat_test! {
    fn client_local_relative_and_files_from() {
        ClientCase::new("client_local_relative_and_files_from", Mode::Local, |root: &Path| {
            fixture::small_tree(root);
            std::fs::write(
                root.parent().expect("work").join("list.txt"),
                "a.txt\nsub/deeper/d.txt\n# a comment\netc\n",
            )
            .expect("write list");
        })
        .args(&["-ai", "--files-from={work}/list.txt"])
        .then(|_| {}, &["-ai", "--files-from={work}/list.txt", "--no-R"])
        .then(|_| {}, &["-aiR", "--delete"])
        .run();
    }
}

compat_test! {
    fn client_daemon_pull_files_from() {
        ClientCase::new("client_daemon_pull_files_from", Mode::DaemonPull, |root: &Path| {
            fixture::small_tree(root);
            std::fs::write(
                root.parent().expect("work").join("list.txt"),
                "b.txt\nsub/c.txt\n",
            )
            .expect("write list");
        })
        .args(&["-ai", "--files-from={work}/list.txt"])
        .then(|_| {}, &["-ai", "--files-from={work}/list.txt", "--protocol=30"])
        .run();
    }
}

compat_test! {
    fn client_daemon_push_files_from() {
        ClientCase::new("client_daemon_push_files_from", Mode::DaemonPush, |root: &Path| {
            fixture::small_tree(root);
            std::fs::write(
                root.parent().expect("work").join("list.txt"),
                "b.txt\nsub/deeper/d.txt\n",
            )
            .expect("write list");
        })
        .args(&["-ai", "--files-from={work}/list.txt"])
        .run();
    }
}

compat_test! {
    fn client_rsh_push_link_dest_and_partial() {
        ClientCase::new("client_rsh_push_link_dest_and_partial", Mode::RshPush, small)
            .prefill(|dest: &Path, src: &Path| {
                fixture::copy_tree(src, &dest.with_file_name("base"));
            })
            .args(&["-ai", "--link-dest=../base", "--partial"])
            .then(edit_small, &["-ai", "--partial-dir=.part", "--existing"])
            .run();
    }
}

compat_test! {
    fn client_rsh_pull_filters() {
        ClientCase::new("client_rsh_pull_filters", Mode::RshPull, fixture::filter_tree)
            .args(&["-ai", "-F", "--exclude=many/", "--include=*.txt", "--filter=- *.bin"])
            .run();
    }
}

compat_test! {
    fn client_daemon_push_filters_delete_excluded() {
        ClientCase::new("client_daemon_push_filters_delete_excluded", Mode::DaemonPush, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete", "--exclude=*.bin", "--delete-excluded", "--exclude=stale*"])
            .run();
    }
}

compat_test! {
    fn client_local_misc_options() {
        ClientCase::new("client_local_misc_options", Mode::Local, small)
            .prefill(stale_dest)
            .args(&["-ai", "--size-only", "--ignore-existing"])
            .then(edit_small, &["-aiu", "-I", "--max-size=1k", "--min-size=2"])
            .then(|_| {}, &["-aiW", "--delete-before", "--numeric-ids", "-x", "-m"])
            .run();
    }
}

compat_test! {
    fn client_with_327_peers() {
        // rsync 3.2.7 as the server of an rrsync client, and as the client of rrsync --server.
        let r327 = crate::harness::bins::rsync_327();
        let rpath = format!("--rsync-path={}", r327.display());
        ClientCase::new("client_with_327_peers", Mode::RshPull, small)
            .args(&["-ai", &rpath])
            .then(edit_small, &["-ai", "--delete", "--stats", &rpath])
            .run();
    }
}

compat_test! {
    fn client_rsh_relative_absolute_paths() {
        // -R with an absolute source: names keep their slash on the wire and
        // land beneath the destination.
        ClientCase::new("client_rsh_relative_absolute_paths", Mode::RshPull, small)
            .source("sub")
            .args(&["-aiR"])
            .then(edit_small, &["-aiR", "--delete"])
            .run();
    }
}

compat_test! {
    fn server_push_relative_absolute_paths() {
        ClientCase::new("server_push_relative_absolute_paths", Mode::ServerPush, small)
            .source("sub")
            .args(&["-aiR"])
            .run();
    }
}

// --- --chmod on the side that parses it ---

compat_test! {
    fn client_chmod_pull_and_push() {
        ClientCase::new("client_chmod_pull", Mode::DaemonPull, small)
            .args(&["-ai", "--chmod=Fgo-r,Dg+s", "--chmod=o-x"])
            .then(edit_small, &["-ai", "--chmod=F600"])
            .run();
        ClientCase::new("client_chmod_push", Mode::DaemonPush, small)
            .args(&["-ai", "--chmod=D700,F640"])
            .run();
        ClientCase::new("client_chmod_local", Mode::Local, small)
            .args(&["-ai", "--chmod=ug=rwX,o="])
            .run();
    }
}

compat_test! {
    fn client_chmod_invalid_is_a_usage_error() {
        ClientCase::new("client_chmod_invalid", Mode::DaemonPull, small)
            .args(&["-a", "--chmod=Fq+z"])
            .expect_code(1)
            .run();
    }
}

// --- -M/--remote-option reaches the far side ---

compat_test! {
    fn client_remote_option() {
        ClientCase::new("client_remote_option_daemon", Mode::DaemonPull, small)
            .args(&["-ai", "-M--exclude=*.bin"])
            .run();
        ClientCase::new("client_remote_option_rsh", Mode::RshPush, small)
            .args(&["-ai", "--remote-option=--exclude=sub/"])
            .run();
        ClientCase::new("client_remote_option_no_dash", Mode::DaemonPull, small)
            .args(&["-a", "-Mfoo"])
            .expect_code(1)
            .run();
    }
}

// --- --max-delete stops deletions on our receiving side (exit 25) ---

compat_test! {
    fn client_max_delete_limit() {
        ClientCase::new("client_max_delete_pull", Mode::DaemonPull, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete", "--max-delete=1"])
            .expect_code(25)
            .run();
        ClientCase::new("client_max_delete_local", Mode::Local, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete", "--max-delete=1"])
            .expect_code(25)
            .run();
    }
}

// --- --log-file on the client ---

compat_test! {
    fn client_log_file_push_and_pull() {
        use crate::harness::bins;
        use crate::harness::daemon::Daemon;
        use crate::harness::process::{client_timeout, run_cmd};
        use crate::harness::tmp::TempDir;
        let work = TempDir::new("client_log_file");
        let src = work.join("src");
        small(&src);
        let mut logs = Vec::new();
        for side in ["stock", "ours"] {
            let up = work.join(format!("up-{side}"));
            std::fs::create_dir_all(&up).expect("up");
            fixture::pin_times(&up, &[]);
            let conf = format!(
                "use chroot = no\nuid = root\ngid = root\n[up]\n    path = {}\n    read only = no\n",
                up.display()
            );
            let d = Daemon::start(&bins::stock(), &conf, "stock");
            let bin = if side == "stock" { bins::stock() } else { bins::ours() };
            let log = work.join(format!("{side}.log"));
            let lf = format!("--log-file={}", log.display());
            let dest = work.join(format!("dest-{side}"));
            for args in [
                vec!["-a".to_string(), lf.clone(), format!("{}/", src.display()), d.url("up/")],
                vec!["-a".to_string(), "--delete".into(), lf.clone(), "--log-file-format=%o %n %l".into(), d.url("up/"), format!("{}/", dest.display())],
            ] {
                let o = run_cmd(&bin, &args, None, client_timeout());
                assert_eq!(o.code, 0, "{side}: {}", o.describe());
            }
            logs.push(crate::daemon_module::normalized_log(&std::fs::read_to_string(&log).unwrap_or_default()));
        }
        assert_eq!(logs[1], logs[0], "client log files differ (ours left, stock right)");
    }
}

// --- --progress and --info=progress2 ---

/// Progress output with the timing fields masked, one entry per `\r` or
/// `\n` separated piece.
fn progress_shape(out: &str) -> Vec<String> {
    out.split(['\r', '\n'])
        .map(|piece| {
            piece
                .split_whitespace()
                .map(|w| {
                    let rate = w.ends_with("B/s") && w.contains('.');
                    let time = w.matches(':').count() == 2
                        && w.chars().all(|c| c.is_ascii_digit() || c == ':');
                    if rate {
                        "RATE"
                    } else if time {
                        "TIME"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Runs `args SRC DEST/` with stock and with ours (DEST emptied first,
/// both must exit 0) and returns the two progress shapes, stock's first.
fn progress_shapes(work: &std::path::Path, args: &[&str], src: &str) -> [Vec<String>; 2] {
    use crate::harness::bins;
    use crate::harness::process::{client_timeout, run_cmd};
    ["stock", "ours"].map(|side| {
        let bin = if side == "stock" {
            bins::stock()
        } else {
            bins::ours()
        };
        let dest = work.join("dest");
        let _ = std::fs::remove_dir_all(&dest);
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.push(src.to_string());
        v.push(format!("{}/", dest.display()));
        let o = run_cmd(&bin, &v, None, client_timeout());
        assert_eq!(o.code, 0, "{side} {args:?}: {}", o.describe());
        progress_shape(&o.stdout)
    })
}

compat_test! {
    fn client_progress_and_progress2() {
        use crate::harness::bins;
        use crate::harness::daemon::Daemon;
        use crate::harness::tmp::TempDir;
        let work = TempDir::new("client_progress");
        let src = work.join("src");
        small(&src);
        let conf = format!("use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n", src.display());
        let d = Daemon::start(&bins::stock(), &conf, "stock");
        for args in [&["-a", "--progress"][..], &["-a", "--info=progress2"], &["-av", "--info=progress2"]] {
            let shapes = progress_shapes(work.path(), args, &d.url("mod/"));
            // The summary's bytes and rate differ run to run.
            let strip = |v: &Vec<String>| -> Vec<String> {
                v.iter().filter(|l| !l.starts_with("sent ") && !l.starts_with("total size")).cloned().collect()
            };
            assert_eq!(strip(&shapes[1]), strip(&shapes[0]), "{args:?}: ours (left) vs stock (right)");
        }
    }
}

compat_test! {
    fn client_local_progress2_each_recursion_mode() {
        // Our side sends here: the progress2 line is shown again at each DONE
        // while a list is current (three times more without incremental
        // recursion, twice with it), and --no-inc-recursive (last of
        // --i-r/--no-i-r wins) really turns incremental recursion off.
        use crate::harness::tmp::TempDir;
        let work = TempDir::new("client_local_progress2");
        let src = work.join("src");
        small(&src);
        for args in [
            &["-a", "--info=progress2"][..],
            &["-a", "--info=progress2", "--no-inc-recursive"],
            &["-a", "--info=progress2", "--i-r", "--no-inc-recursive"],
            &["-a", "--info=progress2", "--no-i-r", "--inc-recursive"],
        ] {
            let shapes = progress_shapes(work.path(), args, &format!("{}/", src.display()));
            // With incremental recursion a list's DONE may come before or
            // after the next file's line (stock varies too), so a repeat may
            // stand in another place: compare the lines without repeats, and
            // how many lines there are.
            let distinct = |v: &Vec<String>| {
                let mut d = v.clone();
                d.dedup();
                d
            };
            assert_eq!(distinct(&shapes[1]), distinct(&shapes[0]), "{args:?}: ours (left) vs stock (right)");
            assert_eq!(shapes[1].len(), shapes[0].len(), "{args:?}: repeats, ours (left) vs stock (right)");
        }
    }
}

// --- space of large files ---

compat_test! {
    fn client_large_file_occupies_what_stocks_does() {
        // Our receiver allocates a large file's space before its data comes
        // (fallocate, keeping the size as written): the copy must occupy
        // the blocks stock's copy occupies, and hold the same bytes.
        use crate::harness::bins;
        use crate::harness::process::{client_timeout, run_cmd};
        use crate::harness::tmp::TempDir;
        use std::os::unix::fs::MetadataExt;
        let work = TempDir::new("client_prealloc");
        let src = work.join("src");
        std::fs::create_dir_all(&src).unwrap();
        let data: Vec<u8> = (0..(3u32 << 20) + 123).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        std::fs::write(src.join("big"), &data).unwrap();
        let mut blocks = Vec::new();
        for (side, bin) in [("stock", bins::stock()), ("ours", bins::ours())] {
            let dest = work.join(format!("dest-{side}"));
            let args = vec!["-a".to_string(), format!("{}/", src.display()), format!("{}/", dest.display())];
            let o = run_cmd(&bin, &args, None, client_timeout());
            assert_eq!(o.code, 0, "{side}: {}", o.describe());
            assert!(std::fs::read(dest.join("big")).unwrap() == data, "{side}: content");
            blocks.push(std::fs::metadata(dest.join("big")).unwrap().blocks());
        }
        assert_eq!(blocks[1], blocks[0], "512-byte blocks, ours (left) vs stock (right)");
    }
}

compat_test! {
    fn client_preallocate_each_transport() {
        // --preallocate: the receiving side (ours or stock's, which a pushing
        // client tells with the option) allocates before writing; trees,
        // items and exit codes as stock's, in each direction.
        for (name, mode) in [
            ("client_preallocate_local", Mode::Local),
            ("client_preallocate_rsh_push", Mode::RshPush),
            ("client_preallocate_rsh_pull", Mode::RshPull),
            ("client_preallocate_daemon_push", Mode::DaemonPush),
            ("client_preallocate_server_push", Mode::ServerPush),
        ] {
            ClientCase::new(name, mode, small)
                .args(&["-a", "-i", "--preallocate"])
                .then(edit_small, &["-a", "-i", "--preallocate"])
                .run();
        }
    }
}

compat_test! {
    fn client_remote_shell_command_as_stock() {
        // The command a remote shell is given: ours must be stock's, word
        // for word, for a push and a pull with options that are passed on
        // (among them --preallocate, given to the far side only when it
        // receives).
        use crate::harness::bins;
        use crate::harness::process::{client_timeout, run_cmd};
        use crate::harness::tmp::TempDir;
        let work = TempDir::new("client_rsh_command");
        let src = work.join("src");
        small(&src);
        let log = work.join("cmd.log");
        let rsh = work.join("rsh.sh");
        std::fs::write(
            &rsh,
            format!("#!/bin/sh\nshift\nprintf '%s\\n' \"$*\" > {}\nexit 1\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        for opts in [
            &["-a", "--preallocate"][..],
            &["-aH", "--delete"],
            &["-az", "--delete", "--partial", "--preallocate"],
            &["-rlt", "--fsync", "--inplace"],
        ] {
            for push in [true, false] {
                let mut cmds = Vec::new();
                for bin in [bins::stock(), bins::ours()] {
                    let _ = std::fs::remove_file(&log);
                    let mut a: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
                    a.push(format!("--rsh={}", rsh.display()));
                    if push {
                        a.push(format!("{}/", src.display()));
                        a.push("host:dst/".into());
                    } else {
                        a.push("host:src/".into());
                        a.push(format!("{}/", work.join("dst").display()));
                    }
                    let o = run_cmd(&bin, &a, None, client_timeout());
                    assert_ne!(o.code, 0, "the stand-in shell fails: {}", o.describe());
                    cmds.push(std::fs::read_to_string(&log).unwrap_or_default());
                }
                assert_eq!(cmds[1], cmds[0], "{opts:?} push={push}: ours (left) vs stock (right)");
            }
        }
    }
}

// --- --fsync ---

/// fsync calls made by `bin args...` and every process it starts (strace -f).
fn fsync_calls(work: &Path, bin: &Path, args: &[String]) -> usize {
    use crate::harness::process::{client_timeout, run_cmd};
    let log = work.join("strace.log");
    let _ = std::fs::remove_file(&log);
    let mut v: Vec<String> = ["-f", "-qq", "-e", "trace=fsync,fdatasync", "-o"]
        .map(String::from)
        .to_vec();
    v.push(log.display().to_string());
    v.push(bin.display().to_string());
    v.extend(args.iter().cloned());
    let strace = Path::new("/usr/bin/strace");
    assert!(
        strace.exists(),
        "strace is needed (compat-tests/run-all.sh installs it)"
    );
    let o = run_cmd(strace, &v, None, client_timeout());
    assert_eq!(o.code, 0, "{} {args:?}: {}", bin.display(), o.describe());
    let text = std::fs::read_to_string(&log).expect("strace log");
    text.lines().filter(|l| l.contains("fsync(")).count()
}

compat_test! {
    fn client_fsync_each_received_file() {
        // --fsync: the receiver syncs every file it writes, ours as stock
        // (local copy: our --server child receives), and our client
        // forwards it to a stock server over a remote shell.
        use crate::harness::bins;
        use crate::harness::tmp::TempDir;
        let work = TempDir::new("client_fsync");
        let src = work.join("src");
        small(&src);
        let files = walk_files(&src);
        assert!(files >= 3, "fixture has {files} files");
        let rsh = work.join("rsh.sh");
        std::fs::write(&rsh, crate::harness::client::RSH_SCRIPT).expect("write rsh");
        std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod rsh");
        let dest = work.join("dest");
        let run = |bin: &Path, extra: &[&str], to: String| {
            let _ = std::fs::remove_dir_all(&dest);
            let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            v.push(format!("{}/", src.display()));
            v.push(to);
            fsync_calls(work.path(), bin, &v)
        };
        let local = format!("{}/", dest.display());
        let remote = format!("localhost:{}/", dest.display());
        let stock_rsh = format!("--rsync-path={}", bins::stock().display());
        let rsh_arg = format!("--rsh={}", rsh.display());
        for (what, extra, to) in [
            ("local", vec!["-a", "--fsync"], local.clone()),
            ("push to stock --server", vec!["-a", "--fsync", &rsh_arg, &stock_rsh], remote.clone()),
        ] {
            let stock = run(&bins::stock(), &extra, to.clone());
            let ours = run(&bins::ours(), &extra, to.clone());
            assert_eq!(stock, files, "{what}: stock synced {stock} of {files} files");
            assert_eq!(ours, stock, "{what}: ours synced {ours}, stock {stock}");
        }
        // And nothing without the option.
        assert_eq!(run(&bins::ours(), &["-a"], local), 0);
    }
}

/// Regular files under `root`.
fn walk_files(root: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(root).expect("read_dir").flatten() {
        let t = e.file_type().expect("file type");
        if t.is_dir() {
            n += walk_files(&e.path());
        } else if t.is_file() {
            n += 1;
        }
    }
    n
}

// --- source arguments: where they are read, and how a missing one is named ---

compat_test! {
    fn client_local_argument_paths() {
        use crate::harness::bins;
        use crate::harness::process::{client_timeout, run_cmd};
        use crate::harness::tmp::TempDir;
        let work = TempDir::new("client_argument_paths");
        let src = work.join("src");
        small(&src);
        let run = |bin: &Path, args: &[&str]| run_cmd(bin, args, Some(work.path()), client_timeout());
        // "/usr" is read from the root, not from the working directory
        // (which has no "usr"): -d copies the directory entry alone.
        for bin in [bins::stock(), bins::ours()] {
            let dest = work.join("d");
            let _ = std::fs::remove_dir_all(&dest);
            let o = run(&bin, &["-dt", "/usr", "d/"]);
            assert_eq!(o.code, 0, "{}", o.describe());
            let (got, want) = (std::fs::metadata(dest.join("usr")), std::fs::metadata("/usr"));
            assert!(got.as_ref().is_ok_and(|m| m.is_dir()), "{}: no d/usr: {}", bin.display(), o.describe());
            use std::os::unix::fs::MetadataExt;
            assert_eq!(got.expect("d/usr").mtime(), want.expect("/usr").mtime(), "{}", bin.display());
        }
        // Missing arguments: the same message (absolute paths, change_dir
        // for a directory argument), exit 23.
        let abs_missing = format!("{}/", work.join("nope").display());
        for arg in ["src/nope/", "nope/", "src/a.txt/", &abs_missing, "src/./sub/nope/", "src/gone", "src/sub/../gone", "/nope-rrsync-test"] {
            let (s, o) = (run(&bins::stock(), &["-a", arg, "d/"]), run(&bins::ours(), &["-a", arg, "d/"]));
            assert_eq!(s.code, 23, "{arg}: stock {}", s.describe());
            assert_eq!(o.code, 23, "{arg}: ours {}", o.describe());
            assert_eq!(o.stderr.lines().next(), s.stderr.lines().next(), "{arg}");
        }
    }
}

// --- --delete-missing-args ---

compat_test! {
    fn client_delete_missing_args() {
        // Missing source arguments go out as "missing" entries that delete
        // what the receiver has under that name (a non-empty directory only
        // with --force): our sender to a stock receiver (remote shell push),
        // a stock sender to ours (--server), and ours on both sides (local).
        let prefill = |dest: &Path, src: &Path| {
            fixture::copy_tree(src, dest);
            fixture::write(dest, "gone", b"goes\n");
            fixture::write(dest, "gonedir/x/f", b"goes with --force\n");
        };
        let missing = ["{work}/src/gone", "{work}/src/gonedir"];
        for (name, mode) in [
            ("client_delete_missing_args_local", Mode::Local),
            ("client_delete_missing_args_rsh_push", Mode::RshPush),
            ("client_delete_missing_args_server_push", Mode::ServerPush),
        ] {
            let first: Vec<&str> = ["-a", "-i", "--delete-missing-args"].into_iter().chain(missing).collect();
            let second: Vec<&str> = ["-a", "-i", "--delete-missing-args", "--force"].into_iter().chain(missing).collect();
            ClientCase::new(name, mode, small)
                .prefill(prefill)
                .source("a.txt")
                .dest("d/")
                .args(&first)
                .then(|_| {}, &second)
                .run();
        }
        // --list-only shows such an entry as stock does.
        use crate::harness::bins;
        use crate::harness::process::{client_timeout, run_cmd};
        use crate::harness::tmp::TempDir;
        let work = TempDir::new("client_delete_missing_args_list");
        let src = work.join("src");
        small(&src);
        let outs: Vec<String> = [bins::stock(), bins::ours()]
            .iter()
            .map(|bin| {
                let args = ["--delete-missing-args", "--list-only", "-r", "src/nope", "src/sub"];
                let o = run_cmd(bin, args, Some(work.path()), client_timeout());
                assert_eq!(o.code, 0, "{}", o.describe());
                o.stdout
            })
            .collect();
        assert!(outs[0].contains("*missing"), "stock: {}", outs[0]);
        assert_eq!(outs[1], outs[0], "--list-only, ours (left) vs stock");
    }
}

// --- --address ---

compat_test! {
    fn client_address_binds_the_local_end() {
        // A module open to 127.0.0.2 only: --address=127.0.0.2 gets in,
        // another local address is refused by name, and an address that
        // does not resolve (or has no address of the remote's family) is
        // a socket error before connecting, with stock's message.
        use crate::harness::bins;
        use crate::harness::daemon::Daemon;
        use crate::harness::process::{client_timeout, run_cmd};
        use crate::harness::tmp::TempDir;
        let work = TempDir::new("client_address");
        let src = work.join("src");
        small(&src);
        let conf = format!(
            "use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n    hosts allow = 127.0.0.2\n",
            src.display()
        );
        let d = Daemon::start(&bins::stock(), &conf, "stock");
        let dest = work.join("dest");
        for (address, code) in [
            (Some("127.0.0.2"), 0),
            (None, 5),
            (Some("127.0.0.3"), 5),
            (Some("::1"), 10),
            (Some("nosuchhost.invalid"), 10),
        ] {
            let mut lines = Vec::new();
            for bin in [bins::stock(), bins::ours()] {
                let _ = std::fs::remove_dir_all(&dest);
                let mut v = vec!["-a".to_string()];
                v.extend(address.map(|a| format!("--address={a}")));
                v.push(d.url("mod/"));
                v.push(format!("{}/", dest.display()));
                let o = run_cmd(&bin, &v, None, client_timeout());
                assert_eq!(o.code, code, "{address:?}: {}", o.describe());
                if code == 0 {
                    assert!(dest.join("sub/c.txt").exists(), "{address:?}: {}", o.describe());
                }
                lines.push(o.stderr.lines().next().map(str::to_string));
            }
            assert_eq!(lines[1], lines[0], "{address:?}: first stderr line, ours (left) vs stock");
        }
    }
}

// --- -K / --keep-dirlinks on our receiving side ---

compat_test! {
    fn client_keep_dirlinks() {
        // The destination has `sub` as a symlink to a directory beside it:
        // with -K it stays a symlink and the files go into its target, as
        // stock does (our receiver: local copy, and --server under a stock
        // client); a link that leads out of the destination is kept too,
        // and what would go through it is refused (exit 23).
        let inside = |dest: &Path, _src: &Path| {
            fixture::mkdir(dest, "realin");
            fixture::symlink(dest, "sub", "realin");
        };
        for (name, mode) in [
            ("client_keep_dirlinks_local", Mode::Local),
            ("client_keep_dirlinks_server_push", Mode::ServerPush),
        ] {
            ClientCase::new(name, mode, small)
                .prefill(inside)
                .dest("d/")
                .args(&["-a", "-i", "-K"])
                .then(|_| {}, &["-a", "-i", "-K"])
                .run();
        }
        // The kept link's directory has another mode: stock 3.5 sets the
        // link's own time and fails to chmod it (ELOOP, exit 23).
        let other_mode = |dest: &Path, _src: &Path| {
            fixture::mkdir(dest, "realin");
            fixture::chmod(dest, "realin", 0o700);
            fixture::symlink(dest, "sub", "realin");
        };
        ClientCase::new("client_keep_dirlinks_other_mode", Mode::Local, small)
            .prefill(other_mode)
            .dest("d/")
            .args(&["-a", "-i", "-K"])
            .expect_code(23)
            .run();
        let outside = |dest: &Path, _src: &Path| {
            fixture::mkdir(dest, "");
            let out = dest.parent().expect("side dir").join("elsewhere");
            std::fs::create_dir_all(&out).expect("mkdir elsewhere");
            fixture::symlink(dest, "sub", "../elsewhere");
        };
        // Each entry below the escaping link fails as stock's: a file's
        // stat, a link's creation, a directory's mkdir after its item line
        // (its contents skipped without a word).
        // Two levels below the directory that cannot be made: skipped too,
        // in their own incremental lists.
        let nested = |root: &Path| {
            small(root);
            fixture::write(root, "sub/deeper/more/e.txt", b"e\n");
            fixture::write(root, "sub/deeper/more/most/f.txt", b"f\n");
            fixture::pin_times(root, &[]);
        };
        for (name, mode) in [
            ("client_keep_dirlinks_escaping_link", Mode::Local),
            ("client_keep_dirlinks_escaping_link_server_push", Mode::ServerPush),
            ("client_keep_dirlinks_escaping_link_rsh_pull", Mode::RshPull),
        ] {
            ClientCase::new(name, mode, nested)
                .prefill(outside)
                .dest("d/")
                .args(&["-a", "-i", "-K"])
                .compare_stderr()
                .expect_code(23)
                .run();
        }
    }
}

// --- --munge-links ---

/// Links plain and already munged (the prefix alone is kept as it is).
fn munge_tree(root: &Path) {
    fixture::small_tree(root);
    fixture::symlink(root, "sub/munged", "/rsyncd-munged/../a.txt");
    fixture::symlink(root, "sub/bare", "/rsyncd-munged/");
    fixture::symlink(root, "abs", "/etc/passwd");
    fixture::pin_times(root, &[]);
}

compat_test! {
    fn client_munge_links_each_side() {
        // The side given --munge-links munges: a sender strips the prefix,
        // a receiver adds it; the option is not forwarded (a local copy's
        // receiver does not munge), -M gives it to the far side.
        for (name, mode, args) in [
            ("client_munge_links_local", Mode::Local, &["-a", "-i", "--munge-links"][..]),
            ("client_munge_links_rsh_pull", Mode::RshPull, &["-a", "-i", "--munge-links"]),
            ("client_munge_links_rsh_push", Mode::RshPush, &["-a", "-i", "--munge-links"]),
            ("client_munge_links_server_pull", Mode::ServerPull, &["-a", "-i", "-M--munge-links"]),
            ("client_munge_links_server_push", Mode::ServerPush, &["-a", "-i", "-M--munge-links"]),
        ] {
            ClientCase::new(name, mode, munge_tree).args(args).run();
        }
    }
}

// --- --mkpath on our receiving side ---

compat_test! {
    fn client_mkpath() {
        ClientCase::new("client_mkpath_pull", Mode::DaemonPull, small)
            .dest("x/y/")
            .args(&["-a", "--mkpath"])
            .run();
        ClientCase::new("client_mkpath_local_single", Mode::Local, small)
            .source("a.txt")
            .dest("p/q/renamed.txt")
            .args(&["-a", "--mkpath"])
            .run();
        ClientCase::new("client_no_mkpath_fails", Mode::Local, small)
            .dest("x/y/")
            .args(&["-a"])
            .expect_code(11)
            .run();
    }
}

// --- --ignore-missing-args on the sending side ---

compat_test! {
    fn ignore_missing_args_on_our_sending_sides() {
        use crate::harness::bins;
        use crate::harness::daemon::Daemon;
        use crate::harness::process::{client_timeout, run_cmd};
        use crate::harness::tmp::TempDir;
        use crate::harness::tree::{diff, format_diff, snapshot_with, SnapOptions};
        let snapshot = |p: &std::path::Path| snapshot_with(p, SnapOptions { ignore_root: true });
        let work = TempDir::new("ignore_missing");
        let src = work.join("src");
        small(&src);
        let conf = format!("use chroot = no\nuid = root\ngid = root\n[mod]\n    path = {}\n", src.display());
        let stock_d = Daemon::start(&bins::stock(), &conf, "stock");
        let ours_d = Daemon::start(&bins::ours(), &conf, "ours");
        for flag in ["--ignore-missing-args", "-a"] {
            let mut got = Vec::new();
            for side in ["stock", "ours"] {
                let bin = if side == "stock" { bins::stock() } else { bins::ours() };
                let d = if side == "stock" { &stock_d } else { &ours_d };
                // Our client sending (local sources) and our daemon sending.
                let push_dest = work.join(format!("push-{side}"));
                let pull_dest = work.join(format!("pull-{side}"));
                let _ = std::fs::remove_dir_all(&push_dest);
                let _ = std::fs::remove_dir_all(&pull_dest);
                let a = run_cmd(
                    &bin,
                    ["-a".to_string(), flag.into(), src.join("a.txt").display().to_string(), src.join("nosuch").display().to_string(), format!("{}/", push_dest.display())],
                    None,
                    client_timeout(),
                );
                let b = run_cmd(
                    &bins::stock(),
                    ["-a".to_string(), flag.into(), d.url("mod/b.txt"), d.url("mod/nosuch"), format!("{}/", pull_dest.display())],
                    None,
                    client_timeout(),
                );
                got.push((a.code, b.code, push_dest, pull_dest));
            }
            let (s, o) = (&got[0], &got[1]);
            assert_eq!((o.0, o.1), (s.0, s.1), "{flag}: exit codes (ours, then stock)");
            for (x, y) in [(&s.2, &o.2), (&s.3, &o.3)] {
                let d = diff("stock", &snapshot(x), "ours", &snapshot(y));
                assert!(d.is_empty(), "{flag}: {}", format_diff(&d, 10));
            }
        }
    }
}

// --- what tools probe ---

/// The JSON object keys of a `-VV` report, in order (every `"name":`).
fn json_keys(s: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let name = &after[..end];
        let tail = after[end + 1..].trim_start();
        if tail.starts_with(':') {
            keys.push(name.to_string());
        }
        rest = &after[end + 1..];
    }
    keys
}

/// The quoted items of one `"name": [ ... ]` list of a `-VV` report.
fn json_list(s: &str, name: &str) -> Vec<String> {
    let Some(p) = s.find(&format!("\"{name}\"")) else {
        return Vec::new();
    };
    let from = &s[p..];
    let (Some(a), Some(b)) = (from.find('['), from.find(']')) else {
        return Vec::new();
    };
    from[a + 1..b]
        .split(',')
        .map(|x| x.trim().trim_matches('"').to_string())
        .collect()
}

compat_test! {
    fn client_probes_like_stock() {
        use crate::harness::bins;
        use crate::harness::process::{client_timeout, run_cmd};
        let run = |bin: &Path, args: &[&str]| run_cmd(bin, args, None, client_timeout());
        let (stock, ours) = (bins::stock(), bins::ours());
        // -VV: the same report shape (keys in stock's order), and lists
        // that offer only what stock also knows.
        let (s, o) = (run(&stock, &["-VV"]), run(&ours, &["-VV"]));
        assert_eq!((s.code, o.code), (0, 0), "ours: {}", o.describe());
        assert_eq!(json_keys(&o.stdout), json_keys(&s.stdout), "-VV keys differ\nours:\n{}\nstock:\n{}", o.stdout, s.stdout);
        for list in ["checksum_list", "compress_list", "daemon_auth_list"] {
            let (sl, ol) = (json_list(&s.stdout, list), json_list(&o.stdout, list));
            assert!(!ol.is_empty() && ol.iter().all(|x| sl.contains(x)), "{list}: ours {ol:?}, stock {sl:?}");
        }
        // An unknown option: rsync's message (the argument as given) and
        // exit 1; names stock does not know are unknown to us too.
        for bad in ["--no-such-option", "--no-such=3", "--perms-only", "--force-delete", "--max-alloc-size=1"] {
            let (s, o) = (run(&stock, &[bad]), run(&ours, &[bad]));
            assert_eq!(s.code, 1, "{bad}: stock {}", s.describe());
            assert_eq!(o.code, 1, "{bad}: ours {}", o.describe());
            assert_eq!(o.stderr.lines().next(), s.stderr.lines().next(), "{bad}: ours {}", o.describe());
        }
        // FLAG --version: 0 for what we implement (stock too) ...
        for flag in ["--delete", "-H", "-c", "-z", "--inplace", "--append", "-P", "--info=progress2", "--open-noatime", "--partial-dir=.p", "--link-dest=/x", "-8", "--qsort", "--fsync", "--munge-links", "--preallocate", "--fuzzy", "-yy", "-s", "--chown=a:b", "--usermap=x:y", "-X", "--xattrs"] {
            let (s, o) = (run(&stock, &[flag, "--version"]), run(&ours, &[flag, "--version"]));
            assert_eq!((o.code, s.code), (0, 0), "{flag}: ours {}", o.describe());
        }
        // ... and "unknown option" for what we do not (stock knows them all).
        for flag in ["-A", "--atimes", "--fake-super", "--write-batch=b"] {
            let (s, o) = (run(&stock, &[flag, "--version"]), run(&ours, &[flag, "--version"]));
            assert_eq!(s.code, 0, "stock refused {flag}");
            assert_eq!(o.code, 1, "{flag}: ours {}", o.describe());
            assert!(o.stderr.contains("unknown option"), "{flag}: ours {}", o.describe());
        }
        // --info=help / --debug=help: stock's first line; for --info (which
        // works) only flag names stock has. (Our --debug words are accepted
        // and have no effect: its help says so instead of listing them.)
        for h in ["--info=help", "--debug=help"] {
            let (s, o) = (run(&stock, &[h]), run(&ours, &[h]));
            assert_eq!((s.code, o.code), (0, 0), "{h}: ours {}", o.describe());
            assert_eq!(o.stdout.lines().next(), s.stdout.lines().next(), "{h}");
            if h == "--debug=help" {
                continue;
            }
            let names = |t: &str| -> Vec<String> {
                t.lines().skip(2).filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect()
            };
            let sn = names(&s.stdout);
            let on = names(&o.stdout);
            assert!(!on.is_empty() && on.iter().all(|n| sn.contains(n)), "{h}: ours {on:?}, stock {sn:?}");
        }
    }
}

compat_test! {
    fn client_rsh_timeout_like_stock() {
        // A remote shell that never answers, and one that stalls after the
        // version: --timeout ends both with stock's line and code 30, pull
        // and push, without waiting for the stalled shell.
        use crate::harness::bins;
        use crate::harness::process::{client_timeout, run_cmd};
        use std::os::unix::fs::PermissionsExt;
        let work = crate::harness::tmp::TempDir::new("rsh_timeout");
        let silent = work.join("silent.sh");
        let stall = work.join("stall.sh");
        // (Each shell ends when the client closes its stdin, as ssh would.)
        std::fs::write(&silent, "#!/bin/sh\ncat >/dev/null\n").expect("write script");
        std::fs::write(&stall, "#!/bin/sh\nprintf '\\037\\000\\000\\000'\ncat >/dev/null\n").expect("write script");
        for s in [&silent, &stall] {
            std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        // A shell that closes its stdout at once but waits for its stdin to
        // end: "connection unexpectedly closed" (12), not a deadlock.
        let closing = work.join("closing.sh");
        std::fs::write(&closing, "#!/bin/sh\nexec cat >/dev/null\n").expect("write script");
        std::fs::set_permissions(&closing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let args = vec!["--timeout=1".to_string(), "-e".into(), closing.display().to_string(), "host:/a".into(), work.join("dest").display().to_string()];
        let s = run_cmd(&bins::stock(), args.clone(), None, client_timeout());
        let o = run_cmd(&bins::ours(), args, None, client_timeout());
        assert_eq!((o.code, s.code), (12, 12), "ours: {}\nstock: {}", o.describe(), s.describe());
        assert_eq!(o.stderr.lines().next(), s.stderr.lines().next());
        let src = work.join("f.txt");
        std::fs::write(&src, b"data\n").expect("write source");
        let pull = ("host:/a".to_string(), work.join("dest").display().to_string());
        let push = (src.display().to_string(), "host:/a".to_string());
        for (shell, (a, b)) in [(&silent, pull.clone()), (&stall, pull), (&stall, push)] {
            {
                let args = |_: ()| vec!["--timeout=1".to_string(), "-e".into(), shell.display().to_string(), a.clone(), b.clone()];
                let t = std::time::Instant::now();
                let s = run_cmd(&bins::stock(), args(()), None, client_timeout());
                let o = run_cmd(&bins::ours(), args(()), None, client_timeout());
                assert!(t.elapsed() < std::time::Duration::from_secs(20), "a stalled shell was waited for");
                assert_eq!(s.code, 30, "stock: {}", s.describe());
                assert_eq!(o.code, 30, "ours: {}\nstock: {}", o.describe(), s.describe());
                // "io timeout after N seconds": N is the time the side
                // measured, one second more on a loaded machine.
                let first = |t: &str| t.lines().next().map(|l| l.replace(|c: char| c.is_ascii_digit(), "N"));
                assert_eq!(first(&o.stderr), first(&s.stderr), "ours: {}\nstock: {}", o.describe(), s.describe());
            }
        }
    }
}

// --- incremental recursion over several sources, per-directory filters ---

/// Writes `(path, text)` files under `root` and pins their times.
fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        fixture::write(root, rel, text.as_bytes());
    }
    fixture::pin_times(root, &[]);
}

/// Two source trees with directories of the same name in both (their
/// contents are listed together), a third argument naming a directory
/// without its trailing slash, and files that only one tree has.
fn overlapping_sources(root: &Path) {
    write_files(
        root,
        &[
            ("x/top.txt", "x top\n"),
            ("x/s/deep/f1.txt", "x deep\n"),
            ("x/s/deep/d2/f2.txt", "x deeper\n"),
            ("x/s/same.txt", "from x\n"),
            ("y/s/g.txt", "y s\n"),
            ("y/s/same.txt", "from y, listed second\n"),
            ("y/s/deep/f3.txt", "y deep\n"),
            ("y/t/h.txt", "y t\n"),
            ("z/sub/deeper/k.txt", "z\n"),
        ],
    );
}

fn edit_overlapping(root: &Path) {
    fixture::write(root, "y/s/deep/f3.txt", b"y deep, changed\n");
    let _ = std::fs::remove_file(root.join("x/s/deep/d2/f2.txt"));
    fixture::write(root, "z/sub/new.txt", b"new\n");
    fixture::pin_times(root, &[]);
}

/// Stock lists several sources incrementally ("sending incremental file
/// list"), a directory found under two of them as one list.
fn several_sources(name: &str, mode: Mode) {
    ClientCase::new(name, mode, overlapping_sources)
        .sources(&["x/", "y/", "z/sub"])
        .args(&["-av"])
        .then(edit_overlapping, &["-ai", "--delete", "--stats"])
        .run();
}

compat_test! {
    fn client_local_several_sources_incremental() {
        several_sources("client_local_several_sources_incremental", Mode::Local);
    }
}

compat_test! {
    fn client_rsh_push_several_sources_incremental() {
        several_sources("client_rsh_push_several_sources_incremental", Mode::RshPush);
    }
}

compat_test! {
    fn client_server_pull_several_sources_incremental() {
        several_sources("client_server_pull_several_sources_incremental", Mode::ServerPull);
    }
}

/// A per-directory filter file in one directory, and files in a sibling
/// directory listed after it that its rule would match.
fn sibling_filter_files(root: &Path) {
    write_files(
        root,
        &[
            ("a/.rsync-filter", "- x*\n"),
            ("a/xa.txt", "excluded in a\n"),
            ("a/keep.txt", "kept\n"),
            ("a/b/xb.txt", "excluded below a\n"),
            ("c/xc.txt", "not under a: sent\n"),
            ("c/d/xd.txt", "not under a either\n"),
            ("c/.rsync-filter", "- *.tmp\n"),
            ("c/t.tmp", "excluded in c\n"),
            ("e/t.tmp", "not under c: sent\n"),
        ],
    );
}

compat_test! {
    fn client_local_dir_merge_rules_stay_in_their_directory() {
        // Incremental recursion lists a/ before c/: a's rules must not
        // reach c's files (they did, and --delete would have removed them).
        ClientCase::new("client_local_dir_merge_rules_stay_in_their_directory", Mode::Local, sibling_filter_files)
            .args(&["-aiF"])
            .then(|_| {}, &["-ai", "-F", "--delete"])
            .run();
    }
}

compat_test! {
    fn client_server_pull_dir_merge_rules_stay_in_their_directory() {
        ClientCase::new("client_server_pull_dir_merge_rules_stay_in_their_directory", Mode::ServerPull, sibling_filter_files)
            .args(&["-aiF"])
            .run();
    }
}

/// `-R` over several sources: nested paths below implied directories
/// (listed incrementally, the implied ones as partial lists), a file
/// argument, a "dir/" argument and an absolute-style anchor.
fn relative_sources(name: &str, mode: Mode) {
    ClientCase::new(name, mode, overlapping_sources)
        .sources(&[
            "./x/s/deep",
            "./y/t",
            "./x/s/same.txt",
            "./y/s/",
            "./z/sub/deeper",
            "./x/./s/",
        ])
        .args(&["-avR"])
        .then(edit_overlapping, &["-aiR", "--delete"])
        .then(|_| {}, &["-aiR", "--no-implied-dirs", "--stats"])
        .run();
}

compat_test! {
    fn client_local_relative_incremental() {
        relative_sources("client_local_relative_incremental", Mode::Local);
    }
}

compat_test! {
    fn client_rsh_push_relative_incremental() {
        relative_sources("client_rsh_push_relative_incremental", Mode::RshPush);
    }
}

compat_test! {
    fn client_rsh_pull_relative_incremental() {
        relative_sources("client_rsh_pull_relative_incremental", Mode::RshPull);
    }
}

compat_test! {
    fn client_server_push_relative_incremental() {
        relative_sources("client_server_push_relative_incremental", Mode::ServerPush);
    }
}

compat_test! {
    fn client_server_pull_relative_incremental() {
        relative_sources("client_server_pull_relative_incremental", Mode::ServerPull);
    }
}

/// A hard-linked pair named twice (overlapping `-R` sources): the sender
/// lists both copies, the receiver keeps one of each, and the pair is
/// still transferred once and linked; `--stats` counts the names as
/// stock does (both sides list incrementally with `-H` now).
fn hard_links_named_twice(name: &str, mode: Mode) {
    ClientCase::new(name, mode, |root: &Path| {
        write_files(root, &[("c/g.txt", "linked\n"), ("c/other.txt", "alone\n")]);
        std::fs::hard_link(root.join("c/g.txt"), root.join("c/h.txt")).expect("hard link");
    })
    .sources(&["./c", "./c/"])
    .args(&["-aiRH", "--stats"])
    .then(|_| {}, &["-aiRH", "--stats"])
    .run();
}

compat_test! {
    fn client_server_push_hard_links_named_twice() {
        hard_links_named_twice("client_server_push_hard_links_named_twice", Mode::ServerPush);
    }
}

compat_test! {
    fn client_rsh_pull_hard_links_named_twice() {
        hard_links_named_twice("client_rsh_pull_hard_links_named_twice", Mode::RshPull);
    }
}

compat_test! {
    fn client_local_hard_links_named_twice() {
        hard_links_named_twice("client_local_hard_links_named_twice", Mode::Local);
    }
}

compat_test! {
    fn client_local_whole_list_progress_line() {
        // Without incremental recursion the sender announces its list as
        // "building file list ... done" (one line), a receiving client as
        // "receiving file list ... done".
        ClientCase::new("client_local_whole_list_progress_line", Mode::Local, small)
            .args(&["-av", "--no-inc-recursive"])
            .then(edit_small, &["-av", "--no-i-r", "--delete"])
            .run();
    }
}

compat_test! {
    fn client_rsh_pull_whole_list_progress_line() {
        ClientCase::new("client_rsh_pull_whole_list_progress_line", Mode::RshPull, small)
            .args(&["-av", "--no-inc-recursive"])
            .run();
    }
}

/// A `--files-from` list naming directories, a file below one of them and
/// an absolute-looking name (taken relative to the source).
fn files_from_tree(root: &Path) {
    overlapping_sources(root);
    fixture::write(
        root,
        "list.txt",
        b"x/s/deep\ny/t\n/x/top.txt\nz/sub/\nx/s/deep/f1.txt\n",
    );
    fixture::pin_times(root, &[]);
}

compat_test! {
    fn client_local_files_from_recursive_incremental() {
        // With -r a --files-from list is sent incrementally, as stock does.
        ClientCase::new("client_local_files_from_recursive_incremental", Mode::Local, files_from_tree)
            .args(&["-av", "-r", "--files-from={work}/src/list.txt"])
            .then(edit_overlapping, &["-ai", "-r", "--files-from={work}/src/list.txt", "--stats"])
            .then(|_| {}, &["-av", "--files-from={work}/src/list.txt"])
            .run();
    }
}

compat_test! {
    fn client_rsh_push_files_from_recursive_incremental() {
        ClientCase::new("client_rsh_push_files_from_recursive_incremental", Mode::RshPush, files_from_tree)
            .args(&["-av", "-r", "--files-from={work}/src/list.txt"])
            .then(edit_overlapping, &["-ai", "-r", "--files-from={work}/src/list.txt", "--stats"])
            .run();
    }
}

compat_test! {
    fn client_server_pull_files_from_recursive_incremental() {
        ClientCase::new("client_server_pull_files_from_recursive_incremental", Mode::ServerPull, files_from_tree)
            .args(&["-av", "-r", "--files-from={work}/src/list.txt"])
            .then(edit_overlapping, &["-ai", "-r", "--files-from={work}/src/list.txt", "--stats"])
            .run();
    }
}

/// A --files-from list (no -r: one whole list) whose names go back and
/// forth between directories and name one twice: implied directories come
/// again after a name elsewhere, and the duplicates are counted, as stock.
fn files_from_back_and_forth(name: &str, mode: Mode) {
    ClientCase::new(name, mode, |root: &Path| {
        write_files(
            root,
            &[
                ("a/x", "x\n"),
                ("a/z", "z\n"),
                ("b/y", "y\n"),
                ("b/c/w", "w\n"),
            ],
        );
        fixture::write(root, "list.txt", b"a/x\nb/y\na/z\nb/c/w\nb/y\n");
        fixture::pin_times(root, &[]);
    })
    .args(&["-av", "--stats", "--files-from={work}/src/list.txt"])
    .run();
}

compat_test! {
    fn client_local_files_from_back_and_forth() {
        files_from_back_and_forth("client_local_files_from_back_and_forth", Mode::Local);
    }
}

compat_test! {
    fn client_rsh_push_files_from_back_and_forth() {
        files_from_back_and_forth("client_rsh_push_files_from_back_and_forth", Mode::RshPush);
    }
}

compat_test! {
    fn client_server_pull_files_from_back_and_forth() {
        files_from_back_and_forth("client_server_pull_files_from_back_and_forth", Mode::ServerPull);
    }
}

// --- hard-link groups across incremental lists ---

/// Hard-link groups with members in several directories (under incremental
/// recursion: in several lists, now received incrementally with `-H` too),
/// a hard-linked symlink, and one member already current at the
/// destination: which member gets the data, which are linked to which, and
/// the `hf` lines are stock's. Then an unchanged re-run with `-ii` (members
/// already one file), and a dry run against an empty destination.
fn hard_link_groups(name: &str, mode: Mode) {
    ClientCase::new(name, mode, |root: &Path| {
        fixture::write(root, "a/n", b"top and a/n\n");
        fixture::hardlink(root, "a/n", "m");
        fixture::write(root, "a/x1", b"three names\n");
        fixture::hardlink(root, "a/x1", "a/x2");
        fixture::hardlink(root, "a/x1", "b/y");
        fixture::write(root, "b/lone", b"alone\n");
        fixture::write(root, "c/d/deep", b"deep and top\n");
        fixture::hardlink(root, "c/d/deep", "top");
        fixture::hardlink(root, "c/d/deep", "b/z");
        fixture::symlink(root, "a/sl", "somewhere");
        fixture::hardlink(root, "a/sl", "c/sl2");
    })
    .prefill(|dest: &Path, src: &Path| {
        // a/x1 is current here: the group's other names link to it.
        std::fs::create_dir_all(dest.join("a")).expect("mkdir");
        std::fs::copy(src.join("a/x1"), dest.join("a/x1")).expect("copy");
        let m = std::fs::metadata(src.join("a/x1")).expect("stat");
        let t = filetime::FileTime::from_last_modification_time(&m);
        fixture::set_mtime(&dest.join("a/x1"), t.unix_seconds(), t.nanoseconds());
    })
    .args(&["-aHi"])
    .then(|_| {}, &["-aHii"])
    .run();
}

compat_test! {
    fn client_local_hard_link_groups() {
        hard_link_groups("client_local_hard_link_groups", Mode::Local);
    }
}

compat_test! {
    fn client_rsh_pull_hard_link_groups() {
        hard_link_groups("client_rsh_pull_hard_link_groups", Mode::RshPull);
    }
}

compat_test! {
    fn client_rsh_push_hard_link_groups() {
        hard_link_groups("client_rsh_push_hard_link_groups", Mode::RshPush);
    }
}

compat_test! {
    fn client_server_pull_hard_link_groups() {
        hard_link_groups("client_server_pull_hard_link_groups", Mode::ServerPull);
    }
}

compat_test! {
    fn client_server_push_hard_link_groups() {
        hard_link_groups("client_server_push_hard_link_groups", Mode::ServerPush);
    }
}

compat_test! {
    fn client_daemon_pull_hard_link_groups() {
        hard_link_groups("client_daemon_pull_hard_link_groups", Mode::DaemonPull);
    }
}

compat_test! {
    fn client_daemon_push_hard_link_groups() {
        hard_link_groups("client_daemon_push_hard_link_groups", Mode::DaemonPush);
    }
}

compat_test! {
    fn client_local_hard_link_groups_dry_run() {
        ClientCase::new("client_local_hard_link_groups_dry_run", Mode::Local, |root: &Path| {
            fixture::write(root, "a/n", b"top and a/n\n");
            fixture::hardlink(root, "a/n", "m");
            fixture::write(root, "a/x1", b"three names\n");
            fixture::hardlink(root, "a/x1", "a/x2");
            fixture::hardlink(root, "a/x1", "b/y");
        })
        .args(&["-aHin"])
        .run();
    }
}

// --- the -vv (debug) lines of ordinary runs ---

/// `-vv` adds stock's debug lines: how the connection is opened ("opening
/// tcp connection to ...", "opening connection using: ...", "sending
/// daemon args: ..."), "delta-transmission enabled/disabled ...", the
/// sender's match totals, and "NAME is uptodate" (or NAME, when only its
/// attributes changed) for every current entry. A second run changes a
/// file, so the totals count matched blocks; a third adds `-i`, which
/// shows every item instead. (Lines compared whatever their order: the
/// generator's and the receiver's interleave.)
fn very_verbose(name: &str, mode: Mode) {
    ClientCase::new(name, mode, small)
        .args(&["-avv"])
        .then(edit_small, &["-avv", "--no-whole-file"])
        .then(|_| {}, &["-avvi"])
        .sorted_stdout()
        .run();
}

compat_test! {
    fn client_local_very_verbose() {
        very_verbose("client_local_very_verbose", Mode::Local);
    }
}

compat_test! {
    fn client_rsh_push_very_verbose() {
        very_verbose("client_rsh_push_very_verbose", Mode::RshPush);
    }
}

compat_test! {
    fn client_rsh_pull_very_verbose() {
        very_verbose("client_rsh_pull_very_verbose", Mode::RshPull);
    }
}

compat_test! {
    fn client_daemon_pull_very_verbose() {
        very_verbose("client_daemon_pull_very_verbose", Mode::DaemonPull);
    }
}

// --- a sending client with an empty file list ---

/// A directory named without `-r` or `-d` is skipped, so the list is
/// empty; a sending client still goes through the whole exchange (upstream
/// client_run; only a sending *server* leaves at once) and exits 0.
fn nothing_to_send(name: &str, mode: Mode) {
    ClientCase::new(name, mode, small)
        .args(&["-v"])
        .expect_code(0)
        .compare_stderr()
        .no_tree()
        .run();
}

compat_test! {
    fn client_local_nothing_to_send() {
        nothing_to_send("client_local_nothing_to_send", Mode::Local);
    }
}

compat_test! {
    fn client_rsh_push_nothing_to_send() {
        nothing_to_send("client_rsh_push_nothing_to_send", Mode::RshPush);
    }
}

compat_test! {
    fn client_daemon_push_nothing_to_send() {
        nothing_to_send("client_daemon_push_nothing_to_send", Mode::DaemonPush);
    }
}

// --- names with high-bit bytes in item lines ---

/// Names with DEL, valid UTF-8 (a C1 control among them), broken
/// sequences, a surrogate, an overlong form and glibc's old long forms.
fn odd_bytes(root: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let names: [&[u8]; 8] = [
        b"a\x7fb",
        b"c\xc3\xa9d",
        b"e\xc2\x85f",
        b"g\xe2\x80h",
        b"p\xf4\x90\x80\x80q",
        b"s\xed\xa0\x80t",
        b"o\xc0\xafv",
        b"x\xffy",
    ];
    std::fs::create_dir_all(root).expect("fixture root");
    for n in names {
        let p = root.join(std::ffi::OsStr::from_bytes(n));
        std::fs::write(&p, n).expect("odd name");
    }
    fixture::pin_times(root, &[]);
}

/// Upstream shows a name through an iconv check of the locale's charset:
/// in a UTF-8 locale each byte of an invalid sequence becomes `\#ooo` and
/// valid characters pass; in the C locale every high byte is escaped; DEL
/// passes in both.
fn escaped_names(name: &str, mode: Mode, locale: &str) {
    ClientCase::new(name, mode, odd_bytes)
        .env("LC_ALL", locale)
        .args(&["-ai"])
        .run();
}

compat_test! {
    fn client_local_names_utf8_locale() {
        escaped_names("client_local_names_utf8_locale", Mode::Local, "C.UTF-8");
    }
}

compat_test! {
    fn client_local_names_c_locale() {
        escaped_names("client_local_names_c_locale", Mode::Local, "C");
    }
}

compat_test! {
    fn client_daemon_pull_names_utf8_locale() {
        escaped_names("client_daemon_pull_names_utf8_locale", Mode::DaemonPull, "C.UTF-8");
    }
}

compat_test! {
    fn client_local_backup_dir_alone() {
        ClientCase::new("client_local_backup_dir_alone", Mode::Local, small)
            .prefill(stale_dest)
            .args(&["-ai", "--delete", "--backup-dir=bak"])
            .then(edit_small, &["-ai", "--delete", "--backup-dir=bak"])
            .run();
    }
}

/// `-R --no-implied-dirs` into an empty destination, incremental and not
/// (`--delete-after` turns it off on a receiving client): the sender still
/// lists the implied directories, flagged, from protocol 30 (a stock
/// receiver aborts on a name whose parent is not listed), and a receiver
/// makes a missing parent with make_path's mode instead of failing.
fn relative_no_implied(name: &str, mode: Mode) {
    ClientCase::new(name, mode, overlapping_sources)
        .sources(&["./x/s/deep", "./y/t"])
        .args(&["-rtiR", "--no-implied-dirs", "--delete-after"])
        .then(|_| {}, &["-rtiR", "--no-implied-dirs"])
        .then(|_| {}, &["-aiR", "--no-implied-dirs", "--delete-after"])
        .run();
}

compat_test! {
    fn client_local_relative_no_implied_dirs() {
        relative_no_implied("client_local_relative_no_implied_dirs", Mode::Local);
    }
}

compat_test! {
    fn client_rsh_pull_relative_no_implied_dirs() {
        relative_no_implied("client_rsh_pull_relative_no_implied_dirs", Mode::RshPull);
    }
}

compat_test! {
    fn client_server_pull_relative_no_implied_dirs() {
        relative_no_implied("client_server_pull_relative_no_implied_dirs", Mode::ServerPull);
    }
}

compat_test! {
    fn client_server_push_relative_no_implied_dirs() {
        relative_no_implied("client_server_push_relative_no_implied_dirs", Mode::ServerPush);
    }
}

/// `--list-only` with `--delete` and a destination only lists: nothing is
/// deleted, not in the destination and not in the working directory (we
/// once deleted every name of the working directory there).
fn listing_never_deletes(name: &str, mode: Mode, when: &str) {
    ClientCase::new(name, mode, small)
        .prefill(stale_dest)
        .args(&["--list-only", "-a", "--delete", when])
        .run();
}

compat_test! {
    fn client_local_list_only_never_deletes() {
        listing_never_deletes("client_local_list_only_never_deletes", Mode::Local, "--delete-during");
    }
}

compat_test! {
    fn client_local_list_only_never_deletes_after() {
        listing_never_deletes("client_local_list_only_never_deletes_after", Mode::Local, "--delete-after");
    }
}

compat_test! {
    fn client_rsh_pull_list_only_never_deletes() {
        listing_never_deletes("client_rsh_pull_list_only_never_deletes", Mode::RshPull, "--delete-before");
    }
}

compat_test! {
    fn client_daemon_pull_list_only_never_deletes() {
        listing_never_deletes("client_daemon_pull_list_only_never_deletes", Mode::DaemonPull, "--delete-delay");
    }
}

/// A symlink and a fifo the options do not keep (`-rt`: no `-l`, no `-D`),
/// with non-empty directories of the same names at the destination:
/// "skipping non-regular file" and nothing in the way is touched (we used
/// to try to make room first: "cannot delete non-empty directory", exit 23).
fn unkept_types(root: &Path) {
    fixture::write(root, "a.txt", b"a\n");
    fixture::symlink(root, "lnk", "a.txt");
    fixture::mkfifo(root, "fifo");
    fixture::pin_times(root, &[]);
}

fn dirs_in_the_way(dest: &Path, _src: &Path) {
    fixture::write(dest, "lnk/keep.txt", b"k\n");
    fixture::write(dest, "fifo/keep.txt", b"k\n");
}

fn unkept_types_case(name: &str, mode: Mode) {
    ClientCase::new(name, mode, unkept_types)
        .prefill(dirs_in_the_way)
        .args(&["-rti"])
        .compare_stderr()
        .run();
}

compat_test! {
    fn client_local_unkept_types_leave_the_way_alone() {
        unkept_types_case("client_local_unkept_types_leave_the_way_alone", Mode::Local);
    }
}

compat_test! {
    fn client_server_push_unkept_types_leave_the_way_alone() {
        unkept_types_case("client_server_push_unkept_types_leave_the_way_alone", Mode::ServerPush);
    }
}

compat_test! {
    fn client_rsh_pull_unkept_types_leave_the_way_alone() {
        unkept_types_case("client_rsh_pull_unkept_types_leave_the_way_alone", Mode::RshPull);
    }
}

/// A directory arrives where the destination has a file, and the client's
/// rules exclude that file's name as a file (`--include=*/ --exclude=*`):
/// the file is cleared away all the same (rules guard deletions of extra
/// names, not the way for a listed entry; we refused with "could not make
/// way for new directory", exit 23).
fn dir_over_file(root: &Path) {
    fixture::write(root, "b/x.txt", b"x\n");
    fixture::write(root, "b/y.bin", b"y\n");
    fixture::write(root, "top.txt", b"t\n");
    fixture::pin_times(root, &[]);
}

fn file_named_b(dest: &Path, _src: &Path) {
    fixture::write(dest, "b", b"a file where a directory goes\n");
}

fn excluded_in_the_way(name: &str, mode: Mode) {
    ClientCase::new(name, mode, dir_over_file)
        .prefill(file_named_b)
        .args(&["-rti", "--include=*/", "--include=*.txt", "--exclude=*"])
        .compare_stderr()
        .run();
}

compat_test! {
    fn client_local_excluded_name_in_the_way() {
        excluded_in_the_way("client_local_excluded_name_in_the_way", Mode::Local);
    }
}

compat_test! {
    fn client_daemon_pull_excluded_name_in_the_way() {
        excluded_in_the_way("client_daemon_pull_excluded_name_in_the_way", Mode::DaemonPull);
    }
}

compat_test! {
    fn client_server_push_excluded_name_in_the_way() {
        excluded_in_the_way("client_server_push_excluded_name_in_the_way", Mode::ServerPush);
    }
}

/// `--info=flist2` without incremental recursion: stock counts the list
/// as it grows, " N files...\r" every 100 entries (the sender from 0, the
/// receiver from 100), before "N files to consider".
fn many_files(root: &Path) {
    for i in 0..250 {
        fixture::write(root, &format!("f{i:03}"), format!("{i}\n").as_bytes());
    }
    fixture::pin_times(root, &[]);
}

fn flist_counts(name: &str, mode: Mode) {
    ClientCase::new(name, mode, many_files)
        .args(&["-r", "--info=flist2", "--no-inc-recursive"])
        .run();
}

compat_test! {
    fn client_local_flist_progress_counts() {
        flist_counts("client_local_flist_progress_counts", Mode::Local);
    }
}

compat_test! {
    fn client_rsh_pull_flist_progress_counts() {
        flist_counts("client_rsh_pull_flist_progress_counts", Mode::RshPull);
    }
}

/// `--safe-links` in each seat: our sender lists every link (we left the
/// unsafe ones out, and said so without `-v`), our receiver leaves out the
/// unsafe ones (we created them), naming each at `-v`.
fn links_in_and_out(root: &Path) {
    fixture::write(root, "a.txt", b"a\n");
    fixture::symlink(root, "safe", "a.txt");
    fixture::symlink(root, "sub/up", "../a.txt");
    fixture::symlink(root, "abs", "/etc/hostname");
    fixture::symlink(root, "sub/out", "../../outside");
    fixture::pin_times(root, &[]);
}

fn safe_links(name: &str, mode: Mode) {
    ClientCase::new(name, mode, links_in_and_out)
        .args(&["-a", "--safe-links"])
        .then(|_| {}, &["-av", "--safe-links"])
        .compare_stderr()
        .run();
}

compat_test! {
    fn client_local_safe_links() {
        safe_links("client_local_safe_links", Mode::Local);
    }
}

compat_test! {
    fn client_rsh_pull_safe_links() {
        safe_links("client_rsh_pull_safe_links", Mode::RshPull);
    }
}

compat_test! {
    fn client_server_push_safe_links() {
        safe_links("client_server_push_safe_links", Mode::ServerPush);
    }
}

compat_test! {
    fn client_server_pull_safe_links() {
        safe_links("client_server_pull_safe_links", Mode::ServerPull);
    }
}

/// A stock daemon that cannot open a file it listed (`-L` on a link out of
/// the module: its confined open fails with ELOOP) says MSG_NO_SEND; our
/// receiving client counts the file as done and not in place. It waited
/// for the file forever.
fn escaping_link(root: &Path) {
    fixture::write(root, "a.txt", b"a\n");
    fixture::write(root, "sub/b.txt", b"b\n");
    fixture::symlink(root, "core", "/etc/hostname");
    fixture::symlink(root, "sub/out", "/etc/hostname");
    fixture::pin_times(root, &[]);
}

compat_test! {
    fn client_daemon_pull_sender_cannot_open() {
        ClientCase::new("client_daemon_pull_sender_cannot_open", Mode::DaemonPull, escaping_link)
            .args(&["-rtLi"])
            .then(|_| {}, &["-rtLi", "--no-inc-recursive", "--delete"])
            .expect_code(23)
            .compare_stderr()
            .run();
    }
}

// A listing shows the modes `--chmod` would give (upstream applies it to
// the list as it arrives); we showed the sender's.
compat_test! {
    fn client_daemon_list_only_chmod() {
        ClientCase::new("client_daemon_list_only_chmod", Mode::DaemonPull, small)
            .no_dest()
            .args(&["--list-only", "-r", "--chmod=F600,D700"])
            .then(|_| {}, &["--list-only", "-a", "--chmod=Fo+w,Dg-x"])
            .run();
    }
}

/// A tree with directories the destination lacks (`new/`, `new/deeper/`)
/// beside one it has (`old/`), for `--existing`.
fn existing_src(root: &std::path::Path) {
    fixture::write(root, "old/a", b"old a, changed\n");
    fixture::write(root, "old/fresh", b"not at the destination\n");
    fixture::write(root, "new/b", b"b\n");
    fixture::write(root, "new/deeper/c", b"c\n");
    fixture::write(root, "top", b"top\n");
    fixture::pin_times(root, &[]);
}

fn existing_dest(dest: &std::path::Path, _src: &std::path::Path) {
    fixture::write(dest, "old/a", b"old a\n");
}

// --existing with incremental recursion: a directory the destination lacks
// is not made when its parent's list is handled (ours made it then, and
// its subdirectories, and itemized them as new), and --info=skip says "not
// creating new directory" once for it, nothing for what is below it.
compat_test! {
    fn client_local_existing_makes_no_new_directories() {
        ClientCase::new("client_local_existing_makes_no_new_directories", Mode::Local, existing_src)
            .prefill(existing_dest)
            .args(&["-ri", "--existing", "--info=skip"])
            .then(|_| {}, &["-ri", "--existing", "--no-inc-recursive", "--info=skip"])
            .sorted_stdout()
            .run();
    }
}

compat_test! {
    fn client_server_push_existing_makes_no_new_directories() {
        ClientCase::new("client_server_push_existing_makes_no_new_directories", Mode::ServerPush, existing_src)
            .prefill(existing_dest)
            .args(&["-ri", "--existing"])
            .sorted_stdout()
            .run();
    }
}

// -F below protocol 29: a per-directory merge rule cannot be sent, and
// stock says so bare (upstream send_rules' rprintf), with no "rsync: ".
compat_test! {
    fn client_local_filter_rules_too_modern() {
        ClientCase::new("client_local_filter_rules_too_modern", Mode::Local, small)
            .args(&["-rF", "--protocol=28"])
            .expect_code(2)
            .compare_stderr()
            .no_tree()
            .run();
    }
}

/// A directory where the destination has a file (backed up as `b~` when
/// the directory takes its place) and an old backup `q~` there.
fn backup_protect_src(root: &std::path::Path) {
    fixture::write(root, "b/f", b"f\n");
    fixture::write(root, "kept", b"kept\n");
    fixture::pin_times(root, &[]);
}

fn backup_protect_dest(dest: &std::path::Path, _src: &std::path::Path) {
    fixture::write(dest, "b", b"a file where a directory goes\n");
    fixture::write(dest, "q~", b"an old backup\n");
    fixture::write(dest, "gone", b"not in the source\n");
}

// -b with --delete (no --backup-dir): the client protects "*~" from the
// deletion (upstream parse_arguments adds "P *SUFFIX"). Ours deleted the
// old backup q~ (backing it up as q~~) and, with --delete-after, the
// backup b~ this run had just made.
compat_test! {
    fn client_local_backup_suffix_protected_from_delete() {
        ClientCase::new("client_local_backup_suffix_protected_from_delete", Mode::Local, backup_protect_src)
            .prefill(backup_protect_dest)
            .args(&["-a", "-v", "-b", "--delete-after"])
            .then(|_| {}, &["-a", "-v", "-b", "--delete", "--suffix=.old"])
            .sorted_stdout()
            .run();
    }
}

compat_test! {
    fn client_rsh_pull_backup_suffix_protected_from_delete() {
        ClientCase::new("client_rsh_pull_backup_suffix_protected_from_delete", Mode::RshPull, backup_protect_src)
            .prefill(backup_protect_dest)
            .args(&["-ai", "-b", "--delete"])
            .sorted_stdout()
            .run();
    }
}

// %b on the sending side counts from the file's index on (upstream
// remember_initial_stats before write_ndx_and_attrs): the index, the item
// flags and the checksum header too. Ours counted only the data after them.
compat_test! {
    fn client_local_out_format_bytes_sent() {
        ClientCase::new("client_local_out_format_bytes_sent", Mode::Local, small)
            .args(&["-a", "--out-format=%n %b"])
            .then(|_| {}, &["-a", "-I", "--no-W", "--protocol=28", "--out-format=%n %b"])
            .sorted_stdout()
            .run();
    }
}

compat_test! {
    fn client_rsh_push_out_format_bytes_sent() {
        ClientCase::new("client_rsh_push_out_format_bytes_sent", Mode::RshPush, small)
            .args(&["-az", "--out-format=%n %b"])
            .sorted_stdout()
            .run();
    }
}

/// `small` and a --files-from list beside it naming one file of `sub` and
/// one that is not there.
fn small_with_list(root: &Path) {
    small(root);
    if let Some(work) = root.parent() {
        std::fs::write(work.join("list"), "c.txt\nmissing.txt\n").expect("list");
    }
}

// --files-from names are taken in the first argument's directory (upstream
// change_dir(argv[0])), and a missing one's link_stat error names it
// there: ours named it in the server's current directory instead.
compat_test! {
    fn client_server_pull_files_from_missing_name_path() {
        ClientCase::new("client_server_pull_files_from_missing_name_path", Mode::ServerPull, small_with_list)
            .source("sub")
            .args(&["-t", "--files-from={work}/list"])
            .expect_code(23)
            .compare_stderr()
            .run();
    }
}

/// Every seat rrsync can take, for the cases that run in all of them.
const EVERY_SEAT: [Mode; 7] = [
    Mode::Local,
    Mode::DaemonPull,
    Mode::DaemonPush,
    Mode::RshPull,
    Mode::RshPush,
    Mode::ServerPull,
    Mode::ServerPush,
];

/// Owners and groups for the map options: named ids (root, daemon/bin of
/// Debian's base passwd), ids without a name here (1234:2345), a symlink.
fn owners_tree(root: &Path) {
    fixture::small_tree(root);
    fixture::write(root, "owners/u1234", b"1234:2345\n");
    fixture::chown(root, "owners/u1234", 1234, 2345);
    fixture::write(root, "owners/daemon", b"daemon:bin\n");
    fixture::chown(root, "owners/daemon", 1, 2);
    fixture::write(root, "owners/u77", b"77:88\n");
    fixture::chown(root, "owners/u77", 77, 88);
    fixture::symlink(root, "owners/link", "u1234");
    fixture::chown(root, "owners/link", 1234, 2345);
    fixture::pin_times(root, &[]);
}

compat_test! {
    fn client_chown_usermap_groupmap_every_seat() {
        // --chown, then maps by id, range, name, wildcard and the empty
        // name, then a map that does not parse (exit 1 on the receiver):
        // rrsync in each seat against stock in the same one.
        for mode in EVERY_SEAT {
            ClientCase::new("client_chown_usermap_groupmap_every_seat", mode, owners_tree)
                .args(&["-ai", "--chown=daemon:bin"])
                .then(|_| {}, &[
                    "-ai",
                    "--usermap=1234:bin,0-99:nobody,root:daemon,*:sys",
                    "--groupmap=:nogroup,2-3:daemon",
                ])
                .then(|_| {}, &["-ai", "--chown=:sys", "--numeric-ids"])
                .then(|_| {}, &["-ai", "--usermap=0:1,foo"])
                .run();
        }
    }
}

compat_test! {
    fn client_chown_option_conflicts() {
        ClientCase::new("client_chown_option_conflicts", Mode::Local, small)
            .args(&["-a", "--chown=a", "--usermap=x:y"])
            .then(|_| {}, &["-a", "--usermap=x:y", "--usermap=a:b"])
            .then(|_| {}, &["-a", "--chown=a:b", "--chown=c"])
            .then(|_| {}, &["-a", "--groupmap=x:y", "--chown=:c"])
            .then(|_| {}, &["-ai", "--usermap=*:no-such-user-here"])
            .run();
    }
}

compat_test! {
    fn client_local_not_root_groups() {
        // Not root, `-a` of files in groups we are not in: stock leaves
        // those groups alone (upstream's FLAG_SKIP_GROUP) and exits 0;
        // ours used to fail the chgrp (exit 23). Run as nobody, no groups.
        use crate::harness::tree::{diff, format_diff, snapshot};
        use std::os::unix::fs::PermissionsExt;
        let work = crate::harness::tmp::TempDir::new("client_local_not_root_groups");
        let w = work.path();
        std::fs::set_permissions(w, std::fs::Permissions::from_mode(0o755)).unwrap();
        let src = w.join("src");
        fixture::write(&src, "mine", b"nobody's group\n");
        fixture::chown(&src, "mine", 65534, 65534);
        fixture::write(&src, "roots", b"group 0\n");
        fixture::chown(&src, "roots", 65534, 0);
        fixture::write(&src, "sub/other", b"group 2345\n");
        fixture::chown(&src, "sub/other", 65534, 2345);
        fixture::pin_times(&src, &[]);
        let mut outs = Vec::new();
        for (label, bin) in [
            ("stock", crate::harness::bins::stock()),
            ("ours", crate::harness::bins::ours()),
        ] {
            let dst = w.join(format!("dst-{label}"));
            std::fs::create_dir(&dst).unwrap();
            std::os::unix::fs::chown(&dst, Some(65534), Some(65534)).unwrap();
            let out = std::process::Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(&bin)
                .arg("-ai")
                .arg(format!("{}/", src.display()))
                .arg(format!("{}/", dst.display()))
                .output()
                .expect("setpriv runs");
            outs.push((out, snapshot(&dst)));
        }
        let (stock, ours) = (&outs[0], &outs[1]);
        assert_eq!(stock.0.status.code(), Some(0), "{}", String::from_utf8_lossy(&stock.0.stderr));
        assert_eq!(
            ours.0.status.code(),
            stock.0.status.code(),
            "stderr: {}",
            String::from_utf8_lossy(&ours.0.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&ours.0.stdout), String::from_utf8_lossy(&stock.0.stdout));
        let d = diff("stock", &stock.1, "ours", &ours.1);
        assert!(d.is_empty(), "{}", format_diff(&d, 20));
    }
}

/// Names a shell or the server's globbing would change: spaces, `*`, `$`.
fn shell_names_tree(root: &Path) {
    fixture::write(root, "dir with space/a b.txt", b"spaced\n");
    fixture::write(root, "dir with space/star*.txt", b"star\n");
    fixture::write(root, "dir with space/$HOME.txt", b"dollar\n");
    fixture::write(root, "dir with space/sub/x.txt", b"x\n");
    fixture::write(root, "other.txt", b"other\n");
    fixture::pin_times(root, &[]);
}

compat_test! {
    fn client_secluded_args_every_seat() {
        // -s: our client sends the arguments after the letter bundle on
        // the server's stdin (a daemon: after the first list, which below
        // protocol 30 also carries them after "(null)"), as stock's
        // send_protected_args; a source and a destination with spaces,
        // a backup dir with a space and a wildcard suffix.
        for mode in EVERY_SEAT {
            ClientCase::new("client_secluded_args_every_seat", mode, shell_names_tree)
                .source("dir with space/")
                .dest("dest dir/")
                .args(&["-ai", "-s"])
                .then(
                    |src: &Path| {
                        fixture::write(src, "dir with space/a b.txt", b"changed!\n");
                    },
                    &["-ai", "-s", "-b", "--backup-dir=old dir", "--suffix=.b*k", "--protocol=29"],
                )
                .then(|_| {}, &["-ai", "--secluded-args", "--no-s", "--delete"])
                .run();
        }
    }
}

compat_test! {
    fn client_info_skip_messages() {
        // --info=skip names what -u, --max-size, --min-size and
        // --ignore-existing leave alone; skip2 says why an existing file
        // is kept (type, file, sum or attr change, or uptodate).
        for mode in [Mode::Local, Mode::DaemonPull, Mode::ServerPush] {
            ClientCase::new("client_info_skip_messages", mode, small)
                .prefill(|dest: &Path, src: &Path| {
                    fixture::copy_tree(src, dest);
                    fixture::write(dest, "a.txt", b"different size\n");
                    fixture::set_mtime(&dest.join("a.txt"), 2_000_000_000, 0);
                    std::fs::remove_file(dest.join("b.txt")).unwrap();
                    std::fs::create_dir(dest.join("b.txt")).unwrap();
                    fixture::chmod(dest, "sub/c.txt", 0o600);
                })
                .args(&["-ai", "--info=skip", "-u", "--max-size=5k", "--min-size=3"])
                .then(|_| {}, &["-ai", "--info=skip2", "--ignore-existing"])
                .then(|_| {}, &["-ai", "--info=skip2", "--ignore-existing", "-c"])
                .run();
        }
    }
}

/// A tree with a per-directory merge file for the filter reports.
fn filter_report_tree(root: &Path) {
    fixture::small_tree(root);
    fixture::write(root, "sub/.rsync-filter", b"- *.bin\n+ keep*\n");
    fixture::write(root, "sub/x.bin", b"bin\n");
    fixture::write(root, "sub/keep.bin", b"kept\n");
    fixture::write(root, "logs/a.log", b"log\n");
    fixture::pin_times(root, &[]);
}

compat_test! {
    fn client_debug_filter_reports() {
        // -vv (--debug=filter): the sender names the rule that hid or
        // showed each name ("[sender] hiding file x.bin because of pattern
        // <rule from a file read earlier> [per-dir .rsync-filter]"), in
        // every seat where our side sends.
        for mode in [Mode::Local, Mode::DaemonPull, Mode::DaemonPush, Mode::RshPush, Mode::ServerPull] {
            // (-vv names the module or the server program, which differ
            // between the sides here: those seats get --debug=filter, the
            // server through -M.)
            let vv: &[&str] = match mode {
                Mode::DaemonPush => &["-ai", "--debug=filter", "-F", "--exclude=*.log", "--include=sub/", "--exclude=*.txt"],
                Mode::ServerPull => &["-ai", "-M--debug=filter", "-F", "--exclude=*.log", "--include=sub/", "--exclude=*.txt"],
                _ => &["-aivv", "-F", "--exclude=*.log", "--include=sub/", "--exclude=*.txt"],
            };
            // Deleting: the generator reports what protects or risks each
            // name of a destination directory ("[generator] protecting
            // file old.log because of pattern *.log").
            let del: Vec<&str> = [&vv[..2], &["--delete", "--exclude=*.log", "--include=*.txt"][..]].concat();
            ClientCase::new("client_debug_filter_reports", mode, filter_report_tree)
                .prefill(|dest: &Path, _src: &Path| {
                    fixture::write(dest, "old.log", b"log\n");
                    fixture::write(dest, "old.txt", b"txt\n");
                    fixture::write(dest, "gone", b"gone\n");
                    fixture::write(dest, "sub/z.log", b"z\n");
                })
                .args(&["-ai", "--debug=filter", "-F", "--exclude=/logs/", "--include=*.txt", "--exclude=r.bin"])
                .then(|_| {}, vv)
                .then(|_| {}, &del)
                .sorted_stdout()
                .run();
        }
    }
}

compat_test! {
    fn client_local_info_name_levels_reach_the_server() {
        // A local copy's server is our own --server started fresh (stock
        // forks one that keeps the client's levels): --info=name2 with -i
        // shows unchanged items too, -vv --info=name1 does not.
        ClientCase::new("client_local_info_name_levels_reach_the_server", Mode::Local, small)
            .prefill(|dest: &Path, src: &Path| fixture::copy_tree(src, dest))
            .args(&["-ri", "--info=name2"])
            .then(|_| {}, &["-ri", "--info=name2", "--delete", "--max-delete=0"])
            .then(|_| {}, &["-rivv", "--info=name1"])
            .sorted_stdout()
            .run();
    }
}

compat_test! {
    fn client_out_format_f_of_a_deletion() {
        // %f of a deletion is its bare name, not under the directory of
        // the last file sent (ours said "src/old.txt").
        for mode in [Mode::Local, Mode::DaemonPush, Mode::RshPush] {
            ClientCase::new("client_out_format_f_of_a_deletion", mode, small)
                .prefill(stale_dest)
                .args(&["-a", "--delete-after", "--out-format=%n %i %f %o"])
                .sorted_stdout()
                .run();
        }
    }
}

/// A destination whose directories hold their own rules files: `sub/.rules`
/// excludes `keep*`, and `sub/deep/` (not in the source: removed whole)
/// adds `- old*` of its own.
fn dest_with_rules(dest: &Path, _src: &Path) {
    fixture::write(dest, "sub/.rules", b"- keep*\n");
    fixture::write(dest, "sub/keep1", b"mine\n");
    fixture::write(dest, "sub/gone", b"stale\n");
    fixture::write(dest, "sub/deep/.rules", b"- old*\n");
    fixture::write(dest, "sub/deep/keep2", b"mine too\n");
    fixture::write(dest, "sub/deep/old1", b"protected by deep/.rules\n");
    fixture::write(dest, "sub/deep/gone2", b"stale\n");
    fixture::write(dest, "top-gone", b"stale\n");
}

compat_test! {
    fn client_dest_rules_files_protect_from_delete() {
        // The receiver reads each destination directory's rules files as
        // deletions reach it (upstream change_local_filter_dir, and
        // push_local_filters for a directory removed whole): what they
        // exclude stays. Ours deleted sub/keep1 and everything in deep/.
        // `P` rules protect under --delete-excluded too (ours ignored them).
        for mode in [Mode::Local, Mode::DaemonPull, Mode::RshPull, Mode::ServerPush] {
            ClientCase::new("client_dest_rules_files_protect_from_delete", mode, small)
                .prefill(dest_with_rules)
                .args(&["-ai", "--delete", "--filter=dir-merge .rules"])
                .then(|_| {}, &["-ai", "--delete-after", "--filter=dir-merge .rules", "--no-inc-recursive"])
                .then(|_| {}, &["-ai", "--delete", "--delete-excluded", "--filter=P keep*", "--exclude=*.bin"])
                .sorted_stdout()
                .run();
        }
    }
}

compat_test! {
    fn client_dest_rules_file_that_does_not_parse() {
        // A destination rules file with an unknown rule: stock's generator
        // stops with "Unknown filter rule: <rule from DIR/.rules line 1>"
        // and exit 1, having deleted nothing below it. Ours went on
        // without its rules (and a local copy hung once it stopped).
        for mode in [Mode::Local, Mode::DaemonPull, Mode::RshPull, Mode::ServerPush] {
            ClientCase::new("client_dest_rules_file_that_does_not_parse", mode, small)
                .prefill(|dest: &Path, _src: &Path| {
                    fixture::write(dest, "sub/.rules", b"bogus rule\n");
                    fixture::write(dest, "sub/gone", b"stale\n");
                })
                .args(&["-a", "--delete", "--no-inc-recursive", "--filter=dir-merge .rules"])
                // Files requested before the error land or not by timing in stock.
                .no_tree()
                .dest_check(|d: &Path| match d.join("sub/gone").exists() {
                    true => Ok(()),
                    false => Err("sub/gone was deleted".into()),
                })
                .expect_code(1)
                .stderr_has("Unknown filter rule: <rule from /")
                .stderr_has("/sub/.rules line 1>")
                .run();
        }
    }
}

compat_test! {
    fn client_source_rules_file_problems() {
        // The sender's rules files: an unknown rule ends the sender with
        // exit 1 ("Unknown filter rule: <rule from /SRC/sub/.rules line
        // 1>"), an over-long one is dropped with "discarding over-long
        // filter". Ours ignored both without a word.
        let long = format!("- {}\n", "a".repeat(5000));
        // (Not from our --server: a stock client pulling from a stock
        // --server that stops this early exits 12, nothing having come
        // before the connection closed; ours reports the error and 1.)
        for mode in [Mode::Local, Mode::DaemonPush, Mode::RshPush, Mode::ServerPull] {
            if mode != Mode::ServerPull {
            ClientCase::new("client_source_rules_file_problems", mode, |root: &Path| {
                small(root);
                fixture::write(root, "sub/.rules", b"bogus rule\n");
            })
            .args(&["-a", "--filter=dir-merge .rules"])
            // Whether the receiver made the destination before the
            // sender's end reached it is timing in stock.
            .no_tree()
            .expect_code(1)
            .stderr_has("Unknown filter rule: <rule from /")
            .stderr_has("/sub/.rules line 1>")
            .run();
            }
            let long = long.clone();
            ClientCase::new("client_source_rules_file_problems", mode, move |root: &Path| {
                small(root);
                fixture::write(root, "sub/.rules", long.as_bytes());
            })
            .args(&["-a", "--filter=dir-merge .rules"])
            .expect_code(0)
            .stderr_has("discarding over-long filter: <rule from /")
            .run();
        }
    }
}

compat_test! {
    fn client_bad_rule_message_is_bare() {
        // upstream says a rule's problem without "rsync: " (ours added it).
        ClientCase::new("client_bad_rule_message_is_bare", Mode::Local, small)
            .args(&["-a", "--filter=x foo"])
            .expect_code(1)
            .stderr_has("\nUnknown filter rule: x foo\n")
            .run();
    }
}

compat_test! {
    fn client_dir_in_the_way_of_a_skipped_file() {
        // A directory where the source has a file the size limit, -u or
        // --ignore-existing skips: stock leaves the directory alone (its
        // recv_generator makes room only for a file it will send). Ours
        // removed it first, then skipped the file.
        for mode in [Mode::Local, Mode::DaemonPull, Mode::ServerPush] {
            ClientCase::new("client_dir_in_the_way_of_a_skipped_file", mode, small)
                .prefill(|dest: &Path, _src: &Path| {
                    fixture::write(dest, "a.txt/inner/x", b"in the way\n");
                    fixture::write(dest, "b.txt/y", b"in the way\n");
                })
                .args(&["-rlpt", "-b", "--delete", "-i", "--max-size=3"])
                .then(|_| {}, &["-rlpt", "-i", "--ignore-existing"])
                .sorted_stdout()
                .run();
        }
    }
}

compat_test! {
    fn client_secluded_args_debug_cmd_lines() {
        // -s with --debug=cmd: the command line (or the daemon's first
        // list) stops after the letter bundle, and "protected args: ..."
        // names the rest, as upstream's send_protected_args (ours showed
        // every argument on the first line).
        // (Not a push to a daemon: its module is named after the side.)
        for mode in [Mode::DaemonPull, Mode::RshPull, Mode::RshPush] {
            ClientCase::new("client_secluded_args_debug_cmd_lines", mode, small)
                .args(&["-a", "-s", "--debug=cmd"])
                .run();
        }
    }
}

compat_test! {
    fn client_relative_dirs_with_trailing_slash() {
        // -R -d with "dir/": upstream's SLASH_ENDING_NAME lists the
        // directory's entries (ours sent the directory alone), and such a
        // name is filtered like any other (ours skipped the check for a
        // "/./dir/" argument).
        for mode in [Mode::Local, Mode::DaemonPush, Mode::ServerPull] {
            ClientCase::new("client_relative_dirs_with_trailing_slash", mode, small)
                .source("sub/")
                .args(&["-d", "-R", "-i"])
                .then(|_| {}, &["-r", "-R", "-i", "--exclude=sub/"])
                .sorted_stdout()
                .run();
        }
    }
}

// With -s the paths reach the server past any shell, so `rsync --server`
// expands their wildcards itself (upstream read_args -> glob_expand).
compat_test! {
    fn server_pull_secluded_wildcards() {
        ClientCase::new("server_pull_secluded_wildcards", Mode::ServerPull, fixture::issue2_tree)
            .source("m*/f09[5-9]?")
            .args(&["-a", "-i", "-s"])
            .run();
    }
}

// Our client pushing with --files-from=:FILE: the stock daemon (or stock
// --server) reads the list and sends us the names.
compat_test! {
    fn client_daemon_push_files_from_server_side_list() {
        ClientCase::new("client_daemon_push_files_from_server_side_list", Mode::DaemonPush, fixture::issue2_tree)
            .prefill(|dest, _src| {
                let module = dest.parent().expect("module dir");
                std::fs::write(module.join("names.txt"), b"f700.bin\nnested/a/b/c/deep.txt\n../many/f0007\n").unwrap();
            })
            .args(&["-a", "-i", "--files-from=:names.txt"])
            .run();
    }
}

compat_test! {
    fn client_rsh_push_files_from_server_side_list() {
        let tree = |src: &Path| {
            fixture::issue2_tree(src);
            fixture::write(src, "names.lst", b"f700.bin\nnested/a/b/c/deep.txt\n");
        };
        ClientCase::new("client_rsh_push_files_from_server_side_list", Mode::RshPush, tree)
            .args(&["-a", "-i", "--files-from=:{work}/src/names.lst"])
            .then(|_| {}, &["-a", "-i", "--protocol=29", "--files-from=:{work}/src/names.lst"])
            .run();
    }
}

// A stock client pulling from and pushing to `rrsync --server` with a
// list the server reads.
compat_test! {
    fn server_pull_files_from_server_side_list() {
        let tree = |src: &Path| {
            fixture::issue2_tree(src);
            fixture::write(src, "names.lst", b"f700.bin\n#c\nnested/a/b/c/deep.txt\n");
        };
        ClientCase::new("server_pull_files_from_server_side_list", Mode::ServerPull, tree)
            .args(&["-a", "-i", "--files-from=:{work}/src/names.lst"])
            .run();
    }
}

compat_test! {
    fn server_push_files_from_server_side_list() {
        let tree = |src: &Path| {
            fixture::issue2_tree(src);
            fixture::write(src, "names.lst", b"f700.bin\nnested/a/b/c/deep.txt\n");
        };
        ClientCase::new("server_push_files_from_server_side_list", Mode::ServerPush, tree)
            .args(&["-a", "-i", "--files-from=:{work}/src/names.lst"])
            .then(|_| {}, &["-a", "-i", "--protocol=29", "--files-from=:{work}/src/names.lst"])
            .run();
    }
}

compat_test! {
    fn server_pull_files_from_missing_list() {
        ClientCase::new("server_pull_files_from_missing_list", Mode::ServerPull, small)
            .args(&["-a", "-i", "--files-from=:{work}/no-such.lst"])
            .expect_code(12)
            .compare_stderr()
            .run();
    }
}

compat_test! {
    fn client_local_hardlinked_symlinks_and_specials() {
        let tree = |src: &Path| {
            fixture::mkdir(src, "");
            fixture::symlink(src, "s1", "target");
            fixture::hardlink(src, "s1", "s2");
            fixture::mkfifo(src, "f1");
            fixture::hardlink(src, "f1", "f2");
        };
        for mode in [Mode::Local, Mode::DaemonPush, Mode::RshPull] {
            ClientCase::new("client_hardlinked_symlinks_and_specials", mode, tree)
                .args(&["-aHi"])
                .run();
        }
    }
}

// A client that gives up early (rules too modern for protocol 27) kills
// its server with SIGUSR1; stock's server says nothing where anyone sees
// it (its line goes into the stream nobody reads), and neither may ours:
// our local copy's server child and our --server under a stock client.
compat_test! {
    fn server_killed_by_its_failing_client_stays_quiet() {
        use crate::harness::process::{client_timeout, run_cmd};
        let work = crate::harness::tmp::TempDir::new("quiet_usr1");
        let src = work.join("src");
        small(&src);
        let rsh = work.join("rsh");
        std::fs::write(&rsh, "#!/bin/sh\nshift\nexec \"$@\"\n").expect("rsh");
        fixture::chmod(work.path(), "rsh", 0o755);
        let ours = crate::harness::bins::ours();
        let stock = crate::harness::bins::stock();
        for round in 0..3 {
            let dst = format!("{}/", work.join(format!("dst{round}")).display());
            let srcs = format!("{}/", src.display());
            let runs = [
                (ours.clone(), vec!["-F".to_string(), "--protocol=27".into(), "-v".into(), srcs.clone(), dst.clone()]),
                (
                    stock.clone(),
                    vec![
                        format!("--rsh={}", rsh.display()),
                        format!("--rsync-path={}", ours.display()),
                        "-F".into(),
                        "--protocol=27".into(),
                        "-v".into(),
                        format!("lh:{srcs}"),
                        dst.clone(),
                    ],
                ),
            ];
            for (bin, args) in runs {
                let o = run_cmd(&bin, &args, None, client_timeout());
                assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
                assert!(o.stderr.contains("filter rules are too modern"), "{}", o.stderr);
                assert!(!o.stderr.contains("SIGUSR1"), "{args:?}: {}", o.stderr);
            }
        }
    }
}
