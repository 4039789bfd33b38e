//! The run second by second: what the threads' shards of each second add up to, reduced to a
//! row that is cheap to keep for hours (no histogram per second per endpoint), and the run's
//! cumulative figures at that second, for Locust's history "Total" columns.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::endpoint::new_histogram;
use super::{ArrivalCounts, EndpointStats, InFlightLevel, Key, PERCENTILES, Phase, Shard, Stats};

/// The window of Locust's "current" percentiles (`CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW`).
const CURRENT_WINDOW_SECS: usize = 10;

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
    /// Requests waiting for their answers, as the threads last reported them when the row was
    /// made.
    pub in_flight: InFlightLevel,
    /// Every request of the run so far (start-up and steady), for Locust's "Total" columns.
    pub cumulative: Cumulative,
    /// Each of Locust's rows at this second, kept only for `--csv-full-history`.
    pub per_name: Option<PerNameSecond>,
    /// The open model's iterations due in this second: scheduled, dropped, started late.
    pub arrivals: ArrivalCounts,
    /// Whether the run's figures were reset since the row before (`--reset-stats`, the web
    /// UI): the totals made from the timeline start again from this row.
    pub reset: bool,
}

/// Locust's rows (every request of a name and method, start-up included) at one second, as
/// `--csv-full-history` writes them.
#[derive(Debug, Clone)]
pub struct PerNameSecond {
    /// One entry per name and method that has had a request, sorted as Locust sorts them.
    pub entries: Vec<NameSecond>,
    /// Locust's "current" percentiles of all requests: the last 10 seconds, ms.
    pub aggregated_current_ms: [f64; 11],
    /// The run so far as handed over when the row was made: the sum of the entries' totals,
    /// as Locust's Aggregated row is of its entries.
    pub aggregated: Cumulative,
}

/// One of Locust's rows at one second.
#[derive(Debug, Clone)]
pub struct NameSecond {
    /// Name.
    pub name: Arc<str>,
    /// HTTP method.
    pub method: Arc<str>,
    /// Requests that finished in this second.
    pub requests: u64,
    /// Failures in this second.
    pub failures: u64,
    /// Percentiles of the last 10 seconds ([`PERCENTILES`]), ms; 0 when none finished then.
    pub current_ms: [f64; 11],
    /// The row so far.
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
    /// Locust's reported percentiles of the run so far ([`PERCENTILES`]), ms.
    pub percentiles_ms: [f64; 11],
}

impl Cumulative {
    pub(crate) fn of(totals: &Stats) -> Self {
        let steady_p95_ms = totals.aggregated(Phase::Steady).percentile_ms(95.0);
        let all = totals.aggregated_all();
        Self {
            steady_p95_ms,
            ..Self::of_row(&all)
        }
    }

    /// One row's figures so far (`steady_p95_ms` left at 0).
    pub(crate) fn of_row(all: &EndpointStats) -> Self {
        Self {
            steady_p95_ms: 0.0,
            requests: all.count,
            failures: all.failures,
            median_ms: all.percentile_ms(50.0),
            average_ms: all.average_ms(),
            min_ms: all.min_ms(),
            max_ms: all.max_ms(),
            average_bytes: all.average_bytes(),
            percentiles_ms: PERCENTILES.map(|p| all.percentile_ms(p)),
        }
    }
}

/// One endpoint's second, reduced to a few numbers (histograms per second would cost
/// megabytes an hour).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointSecond {
    /// Start-up or steady state.
    pub phase: Phase,
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

impl EndpointSecond {
    /// The p95 of this second, ms.
    pub fn p95_ms(&self) -> f64 {
        self.percentiles_ms[1]
    }
}

/// Adds requests handed over after their second's row was made to that row (rows are one a
/// second from the first; the last row takes any whose row is missing).
pub(crate) fn add_late(history: &mut [HistoryRow], late: Vec<(u64, EndpointStats)>) {
    for (second, requests) in late {
        let index = usize::try_from(second).unwrap_or(usize::MAX);
        let position = match history.get(index) {
            Some(row) if row.at_secs == second + 1 => Some(index),
            _ => history.iter().rposition(|row| row.at_secs == second + 1),
        };
        if let Some(row) = position
            .or(history.len().checked_sub(1))
            .and_then(|i| history.get_mut(i))
        {
            row.interval.merge(&requests);
        }
    }
}

/// The threads' shards, put together second by second: every request in the second it
/// finished in, and the other figures (per endpoint, jobs, timers) as they were handed over.
#[derive(Default)]
pub(crate) struct Second {
    /// When the run started: each row's timestamp is the end of its second.
    started: Option<SystemTime>,
    /// Requests of the seconds not yet made rows, by the second they finished in.
    pending: BTreeMap<u64, EndpointStats>,
    /// The open model's iterations of the seconds not yet made rows, by the second due.
    arrivals: BTreeMap<u64, ArrivalCounts>,
    by_endpoint: BTreeMap<Key, EndpointStats>,
    jobs_done: u64,
    in_flight: BTreeMap<usize, u64>,
    requests_in_flight: BTreeMap<usize, InFlightLevel>,
    timer_lag_us: u64,
    /// Kept only for `--csv-full-history`.
    current: Option<CurrentWindow>,
    /// The figures were reset since the last row.
    reset: bool,
}

/// Figures by Locust row: (name, method).
type ByName<T> = BTreeMap<(Arc<str>, Arc<str>), T>;

/// The latency histograms of the last [`CURRENT_WINDOW_SECS`] seconds, by Locust row (name,
/// method), and of all requests: what Locust's "current" percentiles are computed over.
#[derive(Default)]
struct CurrentWindow {
    seconds: VecDeque<(ByName<Histogram<u64>>, Histogram<u64>)>,
}

impl CurrentWindow {
    fn push(&mut self, by_endpoint: &BTreeMap<Key, EndpointStats>, all: &EndpointStats) {
        let mut by_name: ByName<Histogram<u64>> = BTreeMap::new();
        for (key, stats) in by_endpoint {
            let _ = by_name
                .entry((key.name.clone(), key.method.clone()))
                .or_insert_with(new_histogram)
                .add(&stats.histogram);
        }
        if self.seconds.len() == CURRENT_WINDOW_SECS {
            self.seconds.pop_front();
        }
        self.seconds.push_back((by_name, all.histogram.clone()));
    }

    /// Percentiles over the window, ms, of one row (`Some`) or of all requests (`None`).
    fn percentiles(&self, row: Option<&(Arc<str>, Arc<str>)>) -> [f64; 11] {
        let mut merged = new_histogram();
        for (by_name, all) in &self.seconds {
            let second = match row {
                Some(row) => by_name.get(row),
                None => Some(all),
            };
            if let Some(histogram) = second {
                let _ = merged.add(histogram);
            }
        }
        if merged.is_empty() {
            return [0.0; 11];
        }
        PERCENTILES.map(|p| merged.value_at_percentile(p) as f64 / 1000.0)
    }
}

impl Second {
    /// The seconds of a run that started at `started`.
    pub(crate) fn starting_at(started: SystemTime) -> Self {
        Self {
            started: Some(started),
            ..Self::default()
        }
    }

    /// Keeps what `--csv-full-history` writes: each of Locust's rows every second.
    pub(crate) fn keep_per_name(&mut self) {
        self.current = Some(CurrentWindow::default());
    }

    /// Forgets the window of current percentiles and marks the next row as the first after a
    /// reset (Locust's `--reset-stats`).
    pub(crate) fn reset_window(&mut self) {
        self.reset = true;
        if let Some(window) = &mut self.current {
            window.seconds.clear();
        }
    }

    /// The last second a request finished in, among those not yet made rows.
    pub(crate) fn last_pending(&self) -> Option<u64> {
        let requests = self.pending.keys().next_back().copied();
        let iterations = self.arrivals.keys().next_back().copied();
        requests.max(iterations)
    }

    /// The requests of seconds before `second` that came after their rows were made (a thread
    /// that handed them over late): for the caller to add to those rows.
    pub(crate) fn take_late(&mut self, second: u64) -> Vec<(u64, EndpointStats)> {
        let later = self.pending.split_off(&second);
        std::mem::replace(&mut self.pending, later)
            .into_iter()
            .collect()
    }

    pub(crate) fn add(&mut self, thread: usize, shard: &Shard) {
        for (second, requests) in &shard.interval.by_second {
            self.pending.entry(*second).or_default().merge(requests);
        }
        for (second, counts) in &shard.interval.arrivals {
            self.arrivals.entry(*second).or_default().merge(counts);
        }
        for (key, stats) in &shard.stats.endpoints {
            // The requests cut off at the stop ended in no second: they are in the totals.
            self.by_endpoint
                .entry(key.clone())
                .or_default()
                .merge_answered(stats);
        }
        self.jobs_done += shard
            .stats
            .jobs
            .values()
            .map(|j| j.completed + j.failed + j.unfinished + j.unknown)
            .sum::<u64>();
        self.in_flight.insert(thread, shard.jobs_in_flight);
        self.requests_in_flight.insert(thread, shard.in_flight);
        self.timer_lag_us = self.timer_lag_us.max(shard.timer_lag_us);
    }

    /// What an update carries before the first second's row is made: no second yet (`at_secs`
    /// 0), the run's figures so far.
    pub(crate) fn placeholder(&self, users: u64, own: (f64, u64), totals: &Stats) -> HistoryRow {
        HistoryRow {
            at_secs: 0,
            timestamp: self.started.unwrap_or_else(SystemTime::now),
            users,
            interval: EndpointStats::default(),
            loadgen_cpu_pct: own.0,
            loadgen_rss_bytes: own.1,
            timer_lag_ms: self.timer_lag_us as f64 / 1000.0,
            endpoints: Vec::new(),
            jobs_done: 0,
            jobs_in_flight: self.in_flight.values().sum(),
            in_flight: self.requests_in_flight(),
            cumulative: Cumulative::of(totals),
            per_name: None,
            arrivals: ArrivalCounts::default(),
            reset: false,
        }
    }

    /// The row of the run's `second` (`0` is the first; its row is at 1 s): the requests that
    /// finished in it, and what else was handed over since the last row. The in-flight levels
    /// carry over to the next.
    pub(crate) fn row(
        &mut self,
        second: u64,
        users: u64,
        own: (f64, u64),
        totals: &Stats,
    ) -> HistoryRow {
        let at_secs = second + 1;
        let interval = self.pending.remove(&second).unwrap_or_default();
        // Iterations handed over after their second's row go to the next row made.
        let later = self.arrivals.split_off(&(second + 1));
        let mut arrivals = ArrivalCounts::default();
        for counts in std::mem::replace(&mut self.arrivals, later).values() {
            arrivals.merge(counts);
        }
        let per_name = self
            .current
            .as_mut()
            .map(|window| Self::per_name(window, &self.by_endpoint, &interval, totals));
        let endpoints = std::mem::take(&mut self.by_endpoint)
            .into_iter()
            .map(|(key, e)| EndpointSecond {
                phase: key.phase,
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
            timestamp: self.started.map_or_else(SystemTime::now, |started| {
                started + std::time::Duration::from_secs(at_secs)
            }),
            users,
            interval,
            loadgen_cpu_pct: own.0,
            loadgen_rss_bytes: own.1,
            timer_lag_ms: std::mem::take(&mut self.timer_lag_us) as f64 / 1000.0,
            endpoints,
            jobs_done: std::mem::take(&mut self.jobs_done),
            jobs_in_flight: self.in_flight.values().sum(),
            in_flight: self.requests_in_flight(),
            cumulative: Cumulative::of(totals),
            per_name,
            arrivals,
            reset: std::mem::take(&mut self.reset),
        }
    }

    /// Every thread's requests in flight, as each last reported them.
    pub(crate) fn requests_in_flight(&self) -> InFlightLevel {
        let mut level = InFlightLevel::default();
        for thread in self.requests_in_flight.values() {
            level.merge(thread);
        }
        level
    }

    fn per_name(
        window: &mut CurrentWindow,
        by_endpoint: &BTreeMap<Key, EndpointStats>,
        all: &EndpointStats,
        totals: &Stats,
    ) -> PerNameSecond {
        window.push(by_endpoint, all);
        // Locust's rows have no start-up phase: both phases of a name and method add up.
        let mut so_far: ByName<EndpointStats> = BTreeMap::new();
        for (key, stats) in &totals.endpoints {
            so_far
                .entry((key.name.clone(), key.method.clone()))
                .or_default()
                .merge(stats);
        }
        let mut this_second: ByName<(u64, u64)> = BTreeMap::new();
        for (key, stats) in by_endpoint {
            let counts = this_second
                .entry((key.name.clone(), key.method.clone()))
                .or_default();
            counts.0 += stats.count;
            counts.1 += stats.failures;
        }
        let entries = so_far
            .iter()
            .filter(|(_, stats)| stats.count > 0)
            .map(|(row, stats)| {
                let (requests, failures) = this_second.get(row).copied().unwrap_or_default();
                NameSecond {
                    name: row.0.clone(),
                    method: row.1.clone(),
                    requests,
                    failures,
                    current_ms: window.percentiles(Some(row)),
                    cumulative: Cumulative::of_row(stats),
                }
            })
            .collect();
        PerNameSecond {
            entries,
            aggregated_current_ms: window.percentiles(None),
            aggregated: Cumulative::of(totals),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second in which `name` answered `count` requests of `latency_us` each, in `phase`.
    fn shard(phase: Phase, name: &str, count: u64, latency_us: u64) -> Shard {
        let mut stats = EndpointStats::default();
        for _ in 0..count {
            stats.record(latency_us, 10, Some(200), false);
        }
        let mut shard = Shard::default();
        shard.interval.by_second.insert(0, stats.clone());
        shard.stats.endpoints.insert(
            Key {
                phase,
                method: "GET".into(),
                name: name.into(),
            },
            stats,
        );
        shard
    }

    #[test]
    fn full_history_percentiles_cover_the_last_ten_seconds_and_totals_the_whole_run() {
        let mut second = Second::default();
        second.keep_per_name();
        let mut totals = Stats::default();
        let mut rows = Vec::new();
        // 10 slow seconds (start-up requests count in Locust's rows too), then 10 fast ones.
        for at in 1..=20 {
            let (phase, latency_us) = if at <= 10 {
                (Phase::Startup, 800_000)
            } else {
                (Phase::Steady, 2_000)
            };
            let mut shard = shard(phase, "/items", 5, latency_us);
            let requests = shard.interval.by_second.remove(&0).unwrap();
            shard.interval.by_second.insert(at - 1, requests);
            totals.merge(&shard.stats);
            second.add(0, &shard);
            rows.push(second.row(at - 1, 5, (0.0, 0), &totals));
        }
        let at = |secs: usize| rows[secs - 1].per_name.as_ref().unwrap();
        let row = &at(15).entries[0];
        assert_eq!((&*row.name, &*row.method), ("/items", "GET"));
        assert_eq!((row.requests, row.cumulative.requests), (5, 75));
        // Seconds 6 to 15: half slow, half fast.
        assert!(
            row.current_ms[0] < 10.0 && row.current_ms[10] > 700.0,
            "{row:?}"
        );
        let row = &at(20).entries[0];
        assert!(row.current_ms[10] < 10.0, "only fast seconds left: {row:?}");
        assert!(
            row.cumulative.max_ms > 700.0,
            "the total keeps the slow ones"
        );
        assert_eq!(at(20).aggregated_current_ms, row.current_ms);
        // Without --csv-full-history nothing per name is kept.
        assert!(
            Second::default()
                .row(1, 0, (0.0, 0), &totals)
                .per_name
                .is_none()
        );
    }

    #[test]
    fn each_request_counts_in_the_second_it_finished_however_late_its_thread_hands_it_over() {
        let mut second = Second::default();
        let totals = Stats::default();
        let mut history = Vec::new();
        // Thread 0 hands its 10 requests a second over on time; thread 1, busy, hands over
        // its 4 a second of seconds 0 to 2 only after the rows of seconds 0 and 1 were made.
        let of_second = |at: u64, count: u64| {
            let mut shard = shard(Phase::Steady, "/items", count, 1_000);
            let requests = shard.interval.by_second.remove(&0).unwrap();
            shard.interval.by_second.insert(at, requests);
            shard
        };
        for at in 0..2 {
            second.add(0, &of_second(at, 10));
            add_late(&mut history, second.take_late(at));
            history.push(second.row(at, 2, (0.0, 0), &totals));
        }
        second.add(0, &of_second(2, 10));
        let mut late = shard(Phase::Steady, "/items", 0, 1_000);
        late.interval.by_second.clear();
        for at in 0..3 {
            let requests = of_second(at, 4).interval.by_second.remove(&at).unwrap();
            late.interval.by_second.insert(at, requests);
        }
        second.add(1, &late);
        add_late(&mut history, second.take_late(2));
        history.push(second.row(2, 2, (0.0, 0), &totals));
        let counts: Vec<u64> = history.iter().map(|row| row.interval.count).collect();
        assert_eq!(counts, [14, 14, 14], "no empty second, none doubled");
        let at: Vec<u64> = history.iter().map(|row| row.at_secs).collect();
        assert_eq!(at, [1, 2, 3]);
    }
}
