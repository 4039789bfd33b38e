//! `loadgen import har`: a scenario that replays a browser's recording (a HAR file from
//! DevTools, Charles, mitmproxy or Playwright).
//!
//! - One user type that sends the recorded requests in their order, each step pausing
//!   (`think`) as long as the recorded user did before the next request.
//! - Static assets (scripts, styles, images, fonts, media) and other hosts' requests are left
//!   out unless asked for; the recording's main host is the one most requests went to.
//! - Cookies the server set during the recording are left to the user's cookie jar; others,
//!   and `Authorization`, become variables. A token some earlier answer carried (a login's
//!   `access_token`) is extracted from that answer instead.
//! - Secrets (credentials, tokens, passwords in bodies) are replaced by `REDACTED` in the
//!   user's variables unless `keep_secrets`, so a recording can be shared.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::draft::{Draft, DraftBody, DraftStep, DraftTask, DraftUser, variable_name};
use super::{ImportError, Imported, Untranslated, line_of};

/// Choices of `loadgen import har`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep scripts, styles, images, fonts and media.
    pub include_static: bool,
    /// Write the recorded credentials as they are instead of `REDACTED`.
    pub keep_secrets: bool,
}

/// What a secret's value becomes in the output.
pub const REDACTED: &str = "REDACTED";

/// Pauses shorter than this are the browser's own work, not the user's.
const SHORTEST_THINK_MS: f64 = 100.0;

/// Headers the client sets itself, a browser's own, or that would replay stale state.
const HEADERS_LEFT_TO_CLIENT: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "accept-encoding",
    "cookie",
    "content-type",
    "origin",
    "referer",
    "user-agent",
    "upgrade-insecure-requests",
    "cache-control",
    "pragma",
    "if-none-match",
    "if-modified-since",
    "priority",
    "te",
    "keep-alive",
];

/// Words of the names of fields, parameters and headers whose values are secrets
/// (`password`, `new_password`, `currentPassword`, `X-Api-Key`, `auth_token`, `sessionid`).
const SECRET_WORDS: &[&str] = &[
    "pass",
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "key",
    "apikey",
    "auth",
    "authorization",
    "session",
    "sessionid",
    "sid",
    "csrf",
    "xsrf",
    "signature",
    "sig",
    "credential",
    "credentials",
    "jwt",
    "otp",
];

/// Whether a name says its value is a secret: one of its words (split at `_`, `-`, `.` and
/// lower-to-upper case changes) is a [`SECRET_WORDS`] (`keyword` is no `key`).
fn is_secret_name(name: &str) -> bool {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        let boundary = !c.is_ascii_alphanumeric() || (c.is_ascii_uppercase() && previous_lower);
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase();
    }
    words.push(word);
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
}

#[derive(Debug, Deserialize)]
struct Har {
    log: Log,
}

#[derive(Debug, Deserialize)]
struct Log {
    #[serde(default)]
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    started_date_time: String,
    /// Milliseconds from the start to the end of the exchange.
    #[serde(default)]
    time: f64,
    request: Request,
    #[serde(default)]
    response: Option<Response>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    post_data: Option<PostData>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostData {
    #[serde(default)]
    mime_type: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    params: Vec<NameValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    status: i64,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Content {
    #[serde(default)]
    mime_type: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NameValue {
    name: String,
    #[serde(default)]
    value: String,
}

/// One recorded exchange kept for the scenario.
struct Kept<'a> {
    number: usize,
    entry: &'a Entry,
    url: Url,
    started_ms: f64,
}

/// Reads a HAR file (`file` names it in messages) and writes a scenario that replays it.
pub fn import(text: &str, file: &str, options: &Options) -> Result<Imported, ImportError> {
    let har: Har = serde_json::from_str(text).map_err(|e| ImportError::Syntax {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        message: format!(
            "not a HAR file ({e}); export one from the browser's DevTools (Network, \"Save all \
             as HAR\"), Charles or mitmproxy"
        ),
    })?;
    let empty = |why: String| ImportError::Empty {
        file: file.to_owned(),
        why,
    };
    // Where an entry is in the file: the first line that holds its URL.
    let line = |url: &str| line_of(text, &serde_json::Value::from(url).to_string());
    let mut left_out = Vec::new();
    let mut recorded: Vec<Kept<'_>> = Vec::new();
    for (index, entry) in har.log.entries.iter().enumerate() {
        let number = index + 1;
        let Ok(url) = Url::parse(&entry.request.url) else {
            left_out.push(Untranslated {
                line: line(&entry.request.url),
                original: format!("entry {number}"),
                why: format!("{:?} is not a URL", entry.request.url),
            });
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            continue; // data:, blob:, chrome-extension: are the browser's own
        }
        if !options.include_static && is_static(entry, &url) {
            continue;
        }
        let Ok(started) = chrono::DateTime::parse_from_rfc3339(&entry.started_date_time) else {
            left_out.push(Untranslated {
                line: line(&entry.request.url),
                original: format!("entry {number}"),
                why: format!(
                    "its startedDateTime {:?} is not an RFC 3339 date: it cannot be placed in time",
                    entry.started_date_time
                ),
            });
            continue;
        };
        let started_ms = started.timestamp_millis() as f64;
        recorded.push(Kept {
            number,
            entry,
            url,
            started_ms,
        });
    }
    recorded.sort_by(|a, b| a.started_ms.total_cmp(&b.started_ms));
    let Some(origin) = main_origin(&recorded) else {
        return Err(empty(
            "the recording holds no request to replay (only static assets, or none at all; \
             --include-static keeps assets)"
                .to_owned(),
        ));
    };
    let (kept, elsewhere): (Vec<Kept<'_>>, Vec<Kept<'_>>) = recorded
        .into_iter()
        .partition(|k| k.url.origin().ascii_serialization() == origin);
    let mut others: BTreeMap<String, usize> = BTreeMap::new();
    for other in &elsewhere {
        *others
            .entry(other.url.origin().ascii_serialization())
            .or_default() += 1;
    }
    let mut writer = Writer::new(options);
    for (i, exchange) in kept.iter().enumerate() {
        let next_start = kept.get(i + 1).map(|k| k.started_ms);
        match writer.step(exchange, next_start) {
            Ok(step) => writer.steps.push(step),
            Err(why) => left_out.push(Untranslated {
                line: line(exchange.entry.request.url.as_str()),
                original: format!(
                    "entry {} ({} {})",
                    exchange.number,
                    exchange.entry.request.method,
                    exchange.url.path()
                ),
                why,
            }),
        }
    }
    Ok(writer.finish(&origin, &others, left_out))
}

/// A script, style sheet, image, font or media file: by its answer's type, else by its name.
fn is_static(entry: &Entry, url: &Url) -> bool {
    let mime = entry
        .response
        .as_ref()
        .and_then(|r| r.content.as_ref())
        .map(|c| c.mime_type.to_ascii_lowercase())
        .unwrap_or_default();
    let by_type = ["image/", "font/", "audio/", "video/", "text/css"]
        .iter()
        .any(|p| mime.starts_with(p))
        || mime.contains("javascript")
        || mime.starts_with("application/font")
        || mime.starts_with("application/x-font");
    let extension = url
        .path()
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    let by_name = matches!(
        extension.as_str(),
        "js" | "mjs"
            | "css"
            | "map"
            | "png"
            | "jpg"
            | "jpeg"
            | "gif"
            | "svg"
            | "ico"
            | "webp"
            | "avif"
            | "woff"
            | "woff2"
            | "ttf"
            | "otf"
            | "eot"
    );
    entry.request.method.eq_ignore_ascii_case("GET") && (by_type || by_name)
}

/// The origin most requests went to.
fn main_origin(recorded: &[Kept<'_>]) -> Option<String> {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for (order, kept) in recorded.iter().enumerate() {
        let entry = counts
            .entry(kept.url.origin().ascii_serialization())
            .or_insert((0, order));
        entry.0 += 1;
    }
    // The most requests; on a tie, the first seen.
    counts
        .into_iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.1.1.cmp(&a.1.1)))
        .map(|(origin, _)| origin)
}

struct Writer<'o> {
    options: &'o Options,
    steps: Vec<DraftStep>,
    /// Variables and their values (redacted unless `keep_secrets`).
    vars: BTreeMap<String, Value>,
    /// Cookie names the server set so far in the recording (the jar will hold them).
    cookies_set: Vec<String>,
    /// Token strings earlier answers carried: value → (step index, field path).
    tokens_seen: HashMap<String, (usize, String)>,
    /// Step keys used so far, for unique keys.
    keys: HashMap<String, usize>,
    redacted: bool,
}

impl<'o> Writer<'o> {
    fn new(options: &'o Options) -> Self {
        Writer {
            options,
            steps: Vec::new(),
            vars: BTreeMap::new(),
            cookies_set: Vec::new(),
            tokens_seen: HashMap::new(),
            keys: HashMap::new(),
            redacted: false,
        }
    }

    fn step(&mut self, exchange: &Kept<'_>, next_start: Option<f64>) -> Result<DraftStep, String> {
        let request = &exchange.entry.request;
        let method = request.method.to_ascii_uppercase();
        let mut path = exchange.url.path().to_owned();
        if exchange.url.query().is_some() {
            path = format!("{path}?{}", self.query(&exchange.url));
        }
        let mut headers = Vec::new();
        let mut cookies = Vec::new();
        for header in &request.headers {
            let lower = header.name.to_ascii_lowercase();
            if lower.starts_with(':') || lower.starts_with("sec-") {
                continue;
            }
            if lower == "cookie" {
                cookies.push(header.value.as_str());
                continue;
            }
            if HEADERS_LEFT_TO_CLIENT.contains(&lower.as_str()) {
                continue;
            }
            if lower == "authorization" {
                let value = self.authorization(&header.value);
                headers.push((header.name.clone(), value));
                continue;
            }
            // `X-Api-Key`, `X-Auth-Token`, `Proxy-Authorization`...: a variable, redacted.
            let value = self.secret_field(&header.name, Value::String(header.value.clone()));
            headers.push((
                header.name.clone(),
                value.as_str().unwrap_or_default().to_owned(),
            ));
        }
        // HTTP/2 recordings split cookies over several headers: one `Cookie` for them all.
        if !cookies.is_empty() {
            self.cookies(&cookies.join("; "), &mut headers);
        }
        let body = match &request.post_data {
            Some(data) => self.body(data)?,
            None => DraftBody::Empty,
        };
        let key = self.unique_key(&method, exchange.url.path());
        let think = next_start.and_then(|next| {
            let pause = next - (exchange.started_ms + exchange.entry.time.max(0.0));
            (pause >= SHORTEST_THINK_MS).then(|| format!("{}ms", pause.round() as u64))
        });
        let status = exchange.entry.response.as_ref().map_or(0, |r| r.status);
        let step = DraftStep {
            key,
            // The path alone: the URL's query and credentials may hold secrets.
            comment: vec![format!(
                "entry {}: {method} {} (recorded: {status})",
                exchange.number,
                exchange.url.path()
            )],
            method,
            path,
            name: None,
            headers,
            body,
            // The recording shows the browser's hops; a replay follows them as it did.
            follow_redirects: Some(false),
            think,
            ..DraftStep::default()
        };
        self.remember_answer(exchange.entry, self.steps.len());
        Ok(step)
    }

    fn body(&mut self, data: &PostData) -> Result<DraftBody, String> {
        let mime = data.mime_type.to_ascii_lowercase();
        let text = data.text.clone().unwrap_or_default();
        if mime.contains("json") {
            let mut value: Value = serde_json::from_str(&text)
                .map_err(|e| format!("its JSON body does not parse: {e}"))?;
            self.redact_json(&mut value);
            return Ok(DraftBody::Json(value));
        }
        if mime.starts_with("application/x-www-form-urlencoded") {
            let pairs: Vec<(String, String)> = if data.params.is_empty() {
                form_urlencoded::parse(text.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            } else {
                data.params
                    .iter()
                    .map(|p| (p.name.clone(), p.value.clone()))
                    .collect()
            };
            let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            if let Some(twice) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!(
                    "its form sends `{}` more than once: a scenario's form sends each field \
                     once (write this one by hand)",
                    twice[0]
                ));
            }
            let fields = pairs
                .into_iter()
                .map(|(name, value)| {
                    let value = self.secret_field(&name, Value::String(value));
                    (name, value.as_str().map(str::to_owned).unwrap_or_default())
                })
                .collect();
            return Ok(DraftBody::Form(fields));
        }
        if text.is_empty() && data.params.is_empty() {
            return Ok(DraftBody::Empty);
        }
        Err(format!(
            "its body is {}: a scenario step sends JSON, forms or multipart with fixture files \
             (write this one by hand)",
            if mime.is_empty() {
                "of no stated type"
            } else {
                &mime
            }
        ))
    }

    /// `Cookie: a=1; b=2`: cookies the server set earlier in the recording are left to the
    /// jar; the others become variables.
    fn cookies(&mut self, header: &str, headers: &mut Vec<(String, String)>) {
        let mut sent = Vec::new();
        for pair in header.split(';') {
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if self.cookies_set.iter().any(|set| set == name) {
                continue;
            }
            let var = format!("cookie_{}", variable_name(name));
            let value = self.secret(literal(Value::String(value.to_owned())));
            self.vars.entry(var.clone()).or_insert(value);
            sent.push(format!("{name}=${{{var}}}"));
        }
        if !sent.is_empty() {
            headers.push(("Cookie".to_owned(), sent.join("; ")));
        }
    }

    /// An `Authorization` value: from an earlier answer's token when one carried it, else a
    /// variable.
    fn authorization(&mut self, value: &str) -> String {
        let (scheme, credential) = value.split_once(' ').unwrap_or(("", value));
        if let Some((index, field)) = self.tokens_seen.get(credential).cloned() {
            let var = variable_name(field.rsplit('.').next().unwrap_or("token"));
            if let Some(step) = self.steps.get_mut(index)
                && !step.extract.iter().any(|(v, _)| *v == var)
            {
                step.extract.push((var.clone(), field));
            }
            return format!("{scheme} ${{{var}}}").trim_start().to_owned();
        }
        let value = self.secret(literal(Value::String(credential.to_owned())));
        self.vars.entry("authorization".to_owned()).or_insert(value);
        format!("{scheme} ${{authorization}}")
            .trim_start()
            .to_owned()
    }

    /// Notes what a recorded answer set (cookies) and carried (token strings).
    fn remember_answer(&mut self, entry: &Entry, step: usize) {
        let Some(response) = &entry.response else {
            return;
        };
        for header in &response.headers {
            if header.name.eq_ignore_ascii_case("set-cookie")
                && let Some((name, _)) = header.value.split_once('=')
            {
                self.cookies_set.push(name.trim().to_owned());
            }
        }
        let Some(content) = &response.content else {
            return;
        };
        if content.encoding.is_some() || !content.mime_type.contains("json") {
            return;
        }
        let Some(Ok(answer)) = content.text.as_deref().map(serde_json::from_str::<Value>) else {
            return;
        };
        let mut strings = Vec::new();
        long_strings(&answer, String::new(), &mut strings);
        for (value, path) in strings {
            self.tokens_seen.entry(value).or_insert((step, path));
        }
    }

    fn redact_json(&mut self, value: &mut Value) {
        if let Value::Object(fields) = value {
            for (name, field) in fields.iter_mut() {
                let taken = std::mem::take(field);
                *field = self.secret_field(name, taken);
                self.redact_json(field);
            }
        } else if let Value::Array(items) = value {
            for item in items {
                if item.is_string() {
                    *item = literal(std::mem::take(item));
                }
                self.redact_json(item);
            }
        }
    }

    /// A body field that holds a secret becomes `${field}`, its value a variable. Recorded
    /// text is literal: a `${` in it stays one.
    fn secret_field(&mut self, name: &str, value: Value) -> Value {
        let value = literal(value);
        if !is_secret_name(name) || !value.is_string() {
            return value;
        }
        let var = variable_name(name);
        let value = self.secret(value);
        self.vars.entry(var.clone()).or_insert(value);
        Value::String(format!("${{{var}}}"))
    }

    fn secret(&mut self, value: Value) -> Value {
        if self.options.keep_secrets {
            value
        } else {
            self.redacted = true;
            Value::String(REDACTED.to_owned())
        }
    }

    fn unique_key(&mut self, method: &str, path: &str) -> String {
        let mut base = method.to_ascii_lowercase();
        for segment in path.split('/').filter(|s| !s.is_empty()).take(6) {
            base.push('_');
            base.push_str(&variable_name(segment));
        }
        // `get_items` twice then `get_items/2` would give `get_items_2` twice: count until free.
        let mut key = base.clone();
        let mut n = 1;
        while self.keys.contains_key(&key) {
            n += 1;
            key = format!("{base}_{n}");
        }
        self.keys.insert(key.clone(), 1);
        key
    }

    /// The query string with the values of secret-looking parameters (`access_token`,
    /// `api_key`, ...) as variables, redacted unless `keep_secrets`.
    fn query(&mut self, url: &Url) -> String {
        let mut pairs = Vec::new();
        for (name, value) in url.query_pairs() {
            let secret = is_secret_name(&name);
            let kept = if secret {
                self.secret_field(&name, Value::String(value.into_owned()))
            } else {
                // Encoded, it holds no `${` to read as a template.
                Value::String(value.into_owned())
            };
            let kept = kept.as_str().unwrap_or_default().to_owned();
            let encoded = if secret {
                kept
            } else {
                form_urlencoded::byte_serialize(kept.as_bytes()).collect()
            };
            pairs.push(format!(
                "{}={encoded}",
                form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
            ));
        }
        pairs.join("&")
    }

    fn finish(
        self,
        origin: &str,
        others: &BTreeMap<String, usize>,
        left_out: Vec<Untranslated>,
    ) -> Imported {
        let mut header = vec![
            "Written by `loadgen import har`: the recording's requests in their order, each \
             step pausing (`think`) as the recorded user did."
                .to_owned(),
            format!("Recorded against {origin}: give the host to load with -H."),
        ];
        if !others.is_empty() {
            let list: Vec<String> = others.iter().map(|(o, n)| format!("{o} ({n})")).collect();
            header.push(format!("Left out, other hosts: {}.", list.join(", ")));
        }
        if self.redacted {
            header.push(format!(
                "Secrets of the recording are `{REDACTED}` in `vars`: set them (or import with \
                 --keep-secrets)."
            ));
        }
        for left in &left_out {
            header.push(format!(
                "Not translated (line {}): {}: {}",
                left.line, left.original, left.why
            ));
        }
        let run: Vec<String> = self.steps.iter().map(|s| s.key.clone()).collect();
        let mut vars_comment = Vec::new();
        if !self.vars.is_empty() {
            vars_comment.push("Values the recording sent that a replay must set.".to_owned());
        }
        let user = DraftUser {
            name: "Recorded".to_owned(),
            wait: Some(r#"{ constant = "1s" }"#.to_owned()),
            vars_comment,
            vars: self.vars.into_iter().collect(),
            tasks: vec![DraftTask {
                comment: vec!["The whole recording, once an iteration.".to_owned()],
                weight: 1,
                run,
            }],
            steps: self.steps,
            ..DraftUser::default()
        };
        let draft = Draft {
            header,
            health: None,
            users: vec![user],
        };
        Imported {
            toml: draft.to_toml(),
            untranslated: left_out,
            host: Some(origin.to_owned()),
        }
    }
}

/// A recorded string as a template that renders to it.
fn literal(value: Value) -> Value {
    match value {
        Value::String(text) => Value::String(crate::scenario::template::escape(&text)),
        other => other,
    }
}

/// Every string of 16 characters or more in an answer, with its field path (`data.token`).
fn long_strings(value: &Value, path: String, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) if s.len() >= 16 && !path.is_empty() => out.push((s.clone(), path)),
        Value::Object(fields) => {
            for (name, field) in fields {
                let inner = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                long_strings(field, inner, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
