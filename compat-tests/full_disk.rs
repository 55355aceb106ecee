//! A destination that fills up: the receiver's write fails with ENOSPC.
//! Stock rsync ends the whole transfer then (receive_data: "write failed
//! on ...", exit 11, "[receiver]"), removes its temp file and leaves the
//! existing file as it was. Each case runs stock and ours in the same
//! place, each into its own small tmpfs, and compares the exit code, the
//! receiver's error lines and the destination; the old file must be intact.
//!
//! Mounting needs root with CAP_SYS_ADMIN (the suite already runs as root
//! for its device cases); where the mount is refused the cases say so on
//! stderr and check nothing.

use std::path::{Path, PathBuf};

use crate::harness::bins;
use crate::harness::compare::{strip_location_and_tag, unix_now};
use crate::harness::fixture;
use crate::harness::process::{client_timeout, run_cmd};
use crate::harness::tmp::TempDir;
use crate::harness::tree::{diff, format_diff, snapshot};

/// A small tmpfs mounted at a directory, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(at: &Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(at).expect("mount point");
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::inherit())
            .status()
            .ok()?;
        st.success().then(|| SmallFs(at.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// How the transfer is run.
#[derive(Clone, Copy)]
enum Way {
    /// `X -a src/ dest/`.
    Local,
    /// A stock client pushes to `X --server` over a remote shell.
    ServerPush,
    /// `X` pulls from a stock `rsync --server --sender` over a remote shell.
    ClientPull,
}

/// The receiver's lines: its "write failed" and the exit line, without
/// source locations and version tags, the destination's path taken out.
/// (A failing client ends a remote shell's child with SIGUSR1 only after
/// its own lines are out, as upstream, so the child's last words follow.)
fn receiver_lines(stderr: &str, dest: &Path) -> Vec<String> {
    let dest = dest.display().to_string();
    stderr
        .lines()
        .filter(|l| l.contains("[receiver"))
        .map(|l| strip_location_and_tag(&l.replace(&dest, "DEST")))
        .collect()
}

fn full_disk(name: &str, way: Way) {
    let work = TempDir::new(name);
    let src = work.join("src");
    fixture::write(&src, "a.txt", b"new a\n");
    fixture::write_random(&src, "big", 7, 2_000_000);
    fixture::write(&src, "sub/s.txt", b"s\n");
    fixture::write(&src, "z.txt", b"z\n");
    fixture::pin_times(&src, &[]);
    let rsh = work.join("rsh.sh");
    std::fs::write(&rsh, "#!/bin/sh\nshift\nexec \"$@\"\n").expect("rsh script");
    std::fs::set_permissions(&rsh, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod rsh");
    let started = unix_now() - 1;
    let mut mounts = Vec::new();
    let mut outs = Vec::new();
    for side in ["stock", "ours"] {
        let dest = work.join(side);
        let Some(m) = SmallFs::mount(&dest, "1m") else {
            eprintln!("{name}: SKIPPED, cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
            return;
        };
        mounts.push(m);
        // The old version of `big`, which must survive.
        fixture::write_random(&dest, "big", 3, 300_000);
        fixture::write(&dest, "a.txt", b"old\n");
        std::fs::copy(dest.join("big"), work.join(format!("big.old.{side}"))).expect("keep old");
        let bin = if side == "stock" {
            bins::stock()
        } else {
            bins::ours()
        };
        let (program, args): (PathBuf, Vec<String>) = match way {
            Way::Local => (
                bin,
                vec![
                    "-a".into(),
                    format!("{}/", src.display()),
                    format!("{}/", dest.display()),
                ],
            ),
            Way::ServerPush => (
                bins::stock(),
                vec![
                    "-a".into(),
                    "-e".into(),
                    rsh.display().to_string(),
                    format!("--rsync-path={}", bin.display()),
                    format!("{}/", src.display()),
                    format!("lh:{}/", dest.display()),
                ],
            ),
            Way::ClientPull => (
                bin,
                vec![
                    "-a".into(),
                    "-e".into(),
                    rsh.display().to_string(),
                    format!("--rsync-path={}", bins::stock().display()),
                    format!("lh:{}/", src.display()),
                    format!("{}/", dest.display()),
                ],
            ),
        };
        outs.push(run_cmd(&program, &args, None, client_timeout()));
    }
    assert_eq!(outs[0].code, 11, "stock: {}", outs[0].describe());
    assert_eq!(outs[1].code, outs[0].code, "ours: {}", outs[1].describe());
    assert_eq!(
        receiver_lines(&outs[1].stderr, &work.join("ours")),
        receiver_lines(&outs[0].stderr, &work.join("stock")),
        "the receiver's error lines"
    );
    for side in ["stock", "ours"] {
        let now = std::fs::read(work.join(side).join("big")).expect("big is there");
        let old = std::fs::read(work.join(format!("big.old.{side}"))).expect("old copy");
        assert!(now == old, "{side}: the existing file changed");
    }
    // Directories whose contents changed before the failure keep the time
    // of that change, from the clock, in both.
    let now = unix_now() + 1;
    let (mut a, mut b) = (snapshot(&work.join("stock")), snapshot(&work.join("ours")));
    a.mark_fresh(started, now);
    b.mark_fresh(started, now);
    let d = diff("stock", &a, "ours", &b);
    assert!(
        d.is_empty(),
        "the destinations differ:\n{}",
        format_diff(&d, 20)
    );
    drop(mounts);
}

compat_test! {
    fn full_disk_local_copy() {
        full_disk("full_disk_local_copy", Way::Local);
    }
}

compat_test! {
    fn full_disk_stock_client_pushes_to_our_server() {
        full_disk("full_disk_stock_client_pushes_to_our_server", Way::ServerPush);
    }
}

compat_test! {
    fn full_disk_our_client_pulls_from_stock() {
        full_disk("full_disk_our_client_pulls_from_stock", Way::ClientPull);
    }
}
