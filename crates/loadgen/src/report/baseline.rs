//! "Is this run much worse than the last one?": a JSON report of an earlier run of the same
//! scenario (`--baseline`), compared per endpoint with this run, against the thresholds of
//! `--regression` (p95 and p99 up 20 % and 30 %, failures up 1 point, by default).
//!
//! The baseline is read and checked before the first request, so a wrong file costs no run
//! ([`crate::config::baseline`], as [`crate::config::RunConfig`] holds it).

use std::fmt;

use serde::Serialize;

use super::{P95, P99, Report, Row};
use crate::config::baseline::BaselineRow;
// The tests of the baseline's reading stayed here with the comparison's.
#[cfg(test)]
use crate::config::baseline::difference;
#[cfg(test)]
use crate::scenario::ScenarioIdentity;

pub use crate::config::baseline::{Baseline, BaselineCheck, BaselineError, Thresholds};

/// Rows with fewer requests than this, in either run, are shown but not judged: their
/// percentiles are a handful of samples.
pub const MIN_REQUESTS_TO_JUDGE: u64 = 20;
/// A latency change smaller than this is never a regression, whatever its share: 1 ms to 1.5 ms
/// is +50 % and means nothing.
pub const MIN_LATENCY_CHANGE_MS: f64 = 2.0;

// Read in `config::baseline` before the run; compared here, where the report is.
impl Baseline {
    /// This run against the baseline.
    pub fn compare(&self, report: &Report, thresholds: &Thresholds) -> Comparison {
        let mut rows = Vec::new();
        for now in &report.steady {
            let before = self
                .file
                .steady
                .iter()
                .find(|b| b.method == now.method && b.name == now.name);
            rows.push(compare_row(
                &now.method,
                &now.name,
                before,
                Some(now),
                thresholds,
            ));
        }
        for gone in self.file.steady.iter().filter(|b| {
            !report
                .steady
                .iter()
                .any(|r| r.method == b.method && r.name == b.name)
        }) {
            rows.push(compare_row(
                &gone.method,
                &gone.name,
                Some(gone),
                None,
                thresholds,
            ));
        }
        rows.push(compare_row(
            "",
            "Aggregated",
            Some(&self.file.steady_total),
            Some(&report.steady_total),
            thresholds,
        ));
        let mut regressions: Vec<String> = rows
            .iter()
            .flat_map(|row| {
                row.changes.iter().filter(|c| c.regressed).map(|c| {
                    format!(
                        "{} {} {}",
                        row.label(),
                        c.metric,
                        c.describe_against(thresholds)
                    )
                })
            })
            .collect();
        let dropped = self.compare_dropped(report, thresholds);
        if let Some(change) = dropped.as_ref().filter(|c| c.regressed) {
            regressions.push(format!(
                "Dropped iterations {}",
                change.describe_against(thresholds)
            ));
        }
        Comparison {
            baseline: self.path.display().to_string(),
            baseline_started_at: self.file.started_at,
            thresholds: *thresholds,
            rows,
            regressions,
            dropped,
        }
    }

    /// The open model's dropped iterations, as a share of those scheduled, against the
    /// baseline's: judged as failures are (a rise past the failures' points), when both runs
    /// had an open model with enough iterations.
    fn compare_dropped(&self, report: &Report, thresholds: &Thresholds) -> Option<Change> {
        let (before, now) = (self.file.open_model?, report.open_model.as_ref()?.counts);
        let judged =
            before.scheduled >= MIN_REQUESTS_TO_JUDGE && now.scheduled >= MIN_REQUESTS_TO_JUDGE;
        let (before, after) = (
            pct(before.dropped, before.scheduled),
            pct(now.dropped, now.scheduled),
        );
        Some(Change {
            metric: Metric::Dropped,
            before,
            after,
            change: after - before,
            regressed: judged
                && thresholds
                    .failure_pp
                    .is_some_and(|limit| after - before > limit),
        })
    }
}

/// The figures a comparison reads from a row of either report.
struct Figures {
    requests: u64,
    failure_pct: f64,
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
}

impl From<&BaselineRow> for Figures {
    fn from(row: &BaselineRow) -> Self {
        Self {
            requests: row.requests,
            failure_pct: pct(row.failures, row.requests),
            rps: row.rps,
            p50: row.median_ms,
            p95: P95.among(&row.percentiles_ms),
            p99: P99.among(&row.percentiles_ms),
        }
    }
}

impl From<&Row> for Figures {
    fn from(row: &Row) -> Self {
        Self {
            requests: row.requests,
            failure_pct: pct(row.failures, row.requests),
            rps: row.rps,
            p50: row.median_ms,
            p95: row.p(P95),
            p99: row.p(P99),
        }
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn compare_row(
    method: &str,
    name: &str,
    before: Option<&BaselineRow>,
    now: Option<&Row>,
    thresholds: &Thresholds,
) -> ComparedRow {
    let (before, now) = match (before.map(Figures::from), now.map(Figures::from)) {
        (Some(before), Some(now)) => (before, now),
        (before, now) => {
            return ComparedRow {
                method: method.to_owned(),
                name: name.to_owned(),
                state: if before.is_none() {
                    RowState::New
                } else {
                    RowState::Gone
                },
                requests: (
                    before.map_or(0, |b| b.requests),
                    now.map_or(0, |n| n.requests),
                ),
                changes: Vec::new(),
            };
        }
    };
    let judged = before.requests >= MIN_REQUESTS_TO_JUDGE && now.requests >= MIN_REQUESTS_TO_JUDGE;
    let latency = |metric: Metric, before: f64, after: f64, limit: Option<f64>| {
        let change = relative(before, after);
        Change {
            metric,
            before,
            after,
            change,
            regressed: judged
                && limit
                    .is_some_and(|limit| change > limit && after - before >= MIN_LATENCY_CHANGE_MS),
        }
    };
    let rps_change = relative(before.rps, now.rps);
    let failure_change = now.failure_pct - before.failure_pct;
    ComparedRow {
        method: method.to_owned(),
        name: name.to_owned(),
        state: if judged {
            RowState::Compared
        } else {
            RowState::TooFew
        },
        requests: (before.requests, now.requests),
        changes: vec![
            Change {
                metric: Metric::Rps,
                before: before.rps,
                after: now.rps,
                change: rps_change,
                regressed: judged && thresholds.rps.is_some_and(|limit| rps_change < -limit),
            },
            latency(Metric::P50, before.p50, now.p50, thresholds.p50),
            latency(Metric::P95, before.p95, now.p95, thresholds.p95),
            latency(Metric::P99, before.p99, now.p99, thresholds.p99),
            Change {
                metric: Metric::Failures,
                before: before.failure_pct,
                after: now.failure_pct,
                change: failure_change,
                regressed: judged
                    && thresholds
                        .failure_pp
                        .is_some_and(|limit| failure_change > limit),
            },
        ],
    }
}

/// `after` against `before`, percent (0 when both are 0; a rise from 0 counts as +100 %).
fn relative(before: f64, after: f64) -> f64 {
    if before > 0.0 {
        (after - before) * 100.0 / before
    } else if after > 0.0 {
        100.0
    } else {
        0.0
    }
}

/// A figure compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Requests per second.
    Rps,
    /// Median, ms.
    P50,
    /// p95, ms.
    P95,
    /// p99, ms.
    P99,
    /// Failure share, percent.
    Failures,
    /// The open model's dropped iterations, percent of those scheduled.
    Dropped,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rps => "req/s",
            Self::P50 => "p50",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::Failures => "failures",
            Self::Dropped => "dropped iterations",
        })
    }
}

/// One figure of one row, before and now.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Which figure.
    pub metric: Metric,
    /// In the baseline.
    pub before: f64,
    /// In this run.
    pub after: f64,
    /// The change: percent, or percentage points for failures.
    pub change: f64,
    /// Whether it passes its threshold.
    pub regressed: bool,
}

impl Change {
    /// `+12.3%`, or `+0.40pp` for failures.
    pub fn delta(&self) -> String {
        match self.metric {
            Metric::Failures | Metric::Dropped => format!("{:+.2}pp", self.change),
            _ => format!("{:+.1}%", self.change),
        }
    }

    /// `before → after`, in the figure's unit.
    pub fn values(&self) -> String {
        match self.metric {
            Metric::Rps => format!("{:.1} → {:.1}", self.before, self.after),
            Metric::Failures | Metric::Dropped => {
                format!("{:.2}% → {:.2}%", self.before, self.after)
            }
            _ => format!(
                "{} → {}",
                crate::targets::ms(self.before),
                crate::targets::ms(self.after)
            ),
        }
    }

    fn describe_against(&self, thresholds: &Thresholds) -> String {
        let limit = match self.metric {
            Metric::Rps => thresholds.rps.map(|l| format!("-{l}%")),
            Metric::P50 => thresholds.p50.map(|l| format!("+{l}%")),
            Metric::P95 => thresholds.p95.map(|l| format!("+{l}%")),
            Metric::P99 => thresholds.p99.map(|l| format!("+{l}%")),
            Metric::Failures | Metric::Dropped => thresholds.failure_pp.map(|l| format!("+{l}pp")),
        };
        format!(
            "{} ({}), allowed {}",
            self.values(),
            self.delta(),
            limit.unwrap_or_default()
        )
    }
}

/// How a row stands in the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    /// In both runs, with enough requests to judge.
    Compared,
    /// In both runs, too few requests in one of them to judge.
    TooFew,
    /// Only in this run.
    New,
    /// Only in the baseline.
    Gone,
}

impl RowState {
    /// What a table says of a row in this state (empty when it was compared).
    pub fn note(self) -> &'static str {
        match self {
            Self::Compared => "",
            Self::TooFew => "too few to judge",
            Self::New => "new",
            Self::Gone => "gone",
        }
    }
}

/// One endpoint (or the aggregate) in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct ComparedRow {
    /// HTTP method (empty for the aggregate).
    pub method: String,
    /// Name, or `Aggregated`.
    pub name: String,
    /// How it stands.
    pub state: RowState,
    /// Requests (baseline, this run).
    pub requests: (u64, u64),
    /// Its figures (none for a row in one run only).
    pub changes: Vec<Change>,
}

impl ComparedRow {
    /// `GET /api/v1/files`, or `Aggregated`.
    pub fn label(&self) -> String {
        if self.method.is_empty() {
            self.name.clone()
        } else {
            format!("{} {}", self.method, self.name)
        }
    }

    /// The change of `metric`, if compared.
    pub fn change(&self, metric: Metric) -> Option<&Change> {
        self.changes.iter().find(|c| c.metric == metric)
    }
}

/// This run against a baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The baseline's file.
    pub baseline: String,
    /// Unix time the baseline run started.
    pub baseline_started_at: u64,
    /// The thresholds judged.
    pub thresholds: Thresholds,
    /// Every endpoint in either run, then the aggregate.
    pub rows: Vec<ComparedRow>,
    /// One line per figure past its threshold; empty when none is.
    pub regressions: Vec<String>,
    /// The open model's dropped iterations, when both runs had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Change>,
}

impl Comparison {
    /// Whether nothing passed its threshold.
    pub fn passed(&self) -> bool {
        self.regressions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn before(requests: u64, failures: u64, p95: f64) -> BaselineRow {
        let mut percentiles_ms = vec![10.0; 11];
        percentiles_ms[P95.place()] = p95;
        percentiles_ms[P99.place()] = p95 * 1.5;
        BaselineRow {
            method: "GET".into(),
            name: "/a".into(),
            requests,
            failures,
            rps: requests as f64 / 10.0,
            median_ms: 10.0,
            percentiles_ms,
        }
    }

    fn now(requests: u64, failures: u64, p95: f64) -> Row {
        let mut stats = crate::stats::EndpointStats::default();
        for i in 0..requests {
            stats.record(10_000, 100, Some(200), i < failures);
        }
        let mut row = Row::new(crate::stats::Phase::Steady, "GET", "/a", &stats, 10.0);
        row.percentiles_ms[P95.place()] = p95;
        row.percentiles_ms[P99.place()] = p95 * 1.5;
        row.median_ms = 10.0;
        row
    }

    #[test]
    fn parses_thresholds_and_refuses_nonsense() {
        let t: Thresholds = "p95=+50%, failure=+2pp,rps=-10%,p99=off".parse().unwrap();
        assert_eq!(
            (t.p95, t.failure_pp, t.rps, t.p99, t.p50),
            (Some(50.0), Some(2.0), Some(10.0), None, None)
        );
        assert_eq!("".parse::<Thresholds>().unwrap(), Thresholds::default());
        for bad in [
            "p95=20",
            "p95",
            "p96=+1%",
            "failure=+1%",
            "rps=-x%",
            "p95=+NaN%",
        ] {
            assert!(bad.parse::<Thresholds>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn judges_tail_latency_and_failures_past_their_thresholds() {
        let defaults = Thresholds::default();
        // p95 100 → 125 ms is +25 %, past +20 %; failures 0 → 0.5 % stays under +1pp.
        let compared = compare_row(
            "GET",
            "/a",
            Some(&before(1000, 0, 100.0)),
            Some(&now(1000, 5, 125.0)),
            &defaults,
        );
        assert_eq!(compared.state, RowState::Compared);
        assert!(compared.change(Metric::P95).unwrap().regressed);
        assert!(!compared.change(Metric::Failures).unwrap().regressed);
        // +15 % is within.
        let compared = compare_row(
            "GET",
            "/a",
            Some(&before(1000, 0, 100.0)),
            Some(&now(1000, 0, 115.0)),
            &defaults,
        );
        assert!(compared.changes.iter().all(|c| !c.regressed));
        // Failures 0 → 3 % pass +1pp.
        let compared = compare_row(
            "GET",
            "/a",
            Some(&before(1000, 0, 100.0)),
            Some(&now(1000, 30, 100.0)),
            &defaults,
        );
        assert!(compared.change(Metric::Failures).unwrap().regressed);
    }

    #[test]
    fn small_samples_and_tiny_latencies_are_not_judged() {
        let defaults = Thresholds::default();
        let compared = compare_row(
            "GET",
            "/a",
            Some(&before(10, 0, 100.0)),
            Some(&now(1000, 0, 900.0)),
            &defaults,
        );
        assert_eq!(compared.state, RowState::TooFew);
        assert!(compared.changes.iter().all(|c| !c.regressed));
        // 1 ms → 1.8 ms is +80 %, but under a 2 ms change.
        let compared = compare_row(
            "GET",
            "/a",
            Some(&before(1000, 0, 1.0)),
            Some(&now(1000, 0, 1.8)),
            &defaults,
        );
        assert!(!compared.change(Metric::P95).unwrap().regressed);
    }

    #[test]
    fn names_what_differs_between_scenarios() {
        let a = ScenarioIdentity {
            user_types: vec!["U".into()],
            requests: vec!["GET /a".into(), "GET /b".into()],
        };
        let b = ScenarioIdentity {
            user_types: vec!["U".into()],
            requests: vec!["GET /a".into(), "POST /c".into()],
        };
        assert_eq!(difference(&a, &a), None);
        let text = difference(&a, &b).unwrap();
        assert!(text.contains("only in the baseline: GET /b"), "{text}");
        assert!(text.contains("only in this run: POST /c"), "{text}");
    }
}
