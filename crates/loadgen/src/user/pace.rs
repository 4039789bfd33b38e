//! How often a followed job is polled. Each job backs off from its track's `every` to its
//! `max_every` (a job that takes a minute costs 9 polls, not 60). Past that, polling a job
//! whose status no longer moves measures nothing: when its status has stayed the same for
//! [`STALLED_AFTER`] times `max_every` and no job of its type reached a final status in that
//! time either, its waits keep doubling, up to a quarter of its timeout and at most
//! [`STALLED_CAP`]. Its status changing, or a job of its type ending, brings it back to
//! `max_every` at its next poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::scenario::Track;

/// Polls at the slowest pace the track asked for, that saw no change: a few, so that a job
/// merely slower than the others is not taken for a stuck one.
pub const STALLED_AFTER: u32 = 3;

/// The longest wait between two polls of a stalled job: a job that ends after all is seen
/// ended within a minute. A quarter of the timeout, when shorter, keeps 4 polls in it, so that
/// a job that times out is seen to at most a quarter of its timeout late.
pub const STALLED_CAP: Duration = Duration::from_secs(60);

/// The wait before a job's next poll, after a wait of `wait`; `stalled` says whether the job
/// and its type stalled (see [`stalled`]).
pub fn next_wait(track: &Track, wait: Duration, stalled: bool) -> Duration {
    let longest = if stalled {
        (track.timeout / 4).min(STALLED_CAP).max(track.max_every)
    } else {
        track.max_every
    };
    wait.saturating_mul(2).min(longest)
}

/// Whether a job whose status has not changed for `unchanged` (or not been read since its
/// creation), of a type that ended no job for `type_quiet`, stalled.
pub fn stalled(track: &Track, unchanged: Duration, type_quiet: Duration) -> bool {
    let after = track.max_every.saturating_mul(STALLED_AFTER);
    unchanged > after && type_quiet > after
}

/// When the jobs of each type last ended, across the run's threads.
#[derive(Debug, Default)]
pub struct JobTypes {
    types: Mutex<HashMap<Arc<str>, Arc<TypeProgress>>>,
}

impl JobTypes {
    /// The progress of jobs of `kind`; the first job of a kind starts its clock.
    pub fn of(&self, kind: &Arc<str>) -> Arc<TypeProgress> {
        let mut types = self.types.lock().unwrap_or_else(|p| p.into_inner());
        types
            .entry(kind.clone())
            .or_insert_with(|| Arc::new(TypeProgress::new()))
            .clone()
    }
}

/// When a job of one type last reached a final status.
#[derive(Debug)]
pub struct TypeProgress {
    since: Instant,
    /// Since `since`, ms.
    last_ended_ms: AtomicU64,
}

impl TypeProgress {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            last_ended_ms: AtomicU64::new(0),
        }
    }

    /// A job of this type reached a final status now.
    pub fn ended_one(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last_ended_ms.fetch_max(now, Ordering::AcqRel);
    }

    /// How long since a job of this type last ended (or since its first job was followed).
    pub fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ended_ms.load(Ordering::Acquire));
        self.since.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(max_every: u64, timeout: u64) -> Track {
        let scenario = crate::scenario::parse(
            &format!(
                r#"
[[users]]
name = "U"
[[users.tasks]]
run = ["create"]
[users.steps.create]
method = "POST"
path = "/jobs"
track = {{ job = "j", poll = "/jobs/${{id}}", every = "1s", max_every = "{max_every}s", timeout = "{timeout}s" }}
"#
            ),
            "test.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        scenario.users[0].steps[0].track.clone().unwrap()
    }

    /// The waits of a job polled `n` times in a row, stalled or not.
    fn waits(track: &Track, n: usize, stalled: bool) -> Vec<u64> {
        let mut wait = track.every;
        (0..n)
            .map(|_| {
                wait = next_wait(track, wait, stalled);
                wait.as_secs()
            })
            .collect()
    }

    #[test]
    fn a_moving_job_backs_off_to_max_every_and_no_further() {
        let track = track(10, 120);
        assert_eq!(waits(&track, 6, false), [2, 4, 8, 10, 10, 10]);
    }

    #[test]
    fn a_stalled_job_doubles_past_max_every_to_a_quarter_of_its_timeout() {
        assert_eq!(waits(&track(10, 120), 7, true), [2, 4, 8, 16, 30, 30, 30]);
        // A long timeout: at most a minute.
        assert_eq!(waits(&track(10, 3600), 8, true)[5..], [60, 60, 60]);
        // A timeout shorter than 4 × max_every: never under max_every.
        assert_eq!(waits(&track(10, 20), 6, true)[3..], [10, 10, 10]);
    }

    #[test]
    fn a_change_brings_a_stalled_job_back_to_max_every() {
        let track = track(10, 3600);
        let stalled = Duration::from_secs(60);
        assert_eq!(
            next_wait(&track, stalled, false),
            Duration::from_secs(10),
            "its next wait, once moving again"
        );
    }

    #[test]
    fn stalled_takes_both_the_job_and_its_type() {
        let track = track(10, 120);
        let (long, short) = (Duration::from_secs(31), Duration::from_secs(29));
        assert!(stalled(&track, long, long));
        assert!(!stalled(&track, short, long), "the job's status changed");
        assert!(
            !stalled(&track, long, short),
            "another job of its type ended"
        );
    }

    #[test]
    fn a_type_is_quiet_since_its_last_job_ended() {
        let types = JobTypes::default();
        let join = types.of(&Arc::from("join"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(join.quiet_for() >= Duration::from_millis(300));
        types.of(&Arc::from("join")).ended_one();
        assert!(
            join.quiet_for() < Duration::from_millis(300),
            "the same type"
        );
        assert!(types.of(&Arc::from("overlay")).quiet_for() < Duration::from_millis(300));
    }
}
