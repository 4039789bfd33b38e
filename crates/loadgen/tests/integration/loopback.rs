//! A small HTTP/1.1 server on loopback that misbehaves on purpose (it never answers some
//! requests, answers some late, closes connections, redirects in a loop), counting every
//! request it reads; and loadgen run against it through the binary's own `run`. Shared by the
//! accounting and the open-model tests.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the server does with one request it has read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Act {
    /// `200 ok`, the connection kept alive.
    Answer,
    /// Closes the connection without a byte of answer.
    Close,
    /// Never answers (reads on, so that it sees the client go).
    Hang,
    /// Answers after this long.
    Late(Duration),
    /// `302` to the same path.
    Loop,
}

/// What the server saw.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// Requests read in full, by method and path.
    pub read: BTreeMap<String, u64>,
    /// Connections open now.
    pub open: i64,
    /// Peers accepted so far.
    pub peers: HashSet<SocketAddr>,
}

impl Seen {
    pub fn total(&self) -> u64 {
        self.read.values().sum()
    }
}

pub(super) type Policy = Arc<dyn Fn(u64, &str) -> Act + Send + Sync>;

/// A pseudo-random number from 0 to 99 for the `n`-th request (a fixed sequence, no RNG).
pub(super) fn percent(n: u64) -> u64 {
    (n.wrapping_mul(2_654_435_761) >> 7) % 100
}

/// Serves on 127.0.0.1 with `policy` deciding each request (by its number and path).
pub(super) async fn start(policy: Policy) -> (String, watch::Sender<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let seen = watch::Sender::new(Seen::default());
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let state = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, peer)) = listener.accept().await else {
                return;
            };
            state.send_modify(|s| {
                s.open += 1;
                s.peers.insert(peer);
            });
            let (state, policy, counter) = (state.clone(), policy.clone(), counter.clone());
            tokio::spawn(async move {
                connection(socket, &state, &*policy, &counter).await;
                state.send_modify(|s| s.open -= 1);
            });
        }
    });
    (host, seen)
}

pub(super) async fn connection(
    socket: TcpStream,
    seen: &watch::Sender<Seen>,
    policy: &(dyn Fn(u64, &str) -> Act + Send + Sync),
    counter: &std::sync::atomic::AtomicU64,
) {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            if header.trim().is_empty() {
                break;
            }
            if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        seen.send_modify(|s| *s.read.entry(format!("{method} {path}")).or_default() += 1);
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let answer = match policy(n, &path) {
            Act::Answer => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned(),
            Act::Close => return,
            Act::Hang => continue,
            Act::Late(after) => {
                tokio::time::sleep(after).await;
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_owned()
            }
            Act::Loop => {
                format!("HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\n\r\n")
            }
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Waits until the server has read everything the run sent: the run's connections are all
/// closed, so once the server has accepted one more connection of ours (the listen queue is
/// in order, so every earlier one was accepted before it) and none is open, it has read all.
pub(super) async fn settled(host: &str, seen: &watch::Sender<Seen>) -> u64 {
    let marker = TcpStream::connect(host.trim_start_matches("http://"))
        .await
        .unwrap();
    let mine = marker.local_addr().unwrap();
    drop(marker);
    let mut watch = seen.subscribe();
    let wait = watch.wait_for(|s| s.peers.contains(&mine) && s.open == 0);
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the server read every request within a minute")
        .unwrap()
        .total()
}

/// A scenario file of `steps` (TOML step tables) run by `tasks` (`run` arrays and weights).
pub(super) fn scenario(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("scenario.toml");
    std::fs::write(
        &path,
        format!("[[users]]\nname = \"Client\"\nwait = {{ constant = \"0s\" }}\n\n{body}"),
    )
    .unwrap();
    path.display().to_string()
}

/// Runs loadgen with `args` after `-H host -f scenario`, writing its JSON report (and CSV and
/// JUnit files) into `dir`: its exit code and the JSON.
pub(super) async fn run(
    host: &str,
    file: &str,
    dir: &std::path::Path,
    args: &[&str],
) -> (ExitCode, Value) {
    let json = dir.join("report.json");
    let csv = dir.join("run");
    let junit = dir.join("junit.xml");
    let mut argv = vec![
        "loadgen",
        "--headless",
        "-H",
        host,
        "-f",
        file,
        "-r",
        "100",
        "--only-summary",
        "--report-json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ];
    argv.extend_from_slice(args);
    let code = loadgen::run(loadgen::cli::Cli::try_parse_from(argv).unwrap()).await;
    let report = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (code, report)
}

/// Requests in every row (answered or failed), resent, in flight at the stop.
pub(super) fn accounted(report: &Value) -> (u64, u64, u64) {
    let rows: u64 = ["steady_total", "startup_total", "polls_total"]
        .iter()
        .map(|t| report[t]["requests"].as_u64().unwrap())
        .sum();
    (
        rows,
        report["resent"].as_u64().unwrap(),
        report["in_flight_at_stop"].as_u64().unwrap(),
    )
}
