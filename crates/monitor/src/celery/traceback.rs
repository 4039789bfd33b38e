//! What a Python traceback says: the frame a developer edits, the exception raised and the one
//! being handled when it was. Celery stores the traceback as text (the result backend's
//! `traceback`) and logs the same text after "raised unexpected", so both read it here.

use super::Frame;

/// What was read of one traceback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traceback {
    /// The application's frame nearest the raise (see [`super::TaskFailure::frame`]).
    pub frame: Option<Frame>,
    /// The frames of the last `Traceback (most recent call last):` block, outermost first.
    pub frames: Vec<Frame>,
    /// The last exception line: `module.Type: message`, as Python prints it.
    pub exception_line: Option<String>,
    /// The exception type of the block before "During handling of the above exception".
    pub while_handling: Option<String>,
}

const HEADER: &str = "Traceback (most recent call last):";
const DURING: &str = "During handling of the above exception, another exception occurred:";

/// Reads a traceback's text.
pub fn parse(text: &str) -> Traceback {
    let lines: Vec<&str> = text.lines().collect();
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].trim_end().ends_with(HEADER))
        .collect();
    let Some(&last_header) = headers.last() else {
        return Traceback::default();
    };
    // The block before a "During handling" separator raised the exception being handled (its
    // message may run over several lines: SQLAlchemy's `[SQL: ...]`, `(Background on ...)`).
    let while_handling = headers.iter().rev().nth(1).and_then(|&previous| {
        let during = (previous..last_header).find(|&i| lines[i].contains(DURING))?;
        exception_line(&lines[previous + 1..during]).and_then(|l| exception_type(&l))
    });
    let block = &lines[last_header + 1..];
    let frames: Vec<Frame> = block.iter().filter_map(|l| frame(l)).collect();
    let exception_line = exception_line(block);
    Traceback {
        frame: application_frame(&frames),
        frames,
        exception_line,
        while_handling,
    }
}

/// The exception line of a block (the lines after its header): the first unindented line
/// after its last frame.
fn exception_line(block: &[&str]) -> Option<String> {
    let after_frames = block
        .iter()
        .rposition(|l| frame(l).is_some())
        .map_or(0, |at| at + 1);
    block[after_frames..]
        .iter()
        .find(|l| !l.starts_with(' ') && !l.trim().is_empty())
        .map(|l| l.trim_end().to_owned())
}

/// `  File "/srv/app/worker.py", line 88, in mark_failed` as a [`Frame`].
fn frame(line: &str) -> Option<Frame> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (file, rest) = rest.split_once("\", line ")?;
    let (number, function) = rest.split_once(", in ")?;
    Some(Frame {
        file: file.to_owned(),
        line: number.trim().parse().ok()?,
        function: function.trim().to_owned(),
    })
}

/// The type in `module.Type: message` (or a bare `Type`): `Type`, if the line looks like one.
pub fn exception_type(line: &str) -> Option<String> {
    let head = line.trim().split(':').next()?.trim();
    let name = head.rsplit('.').next()?;
    let is_name = !name.is_empty()
        && !head.contains(' ')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(char::is_uppercase);
    is_name.then(|| name.to_owned())
}

/// Whether a frame is in installed packages or the standard library rather than the
/// application: a venv's or the system's `site-packages`/`dist-packages`, `lib/pythonX.Y`,
/// or frozen import machinery.
fn is_library(file: &str) -> bool {
    file.contains("/site-packages/")
        || file.contains("/dist-packages/")
        || file.starts_with('<')
        || file
            .split('/')
            .any(|part| part.starts_with("python3") && part.len() > 7)
}

/// The last application frame, or the last frame when all are library frames: SQLAlchemy raises
/// `PendingRollbackError` deep in `sqlalchemy/orm/session.py`, but the line to edit is the
/// application's call.
fn application_frame(frames: &[Frame]) -> Option<Frame> {
    frames
        .iter()
        .rev()
        .find(|f| !is_library(&f.file))
        .or_else(|| frames.last())
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure_traceback() -> String {
        let json: serde_json::Value =
            serde_json::from_str(include_str!("testdata/failure.json")).unwrap_or_default();
        json["traceback"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn a_celery_traceback_names_the_handler_that_failed_and_what_it_handled() {
        let read = parse(&failure_traceback());
        let frame = read.frame.unwrap_or_default();
        assert_eq!(frame.function, "mark_failed");
        assert_eq!(frame.line, 31);
        assert!(
            frame.file.ends_with("celery/failing_handler.py"),
            "{frame:?}"
        );
        assert_eq!(read.frames.len(), 4, "{:?}", read.frames);
        assert_eq!(read.while_handling.as_deref(), Some("MixError"));
        let line = read.exception_line.unwrap_or_default();
        assert!(
            line.starts_with("failing_handler.SessionBroken: This Session's"),
            "{line}"
        );
    }

    #[test]
    fn library_frames_give_way_to_the_applications_call() {
        let text = "Traceback (most recent call last):\n  File \"/srv/app/worker.py\", line 88, in mark_failed\n    session.commit()\n  File \"/venv/lib/python3.12/site-packages/sqlalchemy/orm/session.py\", line 1956, in commit\n    trans.commit()\nsqlalchemy.exc.PendingRollbackError: This Session's transaction has been rolled back\n";
        let read = parse(text);
        assert_eq!(
            read.frame.map(|f| (f.function, f.line)),
            Some(("mark_failed".into(), 88))
        );
        assert_eq!(read.while_handling, None);
        assert_eq!(
            exception_type("sqlalchemy.exc.PendingRollbackError: x").as_deref(),
            Some("PendingRollbackError")
        );
        assert_eq!(exception_type("KeyError").as_deref(), Some("KeyError"));
        assert_eq!(exception_type("    raise x"), None);
        assert_eq!(parse("no traceback here"), Traceback::default());
    }
}
