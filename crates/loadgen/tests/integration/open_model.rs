//! The open model (issue 25): iterations arrive on a schedule whatever the target does. Each
//! test runs loadgen against the loopback server of `loopback.rs` that answers slowly, or
//! stalls once, and checks the counts (scheduled, sent, dropped), the console and the finding,
//! and the response time against the service time; never the timing of the schedule itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::loopback::{Act, run, scenario, settled, start};

const ONE_GET: &str = "[[users.tasks]]\nrun = [\"get\"]\n\n[users.steps.get]\npath = \"/item\"\n";

/// Requests the server read for the scenario's steps (the health check aside).
fn read_at(seen: &tokio::sync::watch::Sender<super::loopback::Seen>, path: &str) -> u64 {
    seen.borrow()
        .read
        .iter()
        .filter(|(k, _)| k.ends_with(path))
        .map(|(_, n)| n)
        .sum()
}

fn open_model(report: &Value) -> (u64, u64, u64) {
    let open = &report["open_model"];
    (
        open["scheduled"].as_u64().unwrap(),
        open["dropped"].as_u64().unwrap(),
        open["late"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_beyond_the_users_cap_drops_iterations_and_says_why() {
    // Every answer takes 2 s: 50 users serve 25 iterations a second of the 100 asked.
    let (host, seen) = start(Arc::new(|_, path| match path {
        "/item" => Act::Late(Duration::from_secs(2)),
        _ => Act::Answer,
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), ONE_GET);
    let json = dir.path().join("report.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--headless", "-H", &host, "-f", &file, "--only-summary"])
        .args(["--arrival-rate", "100/s", "--max-users", "50", "-t", "8s"])
        .args(["--report-json", json.to_str().unwrap()])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    // The summary is on stderr, where Locust prints its tables.
    let console = String::from_utf8_lossy(&output.stderr);
    settled(&host, &seen).await;
    let sent = read_at(&seen, "/item");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let (scheduled, dropped, late) = open_model(&report);
    let secs = report["duration_secs"].as_f64().unwrap();
    let validity = report["analysis"]["validity"].to_string();
    let figures = format!(
        "sent {sent} ({:.1}/s), dropped {dropped} ({:.1}/s), scheduled {scheduled}, late {late}, \
         over {secs:.1} s\nstderr:\n{console}\nvalidity: {validity}",
        sent as f64 / secs,
        dropped as f64 / secs
    );
    assert!(
        (15.0..=35.0).contains(&(sent as f64 / secs)),
        "the server gets about 25/s: {figures}"
    );
    assert!(
        (50.0..=90.0).contains(&(dropped as f64 / secs)),
        "about 75/s dropped: {figures}"
    );
    assert!(
        (sent + dropped).abs_diff(scheduled) * 20 <= scheduled,
        "sent and dropped add up to the schedule within 5 %: {figures}"
    );
    assert!(scheduled.abs_diff(800) <= 1, "8 s at 100/s: {figures}");
    assert!(
        console.contains("Dropped: ") && console.contains("users at the cap of 50"),
        "{figures}"
    );
    assert!(
        validity.contains("could not hold the arrival rate"),
        "the finding: {figures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_iteration_due_is_sent_or_dropped() {
    let (host, seen) = start(Arc::new(|_, path| match path {
        "/item" => Act::Late(Duration::from_millis(20)),
        _ => Act::Answer,
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), ONE_GET);
    let (_, report) = run(
        &host,
        &file,
        dir.path(),
        &["--arrival-rate", "200/s", "-t", "5s"],
    )
    .await;
    settled(&host, &seen).await;
    let sent = read_at(&seen, "/item");
    let (scheduled, dropped, late) = open_model(&report);
    let figures = format!("sent {sent}, dropped {dropped}, scheduled {scheduled}, late {late}");
    assert!(scheduled.abs_diff(1000) <= 1, "200/s for 5 s: {figures}");
    // An iteration started in the last instant may not have written its request when the run
    // stops (with no --stop-timeout): at most a few, never more sent than scheduled.
    assert!(sent + dropped <= scheduled, "{figures}");
    assert!(scheduled - (sent + dropped) <= 3, "{figures}");
    let by_type = &report["open_model"]["by_type"]["Client"];
    assert_eq!(by_type["scheduled"].as_u64(), Some(scheduled), "{report:#}");
    let per_second: u64 = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["arrivals"]["scheduled"].as_u64().unwrap())
        .sum();
    assert_eq!(
        per_second, scheduled,
        "the seconds add up to the run: {figures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_the_response_time_not_in_the_service_time() {
    // The server stops answering for 500 ms once, 2 s in. The 2 users pre-started are caught
    // in it; the iterations due meanwhile wait for new users, whose log-in waits for the
    // stall's end: that wait is in their response time (from the scheduled instant), not in
    // the service time of their request (from its send).
    let born = Instant::now();
    let stall = (Duration::from_secs(2), Duration::from_millis(2500));
    let (host, _seen) = start(Arc::new(move |_, path| {
        let now = born.elapsed();
        match path {
            "/item" | "/login" if now >= stall.0 && now < stall.1 => Act::Late(stall.1 - now),
            _ => Act::Answer,
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(
        dir.path(),
        "on_start = [\"login\"]\n\n[users.steps.login]\npath = \"/login\"\n\n\
         [[users.tasks]]\nrun = [\"get\"]\n\n[users.steps.get]\npath = \"/item\"\n",
    );
    let (_, report) = run(
        &host,
        &file,
        dir.path(),
        &[
            "--arrival-rate",
            "100/s",
            "--pre-allocate",
            "2",
            "--max-users",
            "200",
            "-t",
            "7s",
        ],
    )
    .await;
    let p99 = |v: &Value| v["percentiles_ms"][7].as_f64().unwrap();
    let response = p99(&report["steady_total"]);
    let service = p99(&report["service_time"]);
    let figures = format!(
        "response p99 {response} ms, service p99 {service} ms, open model {}",
        report["open_model"]
    );
    assert!(
        response >= 200.0,
        "the stall is in the response time: {figures}"
    );
    assert!(
        response >= 4.0 * service.max(1.0),
        "and far less in the service time: {figures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_load_table_and_a_types_own_rate_set_the_schedule() {
    let (host, seen) = start(Arc::new(|_, _| Act::Answer)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.toml");
    std::fs::write(
        &path,
        "[load]\narrival_rate = \"100/s\"\nstages = []\nmax_users = 40\n\n\
         [[users]]\nname = \"Shared\"\n[[users.tasks]]\nrun = [\"get\"]\n\
         [users.steps.get]\npath = \"/shared\"\n\n\
         [[users]]\nname = \"Own\"\narrival_rate = \"50/s\"\n[[users.tasks]]\nrun = [\"get\"]\n\
         [users.steps.get]\npath = \"/own\"\n",
    )
    .unwrap();
    let (_, report) = run(&host, path.to_str().unwrap(), dir.path(), &["-t", "3s"]).await;
    settled(&host, &seen).await;
    let by_type = &report["open_model"]["by_type"];
    let scheduled = |t: &str| by_type[t]["scheduled"].as_u64().unwrap();
    let figures = format!("{:#}", report["open_model"]);
    assert!(scheduled("Shared").abs_diff(300) <= 1, "{figures}");
    assert!(scheduled("Own").abs_diff(150) <= 1, "{figures}");
    assert_eq!(
        report["open_model"]["users_cap"].as_u64(),
        Some(40),
        "{figures}"
    );
    assert_eq!(
        read_at(&seen, "/shared") + by_type["Shared"]["dropped"].as_u64().unwrap(),
        scheduled("Shared"),
        "{figures}"
    );
}

#[test]
fn bad_open_model_flags_name_the_flag_and_the_fix() {
    use clap::Parser;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), ONE_GET);
    let resolve = |args: &[&str]| {
        let mut argv = vec![
            "loadgen",
            "--headless",
            "-H",
            "http://127.0.0.1:9",
            "-f",
            &file,
        ];
        argv.extend_from_slice(args);
        match loadgen::cli::Cli::try_parse_from(argv) {
            Err(error) => error.to_string(),
            Ok(cli) => cli
                .resolve()
                .err()
                .map_or_else(|| "resolved".to_owned(), |e| format!("{e:#}")),
        }
    };
    let unit = resolve(&["--arrival-rate", "5/h"]);
    assert!(
        unit.contains("--arrival-rate") && unit.contains("the unit is /s or /m"),
        "{unit}"
    );
    let stages = resolve(&["--arrival-stages", "30s-50/s"]);
    assert!(
        stages.contains("--arrival-stages") && stages.contains("DURATION:RATE"),
        "{stages}"
    );
    let both = resolve(&["--arrival-rate", "10/s", "-u", "5", "--max-users", "9"]);
    assert!(both.contains("-u is --max-users"), "{both}");
    let above = resolve(&[
        "--arrival-rate",
        "10/s",
        "--max-users",
        "5",
        "--pre-allocate",
        "9",
    ]);
    assert!(above.contains("pre-allocate at most the cap"), "{above}");
    let alone = resolve(&["--max-users", "5"]);
    assert!(
        alone.contains("--max-users is for the open model"),
        "{alone}"
    );
    assert_eq!(resolve(&["--arrival-rate", "10/s", "-u", "5"]), "resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_correction_counts_the_starts_a_paced_user_missed() {
    // 2 users paced at 20 ms; one request takes 1 s. Without correction it is one slow
    // sample of about 500; with it, the ~49 starts its user missed are counted too.
    let p99_of = |correct: bool| async move {
        let (host, _seen) = start(Arc::new(|n, path| match (path, n) {
            ("/item", 100) => Act::Late(Duration::from_secs(1)),
            _ => Act::Answer,
        }))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scenario.toml");
        std::fs::write(
            &path,
            format!("[[users]]\nname = \"Paced\"\nwait = {{ pacing = \"20ms\" }}\n\n{ONE_GET}"),
        )
        .unwrap();
        let mut args = vec!["-u", "2", "-t", "5s"];
        if correct {
            args.push("--latency-correction");
        }
        let (_, report) = run(&host, path.to_str().unwrap(), dir.path(), &args).await;
        let total = &report["steady_total"];
        (
            total["percentiles_ms"][7].as_f64().unwrap(),
            total["requests"].as_u64().unwrap(),
        )
    };
    let (plain, plain_requests) = p99_of(false).await;
    let (corrected, corrected_requests) = p99_of(true).await;
    let figures = format!(
        "p99 {plain} ms of {plain_requests} requests without correction, \
         {corrected} ms of {corrected_requests} with"
    );
    assert!(corrected >= 200.0, "{figures}");
    assert!(corrected >= 10.0 * plain.max(1.0), "{figures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_memory_limit_no_user_is_made() {
    // Answers take 3 s: 50/s would need 150 users, capped at 100. The memory limit (1 MB, passed
    // at the first second) stops making them after about 50.
    let (host, _seen) = start(Arc::new(|_, path| match path {
        "/item" => Act::Late(Duration::from_secs(3)),
        _ => Act::Answer,
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), ONE_GET);
    let args = [
        "--arrival-rate",
        "50/s",
        "--pre-allocate",
        "1",
        "--max-users",
        "100",
        "--memory-limit",
        "1",
        "-t",
        "5s",
    ];
    let (_, report) = run(&host, &file, dir.path(), &args).await;
    let peak = report["peak_users"].as_u64().unwrap();
    let figures = format!("peak {peak} users, open model {}", report["open_model"]);
    assert!(peak <= 80, "{figures}");
    assert!(
        report["open_model"]["dropped"].as_u64().unwrap() > 50,
        "{figures}"
    );
}

/// A server that serves `/item` 4 at a time, 100 ms each, in arrival order: a capacity of
/// about 40/s, past which requests queue and wait longer the longer the queue.
fn four_slots_of_100_ms() -> super::loopback::Policy {
    let free_at = std::sync::Mutex::new([Instant::now(); 4]);
    Arc::new(move |_, path| {
        if path != "/item" {
            return Act::Answer;
        }
        let now = Instant::now();
        let mut slots = free_at.lock().unwrap();
        let slot = slots.iter_mut().min().unwrap();
        let done = (*slot).max(now) + Duration::from_millis(100);
        *slot = done;
        Act::Late(done - now)
    })
}

/// What a run against [`four_slots_of_100_ms`] left: the findings' and validity items' rule
/// ids (in order), its JUnit file, and the figures to print on failure.
struct FourSlots {
    findings: Vec<String>,
    validity: Vec<String>,
    junit: String,
    figures: String,
}

/// Runs `rate` against [`four_slots_of_100_ms`] for 8 s.
async fn against_four_slots(rate: &str) -> FourSlots {
    let (host, _seen) = start(four_slots_of_100_ms()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), ONE_GET);
    let (_, report) = run(
        &host,
        &file,
        dir.path(),
        &["--arrival-rate", rate, "-t", "8s"],
    )
    .await;
    let rules = |list: &str| -> Vec<String> {
        report["analysis"][list]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["rule"].as_str().unwrap().to_owned())
            .collect()
    };
    let p50: Vec<f64> = report["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["percentiles_ms"][0].as_f64().unwrap_or(-1.0))
        .collect();
    let figures = format!(
        "open model {}\nper-second p50 {p50:?}\nfindings {:#}\nvalidity {:#}",
        report["open_model"], report["analysis"]["findings"], report["analysis"]["validity"]
    );
    FourSlots {
        findings: rules("findings"),
        validity: rules("validity"),
        junit: std::fs::read_to_string(dir.path().join("junit.xml")).unwrap(),
        figures,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_over_the_apis_capacity_is_the_top_finding() {
    // 100/s asked of a server that answers about 40/s: the users (100 at the cap) pile up on
    // it, its queue grows, then iterations are dropped; the API's capacity, not the
    // generator's.
    let run = against_four_slots("100/s").await;
    let figures = &run.figures;
    assert_eq!(
        run.findings.first().map(String::as_str),
        Some("load.over_capacity"),
        "{figures}"
    );
    assert!(
        !run.validity
            .iter()
            .any(|r| r == "loadgen.arrival_rate_missed"),
        "{figures}"
    );
    // The JUnit file says the rate was not held (the users at the cap dropped iterations).
    assert!(
        run.junit.contains("<testcase name=\"arrival rate held\" classname=\"loadgen.open_model\" time=\"0\">\n      <failure"),
        "{}\n{figures}",
        run.junit
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_well_under_capacity_is_not_over_capacity() {
    let run = against_four_slots("15/s").await;
    assert!(
        !run.findings.iter().any(|r| r == "load.over_capacity"),
        "{}",
        run.figures
    );
    assert!(
        run.junit.contains(
            "<testcase name=\"arrival rate held\" classname=\"loadgen.open_model\" time=\"0\"/>"
        ),
        "held: {}\n{}",
        run.junit,
        run.figures
    );
}
