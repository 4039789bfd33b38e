//! loadgen as PID 1 in its FROM-scratch image (built by `docker/build.sh`): `docker stop` sends
//! SIGTERM, and the run stops and writes its reports instead of being killed 10 s later with
//! nothing written.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use test_support::start_in_memory;

use crate::support::scenario;

/// Removes the container and the image, whatever the test's outcome.
struct Cleanup {
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.container])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

fn docker(args: &[&str]) -> String {
    let output = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_stop_keeps_the_run_of_loadgen_as_pid_1() {
    let tag = format!("signals-{}", std::process::id());
    let image = format!("loadtest/loadgen:{tag}");
    let container = format!("loadgen-signals-{}", std::process::id());
    let _cleanup = Cleanup {
        container: container.clone(),
        image: image.clone(),
    };
    // The image of this test's own build, by the script users run.
    let binary = Path::new(env!("CARGO_BIN_EXE_loadgen"));
    let built = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/build.sh"))
        .arg(&tag)
        .env("LOADTEST_BIN_DIR", binary.parent().unwrap())
        .env("LOADTEST_IMAGES", "loadgen")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "docker/build.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );

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
        &image,
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let logs = docker(&["logs", &container]);
        let flowing = logs.lines().any(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some("Aggregated")
                && words
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
        });
        if flowing {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no requests: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Were SIGTERM ignored, docker would kill it after 60 s, with exit code 137.
    docker(&["stop", "-t", "60", &container]);
    let code = docker(&["inspect", "-f", "{{.State.ExitCode}}", &container]);
    assert_eq!(code.trim(), "0", "{}", docker(&["logs", &container]));
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true);
    assert!(report["steady_total"]["requests"].as_u64().unwrap() > 0);
    assert!(out.path().join("run_stats.csv").exists());
    testbed.stop().await;
}
