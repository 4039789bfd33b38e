//! Helpers shared by loadgen's integration tests.

use std::path::Path;

pub use test_support::fixtures;

/// A scenario from `tests/scenarios/`.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
        .display()
        .to_string()
}
