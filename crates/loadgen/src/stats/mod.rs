//! Measurement. Every request is recorded into the shard of the thread that made it (a
//! thread-local, so no lock and no channel message per request); once a second each thread
//! hands its shard to the aggregator, which merges it into the run's totals and its per-second
//! history. Latencies are microseconds in HdrHistograms (3 significant figures), which merge
//! exactly, so totals are the same whether one thread or many, one process or many, made them.

pub mod arrivals;
mod delta;
mod endpoint;
pub mod grouping;
mod in_flight;
pub mod overlap;
pub mod polls;
mod snapshot;
mod timeline;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::http::HttpError;

pub use arrivals::{ArrivalCounts, Arrivals, Fate};
pub use endpoint::{EndpointStats, PhaseHistograms, new_histogram};
pub use in_flight::{InFlight, InFlightLevel, STUCK_AFTER, StuckUsers};
pub use polls::{JobPolls, PollBudget};
pub use snapshot::{SelfWatchFigures, SnapshotError, StatsSnapshot};
pub use timeline::{Cumulative, EndpointSecond, HistoryRow, NameSecond, PerNameSecond};
pub(crate) use timeline::{Second, add_late};

/// The percentiles of Locust's tables and CSV files, and of the timeline's rows.
pub const PERCENTILES: [f64; 11] = [
    50.0, 66.0, 75.0, 80.0, 90.0, 95.0, 98.0, 99.0, 99.9, 99.99, 100.0,
];

/// One of [`PERCENTILES`], known by its value. Figures listed per percentile
/// (`percentiles_ms`) are in [`PERCENTILES`]' order, so a writer that reads one through a
/// `Percentile` keeps its column when the list changes; and one made in a `const`, as
/// [`P50`], [`P95`] and [`P99`] are, stops the build when the list loses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentile(usize);

impl Percentile {
    /// The percentile `p` (`95.0` for p95).
    ///
    /// # Panics
    ///
    /// When `p` is not one of [`PERCENTILES`]: at compile time in a `const`.
    pub const fn of(p: f64) -> Self {
        let mut place = 0;
        while place < PERCENTILES.len() {
            if PERCENTILES[place] == p {
                return Self(place);
            }
            place += 1;
        }
        panic!("not one of PERCENTILES");
    }

    /// Its place in [`PERCENTILES`].
    pub const fn place(self) -> usize {
        self.0
    }

    /// Its figure among `figures`, given in [`PERCENTILES`]' order; 0 when there are fewer
    /// (a report file is read from disk).
    pub fn among(self, figures: &[f64]) -> f64 {
        figures.get(self.0).copied().unwrap_or(0.0)
    }
}

/// The median.
pub const P50: Percentile = Percentile::of(50.0);
/// The 95th percentile: the p95 target's.
pub const P95: Percentile = Percentile::of(95.0);
/// The 99th percentile: the p99 target's.
pub const P99: Percentile = Percentile::of(99.0);

/// Whether a request belongs to a user's start-up (`on_start`), to the steady state, or to
/// loadgen's own following of the jobs it created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `on_start` steps: reported apart, never in the steady-state percentiles.
    Startup,
    /// The users' tasks.
    Steady,
    /// Job polls (`track`): reported apart, out of the steady-state targets and rules. Their
    /// number follows how many jobs are followed and how long they take, not the users' load,
    /// so in the steady state they would weigh its percentiles by loadgen's own choices.
    Poll,
}

impl Phase {
    /// Every phase, in report order.
    pub const ALL: [Phase; 3] = [Phase::Steady, Phase::Startup, Phase::Poll];
}

/// What a row of the statistics is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Start-up or steady state.
    pub phase: Phase,
    /// HTTP method.
    pub method: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
}

/// What kind of failure a request had: decided where it happened, so that diagnosis reads a
/// type instead of parsing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "status", rename_all = "snake_case")]
pub enum FailureKind {
    /// An answer with a status the step does not expect.
    Status(u16),
    /// Nothing listens at the address.
    Refused,
    /// The connection failed or closed before a complete answer.
    Connection,
    /// No complete answer within the timeout.
    Timeout,
    /// The answer broke HTTP/1.1 or one of loadgen's size limits.
    Protocol,
    /// Redirected more than `--max-redirects` times (a redirect loop).
    Redirects,
    /// An expected status, but the answer lacks what the step extracts from it.
    Content,
}

/// A failed request: its kind and the message for the failures table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind.
    pub kind: FailureKind,
    /// The message, e.g. `HTTP 429: Too many requests...`.
    pub message: String,
}

// Here, not in `http`: stats sits above the client, which knows nothing of how it is counted.
impl From<HttpError> for Failure {
    fn from(error: HttpError) -> Self {
        let kind = match &error {
            HttpError::Refused(_) => FailureKind::Refused,
            HttpError::Connection(_) | HttpError::Tls(_) => FailureKind::Connection,
            HttpError::Protocol(_) | HttpError::Limit(_) => FailureKind::Protocol,
            HttpError::Timeout(_) => FailureKind::Timeout,
            HttpError::TooManyRedirects(_) => FailureKind::Redirects,
        };
        Self {
            kind,
            message: error.to_string(),
        }
    }
}

/// Failures grouped by method, name and error.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailureKey {
    /// HTTP method.
    pub method: Arc<str>,
    /// Display name.
    pub name: Arc<str>,
    /// The error, e.g. `HTTP 429: Too many requests...`.
    pub error: String,
    /// Its kind.
    pub kind: FailureKind,
}

/// Count and time span of one kind of failure.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct FailureStats {
    /// Occurrences.
    pub count: u64,
    /// Seconds from the run's start to the first one.
    pub first_seen_secs: f64,
    /// Seconds from the run's start to the last one.
    pub last_seen_secs: f64,
}

impl FailureStats {
    pub(crate) fn merge(&mut self, other: &Self) {
        self.count += other.count;
        self.first_seen_secs = self.first_seen_secs.min(other.first_seen_secs);
        self.last_seen_secs = self.last_seen_secs.max(other.last_seen_secs);
    }
}

/// How a followed job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Reached a done status.
    Completed,
    /// Reached a failed status.
    Failed,
    /// The run ended while its status was still pending or processing.
    Unfinished,
    /// Followed for its track's whole timeout without reaching a final status (counted as
    /// unfinished too).
    TimedOut,
    /// Its status could never be read (every poll failed, e.g. on 429s).
    Unknown,
}

/// Followed jobs of one kind.
#[derive(Debug, Clone)]
pub struct JobStats {
    /// Creation to final status, µs, completed jobs only.
    pub completion: hdrhistogram::Histogram<u64>,
    /// Completed jobs.
    pub completed: u64,
    /// Failed jobs.
    pub failed: u64,
    /// Jobs that never reached a final status.
    pub unfinished: u64,
    /// Of those, the jobs followed for their whole timeout.
    pub timed_out: u64,
    /// Jobs whose status could not be read.
    pub unknown: u64,
    /// Jobs created while the polls were at their budget (see [`polls`]): not followed, as
    /// jobs out of the track's sample are not, and in none of the counts above.
    pub unfollowed: u64,
    /// The first failure messages seen (at most 5).
    pub failure_messages: Vec<String>,
    /// Jobs that never finished, by the status their polls last saw.
    pub last_statuses: BTreeMap<String, LastStatus>,
}

/// Unfinished jobs last seen in one status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastStatus {
    /// How many.
    pub jobs: u64,
    /// The longest any of them had it, s: a job stuck in `processing` for minutes is not one
    /// still moving.
    pub longest_secs: u64,
}

impl Default for JobStats {
    fn default() -> Self {
        Self {
            completion: new_histogram(),
            completed: 0,
            failed: 0,
            unfinished: 0,
            timed_out: 0,
            unknown: 0,
            unfollowed: 0,
            failure_messages: Vec::new(),
            last_statuses: BTreeMap::new(),
        }
    }
}

impl JobStats {
    pub(crate) fn merge(&mut self, other: &Self) {
        // Both histograms auto-resize, so adding cannot fail on range.
        let _ = self.completion.add(&other.completion);
        self.completed += other.completed;
        self.failed += other.failed;
        self.unfinished += other.unfinished;
        self.timed_out += other.timed_out;
        self.unknown += other.unknown;
        self.unfollowed += other.unfollowed;
        for message in &other.failure_messages {
            if self.failure_messages.len() < 5 && !self.failure_messages.contains(message) {
                self.failure_messages.push(message.clone());
            }
        }
        for (status, last) in &other.last_statuses {
            let mine = self.last_statuses.entry(status.clone()).or_default();
            mine.jobs += last.jobs;
            mine.longest_secs = mine.longest_secs.max(last.longest_secs);
        }
    }
}

/// Everything recorded: a thread's shard, or the merged totals.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Per endpoint and phase.
    pub endpoints: BTreeMap<Key, EndpointStats>,
    /// Failures by kind.
    pub failures: BTreeMap<FailureKey, FailureStats>,
    /// Followed jobs by kind.
    pub jobs: BTreeMap<Arc<str>, JobStats>,
    /// Times a status handler ran (e.g. a re-login on 401), by step name and status.
    pub handled: BTreeMap<(Arc<str>, u16), u64>,
    /// Errors of the scenario itself (not of the target), by message.
    pub exceptions: BTreeMap<String, u64>,
    /// Of those, the steps skipped because a value they use was never received.
    pub missing_values: u64,
    /// Requests sent a second time because a kept-alive connection turned out closed (only
    /// idempotent ones, and only when nothing came back), whether the second attempt was
    /// answered, failed or was cut off: the sum of the rows' `retries`.
    pub resent: u64,
    /// Requests still waiting for their answer when their user was stopped (at the end of the
    /// run, past `--stop-timeout`, or when the users were lowered): sent, so the server may
    /// count them; in their rows' percentiles at their age, not in their counts.
    pub in_flight_at_stop: u64,
    /// Requests whose user was stopped before a byte of them went out (while their connection
    /// opened): never sent, so the server cannot count them; in their rows' percentiles at
    /// their age, as the requests in flight.
    pub unsent_at_stop: u64,
    /// User tasks and job pollers that panicked (a bug of loadgen's): each was caught, counted
    /// and printed, and the run's exit code is 2.
    pub panics: u64,
    /// Steady latencies apart by whether start-up work was in flight beside them.
    pub startup_overlap: overlap::StartupOverlap,
    /// The open model's iterations and service times (empty in a closed run).
    pub arrivals: Arrivals,
}

impl Stats {
    /// Adds `other` into `self`; exact for every figure.
    pub fn merge(&mut self, other: &Stats) {
        for (key, stats) in &other.endpoints {
            self.endpoints.entry(key.clone()).or_default().merge(stats);
        }
        for (key, stats) in &other.failures {
            add_failure(&mut self.failures, key.clone(), *stats);
        }
        for (kind, stats) in &other.jobs {
            self.jobs.entry(kind.clone()).or_default().merge(stats);
        }
        for (key, count) in &other.handled {
            *self.handled.entry(key.clone()).or_default() += count;
        }
        for (message, count) in &other.exceptions {
            add_exception(&mut self.exceptions, message.clone(), *count);
        }
        self.missing_values += other.missing_values;
        self.resent += other.resent;
        self.in_flight_at_stop += other.in_flight_at_stop;
        self.unsent_at_stop += other.unsent_at_stop;
        self.panics += other.panics;
        self.startup_overlap.merge(&other.startup_overlap);
        self.arrivals.merge(&other.arrivals);
    }

    /// All endpoints of one phase merged into one row.
    pub fn aggregated(&self, phase: Phase) -> EndpointStats {
        let mut total = EndpointStats::default();
        for (_, stats) in self.endpoints.iter().filter(|(k, _)| k.phase == phase) {
            total.merge(stats);
        }
        total
    }

    /// Every request of every phase, in one row.
    pub fn aggregated_all(&self) -> EndpointStats {
        let mut total = EndpointStats::default();
        for stats in self.endpoints.values() {
            total.merge(stats);
        }
        total
    }
}

/// A thread's requests since its last flush, every phase together, by the second of the run
/// they finished in (`0` is the first): each counts in its own second, however late the thread
/// hands them over.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// Requests by the second they finished in.
    pub by_second: BTreeMap<u64, EndpointStats>,
    /// The open model's iterations by the second they were due in.
    pub arrivals: BTreeMap<u64, ArrivalCounts>,
}

impl Interval {
    /// Requests in all of its seconds.
    pub fn count(&self) -> u64 {
        self.by_second.values().map(|e| e.count).sum()
    }

    /// Counts one request that finished in `second`.
    fn record(
        &mut self,
        second: u64,
        latency_us: u64,
        bytes: u64,
        status: Option<u16>,
        failed: bool,
    ) {
        // Almost always the newest second: look there before searching the map.
        if let Some(mut newest) = self.by_second.last_entry()
            && *newest.key() == second
        {
            newest.get_mut().record(latency_us, bytes, status, failed);
            return;
        }
        self.by_second
            .entry(second)
            .or_default()
            .record(latency_us, bytes, status, failed);
    }
}

/// A shard handed over by a thread: what it recorded since its last flush.
#[derive(Debug, Default)]
pub struct Shard {
    /// Totals since the last flush.
    pub stats: Stats,
    /// Requests since the last flush by the second they finished in, for the per-second
    /// history.
    pub interval: Interval,
    /// How late this thread's once-a-second timer fired, µs: when the users' threads are
    /// saturated, timers fire late and every other figure is suspect.
    pub timer_lag_us: u64,
    /// Jobs this thread is following right now (a level, not a delta).
    pub jobs_in_flight: u64,
    /// This thread's requests waiting for their answers right now (a level).
    pub in_flight: InFlightLevel,
    /// Handed over at a reset's request (the reset's number): the last of what the thread
    /// recorded before it, so that the controller can leave everything up to here out of the
    /// reset figures.
    pub before_reset: Option<u64>,
}

thread_local! {
    static SHARD: RefCell<Shard> = RefCell::new(Shard::default());
}

/// The clock every recording is measured against.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    /// When the run started.
    pub start: Instant,
}

impl RunClock {
    /// Seconds since the start.
    pub fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// One finished request, as the user saw it.
#[derive(Debug)]
pub struct Sample<'a> {
    /// Which row.
    pub key: &'a Key,
    /// Time to the last byte of the answer, µs.
    pub latency_us: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// The status, if an answer came.
    pub status: Option<u16>,
    /// The failure, if it failed.
    pub error: Option<Failure>,
    /// Where the time went, when an answer came.
    pub timings: Option<crate::http::Timings>,
    /// Times it was sent again after its kept-alive connection closed unanswered.
    pub retries: u64,
}

/// Records one request into this thread's shard.
pub fn record(clock: &RunClock, sample: Sample<'_>) {
    SHARD.with(|shard| {
        let mut shard = shard.borrow_mut();
        let endpoint = match shard.stats.endpoints.get_mut(sample.key) {
            Some(endpoint) => endpoint,
            None => shard.stats.endpoints.entry(sample.key.clone()).or_default(),
        };
        let failed = sample.error.is_some();
        endpoint.record(sample.latency_us, sample.bytes, sample.status, failed);
        if let Some(timings) = &sample.timings {
            endpoint.phases.record(timings);
        }
        endpoint.retries += sample.retries;
        if sample
            .error
            .as_ref()
            .is_some_and(|f| f.kind == FailureKind::Timeout)
        {
            endpoint.timed_out += 1;
        }
        shard.stats.resent += sample.retries;
        let now = clock.secs();
        shard.interval.record(
            now as u64,
            sample.latency_us,
            sample.bytes,
            sample.status,
            failed,
        );
        if let Some(failure) = sample.error {
            let key = FailureKey {
                method: sample.key.method.clone(),
                name: sample.key.name.clone(),
                error: grouping::normalize(&failure.message),
                kind: failure.kind,
            };
            add_failure(
                &mut shard.stats.failures,
                key,
                FailureStats {
                    count: 1,
                    first_seen_secs: now,
                    last_seen_secs: now,
                },
            );
        }
    });
}

/// Adds `stats` to `key`'s row. Past [`grouping::MAX_ROWS`] rows, a new message is counted in
/// its endpoint's "other" row, unless it is more frequent than the rarest row kept, which then
/// goes there instead: the table stays bounded whatever the target answers, and keeps the
/// messages that matter when threads' tables are merged.
fn add_failure(
    failures: &mut BTreeMap<FailureKey, FailureStats>,
    key: FailureKey,
    stats: FailureStats,
) {
    if let Some(existing) = failures.get_mut(&key) {
        existing.merge(&stats);
        return;
    }
    if failures.len() < grouping::MAX_ROWS {
        failures.insert(key, stats);
        return;
    }
    let rarest = (stats.count > 1)
        .then(|| {
            failures
                .iter()
                .filter(|(k, _)| k.error != grouping::OTHER)
                .min_by_key(|(_, f)| f.count)
                .filter(|(_, f)| f.count < stats.count)
                .map(|(k, _)| k.clone())
        })
        .flatten();
    let (into_other, other_stats) = match rarest {
        Some(rarest) => {
            let evicted = failures.remove(&rarest).unwrap_or(stats);
            failures.insert(key, stats);
            (rarest, evicted)
        }
        None => (key, stats),
    };
    let other = FailureKey {
        error: grouping::OTHER.to_owned(),
        ..into_other
    };
    failures
        .entry(other)
        .and_modify(|f| f.merge(&other_stats))
        .or_insert(other_stats);
}

/// As [`add_failure`], for the scenario's own errors.
fn add_exception(exceptions: &mut BTreeMap<String, u64>, message: String, count: u64) {
    let message = if exceptions.len() >= grouping::MAX_ROWS && !exceptions.contains_key(&message) {
        grouping::OTHER.to_owned()
    } else {
        message
    };
    *exceptions.entry(message).or_default() += count;
}

/// Counts one iteration of the open model, of `user_type`, due now.
pub fn record_iteration(clock: &RunClock, user_type: &Arc<str>, fate: Fate) {
    let second = clock.secs() as u64;
    SHARD.with(|shard| {
        let mut shard = shard.borrow_mut();
        shard.stats.arrivals.count(user_type, fate);
        let mut one = ArrivalCounts::default();
        match fate {
            Fate::Started { late } => one.late = u64::from(late),
            Fate::Dropped => one.dropped = 1,
        }
        one.scheduled = 1;
        shard
            .interval
            .arrivals
            .entry(second)
            .or_default()
            .merge(&one);
    });
}

/// Adds the samples a paced user missed while a request of `latency_us` ran past its pacing
/// `interval_us`: one for each start it should have made meanwhile, at the latency that request
/// would have had (HdrHistogram's `record_correct`, as oha's `--latency-correction`). The
/// request count is unchanged; only the percentiles see them.
pub fn record_missed(key: &Key, latency_us: u64, interval_us: u64) {
    if interval_us == 0 || latency_us <= interval_us {
        return;
    }
    SHARD.with(|shard| {
        if let Some(endpoint) = shard.borrow_mut().stats.endpoints.get_mut(key) {
            let mut missed = latency_us - interval_us;
            while missed >= interval_us {
                let _ = endpoint.histogram.record(missed);
                missed -= interval_us;
            }
        }
    });
}

/// Records a steady request's service time: from its send, whatever its response time.
pub fn record_service(service_us: u64) {
    SHARD.with(|shard| shard.borrow_mut().stats.arrivals.record_service(service_us));
}

/// Counts a steady request apart by whether it overlapped start-up work (see [`overlap`]).
pub fn record_steady_overlap(latency_us: u64, overlapped: bool) {
    SHARD.with(|shard| {
        shard
            .borrow_mut()
            .stats
            .startup_overlap
            .record(latency_us, overlapped);
    });
}

/// Records that a status handler ran for `name` on `status`.
pub fn record_handled(name: &Arc<str>, status: u16) {
    SHARD.with(|shard| {
        *shard
            .borrow_mut()
            .stats
            .handled
            .entry((name.clone(), status))
            .or_default() += 1;
    });
}

/// Records an error of the scenario (a variable not set, a field missing from an answer).
pub fn record_exception(message: String) {
    let message = grouping::normalize(&message);
    SHARD.with(|shard| add_exception(&mut shard.borrow_mut().stats.exceptions, message, 1));
}

/// Records a task that panicked: `what` it was, and the panic's message.
pub fn record_panic(what: &str, payload: &(dyn std::any::Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    SHARD.with(|shard| shard.borrow_mut().stats.panics += 1);
    record_exception(format!(
        "{what} panicked (a bug in loadgen; please report it): {message}"
    ));
}

/// Records a step skipped because a value it uses was never received (the step that sets it
/// failed): a scenario error that is a consequence of earlier failures.
pub fn record_missing_value(message: String) {
    SHARD.with(|shard| shard.borrow_mut().stats.missing_values += 1);
    record_exception(message);
}

/// Notes that an unfinished job of `kind` was last seen in `status`, which it had had for
/// `held`.
pub fn record_job_last_status(kind: &Arc<str>, status: &str, held: std::time::Duration) {
    SHARD.with(|shard| {
        let mut shard = shard.borrow_mut();
        let job = shard.stats.jobs.entry(kind.clone()).or_default();
        let last = job.last_statuses.entry(status.to_owned()).or_default();
        last.jobs += 1;
        last.longest_secs = last.longest_secs.max(held.as_secs());
    });
}

/// Records a job of `kind` created and not followed: the polls were at their budget.
pub fn record_job_unfollowed(kind: &Arc<str>) {
    SHARD.with(|shard| {
        let mut shard = shard.borrow_mut();
        shard.stats.jobs.entry(kind.clone()).or_default().unfollowed += 1;
    });
}

/// Records how a followed job ended.
pub fn record_job(
    kind: &Arc<str>,
    outcome: JobOutcome,
    completion_us: u64,
    message: Option<String>,
) {
    SHARD.with(|shard| {
        let mut shard = shard.borrow_mut();
        let job = shard.stats.jobs.entry(kind.clone()).or_default();
        match outcome {
            JobOutcome::Completed => {
                job.completed += 1;
                let _ = job.completion.record(completion_us.max(1));
            }
            JobOutcome::Failed => job.failed += 1,
            JobOutcome::Unfinished => job.unfinished += 1,
            JobOutcome::TimedOut => {
                job.unfinished += 1;
                job.timed_out += 1;
            }
            JobOutcome::Unknown => job.unknown += 1,
        }
        if let Some(message) = message
            && job.failure_messages.len() < 5
            && !job.failure_messages.contains(&message)
        {
            job.failure_messages.push(message);
        }
    });
}

/// Takes this thread's shard, leaving an empty one.
pub fn take_shard() -> Shard {
    let mut shard = SHARD.with(|shard| std::mem::take(&mut *shard.borrow_mut()));
    shard.jobs_in_flight = JOBS_IN_FLIGHT.with(std::cell::Cell::get);
    shard.in_flight = in_flight::census();
    shard
}

thread_local! {
    static JOBS_IN_FLIGHT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a job this thread starts following (`+1`) or stops following (`-1`).
pub fn job_in_flight(started: bool) {
    JOBS_IN_FLIGHT.with(|n| {
        n.set(if started {
            n.get() + 1
        } else {
            n.get().saturating_sub(1)
        })
    });
}

/// Interns names so that keys share their strings.
#[derive(Debug, Default)]
pub struct Names(HashMap<String, Arc<str>>);

impl Names {
    /// The shared string for `name`.
    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(found) = self.0.get(name) {
            return found.clone();
        }
        let shared: Arc<str> = name.into();
        self.0.insert(name.to_owned(), shared.clone());
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from the web UI's `at_percentile`, which `Percentile` replaces.
    #[test]
    fn figures_are_read_by_their_percentile() {
        let figures: Vec<f64> = PERCENTILES.iter().map(|p| p * 10.0).collect();
        assert_eq!(P95.among(&figures), 950.0);
        assert_eq!(P99.among(&figures), 990.0);
        assert_eq!(P50.among(&figures), 500.0);
        assert_eq!(Percentile::of(99.9).among(&figures), 999.0);
        assert_eq!(P95.among(&[]), 0.0, "no figures yet");
        let absent = std::panic::catch_unwind(|| Percentile::of(97.0));
        assert!(absent.is_err(), "97 is not one of the list");
    }

    fn key(name: &str) -> Key {
        Key {
            phase: Phase::Steady,
            method: "GET".into(),
            name: name.into(),
        }
    }

    #[test]
    fn shards_from_threads_merge_exactly() {
        let clock = RunClock {
            start: Instant::now(),
        };
        let shards: Vec<Shard> = (0..4u64)
            .map(|t| {
                std::thread::spawn(move || {
                    let clock = RunClock {
                        start: Instant::now(),
                    };
                    for i in 0..1000u64 {
                        let error = (i % 10 == 0).then(|| Failure {
                            kind: FailureKind::Status(500),
                            message: "HTTP 500".to_owned(),
                        });
                        record(
                            &clock,
                            Sample {
                                key: &key("/a"),
                                latency_us: 1000 * (t + 1) + i,
                                bytes: 10,
                                status: Some(if error.is_some() { 500 } else { 200 }),
                                error,
                                timings: None,
                                retries: 0,
                            },
                        );
                    }
                    take_shard()
                })
                .join()
                .unwrap()
            })
            .collect();
        let _ = clock;
        let mut total = Stats::default();
        for shard in &shards {
            total.merge(&shard.stats);
        }
        let a = &total.endpoints[&key("/a")];
        assert_eq!((a.count, a.failures, a.bytes), (4000, 400, 40_000));
        assert_eq!(a.min_us, 1000);
        assert_eq!(a.max_us, 4999);
        assert_eq!(a.histogram.len(), 4000);
        assert_eq!(a.statuses[&500], 400);
        let failure = &total.failures[&FailureKey {
            method: "GET".into(),
            name: "/a".into(),
            error: "HTTP 500".into(),
            kind: FailureKind::Status(500),
        }];
        assert_eq!(failure.count, 400);
        // The same samples recorded on one thread give the same histogram.
        let mut single = EndpointStats::default();
        for t in 0..4u64 {
            for i in 0..1000u64 {
                single.record(1000 * (t + 1) + i, 10, Some(200), i % 10 == 0);
            }
        }
        assert_eq!(single.histogram, a.histogram);
        assert_eq!(single.percentile_ms(95.0), a.percentile_ms(95.0));
    }
}
