//! The load generator watching itself: when its CPU is near its cores or its timers fire late,
//! every other figure of the run is suspect, so this layer is read first.

use super::{Evidence, Finding, Layer, Severity};

/// CPU near the user threads' cores, or timers 100 ms late, in 3 seconds or more.
pub fn saturated(e: &Evidence<'_>) -> Vec<Finding> {
    if e.cluster.is_some() {
        // Summed over workers, one saturated worker hides among idle ones: judged per worker.
        return Vec::new();
    }
    let cores = e.threads.max(1) as f64 * 100.0;
    let hot = e
        .history
        .iter()
        .filter(|h| h.loadgen_cpu_pct >= 0.9 * cores)
        .count();
    let late = e.history.iter().filter(|h| h.timer_lag_ms >= 100.0).count();
    if hot < 3 && late < 3 {
        return Vec::new();
    }
    let peak_cpu = e
        .history
        .iter()
        .map(|h| h.loadgen_cpu_pct)
        .fold(0.0, f64::max);
    let peak_lag = e.history.iter().map(|h| h.timer_lag_ms).fold(0.0, f64::max);
    vec![Finding {
        rule: "loadgen.saturated",
        layer: Layer::LoadGenerator,
        severity: Severity::Critical,
        title: "The load generator is the bottleneck".into(),
        evidence: format!(
            "loadgen used up to {peak_cpu:.0}% CPU ({} thread(s)); its timers fired up to {peak_lag:.0} ms late; {} of {} seconds affected: every other figure of this run is suspect",
            e.threads,
            hot.max(late),
            e.history.len()
        ),
        action: "Give loadgen more cores (--threads) or run it on another machine, or use fewer users per process".into(),
        cause_of: Vec::new(),
        explains: None,
        explained_by: None,
    }]
}

/// A worker of a distributed run saturated (CPU near its threads' cores, or timers 100 ms
/// late, in 3 seconds or more): its share of the figures is suspect, and it is named.
pub fn worker_saturated(e: &Evidence<'_>) -> Vec<Finding> {
    let Some(cluster) = e.cluster else {
        return Vec::new();
    };
    let hot: Vec<&crate::outcome::WorkerSummary> =
        cluster.workers.iter().filter(|w| w.saturated()).collect();
    if hot.is_empty() {
        return Vec::new();
    }
    let named: Vec<String> = hot
        .iter()
        .map(|w| {
            format!(
                "{} (up to {:.0}% CPU on {} thread(s), timers up to {:.0} ms late, {} s affected)",
                w.name, w.peak_cpu_pct, w.threads, w.peak_timer_lag_ms, w.saturated_secs
            )
        })
        .collect();
    vec![Finding {
        rule: "loadgen.worker_saturated",
        layer: Layer::LoadGenerator,
        severity: Severity::Critical,
        title: format!(
            "{} of {} worker(s) were the bottleneck",
            hot.len(),
            cluster.workers.len()
        ),
        evidence: format!(
            "{}: the figures of their users are suspect",
            named.join("; ")
        ),
        action:
            "Give these workers more cores, or start more workers so that each runs fewer users"
                .into(),
        cause_of: Vec::new(),
        explains: None,
        explained_by: None,
    }]
}

/// Workers lost during a distributed run: the load they carried was gone until the others
/// took their users.
pub fn workers_lost(e: &Evidence<'_>) -> Vec<Finding> {
    let Some(cluster) = e.cluster else {
        return Vec::new();
    };
    let lost: Vec<&crate::outcome::ClusterEvent> = cluster
        .events
        .iter()
        .filter(|event| event.kind == crate::outcome::EventKind::Lost)
        .collect();
    if lost.is_empty() {
        return Vec::new();
    }
    let what: Vec<String> = lost
        .iter()
        .map(|event| format!("at {:.0} s, {}", event.at_secs, event.what))
        .collect();
    vec![Finding {
        rule: "loadgen.worker_lost",
        layer: Layer::LoadGenerator,
        severity: Severity::Warning,
        title: format!("{} worker(s) lost during the run", lost.len()),
        evidence: what.join("; "),
        action: "Read the lost workers' logs (killed, out of memory, network cut); the load \
                 around those seconds was uneven"
            .into(),
        cause_of: Vec::new(),
        explains: None,
        explained_by: None,
    }]
}

/// `--memory-limit` stopped the ramp.
pub fn memory_limit(e: &Evidence<'_>) -> Vec<Finding> {
    let Some((at, users, rss)) = e.memory_limit_hit else {
        return Vec::new();
    };
    vec![Finding {
        rule: "loadgen.memory_limit",
        layer: Layer::LoadGenerator,
        severity: Severity::Warning,
        title: "loadgen reached its memory limit".into(),
        evidence: format!(
            "{} MB at {at} s with {users} users; no user was started after that",
            rss / 1_000_000
        ),
        action: "Raise --memory-limit, or run fewer users per process".into(),
        cause_of: vec!["load.plateau"],
        explains: None,
        explained_by: None,
    }]
}

/// The open model dropped iterations: the generator could not hold the arrival rate, with
/// its users at their cap (and the API's latency steady: else it is the API over capacity,
/// `load.over_capacity`), or its own CPU saturated. The figures measure a lower rate than
/// asked, so this is a validity item, not a property of the API.
pub fn arrival_rate_missed(e: &Evidence<'_>) -> Vec<Finding> {
    let counts = e.stats.arrivals.total;
    if counts.dropped == 0 {
        return Vec::new();
    }
    if e.over_capacity().is_some() {
        // The users at the cap were all waiting on a slow API: its capacity, which
        // `load.over_capacity` states; the generator kept up (the rule checks its CPU).
        return Vec::new();
    }
    let hot = e.generator_busy_secs();
    let secs = e.duration.as_secs_f64().max(1e-9);
    let why = if hot >= 3 {
        format!(
            "its own CPU was saturated ({hot} s with its threads' cores busy or its timers 100 ms late)"
        )
    } else {
        format!(
            "users at the cap of {} ({} made)",
            e.users_cap.unwrap_or(e.peak_users),
            e.peak_users
        )
    };
    let share = counts.dropped as f64 / counts.scheduled.max(1) as f64 * 100.0;
    vec![Finding {
        rule: "loadgen.arrival_rate_missed",
        layer: Layer::LoadGenerator,
        severity: if share >= 1.0 {
            Severity::Critical
        } else {
            Severity::Warning
        },
        title: format!(
            "The generator could not hold the arrival rate: {} iterations dropped, {why}",
            counts.dropped
        ),
        evidence: format!(
            "{} of {} iterations scheduled were dropped ({share:.1}%, {:.1}/s); {} started more than 1 ms late",
            counts.dropped,
            counts.scheduled,
            counts.dropped as f64 / secs,
            counts.late
        ),
        action: if hot >= 3 {
            "Give loadgen more cores (--threads), or share the rate among workers".into()
        } else {
            "Raise --max-users (the API answers slower than the rate needs users for), or lower \
             the rate: the throughput measured is below the rate asked"
                .into()
        },
        cause_of: vec!["load.plateau"],
        explains: None,
        explained_by: None,
    }]
}

#[cfg(test)]
mod tests {
    use super::super::testing::{outcome, with_evidence};
    use super::*;

    #[test]
    fn a_busy_generator_is_found_and_a_quiet_one_is_not() {
        let busy = outcome(
            &[5; 6],
            &[50; 6],
            900,
            &[95.0, 99.0, 97.0, 98.0, 99.0, 96.0],
        );
        let found = with_evidence(&busy, &[], saturated);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].evidence.contains("99% CPU"),
            "{}",
            found[0].evidence
        );
        let quiet = outcome(&[5; 6], &[50; 6], 900, &[20.0; 6]);
        assert!(with_evidence(&quiet, &[], saturated).is_empty());
    }

    #[test]
    fn dropped_iterations_say_the_users_cap_or_the_cpu() {
        let mut run = outcome(&[50; 6], &[25; 6], 2000, &[20.0; 6]);
        assert!(with_evidence(&run, &[], arrival_rate_missed).is_empty());
        run.stats.arrivals.total = crate::stats::ArrivalCounts {
            scheduled: 600,
            dropped: 450,
            late: 3,
        };
        run.users_cap = Some(50);
        let found = with_evidence(&run, &[], arrival_rate_missed);
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .title
                .contains("450 iterations dropped, users at the cap of 50"),
            "{}",
            found[0].title
        );
        assert_eq!(found[0].severity, Severity::Critical);
        let mut hot = run.clone();
        for row in &mut hot.history {
            row.loadgen_cpu_pct = 99.0;
        }
        let found = with_evidence(&hot, &[], arrival_rate_missed);
        assert!(found[0].title.contains("its own CPU"), "{}", found[0].title);
    }

    #[test]
    fn the_memory_limit_is_reported_with_its_figures() {
        let mut run = outcome(&[5; 6], &[50; 6], 10, &[]);
        assert!(with_evidence(&run, &[], memory_limit).is_empty());
        run.memory_limit_hit = Some((4, 120, 300_000_000));
        let found = with_evidence(&run, &[], memory_limit);
        assert!(
            found[0].evidence.contains("300 MB at 4 s with 120 users"),
            "{}",
            found[0].evidence
        );
    }

    fn worker(name: &str, saturated_secs: u64) -> crate::cluster::WorkerSummary {
        crate::cluster::WorkerSummary {
            name: name.into(),
            threads: 2,
            peak_cpu_pct: if saturated_secs > 0 { 195.0 } else { 40.0 },
            saturated_secs,
            ..Default::default()
        }
    }

    #[test]
    fn a_saturated_worker_is_named_and_the_others_are_not() {
        let mut run = outcome(&[6; 6], &[50; 6], 10, &[99.0; 6]);
        run.cluster = Some(crate::cluster::ClusterSummary {
            workers: vec![
                worker("w-busy", 5),
                worker("w-idle", 0),
                worker("w-brief", 2),
            ],
            events: Vec::new(),
        });
        let found = with_evidence(&run, &[], worker_saturated);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].rule, "loadgen.worker_saturated");
        assert_eq!(found[0].severity, Severity::Critical);
        assert_eq!(found[0].title, "1 of 3 worker(s) were the bottleneck");
        let evidence = &found[0].evidence;
        assert!(
            evidence.starts_with("w-busy (up to 195% CPU on 2 thread(s)")
                && evidence.contains("5 s affected"),
            "{evidence}"
        );
        assert!(
            !evidence.contains("w-idle") && !evidence.contains("w-brief"),
            "{evidence}"
        );
        // The cluster's summed CPU is never judged as one process's: per worker only.
        assert!(with_evidence(&run, &[], saturated).is_empty());
        // No cluster, or no worker saturated 3 s: nothing.
        if let Some(cluster) = &mut run.cluster {
            cluster.workers.remove(0);
        }
        assert!(with_evidence(&run, &[], worker_saturated).is_empty());
        run.cluster = None;
        assert!(with_evidence(&run, &[], worker_saturated).is_empty());
    }

    #[test]
    fn lost_workers_are_listed_with_when_and_other_events_are_not() {
        use crate::cluster::{ClusterEvent, ClusterSummary, EventKind};
        let event = |at_secs, kind, what: &str| ClusterEvent {
            at_secs,
            kind,
            what: what.into(),
        };
        let mut run = outcome(&[6; 6], &[50; 6], 10, &[]);
        run.cluster = Some(ClusterSummary {
            workers: vec![worker("a", 0), worker("b", 0)],
            events: vec![
                event(1.0, EventKind::Joined, "worker b joined"),
                event(4.2, EventKind::Lost, "worker b lost (closed)"),
                event(7.0, EventKind::Back, "worker b answers again"),
                event(9.0, EventKind::Lost, "worker a lost (no message for 3 s)"),
            ],
        });
        let found = with_evidence(&run, &[], workers_lost);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].rule, "loadgen.worker_lost");
        assert_eq!(found[0].title, "2 worker(s) lost during the run");
        assert_eq!(
            found[0].evidence,
            "at 4 s, worker b lost (closed); at 9 s, worker a lost (no message for 3 s)"
        );
        if let Some(cluster) = &mut run.cluster {
            cluster.events.retain(|e| e.kind != EventKind::Lost);
        }
        assert!(with_evidence(&run, &[], workers_lost).is_empty());
    }
}
