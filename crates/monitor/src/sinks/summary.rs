//! The closing summary: min, average and max of every figure, time over the thresholds, and how
//! long each source was down.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use crate::sample::Tick;
use crate::thresholds::Thresholds;

#[derive(Debug, Clone, Copy)]
struct Range {
    min: f64,
    max: f64,
    sum: f64,
    count: u64,
    over_target: u64,
    over_warning: u64,
}

/// Accumulates ticks.
#[derive(Debug, Default)]
pub struct Summary {
    figures: BTreeMap<String, Range>,
    down_ticks: BTreeMap<String, u64>,
    ticks: u64,
    max_spread_ms: f64,
    interval: Duration,
}

impl Summary {
    /// An empty summary of ticks `interval` apart.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            ..Default::default()
        }
    }

    /// Adds a tick.
    pub fn add(&mut self, tick: &Tick, thresholds: &Thresholds) {
        self.ticks += 1;
        self.max_spread_ms = self.max_spread_ms.max(tick.spread_ms);
        for (source, reading) in &tick.sources {
            if !reading.up {
                *self.down_ticks.entry(source.clone()).or_default() += 1;
            }
        }
        for metric in tick.metrics() {
            if metric.name == "source_up" {
                continue;
            }
            let labels: Vec<&str> = metric.labels.iter().map(|(_, v)| v.as_str()).collect();
            let key = if labels.is_empty() {
                metric.name.clone()
            } else {
                format!("{}{{{}}}", metric.name, labels.join(","))
            };
            let (target, warning) = thresholds
                .for_metric(&metric.name)
                .unwrap_or((f64::INFINITY, f64::INFINITY));
            let range = self.figures.entry(key).or_insert(Range {
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                sum: 0.0,
                count: 0,
                over_target: 0,
                over_warning: 0,
            });
            range.min = range.min.min(metric.value);
            range.max = range.max.max(metric.value);
            range.sum += metric.value;
            range.count += 1;
            range.over_target += u64::from(metric.value >= target);
            range.over_warning += u64::from(metric.value >= warning);
        }
    }

    /// The text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "\nMONITOR SUMMARY ({} ticks, largest spread between sources {:.1} ms)\n",
            self.ticks, self.max_spread_ms
        );
        let _ = writeln!(
            out,
            "{:<58} {:>14} {:>14} {:>14}",
            "figure", "min", "avg", "max"
        );
        for (name, r) in &self.figures {
            let _ = writeln!(
                out,
                "{name:<58} {:>14.2} {:>14.2} {:>14.2}",
                r.min,
                r.sum / r.count.max(1) as f64,
                r.max
            );
            if r.over_target > 0 {
                let secs = |n: u64| (self.interval * n as u32).as_secs_f64();
                let _ = writeln!(
                    out,
                    "    over target for {:.0} s, over warning for {:.0} s",
                    secs(r.over_target),
                    secs(r.over_warning)
                );
            }
        }
        for (source, n) in &self.down_ticks {
            let _ = writeln!(out, "{source} was down in {n} of {} ticks", self.ticks);
        }
        out
    }
}

/// The summary as a sink: accumulates every tick, prints itself on stderr at the end.
pub struct SummarySink {
    /// The summary so far.
    pub summary: Summary,
    /// The thresholds it judges against.
    pub thresholds: Thresholds,
}

#[async_trait::async_trait]
impl super::Sink for SummarySink {
    fn name(&self) -> &'static str {
        "summary"
    }

    fn write(&mut self, tick: &Tick) -> Result<(), super::SinkError> {
        self.summary.add(tick, &self.thresholds);
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), super::SinkError> {
        eprint!("{}", self.summary.render());
        Ok(())
    }
}
