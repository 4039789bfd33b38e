//! Whether each watched queue is watched in the database its broker uses. A Celery queue's list
//! is deleted whenever it is drained, so one look at the start proves nothing either way: the
//! databases are checked again every few seconds, and a note needs evidence. Kombu keeps a set
//! `_kombu.binding.<queue>` beside the list from the first publish or worker start on, and it
//! outlives an empty list (seen with Celery 5.7 / Kombu 5.7): a binding key in another database
//! is where the broker lives; failing that, a list elsewhere whose length changes is a live queue.
//! A list whose length never changes is stale, whatever keys lie beside it.

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Value};

/// Databases checked (Redis's default count); a server with fewer refuses the `SELECT` of the
/// rest, and the check stops there.
const DATABASES: i64 = 16;

/// What one check found of one queue in one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Probe {
    /// Whether Kombu's `_kombu.binding.<queue>` key is there.
    pub binding: bool,
    /// The list's length: 0 when it is absent (or is not a list).
    pub length: i64,
}

/// One check of one queue: its probe in each database, by number.
pub(super) type Check = Vec<Probe>;

/// Kombu's key for a queue's bindings (its `keyprefix_queue`).
fn binding_key(name: &str) -> String {
    format!("_kombu.binding.{name}")
}

/// Checks every database for each of `names` in one pipeline: `SELECT` each database, then
/// `EXISTS` the binding key and `LLEN` the list of each name, and `SELECT` back at the end, so
/// that the connection's database is never left switched. Never `KEYS` nor `SCAN`: a broker's
/// database may be large. Returns one [`Check`] per name, in order.
pub(super) async fn check(
    connection: &mut MultiplexedConnection,
    names: &[&str],
    default_db: i64,
) -> RedisResult<Vec<Check>> {
    let mut pipe = redis::pipe();
    // A missing database or a key of another type is one failed command, not a failed check.
    pipe.ignore_errors();
    for db in 0..DATABASES {
        pipe.cmd("SELECT").arg(db);
        for name in names {
            pipe.cmd("EXISTS").arg(binding_key(name));
            pipe.cmd("LLEN").arg(*name);
        }
    }
    pipe.cmd("SELECT").arg(default_db).ignore();
    let replies: Vec<RedisResult<Value>> = pipe.query_async(connection).await?;
    Ok(checks(&replies, names.len()))
}

/// Splits the pipeline's replies into one check per queue, stopping at the first database the
/// server refuses (the commands after a refused `SELECT` ran in the previous database).
fn checks(replies: &[RedisResult<Value>], queues: usize) -> Vec<Check> {
    let mut checks = vec![Check::new(); queues];
    for database in replies.chunks_exact(1 + 2 * queues) {
        let (select, probes) = database.split_at(1);
        if select[0].is_err() {
            break;
        }
        for (check, reply) in checks.iter_mut().zip(probes.chunks_exact(2)) {
            check.push(Probe {
                binding: integer(&reply[0]) > 0,
                length: integer(&reply[1]),
            });
        }
    }
    checks
}

fn integer(reply: &RedisResult<Value>) -> i64 {
    match reply {
        Ok(Value::Int(n)) => *n,
        _ => 0,
    }
}

/// What the checks have shown of one watched queue so far, and whether it was said.
#[derive(Debug, Clone)]
pub(super) struct Watch {
    /// The database watched.
    db: i64,
    name: String,
    /// The watched database held the binding key at some check.
    bound_here: bool,
    /// The watched list was seen non-empty, at a check or a reading.
    seen_here: bool,
    previous: Option<Check>,
    noted: bool,
}

/// Why a queue looks watched in the wrong database.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Evidence {
    /// The broker's binding key is in these databases.
    Binding(Vec<i64>),
    /// The list in `db` changed length between two checks.
    Live { db: i64, from: i64, to: i64 },
}

impl Watch {
    /// Watches `name` in `db`.
    pub fn new(db: i64, name: &str) -> Self {
        Self {
            db,
            name: name.to_owned(),
            bound_here: false,
            seen_here: false,
            previous: None,
            noted: false,
        }
    }

    /// Records the watched list's length from a reading: a list seen non-empty is where it lives.
    pub fn saw_length(&mut self, length: i64) {
        self.seen_here |= length > 0;
    }

    /// Records a check; returns the note to give, at most once per run. A note waits for a
    /// second check: staleness and liveness need two lengths, and a worker that declares its
    /// binding in the watched database as it starts gets one check period to do so.
    pub fn judge(&mut self, check: Check) -> Option<String> {
        let own = usize::try_from(self.db)
            .ok()
            .and_then(|db| check.get(db).copied())
            .unwrap_or_default();
        self.bound_here |= own.binding;
        self.saw_length(own.length);
        let previous = self.previous.replace(check);
        if self.noted || self.bound_here || self.seen_here {
            return None;
        }
        let current = self.previous.as_deref().unwrap_or_default();
        let evidence = evidence(self.db, previous.as_deref()?, current)?;
        self.noted = true;
        Some(self.note(&evidence))
    }

    fn note(&self, evidence: &Evidence) -> String {
        let (db, name) = (self.db, &self.name);
        match evidence {
            Evidence::Binding(dbs) => {
                let listed: Vec<String> = dbs.iter().map(i64::to_string).collect();
                format!(
                    "queue {name:?} is watched in db {db}, but the broker's keys for it ({}) are \
                     in db {}: watch {}/{name} (it reads 0 as it is)",
                    binding_key(name),
                    listed.join(", "),
                    dbs[0],
                )
            }
            Evidence::Live {
                db: there,
                from,
                to,
            } => format!(
                "queue {name:?} is watched in db {db}, which has no broker keys for it and where \
                 its list was never seen, but its list in db {there} is live (its length went \
                 from {from} to {to} between two checks): watch {there}/{name} (it reads 0 as it is)"
            ),
        }
    }
}

/// The other databases' evidence between two checks: binding keys first (the broker's own
/// mark), then a list whose length changed. A database whose list stayed at the same non-zero
/// length is stale: not evidence, even with a binding key (a broker left behind).
fn evidence(watched: i64, previous: &[Probe], current: &[Probe]) -> Option<Evidence> {
    let others = (0..)
        .zip(previous.iter().zip(current))
        .filter(|(db, _)| *db != watched);
    let mut bound = Vec::new();
    let mut live = None;
    for (db, (before, now)) in others {
        let stale = before.length > 0 && before.length == now.length;
        if now.binding && !stale {
            bound.push(db);
        }
        if before.length != now.length && live.is_none() {
            live = Some(Evidence::Live {
                db,
                from: before.length,
                to: now.length,
            });
        }
    }
    if bound.is_empty() {
        live
    } else {
        Some(Evidence::Binding(bound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A check of 4 databases: (binding, length) each.
    fn check(dbs: [(bool, i64); 4]) -> Check {
        dbs.iter()
            .map(|&(binding, length)| Probe { binding, length })
            .collect()
    }

    const EMPTY: (bool, i64) = (false, 0);

    #[test]
    fn a_binding_elsewhere_is_named_at_the_second_check_and_said_once() {
        let mut watch = Watch::new(1, "celery");
        let broker = [EMPTY, EMPTY, (true, 3), EMPTY];
        assert_eq!(watch.judge(check(broker)), None, "one check proves nothing");
        let drained = [EMPTY, EMPTY, (true, 0), EMPTY];
        let note = watch.judge(check(drained)).unwrap_or_default();
        assert!(
            note.contains(
                "watched in db 1, but the broker's keys for it (_kombu.binding.celery) are in \
                 db 2: watch 2/celery"
            ),
            "{note}"
        );
        assert_eq!(watch.judge(check(broker)), None, "said once");
    }

    #[test]
    fn a_list_that_changes_elsewhere_is_named() {
        let mut watch = Watch::new(1, "videos");
        assert_eq!(watch.judge(check([(false, 3), EMPTY, EMPTY, EMPTY])), None);
        let note = watch
            .judge(check([(false, 7), EMPTY, EMPTY, EMPTY]))
            .unwrap_or_default();
        assert!(
            note.contains("its list in db 0 is live (its length went from 3 to 7")
                && note.contains("watch 0/videos"),
            "{note}"
        );
    }

    #[test]
    fn a_stale_list_is_no_evidence_even_with_its_binding() {
        let mut watch = Watch::new(1, "celery");
        let stale = [(true, 5), EMPTY, EMPTY, (false, 2)];
        for _ in 0..5 {
            assert_eq!(watch.judge(check(stale)), None);
        }
    }

    #[test]
    fn the_watched_database_with_the_binding_or_a_seen_list_is_never_noted() {
        let elsewhere_live = |n| [(true, n), EMPTY, EMPTY, EMPTY];
        let mut bound = Watch::new(1, "a");
        assert_eq!(
            bound.judge(check([(true, 1), (true, 0), EMPTY, EMPTY])),
            None
        );
        // The binding stays proof even if a later check misses it.
        for n in 2..6 {
            assert_eq!(bound.judge(check(elsewhere_live(n))), None);
        }
        let mut seen = Watch::new(1, "b");
        seen.saw_length(4);
        for n in 1..6 {
            assert_eq!(seen.judge(check(elsewhere_live(n))), None);
        }
    }

    #[test]
    fn replies_stop_at_the_first_refused_database() {
        let ok = || Ok(Value::Okay);
        let int = |n| Ok(Value::Int(n));
        let refused = Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "DB index is out of range",
        )));
        let wrong_type = Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "WRONGTYPE",
        )));
        // Two queues; db 0, db 1 (the second queue's key is not a list), then refused.
        let replies = vec![
            ok(),
            int(1),
            int(4),
            int(0),
            int(0),
            ok(),
            int(0),
            int(0),
            int(1),
            wrong_type,
            refused,
            int(1),
            int(9),
            int(1),
            int(9),
        ];
        let found = checks(&replies, 2);
        let probe = |binding, length| Probe { binding, length };
        assert_eq!(
            found,
            [
                vec![probe(true, 4), probe(false, 0)],
                vec![probe(false, 0), probe(true, 0)],
            ]
        );
    }
}
