//! A virtual user: runs its type's `on_start` steps once, then picks weighted tasks forever,
//! waiting between them, on its own connection. Everything it measures goes to its thread's
//! stats shard.

mod pace;
mod poller;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use rand::RngExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::http::{Answer, Connection, HttpError, MultipartField, Options, Payload, Target};
use crate::scenario::template::{Context, EvalError};
use crate::scenario::{Body, MultipartPart, Step, StepRef, Track, UserType, Wait};
use crate::stats::overlap::StartupWindow;
use crate::stats::{
    self, Failure, FailureKind, InFlight, Key, Phase, PollBudget, RunClock, Sample,
};
pub use pace::JobTypes;
use poller::{Followed, JobPoller};

/// What every user of a run shares.
pub struct Shared {
    /// The host.
    pub target: Rc<Target>,
    /// The run's clock.
    pub clock: RunClock,
    /// The run id for `${run}`.
    pub run_id: Arc<str>,
    /// Timeout, size limits and encodings of every connection.
    pub options: Options,
    /// Overrides every track's `sample`.
    pub job_sample: Option<f64>,
    /// Redirects followed for one request; one more fails it (`--max-redirects`).
    pub max_redirects: usize,
    /// The run's start-up requests in flight, across threads.
    pub startup_window: Arc<StartupWindow>,
    /// The run's requests and job polls, across threads: polls stay within a tenth of them.
    pub poll_budget: Arc<PollBudget>,
    /// When the jobs of each type last ended, across threads: the pace of their polls.
    pub job_types: Arc<JobTypes>,
    /// `--latency-correction`: a paced user's requests also count the starts they delayed.
    pub latency_correction: bool,
    /// `--user-data`: each user's row of variables.
    pub user_data: Option<Arc<crate::scenario::data::UserData>>,
}

/// The keys of one user type's steps, built once per thread so recording never formats a string.
pub struct StepKeys {
    startup: Vec<Key>,
    steady: Vec<Key>,
    polls: Vec<Option<Key>>,
}

impl StepKeys {
    /// Keys for every step of `user_type`.
    pub fn new(user_type: &UserType) -> Self {
        let key = |phase, step: &Step| Key {
            phase,
            method: step.method.as_str().into(),
            name: step.name.clone(),
        };
        Self {
            startup: user_type
                .steps
                .iter()
                .map(|s| key(Phase::Startup, s))
                .collect(),
            steady: user_type
                .steps
                .iter()
                .map(|s| key(Phase::Steady, s))
                .collect(),
            polls: user_type
                .steps
                .iter()
                .map(|s| {
                    s.track.as_ref().map(|t| Key {
                        phase: Phase::Poll,
                        method: "GET".into(),
                        name: t.name.clone(),
                    })
                })
                .collect(),
        }
    }
}

/// One virtual user.
pub struct VirtualUser {
    user_type: Arc<UserType>,
    keys: Rc<StepKeys>,
    shared: Rc<Shared>,
    number: String,
    vars: HashMap<String, Value>,
    seq: u64,
    connection: Connection,
    /// Variables some step of this user tried to extract: a header that needs one of them and
    /// finds it unset is a missing value, not a header to leave out before login.
    attempted: HashSet<String>,
    /// Cookies the API set, sent back by domain and path rules, as a requests Session does.
    cookies: cookie_store::CookieStore,
    /// The open model's scheduled instant of the iteration whose first request is next.
    intended: Option<Instant>,
    /// The pacing whose missed starts are recorded (`--latency-correction`, closed model).
    correct_for: Option<std::time::Duration>,
    /// Running its `on_stop`: its requests are no start-up work beside the steady ones.
    stopping: bool,
}

enum Outcome {
    Passed,
    Failed,
    Handled(usize),
}

impl VirtualUser {
    /// User number `number` (unique in the run) of `user_type`.
    pub fn new(
        user_type: Arc<UserType>,
        keys: Rc<StepKeys>,
        shared: Rc<Shared>,
        number: u64,
    ) -> Self {
        let connection = Connection::new(shared.target.clone(), shared.options);
        // The user's row of --user-data comes first: `vars` fill in only what it leaves unset.
        let vars = shared
            .user_data
            .as_ref()
            .map(|data| data.row(number).iter().cloned().collect())
            .unwrap_or_default();
        Self {
            user_type,
            keys,
            shared,
            number: number.to_string(),
            vars,
            seq: 0,
            connection,
            attempted: HashSet::new(),
            cookies: cookie_store::CookieStore::default(),
            intended: None,
            correct_for: None,
            stopping: false,
        }
    }

    /// Runs until told to stop (see [`StopSignal`]), then runs its type's `on_stop` steps and
    /// ends: the closed model's user.
    ///
    /// A future holds room for the largest state it can be in (a request being sent), and
    /// this one is held by its user through every wait: a user that waits gets each
    /// iteration boxed for its own time, so what it holds while it waits is this loop's state
    /// alone (its task was 7.8 KB with the iteration inline, issue 31). A user that does not
    /// wait keeps it inline and allocates nothing per iteration.
    pub fn run(self, signal: StopSignal) -> Pin<Box<dyn Future<Output = ()>>> {
        if self.user_type.wait.longest() >= RELEASE_BUFFERS_AFTER {
            Box::pin(Box::new(self).run_with::<Boxed>(signal))
        } else {
            Box::pin(Box::new(self).run_with::<Inline>(signal))
        }
    }

    /// `self` boxed: an async fn's future keeps its arguments apart from the locals they are
    /// moved into (rust-lang/rust#62958), so a user by value would take its room twice.
    async fn run_with<I: Iterate>(mut self: Box<Self>, signal: StopSignal) {
        // Once per user: boxed, so that it takes no room in the loop's future. A stop that lets
        // the task at hand finish lets on_start finish too, as Locust's.
        let started = tokio::select! {
            biased;
            () = signal.cut.cancelled() => false,
            started = Box::pin(self.start(&signal.cut)) => started,
        };
        if started {
            if let (Wait::Pacing(period), true) =
                (self.user_type.wait, self.shared.latency_correction)
            {
                self.correct_for = Some(period);
            }
            tokio::select! {
                biased;
                () = signal.cut.cancelled() => {}
                () = self.tasks::<I>(&signal.finish) => {}
            }
        }
        // Locust runs on_stop however the user was stopped, even during on_start.
        Box::pin(self.stop()).await;
    }

    /// Picks and runs tasks, waiting between them, until `finish` (checked between tasks).
    async fn tasks<I: Iterate>(&mut self, finish: &CancellationToken) {
        while !finish.is_cancelled() {
            let started = Instant::now();
            let task = self.pick_task();
            I::iterate(self, task).await;
            let wait = match self.user_type.wait {
                Wait::Constant(d) => d,
                Wait::Between(lo, hi) if hi > lo => rand::rng().random_range(lo..=hi),
                Wait::Between(lo, _) => lo,
                Wait::Pacing(period) => period.saturating_sub(started.elapsed()),
            };
            if wait.is_zero() {
                // Let the other users of this thread run even when no one waits.
                tokio::task::yield_now().await;
            } else {
                if wait >= RELEASE_BUFFERS_AFTER {
                    self.connection.release_buffers();
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = finish.cancelled() => return,
                }
            }
        }
    }

    /// Runs the type's `on_stop` steps, within [`ON_STOP_LIMIT`] (a request cut off there
    /// counts as in flight at the stop). Their requests are the user's own start-up and stop
    /// work, reported with `on_start`'s apart from the steady state.
    pub async fn stop(&mut self) {
        let user_type = self.user_type.clone();
        if user_type.on_stop.is_empty() {
            return;
        }
        self.stopping = true;
        let steps = async {
            for step_ref in &user_type.on_stop {
                self.run_ref(step_ref, Phase::Startup).await;
            }
        };
        let _ = tokio::time::timeout(ON_STOP_LIMIT, steps).await;
    }

    /// Sets the user's variables and runs its `on_start` steps; `false` when `stop` came
    /// first.
    pub async fn start(&mut self, stop: &CancellationToken) -> bool {
        let user_type = self.user_type.clone();
        for (name, template) in &user_type.vars {
            if self.vars.contains_key(name) {
                continue; // set by the user's --user-data row
            }
            let mut cx = Context {
                vars: &self.vars,
                user: &self.number,
                run: &self.shared.run_id,
                seq: &mut self.seq,
            };
            match template.eval(&mut cx) {
                Ok(value) => {
                    self.vars.insert(name.clone(), value);
                }
                Err(error) => {
                    stats::record_exception(format!("{}: vars.{name}: {error}", user_type.name))
                }
            }
        }
        for step_ref in &user_type.on_start {
            if stop.is_cancelled() {
                return false;
            }
            self.run_ref(step_ref, Phase::Startup).await;
        }
        true
    }

    /// A task of this user's type, picked by weight.
    pub fn pick_task(&self) -> usize {
        let tasks = &self.user_type.tasks;
        let total_weight: u32 = tasks.iter().map(|t| t.weight).sum();
        let mut pick = rand::rng().random_range(0..total_weight.max(1));
        tasks
            .iter()
            .position(|t| {
                if pick < t.weight {
                    true
                } else {
                    pick -= t.weight;
                    false
                }
            })
            .unwrap_or(0)
    }

    /// Runs task `task` once. With `intended` (the open model's scheduled instant), its first
    /// request is timed from that instant, so that waiting for a free user counts (its
    /// service time, from the send, is kept apart).
    pub async fn iteration(&mut self, task: usize, intended: Option<Instant>) {
        let user_type = self.user_type.clone();
        let Some(task) = user_type.tasks.get(task) else {
            return;
        };
        self.intended = intended;
        for step_ref in &task.run {
            self.run_ref(step_ref, Phase::Steady).await;
        }
        self.intended = None;
    }

    async fn run_ref(&mut self, step_ref: &StepRef, phase: Phase) {
        if let Some(variable) = &step_ref.unless
            && self.vars.contains_key(&**variable)
        {
            return;
        }
        let think = self.user_type.steps[step_ref.step].think;
        for _ in 0..step_ref.repeat {
            if let Outcome::Handled(handler) = self.run_step(step_ref.step, phase, true).await {
                // e.g. log in again on 401, then retry the step once.
                Box::pin(self.run_step(handler, phase, false)).await;
                Box::pin(self.run_step(step_ref.step, phase, false)).await;
            }
            if let Some(pause) = think {
                tokio::time::sleep(pause).await;
            }
        }
    }

    async fn run_step(&mut self, index: usize, phase: Phase, may_handle: bool) -> Outcome {
        let user_type = self.user_type.clone();
        let keys = self.keys.clone();
        let shared = self.shared.clone();
        let step = &user_type.steps[index];
        let key = match phase {
            Phase::Startup => &keys.startup[index],
            // Steps run at start-up or as tasks; polls are sent by the job pollers alone.
            Phase::Steady | Phase::Poll => &keys.steady[index],
        };
        let request = match self.build(step) {
            Ok(request) => request,
            Err(error) => {
                let message = format!("{} step `{}`: {error}", user_type.name, step.key);
                match error {
                    BuildError::Missing(_) => stats::record_missing_value(message),
                    BuildError::Invalid(_) => stats::record_exception(message),
                }
                return Outcome::Failed;
            }
        };
        self.attempted
            .extend(step.extract.iter().map(|(var, _)| var.clone()));
        // Dropped with its user (the run or `--stop-timeout` ended), it counts the request as
        // in flight at the stop, so that the server's count can be reconciled.
        let in_flight = InFlight::start(key, self.connection.sends(), &shared.poll_budget);
        let started = in_flight.started();
        let window = &self.shared.startup_window;
        let startup_request =
            (phase == Phase::Startup && !self.stopping).then(|| StartupWindow::enter(window));
        let steady_start = (phase == Phase::Steady).then(|| window.steady_start());
        // The open model times an iteration's first request from its scheduled instant.
        let intended = self.intended.take().filter(|_| phase == Phase::Steady);
        let answer = self.exchange(step, request).await;
        let retries = in_flight.answered();
        drop(startup_request);
        let latency_us = self.response_time(started, intended, steady_start);
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                stats::record(
                    &self.shared.clock,
                    Sample {
                        key,
                        latency_us,
                        bytes: 0,
                        status: None,
                        error: Some(error.into()),
                        timings: None,
                        retries,
                    },
                );
                return Outcome::Failed;
            }
        };
        let (error, handler) = self.judge(step, &answer, may_handle);
        let failed = error.is_some();
        stats::record(
            &self.shared.clock,
            Sample {
                key,
                latency_us,
                bytes: answer.body.len() as u64,
                status: Some(answer.status),
                error,
                timings: Some(answer.timings),
                retries,
            },
        );
        if let (Some(period), Phase::Steady) = (self.correct_for, phase) {
            stats::record_missed(key, latency_us, period.as_micros() as u64);
        }
        if let Some(handler) = handler {
            stats::record_handled(&step.name, answer.status);
            return Outcome::Handled(handler);
        }
        if failed {
            return Outcome::Failed;
        }
        if let Some(track) = &step.track {
            let sample = self.shared.job_sample.unwrap_or(track.sample);
            if sample > 0.0 && rand::rng().random::<f64>() < sample {
                self.follow_job(index, track, &answer.body);
            }
        }
        Outcome::Passed
    }

    /// A request's response time, µs: from the open model's scheduled instant when it has
    /// one, else from its send. A steady request's service time (from the send) and its
    /// overlap with start-up work are recorded on the way.
    fn response_time(
        &self,
        started: Instant,
        intended: Option<Instant>,
        steady_start: Option<crate::stats::overlap::SteadyStart>,
    ) -> u64 {
        let service_us = started.elapsed().as_micros() as u64;
        let latency_us = intended.map_or(service_us, |at| at.elapsed().as_micros() as u64);
        if let Some(start) = steady_start {
            stats::record_service(service_us);
            let overlapped = self.shared.startup_window.overlapped(start);
            stats::record_steady_overlap(latency_us, overlapped);
        }
        latency_us
    }

    /// What an answer to `step` means: a failure (a status not expected, or a value the step
    /// extracts missing), or the step's handler of its status (e.g. log in again on 401),
    /// when it has one and `may_handle`.
    fn judge(
        &mut self,
        step: &Step,
        answer: &Answer,
        may_handle: bool,
    ) -> (Option<Failure>, Option<usize>) {
        if step.expect.contains(&answer.status) {
            let missing = self.extract(step, &answer.body).err();
            let error = missing.map(|message| Failure {
                kind: FailureKind::Content,
                message,
            });
            return (error, None);
        }
        let handler = step
            .on_status
            .iter()
            .find(|(s, _)| *s == answer.status)
            .map(|(_, h)| *h);
        match handler {
            Some(handler) if may_handle => (None, Some(handler)),
            _ => (Some(status_error(answer.status, &answer.body)), None),
        }
    }

    /// Sends the step's request, following redirects as Locust's HttpUser does: up to
    /// `--max-redirects` hops, and one more redirect fails the request (a loop is no success);
    /// 303 (and 301 or 302 to a POST) turns into a GET without a body; credentials are not
    /// carried to another origin. The caller records one request.
    async fn exchange(&mut self, step: &Step, request: Built) -> Result<Answer, HttpError> {
        let Built {
            path,
            mut headers,
            payload,
        } = request;
        // The URL is spelled out only when cookies or a redirect need it: not on the hot path.
        let shared = self.shared.clone();
        let first_url = || format!("{}{path}", shared.target.origin());
        let with_cookies = self.with_cookies(first_url, &headers);
        let timeout = step.timeout.unwrap_or(shared.options.timeout);
        // One deadline for the request and every redirect it follows, as requests' and k6's
        // timeouts: a chain of slow hops is one slow request.
        let deadline = Instant::now() + timeout;
        let mut answer = self
            .connection
            .send_within(
                &step.method,
                &path,
                with_cookies.as_ref().unwrap_or(&headers),
                &payload,
                timeout,
            )
            .await?;
        self.keep_cookies(first_url, &answer);
        if !step.follow_redirects || !is_redirect(answer.status) {
            return Ok(answer);
        }
        let mut url = first_url();
        let mut method = step.method.clone();
        let mut payload = payload;
        let mut elsewhere: Option<Connection> = None;
        let mut hops = 0;
        while is_redirect(answer.status) {
            let Some(location) = answer.location.take() else {
                break;
            };
            if hops == shared.max_redirects {
                return Err(HttpError::TooManyRedirects(hops));
            }
            hops += 1;
            let next = url::Url::parse(&url)
                .and_then(|base| base.join(&location))
                .map_err(|_| {
                    HttpError::Protocol(format!(
                        "redirect to {:?}, which is not a URL",
                        common::redact::reference(&location)
                    ))
                })?;
            if answer.status == 303
                || (matches!(answer.status, 301 | 302) && method == http::Method::POST)
            {
                if method != http::Method::HEAD {
                    method = http::Method::GET;
                }
                payload = Payload::default();
            }
            let origin = next.origin().ascii_serialization();
            let next_path = match next.query() {
                Some(query) => format!("{}?{query}", next.path()),
                None => next.path().to_owned(),
            };
            url = next.to_string();
            if origin != self.shared.target.origin() {
                // Credentials stay with the origin they were given for: Authorization, a
                // Cookie the scenario set (the jar adds the ones its rules give the new
                // host), X-Api-Key and whatever the scenario marks secret.
                headers.retain(|(name, _)| !self.user_type.is_secret_header(name.as_str()));
            }
            let with_cookies = self.with_cookies(|| url.clone(), &headers);
            let connection = self.connection_for(&origin, &mut elsewhere).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HttpError::Timeout(timeout));
            }
            answer = connection
                .send_within(
                    &method,
                    &next_path,
                    with_cookies.as_ref().unwrap_or(&headers),
                    &payload,
                    left,
                )
                .await
                .map_err(|error| match error {
                    // Named by the request's whole timeout, not by what was left of it.
                    HttpError::Timeout(_) => HttpError::Timeout(timeout),
                    other => other,
                })?;
            self.keep_cookies(|| url.clone(), &answer);
        }
        Ok(answer)
    }

    /// The connection to `origin`: the user's own, or one kept for the other origin a
    /// redirect leads to (made when the origin changes).
    async fn connection_for<'a>(
        &'a mut self,
        origin: &str,
        elsewhere: &'a mut Option<Connection>,
    ) -> Result<&'a mut Connection, HttpError> {
        if origin == self.shared.target.origin() {
            return Ok(&mut self.connection);
        }
        match elsewhere.take() {
            Some(c) if c.target().origin() == origin => Ok(elsewhere.insert(c)),
            _ => {
                let target = Target::resolve(origin, self.shared.target.tls.as_ref())
                    .await
                    .map_err(|e| HttpError::Connection(format!("redirect: {e}")))?;
                Ok(elsewhere.insert(
                    Connection::new(Rc::new(target), self.shared.options)
                        .sharing_sends(self.connection.sends()),
                ))
            }
        }
    }

    /// The headers plus the jar's `Cookie` for `url`; `None` when the jar has none for it (the
    /// common case costs no URL parse).
    fn with_cookies(
        &self,
        url: impl FnOnce() -> String,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Option<Vec<(HeaderName, HeaderValue)>> {
        self.cookies.iter_any().next()?;
        let url = url::Url::parse(&url()).ok()?;
        let cookie = self
            .cookies
            .get_request_values(&url)
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let value = HeaderValue::from_str(&cookie)
            .ok()
            .filter(|_| !cookie.is_empty())?;
        let mut with = headers.to_vec();
        with.push((http::header::COOKIE, value));
        Some(with)
    }

    fn keep_cookies(&mut self, url: impl FnOnce() -> String, answer: &Answer) {
        if answer.set_cookies.is_empty() {
            return;
        }
        if let Ok(url) = url::Url::parse(&url()) {
            for set_cookie in &answer.set_cookies {
                // A cookie the rules refuse (another domain, a bad attribute) is dropped, as
                // browsers and requests drop it.
                let _ = self.cookies.parse(set_cookie, &url);
            }
        }
    }

    fn build(&mut self, step: &Step) -> Result<Built, BuildError> {
        let user_type = self.user_type.clone();
        let mut cx = Context {
            vars: &self.vars,
            user: &self.number,
            run: &self.shared.run_id,
            seq: &mut self.seq,
        };
        let path = step
            .path
            .render_url(&mut cx)
            .map_err(BuildError::eval(""))?;
        let path = format!("{}{path}", self.shared.target.base_path);
        let mut headers = Vec::new();
        for (name, template) in user_type.headers.iter().chain(&step.headers) {
            match template.render(&mut cx) {
                Ok(value) => headers.push(header(name, &value).map_err(BuildError::Invalid)?),
                // A user-level header waits until its variables exist (no token before login),
                // unless a step already tried to set them and failed (a failed login).
                Err(EvalError::Unset(var))
                    if !self.attempted.contains(&var)
                        && !step.headers.iter().any(|(n, _)| n == name) => {}
                Err(error) => return Err(BuildError::eval(&format!("header {name}: "))(error)),
            }
        }
        let payload = match &step.body {
            Body::Empty => Payload::default(),
            Body::Json(template) => {
                Payload::json(&template.eval(&mut cx).map_err(BuildError::eval(""))?)
            }
            Body::Form(fields) => {
                let mut values = Vec::new();
                for (name, template) in fields {
                    values.push((
                        name.as_str(),
                        template
                            .render(&mut cx)
                            .map_err(BuildError::eval(&format!("form.{name}: ")))?,
                    ));
                }
                Payload::form(values.iter().map(|(k, v)| (*k, v.as_str())))
            }
            Body::Multipart(parts) => {
                let mut texts = Vec::new();
                for (name, part) in parts {
                    if let MultipartPart::Text(template) = part {
                        texts.push((
                            name,
                            template
                                .render(&mut cx)
                                .map_err(BuildError::eval(&format!("multipart.{name}: ")))?,
                        ));
                    }
                }
                let fields: Vec<MultipartField<'_>> = parts
                    .iter()
                    .filter_map(|(name, part)| match part {
                        MultipartPart::File {
                            filename,
                            content_type,
                            bytes,
                        } => Some(MultipartField {
                            name,
                            filename: Some(filename),
                            content_type: Some(content_type),
                            bytes,
                        }),
                        MultipartPart::Text(_) => None,
                    })
                    .chain(texts.iter().map(|(name, text)| MultipartField {
                        name,
                        filename: None,
                        content_type: None,
                        bytes: text.as_bytes(),
                    }))
                    .collect();
                Payload::multipart(&fields)
            }
        };
        Ok(Built {
            path,
            headers,
            payload,
        })
    }

    fn extract(&mut self, step: &Step, body: &[u8]) -> Result<(), String> {
        if step.extract.is_empty() && step.append.is_empty() {
            return Ok(());
        }
        let json: Value =
            serde_json::from_slice(body).map_err(|_| "answer is not JSON".to_owned())?;
        for (var, path) in &step.extract {
            let value =
                lookup(&json, path).ok_or_else(|| format!("answer has no `{}`", path.join(".")))?;
            self.vars.insert(var.clone(), value.clone());
        }
        for (var, path) in &step.append {
            let value =
                lookup(&json, path).ok_or_else(|| format!("answer has no `{}`", path.join(".")))?;
            match self
                .vars
                .entry(var.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(items) => items.push(value.clone()),
                other => *other = Value::Array(vec![value.clone()]),
            }
        }
        Ok(())
    }

    fn follow_job(&mut self, index: usize, track: &Track, body: &[u8]) {
        let Some(poll_key) = self.keys.polls[index].clone() else {
            return;
        };
        let Some(budget) = self.shared.poll_budget.follow() else {
            stats::record_job_unfollowed(&track.job);
            return;
        };
        let id = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|json| lookup(&json, &track.id).cloned());
        let Some(id) = id else {
            stats::record_exception(format!(
                "track {}: the answer has no `{}`",
                track.job,
                track.id.join(".")
            ));
            return;
        };
        let mut vars = self.vars.clone();
        vars.insert("id".into(), id);
        let mut seq = self.seq;
        let mut cx = Context {
            vars: &vars,
            user: &self.number,
            run: &self.shared.run_id,
            seq: &mut seq,
        };
        let path = match track.poll.render_url(&mut cx) {
            Ok(path) => format!("{}{path}", self.shared.target.base_path),
            Err(error) => {
                stats::record_exception(format!("track {}: {error}", track.job));
                return;
            }
        };
        let headers: Vec<_> = self
            .user_type
            .headers
            .iter()
            .filter_map(|(name, template)| header(name, &template.render(&mut cx).ok()?).ok())
            .collect();
        // The poller is the same user's session: it sends the cookies the user holds for the
        // poll URL when the job is created.
        let origin = self.shared.target.origin();
        let headers = self
            .with_cookies(|| format!("{origin}{path}"), &headers)
            .unwrap_or(headers);
        let poller = JobPoller::new(Followed {
            track: track.clone(),
            key: poll_key,
            path,
            headers,
            connection: Connection::new(self.shared.target.clone(), self.shared.options),
            clock: self.shared.clock,
            budget,
            progress: self.shared.job_types.of(&track.job),
        });
        stats::job_in_flight(true);
        tokio::task::spawn_local(caught("a job poller", poller.run()));
    }
}

/// `task`, with a panic caught: counted and recorded as a scenario error, so that a bug costs
/// one user, not the thread's users or the run, and the run's exit code says so (2).
pub(crate) async fn caught(what: &'static str, task: impl std::future::Future<Output = ()>) {
    use futures::FutureExt;
    if let Err(payload) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
        stats::record_panic(what, payload.as_ref());
    }
}

/// How the closed model's loop awaits an iteration: in its own future, or boxed.
trait Iterate {
    fn iterate(user: &mut VirtualUser, task: usize) -> impl Future<Output = ()> + '_;
}

/// The iteration inside the user's future: no allocation per iteration (users that do not wait).
struct Inline;

impl Iterate for Inline {
    fn iterate(user: &mut VirtualUser, task: usize) -> impl Future<Output = ()> + '_ {
        user.iteration(task, None)
    }
}

/// The iteration in a box of its own, freed before the user waits.
struct Boxed;

impl Iterate for Boxed {
    fn iterate(user: &mut VirtualUser, task: usize) -> impl Future<Output = ()> + '_ {
        Box::pin(user.iteration(task, None))
    }
}

/// How a running user is told to stop; either way it then runs its type's `on_stop` steps.
#[derive(Debug, Clone)]
pub struct StopSignal {
    /// Leave the task at hand now.
    cut: CancellationToken,
    /// Finish the task at hand first: a child of `cut`, so a cut also finishes.
    finish: CancellationToken,
}

impl StopSignal {
    /// A signal not given yet.
    pub fn new() -> Self {
        let cut = CancellationToken::new();
        let finish = cut.child_token();
        Self { cut, finish }
    }

    /// Finish the task at hand, then stop (Locust's stop within `--stop-timeout`).
    pub fn finish(&self) {
        self.finish.cancel();
    }

    /// Leave the task at hand now (a request in flight is counted so), then stop.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a user's `on_stop` may take once it is told to stop: a server that hangs must not
/// hang the run's end (Locust waits without a bound).
pub const ON_STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A wait this long gives the connection's buffers back first: allocating them again costs
/// far less than a user's idle buffers cost memory, and waits shorter than this are the
/// throughput runs, where they are kept.
const RELEASE_BUFFERS_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Why a step's request could not be built.
#[derive(Debug, thiserror::Error)]
enum BuildError {
    /// A value it uses was never received (an earlier step failed): a consequence, not a fault
    /// of the scenario.
    #[error("{0}")]
    Missing(String),
    /// The scenario asks for something impossible (a header value that is not one).
    #[error("{0}")]
    Invalid(String),
}

impl BuildError {
    /// Wraps a template error, prefixed with where it happened.
    fn eval(context: &str) -> impl Fn(EvalError) -> BuildError + '_ {
        move |error| BuildError::Missing(format!("{context}{error}"))
    }
}

struct Built {
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    payload: Payload,
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let value =
        HeaderValue::from_str(value).map_err(|_| format!("{value:?} is not a header value"))?;
    Ok((name, value))
}

fn lookup<'a>(json: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(json, |value, part| match value {
        Value::Array(items) => items.get(part.parse::<usize>().ok()?),
        other => other.get(part),
    })
}

/// `HTTP 429: Too many requests. Please try again later.`: the status and what the API said.
fn status_error(status: u16, body: &[u8]) -> Failure {
    Failure {
        kind: FailureKind::Status(status),
        message: status_message(status, body),
    }
}

fn status_message(status: u16, body: &[u8]) -> String {
    let detail = serde_json::from_slice::<Value>(body).ok().and_then(|json| {
        match (&json["detail"], &json["error"]["message"]) {
            (Value::String(s), _) => Some(s.clone()),
            (Value::Array(items), _) => items
                .first()
                .and_then(|i| i["msg"].as_str())
                .map(str::to_owned),
            (_, Value::String(s)) => Some(s.clone()),
            _ => None,
        }
    });
    match detail {
        Some(detail) => {
            let detail: String = detail.chars().take(120).collect();
            format!("HTTP {status}: {detail}")
        }
        None => format!("HTTP {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned_size2<A, B, R>(_: fn(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    fn returned_size3<A, B, C, R>(_: fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Issue 31: what a waiting user's task holds is its loop's state, not room for a request
    /// (the iteration, boxed for its own time); the user itself is one box beside it.
    #[test]
    fn a_waiting_users_future_holds_no_room_for_a_request() {
        let waiting = returned_size2(VirtualUser::run_with::<Boxed>);
        let busy = returned_size2(VirtualUser::run_with::<Inline>);
        let iteration = returned_size3::<&'static mut VirtualUser, _, _, _>(VirtualUser::iteration);
        let user = std::mem::size_of::<VirtualUser>();
        let sizes = format!(
            "waiting user's loop {waiting} B, busy user's {busy} B, an iteration {iteration} B, \
             the user {user} B"
        );
        assert!(waiting <= 512 && waiting * 3 < iteration, "{sizes}");
        assert!(busy >= iteration && user <= 512, "{sizes}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_task_is_caught_counted_and_named() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let before = crate::stats::take_shard();
                drop(before);
                tokio::task::spawn_local(super::caught("a user", async {
                    let planted: Vec<u8> = Vec::new();
                    assert!(!planted.is_empty(), "planted bug");
                }))
                .await
                .expect("the panic is caught inside the task");
                let shard = crate::stats::take_shard();
                assert_eq!(shard.stats.panics, 1);
                let (message, count) = shard.stats.exceptions.iter().next().unwrap();
                assert_eq!(*count, 1);
                assert!(
                    message.contains("a user panicked") && message.contains("planted bug"),
                    "{message}"
                );
            })
            .await;
    }
}
