//! `PREFIX_capacity.csv`: one row per step, in the order run, with its verdict.

use super::{CapacityReport, StepVerdict};

/// The CSV's columns.
pub const HEADER: [&str; 18] = [
    "Step",
    "Kind",
    "Rate",
    "Rate/s",
    "Judged s",
    "Requests",
    "Failures",
    "Failure %",
    "Throughput req/s",
    "Iterations/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "Average ms",
    "Dropped",
    "429s",
    "Verdict",
    "Why",
];

/// The file's bytes.
pub fn render(report: &CapacityReport) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(HEADER)?;
    for step in &report.steps {
        let why = match step.verdict {
            StepVerdict::Void => step.void_because.clone().unwrap_or_default(),
            _ => step.missed.join("; "),
        };
        out.write_record([
            step.number.to_string(),
            step.kind.label().to_owned(),
            step.rate.to_string(),
            format!("{:.3}", step.rate_per_sec),
            format!("{:.1}", step.judged_secs),
            step.requests.to_string(),
            step.failures.to_string(),
            format!("{:.2}", step.failure_pct),
            format!("{:.2}", step.throughput_rps),
            format!("{:.2}", step.iterations_per_sec),
            format!("{:.1}", step.p50_ms),
            format!("{:.1}", step.p95_ms),
            format!("{:.1}", step.p99_ms),
            format!("{:.1}", step.avg_ms),
            step.dropped.to_string(),
            step.rate_limited.to_string(),
            format!("{:?}", step.verdict).to_lowercase(),
            why,
        ])?;
    }
    out.into_inner().map_err(|e| e.into_error().into())
}
