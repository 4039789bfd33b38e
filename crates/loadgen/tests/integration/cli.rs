//! loadgen against the testbed (real PostgreSQL, Redis, HTTP over loopback), through the same
//! `run` the binary calls, and the binary itself where signals and exit codes matter.

use crate::support::{fixtures, scenario, send, short_run};

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use test_support::{start_in_memory, start_on_services};
use tokio::io::AsyncBufReadExt;

/// Runs loadgen with `args` (after the host) and returns its exit code and JSON report.
pub(crate) async fn loadgen(host: &str, args: &[&str]) -> (ExitCode, Value, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("report.json");
    let csv = out.path().join("run");
    let mut argv = vec![
        "loadgen".to_owned(),
        "--headless".into(),
        "-H".into(),
        host.to_owned(),
        "--fixtures".into(),
        fixtures().display().to_string(),
        "--report-json".into(),
        json.display().to_string(),
        "--csv".into(),
        csv.display().to_string(),
        "--only-summary".into(),
        "--threads".into(),
        "2".into(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let cli = loadgen::cli::Cli::try_parse_from(argv).unwrap();
    let code = loadgen::run(cli).await;
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (code, report, out)
}

fn rows<'a>(report: &'a Value, phase: &str) -> &'a Vec<Value> {
    report[phase].as_array().unwrap()
}

fn names(report: &Value, phase: &str) -> Vec<String> {
    rows(report, phase)
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_scenario_runs_clean_against_the_testbed() {
    let testbed = start_on_services(|c| c.job_seconds = Duration::from_millis(300)).await;
    let (code, report, _out) = loadgen(
        &testbed.base_url(),
        // 20 users for 15 s make every task appear: the rarest (stats, 1 in 6 of FFmpegAPIUser's
        // picks) is missed with a chance of about (5/6)^70.
        &[
            "-u",
            "20",
            "-r",
            "20",
            "-t",
            "15s",
            "--job-sample",
            "1",
            // The exit code judges users and failures here, not this machine's latency.
            "--target",
            "users=20,p95=60s,p99=60s,avg=60s",
        ],
    )
    .await;

    let steady = names(&report, "steady");
    for expected in [
        "GET /api/v1/tasks",
        "GET /api/v1/files",
        "GET /api/v1/users/me/stats",
        "POST /api/v1/tasks/join",
        "POST /api/v1/tasks/audio-overlay",
    ] {
        assert!(
            steady.contains(&expected.to_owned()),
            "{expected} missing from {steady:?}"
        );
    }
    // Following the jobs is a phase of its own, apart from the steady state and its targets.
    assert_eq!(names(&report, "polls"), ["GET /api/v1/tasks/[id]"]);
    assert!(
        !steady.contains(&"GET /api/v1/tasks/[id]".to_owned()),
        "{steady:?}"
    );
    assert!(report["polls_total"]["requests"].as_u64() > Some(0));
    let startup = names(&report, "startup");
    for expected in [
        "POST /api/v1/auth/register",
        "POST /api/v1/auth/login",
        "POST /api/v1/files/upload",
    ] {
        assert!(
            startup.contains(&expected.to_owned()),
            "{expected} missing from {startup:?}"
        );
    }
    assert_eq!(
        report["steady_total"]["failures"], 0,
        "{:#}",
        report["failures"]
    );
    assert_eq!(
        report["startup_total"]["failures"], 0,
        "{:#}",
        report["failures"]
    );
    assert_eq!(report["peak_users"], 20);
    // 10 users of each type, each registered once under its own name.
    assert_eq!(report["users_by_type"]["FFmpegAPIUser"], 10);
    assert_eq!(report["users_by_type"]["CreateTaskUser"], 10);
    let register = rows(&report, "startup")
        .iter()
        .find(|r| r["name"] == "/api/v1/auth/register")
        .unwrap();
    assert_eq!(register["requests"], 20);
    assert_eq!(register["statuses"]["201"], 20);
    // Uploads: 2 per FFmpegAPIUser, 3 videos + 1 audio per CreateTaskUser.
    let uploads = rows(&report, "startup")
        .iter()
        .find(|r| r["name"] == "/api/v1/files/upload")
        .unwrap();
    assert_eq!(uploads["requests"], 10 * 2 + 10 * 4);
    // Jobs were followed to completion.
    let jobs = report["jobs"].as_array().unwrap();
    let completed: u64 = jobs.iter().map(|j| j["completed"].as_u64().unwrap()).sum();
    let failed: u64 = jobs.iter().map(|j| j["failed"].as_u64().unwrap()).sum();
    assert!(completed > 0, "{jobs:?}");
    // Jobs done and in flight are in the per-second history too.
    let history = report["history"].as_array().unwrap();
    let done: u64 = history
        .iter()
        .map(|h| h["jobs_done"].as_u64().unwrap())
        .sum();
    assert_eq!(
        done,
        jobs.iter()
            .map(|j| j["completed"].as_u64().unwrap()
                + j["unfinished"].as_u64().unwrap()
                + j["unknown"].as_u64().unwrap())
            .sum::<u64>()
    );
    assert!(
        history
            .iter()
            .any(|h| h["jobs_in_flight"].as_u64().unwrap() > 0)
    );
    assert_eq!(failed, 0, "{jobs:?}");
    assert_eq!(code, ExitCode::SUCCESS, "{:#}", report["analysis"]);

    // In the database: exactly twenty distinct users, one per virtual user.
    let line = testbed.startup_line();
    let database = line
        .split('/')
        .find(|p| p.starts_with("testbed_"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let admin = test_support::postgres_admin_url();
    let url = format!("{}/{database}", admin.rsplit_once('/').unwrap().0);
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (count, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT username) FROM users")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((count, distinct), (20, 20));
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_rate_limit_gives_429s_and_a_rate_limit_finding() {
    let testbed = start_in_memory(|c| c.rate_limit_per_minute = 40).await;
    let (code, report, _out) = loadgen(
        &testbed.base_url(),
        &[
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "5s",
            "-f",
            &scenario("reads.toml"),
            "--target",
            "users=4",
        ],
    )
    .await;
    let statuses = &report["steady_total"]["statuses"];
    assert!(statuses["429"].as_u64().unwrap_or(0) > 0, "{statuses}");
    let first = &report["analysis"]["findings"][0];
    assert_eq!(
        first["title"], "Rate limiting",
        "{:#}",
        report["analysis"]["findings"]
    );
    assert!(
        first["evidence"].as_str().unwrap().contains("429"),
        "{first}"
    );
    assert_eq!(code, ExitCode::from(1), "failures above 5% miss a target");
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_token_lifetime_gives_relogins_not_a_stuck_run() {
    let testbed = start_in_memory(|c| c.token_ttl = Duration::from_secs(2)).await;
    let (_, report, _out) = loadgen(
        &testbed.base_url(),
        &[
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "7s",
            "-f",
            &scenario("reads.toml"),
        ],
    )
    .await;
    let relogins: u64 = report["handled"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[1] == 401)
        .map(|h| h[2].as_u64().unwrap())
        .sum();
    assert!(
        relogins >= 3,
        "each user re-logged in at least once: {:#}",
        report["handled"]
    );
    assert_eq!(
        report["steady_total"]["failures"], 0,
        "{:#}",
        report["failures"]
    );
    // Requests kept flowing after the first expiry.
    let late: u64 = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["at_secs"].as_u64().unwrap() >= 5)
        .map(|h| h["requests"].as_u64().unwrap())
        .sum();
    assert!(late > 10, "{:#}", report["history"]);
    let login = rows(&report, "steady")
        .iter()
        .find(|r| r["name"] == "/api/v1/auth/login")
        .unwrap();
    assert!(login["requests"].as_u64().unwrap() >= 3);
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_decide_the_exit_code_and_csv_files_have_locusts_headers() {
    let testbed = start_in_memory(|_| {}).await;
    let reads = scenario("reads.toml");
    let (met, _, _out) = loadgen(
        &testbed.base_url(),
        &[
            "-u",
            "2",
            "-r",
            "2",
            "-t",
            "2s",
            "-f",
            &reads,
            "--target",
            "users=2,p95=60s,p99=60s,avg=60s",
        ],
    )
    .await;
    assert_eq!(met, ExitCode::SUCCESS);
    let (missed, report, out) = loadgen(
        &testbed.base_url(),
        &[
            "-u",
            "2",
            "-r",
            "2",
            "-t",
            "2s",
            "-f",
            &reads,
            "--target",
            "users=2,avg=0ms",
        ],
    )
    .await;
    assert_eq!(missed, ExitCode::from(1));
    let failed: Vec<&Value> = report["analysis"]["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["met"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], "Average response time");

    let header = |file: &str| -> Vec<String> {
        let mut reader = csv::Reader::from_path(out.path().join(file)).unwrap();
        let header = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        for record in reader.records() {
            record.unwrap();
        }
        header
    };
    // Locust 2.x's columns, written out here independently of loadgen's own constants.
    let percentiles = "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%";
    assert_eq!(
        header("run_stats.csv").join(","),
        format!(
            "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,{percentiles},Retries,Timeouts,In Flight At Stop"
        ),
        "Locust's columns, then ours"
    );
    assert_eq!(
        header("run_stats_history.csv").join(","),
        format!(
            "Timestamp,User Count,Type,Name,Requests/s,Failures/s,{percentiles},Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size,Dropped Iterations,Late Starts"
        ),
        "Locust's columns, then ours"
    );
    assert_eq!(
        header("run_failures.csv").join(","),
        "Method,Name,Error,Occurrences,First Seen,Last Seen"
    );
    assert_eq!(
        header("run_exceptions.csv").join(","),
        "Count,Message,Traceback,Nodes"
    );
    // The history's "Total" columns are the whole run at its last row.
    let mut history = csv::Reader::from_path(out.path().join("run_stats_history.csv")).unwrap();
    let last = history.records().last().unwrap().unwrap();
    let all = report["steady_total"]["requests"].as_u64().unwrap()
        + report["startup_total"]["requests"].as_u64().unwrap();
    assert_eq!(last[17].parse::<u64>().unwrap(), all, "{last:?}");
    let mut history = csv::Reader::from_path(out.path().join("run_stats_history.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = history.records().map(Result::unwrap).collect();
    let stamps: std::collections::BTreeSet<&str> = rows.iter().map(|r| &r[0]).collect();
    assert_eq!(stamps.len(), rows.len(), "one row per timestamp");
    for row in &rows {
        let rate = &row[4];
        assert_eq!(
            rate.split('.').nth(1).map(str::len),
            Some(6),
            "Locust's %2f: {rate}"
        );
    }
    // `_stats.csv`: every request under its own name, and an Aggregated row that is their sum
    // and the history's last total.
    let mut stats = csv::Reader::from_path(out.path().join("run_stats.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = stats.records().map(Result::unwrap).collect();
    let (total, named) = rows.split_last().unwrap();
    assert_eq!(&total[1], "Aggregated");
    assert!(named.iter().all(|r| !r[1].contains("start-up")));
    let sum: u64 = named.iter().map(|r| r[2].parse::<u64>().unwrap()).sum();
    assert_eq!(total[2].parse::<u64>().unwrap(), sum);
    assert_eq!(sum, all);
    // Python's csv module ends lines with CRLF.
    for file in ["run_stats.csv", "run_stats_history.csv", "run_failures.csv"] {
        let bytes = std::fs::read(out.path().join(file)).unwrap();
        let lf = bytes.iter().filter(|b| **b == b'\n').count();
        let crlf = bytes.windows(2).filter(|w| w == b"\r\n").count();
        assert!(lf > 0 && lf == crlf, "{file}: {lf} LF, {crlf} CRLF");
    }
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_full_history_writes_every_name_each_second_before_aggregated() {
    let testbed = start_in_memory(|_| {}).await;
    let reads = scenario("reads.toml");
    let (_, _, out) = loadgen(
        &testbed.base_url(),
        &[
            "-u",
            "2",
            "-r",
            "10",
            "-t",
            "3s",
            "-f",
            &reads,
            "--csv-full-history",
        ],
    )
    .await;
    testbed.stop().await;
    let read = |file: &str| -> Vec<csv::StringRecord> {
        csv::Reader::from_path(out.path().join(file))
            .unwrap()
            .records()
            .map(Result::unwrap)
            .collect()
    };
    let history = read("run_stats_history.csv");
    let mut seconds: Vec<Vec<&csv::StringRecord>> = Vec::new();
    for row in &history {
        match seconds.last_mut() {
            Some(group) if group[0][0] == row[0] => group.push(row),
            _ => seconds.push(vec![row]),
        }
    }
    assert!(seconds.len() >= 2, "{history:?}");
    for group in &seconds {
        let (aggregated, named) = group.split_last().unwrap();
        assert_eq!(&aggregated[3], "Aggregated", "{group:?}");
        let names: Vec<(&str, &str)> = named.iter().map(|r| (&r[3], &r[2])).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "Locust's order: by name, then method");
        let sum: u64 = named.iter().map(|r| r[17].parse::<u64>().unwrap()).sum();
        assert_eq!(aggregated[17].parse::<u64>().unwrap(), sum, "{group:?}");
    }
    // The last second's rows are `_stats.csv`'s rows, with the same totals.
    let stats = read("run_stats.csv");
    let last = seconds.last().unwrap();
    assert_eq!(last.len(), stats.len(), "{last:?} {stats:?}");
    for (history_row, stats_row) in last.iter().zip(&stats) {
        assert_eq!(
            (&history_row[2], &history_row[3], &history_row[17]),
            (&stats_row[0], &stats_row[1], &stats_row[2])
        );
    }
}

#[test]
fn a_broken_scenario_is_reported_with_its_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["scenario", "check", &scenario("broken.toml")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("broken.toml:9:"), "{stderr}");
    assert!(stderr.contains("no step `list_filez`"), "{stderr}");
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["scenario", "check", &scenario("reads.toml")])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let show = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["scenario", "show"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).contains("name = \"CreateTaskUser\""));
    // The built-in scenario, copied out of the repository, checked with its fixtures elsewhere:
    // the advice "pass --fixtures DIR" works.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("mine.toml"), &show.stdout).unwrap();
    let check = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .current_dir(outside.path())
            .args(["scenario", "check", "mine.toml"])
            .args(extra)
            .output()
            .unwrap()
    };
    let without = check(&[]);
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert_eq!(without.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pass --fixtures DIR"), "{stderr}");
    let with = check(&["--fixtures", &fixtures().display().to_string()]);
    assert!(
        with.status.success(),
        "{}",
        String::from_utf8_lossy(&with.stderr)
    );
    let python = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["-f", "locustfile.py", "-H", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&python.stderr);
    assert_eq!(python.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read locustfile locustfile.py"),
        "{stderr}"
    );
    assert_eq!(crate::support::unlogged_lines(&stderr).len(), 1, "{stderr}");
}

/// loadgen's binary against `host` (reads.toml, `users` users, 60 s, a table a second on stderr,
/// as Locust prints its tables), with `extra` flags; returns once steady-state requests show
/// in the table: more requests in all than the start-up ones it says are among them.
async fn started_with_requests(
    host: &str,
    users: u32,
    extra: &[&std::ffi::OsStr],
) -> (
    tokio::process::Child,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    String,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--headless", "-H", host, "-t", "60s"])
        .args(["-u", &users.to_string(), "-r", &users.to_string()])
        // A table a second on stderr (not a terminal): the test waits for requests in it.
        .args(["--stats-interval", "1s", "-f", &scenario("reads.toml")])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let requests_flowing = async {
        let mut all = 0;
        while let Some(line) = stderr.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
            let number = |text: &str| {
                text.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            };
            if let Some(rest) = line.trim_start().strip_prefix("Aggregated") {
                all = number(rest).unwrap_or(0);
            } else if let Some(rest) =
                line.strip_prefix("Of which start-up and stop (on_start, on_stop): ")
            {
                if number(rest).is_some_and(|startup| all > startup) {
                    return;
                }
            } else if line.starts_with('[') && line.contains("In flight") && all > 0 {
                // A table without start-up requests: every one is of the steady state.
                if !seen.contains("Of which start-up") {
                    return;
                }
            }
        }
        panic!("loadgen ended before any request: {seen}");
    };
    tokio::time::timeout(Duration::from_secs(60), requests_flowing)
        .await
        .expect("steady-state requests within a minute");
    (child, stderr, seen)
}

/// SIGINT (Ctrl-C), SIGTERM (`docker stop`, Kubernetes) and SIGHUP (a closed terminal) all stop
/// the users and keep the run: the summary, JSON, CSV and HTML are written, and the exit code
/// follows the targets.
async fn a_signal_mid_run_still_writes_the_reports(signal: &str) {
    let testbed = start_in_memory(|_| {}).await;
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("report.json");
    let csv = out.path().join("run");
    let html = out.path().join("report.html");
    let (mut child, mut stderr, mut seen) = started_with_requests(
        &testbed.base_url(),
        3,
        &[
            "--report-json".as_ref(),
            json.as_os_str(),
            "--csv".as_ref(),
            csv.as_os_str(),
            "--html".as_ref(),
            html.as_os_str(),
        ],
    )
    .await;
    send(signal, &child);
    let rest = async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            seen.push_str(&line);
            seen.push('\n');
        }
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(60), rest)
        .await
        .expect("loadgen ends within a minute of the signal");
    let stderr = seen;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("LOAD TEST SUMMARY"), "{stderr}");
    assert!(
        stderr.contains(&format!("stopped by SIG{signal}")),
        "{stderr}"
    );
    // The live table counts the users' start-up (register, login) among its requests, and
    // says how many they are.
    assert!(
        stderr.contains("Of which start-up and stop (on_start, on_stop): "),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true);
    assert!(report["steady_total"]["requests"].as_u64().unwrap() > 0);
    assert!(report["duration_secs"].as_f64().unwrap() < 30.0);
    assert!(out.path().join("run_stats.csv").exists());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Findings"), "{page}");
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_mid_run_still_writes_the_reports() {
    a_signal_mid_run_still_writes_the_reports("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_still_writes_the_reports() {
    a_signal_mid_run_still_writes_the_reports("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_mid_run_still_writes_the_reports() {
    a_signal_mid_run_still_writes_the_reports("HUP").await;
}

/// While the users finish their requests (a long --stop-timeout, requests held 60 s by the
/// server), a second signal exits at once with the shell's code for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let testbed =
        start_in_memory(|c| c.slow = vec!["/api/v1/users/me/stats:60000".parse().unwrap()]).await;
    // A user's first task is the held one a third of the time: with 3 users, all of them
    // were held before any request completed in one run out of 27, and the test waited for a
    // completed request in vain (CI failed so). With 12, one run in half a million.
    let (mut child, mut stderr, _seen) = started_with_requests(
        &testbed.base_url(),
        12,
        &["--stop-timeout".as_ref(), "5m".as_ref()],
    )
    .await;
    send("TERM", &child);
    let mut said = String::new();
    while let Some(line) = stderr.next_line().await.unwrap() {
        said.push_str(&line);
        if line.contains("stopping users") {
            break;
        }
    }
    send("TERM", &child);
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the second signal ends loadgen long before the held requests")
        .unwrap();
    assert_eq!(status.code(), Some(143), "{said}");
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_failures_are_one_clear_line() {
    // Nothing listens on this port: the health check says so before any user starts.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let cli = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "-H",
        &format!("http://127.0.0.1:{port}"),
        "--fixtures",
        &fixtures().display().to_string(),
        "-t",
        "1s",
    ])
    .unwrap();
    let resolve_error = cli.resolve().map(|_| ()).err();
    assert!(resolve_error.is_none(), "{resolve_error:?}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--headless",
            "-H",
            &format!("http://127.0.0.1:{port}"),
            "--fixtures",
            &fixtures().display().to_string(),
            "-t",
            "1s",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("health check GET") && stderr.contains("is the API running?"),
        "{stderr}"
    );
    assert_eq!(crate::support::unlogged_lines(&stderr).len(), 1, "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--headless",
            "-H",
            "http://127.0.0.1:9",
            "--fixtures",
            &empty.path().display().to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is missing: run `fixtures-gen"), "{stderr}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .env_remove("LOCUST_HOST")
        .env_remove("LOADGEN_HOST")
        .env_remove("LOCUST_BASE_URL")
        .arg("--headless")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("no host to load"));
    // -t without --headless: as Locust, the web UI is served (here a dry run says so), with a
    // warning that says why the run does not start.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "-H",
            "http://127.0.0.1:9",
            "-t",
            "5s",
            "--web-port",
            "0",
            "--dry-run",
        ])
        .args(["--fixtures", &fixtures().display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("-t/--run-time without --headless or --autostart"),
        "{stderr}"
    );
}

/// `loadgen scenario show | head`: a reader that goes away is not an error (it was a panic).
#[test]
fn a_reader_that_goes_away_is_not_an_error() {
    // The read end is closed before loadgen writes a byte, so every write meets a broken pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["scenario", "show"])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// When the system refuses more threads, loadgen runs on those it got (it panicked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_limit_costs_threads_not_the_run() {
    let testbed = start_in_memory(|_| {}).await;
    // RLIMIT_NPROC holds for an unprivileged user only: as root, run loadgen as `nobody`. The
    // limit counts every thread of the user, so leave room for what it already runs.
    let uid = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap();
    let root = uid == "0";
    let runs_as = if root { "65534".to_owned() } else { uid };
    let threads_now = std::process::Command::new("ps")
        .args(["-L", "--no-headers", "-u", &runs_as])
        .output()
        .map_or(0, |o| o.stdout.split(|b| *b == b'\n').count());
    // loadgen's own threads (main, the runtime's) take 3 or 4: room for a few user threads of
    // the 8 asked, not all (--threads is capped at 4 a core and at the users).
    let limit = threads_now + 8;
    let mut command = tokio::process::Command::new(if root { "setpriv" } else { "prlimit" });
    if root {
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "prlimit",
        ]);
    }
    // `nobody` may not reach into this checkout: give it its own copies, world-readable.
    let shared = tempfile::tempdir().unwrap();
    let world = |path: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    world(shared.path(), 0o755);
    let binary = shared.path().join("loadgen");
    std::fs::copy(env!("CARGO_BIN_EXE_loadgen"), &binary).unwrap();
    world(&binary, 0o755);
    let reads = shared.path().join("reads.toml");
    std::fs::copy(scenario("reads.toml"), &reads).unwrap();
    world(&reads, 0o644);
    let output = command
        .arg(format!("--nproc={limit}"))
        .arg(&binary)
        .args([
            "--headless",
            "-H",
            &testbed.base_url(),
            "--threads",
            "8",
            "-u",
            "8",
            "-r",
            "8",
            "-t",
            "2s",
        ])
        .args([
            "--only-summary",
            "--target",
            "users=8,p95=60s,p99=60s,avg=60s",
        ])
        .arg("-f")
        .arg(&reads)
        .arg("--fixtures")
        .arg(fixtures())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("could not start"),
        "the limit was hit: {stderr}"
    );
    // The summary is on stderr, where Locust prints its tables.
    assert!(stderr.contains("LOAD TEST SUMMARY"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}{stdout}");
    testbed.stop().await;
}

/// A config file sets flags; a `LOADGEN_*` variable beats it, and a flag beats both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_flags_below_the_environment_and_the_command_line() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("from-config.json");
    let config = dir.path().join("loadgen.toml");
    std::fs::write(
        &config,
        format!(
            "host = 'http://127.0.0.1:9'\nusers = 5\nspawn-rate = 50\nrun-time = '1s'\n\
             only-summary = true\nheadless = true\nreport-json = '{}'\n",
            json.display()
        ),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--config")
        .arg(&config)
        .args([
            "-H",
            &testbed.base_url(),
            "-f",
            &scenario("reads.toml"),
            "--fixtures",
        ])
        .arg(fixtures())
        .env("LOADGEN_USERS", "2")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{stderr}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["peak_users"], 2, "the variable beats the file");
    assert!(
        report["host"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    assert_ne!(
        report["host"], "http://127.0.0.1:9",
        "the flag beats the file"
    );
    assert!(
        report["duration_secs"].as_f64().unwrap() < 30.0,
        "run-time from the file"
    );
    testbed.stop().await;
}

/// A CI job written for Locust's variables keeps its settings: `LOCUST_USERS`,
/// `LOCUST_RUN_TIME`... set every flag, below loadgen's own variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locust_variables_set_every_flag() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("from-locust-variables.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["-f", &scenario("reads.toml"), "--fixtures"])
        .arg(fixtures())
        .env("LOCUST_HOST", testbed.base_url())
        .env("LOCUST_USERS", "3")
        .env("LOCUST_SPAWN_RATE", "50")
        .env("LOCUST_RUN_TIME", "1s")
        .env("LOCUST_HEADLESS", "true")
        .env("LOCUST_ONLY_SUMMARY", "true")
        .env("LOCUST_REPORT_JSON", &json)
        .env("LOCUST_TIMEOUT", "30s")
        .env("LOCUST_LOGLEVEL", "DEBUG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{stderr}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["peak_users"], 3, "{stderr}");
    assert!(
        report["duration_secs"].as_f64().unwrap() < 30.0,
        "LOCUST_RUN_TIME"
    );
    // Locust's lifecycle lines, and at DEBUG one line per request.
    for line in [
        "Ramping to 3 users at a rate of 50.00 per second",
        "All users spawned: {\"Reader\": 3} (3 total users)",
        "--run-time limit reached, shutting down",
        "Shutting down (exit code",
    ] {
        assert!(stderr.contains(line), "{line:?} missing from {stderr}");
    }
    let register = format!("POST {}/api/v1/auth/register 201 ", testbed.base_url());
    assert!(
        stderr.contains(&register),
        "{register:?} missing from {stderr}"
    );
    testbed.stop().await;
}

/// `loadgen ... 2>&1 | head -2`: the reader of the tables (on stderr, as Locust's) goes away
/// after two lines; the run goes on, ends as planned and writes its files (a closed pipe once
/// panicked with exit 101).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_does_not_cost_the_run() {
    let testbed = start_in_memory(|_| {}).await;
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("report.json");
    let mut child = short_run(&testbed.base_url())
        .args(["--stats-interval", "1s", "-f", &scenario("reads.toml")])
        .arg("--report-json")
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for _ in 0..2 {
        stderr.next_line().await.unwrap().expect("a line on stderr");
    }
    drop(stderr);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("loadgen ends on time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["steady_total"]["requests"].as_u64().unwrap() > 0);
    testbed.stop().await;
}

/// A monitored source that refuses (a real PostgreSQL, a wrong password) is named loudly at
/// start and as a finding at the end, never "No problem found"; a --monitor-from file that does
/// not exist is refused before the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_never_reached_is_said_at_start_and_in_the_findings() {
    let testbed = start_in_memory(|_| {}).await;
    let mut refused = url::Url::parse(&test_support::postgres_admin_url()).unwrap();
    refused.set_password(Some("WrongPassword77")).unwrap();
    let output = short_run(&testbed.base_url())
        .args(["-f", &scenario("reads.toml"), "--only-summary"])
        .args(["--monitor-postgres", refused.as_str()])
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        stderr.contains("WARNING: postgres is not watched: cannot connect"),
        "{stderr}"
    );
    assert!(
        stderr.contains("PostgreSQL was not watched: cannot connect"),
        "{stderr}"
    );
    assert!(!stderr.contains("No problem found"), "{stderr}");
    assert!(
        !stdout.contains("WrongPassword77") && !stderr.contains("WrongPassword77"),
        "the password leaked"
    );

    let missing = loadgen::cli::Cli::try_parse_from([
        "loadgen",
        "--headless",
        "-H",
        &testbed.base_url(),
        "-f",
        &scenario("reads.toml"),
        "--monitor-from",
        "/nonexistent/samples.jsonl",
    ])
    .unwrap()
    .resolve()
    .unwrap_err()
    .to_string();
    assert!(missing.contains("no such file"), "{missing}");
    testbed.stop().await;
}

/// Locust's spellings of a run, checked without Locust (locust_compat.rs compares with it): in
/// one short run, a user type picked by a positional argument, a flag given twice (the last
/// wins), `LOCUST_HEADLESS=yes`, output folders that do not exist yet, `--html`'s {u}, {r}
/// and {t}, `--json-file` (NAME.json) and `--json` (stdout) in Locust's form; and the exit
/// code of the same failing run in both modes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locust_spellings_of_a_run_and_both_exit_code_modes() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("two.toml"),
        "[[users]]\nname = 'Reader'\nwait = { constant = '0.1s' }\n\n[[users.tasks]]\n\
         run = ['health']\n\n[users.steps.health]\npath = '/api/v1/health/'\n\n\
         [[users]]\nname = 'Missing'\nwait = { constant = '0.1s' }\n\n[[users.tasks]]\n\
         run = ['nope']\n\n[users.steps.nope]\npath = '/api/v1/nope'\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
        command
            .current_dir(dir.path())
            .env("LOCUST_HEADLESS", "yes")
            .args(["-f", "two.toml", "-H", &testbed.base_url(), "--fixtures"])
            .arg(fixtures())
            .args([
                "-u",
                "5",
                "-u",
                "2",
                "-r",
                "2",
                "-t",
                "1s",
                "--only-summary",
            ])
            .args(extra)
            .kill_on_drop(true);
        command
    };
    let clean = run(&[
        "--csv",
        "out/a/run1",
        "--html",
        "out/b/r_{u}_{r}_{t}.html",
        "--json-file",
        "out/c/stats",
        "--json",
        "--exit-code-mode",
        "locust",
        "Reader",
    ])
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&clean.stderr);
    assert_eq!(clean.status.code(), Some(0), "{stderr}");
    for file in [
        "out/a/run1_stats.csv",
        "out/b/r_2_2_1.html",
        "out/c/stats.json",
    ] {
        assert!(dir.path().join(file).is_file(), "{file}: {stderr}");
    }
    assert!(
        stderr.contains("{\"Reader\": 2}"),
        "-u given twice: the last wins\n{stderr}"
    );
    let stats: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/c/stats.json")).unwrap())
            .unwrap();
    assert_eq!(stats.as_array().map(Vec::len), Some(1), "{stats:#}");
    assert_eq!(stats[0]["name"], "/api/v1/health/");
    assert_eq!(stats[0]["num_failures"], 0);
    let stdout = String::from_utf8_lossy(&clean.stdout);
    // stdout is the JSON alone: the tables are on stderr, as Locust's.
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed[0]["name"], "/api/v1/health/", "{stdout}");

    // Both user types: a third to a half of the requests fail (404). Under a lax failure
    // target ours exits 0 and Locust's mode 1; --exit-code-on-error names the code in both;
    // with Missing alone every request fails and both modes exit 1.
    for handle in [
        (&["--target", "failure=60%"][..], 0),
        (
            &["--target", "failure=60%", "--exit-code-mode", "locust"][..],
            1,
        ),
        (
            &["--exit-code-mode", "locust", "--exit-code-on-error", "7"][..],
            7,
        ),
        (
            &["--target", "failure=60%", "--exit-code-on-error", "7"][..],
            7,
        ),
        (&["Missing"][..], 1),
        (&["Missing", "--exit-code-mode", "locust"][..], 1),
    ]
    .map(|(extra, expected)| {
        // At once: each run is two light users for a second.
        let mut command = run(extra);
        let extra = format!("{extra:?}");
        tokio::spawn(async move { (extra, expected, command.output().await.unwrap()) })
    }) {
        let (extra, expected, failing) = handle.await.unwrap();
        assert_eq!(
            failing.status.code(),
            Some(expected),
            "{extra}: {}",
            String::from_utf8_lossy(&failing.stderr)
        );
    }
}

/// Locust's config files are found without --config (`./locust.conf`, then `pyproject.toml`'s
/// `[tool.locust]`, which beats it), the environment beats them, and `LOCUST_LOCUSTFILE` names
/// the scenario (a `.py` one gets the message `-f x.py` gets); `-l` lists the user types.
#[test]
fn locust_config_files_and_locustfile_variable_are_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        scenario("fixed_and_weighted.toml"),
        dir.path().join("s.toml"),
    )
    .unwrap();
    let dry = |env: &[(&str, &str)], extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env_remove("LOCUST_HOST")
            .envs(env.iter().copied())
            .args(["-H", "http://127.0.0.1:9", "--fixtures"])
            .arg(fixtures())
            .args(extra)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), all)
    };
    std::fs::write(
        dir.path().join("locust.conf"),
        "users = 3\nheadless = 1\nlocustfile = s.toml\n",
    )
    .unwrap();
    let (code, said) = dry(&[], &["--dry-run"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("dry run: 3 users") && said.contains("headless"),
        "{said}"
    );
    std::fs::write(
        dir.path().join("pyproject.toml"),
        "[project]\nname = 'x'\n\n[tool.locust]\nusers = 4\n",
    )
    .unwrap();
    let (_, said) = dry(&[], &["--dry-run"]);
    assert!(said.contains("dry run: 4 users"), "{said}");
    let (_, said) = dry(&[("LOCUST_USERS", "5")], &["--dry-run"]);
    assert!(said.contains("dry run: 5 users"), "{said}");
    std::fs::remove_file(dir.path().join("locust.conf")).unwrap();
    let (code, said) = dry(&[("LOCUST_LOCUSTFILE", "s.toml")], &["-l"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.starts_with("Available Users:\n    "), "{said}");
    // A locustfile runs through the importer, as Locust's variable names it.
    std::fs::write(
        dir.path().join("locustfile.py"),
        "from locust import HttpUser, task\n\nclass Reader(HttpUser):\n    @task\n    def \
         index(self):\n        self.client.get('/')\n",
    )
    .unwrap();
    let (code, said) = dry(&[("LOCUST_LOCUSTFILE", "locustfile.py")], &["-l"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("Available Users:\n    Reader"), "{said}");
}

/// `--tls-cert`/`--tls-key` and `--web-base-path`: the web UI over https under a path, as
/// Locust's; its page and API answer there for a client that trusts the certificate, the bare
/// path redirects to it, and nothing answers outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_is_served_over_https_under_a_base_path() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["-H", "http://127.0.0.1:9", "--web-port", "0", "--fixtures"])
        .arg(fixtures())
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .args(["--web-base-path", "/lg"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = crate::support::web_ui_url(&mut child).await;
    let port: u16 = url
        .strip_prefix("https://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/lg/"))
        .unwrap_or_else(|| panic!("an https URL under /lg/: {url}"))
        .parse()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            certified.cert.der().to_vec(),
        ))
        .unwrap();
    let config = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let get = |path: &'static str| {
        let config = config.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(config)
                .connect("localhost".try_into().unwrap(), tcp)
                .await
                .expect("the TLS handshake with the UI");
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            tls.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut answer))
                .await
                .expect("the UI answers within 30 s")
                .ok();
            String::from_utf8_lossy(&answer).into_owned()
        }
    };
    for (path, status) in [
        ("/lg/", "200"),
        ("/lg/api/stats", "200"),
        ("/lg", "308"),
        ("/api/stats", "404"),
    ] {
        let answer = get(path).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {answer:.300}"
        );
    }
    send("INT", &child);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}
