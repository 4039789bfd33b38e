//! `fixtures-gen`: makes the media files that load tests upload (`test_video.mp4`,
//! `test_audio.mp3`) with ffmpeg, verifies them with ffprobe, and records them in a manifest.
//!
//! It is the seed's "Checking Test Fixtures" step done properly: idempotent (files that already
//! match are kept), verifiable (`check` reports what is wrong), and loud about ffmpeg's own errors.

pub mod cli;
mod ffmpeg;
mod manifest;
mod probe;
pub mod spec;

use std::fs;
use std::path::{Path, PathBuf};

pub use ffmpeg::Tools;
pub use manifest::{FileEntry, Manifest};
use spec::{AUDIO_FILE, FixtureSpec, MANIFEST_FILE, VIDEO_FILE};

/// Encoders the default fixtures need from the installed ffmpeg.
const REQUIRED_ENCODERS: [&str; 3] = ["libx264", "libmp3lame", "aac"];

/// Everything that can go wrong, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ffmpeg or ffprobe is not installed.
    #[error(
        "{} not found: install ffmpeg (Debian/Ubuntu: `sudo apt-get install ffmpeg`, macOS: `brew install ffmpeg`)",
        program.display()
    )]
    ToolNotFound {
        /// The program that was not found.
        program: PathBuf,
    },
    /// The program exists but could not be started.
    #[error("could not start {}: {cause}", program.display())]
    ToolStart {
        /// The program.
        program: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// ffmpeg or ffprobe ran and failed; its stderr is kept.
    #[error("`{command}` failed ({status}):\n{stderr}")]
    ToolFailed {
        /// The command line that failed.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The installed ffmpeg lacks an encoder.
    #[error(
        "{} has no `{encoder}` encoder: install a full build (Debian's `ffmpeg` package has it)",
        ffmpeg.display()
    )]
    MissingEncoder {
        /// The missing encoder.
        encoder: String,
        /// The ffmpeg that lacks it.
        ffmpeg: PathBuf,
    },
    /// ffprobe could not read a file cleanly.
    #[error("{} is damaged: {detail}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// ffprobe's message.
        detail: String,
    },
    /// ffprobe printed something that is not its JSON.
    #[error("could not read ffprobe's output for {}: {cause}", path.display())]
    ProbeOutput {
        /// The file probed.
        path: PathBuf,
        /// The parse error.
        cause: serde_json::Error,
    },
    /// The output folder cannot be created or written.
    #[error("cannot write to {}: {cause} (choose another folder with --out)", path.display())]
    Unwritable {
        /// The path that could not be written.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It already matched the request and was left alone.
    Kept,
    /// It was (re)written; the reasons say why when it existed before.
    Written {
        /// Why the old file was replaced (empty when there was none, or with `--force`).
        replaced_because: Vec<String>,
    },
}

/// The state of one fixture as `check` finds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Present and as requested.
    Ok,
    /// Absent.
    Missing,
    /// Present but unreadable or different from the request.
    Wrong(Vec<String>),
}

/// The fixtures folder and the files in it.
#[derive(Debug, Clone)]
pub struct Fixtures {
    dir: PathBuf,
    spec: FixtureSpec,
    tools: Tools,
}

impl Fixtures {
    /// Fixtures described by `spec` in `dir`, made and probed with `tools`.
    pub fn new(dir: impl Into<PathBuf>, spec: FixtureSpec, tools: Tools) -> Self {
        Self {
            dir: dir.into(),
            spec,
            tools,
        }
    }

    /// Path of the video.
    pub fn video_path(&self) -> PathBuf {
        self.dir.join(VIDEO_FILE)
    }

    /// Path of the audio.
    pub fn audio_path(&self) -> PathBuf {
        self.dir.join(AUDIO_FILE)
    }

    /// Path of the manifest.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    /// Checks both files without changing anything.
    pub fn check(&self) -> Result<[(PathBuf, Status); 2], Error> {
        self.tools.require_encoders(&[])?;
        Ok([
            (
                self.video_path(),
                self.status(&self.video_path(), Kind::Video)?,
            ),
            (
                self.audio_path(),
                self.status(&self.audio_path(), Kind::Audio)?,
            ),
        ])
    }

    /// Makes whatever is missing or wrong (everything with `force`) and rewrites the manifest.
    pub fn generate(&self, force: bool) -> Result<(Manifest, [(PathBuf, Outcome); 2]), Error> {
        self.tools.require_encoders(&REQUIRED_ENCODERS)?;
        fs::create_dir_all(&self.dir).map_err(|source| Error::Unwritable {
            path: self.dir.clone(),
            cause: source,
        })?;
        let video = self.ensure(Kind::Video, force)?;
        let audio = self.ensure(Kind::Audio, force)?;
        let manifest = Manifest {
            spec: self.spec.clone(),
            files: vec![self.entry(Kind::Video)?, self.entry(Kind::Audio)?],
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        write_atomically(&self.manifest_path(), &json)?;
        Ok((
            manifest,
            [(self.video_path(), video), (self.audio_path(), audio)],
        ))
    }

    fn ensure(&self, kind: Kind, force: bool) -> Result<Outcome, Error> {
        let path = self.path(kind);
        let replaced_because = match self.status(&path, kind)? {
            Status::Ok if !force => return Ok(Outcome::Kept),
            Status::Ok | Status::Missing => Vec::new(),
            Status::Wrong(reasons) => reasons,
        };
        // Write to a temporary name first, so an interrupted run never leaves a half file under
        // the real name that a load test would upload.
        // A name of this process's own: two runs sharing the folder (two demos) must not
        // write into, rename or delete each other's partial file.
        let partial = self.dir.join(partial_name(file_name(kind)));
        let result = self.tools.run_ffmpeg(self.ffmpeg_args(kind, &partial));
        if let Err(error) = result {
            let _ = fs::remove_file(&partial);
            return Err(error);
        }
        fs::rename(&partial, &path).map_err(|source| Error::Unwritable {
            path: path.clone(),
            cause: source,
        })?;
        match self.status(&path, kind)? {
            Status::Ok => Ok(Outcome::Written { replaced_because }),
            // Another process replaced or removed it between our rename and this check.
            Status::Missing => Err(Error::Damaged {
                path,
                detail: "the file vanished right after it was written: is another process \
                         writing fixtures into the same folder?"
                    .into(),
            }),
            Status::Wrong(reasons) => Err(Error::Damaged {
                path,
                detail: format!(
                    "ffmpeg wrote a file that does not match: {}",
                    reasons.join("; ")
                ),
            }),
        }
    }

    fn status(&self, path: &Path, kind: Kind) -> Result<Status, Error> {
        if !path.exists() {
            return Ok(Status::Missing);
        }
        let probed = match probe::probe(&self.tools, path) {
            Ok(probed) => probed,
            Err(Error::Damaged { detail, .. }) => return Ok(Status::Wrong(vec![detail])),
            Err(Error::ToolFailed { stderr, .. }) => return Ok(Status::Wrong(vec![stderr])),
            Err(other) => return Err(other),
        };
        let mut wrong = match kind {
            Kind::Video => probe::video_mismatches(&probed, &self.spec),
            Kind::Audio => probe::audio_mismatches(&probed, &self.spec),
        };
        if let Some(recorded) = self.recorded_entry(kind) {
            let sha256 = manifest::sha256_file(path).map_err(|source| Error::Read {
                path: path.to_owned(),
                cause: source,
            })?;
            if sha256 != recorded.sha256 {
                wrong.push(format!(
                    "contents changed since {MANIFEST_FILE} was written (size {} bytes, recorded {})",
                    fs::metadata(path).map(|m| m.len()).unwrap_or(0),
                    recorded.size
                ));
            }
        }
        Ok(if wrong.is_empty() {
            Status::Ok
        } else {
            Status::Wrong(wrong)
        })
    }

    /// The manifest's entry for `kind`, when a manifest for the same parameters exists. A missing
    /// or unreadable manifest is not an error: ffprobe's checks still apply.
    fn recorded_entry(&self, kind: Kind) -> Option<FileEntry> {
        let bytes = fs::read(self.manifest_path()).ok()?;
        let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
        if manifest.spec != self.spec {
            return None;
        }
        manifest
            .files
            .into_iter()
            .find(|f| f.name == file_name(kind))
    }

    fn entry(&self, kind: Kind) -> Result<FileEntry, Error> {
        let path = self.path(kind);
        let read_error = |source| Error::Read {
            path: path.clone(),
            cause: source,
        };
        let size = fs::metadata(&path).map_err(read_error)?.len();
        let sha256 = manifest::sha256_file(&path).map_err(read_error)?;
        let probed = probe::probe(&self.tools, &path)?;
        let duration_secs = probed
            .streams
            .iter()
            .filter_map(|s| s.duration.as_deref()?.parse::<f64>().ok())
            .fold(0.0, f64::max);
        Ok(FileEntry {
            name: file_name(kind).to_owned(),
            size,
            duration_secs,
            sha256,
        })
    }

    fn path(&self, kind: Kind) -> PathBuf {
        self.dir.join(file_name(kind))
    }

    fn ffmpeg_args(&self, kind: Kind, out: &Path) -> Vec<String> {
        let s = &self.spec;
        let duration = s.duration_secs.to_string();
        let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
            .map(String::from)
            .to_vec();
        let sine = format!(
            "sine=frequency={}:sample_rate=44100:duration={duration}",
            s.tone_hz
        );
        match kind {
            Kind::Video => {
                let testsrc = format!("testsrc=size={}:rate={}:duration={duration}", s.size, s.fps);
                args.extend(["-f", "lavfi", "-i", &testsrc].map(String::from));
                if s.video_has_audio {
                    args.extend(["-f", "lavfi", "-i", &sine].map(String::from));
                    args.extend(["-c:a", "aac", "-b:a", "128k"].map(String::from));
                }
                args.extend(
                    [
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-t", &duration, "-f", "mp4",
                    ]
                    .map(String::from),
                );
            }
            Kind::Audio => {
                let bitrate = format!("{}k", s.audio_kbps);
                args.extend(
                    [
                        "-f",
                        "lavfi",
                        "-i",
                        &sine,
                        "-c:a",
                        "libmp3lame",
                        "-b:a",
                        &bitrate,
                        "-f",
                        "mp3",
                    ]
                    .map(String::from),
                );
            }
        }
        args.push(out.to_string_lossy().into_owned());
        args
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Video,
    Audio,
}

fn file_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Video => VIDEO_FILE,
        Kind::Audio => AUDIO_FILE,
    }
}

/// `.partial.<pid>.<n>.<name>`: unique to this process and call, so concurrent writers into one
/// folder each rename a whole file of their own into place.
fn partial_name(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".partial.{}.{n}.{name}", std::process::id())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let unwritable = |source| Error::Unwritable {
        path: path.to_owned(),
        cause: source,
    };
    let partial = path.with_file_name(partial_name(
        &path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
    ));
    fs::write(&partial, bytes).map_err(unwritable)?;
    fs::rename(&partial, path).map_err(unwritable)
}
