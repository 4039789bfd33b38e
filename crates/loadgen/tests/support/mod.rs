//! Helpers shared by loadgen's test binaries.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Fixtures made once per test binary by fixtures-gen (1 s media: quick to make and upload).
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("loadgen-fixtures-{}", std::process::id()));
        let spec = fixtures_gen::spec::FixtureSpec {
            duration_secs: 1.0,
            ..Default::default()
        };
        fixtures_gen::Fixtures::new(&dir, spec, fixtures_gen::Tools::default())
            .generate(false)
            .expect("ffmpeg makes the fixtures (apt-get install ffmpeg)");
        dir
    })
}

/// A scenario from `tests/scenarios/`.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
        .display()
        .to_string()
}
