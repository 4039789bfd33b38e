//! How a run ends on signals, for the drivers that write report files (headless, web UI):
//! the first SIGINT, SIGTERM or SIGHUP stops the users, who may finish their requests under
//! `--stop-timeout`; the second exits at once, after writing the reports from the figures in
//! hand. When the stop may take a while, the first also writes them from what is in hand, at
//! once: `docker stop` sends one SIGTERM and a SIGKILL 10 s later, and the files must be whole
//! by then (issue 22). The final reports replace those when the run has ended.

use std::sync::Arc;
use std::time::Duration;

use common::signals::{Signal, Signals};

use crate::config::RunConfig;
use crate::engine::RunHandle;
use crate::report::Report;
use crate::report::files::{self, Written};

/// How long a second signal waits for the figures in hand: the runner answers between two of
/// its events, at once unless the process is stuck, and then exiting without them is better
/// than not exiting.
const IN_HAND_WITHIN: Duration = Duration::from_secs(3);

/// The report files of one run: written from the figures in hand when the run is cut short,
/// and never again once its final ones are written.
#[derive(Clone)]
pub(crate) struct RunReports {
    config: Arc<RunConfig>,
    handle: RunHandle,
    /// Held while writing; true once the final reports are written.
    final_written: Arc<tokio::sync::Mutex<bool>>,
}

impl RunReports {
    pub(crate) fn new(config: &RunConfig, handle: RunHandle) -> Self {
        Self {
            config: Arc::new(config.clone()),
            handle,
            final_written: Arc::new(tokio::sync::Mutex::new(false)),
        }
    }

    /// Writes the reports of the ended run, over any written from the figures in hand.
    pub(crate) async fn write_final(&self, report: &Report) -> Written {
        let mut final_written = self.final_written.lock().await;
        let written = files::write_all(report, &self.config.outputs);
        *final_written = true;
        written
    }

    /// Writes the reports from the figures in hand, unless the final ones are written (then
    /// `None`) or the figures did not come within [`IN_HAND_WITHIN`] (then an error line).
    async fn write_in_hand(&self) -> Option<Written> {
        let final_written = self.final_written.lock().await;
        if *final_written {
            return None;
        }
        let Ok(outcome) = tokio::time::timeout(IN_HAND_WITHIN, self.handle.outcome_so_far()).await
        else {
            return Some(Written {
                errors: vec![format!(
                    "the reports: the figures in hand did not come within {} s",
                    IN_HAND_WITHIN.as_secs()
                )],
                ..Written::default()
            });
        };
        let report = Report::of_run(&self.config, &outcome);
        Some(files::write_all(&report, &self.config.outputs))
    }

    fn asks_for_files(&self) -> bool {
        let outputs = &self.config.outputs;
        outputs.csv.is_some()
            || outputs.json.is_some()
            || outputs.locust_json_file.is_some()
            || outputs.html.is_some()
            || outputs.junit.is_some()
            || outputs.summary_md.is_some()
    }
}

/// Prints what [`RunReports`] wrote from the figures in hand.
fn say_written(written: &Written, when: &str) {
    if !written.paths.is_empty() {
        eprintln!(
            "loadgen: wrote {} from the figures in hand {when}",
            written.list()
        );
    }
    for error in &written.errors {
        eprintln!("loadgen: error: could not write {error}");
    }
}

/// Stops the run of `reports` on the first signal and exits on the second, as the module says;
/// `stop_may_wait` when the users (or workers) may take a while to finish.
pub(crate) fn spawn_handler(mut signals: Signals, reports: RunReports, stop_may_wait: bool) {
    tokio::spawn(async move {
        let first = signals.next().await;
        eprintln!(
            "\nloadgen: {}: stopping users, then writing the reports ({} again to exit at once)",
            first.name(),
            first.name()
        );
        after_first(signals, first, Some(reports), stop_may_wait).await;
    });
}

/// What follows a `first` signal that a driver received: the run stopped, its reports written
/// from the figures in hand when the stop may wait, then an exit at once on the next signal.
pub(crate) async fn after_first(
    mut signals: Signals,
    first: Signal,
    reports: Option<RunReports>,
    stop_may_wait: bool,
) {
    if let Some(reports) = &reports {
        reports.handle.stop_by(first.name());
        if stop_may_wait && reports.asks_for_files() {
            tokio::select! {
                written = reports.write_in_hand() => {
                    if let Some(written) = written {
                        say_written(&written, "(the final reports replace them once the users have finished)");
                    }
                }
                second = signals.next() => exit_now(signals, second, Some(reports)).await,
            }
        }
    }
    let second = signals.next().await;
    exit_now(signals, second, reports.as_ref()).await;
}

/// Exits at once on the next signal, with the reports of `reports` written from the figures in
/// hand (for a driver whose run is over or stopping).
pub(crate) async fn exit_on_next(mut signals: Signals, reports: Option<RunReports>) {
    let signal = signals.next().await;
    exit_now(signals, signal, reports.as_ref()).await;
}

/// Writes the reports from the figures in hand, unless a third signal comes first, then exits
/// with the shell's code for `signal`.
async fn exit_now(mut signals: Signals, signal: Signal, reports: Option<&RunReports>) -> ! {
    match reports.filter(|r| r.asks_for_files()) {
        Some(reports) => {
            eprintln!(
                "\nloadgen: {} again: writing the reports from the figures in hand, then exiting",
                signal.name()
            );
            tokio::select! {
                written = reports.write_in_hand() => {
                    if let Some(written) = written {
                        say_written(&written, "before exiting");
                    }
                }
                third = signals.next() => {
                    eprintln!("loadgen: {}: exiting without the reports", third.name());
                }
            }
        }
        None => eprintln!("\nloadgen: {} again: exiting at once", signal.name()),
    }
    monitor::tunnel::close_all().await;
    std::process::exit(signal.exit_code());
}
