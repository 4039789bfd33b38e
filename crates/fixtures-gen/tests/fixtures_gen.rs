//! End-to-end tests of fixtures-gen with the real ffmpeg and ffprobe.

#![allow(clippy::unwrap_used)]
// A test is a scenario read top to bottom; the 100-line bar is for the product's functions.
#![allow(clippy::too_many_lines)]

use std::fs;
use std::process::{Command, ExitCode};

use clap::Parser;
use fixtures_gen::cli::{Cli, run};
use fixtures_gen::spec::FixtureSpec;
use fixtures_gen::{Error, Fixtures, Outcome, Status, Tools};

fn ffprobe_streams(path: &std::path::Path) -> String {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,r_frame_rate",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs (install Debian's ffmpeg package)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn generates_files_that_pass_ffprobe_checks_and_are_kept_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Fixtures::new(dir.path(), FixtureSpec::default(), Tools::default());

    let (manifest, outcomes) = fixtures.generate(false).unwrap();
    for (path, outcome) in &outcomes {
        assert_eq!(
            outcome,
            &Outcome::Written {
                replaced_because: vec![]
            },
            "{}",
            path.display()
        );
    }
    // Independent look with ffprobe: h264 320x240 30 fps plus an AAC track; an MP3.
    assert_eq!(
        ffprobe_streams(&fixtures.video_path()),
        "h264,320,240,30/1\naac,0/0\n"
    );
    assert_eq!(ffprobe_streams(&fixtures.audio_path()), "mp3,0/0\n");
    for entry in &manifest.files {
        let bytes = fs::read(dir.path().join(&entry.name)).unwrap();
        assert_eq!(entry.size, bytes.len() as u64);
        assert!((entry.duration_secs - 5.0).abs() < 0.06, "{entry:?}");
        assert_eq!(entry.sha256.len(), 64);
    }
    let written: fixtures_gen::Manifest =
        serde_json::from_slice(&fs::read(fixtures.manifest_path()).unwrap()).unwrap();
    assert_eq!(written, manifest);

    let (_, again) = fixtures.generate(false).unwrap();
    assert!(
        again.iter().all(|(_, outcome)| *outcome == Outcome::Kept),
        "{again:?}"
    );
    let (_, forced) = fixtures.generate(true).unwrap();
    assert!(
        forced
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Written { .. }))
    );
}

#[test]
fn check_catches_a_truncated_file_and_generate_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let cli = Cli::try_parse_from(["fixtures-gen", "--out", out]).unwrap();
    assert_eq!(run(&cli).unwrap(), ExitCode::SUCCESS);
    let check = Cli::try_parse_from(["fixtures-gen", "--out", out, "--check"]).unwrap();
    assert_eq!(run(&check).unwrap(), ExitCode::SUCCESS);

    let video = dir.path().join("test_video.mp4");
    let bytes = fs::read(&video).unwrap();
    fs::write(&video, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(run(&check).unwrap(), ExitCode::from(1));
    let fixtures = Fixtures::new(dir.path(), cli.spec(), Tools::default());
    let [(_, video_status), (_, audio_status)] = fixtures.check().unwrap();
    assert!(matches!(video_status, Status::Wrong(_)), "{video_status:?}");
    assert_eq!(audio_status, Status::Ok);

    // A truncated MP3 still decodes and its Xing header still claims 5 s: the manifest catches it.
    let audio = dir.path().join("test_audio.mp3");
    let bytes = fs::read(&audio).unwrap();
    fs::write(&audio, &bytes[..bytes.len() / 2]).unwrap();
    let [_, (_, audio_status)] = fixtures.check().unwrap();
    let Status::Wrong(reasons) = audio_status else {
        panic!("truncated mp3 passed: {audio_status:?}")
    };
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("contents changed since manifest.json")),
        "{reasons:?}"
    );

    let (_, outcomes) = fixtures.generate(false).unwrap();
    for (path, outcome) in outcomes {
        let Outcome::Written { replaced_because } = outcome else {
            panic!("{} was kept", path.display())
        };
        assert!(!replaced_because.is_empty());
    }
    assert_eq!(run(&check).unwrap(), ExitCode::SUCCESS);
}

#[test]
fn check_reports_missing_files_and_mismatched_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let spec = FixtureSpec::default();
    let fixtures = Fixtures::new(dir.path(), spec.clone(), Tools::default());
    assert!(
        fixtures
            .check()
            .unwrap()
            .iter()
            .all(|(_, s)| *s == Status::Missing)
    );

    fixtures.generate(false).unwrap();
    let longer = FixtureSpec {
        duration_secs: 3.0,
        size: "640x480".parse().unwrap(),
        ..spec
    };
    let [(_, video), (_, audio)] = Fixtures::new(dir.path(), longer, Tools::default())
        .check()
        .unwrap();
    let Status::Wrong(reasons) = video else {
        panic!("{video:?}")
    };
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("size is 320x240, expected 640x480")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("video lasts 5.000 s")),
        "{reasons:?}"
    );
    assert!(matches!(audio, Status::Wrong(_)));
}

#[test]
fn silent_video_reproduces_the_seed_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let cli = Cli::try_parse_from([
        "fixtures-gen",
        "--out",
        out,
        "--silent-video",
        "--duration",
        "2",
    ])
    .unwrap();
    assert_eq!(run(&cli).unwrap(), ExitCode::SUCCESS);
    assert_eq!(
        ffprobe_streams(&dir.path().join("test_video.mp4")),
        "h264,320,240,30/1\n"
    );
    // The same folder checked against the default (with audio) is a mismatch.
    let default =
        Cli::try_parse_from(["fixtures-gen", "--out", out, "--duration", "2", "--check"]).unwrap();
    assert_eq!(run(&default).unwrap(), ExitCode::from(1));
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = Tools::new("/nonexistent/ffmpeg", "/nonexistent/ffprobe");
    let error = Fixtures::new(dir.path(), FixtureSpec::default(), missing)
        .generate(false)
        .unwrap_err();
    assert!(matches!(error, Error::ToolNotFound { .. }), "{error:?}");
    assert!(
        error.to_string().contains("apt-get install ffmpeg"),
        "{error}"
    );

    let blocker = dir.path().join("a-file");
    fs::write(&blocker, "not a folder").unwrap();
    let error = Fixtures::new(
        blocker.join("fixtures"),
        FixtureSpec::default(),
        Tools::default(),
    )
    .generate(false)
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("choose another folder with --out"),
        "{error}"
    );

    let bad_size = Cli::try_parse_from(["fixtures-gen", "--size", "320by240"]).unwrap_err();
    assert!(bad_size.to_string().contains("WIDTHxHEIGHT"), "{bad_size}");
    let bad_bitrate = Cli::try_parse_from(["fixtures-gen", "--bitrate", "100"]).unwrap_err();
    assert!(
        bad_bitrate.to_string().contains("not an MP3 bitrate"),
        "{bad_bitrate}"
    );
}

#[test]
fn help_explains_the_audio_track() {
    let help = Cli::try_parse_from(["fixtures-gen", "--help"])
        .unwrap_err()
        .to_string();
    assert!(help.contains("--silent-video"), "{help}");
    assert!(help.contains("audio-overlay `mix`"), "{help}");
}

/// Two demos (two processes) making fixtures in one shared folder at once: each must rename a
/// whole file of its own into place, never trip over the other's partial file.
#[test]
fn concurrent_processes_sharing_a_folder_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_fixtures-gen"))
                .args(["--duration", "1", "--force", "--out"])
                .arg(dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let fixtures = Fixtures::new(
        dir.path(),
        FixtureSpec {
            duration_secs: 1.0,
            ..Default::default()
        },
        Tools::default(),
    );
    for (path, status) in fixtures.check().unwrap() {
        assert_eq!(status, Status::Ok, "{}", path.display());
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
