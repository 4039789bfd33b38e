//! Helpers shared by loadgen's integration tests.

use std::path::Path;

pub use test_support::fixtures;

/// Held by the tests that keep the machine's cores busy (a Python stack with its uvicorn,
/// Celery and PostgreSQL, the capacity search's event loop at its limit) or that measure a
/// core's worth of work: one at a time, so that two of them never share the 2 cores of a CI
/// runner. `scripts/test.sh` finds them by this lock (`scripts/heavy_tests.py`) and runs them
/// first, one at a time with nothing beside them, then the others three at a time.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The lines of `stderr` that are not log lines (`[2026-12-05 08:18:31,892] host/INFO/...`):
/// what loadgen says outside its log, such as an error, which must be one line.
pub fn unlogged_lines(stderr: &str) -> Vec<&str> {
    stderr
        .trim()
        .lines()
        .filter(|line| !(line.starts_with('[') && line.contains("] ")))
        .collect()
}

/// A scenario from `tests/scenarios/`.
pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
        .display()
        .to_string()
}

/// Waits (at most 2 minutes, a bound only) for the first update of the run that passes
/// `wanted`: tests await events, never a fixed time.
pub async fn until(
    handle: &loadgen::engine::RunHandle,
    wanted: impl Fn(&loadgen::engine::Update) -> bool,
) {
    let mut updates = handle.subscribe();
    let wait = async {
        loop {
            if updates.borrow_and_update().as_ref().is_some_and(&wanted) {
                return;
            }
            updates
                .changed()
                .await
                .expect("the run goes on until stopped");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), wait)
        .await
        .expect("the awaited event came within 2 minutes");
}

/// The loadgen binary set for a short headless run against `host` (2 users for 3 s); the test
/// adds its scenario and flags.
pub fn short_run(host: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
    command
        .args(["--headless", "-H", host, "-u", "2", "-t", "3s"])
        .kill_on_drop(true);
    command
}

/// A 3 s headless run of 4 users sending `tests/scenarios/slow.toml`'s one request back to
/// back against `host`, through the binary's own `run`: its JSON report, and that file's size.
pub async fn back_to_back_for_3s(host: &str) -> (serde_json::Value, u64) {
    use clap::Parser;
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("report.json");
    let cli = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "--headless",
        "-H",
        host,
        "-f",
        &scenario("slow.toml"),
        "-u",
        "4",
        "-r",
        "100",
        "-t",
        "3s",
        "--only-summary",
        "--report-json",
        json.to_str().unwrap(),
    ])
    .unwrap();
    loadgen::run(cli).await;
    let bytes = std::fs::read(&json).unwrap();
    (serde_json::from_slice(&bytes).unwrap(), bytes.len() as u64)
}

/// Sends `signal` (`TERM`, `KILL`, `STOP`...) to `child`, as `kill -SIGNAL PID` does.
pub fn send(signal: &str, child: &tokio::process::Child) {
    let pid = child.id().expect("the child runs").to_string();
    assert!(
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success()
    );
}

/// A TLS front on a free loopback port for the plain HTTP server on `plain` (host:port),
/// with `config`: its port. Each connection is relayed until either side closes.
pub async fn tls_front(config: std::sync::Arc<rustls::ServerConfig>, plain: String) -> u16 {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, plain) = (acceptor.clone(), plain.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut backend) = tokio::net::TcpStream::connect(plain).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut backend).await;
            });
        }
    });
    port
}

/// The web UI's URL that `child` (loadgen in web mode, its stderr piped) prints as it starts;
/// its stderr is drained from then on, so that it never blocks on a full pipe.
pub async fn web_ui_url(child: &mut tokio::process::Child) -> String {
    use tokio::io::AsyncBufReadExt;
    let stderr = child.stderr.take().expect("the child's stderr is piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let ui = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("loadgen: web UI at ") {
                return url.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("loadgen ended without serving its UI");
    })
    .await
    .expect("the web UI served within a minute");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    ui
}

/// Gets the JSON at `url` every 100 ms until `done` holds for it (within 2 minutes), and
/// returns it; the last one read is printed if it never does.
pub async fn poll_json(
    client: &reqwest::Client,
    url: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let answer: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        if done(&answer) {
            return answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
