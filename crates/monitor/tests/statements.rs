//! Query-level evidence against the real PostgreSQL of `scripts/services.sh`
//! (`TEST_DATABASE_URL`, which loads `pg_stat_statements`): a table of 10^5 rows without an
//! index, queried with parameters from here, shows in the samples as a statement whose plan
//! scans the table and filters on the column; a secret sent as a literal is in no sample.

#![allow(clippy::unwrap_used)]
#![allow(clippy::too_many_lines)]

use std::time::{Duration, Instant};

use chrono::Utc;
use monitor::sample::{PostgresValues, SourceReading, Tick, Values};
use monitor::source::Source;
use monitor::sources::postgres::statements::INSTALL_NOTE;
use monitor::sources::postgres::{Postgres, Scope};
use sqlx::{Connection, Executor, PgConnection};

const SECRET: &str = "hunter2-TOPSECRET-7f3a";

/// Reads `source` until `done` holds or `deadline` passes; every reading, in order.
async fn read_until(
    source: &mut Postgres,
    deadline: Duration,
    mut done: impl FnMut(&PostgresValues) -> bool,
) -> Vec<(PostgresValues, Vec<String>)> {
    let start = Instant::now();
    let mut readings = Vec::new();
    loop {
        let values = source
            .read()
            .await
            .unwrap_or_else(|e| panic!("postgres: {e}"));
        let Values::Postgres(p) = values else {
            panic!("not a PostgreSQL reading")
        };
        let finished = done(&p);
        readings.push((p, source.notes()));
        if finished || start.elapsed() > deadline {
            return readings;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A tick carrying `values`, as the sampler would write it.
fn tick(values: &PostgresValues, notes: &[String]) -> serde_json::Value {
    let reading = SourceReading {
        at: Utc::now(),
        up: true,
        error: None,
        values: Some(Values::Postgres(values.clone())),
        notes: notes.to_vec(),
    };
    let tick = Tick {
        tick: 1,
        timestamp: Utc::now(),
        spread_ms: 0.0,
        sources: [("postgres".to_owned(), reading)].into(),
    };
    serde_json::to_value(tick).unwrap()
}

/// Aborts the workload's tasks, also when an assertion fails.
struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[tokio::test]
async fn an_unindexed_query_shows_with_its_seq_scan_and_no_literal_is_kept() {
    let url = test_support::fresh_database().await;
    let mut setup = PgConnection::connect(&url).await.unwrap();
    setup
        .execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
             CREATE TABLE file_events (id bigserial PRIMARY KEY, user_id int NOT NULL,
                                       kind text NOT NULL, created_at timestamptz NOT NULL);
             INSERT INTO file_events (user_id, kind, created_at)
               SELECT i % 1000, 'upload', now() - i * interval '1 second'
               FROM generate_series(1, 100000) AS i;
             ANALYZE file_events;",
        )
        .await
        .unwrap();

    let mut postgres = Postgres::new(&url, Scope::Database);
    // The first reading is the baseline: nothing of the setup counts.
    let first = read_until(&mut postgres, Duration::ZERO, |_| true).await;
    assert!(
        first[0].0.statements.is_empty(),
        "{:?}",
        first[0].0.statements
    );

    let mut tasks = Vec::new();
    for worker in 0..3 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            for i in 0.. {
                let _: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT id, kind FROM file_events WHERE user_id = $1 \
                     AND created_at > now() - interval '30 days' ORDER BY created_at DESC LIMIT 20",
                )
                .bind((worker * 7 + i) % 1000)
                .fetch_all(&mut c)
                .await
                .unwrap();
                // Lists of 2 and 3 ids: two statements to PostgreSQL 15, one to the monitor.
                let ids = if i % 2 == 0 { "1, 2" } else { "1, 2, 3" };
                let list = format!("SELECT kind FROM file_events WHERE id IN ({ids})");
                sqlx::raw_sql(sqlx::AssertSqlSafe(list))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }));
    }
    // A secret as a literal, in a comment and in a string, in a query that runs a while (so
    // that pg_stat_activity shows it) and in one that pg_stat_statements counts.
    let secret_query = format!("/* {SECRET} */ SELECT pg_sleep(20), '{SECRET}'::text AS token");
    tasks.push(tokio::spawn({
        let url = url.clone();
        async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            loop {
                let quick = format!("/* {SECRET} */ SELECT '{SECRET}'::text = $1");
                let _ = sqlx::query(sqlx::AssertSqlSafe(quick))
                    .bind("x")
                    .execute(&mut c)
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }));
    tasks.push(tokio::spawn({
        let url = url.clone();
        async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(secret_query))
                .execute(&mut c)
                .await;
        }
    }));
    let _tasks = Tasks(tasks);

    let planned = |p: &PostgresValues| {
        let scanned = p.statements.iter().any(|s| {
            s.query.contains("FROM file_events")
                && s.plan
                    .as_ref()
                    .is_some_and(|plan| !plan.seq_scans.is_empty())
        });
        let sleeping = p.queries.iter().any(|q| q.query.contains("pg_sleep"));
        // The quick statement with the secret, once pg_stat_statements has counted it (a busy
        // server may take a few samples).
        let counted = p.statements.iter().any(|s| s.query.contains("::text = $1"));
        scanned && sleeping && counted
    };
    let readings = read_until(&mut postgres, Duration::from_secs(30), planned).await;
    let (last, _) = readings.last().unwrap();
    assert!(planned(last), "no planned statement after 30 s: {last:#?}");

    let statement = last
        .statements
        .iter()
        .find(|s| s.query.contains("FROM file_events"))
        .unwrap();
    assert_eq!(
        statement.query,
        "SELECT id, kind FROM file_events WHERE user_id = $1 \
         AND created_at > now() - interval $2 ORDER BY created_at DESC LIMIT $3"
    );
    let lists: Vec<_> = last
        .statements
        .iter()
        .filter(|s| s.query.contains("WHERE id IN"))
        .collect();
    assert_eq!(lists.len(), 1, "{:#?}", last.statements);
    assert_eq!(
        lists[0].query,
        "SELECT kind FROM file_events WHERE id IN (...)"
    );
    let share = statement.total_ms / last.statements_total_ms;
    assert!(
        statement.calls > 0 && statement.mean_ms > 0.0 && share > 0.5,
        "{statement:#?}, {:.1} ms of all statements",
        last.statements_total_ms
    );
    let plan = statement.plan.as_ref().unwrap();
    let scan = &plan.seq_scans[0];
    assert_eq!(scan.relation, "file_events", "{plan:#?}");
    assert_eq!(scan.filter_columns, ["user_id", "created_at"], "{plan:#?}");
    assert_eq!(scan.sort_columns, ["created_at"], "{plan:#?}");
    assert!(
        (90_000.0..110_000.0).contains(&scan.table_rows) && plan.total_cost > 1000.0,
        "{plan:#?}"
    );
    let sleeping = last
        .queries
        .iter()
        .find(|q| q.query.contains("pg_sleep"))
        .unwrap();
    assert_eq!(
        sleeping.query, "SELECT pg_sleep(?), ?::text AS token",
        "{sleeping:#?}"
    );
    assert_eq!(sleeping.backends, 1);
    assert_eq!(
        sleeping.waits.get("Timeout:PgSleep"),
        Some(&1),
        "{sleeping:#?}"
    );

    // No sample carries the secret, nor a field the allow-list does not know.
    for (values, notes) in &readings {
        let json = tick(values, notes);
        assert_eq!(
            monitor::sample::fields_not_allowed(&json),
            Vec::<String>::new()
        );
        let text = json.to_string();
        assert!(!text.contains(SECRET), "the secret leaked: {text}");
        assert!(
            !text.contains("hunter2"),
            "part of the secret leaked: {text}"
        );
    }
    assert!(
        readings
            .iter()
            .any(|(v, _)| v.statements.iter().any(|s| s.query.contains("::text = $1"))),
        "the statement with the secret was counted (and its text scrubbed): {last:#?}"
    );
}

#[tokio::test]
async fn without_pg_stat_statements_one_note_says_how_to_install_it() {
    let url = test_support::fresh_database().await;
    let mut postgres = Postgres::new(&url, Scope::Database);
    let readings = read_until(&mut postgres, Duration::from_secs(60), {
        let mut n = 0;
        move |_| {
            n += 1;
            n >= 3
        }
    })
    .await;
    let notes: Vec<&String> = readings.iter().flat_map(|(_, notes)| notes).collect();
    assert_eq!(notes, [INSTALL_NOTE], "{readings:#?}");
    assert!(INSTALL_NOTE.contains("shared_preload_libraries"));
    assert!(INSTALL_NOTE.contains("CREATE EXTENSION pg_stat_statements"));
    assert!(readings.iter().all(|(p, _)| p.statements.is_empty()));
}

/// Planning never runs what it plans: an UPDATE among the top statements gets its plan, and its
/// table holds what the workload wrote, no more; a DDL statement gets no plan.
#[tokio::test]
async fn planning_an_update_does_not_run_it_and_ddl_is_never_planned() {
    let url = test_support::fresh_database().await;
    let mut c = PgConnection::connect(&url).await.unwrap();
    c.execute(
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
         CREATE TABLE counters (id int PRIMARY KEY, n int NOT NULL);
         INSERT INTO counters SELECT i, 0 FROM generate_series(1, 20000) AS i;
         ANALYZE counters;",
    )
    .await
    .unwrap();
    let mut postgres = Postgres::new(&url, Scope::Database);
    read_until(&mut postgres, Duration::ZERO, |_| true).await;
    // Every row one more, without a constant (a planned parameter would be NULL and match
    // nothing): were it run when planned, the sum would show it.
    let updates = 5;
    for _ in 0..updates {
        sqlx::query("UPDATE counters SET n = n + sign(id)::int")
            .execute(&mut c)
            .await
            .unwrap();
    }
    for i in 0..3 {
        let ddl = format!("CREATE TABLE made_{i} (id int)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
            .execute(&mut c)
            .await
            .unwrap();
    }
    let planned = |p: &PostgresValues| {
        p.statements
            .iter()
            .any(|s| s.query.starts_with("UPDATE counters") && s.plan.is_some())
    };
    let readings = read_until(&mut postgres, Duration::from_secs(30), planned).await;
    let (last, _) = readings.last().unwrap();
    assert!(planned(last), "{:#?}", last.statements);
    // Each later reading would plan the DDL if it were plannable: give it a few.
    let readings = read_until(&mut postgres, Duration::from_secs(30), {
        let mut n = 0;
        move |_| {
            n += 1;
            n >= 4
        }
    })
    .await;
    let (last, _) = readings.last().unwrap();
    let ddl: Vec<_> = last
        .statements
        .iter()
        .filter(|s| s.query.starts_with("CREATE TABLE"))
        .collect();
    assert!(
        !ddl.is_empty() && ddl.iter().all(|s| s.plan.is_none()),
        "{:#?}",
        last.statements
    );
    let update = last
        .statements
        .iter()
        .find(|s| s.query.starts_with("UPDATE counters"))
        .unwrap();
    assert_eq!(update.calls, updates as i64, "{update:#?}");
    let scan = &update.plan.as_ref().unwrap().seq_scans;
    assert_eq!(scan.len(), 1, "{update:#?}");
    assert_eq!(scan[0].relation, "counters", "{update:#?}");
    let total: i64 = sqlx::query_scalar("SELECT sum(n)::int8 FROM counters")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(
        total,
        5 * 20_000,
        "the UPDATE ran only the 5 times the test ran it"
    );
}
