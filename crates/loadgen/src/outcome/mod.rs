//! What a run hands over: the [`RunOutcome`] at its end, an [`Update`] each second while it
//! goes, the [`EngineError`] when it cannot start, and the [`ClusterSummary`] of a distributed
//! run. The engine and the master make them; the reports, the diagnosis and the drivers read
//! them. They live below all of these, so that a reader needs nothing of the engine.

pub mod cluster;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::http::{TargetError, TlsError};
use crate::stats::{HistoryRow, Stats};

pub use cluster::{ClusterEvent, ClusterSummary, EventKind, WorkerSummary};

/// Why a run could not start or be steered.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The host is not a usable URL, or does not resolve.
    #[error("--host {0}")]
    Target(#[from] TargetError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A check before the run failed (health endpoint, open-file limit).
    #[error("{0}")]
    Preflight(String),
    /// Not one user thread could be started.
    #[error("cannot start a user thread: {0} (try fewer --threads)")]
    Threads(#[source] std::io::Error),
    /// A spawn rate that is not a positive number.
    #[error("spawn rate {0}: must be a positive number of users per second")]
    SpawnRate(f64),
    /// The run ended in a way that lost its results (a panic in the engine).
    #[error("the run ended abnormally: {0}")]
    Aborted(String),
}

/// Everything a finished run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Merged stats.
    pub stats: Stats,
    /// Per second.
    pub history: Vec<HistoryRow>,
    /// When it started.
    pub started_at: SystemTime,
    /// How long it ran.
    pub duration: Duration,
    /// Most users running at once.
    pub peak_users: u64,
    /// Users started, by type.
    pub users_by_type: BTreeMap<String, u64>,
    /// Whether it was stopped before its run time.
    pub interrupted: bool,
    /// Who stopped it, when the driver said ([`RunHandle::stop_by`](crate::engine::RunHandle::stop_by)): `SIGTERM`, `the web UI`.
    pub stopped_by: Option<String>,
    /// Taken while the run was still ending ([`RunHandle::outcome_so_far`](crate::engine::RunHandle::outcome_so_far)), as a second
    /// signal does: the figures the users had not handed over yet, and the requests they were
    /// still waiting for, are missing.
    pub in_hand: bool,
    /// The run id used in identities.
    pub run_id: String,
    /// Threads that ran users.
    pub threads: usize,
    /// The open model's cap on users, when the run had one.
    pub users_cap: Option<u64>,
    /// When `--memory-limit` stopped the ramp: (seconds into the run, users then, RSS bytes).
    pub memory_limit_hit: Option<(u64, u64, u64)>,
    /// The backend's ticks, on the run's clock.
    pub backend: Vec<monitor::sample::Tick>,
    /// Why the backend could not be watched, if it could not.
    pub backend_error: Option<String>,
    /// Whether monitor sources were set for the run (its ticks may still be none: a run that
    /// ended before the first sample).
    pub backend_watched: bool,
    /// The last log lines of watched worker containers, when jobs went wrong.
    pub worker_logs: BTreeMap<String, Vec<String>>,
    /// The Celery task failures in the logs of watched worker containers and `--worker-log`
    /// files, by container or file, when jobs went wrong.
    pub task_failures: BTreeMap<String, Vec<monitor::celery::TaskFailure>>,
    /// Why the run ended early, when it was not by a stop or its run time.
    pub error: Option<String>,
    /// The workers, when the run was distributed.
    pub cluster: Option<ClusterSummary>,
}

impl Default for RunOutcome {
    fn default() -> Self {
        Self {
            stats: Stats::default(),
            history: Vec::new(),
            started_at: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            peak_users: 0,
            users_by_type: BTreeMap::new(),
            interrupted: false,
            stopped_by: None,
            in_hand: false,
            run_id: String::new(),
            threads: 0,
            memory_limit_hit: None,
            users_cap: None,
            backend: Vec::new(),
            backend_error: None,
            backend_watched: false,
            worker_logs: BTreeMap::new(),
            task_failures: BTreeMap::new(),
            error: None,
            cluster: None,
        }
    }
}

/// One second of a running test, as [`RunHandle::subscribe`](crate::engine::RunHandle::subscribe) delivers it.
#[derive(Debug, Clone)]
pub struct Update {
    /// Time since the start.
    pub elapsed: Duration,
    /// Users running.
    pub users: u64,
    /// Users the run is ramping to.
    pub target_users: u64,
    /// Users started so far, by type.
    pub users_by_type: Arc<BTreeMap<String, u64>>,
    /// The second that just ended (with the run's cumulative figures).
    pub second: Arc<HistoryRow>,
}
