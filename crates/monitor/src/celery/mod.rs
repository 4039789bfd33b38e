//! Job-level evidence from Celery: the task failures a worker recorded, as one type whatever it
//! was read from. Celery's Redis result backend (`celery-task-meta-*`, read by the Redis source),
//! a watched worker container's logs and a `--worker-log` file each give the same
//! [`TaskFailure`]: the task, the exception's type and message (redacted, see [`redact`]), and
//! the traceback's frame a developer edits. Failures are kept bounded and de-duplicated by
//! (task, exception, frame) with a count, so a thousand identical failures are one line.

pub mod log;
pub mod redact;
pub mod result;
pub mod traceback;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A frame of a Python traceback: `File "app/worker.py", line 88, in mark_failed`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame {
    /// The file, as the traceback names it.
    pub file: String,
    /// The line number.
    pub line: u32,
    /// The function.
    pub function: String,
}

impl Frame {
    /// `app/worker.py:88 in `mark_failed``: the file's last two path components, which name the
    /// module without the install prefix (`/srv/app/worker.py` and a venv's differ by machine).
    pub fn short(&self) -> String {
        let parts: Vec<&str> = self.file.rsplit('/').take(2).collect();
        let file: Vec<&str> = parts.into_iter().rev().collect();
        format!("{}:{} in `{}`", file.join("/"), self.line, self.function)
    }
}

/// A task that failed, and how many times the same way.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TaskFailure {
    /// The task's name (`app.worker.audio_overlay`), or its function's name taken from the
    /// traceback when the result backend does not record names (`result_extended` off).
    pub task: String,
    /// The exception's type, without its module: `PendingRollbackError`.
    pub exception: String,
    /// The exception's message, redacted ([`redact::message`]) and cut to [`MESSAGE_CHARS`].
    pub message: String,
    /// The traceback's frame in the application's own code nearest the raise (the last frame
    /// outside installed packages and the standard library), or its last frame when all are
    /// library frames. `None` without a traceback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<Frame>,
    /// The exception being handled when this one was raised (Python's "During handling of the
    /// above exception, another exception occurred"): the task's error handler failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub while_handling: Option<String>,
    /// How many times it was seen.
    pub count: u64,
}

/// The longest message kept, in characters.
pub const MESSAGE_CHARS: usize = 300;

impl TaskFailure {
    /// What makes two failures the same one.
    fn key(&self) -> (&str, &str, Option<&Frame>) {
        (&self.task, &self.exception, self.frame.as_ref())
    }

    /// The task's last dotted part: `audio_overlay` of `app.worker.audio_overlay`.
    pub fn short_task(&self) -> &str {
        self.task.rsplit('.').next().unwrap_or(&self.task)
    }
}

/// The most distinct failures kept (per tick, per log): beyond them, only counts grow.
pub const MAX_FAILURES: usize = 20;

/// Failures de-duplicated by (task, exception, frame), at most [`MAX_FAILURES`] distinct ones;
/// one seen after the cap is counted in `dropped`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures {
    kept: Vec<TaskFailure>,
    /// Failures not kept because the cap was reached.
    pub dropped: u64,
}

impl Failures {
    /// Adds `failure` (its `count` times) to the one like it, or keeps it if there is room.
    pub fn add(&mut self, failure: TaskFailure) {
        if let Some(same) = self.kept.iter_mut().find(|f| f.key() == failure.key()) {
            same.count += failure.count;
        } else if self.kept.len() < MAX_FAILURES {
            self.kept.push(failure);
        } else {
            self.dropped += failure.count;
        }
    }

    /// The failures kept, most frequent first.
    pub fn into_vec(mut self) -> Vec<TaskFailure> {
        self.kept.sort_by_key(|f| std::cmp::Reverse(f.count));
        self.kept
    }
}

/// What one tick read of Celery in the Redis databases watched.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CeleryValues {
    /// Task results read for the first time this tick, by task name, then by Celery status
    /// (`SUCCESS`, `FAILURE`, `RETRY`, `REVOKED`, `STARTED`).
    #[serde(default)]
    pub tasks: BTreeMap<String, BTreeMap<String, u64>>,
    /// The failures among them, de-duplicated (see [`Failures`]).
    #[serde(default)]
    pub failures: Vec<TaskFailure>,
    /// Messages taken by workers and not acknowledged yet: the length of Kombu's `unacked`
    /// hash, over the databases watched.
    #[serde(default)]
    pub unacked: u64,
    /// The size of Kombu's `unacked_index` (the same messages, by delivery time; a larger index
    /// than hash means restored or lost deliveries).
    #[serde(default)]
    pub unacked_index: u64,
}

impl CeleryValues {
    /// Whether nothing was read.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.failures.is_empty()
            && self.unacked == 0
            && self.unacked_index == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(task: &str, exception: &str, line: u32) -> TaskFailure {
        TaskFailure {
            task: task.into(),
            exception: exception.into(),
            frame: Some(Frame {
                file: "/srv/app/worker.py".into(),
                line,
                function: "mark_failed".into(),
            }),
            count: 1,
            ..TaskFailure::default()
        }
    }

    #[test]
    fn failures_are_merged_by_task_exception_and_frame_and_bounded() {
        let mut failures = Failures::default();
        for _ in 0..3 {
            failures.add(failure("a", "E", 1));
        }
        failures.add(failure("a", "E", 2));
        failures.add(failure("b", "E", 1));
        for line in 100..130 {
            failures.add(failure("c", "E", line));
        }
        assert_eq!(failures.dropped, 13);
        let kept = failures.into_vec();
        assert_eq!(kept.len(), MAX_FAILURES);
        assert_eq!((kept[0].task.as_str(), kept[0].count), ("a", 3));
    }

    #[test]
    fn a_frame_is_shown_by_its_module_path() {
        let frame = failure("a", "E", 88).frame.unwrap_or_default();
        assert_eq!(frame.short(), "app/worker.py:88 in `mark_failed`");
        assert_eq!(failure("app.worker.join", "E", 1).short_task(), "join");
    }
}
