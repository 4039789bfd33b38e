//! What the web UI steers: the form's defaults, and the current run (or the last one) through
//! its [`RunHandle`], with the seconds it has delivered so far, so that a report of the run so
//! far can be built at any moment; or the current (or last) capacity search. One of the two
//! goes at a time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::arrival::{Arrival, Rate, Stage};
use crate::config::RunConfig;
use crate::engine::{Run, RunHandle, RunOutcome};
use crate::report::Report;
use crate::stats::HistoryRow;

use super::capacity::{CapacitySearch, Refusal};

/// Locust's runner states, as its web API names them.
pub const STATE_READY: &str = "ready";
/// Ramping up or down.
pub const STATE_SPAWNING: &str = "spawning";
/// At the users asked for.
pub const STATE_RUNNING: &str = "running";
/// Ended.
pub const STATE_STOPPED: &str = "stopped";

/// What the form sends to start (or steer) a run.
#[derive(Debug, Clone)]
pub struct SwarmRequest {
    /// Users to reach.
    pub users: u64,
    /// Users started per second.
    pub spawn_rate: f64,
    /// The host (empty: the one already set).
    pub host: Option<String>,
    /// Run time (`None`: until stopped).
    pub run_time: Option<Duration>,
    /// User classes to run (empty: all).
    pub user_classes: Vec<String>,
    /// The open model's rate (`500/s`) or stages (`30s:50/s,1m:200/s`); empty: users loop,
    /// the closed model; `None` (Locust's form has no such field): as the command line set it.
    pub arrival_rate: Option<String>,
    /// The stack to discover and watch (`compose:PROJECT`, `auto`); empty or `None`: as the
    /// command line set it.
    pub stack: Option<String>,
}

/// One run started from the UI.
pub struct Current {
    /// Its handle.
    pub handle: RunHandle,
    /// What it runs.
    pub config: RunConfig,
    /// Its seconds so far.
    pub history: Arc<Mutex<Vec<Arc<HistoryRow>>>>,
    started: Instant,
    started_at: SystemTime,
}

/// The UI's state: the form's defaults and the current or last run.
pub struct Session {
    /// The command line's values, which fill the form.
    pub template: RunConfig,
    /// The current run, or the last one.
    pub run: Option<Current>,
    /// The master whose workers run the users, when distributed.
    pub master: Option<crate::cluster::Master>,
    /// The current capacity search, or the last one.
    pub search: Option<CapacitySearch>,
}

impl Session {
    /// A session with no run yet.
    pub fn new(template: RunConfig) -> Self {
        Self {
            template,
            run: None,
            master: None,
            search: None,
        }
    }

    /// The host as pages and answers show it: its secrets masked.
    pub fn shown_host(&self) -> String {
        common::redact::reference(&self.template.host)
    }

    /// Locust's state name of the session: a capacity search going is a test running.
    pub fn state(&self) -> &'static str {
        if self.search_goes() {
            return STATE_RUNNING;
        }
        let Some(run) = &self.run else {
            return STATE_READY;
        };
        if run.handle.is_finished() {
            return STATE_STOPPED;
        }
        match run.handle.subscribe().borrow().as_ref() {
            Some(update) if update.users == update.target_users => STATE_RUNNING,
            _ => STATE_SPAWNING,
        }
    }

    /// Users running now (0 when no run goes).
    pub fn users(&self) -> (u64, u64) {
        match &self.run {
            Some(run) if !run.handle.is_finished() => run
                .handle
                .subscribe()
                .borrow()
                .as_ref()
                .map_or((0, run.config.load.users), |u| (u.users, u.target_users)),
            _ => (0, 0),
        }
    }

    /// Where the run going is on its load shape (`None`: no shape, or no run going).
    pub fn stage(&self) -> Option<crate::shape::StageAt> {
        self.run.as_ref().and_then(|run| run.handle.stage())
    }

    /// Starts a run, or steers the one going (Locust's form does both). Returns a message for
    /// the form.
    pub async fn swarm(&mut self, request: SwarmRequest) -> Result<String, String> {
        request.check()?;
        if self.search_goes() {
            return Err("a capacity search is going: stop it first (Stop)".into());
        }
        if let Some(run) = &mut self.run
            && !run.handle.is_finished()
        {
            return run.steer(&request);
        }
        let mut config = self.config_for(&request)?;
        if let Some(spec) = request
            .stack
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let spec: monitor::stack::StackSpec = spec.parse()?;
            if config.stack.spec.as_ref() != Some(&spec) {
                config.stack = crate::config::StackConfig {
                    spec: Some(spec),
                    discovered: None,
                };
                config.backend.get_or_insert_with(|| {
                    crate::config::BackendConfig::InProcess(crate::backend::in_process_sources(
                        &config.host,
                        true,
                    ))
                });
            }
        }
        crate::backend::discover_stack(&mut config, false)
            .await
            .map_err(|e| format!("{e:#}"))?;
        // The next run of the same stack reuses this discovery and its helper containers.
        self.template.stack = config.stack.clone();
        self.template.backend = config.backend.clone();
        let handle = match &self.master {
            Some(master) => Run::start_on(&config, master).await,
            None => Run::start(&config).await,
        }
        .map_err(|e| e.to_string())?;
        tracing::info!(
            target: "locust.runners",
            "Ramping to {} users at a rate of {:.2} per second",
            request.users,
            request.spawn_rate
        );
        let history = follow_seconds(&handle);
        self.template.host = config.host.clone();
        self.run = Some(Current {
            handle,
            config,
            history,
            started: Instant::now(),
            started_at: SystemTime::now(),
        });
        Ok("Swarming started".into())
    }

    /// Whether a capacity search goes.
    pub fn search_goes(&self) -> bool {
        self.search.as_ref().is_some_and(CapacitySearch::goes)
    }

    /// Starts a capacity search as the capacity form asks (its fields, by name) on the
    /// session's settings; refused while a run or another search goes.
    pub fn start_search(&mut self, fields: &[(String, String)]) -> Result<String, Refusal> {
        if self.search_goes() {
            return Err(Refusal::Busy(
                "a capacity search is going: stop it first (Stop)".into(),
            ));
        }
        if self
            .run
            .as_ref()
            .is_some_and(|run| !run.handle.is_finished())
        {
            return Err(Refusal::Busy(
                "a load test is running: stop it first (Stop), then start the search".into(),
            ));
        }
        let (plan, host) = super::capacity::plan_from_form(fields, &self.template.targets)
            .map_err(Refusal::BadValue)?;
        let mut config = self.template.clone();
        config.host = self
            .host_asked(host.as_deref())
            .map_err(Refusal::BadValue)?;
        tracing::info!(
            "Capacity search: {}, from {} up to {}",
            plan.slo,
            plan.start,
            plan.ceiling
        );
        self.template.host = config.host.clone();
        self.search = Some(CapacitySearch::start(config, plan, self.master.clone()));
        Ok("Capacity search started".into())
    }

    /// The host a form asks for: the one already set when it is empty or shown masked.
    fn host_asked(&self, host: Option<&str>) -> Result<String, String> {
        let host = match host.map(str::trim).filter(|h| !h.is_empty()) {
            // The page shows the host with its secrets masked: sent back as shown, it is the
            // host already set, secrets and all.
            Some(host) if host != self.shown_host() => host.to_owned(),
            _ => self.template.host.clone(),
        };
        if host.is_empty() {
            return Err("no host: enter the API's URL, e.g. http://127.0.0.1:8000".into());
        }
        Ok(host)
    }

    /// The form's defaults with what `request` asks for: its host, user classes and load.
    fn config_for(&self, request: &SwarmRequest) -> Result<RunConfig, String> {
        let mut config = self.template.clone();
        config.host = self.host_asked(request.host.as_deref())?;
        if !request.user_classes.is_empty() {
            pick_user_classes(&mut config, &request.user_classes)?;
        }
        // The concurrency target follows the form unless the command line set it apart.
        if config.targets.users == Some(config.load.users) {
            config.targets.users = Some(request.users);
        }
        config.load.users = request.users;
        config.load.spawn_rate = request.spawn_rate;
        config.load.run_time = request.run_time;
        if let Some(field) = &request.arrival_rate {
            config.load.arrival = arrival_of(field, config.load.arrival.take())?;
        }
        if let Some(stages) = config.load.arrival.as_ref().and_then(|a| a.stages_length()) {
            config.load.run_time.get_or_insert(stages);
        }
        Ok(config)
    }

    /// Stops the run or the search going, if any (its reports say the web UI stopped it).
    pub fn stop(&self) {
        self.stop_by("the web UI");
    }

    /// Stops the run or the search going, saying who.
    pub fn stop_by(&self, who: &str) {
        if let Some(run) = &self.run {
            run.handle.stop_by(who);
        }
        if let Some(search) = self.search.as_ref().filter(|s| s.goes()) {
            search.stop_by(who);
        }
    }

    /// Forgets the figures of the run going.
    pub fn reset_stats(&self) {
        if let Some(run) = &self.run {
            run.handle.reset_stats();
        }
    }

    /// The report of the run so far (or of the last run), with its analysis; `None` before the
    /// first run.
    pub async fn report(&self) -> Option<Report> {
        let run = self.run.as_ref()?;
        let outcome = if run.handle.is_finished() {
            run.handle.wait().await
        } else {
            Arc::new(run.so_far().await)
        };
        Some(Report::of_run(&run.config, &outcome))
    }
}

impl SwarmRequest {
    /// Refuses a request no run can follow: no users, or a spawn rate that is not positive.
    fn check(&self) -> Result<(), String> {
        if self.users < 1 {
            return Err(format!("{} users: start at least 1", self.users));
        }
        if !(self.spawn_rate.is_finite() && self.spawn_rate > 0.0) {
            return Err(format!(
                "spawn rate {}: must be a positive number of users per second",
                self.spawn_rate
            ));
        }
        Ok(())
    }
}

/// Keeps only the scenario's user types named in `classes`, refusing a name it does not have.
fn pick_user_classes(config: &mut RunConfig, classes: &[String]) -> Result<(), String> {
    let known: Vec<String> = config
        .scenario
        .users
        .iter()
        .map(|u| u.name.clone())
        .collect();
    if let Some(unknown) = classes.iter().find(|c| !known.contains(c)) {
        return Err(format!(
            "no user class `{unknown}` (the scenario has {})",
            known.join(", ")
        ));
    }
    config.scenario.users.retain(|u| classes.contains(&u.name));
    config.scenario.check_runnable()?;
    // Workers load the scenario themselves: they pick the same classes.
    config.scenario_source.user_classes = classes.to_vec();
    Ok(())
}

/// The seconds the run delivers, gathered as they come (each once) by a task of their own.
fn follow_seconds(handle: &RunHandle) -> Arc<Mutex<Vec<Arc<HistoryRow>>>> {
    let history: Arc<Mutex<Vec<Arc<HistoryRow>>>> = Arc::default();
    let mut updates = handle.subscribe();
    let seconds = history.clone();
    tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let second = updates
                .borrow_and_update()
                .as_ref()
                .map(|u| u.second.clone());
            if let (Some(second), Ok(mut seconds)) = (second, seconds.lock()) {
                // Each second once: an update without a new second repeats the last.
                if seconds
                    .last()
                    .map_or(second.at_secs > 0, |last| second.at_secs > last.at_secs)
                {
                    seconds.push(second);
                }
            }
        }
    });
    history
}

impl Current {
    /// Steers the run going to `request`'s users and spawn rate; the concurrency target
    /// follows unless the command line set it apart.
    fn steer(&mut self, request: &SwarmRequest) -> Result<String, String> {
        self.handle
            .set_users(request.users, request.spawn_rate)
            .map_err(|e| e.to_string())?;
        if self.config.targets.users == Some(self.config.load.users) {
            self.config.targets.users = Some(request.users);
        }
        self.config.load.users = request.users;
        Ok(format!(
            "Ramping to {} users at a rate of {:.2} per second",
            request.users, request.spawn_rate
        ))
    }

    /// The run so far as an outcome, from a snapshot of the engine and the seconds delivered.
    async fn so_far(&self) -> RunOutcome {
        let snapshot = self.handle.snapshot().await;
        let history: Vec<HistoryRow> = self
            .history
            .lock()
            .map(|rows| rows.iter().map(|r| (**r).clone()).collect())
            .unwrap_or_default();
        RunOutcome {
            stats: snapshot.to_stats().unwrap_or_default(),
            peak_users: history.iter().map(|h| h.users).max().unwrap_or(0),
            history,
            started_at: self.started_at,
            duration: self.started.elapsed(),
            backend: self.handle.backend_so_far(),
            backend_watched: self.config.backend.is_some(),
            ..RunOutcome::default()
        }
    }
}

/// The open model the form's rate field asks for: a rate (`500/s`), or stages
/// (`30s:50/s,1m:200/s`, ramping from the command line's `--arrival-rate`, or 0); the users'
/// cap and pre-allocation of `template` (the command line's) stay. Empty: the closed model.
fn arrival_of(field: &str, template: Option<Arrival>) -> Result<Option<Arrival>, String> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(None);
    }
    let template = template.unwrap_or_default();
    let arrival = if field.contains(':') {
        Arrival {
            stages: Stage::parse_list(field).map_err(|e| format!("Rate: {e}"))?,
            ..template
        }
    } else {
        Arrival {
            rate: Some(Rate::parse(field).map_err(|e| format!("Rate: {e}"))?),
            stages: Vec::new(),
            ..template
        }
    };
    Ok(Some(arrival))
}

/// What the form's rate field shows for `arrival`: its rate, or its stages.
pub fn arrival_field(arrival: Option<&Arrival>) -> String {
    match arrival {
        Some(a) if !a.stages.is_empty() => a
            .stages
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        Some(a) => a.rate.map(|r| r.to_string()).unwrap_or_default(),
        None => String::new(),
    }
}
