//! The demo, the README's main job, run as the user runs it: on the in-memory store (a planted
//! rate limit) and on the real PostgreSQL and Redis (a planted pool of one connection).

#![allow(clippy::unwrap_used)]
// A test is a scenario read top to bottom; the 100-line bar is for the product's functions.
#![allow(clippy::too_many_lines)]

use std::process::Command;

fn demo(args: &[&str], services: bool) -> (String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("demo.html");
    let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen-demo"));
    command
        .args(args)
        .arg("--html")
        .arg(&html)
        .current_dir(dir.path());
    if services {
        command
            .env("DATABASE_URL", test_support::postgres_admin_url())
            .env("REDIS_URL", test_support::redis_url());
    } else {
        command.env_remove("DATABASE_URL").env_remove("REDIS_URL");
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // 0 or 1 (a target missed, as planted); 2 would be an error of the tool.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "{stdout}{stderr}"
    );
    // What the user's terminal shows: the demo's lines on stdout, the run's log and tables on
    // stderr (where Locust prints its own).
    (format!("{stdout}{stderr}"), html, dir)
}

/// The findings section of the console summary.
fn recommendations(stdout: &str) -> &str {
    let at = stdout
        .find("OPTIMIZATION RECOMMENDATIONS")
        .unwrap_or_else(|| panic!("{stdout}"));
    &stdout[at..]
}

#[test]
fn in_memory_the_demo_plants_a_rate_limit_and_finds_it() {
    let (stdout, html, _dir) = demo(&["-u", "10", "-t", "8s"], false);
    assert!(stdout.contains("the in-memory store"), "{stdout}");
    assert!(
        stdout.contains("planted bottleneck: the real API's default rate limit"),
        "{stdout}"
    );
    assert!(
        recommendations(&stdout).contains("[CRITICAL] Rate limiting"),
        "{stdout}"
    );
    assert!(
        std::fs::read_to_string(&html)
            .unwrap()
            .contains("Rate limiting")
    );
}

#[test]
fn on_postgres_the_demo_plants_a_small_pool_and_finds_it() {
    let (stdout, html, _dir) = demo(&["-u", "30", "-t", "15s"], true);
    assert!(
        stdout.contains("using PostgreSQL (database loadgen_demo_"),
        "{stdout}"
    );
    assert!(
        stdout.contains("planted bottleneck: a database pool of 1"),
        "{stdout}"
    );
    assert!(
        recommendations(&stdout).contains("Requests wait for the API's database pool"),
        "{stdout}"
    );
    // The password of the admin URL never reaches the output.
    let admin = test_support::postgres_admin_url();
    let password = url::Url::parse(&admin)
        .unwrap()
        .password()
        .unwrap()
        .to_owned();
    assert!(!stdout.contains(&password), "{stdout}");
    assert!(html.exists());
}
