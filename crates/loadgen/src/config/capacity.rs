//! What a capacity search (`loadgen capacity`) asks: the service-level objective each step is
//! judged by (`--slo "p95<500ms,failures<1%"`, the targets' syntax), and the plan of its steps
//! (start rate, step, step time and its settling seconds, ceiling, how far to narrow the edge),
//! and the earlier search it is compared with (`--baseline`), read and checked before the first
//! step so that a wrong file costs no run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::arrival::Rate;
use crate::scenario::ScenarioIdentity;
use crate::targets::{TargetOverride, Targets};

/// What a capacity search's JSON report says it is (its `report_kind`), so that `--baseline`
/// tells it from a run's report exactly.
pub const CAPACITY_REPORT_KIND: &str = "capacity";
/// The version of the capacity report's layout (its `report_version`), raised when a field
/// `--baseline` reads changes. Here, where a report is read back; the report writes it.
pub const CAPACITY_REPORT_VERSION: u32 = 1;
/// How far capacity may fall against `--baseline` before the search fails, percent, unless
/// `--regression rps=-N%` says otherwise.
pub const DEFAULT_CAPACITY_FALL_PCT: f64 = 10.0;

/// One figure an objective bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// The share of failed requests, percent.
    Failures,
    /// The median, ms.
    P50,
    /// The 95th percentile, ms.
    P95,
    /// The 99th percentile, ms.
    P99,
    /// The mean, ms.
    Avg,
}

impl Metric {
    /// How the objective names it (`p95`, `failures`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Failures => "failures",
            Self::P50 => "p50",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::Avg => "avg",
        }
    }
}

/// `p95 < 500 ms`: a figure and the limit it must stay under.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// The figure.
    pub metric: Metric,
    /// Its limit: ms, or percent for failures.
    pub limit: f64,
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.metric {
            Metric::Failures => write!(f, "failures < {}%", self.limit),
            metric => write!(f, "{} < {} ms", metric.name(), self.limit),
        }
    }
}

/// The service-level objective every step must meet: all of its objectives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Each figure's limit.
    pub objectives: Vec<Objective>,
}

impl Slo {
    /// The objective of a run's targets (failures, p95, p99, average), as `--slo` defaults.
    pub fn of_targets(targets: &Targets) -> Self {
        Self {
            objectives: vec![
                Objective {
                    metric: Metric::P95,
                    limit: targets.p95_ms,
                },
                Objective {
                    metric: Metric::P99,
                    limit: targets.p99_ms,
                },
                Objective {
                    metric: Metric::Avg,
                    limit: targets.avg_ms,
                },
                Objective {
                    metric: Metric::Failures,
                    limit: targets.failure_pct,
                },
            ],
        }
    }

    /// The limit on `metric`, when the objective has one.
    pub fn limit(&self, metric: Metric) -> Option<f64> {
        self.objectives
            .iter()
            .find(|o| o.metric == metric)
            .map(|o| o.limit)
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.objectives.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(", "))
    }
}

impl FromStr for Slo {
    type Err = String;

    /// `p95<500ms,failures<1%` (or the targets' `p95=500ms`); also `p50` and `avg`.
    fn from_str(input: &str) -> Result<Self, String> {
        let mut objectives: Vec<Objective> = Vec::new();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once(['<', '=']).ok_or_else(|| {
                format!("{part:?}: write NAME<VALUE, e.g. p95<500ms, failures<1%")
            })?;
            let value = value.trim_start_matches('=').trim();
            let name = name.trim().to_ascii_lowercase();
            let objective = if matches!(name.as_str(), "p50" | "median") {
                // The targets have no median: read its value as a p95's.
                let limit = format!("p95={value}").parse::<TargetOverride>()?;
                Objective {
                    metric: Metric::P50,
                    limit: Targets::with(&[limit]).p95_ms,
                }
            } else {
                let target = format!("{name}={value}")
                    .parse::<TargetOverride>()
                    .map_err(|e| e.replace("users", "p50"))?;
                let targets = Targets::with(std::slice::from_ref(&target));
                match name.as_str() {
                    "failure" | "failures" | "fail" => Objective {
                        metric: Metric::Failures,
                        limit: targets.failure_pct,
                    },
                    "p95" => Objective {
                        metric: Metric::P95,
                        limit: targets.p95_ms,
                    },
                    "p99" => Objective {
                        metric: Metric::P99,
                        limit: targets.p99_ms,
                    },
                    "avg" | "average" => Objective {
                        metric: Metric::Avg,
                        limit: targets.avg_ms,
                    },
                    _ => {
                        return Err(format!(
                            "{name:?} is no objective: use p50, p95, p99, avg or failures"
                        ));
                    }
                }
            };
            objectives.retain(|o| o.metric != objective.metric);
            objectives.push(objective);
        }
        if objectives.is_empty() {
            return Err("an empty objective: write e.g. \"p95<500ms,failures<1%\"".into());
        }
        Ok(Self { objectives })
    }
}

/// How the rate grows from one step to the next while climbing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepSize {
    /// Add this rate (`--step 10/s`).
    Add(Rate),
    /// Multiply by this factor (`--step x2`, `--step 50%` for ×1.5).
    Times(f64),
}

impl StepSize {
    /// The rate after `rate`; always higher by at least one iteration a minute.
    pub fn after(self, rate: Rate) -> Rate {
        let next = match self {
            Self::Add(step) => rate
                .count_per_minute()
                .saturating_add(step.count_per_minute()),
            Self::Times(factor) => (rate.count_per_minute() as f64 * factor).round() as u64,
        };
        Rate::per_minute(next.max(rate.count_per_minute() + 1))
    }
}

impl fmt::Display for StepSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Add(rate) => write!(f, "+{rate}"),
            Self::Times(factor) => write!(f, "x{factor}"),
        }
    }
}

impl FromStr for StepSize {
    type Err = String;

    /// `10/s` (added), `x2` (multiplied), `50%` (raised by half).
    fn from_str(input: &str) -> Result<Self, String> {
        let text = input.trim();
        let hint = "write a rate to add (10/s), a factor (x2) or a share to add (50%)";
        if let Some(factor) = text.strip_prefix(['x', 'X', '*']) {
            return match factor.trim().parse::<f64>() {
                Ok(f) if f.is_finite() && f > 1.0 => Ok(Self::Times(f)),
                _ => Err(format!("{input:?}: a factor above 1, e.g. x2; {hint}")),
            };
        }
        if let Some(pct) = text.strip_suffix('%') {
            return match pct.trim().parse::<f64>() {
                Ok(p) if p.is_finite() && p > 0.0 => Ok(Self::Times(1.0 + p / 100.0)),
                _ => Err(format!("{input:?}: a positive share, e.g. 50%; {hint}")),
            };
        }
        match Rate::parse(text) {
            Ok(rate) if rate.count_per_minute() > 0 => Ok(Self::Add(rate)),
            Ok(_) => Err(format!("{input:?}: a step of zero never climbs; {hint}")),
            Err(e) => Err(format!("{e}; {hint}")),
        }
    }
}

/// Iterations a step must start in its judged seconds for its percentiles to mean anything:
/// the search goes no lower.
pub const MIN_ITERATIONS: f64 = 10.0;

/// The steps of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityPlan {
    /// What each step must meet.
    pub slo: Slo,
    /// The first step's rate.
    pub start: Rate,
    /// How the rate climbs.
    pub step: StepSize,
    /// Each step's length, its settling seconds included.
    #[serde(with = "common::duration::as_secs")]
    pub step_time: Duration,
    /// The first seconds of a step, left out of its judgement (connections open, queues fill).
    #[serde(with = "common::duration::as_secs")]
    pub settle: Duration,
    /// The highest rate tried: held there, the answer is "at least" it.
    pub ceiling: Rate,
    /// The search ends once the edge is known to this share of the rate that held, percent.
    pub precision_pct: f64,
    /// Steps at most to narrow the edge by bisection.
    pub max_bisections: u32,
    /// The pause between steps, for the API to finish what the last one left.
    #[serde(with = "common::duration::as_secs")]
    pub pause: Duration,
    /// `--require`: the capacity a CI job demands (exit 1 below it).
    pub require: Option<Rate>,
    /// Users at most to serve a step's iterations (`--max-users`); default: enough for every
    /// iteration of two seconds of the step (or of the objective's p99, when longer).
    pub max_users: Option<u64>,
    /// Users made and started before each step's first iteration (`--pre-allocate`; default:
    /// a tenth of the step's rate per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_allocate: Option<u64>,
    /// `--baseline`: an earlier search to compare the capacity found with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<CapacityBaseline>,
}

impl CapacityPlan {
    /// The default plan under `slo`: from 10/s, doubling, 20 s steps settling 5 s, up to
    /// 2,000/s, the edge narrowed to 10 % in at most 4 more steps.
    pub fn new(slo: Slo) -> Self {
        Self {
            slo,
            start: Rate::per_second(10),
            step: StepSize::Times(2.0),
            step_time: Duration::from_secs(20),
            settle: Duration::from_secs(5),
            ceiling: Rate::per_second(2000),
            precision_pct: 10.0,
            max_bisections: 4,
            pause: Duration::from_secs(2),
            require: None,
            max_users: None,
            pre_allocate: None,
            baseline: None,
        }
    }

    /// Fails, saying what to change, when the plan cannot run.
    pub fn check(&self) -> Result<(), String> {
        if self.start.count_per_minute() == 0 {
            return Err("--start-rate 0: start from at least 1/m".into());
        }
        if self.ceiling < self.start {
            return Err(format!(
                "--ceiling {} is below --start-rate {}: raise the ceiling",
                self.ceiling, self.start
            ));
        }
        if self.settle >= self.step_time {
            return Err(format!(
                "--settle {} leaves nothing of --step-time {} to judge: settle for less, or \
                 step for longer",
                humantime::format_duration(self.settle),
                humantime::format_duration(self.step_time)
            ));
        }
        if !self.judges(self.start) {
            return Err(format!(
                "--start-rate {} gives {:.1} iterations in the {} judged of each step, too few \
                 to judge: start from at least {:.1}/s, or step for longer (--step-time)",
                self.start,
                self.start.per_sec() * self.hold().as_secs_f64(),
                humantime::format_duration(self.hold()),
                MIN_ITERATIONS / self.hold().as_secs_f64()
            ));
        }
        if !(self.precision_pct.is_finite() && self.precision_pct > 0.0) {
            return Err("--precision: a positive share, e.g. 10%".into());
        }
        Ok(())
    }

    /// Whether a step at `rate` starts iterations enough in its judged seconds to be judged
    /// ([`MIN_ITERATIONS`]).
    pub fn judges(&self, rate: Rate) -> bool {
        rate.per_sec() * self.hold().as_secs_f64() >= MIN_ITERATIONS
    }

    /// The seconds of a step that are judged.
    pub fn hold(&self) -> Duration {
        self.step_time.saturating_sub(self.settle)
    }

    /// Users at most for a step at `rate`: as asked, or every iteration of two seconds at the
    /// rate (of the objective's slowest latency limit, when longer), at least 10.
    pub fn users_for(&self, rate: Rate) -> u64 {
        self.max_users.unwrap_or_else(|| {
            let slowest_ms = self
                .slo
                .objectives
                .iter()
                .filter(|o| o.metric != Metric::Failures)
                .map(|o| o.limit)
                .fold(0.0, f64::max);
            let secs = (slowest_ms / 1000.0).max(2.0);
            ((rate.per_sec() * secs).ceil() as u64).max(10)
        })
    }
}

/// An earlier search's answer, read from its JSON report (`loadgen capacity --report-json`) and
/// checked to be comparable: a capacity report of this layout, of the same scenario, judged by
/// the same objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityBaseline {
    /// The file.
    pub path: PathBuf,
    /// Unix time of its first step's start, s.
    pub started_at: u64,
    /// Its answer's kind (`between`, `at_least`, `generator_limit`, `unfinished`).
    pub answer: String,
    /// The highest rate it found to meet the objective.
    pub held: Option<Rate>,
    /// How far capacity may fall before the search fails, percent.
    pub max_fall_pct: f64,
}

/// The part of a capacity report a comparison reads.
#[derive(Deserialize)]
struct CapacityFile {
    scenario: ScenarioIdentity,
    started_at: u64,
    plan: PlanPart,
    answer: AnswerPart,
}

#[derive(Deserialize)]
struct PlanPart {
    slo: Slo,
}

#[derive(Deserialize)]
struct AnswerPart {
    kind: String,
    #[serde(default)]
    held: Option<Rate>,
}

impl CapacityBaseline {
    /// Reads `path` and checks that it is a capacity report of this layout, of `scenario`,
    /// judged by `slo`; a fall of more than `max_fall_pct` percent will fail the search.
    pub fn load(
        path: &Path,
        scenario: &ScenarioIdentity,
        slo: &Slo,
        max_fall_pct: f64,
    ) -> Result<Self, String> {
        let at = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("--baseline {at}: {e}"))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            format!("--baseline {at}: not a loadgen JSON report (written with --report-json): {e}")
        })?;
        let kind = value.get("report_kind").and_then(serde_json::Value::as_str);
        let version = value
            .get("report_version")
            .and_then(serde_json::Value::as_u64);
        match (kind, version) {
            (Some(CAPACITY_REPORT_KIND), Some(v)) if v == u64::from(CAPACITY_REPORT_VERSION) => {}
            (Some(CAPACITY_REPORT_KIND), found) => {
                return Err(format!(
                    "--baseline {at}: a capacity report of version {}, and this loadgen writes \
                     version {CAPACITY_REPORT_VERSION}: run the baseline search again with this \
                     loadgen",
                    found.map_or_else(|| "none".to_owned(), |v| v.to_string())
                ));
            }
            (Some(other), _) => {
                return Err(format!(
                    "--baseline {at}: a report of kind {other:?}, not a capacity search's: give \
                     the JSON of an earlier `loadgen capacity --report-json`"
                ));
            }
            (None, _) if value.get("steady").is_some() => {
                return Err(format!(
                    "--baseline {at}: a run's report (written by `loadgen --report-json`), not a \
                     capacity search's: a capacity search compares with the JSON of an earlier \
                     `loadgen capacity --report-json`"
                ));
            }
            (None, _) => {
                return Err(format!(
                    "--baseline {at}: not a loadgen capacity report (written by `loadgen \
                     capacity --report-json`): it has no report_kind"
                ));
            }
        }
        let file: CapacityFile = serde_json::from_value(value)
            .map_err(|e| format!("--baseline {at}: a capacity report that cannot be read: {e}"))?;
        if let Some(difference) = super::baseline::difference(&file.scenario, scenario) {
            return Err(format!(
                "--baseline {at}: a search of another scenario ({difference})"
            ));
        }
        if file.plan.slo != *slo {
            return Err(format!(
                "--baseline {at}: a search judged by another objective ({}, this one: {slo}): \
                 capacities under different objectives do not compare; give the same --slo",
                file.plan.slo
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            started_at: file.started_at,
            answer: file.answer.kind,
            held: file.answer.held,
            max_fall_pct,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_objective_reads_as_the_issue_writes_it() {
        let slo: Slo = "p95<500ms,failures<1%".parse().unwrap();
        assert_eq!(slo.limit(Metric::P95), Some(500.0));
        assert_eq!(slo.limit(Metric::Failures), Some(1.0));
        assert_eq!(slo.limit(Metric::P99), None);
        assert_eq!(slo.to_string(), "p95 < 500 ms, failures < 1%");
        let same: Slo = "p95=0.5s, failure=1%".parse().unwrap();
        assert_eq!(same, slo);
        let median: Slo = "p50<80".parse().unwrap();
        assert_eq!(median.limit(Metric::P50), Some(80.0));
        for bad in ["", "p95", "p96<1ms", "p95<fast", "failures<-1%"] {
            assert!(bad.parse::<Slo>().is_err(), "{bad:?} was accepted");
        }
        let error = "p96<1ms".parse::<Slo>().unwrap_err();
        assert!(error.contains("unknown target"), "{error}");
    }

    #[test]
    fn steps_add_or_multiply_and_always_climb() {
        let add: StepSize = "10/s".parse().unwrap();
        assert_eq!(add.after(Rate::per_second(10)), Rate::per_second(20));
        let double: StepSize = "x2".parse().unwrap();
        assert_eq!(double.after(Rate::per_second(15)), Rate::per_second(30));
        let half: StepSize = "50%".parse().unwrap();
        assert_eq!(half.after(Rate::per_second(10)), Rate::per_second(15));
        // A factor too small to move a tiny rate still climbs.
        assert_eq!(
            StepSize::Times(1.01).after(Rate::per_minute(1)),
            Rate::per_minute(2)
        );
        for bad in ["x1", "x", "0/s", "-5%", "fast"] {
            assert!(bad.parse::<StepSize>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_plan_that_cannot_run_says_what_to_change() {
        let mut plan = CapacityPlan::new("p95<500ms".parse().unwrap());
        assert_eq!(plan.check(), Ok(()));
        plan.settle = plan.step_time;
        assert!(plan.check().unwrap_err().contains("--settle"));
        plan = CapacityPlan::new(plan.slo.clone());
        plan.ceiling = Rate::per_second(5);
        assert!(plan.check().unwrap_err().contains("--ceiling"));
        plan = CapacityPlan::new(plan.slo.clone());
        plan.start = Rate::per_minute(30);
        let error = plan.check().unwrap_err();
        assert!(error.contains("7.5 iterations"), "{error}");
    }

    #[test]
    fn users_cover_two_seconds_of_the_rate_or_the_slowest_limit() {
        let plan = CapacityPlan::new("p95<500ms".parse().unwrap());
        assert_eq!(plan.users_for(Rate::per_second(100)), 200);
        assert_eq!(plan.users_for(Rate::per_second(1)), 10);
        let slow = CapacityPlan::new("p99<5s".parse().unwrap());
        assert_eq!(slow.users_for(Rate::per_second(100)), 500);
    }

    /// A capacity report as `loadgen capacity --report-json` writes it, reduced to what is read back.
    fn capacity_json(slo: &str, held: &str) -> String {
        format!(
            r#"{{"report_kind": "capacity", "report_version": {CAPACITY_REPORT_VERSION},
                "scenario": {{"user_types": ["Reader"], "requests": ["GET /api/v1/tasks"]}},
                "started_at": 1790000000, "plan": {{"slo": {slo}}},
                "answer": {{"kind": "between", "held": {held}, "broke": "60/s"}}}}"#
        )
    }

    #[test]
    fn a_capacity_baseline_is_read_and_a_report_of_another_kind_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let scenario = ScenarioIdentity {
            user_types: vec!["Reader".into()],
            requests: vec!["GET /api/v1/tasks".into()],
        };
        let slo: Slo = "p95<500ms".parse().unwrap();
        let slo_json = serde_json::to_string(&slo).unwrap();
        let path = dir.path().join("capacity.json");
        std::fs::write(&path, capacity_json(&slo_json, "\"50/s\"")).unwrap();
        let baseline = CapacityBaseline::load(&path, &scenario, &slo, 10.0).unwrap();
        assert_eq!(baseline.held, Some(Rate::per_second(50)));
        assert_eq!(baseline.answer, "between");

        // Another objective, another scenario: refused, saying what differs.
        let other: Slo = "p95<200ms".parse().unwrap();
        let error = CapacityBaseline::load(&path, &scenario, &other, 10.0).unwrap_err();
        assert!(
            error.contains("another objective") && error.contains("--slo"),
            "{error}"
        );
        let renamed = ScenarioIdentity {
            user_types: vec!["Writer".into()],
            ..scenario.clone()
        };
        let error = CapacityBaseline::load(&path, &renamed, &slo, 10.0).unwrap_err();
        assert!(error.contains("another scenario"), "{error}");

        // A run's report to a capacity search, and a capacity report to a run.
        let run = dir.path().join("run.json");
        std::fs::write(
            &run,
            r#"{"report_version": 1, "steady": [], "started_at": 0}"#,
        )
        .unwrap();
        let error = CapacityBaseline::load(&run, &scenario, &slo, 10.0).unwrap_err();
        assert!(
            error.contains("a run's report") && error.contains("loadgen capacity --report-json"),
            "{error}"
        );
        let error = super::super::baseline::Baseline::load(&path, &scenario)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("a capacity report") && error.contains("loadgen --report-json"),
            "{error}"
        );
    }
}
