//! The engine's API as a driver (the web UI, a worker) uses it: start a run from a resolved
//! config, steer it by events, read snapshots while it goes, stop it, and get the outcome.

use clap::Parser;
use loadgen::engine::Run;
use loadgen::stats::{Phase, StatsSnapshot};
use test_support::start_in_memory;

use crate::support::{fixtures, scenario, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_steers_reads_and_stops_a_run_through_its_handle() {
    let testbed = start_in_memory(|_| {}).await;
    let cli = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "-H",
        &testbed.base_url(),
        "-f",
        &scenario("reads.toml"),
        "--fixtures",
        &fixtures().display().to_string(),
        "-u",
        "2",
        "-r",
        "20",
        // A bound only: the test stops the run itself.
        "-t",
        "5m",
    ])
    .unwrap();
    let config = cli.resolve().unwrap();
    let handle = Run::start(&config).await.unwrap();

    until(&handle, |u| {
        u.users == 2 && u.second.cumulative.requests > 0
    })
    .await;
    handle.set_users(5, 20.0).unwrap();
    until(&handle, |u| u.users == 5).await;
    let first: StatsSnapshot = handle.snapshot().await;
    until(&handle, |u| {
        u.second.cumulative.requests > first_requests(&first)
    })
    .await;
    let second = handle.snapshot().await;
    handle.set_users(1, 20.0).unwrap();
    until(&handle, |u| u.users == 1).await;
    assert!(handle.set_users(3, 0.0).is_err(), "a rate of 0 is refused");
    handle.stop();
    let outcome = handle.wait().await;

    assert_eq!(outcome.peak_users, 5);
    assert_eq!(
        outcome.users_by_type["Reader"], 5,
        "five users started in all"
    );
    assert!(
        outcome.interrupted,
        "stopped by the handle, not the run time"
    );
    // Snapshots travel as JSON and read back to the figures they were taken from.
    let travelled: StatsSnapshot =
        serde_json::from_str(&serde_json::to_string(&second).unwrap()).unwrap();
    let later = travelled.to_stats().unwrap().aggregated(Phase::Steady);
    let earlier = first.to_stats().unwrap().aggregated(Phase::Steady);
    let end = outcome.stats.aggregated(Phase::Steady);
    assert!(earlier.count < later.count && later.count <= end.count);
    assert_eq!(second.users, 5);
    // After the end, a snapshot gives the final figures.
    let last = handle.snapshot().await.to_stats().unwrap();
    assert_eq!(last.aggregated(Phase::Steady).count, end.count);
    testbed.stop().await;
}

fn first_requests(snapshot: &StatsSnapshot) -> u64 {
    snapshot.endpoints.iter().map(|e| e.count).sum()
}
