//! The flags of `loadgen capacity`: the objective and the plan of the steps. Every other flag
//! of a run (host, scenario, monitor, report files, threads) applies to each step as it does
//! to a headless run.

use std::time::Duration;

use anyhow::bail;
use clap::Args;

use crate::arrival::Rate;
use crate::config::capacity::{CapacityPlan, Slo, StepSize};
use crate::targets::Targets;

/// `loadgen capacity`'s own flags.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Capacity search (loadgen capacity)")]
pub struct CapacityArgs {
    /// Set by `loadgen capacity` itself (the flags after the word are parsed as these).
    #[arg(skip)]
    pub asked: bool,
    /// The objective every step must meet, e.g. "p95<500ms,failures<1%" (also p50, p99, avg;
    /// default: the targets, from --target and their defaults).
    #[arg(long, env = "LOADGEN_SLO", value_name = "OBJECTIVES")]
    pub slo: Option<Slo>,
    /// The first step's arrival rate [default: 10/s].
    #[arg(long, env = "LOADGEN_START_RATE", value_name = "N/s", value_parser = parse_rate)]
    pub start_rate: Option<Rate>,
    /// How the rate climbs: x2 (doubles), 50% (adds half), 10/s (adds 10/s) [default: x2].
    #[arg(long, env = "LOADGEN_STEP", value_name = "x2|50%|N/s")]
    pub step: Option<StepSize>,
    /// Each step's length, its settling seconds included [default: 20s].
    #[arg(long, env = "LOADGEN_STEP_TIME", value_parser = common::duration::parse_positive_arg)]
    pub step_time: Option<Duration>,
    /// The first seconds of each step, left out of its judgement [default: 5s].
    #[arg(long, env = "LOADGEN_SETTLE", value_parser = common::duration::parse_arg)]
    pub settle: Option<Duration>,
    /// The highest rate tried; held there, the answer is "at least" it [default: 2000/s].
    #[arg(long, env = "LOADGEN_CEILING", value_name = "N/s", value_parser = parse_rate)]
    pub ceiling: Option<Rate>,
    /// Stop narrowing once the edge is known to this share of the rate that held, percent
    /// [default: 10].
    #[arg(long, env = "LOADGEN_PRECISION", value_name = "PERCENT", value_parser = parse_pct)]
    pub precision: Option<f64>,
    /// Steps at most to narrow the edge by bisection [default: 4].
    #[arg(long, env = "LOADGEN_NARROW", value_name = "STEPS")]
    pub narrow: Option<u32>,
    /// The pause between steps, for the API to finish what the last one left [default: 2s].
    #[arg(long, env = "LOADGEN_PAUSE", value_parser = common::duration::parse_arg)]
    pub pause: Option<Duration>,
    /// The capacity a CI job requires, e.g. 40/s: exit 1 when the search cannot show it (the
    /// JUnit report's test case).
    #[arg(long, env = "LOADGEN_REQUIRE", value_name = "N/s", value_parser = parse_rate)]
    pub require: Option<Rate>,
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    Rate::parse(text).map_err(|e| e.to_string())
}

fn parse_pct(text: &str) -> Result<f64, String> {
    text.trim()
        .trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p > 0.0)
        .ok_or_else(|| format!("{text:?}: a positive share, e.g. 10 or 10%"))
}

impl CapacityArgs {
    /// Whether any of these flags was given.
    fn any_given(&self) -> bool {
        self.slo.is_some()
            || self.start_rate.is_some()
            || self.step.is_some()
            || self.step_time.is_some()
            || self.settle.is_some()
            || self.ceiling.is_some()
            || self.precision.is_some()
            || self.narrow.is_some()
            || self.pause.is_some()
            || self.require.is_some()
    }

    /// Fails when a capacity flag was given to a plain run.
    pub fn check_unused(&self) -> anyhow::Result<()> {
        if !self.asked && self.any_given() {
            bail!(
                "--slo, --start-rate, --step, --ceiling and the like are flags of a capacity \
                 search: run `loadgen capacity ...`"
            );
        }
        Ok(())
    }

    /// The plan these flags give, its objective defaulting to `targets`, with the users of
    /// each step: `-u`/`--max-users` caps them, `--pre-allocate` are started first.
    pub fn plan(
        &self,
        targets: &Targets,
        (max_users, pre_allocate): (Option<u64>, Option<u64>),
    ) -> anyhow::Result<CapacityPlan> {
        let defaults =
            CapacityPlan::new(self.slo.clone().unwrap_or_else(|| Slo::of_targets(targets)));
        let plan = CapacityPlan {
            start: self.start_rate.unwrap_or(defaults.start),
            step: self.step.unwrap_or(defaults.step),
            step_time: self.step_time.unwrap_or(defaults.step_time),
            settle: self.settle.unwrap_or(defaults.settle),
            ceiling: self.ceiling.unwrap_or(defaults.ceiling),
            precision_pct: self.precision.unwrap_or(defaults.precision_pct),
            max_bisections: self.narrow.unwrap_or(defaults.max_bisections),
            pause: self.pause.unwrap_or(defaults.pause),
            require: self.require,
            max_users,
            pre_allocate,
            ..defaults
        };
        plan.check().map_err(anyhow::Error::msg)?;
        Ok(plan)
    }
}
