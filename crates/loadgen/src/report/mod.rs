//! Reports read a finished run (never the engine): one [`Report`] snapshot, then pure functions
//! that print it to the console or write CSV, JSON and HTML.

pub mod baseline;
pub mod capacity;
pub mod charts;
pub mod console;
pub mod csv;
pub mod files;
pub mod flamegraph;
#[cfg(test)]
mod golden;
pub mod html;
pub mod junit;
pub mod locust_json;
pub mod markdown;
pub mod markup;
pub mod open_model;
pub mod statements;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config::RunConfig;
use crate::diagnosis::{self, Evidence, Finding};
use crate::outcome::RunOutcome;
use crate::scenario::ScenarioIdentity;
use crate::stats::{
    Cumulative, EndpointSecond, EndpointStats, FailureKey, FailureStats, HistoryRow, JobStats,
    PerNameSecond, Phase, Stats,
};
use crate::targets::{self, Targets, Verdict};
use baseline::Comparison;

/// What the validity section says when nothing disturbed the run.
pub const VALID_RUN: &str = "Nothing found that disturbed the figures: the load generator kept \
     up, no process outside the stack held the host's CPU, and every watched source answered.";

/// The whole judgement of a run: its targets, their verdicts, and the findings.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// The thresholds used.
    pub targets: Targets,
    /// Each target's verdict.
    pub verdicts: Vec<Verdict>,
    /// "Is this run valid?": what could have disturbed the figures (the generator, other
    /// processes on the host, the watch), read before the findings.
    pub validity: Vec<Finding>,
    /// Findings about the stack: each cause followed by its symptoms, in the order to read
    /// them.
    pub findings: Vec<Finding>,
    /// The Python processes profiled over the whole run (what the flame graphs draw); the
    /// JSON report has them per tick in `backend` already.
    #[serde(skip)]
    pub profiles: Vec<monitor::sample::profile::ProcessProfile>,
}

impl Analysis {
    /// Judges `outcome` against `targets` and diagnoses it.
    pub fn of(outcome: &RunOutcome, targets: &Targets) -> Self {
        let steady = outcome.stats.aggregated(Phase::Steady);
        let stuck = crate::stats::StuckUsers::of(&outcome.stats, &outcome.history);
        let verdicts = targets::judge(
            targets,
            &steady,
            outcome.peak_users,
            &stuck,
            &outcome.backend,
        );
        let evidence = Evidence::new(outcome, targets, &verdicts, outcome.worker_logs.clone());
        let diagnosis::Diagnosis { validity, findings } = diagnosis::diagnose(&evidence);
        // The whole run's: a flame graph shows all the process did, start-up included (the
        // findings judge their own windows).
        let profiles = evidence.backend.profiles_since(None);
        drop(evidence);
        Self {
            targets: *targets,
            verdicts,
            validity,
            findings,
            profiles,
        }
    }

    /// Whether every target is met.
    pub fn all_met(&self) -> bool {
        self.verdicts.iter().all(|v| v.met)
    }
}

/// Writes `text` to stdout. A reader that went away (`loadgen ... | head -2`) is no error: the
/// run goes on and writes its files (`print!` would panic on the closed pipe).
pub fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes `text` on stderr, where a run's tables go as Locust prints its own (stdout is left to
/// what a script reads: `--json`); a reader of stderr that went away is no error either.
pub fn print_err(text: &str) {
    use std::io::Write;
    let mut out = std::io::stderr().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

pub use crate::config::baseline::REPORT_VERSION;

pub use crate::stats::{P50, P95, P99, PERCENTILES, Percentile};

/// One row of figures, in Locust's units (ms, req/s).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `startup` or `steady`.
    pub phase: Phase,
    /// HTTP method (empty for the aggregated row).
    pub method: String,
    /// Name, or `Aggregated`.
    pub name: String,
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
    /// Requests per second over the run.
    pub rps: f64,
    /// Failures per second over the run.
    pub failures_per_sec: f64,
    /// [`PERCENTILES`], ms.
    pub percentiles_ms: Vec<f64>,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Where the time went: connect, TLS handshake, first byte and total.
    pub timings_ms: TimingRow,
    /// Times requests were sent again after their kept-alive connection closed unanswered
    /// (each reached the server once more).
    pub retries: u64,
    /// Of the failures, requests with no complete answer within their timeout.
    pub timed_out: u64,
    /// Requests still unanswered when their user was stopped: not in `requests`, but in the
    /// percentiles and the maximum at their age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_flight_at_stop: Option<Unanswered>,
    /// Whether the percentiles count requests unanswered at the stop: those that fall on them
    /// are lower bounds ("at least").
    pub percentiles_at_least: bool,
}

/// Requests of a row unanswered when their users were stopped: censored latencies.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Unanswered {
    /// How many.
    pub requests: u64,
    /// Each took at least this long, ms: the youngest one's age at the stop.
    pub at_least_ms: f64,
    /// The oldest one's age at the stop, ms: it took at least this long.
    pub oldest_at_least_ms: f64,
}

impl Unanswered {
    fn of(stats: &EndpointStats) -> Option<Self> {
        let ages = &stats.unanswered;
        (!ages.is_empty()).then(|| Self {
            requests: ages.len(),
            at_least_ms: ages.min() as f64 / 1000.0,
            oldest_at_least_ms: ages.max() as f64 / 1000.0,
        })
    }
}

/// p50 and p95 of each phase of the requests of a row, ms (0 when no request had the phase).
#[derive(Debug, Clone, Serialize)]
pub struct TimingRow {
    /// TCP connect.
    pub connect: [f64; 2],
    /// TLS handshake.
    pub tls_handshake: [f64; 2],
    /// Time to first byte.
    pub first_byte: [f64; 2],
    /// Whole request.
    pub total: [f64; 2],
}

impl TimingRow {
    fn of(stats: &EndpointStats) -> Self {
        let p50_p95 = |h: &hdrhistogram::Histogram<u64>| {
            if h.is_empty() {
                [0.0, 0.0]
            } else {
                [50.0, 95.0].map(|p| h.value_at_percentile(p) as f64 / 1000.0)
            }
        };
        Self {
            connect: p50_p95(&stats.phases.connect),
            tls_handshake: p50_p95(&stats.phases.tls),
            first_byte: p50_p95(&stats.phases.first_byte),
            total: p50_p95(&stats.latencies()),
        }
    }
}

impl Row {
    /// The figure of percentile `q`, ms.
    pub fn p(&self, q: Percentile) -> f64 {
        q.among(&self.percentiles_ms)
    }

    /// A steady-state row for the live view.
    pub fn live(method: &str, name: &str, stats: &EndpointStats, secs: f64) -> Self {
        Self::new(Phase::Steady, method, name, stats, secs)
    }

    fn new(phase: Phase, method: &str, name: &str, stats: &EndpointStats, secs: f64) -> Self {
        Self {
            phase,
            method: method.to_owned(),
            name: name.to_owned(),
            requests: stats.count,
            failures: stats.failures,
            median_ms: stats.percentile_ms(50.0),
            average_ms: stats.average_ms(),
            min_ms: stats.min_ms(),
            max_ms: stats.max_ms(),
            average_bytes: stats.average_bytes(),
            rps: stats.count as f64 / secs,
            failures_per_sec: stats.failures as f64 / secs,
            percentiles_ms: PERCENTILES
                .iter()
                .map(|p| stats.percentile_ms(*p))
                .collect(),
            statuses: stats.statuses.clone(),
            timings_ms: TimingRow::of(stats),
            retries: stats.retries,
            timed_out: stats.timed_out,
            in_flight_at_stop: Unanswered::of(stats),
            percentiles_at_least: !stats.unanswered.is_empty(),
        }
    }
}

/// A failure kind.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRow {
    /// HTTP method.
    pub method: String,
    /// Name.
    pub name: String,
    /// Error.
    pub error: String,
    /// Occurrences.
    pub occurrences: u64,
    /// First seen, s into the run.
    pub first_seen_secs: f64,
    /// Last seen, s into the run.
    pub last_seen_secs: f64,
}

/// Followed jobs of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct JobRow {
    /// Kind.
    pub job: String,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Never finished.
    pub unfinished: u64,
    /// Status never read.
    pub unknown: u64,
    /// Not followed: created while the polls were at their budget (a tenth of the requests).
    pub unfollowed: u64,
    /// Completion time percentiles (50, 95, 99, 100), s.
    pub completion_secs: BTreeMap<String, f64>,
    /// Failure messages seen.
    pub failure_messages: Vec<String>,
    /// Unfinished jobs by the status their polls last saw: how many, and the longest any had it.
    pub last_statuses: BTreeMap<String, crate::stats::LastStatus>,
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    /// Unix time, s.
    pub timestamp: u64,
    /// Seconds since the start.
    pub at_secs: u64,
    /// Users running.
    pub users: u64,
    /// Requests finished in this second.
    pub requests: u64,
    /// Failures in this second.
    pub failures: u64,
    /// Percentiles of this second, ms ([`PERCENTILES`]).
    pub percentiles_ms: Vec<f64>,
    /// Mean of this second, ms.
    pub average_ms: f64,
    /// Statuses in this second.
    pub statuses: BTreeMap<u16, u64>,
    /// loadgen's own CPU, percent of one core.
    pub loadgen_cpu_pct: f64,
    /// loadgen's resident memory, bytes.
    pub loadgen_rss_bytes: u64,
    /// How late the users' timers fired, ms.
    pub timer_lag_ms: f64,
    /// Each endpoint in this second.
    pub endpoints: Vec<EndpointSecond>,
    /// Followed jobs that ended in this second.
    pub jobs_done: u64,
    /// Jobs followed at the end of this second.
    pub jobs_in_flight: u64,
    /// Requests waiting for their answers: how many, the oldest's age, the stuck users.
    pub in_flight: crate::stats::InFlightLevel,
    /// The run so far.
    pub cumulative: Cumulative,
    /// Each of Locust's rows, with `--csv-full-history`.
    #[serde(skip)]
    pub per_name: Option<PerNameSecond>,
    /// The open model's iterations due in this second.
    pub arrivals: crate::stats::ArrivalCounts,
}

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The version of this file's layout: a `--baseline` must have this loadgen's.
    pub report_version: u32,
    /// The scenario run, as a `--baseline` is checked against it.
    pub scenario: ScenarioIdentity,
    /// The host.
    pub host: String,
    /// Unix time of the start, s.
    pub started_at: u64,
    /// Run length, s.
    pub duration_secs: f64,
    /// Whether Ctrl-C, a signal or the web UI stopped it before its run time.
    pub interrupted: bool,
    /// Who stopped it, and whether these figures are the run's last; `null` when it ran its
    /// course.
    pub interruption: Option<Interruption>,
    /// Run id.
    pub run_id: String,
    /// Most users at once.
    pub peak_users: u64,
    /// Users started, by type.
    pub users_by_type: BTreeMap<String, u64>,
    /// Steady-state rows, then their aggregate.
    pub steady: Vec<Row>,
    /// Steady-state aggregate.
    pub steady_total: Row,
    /// Start-up rows.
    pub startup: Vec<Row>,
    /// Start-up aggregate.
    pub startup_total: Row,
    /// Job-poll rows (apart from the steady state and its targets).
    pub polls: Vec<Row>,
    /// Job-poll aggregate.
    pub polls_total: Row,
    /// Locust's rows: every request under its own name, start-up and steady state together,
    /// sorted by name and method (as `_stats.csv` has them).
    #[serde(skip)]
    pub locust_rows: Vec<Row>,
    /// The sum of [`Report::locust_rows`].
    #[serde(skip)]
    pub locust_total: Row,
    /// Failures.
    pub failures: Vec<FailureRow>,
    /// Scenario errors: message and count.
    pub exceptions: Vec<(String, u64)>,
    /// Idempotent requests sent a second time because their kept-alive connection was found
    /// closed with no answer (each counted once in the rows' requests, and in their `retries`).
    pub resent: u64,
    /// Requests sent but still unanswered when their user was stopped: not in the rows'
    /// requests, but in their percentiles at their age; the server may have counted them.
    pub in_flight_at_stop: u64,
    /// Requests whose user was stopped before a byte of them went out (while connecting): not
    /// sent, so no server counted them; in their rows' percentiles at their age.
    pub unsent_at_stop: u64,
    /// Failed requests that had no complete answer within their timeout.
    pub timed_out: u64,
    /// Users stuck waiting for answers longer than [`crate::stats::STUCK_AFTER`].
    pub stuck_users: crate::stats::StuckUsers,
    /// Tasks that panicked (a bug of loadgen's); the run's exit code is then 2.
    pub panics: u64,
    /// Followed jobs.
    pub jobs: Vec<JobRow>,
    /// Status handlers run: (step name, status, count).
    pub handled: Vec<(String, u16, u64)>,
    /// Per second.
    pub history: Vec<HistoryPoint>,
    /// The open model's iterations, when the run had one.
    pub open_model: Option<open_model::OpenModel>,
    /// The users shape the run followed, stage by stage (a rate shape is the open model's
    /// stages); absent without one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shape: Vec<crate::shape::ShapeStage>,
    /// Steady requests timed from their send (the service time).
    pub service_time: open_model::ServiceTime,
    /// Targets and findings.
    pub analysis: Analysis,
    /// The backend's ticks, on the same clock as `history`.
    pub backend: Vec<monitor::sample::Tick>,
    /// This run against `--baseline`, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Comparison>,
    /// The workers and what happened to them, when the run was distributed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::outcome::ClusterSummary>,
}

/// Why a run ended before its run time, as its reports say it.
#[derive(Debug, Clone, Serialize)]
pub struct Interruption {
    /// Who stopped it: `SIGINT`, `SIGTERM`, `SIGHUP`, `the web UI`, or `a stop` when its
    /// driver did not say.
    pub by: String,
    /// False when the reports were written from the figures in hand before the run had ended
    /// (at a second signal, or at the first while the users finish under `--stop-timeout`):
    /// the requests still in flight and the last second are missing.
    pub complete: bool,
}

impl Interruption {
    /// The interruption of `outcome`, if it was interrupted.
    fn of(outcome: &RunOutcome) -> Option<Self> {
        (outcome.interrupted || outcome.in_hand).then(|| Self {
            by: outcome
                .stopped_by
                .clone()
                .unwrap_or_else(|| "a stop".into()),
            complete: !outcome.in_hand,
        })
    }

    /// Who stopped the run (`SIGTERM`), and what is missing when the figures are not the
    /// last: for `stopped by ...` in the reports.
    pub fn describe(&self) -> String {
        if self.complete {
            self.by.clone()
        } else {
            format!(
                "{}; written from the figures in hand before the users had finished",
                self.by
            )
        }
    }
}

fn unix(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Report {
    /// The report of `outcome` (finished or so far) of the run `config` describes: judged
    /// against its targets, diagnosed, and compared with its baseline.
    pub fn of_run(config: &RunConfig, outcome: &RunOutcome) -> Self {
        let analysis = Analysis::of(outcome, &config.targets);
        let mut report = Self::new(config, outcome, analysis);
        if let Some(check) = &config.baseline {
            report.baseline = Some(check.baseline.compare(&report, &check.thresholds));
        }
        report
    }

    /// Whether the run passed: every target met, no regression against the baseline, and no
    /// task of loadgen's panicked.
    pub fn passed(&self) -> bool {
        self.panics == 0
            && self.analysis.all_met()
            && self.baseline.as_ref().is_none_or(Comparison::passed)
    }

    /// The snapshot of a run, without its baseline comparison.
    fn new(config: &RunConfig, outcome: &RunOutcome, analysis: Analysis) -> Self {
        let secs = outcome.duration.as_secs_f64().max(1e-9);
        let stats = &outcome.stats;
        let everything = stats.aggregated_all();
        Self {
            locust_rows: locust_rows(stats, secs),
            locust_total: Row::new(Phase::Steady, "", "Aggregated", &everything, secs),
            report_version: REPORT_VERSION,
            scenario: config.scenario.identity(),
            // `-H http://api/?token=...`: the report shows where, never the secret.
            host: common::redact::reference(&config.host),
            started_at: unix(outcome.started_at),
            duration_secs: secs,
            interrupted: outcome.interrupted || outcome.in_hand,
            interruption: Interruption::of(outcome),
            run_id: outcome.run_id.clone(),
            peak_users: outcome.peak_users,
            users_by_type: outcome.users_by_type.clone(),
            steady: phase_rows(stats, Phase::Steady, secs),
            steady_total: phase_total(stats, Phase::Steady, secs),
            startup: phase_rows(stats, Phase::Startup, secs),
            startup_total: phase_total(stats, Phase::Startup, secs),
            polls: phase_rows(stats, Phase::Poll, secs),
            polls_total: phase_total(stats, Phase::Poll, secs),
            failures: stats.failures.iter().map(FailureRow::of).collect(),
            exceptions: stats
                .exceptions
                .iter()
                .map(|(m, n)| (m.clone(), *n))
                .collect(),
            resent: stats.resent,
            in_flight_at_stop: stats.in_flight_at_stop,
            unsent_at_stop: stats.unsent_at_stop,
            timed_out: everything.timed_out,
            stuck_users: crate::stats::StuckUsers::of(stats, &outcome.history),
            panics: stats.panics,
            jobs: stats.jobs.iter().map(JobRow::of).collect(),
            handled: stats
                .handled
                .iter()
                .map(|((name, status), n)| (name.to_string(), *status, *n))
                .collect(),
            history: HistoryPoint::all_of(&outcome.history),
            open_model: open_model::OpenModel::of(config, outcome, secs),
            shape: config.load.shape.clone(),
            service_time: open_model::ServiceTime::of(&outcome.stats),
            analysis,
            backend: outcome.backend.clone(),
            baseline: None,
            cluster: outcome.cluster.clone(),
        }
    }
}

/// The rows of one phase, one per endpoint.
fn phase_rows(stats: &Stats, phase: Phase, secs: f64) -> Vec<Row> {
    stats
        .endpoints
        .iter()
        .filter(|(k, _)| k.phase == phase)
        .map(|(k, e)| Row::new(phase, &k.method, &k.name, e, secs))
        .collect()
}

/// The aggregate row of one phase.
fn phase_total(stats: &Stats, phase: Phase, secs: f64) -> Row {
    Row::new(phase, "", "Aggregated", &stats.aggregated(phase), secs)
}

/// Locust's rows: Locust has no start-up phase, so each holds every request of a name.
fn locust_rows(stats: &Stats, secs: f64) -> Vec<Row> {
    let mut by_name: BTreeMap<(&str, &str), EndpointStats> = BTreeMap::new();
    for (key, e) in &stats.endpoints {
        by_name
            .entry((&*key.name, &*key.method))
            .or_default()
            .merge(e);
    }
    by_name
        .iter()
        .map(|((name, method), e)| Row::new(Phase::Steady, method, name, e, secs))
        .collect()
}

impl FailureRow {
    /// The row of one kind of failure.
    fn of((key, failure): (&FailureKey, &FailureStats)) -> Self {
        Self {
            method: key.method.to_string(),
            name: key.name.to_string(),
            error: key.error.clone(),
            occurrences: failure.count,
            first_seen_secs: failure.first_seen_secs,
            last_seen_secs: failure.last_seen_secs,
        }
    }
}

impl JobRow {
    /// The row of one kind of followed job.
    fn of((kind, job): (&Arc<str>, &JobStats)) -> Self {
        Self {
            job: kind.to_string(),
            completed: job.completed,
            failed: job.failed,
            unfinished: job.unfinished,
            unknown: job.unknown,
            unfollowed: job.unfollowed,
            completion_secs: if job.completed == 0 {
                BTreeMap::new()
            } else {
                [50.0, 95.0, 99.0, 100.0]
                    .iter()
                    .map(|p| {
                        (
                            format!("p{p}"),
                            job.completion.value_at_percentile(*p) as f64 / 1e6,
                        )
                    })
                    .collect()
            },
            failure_messages: job.failure_messages.clone(),
            last_statuses: job.last_statuses.clone(),
        }
    }
}

impl HistoryPoint {
    /// The figure of percentile `q` in this second, ms.
    pub fn p(&self, q: Percentile) -> f64 {
        q.among(&self.percentiles_ms)
    }

    /// The report's view of the timeline: each second, with the run's totals at its end made
    /// from the seconds up to it (the requests that finished in them), not from what the
    /// threads had handed over when the row was made. So the totals grow by each second's
    /// requests, even when a busy machine made two rows at one tick (issue 29: a history whose
    /// Total Request Count stalled, then doubled).
    fn all_of(rows: &[HistoryRow]) -> Vec<Self> {
        let mut so_far = EndpointStats::default();
        rows.iter()
            .map(|row| {
                if row.reset {
                    so_far = EndpointStats::default();
                }
                so_far.merge_answered(&row.interval);
                let cumulative = Cumulative {
                    steady_p95_ms: row.cumulative.steady_p95_ms,
                    ..Cumulative::of_row(&so_far)
                };
                Self::of(row, cumulative)
            })
            .collect()
    }

    /// The report's view of one second of the timeline, with the run's totals at its end.
    fn of(h: &HistoryRow, cumulative: Cumulative) -> Self {
        Self {
            timestamp: unix(h.timestamp),
            at_secs: h.at_secs,
            users: h.users,
            requests: h.interval.count,
            failures: h.interval.failures,
            percentiles_ms: PERCENTILES
                .iter()
                .map(|p| h.interval.percentile_ms(*p))
                .collect(),
            average_ms: h.interval.average_ms(),
            statuses: h.interval.statuses.clone(),
            loadgen_cpu_pct: h.loadgen_cpu_pct,
            loadgen_rss_bytes: h.loadgen_rss_bytes,
            timer_lag_ms: h.timer_lag_ms,
            endpoints: h.endpoints.clone(),
            jobs_done: h.jobs_done,
            jobs_in_flight: h.jobs_in_flight,
            in_flight: h.in_flight,
            cumulative,
            per_name: h.per_name.clone(),
            arrivals: h.arrivals,
        }
    }
}
