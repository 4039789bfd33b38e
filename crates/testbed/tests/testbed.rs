//! The testbed against real PostgreSQL, Redis and ffmpeg, over real HTTP on loopback.

#![allow(clippy::unwrap_used)]
// A test is a scenario read top to bottom; the 100-line bar is for the product's functions.
#![allow(clippy::too_many_lines)]

mod support;

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;
use support::{Client, media, start_in_memory, start_on_services};
use testbed::config::{FailRule, JobMode, SlowRule};

/// The contract's user journey: register, login, upload 3 videos and 1 audio, join,
/// audio-overlay, poll until completed, stats; with the error cases along the way.
async fn full_user_journey(testbed: &testbed::Testbed) {
    let mut client = Client::new(testbed);
    let (status, health) = client.get("/health/").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );
    let (status, _) = client.get("/health").await;
    assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);

    // The locustfile logs in before registering: a 401, with the bearer challenge.
    let (status, body) = client.login("journey_user", "TestPass123").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, user) = client.register("journey_user").await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    for field in ["id", "username", "email", "settings", "created_at"] {
        assert!(
            user.get(field).is_some(),
            "register answer lacks {field}: {user}"
        );
    }
    assert!(user.get("password_hash").is_none());
    let (status, body) = client.register("journey_user").await;
    assert_eq!(
        (status, &body["detail"]),
        (StatusCode::BAD_REQUEST, &json!("Email already registered"))
    );
    let (status, body) = client
        .post("/auth/register", json!({"username": "journey_user", "email": "other@example.com", "password": "TestPass123"}))
        .await;
    assert_eq!(
        (status, &body["detail"]),
        (StatusCode::BAD_REQUEST, &json!("Username already taken"))
    );
    let (status, _) = client
        .post(
            "/auth/register",
            json!({"username": "weak_user", "email": "weak@example.com", "password": "weakpass"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = client
        .post("/auth/register", json!({"username": "x"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["detail"].is_array(), "422 detail is a list: {body}");

    let (status, _) = client.get("/files").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no token");
    let (status, tokens) = client
        .login("journey_user@example.com", "TestPass123")
        .await;
    assert_eq!(status, StatusCode::OK, "login by email");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 1800);
    let (status, me) = client.get("/auth/me").await;
    assert_eq!(
        (status, &me["username"]),
        (StatusCode::OK, &json!("journey_user"))
    );
    let (status, refreshed) = client
        .post(
            "/auth/refresh",
            json!({"refresh_token": tokens["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");

    let videos: Vec<i64> = futures_join(&client, 3).await;
    let audio = client
        .upload(&media().join("test_audio.mp3"), "audio/mpeg")
        .await;
    let (status, listed) = client.get("/files?offset=0&limit=20").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            listed["total"].as_i64(),
            listed["page"].as_i64(),
            listed["page_size"].as_i64()
        ),
        (Some(4), Some(1), Some(20))
    );
    let (status, file) = client.get(&format!("/files/{audio}")).await;
    assert_eq!(
        (status, file["original_filename"].as_str()),
        (StatusCode::OK, Some("test_audio.mp3"))
    );
    assert!(file["download_url"].is_string());
    let (status, body) = client.get("/files/999999").await;
    assert_eq!(
        (status, &body["detail"]),
        (StatusCode::NOT_FOUND, &json!("File not found"))
    );

    let (status, join) = client
        .post(
            "/tasks/join",
            json!({"file_ids": [videos[0], videos[1]], "output_filename": "joined_1.mp4"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{join}");
    assert_eq!(
        (join["type"].as_str(), join["status"].as_str()),
        (Some("join"), Some("pending"))
    );
    for field in [
        "id",
        "user_id",
        "input_files",
        "output_files",
        "config",
        "error_message",
        "progress",
        "result",
        "retry_count",
        "priority",
        "created_at",
        "updated_at",
        "completed_at",
    ] {
        assert!(
            join.get(field).is_some(),
            "TaskResponse lacks {field}: {join}"
        );
    }
    let (status, overlay) = client
        .post("/tasks/audio-overlay", json!({"video_file_id": videos[2], "audio_file_id": audio, "mode": "mix", "offset": 0.0, "overlay_volume": 1.0, "original_volume": 0.5}))
        .await;
    assert_eq!(
        (status, overlay["type"].as_str()),
        (StatusCode::CREATED, Some("audio_overlay")),
        "{overlay}"
    );
    let (status, _) = client
        .post("/tasks/join", json!({"file_ids": [videos[0]]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = client
        .post("/tasks/join", json!({"file_ids": [videos[0], 424242]}))
        .await;
    assert_eq!(
        (status, &body["detail"]),
        (StatusCode::NOT_FOUND, &json!("File 424242 not found"))
    );
    let (status, _) = client
        .post(
            "/tasks/audio-overlay",
            json!({"video_file_id": videos[0], "audio_file_id": audio, "overlay_volume": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    for task in [&join, &overlay] {
        let done = client
            .wait_for_task(task["id"].as_i64().unwrap(), Duration::from_secs(30))
            .await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["progress"], 100.0);
        assert!(done["completed_at"].is_string());
    }
    let (status, listed) = client.get("/tasks?status=completed&type=join").await;
    assert_eq!(
        (status, listed["total"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{listed}"
    );
    let (status, stats) = client.get("/users/me/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            stats["total_tasks"].as_i64(),
            stats["completed_tasks"].as_i64(),
            stats["total_files"].as_i64()
        ),
        (Some(2), Some(2), Some(4)),
        "{stats}"
    );
    assert!(stats["storage_used"].as_i64().unwrap() > 0);
    assert!(stats["storage_limit"].as_i64().unwrap() > 0);

    // Another user cannot see this user's files.
    let other = Client::signed_up(testbed, "journey_other").await;
    let (status, _) = other.get(&format!("/files/{audio}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = other.get(&format!("/tasks/{}", join["id"])).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = send_delete(&client, &format!("/files/{audio}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = client.get(&format!("/files/{audio}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn futures_join(client: &Client, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(
            client
                .upload(&media().join("test_video.mp4"), "video/mp4")
                .await,
        );
    }
    ids
}

async fn send_delete(client: &Client, path: &str) -> (StatusCode, serde_json::Value) {
    let request = client
        .http
        .delete(client.url(path))
        .bearer_auth(client.token.as_deref().unwrap());
    support::send(request).await
}

#[tokio::test]
async fn full_journey_on_postgres_and_redis() {
    let testbed = start_on_services(|_| {}).await;
    assert!(
        testbed.startup_line().contains("PostgreSQL"),
        "{}",
        testbed.startup_line()
    );
    assert!(testbed.startup_line().contains("Redis"));
    full_user_journey(&testbed).await;

    // The rows really are in PostgreSQL.
    let config_url = testbed_database(&testbed);
    let pool = sqlx::PgPool::connect(&config_url).await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    let completed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tasks WHERE status = 'completed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((users, completed), (2, 2));
    testbed.stop().await;
}

/// The startup line masks the password; rebuild the URL from the test server's.
fn testbed_database(testbed: &testbed::Testbed) -> String {
    let line = testbed.startup_line();
    let database = line
        .split('/')
        .find(|part| part.starts_with("testbed_"))
        .unwrap();
    let database = database.split_whitespace().next().unwrap();
    let admin = support::postgres_admin_url();
    format!("{}/{database}", admin.rsplit_once('/').unwrap().0)
}

#[tokio::test]
async fn full_journey_in_memory() {
    let testbed = start_in_memory(|_| {}).await;
    assert!(
        testbed.startup_line().contains("in-memory"),
        "{}",
        testbed.startup_line()
    );
    full_user_journey(&testbed).await;
    testbed.stop().await;
}

#[tokio::test]
async fn jobs_go_through_the_redis_list() {
    // One worker that hangs: the first job holds it, the next ones wait in the Redis list.
    let queue = format!("celery-hang-{}", uuid::Uuid::new_v4().simple());
    let queue_name = queue.clone();
    let testbed = start_on_services(move |c| {
        c.workers = 1;
        c.job_mode = JobMode::Hang;
        c.queue_name = queue_name;
    })
    .await;
    let client = Client::signed_up(&testbed, "hang_user").await;
    let video = client
        .upload(&media().join("test_video.mp4"), "video/mp4")
        .await;
    let audio = client
        .upload(&media().join("test_audio.mp3"), "audio/mpeg")
        .await;
    let body = json!({"video_file_id": video, "audio_file_id": audio});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, task) = client.post("/tasks/audio-overlay", body.clone()).await;
        assert_eq!(status, StatusCode::CREATED);
        ids.push(task["id"].as_i64().unwrap());
    }
    let mut redis = redis::Client::open(format!("{}/1", support::redis_url()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let length: u64 = redis.llen(&queue).await.unwrap();
        let (_, first) = client.get(&format!("/tasks/{}", ids[0])).await;
        if first["status"] == "processing" && length == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "first job never taken; list length {length}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Well past the job time, the hung job is still processing and the others still wait.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, first) = client.get(&format!("/tasks/{}", ids[0])).await;
    assert_eq!(first["status"], "processing");
    let (_, last) = client.get(&format!("/tasks/{}", ids[2])).await;
    assert_eq!(last["status"], "pending");
    let length: u64 = redis.llen(&queue).await.unwrap();
    assert_eq!(length, 2);

    // A pending job can be cancelled, and the worker will skip it.
    let (status, cancelled) = client
        .post(&format!("/tasks/{}/cancel", ids[2]), json!({}))
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (status, _) = client
        .post(&format!("/tasks/{}/cancel", ids[2]), json!({}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    testbed.stop().await;
}

#[tokio::test]
async fn failing_job_mode_ends_in_failed_and_can_be_retried() {
    let testbed = start_on_services(|c| c.job_mode = JobMode::Fail).await;
    let client = Client::signed_up(&testbed, "fail_user").await;
    let a = client
        .upload(&media().join("test_video.mp4"), "video/mp4")
        .await;
    let b = client
        .upload(&media().join("test_video.mp4"), "video/mp4")
        .await;
    let (_, task) = client
        .post(
            "/tasks/join",
            json!({"file_ids": [a, b], "output_filename": "j.mp4"}),
        )
        .await;
    let id = task["id"].as_i64().unwrap();
    let failed = client.wait_for_task(id, Duration::from_secs(30)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error_message"]
            .as_str()
            .unwrap()
            .contains("TESTBED_JOB_MODE=fail")
    );
    let (_, stats) = client.get("/users/me/stats").await;
    assert_eq!(stats["failed_tasks"], 1);
    let (status, retried) = client.post(&format!("/tasks/{id}/retry"), json!({})).await;
    assert_eq!(
        (
            status,
            retried["status"].as_str(),
            retried["retry_count"].as_i64()
        ),
        (StatusCode::OK, Some("pending"), Some(1))
    );
    let again = client.wait_for_task(id, Duration::from_secs(30)).await;
    assert_eq!(again["status"], "failed");
    testbed.stop().await;
}

#[tokio::test]
async fn real_ffmpeg_jobs_fail_to_mix_a_silent_video_as_the_real_api_does() {
    let testbed = start_on_services(|c| {
        c.ffmpeg = true;
        c.job_seconds = Duration::ZERO;
    })
    .await;
    let client = Client::signed_up(&testbed, "ffmpeg_user").await;
    let video = client
        .upload(&media().join("test_video.mp4"), "video/mp4")
        .await;
    let silent = client
        .upload(&media().join("silent/test_video.mp4"), "video/mp4")
        .await;
    let audio = client
        .upload(&media().join("test_audio.mp3"), "audio/mpeg")
        .await;
    let mix = |video_id: i64| json!({"video_file_id": video_id, "audio_file_id": audio, "mode": "mix", "original_volume": 0.5});

    let (status, ok) = client.post("/tasks/audio-overlay", mix(video)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, doomed) = client.post("/tasks/audio-overlay", mix(silent)).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the API accepts it; only polling shows the failure"
    );
    let (_, join) = client
        .post("/tasks/join", json!({"file_ids": [video, silent]}))
        .await;

    let ok = client
        .wait_for_task(ok["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(ok["status"], "completed", "{ok}");
    assert!(ok["result"]["size"].as_u64().unwrap() > 1000, "{ok}");
    let doomed = client
        .wait_for_task(doomed["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(doomed["status"], "failed", "{doomed}");
    assert!(
        doomed["error_message"]
            .as_str()
            .unwrap()
            .contains("ffmpeg failed"),
        "{doomed}"
    );
    let join = client
        .wait_for_task(join["id"].as_i64().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(join["status"], "completed", "{join}");
    testbed.stop().await;
}

#[tokio::test]
async fn rate_limit_gives_429_per_client_and_spares_health() {
    let testbed = start_in_memory(|c| c.rate_limit_per_minute = 5).await;
    let client = Client::new(&testbed);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(client.get("/files").await.0);
    }
    assert_eq!(&statuses[..5], &[StatusCode::UNAUTHORIZED; 5]);
    assert_eq!(&statuses[5..], &[StatusCode::TOO_MANY_REQUESTS; 2]);
    let (_, body) = client.get("/users/me/stats").await;
    assert_eq!(body["detail"], "Too many requests. Please try again later.");
    let (status, _) = client.get("/health/").await;
    assert_eq!(status, StatusCode::OK);
    testbed.stop().await;
}

/// Four concurrent requests to a path slowed by 300 ms; returns the time until all answered and
/// the most pg_sleep backends seen at once.
async fn four_slow_requests(pool_size: u32) -> (Duration, i64) {
    let testbed = start_on_services(|c| {
        c.db_pool = pool_size;
        c.slow = vec!["/api/v1/users/me/stats:300".parse::<SlowRule>().unwrap()];
    })
    .await;
    let client = Client::signed_up(&testbed, "pool_user").await;
    let observer = sqlx::PgPool::connect(&testbed_database(&testbed))
        .await
        .unwrap();
    let started = Instant::now();
    let requests = futures::future::join_all((0..4).map(|_| client.get("/users/me/stats")));
    let watch = async {
        let mut most = 0;
        while started.elapsed() < Duration::from_millis(900) {
            let sleeping: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%'",
            )
            .fetch_one(&observer)
            .await
            .unwrap();
            most = most.max(sleeping);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        most
    };
    let (answers, most) = tokio::join!(requests, watch);
    let elapsed = started.elapsed();
    assert!(
        answers.iter().all(|(status, _)| *status == StatusCode::OK),
        "{answers:?}"
    );
    testbed.stop().await;
    (elapsed, most)
}

#[tokio::test]
async fn a_pool_of_one_makes_slow_requests_queue() {
    let (queued, most_with_one) = four_slow_requests(1).await;
    assert_eq!(
        most_with_one, 1,
        "a pool of 1 never runs two pg_sleep at once"
    );
    // Four 300 ms holds one after another cannot finish sooner than 1.2 s.
    assert!(queued >= Duration::from_millis(1200), "{queued:?}");
    let (_, most_with_four) = four_slow_requests(4).await;
    assert!(
        most_with_four >= 2,
        "with a pool of 4 the sleeps overlap: {most_with_four}"
    );
}

#[tokio::test]
async fn planted_failures_answer_500_internal_error() {
    let testbed =
        start_in_memory(|c| c.fail = vec!["/api/v1/files:1".parse::<FailRule>().unwrap()]).await;
    let client = Client::signed_up(&testbed, "planted").await;
    let (status, body) = client.get("/files").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        (body["success"].as_bool(), body["error"]["code"].as_str()),
        (Some(false), Some("INTERNAL_ERROR"))
    );
    let (status, _) = client.get("/users/me/stats").await;
    assert_eq!(status, StatusCode::OK, "other paths are untouched");
    testbed.stop().await;
}

#[tokio::test]
async fn short_token_ttl_expires_access_tokens() {
    let testbed = start_in_memory(|c| c.token_ttl = Duration::from_secs(1)).await;
    let mut client = Client::signed_up(&testbed, "expiring").await;
    assert_eq!(client.get("/tasks").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = client.get("/tasks").await;
    assert_eq!(
        (status, &body["detail"]),
        (
            StatusCode::UNAUTHORIZED,
            &json!("Could not validate credentials")
        )
    );
    assert_eq!(
        client.login("expiring", "TestPass123").await.0,
        StatusCode::OK
    );
    assert_eq!(
        client.get("/tasks").await.0,
        StatusCode::OK,
        "a new login works again"
    );
    testbed.stop().await;
}

#[tokio::test]
async fn uploads_are_checked_as_the_contract_says() {
    let testbed = start_in_memory(|_| {}).await;
    let client = Client::signed_up(&testbed, "uploader").await;
    for (name, content_type, bytes) in [
        ("notes.txt", "text/plain", b"hello".to_vec()),
        ("clip.mp4", "application/x-msdownload", b"MZ".to_vec()),
        ("clip.mp4", "video/mp4", Vec::new()),
    ] {
        let (status, body) = client.upload_bytes(name, content_type, bytes).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name} {content_type}: {body}"
        );
    }
    let request = client
        .http
        .post(client.url("/files/upload"))
        .bearer_auth(client.token.as_deref().unwrap())
        .multipart(reqwest::multipart::Form::new().text("other", "x"));
    assert_eq!(
        support::send(request).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // The bytes are not probed at upload, as in the real API.
    let (status, body) = client
        .upload_bytes("fake.mp4", "video/mp4", b"not really a video".to_vec())
        .await;
    assert_eq!(
        (status, body["size"].as_i64()),
        (StatusCode::CREATED, Some(18))
    );
    testbed.stop().await;
}

#[tokio::test]
async fn admin_queue_status_is_for_admins_only() {
    let testbed = start_on_services(|c| c.admins = vec!["boss".into()]).await;
    let user = Client::signed_up(&testbed, "worker_bee").await;
    assert_eq!(
        user.get("/admin/queue-status").await.0,
        StatusCode::FORBIDDEN
    );
    let admin = Client::signed_up(&testbed, "boss").await;
    let (status, body) = admin.get("/admin/queue-status").await;
    assert_eq!(
        (status, body["queue_length"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{body}"
    );
    testbed.stop().await;
}

#[tokio::test]
async fn unreachable_database_is_one_clear_error_without_the_password() {
    let mut config = testbed::Config::for_tests();
    config.database_url = Some("postgres://someone:hunter2@127.0.0.1:1/nothing".into());
    let error = testbed::start(config).await.err().unwrap().to_string();
    assert!(
        error.contains("cannot use PostgreSQL at postgres://someone:***@127.0.0.1:1/nothing"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    assert!(error.contains("DATABASE_URL"), "{error}");
}

#[tokio::test]
async fn the_binary_starts_says_its_store_and_stops_by_pid() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["--listen", "127.0.0.1:0", "--hash-cost", "4"])
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(line.contains("store: in-memory"), "{line}");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap();
    let health = reqwest::get(format!("{url}/health")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let pid = child.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
