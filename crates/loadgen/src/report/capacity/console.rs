//! The capacity search on the console: one row per step as it ends, then the answer.

use super::{CapacityReport, StepReport, StepVerdict};

/// The header of the steps' table.
pub fn header() -> String {
    format!(
        "{:>4} {:>6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>8}  {}\n",
        "step", "kind", "rate", "req/s", "p50", "p95", "p99", "fail", "verdict"
    )
}

/// One step's row.
pub fn row(step: &StepReport) -> String {
    let verdict = match step.verdict {
        StepVerdict::Held => "held".to_owned(),
        StepVerdict::Broke => format!("BROKE: {}", step.missed.join("; ")),
        StepVerdict::Void => format!(
            "VOID (the generator): {}",
            step.void_because.as_deref().unwrap_or("")
        ),
    };
    format!(
        "{:>4} {:>6} {:>10} {:>10.1} {:>9} {:>9} {:>9} {:>7.2}%  {verdict}{}\n",
        step.number,
        step.kind.label(),
        step.rate.per_sec_text(),
        step.throughput_rps,
        crate::targets::ms(step.p50_ms),
        crate::targets::ms(step.p95_ms),
        crate::targets::ms(step.p99_ms),
        step.failure_pct,
        if step.interrupted {
            " (interrupted)"
        } else {
            ""
        }
    )
}

/// The summary at the end: the steps sorted by rate, then the answer and the knee.
pub fn summary(report: &CapacityReport) -> String {
    let mut text = String::from("\nCapacity search: steps by rate\n");
    text.push_str(&header());
    let mut steps: Vec<&StepReport> = report.steps.iter().collect();
    steps.sort_by_key(|s| (s.rate, s.number));
    for step in steps {
        text.push_str(&row(step));
    }
    text.push('\n');
    text.push_str(&report.headline());
    text.push('\n');
    if let Some(cause) = report.knee.as_ref().and_then(|k| k.cause.as_ref()) {
        text.push_str(&format!("What to do: {}\n", cause.action));
    }
    if let Some(met) = report.requirement_met()
        && let Some(required) = report.plan.require
    {
        text.push_str(&format!(
            "Required capacity {required}: {}\n",
            if met { "met" } else { "NOT met" }
        ));
    }
    text
}
