//! The capacity search as a mode of the web UI, through the binary in web mode against the
//! in-memory testbed: the page offers the mode's form, a search started over HTTP reports its
//! step under way and its steps as they end, and ends with the answer; a bad objective is
//! refused with the parser's message, a second start with 409, and the Stop button stops it
//! with the steps done kept.

use std::cell::RefCell;

use serde_json::Value;
use test_support::start_in_memory;

use crate::support::{poll_json, scenario, web_ui_url};

/// loadgen in web mode on a free loopback port, its form filled for `host`.
async fn web_mode(host: &str) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["-H", host, "-f", &scenario("reads.toml"), "--web-port", "0"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ui = web_ui_url(&mut child).await;
    (child, ui)
}

/// Posts the capacity form's `fields`: the answer's status and JSON.
async fn start_search(client: &reqwest::Client, ui: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let answer = client
        .post(format!("{ui}/api/capacity/start"))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

/// A short search, 3 s steps settling 1 s, from 10/s to a ceiling of 20/s.
const SHORT: [(&str, &str); 7] = [
    ("slo", "p95<500ms,failures<1%"),
    ("start_rate", "10/s"),
    ("step_time", "3s"),
    ("settle", "1s"),
    ("ceiling", "20/s"),
    ("pause", "0s"),
    ("step", "x2"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_started_from_the_page_climbs_to_the_ceiling_and_answers_at_least_it() {
    let testbed = start_in_memory(|_| {}).await;
    let (mut child, ui) = web_mode(&testbed.base_url()).await;
    let client = reqwest::Client::new();

    let page = client.get(&ui).send().await.unwrap().text().await.unwrap();
    for field in [
        "id=\"capacity_form\"",
        "name=\"slo\"",
        "name=\"start_rate\"",
        "name=\"step\"",
        "name=\"step_time\"",
        "name=\"settle\"",
        "name=\"ceiling\"",
        "name=\"pause\"",
        "id=\"capacity_host\"",
        "data-tab=\"capacity\"",
    ] {
        assert!(page.contains(field), "the page lacks {field}: {page}");
    }
    // The objective is prefilled from the targets, in the syntax the field reads back.
    assert!(page.contains("p95&lt;"), "{page}");

    let (status, started) = start_search(&client, &ui, &SHORT).await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(started["success"], true, "{started}");

    // Every step seen under way, in the order seen; the search ends by itself.
    let under_way: RefCell<Vec<String>> = RefCell::default();
    let done = poll_json(&client, &format!("{ui}/api/capacity"), |search| {
        if let Some(rate) = search["current"]["rate"].as_str() {
            let mut seen = under_way.borrow_mut();
            if seen.last().map(String::as_str) != Some(rate) {
                seen.push(rate.to_owned());
            }
        }
        search["state"] != "running"
    })
    .await;
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(
        under_way.borrow().first().map(String::as_str),
        Some("10/s"),
        "{done}"
    );

    let steps = done["steps"].as_array().unwrap();
    let rates: Vec<&str> = steps.iter().map(|s| s["rate"].as_str().unwrap()).collect();
    assert_eq!(rates, ["10/s", "20/s"], "{done}");
    for step in steps {
        let (rate, throughput) = (
            step["rate_per_sec"].as_f64().unwrap(),
            step["throughput_rps"].as_f64().unwrap(),
        );
        // The unhurried testbed answers each iteration's one request: throughput follows the
        // rate. Never above it: the settling second's requests are left out of the judged
        // two (a request or two more ends in them than was scheduled in them, at most).
        assert!(
            throughput > rate * 0.7 && throughput < rate * 1.15,
            "step at {rate}/s answered {throughput} req/s: {step}"
        );
        assert_eq!(step["verdict"], "held", "{step}");
        assert!(
            step["p95_ms"].as_f64().unwrap() < 500.0,
            "p95 {} ms: {step}",
            step["p95_ms"]
        );
    }
    assert_eq!(done["answer"]["kind"], "at_least", "{done}");
    assert_eq!(done["answer"]["held"], "20/s", "{done}");
    let headline = done["headline"].as_str().unwrap();
    assert!(headline.contains("at least 20/s"), "{headline}");
    assert!(done["knee"].is_null(), "no step broke: {done}");
    // The tab's charts are the HTML report's, drawn by the server.
    let charts = client
        .get(format!("{ui}/api/capacity/charts"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(charts.matches("<svg").count(), 2, "{charts}");

    let report: Value = client
        .get(format!("{ui}/api/capacity/report.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        report["steps"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    child.kill().await.unwrap();
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_objective_is_400_a_second_start_409_and_stop_keeps_the_steps_done() {
    let testbed = start_in_memory(|_| {}).await;
    let (mut child, ui) = web_mode(&testbed.base_url()).await;
    let client = reqwest::Client::new();

    let (status, refused) = start_search(&client, &ui, &[("slo", "p96<1ms")]).await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("Objective") && message.contains("unknown target \"p96\""),
        "{message}"
    );

    // A page elsewhere cannot start a search.
    let foreign = client
        .post(format!("{ui}/api/capacity/start"))
        .header("Origin", "https://elsewhere.example")
        .form(&SHORT)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);

    // One long step: the search still goes when the second start comes.
    let long = [
        ("start_rate", "5/s"),
        ("ceiling", "5/s"),
        ("step_time", "5m"),
        ("settle", "1s"),
    ];
    let (status, started) = start_search(&client, &ui, &long).await;
    assert_eq!(status, 200, "{started}");
    let (status, again) = start_search(&client, &ui, &long).await;
    assert_eq!(status, 409, "{again}");
    assert!(
        again["message"]
            .as_str()
            .unwrap()
            .contains("search is going"),
        "{again}"
    );
    // Nor does a load test start beside it.
    let swarm: Value = client
        .post(format!("{ui}/swarm"))
        .form(&[("user_count", "1"), ("spawn_rate", "1")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(swarm["success"], false, "{swarm}");

    // Once the step has served requests, the page's Stop button ends it, its figures kept.
    let url = format!("{ui}/api/capacity");
    poll_json(&client, &url, |search| {
        search["current"]["elapsed_secs"].as_f64() > Some(3.0)
    })
    .await;
    client.post(format!("{ui}/api/stop")).send().await.unwrap();
    let done = poll_json(&client, &url, |search| search["state"] == "finished").await;
    assert_eq!(done["stopped_by"], "the web UI", "{done}");
    assert_eq!(done["answer"]["kind"], "unfinished", "{done}");
    let steps = done["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{done}");
    assert_eq!(steps[0]["interrupted"], true, "{done}");
    assert!(
        steps[0]["requests"].as_u64() > Some(0),
        "the step cut short keeps its figures: {done}"
    );

    // A load test going refuses a search in turn.
    let swarm: Value = client
        .post(format!("{ui}/swarm"))
        .form(&[("user_count", "1"), ("spawn_rate", "1"), ("run_time", "5m")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(swarm["success"], true, "{swarm}");
    let (status, busy) = start_search(&client, &ui, &SHORT).await;
    assert_eq!(status, 409, "{busy}");
    assert!(
        busy["message"]
            .as_str()
            .unwrap()
            .contains("load test is running"),
        "{busy}"
    );
    child.kill().await.unwrap();
    testbed.stop().await;
}
