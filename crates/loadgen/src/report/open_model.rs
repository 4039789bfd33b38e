//! The open model in the reports: iterations scheduled, dropped and started late (in total
//! and by user type), the cap on users, and the service time beside the response time.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::RunConfig;
use crate::outcome::RunOutcome;
use crate::stats::{ArrivalCounts, P50, P95, P99, PERCENTILES, Stats};
use crate::targets::ms;

/// The open model's figures; `None` in the report of a closed run.
#[derive(Debug, Clone, Serialize)]
pub struct OpenModel {
    /// The rate asked for, e.g. `500/s`, or its stages.
    pub rate: String,
    /// Users made at most.
    pub users_cap: u64,
    /// Iterations in total.
    #[serde(flatten)]
    pub counts: ArrivalCounts,
    /// Dropped iterations per second of the run.
    pub dropped_per_sec: f64,
    /// By user type.
    pub by_type: BTreeMap<String, ArrivalCounts>,
}

impl OpenModel {
    /// The open model of `outcome`, when `config` asked for one.
    pub fn of(config: &RunConfig, outcome: &RunOutcome, secs: f64) -> Option<Self> {
        let arrival = config.load.arrival.as_ref()?;
        let counts = outcome.stats.arrivals.total;
        Some(Self {
            rate: describe_rate(arrival),
            users_cap: outcome.users_cap.unwrap_or_else(|| arrival.users_cap()),
            counts,
            dropped_per_sec: counts.dropped as f64 / secs.max(1e-9),
            by_type: outcome
                .stats
                .arrivals
                .by_type
                .iter()
                .map(|(name, counts)| (name.to_string(), *counts))
                .collect(),
        })
    }

    /// The model in one line, as the Markdown, HTML and JUnit reports give it:
    /// `100/s: 800 iterations scheduled, 384 dropped (48.0/s), 3 started late, users cap 100`.
    pub fn line(&self) -> String {
        format!(
            "{}: {} iterations scheduled, {} dropped ({:.1}/s), {} started late, users cap {}",
            self.rate,
            self.counts.scheduled,
            self.counts.dropped,
            self.dropped_per_sec,
            self.counts.late,
            self.users_cap
        )
    }

    /// Whether the arrival rate was held: no iteration dropped.
    pub fn held(&self) -> bool {
        self.counts.dropped == 0
    }

    /// The console's lines: what was dropped and started late, and why.
    pub fn console(&self, peak_users: u64) -> String {
        let mut out = format!(
            "Open model at {}: {} iterations scheduled",
            self.rate, self.counts.scheduled
        );
        if self.counts.dropped > 0 {
            out.push_str(&format!(
                "\nDropped: {} iterations ({:.1}/s), users at the cap of {} ({} made)",
                self.counts.dropped, self.dropped_per_sec, self.users_cap, peak_users
            ));
        } else {
            out.push_str(", none dropped");
        }
        out.push_str(&format!(
            "\nIterations started late by more than 1 ms: {}\n",
            self.counts.late
        ));
        out
    }
}

/// The rate asked for: `500/s`, or `from 0/s through 30s:50/s,2m:500/s`; a user type's own
/// rate is not in it.
pub fn describe_rate(arrival: &crate::arrival::Arrival) -> String {
    let stages: Vec<String> = arrival.stages.iter().map(ToString::to_string).collect();
    match (arrival.rate, stages.is_empty()) {
        (Some(rate), true) => rate.to_string(),
        (rate, false) => format!(
            "from {} through {}",
            rate.unwrap_or_default(),
            stages.join(",")
        ),
        (None, true) => "the user types' own rates".to_owned(),
    }
}

/// Steady requests timed from their send: in the open model the response time of an
/// iteration's first request runs from its scheduled instant instead.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceTime {
    /// Requests timed.
    pub requests: u64,
    /// [`PERCENTILES`], ms.
    pub percentiles_ms: Vec<f64>,
}

impl ServiceTime {
    /// `median 100 ms, p95 104 ms, p99 105 ms`: the figures a response time is read beside.
    pub fn line(&self) -> String {
        format!(
            "median {}, p95 {}, p99 {}",
            ms(P50.among(&self.percentiles_ms)),
            ms(P95.among(&self.percentiles_ms)),
            ms(P99.among(&self.percentiles_ms))
        )
    }

    /// The service time of `stats`.
    pub fn of(stats: &Stats) -> Self {
        Self {
            requests: stats.arrivals.service.as_ref().map_or(0, |h| h.len()),
            percentiles_ms: PERCENTILES
                .iter()
                .map(|p| stats.arrivals.service_ms(*p))
                .collect(),
        }
    }
}
