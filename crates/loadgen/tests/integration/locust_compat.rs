//! loadgen's command line against real Locust (from PyPI, pinned by `scripts/locust-venv.sh`,
//! found through `LOCUST_VENV`), on the same local target: the files each writes and their
//! names, the exit codes, which command lines each accepts, and where each finds its settings.
//! One Locust process per test, runs of 2 s.
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
    let start = stdout.rfind("\n[").expect("the JSON list on stdout");
    let printed: Value = serde_json::from_str(&stdout[start..]).unwrap();
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
