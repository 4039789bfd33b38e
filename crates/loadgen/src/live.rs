//! The live view while a run goes, a driver's reading of the engine's updates: a progress line
//! on a terminal, Locust's requests table every `--stats-interval` otherwise (CI logs), both
//! on stderr as Locust's.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::config::LiveConfig;
use crate::engine::RunHandle;
use crate::outcome::Update;
use crate::report::{self, Row};
use crate::shape::StageAt;
use crate::stats::{InFlightLevel, Phase};

/// Follows `handle` until the run ends, printing as `config` says.
pub async fn follow(handle: &RunHandle, config: &LiveConfig, run_time: Option<Duration>) {
    if config.quiet {
        return;
    }
    let terminal = std::io::stderr().is_terminal();
    let mut updates = handle.subscribe();
    let mut last_table = Instant::now();
    let mut counted = Counted::default();
    while updates.changed().await.is_ok() {
        let Some(update) = updates.borrow_and_update().clone() else {
            continue;
        };
        if terminal {
            eprint!("\r{}   ", progress_line(&update, run_time, handle.stage()));
        } else if last_table.elapsed() >= config.every {
            last_table = Instant::now();
            print_table(handle, &update, &mut counted).await;
        }
    }
    if terminal {
        eprintln!();
    }
}

/// `[  12s] users 10/10 | 48.0 req/s | failures 3 (0.52%) | p95 120 ms | oldest in flight
/// 0.2 s | 18s left`; with a load shape, `users 2/6 (stage 2 of 3)`.
pub fn progress_line(
    update: &Update,
    run_time: Option<Duration>,
    stage: Option<StageAt>,
) -> String {
    let left = run_time
        .map(|t| format!("{}s left", t.saturating_sub(update.elapsed).as_secs()))
        .unwrap_or_else(|| "Ctrl-C to stop".into());
    let so_far = &update.second.cumulative;
    let failure_pct = so_far.failures as f64 * 100.0 / so_far.requests.max(1) as f64;
    format!(
        "[{:>4}s] users {}/{}{} | {:.1} req/s | failures {} ({failure_pct:.2}%) | p95 {:.0} ms | {} | {left}",
        update.elapsed.as_secs(),
        update.users,
        update.target_users,
        stage_note(stage),
        update.second.interval.count,
        so_far.failures,
        so_far.steady_p95_ms,
        oldest_in_flight(&update.second.in_flight)
    )
}

/// ` (stage 2 of 3)` while a load shape drives the run.
fn stage_note(stage: Option<StageAt>) -> String {
    stage.map(|s| format!(" ({s})")).unwrap_or_default()
}

/// `oldest in flight 12.3 s (4 stuck)`: a hung request shows while it hangs, not only in the
/// summary (a p95 of the answered requests stays low while users wait forever).
fn oldest_in_flight(level: &InFlightLevel) -> String {
    let stuck = if level.stuck_users > 0 {
        format!(" ({} stuck)", level.stuck_users)
    } else {
        String::new()
    };
    format!(
        "oldest in flight {:.1} s{stuck}",
        level.oldest_ms as f64 / 1000.0
    )
}

/// Locust's "current" rates of the live table: its window, and each row's requests and
/// failures so far at each table printed within it (oldest first), by (name, method).
const CURRENT_WINDOW: Duration = Duration::from_secs(10);

type Counts = std::collections::BTreeMap<(String, String), (u64, u64)>;

#[derive(Default)]
struct Counted {
    tables: std::collections::VecDeque<(Duration, Counts)>,
}

impl Counted {
    /// Sets each row's rates to those of the last 10 s (Locust's `current_rps`), from the
    /// counts at the oldest table printed within them (the run's start before the first).
    fn current_rates(&mut self, elapsed: Duration, rows: &mut [Row]) {
        let now: Counts = rows
            .iter()
            .map(|r| ((r.name.clone(), r.method.clone()), (r.requests, r.failures)))
            .collect();
        while self
            .tables
            .get(1)
            .is_some_and(|(at, _)| elapsed.saturating_sub(*at) >= CURRENT_WINDOW)
        {
            self.tables.pop_front();
        }
        let (since, then) = match self.tables.front() {
            Some((at, counts)) if elapsed.saturating_sub(*at) >= CURRENT_WINDOW / 2 => {
                (*at, Some(counts))
            }
            _ => (Duration::ZERO, None),
        };
        let secs = elapsed.saturating_sub(since).as_secs_f64().max(1e-9);
        for row in rows.iter_mut() {
            let (requests, failures) = then
                .and_then(|c| c.get(&(row.name.clone(), row.method.clone())))
                .copied()
                .unwrap_or_default();
            row.rps = row.requests.saturating_sub(requests) as f64 / secs;
            row.failures_per_sec = row.failures.saturating_sub(failures) as f64 / secs;
        }
        self.tables.push_back((elapsed, now));
    }
}

/// Locust's requests table of every request so far (start-up and job polls too, as Locust's
/// and the CSV count them), on stderr as Locust prints it, then what loadgen adds: the time,
/// the users, how many of the requests were start-up ones and job polls, those in flight.
async fn print_table(handle: &RunHandle, update: &Update, counted: &mut Counted) {
    let Ok(stats) = handle.snapshot().await.to_stats() else {
        return;
    };
    let secs = update.elapsed.as_secs_f64().max(1e-9);
    let mut by_name: std::collections::BTreeMap<(&str, &str), crate::stats::EndpointStats> =
        std::collections::BTreeMap::new();
    for (key, e) in &stats.endpoints {
        by_name
            .entry((&*key.name, &*key.method))
            .or_default()
            .merge(e);
    }
    let mut rows: Vec<Row> = by_name
        .iter()
        .map(|((name, method), e)| Row::live(method, name, e, secs))
        .chain([Row::live("", "Aggregated", &stats.aggregated_all(), secs)])
        .collect();
    // The rates of the last 10 s, as Locust's live table has them.
    counted.current_rates(update.elapsed, &mut rows);
    let Some(total) = rows.pop() else {
        return;
    };
    let part = |phase: Phase, what: &str| {
        let part = stats.aggregated(phase);
        if part.count == 0 {
            return String::new();
        }
        format!(
            "Of which {what}: {} requests, {} failed, avg {:.0} ms\n",
            part.count,
            part.failures,
            part.average_ms()
        )
    };
    let in_flight = &update.second.in_flight;
    report::print_err(&format!(
        "{}\n{}{}[{:.0}s, {} users{}] In flight: {} request(s), {}\n\n",
        report::console::requests_table(&rows, &total),
        part(Phase::Startup, "start-up and stop (on_start, on_stop)"),
        part(Phase::Poll, "job polls"),
        update.elapsed.as_secs_f64(),
        update.users,
        stage_note(handle.stage()),
        in_flight.requests,
        oldest_in_flight(in_flight)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_tables_rates_are_those_of_the_last_ten_seconds() {
        let row = |requests: u64, failures: u64| {
            let mut stats = crate::stats::EndpointStats::default();
            for i in 0..requests {
                stats.record(1_000, 10, Some(200), i < failures);
            }
            Row::live("GET", "/items", &stats, 1.0)
        };
        let mut counted = Counted::default();
        let secs = Duration::from_secs;
        // 10 req/s for the first 10 s, then 30 req/s.
        let mut rows = [row(20, 0)];
        counted.current_rates(secs(2), &mut rows);
        assert!(
            (rows[0].rps - 10.0).abs() < 1e-9,
            "since the start: {}",
            rows[0].rps
        );
        for at in (4..=10).step_by(2) {
            counted.current_rates(secs(at), &mut [row(10 * at, 0)]);
        }
        let mut rows = [row(100 + 300, 60)];
        counted.current_rates(secs(20), &mut rows);
        assert!(
            (rows[0].rps - 30.0).abs() < 1e-9 && (rows[0].failures_per_sec - 6.0).abs() < 1e-9,
            "the last 10 s: {} req/s, {} failures/s",
            rows[0].rps,
            rows[0].failures_per_sec
        );
    }

    #[test]
    fn the_progress_line_shows_the_oldest_request_in_flight() {
        let mut second = crate::stats::HistoryRow {
            at_secs: 12,
            timestamp: std::time::SystemTime::now(),
            users: 20,
            interval: Default::default(),
            loadgen_cpu_pct: 0.0,
            loadgen_rss_bytes: 0,
            timer_lag_ms: 0.0,
            endpoints: Vec::new(),
            jobs_done: 0,
            jobs_in_flight: 0,
            in_flight: InFlightLevel {
                requests: 20,
                oldest_ms: 11_800,
                stuck_users: 19,
            },
            cumulative: Default::default(),
            per_name: None,
            arrivals: Default::default(),
            reset: false,
        };
        let update = |second: &crate::stats::HistoryRow| Update {
            elapsed: Duration::from_secs(12),
            users: 20,
            target_users: 20,
            users_by_type: Default::default(),
            second: std::sync::Arc::new(second.clone()),
        };
        let line = progress_line(&update(&second), None, None);
        assert!(
            line.contains("| oldest in flight 11.8 s (19 stuck) |"),
            "{line}"
        );
        let stage = crate::shape::StageAt {
            number: 2,
            of: 3,
            users: 20,
            left: Duration::from_secs(1),
        };
        let line = progress_line(&update(&second), None, Some(stage));
        assert!(line.contains("users 20/20 (stage 2 of 3) |"), "{line}");
        second.in_flight = InFlightLevel {
            requests: 3,
            oldest_ms: 40,
            stuck_users: 0,
        };
        let line = progress_line(&update(&second), None, None);
        assert!(line.contains("| oldest in flight 0.0 s |"), "{line}");
    }
}
