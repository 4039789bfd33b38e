//! A master and its workers as separate processes over loopback WebSockets, against the
//! in-memory testbed: one report from many processes, exact totals, workers lost, frozen and
//! back, a master gone, and workers refused.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use test_support::start_in_memory;
use tokio::process::{Child, Command};

use crate::support::{scenario, send};

/// A free loopback port.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: &str) {
        send(signal, &self.child);
    }

    /// Waits for the exit (2 minutes at most, a bound only).
    async fn exit_code(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the process ended by itself: {}", self.log()))
            .unwrap();
        status.code()
    }
}

fn spawn(dir: &Path, name: &str, args: &[String]) -> Process {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdout(Stdio::from(
            std::fs::File::create(dir.join(format!("{name}.out"))).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Process { child, log }
}

fn master(dir: &Path, host: &str, port: u16, extra: &[&str]) -> Process {
    master_of("reads.toml", dir, host, port, extra)
}

/// A headless master of the scenario `name` (in `tests/scenarios/`).
fn master_of(name: &str, dir: &Path, host: &str, port: u16, extra: &[&str]) -> Process {
    let json = dir.join("report.json");
    let mut args: Vec<String> = [
        "--headless",
        "--master",
        "--master-bind-port",
        &port.to_string(),
        "-H",
        host,
        "-f",
        &scenario(name),
        "--report-json",
        &json.display().to_string(),
        "--only-summary",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    spawn(dir, "master", &args)
}

fn worker(dir: &Path, name: &str, port: u16, extra: &[&str]) -> Process {
    let mut args: Vec<String> = [
        "--worker",
        "--master-port",
        &port.to_string(),
        "--worker-name",
        name,
        "--threads",
        "1",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    spawn(dir, name, &args)
}

fn report(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// Every request the report counts: steady state and start-up.
fn counted(report: &serde_json::Value) -> u64 {
    report["steady_total"]["requests"].as_u64().unwrap()
        + report["startup_total"]["requests"].as_u64().unwrap()
}

/// The testbed, a folder for the logs and report, and the master's port.
struct Setup {
    testbed: testbed::Testbed,
    dir: tempfile::TempDir,
    port: u16,
}

impl Setup {
    async fn new() -> Self {
        Self {
            testbed: start_in_memory(|_| {}).await,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        }
    }

    /// A headless master against the testbed, with `extra` flags.
    fn master(&self, extra: &[&str]) -> Process {
        master(self.dir.path(), &self.testbed.base_url(), self.port, extra)
    }

    /// The same with the scenario `name`.
    fn master_of(&self, name: &str, extra: &[&str]) -> Process {
        master_of(
            name,
            self.dir.path(),
            &self.testbed.base_url(),
            self.port,
            extra,
        )
    }

    fn worker(&self, name: &str, extra: &[&str]) -> Process {
        worker(self.dir.path(), name, self.port, extra)
    }

    fn report(&self) -> serde_json::Value {
        report(self.dir.path())
    }
}

/// Nothing counted twice, and lost only what the killed one of 3 workers did after the figures
/// it last sent (its threads hand theirs over each second, and it sends each second: 2 s at
/// most) and the requests in flight: the report against the requests the testbed `answered`.
pub fn lost_at_most_the_killed_workers_last_seconds(report: &serde_json::Value, answered: u64) {
    let counted = counted(report);
    let killed_rate = report["steady_total"]["rps"].as_f64().unwrap() / 3.0;
    let cut = report["in_flight_at_stop"].as_u64().unwrap();
    assert!(counted <= answered, "report {counted} > testbed {answered}");
    assert!(
        (answered - counted) as f64 <= 2.5 * killed_rate + 4.0 + cut as f64,
        "testbed {answered}, report {counted}: more lost than the killed worker's last 2 s (about {killed_rate:.0} req/s)"
    );
}

/// Waits until the testbed has answered `n` requests (2 minutes at most, a bound only).
async fn until_answered(testbed: &testbed::Testbed, n: u64) {
    let wait = async {
        while testbed.requests_answered() < n {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .expect("the workers' requests reach the testbed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_merges_its_workers_into_one_exact_report() {
    let setup = Setup::new().await;
    let mut master = setup.master(&["-u", "10", "-r", "20", "-t", "5s", "--expect-workers", "2"]);
    let mut workers = [setup.worker("w1", &[]), setup.worker("w2", &[])];
    assert_eq!(master.exit_code().await, Some(0), "{}", master.log());
    // The master tells its workers to quit as it ends.
    for w in &mut workers {
        assert_eq!(w.exit_code().await, Some(0), "{}", w.log());
    }
    let report = setup.report();
    let workers = report["cluster"]["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{report}");
    let by_worker: u64 = workers
        .iter()
        .map(|w| w["requests"].as_u64().unwrap())
        .sum();
    assert!(
        workers
            .iter()
            .all(|w| w["state"] == "finished" && w["requests"].as_u64().unwrap() > 0)
    );
    assert_eq!(by_worker, counted(&report));
    // Users are numbered apart on each worker: each registers `reader_${run}_${user}`, and a
    // name registered twice would fail.
    assert_eq!(report["steady_total"]["failures"], 0, "{report}");
    assert_eq!(report["users_by_type"]["Reader"], 10);
    assert_eq!(report["startup_total"]["requests"], 20);
    // Every request the testbed answered is counted once: all but the workers' health checks
    // and those cut at the stop.
    let answered = setup.testbed.requests_answered() - 2;
    let cut = report["in_flight_at_stop"].as_u64().unwrap();
    assert!(
        counted(&report) <= answered && answered <= counted(&report) + cut,
        "testbed {answered}, report {} (+{cut} in flight)",
        counted(&report)
    );
    // One timeline of the merged seconds.
    let history = report["history"].as_array().unwrap();
    let in_seconds: u64 = history
        .iter()
        .map(|h| h["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(in_seconds, counted(&report));
    assert!(history.iter().any(|h| h["users"] == 10), "{history:?}");
    // As Locust's master, once its workers run the users asked for.
    assert!(
        master.log().contains(
            r#"/INFO/locust.runners: All users spawned: {"Reader": 10} (10 total users)"#
        ),
        "{}",
        master.log()
    );
    setup.testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_drives_a_load_shape_and_its_workers_follow_their_shares() {
    let setup = Setup::new().await;
    let shape = setup.dir.path().join("shape.toml");
    std::fs::write(
        &shape,
        "[[shape]]\nduration = \"3s\"\nusers = 2\nspawn_rate = 50\n\n\
         [[shape]]\nduration = \"3s\"\nusers = 6\nspawn_rate = 50\n",
    )
    .unwrap();
    let shape = shape.display().to_string();
    let mut master = setup.master(&["--shape", &shape, "--expect-workers", "2"]);
    let mut workers = [setup.worker("w1", &[]), setup.worker("w2", &[])];
    assert_eq!(master.exit_code().await, Some(0), "{}", master.log());
    for w in &mut workers {
        assert_eq!(w.exit_code().await, Some(0), "{}", w.log());
    }
    let report = setup.report();
    let users: Vec<u64> = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["users"].as_u64().unwrap())
        .collect();
    let shares: Vec<u64> = report["cluster"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["users"].as_u64().unwrap())
        .collect();
    let figures = format!("users by second {users:?}, workers' users {shares:?}");
    // Had each worker driven the shape too, each would have made 6 users of its own.
    assert_eq!(report["users_by_type"]["Reader"], 6, "{figures}");
    assert_eq!(report["peak_users"], 6, "{figures}");
    assert_eq!(shares.iter().sum::<u64>(), 6, "{figures}");
    assert!(users.contains(&2) && users.contains(&6), "{figures}");
    assert_eq!(
        report["interrupted"], false,
        "ended by its shape: {figures}"
    );
    setup.testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_share_the_arrival_rate_and_send_the_whole_schedule() {
    let setup = Setup::new().await;
    // 200/s for 5 s, split between 2 workers: 1,000 iterations of one request each.
    let mut master = setup.master(&[
        "--arrival-rate",
        "200/s",
        "--arrival-stages",
        "5s:200/s",
        "--pre-allocate",
        "10",
        "--max-users",
        "40",
        "--expect-workers",
        "2",
    ]);
    let mut workers = [setup.worker("w1", &[]), setup.worker("w2", &[])];
    assert_eq!(master.exit_code().await, Some(0), "{}", master.log());
    for w in &mut workers {
        assert_eq!(w.exit_code().await, Some(0), "{}", w.log());
    }
    let report = setup.report();
    let open = &report["open_model"];
    let count = |what: &str| open[what].as_u64().unwrap_or(0);
    let steady = report["steady_total"]["requests"].as_u64().unwrap();
    let figures = format!(
        "scheduled {}, dropped {}, steady requests {steady}; workers {}",
        count("scheduled"),
        count("dropped"),
        report["cluster"]["workers"]
    );
    assert!(count("scheduled").abs_diff(1_000) <= 10, "{figures}");
    assert_eq!(steady + count("dropped"), count("scheduled"), "{figures}");
    // Each worker ran half of the schedule.
    for w in report["cluster"]["workers"].as_array().unwrap() {
        let requests = w["requests"].as_u64().unwrap();
        assert!(requests >= 450, "{figures}");
    }
    // The master's seconds hold the workers' iterations.
    let per_second: u64 = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["arrivals"]["scheduled"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(per_second, count("scheduled"), "{figures}");
    setup.testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_rebalanced_and_what_it_reported_is_kept() {
    let setup = Setup::new().await;
    let mut master = setup.master(&["-u", "12", "-r", "50", "-t", "12s", "--expect-workers", "3"]);
    let _w1 = setup.worker("w1", &[]);
    let _w2 = setup.worker("w2", &[]);
    let mut w3 = setup.worker("w3", &[]);
    until_answered(&setup.testbed, 300).await;
    w3.signal("KILL");
    w3.exit_code().await;
    assert_eq!(master.exit_code().await, Some(0), "{}", master.log());
    let report = setup.report();
    let events = report["cluster"]["events"].as_array().unwrap();
    let lost: Vec<_> = events.iter().filter(|e| e["kind"] == "lost").collect();
    assert_eq!(lost.len(), 1, "{events:?}");
    assert!(lost[0]["what"].as_str().unwrap().contains("worker w3 lost"));
    let workers = report["cluster"]["workers"].as_array().unwrap();
    let killed = workers.iter().find(|w| w["name"] == "w3").unwrap();
    assert!(killed["state"].as_str().unwrap().starts_with("lost at"));
    assert!(
        killed["requests"].as_u64().unwrap() > 0,
        "its figures are kept"
    );
    // The other two took its users: 6 each.
    let left: u64 = workers
        .iter()
        .filter(|w| w["name"] != "w3")
        .map(|w| w["users"].as_u64().unwrap())
        .sum();
    assert_eq!(left, 12, "{workers:?}");
    assert!(
        master
            .log()
            .contains("they are shared out to the 2 other(s)"),
        "{}",
        master.log()
    );
    // The 3 workers' health checks are not in the report.
    lost_at_most_the_killed_workers_last_seconds(&report, setup.testbed.requests_answered() - 3);
    assert!(
        report["analysis"]["validity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == "loadgen.worker_lost"),
        "a lost worker is an item of the run's validity: {}",
        report["analysis"]
    );
    setup.testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_is_lost_then_back() {
    let setup = Setup::new().await;
    let mut master = setup.master(&["-u", "4", "-r", "50", "-t", "60s", "--expect-workers", "2"]);
    let _w1 = setup.worker("w1", &[]);
    let w2 = setup.worker("w2", &[]);
    until_answered(&setup.testbed, 50).await;
    // Frozen, it sends nothing, as if its network were cut.
    w2.signal("STOP");
    let wait_for = |what: &'static str| {
        let master = &master;
        async move {
            let wait = async {
                while !master.log().contains(what) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(120), wait)
                .await
                .unwrap_or_else(|_| panic!("the master said {what:?}: {}", master.log()));
        }
    };
    wait_for("worker w2 lost (no message for 3 s)").await;
    w2.signal("CONT");
    wait_for("worker w2 answers again").await;
    master.signal("INT");
    assert_eq!(master.exit_code().await, Some(0), "{}", master.log());
    let report = setup.report();
    let kinds: Vec<&str> = report["cluster"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.starts_with(&["lost", "back"]), "{kinds:?}");
    let w2_report = report["cluster"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "w2")
        .unwrap();
    assert_eq!(w2_report["state"], "finished", "{report}");
    assert_eq!(report["steady_total"]["failures"], 0);
    setup.testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_stop_when_their_master_is_gone() {
    let setup = Setup::new().await;
    let master = setup.master(&["-u", "4", "-r", "50", "-t", "5m", "--expect-workers", "2"]);
    let mut workers = [
        setup.worker("w1", &["--master-timeout", "3s"]),
        setup.worker("w2", &["--master-timeout", "3s"]),
    ];
    until_answered(&setup.testbed, 50).await;
    master.signal("KILL");
    for w in &mut workers {
        assert_eq!(w.exit_code().await, Some(2), "{}", w.log());
        let log = w.log();
        assert!(
            log.contains("unreachable for 3 s") && log.contains("the users were stopped"),
            "{log}"
        );
    }
    // Stopped: nothing more reaches the setup.testbed.
    let after = setup.testbed.requests_answered();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(setup.testbed.requests_answered(), after);
    setup.testbed.stop().await;
}

/// What a master on loopback `port` answers a worker of loadgen 0.0.1 (a raw client) that
/// gives `token`.
pub async fn hello_from_version_0_0_1(
    port: impl std::fmt::Display,
    token: &str,
) -> serde_json::Value {
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut socket, _) = loop {
        match tokio_tungstenite::connect_async(&url).await {
            Ok(connected) => break connected,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let hello = serde_json::json!({"type": "hello", "data": {
        "protocol": 1, "version": "0.0.1", "name": "old", "cores": 1, "token": token
    }});
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(
            hello.to_string(),
        ))
        .await
        .unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    serde_json::from_str(answer.to_text().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_or_another_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut master = master(
        dir.path(),
        "http://127.0.0.1:9",
        port,
        &[
            "-t",
            "5s",
            "--expect-workers",
            "1",
            "--expect-workers-max-wait",
            "20",
            "--cluster-token",
            "s3cret-token",
        ],
    );
    let answer = hello_from_version_0_0_1(port, "s3cret-token").await;
    assert_eq!(answer["type"], "refused", "{answer}");
    let reason = answer["data"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("0.0.1") && reason.contains(env!("CARGO_PKG_VERSION")),
        "{reason}"
    );

    let mut wrong = worker(dir.path(), "w1", port, &["--cluster-token", "guess"]);
    assert_eq!(wrong.exit_code().await, Some(2));
    assert!(
        wrong.log().contains("wrong --cluster-token") && !wrong.log().contains("s3cret"),
        "{}",
        wrong.log()
    );
    let mut none = worker(dir.path(), "w2", port, &[]);
    assert_eq!(none.exit_code().await, Some(2));
    assert!(none.log().contains("requires one"), "{}", none.log());
    // No worker came: the master says so and how to fix it.
    assert_eq!(master.exit_code().await, Some(2));
    let log = master.log();
    assert!(
        log.contains("--expect-workers 1: only 0 worker(s) connected in 20 s"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_with_the_web_ui_lists_its_workers() {
    let setup = Setup::new().await;
    let web_port = free_port().to_string();
    let host = setup.testbed.base_url();
    let args: Vec<String> = [
        "--master",
        "--master-bind-port",
        &setup.port.to_string(),
        "--web-port",
        &web_port,
        "-H",
        &host,
        "-f",
        &scenario("reads.toml"),
        "-u",
        "4",
        "-r",
        "20",
        "-t",
        "30s",
        "--autostart",
        "--expect-workers",
        "2",
    ]
    .map(str::to_owned)
    .to_vec();
    let master = spawn(setup.dir.path(), "master", &args);
    let _w1 = setup.worker("w1", &[]);
    let _w2 = setup.worker("w2", &[]);
    until_answered(&setup.testbed, 50).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{web_port}{path}");
    let get = |path: String| {
        let client = client.clone();
        async move {
            client
                .get(path)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    // The run's second has come once both workers sent figures.
    let wait = async {
        loop {
            let stats = get(url("/api/stats")).await;
            let workers = stats["workers"].as_array().cloned().unwrap_or_default();
            if stats["user_count"] == 4
                && workers.len() == 2
                && workers
                    .iter()
                    .all(|w| w["requests"].as_u64() > Some(0) && w["state"] == "running")
            {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let stats = tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .expect("the UI lists both workers with their requests");
    assert_eq!(stats["user_count"], 4, "{stats}");
    let locust = get(url("/stats/requests")).await;
    assert_eq!(locust["worker_count"], 2, "{locust}");
    let mut names: Vec<&str> = locust["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["w1", "w2"]);
    let page = client
        .get(url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("workers_table"));
    master.signal("TERM");
    setup.testbed.stop().await;
}

#[test]
fn a_master_open_beyond_loopback_needs_a_token() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--headless",
            "--master",
            "--master-bind-host",
            "0.0.0.0",
            "-H",
            "http://127.0.0.1:9",
        ])
        .env_remove("LOADGEN_CLUSTER_TOKEN")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cluster-token"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reach_a_tls_master_that_they_trust_and_no_other() {
    let setup = Setup::new().await;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (
        setup.dir.path().join("master.pem"),
        setup.dir.path().join("master.key"),
    );
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut master = setup.master(&[
        "-u",
        "4",
        "-r",
        "20",
        "-t",
        "4s",
        "--expect-workers",
        "1",
        "--master-tls-cert",
        &cert,
        "--master-tls-key",
        &key,
    ]);
    // One that checks the master against the system's roots: a self-signed certificate is not
    // among them, and trying again would not change that.
    let mut untrusting = setup.worker(
        "untrusting",
        &["--master-host", "localhost", "--master-tls"],
    );
    assert_eq!(
        untrusting.exit_code().await,
        Some(2),
        "{}",
        untrusting.log()
    );
    assert!(
        untrusting.log().contains("TLS with the master failed"),
        "{}",
        untrusting.log()
    );
    // One without TLS never gets in.
    let mut plain = setup.worker("plain", &["--master-timeout", "3s"]);
    assert_eq!(plain.exit_code().await, Some(2), "{}", plain.log());

    let mut trusting = setup.worker(
        "trusting",
        &["--master-host", "localhost", "--master-tls-ca", &cert],
    );
    assert_eq!(master.exit_code().await, Some(0), "{}", master.log());
    assert_eq!(trusting.exit_code().await, Some(0), "{}", trusting.log());
    assert!(master.log().contains("listening for workers on wss://"));
    let report = setup.report();
    let workers = report["cluster"]["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{report}");
    assert_eq!(workers[0]["name"], "trusting");
    assert!(counted(&report) > 0, "{report}");
    assert_eq!(report["steady_total"]["failures"], 0, "{report}");
    setup.testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_counts_hold_across_the_cluster_when_a_worker_is_lost() {
    let setup = Setup::new().await;
    // 3 watchers (fixed) and readers for the rest: 1 watcher and 3 readers on each worker.
    let mut master = setup.master_of(
        "fixed_and_weighted.toml",
        &[
            "-u",
            "12",
            "-r",
            "100",
            "-t",
            "30s",
            "--expect-workers",
            "3",
        ],
    );
    let _w1 = setup.worker("w1", &[]);
    let _w2 = setup.worker("w2", &[]);
    let mut w3 = setup.worker("w3", &[]);
    until_answered(&setup.testbed, 300).await;
    w3.signal("KILL");
    w3.exit_code().await;
    let wait = async {
        while !master.log().contains("worker w3 lost") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .unwrap_or_else(|_| panic!("w3 marked lost: {}", master.log()));
    // The survivors start w3's 4 users (at 100 a second): then the run may end.
    let answered = setup.testbed.requests_answered();
    until_answered(&setup.testbed, answered + 300).await;
    master.signal("INT");
    assert_eq!(master.exit_code().await, Some(0), "{}", master.log());
    let report = setup.report();
    // Users started, by type, on all three: w3's 1 watcher and 3 readers, then on the two
    // left, 3 watchers (2 + 1, the fixed count shared out again) and 9 readers: one watcher
    // more was started for the one lost.
    assert_eq!(report["users_by_type"]["Watcher"], 4, "{report}");
    assert_eq!(report["users_by_type"]["Reader"], 12, "{report}");
    setup.testbed.stop().await;
}
