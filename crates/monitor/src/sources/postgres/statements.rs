//! Query-level evidence: the queries running at each tick (`pg_stat_activity`, their text
//! normalized before anything keeps it), and where `pg_stat_statements` is installed, each
//! statement's counters since the watch began, the top ones with the summary of their generic
//! plan (planned once per statement).

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;

use super::plan;
use crate::sample::{ActiveQuery, PlanSummary, Statement};
use crate::sql;

/// Query texts kept per tick.
const MAX_QUERIES: usize = 10;
/// Statements kept per tick.
const MAX_STATEMENTS: usize = 10;
/// Of those, the top ones planned.
const PLANNED: usize = 5;
/// Statements planned in one tick at most: planning never holds a tick up for long.
const PLANS_PER_TICK: usize = 2;
/// The characters of a query text kept.
const MAX_TEXT: usize = 400;

/// What the note about a missing `pg_stat_statements` says.
pub const INSTALL_NOTE: &str = "pg_stat_statements is not installed in the watched database: \
    no statement times or plans. Add shared_preload_libraries = 'pg_stat_statements' to \
    postgresql.conf, restart PostgreSQL, then run CREATE EXTENSION pg_stat_statements in the \
    API's database";

/// A statement's counters, as the server has them.
#[derive(Debug, Clone, Default)]
struct Counters {
    calls: i64,
    total_ms: f64,
    rows: i64,
    read: i64,
    hit: i64,
}

/// The statements' state across ticks.
#[derive(Default)]
pub struct Statements {
    /// The counters at the first reading, by queryid.
    baseline: Option<HashMap<i64, Counters>>,
    /// Whether the missing extension was said.
    noted: bool,
    /// Each planned statement's summary, `None` when it could not be planned: by queryid.
    plans: HashMap<i64, Option<PlanSummary>>,
    /// `server_version_num`.
    server_version: i32,
}

impl Statements {
    /// The queries running now (the monitor's own backend left out), grouped by normalized
    /// text, the most backends first.
    pub async fn active(
        connection: &mut PgConnection,
        all: bool,
    ) -> Result<Vec<ActiveQuery>, sqlx::Error> {
        let rows: Vec<(String, Option<String>, Option<String>, f64)> = sqlx::query_as(
            "SELECT COALESCE(query, ''), wait_event_type, wait_event,
                    COALESCE(EXTRACT(EPOCH FROM now() - query_start), 0)::float8
             FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND state = 'active' AND ($1 OR datname = current_database())",
        )
        .bind(all)
        .fetch_all(connection)
        .await?;
        let mut by_text: BTreeMap<String, ActiveQuery> = BTreeMap::new();
        for (raw, wait_type, wait_event, secs) in rows {
            // The raw text goes no further than this line.
            let query = sql::normalize(&raw, MAX_TEXT);
            let entry = by_text.entry(query.clone()).or_insert_with(|| ActiveQuery {
                query,
                ..Default::default()
            });
            entry.backends += 1;
            entry.longest_secs = entry.longest_secs.max(secs);
            if let (Some(kind), Some(event)) = (wait_type, wait_event) {
                *entry.waits.entry(format!("{kind}:{event}")).or_default() += 1;
            }
        }
        let mut queries: Vec<ActiveQuery> = by_text.into_values().collect();
        queries.sort_by(|a, b| b.backends.cmp(&a.backends).then(a.query.cmp(&b.query)));
        queries.truncate(MAX_QUERIES);
        Ok(queries)
    }

    /// The top statements by execution time since the first call, their total, and a note
    /// (once) when `pg_stat_statements` is missing. `url` is for the planning connection.
    pub async fn read(
        &mut self,
        connection: &mut PgConnection,
        url: &str,
        all: bool,
        notes: &mut Vec<String>,
    ) -> Result<(Vec<Statement>, f64), sqlx::Error> {
        let installed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')",
        )
        .fetch_one(&mut *connection)
        .await?;
        if !installed {
            if !self.noted {
                notes.push(INSTALL_NOTE.into());
                self.noted = true;
            }
            return Ok((Vec::new(), 0.0));
        }
        if self.server_version == 0 {
            let version: String = sqlx::query_scalar("SHOW server_version_num")
                .fetch_one(&mut *connection)
                .await?;
            self.server_version = version.parse().unwrap_or(0);
        }
        let now = counters(connection, all).await?;
        let baseline = self.baseline.get_or_insert_with(|| {
            now.iter()
                .map(|(id, (_, counters))| (*id, counters.clone()))
                .collect()
        });
        // One statement per normalized text: PostgreSQL before 18 counts `IN ($1, $2)` and
        // `IN ($1, $2, $3)` apart, where a list's length is no part of the statement.
        let mut by_text: HashMap<String, Statement> = HashMap::new();
        let mut total_ms = 0.0;
        for (queryid, (text, counters)) in &now {
            let before = baseline.get(queryid).cloned().unwrap_or_default();
            let calls = (counters.calls - before.calls).max(0);
            let ms = (counters.total_ms - before.total_ms).max(0.0);
            total_ms += ms;
            if calls == 0 {
                continue;
            }
            let query = sql::normalize(text, MAX_TEXT);
            let entry = by_text.entry(query.clone()).or_insert_with(|| Statement {
                queryid: *queryid,
                query,
                ..Default::default()
            });
            // The member with the most time names the statement and is the one planned
            // (`mean_ms` holds that member's time until the means are computed below).
            if ms > entry.mean_ms {
                entry.queryid = *queryid;
                entry.mean_ms = ms;
            }
            entry.calls += calls;
            entry.total_ms += ms;
            entry.rows += (counters.rows - before.rows).max(0);
            entry.shared_blks_read += (counters.read - before.read).max(0);
            entry.shared_blks_hit += (counters.hit - before.hit).max(0);
        }
        let mut statements: Vec<Statement> = by_text.into_values().collect();
        for statement in &mut statements {
            statement.mean_ms = statement.total_ms / statement.calls as f64;
        }
        statements.sort_by(|a, b| {
            b.total_ms
                .total_cmp(&a.total_ms)
                .then(a.queryid.cmp(&b.queryid))
        });
        statements.truncate(MAX_STATEMENTS);
        self.plan(&mut statements, &now, url).await;
        Ok((statements, total_ms))
    }

    /// Plans the top statements not planned yet (a few per tick), and attaches every plan known.
    async fn plan(
        &mut self,
        statements: &mut [Statement],
        now: &HashMap<i64, (String, Counters)>,
        url: &str,
    ) {
        let mut planned = 0;
        for statement in statements.iter_mut().take(PLANNED) {
            if !self.plans.contains_key(&statement.queryid) && planned < PLANS_PER_TICK {
                planned += 1;
                let text = now
                    .get(&statement.queryid)
                    .map_or("", |(text, _)| text.as_str());
                let summary = plan::explain(url, self.server_version, text).await;
                if let Err(e) = &summary {
                    // The error names the statement's objects, never its values: PostgreSQL's
                    // text has its constants replaced.
                    tracing::debug!(queryid = statement.queryid, "no plan: {e}");
                }
                self.plans.insert(statement.queryid, summary.ok());
            }
        }
        for statement in statements.iter_mut() {
            statement.plan = self.plans.get(&statement.queryid).cloned().flatten();
        }
    }
}

/// Whether a statement is one the monitor itself sends: its catalog reads and the planning.
fn own(text: &str) -> bool {
    let keyword = sql::first_keyword(text);
    matches!(
        keyword.as_deref(),
        Some("EXPLAIN" | "PREPARE" | "DEALLOCATE" | "SET" | "SHOW")
    ) || sql::words(text).iter().any(|w| {
        w.starts_with("pg_stat_")
            || matches!(w.as_str(), "pg_class" | "pg_extension" | "pg_blocking_pids")
    })
}

/// Every statement's counters now, by queryid, with PostgreSQL's normalized text (summed over
/// users and, for the database scope, within the watched database).
async fn counters(
    connection: &mut PgConnection,
    all: bool,
) -> Result<HashMap<i64, (String, Counters)>, sqlx::Error> {
    let rows: Vec<(i64, String, i64, f64, i64, i64, i64)> = sqlx::query_as(
        "SELECT queryid, min(query), sum(calls)::int8, sum(total_exec_time)::float8,
                sum(rows)::int8, sum(shared_blks_read)::int8, sum(shared_blks_hit)::int8
         FROM pg_stat_statements
         WHERE queryid IS NOT NULL
           AND ($1 OR dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
         GROUP BY queryid",
    )
    .bind(all)
    .fetch_all(connection)
    .await?;
    Ok(rows
        .into_iter()
        .filter(|row| !own(&row.1))
        .map(|(id, text, calls, total_ms, rows, read, hit)| {
            let counters = Counters {
                calls,
                total_ms,
                rows,
                read,
                hit,
            };
            (id, (text, counters))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monitors_own_statements_are_left_out() {
        assert!(own(
            "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
        ));
        assert!(own(
            "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE loadgen_explain($1)"
        ));
        assert!(own("SET statement_timeout = $1"));
        assert!(!own("SELECT * FROM file_events WHERE user_id = $1"));
    }
}
