//! Scenarios are data: a TOML file declares user types (weight or fixed count, wait time),
//! `on_start` steps and weighted tasks; a step is one HTTP request with its templates, expected
//! statuses, extractions and status handlers. This module turns the file into the checked model
//! the runner executes, and points at the line of anything wrong.

pub mod data;
mod raw;
mod source;
pub mod template;
mod variables;

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use toml::Spanned;

pub use source::{LoadError, ScenarioSource};
pub use template::Template;

/// The built-in FFmpeg API scenario, printable with `loadgen scenario show`.
pub const BUILTIN: &str = include_str!("ffmpeg_api.toml");
/// Name shown for the built-in scenario in messages.
pub const BUILTIN_NAME: &str = "<built-in ffmpeg_api.toml>";

/// A scenario file that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ScenarioError {
    /// The file name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Path probed before the run.
    pub health: Option<String>,
    /// Ask for gzip-encoded answers (`Accept-Encoding: gzip`) and decode them.
    pub gzip: bool,
    /// The user types.
    pub users: Vec<UserType>,
    /// The open model of its `[load]` table, if it has one.
    pub load: Option<crate::arrival::Arrival>,
    /// Its `[[shape]]` stages, if it has some.
    pub shape: Option<crate::shape::Shape>,
    /// Rows of variables for the users (`--user-data`), checked against the scenario.
    pub user_data: Option<Arc<data::UserData>>,
}

/// What a scenario is, for telling whether two reports can be compared: its user types and
/// the names its requests are reported under (weights, waits and bodies may change between
/// runs of the same scenario; these may not).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScenarioIdentity {
    /// The user types' names, sorted.
    pub user_types: Vec<String>,
    /// `METHOD name` of every step, sorted and distinct.
    pub requests: Vec<String>,
}

impl Scenario {
    /// Whether a user type has `on_stop` steps: the run's end then takes up to
    /// [`crate::user::ON_STOP_LIMIT`] more.
    pub fn has_on_stop(&self) -> bool {
        self.users.iter().any(|u| !u.on_stop.is_empty())
    }

    /// Why no user of this scenario would run, if none would: a type with weight 0 never
    /// runs unless it has a `fixed_count` (Locust drops such classes too, and refuses a run
    /// that has no other).
    pub fn check_runnable(&self) -> Result<(), String> {
        if self
            .users
            .iter()
            .any(|u| u.weight > 0 || u.fixed_count.is_some_and(|n| n > 0))
        {
            return Ok(());
        }
        let names: Vec<&str> = self.users.iter().map(|u| u.name.as_str()).collect();
        Err(format!(
            "every user type to run ({}) has weight 0, and a type with weight 0 never runs: \
             give one a weight of 1 or more, or a fixed_count",
            names.join(", ")
        ))
    }

    /// The scenario's identity.
    pub fn identity(&self) -> ScenarioIdentity {
        let user_types: BTreeSet<String> = self.users.iter().map(|u| u.name.clone()).collect();
        let requests: BTreeSet<String> = self
            .users
            .iter()
            .flat_map(|u| &u.steps)
            .map(|step| format!("{} {}", step.method, step.name))
            .collect();
        ScenarioIdentity {
            user_types: user_types.into_iter().collect(),
            requests: requests.into_iter().collect(),
        }
    }
}

/// One kind of virtual user.
#[derive(Debug, Clone)]
pub struct UserType {
    /// Name, e.g. `FFmpegAPIUser`.
    pub name: String,
    /// Share of the users (ignored with `fixed_count`).
    pub weight: u32,
    /// Exactly this many users, taken before the weighted share.
    pub fixed_count: Option<u32>,
    /// This type's own arrival rate in the open model, instead of a share of the run's.
    pub arrival_rate: Option<crate::arrival::Rate>,
    /// Wait between tasks.
    pub wait: Wait,
    /// Tags for `--tags`.
    pub tags: Vec<String>,
    /// Variables set when the user starts.
    pub vars: Vec<(String, ValueTemplate)>,
    /// Headers on every request whose variables are all set.
    pub headers: Vec<(String, Template)>,
    /// Header names the scenario marks secret (lower case), beside the known ones.
    pub secret_headers: Vec<String>,
    /// Steps run once when the user starts.
    pub on_start: Vec<StepRef>,
    /// Steps run once when the user stops (its task done or cut off), as Locust's `on_stop`.
    pub on_stop: Vec<StepRef>,
    /// Weighted tasks run in a loop.
    pub tasks: Vec<Task>,
    /// The steps, referenced by index.
    pub steps: Vec<Step>,
}

impl UserType {
    /// Whether a header carries credentials: a known one (Authorization, Cookie, X-Api-Key,
    /// ..., see [`common::redact::SECRET_NAMES`]) or one the scenario marks secret.
    pub fn is_secret_header(&self, name: &str) -> bool {
        common::redact::is_secret_name(name)
            || self
                .secret_headers
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
    }
}

/// How long a user waits between tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    /// Uniformly random in [min, max].
    Between(Duration, Duration),
    /// Always the same.
    Constant(Duration),
    /// So that each task starts this long after the previous one started.
    Pacing(Duration),
}

impl Wait {
    /// The longest wait it can give (a pacing's whole period).
    pub fn longest(self) -> Duration {
        match self {
            Wait::Between(lo, hi) => lo.max(hi),
            Wait::Constant(d) | Wait::Pacing(d) => d,
        }
    }
}

/// A reference to a step, run `repeat` times.
#[derive(Debug, Clone)]
pub struct StepRef {
    /// Index into [`UserType::steps`].
    pub step: usize,
    /// How many times in a row.
    pub repeat: u32,
    /// Skipped when the user has this variable set (`unless = "token"`).
    pub unless: Option<Arc<str>>,
}

/// A weighted sequence of steps.
#[derive(Debug, Clone)]
pub struct Task {
    /// Relative weight.
    pub weight: u32,
    /// Tags for `--tags`.
    pub tags: Vec<String>,
    /// The steps, in order.
    pub run: Vec<StepRef>,
}

/// One HTTP request and what to do with its answer.
#[derive(Debug, Clone)]
pub struct Step {
    /// The key in the file.
    pub key: String,
    /// HTTP method.
    pub method: http::Method,
    /// Path and query.
    pub path: Template,
    /// Name in the statistics.
    pub name: Arc<str>,
    /// Extra headers.
    pub headers: Vec<(String, Template)>,
    /// The body.
    pub body: Body,
    /// Statuses that count as success (by default every status under 400, as in Locust).
    pub expect: Vec<u16>,
    /// Follow 301, 302, 303, 307 and 308 answers (up to `--max-redirects` hops), as Locust
    /// does.
    pub follow_redirects: bool,
    /// No complete answer within this time fails the request (`None`: `--request-timeout`).
    pub timeout: Option<Duration>,
    /// Variables set from the JSON answer: (variable, field path).
    pub extract: Vec<(String, Vec<String>)>,
    /// List variables appended from the JSON answer.
    pub append: Vec<(String, Vec<String>)>,
    /// On this status, run that step, then retry this one once.
    pub on_status: Vec<(u16, usize)>,
    /// Follow the created job.
    pub track: Option<Track>,
    /// The user pauses this long after the step (`think = "1.5s"`, a recording's think time).
    pub think: Option<Duration>,
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// None.
    Empty,
    /// `application/json`.
    Json(ValueTemplate),
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, Template)>),
    /// `multipart/form-data`.
    Multipart(Vec<(String, MultipartPart)>),
}

/// One part of a multipart body.
#[derive(Debug, Clone)]
pub enum MultipartPart {
    /// A text field.
    Text(Template),
    /// A file from the fixtures folder, loaded once.
    File {
        /// File name sent.
        filename: String,
        /// Content type sent.
        content_type: String,
        /// The bytes.
        bytes: Bytes,
    },
}

/// Job tracking of a step that creates a job.
#[derive(Debug, Clone)]
pub struct Track {
    /// Job kind in the report.
    pub job: Arc<str>,
    /// Status URL template; `${id}` is the job id.
    pub poll: Template,
    /// Name of the polls in the statistics.
    pub name: Arc<str>,
    /// Field path of the id in the creation answer.
    pub id: Vec<String>,
    /// Field path of the status in the status answer.
    pub field: Vec<String>,
    /// Statuses meaning done.
    pub done: Vec<String>,
    /// Statuses meaning failed.
    pub failed: Vec<String>,
    /// The first wait before a poll; each next wait doubles, up to `max_every`, so that the
    /// polls of long jobs stay a small share of the requests.
    pub every: Duration,
    /// The longest wait between polls (equal to `every`: no backoff).
    pub max_every: Duration,
    /// Give up after.
    pub timeout: Duration,
    /// Share of jobs followed.
    pub sample: f64,
}

/// A JSON value whose strings are templates.
#[derive(Debug, Clone)]
pub enum ValueTemplate {
    /// A string with `${...}`.
    Template(Template),
    /// A literal.
    Literal(Value),
    /// An array.
    Array(Vec<ValueTemplate>),
    /// An object.
    Object(Vec<(String, ValueTemplate)>),
}

impl ValueTemplate {
    fn from_toml(value: &toml::Value) -> Result<Self, String> {
        Ok(match value {
            toml::Value::String(s) => {
                let template = Template::parse(s)?;
                if template.is_literal() {
                    Self::Literal(Value::String(template.literal_text()))
                } else {
                    Self::Template(template)
                }
            }
            toml::Value::Array(items) => Self::Array(
                items
                    .iter()
                    .map(Self::from_toml)
                    .collect::<Result<_, _>>()?,
            ),
            toml::Value::Table(table) => Self::Object(
                table
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), Self::from_toml(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => Self::Literal(serde_json::to_value(other).map_err(|e| e.to_string())?),
        })
    }

    /// Evaluates every template in the tree.
    pub fn eval(&self, cx: &mut template::Context<'_>) -> Result<Value, template::EvalError> {
        Ok(match self {
            Self::Template(t) => t.value(cx)?,
            Self::Literal(v) => v.clone(),
            Self::Array(items) => {
                Value::Array(items.iter().map(|i| i.eval(cx)).collect::<Result<_, _>>()?)
            }
            Self::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.eval(cx)?)))
                    .collect::<Result<_, template::EvalError>>()?,
            ),
        })
    }
}

/// Where scenario files find the fixtures their uploads name.
#[derive(Debug, Clone)]
pub struct FixtureDir(pub PathBuf);

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
}

impl Checker<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> ScenarioError {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ScenarioError {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Which fixture files a scenario uploads (checked before the run).
pub fn fixtures_needed(text: &str) -> Vec<String> {
    let Ok(file) = toml::from_str::<raw::File>(text) else {
        return Vec::new();
    };
    let mut names = BTreeSet::new();
    for user in &file.users {
        for step in user.get_ref().steps.values() {
            for part in step.get_ref().multipart.iter().flat_map(|m| m.values()) {
                if let raw::Part::File { fixture, .. } = part.get_ref() {
                    names.insert(fixture.clone());
                }
            }
        }
    }
    names.into_iter().collect()
}

/// Parses and checks a scenario; `file` names it in errors; uploads are read from `fixtures`.
pub fn parse(text: &str, file: &str, fixtures: &Path) -> Result<Scenario, ScenarioError> {
    let checker = Checker { file, text };
    let raw: raw::File = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        checker.error(span, e.message().trim().to_owned())
    })?;
    if raw.users.is_empty() {
        return Err(checker.error(0..0, "no [[users]]: declare at least one user type"));
    }
    let mut users = Vec::new();
    let mut fixture_cache: HashMap<String, Bytes> = HashMap::new();
    for user in &raw.users {
        users.push(compile_user(&checker, user, fixtures, &mut fixture_cache)?);
    }
    let mut names = BTreeSet::new();
    for (user, raw_user) in users.iter().zip(&raw.users) {
        if !names.insert(user.name.clone()) {
            return Err(checker.error(
                raw_user.span(),
                format!("user type `{}` declared twice", user.name),
            ));
        }
        if let Some(unset) =
            variables::never_set(user).or_else(|| variables::unless_never_set(user))
        {
            return Err(checker.error(raw_user.span(), unset));
        }
    }
    let health = match raw.health {
        Some(health) => {
            check_request_path(health.get_ref())
                .and_then(|()| {
                    if health.get_ref().contains("${") {
                        Err(
                            "it is probed before any user exists, so it takes no variables"
                                .to_owned(),
                        )
                    } else {
                        Ok(())
                    }
                })
                .map_err(|why| {
                    checker.error(
                        health.span(),
                        format!("health = {:?}: {why}", health.get_ref()),
                    )
                })?;
            Some(health.into_inner())
        }
        None => None,
    };
    let load = match &raw.load {
        Some(load) => {
            Some(compile_load(load.get_ref()).map_err(|why| checker.error(load.span(), why))?)
        }
        None => None,
    };
    let shape = if raw.shape.is_empty() {
        None
    } else {
        Some(compile_shape(&checker, &raw.shape)?)
    };
    let scenario = Scenario {
        health,
        gzip: raw.gzip,
        users,
        load,
        shape,
        user_data: None,
    };
    scenario
        .check_runnable()
        .map_err(|why| checker.error(raw.users[0].span(), why))?;
    Ok(scenario)
}

/// Parses and checks a `--shape` file: `[[shape]]` tables only; `file` names it in errors.
pub fn parse_shape(text: &str, file: &str) -> Result<crate::shape::Shape, ScenarioError> {
    let checker = Checker { file, text };
    let raw: raw::ShapeFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        checker.error(span, e.message().trim().to_owned())
    })?;
    compile_shape(&checker, &raw.shape)
}

/// `[[shape]]` stages, checked; an error names the stage's number and points at its line.
fn compile_shape(
    checker: &Checker<'_>,
    stages: &[toml::Spanned<raw::ShapeStage>],
) -> Result<crate::shape::Shape, ScenarioError> {
    use crate::shape::{RawStage, Shape};
    let mut checked = Vec::with_capacity(stages.len());
    for (i, spanned) in stages.iter().enumerate() {
        let stage = spanned.get_ref();
        let fail = |span: Range<usize>, why: String| {
            checker.error(span, format!("shape stage {}: {why}", i + 1))
        };
        let duration = match &stage.duration {
            None => None,
            Some(value) => {
                Some(stage_duration(value.get_ref()).map_err(|why| fail(value.span(), why))?)
            }
        };
        let arrival_rate = stage
            .arrival_rate
            .as_deref()
            .map(crate::arrival::Rate::parse)
            .transpose()
            .map_err(|e| fail(spanned.span(), format!("arrival_rate: {e}")))?;
        checked.push(RawStage {
            duration,
            users: stage.users,
            spawn_rate: stage.spawn_rate,
            arrival_rate,
        });
    }
    Shape::check(&checked).map_err(|(i, why)| {
        let span = stages.get(i).map_or(0..0, toml::Spanned::span);
        checker.error(span, why)
    })
}

/// A stage's `duration`: seconds (`30`, `1.5`) or a duration string (`"30s"`, `"2m"`).
fn stage_duration(value: &toml::Value) -> Result<Duration, String> {
    let secs = match value {
        toml::Value::String(text) => {
            return common::duration::parse(text).map_err(|e| format!("duration: {e}"));
        }
        toml::Value::Integer(n) => *n as f64,
        toml::Value::Float(x) => *x,
        other => {
            return Err(format!(
                "duration = {other}: write seconds or \"30s\", \"2m\""
            ));
        }
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("duration = {secs}: a positive number of seconds"))
}

/// `[load]` as the open model's settings.
fn compile_load(load: &raw::Load) -> Result<crate::arrival::Arrival, String> {
    use crate::arrival::{Arrival, Rate, Stage};
    let rate = load
        .arrival_rate
        .as_deref()
        .map(Rate::parse)
        .transpose()
        .map_err(|e| format!("[load] arrival_rate: {e}"))?;
    let stages = match &load.stages {
        None => Ok(Vec::new()),
        Some(raw::Stages::Joined(text)) => Stage::parse_list(text),
        Some(raw::Stages::Listed(list)) => list.iter().map(|s| Stage::parse(s)).collect(),
    }
    .map_err(|e| format!("[load] stages: {e}"))?;
    if let (Some(pre), Some(max)) = (load.pre_allocate, load.max_users)
        && pre > max
    {
        return Err(format!(
            "[load] pre_allocate = {pre} is above max_users = {max}: pre-allocate at most the cap"
        ));
    }
    Ok(Arrival {
        rate,
        stages,
        max_users: load.max_users,
        pre_allocate: load.pre_allocate,
    })
}

fn parse_duration(
    checker: &Checker<'_>,
    span: Range<usize>,
    text: &str,
) -> Result<Duration, ScenarioError> {
    common::duration::parse(text).map_err(|e| checker.error(span, e.to_string()))
}

fn compile_user(
    checker: &Checker<'_>,
    spanned: &Spanned<raw::User>,
    fixtures: &Path,
    fixture_cache: &mut HashMap<String, Bytes>,
) -> Result<UserType, ScenarioError> {
    let user = spanned.get_ref();
    let span = spanned.span();
    if user.tasks.is_empty() {
        return Err(checker.error(
            span,
            format!("user type `{}` has no [[users.tasks]]", user.name),
        ));
    }
    let wait = match &user.wait {
        None => Wait::Constant(Duration::ZERO),
        Some(w) => compile_wait(checker, w)?,
    };
    let keys: Vec<&String> = user.steps.keys().collect();
    let on_start = user
        .on_start
        .iter()
        .map(|r| resolve_step_ref(checker, user, &keys, r))
        .collect::<Result<Vec<_>, _>>()?;
    let on_stop = user
        .on_stop
        .iter()
        .map(|r| resolve_step_ref(checker, user, &keys, r))
        .collect::<Result<Vec<_>, _>>()?;
    let tasks = compile_tasks(checker, spanned, &keys)?;
    let mut steps = Vec::new();
    for (key, step) in &user.steps {
        steps.push(compile_step(
            checker,
            key,
            step,
            &keys,
            fixtures,
            fixture_cache,
        )?);
    }
    let mut vars = Vec::new();
    for (name, value) in &user.vars {
        if template::RESERVED.contains(&name.as_str()) {
            return Err(checker.error(
                value.span(),
                format!(
                    "user type `{}`: a variable cannot be named `{name}`: `${{{name}}}` is \
                     built in; rename it",
                    user.name
                ),
            ));
        }
        let template = ValueTemplate::from_toml(value.get_ref())
            .map_err(|e| checker.error(value.span(), e))?;
        vars.push((name.clone(), template));
    }
    let arrival_rate = match &user.arrival_rate {
        Some(rate) => Some(crate::arrival::Rate::parse(rate.get_ref()).map_err(|e| {
            checker.error(
                rate.span(),
                format!("user type `{}`: arrival_rate: {e}", user.name),
            )
        })?),
        None => None,
    };
    Ok(UserType {
        name: user.name.clone(),
        weight: user.weight.unwrap_or(1),
        fixed_count: user.fixed_count,
        arrival_rate,
        wait,
        tags: user.tags.clone(),
        vars,
        headers: templates(checker, &user.headers)?,
        secret_headers: secret_headers(checker, &user.secret_headers)?,
        on_start,
        on_stop,
        tasks,
        steps,
    })
}

/// A user type's wait between tasks: exactly one of `between`, `constant` and `pacing`.
fn compile_wait(
    checker: &Checker<'_>,
    spanned: &Spanned<raw::Wait>,
) -> Result<Wait, ScenarioError> {
    let s = spanned.span();
    let w = spanned.get_ref();
    match (&w.between, &w.constant, &w.pacing, w.constant_throughput) {
        (Some([lo, hi]), None, None, None) => {
            let (lo, hi) = (
                parse_duration(checker, s.clone(), lo)?,
                parse_duration(checker, s.clone(), hi)?,
            );
            if lo > hi {
                return Err(checker.error(
                    s,
                    "wait.between: the first duration must not exceed the second",
                ));
            }
            Ok(Wait::Between(lo, hi))
        }
        (None, Some(c), None, None) => Ok(Wait::Constant(parse_duration(checker, s, c)?)),
        (None, None, Some(p), None) => Ok(Wait::Pacing(parse_duration(checker, s, p)?)),
        // Locust's constant_throughput(N): N task runs a second, a pacing of 1/N s.
        (None, None, None, Some(n)) if n.is_finite() && n > 0.0 => {
            Ok(Wait::Pacing(Duration::from_secs_f64(1.0 / n)))
        }
        (None, None, None, Some(_)) => Err(checker.error(
            s,
            "wait.constant_throughput: give a number of task runs per second above 0, e.g. 2",
        )),
        _ => Err(checker.error(s, "wait takes exactly one of between = [\"1s\", \"3s\"], constant = \"1s\", pacing = \"2s\" or constant_throughput = 2")),
    }
}

/// A step named in `on_start` or a task's `run`, as an index into the user type's steps
/// (`keys`), with its repeat count.
fn resolve_step_ref(
    checker: &Checker<'_>,
    user: &raw::User,
    keys: &[&String],
    r: &Spanned<raw::StepRef>,
) -> Result<StepRef, ScenarioError> {
    let (name, repeat, unless) = match r.get_ref() {
        raw::StepRef::Name(n) => (n, 1, None),
        raw::StepRef::Repeated {
            step,
            repeat,
            unless,
        } => (step, *repeat, unless.as_deref().map(Arc::from)),
    };
    let repeat = u32::try_from(repeat)
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            checker.error(
                r.span(),
                format!("step `{name}`: repeat = {repeat}: a step runs 1 or more times in a row"),
            )
        })?;
    let step = keys.iter().position(|k| *k == name).ok_or_else(|| {
        let known: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        checker.error(
            r.span(),
            format!(
                "no step `{name}` in user type `{}` (steps: {})",
                user.name,
                known.join(", ")
            ),
        )
    })?;
    Ok(StepRef {
        step,
        repeat,
        unless,
    })
}

/// A user type's tasks: each runs a step at least, and their weights are shares that some task
/// holds and that add up to a `u32`.
fn compile_tasks(
    checker: &Checker<'_>,
    spanned: &Spanned<raw::User>,
    keys: &[&String],
) -> Result<Vec<Task>, ScenarioError> {
    let user = spanned.get_ref();
    let span = spanned.span();
    let mut tasks = Vec::new();
    for task in &user.tasks {
        let t = task.get_ref();
        if t.run.is_empty() {
            return Err(checker.error(task.span(), "a task needs at least one step in `run`"));
        }
        tasks.push(Task {
            weight: t.weight,
            tags: t.tags.clone(),
            run: t
                .run
                .iter()
                .map(|r| resolve_step_ref(checker, user, keys, r))
                .collect::<Result<_, _>>()?,
        });
    }
    if tasks.iter().all(|t| t.weight == 0) {
        return Err(checker.error(span, "every task has weight 0"));
    }
    let total_weight: u64 = tasks.iter().map(|t| u64::from(t.weight)).sum();
    if total_weight > u64::from(u32::MAX) {
        return Err(checker.error(
            span,
            format!(
                "user type `{}`: the task weights add up to {total_weight}, more than {}; \
                 weights are shares, so use small numbers (e.g. 1, 2, 5)",
                user.name,
                u32::MAX
            ),
        ));
    }
    Ok(tasks)
}

/// The name requests are reported under: a path's secret parameters (`?api_key=...`) masked,
/// as every report file, log line and web answer shows it.
fn display_name(name: String) -> Arc<str> {
    common::redact::path_and_query(&name).into()
}

/// The header names a user type marks secret, each a valid header name. They are secrets in
/// every log line too, and log lines are written far from the scenario: the redactor learns them.
fn secret_headers(
    checker: &Checker<'_>,
    names: &[Spanned<String>],
) -> Result<Vec<String>, ScenarioError> {
    let mut out = Vec::new();
    for name in names {
        if http::HeaderName::from_bytes(name.get_ref().as_bytes()).is_err() {
            return Err(checker.error(
                name.span(),
                format!(
                    "secret_headers: {:?} is not a valid HTTP header name \
                     (letters, digits and !#$%&'*+-.^_`|~, no spaces)",
                    name.get_ref()
                ),
            ));
        }
        out.push(name.get_ref().to_ascii_lowercase());
    }
    common::redact::add_secret_names(&out);
    Ok(out)
}

/// Headers loadgen writes itself: an override would frame the request wrongly, so that the
/// server reads another request than the one measured.
const FRAMING_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// Header templates, each name a valid HTTP token that loadgen does not write itself, each value
/// free of line breaks (which would inject headers or a request).
fn templates(
    checker: &Checker<'_>,
    map: &std::collections::BTreeMap<String, Spanned<String>>,
) -> Result<Vec<(String, Template)>, ScenarioError> {
    map.iter()
        .map(|(k, v)| {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(checker.error(
                    v.span(),
                    format!(
                        "header name {k:?} is not a valid HTTP header name \
                         (letters, digits and !#$%&'*+-.^_`|~, no spaces)"
                    ),
                ));
            }
            if FRAMING_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(checker.error(
                    v.span(),
                    format!(
                        "header {k:?} is set by loadgen itself (it frames the request): remove it"
                    ),
                ));
            }
            if let Some(bad) = v.get_ref().chars().find(|c| c.is_control() && *c != '\t') {
                return Err(checker.error(
                    v.span(),
                    format!(
                        "header {k:?}: the value holds the control character {bad:?} \
                         (a line break would inject a header)"
                    ),
                ));
            }
            Ok((
                k.clone(),
                Template::parse(v.get_ref()).map_err(|e| checker.error(v.span(), e))?,
            ))
        })
        .collect()
}

/// Why `path` cannot be a request target, if it cannot: it must start with `/` and hold no
/// space or control character (a space or a line break would break the request line, and the
/// server would read what follows as another request). Only the literal text counts: the values
/// of `${...}` are percent-encoded when sent, and `${pick ids}` holds a space of its own.
fn check_request_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("the path must start with '/' (the host comes from --host)".into());
    }
    let literal = Template::parse(path).map_or_else(|_| path.to_owned(), |t| t.literal_text());
    if let Some(bad) = literal
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the path holds {bad:?}: write a space as %20, and no line breaks"
        ));
    }
    Ok(())
}

fn field_path(path: &str) -> Vec<String> {
    path.split('.').map(str::to_owned).collect()
}

fn compile_step(
    checker: &Checker<'_>,
    key: &str,
    spanned: &Spanned<raw::Step>,
    keys: &[&String],
    fixtures: &Path,
    fixture_cache: &mut HashMap<String, Bytes>,
) -> Result<Step, ScenarioError> {
    let step = spanned.get_ref();
    let span = spanned.span();
    let method = step
        .method
        .to_ascii_uppercase()
        .parse::<http::Method>()
        .map_err(|_| {
            checker.error(
                span.clone(),
                format!("step `{key}`: {:?} is not an HTTP method", step.method),
            )
        })?;
    let path =
        Template::parse(step.path.get_ref()).map_err(|e| checker.error(step.path.span(), e))?;
    // The expressions' own spaces (`${pick ids}`) are no part of the request line.
    check_request_path(step.path.get_ref())
        .map_err(|why| checker.error(step.path.span(), format!("step `{key}`: {why}")))?;
    let body = compile_body(checker, key, spanned, fixtures, fixture_cache)?;
    let on_status = compile_on_status(checker, key, step, keys)?;
    let track = match &step.track {
        None => None,
        Some(t) => Some(compile_track(checker, key, t)?),
    };
    let timeout = match &step.timeout {
        None => None,
        Some(text) => {
            let timeout = parse_duration(checker, text.span(), text.get_ref())?;
            if timeout.is_zero() {
                return Err(checker.error(
                    text.span(),
                    format!("step `{key}`: timeout must be above zero, e.g. \"30s\""),
                ));
            }
            Some(timeout)
        }
    };
    Ok(Step {
        key: key.to_owned(),
        method,
        name: display_name(
            step.name
                .clone()
                .unwrap_or_else(|| step.path.get_ref().clone()),
        ),
        path,
        headers: templates(checker, &step.headers)?,
        body,
        expect: step.expect.clone().unwrap_or_else(|| (100..400).collect()),
        follow_redirects: step.follow_redirects,
        timeout,
        extract: step
            .extract
            .iter()
            .map(|(k, v)| (k.clone(), field_path(v)))
            .collect(),
        append: step
            .append
            .iter()
            .map(|(k, v)| (k.clone(), field_path(v)))
            .collect(),
        on_status,
        track,
        think: match &step.think {
            Some(text) => Some(parse_duration(checker, text.span(), text.get_ref())?),
            None => None,
        },
    })
}

/// A step's body: at most one of `json`, `form` and `multipart`, or none.
fn compile_body(
    checker: &Checker<'_>,
    key: &str,
    spanned: &Spanned<raw::Step>,
    fixtures: &Path,
    fixture_cache: &mut HashMap<String, Bytes>,
) -> Result<Body, ScenarioError> {
    let step = spanned.get_ref();
    let bodies = [
        step.json.is_some(),
        step.form.is_some(),
        step.multipart.is_some(),
    ];
    if bodies.iter().filter(|b| **b).count() > 1 {
        return Err(checker.error(
            spanned.span(),
            format!("step `{key}`: use only one of json, form and multipart"),
        ));
    }
    Ok(if let Some(json) = &step.json {
        Body::Json(
            ValueTemplate::from_toml(json.get_ref()).map_err(|e| checker.error(json.span(), e))?,
        )
    } else if let Some(form) = &step.form {
        Body::Form(templates(checker, form)?)
    } else if let Some(parts) = &step.multipart {
        let mut compiled = Vec::new();
        for (field, part) in parts {
            compiled.push((
                field.clone(),
                compile_part(checker, part, fixtures, fixture_cache)?,
            ));
        }
        Body::Multipart(compiled)
    } else {
        Body::Empty
    })
}

/// One part of a multipart body: a text template, or a fixture file read once per scenario.
fn compile_part(
    checker: &Checker<'_>,
    part: &Spanned<raw::Part>,
    fixtures: &Path,
    fixture_cache: &mut HashMap<String, Bytes>,
) -> Result<MultipartPart, ScenarioError> {
    Ok(match part.get_ref() {
        raw::Part::Text(text) => {
            MultipartPart::Text(Template::parse(text).map_err(|e| checker.error(part.span(), e))?)
        }
        raw::Part::File {
            fixture,
            content_type,
            filename,
        } => {
            let bytes = match fixture_cache.get(fixture) {
                Some(bytes) => bytes.clone(),
                None => {
                    let path = fixtures.join(fixture);
                    let bytes = Bytes::from(std::fs::read(&path).map_err(|e| {
                        checker.error(part.span(), format!("fixture {} cannot be read ({e}): run `fixtures-gen --out {}` or pass --fixtures DIR", path.display(), fixtures.display()))
                    })?);
                    fixture_cache.insert(fixture.clone(), bytes.clone());
                    bytes
                }
            };
            MultipartPart::File {
                filename: filename.clone().unwrap_or_else(|| fixture.clone()),
                content_type: content_type.clone(),
                bytes,
            }
        }
    })
}

/// A step's `on_status` handlers: each an HTTP status and the index of another step.
fn compile_on_status(
    checker: &Checker<'_>,
    key: &str,
    step: &raw::Step,
    keys: &[&String],
) -> Result<Vec<(u16, usize)>, ScenarioError> {
    let mut on_status = Vec::new();
    for (status, target) in &step.on_status {
        let code: u16 = status
            .parse()
            .ok()
            .filter(|c| (100..600).contains(c))
            .ok_or_else(|| {
                checker.error(
                    target.span(),
                    format!("step `{key}`: on_status key {status:?} is not an HTTP status"),
                )
            })?;
        let index = keys
            .iter()
            .position(|k| *k == target.get_ref())
            .ok_or_else(|| {
                checker.error(
                    target.span(),
                    format!(
                        "step `{key}`: on_status names no step `{}`",
                        target.get_ref()
                    ),
                )
            })?;
        if keys[index] == key {
            return Err(checker.error(
                target.span(),
                format!("step `{key}`: on_status cannot call the step itself"),
            ));
        }
        on_status.push((code, index));
    }
    Ok(on_status)
}

/// A step's `track`: how to follow the job it creates (its status URL, fields and timing).
fn compile_track(
    checker: &Checker<'_>,
    key: &str,
    spanned: &Spanned<raw::Track>,
) -> Result<Track, ScenarioError> {
    let s = spanned.span();
    let raw = spanned.get_ref();
    if !(0.0..=1.0).contains(&raw.sample) {
        return Err(checker.error(s, format!("step `{key}`: track.sample must be from 0 to 1")));
    }
    check_request_path(&raw.poll)
        .map_err(|why| checker.error(s.clone(), format!("step `{key}`: track.poll: {why}")))?;
    let poll = Template::parse(&raw.poll).map_err(|e| checker.error(s.clone(), e))?;
    let every = parse_duration(checker, s.clone(), &raw.every)?;
    let max_every = parse_duration(checker, s.clone(), &raw.max_every)?;
    if every.is_zero() {
        return Err(checker.error(s, format!("step `{key}`: track.every must be above zero")));
    }
    Ok(Track {
        job: raw.job.as_str().into(),
        poll,
        name: display_name(
            raw.name
                .clone()
                .unwrap_or_else(|| raw.poll.replace("${id}", "[id]")),
        ),
        id: field_path(&raw.id),
        field: field_path(&raw.field),
        done: raw.done.clone(),
        failed: raw.failed.clone(),
        every,
        max_every: max_every.max(every),
        timeout: parse_duration(checker, s, &raw.timeout)?,
        sample: raw.sample,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_video.mp4"), b"video").unwrap();
        std::fs::write(dir.path().join("test_audio.mp3"), b"audio").unwrap();
        dir
    }

    #[test]
    fn a_literal_dollar_in_a_value_is_sent_as_one() {
        let value: toml::Value = toml::from_str::<toml::Table>(
            "v = { sh = \"echo ${$}{HOME}\", list = [\"${$}{a}\", \"plain\"] }",
        )
        .unwrap()["v"]
            .clone();
        let template = ValueTemplate::from_toml(&value).unwrap();
        let vars = std::collections::HashMap::new();
        let mut seq = 0;
        let mut cx = template::Context {
            vars: &vars,
            user: "1",
            run: "r",
            seq: &mut seq,
        };
        assert_eq!(
            template.eval(&mut cx).unwrap(),
            serde_json::json!({"sh": "echo ${HOME}", "list": ["${a}", "plain"]})
        );
    }

    #[test]
    fn constant_throughput_is_a_pacing_and_load_is_the_open_model() {
        let dir = fixtures();
        let text = |wait: &str, load: &str| {
            format!(
                "{load}\n[[users]]\nname = \"U\"\nwait = {wait}\narrival_rate = \"2/s\"\n\
                 [[users.tasks]]\nrun = [\"get\"]\n[users.steps.get]\npath = \"/\"\n"
            )
        };
        let scenario = parse(
            &text(
                "{ constant_throughput = 4 }",
                "[load]\narrival_rate = \"30/m\"\nstages = [\"10s:5/s\"]\nmax_users = 8",
            ),
            "t.toml",
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            scenario.users[0].wait,
            Wait::Pacing(Duration::from_millis(250))
        );
        assert_eq!(
            scenario.users[0].arrival_rate,
            Some(crate::arrival::Rate::per_second(2))
        );
        let load = scenario.load.unwrap();
        assert_eq!(load.rate, Some(crate::arrival::Rate::per_minute(30)));
        assert_eq!((load.stages.len(), load.max_users), (1, Some(8)));
        let bad = parse(
            &text("{ constant = \"0s\" }", "[load]\narrival_rate = \"5/h\""),
            "t.toml",
            dir.path(),
        )
        .unwrap_err();
        assert!(
            bad.message.contains("[load] arrival_rate") && bad.message.contains("/s or /m"),
            "{}",
            bad.message
        );
        let zero = parse(
            &text("{ constant_throughput = 0 }", ""),
            "t.toml",
            dir.path(),
        );
        assert!(zero.unwrap_err().message.contains("above 0"));
    }

    #[test]
    fn paths_may_hold_functions_with_spaces_but_not_spaces() {
        let dir = fixtures();
        let file = |path: &str| {
            format!(
                "[[users]]\nname = \"U\"\nvars = {{ ids = [1, 2] }}\n[[users.tasks]]\nrun = [\"a\"]\n\
                 [users.steps.a]\npath = \"{path}\"\n"
            )
        };
        for fine in ["/a/${pick ids}", "/a/${randint 1 5}?k=${uuid}"] {
            parse(&file(fine), "t.toml", dir.path()).unwrap();
        }
        let spaced = parse(&file("/a b/${pick ids}"), "t.toml", dir.path()).unwrap_err();
        assert!(spaced.to_string().contains("%20"), "{spaced}");
    }

    #[test]
    fn a_step_may_set_its_own_timeout() {
        let dir = fixtures();
        let file = |timeout: &str| {
            format!(
                "[[users]]\nname = \"U\"\n[[users.tasks]]\nrun = [\"a\"]\n[users.steps.a]\npath = \"/a\"\n{timeout}"
            )
        };
        let parsed = |timeout: &str| parse(&file(timeout), "t.toml", dir.path());
        let step = |timeout: &str| parsed(timeout).unwrap().users[0].steps[0].timeout;
        assert_eq!(step(""), None, "--request-timeout then");
        assert_eq!(
            step("timeout = \"1500ms\""),
            Some(Duration::from_millis(1500))
        );
        let zero = parsed("timeout = \"0s\"").unwrap_err().to_string();
        assert!(zero.contains("timeout must be above zero"), "{zero}");
        let bad = parsed("timeout = \"soon\"").unwrap_err().to_string();
        assert!(bad.contains("soon") || bad.contains("30s"), "{bad}");
    }

    #[test]
    fn the_builtin_scenario_parses() {
        let dir = fixtures();
        let scenario = parse(BUILTIN, BUILTIN_NAME, dir.path()).unwrap();
        let names: Vec<&str> = scenario.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["FFmpegAPIUser", "CreateTaskUser"]);
        assert_eq!(
            fixtures_needed(BUILTIN),
            ["test_audio.mp3", "test_video.mp4"]
        );
    }

    #[test]
    fn the_example_scenarios_parse() {
        let dir = fixtures();
        for (name, text) in [
            (
                "power_burst.toml",
                include_str!("../../examples/power_burst.toml"),
            ),
            (
                "saturate.toml",
                include_str!("../../../../bench/saturate.toml"),
            ),
            ("idle.toml", include_str!("../../../../bench/idle.toml")),
        ] {
            parse(text, name, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        }
        let step = include_str!("../../examples/shape_step.toml");
        let shape = parse_shape(step, "shape_step.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shape.length(), Duration::from_secs(12));
    }

    /// What `scenario check` once passed, then failed every request or let the server read an
    /// injected one.
    #[test]
    fn refuses_what_can_never_work() {
        let dir = fixtures();
        let step = |extra: &str| {
            format!(
                "[[users]]\nname = \"A\"\n[[users.tasks]]\nrun = [\"s\"]\n[users.steps.s]\n{extra}\n"
            )
        };
        let cases = [
            (step("path = \"/a b\""), "write a space as %20"),
            (step("path = \"/a\\r\\nX: y\""), "no line breaks"),
            (step("path = \"/\"\nheaders = { \"Bad Header\" = \"x\" }"), "not a valid HTTP header name"),
            (step("path = \"/\"\nheaders = { \"\" = \"x\" }"), "not a valid HTTP header name"),
            (step("path = \"/\"\nheaders = { X-A = \"1\\r\\nInjected: 1\" }"), "control character"),
            (step("path = \"/\"\nheaders = { Host = \"evil\" }"), "set by loadgen itself"),
            (
                "[[users]]\nname = \"A\"\nsecret_headers = [\"X Key\"]\n[[users.tasks]]\nrun = [\"s\"]\n[users.steps.s]\npath = \"/\"\n".to_owned(),
                "secret_headers: \"X Key\" is not a valid HTTP header name",
            ),
            (step("path = \"/\"\nheaders = { Content-Length = \"5\" }"), "set by loadgen itself"),
            (step("path = \"/\"\nheaders = { Transfer-Encoding = \"chunked\" }"), "set by loadgen itself"),
            (format!("health = \"no-slash\"\n{}", step("path = \"/\"")), "must start with '/'"),
            (format!("health = \"\"\n{}", step("path = \"/\"")), "must start with '/'"),
            (format!("health = \"/${{user}}\"\n{}", step("path = \"/\"")), "takes no variables"),
            (
                "[[users]]\nname = \"A\"\n[[users.tasks]]\nweight = 2147483648\nrun = [\"s\"]\n[[users.tasks]]\nweight = 2147483648\nrun = [\"s\"]\n[users.steps.s]\npath = \"/\"\n".to_owned(),
                "add up to 4294967296",
            ),
            (
                "[[users]]\nname = \"A\"\n[[users.tasks]]\nrun = [{ step = \"s\", repeat = -1 }]\n[users.steps.s]\npath = \"/\"\n".to_owned(),
                "repeat = -1: a step runs 1 or more times",
            ),
        ];
        for (text, message) in cases {
            let error = parse(&text, "s.toml", dir.path())
                .err()
                .unwrap_or_else(|| panic!("accepted:\n{text}"));
            assert!(error.message.contains(message), "{text}\n{error}");
        }
    }

    #[test]
    fn shape_stages_are_read_and_bad_ones_point_at_their_line() {
        use crate::shape::Shape;
        let dir = fixtures();
        let user = "[[users]]\nname = \"A\"\n[[users.tasks]]\nrun = [\"s\"]\n[users.steps.s]\npath = \"/\"\n";
        let good = format!(
            "{user}[[shape]]\nduration = \"2s\"\nusers = 2\nspawn_rate = 10\n\
             [[shape]]\nduration = 1.5\nusers = 0\nspawn_rate = 5\n"
        );
        let scenario = parse(&good, "s.toml", dir.path()).unwrap();
        let Some(Shape::Users(stages)) = scenario.shape else {
            panic!("a users shape: {:?}", scenario.shape);
        };
        assert_eq!(stages.len(), 2);
        assert_eq!(stages[1].duration, Duration::from_millis(1_500));
        // Lines 7-10 are the first stage; the second, the bad one, is lines 12-15.
        let cases = [
            (
                "duration = \"1s\"\nusers = 2\narrival_rate = \"1/s\"",
                "shape stage 2: users and arrival_rate both",
            ),
            ("users = 2\nspawn_rate = 1\n", "shape stage 2: no duration"),
            (
                "duration = \"1s\"\nusers = -2\nspawn_rate = 1",
                "shape stage 2: users = -2",
            ),
            (
                "duration = -3\nusers = 2\nspawn_rate = 1",
                "shape stage 2: duration = -3",
            ),
            (
                "duration = \"1s\"\narrival_rate = \"5/h\"",
                "shape stage 2: arrival_rate",
            ),
            (
                "duration = \"1s\"\nusers = 2\nspwan_rate = 1",
                "unknown field `spwan_rate`",
            ),
        ];
        for (second, message) in cases {
            let first = "duration = \"1s\"\nusers = 1\nspawn_rate = 1";
            let text = format!("{user}[[shape]]\n{first}\n\n[[shape]]\n{second}\n");
            let error = parse(&text, "s.toml", dir.path()).unwrap_err();
            assert!(error.message.contains(message), "{text}\n{error}");
            assert!(
                (12..=15).contains(&error.line),
                "line {} is not the second stage's (12-15):\n{text}\n{error}",
                error.line
            );
        }
    }

    #[test]
    fn errors_point_at_the_line() {
        let dir = fixtures();
        let cases = [
            (
                "[[users]]\nname = \"A\"\n[[users.tasks]]\nrun = [\"nope\"]\n",
                4,
                "no step `nope`",
            ),
            (
                "[[users]]\nname = \"A\"\nwieght = 3\n",
                3,
                "unknown field `wieght`",
            ),
            (
                "[[users]]\nname = \"A\"\n[[users.tasks]]\nrun = [\"s\"]\n[users.steps.s]\npath = \"x\"\n",
                6,
                "must start with '/'",
            ),
            (
                "[[users]]\nname = \"A\"\n[[users.tasks]]\nrun = [\"s\"]\n[users.steps.s]\npath = \"/${oops\"\n",
                6,
                "closing",
            ),
            (
                "[[users]]\nname = \"A\"\nwait = { between = [\"3s\", \"x\"] }\n[[users.tasks]]\nrun = [\"s\"]\n[users.steps.s]\npath = \"/\"\n",
                3,
                "not a duration",
            ),
            (
                "[[users]]\nname = \"A\"\n[[users.tasks]]\nrun = [\"s\"]\n[users.steps.s]\npath = \"/\"\nmultipart = { file = { fixture = \"missing.mp4\", content_type = \"video/mp4\" } }\n",
                7,
                "fixtures-gen",
            ),
            ("[[users]\n", 1, ""),
        ];
        for (text, line, message) in cases {
            let error = parse(text, "s.toml", dir.path()).unwrap_err();
            assert_eq!(error.line, line, "{error}");
            assert!(error.message.contains(message), "{error}");
            assert!(
                error.to_string().starts_with(&format!("s.toml:{line}:")),
                "{error}"
            );
        }
    }
}
