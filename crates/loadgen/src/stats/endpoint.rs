//! The figures of one row (an endpoint, or all of them): counts, a latency histogram, bytes and
//! status codes, in the units Locust's tables use when printed.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// A microsecond histogram with 3 significant figures that grows as needed.
pub fn new_histogram() -> Histogram<u64> {
    // new(3) auto-resizes, so no latency is ever out of range.
    Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures is valid"))
}

/// One row.
#[derive(Debug, Clone)]
pub struct EndpointStats {
    /// Latencies, µs.
    pub histogram: Histogram<u64>,
    /// Requests.
    pub count: u64,
    /// Failed requests.
    pub failures: u64,
    /// Sum of latencies, µs (for an exact average).
    pub total_us: u64,
    /// Fastest, µs.
    pub min_us: u64,
    /// Slowest, µs.
    pub max_us: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Where the time of the requests went.
    pub phases: PhaseHistograms,
    /// Times requests were sent again after their kept-alive connection closed unanswered:
    /// each reached the server once more.
    pub retries: u64,
    /// Of the failed requests, those with no complete answer within their timeout.
    pub timed_out: u64,
    /// The ages, µs, of the requests still unanswered when their user was stopped: censored
    /// latencies (each took at least its age), counted in the percentiles and the maximum but
    /// not in `count`, the average or the minimum.
    pub unanswered: Histogram<u64>,
}

/// Connect, TLS handshake and time to first byte, µs: a slow handshake or a slow server shows
/// apart from a slow body.
#[derive(Debug, Clone)]
pub struct PhaseHistograms {
    /// TCP connects (only requests that opened a connection).
    pub connect: Histogram<u64>,
    /// TLS handshakes (only https requests that opened a connection).
    pub tls: Histogram<u64>,
    /// Start of the request to the first byte of the answer.
    pub first_byte: Histogram<u64>,
}

impl Default for PhaseHistograms {
    fn default() -> Self {
        Self {
            connect: new_histogram(),
            tls: new_histogram(),
            first_byte: new_histogram(),
        }
    }
}

impl PhaseHistograms {
    /// Counts one exchange's phases.
    pub fn record(&mut self, timings: &crate::http::Timings) {
        if let Some(us) = timings.connect_us {
            let _ = self.connect.record(us.max(1));
        }
        if let Some(us) = timings.tls_us {
            let _ = self.tls.record(us.max(1));
        }
        let _ = self.first_byte.record(timings.first_byte_us.max(1));
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Self) {
        let _ = self.connect.add(&other.connect);
        let _ = self.tls.add(&other.tls);
        let _ = self.first_byte.add(&other.first_byte);
    }
}

impl Default for EndpointStats {
    fn default() -> Self {
        Self {
            histogram: new_histogram(),
            count: 0,
            failures: 0,
            total_us: 0,
            min_us: u64::MAX,
            max_us: 0,
            bytes: 0,
            statuses: BTreeMap::new(),
            phases: PhaseHistograms::default(),
            retries: 0,
            timed_out: 0,
            unanswered: new_histogram(),
        }
    }
}

impl EndpointStats {
    /// Counts one request.
    pub fn record(&mut self, latency_us: u64, bytes: u64, status: Option<u16>, failed: bool) {
        let latency_us = latency_us.max(1);
        // `record` grows the auto-resizing histogram; `saturating_record` would clamp instead.
        let _ = self.histogram.record(latency_us);
        self.count += 1;
        self.failures += u64::from(failed);
        self.total_us += latency_us;
        self.min_us = self.min_us.min(latency_us);
        self.max_us = self.max_us.max(latency_us);
        self.bytes += bytes;
        if let Some(status) = status {
            *self.statuses.entry(status).or_default() += 1;
        }
    }

    /// Counts a request still unanswered at the stop, `age_us` after it went out.
    pub fn record_unanswered(&mut self, age_us: u64) {
        let _ = self.unanswered.record(age_us.max(1));
    }

    /// Requests unanswered at the stop.
    pub fn unanswered_count(&self) -> u64 {
        self.unanswered.len()
    }

    /// The latencies the percentiles are read from: the answered requests', and the ages of
    /// those unanswered at the stop (a stalled request is at least that slow).
    pub fn latencies(&self) -> std::borrow::Cow<'_, Histogram<u64>> {
        if self.unanswered.is_empty() {
            return std::borrow::Cow::Borrowed(&self.histogram);
        }
        let mut all = self.histogram.clone();
        let _ = all.add(&self.unanswered);
        std::borrow::Cow::Owned(all)
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Self) {
        let _ = self.unanswered.add(&other.unanswered);
        self.merge_answered(other);
    }

    /// Adds `other`'s answered and failed requests into `self`, without the requests
    /// unanswered at the stop: a second's figures are of the requests that ended in it.
    pub fn merge_answered(&mut self, other: &Self) {
        let _ = self.histogram.add(&other.histogram);
        self.retries += other.retries;
        self.timed_out += other.timed_out;
        self.count += other.count;
        self.failures += other.failures;
        self.total_us += other.total_us;
        self.min_us = self.min_us.min(other.min_us);
        self.max_us = self.max_us.max(other.max_us);
        self.bytes += other.bytes;
        for (status, count) in &other.statuses {
            *self.statuses.entry(*status).or_default() += count;
        }
        self.phases.merge(&other.phases);
    }

    /// Mean latency, ms.
    pub fn average_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_us as f64 / self.count as f64 / 1000.0
        }
    }

    /// Fastest, ms (0 when empty).
    pub fn min_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.min_us as f64 / 1000.0
        }
    }

    /// Slowest, ms: a request unanswered at the stop counts at its age.
    pub fn max_ms(&self) -> f64 {
        let unanswered = if self.unanswered.is_empty() {
            0
        } else {
            self.unanswered.max()
        };
        self.max_us.max(unanswered) as f64 / 1000.0
    }

    /// A percentile, ms (0 when empty), the requests unanswered at the stop counted at their
    /// age.
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        let latencies = self.latencies();
        if latencies.is_empty() {
            0.0
        } else {
            latencies.value_at_percentile(percentile) as f64 / 1000.0
        }
    }

    /// Share of failed requests, 0 to 1.
    pub fn failure_ratio(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.failures as f64 / self.count as f64
        }
    }

    /// Mean body size, bytes.
    pub fn average_bytes(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.bytes as f64 / self.count as f64
        }
    }

    /// Answers with this status.
    pub fn status_count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}
