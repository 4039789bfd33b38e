//! The run second by second: what the threads' shards of each second add up to, reduced to a
//! row that is cheap to keep for hours (no histogram per second per endpoint), and the run's
//! cumulative figures at that second, for Locust's history "Total" columns.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::{EndpointStats, Key, Phase, Shard, Stats};

/// One second of the run.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// Seconds since the start (end of the second).
    pub at_secs: u64,
    /// Wall clock time.
    pub timestamp: SystemTime,
    /// Users running.
    pub users: u64,
    /// Requests that finished in this second (start-up and steady).
    pub interval: EndpointStats,
    /// loadgen's own CPU use, percent of one core.
    pub loadgen_cpu_pct: f64,
    /// loadgen's resident memory, bytes.
    pub loadgen_rss_bytes: u64,
    /// The latest the users' timers fired in this second, ms.
    pub timer_lag_ms: f64,
    /// Each endpoint in this second: count, failures, p50, p95, p99 (ms).
    pub endpoints: Vec<EndpointSecond>,
    /// Followed jobs that ended in this second.
    pub jobs_done: u64,
    /// Jobs being followed at the end of this second.
    pub jobs_in_flight: u64,
    /// Every request of the run so far (start-up and steady), for Locust's "Total" columns.
    pub cumulative: Cumulative,
}

/// The run so far, as Locust's history "Total ..." columns give it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cumulative {
    /// Requests.
    pub requests: u64,
    /// Failures.
    pub failures: u64,
    /// Median, ms.
    pub median_ms: f64,
    /// Mean, ms.
    pub average_ms: f64,
    /// Fastest, ms.
    pub min_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Mean body size, bytes.
    pub average_bytes: f64,
    /// p95 of the steady state alone, ms (what the live view and the p95 target follow).
    pub steady_p95_ms: f64,
    /// Locust's reported percentiles of the run so far ([`crate::report::PERCENTILES`]), ms.
    pub percentiles_ms: [f64; 11],
}

impl Cumulative {
    pub(crate) fn of(totals: &Stats) -> Self {
        let mut all = totals.aggregated(Phase::Steady);
        let steady_p95_ms = all.percentile_ms(95.0);
        all.merge(&totals.aggregated(Phase::Startup));
        Self {
            steady_p95_ms,
            requests: all.count,
            failures: all.failures,
            median_ms: all.percentile_ms(50.0),
            average_ms: all.average_ms(),
            min_ms: all.min_ms(),
            max_ms: all.max_ms(),
            average_bytes: all.average_bytes(),
            percentiles_ms: crate::report::PERCENTILES.map(|p| all.percentile_ms(p)),
        }
    }
}

/// One endpoint's second, reduced to a few numbers (histograms per second would cost
/// megabytes an hour).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointSecond {
    /// HTTP method.
    pub method: String,
    /// Name.
    pub name: String,
    /// Requests.
    pub requests: u64,
    /// Failures.
    pub failures: u64,
    /// p50, p95, p99, ms.
    pub percentiles_ms: [f64; 3],
}

/// What the threads' shards of one second add up to.
#[derive(Default)]
pub(crate) struct Second {
    all: EndpointStats,
    by_endpoint: BTreeMap<Key, EndpointStats>,
    jobs_done: u64,
    in_flight: BTreeMap<usize, u64>,
    timer_lag_us: u64,
}

impl Second {
    /// Whether any request finished in this second so far.
    pub(crate) fn has_requests(&self) -> bool {
        self.all.count > 0
    }

    pub(crate) fn add(&mut self, thread: usize, shard: &Shard) {
        self.all.merge(&shard.interval.all);
        for (key, stats) in &shard.stats.endpoints {
            self.by_endpoint
                .entry(key.clone())
                .or_default()
                .merge(stats);
        }
        self.jobs_done += shard
            .stats
            .jobs
            .values()
            .map(|j| j.completed + j.failed + j.unfinished + j.unknown)
            .sum::<u64>();
        self.in_flight.insert(thread, shard.jobs_in_flight);
        self.timer_lag_us = self.timer_lag_us.max(shard.timer_lag_us);
    }

    /// The row for this second; the in-flight levels carry over to the next.
    pub(crate) fn row(
        &mut self,
        at_secs: u64,
        users: u64,
        own: (f64, u64),
        totals: &Stats,
    ) -> HistoryRow {
        let endpoints = std::mem::take(&mut self.by_endpoint)
            .into_iter()
            .map(|(key, e)| EndpointSecond {
                method: key.method.to_string(),
                name: key.name.to_string(),
                requests: e.count,
                failures: e.failures,
                percentiles_ms: [
                    e.percentile_ms(50.0),
                    e.percentile_ms(95.0),
                    e.percentile_ms(99.0),
                ],
            })
            .collect();
        HistoryRow {
            at_secs,
            timestamp: SystemTime::now(),
            users,
            interval: std::mem::take(&mut self.all),
            loadgen_cpu_pct: own.0,
            loadgen_rss_bytes: own.1,
            timer_lag_ms: std::mem::take(&mut self.timer_lag_us) as f64 / 1000.0,
            endpoints,
            jobs_done: std::mem::take(&mut self.jobs_done),
            jobs_in_flight: self.in_flight.values().sum(),
            cumulative: Cumulative::of(totals),
        }
    }
}
