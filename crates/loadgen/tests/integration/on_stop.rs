//! A user's `on_stop` steps (Locust's `on_stop`, issue 30): every user that started runs them
//! once when it stops, however it stops: at the run's end while it waits or while a request of
//! its hangs, when the users are ramped down, and in the open model. The server's counts are
//! the evidence: as many logouts as logins, each measured in the report.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use loadgen::engine::Run;
use loadgen::outcome::RunOutcome;
use loadgen::stats::Phase;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Requests the server read, by path.
type Seen = Arc<Mutex<BTreeMap<String, u64>>>;

/// Answers every request at once, but holds `/hang` for good; counts requests by path.
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
                let mut length = 0usize;
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                if length > 0 {
                    // Bodies here are small JSON on one line.
                    let mut body = vec![0; length];
                    let inner = lines.get_mut();
                    if tokio::io::AsyncReadExt::read_exact(inner, &mut body)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                *seen.lock().unwrap().entry(path.clone()).or_default() += 1;
                if path == "/hang" {
                    std::future::pending::<()>().await;
                }
                if path == "/slow-logout" {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A scenario whose users log in, work (`task` is the path), and log out in `on_stop`.
fn scenario(dir: &tempfile::TempDir, wait: &str, task: &str) -> String {
    scenario_logging_out(dir, wait, task, "/logout")
}

/// The same, logging out at `logout`.
fn scenario_logging_out(dir: &tempfile::TempDir, wait: &str, task: &str, logout: &str) -> String {
    let path = dir.path().join("on_stop.toml");
    std::fs::write(
        &path,
        format!(
            "[[users]]\nname = \"Worker\"\nwait = {wait}\non_start = [\"login\"]\n\
             on_stop = [\"logout\"]\n\n[[users.tasks]]\nrun = [\"work\"]\n\n\
             [users.steps.login]\nmethod = \"POST\"\npath = \"/login\"\n\n\
             [users.steps.work]\npath = \"{task}\"\n\n\
             [users.steps.logout]\nmethod = \"POST\"\npath = \"{logout}\"\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

struct Server {
    host: String,
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = format!("http://{}", listener.local_addr().unwrap());
        let seen = Seen::default();
        let task = tokio::spawn(serve(listener, seen.clone()));
        Self { host, seen, task }
    }

    fn count(&self, path: &str) -> u64 {
        self.seen.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Waits (2 minutes at most, a bound only) until the server read `n` requests for `path`.
    async fn wait_for(&self, path: &str, n: u64) {
        let reached = async {
            while self.count(path) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(120), reached)
            .await
            .is_err()
        {
            panic!("{n} requests to {path} never came: {:?}", self.seen);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `file` against the server with `load` (users or a rate, and the like), for at most
/// 5 minutes: every test stops it on an event long before.
async fn start(server: &Server, file: &str, load: &[&str]) -> loadgen::engine::RunHandle {
    let mut args = vec!["loadgen", "-H", &server.host, "-f", file, "-t", "5m"];
    args.extend_from_slice(load);
    let cli = loadgen::cli::Cli::try_parse_from(args).unwrap();
    Run::start(&cli.resolve().unwrap()).await.unwrap()
}

/// Requests of `path` the report measured in the start-up and stop phase.
fn measured(outcome: &RunOutcome, path: &str) -> u64 {
    outcome
        .stats
        .endpoints
        .iter()
        .filter(|(key, _)| key.phase == Phase::Startup && &*key.name == path)
        .map(|(_, e)| e.count)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_logs_out_once_at_the_end_waiting_or_with_a_request_hung() {
    const USERS: u64 = 6;
    for (wait, task, stop_timeout) in [
        // Waiting between tasks when the run ends.
        ("{ constant = \"10s\" }", "/work", "0s"),
        // A request hung at the end, cut off at once, or when --stop-timeout is up.
        ("{ constant = \"0s\" }", "/hang", "0s"),
        ("{ constant = \"0s\" }", "/hang", "1s"),
    ] {
        let server = Server::start().await;
        let dir = tempfile::tempdir().unwrap();
        let file = scenario(&dir, wait, task);
        let users = USERS.to_string();
        let handle = start(
            &server,
            &file,
            &["-u", &users, "-r", "100", "--stop-timeout", stop_timeout],
        )
        .await;
        server.wait_for(task, USERS).await;
        handle.stop();
        let outcome = handle.wait().await;
        let case = format!(
            "{task}, wait {wait}, --stop-timeout {stop_timeout}: {:?}",
            server.seen
        );
        assert_eq!(server.count("/login"), USERS, "{case}");
        assert_eq!(server.count("/logout"), USERS, "{case}");
        assert_eq!(measured(&outcome, "/logout"), USERS, "{case}");
        if task == "/hang" {
            assert_eq!(outcome.stats.in_flight_at_stop, USERS, "{case}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_ramped_down_log_out_and_the_others_at_the_end() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(&dir, "{ constant = \"100ms\" }", "/work");
    let handle = start(&server, &file, &["-u", "8", "-r", "100"]).await;
    server.wait_for("/login", 8).await;
    handle.set_users(3, 100.0).unwrap();
    server.wait_for("/logout", 5).await;
    // The five logged out while the run goes on: the other three still work.
    let work = server.count("/work");
    server.wait_for("/work", work + 10).await;
    assert_eq!(server.count("/logout"), 5, "{:?}", server.seen);
    handle.stop();
    let outcome = handle.wait().await;
    assert_eq!(server.count("/logout"), 8, "{:?}", server.seen);
    assert_eq!(measured(&outcome, "/logout"), 8, "{:?}", server.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_open_model_every_user_made_logs_out() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(&dir, "{ constant = \"0s\" }", "/work");
    let handle = start(
        &server,
        &file,
        &["--arrival-rate", "50/s", "--max-users", "20"],
    )
    .await;
    server.wait_for("/work", 50).await;
    handle.stop();
    let outcome = handle.wait().await;
    let logins = server.count("/login");
    assert!(logins > 0, "{:?}", server.seen);
    assert_eq!(server.count("/logout"), logins, "{:?}", server.seen);
    assert_eq!(measured(&outcome, "/logout"), logins, "{:?}", server.seen);
}

/// A user ramped down just before the run ends finishes its on_stop (a slow one) all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_ramped_down_just_before_the_end_finishes_its_slow_logout() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_logging_out(&dir, "{ constant = \"100ms\" }", "/work", "/slow-logout");
    let handle = start(&server, &file, &["-u", "4", "-r", "100"]).await;
    server.wait_for("/login", 4).await;
    handle.set_users(1, 100.0).unwrap();
    server.wait_for("/slow-logout", 3).await;
    handle.stop();
    let outcome = handle.wait().await;
    assert_eq!(server.count("/slow-logout"), 4, "{:?}", server.seen);
    assert_eq!(
        measured(&outcome, "/slow-logout"),
        4,
        "every slow logout answered and measured: {:?}, in flight at the stop {}",
        server.seen,
        outcome.stats.in_flight_at_stop
    );
}

/// Users of the open model stopped during a slow on_start log out too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_users_stopped_in_their_on_start_log_out() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow_start.toml");
    std::fs::write(
        &path,
        "[[users]]\nname = \"W\"\non_start = [\"login\"]\non_stop = [\"logout\"]\n\n\
         [[users.tasks]]\nrun = [\"work\"]\n\n[users.steps.login]\nmethod = \"POST\"\n\
         path = \"/hang\"\n\n[users.steps.work]\npath = \"/work\"\n\n\
         [users.steps.logout]\nmethod = \"POST\"\npath = \"/logout\"\n",
    )
    .unwrap();
    let file = path.display().to_string();
    let handle = start(
        &server,
        &file,
        &["--arrival-rate", "10/s", "--max-users", "5"],
    )
    .await;
    // The users made before the first iteration are held in their on_start's login.
    server.wait_for("/hang", 1).await;
    handle.stop();
    let outcome = handle.wait().await;
    let held = server.count("/hang");
    assert_eq!(server.count("/logout"), held, "{:?}", server.seen);
    assert_eq!(measured(&outcome, "/logout"), held, "{:?}", server.seen);
}
