//! An exception's message with its secrets removed before anything stores it. Messages of
//! database errors quote the statement with its literals and its bound parameters
//! (SQLAlchemy's `[SQL: ...]` and `[parameters: ...]`, PostgreSQL's `DETAIL: Key (email)=(...)`),
//! and connection errors quote the URL with its password. The type and the shape of the
//! message stay: they are what a developer searches for.

use common::redact::{is_secret_name, reference};

/// What replaces a removed value.
const MASK: &str = "***";

/// `message` redacted: `[parameters: ...]` blocks masked, single-quoted literals replaced by
/// `'?'` (an apostrophe inside a word, as in "Session's", is no quote), numbers in `[SQL: ...]`
/// replaced by `?`, the values of PostgreSQL's `Key (...)=(...)` masked, URLs shown without
/// their credentials, the values of secret-named `name=value` pairs masked; then cut to
/// [`super::MESSAGE_CHARS`] characters.
pub fn message(raw: &str) -> String {
    let text = parameters(raw);
    let text = sql_numbers(&text);
    let text = quoted_literals(&text);
    let text = key_values(&text);
    let text = failing_row(&text);
    let text = words(&text);
    cut(&text, super::MESSAGE_CHARS)
}

/// Masks every `[parameters: ...]` block, brackets nested inside counted.
fn parameters(text: &str) -> String {
    const OPEN: &str = "[parameters: ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at + OPEN.len()]);
        out.push_str(MASK);
        let inside = &rest[at + OPEN.len()..];
        let mut depth = 1;
        let end = inside.char_indices().find_map(|(i, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        });
        match end {
            Some(end) => rest = &inside[end..],
            // Cut off: everything after the opening is a parameter.
            None => return out + "]",
        }
    }
    out.push_str(rest);
    out
}

/// Numbers standing alone inside `[SQL: ...]` blocks as `?` (a column like `col1` keeps its
/// digits).
fn sql_numbers(text: &str) -> String {
    const OPEN: &str = "[SQL: ";
    let Some(at) = text.find(OPEN) else {
        return text.to_owned();
    };
    let start = at + OPEN.len();
    let end = text[start..].find(']').map_or(text.len(), |e| start + e);
    let mut sql = String::new();
    let mut previous: Option<char> = None;
    let mut in_number = false;
    for c in text[start..end].chars() {
        let word_before = previous.is_some_and(|p| p.is_alphanumeric() || p == '_');
        if c.is_ascii_digit() && (in_number || !word_before) {
            if !in_number {
                sql.push('?');
            }
            in_number = true;
        } else if in_number && c == '.' {
            // A decimal point inside the number.
        } else {
            in_number = false;
            sql.push(c);
        }
        previous = Some(c);
    }
    format!("{}{sql}{}", &text[..start], sql_numbers(&text[end..]))
}

/// Single-quoted literals as `'?'`. A quote opens a literal only after a non-word character (so
/// "Session's" is a word), and `''` inside a literal is an escaped quote, as SQL writes it.
fn quoted_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let opens =
            c == '\'' && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'));
        if !opens {
            out.push(c);
            i += 1;
            continue;
        }
        // Find the closing quote, skipping `''` and `\'`.
        let mut j = i + 1;
        let close = loop {
            match chars.get(j) {
                None => break None,
                Some('\\') => j += 2,
                Some('\'') if chars.get(j + 1) == Some(&'\'') => j += 2,
                Some('\'') => break Some(j),
                Some(_) => j += 1,
            }
        };
        match close {
            Some(close) => {
                out.push_str("'?'");
                i = close + 1;
            }
            // An unclosed quote: the rest may be a literal cut off.
            None => {
                out.push_str("'?");
                break;
            }
        }
    }
    out
}

/// PostgreSQL's `Key (email)=(bob@example.com) already exists` with the values masked.
fn key_values(text: &str) -> String {
    const MARK: &str = ")=(";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len()]);
        out.push_str(MASK);
        let inside = &rest[at + MARK.len()..];
        match inside.find(')') {
            Some(end) => rest = &inside[end..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// PostgreSQL's `DETAIL:  Failing row contains (15, 1, a.mp4, null, ...)`: the row's values
/// masked.
fn failing_row(text: &str) -> String {
    const MARK: &str = "Failing row contains (";
    let Some(at) = text.find(MARK) else {
        return text.to_owned();
    };
    let start = at + MARK.len();
    // The row's values may hold parentheses (JSON, text): to the line's last `)`.
    let line_end = text[start..].find('\n').map_or(text.len(), |e| start + e);
    let end = text[start..line_end]
        .rfind(')')
        .map_or(line_end, |e| start + e);
    format!("{}{MASK}{}", &text[..start], failing_row(&text[end..]))
}

/// Each whitespace-separated word: a URL with credentials redacted, a `name=value` whose name is
/// a secret's masked (a libpq DSN's `password=...`).
fn words(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end();
        let space = &piece[word.len()..];
        // Punctuation around a URL (`(`, `)`, `,`, quotes) stays outside what is parsed.
        let trimmed = word.trim_matches(|c: char| "()[]{},;\"'<>".contains(c));
        let (lead, tail) = match word.find(trimmed) {
            Some(at) if !trimmed.is_empty() => (&word[..at], &word[at + trimmed.len()..]),
            _ => (word, ""),
        };
        if trimmed.contains("://") {
            out.push_str(lead);
            out.push_str(&reference(trimmed));
            out.push_str(tail);
        } else if let Some((name, _)) = trimmed.split_once('=')
            && is_secret_name(name)
        {
            out.push_str(lead);
            out.push_str(name);
            out.push('=');
            out.push_str(MASK);
            out.push_str(tail);
        } else {
            out.push_str(word);
        }
        out.push_str(space);
    }
    out
}

/// At most `chars` characters, with `…` when cut.
fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message a real worker stored (testdata/failure.json): a SQL literal, a parameter and
    /// a password in a URL.
    fn captured() -> String {
        let json: serde_json::Value =
            serde_json::from_str(include_str!("testdata/failure.json")).unwrap_or_default();
        json["result"]["exc_message"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    #[test]
    fn a_captured_message_keeps_its_shape_and_loses_its_secrets() {
        let raw = captured();
        assert!(raw.contains("s3cr3t-literal"), "the fixture plants secrets");
        let clean = message(&raw);
        for secret in [
            "s3cr3t-literal",
            "secret-param-42",
            "hunter2pass",
            "'failed'",
        ] {
            assert!(!clean.contains(secret), "{secret} in {clean}");
        }
        assert_eq!(
            clean,
            "This Session's transaction has been rolled back due to a previous exception during \
             flush. [SQL: UPDATE jobs SET status='?', owner='?' WHERE id = %(id)s] [parameters: \
             ***] (connecting to postgresql://app:***@db:5432/app)"
        );
    }

    #[test]
    fn literals_keys_numbers_and_secret_pairs_are_masked() {
        assert_eq!(
            message(
                "duplicate key value violates unique constraint \"users_email_key\"\nDETAIL:  Key (email)=(bob@example.com) already exists."
            ),
            "duplicate key value violates unique constraint \"users_email_key\"\nDETAIL:  Key (email)=(***) already exists."
        );
        assert_eq!(
            message("[SQL: SELECT * FROM t1 WHERE a = 42 AND b = 'it''s' LIMIT 10]"),
            "[SQL: SELECT * FROM t1 WHERE a = ? AND b = '?' LIMIT ?]"
        );
        assert_eq!(
            message("could not connect: host=db password=hunter2 dbname=app"),
            "could not connect: host=db password=*** dbname=app"
        );
        assert_eq!(
            message("Error 111 connecting to redis://:tok3n@cache:6379/0."),
            "Error 111 connecting to redis://:***@cache:6379/0."
        );
        assert_eq!(message("KeyError: 'unterminated"), "KeyError: '?");
        assert_eq!(
            message(
                "violates not-null constraint\nDETAIL:  Failing row contains (15, 1, a.mp4, null, {\"task_id\": 1}).\n[SQL: x]"
            ),
            "violates not-null constraint\nDETAIL:  Failing row contains (***).\n[SQL: x]"
        );
        assert_eq!(message("[parameters: {'a': [1, 2]"), "[parameters: ***]");
        let long = "x".repeat(400);
        assert_eq!(
            message(&long).chars().count(),
            crate::celery::MESSAGE_CHARS + 1
        );
    }
}
