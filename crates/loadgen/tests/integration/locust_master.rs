//! loadgen as a worker of a real Locust 2.47 master (`--worker --master-protocol locust`):
//! the master's CSV files hold the requests loadgen made, and both end when the run does.

use std::path::PathBuf;
use std::time::Duration;

use loadgen::locust_worker::message::{Message, field, map};
use rmpv::Value;
use test_support::start_in_memory;
use zeromq::{Socket, SocketRecv, SocketSend};

use crate::support::fixtures;

/// The master's user class; it never runs here (the master runs no users), but its name is
/// what the master shares the users out by.
const LOCUSTFILE: &str = "\
from locust import HttpUser, task, constant

class Reader(HttpUser):
    wait_time = constant(0.1)

    @task
    def health(self):
        self.client.get('/api/v1/health/')
";

/// The same user type, as loadgen's scenario.
const SCENARIO: &str = "\
[[users]]
name = 'Reader'
wait = { constant = '0.1s' }

[[users.tasks]]
run = ['health']

[users.steps.health]
path = '/api/v1/health/'
";

fn locust() -> PathBuf {
    PathBuf::from(std::env::var("LOCUST_VENV").expect(
        "LOCUST_VENV is not set: this test joins a real Locust master; run it with \
         scripts/test.sh (or export LOCUST_VENV=$(scripts/locust-venv.sh))",
    ))
    .join("bin/locust")
}

/// A port free on loopback now (Locust's master does not say which port 0 gave it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `Request Count` and `Failure Count` of a `_stats.csv` row.
fn counts(csv: &str, name: &str) -> Option<(u64, u64)> {
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let headers = rows.headers().unwrap().clone();
    let column = |title: &str| headers.iter().position(|h| h == title).unwrap();
    let (n, requests, failures) = (
        column("Name"),
        column("Request Count"),
        column("Failure Count"),
    );
    rows.records().map(Result::unwrap).find_map(|row| {
        (&row[n] == name).then(|| {
            (
                row[requests].parse().unwrap(),
                row[failures].parse().unwrap(),
            )
        })
    })
}

/// A headless Locust master with `--expect-workers 1` and one loadgen worker: the master's
/// `_stats.csv` counts what the testbed answered, Locust exits 0, and the worker exits 0 when
/// the master quits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locust_master_runs_its_users_on_a_loadgen_worker() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("locustfile.py"), LOCUSTFILE).unwrap();
    std::fs::write(dir.path().join("scenario.toml"), SCENARIO).unwrap();
    let port = free_port().to_string();
    let master = tokio::process::Command::new(locust())
        .current_dir(dir.path())
        .args(["-f", "locustfile.py", "--master", "--headless"])
        .args([
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            &port,
        ])
        .args(["--expect-workers", "1", "-u", "4", "-r", "4", "-t", "5s"])
        .args(["--csv", "run", "-H", &testbed.base_url()])
        .kill_on_drop(true)
        .output();
    let worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(dir.path())
        .args(["--worker", "--master-protocol", "locust"])
        .args(["--master-host", "127.0.0.1", "--master-port", &port])
        .args(["-f", "scenario.toml", "--fixtures"])
        .arg(fixtures())
        .kill_on_drop(true)
        .output();
    let (master, worker) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(30), master),
        tokio::time::timeout(Duration::from_secs(30), worker)
    );
    let (master, worker) = (master.unwrap().unwrap(), worker.unwrap().unwrap());
    let logs = format!(
        "locust: {}\nloadgen: {}",
        String::from_utf8_lossy(&master.stderr),
        String::from_utf8_lossy(&worker.stderr)
    );
    assert_eq!(
        (master.status.code(), worker.status.code()),
        (Some(0), Some(0)),
        "{logs}"
    );
    let csv = std::fs::read_to_string(dir.path().join("run_stats.csv")).unwrap();
    let answered = testbed.requests_answered();
    let (requests, failures) = counts(&csv, "/api/v1/health/").expect(&csv);
    let (total, _) = counts(&csv, "Aggregated").expect(&csv);
    // 4 users at 10 requests a second for about 5 s: some 200 requests.
    assert!(answered > 100, "answered {answered}\n{csv}\n{logs}");
    assert_eq!((requests, failures), (total, 0), "{csv}");
    let off = requests.abs_diff(answered) as f64 / answered as f64;
    eprintln!("the Locust master counted {requests} requests, the testbed answered {answered}");
    assert!(
        off < 0.03,
        "the master counted {requests}, the testbed answered {answered}\n{csv}\n{logs}"
    );
}

/// Locust's master, scripted: a ROUTER that speaks the messages `runners.py`'s `MasterRunner`
/// sends, and counts the requests of every `stats` report it reads.
struct ScriptedMaster {
    router: zeromq::RouterSocket,
    worker: Option<bytes::Bytes>,
    requests: u64,
    users: Option<u64>,
    log: Vec<String>,
}

impl ScriptedMaster {
    async fn send(&mut self, kind: &str, data: Value) {
        let payload = Message::new(kind, data, "master").encode();
        let mut frames = zeromq::ZmqMessage::from(payload);
        frames.push_front(self.worker.clone().unwrap());
        self.router.send(frames).await.unwrap();
    }

    /// Reads until a message of `kind`, counting the reports on the way.
    async fn until(&mut self, kind: &str) -> Message {
        loop {
            let frames = tokio::time::timeout(Duration::from_secs(10), self.router.recv())
                .await
                .unwrap_or_else(|_| panic!("no {kind} within 10 s; read {:?}", self.log))
                .unwrap();
            self.worker = frames.get(0).cloned();
            let message = Message::decode(frames.get(1).unwrap()).unwrap();
            if message.kind == "stats" {
                let total = field(&message.data, "stats_total").unwrap();
                self.requests += field(total, "num_requests").unwrap().as_u64().unwrap();
                self.users = field(&message.data, "user_count").unwrap().as_u64();
            }
            self.log.push(message.kind.clone());
            if message.kind == kind {
                return message;
            }
        }
    }

    /// Reads reports until one says `users` run and has requests in it.
    async fn until_running(&mut self, users: u64) {
        let before = self.requests;
        while self.users != Some(users) || self.requests == before {
            self.until("stats").await;
        }
    }
}

fn spawn(classes: &[(&'static str, u64)], timestamp: f64, host: &str) -> Value {
    let counts = classes.iter().map(|(name, n)| (*name, Value::from(*n)));
    map([
        ("timestamp", Value::from(timestamp)),
        ("user_classes_count", map(counts)),
        ("host", Value::from(host)),
        ("stop_timeout", Value::Nil),
        ("parsed_options", map([])),
    ])
}

/// The messages of a run that a headless master does not send: more users, `stop` (the
/// worker reports the rest, says `client_stopped`, then `client_ready` again), a second run
/// with a class the scenario lacks, and `quit`. Every request the testbed answered is in the reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loadgen_worker_follows_a_locust_masters_spawn_stop_and_quit() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.toml"), SCENARIO).unwrap();
    let mut router = zeromq::RouterSocket::new();
    let zeromq::Endpoint::Tcp(_, port) = router.bind("tcp://127.0.0.1:0").await.unwrap() else {
        panic!("a TCP endpoint")
    };
    let worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(dir.path())
        .args([
            "--worker",
            "--master-protocol",
            "locust",
            "--worker-name",
            "w1",
        ])
        .args([
            "--master-host",
            "127.0.0.1",
            "--master-port",
            &port.to_string(),
        ])
        .args(["-f", "scenario.toml", "--fixtures"])
        .arg(fixtures())
        .kill_on_drop(true)
        .output();
    let worker = tokio::spawn(worker);
    let mut master = ScriptedMaster {
        router,
        worker: None,
        requests: 0,
        users: None,
        log: Vec::new(),
    };
    let ready = master.until("client_ready").await;
    assert_eq!(
        (ready.data.as_str(), ready.node_id.as_str()),
        (Some("2.47.0"), "w1")
    );
    master.send("ack", map([("index", Value::from(0))])).await;
    let host = testbed.base_url();
    master
        .send("spawn", spawn(&[("Reader", 2)], 1.0, &host))
        .await;
    master.until("spawning").await;
    let done = master.until("spawning_complete").await;
    assert_eq!(field(&done.data, "user_count"), Some(&Value::from(2)));
    master.until_running(2).await;
    // An older spawn message is answered `spawning`, then dropped, as Locust's workers do.
    master
        .send("spawn", spawn(&[("Reader", 5)], 0.5, &host))
        .await;
    master
        .send("spawn", spawn(&[("Reader", 3)], 2.0, &host))
        .await;
    let done = master.until("spawning_complete").await;
    assert_eq!(field(&done.data, "user_count"), Some(&Value::from(3)));
    master.until_running(3).await;
    master.send("stop", Value::Nil).await;
    master.until("client_stopped").await;
    master.until("client_ready").await;
    let first_run = master.requests;
    master.send("ack", map([("index", Value::from(0))])).await;
    // A class the scenario has no user type for: its users are not run (nor given to Reader),
    // and the master hears so.
    let classes = [("Reader", 1), ("Writer", 2)];
    master.send("spawn", spawn(&classes, 3.0, &host)).await;
    let done = master.until("spawning_complete").await;
    assert_eq!(
        field(&done.data, "user_classes_count").unwrap().to_string(),
        r#"{"Reader": 1, "Writer": 0}"#
    );
    master.until_running(1).await;
    master.send("quit", Value::Nil).await;
    let out = tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker exits within 10 s of quit")
        .unwrap()
        .unwrap();
    // The last report comes after quit.
    while let Ok(Ok(frames)) =
        tokio::time::timeout(Duration::from_millis(500), master.router.recv()).await
    {
        let message = Message::decode(frames.get(1).unwrap()).unwrap();
        if message.kind == "stats" {
            let total = field(&message.data, "stats_total").unwrap();
            master.requests += field(total, "num_requests").unwrap().as_u64().unwrap();
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("user classes Writer are not user types of the scenario (Reader)"),
        "{stderr}"
    );
    let answered = testbed.requests_answered();
    eprintln!(
        "reported {} requests ({first_run} in the first run), the testbed answered {answered}",
        master.requests
    );
    assert!(
        first_run > 0 && master.requests > first_run,
        "{:?}",
        master.log
    );
    let off = master.requests.abs_diff(answered) as f64 / answered as f64;
    assert!(
        off < 0.03,
        "reported {}, answered {answered}; {:?}\n{stderr}",
        master.requests,
        master.log
    );
}
