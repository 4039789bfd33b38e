//! Builders for the rules' unit tests: runs and backend ticks made to order.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use monitor::sample::{
    ContainerValues, DockerValues, HostValues, PostgresValues, RedisValues, SourceReading, Tick,
    Values,
};

use super::{Evidence, Finding, Rule};
use crate::engine::RunOutcome;
use crate::stats::{EndpointStats, FailureKey, FailureKind, FailureStats, HistoryRow, Key, Phase};
use crate::targets::Targets;

/// When the made-up runs start: fixed, so that the same run is the same evidence.
pub fn base_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// A run whose second `i` had `users[i]` users, `rps[i]` requests of `latency_ms` to
/// `GET /api/v1/tasks`, and loadgen at `cpu[i]` percent.
pub fn outcome(users: &[u64], rps: &[u64], latency_ms: u64, cpu: &[f64]) -> RunOutcome {
    let mut run = RunOutcome {
        duration: Duration::from_secs(users.len() as u64),
        peak_users: users.iter().copied().max().unwrap_or(0),
        threads: 1,
        ..RunOutcome::default()
    };
    for (i, (&u, &n)) in users.iter().zip(rps).enumerate() {
        let second = tasks_second(&mut run, n, latency_ms);
        run.history.push(HistoryRow {
            at_secs: i as u64 + 1,
            timestamp: base_time() + Duration::from_secs(i as u64 + 1),
            users: u,
            interval: second,
            loadgen_cpu_pct: cpu.get(i).copied().unwrap_or(0.0),
            loadgen_rss_bytes: 1,
            timer_lag_ms: 0.0,
            endpoints: Vec::new(),
            jobs_done: 0,
            jobs_in_flight: 0,
            in_flight: Default::default(),
            cumulative: Default::default(),
            per_name: None,
            arrivals: Default::default(),
            reset: false,
        });
    }
    run
}

/// `count` steady `GET /api/v1/tasks` of `latency_ms`, added to `run`'s totals: the second.
fn tasks_second(run: &mut RunOutcome, count: u64, latency_ms: u64) -> EndpointStats {
    let mut second = EndpointStats::default();
    for _ in 0..count {
        second.record(latency_ms * 1000, 10, Some(200), false);
    }
    let key = Key {
        phase: Phase::Steady,
        method: "GET".into(),
        name: "/api/v1/tasks".into(),
    };
    run.stats.endpoints.entry(key).or_default().merge(&second);
    second
}

/// Adds `count` steady requests of `latency_ms` to second `at` of `run` (and its totals).
pub fn slow_second(run: &mut RunOutcome, at: usize, count: u64, latency_ms: u64) {
    let second = tasks_second(run, count, latency_ms);
    run.history[at].interval.merge(&second);
}

/// The start-up `POST /api/v1/auth/login` row of `run`, to record logins into.
pub fn login(run: &mut RunOutcome) -> &mut EndpointStats {
    run.stats
        .endpoints
        .entry(Key {
            phase: Phase::Startup,
            method: "POST".into(),
            name: "/api/v1/auth/login".into(),
        })
        .or_default()
}

/// Adds `count` failed requests of `kind` to `GET /api/v1/files`.
pub fn fail(run: &mut RunOutcome, kind: FailureKind, message: &str, count: u64) {
    let key = Key {
        phase: Phase::Steady,
        method: "GET".into(),
        name: "/api/v1/files".into(),
    };
    let status = match kind {
        FailureKind::Status(code) => Some(code),
        _ => None,
    };
    let endpoint = run.stats.endpoints.entry(key).or_default();
    for _ in 0..count {
        endpoint.record(5_000, 0, status, true);
    }
    run.stats.failures.insert(
        FailureKey {
            method: "GET".into(),
            name: "/api/v1/files".into(),
            error: message.into(),
            kind,
        },
        FailureStats {
            count,
            first_seen_secs: 2.0,
            last_seen_secs: 4.0,
        },
    );
}

/// `n` ticks one second apart, tick `i` carrying `sources(i)`.
pub fn ticks(n: usize, sources: impl Fn(usize) -> Vec<(&'static str, Values)>) -> Vec<Tick> {
    let start = chrono::DateTime::<chrono::Utc>::from(base_time());
    (0..n)
        .map(|i| {
            // Tick `i` closes second `i` of the run, as the run's rows do.
            let at = start + chrono::Duration::seconds(i as i64 + 1);
            Tick {
                tick: i as u64 + 1,
                timestamp: at,
                spread_ms: 0.0,
                sources: sources(i)
                    .into_iter()
                    .map(|(name, values)| {
                        let reading = SourceReading {
                            at,
                            up: true,
                            error: None,
                            values: Some(values),
                            notes: Vec::new(),
                        };
                        (name.to_owned(), reading)
                    })
                    .collect(),
            }
        })
        .collect()
}

/// A host reading at `cpu_pct`.
pub fn host(cpu_pct: f64) -> (&'static str, Values) {
    let values = HostValues {
        cpu_pct,
        ..Default::default()
    };
    ("host", Values::Host(values))
}

/// Running containers at these CPU percentages.
pub fn container(cpu: &[(&str, f64)]) -> (&'static str, Values) {
    let containers = cpu
        .iter()
        .map(|(name, cpu_pct)| {
            let values = ContainerValues {
                state: "running".into(),
                cpu_pct: *cpu_pct,
                ..Default::default()
            };
            ((*name).to_owned(), values)
        })
        .collect();
    ("docker", Values::Docker(DockerValues { containers }))
}

/// A PostgreSQL reading (100 max_connections) changed by `edit`.
pub fn postgres(edit: impl FnOnce(&mut PostgresValues)) -> (&'static str, Values) {
    let mut values = PostgresValues {
        max_connections: 100,
        ..Default::default()
    };
    edit(&mut values);
    ("postgres", Values::Postgres(values))
}

/// A Redis reading changed by `edit`.
pub fn redis(edit: impl FnOnce(&mut RedisValues)) -> (&'static str, Values) {
    let mut values = RedisValues::default();
    edit(&mut values);
    ("redis", Values::Redis(values))
}

/// What `rule` finds in `run` with `backend`, under the default targets.
pub fn with_evidence(run: &RunOutcome, backend: &[Tick], rule: Rule) -> Vec<Finding> {
    let mut run = run.clone();
    run.backend = backend.to_vec();
    let targets = Targets::default();
    rule(&Evidence::new(&run, &targets, &[], BTreeMap::new()))
}

/// What `rule` finds in `run` when the workers logged `logs`.
pub fn with_logs(
    run: &RunOutcome,
    logs: BTreeMap<String, Vec<String>>,
    rule: Rule,
) -> Vec<Finding> {
    let targets = Targets::default();
    rule(&Evidence::new(run, &targets, &[], logs))
}
