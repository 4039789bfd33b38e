//! One timeline: backend samples from a monitor sidecar (its HTTP endpoint or the JSON Lines it
//! wrote) kept beside the load's seconds, loadgen's own figures and its memory limit.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use test_support::start_in_memory;

fn reads() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/reads.toml")
        .display()
        .to_string()
}

async fn run(args: &[&str]) -> (std::process::ExitCode, Value, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("report.json");
    let csv = out.path().join("run");
    let mut argv: Vec<String> = [
        "loadgen",
        "--headless",
        "--only-summary",
        "-f",
        &reads(),
        "--report-json",
        &json.display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    argv.extend(["--csv".to_owned(), csv.display().to_string()]);
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let code = loadgen::run(loadgen::cli::Cli::try_parse_from(argv).unwrap()).await;
    (
        code,
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap(),
        out,
    )
}

/// A monitor sidecar in this process: host samples every 500 ms, served over HTTP and written
/// as JSON Lines.
async fn sidecar(jsonl: &Path) -> (String, tokio_util::sync::CancellationToken) {
    let stop = tokio_util::sync::CancellationToken::new();
    let recent = monitor::sinks::http::Recent::default();
    let addr =
        monitor::sinks::http::serve("127.0.0.1:0".parse().unwrap(), recent.clone(), stop.clone())
            .await
            .unwrap();
    let mut file = monitor::sinks::files::JsonLines::create(jsonl).unwrap();
    let sources: Vec<Box<dyn monitor::source::Source>> = vec![Box::new(
        monitor::sources::host::Host::new(monitor::sources::host::Capacity {
            disk_bps: 1e9,
            net_bps: 1e9,
        }),
    )];
    let mut sampler = monitor::sampler::Sampler::new(sources, Duration::from_millis(500));
    let run_stop = stop.clone();
    tokio::spawn(async move {
        sampler
            .run(None, run_stop, |tick| {
                file.write(tick).unwrap();
                recent.push(tick.clone());
            })
            .await;
    });
    (format!("http://{addr}"), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_from_a_sidecar_share_the_runs_timeline() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("samples.jsonl");
    let (url, stop) = sidecar(&jsonl).await;
    let (_, report, out) = run(&[
        "-H",
        &testbed.base_url(),
        "-u",
        "2",
        "-r",
        "2",
        "-t",
        "4s",
        "--monitor-from",
        &url,
    ])
    .await;
    let backend = report["backend"].as_array().unwrap();
    // Every sample the sidecar took during the run was pulled (bar the one it may have taken
    // as the run ended), however many a busy machine let it take.
    let started = report["started_at"].as_f64().unwrap();
    let ended = started + report["duration_secs"].as_f64().unwrap();
    let taken = monitor::sinks::files::read_json_lines(&jsonl)
        .unwrap()
        .iter()
        .map(|t| t.timestamp.timestamp_millis() as f64 / 1000.0)
        .filter(|at| (started + 1.0..=ended - 1.0).contains(at))
        .count();
    assert!(
        backend.len() >= 2 && backend.len() >= taken,
        "{} pulled, {taken} taken inside the run",
        backend.len()
    );
    assert!(backend.iter().all(|t| t["sources"]["host"]["up"] == true));
    // Loadgen's own figures are in every second of the history.
    let history = report["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h["loadgen_rss_bytes"].as_u64().unwrap() > 0)
    );
    // The timeline CSV puts both on one row per second.
    let mut timeline = csv::Reader::from_path(out.path().join("run_timeline.csv")).unwrap();
    let header: Vec<String> = timeline
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert!(
        header.contains(&"Requests/s".to_owned()) && header.contains(&"host_cpu_pct".to_owned()),
        "{header:?}"
    );
    let host_column = header.iter().position(|h| h == "host_cpu_pct").unwrap();
    let filled = timeline
        .records()
        .filter(|r| !r.as_ref().unwrap()[host_column].is_empty())
        .count();
    assert!(filled >= 3, "{filled} rows with backend figures");

    // The same samples read back from the file the sidecar wrote, after the fact.
    let (_, from_file, _out) = run(&[
        "-H",
        &testbed.base_url(),
        "-u",
        "1",
        "-r",
        "1",
        "-t",
        "2s",
        "--monitor-from",
        &jsonl.display().to_string(),
    ])
    .await;
    let ticks = from_file["backend"].as_array().unwrap();
    assert!(
        !ticks.is_empty() && ticks.len() < backend.len() + 10,
        "only the run's window: {}",
        ticks.len()
    );
    stop.cancel();

    // A sidecar that is not there costs the backend figures, never the run's results.
    let (_, without, _out) = run(&[
        "-H",
        &testbed.base_url(),
        "-u",
        "1",
        "-r",
        "1",
        "-t",
        "2s",
        "--monitor-from",
        "http://127.0.0.1:9",
    ])
    .await;
    assert!(without["steady_total"]["requests"].as_u64().unwrap() > 0);
    assert!(without["backend"].as_array().unwrap().is_empty());
    testbed.stop().await;
}

/// A TLS front for a plain HTTP server on `plain`, with a self-signed certificate for
/// `localhost`; returns its port and the certificate's PEM file.
async fn https_front(plain: String, dir: &Path) -> (u16, std::path::PathBuf) {
    let ca_file = dir.join("sidecar-ca.pem");
    let server_config = test_support::self_signed_tls(&ca_file);
    let port = crate::support::tls_front(server_config, plain).await;
    (port, ca_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_sidecar_is_trusted_as_the_host_is() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, stop) = sidecar(&dir.path().join("samples.jsonl")).await;
    let (port, ca_file) =
        https_front(url.trim_start_matches("http://").to_owned(), dir.path()).await;
    let https = format!("https://localhost:{port}");
    let ca = ca_file.display().to_string();
    let (_, trusted, _out) = run(&[
        "-H",
        &testbed.base_url(),
        "-u",
        "1",
        "-r",
        "1",
        "-t",
        "3s",
        "--monitor-from",
        &https,
        "--ca-cert",
        &ca,
    ])
    .await;
    let pulled = trusted["backend"].as_array().unwrap();
    assert!(!pulled.is_empty(), "samples pulled over https");
    // Without the certificate, the sidecar is not trusted: no samples, and the run's results
    // are still there.
    let (_, untrusted, _out) = run(&[
        "-H",
        &testbed.base_url(),
        "-u",
        "1",
        "-r",
        "1",
        "-t",
        "2s",
        "--monitor-from",
        &https,
    ])
    .await;
    assert!(untrusted["backend"].as_array().unwrap().is_empty());
    assert!(untrusted["steady_total"]["requests"].as_u64().unwrap() > 0);
    stop.cancel();
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_limit_stops_the_ramp_and_says_so() {
    let testbed = start_in_memory(|_| {}).await;
    // 1 MB: passed at once, so only the users started in the first second run.
    let (_, report, _out) = run(&[
        "-H",
        &testbed.base_url(),
        "-u",
        "50",
        "-r",
        "5",
        "-t",
        "4s",
        "--memory-limit",
        "1",
    ])
    .await;
    let peak = report["peak_users"].as_u64().unwrap();
    assert!(peak < 20, "the ramp went on to {peak}");
    // An item of the run's validity: the load it was meant to apply was not.
    let titles: Vec<&str> = report["analysis"]["validity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    assert!(
        titles.contains(&"loadgen reached its memory limit"),
        "{titles:?}"
    );
    testbed.stop().await;
}
