//! `loadgen capacity`: a driver of the engine that runs one open-model step after another
//! (each its own run, so every step is judged and diagnosed as a run is), forgets each step's
//! settling seconds, judges the rest against the objective, and lets [`search::Search`] pick
//! the next rate. A signal ends the step under way and the search, and the report is still
//! written from the steps done.

pub mod search;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::arrival::{Arrival, Rate};
use crate::cluster::Master;
use crate::config::capacity::{CapacityPlan, Metric};
use crate::config::{Outputs, RunConfig};
use crate::engine::{EngineError, Run, RunOutcome};
use crate::exit_code::{EXIT_OK, EXIT_TARGET_MISSED};
use crate::report::capacity::{CapacityReport, StepReport, console};
use crate::report::{self, Report};
use search::Search;

/// Stops a search: the step under way ends (its figures kept) and no other starts.
#[derive(Debug, Clone, Default)]
pub struct StopSearch {
    token: CancellationToken,
    by: Arc<OnceLock<String>>,
}

impl StopSearch {
    /// Stops the search, saying who (`SIGINT`, `the web UI`); the first one given is kept.
    pub fn stop_by(&self, who: &str) {
        let _ = self.by.set(who.to_owned());
        self.token.cancel();
    }

    /// Who stopped the search, once stopped.
    pub fn stopped_by(&self) -> Option<&str> {
        self.token
            .is_cancelled()
            .then(|| self.by.get().map_or("a stop", String::as_str))
    }
}

/// Runs the search `plan` describes against the target of `config`, from the command line:
/// prints each step's row as it ends and the answer at the end, writes the files asked for,
/// stops on Ctrl-C, SIGTERM or SIGHUP; returns the exit code.
pub async fn drive(config: RunConfig, plan: CapacityPlan) -> anyhow::Result<u8> {
    drive_on(config, plan, None).await
}

/// As [`drive`], each step run on the workers of `master` when given (their share of the
/// rate each), so that a rate one machine cannot send can still be searched.
pub async fn drive_on(
    config: RunConfig,
    plan: CapacityPlan,
    master: Option<&Master>,
) -> anyhow::Result<u8> {
    plan.check().map_err(anyhow::Error::msg)?;
    config
        .outputs
        .check_writable()
        .map_err(anyhow::Error::msg)?;
    let mut signals = common::signals::Signals::install()?;
    let stop = StopSearch::default();
    let on_signal = stop.clone();
    let watching = tokio::spawn(async move {
        let signal = signals.next().await;
        on_signal.stop_by(signal.name());
        // A second signal leaves at once, as every run does.
        let again = signals.next().await;
        monitor::tunnel::close_all().await;
        std::process::exit(again.exit_code());
    });
    eprintln!("loadgen: capacity search: {}", describe(&plan));
    report::print(&console::header());
    let report = search_on(&config, &plan, master, &stop, |step| {
        report::print(&console::row(step));
    })
    .await;
    watching.abort();
    let report = report?;
    if let Some(who) = stop.stopped_by() {
        eprintln!("loadgen: {who}: the search stopped; reporting the steps done");
    }
    report::print(&console::summary(&report));
    let comparison = crate::report::capacity::baseline::CapacityComparison::of(&report);
    if let Some(comparison) = &comparison {
        report::print(&format!("{}\n", comparison.sentence()));
    }
    crate::headless::say_written(&crate::report::capacity::files::write_all(
        &report,
        &config.outputs,
    ))?;
    let fell = comparison.as_ref().is_some_and(|c| c.fell());
    Ok(if report.requirement_met() == Some(false) || fell {
        EXIT_TARGET_MISSED
    } else {
        EXIT_OK
    })
}

/// Runs the search: one step after another until the answer is known or `stop` is called,
/// handing each step to `on_step` as it ends. Fails only when the first step cannot start
/// (the target does not answer its checks); a later step that cannot start has broken.
pub async fn search(
    config: &RunConfig,
    plan: &CapacityPlan,
    stop: &StopSearch,
    on_step: impl FnMut(&StepReport),
) -> Result<CapacityReport, EngineError> {
    search_on(config, plan, None, stop, on_step).await
}

/// As [`search`], each step run on the workers of `master` when given.
pub async fn search_on(
    config: &RunConfig,
    plan: &CapacityPlan,
    master: Option<&Master>,
    stop: &StopSearch,
    mut on_step: impl FnMut(&StepReport),
) -> Result<CapacityReport, EngineError> {
    let started_at = SystemTime::now();
    let mut search = Search::new(plan);
    let mut steps: Vec<StepReport> = Vec::new();
    while let Some((rate, kind)) = search.next() {
        if !steps.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(plan.pause) => {}
                () = stop.token.cancelled() => break,
            }
        }
        if stop.token.is_cancelled() {
            break;
        }
        let step_config = step_config(config, plan, rate);
        tracing::info!(
            "Step {}: {rate} for {} ({} settling)",
            steps.len() + 1,
            humantime::format_duration(plan.step_time),
            humantime::format_duration(plan.settle)
        );
        let outcome = match run_step(&step_config, plan, master, stop).await {
            Ok(outcome) => outcome,
            Err(error) if steps.is_empty() => return Err(error),
            Err(error) => failed_start(error),
        };
        let analysis = Report::of_run(&step_config, &outcome).analysis;
        let mut step = StepReport::of(steps.len() + 1, kind, rate, plan, &outcome, &analysis);
        if let Some(error) = &outcome.error {
            step.missed.push(format!("the step could not run: {error}"));
        }
        on_step(&step);
        search.record_step(&step);
        steps.push(step);
    }
    Ok(CapacityReport::new(
        config.scenario.identity(),
        &config.host,
        started_at,
        plan.clone(),
        steps,
        search.answer(!stop.token.is_cancelled()),
    ))
}

/// The plan in a line.
fn describe(plan: &CapacityPlan) -> String {
    format!(
        "{}; from {} by {} up to {}, {} a step ({} settling), narrowed to {}%",
        plan.slo,
        plan.start,
        plan.step,
        plan.ceiling,
        humantime::format_duration(plan.step_time),
        humantime::format_duration(plan.settle),
        plan.precision_pct
    )
}

/// The run of one step: `config`'s at `rate` for the step's time, with users enough for the
/// rate, and quiet (the search prints a row per step).
pub fn step_config(config: &RunConfig, plan: &CapacityPlan, rate: Rate) -> RunConfig {
    let mut step = config.clone();
    let users = plan.users_for(rate);
    step.load.arrival = Some(Arrival {
        rate: Some(rate),
        stages: Vec::new(),
        max_users: Some(users),
        pre_allocate: plan
            .pre_allocate
            .or_else(|| config.load.arrival.as_ref().and_then(|a| a.pre_allocate))
            .map(|n| n.min(users)),
    });
    step.load.users = users;
    step.load.run_time = Some(plan.step_time);
    step.load.shape = Vec::new();
    step.load.reset_stats = false;
    step.outputs = Outputs::default();
    step.baseline = None;
    step.live.quiet = true;
    // The findings' idea of "slow" is the objective's.
    step.targets.users = None;
    for objective in &plan.slo.objectives {
        match objective.metric {
            Metric::P95 => step.targets.p95_ms = objective.limit,
            Metric::P99 => step.targets.p99_ms = objective.limit,
            Metric::Avg => step.targets.avg_ms = objective.limit,
            Metric::Failures => step.targets.failure_pct = objective.limit,
            Metric::P50 => {}
        }
    }
    step
}

/// Runs one step: its figures are reset once it has settled (on the run's own clock, which
/// starts after the users are made), and its outcome is cut to the judged seconds (see
/// [`judged_part`]).
async fn run_step(
    config: &RunConfig,
    plan: &CapacityPlan,
    master: Option<&Master>,
    stop: &StopSearch,
) -> Result<Arc<RunOutcome>, EngineError> {
    let start = async {
        match master {
            Some(master) => Run::start_on(config, master).await,
            None => Run::start(config).await,
        }
    };
    let handle = tokio::select! {
        started = start => started?,
        () = stop.token.cancelled() => {
            return Ok(Arc::new(RunOutcome {
                interrupted: true,
                ..RunOutcome::default()
            }));
        }
    };
    let settling = {
        let handle = handle.clone();
        let settle = plan.settle;
        tokio::spawn(async move {
            let mut updates = handle.subscribe();
            let settled = updates
                .wait_for(|u| u.as_ref().is_some_and(|u| u.elapsed >= settle))
                .await
                .ok()
                .and_then(|u| u.as_ref().map(|u| u.elapsed));
            handle.reset_stats();
            settled
        })
    };
    let outcome = tokio::select! {
        outcome = handle.wait() => outcome,
        () = stop.token.cancelled() => {
            handle.stop_by(stop.stopped_by().unwrap_or("a stop"));
            handle.wait().await
        }
    };
    settling.abort();
    let judged_from = match settling.await {
        Ok(Some(elapsed)) => elapsed,
        // Ended before it settled: nothing was reset, the whole run is judged.
        _ => Duration::ZERO,
    };
    Ok(Arc::new(judged_part(&outcome, judged_from)))
}

/// `outcome` from `from` into its run on, when its figures were reset: its length, its
/// timeline and the backend's ticks cut to match, so that every rate, trend and mean the
/// findings compute is one of the judged seconds.
fn judged_part(outcome: &RunOutcome, from: Duration) -> RunOutcome {
    let mut judged = outcome.clone();
    if from.is_zero() {
        return judged;
    }
    judged.duration = outcome.duration.saturating_sub(from);
    // A second's row counts the requests that ended in it: those of the seconds after the
    // reset.
    judged.history.retain(|row| row.at_secs > from.as_secs());
    let since = chrono::DateTime::<chrono::Utc>::from(outcome.started_at + from);
    judged.backend.retain(|tick| tick.timestamp >= since);
    judged
}

/// The outcome of a step whose run could not start (the API stopped answering its checks).
fn failed_start(error: EngineError) -> Arc<RunOutcome> {
    Arc::new(RunOutcome {
        error: Some(error.to_string()),
        ..RunOutcome::default()
    })
}
