//! Did a steady request overlap start-up work (register, login, uploads)? When CPU-bound
//! start-up work blocks the API (bcrypt on the event loop), the steady requests that were in
//! flight beside it wait for it, and the others do not: comparing the two groups' latencies is
//! per-request evidence, where per-second figures only correlate (and a busy host blurs them).
//!
//! Across the run's threads, two counters tell it at the cost of four atomic loads a request:
//! start-up requests in flight, and start-up requests ever started. A steady request overlapped
//! start-up work if one was in flight when it started, or one started before it finished.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use super::endpoint::new_histogram;

/// The run's start-up requests, as seen by every thread.
#[derive(Debug, Default)]
pub struct StartupWindow {
    in_flight: AtomicU64,
    started: AtomicU64,
}

/// A start-up request in flight; dropping it (answered, failed or abandoned) ends it.
pub struct StartupRequest(Arc<StartupWindow>);

impl Drop for StartupRequest {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a steady request saw of the window when it started.
#[derive(Debug, Clone, Copy)]
pub struct SteadyStart {
    startup_in_flight: bool,
    startup_started: u64,
}

impl StartupWindow {
    /// Marks a start-up request in flight until the returned guard drops.
    pub fn enter(window: &Arc<StartupWindow>) -> StartupRequest {
        window.started.fetch_add(1, Ordering::AcqRel);
        window.in_flight.fetch_add(1, Ordering::AcqRel);
        StartupRequest(window.clone())
    }

    /// Notes the window as a steady request starts.
    pub fn steady_start(&self) -> SteadyStart {
        SteadyStart {
            startup_in_flight: self.in_flight.load(Ordering::Acquire) > 0,
            startup_started: self.started.load(Ordering::Acquire),
        }
    }

    /// Whether the steady request that saw `start` overlapped start-up work.
    pub fn overlapped(&self, start: SteadyStart) -> bool {
        start.startup_in_flight
            || self.in_flight.load(Ordering::Acquire) > 0
            || self.started.load(Ordering::Acquire) != start.startup_started
    }
}

/// Steady latencies, µs, apart by whether the request overlapped start-up work.
#[derive(Debug, Clone)]
pub struct StartupOverlap {
    /// Steady requests in flight beside a start-up request.
    pub overlapped: Histogram<u64>,
    /// Steady requests with no start-up request in flight.
    pub clear: Histogram<u64>,
}

impl Default for StartupOverlap {
    fn default() -> Self {
        Self {
            overlapped: new_histogram(),
            clear: new_histogram(),
        }
    }
}

impl StartupOverlap {
    /// Counts one steady request.
    pub fn record(&mut self, latency_us: u64, overlapped: bool) {
        let histogram = if overlapped {
            &mut self.overlapped
        } else {
            &mut self.clear
        };
        // The histograms grow as needed: recording cannot fail.
        let _ = histogram.record(latency_us.max(1));
    }

    /// Adds `other`, exactly.
    pub fn merge(&mut self, other: &StartupOverlap) {
        // Auto-resizing histograms accept any other's values.
        let _ = self.overlapped.add(&other.overlapped);
        let _ = self.clear.add(&other.clear);
    }

    /// The median of `histogram`, ms (0 when empty).
    pub fn median_ms(histogram: &Histogram<u64>) -> f64 {
        quantile_ms(histogram, 0.5)
    }

    /// The 90th percentile of `histogram`, ms (0 when empty).
    pub fn p90_ms(histogram: &Histogram<u64>) -> f64 {
        quantile_ms(histogram, 0.9)
    }
}

fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    if histogram.is_empty() {
        return 0.0;
    }
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_request_overlaps_start_up_work_in_flight_or_started_during_it() {
        let window = Arc::new(StartupWindow::default());
        let quiet = window.steady_start();
        assert!(!window.overlapped(quiet), "nothing happened");

        let before = window.steady_start();
        let login = StartupWindow::enter(&window);
        drop(login);
        assert!(
            window.overlapped(before),
            "a login started and ended during it"
        );

        let login = StartupWindow::enter(&window);
        let during = window.steady_start();
        drop(login);
        assert!(
            window.overlapped(during),
            "a login was in flight when it started"
        );

        let after = window.steady_start();
        assert!(
            !window.overlapped(after),
            "the login was over before it started"
        );
    }

    #[test]
    fn overlap_figures_merge_exactly() {
        let mut a = StartupOverlap::default();
        a.record(100_000, true);
        a.record(2_000, false);
        let mut b = StartupOverlap::default();
        b.record(300_000, true);
        a.merge(&b);
        assert_eq!((a.overlapped.len(), a.clear.len()), (2, 1));
        assert!((StartupOverlap::median_ms(&a.clear) - 2.0).abs() < 0.01);
    }
}
