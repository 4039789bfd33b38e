//! One `celery-task-meta-<id>` value of Celery's Redis result backend: JSON with `status`,
//! `result` (for a failure: `exc_type`, `exc_message`, `exc_module`), `traceback`, `date_done`
//! and, with `result_extended`, `name`. Its `args` and `kwargs` are never read: they are the
//! user's data.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{TaskFailure, redact, traceback};

/// The key prefix of a task's result.
pub const KEY_PREFIX: &str = "celery-task-meta-";

/// What one result says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskResult {
    /// The task's name (see [`TaskFailure::task`]); `None` when neither the result nor its
    /// traceback names it.
    pub task: Option<String>,
    /// Celery's state: `SUCCESS`, `FAILURE`, `RETRY`, `REVOKED`, `STARTED`...
    pub status: String,
    /// When the task finished, if the result says.
    pub done: Option<DateTime<Utc>>,
    /// For a `FAILURE` (or a `RETRY`, whose result is the exception that caused it): what failed.
    pub failure: Option<TaskFailure>,
}

impl TaskResult {
    /// Whether the state will not change any more, so the key need not be read again.
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "SUCCESS" | "FAILURE" | "REVOKED")
    }
}

#[derive(Deserialize)]
struct Raw {
    status: String,
    #[serde(default)]
    result: serde_json::Value,
    #[serde(default)]
    traceback: Option<String>,
    #[serde(default)]
    date_done: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// Reads a result's JSON; `None` when it is not one (another serializer, another program's key).
pub fn parse(json: &[u8]) -> Option<TaskResult> {
    let raw: Raw = serde_json::from_slice(json).ok()?;
    let read = raw
        .traceback
        .as_deref()
        .map(traceback::parse)
        .unwrap_or_default();
    let task = raw.name.or_else(|| task_function(&read.frames));
    // A successful task's own result may be any dict: only a failure's is an exception.
    let failed = matches!(raw.status.as_str(), "FAILURE" | "RETRY");
    let exc_type = failed
        .then(|| raw.result.get("exc_type").and_then(|t| t.as_str()))
        .flatten();
    let failure = exc_type.map(|exc_type| {
        // `exc_message` is the exception's args: usually one string. An argument that is an
        // object or a list (a dict of a request's fields, say) is not shown: its keys and values
        // are data, not the message.
        let message = match raw.result.get("exc_message") {
            Some(serde_json::Value::Array(args)) => args
                .iter()
                .map(|a| match a {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Object(_) | serde_json::Value::Array(_) => "<…>".into(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        TaskFailure {
            task: task.clone().unwrap_or_else(|| "?".into()),
            exception: exc_type.rsplit('.').next().unwrap_or(exc_type).to_owned(),
            message: redact::message(&message),
            frame: read.frame.clone(),
            while_handling: read.while_handling.clone(),
            count: 1,
        }
    });
    Some(TaskResult {
        task,
        status: raw.status,
        done: raw
            .date_done
            .and_then(|d| DateTime::parse_from_rfc3339(&d).ok())
            .map(|d| d.with_timezone(&Utc)),
        failure,
    })
}

/// The task's function, when the result does not name the task: the frame Celery's tracer
/// calls (`__protected_call__` runs `self.run`), or failing that the first application frame.
pub(super) fn task_function(frames: &[super::Frame]) -> Option<String> {
    let after_tracer = frames
        .iter()
        .position(|f| f.function == "__protected_call__")
        .and_then(|at| frames.get(at + 1));
    after_tracer
        .or_else(|| frames.iter().find(|f| !f.file.contains("-packages/")))
        .map(|f| f.function.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_captured_failure_is_read_with_its_name_exception_and_frame() {
        let read = parse(include_bytes!("testdata/failure.json")).unwrap_or_else(|| {
            panic!("the captured result reads");
        });
        assert_eq!(read.status, "FAILURE");
        assert!(read.is_final());
        assert_eq!(read.task.as_deref(), Some("app.worker.audio_overlay"));
        assert!(read.done.is_some());
        let failure = read.failure.unwrap_or_default();
        assert_eq!(failure.exception, "SessionBroken");
        assert_eq!(failure.while_handling.as_deref(), Some("MixError"));
        assert!(failure.message.starts_with("This Session's transaction"));
        assert!(
            !failure.message.contains("hunter2pass"),
            "{}",
            failure.message
        );
        let frame = failure.frame.unwrap_or_default();
        assert_eq!((frame.function.as_str(), frame.line), ("mark_failed", 31));
    }

    #[test]
    fn without_result_extended_the_task_is_named_by_its_function() {
        let read = parse(include_bytes!("testdata/failure-not-extended.json"))
            .unwrap_or_else(|| panic!("the captured result reads"));
        assert_eq!(read.task.as_deref(), Some("audio_overlay"));
        assert_eq!(
            read.failure.map(|f| f.task).as_deref(),
            Some("audio_overlay")
        );
    }

    #[test]
    fn a_captured_success_has_no_failure_and_other_values_are_not_results() {
        let read = parse(include_bytes!("testdata/success.json"))
            .unwrap_or_else(|| panic!("the captured result reads"));
        assert_eq!(read.status, "SUCCESS");
        assert_eq!(read.task.as_deref(), Some("app.worker.join"));
        assert_eq!(read.failure, None);
        assert_eq!(parse(b"\x80\x04pickle"), None);
        let with_data = br#"{"status": "FAILURE", "result": {"exc_type": "ValueError", "exc_message": ["bad input", {"password": "pw1"}, 3]}, "traceback": null}"#;
        let failure = parse(with_data).and_then(|r| r.failure).unwrap_or_default();
        assert_eq!(failure.message, "bad input, <…>, 3");
        assert_eq!(parse(b"{\"x\": 1}"), None);
    }
}
