//! Celery's Redis result backend and Kombu's unacknowledged messages, in the databases the
//! source watches (the URL's and each watched queue's). Results are found with `SCAN` (never
//! `KEYS`: a broker's database may hold millions of keys), a bounded number of calls and of
//! values read per tick, the cursor kept from tick to tick; a result in a final state is read
//! once and remembered. Results finished before the source started belong to earlier runs and
//! are not counted.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Value};

use crate::celery::result::{self, KEY_PREFIX};
use crate::celery::{CeleryValues, Failures};

/// `SCAN` calls per database per tick.
const SCANS_PER_TICK: usize = 8;
/// Keys each `SCAN` call looks at (a hint to the server).
const SCAN_COUNT: usize = 500;
/// Results read (`MGET`) per database per tick; the rest wait for the next ticks.
const READS_PER_TICK: usize = 400;
/// Result keys remembered; past this, no more results are read (a note says so).
const MAX_REMEMBERED: usize = 200_000;
/// How much earlier than the source's start a result may have finished and still count: the
/// worker's clock and the monitor's may differ a little.
const CLOCK_SLACK: TimeDelta = TimeDelta::seconds(5);

/// The reading of results across ticks.
#[derive(Debug)]
pub(super) struct Results {
    started: DateTime<Utc>,
    /// `SCAN` cursor of each database, 0 at the start of a cycle.
    cursors: HashMap<i64, u64>,
    /// Result keys in a final state already read, by database.
    read: HashSet<(i64, String)>,
    full: bool,
}

impl Results {
    /// Results finished from now on are counted.
    pub fn new() -> Self {
        Self {
            started: Utc::now(),
            cursors: HashMap::new(),
            read: HashSet::new(),
            full: false,
        }
    }

    /// One tick's reading of `dbs`; returns the values and a note to give, if any. The
    /// connection's database is `default_db` again afterwards.
    pub async fn read(
        &mut self,
        connection: &mut MultiplexedConnection,
        dbs: &BTreeSet<i64>,
        default_db: i64,
    ) -> RedisResult<(CeleryValues, Option<String>)> {
        let mut values = CeleryValues::default();
        let mut failures = Failures::default();
        let mut note = None;
        for &db in dbs {
            let (unacked, index, keys) = self.scan(connection, db, default_db).await?;
            values.unacked += unacked;
            values.unacked_index += index;
            if self.full {
                continue;
            }
            let blobs = mget(connection, db, default_db, &keys).await?;
            for (key, blob) in keys.into_iter().zip(blobs) {
                let Some(read) = blob.as_deref().and_then(result::parse) else {
                    continue;
                };
                if read.is_final() {
                    self.read.insert((db, key));
                } else {
                    // Read again once it ends; not counted twice.
                    continue;
                }
                if read
                    .done
                    .is_some_and(|done| done < self.started - CLOCK_SLACK)
                {
                    continue;
                }
                let task = read.task.clone().unwrap_or_else(|| "?".into());
                *values
                    .tasks
                    .entry(task)
                    .or_insert_with(BTreeMap::new)
                    .entry(read.status.clone())
                    .or_default() += 1;
                if let Some(failure) = read.failure {
                    failures.add(failure);
                }
            }
            if self.read.len() >= MAX_REMEMBERED && !self.full {
                self.full = true;
                note = Some(format!(
                    "{MAX_REMEMBERED} Celery results read: no more are read in this run"
                ));
            }
        }
        values.failures = failures.into_vec();
        Ok((values, note))
    }

    /// Kombu's `unacked` and `unacked_index` sizes in `db`, and the result keys not read yet
    /// that up to [`SCANS_PER_TICK`] `SCAN` calls found (at most [`READS_PER_TICK`]).
    async fn scan(
        &mut self,
        connection: &mut MultiplexedConnection,
        db: i64,
        default_db: i64,
    ) -> RedisResult<(u64, u64, Vec<String>)> {
        let (unacked, index): (u64, u64) = redis::pipe()
            .cmd("SELECT")
            .arg(db)
            .ignore()
            .cmd("HLEN")
            .arg("unacked")
            .cmd("ZCARD")
            .arg("unacked_index")
            .cmd("SELECT")
            .arg(default_db)
            .ignore()
            .query_async(connection)
            .await?;
        let mut keys = Vec::new();
        if self.full {
            return Ok((unacked, index, keys));
        }
        for _ in 0..SCANS_PER_TICK {
            let cursor = self.cursors.get(&db).copied().unwrap_or(0);
            let ((next, found),): ((u64, Vec<String>),) = redis::pipe()
                .cmd("SELECT")
                .arg(db)
                .ignore()
                .cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{KEY_PREFIX}*"))
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .cmd("SELECT")
                .arg(default_db)
                .ignore()
                .query_async(connection)
                .await?;
            self.cursors.insert(db, next);
            keys.extend(
                found
                    .into_iter()
                    .filter(|k| !self.read.contains(&(db, k.clone()))),
            );
            // A whole cycle done: the next starts at the next tick, with the keys made since.
            if next == 0 || keys.len() >= READS_PER_TICK {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        keys.truncate(READS_PER_TICK);
        Ok((unacked, index, keys))
    }
}

/// The values of `keys` in `db` (`None` where a key is gone or is not a string).
async fn mget(
    connection: &mut MultiplexedConnection,
    db: i64,
    default_db: i64,
    keys: &[String],
) -> RedisResult<Vec<Option<Vec<u8>>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (values,): (Vec<Value>,) = redis::pipe()
        .cmd("SELECT")
        .arg(db)
        .ignore()
        .cmd("MGET")
        .arg(keys)
        .cmd("SELECT")
        .arg(default_db)
        .ignore()
        .query_async(connection)
        .await?;
    Ok(values
        .into_iter()
        .map(|v| match v {
            Value::BulkString(bytes) => Some(bytes),
            _ => None,
        })
        .collect())
}
