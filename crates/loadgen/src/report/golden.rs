//! Golden files of the report writers: one made-up run (fixed times, fixed figures, a backend
//! watched beside it, two workers and a baseline to compare with), written by the console
//! summary, the CSV files and the Markdown summary, and compared byte for byte with the files
//! under `crates/loadgen/tests/golden/report/`. A change to what a writer prints fails here
//! with the first line that differs; when the change is meant,
//! `UPDATE_GOLDEN=1 cargo test -p loadgen --lib report::golden` rewrites the files, and the
//! diff of the commit shows it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use monitor::sample::{PostgresClients, Values};

use super::baseline::{Baseline, Thresholds};
use super::{Report, console, csv, html, junit, markdown};
use crate::cluster::{ClusterEvent, ClusterSummary, EventKind, WorkerSummary};
use crate::config::RunConfig;
use crate::config::testing::{FIXED_AND_WEIGHTED, resolved};
use crate::diagnosis::testing::{base_time, host, postgres, redis, ticks};
use crate::engine::RunOutcome;
use crate::stats::{FailureKey, FailureKind, FailureStats, JobStats, Key, Phase, Second, Stats};

/// Where the golden files are.
fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/report")
}

/// Seconds the made-up run lasts.
const SECONDS: u64 = 12;

fn key(phase: Phase, method: &str, name: &str) -> Key {
    Key {
        phase,
        method: method.into(),
        name: name.into(),
    }
}

/// `count` requests to `key`, the n-th taking `ms + n * step_ms`, answered `status`.
fn record(stats: &mut Stats, key: Key, count: u64, (ms, step_ms): (u64, u64), status: u16) {
    let endpoint = stats.endpoints.entry(key).or_default();
    for n in 0..count {
        let failed = status >= 400;
        endpoint.record((ms + n * step_ms) * 1000, 512, Some(status), failed);
    }
}

/// What finished in second `i` of the run; `slow` scales the steady latencies (the baseline
/// run is the same run, faster).
fn second_of_requests(i: u64, slow: f64) -> Stats {
    let mut stats = Stats::default();
    let scaled = |ms: u64| (ms as f64 * slow) as u64;
    if i < 3 {
        let login = key(Phase::Startup, "POST", "/api/v1/auth/login");
        record(&mut stats, login, 4, (120, 10), 200);
    }
    // From the 5th second on, the tasks wait for the database's pool.
    let tasks = if i < 4 {
        (scaled(40), 2)
    } else {
        (scaled(300), 25)
    };
    let reads = key(Phase::Steady, "GET", "/api/v1/tasks");
    record(&mut stats, reads, 16 + i, tasks, 200);
    let upload = key(Phase::Steady, "POST", "/api/v1/videos/upload");
    record(&mut stats, upload.clone(), 3, (scaled(250), 30), 201);
    if i == 6 {
        record(&mut stats, upload, 2, (80, 0), 500);
    }
    let poll = key(Phase::Poll, "GET", "/api/v1/tasks/{id}");
    record(&mut stats, poll, 4, (15, 1), 200);
    let join = stats.jobs.entry("join".into()).or_default();
    if (2..SECONDS).contains(&i) {
        join.completed = 1;
        let _ = join.completion.record((i - 1) * 1_000_000);
    }
    stats
}

/// The failures, scenario errors and jobs of the run's end, which no second shows.
fn the_end(stats: &mut Stats) {
    let failure = FailureKey {
        method: "POST".into(),
        name: "/api/v1/videos/upload".into(),
        error: "HTTP 500: Internal Server Error".into(),
        kind: FailureKind::Status(500),
    };
    let seen = FailureStats {
        count: 2,
        first_seen_secs: 6.2,
        last_seen_secs: 6.8,
    };
    stats.failures.insert(failure, seen);
    let missing = "step poll: ${task_id} was never received".to_owned();
    stats.exceptions.insert(missing, 1);
    stats.missing_values = 1;
    stats.handled.insert(("login".into(), 401), 2);
    stats.resent = 1;
    let failed = JobStats {
        failed: 1,
        unknown: 1,
        failure_messages: vec!["ffmpeg exited with status 1".into()],
        ..JobStats::default()
    };
    stats.jobs.entry("join".into()).or_default().merge(&failed);
}

/// The backend watched beside the run: a 4-core host at half its CPU, a pool of 5 busy from the
/// 5th second on, a queue that grows.
fn backend() -> Vec<monitor::sample::Tick> {
    ticks(SECONDS as usize, |i| {
        let (name, mut values) = host(if i < 4 { 30.0 } else { 55.0 });
        if let Values::Host(h) = &mut values {
            h.cores = 4;
            h.memory_pct = 40.0;
        }
        let busy = if i >= 4 { 5 } else { 2 };
        let pool = PostgresClients {
            database: "ffmpeg_api".into(),
            address: "172.18.0.3".into(),
            connections: 5,
            active: busy,
            ..PostgresClients::default()
        };
        vec![
            (name, values),
            postgres(|p| {
                p.database = "ffmpeg_api".into();
                p.connections = 6;
                p.active = busy;
                p.clients = vec![pool];
            }),
            redis(|r| {
                r.lists.insert("0/celery".into(), i as i64 * 2);
            }),
        ]
    })
}

/// The workers: one lost for two seconds in the middle of the run.
fn cluster() -> ClusterSummary {
    let worker = |id: u32, requests: u64, state: &str| WorkerSummary {
        id,
        name: format!("worker-{id}"),
        cores: 2,
        threads: 2,
        users: 5,
        requests,
        requests_per_sec: requests as f64 / SECONDS as f64,
        peak_cpu_pct: 60.0 + f64::from(id),
        peak_timer_lag_ms: 2.0,
        saturated_secs: 0,
        state: state.into(),
    };
    let event = |at_secs, kind, what: &str| ClusterEvent {
        at_secs,
        kind,
        what: what.into(),
    };
    ClusterSummary {
        workers: vec![worker(1, 210, "finished"), worker(2, 193, "finished")],
        events: vec![
            event(
                7.0,
                EventKind::Lost,
                "worker worker-2 lost (no message for 3 s): its 5 users and about 17 req/s are gone; they are shared out to the 1 other(s)",
            ),
            event(
                9.0,
                EventKind::Back,
                "worker worker-2 answers again: the users are shared out again",
            ),
        ],
    }
}

/// The made-up run, its history made second by second as a run makes it.
fn made_up_run(slow: f64) -> RunOutcome {
    let started = base_time();
    let mut second = Second::starting_at(started);
    let mut totals = Stats::default();
    let mut history = Vec::new();
    for i in 0..SECONDS {
        let before = totals.clone();
        totals.merge(&second_of_requests(i, slow));
        second.add(0, &totals.shard_since(&before, i));
        let users = (2 * (i + 1)).min(10);
        let cpu = 20.0 + i as f64;
        history.push(second.row(i, users, (cpu, 80_000_000), &totals));
    }
    the_end(&mut totals);
    RunOutcome {
        stats: totals,
        history,
        started_at: started,
        duration: Duration::from_secs(SECONDS),
        peak_users: 10,
        users_by_type: BTreeMap::from([("Reader".into(), 7), ("Watcher".into(), 3)]),
        interrupted: true,
        stopped_by: Some("SIGINT".into()),
        run_id: "golden-run".into(),
        threads: 4,
        backend: backend(),
        cluster: Some(cluster()),
        ..RunOutcome::default()
    }
}

fn config() -> RunConfig {
    resolved(
        FIXED_AND_WEIGHTED,
        &["-u", "10", "-r", "2", "-t", "12s", "--target", "p95=400ms"],
    )
}

/// The report of the made-up run, compared with the same run 30 % faster.
fn report() -> Report {
    let config = config();
    let mut report = Report::of_run(&config, &made_up_run(1.0));
    let earlier = Report::of_run(&config, &made_up_run(0.7));
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("baseline.json");
    let json = serde_json::to_vec(&earlier).expect("a report serialises");
    std::fs::write(&path, json).expect("the baseline written");
    let baseline = Baseline::load(&path, &config.scenario.identity()).expect("a baseline");
    let mut comparison = baseline.compare(&report, &Thresholds::default());
    // Its temporary path would differ from run to run.
    comparison.baseline = "baseline.json".into();
    report.baseline = Some(comparison);
    report
}

/// The made-up run as an open model at 50/s with a cap of 20 users: `dropped` of its 600
/// iterations dropped, its service time a third of its response time.
fn made_up_open_run(dropped: u64) -> RunOutcome {
    let mut run = made_up_run(1.0);
    let counts = crate::stats::ArrivalCounts {
        scheduled: 600,
        dropped,
        late: 4,
    };
    run.stats.arrivals.total = counts;
    run.stats.arrivals.by_type = BTreeMap::from([("Reader".into(), counts)]);
    for n in 0..200 {
        run.stats.arrivals.record_service(20_000 + n * 500);
    }
    run.users_cap = Some(20);
    run.cluster = None;
    run
}

/// The report of the open run, compared with the same run that dropped less.
fn open_report() -> Report {
    let config = resolved(
        FIXED_AND_WEIGHTED,
        &["--arrival-rate", "50/s", "--max-users", "20", "-t", "12s"],
    );
    let mut report = Report::of_run(&config, &made_up_open_run(90));
    let earlier = Report::of_run(&config, &made_up_open_run(6));
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("baseline.json");
    let json = serde_json::to_vec(&earlier).expect("a report serialises");
    std::fs::write(&path, json).expect("the baseline written");
    let baseline = Baseline::load(&path, &config.scenario.identity()).expect("a baseline");
    let mut comparison = baseline.compare(&report, &Thresholds::default());
    comparison.baseline = "baseline.json".into();
    report.baseline = Some(comparison);
    report
}

/// Compares `actual` with the golden file `name`, or rewrites it under `UPDATE_GOLDEN=1`.
/// Returns what differs, if anything.
fn check(name: &str, actual: &[u8]) -> Option<String> {
    let path = folder().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(folder()).expect("the golden folder");
        std::fs::write(&path, actual).expect("the golden file written");
        return None;
    }
    let expected = match std::fs::read(&path) {
        Ok(expected) => expected,
        Err(error) => return Some(format!("{}: {error}", path.display())),
    };
    (expected != actual).then(|| first_difference(&path, &expected, actual))
}

/// The first line that differs, both ways, with its number.
fn first_difference(path: &Path, expected: &[u8], actual: &[u8]) -> String {
    let (expected, actual) = (
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(actual),
    );
    let mut expected_lines = expected.split_inclusive('\n');
    let mut actual_lines = actual.split_inclusive('\n');
    for number in 1.. {
        match (expected_lines.next(), actual_lines.next()) {
            (None, None) => break,
            (e, a) if e == a => continue,
            (e, a) => {
                return format!(
                    "{} line {number}:\n  golden: {e:?}\n  now:    {a:?}",
                    path.display()
                );
            }
        }
    }
    format!("{}: differs", path.display())
}

fn assert_golden(files: Vec<(String, Vec<u8>)>) {
    let differences: Vec<String> = files
        .iter()
        .filter_map(|(name, bytes)| check(name, bytes))
        .collect();
    assert!(
        differences.is_empty(),
        "the writers' output differs from the golden files:\n{}\n\nIf the change is meant, \
         rewrite them with `UPDATE_GOLDEN=1 cargo test -p loadgen --lib report::golden` and \
         review the diff before committing.",
        differences.join("\n")
    );
}

#[test]
fn the_console_summary_is_the_golden_one() {
    let text = console::summary(&report());
    assert_golden(vec![("console.txt".into(), text.into_bytes())]);
}

#[test]
fn the_markdown_summary_is_the_golden_one() {
    let text = markdown::render(&report());
    assert_golden(vec![("summary.md".into(), text.into_bytes())]);
}

#[test]
fn an_open_model_run_is_in_every_report() {
    let report = open_report();
    assert_golden(vec![
        (
            "open_summary.md".into(),
            markdown::render(&report).into_bytes(),
        ),
        ("open_junit.xml".into(), junit::render(&report).into_bytes()),
    ]);
    // What the golden files must keep showing: the schedule, the service time, the failed
    // "arrival rate held" case, the dropped iterations' regression.
    let summary = markdown::render(&report);
    assert!(
        summary.contains("**Open model** 50/s: 600 iterations scheduled, 90 dropped (7.5/s), 4 started late, users cap 20")
            && summary.contains("**Service time** median")
            && summary.contains("**Dropped iterations** 1.00% → 15.00% (+14.00pp) ❌"),
        "{summary}"
    );
    let xml = junit::render(&report);
    assert!(
        xml.contains("<property name=\"iterations_dropped\" value=\"90\"/>")
            && xml.contains("<testcase name=\"arrival rate held\" classname=\"loadgen.open_model\" time=\"0\">\n      <failure message=\"90 of 600 iterations dropped (7.5/s) at 50/s, users cap 20\""),
        "{xml}"
    );
    assert!(
        xml.contains("<testcase name=\"dropped iterations against the baseline\" classname=\"loadgen.baseline\" time=\"0\">\n      <failure message=\"dropped iterations 1.00% → 15.00% (+14.00pp)"),
        "{xml}"
    );
    let console = console::summary(&report);
    assert!(
        console.contains("Dropped iterations: 1.00% → 15.00% (+14.00pp)!"),
        "{console}"
    );
    let comparison = report.baseline.as_ref().expect("compared");
    assert!(
        comparison
            .regressions
            .iter()
            .any(|r| r.starts_with("Dropped iterations 1.00% → 15.00%")),
        "{:?}",
        comparison.regressions
    );
    let page = html::render(&report);
    assert!(
        page.contains("<p>Open model at 50/s: 600 iterations scheduled, 90 dropped")
            && page.contains("; service time: median"),
        "the HTML report's lines"
    );
    // None of it in a closed run's reports.
    let closed = self::report();
    assert!(!markdown::render(&closed).contains("Open model"));
    assert!(!junit::render(&closed).contains("open_model"));
    assert!(!html::render(&closed).contains("Open model"));
}

#[test]
fn the_csv_files_are_the_golden_ones() {
    let files = csv::files(&report(), "run").expect("the CSV files");
    assert_eq!(files.len(), 5, "{files:?}");
    let named = files
        .into_iter()
        .map(|(path, bytes)| (path.display().to_string(), bytes))
        .collect();
    assert_golden(named);
}

#[test]
fn the_made_up_run_shows_what_the_golden_files_are_meant_to_show() {
    // So that the golden files keep covering the writers' sections: a finding ranked with its
    // symptoms, a failed target, the validity section, the workers, the baseline, every phase.
    let report = report();
    let findings = &report.analysis.findings;
    let ranked: Vec<(&str, Option<&str>)> =
        findings.iter().map(|f| (f.rule, f.explained_by)).collect();
    assert!(
        ranked.contains(&("postgres.pool_exhausted", None))
            && ranked.contains(&("load.slow_endpoints", Some("postgres.pool_exhausted"))),
        "the planted pool, a cause with the slow endpoints under it: {ranked:?}"
    );
    assert!(report.analysis.verdicts.iter().any(|v| !v.met));
    assert!(!report.analysis.validity.is_empty(), "the lost worker");
    assert!(report.baseline.as_ref().is_some_and(|c| !c.passed()));
    assert!(!report.startup.is_empty() && !report.polls.is_empty());
    assert_eq!(report.history.len(), SECONDS as usize);
    // The same run twice is the same text: nothing in it depends on the clock or the machine.
    assert_eq!(console::summary(&report), console::summary(&self::report()));
}
