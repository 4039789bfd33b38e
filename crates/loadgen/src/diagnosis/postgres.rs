//! PostgreSQL: connections against `max_connections`, lock waits, sessions idle in transaction,
//! and the pool too small for the load (slow requests while the database idles).

use super::{Evidence, Finding, Layer, Severity};

fn lock_waiting(p: &monitor::sample::PostgresValues) -> i64 {
    p.blocked.max(p.waiting.get("Lock").copied().unwrap_or(0))
}

/// Samples with backends waiting on locks.
fn lock_samples(e: &Evidence<'_>) -> usize {
    e.backend
        .postgres()
        .iter()
        .filter(|(_, p)| lock_waiting(p) > 0)
        .count()
}

/// 80 % of `max_connections` or more at some point.
pub fn connections_near_max(e: &Evidence<'_>) -> Vec<Finding> {
    let pg = e.backend.postgres();
    let Some((at, peak)) = pg
        .iter()
        .max_by(|a, b| a.1.connections_pct.total_cmp(&b.1.connections_pct))
    else {
        return Vec::new();
    };
    if peak.connections_pct < 80.0 {
        return Vec::new();
    }
    vec![Finding {
        rule: "postgres.connections_near_max",
        layer: Layer::Postgres,
        severity: if peak.connections_pct >= 95.0 { Severity::Critical } else { Severity::Warning },
        title: "PostgreSQL connections near max_connections".into(),
        evidence: format!("{} of {} connections ({:.0}%) in use {at:.0} s into the run", peak.connections, peak.max_connections, peak.connections_pct),
        action: "Put a pooler (PgBouncer) in front, lower the API's pool size per process, or raise max_connections".into(),
        cause_of: vec!["load.slow_endpoints", "load.server_errors"],
    }]
}

/// Backends blocked on locks in 2 samples or more.
pub fn lock_waits(e: &Evidence<'_>) -> Vec<Finding> {
    let pg = e.backend.postgres();
    let waiting: Vec<_> = pg.iter().filter(|(_, p)| lock_waiting(p) > 0).collect();
    if waiting.len() < 2 {
        return Vec::new();
    }
    let peak = waiting
        .iter()
        .map(|(_, p)| lock_waiting(p))
        .max()
        .unwrap_or(0);
    let longest_tx = pg
        .iter()
        .map(|(_, p)| p.longest_transaction_secs)
        .fold(0.0, f64::max);
    let latency = if e.slow() {
        format!("; steady-state p95 {:.0} ms", e.p95_ms())
    } else {
        String::new()
    };
    vec![Finding {
        rule: "postgres.lock_waits",
        layer: Layer::Postgres,
        severity: Severity::Critical,
        title: "PostgreSQL backends wait on locks".into(),
        evidence: format!(
            "up to {peak} backends blocked, in {} of {} samples from {:.0} s; longest open transaction {longest_tx:.0} s{latency}",
            waiting.len(),
            pg.len(),
            waiting[0].0,
        ),
        action: "Find the session holding the lock (pg_locks join pg_stat_activity, pg_blocking_pids) and shorten its transaction".into(),
        cause_of: vec!["load.slow_endpoints", "postgres.idle_in_transaction"],
    }]
}

/// Sessions idle in transaction for 5 s or more, in 3 samples or more (and no lock waits,
/// which would be the finding that explains them).
pub fn idle_in_transaction(e: &Evidence<'_>) -> Vec<Finding> {
    let idle: Vec<_> = e
        .backend
        .postgres()
        .into_iter()
        .filter(|(_, p)| p.idle_in_transaction > 0 && p.longest_idle_in_transaction_secs >= 5.0)
        .collect();
    if idle.len() < 3 {
        return Vec::new();
    }
    let worst = idle
        .iter()
        .map(|(_, p)| p.longest_idle_in_transaction_secs)
        .fold(0.0, f64::max);
    let most = idle
        .iter()
        .map(|(_, p)| p.idle_in_transaction)
        .max()
        .unwrap_or(0);
    vec![Finding {
        rule: "postgres.idle_in_transaction",
        layer: Layer::Postgres,
        severity: Severity::Warning,
        title: "PostgreSQL sessions idle in transaction".into(),
        evidence: format!("up to {most} sessions idle in transaction, the longest for {worst:.0} s"),
        action: "A transaction is opened and left waiting (commit earlier; set idle_in_transaction_session_timeout)".into(),
        cause_of: Vec::new(),
    }]
}

/// Slow requests while PostgreSQL has at most 2 active backends, busy in half the samples, and
/// no lock waits: requests queue for a pool connection, not for the database.
pub fn small_pool(e: &Evidence<'_>) -> Vec<Finding> {
    let pg = e.backend.postgres();
    if !e.slow() || pg.len() < 3 || lock_samples(e) >= 2 {
        return Vec::new();
    }
    let max_active = pg.iter().map(|(_, p)| p.active).max().unwrap_or(0);
    let busy = pg.iter().filter(|(_, p)| p.active >= 1).count();
    if max_active > 2 || busy * 2 < pg.len() {
        return Vec::new();
    }
    vec![Finding {
        rule: "postgres.small_pool",
        layer: Layer::Postgres,
        severity: Severity::Critical,
        title: "Requests queue for a small database pool".into(),
        evidence: format!(
            "steady-state p95 {:.0} ms while PostgreSQL had at most {max_active} active backend(s) (busy in {busy} of {} samples, no lock waits, {} max_connections)",
            e.p95_ms(),
            pg.len(),
            pg.last().map_or(0, |(_, p)| p.max_connections)
        ),
        action: "The database is idle while requests wait: raise the API's connection pool size (and check for slow queries holding the few connections)".into(),
        cause_of: vec!["load.slow_endpoints", "load.plateau"],
    }]
}

#[cfg(test)]
mod tests {
    use super::super::testing::{outcome, postgres, ticks, with_evidence};
    use super::*;

    #[test]
    fn connections_near_the_limit_are_found() {
        let run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let full = ticks(4, |i| {
            vec![postgres(|p| {
                p.connections = 90 + i as i64;
                p.max_connections = 100;
                p.connections_pct = 90.0 + i as f64;
            })]
        });
        let found = with_evidence(&run, &full, connections_near_max);
        assert!(
            found[0].evidence.contains("93 of 100"),
            "{}",
            found[0].evidence
        );
        let calm = ticks(4, |_| vec![postgres(|p| p.connections_pct = 20.0)]);
        assert!(with_evidence(&run, &calm, connections_near_max).is_empty());
    }

    #[test]
    fn lock_waits_explain_slowness_and_rule_out_the_small_pool() {
        let slow = outcome(&[5; 6], &[20; 6], 900, &[]);
        let locked = ticks(5, |_| {
            vec![postgres(|p| {
                p.blocked = 3;
                p.active = 1;
            })]
        });
        assert_eq!(with_evidence(&slow, &locked, lock_waits).len(), 1);
        assert!(with_evidence(&slow, &locked, small_pool).is_empty());
    }

    #[test]
    fn a_small_pool_is_slow_requests_over_an_idle_database() {
        let slow = outcome(&[5; 6], &[20; 6], 900, &[]);
        let one_active = ticks(5, |_| vec![postgres(|p| p.active = 1)]);
        assert_eq!(with_evidence(&slow, &one_active, small_pool).len(), 1);
        let busy_db = ticks(5, |_| vec![postgres(|p| p.active = 12)]);
        assert!(with_evidence(&slow, &busy_db, small_pool).is_empty());
        let fast = outcome(&[5; 6], &[20; 6], 10, &[]);
        assert!(with_evidence(&fast, &one_active, small_pool).is_empty());
    }

    #[test]
    fn long_idle_transactions_are_found() {
        let run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let idle = ticks(4, |_| {
            vec![postgres(|p| {
                p.idle_in_transaction = 2;
                p.longest_idle_in_transaction_secs = 12.0;
            })]
        });
        let found = with_evidence(&run, &idle, idle_in_transaction);
        assert!(
            found[0].evidence.contains("the longest for 12 s"),
            "{}",
            found[0].evidence
        );
    }
}
