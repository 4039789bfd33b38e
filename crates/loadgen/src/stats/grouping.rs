//! Failure and error messages grouped so that their tables stay small whatever the target
//! answers: a 500 whose body carries a request id would otherwise make one row per request
//! (430,000 rows and 80 MB in 30 s). Varying parts (UUIDs, long numbers, hex ids) are replaced,
//! the text is capped, and past [`MAX_ROWS`] distinct messages the rest are counted together.

/// Distinct messages kept per table; the rest are counted in one [`OTHER`] row.
pub const MAX_ROWS: usize = 200;
/// The row that counts messages past [`MAX_ROWS`].
pub const OTHER: &str = "(other messages: more distinct messages than the report keeps)";
/// Longest message kept, in characters.
const MAX_CHARS: usize = 200;

/// `message` with its varying parts replaced: UUIDs by `<uuid>`, hex ids of 8+ characters by
/// `<hex>`, numbers of 4+ digits by `<n>` (a status code or a small count stays), capped in
/// length.
pub fn normalize(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_CHARS + 8));
    let mut chars = 0;
    for token in tokens(message) {
        let shown = if token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            classify(token)
        } else {
            token
        };
        for c in shown.chars() {
            if chars == MAX_CHARS {
                out.push('…');
                return out;
            }
            out.push(c);
            chars += 1;
        }
    }
    out
}

/// Runs of ASCII letters, digits and dashes (which ids are made of), and single other chars.
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let len = if first.is_ascii_alphanumeric() || first == '-' {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(rest.len())
        } else {
            first.len_utf8()
        };
        let (token, tail) = rest.split_at(len);
        rest = tail;
        Some(token)
    })
}

fn classify(token: &str) -> &str {
    let is_uuid = token.len() == 36
        && token.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if is_uuid {
        return "<uuid>";
    }
    let digits = token.chars().filter(char::is_ascii_digit).count();
    if digits == token.len() && digits >= 4 {
        return "<n>";
    }
    if token.len() >= 8 && digits > 0 && token.chars().all(|c| c.is_ascii_hexdigit()) {
        return "<hex>";
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_ids_and_keeps_what_tells_failures_apart() {
        assert_eq!(
            normalize("HTTP 500: request 3f2b8c1e-9d4a-4b7e-8f00-123456789abc failed"),
            "HTTP 500: request <uuid> failed"
        );
        assert_eq!(
            normalize("HTTP 500: id 1732994 at deadbeef0042 (try 3)"),
            "HTTP 500: id <n> at <hex> (try 3)"
        );
        assert_eq!(normalize("connection refused"), "connection refused");
        assert_eq!(
            normalize("HTTP 429: Too many requests"),
            "HTTP 429: Too many requests"
        );
        // Words of hex letters alone are words.
        assert_eq!(normalize("deadbeef cafebabe"), "deadbeef cafebabe");
        let long = "x".repeat(1000);
        assert_eq!(normalize(&long).chars().count(), MAX_CHARS + 1);
        assert_eq!(normalize("é ü 1234"), "é ü <n>");
    }
}
