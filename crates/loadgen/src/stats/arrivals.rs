//! The open model's own figures: iterations scheduled, started late (the scheduler's lag) and
//! dropped (no free user, the cap reached), in total, by user type and by second; and the
//! service time (from the send), beside the response time (from the scheduled start) that
//! the endpoint rows hold. A closed run leaves them empty.

use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::endpoint::new_histogram;

/// An iteration that started later than this after its scheduled instant counts as late.
pub const LATE_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

/// Iterations of the open model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrivalCounts {
    /// Due by the schedule (started or dropped).
    pub scheduled: u64,
    /// Not started: no user was free and the users were at their cap.
    pub dropped: u64,
    /// Started more than [`LATE_AFTER`] after their scheduled instant.
    pub late: u64,
}

impl ArrivalCounts {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Self) {
        self.scheduled += other.scheduled;
        self.dropped += other.dropped;
        self.late += other.late;
    }

    /// Counts one iteration.
    fn count(&mut self, fate: Fate) {
        self.scheduled += 1;
        match fate {
            Fate::Started { late } => self.late += u64::from(late),
            Fate::Dropped => self.dropped += 1,
        }
    }
}

/// What became of one scheduled iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Started on a user; `late` past [`LATE_AFTER`].
    Started {
        /// Whether it started late.
        late: bool,
    },
    /// Dropped: no free user, and the users at their cap.
    Dropped,
}

/// The open model's iterations of a shard or of the run, and its service times.
#[derive(Debug, Clone, Default)]
pub struct Arrivals {
    /// Every iteration.
    pub total: ArrivalCounts,
    /// By user type.
    pub by_type: BTreeMap<Arc<str>, ArrivalCounts>,
    /// Steady requests timed from their send (the response time of an iteration's first
    /// request runs from its scheduled instant instead), µs; `None` until the first.
    pub service: Option<Histogram<u64>>,
}

impl Arrivals {
    /// Adds `other` into `self`; exact.
    pub fn merge(&mut self, other: &Self) {
        self.total.merge(&other.total);
        for (name, counts) in &other.by_type {
            self.by_type.entry(name.clone()).or_default().merge(counts);
        }
        if let Some(other) = &other.service {
            // Auto-resizing histograms: adding cannot fail on range.
            let _ = self.service.get_or_insert_with(new_histogram).add(other);
        }
    }

    /// Counts one iteration of `user_type`.
    pub fn count(&mut self, user_type: &Arc<str>, fate: Fate) {
        self.total.count(fate);
        match self.by_type.get_mut(user_type) {
            Some(counts) => counts.count(fate),
            None => self
                .by_type
                .entry(user_type.clone())
                .or_default()
                .count(fate),
        }
    }

    /// Records one steady request's service time.
    pub fn record_service(&mut self, service_us: u64) {
        let _ = self
            .service
            .get_or_insert_with(new_histogram)
            .record(service_us.max(1));
    }

    /// The service time's percentile `p`, ms (0 with none).
    pub fn service_ms(&self, p: f64) -> f64 {
        self.service
            .as_ref()
            .filter(|h| !h.is_empty())
            .map_or(0.0, |h| h.value_at_percentile(p) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_by_type_and_in_total() {
        let (a, b): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        let mut one = Arrivals::default();
        one.count(&a, Fate::Started { late: false });
        one.count(&a, Fate::Dropped);
        one.record_service(2000);
        let mut two = Arrivals::default();
        two.count(&b, Fate::Started { late: true });
        two.record_service(4000);
        one.merge(&two);
        assert_eq!(
            one.total,
            ArrivalCounts {
                scheduled: 3,
                dropped: 1,
                late: 1
            }
        );
        assert_eq!(one.by_type[&a].dropped, 1);
        assert_eq!(one.by_type[&b].late, 1);
        assert!((one.service_ms(100.0) - 4.0).abs() < 0.01);
    }
}
