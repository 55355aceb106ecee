//! Output levels across the connection, compared with stock in the same
//! place: the `--info` words a client tells its server (upstream
//! make_output_option), a daemon's `max verbosity` capping them (upstream
//! limit_output_verbosity), the "backed up" line of a backup made to clear
//! the way for a directory, and `%f` of a directory whose contents' list
//! is empty.

use std::path::Path;

use crate::harness::client::{ClientCase, Mode};
use crate::harness::fixture::{copy_tree, mkdir, pin_times, write};
use crate::harness::push::PushCase;

/// A source where `k.bak` and `sub/x` are directories (one empty).
fn tree(root: &Path) {
    write(root, "a.txt", b"alpha\n");
    write(root, "k.bak/inner.txt", b"inner\n");
    mkdir(root, "sub/x");
    mkdir(root, "empty");
    pin_times(root, &[]);
}

/// The destination has files where the source has directories.
fn files_in_the_way(dest: &Path, src: &Path) {
    copy_tree(src, dest);
    std::fs::remove_dir_all(dest.join("k.bak")).unwrap();
    write(dest, "k.bak", b"a file in the way\n");
    std::fs::remove_dir_all(dest.join("sub/x")).unwrap();
    write(dest, "sub/x", b"another\n");
    pin_times(dest, &[]);
}

const INFO: &[&str] = &[
    "-ab",
    "-v",
    "--info=backup,copy,misc2,mount,nonreg,remove,symsafe",
];

compat_test! {
    /// Our client tells a stock server the words the user set, as stock's
    /// does (the server then reports its backups).
    fn info_words_reach_the_server() {
        // The server's "backed up" lines come among the client's own as
        // they arrive: compared sorted.
        ClientCase::new("info_words_reach_the_server", Mode::RshPush, tree)
            .prefill(files_in_the_way)
            .args(INFO)
            .sorted_stdout()
            .run();
        ClientCase::new("info_words_reach_the_server_local", Mode::Local, tree)
            .prefill(files_in_the_way)
            .args(INFO)
            .sorted_stdout()
            .run();
    }
}

compat_test! {
    /// A daemon's `max verbosity` (default 1) caps the words too.
    fn info_words_capped_by_max_verbosity() {
        PushCase::new("info_words_capped_by_max_verbosity", tree)
            .prefill(files_in_the_way)
            .args(INFO)
            .run();
        // The daemon's "backed up" lines come between the client's own as
        // they arrive: compared sorted.
        PushCase::new("info_words_max_verbosity_2", tree)
            .module_line("max verbosity = 2")
            .prefill(files_in_the_way)
            .args(INFO)
            .sorted_stdout()
            .run();
    }
}

compat_test! {
    /// `%f` names an empty directory with its source prefix.
    fn out_format_f_of_empty_dirs() {
        for mode in [Mode::Local, Mode::RshPush, Mode::DaemonPush] {
            ClientCase::new("out_format_f_of_empty_dirs", mode, tree)
                .args(&["-a", "--out-format=%n %i %f %o"])
                .run();
        }
    }
}
