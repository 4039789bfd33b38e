//! What changed between two cumulative figures of the same run: a master receives its
//! workers' totals so far (a message lost or received twice then costs nothing) and takes the
//! difference from the last ones to build its per-second timeline.

use super::{EndpointStats, Shard, Stats};

impl EndpointStats {
    /// The requests counted in `self` and not in `earlier` (an earlier figure of the same
    /// endpoint). The fastest and slowest are the histogram's (exact to its precision).
    pub fn since(&self, earlier: &EndpointStats) -> EndpointStats {
        let mut histogram = self.histogram.clone();
        if histogram.subtract(&earlier.histogram).is_err() {
            // Not an earlier figure of the same endpoint (stats were reset in between): all
            // of `self` is new.
            return self.clone();
        }
        let mut phases = self.phases.clone();
        let _ = phases.connect.subtract(&earlier.phases.connect);
        let _ = phases.tls.subtract(&earlier.phases.tls);
        let _ = phases.first_byte.subtract(&earlier.phases.first_byte);
        let count = self.count.saturating_sub(earlier.count);
        let mut statuses = self.statuses.clone();
        for (status, n) in &earlier.statuses {
            if let Some(now) = statuses.get_mut(status) {
                *now = now.saturating_sub(*n);
            }
        }
        statuses.retain(|_, n| *n > 0);
        let mut unanswered = self.unanswered.clone();
        if unanswered.subtract(&earlier.unanswered).is_err() {
            unanswered = self.unanswered.clone();
        }
        EndpointStats {
            min_us: if count == 0 {
                u64::MAX
            } else {
                histogram.min()
            },
            max_us: if count == 0 { 0 } else { histogram.max() },
            histogram,
            count,
            failures: self.failures.saturating_sub(earlier.failures),
            total_us: self.total_us.saturating_sub(earlier.total_us),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            statuses,
            phases,
            retries: self.retries.saturating_sub(earlier.retries),
            timed_out: self.timed_out.saturating_sub(earlier.timed_out),
            unanswered,
        }
    }
}

impl Stats {
    /// What happened between `earlier` and `self` (two figures of the same run), as a
    /// thread's shard of the run's `second`: the requests of each endpoint, and the jobs that
    /// ended.
    pub fn shard_since(&self, earlier: &Stats, second: u64) -> Shard {
        let mut shard = Shard::default();
        for (key, now) in &self.endpoints {
            let delta = match earlier.endpoints.get(key) {
                Some(before) => now.since(before),
                None => now.clone(),
            };
            if delta.count > 0 {
                shard
                    .interval
                    .by_second
                    .entry(second)
                    .or_default()
                    .merge_answered(&delta);
            }
            if delta.count > 0 || !delta.unanswered.is_empty() {
                shard.stats.endpoints.insert(key.clone(), delta);
            }
        }
        for (kind, now) in &self.jobs {
            let before = earlier.jobs.get(kind);
            let ended = |f: fn(&super::JobStats) -> u64| f(now).saturating_sub(before.map_or(0, f));
            let mut delta = super::JobStats {
                completed: ended(|j| j.completed),
                failed: ended(|j| j.failed),
                unfinished: ended(|j| j.unfinished),
                unknown: ended(|j| j.unknown),
                ..super::JobStats::default()
            };
            delta.timed_out = ended(|j| j.timed_out);
            if delta.completed + delta.failed + delta.unfinished + delta.unknown > 0 {
                shard.stats.jobs.insert(kind.clone(), delta);
            }
        }
        // The open model's iterations due since, in this second (a worker's are its own).
        let (now, before) = (&self.arrivals.total, &earlier.arrivals.total);
        let arrivals = super::ArrivalCounts {
            scheduled: now.scheduled.saturating_sub(before.scheduled),
            dropped: now.dropped.saturating_sub(before.dropped),
            late: now.late.saturating_sub(before.late),
        };
        if arrivals.scheduled > 0 {
            shard.interval.arrivals.insert(second, arrivals);
        }
        shard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Key, Phase};

    fn key(name: &str) -> Key {
        Key {
            phase: Phase::Steady,
            method: "GET".into(),
            name: name.into(),
        }
    }

    fn stats(requests: &[(&str, u64)]) -> Stats {
        let mut stats = Stats::default();
        for (name, latency_us) in requests {
            stats
                .endpoints
                .entry(key(name))
                .or_default()
                .record(*latency_us, 10, Some(200), false);
        }
        stats
    }

    #[test]
    fn the_difference_of_two_totals_is_exactly_the_requests_in_between() {
        let mut before = stats(&[("/a", 1_000), ("/a", 2_000), ("/b", 5_000)]);
        let reader: std::sync::Arc<str> = "Reader".into();
        before.arrivals.count(&reader, crate::stats::Fate::Dropped);
        let mut after = before.clone();
        after.merge(&stats(&[("/a", 90_000), ("/c", 7_000)]));
        after.arrivals.count(&reader, crate::stats::Fate::Dropped);
        after
            .arrivals
            .count(&reader, crate::stats::Fate::Started { late: true });
        let shard = after.shard_since(&before, 7);
        let a = &shard.stats.endpoints[&key("/a")];
        assert_eq!((a.count, a.total_us, a.bytes), (1, 90_000, 10));
        assert!(a.min_us >= 89_000 && a.max_us <= 91_000, "{a:?}");
        assert_eq!(a.status_count(200), 1);
        assert!(!shard.stats.endpoints.contains_key(&key("/b")));
        assert_eq!(shard.stats.endpoints[&key("/c")].count, 1);
        assert_eq!(shard.interval.by_second[&7].count, 2);
        assert_eq!(shard.interval.count(), 2);
        assert_eq!(
            shard.interval.arrivals[&7],
            crate::stats::ArrivalCounts {
                scheduled: 2,
                dropped: 1,
                late: 1
            },
            "the iterations due in between, in the second"
        );
        // Taking it back adds up to the later total.
        let mut rebuilt = before.clone();
        rebuilt.merge(&shard.stats);
        assert_eq!(
            rebuilt.endpoints[&key("/a")].histogram,
            after.endpoints[&key("/a")].histogram
        );
    }

    #[test]
    fn a_total_smaller_than_the_earlier_one_counts_whole() {
        let before = stats(&[("/a", 1_000), ("/a", 2_000)]);
        let after = stats(&[("/a", 3_000)]);
        let shard = after.shard_since(&before, 0);
        assert_eq!(shard.stats.endpoints[&key("/a")].count, 1);
    }
}
