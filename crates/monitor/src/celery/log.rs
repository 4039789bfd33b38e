//! Task failures from a Celery worker's log, as a watched container's logs or a `--worker-log`
//! file hold them: `[date: ERROR/ForkPoolWorker-1] Task NAME[ID] raised unexpected:
//! ExcType('msg')` followed by the traceback, up to the next log record. `docker compose logs`
//! puts `worker-1  | ` before each line; it is stripped.

use super::{Failures, TaskFailure, redact, traceback};

const RAISED: &str = " raised unexpected: ";

/// The failures in `lines` (oldest first), de-duplicated (see [`Failures`]).
pub fn failures<S: AsRef<str>>(lines: &[S]) -> Vec<TaskFailure> {
    let lines: Vec<&str> = lines.iter().map(|l| unprefixed(l.as_ref())).collect();
    let mut found = Failures::default();
    for (at, line) in lines.iter().enumerate() {
        let Some((task, repr)) = raised(line) else {
            continue;
        };
        let block: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| !is_record(l))
            .copied()
            .collect();
        found.add(failure(task, repr, &block.join("\n")));
    }
    found.into_vec()
}

/// The task's name and the exception's repr of a "Task NAME[ID] raised unexpected: REPR" line.
fn raised(line: &str) -> Option<(&str, &str)> {
    let (head, repr) = line.split_once(RAISED)?;
    let task_and_id = &head[head.rfind("Task ")? + "Task ".len()..];
    let task = task_and_id.split('[').next()?;
    (!task.is_empty()).then_some((task, repr))
}

fn failure(task: &str, repr: &str, block: &str) -> TaskFailure {
    let read = traceback::parse(block);
    // The repr names the type: `SessionBroken("...")`.
    let exception = repr
        .split('(')
        .next()
        .and_then(traceback::exception_type)
        .unwrap_or_else(|| "?".into());
    // The message as Python prints it on the traceback's last line (`module.Type: message`,
    // unescaped, perhaps over several lines), else from the repr.
    let message = read
        .exception_line
        .as_deref()
        .and_then(|line| {
            block
                .split_once(line)
                .map(|(_, more)| format!("{line}{more}"))
        })
        .and_then(|text| text.split_once(": ").map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| repr_message(repr));
    TaskFailure {
        task: task.to_owned(),
        exception,
        message: redact::message(&message),
        frame: read.frame,
        while_handling: read.while_handling,
        count: 1,
    }
}

/// `Type('msg')` as `msg`: the quotes and the call stripped (escapes stay).
fn repr_message(repr: &str) -> String {
    let inside = repr
        .split_once('(')
        .map_or(repr, |(_, rest)| rest.trim_end().trim_end_matches(')'));
    inside.trim_matches(|c| c == '"' || c == '\'').to_owned()
}

/// A line that starts a log record: `[2026-...` (Celery's default format) or `[ERROR/...`
/// (a format without the date). A message's own `[SQL: ...]` line is none.
fn is_record(line: &str) -> bool {
    let Some(head) = line.strip_prefix('[') else {
        return false;
    };
    let bracket = head.split(']').next().unwrap_or_default();
    head.starts_with(|c: char| c.is_ascii_digit())
        || ["DEBUG/", "INFO/", "WARNING/", "ERROR/", "CRITICAL/"]
            .iter()
            .any(|level| bracket.contains(level))
}

/// `worker-1  | text` as `text`: the prefix `docker compose logs` adds.
fn unprefixed(line: &str) -> &str {
    match line.split_once(" | ") {
        Some((name, rest))
            if !name.trim().is_empty()
                && name
                    .trim_end()
                    .chars()
                    .all(|c| c.is_alphanumeric() || "-_.".contains(c)) =>
        {
            rest
        }
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED: &str = include_str!("testdata/worker.log");

    #[test]
    fn a_captured_worker_log_gives_the_failure_once_with_its_count() {
        let lines: Vec<&str> = CAPTURED.lines().collect();
        let found = failures(&lines);
        assert_eq!(found.len(), 1, "{found:#?}");
        let failure = &found[0];
        assert_eq!(failure.task, "app.worker.audio_overlay");
        assert_eq!(failure.exception, "SessionBroken");
        assert_eq!(failure.count, 2);
        assert_eq!(failure.while_handling.as_deref(), Some("MixError"));
        let frame = failure.frame.clone().unwrap_or_default();
        assert_eq!((frame.function.as_str(), frame.line), ("mark_failed", 31));
        assert!(
            failure
                .message
                .starts_with("This Session's transaction has been rolled back"),
            "{}",
            failure.message
        );
        for secret in ["s3cr3t-literal", "secret-param-42", "hunter2pass"] {
            assert!(!failure.message.contains(secret), "{}", failure.message);
        }
    }

    #[test]
    fn the_same_failure_reads_alike_from_the_log_and_the_result_backend() {
        let lines: Vec<&str> = CAPTURED.lines().collect();
        let from_log = failures(&lines).remove(0);
        let from_backend = super::super::result::parse(include_bytes!("testdata/failure.json"))
            .and_then(|r| r.failure)
            .unwrap_or_default();
        assert_eq!(
            TaskFailure {
                count: 1,
                ..from_log
            },
            from_backend
        );
    }

    /// The Python reference stack's planted failing error handler (`testbed-py`, Celery 5.7,
    /// SQLAlchemy 2.1 on psycopg 3), as its worker logged it: a chain of three tracebacks, the
    /// messages over several lines with a failing row, SQL and parameters.
    #[test]
    fn the_python_stacks_failing_handler_is_read_with_what_it_was_handling() {
        let lines: Vec<&str> = include_str!("testdata/python-stack-worker.log")
            .lines()
            .collect();
        let found = failures(&lines);
        assert_eq!(found.len(), 1, "{found:#?}");
        let failure = &found[0];
        assert_eq!(failure.exception, "PendingRollbackError");
        assert_eq!(failure.while_handling.as_deref(), Some("IntegrityError"));
        let frame = failure.frame.clone().unwrap_or_default();
        assert_eq!(frame.short(), "app/worker.py:168 in `audio_overlay`");
        assert!(
            failure.message.starts_with(
                "This Session's transaction has been rolled back due to a previous exception \
                 during flush."
            ),
            "{}",
            failure.message
        );
        for value in ["task_1_audio_overlay.mp4", "18441", "'user_id'"] {
            assert!(!failure.message.contains(value), "{}", failure.message);
        }
    }

    #[test]
    fn compose_prefixes_are_stripped_and_a_cut_traceback_falls_back_to_the_repr() {
        let lines = [
            "worker-1  | [2026-12-04 21:49:24,183: ERROR/ForkPoolWorker-2] Task app.tasks.trim[6b20] raised unexpected: ValueError('bad duration 12s')",
            "worker-1  | [2026-12-04 21:49:25,000: INFO/MainProcess] Task app.tasks.trim[7c31] received",
        ];
        let found = failures(&lines);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].task, "app.tasks.trim");
        assert_eq!(found[0].exception, "ValueError");
        assert_eq!(found[0].message, "bad duration 12s");
        assert_eq!(found[0].frame, None);
        assert!(failures(&["nothing here", "[2026-01-01] fine"]).is_empty());
        // A record without the date ends the traceback too; a message's `[SQL: ...]` line does not.
        let lines = [
            "[ERROR/ForkPoolWorker-2] Task app.tasks.trim[1] raised unexpected: IntegrityError('x')",
            "Traceback (most recent call last):",
            "  File \"/srv/app/tasks.py\", line 9, in trim",
            "    session.commit()",
            "sqlalchemy.exc.IntegrityError: (psycopg.errors.UniqueViolation) duplicate key",
            "[SQL: INSERT INTO jobs (name) VALUES (%(name)s)]",
            "[parameters: {'name': 'secret'}]",
            "[INFO/ForkPoolWorker-1] Task app.tasks.join[2] succeeded in 1.0s: None",
        ];
        let found = failures(&lines);
        assert_eq!(
            found[0].message,
            "(psycopg.errors.UniqueViolation) duplicate key\n[SQL: INSERT INTO jobs (name) VALUES (%(name)s)]\n[parameters: ***]"
        );
        assert_eq!(found[0].frame.as_ref().map(|f| f.line), Some(9));
    }
}
