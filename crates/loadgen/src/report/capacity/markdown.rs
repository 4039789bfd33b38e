//! The capacity search as GitHub-flavoured Markdown, for `$GITHUB_STEP_SUMMARY` or a
//! merge-request comment: the verdict and the capacity in the title, the answer, the
//! requirement and the baseline, the steps in rate order, the knee (its cause, what to do, what
//! grew) and the rate limit met on the way.

use std::fmt::Write;

use super::baseline::{CapacityComparison, CapacityVerdict};
use super::html::why;
use super::{CapacityReport, StepReport, StepVerdict};
use crate::targets::ms;

/// Text safe in a table cell: pipes escaped, one line.
fn cell(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// The Markdown summary of `report`.
pub fn render(report: &CapacityReport) -> String {
    let mut out = String::new();
    let comparison = CapacityComparison::of(report);
    let failed = report.requirement_met() == Some(false)
        || comparison.as_ref().is_some_and(CapacityComparison::fell);
    let _ = writeln!(
        out,
        "## {} loadgen capacity: {}\n",
        if failed { "❌" } else { "✅" },
        report.answer.held().map_or_else(
            || "no rate held".to_owned(),
            |h| format!("{} held", h.per_sec_text())
        ),
    );
    let _ = writeln!(out, "{}\n", report.headline().replace('\n', " "));
    let plan = &report.plan;
    let _ = writeln!(
        out,
        "**Host** `{}` · **Objective** {} · **Steps** {} from {} by {} up to {}, {} each ({} settling){}\n",
        report.host.replace('`', ""),
        plan.slo,
        report.steps.len(),
        plan.start,
        plan.step,
        plan.ceiling,
        humantime::format_duration(plan.step_time),
        humantime::format_duration(plan.settle),
        if report.interrupted {
            " · **Stopped** by a signal: only the steps done"
        } else {
            ""
        }
    );
    if let (Some(met), Some(required)) = (report.requirement_met(), plan.require) {
        let _ = writeln!(
            out,
            "{} **Required capacity** {required}: {}\n",
            if met { "✅" } else { "❌" },
            if met { "met" } else { "NOT met" }
        );
    }
    if let Some(comparison) = &comparison {
        let mark = match comparison.verdict {
            CapacityVerdict::Fell => "❌",
            CapacityVerdict::Kept => "✅",
            CapacityVerdict::Unknown(_) => "⚪",
        };
        let _ = writeln!(out, "{mark} {}\n", comparison.sentence().replace('`', ""));
    }
    steps_table(&mut out, report);
    knee_section(&mut out, report);
    if let Some(rate) = report
        .rate_limit_from
        .map(crate::arrival::Rate::per_sec_text)
    {
        let _ = writeln!(
            out,
            "\n### Rate limit\n\nThe API answered 429 Too Many Requests from {rate}: that is its \
             rate limit, not the stack's capacity. Lift it for the search (e.g. \
             `RATE_LIMIT_PER_MINUTE=0`) to measure the stack."
        );
    }
    out
}

/// One row per step, in rate order.
fn steps_table(out: &mut String, report: &CapacityReport) {
    out.push_str(
        "### Steps, by rate\n\n| Step | Kind | Rate | Throughput req/s | p50 | p95 | p99 | Failures | Dropped | 429s | Verdict |\n|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    let mut steps: Vec<&StepReport> = report.steps.iter().collect();
    steps.sort_by_key(|s| (s.rate, s.number));
    for step in steps {
        let verdict = match step.verdict {
            StepVerdict::Held => "✅ held".to_owned(),
            StepVerdict::Broke => format!("❌ broke: {}", cell(&why(step))),
            StepVerdict::Void => format!("⚪ void (the generator): {}", cell(&why(step))),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {} | {} | {} | {:.2}% | {} | {} | {verdict} |",
            step.number,
            step.kind.label(),
            step.rate.per_sec_text(),
            step.throughput_rps,
            ms(step.p50_ms),
            ms(step.p95_ms),
            ms(step.p99_ms),
            step.failure_pct,
            step.dropped,
            step.rate_limited,
        );
    }
}

/// The knee: what broke first, what to do, what grew.
fn knee_section(out: &mut String, report: &CapacityReport) {
    let (Some(knee), Some((held, broke))) = (&report.knee, report.knee_rates()) else {
        return;
    };
    let _ = writeln!(out, "\n### At the knee: {held} held, {broke} broke\n");
    match &knee.cause {
        Some(cause) => crate::report::markdown::finding_item(out, "", "", cause),
        None => out.push_str("No finding names a cause: the figures below are what changed.\n"),
    }
    if !knee.changes.is_empty() {
        out.push_str("\nWhat grew from the rate that held to the one that broke:\n\n");
        for change in &knee.changes {
            let _ = writeln!(out, "- {}", change.describe());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrival::Rate;
    use crate::report::capacity::baseline::tests::baseline_of;
    use crate::report::capacity::testing::searched;

    #[test]
    fn the_summary_has_the_answer_the_steps_by_rate_and_the_knee() {
        let mut report = searched();
        report.plan.require = Some(Rate::per_second(40));
        let md = render(&report);
        assert!(
            md.starts_with("## ✅ loadgen capacity: 50/s held\n"),
            "{md}"
        );
        assert!(
            md.contains("Capacity about 50/s (p95 < 500 ms, failures < 1%)"),
            "{md}"
        );
        assert!(md.contains("✅ **Required capacity** 40/s: met"), "{md}");
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| ") && l[2..].starts_with(|c: char| c.is_ascii_digit()))
            .collect();
        assert_eq!(
            rows,
            [
                "| 1 | climb | 10/s | 10.0 | 20 ms | 40 ms | 60 ms | 0.00% | 0 | 0 | ✅ held |",
                "| 2 | climb | 20/s | 20.0 | 22 ms | 45 ms | 70 ms | 0.00% | 0 | 0 | ✅ held |",
                "| 3 | climb | 40/s | 39.8 | 30 ms | 120 ms | 200 ms | 0.00% | 0 | 0 | ✅ held |",
                "| 6 | narrow | 50/s | 49.5 | 60 ms | 300 ms | 420 ms | 0.00% | 0 | 0 | ✅ held |",
                "| 5 | narrow | 60/s | 45.0 | 400 ms | 800 ms | 1100 ms | 0.00% | 0 | 0 | ❌ broke: p95 800 ms, not < 500 ms |",
                "| 4 | climb | 80/s | 44.0 | 900 ms | 1900 ms | 2500 ms | 0.00% | 0 | 0 | ❌ broke: p95 1900 ms, not < 500 ms |",
            ],
            "{md}"
        );
        assert!(
            md.contains("### At the knee: 50/s held, 60/s broke"),
            "{md}"
        );
        assert!(
            md.contains("- **[CRITICAL] Requests wait for the database pool**"),
            "{md}"
        );
        assert!(md.contains("Action: Raise the pool (DB_POOL_SIZE)"), "{md}");
        assert!(md.contains("\n- p95 300 ms → 800 ms\n"), "{md}");
    }

    #[test]
    fn a_fall_or_a_missed_requirement_is_the_title_s_cross() {
        let mut report = searched();
        report.plan.baseline = Some(baseline_of(Some(100)));
        let md = render(&report);
        assert!(md.starts_with("## ❌"), "{md}");
        assert!(md.contains("❌ Capacity FELL against the baseline"), "{md}");
        report.plan.baseline = None;
        report.plan.require = Some(Rate::per_second(55));
        let md = render(&report);
        assert!(
            md.contains("❌ **Required capacity** 55/s: NOT met"),
            "{md}"
        );
        report.rate_limit_from = Some(Rate::per_second(60));
        assert!(render(&report).contains("### Rate limit"));
    }
}
