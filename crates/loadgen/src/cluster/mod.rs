//! Distributed runs: a master shares a run's users out to workers on other machines (or
//! containers) and merges their figures into one report, as Locust's `--master` and
//! `--worker` do.
//!
//! - [`protocol`]: the versioned JSON messages, over WebSocket.
//! - [`hello`]: the first exchange, before the master knows a worker: small limits, version
//!   and token checks, printable names.
//! - [`listener`]: the master's side of the connections.
//! - [`master`]: the master, which the engine runs in place of its local users.
//! - `run`: one distributed run, as the master drives it.
//! - the worker is one more driver of the engine, above it: [`crate::worker`].
//! - [`share`]: how users, rates and fixed counts are shared out.
//! - what the report says of each worker and of the cluster's events is in
//!   [`crate::outcome::cluster`], below the engine, as the readers need it.
//! - [`tls`]: optional TLS on the connections (`wss://`).

pub mod hello;
pub mod listener;
pub mod master;
pub mod protocol;
mod run;
pub mod share;
pub mod tls;

use std::time::Duration;

pub use crate::outcome::{ClusterEvent, ClusterSummary, EventKind, WorkerSummary};
pub use master::{Master, MasterSettings};

/// How often each side says it is there.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A worker that sent nothing for this long is lost (and a master, to its worker).
pub const MISSING_AFTER: Duration = Duration::from_secs(3);
