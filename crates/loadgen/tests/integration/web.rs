//! The web UI in a real browser: Debian's headless Chromium, driven over the DevTools protocol,
//! against the testbed with a planted rate limit. A user fills the form and starts, sees the
//! statistics and the charts update, raises the users mid-run, stops, downloads the CSV, and
//! finds the planted bottleneck named in the Findings tab; the host's chart is drawn live.

use std::time::Duration;

use clap::Parser;
use futures::{SinkExt, StreamExt};
use loadgen::web::{WebSettings, WebUi};
use serde_json::{Value, json};
use test_support::start_in_memory;
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::support::scenario;

/// The UI on a free loopback port, no authentication, nothing started by itself.
fn on_loopback() -> WebSettings {
    WebSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        autostart: false,
        autoquit: None,
        class_picker: false,
        auth: None,
        allowed_hosts: Vec::new(),
        insecure_no_auth: false,
        tls: None,
        base_path: String::new(),
    }
}

/// A DevTools connection to one page.
struct Browser {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: Option<String>,
    next_id: u64,
    process: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium and opens `url` in a page.
    async fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut process = tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium runs (apt-get install chromium)");
        let mut lines = tokio::io::BufReader::new(process.stderr.take().unwrap()).lines();
        let endpoint = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(ws) = line.strip_prefix("DevTools listening on ") {
                    return ws.trim().to_owned();
                }
            }
            panic!("chromium ended without a DevTools endpoint");
        })
        .await
        .expect("chromium started within a minute");
        // Keep draining its stderr so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .unwrap();
        let mut browser = Self {
            ws,
            session: None,
            next_id: 0,
            process,
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": url}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().map(str::to_owned);
        browser
    }

    /// One DevTools call; events in between are skipped.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
        loop {
            let Some(Ok(Message::Text(text))) = self.ws.next().await else {
                panic!("the DevTools connection closed during {method}");
            };
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Waits (at most 2 minutes, a bound only) until `expression` is true in the page.
    async fn until(&mut self, expression: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while self.eval(expression).await != json!(true) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never true in the page: {expression}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// With `WEB_UI_SCREENSHOTS=DIR`, saves the page as DIR/`name` (the README's pictures).
    async fn screenshot(&mut self, name: &str) {
        use base64::Engine;
        let Ok(dir) = std::env::var("WEB_UI_SCREENSHOTS") else {
            return;
        };
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(std::path::Path::new(&dir).join(name), png).unwrap();
    }

    async fn close(mut self) {
        let _ = self.process.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_starts_steers_stops_and_downloads_from_the_web_ui() {
    let testbed = start_in_memory(|c| c.rate_limit_per_minute = 60).await;
    let reads = scenario("reads.toml");
    // The monitor watches the host (and a container that is not there) beside the load.
    let cli = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "-f",
        &reads,
        "-u",
        "7",
        "--monitor-docker",
        "name=no-container-of-this-name",
    ])
    .unwrap();
    let template = cli.resolve_for_web().unwrap();
    assert_eq!(template.host, "", "no host given: the form asks for it");
    let ui = WebUi::start(template, &on_loopback()).await.unwrap();
    let mut page = Browser::open(&format!("http://{}/", ui.addr)).await;
    page.until("document.readyState === 'complete' && !!document.getElementById('swarm')")
        .await;
    // The command line's values fill the form.
    assert_eq!(
        page.eval("document.getElementById('user_count').value")
            .await,
        "7"
    );

    // Bad input gets a message in the form, not a dead page.
    page.eval("document.getElementById('user_count').value = '0'; document.getElementById('start_button').click(); 1")
        .await;
    page.until("document.getElementById('message').textContent.includes('at least 1')")
        .await;
    // A host that does not answer (nothing listens on the discard port).
    page.eval("document.getElementById('user_count').value = '2'; document.getElementById('host_input').value = 'http://127.0.0.1:9'; document.getElementById('start_button').click(); 1")
        .await;
    page.until("document.getElementById('message').textContent.includes('is the API running')")
        .await;

    let fill_and_start = format!(
        "document.getElementById('user_count').value = '2';
         document.getElementById('spawn_rate').value = '10';
         document.getElementById('host_input').value = '{}';
         document.getElementById('start_button').click(); 1",
        testbed.base_url()
    );
    page.eval(&fill_and_start).await;
    page.until("document.getElementById('users').textContent === '2'")
        .await;
    // The statistics table fills and keeps counting.
    page.until("document.querySelectorAll('#stats_table tr').length >= 3")
        .await;
    let count =
        "Number(document.querySelector('#stats_table tr.total td:nth-child(3)').textContent)";
    let first = page.eval(count).await.as_f64().unwrap();
    page.until(&format!("{count} > {first}")).await;
    page.screenshot("web-ui-statistics.png").await;
    // The charts are drawn (SVG from the server) once their tab is open.
    page.eval("document.querySelector('[data-tab=charts]').click(); 1")
        .await;
    page.until("document.querySelectorAll('#charts svg').length >= 3")
        .await;
    // The backend's charts share the time axis while the run goes.
    page.until("!!document.querySelector('#charts [data-title=Host] svg')")
        .await;
    page.screenshot("web-ui-charts.png").await;

    // Raise the users mid-run: the count changes live.
    page.eval(
        "document.getElementById('edit').click();
         document.getElementById('user_count').value = '5';
         document.getElementById('start_button').click(); 1",
    )
    .await;
    page.until("document.getElementById('users').textContent === '5'")
        .await;

    // The planted rate limit is named in the Findings tab while the run goes.
    page.eval("document.querySelector('[data-tab=findings]').click(); 1")
        .await;
    page.until("document.getElementById('findings_list').textContent.includes('Rate limiting')")
        .await;

    page.screenshot("web-ui-findings.png").await;

    page.eval("document.getElementById('stop').click(); 1")
        .await;
    page.until("document.getElementById('state').textContent === 'STOPPED'")
        .await;
    let csv = page
        .eval("fetch('stats/requests/csv').then(r => r.text())")
        .await;
    let csv = csv.as_str().unwrap();
    assert!(
        csv.starts_with("Type,Name,Request Count,Failure Count,Median Response Time"),
        "{csv}"
    );
    assert!(csv.contains("\r\n,Aggregated,"), "{csv}");
    // The UI's 95%ile and 99%ile columns hold the percentiles of those names: the figures of
    // the CSV's "95%" and "99%" columns for the reads (all in the steady state), within the
    // rounding of the two.
    page.until(
        "fetch('stats/requests/csv').then(r => r.text()).then(text => {
           const lines = text.trim().split('\\r\\n').map(l => l.split(','));
           const csv = lines.find(l => l[lines[0].indexOf('Name')] === '/api/v1/tasks');
           const headers = [...document.querySelectorAll('#stats_table th')].map(th => th.textContent);
           const ui = [...document.querySelectorAll('#stats_table tr')]
             .find(tr => tr.children[1] && tr.children[1].textContent === '/api/v1/tasks');
           if (!csv || !ui) return false;
           const near = (header, column) => Math.abs(
             Number(ui.children[headers.indexOf(header)].textContent) -
             Number(csv[lines[0].indexOf(column)])) <= 1;
           return near('95%ile (ms)', '95%') && near('99%ile (ms)', '99%');
         })",
    )
    .await;
    page.close().await;

    // A page elsewhere cannot start a run: its Origin is refused.
    let refused = reqwest::Client::new()
        .post(format!("http://{}/swarm", ui.addr))
        .header("Origin", "https://elsewhere.example")
        .form(&[("user_count", "1"), ("spawn_rate", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    ui.shutdown();
    testbed.stop().await;
}

/// The binary in web mode with --autostart: the run starts at once, and the Logs tab's API has
/// loadgen's own log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autostart_runs_at_once_and_the_logs_are_served() {
    let testbed = start_in_memory(|_| {}).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["-H", &testbed.base_url(), "-f", &scenario("reads.toml")])
        .args(["-u", "2", "-r", "10", "--autostart", "--web-port", "0"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ui = crate::support::web_ui_url(&mut child).await;
    let client = reqwest::Client::new();
    crate::support::poll_json(&client, &format!("{ui}/stats/requests"), |stats| {
        stats["user_count"] == 2
    })
    .await;
    let logs: Vec<String> = client
        .get(format!("{ui}/api/logs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        logs.iter().any(|l| l.contains("Ramping to 2 users")),
        "{logs:?}"
    );
    child.kill().await.unwrap();
    testbed.stop().await;
}

/// The start form's Rate field runs the open model; Locust's form, without the field, the
/// closed one; a rate in a unit we do not know is refused with what to write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_field_starts_the_open_model_and_locusts_form_the_closed_one() {
    let testbed = start_in_memory(|_| {}).await;
    let cli =
        loadgen::cli::Cli::try_parse_from(["loadgen", "-f", &scenario("reads.toml")]).unwrap();
    let ui = WebUi::start(cli.resolve_for_web().unwrap(), &on_loopback())
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let host = testbed.base_url();
    let swarm = |rate: Option<&'static str>| {
        let mut form = vec![
            ("user_count", "3"),
            ("spawn_rate", "10"),
            ("host", host.as_str()),
            ("run_time", "3s"),
        ];
        form.extend(rate.map(|r| ("arrival_rate", r)));
        let (client, url) = (client.clone(), format!("http://{}/swarm", ui.addr));
        let form: Vec<(String, String)> = form
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        async move {
            let answer: Value = client
                .post(url)
                .form(&form)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer
        }
    };
    let refused = swarm(Some("40/h")).await;
    assert_eq!(refused["success"], false, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("/s or /m"),
        "{refused}"
    );
    // Two runs, one after the other: the report of each once it has stopped.
    let mut reports = Vec::new();
    for rate in [Some("40/s"), None] {
        let started = swarm(rate).await;
        assert_eq!(started["success"], true, "{started}");
        let url = format!("http://{}/api/stats", ui.addr);
        let stats =
            crate::support::poll_json(&client, &url, |stats| stats["state"] == "stopped").await;
        reports.push(stats["report"].clone());
    }
    let open = &reports[0]["open_model"];
    let scheduled = open["scheduled"].as_u64().unwrap_or(0);
    assert!(scheduled.abs_diff(120) <= 2, "40/s for 3 s: {open}");
    assert_eq!(open["rate"], "40/s", "{open}");
    assert!(
        reports[1]["open_model"].is_null(),
        "{}",
        reports[1]["open_model"]
    );
    testbed.stop().await;
}

/// Monitor URLs carry passwords (in the user info, or as `?password=` / `?sslpassword=`). The
/// sources are real servers that refuse them, so their errors are shown too; nothing the UI
/// serves, and nothing loadgen prints, holds a planted secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_the_ui_serves_contains_a_monitor_password() {
    const SECRETS: [&str; 3] = ["PgPlanted91x", "SslPlanted92y", "RedisPlanted93z"];
    let mut postgres = url::Url::parse(&test_support::postgres_admin_url()).unwrap();
    postgres.set_password(Some(SECRETS[0])).unwrap();
    postgres
        .query_pairs_mut()
        .append_pair("sslpassword", SECRETS[1]);
    let mut redis = url::Url::parse(&test_support::redis_url()).unwrap();
    redis.set_password(Some(SECRETS[2])).unwrap();

    let testbed = start_in_memory(|_| {}).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["-H", &testbed.base_url(), "-f", &scenario("reads.toml")])
        .args(["-u", "2", "-r", "10", "--autostart", "--web-port", "0"])
        .args(["--monitor-postgres", postgres.as_str()])
        .args(["--monitor-redis", redis.as_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
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

    // Wait for the backend's refusals to be in the report: the sources were tried and failed.
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let request = client.get(format!("{ui}{path}"));
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        // Until --autostart has started the run, there is no report yet (a plain message).
        let report: Value =
            serde_json::from_str(&get("/api/report.json").await).unwrap_or(Value::Null);
        let ticks = report["backend"].as_array().map_or(0, Vec::len);
        if ticks >= 3 && report["steady_total"]["requests"].as_u64() > Some(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no backend ticks");
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
        "/api/profiles/1/flamegraph.svg",
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
    // The refusals themselves are served, with the URL masked: a leak there would be seen.
    assert!(
        served.contains(":***@") && served.contains("password authentication failed"),
        "the backend's refusals are not in what the UI serves"
    );
    let stopped = client.post(format!("{ui}/api/stop")).send().await.unwrap();
    assert!(stopped.status().is_success());
    served.push_str(&get("/api/report.json").await);
    let printed = printed.lock().unwrap().clone();
    for secret in SECRETS {
        assert!(!served.contains(secret), "the UI serves {secret}");
        assert!(!printed.contains(secret), "loadgen printed {secret}");
    }
    child.kill().await.unwrap();
    testbed.stop().await;
}

/// Appends every line read to `into`, until the stream ends.
async fn keep_lines<R: tokio::io::AsyncBufRead + Unpin>(
    mut lines: tokio::io::Lines<R>,
    into: std::sync::Arc<std::sync::Mutex<String>>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        into.lock().unwrap().push_str(&line);
    }
}
