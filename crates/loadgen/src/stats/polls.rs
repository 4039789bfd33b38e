//! The run's poll budget: loadgen's own job polls stay within a tenth of its requests, whatever
//! the jobs do. Stuck jobs polled until the end of a run were once 21 % of its requests: they
//! weighed on the load and the figures they were meant to observe.
//!
//! Across the run's threads: the requests answered (counted once, where every request ends:
//! [`super::InFlight::answered`]), and, together under one lock because each decision reads all
//! three, the polls sent, the first polls owed to the jobs followed, and the followed jobs
//! waiting for a poll the budget held back. A new job is followed only if its first poll fits
//! and no followed job is waiting: under a tight budget loadgen follows fewer jobs rather than
//! reading the followed ones less. A followed job's first poll is reserved, so its status is
//! read; a later poll held back goes out as soon as the users' requests make room for it. A
//! stalled job (see `user::pace`) waits without holding new jobs back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Polls are at most one in this many requests (polls included).
pub const SHARE: u64 = 10;

/// The first polls of a run are free, so that the first jobs are read before the users' own
/// requests add up.
pub const FREE_POLLS: u64 = 5;

/// The budget of one run (one process of it), shared by its threads.
#[derive(Debug, Default)]
pub struct PollBudget {
    answered: AtomicU64,
    polls: Mutex<Polls>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Polls {
    sent: u64,
    owed: u64,
    waiting: u64,
}

impl Polls {
    /// Whether `extra` more polls keep the polls within the budget of `answered` requests.
    fn fit(&self, extra: u64, answered: u64) -> bool {
        let polls = self.sent + self.owed + extra;
        polls <= FREE_POLLS || polls.saturating_mul(SHARE) <= answered
    }
}

impl PollBudget {
    /// Counts a request answered (or failed), of any phase.
    pub(super) fn count_answered(&self) {
        self.answered.fetch_add(1, Ordering::AcqRel);
    }

    /// Starts following a job, with its first poll reserved; `None` when that poll does not
    /// fit or a followed job waits for one (the job is then not followed).
    pub fn follow(self: &Arc<Self>) -> Option<JobPolls> {
        let answered = self.answered.load(Ordering::Acquire);
        let mut polls = self.lock();
        if polls.waiting > 0 || !polls.fit(1, answered) {
            return None;
        }
        polls.owed += 1;
        Some(JobPolls {
            budget: self.clone(),
            owed: true,
            waiting: false,
        })
    }

    /// Polls sent so far.
    pub fn sent(&self) -> u64 {
        self.lock().sent
    }

    fn lock(&self) -> MutexGuard<'_, Polls> {
        // The counters stay consistent whatever panicked while holding them.
        self.polls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A followed job's share of the budget. Dropped (the job ended, or the run), it gives back
/// what it held.
#[derive(Debug)]
pub struct JobPolls {
    budget: Arc<PollBudget>,
    owed: bool,
    waiting: bool,
}

impl JobPolls {
    /// Whether the job may send a poll now (then it is counted as sent). If not, the job
    /// waits for one, and no new job is followed until it had it, unless it `stalled`: the
    /// polls of a job whose status no longer moves tell the least, and stuck jobs must not
    /// keep every other job from being followed.
    pub fn may_send(&mut self, stalled: bool) -> bool {
        let answered = self.budget.answered.load(Ordering::Acquire);
        let mut polls = self.budget.lock();
        let granted = if self.owed {
            // Its first poll, reserved when it was followed.
            self.owed = false;
            polls.owed -= 1;
            true
        } else {
            polls.fit(1, answered)
        };
        polls.sent += u64::from(granted);
        let waiting = !granted && !stalled;
        if waiting != self.waiting {
            self.waiting = waiting;
            if waiting {
                polls.waiting += 1;
            } else {
                polls.waiting -= 1;
            }
        }
        granted
    }

    /// The run's budget, for the requests to count their answers in.
    pub fn budget(&self) -> &PollBudget {
        &self.budget
    }
}

impl Drop for JobPolls {
    fn drop(&mut self) {
        let mut polls = self.budget.lock();
        polls.owed -= u64::from(self.owed);
        polls.waiting -= u64::from(self.waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(budget: &PollBudget, n: u64) {
        for _ in 0..n {
            budget.count_answered();
        }
    }

    #[test]
    fn polls_stay_within_a_tenth_of_the_requests_after_the_free_ones() {
        let budget = Arc::new(PollBudget::default());
        let mut job = budget.follow().expect("the first job is followed");
        let mut granted = 0;
        for _ in 0..1000 {
            budget.count_answered();
            if job.may_send(false) {
                granted += 1;
                budget.count_answered();
            }
            let answered = budget.answered.load(Ordering::Acquire);
            assert!(
                budget.sent() <= FREE_POLLS.max(answered / SHARE),
                "{} polls for {answered} requests",
                budget.sent()
            );
        }
        // Every poll the budget allows is granted: it holds back, it does not starve.
        assert!(granted >= 1000 / SHARE, "{granted} polls granted");
    }

    #[test]
    fn a_followed_jobs_first_poll_is_reserved_and_a_waiting_job_stops_new_follows() {
        let budget = Arc::new(PollBudget::default());
        let mut jobs: Vec<JobPolls> = std::iter::from_fn(|| budget.follow()).collect();
        assert_eq!(
            jobs.len() as u64,
            FREE_POLLS,
            "the free polls, all reserved"
        );
        for job in &mut jobs {
            assert!(job.may_send(false), "a reserved first poll is always sent");
        }
        // No request answered since: a second poll waits, and no new job is followed.
        assert!(!jobs[0].may_send(false));
        answered(&budget, 1000);
        assert!(
            budget.follow().is_none(),
            "a followed job waits for its poll"
        );
        assert!(
            jobs[0].may_send(false),
            "its poll, as soon as there is room"
        );
        let more = budget.follow().expect("room again, and no job waits");
        drop(jobs);
        drop(more);
        let polls = *budget.lock();
        assert_eq!((polls.sent, polls.owed, polls.waiting), (6, 0, 0));
    }

    #[test]
    fn a_stalled_job_waits_without_holding_new_jobs_back() {
        let budget = Arc::new(PollBudget::default());
        let mut jobs: Vec<JobPolls> = std::iter::from_fn(|| budget.follow()).collect();
        for job in &mut jobs {
            assert!(job.may_send(false));
        }
        answered(&budget, 59);
        assert!(
            !jobs[0].may_send(false),
            "no room: 6 polls need 60 requests"
        );
        assert!(
            budget.follow().is_none(),
            "a moving job waits: it comes first"
        );
        assert!(!jobs[0].may_send(true), "still no room");
        budget.count_answered();
        let followed = budget.follow();
        assert!(
            followed.is_some(),
            "a stalled job does not hold new ones back"
        );
        assert_eq!(budget.lock().waiting, 0);
    }

    #[test]
    fn a_job_dropped_gives_back_its_reserved_poll_and_its_wait() {
        let budget = Arc::new(PollBudget::default());
        let mut waiting: Vec<JobPolls> = std::iter::from_fn(|| budget.follow()).collect();
        for job in &mut waiting {
            assert!(job.may_send(false));
        }
        assert!(!waiting[0].may_send(false));
        drop(waiting);
        answered(&budget, 200);
        let reserved = budget.follow().expect("no job waits any more");
        drop(reserved);
        assert_eq!(budget.lock().owed, 0);
    }

    #[test]
    fn threads_share_one_exact_budget() {
        let budget = Arc::new(PollBudget::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut jobs: Vec<JobPolls> = Vec::new();
                    for i in 0..5000 {
                        budget.count_answered();
                        if i % 7 == 0 {
                            jobs.extend(budget.follow());
                        }
                        for job in &mut jobs {
                            if job.may_send(false) {
                                budget.count_answered();
                            }
                        }
                        jobs.truncate(20);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let answered = budget.answered.load(Ordering::Acquire);
        assert!(
            budget.sent() * SHARE <= answered,
            "{} polls for {answered} requests",
            budget.sent()
        );
        assert!(budget.sent() * SHARE * 2 > answered, "{}", budget.sent());
        assert_eq!(budget.lock().waiting, 0);
    }
}
