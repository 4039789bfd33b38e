//! What the rules read: the run's totals and per-second timeline, failures by kind, jobs, the
//! targets, and typed accessors over the backend's ticks (no rule matches a source's name or
//! a message's text).

use std::collections::BTreeMap;
use std::time::Duration;

use monitor::sample::{ContainerValues, HostValues, PostgresValues, RedisValues, Tick, Values};

use super::{Explained, Trouble};
use crate::outcome::RunOutcome;
use crate::stats::{
    EndpointStats, FailureKey, FailureKind, FailureStats, HistoryRow, Phase, Stats, StuckUsers,
};
use crate::targets::{Targets, Verdict};

/// The backend's ticks, read by type. Each accessor gives `(seconds since the first tick,
/// values)` for the ticks where that source was up.
#[derive(Debug, Clone)]
pub struct Backend<'a> {
    /// In time order, whatever order they came in: the same samples give the same findings.
    ticks: Vec<&'a Tick>,
}

/// Ticks a source must be down in, at the end of the run, to be called unwatched.
const DOWN_AT_THE_END: usize = 3;

impl<'a> Backend<'a> {
    /// Over `ticks`.
    pub fn new(ticks: &'a [Tick]) -> Self {
        let mut ticks: Vec<&Tick> = ticks.iter().collect();
        ticks.sort_by_key(|t| (t.timestamp, t.tick));
        Self { ticks }
    }

    /// When the first tick was taken.
    pub fn start(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.ticks.first().map(|t| t.timestamp)
    }

    /// Every note of every source, once each: (source, note).
    pub fn notes(&self) -> Vec<(&'a str, &'a str)> {
        let mut notes: Vec<(&str, &str)> = Vec::new();
        for tick in &self.ticks {
            for (name, reading) in &tick.sources {
                for note in &reading.notes {
                    if !notes.contains(&(name.as_str(), note.as_str())) {
                        notes.push((name.as_str(), note.as_str()));
                    }
                }
            }
        }
        notes
    }

    /// The sources down in each of the last [`DOWN_AT_THE_END`] ticks: (source, its last
    /// error, ticks it was down in, ticks in all).
    pub fn unwatched(&self) -> Vec<(&'a str, String, usize, usize)> {
        let Some(last) = self.ticks.last().copied() else {
            return Vec::new();
        };
        // Down in each of the last ticks (a single late reading on a busy host is a gap, not
        // a layer left unwatched).
        let tail = &self.ticks[self.ticks.len().saturating_sub(DOWN_AT_THE_END)..];
        last.sources
            .iter()
            .filter(|(name, _)| {
                tail.iter()
                    .all(|t| t.sources.get(*name).is_some_and(|r| !r.up))
            })
            .map(|(name, reading)| {
                let down = self
                    .ticks
                    .iter()
                    .filter(|t| t.sources.get(name).is_some_and(|r| !r.up))
                    .count();
                (
                    name.as_str(),
                    reading.error.clone().unwrap_or_else(|| "no answer".into()),
                    down,
                    self.ticks.len(),
                )
            })
            .collect()
    }

    fn series<T>(&self, pick: impl Fn(&'a Values) -> Option<&'a T>) -> Vec<(f64, &'a T)> {
        let start = self.ticks.first().map(|t| t.timestamp);
        self.ticks
            .iter()
            .filter_map(|tick| {
                let values = tick
                    .sources
                    .values()
                    .find_map(|r| r.values.as_ref().and_then(&pick))?;
                let secs = start.map_or(0.0, |s| {
                    (tick.timestamp - s).num_milliseconds() as f64 / 1000.0
                });
                Some((secs, values))
            })
            .collect()
    }

    /// PostgreSQL readings.
    pub fn postgres(&self) -> Vec<(f64, &'a PostgresValues)> {
        self.series(|v| match v {
            Values::Postgres(p) => Some(p),
            _ => None,
        })
    }

    /// Redis readings.
    pub fn redis(&self) -> Vec<(f64, &'a RedisValues)> {
        self.series(|v| match v {
            Values::Redis(r) => Some(r),
            _ => None,
        })
    }

    /// Host readings.
    pub fn host(&self) -> Vec<(f64, &'a HostValues)> {
        self.series(|v| match v {
            Values::Host(h) => Some(h),
            _ => None,
        })
    }

    /// The profiled processes over the ticks at or after `since` (all when `None`), each
    /// one's ticks merged.
    pub fn profiles_since(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Vec<monitor::sample::profile::ProcessProfile> {
        self.profiles_between(since, None)
    }

    /// The profiled processes over the ticks at or after `since` and before `until` (either
    /// end open when `None`), each one's ticks merged.
    pub fn profiles_between(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
        until: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Vec<monitor::sample::profile::ProcessProfile> {
        let readings = self
            .ticks
            .iter()
            .filter(|t| since.is_none_or(|s| t.timestamp >= s))
            .filter(|t| until.is_none_or(|u| t.timestamp < u))
            .flat_map(|t| t.sources.values())
            .filter_map(|r| match r.values.as_ref() {
                Some(Values::Profiles(p)) => Some(p),
                _ => None,
            });
        monitor::sample::profile::merge(readings.flat_map(|p| &p.processes))
    }

    /// Each container's readings, by name.
    pub fn containers(&self) -> BTreeMap<&'a str, Vec<(f64, &'a ContainerValues)>> {
        let mut by_name: BTreeMap<&'a str, Vec<(f64, &'a ContainerValues)>> = BTreeMap::new();
        let docker = self.series(|v| match v {
            Values::Docker(d) => Some(d),
            _ => None,
        });
        for (at, values) in docker {
            for (name, container) in &values.containers {
                by_name
                    .entry(name.as_str())
                    .or_default()
                    .push((at, container));
            }
        }
        by_name
    }
}

/// How many times the last third's p50 must be the first third's to call latency unbounded.
const OVER_CAPACITY_GROWTH: f64 = 2.5;

/// And by how much at least, ms: a fast API's 2 ms becoming 6 ms is no queue.
const OVER_CAPACITY_MIN_MS: f64 = 100.0;

/// The open model over capacity: work arrived faster than the API answered, so it queued and
/// the latency grew through the run (a queue with no bound but the users' cap).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverCapacity {
    /// Iterations scheduled per second.
    pub asked_per_sec: f64,
    /// Requests an iteration sent, on average (1 or more).
    pub per_iteration: f64,
    /// Steady requests answered per second.
    pub answered_per_sec: f64,
    /// The lowest per-second p50 of the first third of the run, ms: before the queue built.
    pub early_p50_ms: f64,
    /// The median per-second p50 of the last third, ms.
    pub late_p50_ms: f64,
    /// Iterations dropped (users at their cap, all waiting on the API).
    pub dropped: u64,
}

/// The per-second p50s of the seconds with answers (6 at least): the lowest of the first
/// third, the median of the last third, and the least-squares slope over them all (ms/s).
fn p50_trend(history: &[HistoryRow]) -> Option<(f64, f64, f64)> {
    let p50: Vec<(f64, f64)> = history
        .iter()
        .filter(|row| row.interval.count > 0)
        .map(|row| (row.at_secs as f64, row.interval.percentile_ms(50.0)))
        .collect();
    if p50.len() < 6 {
        return None;
    }
    let third = p50.len() / 3;
    let early = p50[..third]
        .iter()
        .map(|(_, ms)| *ms)
        .fold(f64::MAX, f64::min);
    let mut late: Vec<f64> = p50[p50.len() - third..].iter().map(|(_, ms)| *ms).collect();
    late.sort_by(f64::total_cmp);
    let late = late[late.len() / 2];
    let n = p50.len() as f64;
    let (mean_t, mean_ms) = (
        p50.iter().map(|(t, _)| t).sum::<f64>() / n,
        p50.iter().map(|(_, ms)| ms).sum::<f64>() / n,
    );
    let covariance: f64 = p50
        .iter()
        .map(|(t, ms)| (t - mean_t) * (ms - mean_ms))
        .sum();
    let variance: f64 = p50.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    Some((early, late, covariance / variance.max(1e-9)))
}

/// Everything a rule may read.
#[derive(Debug)]
pub struct Evidence<'a> {
    /// Totals of the run.
    pub stats: &'a Stats,
    /// The run second by second.
    pub history: &'a [HistoryRow],
    /// How long it ran.
    pub duration: Duration,
    /// Most users at once.
    pub peak_users: u64,
    /// Threads that ran users.
    pub threads: usize,
    /// When `--memory-limit` stopped the ramp: (seconds, users, RSS bytes).
    pub memory_limit_hit: Option<(u64, u64, u64)>,
    /// The open model's cap on users, when the run had an arrival rate.
    pub users_cap: Option<u64>,
    /// The thresholds.
    pub targets: &'a Targets,
    /// The targets' verdicts.
    pub verdicts: &'a [Verdict],
    /// The steady state, all endpoints merged.
    pub steady: EndpointStats,
    /// The backend's ticks.
    pub backend: Backend<'a>,
    /// Whether monitor sources were set (with no tick, the run ended before their first).
    pub backend_watched: bool,
    /// The last log lines of the watched worker containers, by container name.
    pub worker_logs: BTreeMap<String, Vec<String>>,
    /// loadgen's own workers, when the run was distributed.
    pub cluster: Option<&'a crate::outcome::ClusterSummary>,
    /// Users stuck waiting for answers.
    pub stuck: StuckUsers,
    /// Celery task failures from the result backend and the worker logs, most frequent first.
    pub task_failures: Vec<super::tasks::SeenFailure>,
}

impl<'a> Evidence<'a> {
    /// The evidence of a finished run judged by `verdicts`.
    pub fn new(
        outcome: &'a RunOutcome,
        targets: &'a Targets,
        verdicts: &'a [Verdict],
        worker_logs: BTreeMap<String, Vec<String>>,
    ) -> Self {
        Self {
            stats: &outcome.stats,
            history: &outcome.history,
            duration: outcome.duration,
            peak_users: outcome.peak_users,
            threads: outcome.threads,
            memory_limit_hit: outcome.memory_limit_hit,
            users_cap: outcome.users_cap,
            cluster: outcome.cluster.as_ref(),
            targets,
            verdicts,
            steady: outcome.stats.aggregated(Phase::Steady),
            backend: Backend::new(&outcome.backend),
            backend_watched: outcome.backend_watched,
            worker_logs,
            stuck: StuckUsers::of(&outcome.stats, &outcome.history),
            task_failures: super::tasks::merged(
                &Backend::new(&outcome.backend),
                &outcome.task_failures,
            ),
        }
    }

    /// When the steady state began on the wall clock: the start of the first second the run
    /// had all its users (the ramp over); `None` without a timeline (every tick counts then).
    pub fn steady_since(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let full = self
            .history
            .iter()
            .find(|row| row.users >= self.peak_users && self.peak_users > 0)?;
        Some(chrono::DateTime::<chrono::Utc>::from(full.timestamp) - chrono::Duration::seconds(1))
    }

    /// The profiled processes over the steady state, each one's ticks merged.
    pub fn steady_profiles(&self) -> Vec<monitor::sample::profile::ProcessProfile> {
        self.backend.profiles_since(self.steady_since())
    }

    /// The profiled processes while the users ramped up, before the steady state (none when
    /// the run never reached it): where the start-up requests' work shows.
    pub fn ramp_profiles(&self) -> Vec<monitor::sample::profile::ProcessProfile> {
        match self.steady_since() {
            Some(steady) => self.backend.profiles_between(None, Some(steady)),
            None => Vec::new(),
        }
    }

    /// Requests of the whole run, start-up and steady.
    pub fn total_requests(&self) -> u64 {
        self.stats.endpoints.values().map(|e| e.count).sum()
    }

    /// Answers with `status`, all endpoints and phases.
    pub fn status_total(&self, status: u16) -> u64 {
        self.stats
            .endpoints
            .values()
            .map(|e| e.status_count(status))
            .sum()
    }

    /// Failures whose kind passes `wanted`.
    pub fn failures(
        &self,
        wanted: impl Fn(FailureKind) -> bool,
    ) -> impl Iterator<Item = (&'a FailureKey, &'a FailureStats)> {
        self.stats
            .failures
            .iter()
            .filter(move |(k, _)| wanted(k.kind))
    }

    /// When the first failure whose kind passes `wanted` happened, s into the run.
    pub fn first_failure_secs(&self, wanted: impl Fn(FailureKind) -> bool) -> Option<f64> {
        self.failures(wanted)
            .map(|(_, f)| f.first_seen_secs)
            .reduce(f64::min)
    }

    /// The steady-state p95, ms.
    pub fn p95_ms(&self) -> f64 {
        self.steady.percentile_ms(95.0)
    }

    /// Whether the steady state missed the p95 target.
    pub fn slow(&self) -> bool {
        self.steady.count > 0 && self.p95_ms() >= self.targets.p95_ms
    }

    /// Whether the API fell behind: slow against the p95 target, or, in the open model,
    /// iterations dropped at the users' cap while the generator kept up (every user was
    /// waiting on the API, so the answers it did give can look fast). The rules that name a
    /// layer's limit (a full pool, one saturated core, a container's CPU) judge by this.
    pub fn strained(&self) -> bool {
        self.slow()
            || (self.steady.count > 0
                && self.stats.arrivals.total.dropped > 0
                && self.generator_busy_secs() < 3)
    }

    /// Failed requests, all endpoints and phases.
    pub fn failed_requests(&self) -> u64 {
        self.stats.endpoints.values().map(|e| e.failures).sum()
    }

    /// `count` failed requests as a share of them all.
    pub fn failure_share(&self, count: u64) -> Option<Explained> {
        let all = self.failed_requests();
        (all > 0 && count > 0).then(|| Explained {
            pct: (count as f64 * 100.0 / all as f64).min(100.0),
            of: Trouble::Failures,
        })
    }

    /// The latency of an unhurried request, µs: the steady state's 10th percentile.
    fn unhurried_us(&self) -> f64 {
        self.steady.percentile_ms(10.0) * 1000.0
    }

    /// The time the requests that finished in `row` spent above the unhurried latency, µs.
    fn excess_us(&self, row: &HistoryRow, unhurried_us: f64) -> f64 {
        (row.interval.total_us as f64 - row.interval.count as f64 * unhurried_us).max(0.0)
    }

    /// The slowdown (time above the unhurried latency) of the seconds whose end is near one
    /// of the backend's samples at `when` (seconds since its first tick), as a share of the
    /// whole run's: how much of it happened while a condition that the samples show held.
    pub fn slowdown_share_at(&self, when: &[f64]) -> Option<Explained> {
        let start = self.backend.start()?;
        let unhurried = self.unhurried_us();
        let total: f64 = self
            .history
            .iter()
            .map(|r| self.excess_us(r, unhurried))
            .sum();
        if total <= 0.0 || when.is_empty() {
            return None;
        }
        let inside: f64 = self
            .history
            .iter()
            .filter(|row| {
                let end = chrono::DateTime::<chrono::Utc>::from(row.timestamp) - start;
                let end = end.num_milliseconds() as f64 / 1000.0;
                // A sample describes the second before it; a request counted in a second may
                // have waited through the one before.
                when.iter().any(|t| *t >= end - 1.5 && *t <= end + 0.5)
            })
            .map(|r| self.excess_us(r, unhurried))
            .sum();
        self.slowdown(inside / total)
    }

    /// A share of the slowdown, from a fraction.
    pub fn slowdown(&self, fraction: f64) -> Option<Explained> {
        (fraction.is_finite() && fraction > 0.0).then(|| Explained {
            pct: (fraction * 100.0).min(100.0),
            of: Trouble::Slowdown,
        })
    }

    /// The slowdown of one endpoint's steady requests (their time above the unhurried latency)
    /// as a share of all the steady requests': what a cause inside that endpoint explains at
    /// most.
    pub fn endpoint_slowdown(&self, method: &str, name: &str) -> Option<Explained> {
        let all_us = self.steady_excess_us();
        let unhurried = self.unhurried_us();
        let (_, endpoint) = self.stats.endpoints.iter().find(|(key, _)| {
            key.phase == Phase::Steady && &*key.method == method && &*key.name == name
        })?;
        let excess_us = (endpoint.total_us as f64 - endpoint.count as f64 * unhurried).max(0.0);
        (all_us > 0.0).then(|| self.slowdown((excess_us / all_us).min(1.0)))?
    }

    /// The steady requests' slowdown: their time above the unhurried latency, µs.
    pub fn steady_excess_us(&self) -> f64 {
        (self.steady.total_us as f64 - self.steady.count as f64 * self.unhurried_us()).max(0.0)
    }

    /// Seconds in which loadgen's CPU was near its threads' cores or its timers fired 100 ms
    /// late (in a distributed run, the busiest worker's): the generator, not the API, held
    /// the load back then.
    pub fn generator_busy_secs(&self) -> usize {
        if let Some(cluster) = self.cluster {
            // Summed over workers, the CPU is no one process's: the busiest worker's seconds.
            let most = cluster.workers.iter().map(|w| w.saturated_secs).max();
            return most.unwrap_or(0) as usize;
        }
        let cores = self.threads.max(1) as f64 * 100.0;
        self.history
            .iter()
            .filter(|h| h.loadgen_cpu_pct >= 0.9 * cores || h.timer_lag_ms >= 100.0)
            .count()
    }

    /// The open model over the API's capacity (see [`OverCapacity`]), when the run shows it
    /// and the generator kept up.
    pub fn over_capacity(&self) -> Option<OverCapacity> {
        let counts = self.stats.arrivals.total;
        if counts.scheduled == 0 || self.generator_busy_secs() >= 3 {
            return None;
        }
        let (early_p50_ms, late_p50_ms, slope) = p50_trend(self.history)?;
        let secs = self.duration.as_secs_f64().max(1e-9);
        let started = counts.scheduled.saturating_sub(counts.dropped).max(1);
        // An iteration may send several requests: what the schedule asked in requests.
        let sent = self.steady.count + self.stats.in_flight_at_stop;
        let per_iteration = (sent as f64 / started as f64).max(1.0);
        let asked_per_sec = counts.scheduled as f64 / secs;
        let answered_per_sec = self.steady.count as f64 / secs;
        let short = answered_per_sec < 0.9 * asked_per_sec * per_iteration;
        let grew = slope > 0.0
            && late_p50_ms >= OVER_CAPACITY_GROWTH * early_p50_ms
            && late_p50_ms - early_p50_ms >= OVER_CAPACITY_MIN_MS;
        (short && grew).then_some(OverCapacity {
            asked_per_sec,
            per_iteration,
            answered_per_sec,
            early_p50_ms,
            late_p50_ms,
            dropped: counts.dropped,
        })
    }

    /// Whether the host's CPU was saturated (85 % or more) in at least a third of its samples,
    /// 3 or more: then more workers, or more of anything, would only compete for it.
    pub fn host_saturated(&self) -> bool {
        let host = self.backend.host();
        let hot = host.iter().filter(|(_, h)| h.cpu_pct >= 85.0).count();
        hot >= 3 && hot * 3 >= host.len()
    }
}
