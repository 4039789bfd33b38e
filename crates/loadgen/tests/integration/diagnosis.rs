//! Each planted bottleneck in the testbed, found first and with its evidence, with the monitor
//! watching the testbed's own PostgreSQL database and Redis queue; and a healthy run with no
//! false finding.

use crate::support::{fixtures, scenario};

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use sqlx::{Connection, Executor};
use test_support::{fresh_database, redis_url};

/// A testbed on a fresh database and queue, planted by `tweak`; returns it, the database URL
/// and the queue name.
async fn planted(tweak: impl FnOnce(&mut testbed::Config)) -> (testbed::Testbed, String, String) {
    let database = fresh_database().await;
    let queue = format!("celery-{}", uuid::Uuid::new_v4().simple());
    let mut config = testbed::Config::for_tests();
    config.database_url = Some(database.clone());
    config.redis_url = Some(format!("{}/1", redis_url()));
    config.queue_name = queue.clone();
    config.job_seconds = Duration::from_millis(200);
    tweak(&mut config);
    (testbed::start(config).await.unwrap(), database, queue)
}

/// Runs loadgen with the monitor on the testbed's database and queue; returns the JSON report.
async fn diagnose(
    testbed: &testbed::Testbed,
    database: &str,
    queue: &str,
    args: &[&str],
) -> (ExitCode, Value) {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("report.json");
    let mut argv: Vec<String> = [
        "loadgen",
        "-H",
        &testbed.base_url(),
        "--fixtures",
        &fixtures().display().to_string(),
        "--monitor-postgres",
        database,
        "--monitor-redis",
        &redis_url(),
        "--monitor-redis-queue",
        &format!("1/{queue}"),
        "--only-summary",
        "--threads",
        "1",
        "--json",
        &json.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let code = loadgen::run(loadgen::cli::Cli::try_parse_from(argv).unwrap()).await;
    (
        code,
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap(),
    )
}

fn findings(report: &Value) -> Vec<(String, String)> {
    report["analysis"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().to_owned(),
                f["evidence"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_with_slow_queries_is_found_as_pool_queueing() {
    let (testbed, database, queue) = planted(|c| {
        c.db_pool = 1;
        c.slow = vec!["/api/v1/tasks:120".parse().unwrap()];
    })
    .await;
    let (_, report) = diagnose(
        &testbed,
        &database,
        &queue,
        &[
            "-f",
            &scenario("reads.toml"),
            "-u",
            "8",
            "-r",
            "8",
            "-t",
            "8s",
        ],
    )
    .await;
    let found = findings(&report);
    assert_eq!(
        found[0].0, "Requests queue for a small database pool",
        "{found:#?}"
    );
    assert!(
        found[0].1.contains("at most 1 active backend"),
        "{}",
        found[0].1
    );
    assert!(!report["backend"].as_array().unwrap().is_empty());
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_another_session_is_found() {
    let (testbed, database, queue) = planted(|_| {}).await;
    let mut holder = sqlx::PgConnection::connect(&database).await.unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        holder
            .execute("BEGIN; LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        holder.execute("COMMIT").await.unwrap();
    });
    let (_, report) = diagnose(
        &testbed,
        &database,
        &queue,
        &[
            "-f",
            &scenario("reads.toml"),
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "9s",
        ],
    )
    .await;
    release.await.unwrap();
    let found = findings(&report);
    assert_eq!(
        found[0].0, "PostgreSQL backends wait on locks",
        "{found:#?}"
    );
    assert!(found[0].1.contains("blocked"), "{}", found[0].1);
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_job_queue_is_found() {
    let (testbed, database, queue) = planted(|c| {
        c.workers = 1;
        c.job_seconds = Duration::from_secs(3);
    })
    .await;
    let args = [
        "--user-classes",
        "CreateTaskUser",
        "-u",
        "8",
        "-r",
        "8",
        "-t",
        "12s",
        "--job-sample",
        "0",
    ];
    let (_, report) = diagnose(&testbed, &database, &queue, &args).await;
    let found = findings(&report);
    assert_eq!(found[0].0, "The job queue grows", "{found:#?}");
    assert!(found[0].1.contains(&format!("1/{queue}")), "{}", found[0].1);
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_never_finish_are_found() {
    let (testbed, database, queue) = planted(|c| {
        c.workers = 50;
        c.job_mode = testbed::config::JobMode::Hang;
    })
    .await;
    let args = [
        "--user-classes",
        "CreateTaskUser",
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        "8s",
        "--job-sample",
        "1",
    ];
    let (_, report) = diagnose(&testbed, &database, &queue, &args).await;
    let found = findings(&report);
    assert!(found[0].0.ends_with("jobs do not finish"), "{found:#?}");
    assert!(
        found[0]
            .1
            .contains("never reached a final status (0 completed)"),
        "{}",
        found[0].1
    );
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_password_hashing_is_found() {
    // Cost 13: about 0.4 s a hash here, well above the 200 ms average target on any machine.
    let (testbed, database, queue) = planted(|c| c.hash_cost = 13).await;
    let (_, report) = diagnose(
        &testbed,
        &database,
        &queue,
        &[
            "-f",
            &scenario("reads.toml"),
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "5s",
        ],
    )
    .await;
    let found = findings(&report);
    assert_eq!(
        found[0].0, "Costly start-up (authentication, uploads)",
        "{found:#?}"
    );
    assert!(found[0].1.contains("POST /api/v1/auth/"), "{}", found[0].1);
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_run_reports_no_false_finding() {
    let (testbed, database, queue) = planted(|_| {}).await;
    let (code, report) = diagnose(
        &testbed,
        &database,
        &queue,
        &[
            "-f",
            &scenario("reads.toml"),
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "5s",
            "--target",
            "users=3",
        ],
    )
    .await;
    let found = findings(&report);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].0, "No problem found");
    let verdicts: Vec<&str> = report["analysis"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(
        verdicts.contains(&"Host CPU") && verdicts.contains(&"Host network"),
        "{verdicts:?}"
    );
    let _ = code;
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_findings_quote_the_worker_containers_last_log_lines() {
    // A stand-in worker container that logs, as a Celery worker would.
    let worker = test_support::Container::run(
        "lt-worker",
        "echo 'celery@worker ready'; echo 'Task join[42] raised: ffmpeg exited 1'; sleep 60",
    );
    let name = worker.0.clone();

    let (testbed, database, queue) = planted(|c| {
        c.workers = 50;
        c.job_mode = testbed::config::JobMode::Hang;
    })
    .await;
    let selector = format!("name={name}");
    let args = [
        "--user-classes",
        "CreateTaskUser",
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "6s",
        "--job-sample",
        "1",
        "--monitor-docker",
        &selector,
    ];
    let (_, report) = diagnose(&testbed, &database, &queue, &args).await;
    let found = findings(&report);
    let jobs = found
        .iter()
        .find(|(title, _)| title.ends_with("jobs do not finish"))
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert!(
        jobs.1.contains(&format!("last log lines of {name}")),
        "{}",
        jobs.1
    );
    assert!(
        jobs.1.contains("Task join[42] raised: ffmpeg exited 1"),
        "{}",
        jobs.1
    );
    testbed.stop().await;
}
