//! Locust's web API answers, under Locust's field names, so that scripts written for Locust's
//! web mode read ours unchanged: `GET /stats/requests`, `/exceptions`, `/tasks`, `/logs`.

use serde::Serialize;
use serde_json::{Value, json};

use crate::report::{P50, P95, P99, Percentile, Report, Row};

/// One entry of `stats`, as Locust's `StatsEntry.to_dict()`.
#[derive(Serialize)]
struct Entry<'a> {
    method: &'a str,
    name: &'a str,
    num_requests: u64,
    num_failures: u64,
    min_response_time: f64,
    max_response_time: f64,
    current_rps: f64,
    current_fail_per_sec: f64,
    avg_response_time: f64,
    median_response_time: f64,
    total_rps: f64,
    total_fail_per_sec: f64,
    #[serde(rename = "response_time_percentile_0.95")]
    p95: f64,
    #[serde(rename = "response_time_percentile_0.99")]
    p99: f64,
    avg_content_length: f64,
    /// Ours, beside Locust's: resends after a kept-alive connection closed unanswered.
    num_retries: u64,
    /// Ours: requests with no complete answer within their timeout (in `num_failures`).
    num_timeouts: u64,
}

/// Locust's "current" rate of a row: the mean of its last 10 whole seconds.
fn current(report: &Report, row: Option<(&str, &str)>) -> (f64, f64) {
    let seconds: Vec<(u64, u64)> = report
        .history
        .iter()
        .rev()
        .take(10)
        .map(|point| match row {
            None => (point.requests, point.failures),
            Some((method, name)) => point
                .endpoints
                .iter()
                .filter(|e| e.method == method && e.name == name)
                .fold((0, 0), |(r, f), e| (r + e.requests, f + e.failures)),
        })
        .collect();
    let n = seconds.len().max(1) as f64;
    let (requests, failures) = seconds
        .iter()
        .fold((0, 0), |(r, f), (pr, pf)| (r + pr, f + pf));
    (requests as f64 / n, failures as f64 / n)
}

fn entry<'a>(report: &Report, row: &'a Row, total: bool) -> Entry<'a> {
    let current = if total {
        current(report, None)
    } else {
        current(report, Some((&row.method, &row.name)))
    };
    entry_of(row, current)
}

/// A row's entry, with its current rates (requests, failures per second).
fn entry_of(row: &Row, (current_rps, current_fail_per_sec): (f64, f64)) -> Entry<'_> {
    Entry {
        method: &row.method,
        name: &row.name,
        num_requests: row.requests,
        num_failures: row.failures,
        min_response_time: row.min_ms.round(),
        max_response_time: row.max_ms.round(),
        current_rps,
        current_fail_per_sec,
        avg_response_time: row.average_ms,
        median_response_time: row.median_ms.round(),
        total_rps: row.rps,
        total_fail_per_sec: row.failures_per_sec,
        p95: row.p(P95).round(),
        p99: row.p(P99).round(),
        avg_content_length: row.average_bytes,
        num_retries: row.retries,
        num_timeouts: row.timed_out,
    }
}

/// `GET /stats/requests`.
pub fn stats_requests(report: Option<&Report>, state: &str, user_count: u64) -> Value {
    let Some(report) = report else {
        // Before the first run, as Locust's runner answers in its "ready" state: the
        // Aggregated row alone, all zeros.
        let empty = Row::live(
            "",
            "Aggregated",
            &crate::stats::EndpointStats::default(),
            1.0,
        );
        let total = serde_json::to_value(entry_of(&empty, (0.0, 0.0))).unwrap_or(Value::Null);
        return json!({
            "stats": [total],
            "errors": [],
            "current_rps": 0.0,
            "current_fail_per_sec": 0.0,
            "total_rps": 0.0,
            "total_fail_per_sec": 0.0,
            "fail_ratio": 0.0,
            "current_response_time_percentiles": {
                "response_time_percentile_0.5": 0,
                "response_time_percentile_0.95": 0,
            },
            "state": state,
            "user_count": user_count,
        });
    };
    let total = entry(report, &report.locust_total, true);
    let mut stats: Vec<Value> = report
        .locust_rows
        .iter()
        .map(|row| serde_json::to_value(entry(report, row, false)).unwrap_or(Value::Null))
        .collect();
    let errors: Vec<Value> = report
        .failures
        .iter()
        .map(|f| {
            json!({
                "method": f.method,
                "name": f.name,
                "error": f.error,
                "occurrences": f.occurrences,
                "first_seen": report.started_at as f64 + f.first_seen_secs,
                "last_seen": report.started_at as f64 + f.last_seen_secs,
            })
        })
        .collect();
    let last = report.history.last();
    // 0 before the first second's row, as Locust's before its first request.
    let percentile = |p: Percentile| last.map_or(json!(0), |h| json!(h.p(p)));
    let fail_ratio = if report.locust_total.requests == 0 {
        0.0
    } else {
        report.locust_total.failures as f64 / report.locust_total.requests as f64
    };
    let answer = json!({
        "current_rps": total.current_rps,
        "current_fail_per_sec": total.current_fail_per_sec,
        "total_rps": total.total_rps,
        "total_fail_per_sec": total.total_fail_per_sec,
        "fail_ratio": fail_ratio,
        "current_response_time_percentiles": {
            "response_time_percentile_0.5": percentile(P50),
            "response_time_percentile_0.95": percentile(P95),
        },
        "state": state,
        "user_count": user_count,
    });
    stats.push(serde_json::to_value(total).unwrap_or(Value::Null));
    let mut answer = answer;
    answer["stats"] = Value::Array(stats);
    answer["errors"] = Value::Array(errors);
    answer
}

/// `GET /exceptions`: the scenario's errors (Locust: the exceptions its tasks raised), with
/// their counts; a scenario has no Python traceback, and every error is this process's.
pub fn exceptions(report: Option<&Report>) -> Value {
    let rows: Vec<Value> = report
        .map(|r| r.exceptions.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|(message, count)| {
            json!({"count": count, "msg": message, "traceback": "", "nodes": "local"})
        })
        .collect();
    json!({ "exceptions": rows })
}

/// `GET /tasks`: Locust's task ratios of the users running (each type's share of them, and
/// each task's share of its type's iterations, and of all), all types at 0 before users run.
pub fn tasks(scenario: &crate::scenario::Scenario, users: u64) -> Value {
    let ratios = crate::report::locust_json::task_ratios(scenario, Some(users));
    json!({
        "per_class": crate::report::locust_json::ratios_json(&ratios, false),
        "total": crate::report::locust_json::ratios_json(&ratios, true),
    })
}

/// Locust's `workers` and `worker_count` of `GET /stats/requests`, for a master.
pub fn add_workers(answer: &mut Value, workers: &[crate::cluster::WorkerSummary]) {
    answer["worker_count"] = json!(workers.len());
    answer["workers"] = Value::Array(
        workers
            .iter()
            .map(|w| {
                json!({
                    "id": w.name,
                    "state": w.state,
                    "user_count": w.users,
                    "cpu_usage": w.peak_cpu_pct,
                })
            })
            .collect(),
    );
}

#[cfg(test)]
mod tests {
    use crate::report::PERCENTILES;

    #[test]
    fn the_web_ui_reads_no_percentile_by_its_position() {
        // Each figure by its percentile, from the list /api/stats serves beside the rows.
        let script = super::super::page::SCRIPT;
        let positional = script
            .match_indices("percentiles_ms[")
            .filter(|(at, found)| {
                script[at + found.len()..].starts_with(|c: char| c.is_ascii_digit())
            })
            .count();
        assert_eq!(positional, 0, "ui.js reads percentiles_ms[N]");
        assert!(script.contains("percentile(r, 95)") && script.contains("percentile(r, 99)"));
        for p in [95.0, 99.0] {
            assert!(PERCENTILES.contains(&p), "the UI's {p}%ile column");
        }
    }
}
