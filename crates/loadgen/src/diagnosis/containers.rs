//! Containers of the stack: one near a full core (or its CPU limit) while requests are slow.

use super::{Evidence, Finding, Layer, Severity};

/// A container at 85 % CPU or more in 3 samples while the API falls behind (slow, or
/// dropping iterations: [`Evidence::strained`]).
pub fn cpu_saturated(e: &Evidence<'_>) -> Vec<Finding> {
    if !e.strained() {
        return Vec::new();
    }
    e.backend
        .containers()
        .into_iter()
        .filter_map(|(name, series)| {
            let hot = series.iter().filter(|(_, c)| c.cpu_pct >= 85.0).count();
            let peak = series.iter().map(|(_, c)| c.cpu_pct).fold(0.0, f64::max);
            (hot >= 3).then(|| Finding {
                rule: "containers.cpu_saturated",
                layer: Layer::Containers,
                severity: Severity::Critical,
                title: format!("CPU of container {name} is saturated"),
                evidence: format!(
                    "{name} at {peak:.0}% CPU in {hot} samples while the steady-state p95 was {:.0} ms; the endpoints that cost most time: {}",
                    e.p95_ms(),
                    costliest_endpoints(e)
                ),
                action: "Profile those endpoints; add API processes (workers) or CPU; move CPU-heavy work (bcrypt, ffmpeg) out of the request path".into(),
                cause_of: vec!["load.slow_endpoints", "load.stuck_users", "load.plateau"],
                explains: None,
                explained_by: None,
            })
        })
        .collect()
}

fn costliest_endpoints(e: &Evidence<'_>) -> String {
    let mut rows: Vec<(u64, String)> = e
        .stats
        .endpoints
        .iter()
        .map(|(k, s)| {
            (
                s.total_us,
                format!(
                    "{} {} ({:.0} s in all, avg {:.0} ms)",
                    k.method,
                    k.name,
                    s.total_us as f64 / 1e6,
                    s.average_ms()
                ),
            )
        })
        .collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.0));
    rows.into_iter()
        .take(3)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::testing::{container, outcome, ticks, with_evidence};
    use super::*;

    #[test]
    fn a_saturated_api_container_is_named_with_its_costliest_endpoints() {
        let slow = outcome(&[5; 6], &[20; 6], 900, &[]);
        let backend = ticks(6, |_| vec![container(&[("api", 99.0)])]);
        let found = with_evidence(&slow, &backend, cpu_saturated);
        assert_eq!(found[0].title, "CPU of container api is saturated");
        assert!(
            found[0].evidence.contains("GET /api/v1/tasks"),
            "{}",
            found[0].evidence
        );
        // The same CPU while requests are fast is no finding.
        let fast = outcome(&[5; 6], &[20; 6], 10, &[]);
        assert!(with_evidence(&fast, &backend, cpu_saturated).is_empty());
    }
}
