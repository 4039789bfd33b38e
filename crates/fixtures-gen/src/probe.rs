//! Reading a media file back with ffprobe and comparing what it holds with what was asked for.

use std::path::Path;

use serde::Deserialize;

use crate::spec::FixtureSpec;
use crate::{Error, Tools};

/// The parts of `ffprobe -show_streams -show_format` output that the checks look at.
#[derive(Debug, Deserialize)]
pub struct Probe {
    /// Every stream in the file.
    #[serde(default)]
    pub streams: Vec<Stream>,
}

/// One stream as ffprobe describes it. Numbers come as strings in ffprobe's JSON.
#[derive(Debug, Deserialize)]
pub struct Stream {
    /// `video` or `audio`.
    pub codec_type: String,
    /// `h264`, `aac`, `mp3`, ...
    pub codec_name: String,
    /// Video width.
    pub width: Option<u32>,
    /// Video height.
    pub height: Option<u32>,
    /// Pixel format, e.g. `yuv420p`.
    pub pix_fmt: Option<String>,
    /// Frame rate as a fraction, e.g. `30/1`.
    pub r_frame_rate: Option<String>,
    /// Stream duration in seconds.
    pub duration: Option<String>,
    /// Audio sample rate in Hz.
    pub sample_rate: Option<String>,
    /// Bitrate in bits per second.
    pub bit_rate: Option<String>,
}

impl Stream {
    fn duration_secs(&self) -> Option<f64> {
        self.duration.as_deref()?.parse().ok()
    }

    fn frame_rate(&self) -> Option<f64> {
        let (num, den) = self.r_frame_rate.as_deref()?.split_once('/')?;
        let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
        (den > 0.0).then(|| num / den)
    }
}

/// Runs ffprobe on `path`. A file ffprobe cannot read (truncated, not media) is an error that
/// carries ffprobe's own message.
pub fn probe(tools: &Tools, path: &Path) -> Result<Probe, Error> {
    let output = tools.run_ffprobe([
        "-v".as_ref(),
        "error".as_ref(),
        "-print_format".as_ref(),
        "json".as_ref(),
        "-show_streams".as_ref(),
        path.as_os_str(),
    ])?;
    // ffprobe exits 0 on some damaged files but still reports the damage on stderr.
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !stderr.trim().is_empty() {
        return Err(Error::Damaged {
            path: path.to_owned(),
            detail: stderr.trim().to_owned(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|source| Error::ProbeOutput {
        path: path.to_owned(),
        cause: source,
    })
}

/// What is wrong with the video compared with `spec`; empty when it matches.
pub fn video_mismatches(probe: &Probe, spec: &FixtureSpec) -> Vec<String> {
    let mut wrong = Vec::new();
    let videos: Vec<&Stream> = probe
        .streams
        .iter()
        .filter(|s| s.codec_type == "video")
        .collect();
    let audios: Vec<&Stream> = probe
        .streams
        .iter()
        .filter(|s| s.codec_type == "audio")
        .collect();
    let [video] = videos.as_slice() else {
        wrong.push(format!("expected 1 video stream, found {}", videos.len()));
        return wrong;
    };
    expect_eq(&mut wrong, "video codec", video.codec_name.as_str(), "h264");
    expect_eq(
        &mut wrong,
        "pixel format",
        video.pix_fmt.as_deref().unwrap_or("?"),
        "yuv420p",
    );
    let size = (video.width.unwrap_or(0), video.height.unwrap_or(0));
    if size != (spec.size.width, spec.size.height) {
        wrong.push(format!(
            "size is {}x{}, expected {}",
            size.0, size.1, spec.size
        ));
    }
    match video.frame_rate() {
        Some(fps) if (fps - f64::from(spec.fps)).abs() < 0.01 => {}
        other => wrong.push(format!("frame rate is {other:?}, expected {}", spec.fps)),
    }
    // "Within a frame": one frame at the requested rate.
    let frame = 1.0 / f64::from(spec.fps.max(1));
    check_duration(
        &mut wrong,
        "video",
        video.duration_secs(),
        spec.duration_secs,
        frame,
    );
    match (spec.video_has_audio, audios.as_slice()) {
        (true, [audio]) => expect_eq(&mut wrong, "video's audio codec", &audio.codec_name, "aac"),
        (true, found) => wrong.push(format!("expected 1 audio track, found {}", found.len())),
        (false, []) => {}
        (false, found) => wrong.push(format!(
            "expected a silent video, found {} audio track(s)",
            found.len()
        )),
    }
    wrong
}

/// What is wrong with the MP3 compared with `spec`; empty when it matches.
pub fn audio_mismatches(probe: &Probe, spec: &FixtureSpec) -> Vec<String> {
    let mut wrong = Vec::new();
    let [audio] = probe.streams.as_slice() else {
        wrong.push(format!(
            "expected 1 audio stream, found {} streams",
            probe.streams.len()
        ));
        return wrong;
    };
    expect_eq(&mut wrong, "stream type", &audio.codec_type, "audio");
    expect_eq(&mut wrong, "audio codec", &audio.codec_name, "mp3");
    let bitrate: Option<u32> = audio.bit_rate.as_deref().and_then(|b| b.parse().ok());
    if bitrate != Some(spec.audio_kbps * 1000) {
        wrong.push(format!(
            "bitrate is {bitrate:?} b/s, expected {}",
            spec.audio_kbps * 1000
        ));
    }
    // An MP3 frame is 1152 samples; the encoder adds up to about two frames of delay and padding.
    let sample_rate: f64 = audio
        .sample_rate
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(44_100.0);
    let tolerance = 2.0 * 1152.0 / sample_rate;
    check_duration(
        &mut wrong,
        "audio",
        audio.duration_secs(),
        spec.duration_secs,
        tolerance,
    );
    wrong
}

fn expect_eq(wrong: &mut Vec<String>, what: &str, found: &str, expected: &str) {
    if found != expected {
        wrong.push(format!("{what} is {found}, expected {expected}"));
    }
}

fn check_duration(
    wrong: &mut Vec<String>,
    what: &str,
    found: Option<f64>,
    expected: f64,
    tolerance: f64,
) {
    match found {
        Some(secs) if (secs - expected).abs() <= tolerance + 1e-6 => {}
        Some(secs) => wrong.push(format!(
            "{what} lasts {secs:.3} s, expected {expected:.3} s (± {tolerance:.3})"
        )),
        None => wrong.push(format!("{what} duration unknown")),
    }
}
