//! SQL text without its literals: a small lexer over PostgreSQL's syntax that replaces every
//! string (`'...'`, `E'...'` with backslash escapes, `B'...'`, `X'...'`, `U&'...'`, dollar-quoted
//! `$tag$...$tag$`) and every number with `?`, drops comments, collapses whitespace and lists of
//! placeholders (`IN (?, ?, ?)` is `IN (...)`), and keeps parameters (`$1`), identifiers and
//! keywords. A query a user's code sends can carry a password or a token as a literal: only
//! this text is ever stored. Text it cannot lex (cut off by `track_activity_query_size` in the
//! middle of a string) is replaced to its end.

/// What a token is, as far as normalizing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A keyword or identifier, quoted or not.
    Word,
    /// `?` (a literal replaced) or `$n` (a parameter).
    Placeholder,
    /// Anything else: operators, parentheses, commas.
    Punct,
}

#[derive(Debug, Clone)]
struct Token {
    text: String,
    kind: Kind,
    /// Whitespace or a comment came before it.
    spaced: bool,
}

/// `sql` with every literal replaced by `?`, comments dropped, whitespace collapsed and lists
/// of placeholders after `IN` collapsed to `(...)`; at most `max_chars` characters (cut with
/// `...`).
pub fn normalize(sql: &str, max_chars: usize) -> String {
    truncate(&render(&collapse_in_lists(lex(sql))), max_chars)
}

fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 && token.spaced {
            out.push(' ');
        }
        out.push_str(&token.text);
    }
    out
}

/// Type names that PostgreSQL's normalized text leaves before a parameter that replaced a
/// typed literal (`interval '30 days'` is shown `interval $2`, which does not parse).
const LITERAL_TYPES: &[&str] = &[
    "interval",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "text",
    "varchar",
    "int",
    "integer",
    "int2",
    "int4",
    "int8",
    "bigint",
    "smallint",
    "numeric",
    "decimal",
    "real",
    "float4",
    "float8",
    "bool",
    "boolean",
    "json",
    "jsonb",
    "uuid",
    "bytea",
    "inet",
];

/// `sql` (a statement as `pg_stat_statements` normalized it) made preparable: `interval $2`
/// becomes `$2::interval`, literals are replaced (there should be none left), comments dropped.
pub fn preparable(sql: &str) -> String {
    let tokens = lex(sql);
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        let typed = token.kind == Kind::Word
            && LITERAL_TYPES.contains(&token.text.to_lowercase().as_str())
            && tokens
                .get(i + 1)
                .is_some_and(|next| next.kind == Kind::Placeholder && next.text.starts_with('$'));
        if typed {
            out.push(Token {
                text: format!("{}::{}", tokens[i + 1].text, token.text),
                kind: Kind::Placeholder,
                spaced: token.spaced,
            });
            i += 2;
        } else {
            out.push(token.clone());
            i += 1;
        }
    }
    render(&out)
}

/// The identifiers of `sql` (unquoted ones lower-cased, quoted ones as written), in order:
/// what a plan's filter names, e.g. `file_events` and `user_id` in
/// `(file_events.user_id = $1)`.
pub fn words(sql: &str) -> Vec<String> {
    lex(sql)
        .into_iter()
        .filter(|t| t.kind == Kind::Word)
        .map(|t| match t.text.strip_prefix('"') {
            Some(quoted) => quoted.trim_end_matches('"').replace("\"\"", "\""),
            None => t.text.to_lowercase(),
        })
        .collect()
}

/// The first keyword of `sql`, upper-cased (`SELECT`, `WITH`, `INSERT`...), if it starts with
/// one (after comments and parentheses).
pub fn first_keyword(sql: &str) -> Option<String> {
    lex(sql)
        .into_iter()
        .find(|t| t.text != "(")
        .filter(|t| t.kind == Kind::Word && !t.text.starts_with('"'))
        .map(|t| t.text.to_uppercase())
}

/// Whether `sql` holds more than one statement (a `;` with something after it).
pub fn several_statements(sql: &str) -> bool {
    let tokens = lex(sql);
    tokens
        .iter()
        .position(|t| t.text == ";")
        .is_some_and(|at| tokens[at + 1..].iter().any(|t| t.text != ";"))
}

/// How many parameters `sql` takes: its highest `$n`.
pub fn parameters(sql: &str) -> usize {
    lex(sql)
        .iter()
        .filter_map(|t| t.text.strip_prefix('$')?.parse::<usize>().ok())
        .max()
        .unwrap_or(0)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// The lexer: the tokens of `sql`, literals already replaced by a `?` placeholder.
fn lex(sql: &str) -> Vec<Token> {
    let chars: Vec<char> = sql.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut spaced = false;
    let push = |tokens: &mut Vec<Token>, text: String, kind: Kind, spaced: &mut bool| {
        tokens.push(Token {
            text,
            kind,
            spaced: *spaced,
        });
        *spaced = false;
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            spaced = true;
            i += 1;
        } else if c == '-' && next == Some('-') {
            // A line comment: to the end of the line.
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            spaced = true;
        } else if c == '/' && next == Some('*') {
            i = block_comment_end(&chars, i);
            spaced = true;
        } else if c == '\'' {
            i = string_end(&chars, i + 1, false);
            push(&mut tokens, "?".into(), Kind::Placeholder, &mut spaced);
        } else if c == '"' {
            let end = quoted_identifier_end(&chars, i + 1);
            if end > chars.len() {
                // Cut off inside a quoted identifier: nothing more to read.
                push(&mut tokens, "?".into(), Kind::Placeholder, &mut spaced);
                break;
            }
            let text: String = chars[i..end].iter().collect();
            push(&mut tokens, text, Kind::Word, &mut spaced);
            i = end;
        } else if c == '$' && next.is_some_and(|n| n.is_ascii_digit()) {
            let mut end = i + 1;
            while end < chars.len() && chars[end].is_ascii_digit() {
                end += 1;
            }
            let text: String = chars[i..end].iter().collect();
            push(&mut tokens, text, Kind::Placeholder, &mut spaced);
            i = end;
        } else if c == '$' {
            match dollar_tag(&chars, i) {
                Some(tag) => {
                    i = dollar_string_end(&chars, i + tag.len(), &tag);
                    push(&mut tokens, "?".into(), Kind::Placeholder, &mut spaced);
                }
                None => {
                    push(&mut tokens, "$".into(), Kind::Punct, &mut spaced);
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) {
            i = number_end(&chars, i);
            push(&mut tokens, "?".into(), Kind::Placeholder, &mut spaced);
        } else if is_word_start(c) {
            let mut end = i;
            while end < chars.len() && is_word_char(chars[end]) {
                end += 1;
            }
            let word: String = chars[i..end].iter().collect();
            // A prefixed string: E'...', B'...', X'...', N'...', U&'...'.
            let lower = word.to_lowercase();
            if chars.get(end) == Some(&'\'') && matches!(lower.as_str(), "e" | "b" | "x" | "n") {
                i = string_end(&chars, end + 1, lower == "e");
                push(&mut tokens, "?".into(), Kind::Placeholder, &mut spaced);
            } else if lower == "u"
                && chars.get(end) == Some(&'&')
                && chars.get(end + 1) == Some(&'\'')
            {
                i = string_end(&chars, end + 2, false);
                push(&mut tokens, "?".into(), Kind::Placeholder, &mut spaced);
            } else {
                push(&mut tokens, word, Kind::Word, &mut spaced);
                i = end;
            }
        } else {
            push(&mut tokens, c.to_string(), Kind::Punct, &mut spaced);
            i += 1;
        }
    }
    tokens
}

/// Past the `'` closing a string whose content starts at `i` (`''` is a quote inside; with
/// `backslash`, as in `E'...'`, so is `\'`); `chars.len()` when it never closes.
fn string_end(chars: &[char], mut i: usize, backslash: bool) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' if backslash => i += 2,
            '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
            '\'' => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// Past the `"` closing a quoted identifier whose content starts at `i`; past the end
/// (`chars.len() + 1`) when it never closes.
fn quoted_identifier_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        if chars[i] == '"' {
            if chars.get(i + 1) == Some(&'"') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len() + 1
}

/// Past a block comment starting at `i` (they nest in PostgreSQL).
fn block_comment_end(chars: &[char], mut i: usize) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
            depth += 1;
            i += 2;
        } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    chars.len()
}

/// The opening tag of a dollar-quoted string at `i` (`$$` or `$name$`), if one starts there.
fn dollar_tag(chars: &[char], i: usize) -> Option<Vec<char>> {
    let mut end = i + 1;
    if chars.get(end).is_some_and(|c| is_word_start(*c)) {
        while chars
            .get(end)
            .is_some_and(|c| c.is_alphanumeric() || *c == '_')
        {
            end += 1;
        }
    }
    (chars.get(end) == Some(&'$')).then(|| chars[i..=end].to_vec())
}

/// Past the closing `tag` of a dollar-quoted string whose content starts at `i`.
fn dollar_string_end(chars: &[char], i: usize, tag: &[char]) -> usize {
    (i..chars.len())
        .find(|&at| chars[at..].starts_with(tag))
        .map_or(chars.len(), |at| at + tag.len())
}

/// Past a number starting at `i`: digits, `_` separators, a fraction, an exponent, or a
/// `0x`/`0o`/`0b` prefix; and any letters glued to it (`1abc` is no identifier).
fn number_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        let c = chars[i];
        let exponent_sign = (c == '+' || c == '-') && matches!(chars[i - 1], 'e' | 'E');
        if !(c.is_alphanumeric() || c == '_' || c == '.' || exponent_sign) {
            break;
        }
        i += 1;
    }
    i
}

/// `IN (?, $2, ?)` becomes `IN (...)`: a list's length is no part of the statement.
fn collapse_in_lists(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let is_in = tokens[i].kind == Kind::Word && tokens[i].text.eq_ignore_ascii_case("in");
        if is_in && tokens.get(i + 1).is_some_and(|t| t.text == "(") {
            let mut j = i + 2;
            let mut items = 0;
            while tokens.get(j).is_some_and(|t| t.kind == Kind::Placeholder) {
                items += 1;
                j += 1;
                // A cast of the item: `$1::BIGINT`.
                while tokens.get(j).is_some_and(|t| t.text == ":")
                    && tokens.get(j + 1).is_some_and(|t| t.text == ":")
                    && tokens.get(j + 2).is_some_and(|t| t.kind == Kind::Word)
                {
                    j += 3;
                }
                if tokens.get(j).is_some_and(|t| t.text == ",") {
                    j += 1;
                } else {
                    break;
                }
            }
            if items > 0 && tokens.get(j).is_some_and(|t| t.text == ")") {
                out.push(tokens[i].clone());
                out.push(tokens[i + 1].clone());
                out.push(Token {
                    text: "...".into(),
                    kind: Kind::Punct,
                    spaced: false,
                });
                out.push(Token {
                    spaced: false,
                    ..tokens[j].clone()
                });
                i = j + 1;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(sql: &str) -> String {
        normalize(sql, 1000)
    }

    #[test]
    fn strings_of_every_kind_become_placeholders() {
        assert_eq!(
            n("SELECT * FROM users WHERE email = 'a@b.c' AND name = 'O''Brien'"),
            "SELECT * FROM users WHERE email = ? AND name = ?"
        );
        assert_eq!(n(r"SELECT E'it\'s \\ secret', 1"), "SELECT ?, ?");
        assert_eq!(
            n("SELECT B'0101', X'ff', N'nat', U&'d\\0061t'"),
            "SELECT ?, ?, ?, ?"
        );
        assert_eq!(
            n("SELECT $$a 'quoted' secret$$, $fn$ body $$ inner $fn$ AS x"),
            "SELECT ?, ? AS x"
        );
        // A plain string keeps backslashes literal: the quote after it closes the string.
        assert_eq!(n(r"SELECT 'C:\' , 'secret'"), "SELECT ? , ?");
        assert_eq!(n("SELECT date '2024-01-01'"), "SELECT date ?");
    }

    #[test]
    fn numbers_go_but_identifiers_and_parameters_stay() {
        assert_eq!(
            n("SELECT t1.c2, 42, -3.5e-7, .5, 0x1F, 1_000 FROM t1 WHERE id = $1 LIMIT 10"),
            "SELECT t1.c2, ?, -?, ?, ?, ? FROM t1 WHERE id = $1 LIMIT ?"
        );
        assert_eq!(
            n(r#"SELECT "Col 1" FROM "My""Table""#),
            r#"SELECT "Col 1" FROM "My""Table""#
        );
    }

    #[test]
    fn comments_go_and_whitespace_collapses() {
        assert_eq!(
            n("SELECT a -- password=hunter2\n  FROM /* token /* nested */ x */ t"),
            "SELECT a FROM t"
        );
    }

    #[test]
    fn in_lists_collapse() {
        assert_eq!(
            n("SELECT * FROM t WHERE id IN (1, 2, 3) AND k in ($1,$2) AND s IN ('a')"),
            "SELECT * FROM t WHERE id IN (...) AND k in (...) AND s IN (...)"
        );
        assert_eq!(
            n("SELECT f FROM files WHERE files.id IN ($1::BIGINT, $2::BIGINT)"),
            "SELECT f FROM files WHERE files.id IN (...)"
        );
        assert_eq!(
            n("SELECT * FROM t WHERE id IN (SELECT id FROM u)"),
            "SELECT * FROM t WHERE id IN (SELECT id FROM u)"
        );
    }

    #[test]
    fn text_cut_inside_a_literal_loses_the_rest() {
        assert_eq!(n("SELECT 'secr"), "SELECT ?");
        assert_eq!(n("SELECT $$secr"), "SELECT ?");
        assert_eq!(n("SELECT E'se\\'cr"), "SELECT ?");
        assert_eq!(n(r#"SELECT "unclosed secret"#), "SELECT ?");
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(normalize("SELECT abcdef", 8), "SELECT a...");
        assert_eq!(normalize("SELECT é", 8), "SELECT é");
    }

    #[test]
    fn words_first_keyword_and_statement_count() {
        assert_eq!(
            words(r#"((file_events.user_id = $1) AND ("Kind" = 'x'::text))"#),
            ["file_events", "user_id", "and", "Kind", "text"]
        );
        assert_eq!(first_keyword(" (SELECT 1)").as_deref(), Some("SELECT"));
        assert_eq!(
            first_keyword("/* c */ update t set a = 1").as_deref(),
            Some("UPDATE")
        );
        assert!(several_statements("SELECT 1; DROP TABLE t"));
        assert_eq!(
            preparable(
                "SELECT count(*) FROM fe WHERE created_at > now() - interval $2 AND a IN ($3, $4)"
            ),
            "SELECT count(*) FROM fe WHERE created_at > now() - $2::interval AND a IN ($3, $4)"
        );
        assert_eq!(parameters("SELECT $2, '$9' FROM t WHERE a = $10"), 10);
        assert!(!several_statements("SELECT ';'; "));
    }

    proptest::proptest! {
        /// Whatever surrounds it, a literal's content never survives.
        #[test]
        fn no_literal_survives(
            secret in "[A-Za-z0-9]{12,20}",
            before in "[ -~\n]{0,30}",
            kind in 0usize..6,
        ) {
            let literal = match kind {
                0 => format!("'{secret}'"),
                1 => format!("E'x\\'{secret}'"),
                2 => format!("$$ {secret} $$"),
                3 => format!("$q$ {secret} $q$"),
                4 => format!("'it''s {secret}'"),
                _ => format!("/* {secret} */ ?"),
            };
            // A statement whose own text was cut anywhere: the secret is in a literal or gone.
            let sql = format!("SELECT a FROM t WHERE b = {literal} AND c = 1");
            let out = normalize(&sql, 1000);
            proptest::prop_assert!(!out.contains(&secret), "{sql} -> {out}");
            let _ = normalize(&format!("{before}{literal}"), 1000);
            for cut in 0..sql.len() {
                if sql.is_char_boundary(cut) {
                    let out = normalize(&sql[..cut], 1000);
                    proptest::prop_assert!(!out.contains(&secret), "{} -> {out}", &sql[..cut]);
                }
            }
        }
    }
}
