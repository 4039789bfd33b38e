//! `loadgen import openapi`: a first scenario from an API's OpenAPI document (3.0 or 3.1, JSON
//! or YAML), as FastAPI serves at `/openapi.json`.
//!
//! - One step per operation, named as Locust would name its URL (`/api/v1/tasks/[task_id]`),
//!   each a task of weight 1 (a comment says to set the traffic mix).
//! - Bodies are made from the schemas' examples, defaults, enums and types, within their
//!   bounds; fields named like credentials use the user's `username`, `email` and `password`.
//! - Path, query and header parameters become user variables; an id a create operation
//!   answers (`id`) is extracted into the variable of the paths under it.
//! - A login operation (a `tokenUrl`, or a POST to `.../login`, `.../token`, ...) becomes the
//!   user's `on_start`, after a sign-up operation if there is one; the token it answers goes
//!   into `Authorization`.
//! - Destructive operations (DELETE, log-outs, purges) are left out unless asked for.
//! - What a scenario cannot send (a file upload) is left out, said at the top of the file and
//!   in [`Imported::untranslated`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::draft::{Draft, DraftBody, DraftStep, DraftTask, DraftUser, variable_name};
use super::{ImportError, Imported, Untranslated, line_of};

/// Choices of `loadgen import openapi`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep DELETE and the other destructive operations.
    pub include_unsafe: bool,
}

/// The methods an OpenAPI path item may hold, in the order steps are written.
const METHODS: &[&str] = &[
    "get", "head", "options", "post", "put", "patch", "delete", "trace",
];

/// Last path segments of operations that log a user in.
const LOGIN: &[&str] = &[
    "login",
    "token",
    "signin",
    "sign-in",
    "sign_in",
    "authenticate",
    "session",
    "sessions",
];
/// Last path segments of operations that make an account.
const SIGN_UP: &[&str] = &["register", "signup", "sign-up", "sign_up"];
/// Last path segments of POST operations that destroy or end something.
const DESTRUCTIVE: &[&str] = &[
    "delete", "remove", "destroy", "purge", "reset", "logout", "signout", "sign-out", "revoke",
];
/// Fields of a login answer that hold the bearer token, most likely first.
const TOKEN_FIELDS: &[&str] = &["access_token", "accessToken", "token", "id_token", "jwt"];

/// Reads an OpenAPI document (JSON or YAML; `file` names it in messages) and writes a scenario
/// for it.
pub fn import(text: &str, file: &str, options: &Options) -> Result<Imported, ImportError> {
    let doc = parse(text, file)?;
    let empty = |why: String| ImportError::Empty {
        file: file.to_owned(),
        why,
    };
    let version = doc["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.") {
        let what = match doc["swagger"].as_str() {
            Some(v) => format!("a Swagger {v} document"),
            None => "no `openapi` version field".to_owned(),
        };
        return Err(empty(format!(
            "{what}: loadgen imports OpenAPI 3.0 and 3.1 (convert a Swagger 2 document with \
             swagger2openapi or editor.swagger.io first)"
        )));
    }
    let Some(paths) = doc["paths"].as_object() else {
        return Err(empty(
            "the document has no `paths`: there is nothing to load".to_owned(),
        ));
    };
    let mut writer = Writer::new(&doc, text, options);
    for (path, item) in paths {
        let item = writer.resolve(item);
        for method in METHODS {
            if let Some(operation) = item.get(*method) {
                writer.operation(method, path, item, operation);
            }
        }
    }
    Ok(writer.finish())
}

/// JSON first (the common case, and its errors are the clearer), then YAML.
fn parse(text: &str, file: &str) -> Result<Value, ImportError> {
    let syntax = |line: usize, column: usize, message: String| ImportError::Syntax {
        file: file.to_owned(),
        line,
        column,
        message,
    };
    match serde_json::from_str::<Value>(text) {
        Ok(doc) => Ok(doc),
        Err(e) if text.trim_start().starts_with('{') => {
            Err(syntax(e.line(), e.column(), format!("not valid JSON: {e}")))
        }
        Err(_) => yaml_serde::from_str::<Value>(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            syntax(line, column, format!("neither JSON nor valid YAML: {e}"))
        }),
    }
}

/// One operation of the document, as the scenario will have it.
struct Operation {
    method: String,
    /// The document's path, with `{param}`s.
    path: String,
    step: DraftStep,
    /// What the operation answers on success (resolved), for extractions.
    answer: Value,
    secured: bool,
}

struct Writer<'a> {
    doc: &'a Value,
    /// The document's text, for the lines of what is left out.
    text: &'a str,
    options: &'a Options,
    /// The servers' path (`/api` of `https://host/api`), before every path.
    prefix: String,
    operations: Vec<Operation>,
    /// Variables and their first value, from parameters.
    vars: BTreeMap<String, Value>,
    left_out: Vec<Untranslated>,
    unsafe_left_out: Vec<String>,
    health: Option<String>,
}

impl<'a> Writer<'a> {
    fn new(doc: &'a Value, text: &'a str, options: &'a Options) -> Self {
        Writer {
            doc,
            text,
            options,
            prefix: server_prefix(doc),
            operations: Vec::new(),
            vars: BTreeMap::new(),
            left_out: Vec::new(),
            unsafe_left_out: Vec::new(),
            health: None,
        }
    }

    /// Follows local `$ref`s (`#/components/...`); a reference it cannot follow stays as it is.
    fn resolve<'v>(&self, mut value: &'v Value) -> &'v Value
    where
        'a: 'v,
    {
        for _ in 0..32 {
            match value.get("$ref").and_then(Value::as_str) {
                Some(reference) if reference.starts_with('#') => {
                    match self.doc.pointer(&reference[1..]) {
                        Some(target) => value = target,
                        None => return value,
                    }
                }
                _ => return value,
            }
        }
        value
    }

    fn operation(&mut self, method: &str, path: &str, item: &Value, operation: &Value) {
        let operation = self.resolve(operation);
        let upper = method.to_ascii_uppercase();
        let place = format!("{upper} {path}");
        if !self.options.include_unsafe && is_destructive(method, path) {
            self.unsafe_left_out.push(place);
            return;
        }
        if method == "get" && self.health.is_none() && is_health(path) {
            self.health = Some(format!("{}{}", self.prefix, path));
        }
        let mut parameters: Vec<&Value> = Vec::new();
        for list in [&item["parameters"], &operation["parameters"]] {
            for parameter in list.as_array().into_iter().flatten() {
                parameters.push(self.resolve(parameter));
            }
        }
        let mut query = Vec::new();
        let mut headers = Vec::new();
        for parameter in parameters {
            let (Some(name), Some(location)) =
                (parameter["name"].as_str(), parameter["in"].as_str())
            else {
                continue;
            };
            let required = parameter["required"]
                .as_bool()
                .unwrap_or(location == "path");
            let schema = self.resolve(&parameter["schema"]);
            let given = parameter.get("example").or_else(|| schema.get("default"));
            if !required && given.is_none() {
                continue; // optional: the API's own default is the most likely traffic
            }
            let var = if location == "path" {
                param_variable(path, name)
            } else {
                variable_name(name)
            };
            let value = match given {
                Some(v) => v.clone(),
                None => self.example(schema, name, 0),
            };
            self.vars.entry(var.clone()).or_insert(value);
            match location {
                "query" => query.push(format!("{name}=${{{var}}}")),
                "header" => headers.push((name.to_owned(), format!("${{{var}}}"))),
                "cookie" => headers.push(("Cookie".to_owned(), format!("{name}=${{{var}}}"))),
                _ => {}
            }
        }
        let body = match self.body(operation) {
            Ok(body) => body,
            Err(why) => {
                // `"/files/upload"` in JSON, `/files/upload:` in YAML.
                let line = line_of(self.text, &format!("\"{path}\""))
                    .max(line_of(self.text, &format!("{path}:")));
                self.left_out.push(Untranslated {
                    line,
                    original: place,
                    why,
                });
                return;
            }
        };
        let full = format!("{}{}", self.prefix, path);
        let mut request_path = brace_params(&full, |p| format!("${{{}}}", param_variable(path, p)));
        if !query.is_empty() {
            request_path = format!("{request_path}?{}", query.join("&"));
        }
        let summary = operation["summary"].as_str().unwrap_or_default();
        let mut comment = vec![format!("{upper} {full}")];
        if !summary.is_empty() {
            comment[0] = format!("{upper} {full}: {summary}");
        }
        let secured = operation
            .get("security")
            .or_else(|| self.doc.get("security"))
            .and_then(Value::as_array)
            .is_some_and(|alternatives| !alternatives.is_empty());
        self.operations.push(Operation {
            method: method.to_owned(),
            path: path.to_owned(),
            step: DraftStep {
                key: step_key(method, &full),
                comment,
                method: upper,
                path: request_path,
                name: Some(brace_params(&full, |p| format!("[{p}]"))),
                headers,
                body,
                ..DraftStep::default()
            },
            answer: self.success_schema(operation),
            secured,
        });
    }

    /// The request body, from its first content type the scenario language can send.
    fn body(&self, operation: &Value) -> Result<DraftBody, String> {
        let request = self.resolve(&operation["requestBody"]);
        let Some(content) = request["content"].as_object() else {
            return Ok(DraftBody::Empty);
        };
        let pick = |wanted: &dyn Fn(&str) -> bool| {
            content
                .iter()
                .find(|(kind, _)| wanted(kind.as_str()))
                .map(|(_, media)| media)
        };
        if let Some(media) = pick(&|k| k == "application/json" || k.ends_with("+json")) {
            let body = match media.get("example") {
                Some(example) => example.clone(),
                None => self.example(self.resolve(&media["schema"]), "", 0),
            };
            return Ok(DraftBody::Json(body));
        }
        if let Some(media) = pick(&|k| k == "application/x-www-form-urlencoded") {
            let body = self.example(self.resolve(&media["schema"]), "", 0);
            let fields = body
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), plain_text(v)))
                .collect();
            return Ok(DraftBody::Form(fields));
        }
        let kinds: Vec<&str> = content.keys().map(String::as_str).collect();
        if kinds.iter().any(|k| k.starts_with("multipart/")) {
            return Err(
                "uploads a file (multipart/form-data): write its step by hand with \
                        `multipart = { file = { fixture = \"NAME\", content_type = \"...\" } }` \
                        and a file of the fixtures folder (`--fixtures`)"
                    .to_owned(),
            );
        }
        Err(format!(
            "its body is {}: a scenario step sends JSON, forms or multipart",
            kinds.join(" or ")
        ))
    }

    /// The schema of the operation's first 2xx answer (JSON), or `{}`.
    fn success_schema(&self, operation: &Value) -> Value {
        let Some(responses) = operation["responses"].as_object() else {
            return json!({});
        };
        responses
            .iter()
            .filter(|(status, _)| status.starts_with('2'))
            .find_map(|(_, answer)| {
                let answer = self.resolve(answer);
                answer["content"]
                    .as_object()?
                    .iter()
                    .find_map(|(kind, media)| {
                        kind.contains("json")
                            .then(|| self.resolve(&media["schema"]).clone())
                    })
            })
            .unwrap_or_else(|| json!({}))
    }

    /// A value the schema allows: its example, default or first enum value, else one made
    /// from its type within its bounds. `field` is the property's name (credentials and
    /// unique strings are recognised by it).
    fn example(&self, schema: &Value, field: &str, depth: usize) -> Value {
        let schema = self.resolve(schema);
        if let (Some(credential), "string") = (credential(field), schema_type(schema)) {
            return Value::String(format!("${{{credential}}}"));
        }
        for key in ["example", "default", "const"] {
            if let Some(value) = schema.get(key) {
                return value.clone();
            }
        }
        if let Some(first) = schema["examples"].as_array().and_then(|e| e.first()) {
            return first.clone();
        }
        if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
            return first.clone();
        }
        if depth > 8 {
            return Value::Null;
        }
        for combinator in ["oneOf", "anyOf"] {
            if let Some(alternatives) = schema[combinator].as_array() {
                let chosen = alternatives
                    .iter()
                    .map(|a| self.resolve(a))
                    .find(|a| a["type"] != "null")
                    .or(alternatives.first());
                if let Some(chosen) = chosen {
                    return self.example(chosen, field, depth + 1);
                }
            }
        }
        if let Some(parts) = schema["allOf"].as_array() {
            let mut merged = Map::new();
            for part in parts {
                match self.example(part, field, depth + 1) {
                    Value::Object(fields) => merged.extend(fields),
                    other if parts.len() == 1 => return other,
                    _ => {}
                }
            }
            return Value::Object(merged);
        }
        match schema_type(schema) {
            "object" => self.object_example(schema, depth),
            "array" => {
                // Deep in a document, one item: a self-referring schema must not multiply.
                let most = if depth < 2 { 16 } else { 1 };
                let count = schema["minItems"].as_u64().unwrap_or(1).clamp(1, most);
                let item = self.example(&schema["items"], field, depth + 1);
                Value::Array(vec![item; count as usize])
            }
            "integer" => {
                let low = schema["minimum"]
                    .as_i64()
                    .or_else(|| {
                        schema["exclusiveMinimum"]
                            .as_i64()
                            .map(|m| m.saturating_add(1))
                    })
                    .unwrap_or(1);
                let high = schema["maximum"].as_i64().unwrap_or(i64::MAX);
                json!(low.max(1).min(high))
            }
            "number" => {
                let low = schema["minimum"].as_f64().unwrap_or(1.0);
                let high = schema["maximum"].as_f64().unwrap_or(f64::MAX);
                json!(low.max(1.0).min(high))
            }
            "boolean" => Value::Bool(true),
            "null" => Value::Null,
            _ => Value::String(string_example(schema)),
        }
    }

    /// An object with its required properties, and the optional ones that have a value of
    /// their own (an example or a default).
    fn object_example(&self, schema: &Value, depth: usize) -> Value {
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut object = Map::new();
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let property = self.resolve(property);
            let has_own = ["example", "default", "examples", "const"]
                .iter()
                .any(|k| property.get(*k).is_some());
            if required.contains(name.as_str()) || has_own {
                let value = self.example(property, name, depth + 1);
                if !value.is_null() {
                    object.insert(name.clone(), value);
                }
            }
        }
        Value::Object(object)
    }

    fn finish(mut self) -> Imported {
        let login = self.find_account_step(LOGIN);
        let sign_up = self.find_account_step(SIGN_UP);
        self.extract_created_ids();
        let mut user = DraftUser {
            name: "Api".to_owned(),
            wait: Some(r#"{ between = ["1s", "3s"] }"#.to_owned()),
            ..DraftUser::default()
        };
        let uses_credentials = self.operations.iter().any(|op| {
            let text = format!("{:?}", op.step.body);
            ["${username}", "${email}", "${password}"]
                .iter()
                .any(|c| text.contains(c))
        });
        if uses_credentials {
            user.vars_comment.push(
                "The account each user signs up and logs in with (one per user and run)."
                    .to_owned(),
            );
            user.vars
                .push(("username".into(), json!("lg${user}_${run}")));
            user.vars
                .push(("email".into(), json!("lg${user}_${run}@example.com")));
            user.vars
                .push(("password".into(), json!("Loadgen-Passw0rd")));
        }
        if !self.vars.is_empty() {
            user.vars_comment.push(
                "Parameters: set them to values of your data (or give each user its own with \
                 --user-data)."
                    .to_owned(),
            );
            user.vars.extend(std::mem::take(&mut self.vars));
        }
        let mut header = self.header_comment();
        if let Some(index) = login {
            self.login_flow(&mut user, &mut header, index, sign_up);
        } else if self.operations.iter().any(|op| op.secured) {
            header.push(
                "The document asks for credentials but has no login operation: add an \
                 `Authorization` header (or the API's key) to the user's `headers`."
                    .to_owned(),
            );
        }
        let account_steps: BTreeSet<usize> = login.into_iter().chain(sign_up).collect();
        for (index, operation) in self.operations.iter().enumerate() {
            if account_steps.contains(&index) {
                continue;
            }
            user.tasks.push(DraftTask {
                comment: if user.tasks.is_empty() {
                    vec![
                        "Every operation is a task of weight 1: set the weights to your \
                         traffic's mix."
                            .to_owned(),
                    ]
                } else {
                    Vec::new()
                },
                weight: 1,
                run: vec![operation.step.key.clone()],
            });
        }
        user.steps = self.operations.into_iter().map(|op| op.step).collect();
        let draft = Draft {
            header,
            health: self.health,
            users: vec![user],
        };
        Imported {
            toml: draft.to_toml(),
            untranslated: self.left_out,
            host: server_origin(self.doc),
        }
    }

    fn header_comment(&self) -> Vec<String> {
        let title = self.doc["info"]["title"].as_str().unwrap_or("the API");
        let version = self.doc["info"]["version"].as_str().unwrap_or("?");
        let mut header = vec![format!(
            "Written by `loadgen import openapi` from {title} {version}'s OpenAPI document."
        )];
        if let Some(url) = self.doc["servers"][0]["url"].as_str()
            && url.contains("://")
        {
            header.push(format!("Its server: {url} (give the host with -H)."));
        }
        if !self.unsafe_left_out.is_empty() {
            header.push(format!(
                "Left out as destructive (--include-unsafe keeps them): {}.",
                self.unsafe_left_out.join(", ")
            ));
        }
        for left in &self.left_out {
            // A minified document (FastAPI's) is one line: no line to point at.
            let line = if self.text.lines().nth(1).is_some() {
                format!(" (line {})", left.line)
            } else {
                String::new()
            };
            header.push(format!(
                "Not translated{line}: {}: {}",
                left.original, left.why
            ));
        }
        header
    }

    /// The index of the POST operation whose last segment is one of `segments`, or the
    /// OAuth2 password flow's `tokenUrl`.
    fn find_account_step(&self, segments: &[&str]) -> Option<usize> {
        let token_url = self.doc["components"]["securitySchemes"]
            .as_object()
            .into_iter()
            .flatten()
            .find_map(|(_, scheme)| scheme["flows"]["password"]["tokenUrl"].as_str());
        self.operations.iter().position(|op| {
            op.method == "post"
                && (segments.contains(&last_segment(&op.path))
                    || (segments == LOGIN
                        && token_url.is_some_and(|url| url.ends_with(op.path.as_str()))))
        })
    }

    /// Sign up (if the API has it) and log in once per user, then send the token it answers.
    fn login_flow(
        &mut self,
        user: &mut DraftUser,
        header: &mut Vec<String>,
        login: usize,
        sign_up: Option<usize>,
    ) {
        if let Some(index) = sign_up {
            user.on_start.push(self.operations[index].step.key.clone());
        }
        let answer = self.operations[login].answer.clone();
        let fields = answer["properties"].as_object();
        let token = TOKEN_FIELDS
            .iter()
            .find(|f| fields.is_some_and(|p| p.contains_key(**f)))
            .copied();
        if token.is_none() {
            header.push(
                "The login operation's answer has no schema: its token is taken from \
                 `access_token` (OAuth2's name); change the `extract` if the API names it \
                 otherwise."
                    .to_owned(),
            );
        }
        let token = token.unwrap_or("access_token");
        let wanted_elsewhere: BTreeSet<String> = self
            .operations
            .iter()
            .flat_map(|op| body_variables(&op.step.body))
            .collect();
        let step = &mut self.operations[login].step;
        step.extract.push((variable_name(token), token.to_owned()));
        // e.g. a refresh operation's `refresh_token`: the login answers it.
        for other in wanted_elsewhere {
            if other != variable_name(token) && other.contains("token") {
                step.extract.push((other.clone(), other));
            }
        }
        user.on_start.push(step.key.clone());
        user.headers.push((
            "Authorization".to_owned(),
            format!("Bearer ${{{}}}", variable_name(token)),
        ));
        // A body field the login answers comes from it, not from a made-up value.
        let extracted: BTreeSet<String> = step.extract.iter().map(|(v, _)| v.clone()).collect();
        for operation in &mut self.operations {
            replace_fields(&mut operation.step.body, &extracted);
        }
    }

    /// `POST /tasks/join` answers `{"id": 7}`: `GET /tasks/{task_id}` then asks for task 7.
    fn extract_created_ids(&mut self) {
        let mut extractions: Vec<(usize, String)> = Vec::new();
        for operation in &self.operations {
            for param in path_params(&operation.path) {
                let Some(at) = operation.path.find(&format!("{{{param}}}")) else {
                    continue;
                };
                let collection = operation.path[..at].trim_end_matches('/');
                if collection.is_empty() {
                    continue;
                }
                // An answer without a schema (FastAPI without `response_model`) is taken to
                // carry the `id`, as most do: a wrong guess shows as a failed extraction.
                let creator = self.operations.iter().position(|op| {
                    op.method == "post"
                        && path_params(&op.path).is_empty()
                        && (op.path == collection || op.path.starts_with(&format!("{collection}/")))
                        && (op.answer["properties"].get("id").is_some()
                            || op.answer.as_object().is_some_and(Map::is_empty))
                });
                if let Some(index) = creator {
                    extractions.push((index, param_variable(&operation.path, &param)));
                }
            }
        }
        for (index, var) in extractions {
            let step = &mut self.operations[index].step;
            if !step.extract.iter().any(|(v, _)| *v == var) {
                step.extract.push((var, "id".to_owned()));
            }
        }
    }
}

/// `/api` of `servers[0].url` (`https://host/api` or `/api`), its variables at their defaults.
fn server_prefix(doc: &Value) -> String {
    let Some(server) = doc["servers"].as_array().and_then(|s| s.first()) else {
        return String::new();
    };
    let mut url = server["url"].as_str().unwrap_or_default().to_owned();
    for (name, variable) in server["variables"].as_object().into_iter().flatten() {
        let value = variable["default"].as_str().unwrap_or_default();
        url = url.replace(&format!("{{{name}}}"), value);
    }
    let path = match url.find("://") {
        Some(scheme_end) => {
            let rest = &url[scheme_end + 3..];
            rest.find('/').map_or("", |slash| &rest[slash..])
        }
        None => url.as_str(),
    };
    path.trim_end_matches('/').to_owned()
}

/// `https://host` of an absolute `servers[0].url`.
fn server_origin(doc: &Value) -> Option<String> {
    let url = url::Url::parse(doc["servers"][0]["url"].as_str()?).ok()?;
    Some(url.origin().ascii_serialization()).filter(|o| o != "null")
}

fn is_destructive(method: &str, path: &str) -> bool {
    method == "delete" || (method != "get" && DESTRUCTIVE.contains(&last_segment(path)))
}

fn is_health(path: &str) -> bool {
    matches!(
        last_segment(path),
        "health" | "healthz" | "healthcheck" | "ping" | "ready" | "readyz" | "livez"
    )
}

/// The last segment that is not a parameter, lower case: `login` of `/auth/login/`.
fn last_segment(path: &str) -> &str {
    path.split('/')
        .rev()
        .find(|s| !s.is_empty() && !s.starts_with('{'))
        .unwrap_or_default()
}

fn path_params(path: &str) -> Vec<String> {
    let mut params = Vec::new();
    brace_params(path, |p| {
        params.push(p.to_owned());
        String::new()
    });
    params
}

/// `path` with each `{param}` replaced by `with(param)`.
fn brace_params(path: &str, mut with: impl FnMut(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&with(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// A path parameter's variable: its name (`task_id`), or, for a name every collection uses
/// (`id`), the collection's and its name (`tasks_id` of `/tasks/{id}`), so that a task's id
/// is not sent as a file's.
fn param_variable(path: &str, param: &str) -> String {
    let generic = matches!(
        param.to_ascii_lowercase().as_str(),
        "id" | "uuid" | "pk" | "key" | "slug" | "name"
    );
    let before = path
        .find(&format!("{{{param}}}"))
        .map(|at| last_segment(&path[..at]))
        .unwrap_or_default();
    if generic && !before.is_empty() {
        variable_name(&format!("{before}_{param}"))
    } else {
        variable_name(param)
    }
}

/// `GET /api/v1/tasks/{task_id}` → `get_api_v1_tasks_task_id`.
fn step_key(method: &str, path: &str) -> String {
    let mut key = method.to_owned();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        key.push('_');
        key.push_str(&variable_name(
            segment.trim_matches(|c| c == '{' || c == '}'),
        ));
    }
    key
}

fn schema_type(schema: &Value) -> &str {
    match &schema["type"] {
        Value::String(kind) => kind,
        // 3.1: `type: [string, "null"]`.
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    }
}

/// The user's variable for a field that carries a credential.
fn credential(field: &str) -> Option<&'static str> {
    match field.to_ascii_lowercase().as_str() {
        "username" | "user_name" | "login" => Some("username"),
        "email" | "e_mail" | "mail" => Some("email"),
        "password" | "passwd" | "pass" => Some("password"),
        _ => None,
    }
}

/// A string its format and length allow; free text is unique per request (`${seq}`), so that
/// creating two things of one name does not conflict.
fn string_example(schema: &Value) -> String {
    let fixed = match schema["format"].as_str().unwrap_or_default() {
        "email" => Some("lg${user}_${seq}@example.com"),
        "date-time" => Some("2026-01-01T00:00:00Z"),
        "date" => Some("2026-01-01"),
        "time" => Some("00:00:00"),
        "uuid" => Some("00000000-0000-4000-8000-000000000000"),
        "uri" | "url" => Some("https://example.com/"),
        "ipv4" => Some("127.0.0.1"),
        _ => None,
    };
    if let Some(fixed) = fixed {
        return fixed.to_owned();
    }
    // A document from the network may ask for anything: a value of at most 256 characters.
    let min = schema["minLength"].as_u64().unwrap_or(0).min(256) as usize;
    let max = schema["maxLength"]
        .as_u64()
        .map_or(usize::MAX, |m| m as usize);
    // `lg-` with the user's number and a counter: up to ~16 characters when rendered.
    if max >= 16 {
        let mut text = "lg${user}_${seq}".to_owned();
        if min > 8 {
            text.push_str(&"x".repeat(min - 8));
        }
        text
    } else {
        "x".repeat(min.clamp(1, max.max(1)))
    }
}

/// A form field's text: strings as they are, other values as JSON.
fn plain_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The top-level field names of a body.
fn body_variables(body: &DraftBody) -> Vec<String> {
    match body {
        DraftBody::Json(Value::Object(fields)) => fields.keys().cloned().collect(),
        DraftBody::Form(fields) => fields.iter().map(|(k, _)| k.clone()).collect(),
        _ => Vec::new(),
    }
}

/// Top-level body fields named as an extracted variable take its value.
fn replace_fields(body: &mut DraftBody, variables: &BTreeSet<String>) {
    match body {
        DraftBody::Json(Value::Object(fields)) => {
            for (name, value) in fields.iter_mut() {
                if variables.contains(name) {
                    *value = Value::String(format!("${{{name}}}"));
                }
            }
        }
        DraftBody::Form(fields) => {
            for (name, value) in fields.iter_mut() {
                if variables.contains(name) {
                    *value = format!("${{{name}}}");
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
