//! A scenario being written by an importer, and its TOML text: the importers say what they
//! found (user types, steps, comments at the places they concern), this module says it in the
//! scenario language, so that every importer's output reads the same.

use std::fmt::Write as _;

use serde_json::Value;

/// A scenario file to be written.
#[derive(Debug, Default)]
pub struct Draft {
    /// Comment lines at the top of the file (without `# `).
    pub header: Vec<String>,
    /// `health = "..."`.
    pub health: Option<String>,
    /// The user types.
    pub users: Vec<DraftUser>,
}

/// One `[[users]]` table.
#[derive(Debug, Default)]
pub struct DraftUser {
    /// The type's name (the statistics' user class).
    pub name: String,
    /// Its share of the users.
    pub weight: Option<u32>,
    /// `wait = ...`, as TOML: `{ constant = "1s" }`.
    pub wait: Option<String>,
    /// Comment lines above `vars` (without `# `).
    pub vars_comment: Vec<String>,
    /// `vars = { ... }`: the user's variables and their first values.
    pub vars: Vec<(String, Value)>,
    /// Headers of every request of the user.
    pub headers: Vec<(String, String)>,
    /// Step keys run once per user before its tasks.
    pub on_start: Vec<String>,
    /// Its tasks, picked by weight.
    pub tasks: Vec<DraftTask>,
    /// Its steps, in the order written.
    pub steps: Vec<DraftStep>,
}

/// One `[[users.tasks]]` table.
#[derive(Debug)]
pub struct DraftTask {
    /// Comment lines above the table (without `# `).
    pub comment: Vec<String>,
    /// Its weight among the user's tasks.
    pub weight: u32,
    /// The keys of the steps it runs, in order.
    pub run: Vec<String>,
}

/// One `[users.steps.KEY]` table.
#[derive(Debug, Default)]
pub struct DraftStep {
    /// Its key under `users.steps`.
    pub key: String,
    /// Comment lines above the table (without `# `).
    pub comment: Vec<String>,
    /// The HTTP method.
    pub method: String,
    /// Path and query, with `${...}` templates.
    pub path: String,
    /// Its name in the statistics.
    pub name: Option<String>,
    /// Its own headers.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: DraftBody,
    /// `extract = { variable = "field.path" }`.
    pub extract: Vec<(String, String)>,
    /// `follow_redirects = false` when `Some(false)`.
    pub follow_redirects: Option<bool>,
    /// `think = "1.2s"`: the pause after the step.
    pub think: Option<String>,
}

/// A step's body.
#[derive(Debug, Default)]
pub enum DraftBody {
    /// None.
    #[default]
    Empty,
    /// `json = ...`.
    Json(Value),
    /// `form = { ... }`.
    Form(Vec<(String, String)>),
}

impl Draft {
    /// The scenario file's text.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for line in &self.header {
            comment(&mut out, line);
        }
        if !self.header.is_empty() {
            out.push('\n');
        }
        if let Some(health) = &self.health {
            let _ = writeln!(out, "health = {}\n", string(health));
        }
        for user in &self.users {
            user.write(&mut out);
        }
        out
    }
}

impl DraftUser {
    fn write(&self, out: &mut String) {
        out.push_str("[[users]]\n");
        let _ = writeln!(out, "name = {}", string(&self.name));
        if let Some(weight) = self.weight {
            let _ = writeln!(out, "weight = {weight}");
        }
        if let Some(wait) = &self.wait {
            let _ = writeln!(out, "wait = {wait}");
        }
        for line in &self.vars_comment {
            comment(out, line);
        }
        if !self.vars.is_empty() {
            let pairs: Vec<(String, String)> = self
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), inline(v)))
                .collect();
            let _ = writeln!(out, "vars = {}", inline_table(&pairs));
        }
        if !self.headers.is_empty() {
            let _ = writeln!(out, "headers = {}", string_table(&self.headers));
        }
        if !self.on_start.is_empty() {
            let _ = writeln!(out, "on_start = {}", string_list(&self.on_start));
        }
        for task in &self.tasks {
            out.push('\n');
            for line in &task.comment {
                comment(out, line);
            }
            out.push_str("[[users.tasks]]\n");
            if task.weight != 1 {
                let _ = writeln!(out, "weight = {}", task.weight);
            }
            let _ = writeln!(out, "run = {}", string_list(&task.run));
        }
        for step in &self.steps {
            out.push('\n');
            step.write(out);
        }
        out.push('\n');
    }
}

impl DraftStep {
    fn write(&self, out: &mut String) {
        for line in &self.comment {
            comment(out, line);
        }
        let _ = writeln!(out, "[users.steps.{}]", key(&self.key));
        let _ = writeln!(out, "method = {}", string(&self.method));
        let _ = writeln!(out, "path = {}", string(&self.path));
        if let Some(name) = &self.name {
            let _ = writeln!(out, "name = {}", string(name));
        }
        if !self.headers.is_empty() {
            let _ = writeln!(out, "headers = {}", string_table(&self.headers));
        }
        match &self.body {
            DraftBody::Empty => {}
            DraftBody::Json(value) => {
                let _ = writeln!(out, "json = {}", inline(value));
            }
            DraftBody::Form(fields) => {
                let _ = writeln!(out, "form = {}", string_table(fields));
            }
        }
        if !self.extract.is_empty() {
            let _ = writeln!(out, "extract = {}", string_table(&self.extract));
        }
        if let Some(follow) = self.follow_redirects {
            let _ = writeln!(out, "follow_redirects = {follow}");
        }
        if let Some(think) = &self.think {
            let _ = writeln!(out, "think = {}", string(think));
        }
    }
}

/// A name as a template variable: letters, digits and `_` (`file-id` → `file_id`); a name
/// the templates keep for themselves (`user`, `uuid`...) gets `_value` after it.
pub fn variable_name(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if crate::scenario::template::RESERVED.contains(&name.as_str()) {
        format!("{name}_value")
    } else {
        name
    }
}

/// `# text`, one per line of `text`.
fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            let _ = writeln!(out, "# {line}");
        }
    }
    if text.is_empty() {
        out.push_str("#\n");
    }
}

/// A TOML basic string, escaped.
pub fn string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// A key, bare when TOML allows it, else quoted.
pub fn key(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { text.to_owned() } else { string(text) }
}

fn string_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| string(s)).collect();
    format!("[{}]", items.join(", "))
}

fn string_table(pairs: &[(String, String)]) -> String {
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.clone(), string(v))).collect();
    inline_table(&pairs)
}

fn inline_table(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return "{}".to_owned();
    }
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{} = {v}", key(k)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// A JSON value as an inline TOML value. TOML has no null: a null field is left out of its
/// table and becomes `""` in an array (the importers say so where it matters).
pub fn inline(value: &Value) -> String {
    match value {
        Value::Null => string(""),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(fields) => {
            let pairs: Vec<(String, String)> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), inline(v)))
                .collect();
            inline_table(&pairs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_keys_are_valid_toml() {
        let value = json!({"a b": "x\"y", "n": 1.5, "list": [1, null, {"k": true}], "gone": null});
        let text = format!("v = {}\n", inline(&value));
        let parsed: toml::Table = toml::from_str(&text).expect(&text);
        assert_eq!(parsed["v"]["a b"].as_str(), Some("x\"y"), "{text}");
        assert!(parsed["v"].get("gone").is_none(), "{text}");
        assert_eq!(key("a.b"), "\"a.b\"");
        assert_eq!(key("get_user-1"), "get_user-1");
    }

    #[test]
    fn a_draft_is_a_file_the_scenario_parser_takes() {
        let draft = Draft {
            header: vec!["made by a test".into(), String::new()],
            health: Some("/health".into()),
            users: vec![DraftUser {
                name: "Api".into(),
                wait: Some("{ between = [\"1s\", \"2s\"] }".into()),
                vars: vec![("id".into(), json!(3))],
                headers: vec![("Authorization".into(), "Bearer ${token}".into())],
                tasks: vec![DraftTask {
                    comment: vec!["weights start equal".into()],
                    weight: 1,
                    run: vec!["get item".into()],
                }],
                steps: vec![DraftStep {
                    key: "get item".into(),
                    comment: vec!["GET /items/{id}".into()],
                    method: "GET".into(),
                    path: "/items/${id}".into(),
                    name: Some("/items/[id]".into()),
                    body: DraftBody::Empty,
                    extract: vec![("token".into(), "token".into())],
                    think: Some("1.5s".into()),
                    ..DraftStep::default()
                }],
                ..DraftUser::default()
            }],
        };
        let text = draft.to_toml();
        assert!(text.starts_with("# made by a test\n#\n"), "{text}");
        let parsed: toml::Table = toml::from_str(&text).expect(&text);
        let step = &parsed["users"][0]["steps"]["get item"];
        assert_eq!(step["path"].as_str(), Some("/items/${id}"), "{text}");
        assert_eq!(step["think"].as_str(), Some("1.5s"), "{text}");
    }
}
