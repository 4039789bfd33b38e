//! The master's reasoning about one distributed run, driven by the events its listener would
//! hand over (workers saying hello, sending figures, leaving) with channels in place of the
//! connections: who gets which share, what a lost or returning worker changes, how the
//! timeline is made of the workers' totals, and what a reset drops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{ClusterRun, State};
use crate::cluster::EventKind;
use crate::cluster::listener::Event;
use crate::cluster::protocol::{self, Resume, ToMaster, ToWorker, WorkerSnapshot};
use crate::cluster::run::Connected;
use crate::config::testing::{FIXED_AND_WEIGHTED, resolved};
use crate::config::{LoadSettings, RunConfig};
use crate::runner::{Channels, Control};
use crate::stats::{Key, Phase, SelfWatchFigures, Stats, StatsSnapshot};

/// A master's run of `users`, with the senders of its channels kept open.
struct Bench {
    run: ClusterRun,
    _control: watch::Sender<Control>,
}

fn bench(users: u64) -> Bench {
    bench_of(resolved(
        FIXED_AND_WEIGHTED,
        &["-u", &users.to_string(), "-r", "10"],
    ))
}

/// A cluster run of `config`, before any worker.
fn bench_of(config: RunConfig) -> Bench {
    let users = config.load.users;
    let (control_tx, control) = watch::channel(Control {
        users,
        spawn_rate: 10.0,
    });
    // Nothing asks for snapshots, resets or outcomes here: their senders may go.
    let channels = Channels {
        control,
        stop: CancellationToken::new(),
        snapshots: mpsc::channel(1).1,
        updates: watch::channel(None).0,
        resets: mpsc::channel(1).1,
        fixed_counts: mpsc::channel(1).1,
        outcomes: mpsc::channel(1).1,
    };
    let status = Arc::new(std::sync::Mutex::new(Vec::new()));
    Bench {
        run: ClusterRun::new(config, channels, status),
        _control: control_tx,
    }
}

/// A worker connected before the run, as `conn`, named `w{conn}`; its id is `conn`.
fn connect(run: &mut ClusterRun, conn: u64) -> mpsc::UnboundedReceiver<ToWorker> {
    let (outbox, inbox) = mpsc::unbounded_channel();
    let connected = Connected {
        name: format!("w{conn}"),
        cores: 2,
        outbox,
    };
    assert_eq!(run.add_member(conn, connected, None), conn as u32);
    inbox
}

/// What the master sent to a worker since the last look.
fn sent(inbox: &mut mpsc::UnboundedReceiver<ToWorker>) -> Vec<ToWorker> {
    std::iter::from_fn(|| inbox.try_recv().ok()).collect()
}

/// The last share the master gave a worker (a start or a steer): users, fixed counts.
fn share(inbox: &mut mpsc::UnboundedReceiver<ToWorker>) -> Option<(u64, BTreeMap<String, u32>)> {
    sent(inbox).into_iter().rev().find_map(|m| match m {
        ToWorker::Steer {
            users,
            fixed_counts,
            ..
        } => Some((users, fixed_counts)),
        ToWorker::Start(spec) => Some((spec.load.users, spec.fixed_counts)),
        _ => None,
    })
}

fn users_of(inboxes: &mut [&mut mpsc::UnboundedReceiver<ToWorker>]) -> Vec<Option<u64>> {
    inboxes
        .iter_mut()
        .map(|inbox| share(inbox).map(|(users, _)| users))
        .collect()
}

/// A worker's totals: `requests` answered in 10 ms, `users` running, its CPU.
fn figures(run: &ClusterRun, seq: u64, requests: u64, users: u64, cpu_pct: f64) -> WorkerSnapshot {
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
    let own = SelfWatchFigures {
        cpu_pct,
        rss_bytes: 1_000_000,
        timer_lag_ms: 0.0,
    };
    WorkerSnapshot {
        run_id: run.run_id.clone(),
        seq,
        epoch: run.epoch,
        stats: StatsSnapshot::of(&stats, seq as f64, users, own),
        target_users: users,
        users_by_type: BTreeMap::from([("Reader".to_owned(), users)]),
        threads: 1,
        jobs_in_flight: 0,
        in_flight: Default::default(),
        error: None,
    }
}

fn send(run: &mut ClusterRun, conn: u64, message: ToMaster) {
    run.handle(Event::Message { conn, message });
}

fn requests(run: &ClusterRun) -> u64 {
    run.totals().endpoints.values().map(|e| e.count).sum()
}

fn events(run: &ClusterRun, kind: EventKind) -> Vec<String> {
    run.events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.what.clone())
        .collect()
}

fn state(run: &ClusterRun, id: u32) -> String {
    run.summaries()
        .into_iter()
        .find(|w| w.id == id)
        .map(|w| w.state)
        .unwrap_or_default()
}

#[test]
fn a_lost_workers_users_go_to_the_others_and_come_back_with_it() {
    let Bench { mut run, .. } = bench(10);
    let (mut w1, mut w2, mut w3) = (
        connect(&mut run, 1),
        connect(&mut run, 2),
        connect(&mut run, 3),
    );
    run.rebalance();
    assert_eq!(
        users_of(&mut [&mut w1, &mut w2, &mut w3]),
        [Some(4), Some(3), Some(3)],
        "the first worker takes the user left over"
    );
    for (conn, users) in [(1, 4), (2, 3), (3, 3)] {
        let snapshot = figures(&run, 1, 10, users, 20.0);
        send(&mut run, conn, ToMaster::Snapshot(Box::new(snapshot)));
    }
    run.push_second();

    run.handle(Event::Left {
        conn: 2,
        why: "connection closed".into(),
    });
    assert_eq!(users_of(&mut [&mut w1, &mut w3]), [Some(5), Some(5)]);
    assert!(
        sent(&mut w2).is_empty(),
        "nothing more is sent to a lost worker"
    );
    let lost = events(&run, EventKind::Lost);
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(
        lost[0].starts_with(
            "worker w2 lost (connection closed): its 3 users and about 10 req/s are gone"
        ) && lost[0].ends_with("they are shared out to the 2 other(s)"),
        "{}",
        lost[0]
    );
    assert!(state(&run, 2).starts_with("lost at "), "{}", state(&run, 2));
    // Its figures so far still count; its users no longer run.
    assert_eq!(requests(&run), 30);
    assert_eq!(run.users(), 7);

    // It connects again, naming its run and its id: it takes its place and its share.
    let (outbox, mut again) = mpsc::unbounded_channel();
    run.handle(Event::Hello {
        conn: 7,
        name: "w2".into(),
        cores: 2,
        resume: Some(Resume {
            run_id: run.run_id.clone(),
            worker_id: 2,
        }),
        outbox,
    });
    let welcome = sent(&mut again);
    assert!(
        matches!(welcome.first(), Some(ToWorker::Welcome { worker_id: 2 })),
        "{welcome:?}"
    );
    assert!(
        welcome
            .iter()
            .any(|m| matches!(m, ToWorker::Steer { users: 3, .. })),
        "{welcome:?}"
    );
    assert_eq!(users_of(&mut [&mut w1, &mut w3]), [Some(4), Some(3)]);
    assert_eq!(state(&run, 2), "running");
    assert_eq!(events(&run, EventKind::Back).len(), 1);
    // A hello for another run is a new worker, never this one's place.
    let (outbox, mut stranger) = mpsc::unbounded_channel();
    run.handle(Event::Hello {
        conn: 8,
        name: "w2".into(),
        cores: 2,
        resume: Some(Resume {
            run_id: "another-run".into(),
            worker_id: 2,
        }),
        outbox,
    });
    assert!(
        matches!(
            sent(&mut stranger).first(),
            Some(ToWorker::Welcome { worker_id: 8 })
        ),
        "a new id"
    );
    assert_eq!(run.members.len(), 4);
}

#[test]
fn a_silent_worker_is_lost_and_its_next_message_brings_it_back() {
    let Bench { mut run, .. } = bench(6);
    let (mut w1, mut w2) = (connect(&mut run, 1), connect(&mut run, 2));
    run.rebalance();
    assert_eq!(users_of(&mut [&mut w1, &mut w2]), [Some(3), Some(3)]);
    // Heard from 4 s ago: past the 3 s a worker may be silent.
    let long_ago = Instant::now()
        .checked_sub(Duration::from_secs(4))
        .expect("the clock is past 4 s");
    if let Some(member) = run.members.get_mut(&1) {
        member.last_heard = long_ago;
    }
    run.check_heartbeats();
    assert!(
        events(&run, EventKind::Lost)[0].contains("(no message for 3 s)"),
        "{:?}",
        run.events
    );
    assert_eq!(users_of(&mut [&mut w2]), [Some(6)]);
    // Its connection was still open: its heartbeat brings it back.
    send(&mut run, 1, ToMaster::Heartbeat);
    assert_eq!(users_of(&mut [&mut w1, &mut w2]), [Some(3), Some(3)]);
    assert_eq!(events(&run, EventKind::Back).len(), 1);
    // Every worker lost: the message says no one is left.
    for conn in [1, 2] {
        run.handle(Event::Left {
            conn,
            why: "closed".into(),
        });
    }
    let lost = events(&run, EventKind::Lost);
    assert!(
        lost.last()
            .is_some_and(|l| l.ends_with("no worker is left to take them")),
        "{lost:?}"
    );
}

#[test]
fn fixed_counts_are_shared_out_as_users_are_and_again_when_a_worker_goes() {
    let Bench { mut run, .. } = bench(10);
    let (mut w1, mut w2) = (connect(&mut run, 1), connect(&mut run, 2));
    run.rebalance();
    let watchers = |inbox: &mut mpsc::UnboundedReceiver<ToWorker>| {
        share(inbox).and_then(|(_, fixed)| fixed.get("Watcher").copied())
    };
    assert_eq!((watchers(&mut w1), watchers(&mut w2)), (Some(2), Some(1)));
    run.handle(Event::Left {
        conn: 1,
        why: "closed".into(),
    });
    assert_eq!(
        watchers(&mut w2),
        Some(3),
        "all the watchers on the one left"
    );
}

#[test]
fn a_worker_joining_mid_run_is_started_with_its_share_and_the_others_steered() {
    let Bench { mut run, .. } = bench(9);
    let (mut w1, mut w2) = (connect(&mut run, 1), connect(&mut run, 2));
    run.rebalance();
    let _ = sent(&mut w1);
    let _ = sent(&mut w2);
    let (outbox, mut w3) = mpsc::unbounded_channel();
    run.handle(Event::Hello {
        conn: 3,
        name: "w3".into(),
        cores: 4,
        resume: None,
        outbox,
    });
    let first = sent(&mut w3);
    assert!(
        matches!(first.first(), Some(ToWorker::Welcome { worker_id: 3 })),
        "{first:?}"
    );
    let start = first.iter().find_map(|m| match m {
        ToWorker::Start(spec) => Some(spec.clone()),
        _ => None,
    });
    let start = start.expect("the newcomer is started");
    assert_eq!(start.load.users, 3);
    assert_eq!(
        start.load.first_user_number, 3_000_000,
        "its own range of user numbers"
    );
    assert_eq!(start.run_id(), run.run_id);
    assert_eq!(users_of(&mut [&mut w1, &mut w2]), [Some(3), Some(3)]);
    assert_eq!(
        events(&run, EventKind::Joined),
        ["worker w3 joined: it gets its share of the users"]
    );
}

#[test]
fn a_worker_that_cannot_start_is_failed_and_its_share_goes_to_the_others() {
    let Bench { mut run, .. } = bench(8);
    let (mut w1, _w2) = (connect(&mut run, 1), connect(&mut run, 2));
    run.rebalance();
    // A failure of another run changes nothing.
    let old = ToMaster::Failed {
        run_id: "an-earlier-run".into(),
        message: "no fixture".into(),
    };
    send(&mut run, 2, old);
    assert_eq!(state(&run, 2), "running");
    let now = ToMaster::Failed {
        run_id: run.run_id.clone(),
        message: "scenario: no fixture test_video.mp4".into(),
    };
    send(&mut run, 2, now);
    assert_eq!(
        state(&run, 2),
        "failed: scenario: no fixture test_video.mp4"
    );
    assert_eq!(users_of(&mut [&mut w1]), [Some(8)]);
    assert_eq!(events(&run, EventKind::Failed).len(), 1);
}

#[test]
fn the_timeline_is_what_the_workers_totals_grew_by_each_second() {
    let Bench { mut run, .. } = bench(4);
    let _inboxes = (connect(&mut run, 1), connect(&mut run, 2));
    let snapshot = figures(&run, 1, 10, 2, 20.0);
    send(&mut run, 1, ToMaster::Snapshot(Box::new(snapshot)));
    let snapshot = figures(&run, 1, 5, 2, 20.0);
    send(&mut run, 2, ToMaster::Snapshot(Box::new(snapshot)));
    run.push_second();
    let snapshot = figures(&run, 2, 30, 2, 20.0);
    send(&mut run, 1, ToMaster::Snapshot(Box::new(snapshot)));
    // Late, out of order: an older total of worker 1 is dropped.
    let stale = figures(&run, 1, 12, 2, 20.0);
    send(&mut run, 1, ToMaster::Snapshot(Box::new(stale)));
    // Figures of another run are not this run's.
    let mut stranger = figures(&run, 9, 500, 2, 20.0);
    stranger.run_id = "another-run".into();
    send(&mut run, 2, ToMaster::Snapshot(Box::new(stranger)));
    run.push_second();
    // Nothing new: an empty second.
    run.push_second();
    let counts: Vec<u64> = run.history.iter().map(|r| r.interval.count).collect();
    assert_eq!(
        counts,
        [15, 20, 0],
        "each second holds what the totals grew by"
    );
    assert_eq!(requests(&run), 35, "the totals are each worker's latest");
    let outcome = run.outcome(false);
    assert_eq!(
        outcome.history.iter().map(|r| r.users).collect::<Vec<_>>(),
        [4, 4, 4]
    );
    assert_eq!(outcome.peak_users, 4);
    assert_eq!(outcome.threads, 2, "the workers' threads, summed");
    assert_eq!(outcome.users_by_type.get("Reader"), Some(&4));
    let requests_per_worker: Vec<u64> = outcome
        .cluster
        .as_ref()
        .map(|c| c.workers.iter().map(|w| w.requests).collect())
        .unwrap_or_default();
    assert_eq!(requests_per_worker, [30, 5]);
}

#[test]
fn a_reset_drops_the_figures_and_any_sent_before_it() {
    let Bench { mut run, .. } = bench(2);
    let (mut w1, mut w2) = (connect(&mut run, 1), connect(&mut run, 2));
    for conn in [1, 2] {
        let snapshot = figures(&run, 1, 10, 1, 20.0);
        send(&mut run, conn, ToMaster::Snapshot(Box::new(snapshot)));
    }
    assert_eq!(requests(&run), 20);
    let before = figures(&run, 2, 15, 1, 20.0);
    run.reset();
    assert_eq!(requests(&run), 0);
    for inbox in [&mut w1, &mut w2] {
        assert!(
            sent(inbox).iter().any(|m| matches!(m, ToWorker::Reset)),
            "each worker is told to forget"
        );
    }
    // Sent before the worker heard of the reset: dropped.
    send(&mut run, 1, ToMaster::Snapshot(Box::new(before)));
    assert_eq!(requests(&run), 0);
    let after = figures(&run, 3, 4, 1, 20.0);
    send(&mut run, 1, ToMaster::Snapshot(Box::new(after)));
    assert_eq!(requests(&run), 4);
}

#[test]
fn a_worker_saturated_in_three_seconds_is_marked_and_a_finished_one_says_so() {
    let Bench { mut run, .. } = bench(2);
    let _inboxes = (connect(&mut run, 1), connect(&mut run, 2));
    for seq in 1..=3 {
        // One thread: 95 % of a core is saturated (90 % or more), 20 % is not.
        let hot = figures(&run, seq, 10 * seq, 1, 95.0);
        send(&mut run, 1, ToMaster::Snapshot(Box::new(hot)));
        let calm = figures(&run, seq, 10 * seq, 1, 20.0);
        send(&mut run, 2, ToMaster::Snapshot(Box::new(calm)));
        run.push_second();
    }
    let last = figures(&run, 4, 40, 1, 20.0);
    send(&mut run, 2, ToMaster::Finished(Box::new(last)));
    let summaries = run.summaries();
    let (hot, calm) = (&summaries[0], &summaries[1]);
    assert_eq!((hot.saturated_secs, hot.peak_cpu_pct), (3, 95.0));
    assert!(hot.saturated(), "{hot:?}");
    assert_eq!((calm.saturated_secs, calm.peak_cpu_pct), (0, 20.0));
    assert_eq!(
        (hot.state.as_str(), calm.state.as_str()),
        ("running", "finished")
    );
    assert!(matches!(run.members[&2].state, State::Finished));
    assert_eq!(
        requests(&run),
        70,
        "the finished worker's last totals count"
    );
}

#[test]
fn a_worker_runs_the_masters_load_settings_unchanged_but_for_its_share() {
    let config = resolved(
        FIXED_AND_WEIGHTED,
        &[
            "-u",
            "6",
            "-r",
            "10",
            "--request-timeout",
            "7s",
            "--stop-timeout",
            "3s",
            "--max-redirects",
            "4",
            "--max-body",
            "12345",
            "--insecure",
            "--job-sample",
            "0.5",
        ],
    );
    let Bench { mut run, .. } = bench_of(config.clone());
    let (mut w1, mut w2) = (connect(&mut run, 1), connect(&mut run, 2));
    run.rebalance();
    let (outbox, mut w3) = mpsc::unbounded_channel();
    run.handle(Event::Hello {
        conn: 3,
        name: "w3".into(),
        cores: 4,
        resume: None,
        outbox,
    });
    // As the worker reads it: through the wire format.
    let spec = sent(&mut w3)
        .into_iter()
        .find_map(|m| match m {
            ToWorker::Start(spec) => Some(protocol::encode(&ToWorker::Start(spec))),
            _ => None,
        })
        .map(|text| protocol::decode::<ToWorker>(&text));
    let Some(Ok(ToWorker::Start(spec))) = spec else {
        panic!("no start, or it does not decode: {spec:?}")
    };
    let _ = (sent(&mut w1), sent(&mut w2));
    let expected = LoadSettings {
        users: 2,
        spawn_rate: super::share::rate(10.0, 2, 6),
        first_user_number: 3_000_000,
        run_id: Some(run.run_id.clone()),
        ..config.load
    };
    assert_eq!(spec.load, expected);
}
