//! Load shapes (issue 25, item 3): `[[shape]]` stages in a scenario and `--shape FILE`. A run
//! against the loopback server of `loopback.rs` follows its stages' users second by second and
//! ends by itself with the last stage; a bad shape file is refused before the first request,
//! naming the stage and its line.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::loopback::{Act, run, scenario, start};

/// Answers in 100 ms: each user sends about 10 requests a second, so that 6 users stay far
/// below what a busy 2-core machine can serve.
const ONE_GET: &str = "[[users.tasks]]\nrun = [\"get\"]\n\n[users.steps.get]\npath = \"/item\"\n";

/// 2 users for 2 s, 6 users for 2 s, 1 user for 2 s, each reached at once.
const THREE_STAGES: &str = "
[[shape]]
duration = \"2s\"
users = 2
spawn_rate = 100

[[shape]]
duration = \"2s\"
users = 6
spawn_rate = 100

[[shape]]
duration = 2
users = 1
spawn_rate = 100
";

/// (second, users) of each row of the report's history.
fn users_by_second(report: &Value) -> Vec<(u64, u64)> {
    report["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["at_secs"].as_u64().unwrap(), h["users"].as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_shape_sets_each_stages_users_and_ends_the_run_with_it() {
    let (host, _seen) = start(Arc::new(|_, path| match path {
        "/item" => Act::Late(Duration::from_millis(100)),
        _ => Act::Answer,
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), &format!("{ONE_GET}{THREE_STAGES}"));
    // No -t: the shape's 6 s end the run.
    let (code, report) = run(&host, &file, dir.path(), &[]).await;
    let users = users_by_second(&report);
    let secs = report["duration_secs"].as_f64().unwrap();
    let figures = format!("users by second {users:?}, run of {secs:.2} s");
    assert_eq!(code, ExitCode::SUCCESS, "{figures}");
    assert_eq!(
        report["interrupted"], false,
        "ended by its shape: {figures}"
    );
    assert!(
        (5.9..15.0).contains(&secs),
        "the run ends with its last stage, at 6 s: {figures}"
    );
    // Each stage's window, 1 s in from its boundaries: a row at second `a` has the users at
    // `a` s into the run.
    for (first, last, want) in [(1, 1, 2), (3, 3, 6), (5, 5, 1)] {
        let most = users
            .iter()
            .filter(|(at, _)| (first..=last).contains(at))
            .map(|(_, n)| *n)
            .max();
        assert_eq!(
            most,
            Some(want),
            "stage of {want} users, seconds {first}-{last}: {figures}"
        );
    }
    assert_eq!(report["peak_users"], 6, "{figures}");
    let shape = report["shape"].as_array().unwrap();
    assert_eq!(
        shape
            .iter()
            .map(|s| s["users"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 6, 1],
        "the JSON report lists the shape: {:?}",
        report["shape"]
    );
    assert_eq!(shape[2]["duration_secs"], 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shape_file_beats_the_users_flags_and_a_bad_one_names_its_stage_and_line() {
    let (host, seen) = start(Arc::new(|_, _| Act::Answer)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), ONE_GET);
    let bad = dir.path().join("bad_shape.toml");
    std::fs::write(
        &bad,
        "[[shape]]\nduration = \"1s\"\nusers = 2\nspawn_rate = 5\n\n[[shape]]\nusers = 3\nspawn_rate = 5\n",
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--headless", "-H", &host, "-f", &file, "--only-summary"])
        .args(["--shape", bad.to_str().unwrap()])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad_shape.toml:6:") && stderr.contains("shape stage 2: no duration"),
        "the file, the line and the stage: {stderr}"
    );
    assert_eq!(
        seen.borrow().total(),
        0,
        "no request before the shape is checked"
    );

    // A good file: -u and --arrival-rate are overruled, with a warning each, and the run lasts
    // the shape's 1 s although -t asks for more.
    let good = dir.path().join("shape.toml");
    std::fs::write(
        &good,
        "[[shape]]\nduration = \"1s\"\nusers = 2\nspawn_rate = 100\n",
    )
    .unwrap();
    let json = dir.path().join("report.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--headless", "-H", &host, "-f", &file, "--only-summary"])
        .args(["--shape", good.to_str().unwrap(), "-u", "50", "-t", "1h"])
        .args([
            "--arrival-rate",
            "5/s",
            "--report-json",
            json.to_str().unwrap(),
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for warning in [
        "warning: -u/--users ignored",
        "warning: --arrival-rate ignored",
        "warning: -t 1h: the shape ends the run after 1s",
    ] {
        assert!(stderr.contains(warning), "{warning:?} in:\n{stderr}");
    }
    assert_eq!(report["peak_users"], 2, "{stderr}");
    assert!(report["open_model"].is_null(), "the closed model: {stderr}");
    assert_eq!(report["interrupted"], false, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_shape_holds_each_rate_through_its_stage() {
    let (host, _seen) = start(Arc::new(|_, _| Act::Answer)).await;
    let dir = tempfile::tempdir().unwrap();
    let stages = "
[[shape]]
duration = \"2s\"
arrival_rate = \"10/s\"

[[shape]]
duration = \"1s\"
arrival_rate = \"20/s\"
";
    let file = scenario(dir.path(), &format!("{ONE_GET}{stages}"));
    let (code, report) = run(&host, &file, dir.path(), &[]).await;
    let open = &report["open_model"];
    let scheduled = open["scheduled"].as_u64().unwrap();
    let figures = format!("open model {open}, run of {} s", report["duration_secs"]);
    assert_eq!(code, ExitCode::SUCCESS, "{figures}");
    // Held, not ramped: 2 s at 10/s and 1 s at 20/s (a ramp from 0 would schedule 25).
    assert_eq!(scheduled, 40, "{figures}");
    assert_eq!(report["interrupted"], false, "{figures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_says_where_the_run_is_on_its_shape() {
    let testbed = test_support::start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let shape = dir.path().join("shape.toml");
    std::fs::write(
        &shape,
        "[[shape]]\nduration = \"1m\"\nusers = 1\nspawn_rate = 10\n\n\
         [[shape]]\nduration = \"1m\"\nusers = 2\nspawn_rate = 10\n",
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "-H",
            &testbed.base_url(),
            "-f",
            &super::support::scenario("reads.toml"),
        ])
        .args([
            "--shape",
            shape.to_str().unwrap(),
            "--autostart",
            "--web-port",
            "0",
        ])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ui = crate::support::web_ui_url(&mut child).await;
    let client = reqwest::Client::new();
    let stats = crate::support::poll_json(&client, &format!("{ui}/api/stats"), |stats| {
        stats["user_count"] == 1 && !stats["stage"].is_null() && !stats["report"].is_null()
    })
    .await;
    let stage = &stats["stage"];
    assert_eq!(
        (stage["number"].as_u64(), stage["of"].as_u64()),
        (Some(1), Some(2)),
        "{stage}"
    );
    assert_eq!(stage["users"], 1, "{stage}");
    let shape = stats["report"]["shape"].as_array().unwrap();
    assert_eq!(
        shape.len(),
        2,
        "the page's list of stages: {}",
        stats["report"]
    );
    let page = client.get(&ui).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("id=\"stage_box\""),
        "the header has the stage's place"
    );
    child.kill().await.unwrap();
    testbed.stop().await;
}
