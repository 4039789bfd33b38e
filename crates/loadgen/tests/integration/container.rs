//! loadgen as PID 1 in its FROM-scratch image (built by `docker/build.sh`): `docker stop` sends
//! SIGTERM, and the run stops and writes its reports instead of being killed 10 s later with
//! nothing written.

use serde_json::Value;
use test_support::start_in_memory;

use crate::docker::{Images, docker, docker_output, logs, until_logged};
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
        "--json",
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
