//! Redis on one connection: `INFO clients`, `stats` and `memory`, and the lengths of named lists
//! on their databases (the Celery queue: `celery` on db 1). Where each list's broker lives is
//! checked during the run ([`queues`]), so that a queue watched in the wrong database says so.
//! In the same databases, Celery's task results and Kombu's unacked messages ([`results`]).

mod queues;
mod results;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use queues::Watch;

use crate::redact;
use crate::sample::{RedisValues, Values};
use crate::source::{Source, SourceError};

/// A list to watch: database and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Database number.
    pub db: i64,
    /// Key.
    pub name: String,
}

impl std::str::FromStr for Queue {
    type Err = String;

    /// `[DB/]NAME`, e.g. `1/celery`; without a db, the URL's (usually 0).
    fn from_str(input: &str) -> Result<Self, String> {
        match input.split_once('/') {
            Some((db, name)) if !name.is_empty() => Ok(Self {
                db: db.parse().map_err(|_| {
                    format!(
                        "{input:?}: {db:?} is not a database number (write DB/NAME, e.g. 1/celery)"
                    )
                })?,
                name: name.to_owned(),
            }),
            Some(_) => Err(format!("{input:?}: no list name after the '/'")),
            None if !input.is_empty() => Ok(Self {
                db: -1,
                name: input.to_owned(),
            }),
            None => Err("empty list name".into()),
        }
    }
}

/// Why `url` cannot name a Redis server, if it cannot: checked before the first tick, so that
/// a typo is one clear error instead of a source that stays down, retried forever.
pub fn check_url(url: &str) -> Result<(), String> {
    if redis::Client::open(url).is_ok() {
        return Ok(());
    }
    Err(format!(
        "{}: not a Redis URL: write redis://HOST:6379/DB (redis://:PASSWORD@HOST:6379/DB with a \
         password, rediss:// for TLS)",
        redact::url(url)
    ))
}

/// The Redis source.
pub struct Redis {
    url: String,
    queues: Vec<Queue>,
    connection: Option<(redis::aio::MultiplexedConnection, i64)>,
    previous: Option<(Instant, i64, i64)>,
    /// What the checks found of each queue, in the order of `queues`; built on the first
    /// connection, when the URL's database is known.
    watches: Option<Vec<Watch>>,
    check_every: Duration,
    next_check: Option<Instant>,
    notes: Vec<String>,
    /// Celery's results and Kombu's unacked messages in the databases watched.
    results: results::Results,
    /// Whether a failed reading of the results was said.
    results_failed: bool,
}

/// How often the databases are checked for the watched queues' broker keys.
const CHECK_EVERY: Duration = Duration::from_secs(10);

impl Redis {
    /// Watches the server at `url` and the lengths of `queues`.
    pub fn new(url: &str, queues: Vec<Queue>) -> Self {
        Self {
            url: url.to_owned(),
            queues,
            connection: None,
            previous: None,
            watches: None,
            check_every: CHECK_EVERY,
            next_check: None,
            notes: Vec::new(),
            results: results::Results::new(),
            results_failed: false,
        }
    }

    /// Checks where the queues live every `period` instead of every 10 s (the first reading
    /// always checks).
    pub fn with_check_every(mut self, period: Duration) -> Self {
        self.check_every = period;
        self
    }

    fn error(&self, what: &str, e: redis::RedisError) -> SourceError {
        SourceError(redact::scrub(
            &format!("{what} {}: {e}", redact::url(&self.url)),
            &self.url,
        ))
    }

    /// Connects unless connected; the first connection, which knows the URL's database, also
    /// sets up the queues' watches.
    async fn connect(&mut self) -> Result<(), SourceError> {
        if self.connection.is_some() {
            return Ok(());
        }
        let client =
            redis::Client::open(self.url.as_str()).map_err(|e| self.error("bad URL", e))?;
        let default_db = client.get_connection_info().redis_settings().db();
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| self.error("cannot connect to", e))?;
        self.connection = Some((connection, default_db));
        self.watches.get_or_insert_with(|| {
            self.queues
                .iter()
                .map(|q| Watch::new(q.resolved(default_db), &q.name))
                .collect()
        });
        Ok(())
    }
}

impl Queue {
    /// The database watched: the queue's own, or the URL's.
    fn resolved(&self, default_db: i64) -> i64 {
        if self.db < 0 { default_db } else { self.db }
    }
}

fn info_map(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|line| line.trim().split_once(':'))
        .collect()
}

fn number<T: std::str::FromStr + Default>(info: &HashMap<&str, &str>, key: &str) -> T {
    info.get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// `INFO clients stats memory`, and the length of each queue's list in its database.
async fn query(
    connection: &mut redis::aio::MultiplexedConnection,
    queues: &[Queue],
    default_db: i64,
) -> Result<(String, Vec<(String, i64)>), redis::RedisError> {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .arg("stats")
        .arg("memory")
        .query_async(connection)
        .await?;
    let mut lengths = Vec::new();
    for queue in queues {
        let db = queue.resolved(default_db);
        // SELECT, LLEN and SELECT back in one pipeline, so the connection's database
        // is never left switched.
        let (length,): (i64,) = redis::pipe()
            .cmd("SELECT")
            .arg(db)
            .ignore()
            .cmd("LLEN")
            .arg(&queue.name)
            .cmd("SELECT")
            .arg(default_db)
            .ignore()
            .query_async(connection)
            .await?;
        lengths.push((format!("{db}/{}", queue.name), length));
    }
    Ok((info, lengths))
}

#[async_trait::async_trait]
impl Source for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    async fn read(&mut self) -> Result<Values, SourceError> {
        self.connect().await?;
        let Some((connection, default_db)) = self.connection.as_mut() else {
            return Err(SourceError("no connection".into()));
        };
        let default_db = *default_db;
        let (info, lengths) = match query(connection, &self.queues, default_db).await {
            Ok(found) => found,
            Err(e) => {
                self.connection = None;
                return Err(self.error("lost", e));
            }
        };
        for (watch, (_, length)) in self.watches.iter_mut().flatten().zip(&lengths) {
            watch.saw_length(*length);
        }
        self.check_queues(default_db).await;
        let celery = self.read_celery(default_db).await;
        let mut values = self.values(&info, lengths);
        if let Values::Redis(redis) = &mut values {
            redis.celery = celery;
        }
        Ok(values)
    }
}

impl Redis {
    /// At the first reading and then every `check_every`, looks in every database for the
    /// queues' broker keys and lists (see [`queues`]); a failed check waits for the next one
    /// (the reading's own queries say whether the server is down).
    async fn check_queues(&mut self, default_db: i64) {
        let now = Instant::now();
        if self.queues.is_empty() || self.next_check.is_some_and(|at| now < at) {
            return;
        }
        self.next_check = Some(now + self.check_every);
        let (Some((connection, _)), Some(watches)) =
            (self.connection.as_mut(), self.watches.as_mut())
        else {
            return;
        };
        let names: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
        let Ok(checks) = queues::check(connection, &names, default_db).await else {
            return;
        };
        for (watch, check) in watches.iter_mut().zip(checks) {
            self.notes.extend(watch.judge(check));
        }
    }

    /// Celery's results and Kombu's unacked messages in the URL's database and each watched
    /// queue's; a failure (a server that refuses `SCAN` to this user) is said once and costs
    /// only these values.
    async fn read_celery(&mut self, default_db: i64) -> crate::celery::CeleryValues {
        let Some((connection, _)) = self.connection.as_mut() else {
            return crate::celery::CeleryValues::default();
        };
        let dbs: std::collections::BTreeSet<i64> = std::iter::once(default_db)
            .chain(self.queues.iter().map(|q| q.resolved(default_db)))
            .collect();
        match self.results.read(connection, &dbs, default_db).await {
            Ok((values, note)) => {
                self.notes.extend(note);
                values
            }
            Err(e) => {
                if !std::mem::replace(&mut self.results_failed, true) {
                    let error = self.error("Celery results not read from", e);
                    self.notes.push(error.0);
                }
                crate::celery::CeleryValues::default()
            }
        }
    }

    fn values(&mut self, info: &str, lengths: Vec<(String, i64)>) -> Values {
        let info = info_map(info);
        let now = Instant::now();
        let rejected: i64 = number(&info, "rejected_connections");
        let evicted: i64 = number(&info, "evicted_keys");
        let (rejected_delta, evicted_delta) = match self.previous {
            Some((_, r, e)) => ((rejected - r).max(0), (evicted - e).max(0)),
            None => (0, 0),
        };
        self.previous = Some((now, rejected, evicted));
        let connected: i64 = number(&info, "connected_clients");
        Values::Redis(RedisValues {
            // The monitor's own connection is one of them.
            connected_clients: (connected - 1).max(0),
            blocked_clients: number(&info, "blocked_clients"),
            maxclients: number(&info, "maxclients"),
            ops_per_sec: number(&info, "instantaneous_ops_per_sec"),
            rejected_connections: rejected_delta,
            evicted_keys: evicted_delta,
            commands_total: number(&info, "total_commands_processed"),
            rejected_connections_total: rejected.max(0) as u64,
            evicted_keys_total: evicted.max(0) as u64,
            used_memory_bytes: number(&info, "used_memory"),
            maxmemory_bytes: number(&info, "maxmemory"),
            lists: lengths.into_iter().collect(),
            celery: crate::celery::CeleryValues::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queues() {
        assert_eq!(
            "1/celery".parse::<Queue>(),
            Ok(Queue {
                db: 1,
                name: "celery".into()
            })
        );
        assert_eq!(
            "celery".parse::<Queue>(),
            Ok(Queue {
                db: -1,
                name: "celery".into()
            })
        );
        assert!("x/celery".parse::<Queue>().unwrap_err().contains("DB/NAME"));
        assert!("1/".parse::<Queue>().is_err());
    }
}
