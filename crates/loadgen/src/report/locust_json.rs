//! The stats as Locust's `--json` prints them and its `--json-file` writes them: a list with
//! one object per request name (Locust's `StatsEntry.serialize()`), so that a script reading
//! Locust's JSON reads ours. Figures Locust keeps and loadgen does not are made from what it
//! has: `response_times` (Locust's bucketed latencies) from the percentiles, and the
//! per-second counts from the run's history (empty for a name the history has no row of).
//! Also Locust's task ratios (`--show-task-ratio-json`, the web API's `/tasks`).

use std::collections::BTreeMap;

use super::{PERCENTILES, Report, Row};

/// Locust's bucket for a response time, ms: whole ms below 100, then 2 significant figures
/// (its `bucket_response_time`).
fn bucket(ms: f64) -> u64 {
    let ms = ms.max(0.0);
    let rounded = |step: f64| ((ms / step).round() * step) as u64;
    if ms < 100.0 {
        ms.round() as u64
    } else if ms < 1_000.0 {
        rounded(10.0)
    } else if ms < 10_000.0 {
        rounded(100.0)
    } else {
        rounded(1_000.0)
    }
}

/// `response_times` from a row's percentiles: the requests between two percentiles are put
/// in the bucket of the higher one.
fn response_times(row: &Row) -> BTreeMap<u64, u64> {
    let mut buckets = BTreeMap::new();
    let mut placed = 0u64;
    for (share, ms) in PERCENTILES.iter().zip(&row.percentiles_ms) {
        let upto = ((share / 100.0) * row.requests as f64).round() as u64;
        let count = upto.saturating_sub(placed);
        if count > 0 {
            *buckets.entry(bucket(*ms)).or_insert(0) += count;
            placed += count;
        }
    }
    if placed < row.requests {
        *buckets.entry(bucket(row.max_ms)).or_insert(0) += row.requests - placed;
    }
    buckets
}

/// Requests and failures per Unix second of one name, from the history.
fn per_second(report: &Report, row: &Row) -> (BTreeMap<u64, u64>, BTreeMap<u64, u64>) {
    let (mut requests, mut failures) = (BTreeMap::new(), BTreeMap::new());
    for point in &report.history {
        for second in point
            .endpoints
            .iter()
            .filter(|e| e.name == row.name && e.method == row.method)
        {
            if second.requests > 0 {
                *requests.entry(point.timestamp).or_insert(0) += second.requests;
            }
            if second.failures > 0 {
                *failures.entry(point.timestamp).or_insert(0) += second.failures;
            }
        }
    }
    (requests, failures)
}

/// One name's entry, its fields in Locust's order.
#[derive(Debug, serde::Serialize)]
struct Entry<'a> {
    name: &'a str,
    method: &'a str,
    last_request_timestamp: f64,
    start_time: f64,
    num_requests: u64,
    num_none_requests: u64,
    num_failures: u64,
    total_response_time: f64,
    max_response_time: f64,
    min_response_time: Option<f64>,
    total_content_length: u64,
    response_times: BTreeMap<u64, u64>,
    num_reqs_per_sec: BTreeMap<u64, u64>,
    num_fail_per_sec: BTreeMap<u64, u64>,
}

/// The list Locust prints: one entry per name that saw a request or a failure.
fn entries(report: &Report) -> Vec<Entry<'_>> {
    let start = report.started_at as f64;
    let last = start + report.duration_secs;
    report
        .locust_rows
        .iter()
        .filter(|row| row.requests > 0 || row.failures > 0)
        .map(|row| {
            let (num_reqs_per_sec, num_fail_per_sec) = per_second(report, row);
            Entry {
                name: &row.name,
                method: &row.method,
                last_request_timestamp: last,
                start_time: start,
                num_requests: row.requests,
                num_none_requests: 0,
                num_failures: row.failures,
                total_response_time: row.average_ms * row.requests as f64,
                max_response_time: row.max_ms,
                min_response_time: (row.requests > 0).then_some(row.min_ms),
                total_content_length: (row.average_bytes * row.requests as f64).round() as u64,
                response_times: response_times(row),
                num_reqs_per_sec,
                num_fail_per_sec,
            }
        })
        .collect()
}

/// [`entries`] as Locust writes them: indented by 4.
pub fn render(report: &Report) -> Result<Vec<u8>, String> {
    indented(&entries(report))
}

/// JSON as Python's `json.dumps(value, indent=4)` writes it.
pub fn indented(value: &impl serde::Serialize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value
        .serialize(&mut serializer)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Each user type's share of the users, and each of its tasks' share of its iterations (a task
/// is named by its steps).
pub type Ratios = Vec<(String, f64, Vec<(String, f64)>)>;

/// The [`Ratios`] of `users` users (Locust's `_calc_distribution`; without `users`, one of each
/// weight; with 0, every type at 0 as Locust's web API has them before users run).
pub fn task_ratios(scenario: &crate::scenario::Scenario, users: Option<u64>) -> Ratios {
    let fixed: u64 = scenario
        .users
        .iter()
        .filter_map(|u| u.fixed_count)
        .map(u64::from)
        .sum();
    let total_weight: u64 = scenario
        .users
        .iter()
        .filter(|u| u.fixed_count.is_none())
        .map(|u| u64::from(u.weight))
        .sum();
    let users = users.unwrap_or(if fixed == 0 { total_weight } else { 1 });
    let weighted = users.saturating_sub(fixed) as f64;
    let counts: Vec<f64> = scenario
        .users
        .iter()
        .map(|u| match u.fixed_count {
            Some(n) => f64::from(n),
            None if total_weight > 0 => {
                (f64::from(u.weight) / total_weight as f64 * weighted).round()
            }
            None => 0.0,
        })
        .collect();
    let spawned: f64 = counts.iter().sum::<f64>().max(1.0);
    scenario
        .users
        .iter()
        .zip(counts)
        .map(|(user, count)| {
            let weights: u64 = user.tasks.iter().map(|t| u64::from(t.weight)).sum();
            let tasks = user
                .tasks
                .iter()
                .map(|task| {
                    let name = task
                        .run
                        .iter()
                        .filter_map(|r| user.steps.get(r.step).map(|s| s.key.clone()))
                        .collect::<Vec<_>>()
                        .join("+");
                    (name, f64::from(task.weight) / weights.max(1) as f64)
                })
                .collect();
            (user.name.clone(), count / spawned, tasks)
        })
        .collect()
}

/// Locust's task ratio JSON: per class, or of the total (a task's share times its class's).
pub fn ratios_json(ratios: &Ratios, total: bool) -> serde_json::Value {
    let mut classes = serde_json::Map::new();
    for (user, share, tasks) in ratios {
        let mut task_map = serde_json::Map::new();
        for (task, task_share) in tasks {
            let ratio = if total {
                task_share * share
            } else {
                *task_share
            };
            task_map.insert(task.clone(), serde_json::json!({ "ratio": ratio }));
        }
        classes.insert(
            user.clone(),
            serde_json::json!({ "ratio": share, "tasks": task_map }),
        );
    }
    serde_json::Value::Object(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_as_locust() {
        for (ms, expected) in [
            (0.4, 0),
            (42.6, 43),
            (147.0, 150),
            (3_456.0, 3_500),
            (12_345.0, 12_000),
        ] {
            assert_eq!(bucket(ms), expected, "{ms}");
        }
    }
}
