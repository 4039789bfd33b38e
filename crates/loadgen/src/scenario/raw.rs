//! The scenario file as written: serde structures that mirror the TOML, with spans kept where a
//! later check needs to point at a line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Path probed before the run (`GET`, must answer 2xx).
    #[serde(default)]
    pub health: Option<Spanned<String>>,
    /// Send `Accept-Encoding: gzip` and decode gzip answers.
    #[serde(default)]
    pub gzip: bool,
    #[serde(default, rename = "users")]
    pub users: Vec<Spanned<User>>,
    /// The open model, as the command line's --arrival-rate and its companions.
    #[serde(default)]
    pub load: Option<Spanned<Load>>,
    /// `[[shape]]` stages (Locust's `LoadTestShape`).
    #[serde(default)]
    pub shape: Vec<Spanned<ShapeStage>>,
}

/// A `--shape` file: only `[[shape]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeFile {
    #[serde(default)]
    pub shape: Vec<Spanned<ShapeStage>>,
}

/// One `[[shape]]` table: a duration with users and a spawn rate, or an arrival rate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeStage {
    /// Seconds, or a duration string (`"30s"`, `"2m"`).
    #[serde(default)]
    pub duration: Option<Spanned<toml::Value>>,
    // Signed, so that a negative count gets a plain message rather than serde's.
    #[serde(default)]
    pub users: Option<i64>,
    #[serde(default)]
    pub spawn_rate: Option<f64>,
    #[serde(default)]
    pub arrival_rate: Option<String>,
}

/// `[load]`: the open model's settings; the command line's flags beat them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Load {
    #[serde(default)]
    pub arrival_rate: Option<String>,
    #[serde(default)]
    pub stages: Option<Stages>,
    #[serde(default)]
    pub max_users: Option<u64>,
    #[serde(default)]
    pub pre_allocate: Option<u64>,
}

/// Stages as one string (`"30s:50/s,2m:500/s"`) or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stages {
    Joined(String),
    Listed(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub fixed_count: Option<u32>,
    /// This type's own arrival rate in the open model (`"20/s"`).
    #[serde(default)]
    pub arrival_rate: Option<Spanned<String>>,
    #[serde(default)]
    pub wait: Option<Spanned<Wait>>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Headers that carry credentials beyond the known ones (Authorization, Cookie, X-Api-Key,
    /// ...): masked in logs and not sent on to another host on a redirect.
    #[serde(default)]
    pub secret_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub on_start: Vec<Spanned<StepRef>>,
    #[serde(default)]
    pub on_stop: Vec<Spanned<StepRef>>,
    #[serde(default)]
    pub tasks: Vec<Spanned<Task>>,
    #[serde(default)]
    pub steps: BTreeMap<String, Spanned<Step>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    #[serde(default)]
    pub between: Option<[String; 2]>,
    #[serde(default)]
    pub constant: Option<String>,
    #[serde(default)]
    pub pacing: Option<String>,
    /// Locust's `constant_throughput`: task runs per second per user (pacing of 1/N s).
    #[serde(default)]
    pub constant_throughput: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StepRef {
    Name(String),
    Repeated {
        step: String,
        // Signed, so that a negative count gets a plain message rather than serde's.
        #[serde(default = "once")]
        repeat: i64,
        /// Skip the step when the user has this variable set (e.g. from `--user-data`).
        #[serde(default)]
        unless: Option<String>,
    },
}

fn once() -> i64 {
    1
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub tags: Vec<String>,
    pub run: Vec<Spanned<StepRef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default = "get")]
    pub method: String,
    pub path: Spanned<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub json: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub form: Option<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    pub multipart: Option<BTreeMap<String, Spanned<Part>>>,
    #[serde(default)]
    pub expect: Option<Vec<u16>>,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// This step's request timeout, instead of `--request-timeout`.
    #[serde(default)]
    pub timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
    #[serde(default)]
    pub append: BTreeMap<String, String>,
    #[serde(default)]
    pub on_status: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub track: Option<Spanned<Track>>,
    /// The user's pause after this step (think time, e.g. from a recording).
    #[serde(default)]
    pub think: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}

fn get() -> String {
    "GET".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Part {
    Text(String),
    File {
        fixture: String,
        content_type: String,
        #[serde(default)]
        filename: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    /// Job kind in the report, e.g. `join`.
    pub job: String,
    /// Status URL, e.g. `/api/v1/tasks/${id}`; `${id}` is the created job's id field.
    pub poll: String,
    /// Display name of the polls.
    #[serde(default)]
    pub name: Option<String>,
    /// Field of the creation answer that holds the id.
    #[serde(default = "id")]
    pub id: String,
    /// Field of the status answer that holds the status.
    #[serde(default = "status")]
    pub field: String,
    #[serde(default = "completed")]
    pub done: Vec<String>,
    #[serde(default = "failed")]
    pub failed: Vec<String>,
    #[serde(default = "every")]
    pub every: String,
    #[serde(default = "max_every")]
    pub max_every: String,
    #[serde(default = "timeout")]
    pub timeout: String,
    /// Share of created jobs that are followed, 0 to 1.
    #[serde(default = "all")]
    pub sample: f64,
}

fn id() -> String {
    "id".into()
}
fn status() -> String {
    "status".into()
}
fn completed() -> Vec<String> {
    vec!["completed".into()]
}
fn failed() -> Vec<String> {
    vec!["failed".into(), "cancelled".into()]
}
fn every() -> String {
    "500ms".into()
}
fn max_every() -> String {
    "10s".into()
}
fn timeout() -> String {
    "120s".into()
}
fn all() -> f64 {
    1.0
}
