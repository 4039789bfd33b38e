//! Code-level profiles on the Python stack of `testbed-py/`: loadgen with its in-process
//! monitor (profiling on by default) against uvicorn and celery with a bottleneck planted in
//! the code, and the finding names the function, its file and line, and its caller; in the
//! healthy configuration, the API is profiled and nothing is blamed on the code.

use loadgen::report::Analysis;
use monitor::sample::Values;
use test_support::PythonStack;

use crate::diagnosis::{at_least_secs, finish, found, start_at};
use crate::support::{scenario, until};

/// The line of `testbed-py/app/FILE` that holds `text`.
fn line_of(file: &str, text: &str) -> usize {
    let source =
        std::fs::read_to_string(test_support::python_stack::project_dir().join(file)).unwrap();
    source.lines().position(|l| l.contains(text)).unwrap() + 1
}

/// Runs `scenario` with `users` on `stack` until `secs` seconds and `requests` requests, then
/// judges it; prints what was found. Also returns the HTML report.
async fn run(
    stack: &PythonStack,
    scenario_file: &str,
    users: &str,
    secs: u64,
    requests: u64,
) -> (
    std::sync::Arc<loadgen::engine::RunOutcome>,
    Analysis,
    String,
) {
    let args = ["-f", &scenario(scenario_file), "-u", users, "-r", users];
    let (handle, config) = start_at(&stack.base_url(), stack.database_url(), "celery", &args).await;
    let users: u64 = users.parse().unwrap();
    until(&handle, |u| {
        u.users == users && at_least_secs(u, secs) && u.second.cumulative.requests >= requests
    })
    .await;
    let (outcome, analysis) = finish(handle, &config).await;
    for f in &analysis.findings {
        eprintln!("{} [{}] {}: {}", f.rule, f.severity, f.title, f.evidence);
    }
    let html = loadgen::report::html::render(&loadgen::report::Report::of_run(&config, &outcome));
    (outcome, analysis, html)
}

/// The flame graphs embedded in an HTML report, decoded.
fn flame_graphs(html: &str) -> Vec<String> {
    use base64::Engine;
    html.split("src=\"data:image/svg+xml;base64,")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|b64| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            String::from_utf8(bytes).unwrap()
        })
        .collect()
}

/// `profiles.loop_blocked` ranks before each symptom it explains, but for one that a cause of
/// the host's ranked before it took first (on a machine that other work saturates, the host's
/// CPU claims the slow endpoints too).
fn ranked_before_its_symptoms(analysis: &Analysis) {
    let rank = |rule: &str| analysis.findings.iter().position(|f| f.rule == rule);
    let at = rank("profiles.loop_blocked").unwrap();
    for symptom in &analysis.findings[at].cause_of {
        let Some(later) = rank(symptom) else { continue };
        let by_host = analysis.findings[later]
            .explained_by
            .is_some_and(|cause| cause.starts_with("host.") && rank(cause) < Some(at));
        assert!(
            later > at || by_host,
            "profiles.loop_blocked must come before {symptom}: {:#?}",
            analysis.findings
        );
    }
}

/// The API's process was profiled in some tick.
fn api_profiled(outcome: &loadgen::engine::RunOutcome, pid: u32) -> bool {
    outcome.backend.iter().any(|t| {
        t.sources.values().any(|r| match &r.values {
            Some(Values::Profiles(p)) => p.processes.iter().any(|p| p.pid == pid && p.samples > 0),
            _ => false,
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_on_the_event_loop_is_named_with_its_file_line_and_caller() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = PythonStack::start(&[("PLANT_BCRYPT_ON_LOOP", "1")]).await;
    let (outcome, analysis, html) = run(&stack, "py_signups.toml", "4", 12, 20).await;
    assert!(
        api_profiled(&outcome, stack.api_pid()),
        "uvicorn {} never profiled",
        stack.api_pid()
    );
    let finding = found(&analysis, "profiles.loop_blocked");
    let line = line_of("app/auth.py", "bcrypt.hashpw(");
    let named = format!("`hash_password` (app/auth.py:{line}), called by `register` (app/auth.py:");
    assert!(
        finding.evidence.contains(&named),
        "{named} not in: {}",
        finding.evidence
    );
    assert!(
        finding.title.contains("runs `hash_password`"),
        "{}",
        finding.title
    );
    ranked_before_its_symptoms(&analysis);
    // No cause about the stack's code or its layers ranks above it: only the host's CPU may,
    // with its symptoms under it, on a machine busy with other work.
    let at = analysis
        .findings
        .iter()
        .position(|f| f.rule == "profiles.loop_blocked");
    let before: Vec<&str> = analysis.findings[..at.unwrap_or(0)]
        .iter()
        .filter(|f| !f.rule.starts_with("host."))
        .filter(|f| !f.explained_by.is_some_and(|c| c.starts_with("host.")))
        .map(|f| f.rule)
        .collect();
    assert!(before.is_empty(), "ranked before it: {before:?}");
    // The HTML report draws uvicorn's flame graph, with the planted function in it.
    let graphs = flame_graphs(&html);
    let title = format!("uvicorn (pid {}), the whole run", stack.api_pid());
    assert!(
        graphs
            .iter()
            .any(|svg| svg.contains(&title) && svg.contains("hash_password (app/auth.py:")),
        "{} flame graphs, none of uvicorn with hash_password",
        graphs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_sleep_on_the_event_loop_is_named_as_blocked_not_on_cpu() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = PythonStack::start(&[("PLANT_SYNC_SLEEP", "1"), ("BCRYPT_ROUNDS", "10")]).await;
    let (outcome, analysis, _) = run(&stack, "py_files.toml", "5", 12, 30).await;
    assert!(
        api_profiled(&outcome, stack.api_pid()),
        "uvicorn {} never profiled",
        stack.api_pid()
    );
    let finding = found(&analysis, "profiles.loop_blocked");
    let line = line_of("app/files.py", "time.sleep(0.2)");
    let named = format!("blocked, not on CPU, in `wait_for_storage_sync` (app/files.py:{line})");
    assert!(
        finding.evidence.contains(&named),
        "{named} not in: {}",
        finding.evidence
    );
    assert!(
        finding
            .evidence
            .contains("called by `list_files` (app/files.py:"),
        "{}",
        finding.evidence
    );
    ranked_before_its_symptoms(&analysis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthy_stack_is_profiled_and_nothing_is_blamed_on_its_code() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = PythonStack::start(&[("BCRYPT_ROUNDS", "10")]).await;
    let (outcome, analysis, _) = run(&stack, "py_files.toml", "5", 10, 30).await;
    assert!(
        api_profiled(&outcome, stack.api_pid()),
        "uvicorn {} never profiled",
        stack.api_pid()
    );
    let blamed: Vec<_> = analysis
        .findings
        .iter()
        .filter(|f| f.rule.starts_with("profiles."))
        .collect();
    assert!(blamed.is_empty(), "{blamed:#?}");
}
