//! The targets a run is judged against: the seed's five (failure share, p95, p99, average,
//! users), overridable with `--target NAME=VALUE`, and the host's resource targets when the
//! monitor watched it.

use std::str::FromStr;

use serde::Serialize;

use crate::stats::{EndpointStats, StuckUsers};

/// The thresholds a run is judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Targets {
    /// Highest acceptable failure share, percent.
    pub failure_pct: f64,
    /// Highest acceptable p95, ms.
    pub p95_ms: f64,
    /// Highest acceptable p99, ms.
    pub p99_ms: f64,
    /// Highest acceptable average, ms.
    pub avg_ms: f64,
    /// Users the run must reach: `--target users=N`, else the users asked for (`None`: not
    /// judged).
    pub users: Option<u64>,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            failure_pct: 5.0,
            p95_ms: 500.0,
            p99_ms: 1000.0,
            avg_ms: 200.0,
            users: None,
        }
    }
}

/// One `--target NAME=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOverride {
    name: &'static str,
    value: f64,
}

impl FromStr for TargetOverride {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let (name, value) = input.split_once('=').ok_or_else(|| {
            format!("{input:?}: write NAME=VALUE, e.g. p95=800ms, failure=1%, users=50")
        })?;
        let name = match name.trim() {
            "failure" | "failures" | "fail" => "failure",
            "p95" => "p95",
            "p99" => "p99",
            "avg" | "average" => "avg",
            "users" => "users",
            other => {
                return Err(format!(
                    "unknown target {other:?}: use failure, p95, p99, avg or users"
                ));
            }
        };
        let value = value.trim();
        let number = if name == "failure" {
            value.trim_end_matches('%').parse::<f64>().ok()
        } else if name == "users" {
            value.parse::<u64>().ok().map(|u| u as f64)
        } else if let Ok(ms) = value.parse::<f64>() {
            // A bare number is milliseconds here: latency targets are written in ms.
            Some(ms)
        } else {
            common::duration::parse(value)
                .ok()
                .map(|d| d.as_secs_f64() * 1000.0)
        };
        let value = number
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("{input:?}: {value:?} is not a valid {name} target"))?;
        if name == "failure" && value > 100.0 {
            // A share above 100% cannot be missed: the target would pass every run.
            return Err(format!(
                "{input:?}: a failure share is a percentage from 0 to 100, e.g. failure=5%"
            ));
        }
        Ok(Self { name, value })
    }
}

impl Targets {
    /// The defaults with `overrides` applied.
    pub fn with(overrides: &[TargetOverride]) -> Self {
        let mut targets = Self::default();
        for o in overrides {
            match o.name {
                "failure" => targets.failure_pct = o.value,
                "p95" => targets.p95_ms = o.value,
                "p99" => targets.p99_ms = o.value,
                "avg" => targets.avg_ms = o.value,
                _ => targets.users = Some(o.value as u64),
            }
        }
        targets
    }
}

/// One target's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// What is judged.
    pub name: String,
    /// The measured value, as printed.
    pub measured: String,
    /// The threshold, as printed.
    pub threshold: String,
    /// Whether it is met.
    pub met: bool,
}

/// Judges the steady state, the peak users and the host (from the monitor's `ticks`). A run in
/// which most users were stuck waiting for answers passes no failure or latency target: its
/// figures describe the few requests that were answered, not the API.
pub fn judge(
    targets: &Targets,
    steady: &EndpointStats,
    peak_users: u64,
    stuck: &StuckUsers,
    ticks: &[monitor::sample::Tick],
) -> Vec<Verdict> {
    let failure_pct = steady.failure_ratio() * 100.0;
    let measured = steady.count > 0;
    let stuck_note = stuck.most_of(peak_users).then(|| {
        format!(
            "not judged: {} of {peak_users} users stuck waiting for answers",
            stuck.peak
        )
    });
    // Latencies of mostly failed requests measure how fast the API says no (a 429 in a few
    // ms): such a verdict would pass a broken run.
    let latency = |name: &str, value: f64, threshold: f64| {
        let judged = measured && failure_pct <= 50.0 && stuck_note.is_none();
        Verdict {
            name: name.into(),
            measured: if !measured {
                "not judged: no request".to_owned()
            } else if let Some(note) = &stuck_note {
                note.clone()
            } else if judged {
                ms(value)
            } else {
                format!("not judged: {failure_pct:.1}% of requests failed")
            },
            threshold: format!("< {threshold} ms"),
            met: judged && value < threshold,
        }
    };
    let mut verdicts = vec![
        Verdict {
            name: "Failure rate".into(),
            measured: match (&stuck_note, measured) {
                (Some(note), _) => note.clone(),
                (None, true) => format!("{failure_pct:.2}%"),
                (None, false) => "not judged: no request".to_owned(),
            },
            threshold: format!("< {}%", targets.failure_pct),
            met: measured && stuck_note.is_none() && failure_pct < targets.failure_pct,
        },
        latency(
            "95th percentile",
            steady.percentile_ms(95.0),
            targets.p95_ms,
        ),
        latency(
            "99th percentile",
            steady.percentile_ms(99.0),
            targets.p99_ms,
        ),
        latency("Average response time", steady.average_ms(), targets.avg_ms),
    ];
    if let Some(users) = targets.users {
        verdicts.push(Verdict {
            name: "Concurrent users".into(),
            measured: format!("{peak_users}"),
            threshold: format!(">= {users}"),
            met: peak_users >= users,
        });
    }
    verdicts.extend(resource_verdicts(ticks));
    verdicts
}

/// Milliseconds as people read them: `0.42 ms`, `7.1 ms`, `230 ms`.
pub fn ms(value: f64) -> String {
    if value < 1.0 {
        format!("{value:.2} ms")
    } else if value < 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.0} ms")
    }
}

/// The seed's system resource targets, judged on the host's average over the run (with the
/// peak shown): CPU < 70%, RAM < 80%, disk I/O < 80%, network < 70% of capacity.
fn resource_verdicts(ticks: &[monitor::sample::Tick]) -> Vec<Verdict> {
    let hosts: Vec<&monitor::sample::HostValues> = ticks
        .iter()
        .filter_map(
            |t| match t.sources.get("host").and_then(|r| r.values.as_ref()) {
                Some(monitor::sample::Values::Host(h)) => Some(h),
                _ => None,
            },
        )
        .collect();
    if hosts.is_empty() {
        return Vec::new();
    }
    let judge =
        |name: &str, target: f64, warning: f64, value: fn(&monitor::sample::HostValues) -> f64| {
            let avg = hosts.iter().map(|h| value(h)).sum::<f64>() / hosts.len() as f64;
            let peak = hosts.iter().map(|h| value(h)).fold(0.0, f64::max);
            Verdict {
                name: name.to_owned(),
                measured: format!("{avg:.0}% (peak {peak:.0}%)"),
                threshold: format!("< {target}%, warning {warning}%"),
                met: avg < target,
            }
        };
    vec![
        judge("Host CPU", 70.0, 85.0, |h| h.cpu_pct),
        judge("Host memory", 80.0, 90.0, |h| h.memory_pct),
        judge("Host disk I/O", 80.0, 90.0, |h| h.disk_pct),
        judge("Host network", 70.0, 85.0, |h| h.net_pct),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_without_requests_is_not_judged_and_not_passed() {
        let verdicts = judge(
            &Targets::default(),
            &EndpointStats::default(),
            0,
            &StuckUsers::default(),
            &[],
        );
        for v in &verdicts[..4] {
            assert!(!v.met, "{v:?}");
            assert_eq!(v.measured, "not judged: no request", "{v:?}");
        }
    }

    #[test]
    fn a_run_where_most_users_were_stuck_passes_no_failure_or_latency_target() {
        let mut fast = EndpointStats::default();
        for _ in 0..100 {
            fast.record(2_000, 10, Some(200), false);
        }
        let judged = |stuck: u64| {
            let stuck = StuckUsers {
                peak: stuck,
                ..StuckUsers::default()
            };
            judge(&Targets::default(), &fast, 20, &stuck, &[])
        };
        assert!(judged(10).iter().all(|v| v.met), "half is not most");
        let verdicts = judged(11);
        for v in &verdicts[..4] {
            assert!(!v.met, "{v:?}");
            assert!(
                v.measured
                    .contains("11 of 20 users stuck waiting for answers"),
                "{v:?}"
            );
        }
    }

    #[test]
    fn parses_target_overrides() {
        let t = Targets::with(&[
            "p95=800ms".parse().unwrap(),
            "failure=1%".parse().unwrap(),
            "users=20".parse().unwrap(),
            "avg=0.5s".parse().unwrap(),
            "p99=1200".parse().unwrap(),
        ]);
        assert_eq!(
            (t.p95_ms, t.failure_pct, t.users, t.avg_ms, t.p99_ms),
            (800.0, 1.0, Some(20), 500.0, 1200.0)
        );
        assert!(
            "p96=1"
                .parse::<TargetOverride>()
                .unwrap_err()
                .contains("unknown target")
        );
        assert!(
            "p95"
                .parse::<TargetOverride>()
                .unwrap_err()
                .contains("NAME=VALUE")
        );
        assert!(
            "users=-1"
                .parse::<TargetOverride>()
                .unwrap_err()
                .contains("not a valid")
        );
    }
}
