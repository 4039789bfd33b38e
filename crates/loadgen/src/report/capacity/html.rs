//! The capacity search as one self-contained HTML page (inline SVG, no script, no CDN): the
//! answer first, the requirement and the baseline's verdict, the latency–throughput curve with
//! the knee marked and throughput against the rate asked, what broke at the knee and what
//! changed there, then every step in a table.

use std::fmt::Write;

use super::baseline::{CapacityComparison, CapacityVerdict};
use super::{CapacityReport, StepReport, StepVerdict};
use crate::report::markup::escape;
use crate::targets::ms;

// The charts live beside the page so that the web UI can draw the same ones.
pub use super::charts::{latency_throughput, throughput_against_rate};

/// The page.
pub fn render(report: &CapacityReport) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>loadgen capacity report</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:last-child,th:last-child{text-align:left}.fail{color:#b00}.pass{color:#070}.void{color:#888}.answer{font-size:1.15em}.chart{margin:8px 0}</style></head><body>\n",
    );
    heading(&mut out, report);
    verdicts(&mut out, report);
    out.push_str("<h2>The curve</h2>\n");
    let _ = writeln!(
        out,
        "<div class=\"chart\" data-title=\"latency-throughput\">{}</div>\n<div class=\"chart\" data-title=\"throughput-rate\">{}</div>",
        latency_throughput(report),
        throughput_against_rate(report)
    );
    knee(&mut out, report);
    steps_table(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

/// The title, the answer, and the plan in a line.
fn heading(out: &mut String, report: &CapacityReport) {
    let plan = &report.plan;
    let _ = writeln!(out, "<h1>Capacity of {}</h1>", escape(&report.host));
    let _ = writeln!(
        out,
        "<p class=\"answer\"><b>{}</b></p>",
        escape(&report.headline())
    );
    let started = chrono::DateTime::from_timestamp(report.started_at as i64, 0)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
    let _ = writeln!(
        out,
        "<p>Objective: {}. From {} by {} up to {}, {} a step ({} settling, not judged); {} steps from {started}{}.</p>",
        escape(&plan.slo.to_string()),
        plan.start,
        plan.step,
        plan.ceiling,
        humantime::format_duration(plan.step_time),
        humantime::format_duration(plan.settle),
        report.steps.len(),
        if report.interrupted {
            "; <b>stopped by a signal</b>: only the steps done are reported"
        } else {
            ""
        }
    );
}

/// The requirement (`--require`) and the comparison with the baseline, each passed or failed.
fn verdicts(out: &mut String, report: &CapacityReport) {
    if let (Some(met), Some(required)) = (report.requirement_met(), report.plan.require) {
        let _ = writeln!(
            out,
            "<p class=\"{}\"><b>Required capacity {required}: {}</b></p>",
            if met { "pass" } else { "fail" },
            if met { "met" } else { "NOT met" }
        );
    }
    if let Some(comparison) = CapacityComparison::of(report) {
        let class = match comparison.verdict {
            CapacityVerdict::Fell => "fail",
            CapacityVerdict::Kept => "pass",
            CapacityVerdict::Unknown(_) => "void",
        };
        let _ = writeln!(
            out,
            "<h2>Compared with the baseline</h2>\n<p class=\"{class}\"><b>{}</b></p>",
            escape(&comparison.sentence())
        );
    }
}

/// What broke first at the knee, what to do, and the figures that grew there; the rate limit.
fn knee(out: &mut String, report: &CapacityReport) {
    if let (Some(knee), Some((held, broke))) = (&report.knee, report.knee_rates()) {
        let _ = writeln!(out, "<h2>At the knee: {held} held, {broke} broke</h2>");
        match &knee.cause {
            Some(cause) => {
                let _ = writeln!(out, "<p>{}</p>", crate::report::html::finding_html(cause));
            }
            None => out
                .push_str("<p>No finding names a cause: the figures below are what changed.</p>\n"),
        }
        if !knee.changes.is_empty() {
            out.push_str("<p>What grew from the rate that held to the one that broke:</p><ul>\n");
            for change in &knee.changes {
                let _ = writeln!(out, "<li>{}</li>", escape(&change.describe()));
            }
            out.push_str("</ul>\n");
        }
    }
    if let Some(rate) = report
        .rate_limit_from
        .map(crate::arrival::Rate::per_sec_text)
    {
        let _ = writeln!(
            out,
            "<h2>Rate limit</h2>\n<p>The API answered 429 Too Many Requests from {rate}: that is its rate limit, not the stack's capacity. Lift it for the search (e.g. RATE_LIMIT_PER_MINUTE=0) to measure the stack.</p>"
        );
    }
}

/// Why a step got its verdict.
pub(crate) fn why(step: &StepReport) -> String {
    let why = match step.verdict {
        StepVerdict::Held => String::new(),
        StepVerdict::Broke => step.missed.join("; "),
        StepVerdict::Void => step.void_because.clone().unwrap_or_default(),
    };
    if step.interrupted {
        format!("{why} (interrupted: not judged)")
    } else {
        why
    }
}

/// Every step in rate order, as the curve draws them.
fn steps_table(out: &mut String, report: &CapacityReport) {
    out.push_str("<h2>Steps, by rate</h2>\n<table><tr><th>Step</th><th>Kind</th><th>Rate</th><th>Throughput req/s</th><th>p50</th><th>p95</th><th>p99</th><th>Failures</th><th>Dropped</th><th>429s</th><th>Verdict</th></tr>\n");
    let mut steps: Vec<&StepReport> = report.steps.iter().collect();
    steps.sort_by_key(|s| (s.rate, s.number));
    for step in steps {
        let (class, verdict) = match step.verdict {
            StepVerdict::Held => ("pass", "held"),
            StepVerdict::Broke => ("fail", "broke"),
            StepVerdict::Void => ("void", "void (the generator)"),
        };
        let _ = writeln!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({:.2}%)</td><td>{}</td><td>{}</td><td><b>{verdict}</b> {}</td></tr>",
            step.number,
            step.kind.label(),
            step.rate.per_sec_text(),
            step.throughput_rps,
            ms(step.p50_ms),
            ms(step.p95_ms),
            ms(step.p99_ms),
            step.failures,
            step.failure_pct,
            step.dropped,
            step.rate_limited,
            escape(&why(step))
        );
    }
    out.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::capacity::baseline::tests::baseline_of;
    use crate::report::capacity::testing::searched;

    #[test]
    fn the_page_gives_the_answer_the_curve_the_knee_and_every_step() {
        let mut report = searched();
        report.plan.require = Some(crate::arrival::Rate::per_second(80));
        report.plan.baseline = Some(baseline_of(Some(100)));
        report.rate_limit_from = Some(crate::arrival::Rate::per_second(80));
        let page = render(&report);
        for text in [
            "<h1>Capacity of http://127.0.0.1:8080</h1>",
            "Capacity about 50/s (p95 &lt; 500 ms, failures &lt; 1%)",
            "<p class=\"fail\"><b>Required capacity 80/s: NOT met</b></p>",
            "Capacity FELL against the baseline (before.json",
            "last held 50/s",
            "first broke 60/s",
            "Throughput against the rate asked",
            "<h2>At the knee: 50/s held, 60/s broke</h2>",
            "[CRITICAL] Requests wait for the database pool",
            "Evidence: 10 of 10 connections busy for 14 of 15 s",
            "Action: Raise the pool (DB_POOL_SIZE)",
            "<li>p95 300 ms → 800 ms</li>",
            "answered 429 Too Many Requests from 80/s",
        ] {
            assert!(page.contains(text), "{text:?} is not on the page: {page}");
        }
        // Six steps, in rate order: 10, 20, 40, 50, 60, 80.
        let rows: Vec<&str> = page
            .lines()
            .filter(|l| l.starts_with("<tr class="))
            .collect();
        assert_eq!(rows.len(), 6, "{rows:#?}");
        assert!(
            rows[3].contains("<td>50/s</td>") && rows[3].contains("held"),
            "{rows:#?}"
        );
        assert!(
            rows[5].contains("<td>80/s</td>") && rows[5].contains("p95 1900 ms, not &lt; 500 ms"),
            "{rows:#?}"
        );
        assert!(page.trim_end().ends_with("</html>"));
    }
}
