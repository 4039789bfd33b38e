//! Diagnosis over one timeline: the load's per-second history and the backend's ticks, side by
//! side. Each rule names the layer at fault and cites the figures and times it rests on.

use monitor::sample::{PostgresValues, RedisValues, Tick, Values};

use super::analysis::{Finding, Severity, Targets};
use crate::runner::RunOutcome;
use crate::stats::Phase;

/// Title of the finding that must come before all others.
pub const LOADGEN_SATURATED: &str = "The load generator is the bottleneck";

fn postgres(ticks: &[Tick]) -> Vec<(f64, &PostgresValues)> {
    let start = ticks.first().map(|t| t.timestamp);
    ticks
        .iter()
        .filter_map(
            |t| match t.sources.get("postgres").and_then(|r| r.values.as_ref()) {
                Some(Values::Postgres(p)) => Some((secs_since(start, t), p)),
                _ => None,
            },
        )
        .collect()
}

fn redis(ticks: &[Tick]) -> Vec<(f64, &RedisValues)> {
    let start = ticks.first().map(|t| t.timestamp);
    ticks
        .iter()
        .filter_map(
            |t| match t.sources.get("redis").and_then(|r| r.values.as_ref()) {
                Some(Values::Redis(r)) => Some((secs_since(start, t), r)),
                _ => None,
            },
        )
        .collect()
}

fn secs_since(start: Option<chrono::DateTime<chrono::Utc>>, tick: &Tick) -> f64 {
    start.map_or(0.0, |s| {
        (tick.timestamp - s).num_milliseconds() as f64 / 1000.0
    })
}

/// Every backend and self-watch finding.
pub fn findings(outcome: &RunOutcome, ticks: &[Tick], targets: Targets) -> Vec<Finding> {
    let mut found = Vec::new();
    loadgen(outcome, &mut found);
    let steady = outcome.stats.aggregated(Phase::Steady);
    let slow = steady.count > 0 && steady.percentile_ms(95.0) >= targets.p95_ms;
    let p95 = steady.percentile_ms(95.0);

    let pg = postgres(ticks);
    let busiest = pg
        .iter()
        .max_by(|a, b| a.1.connections_pct.total_cmp(&b.1.connections_pct));
    if let Some((at, peak)) = busiest
        && peak.connections_pct >= 80.0
    {
        found.push(Finding {
            severity: if peak.connections_pct >= 95.0 { Severity::Critical } else { Severity::Warning },
            title: "PostgreSQL connections near max_connections".into(),
            evidence: format!("{} of {} connections ({:.0}%) in use {at:.0} s into the run", peak.connections, peak.max_connections, peak.connections_pct),
            action: "Put a pooler (PgBouncer) in front, lower the API's pool size per process, or raise max_connections".into(),
        });
    }
    let lock_ticks: Vec<&(f64, &PostgresValues)> = pg
        .iter()
        .filter(|(_, p)| p.blocked > 0 || p.waiting.get("Lock").copied().unwrap_or(0) > 0)
        .collect();
    if lock_ticks.len() >= 2 {
        let peak = lock_ticks
            .iter()
            .map(|(_, p)| p.blocked.max(p.waiting.get("Lock").copied().unwrap_or(0)))
            .max()
            .unwrap_or(0);
        let longest_tx = pg
            .iter()
            .map(|(_, p)| p.longest_transaction_secs)
            .fold(0.0, f64::max);
        found.push(Finding {
            severity: Severity::Critical,
            title: "PostgreSQL backends wait on locks".into(),
            evidence: format!(
                "up to {peak} backends blocked, in {} of {} samples from {:.0} s; longest open transaction {longest_tx:.0} s{}",
                lock_ticks.len(),
                pg.len(),
                lock_ticks[0].0,
                if slow { format!("; steady-state p95 {p95:.0} ms") } else { String::new() }
            ),
            action: "Find the session holding the lock (pg_locks join pg_stat_activity, pg_blocking_pids) and shorten its transaction".into(),
        });
    }
    let iit: Vec<&(f64, &PostgresValues)> = pg
        .iter()
        .filter(|(_, p)| p.idle_in_transaction > 0 && p.longest_idle_in_transaction_secs >= 5.0)
        .collect();
    if iit.len() >= 3 && lock_ticks.len() < 2 {
        let worst = iit
            .iter()
            .map(|(_, p)| p.longest_idle_in_transaction_secs)
            .fold(0.0, f64::max);
        found.push(Finding {
            severity: Severity::Warning,
            title: "PostgreSQL sessions idle in transaction".into(),
            evidence: format!("up to {} sessions idle in transaction, the longest for {worst:.0} s", iit.iter().map(|(_, p)| p.idle_in_transaction).max().unwrap_or(0)),
            action: "A transaction is opened and left waiting (commit earlier; set idle_in_transaction_session_timeout)".into(),
        });
    }
    // Latency high while the database does almost nothing: requests wait for a connection from
    // a pool that is too small, not for the database.
    if slow && lock_ticks.len() < 2 && pg.len() >= 3 {
        let max_active = pg.iter().map(|(_, p)| p.active).max().unwrap_or(0);
        let busy = pg.iter().filter(|(_, p)| p.active >= 1).count();
        if max_active <= 2 && busy * 2 >= pg.len() {
            found.push(Finding {
                severity: Severity::Critical,
                title: "Requests queue for a small database pool".into(),
                evidence: format!(
                    "steady-state p95 {p95:.0} ms while PostgreSQL had at most {max_active} active backend(s) (busy in {busy} of {} samples, no lock waits, {} max_connections)",
                    pg.len(),
                    pg.last().map_or(0, |(_, p)| p.max_connections)
                ),
                action: "The database is idle while requests wait: raise the API's connection pool size (and check for slow queries holding the few connections)".into(),
            });
        }
    }

    let rd = redis(ticks);
    let rejected: i64 = rd.iter().map(|(_, r)| r.rejected_connections).sum();
    if rejected > 0 {
        found.push(Finding {
            severity: Severity::Critical,
            title: "Redis rejects connections".into(),
            evidence: format!(
                "{rejected} connections rejected (maxclients {})",
                rd.last().map_or(0, |(_, r)| r.maxclients)
            ),
            action: "Raise maxclients or pool the API's and workers' Redis connections".into(),
        });
    }
    if let Some((at, r)) = rd
        .iter()
        .find(|(_, r)| r.maxmemory_bytes > 0 && r.used_memory_bytes * 10 >= r.maxmemory_bytes * 9)
    {
        found.push(Finding {
            severity: Severity::Warning,
            title: "Redis memory near maxmemory".into(),
            evidence: format!(
                "{} of {} MB used {at:.0} s into the run",
                r.used_memory_bytes / 1_000_000,
                r.maxmemory_bytes / 1_000_000
            ),
            action: "Raise maxmemory, or expire results (Celery result_expires)".into(),
        });
    }
    if let (Some((t0, first)), Some((t1, last))) = (rd.first(), rd.last()) {
        for (list, start) in &first.lists {
            let end = last.lists.get(list).copied().unwrap_or(0);
            let rises = rd
                .windows(2)
                .filter(|w| w[1].1.lists.get(list) > w[0].1.lists.get(list))
                .count();
            if end >= start + 5 && rises >= 3 && t1 > t0 {
                found.push(Finding {
                    severity: Severity::Critical,
                    title: "The job queue grows".into(),
                    evidence: format!("Redis list {list} grew from {start} to {end} in {:.0} s ({:+.2}/s)", t1 - t0, (end - start) as f64 / (t1 - t0)),
                    action: "Jobs arrive faster than the workers finish them: add Celery workers (or concurrency), or check that they are not stuck".into(),
                });
            }
        }
    }

    // A container near a full core (or its share of the host) while requests are slow.
    for (name, peak, hot) in containers_busy(ticks) {
        if hot >= 3 && slow {
            let costly = costliest_endpoints(outcome);
            found.push(Finding {
                severity: Severity::Critical,
                title: format!("CPU of container {name} is saturated"),
                evidence: format!("{name} at {peak:.0}% CPU in {hot} samples while the steady-state p95 was {p95:.0} ms; the endpoints that cost most time: {costly}"),
                action: "Profile those endpoints; add API processes (workers) or CPU; move CPU-heavy work (bcrypt, ffmpeg) out of the request path".into(),
            });
        }
    }

    plateau(outcome, &mut found);
    found
}

fn containers_busy(ticks: &[Tick]) -> Vec<(String, f64, usize)> {
    let mut by_name: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    for tick in ticks {
        if let Some(Values::Docker(d)) = tick.sources.get("docker").and_then(|r| r.values.as_ref())
        {
            for (name, c) in &d.containers {
                let entry = by_name.entry(name.clone()).or_default();
                entry.0 = entry.0.max(c.cpu_pct);
                entry.1 += usize::from(c.cpu_pct >= 85.0);
            }
        }
    }
    by_name
        .into_iter()
        .map(|(n, (peak, hot))| (n, peak, hot))
        .collect()
}

fn costliest_endpoints(outcome: &RunOutcome) -> String {
    let mut rows: Vec<(f64, String)> = outcome
        .stats
        .endpoints
        .iter()
        .map(|(k, e)| {
            (
                e.total_us as f64 / 1e6,
                format!(
                    "{} {} ({:.0} s in all, avg {:.0} ms)",
                    k.method,
                    k.name,
                    e.total_us as f64 / 1e6,
                    e.average_ms()
                ),
            )
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows.into_iter()
        .take(3)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The load generator watching itself: CPU near its cores, or timers firing late.
fn loadgen(outcome: &RunOutcome, found: &mut Vec<Finding>) {
    let cores = outcome.threads.max(1) as f64 * 100.0;
    let hot: Vec<_> = outcome
        .history
        .iter()
        .filter(|h| h.loadgen_cpu_pct >= 0.9 * cores)
        .collect();
    let late: Vec<_> = outcome
        .history
        .iter()
        .filter(|h| h.timer_lag_ms >= 100.0)
        .collect();
    if hot.len() >= 3 || late.len() >= 3 {
        let peak_cpu = outcome
            .history
            .iter()
            .map(|h| h.loadgen_cpu_pct)
            .fold(0.0, f64::max);
        let peak_lag = outcome
            .history
            .iter()
            .map(|h| h.timer_lag_ms)
            .fold(0.0, f64::max);
        found.push(Finding {
            severity: Severity::Critical,
            title: LOADGEN_SATURATED.into(),
            evidence: format!(
                "loadgen used up to {peak_cpu:.0}% CPU ({} thread(s)); its timers fired up to {peak_lag:.0} ms late; {} of {} seconds affected: every other figure of this run is suspect",
                outcome.threads,
                hot.len().max(late.len()),
                outcome.history.len()
            ),
            action: "Give loadgen more cores (--threads) or run it on another machine, or use fewer users per process".into(),
        });
    }
    if let Some((at, users, rss)) = outcome.memory_limit_hit {
        found.push(Finding {
            severity: Severity::Warning,
            title: "loadgen reached its memory limit".into(),
            evidence: format!(
                "{} MB at {at} s with {users} users; no user was started after that",
                rss / 1_000_000
            ),
            action: "Raise --memory-limit, or run fewer users per process".into(),
        });
    }
}

/// Users rise but req/s stays flat: the capacity, and the user count where it was reached.
fn plateau(outcome: &RunOutcome, found: &mut Vec<Finding>) {
    let h = &outcome.history;
    let peak = h.iter().map(|r| r.users).max().unwrap_or(0);
    if peak < 4 || h.len() < 8 {
        return;
    }
    let rps = |rows: &[crate::runner::HistoryRow]| {
        rows.iter().map(|r| r.interval.count as f64).sum::<f64>() / rows.len().max(1) as f64
    };
    let Some(half_at) = h.iter().position(|r| r.users * 2 >= peak) else {
        return;
    };
    let Some(full_at) = h.iter().position(|r| r.users == peak) else {
        return;
    };
    if full_at < half_at + 3 || h.len() < full_at + 3 {
        return;
    }
    let at_half = rps(&h[half_at..(half_at + 3).min(full_at)]);
    let at_full = rps(&h[full_at..]);
    let users_half = h[half_at].users;
    if at_half > 0.0 && (peak as f64) >= 1.8 * users_half as f64 && at_full < 1.2 * at_half {
        found.push(Finding {
            severity: Severity::Warning,
            title: "Throughput plateau".into(),
            evidence: format!(
                "{at_half:.1} req/s at {users_half} users and {at_full:.1} req/s at {peak} users: capacity reached at about {users_half} users (from {} s into the run)",
                h[half_at].at_secs
            ),
            action: "This is the capacity limit: the findings above say which layer sets it".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, SystemTime};

    use monitor::sample::{ContainerValues, DockerValues, SourceReading};

    use super::*;
    use crate::runner::HistoryRow;
    use crate::stats::{EndpointStats, Key, Stats};

    /// A run whose second `i` had `users[i]` users, `rps[i]` requests of `latency_ms`, and
    /// loadgen at `cpu[i]` percent.
    fn run(users: &[u64], rps: &[u64], latency_ms: u64, cpu: &[f64]) -> RunOutcome {
        let mut stats = Stats::default();
        let mut history = Vec::new();
        for (i, (&u, &n)) in users.iter().zip(rps).enumerate() {
            let mut second = EndpointStats::default();
            for _ in 0..n {
                second.record(latency_ms * 1000, 10, Some(200), false);
            }
            let key = Key {
                phase: Phase::Steady,
                method: "GET".into(),
                name: "/api/v1/tasks".into(),
            };
            stats.endpoints.entry(key).or_default().merge(&second);
            history.push(HistoryRow {
                at_secs: i as u64 + 1,
                timestamp: SystemTime::now(),
                users: u,
                interval: second,
                loadgen_cpu_pct: cpu.get(i).copied().unwrap_or(0.0),
                loadgen_rss_bytes: 1,
                timer_lag_ms: 0.0,
                endpoints: Vec::new(),
                jobs_done: 0,
                jobs_in_flight: 0,
                cumulative: Default::default(),
            });
        }
        RunOutcome {
            stats,
            history,
            started_at: SystemTime::now(),
            duration: Duration::from_secs(users.len() as u64),
            peak_users: users.iter().copied().max().unwrap_or(0),
            users_by_type: BTreeMap::new(),
            interrupted: false,
            run_id: "t".into(),
            threads: 1,
            memory_limit_hit: None,
        }
    }

    fn titles(found: &[Finding]) -> Vec<&str> {
        found.iter().map(|f| f.title.as_str()).collect()
    }

    #[test]
    fn a_throughput_plateau_names_the_users_where_it_began() {
        let users = [5, 10, 10, 10, 15, 20, 20, 20, 20, 20];
        let rps = [25, 50, 50, 50, 51, 52, 50, 51, 50, 50];
        let found = findings(&run(&users, &rps, 10, &[]), &[], Targets::default());
        let plateau = found
            .iter()
            .find(|f| f.title == "Throughput plateau")
            .expect("plateau found");
        assert!(
            plateau.evidence.contains("at 10 users"),
            "{}",
            plateau.evidence
        );
        // Throughput that grows with the users is no plateau.
        let growing = [25, 50, 50, 50, 75, 100, 100, 100, 100, 100];
        assert!(
            !titles(&findings(
                &run(&users, &growing, 10, &[]),
                &[],
                Targets::default()
            ))
            .contains(&"Throughput plateau")
        );
    }

    #[test]
    fn a_saturated_load_generator_is_said_first() {
        let outcome = run(
            &[5; 6],
            &[50; 6],
            900,
            &[95.0, 99.0, 97.0, 98.0, 99.0, 96.0],
        );
        let found = findings(&outcome, &[], Targets::default());
        assert_eq!(found[0].title, LOADGEN_SATURATED);
        assert!(
            found[0].evidence.contains("99% CPU"),
            "{}",
            found[0].evidence
        );
        let quiet = run(&[5; 6], &[50; 6], 900, &[20.0; 6]);
        assert!(!titles(&findings(&quiet, &[], Targets::default())).contains(&LOADGEN_SATURATED));
    }

    #[test]
    fn a_saturated_api_container_is_named_with_its_costliest_endpoints() {
        let outcome = run(&[5; 6], &[20; 6], 900, &[]);
        let ticks: Vec<Tick> = (0..6)
            .map(|i| {
                let container = ContainerValues {
                    state: "running".into(),
                    cpu_pct: 99.0,
                    ..Default::default()
                };
                let values = Values::Docker(DockerValues {
                    containers: BTreeMap::from([("api".to_owned(), container)]),
                });
                let now = chrono::Utc::now() + chrono::Duration::seconds(i);
                Tick {
                    tick: i as u64 + 1,
                    timestamp: now,
                    spread_ms: 0.0,
                    sources: BTreeMap::from([(
                        "docker".to_owned(),
                        SourceReading {
                            at: now,
                            up: true,
                            error: None,
                            values: Some(values),
                        },
                    )]),
                }
            })
            .collect();
        let found = findings(&outcome, &ticks, Targets::default());
        let cpu = found
            .iter()
            .find(|f| f.title == "CPU of container api is saturated")
            .expect("found");
        assert!(
            cpu.evidence.contains("GET /api/v1/tasks"),
            "{}",
            cpu.evidence
        );
    }
}
