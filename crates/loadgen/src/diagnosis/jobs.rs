//! Background jobs: the queue that grows, jobs that fail after a 201, and jobs that never reach
//! a final status. Findings quote the last log lines of the watched worker containers, as the
//! seed's `docker compose logs worker | tail` would show them, and the Celery task failures
//! behind them (the exception, its message and the frame, from the result backend or the logs).

use super::tasks::{self, SeenFailure};
use super::{Evidence, Finding, Layer, Severity};

/// The Celery failures of the tasks that run `kind` jobs.
fn celery_failures<'e>(e: &'e Evidence<'_>, kind: &str) -> Vec<&'e SeenFailure> {
    e.task_failures
        .iter()
        .filter(|s| tasks::runs_kind(&s.failure.task, kind))
        .collect()
}

/// `12 app.worker.audio_overlay tasks FAILED in Celery with Exc: message (last frame ...)
/// [read from Celery's result backend, worker-1]`, the failures joined by `; `.
fn celery_quote(failures: &[&SeenFailure]) -> String {
    failures
        .iter()
        .map(|s| {
            format!(
                "{} {} tasks FAILED in Celery with {} [read from {}]",
                s.failure.count,
                s.failure.task,
                tasks::describe(&s.failure),
                s.sources.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What to fix when the Celery task of `kind` jobs failed while the API still shows the jobs
/// unfinished: the error handler, or the lack of one.
fn fix_the_handler(kind: &str, top: &SeenFailure) -> String {
    let failure = &top.failure;
    let at = failure
        .frame
        .as_ref()
        .map(|f| format!("`{}` ({}:{})", f.function, f.file, f.line))
        .unwrap_or_else(|| format!("the {kind} task"));
    // SQLAlchemy's session refuses every statement after a failed flush until rolled back.
    let rolled_back = failure.exception == "PendingRollbackError"
        || failure.message.contains("has been rolled back");
    let hint = if rolled_back {
        ": its database session is unusable after the first error, so roll it back (`session.rollback()`) or open a new session before writing the failed status"
    } else {
        ""
    };
    match &failure.while_handling {
        Some(original) => format!(
            "The task's error handler fails: {at} raises {} while handling {original}, so the job is never marked failed and stays in the API's last status. Fix {at}{hint}; and make marking the job failed unable to fail in turn (its own session, in a `finally` or the task's `on_failure`). Then see why the task raised {original}",
            failure.exception
        ),
        None => format!(
            "The task fails and nothing marks the job failed: catch the exception in the task (or use its `on_failure`) and set the job's status to failed{hint}; then fix the failure itself, {} at {at}",
            failure.exception
        ),
    }
}

/// `; last log lines of worker-1: a | b` for every watched worker with lines.
fn worker_log_quote(e: &Evidence<'_>) -> String {
    e.worker_logs
        .iter()
        .filter(|(_, lines)| !lines.is_empty())
        .map(|(name, lines)| format!("; last log lines of {name}: {}", lines.join(" | ")))
        .collect()
}

/// `; workers held 4 messages unacknowledged at the end (Kombu's unacked hash)`, when the last
/// Redis reading had any: tasks taken by workers and not finished (or not yet started).
fn unacked_quote(e: &Evidence<'_>) -> String {
    match e.backend.redis().last() {
        Some((_, r)) if r.celery.unacked > 0 => format!(
            "; workers held {} messages unacknowledged at the end (Kombu's unacked hash)",
            r.celery.unacked
        ),
        _ => String::new(),
    }
}

/// `add_workers` when the host has CPU to spare; otherwise why more workers would not help.
fn more_workers_or_not(e: &Evidence<'_>, add_workers: &str) -> String {
    if e.host_saturated() {
        "The host's CPU is saturated (see the host above), so more workers on it would only compete for the CPU: move workers to other hosts, lower their concurrency, or send fewer jobs at a time".into()
    } else {
        add_workers.into()
    }
}

/// The followed jobs of `job` that did not complete, as a share of all that did not.
fn jobs_share(e: &Evidence<'_>, count: u64) -> Option<super::Explained> {
    let all: u64 = e
        .stats
        .jobs
        .values()
        .map(|j| j.failed + j.unfinished + j.unknown)
        .sum();
    (all > 0 && count > 0).then(|| super::Explained {
        pct: count as f64 * 100.0 / all as f64,
        of: super::Trouble::Jobs,
    })
}

/// Followed jobs whose status no poll ever read (every poll failed, e.g. on 429s, or the run
/// ended first): unknown, never counted as unfinished.
pub fn unknown(e: &Evidence<'_>) -> Vec<Finding> {
    e.stats
        .jobs
        .iter()
        .filter(|(_, job)| job.unknown > 0)
        .map(|(kind, job)| {
            let ended = job.completed + job.failed + job.unfinished + job.unknown;
            // The messages of this type's other jobs (unfinished ones) say nothing of these.
            let reasons: Vec<&str> = job
                .failure_messages
                .iter()
                .filter_map(|m| m.strip_prefix("its status was never read: "))
                .collect();
            let why = if reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", reasons.join("; "))
            };
            Finding::new(
                "jobs.unknown",
                Layer::Jobs,
                Severity::Info,
                format!("{kind} jobs: status unknown"),
                format!(
                    "{} of {ended} followed {kind} jobs were never read{why}",
                    job.unknown
                ),
                "Not counted as unfinished: the polls that would have read them failed (the failures above say why); check these jobs in the API's database",
            )
        })
        .collect()
}

/// A watched Redis list that ends 5 or more longer than it started, rising in 3 ticks or more.
pub fn queue_grows(e: &Evidence<'_>) -> Vec<Finding> {
    let rd = e.backend.redis();
    let (Some((t0, first)), Some((t1, last))) = (rd.first(), rd.last()) else {
        return Vec::new();
    };
    if t1 <= t0 {
        return Vec::new();
    }
    first
        .lists
        .iter()
        .filter_map(|(list, start)| {
            let end = last.lists.get(list).copied().unwrap_or(0);
            let rises = rd
                .windows(2)
                .filter(|w| w[1].1.lists.get(list) > w[0].1.lists.get(list))
                .count();
            (end >= start + 5 && rises >= 3).then(|| Finding {
                rule: "jobs.queue_grows",
                layer: Layer::Jobs,
                severity: Severity::Critical,
                title: "The job queue grows".into(),
                evidence: format!(
                    "Redis list {list} grew from {start} to {end} in {:.0} s ({:+.2}/s){}",
                    t1 - t0,
                    (end - start) as f64 / (t1 - t0),
                    worker_log_quote(e)
                ),
                action: more_workers_or_not(
                    e,
                    "Jobs arrive faster than the workers finish them: add Celery workers (or concurrency), or check that they are not stuck",
                ),
                cause_of: vec!["jobs.unfinished"],
                explains: None,
                explained_by: None,
            })
        })
        .collect()
}

/// A job type whose completions take far longer than its fastest (median 3 times the 10th
/// percentile or more, and 3 s more at least, over 5 completed or more): the fastest show what
/// the work costs, the rest is time spent waiting for a worker.
pub fn queueing(e: &Evidence<'_>) -> Vec<Finding> {
    e.stats
        .jobs
        .iter()
        .filter(|(_, job)| job.completed >= 5)
        .filter_map(|(kind, job)| {
            let secs = |p: f64| job.completion.value_at_percentile(p) as f64 / 1e6;
            let (fastest, median) = (secs(10.0), secs(50.0));
            (median >= 3.0 * fastest && median - fastest >= 3.0).then(|| Finding {
                rule: "jobs.queueing",
                layer: Layer::Jobs,
                severity: Severity::Warning,
                title: format!("{kind} jobs wait for a worker"),
                evidence: format!(
                    "{} {kind} jobs completed in a median {median:.1} s, while the fastest 10 % took {fastest:.1} s: about {:.0}% of their time was spent waiting, not working",
                    job.completed,
                    (median - fastest) * 100.0 / median
                ),
                action: more_workers_or_not(
                    e,
                    "The work itself is fast; the jobs queue for busy workers: add Celery workers (or concurrency), or send fewer jobs at a time",
                ),
                cause_of: Vec::new(),
                explains: None,
                explained_by: None,
            })
        })
        .collect()
}

/// Celery tasks that FAILED during the run and run none of the followed job types (or no job
/// was followed): failures the API's answers did not show. One finding per task, quoting its
/// most frequent failures (3 at most).
pub fn task_failures(e: &Evidence<'_>) -> Vec<Finding> {
    let statuses = tasks::statuses(&e.backend);
    let mut by_task: std::collections::BTreeMap<&str, Vec<&SeenFailure>> =
        std::collections::BTreeMap::new();
    for seen in &e.task_failures {
        let followed = e
            .stats
            .jobs
            .keys()
            .any(|kind| tasks::runs_kind(&seen.failure.task, kind));
        if !followed {
            by_task.entry(&seen.failure.task).or_default().push(seen);
        }
    }
    by_task
        .into_iter()
        .map(|(task, failures)| {
            let shown = &failures[..failures.len().min(3)];
            let of_results = statuses
                .get(task)
                .map(|by| {
                    let failed = by.get("FAILURE").copied().unwrap_or(0);
                    let all: u64 = by.values().sum();
                    format!(" ({failed} of the {all} {task} results read failed)")
                })
                .unwrap_or_default();
            let top = &shown[0].failure;
            let at = top
                .frame
                .as_ref()
                .map(|f| format!(" in `{}` ({}:{})", f.function, f.file, f.line))
                .unwrap_or_default();
            Finding::new(
                "jobs.task_failures",
                Layer::Jobs,
                Severity::Warning,
                format!("{} tasks fail in Celery", top.short_task()),
                format!("{}{of_results}", celery_quote(shown)),
                format!(
                    "These tasks fail in the workers: fix {}{at}; no followed job showed it, so check what the task's callers see",
                    top.exception
                ),
            )
        })
        .collect()
}

/// Followed jobs that reached a failed status.
pub fn failed(e: &Evidence<'_>) -> Vec<Finding> {
    e.stats
        .jobs
        .iter()
        .filter(|(_, job)| job.failed > 0)
        .map(|(kind, job)| {
            let ended = job.completed + job.failed + job.unfinished + job.unknown;
            let celery = celery_failures(e, kind);
            if let Some(top) = celery.first() {
                let at = top
                    .failure
                    .frame
                    .as_ref()
                    .map(|f| format!(" in `{}` ({}:{})", f.function, f.file, f.line))
                    .unwrap_or_default();
                return Finding {
                    rule: "jobs.failed",
                    layer: Layer::Jobs,
                    severity: Severity::Warning,
                    title: format!("{kind} jobs fail: {} in the worker", top.failure.exception),
                    evidence: format!(
                        "{} of {ended} followed {kind} jobs failed: {}; {}",
                        job.failed,
                        job.failure_messages.join("; "),
                        celery_quote(&celery)
                    ),
                    action: format!(
                        "The API answered 201 and the worker marked the job failed: the task raises {}{at}; fix it there",
                        top.failure.exception
                    ),
                    cause_of: Vec::new(),
                    explains: None,
                    explained_by: None,
                };
            }
            Finding {
                rule: "jobs.failed",
                layer: Layer::Jobs,
                severity: Severity::Warning,
                title: format!("{kind} jobs fail"),
                evidence: format!(
                    "{} of {ended} followed {kind} jobs failed: {}{}",
                    job.failed,
                    job.failure_messages.join("; "),
                    worker_log_quote(e)
                ),
                action: "The API answered 201 but the worker failed: read the worker's logs; an audio-overlay `mix` on a video without an audio track always fails".into(),
                cause_of: Vec::new(),
                explains: None,
                explained_by: None,
            }
        })
        .collect()
}

/// The other job types that completed (3 or more): `join (12 completed)`.
fn others_complete(e: &Evidence<'_>, kind: &str) -> Vec<String> {
    e.stats
        .jobs
        .iter()
        .filter(|(other, o)| other.as_ref() != kind && o.completed >= 3)
        .map(|(other, o)| format!("{other} ({} completed)", o.completed))
        .collect()
}

/// Celery says the task of `kind` jobs failed while the API still shows them unfinished: the
/// error handler failed, or there is none. `seen` says what status the jobs were stuck in.
fn failed_in_celery(
    e: &Evidence<'_>,
    kind: &str,
    job: &crate::stats::JobStats,
    seen: &str,
) -> Option<Finding> {
    let ended = job.completed + job.failed + job.unfinished + job.unknown;
    let celery = celery_failures(e, kind);
    let top = celery.first()?;
    let others = others_complete(e, kind);
    let others = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; other jobs completed on the same workers: {}",
            others.join(", ")
        )
    };
    // A task that failed had started, so its jobs left `pending`: those still pending are
    // queued behind them, and the status to name is the one the started ones stay in.
    let most = |started: bool| {
        job.last_statuses
            .iter()
            .filter(|(status, _)| !started || status.as_str() != "pending")
            .max_by_key(|(_, last)| last.jobs)
            .map(|(status, _)| status.as_str())
    };
    let last_seen = most(true).or_else(|| most(false)).unwrap_or("unfinished");
    let what = if top.failure.while_handling.is_some() {
        "the task's error handler fails"
    } else {
        "nothing marks the job failed"
    };
    Some(Finding {
        rule: "jobs.unfinished",
        layer: Layer::Jobs,
        severity: Severity::Critical,
        title: format!(
            "{kind} tasks FAILED in Celery with {} while the API still shows {last_seen}: {what}",
            top.failure.exception
        ),
        evidence: format!(
            "{}, while {} of {ended} followed {kind} jobs never reached a final status in the API ({} completed){seen}{others}{}",
            celery_quote(&celery),
            job.unfinished,
            job.completed,
            worker_log_quote(e),
        ),
        action: fix_the_handler(kind, top),
        cause_of: vec!["jobs.queue_grows"],
        explains: jobs_share(e, job.unfinished),
        explained_by: None,
    })
}

/// Jobs that never reach a final status: some were followed for their whole timeout, or
/// several (3 or more) were cut off by the end of the run and none completed. One job created
/// just before the end proves nothing.
pub fn unfinished(e: &Evidence<'_>) -> Vec<Finding> {
    e.stats
        .jobs
        .iter()
        .filter(|(_, job)| job.timed_out > 0 || (job.completed == 0 && job.unfinished >= 3))
        .map(|(kind, job)| {
            let ended = job.completed + job.failed + job.unfinished + job.unknown;
            // The status each was stuck in and for how long says more than the messages.
            let seen = if !job.last_statuses.is_empty() {
                let statuses: Vec<String> = job
                    .last_statuses
                    .iter()
                    .map(|(status, last)| {
                        format!(
                            "{} last seen {status}, for up to {} s",
                            last.jobs, last.longest_secs
                        )
                    })
                    .collect();
                format!(": {}", statuses.join("; "))
            } else if job.failure_messages.is_empty() {
                String::new()
            } else {
                format!(": {}", job.failure_messages.join("; "))
            };
            if let Some(finding) = failed_in_celery(e, kind, job, &seen) {
                return finding;
            }
            // Differential: another type completes on the same workers, so the workers run and
            // take jobs; they fail on this type without marking it failed.
            let others_complete = others_complete(e, kind);
            if job.completed == 0 && !others_complete.is_empty() {
                return Finding {
                    rule: "jobs.unfinished",
                    layer: Layer::Jobs,
                    severity: Severity::Critical,
                    title: format!(
                        "The workers fail on {kind} jobs without marking them failed"
                    ),
                    evidence: format!(
                        "{} of {ended} followed {kind} jobs never reached a final status and none completed, while other jobs completed on the same workers: {}{seen}{}",
                        job.unfinished,
                        others_complete.join(", "),
                        worker_log_quote(e)
                    ),
                    action: format!(
                        "Not a lack of workers: the {kind} task fails inside the worker (an exception before the status is set) and leaves the task in its last status; read the worker's log for that task, and mark the task failed on error"
                    ),
                    cause_of: vec!["jobs.queue_grows"],
                    explains: jobs_share(e, job.unfinished),
                    explained_by: None,
                };
            }
            Finding {
                rule: "jobs.unfinished",
                layer: Layer::Jobs,
                severity: Severity::Warning,
                title: format!("{kind} jobs do not finish"),
                evidence: format!(
                    "{} of {ended} followed {kind} jobs never reached a final status ({} completed){seen}{}{}",
                    job.unfinished,
                    job.completed,
                    unacked_quote(e),
                    worker_log_quote(e)
                ),
                action: "Check that the workers run and take jobs (Celery queue length, worker logs); a worker that fails without marking the task failed leaves it in its last status".into(),
                cause_of: Vec::new(),
                explains: jobs_share(e, job.unfinished),
                explained_by: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::testing::{outcome, redis, ticks, with_evidence, with_logs};
    use super::*;
    use crate::outcome::RunOutcome;

    #[test]
    fn a_growing_queue_is_found_and_a_steady_one_is_not() {
        let run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let growing = ticks(6, |i| {
            vec![redis(|r| {
                r.lists.insert("1/celery".into(), 3 * i as i64);
            })]
        });
        let found = with_evidence(&run, &growing, queue_grows);
        assert!(
            found[0].evidence.contains("1/celery grew from 0 to 15"),
            "{}",
            found[0].evidence
        );
        let steady = ticks(6, |i| {
            vec![redis(|r| {
                r.lists.insert("1/celery".into(), (i % 2) as i64);
            })]
        });
        assert!(with_evidence(&run, &steady, queue_grows).is_empty());
    }

    #[test]
    fn jobs_far_slower_than_their_fastest_are_queueing() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let join = run.stats.jobs.entry("join".into()).or_default();
        // Two took 1 s (an idle worker), eighteen waited up to 20 s behind the others.
        for secs in [1, 1].into_iter().chain(3..=20) {
            join.completed += 1;
            let _ = join.completion.record(secs * 1_000_000);
        }
        let found = with_evidence(&run, &[], queueing);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .evidence
                .contains("20 join jobs completed in a median 1"),
            "{}",
            found[0].evidence
        );
        // Steady costs, however long: no queueing.
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let join = run.stats.jobs.entry("join".into()).or_default();
        for secs in 10..20 {
            join.completed += 1;
            let _ = join.completion.record(secs * 1_000_000);
        }
        assert!(with_evidence(&run, &[], queueing).is_empty());
    }

    #[test]
    fn one_type_stuck_while_another_completes_is_a_worker_failing_on_it() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let join = run.stats.jobs.entry("join".into()).or_default();
        join.completed = 12;
        let overlay = run.stats.jobs.entry("audio_overlay".into()).or_default();
        overlay.unfinished = 7;
        let found = with_evidence(&run, &[], unfinished);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].title,
            "The workers fail on audio_overlay jobs without marking them failed"
        );
        assert!(
            found[0].evidence.contains("join (12 completed)"),
            "{}",
            found[0].evidence
        );
        assert!(found[0].action.starts_with("Not a lack of workers"));
    }

    #[test]
    fn unfinished_jobs_say_what_status_was_last_seen_and_quote_the_workers() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let job = run.stats.jobs.entry("audio_overlay".into()).or_default();
        job.unfinished = 4;
        job.timed_out = 4;
        job.failure_messages = vec!["no final status within 10s (last seen processing)".into()];
        let logs = BTreeMap::from([(
            "worker-1".to_owned(),
            vec!["Task raised: ffmpeg exited 1".to_owned()],
        )]);
        let found = with_logs(&run, logs, unfinished);
        assert_eq!(found[0].title, "audio_overlay jobs do not finish");
        assert!(
            found[0].evidence.contains("last seen processing"),
            "{}",
            found[0].evidence
        );
        assert!(
            found[0]
                .evidence
                .contains("last log lines of worker-1: Task raised"),
            "{}",
            found[0].evidence
        );
        // Messages the workers took and did not acknowledge are said.
        let held = ticks(2, |i| vec![redis(|r| r.celery.unacked = 2 * i as u64)]);
        let found = with_evidence(&run, &held, unfinished);
        assert!(
            found[0].evidence.contains(
                "; workers held 2 messages unacknowledged at the end (Kombu's unacked hash)"
            ),
            "{}",
            found[0].evidence
        );
        // Jobs that complete, with a few cut off by the end of the run, are no finding.
        let mut done = outcome(&[5; 6], &[20; 6], 10, &[]);
        let job = done.stats.jobs.entry("join".into()).or_default();
        job.completed = 20;
        job.unfinished = 2;
        job.failure_messages = vec!["still running when the run ended".into()];
        assert!(with_evidence(&done, &[], unfinished).is_empty());
        // Nor is one job created just before the end, none completed yet.
        let mut late = outcome(&[5; 6], &[20; 6], 10, &[]);
        late.stats
            .jobs
            .entry("audio_overlay".into())
            .or_default()
            .unfinished = 1;
        assert!(with_evidence(&late, &[], unfinished).is_empty());
        // Several cut off with none completed is a finding, even without a timeout.
        late.stats
            .jobs
            .entry("audio_overlay".into())
            .or_default()
            .unfinished = 3;
        assert_eq!(with_evidence(&late, &[], unfinished).len(), 1);
    }

    #[test]
    fn failed_jobs_carry_their_messages() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let job = run.stats.jobs.entry("audio_overlay".into()).or_default();
        job.failed = 2;
        job.completed = 1;
        job.failure_messages = vec!["failed: no audio stream".into()];
        let found = with_evidence(&run, &[], failed);
        assert!(
            found[0]
                .evidence
                .contains("2 of 3 followed audio_overlay jobs failed: failed: no audio stream"),
            "{}",
            found[0].evidence
        );
    }

    /// The failure a real Celery worker records when the task's error handler fails (as in
    /// `monitor`'s captured testdata), on 3 ticks of the result backend.
    fn handler_failure(while_handling: Option<&str>) -> monitor::celery::TaskFailure {
        monitor::celery::TaskFailure {
            task: "app.worker.audio_overlay".into(),
            exception: "PendingRollbackError".into(),
            message: "This Session's transaction has been rolled back due to a previous exception during flush.".into(),
            frame: Some(monitor::celery::Frame {
                file: "/srv/app/worker.py".into(),
                line: 88,
                function: "mark_failed".into(),
            }),
            while_handling: while_handling.map(str::to_owned),
            count: 3,
        }
    }

    fn backend_with(failure: &monitor::celery::TaskFailure) -> Vec<monitor::sample::Tick> {
        ticks(3, |_| {
            vec![redis(|r| {
                r.celery.failures.push(failure.clone());
                r.celery
                    .tasks
                    .entry(failure.task.clone())
                    .or_default()
                    .insert("FAILURE".into(), failure.count);
            })]
        })
    }

    fn stuck_overlays() -> RunOutcome {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        run.stats.jobs.entry("join".into()).or_default().completed = 12;
        let overlay = run.stats.jobs.entry("audio_overlay".into()).or_default();
        overlay.unfinished = 9;
        overlay.timed_out = 9;
        overlay.last_statuses.insert(
            "processing".into(),
            crate::stats::LastStatus {
                jobs: 9,
                longest_secs: 30,
            },
        );
        // More queued behind them, still pending at the end.
        overlay.unfinished += 12;
        overlay.last_statuses.insert(
            "pending".into(),
            crate::stats::LastStatus {
                jobs: 12,
                longest_secs: 3,
            },
        );
        run
    }

    #[test]
    fn jobs_stuck_while_their_celery_task_failed_in_its_error_handler_name_the_handler() {
        let run = stuck_overlays();
        let found = with_evidence(
            &run,
            &backend_with(&handler_failure(Some("FfmpegError"))),
            unfinished,
        );
        assert_eq!(found.len(), 1, "{found:#?}");
        let finding = &found[0];
        assert_eq!(finding.severity, Severity::Critical);
        assert_eq!(
            finding.title,
            "audio_overlay tasks FAILED in Celery with PendingRollbackError while the API still shows processing: the task's error handler fails"
        );
        assert!(
            finding.evidence.starts_with(
                "9 app.worker.audio_overlay tasks FAILED in Celery with PendingRollbackError: This Session's transaction has been rolled back due to a previous exception during flush. (last frame app/worker.py:88 in `mark_failed`, raised while handling FfmpegError) [read from Celery's result backend], while 21 of 21 followed audio_overlay jobs never reached a final status in the API (0 completed): 12 last seen pending, for up to 3 s; 9 last seen processing, for up to 30 s; other jobs completed on the same workers: join (12 completed)"
            ),
            "{}",
            finding.evidence
        );
        assert!(
            finding.action.starts_with("The task's error handler fails: `mark_failed` (/srv/app/worker.py:88) raises PendingRollbackError while handling FfmpegError")
                && finding.action.contains("session.rollback()"),
            "{}",
            finding.action
        );
        assert_eq!(finding.cause_of, ["jobs.queue_grows"]);
        // No error handler at all: said so.
        let mut bare = handler_failure(None);
        bare.exception = "KeyError".into();
        bare.message = "'?'".into();
        let found = with_evidence(&run, &backend_with(&bare), unfinished);
        assert!(
            found[0].title.ends_with("nothing marks the job failed"),
            "{}",
            found[0].title
        );
        assert!(
            found[0]
                .action
                .starts_with("The task fails and nothing marks the job failed"),
            "{}",
            found[0].action
        );
    }

    #[test]
    fn a_failure_read_from_a_worker_log_is_quoted_as_one_from_the_backend() {
        let mut run = stuck_overlays();
        run.task_failures.insert(
            "worker-1".into(),
            vec![handler_failure(Some("FfmpegError"))],
        );
        let found = with_evidence(&run, &[], unfinished);
        assert!(
            found[0].evidence.contains("(last frame app/worker.py:88 in `mark_failed`, raised while handling FfmpegError) [read from worker-1]"),
            "{}",
            found[0].evidence
        );
        // Another type's failures are not this one's.
        let mut other = handler_failure(None);
        other.task = "app.worker.join".into();
        let mut run = stuck_overlays();
        run.task_failures.insert("worker-1".into(), vec![other]);
        let found = with_evidence(&run, &[], unfinished);
        assert_eq!(
            found[0].title,
            "The workers fail on audio_overlay jobs without marking them failed"
        );
    }

    #[test]
    fn failed_jobs_name_the_exception_and_the_frame_celery_recorded() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let job = run.stats.jobs.entry("audio_overlay".into()).or_default();
        job.failed = 3;
        job.failure_messages = vec!["failed: ffmpeg error".into()];
        let mut failure = handler_failure(None);
        failure.exception = "CalledProcessError".into();
        failure.message = "Command '?' returned non-zero exit status 1.".into();
        let found = with_evidence(&run, &backend_with(&failure), failed);
        assert_eq!(
            found[0].title,
            "audio_overlay jobs fail: CalledProcessError in the worker"
        );
        assert!(
            found[0].evidence.contains("3 of 3 followed audio_overlay jobs failed: failed: ffmpeg error; 9 app.worker.audio_overlay tasks FAILED in Celery with CalledProcessError"),
            "{}",
            found[0].evidence
        );
        assert!(
            found[0]
                .action
                .contains("raises CalledProcessError in `mark_failed` (/srv/app/worker.py:88)"),
            "{}",
            found[0].action
        );
    }

    #[test]
    fn celery_failures_of_tasks_no_job_followed_are_their_own_finding() {
        let run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let mut failure = handler_failure(None);
        failure.task = "app.worker.send_email".into();
        let found = with_evidence(&run, &backend_with(&failure), task_failures);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].rule, "jobs.task_failures");
        assert_eq!(found[0].title, "send_email tasks fail in Celery");
        assert!(
            found[0]
                .evidence
                .ends_with("(9 of the 9 app.worker.send_email results read failed)"),
            "{}",
            found[0].evidence
        );
        // A followed type's failures belong to its jobs' findings.
        let stuck = stuck_overlays();
        let found = with_evidence(&stuck, &backend_with(&handler_failure(None)), task_failures);
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn jobs_never_read_are_unknown_with_the_failures_that_hid_them() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let join = run.stats.jobs.entry("join".into()).or_default();
        join.completed = 7;
        join.unfinished = 1;
        join.unknown = 2;
        // An unfinished job's message says nothing of the unknown ones: left out.
        join.failure_messages = vec![
            "still running when the run ended (last seen pending)".into(),
            "its status was never read: all 7 polls answered 429".into(),
        ];
        run.stats.jobs.entry("trim".into()).or_default().completed = 4;
        let found = with_evidence(&run, &[], unknown);
        assert_eq!(
            found.len(),
            1,
            "only the kind with unknown jobs: {found:#?}"
        );
        assert_eq!(found[0].rule, "jobs.unknown");
        assert_eq!(found[0].severity, Severity::Info);
        assert_eq!(found[0].title, "join jobs: status unknown");
        assert_eq!(
            found[0].evidence,
            "2 of 10 followed join jobs were never read: all 7 polls answered 429"
        );
        // Every status read: nothing unknown.
        if let Some(join) = run.stats.jobs.get_mut("join") {
            join.unknown = 0;
        }
        assert!(with_evidence(&run, &[], unknown).is_empty());
    }
}
