//! Load tests in CI pipelines: a run compared with an earlier run's report (`--baseline`), the
//! JUnit file read by a real consumer (junitparser), the Markdown summary, refusals that come
//! before the first request, and the example workflows in `examples/ci/`, whose every loadgen
//! command must parse.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use test_support::start_in_memory;

use crate::support::{fixtures, scenario};

/// Runs the loadgen binary in `dir` with `args`.
async fn loadgen(dir: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .current_dir(dir)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// A short headless run of `reads.toml` against `host`, writing `json`, plus `extra` flags.
async fn reads_run(dir: &Path, host: &str, json: &str, extra: &[&str]) -> Output {
    let scenario = scenario("reads.toml");
    let mut args = vec![
        "--headless",
        "-H",
        host,
        "-f",
        &scenario,
        "-u",
        "6",
        "-r",
        "60",
        "-t",
        "4s",
        "--only-summary",
        "--report-json",
        json,
    ];
    args.extend_from_slice(extra);
    loadgen(dir, &args).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The JUnit file as junitparser reads it: every case with its suite and result.
pub(crate) fn junit_cases(path: &Path) -> Vec<Value> {
    let script = r#"
import json, sys
from junitparser import JUnitXml
cases = []
for suite in JUnitXml.fromfile(sys.argv[1]):
    for case in suite:
        cases.append({"suite": suite.name, "name": case.name,
                      "results": [[type(r).__name__, r.message] for r in case.result]})
print(json.dumps(cases))
"#;
    // Debian's interpreter, which has Debian's python3-junitparser (scripts/test.sh installs it).
    let output = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("/usr/bin/python3 runs (scripts/test.sh installs python3-junitparser)");
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every endpoint 60 ms slower than its baseline fails the run (exit 1) though every target is
/// met; the console, the JUnit file and the Markdown summary say which figure passed its
/// threshold. The other way round, faster than the baseline, is no regression (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_slower_than_its_baseline_fails_and_every_ci_file_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let fast = start_in_memory(|_| {}).await;
    let slow = start_in_memory(|c| c.slow = vec!["/api/v1/*:60".parse().unwrap()]).await;

    let first = reads_run(dir.path(), &fast.base_url(), "fast.json", &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));

    let slower = reads_run(
        dir.path(),
        &slow.base_url(),
        "slow.json",
        &[
            "--baseline",
            "fast.json",
            "--junit",
            "junit.xml",
            "--summary-md",
            "summary.md",
        ],
    )
    .await;
    let console = text(&slower.stderr);
    assert_eq!(slower.status.code(), Some(1), "{console}");
    assert!(console.contains("BASELINE COMPARISON"), "{console}");
    assert!(
        console.contains("[REGRESSION] GET /api/v1/tasks p95"),
        "{console}"
    );
    // The exit code comes from the comparison alone: the targets are met.
    let report: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("slow.json")).unwrap()).unwrap();
    assert!(
        report["analysis"]["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["met"] == true),
        "{}",
        report["analysis"]
    );
    assert!(
        !report["baseline"]["regressions"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let cases = junit_cases(&dir.path().join("junit.xml"));
    let in_suite =
        |suite: &str| -> Vec<&Value> { cases.iter().filter(|c| c["suite"] == suite).collect() };
    assert_eq!(in_suite("loadgen.targets").len(), 5, "{cases:?}");
    assert!(
        in_suite("loadgen.targets")
            .iter()
            .all(|c| c["results"].as_array().unwrap().is_empty()),
        "{cases:?}"
    );
    assert_eq!(in_suite("loadgen.endpoints").len(), 2, "{cases:?}");
    let tasks = in_suite("loadgen.baseline")
        .into_iter()
        .find(|c| c["name"] == "GET /api/v1/tasks against the baseline")
        .unwrap_or_else(|| panic!("{cases:?}"));
    let result = &tasks["results"][0];
    assert_eq!(result[0], "Failure", "{tasks}");
    let message = result[1].as_str().unwrap();
    assert!(
        message.contains("p95") && message.contains("allowed: "),
        "{message}"
    );

    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(
        summary.starts_with("## ❌ loadgen: 5 of 5 targets met, "),
        "{summary}"
    );
    assert!(
        summary.contains("### Compared with the baseline"),
        "{summary}"
    );
    assert!(summary.contains("| GET /api/v1/tasks | "), "{summary}");

    // Faster than the baseline: an improvement, never a regression.
    let faster = reads_run(
        dir.path(),
        &fast.base_url(),
        "again.json",
        &["--baseline", "slow.json"],
    )
    .await;
    let console = text(&faster.stderr);
    assert_eq!(faster.status.code(), Some(0), "{console}");
    assert!(
        console.contains("No regression against the baseline"),
        "{console}"
    );
    fast.stop().await;
    slow.stop().await;
}

/// A baseline of another scenario or another report version, and an output path that cannot be
/// written, are refused at once: the host does not even exist (nothing listens on port 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_baselines_and_output_paths_are_refused_before_the_first_request() {
    let dir = tempfile::tempdir().unwrap();
    let testbed = start_in_memory(|_| {}).await;
    let made = reads_run(dir.path(), &testbed.base_url(), "reads.json", &[]).await;
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    testbed.stop().await;

    let fixtures = fixtures().display().to_string();
    let nowhere = "http://127.0.0.1:9";
    // The built-in scenario against a report of reads.toml.
    let other = loadgen(
        dir.path(),
        &[
            "--headless",
            "-H",
            nowhere,
            "--fixtures",
            &fixtures,
            "-t",
            "1s",
            "--baseline",
            "reads.json",
        ],
    )
    .await;
    let error = text(&other.stderr);
    assert_eq!(other.status.code(), Some(2), "{error}");
    assert!(
        error.contains("another scenario")
            && error.contains("user types only in the baseline: Reader"),
        "{error}"
    );

    // Another version of the report.
    let mut older: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("reads.json")).unwrap()).unwrap();
    older["report_version"] = 0.into();
    std::fs::write(dir.path().join("older.json"), older.to_string()).unwrap();
    let reads = scenario("reads.toml");
    let base = ["--headless", "-H", nowhere, "-f", &reads, "-t", "1s"];
    let versioned = loadgen(
        dir.path(),
        &[&base[..], &["--baseline", "older.json"]].concat(),
    )
    .await;
    let error = text(&versioned.stderr);
    assert_eq!(versioned.status.code(), Some(2), "{error}");
    assert!(error.contains("a report of version 0"), "{error}");

    // Not a report at all, and a threshold that means nothing.
    let garbage = loadgen(
        dir.path(),
        &[&base[..], &["--baseline", "Cargo.toml"]].concat(),
    )
    .await;
    assert_eq!(garbage.status.code(), Some(2));
    let bad_threshold = loadgen(
        dir.path(),
        &[
            &base[..],
            &["--baseline", "reads.json", "--regression", "p95=20"],
        ]
        .concat(),
    )
    .await;
    let error = text(&bad_threshold.stderr);
    assert_eq!(bad_threshold.status.code(), Some(2), "{error}");
    assert!(error.contains("p95=+N%"), "{error}");

    // An output folder that cannot be made (a file is in the way), in a run and in a dry run;
    // one that does not exist yet is made, as Locust makes them (not by a dry run).
    for extra in [&[][..], &["--dry-run"][..]] {
        let unwritable = loadgen(
            dir.path(),
            &[&base[..], &["--junit", "reads.json/such/junit.xml"], extra].concat(),
        )
        .await;
        let error = text(&unwritable.stderr);
        assert_eq!(unwritable.status.code(), Some(2), "{error}");
        assert!(
            error.contains("--junit reads.json/such/junit.xml:") && error.contains("reads.json"),
            "{error}"
        );
    }
    let dry = loadgen(
        dir.path(),
        &[&base[..], &["--junit", "new/folder/junit.xml", "--dry-run"]].concat(),
    )
    .await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    assert!(
        !dir.path().join("new").exists(),
        "a dry run makes no folder"
    );
}

/// The example workflows are YAML (read by PyYAML), and every loadgen command in them parses:
/// each is run with --dry-run, its variables set from the file's own `env`/`variables`, with
/// and without the baseline the workflow adds when it has one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loadgen_command_of_the_ci_examples_parses() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ci");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(fixtures(), dir.path().join("fixtures")).unwrap();
    std::fs::create_dir(dir.path().join("results")).unwrap();
    // A baseline of the built-in scenario, from a real run.
    let testbed = start_in_memory(|_| {}).await;
    std::fs::create_dir(dir.path().join("baseline")).unwrap();
    let made = loadgen(
        dir.path(),
        &[
            "--headless",
            "-H",
            &testbed.base_url(),
            "--fixtures",
            "fixtures",
            "-u",
            "2",
            "-t",
            "2s",
            "--only-summary",
            "--report-json",
            "baseline/report.json",
        ],
    )
    .await;
    assert!(
        made.status.code().is_some_and(|c| c < 2),
        "{}",
        text(&made.stderr)
    );
    testbed.stop().await;

    let mut checked = 0;
    for file in ["load-test.yml", "gitlab-ci.yml"] {
        let path = examples.join(file);
        let yaml = yaml_as_json(&path);
        let mut variables = vec![(
            "GITHUB_STEP_SUMMARY".to_owned(),
            dir.path().join("summary.md").display().to_string(),
        )];
        collect_variables(&yaml, &mut variables);
        let mut scripts = Vec::new();
        collect_scripts(&yaml, &mut scripts);
        let baseline_flags = scripts
            .iter()
            .find_map(|s| baseline_flags(s))
            .unwrap_or_else(|| panic!("{file}: no baseline=(...) flags"));
        for script in &scripts {
            for command in loadgen_commands(script) {
                for baseline in [String::new(), baseline_flags.clone()] {
                    let line = command.replace("\"${baseline[@]}\"", &baseline);
                    let line = substitute(&line, &variables)
                        .unwrap_or_else(|v| panic!("{file}: unknown variable {v} in {line}"));
                    let words = shlex::split(&line)
                        .unwrap_or_else(|| panic!("{file}: cannot split {line}"));
                    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
                    let output = loadgen(dir.path(), &[&args[..], &["--dry-run"]].concat()).await;
                    assert_eq!(
                        output.status.code(),
                        Some(0),
                        "{file}: {line}\n{}",
                        text(&output.stderr)
                    );
                    assert!(text(&output.stdout).contains("dry run"));
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(
        checked, 4,
        "one command in each file, with and without its baseline"
    );
}

fn yaml_as_json(path: &PathBuf) -> Value {
    let output = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .expect("/usr/bin/python3 runs (scripts/test.sh installs python3-yaml)");
    assert!(
        output.status.success(),
        "{} is not YAML: {}",
        path.display(),
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The values of every `env:` (GitHub) and `variables:` (GitLab) map.
fn collect_variables(value: &Value, into: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if (key == "env" || key == "variables")
                    && let Value::Object(vars) = inner
                {
                    for (name, v) in vars {
                        if let Some(v) = v.as_str() {
                            into.push((name.clone(), v.to_owned()));
                        }
                    }
                }
                collect_variables(inner, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_variables(v, into)),
        _ => {}
    }
}

/// Every shell script: GitHub's `run:` strings and GitLab's `script:` lines.
fn collect_scripts(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("run", Value::String(script)) => into.push(script.clone()),
                    ("script", Value::Array(lines)) => {
                        into.extend(lines.iter().filter_map(Value::as_str).map(str::to_owned))
                    }
                    _ => collect_scripts(inner, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_scripts(v, into)),
        _ => {}
    }
}

/// The commands of `script` that run loadgen, continuation lines joined.
fn loadgen_commands(script: &str) -> Vec<String> {
    script
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("loadgen "))
        .map(str::to_owned)
        .collect()
}

/// The flags inside `baseline=(...)`, when the script sets them.
fn baseline_flags(script: &str) -> Option<String> {
    let start = script.find("baseline=(--")? + "baseline=(".len();
    let end = start + script[start..].find(')')?;
    Some(script[start..end].to_owned())
}

/// `line` with `$NAME` and `${NAME}` replaced; `Err(name)` for a variable not in `variables`.
fn substitute(line: &str, variables: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').ok_or_else(|| after.to_owned())?;
                (&braced[..end], end + 2)
            }
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        let value = variables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| name.to_owned())?;
        out.push_str(value);
        rest = &after[len..];
    }
    out.push_str(rest);
    Ok(out)
}

#[test]
fn substitutes_known_variables_and_names_unknown_ones() {
    let vars = vec![
        ("A".to_owned(), "1".to_owned()),
        ("B_C".to_owned(), "2".to_owned()),
    ];
    assert_eq!(substitute("x $A ${B_C}/y", &vars).unwrap(), "x 1 2/y");
    assert_eq!(substitute("$NOPE", &vars).unwrap_err(), "NOPE");
}
