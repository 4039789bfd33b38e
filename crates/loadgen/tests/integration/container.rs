//! loadgen as PID 1 in its FROM-scratch image (built by `docker/build.sh`): `docker stop` sends
//! SIGTERM, and the run stops and writes its reports instead of being killed 10 s later with
//! nothing written; and with a `--stop-timeout` longer than Docker's 10 s, the SIGKILL finds
//! every report whole.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::Value;
use test_support::start_in_memory;

use crate::docker::{Images, docker, docker_output, logs, until_logged};
use crate::stop::{USERS, answer_then_hold, assert_whole_reports_interrupted_by, every_report};
use crate::support::scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_stop_keeps_the_run_of_loadgen_as_pid_1() {
    let images = Images::hold();
    let container = format!("loadgen-signals-{}", std::process::id());
    // Removed whatever the test's outcome.
    struct Removed<'a>(&'a str);
    impl Drop for Removed<'_> {
        fn drop(&mut self) {
            let _ = docker_output(&["rm", "-f", self.0]);
        }
    }
    let _removed = Removed(&container);

    let testbed = start_in_memory(|_| {}).await;
    let out = tempfile::tempdir().unwrap();
    std::fs::copy(scenario("reads.toml"), out.path().join("reads.toml")).unwrap();
    let volume = format!("{}:/out", out.path().display());
    docker(&[
        "run",
        "-d",
        "--name",
        &container,
        "--network",
        "host",
        "-v",
        &volume,
        &images.loadgen(),
        "--headless",
        "-H",
        &testbed.base_url(),
        "-f",
        "/out/reads.toml",
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "10m",
        "--stats-interval",
        "1s",
        "--report-json",
        "/out/report.json",
        "--csv",
        "/out/run",
    ]);
    // Requests flow once the live table counts some.
    until_logged(&container, "requests flow", |logs| {
        logs.lines().any(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some("Aggregated")
                && words
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
        })
    })
    .await;
    // Were SIGTERM ignored, docker would kill it after 60 s, with exit code 137.
    docker(&["stop", "-t", "60", &container]);
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &container]);
    assert_eq!(code.trim(), "0", "{}", logs(&container));
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true);
    assert!(report["steady_total"]["requests"].as_u64().unwrap() > 0);
    assert!(out.path().join("run_stats.csv").exists());
    testbed.stop().await;
}

/// `docker stop` sends one SIGTERM, then SIGKILL 10 s later. With `-s 30s` and every user held
/// by the server, the users cannot finish in time: the reports written from the figures in
/// hand at the SIGTERM are whole when the SIGKILL comes, and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_stop_under_a_long_stop_timeout_leaves_every_report_whole() {
    const ANSWERED: u64 = 40;
    let images = Images::hold();
    let container = format!("loadgen-stop-timeout-{}", std::process::id());
    struct Removed<'a>(&'a str);
    impl Drop for Removed<'_> {
        fn drop(&mut self) {
            let _ = docker_output(&["rm", "-f", self.0]);
        }
    }
    let _removed = Removed(&container);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn(answer_then_hold(listener, ANSWERED, held.clone()));
    let out = tempfile::tempdir().unwrap();
    std::fs::copy(scenario("slow.toml"), out.path().join("slow.toml")).unwrap();
    let volume = format!("{}:/out", out.path().display());
    let (users, image) = (USERS.to_string(), images.loadgen());
    let mut args: Vec<&str> = vec![
        "run",
        "-d",
        "--name",
        &container,
        "--network",
        "host",
        "-v",
        &volume,
        &image,
        "--headless",
        "-H",
        &host,
        "-f",
        "/out/slow.toml",
        "-u",
        &users,
        "-r",
        "100",
        "-t",
        "10m",
        "-s",
        "30s",
        "--stats-interval",
        "1s",
    ];
    let reports = every_report(Path::new("/out"));
    args.extend(reports.iter().map(String::as_str));
    docker(&args);
    // Every answered request is in the table, and every user waits for one held.
    until_logged(&container, "the answered requests counted", |logs| {
        logs.lines().any(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some("Aggregated")
                && words
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n >= ANSWERED)
        })
    })
    .await;
    assert_eq!(held.load(Ordering::SeqCst), USERS, "{}", logs(&container));
    // The copy of the scenario is no report.
    std::fs::remove_file(out.path().join("slow.toml")).unwrap();

    let since = Instant::now();
    docker(&["stop", "-t", "10", &container]);
    let took = since.elapsed();
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &container]);
    eprintln!("docker stop took {took:?}; exit code {}", code.trim());
    let report = assert_whole_reports_interrupted_by(out.path(), "SIGTERM");
    assert_eq!(
        report["steady_total"]["requests"],
        ANSWERED,
        "{}",
        logs(&container)
    );
    server.abort();
}
