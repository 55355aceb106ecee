//! Test harness for the compat suite: binaries, temp dirs, ports, daemons,
//! client runs with timeouts, tree snapshots, fixtures, the side-by-side
//! runner and the expected-failures list. One submodule per concern.

pub mod bins;
pub mod client;
pub mod compare;
pub mod daemon;
pub mod expected;
pub mod fixture;
pub mod net;
pub mod process;
pub mod push;
pub mod tmp;
pub mod tree;

/// Declares a `#[test]` whose outcome is checked against
/// `expected-failures.txt` (see [`expected::guard`]). The test's name is the
/// case name used in that file.
macro_rules! compat_test {
    ($(#[$meta:meta])* fn $name:ident() $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            $crate::harness::expected::guard(stringify!($name), || $body)
        }
    };
}
