//! PostgreSQL on one connection: client backends by state, waits by type, blocked backends,
//! the longest query and transactions (from `pg_stat_activity`, the monitor's own backend
//! excluded), against `max_connections`; and `pg_stat_database` deltas. Then the queries behind
//! them: the running ones by normalized text, and `pg_stat_statements`' top statements with
//! their plans ([`statements`], [`plan`]).

pub mod plan;
pub mod statements;

use std::time::Instant;

use sqlx::postgres::PgRow;
use sqlx::{Connection, PgConnection, Row};

use crate::redact;
use crate::sample::{PostgresClients, PostgresValues, Values};
use crate::source::{Source, SourceError};

/// The largest groups of client backends kept per sample.
const MAX_CLIENT_GROUPS: usize = 20;

/// Which backends count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only those connected to the URL's database (the API's).
    Database,
    /// Every database of the server.
    Server,
}

struct Totals {
    at: Instant,
    commits: i64,
    rollbacks: i64,
    hits: i64,
    reads: i64,
    deadlocks: i64,
}

/// Why `url` cannot name a PostgreSQL server, if it cannot: checked before the first tick, so
/// that a typo is one clear error instead of a source that stays down, retried forever.
pub fn check_url(url: &str) -> Result<(), String> {
    use std::str::FromStr;
    let postgres =
        url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "postgres" | "postgresql"));
    if postgres && sqlx::postgres::PgConnectOptions::from_str(url).is_ok() {
        return Ok(());
    }
    Err(format!(
        "{}: not a PostgreSQL URL: write postgres://USER:PASSWORD@HOST:5432/DATABASE",
        redact::url(url)
    ))
}

/// The PostgreSQL source.
pub struct Postgres {
    url: String,
    scope: Scope,
    /// The connection, the server's `max_connections` and the URL's database.
    connection: Option<(PgConnection, i64, String)>,
    previous: Option<Totals>,
    /// The statements since the watch began, kept across reconnections.
    statements: statements::Statements,
    /// What to say once, drained by [`Source::notes`].
    notes: Vec<String>,
    /// Whether reading `pg_stat_statements` failed once already (said once).
    statements_failed: bool,
}

impl Postgres {
    /// Watches the server at `url`.
    pub fn new(url: &str, scope: Scope) -> Self {
        Self {
            url: url.to_owned(),
            scope,
            connection: None,
            previous: None,
            statements: statements::Statements::default(),
            notes: Vec::new(),
            statements_failed: false,
        }
    }

    fn error(&self, what: &str, e: sqlx::Error) -> SourceError {
        SourceError(redact::scrub(
            &format!("{what} {}: {e}", redact::url(&self.url)),
            &self.url,
        ))
    }

    async fn query(&mut self) -> Result<PostgresValues, sqlx::Error> {
        let all = self.scope == Scope::Server;
        let Some((connection, max_connections, database)) = self.connection.as_mut() else {
            return Err(sqlx::Error::PoolClosed);
        };
        let max_connections = *max_connections;
        let database = database.clone();
        let row = activity(connection, all).await?;
        let waits = waits(connection, all).await?;
        let clients = client_groups(connection).await?;
        let now = Totals::read(connection, all).await?;
        let connections: i64 = row.try_get("connections")?;
        let mut values = PostgresValues {
            connections,
            max_connections,
            connections_pct: connections as f64 * 100.0 / max_connections.max(1) as f64,
            active: row.try_get("active")?,
            idle: row.try_get("idle")?,
            idle_in_transaction: row.try_get("iit")?,
            idle_in_transaction_aborted: row.try_get("iit_aborted")?,
            waiting: waits.into_iter().collect(),
            blocked: row.try_get("blocked")?,
            longest_query_secs: row.try_get("longest_query")?,
            longest_transaction_secs: row.try_get("longest_xact")?,
            longest_idle_in_transaction_secs: row.try_get("longest_iit")?,
            cache_hit_pct: 100.0,
            commits_total: now.commits,
            rollbacks_total: now.rollbacks,
            deadlocks_total: now.deadlocks,
            server_connections: clients.iter().map(|c| c.connections).sum(),
            database,
            clients: clients.into_iter().take(MAX_CLIENT_GROUPS).collect(),
            ..Default::default()
        };
        if let Some(before) = &self.previous {
            now.rates_since(before, &mut values);
        }
        self.previous = Some(now);
        values.queries = statements::Statements::active(connection, all).await?;
        // The statements are extra evidence: a server that will not give them still gives the
        // rest.
        match (self.statements)
            .read(connection, &self.url, all, &mut self.notes)
            .await
        {
            Ok((statements, total_ms)) => {
                values.statements = statements;
                values.statements_total_ms = total_ms;
            }
            Err(e) if !self.statements_failed => {
                self.statements_failed = true;
                let message = format!("cannot read pg_stat_statements: {e}");
                self.notes.push(redact::scrub(&message, &self.url));
            }
            Err(_) => {}
        }
        Ok(values)
    }
}

/// Client backends by state, blocked ones, and the longest query and transactions, from
/// `pg_stat_activity` (the monitor's own backend left out).
async fn activity(connection: &mut PgConnection, all: bool) -> Result<PgRow, sqlx::Error> {
    sqlx::query(
        "SELECT
                count(*) AS connections,
                count(*) FILTER (WHERE state = 'active') AS active,
                count(*) FILTER (WHERE state = 'idle') AS idle,
                count(*) FILTER (WHERE state = 'idle in transaction') AS iit,
                count(*) FILTER (WHERE state = 'idle in transaction (aborted)') AS iit_aborted,
                count(*) FILTER (WHERE cardinality(pg_blocking_pids(pid)) > 0) AS blocked,
                COALESCE(EXTRACT(EPOCH FROM max(now() - query_start) FILTER (WHERE state = 'active')), 0)::float8 AS longest_query,
                COALESCE(EXTRACT(EPOCH FROM max(now() - xact_start)), 0)::float8 AS longest_xact,
                COALESCE(EXTRACT(EPOCH FROM max(now() - state_change) FILTER (WHERE state LIKE 'idle in transaction%')), 0)::float8 AS longest_iit
             FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND ($1 OR datname = current_database())",
    )
    .bind(all)
    .fetch_one(connection)
    .await
}

/// Backends waiting, by wait event type.
async fn waits(
    connection: &mut PgConnection,
    all: bool,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    // Idle backends wait on Client/Activity events: those are not waits that matter.
    sqlx::query_as(
        "SELECT wait_event_type, count(*) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
               AND ($1 OR datname = current_database())
               AND state <> 'idle' AND wait_event_type IS NOT NULL
               AND wait_event_type NOT IN ('Client', 'Activity')
             GROUP BY wait_event_type",
    )
    .bind(all)
    .fetch_all(connection)
    .await
}

/// Server-wide, whatever the scope: which pool holds how many backends, and how busy; the
/// largest groups first.
async fn client_groups(connection: &mut PgConnection) -> Result<Vec<PostgresClients>, sqlx::Error> {
    let groups: Vec<(String, String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT COALESCE(datname, ''), COALESCE(application_name, ''),
                    COALESCE(host(client_addr), 'local'), count(*),
                    count(*) FILTER (WHERE state = 'active'),
                    count(*) FILTER (WHERE state LIKE 'idle in transaction%')
             FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
             GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3",
    )
    .fetch_all(connection)
    .await?;
    Ok(groups
        .into_iter()
        .map(
            |(database, application, address, connections, active, iit)| PostgresClients {
                database,
                application,
                address,
                connections,
                active,
                idle_in_transaction: iit,
            },
        )
        .collect())
}

impl Totals {
    /// The counters of `pg_stat_database`, now.
    async fn read(connection: &mut PgConnection, all: bool) -> Result<Self, sqlx::Error> {
        let db: (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT COALESCE(sum(xact_commit), 0)::int8, COALESCE(sum(xact_rollback), 0)::int8,
                    COALESCE(sum(blks_hit), 0)::int8, COALESCE(sum(blks_read), 0)::int8,
                    COALESCE(sum(deadlocks), 0)::int8
             FROM pg_stat_database WHERE $1 OR datname = current_database()",
        )
        .bind(all)
        .fetch_one(connection)
        .await?;
        Ok(Self {
            at: Instant::now(),
            commits: db.0,
            rollbacks: db.1,
            hits: db.2,
            reads: db.3,
            deadlocks: db.4,
        })
    }

    /// Commits and rollbacks per second, the cache hit ratio and the deadlocks since `before`.
    fn rates_since(&self, before: &Totals, values: &mut PostgresValues) {
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-3);
        values.commits_per_sec = (self.commits - before.commits).max(0) as f64 / secs;
        values.rollbacks_per_sec = (self.rollbacks - before.rollbacks).max(0) as f64 / secs;
        let (hits, reads) = (self.hits - before.hits, self.reads - before.reads);
        if hits + reads > 0 {
            values.cache_hit_pct = hits as f64 * 100.0 / (hits + reads) as f64;
        }
        values.deadlocks = (self.deadlocks - before.deadlocks).max(0);
    }
}

#[async_trait::async_trait]
impl Source for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    async fn read(&mut self) -> Result<Values, SourceError> {
        if self.connection.is_none() {
            let mut connection = PgConnection::connect(&self.url)
                .await
                .map_err(|e| self.error("cannot connect to", e))?;
            let max: String = sqlx::query_scalar("SHOW max_connections")
                .fetch_one(&mut connection)
                .await
                .map_err(|e| self.error("cannot read max_connections from", e))?;
            let database: String = sqlx::query_scalar("SELECT current_database()::text")
                .fetch_one(&mut connection)
                .await
                .map_err(|e| self.error("cannot read the database name from", e))?;
            self.connection = Some((connection, max.parse().unwrap_or(100), database));
            self.previous = None;
        }
        match self.query().await {
            Ok(values) => Ok(Values::Postgres(values)),
            Err(e) => {
                self.connection = None;
                Err(self.error("lost", e))
            }
        }
    }
}
