//! The `fixtures-gen` command line: flags, then one call into the library, then a short report.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use crate::spec::{FixtureSpec, FrameSize};
use crate::{Fixtures, Outcome, Status, Tools};

/// Generate (or verify) the media fixtures that FFmpeg API load tests upload.
///
/// Writes test_video.mp4 (testsrc, libx264, yuv420p) and test_audio.mp3 (sine, libmp3lame) plus
/// manifest.json. Files that already match the request are kept. By default the video also
/// carries an AAC audio track: the API's audio-overlay `mix` mode fails in the worker on a video
/// without one, so the seed's silent video makes every `mix` job fail. Pass --silent-video to
/// reproduce the seed's file exactly.
#[derive(Debug, Parser)]
#[command(name = "fixtures-gen", version)]
pub struct Cli {
    /// Folder to write the fixtures to.
    #[arg(long, default_value = "tests/fixtures", env = "FIXTURES_DIR")]
    pub out: PathBuf,
    /// Length of the video and the audio, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = parse_duration)]
    pub duration: f64,
    /// Video frame size, WIDTHxHEIGHT.
    #[arg(long, default_value = "320x240")]
    pub size: FrameSize,
    /// Video frame rate.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=240))]
    pub fps: u32,
    /// Sine tone frequency, in Hz.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(20..=20000))]
    pub frequency: u32,
    /// MP3 bitrate in kb/s (a bitrate libmp3lame supports: 32 to 320).
    #[arg(long, default_value_t = 128, value_parser = parse_bitrate)]
    pub bitrate: u32,
    /// Write the seed's video without an audio track (audio-overlay `mix` jobs will then fail).
    #[arg(long)]
    pub silent_video: bool,
    /// Regenerate the files even if they already match.
    #[arg(long, conflicts_with = "check")]
    pub force: bool,
    /// Only verify the files; exit 1 if any is missing, damaged or different.
    #[arg(long)]
    pub check: bool,
    /// ffmpeg program to run.
    #[arg(long, default_value = "ffmpeg", env = "FFMPEG")]
    pub ffmpeg: PathBuf,
    /// ffprobe program to run.
    #[arg(long, default_value = "ffprobe", env = "FFPROBE")]
    pub ffprobe: PathBuf,
}

impl Cli {
    /// The fixture parameters these flags ask for.
    pub fn spec(&self) -> FixtureSpec {
        FixtureSpec {
            duration_secs: self.duration,
            size: self.size,
            fps: self.fps,
            tone_hz: self.frequency,
            audio_kbps: self.bitrate,
            video_has_audio: !self.silent_video,
        }
    }
}

fn parse_duration(input: &str) -> Result<f64, String> {
    let secs = common::duration::parse_arg(input)?.as_secs_f64();
    if !(0.1..=3600.0).contains(&secs) {
        return Err(format!("{input:?} is out of range (0.1 s to 1 h)"));
    }
    Ok(secs)
}

fn parse_bitrate(input: &str) -> Result<u32, String> {
    const MP3_BITRATES: [u32; 14] = [
        32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    let kbps: u32 = input
        .trim_end_matches(['k', 'K'])
        .parse()
        .map_err(|_| format!("{input:?} is not a bitrate in kb/s"))?;
    if MP3_BITRATES.contains(&kbps) {
        Ok(kbps)
    } else {
        Err(format!(
            "{kbps} kb/s is not an MP3 bitrate; use one of {MP3_BITRATES:?}"
        ))
    }
}

/// Runs the command; the exit code is 0 when the fixtures are in place, 1 when `--check` found a
/// problem. Errors (ffmpeg missing, folder unwritable) come back as `Err`.
pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let fixtures = Fixtures::new(&cli.out, cli.spec(), Tools::new(&cli.ffmpeg, &cli.ffprobe));
    if cli.check {
        let mut all_ok = true;
        for (path, status) in fixtures.check()? {
            match status {
                Status::Ok => println!("ok       {}", path.display()),
                Status::Missing => {
                    all_ok = false;
                    println!(
                        "MISSING  {} (run `fixtures-gen` to make it)",
                        path.display()
                    );
                }
                Status::Wrong(reasons) => {
                    all_ok = false;
                    println!("WRONG    {}", path.display());
                    for reason in reasons {
                        println!("         - {reason}");
                    }
                }
            }
        }
        return Ok(if all_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let (manifest, outcomes) = fixtures.generate(cli.force)?;
    for ((path, outcome), entry) in outcomes.iter().zip(&manifest.files) {
        let verb = match outcome {
            Outcome::Kept => "kept   ",
            Outcome::Written { .. } => "wrote  ",
        };
        println!(
            "{verb}  {}  {} bytes, {:.3} s, sha256 {}",
            path.display(),
            entry.size,
            entry.duration_secs,
            &entry.sha256[..16]
        );
        if let Outcome::Written { replaced_because } = outcome {
            for reason in replaced_because {
                println!("         replaced because: {reason}");
            }
        }
    }
    println!("manifest {}", fixtures.manifest_path().display());
    Ok(ExitCode::SUCCESS)
}
