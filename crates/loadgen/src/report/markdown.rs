//! The summary as GitHub-flavoured Markdown, for `$GITHUB_STEP_SUMMARY` or a merge-request
//! comment: the verdict in the title, the run in one line, the targets, the endpoints, the
//! comparison with the baseline and the findings.

use std::fmt::Write;

use super::baseline::{Comparison, Metric};
use super::{P95, P99, Report};
use crate::targets::ms;

/// Text safe in a table cell: pipes escaped, one line.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// The followed jobs in one line, unknown ones included: a job no poll read is no unfinished
/// one.
fn jobs_line(out: &mut String, report: &Report) {
    if report.jobs.is_empty() {
        return;
    }
    let jobs: Vec<String> = report
        .jobs
        .iter()
        .map(|j| {
            format!(
                "{} {} completed, {} failed, {} unfinished, {} unknown{}",
                cell(&j.job),
                j.completed,
                j.failed,
                j.unfinished,
                j.unknown,
                if j.unfollowed == 0 {
                    String::new()
                } else {
                    format!(", {} not followed (poll budget)", j.unfollowed)
                }
            )
        })
        .collect();
    let _ = writeln!(out, "**Jobs** {}\n", jobs.join(" · "));
}

/// The open model's schedule and the service time beside the response time (from the
/// scheduled instant); nothing for a closed run, whose two times are one.
fn open_model_line(out: &mut String, report: &Report) {
    let Some(open) = &report.open_model else {
        return;
    };
    let steady = &report.steady_total;
    let _ = writeln!(
        out,
        "**Open model** {} · **Response time** median {}, p95 {}, p99 {} · **Service time** {}\n",
        cell(&open.line()),
        ms(steady.median_ms),
        ms(steady.p(P95)),
        ms(steady.p(P99)),
        report.service_time.line()
    );
}

/// The Markdown summary of `report`.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let verdicts = &report.analysis.verdicts;
    let met = verdicts.iter().filter(|v| v.met).count();
    let regressions = report.baseline.as_ref().map_or(0, |c| c.regressions.len());
    let _ = write!(
        out,
        "## {} loadgen: {met} of {} targets met",
        if report.passed() { "✅" } else { "❌" },
        verdicts.len()
    );
    if report.baseline.is_some() {
        let _ = write!(
            out,
            ", {regressions} regression{} against the baseline",
            if regressions == 1 { "" } else { "s" }
        );
    }
    out.push_str("\n\n");
    let steady = &report.steady_total;
    let failed_pct = if steady.requests == 0 {
        0.0
    } else {
        steady.failures as f64 * 100.0 / steady.requests as f64
    };
    let _ = writeln!(
        out,
        "**Host** `{}` · **Duration** {:.0} s{} · **Users** {} at peak · **Requests** {} steady \
         ({:.1} req/s), {} start-up, {} job polls · **Failures** {failed_pct:.2}% · **p95** {}\n",
        report.host.replace('`', ""),
        report.duration_secs,
        report
            .interruption
            .as_ref()
            .map_or_else(String::new, |i| format!(" (stopped by {})", i.describe())),
        report.peak_users,
        steady.requests,
        steady.rps,
        report.startup_total.requests,
        report.polls_total.requests,
        ms(steady.p(P95)),
    );

    if report.timed_out + report.resent + report.in_flight_at_stop > 0 {
        // Every request sent, accounted for: the rows count only the answered and failed.
        let _ = writeln!(
            out,
            "**Timed out** {} (in the failures) · **Resent** {} · **In flight at the stop** {} \
             (in the percentiles at their age) · **Stuck users** {}\n",
            report.timed_out, report.resent, report.in_flight_at_stop, report.stuck_users.peak
        );
    }
    open_model_line(&mut out, report);
    jobs_line(&mut out, report);
    out.push_str("### Targets\n\n| | Target | Measured | Threshold |\n|---|---|---|---|\n");
    for v in verdicts {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            if v.met { "✅" } else { "❌" },
            cell(&v.name),
            cell(&v.measured),
            cell(&v.threshold)
        );
    }

    out.push_str(
        "\n### Endpoints (steady state)\n\n| Method | Name | Requests | Failures | Median | p95 | p99 | req/s |\n|---|---|--:|--:|--:|--:|--:|--:|\n",
    );
    for row in report.steady.iter().chain([&report.steady_total]) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            cell(&row.method),
            cell(&row.name),
            row.requests,
            row.failures,
            ms(row.median_ms),
            ms(row.p(P95)),
            ms(row.p(P99)),
            row.rps
        );
    }

    super::statements::markdown(&mut out, &report.backend);

    if let Some(comparison) = &report.baseline {
        comparison_section(&mut out, comparison);
    }

    out.push_str("\n### Is this run valid?\n\n");
    if report.analysis.validity.is_empty() {
        let _ = writeln!(out, "{}", super::VALID_RUN);
    }
    for f in &report.analysis.validity {
        finding_item(&mut out, "", "", f);
    }
    out.push_str("\n### Findings\n\n");
    let findings = &report.analysis.findings;
    for (number, f) in crate::diagnosis::numbers(findings).iter().zip(findings) {
        // A symptom is indented under its cause.
        let indent = "   ".repeat(number.matches('.').count());
        finding_item(&mut out, &indent, &format!("{number}. "), f);
    }
    out
}

/// One finding as a list item, on one line each for its title, evidence and action.
pub(crate) fn finding_item(
    out: &mut String,
    indent: &str,
    number: &str,
    f: &crate::diagnosis::Finding,
) {
    let _ = writeln!(
        out,
        "{indent}- **{number}[{}] {}**  \n{indent}  Evidence: {}  \n{indent}  Action: {}",
        f.severity,
        f.title.replace('\n', " "),
        f.evidence.replace('\n', " "),
        f.action.replace('\n', " ")
    );
}

fn comparison_section(out: &mut String, comparison: &Comparison) {
    let when = chrono::DateTime::from_timestamp(comparison.baseline_started_at as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n### Compared with the baseline\n\nBaseline `{}` (run of {when}). Allowed: {}.\n",
        comparison.baseline.replace('`', ""),
        comparison.thresholds
    );
    out.push_str(
        "| Endpoint | Requests | req/s | p50 | p95 | p99 | Failures |\n|---|--:|--:|--:|--:|--:|--:|\n",
    );
    for row in &comparison.rows {
        let figure = |metric| match row.change(metric) {
            Some(c) if c.regressed => format!("**{} ({})** ❌", c.values(), c.delta()),
            Some(c) => format!("{} ({})", c.values(), c.delta()),
            None => "–".to_owned(),
        };
        let note = match row.state.note() {
            "" => String::new(),
            note => format!(" ({note})"),
        };
        let _ = writeln!(
            out,
            "| {}{note} | {} → {} | {} | {} | {} | {} | {} |",
            cell(&row.label()),
            row.requests.0,
            row.requests.1,
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
            "\n**Dropped iterations** {} ({}){}",
            c.values(),
            c.delta(),
            if c.regressed { " ❌" } else { "" }
        );
    }
}
