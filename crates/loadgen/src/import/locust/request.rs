//! One `self.client.get/post/.../request(...)` call as a step: the URL (and `params=`) as the
//! path, `name=`, `json=`, `data=` (a form), `files=` (multipart parts from fixture files),
//! `headers=`, `allow_redirects=` and `timeout=`.

use ruff_python_ast::{self as ast, Expr};
use ruff_text_size::TextRange;

use super::body::{Builder, Fx};
use super::emit::{RunRef, StepOut};
use super::expr::{dotted, self_attr};

/// Keywords of requests' API that have no counterpart in a step.
const UNSUPPORTED: [&str; 6] = ["auth", "cookies", "verify", "cert", "stream", "proxies"];

impl Builder<'_> {
    /// Adds the step and runs it in `fx`; its index among the user's steps.
    pub fn request(
        &mut self,
        fx: &mut Fx<'_>,
        call: &ast::ExprCall,
        range: TextRange,
    ) -> Option<usize> {
        let Some(method) = client_method_name(call, &fx.self_name) else {
            fx.notes
                .push(self.note(range, "a request whose method is not a string literal"));
            return None;
        };
        let url_position = usize::from(method.1);
        let Some(url) = call.arguments.find_argument_value("url", url_position) else {
            fx.notes.push(self.note(range, "a request without a URL"));
            return None;
        };
        let path = match self.with_scope(fx, |s| s.template(url)) {
            Ok(p) => p,
            Err(why) => {
                fx.notes.push(self.note(range, format!("the URL: {why}")));
                return None;
            }
        };
        let (line, _) = crate::import::line_column(self.module.source, range.start().to_usize());
        let mut step = StepOut {
            key: self.step_key(&fx.func, &path),
            line,
            method: method.0,
            path: relative(&path),
            follow_redirects: true,
            ..StepOut::default()
        };
        if step.path != path {
            step.notes
                .push(self.note(range, "an absolute URL: the host comes from -H/--host"));
        }
        for keyword in call.arguments.keywords.iter() {
            let Some(arg) = &keyword.arg else {
                step.notes
                    .push(self.note(keyword.range, "`**kwargs` of a request"));
                continue;
            };
            if let Err(why) = self.keyword(fx, &mut step, arg.id.as_str(), &keyword.value) {
                step.notes
                    .push(self.note(keyword.range, format!("`{}=`: {why}", arg.id.as_str())));
            }
        }
        fx.run.push(RunRef {
            step: step.key.clone(),
            repeat: 1,
        });
        self.out.steps.push(step);
        Some(self.out.steps.len() - 1)
    }

    /// A step key not taken yet: the function's name, then the function's name and the
    /// path's last word (`on_start_login`), then `name_2`, `name_3`...
    fn step_key(&self, func: &str, path: &str) -> String {
        let taken = |k: &str| self.out.steps.iter().any(|s| s.key == k);
        if !taken(func) {
            return func.to_owned();
        }
        let word: String = path
            .split(['?', '$'])
            .next()
            .unwrap_or_default()
            .rsplit('/')
            .find(|w| !w.is_empty())
            .unwrap_or_default()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let with_word = format!("{func}_{word}");
        if !word.is_empty() && !taken(&with_word) {
            return with_word;
        }
        (2..)
            .map(|n| format!("{func}_{n}"))
            .find(|k| !taken(k))
            .unwrap_or_default()
    }

    fn keyword(
        &mut self,
        fx: &Fx<'_>,
        step: &mut StepOut,
        arg: &str,
        value: &Expr,
    ) -> Result<(), String> {
        match arg {
            "url" | "method" | "catch_response" => {}
            "name" => step.name = Some(self.with_scope(fx, |s| s.template(value))?),
            "json" => step.json = Some(self.with_scope(fx, |s| s.value(value))?),
            "data" => match self.dict(fx, value)? {
                Some(form) => step.form = Some(form),
                None => return Err("a body that is not a dictionary (a form)".into()),
            },
            "headers" => match self.dict(fx, value)? {
                Some(headers) => {
                    for (k, v) in headers {
                        step.headers.insert(k, super::emit_text(&v));
                    }
                }
                None => return Err("headers that are not a dictionary".into()),
            },
            "params" => {
                let Some(params) = self.dict(fx, value)? else {
                    return Err("params that are not a dictionary".into());
                };
                step.path = with_query(&step.path, &params);
            }
            "allow_redirects" => match value {
                Expr::BooleanLiteral(b) => step.follow_redirects = b.value,
                _ => return Err("not True or False".into()),
            },
            "timeout" => match super::expr::literal(value) {
                Some(toml::Value::Integer(n)) => step.timeout = Some(format!("{n}s")),
                Some(toml::Value::Float(f)) => {
                    step.timeout = Some(format!("{}ms", (f * 1000.0).round()))
                }
                _ => return Err("a timeout that is not a number of seconds".into()),
            },
            "files" => self.files(step, value)?,
            other if UNSUPPORTED.contains(&other) => {
                return Err("no counterpart in a scenario step".into());
            }
            _ => return Err("an argument this importer does not know".into()),
        }
        Ok(())
    }

    /// A dictionary argument: a literal one, or `self.x` set to one before.
    fn dict(&mut self, fx: &Fx<'_>, value: &Expr) -> Result<Option<toml::Table>, String> {
        if let Some(attr) = self_attr(value, &fx.self_name)
            && let Some(table) = self.dicts.get(&format!("self.{attr}"))
        {
            return Ok(Some(table.clone()));
        }
        if let Expr::Name(n) = value
            && let Some(table) = self.dicts.get(n.id.as_str())
        {
            return Ok(Some(table.clone()));
        }
        match self.with_scope(fx, |s| s.value(value))? {
            toml::Value::Table(t) => Ok(Some(t)),
            _ => Ok(None),
        }
    }

    /// `files={"field": open("a.png", "rb")}` or `("a.png", open(...), "image/png")`: parts
    /// from fixture files (`--fixtures`), beside the text fields of `data=`.
    fn files(&mut self, step: &mut StepOut, value: &Expr) -> Result<(), String> {
        let Expr::Dict(d) = value else {
            return Err("files that are not a literal dictionary".into());
        };
        let mut parts = step.form.take().unwrap_or_default();
        for item in d.iter() {
            let Some(Expr::StringLiteral(field)) = &item.key else {
                return Err("a field name that is not a string".into());
            };
            let (filename, opened, content_type) = match &item.value {
                Expr::Tuple(t) => match t.elts.as_slice() {
                    [Expr::StringLiteral(n), o] => (Some(n.value.to_str().to_owned()), o, None),
                    [Expr::StringLiteral(n), o, Expr::StringLiteral(c), ..] => (
                        Some(n.value.to_str().to_owned()),
                        o,
                        Some(c.value.to_str().to_owned()),
                    ),
                    _ => return Err("a file tuple other than (name, open(...), type)".into()),
                },
                other => (None, other, None),
            };
            let fixture = opened_file(opened).ok_or("a file that is not `open(\"PATH\", ...)`")?;
            let mut part = toml::Table::new();
            let content_type = content_type.unwrap_or_else(|| guess_type(&fixture).to_owned());
            if let Some(name) = filename.filter(|n| *n != fixture) {
                part.insert("filename".into(), toml::Value::String(name));
            }
            part.insert("fixture".into(), toml::Value::String(fixture));
            part.insert("content_type".into(), toml::Value::String(content_type));
            parts.insert(field.value.to_str().to_owned(), toml::Value::Table(part));
        }
        step.multipart = Some(parts);
        Ok(())
    }
}

/// (method, whether the URL is the second positional argument).
fn client_method_name(call: &ast::ExprCall, self_name: &str) -> Option<(String, bool)> {
    let Expr::Attribute(a) = call.func.as_ref() else {
        return None;
    };
    if self_attr(&a.value, self_name) != Some("client") {
        return None;
    }
    if a.attr.id.as_str() == "request" {
        match call.arguments.find_argument_value("method", 0) {
            Some(Expr::StringLiteral(s)) => Some((s.value.to_str().to_ascii_uppercase(), true)),
            _ => None,
        }
    } else {
        Some((a.attr.id.as_str().to_ascii_uppercase(), false))
    }
}

/// The path of a URL: `http://host/x` is `/x`; `x` is `/x`.
fn relative(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .map(|r| r.find('/').map_or("/", |i| &r[i..]));
    let path = rest.unwrap_or(url);
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// `path?k=v&...`: the literal text encoded, the expressions left to the run (which encodes
/// what they give).
fn with_query(path: &str, params: &toml::Table) -> String {
    let url_encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let encode = |s: &str| match crate::scenario::template::Template::parse(s) {
        Ok(template) => template.map_literals(url_encode),
        Err(_) => url_encode(s),
    };
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(&super::emit_text(v))))
        .collect();
    let joiner = if path.contains('?') { '&' } else { '?' };
    format!("{path}{joiner}{}", query.join("&"))
}

/// `open("a.png", "rb")` as `a.png`.
fn opened_file(e: &Expr) -> Option<String> {
    let Expr::Call(c) = e else {
        return None;
    };
    if dotted(&c.func).as_deref() != Some("open") {
        return None;
    }
    match c.arguments.args.first()? {
        Expr::StringLiteral(s) => Some(s.value.to_str().to_owned()),
        _ => None,
    }
}

fn guess_type(file: &str) -> &'static str {
    let ext = file
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "txt" | "csv" => "text/plain",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}
