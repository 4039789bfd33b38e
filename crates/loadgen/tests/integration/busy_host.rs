//! The planted causes on a busy host, as on a shared CI runner: `stress-ng` works beside each
//! run, outside the stack's process tree. The top finding names the planted cause, the run's
//! validity names stress-ng, and the host's CPU is never ranked among the API's causes unless
//! the stack's own processes use it (then it is the cause, named with the stack's process).
//! Runs stop on events, as in `diagnosis.rs`, whose helpers they share.

use std::path::Path;
use std::time::Duration;

use loadgen::diagnosis::{Finding, Layer};
use loadgen::report::Analysis;
use loadgen::stats::Phase;
use test_support::{BusyHost, fresh_database, redis_url};
use tokio::io::AsyncBufReadExt;

use crate::diagnosis::{
    at_least_secs, finish, phase_count, planted, start, start_at, until_figures, until_then_for,
};
use crate::support::{scenario, until};

/// The CPU test's stack (a testbed process of its own) is a member of the stack of every run on
/// this host: the other tests here wait for it (they hold this for reading, it for writing).
static OWN_STACK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The top finding, which must be `rule`.
fn top_is<'a>(analysis: &'a Analysis, rule: &str) -> &'a Finding {
    let top = analysis
        .findings
        .first()
        .unwrap_or_else(|| panic!("no finding at all"));
    // What the bar reads (`-- --nocapture`): the top finding and the validity, per run.
    eprintln!(
        "top: {} | {} | {}\nvalidity: {:?}",
        top.rule,
        top.title,
        top.evidence,
        analysis
            .validity
            .iter()
            .map(|v| &v.title)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        top.rule, rule,
        "the planted cause must come first: {:#?}\nvalidity: {:#?}",
        analysis.findings, analysis.validity
    );
    top
}

/// The validity section names the work beside the run, and no cause is about the host unless
/// `host_may_be_cause`.
fn validity_names_the_busy_host(analysis: &Analysis) {
    let outside = analysis
        .validity
        .iter()
        .find(|f| f.rule == "host.outside_cpu")
        .unwrap_or_else(|| {
            panic!(
                "stress-ng beside the run must be in the validity section: {:#?}",
                analysis.validity
            )
        });
    assert!(
        outside.evidence.contains(BusyHost::NAME),
        "{}",
        outside.evidence
    );
}

/// Each tick's PostgreSQL figures, one line each: the pool rule's evidence, for a failure.
fn postgres_series(outcome: &loadgen::engine::RunOutcome) -> String {
    outcome
        .backend
        .iter()
        .map(|tick| {
            let pg = tick.sources.get("postgres");
            match pg.and_then(|r| r.values.as_ref()) {
                Some(monitor::sample::Values::Postgres(p)) => format!(
                    "{}: connections {} active {} waiting {:?} blocked {} clients {:?}",
                    tick.tick,
                    p.connections,
                    p.active,
                    p.waiting,
                    p.blocked,
                    p.clients
                        .iter()
                        .map(|c| (c.database.as_str(), c.connections, c.active))
                        .collect::<Vec<_>>()
                ),
                _ => format!(
                    "{}: down {:?}",
                    tick.tick,
                    pg.and_then(|r| r.error.as_ref())
                ),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn no_host_cause(analysis: &Analysis) {
    let host: Vec<&Finding> = analysis
        .findings
        .iter()
        .filter(|f| f.layer == Layer::Host)
        .collect();
    assert!(
        host.is_empty(),
        "the host's CPU, used outside the stack, is no cause: {host:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_two_shared_with_the_workers_is_the_top_finding_on_a_busy_host() {
    let _shared = OWN_STACK.read().await;
    // stress-ng on both cores: never beside another core-bound test.
    let _core = crate::support::HEAVY.lock().await;
    let _busy = BusyHost::hold();
    let (testbed, database, queue) = planted(|c| {
        c.db_pool = 2;
        // Each task list holds a connection for 1 s; the workers take the same pool. 20 users
        // of the built-in scenario list tasks faster than 2 connections serve them.
        c.slow = vec!["/api/v1/tasks:1000".parse().unwrap()];
    })
    .await;
    let args = ["-u", "20", "-r", "10"];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    until(&handle, |u| {
        u.users == 20 && at_least_secs(u, 15) && u.second.cumulative.requests >= 100
    })
    .await;
    let (outcome, analysis) = finish(handle, &config).await;
    if analysis.findings.first().map(|f| f.rule) != Some("postgres.pool_exhausted") {
        eprintln!("PostgreSQL, tick by tick:\n{}", postgres_series(&outcome));
    }
    let pool = top_is(&analysis, "postgres.pool_exhausted");
    assert!(
        pool.evidence.contains("stayed at 2 in"),
        "{}",
        pool.evidence
    );
    assert!(pool.explains.is_some(), "{pool:?}");
    validity_names_the_busy_host(&analysis);
    no_host_cause(&analysis);
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_on_the_event_loop_is_the_top_finding_on_a_busy_host() {
    let _shared = OWN_STACK.read().await;
    // stress-ng on both cores: never beside another core-bound test.
    let _core = crate::support::HEAVY.lock().await;
    let _busy = BusyHost::hold();
    let (testbed, database, queue) = planted(|c| {
        c.hash_cost = 13;
        c.hash_on_event_loop = true;
    })
    .await;
    let args = ["-f", &scenario("reads.toml"), "-u", "8", "-r", "1"];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    until_figures(&handle, "every user registered and logged in", |s| {
        phase_count(s, Phase::Startup) >= 16
    })
    .await;
    let steady_then = phase_count(&handle.snapshot().await, Phase::Steady);
    until_figures(&handle, "steady requests after the start-up", |s| {
        phase_count(s, Phase::Steady) >= steady_then + 40
    })
    .await;
    let (_, analysis) = finish(handle, &config).await;
    let costly = top_is(&analysis, "load.costly_startup");
    assert_eq!(costly.title, "Start-up work blocks the API for everyone");
    assert!(
        costly.evidence.contains("waited behind the start-up work")
            && costly.evidence.contains("of the steady requests' slowdown"),
        "{}",
        costly.evidence
    );
    validity_names_the_busy_host(&analysis);
    no_host_cause(&analysis);
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_jobs_are_the_top_finding_on_a_busy_host() {
    let _shared = OWN_STACK.read().await;
    // stress-ng on both cores: never beside another core-bound test.
    let _core = crate::support::HEAVY.lock().await;
    let _busy = BusyHost::hold();
    let (testbed, database, queue) = planted(|c| {
        c.job_modes_by_type = vec!["audio_overlay=stuck".parse().unwrap()];
    })
    .await;
    let (_, analysis) = crate::diagnosis::stuck_overlays(&testbed, &database, &queue, &[], 8).await;
    let stuck = top_is(&analysis, "jobs.unfinished");
    assert_eq!(
        stuck.title,
        "The workers fail on audio_overlay jobs without marking them failed"
    );
    validity_names_the_busy_host(&analysis);
    no_host_cause(&analysis);
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_the_top_finding_and_its_plateau_no_capacity() {
    let _shared = OWN_STACK.read().await;
    // stress-ng on both cores: never beside another core-bound test.
    let _core = crate::support::HEAVY.lock().await;
    let _busy = BusyHost::hold();
    let (testbed, database, queue) = planted(|c| c.rate_limit_per_minute = 60).await;
    // 10 users ramped over 10 s: throughput stops following them at the limit.
    let args = ["-u", "10", "-r", "1"];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    until(&handle, |u| u.users == 10 && at_least_secs(u, 16)).await;
    let (_, analysis) = finish(handle, &config).await;
    let limited = top_is(&analysis, "load.rate_limited");
    assert!(
        limited.evidence.contains("answered 429 Too Many Requests")
            && limited.evidence.contains("of the failed requests"),
        "{}",
        limited.evidence
    );
    if let Some(plateau) = analysis.findings.iter().find(|f| f.rule == "load.plateau") {
        assert!(
            !plateau.evidence.contains("capacity reached"),
            "a plateau under a rate limit is no capacity: {}",
            plateau.evidence
        );
    }
    validity_names_the_busy_host(&analysis);
    no_host_cause(&analysis);
    testbed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_run_on_a_busy_host_has_no_cause_and_a_validity_warning() {
    let _shared = OWN_STACK.read().await;
    // stress-ng on both cores: never beside another core-bound test.
    let _core = crate::support::HEAVY.lock().await;
    let _busy = BusyHost::hold();
    let (testbed, database, queue) = planted(|_| {}).await;
    let args = [
        "-f",
        &scenario("reads.toml"),
        "-u",
        "3",
        "-r",
        "3",
        "--target",
        "p95=10s",
        "--target",
        "p99=20s",
        "--target",
        "avg=5s",
    ];
    let (handle, config) = start(&testbed, &database, &queue, &args).await;
    until(&handle, |u| {
        u.users == 3 && at_least_secs(u, 8) && u.second.cumulative.requests >= 30
    })
    .await;
    let (_, analysis) = finish(handle, &config).await;
    validity_names_the_busy_host(&analysis);
    let causes: Vec<&Finding> = analysis
        .findings
        .iter()
        .filter(|f| f.rule != "load.nothing_found")
        .collect();
    assert!(
        causes.is_empty(),
        "a healthy stack has no cause: {causes:#?}"
    );
    testbed.stop().await;
}

/// The testbed as a process of its own (as the API runs beside loadgen, not inside it), its
/// jobs burning a core each in ffmpeg children: the stack's own processes saturate the host.
pub(crate) struct TestbedProcess {
    child: tokio::process::Child,
    pub(crate) base_url: String,
}

impl TestbedProcess {
    async fn start(env: &[(&str, String)]) -> Self {
        Self::start_with(&["--hash-cost", "4"], env).await
    }

    /// The testbed with `args` (after `--listen 127.0.0.1:0`) and `env`.
    pub(crate) async fn start_with(args: &[&str], env: &[(&str, String)]) -> Self {
        // Built beside loadgen by `cargo test --workspace`.
        let binary = Path::new(env!("CARGO_BIN_EXE_loadgen")).with_file_name("testbed");
        assert!(
            binary.exists(),
            "{} is missing: run the tests with `cargo test --workspace` (scripts/test.sh), which builds it",
            binary.display()
        );
        let mut child = tokio::process::Command::new(binary)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the testbed starts within 60 s")
            .unwrap()
            .unwrap_or_default();
        let base_url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in the testbed's startup line {line:?}"))
            .trim_end_matches(['/', ',', ')'])
            .to_owned();
        Self { child, base_url }
    }

    /// SIGINT, as a user stops it: it cancels its jobs, which kill their ffmpeg children.
    pub(crate) async fn stop(mut self) {
        if self.child.id().is_some() {
            crate::support::send("INT", &self.child);
        }
        let stopped = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        if stopped.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_burning_the_cpu_in_children_are_the_stacks_cause_on_a_busy_host() {
    let _alone = OWN_STACK.write().await;
    // stress-ng on both cores: never beside another core-bound test.
    let _core = crate::support::HEAVY.lock().await;
    let _busy = BusyHost::hold();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let database = fresh_database().await;
    let queue = format!("celery-{}", uuid::Uuid::new_v4().simple());
    let testbed = TestbedProcess::start(&[
        ("DATABASE_URL", database.clone()),
        ("REDIS_URL", format!("{}/1", redis_url())),
        ("TESTBED_QUEUE", queue.clone()),
        // Twice the jobs the cores can run: the stack's ffmpeg outnumber stress-ng's workers.
        ("TESTBED_WORKERS", (4 * cores).to_string()),
        ("TESTBED_JOB_SECONDS", "3s".into()),
        ("TESTBED_JOB_BURNS_CPU", "true".into()),
    ])
    .await;
    let args = [
        "-f",
        &scenario("jobs.toml"),
        "-u",
        "4",
        "-r",
        "4",
        "--job-sample",
        "1",
    ];
    let (handle, config) = start_at(&testbed.base_url, &database, &queue, &args).await;
    until_then_for(&handle, |u| u.second.jobs_in_flight >= 2 * cores as u64, 10).await;
    let (_, analysis) = finish(handle, &config).await;
    let host = top_is(&analysis, "host.cpu_saturated");
    assert!(
        host.evidence.contains("testbed (pid"),
        "the worker process is named, its children's CPU under it: {}",
        host.evidence
    );
    crate::diagnosis::explains(&analysis, "host.cpu_saturated");
    testbed.stop().await;
}
