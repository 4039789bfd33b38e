//! The source trait, and the supervision that keeps a failing source from touching the others:
//! a source that fails is marked down for the tick, waits out a backoff, reconnects, and comes
//! back when its server does.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::sample::{SourceReading, Values};

/// Why a source could not be read. The message never carries a password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// One thing the monitor samples. Implementations keep their own connection and drop it on any
/// error, so that the next `read` reconnects.
#[async_trait::async_trait]
pub trait Source: Send {
    /// `docker`, `postgres`, `redis` or `host`.
    fn name(&self) -> &'static str;
    /// Reads the current values.
    async fn read(&mut self) -> Result<Values, SourceError>;
    /// What the last read found worth saying once (drained): it goes into that tick's reading.
    fn notes(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// Exponential backoff between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// Starts at `initial`, doubles on each failure, never waits longer than `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            current: initial,
            retry_at: None,
        }
    }

    /// Whether an attempt may be made at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    /// Records a failure at `now`; returns how long until the next attempt.
    pub fn failed(&mut self, now: Instant) -> Duration {
        let wait = self.current;
        self.retry_at = Some(now + wait);
        // Double, but never beyond the cap (the upper bound is `min`, not `max`).
        self.current = (self.current * 2).min(self.max);
        wait
    }

    /// Records a success: the next failure waits `initial` again.
    pub fn succeeded(&mut self) {
        self.current = self.initial;
        self.retry_at = None;
    }

    /// When the next attempt is due, if waiting.
    pub fn retry_in(&self, now: Instant) -> Option<Duration> {
        self.retry_at.map(|at| at.saturating_duration_since(now))
    }
}

/// A source with its backoff and last error.
pub struct Supervised {
    source: Box<dyn Source>,
    backoff: Backoff,
    last_error: Option<String>,
    timeout: Duration,
}

impl Supervised {
    /// Supervises `source`; a read that takes longer than `timeout` counts as a failure.
    pub fn new(source: Box<dyn Source>, timeout: Duration) -> Self {
        Self {
            source,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(10)),
            last_error: None,
            timeout,
        }
    }

    /// The source's name.
    pub fn name(&self) -> &'static str {
        self.source.name()
    }

    /// Reads the source unless it is backing off; never fails, a failure is a `down` reading.
    pub async fn poll(&mut self) -> SourceReading {
        let now = Instant::now();
        if !self.backoff.ready(now) {
            let wait = self.backoff.retry_in(now).unwrap_or_default();
            return down(format!(
                "{} (reconnecting in {:.1} s)",
                self.last_error.as_deref().unwrap_or("down"),
                wait.as_secs_f64()
            ));
        }
        let deadline = scaled_by_load(self.timeout);
        let result = match tokio::time::timeout(deadline, self.source.read()).await {
            Ok(result) => result,
            Err(_) => Err(SourceError(format!(
                "no answer within {:.1} s",
                deadline.as_secs_f64()
            ))),
        };
        match result {
            Ok(values) => {
                self.backoff.succeeded();
                self.last_error = None;
                SourceReading {
                    at: Utc::now(),
                    up: true,
                    error: None,
                    values: Some(values),
                    notes: self.source.notes(),
                }
            }
            Err(SourceError(message)) => {
                self.backoff.failed(Instant::now());
                self.last_error = Some(message.clone());
                down(message)
            }
        }
    }
}

/// The most a busy host stretches a deadline: past it, a source is down whatever the load.
const MOST_LOAD_STRETCH: f64 = 5.0;

/// `deadline` stretched by how overloaded the host is (the 1-minute load average per core,
/// at least 1): on a shared CI runner at a load of 3 per core, reading `/proc` or answering
/// a query takes 3 times as long, and the source is slow, not down.
fn scaled_by_load(deadline: Duration) -> Duration {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let per_core = sysinfo::System::load_average().one / cores;
    deadline.mul_f64(per_core.clamp(1.0, MOST_LOAD_STRETCH))
}

fn down(message: String) -> SourceReading {
    SourceReading {
        at: Utc::now(),
        up: false,
        error: Some(message),
        values: None,
        notes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let t = Instant::now();
        assert!(b.ready(t));
        let waits: Vec<_> = (0..6).map(|_| b.failed(t)).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 4000, 4000].map(Duration::from_millis),
            "the wait grows to the cap and stays there"
        );
        assert!(!b.ready(t + Duration::from_millis(3999)));
        assert!(b.ready(t + Duration::from_millis(4000)));
        b.succeeded();
        assert!(b.ready(t));
        assert_eq!(b.failed(t), Duration::from_millis(500));
    }
}
