//! loadgen's own job polls against the testbed: within a tenth of the requests however many
//! jobs stay stuck, jobs whose every poll was refused counted unknown (never unfinished), and
//! jobs that complete still seen completed when the budget holds their polls back. The
//! scenario is `tests/scenarios/polled_jobs.toml`: jobs polled after 1 s, then every 2 s.

use std::time::Duration;

use loadgen::stats::{Phase, StatsSnapshot};
use serde_json::Value;

use crate::diagnosis::{finish, planted, polls, start, until_figures};
use crate::support::scenario;

/// Requests of a JSON report's phase total (`steady_total`, `startup_total`, `polls_total`).
fn requests(report: &Value, total: &str) -> u64 {
    report[total]["requests"].as_u64().unwrap()
}

/// Whether the snapshot's join jobs, completed and not followed, pass `wanted` (a job counts
/// once it ended).
fn joins(snapshot: &StatsSnapshot, wanted: impl Fn(u64, u64) -> bool) -> bool {
    snapshot
        .jobs
        .iter()
        .any(|j| j.job == "join" && wanted(j.completed, j.unfollowed))
}

/// Planted: every job stays `processing` forever, and each user creates one in four tasks, so
/// that following them all would take far more than a tenth of the requests (every job costs
/// a poll at least, and jobs are a fifth of the requests: 18 % under stress-ng, 23 % without). The polls of the JSON report stay within a tenth of its requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_of_stuck_jobs_stay_within_a_tenth_of_the_requests() {
    let (testbed, _database, _queue) =
        planted(|c| c.job_mode = testbed::config::JobMode::Stuck).await;
    let file = scenario("polled_jobs.toml");
    let args = [
        "-f",
        &file,
        "--user-classes",
        "Creator",
        "-u",
        "3",
        "-r",
        "10",
        "-t",
        "20s",
    ];
    let (_code, report, _out) = crate::cli::loadgen(&testbed.base_url(), &args).await;
    let polls = requests(&report, "polls_total");
    let all = polls + requests(&report, "steady_total") + requests(&report, "startup_total");
    let join = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "join")
        .unwrap();
    let count = |field: &str| join[field].as_u64().unwrap();
    let followed = count("completed") + count("failed") + count("unfinished") + count("unknown");
    let created = followed + count("unfollowed");
    let figures = format!(
        "{polls} polls of {all} requests ({:.1} %); {created} jobs created ({:.1} % of the \
         requests: at least as many polls without the budget), {followed} followed, {} not; \
         {:?}",
        polls as f64 * 100.0 / all as f64,
        created as f64 * 100.0 / all as f64,
        count("unfollowed"),
        join["failure_messages"]
    );
    println!("{figures}");
    assert!(all >= 200, "a run long enough to judge: {figures}");
    assert!(polls * 10 <= all, "polls within a tenth: {figures}");
    assert!(
        created * 20 > all * 3,
        "planted: following every job would take over 15 % of the requests: {figures}"
    );
    assert!(polls > 0 && count("unfinished") > 0, "{figures}");
    assert!(
        join["failure_messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().unwrap().contains("last seen processing")),
        "{figures}"
    );
    testbed.stop().await;
}

/// Planted: a rate limit of 12 requests a minute, which the users' start-up (5 requests each)
/// and first reads use up before their jobs' first polls, 1 s later. Every poll is answered
/// 429: the jobs are unknown, with why, and none unfinished, though the database has them
/// completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_whose_every_poll_is_refused_are_unknown_not_unfinished() {
    let (testbed, database, queue) = planted(|c| c.rate_limit_per_minute = 12).await;
    let file = scenario("polled_jobs.toml");
    let args = [
        "-f",
        &file,
        "--user-classes",
        "Creator",
        "-u",
        "2",
        "-r",
        "10",
    ];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    // Two polls of each job followed, or four of one (a job's figures come when it ends).
    until_figures(&handle, "the jobs are polled twice", |s| polls(s) >= 4).await;
    let (outcome, _analysis) = finish(handle, &config).await;
    let join = &outcome.stats.jobs["join"];
    let poll_statuses = &outcome.stats.aggregated(Phase::Poll).statuses;
    let pool = sqlx::PgPool::connect(&database).await.unwrap();
    let (completed_in_db,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM tasks WHERE status = 'completed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    let figures = format!(
        "{} unknown, {} unfinished, {} completed; {completed_in_db} completed in the database; \
         poll statuses {poll_statuses:?}; {:?}",
        join.unknown, join.unfinished, join.completed, join.failure_messages
    );
    println!("{figures}");
    assert_eq!(
        poll_statuses.keys().collect::<Vec<_>>(),
        [&429],
        "planted: every poll refused: {figures}"
    );
    assert!(join.unknown >= 1, "{figures}");
    assert_eq!(join.unfinished + join.completed, 0, "{figures}");
    assert!(
        completed_in_db >= join.unknown as i64,
        "the unknown jobs did complete: {figures}"
    );
    assert!(
        join.failure_messages.iter().all(|m| {
            m.starts_with("its status was never read: ") && m.contains("answered 429")
        }),
        "{figures}"
    );
    testbed.stop().await;
}

/// Jobs that take 5 s, polled after 1 s then every 2 s (4 polls each, 12 in all), by 3 users
/// who send 2 requests a second: the polls would be a fifth of the requests when the jobs end,
/// and the budget holds them back past the free ones. Every job followed is still seen
/// completed, none unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_complete_are_seen_completed_under_the_budget() {
    let (testbed, database, queue) = planted(|c| {
        c.job_seconds = Duration::from_secs(5);
        c.workers = 4;
    })
    .await;
    let file = scenario("polled_jobs.toml");
    let users = 3;
    let args = [
        "-f",
        &file,
        "--user-classes",
        "Starter",
        "-u",
        &users.to_string(),
        "-r",
        "10",
    ];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    // One job per user, each followed or not: then none is left to end.
    until_figures(&handle, "every job followed is seen completed", |s| {
        joins(s, |completed, unfollowed| completed + unfollowed >= users)
    })
    .await;
    let (outcome, _analysis) = finish(handle, &config).await;
    let join = &outcome.stats.jobs["join"];
    let polls = outcome.stats.aggregated(Phase::Poll).count;
    let all = outcome.stats.aggregated_all().count;
    let figures = format!(
        "{} completed (p50 {:.1} s), {} unknown, {} unfinished, {} not followed; {polls} polls \
         of {all} requests; {:?}",
        join.completed,
        join.completion.value_at_quantile(0.5) as f64 / 1e6,
        join.unknown,
        join.unfinished,
        join.unfollowed,
        join.failure_messages
    );
    println!("{figures}");
    assert!(join.completed > 0, "{figures}");
    assert_eq!(join.unknown + join.unfinished + join.failed, 0, "{figures}");
    assert!(
        polls > loadgen::stats::polls::FREE_POLLS,
        "past the free polls: {figures}"
    );
    assert!(polls * 10 <= all, "polls within a tenth: {figures}");
    testbed.stop().await;
}
