//! The HTML report: one self-contained file (inline SVG charts, no script, no CDN) with the
//! findings at the top, the load's charts, and under them, on the same time axis, the backend's:
//! container CPU and memory, PostgreSQL backends by state, Redis clients and queue lengths, the
//! host; then the tables, the jobs and the failures.

use super::markup::escape;
use std::collections::BTreeMap;
use std::fmt::Write;

use monitor::sample::Values;

use super::charts::{Series, line_chart};
use super::{Analysis, FailureRow, HistoryPoint, JobRow, P50, P95, P99, PERCENTILES, Report, Row};
use crate::targets::ms;

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

/// The page: the judgement first (validity, findings, targets), then the charts and tables.
pub fn render(report: &Report) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>loadgen report</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:nth-child(2),th:nth-child(2){text-align:left}.fail{color:#b00}.pass{color:#070}.chart{margin:8px 0}</style></head><body>\n",
    );
    heading(&mut out, report);
    validity_list(&mut out, &report.analysis);
    findings_list(&mut out, &report.analysis);
    targets_list(&mut out, &report.analysis);
    charts(&mut out, report);
    flame_graphs(&mut out, report);
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
    jobs_table(&mut out, &report.jobs);
    failures_table(&mut out, &report.failures);
    super::statements::html(&mut out, &report.backend);
    out.push_str("</body></html>\n");
    out
}

/// The title and the run in one line: length, users, requests, who stopped it.
fn heading(out: &mut String, report: &Report) {
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
    if let Some(open) = &report.open_model {
        // The response time runs from the scheduled instant, the service time from the send.
        let _ = writeln!(
            out,
            "<p>Open model at {}</p>\n<p>Response time: median {}, p95 {}, p99 {}; service time: {}</p>",
            escape(&open.line()),
            ms(report.steady_total.median_ms),
            ms(report.steady_total.p(P95)),
            ms(report.steady_total.p(P99)),
            report.service_time.line()
        );
    }
}

/// One finding's title, evidence and action, escaped.
pub(crate) fn finding_html(f: &crate::diagnosis::Finding) -> String {
    format!(
        "<b>[{}] {}</b><br>Evidence: {}<br>Action: {}",
        f.severity,
        escape(&f.title),
        escape(&f.evidence),
        escape(&f.action)
    )
}

/// "Is this run valid?": what could have disturbed the figures.
fn validity_list(out: &mut String, analysis: &Analysis) {
    out.push_str("<h2>Is this run valid?</h2><ul>\n");
    if analysis.validity.is_empty() {
        let _ = writeln!(out, "<li>{}</li>", escape(super::VALID_RUN));
    }
    for f in &analysis.validity {
        let _ = writeln!(out, "<li>{}</li>", finding_html(f));
    }
    out.push_str("</ul>");
}

/// The findings, each symptom indented under its cause.
fn findings_list(out: &mut String, analysis: &Analysis) {
    out.push_str("<h2>Findings</h2>\n");
    let findings = &analysis.findings;
    for (number, f) in crate::diagnosis::numbers(findings).iter().zip(findings) {
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
}

/// Each target, met or missed.
fn targets_list(out: &mut String, analysis: &Analysis) {
    out.push_str("<h2>Targets</h2><ul>\n");
    for v in &analysis.verdicts {
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
}

/// The followed jobs of each kind: how they ended, how long they took.
fn jobs_table(out: &mut String, jobs: &[JobRow]) {
    if jobs.is_empty() {
        return;
    }
    out.push_str("<h2>Jobs</h2><table><tr><th>Job</th><th>completed</th><th>failed</th><th>unfinished</th><th>unknown</th><th>not followed</th><th>p50 s</th><th>p95 s</th></tr>\n");
    for j in jobs {
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

/// Each kind of failure and how often it happened.
fn failures_table(out: &mut String, failures: &[FailureRow]) {
    if failures.is_empty() {
        return;
    }
    out.push_str("<h2>Failures</h2><table><tr><th>Method</th><th>Name</th><th>Error</th><th>Occurrences</th></tr>\n");
    for f in failures {
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

/// Named series keyed by label, built from the backend's ticks.
type Lines = BTreeMap<String, Vec<(f64, f64)>>;

fn series(lines: Lines) -> Vec<Series> {
    lines
        .into_iter()
        .map(|(label, points)| Series { label, points })
        .collect()
}

/// The charts alone (the web UI's Charts tab draws the same ones as the report), with a link
/// to each profiled process's flame graph (served at `api/profiles/{pid}/flamegraph.svg`).
pub fn charts_section(report: &Report) -> String {
    let mut out = String::new();
    charts(&mut out, report);
    let drawn: Vec<_> = report
        .analysis
        .profiles
        .iter()
        .filter(|p| !super::flamegraph::collapsed(p).is_empty())
        .collect();
    if !drawn.is_empty() {
        out.push_str("<h2>Flame graphs (the whole run)</h2>\n<ul>\n");
        for p in drawn {
            let _ = writeln!(
                out,
                "<li><a href=\"api/profiles/{pid}/flamegraph.svg\" target=\"_blank\">{} \
                 (pid {pid}, {} samples)</a></li>",
                escape(&p.name),
                p.samples,
                pid = p.pid,
            );
        }
        out.push_str("</ul>\n");
    }
    out
}

/// Each profiled process's flame graph, in a frame of its own: inferno's SVG carries its own
/// script (zoom, search) and ids, which two graphs inlined in one page would share.
fn flame_graphs(out: &mut String, report: &Report) {
    use base64::Engine;
    let graphs: Vec<(&monitor::sample::profile::ProcessProfile, String)> = report
        .analysis
        .profiles
        .iter()
        .filter_map(|p| Some((p, super::flamegraph::svg(p)?)))
        .collect();
    if graphs.is_empty() {
        return;
    }
    out.push_str("<h2>Flame graphs (the whole run)</h2>\n");
    for (p, svg) in graphs {
        let height = svg
            .split("height=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|h| h.parse::<u32>().ok())
            .unwrap_or(400);
        let _ = writeln!(
            out,
            "<h3>{} (pid {}{}), {} samples</h3>\n<iframe class=\"flamegraph\" \
             style=\"width:100%;border:0\" height=\"{}\" \
             src=\"data:image/svg+xml;base64,{}\"></iframe>",
            escape(&p.name),
            p.pid,
            p.container
                .as_deref()
                .map(|c| format!(", container {}", escape(c)))
                .unwrap_or_default(),
            p.samples,
            height + 10,
            base64::engine::general_purpose::STANDARD.encode(svg)
        );
    }
}

/// The load's charts, then the backend's on the same time axis.
fn charts(out: &mut String, report: &Report) {
    let x_max = report.duration_secs.ceil();
    load_charts(out, &report.history, x_max);
    if report.backend.is_empty() {
        return;
    }
    let lines = BackendLines::of(report);
    out.push_str("<h2>Backend (same time axis)</h2>\n");
    chart(
        out,
        x_max,
        "Container CPU",
        "% of a core",
        series(lines.cpu),
    );
    chart(out, x_max, "Container memory", "MB", series(lines.memory));
    chart(
        out,
        x_max,
        "PostgreSQL backends",
        "backends",
        series(lines.postgres),
    );
    chart(
        out,
        x_max,
        "Redis clients and queues",
        "count",
        series(lines.redis),
    );
    chart(out, x_max, "Host", "%", series(lines.host));
}

/// One chart up to `x_max` seconds, left out when none of its lines has a point.
fn chart(out: &mut String, x_max: f64, title: &str, unit: &str, lines: Vec<Series>) {
    if lines.iter().any(|s| !s.points.is_empty()) {
        let _ = writeln!(
            out,
            "<div class=\"chart\" data-title=\"{}\">{}</div>",
            escape(title),
            line_chart(title, unit, x_max, &lines)
        );
    }
}

/// The load's charts, from the run's seconds: requests, response times, users, loadgen itself.
fn load_charts(out: &mut String, history: &[HistoryPoint], x_max: f64) {
    let line = |label: &str, figure: &dyn Fn(&HistoryPoint) -> f64| Series {
        label: label.into(),
        points: history
            .iter()
            .map(|p| (p.at_secs as f64, figure(p)))
            .collect(),
    };
    out.push_str("<h2>Load</h2>\n");
    chart(
        out,
        x_max,
        "Requests and failures per second",
        "per second",
        vec![
            line("requests/s", &|p| p.requests as f64),
            line("failures/s", &|p| p.failures as f64),
        ],
    );
    chart(
        out,
        x_max,
        "Response time percentiles",
        "ms",
        vec![
            line("p50", &|p| p.p(P50)),
            line("p95", &|p| p.p(P95)),
            line("p99", &|p| p.p(P99)),
        ],
    );
    chart(
        out,
        x_max,
        "Users",
        "users",
        vec![line("users", &|p| p.users as f64)],
    );
    chart(
        out,
        x_max,
        "loadgen itself",
        "% of a core / ms",
        vec![
            line("CPU %", &|p| p.loadgen_cpu_pct),
            line("timer lag ms", &|p| p.timer_lag_ms),
        ],
    );
}

/// The backend's lines, one set per chart, in seconds since the run's start.
#[derive(Default)]
struct BackendLines {
    cpu: Lines,
    memory: Lines,
    postgres: Lines,
    redis: Lines,
    host: Lines,
}

impl BackendLines {
    /// Every reading of every tick of `report`'s backend.
    fn of(report: &Report) -> Self {
        let mut lines = Self::default();
        for tick in &report.backend {
            let x = (tick.timestamp.timestamp_millis() as f64 / 1000.0 - report.started_at as f64)
                .max(0.0);
            for reading in tick.sources.values() {
                if let Some(values) = &reading.values {
                    lines.add(x, values);
                }
            }
        }
        lines
    }

    /// One source's reading at `x` seconds.
    fn add(&mut self, x: f64, values: &Values) {
        match values {
            Values::Docker(d) => {
                for (name, c) in &d.containers {
                    self.cpu
                        .entry(name.clone())
                        .or_default()
                        .push((x, c.cpu_pct));
                    self.memory
                        .entry(name.clone())
                        .or_default()
                        .push((x, c.memory_bytes as f64 / 1e6));
                }
            }
            Values::Postgres(p) => {
                for (label, value) in [
                    ("active", p.active),
                    ("idle", p.idle),
                    ("idle in transaction", p.idle_in_transaction),
                    ("blocked", p.blocked),
                ] {
                    self.postgres
                        .entry(label.into())
                        .or_default()
                        .push((x, value as f64));
                }
            }
            Values::Redis(r) => {
                self.redis
                    .entry("clients".into())
                    .or_default()
                    .push((x, r.connected_clients as f64));
                self.redis
                    .entry("blocked clients".into())
                    .or_default()
                    .push((x, r.blocked_clients as f64));
                for (list, length) in &r.lists {
                    self.redis
                        .entry(format!("queue {list}"))
                        .or_default()
                        .push((x, *length as f64));
                }
            }
            Values::Host(v) => {
                self.host
                    .entry("CPU %".into())
                    .or_default()
                    .push((x, v.cpu_pct));
                self.host
                    .entry("memory %".into())
                    .or_default()
                    .push((x, v.memory_pct));
            }
            // Stacks are no time series: the flame graphs show them.
            Values::Profiles(_) => {}
        }
    }
}
