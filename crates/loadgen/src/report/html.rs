//! The HTML report: one self-contained file (inline SVG charts, no script, no CDN) with the
//! findings at the top, the load's charts, and under them, on the same time axis, the backend's:
//! container CPU and memory, PostgreSQL backends by state, Redis clients and queue lengths, the
//! host; then the tables, the jobs and the failures.

use super::markup::escape;
use std::collections::BTreeMap;
use std::fmt::Write;

use monitor::sample::Values;

use super::charts::{Series, line_chart};
use super::{PERCENTILES, Report, Row};

fn table(out: &mut String, rows: &[Row], total: &Row) {
    out.push_str("<table><tr><th>Type</th><th>Name</th><th># reqs</th><th># fails</th><th>Avg ms</th><th>Min</th><th>Max</th>");
    for p in PERCENTILES {
        let _ = write!(out, "<th>{p}%</th>");
    }
    out.push_str(
        "<th>req/s</th><th>retries</th><th>timeouts</th><th>in flight at stop</th></tr>\n",
    );
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
        let _ = writeln!(
            out,
            "<td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row.rps,
            row.retries,
            row.timed_out,
            row.in_flight_at_stop.map_or(0, |u| u.requests)
        );
    }
    out.push_str("</table>\n");
}

/// The page.
pub fn render(report: &Report) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>loadgen report</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:nth-child(2),th:nth-child(2){text-align:left}.fail{color:#b00}.pass{color:#070}.chart{margin:8px 0}</style></head><body>\n",
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
        report
            .interruption
            .as_ref()
            .map_or_else(String::new, |i| format!(
                " (stopped by {})",
                escape(&i.describe())
            ))
    );
    out.push_str("<h2>Is this run valid?</h2><ul>\n");
    if report.analysis.validity.is_empty() {
        let _ = writeln!(out, "<li>{}</li>", escape(super::VALID_RUN));
    }
    for f in &report.analysis.validity {
        let _ = writeln!(
            out,
            "<li><b>[{}] {}</b><br>Evidence: {}<br>Action: {}</li>",
            f.severity,
            escape(&f.title),
            escape(&f.evidence),
            escape(&f.action)
        );
    }
    out.push_str("</ul><h2>Findings</h2>\n");
    let findings = &report.analysis.findings;
    for (number, f) in crate::diagnosis::numbers(findings).iter().zip(findings) {
        // Symptoms indented under their cause.
        let depth = number.matches('.').count();
        let _ = writeln!(
            out,
            "<p style=\"margin-left:{}em\"><b>{number}. [{}] {}</b><br>Evidence: {}<br>Action: {}</p>",
            depth * 2,
            f.severity,
            escape(&f.title),
            escape(&f.evidence),
            escape(&f.action)
        );
    }
    out.push_str("<h2>Targets</h2><ul>\n");
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
    out.push_str("</ul>\n");
    charts(&mut out, report);
    out.push_str("<h2>Steady state</h2>\n");
    table(&mut out, &report.steady, &report.steady_total);
    if !report.startup.is_empty() {
        out.push_str("<h2>Start-up requests</h2>\n");
        table(&mut out, &report.startup, &report.startup_total);
    }
    if !report.polls.is_empty() {
        out.push_str("<h2>Job polls</h2>\n");
        table(&mut out, &report.polls, &report.polls_total);
    }
    if !report.jobs.is_empty() {
        out.push_str("<h2>Jobs</h2><table><tr><th>Job</th><th>completed</th><th>failed</th><th>unfinished</th><th>unknown</th><th>not followed</th><th>p50 s</th><th>p95 s</th></tr>\n");
        for j in &report.jobs {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>",
                escape(&j.job),
                j.completed,
                j.failed,
                j.unfinished,
                j.unknown,
                j.unfollowed,
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

/// Named series keyed by label, built from the backend's ticks.
type Lines = BTreeMap<String, Vec<(f64, f64)>>;

fn series(lines: Lines) -> Vec<Series> {
    lines
        .into_iter()
        .map(|(label, points)| Series { label, points })
        .collect()
}

/// The charts alone (the web UI's Charts tab draws the same ones as the report).
pub fn charts_section(report: &Report) -> String {
    let mut out = String::new();
    charts(&mut out, report);
    out
}

fn charts(out: &mut String, report: &Report) {
    let h = &report.history;
    let x_max = report.duration_secs.ceil();
    let at = |secs: u64| secs as f64;
    let pick = |f: &dyn Fn(&super::HistoryPoint) -> f64| -> Vec<(f64, f64)> {
        h.iter().map(|p| (at(p.at_secs), f(p))).collect()
    };
    let chart = |out: &mut String, title: &str, unit: &str, lines: Vec<Series>| {
        if lines.iter().any(|s| !s.points.is_empty()) {
            let _ = writeln!(
                out,
                "<div class=\"chart\" data-title=\"{}\">{}</div>",
                escape(title),
                line_chart(title, unit, x_max, &lines)
            );
        }
    };
    out.push_str("<h2>Load</h2>\n");
    chart(
        out,
        "Requests and failures per second",
        "per second",
        vec![
            Series {
                label: "requests/s".into(),
                points: pick(&|p| p.requests as f64),
            },
            Series {
                label: "failures/s".into(),
                points: pick(&|p| p.failures as f64),
            },
        ],
    );
    chart(
        out,
        "Response time percentiles",
        "ms",
        vec![
            Series {
                label: "p50".into(),
                points: pick(&|p| p.percentiles_ms[0]),
            },
            Series {
                label: "p95".into(),
                points: pick(&|p| p.percentiles_ms[5]),
            },
            Series {
                label: "p99".into(),
                points: pick(&|p| p.percentiles_ms[7]),
            },
        ],
    );
    chart(
        out,
        "Users",
        "users",
        vec![Series {
            label: "users".into(),
            points: pick(&|p| p.users as f64),
        }],
    );
    chart(
        out,
        "loadgen itself",
        "% of a core / ms",
        vec![
            Series {
                label: "CPU %".into(),
                points: pick(&|p| p.loadgen_cpu_pct),
            },
            Series {
                label: "timer lag ms".into(),
                points: pick(&|p| p.timer_lag_ms),
            },
        ],
    );

    if report.backend.is_empty() {
        return;
    }
    let (mut cpu, mut memory, mut postgres, mut redis, mut host) = (
        Lines::new(),
        Lines::new(),
        Lines::new(),
        Lines::new(),
        Lines::new(),
    );
    for tick in &report.backend {
        let x =
            (tick.timestamp.timestamp_millis() as f64 / 1000.0 - report.started_at as f64).max(0.0);
        for reading in tick.sources.values() {
            match &reading.values {
                Some(Values::Docker(d)) => {
                    for (name, c) in &d.containers {
                        cpu.entry(name.clone()).or_default().push((x, c.cpu_pct));
                        memory
                            .entry(name.clone())
                            .or_default()
                            .push((x, c.memory_bytes as f64 / 1e6));
                    }
                }
                Some(Values::Postgres(p)) => {
                    for (label, value) in [
                        ("active", p.active),
                        ("idle", p.idle),
                        ("idle in transaction", p.idle_in_transaction),
                        ("blocked", p.blocked),
                    ] {
                        postgres
                            .entry(label.into())
                            .or_default()
                            .push((x, value as f64));
                    }
                }
                Some(Values::Redis(r)) => {
                    redis
                        .entry("clients".into())
                        .or_default()
                        .push((x, r.connected_clients as f64));
                    redis
                        .entry("blocked clients".into())
                        .or_default()
                        .push((x, r.blocked_clients as f64));
                    for (list, length) in &r.lists {
                        redis
                            .entry(format!("queue {list}"))
                            .or_default()
                            .push((x, *length as f64));
                    }
                }
                Some(Values::Host(v)) => {
                    host.entry("CPU %".into()).or_default().push((x, v.cpu_pct));
                    host.entry("memory %".into())
                        .or_default()
                        .push((x, v.memory_pct));
                }
                None => {}
            }
        }
    }
    out.push_str("<h2>Backend (same time axis)</h2>\n");
    chart(out, "Container CPU", "% of a core", series(cpu));
    chart(out, "Container memory", "MB", series(memory));
    chart(out, "PostgreSQL backends", "backends", series(postgres));
    chart(out, "Redis clients and queues", "count", series(redis));
    chart(out, "Host", "%", series(host));
}
