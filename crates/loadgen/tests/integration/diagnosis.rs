//! Each planted bottleneck in the testbed found with its evidence, and ranked before the
//! symptoms it explains, with the monitor watching the testbed's own PostgreSQL database and
//! Redis queue; and a healthy run with no false finding. Runs go through the engine and stop on
//! an event (enough requests, the lock released, the queue grown), never after a fixed time, and
//! no assertion depends on this machine's speed: a busy machine may add findings of its own
//! (the host's CPU, the load generator), never remove the planted one.

use std::time::Duration;

use clap::Parser;
use loadgen::diagnosis::{Finding, Layer, Severity};
use loadgen::engine::{Run, RunHandle, RunOutcome, Update};
use loadgen::report::Analysis;
use loadgen::stats::Phase;
use sqlx::{Connection, Executor};
use test_support::{fresh_database, redis_url};

use crate::support::{fixtures, scenario, until};

/// A testbed on a fresh database and queue, planted by `tweak`; returns it, the database URL
/// and the queue name.
pub(crate) async fn planted(
    tweak: impl FnOnce(&mut testbed::Config),
) -> (testbed::Testbed, String, String) {
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

/// Starts loadgen with `args` and the monitor on the testbed's database and queue. The run is
/// bounded at 3 minutes; tests stop it on an event long before.
pub(crate) async fn start(
    testbed: &testbed::Testbed,
    database: &str,
    queue: &str,
    args: &[&str],
) -> (RunHandle, loadgen::config::RunConfig) {
    watching(testbed, database, queue, args).await
}

/// The same, with the monitor's PostgreSQL URL `watched` (another database of the server).
pub(crate) async fn watching(
    testbed: &testbed::Testbed,
    watched: &str,
    queue: &str,
    args: &[&str],
) -> (RunHandle, loadgen::config::RunConfig) {
    start_at(&testbed.base_url(), watched, queue, args).await
}

/// Starts loadgen on the API at `base_url` with `args` and the monitor on PostgreSQL's
/// `database` and the Redis queue `1/queue`, bounded at 3 minutes.
pub(crate) async fn start_at(
    base_url: &str,
    database: &str,
    queue: &str,
    args: &[&str],
) -> (RunHandle, loadgen::config::RunConfig) {
    let mut argv: Vec<String> = [
        "loadgen",
        "-H",
        base_url,
        "--fixtures",
        &fixtures().display().to_string(),
        "--monitor-postgres",
        database,
        "--monitor-redis",
        &redis_url(),
        "--monitor-redis-queue",
        &format!("1/{queue}"),
        "--threads",
        "1",
        "-t",
        "3m",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let config = loadgen::cli::Cli::try_parse_from(argv)
        .unwrap()
        .resolve()
        .unwrap();
    (Run::start(&config).await.unwrap(), config)
}

/// Waits (170 s at most, a bound only, inside the 3-minute run) until the run's figures so far
/// pass `wanted`: on a host loaded 5 times over, a planted hash queue takes a minute.
pub(crate) async fn until_figures(
    handle: &RunHandle,
    what: &str,
    wanted: impl Fn(&loadgen::stats::StatsSnapshot) -> bool,
) {
    let wait = async {
        while !wanted(&handle.snapshot().await) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(170), wait)
        .await
        .unwrap_or_else(|_| panic!("{what} within 170 s"));
}

/// Waits for the first update that passes `wanted`, then for `secs` seconds of the run more
/// (as updates tell them: monitor samples of that state to judge).
pub(crate) async fn until_then_for(
    handle: &RunHandle,
    wanted: impl Fn(&Update) -> bool,
    secs: u64,
) {
    until(handle, wanted).await;
    let from = handle.subscribe().borrow().as_ref().map(|u| u.elapsed);
    until(handle, |u| {
        from.is_some_and(|s| u.elapsed >= s + Duration::from_secs(secs))
    })
    .await;
}

/// Requests of `phase` so far.
pub(crate) fn phase_count(snapshot: &loadgen::stats::StatsSnapshot, phase: Phase) -> u64 {
    snapshot
        .endpoints
        .iter()
        .filter(|e| e.phase == phase)
        .map(|e| e.count)
        .sum()
}

/// Job polls so far.
pub(crate) fn polls(snapshot: &loadgen::stats::StatsSnapshot) -> u64 {
    phase_count(snapshot, Phase::Poll)
}

/// Stops the run and judges it.
pub(crate) async fn finish(
    handle: RunHandle,
    config: &loadgen::config::RunConfig,
) -> (std::sync::Arc<RunOutcome>, Analysis) {
    handle.stop();
    let outcome = handle.wait().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let analysis = Analysis::of(&outcome, &config.targets);
    (outcome, analysis)
}

/// Runs `jobs.toml` (4 users, every job followed, then `extra`) on a testbed whose audio
/// overlays never finish, until joins have completed, 3 jobs are in flight (`min_secs` into the
/// run at least) and 10 more polls went out: the jobs in flight then are polled before any
/// created later, so the polls saw the overlays `processing`.
pub(crate) async fn stuck_overlays(
    testbed: &testbed::Testbed,
    database: &str,
    queue: &str,
    extra: &[&str],
    min_secs: u64,
) -> (std::sync::Arc<RunOutcome>, Analysis) {
    let jobs = scenario("jobs.toml");
    let mut args = vec!["-f", &jobs, "-u", "4", "-r", "4", "--job-sample", "1"];
    args.extend_from_slice(extra);
    let (handle, config) = start(testbed, database, queue, &args).await;
    until_figures(&handle, "joins complete", |s| {
        s.jobs.iter().any(|j| j.job == "join" && j.completed >= 3)
    })
    .await;
    until(&handle, |u| {
        u.second.jobs_in_flight >= 3 && at_least_secs(u, min_secs)
    })
    .await;
    let before = polls(&handle.snapshot().await);
    until_figures(&handle, "the jobs are polled", |s| polls(s) >= before + 10).await;
    finish(handle, &config).await
}

/// The finding of `rule`, which must be there.
pub(crate) fn found<'a>(analysis: &'a Analysis, rule: &str) -> &'a Finding {
    analysis
        .findings
        .iter()
        .find(|f| f.rule == rule)
        .unwrap_or_else(|| panic!("no {rule} finding in {:#?}", analysis.findings))
}

/// Where `rule` ranks, if found.
pub(crate) fn rank(analysis: &Analysis, rule: &str) -> Option<usize> {
    analysis.findings.iter().position(|f| f.rule == rule)
}

/// `cause` is found, and ranked before every symptom it explains that was found too.
pub(crate) fn explains(analysis: &Analysis, cause: &str) {
    let at = rank(analysis, cause)
        .unwrap_or_else(|| panic!("no {cause} finding in {:#?}", analysis.findings));
    for symptom in &found(analysis, cause).cause_of {
        if let Some(later) = rank(analysis, symptom) {
            assert!(
                at < later,
                "{cause} must come before {symptom}: {:#?}",
                analysis.findings
            );
        }
    }
}

/// Seconds with a backend sample, so that rules over the ticks have enough of them.
pub(crate) fn at_least_secs(update: &Update, secs: u64) -> bool {
    update.elapsed >= Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_one_with_slow_queries_is_found_as_pool_queueing() {
    let (testbed, database, queue) = planted(|c| {
        c.db_pool = 1;
        // 300 ms per query on one connection: 8 users queue whatever the machine's speed.
        c.slow = vec!["/api/v1/tasks:300".parse().unwrap()];
    })
    .await;
    let args = ["-f", &scenario("reads.toml"), "-u", "8", "-r", "8"];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    until(&handle, |u| {
        u.users == 8 && at_least_secs(u, 6) && u.second.cumulative.requests >= 40
    })
    .await;
    let (outcome, analysis) = finish(handle, &config).await;
    let pool = found(&analysis, "postgres.pool_exhausted");
    assert!(
        pool.evidence.contains(&format!(
            "database {},",
            database.rsplit('/').next().unwrap()
        )) && pool.evidence.contains("stayed at 1 in"),
        "{}",
        pool.evidence
    );
    explains(&analysis, "postgres.pool_exhausted");
    assert!(!outcome.backend.is_empty());
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_by_another_session_is_found() {
    let (testbed, database, queue) = planted(|_| {}).await;
    let args = ["-f", &scenario("reads.toml"), "-u", "4", "-r", "4"];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    until(&handle, |u| {
        u.users == 4 && u.second.cumulative.requests >= 8
    })
    .await;
    // Hold the lock for 4 monitor ticks while the readers wait on it.
    let mut holder = sqlx::PgConnection::connect(&database).await.unwrap();
    holder
        .execute("BEGIN; LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let locked_at = handle
        .subscribe()
        .borrow()
        .as_ref()
        .map_or(Duration::ZERO, |u| u.elapsed);
    until(&handle, |u| u.elapsed >= locked_at + Duration::from_secs(4)).await;
    holder.execute("COMMIT").await.unwrap();
    let (_, analysis) = finish(handle, &config).await;
    let locks = found(&analysis, "postgres.lock_waits");
    assert!(locks.evidence.contains("blocked"), "{}", locks.evidence);
    eprintln!("lock waits: {}", locks.evidence);
    // The query that waited, by its normalized text: the readers' list of tasks.
    assert!(
        locks.evidence.contains("waiting on the lock: `SELECT") && locks.evidence.contains("tasks"),
        "{}",
        locks.evidence
    );
    explains(&analysis, "postgres.lock_waits");
    assert!(
        rank(&analysis, "postgres.small_pool").is_none(),
        "{:#?}",
        analysis.findings
    );
    testbed.stop().await;
}

/// The length of the Redis list `queue` in db 1.
async fn queue_length(queue: &str) -> i64 {
    let client = redis::Client::open(format!("{}/1", redis_url())).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("LLEN")
        .arg(queue)
        .query_async(&mut connection)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_job_queue_is_found() {
    let (testbed, database, queue) = planted(|c| {
        c.workers = 1;
        c.job_seconds = Duration::from_secs(3);
    })
    .await;
    // Users come one a second: the first jobs find the worker idle (what a job costs), the
    // later ones a queue.
    let args = [
        "--user-classes",
        "CreateTaskUser",
        "-u",
        "8",
        "-r",
        "1",
        "--job-sample",
        "0",
    ];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    // One worker taking 3 s a job against 8 users creating one every 2-5 s: the queue grows
    // about 2 a second; wait until it has grown over many monitor ticks.
    let grown = async {
        while queue_length(&queue).await < 20 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), grown)
        .await
        .expect("the queue grows");
    until(&handle, |u| at_least_secs(u, 5)).await;
    let (_, analysis) = finish(handle, &config).await;
    let grows = found(&analysis, "jobs.queue_grows");
    assert!(
        grows.evidence.contains(&format!("1/{queue}")),
        "{}",
        grows.evidence
    );
    explains(&analysis, "jobs.queue_grows");
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
        "-f",
        &scenario("jobs.toml"),
        "-u",
        "4",
        "-r",
        "4",
        "--job-sample",
        "1",
    ];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    // Six in flight over two job kinds: one kind has three or more, enough to be a finding.
    until(&handle, |u| u.second.jobs_in_flight >= 6).await;
    let (_, analysis) = finish(handle, &config).await;
    let unfinished = found(&analysis, "jobs.unfinished");
    assert!(
        unfinished
            .evidence
            .contains("never reached a final status (0 completed)"),
        "{}",
        unfinished.evidence
    );
    testbed.stop().await;
}

/// A job followed past its track timeout is unfinished with the status it was last seen in,
/// not "unknown: every poll failed" (the polls all succeeded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_past_their_timeout_report_the_status_last_seen() {
    let (testbed, database, queue) = planted(|c| {
        c.workers = 50;
        c.job_mode = testbed::config::JobMode::Hang;
    })
    .await;
    let args = ["-f", &scenario("short_jobs.toml"), "-u", "2", "-r", "2"];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    // The scenario follows each job for 2 s: wait until some have timed out.
    until_figures(&handle, "jobs time out", |s| {
        s.jobs.iter().any(|j| j.unfinished + j.unknown >= 2)
    })
    .await;
    let (outcome, analysis) = finish(handle, &config).await;
    let join = &outcome.stats.jobs["join"];
    assert_eq!(join.unknown, 0, "{join:?}");
    assert!(
        join.failure_messages
            .iter()
            .any(|m| m.starts_with("no final status within 2s (last seen processing)")),
        "{:?}",
        join.failure_messages
    );
    // Each job stuck in "processing" had it about as long as it was followed (2 s): the
    // status and how long it held are counted, apart from the messages.
    let processing = join.last_statuses["processing"];
    assert!(processing.jobs >= 2, "{join:?}");
    assert!(processing.longest_secs >= 1, "{join:?}");
    let unfinished = found(&analysis, "jobs.unfinished");
    assert!(
        unfinished
            .evidence
            .contains("last seen processing, for up to"),
        "{}",
        unfinished.evidence
    );
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_password_hashing_is_found() {
    // Core-bound (bcrypt on a thread pool): beside another such test, the host's CPU, not the
    // hashing, would hold the steady requests up.
    let _core = crate::support::HEAVY.lock().await;
    // bcrypt cost 12 (the real API's): far costlier than a read, on any machine.
    let (testbed, database, queue) = planted(|c| c.hash_cost = 12).await;
    let args = ["-f", &scenario("reads.toml"), "-u", "3", "-r", "3"];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    // Every user registered and logged in, and read a few times since.
    until(&handle, |u| {
        u.users == 3 && u.second.cumulative.requests >= 3 * 2 + 20
    })
    .await;
    let (outcome, analysis) = finish(handle, &config).await;
    let startup = outcome.stats.aggregated(Phase::Startup);
    let steady = outcome.stats.aggregated(Phase::Steady);
    assert!(
        startup.average_ms() >= 5.0 * steady.average_ms(),
        "start-up {:.1} ms vs steady {:.1} ms",
        startup.average_ms(),
        steady.average_ms()
    );
    let costly = found(&analysis, "load.costly_startup");
    assert!(
        costly.evidence.contains("POST /api/v1/auth/"),
        "{}",
        costly.evidence
    );
    // Hashed on a thread pool, the steady requests do not wait behind it.
    assert_eq!(
        costly.title, "Costly start-up (authentication, uploads)",
        "{}",
        costly.evidence
    );
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_run_reports_no_false_finding() {
    let (testbed, database, queue) = planted(|_| {}).await;
    // Latency targets a busy machine cannot miss: this test is about false findings.
    let args = [
        "-f",
        &scenario("reads.toml"),
        "-u",
        "3",
        "-r",
        "3",
        "--target",
        "users=3",
        "--target",
        "p95=10s",
        "--target",
        "p99=20s",
        "--target",
        "avg=5s",
    ];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    until(&handle, |u| {
        u.users == 3 && at_least_secs(u, 5) && u.second.cumulative.requests >= 30
    })
    .await;
    let (_, analysis) = finish(handle, &config).await;
    // Nothing about the stack under test; a busy machine may add its own (host, loadgen). Where
    // the workers' time goes is a profile's information, not a problem: a busy machine slows
    // ffmpeg until the workers run it half of the time (seen at 55 %).
    let false_alarms: Vec<&Finding> = analysis
        .findings
        .iter()
        .filter(|f| !matches!(f.layer, Layer::Host | Layer::LoadGenerator))
        .filter(|f| f.rule != "load.nothing_found")
        .filter(|f| !(f.rule == "profiles.worker_hot" && f.severity == Severity::Info))
        .collect();
    assert!(false_alarms.is_empty(), "{false_alarms:#?}");
    let verdicts: Vec<&str> = analysis.verdicts.iter().map(|v| v.name.as_str()).collect();
    assert!(
        verdicts.contains(&"Host CPU") && verdicts.contains(&"Host network"),
        "{verdicts:?}"
    );
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
        "-f",
        &scenario("jobs.toml"),
        "-u",
        "3",
        "-r",
        "3",
        "--job-sample",
        "1",
        "--monitor-docker",
        &selector,
    ];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    // Six in flight over two job kinds: one kind has three or more, enough to be a finding.
    until(&handle, |u| u.second.jobs_in_flight >= 6).await;
    let (_, analysis) = finish(handle, &config).await;
    let jobs = found(&analysis, "jobs.unfinished");
    assert!(
        jobs.evidence.contains(&format!("last log lines of {name}")),
        "{}",
        jobs.evidence
    );
    assert!(
        jobs.evidence
            .contains("Task join[42] raised: ffmpeg exited 1"),
        "{}",
        jobs.evidence
    );
    testbed.stop().await;
}

/// Slow job polls are loadgen following its jobs, not the users' load: they are a phase of
/// their own, out of the steady state, its latency targets and the slow-endpoint rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_job_polls_stay_apart_from_the_steady_state() {
    let (testbed, database, queue) = planted(|c| {
        c.workers = 50;
        c.job_mode = testbed::config::JobMode::Hang;
        c.slow = vec!["/api/v1/tasks/{id}:900".parse().unwrap()];
        // Each slow poll holds a pool connection for its 900 ms: a pool far larger than the
        // polls in flight, so that they cannot slow the steady requests through it (on a busy
        // machine, more of them are in flight at once).
        c.db_pool = 200;
    })
    .await;
    let args = ["-f", &scenario("short_jobs.toml"), "-u", "2", "-r", "2"];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    until_figures(&handle, "the jobs are polled", |s| polls(s) >= 10).await;
    let (outcome, analysis) = finish(handle, &config).await;
    let polls = outcome.stats.aggregated(Phase::Poll);
    let steady = outcome.stats.aggregated(Phase::Steady);
    let figures = format!(
        "polls: {} with p50 {:.0} ms; steady: {} with p50 {:.0} ms, p95 {:.0} ms; endpoints {:?}",
        polls.count,
        polls.percentile_ms(50.0),
        steady.count,
        steady.percentile_ms(50.0),
        steady.percentile_ms(95.0),
        outcome
            .stats
            .endpoints
            .keys()
            .map(|k| format!("{:?} {} {}", k.phase, k.method, k.name))
            .collect::<Vec<_>>()
    );
    // Half the planted 900 ms at least: polls cut off by the stop count at their age.
    assert!(
        polls.percentile_ms(50.0) >= 450.0,
        "the polls were slow: {figures}"
    );
    assert!(steady.count > 0, "{figures}");
    // Every poll in the poll phase, none among the steady requests.
    assert!(
        outcome
            .stats
            .endpoints
            .keys()
            .all(|k| (k.phase == Phase::Poll) == (k.name.as_ref() == "/api/v1/tasks/[id]")),
        "{figures}"
    );
    assert!(
        steady.percentile_ms(50.0) < polls.percentile_ms(50.0),
        "the steady requests are not slowed by the polls: {figures}"
    );
    assert!(
        !analysis
            .findings
            .iter()
            .any(|f| f.rule == "load.slow_endpoints" && f.evidence.contains("[id]")),
        "{figures}: {:#?}",
        analysis.findings
    );
    testbed.stop().await;
}

/// Planted: the workers raise on audio-overlay jobs before they set the status, and complete
/// join jobs; the worker's log says a task raised. The finding names the type the workers fail
/// on, the exception from the log, the status it stays in, and does not blame the number of
/// workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_type_the_workers_fail_on_silently_is_told_from_too_few_workers() {
    let (testbed, database, queue) = planted(|c| {
        c.job_seconds = Duration::from_millis(200);
        c.job_modes_by_type = vec!["audio_overlay=stuck".parse().unwrap()];
    })
    .await;
    // The worker's log, as a Celery worker writes it to a file.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("celery.log");
    let mut lines: Vec<String> = (0..2000)
        .map(|i| format!("[INFO/ForkPoolWorker-1] Task join[{i}] succeeded in 1.0s"))
        .collect();
    lines.insert(
        1990,
        "[ERROR/ForkPoolWorker-2] Task audio_overlay[77] raised unexpected: KeyError('audio')"
            .into(),
    );
    std::fs::write(&log, lines.join("\n")).unwrap();
    let log = log.display().to_string();
    // Joins complete while audio overlays pile up, followed.
    let (outcome, analysis) =
        stuck_overlays(&testbed, &database, &queue, &["--worker-log", &log], 0).await;
    let overlay = &outcome.stats.jobs["audio_overlay"];
    assert_eq!(overlay.completed, 0, "{overlay:?}");
    assert!(
        overlay.last_statuses.contains_key("processing"),
        "{} unfinished, {:?}, {:?}",
        overlay.unfinished,
        overlay.failure_messages,
        overlay.last_statuses
    );
    let finding = found(&analysis, "jobs.unfinished");
    // The worker's log names the task that raised: the finding says the job is never marked
    // failed, not that workers are lacking.
    assert_eq!(
        finding.title,
        "audio_overlay tasks FAILED in Celery with KeyError while the API still shows processing: nothing marks the job failed"
    );
    assert!(
        finding.evidence.contains("last seen processing")
            && finding
                .evidence
                .contains("other jobs completed on the same workers: join"),
        "{}",
        finding.evidence
    );
    assert!(
        finding
            .action
            .starts_with("The task fails and nothing marks the job failed"),
        "{}",
        finding.action
    );
    // Its error line, out of the last 64 KiB of a longer file, and not the routine ones (its
    // quoted literal replaced, as any may be a secret).
    assert!(
        finding
            .evidence
            .contains("raised unexpected: KeyError('?')")
            && !finding.evidence.contains("succeeded"),
        "{}",
        finding.evidence
    );
    testbed.stop().await;
}

/// Planted: a pool of 2 connections, each request to the task list holding one for 200 ms,
/// and more users than that serves. The monitor watches the server's `postgres` database, as
/// a URL without a database name does: the API's backends show all the same, at their ceiling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_found_from_another_database_of_the_server() {
    let (testbed, database, queue) = planted(|c| {
        c.db_pool = 2;
        c.slow = vec!["/api/v1/tasks:200".parse().unwrap()];
    })
    .await;
    let server = format!(
        "{}/postgres",
        database
            .rsplit_once('/')
            .map_or(database.as_str(), |(base, _)| base)
    );
    let args = ["-f", &scenario("reads.toml"), "-u", "12", "-r", "12"];
    let (handle, config) = watching(&testbed, &server, &queue, &args).await;
    // All users started, and 8 s of monitor samples with them.
    until_then_for(&handle, |u| u.users == 12, 8).await;
    let (outcome, analysis) = finish(handle, &config).await;
    // Every pool of the server is judged (other tests' testbeds may share it): ours is found.
    let name = database.rsplit('/').next().unwrap();
    let ours: Vec<(i64, i64)> = outcome
        .backend
        .iter()
        .filter_map(|t| match t.sources.get("postgres")?.values.as_ref()? {
            monitor::sample::Values::Postgres(p) => Some(
                p.clients
                    .iter()
                    .find(|c| c.database == name)
                    .map_or((0, 0), |c| (c.connections, c.active)),
            ),
            _ => None,
        })
        .collect();
    let pool = analysis
        .findings
        .iter()
        .find(|f| f.rule == "postgres.pool_exhausted" && f.evidence.contains(name))
        .unwrap_or_else(|| {
            panic!(
                "no exhausted pool of {name} (its backends and active ones: {ours:?}) in {:#?}",
                analysis.findings
            )
        });
    assert!(
        pool.evidence.contains("stayed at 2 in"),
        "{}",
        pool.evidence
    );
    // The cause comes before the symptoms it explains.
    explains(&analysis, "postgres.pool_exhausted");
    testbed.stop().await;
}

/// Planted: one event loop that hashes passwords on itself (bcrypt inside `async def` on a
/// single uvicorn worker). While users start, every steady request waits behind the hashing,
/// second by second: the finding says the start-up work blocks the API for everyone, not only
/// that it is costly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_on_the_event_loop_is_found_blocking_everyone() {
    // Cost 13, twice the real API's 12: each hash stays far above the 200 ms average target
    // on a fast machine too (at 12 it came close, and the start-up was not even costly).
    let (testbed, database, queue) = planted(|c| {
        c.hash_cost = 13;
        c.hash_on_event_loop = true;
    })
    .await;
    // One user a second: 8 seconds of start-up beside the users already reading.
    let args = ["-f", &scenario("reads.toml"), "-u", "8", "-r", "1"];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    // Every user through its start-up (on a busy machine, the hashes queue for many seconds
    // on the one event loop)...
    until_figures(&handle, "every user registered and logged in", |s| {
        phase_count(s, Phase::Startup) >= 16
    })
    .await;
    // ...then steady requests with no start-up at all, to compare with.
    let steady_then = phase_count(&handle.snapshot().await, Phase::Steady);
    until_figures(&handle, "steady requests after the start-up", |s| {
        phase_count(s, Phase::Steady) >= steady_then + 40
    })
    .await;
    let (_, analysis) = finish(handle, &config).await;
    let costly = found(&analysis, "load.costly_startup");
    assert_eq!(
        costly.title, "Start-up work blocks the API for everyone",
        "{:#?}",
        analysis.findings
    );
    assert!(
        costly.evidence.contains("waited behind the start-up work"),
        "{}",
        costly.evidence
    );
    explains(&analysis, "load.costly_startup");
    testbed.stop().await;
}
