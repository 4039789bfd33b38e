//! A real Celery worker (from the venv `TESTBED_PY_VENV` names) on the test Redis, running
//! `tests/fixtures/celery/failing_handler.py`: its `audio_overlay` task fails inside its own
//! error handler, with a SQL literal, a bound parameter and a URL's password in the message.
//! loadgen watches that Redis database (`--monitor-redis-queue DB/failing_handler`) and reads the worker's log file
//! (`--worker-log`) while the testbed's audio-overlay jobs stay `processing`: the monitor's
//! samples carry the failures read from the result backend, the log gives the same failure, and
//! the jobs finding names the exception, the handler's frame, and no secret.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use monitor::sample::Values;

use crate::diagnosis::{finish, found, planted, polls, start, until_figures};
use crate::support::{scenario, until};

/// The app's queue (`task_default_queue` in the fixture).
const CELERY_QUEUE: &str = "failing_handler";

/// The secrets the task's message carries.
const SECRETS: [&str; 3] = ["s3cr3t-literal", "secret-param-42", "hunter2pass"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/celery")
}

fn venv() -> PathBuf {
    PathBuf::from(std::env::var("TESTBED_PY_VENV").expect(
        "TESTBED_PY_VENV is not set: this test needs the Python venv; run it with scripts/test.sh \
         (or export TESTBED_PY_VENV=$(scripts/python-venv.sh))",
    ))
}

/// A Celery worker (one process: the solo pool), killed by its pid when dropped.
struct Worker(Child);

impl Worker {
    fn start(broker: &str, log: &Path) -> Self {
        let child = Command::new(venv().join("bin/celery"))
            .args(["-A", "failing_handler", "worker", "--pool=solo"])
            .args(["--without-mingle", "--without-gossip", "--loglevel=INFO"])
            .arg(format!("--logfile={}", log.display()))
            .current_dir(fixtures())
            .env("CELERY_REDIS_URL", broker)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the venv's celery starts");
        Self(child)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (60 s at most, a bound only) until `log` holds `text`.
async fn until_logged(log: &Path, text: &str) {
    let wait = async {
        while !std::fs::read_to_string(log).is_ok_and(|l| l.contains(text)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{text:?} not in the worker's log within 60 s: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
}

/// The failures and results by status of the ticks' Celery values.
fn celery_of(ticks: &[monitor::sample::Tick]) -> (Vec<monitor::celery::TaskFailure>, u64, u64) {
    let mut failures = Vec::new();
    let (mut failed, mut succeeded) = (0, 0);
    for tick in ticks {
        if let Some(Values::Redis(r)) = tick.sources.get("redis").and_then(|s| s.values.as_ref()) {
            failures.extend(r.celery.failures.iter().cloned());
            for by_status in r.celery.tasks.values() {
                failed += by_status.get("FAILURE").copied().unwrap_or(0);
                succeeded += by_status.get("SUCCESS").copied().unwrap_or(0);
            }
        }
    }
    (failures, failed, succeeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_celery_task_failing_in_its_error_handler_is_named_with_its_frame() {
    let _heavy = crate::support::HEAVY.lock().await;
    // A db of its own, held as the Python stacks hold theirs: another test's monitor watching
    // db 0 or 1 would count this app's failures as its own.
    let db = test_support::python_stack::ClaimedRedisDb::claim();
    let broker = db.url();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("celery.log");
    let _worker = Worker::start(&broker, &log);
    until_logged(&log, " ready.").await;

    let (testbed, database, queue) = planted(|c| {
        c.job_modes_by_type = vec!["audio_overlay=stuck".parse().unwrap()];
    })
    .await;
    let log_arg = log.display().to_string();
    let celery_queue = format!("{}/{CELERY_QUEUE}", db.0);
    let args = [
        "-f",
        &scenario("jobs.toml"),
        "-u",
        "4",
        "-r",
        "4",
        "--job-sample",
        "1",
        "--worker-log",
        &log_arg,
        // The Celery app's queue: its database is watched, results and all.
        "--monitor-redis-queue",
        &celery_queue,
    ];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    // The monitor has started: results made from now on are the run's.
    until(&handle, |u| u.elapsed >= Duration::from_secs(1)).await;
    let sent = Command::new(venv().join("bin/python"))
        .args(["enqueue.py", "5"])
        .current_dir(fixtures())
        .env("CELERY_REDIS_URL", &broker)
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "enqueue.py: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    // The monitor reads the 5 failures from the result backend.
    let read = async {
        while celery_of(&handle.backend_so_far()).1 < 5 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("5 failures read: {:?}", celery_of(&handle.backend_so_far())));
    // The testbed's audio overlays stay processing while joins complete, as in
    // `a_job_type_the_workers_fail_on_silently_is_told_from_too_few_workers`.
    until_figures(&handle, "joins complete", |s| {
        s.jobs.iter().any(|j| j.job == "join" && j.completed >= 3)
    })
    .await;
    until(&handle, |u| u.second.jobs_in_flight >= 3).await;
    let before = polls(&handle.snapshot().await);
    until_figures(&handle, "the jobs are polled", |s| polls(s) >= before + 10).await;
    let (outcome, analysis) = finish(handle, &config).await;

    // The samples: each result counted once, the failures typed and redacted.
    let (failures, failed, succeeded) = celery_of(&outcome.backend);
    assert_eq!((failed, succeeded), (5, 5), "{failures:#?}");
    assert_eq!(failures.iter().map(|f| f.count).sum::<u64>(), 5);
    for failure in &failures {
        assert_eq!(
            (failure.task.as_str(), failure.exception.as_str()),
            ("app.worker.audio_overlay", "SessionBroken")
        );
        let frame = failure.frame.clone().unwrap_or_default();
        assert_eq!(
            (frame.function.as_str(), failure.while_handling.as_deref()),
            ("mark_failed", Some("MixError")),
            "{failure:#?}"
        );
    }
    // The log file gives the same failure.
    let from_log = &outcome.task_failures[&log_arg];
    assert_eq!(from_log.len(), 1, "{from_log:#?}");
    assert_eq!(
        monitor::celery::TaskFailure {
            count: 1,
            ..from_log[0].clone()
        },
        monitor::celery::TaskFailure {
            count: 1,
            ..failures[0].clone()
        }
    );

    // The finding: the exception, the handler's frame, what to fix; the top jobs finding.
    let finding = found(&analysis, "jobs.unfinished");
    let raise_line = std::fs::read_to_string(fixtures().join("failing_handler.py"))
        .unwrap()
        .lines()
        .position(|l| l.contains("raise SessionBroken("))
        .unwrap()
        + 1;
    assert_eq!(
        finding.title,
        "audio_overlay tasks FAILED in Celery with SessionBroken while the API still shows processing: the task's error handler fails"
    );
    assert!(
        finding
            .evidence
            .contains(&format!("(last frame celery/failing_handler.py:{raise_line} in `mark_failed`, raised while handling MixError) [read from Celery's result backend, "))
            && finding.evidence.contains(&log_arg),
        "{}",
        finding.evidence
    );
    assert!(
        finding
            .action
            .starts_with("The task's error handler fails: `mark_failed`"),
        "{}",
        finding.action
    );
    let first_jobs = analysis
        .findings
        .iter()
        .find(|f| f.layer == loadgen::diagnosis::Layer::Jobs)
        .map(|f| f.rule);
    assert_eq!(
        first_jobs,
        Some("jobs.unfinished"),
        "{:#?}",
        analysis.findings
    );
    // No secret in the samples, the findings nor the reports.
    let report = loadgen::report::Report::of_run(&config, &outcome);
    let everything = format!(
        "{}{}{}{}",
        serde_json::to_string(&outcome.backend).unwrap(),
        serde_json::to_string(&report).unwrap(),
        loadgen::report::markdown::render(&report),
        loadgen::report::html::render(&report),
    );
    for secret in SECRETS {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    testbed.stop().await;
}

/// The line of `testbed-py/app/worker.py` where the planted error handler commits on the failed
/// session (the `session.commit()` after the plant's comment).
fn planted_commit_line() -> usize {
    let source =
        std::fs::read_to_string(test_support::python_stack::project_dir().join("app/worker.py"))
            .unwrap();
    let lines: Vec<&str> = source.lines().collect();
    let comment = lines
        .iter()
        .position(|l| l.contains("this raises PendingRollbackError"))
        .expect("the plant's comment in app/worker.py");
    comment
        + lines[comment..]
            .iter()
            .position(|l| l.trim() == "session.commit()")
            .expect("the plant's commit")
        + 1
}

/// loadgen on the Python stack: `jobs.toml` by 4 users, every job followed, the monitor on the
/// stack's Redis db and its worker's log; bounded at 3 minutes, stopped by the test.
async fn run_on(
    stack: &test_support::PythonStack,
) -> (loadgen::engine::RunHandle, loadgen::config::RunConfig) {
    let worker_log = stack.worker_log_path().display().to_string();
    let argv = [
        "loadgen",
        "-H",
        &stack.base_url(),
        "--fixtures",
        &crate::support::fixtures().display().to_string(),
        "-f",
        &scenario("jobs.toml"),
        "-u",
        "4",
        "-r",
        "4",
        "--job-sample",
        "1",
        "--monitor-redis",
        &stack.redis_url(),
        "--worker-log",
        &worker_log,
        "--threads",
        "1",
        "-t",
        "3m",
    ];
    let config = loadgen::cli::Cli::try_parse_from(argv)
        .unwrap()
        .resolve()
        .unwrap();
    (loadgen::engine::Run::start(&config).await.unwrap(), config)
}

/// End to end on the Python reference stack with `PLANT_FAILING_ERROR_HANDLER=1`: its
/// audio-overlay task's output fails to flush, and the `except` block commits on the failed
/// session, so Celery records PendingRollbackError while the API shows the job `processing`.
/// loadgen, watching the stack's Redis db (`--monitor-redis`) and its worker's log
/// (`--worker-log`), names the exception, the handler's line in `app/worker.py` and what it was
/// handling in the top jobs finding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_stacks_failing_error_handler_is_named_with_its_line() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = test_support::PythonStack::start(&[
        ("PLANT_FAILING_ERROR_HANDLER", "1"),
        ("BCRYPT_ROUNDS", "10"),
    ])
    .await;
    let worker_log = stack.worker_log_path().display().to_string();
    let (handle, config) = run_on(&stack).await;
    // Celery records the failures; joins complete on the same workers; overlays stay processing.
    let read = async {
        while celery_of(&handle.backend_so_far()).1 < 3 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(150), read)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "3 failures read in 150 s: {:?}\n{}",
                celery_of(&handle.backend_so_far()),
                stack.logs()
            )
        });
    until_figures(&handle, "joins complete", |s| {
        s.jobs.iter().any(|j| j.job == "join" && j.completed >= 3)
    })
    .await;
    let before = polls(&handle.snapshot().await);
    until_figures(&handle, "the jobs are polled", |s| polls(s) >= before + 10).await;
    let (outcome, analysis) = finish(handle, &config).await;

    let overlay = &outcome.stats.jobs["audio_overlay"];
    assert!(
        overlay.completed == 0 && overlay.last_statuses.contains_key("processing"),
        "{overlay:?}"
    );
    let finding = analysis
        .findings
        .iter()
        .find(|f| f.layer == loadgen::diagnosis::Layer::Jobs)
        .unwrap_or_else(|| panic!("no jobs finding in {:#?}", analysis.findings));
    assert_eq!(finding.rule, "jobs.unfinished", "{:#?}", analysis.findings);
    assert_eq!(
        finding.title,
        "audio_overlay tasks FAILED in Celery with PendingRollbackError while the API still shows processing: the task's error handler fails"
    );
    let frame = format!(
        "(last frame app/worker.py:{} in `audio_overlay`, raised while handling IntegrityError) [read from Celery's result backend, {worker_log}]",
        planted_commit_line()
    );
    assert!(
        finding.evidence.contains(&frame),
        "{frame} not in: {}",
        finding.evidence
    );
    assert!(
        finding.action.contains("session.rollback()"),
        "{}",
        finding.action
    );
    eprintln!(
        "python stack: {}\n{}\n{}",
        finding.title, finding.evidence, finding.action
    );
}

/// The third source: a watched worker container's logs. A stand-in container named as a worker
/// prints the log a real Celery worker wrote (`monitor`'s captured `worker.log`) while the
/// testbed's audio-overlay jobs stay processing: the finding quotes the failure read from the
/// container, with its frame, and no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_containers_log_gives_the_same_failure() {
    let _heavy = crate::support::HEAVY.lock().await;
    let captured = include_str!("../../../monitor/src/celery/testdata/worker.log");
    let worker = test_support::Container::run(
        "lt-celery-worker",
        &format!("cat <<'LOG'\n{captured}\nLOG\nsleep 120"),
    );
    let name = worker.0.clone();
    let (testbed, database, queue) = planted(|c| {
        c.job_modes_by_type = vec!["audio_overlay=stuck".parse().unwrap()];
    })
    .await;
    let selector = format!("name={name}");
    let (outcome, analysis) = crate::diagnosis::stuck_overlays(
        &testbed,
        &database,
        &queue,
        &["--monitor-docker", &selector],
        0,
    )
    .await;
    let from_container = outcome
        .task_failures
        .get(&name)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        from_container
            .iter()
            .map(|f| (f.exception.as_str(), f.count))
            .collect::<Vec<_>>(),
        [("SessionBroken", 2)],
        "{:#?}",
        outcome.task_failures
    );
    let finding = found(&analysis, "jobs.unfinished");
    assert_eq!(
        finding.title,
        "audio_overlay tasks FAILED in Celery with SessionBroken while the API still shows processing: the task's error handler fails"
    );
    assert!(
        finding.evidence.contains(&format!(
            "(last frame celery/failing_handler.py:31 in `mark_failed`, raised while handling MixError) [read from {name}]"
        )),
        "{}",
        finding.evidence
    );
    let everything = serde_json::to_string(&analysis.findings).unwrap();
    for secret in SECRETS {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
    testbed.stop().await;
}

/// The healthy Python stack, watched the same way: Celery's results are read (every task
/// succeeds) and no jobs finding blames anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthy_python_stack_has_no_task_failure_to_blame() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = test_support::PythonStack::start(&[("BCRYPT_ROUNDS", "10")]).await;
    let (handle, config) = run_on(&stack).await;
    until_figures(&handle, "jobs of both types complete", |s| {
        ["join", "audio_overlay"]
            .iter()
            .all(|kind| s.jobs.iter().any(|j| j.job == *kind && j.completed >= 3))
    })
    .await;
    // The monitor reads their results.
    let read = async {
        while celery_of(&handle.backend_so_far()).2 < 6 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("6 results read: {:?}", celery_of(&handle.backend_so_far())));
    let (outcome, analysis) = finish(handle, &config).await;
    let (failures, failed, succeeded) = celery_of(&outcome.backend);
    assert!(
        failures.is_empty() && failed == 0 && succeeded >= 6,
        "{failed} failed, {succeeded} succeeded: {failures:#?}"
    );
    let blamed: Vec<_> = analysis
        .findings
        .iter()
        .filter(|f| {
            // Jobs the run ended before reading (`jobs.unknown`) are information, no blame.
            f.layer == loadgen::diagnosis::Layer::Jobs
                && f.severity != loadgen::diagnosis::Severity::Info
        })
        .collect();
    assert!(blamed.is_empty(), "{blamed:#?}");
}
