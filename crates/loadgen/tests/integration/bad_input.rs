//! Input that used to be accepted without a word, or to crash: each is refused with one line
//! that names what to change (or, for `--threads`, capped with a warning), through the binary
//! a user runs.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use loadgen::cli::Cli;
use test_support::start_in_memory;

use crate::support::scenario;

/// The binary with `args`: (exit code, stderr). Bounded: a command that should refuse at once
/// and runs instead fails the test rather than hanging it.
async fn loadgen(args: &[&str]) -> (Option<i32>, String) {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("loadgen {args:?} ended within 2 minutes"))
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The first line of an error: clap adds a usage tip under its own.
fn first_line(stderr: &str) -> &str {
    stderr.lines().next().unwrap_or("")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_are_capped_at_what_the_machine_and_the_users_can_use() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let reads = scenario("reads.toml");
    let resolved = |extra: &[&str]| {
        let mut args = vec![
            "loadgen",
            "--headless",
            "-H",
            "http://127.0.0.1:9",
            "-f",
            &reads,
        ];
        args.extend(extra);
        Cli::try_parse_from(args)
            .unwrap()
            .resolve()
            .unwrap()
            .load
            .threads
    };
    assert_eq!(resolved(&["--threads", "100000", "-u", "1"]), 1);
    let many = resolved(&["--threads", "100000", "-u", "100000"]);
    assert_eq!(many, cores * loadgen::config::THREADS_PER_CORE);
    assert_eq!(resolved(&["--threads", "2", "-u", "10"]), 2);

    // The run that aborted on its stack guard page: it runs, and says what it did.
    let testbed = start_in_memory(|_| {}).await;
    let (code, stderr) = loadgen(&[
        "--headless",
        "-H",
        &testbed.base_url(),
        "-f",
        &scenario("reads.toml"),
        "-u",
        "1",
        "-t",
        "2s",
        "--only-summary",
        "--threads",
        "100000",
    ])
    .await;
    assert!(matches!(code, Some(0 | 1)), "exit {code:?}: {stderr}");
    assert!(
        stderr.contains("--threads 100000: capped at 1: no more than the users (1)"),
        "{stderr}"
    );
    assert!(testbed.requests_answered() > 0);
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_out_of_range_or_naming_nothing_are_refused_in_one_line() {
    let reads = scenario("reads.toml");
    let base = [
        "--headless",
        "--dry-run",
        "-H",
        "http://127.0.0.1:9",
        "-f",
        &reads,
    ];
    for (flags, expected) in [
        (
            &["--target", "failure=200%"][..],
            "a failure share is a percentage from 0 to 100",
        ),
        (
            &["--target", "failure=-1%"][..],
            "not a valid failure target",
        ),
        (
            &["--monitor-postgres", "notaurl"][..],
            "--monitor-postgres <unparsable URL>: not a PostgreSQL URL",
        ),
        (
            &["--monitor-postgres", "redis://127.0.0.1:6379"][..],
            "not a PostgreSQL URL",
        ),
        (
            &["--monitor-redis", "notaurl"][..],
            "--monitor-redis <unparsable URL>: not a Redis URL",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend(flags);
        let (code, stderr) = loadgen(&args).await;
        assert_eq!(code, Some(2), "{flags:?}: {stderr}");
        assert!(
            first_line(&stderr).contains(expected),
            "{flags:?}: {stderr}"
        );
    }
    // A password in a URL that is refused stays out of the message.
    let mut args = base.to_vec();
    args.extend([
        "--monitor-postgres",
        "postgresql://u:hunter2@127.0.0.1:notaport/db",
    ]);
    let (code, stderr) = loadgen(&args).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    // What is valid still passes.
    let mut args = base.to_vec();
    args.extend([
        "--target",
        "failure=100%",
        "--monitor-postgres",
        "postgres://u:p@127.0.0.1:5432/db",
        "--monitor-redis",
        "redis://127.0.0.1:6379/1",
    ]);
    let (code, stderr) = loadgen(&args).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_type_of_weight_0_never_runs_and_cannot_be_all_there_is() {
    let dir = tempfile::tempdir().unwrap();
    let only_zero = write(
        dir.path(),
        "zero.toml",
        "[[users]]\nname = 'Idle'\nweight = 0\n\n[[users.tasks]]\nrun = ['health']\n\n\
         [users.steps.health]\npath = '/api/v1/health/'\n",
    );
    for args in [
        vec!["scenario", "check", &only_zero],
        vec![
            "--headless",
            "--dry-run",
            "-H",
            "http://127.0.0.1:9",
            "-f",
            &only_zero,
        ],
    ] {
        let (code, stderr) = loadgen(&args).await;
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(
            first_line(&stderr).contains("every user type to run (Idle) has weight 0"),
            "{args:?}: {stderr}"
        );
    }

    // Beside a type that runs, a type of weight 0 sends nothing.
    let mixed = write(
        dir.path(),
        "mixed.toml",
        "[[users]]\nname = 'Reader'\nwait = { constant = '50ms' }\n\n\
         [[users.tasks]]\nrun = ['health']\n\n[users.steps.health]\npath = '/api/v1/health/'\n\n\
         [[users]]\nname = 'Idle'\nweight = 0\nwait = { constant = '50ms' }\n\n\
         [[users.tasks]]\nrun = ['missing']\n\n\
         [users.steps.missing]\npath = '/api/v1/health/?idle'\nname = 'idle'\n",
    );
    let testbed = start_in_memory(|_| {}).await;
    let json = dir.path().join("report.json");
    let (code, stderr) = loadgen(&[
        "--headless",
        "-H",
        &testbed.base_url(),
        "-f",
        &mixed,
        "-u",
        "4",
        "-r",
        "100",
        "-t",
        "2s",
        "--only-summary",
        "--report-json",
        json.to_str().unwrap(),
    ])
    .await;
    assert!(matches!(code, Some(0 | 1)), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let text = report.to_string();
    assert!(
        report["steady_total"]["requests"].as_u64().unwrap() > 10,
        "{text}"
    );
    assert!(!text.contains("\"idle\""), "the weight-0 type ran: {text}");
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_check_names_a_variable_that_is_read_and_never_set() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "unset.toml",
        "[[users]]\nname = 'Poller'\n\n[[users.tasks]]\nrun = ['create', 'poll']\n\n\
         [users.steps.create]\nmethod = 'POST'\npath = '/api/v1/tasks/'\n\
         extract = { task = 'id' }\n\n\
         [users.steps.poll]\npath = '/api/v1/tasks/${task_id}'\n",
    );
    let (code, stderr) = loadgen(&["scenario", "check", &file]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr
            .contains("user type `Poller`: step `poll`: path reads ${task_id}, which nothing sets")
            && stderr.contains("(set: task)"),
        "{stderr}"
    );
    // Fixed, the file passes.
    let fixed = write(
        dir.path(),
        "fixed.toml",
        &std::fs::read_to_string(&file)
            .unwrap()
            .replace("${task_id}", "${task}"),
    );
    let (code, stderr) = loadgen(&["scenario", "check", &fixed]).await;
    assert_eq!(code, Some(0), "{stderr}");
}
