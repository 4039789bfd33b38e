//! Findings that must not cry wolf, against real servers over loopback: one connection cut
//! mid-answer is no outage, and latencies measured on a few requests out of many failed are not
//! judged (nor is the run called healthy).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::back_to_back_for_3s;

/// What the server does with the `n`th request (from 0).
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    /// Headers and part of the body, then the connection closes: cut mid-answer.
    Cut,
    TooMany,
}

/// A keep-alive HTTP/1.1 server answering each request as `answer` says.
async fn serve(listener: TcpListener, answer: fn(u64) -> Answer) {
    let served = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let served = served.clone();
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(_request_line)) = lines.next_line().await {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                }
                let text = match answer(served.fetch_add(1, Ordering::Relaxed)) {
                    Answer::Ok => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned(),
                    Answer::TooMany => {
                        let body = r#"{"detail":"Too many requests. Please try again later."}"#;
                        format!(
                            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    Answer::Cut => {
                        let _ = write
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                            .await;
                        return;
                    }
                };
                if write.write_all(text.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A 3 s run of 4 users against a server answering as `answer` says: the JSON report.
async fn run_against(answer: fn(u64) -> Answer) -> Value {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, answer));
    back_to_back_for_3s(&host).await.0
}

fn findings(report: &Value) -> Vec<Value> {
    report["analysis"]["findings"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_cut_mid_answer_is_a_warning_not_an_outage() {
    let report = run_against(|n| if n == 100 { Answer::Cut } else { Answer::Ok }).await;
    let findings = findings(&report);
    let cut = findings
        .iter()
        .find(|f| f["rule"] == "load.connections_closed")
        .unwrap_or_else(|| panic!("the cut is reported: {findings:#?}"));
    assert_eq!(cut["severity"], "warning", "{cut}");
    assert_eq!(
        cut["title"], "1 connection closed by the server before the answer",
        "{cut}"
    );
    assert!(
        !findings.iter().any(|f| f["rule"] == "load.refused"),
        "a closed connection is no refusal: {findings:#?}"
    );
    assert!(
        !findings.iter().any(|f| f["severity"] == "critical"),
        "{findings:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latencies_of_the_few_requests_that_passed_are_not_judged() {
    // 1 in 100 answered: the rest are rate limited at once, in a few ms.
    let report = run_against(|n| {
        if n.is_multiple_of(100) {
            Answer::Ok
        } else {
            Answer::TooMany
        }
    })
    .await;
    let verdicts = report["analysis"]["verdicts"].as_array().unwrap();
    for name in [
        "95th percentile",
        "99th percentile",
        "Average response time",
    ] {
        let verdict = verdicts.iter().find(|v| v["name"] == name).unwrap();
        assert_eq!(verdict["met"], false, "{verdict}");
        assert!(
            verdict["measured"]
                .as_str()
                .unwrap()
                .starts_with("not judged: 99"),
            "{verdict}"
        );
    }
    let findings = findings(&report);
    assert!(
        findings.iter().any(|f| f["rule"] == "load.rate_limited"),
        "{findings:#?}"
    );
    assert!(
        !findings.iter().any(|f| f["title"] == "No problem found"),
        "{findings:#?}"
    );
}
