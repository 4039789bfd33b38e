//! The headless driver, used by the command line and the demo: starts the run through the
//! engine, follows it on the console, stops it on Ctrl-C, SIGTERM or SIGHUP, then prints the summary and writes the
//! report files. It holds a [`RunHandle`] and nothing else of the engine.

use anyhow::bail;

use crate::cluster::Master;
use crate::config::{Outputs, RunConfig};
use crate::engine::Run;
use crate::report::{self, Report};
use crate::{EXIT_OK, EXIT_TARGET_MISSED};

/// Runs the load test `config` describes; returns the exit code.
pub async fn drive(config: RunConfig) -> anyhow::Result<u8> {
    drive_on(config, None).await
}

/// Runs the load test `config` describes, on the workers of `master` when given; returns the
/// exit code.
pub async fn drive_on(config: RunConfig, master: Option<&Master>) -> anyhow::Result<u8> {
    config
        .outputs
        .check_writable(true)
        .map_err(anyhow::Error::msg)?;
    // Before the first request: a signal from now on stops the run and keeps its results.
    let signals = common::signals::Signals::install()?;
    let handle = match master {
        Some(master) => Run::start_on(&config, master).await?,
        None => Run::start(&config).await?,
    };
    tracing::info!(
        "Ramping to {} users at a rate of {:.2} per second",
        config.load.users,
        config.load.spawn_rate
    );
    let stopper = handle.clone();
    signals.spawn_handler("loadgen", move |signal| {
        eprintln!(
            "\nloadgen: {}: stopping users, then writing the reports ({} again to exit at once)",
            signal.name(),
            signal.name()
        );
        stopper.stop();
    });
    report::live::follow(&handle, &config.live, config.load.run_time).await;
    let outcome = handle.wait().await;
    if let Some(error) = &outcome.error {
        bail!("{error}");
    }
    if !outcome.interrupted && config.load.run_time.is_some() {
        tracing::info!("--run-time limit reached, shutting down");
    }
    if let Some(error) = &outcome.backend_error {
        eprintln!("loadgen: warning: no backend samples: {error}");
    }
    let report = Report::of_run(&config, &outcome);
    report::print(&report::console::summary(&report));
    write_outputs(&report, &config.outputs)?;
    let had_errors = outcome.stats.endpoints.values().any(|e| e.failures > 0)
        || !outcome.stats.exceptions.is_empty();
    if report.panics > 0 {
        bail!(
            "{} task(s) panicked during the run (a bug in loadgen; the messages are under \
             \"Scenario errors\"); the reports are written, but no verdict is given",
            report.panics
        );
    }
    let code = match (config.exit_code_on_error, had_errors) {
        (Some(code), true) => code,
        _ if report.passed() => EXIT_OK,
        _ => EXIT_TARGET_MISSED,
    };
    tracing::info!("Shutting down (exit code {code})");
    Ok(code)
}

/// Writes every file asked for; one that cannot be written does not stop the others.
pub(crate) fn write_outputs(report: &Report, outputs: &Outputs) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    if let Some(prefix) = &outputs.csv {
        match report::csv::write(report, prefix) {
            Ok(paths) => eprintln!(
                "loadgen: wrote {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => errors.push(format!("CSV files {prefix}_*.csv: {e}")),
        }
    }
    if let Some(path) = &outputs.json {
        match report.write_json(path) {
            Ok(()) => eprintln!("loadgen: wrote {}", path.display()),
            Err(e) => errors.push(format!("JSON {}: {e}", path.display())),
        }
    }
    if let Some(path) = &outputs.html {
        match std::fs::write(path, report::html::render(report)) {
            Ok(()) => eprintln!("loadgen: wrote {}", path.display()),
            Err(e) => errors.push(format!("HTML {}: {e}", path.display())),
        }
    }
    if let Some(path) = &outputs.junit {
        match std::fs::write(path, report::junit::render(report)) {
            Ok(()) => eprintln!("loadgen: wrote {}", path.display()),
            Err(e) => errors.push(format!("JUnit {}: {e}", path.display())),
        }
    }
    if let Some(path) = &outputs.summary_md {
        match std::fs::write(path, report::markdown::render(report)) {
            Ok(()) => eprintln!("loadgen: wrote {}", path.display()),
            Err(e) => errors.push(format!("Markdown summary {}: {e}", path.display())),
        }
    }
    if !errors.is_empty() {
        bail!("could not write {}", errors.join("; "));
    }
    Ok(())
}
