//! The tick loop: every interval, all sources are read concurrently; each reading is stamped,
//! and the tick records the spread between the first and the last.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::sample::Tick;
use crate::source::{Source, Supervised};

/// Reads a set of sources on one clock.
pub struct Sampler {
    sources: Vec<Supervised>,
    interval: Duration,
    ticks: u64,
}

impl Sampler {
    /// Samples `sources` every `interval`; a source slower than the interval counts as down.
    pub fn new(sources: Vec<Box<dyn Source>>, interval: Duration) -> Self {
        let timeout = interval.mul_f64(0.8).max(Duration::from_millis(200));
        Self {
            sources: sources
                .into_iter()
                .map(|s| Supervised::new(s, timeout))
                .collect(),
            interval,
            ticks: 0,
        }
    }

    /// Reads every source once, concurrently.
    pub async fn tick(&mut self) -> Tick {
        self.ticks += 1;
        let timestamp = Utc::now();
        let readings = futures::future::join_all(
            self.sources
                .iter_mut()
                .map(|s| async move { (s.name().to_owned(), s.poll().await) }),
        )
        .await;
        let times: Vec<_> = readings.iter().map(|(_, r)| r.at).collect();
        let spread_ms = match (times.iter().min(), times.iter().max()) {
            (Some(first), Some(last)) => {
                (*last - *first).num_microseconds().unwrap_or(0) as f64 / 1000.0
            }
            _ => 0.0,
        };
        Tick {
            tick: self.ticks,
            timestamp,
            spread_ms,
            sources: readings.into_iter().collect::<BTreeMap<_, _>>(),
        }
    }

    /// Ticks until `duration` passes or `stop` is cancelled, handing each tick to `on_tick`.
    pub async fn run(
        &mut self,
        duration: Option<Duration>,
        stop: CancellationToken,
        mut on_tick: impl FnMut(&Tick),
    ) {
        let start = tokio::time::Instant::now();
        // The caller has usually just taken a tick: the next one is an interval away.
        let mut every = tokio::time::interval_at(start + self.interval, self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            // Half an interval of slack: the tick due exactly at the end still runs.
            if duration.is_some_and(|d| start.elapsed() > d + self.interval / 2) {
                return;
            }
            let tick = tokio::select! {
                () = stop.cancelled() => return,
                tick = self.tick() => tick,
            };
            on_tick(&tick);
        }
    }
}
