//! CSV files with Locust's names and columns (`PREFIX_stats.csv`, `_stats_history.csv`,
//! `_failures.csv`, `_exceptions.csv`, as Locust 2.x writes them), so existing tooling reads them.
//! Start-up rows are in `_stats.csv` too, their names suffixed ` (start-up)`. Beside them,
//! `_timeline.csv` puts the load and the backend on one clock, a row per second.

use std::path::{Path, PathBuf};

use super::{PERCENTILES, Report, Row};

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
    header
}

fn stats_record(row: &Row, suffix: &str) -> Vec<String> {
    let mut record = vec![
        row.method.clone(),
        format!("{}{suffix}", row.name),
        row.requests.to_string(),
        row.failures.to_string(),
        format!("{:.0}", row.median_ms),
        format!("{}", row.average_ms),
        format!("{}", row.min_ms),
        format!("{}", row.max_ms),
        format!("{}", row.average_bytes),
        format!("{}", row.rps),
        format!("{}", row.failures_per_sec),
    ];
    record.extend(row.percentiles_ms.iter().map(|p| format!("{p:.0}")));
    record
}

/// Writes the four files; returns their paths.
pub fn write(report: &Report, prefix: &str) -> Result<Vec<PathBuf>, csv::Error> {
    let path = |suffix: &str| PathBuf::from(format!("{prefix}_{suffix}.csv"));
    let stats = path("stats");
    let mut w = writer(&stats)?;
    w.write_record(stats_header())?;
    for row in &report.steady {
        w.write_record(stats_record(row, ""))?;
    }
    for row in &report.startup {
        w.write_record(stats_record(row, " (start-up)"))?;
    }
    w.write_record(stats_record(&report.steady_total, ""))?;
    w.flush()?;

    let history = path("stats_history");
    let mut w = writer(&history)?;
    w.write_record(history_header())?;
    for point in &report.history {
        let total = &point.cumulative;
        let mut record = vec![
            point.timestamp.to_string(),
            point.users.to_string(),
            String::new(),
            "Aggregated".to_owned(),
            format!("{}", point.requests),
            format!("{}", point.failures),
        ];
        record.extend(point.percentiles_ms.iter().map(|p| {
            if point.requests == 0 {
                "N/A".to_owned()
            } else {
                format!("{p:.0}")
            }
        }));
        // The "Total" columns are the run so far, exact (merged histograms), as Locust's are.
        record.extend([
            total.requests.to_string(),
            total.failures.to_string(),
            format!("{:.0}", total.median_ms),
            format!("{}", total.average_ms),
            format!("{}", total.min_ms),
            format!("{}", total.max_ms),
            format!("{}", total.average_bytes),
        ]);
        w.write_record(record)?;
    }
    w.flush()?;

    let failures = path("failures");
    let mut w = writer(&failures)?;
    w.write_record(["Method", "Name", "Error", "Occurrences"])?;
    for f in &report.failures {
        w.write_record([
            f.method.as_str(),
            f.name.as_str(),
            f.error.as_str(),
            &f.occurrences.to_string(),
        ])?;
    }
    w.flush()?;

    let exceptions = path("exceptions");
    let mut w = writer(&exceptions)?;
    w.write_record(["Count", "Message", "Traceback", "Nodes"])?;
    for (message, count) in &report.exceptions {
        w.write_record([count.to_string().as_str(), message.as_str(), "", "local"])?;
    }
    w.flush()?;
    let timeline = path("timeline");
    write_timeline(report, &timeline)?;
    Ok(vec![stats, history, failures, exceptions, timeline])
}

/// `PREFIX_timeline.csv`: each second of the run, the load and loadgen's own figures, and the
/// backend's (the tick nearest that second), one column per figure.
fn write_timeline(report: &Report, path: &Path) -> Result<(), csv::Error> {
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
    let mut w = writer(path)?;
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
            format!("{:.1}", point.percentiles_ms[0]),
            format!("{:.1}", point.percentiles_ms[5]),
            format!("{:.1}", point.percentiles_ms[7]),
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
            record.push(found.map_or(String::new(), |e| format!("{:.1}", e.percentiles_ms[1])));
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

fn writer(path: &Path) -> Result<csv::Writer<std::fs::File>, csv::Error> {
    csv::Writer::from_path(path)
}
