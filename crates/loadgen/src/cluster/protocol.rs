//! The messages between a master and its workers: JSON text frames over a WebSocket
//! (`ws://MASTER:5557/`, or `wss://` with TLS: see [`super::tls`]), one message a frame,
//! each an object whose `type` names it.
//!
//! Each message is `{"type": "NAME", "data": {...}}` (`data` absent when the message has
//! none): the type comes first, so a receiver reads the data straight into its type.
//!
//! A worker opens the connection and sends [`ToMaster::Hello`] (at most
//! [`super::hello::HELLO_MAX_BYTES`]), then says nothing until the master answers
//! [`ToWorker::Welcome`] or [`ToWorker::Refused`] (then closes). During a run the master
//! sends [`ToWorker::Start`], then [`ToWorker::Steer`] when the users change or a worker comes
//! or goes, and [`ToWorker::Stop`] at the end; the worker sends [`ToMaster::Snapshot`] every
//! second (its totals so far: a lost or repeated message costs nothing) and
//! [`ToMaster::Finished`] with its last totals. Both send something at least once a second
//! (the master [`ToWorker::Heartbeat`]), so that each tells within seconds that the other is
//! gone.
//!
//! [`PROTOCOL`] is raised whenever a message changes; a worker of another protocol, or of
//! another loadgen version, is refused with both versions in the reason.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::LoadSettings;
use crate::scenario::ScenarioSource;
use crate::stats::StatsSnapshot;

/// The version of these messages.
pub const PROTOCOL: u32 = 2;

/// This loadgen's version: a master and its workers must have the same.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// From a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ToMaster {
    /// The first message.
    Hello {
        /// [`PROTOCOL`] of the worker.
        protocol: u32,
        /// The worker's loadgen version.
        version: String,
        /// A name for the reports (`HOST-PID` unless given).
        name: String,
        /// The worker's cores.
        cores: usize,
        /// The cluster's shared secret, if the worker has one.
        #[serde(default)]
        token: Option<String>,
        /// A worker coming back after losing its connection: the run it is in, and the id
        /// the master gave it.
        #[serde(default)]
        resume: Option<Resume>,
    },
    /// The worker's totals so far in the run.
    Snapshot(Box<WorkerSnapshot>),
    /// The worker's users have stopped: its final totals.
    Finished(Box<WorkerSnapshot>),
    /// The worker could not start the run (its scenario, fixtures or the target); it stays
    /// connected for the next.
    Failed {
        /// The run.
        run_id: String,
        /// What went wrong.
        message: String,
    },
    /// The worker is there (sent every second).
    Heartbeat,
}

/// A worker coming back to its run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The run.
    pub run_id: String,
    /// Its id in the run.
    pub worker_id: u32,
}

/// A worker's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    /// The run.
    pub run_id: String,
    /// Counts up by one each message, so that a master can drop an older one.
    pub seq: u64,
    /// How many times the stats were reset in this run (a snapshot from before a reset is
    /// dropped).
    pub epoch: u64,
    /// Everything measured so far (users, loadgen's CPU and timer lag included).
    pub stats: StatsSnapshot,
    /// Users this worker is ramping to.
    pub target_users: u64,
    /// Users started so far, by type.
    pub users_by_type: BTreeMap<String, u64>,
    /// Threads running users.
    pub threads: usize,
    /// Jobs being followed now.
    pub jobs_in_flight: u64,
    /// Requests waiting for their answers now.
    #[serde(default)]
    pub in_flight: crate::stats::InFlightLevel,
    /// Why the run ended early on this worker, if it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// From the master.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ToWorker {
    /// The worker is in.
    Welcome {
        /// Its id (in its run, when it resumed one).
        worker_id: u32,
    },
    /// The worker is not accepted; the master closes the connection.
    Refused {
        /// Why, and what to change.
        reason: String,
    },
    /// Start a run.
    Start(Box<RunSpec>),
    /// Ramp to this many users.
    Steer {
        /// Users on this worker.
        users: u64,
        /// Users started or stopped per second on this worker.
        spawn_rate: f64,
        /// This worker's share of each type's `fixed_count` now.
        #[serde(default)]
        fixed_counts: BTreeMap<String, u32>,
    },
    /// Forget the figures so far.
    Reset,
    /// Stop the users, then send [`ToMaster::Finished`].
    Stop,
    /// The master is there.
    Heartbeat,
    /// The master ends: the worker exits.
    Quit,
}

/// A run, as a worker starts it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// Base URL of the target.
    pub host: String,
    /// The scenario.
    pub scenario: ScenarioSource,
    /// The master's load settings as resolved, with this worker's share in them: its users
    /// and spawn rate, the number of its first user (`${user}`: each worker has its own
    /// range) and the run's id (`${run}`, the same on every worker).
    pub load: LoadSettings,
    /// This worker's share of each type's `fixed_count`.
    pub fixed_counts: BTreeMap<String, u32>,
}

impl RunSpec {
    /// The run's id, as the master set it.
    pub fn run_id(&self) -> &str {
        self.load.run_id.as_deref().unwrap_or_default()
    }
}

/// A message that is not one of these, as the receiver reports it.
pub fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| {
        let start: String = text.chars().take(80).collect();
        format!("not a loadgen cluster message ({e}): {start}")
    })
}

/// A message as a frame's text.
pub fn encode<T: Serialize>(message: &T) -> String {
    // Our own types, all with string keys: serialising cannot fail.
    serde_json::to_string(message)
        .unwrap_or_else(|e| format!("{{\"type\":\"invalid\",\"error\":\"{e}\"}}"))
}
