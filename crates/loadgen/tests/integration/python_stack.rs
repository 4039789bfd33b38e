//! The Python reference stack of `testbed-py/` (uvicorn, Celery, real ffmpeg) under the built-in
//! scenario, healthy; and each planted bottleneck proved real from the outside, cheaply, so that
//! the diagnosis tests built on them know what they stand on.

use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use test_support::PythonStack;

use crate::support::fixtures;

/// A user of the stack: its client and its bearer token.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// Registers and logs in a new user (two bcrypt hashes).
    async fn new(stack: &PythonStack) -> Self {
        let http = reqwest::Client::new();
        let base = format!("{}/api/v1", stack.base_url());
        let name = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let password = "Secret-pass1";
        let registered = http
            .post(format!("{base}/auth/register"))
            .json(&json!({"username": name, "email": format!("{name}@example.com"), "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201, "{:?}", registered.text().await);
        let login: Value = http
            .post(format!("{base}/auth/login"))
            .form(&[("username", name.as_str()), ("password", password)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"].as_str().unwrap().to_owned();
        Self { http, base, token }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// `GET path`, its body as JSON.
    async fn get_json(&self, path: &str) -> Value {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Uploads a fixture (`test_video.mp4`, `test_audio.mp3`); its id.
    async fn upload(&self, fixture: &str, content_type: &str) -> i64 {
        let bytes = std::fs::read(fixtures().join(fixture)).unwrap();
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(fixture.to_owned())
            .mime_str(content_type)
            .unwrap();
        let response = self
            .post("/files/upload")
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap()
    }

    /// Times one GET that must answer 200.
    async fn timed_get(&self, path: &str) -> Duration {
        let start = Instant::now();
        let response = self.get(path).send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "{path}: {:?}",
            response.text().await
        );
        start.elapsed()
    }
}

/// The fastest of `n` sequential timings of `GET path`: the call's own cost, with the least
/// of what other work on a busy machine adds to it.
async fn fastest_get(client: &Client, path: &str, n: usize) -> Duration {
    let mut fastest = Duration::MAX;
    for _ in 0..n {
        fastest = fastest.min(client.timed_get(path).await);
    }
    fastest
}

async fn database(stack: &PythonStack) -> PgConnection {
    PgConnection::connect(stack.database_url()).await.unwrap()
}

/// The built-in scenario, 12 users (6 of each type), rate limit lifted (the stack's test
/// default) and bcrypt at cost 10 (a quarter of 12's CPU, so that start-up ends early on 2
/// cores), for 12 s and until every endpoint of the scenario has answered in the steady state:
/// no failure, and every job completed with ffmpeg's output recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_scenario_runs_clean_on_the_healthy_python_stack() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = PythonStack::start(&[("BCRYPT_ROUNDS", "10")]).await;
    let config = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "-H",
        &stack.base_url(),
        "--fixtures",
        &fixtures().display().to_string(),
        "-u",
        "12",
        "-r",
        "12",
        "-t",
        "3m",
    ])
    .unwrap()
    .resolve()
    .unwrap();
    let steady = [
        "GET /api/v1/tasks",
        "GET /api/v1/files",
        "GET /api/v1/users/me/stats",
        "POST /api/v1/tasks/join",
        "POST /api/v1/tasks/audio-overlay",
    ];
    let answered = |s: &loadgen::stats::StatsSnapshot| {
        let mut answered = std::collections::BTreeMap::new();
        for e in &s.endpoints {
            let key = format!("{:?} {} {}", e.phase, e.method, e.name);
            *answered.entry(key).or_insert(0) += e.count - e.failures;
        }
        answered
    };
    let handle = loadgen::engine::Run::start(&config).await.unwrap();
    crate::diagnosis::until_figures(&handle, "every endpoint answered", |s| {
        let answered = answered(s);
        s.elapsed_secs >= 12.0
            && steady
                .iter()
                .all(|e| answered.get(&format!("Steady {e}")).is_some_and(|n| *n > 0))
    })
    .await;
    let snapshot = handle.snapshot().await;
    crate::diagnosis::finish(handle, &config).await;
    let answered = answered(&snapshot);
    let failures: u64 = snapshot.endpoints.iter().map(|e| e.failures).sum();
    let summary = format!(
        "answered {answered:#?}\nfailures {failures}, {:?}\n{}",
        snapshot.failures,
        stack.logs()
    );
    assert_eq!(failures, 0, "{summary}");
    assert!(snapshot.exceptions.is_empty(), "{summary}");
    for start_up in [
        "POST /api/v1/auth/register",
        "POST /api/v1/auth/login",
        "POST /api/v1/files/upload",
    ] {
        assert!(
            answered
                .get(&format!("Startup {start_up}"))
                .is_some_and(|n| *n > 0),
            "{start_up} never answered: {summary}"
        );
    }
    // Every job the run created ends completed, with ffmpeg's output on record.
    let mut db = database(&stack).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let counts = loop {
        let counts: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT type, status, count(*), count(*) FILTER (WHERE result->>'ffmpeg' = 'true') \
             FROM tasks GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        let open = counts
            .iter()
            .any(|(_, status, _, _)| status == "pending" || status == "processing");
        if !open || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!(
        "testbed-py healthy: requests {answered:?}, tasks (type, status, n, by ffmpeg) {counts:?}"
    );
    for kind in ["join", "audio_overlay"] {
        assert!(
            counts
                .iter()
                .any(|(t, s, n, ffmpeg)| t == kind && s == "completed" && *n > 0 && n == ffmpeg),
            "no completed {kind} job made by ffmpeg: {counts:?}\n{}",
            stack.logs()
        );
    }
    assert!(
        counts.iter().all(|(_, s, _, _)| s == "completed"),
        "every job completes on the healthy stack: {counts:?}\n{}",
        stack.logs()
    );
}

/// `PLANT_SYNC_SLEEP`: `GET /files` sleeps 0.2 s in the event loop's thread, so concurrent
/// calls are served one after another: 5 at once take 5 × 0.2 s for the last, where an
/// `await asyncio.sleep` would have kept them all near 0.2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_sleep_in_a_handler_serializes_its_requests() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = PythonStack::start(&[("PLANT_SYNC_SLEEP", "1")]).await;
    let client = Client::new(&stack).await;
    let alone = client.timed_get("/files").await;
    let together = futures::future::join_all((0..5).map(|_| client.timed_get("/files"))).await;
    let slowest = together.iter().max().copied().unwrap_or_default();
    eprintln!("sync sleep: one GET /files {alone:?}, the slowest of 5 at once {slowest:?}");
    assert!(
        alone >= Duration::from_millis(200),
        "GET /files took {alone:?}, not the planted 0.2 s"
    );
    assert!(
        slowest >= Duration::from_millis(900),
        "5 concurrent GET /files did not queue behind the blocked loop: {together:?}"
    );
}

/// The calls and total time of the API's statements on file_events so far (pg_stat_statements).
async fn file_events_time(db: &mut PgConnection) -> (i64, f64) {
    sqlx::query_as(
        "SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(total_exec_time), 0)::float8 \
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
         WHERE d.datname = current_database() AND s.query LIKE 'SELECT count(*) FROM file_events%'",
    )
    .fetch_one(db)
    .await
    .unwrap()
}

/// `PLANT_UNINDEXED_QUERY`: `GET /users/me/stats` counts the user's recent rows of
/// file_events (5·10^5 rows) without the index on (user_id, created_at): a sequential scan.
/// Creating that index, as the healthy configuration does, makes the statement at least 10
/// times faster in PostgreSQL's own figures (the endpoint's times are printed: on a busy
/// 2-core machine they carry the noise the statement's do not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unindexed_query_is_10_times_slower_than_with_its_index() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = PythonStack::start(&[("PLANT_UNINDEXED_QUERY", "1")]).await;
    let client = Client::new(&stack).await;
    let mut db = database(&stack).await;
    let mean_ms =
        |(c0, t0): (i64, f64), (c1, t1): (i64, f64)| (t1 - t0) / ((c1 - c0).max(1) as f64);
    let start = file_events_time(&mut db).await;
    let planted = fastest_get(&client, "/users/me/stats", 5).await;
    let unindexed = file_events_time(&mut db).await;
    sqlx::query("CREATE INDEX file_events_by_user ON file_events (user_id, created_at)")
        .execute(&mut db)
        .await
        .unwrap();
    let after_index = file_events_time(&mut db).await;
    let indexed = fastest_get(&client, "/users/me/stats", 5).await;
    let end = file_events_time(&mut db).await;
    let (slow, fast) = (mean_ms(start, unindexed), mean_ms(after_index, end));
    eprintln!(
        "unindexed query: the statement {slow:.2} ms planted, {fast:.3} ms with the index; \
         GET /users/me/stats at best {planted:?} planted, {indexed:?} with the index"
    );
    assert!(
        unindexed.0 > start.0 && end.0 > after_index.0,
        "pg_stat_statements did not count the calls: {start:?} {unindexed:?} {after_index:?} {end:?}"
    );
    assert!(
        slow >= fast * 10.0,
        "the planted statement is not 10x slower: {slow:.2} ms without the index, {fast:.3} ms with it"
    );
}

/// `PLANT_N_PLUS_ONE`: `GET /tasks` loads the names of each task's input files with one query
/// per task. Under `tests/scenarios/task_history.toml` (users with 12 tasks each), PostgreSQL's
/// pg_stat_statements counts at least 10 calls of that statement per `GET /tasks` loadgen sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_n_plus_one_loop_runs_a_query_per_task_of_the_page() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = PythonStack::start(&[("PLANT_N_PLUS_ONE", "1"), ("BCRYPT_ROUNDS", "10")]).await;
    let mut db = database(&stack).await;
    // The per-task statement of the API (the worker reads files by primary key, not this).
    let calls = "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements s \
                 JOIN pg_database d ON d.oid = s.dbid \
                 WHERE d.datname = current_database() \
                 AND s.query ~ '^SELECT files\\.original_filename\\s+FROM files'";
    let before: i64 = sqlx::query_scalar(calls).fetch_one(&mut db).await.unwrap();
    // Until loadgen has listed the tasks 5 times (an event, not a time: start-up hashes and
    // 24 jobs take their time on a busy machine).
    let config = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "-H",
        &stack.base_url(),
        "-f",
        &crate::support::scenario("task_history.toml"),
        "--fixtures",
        &fixtures().display().to_string(),
        "-u",
        "2",
        "-r",
        "2",
        "-t",
        "3m",
    ])
    .unwrap()
    .resolve()
    .unwrap();
    let task_lists = |s: &loadgen::stats::StatsSnapshot| {
        s.endpoints
            .iter()
            .filter(|e| e.phase == loadgen::stats::Phase::Steady && e.name == "/api/v1/tasks")
            .map(|e| e.count as i64)
            .sum::<i64>()
    };
    let handle = loadgen::engine::Run::start(&config).await.unwrap();
    crate::diagnosis::until_figures(&handle, "5 lists of tasks", |s| task_lists(s) >= 5).await;
    let lists = task_lists(&handle.snapshot().await);
    crate::diagnosis::finish(handle, &config).await;
    // Each list counted ran its statements before it answered; one in flight adds, never takes.
    let after: i64 = sqlx::query_scalar(calls).fetch_one(&mut db).await.unwrap();
    let per_request = (after - before) / lists.max(1);
    eprintln!(
        "n+1: {per_request} calls of the per-task statement per GET /tasks ({lists} lists of 12 tasks)"
    );
    assert!(
        per_request >= 10,
        "GET /tasks ran its per-task statement {per_request} times per request, not >= 10 \
         ({before} calls before, {after} after, {lists} lists)"
    );
}

/// `PLANT_FAILING_ERROR_HANDLER`: an audio_overlay job's output is recorded without its
/// (optional) name, the flush fails, and the task's `except` handler writes on the failed
/// session: Celery's result backend says FAILURE with PendingRollbackError while the API still
/// shows the job `processing`. A join job of the same user completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_error_handler_leaves_the_job_processing_while_celery_says_failure() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = PythonStack::start(&[("PLANT_FAILING_ERROR_HANDLER", "1")]).await;
    let client = Client::new(&stack).await;
    let video = client.upload("test_video.mp4", "video/mp4").await;
    let audio = client.upload("test_audio.mp3", "audio/mpeg").await;
    let overlay: Value = client
        .post("/tasks/audio-overlay")
        .json(
            &json!({"video_file_id": video, "audio_file_id": audio, "mode": "mix",
                      "offset": 0.0, "overlay_volume": 1.0, "original_volume": 0.5}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let join: Value = client
        .post("/tasks/join")
        .json(&json!({"file_ids": [video, video], "output_filename": "joined.mp4"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut redis = redis::Client::open(stack.redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Awaits the two results in Celery's backend (bounded: ffmpeg on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    let results = loop {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("celery-task-meta-*")
            .query_async(&mut redis)
            .await
            .unwrap();
        let mut results = Vec::new();
        for key in keys {
            let raw: String = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .unwrap();
            results.push(serde_json::from_str::<Value>(&raw).unwrap());
        }
        if results.len() >= 2 {
            break results;
        }
        assert!(
            Instant::now() < deadline,
            "Celery recorded {results:?} in 60 s\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let by_name = |name: &str| {
        results
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no result of {name} in {results:#?}"))
    };
    let failed = by_name("app.worker.audio_overlay");
    eprintln!(
        "failing handler: Celery says {} {}: {}",
        failed["status"], failed["result"]["exc_type"], failed["result"]["exc_message"]
    );
    assert_eq!(failed["status"], "FAILURE", "{failed:#?}");
    assert_eq!(
        failed["result"]["exc_type"], "PendingRollbackError",
        "{failed:#?}"
    );
    assert!(
        failed["traceback"]
            .as_str()
            .is_some_and(|t| t.contains("app/worker.py")),
        "the traceback names the task's file: {failed:#?}"
    );
    assert_eq!(by_name("app.worker.join_videos")["status"], "SUCCESS");
    let shown = client.get_json(&format!("/tasks/{}", overlay["id"])).await;
    assert_eq!(shown["status"], "processing", "{shown:#?}");
    let joined = client.get_json(&format!("/tasks/{}", join["id"])).await;
    assert_eq!(joined["status"], "completed", "{joined:#?}");
}

/// The times of `GET /api/v1/health/` probes sent back to back while 4 users register (4
/// bcrypt hashes at cost 12, 4 more to log in), the event loop's stalls seen from outside:
/// (median, longest).
async fn health_probes_during_registrations(stack: &PythonStack) -> (Duration, Duration) {
    let done = std::sync::atomic::AtomicBool::new(false);
    let registering = async {
        futures::future::join_all((0..4).map(|_| Client::new(stack))).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let probing = async {
        let http = reqwest::Client::new();
        let url = format!("{}/api/v1/health/", stack.base_url());
        let mut times = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let start = Instant::now();
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            times.push(start.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        times.sort();
        (
            times.get(times.len() / 2).copied().unwrap_or_default(),
            times.last().copied().unwrap_or_default(),
        )
    };
    tokio::join!(registering, probing).1
}

/// `PLANT_BCRYPT_ON_LOOP`: register and login hash in the event loop's thread, so a health
/// probe (no database, no work) waits behind a hash; on the threadpool, as healthy, it does not.
/// Judged on the median probe: on the loop nearly every probe waits for the hash going (the next
/// registration's starts while the probe sleeps), where a busy host's contention delays a few
/// probes of the healthy stack by as much as one hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_on_the_event_loop_stalls_every_other_request() {
    let _heavy = crate::support::HEAVY.lock().await;
    let (planted, healthy) = tokio::join!(
        PythonStack::start(&[("PLANT_BCRYPT_ON_LOOP", "1")]),
        PythonStack::start(&[])
    );
    let (stalled, stalled_longest) = health_probes_during_registrations(&planted).await;
    let (free, free_longest) = health_probes_during_registrations(&healthy).await;
    eprintln!(
        "bcrypt on the loop: health probes' median {stalled:?} planted, {free:?} healthy \
         (longest {stalled_longest:?}, {free_longest:?})"
    );
    assert!(
        stalled_longest >= Duration::from_millis(150) && stalled >= free * 3,
        "health probes during registrations: median {stalled:?} planted, {free:?} healthy \
         (longest {stalled_longest:?}, {free_longest:?})"
    );
}

/// The API's connections to its database, open or idle in its pool.
async fn api_connections(stack: &PythonStack) -> i64 {
    let mut db = database(stack).await;
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'ffmpeg-api'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap()
}

/// `PLANT_SMALL_POOL`: 16 requests at once get 2 connections between them (the pool keeps
/// what it opened, so the count after the burst is its peak); healthy, the same burst opens
/// more. Each `GET /users/me/stats` holds its connection across a 30 ms bucket listing, so on 2
/// connections the last of 16 waits at least 8 turns: >= 240 ms whatever the machine's speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_pool_serves_a_burst_on_two_connections() {
    let _heavy = crate::support::HEAVY.lock().await;
    let (planted, healthy) = tokio::join!(
        PythonStack::start(&[("PLANT_SMALL_POOL", "1")]),
        PythonStack::start(&[("BCRYPT_ROUNDS", "10")])
    );
    let mut peaks = Vec::new();
    let mut slowest = Vec::new();
    for stack in [&planted, &healthy] {
        let client = Client::new(stack).await;
        let burst =
            futures::future::join_all((0..16).map(|_| client.timed_get("/users/me/stats"))).await;
        slowest.push(burst.into_iter().max().unwrap_or_default());
        peaks.push(api_connections(stack).await);
    }
    eprintln!(
        "small pool: the API's connections after 16 requests at once: {peaks:?}, the slowest \
         request {slowest:?} (planted, healthy)"
    );
    assert!(
        peaks[0] <= 2 && peaks[1] > 2,
        "connections after the burst: {} planted (pool of 2), {} healthy",
        peaks[0],
        peaks[1]
    );
    assert!(
        slowest[0] >= Duration::from_millis(240),
        "16 requests holding a connection 30 ms each did not queue for 2 connections: the \
         slowest took {:?}",
        slowest[0]
    );
}
