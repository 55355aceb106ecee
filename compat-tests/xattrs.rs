//! `-X` (extended attributes) in every seat, each compared with stock in
//! the same place: a stock client pulling from and pushing to our daemon,
//! our client against a stock daemon, over a remote shell and locally.
//! The tree snapshots compare each entry's `user.` and `trusted.`
//! attributes; the fixtures give values short (sent whole) and long (sent
//! as a digest, the rest asked for), sets shared by many files, an empty
//! value, many names on one file, a directory's attributes, and as root
//! a `trusted.` one.

use std::path::Path;

use crate::harness::client::{ClientCase, Mode};
use crate::harness::compare::{Client, PullCase, PullSpec};
use crate::harness::fixture::{self, copy_tree, pin_times, random_bytes, write};
use crate::harness::push::{PushCase, PushSpec};

fn spec(args: &[&str]) -> PullSpec {
    PullSpec {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    }
}

fn setx(root: &Path, rel: &str, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(root.join(rel).as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and buffer.
    let r = unsafe {
        nix::libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr() as *const nix::libc::c_void,
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {rel} {name}: {}",
        std::io::Error::last_os_error()
    );
}

fn rmx(root: &Path, rel: &str, name: &str) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(root.join(rel).as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings.
    let r = unsafe { nix::libc::lremovexattr(p.as_ptr(), n.as_ptr()) };
    let gone = std::io::Error::last_os_error().raw_os_error() == Some(nix::libc::ENODATA);
    assert!(r == 0 || gone, "removexattr {rel} {name}");
}

fn am_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The small tree with attributes of every shape.
fn xattr_tree(root: &Path) {
    fixture::small_tree(root);
    let long = vec![b'L'; 100];
    setx(root, "a.txt", "user.short", b"s1");
    setx(root, "a.txt", "user.long", &long);
    // The same long value in another set.
    setx(root, "b.txt", "user.long", &long);
    setx(root, "b.txt", "user.other", b"o");
    // Thirty files with one set: sent once, then named by index.
    for i in 0..30 {
        let rel = format!("many/f{i:02}");
        write(root, &rel, format!("file {i}\n").as_bytes());
        setx(root, &rel, "user.tag", b"same");
        setx(root, &rel, "user.blob", &random_bytes(9, 500));
    }
    setx(root, "sub", "user.dir", &[b'D'; 40]);
    setx(root, "sub/c.txt", "user.empty", b"");
    setx(root, "r.bin", "user.big", &random_bytes(3, 4000));
    for i in 0..20 {
        setx(
            root,
            "sub/deeper/d.txt",
            &format!("user.n{i:02}"),
            &random_bytes(i, (i as usize) * 7),
        );
    }
    if am_root() {
        setx(root, "a.txt", "trusted.t", b"tt");
        setx(root, "etc", "trusted.long", &[b'T'; 64]);
    }
    pin_times(root, &[]);
}

/// Changes of every kind: a value changed (short, long), one added, one
/// removed, a file's whole set replaced by another file's.
fn xattr_edit(root: &Path) {
    setx(root, "a.txt", "user.short", b"s2");
    setx(root, "b.txt", "user.long", &[b'M'; 90]);
    rmx(root, "b.txt", "user.other");
    setx(root, "many/f03", "user.blob", &random_bytes(10, 600));
    setx(root, "sub", "user.dir", &[b'E'; 40]);
    setx(root, "etc/inside.txt", "user.new", &[b'N'; 77]);
}

/// A destination that has the tree with other attributes: extra names to
/// remove, long values that match (not asked for), others that differ.
fn xattr_stale(dest: &Path, src: &Path) {
    copy_tree(src, dest);
    let long = vec![b'L'; 100];
    setx(dest, "a.txt", "user.long", &long);
    setx(dest, "a.txt", "user.stale", &[b'S'; 50]);
    setx(dest, "b.txt", "user.long", &[b'X'; 100]);
    setx(dest, "many/f00", "user.blob", &random_bytes(9, 500));
    setx(dest, "sub/c.txt", "user.extra", b"e");
}

compat_test! {
    fn xattrs_pull_then_changes() {
        let run = PullCase::new("xattrs_pull_then_changes", xattr_tree)
            .args(&["-aX", "-i"])
            .run();
        xattr_edit(&run.servers.src);
        run.pull_again(&spec(&["-aX", "-i"]));
    }
}

compat_test! {
    fn xattrs_pull_into_stale_dest() {
        PullCase::new("xattrs_pull_into_stale_dest", xattr_tree)
            .args(&["-aX", "-i", "--stats"])
            .prefill(xattr_stale)
            .run();
    }
}

compat_test! {
    fn xattrs_pull_hardlinks_inc_recursion_and_protocols() {
        let run = PullCase::new("xattrs_pull_hardlinks_inc_recursion_and_protocols", |root: &Path| {
            xattr_tree(root);
            fixture::hardlink(root, "a.txt", "sub/a_link");
            pin_times(root, &[]);
        })
        .args(&["-aHX", "-i"])
        .run();
        xattr_edit(&run.servers.src);
        run.pull_again(&spec(&["-aHX", "-i", "--protocol=30"]));
        xattr_edit(&run.servers.src);
        setx(&run.servers.src, "a.txt", "user.short", b"s3");
        run.pull_again(&spec(&["-aHX", "-i", "--no-inc-recursive"]));
    }
}

compat_test! {
    fn xattrs_pull_dry_run_and_327_client() {
        PullCase::new("xattrs_pull_dry_run_and_327_client", xattr_tree)
            .args(&["-aXn", "-i"])
            .prefill(xattr_stale)
            .run();
        PullCase::new("xattrs_pull_327_client", xattr_tree)
            .args(&["-aX", "-i"])
            .client(Client::Rsync327)
            .prefill(xattr_stale)
            .run();
    }
}

compat_test! {
    fn xattrs_need_protocol_30() {
        PullCase::new("xattrs_need_protocol_30", xattr_tree)
            .args(&["-aX", "--protocol=29"])
            .compare_stderr()
            .expect_stock_code(Some(2))
            .run();
    }
}

compat_test! {
    fn xattrs_push_then_changes() {
        let run = PushCase::new("xattrs_push_then_changes", xattr_tree)
            .args(&["-aX", "-i"])
            .run();
        xattr_edit(run.src());
        run.push_again(&PushSpec::with_args(&["-aX", "-i", "--stats"]));
    }
}

compat_test! {
    fn xattrs_push_into_stale_module() {
        PushCase::new("xattrs_push_into_stale_module", xattr_tree)
            .args(&["-aX", "-i"])
            .prefill(xattr_stale)
            .run();
    }
}

compat_test! {
    fn xattrs_push_inplace_and_327_client() {
        PushCase::new("xattrs_push_inplace", xattr_tree)
            .args(&["-aX", "-i", "--inplace", "-I"])
            .prefill(xattr_stale)
            .run();
        PushCase::new("xattrs_push_327_client", xattr_tree)
            .args(&["-aX", "-i"])
            .client(Client::Rsync327)
            .prefill(xattr_stale)
            .run();
    }
}

fn client_case(name: &str, mode: Mode) {
    ClientCase::new(name, mode, xattr_tree)
        .prefill(xattr_stale)
        .args(&["-aX", "-i"])
        .then(xattr_edit, &["-aX", "-i"])
        .run();
}

compat_test! { fn xattrs_client_daemon_pull() { client_case("xattrs_client_daemon_pull", Mode::DaemonPull); } }
compat_test! { fn xattrs_client_daemon_push() { client_case("xattrs_client_daemon_push", Mode::DaemonPush); } }
compat_test! { fn xattrs_client_rsh_pull() { client_case("xattrs_client_rsh_pull", Mode::RshPull); } }
compat_test! { fn xattrs_client_rsh_push() { client_case("xattrs_client_rsh_push", Mode::RshPush); } }
compat_test! { fn xattrs_server_pull() { client_case("xattrs_server_pull", Mode::ServerPull); } }
compat_test! { fn xattrs_server_push() { client_case("xattrs_server_push", Mode::ServerPush); } }
compat_test! { fn xattrs_local_copy() { client_case("xattrs_local_copy", Mode::Local); } }

/// The tree with names that `x` rules leave out: on the source (not
/// sent) and at the destination (not removed).
fn skip_tree(root: &Path) {
    xattr_tree(root);
    setx(root, "a.txt", "user.skip.one", b"not sent");
    setx(root, "sub", "user.skip.two", &[b'K'; 60]);
    pin_times(root, &[]);
}

fn skip_stale(dest: &Path, src: &Path) {
    xattr_stale(dest, src);
    setx(dest, "b.txt", "user.skip.local", b"kept here");
    rmx(dest, "a.txt", "user.skip.one");
}

compat_test! {
    fn xattrs_filter_rules_pull_and_push() {
        PullCase::new("xattrs_filter_rules_pull", skip_tree)
            .args(&["-aX", "-i", "--filter=-x user.skip.*"])
            .prefill(skip_stale)
            .run();
        PushCase::new("xattrs_filter_rules_push", skip_tree)
            .args(&["-aX", "-i", "--filter=-x user.skip.*"])
            .prefill(skip_stale)
            .run();
    }
}

compat_test! {
    fn xattrs_filter_rules_client() {
        ClientCase::new("xattrs_filter_rules_client", Mode::DaemonPull, skip_tree)
            .prefill(skip_stale)
            .args(&["-aX", "-i", "--filter=-x user.skip.*"])
            .run();
        ClientCase::new("xattrs_filter_rules_client_push", Mode::RshPush, skip_tree)
            .prefill(skip_stale)
            .args(&["-aX", "-i", "--filter=-x user.skip.*"])
            .run();
    }
}

compat_test! {
    /// A daemon that receives as nobody keeps `user.` names only (and
    /// leaves the others alone), as stock.
    fn xattrs_push_received_as_nobody() {
        if !am_root() {
            return;
        }
        let (uid, gid) = fixture::nobody_ids();
        PushCase::new("xattrs_push_received_as_nobody", xattr_tree)
            .module_line(&format!("uid = {uid}"))
            .module_line(&format!("gid = {gid}"))
            .prefill(move |dest, src| {
                xattr_stale(dest, src);
                setx(dest, "b.txt", "trusted.local", b"root's");
                let _ = std::process::Command::new("chown")
                    .args(["-R", &format!("{uid}:{gid}"), &dest.display().to_string()])
                    .status();
            })
            .args(&["-aX", "-i"])
            .run();
    }
}

compat_test! {
    /// --link-dest links a file only when its attributes equal the sender's.
    fn xattrs_link_dest() {
        PullCase::new("xattrs_link_dest", xattr_tree)
            .args(&["-aX", "-i", "--link-dest=../prev"])
            .prefill(|dest, src| {
                let prev = dest.parent().unwrap().join("prev");
                let _ = std::fs::remove_dir_all(&prev);
                copy_tree(src, &prev);
                setx(&prev, "a.txt", "user.short", b"other");
                rmx(&prev, "many/f05", "user.tag");
            })
            .run();
    }
}

compat_test! {
    /// A directory replacing a file, with a long value: the generator asks
    /// for it by the index before the directory's (empty) list.
    fn xattrs_dir_replacing_a_file() {
        let src = |root: &Path| {
            fixture::small_tree(root);
            std::fs::create_dir_all(root.join("newdir")).unwrap();
            setx(root, "newdir", "user.long", &random_bytes(4, 200));
            setx(root, "newdir", "user.short", b"s");
            pin_times(root, &[]);
        };
        let prefill = |dest: &Path, src: &Path| {
            copy_tree(src, dest);
            std::fs::remove_dir_all(dest.join("newdir")).unwrap();
            write(dest, "newdir", b"a file in the way\n");
        };
        PullCase::new("xattrs_dir_replacing_a_file", src)
            .args(&["-aX", "-i"])
            .prefill(prefill)
            .run();
        PushCase::new("xattrs_dir_replacing_a_file_push", src)
            .args(&["-aX", "-i"])
            .prefill(prefill)
            .run();
    }
}

compat_test! {
    /// A backup made by copying (`--inplace -b`) keeps the old file's attributes.
    fn xattrs_inplace_backup_copy() {
        PushCase::new("xattrs_inplace_backup_copy", xattr_tree)
            .args(&["-aX", "-i", "--inplace", "-b", "-I"])
            .prefill(xattr_stale)
            .run();
    }
}

compat_test! {
    /// Without -p, an up-to-date file whose attributes change takes the
    /// sender's permission bits, as stock's receiver sets them.
    fn xattrs_without_perms_take_the_senders_mode() {
        let prefill = |dest: &Path, src: &Path| {
            copy_tree(src, dest);
            fixture::chmod(dest, "a.txt", 0o600);
            fixture::chmod(dest, "b.txt", 0o600);
            setx(dest, "b.txt", "user.other", b"o");
            rmx(dest, "a.txt", "user.short");
        };
        PullCase::new("xattrs_without_perms_take_the_senders_mode", xattr_tree)
            .args(&["-rltX", "-i"])
            .prefill(prefill)
            .run();
        PushCase::new("xattrs_without_perms_push", xattr_tree)
            .args(&["-rltX", "-i"])
            .prefill(prefill)
            .run();
    }
}

compat_test! {
    /// An existing file that differs only in its attributes is an "attr
    /// change" in --info=skip2's notes.
    fn xattrs_skip_notes_see_attribute_changes() {
        for mode in [Mode::DaemonPull, Mode::Local] {
            ClientCase::new("xattrs_skip_notes_see_attribute_changes", mode, xattr_tree)
                .prefill(xattr_stale)
                .args(&["-aX", "-i", "--ignore-existing", "--info=skip2"])
                .run();
        }
    }
}
