//! What happens to requests in flight when a run stops: with Locust's `--stop-timeout` they
//! end and are measured; without it they are cut off and counted apart. Either way the server's
//! count equals the report's rows plus the in-flight count. And how the binary ends on signals
//! (issue 22): a second signal exits at once with every report whole, a signal during the
//! health check is honoured, a refused run leaves no file, and the reports say "interrupted".

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use loadgen::engine::Run;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::support::scenario;

pub(crate) const USERS: u64 = 4;

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

/// Answers the first `answered` requests at once, then holds every later one for good (the
/// connection stays open); counts the requests held.
pub(crate) async fn answer_then_hold(listener: TcpListener, answered: u64, held: Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            return;
        };
        let (received, held) = (received.clone(), held.clone());
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(_request_line)) = lines.next_line().await {
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                }
                if received.fetch_add(1, Ordering::SeqCst) >= answered {
                    held.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
                let answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// loadgen's binary, its stdout and stderr read line by line as they come.
struct Loadgen {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: String,
}

impl Loadgen {
    fn start(args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        forward(child.stdout.take().unwrap(), tx.clone());
        forward(child.stderr.take().unwrap(), tx);
        Self {
            child,
            lines,
            seen: String::new(),
        }
    }

    /// Waits (2 minutes at most, a bound only) for a line that passes `wanted`.
    async fn until_line(&mut self, what: &str, wanted: impl Fn(&str) -> bool) {
        let wait = async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push_str(&line);
                self.seen.push('\n');
                if wanted(&line) {
                    return true;
                }
            }
            false
        };
        let found = tokio::time::timeout(Duration::from_secs(120), wait).await;
        assert!(
            matches!(found, Ok(true)),
            "{what}: not seen; loadgen said:\n{}",
            self.seen
        );
    }

    /// Waits for the live table's Aggregated row to count at least `requests`.
    async fn until_counted(&mut self, requests: u64) {
        self.until_line(&format!("{requests} requests in the table"), |line| {
            let mut words = line.split_whitespace();
            words.next() == Some("Aggregated")
                && words
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n >= requests)
        })
        .await;
    }

    fn signal(&self, signal: &str) {
        crate::support::send(signal, &self.child);
    }

    /// Its exit status, and how long it took to come (2 minutes at most, a bound only).
    async fn exit(&mut self) -> (std::process::ExitStatus, Duration) {
        let since = Instant::now();
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("loadgen exits within 2 minutes")
            .unwrap();
        let took = since.elapsed();
        // What it said until the end: its pipes close as it exits.
        let rest = async {
            while let Some(line) = self.lines.recv().await {
                self.seen.push_str(&line);
                self.seen.push('\n');
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), rest).await;
        (status, took)
    }
}

/// Sends each line of `output` (a child's stdout or stderr) as it comes.
fn forward(
    output: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    lines: tokio::sync::mpsc::UnboundedSender<String>,
) {
    tokio::spawn(async move {
        let mut output = BufReader::new(output).lines();
        while let Ok(Some(line)) = output.next_line().await {
            let _ = lines.send(line);
        }
    });
}

/// The report flags for files in `dir`: every kind loadgen writes.
pub(crate) fn every_report(dir: &Path) -> Vec<String> {
    let at = |name: &str| dir.join(name).display().to_string();
    vec![
        "--csv".into(),
        at("run"),
        "--report-json".into(),
        at("report.json"),
        "--junit".into(),
        at("junit.xml"),
        "--html".into(),
        at("report.html"),
        "--summary-md".into(),
        at("summary.md"),
    ]
}

/// The files [`every_report`] asks for.
const REPORT_FILES: [&str; 9] = [
    "junit.xml",
    "report.html",
    "report.json",
    "run_exceptions.csv",
    "run_failures.csv",
    "run_stats.csv",
    "run_stats_history.csv",
    "run_timeline.csv",
    "summary.md",
];

/// The names of the files in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Checks that every report file in `dir` is there, whole (each parses to its end), and says
/// the run was interrupted by `signal`; returns the JSON report.
pub(crate) fn assert_whole_reports_interrupted_by(dir: &Path, signal: &str) -> Value {
    assert_eq!(
        names_in(dir),
        REPORT_FILES,
        "only the reports, no temporary file"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap())
        .unwrap_or_else(|e| {
            panic!(
                "report.json ({} bytes) does not parse: {e}",
                std::fs::metadata(dir.join("report.json")).unwrap().len()
            )
        });
    assert_eq!(report["interrupted"], true, "{report}");
    assert_eq!(report["interruption"]["by"], signal, "{report}");
    for name in REPORT_FILES.iter().filter(|n| n.ends_with(".csv")) {
        let mut reader = csv::Reader::from_path(dir.join(name)).unwrap();
        assert!(
            !reader.headers().unwrap().is_empty(),
            "{name} has its header"
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        if *name == "run_stats.csv" {
            assert_eq!(
                rows.last().map(|r| r[1].to_owned()).as_deref(),
                Some("Aggregated"),
                "{name}: {rows:?}"
            );
        }
    }
    let cases = crate::ci::junit_cases(&dir.join("junit.xml"));
    let run = cases
        .iter()
        .find(|c| c["suite"] == "loadgen.run")
        .unwrap_or_else(|| panic!("no loadgen.run suite: {cases:?}"));
    assert_eq!(run["results"][0][0], "Error", "{run}");
    let message = run["results"][0][1].as_str().unwrap();
    assert!(
        message.contains("interrupted") && message.contains(signal),
        "{message}"
    );
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(page.ends_with("</body></html>\n"), "report.html is whole");
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        summary.contains(&format!("stopped by {signal}")),
        "{summary}"
    );
    report
}

/// With `-s 30s` and every user held by the server, the first SIGTERM starts the stop (the
/// users wait for their answers) and the second exits at once, long before the 30 s: every
/// report file is whole, written from the figures in hand, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_with_every_report_whole() {
    const ANSWERED: u64 = 40;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn(answer_then_hold(listener, ANSWERED, held.clone()));
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--headless",
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
        "-s",
        "30s",
        "--stats-interval",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    args.extend(every_report(out.path()));
    let mut loadgen = Loadgen::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // Every answered request is in hand, and every user waits for one held.
    loadgen.until_counted(ANSWERED).await;
    let every_user_held = async {
        while held.load(Ordering::SeqCst) < USERS {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), every_user_held)
        .await
        .is_err()
    {
        panic!(
            "{} of {USERS} users held within 60 s: {}",
            held.load(Ordering::SeqCst),
            loadgen.seen
        );
    }

    loadgen.signal("TERM");
    loadgen
        .until_line("the stop", |l| l.contains("stopping users"))
        .await;
    loadgen.signal("TERM");
    let (status, took) = loadgen.exit().await;
    eprintln!("exited {took:?} after the second SIGTERM");
    assert_eq!(status.code(), Some(143), "{}", loadgen.seen);
    assert!(
        took < Duration::from_secs(10),
        "the second signal ended loadgen after {took:?}, not at once (the users wait up to \
         30 s): {}",
        loadgen.seen
    );
    let report = assert_whole_reports_interrupted_by(out.path(), "SIGTERM");
    assert_eq!(report["interruption"]["complete"], false, "{report}");
    assert_eq!(
        report["steady_total"]["requests"], ANSWERED,
        "every answered request is in the figures in hand"
    );
    assert_eq!(
        report["in_flight_at_stop"], USERS,
        "every held request is counted in flight in the figures in hand: {report}"
    );
    server.abort();
}

/// A run stopped by a signal before its run time says so, and by which signal, in its JSON
/// and JUnit files (and the others), once its users have finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_of_an_interrupted_run_say_which_signal_stopped_it() {
    const ANSWERED: u64 = 40;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn(answer_then_hold(listener, ANSWERED, held.clone()));
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--headless",
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
        "--stats-interval",
        "1s",
    ]
    .map(String::from)
    .to_vec();
    args.extend(every_report(out.path()));
    let mut loadgen = Loadgen::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    loadgen.until_counted(ANSWERED).await;
    loadgen.signal("INT");
    let (status, _) = loadgen.exit().await;
    // Whether the targets were met is not this test's concern: the exit code is 0 or 1.
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "{status:?}: {}",
        loadgen.seen
    );
    let report = assert_whole_reports_interrupted_by(out.path(), "SIGINT");
    assert_eq!(report["interruption"]["complete"], true, "{report}");
    server.abort();
}

/// A signal while loadgen checks the host's health endpoint (which answers nothing, and
/// would fail only after 10 s) ends it at once, with the shell's code for the signal, and
/// no report file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_the_health_check_exits_promptly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(AtomicU64::new(0));
    let server = tokio::spawn(answer_then_hold(listener, 0, held.clone()));
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = ["--headless", "-H", &host, "-f", &scenario("reads.toml")]
        .map(String::from)
        .to_vec();
    args.extend(every_report(out.path()));
    let mut loadgen = Loadgen::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let health_check_held = async {
        while held.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), health_check_held)
        .await
        .expect("the health check reached the server");
    loadgen.signal("TERM");
    let (status, took) = loadgen.exit().await;
    eprintln!("exited {took:?} after the SIGTERM");
    assert_eq!(status.code(), Some(143), "{}", loadgen.seen);
    // The health check gives up after 10 s: half that is far from both.
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after the signal: {}",
        loadgen.seen
    );
    assert!(
        loadgen.seen.contains("before the first request"),
        "{}",
        loadgen.seen
    );
    assert_eq!(names_in(out.path()), Vec::<String>::new());
    server.abort();
}

/// A run refused before its first request (its health check fails) leaves no report file,
/// not even an empty one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_run_leaves_no_report_file() {
    // Nothing listens on this port: the health check fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tempfile::tempdir().unwrap();
    let host = format!("http://127.0.0.1:{port}");
    let mut args: Vec<String> = ["--headless", "-H", &host, "-f", &scenario("reads.toml")]
        .map(String::from)
        .to_vec();
    args.extend(every_report(out.path()));
    let mut loadgen = Loadgen::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (status, _) = loadgen.exit().await;
    assert_eq!(status.code(), Some(2), "{}", loadgen.seen);
    assert!(
        loadgen.seen.contains("health check GET"),
        "{}",
        loadgen.seen
    );
    assert_eq!(names_in(out.path()), Vec::<String>::new());
}
