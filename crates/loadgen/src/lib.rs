//! `loadgen`: drives virtual users against the FFmpeg API, measures every request in
//! microsecond HdrHistograms, reports as Locust does (tables and CSV files), judges the run
//! against targets, and explains what it found.
//!
//! One run: [`cli`] (what the user typed) → [`config::RunConfig`] (resolved once, checked) →
//! [`engine::Run::start`] → [`engine::RunHandle`] (steer, snapshot, subscribe, wait; the runner's
//! threads of users record into [`stats`] shards) → [`outcome::RunOutcome`] → [`report::Report`]
//! with its [`report::Analysis`] ([`targets`] and [`diagnosis`]) → console, CSV, JSON, HTML.
//! Drivers (the headless CLI in [`headless`], the demo, the web UI, a worker) hold a handle and
//! nothing else of the engine.
//!
//! # Layers
//!
//! The modules form layers, bottom first. A module uses modules of its own layer or of lower
//! ones, never of a higher one, and no two use each other: `tests/layers.rs` reads the `use`
//! lines and keeps it so (test-only code aside). A type two layers share lives in the lower one;
//! where a public path used to name it higher up, the higher module re-exports it
//! (`engine::RunOutcome`, `cluster::ClusterSummary`, `report::PERCENTILES`,
//! `report::baseline::Thresholds`).
//!
//! | layer | modules | what they hold |
//! |---|---|---|
//! | leaves | [`atomic_file`], [`exit_code`], [`logging`] | files written whole or not at all; the exit codes; how log lines look |
//! | mechanisms | [`http`], [`stats`], [`scenario`], [`import`], [`preflight`], [`arrival`], [`shape`] | the HTTP client, measurement (and how an `HttpError` counts as a failure), scenarios, the importers that write them (from locustfiles, OpenAPI documents and HAR recordings), the checks before the first request, the open model's arrival schedules, load shapes' stages |
//! | values | [`targets`], [`config`], [`outcome`] | what goes into a run ([`config::RunConfig`] with its targets and [`config::baseline`]) and what comes out ([`outcome::RunOutcome`], [`outcome::Update`], [`outcome::EngineError`], the [`outcome::ClusterSummary`]) |
//! | engine | [`backend`], [`user`], `runner`, [`cluster`], [`engine`] | the monitor beside the load, virtual users, the threads that run them, the master that runs them on workers, and [`engine::Run`] over both |
//! | readers | [`diagnosis`], [`report`] | the rules over a finished run, and the reports made of it |
//! | drivers | `shutdown`, [`live`], [`headless`], [`capacity`], [`web`], [`worker`], [`locust_worker`], [`env`], [`cli`] | who starts and steers runs: signals, the live console, the headless CLI, the capacity search, the web UI, a worker, a worker of a Locust master, the load environment it runs against (`loadgen env`), and the flags that choose among them |
//!
//! The crate root above them dispatches the command line ([`run`]).

pub mod arrival;
pub mod atomic_file;
pub mod backend;
pub mod capacity;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod diagnosis;
pub mod engine;
pub mod env;
pub mod exit_code;
pub mod headless;
pub mod http;
pub mod import;
pub mod live;
pub mod locust_worker;
pub mod logging;
pub mod outcome;
pub mod preflight;
pub mod report;
mod runner;
pub mod scenario;
pub mod shape;
mod shutdown;
pub mod stats;
pub mod targets;
pub mod user;
pub mod web;
pub mod worker;

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use std::time::Duration;

use cli::cluster::Role;
use cli::{Cli, Command, ScenarioAction};
use cluster::Master;

pub use exit_code::{EXIT_ERROR, EXIT_OK, EXIT_TARGET_MISSED};

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let outcome = run_inner(cli).await;
    // `--stack`'s helper containers go with the run, whoever still holds them.
    monitor::tunnel::close_all().await;
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("loadgen: error: {error:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

async fn run_inner(cli: Cli) -> anyhow::Result<u8> {
    cli.capacity.check_unused()?;
    if cli.command.is_none() {
        for warning in cli.locust_warnings() {
            eprintln!("loadgen: warning: {warning}");
        }
        if let Some(text) = cli.inspection()? {
            print_or_quiet(&text)?;
            return Ok(EXIT_OK);
        }
        if let Some(label) = &cli.profile {
            tracing::info!("profile: {label}");
        }
        if !cli.dry_run && !cli.capacity.asked {
            // Locust's first line, naming the tool that runs.
            tracing::info!(
                target: "locust.main",
                "Starting loadgen {}",
                env!("CARGO_PKG_VERSION")
            );
        }
    }
    match &cli.command {
        Some(Command::Scenario { action }) => scenario_command(action),
        Some(Command::Import { what }) => cli::import::run(what).await,
        Some(Command::Demo { args }) => demo(args),
        Some(Command::Env { action }) => env::run(action).await,
        Some(Command::Capacity { args }) => {
            // Reached when a caller parsed the command line itself: parse the search's flags.
            let line = std::iter::once("loadgen".into())
                .chain(std::iter::once("capacity".into()))
                .chain(args.iter().cloned());
            let cli = cli::config_file::parse(line).map_err(|e| anyhow::anyhow!("{e}"))?;
            capacity_search(&cli).await
        }
        None if cli.capacity.asked => capacity_search(&cli).await,
        None if cli.dry_run => dry_run(&cli).await,
        None => match cli.cluster.role(&cli.fixtures, cli.threads)? {
            Role::Worker(settings) => worker::serve(settings).await,
            Role::LocustWorker(settings) => {
                // The users' host, count and classes come from the master's spawn messages.
                let config = cli.resolve_for_web()?;
                locust_worker::serve(settings, config).await
            }
            Role::Master { settings, expect } if cli.headless => {
                let mut config = cli.resolve()?;
                backend::discover_stack(&mut config, false).await?;
                // Without --expect-workers, the run starts with the first worker; the others
                // get their share as they come.
                let expect = expect.or_else(|| {
                    Some((1, Duration::from_secs(cli.cluster.expect_workers_max_wait)))
                });
                let master = start_master(settings, expect).await?;
                let code = headless::drive_on(config, Some(&master)).await;
                master.quit().await;
                code
            }
            Role::Master { settings, expect } => {
                let web = cli.web_settings()?;
                let mut config = cli.resolve_for_web()?;
                backend::discover_stack(&mut config, false).await?;
                let master = start_master(settings, expect).await?;
                web::serve_on(config, web, Some(master)).await
            }
            Role::Single if cli.headless => {
                let mut config = cli.resolve()?;
                backend::discover_stack(&mut config, false).await?;
                headless::drive(config).await
            }
            Role::Single => {
                // The web flags first: `-t` without --headless is the likelier mistake.
                let settings = cli.web_settings()?;
                let mut config = cli.resolve_for_web()?;
                backend::discover_stack(&mut config, false).await?;
                web::serve(config, settings).await
            }
        },
    }
}

/// `loadgen capacity`: on this machine, or on the workers of a `--master`.
async fn capacity_search(cli: &Cli) -> anyhow::Result<u8> {
    let (mut config, plan) = cli.resolve_for_capacity()?;
    backend::discover_stack(&mut config, false).await?;
    match cli.cluster.role(&cli.fixtures, cli.threads)? {
        Role::Master { settings, expect } => {
            let expect = expect
                .or_else(|| Some((1, Duration::from_secs(cli.cluster.expect_workers_max_wait))));
            let master = start_master(settings, expect).await?;
            let code = capacity::drive_on(config, plan, Some(&master)).await;
            master.quit().await;
            code
        }
        _ => capacity::drive(config, plan).await,
    }
}

/// Listens for workers, and waits for `expect` of them (count, at most how long) if given.
async fn start_master(
    settings: cluster::MasterSettings,
    expect: Option<(usize, Duration)>,
) -> anyhow::Result<Master> {
    let master = Master::bind(settings.clone())
        .await
        .with_context(|| format!("--master: cannot listen on {}", settings.listen))?;
    eprintln!(
        "loadgen: master: listening for workers on {}://{}/",
        settings.scheme(),
        master.local_addr()
    );
    if let Some((count, max_wait)) = expect {
        master
            .wait_for_workers(count, max_wait)
            .await
            .map_err(anyhow::Error::msg)?;
    }
    Ok(master)
}

/// `--dry-run`: everything a run checks before its first request, then what it would do; with
/// `--stack`, what discovery finds and how it would be watched, only.
async fn dry_run(cli: &Cli) -> anyhow::Result<u8> {
    let role = cli.cluster.role(&cli.fixtures, cli.threads)?;
    if let Role::Worker(settings) = &role {
        // A worker's run comes from its master: only its own flags are checked.
        print_or_quiet(&format!(
            "loadgen: dry run: a worker of the master at {} (as {})\n",
            settings.master_url, settings.name
        ))?;
        return Ok(EXIT_OK);
    }
    if let Role::LocustWorker(settings) = &role {
        let config = cli.resolve_for_web()?;
        let identity = config.scenario.identity();
        print_or_quiet(&format!(
            "loadgen: dry run: a worker of the Locust master at {} (as {}), running user types {}\n",
            settings.endpoint(),
            settings.node_id,
            identity.user_types.join(", ")
        ))?;
        return Ok(EXIT_OK);
    }
    let mut config = if cli.headless {
        cli.resolve()?
    } else {
        cli.web_settings()?;
        cli.resolve_for_web()?
    };
    if config.stack.spec.is_some() {
        backend::discover_stack(&mut config, true).await?;
        if let Some(discovery) = &config.stack.discovered {
            print_or_quiet(&discovery.report("loadgen: "))?;
        }
        return Ok(EXIT_OK);
    }
    config
        .outputs
        .check_writable_dry()
        .map_err(anyhow::Error::msg)?;
    let load = &config.load;
    let mut plan = format!(
        "loadgen: dry run: {} users at {}/s {} against {}, {}\n",
        load.users,
        load.spawn_rate,
        load.run_time.map_or_else(
            || "until stopped".to_owned(),
            |t| format!("for {}", humantime::format_duration(t))
        ),
        if config.host.is_empty() {
            "the host the web form gives".to_owned()
        } else {
            common::redact::reference(&config.host)
        },
        if cli.headless {
            "headless"
        } else {
            "from the web UI"
        },
    );
    if !load.shape.is_empty() {
        plan.push_str(&format!("  {}\n", shape::describe(&load.shape)));
    }
    let identity = config.scenario.identity();
    plan.push_str(&format!(
        "  scenario: user types {}; {} requests\n",
        identity.user_types.join(", "),
        identity.requests.len()
    ));
    if let Some(check) = &config.baseline {
        plan.push_str(&format!(
            "  baseline: {} (allowed: {})\n",
            cli.baseline
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            check.thresholds
        ));
    }
    match role {
        Role::Master { settings, expect } => plan.push_str(&format!(
            "  master: listens for workers on {}://{}/{}{}\n",
            settings.scheme(),
            settings.listen,
            expect.map_or_else(String::new, |(n, _)| format!(", waits for {n}")),
            if settings.token.is_some() {
                ", token required"
            } else {
                ""
            }
        )),
        Role::Worker(_) | Role::LocustWorker(_) | Role::Single => {}
    }
    print_or_quiet(&plan)?;
    Ok(EXIT_OK)
}

fn scenario_command(action: &ScenarioAction) -> anyhow::Result<u8> {
    match action {
        ScenarioAction::Show => {
            print_or_quiet(scenario::BUILTIN)?;
            Ok(EXIT_OK)
        }
        ScenarioAction::Check {
            file,
            fixtures,
            user_data,
        } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let scenario = scenario::parse(&text, &file.display().to_string(), fixtures)?;
            if let Some(path) = user_data {
                scenario::data::UserData::read(path)
                    .and_then(|data| data.check(&scenario))
                    .map_err(anyhow::Error::msg)?;
            }
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
            print_or_quiet(&format!("{}: ok: {}\n", file.display(), names.join(", ")))?;
            Ok(EXIT_OK)
        }
    }
}

/// Writes to stdout; a reader that went away (`loadgen scenario show | head`) is not an error.
fn print_or_quiet(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// `loadgen demo ...`: runs `loadgen-demo`, which is built and installed beside loadgen, so that
/// the load generator itself links none of the testbed's server stack.
fn demo(args: &[std::ffi::OsString]) -> anyhow::Result<u8> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("loadgen-demo")))
        .filter(|path| path.is_file());
    let program = beside.unwrap_or_else(|| "loadgen-demo".into());
    let status = std::process::Command::new(&program)
        .args(args)
        .status()
        .with_context(|| {
            format!(
                "cannot run {}: build it with `cargo build --release -p loadgen-demo` (or run scripts/demo.sh)",
                program.display()
            )
        })?;
    Ok(status
        .code()
        .map_or(EXIT_ERROR, |c| u8::try_from(c).unwrap_or(EXIT_ERROR)))
}
