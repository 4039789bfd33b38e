//! Background jobs: the queue that grows, jobs that fail after a 201, and jobs that never reach
//! a final status. Findings quote the last log lines of the watched worker containers, as the
//! seed's `docker compose logs worker | tail` would show them.

use super::{Evidence, Finding, Layer, Severity};

/// `; last log lines of worker-1: a | b` for every watched worker with lines.
fn worker_log_quote(e: &Evidence<'_>) -> String {
    e.worker_logs
        .iter()
        .filter(|(_, lines)| !lines.is_empty())
        .map(|(name, lines)| format!("; last log lines of {name}: {}", lines.join(" | ")))
        .collect()
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

/// Followed jobs that reached a failed status.
pub fn failed(e: &Evidence<'_>) -> Vec<Finding> {
    e.stats
        .jobs
        .iter()
        .filter(|(_, job)| job.failed > 0)
        .map(|(kind, job)| {
            let ended = job.completed + job.failed + job.unfinished + job.unknown;
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
            // Differential: another type completes on the same workers, so the workers run and
            // take jobs; they fail on this type without marking it failed.
            let others_complete: Vec<String> = e
                .stats
                .jobs
                .iter()
                .filter(|(other, o)| *other != kind && o.completed >= 3)
                .map(|(other, o)| format!("{other} ({} completed)", o.completed))
                .collect();
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
                    "{} of {ended} followed {kind} jobs never reached a final status ({} completed){seen}{}",
                    job.unfinished,
                    job.completed,
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
