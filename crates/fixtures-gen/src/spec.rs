//! What the fixtures should be: the parameters a user asks for, and the two files they describe.
//!
//! The defaults are the seed's "Checking Test Fixtures" step: a 5 s 320x240 30 fps testsrc video
//! (libx264, yuv420p) and a 5 s 1000 Hz sine (libmp3lame, 128 kb/s). Unlike the seed, the video
//! carries an AAC audio track by default, because the API's audio-overlay `mix` mode fails in the
//! worker on a video without one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// File name of the generated video, as the seed's locustfile expects it.
pub const VIDEO_FILE: &str = "test_video.mp4";
/// File name of the generated audio, as the seed's locustfile expects it.
pub const AUDIO_FILE: &str = "test_audio.mp3";
/// File name of the manifest written beside the fixtures.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Width and height of the test video, parsed from `WIDTHxHEIGHT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Why a `--size` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid size {input:?}: {reason} (expected WIDTHxHEIGHT with even numbers, e.g. 320x240)")]
pub struct FrameSizeError {
    input: String,
    reason: &'static str,
}

impl FromStr for FrameSize {
    type Err = FrameSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| FrameSizeError {
            input: input.to_owned(),
            reason,
        };
        let (w, h) = input
            .split_once(['x', 'X'])
            .ok_or_else(|| error("no 'x' between width and height"))?;
        let width: u32 = w
            .trim()
            .parse()
            .map_err(|_| error("width is not a whole number"))?;
        let height: u32 = h
            .trim()
            .parse()
            .map_err(|_| error("height is not a whole number"))?;
        if width == 0 || height == 0 {
            return Err(error("width and height must be positive"));
        }
        // yuv420p subsamples chroma by two in both directions: libx264 rejects odd sizes.
        if width % 2 == 1 || height % 2 == 1 {
            return Err(error("yuv420p needs even width and height"));
        }
        if width > 7680 || height > 4320 {
            return Err(error("larger than 7680x4320"));
        }
        Ok(Self { width, height })
    }
}

impl fmt::Display for FrameSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Everything that determines the content of the two fixture files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixtureSpec {
    /// Length of both files, in seconds.
    pub duration_secs: f64,
    /// Video frame size.
    pub size: FrameSize,
    /// Video frame rate, frames per second.
    pub fps: u32,
    /// Frequency of the sine tone, in Hz.
    pub tone_hz: u32,
    /// MP3 bitrate, in kb/s.
    pub audio_kbps: u32,
    /// Whether the video carries an AAC audio track (the default) or is silent like the seed's.
    pub video_has_audio: bool,
}

impl Default for FixtureSpec {
    fn default() -> Self {
        Self {
            duration_secs: 5.0,
            size: FrameSize {
                width: 320,
                height: 240,
            },
            fps: 30,
            tone_hz: 1000,
            audio_kbps: 128,
            video_has_audio: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(
            "640x480".parse::<FrameSize>(),
            Ok(FrameSize {
                width: 640,
                height: 480
            })
        );
        assert_eq!(
            "1280X720".parse::<FrameSize>().map(|s| s.to_string()),
            Ok("1280x720".into())
        );
    }

    #[test]
    fn refuses_malformed_sizes_with_the_reason() {
        for (input, reason) in [
            ("320", "no 'x'"),
            ("ax240", "width is not"),
            ("320x", "height is not"),
            ("0x240", "positive"),
            ("321x240", "even"),
            ("10000x10000", "larger"),
        ] {
            let message = input.parse::<FrameSize>().expect_err(input).to_string();
            assert!(message.contains(reason), "{input}: {message}");
            assert!(message.contains("WIDTHxHEIGHT"), "{message}");
        }
    }
}
