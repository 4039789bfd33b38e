//! The machine under the stack: when its CPU is saturated, queues grow and every endpoint slows
//! down, whatever layer shows it first.

use super::{Evidence, Finding, Layer, Severity};

/// The host's CPU at 85 % or more in at least a third of the samples (3 or more): judged on the
/// time spent there, not on the average. The evidence names who used the CPU (CPU-seconds per
/// process group, and per container when Docker is watched), and the action fits the biggest.
pub fn cpu_saturated(e: &Evidence<'_>) -> Vec<Finding> {
    let host = e.backend.host();
    let hot = host.iter().filter(|(_, h)| h.cpu_pct >= 85.0).count();
    if hot < 3 || hot * 3 < host.len() {
        return Vec::new();
    }
    let span = host.last().map_or(0.0, |(t, _)| *t) - host.first().map_or(0.0, |(t, _)| *t);
    let users = cpu_seconds(&host);
    let who = if users.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = users
            .iter()
            .take(4)
            .map(|(name, secs)| format!("{name} {secs:.0}"))
            .collect();
        format!("; CPU-seconds by process: {}", list.join(", "))
    };
    let busiest = busiest_containers(e);
    let top = users.first().map_or("", |(name, _)| name.as_str());
    let action = if top.contains("ffmpeg") {
        "ffmpeg takes the CPU: run fewer ffmpeg jobs at once per host (the workers' concurrency), move the workers to other hosts, or give this one more cores"
    } else if top.contains("loadgen") || top.contains("locust") {
        "The load generator itself takes the CPU: run it on another machine, or its figures measure the contention"
    } else {
        "Everything on this host competes for the CPU: give it more cores, or move the CPU-heavy parts (ffmpeg workers, the load generator) to other machines"
    };
    vec![Finding {
        rule: "host.cpu_saturated",
        layer: Layer::Host,
        severity: Severity::Critical,
        title: "The host's CPU is saturated".into(),
        evidence: format!(
            "host CPU at 85% or more in {hot} of {} samples (over {span:.0} s){who}{busiest}",
            host.len()
        ),
        action: action.into(),
        cause_of: vec![
            "jobs.queue_grows",
            "jobs.queueing",
            "jobs.unfinished",
            "load.slow_endpoints",
            "load.stuck_users",
            "containers.cpu_saturated",
            "load.plateau",
        ],
    }]
}

/// CPU-seconds used by each process group over the samples, most first (1 or more only).
fn cpu_seconds(host: &[(f64, &monitor::sample::HostValues)]) -> Vec<(String, f64)> {
    let mut total: std::collections::BTreeMap<&str, f64> = Default::default();
    for pair in host.windows(2) {
        let dt = (pair[1].0 - pair[0].0).max(0.0);
        for group in &pair[1].1.processes {
            *total.entry(group.name.as_str()).or_default() += group.cpu_pct / 100.0 * dt;
        }
    }
    let mut sorted: Vec<(String, f64)> = total
        .into_iter()
        .filter(|(_, secs)| *secs >= 1.0)
        .map(|(name, secs)| (name.to_owned(), secs))
        .collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    sorted
}

/// `; busiest containers: worker 160%, api 60%` when Docker was watched.
fn busiest_containers(e: &Evidence<'_>) -> String {
    let mut average: Vec<(f64, &str)> = e
        .backend
        .containers()
        .into_iter()
        .map(|(name, series)| {
            let avg =
                series.iter().map(|(_, c)| c.cpu_pct).sum::<f64>() / series.len().max(1) as f64;
            (avg, name)
        })
        .filter(|(avg, _)| *avg >= 5.0)
        .collect();
    if average.is_empty() {
        return String::new();
    }
    average.sort_by(|a, b| b.0.total_cmp(&a.0));
    let list: Vec<String> = average
        .iter()
        .take(3)
        .map(|(avg, name)| format!("{name} {avg:.0}%"))
        .collect();
    format!("; busiest containers on average: {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{container, host, outcome, ticks, with_evidence};
    use super::*;

    #[test]
    fn cpu_seconds_name_who_used_the_host_and_the_action_fits() {
        let run = outcome(&[5; 10], &[20; 10], 900, &[]);
        let backend = ticks(10, |_| {
            let (name, mut values) = host(95.0);
            if let monitor::sample::Values::Host(h) = &mut values {
                h.processes = vec![
                    monitor::sample::ProcessGroup {
                        name: "ffmpeg".into(),
                        count: 2,
                        cpu_pct: 150.0,
                        ..Default::default()
                    },
                    monitor::sample::ProcessGroup {
                        name: "uvicorn".into(),
                        count: 1,
                        cpu_pct: 40.0,
                        ..Default::default()
                    },
                ];
            }
            vec![(name, values)]
        });
        let found = with_evidence(&run, &backend, cpu_saturated);
        assert!(
            found[0]
                .evidence
                .contains("CPU-seconds by process: ffmpeg 14, uvicorn 4"),
            "{}",
            found[0].evidence
        );
        assert!(
            found[0].action.starts_with("ffmpeg takes the CPU"),
            "{}",
            found[0].action
        );
        // Time spent hot decides, not the average: 2 hot samples in 10 are no saturation.
        let brief = ticks(10, |i| vec![host(if i < 2 { 99.0 } else { 30.0 })]);
        assert!(with_evidence(&run, &brief, cpu_saturated).is_empty());
    }

    #[test]
    fn a_saturated_host_names_the_busiest_containers() {
        let run = outcome(&[5; 6], &[20; 6], 900, &[]);
        let backend = ticks(6, |_| {
            vec![host(97.0), container(&[("worker", 160.0), ("api", 30.0)])]
        });
        let found = with_evidence(&run, &backend, cpu_saturated);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].evidence.contains("worker 160%, api 30%"),
            "{}",
            found[0].evidence
        );
        let calm = ticks(6, |_| vec![host(40.0)]);
        assert!(with_evidence(&run, &calm, cpu_saturated).is_empty());
    }
}
