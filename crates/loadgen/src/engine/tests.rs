//! The run's state machine as a driver sees it through its [`RunHandle`], with a body made to
//! order in place of the users (no target, no network): steering, resets and fixed counts reach
//! the body; snapshots and outcomes are asked of it while it runs and taken from its outcome
//! once it has ended; the first stop reason is kept; a body that fails or panics still gives an
//! outcome that says why; the workers' logs are read only when jobs went wrong.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::*;
use crate::config::testing::{FIXED_AND_WEIGHTED, resolved};
use crate::stats::{Key, Phase};

/// What the body was told.
#[derive(Debug, PartialEq)]
enum Told {
    Control(u64, f64),
    Reset,
    FixedCounts(BTreeMap<String, u32>),
}

/// Totals of `requests` answered in 10 ms.
fn stats(requests: u64) -> Stats {
    let mut stats = Stats::default();
    let tasks = stats
        .endpoints
        .entry(Key {
            phase: Phase::Steady,
            method: "GET".into(),
            name: "/api/v1/tasks".into(),
        })
        .or_default();
    for _ in 0..requests {
        tasks.record(10_000, 10, Some(200), false);
    }
    stats
}

fn requests(stats: &Stats) -> u64 {
    stats.endpoints.values().map(|e| e.count).sum()
}

/// A body that tells `told` what it hears, answers snapshots with 7 requests and outcomes so
/// far with 8, and ends at a stop with 9 (interrupted).
async fn obedient(
    mut channels: Channels,
    told: mpsc::UnboundedSender<Told>,
) -> Result<RunOutcome, EngineError> {
    let control = *channels.control.borrow();
    let _ = told.send(Told::Control(control.users, control.spawn_rate));
    let update = Update {
        elapsed: Duration::from_secs(1),
        users: control.users,
        target_users: control.users,
        users_by_type: Arc::default(),
        second: Arc::new(crate::stats::Second::starting_at(SystemTime::now()).row(
            1,
            control.users,
            (0.0, 0),
            &Stats::default(),
        )),
    };
    channels.updates.send_replace(Some(update));
    loop {
        tokio::select! {
            () = channels.stop.cancelled() => break,
            Ok(()) = channels.control.changed() => {
                let control = *channels.control.borrow();
                let _ = told.send(Told::Control(control.users, control.spawn_rate));
            }
            Some(()) = channels.resets.recv() => { let _ = told.send(Told::Reset); }
            Some(counts) = channels.fixed_counts.recv() => { let _ = told.send(Told::FixedCounts(counts)); }
            Some(reply) = channels.snapshots.recv() => {
                let _ = reply.send(StatsSnapshot::of(&stats(7), 1.0, control.users, SelfWatchFigures::default()));
            }
            Some(reply) = channels.outcomes.recv() => {
                let _ = reply.send(RunOutcome { stats: stats(8), ..RunOutcome::default() });
            }
        }
    }
    Ok(RunOutcome {
        stats: stats(9),
        interrupted: true,
        run_id: "the-run".into(),
        ..RunOutcome::default()
    })
}

fn launch<B, F>(args: &[&str], body: B) -> RunHandle
where
    B: FnOnce(Channels) -> F + Send + 'static,
    F: std::future::Future<Output = Result<RunOutcome, EngineError>> + Send + 'static,
{
    let config = resolved(FIXED_AND_WEIGHTED, args);
    Run::launch(&config, None, body)
}

async fn next(told: &mut mpsc::UnboundedReceiver<Told>) -> Told {
    tokio::time::timeout(Duration::from_secs(10), told.recv())
        .await
        .ok()
        .flatten()
        .expect("the body was told something within 10 s")
}

#[tokio::test]
async fn the_handle_steers_the_body_and_the_first_stop_reason_is_kept() {
    let (told_tx, mut told) = mpsc::unbounded_channel();
    let handle = launch(&["-u", "3", "-r", "1"], move |channels| {
        obedient(channels, told_tx)
    });
    assert_eq!(
        next(&mut told).await,
        Told::Control(3, 1.0),
        "the config's load first"
    );
    let mut updates = handle.subscribe();
    let first = updates
        .wait_for(Option::is_some)
        .await
        .map(|u| u.as_ref().map(|u| u.users));
    assert_eq!(first.ok().flatten(), Some(3));

    handle.set_users(5, 2.0).expect("a positive rate");
    assert_eq!(next(&mut told).await, Told::Control(5, 2.0));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(handle.set_users(9, bad), Err(EngineError::SpawnRate(_))),
            "spawn rate {bad}"
        );
    }
    handle.reset_stats();
    assert_eq!(next(&mut told).await, Told::Reset);
    let counts = BTreeMap::from([("Watcher".to_owned(), 2)]);
    handle.set_fixed_counts(counts.clone());
    assert_eq!(next(&mut told).await, Told::FixedCounts(counts));
    assert!(
        told.try_recv().is_err(),
        "the refused rates never reached the body"
    );

    assert!(!handle.is_finished());
    let other = handle.clone();
    handle.stop_by("SIGTERM");
    other.stop_by("the web UI");
    let outcome = handle.wait().await;
    assert!(handle.is_finished());
    assert!(outcome.interrupted);
    assert_eq!(
        outcome.stopped_by.as_deref(),
        Some("SIGTERM"),
        "the first reason given"
    );
    assert!(
        Arc::ptr_eq(&outcome, &other.wait().await),
        "every clone gets the same outcome"
    );
    assert!(
        outcome.worker_logs.is_empty(),
        "no job went wrong: no log read"
    );
}

#[tokio::test]
async fn figures_come_from_the_body_while_it_runs_and_from_its_outcome_after() {
    let (told_tx, mut told) = mpsc::unbounded_channel();
    let handle = launch(&["-u", "4"], move |channels| obedient(channels, told_tx));
    let _ = next(&mut told).await;
    let running = handle.snapshot().await;
    assert_eq!((running.users, running.endpoints[0].count), (4, 7));
    let so_far = handle.outcome_so_far().await;
    assert!(so_far.in_hand, "figures in hand, before the end");
    assert_eq!(requests(&so_far.stats), 8);
    assert_eq!(so_far.stopped_by, None, "no one stopped it yet");

    handle.stop();
    let last = handle.wait().await;
    assert!(!last.in_hand);
    assert_eq!(last.stopped_by, None, "stopped without a reason given");
    assert_eq!(requests(&last.stats), 9);
    // Once ended, both come from the final outcome.
    assert!(Arc::ptr_eq(&last, &handle.outcome_so_far().await));
    let after = handle.snapshot().await;
    assert_eq!((after.users, after.endpoints[0].count), (0, 9));
}

#[tokio::test]
async fn a_body_that_fails_or_panics_still_ends_the_run_with_why() {
    let failed = launch(&[], |_| async {
        Err(EngineError::Preflight(
            "GET /api/v1/health/ answered 503".into(),
        ))
    });
    let outcome = failed.wait().await;
    assert_eq!(
        outcome.error.as_deref(),
        Some("GET /api/v1/health/ answered 503")
    );
    assert_eq!(requests(&outcome.stats), 0);

    let panicked = launch(&[], |_| async { panic!("a bug in the runner") });
    let outcome = panicked.wait().await;
    let error = outcome.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("the run ended abnormally"), "{error}");
    assert!(error.contains("a bug in the runner"), "{error}");
    // A snapshot of an ended run never waits for the body.
    let snapshot = tokio::time::timeout(Duration::from_secs(10), panicked.snapshot()).await;
    assert!(snapshot.is_ok_and(|s| s.endpoints.is_empty()));
}

#[tokio::test]
async fn the_worker_logs_are_quoted_only_when_jobs_went_wrong() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let log = folder.path().join("celery.log");
    std::fs::write(&log, "task received\nERROR: ffmpeg exited with 1\n").expect("log written");
    let log = log.to_string_lossy().into_owned();
    let with_jobs = |failed: u64| {
        move |_| async move {
            let mut stats = stats(3);
            let join = stats.jobs.entry("join".into()).or_default();
            join.completed = 2;
            join.failed = failed;
            Ok(RunOutcome {
                stats,
                ..RunOutcome::default()
            })
        }
    };
    let fine = launch(&["--worker-log", &log], with_jobs(0)).wait().await;
    assert!(fine.worker_logs.is_empty(), "{:?}", fine.worker_logs);
    let failed = launch(&["--worker-log", &log], with_jobs(1)).wait().await;
    let lines = failed.worker_logs.get(&log).cloned().unwrap_or_default();
    assert!(
        lines.iter().any(|l| l.contains("ffmpeg exited with 1")),
        "{:?}",
        failed.worker_logs
    );
}

#[tokio::test]
async fn a_spawn_rate_that_is_not_positive_is_refused_before_anything_starts() {
    let mut config = resolved(FIXED_AND_WEIGHTED, &[]);
    config.load.spawn_rate = 0.0;
    assert!(matches!(
        Run::start(&config).await,
        Err(EngineError::SpawnRate(rate)) if rate == 0.0
    ));
    config.load.spawn_rate = 1.0;
    config.host = "ftp://127.0.0.1/".into();
    let refused = Run::start(&config).await;
    assert!(
        matches!(refused, Err(EngineError::Target(_))),
        "{refused:?}"
    );
}
