//! The manifest written beside the fixtures: the parameters that made them, and for each file its
//! size, duration and SHA-256, so that a user or a CI job can tell what it uploads.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::spec::FixtureSpec;

/// Contents of `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The parameters the files were made with.
    pub spec: FixtureSpec,
    /// One entry per file.
    pub files: Vec<FileEntry>,
}

/// One generated file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// File name, relative to the fixtures folder.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Duration in seconds, as ffprobe reports it.
    pub duration_secs: f64,
    /// SHA-256 of the contents, lower-case hex.
    pub sha256: String,
}

/// SHA-256 of a file, streamed so that large fixtures do not load into memory.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
