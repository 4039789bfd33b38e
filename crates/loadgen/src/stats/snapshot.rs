//! [`StatsSnapshot`]: the run's figures in a form that crosses threads, processes and machines
//! (serde) and still merges exactly. Histograms travel in HdrHistogram's V2 encoding, so a
//! master that merges its workers' snapshots gets the same p99 as one process would have.

use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

use super::{
    EndpointStats, FailureKey, FailureKind, FailureStats, JobStats, Key, Phase, PhaseHistograms,
    Stats, new_histogram,
};

/// A snapshot that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A histogram's bytes are not HdrHistogram's V2 encoding.
    #[error("histogram of {what}: {detail}")]
    Histogram {
        /// Which row.
        what: String,
        /// What the decoder said.
        detail: String,
    },
}

/// loadgen watching itself in the last second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SelfWatchFigures {
    /// CPU of the user threads, percent of one core (summed over processes when merged).
    pub cpu_pct: f64,
    /// Resident memory, bytes (summed over processes when merged).
    pub rss_bytes: u64,
    /// How late the users' timers fired, ms (the worst when merged).
    pub timer_lag_ms: f64,
}

/// One endpoint and phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointEntry {
    /// Start-up or steady state.
    pub phase: Phase,
    /// HTTP method.
    pub method: String,
    /// Display name.
    pub name: String,
    /// Latencies, µs, in HdrHistogram's V2 encoding.
    pub histogram: Vec<u8>,
    /// Requests.
    pub count: u64,
    /// Failed requests.
    pub failures: u64,
    /// Sum of latencies, µs.
    pub total_us: u64,
    /// Fastest, µs.
    pub min_us: u64,
    /// Slowest, µs.
    pub max_us: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// TCP connects, µs, V2-encoded.
    #[serde(default)]
    pub connect: Vec<u8>,
    /// TLS handshakes, µs, V2-encoded.
    #[serde(default)]
    pub tls: Vec<u8>,
    /// Times to first byte, µs, V2-encoded.
    #[serde(default)]
    pub first_byte: Vec<u8>,
    /// Resends after a kept-alive connection closed unanswered.
    #[serde(default)]
    pub retries: u64,
    /// Failed requests that timed out.
    #[serde(default)]
    pub timed_out: u64,
    /// Ages of the requests unanswered at the stop, µs, V2-encoded.
    #[serde(default)]
    pub unanswered: Vec<u8>,
}

/// One kind of failure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureEntry {
    /// HTTP method.
    pub method: String,
    /// Display name.
    pub name: String,
    /// The message.
    pub error: String,
    /// Its kind.
    pub kind: FailureKind,
    /// Count and time span.
    #[serde(flatten)]
    pub stats: FailureStats,
}

/// Followed jobs of one kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobEntry {
    /// The job kind.
    pub job: String,
    /// Creation to final status, µs, completed jobs only, V2 encoding.
    pub completion: Vec<u8>,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Never finished.
    pub unfinished: u64,
    /// Of those, followed for their whole timeout.
    #[serde(default)]
    pub timed_out: u64,
    /// Status never read.
    pub unknown: u64,
    /// Not followed: the polls were at their budget.
    #[serde(default)]
    pub unfollowed: u64,
    /// The first failure messages.
    pub failure_messages: Vec<String>,
    /// Unfinished jobs by the status last seen.
    #[serde(default)]
    pub last_statuses: BTreeMap<String, super::LastStatus>,
}

/// Everything measured so far, exactly mergeable: see the module documentation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Seconds since the run started (the longest when merged).
    pub elapsed_secs: f64,
    /// Users running (summed when merged).
    pub users: u64,
    /// Per endpoint and phase.
    pub endpoints: Vec<EndpointEntry>,
    /// Failures by kind.
    pub failures: Vec<FailureEntry>,
    /// Followed jobs by kind.
    pub jobs: Vec<JobEntry>,
    /// Status handlers run: (step name, status, count).
    pub handled: Vec<(String, u16, u64)>,
    /// Scenario errors: (message, count).
    pub exceptions: Vec<(String, u64)>,
    /// Of those, steps skipped for a value never received.
    #[serde(default)]
    pub missing_values: u64,
    /// Requests sent a second time after a stale kept-alive connection.
    #[serde(default)]
    pub resent: u64,
    /// Requests in flight when their user was stopped.
    #[serde(default)]
    pub in_flight_at_stop: u64,
    /// Requests whose user was stopped before they went out.
    #[serde(default)]
    pub unsent_at_stop: u64,
    /// User tasks and job pollers that panicked.
    #[serde(default)]
    pub panics: u64,
    /// Steady latencies, µs, V2-encoded, of requests that overlapped start-up work and of the
    /// others.
    #[serde(default)]
    pub startup_overlap: (Vec<u8>, Vec<u8>),
    /// The open model's iterations (in all and by user type) and its service times, µs,
    /// V2-encoded; empty in a closed run.
    #[serde(default)]
    pub arrivals: ArrivalsEntry,
    /// loadgen watching itself in the last second.
    pub self_watch: SelfWatchFigures,
}

/// The open model's figures of a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArrivalsEntry {
    /// Every iteration.
    pub total: super::ArrivalCounts,
    /// By user type.
    pub by_type: Vec<(String, super::ArrivalCounts)>,
    /// Service times, µs, V2-encoded (empty with none).
    pub service: Vec<u8>,
}

impl ArrivalsEntry {
    fn of(arrivals: &super::Arrivals) -> Self {
        Self {
            total: arrivals.total,
            by_type: arrivals
                .by_type
                .iter()
                .map(|(name, counts)| (name.to_string(), *counts))
                .collect(),
            service: arrivals.service.as_ref().map_or_else(Vec::new, encode),
        }
    }

    fn to_arrivals(&self) -> Result<super::Arrivals, SnapshotError> {
        let service = (!self.service.is_empty())
            .then(|| decode(&self.service, || "service times".to_owned()))
            .transpose()?;
        Ok(super::Arrivals {
            total: self.total,
            by_type: self
                .by_type
                .iter()
                .map(|(name, counts)| (Arc::from(name.as_str()), *counts))
                .collect(),
            service,
        })
    }
}

fn encode(histogram: &hdrhistogram::Histogram<u64>) -> Vec<u8> {
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail on I/O; an encoder error would leave the row empty.
    let _ = V2Serializer::new().serialize(histogram, &mut bytes);
    bytes
}

fn decode(
    bytes: &[u8],
    what: impl FnOnce() -> String,
) -> Result<hdrhistogram::Histogram<u64>, SnapshotError> {
    if bytes.is_empty() {
        return Ok(new_histogram());
    }
    let mut decoded: hdrhistogram::Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| SnapshotError::Histogram {
            what: what(),
            detail: format!("{e:?}"),
        })?;
    // Decoded histograms have a fixed range; ours grow with the latencies merged into them.
    decoded.auto(true);
    Ok(decoded)
}

impl StatsSnapshot {
    /// The snapshot of `stats`, `elapsed_secs` into a run with `users` running.
    pub fn of(stats: &Stats, elapsed_secs: f64, users: u64, self_watch: SelfWatchFigures) -> Self {
        Self {
            elapsed_secs,
            users,
            endpoints: stats
                .endpoints
                .iter()
                .map(|(key, e)| EndpointEntry {
                    phase: key.phase,
                    method: key.method.to_string(),
                    name: key.name.to_string(),
                    histogram: encode(&e.histogram),
                    count: e.count,
                    failures: e.failures,
                    total_us: e.total_us,
                    min_us: e.min_us,
                    max_us: e.max_us,
                    bytes: e.bytes,
                    statuses: e.statuses.clone(),
                    connect: encode(&e.phases.connect),
                    tls: encode(&e.phases.tls),
                    first_byte: encode(&e.phases.first_byte),
                    retries: e.retries,
                    timed_out: e.timed_out,
                    unanswered: encode(&e.unanswered),
                })
                .collect(),
            failures: stats
                .failures
                .iter()
                .map(|(key, f)| FailureEntry {
                    method: key.method.to_string(),
                    name: key.name.to_string(),
                    error: key.error.clone(),
                    kind: key.kind,
                    stats: *f,
                })
                .collect(),
            jobs: stats
                .jobs
                .iter()
                .map(|(kind, j)| JobEntry {
                    job: kind.to_string(),
                    completion: encode(&j.completion),
                    completed: j.completed,
                    failed: j.failed,
                    unfinished: j.unfinished,
                    timed_out: j.timed_out,
                    unknown: j.unknown,
                    unfollowed: j.unfollowed,
                    failure_messages: j.failure_messages.clone(),
                    last_statuses: j.last_statuses.clone(),
                })
                .collect(),
            handled: stats
                .handled
                .iter()
                .map(|((name, status), n)| (name.to_string(), *status, *n))
                .collect(),
            exceptions: stats
                .exceptions
                .iter()
                .map(|(m, n)| (m.clone(), *n))
                .collect(),
            missing_values: stats.missing_values,
            resent: stats.resent,
            in_flight_at_stop: stats.in_flight_at_stop,
            unsent_at_stop: stats.unsent_at_stop,
            panics: stats.panics,
            startup_overlap: (
                encode(&stats.startup_overlap.overlapped),
                encode(&stats.startup_overlap.clear),
            ),
            arrivals: ArrivalsEntry::of(&stats.arrivals),
            self_watch,
        }
    }

    /// The figures back as [`Stats`], to report or to merge.
    pub fn to_stats(&self) -> Result<Stats, SnapshotError> {
        let mut stats = Stats::default();
        for e in &self.endpoints {
            let key = Key {
                phase: e.phase,
                method: Arc::from(e.method.as_str()),
                name: Arc::from(e.name.as_str()),
            };
            let what = || format!("{} {}", e.method, e.name);
            let histogram = decode(&e.histogram, what)?;
            let phases = PhaseHistograms {
                connect: decode(&e.connect, what)?,
                tls: decode(&e.tls, what)?,
                first_byte: decode(&e.first_byte, what)?,
            };
            stats
                .endpoints
                .entry(key)
                .or_default()
                .merge(&EndpointStats {
                    histogram,
                    count: e.count,
                    failures: e.failures,
                    total_us: e.total_us,
                    min_us: e.min_us,
                    max_us: e.max_us,
                    bytes: e.bytes,
                    statuses: e.statuses.clone(),
                    phases,
                    retries: e.retries,
                    timed_out: e.timed_out,
                    unanswered: decode(&e.unanswered, what)?,
                });
        }
        for f in &self.failures {
            let key = FailureKey {
                method: Arc::from(f.method.as_str()),
                name: Arc::from(f.name.as_str()),
                error: f.error.clone(),
                kind: f.kind,
            };
            match stats.failures.get_mut(&key) {
                Some(existing) => existing.merge(&f.stats),
                None => {
                    stats.failures.insert(key, f.stats);
                }
            }
        }
        for j in &self.jobs {
            let completion = decode(&j.completion, || format!("{} jobs", j.job))?;
            stats
                .jobs
                .entry(Arc::from(j.job.as_str()))
                .or_default()
                .merge(&JobStats {
                    completion,
                    completed: j.completed,
                    failed: j.failed,
                    unfinished: j.unfinished,
                    timed_out: j.timed_out,
                    unknown: j.unknown,
                    unfollowed: j.unfollowed,
                    failure_messages: j.failure_messages.clone(),
                    last_statuses: j.last_statuses.clone(),
                });
        }
        for (name, status, n) in &self.handled {
            *stats
                .handled
                .entry((Arc::from(name.as_str()), *status))
                .or_default() += n;
        }
        for (message, n) in &self.exceptions {
            *stats.exceptions.entry(message.clone()).or_default() += n;
        }
        stats.missing_values = self.missing_values;
        stats.resent = self.resent;
        stats.in_flight_at_stop = self.in_flight_at_stop;
        stats.unsent_at_stop = self.unsent_at_stop;
        stats.panics = self.panics;
        let what = || "steady requests beside start-up work".to_owned();
        stats.startup_overlap = super::overlap::StartupOverlap {
            overlapped: decode(&self.startup_overlap.0, what)?,
            clear: decode(&self.startup_overlap.1, what)?,
        };
        stats.arrivals = self.arrivals.to_arrivals()?;
        Ok(stats)
    }

    /// Adds `other` (another process's snapshot of the same run) into `self`, exactly.
    pub fn merge(&mut self, other: &StatsSnapshot) -> Result<(), SnapshotError> {
        let mut stats = self.to_stats()?;
        stats.merge(&other.to_stats()?);
        let self_watch = SelfWatchFigures {
            cpu_pct: self.self_watch.cpu_pct + other.self_watch.cpu_pct,
            rss_bytes: self.self_watch.rss_bytes + other.self_watch.rss_bytes,
            timer_lag_ms: self
                .self_watch
                .timer_lag_ms
                .max(other.self_watch.timer_lag_ms),
        };
        *self = Self::of(
            &stats,
            self.elapsed_secs.max(other.elapsed_secs),
            self.users + other.users,
            self_watch,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_with(latencies_us: impl Iterator<Item = u64>, status: u16) -> Stats {
        let mut stats = Stats::default();
        let key = Key {
            phase: Phase::Steady,
            method: "GET".into(),
            name: "/api/v1/files".into(),
        };
        let endpoint = stats.endpoints.entry(key).or_default();
        for latency in latencies_us {
            endpoint.record(latency, 100, Some(status), status >= 400);
        }
        stats.failures.insert(
            FailureKey {
                method: "GET".into(),
                name: "/api/v1/files".into(),
                error: format!("HTTP {status}"),
                kind: FailureKind::Status(status),
            },
            FailureStats {
                count: 1,
                first_seen_secs: 1.0,
                last_seen_secs: 2.0,
            },
        );
        let job = stats.jobs.entry("join".into()).or_default();
        job.completed = 1;
        let _ = job.completion.record(1_500_000);
        stats
    }

    #[test]
    fn snapshots_survive_json_and_merge_exactly() {
        // Two "workers" with very different latencies: the merged p99 must be the p99 of the
        // union, which no average of per-worker percentiles gives.
        let mut fast = stats_with((1..=9_000).map(|i| 1_000 + i), 200);
        let mut slow = stats_with((1..=1_000).map(|i| 2_000_000 + i * 100), 500);
        // The open model's iterations and service times travel too.
        let reader: Arc<str> = "Reader".into();
        fast.arrivals.count(&reader, super::super::Fate::Dropped);
        fast.arrivals.record_service(1_500);
        slow.arrivals
            .count(&reader, super::super::Fate::Started { late: true });
        slow.arrivals.record_service(900_000);
        let mut union = fast.clone();
        union.merge(&slow);

        let travel = |s: &Stats| -> StatsSnapshot {
            let json =
                serde_json::to_string(&StatsSnapshot::of(s, 3.0, 5, SelfWatchFigures::default()))
                    .unwrap();
            serde_json::from_str(&json).unwrap()
        };
        let mut merged = travel(&fast);
        merged.merge(&travel(&slow)).unwrap();
        let merged_stats = merged.to_stats().unwrap();

        let row = |s: &Stats| s.aggregated(Phase::Steady);
        let (want, got) = (row(&union), row(&merged_stats));
        assert_eq!(want.histogram, got.histogram);
        for p in [50.0, 95.0, 99.0, 99.9, 100.0] {
            assert_eq!(want.percentile_ms(p), got.percentile_ms(p), "p{p}");
        }
        assert_eq!(
            (got.count, got.failures, got.min_us, got.max_us),
            (10_000, 1_000, want.min_us, want.max_us)
        );
        assert_eq!(merged.users, 10);
        assert_eq!(merged_stats.failures.len(), 2);
        assert_eq!(merged_stats.jobs["join"].completed, 2);
        assert_eq!(merged_stats.jobs["join"].completion.len(), 2);
        let arrivals = &merged_stats.arrivals;
        assert_eq!(arrivals.total, union.arrivals.total);
        assert_eq!(arrivals.by_type, union.arrivals.by_type);
        assert_eq!(arrivals.service, union.arrivals.service);
    }

    #[test]
    fn a_damaged_histogram_is_an_error_not_a_panic() {
        let mut snapshot =
            StatsSnapshot::of(&stats_with(1..10, 200), 1.0, 1, SelfWatchFigures::default());
        snapshot.endpoints[0].histogram = vec![1, 2, 3];
        let error = snapshot.to_stats().unwrap_err().to_string();
        assert!(error.contains("GET /api/v1/files"), "{error}");
    }
}
