//! PostgreSQL: connections against `max_connections`, lock waits, sessions idle in transaction,
//! and the API's pool exhausted (its backends at a ceiling, all busy, while requests slow down),
//! or too small for the load (slow requests while the database idles).

use monitor::sample::{PostgresClients, PostgresValues};

use super::{Evidence, Finding, Layer, Severity};

/// Client backends in use and their share of `max_connections`, server-wide when the monitor
/// counted the whole server (`max_connections` is the server's, whatever the scope).
fn connection_share(p: &PostgresValues) -> (i64, f64) {
    if p.server_connections > 0 {
        let pct = p.server_connections as f64 * 100.0 / p.max_connections.max(1) as f64;
        (p.server_connections, pct)
    } else {
        (p.connections, p.connections_pct)
    }
}

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
        .max_by(|a, b| connection_share(a.1).1.total_cmp(&connection_share(b.1).1))
    else {
        return Vec::new();
    };
    let (used, pct) = connection_share(peak);
    if pct < 80.0 {
        return Vec::new();
    }
    vec![Finding {
        rule: "postgres.connections_near_max",
        layer: Layer::Postgres,
        severity: if pct >= 95.0 { Severity::Critical } else { Severity::Warning },
        title: "PostgreSQL connections near max_connections".into(),
        evidence: format!("{used} of {} connections ({pct:.0}%) in use {at:.0} s into the run", peak.max_connections),
        action: "Put a pooler (PgBouncer) in front, lower the API's pool size per process, or raise max_connections".into(),
        cause_of: vec!["load.slow_endpoints", "load.stuck_users", "load.server_errors"],
        explains: None,
        explained_by: None,
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
    let waiting_at: Vec<f64> = waiting.iter().map(|(at, _)| *at).collect();
    let explained = e.slowdown_share_at(&waiting_at);
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
            "up to {peak} backends blocked, in {} of {} samples from {:.0} s; longest open transaction {longest_tx:.0} s{latency}{}{}",
            waiting.len(),
            pg.len(),
            waiting[0].0,
            super::statements::lock_note(e),
            explained.map_or(String::new(), |share| format!("; {share}"))
        ),
        action: "Find the session holding the lock (pg_locks join pg_stat_activity, pg_blocking_pids) and shorten its transaction".into(),
        cause_of: vec!["load.slow_endpoints", "load.stuck_users", "postgres.idle_in_transaction"],
        explains: explained,
        explained_by: None,
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
        explains: None,
        explained_by: None,
    }]
}

/// Validity: the watched database had no client backend in any sample while other databases of
/// the server had some: the API uses another database, and the pool findings would judge the
/// wrong one (they fall back on the whole server, which mixes in everything else it serves).
pub fn no_api_backends(e: &Evidence<'_>) -> Vec<Finding> {
    let pg = e.backend.postgres();
    let Some((_, last)) = pg.last() else {
        return Vec::new();
    };
    let watched = last.database.as_str();
    if pg.len() < 3 || watched.is_empty() || watched == "postgres" {
        return Vec::new();
    }
    let in_watched = pg
        .iter()
        .flat_map(|(_, p)| &p.clients)
        .any(|c| c.database == watched && c.connections > 0);
    if in_watched {
        return Vec::new();
    }
    let mut others: Vec<(i64, &str)> = Vec::new();
    for client in pg.iter().flat_map(|(_, p)| &p.clients) {
        if client.database == "postgres" || client.database.is_empty() {
            continue;
        }
        match others.iter_mut().find(|(_, db)| *db == client.database) {
            Some((most, _)) => *most = (*most).max(client.connections),
            None => others.push((client.connections, client.database.as_str())),
        }
    }
    others.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let Some((most, busiest)) = others.first() else {
        return Vec::new();
    };
    vec![Finding::new(
        "postgres.no_api_backends",
        Layer::Postgres,
        Severity::Warning,
        format!("The watched database {watched} had no client while {busiest} had some"),
        format!(
            "no backend connected to database {watched} in any of {} samples, while database {busiest} had up to {most}: the API uses {busiest}",
            pg.len()
        ),
        format!(
            "Watch the API's database: --monitor-postgres with /{busiest} at the end of its URL"
        ),
    )]
}

/// Each pool (a database, application and client address), with its backends in each sample
/// (none where it had none): those of the monitor URL's database when it had any (the API's),
/// else every pool of the server. A URL naming `postgres`, the server's maintenance database
/// (where admin tools and other monitors connect, never an API), watches the whole server.
fn pools<'a>(pg: &[(f64, &'a PostgresValues)]) -> Vec<(&'a PostgresClients, Vec<(i64, i64)>)> {
    let same = |a: &PostgresClients, b: &PostgresClients| {
        a.database == b.database && a.application == b.application && a.address == b.address
    };
    let in_watched = |c: &&PostgresClients| {
        pg.iter().any(|(_, p)| {
            !p.database.is_empty() && p.database != "postgres" && p.database == c.database
        })
    };
    let all = pg.iter().flat_map(|(_, p)| &p.clients);
    let watched_has_clients = all.clone().any(|c| in_watched(&c));
    let mut pools: Vec<&PostgresClients> = Vec::new();
    for client in all.filter(|c| !watched_has_clients || in_watched(c)) {
        if !pools.iter().any(|known| same(known, client)) {
            pools.push(client);
        }
    }
    pools
        .into_iter()
        .map(|pool| {
            let series = pg
                .iter()
                .map(|(_, p)| {
                    p.clients
                        .iter()
                        .find(|c| same(c, pool))
                        .map_or((0, 0), |c| (c.connections, c.active))
                })
                .collect();
            (pool, series)
        })
        .collect()
}

/// The fullest pool of the API's database through `pg` (see [`pools`]): who it is, its
/// ceiling (the most backends it held), and the share of the samples in which all of them were
/// busy, percent. A capacity search compares it across the knee: a pool full a little of the
/// time below the edge and most of it beyond is what gave out.
pub fn fullest_pool(pg: &[(f64, &PostgresValues)]) -> Option<(String, i64, f64)> {
    pools(pg)
        .into_iter()
        .filter_map(|(pool, series)| {
            let ceiling = series.iter().map(|(c, _)| *c).max().filter(|c| *c > 0)?;
            let full = series
                .iter()
                .filter(|(c, active)| *c == ceiling && *active >= ceiling)
                .count();
            Some((
                pool.describe(),
                ceiling,
                full as f64 * 100.0 / series.len().max(1) as f64,
            ))
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
}

/// Requests slow down while a pool's backends stay at one count (in 70 % of the samples or
/// more), all of them busy in half of those or more, well under `max_connections` and without
/// lock waits in half the samples (a few brief ones, as the workers' updates make on a busy
/// host, do not explain a pool that stays full): requests wait for a connection of that pool, whatever its size. Judged on every
/// pool of the server, so it holds whichever database the monitor's URL names and whatever
/// else the server serves.
pub fn pool_exhausted(e: &Evidence<'_>) -> Vec<Finding> {
    let pg = e.backend.postgres();
    if !e.strained() || pg.len() < 5 || lock_samples(e) * 2 >= pg.len() {
        return Vec::new();
    }
    let max_connections = pg.last().map_or(0, |(_, p)| p.max_connections);
    pools(&pg)
        .into_iter()
        .filter_map(|(pool, series)| {
            let ceiling = series.iter().map(|(c, _)| *c).max().unwrap_or(0);
            // Judged from the first sample at the ceiling: a pool opens its connections as the
            // users ramp up, and on a busy host that can take a few samples.
            let from = series.iter().position(|(c, _)| *c == ceiling).unwrap_or(0);
            let judged = series.len() - from;
            let at_ceiling = series.iter().filter(|(c, _)| *c == ceiling).count();
            let all_busy = series
                .iter()
                .filter(|(c, active)| *c == ceiling && *active >= ceiling)
                .count();
            let exhausted = ceiling > 0
                && judged >= 5
                && at_ceiling * 10 >= judged * 7
                && all_busy * 2 >= at_ceiling
                && (ceiling as f64) < 0.8 * max_connections as f64;
            let full_at: Vec<f64> = pg
                .iter()
                .zip(&series)
                .filter(|(_, (c, active))| *c == ceiling && *active >= ceiling)
                .map(|((at, _), _)| *at)
                .collect();
            exhausted.then(|| Finding {
                rule: "postgres.pool_exhausted",
                layer: Layer::Postgres,
                severity: Severity::Critical,
                title: "Requests wait for the API's database pool".into(),
                evidence: format!(
                    "steady-state p95 {:.0} ms while the backends of {} stayed at {ceiling} in {at_ceiling} of {} samples, all {ceiling} busy in {all_busy}; the server allows {max_connections}, no lock waits{}{}",
                    e.p95_ms(),
                    pool.describe(),
                    series.len(),
                    super::statements::time_note(e),
                    e.slowdown_share_at(&full_at)
                        .map_or(String::new(), |share| format!("; {share}"))
                ),
                action: format!(
                    "Every connection of the pool is busy and requests queue for one: raise the pool size (SQLAlchemy pool_size + max_overflow; {ceiling} now, the server has room for {}), or shorten the queries that hold the connections",
                    max_connections - ceiling
                ),
                cause_of: vec![
                    "load.slow_endpoints",
                    "load.stuck_users",
                    "load.plateau",
                    "jobs.queue_grows",
                    "jobs.queueing",
                ],
                explains: e.slowdown_share_at(&full_at),
                explained_by: None,
            })
        })
        .collect()
}

/// Slow requests while PostgreSQL has at most 2 active backends, busy in half the samples, and
/// no lock waits: requests queue for a pool connection, not for the database. Judged only
/// where the monitor could not tell the API's backends apart (an older monitor); otherwise
/// [`pool_exhausted`] judges the API's own pool.
pub fn small_pool(e: &Evidence<'_>) -> Vec<Finding> {
    let pg = e.backend.postgres();
    if !e.slow() || pg.len() < 3 || lock_samples(e) * 2 >= pg.len() {
        return Vec::new();
    }
    if pg.iter().any(|(_, p)| !p.clients.is_empty()) {
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
        cause_of: vec!["load.slow_endpoints", "load.stuck_users", "load.plateau"],
        explains: None,
        explained_by: None,
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

    fn api(connections: i64, active: i64) -> PostgresClients {
        PostgresClients {
            database: "ffmpeg_api".into(),
            application: String::new(),
            address: "172.18.0.3".into(),
            connections,
            active,
            idle_in_transaction: 0,
        }
    }

    #[test]
    fn the_fullest_pool_is_the_share_of_samples_with_every_backend_busy() {
        // A pool of 2, both busy in 3 of 4 samples: 75 %.
        let ticks = ticks(4, |i| {
            vec![postgres(|p| {
                p.clients = vec![api(2, 2 - i64::from(i == 0))]
            })]
        });
        let backend = crate::diagnosis::Backend::new(&ticks);
        let (who, ceiling, full_pct) = fullest_pool(&backend.postgres()).unwrap();
        assert_eq!((ceiling, full_pct), (2, 75.0), "{who}");
        assert!(who.contains("ffmpeg_api"), "{who}");
    }

    #[test]
    fn a_pool_is_judged_from_when_it_filled_up() {
        // 4 samples of ramp-up (1 connection), then 8 at the ceiling of 2, all busy: 8 of 12
        // samples in all, but every sample since it filled up.
        let slow = outcome(&[5; 12], &[20; 12], 900, &[]);
        let filling = ticks(12, |i| {
            let size = if i < 4 { 1 } else { 2 };
            vec![postgres(|p| p.clients = vec![api(size, size)])]
        });
        let found = with_evidence(&slow, &filling, pool_exhausted);
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn a_pool_at_its_ceiling_all_busy_while_requests_slow_is_exhausted_whatever_its_size() {
        let slow = outcome(&[5; 6], &[20; 6], 900, &[]);
        for size in [1, 10, 40] {
            // The monitor watches the `postgres` database: its own scope shows nothing.
            let full = ticks(8, |_| {
                vec![postgres(|p| {
                    p.clients = vec![api(size, size)];
                    p.server_connections = size;
                })]
            });
            let found = with_evidence(&slow, &full, pool_exhausted);
            assert_eq!(found.len(), 1, "pool of {size}");
            assert!(
                found[0].evidence.contains(&format!(
                    "of database ffmpeg_api, from 172.18.0.3 stayed at {size} in 8 of 8 samples"
                )),
                "{}",
                found[0].evidence
            );
            assert!(with_evidence(&slow, &full, small_pool).is_empty());
        }
        // Fast requests, a pool that moves, or idle connections: not exhausted.
        let fast = outcome(&[5; 6], &[20; 6], 10, &[]);
        let full = ticks(8, |_| vec![postgres(|p| p.clients = vec![api(10, 10)])]);
        assert!(with_evidence(&fast, &full, pool_exhausted).is_empty());
        let moving = ticks(8, |i| {
            vec![postgres(|p| p.clients = vec![api(2 + i as i64, 2)])]
        });
        assert!(with_evidence(&slow, &moving, pool_exhausted).is_empty());
        let idle = ticks(8, |_| vec![postgres(|p| p.clients = vec![api(10, 1)])]);
        assert!(with_evidence(&slow, &idle, pool_exhausted).is_empty());
        // Another application's larger, calmer pool on the same server changes nothing.
        let shared = ticks(8, |i| {
            let other = PostgresClients {
                database: "billing".into(),
                connections: 30 + (i % 3) as i64,
                active: 2,
                ..api(0, 0)
            };
            vec![postgres(|p| p.clients = vec![other, api(5, 5)])]
        });
        let found = with_evidence(&slow, &shared, pool_exhausted);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].evidence.contains("database ffmpeg_api"));
        // Watching the API's database, another database's exhausted pool is not the API's.
        let billing_full = |watched: &'static str| {
            ticks(8, move |_| {
                let billing = PostgresClients {
                    database: "billing".into(),
                    ..api(5, 5)
                };
                // An admin session (or another monitor) in the maintenance database.
                let admin = PostgresClients {
                    database: "postgres".into(),
                    ..api(1, 0)
                };
                vec![postgres(|p| {
                    p.database = watched.into();
                    p.clients = vec![billing, api(10, 1), admin];
                })]
            })
        };
        assert!(with_evidence(&slow, &billing_full("ffmpeg_api"), pool_exhausted).is_empty());
        // Watching `postgres`: every pool of the server is judged, whoever else connects there.
        let found = with_evidence(&slow, &billing_full("postgres"), pool_exhausted);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].evidence.contains("database billing"));
    }

    #[test]
    fn the_connection_share_is_the_servers_when_it_was_counted() {
        let run = outcome(&[5; 6], &[20; 6], 10, &[]);
        // The URL's database has 2 backends; the server, 92 of its 100.
        let full = ticks(4, |_| {
            vec![postgres(|p| {
                p.connections = 2;
                p.connections_pct = 2.0;
                p.server_connections = 92;
            })]
        });
        let found = with_evidence(&run, &full, connections_near_max);
        assert!(
            found[0].evidence.contains("92 of 100"),
            "{}",
            found[0].evidence
        );
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

    #[test]
    fn a_watched_database_without_clients_while_another_has_them_is_named() {
        let run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let elsewhere = |watched: &'static str, n: usize| {
            ticks(n, move |i| {
                vec![postgres(|p| {
                    p.database = watched.into();
                    p.clients = vec![
                        PostgresClients {
                            database: "billing".into(),
                            ..api(2 + i as i64, 1)
                        },
                        PostgresClients {
                            database: "app".into(),
                            ..api(3, 1)
                        },
                        // The maintenance database is never the API's.
                        PostgresClients {
                            database: "postgres".into(),
                            ..api(9, 1)
                        },
                    ];
                })]
            })
        };
        let found = with_evidence(&run, &elsewhere("ffmpeg_api", 4), no_api_backends);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].rule, "postgres.no_api_backends");
        assert_eq!(
            found[0].title,
            "The watched database ffmpeg_api had no client while billing had some"
        );
        assert!(
            found[0]
                .evidence
                .contains("in any of 4 samples, while database billing had up to 5"),
            "{}",
            found[0].evidence
        );
        assert!(found[0].action.contains("/billing"), "{}", found[0].action);
        // Too few samples to say; or the whole server watched (`postgres`): nothing.
        assert!(with_evidence(&run, &elsewhere("ffmpeg_api", 2), no_api_backends).is_empty());
        assert!(with_evidence(&run, &elsewhere("postgres", 4), no_api_backends).is_empty());
        // One client of the watched database in one sample: it is the API's.
        let mut used = elsewhere("ffmpeg_api", 4);
        if let Some(monitor::sample::Values::Postgres(p)) = used[2]
            .sources
            .get_mut("postgres")
            .and_then(|r| r.values.as_mut())
        {
            p.clients.push(api(1, 0));
        }
        assert!(with_evidence(&run, &used, no_api_backends).is_empty());
    }
}
