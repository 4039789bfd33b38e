//! A followed job's poller: polls the job until it reaches a final status, times out, or the
//! run ends, within the run's poll budget and at the pace of [`super::pace`], and records how
//! it ended: completed, failed, timed out or unfinished with the status last seen, or unknown
//! with why no poll read it.

use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use serde_json::Value;

use super::pace::{self, TypeProgress};
use super::{lookup, status_error};
use crate::http::{Connection, Payload};
use crate::scenario::Track;
use crate::stats::{self, Failure, InFlight, JobOutcome, JobPolls, Key, RunClock, Sample};

/// `completed_at - created_at` of a task as the API answers it, µs: ISO 8601 times, with an
/// offset or without one (then both in the server's zone).
fn server_completion_us(task: &Value) -> Option<u64> {
    let time = |field: &str| -> Option<chrono::NaiveDateTime> {
        let text = task.get(field)?.as_str()?;
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.naive_utc())
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
            .ok()
    };
    let took = time("completed_at")? - time("created_at")?;
    u64::try_from(took.num_microseconds()?).ok()
}

/// A job just created, to follow: what its poller needs.
pub(super) struct Followed {
    /// How its type's jobs are followed.
    pub track: Track,
    /// The row of its polls.
    pub key: Key,
    /// Its status URL's path.
    pub path: String,
    /// Its user's headers and cookies.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Its own connection, apart from its user's.
    pub connection: Connection,
    /// The run's clock.
    pub clock: RunClock,
    /// Its share of the run's poll budget.
    pub budget: JobPolls,
    /// When a job of its type last ended.
    pub progress: Arc<TypeProgress>,
}

/// Polls one created job until it reaches a final status or times out.
pub(super) struct JobPoller {
    track: Track,
    key: Key,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    connection: Connection,
    clock: RunClock,
    created: Instant,
    finished: bool,
    /// The status the last successful poll saw.
    last_status: Option<String>,
    /// Since when the polls have seen it (or since its creation, before one did).
    status_since: Instant,
    /// Its share of the run's poll budget.
    budget: JobPolls,
    /// When a job of its type last ended: with its own status, the pace of its polls.
    progress: Arc<TypeProgress>,
    /// Its failed polls, while none read its status: why it is unknown, if none does.
    unread: Unread,
}

/// How a followed job ended: the outcome, its time from creation (µs), and the message.
type Ended = (JobOutcome, u64, Option<String>);

impl JobPoller {
    /// The poller of a job created now.
    pub(super) fn new(job: Followed) -> Self {
        let Followed {
            track,
            key,
            path,
            headers,
            connection,
            clock,
            budget,
            progress,
        } = job;
        Self {
            track,
            key,
            path,
            headers,
            connection,
            clock,
            created: Instant::now(),
            finished: false,
            last_status: None,
            status_since: Instant::now(),
            budget,
            progress,
            unread: Unread::default(),
        }
    }

    /// Polls until the job ends or times out; dropped first (the run ended), it records the
    /// job as unfinished or unknown.
    pub(super) async fn run(mut self) {
        let deadline = self.created + self.track.timeout;
        let mut wait = self.track.every;
        let mut next = wait;
        loop {
            tokio::time::sleep(next).await;
            if self.budget.may_send(self.stalled()) {
                if let Some((outcome, elapsed, message)) = self.poll().await {
                    self.finish(outcome, elapsed, message);
                    return;
                }
                wait = pace::next_wait(&self.track, wait, self.stalled());
                next = wait;
            } else {
                // Held back by the poll budget: asks again soon, then goes on at its pace.
                next = self.track.every.min(wait);
            }
            if Instant::now() >= deadline {
                let (outcome, message) =
                    self.timed_out(format!("no final status within {:?}", self.track.timeout));
                self.finish(outcome, 0, Some(message));
                return;
            }
        }
    }

    /// Whether the job and its type stalled (see [`pace`]).
    fn stalled(&self) -> bool {
        pace::stalled(
            &self.track,
            self.status_since.elapsed(),
            self.progress.quiet_for(),
        )
    }

    /// Sends one poll and records it; the job's end, if the poll read a final status.
    async fn poll(&mut self) -> Option<Ended> {
        let in_flight = InFlight::start(&self.key, self.connection.sends(), self.budget.budget());
        let started = in_flight.started();
        let answer = self
            .connection
            .send(
                &http::Method::GET,
                &self.path,
                &self.headers,
                &Payload::default(),
            )
            .await;
        let retries = in_flight.answered();
        let latency_us = started.elapsed().as_micros() as u64;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let failure = Failure::from(error);
                self.unread.failed(None, &failure.message);
                stats::record(
                    &self.clock,
                    Sample {
                        key: &self.key,
                        latency_us,
                        bytes: 0,
                        status: None,
                        error: Some(failure),
                        timings: None,
                        retries,
                    },
                );
                return None;
            }
        };
        let error = (answer.status != 200).then(|| status_error(answer.status, &answer.body));
        if let Some(failure) = &error {
            self.unread.failed(Some(answer.status), &failure.message);
        }
        stats::record(
            &self.clock,
            Sample {
                key: &self.key,
                latency_us,
                bytes: answer.body.len() as u64,
                status: Some(answer.status),
                error,
                timings: Some(answer.timings),
                retries,
            },
        );
        if answer.status != 200 {
            return None;
        }
        match serde_json::from_slice::<Value>(&answer.body) {
            Ok(json) => self.read(&json),
            Err(_) => {
                self.unread
                    .failed(None, "HTTP 200 with an answer that is not JSON");
                None
            }
        }
    }

    /// Takes in the status a poll read; the job's end, if final.
    fn read(&mut self, json: &Value) -> Option<Ended> {
        let status = lookup(json, &self.track.field)
            .and_then(Value::as_str)
            .unwrap_or("");
        let elapsed = self.created.elapsed().as_micros() as u64;
        // What a timeout or the end of the run reports as "last seen".
        if self.last_status.as_deref() != Some(status) {
            self.last_status = Some(status.to_owned());
            self.status_since = Instant::now();
        }
        if self.track.done.iter().any(|d| d == status) {
            // The server's own times, when it gives them, are exact; ours are only as fine
            // as the backed-off polls. The server's clock started before the creation was
            // answered, so it may be ahead of ours by that request's time; more than that is
            // a zone mismatch.
            let completion = server_completion_us(json)
                .filter(|us| *us <= elapsed + 10_000_000)
                .unwrap_or(elapsed);
            return Some((JobOutcome::Completed, completion, None));
        }
        if self.track.failed.iter().any(|f| f == status) {
            let message = json["error_message"]
                .as_str()
                .map(|m| format!("{status}: {m}"));
            return Some((
                JobOutcome::Failed,
                elapsed,
                message.or(Some(status.to_owned())),
            ));
        }
        None
    }

    /// Timed out if a poll saw it pending or processing; unknown if no poll could read it.
    fn timed_out(&self, why: String) -> (JobOutcome, String) {
        match &self.last_status {
            Some(status) => (JobOutcome::TimedOut, format!("{why} (last seen {status})")),
            None => (JobOutcome::Unknown, self.unread.why()),
        }
    }

    /// An unfinished job's last status, and how long it had it.
    fn record_last_status(&self) {
        if let Some(status) = &self.last_status {
            stats::record_job_last_status(&self.track.job, status, self.status_since.elapsed());
        }
    }

    fn finish(&mut self, outcome: JobOutcome, elapsed_us: u64, message: Option<String>) {
        self.finished = true;
        match outcome {
            JobOutcome::TimedOut => self.record_last_status(),
            JobOutcome::Completed | JobOutcome::Failed => self.progress.ended_one(),
            JobOutcome::Unfinished | JobOutcome::Unknown => {}
        }
        stats::record_job(&self.track.job, outcome, elapsed_us, message);
    }
}

impl Drop for JobPoller {
    fn drop(&mut self) {
        stats::job_in_flight(false);
        if self.finished {
            return;
        }
        // The run ended while the job was followed: unfinished if a poll saw it pending or
        // processing, unknown if none read it.
        match &self.last_status {
            Some(status) => {
                let message = format!("still running when the run ended (last seen {status})");
                stats::record_job(&self.track.job, JobOutcome::Unfinished, 0, Some(message));
                self.record_last_status();
            }
            None => {
                let message = self.unread.why();
                stats::record_job(&self.track.job, JobOutcome::Unknown, 0, Some(message));
            }
        }
    }
}

/// The failed polls of a job whose status no poll has read.
#[derive(Debug, Default)]
struct Unread {
    failed: u32,
    /// The status every failed poll answered, while they all answered the same one.
    same_status: Option<u16>,
    /// The last failure's message.
    last: String,
}

impl Unread {
    /// A poll failed: answered `status` (not 200), or none (`None`).
    fn failed(&mut self, status: Option<u16>, message: &str) {
        if self.failed == 0 {
            self.same_status = status;
        } else if self.same_status != status {
            self.same_status = None;
        }
        self.failed += 1;
        message.clone_into(&mut self.last);
    }

    /// Why the job's status is unknown, e.g. `its status was never read: all 7 polls
    /// answered 429`.
    fn why(&self) -> String {
        let what = match (self.failed, self.same_status) {
            (0, _) => "the run ended before its first poll".to_owned(),
            (1, Some(status)) => format!("its one poll answered {status}"),
            (n, Some(status)) => format!("all {n} polls answered {status}"),
            (1, None) => format!("its one poll failed: {}", self.last),
            (n, None) => format!("all {n} polls failed, the last with {}", self.last),
        };
        format!("its status was never read: {what}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_job_no_poll_read_says_why() {
        let mut unread = super::Unread::default();
        let why = |u: &super::Unread| u.why().replace("its status was never read: ", "");
        assert_eq!(why(&unread), "the run ended before its first poll");
        unread.failed(Some(429), "HTTP 429: Too many requests");
        assert_eq!(why(&unread), "its one poll answered 429");
        for _ in 0..6 {
            unread.failed(Some(429), "HTTP 429: Too many requests");
        }
        assert_eq!(why(&unread), "all 7 polls answered 429");
        unread.failed(None, "connection refused");
        unread.failed(Some(429), "HTTP 429: Too many requests");
        assert_eq!(
            why(&unread),
            "all 9 polls failed, the last with HTTP 429: Too many requests"
        );
        let mut refused = super::Unread::default();
        refused.failed(None, "connection refused");
        assert_eq!(why(&refused), "its one poll failed: connection refused");
    }

    #[test]
    fn a_completed_tasks_own_times_give_its_completion() {
        let with_offset = serde_json::json!({
            "created_at": "2026-12-01T10:00:00.250000Z",
            "completed_at": "2026-12-01T10:00:03.750000+00:00",
        });
        assert_eq!(super::server_completion_us(&with_offset), Some(3_500_000));
        // FastAPI's naive datetimes.
        let naive = serde_json::json!({
            "created_at": "2026-12-01T10:00:00",
            "completed_at": "2026-12-01T10:00:01.5",
        });
        assert_eq!(super::server_completion_us(&naive), Some(1_500_000));
        let unfinished =
            serde_json::json!({"created_at": "2026-12-01T10:00:00", "completed_at": null});
        assert_eq!(super::server_completion_us(&unfinished), None);
    }
}
