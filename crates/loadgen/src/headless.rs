//! The headless driver, used by the command line and the demo: starts the run through the
//! engine, follows it on the console, stops it on Ctrl-C, SIGTERM or SIGHUP (see
//! [`crate::shutdown`]), then prints the summary and writes the report files. It holds a
//! [`RunHandle`](crate::engine::RunHandle) and nothing else of the engine.

use anyhow::bail;

use crate::cluster::Master;
use crate::config::RunConfig;
use crate::engine::Run;
use crate::exit_code::EXIT_ERROR;
use crate::report::files::Written;
use crate::report::{self, Report};
use crate::shutdown::{self, RunReports};

/// Runs the load test `config` describes; returns the exit code.
pub async fn drive(config: RunConfig) -> anyhow::Result<u8> {
    drive_on(config, None).await
}

/// Runs the load test `config` describes, on the workers of `master` when given; returns the
/// exit code.
pub async fn drive_on(config: RunConfig, master: Option<&Master>) -> anyhow::Result<u8> {
    config
        .outputs
        .check_writable()
        .map_err(anyhow::Error::msg)?;
    // Before the first request: a signal from now on stops the run and keeps its results.
    let mut signals = common::signals::Signals::install()?;
    let start = async {
        match master {
            Some(master) => Run::start_on(&config, master).await,
            None => Run::start(&config).await,
        }
    };
    // The checks of the host (its health endpoint may take 10 s to fail) end on a signal too.
    let handle = tokio::select! {
        started = start => started?,
        signal = signals.next() => {
            eprintln!(
                "loadgen: {}: stopped while checking the host, before the first request; no report written",
                signal.name()
            );
            return Ok(u8::try_from(signal.exit_code()).unwrap_or(EXIT_ERROR));
        }
    };
    // Locust's messages, under its logger names (crate::logging).
    match config.load.run_time {
        Some(limit) => tracing::info!(
            target: "locust.main",
            "Run time limit set to {} seconds",
            limit.as_secs()
        ),
        None => tracing::info!(
            target: "locust.main",
            "No run time limit set, use CTRL+C to interrupt"
        ),
    }
    match &config.load.arrival {
        Some(arrival) => tracing::info!(
            "Open model: iterations arrive at {}, served by up to {} users ({} started first)",
            crate::report::open_model::describe_rate(arrival),
            arrival.users_cap(),
            arrival.pre_allocated()
        ),
        None => tracing::info!(
            target: "locust.runners",
            "Ramping to {} users at a rate of {:.2} per second",
            config.load.users,
            config.load.spawn_rate
        ),
    }
    if !config.load.shape.is_empty() {
        tracing::info!("{}", crate::shape::describe(&config.load.shape));
    }
    let reports = RunReports::new(&config, handle.clone());
    // Workers get FINISH_GRACE to send their last figures even without --stop-timeout, and
    // users their on_stop.
    let stop_may_wait =
        master.is_some() || !config.load.stop_timeout.is_zero() || config.scenario.has_on_stop();
    shutdown::spawn_handler(signals, reports.clone(), stop_may_wait);
    crate::live::follow(&handle, &config.live, config.load.run_time).await;
    let outcome = handle.wait().await;
    if let Some(error) = &outcome.error {
        bail!("{error}");
    }
    if !outcome.interrupted && config.load.run_time.is_some() {
        tracing::info!(target: "locust.main", "--run-time limit reached, shutting down");
    }
    if let Some(error) = &outcome.backend_error {
        eprintln!("loadgen: warning: no backend samples: {error}");
    }
    let report = Report::of_run(&config, &outcome);
    let written = reports.write_final(&report).await;
    let had_errors = outcome.stats.endpoints.values().any(|e| e.failures > 0)
        || !outcome.stats.exceptions.is_empty();
    if report.panics > 0 {
        report::print_err(&report::console::summary(&report));
        say_written(&written)?;
        bail!(
            "{} task(s) panicked during the run (a bug in loadgen; the messages are under \
             \"Scenario errors\"); the reports are written, but no verdict is given",
            report.panics
        );
    }
    let code = if written.errors.is_empty() {
        crate::exit_code::of_run(
            config.exit_code_mode,
            config.exit_code_on_error,
            had_errors,
            report.passed(),
        )
    } else {
        EXIT_ERROR
    };
    // Locust's order: the exit code, then the final tables.
    tracing::info!(target: "locust.main", "Shutting down (exit code {code})");
    report::print_err(&report::console::summary(&report));
    say_written(&written)?;
    Ok(code)
}

/// Prints the files written; fails naming those that could not be.
pub(crate) fn say_written(written: &Written) -> anyhow::Result<()> {
    if !written.paths.is_empty() {
        report::print_err(&format!("loadgen: wrote {}\n", written.list()));
    }
    if !written.errors.is_empty() {
        bail!("could not write {}", written.errors.join("; "));
    }
    Ok(())
}
