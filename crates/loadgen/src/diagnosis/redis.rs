//! Redis, the broker and cache: rejected connections and memory near `maxmemory`. (The length
//! of the job queue it holds is read by the jobs layer.)

use super::{Evidence, Finding, Layer, Severity};

/// Any rejected connection during the run.
pub fn rejected_connections(e: &Evidence<'_>) -> Vec<Finding> {
    let rd = e.backend.redis();
    let rejected: i64 = rd.iter().map(|(_, r)| r.rejected_connections).sum();
    if rejected <= 0 {
        return Vec::new();
    }
    vec![Finding {
        rule: "redis.rejected_connections",
        layer: Layer::Redis,
        severity: Severity::Critical,
        title: "Redis rejects connections".into(),
        evidence: format!(
            "{rejected} connections rejected (maxclients {})",
            rd.last().map_or(0, |(_, r)| r.maxclients)
        ),
        action: "Raise maxclients or pool the API's and workers' Redis connections".into(),
        cause_of: vec!["load.server_errors"],
        explains: None,
        explained_by: None,
    }]
}

/// Used memory at 90 % of `maxmemory` or more.
pub fn memory_near_max(e: &Evidence<'_>) -> Vec<Finding> {
    let rd = e.backend.redis();
    let Some((at, r)) = rd
        .iter()
        .find(|(_, r)| r.maxmemory_bytes > 0 && r.used_memory_bytes * 10 >= r.maxmemory_bytes * 9)
    else {
        return Vec::new();
    };
    vec![Finding {
        rule: "redis.memory_near_max",
        layer: Layer::Redis,
        severity: Severity::Warning,
        title: "Redis memory near maxmemory".into(),
        evidence: format!(
            "{} of {} MB used {at:.0} s into the run",
            r.used_memory_bytes / 1_000_000,
            r.maxmemory_bytes / 1_000_000
        ),
        action: "Raise maxmemory, or expire results (Celery result_expires)".into(),
        cause_of: Vec::new(),
        explains: None,
        explained_by: None,
    }]
}

#[cfg(test)]
mod tests {
    use super::super::testing::{outcome, redis, ticks, with_evidence};
    use super::*;

    #[test]
    fn rejections_and_full_memory_are_found() {
        let run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let rejecting = ticks(3, |i| {
            vec![redis(|r| {
                r.rejected_connections = i as i64;
                r.maxclients = 10;
            })]
        });
        let found = with_evidence(&run, &rejecting, rejected_connections);
        assert!(
            found[0]
                .evidence
                .contains("3 connections rejected (maxclients 10)"),
            "{}",
            found[0].evidence
        );
        let full = ticks(3, |_| {
            vec![redis(|r| {
                r.used_memory_bytes = 95_000_000;
                r.maxmemory_bytes = 100_000_000;
            })]
        });
        assert_eq!(with_evidence(&run, &full, memory_near_max).len(), 1);
        let calm = ticks(3, |_| vec![redis(|r| r.maxmemory_bytes = 100_000_000)]);
        assert!(with_evidence(&run, &calm, memory_near_max).is_empty());
        assert!(with_evidence(&run, &calm, rejected_connections).is_empty());
    }
}
