//! The engine: [`Run::start`] takes a resolved [`RunConfig`] and returns a [`RunHandle`], the
//! one thing every driver (the headless CLI, the demo, the web UI, a worker) holds to steer and
//! read a run. The handle changes the user count and rate, stops the run, takes an exactly
//! mergeable [`StatsSnapshot`] at any moment, delivers one [`Update`] a second, and hands over
//! the [`RunOutcome`] at the end.
//!
//! ```no_run
//! # async fn demo(config: loadgen::config::RunConfig) -> Result<(), loadgen::engine::EngineError> {
//! use loadgen::engine::Run;
//!
//! let handle = Run::start(&config).await?;
//! let mut updates = handle.subscribe();
//! while updates.changed().await.is_ok() {
//!     if let Some(update) = updates.borrow().as_ref() {
//!         println!("{} users, {} req/s", update.users, update.second.interval.count);
//!     }
//!     # break;
//! }
//! handle.set_users(50, 10.0)?;
//! let so_far = handle.snapshot().await;
//! println!("{} endpoints so far", so_far.endpoints.len());
//! handle.stop();
//! let outcome = handle.wait().await;
//! println!("{} requests", outcome.stats.aggregated(loadgen::stats::Phase::Steady).count);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::backend::{self, BackendWatch};
use crate::cluster::Master;
use crate::config::RunConfig;
use crate::http::{Target, TlsSettings, tls};
use crate::preflight;
use crate::runner::{Channels, Control, Runner};
use crate::shape::{self, ShapeStage, StageAt};
use crate::stats::{SelfWatchFigures, Stats, StatsSnapshot};

pub use crate::outcome::{EngineError, RunOutcome, Update};

/// Starts runs.
#[derive(Debug)]
pub struct Run;

impl Run {
    /// Checks the target (resolution, the scenario's health endpoint, the open-file limit),
    /// starts the backend watch, then the users; returns at once with the handle.
    pub async fn start(config: &RunConfig) -> Result<RunHandle, EngineError> {
        let config = &shaped(config);
        if !(config.load.spawn_rate.is_finite() && config.load.spawn_rate > 0.0) {
            return Err(EngineError::SpawnRate(config.load.spawn_rate));
        }
        // Built even for an http host, as a redirect may lead to https; required for https.
        let tls = match tls::client_config(&config.load.tls) {
            Ok(tls) => Some(tls),
            Err(error)
                if config.host.trim_start().starts_with("https:")
                    || config.load.tls != TlsSettings::default() =>
            {
                return Err(error.into());
            }
            Err(_) => None,
        };
        let target = Target::resolve(&config.host, tls.as_ref()).await?;
        if let Some(path) = &config.scenario.health {
            preflight::check_health(&target, path)
                .await
                .map_err(EngineError::Preflight)?;
        }
        preflight::raise_open_files(config.load.users).map_err(EngineError::Preflight)?;

        let mut runner = Runner::new(config.load.clone(), config.scenario.clone(), target);
        if config.outputs.csv_full_history {
            runner.keep_per_name_history();
        }
        Ok(Self::launch(config, tls, move |channels| {
            runner.run(channels)
        }))
    }

    /// Runs `config` on the workers connected to `master` (and those that join): the same
    /// handle, the same outcome, the figures merged from every worker. The workers check the
    /// target themselves.
    pub async fn start_on(config: &RunConfig, master: &Master) -> Result<RunHandle, EngineError> {
        // The master drives the shape; its workers get theirs cleared (worker.rs).
        let config = &shaped(config);
        if !(config.load.spawn_rate.is_finite() && config.load.spawn_rate > 0.0) {
            return Err(EngineError::SpawnRate(config.load.spawn_rate));
        }
        let tls = tls::client_config(&config.load.tls).ok();
        let master = master.clone();
        let run_config = config.clone();
        Ok(Self::launch(config, tls, move |channels| async move {
            master.run(run_config, channels).await
        }))
    }

    /// Starts the backend watch and `body` (the users, here or on workers) with the handle's
    /// channels; gathers the outcome at the end.
    fn launch<F, B>(
        config: &RunConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
        body: B,
    ) -> RunHandle
    where
        B: FnOnce(Channels) -> F + Send + 'static,
        F: std::future::Future<Output = Result<RunOutcome, EngineError>> + Send + 'static,
    {
        let watch_backend = config
            .backend
            .clone()
            .map(|backend| BackendWatch::start(backend, tls.clone()));
        let live_backend = watch_backend.as_ref().map(BackendWatch::live);
        let (control_tx, control) = watch::channel(Control {
            users: config.load.users,
            spawn_rate: config.load.spawn_rate,
        });
        let (snapshot_tx, snapshots) = mpsc::channel(8);
        let (reset_tx, resets) = mpsc::channel(8);
        let (fixed_counts_tx, fixed_counts) = mpsc::channel(8);
        let (outcome_tx, outcomes) = mpsc::channel(8);
        let stop_reason = Arc::new(OnceLock::new());
        let (updates_tx, updates) = watch::channel(None);
        let (finished_tx, finished) = watch::channel(None);
        let stop = CancellationToken::new();
        let channels = Channels {
            control,
            stop: stop.clone(),
            snapshots,
            updates: updates_tx,
            resets,
            fixed_counts,
            outcomes,
        };
        let control_tx = Arc::new(control_tx);
        let started = tokio::time::Instant::now();
        if !config.load.shape.is_empty() {
            tokio::spawn(drive_shape(
                config.load.shape.clone(),
                started,
                control_tx.clone(),
                finished.clone(),
            ));
        }
        let worker_log_files = config.worker_logs.clone();
        let log_containers = config.stack.log_containers();
        let reason = stop_reason.clone();
        tokio::spawn(async move {
            let result = tokio::spawn(body(channels)).await;
            let mut outcome = match result {
                Ok(Ok(outcome)) => outcome,
                Ok(Err(error)) => RunOutcome {
                    error: Some(error.to_string()),
                    ..RunOutcome::default()
                },
                Err(join) => RunOutcome {
                    error: Some(EngineError::Aborted(join.to_string()).to_string()),
                    ..RunOutcome::default()
                },
            };
            if outcome.interrupted {
                outcome.stopped_by = reason.get().cloned();
            }
            // A backend that could not be watched costs its findings, never the run's results.
            if let Some(watch) = watch_backend {
                outcome.backend_watched = true;
                match watch.finish().await {
                    Ok(ticks) => outcome.backend = ticks,
                    Err(error) => outcome.backend_error = Some(error),
                }
            }
            if jobs_went_wrong(&outcome.stats) {
                outcome.worker_logs = backend::worker_logs(&outcome.backend, &log_containers).await;
                outcome.task_failures =
                    backend::worker_task_failures(&outcome.backend, &log_containers).await;
                for file in &worker_log_files {
                    if let Some(lines) = backend::log_file_tail(file).filter(|l| !l.is_empty()) {
                        outcome
                            .worker_logs
                            .insert(file.display().to_string(), lines);
                    }
                    if let Some(failures) =
                        backend::log_file_task_failures(file).filter(|f| !f.is_empty())
                    {
                        outcome
                            .task_failures
                            .insert(file.display().to_string(), failures);
                    }
                }
            }
            finished_tx.send_replace(Some(Arc::new(outcome)));
        });
        RunHandle {
            control: control_tx,
            shape: config.load.shape.clone().into(),
            started,
            stop,
            snapshots: snapshot_tx,
            resets: reset_tx,
            fixed_counts: fixed_counts_tx,
            outcomes: outcome_tx,
            stop_reason,
            live_backend,
            updates,
            finished,
        }
    }
}

/// `config` with its load shape applied (the first stage's users, the run time of the shape).
fn shaped(config: &RunConfig) -> RunConfig {
    RunConfig {
        load: config.load.shaped(),
        ..config.clone()
    }
}

/// Drives a users shape from the run's start: at each stage's start (absolute instants, so
/// nothing drifts) the users are steered as [`RunHandle::set_users`] steers them; the first
/// stage is the run's start. The run ends with the last stage through its run time.
async fn drive_shape(
    stages: Vec<ShapeStage>,
    started: tokio::time::Instant,
    control: Arc<watch::Sender<Control>>,
    mut finished: watch::Receiver<Option<Arc<RunOutcome>>>,
) {
    let of = stages.len();
    for (i, (stage, at)) in stages
        .iter()
        .zip(shape::starts(&stages))
        .enumerate()
        .skip(1)
    {
        tokio::select! {
            _ = finished.wait_for(Option::is_some) => return,
            () = tokio::time::sleep_until(started + at) => {}
        }
        tracing::info!(
            "Shape stage {} of {of}: ramping to {} users at a rate of {:.2} per second",
            i + 1,
            stage.users,
            stage.spawn_rate
        );
        if let Err(error) = steer(&control, stage.users, stage.spawn_rate) {
            // Checked when the shape was read: only a settings value built by hand gets here.
            tracing::warn!("shape stage {}: {error}", i + 1);
        }
    }
}

/// Sets the users to reach and the rate to reach them: the one path of every steering.
fn steer(control: &watch::Sender<Control>, users: u64, spawn_rate: f64) -> Result<(), EngineError> {
    if !(spawn_rate.is_finite() && spawn_rate > 0.0) {
        return Err(EngineError::SpawnRate(spawn_rate));
    }
    control.send_replace(Control { users, spawn_rate });
    Ok(())
}

fn jobs_went_wrong(stats: &Stats) -> bool {
    stats
        .jobs
        .values()
        .any(|j| j.failed + j.unfinished + j.unknown > 0)
}

/// Steers and reads a run; cheap to clone, so that a Ctrl-C task, a web UI and a reporter can
/// each hold one.
#[derive(Clone)]
pub struct RunHandle {
    control: Arc<watch::Sender<Control>>,
    /// The users shape the engine drives, and when the run started, for [`RunHandle::stage`].
    shape: Arc<[ShapeStage]>,
    started: tokio::time::Instant,
    stop: CancellationToken,
    snapshots: mpsc::Sender<oneshot::Sender<StatsSnapshot>>,
    resets: mpsc::Sender<()>,
    fixed_counts: mpsc::Sender<BTreeMap<String, u32>>,
    outcomes: mpsc::Sender<oneshot::Sender<RunOutcome>>,
    stop_reason: Arc<OnceLock<String>>,
    live_backend: Option<backend::LiveTicks>,
    updates: watch::Receiver<Option<Update>>,
    finished: watch::Receiver<Option<Arc<RunOutcome>>>,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("control", &*self.control.borrow())
            .field("stopped", &self.stop.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl RunHandle {
    /// Ramps to `users` at `spawn_rate` users per second (up or down).
    pub fn set_users(&self, users: u64, spawn_rate: f64) -> Result<(), EngineError> {
        steer(&self.control, users, spawn_rate)
    }

    /// Where the run is on its load shape (`stage 2 of 4`); `None` without a shape, or once
    /// it has ended.
    pub fn stage(&self) -> Option<StageAt> {
        if self.is_finished() {
            return None;
        }
        shape::stage_at(&self.shape, self.started.elapsed())
    }

    /// The run's load shape (empty: none).
    pub fn shape(&self) -> &[ShapeStage] {
        &self.shape
    }

    /// Forgets the figures measured so far (Locust's "Reset stats"); the run goes on. A run
    /// that has ended keeps its figures.
    pub fn reset_stats(&self) {
        let _ = self.resets.try_send(());
    }

    /// New fixed counts for the user types named (a worker's share of its cluster's, shared
    /// out again when a worker comes or goes): the users started from now on follow them.
    pub fn set_fixed_counts(&self, counts: BTreeMap<String, u32>) {
        let _ = self.fixed_counts.try_send(counts);
    }

    /// Stops the run; [`RunHandle::wait`] still returns everything measured.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops the run as [`RunHandle::stop`] does, saying who (`SIGTERM`, `the web UI`): the
    /// outcome keeps the first one given, for the reports to say why the run was interrupted.
    pub fn stop_by(&self, who: &str) {
        let _ = self.stop_reason.set(who.to_owned());
        self.stop();
    }

    /// What the run has measured so far, as an outcome the reports can be made of: the final
    /// outcome once there is one, else the figures in hand (marked [`RunOutcome::in_hand`]),
    /// even while the users finish their requests under `--stop-timeout`. For a second
    /// signal, which must not wait for them.
    pub async fn outcome_so_far(&self) -> Arc<RunOutcome> {
        if let Some(outcome) = self.finished.borrow().as_ref() {
            return outcome.clone();
        }
        let (reply, answer) = oneshot::channel();
        if self.outcomes.send(reply).await.is_ok()
            && let Ok(mut outcome) = answer.await
        {
            outcome.in_hand = true;
            outcome.backend = self.backend_so_far();
            // Even when the run time was up: the signal cut short the users' finishing.
            outcome.stopped_by = self.stop_reason.get().cloned();
            return Arc::new(outcome);
        }
        // The users are done: the outcome comes once the backend watch has ended.
        self.wait().await
    }

    /// Everything measured so far (or at the end, once the run is over).
    pub async fn snapshot(&self) -> StatsSnapshot {
        let (reply, answer) = oneshot::channel();
        if self.snapshots.send(reply).await.is_ok()
            && let Ok(snapshot) = answer.await
        {
            return snapshot;
        }
        // The run is over (or ending): its outcome has the final figures.
        let outcome = self.wait().await;
        let own = outcome
            .history
            .last()
            .map_or_else(SelfWatchFigures::default, |h| SelfWatchFigures {
                cpu_pct: h.loadgen_cpu_pct,
                rss_bytes: h.loadgen_rss_bytes,
                timer_lag_ms: h.timer_lag_ms,
            });
        StatsSnapshot::of(&outcome.stats, outcome.duration.as_secs_f64(), 0, own)
    }

    /// The backend's ticks taken so far while the run goes (empty once it has ended: the
    /// outcome has them).
    pub fn backend_so_far(&self) -> Vec<monitor::sample::Tick> {
        self.live_backend
            .as_ref()
            .and_then(|ticks| ticks.lock().ok().map(|t| t.clone()))
            .unwrap_or_default()
    }

    /// One update per second while the run goes (`None` before the first second).
    pub fn subscribe(&self) -> watch::Receiver<Option<Update>> {
        self.updates.clone()
    }

    /// Whether the run has ended and its outcome is ready.
    pub fn is_finished(&self) -> bool {
        self.finished.borrow().is_some()
    }

    /// Waits for the end of the run (its run time, or [`RunHandle::stop`]) and returns what it
    /// produced; every clone of the handle gets the same outcome.
    pub async fn wait(&self) -> Arc<RunOutcome> {
        let mut finished = self.finished.clone();
        loop {
            if let Some(outcome) = finished.borrow_and_update().as_ref() {
                return outcome.clone();
            }
            if finished.changed().await.is_err() {
                // The engine task is gone without an outcome: only a panic does that.
                return Arc::new(RunOutcome {
                    error: Some("the engine stopped without an outcome".into()),
                    ..RunOutcome::default()
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
