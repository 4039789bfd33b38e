//! The web UI's capacity mode: the form's fields read into a [`CapacityPlan`] (each bad value
//! refused with its parser's message, for the form to show), the search run as a task of its
//! own with [`capacity::search`], and what the page polls of it: the steps done, the step under
//! way, and at the end the answer. The session holds one search at a time.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::arrival::Rate;
use crate::capacity::search::Search;
use crate::capacity::{self, StopSearch};
use crate::cluster::Master;
use crate::config::RunConfig;
use crate::config::capacity::{CapacityPlan, Metric, Slo, StepSize};
use crate::engine::EngineError;
use crate::report::capacity::{CapacityReport, StepReport, charts};
use crate::scenario::ScenarioIdentity;
use crate::targets::Targets;

/// Why a search was not started: the form's answer and its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A value of the form no plan can follow (400), with what to write instead.
    BadValue(String),
    /// A run or another search goes (409).
    Busy(String),
}

/// The plan the capacity form asks for, and its host (empty or absent: the one set); the
/// objective defaults to `targets`, every other field to [`CapacityPlan::new`]'s.
pub fn plan_from_form(
    fields: &[(String, String)],
    targets: &Targets,
) -> Result<(CapacityPlan, Option<String>), String> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let slo = match field("slo") {
        Some(text) => text.parse::<Slo>().map_err(|e| format!("Objective: {e}"))?,
        None => Slo::of_targets(targets),
    };
    let defaults = CapacityPlan::new(slo);
    let rate = |name: &str, label: &str, default: Rate| match field(name) {
        Some(text) => Rate::parse(text).map_err(|e| format!("{label}: {e}")),
        None => Ok(default),
    };
    let duration = |name: &str, label: &str, default: Duration| match field(name) {
        Some(text) => common::duration::parse(text).map_err(|e| format!("{label}: {e}")),
        None => Ok(default),
    };
    let plan = CapacityPlan {
        start: rate("start_rate", "Start rate", defaults.start)?,
        step: match field("step") {
            Some(text) => text.parse::<StepSize>().map_err(|e| format!("Step: {e}"))?,
            None => defaults.step,
        },
        step_time: duration("step_time", "Step time", defaults.step_time)?,
        settle: duration("settle", "Settle", defaults.settle)?,
        ceiling: rate("ceiling", "Ceiling", defaults.ceiling)?,
        pause: duration("pause", "Pause", defaults.pause)?,
        ..defaults
    };
    if plan.step_time.is_zero() {
        return Err("Step time: 0 s; give each step a positive time, e.g. 20s".into());
    }
    // The plan's own check names the command line's flags; the form's labels are the same
    // words.
    plan.check().map_err(|e| {
        e.replace("--step-time", "step time")
            .replace("--start-rate", "start rate")
            .replace("--", "")
    })?;
    Ok((plan, field("host").map(str::to_owned)))
}

/// The objective as the form's field shows it, in the syntax it reads back
/// (`p95<500ms,failures<1%`).
pub fn slo_field(slo: &Slo) -> String {
    slo.objectives
        .iter()
        .map(|o| match o.metric {
            Metric::Failures => format!("failures<{}%", o.limit),
            metric => format!("{}<{}ms", metric.name(), o.limit),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The step as the form's field shows it (`x2`, `10/s`).
pub fn step_field(step: StepSize) -> String {
    match step {
        StepSize::Add(rate) => rate.to_string(),
        StepSize::Times(factor) => format!("x{factor}"),
    }
}

/// A search started from the UI, going or done.
pub struct CapacitySearch {
    /// The plan it follows.
    pub plan: CapacityPlan,
    /// The scenario and host searched, and when: for the report of the steps so far.
    searched: (ScenarioIdentity, String, SystemTime),
    stop: StopSearch,
    progress: Arc<Mutex<Progress>>,
}

/// What the search has delivered so far.
struct Progress {
    steps: Vec<StepReport>,
    /// The search's choices replayed from the steps' verdicts: its `next` is the step under way.
    replay: Search,
    /// When the last step ended (or the search started).
    last_end: Instant,
    /// The end: the report, or why the first step could not start.
    end: Option<Result<CapacityReport, String>>,
}

impl Progress {
    /// Takes a step as the search does: a step cut short is not recorded.
    fn record(&mut self, step: &StepReport) {
        self.replay.record_step(step);
        self.steps.push(step.clone());
        self.last_end = Instant::now();
    }
}

impl CapacitySearch {
    /// Starts the search `plan` describes with each step a run of `config`, on the workers
    /// of `master` when given.
    pub fn start(config: RunConfig, plan: CapacityPlan, master: Option<Master>) -> Self {
        let stop = StopSearch::default();
        let progress = Arc::new(Mutex::new(Progress {
            steps: Vec::new(),
            replay: Search::new(&plan),
            last_end: Instant::now(),
            end: None,
        }));
        let searched = (
            config.scenario.identity(),
            config.host.clone(),
            SystemTime::now(),
        );
        let (task_plan, task_stop, task_progress) = (plan.clone(), stop.clone(), progress.clone());
        tokio::spawn(async move {
            let lock = || task_progress.lock().unwrap_or_else(PoisonError::into_inner);
            let result =
                capacity::search_on(&config, &task_plan, master.as_ref(), &task_stop, |step| {
                    lock().record(step);
                })
                .await
                .map_err(|e: EngineError| e.to_string());
            if let Ok(report) = &result {
                tracing::info!("Capacity search: {}", report.headline());
            }
            lock().end = Some(result);
        });
        Self {
            plan,
            searched,
            stop,
            progress,
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the search still goes.
    pub fn goes(&self) -> bool {
        self.progress().end.is_none()
    }

    /// Ends the search: the step under way stops (its figures kept) and no other starts.
    pub fn stop_by(&self, who: &str) {
        self.stop.stop_by(who);
    }

    /// The HTML report's charts of the steps so far (latency against throughput with the
    /// knee, throughput against the rate asked): the page shows the server's charts, as its
    /// run tabs do.
    pub fn charts(&self) -> String {
        let progress = self.progress();
        let so_far;
        let report = match &progress.end {
            Some(Ok(report)) => report,
            _ => {
                let (identity, host, started_at) = &self.searched;
                so_far = CapacityReport::new(
                    identity.clone(),
                    host,
                    *started_at,
                    self.plan.clone(),
                    progress.steps.clone(),
                    progress.replay.answer(false),
                );
                &so_far
            }
        };
        if report.steps.is_empty() {
            return String::new();
        }
        format!(
            "{}{}",
            charts::latency_throughput(report),
            charts::throughput_against_rate(report)
        )
    }

    /// The report, once the search has ended with one.
    pub fn report(&self) -> Option<CapacityReport> {
        match &self.progress().end {
            Some(Ok(report)) => Some(report.clone()),
            _ => None,
        }
    }

    /// What the page shows: the state, the plan, the steps done, the step under way, and at
    /// the end the answer (`headline`, `answer`, `knee`) or why the search could not start.
    pub fn to_json(&self) -> Value {
        let progress = self.progress();
        let stopped_by = self.stop.stopped_by();
        let state = match (&progress.end, stopped_by) {
            (None, None) => "running",
            (None, Some(_)) => "stopping",
            (Some(Ok(_)), _) => "finished",
            (Some(Err(_)), _) => "failed",
        };
        let current = match (&progress.end, stopped_by) {
            (None, None) => progress.replay.next().map(|(rate, kind)| {
                // A step after the first starts after the plan's pause.
                let pause = if progress.steps.is_empty() {
                    Duration::ZERO
                } else {
                    self.plan.pause
                };
                let since = progress.last_end.elapsed();
                json!({
                    "number": progress.steps.len() + 1,
                    "kind": kind,
                    "rate": rate,
                    "rate_per_sec": rate.per_sec(),
                    "pausing": since < pause,
                    "elapsed_secs": since.saturating_sub(pause).as_secs_f64(),
                    "step_secs": self.plan.step_time.as_secs_f64(),
                })
            }),
            _ => None,
        };
        let report = progress.end.as_ref().and_then(|end| end.as_ref().ok());
        json!({
            "state": state,
            "stopped_by": stopped_by,
            "plan": self.plan,
            "objective": self.plan.slo.to_string(),
            "steps": progress.steps,
            "current": current,
            "headline": report.map(CapacityReport::headline),
            "answer": report.map(|r| &r.answer),
            "knee": report.and_then(|r| r.knee.as_ref()),
            "error": progress.end.as_ref().and_then(|end| end.as_ref().err()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::web::testing::form;

    #[test]
    fn the_form_reads_into_a_plan_and_empty_fields_take_the_defaults() {
        let targets = Targets::default();
        let (plan, host) = plan_from_form(
            &form(&[
                ("slo", "p95<300ms,failures<2%"),
                ("start_rate", "5/s"),
                ("step", "10/s"),
                ("step_time", "3s"),
                ("settle", "1s"),
                ("ceiling", "40/s"),
                ("pause", "0s"),
                ("host", " http://127.0.0.1:9 "),
            ]),
            &targets,
        )
        .unwrap();
        assert_eq!(plan.slo.limit(Metric::P95), Some(300.0));
        assert_eq!(plan.start, Rate::per_second(5));
        assert_eq!(plan.step, StepSize::Add(Rate::per_second(10)));
        assert_eq!(plan.step_time, Duration::from_secs(3));
        assert_eq!(plan.pause, Duration::ZERO);
        assert_eq!(host.as_deref(), Some("http://127.0.0.1:9"));
        let (defaults, host) =
            plan_from_form(&form(&[("slo", " "), ("host", "")]), &targets).unwrap();
        assert_eq!(defaults, CapacityPlan::new(Slo::of_targets(&targets)));
        assert_eq!(host, None);
    }

    #[test]
    fn a_bad_value_is_refused_with_its_field_and_the_parsers_message() {
        let targets = Targets::default();
        for (pairs, says) in [
            (vec![("slo", "p96<1ms")], "Objective: unknown target"),
            (vec![("start_rate", "fast")], "Start rate:"),
            (vec![("step", "x1")], "Step:"),
            (vec![("step_time", "soon")], "Step time:"),
            (vec![("step_time", "0")], "Step time:"),
            (vec![("settle", "30s")], "settle 30s leaves nothing"),
            (vec![("ceiling", "1/s")], "ceiling 1/s is below"),
            (vec![("pause", "-1")], "Pause:"),
        ] {
            let error = plan_from_form(&form(&pairs), &targets)
                .err()
                .unwrap_or_default();
            assert!(error.contains(says), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn the_fields_shown_read_back_as_the_same_plan() {
        let slo = Slo::of_targets(&Targets::default());
        assert_eq!(slo_field(&slo).parse::<Slo>(), Ok(slo));
        for step in [StepSize::Times(2.0), StepSize::Add(Rate::per_minute(90))] {
            assert_eq!(step_field(step).parse::<StepSize>(), Ok(step));
        }
    }
}
