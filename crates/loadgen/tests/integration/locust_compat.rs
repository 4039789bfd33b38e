//! loadgen's command line against real Locust (from PyPI, pinned by `scripts/locust-venv.sh`,
//! found through `LOCUST_VENV`), on the same local target: the files each writes and their
//! names, the exit codes, which command lines each accepts, where each finds its settings, the
//! log lines and tables and where they go, the history's rows, and the web API's answers.
//! One Locust process per test, runs of 2-3 s.
//!
//! What differs on purpose is listed once, in [`DIFFERENCES_KEPT`], with the reason; the tests
//! allow exactly those.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use test_support::start_in_memory;

use crate::support::fixtures;

/// The differences from Locust 2.47 kept on purpose: (the README's words for it, what differs,
/// why). The README's "Coming from Locust" section names each (checked below).
pub const DIFFERENCES_KEPT: &[(&str, &str, &str)] = &[
    (
        "_timeline.csv",
        "--csv also writes PREFIX_timeline.csv",
        "the load and the backend on one clock, a row per second; Locust's four files are \
         unchanged beside it",
    ),
    (
        "--exit-code-mode",
        "the exit code follows the targets unless --exit-code-mode locust",
        "a CI job gates on p95 and the failure rate (a 3.6% failure rate under a 5% target \
         passes); --exit-code-mode locust gives Locust's rule",
    ),
    (
        "exit 2",
        "an error in the command line, the scenario or the tool exits 2 (Locust: 1, or 255, \
         for most; 2 for argparse's)",
        "one code for 'the tool could not run', apart from 1, 'the run failed'",
    ),
    (
        "loadgen import locust",
        "-f locustfile.py runs the file through `loadgen import locust`: read, never run; what \
         has no counterpart in a scenario (event hooks, on_stop, checks of bodies, sleeps in a \
         task) is listed before the run and left out",
        "scenarios are data: the import is what runs, and `loadgen import locust FILE` writes it \
         to read and edit",
    ),
    (
        "response_times",
        "--json's response_times are made from the percentiles, num_reqs_per_sec from the \
         history",
        "loadgen keeps HdrHistograms, not Locust's bucket dictionary",
    ),
    (
        "--processes",
        "--processes, --web-login, --config-users, --otel, --build-path, \
         --web-host-display-name, --skip-log-setup, --enable-rebalancing are accepted with \
         a warning and not honoured",
        "users run on OS threads (--threads), the UI has --web-auth; the rest has no \
         counterpart yet",
    ),
    (
        "--show-task-ratio",
        "--show-task-ratio names a task by its steps; its JSON's keys are sorted",
        "a scenario's tasks have no function names",
    ),
    (
        "Starting loadgen",
        "the first log line is `Starting loadgen VERSION` (Locust: `Starting Locust VERSION`)",
        "it names the tool that runs; the other lines are Locust's words under Locust's logger \
         names",
    ),
    (
        "LOAD TEST SUMMARY",
        "after Locust's tables: the start-up requests and job polls apart, LOAD TEST SUMMARY, \
         TARGET ANALYSIS and the findings; under each live table, a line of the start-up \
         requests among them and the requests in flight",
        "the steady state the targets judge, and why a run missed them",
    ),
    (
        "--json-file FILE",
        "with --json-file the final tables are printed too (Locust leaves them out)",
        "the console keeps its record of the run; the file is for scripts",
    ),
    (
        "HTTP 404",
        "a failure's text is loadgen's (`HTTP 404`), not a Python exception's repr",
        "no Python exception is raised",
    ),
    (
        "num_retries",
        "/stats/requests entries carry num_retries and num_timeouts after Locust's fields",
        "every request sent is accounted for: resends after a closed kept-alive connection, \
         timeouts",
    ),
    (
        "/stats/report",
        "/stats/report is loadgen's HTML report, named loadgen_DATE_SCENARIO_HOST.html with \
         ?download=1; /exceptions has no traceback and its nodes are `local`",
        "loadgen's report has the charts and findings of its own; a scenario raises no Python \
         exception",
    ),
    (
        "Dropped Iterations",
        "_stats_history.csv has Dropped Iterations and Late Starts after Locust's columns, \
         _stats.csv Retries, Timeouts and In Flight At Stop",
        "the open model's iterations, and every request sent accounted for; a tool reading \
         Locust's columns by name or position finds them",
    ),
];

/// The README's "Coming from Locust" section names every difference kept on purpose.
#[test]
fn the_readme_names_every_difference_kept() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let start = readme
        .find("### Coming from Locust")
        .expect("the README has a \"Coming from Locust\" section");
    let end = readme[start + 4..]
        .find("\n##")
        .map_or(readme.len(), |e| start + 4 + e);
    let section = &readme[start..end];
    for (words, what, why) in DIFFERENCES_KEPT {
        assert!(
            section.contains(words),
            "the README's \"Coming from Locust\" does not name {words:?}: {what} ({why})"
        );
    }
}

/// The venv's `locust` and `python`.
pub fn venv() -> PathBuf {
    PathBuf::from(std::env::var("LOCUST_VENV").expect(
        "LOCUST_VENV is not set: these tests compare with real Locust; run them with \
         scripts/test.sh (or export LOCUST_VENV=$(scripts/locust-venv.sh))",
    ))
}

/// The same load in both tools' languages: `Reader` gets a page, `Missing` gets a 404.
const LOCUSTFILE: &str = "\
from locust import HttpUser, task, constant

class Reader(HttpUser):
    wait_time = constant(0.1)

    @task
    def health(self):
        self.client.get('/api/v1/health/')

class Missing(HttpUser):
    wait_time = constant(0.1)

    @task
    def nope(self):
        self.client.get('/api/v1/nope')
";

const SCENARIO: &str = "\
[[users]]
name = 'Reader'
wait = { constant = '0.1s' }

[[users.tasks]]
run = ['health']

[users.steps.health]
path = '/api/v1/health/'

[[users]]
name = 'Missing'
wait = { constant = '0.1s' }

[[users.tasks]]
run = ['nope']

[users.steps.nope]
path = '/api/v1/nope'
";

/// Files under `dir`, relative, sorted.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap();
                out.insert(relative.display().to_string());
            }
        }
    }
    out
}

async fn output(command: &mut tokio::process::Command) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the run ends within 60 s")
        .unwrap()
}

/// The same headless run, with the same outputs in folders that do not exist yet and a user
/// type picked by a positional argument: the same files by the same names (`--html`'s tags
/// filled in, `--json-file` adding `.json`), the same exit code in Locust's mode, and
/// `--json-file`'s entries with Locust's fields for the same names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_the_files_locust_writes_and_exits_as_it_does() {
    let testbed = start_in_memory(|_| {}).await;
    let host = testbed.base_url();
    let (theirs, ours) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(theirs.path().join("locustfile.py"), LOCUSTFILE).unwrap();
    std::fs::write(ours.path().join("scenario.toml"), SCENARIO).unwrap();
    let common = [
        "--headless",
        "-H",
        &host,
        "-u",
        "2",
        "-r",
        "2",
        "-t",
        "2s",
        "--only-summary",
        "--csv",
        "results/run1",
        "--html",
        "html/r_{u}_{r}_{t}.html",
        "--json-file",
        "json/stats",
        "Missing",
    ];
    let locust = tokio::process::Command::new(venv().join("bin/locust"))
        .current_dir(theirs.path())
        .args(["-f", "locustfile.py"])
        .args(common)
        .kill_on_drop(true)
        .output();
    let loadgen = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(ours.path())
        .args(["-f", "scenario.toml", "--fixtures"])
        .arg(fixtures())
        .args(["--exit-code-mode", "locust"])
        .args(common)
        .kill_on_drop(true)
        .output();
    let (locust, loadgen) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), locust),
        tokio::time::timeout(Duration::from_secs(60), loadgen)
    );
    let (locust, loadgen) = (locust.unwrap().unwrap(), loadgen.unwrap().unwrap());
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        (loadgen.status.code(), locust.status.code()),
        (Some(1), Some(1)),
        "every request failed: both exit 1\nloadgen: {}\nlocust: {}",
        stderr(&loadgen),
        stderr(&locust)
    );
    let mut expected = files_under(theirs.path());
    expected.remove("locustfile.py");
    // Kept on purpose (DIFFERENCES_KEPT): our timeline beside Locust's CSV files.
    expected.insert("results/run1_timeline.csv".into());
    let mut written = files_under(ours.path());
    written.remove("scenario.toml");
    assert_eq!(written, expected, "{}", stderr(&loadgen));
    assert!(written.contains("html/r_2_2_2.html"), "{written:?}");

    let read = |dir: &Path| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join("json/stats.json")).unwrap()).unwrap()
    };
    let (their_json, our_json) = (read(theirs.path()), read(ours.path()));
    let shape = |json: &Value| -> Vec<(String, Vec<String>)> {
        json.as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                let entry = entry.as_object().unwrap();
                (
                    entry["name"].as_str().unwrap().to_owned(),
                    entry.keys().cloned().collect(),
                )
            })
            .collect()
    };
    assert_eq!(shape(&our_json), shape(&their_json), "{our_json:#}");
    let failures = |json: &Value| {
        json[0]["num_failures"].as_u64().unwrap() == json[0]["num_requests"].as_u64().unwrap()
    };
    assert!(failures(&our_json) && failures(&their_json), "{our_json:#}");

    // Without failures, Locust's mode exits 0, and --json prints the same fields on stdout.
    let clean = output(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .current_dir(ours.path())
            .args(["-f", "scenario.toml", "--fixtures"])
            .arg(fixtures())
            .args(["--exit-code-mode", "locust", "--headless", "-H", &host])
            .args(["-u", "1", "-t", "1s", "--only-summary", "--json", "Reader"]),
    )
    .await;
    let stdout = String::from_utf8_lossy(&clean.stdout);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    // stdout is the JSON alone: the tables are on stderr, as Locust's.
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed[0]["name"], "/api/v1/health/", "{stdout}");
}

/// A Python program that parses each command line of its standard input (JSON: args, env, cwd)
/// with Locust's own parser and prints the exit code it gives (0 when it parses) and the
/// users it reads, one JSON line each.
const PARSE_WITH_LOCUST: &str = "\
import json, os, sys, io, contextlib
from locust.argument_parser import parse_options
cases = json.load(sys.stdin)
base_env = dict(os.environ)
for case in cases:
    os.environ.clear(); os.environ.update(base_env); os.environ.update(case.get('env', {}))
    os.chdir(case['cwd']); os.environ['HOME'] = case['cwd']
    code, users = 0, None
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            options = parse_options(args=case['args'])
            users = options.num_users
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    print(json.dumps({'code': code, 'users': users}))
";

/// A case: the command line, its environment, the folder it runs in.
struct Case {
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

fn case(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Case {
    Case {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        cwd: cwd.to_path_buf(),
    }
}

/// Locust's verdict on each case: (exit code of its parser, users read).
fn locust_parses(cases: &[Case]) -> Vec<(i64, Option<u64>)> {
    use std::io::Write;
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "args": c.args,
                "env": c.env.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                "cwd": c.cwd,
            })
        })
        .collect();
    let mut child = std::process::Command::new(venv().join("bin/python"))
        .args(["-c", PARSE_WITH_LOCUST])
        .env_remove("LOCUST_HOST")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            (v["code"].as_i64().unwrap(), v["users"].as_u64())
        })
        .collect()
}

/// loadgen's verdict on the same case, through --dry-run: (exit code, users it would run).
fn loadgen_parses(case: &Case, scenario: &Path) -> (i64, Option<u64>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(&case.cwd)
        .env_remove("LOCUST_HOST")
        .envs(case.env.iter().cloned())
        .env("HOME", &case.cwd)
        .arg("-f")
        .arg(scenario)
        .arg("--fixtures")
        .arg(fixtures())
        .args(&case.args)
        .arg("--dry-run")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let users = stdout
        .split_once("dry run: ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok());
    let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (i64::from(out.status.code().unwrap_or(-1)), users, all)
}

/// Command lines and variables that CI files written for Locust use: each one Locust's parser
/// takes, loadgen takes too (rc 0 in a dry run, where Locust's parser gives 0), and the users
/// each reads, from the command line, the environment and Locust's config files, are the same.
#[test]
fn loadgen_accepts_what_locust_accepts_and_reads_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let plain = dir.path().join("plain");
    let conf = dir.path().join("conf");
    let both = dir.path().join("both");
    for folder in [&plain, &conf, &both] {
        std::fs::create_dir(folder).unwrap();
    }
    std::fs::write(conf.join("locust.conf"), "users = 3\nheadless = true\n").unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(plain.join("c.pem"), certified.cert.pem()).unwrap();
    std::fs::write(plain.join("k.pem"), certified.signing_key.serialize_pem()).unwrap();
    std::fs::write(both.join("locust.conf"), "users = 3\n").unwrap();
    std::fs::write(
        both.join("pyproject.toml"),
        "[project]\nname = 'x'\n\n[tool.locust]\nusers = 4\nheadless = true\n",
    )
    .unwrap();
    let h = ["-H", "http://127.0.0.1:9"];
    let cases = vec![
        case(
            &[&h[..], &["-u", "2"]].concat(),
            &[("LOCUST_HEADLESS", "1")],
            &plain,
        ),
        case(
            &[&h[..], &["-u", "2"]].concat(),
            &[("LOCUST_HEADLESS", "True")],
            &plain,
        ),
        case(
            &[&h[..], &["-u", "2"]].concat(),
            &[("LOCUST_HEADLESS", "yes")],
            &plain,
        ),
        case(
            &[&h[..], &["--headless", "-u", "2", "-u", "5"]].concat(),
            &[],
            &plain,
        ),
        case(
            &[&h[..], &["--headless", "-u", "2", "Reader"]].concat(),
            &[],
            &plain,
        ),
        case(
            &[&h[..], &["--headless", "-u", "2", "--equal-weights"]].concat(),
            &[],
            &plain,
        ),
        case(
            &[&h[..], &["--headless", "-u", "1", "--processes", "2"]].concat(),
            &[],
            &plain,
        ),
        case(
            &[&h[..], &["-P", "8090", "--web-login"]].concat(),
            &[],
            &plain,
        ),
        case(
            &[&h[..], &["--web-base-path", "/lg", "--skip-log-setup"]].concat(),
            &[],
            &plain,
        ),
        case(
            &[&h[..], &["--tls-cert", "c.pem", "--tls-key", "k.pem"]].concat(),
            &[],
            &plain,
        ),
        case(
            &[&h[..], &["--headless", "-u", "1", "--expect-workers", "2"]].concat(),
            &[],
            &plain,
        ),
        case(&[&h[..], &["-t", "10s"]].concat(), &[], &plain),
        case(
            &[&h[..], &["--headless", "--profile", "nightly", "--json"]].concat(),
            &[],
            &plain,
        ),
        case(
            &[&h[..], &["--headless", "--json-file", "out/stats"]].concat(),
            &[],
            &plain,
        ),
        case(
            &[
                &h[..],
                &[
                    "--headless",
                    "--config-users",
                    r#"{"user_class_name": "Reader", "weight": 2}"#,
                ],
            ]
            .concat(),
            &[],
            &plain,
        ),
        case(&[&h[..], &["-l"]].concat(), &[], &plain),
        case(
            &[&h[..], &["--show-task-ratio", "--show-task-ratio-json"]].concat(),
            &[],
            &plain,
        ),
        // Refused by both.
        case(&[&h[..], &["--users", "many"]].concat(), &[], &plain),
        case(&[&h[..], &["--no-such-flag"]].concat(), &[], &plain),
        case(&h, &[], &conf),
        case(&h, &[], &both),
        case(&h, &[("LOCUST_USERS", "5")], &both),
        case(
            &[&h[..], &["-u", "6"]].concat(),
            &[("LOCUST_USERS", "5")],
            &both,
        ),
    ];
    let theirs = locust_parses(&cases);
    assert_eq!(theirs.len(), cases.len(), "Locust answered every case");
    let mut wrong = Vec::new();
    for (case, (their_code, their_users)) in cases.iter().zip(theirs) {
        let (our_code, our_users, said) = loadgen_parses(case, &scenario);
        let users_differ = their_code == 0
            && their_users.is_some()
            && our_users.is_some()
            && our_users != their_users;
        if our_code != their_code || users_differ {
            wrong.push(format!(
                "{:?} {:?} in {}: locust rc {their_code} users {their_users:?}, loadgen rc \
                 {our_code} users {our_users:?}\n{said}",
                case.env,
                case.args,
                case.cwd.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A log line in Locust's form, `[2026-12-04 08:49:50,101] host/INFO/locust.runners: message`:
/// (level, logger, message), or `None` for a line of another form.
fn log_line(line: &str) -> Option<(&str, &str, &str)> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once("] ")?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S,%3f").ok()?;
    let (_host, rest) = rest.split_once('/')?;
    let (level, rest) = rest.split_once('/')?;
    let (logger, message) = rest.split_once(": ")?;
    Some((level, logger, message))
}

/// The (level, logger, message) of every log line of `text`.
fn log_lines(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(log_line)
        .map(|(l, g, m)| (l.to_owned(), g.to_owned(), m.to_owned()))
        .collect()
}

/// Both tools headless with the same flags, concurrently: (Locust's output, loadgen's), each
/// with its folder (`results/run1_*.csv` written there).
async fn both_headless(
    host: &str,
    flags: &[&str],
) -> (
    (std::process::Output, tempfile::TempDir),
    (std::process::Output, tempfile::TempDir),
) {
    let (theirs, ours) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(theirs.path().join("locustfile.py"), LOCUSTFILE).unwrap();
    std::fs::write(ours.path().join("scenario.toml"), SCENARIO).unwrap();
    let locust = tokio::process::Command::new(venv().join("bin/locust"))
        .current_dir(theirs.path())
        .args(["-f", "locustfile.py", "-H", host])
        .args(flags)
        .kill_on_drop(true)
        .output();
    let loadgen = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(ours.path())
        .args(["-f", "scenario.toml", "--fixtures"])
        .arg(fixtures())
        .args(["--exit-code-mode", "locust", "-H", host])
        .args(flags)
        .kill_on_drop(true)
        .output();
    let (locust, loadgen) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), locust),
        tokio::time::timeout(Duration::from_secs(60), loadgen)
    );
    (
        (locust.unwrap().unwrap(), theirs),
        (loadgen.unwrap().unwrap(), ours),
    )
}

/// Locust's tables' first lines, as it prints them on stderr when no terminal is attached.
const TABLE_HEADERS: [&str; 3] = [
    "Type     Name                                                                          # reqs      # fails |    Avg     Min     Max    Med |   req/s  failures/s",
    "Type     Name                                                                                  50%    66%    75%    80%    90%    95%    98%    99%  99.9% 99.99%   100% # reqs",
    "# occurrences      Error                                                                                               ",
];

/// Issue 29, items 5 and 6, headless: the same log lines in Locust's form under Locust's logger
/// names (`Starting ...` names its tool), the tables on stderr with Locust's headers and
/// nothing on stdout, and a `_stats_history.csv` whose first row is Locust's t = 0 row, then
/// a row per second with totals that never go down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_logs_prints_and_keeps_its_history_as_locust_does() {
    let testbed = start_in_memory(|_| {}).await;
    let flags = [
        "--headless",
        "-u",
        "2",
        "-r",
        "2",
        "-t",
        "3s",
        "--csv",
        "results/run1",
    ];
    let ((locust, theirs), (loadgen, ours)) = both_headless(&testbed.base_url(), &flags).await;
    let said = |o: &std::process::Output| {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let expected: [(&str, &str); 6] = [
        ("locust.main", "Starting "),
        ("locust.main", "Run time limit set to 3 seconds"),
        (
            "locust.runners",
            "Ramping to 2 users at a rate of 2.00 per second",
        ),
        (
            "locust.runners",
            r#"All users spawned: {"Missing": 1, "Reader": 1} (2 total users)"#,
        ),
        ("locust.main", "--run-time limit reached, shutting down"),
        ("locust.main", "Shutting down (exit code 1)"),
    ];
    for (tool, output) in [("locust", &locust), ("loadgen", &loadgen)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines = log_lines(&stderr);
        for (logger, message) in expected {
            assert!(
                lines
                    .iter()
                    .any(|(level, g, m)| level == "INFO" && g == logger && m.starts_with(message)),
                "{tool}: no INFO line of {logger} {message:?}\n{}",
                said(output)
            );
        }
        for header in TABLE_HEADERS {
            assert!(
                stderr.lines().any(|l| l == header),
                "{tool}: no table headed {header:?} on stderr\n{}",
                said(output)
            );
        }
        assert!(output.stdout.is_empty(), "{tool}: {}", said(output));
    }
    // Kept on purpose (DIFFERENCES_KEPT): the start line names loadgen.
    let ours_said = String::from_utf8_lossy(&loadgen.stderr);
    assert!(
        ours_said.contains(&format!(
            "locust.main: Starting loadgen {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{ours_said}"
    );

    let history = |dir: &Path| -> Vec<csv::StringRecord> {
        csv::Reader::from_path(dir.join("results/run1_stats_history.csv"))
            .unwrap()
            .records()
            .map(Result::unwrap)
            .collect()
    };
    let (their_rows, our_rows) = (history(theirs.path()), history(ours.path()));
    // Locust's 23 columns of the first row, but the timestamp: its t = 0 row, byte for byte.
    let first = |rows: &[csv::StringRecord]| -> Vec<String> {
        rows[0].iter().skip(1).take(22).map(str::to_owned).collect()
    };
    assert_eq!(first(&our_rows), first(&their_rows), "{our_rows:?}");
    for (tool, rows) in [("locust", &their_rows), ("loadgen", &our_rows)] {
        let totals: Vec<u64> = rows.iter().map(|r| r[17].parse().unwrap()).collect();
        assert!(
            totals.windows(2).all(|w| w[0] <= w[1]) && totals.last() > Some(&0),
            "{tool}: Total Request Count goes down or stays 0: {totals:?}"
        );
    }
    // One row per wall-clock second, from the start to the end of the run.
    let stamps: Vec<u64> = our_rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(
        stamps.windows(2).all(|w| w[1] == w[0] + 1) && stamps.len() >= 4,
        "{stamps:?}"
    );
    testbed.stop().await;
}

/// `--autostart --autoquit 0 -t 2s`: the UI runs the test, quits when it is over, and prints
/// the final tables, as Locust does, with Locust's lines for the moments it quits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autostart_autoquit_prints_the_final_tables() {
    let testbed = start_in_memory(|_| {}).await;
    let (theirs, ours) = (free_port().to_string(), free_port().to_string());
    let run = |port: &str| {
        [
            "--autostart",
            "--autoquit",
            "0",
            "-u",
            "1",
            "-r",
            "1",
            "-t",
            "2s",
            "--web-host",
            "127.0.0.1",
            "--web-port",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([port.to_owned(), "Reader".to_owned()])
        .collect::<Vec<String>>()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("locustfile.py"), LOCUSTFILE).unwrap();
    std::fs::write(dir.path().join("scenario.toml"), SCENARIO).unwrap();
    let locust = tokio::process::Command::new(venv().join("bin/locust"))
        .current_dir(dir.path())
        .args(["-f", "locustfile.py", "-H", &testbed.base_url()])
        .args(run(&theirs))
        .kill_on_drop(true)
        .output();
    let loadgen = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(dir.path())
        .args(["-f", "scenario.toml", "--fixtures"])
        .arg(fixtures())
        .args(["-H", &testbed.base_url()])
        .args(run(&ours))
        .kill_on_drop(true)
        .output();
    let (locust, loadgen) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), locust),
        tokio::time::timeout(Duration::from_secs(60), loadgen)
    );
    for (tool, output) in [("locust", locust), ("loadgen", loadgen)] {
        let output = output.expect("it quits by itself").unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines = log_lines(&stderr);
        for message in [
            "Run time limit set to 2 seconds",
            "--autoquit time reached, shutting down",
        ] {
            assert!(
                lines
                    .iter()
                    .any(|(_, logger, m)| logger == "locust.main" && m == message),
                "{tool}: no {message:?}\n{stderr}"
            );
        }
        assert!(
            stderr.lines().any(|l| l == TABLE_HEADERS[1]),
            "{tool}: no final tables\n{stderr}"
        );
    }
    testbed.stop().await;
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A JSON answer's shape: each path (`stats[].name`) with its kind (number, string, ...); an
/// array's items are merged under `[]`.
fn shape(value: &Value) -> std::collections::BTreeMap<String, &'static str> {
    fn walk(value: &Value, path: &str, out: &mut std::collections::BTreeMap<String, &'static str>) {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(items) => {
                for item in items {
                    walk(item, &format!("{path}[]"), out);
                }
                "array"
            }
            Value::Object(map) => {
                for (key, item) in map {
                    walk(item, &format!("{path}.{key}"), out);
                }
                "object"
            }
        };
        out.insert(path.to_owned(), kind);
    }
    let mut out = std::collections::BTreeMap::new();
    walk(value, "", &mut out);
    out
}

/// The fields loadgen's web API adds to Locust's, each kept on purpose (DIFFERENCES_KEPT).
const EXTRA_FIELDS: &[&str] = &[".stats[].num_retries", ".stats[].num_timeouts"];

/// One tool serving its web UI on `port` (Locust's flags), and its base URL once it answers.
async fn web_mode(program: &Path, args: &[String], port: u16) -> (tokio::process::Child, String) {
    let child = tokio::process::Command::new(program)
        .args(args)
        .args(["--web-host", "127.0.0.1", "--web-port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{base}/stats/requests"))
        .send()
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{program:?} serves no UI on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, base)
}

/// The JSON answers of Locust's web API routes, at one moment.
async fn web_answers(base: &str) -> Vec<(&'static str, Value)> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for route in [
        "/stats/requests",
        "/exceptions",
        "/tasks",
        "/logs",
        "/worker-count",
    ] {
        let answer = client.get(format!("{base}{route}")).send().await.unwrap();
        assert!(
            answer.status().is_success(),
            "{base}{route}: {}",
            answer.status()
        );
        out.push((route, answer.json::<Value>().await.unwrap()));
    }
    out
}

/// Issue 29, item 7: Locust's web API routes answer with Locust's keys and types, before a
/// run and during one; `/logs` gives Locust's lines; `/stats/report` is the HTML report, an
/// attachment with `?download=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_api_answers_with_locusts_keys_and_types() {
    let testbed = start_in_memory(|_| {}).await;
    let host = testbed.base_url();
    let dir = tempfile::tempdir().unwrap();
    let locustfile = dir.path().join("locustfile.py");
    let scenario = dir.path().join("scenario.toml");
    std::fs::write(&locustfile, LOCUSTFILE).unwrap();
    std::fs::write(&scenario, SCENARIO).unwrap();
    let their_args: Vec<String> = vec!["-f".into(), locustfile.display().to_string()];
    let our_args: Vec<String> = vec![
        "-f".into(),
        scenario.display().to_string(),
        "--fixtures".into(),
        fixtures().display().to_string(),
    ];
    let locust = venv().join("bin/locust");
    let ((_locust, theirs), (_loadgen, ours)) = tokio::join!(
        web_mode(&locust, &their_args, free_port()),
        web_mode(
            Path::new(env!("CARGO_BIN_EXE_loadgen")),
            &our_args,
            free_port()
        )
    );
    let compare = |moment: &str, their: &[(&str, Value)], our: &[(&str, Value)]| {
        let mut wrong = Vec::new();
        for ((route, their), (_, our)) in their.iter().zip(our) {
            let (their_shape, our_shape) = (shape(their), shape(our));
            for (path, kind) in &their_shape {
                // Locust's current percentiles are null until its window has a response
                // time, then numbers: loadgen's are numbers from the start.
                let either = *kind == "null" && our_shape.get(path) == Some(&"number");
                if our_shape.get(path) != Some(kind) && !either {
                    wrong.push(format!(
                        "{moment} {route}{path}: locust {kind}, loadgen {:?}",
                        our_shape.get(path)
                    ));
                }
            }
            for path in our_shape.keys() {
                if !their_shape.contains_key(path) && !EXTRA_FIELDS.contains(&path.as_str()) {
                    wrong.push(format!("{moment} {route}{path}: loadgen's alone"));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{}\nlocust: {their:#?}\nloadgen: {our:#?}",
            wrong.join("\n")
        );
    };
    let (their_before, our_before) = tokio::join!(web_answers(&theirs), web_answers(&ours));
    compare("before a run", &their_before, &our_before);
    assert_eq!(our_before[0].1["stats"][0]["name"], "Aggregated");

    let client = reqwest::Client::new();
    for base in [&theirs, &ours] {
        let swarm = client
            .post(format!("{base}/swarm"))
            .form(&[("user_count", "2"), ("spawn_rate", "2"), ("host", &host)])
            .send()
            .await
            .unwrap();
        assert!(swarm.status().is_success(), "{base}");
    }
    // Until both have answers of each user type and a failure.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (their_during, our_during) = loop {
        let (their, our) = tokio::join!(web_answers(&theirs), web_answers(&ours));
        let ready = |answers: &[(&str, Value)]| {
            answers[0].1["stats"]
                .as_array()
                .is_some_and(|s| s.len() == 3)
                && answers[0].1["errors"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty())
        };
        if ready(&their) && ready(&our) {
            break (their, our);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{their:#?}\n{our:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    compare("during a run", &their_during, &our_during);
    for (tool, answers) in [("locust", &their_during), ("loadgen", &our_during)] {
        let logs = answers[3].1["master"].as_array().unwrap();
        assert!(
            logs.iter().all(|l| l.as_str().and_then(log_line).is_some())
                && logs.iter().any(|l| l
                    .as_str()
                    .is_some_and(|l| l.contains("locust.runners: Ramping to 2 users"))),
            "{tool}: {logs:#?}"
        );
    }
    for base in [&theirs, &ours] {
        let page = client
            .get(format!("{base}/stats/report"))
            .send()
            .await
            .unwrap();
        let kind = page.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            page.status().is_success() && kind.starts_with("text/html"),
            "{base}: {kind}"
        );
        let download = client
            .get(format!("{base}/stats/report?download=1"))
            .send()
            .await
            .unwrap();
        let disposition = download.headers()[reqwest::header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            disposition.starts_with("attachment;filename=") && disposition.ends_with(".html"),
            "{base}: {disposition}"
        );
    }
    testbed.stop().await;
}

/// `--log-format json`: the same messages under the same logger names, one JSON object a line
/// (for log pipelines), and no line in Locust's form; the tables stay as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_logs_carry_the_same_messages_as_json_lines() {
    let testbed = start_in_memory(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.toml"), SCENARIO).unwrap();
    let output = output(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .current_dir(dir.path())
            .args(["-f", "scenario.toml", "--fixtures"])
            .arg(fixtures())
            .args([
                "--headless",
                "-H",
                &testbed.base_url(),
                "-u",
                "1",
                "-t",
                "1s",
            ])
            .args(["--log-format", "json", "Reader"]),
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let json: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for entry in &json {
        for key in ["timestamp", "level", "logger", "host", "message"] {
            assert!(entry.get(key).is_some(), "no {key} in {entry}");
        }
    }
    assert!(
        json.iter().any(|e| e["logger"] == "locust.runners"
            && e["level"] == "INFO"
            && e["message"] == "Ramping to 1 users at a rate of 1.00 per second"),
        "{stderr}"
    );
    assert!(stderr.lines().all(|l| log_line(l).is_none()), "{stderr}");
    assert!(stderr.lines().any(|l| l == TABLE_HEADERS[0]), "{stderr}");
    testbed.stop().await;
}
