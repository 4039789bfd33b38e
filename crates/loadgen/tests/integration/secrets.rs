//! One secret planted in every kind of input loadgen takes, then looked for in every output it
//! writes: the monitor's PostgreSQL URL (its real password, given through an environment
//! variable, plus a `?sslpassword=` parameter), a Redis URL's password, an `Authorization` and
//! an API-key header of the scenario, logged at TRACE (which prints every request's headers and
//! the DEBUG line of each request), a step's `?password=`, `?api_key=` and `?sig=`, the host's
//! `?password=`, the command line of a busy process on the host the monitor watches, and a
//! literal and a comment of a query running in the watched database. The web UI is grepped the
//! same way. And a redirect to another host: what reaches it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use test_support::start_in_memory;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::{short_run, until};

const TOKEN: &str = "PlantedBearer81";
const API_KEY: &str = "PlantedApiKey82";
const SSL: &str = "PlantedSsl83";
const REDIS: &str = "PlantedRedis84";
const STEP_PASSWORD: &str = "PlantedStepPw85";
const STEP_KEY: &str = "PlantedStepKey86";
const STEP_SIG: &str = "PlantedStepSig87";
const HOST_PASSWORD: &str = "PlantedHostPw88";
const ARGUMENT: &str = "PlantedArgument89";
const SQL_LITERAL: &str = "PlantedSqlLiteral90";
const SQL_COMMENT: &str = "PlantedSqlComment91";

/// A query holding a secret as a literal and in a comment, running (asleep) in the watched
/// database until [`SleepingQuery::cancel`]: its backend's pid.
struct SleepingQuery {
    pid: i32,
    task: tokio::task::JoinHandle<()>,
}

impl SleepingQuery {
    async fn start(url: &str) -> Self {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut connection)
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            let query = format!("/* {SQL_COMMENT} */ SELECT pg_sleep(60), '{SQL_LITERAL}'::text");
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(query))
                .execute(&mut connection)
                .await;
        });
        Self { pid, task }
    }

    /// Cancels the query on the server (aborting the task alone would leave it asleep there).
    async fn cancel(self, url: &str) {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        let _: bool = sqlx::query_scalar("SELECT pg_cancel_backend($1)")
            .bind(self.pid)
            .fetch_one(&mut connection)
            .await
            .unwrap();
        let _ = self.task.await;
    }
}

/// A process that burns a core, detached from the test (a child of the test would be in the
/// test runner's process tree, never a group of its own named `yes`), so that the monitor's
/// host source counts it among the busiest, with a secret in its command line.
fn burner() -> test_support::Detached {
    test_support::Detached::start("yes", &[&format!("api_key={ARGUMENT}")])
}

/// A scenario whose one step's path holds secrets in its query, and whose headers are
/// credentials.
fn secret_scenario(dir: &std::path::Path) -> String {
    let scenario = dir.join("secret.toml");
    std::fs::write(
        &scenario,
        format!(
            "[[users]]\nname = \"Reader\"\nwait = {{ constant = \"50ms\" }}\n\
             headers = {{ Authorization = \"Bearer {TOKEN}\", X-Api-Key = \"{API_KEY}\" }}\n\
             [[users.tasks]]\nrun = [\"tasks\"]\n[users.steps.tasks]\n\
             path = \"/api/v1/tasks?password={STEP_PASSWORD}&api_key={STEP_KEY}&sig={STEP_SIG}&page=1\"\n"
        ),
    )
    .unwrap();
    scenario.display().to_string()
}

/// The name the step is reported under.
const MASKED_NAME: &str = "/api/v1/tasks?password=***&api_key=***&sig=***&page=1";

/// The monitor's PostgreSQL URL: the test server's real password (the monitor must connect
/// with it) and a planted `?sslpassword=`.
fn monitor_postgres() -> (url::Url, String) {
    let mut postgres = url::Url::parse(&test_support::postgres_admin_url()).unwrap();
    let password = postgres.password().unwrap().to_owned();
    assert!(password.len() >= 8, "a password worth looking for");
    postgres.query_pairs_mut().append_pair("sslpassword", SSL);
    (postgres, password)
}

fn assert_no_secret(everything: &str, password: &str) {
    for secret in [
        TOKEN,
        API_KEY,
        SSL,
        REDIS,
        STEP_PASSWORD,
        STEP_KEY,
        STEP_SIG,
        HOST_PASSWORD,
        ARGUMENT,
        SQL_LITERAL,
        SQL_COMMENT,
        password,
    ] {
        if let Some(at) = everything.find(secret) {
            // What came before it says where it leaked.
            let before: Vec<char> = everything[..at].chars().rev().take(200).collect();
            let before: String = before.into_iter().rev().collect();
            panic!("{secret} leaked: ...{before}");
        }
    }
}

/// Whether the monitor counted the burner among the host's process groups.
fn burner_sampled(report: &Value) -> bool {
    report["backend"].as_array().is_some_and(|ticks| {
        ticks.iter().any(|tick| {
            tick["sources"]["host"]["values"]["processes"]
                .as_array()
                .is_some_and(|groups| groups.iter().any(|g| g["name"] == "yes"))
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_planted_secret_reaches_any_output() {
    let testbed = start_in_memory(|_| {}).await;
    let out = tempfile::tempdir().unwrap();
    let scenario = secret_scenario(out.path());
    let (postgres, password) = monitor_postgres();
    let mut redis = url::Url::parse(&test_support::redis_url()).unwrap();
    redis.set_password(Some(REDIS)).unwrap();
    let host = format!("{}/?password={HOST_PASSWORD}", testbed.base_url());
    let burner = burner();
    let admin = test_support::postgres_admin_url();
    let sleeping = SleepingQuery::start(&admin).await;

    let path = |name: &str| out.path().join(name).display().to_string();
    let output = short_run(&host)
        .env("LOADGEN_MONITOR_POSTGRES", postgres.as_str())
        .args(["-f", &scenario])
        .args(["--monitor-redis", redis.as_str()])
        .args(["--loglevel", "TRACE", "--logfile", &path("loadgen.log")])
        .args([
            "--report-json",
            &path("report.json"),
            "--html",
            &path("report.html"),
        ])
        .args(["--csv", &path("run"), "--junit", &path("junit.xml")])
        .args(["--summary-md", &path("summary.md")])
        .output()
        .await
        .unwrap();
    drop(burner);
    sleeping.cancel(&admin).await;
    let mut everything = String::from_utf8_lossy(&output.stdout).into_owned();
    everything.push_str(&String::from_utf8_lossy(&output.stderr));
    let mut files = 0;
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "secret.toml" {
            everything.push_str(&std::fs::read_to_string(entry.path()).unwrap());
            files += 1;
        }
    }
    // loadgen.log, report.json, report.html, junit.xml, summary.md and the five CSV files.
    assert!(files >= 10, "{files} files written");
    // The planted inputs were used: requests carried the headers (masked in the log), each
    // request has its DEBUG line, the step is reported by its masked name, the host line names
    // the host, the monitor watched PostgreSQL and the burner, and the Redis refusal is
    // reported.
    assert!(
        everything
            .to_ascii_lowercase()
            .contains("authorization: bearer ***"),
        "no TRACE headers"
    );
    assert!(
        everything.contains(&format!(
            "GET http://{}",
            testbed.base_url().trim_start_matches("http://")
        )) && everything.contains(MASKED_NAME),
        "no DEBUG request lines, or the step under another name"
    );
    assert!(
        everything.contains("/?password=***"),
        "the host is not shown"
    );
    assert!(
        everything.contains("\"postgres\"") && !everything.contains("PostgreSQL was not watched"),
        "PostgreSQL was not watched"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(path("report.json")).unwrap()).unwrap();
    assert!(burner_sampled(&report), "the burner was never sampled");
    assert!(
        report["backend"]
            .as_array()
            .is_some_and(|ticks| ticks.iter().any(|tick| {
                tick["sources"]["postgres"]["values"]["queries"]
                    .as_array()
                    .is_some_and(|queries| {
                        queries
                            .iter()
                            .any(|q| q["query"] == "SELECT pg_sleep(?), ?::text")
                    })
            })),
        "the sleeping query was never sampled"
    );
    assert!(
        everything.contains("Redis was not watched"),
        "no Redis finding"
    );
    assert_no_secret(&everything, &password);
    testbed.stop().await;
}

/// The web UI of a run with every secret planted: no page, API answer, download or log line
/// it serves holds one, nor anything loadgen prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_web_ui_serves_holds_a_planted_secret() {
    let testbed = start_in_memory(|_| {}).await;
    let out = tempfile::tempdir().unwrap();
    let scenario = secret_scenario(out.path());
    let (postgres, password) = monitor_postgres();
    let host = format!("{}/?password={HOST_PASSWORD}", testbed.base_url());
    let burner = burner();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["-H", &host, "-f", &scenario])
        .args(["-u", "2", "-r", "10", "--autostart", "--web-port", "0"])
        .args(["--monitor-postgres", postgres.as_str()])
        .args(["--loglevel", "DEBUG"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let printed = Arc::new(Mutex::new(String::new()));
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let ui = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            printed.lock().unwrap().push_str(&line);
            if let Some(url) = line.strip_prefix("loadgen: web UI at ") {
                return url.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("loadgen ended without serving its UI");
    })
    .await
    .unwrap();
    tokio::spawn(keep_lines(stdout, printed.clone()));
    tokio::spawn(keep_lines(stderr, printed.clone()));

    let client = reqwest::Client::new();
    let get = |path: &str| {
        let request = client.get(format!("{ui}{path}"));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    // Await requests and backend ticks that count the burner.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let report: Value =
            serde_json::from_str(&get("/api/report.json").await).unwrap_or(Value::Null);
        if report["steady_total"]["requests"].as_u64() > Some(0) && burner_sampled(&report) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no requests, or the burner never sampled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut served = String::new();
    for path in [
        "/",
        "/assets/ui.js",
        "/stats/requests",
        "/stats/requests/csv",
        "/stats/failures/csv",
        "/exceptions/csv",
        "/api/stats",
        "/api/charts",
        "/api/logs",
        "/api/report.json",
        "/api/report.html",
        "/api/report.csv",
        "/stats/report",
        "/exceptions",
        "/tasks",
        "/logs",
    ] {
        served.push_str(&get(path).await);
    }
    // What was looked at holds the planted inputs, masked.
    assert!(
        served.contains(MASKED_NAME) && served.contains("/?password=***"),
        "the UI does not show the step or the host"
    );
    let stopped = client.post(format!("{ui}/api/stop")).send().await.unwrap();
    assert!(stopped.status().is_success());
    served.push_str(&get("/api/report.json").await);
    drop(burner);
    child.kill().await.unwrap();
    let printed = printed.lock().unwrap().clone();
    assert_no_secret(&served, &password);
    assert_no_secret(&printed, &password);
    testbed.stop().await;
}

/// Appends every line read to `into`, until the stream ends.
async fn keep_lines<R: tokio::io::AsyncBufRead + Unpin>(
    mut lines: tokio::io::Lines<R>,
    into: Arc<Mutex<String>>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        let mut into = into.lock().unwrap();
        into.push_str(&line);
        into.push('\n');
    }
}

/// Each request head a server read: the target, then the headers (names in lower case).
type Heads = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// A raw HTTP/1.1 server on 127.0.0.1 that records every request head and answers with
/// `answer(target)`; its port.
async fn recording_server(
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (u16, Heads, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads: Heads = Arc::default();
    let answer = Arc::new(answer);
    let recorded = heads.clone();
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (heads, answer) = (recorded.clone(), answer.clone());
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(request_line)) = lines.next_line().await {
                    let mut headers = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
                        }
                    }
                    let target = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                    let reply = answer(&target);
                    heads.lock().unwrap().push((target, headers));
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, heads, server)
}

/// The headers of the requests to `target`, by name: every value seen.
fn headers_of(heads: &Heads, target: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (seen, headers) in heads.lock().unwrap().iter() {
        if seen == target {
            for (name, value) in headers {
                out.entry(name.clone()).or_default().push(value.clone());
            }
        }
    }
    out
}

/// A redirect to another host carries none of the user's credentials: not Authorization, not
/// the Cookie the scenario set, not X-Api-Key, not a header the scenario marks secret. The
/// cookie jar still gives a host what its rules give it: cookies ignore ports, so the first
/// host's cookie goes to 127.0.0.1 on another port, and never to `localhost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_carries_no_credential() {
    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let (second_port, second, second_server) = recording_server(|_| OK.to_owned()).await;
    let (first_port, first, first_server) = recording_server(move |target| match target {
        "/login" => "HTTP/1.1 200 OK\r\nSet-Cookie: jar=FromTheJar; Path=/\r\n\
                     Content-Length: 0\r\n\r\n"
            .to_owned(),
        "/to-port" => format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{second_port}/same-name\r\n\
             Content-Length: 0\r\n\r\n"
        ),
        "/to-name" => format!(
            "HTTP/1.1 302 Found\r\nLocation: http://localhost:{second_port}/other-name\r\n\
             Content-Length: 0\r\n\r\n"
        ),
        _ => OK.to_owned(),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("redirects.toml");
    std::fs::write(
        &scenario,
        format!(
            "[[users]]\nname = \"Redirected\"\nwait = {{ constant = \"20ms\" }}\n\
             secret_headers = [\"X-Tenant-Seal\"]\n\
             headers = {{ Authorization = \"Bearer {TOKEN}\", Cookie = \"planted=PlantedCookie\", \
             X-Api-Key = \"{API_KEY}\", X-Tenant-Seal = \"PlantedSeal\", X-Trace = \"kept-1\" }}\n\
             on_start = [\"login\"]\n\
             [[users.tasks]]\nrun = [\"to_port\", \"to_name\"]\n\
             [users.steps.login]\npath = \"/login\"\n\
             [users.steps.to_port]\npath = \"/to-port\"\n\
             [users.steps.to_name]\npath = \"/to-name\"\n"
        ),
    )
    .unwrap();
    let cli = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "-H",
        &format!("http://127.0.0.1:{first_port}"),
        "-f",
        &scenario.display().to_string(),
        "-u",
        "1",
        "-r",
        "10",
        "-t",
        "5m",
    ])
    .unwrap();
    let handle = loadgen::engine::Run::start(&cli.resolve().unwrap())
        .await
        .unwrap();
    // The login and a few rounds of both redirects.
    until(&handle, |u| u.second.cumulative.requests >= 7).await;
    handle.stop();
    handle.wait().await;
    first_server.abort();
    second_server.abort();

    let sent = headers_of(&first, "/to-port");
    for name in ["authorization", "x-api-key", "x-tenant-seal", "x-trace"] {
        assert!(sent.contains_key(name), "{name} never sent: {sent:?}");
    }
    assert!(
        sent["cookie"].iter().any(|c| c.contains("planted=")),
        "{sent:?}"
    );
    for (target, jar) in [("/same-name", true), ("/other-name", false)] {
        let reached = headers_of(&second, target);
        assert!(
            reached
                .get("x-trace")
                .is_some_and(|v| v.iter().all(|v| v == "kept-1")),
            "{target} was not reached, or without the harmless header: {reached:?}"
        );
        for name in [
            "authorization",
            "proxy-authorization",
            "x-api-key",
            "x-tenant-seal",
        ] {
            assert!(
                !reached.contains_key(name),
                "{name} reached {target}: {reached:?}"
            );
        }
        let cookies = reached.get("cookie").cloned().unwrap_or_default();
        assert!(
            !cookies.iter().any(|c| c.contains("planted")),
            "the scenario's Cookie reached {target}: {cookies:?}"
        );
        assert_eq!(
            !cookies.is_empty() && cookies.iter().all(|c| c == "jar=FromTheJar"),
            jar,
            "the jar's cookie at {target}: {cookies:?}"
        );
    }
}
