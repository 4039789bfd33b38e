//! A target whose every error is unique (a request id in each 500's body) must not grow the
//! failures table, the memory or the reports without bound: messages are grouped by a
//! normalised text, and past a cap the rest are counted in one "other" row. No request is lost
//! from the counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::back_to_back_for_3s;

/// A 500 for every request, with a unique message: a UUID (normalised away) or, every other
/// time, a unique word of letters (which no normalisation can group).
async fn serve_unique_errors(listener: TcpListener, answered: Arc<AtomicU64>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let answered = answered.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(_request_line)) = lines.next_line().await {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                }
                let n = answered.fetch_add(1, Ordering::Relaxed);
                let detail = if n.is_multiple_of(2) {
                    format!("failed, request {}", uuid::Uuid::new_v4())
                } else {
                    // n in base 26, letters only.
                    let mut word = String::new();
                    let mut rest = n;
                    loop {
                        word.push((b'a' + (rest % 26) as u8) as char);
                        rest /= 26;
                        if rest == 0 {
                            break;
                        }
                    }
                    format!("failed in {word}")
                };
                let body = format!("{{\"detail\":\"{detail}\"}}");
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_error_texts_keep_the_failures_table_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicU64::new(0));
    tokio::spawn(serve_unique_errors(listener, answered.clone()));
    let (report, size) = back_to_back_for_3s(&host).await;
    let failures = report["failures"].as_array().unwrap();
    let requests = report["steady_total"]["requests"].as_u64().unwrap();
    // Far more unique messages than the table keeps.
    assert!(requests > 2_000, "only {requests} requests");
    let counted: u64 = failures
        .iter()
        .map(|f| f["occurrences"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, requests, "every failure is counted once");
    assert!(failures.len() <= 210, "{} failure rows", failures.len());
    let count_of = |needle: &str| -> u64 {
        failures
            .iter()
            .filter(|f| f["error"].as_str().unwrap().contains(needle))
            .map(|f| f["occurrences"].as_u64().unwrap())
            .sum()
    };
    // The UUIDs are grouped into one row: half the requests.
    assert!(
        count_of("failed, request <uuid>") * 3 > requests,
        "{failures:?}"
    );
    assert!(count_of("(other messages") > 0, "{failures:?}");
    // The reports stay small: the failures table is a few tens of KB whatever the requests.
    let table = serde_json::to_string(&report["failures"]).unwrap().len();
    assert!(table < 100_000, "the failures table is {table} bytes");
    assert!(size < 2_000_000, "the JSON report is {size} bytes");
}
