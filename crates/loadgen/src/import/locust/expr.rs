//! Python expressions as scenario values: a literal stays a literal, `self.x` becomes `${x}`,
//! f-strings, `%` and `.format` become templates, module constants are put in place, and
//! `random.randint`, `random.choice` and `uuid.uuid4` become `${randint A B}`, `${pick LIST}`
//! and `${uuid}`. Anything else is refused with the reason, which the importer reports.

use std::collections::{BTreeMap, HashMap};

use ruff_python_ast::{self as ast, Expr, InterpolatedStringElement, Number, Operator};

use crate::scenario::template::escape;

/// A module-level constant, as a TOML value (strings, numbers, booleans, lists, tables).
pub type Consts = HashMap<String, toml::Value>;

/// What an expression may read while it is turned into a template.
pub struct Scope<'a> {
    /// The module's constants.
    pub consts: &'a Consts,
    /// The function's first parameter (`self`, or `l` in a task function).
    pub self_name: &'a str,
    /// Local names and `self.x` attributes set earlier in the function, as templates.
    pub locals: &'a HashMap<String, String>,
    /// List variables that `${pick ...}` needs, added to the user's `vars`.
    pub lists: &'a mut BTreeMap<String, toml::Value>,
}

/// `self.x` (or `self.user.x` in a TaskSet) as the attribute's name.
pub fn self_attr<'e>(e: &'e Expr, self_name: &str) -> Option<&'e str> {
    let Expr::Attribute(attr) = e else {
        return None;
    };
    match attr.value.as_ref() {
        Expr::Name(n) if n.id.as_str() == self_name => Some(attr.attr.id.as_str()),
        Expr::Attribute(inner)
            if inner.attr.id.as_str() == "user"
                && matches!(inner.value.as_ref(), Expr::Name(n) if n.id.as_str() == self_name) =>
        {
            Some(attr.attr.id.as_str())
        }
        _ => None,
    }
}

/// The dotted name of a call's function or an attribute chain: `random.randint`, `uuid4`.
pub fn dotted(e: &Expr) -> Option<String> {
    match e {
        Expr::Name(n) => Some(n.id.as_str().to_owned()),
        Expr::Attribute(a) => Some(format!("{}.{}", dotted(&a.value)?, a.attr.id.as_str())),
        _ => None,
    }
}

/// A literal Python value as TOML, if it is one (constants of the module).
pub fn literal(e: &Expr) -> Option<toml::Value> {
    Some(match e {
        // Python text is literal: a `${` in it stays one.
        Expr::StringLiteral(s) => toml::Value::String(escape(s.value.to_str())),
        Expr::NumberLiteral(n) => match &n.value {
            Number::Int(i) => toml::Value::Integer(i.as_i64()?),
            Number::Float(f) => toml::Value::Float(*f),
            Number::Complex { .. } => return None,
        },
        Expr::BooleanLiteral(b) => toml::Value::Boolean(b.value),
        Expr::UnaryOp(u) if matches!(u.op, ast::UnaryOp::USub) => match literal(&u.operand)? {
            toml::Value::Integer(i) => toml::Value::Integer(-i),
            toml::Value::Float(f) => toml::Value::Float(-f),
            _ => return None,
        },
        Expr::List(l) => toml::Value::Array(l.elts.iter().map(literal).collect::<Option<_>>()?),
        Expr::Tuple(t) => toml::Value::Array(t.elts.iter().map(literal).collect::<Option<_>>()?),
        Expr::Dict(d) => {
            let mut table = toml::Table::new();
            for item in d.iter() {
                let Some(Expr::StringLiteral(k)) = &item.key else {
                    return None;
                };
                table.insert(k.value.to_str().to_owned(), literal(&item.value)?);
            }
            toml::Value::Table(table)
        }
        _ => return None,
    })
}

/// A literal as template text (a string as it is, a number as written).
fn text_of(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(if *b { "True" } else { "False" }.to_owned()),
        _ => None,
    }
}

impl Scope<'_> {
    /// A value for a JSON body or a variable: literals keep their type, dictionaries and lists
    /// are walked, anything else is a template string.
    pub fn value(&mut self, e: &Expr) -> Result<toml::Value, String> {
        match e {
            Expr::NoneLiteral(_) => Err("None (JSON null) has no form in a TOML scenario".into()),
            Expr::List(l) => Ok(toml::Value::Array(
                l.elts
                    .iter()
                    .map(|e| self.value(e))
                    .collect::<Result<_, _>>()?,
            )),
            Expr::Tuple(t) => Ok(toml::Value::Array(
                t.elts
                    .iter()
                    .map(|e| self.value(e))
                    .collect::<Result<_, _>>()?,
            )),
            Expr::Dict(d) => {
                let mut table = toml::Table::new();
                for item in d.iter() {
                    let key = match &item.key {
                        // A JSON key is sent as written: not a template.
                        Some(Expr::StringLiteral(k)) => k.value.to_str().to_owned(),
                        Some(k) => self.template(k)?,
                        None => return Err("`**` in a dictionary".into()),
                    };
                    table.insert(key, self.value(&item.value)?);
                }
                Ok(toml::Value::Table(table))
            }
            Expr::Name(n) => match self.consts.get(n.id.as_str()) {
                Some(v) => Ok(v.clone()),
                None => self.template(e).map(toml::Value::String),
            },
            _ => match literal(e) {
                Some(v) => Ok(v),
                None => self.template(e).map(toml::Value::String),
            },
        }
    }

    /// A string with `${...}` for what changes.
    pub fn template(&mut self, e: &Expr) -> Result<String, String> {
        if let Some(attr) = self_attr(e, self.self_name) {
            return Ok(self
                .locals
                .get(&format!("self.{attr}"))
                .cloned()
                .unwrap_or_else(|| format!("${{{attr}}}")));
        }
        match e {
            Expr::StringLiteral(s) => Ok(escape(s.value.to_str())),
            Expr::NumberLiteral(_) | Expr::BooleanLiteral(_) | Expr::UnaryOp(_) => literal(e)
                .as_ref()
                .and_then(text_of)
                .ok_or_else(|| "an expression that is not a literal".into()),
            Expr::FString(f) => self.fstring(f),
            Expr::Name(n) => self.name(n.id.as_str()),
            Expr::BinOp(b) if matches!(b.op, Operator::Add) => {
                Ok(self.template(&b.left)? + &self.template(&b.right)?)
            }
            Expr::BinOp(b) if matches!(b.op, Operator::Mod) => self.percent(&b.left, &b.right),
            Expr::Call(call) => self.call(call),
            _ => Err("an expression loadgen's templates cannot say".into()),
        }
    }

    fn name(&mut self, name: &str) -> Result<String, String> {
        if let Some(local) = self.locals.get(name) {
            return Ok(local.clone());
        }
        match self.consts.get(name) {
            Some(value) => {
                text_of(value).ok_or_else(|| format!("the constant `{name}` is not a scalar"))
            }
            None => Err(format!("`{name}` is not a constant or a value set before")),
        }
    }

    fn fstring(&mut self, f: &ast::ExprFString) -> Result<String, String> {
        let mut out = String::new();
        for part in f.value.iter() {
            match part {
                ast::FStringPart::Literal(s) => out.push_str(&escape(&s.value)),
                ast::FStringPart::FString(fs) => {
                    for element in fs.elements.iter() {
                        match element {
                            InterpolatedStringElement::Literal(l) => {
                                out.push_str(&escape(&l.value));
                            }
                            InterpolatedStringElement::Interpolation(i) => {
                                if i.format_spec.is_some() {
                                    return Err("an f-string format spec (`{x:...}`)".into());
                                }
                                out.push_str(&self.template(&i.expression)?);
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// `"..." % x` and `"..." % (x, y)`: `%s`, `%d`, `%i` and `%%`.
    fn percent(&mut self, format: &Expr, args: &Expr) -> Result<String, String> {
        let Expr::StringLiteral(format) = format else {
            return Err("`%` on something that is not a string literal".into());
        };
        let args: Vec<&Expr> = match args {
            Expr::Tuple(t) => t.elts.iter().collect(),
            one => vec![one],
        };
        let mut args = args.into_iter();
        let mut out = String::new();
        // The format's own text, escaped as a whole run (`$%%{` is a literal `$%{`).
        let mut text = String::new();
        let mut chars = format.value.to_str().chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => text.push('%'),
                Some('s' | 'd' | 'i') => {
                    let arg = args.next().ok_or("too few values for the `%` format")?;
                    out.push_str(&escape(&std::mem::take(&mut text)));
                    out.push_str(&self.template(arg)?);
                }
                _ => return Err("a `%` conversion other than %s, %d, %i".into()),
            }
        }
        out.push_str(&escape(&text));
        Ok(out)
    }

    /// `"...{}...{name}".format(...)`.
    fn format(&mut self, format: &str, call: &ast::ExprCall) -> Result<String, String> {
        let mut out = String::new();
        // The format's own text, escaped as a whole run (`${{` is a literal `${`).
        let mut text = String::new();
        let mut positional = call.arguments.args.iter();
        let mut rest = format;
        while let Some(open) = rest.find(['{', '}']) {
            text.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            if rest[open..].starts_with("{{") || rest[open..].starts_with("}}") {
                text.push_str(&rest[open..open + 1]);
                rest = &after[1..];
                continue;
            }
            out.push_str(&escape(&std::mem::take(&mut text)));
            let close = after
                .find('}')
                .ok_or("an unclosed `{` in a .format string")?;
            let field = &after[..close];
            let arg = if field.is_empty() {
                positional.next().ok_or("too few values for .format")?
            } else if let Ok(index) = field.parse::<usize>() {
                call.arguments
                    .args
                    .get(index)
                    .ok_or("too few values for .format")?
            } else {
                &call
                    .arguments
                    .find_keyword(field)
                    .ok_or_else(|| format!("no value for `{{{field}}}` in .format"))?
                    .value
            };
            out.push_str(&self.template(arg)?);
            rest = &after[close + 1..];
        }
        text.push_str(rest);
        out.push_str(&escape(&text));
        Ok(out)
    }

    fn call(&mut self, call: &ast::ExprCall) -> Result<String, String> {
        if let Expr::Attribute(a) = call.func.as_ref()
            && a.attr.id.as_str() == "format"
            && let Expr::StringLiteral(s) = a.value.as_ref()
        {
            return self.format(s.value.to_str(), call);
        }
        let func = dotted(&call.func).ok_or("a call loadgen's templates cannot say")?;
        let args = &call.arguments.args;
        match (func.as_str(), args.as_ref()) {
            ("str", [one]) => self.template(one),
            ("random.randint" | "randint", [low, high]) => {
                let bound = |e: &Expr, scope: &mut Self| -> Result<i64, String> {
                    let text = scope.template(e)?;
                    text.parse()
                        .map_err(|_| format!("randint's bound {text:?} is not a fixed integer"))
                };
                Ok(format!(
                    "${{randint {} {}}}",
                    bound(low, self)?,
                    bound(high, self)?
                ))
            }
            ("random.choice" | "choice", [list]) => self.choice(list),
            ("uuid.uuid4" | "uuid4", []) => Ok("${uuid}".into()),
            _ => Err(format!("a call of `{func}`")),
        }
    }

    /// `random.choice(X)`: X a constant list (made a user variable), a literal list, or a list
    /// attribute of the user.
    fn choice(&mut self, list: &Expr) -> Result<String, String> {
        if let Some(attr) = self_attr(list, self.self_name) {
            return Ok(format!("${{pick {attr}}}"));
        }
        let (name, value) = match list {
            Expr::Name(n) => (
                n.id.as_str().to_owned(),
                self.consts
                    .get(n.id.as_str())
                    .cloned()
                    .ok_or_else(|| format!("`{}` is not a constant list", n.id.as_str()))?,
            ),
            other => (
                format!("choices_{}", self.lists.len() + 1),
                literal(other).ok_or("random.choice over a list that is not a literal")?,
            ),
        };
        if !matches!(value, toml::Value::Array(_)) {
            return Err(format!("random.choice over `{name}`, which is not a list"));
        }
        self.lists.insert(name.clone(), value);
        Ok(format!("${{pick {name}}}"))
    }
}
