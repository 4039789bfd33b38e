//! A master before authentication, against raw TCP clients that are not workers: forty
//! connections announcing a 15 MiB hello frame, and hellos whose names carry terminal escape
//! sequences or run to thousands of characters. A real worker still joins afterwards.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use test_support::start_in_memory;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::support::scenario;

const TOKEN: &str = "cluster-s3cret";

struct Master {
    child: Child,
    log: std::path::PathBuf,
    port: u16,
}

impl Master {
    /// A headless master on a free port that waits for one worker (`--cluster-token`).
    async fn start(dir: &Path, host: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("master.log");
        let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args([
                "--headless",
                "--master",
                "--master-bind-port",
                &port.to_string(),
            ])
            .args(["-H", host, "-f", &scenario("reads.toml"), "-t", "3s"])
            .args(["--expect-workers", "1", "--expect-workers-max-wait", "90"])
            .args(["--cluster-token", TOKEN, "--only-summary"])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let master = Self { child, log, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the master listens: {}",
                master.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        master
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (a minute at most, a bound only) until the log holds `text`.
    async fn until_logged(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (resident, peak resident) memory of the master, bytes.
    fn memory(&self) -> (u64, u64) {
        let pid = self.child.id().expect("the master runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap()
                * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

/// A raw client that completes the WebSocket handshake, announces a text frame of `length`
/// bytes and sends `sent` bytes of it; returns whether the master closed the connection within
/// 5 s of that (the master waits 10 s for a hello before it drops a silent one).
async fn announce_frame(port: u16, length: u64, sent: usize) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let upgrade = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        answer.push(byte[0]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 101"), "{answer:?}");
    // FIN + text; masked, 64-bit length; the mask key.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    stream.write_all(&header).await.unwrap();
    let chunk = vec![b'x'; 64 << 10];
    let send = async {
        let mut left = sent;
        while left > 0 {
            let n = left.min(chunk.len());
            if stream.write_all(&chunk[..n]).await.is_err() {
                break;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), send).await;
    let mut rest = [0u8; 1024];
    let closed = async {
        loop {
            match stream.read(&mut rest).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_announced_15_mib_hellos_cost_the_master_no_memory_and_a_worker_still_joins() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let mut master = Master::start(dir.path(), &testbed.base_url()).await;
    let (before, _) = master.memory();
    // All at once, each with 4 MiB of its frame on the way: 160 MiB if the master took them.
    let attackers: Vec<_> = (0..40)
        .map(|_| tokio::spawn(announce_frame(master.port, 15 << 20, 4 << 20)))
        .collect();
    let mut closed = 0;
    for attacker in attackers {
        closed += usize::from(attacker.await.unwrap());
    }
    let (_, peak) = master.memory();
    let grew = peak.saturating_sub(before);
    eprintln!(
        "master memory: {} KiB resident before, peak {} KiB after 40 x 4 MiB of 15 MiB hellos",
        before >> 10,
        peak >> 10
    );
    assert!(
        grew < 32 << 20,
        "the master's peak memory grew by {} MiB (from {} MiB resident)",
        grew >> 20,
        before >> 20
    );
    assert_eq!(closed, 40, "connections the master closed at once");

    // A real worker joins and runs its share.
    let worker_log = dir.path().join("worker.log");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--worker", "--master-port", &master.port.to_string()])
        .args([
            "--worker-name",
            "w1",
            "--threads",
            "1",
            "--cluster-token",
            TOKEN,
        ])
        .stderr(Stdio::from(std::fs::File::create(&worker_log).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    master.until_logged("worker w1 connected (1/1)").await;
    let code = tokio::time::timeout(Duration::from_secs(120), master.child.wait())
        .await
        .expect("the master's run ends")
        .unwrap()
        .code();
    assert!(matches!(code, Some(0 | 1)), "{code:?}: {}", master.log());
    assert!(testbed.requests_answered() > 0, "{}", master.log());
    let _ = worker.kill().await;
    testbed.stop().await;
}

/// A hello from a worker of this version named `name`, with `token`: the master's answer.
async fn hello(port: u16, name: &str, token: &str) -> serde_json::Value {
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let hello = serde_json::json!({"type": "hello", "data": {
        "protocol": loadgen::cluster::protocol::PROTOCOL, "version": env!("CARGO_PKG_VERSION"), "name": name, "cores": 1,
        "token": token
    }});
    socket.send(Message::text(hello.to_string())).await.unwrap();
    // The master's heartbeats may come first (as a worker does, skip them).
    loop {
        let answer = socket.next().await.unwrap().unwrap();
        let answer: serde_json::Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
        if answer["type"] != "heartbeat" {
            return answer;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_hellos_reach_the_log_without_escapes_and_short() {
    let dir = tempfile::tempdir().unwrap();
    let master = Master::start(dir.path(), "http://127.0.0.1:9").await;
    // Clear the screen, set the terminal's title, then a name of 5,000 characters.
    let escapes = "\u{1b}[2J\u{1b}]0;owned\u{7}evil";
    let refused = hello(master.port, escapes, "wrong").await;
    assert_eq!(refused["type"], "refused", "{refused}");
    let long = format!("{escapes}{}", "n".repeat(5000));
    let welcome = hello(master.port, &long, TOKEN).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    master.until_logged("connected (1/1)").await;
    let log = master.log();
    assert!(
        !log.chars().any(|c| c.is_control() && c != '\n'),
        "control characters in the log: {log:?}"
    );
    assert!(
        log.contains("worker [2J]0;ownedevil gave a wrong --cluster-token"),
        "{log}"
    );
    let line = log.lines().find(|l| l.contains("connected (1/1)")).unwrap();
    assert!(line.chars().count() < 120, "{line}");
    assert!(!log.contains(&"n".repeat(100)), "{log}");
}
