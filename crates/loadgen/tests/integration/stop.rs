//! What happens to requests in flight when a run stops: with Locust's `--stop-timeout` they
//! end and are measured; without it they are cut off and counted apart. Either way the server's
//! count equals the report's rows plus the in-flight count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Parser;
use loadgen::engine::Run;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::scenario;

const USERS: u64 = 4;

/// Answers every request once `gate` opens; counts the requests it read.
async fn serve(listener: TcpListener, gate: watch::Receiver<bool>, received: Arc<AtomicU64>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let (mut gate, received) = (gate.clone(), received.clone());
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(_request_line)) = lines.next_line().await {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                }
                received.fetch_add(1, Ordering::SeqCst);
                if gate.wait_for(|open| *open).await.is_err() {
                    return;
                }
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Runs `USERS` users until each has a request held by the server, stops the run, and returns
/// (requests the server read, requests measured, in flight at the stop). The server answers
/// from the stop on when `answer_at_stop`, else never.
async fn stop_with_requests_held(stop_timeout: &str, answer_at_stop: bool) -> (u64, u64, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let (open, gate) = watch::channel(false);
    let received = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn(serve(listener, gate, received.clone()));
    let cli = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "-H",
        &host,
        "-f",
        &scenario("slow.toml"),
        "-u",
        &USERS.to_string(),
        "-r",
        "100",
        "-t",
        "5m",
        "--stop-timeout",
        stop_timeout,
    ])
    .unwrap();
    let handle = Run::start(&cli.resolve().unwrap()).await.unwrap();
    let every_user_waits = async {
        while received.load(Ordering::SeqCst) < USERS {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), every_user_waits)
        .await
        .expect("every user sent its first request");
    handle.stop();
    // From now on the server answers everything at once.
    open.send_replace(answer_at_stop);
    let outcome = handle.wait().await;
    server.abort();
    let measured: u64 = outcome.stats.endpoints.values().map(|e| e.count).sum();
    (
        received.load(Ordering::SeqCst),
        measured,
        outcome.stats.in_flight_at_stop,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_stop_timeout_requests_in_flight_are_counted_apart() {
    let (received, measured, in_flight) = stop_with_requests_held("0s", false).await;
    assert_eq!(in_flight, USERS, "each user's held request was cut off");
    assert_eq!(measured, 0, "no held request was ever answered");
    assert_eq!(received, measured + in_flight);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_timeout_lets_each_user_finish_its_request() {
    let (received, measured, in_flight) = stop_with_requests_held("60s", true).await;
    assert_eq!(
        in_flight, 0,
        "every held request ended within --stop-timeout"
    );
    assert!(measured >= USERS, "the held requests were measured");
    assert_eq!(
        received, measured,
        "no user started a request it did not finish"
    );
}
