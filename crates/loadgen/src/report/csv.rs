//! CSV files with Locust's names, columns, number forms and CRLF line ends (`PREFIX_stats.csv`,
//! `_stats_history.csv`, `_failures.csv`, `_exceptions.csv`, as Locust 2.x writes them), so
//! existing tooling reads them unchanged: every request under its own name (start-up and steady
//! state together; the split is in the console and the JSON), an Aggregated row that is their
//! sum, and a history whose rates are Locust's rolling window. Beside them, `_timeline.csv`
//! puts the load and the backend on one clock, a row per second.

use std::path::PathBuf;

use std::collections::BTreeMap;

use super::{HistoryPoint, P50, P95, P99, PERCENTILES, Report, Row};
use crate::stats::Cumulative;

/// Locust's percentile column labels.
fn percentile_labels() -> Vec<String> {
    PERCENTILES
        .iter()
        .map(|p| {
            if *p == 100.0 {
                "100%".to_owned()
            } else {
                format!("{p}%")
            }
        })
        .collect()
}

/// Our columns after Locust's in `_stats.csv` (tools that read Locust's columns by name or by
/// position still find theirs): every request sent is accounted for there too.
const ACCOUNTING_COLUMNS: [&str; 3] = ["Retries", "Timeouts", "In Flight At Stop"];

/// Our columns after Locust's in `_stats_history.csv`: the open model's iterations of the
/// second (0 in a closed run; empty on a name's row, as they are counted by user type).
const ARRIVAL_COLUMNS: [&str; 2] = ["Dropped Iterations", "Late Starts"];

/// The `_stats.csv` header.
pub fn stats_header() -> Vec<String> {
    let mut header: Vec<String> = [
        "Type",
        "Name",
        "Request Count",
        "Failure Count",
        "Median Response Time",
        "Average Response Time",
        "Min Response Time",
        "Max Response Time",
        "Average Content Size",
        "Requests/s",
        "Failures/s",
    ]
    .map(String::from)
    .to_vec();
    header.extend(percentile_labels());
    header.extend(ACCOUNTING_COLUMNS.map(String::from));
    header
}

/// The `_stats_history.csv` header.
pub fn history_header() -> Vec<String> {
    let mut header: Vec<String> = [
        "Timestamp",
        "User Count",
        "Type",
        "Name",
        "Requests/s",
        "Failures/s",
    ]
    .map(String::from)
    .to_vec();
    header.extend(percentile_labels());
    header.extend(
        [
            "Total Request Count",
            "Total Failure Count",
            "Total Median Response Time",
            "Total Average Response Time",
            "Total Min Response Time",
            "Total Max Response Time",
            "Total Average Content Size",
        ]
        .map(String::from),
    );
    header.extend(ARRIVAL_COLUMNS.map(String::from));
    header
}

fn stats_record(row: &Row) -> Vec<String> {
    let mut record = vec![
        row.method.clone(),
        row.name.clone(),
        row.requests.to_string(),
        row.failures.to_string(),
        format!("{:.0}", row.median_ms),
        py_float(row.average_ms),
        py_float(row.min_ms),
        py_float(row.max_ms),
        py_float(row.average_bytes),
        py_float(row.rps),
        py_float(row.failures_per_sec),
    ];
    record.extend(row.percentiles_ms.iter().map(|p| format!("{p:.0}")));
    record.extend([
        row.retries.to_string(),
        row.timed_out.to_string(),
        row.in_flight_at_stop
            .map_or(0, |unanswered| unanswered.requests)
            .to_string(),
    ]);
    record
}

/// A float as Python's `str()` writes it (`3.0`, not `3`), so the files match Locust's byte
/// for byte in form.
fn py_float(value: f64) -> String {
    if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e16 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// Requests and failures by the whole second Locust keys them by: it keys a request by the
/// second it ended in, and our point `at_secs` closes that second, so its key is `at_secs - 1`.
type PerSecond = BTreeMap<u64, (u64, u64)>;

fn keyed(at_secs: u64) -> u64 {
    at_secs.saturating_sub(1)
}

/// Locust's "current" rate at a row: the mean of the per-second counts over the window Locust
/// uses (the 10 whole seconds ending 2 s before the row), not the row's own second, which a
/// busy machine can leave empty or double.
fn rolling_rate(by_second: &PerSecond, at_secs: u64) -> (f64, f64) {
    let start = at_secs.saturating_sub(12);
    let end = at_secs.saturating_sub(2);
    let seconds = end.saturating_sub(start).max(1) as f64;
    let (requests, failures) = by_second
        .range(start..end)
        .fold((0, 0), |(r, f), (_, (pr, pf))| (r + pr, f + pf));
    (requests as f64 / seconds, failures as f64 / seconds)
}

/// The history columns after the rates: percentiles, then the row's totals so far.
fn history_figures(percentiles_ms: &[f64; 11], total: &Cumulative) -> Vec<String> {
    // As Locust's: N/A before the row's first request.
    let mut record: Vec<String> = percentiles_ms
        .iter()
        .map(|p| {
            if total.requests == 0 {
                "N/A".to_owned()
            } else {
                format!("{p:.0}")
            }
        })
        .collect();
    if total.requests == 0 {
        // Locust's figures of an entry with no request: integers, but for the mean.
        record.extend(["0", "0", "0", "0.0", "0", "0", "0"].map(String::from));
        return record;
    }
    record.extend([
        total.requests.to_string(),
        total.failures.to_string(),
        format!("{:.0}", total.median_ms),
        py_float(total.average_ms),
        py_float(total.min_ms),
        py_float(total.max_ms),
        py_float(total.average_bytes),
    ]);
    record
}

/// Writes `_stats_history.csv`: a first row at t = 0, then the Aggregated row each second
/// with the run's totals at its end, as Locust's; with
/// `--csv-full-history`, every name's row before it, and the percentiles of every row over the
/// last 10 seconds (Locust's "current" ones) instead of the run so far.
fn write_history<W: std::io::Write>(
    report: &Report,
    w: &mut csv::Writer<W>,
) -> Result<(), csv::Error> {
    w.write_record(history_header())?;
    // One row per wall-clock second: a second the clock visited twice keeps its later row.
    let mut points: Vec<&HistoryPoint> = Vec::with_capacity(report.history.len());
    for point in &report.history {
        match points.last_mut() {
            Some(last) if last.timestamp == point.timestamp => *last = point,
            _ => points.push(point),
        }
    }
    let all: PerSecond = points
        .iter()
        .map(|p| (keyed(p.at_secs), (p.requests, p.failures)))
        .collect();
    let mut by_name: BTreeMap<(&str, &str), PerSecond> = BTreeMap::new();
    for point in &points {
        for entry in point.per_name.iter().flat_map(|p| &p.entries) {
            by_name
                .entry((&*entry.name, &*entry.method))
                .or_default()
                .insert(keyed(point.at_secs), (entry.requests, entry.failures));
        }
    }
    // Locust writes its first row as the run starts, before any request: t = 0.
    let mut first = vec![
        report.started_at.to_string(),
        "0".to_owned(),
        String::new(),
        "Aggregated".to_owned(),
        format!("{:.6}", 0.0),
        format!("{:.6}", 0.0),
    ];
    first.extend(history_figures(&[0.0; 11], &Cumulative::default()));
    first.extend(ARRIVAL_COLUMNS.map(|_| "0".to_owned()));
    w.write_record(first)?;
    let no_seconds = PerSecond::new();
    for point in points.iter().filter(|p| p.timestamp > report.started_at) {
        let head = |method: &str, name: &str, (rps, fps): (f64, f64)| {
            vec![
                point.timestamp.to_string(),
                point.users.to_string(),
                method.to_owned(),
                name.to_owned(),
                format!("{rps:.6}"),
                format!("{fps:.6}"),
            ]
        };
        if let Some(per_name) = &point.per_name {
            for entry in &per_name.entries {
                let seconds = by_name
                    .get(&(&*entry.name, &*entry.method))
                    .unwrap_or(&no_seconds);
                let mut record = head(
                    &entry.method,
                    &entry.name,
                    rolling_rate(seconds, point.at_secs),
                );
                record.extend(history_figures(&entry.current_ms, &entry.cumulative));
                record.extend(ARRIVAL_COLUMNS.map(|_| String::new()));
                w.write_record(record)?;
            }
        }
        // With every name's row, Aggregated is their sum, as Locust's; alone, its totals are
        // the timeline's (each second's requests added to the last).
        let (percentiles, totals) = point
            .per_name
            .as_ref()
            .map_or((&point.cumulative.percentiles_ms, &point.cumulative), |p| {
                (&p.aggregated_current_ms, &p.aggregated)
            });
        let mut record = head("", "Aggregated", rolling_rate(&all, point.at_secs));
        record.extend(history_figures(percentiles, totals));
        record.extend([
            point.arrivals.dropped.to_string(),
            point.arrivals.late.to_string(),
        ]);
        w.write_record(record)?;
    }
    w.flush()?;
    Ok(())
}

/// A file's content, filled by one of the `write_*` functions below.
type Fill = fn(&Report, &mut csv::Writer<Vec<u8>>) -> Result<(), csv::Error>;

/// Locust's four files and ours, in memory, each with its path: the caller writes them (whole,
/// see [`crate::atomic_file`]).
pub fn files(report: &Report, prefix: &str) -> Result<Vec<(PathBuf, Vec<u8>)>, csv::Error> {
    let fills: [(&str, Fill); 5] = [
        ("stats", write_stats),
        ("stats_history", write_history),
        ("failures", write_failures),
        ("exceptions", write_exceptions),
        ("timeline", write_timeline),
    ];
    fills
        .into_iter()
        .map(|(suffix, fill)| {
            let path = PathBuf::from(format!("{prefix}_{suffix}.csv"));
            Ok((path, in_memory(report, fill)?))
        })
        .collect()
}

/// One of Locust's files in memory (for downloads): `stats`, `failures` or `exceptions`.
pub fn to_bytes(report: &Report, file: &str) -> Result<Vec<u8>, csv::Error> {
    match file {
        "failures" => in_memory(report, write_failures),
        "exceptions" => in_memory(report, write_exceptions),
        _ => in_memory(report, write_stats),
    }
}

/// The bytes `fill` writes, with CRLF line ends, as Python's csv module (and so Locust)
/// writes them.
fn in_memory(report: &Report, fill: Fill) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    fill(report, &mut w)?;
    w.into_inner()
        .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))
}

/// `_stats.csv`.
fn write_stats<W: std::io::Write>(
    report: &Report,
    w: &mut csv::Writer<W>,
) -> Result<(), csv::Error> {
    w.write_record(stats_header())?;
    for row in report.locust_rows.iter().chain([&report.locust_total]) {
        w.write_record(stats_record(row))?;
    }
    w.flush()?;
    Ok(())
}

/// `_failures.csv`.
fn write_failures<W: std::io::Write>(
    report: &Report,
    w: &mut csv::Writer<W>,
) -> Result<(), csv::Error> {
    w.write_record([
        "Method",
        "Name",
        "Error",
        "Occurrences",
        "First Seen",
        "Last Seen",
    ])?;
    let seen = |secs: f64| {
        let unix = report.started_at as i64 + secs as i64;
        chrono::DateTime::from_timestamp(unix, 0).map_or(String::new(), |t| {
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        })
    };
    let mut sorted: Vec<_> = report.failures.iter().collect();
    sorted.sort_by(|a, b| (&a.name, &a.method, &a.error).cmp(&(&b.name, &b.method, &b.error)));
    for f in sorted {
        w.write_record([
            f.method.as_str(),
            f.name.as_str(),
            f.error.as_str(),
            &f.occurrences.to_string(),
            &seen(f.first_seen_secs),
            &seen(f.last_seen_secs),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// `_exceptions.csv`.
fn write_exceptions<W: std::io::Write>(
    report: &Report,
    w: &mut csv::Writer<W>,
) -> Result<(), csv::Error> {
    w.write_record(["Count", "Message", "Traceback", "Nodes"])?;
    for (message, count) in &report.exceptions {
        w.write_record([count.to_string().as_str(), message.as_str(), "", "local"])?;
    }
    w.flush()?;
    Ok(())
}

/// `PREFIX_timeline.csv`: each second of the run, the load and loadgen's own figures, and the
/// backend's (the tick nearest that second), one column per figure.
fn write_timeline<W: std::io::Write>(
    report: &Report,
    w: &mut csv::Writer<W>,
) -> Result<(), csv::Error> {
    let mut columns: Vec<String> = Vec::new();
    let ticks: Vec<(u64, Vec<(String, f64)>)> = report
        .backend
        .iter()
        .map(|tick| {
            let unix = tick.timestamp.timestamp().max(0) as u64;
            let figures: Vec<(String, f64)> = tick
                .metrics()
                .into_iter()
                .map(|m| {
                    let labels: Vec<&str> = m.labels.iter().map(|(_, v)| v.as_str()).collect();
                    let name = if labels.is_empty() {
                        m.name
                    } else {
                        format!("{}[{}]", m.name, labels.join(","))
                    };
                    (name, m.value)
                })
                .collect();
            for (name, _) in &figures {
                if !columns.contains(name) {
                    columns.push(name.clone());
                }
            }
            (unix, figures)
        })
        .collect();
    let mut endpoints: Vec<String> = Vec::new();
    for point in &report.history {
        for e in &point.endpoints {
            let name = format!("{} {}", e.method, e.name);
            if !endpoints.contains(&name) {
                endpoints.push(name);
            }
        }
    }
    let mut header: Vec<String> = [
        "Timestamp",
        "Seconds",
        "User Count",
        "Requests/s",
        "Failures/s",
        "50%",
        "95%",
        "99%",
        "Jobs done",
        "Jobs in flight",
        "loadgen CPU %",
        "loadgen RSS MB",
        "Timer lag ms",
    ]
    .map(String::from)
    .to_vec();
    header.extend(endpoints.iter().map(|e| format!("95% {e}")));
    header.extend(columns.iter().cloned());
    w.write_record(&header)?;
    for point in &report.history {
        let mut record = vec![
            point.timestamp.to_string(),
            point.at_secs.to_string(),
            point.users.to_string(),
            point.requests.to_string(),
            point.failures.to_string(),
            format!("{:.1}", point.p(P50)),
            format!("{:.1}", point.p(P95)),
            format!("{:.1}", point.p(P99)),
            point.jobs_done.to_string(),
            point.jobs_in_flight.to_string(),
            format!("{:.1}", point.loadgen_cpu_pct),
            format!("{:.1}", point.loadgen_rss_bytes as f64 / 1e6),
            format!("{:.1}", point.timer_lag_ms),
        ];
        for endpoint in &endpoints {
            let found = point
                .endpoints
                .iter()
                .find(|e| format!("{} {}", e.method, e.name) == *endpoint);
            record.push(found.map_or(String::new(), |e| format!("{:.1}", e.p95_ms())));
        }
        let nearest = ticks
            .iter()
            .min_by_key(|(unix, _)| unix.abs_diff(point.timestamp));
        for column in &columns {
            let value = nearest
                .filter(|(unix, _)| unix.abs_diff(point.timestamp) <= 2)
                .and_then(|(_, figures)| figures.iter().find(|(n, _)| n == column))
                .map_or(String::new(), |(_, v)| format!("{v}"));
            record.push(value);
        }
        w.write_record(&record)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{FIXED_AND_WEIGHTED, resolved};
    use crate::diagnosis::testing;

    /// The Total Request Count column of `_stats_history.csv`, row by row.
    fn totals(report: &Report) -> Vec<String> {
        let bytes = in_memory(report, write_history).unwrap();
        let mut reader = ::csv::Reader::from_reader(bytes.as_slice());
        reader
            .records()
            .map(|r| r.unwrap()[17].to_owned())
            .collect()
    }

    #[test]
    fn history_totals_grow_by_each_seconds_requests_whenever_the_rows_were_made() {
        let config = resolved(FIXED_AND_WEIGHTED, &["-u", "2", "-t", "4s"]);
        let mut run = testing::outcome(&[2, 2, 2, 2], &[20, 20, 20, 20], 5, &[1.0; 4]);
        // A busy machine made the rows of seconds 2 and 3 at one tick: what had been handed
        // over then was the same for both, and counted requests of later seconds.
        for (row, handed_over) in run.history.iter_mut().zip([20, 60, 60, 80]) {
            row.cumulative.requests = handed_over;
        }
        let report = Report::of_run(&config, &run);
        assert_eq!(totals(&report), ["0", "20", "40", "60", "80"]);
        // A reset starts the totals again from its row, as Locust's.
        run.history[2].reset = true;
        let report = Report::of_run(&config, &run);
        assert_eq!(totals(&report), ["0", "20", "40", "20", "40"]);
    }
}
