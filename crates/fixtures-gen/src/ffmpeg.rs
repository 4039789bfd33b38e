//! Running ffmpeg and ffprobe: finding them, checking the encoders we need, and keeping their
//! stderr so that a failure shows what ffmpeg itself said.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::Error;

/// The ffmpeg and ffprobe programs to run.
#[derive(Debug, Clone)]
pub struct Tools {
    ffmpeg: PathBuf,
    ffprobe: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            ffmpeg: PathBuf::from("ffmpeg"),
            ffprobe: PathBuf::from("ffprobe"),
        }
    }
}

impl Tools {
    /// Uses the given programs instead of `ffmpeg` and `ffprobe` on the `PATH`.
    pub fn new(ffmpeg: impl Into<PathBuf>, ffprobe: impl Into<PathBuf>) -> Self {
        Self {
            ffmpeg: ffmpeg.into(),
            ffprobe: ffprobe.into(),
        }
    }

    /// Fails with an install hint when a program is missing, or with the encoder's name when the
    /// installed ffmpeg was built without one of `encoders`.
    pub fn require_encoders(&self, encoders: &[&str]) -> Result<(), Error> {
        self.run_ffprobe(["-version"])?;
        let listing = self.run_ffmpeg(["-hide_banner", "-encoders"])?;
        let listing = String::from_utf8_lossy(&listing.stdout);
        // Lines look like " V....D libx264   libx264 H.264 / AVC ...": the name is the 2nd word.
        let available: Vec<&str> = listing
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .collect();
        for encoder in encoders {
            if !available.contains(encoder) {
                return Err(Error::MissingEncoder {
                    encoder: (*encoder).to_owned(),
                    ffmpeg: self.ffmpeg.clone(),
                });
            }
        }
        Ok(())
    }

    /// Runs ffmpeg with `args`; a non-zero exit is an error carrying ffmpeg's stderr.
    pub fn run_ffmpeg<I, S>(&self, args: I) -> Result<Output, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&self.ffmpeg, args)
    }

    /// Runs ffprobe with `args`; a non-zero exit is an error carrying ffprobe's stderr.
    pub fn run_ffprobe<I, S>(&self, args: I) -> Result<Output, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&self.ffprobe, args)
    }
}

fn run<I, S>(program: &Path, args: I) -> Result<Output, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let output = Command::new(program)
        .args(&args)
        .output()
        .map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                Error::ToolNotFound {
                    program: program.to_owned(),
                }
            } else {
                Error::ToolStart {
                    program: program.to_owned(),
                    cause: source,
                }
            }
        })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(Error::ToolFailed {
            command: command_line(program, &args),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn command_line(program: &Path, args: &[std::ffi::OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(|a| a.as_os_str()))
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
