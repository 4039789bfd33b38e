//! Diagnosis: two tables of rules over typed [`Evidence`]. Each rule is a pure function in the
//! file of the layer it judges. [`VALIDITY_RULES`] say whether the run's figures can be trusted
//! (the generator, processes outside the stack, the watch itself): they are read first and are
//! never ranked as the API's causes. [`RULES`] judge the stack. A finding carries its layer, its
//! severity, the share of the trouble it explains (per request or per second, when it claims a
//! cause) and the rules whose symptoms it explains (`cause_of`), so the order of the report is
//! data: adding a rule touches its layer's file and a table, nothing else.
//!
//! ```
//! use loadgen::diagnosis::{Evidence, diagnose};
//! use loadgen::engine::RunOutcome;
//! use loadgen::targets::Targets;
//!
//! let outcome = RunOutcome::default(); // a run in which nothing completed
//! let targets = Targets::default();
//! let evidence = Evidence::new(&outcome, &targets, &[], Default::default());
//! let diagnosis = diagnose(&evidence);
//! assert_eq!(diagnosis.findings[0].rule, "load.no_requests");
//! assert_eq!(diagnosis.validity[0].rule, "watch.nothing_watched");
//! ```

mod containers;
#[cfg(test)]
mod coverage;
mod evidence;
mod host;
mod jobs;
mod load;
mod loadgen;
mod postgres;
mod profiles;
mod redis;
mod statements;
mod tasks;
#[cfg(test)]
pub(crate) mod testing;
mod watch;

use std::fmt;

use serde::Serialize;

pub use evidence::{Backend, Evidence, OverCapacity};
pub use postgres::fullest_pool;

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

/// What share of the run's trouble a cause accounts for, measured per request or per second:
/// the key causes are ranked by, and the figure their evidence states.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Explained {
    /// The share, percent (0 to 100).
    pub pct: f64,
    /// Of what.
    pub of: Trouble,
}

/// What a share is taken of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trouble {
    /// The failed requests.
    Failures,
    /// The time the steady requests spent above their unhurried latency.
    Slowdown,
    /// The followed jobs that did not complete.
    Jobs,
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let of = match self.of {
            Trouble::Failures => "of the failed requests",
            Trouble::Slowdown => "of the steady requests' slowdown",
            Trouble::Jobs => "of the followed jobs that did not complete",
        };
        write!(f, "explains about {:.0}% {of}", self.pct)
    }
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
    /// The share of the trouble it accounts for, when it claims a cause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explains: Option<Explained>,
    /// The cause this finding is a symptom of (it is listed under it), set by the ranking.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explained_by: Option<&'static str>,
}

impl Finding {
    /// A finding with no share claimed and no cause above it.
    pub fn new(
        rule: &'static str,
        layer: Layer,
        severity: Severity,
        title: impl Into<String>,
        evidence: impl Into<String>,
        action: impl Into<String>,
    ) -> Self {
        Self {
            rule,
            layer,
            severity,
            title: title.into(),
            evidence: evidence.into(),
            action: action.into(),
            cause_of: Vec::new(),
            explains: None,
            explained_by: None,
        }
    }

    /// The symptoms it explains.
    pub fn causing(mut self, symptoms: &[&'static str]) -> Self {
        self.cause_of = symptoms.to_vec();
        self
    }

    /// The share it accounts for, stated at the end of its evidence too.
    pub fn explaining(mut self, explained: Option<Explained>) -> Self {
        if let Some(share) = explained {
            self.evidence.push_str(&format!("; {share}"));
        }
        self.explains = explained;
        self
    }
}

/// A rule: a pure function from the evidence to what it finds (usually nothing or one finding;
/// rules about each job kind or container may find several).
pub type Rule = fn(&Evidence<'_>) -> Vec<Finding>;

/// What decides whether the run's figures can be trusted: the generator, the host's other
/// processes, the watch itself. Never a cause of the API's trouble.
pub const VALIDITY_RULES: &[Rule] = &[
    loadgen::saturated,
    loadgen::worker_saturated,
    loadgen::workers_lost,
    loadgen::memory_limit,
    loadgen::arrival_rate_missed,
    host::outside_cpu,
    watch::nothing_watched,
    watch::sources_down,
    watch::source_notes,
    postgres::no_api_backends,
];

/// What the stack under test did: causes and their symptoms.
pub const RULES: &[Rule] = &[
    host::cpu_saturated,
    host::one_core_saturated,
    containers::cpu_saturated,
    postgres::connections_near_max,
    postgres::lock_waits,
    postgres::idle_in_transaction,
    postgres::pool_exhausted,
    postgres::small_pool,
    statements::seq_scan,
    statements::n_plus_one,
    redis::rejected_connections,
    redis::memory_near_max,
    jobs::queue_grows,
    jobs::queueing,
    jobs::failed,
    jobs::unfinished,
    jobs::unknown,
    jobs::task_failures,
    profiles::loop_blocked,
    profiles::worker_hot,
    load::no_requests,
    load::over_capacity,
    load::stuck_users,
    load::refused,
    load::connections_closed,
    load::rate_limited,
    load::unauthorized,
    load::server_errors,
    load::costly_startup,
    load::slow_endpoints,
    load::scenario_errors,
    load::plateau,
];

/// The judgement of a run: whether its figures can be trusted, then what the stack did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diagnosis {
    /// "Is this run valid?": what could have disturbed the figures, and by how much.
    pub validity: Vec<Finding>,
    /// Causes, each followed by the symptoms it explains, in the order to read them.
    pub findings: Vec<Finding>,
}

/// Runs every rule. The validity items come apart; the findings are ranked (see [`rank`]).
/// When nothing is found about the stack, one finding says so (and whether the targets were
/// met).
pub fn diagnose(evidence: &Evidence<'_>) -> Diagnosis {
    let validity = rank(VALIDITY_RULES.iter().flat_map(|r| r(evidence)).collect());
    let mut found: Vec<Finding> = RULES.iter().flat_map(|rule| rule(evidence)).collect();
    if found.is_empty() {
        found.push(load::nothing_found(evidence));
    }
    Diagnosis {
        validity,
        findings: rank(found),
    }
}

/// Causes first, each followed by the symptoms it explains (a symptom that several causes
/// explain goes under the first of them). Causes, and symptoms under one cause, are ordered by
/// severity (CRITICAL before WARNING, always), then by the share they explain, then by layer,
/// then by the rules' table order: the same findings give the same order, whatever the order
/// the rules found them in.
fn rank(found: Vec<Finding>) -> Vec<Finding> {
    let mut pending: Vec<(usize, Finding)> = found.into_iter().enumerate().collect();
    pending.sort_by(|(i, a), (j, b)| {
        a.severity
            .cmp(&b.severity)
            .then(share(b).total_cmp(&share(a)))
            .then(a.layer.cmp(&b.layer))
            .then(i.cmp(j))
    });
    let mut pending: Vec<Finding> = pending.into_iter().map(|(_, f)| f).collect();
    // Two findings that name each other as symptoms (a queue that grows because jobs never
    // finish, and jobs that never finish behind the queue) explain neither: the first of them
    // in rank order is the cause, not some unrelated finding further down.
    let explained = |f: &Finding, all: &[Finding]| {
        all.iter().any(|cause| {
            cause.rule != f.rule
                && cause.cause_of.contains(&f.rule)
                && !f.cause_of.contains(&cause.rule)
        })
    };
    let mut ranked = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        // The first cause that nothing left explains; in a longer cycle of causes, the first
        // of all.
        let root = pending
            .iter()
            .position(|f| !explained(f, &pending))
            .unwrap_or(0);
        let cause = pending.remove(root);
        place_with_symptoms(cause, &mut pending, &mut ranked);
    }
    ranked
}

/// Appends `cause`, then the findings left in `pending` that it explains directly (in their
/// rank order), each followed by its own symptoms: a symptom of the cause stays one level under
/// it, even when another of its symptoms explains it too.
fn place_with_symptoms(cause: Finding, pending: &mut Vec<Finding>, ranked: &mut Vec<Finding>) {
    let rule = cause.rule;
    let mut symptoms = Vec::new();
    let mut i = 0;
    while i < pending.len() {
        if pending[i].rule != rule && cause.cause_of.contains(&pending[i].rule) {
            let mut symptom = pending.remove(i);
            symptom.explained_by = Some(rule);
            symptoms.push(symptom);
        } else {
            i += 1;
        }
    }
    ranked.push(cause);
    for symptom in symptoms {
        place_with_symptoms(symptom, pending, ranked);
    }
}

/// Each ranked finding's number as the reports show it: causes `1`, `2`, ...; the symptoms of
/// cause `1` are `1.1`, `1.2`, theirs `1.1.1`.
pub fn numbers(ranked: &[Finding]) -> Vec<String> {
    let mut numbers: Vec<String> = Vec::with_capacity(ranked.len());
    let mut children: Vec<usize> = vec![0; ranked.len()];
    let mut causes = 0;
    for finding in ranked {
        let parent = finding
            .explained_by
            .and_then(|rule| ranked.iter().position(|f| f.rule == rule))
            .filter(|at| *at < numbers.len());
        let number = match parent {
            Some(at) => {
                children[at] += 1;
                format!("{}.{}", numbers[at], children[at])
            }
            None => {
                causes += 1;
                causes.to_string()
            }
        };
        numbers.push(number);
    }
    numbers
}

fn share(f: &Finding) -> f64 {
    f.explains.map_or(0.0, |e| e.pct)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(
        rule: &'static str,
        layer: Layer,
        severity: Severity,
        cause_of: &[&'static str],
        pct: Option<f64>,
    ) -> Finding {
        Finding::new(rule, layer, severity, rule, "", "")
            .causing(cause_of)
            .explaining(pct.map(|pct| Explained {
                pct,
                of: Trouble::Failures,
            }))
    }

    fn order(found: Vec<Finding>) -> Vec<(&'static str, Option<&'static str>)> {
        rank(found)
            .iter()
            .map(|f| (f.rule, f.explained_by))
            .collect()
    }

    #[test]
    fn causes_by_severity_then_share_with_their_symptoms_under_them() {
        let found = vec![
            finding(
                "jobs.queue_grows",
                Layer::Jobs,
                Severity::Critical,
                &[],
                None,
            ),
            finding("api.slow", Layer::Api, Severity::Warning, &[], None),
            finding(
                "host.cpu",
                Layer::Host,
                Severity::Critical,
                &["jobs.queue_grows"],
                Some(20.0),
            ),
            finding(
                "load.limit",
                Layer::Api,
                Severity::Critical,
                &[],
                Some(70.0),
            ),
            finding("load.warn", Layer::Api, Severity::Warning, &[], Some(90.0)),
        ];
        assert_eq!(
            order(found),
            [
                ("load.limit", None),
                ("host.cpu", None),
                ("jobs.queue_grows", Some("host.cpu")),
                ("load.warn", None),
                ("api.slow", None),
            ],
            "CRITICAL before WARNING always, then the share; the symptom under its cause"
        );
    }

    #[test]
    fn two_findings_that_explain_each_other_rank_by_severity_not_below_a_minor_one() {
        let found = vec![
            finding("jobs.unknown", Layer::Jobs, Severity::Info, &[], None),
            finding(
                "jobs.unfinished",
                Layer::Jobs,
                Severity::Critical,
                &["jobs.queue_grows"],
                Some(90.0),
            ),
            finding(
                "jobs.queue_grows",
                Layer::Jobs,
                Severity::Critical,
                &["jobs.unfinished"],
                None,
            ),
        ];
        assert_eq!(
            order(found),
            [
                ("jobs.unfinished", None),
                ("jobs.queue_grows", Some("jobs.unfinished")),
                ("jobs.unknown", None),
            ]
        );
    }

    #[test]
    fn the_same_findings_in_any_order_rank_the_same() {
        let found = vec![
            finding("a", Layer::Api, Severity::Warning, &["c"], Some(10.0)),
            finding("b", Layer::Jobs, Severity::Critical, &["a"], Some(10.0)),
            finding("c", Layer::Api, Severity::Warning, &[], None),
            finding("d", Layer::Host, Severity::Critical, &["b"], Some(5.0)),
            // A cycle: e and f explain each other.
            finding("e", Layer::Api, Severity::Info, &["f"], None),
            finding("f", Layer::Api, Severity::Info, &["e"], None),
        ];
        let forward = order(found.clone());
        let mut reversed = found.clone();
        reversed.reverse();
        // Equal keys fall back on the table's order, which a reversed input changes: compare
        // the shape (each finding's place under its cause), not ties.
        let backward = order(reversed);
        assert_eq!(forward.len(), 6);
        assert_eq!(&forward[..4], &backward[..4], "{forward:?} / {backward:?}");
        assert_eq!(
            &forward[..4],
            [
                ("d", None),
                ("b", Some("d")),
                ("a", Some("b")),
                ("c", Some("a"))
            ]
        );
        assert!(
            forward[4..].iter().any(|(_, by)| by.is_some()),
            "{forward:?}"
        );
    }

    /// A run slowed from its 4th second on while the API's pool sat full, rate limited now and
    /// then, on a host shared with a build.
    fn troubled_run() -> (crate::engine::RunOutcome, Vec<monitor::sample::Tick>) {
        use monitor::sample::{PostgresClients, ProcessGroup, ProcessRole, Values};

        use testing::{fail, host, outcome, postgres, slow_second, ticks};
        let mut run = outcome(&[10; 12], &[20; 12], 50, &[]);
        for at in 3..12 {
            slow_second(&mut run, at, 20, 900);
        }
        fail(
            &mut run,
            crate::stats::FailureKind::Status(429),
            "HTTP 429",
            6,
        );
        let backend = ticks(12, |i| {
            let pool = PostgresClients {
                database: "ffmpeg_api".into(),
                address: "172.18.0.3".into(),
                connections: if i >= 3 { 2 } else { 1 },
                active: if i >= 3 { 2 } else { 0 },
                ..Default::default()
            };
            let (name, mut values) = host(if i % 2 == 0 { 95.0 } else { 60.0 });
            if let Values::Host(h) = &mut values {
                h.cores = 2;
                h.processes = vec![
                    ProcessGroup {
                        name: "cargo".into(),
                        pid: 77,
                        cpu_pct: 120.0,
                        ..Default::default()
                    },
                    ProcessGroup {
                        name: "uvicorn".into(),
                        pid: 30,
                        role: ProcessRole::Api,
                        cpu_pct: 20.0,
                        ..Default::default()
                    },
                ];
            }
            vec![
                (name, values),
                postgres(|p| {
                    p.database = "ffmpeg_api".into();
                    p.clients = vec![pool];
                }),
            ]
        });
        (run, backend)
    }

    fn summary(diagnosis: &Diagnosis) -> Vec<String> {
        diagnosis
            .validity
            .iter()
            .chain(&diagnosis.findings)
            .map(|f| {
                format!(
                    "{} {:?} {} | {}",
                    f.rule, f.explained_by, f.title, f.evidence
                )
            })
            .collect()
    }

    #[test]
    fn the_same_evidence_in_any_order_gives_the_same_diagnosis() {
        let (mut run, backend) = troubled_run();
        let targets = crate::targets::Targets::default();
        run.backend = backend.clone();
        let once = diagnose(&Evidence::new(&run, &targets, &[], Default::default()));
        let twice = diagnose(&Evidence::new(&run, &targets, &[], Default::default()));
        assert_eq!(summary(&once), summary(&twice));
        // The samples reordered, as a merge of several sources might hand them over.
        let mut shuffled = backend;
        shuffled.reverse();
        shuffled.swap(2, 7);
        run.backend = shuffled;
        let reordered = diagnose(&Evidence::new(&run, &targets, &[], Default::default()));
        assert_eq!(summary(&once), summary(&reordered));
        // And what it says: the pool first, with the share of the slowdown it explains; the
        // build on the host in the validity section, never among the causes.
        let top = &once.findings[0];
        assert_eq!(top.rule, "postgres.pool_exhausted", "{:#?}", once.findings);
        assert!(
            top.explains.is_some_and(|e| e.pct >= 90.0),
            "{:?}: {}",
            top.explains,
            top.evidence
        );
        assert!(
            top.evidence.contains("of the steady requests' slowdown"),
            "{}",
            top.evidence
        );
        assert_eq!(
            once.findings
                .iter()
                .find(|f| f.rule == "load.slow_endpoints")
                .and_then(|f| f.explained_by),
            Some("postgres.pool_exhausted")
        );
        assert!(once.findings.iter().all(|f| f.layer != Layer::Host));
        assert_eq!(
            once.validity[0].rule, "host.outside_cpu",
            "{:#?}",
            once.validity
        );
        assert!(
            once.validity[0].evidence.starts_with("cargo (pid 77) 120%"),
            "{}",
            once.validity[0].evidence
        );
    }
}
