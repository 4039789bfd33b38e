//! The web UI against the pages that should not drive it: a DNS-rebinding page (its own name,
//! now resolving to this machine, in `Host` and `Origin`), sent as a browser sends it over a raw
//! loopback connection; the UI opened beyond loopback without authentication; and the page
//! showing a host URL that carries secrets.

use std::time::Duration;

use clap::Parser;
use loadgen::cli::Cli;
use loadgen::web::WebUi;
use test_support::start_in_memory;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::scenario;

/// The UI as the binary serves it from `flags`, on a free loopback port.
async fn ui(flags: &[&str]) -> WebUi {
    let reads = scenario("reads.toml");
    let mut args = vec!["loadgen", "-f", &reads, "--web-port", "0"];
    args.extend(flags);
    let cli = Cli::try_parse_from(args).unwrap();
    WebUi::start(cli.resolve_for_web().unwrap(), &cli.web_settings().unwrap())
        .await
        .unwrap()
}

/// One request over a fresh connection, its headers written as given: (status, body).
async fn raw(addr: std::net::SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_string(&mut answer))
        .await
        .expect("the UI answers within a minute")
        .unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

/// Locust's form, posted to `/swarm` as a page served from `origin` (e.g.
/// `evil.example:8089`) posts it: that name in `Host` and `Origin`.
async fn swarm_from(addr: std::net::SocketAddr, origin: &str, host: &str) -> (u16, String) {
    let form = format!("user_count=1&spawn_rate=1&host={host}&run_time=30s");
    raw(
        addr,
        &format!(
            "POST /swarm HTTP/1.1\r\nHost: {origin}\r\nOrigin: http://{origin}\r\n\
             Content-Type: application/x-www-form-urlencoded"
        ),
        &form,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_page_cannot_start_load_and_is_told_which_flag_allows_a_name() {
    let testbed = start_in_memory(|_| {}).await;
    let target = testbed.base_url();
    let ui = ui(&[]).await;
    let port = ui.addr.port();

    // The rebinding page: evil.example now resolves to 127.0.0.1.
    let (status, body) = swarm_from(ui.addr, &format!("evil.example:{port}"), &target).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("--web-allowed-host evil.example") && !body.trim().contains('\n'),
        "{body}"
    );
    // It reads nothing either.
    let (status, _) = raw(
        ui.addr,
        &format!("GET /api/stats HTTP/1.1\r\nHost: evil.example:{port}"),
        "",
    )
    .await;
    assert_eq!(status, 403);
    let (_, stats) = raw(
        ui.addr,
        &format!("GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
        "",
    )
    .await;
    assert!(
        stats.contains("\"state\":\"ready\""),
        "no run started: {stats}"
    );
    assert_eq!(testbed.requests_answered(), 0);

    // The UI's own page, by address or by localhost, starts the run.
    for origin in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let (status, body) = swarm_from(ui.addr, &origin, &target).await;
        assert_eq!(status, 200, "{origin}: {body}");
        assert!(body.contains("\"success\":true"), "{origin}: {body}");
    }
    ui.session.lock().await.stop();
    ui.shutdown();

    // A name the user reaches the UI by is allowed with the flag.
    let ui = ui_allowing("loadgen.internal").await;
    let port = ui.addr.port();
    let (status, body) = swarm_from(ui.addr, &format!("loadgen.internal:{port}"), &target).await;
    assert_eq!(
        (status, body.contains("\"success\":true")),
        (200, true),
        "{body}"
    );
    let (status, _) = swarm_from(ui.addr, &format!("evil.example:{port}"), &target).await;
    assert_eq!(status, 403);
    ui.session.lock().await.stop();
    ui.shutdown();
    testbed.stop().await;
}

async fn ui_allowing(name: &str) -> WebUi {
    ui(&["--web-allowed-host", name]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_the_web_ui_wants_auth_or_the_flag_that_waives_it() {
    // The binary refuses at once, in one line naming both flags.
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["--web-host", "0.0.0.0", "--web-port", "0"])
            .args(["-H", "http://127.0.0.1:9", "-f", &scenario("reads.toml")])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("loadgen refuses instead of serving")
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert_eq!(crate::support::unlogged_lines(&stderr).len(), 1, "{stderr}");
    assert!(
        stderr.contains("--web-auth") && stderr.contains("--web-insecure-no-auth"),
        "{stderr}"
    );

    // With auth, or with the explicit waiver, it serves on every address.
    for flags in [
        &["--web-host", "0.0.0.0", "--web-auth", "admin:pw"][..],
        &["--web-host", "0.0.0.0", "--web-insecure-no-auth"][..],
    ] {
        let ui = ui(flags).await;
        assert!(ui.addr.ip().is_unspecified(), "{flags:?}");
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], ui.addr.port()));
        let (status, _) = raw(
            loopback,
            &format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{}", ui.addr.port()),
            "",
        )
        .await;
        let expected = if flags.contains(&"--web-auth") {
            401
        } else {
            200
        };
        assert_eq!(status, expected, "{flags:?}");
        ui.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_host_without_its_password_or_token() {
    let ui = ui(&[
        "-H",
        "http://admin:hunter2@127.0.0.1:9/?token=tok-s3cr3t&team=qa",
    ])
    .await;
    let port = ui.addr.port();
    for path in ["/", "/api/stats"] {
        let (status, body) = raw(
            ui.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
            "",
        )
        .await;
        assert_eq!(status, 200, "{path}");
        assert!(
            !body.contains("hunter2") && !body.contains("tok-s3cr3t"),
            "{path} shows a secret: {body}"
        );
        assert!(
            body.contains("127.0.0.1:9"),
            "{path} shows the host: {body}"
        );
    }
    ui.shutdown();
}
