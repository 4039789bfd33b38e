//! `loadgen import locust` over the corpus in `tests/locustfiles/`: each file is imported, the
//! output passes the scenario checker, and it runs against a catch-all local server while real
//! Locust 2.47 (`LOCUST_VENV`) runs the original against another one, at the same time: the
//! share of requests per (method, name) agrees within 5 points (or within the samples' noise,
//! when a loaded machine leaves Locust too few requests to tell 5 points), and each user's first
//! requests (its `on_start`) are the same sequence.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};

use crate::support::HEAVY;

/// Per connection (the client's address), the (method, path) of each request in order.
type Seen = Arc<Mutex<HashMap<SocketAddr, Vec<(String, String)>>>>;

/// Every field the corpus reads from an answer.
const ANSWER: &str = r#"{"id": 7, "access_token": "tok", "token": "tok", "session_id": "s-1",
"csrf": "c-1", "user": {"id": 3}, "data": {"id": 5}}"#;

/// A server on 127.0.0.1 that answers every request 200 with [`ANSWER`] and records it.
async fn catch_all() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(
        move |ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request| {
            let record = record.clone();
            async move {
                let entry = (
                    request.method().to_string(),
                    request.uri().path().to_owned(),
                );
                record.lock().unwrap().entry(peer).or_default().push(entry);
                // Read to the end, so that the connection stays open for the next request.
                let _ = axum::body::to_bytes(request.into_body(), usize::MAX).await;
                ([("content-type", "application/json")], ANSWER)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{address}"), seen)
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/locustfiles")
}

/// (method, name) → share of the requests in percent, from a `PREFIX_stats.csv`; and the
/// number of requests.
fn shares(stats_csv: &Path) -> (BTreeMap<(String, String), f64>, f64) {
    let mut reader = csv::Reader::from_path(stats_csv)
        .unwrap_or_else(|e| panic!("{}: {e}", stats_csv.display()));
    let mut counts = BTreeMap::new();
    for row in reader.records() {
        let row = row.unwrap();
        if &row[1] == "Aggregated" {
            continue;
        }
        counts.insert(
            (row[0].to_owned(), row[1].to_owned()),
            row[2].parse::<f64>().unwrap(),
        );
    }
    let total: f64 = counts.values().sum();
    let shares = counts
        .into_iter()
        .map(|(k, v)| (k, 100.0 * v / total))
        .collect();
    (shares, total)
}

/// A path with its ids left out: segments that hold a digit become `*`.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.chars().any(|c| c.is_ascii_digit()) {
                "*"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The distinct first `n` requests of the connections that made at least `n`.
fn starts(seen: &Seen, n: usize) -> BTreeSet<Vec<String>> {
    seen.lock()
        .unwrap()
        .values()
        .filter(|requests| requests.len() >= n)
        .map(|requests| {
            requests[..n]
                .iter()
                .map(|(m, p)| format!("{m} {}", shape(p)))
                .collect()
        })
        .collect()
}

/// The shortest `on_start` of the scenario's user types, in requests (0 when one has none).
fn shortest_start(toml: &str) -> usize {
    let scenario = loadgen::scenario::parse(toml, "imported.toml", &corpus()).unwrap();
    scenario
        .users
        .iter()
        .map(|u| u.on_start.iter().map(|r| r.repeat as usize).sum::<usize>())
        .min()
        .unwrap_or(0)
}

/// How one locustfile fared.
struct Compared {
    file: String,
    theirs: BTreeMap<(String, String), f64>,
    ours: BTreeMap<(String, String), f64>,
    /// Requests made by Locust and by loadgen.
    totals: (f64, f64),
    starts: (BTreeSet<Vec<String>>, BTreeSet<Vec<String>>),
}

impl Compared {
    /// The (method, name) pairs whose shares differ by more than 5 points, and by more than
    /// three standard deviations of the two samples' binomial noise: on a loaded machine
    /// Locust may make only a few hundred requests in 3 s, where 5 points is within noise.
    fn off(&self) -> Vec<String> {
        let keys: BTreeSet<_> = self.theirs.keys().chain(self.ours.keys()).collect();
        keys.into_iter()
            .filter_map(|k| {
                let (t, o) = (
                    self.theirs.get(k).copied().unwrap_or(0.0),
                    self.ours.get(k).copied().unwrap_or(0.0),
                );
                let p = (t + o) / 200.0;
                let sd =
                    100.0 * (p * (1.0 - p) * (1.0 / self.totals.0 + 1.0 / self.totals.1)).sqrt();
                let bound = 5.0_f64.max(3.0 * sd);
                ((t - o).abs() > bound).then(|| {
                    format!(
                        "{} {}: Locust {t:.1}%, loadgen {o:.1}% (bound {bound:.1} points)",
                        k.0, k.1
                    )
                })
            })
            .collect()
    }

    fn table(&self) -> String {
        let keys: BTreeSet<_> = self.theirs.keys().chain(self.ours.keys()).collect();
        let mut out = format!(
            "{} ({} requests by Locust, {} by loadgen): first requests of each user: \
             Locust {:?}, loadgen {:?}\n",
            self.file, self.totals.0, self.totals.1, self.starts.0, self.starts.1
        );
        for k in keys {
            out.push_str(&format!(
                "    {:<7} {:<32} Locust {:>5.1}%  loadgen {:>5.1}%\n",
                k.0,
                k.1,
                self.theirs.get(k).copied().unwrap_or(0.0),
                self.ours.get(k).copied().unwrap_or(0.0)
            ));
        }
        out
    }
}

/// Imports `file`, checks the output, and runs both tools for 3 s with 4 users.
async fn compare(file: &Path) -> Compared {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let source = std::fs::read_to_string(file).unwrap();
    let imported = loadgen::import::locust::import(&source, &name).unwrap();
    if let Err(e) = imported.check(&name, &corpus()) {
        panic!(
            "{name}: the output fails the checker: {e}\n{}",
            imported.toml
        );
    }
    let out = tempfile::tempdir().unwrap();
    let scenario = out.path().join("scenario.toml");
    std::fs::write(&scenario, &imported.toml).unwrap();
    let ((their_host, their_seen), (our_host, our_seen)) = (catch_all().await, catch_all().await);
    let common = [
        "--headless",
        "-u",
        "4",
        "-r",
        "100",
        "-t",
        "3s",
        "--only-summary",
    ];
    let locust = tokio::process::Command::new(crate::locust_compat::venv().join("bin/locust"))
        .current_dir(corpus())
        .arg("-f")
        .arg(file)
        .args(common)
        .args(["-H", &their_host, "--csv"])
        .arg(out.path().join("locust"))
        .kill_on_drop(true)
        .output();
    let ours = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("-f")
        .arg(&scenario)
        .args(common)
        .args(["-H", &our_host, "--exit-code-mode", "locust", "--fixtures"])
        .arg(corpus())
        .arg("--csv")
        .arg(out.path().join("loadgen"))
        .kill_on_drop(true)
        .output();
    let (locust, ours) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), locust),
        tokio::time::timeout(Duration::from_secs(60), ours)
    );
    let (locust, loadgen) = (locust.unwrap().unwrap(), ours.unwrap().unwrap());
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        locust.status.code(),
        Some(0),
        "{name}: Locust: {}",
        stderr(&locust)
    );
    assert_eq!(
        loadgen.status.code(),
        Some(0),
        "{name}: loadgen: {}",
        stderr(&loadgen)
    );
    let n = shortest_start(&imported.toml);
    let (theirs, their_total) = shares(&out.path().join("locust_stats.csv"));
    let (ours, our_total) = shares(&out.path().join("loadgen_stats.csv"));
    assert!(
        their_total > 0.0,
        "{name}: Locust made no request: {}",
        stderr(&locust)
    );
    assert!(
        our_total > 0.0,
        "{name}: loadgen made no request: {}",
        stderr(&loadgen)
    );
    Compared {
        file: name,
        theirs,
        ours,
        totals: (their_total, our_total),
        starts: (starts(&their_seen, n), starts(&our_seen, n)),
    }
}

/// Every locustfile of the corpus: imported, checked, and run beside real Locust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_imports_and_runs_as_locust_runs_it() {
    let _heavy = HEAVY.lock().await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "{} locustfiles", files.len());
    let mut failures = Vec::new();
    let mut tables = String::new();
    // Two files at a time: each pair of runs keeps a core busy.
    for pair in files.chunks(2) {
        let results = futures::future::join_all(pair.iter().map(|f| compare(f))).await;
        for compared in results {
            tables.push_str(&compared.table());
            let off = compared.off();
            if !off.is_empty() {
                failures.push(format!("{}: {}", compared.file, off.join("; ")));
            }
            if compared.starts.0 != compared.starts.1 {
                failures.push(format!(
                    "{}: the first requests of each user differ: Locust {:?}, loadgen {:?}",
                    compared.file, compared.starts.0, compared.starts.1
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}\n\n{tables}", failures.join("\n"));
    println!("{tables}");
}

/// What cannot be translated is said three ways: a comment with the original lines at the
/// place, the list, and the partial exit code of `loadgen import locust`.
#[test]
fn what_is_not_translated_is_kept_visible() {
    let file = corpus().join("15_untranslatable.py");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["import", "locust"])
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for (line, text) in [
        (8, "@events.test_start"),
        (19, "if \"error\" in response.text"),
        (25, "time.sleep"),
    ] {
        assert!(
            stdout.contains(&format!("#   {line:>4} | ")) && stdout.contains(text),
            "line {line} in the TOML:\n{stdout}"
        );
        assert!(
            stderr.contains(&format!("15_untranslatable.py:{line}: not translated")),
            "{stderr}"
        );
    }
    // on_stop is translated: the logout runs when each user stops.
    assert!(
        stdout.contains("on_stop = [\"on_stop\"]") && !stderr.contains(":27:"),
        "{stdout}\n{stderr}"
    );
    let full = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["import", "locust"])
        .arg(corpus().join("08_token_auth.py"))
        .output()
        .unwrap();
    assert_eq!(
        full.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    assert!(
        full.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("bad.py"), "class X(HttpUser:\n").unwrap();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["import", "locust"])
        .arg(broken.path().join("bad.py"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{said}");
    assert!(said.contains("bad.py:1:"), "{said}");
}

/// `-f locustfile.py` runs the import, and takes a user class's `host` when no `-H` is given,
/// as Locust does.
#[test]
fn a_locustfile_runs_with_the_host_of_its_class() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .env_remove("LOCUST_HOST")
        .env_remove("LOADGEN_HOST")
        .arg("-f")
        .arg(corpus().join("02_fasthttp_weights.py"))
        .args(["--dry-run", "--headless", "-u", "4"])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("against http://127.0.0.1:8089"), "{said}");
    assert!(said.contains("user types Reader, Writer"), "{said}");
}

/// The README's locustfile (the seed's, in its shape) runs on the testbed with nothing failed,
/// and each user's `on_stop` deletes the video its `on_start` uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_locustfile_runs_on_the_testbed_and_each_user_cleans_up_when_it_stops() {
    let testbed = test_support::start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/locustfile.py");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("-f")
        .arg(&example)
        .arg("--fixtures")
        .arg(test_support::fixtures())
        .args([
            "--headless",
            "-u",
            "3",
            "-r",
            "3",
            "-t",
            "3s",
            "--only-summary",
        ])
        .args(["-H", &testbed.base_url(), "--report-json"])
        .arg(&json)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    let report: serde_json::Value = std::fs::read_to_string(&json)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("no report; exit {:?}\n{said}", out.status.code()));
    let rows = |phase: &str| -> Vec<(String, u64, u64)> {
        report[phase]
            .as_array()
            .unwrap_or_else(|| panic!("no {phase} rows: {report}"))
            .iter()
            .map(|r| {
                (
                    format!(
                        "{} {}",
                        r["method"].as_str().unwrap_or(""),
                        r["name"].as_str().unwrap_or("")
                    ),
                    r["requests"].as_u64().unwrap_or(0),
                    r["failures"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let (startup, steady) = (rows("startup"), rows("steady"));
    let failed: u64 = startup.iter().chain(&steady).map(|r| r.2).sum();
    assert_eq!(failed, 0, "{startup:?} {steady:?}\n{said}");
    let deletes = startup
        .iter()
        .find(|r| r.0 == "DELETE /api/v1/files/[id]")
        .map_or(0, |r| r.1);
    // Answered 204 (nothing failed): each user's video is gone.
    assert_eq!(
        deletes, 3,
        "one delete per user at the stop: {startup:?}\n{said}"
    );
}
