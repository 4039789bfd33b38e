//! Requests sent and not yet answered. Each one holds an [`InFlight`] entry in its thread's
//! table from the moment it goes out until its answer (or its failure) comes, so that none can
//! vanish: once a second the thread reports how many are waiting and for how long (the live
//! view's oldest request, the stuck users), and a request whose user is stopped before its
//! answer comes is recorded as a censored value, at least as slow as its age (issue 22: a run
//! where 5 % of the requests were never answered reported a p99 of 3.9 ms).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{HistoryRow, Key, Phase, PollBudget, SHARD, Stats};
use crate::http::Sends;

/// A user waiting longer than this for one answer is stuck: far beyond what an interactive
/// client waits, and far beyond a healthy API's slowest answers.
pub const STUCK_AFTER: Duration = Duration::from_secs(5);

/// The requests in flight at one moment (a level, not a count of events).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct InFlightLevel {
    /// Requests waiting for their answer, job polls included.
    pub requests: u64,
    /// How long the oldest of them has been waiting, ms.
    pub oldest_ms: u64,
    /// Users' requests (not job polls) waiting for longer than [`STUCK_AFTER`].
    pub stuck_users: u64,
}

impl InFlightLevel {
    /// The level of two threads (or processes) together.
    pub fn merge(&mut self, other: &InFlightLevel) {
        self.requests += other.requests;
        self.oldest_ms = self.oldest_ms.max(other.oldest_ms);
        self.stuck_users += other.stuck_users;
    }
}

/// One request in the table: when it went out, and whether a user (not a job poller) waits
/// for it.
#[derive(Clone, Copy)]
struct Entry {
    started: Instant,
    user: bool,
}

/// A slab: entries are reused, so after the first seconds a request costs no allocation.
#[derive(Default)]
struct Table {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// A request on its way: create it right before the request is written, call
/// [`InFlight::answered`] when its answer or failure is in hand. Dropped without that (its user
/// was stopped or its task dropped), it records the request as in flight at the stop, with its
/// age as a censored latency of its endpoint.
pub struct InFlight<'k> {
    key: &'k Key,
    /// The run's poll budget, which counts the requests answered: here, once for every
    /// request, whatever sends it.
    budget: &'k PollBudget,
    slot: usize,
    started: Instant,
    /// What the connections the request goes over have written, and the counts when the
    /// request began: a request resent and then cut off still counts its resend, and one cut
    /// off before its bytes went out (while it connected) was never sent.
    sends: Rc<Sends>,
    resent_before: u64,
    written_before: u64,
    answered: bool,
}

impl<'k> InFlight<'k> {
    /// A request of `key`'s row going out now over connections that count what they write in
    /// `sends`, in the run of `budget`.
    pub fn start(key: &'k Key, sends: Rc<Sends>, budget: &'k PollBudget) -> Self {
        let started = Instant::now();
        let entry = Entry {
            started,
            user: key.phase != Phase::Poll,
        };
        let slot = TABLE.with(|table| {
            let mut table = table.borrow_mut();
            match table.free.pop() {
                Some(slot) => {
                    table.entries[slot] = Some(entry);
                    slot
                }
                None => {
                    table.entries.push(Some(entry));
                    table.entries.len() - 1
                }
            }
        });
        Self {
            key,
            budget,
            slot,
            started,
            resent_before: sends.resent(),
            written_before: sends.written(),
            sends,
            answered: false,
        }
    }

    /// When it went out.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Its answer or failure came: it leaves the table. Returns how many times it was resent.
    pub fn answered(mut self) -> u64 {
        self.answered = true;
        self.budget.count_answered();
        self.retries()
    }

    fn retries(&self) -> u64 {
        self.sends.resent().saturating_sub(self.resent_before)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        // try_with: a thread that is ending may have dropped its tables already.
        let _ = TABLE.try_with(|table| {
            let mut table = table.borrow_mut();
            if let Some(entry) = table.entries.get_mut(self.slot) {
                *entry = None;
                table.free.push(self.slot);
            }
        });
        if self.answered {
            return;
        }
        let age_us = self.started.elapsed().as_micros() as u64;
        let retries = self.retries();
        let written = self.sends.written() > self.written_before;
        let _ = SHARD.try_with(|shard| {
            let mut shard = shard.borrow_mut();
            let stats = &mut shard.stats;
            if written {
                stats.in_flight_at_stop += 1;
            } else {
                stats.unsent_at_stop += 1;
            }
            stats.resent += retries;
            let endpoint = stats.endpoints.entry(self.key.clone()).or_default();
            endpoint.record_unanswered(age_us);
            endpoint.retries += retries;
        });
    }
}

/// This thread's requests in flight now.
pub(super) fn census() -> InFlightLevel {
    let now = Instant::now();
    TABLE.with(|table| {
        let mut level = InFlightLevel::default();
        for entry in table.borrow().entries.iter().flatten() {
            let age = now.saturating_duration_since(entry.started);
            level.requests += 1;
            level.oldest_ms = level.oldest_ms.max(age.as_millis() as u64);
            level.stuck_users += u64::from(entry.user && age > STUCK_AFTER);
        }
        level
    })
}

/// Users who waited longer than [`STUCK_AFTER`] for an answer, over a whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StuckUsers {
    /// The most stuck at once: in a second of the run, or at its stop.
    pub peak: u64,
    /// Of the users' requests in flight when the run stopped, those older than [`STUCK_AFTER`].
    pub at_stop: u64,
    /// The first second of the run (its end, s) in which a user was stuck.
    pub first_secs: Option<u64>,
    /// The oldest request in flight at the stop, ms.
    pub oldest_at_stop_ms: u64,
}

impl StuckUsers {
    /// The stuck users of a run, from its totals (the censored requests at the stop) and its
    /// seconds (the stuck users each second).
    pub fn of(stats: &Stats, history: &[HistoryRow]) -> Self {
        let threshold_us = STUCK_AFTER.as_micros() as u64;
        let users_unanswered = || {
            stats
                .endpoints
                .iter()
                .filter(|(key, _)| key.phase != Phase::Poll)
                .map(|(_, e)| &e.unanswered)
        };
        let at_stop = users_unanswered()
            .map(|ages| ages.count_between(threshold_us + 1, u64::MAX))
            .sum();
        let oldest_at_stop_ms = stats
            .endpoints
            .values()
            .filter(|e| !e.unanswered.is_empty())
            .map(|e| e.unanswered.max() / 1000)
            .max()
            .unwrap_or(0);
        let during = history
            .iter()
            .map(|row| row.in_flight.stuck_users)
            .max()
            .unwrap_or(0);
        let first_secs = history
            .iter()
            .find(|row| row.in_flight.stuck_users > 0)
            .map(|row| row.at_secs);
        Self {
            peak: during.max(at_stop),
            at_stop,
            first_secs,
            oldest_at_stop_ms,
        }
    }

    /// Whether more than half of the `peak_users` were stuck at once: no latency or failure
    /// figure of such a run describes the API.
    pub fn most_of(&self, peak_users: u64) -> bool {
        self.peak > 0 && self.peak * 2 > peak_users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(phase: Phase) -> Key {
        Key {
            phase,
            method: "GET".into(),
            name: "/slow".into(),
        }
    }

    #[test]
    fn a_request_dropped_unanswered_is_counted_at_its_age_with_its_resends() {
        let (user_sends, poll_sends) = (Rc::new(Sends::default()), Rc::new(Sends::default()));
        let budget = PollBudget::default();
        let (user, poll) = (key(Phase::Steady), key(Phase::Poll));
        drop(crate::stats::take_shard());
        let answered = InFlight::start(&user, user_sends.clone(), &budget);
        user_sends.count_written(false);
        user_sends.count_written(true);
        assert_eq!(answered.answered(), 1, "the resend during it");
        let cut_off = InFlight::start(&user, user_sends.clone(), &budget);
        user_sends.count_written(true);
        // A poll whose connection never opened: nothing of it went out.
        let connecting = InFlight::start(&poll, poll_sends, &budget);
        let level = census();
        assert_eq!((level.requests, level.stuck_users), (2, 0));
        std::thread::sleep(Duration::from_millis(20));
        drop(cut_off);
        drop(connecting);
        assert_eq!(census().requests, 0, "every entry left the table");
        let shard = crate::stats::take_shard();
        assert_eq!(
            (shard.stats.in_flight_at_stop, shard.stats.unsent_at_stop),
            (1, 1),
            "sent and unanswered, apart from never sent"
        );
        let row = &shard.stats.endpoints[&user];
        assert_eq!((row.count, row.unanswered.len(), row.retries), (0, 1, 1));
        assert!(row.unanswered.max() >= 20_000, "{}", row.unanswered.max());
        assert!(
            row.percentile_ms(99.0) >= 20.0,
            "in the percentiles at its age"
        );
        // The table's slots are reused.
        let again = InFlight::start(&user, user_sends, &budget);
        assert!(again.slot <= 2);
        let _ = again.answered();
    }
}
