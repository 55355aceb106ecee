//! Test-only helpers shared by the unit tests of every layer.

use proptest::test_runner::{Config, FileFailurePersistence};

/// The property-test settings of the crate: failing seeds are kept beside
/// the source file they come from (`<file>.proptest-regressions`), not in a
/// folder at the top of the tree.
pub(crate) fn proptest_config() -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}
