//! A first, plain HTML report: one self-contained file with the summary, the tables, the jobs,
//! the failures and the findings. The charted report comes with the diagnosis work (issue #5).

use std::fmt::Write;

use super::{PERCENTILES, Report, Row};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn table(out: &mut String, rows: &[Row], total: &Row) {
    out.push_str("<table><tr><th>Type</th><th>Name</th><th># reqs</th><th># fails</th><th>Avg ms</th><th>Min</th><th>Max</th>");
    for p in PERCENTILES {
        let _ = write!(out, "<th>{p}%</th>");
    }
    out.push_str("<th>req/s</th></tr>\n");
    for row in rows.iter().chain(std::iter::once(total)) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td>",
            escape(&row.method),
            escape(&row.name),
            row.requests,
            row.failures,
            row.average_ms,
            row.min_ms,
            row.max_ms
        );
        for p in &row.percentiles_ms {
            let _ = write!(out, "<td>{p:.0}</td>");
        }
        let _ = writeln!(out, "<td>{:.2}</td></tr>", row.rps);
    }
    out.push_str("</table>\n");
}

/// The page.
pub fn render(report: &Report) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>loadgen report</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:nth-child(2),th:nth-child(2){text-align:left}.fail{color:#b00}.pass{color:#070}</style></head><body>\n",
    );
    let _ = writeln!(out, "<h1>Load test of {}</h1>", escape(&report.host));
    let _ = writeln!(
        out,
        "<p>{:.0} s, {} users at peak, {} steady-state requests, {:.2} req/s, run {}{}</p>",
        report.duration_secs,
        report.peak_users,
        report.steady_total.requests,
        report.steady_total.rps,
        escape(&report.run_id),
        if report.interrupted {
            " (stopped with Ctrl-C)"
        } else {
            ""
        }
    );
    out.push_str("<h2>Findings</h2><ol>\n");
    for f in &report.analysis.findings {
        let _ = writeln!(
            out,
            "<li><b>[{}] {}</b><br>Evidence: {}<br>Action: {}</li>",
            f.severity,
            escape(&f.title),
            escape(&f.evidence),
            escape(&f.action)
        );
    }
    out.push_str("</ol><h2>Targets</h2><ul>\n");
    for v in &report.analysis.verdicts {
        let class = if v.met { "pass" } else { "fail" };
        let _ = writeln!(
            out,
            "<li class=\"{class}\">{}: {} (target {})</li>",
            escape(&v.name),
            escape(&v.measured),
            escape(&v.threshold)
        );
    }
    out.push_str("</ul><h2>Steady state</h2>\n");
    table(&mut out, &report.steady, &report.steady_total);
    if !report.startup.is_empty() {
        out.push_str("<h2>Start-up requests</h2>\n");
        table(&mut out, &report.startup, &report.startup_total);
    }
    if !report.jobs.is_empty() {
        out.push_str("<h2>Jobs</h2><table><tr><th>Job</th><th>completed</th><th>failed</th><th>unfinished</th><th>p50 s</th><th>p95 s</th></tr>\n");
        for j in &report.jobs {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                escape(&j.job),
                j.completed,
                j.failed,
                j.unfinished,
                j.completion_secs.get("p50").copied().unwrap_or(0.0),
                j.completion_secs.get("p95").copied().unwrap_or(0.0)
            );
        }
        out.push_str("</table>\n");
    }
    if !report.failures.is_empty() {
        out.push_str("<h2>Failures</h2><table><tr><th>Method</th><th>Name</th><th>Error</th><th>Occurrences</th></tr>\n");
        for f in &report.failures {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&f.method),
                escape(&f.name),
                escape(&f.error),
                f.occurrences
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}
