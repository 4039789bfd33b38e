//! Diagnosis: a table of rules over typed [`Evidence`]. Each rule is a pure function in the file
//! of the layer it judges; [`RULES`] lists them once. A finding carries its layer, its severity
//! and the rules whose symptoms it explains (`cause_of`), so the order of the report is data:
//! adding a rule touches its layer's file and this list, nothing else.
//!
//! ```
//! use loadgen::diagnosis::{Evidence, diagnose};
//! use loadgen::engine::RunOutcome;
//! use loadgen::targets::Targets;
//!
//! let outcome = RunOutcome::default(); // a run in which nothing completed
//! let targets = Targets::default();
//! let evidence = Evidence::new(&outcome, &targets, &[], Default::default());
//! let findings = diagnose(&evidence);
//! assert_eq!(findings[0].rule, "load.no_requests");
//! ```

mod containers;
mod evidence;
mod host;
mod jobs;
mod load;
mod loadgen;
mod postgres;
mod redis;
#[cfg(test)]
mod testing;
mod watch;

use std::fmt;

use serde::Serialize;

pub use evidence::{Backend, Evidence};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The numbers cannot be trusted or the service is down.
    Critical,
    /// A target is at risk.
    Warning,
    /// Worth knowing.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Critical => "CRITICAL",
            Self::Warning => "WARNING",
            Self::Info => "INFO",
        })
    }
}

/// The layer of the stack a finding is about, in the order findings are read: the load
/// generator first (a saturated one voids every other figure), then the machine, then the
/// services from the bottom of the stack up to the API's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// loadgen itself.
    LoadGenerator,
    /// The machine the stack runs on.
    Host,
    /// Containers of the stack.
    Containers,
    /// The database.
    Postgres,
    /// The broker and cache.
    Redis,
    /// Background jobs (Celery workers, their queue).
    Jobs,
    /// What the API answered.
    Api,
    /// The scenario and the run as a whole.
    Load,
}

/// A recommendation and the evidence for it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The rule that found it, e.g. `postgres.small_pool`.
    pub rule: &'static str,
    /// The layer at fault.
    pub layer: Layer,
    /// Severity.
    pub severity: Severity,
    /// Short title.
    pub title: String,
    /// The figures it rests on.
    pub evidence: String,
    /// What to do.
    pub action: String,
    /// Rules whose findings this one explains (they are symptoms of it).
    pub cause_of: Vec<&'static str>,
}

/// A rule: a pure function from the evidence to what it finds (usually nothing or one finding;
/// rules about each job kind or container may find several).
pub type Rule = fn(&Evidence<'_>) -> Vec<Finding>;

/// Every rule, once.
pub const RULES: &[Rule] = &[
    loadgen::saturated,
    loadgen::worker_saturated,
    loadgen::workers_lost,
    loadgen::memory_limit,
    host::cpu_saturated,
    containers::cpu_saturated,
    postgres::connections_near_max,
    postgres::lock_waits,
    postgres::idle_in_transaction,
    postgres::pool_exhausted,
    postgres::small_pool,
    redis::rejected_connections,
    redis::memory_near_max,
    jobs::queue_grows,
    jobs::queueing,
    jobs::failed,
    jobs::unfinished,
    load::no_requests,
    load::stuck_users,
    load::refused,
    load::rate_limited,
    load::unauthorized,
    load::server_errors,
    load::costly_startup,
    load::slow_endpoints,
    load::scenario_errors,
    load::plateau,
    watch::sources_down,
    watch::source_notes,
];

/// Runs every rule and orders what they found: the load generator first, then causes before the
/// symptoms they explain, then by severity and layer. When nothing is found, one finding says so
/// (and says whether the targets were met).
pub fn diagnose(evidence: &Evidence<'_>) -> Vec<Finding> {
    let mut found: Vec<Finding> = RULES.iter().flat_map(|rule| rule(evidence)).collect();
    if found.is_empty() {
        found.push(load::nothing_found(evidence));
    }
    rank(found)
}

/// The load generator first, then causes before the symptoms they explain, then severity, then
/// layer (a stable sort: rules of equal rank keep the table's order).
fn rank(found: Vec<Finding>) -> Vec<Finding> {
    let explained: Vec<bool> = found
        .iter()
        .map(|f| {
            found
                .iter()
                .any(|cause| cause.rule != f.rule && cause.cause_of.contains(&f.rule))
        })
        .collect();
    let mut ranked: Vec<(bool, Finding)> = explained.into_iter().zip(found).collect();
    ranked.sort_by_key(|(explained, f)| {
        (
            f.layer != Layer::LoadGenerator,
            *explained,
            f.severity,
            f.layer,
        )
    });
    ranked.into_iter().map(|(_, f)| f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(
        rule: &'static str,
        layer: Layer,
        severity: Severity,
        cause_of: &[&'static str],
    ) -> Finding {
        Finding {
            rule,
            layer,
            severity,
            title: rule.into(),
            evidence: String::new(),
            action: String::new(),
            cause_of: cause_of.to_vec(),
        }
    }

    #[test]
    fn order_is_data_not_titles() {
        let found = vec![
            finding("jobs.queue_grows", Layer::Jobs, Severity::Critical, &[]),
            finding("api.slow", Layer::Api, Severity::Warning, &[]),
            finding(
                "host.cpu",
                Layer::Host,
                Severity::Critical,
                &["jobs.queue_grows"],
            ),
            finding(
                "loadgen.saturated",
                Layer::LoadGenerator,
                Severity::Warning,
                &[],
            ),
        ];
        let ranked = rank(found);
        let order: Vec<&str> = ranked.iter().map(|f| f.rule).collect();
        assert_eq!(
            order,
            [
                "loadgen.saturated",
                "host.cpu",
                "api.slow",
                "jobs.queue_grows"
            ]
        );
    }
}
