//! Our figures as a Locust worker reports them to its master: every report holds what
//! happened since the one before (Locust's `get_stripped_report` resets the worker's entries),
//! one `StatsEntry.serialize()` dict per (name, method), the Aggregated entry, and the errors.
//!
//! Made from our cumulative [`Stats`]: each report is the difference from the last one sent
//! (`EndpointStats::since`, exact for counts, sums and bytes). What is approximated, because
//! Locust's format holds less than we measure or something we do not keep:
//! - `response_times` are Locust's buckets (2 significant digits above 100 ms) filled from our
//!   microsecond HdrHistogram's recorded values (3 significant digits), so a sample near a
//!   bucket's edge may land in the next one;
//! - `num_reqs_per_sec` and `num_fail_per_sec` spread the interval's requests evenly over the
//!   wall-clock seconds since the last report: our rows keep no per-second counts;
//! - the start-up and steady phases we keep apart are one entry, as Locust has one.

use std::collections::BTreeMap;

use rmpv::Value;
use sha2::{Digest, Sha256};

use super::message::map;
use crate::stats::{EndpointStats, FailureKey, FailureStats, Stats};

/// Locust's `bucket_response_time`: whole milliseconds below 100 ms, then 2 significant digits
/// (147 → 150, 3432 → 3400, 58760 → 59000), rounding halves to even as Python's `round` does.
pub fn bucket_ms(ms: f64) -> i64 {
    let step = if ms < 100.0 {
        1.0
    } else if ms < 1_000.0 {
        10.0
    } else if ms < 10_000.0 {
        100.0
    } else {
        1_000.0
    };
    ((ms / step).round_ties_even() * step) as i64
}

/// What the worker last reported, to send only what is new.
#[derive(Default)]
pub struct Reporter {
    last: Stats,
    /// Unix time of the last report (or of the run's start).
    last_unix: f64,
}

/// The three fields of a `stats` message this module fills.
pub struct Report {
    /// `stats`: one entry per (name, method) with requests in the interval.
    pub stats: Value,
    /// `stats_total`: the Aggregated entry.
    pub stats_total: Value,
    /// `errors`: by a key unique to (method, name, error).
    pub errors: Value,
    /// Requests in the interval, for the log.
    pub requests: u64,
}

impl Reporter {
    /// A reporter for a run that started at `start_unix`, nothing reported yet.
    pub fn new(start_unix: f64) -> Self {
        Self {
            last: Stats::default(),
            last_unix: start_unix,
        }
    }

    /// What happened between the last report and `now` (the run's totals so far, its start
    /// `run_start_unix`), at the Unix time `now_unix`.
    pub fn report(&mut self, now: &Stats, run_start_unix: f64, now_unix: f64) -> Report {
        let mut rows: BTreeMap<(String, String), EndpointStats> = BTreeMap::new();
        for (key, stats) in &now.endpoints {
            let delta = match self.last.endpoints.get(key) {
                Some(before) => stats.since(before),
                None => stats.clone(),
            };
            rows.entry((key.name.to_string(), key.method.to_string()))
                .or_default()
                .merge_answered(&delta);
        }
        let window = (self.last_unix, now_unix);
        let mut total = EndpointStats::default();
        let mut entries = Vec::new();
        for ((name, method), row) in &rows {
            if row.count == 0 {
                continue;
            }
            total.merge_answered(row);
            entries.push(entry(name, method, row, window));
        }
        let errors = errors(&now.failures, &self.last.failures, run_start_unix);
        self.last = now.clone();
        self.last_unix = now_unix;
        Report {
            stats: Value::Array(entries),
            stats_total: entry("Aggregated", "", &total, window),
            errors,
            requests: total.count,
        }
    }
}

/// One `StatsEntry.serialize()` dict, in its field order (Locust 2.47's `StatsEntryDict`).
fn entry(name: &str, method: &str, row: &EndpointStats, (from, to): (f64, f64)) -> Value {
    let answered = row.count > 0;
    map([
        ("name", Value::from(name)),
        ("method", Value::from(method)),
        (
            "last_request_timestamp",
            if answered {
                Value::from(to)
            } else {
                Value::Nil
            },
        ),
        ("start_time", Value::from(from)),
        ("num_requests", Value::from(row.count)),
        ("num_none_requests", Value::from(0)),
        ("num_failures", Value::from(row.failures)),
        (
            "total_response_time",
            Value::from(row.total_us as f64 / 1000.0),
        ),
        (
            "max_response_time",
            Value::from(if answered {
                row.max_us as f64 / 1000.0
            } else {
                0.0
            }),
        ),
        (
            "min_response_time",
            if answered {
                Value::from(row.min_us as f64 / 1000.0)
            } else {
                Value::Nil
            },
        ),
        ("total_content_length", Value::from(row.bytes)),
        ("response_times", response_times(row)),
        ("num_reqs_per_sec", per_second(row.count, from, to)),
        ("num_fail_per_sec", per_second(row.failures, from, to)),
    ])
}

/// Locust's `{rounded ms: count}` from the histogram's recorded values.
fn response_times(row: &EndpointStats) -> Value {
    let mut buckets: BTreeMap<i64, u64> = BTreeMap::new();
    for value in row.histogram.iter_recorded() {
        let ms = row.histogram.median_equivalent(value.value_iterated_to()) as f64 / 1000.0;
        *buckets.entry(bucket_ms(ms)).or_default() += value.count_at_value();
    }
    Value::Map(
        buckets
            .into_iter()
            .map(|(ms, n)| (Value::from(ms), Value::from(n)))
            .collect(),
    )
}

/// `count` spread evenly over the whole seconds from `from` to `to` (the first ones get the
/// remainder), as `{unix second: count}`.
fn per_second(count: u64, from: f64, to: f64) -> Value {
    if count == 0 {
        return Value::Map(Vec::new());
    }
    let (first, last) = (
        from.floor() as i64,
        (to.floor() as i64).max(from.floor() as i64),
    );
    let seconds = u64::try_from(last - first + 1).unwrap_or(1).max(1);
    let (each, extra) = (count / seconds, count % seconds);
    Value::Map(
        (0..seconds)
            .filter_map(|i| {
                let n = each + u64::from(i < extra);
                (n > 0).then(|| (Value::from(first + i as i64), Value::from(n)))
            })
            .collect(),
    )
}

/// The failures since `before`, as Locust's `serialize_errors()`.
fn errors(
    now: &BTreeMap<FailureKey, FailureStats>,
    before: &BTreeMap<FailureKey, FailureStats>,
    run_start_unix: f64,
) -> Value {
    let mut out = Vec::new();
    for (key, stats) in now {
        let occurrences = stats.count - before.get(key).map_or(0, |b| b.count.min(stats.count));
        if occurrences == 0 {
            continue;
        }
        // Locust keys an error by the SHA-256 of "method.name.repr(error)"; the master only
        // merges by it.
        let id = Sha256::digest(format!("{}.{}.{:?}", key.method, key.name, key.error));
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        out.push((
            Value::from(id),
            map([
                ("name", Value::from(&*key.name)),
                ("method", Value::from(&*key.method)),
                ("error", Value::from(key.error.as_str())),
                ("occurrences", Value::from(occurrences)),
                (
                    "first_seen",
                    Value::from(run_start_unix + stats.first_seen_secs),
                ),
                (
                    "last_seen",
                    Value::from(run_start_unix + stats.last_seen_secs),
                ),
            ]),
        ));
    }
    Value::Map(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::stats::{Key, Phase};

    #[test]
    fn buckets_follow_locusts_rounding() {
        let cases = [
            (0.4, 0),
            (58.6, 59),
            (99.4, 99),
            (147.0, 150),
            (145.0, 140),
            (3432.0, 3400),
            (58760.0, 59000),
        ];
        for (ms, bucket) in cases {
            assert_eq!(bucket_ms(ms), bucket, "{ms} ms");
        }
    }

    fn stats_with(latencies_ms: &[u64], failed: usize) -> Stats {
        let mut stats = Stats::default();
        for phase in [Phase::Startup, Phase::Steady] {
            let row = stats
                .endpoints
                .entry(Key {
                    phase,
                    method: Arc::from("GET"),
                    name: Arc::from("/health"),
                })
                .or_default();
            for (i, ms) in latencies_ms.iter().enumerate() {
                row.record(ms * 1000, 10, Some(200), i < failed);
            }
        }
        stats
    }

    #[test]
    fn each_report_holds_what_is_new_in_one_entry_per_name_and_method() {
        let mut reporter = Reporter::new(1000.0);
        let first = reporter.report(&stats_with(&[5, 147], 1), 1000.0, 1003.5);
        let rows = first.stats.as_array().unwrap();
        assert_eq!(rows.len(), 1, "{}", first.stats);
        let count = |v: &Value, k: &str| super::super::message::field(v, k).unwrap().clone();
        assert_eq!(count(&rows[0], "num_requests"), Value::from(4));
        assert_eq!(count(&rows[0], "num_failures"), Value::from(2));
        assert_eq!(count(&rows[0], "total_content_length"), Value::from(40));
        assert_eq!(
            count(&rows[0], "response_times").to_string(),
            "{5: 2, 150: 2}"
        );
        assert_eq!(
            count(&rows[0], "num_reqs_per_sec").to_string(),
            "{1000: 1, 1001: 1, 1002: 1, 1003: 1}"
        );
        assert_eq!(count(&first.stats_total, "name"), Value::from("Aggregated"));

        let second = reporter.report(&stats_with(&[5, 147, 2000], 1), 1000.0, 1006.0);
        let rows = second.stats.as_array().unwrap();
        assert_eq!(count(&rows[0], "num_requests"), Value::from(2));
        assert_eq!(count(&rows[0], "response_times").to_string(), "{2000: 2}");
        assert_eq!(count(&rows[0], "start_time"), Value::from(1003.5));
        assert_eq!(second.requests, 2);
    }
}
