//! Every request sent is accounted for (issue 22): answered, failed, timed out, resent, or in
//! flight at the stop, in every output. Each test runs loadgen through the binary's own `run`
//! against a small server on loopback that misbehaves in one way (it never answers some
//! requests, answers some far too late, closes connections without answering, or redirects
//! in a loop) and counts every request it read.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::loopback::{Act, accounted, percent, run, scenario, settled, start};

const ONE_GET: &str = "[[users.tasks]]\nrun = [\"get\"]\n\n[users.steps.get]\npath = \"/item\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_never_answered_fail_the_run_and_name_the_stuck_users() {
    // 1 request in 20 is never answered: every user ends up waiting on one.
    let (host, seen) = start(Arc::new(|n, _| {
        if percent(n) < 5 {
            Act::Hang
        } else {
            Act::Answer
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), ONE_GET);
    let (code, report) = run(&host, &file, dir.path(), &["-u", "20", "-t", "8s"]).await;
    let read = settled(&host, &seen).await;
    let (rows, resent, in_flight) = accounted(&report);
    let figures = format!(
        "server read {read}; report: {rows} in the rows, {resent} resent, {in_flight} in flight; \
         steady {}; findings {}; verdicts {}",
        report["steady_total"], report["analysis"]["findings"], report["analysis"]["verdicts"]
    );
    assert_eq!(read, rows + resent + in_flight, "{figures}");
    assert!(in_flight >= 15, "most users waited at the stop: {figures}");
    assert_eq!(code, ExitCode::from(1), "{figures}");
    let verdicts = report["analysis"]["verdicts"].as_array().unwrap();
    for verdict in &verdicts[..4] {
        assert_eq!(verdict["met"], false, "{figures}");
        assert!(
            verdict["measured"]
                .as_str()
                .unwrap()
                .contains("users stuck waiting for answers"),
            "{figures}"
        );
    }
    let first = &report["analysis"]["findings"][0];
    assert_eq!(first["rule"], "load.stuck_users", "{figures}");
    let title = first["title"].as_str().unwrap();
    assert!(
        title.ends_with("users stuck waiting for answers for more than 5 s"),
        "{figures}"
    );
    let evidence = first["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("of 20 users waited more than 5 s") && evidence.contains("on GET /item"),
        "{figures}"
    );
    let steady = &report["steady_total"];
    assert_eq!(steady["percentiles_at_least"], true, "{figures}");
    assert!(
        steady["percentiles_ms"][7].as_f64().unwrap() >= 5_000.0,
        "the p99 shows the stall: {figures}"
    );
    assert!(
        steady["in_flight_at_stop"]["at_least_ms"].as_f64().unwrap() >= 1_000.0,
        "{figures}"
    );
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(
        junit.contains(&format!(
            "<property name=\"in_flight_at_stop\" value=\"{in_flight}\"/>"
        )),
        "{junit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_far_slower_than_the_run_show_in_its_p99() {
    // 1 request in 5 answered after 30 s, in a run of 6 s.
    let (host, _seen) = start(Arc::new(|n, _| {
        if percent(n) < 20 {
            Act::Late(Duration::from_secs(30))
        } else {
            Act::Answer
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), ONE_GET);
    let (_, report) = run(&host, &file, dir.path(), &["-u", "10", "-t", "6s"]).await;
    let steady = &report["steady_total"];
    let percentiles = &steady["percentiles_ms"];
    let (p50, p99) = (
        percentiles[0].as_f64().unwrap(),
        percentiles[7].as_f64().unwrap(),
    );
    let figures = format!("p50 {p50} ms, p99 {p99} ms; steady {steady}");
    assert!(p50 < 1_000.0, "most requests were fast: {figures}");
    assert!(
        p99 >= 3_000.0,
        "the slow ones count at their age, at least half the run: {figures}"
    );
    assert!(
        report["in_flight_at_stop"].as_u64().unwrap() >= 5,
        "{figures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_count_is_the_reported_requests_plus_resends_plus_in_flight() {
    // GETs: 15 % of connections closed unanswered (a kept-alive GET is then resent, and the
    // resend may meet another close), 3 % never answered (the step's timeout of 300 ms ends
    // them, far below --request-timeout); POSTs: 10 % closed (never resent).
    let (host, seen) = start(Arc::new(|n, path| match (path, percent(n)) {
        ("/item", 0..15) => Act::Close,
        ("/item", 15..18) => Act::Hang,
        ("/upload", 0..10) => Act::Close,
        _ => Act::Answer,
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(
        dir.path(),
        "[[users.tasks]]\nweight = 3\nrun = [\"get\"]\n\n[[users.tasks]]\nrun = [\"upload\"]\n\n\
         [users.steps.get]\npath = \"/item\"\ntimeout = \"300ms\"\n\n\
         [users.steps.upload]\nmethod = \"POST\"\npath = \"/upload\"\njson = { name = \"a\" }\n",
    );
    let (_, report) = run(
        &host,
        &file,
        dir.path(),
        &["-u", "12", "-t", "5s", "--request-timeout", "30s"],
    )
    .await;
    let read = settled(&host, &seen).await;
    let (rows, resent, in_flight) = accounted(&report);
    let timed_out = report["timed_out"].as_u64().unwrap();
    let failures = report["failures"].clone();
    let figures = format!(
        "server read {read} ({:?}); report: {rows} in the rows ({timed_out} timed out), \
         {resent} resent, {in_flight} in flight at the stop; failures {failures}",
        seen.borrow().read
    );
    assert_eq!(read, rows + resent + in_flight, "{figures}");
    assert!(resent > 0 && timed_out > 0, "{figures}");
    let failed = |needle: &str| {
        failures
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["error"].as_str().unwrap().contains(needle))
    };
    assert!(
        failed("Timeout: no complete answer within 300ms"),
        "{figures}"
    );
    assert!(failed("a POST is not sent again"), "{figures}");
    // The stats CSV counts the resends and timeouts of each row, after Locust's columns.
    let mut csv = csv::Reader::from_path(dir.path().join("run_stats.csv")).unwrap();
    let header = csv.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (retries, timeouts) = (column("Retries"), column("Timeouts"));
    let aggregated = csv
        .records()
        .map(Result::unwrap)
        .find(|r| &r[1] == "Aggregated")
        .unwrap();
    assert_eq!(
        aggregated[retries].parse::<u64>().unwrap(),
        resent,
        "{figures}"
    );
    assert_eq!(
        aggregated[timeouts].parse::<u64>().unwrap(),
        timed_out,
        "{figures}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_is_a_failure_after_max_redirects() {
    let (host, seen) = start(Arc::new(|_, _| Act::Loop)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), ONE_GET);
    let (code, report) = run(&host, &file, dir.path(), &["-u", "2", "-t", "2s"]).await;
    let read = settled(&host, &seen).await;
    let steady = &report["steady_total"];
    let (requests, failures) = (
        steady["requests"].as_u64().unwrap(),
        steady["failures"].as_u64().unwrap(),
    );
    let in_flight = report["in_flight_at_stop"].as_u64().unwrap();
    let figures = format!(
        "server read {read}; {requests} requests, {failures} failed, {in_flight} in flight; \
         failures {}",
        report["failures"]
    );
    assert!(requests > 0 && failures == requests, "{figures}");
    assert_eq!(code, ExitCode::from(1), "{figures}");
    assert!(
        report["failures"][0]["error"]
            .as_str()
            .unwrap()
            .contains("TooManyRedirects: Exceeded 10 redirects"),
        "{figures}"
    );
    // Each request followed 10 redirects: 11 reads; the stop may cut a chain short.
    assert!(
        read >= requests * 11 && read <= (requests + in_flight) * 11,
        "{figures}"
    );
}
