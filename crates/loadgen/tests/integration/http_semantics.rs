//! loadgen against a small raw HTTP server that plants what Locust's HttpUser handles for its
//! users: a 307 redirect, a 304, a value that would break the request line, and a login that
//! fails, so the token-carrying step must not go out without its token.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use clap::Parser;
use loadgen::engine::Run;
use loadgen::stats::Phase;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::{scenario, until};

/// Request lines the server saw, with whether they carried `Authorization`.
type Seen = Arc<Mutex<BTreeMap<String, u64>>>;

async fn serve(listener: TcpListener, seen: Seen) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(request_line)) = lines.next_line().await {
                let mut authorized = false;
                let mut cookies = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    authorized |= lower.starts_with("authorization:");
                    if let Some(value) = lower.strip_prefix("cookie:") {
                        cookies = value.trim().to_owned();
                    }
                }
                let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                let key = format!("{path}{}", if authorized { " (authorized)" } else { "" });
                {
                    let mut counts = seen.lock().unwrap();
                    *counts.entry(key).or_default() += 1;
                    if !cookies.is_empty() {
                        *counts
                            .entry(format!("{path} cookie: {cookies}"))
                            .or_default() += 1;
                    }
                }
                let answer = match path.as_str() {
                    "/login" => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                    "/old" => {
                        "HTTP/1.1 307 Temporary Redirect\r\nLocation: /new?from=old\r\nContent-Length: 0\r\n\r\n"
                    }
                    "/new?from=old" => {
                        "HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\nSet-Cookie: narrow=1; Path=/items\r\nContent-Length: 2\r\n\r\nok"
                    }
                    "/cached" => "HTTP/1.1 304 Not Modified\r\n\r\n",
                    "/jobs" => "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"id\":\"j1\"}",
                    "/jobs/j1" => {
                        "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{\"status\":\"success\"}"
                    }
                    _ => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_redirects_counts_3xx_as_success_and_keeps_values_as_data() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let server = tokio::spawn(serve(listener, seen.clone()));
    let cli = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "-H",
        &host,
        "-f",
        &scenario("http_semantics.toml"),
        "-u",
        "2",
        "-r",
        "10",
        "-t",
        "5m",
    ])
    .unwrap();
    let handle = Run::start(&cli.resolve().unwrap()).await.unwrap();
    // Several rounds of every task, then stop.
    until(&handle, |u| u.second.cumulative.requests >= 40).await;
    handle.stop();
    let outcome = handle.wait().await;
    server.abort();

    let rows: BTreeMap<String, (u64, u64)> = outcome
        .stats
        .endpoints
        .iter()
        .filter(|(key, _)| key.phase == Phase::Steady)
        .map(|(key, e)| (key.name.to_string(), (e.count, e.failures)))
        .collect();
    let (moved, moved_failed) = rows["/old"];
    assert!(
        moved > 0 && moved_failed == 0,
        "a 307 followed to a 200: {rows:?}"
    );
    assert!(
        !rows.contains_key("/new?from=old"),
        "recorded once, under its own name"
    );
    let (cached, cached_failed) = rows["/cached"];
    assert!(
        cached > 0 && cached_failed == 0,
        "a 304 is a success: {rows:?}"
    );
    let statuses = &outcome
        .stats
        .endpoints
        .iter()
        .find(|(k, _)| &*k.name == "/old")
        .unwrap()
        .1
        .statuses;
    assert_eq!(
        statuses.keys().collect::<Vec<_>>(),
        [&200],
        "the final status is recorded"
    );

    let seen = seen.lock().unwrap().clone();
    // Every 307 was followed; the stop may cut each of the 2 users between the two hops.
    let (old, new) = (seen["/old"], seen["/new?from=old"]);
    assert!(new <= old && old - new <= 2, "{seen:?}");
    assert!(
        seen.contains_key("/items/a%20b%2Fc%3Fd%0D%0AX-Injected%3A%201"),
        "the value is one percent-encoded path segment: {seen:?}"
    );
    assert!(
        !seen.keys().any(|k| k.contains("authorized")),
        "no request carried a token it never got: {seen:?}"
    );
    // The user's cookie jar: a cookie goes back where its path allows, and only there.
    assert!(seen.contains_key("/cached cookie: session=abc"), "{seen:?}");
    assert!(
        seen.contains_key("/jobs/j1 cookie: session=abc"),
        "the job poller sends the user's cookies: {seen:?}"
    );
    assert!(
        seen.keys()
            .any(|k| k.starts_with("/items/") && k.contains("narrow=1")),
        "{seen:?}"
    );
    assert!(
        !seen
            .keys()
            .any(|k| k.starts_with("/cached") && k.contains("narrow")),
        "{seen:?}"
    );
    assert!(
        !seen.contains_key("/me"),
        "the step that needs the token is not sent: {seen:?}"
    );
    assert!(
        outcome
            .stats
            .exceptions
            .keys()
            .any(|m| m.contains("me") && m.contains("token")),
        "the skipped step is a named scenario error: {:?}",
        outcome.stats.exceptions
    );
}
