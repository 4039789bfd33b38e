//! Celery task failures as the rules read them: one list, whatever they were read from. The
//! Redis source reads them from Celery's result backend tick by tick; the engine reads them from
//! the watched worker containers' logs and the `--worker-log` files when jobs went wrong. The
//! same failure seen by several sources is one, counted as the source that saw it most often
//! counted it (each source sees the same failures, or some of them: adding would count twice).

use std::collections::BTreeMap;

use monitor::celery::{Failures, TaskFailure};

use super::Backend;

/// What read the failures from Celery's result backend.
pub const RESULT_BACKEND: &str = "Celery's result backend";

/// A failure and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenFailure {
    /// The failure, its count the largest any source gave.
    pub failure: TaskFailure,
    /// [`RESULT_BACKEND`], or the log's container or file name.
    pub sources: Vec<String>,
}

/// The failures of the run, most frequent first: the result backend's over every tick, and
/// each log's.
pub fn merged(
    backend: &Backend<'_>,
    logs: &BTreeMap<String, Vec<TaskFailure>>,
) -> Vec<SeenFailure> {
    let mut from_backend = Failures::default();
    for (_, redis) in backend.redis() {
        for failure in &redis.celery.failures {
            from_backend.add(failure.clone());
        }
    }
    let sources = std::iter::once((RESULT_BACKEND.to_owned(), from_backend.into_vec()))
        .chain(logs.iter().map(|(name, f)| (name.clone(), f.clone())));
    let mut seen: Vec<SeenFailure> = Vec::new();
    for (source, failures) in sources {
        for failure in failures {
            let same = seen.iter_mut().find(|s| {
                (&s.failure.task, &s.failure.exception, &s.failure.frame)
                    == (&failure.task, &failure.exception, &failure.frame)
            });
            match same {
                Some(same) => {
                    same.failure.count = same.failure.count.max(failure.count);
                    same.sources.push(source.clone());
                }
                None => seen.push(SeenFailure {
                    failure,
                    sources: vec![source.clone()],
                }),
            }
        }
    }
    seen.sort_by_key(|s| std::cmp::Reverse(s.failure.count));
    seen
}

/// Task results read from the result backend over the run, by task, then Celery status.
pub fn statuses(backend: &Backend<'_>) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (_, redis) in backend.redis() {
        for (task, by_status) in &redis.celery.tasks {
            for (status, n) in by_status {
                *counts
                    .entry(task.clone())
                    .or_default()
                    .entry(status.clone())
                    .or_default() += n;
            }
        }
    }
    counts
}

/// Whether Celery task `task` runs jobs of the API's type `kind`: the task's last dotted part
/// holds the kind, or the kind holds it, compared as letters and digits (`audio_overlay`,
/// `app.worker.audio_overlay`, `process_audio_overlay`, `audio-overlay`).
pub fn runs_kind(task: &str, kind: &str) -> bool {
    let letters = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let task = letters(task.rsplit('.').next().unwrap_or(task));
    let kind = letters(kind);
    // Four letters at least (`join`): a short name would be inside too many others.
    task.len().min(kind.len()) >= 4 && (task.contains(&kind) || kind.contains(&task))
}

/// `SessionBroken: This Session's ... (last frame app/worker.py:44 in `mark_failed`, raised
/// while handling MixError)`.
pub fn describe(failure: &TaskFailure) -> String {
    let mut out = failure.exception.clone();
    if !failure.message.is_empty() {
        // On one line: a finding's evidence is one paragraph (SQLAlchemy's messages span lines).
        let words: Vec<&str> = failure.message.split_whitespace().collect();
        out.push_str(": ");
        out.push_str(&words.join(" "));
    }
    let frame = failure
        .frame
        .as_ref()
        .map(|f| format!("last frame {}", f.short()));
    let handling = failure
        .while_handling
        .as_ref()
        .map(|h| format!("raised while handling {h}"));
    let context: Vec<String> = frame.into_iter().chain(handling).collect();
    if !context.is_empty() {
        out.push_str(&format!(" ({})", context.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{redis, ticks};
    use super::*;
    use monitor::celery::Frame;

    fn failure(count: u64) -> TaskFailure {
        TaskFailure {
            task: "app.worker.audio_overlay".into(),
            exception: "PendingRollbackError".into(),
            message: "This Session's transaction has been rolled back".into(),
            frame: Some(Frame {
                file: "/srv/app/worker.py".into(),
                line: 88,
                function: "mark_failed".into(),
            }),
            while_handling: Some("FfmpegError".into()),
            count,
        }
    }

    #[test]
    fn one_failure_from_three_sources_is_one_counted_once() {
        let backend_ticks = ticks(3, |_| {
            vec![redis(|r| {
                r.celery.failures.push(failure(2));
                r.celery
                    .tasks
                    .entry("app.worker.audio_overlay".into())
                    .or_default()
                    .insert("FAILURE".into(), 2);
            })]
        });
        let logs = BTreeMap::from([
            ("worker-1".to_owned(), vec![failure(4)]),
            ("/var/log/worker.log".to_owned(), vec![failure(5)]),
        ]);
        let merged = merged(&Backend::new(&backend_ticks), &logs);
        assert_eq!(merged.len(), 1, "{merged:#?}");
        assert_eq!(merged[0].failure.count, 6, "the backend's 3 ticks of 2");
        assert_eq!(
            merged[0].sources,
            [RESULT_BACKEND, "/var/log/worker.log", "worker-1"]
        );
        let statuses = statuses(&Backend::new(&backend_ticks));
        assert_eq!(statuses["app.worker.audio_overlay"]["FAILURE"], 6);
        assert_eq!(
            describe(&merged[0].failure),
            "PendingRollbackError: This Session's transaction has been rolled back (last frame \
             app/worker.py:88 in `mark_failed`, raised while handling FfmpegError)"
        );
    }

    #[test]
    fn tasks_are_matched_to_job_kinds_by_name() {
        assert!(runs_kind("app.worker.audio_overlay", "audio_overlay"));
        assert!(runs_kind("tasks.process_audio_overlay", "audio-overlay"));
        assert!(runs_kind("audio_overlay", "audio_overlay"));
        assert!(!runs_kind("app.worker.join", "audio_overlay"));
        assert!(!runs_kind("app.worker.video_overlay", "text_overlay"));
    }
}
