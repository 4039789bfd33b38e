//! The capacity search's report files, written by the real binary against the in-memory
//! testbed: every file asked for is written and read by a real consumer (serde_json, the csv
//! crate, junitparser); a second search compared with the first (`--baseline`) and required to
//! show more than its ceiling allows (`--require`) exits 1 and says why in the console, the
//! JUnit file and the Markdown summary; and a run's report and a capacity report are each
//! refused where the other is expected, before any request.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use test_support::start_in_memory;

use crate::ci::junit_cases;
use crate::support::scenario;

/// An objective loose enough for a busy 2-core machine against the unhurried testbed.
const LOOSE: &str = "p95<2s,failures<5%";

/// `loadgen capacity` in `dir` against `host`: short steps of `reads.toml` from 10/s up to the
/// ceiling 20/s, judged by `slo`, plus `extra`.
async fn capacity(dir: &Path, host: &str, slo: &str, extra: &[&str]) -> Output {
    let reads = scenario("reads.toml");
    let args = [
        "capacity",
        "-H",
        host,
        "-f",
        &reads,
        "--slo",
        slo,
        "--start-rate",
        "10/s",
        "--ceiling",
        "20/s",
        "--step-time",
        "3s",
        "--settle",
        "1s",
        "--pause",
        "0s",
    ];
    tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(dir)
        .args(args)
        .args(extra)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{name} was not written: {e}"))
}

/// Every file flag of a run applies to a search: JSON (marked as a capacity report), one CSV
/// row per step, the HTML page with its curve, JUnit and Markdown. A second search against the
/// first as its baseline, required to show 1000/s with a ceiling of 20/s, exits 1: the console,
/// the JUnit file and the summary say the requirement was not met, and give the comparison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_writes_every_report_and_a_second_below_its_requirement_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let testbed = start_in_memory(|_| {}).await;
    let host = testbed.base_url();
    let first = capacity(
        dir.path(),
        &host,
        LOOSE,
        &[
            "--report-json",
            "first.json",
            "--csv",
            "first",
            "--html",
            "first.html",
            "--junit",
            "first.xml",
            "--summary-md",
            "first.md",
        ],
    )
    .await;
    let console = format!("{}{}", text(&first.stdout), text(&first.stderr));
    assert_eq!(first.status.code(), Some(0), "{console}");

    let report: Value = serde_json::from_str(&read(dir.path(), "first.json")).unwrap();
    assert_eq!(report["report_kind"], "capacity", "{console}");
    assert_eq!(report["report_version"], 1, "{console}");
    let steps = report["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{console}");
    let held = report["answer"]["held"]
        .as_str()
        .unwrap_or("none")
        .to_owned();

    let table = read(dir.path(), "first_capacity.csv");
    let mut csv = csv::Reader::from_reader(table.as_bytes());
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.len(),
        steps.len(),
        "one row per step: {rows:?}\n{console}"
    );

    let html = read(dir.path(), "first.html");
    assert!(
        html.contains("Latency against throughput")
            && html.contains("Throughput against the rate asked")
            && html.matches("<svg").count() == 2
            && html.trim_end().ends_with("</html>"),
        "{html}"
    );
    let cases = junit_cases(&dir.path().join("first.xml"));
    assert_eq!(cases.len(), 1, "{cases:?}\n{console}");
    assert_eq!(
        cases[0]["name"], "capacity ≥ the required rate (no --require)",
        "{cases:?}"
    );
    assert_eq!(cases[0]["results"], serde_json::json!([]), "{cases:?}");
    let summary = read(dir.path(), "first.md");
    assert!(
        summary.starts_with("## ✅ loadgen capacity: ") && summary.contains("### Steps, by rate"),
        "{summary}"
    );

    // Compared with the first, and required to show what its ceiling cannot.
    let second = capacity(
        dir.path(),
        &host,
        LOOSE,
        &[
            "--baseline",
            "first.json",
            "--require",
            "1000/s",
            "--junit",
            "second.xml",
            "--summary-md",
            "second.md",
        ],
    )
    .await;
    let console = text(&second.stdout);
    assert_eq!(
        second.status.code(),
        Some(1),
        "{console}{}",
        text(&second.stderr)
    );
    assert!(
        console.contains("Required capacity 1000/s: NOT met"),
        "{console}"
    );
    assert!(
        console.contains("against the baseline (first.json of "),
        "the comparison is in the console: {console}"
    );
    let cases = junit_cases(&dir.path().join("second.xml"));
    let required = cases
        .iter()
        .find(|c| c["name"] == "capacity ≥ the required rate (1000/s)")
        .unwrap_or_else(|| panic!("{cases:?}"));
    assert_eq!(required["results"][0][0], "Failure", "{cases:?}");
    let message = required["results"][0][1].as_str().unwrap();
    assert!(
        message.starts_with("required 1000/s, capacity found: ") && message.contains("Capacity "),
        "the failure gives the answer: {message}"
    );
    assert!(
        cases
            .iter()
            .any(|c| c["name"] == "capacity kept against the baseline"),
        "{cases:?}"
    );
    let summary = read(dir.path(), "second.md");
    assert!(
        summary.starts_with("## ❌")
            && summary.contains("❌ **Required capacity** 1000/s: NOT met")
            && summary.contains(&format!("{held} held there")),
        "the first search's {held} is the baseline: {summary}"
    );
    testbed.stop().await;
}

/// A run's report given to a search, and a search's report given to a run, are refused by
/// name before any request: nothing listens on the host (port 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_report_and_a_capacity_report_each_refuse_the_other_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let testbed = start_in_memory(|_| {}).await;
    let reads = scenario("reads.toml");
    let run = crate::support::short_run(&testbed.base_url())
        .current_dir(dir.path())
        .args(["-f", &reads, "--only-summary", "--report-json", "run.json"])
        .output()
        .await
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let search = capacity(
        dir.path(),
        &testbed.base_url(),
        LOOSE,
        &["--report-json", "search.json"],
    )
    .await;
    assert_eq!(search.status.code(), Some(0), "{}", text(&search.stdout));
    testbed.stop().await;

    let nowhere = "http://127.0.0.1:9";
    let refused = capacity(dir.path(), nowhere, LOOSE, &["--baseline", "run.json"]).await;
    let error = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{error}");
    assert!(
        error.contains("--baseline run.json: a run's report")
            && error.contains("loadgen capacity --report-json"),
        "{error}"
    );

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(dir.path())
        .args(["--headless", "-H", nowhere, "-f", &reads, "-t", "1s"])
        .args(["--baseline", "search.json"])
        .output()
        .await
        .unwrap();
    let error = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{error}");
    assert!(
        error.contains("--baseline search.json: a capacity report")
            && error.contains("loadgen --report-json"),
        "{error}"
    );

    // A threshold a search cannot judge.
    let refused = capacity(
        dir.path(),
        nowhere,
        LOOSE,
        &["--baseline", "search.json", "--regression", "p95=+5%"],
    )
    .await;
    let error = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{error}");
    assert!(error.contains("--regression rps=-N%"), "{error}");
}

/// Capacity planted lower than the baseline's: one database connection held 100 ms by each
/// `GET /api/v1/tasks` (two reads in three) serves 10 of them a second, about 15 iterations a
/// second, where the unhurried testbed held the ceiling of 20/s. The search against that
/// baseline finds its edge below 18/s (the 10 % allowed under 20/s) and exits 1, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capacity_lower_than_its_baseline_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let slo = "p95<400ms,failures<5%";
    let fast = start_in_memory(|_| {}).await;
    let before = capacity(
        dir.path(),
        &fast.base_url(),
        slo,
        &["--report-json", "fast.json"],
    )
    .await;
    let console = text(&before.stdout);
    assert_eq!(before.status.code(), Some(0), "{console}");
    assert!(console.contains("Capacity at least 20/s"), "{console}");
    fast.stop().await;

    let slow = start_in_memory(|c| {
        c.db_pool = 1;
        c.slow = vec!["/api/v1/tasks:100".parse().unwrap()];
    })
    .await;
    let after = capacity(
        dir.path(),
        &slow.base_url(),
        slo,
        &[
            "--baseline",
            "fast.json",
            "--junit",
            "slow.xml",
            "--report-json",
            "slow.json",
        ],
    )
    .await;
    let console = text(&after.stdout);
    assert_eq!(after.status.code(), Some(1), "{console}");
    assert!(
        console.contains("Capacity FELL against the baseline (fast.json of ")
            && console.contains("20/s held there"),
        "{console}"
    );
    let report: Value = serde_json::from_str(&read(dir.path(), "slow.json")).unwrap();
    let comparison = &report["baseline_comparison"];
    assert_eq!(comparison["verdict"], "fell", "{comparison}\n{console}");
    assert_eq!(comparison["before"], "20/s", "{comparison}");
    let cases = junit_cases(&dir.path().join("slow.xml"));
    let kept = cases
        .iter()
        .find(|c| c["name"] == "capacity kept against the baseline")
        .unwrap_or_else(|| panic!("{cases:?}"));
    assert_eq!(kept["results"][0][0], "Failure", "{cases:?}\n{console}");
    slow.stop().await;
}
