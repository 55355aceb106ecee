//! The `rrsync` binary: argv -> `cli::run()`; nothing else.
fn main() {
    std::process::exit(rrsync::cli::run(std::env::args_os().collect()));
}
