//! The scenario being made, and its TOML text: user types, tasks and steps in the locustfile's
//! order, with what was not translated as comments at the place (the original lines and their
//! numbers).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::import::Untranslated;
use crate::import::draft::{key, string};

/// One `[[users]]`.
#[derive(Debug, Default)]
pub struct UserOut {
    pub name: String,
    pub line: usize,
    pub weight: Option<i64>,
    pub fixed_count: Option<i64>,
    pub host: Option<String>,
    pub wait: Option<toml::Value>,
    pub tags: Vec<String>,
    pub vars: BTreeMap<String, toml::Value>,
    pub headers: BTreeMap<String, String>,
    pub on_start: Vec<RunRef>,
    pub on_stop: Vec<RunRef>,
    /// The nested TaskSets' `on_stop` steps, run before the user's own.
    pub sets_on_stop: Vec<RunRef>,
    pub tasks: Vec<TaskOut>,
    pub steps: Vec<StepOut>,
    /// Untranslated places of the class outside its tasks (attributes, statements...).
    pub notes: Vec<Untranslated>,
}

/// One `[[users.tasks]]`.
#[derive(Debug, Default)]
pub struct TaskOut {
    /// The Python function or class it comes from.
    pub from: String,
    pub weight: u32,
    pub tags: Vec<String>,
    pub run: Vec<RunRef>,
    pub notes: Vec<Untranslated>,
}

/// A step in `run` or `on_start`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRef {
    pub step: String,
    pub repeat: u32,
}

/// One `[users.steps.KEY]`.
#[derive(Debug, Default)]
pub struct StepOut {
    pub key: String,
    pub line: usize,
    pub method: String,
    pub path: String,
    pub name: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub json: Option<toml::Value>,
    pub form: Option<toml::Table>,
    pub multipart: Option<toml::Table>,
    pub expect: Option<Vec<u16>>,
    pub follow_redirects: bool,
    pub timeout: Option<String>,
    pub extract: BTreeMap<String, String>,
    pub on_status: BTreeMap<String, String>,
    pub notes: Vec<Untranslated>,
}

/// `{ a = 1, "b c" = "x" }`.
fn inline<V>(
    map: impl IntoIterator<Item = (impl AsRef<str>, V)>,
    show: impl Fn(&V) -> String,
) -> String {
    let items: Vec<String> = map
        .into_iter()
        .map(|(k, v)| format!("{} = {}", key(k.as_ref()), show(&v)))
        .collect();
    if items.is_empty() {
        "{}".into()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn value(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(t) => inline(t.iter(), |v| value(v)),
        toml::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(value).collect::<Vec<_>>().join(", ")
            )
        }
        other => other.to_string(),
    }
}

fn run_ref(r: &RunRef) -> String {
    if r.repeat == 1 {
        string(&r.step)
    } else {
        format!("{{ step = {}, repeat = {} }}", string(&r.step), r.repeat)
    }
}

fn run_list(refs: &[RunRef]) -> String {
    format!(
        "[{}]",
        refs.iter().map(run_ref).collect::<Vec<_>>().join(", ")
    )
}

/// The comment for one untranslated place.
pub fn comment(out: &mut String, note: &Untranslated) {
    let _ = writeln!(out, "# NOT TRANSLATED (line {}): {}", note.line, note.why);
    for (i, line) in note.original.lines().enumerate() {
        let _ = writeln!(out, "#   {:>4} | {line}", note.line + i);
    }
}

/// The whole file.
pub fn write(file: &str, header: &[Untranslated], users: &[UserOut]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from {file} by `loadgen import locust`; check it with `loadgen scenario \
         check`.\n# Comments that start with NOT TRANSLATED keep what the scenario does not say."
    );
    for note in header {
        comment(&mut out, note);
    }
    for user in users {
        write_user(&mut out, user);
    }
    out
}

fn write_user(out: &mut String, user: &UserOut) {
    let _ = writeln!(out, "\n# class {} (line {})", user.name, user.line);
    if let Some(host) = &user.host {
        let _ = writeln!(out, "# host = {}: give it with -H/--host", string(host));
    }
    for note in &user.notes {
        comment(out, note);
    }
    let _ = writeln!(out, "[[users]]\nname = {}", string(&user.name));
    if let Some(w) = user.weight {
        let _ = writeln!(out, "weight = {w}");
    }
    if let Some(n) = user.fixed_count {
        let _ = writeln!(out, "fixed_count = {n}");
    }
    if let Some(wait) = &user.wait {
        let _ = writeln!(out, "wait = {}", value(wait));
    }
    if !user.tags.is_empty() {
        let _ = writeln!(out, "tags = {}", value(&tags(&user.tags)));
    }
    if !user.vars.is_empty() {
        let _ = writeln!(out, "vars = {}", inline(user.vars.iter(), |v| value(v)));
    }
    if !user.headers.is_empty() {
        let _ = writeln!(
            out,
            "headers = {}",
            inline(user.headers.iter(), |v| string(v))
        );
    }
    if !user.on_start.is_empty() {
        let _ = writeln!(out, "on_start = {}", run_list(&user.on_start));
    }
    let on_stop: Vec<RunRef> = user
        .sets_on_stop
        .iter()
        .chain(&user.on_stop)
        .cloned()
        .collect();
    if !on_stop.is_empty() {
        let _ = writeln!(out, "on_stop = {}", run_list(&on_stop));
    }
    for task in &user.tasks {
        let _ = writeln!(out, "\n# {}", task.from);
        for note in &task.notes {
            comment(out, note);
        }
        let _ = writeln!(out, "[[users.tasks]]\nweight = {}", task.weight);
        if !task.tags.is_empty() {
            let _ = writeln!(out, "tags = {}", value(&tags(&task.tags)));
        }
        let _ = writeln!(out, "run = {}", run_list(&task.run));
    }
    for step in &user.steps {
        write_step(out, step);
    }
}

fn tags(tags: &[String]) -> toml::Value {
    toml::Value::Array(tags.iter().cloned().map(toml::Value::String).collect())
}

fn write_step(out: &mut String, step: &StepOut) {
    let _ = writeln!(out, "\n# line {}", step.line);
    for note in &step.notes {
        comment(out, note);
    }
    let _ = writeln!(out, "[users.steps.{}]", key(&step.key));
    let _ = writeln!(out, "method = {}", string(&step.method));
    let _ = writeln!(out, "path = {}", string(&step.path));
    if let Some(name) = &step.name {
        let _ = writeln!(out, "name = {}", string(name));
    }
    if !step.headers.is_empty() {
        let _ = writeln!(
            out,
            "headers = {}",
            inline(step.headers.iter(), |v| string(v))
        );
    }
    if let Some(json) = &step.json {
        let _ = writeln!(out, "json = {}", value(json));
    }
    if let Some(form) = &step.form {
        let _ = writeln!(out, "form = {}", inline(form.iter(), |v| value(v)));
    }
    if let Some(parts) = &step.multipart {
        let _ = writeln!(out, "multipart = {}", inline(parts.iter(), |v| value(v)));
    }
    if let Some(expect) = &step.expect {
        let codes: Vec<String> = expect.iter().map(u16::to_string).collect();
        let _ = writeln!(out, "expect = [{}]", codes.join(", "));
    }
    if !step.follow_redirects {
        let _ = writeln!(out, "follow_redirects = false");
    }
    if let Some(t) = &step.timeout {
        let _ = writeln!(out, "timeout = {}", string(t));
    }
    if !step.extract.is_empty() {
        let _ = writeln!(
            out,
            "extract = {}",
            inline(step.extract.iter(), |v| string(v))
        );
    }
    if !step.on_status.is_empty() {
        let _ = writeln!(
            out,
            "on_status = {}",
            inline(step.on_status.iter(), |v| string(v))
        );
    }
}
