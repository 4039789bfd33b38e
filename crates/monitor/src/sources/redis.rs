//! Redis on one connection: `INFO clients`, `stats` and `memory`, and the lengths of named lists
//! on their databases (the Celery queue: `celery` on db 1).

use std::collections::HashMap;
use std::time::Instant;

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
    /// Whether the queues were looked for once (on the first good connection).
    queues_checked: bool,
    notes: Vec<String>,
}

/// Databases searched for a queue missing from its own (Redis's default count).
const DATABASES: i64 = 16;

impl Redis {
    /// Watches the server at `url` and the lengths of `queues`.
    pub fn new(url: &str, queues: Vec<Queue>) -> Self {
        Self {
            url: url.to_owned(),
            queues,
            connection: None,
            previous: None,
            queues_checked: false,
            notes: Vec::new(),
        }
    }

    fn error(&self, what: &str, e: redis::RedisError) -> SourceError {
        SourceError(redact::scrub(
            &format!("{what} {}: {e}", redact::url(&self.url)),
            &self.url,
        ))
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

#[async_trait::async_trait]
impl Source for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    async fn read(&mut self) -> Result<Values, SourceError> {
        if self.connection.is_none() {
            let client =
                redis::Client::open(self.url.as_str()).map_err(|e| self.error("bad URL", e))?;
            let default_db = client.get_connection_info().redis_settings().db();
            let connection = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| self.error("cannot connect to", e))?;
            self.connection = Some((connection, default_db));
        }
        let Some((connection, default_db)) = self.connection.as_mut() else {
            return Err(SourceError("no connection".into()));
        };
        let default_db = *default_db;
        let result: Result<(String, Vec<(String, i64)>), redis::RedisError> = async {
            let info: String = redis::cmd("INFO")
                .arg("clients")
                .arg("stats")
                .arg("memory")
                .query_async(connection)
                .await?;
            let mut lengths = Vec::new();
            for queue in &self.queues {
                let db = if queue.db < 0 { default_db } else { queue.db };
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
        .await;
        let (info, lengths) = match result {
            Ok(found) => found,
            Err(e) => {
                self.connection = None;
                return Err(self.error("lost", e));
            }
        };
        if !self.queues_checked {
            self.queues_checked = true;
            self.notes = self.look_for_queues(default_db).await;
        }
        let info = info_map(&info);
        let now = Instant::now();
        let rejected: i64 = number(&info, "rejected_connections");
        let evicted: i64 = number(&info, "evicted_keys");
        let (rejected_delta, evicted_delta) = match self.previous {
            Some((_, r, e)) => ((rejected - r).max(0), (evicted - e).max(0)),
            None => (0, 0),
        };
        self.previous = Some((now, rejected, evicted));
        let connected: i64 = number(&info, "connected_clients");
        Ok(Values::Redis(RedisValues {
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
        }))
    }
}

impl Redis {
    /// A watched queue absent from its database but present in another reads 0 for the whole
    /// run: one note for each, naming the databases where the key is. A key absent everywhere
    /// is no note: Celery deletes an empty list, so an idle queue has no key.
    async fn look_for_queues(&mut self, default_db: i64) -> Vec<String> {
        let Some((connection, _)) = self.connection.as_mut() else {
            return Vec::new();
        };
        let mut notes = Vec::new();
        for queue in &self.queues {
            let db = if queue.db < 0 { default_db } else { queue.db };
            let mut found_in = Vec::new();
            let mut in_own = false;
            for candidate in 0..DATABASES {
                let exists: Result<(i64,), _> = redis::pipe()
                    .cmd("SELECT")
                    .arg(candidate)
                    .ignore()
                    .cmd("EXISTS")
                    .arg(&queue.name)
                    .cmd("SELECT")
                    .arg(default_db)
                    .ignore()
                    .query_async(connection)
                    .await;
                match exists {
                    Ok((1,)) if candidate == db => in_own = true,
                    Ok((1,)) => found_in.push(candidate),
                    Ok(_) => {}
                    // Fewer databases than 16: the rest do not exist.
                    Err(_) => break,
                }
            }
            if in_own || found_in.is_empty() {
                continue;
            }
            let dbs: Vec<String> = found_in.iter().map(i64::to_string).collect();
            notes.push(format!(
                "queue {:?} does not exist in db {db}, but in db {}: watch {}/{} (it reads 0 as it is)",
                queue.name,
                dbs.join(", "),
                found_in[0],
                queue.name
            ));
        }
        notes
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
