//! loadgen as a worker of a real Locust 2.47 master (`--worker --master-protocol locust`):
//! the master's CSV files hold the requests loadgen made, and both end when the run does.

use std::path::PathBuf;
use std::time::Duration;

use test_support::start_in_memory;

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
        (&row[n] == name).then(|| (row[requests].parse().unwrap(), row[failures].parse().unwrap()))
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
        .args(["--master-bind-host", "127.0.0.1", "--master-bind-port", &port])
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
