//! "Is this run much worse than the last one?": a JSON report of an earlier run of the same
//! scenario (`--baseline`), compared per endpoint with this run, against the thresholds of
//! `--regression` (p95 and p99 up 20 % and 30 %, failures up 1 point, by default).
//!
//! The baseline is read and checked before the first request, so a wrong file costs no run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{REPORT_VERSION, Report, Row};
use crate::scenario::ScenarioIdentity;

/// Rows with fewer requests than this, in either run, are shown but not judged: their
/// percentiles are a handful of samples.
pub const MIN_REQUESTS_TO_JUDGE: u64 = 20;
/// A latency change smaller than this is never a regression, whatever its share: 1 ms to 1.5 ms
/// is +50 % and means nothing.
pub const MIN_LATENCY_CHANGE_MS: f64 = 2.0;

/// Why a baseline cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file cannot be read.
    #[error("--baseline {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a loadgen JSON report.
    #[error("--baseline {path}: not a loadgen JSON report (written with --json): {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A report of another version.
    #[error(
        "--baseline {path}: a report of version {found}, and this loadgen writes version \
         {REPORT_VERSION}: run the baseline again with this loadgen"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version (`none`: written before reports had one).
        found: String,
    },
    /// A report of another scenario.
    #[error("--baseline {path}: a report of another scenario ({difference})")]
    Scenario {
        /// The file.
        path: PathBuf,
        /// What differs.
        difference: String,
    },
}

/// A baseline and the thresholds to judge this run against it: what `--baseline` and
/// `--regression` ask for.
#[derive(Debug, Clone)]
pub struct BaselineCheck {
    /// The earlier run.
    pub baseline: Baseline,
    /// What may worsen.
    pub thresholds: Thresholds,
}

/// The part of a JSON report a comparison reads.
#[derive(Debug, Clone, Deserialize)]
struct BaselineFile {
    scenario: Option<ScenarioIdentity>,
    started_at: u64,
    steady: Vec<BaselineRow>,
    steady_total: BaselineRow,
}

#[derive(Debug, Clone, Deserialize)]
struct BaselineRow {
    method: String,
    name: String,
    requests: u64,
    failures: u64,
    rps: f64,
    median_ms: f64,
    percentiles_ms: Vec<f64>,
}

/// An earlier run's report, checked to be comparable with this run.
#[derive(Debug, Clone)]
pub struct Baseline {
    path: PathBuf,
    file: BaselineFile,
}

impl Baseline {
    /// Reads `path` and checks that it is a report of this version of `scenario`.
    pub fn load(path: &Path, scenario: &ScenarioIdentity) -> Result<Self, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_owned(),
            source,
        })?;
        // The version first: an older report may lack fields the rest needs.
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|source| BaselineError::Parse {
                path: path.to_owned(),
                source,
            })?
            .get("report_version")
            .and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(REPORT_VERSION)) {
            return Err(BaselineError::Version {
                path: path.to_owned(),
                found: version.map_or_else(|| "none".to_owned(), |v| v.to_string()),
            });
        }
        let file: BaselineFile =
            serde_json::from_str(&text).map_err(|source| BaselineError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let theirs = file
            .scenario
            .clone()
            .ok_or_else(|| BaselineError::Scenario {
                path: path.to_owned(),
                difference: "it names no scenario".into(),
            })?;
        if let Some(difference) = difference(&theirs, scenario) {
            return Err(BaselineError::Scenario {
                path: path.to_owned(),
                difference,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

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
        let regressions = rows
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
        Comparison {
            baseline: self.path.display().to_string(),
            baseline_started_at: self.file.started_at,
            thresholds: *thresholds,
            rows,
            regressions,
        }
    }
}

/// What differs between two scenarios' identities, if anything.
fn difference(theirs: &ScenarioIdentity, ours: &ScenarioIdentity) -> Option<String> {
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        a.iter().filter(|x| !b.contains(x)).cloned().collect()
    };
    let mut parts = Vec::new();
    for (what, a, b) in [
        ("user types", &theirs.user_types, &ours.user_types),
        ("requests", &theirs.requests, &ours.requests),
    ] {
        let (gone, new) = (only(a, b), only(b, a));
        if !gone.is_empty() {
            parts.push(format!("{what} only in the baseline: {}", gone.join(", ")));
        }
        if !new.is_empty() {
            parts.push(format!("{what} only in this run: {}", new.join(", ")));
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
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
            p95: row.percentiles_ms.get(5).copied().unwrap_or(0.0),
            p99: row.percentiles_ms.get(7).copied().unwrap_or(0.0),
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
            p95: row.percentiles_ms[5],
            p99: row.percentiles_ms[7],
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

/// What may worsen, and by how much, before the run fails: `--regression p95=+20%,failure=+1pp`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// Largest drop of req/s, percent (`None`: not judged).
    pub rps: Option<f64>,
    /// Largest rise of the median, percent.
    pub p50: Option<f64>,
    /// Largest rise of p95, percent.
    pub p95: Option<f64>,
    /// Largest rise of p99, percent.
    pub p99: Option<f64>,
    /// Largest rise of the failure share, percentage points.
    pub failure_pp: Option<f64>,
}

impl Default for Thresholds {
    /// Tail latency and failures are judged; req/s and the median only when asked, as a
    /// closed-loop run's req/s follows its latency anyway.
    fn default() -> Self {
        Self {
            rps: None,
            p50: None,
            p95: Some(20.0),
            p99: Some(30.0),
            failure_pp: Some(1.0),
        }
    }
}

impl FromStr for Thresholds {
    type Err = String;

    /// Overrides of the defaults: `p95=+20%`, `p99=+50%`, `p50=+10%`, `rps=-10%`,
    /// `failure=+1pp`, and `NAME=off`.
    fn from_str(input: &str) -> Result<Self, String> {
        let mut thresholds = Self::default();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                format!("{part:?}: write NAME=CHANGE, e.g. p95=+20%, rps=-10%, failure=+1pp")
            })?;
            let (name, value) = (name.trim(), value.trim());
            let (slot, unit, sign) = match name {
                "rps" => (&mut thresholds.rps, "%", '-'),
                "p50" | "median" => (&mut thresholds.p50, "%", '+'),
                "p95" => (&mut thresholds.p95, "%", '+'),
                "p99" => (&mut thresholds.p99, "%", '+'),
                "failure" | "failures" => (&mut thresholds.failure_pp, "pp", '+'),
                other => {
                    return Err(format!(
                        "unknown regression {other:?}: use rps, p50, p95, p99 or failure"
                    ));
                }
            };
            if value == "off" {
                *slot = None;
                continue;
            }
            let number = value
                .strip_suffix(unit)
                .map(|v| v.trim().trim_start_matches(sign))
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| {
                    format!(
                        "{part:?}: write {name}={sign}N{unit} (how much it may {}), or {name}=off",
                        if sign == '-' { "fall" } else { "rise" }
                    )
                })?;
            *slot = Some(number);
        }
        Ok(thresholds)
    }
}

impl fmt::Display for Thresholds {
    /// `p95 +20%, p99 +30%, failures +1pp`: the figures judged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            self.rps.map(|l| format!("req/s -{l}%")),
            self.p50.map(|l| format!("p50 +{l}%")),
            self.p95.map(|l| format!("p95 +{l}%")),
            self.p99.map(|l| format!("p99 +{l}%")),
            self.failure_pp.map(|l| format!("failures +{l}pp")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            f.write_str("none (nothing judged)")
        } else {
            f.write_str(&parts.join(", "))
        }
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
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rps => "req/s",
            Self::P50 => "p50",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::Failures => "failures",
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
            Metric::Failures => format!("{:+.2}pp", self.change),
            _ => format!("{:+.1}%", self.change),
        }
    }

    /// `before → after`, in the figure's unit.
    pub fn values(&self) -> String {
        match self.metric {
            Metric::Rps => format!("{:.1} → {:.1}", self.before, self.after),
            Metric::Failures => format!("{:.2}% → {:.2}%", self.before, self.after),
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
            Metric::Failures => thresholds.failure_pp.map(|l| format!("+{l}pp")),
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
        percentiles_ms[5] = p95;
        percentiles_ms[7] = p95 * 1.5;
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
        row.percentiles_ms[5] = p95;
        row.percentiles_ms[7] = p95 * 1.5;
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
