//! The capacity search's report: each step judged on its steady seconds against the objective
//! ([`StepReport`]), the answer (a range, "at least", or the generator's limit), and at the knee
//! what changed between the last step that held and the first that broke ([`Knee`]). The
//! writers of its files sit beside it, one per format.

pub mod baseline;
pub mod charts;
pub mod console;
pub mod csv;
pub mod files;
pub mod html;
pub mod junit;
pub mod markdown;
#[cfg(test)]
mod testing;

use serde::Serialize;

use crate::arrival::Rate;
use crate::config::capacity::{CapacityPlan, Metric, Slo};
use crate::diagnosis::{Finding, Layer};
use crate::outcome::RunOutcome;
use crate::report::Analysis;
use crate::stats::Phase;
use crate::targets::ms;

/// Why a step was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Climbing from the start rate.
    Climb,
    /// Narrowing the edge between a rate that held and one that broke.
    Bisect,
}

impl StepKind {
    /// How the reports name it: `climb`, or `narrow` for a bisection's step.
    pub fn label(self) -> &'static str {
        match self {
            Self::Climb => "climb",
            Self::Bisect => "narrow",
        }
    }
}

/// What a step says of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepVerdict {
    /// Every objective met, every iteration sent.
    Held,
    /// An objective missed (or iterations dropped because every user waited on the API).
    Broke,
    /// The generator could not send the rate: the step says nothing of the API.
    Void,
}

/// What the stack looked like through a step's judged seconds: means unless said otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gauges {
    /// loadgen's CPU, percent of one core.
    pub loadgen_cpu_pct: f64,
    /// Requests waiting for their answers.
    pub in_flight: f64,
    /// The CPU of the stack's processes on the host together, percent of one core (never
    /// the whole host's: other processes there are noise, not the stack's load).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_cpu_pct: Option<f64>,
    /// The busiest process of the stack on the host and its CPU, percent of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busiest_process: Option<(String, f64)>,
    /// The busiest container and its CPU, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busiest_container: Option<(String, f64)>,
    /// The API's fullest database pool: who, its size (the most backends it held), and the
    /// share of samples with all of them busy, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_pool_full: Option<(String, i64, f64)>,
    /// PostgreSQL's backends running a query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_active: Option<f64>,
    /// PostgreSQL's backends waiting on a lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_blocked: Option<f64>,
    /// How much the watched Redis lists (the job queue) grew through the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_growth: Option<i64>,
}

/// One step: a rate held for a while, judged on its seconds after settling.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// From 1, in the order run.
    pub number: usize,
    /// Climbing or narrowing.
    pub kind: StepKind,
    /// The arrival rate asked (iterations).
    pub rate: Rate,
    /// The same, per second.
    pub rate_per_sec: f64,
    /// The seconds judged (the step's, settling left out).
    pub judged_secs: f64,
    /// Steady requests answered in them.
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Failed share, percent.
    pub failure_pct: f64,
    /// Requests answered per second: the throughput.
    pub throughput_rps: f64,
    /// Iterations started per second.
    pub iterations_per_sec: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Mean, ms.
    pub avg_ms: f64,
    /// Requests unanswered when the step ended: in the percentiles at their age.
    pub unanswered: u64,
    /// Iterations scheduled in the judged seconds.
    pub scheduled: u64,
    /// Of which dropped (no user free, or the generator late).
    pub dropped: u64,
    /// Answers 429 Too Many Requests.
    pub rate_limited: u64,
    /// The verdict.
    pub verdict: StepVerdict,
    /// Each objective missed, with its figure (`p95 1,900 ms, not < 500 ms`).
    pub missed: Vec<String>,
    /// Why the step is void: what the generator could not do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub void_because: Option<String>,
    /// The stack through the step.
    pub gauges: Gauges,
    /// The step's findings about the stack, causes first.
    pub findings: Vec<Finding>,
    /// Whether a signal cut the step short.
    pub interrupted: bool,
}

impl StepReport {
    /// Judges one step's `outcome` (cut to its judged seconds: its figures reset once it
    /// settled) and its `analysis` against `plan`'s objective.
    pub fn of(
        number: usize,
        kind: StepKind,
        rate: Rate,
        plan: &CapacityPlan,
        outcome: &RunOutcome,
        analysis: &Analysis,
    ) -> Self {
        let judged_secs = outcome.duration.as_secs_f64().max(1e-3);
        let steady = outcome.stats.aggregated(Phase::Steady);
        let arrivals = outcome.stats.arrivals.total;
        let mut step = Self {
            number,
            kind,
            rate,
            rate_per_sec: rate.per_sec(),
            judged_secs,
            requests: steady.count,
            failures: steady.failures,
            failure_pct: steady.failure_ratio() * 100.0,
            throughput_rps: steady.count as f64 / judged_secs,
            iterations_per_sec: arrivals.scheduled.saturating_sub(arrivals.dropped) as f64
                / judged_secs,
            p50_ms: steady.percentile_ms(50.0),
            p95_ms: steady.percentile_ms(95.0),
            p99_ms: steady.percentile_ms(99.0),
            avg_ms: steady.average_ms(),
            unanswered: outcome.stats.in_flight_at_stop + outcome.stats.unsent_at_stop,
            scheduled: arrivals.scheduled,
            dropped: arrivals.dropped,
            rate_limited: steady.statuses.get(&429).copied().unwrap_or(0),
            verdict: StepVerdict::Held,
            missed: Vec::new(),
            void_because: generator_limit(outcome, analysis),
            gauges: Gauges::of(outcome),
            findings: analysis.findings.clone(),
            interrupted: outcome.interrupted,
        };
        step.void_because = step
            .void_because
            .take()
            .or_else(|| step.late_with_users_free(plan.users_for(rate)));
        step.missed = step.missed_objectives(&plan.slo);
        step.verdict = if step.void_because.is_some() {
            StepVerdict::Void
        } else if step.missed.is_empty() {
            StepVerdict::Held
        } else {
            StepVerdict::Broke
        };
        step
    }

    /// The figure an objective bounds.
    pub fn figure(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Failures => self.failure_pct,
            Metric::P50 => self.p50_ms,
            Metric::P95 => self.p95_ms,
            Metric::P99 => self.p99_ms,
            Metric::Avg => self.avg_ms,
        }
    }

    fn missed_objectives(&self, slo: &Slo) -> Vec<String> {
        if self.requests == 0 {
            return vec!["no request answered".into()];
        }
        let mut missed: Vec<String> = slo
            .objectives
            .iter()
            .filter(|o| self.figure(o.metric) >= o.limit)
            .map(|o| match o.metric {
                Metric::Failures => format!(
                    "failures {:.2}%, not < {}%{}",
                    self.failure_pct,
                    o.limit,
                    if self.rate_limited > 0 {
                        format!(" ({} answered 429)", self.rate_limited)
                    } else {
                        String::new()
                    }
                ),
                metric => format!(
                    "{} {}, not < {}",
                    metric.name(),
                    ms(self.figure(metric)),
                    ms(o.limit)
                ),
            })
            .collect();
        // Iterations dropped while the generator kept up: every user was waiting on the API.
        if self.void_because.is_none() && self.dropped * 100 > self.scheduled {
            missed.push(format!(
                "{} of {} iterations dropped: every user was waiting on the API",
                self.dropped, self.scheduled
            ));
        }
        missed
    }

    /// Why the step is void when iterations were dropped (1 in 100 or more) for want of a free
    /// user though the requests in flight averaged under a third of the `users` cap: users run
    /// out when they wait on the API, and then its requests in flight climb to the cap. Here
    /// the generator itself held them, unable to run them on time (its CPU taken, by its own
    /// work or by other programs on the host, before its own gauges show it saturated).
    /// Measured on 2 cores under stress-ng: a starved generator averaged 1 to 65 of 200 users
    /// in flight; a pool of 2 that the API's requests queued for, 20 of 40.
    fn late_with_users_free(&self, users: u64) -> Option<String> {
        (self.dropped * 100 > self.scheduled && self.gauges.in_flight * 3.0 < users as f64).then(
            || {
                format!(
                    "{} of {} iterations dropped for want of a free user, while {:.0} of the \
                     {users} users waited on the API on average: the generator could not run \
                     them on time",
                    self.dropped, self.scheduled, self.gauges.in_flight
                )
            },
        )
    }

    /// Whether the API's rate limit answered this step: 429s in one request of 100 or more.
    pub fn met_rate_limit(&self) -> bool {
        self.rate_limited > 0 && self.rate_limited * 100 >= self.requests.max(1)
    }

    /// The step's first cause about the stack: a finding of a layer below the API's answers
    /// when there is one (the pool, the CPU, the queue), else the first.
    pub fn cause(&self) -> Option<&Finding> {
        let causes = || self.findings.iter().filter(|f| f.explained_by.is_none());
        causes()
            .find(|f| !matches!(f.layer, Layer::Load | Layer::Api))
            .or_else(|| causes().next())
    }
}

/// What the generator could not do in a step, when its own limits (CPU, timers, memory)
/// voided it. Iterations dropped because every user was waiting on a slow API are the API's
/// doing: the users serve two seconds of the rate, so the objective is broken by then.
fn generator_limit(outcome: &RunOutcome, analysis: &Analysis) -> Option<String> {
    let busy = crate::diagnosis::Evidence::new(outcome, &analysis.targets, &[], Default::default())
        .generator_busy_secs()
        >= 3;
    analysis
        .validity
        .iter()
        .filter(|f| f.layer == Layer::LoadGenerator)
        .find(|f| f.rule != "loadgen.arrival_rate_missed" || busy)
        .map(|f| f.title.clone())
}

impl Gauges {
    /// The means of `outcome`'s seconds.
    fn of(outcome: &RunOutcome) -> Self {
        let judged: Vec<_> = outcome.history.iter().collect();
        let mean_of = |values: &[f64]| -> Option<f64> {
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        let backend = crate::diagnosis::Backend::new(&outcome.backend);
        let host = backend.host();
        let postgres = backend.postgres();
        let redis = backend.redis();
        let queued = |r: &monitor::sample::RedisValues| r.lists.values().sum::<i64>();
        Self {
            loadgen_cpu_pct: mean_of(&judged.iter().map(|h| h.loadgen_cpu_pct).collect::<Vec<_>>())
                .unwrap_or(0.0),
            in_flight: mean_of(
                &judged
                    .iter()
                    .map(|h| h.in_flight.requests as f64)
                    .collect::<Vec<_>>(),
            )
            .unwrap_or(0.0),
            stack_cpu_pct: mean_of(
                &host
                    .iter()
                    .filter(|(_, h)| !h.processes.is_empty())
                    .map(|(_, h)| {
                        h.processes
                            .iter()
                            .filter(|p| p.role.in_stack())
                            .map(|p| p.cpu_pct)
                            .sum::<f64>()
                    })
                    .collect::<Vec<_>>(),
            ),
            db_pool_full: crate::diagnosis::fullest_pool(&postgres),
            busiest_process: busiest(host.iter().flat_map(|(_, h)| {
                h.processes
                    .iter()
                    .filter(|p| p.role.in_stack())
                    .map(|p| (p.name.clone(), p.cpu_pct))
            })),
            busiest_container: busiest(backend.containers().into_iter().flat_map(
                |(name, series)| {
                    series
                        .into_iter()
                        .map(move |(_, c)| (name.to_owned(), c.cpu_pct))
                },
            )),
            db_active: mean_of(
                &postgres
                    .iter()
                    .map(|(_, p)| p.active as f64)
                    .collect::<Vec<_>>(),
            ),
            db_blocked: mean_of(
                &postgres
                    .iter()
                    .map(|(_, p)| p.blocked as f64)
                    .collect::<Vec<_>>(),
            ),
            queue_growth: match (redis.first(), redis.last()) {
                (Some((_, first)), Some((_, last))) if !last.lists.is_empty() => {
                    Some(queued(last) - queued(first))
                }
                _ => None,
            },
        }
    }

    /// The figures two steps both have, as (what, this step's, `later`'s, unit).
    fn pairs(&self, later: &Gauges) -> Vec<(String, f64, f64, &'static str)> {
        let mut pairs = vec![
            (
                "loadgen's CPU".to_owned(),
                self.loadgen_cpu_pct,
                later.loadgen_cpu_pct,
                "%",
            ),
            (
                "requests in flight".to_owned(),
                self.in_flight,
                later.in_flight,
                "",
            ),
        ];
        let mut both = |what: String, a: Option<f64>, b: Option<f64>, unit: &'static str| {
            if let (Some(a), Some(b)) = (a, b) {
                pairs.push((what, a, b, unit));
            }
        };
        both(
            "the stack's CPU".into(),
            self.stack_cpu_pct,
            later.stack_cpu_pct,
            "%",
        );
        if let (Some((pool, size, a)), Some((later_pool, _, b))) =
            (&self.db_pool_full, &later.db_pool_full)
            && pool == later_pool
        {
            both(
                format!(
                    "the pool of {pool} ({size} connection{}) all busy, in samples",
                    if *size == 1 { "" } else { "s" }
                ),
                Some(*a),
                Some(*b),
                "%",
            );
        }
        both(
            "database backends running a query".into(),
            self.db_active,
            later.db_active,
            "",
        );
        both(
            "database backends waiting on a lock".into(),
            self.db_blocked,
            later.db_blocked,
            "",
        );
        both(
            "the job queue's growth".into(),
            self.queue_growth.map(|q| q as f64),
            later.queue_growth.map(|q| q as f64),
            " jobs",
        );
        if let (Some((name, a)), Some((later_name, b))) =
            (&self.busiest_process, &later.busiest_process)
            && name == later_name
        {
            both(format!("{name}'s CPU"), Some(*a), Some(*b), "%");
        }
        if let (Some((name, a)), Some((later_name, b))) =
            (&self.busiest_container, &later.busiest_container)
            && name == later_name
        {
            both(format!("container {name}'s CPU"), Some(*a), Some(*b), "%");
        }
        pairs
    }
}

/// The name with the highest mean among `(name, value)` readings.
fn busiest(readings: impl Iterator<Item = (String, f64)>) -> Option<(String, f64)> {
    let mut sums: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    for (name, value) in readings {
        let entry = sums.entry(name).or_default();
        entry.0 += value;
        entry.1 += 1;
    }
    sums.into_iter()
        .map(|(name, (sum, n))| (name, sum / n as f64))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// What the search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    /// The edge lies between the last rate that held and the first that broke.
    Between {
        /// The highest rate that met the objective (`None`: not even the lowest tried).
        held: Option<Rate>,
        /// The lowest rate that broke it.
        broke: Rate,
    },
    /// The ceiling held: the API takes at least it.
    AtLeast {
        /// The ceiling.
        held: Rate,
    },
    /// The generator could not send a rate: the API takes at least the last that held.
    GeneratorLimit {
        /// The highest rate that held before.
        held: Option<Rate>,
        /// The rate the generator could not send.
        void: Rate,
    },
    /// Stopped (a signal) before an edge was found.
    Unfinished {
        /// The highest rate that held so far.
        held: Option<Rate>,
    },
}

impl Answer {
    /// The highest rate known to meet the objective.
    pub fn held(&self) -> Option<Rate> {
        match self {
            Self::Between { held, .. }
            | Self::GeneratorLimit { held, .. }
            | Self::Unfinished { held } => *held,
            Self::AtLeast { held } => Some(*held),
        }
    }
}

/// One figure before and beyond the knee.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// What.
    pub what: String,
    /// At the last rate that held.
    pub held: f64,
    /// At the first rate that broke.
    pub broke: f64,
    /// Its unit (`ms`, `%`, or nothing).
    pub unit: String,
}

impl Change {
    /// `p95 120 → 1,900 ms`.
    pub fn describe(&self) -> String {
        let figure = |v: f64| {
            if self.unit == " ms" {
                ms(v)
            } else if v.abs() >= 10.0 || v == v.trunc() {
                format!("{v:.0}{}", self.unit)
            } else {
                format!("{v:.1}{}", self.unit)
            }
        };
        format!(
            "{} {} → {}",
            self.what,
            figure(self.held),
            figure(self.broke)
        )
    }
}

/// The knee: the last step that held beside the first that broke.
#[derive(Debug, Clone, Serialize)]
pub struct Knee {
    /// The step that held (its number).
    pub held_step: Option<usize>,
    /// The step that broke.
    pub broke_step: usize,
    /// What broke first: the broken step's first cause about the stack.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Finding>,
    /// The figures that grew from one to the other, most first.
    pub changes: Vec<Change>,
}

impl Knee {
    /// The knee between `held` (when a step held) and `broke`, among all the `steps` run.
    fn of(held: Option<&StepReport>, broke: &StepReport, steps: &[StepReport]) -> Self {
        let mut changes = Vec::new();
        if let Some(held) = held {
            for (what, before, after, unit) in [
                ("p95".to_owned(), held.p95_ms, broke.p95_ms, " ms"),
                (
                    "failures".to_owned(),
                    held.failure_pct,
                    broke.failure_pct,
                    "%",
                ),
                (
                    "answers 429".to_owned(),
                    held.rate_limited as f64 / held.judged_secs,
                    broke.rate_limited as f64 / broke.judged_secs,
                    "/s",
                ),
            ]
            .into_iter()
            .chain(held.gauges.pairs(&broke.gauges))
            {
                if grew(before, after, &what) {
                    changes.push(Change {
                        what,
                        held: before,
                        broke: after,
                        unit: unit.to_owned(),
                    });
                }
            }
            changes.sort_by(|a, b| growth(b.held, b.broke).total_cmp(&growth(a.held, a.broke)));
        }
        Self {
            held_step: held.map(|s| s.number),
            broke_step: broke.number,
            cause: Self::cause_at(broke, steps),
            changes,
        }
    }

    /// What broke first at `broke`: its own first cause; but when that is no cause below the
    /// API's answers and a step run before it (or it) met the API's rate limit, the limit. A
    /// limit counted over a window (RATE_LIMIT_PER_MINUTE) refuses every step run after its
    /// budget is spent, whatever that step's rate, and such a step's own findings name only
    /// the symptoms (no request answered, steps skipped for the token a refused login would
    /// have set).
    ///
    /// Otherwise, when its own figures named no layer below the API (a step broken by
    /// iterations dropped while every user waited, say `load.nothing_found`), the cause one of
    /// the steps just below or just above it by rate found in the stack, said to be that
    /// step's: they watched the same stack a little below and above it.
    fn cause_at(broke: &StepReport, steps: &[StepReport]) -> Option<Finding> {
        let below_api = |f: &Finding| !matches!(f.layer, Layer::Load | Layer::Api);
        let own = broke.cause();
        if own.is_some_and(|f| below_api(f) || f.rule == RATE_LIMITED) {
            return own.cloned();
        }
        let limit = steps
            .iter()
            .filter(|s| s.number <= broke.number && s.met_rate_limit())
            .find_map(|s| s.findings.iter().find(|f| f.rule == RATE_LIMITED));
        if limit.is_some() {
            return limit.cloned();
        }
        // The steps just below and just above it by rate: their first finding about the
        // stack (the generator's own trouble is not the stack's).
        let below = steps
            .iter()
            .filter(|s| s.number != broke.number && s.rate_per_sec <= broke.rate_per_sec)
            .max_by(|a, b| a.rate_per_sec.total_cmp(&b.rate_per_sec));
        let above = steps
            .iter()
            .filter(|s| s.number != broke.number && s.rate_per_sec > broke.rate_per_sec)
            .min_by(|a, b| a.rate_per_sec.total_cmp(&b.rate_per_sec));
        let of_the_stack = |f: &&Finding| {
            below_api(f) && f.layer != Layer::LoadGenerator && f.explained_by.is_none()
        };
        let neighbour = [below, above]
            .into_iter()
            .flatten()
            .filter_map(|s| s.findings.iter().find(of_the_stack).map(|f| (s, f)))
            .min_by(|(a, _), (b, _)| {
                let distance = |s: &StepReport| (s.rate_per_sec - broke.rate_per_sec).abs();
                distance(a).total_cmp(&distance(b))
            });
        match neighbour {
            Some((step, finding)) => {
                let mut finding = finding.clone();
                finding.evidence = format!(
                    "{} (seen at step {}, {:.1}/s: step {}'s own figures named no layer)",
                    finding.evidence, step.number, step.rate_per_sec, broke.number
                );
                Some(finding)
            }
            None => own.cloned(),
        }
    }
}

/// The rule that finds answers 429.
const RATE_LIMITED: &str = "load.rate_limited";

/// Whether a figure grew enough to be worth naming: by a quarter, and by more than a reading's
/// noise (5 points of a CPU share).
fn grew(before: f64, after: f64, what: &str) -> bool {
    // Shares move in points; counts such as a pool of one's busy backends (0.3 to 0.8) in
    // tenths.
    let visible = if what.ends_with("CPU") || what.ends_with("in samples") {
        5.0
    } else {
        0.2
    };
    after > before * 1.25 && after - before >= visible
}

/// How much a figure grew, as a ratio (from zero: as much as it now is).
fn growth(before: f64, after: f64) -> f64 {
    after / before.max(0.5)
}

/// The whole search.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// `capacity`: which kind of report this is, so that `--baseline` tells it from a run's.
    pub report_kind: &'static str,
    /// The version of its layout, as a `--baseline` reads it back.
    pub report_version: u32,
    /// The scenario's identity, as runs' reports give it.
    pub scenario: crate::scenario::ScenarioIdentity,
    /// The host loaded.
    pub host: String,
    /// Unix time of the first step's start, s.
    pub started_at: u64,
    /// The plan followed.
    pub plan: CapacityPlan,
    /// Every step, in the order run.
    pub steps: Vec<StepReport>,
    /// The answer.
    pub answer: Answer,
    /// What changed at the edge, when a step broke.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knee: Option<Knee>,
    /// The lowest rate that answered 429s, when the API's rate limit was met on the way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_from: Option<Rate>,
    /// Whether a signal stopped the search.
    pub interrupted: bool,
}

impl CapacityReport {
    /// The report of `steps` run under `plan`, with the search's `answer`.
    pub fn new(
        identity: crate::scenario::ScenarioIdentity,
        host: &str,
        started_at: std::time::SystemTime,
        plan: CapacityPlan,
        steps: Vec<StepReport>,
        answer: Answer,
    ) -> Self {
        let highest_held = |below: Rate| {
            steps
                .iter()
                .filter(|s| s.verdict == StepVerdict::Held && s.rate < below)
                .max_by_key(|s| s.rate)
        };
        let knee = match &answer {
            Answer::Between { broke, .. } => steps
                .iter()
                .rfind(|s| s.verdict == StepVerdict::Broke && s.rate == *broke)
                .map(|b| Knee::of(highest_held(b.rate), b, &steps)),
            _ => None,
        };
        // A step that the rate limit answered is the limit at work.
        let rate_limit_from = steps
            .iter()
            .filter(|s| s.met_rate_limit())
            .map(|s| s.rate)
            .min();
        Self {
            report_kind: crate::config::capacity::CAPACITY_REPORT_KIND,
            report_version: crate::config::capacity::CAPACITY_REPORT_VERSION,
            scenario: identity,
            host: common::redact::reference(host),
            started_at: started_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            interrupted: steps.iter().any(|s| s.interrupted),
            plan,
            steps,
            answer,
            knee,
            rate_limit_from,
        }
    }

    /// Whether `--require` (when given) is met: the capacity found is at least the rate
    /// required.
    pub fn requirement_met(&self) -> Option<bool> {
        let required = self.plan.require?;
        Some(self.answer.held().is_some_and(|held| held >= required))
    }

    /// The knee's rates as the outputs head it: (the last that held, or "no rate"; the first
    /// that broke).
    pub fn knee_rates(&self) -> Option<(String, String)> {
        let knee = self.knee.as_ref()?;
        let rate_of = |n: usize| {
            self.steps
                .iter()
                .find(|s| s.number == n)
                .map(|s| s.rate.per_sec_text())
        };
        Some((
            knee.held_step
                .and_then(rate_of)
                .unwrap_or_else(|| "no rate".to_owned()),
            rate_of(knee.broke_step).unwrap_or_default(),
        ))
    }

    /// The answer in a sentence or two, as every output ends with it.
    pub fn headline(&self) -> String {
        let slo = &self.plan.slo;
        let rps = |rate: Rate| self.throughput_at(rate);
        let mut text = match &self.answer {
            Answer::Between {
                held: Some(held),
                broke,
            } => format!(
                "Capacity about {} ({slo}): {} held{}, {} did not.",
                held.per_sec_text(),
                held.per_sec_text(),
                rps(*held),
                broke.per_sec_text()
            ),
            Answer::Between { held: None, broke } => {
                let broke = broke.per_sec_text();
                format!(
                    "Capacity below {broke} ({slo}): even the lowest rate tried, {broke}, missed the objective."
                )
            }
            Answer::AtLeast { held } => format!(
                "Capacity at least {} ({slo}): the ceiling held{}; raise --ceiling to find the edge.",
                held.per_sec_text(),
                rps(*held)
            ),
            Answer::GeneratorLimit { held, void } => format!(
                "Capacity at least {} ({slo}): the generator could not send {} from this \
                 machine, so the API's edge lies beyond what it can measure. Give loadgen more \
                 cores (--threads) or workers.",
                held.map_or_else(|| "0/s".to_owned(), Rate::per_sec_text),
                void.per_sec_text()
            ),
            Answer::Unfinished { held } => format!(
                "Stopped before the edge was found; the highest rate that held: {}.",
                held.map_or_else(|| "none".to_owned(), Rate::per_sec_text)
            ),
        };
        if let Some(knee) = &self.knee
            && let Some(broke) = self.steps.iter().find(|s| s.number == knee.broke_step)
        {
            text.push_str(&format!(" Beyond it, at {}: ", broke.rate.per_sec_text()));
            match &knee.cause {
                Some(cause) => text.push_str(&format!("{} ({})", cause.title, cause.evidence)),
                None => text.push_str(&broke.missed.join("; ")),
            }
            let changes: Vec<String> = knee.changes.iter().map(Change::describe).collect();
            if !changes.is_empty() {
                text.push_str(&format!(
                    ". Against {}: {}",
                    knee.held_step
                        .and_then(|n| self.steps.iter().find(|s| s.number == n))
                        .map_or_else(|| "the rates below".to_owned(), |s| s.rate.per_sec_text()),
                    changes.join(", ")
                ));
            }
            text.push('.');
        }
        if let Some(rate) = self.rate_limit_from.map(Rate::per_sec_text) {
            text.push_str(&format!(
                " The API's rate limit answered 429 from {rate}: that is the limit, not the \
                 stack's capacity; lift it for the search (e.g. RATE_LIMIT_PER_MINUTE=0) to \
                 measure the stack."
            ));
        }
        text
    }

    /// ` (about N req/s)` when the step at `rate` answered a different number of requests
    /// per second than the iterations asked (several requests an iteration).
    fn throughput_at(&self, rate: Rate) -> String {
        self.steps
            .iter()
            .rfind(|s| s.rate == rate)
            .filter(|s| (s.throughput_rps - s.rate_per_sec).abs() > 0.1 * s.rate_per_sec)
            .map_or_else(String::new, |s| {
                format!(" (about {:.0} req/s)", s.throughput_rps)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::Severity;

    /// A step at `per_sec` that answered `requests`, with `findings` (rule, layer).
    fn step(number: usize, per_sec: u64, findings: &[(&'static str, Layer)]) -> StepReport {
        StepReport {
            number,
            kind: StepKind::Climb,
            rate: Rate::per_second(per_sec),
            rate_per_sec: per_sec as f64,
            judged_secs: 6.0,
            requests: 6 * per_sec,
            failures: 0,
            failure_pct: 0.0,
            throughput_rps: per_sec as f64,
            iterations_per_sec: per_sec as f64,
            p50_ms: 5.0,
            p95_ms: 10.0,
            p99_ms: 20.0,
            avg_ms: 6.0,
            unanswered: 0,
            scheduled: 6 * per_sec,
            dropped: 0,
            rate_limited: 0,
            verdict: StepVerdict::Broke,
            missed: Vec::new(),
            void_because: None,
            gauges: Gauges::default(),
            findings: findings
                .iter()
                .map(|(rule, layer)| {
                    Finding::new(
                        rule,
                        *layer,
                        Severity::Critical,
                        *rule,
                        "evidence",
                        "action",
                    )
                })
                .collect(),
            interrupted: false,
        }
    }

    #[test]
    fn a_step_refused_after_the_rate_limits_budget_is_spent_breaks_for_the_limit() {
        let mut limited = step(5, 50, &[(RATE_LIMITED, Layer::Api)]);
        limited.rate_limited = limited.requests / 10;
        let refused = step(
            6,
            45,
            &[
                ("load.no_requests", Layer::Load),
                ("load.scenario_errors", Layer::Load),
            ],
        );
        let steps = [step(4, 40, &[]), limited, refused];
        let cause = Knee::cause_at(&steps[2], &steps).unwrap();
        assert_eq!(cause.rule, RATE_LIMITED);
        // A cause of its own below the API's answers is the step's, whatever came before.
        let pool = step(7, 42, &[("postgres.pool_exhausted", Layer::Postgres)]);
        assert_eq!(
            Knee::cause_at(&pool, &steps).unwrap().rule,
            "postgres.pool_exhausted"
        );
        // Without a limit met before it, a step's own first finding stands.
        let alone = [steps[0].clone(), steps[2].clone()];
        assert_eq!(
            Knee::cause_at(&alone[1], &alone).unwrap().rule,
            "load.no_requests"
        );
    }

    #[test]
    fn a_step_whose_figures_name_no_layer_takes_the_nearest_steps_cause() {
        let held = step(3, 30, &[("host.cpu_saturated", Layer::Host)]);
        let far = step(1, 10, &[("postgres.pool_exhausted", Layer::Postgres)]);
        let broke = step(4, 34, &[("load.nothing_found", Layer::Load)]);
        let steps = [far, held, broke.clone()];
        let cause = Knee::cause_at(&steps[2], &steps).unwrap();
        assert_eq!(cause.rule, "host.cpu_saturated", "{cause:?}");
        assert!(
            cause
                .evidence
                .ends_with("(seen at step 3, 30.0/s: step 4's own figures named no layer)"),
            "{}",
            cause.evidence
        );
        // A step two steps away is not a neighbour: the knee keeps its own finding.
        let quiet = step(2, 20, &[]);
        let distant = [steps[0].clone(), quiet, broke.clone()];
        assert_eq!(
            Knee::cause_at(&distant[2], &distant).unwrap().rule,
            "load.nothing_found"
        );
        // A cause of its own below the API stays its own.
        let own = step(4, 34, &[("redis.queue_backlog", Layer::Redis)]);
        let steps = [steps[0].clone(), steps[1].clone(), own];
        assert_eq!(
            Knee::cause_at(&steps[2], &steps).unwrap().rule,
            "redis.queue_backlog"
        );
    }

    #[test]
    fn drops_with_most_users_free_are_the_generators_and_with_all_busy_the_apis() {
        let mut starved = step(1, 1000, &[]);
        starved.dropped = starved.scheduled / 2;
        starved.gauges.in_flight = 22.0;
        let why = starved.late_with_users_free(200).unwrap();
        assert!(why.contains("the generator could not run them"), "{why}");
        let mut queued = starved.clone();
        queued.gauges.in_flight = 20.0;
        assert_eq!(
            queued.late_with_users_free(40),
            None,
            "users waited on the API"
        );
        starved.dropped = starved.scheduled / 200;
        assert_eq!(starved.late_with_users_free(200), None, "too few drops");
    }
}
