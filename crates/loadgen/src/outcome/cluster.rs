//! What a distributed run tells about its workers: each one's share of the work, and what
//! happened to the cluster (workers joining, lost, back) and when.

use serde::{Deserialize, Serialize};

/// The workers of a distributed run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// Each worker that took part, by id.
    pub workers: Vec<WorkerSummary>,
    /// What happened, in order.
    pub events: Vec<ClusterEvent>,
}

/// One worker's part.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerSummary {
    /// Its id in the run.
    pub id: u32,
    /// Its name (`HOST-PID` unless given).
    pub name: String,
    /// Its cores.
    pub cores: usize,
    /// Threads running its users.
    pub threads: usize,
    /// Users it ran last.
    pub users: u64,
    /// Requests it reported.
    pub requests: u64,
    /// Its mean rate while it was in the run, requests per second.
    pub requests_per_sec: f64,
    /// Its highest CPU in a second, percent of one core.
    pub peak_cpu_pct: f64,
    /// Its latest timer in a second, ms.
    pub peak_timer_lag_ms: f64,
    /// Seconds in which it was saturated (CPU ≥ 90 % of its threads, or timers ≥ 100 ms late).
    pub saturated_secs: u64,
    /// How it ended: `finished`, `lost at 12 s` or `failed: …`.
    pub state: String,
}

impl WorkerSummary {
    /// Whether it was saturated long enough (3 s) for its figures to be suspect.
    pub fn saturated(&self) -> bool {
        self.saturated_secs >= 3
    }
}

/// What kind of thing happened to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A worker joined during the run.
    Joined,
    /// A worker was lost (closed connection, or silent for 3 s).
    Lost,
    /// A lost worker answers again.
    Back,
    /// A worker could not start the run.
    Failed,
    /// Workers sent no final figures in time.
    Late,
}

/// Something that happened to the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterEvent {
    /// Seconds into the run.
    pub at_secs: f64,
    /// What kind.
    pub kind: EventKind,
    /// What, with its figures.
    pub what: String,
}
