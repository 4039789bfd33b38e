//! Judging a run: the seed's five targets (overridable) and recommendations drawn from the
//! evidence in the measurements (status codes, when they began, start-up costs, jobs), each
//! citing the figures it rests on.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::runner::RunOutcome;
use crate::stats::{EndpointStats, Phase};

/// The thresholds a run is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Targets {
    /// Highest acceptable failure share, percent.
    pub failure_pct: f64,
    /// Highest acceptable p95, ms.
    pub p95_ms: f64,
    /// Highest acceptable p99, ms.
    pub p99_ms: f64,
    /// Highest acceptable average, ms.
    pub avg_ms: f64,
    /// Users the run must reach.
    pub users: u64,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            failure_pct: 5.0,
            p95_ms: 500.0,
            p99_ms: 1000.0,
            avg_ms: 200.0,
            users: 100,
        }
    }
}

/// One `--target NAME=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOverride {
    name: &'static str,
    value: f64,
}

impl FromStr for TargetOverride {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let (name, value) = input.split_once('=').ok_or_else(|| {
            format!("{input:?}: write NAME=VALUE, e.g. p95=800ms, failure=1%, users=50")
        })?;
        let name = match name.trim() {
            "failure" | "failures" | "fail" => "failure",
            "p95" => "p95",
            "p99" => "p99",
            "avg" | "average" => "avg",
            "users" => "users",
            other => {
                return Err(format!(
                    "unknown target {other:?}: use failure, p95, p99, avg or users"
                ));
            }
        };
        let value = value.trim();
        let number = if name == "failure" {
            value.trim_end_matches('%').parse::<f64>().ok()
        } else if name == "users" {
            value.parse::<u64>().ok().map(|u| u as f64)
        } else if let Ok(ms) = value.parse::<f64>() {
            Some(ms)
        } else {
            humantime::parse_duration(value)
                .ok()
                .map(|d| d.as_secs_f64() * 1000.0)
        };
        let value = number
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("{input:?}: {value:?} is not a valid {name} target"))?;
        Ok(Self { name, value })
    }
}

impl Targets {
    /// The defaults with `overrides` applied.
    pub fn with(overrides: &[TargetOverride]) -> Self {
        let mut targets = Self::default();
        for o in overrides {
            match o.name {
                "failure" => targets.failure_pct = o.value,
                "p95" => targets.p95_ms = o.value,
                "p99" => targets.p99_ms = o.value,
                "avg" => targets.avg_ms = o.value,
                _ => targets.users = o.value as u64,
            }
        }
        targets
    }
}

/// One target's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// What is judged.
    pub name: String,
    /// The measured value, as printed.
    pub measured: String,
    /// The threshold, as printed.
    pub threshold: String,
    /// Whether it is met.
    pub met: bool,
}

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

/// A recommendation and the evidence for it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Severity.
    pub severity: Severity,
    /// Short title.
    pub title: String,
    /// The figures it rests on.
    pub evidence: String,
    /// What to do.
    pub action: String,
}

/// The whole judgement.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    /// The thresholds used.
    pub targets: Targets,
    /// Each target's verdict.
    pub verdicts: Vec<Verdict>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
}

impl Analysis {
    /// Whether every target is met.
    pub fn all_met(&self) -> bool {
        self.verdicts.iter().all(|v| v.met)
    }
}

/// Judges `outcome` (and the backend `ticks` taken beside it) against `targets`.
pub fn analyse(
    outcome: &RunOutcome,
    ticks: &[monitor::sample::Tick],
    targets: Targets,
) -> Analysis {
    let steady = outcome.stats.aggregated(Phase::Steady);
    let failure_pct = steady.failure_ratio() * 100.0;
    let verdicts: Vec<Verdict> = vec![
        Verdict {
            name: "Failure rate".into(),
            measured: format!("{failure_pct:.2}%"),
            threshold: format!("< {}%", targets.failure_pct),
            met: steady.count > 0 && failure_pct < targets.failure_pct,
        },
        Verdict {
            name: "95th percentile".into(),
            measured: ms(steady.percentile_ms(95.0)),
            threshold: format!("< {} ms", targets.p95_ms),
            met: steady.count > 0 && steady.percentile_ms(95.0) < targets.p95_ms,
        },
        Verdict {
            name: "99th percentile".into(),
            measured: ms(steady.percentile_ms(99.0)),
            threshold: format!("< {} ms", targets.p99_ms),
            met: steady.count > 0 && steady.percentile_ms(99.0) < targets.p99_ms,
        },
        Verdict {
            name: "Average response time".into(),
            measured: ms(steady.average_ms()),
            threshold: format!("< {} ms", targets.avg_ms),
            met: steady.count > 0 && steady.average_ms() < targets.avg_ms,
        },
        Verdict {
            name: "Concurrent users".into(),
            measured: format!("{}", outcome.peak_users),
            threshold: format!(">= {}", targets.users),
            met: outcome.peak_users >= targets.users,
        },
    ];
    let mut verdicts = verdicts;
    verdicts.extend(resource_verdicts(ticks));
    let mut findings = super::diagnosis::findings(outcome, ticks, targets);
    findings.extend(self::findings(outcome, &steady, targets));
    if findings.len() > 1 {
        findings.retain(|f| f.title != "No problem found");
    }
    // Most severe first; a saturated load generator before anything, as it voids the rest.
    findings.sort_by_key(|f| (f.severity, f.title != super::diagnosis::LOADGEN_SATURATED));
    Analysis {
        targets,
        verdicts,
        findings,
    }
}

/// The seed's system resource targets, judged on the host's average over the run (with the
/// peak shown): CPU < 70%, RAM < 80%, disk I/O < 80%, network < 70% of capacity.
fn resource_verdicts(ticks: &[monitor::sample::Tick]) -> Vec<Verdict> {
    let hosts: Vec<&monitor::sample::HostValues> = ticks
        .iter()
        .filter_map(
            |t| match t.sources.get("host").and_then(|r| r.values.as_ref()) {
                Some(monitor::sample::Values::Host(h)) => Some(h),
                _ => None,
            },
        )
        .collect();
    if hosts.is_empty() {
        return Vec::new();
    }
    let judge =
        |name: &str, target: f64, warning: f64, value: fn(&monitor::sample::HostValues) -> f64| {
            let avg = hosts.iter().map(|h| value(h)).sum::<f64>() / hosts.len() as f64;
            let peak = hosts.iter().map(|h| value(h)).fold(0.0, f64::max);
            Verdict {
                name: name.to_owned(),
                measured: format!("{avg:.0}% (peak {peak:.0}%)"),
                threshold: format!("< {target}%, warning {warning}%"),
                met: avg < target,
            }
        };
    vec![
        judge("Host CPU", 70.0, 85.0, |h| h.cpu_pct),
        judge("Host memory", 80.0, 90.0, |h| h.memory_pct),
        judge("Host disk I/O", 80.0, 90.0, |h| h.disk_pct),
        judge("Host network", 70.0, 85.0, |h| h.net_pct),
    ]
}

fn status_total(outcome: &RunOutcome, status: u16) -> (u64, u64) {
    outcome.stats.endpoints.values().fold((0, 0), |(s, t), e| {
        (s + e.status_count(status), t + e.count)
    })
}

/// When (seconds into the run) a failure whose message starts with `prefix` first happened.
fn first_failure_secs(outcome: &RunOutcome, prefix: &str) -> Option<f64> {
    outcome
        .stats
        .failures
        .iter()
        .filter(|(k, _)| k.error.starts_with(prefix))
        .map(|(_, f)| f.first_seen_secs)
        .reduce(f64::min)
}

/// When (seconds into the run) a status first appeared, from the per-second history.
fn first_second_with(outcome: &RunOutcome, status: u16) -> Option<u64> {
    outcome
        .history
        .iter()
        .find(|row| row.interval.status_count(status) > 0)
        .map(|row| row.at_secs)
}

fn findings(outcome: &RunOutcome, steady: &EndpointStats, targets: Targets) -> Vec<Finding> {
    let mut found = Vec::new();
    let stats = &outcome.stats;
    let total_requests: u64 = stats.endpoints.values().map(|e| e.count).sum();
    if total_requests == 0 {
        found.push(Finding {
            severity: Severity::Critical,
            title: "No request completed".into(),
            evidence: "0 requests in the whole run".into(),
            action: "Check --host, and that the run time is longer than the users' start-up".into(),
        });
    }

    let refused: u64 = stats
        .failures
        .iter()
        .filter(|(k, _)| {
            k.error.starts_with("ConnectionRefused") || k.error.starts_with("ConnectionError")
        })
        .map(|(_, f)| f.count)
        .sum();
    if refused > 0 {
        let first = stats
            .failures
            .iter()
            .filter(|(k, _)| k.error.starts_with("Connection"))
            .map(|(_, f)| f.first_seen_secs)
            .fold(f64::INFINITY, f64::min);
        found.push(Finding {
            severity: Severity::Critical,
            title: "The API is down or refuses connections".into(),
            evidence: format!("{refused} connection errors, the first {first:.0} s into the run"),
            action: "Check that the API process is up and listening (docker compose ps; its logs), and its connection backlog".into(),
        });
    }

    let (rate_limited, _) = status_total(outcome, 429);
    if rate_limited > 0 {
        let since = first_failure_secs(outcome, "HTTP 429")
            .map_or(String::new(), |s| format!(", from {s:.0} s into the run"));
        found.push(Finding {
            severity: Severity::Critical,
            title: "Rate limiting".into(),
            evidence: format!(
                "{rate_limited} of {total_requests} requests ({:.1}%) answered 429 Too Many Requests{since}",
                rate_limited as f64 * 100.0 / total_requests.max(1) as f64
            ),
            action: "The API limits requests per client IP (RATE_LIMIT_PER_MINUTE, default 60): raise it for load tests, or the test measures the limiter, not the API".into(),
        });
    }

    let unauthorized = status_total(outcome, 401).0;
    if unauthorized > 0 {
        let first = first_second_with(outcome, 401).unwrap_or(0);
        let relogins: u64 = stats
            .handled
            .iter()
            .filter(|((_, s), _)| *s == 401)
            .map(|(_, n)| n)
            .sum();
        let late = first >= 10;
        found.push(Finding {
            severity: Severity::Warning,
            title: if late { "Token expiry".into() } else { "Authentication failures".into() },
            evidence: format!(
                "{unauthorized} answers 401 Unauthorized, the first {first} s into the run{}; {relogins} re-logins",
                if late { " after a quiet start" } else { "" }
            ),
            action: if late {
                "Access tokens expire during the run (JWT_ACCESS_TOKEN_EXPIRE_MINUTES): every expiry costs a bcrypt login; lengthen the lifetime or use /auth/refresh".into()
            } else {
                "Requests are not authenticated: check the scenario's login step and credentials".into()
            },
        });
    }

    let server_errors: u64 = stats
        .endpoints
        .values()
        .flat_map(|e| e.statuses.iter())
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    if server_errors > 0 {
        let worst = stats
            .endpoints
            .iter()
            .map(|(k, e)| {
                (
                    k,
                    e.statuses
                        .iter()
                        .filter(|(s, _)| **s >= 500)
                        .map(|(_, n)| n)
                        .sum::<u64>(),
                )
            })
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(_, n)| *n);
        let worst = worst.map_or(String::new(), |(k, n)| {
            format!("; most on {} {} ({n})", k.method, k.name)
        });
        found.push(Finding {
            severity: Severity::Critical,
            title: "Server errors".into(),
            evidence: format!("{server_errors} answers 5xx{worst}"),
            action:
                "Read the API's logs for the tracebacks of these requests (docker compose logs api)"
                    .into(),
        });
    }

    let startup = stats.aggregated(Phase::Startup);
    let slow_startup: Vec<String> = stats
        .endpoints
        .iter()
        .filter(|(k, e)| k.phase == Phase::Startup && e.average_ms() > targets.avg_ms)
        .map(|(k, e)| {
            format!(
                "{} {} averaged {:.0} ms (p95 {:.0} ms)",
                k.method,
                k.name,
                e.average_ms(),
                e.percentile_ms(95.0)
            )
        })
        .collect();
    if !slow_startup.is_empty() {
        found.push(Finding {
            severity: Severity::Warning,
            title: "Costly start-up (authentication, uploads)".into(),
            evidence: format!("of {} start-up requests, {}", startup.count, slow_startup.join("; ")),
            action: "register/login hash passwords with bcrypt inside the request: lower the cost for tests, move hashing off the event loop, or add API workers; reported apart so the steady state is not skewed".into(),
        });
    }

    if steady.count > 0 && steady.percentile_ms(95.0) >= targets.p95_ms {
        let slow: Vec<String> = stats
            .endpoints
            .iter()
            .filter(|(k, e)| k.phase == Phase::Steady && e.percentile_ms(95.0) >= targets.p95_ms)
            .map(|(k, e)| {
                format!(
                    "{} {} p95 {:.0} ms",
                    k.method,
                    k.name,
                    e.percentile_ms(95.0)
                )
            })
            .collect();
        found.push(Finding {
            severity: Severity::Warning,
            title: "Slow endpoints".into(),
            evidence: format!("steady-state p95 {:.0} ms; {}", steady.percentile_ms(95.0), slow.join(", ")),
            action: "Profile these endpoints: database queries (indexes, N+1), pool size, and CPU of the API process".into(),
        });
    }

    for (kind, job) in &stats.jobs {
        let ended = job.completed + job.failed + job.unfinished + job.unknown;
        if job.failed > 0 {
            found.push(Finding {
                severity: Severity::Warning,
                title: format!("{kind} jobs fail"),
                evidence: format!("{} of {ended} followed {kind} jobs failed: {}", job.failed, job.failure_messages.join("; ")),
                action: "The API answered 201 but the worker failed: read the worker's logs; an audio-overlay `mix` on a video without an audio track always fails".into(),
            });
        }
        let timed_out = job
            .failure_messages
            .iter()
            .any(|m| m.starts_with("no final status"));
        if job.unfinished > 0 && (timed_out || job.completed == 0) {
            found.push(Finding {
                severity: Severity::Warning,
                title: format!("{kind} jobs do not finish"),
                evidence: format!("{} of {ended} followed {kind} jobs never reached a final status ({} completed)", job.unfinished, job.completed),
                action: "Check that the workers run and take jobs (Celery queue length, worker logs); a growing queue means too few workers".into(),
            });
        }
    }

    if !stats.exceptions.is_empty() {
        let count: u64 = stats.exceptions.values().sum();
        let first = stats.exceptions.keys().next().cloned().unwrap_or_default();
        // A variable that is never set usually means the step that sets it failed (a 429 on an
        // upload leaves no file ids to pick): a consequence, not a fault of the scenario.
        let only_unset = stats
            .exceptions
            .keys()
            .all(|m| m.contains("is not set") || m.contains("cannot pick"));
        found.push(if only_unset && !stats.failures.is_empty() {
            Finding {
                severity: Severity::Info,
                title: "Steps skipped after earlier failures".into(),
                evidence: format!("{count} steps skipped because a value they use was never received, e.g. {first}"),
                action: "Fix the failures above first; the steps that set these values failed".into(),
            }
        } else {
            Finding {
                severity: Severity::Warning,
                title: "Scenario errors".into(),
                evidence: format!("{count} steps could not be built, e.g. {first}"),
                action: "Fix the scenario (see the scenario errors table)".into(),
            }
        });
    }

    if found.is_empty() {
        let rps = steady.count as f64 / outcome.duration.as_secs_f64().max(1e-9);
        found.push(Finding {
            severity: Severity::Info,
            title: "No problem found".into(),
            evidence: format!(
                "{} users, {rps:.1} req/s in the steady state, p95 {:.0} ms, {:.2}% failures",
                outcome.peak_users,
                steady.percentile_ms(95.0),
                steady.failure_ratio() * 100.0
            ),
            action: "Raise the users (-u) to find the capacity limit".into(),
        });
    }
    found
}

/// Milliseconds as people read them: `0.42 ms`, `7.1 ms`, `230 ms`.
pub fn ms(value: f64) -> String {
    if value < 1.0 {
        format!("{value:.2} ms")
    } else if value < 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.0} ms")
    }
}

/// `1h 2m 3s` style.
pub fn human_duration(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_overrides() {
        let t = Targets::with(&[
            "p95=800ms".parse().unwrap(),
            "failure=1%".parse().unwrap(),
            "users=20".parse().unwrap(),
            "avg=0.5s".parse().unwrap(),
            "p99=1200".parse().unwrap(),
        ]);
        assert_eq!(
            (t.p95_ms, t.failure_pct, t.users, t.avg_ms, t.p99_ms),
            (800.0, 1.0, 20, 500.0, 1200.0)
        );
        assert!(
            "p96=1"
                .parse::<TargetOverride>()
                .unwrap_err()
                .contains("unknown target")
        );
        assert!(
            "p95"
                .parse::<TargetOverride>()
                .unwrap_err()
                .contains("NAME=VALUE")
        );
        assert!(
            "users=-1"
                .parse::<TargetOverride>()
                .unwrap_err()
                .contains("not a valid")
        );
    }
}
