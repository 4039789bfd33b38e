//! The machine under the stack: when its CPU is saturated, queues grow and every endpoint slows
//! down, whatever layer shows it first.

use super::{Evidence, Finding, Layer, Severity};

/// Host CPU at or above 90 % in at least a third of the samples (3 or more).
pub fn cpu_saturated(e: &Evidence<'_>) -> Vec<Finding> {
    let host = e.backend.host();
    let hot: Vec<f64> = host
        .iter()
        .map(|(_, h)| h.cpu_pct)
        .filter(|c| *c >= 90.0)
        .collect();
    if hot.len() < 3 || hot.len() * 3 < host.len() {
        return Vec::new();
    }
    let avg = host.iter().map(|(_, h)| h.cpu_pct).sum::<f64>() / host.len() as f64;
    let busiest = busiest_containers(e);
    vec![Finding {
        rule: "host.cpu_saturated",
        layer: Layer::Host,
        severity: Severity::Critical,
        title: "The host's CPU is saturated".into(),
        evidence: format!(
            "host CPU at 90% or more in {} of {} samples (average {avg:.0}%){busiest}",
            hot.len(),
            host.len()
        ),
        action: "Everything on this host competes for the CPU: give it more cores, or move the CPU-heavy parts (ffmpeg workers, the load generator) to other machines".into(),
        cause_of: vec![
            "jobs.queue_grows",
            "jobs.unfinished",
            "load.slow_endpoints",
            "containers.cpu_saturated",
            "load.plateau",
        ],
    }]
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
