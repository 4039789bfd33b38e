//! Values that change per user and per request: `${name}` in any string of a step.
//!
//! - `${name}`: a variable of the user (set by `vars`, `extract` or `append`);
//! - `${user}`: the user's number, unique in the run; `${run}`: the run's id; `${seq}`: a counter
//!   that grows by one each time it is read, per user;
//! - `${pick LIST}`: a random element of a list variable; `${pick LIST N}`: N distinct ones, as
//!   a JSON array;
//! - `${randint A B}`: a random integer from A to B, both included (Python's
//!   `random.randint`); `${uuid}`: a random UUID (version 4), as `str(uuid.uuid4())`.
//!
//! A string that is exactly one `${...}` keeps the value's JSON type (a number stays a number,
//! `${pick videos 2}` is an array); anywhere else the value is spliced in as text.

use std::collections::HashMap;
use std::fmt;

use rand::seq::IndexedRandom;
use serde_json::Value;

/// One `${...}` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A user variable.
    Var(String),
    /// The user's number.
    User,
    /// The run id.
    Run,
    /// A per-user counter.
    Seq,
    /// Random element(s) of a list variable.
    Pick {
        /// The list variable.
        list: String,
        /// `None`: one element; `Some(n)`: an array of n distinct elements.
        count: Option<usize>,
    },
    /// A random integer in `[low, high]`.
    RandInt {
        /// The smallest value.
        low: i64,
        /// The largest value.
        high: i64,
    },
    /// A random version 4 UUID.
    Uuid,
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Expr(Expr),
}

/// A parsed string with `${...}` expressions.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// What a template could not evaluate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The variable has not been set yet.
    #[error("variable `{0}` is not set")]
    Unset(String),
    /// `pick` on something that is not a list, or a list too short.
    #[error("cannot pick {wanted} from `{list}`: it holds {held}")]
    Pick {
        /// The list.
        list: String,
        /// How many were wanted.
        wanted: usize,
        /// What it holds.
        held: String,
    },
}

/// The per-user state templates read.
pub struct Context<'a> {
    /// User variables.
    pub vars: &'a HashMap<String, Value>,
    /// The user's number.
    pub user: &'a str,
    /// The run id.
    pub run: &'a str,
    /// The per-user counter, incremented by `${seq}`.
    pub seq: &'a mut u64,
}

/// `text` as a template that renders to it: each `${` written `${$}{`, and a `$` at its end
/// `${$}`, so that what follows it (another escaped text, an expression) cannot join it into
/// one.
pub fn escape(text: &str) -> String {
    let escaped = text.replace("${", "${$}{");
    match escaped.strip_suffix('$') {
        Some(head) => format!("{head}${{$}}"),
        None => escaped,
    }
}

impl Template {
    /// Parses `text`; the error says which expression is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(start) = rest.find("${") {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in {text:?}"))?;
            let expr = after[..end].trim();
            rest = &after[end + 1..];
            // `${$}` is a literal `$`: `${$}{x}` writes the text `${x}`.
            if expr == "$" {
                literal.push('$');
                continue;
            }
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Expr(parse_expr(expr)?));
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Self { pieces })
    }

    /// The variables this template reads.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Expr(Expr::Var(name)) | Piece::Expr(Expr::Pick { list: name, .. }) => {
                Some(name.as_str())
            }
            _ => None,
        })
    }

    /// Its literal text, the expressions left out (`/items/${id}?q=1` gives `/items/?q=1`).
    pub fn literal_text(&self) -> String {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Literal(text) => Some(text.as_str()),
                Piece::Expr(_) => None,
            })
            .collect()
    }

    /// The template written back with each literal piece replaced by `f` of it (an encoding
    /// of the text), the expressions as they are.
    pub fn map_literals(&self, f: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(&escape(&f(text))),
                Piece::Expr(_) => out.push_str(
                    &Self {
                        pieces: vec![piece.clone()],
                    }
                    .to_string(),
                ),
            }
        }
        out
    }

    /// Whether it has no expressions.
    pub fn is_literal(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Literal(_)))
    }

    /// Evaluates to a string.
    pub fn render(&self, cx: &mut Context<'_>) -> Result<String, EvalError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Expr(expr) => match eval(expr, cx)? {
                    Value::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(out)
    }

    /// Evaluates to a path and query: values are percent-encoded, so whatever they hold
    /// (spaces, `/`, `?`, CR LF) is data and never changes the request line.
    pub fn render_url(&self, cx: &mut Context<'_>) -> Result<String, EvalError> {
        /// Everything but RFC 3986's unreserved characters.
        const VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Expr(expr) => {
                    let value = match eval(expr, cx)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    out.extend(percent_encoding::utf8_percent_encode(&value, VALUE));
                }
            }
        }
        Ok(out)
    }

    /// Evaluates to a JSON value: typed when the template is one expression, a string otherwise.
    pub fn value(&self, cx: &mut Context<'_>) -> Result<Value, EvalError> {
        match self.pieces.as_slice() {
            [Piece::Expr(expr)] => eval(expr, cx),
            _ => self.render(cx).map(Value::String),
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => f.write_str(&escape(text))?,
                Piece::Expr(Expr::Var(name)) => write!(f, "${{{name}}}")?,
                Piece::Expr(Expr::User) => f.write_str("${user}")?,
                Piece::Expr(Expr::Run) => f.write_str("${run}")?,
                Piece::Expr(Expr::Seq) => f.write_str("${seq}")?,
                Piece::Expr(Expr::Pick { list, count: None }) => write!(f, "${{pick {list}}}")?,
                Piece::Expr(Expr::Pick {
                    list,
                    count: Some(n),
                }) => write!(f, "${{pick {list} {n}}}")?,
                Piece::Expr(Expr::RandInt { low, high }) => write!(f, "${{randint {low} {high}}}")?,
                Piece::Expr(Expr::Uuid) => f.write_str("${uuid}")?,
            }
        }
        Ok(())
    }
}

/// Names the templates give a meaning of their own (`${user}`, `${uuid}`, `${pick LIST}`...):
/// a variable of one of these names could never be read.
pub const RESERVED: &[&str] = &["user", "run", "seq", "uuid", "pick", "randint"];

fn parse_expr(expr: &str) -> Result<Expr, String> {
    let words: Vec<&str> = expr.split_whitespace().collect();
    let valid_name = |name: &str| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match words.as_slice() {
        ["user"] => Ok(Expr::User),
        ["run"] => Ok(Expr::Run),
        ["seq"] => Ok(Expr::Seq),
        ["uuid"] => Ok(Expr::Uuid),
        ["randint", low, high] => {
            let bound = |n: &str| {
                n.parse::<i64>()
                    .map_err(|_| format!("`${{{expr}}}`: {n:?} is not an integer"))
            };
            let (low, high) = (bound(low)?, bound(high)?);
            if low > high {
                return Err(format!(
                    "`${{{expr}}}`: the low bound {low} is above the high bound {high}"
                ));
            }
            Ok(Expr::RandInt { low, high })
        }
        ["pick", list] if valid_name(list) => Ok(Expr::Pick {
            list: (*list).to_owned(),
            count: None,
        }),
        ["pick", list, n] if valid_name(list) => {
            let count = n
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`${{{expr}}}`: {n:?} is not a positive count"))?;
            Ok(Expr::Pick {
                list: (*list).to_owned(),
                count: Some(count),
            })
        }
        [name] if valid_name(name) && !["pick", "randint"].contains(name) => {
            Ok(Expr::Var((*name).to_owned()))
        }
        _ => Err(format!(
            "`${{{expr}}}` is not a variable, user, run, seq, uuid, `pick LIST`, \
             `pick LIST N` or `randint A B`"
        )),
    }
}

fn eval(expr: &Expr, cx: &mut Context<'_>) -> Result<Value, EvalError> {
    match expr {
        Expr::Var(name) => cx
            .vars
            .get(name)
            .cloned()
            .ok_or_else(|| EvalError::Unset(name.clone())),
        Expr::User => Ok(Value::String(cx.user.to_owned())),
        Expr::Run => Ok(Value::String(cx.run.to_owned())),
        Expr::Seq => {
            // Wraps rather than panics (found by tests/integration/fuzz.rs).
            *cx.seq = cx.seq.wrapping_add(1);
            Ok(Value::from(*cx.seq))
        }
        Expr::RandInt { low, high } => Ok(Value::from(rand::random_range(*low..=*high))),
        Expr::Uuid => Ok(Value::String(uuid::Uuid::new_v4().to_string())),
        Expr::Pick { list, count } => {
            let items = match cx.vars.get(list) {
                Some(Value::Array(items)) => items,
                Some(other) => {
                    return Err(EvalError::Pick {
                        list: list.clone(),
                        wanted: count.unwrap_or(1),
                        held: format!("{other}, not a list"),
                    });
                }
                None => return Err(EvalError::Unset(list.clone())),
            };
            let wanted = count.unwrap_or(1);
            if items.len() < wanted {
                return Err(EvalError::Pick {
                    list: list.clone(),
                    wanted,
                    held: format!("{} element(s)", items.len()),
                });
            }
            let mut rng = rand::rng();
            Ok(match count {
                None => items.choose(&mut rng).cloned().unwrap_or(Value::Null),
                Some(n) => Value::Array(items.sample(&mut rng, *n).cloned().collect()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with<T>(vars: &HashMap<String, Value>, f: impl FnOnce(&mut Context<'_>) -> T) -> T {
        let mut seq = 0;
        let mut cx = Context {
            vars,
            user: "7",
            run: "r1",
            seq: &mut seq,
        };
        f(&mut cx)
    }

    #[test]
    fn a_dollar_in_braces_is_a_literal_dollar() {
        let vars = HashMap::from([("x".to_owned(), json!("v"))]);
        with(&vars, |cx| {
            for (source, rendered) in [
                ("a ${$}{x} b ${x}", "a ${x} b v"),
                ("${ $ }{", "${"),
                ("$${x}", "$v"),
                ("cost $5 ${x}$", "cost $5 v$"),
            ] {
                let t = Template::parse(source).unwrap();
                assert_eq!(t.render(cx).unwrap(), rendered, "{source}");
                // Written back, it renders the same.
                let again = Template::parse(&t.to_string()).unwrap();
                assert_eq!(again.render(cx).unwrap(), rendered, "{source}: {t}");
            }
            assert_eq!(
                Template::parse(&escape("${x} $${y}"))
                    .unwrap()
                    .render(cx)
                    .unwrap(),
                "${x} $${y}"
            );
        });
    }

    #[test]
    fn renders_and_keeps_types() {
        let vars = HashMap::from([
            ("token".to_owned(), json!("abc")),
            ("videos".to_owned(), json!([1, 2, 3])),
        ]);
        with(&vars, |cx| {
            let t = Template::parse("Bearer ${token}").unwrap();
            assert_eq!(t.render(cx).unwrap(), "Bearer abc");
            let user = Template::parse("lt_${run}_${user}").unwrap();
            assert_eq!(user.render(cx).unwrap(), "lt_r1_7");
            let pick = Template::parse("${pick videos 2}").unwrap();
            let picked = pick.value(cx).unwrap();
            let picked = picked.as_array().unwrap();
            assert_eq!(picked.len(), 2);
            assert_ne!(picked[0], picked[1], "distinct");
            assert!(
                Template::parse("${pick videos}")
                    .unwrap()
                    .value(cx)
                    .unwrap()
                    .is_number()
            );
            let seq = Template::parse("joined_${seq}.mp4").unwrap();
            assert_eq!(seq.render(cx).unwrap(), "joined_1.mp4");
            assert_eq!(seq.render(cx).unwrap(), "joined_2.mp4");
        });
    }

    #[test]
    fn randint_and_uuid_are_fresh_each_time() {
        let vars = HashMap::new();
        with(&vars, |cx| {
            let t = Template::parse("${randint 3 5}").unwrap();
            assert_eq!(t.to_string(), "${randint 3 5}");
            let seen: std::collections::BTreeSet<i64> = (0..200)
                .map(|_| t.value(cx).unwrap().as_i64().unwrap())
                .collect();
            assert_eq!(seen, [3, 4, 5].into(), "every value of the range, no other");
            let id = Template::parse("/items/${uuid}").unwrap();
            let (a, b) = (id.render(cx).unwrap(), id.render(cx).unwrap());
            assert_ne!(a, b);
            assert_eq!(a.len(), "/items/".len() + 36, "{a}");
        });
        assert!(
            Template::parse("${randint 5 3}")
                .unwrap_err()
                .contains("above")
        );
        assert!(
            Template::parse("${randint a 3}")
                .unwrap_err()
                .contains("not an integer")
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(Template::parse("${oops").unwrap_err().contains("closing"));
        assert!(
            Template::parse("${pick}")
                .unwrap_err()
                .contains("pick LIST")
        );
        assert!(
            Template::parse("${pick v zero}")
                .unwrap_err()
                .contains("positive count")
        );
        let vars = HashMap::from([("one".to_owned(), json!([1]))]);
        with(&vars, |cx| {
            let missing = Template::parse("${token}").unwrap().render(cx).unwrap_err();
            assert_eq!(missing.to_string(), "variable `token` is not set");
            let short = Template::parse("${pick one 2}")
                .unwrap()
                .value(cx)
                .unwrap_err();
            assert!(short.to_string().contains("1 element"), "{short}");
        });
    }
}
