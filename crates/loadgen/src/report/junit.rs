//! The run as a JUnit XML test report, the format CI systems (GitHub Actions reporters, GitLab,
//! Jenkins, Azure) display: one test case per target, one per endpoint's p95 against the p95
//! target, and, with a baseline, one per endpoint compared. Failure messages carry the figure
//! and the target; the findings go in `system-out`. A run stopped before its run time (a signal,
//! the web UI) has one more suite, `loadgen.run`, whose one case errs: its figures cover only
//! part of the run, which CI must not take for a full one.

use std::fmt::Write;

use super::baseline::{Comparison, RowState};
use super::markup::escape;
use super::{P95, P99, Report, Row};
use crate::targets::ms;

/// One test case.
struct Case {
    name: String,
    /// `Some(message)` when it failed.
    failure: Option<String>,
    /// `Some(why)` when it was not judged.
    skipped: Option<String>,
    /// `Some(why)` when it could not run to its end.
    error: Option<String>,
}

/// One test suite.
struct Suite {
    name: &'static str,
    cases: Vec<Case>,
    system_out: Option<String>,
}

/// The JUnit XML document of `report`.
pub fn render(report: &Report) -> String {
    let mut suites: Vec<Suite> = interrupted(report).into_iter().collect();
    suites.extend([targets(report), endpoints(report)]);
    suites.extend(open_model(report));
    if let Some(comparison) = &report.baseline {
        suites.push(baseline(comparison));
    }
    let timestamp = chrono::DateTime::from_timestamp(report.started_at as i64, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default();
    let time = format!("{:.3}", report.duration_secs);
    let count = |f: fn(&Case) -> bool| -> usize {
        suites
            .iter()
            .map(|s| s.cases.iter().filter(|c| f(c)).count())
            .sum()
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"loadgen\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time}\">",
        count(|_| true),
        count(|c| c.failure.is_some()),
        count(|c| c.error.is_some()),
        count(|c| c.skipped.is_some()),
    );
    for suite in &suites {
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{time}\" timestamp=\"{timestamp}\">",
            suite.name,
            suite.cases.len(),
            suite.cases.iter().filter(|c| c.failure.is_some()).count(),
            suite.cases.iter().filter(|c| c.error.is_some()).count(),
            suite.cases.iter().filter(|c| c.skipped.is_some()).count(),
        );
        let interrupted_by = report.interruption.as_ref().map_or_else(String::new, |i| {
            format!(
                "<property name=\"interrupted_by\" value=\"{}\"/>",
                escape(&i.by)
            )
        });
        // Every request sent, accounted for: what the rows count, and what they do not.
        let _ = writeln!(
            out,
            "    <properties><property name=\"host\" value=\"{}\"/><property name=\"run_id\" value=\"{}\"/>{interrupted_by}<property name=\"requests\" value=\"{}\"/><property name=\"failures\" value=\"{}\"/><property name=\"timeouts\" value=\"{}\"/><property name=\"retries\" value=\"{}\"/><property name=\"in_flight_at_stop\" value=\"{}\"/><property name=\"stuck_users\" value=\"{}\"/>{}</properties>",
            escape(&report.host),
            escape(&report.run_id),
            report.locust_total.requests,
            report.locust_total.failures,
            report.timed_out,
            report.resent,
            report.in_flight_at_stop,
            report.stuck_users.peak,
            open_model_properties(report),
        );
        for case in &suite.cases {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"0\"",
                escape(&case.name),
                suite.name
            );
            if let Some(message) = &case.error {
                let _ = writeln!(
                    out,
                    ">\n      <error message=\"{0}\" type=\"interrupted\">{0}</error>\n    </testcase>",
                    escape(message)
                );
            } else if let Some(message) = &case.failure {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{0}\" type=\"{1}\">{0}</failure>\n    </testcase>",
                    escape(message),
                    suite.name
                );
            } else if let Some(why) = &case.skipped {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    escape(why)
                );
            } else {
                out.push_str("/>\n");
            }
        }
        if let Some(text) = &suite.system_out {
            let _ = writeln!(out, "    <system-out>{}</system-out>", escape(text));
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// The open model's schedule as properties (none for a closed run).
fn open_model_properties(report: &Report) -> String {
    let Some(open) = &report.open_model else {
        return String::new();
    };
    let service = &report.service_time.percentiles_ms;
    [
        ("arrival_rate", escape(&open.rate)),
        ("iterations_scheduled", open.counts.scheduled.to_string()),
        ("iterations_dropped", open.counts.dropped.to_string()),
        ("iterations_late", open.counts.late.to_string()),
        ("users_cap", open.users_cap.to_string()),
        ("service_time_p95_ms", format!("{:.1}", P95.among(service))),
        ("service_time_p99_ms", format!("{:.1}", P99.among(service))),
    ]
    .iter()
    .map(|(name, value)| format!("<property name=\"{name}\" value=\"{value}\"/>"))
    .collect()
}

/// The `loadgen.open_model` suite of an open-model run: one case, "arrival rate held", failed
/// when iterations were dropped (the run measured a lower rate than asked).
fn open_model(report: &Report) -> Option<Suite> {
    let open = report.open_model.as_ref()?;
    Some(Suite {
        name: "loadgen.open_model",
        cases: vec![Case {
            name: "arrival rate held".into(),
            failure: (!open.held()).then(|| {
                format!(
                    "{} of {} iterations dropped ({:.1}/s) at {}, users cap {}",
                    open.counts.dropped,
                    open.counts.scheduled,
                    open.dropped_per_sec,
                    open.rate,
                    open.users_cap
                )
            }),
            skipped: None,
            error: None,
        }],
        system_out: Some(open.line()),
    })
}

/// The `loadgen.run` suite of an interrupted run: one case, in error.
fn interrupted(report: &Report) -> Option<Suite> {
    let interruption = report.interruption.as_ref()?;
    Some(Suite {
        name: "loadgen.run",
        cases: vec![Case {
            name: "ran for its run time".into(),
            failure: None,
            skipped: None,
            error: Some(format!(
                "interrupted after {:.1} s: stopped by {}",
                report.duration_secs,
                interruption.describe()
            )),
        }],
        system_out: None,
    })
}

fn targets(report: &Report) -> Suite {
    let cases = report
        .analysis
        .verdicts
        .iter()
        .map(|v| Case {
            name: format!("{} {}", v.name, v.threshold),
            failure: (!v.met)
                .then(|| format!("{}: {}, target {}", v.name, v.measured, v.threshold)),
            skipped: None,
            error: None,
        })
        .collect();
    let mut findings = String::from("Is this run valid?\n");
    if report.analysis.validity.is_empty() {
        let _ = writeln!(findings, "{}", super::VALID_RUN);
    }
    for f in &report.analysis.validity {
        let _ = writeln!(
            findings,
            "- [{}] {}\n  Evidence: {}\n  Action:   {}",
            f.severity, f.title, f.evidence, f.action
        );
    }
    findings.push_str("\nFindings\n");
    let ranked = &report.analysis.findings;
    for (number, f) in crate::diagnosis::numbers(ranked).iter().zip(ranked) {
        let _ = writeln!(
            findings,
            "{number}. [{}] {}\n   Evidence: {}\n   Action:   {}",
            f.severity, f.title, f.evidence, f.action
        );
    }
    Suite {
        name: "loadgen.targets",
        cases,
        system_out: Some(findings),
    }
}

/// Each steady-state endpoint's p95 against the run's p95 target.
fn endpoints(report: &Report) -> Suite {
    let target = report.analysis.targets.p95_ms;
    let case = |row: &Row| {
        let name = format!("{} {} p95 < {target} ms", row.method, row.name);
        let p95 = row.p(P95);
        let failed_pct = if row.requests == 0 {
            0.0
        } else {
            row.failures as f64 * 100.0 / row.requests as f64
        };
        if row.requests == 0 {
            Case {
                name,
                failure: None,
                skipped: Some("no request in the steady state".into()),
                error: None,
            }
        } else if failed_pct > 50.0 {
            // A p95 of refusals measures how fast the API says no: never a pass.
            Case {
                name,
                failure: Some(format!(
                    "{} {}: p95 not judged, {failed_pct:.1}% of {} requests failed",
                    row.method, row.name, row.requests
                )),
                skipped: None,
                error: None,
            }
        } else {
            Case {
                name,
                failure: (p95 >= target).then(|| {
                    format!(
                        "{} {}: p95 {}, target < {target} ms ({} requests)",
                        row.method,
                        row.name,
                        ms(p95),
                        row.requests
                    )
                }),
                skipped: None,
                error: None,
            }
        }
    };
    Suite {
        name: "loadgen.endpoints",
        cases: report.steady.iter().map(case).collect(),
        system_out: None,
    }
}

fn baseline(comparison: &Comparison) -> Suite {
    let mut cases: Vec<Case> = comparison
        .rows
        .iter()
        .map(|row| {
            let name = format!("{} against the baseline", row.label());
            let regressed: Vec<String> = row
                .changes
                .iter()
                .filter(|c| c.regressed)
                .map(|c| format!("{} {} ({})", c.metric, c.values(), c.delta()))
                .collect();
            let skipped = match row.state {
                RowState::Compared => None,
                RowState::TooFew => Some(format!(
                    "too few requests to judge ({} then {})",
                    row.requests.0, row.requests.1
                )),
                RowState::New => Some("not in the baseline".into()),
                RowState::Gone => Some("in the baseline only".into()),
            };
            Case {
                failure: (!regressed.is_empty()).then(|| {
                    format!(
                        "{}: {}; allowed: {}",
                        row.label(),
                        regressed.join(", "),
                        comparison.thresholds
                    )
                }),
                skipped: if regressed.is_empty() { skipped } else { None },
                error: None,
                name,
            }
        })
        .collect();
    if let Some(dropped) = &comparison.dropped {
        // The open model's dropped iterations, judged as the failures are.
        cases.push(Case {
            name: "dropped iterations against the baseline".into(),
            failure: dropped.regressed.then(|| {
                format!(
                    "dropped iterations {} ({}); allowed: {}",
                    dropped.values(),
                    dropped.delta(),
                    comparison.thresholds
                )
            }),
            skipped: None,
            error: None,
        });
    }
    Suite {
        name: "loadgen.baseline",
        cases,
        system_out: Some(format!("baseline: {}", comparison.baseline)),
    }
}
