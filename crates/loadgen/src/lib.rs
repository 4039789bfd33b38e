//! `loadgen`: drives virtual users against the FFmpeg API, measures every request in
//! microsecond HdrHistograms, reports as Locust does (tables and CSV files), judges the run
//! against targets, and explains what it found.
//!
//! The layers: [`cli`] (what the user typed) → [`RunPlan`] (resolved and checked) →
//! [`runner::Runner`] (threads of users recording into [`stats`] shards) →
//! [`report::Report`] (a snapshot) → console, CSV, JSON, HTML.

pub mod backend;
pub mod cli;
pub mod demo;
pub mod http;
pub mod preflight;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod stats;
pub mod user;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use cli::{Cli, Command, ScenarioAction};
use report::Report;
use report::analysis::{self, Targets};
use runner::{Progress, RunSettings, Runner};
use scenario::Scenario;

/// Exit code when every target is met.
pub const EXIT_OK: u8 = 0;
/// Exit code when a target is missed.
pub const EXIT_TARGET_MISSED: u8 = 1;
/// Exit code for an error in the tool or its input.
pub const EXIT_ERROR: u8 = 2;

/// Everything a run needs, resolved from flags, environment and profile, and checked.
#[derive(Debug)]
pub struct RunPlan {
    /// The host.
    pub host: String,
    /// The scenario.
    pub scenario: Scenario,
    /// Runner settings.
    pub settings: RunSettings,
    /// Targets.
    pub targets: Targets,
    /// Fixture names the scenario uploads, and their folder.
    pub fixtures: (PathBuf, Vec<String>),
}

fn env_host() -> Option<String> {
    ["LOCUST_HOST", "LOCUST_BASE_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

/// Reads the scenario (file or built-in), applies `--user-classes` and `--tags`.
pub fn load_scenario(cli: &Cli) -> anyhow::Result<(Scenario, Vec<String>)> {
    let (text, name) = match &cli.scenario {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read scenario file {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            scenario::BUILTIN.to_owned(),
            scenario::BUILTIN_NAME.to_owned(),
        ),
    };
    let fixtures = scenario::fixtures_needed(&text);
    preflight::check_fixtures(&cli.fixtures, &fixtures).map_err(anyhow::Error::msg)?;
    let mut scenario = scenario::parse(&text, &name, &cli.fixtures)?;
    if !cli.user_classes.is_empty() {
        for wanted in &cli.user_classes {
            if !scenario.users.iter().any(|u| &u.name == wanted) {
                let known: Vec<&str> = scenario.users.iter().map(|u| u.name.as_str()).collect();
                bail!(
                    "--user-classes {wanted}: no such user type (the scenario has {})",
                    known.join(", ")
                );
            }
        }
        scenario
            .users
            .retain(|u| cli.user_classes.contains(&u.name));
    }
    if !cli.tags.is_empty() {
        for user in &mut scenario.users {
            let user_tagged = user.tags.iter().any(|t| cli.tags.contains(t));
            if !user_tagged {
                user.tasks
                    .retain(|t| t.tags.iter().any(|tag| cli.tags.contains(tag)));
            }
        }
        scenario.users.retain(|u| !u.tasks.is_empty());
        if scenario.users.is_empty() {
            bail!(
                "--tags {}: no task or user type has these tags",
                cli.tags.join(",")
            );
        }
    }
    Ok((scenario, fixtures))
}

/// Resolves what the user typed into a plan (flags > environment > profile > defaults).
pub fn plan(cli: &Cli) -> anyhow::Result<RunPlan> {
    let profile = cli.profile.map(cli::Profile::settings);
    let host = cli.host.clone().or_else(env_host).context(
        "no host to load: pass -H/--host http://HOST:PORT (or set LOADGEN_HOST or LOCUST_HOST)",
    )?;
    let users = cli.users.or(profile.map(|p| p.0)).unwrap_or(1);
    let spawn_rate = cli.spawn_rate.or(profile.map(|p| p.1)).unwrap_or(1.0);
    if !(spawn_rate.is_finite() && spawn_rate > 0.0) {
        bail!("--spawn-rate {spawn_rate}: must be a positive number of users per second");
    }
    if users == 0 {
        bail!("--users 0: run at least one user");
    }
    let run_time = cli.run_time.or(profile.map(|p| p.2));
    let (scenario, fixture_names) = load_scenario(cli)?;
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    Ok(RunPlan {
        host,
        scenario,
        settings: RunSettings {
            users,
            spawn_rate,
            run_time,
            threads,
            timeout: cli.timeout,
            job_sample: cli.job_sample,
            memory_limit: cli.memory_limit.map(|mb| mb * 1_000_000),
        },
        targets: Targets::with(&cli.targets),
        fixtures: (cli.fixtures.clone(), fixture_names),
    })
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    match run_inner(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("loadgen: error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run_inner(cli: Cli) -> anyhow::Result<u8> {
    if let Some(Command::Scenario { action }) = &cli.command {
        return match action {
            ScenarioAction::Show => {
                print!("{}", scenario::BUILTIN);
                Ok(EXIT_OK)
            }
            ScenarioAction::Check { file } => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                let scenario = scenario::parse(&text, &file.display().to_string(), &cli.fixtures)?;
                let names: Vec<String> = scenario
                    .users
                    .iter()
                    .map(|u| {
                        format!(
                            "{} ({} tasks, {} steps)",
                            u.name,
                            u.tasks.len(),
                            u.steps.len()
                        )
                    })
                    .collect();
                println!("{}: ok: {}", file.display(), names.join(", "));
                Ok(EXIT_OK)
            }
        };
    }
    if let Some(Command::Demo(args)) = cli.command {
        return demo::run(args).await;
    }
    run_plan(cli).await
}

/// Runs the load test the flags describe; returns the exit code.
pub async fn run_plan(cli: Cli) -> anyhow::Result<u8> {
    let plan = plan(&cli)?;
    let target = http::Target::resolve(&plan.host).await?;
    if let Some(path) = &plan.scenario.health {
        preflight::check_health(&target, path)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    preflight::raise_open_files(plan.settings.users).map_err(anyhow::Error::msg)?;

    let backend = backend::BackendSource::from_cli(&cli).map(backend::BackendWatch::start);
    let runner = Runner::new(plan.settings.clone(), plan.scenario, target);
    let handle = runner.handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nloadgen: stopping users (Ctrl-C again to exit at once)");
            handle.stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let live = LiveView::new(
        cli.only_summary,
        cli.stats_interval,
        plan.settings.run_time,
        plan.settings.users,
    );
    let mut live = live;
    let outcome = runner.run(|progress| live.show(progress)).await;
    live.finish();
    // A backend that could not be watched costs its findings, never the run's results.
    let ticks = match backend {
        Some(watch) => watch.finish().await.unwrap_or_else(|e| {
            eprintln!("loadgen: warning: no backend samples: {e}");
            Vec::new()
        }),
        None => Vec::new(),
    };

    let mut analysis = analysis::analyse(&outcome, &ticks, plan.targets);
    if cli.monitor_docker.is_some() {
        quote_worker_logs(&mut analysis, &ticks).await;
    }
    let report = Report::new(&plan.host, &outcome, &ticks, analysis);
    print!("{}", report::console::summary(&report));
    let mut write_errors = Vec::new();
    if let Some(prefix) = &cli.csv {
        match report::csv::write(&report, prefix) {
            Ok(paths) => eprintln!(
                "loadgen: wrote {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => write_errors.push(format!("CSV files {prefix}_*.csv: {e}")),
        }
    }
    if let Some(path) = &cli.json {
        match report.write_json(path) {
            Ok(()) => eprintln!("loadgen: wrote {}", path.display()),
            Err(e) => write_errors.push(format!("JSON {}: {e}", path.display())),
        }
    }
    if let Some(path) = &cli.html {
        match std::fs::write(path, report::html::render(&report)) {
            Ok(()) => eprintln!("loadgen: wrote {}", path.display()),
            Err(e) => write_errors.push(format!("HTML {}: {e}", path.display())),
        }
    }
    if !write_errors.is_empty() {
        bail!("could not write {}", write_errors.join("; "));
    }
    Ok(if report.analysis.all_met() {
        EXIT_OK
    } else {
        EXIT_TARGET_MISSED
    })
}

/// Job findings quote the last log lines of the watched worker containers (names containing
/// `worker` or `celery`), as the seed's `docker compose logs worker | tail` would show them.
async fn quote_worker_logs(analysis: &mut analysis::Analysis, ticks: &[monitor::sample::Tick]) {
    let about_jobs = |title: &str| title.contains("jobs") || title.contains("job queue");
    if !analysis.findings.iter().any(|f| about_jobs(&f.title)) {
        return;
    }
    let mut workers: Vec<String> = ticks
        .iter()
        .filter_map(
            |t| match t.sources.get("docker").and_then(|r| r.values.as_ref()) {
                Some(monitor::sample::Values::Docker(d)) => {
                    Some(d.containers.keys().cloned().collect::<Vec<_>>())
                }
                _ => None,
            },
        )
        .flatten()
        .filter(|name| name.contains("worker") || name.contains("celery"))
        .collect();
    workers.sort();
    workers.dedup();
    let mut quoted = String::new();
    for worker in workers {
        if let Ok(lines) = monitor::sources::docker::recent_logs(&worker, 5).await
            && !lines.is_empty()
        {
            quoted.push_str(&format!(
                "; last log lines of {worker}: {}",
                lines.join(" | ")
            ));
        }
    }
    for finding in analysis
        .findings
        .iter_mut()
        .filter(|f| about_jobs(&f.title))
    {
        finding.evidence.push_str(&quoted);
    }
}

/// The live view: a progress line on a terminal, Locust's table every few seconds otherwise.
struct LiveView {
    quiet: bool,
    every: Duration,
    last: Instant,
    run_time: Option<Duration>,
    users: u64,
    terminal: bool,
}

impl LiveView {
    fn new(quiet: bool, every: Duration, run_time: Option<Duration>, users: u64) -> Self {
        Self {
            quiet,
            every,
            last: Instant::now(),
            run_time,
            users,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, progress: &Progress) {
        if self.quiet {
            return;
        }
        let steady = progress.stats.aggregated(stats::Phase::Steady);
        let all = {
            let mut all = steady.clone();
            all.merge(&progress.stats.aggregated(stats::Phase::Startup));
            all
        };
        if self.terminal {
            let left = self
                .run_time
                .map(|t| format!("{}s left", t.saturating_sub(progress.elapsed).as_secs()))
                .unwrap_or_else(|| "Ctrl-C to stop".into());
            eprint!(
                "\r[{:>4}s] users {}/{} | {:.1} req/s | failures {} ({:.2}%) | p95 {:.0} ms | {left}   ",
                progress.elapsed.as_secs(),
                progress.users,
                self.users,
                progress.last_second.count,
                all.failures,
                all.failure_ratio() * 100.0,
                steady.percentile_ms(95.0)
            );
        } else if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            let secs = progress.elapsed.as_secs_f64().max(1e-9);
            let rows: Vec<report::Row> = progress
                .stats
                .endpoints
                .iter()
                .filter(|(k, _)| k.phase == stats::Phase::Steady)
                .map(|(k, e)| report::Row::live(&k.method, &k.name, e, secs))
                .collect();
            let total = report::Row::live("", "Aggregated", &steady, secs);
            println!(
                "[{:.0}s, {} users]",
                progress.elapsed.as_secs_f64(),
                progress.users
            );
            print!("{}", report::console::requests_table(&rows, &total));
            println!();
        }
    }

    fn finish(&self) {
        if !self.quiet && self.terminal {
            eprintln!();
        }
    }
}
