//! The console: Locust's requests and percentiles tables, then LOAD TEST SUMMARY, TARGET
//! ANALYSIS, ENDPOINT ANALYSIS and OPTIMIZATION RECOMMENDATIONS.

use super::baseline::{Comparison, Metric};
use std::fmt::Write;

use super::{JobRow, P95, P99, PERCENTILES, Report, Row};
use crate::stats::Phase;
use crate::targets::ms;

const RULE: &str =
    "================================================================================";

/// Locust's column widths when its output is no terminal (CI logs, files): the name column of
/// the requests table (`STATS_NAME_WIDTH - STATS_TYPE_WIDTH + 4`), and of the percentiles
/// table (`STATS_NAME_WIDTH`). Scripts that cut Locust's tables by column read ours.
const REQUESTS_NAME_WIDTH: usize = 76;
const PERCENTILES_NAME_WIDTH: usize = 80;

/// Locust's requests table for `rows` and their aggregate (its `get_stats_summary`; Python's
/// `%d` cuts the fractions of the times).
pub fn requests_table(rows: &[Row], total: &Row) -> String {
    const W: usize = REQUESTS_NAME_WIDTH;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<W$} {:>7} {:>12} |{:>7} {:>7} {:>7}{:>7} | {:>7} {:>11}",
        "Type", "Name", "# reqs", "# fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s"
    );
    let rule = [8, W, 7, 13, 7, 7, 7, 7, 8, 11]
        .map(|n| "-".repeat(n))
        .join("|");
    let _ = writeln!(out, "{rule}");
    let line = |out: &mut String, row: &Row| {
        let fails = format!(
            "{}({:.2}%)",
            row.failures,
            if row.requests == 0 {
                0.0
            } else {
                row.failures as f64 * 100.0 / row.requests as f64
            }
        );
        let _ = writeln!(
            out,
            "{:<8} {:<W$} {:>7} {:>12} |{:>7} {:>7} {:>7}{:>7} | {:>7.2} {:>11.2}",
            row.method,
            row.name,
            row.requests,
            fails,
            row.average_ms.trunc(),
            row.min_ms.trunc(),
            row.max_ms.trunc(),
            row.median_ms.round(),
            row.rps,
            row.failures_per_sec
        );
    };
    for row in rows {
        line(&mut out, row);
    }
    let _ = writeln!(out, "{rule}");
    line(&mut out, total);
    out
}

/// Locust's response time percentiles table (its `get_percentile_stats_summary`: the rows
/// with requests only).
pub fn percentiles_table(rows: &[Row], total: &Row) -> String {
    const W: usize = PERCENTILES_NAME_WIDTH;
    let mut out = String::new();
    let _ = writeln!(out, "Response time percentiles (approximated)");
    let labels: Vec<String> = PERCENTILES
        .iter()
        .map(|p| {
            if *p == 100.0 {
                "100%".to_owned()
            } else {
                format!("{p}%")
            }
        })
        .collect();
    // Locust's format gives the first percentile 8 columns and the rest, then "# reqs", 6.
    let figures = |first: &str, rest: &[String], last: &str| {
        let mut text = format!("{first:>8}");
        for value in rest.iter().map(String::as_str).chain([last]) {
            let _ = write!(text, " {value:>6}");
        }
        text
    };
    let _ = writeln!(
        out,
        "{:<8} {:<W$} {}",
        "Type",
        "Name",
        figures(&labels[0], &labels[1..], "# reqs")
    );
    let rule = format!(
        "{}|{}|{}|{}",
        "-".repeat(8),
        "-".repeat(W),
        "-".repeat(8),
        vec!["------"; PERCENTILES.len()].join("|")
    );
    let _ = writeln!(out, "{rule}");
    let line = |out: &mut String, row: &Row| {
        let values: Vec<String> = row
            .percentiles_ms
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect();
        let _ = writeln!(
            out,
            "{:<8} {:<W$} {}",
            row.method,
            row.name,
            figures(&values[0], &values[1..], &row.requests.to_string())
        );
    };
    for row in rows.iter().filter(|r| r.requests > 0) {
        line(&mut out, row);
    }
    let _ = writeln!(out, "{rule}");
    if total.requests > 0 {
        line(&mut out, total);
    }
    out
}

/// The whole end-of-run text: Locust's tables, then one section after another.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    locust_tables(&mut out, report);
    run_summary(&mut out, report);
    target_section(&mut out, &report.analysis);
    if let Some(comparison) = &report.baseline {
        baseline_section(&mut out, comparison);
    }
    endpoint_section(&mut out, report);
    validity_section(&mut out, &report.analysis);
    recommendations_section(&mut out, &report.analysis);
    out
}

/// Locust's own tables: requests and percentiles of every request (start-up and job polls
/// too, as Locust's and `_stats.csv` count them), the start-up requests and job polls apart,
/// the error report and the scenario errors.
fn locust_tables(out: &mut String, report: &Report) {
    out.push_str(&requests_table(&report.locust_rows, &report.locust_total));
    out.push('\n');
    out.push_str(&percentiles_table(
        &report.locust_rows,
        &report.locust_total,
    ));
    if let Some(open) = &report.open_model {
        out.push('\n');
        out.push_str(&open.console(report.peak_users));
    }
    if !report.startup.is_empty() {
        let _ = writeln!(
            out,
            "\nSTART-UP REQUESTS (on_start and on_stop: in the tables above; the targets judge the steady state without them)"
        );
        out.push_str(&requests_table(&report.startup, &report.startup_total));
    }
    if !report.polls.is_empty() {
        let _ = writeln!(
            out,
            "\nJOB POLLS (following the jobs created: in the tables above; the targets judge the steady state without them)"
        );
        out.push_str(&requests_table(&report.polls, &report.polls_total));
    }
    error_report(out, report);
    if !report.exceptions.is_empty() {
        let _ = writeln!(out, "\nScenario errors");
        for (message, count) in &report.exceptions {
            let _ = writeln!(out, "{count:>8}  {message}");
        }
    }
}

/// Locust's error report (its `get_error_report_summary`): each failure with its count. When
/// each was first and last seen is in `_failures.csv`.
fn error_report(out: &mut String, report: &Report) {
    if report.failures.is_empty() {
        return;
    }
    let rule = format!("{}|{}", "-".repeat(18), "-".repeat(80 + 80 - 19));
    let _ = writeln!(out, "\nError report");
    let _ = writeln!(out, "{:<18} {:<100}", "# occurrences", "Error");
    let _ = writeln!(out, "{rule}");
    for f in &report.failures {
        let error = format!("{} {}: {}", f.method, f.name, f.error);
        let _ = writeln!(out, "{:<18} {error:<100}", f.occurrences);
    }
    let _ = writeln!(out, "{rule}");
}

/// LOAD TEST SUMMARY: the run's shape and totals, then its jobs, handled answers and workers.
fn run_summary(out: &mut String, report: &Report) {
    let _ = writeln!(out, "\n{RULE}\nLOAD TEST SUMMARY\n{RULE}");
    run_totals(out, report);
    accounting(out, report);
    response_times(out, report);
    for job in &report.jobs {
        job_line(out, job);
    }
    for (name, status, count) in &report.handled {
        let _ = writeln!(
            out,
            "Handled:         {count} x {status} on {name} (handler step ran, request retried)"
        );
    }
    if let Some(cluster) = &report.cluster {
        out.push_str(&workers_table(cluster));
    }
}

/// Host, duration, users, requests and failures of the run.
fn run_totals(out: &mut String, report: &Report) {
    let steady = &report.steady_total;
    let _ = writeln!(out, "Host:            {}", report.host);
    let ran = human_duration(std::time::Duration::from_secs_f64(report.duration_secs));
    let _ = writeln!(
        out,
        "Duration:        {ran}{}",
        report
            .interruption
            .as_ref()
            .map_or_else(String::new, |i| format!(" (stopped by {})", i.describe()))
    );
    let types: Vec<String> = report
        .users_by_type
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "Users:           {} at peak ({})",
        report.peak_users,
        types.join(", ")
    );
    let _ = writeln!(
        out,
        "Requests:        {} steady state, {} start-up{}",
        steady.requests,
        report.startup_total.requests,
        if report.polls_total.requests > 0 {
            format!(", {} job polls", report.polls_total.requests)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "Failures:        {} ({:.2}%)",
        steady.failures,
        if steady.requests == 0 {
            0.0
        } else {
            steady.failures as f64 * 100.0 / steady.requests as f64
        }
    );
}

/// Throughput and response times of the steady state, and of the start-up requests if any.
fn response_times(out: &mut String, report: &Report) {
    let steady = &report.steady_total;
    let _ = writeln!(out, "Throughput:      {:.2} req/s", steady.rps);
    let _ = writeln!(
        out,
        "Response times:  avg {}, median {}, p95 {}, p99 {}, max {}",
        ms(steady.average_ms),
        ms(steady.median_ms),
        ms(steady.p(P95)),
        ms(steady.p(P99)),
        ms(steady.max_ms)
    );
    if report.startup_total.requests > 0 {
        let s = &report.startup_total;
        let _ = writeln!(
            out,
            "Start-up:        avg {:.0} ms, p95 {:.0} ms over {} requests",
            s.average_ms,
            s.p(P95),
            s.requests
        );
    }
}

/// One kind of job: how its jobs ended, and how long they took.
fn job_line(out: &mut String, job: &JobRow) {
    let times = if job.completion_secs.is_empty() {
        String::new()
    } else {
        format!(
            "; completion p50 {:.1} s, p95 {:.1} s, max {:.1} s",
            job.completion_secs.get("p50").copied().unwrap_or(0.0),
            job.completion_secs.get("p95").copied().unwrap_or(0.0),
            job.completion_secs.get("p100").copied().unwrap_or(0.0)
        )
    };
    let unfollowed = if job.unfollowed == 0 {
        String::new()
    } else {
        format!(
            " ({} more not followed: the polls were at their budget)",
            job.unfollowed
        )
    };
    let _ = writeln!(
        out,
        "Jobs {:<11} {} completed, {} failed, {} unfinished, {} unknown{times}{unfollowed}",
        format!("{}:", job.job),
        job.completed,
        job.failed,
        job.unfinished,
        job.unknown
    );
}

/// TARGET ANALYSIS: each target passed or failed, and how many were met.
fn target_section(out: &mut String, analysis: &super::Analysis) {
    let _ = writeln!(out, "\n{RULE}\nTARGET ANALYSIS\n{RULE}");
    for v in &analysis.verdicts {
        let _ = writeln!(
            out,
            "{} {:<24} {:>12}  (target {})",
            if v.met { "[PASS]" } else { "[FAIL]" },
            v.name,
            v.measured,
            v.threshold
        );
    }
    let met = analysis.verdicts.iter().filter(|v| v.met).count();
    let _ = writeln!(out, "{met} of {} targets met", analysis.verdicts.len());
}

/// ENDPOINT ANALYSIS: every endpoint of every phase, slowest p95 first.
fn endpoint_section(out: &mut String, report: &Report) {
    let _ = writeln!(out, "\n{RULE}\nENDPOINT ANALYSIS\n{RULE}");
    let mut by_p95: Vec<&Row> = report
        .steady
        .iter()
        .chain(&report.startup)
        .chain(&report.polls)
        .collect();
    by_p95.sort_by(|a, b| b.p(P95).total_cmp(&a.p(P95)));
    for row in by_p95 {
        let statuses: Vec<String> = row
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}x{n}"))
            .collect();
        let phase = match row.phase {
            Phase::Startup => " (start-up)",
            Phase::Poll => " (job polls)",
            Phase::Steady => "",
        };
        let _ = writeln!(
            out,
            "{:<6} {:<40} p95 {:>6.0} ms  avg {:>6.0} ms  {:>6.2}% failed  [{}]{phase}",
            row.method,
            row.name,
            row.p(P95),
            row.average_ms,
            if row.requests == 0 {
                0.0
            } else {
                row.failures as f64 * 100.0 / row.requests as f64
            },
            statuses.join(" ")
        );
    }
}

/// OPTIMIZATION RECOMMENDATIONS: the findings, each symptom numbered under its cause.
fn recommendations_section(out: &mut String, analysis: &super::Analysis) {
    let _ = writeln!(out, "\n{RULE}\nOPTIMIZATION RECOMMENDATIONS\n{RULE}");
    let findings = &analysis.findings;
    for (number, finding) in crate::diagnosis::numbers(findings).iter().zip(findings) {
        // A symptom is indented under its cause.
        let indent = "   ".repeat(number.matches('.').count());
        let _ = writeln!(
            out,
            "{indent}{number}. [{}] {}",
            finding.severity, finding.title
        );
        let _ = writeln!(out, "{indent}   Evidence: {}", finding.evidence);
        let _ = writeln!(out, "{indent}   Action:   {}", finding.action);
    }
}

/// "Is this run valid?": what could have disturbed the figures, before the findings.
fn validity_section(out: &mut String, analysis: &super::Analysis) {
    let _ = writeln!(out, "\n{RULE}\nIS THIS RUN VALID?\n{RULE}");
    if analysis.validity.is_empty() {
        let _ = writeln!(out, "{}", super::VALID_RUN);
    }
    for item in &analysis.validity {
        let _ = writeln!(out, "- [{}] {}", item.severity, item.title);
        let _ = writeln!(out, "  Evidence: {}", item.evidence);
        let _ = writeln!(out, "  Action:   {}", item.action);
    }
}

/// Each endpoint's change against the baseline; a `!` marks a figure past its threshold.
fn baseline_section(out: &mut String, comparison: &Comparison) {
    let _ = writeln!(
        out,
        "\n{RULE}\nBASELINE COMPARISON (against {})\n{RULE}",
        comparison.baseline
    );
    let width = comparison
        .rows
        .iter()
        .map(|r| r.label().chars().count())
        .max()
        .unwrap_or(0)
        .clamp(10, 50);
    let _ = writeln!(
        out,
        "{:<width$} {:>15} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "Name", "Requests", "req/s", "p50", "p95", "p99", "Failures"
    );
    for row in &comparison.rows {
        let figure = |metric| {
            row.change(metric).map_or_else(
                || "-".to_owned(),
                |c| format!("{}{}", c.delta(), if c.regressed { "!" } else { "" }),
            )
        };
        let note = match row.state.note() {
            "" => String::new(),
            note => format!("  ({note})"),
        };
        let _ = writeln!(
            out,
            "{:<width$} {:>15} {:>10} {:>10} {:>10} {:>10} {:>10}{note}",
            row.label(),
            format!("{} → {}", row.requests.0, row.requests.1),
            figure(Metric::Rps),
            figure(Metric::P50),
            figure(Metric::P95),
            figure(Metric::P99),
            figure(Metric::Failures),
        );
    }
    if let Some(c) = &comparison.dropped {
        let _ = writeln!(
            out,
            "Dropped iterations: {} ({}){}",
            c.values(),
            c.delta(),
            if c.regressed { "!" } else { "" }
        );
    }
    for line in &comparison.regressions {
        let _ = writeln!(out, "[REGRESSION] {line}");
    }
    if comparison.passed() {
        let _ = writeln!(
            out,
            "No regression against the baseline (allowed: {})",
            comparison.thresholds
        );
    }
}

/// `1h 2m 3s` style.
fn human_duration(duration: std::time::Duration) -> String {
    // Under a minute, tenths: a 2.996 s run is not "2s".
    if duration.as_secs() < 60 {
        return format!("{:.1}s", duration.as_secs_f64());
    }
    humantime::format_duration(std::time::Duration::from_secs(duration.as_secs())).to_string()
}

/// The workers of a distributed run: each one's share, and what happened to them.
fn workers_table(cluster: &crate::outcome::ClusterSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Workers:         {} ({} requests in all)",
        cluster.workers.len(),
        cluster.workers.iter().map(|w| w.requests).sum::<u64>()
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>6} {:>10} {:>9} {:>8} {:>9}  state",
        "name", "users", "requests", "req/s", "CPU %", "lag ms"
    );
    for w in &cluster.workers {
        let _ = writeln!(
            out,
            "  {:<28} {:>6} {:>10} {:>9.1} {:>8.0} {:>9.0}  {}{}",
            w.name,
            w.users,
            w.requests,
            w.requests_per_sec,
            w.peak_cpu_pct,
            w.peak_timer_lag_ms,
            w.state,
            if w.saturated() { ", SATURATED" } else { "" }
        );
    }
    for event in &cluster.events {
        let _ = writeln!(out, "  at {:>4.0} s: {}", event.at_secs, event.what);
    }
    out
}

/// Where every request sent went, when any did not simply get its answer: timed out, resent,
/// or still in flight at the stop (issue 22: none may vanish from the figures).
fn accounting(out: &mut String, report: &Report) {
    let answered_or_failed = report.locust_total.requests;
    if report.timed_out > 0 {
        let _ = writeln!(
            out,
            "Timed out:       {} request(s) with no complete answer within their timeout \
             (counted as failures)",
            report.timed_out
        );
    }
    if report.resent > 0 {
        let _ = writeln!(
            out,
            "Resent:          {} idempotent request(s) sent again after the server closed a \
             kept-alive connection without answering",
            report.resent
        );
    }
    if report.in_flight_at_stop > 0 {
        let oldest = report
            .locust_rows
            .iter()
            .filter_map(|r| r.in_flight_at_stop)
            .map(|u| u.oldest_at_least_ms)
            .fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "In flight:       {} request(s) sent but unanswered when their user was stopped, the \
             oldest for {:.1} s (in the percentiles at their age, as lower bounds; raise \
             --stop-timeout to let them finish)",
            report.in_flight_at_stop,
            oldest / 1000.0
        );
    }
    let stuck = &report.stuck_users;
    if stuck.peak > 0 {
        let _ = writeln!(
            out,
            "Stuck users:     {} of {} users waited more than {} s for an answer{}",
            stuck.peak,
            report.peak_users,
            crate::stats::STUCK_AFTER.as_secs(),
            stuck
                .first_secs
                .map_or(String::new(), |s| format!(" (from {s} s into the run)"))
        );
    }
    if report.resent + report.in_flight_at_stop + report.unsent_at_stop > 0 {
        let unsent = if report.unsent_at_stop > 0 {
            format!(
                "; {} more stopped while connecting, never sent",
                report.unsent_at_stop
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "Sent:            {} request(s): {answered_or_failed} answered or failed, {} resent, \
             {} in flight at the stop{unsent}",
            answered_or_failed + report.resent + report.in_flight_at_stop,
            report.resent,
            report.in_flight_at_stop
        );
    }
}
