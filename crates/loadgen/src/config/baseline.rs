//! `--baseline` and `--regression` as a run's settings: an earlier run's JSON report, read and
//! checked to be comparable before the first request (so a wrong file costs no run), and the
//! thresholds of what may worsen. [`crate::report::baseline`] compares the run with it at the
//! end; this part sits in the settings, below the reports, because [`RunConfig`] holds it.
//!
//! [`RunConfig`]: super::RunConfig

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::scenario::ScenarioIdentity;

/// The version of the JSON report's layout, raised when a field a `--baseline` reads changes.
/// Here, where a report is read back; the report writes it.
pub const REPORT_VERSION: u32 = 1;

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
    #[error("--baseline {path}: not a loadgen JSON report (written with --report-json): {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// A report of another kind (a capacity search's).
    #[error(
        "--baseline {path}: a {kind} report (written by `loadgen {kind} --json`), and a run \
         compares only with a run's report (written by `loadgen --report-json`): give one of those, \
         or compare with `loadgen {kind} --baseline`"
    )]
    Kind {
        /// The file.
        path: PathBuf,
        /// Its `report_kind`.
        kind: String,
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
pub(crate) struct BaselineFile {
    pub(crate) scenario: Option<ScenarioIdentity>,
    pub(crate) started_at: u64,
    pub(crate) steady: Vec<BaselineRow>,
    pub(crate) steady_total: BaselineRow,
    /// The open model's iterations, when the earlier run had one.
    #[serde(default)]
    pub(crate) open_model: Option<BaselineArrivals>,
}

/// The earlier run's open-model iterations (the report's `open_model`).
#[derive(Debug, Clone, Copy, Deserialize)]
pub(crate) struct BaselineArrivals {
    pub(crate) scheduled: u64,
    pub(crate) dropped: u64,
}

/// One row of it (the comparison in [`crate::report::baseline`] reads the fields).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BaselineRow {
    pub(crate) method: String,
    pub(crate) name: String,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    pub(crate) rps: f64,
    pub(crate) median_ms: f64,
    pub(crate) percentiles_ms: Vec<f64>,
}

/// An earlier run's report, checked to be comparable with this run.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub(crate) path: PathBuf,
    pub(crate) file: BaselineFile,
}

impl Baseline {
    /// Reads `path` and checks that it is a report of this version of `scenario`.
    pub fn load(path: &Path, scenario: &ScenarioIdentity) -> Result<Self, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_owned(),
            source,
        })?;
        let value = serde_json::from_str::<serde_json::Value>(&text).map_err(|source| {
            BaselineError::Parse {
                path: path.to_owned(),
                source,
            }
        })?;
        // The kind first: a capacity search's report has a version of its own layout.
        if let Some(kind) = value
            .get("report_kind")
            .and_then(serde_json::Value::as_str)
            .filter(|kind| *kind != "run")
        {
            return Err(BaselineError::Kind {
                path: path.to_owned(),
                kind: kind.to_owned(),
            });
        }
        // The version next: an older report may lack fields the rest needs.
        let version = value
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
}

/// What differs between two scenarios' identities, if anything.
pub(crate) fn difference(theirs: &ScenarioIdentity, ours: &ScenarioIdentity) -> Option<String> {
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
