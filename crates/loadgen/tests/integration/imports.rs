//! `loadgen import openapi` and `loadgen import har` against real sources: the OpenAPI document
//! FastAPI serves for the Python reference stack (`testbed-py/`), imported from its URL and run
//! against that stack; and a HAR that headless Chromium records of a session on the testbed
//! (Playwright from PyPI, found through `PLAYWRIGHT_VENV`), imported and replayed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use test_support::{PythonStack, start_in_memory};

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// Runs `loadgen ARGS`: (exit code, stdout, stderr).
async fn loadgen(args: &[&str]) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(LOADGEN)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A headless run of `scenario` against `host` with `users` for `secs`: its JSON report.
async fn run(host: &str, scenario: &Path, users: &str, secs: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let (code, stdout, stderr) = loadgen(&[
        "--headless",
        "-H",
        host,
        "-f",
        scenario.to_str().unwrap(),
        "-u",
        users,
        "-r",
        users,
        "-t",
        secs,
        "--only-summary",
        "--report-json",
        json.to_str().unwrap(),
    ])
    .await;
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no report ({e}); exit {code:?}\n{stdout}\n{stderr}"));
    serde_json::from_str(&text).unwrap()
}

/// `METHOD name` → (requests, failures) of a report's rows of `phase` (`steady`, `startup`).
fn rows(report: &Value, phase: &str) -> BTreeMap<String, (u64, u64)> {
    report[phase]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                format!(
                    "{} {}",
                    row["method"].as_str().unwrap(),
                    row["name"].as_str().unwrap()
                ),
                (
                    row["requests"].as_u64().unwrap(),
                    row["failures"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// The steps whose failures the document cannot foresee: those that name a thing by an id
/// (a path parameter, or a body field `*_id`/`*_ids`) the document cannot know exists.
fn names_an_id(step: &toml::Value) -> bool {
    let path_has_param = step["name"].as_str().is_some_and(|n| n.contains('['));
    let body_has_id = step
        .get("json")
        .and_then(toml::Value::as_table)
        .is_some_and(|t| t.keys().any(|k| k.ends_with("_id") || k.ends_with("_ids")));
    path_has_param || body_has_id
}

/// FastAPI's own `/openapi.json` of the Python stack, imported from its URL: every operation
/// becomes a step (the upload is said to be left out: exit 3), the users sign up and log in
/// once each, and a run against the stack fails no request but those that name an id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_stacks_openapi_document_becomes_a_scenario_that_runs_on_it() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = PythonStack::start(&[("BCRYPT_ROUNDS", "4")]).await;
    imported_and_run(&stack.base_url(), "POST /api/v1/files/upload", &[]).await;
}

/// The testbed's own document (made from its routes by utoipa, at `/openapi.json`), the same:
/// the admin's queue status may answer 403, as the document says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testbeds_openapi_document_becomes_a_scenario_that_runs_on_it() {
    let testbed = start_in_memory(|_| {}).await;
    imported_and_run(
        &testbed.base_url(),
        "POST /files/upload",
        &[("GET /api/v1/admin/queue-status", "HTTP 403")],
    )
    .await;
}

/// Imports `host`'s `/openapi.json` (the upload `upload` is not translated) and runs it for
/// 6 s with 3 users back to back: the sign-ups and logins all pass, every other operation is
/// sent, and none fails but those that name an id and those `allowed` (name, error prefix).
async fn imported_and_run(host: &str, upload: &str, allowed: &[(&str, &str)]) {
    let (code, toml_text, stderr) =
        loadgen(&["import", "openapi", &format!("{host}/openapi.json")]).await;
    assert_eq!(
        code,
        Some(3),
        "the upload is not translated\n{stderr}\n{toml_text}"
    );
    assert!(
        stderr.contains("not translated: uploads a file") && stderr.contains(upload),
        "{stderr}"
    );
    assert!(!toml_text.contains("method = \"DELETE\""), "{toml_text}");
    let file: toml::Table = toml::from_str(&toml_text).unwrap();
    let steps = file["users"][0]["steps"].as_table().unwrap();
    assert!(steps.len() >= 15, "{toml_text}");

    // Back to back, so that a short run sends every operation.
    let quick = toml_text.replace(
        r#"wait = { between = ["1s", "3s"] }"#,
        r#"wait = { constant = "20ms" }"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("api.toml");
    std::fs::write(&scenario, &quick).unwrap();
    let report = run(host, &scenario, "3", "6s").await;

    let startup = rows(&report, "startup");
    for name in ["POST /api/v1/auth/register", "POST /api/v1/auth/login"] {
        assert_eq!(startup.get(name), Some(&(3, 0)), "{startup:#?}\n{quick}");
    }
    let steady = rows(&report, "steady");
    let on_start = file["users"][0]["on_start"].as_array().unwrap();
    let mut id_failures = 0;
    for (key, step) in steps {
        if on_start.iter().any(|k| k.as_str() == Some(key)) {
            continue; // the account's steps, at start-up
        }
        let name = format!(
            "{} {}",
            step["method"].as_str().unwrap(),
            step["name"].as_str().unwrap()
        );
        let (requests, failures) = steady.get(&name).copied().unwrap_or_default();
        assert!(requests > 0, "{name} was never sent: {steady:#?}");
        if names_an_id(step) {
            id_failures += failures;
        } else if !allowed.iter().any(|(n, _)| *n == name) {
            assert_eq!(failures, 0, "{name}: {steady:#?}\n{:#}", report["failures"]);
        }
    }
    // The failures there are are the API's answers about ids it does not have, or those the
    // document announces: never a server error, a timeout or a malformed request.
    for failure in report["failures"].as_array().unwrap() {
        let name = format!(
            "{} {}",
            failure["method"].as_str().unwrap(),
            failure["name"].as_str().unwrap()
        );
        let error = failure["error"].as_str().unwrap();
        let announced = allowed
            .iter()
            .any(|(n, e)| *n == name && error.starts_with(e));
        assert!(
            announced || (error.starts_with("HTTP 404") || error.starts_with("HTTP 400")),
            "{name}: {error}\n(failures on ids: {id_failures})\n{quick}"
        );
    }
}

/// The Playwright venv's python.
fn playwright_python() -> PathBuf {
    PathBuf::from(std::env::var("PLAYWRIGHT_VENV").expect(
        "PLAYWRIGHT_VENV is not set: this test records a HAR with headless Chromium; run it \
         with scripts/test.sh (or export PLAYWRIGHT_VENV=$(scripts/playwright-venv.sh))",
    ))
    .join("bin/python")
}

/// A session recorded by headless Chromium (log in, read, list) is imported and replayed: the
/// requests in their order with the recorded pauses, the token taken from the login's answer
/// rather than the recorded one, the password redacted unless asked; the replay with the
/// secrets kept fails nothing, the redacted one fails its login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_recorded_by_chromium_replays_against_the_testbed() {
    let testbed = start_in_memory(|_| {}).await;
    let host = testbed.base_url();
    let (username, password) = ("recorded_user", "Recorded1-secret");
    let registered = reqwest::Client::new()
        .post(format!("{host}/api/v1/auth/register"))
        .json(&serde_json::json!({
            "username": username, "email": "recorded@example.com", "password": password
        }))
        .send()
        .await
        .unwrap();
    assert!(registered.status().is_success(), "{registered:?}");

    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("session.har");
    let recorder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/har/record.py");
    let recorded = tokio::process::Command::new(playwright_python())
        .arg(&recorder)
        .args([&host, username, password, har.to_str().unwrap()])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        recorded.status.success(),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );

    let (code, redacted, stderr) = loadgen(&["import", "har", har.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{stderr}\n{redacted}");
    assert!(!redacted.contains(password), "{redacted}");
    assert!(redacted.contains(r#"password = "REDACTED""#), "{redacted}");
    assert!(
        redacted.contains(r#"Authorization = "Bearer ${access_token}""#)
            && redacted.contains(r#"extract = { access_token = "access_token" }"#),
        "the token comes from the login's answer:\n{redacted}"
    );
    let file: toml::Table = toml::from_str(&redacted).unwrap();
    let user = &file["users"][0];
    let order: Vec<&str> = user["tasks"][0]["run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| user["steps"][k.as_str().unwrap()]["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "/api/v1/health/",
            "/api/v1/auth/login",
            "/api/v1/users/me",
            "/api/v1/tasks?limit=5",
            "/api/v1/files"
        ],
        "{redacted}"
    );
    // The 600 ms the recorded user paused after logging in.
    let think = user["steps"]["post_api_v1_auth_login"]["think"]
        .as_str()
        .unwrap_or_else(|| panic!("no think time after the login:\n{redacted}"));
    let ms: u64 = think.trim_end_matches("ms").parse().unwrap();
    assert!((500..3000).contains(&ms), "{think}\n{redacted}");

    let (code, kept, stderr) =
        loadgen(&["import", "har", "--keep-secrets", har.to_str().unwrap()]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let replay = dir.path().join("kept.toml");
    std::fs::write(&replay, &kept).unwrap();
    let report = run(&host, &replay, "2", "4s").await;
    let steady = rows(&report, "steady");
    for path in ["/api/v1/auth/login", "/api/v1/users/me", "/api/v1/files"] {
        let (requests, failures) = steady
            .get(&format!(
                "{} {path}",
                if path.contains("login") {
                    "POST"
                } else {
                    "GET"
                }
            ))
            .copied()
            .unwrap_or_default();
        assert!(requests > 0 && failures == 0, "{path}: {steady:#?}\n{kept}");
    }

    let replay = dir.path().join("redacted.toml");
    std::fs::write(&replay, &redacted).unwrap();
    let report = run(&host, &replay, "1", "2s").await;
    let steady = rows(&report, "steady");
    let (requests, failures) = steady["POST /api/v1/auth/login"];
    assert!(
        requests > 0 && failures == requests,
        "a REDACTED password cannot log in: {steady:#?}"
    );
}
