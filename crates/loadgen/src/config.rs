//! [`RunConfig`]: everything a run needs, resolved once (from flags, environment and profile by
//! [`crate::cli`], or built directly by the demo, the web UI or a worker) and checked. Nothing
//! below this point knows about command-line flags.

pub mod baseline;
pub mod capacity;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::TlsSettings;
use crate::scenario::{Scenario, ScenarioSource};
use crate::targets::Targets;

/// Redirects followed for one request by default: k6's `maxRedirects` (Python requests, under
/// Locust's HttpUser, allows 30; an API that redirects more than a few times is looping).
pub const DEFAULT_MAX_REDIRECTS: usize = 10;

/// The load itself: the one type of what a run needs, as the CLI resolves it, the web form
/// edits it, the master sends it to its workers (with each one's share) and each runs it.
/// A new option is a field here (with its default below), its flag in `cli/`, and its use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadSettings {
    /// Users to reach.
    pub users: u64,
    /// Users started (or stopped) per second.
    pub spawn_rate: f64,
    /// Stop after this long (`None`: until stopped).
    pub run_time: Option<Duration>,
    /// OS threads for users.
    pub threads: usize,
    /// Per-request timeout (a step may set its own).
    pub timeout: Duration,
    /// Redirects followed for one request; one more is a failure (`--max-redirects`).
    pub max_redirects: usize,
    /// The largest answer body accepted, bytes (`--max-body`).
    pub max_body: u64,
    /// How https servers' certificates are checked.
    pub tls: TlsSettings,
    /// Overrides every track's sample ratio.
    pub job_sample: Option<f64>,
    /// Stop starting users once loadgen's own memory passes this, bytes.
    pub memory_limit: Option<u64>,
    /// Forget the figures once every user has been spawned (Locust's `--reset-stats`).
    pub reset_stats: bool,
    /// How long a stopped user may take to finish its current task (Locust's
    /// `--stop-timeout`); zero stops it at once, and its request in flight is counted apart.
    pub stop_timeout: Duration,
    /// The run's id (`${run}`); a fresh one when `None` (a master gives its workers its own).
    pub run_id: Option<String>,
    /// The number of the first user (`${user}`): a master gives each worker its own range.
    pub first_user_number: u64,
    /// The open model (`--arrival-rate`, `--arrival-stages`): iterations arrive on a schedule
    /// and `users`/`spawn_rate` do not apply; `None` is the closed model.
    pub arrival: Option<crate::arrival::Arrival>,
    /// `--latency-correction`: a paced user (`constant_pacing`, `constant_throughput`) whose
    /// request overran its pacing also records the starts it delayed, as oha's option.
    #[doc(alias = "record_correct")]
    pub latency_correction: bool,
    /// A closed-model load shape (`[[shape]]`, `--shape`): the engine of the run's master (or
    /// single process) sets the users at each stage's start; empty: none. A worker clears it.
    pub shape: Vec<crate::shape::ShapeStage>,
}

impl LoadSettings {
    /// These settings with their shape applied: its first stage's users and spawn rate, and a
    /// run time that ends with its last stage (or earlier, when `run_time` is shorter).
    pub fn shaped(&self) -> LoadSettings {
        let Some(first) = self.shape.first() else {
            return self.clone();
        };
        let length = crate::shape::length(&self.shape);
        LoadSettings {
            users: first.users,
            spawn_rate: first.spawn_rate,
            run_time: Some(self.run_time.map_or(length, |t| t.min(length))),
            ..self.clone()
        }
    }
}

/// User threads per core beyond which more threads buy nothing: each is a whole runtime, and a
/// hundred thousand of them exhaust memory and abort the process before the first request.
pub const THREADS_PER_CORE: usize = 4;

/// The user threads a run starts when `asked` for: at most [`THREADS_PER_CORE`] per core of
/// this machine and, when the users are known, no more than them (a thread without a user
/// idles). Returns the count, and why it is less than asked, if it is.
pub fn cap_threads(asked: usize, users: Option<u64>) -> (usize, Option<String>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let machine = cores.saturating_mul(THREADS_PER_CORE);
    let by_users = users.map_or(usize::MAX, |u| {
        usize::try_from(u.max(1)).unwrap_or(usize::MAX)
    });
    let threads = asked.min(machine).min(by_users).max(1);
    if threads == asked {
        return (threads, None);
    }
    let mut why = Vec::new();
    if asked > by_users {
        why.push(format!("no more than the users ({by_users})"));
    }
    if asked > machine {
        why.push(format!(
            "at most {THREADS_PER_CORE} per core ({machine} on this machine's {cores} cores)"
        ));
    }
    (
        threads,
        Some(format!(
            "--threads {asked}: capped at {threads}: {}",
            why.join(", and ")
        )),
    )
}

impl Default for LoadSettings {
    fn default() -> Self {
        Self {
            users: 1,
            spawn_rate: 1.0,
            run_time: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            timeout: Duration::from_secs(60),
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_body: crate::http::response::DEFAULT_MAX_BODY,
            tls: TlsSettings::default(),
            job_sample: None,
            memory_limit: None,
            reset_stats: false,
            stop_timeout: Duration::ZERO,
            run_id: None,
            first_user_number: 0,
            arrival: None,
            latency_correction: false,
            shape: Vec::new(),
        }
    }
}

/// Where the backend's samples come from.
#[derive(Debug, Clone)]
pub enum BackendConfig {
    /// Sampled in this process by the monitor's sources.
    InProcess(monitor::sources::SourcesConfig),
    /// A monitor sidecar's `/samples` endpoint (`http://HOST:9187`).
    Sidecar(String),
    /// A JSON Lines file a sidecar wrote.
    File(PathBuf),
}

/// `--stack`: which stack to discover, and, once discovered, what was found. The discovery is
/// shared by the runs made from one configuration (a web UI's, a capacity search's steps): its
/// helper containers live as long as the last of them.
#[derive(Debug, Clone, Default)]
pub struct StackConfig {
    /// The stack asked for.
    pub spec: Option<monitor::stack::StackSpec>,
    /// What discovery found ([`crate::backend::discover_stack`]).
    pub discovered: Option<std::sync::Arc<monitor::stack::Discovery>>,
}

impl StackConfig {
    /// The containers whose logs the findings quote: the stack's API and workers.
    pub fn log_containers(&self) -> Vec<String> {
        self.discovered
            .as_ref()
            .map(|d| d.log_containers())
            .unwrap_or_default()
    }
}

/// Files written at the end of the run.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Prefix of Locust's CSV files.
    pub csv: Option<String>,
    /// Every one of Locust's rows in `_stats_history.csv`, every second, with the last 10
    /// seconds' percentiles (Locust's `--csv-full-history`).
    pub csv_full_history: bool,
    /// loadgen's JSON report (`--report-json`).
    pub json: Option<PathBuf>,
    /// Print the stats as Locust's JSON on stdout at the end (Locust's `--json`).
    pub locust_json: bool,
    /// Write the stats as Locust's JSON here (Locust's `--json-file NAME` writes `NAME.json`:
    /// this is that path, `.json` added).
    pub locust_json_file: Option<PathBuf>,
    /// The HTML report.
    pub html: Option<PathBuf>,
    /// A JUnit XML report, for CI systems.
    pub junit: Option<PathBuf>,
    /// The summary as GitHub-flavoured Markdown.
    pub summary_md: Option<PathBuf>,
}

impl Outputs {
    /// Every file asked for, as (what, path); the CSV prefix stands for its files.
    fn files(&self) -> Vec<(&'static str, PathBuf)> {
        let mut files = Vec::new();
        if let Some(prefix) = &self.csv {
            files.push(("--csv", PathBuf::from(format!("{prefix}_stats.csv"))));
        }
        for (what, path) in [
            ("--report-json", &self.json),
            ("--json-file", &self.locust_json_file),
            ("--html", &self.html),
            ("--junit", &self.junit),
            ("--summary-md", &self.summary_md),
        ] {
            if let Some(path) = path {
                files.push((what, path.clone()));
            }
        }
        files
    }

    /// Fails, naming the flag, unless every file can be written: checked before the first
    /// request, so that a typo in a path costs no run. Nothing is left behind: the files are
    /// written whole at the end (see [`crate::atomic_file`]), so a refused run leaves none.
    ///
    /// A folder that does not exist yet is made, as Locust makes them (`--csv results/run1`);
    /// with `dry_run`, nothing is made: the nearest folder that exists must take new ones.
    pub fn check_writable(&self) -> Result<(), String> {
        self.check(false)
    }

    /// As [`Outputs::check_writable`], making no folder (`--dry-run`).
    pub fn check_writable_dry(&self) -> Result<(), String> {
        self.check(true)
    }

    fn check(&self, dry_run: bool) -> Result<(), String> {
        for (what, path) in self.files() {
            let named = |why: String| format!("{what} {}: {why}", path.display());
            let folder = path
                .parent()
                .filter(|f| !f.as_os_str().is_empty())
                .map(std::path::Path::to_path_buf);
            match folder {
                Some(folder) if !folder.is_dir() && dry_run => {
                    let existing = folder.ancestors().find(|a| a.exists());
                    match existing {
                        Some(a) if !a.as_os_str().is_empty() && !a.is_dir() => {
                            return Err(named(format!("{} is a file, not a folder", a.display())));
                        }
                        _ => continue,
                    }
                }
                Some(folder) if !folder.is_dir() => {
                    std::fs::create_dir_all(&folder).map_err(|e| {
                        named(format!("cannot make the folder {}: {e}", folder.display()))
                    })?;
                }
                _ => {}
            }
            crate::atomic_file::check_writable(&path).map_err(named)?;
        }
        Ok(())
    }
}

/// The live view on the console.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Print only the end-of-run summary.
    pub quiet: bool,
    /// How often Locust's table prints when stderr is not a terminal.
    pub every: Duration,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            quiet: false,
            every: Duration::from_secs(2),
        }
    }
}

/// Everything a run needs. Drivers start from [`RunConfig::new`] and set what they need.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Base URL of the target.
    pub host: String,
    /// The scenario, already filtered by user classes and tags.
    pub scenario: Scenario,
    /// What it was loaded from, for a master to send to its workers.
    pub scenario_source: ScenarioSource,
    /// Users, rates, times.
    pub load: LoadSettings,
    /// What the run is judged against.
    pub targets: Targets,
    /// Exit with this code when any request failed or the scenario had an error, as Locust's
    /// `--exit-code-on-error` (`None`: the exit code follows the targets only).
    pub exit_code_on_error: Option<u8>,
    /// What the exit code follows: the targets (ours) or Locust's rule.
    pub exit_code_mode: crate::exit_code::ExitCodeMode,
    /// The backend to watch beside the load, if any.
    pub backend: Option<BackendConfig>,
    /// Log files of the job workers (`--worker-log`): quoted in the job findings, as the logs
    /// of watched worker containers are.
    pub worker_logs: Vec<PathBuf>,
    /// `--stack`: the Compose stack discovered before the run fills the backend's sources.
    pub stack: StackConfig,
    /// Report files.
    pub outputs: Outputs,
    /// The console while running.
    pub live: LiveConfig,
    /// An earlier run to compare with (`--baseline`), read and checked before the run.
    pub baseline: Option<baseline::BaselineCheck>,
}

impl RunConfig {
    /// A run of `scenario` (loaded from `scenario_source`) against `host`, with the default
    /// load (one user), no targets, no backend, no files, and the live view on.
    pub fn new(host: String, scenario: Scenario, scenario_source: ScenarioSource) -> Self {
        Self {
            host,
            scenario,
            scenario_source,
            load: LoadSettings::default(),
            targets: Targets::default(),
            exit_code_on_error: None,
            exit_code_mode: crate::exit_code::ExitCodeMode::default(),
            backend: None,
            worker_logs: Vec::new(),
            stack: StackConfig::default(),
            outputs: Outputs::default(),
            live: LiveConfig::default(),
            baseline: None,
        }
    }
}

/// Configurations made to order for unit tests, resolved from a command line as the CLI
/// resolves them, so that a field added to [`RunConfig`] changes nothing here.
#[cfg(test)]
pub(crate) mod testing {
    use clap::Parser;

    use super::RunConfig;

    /// Two user types: 3 `Watcher`s across the run (or cluster), `Reader`s for the rest.
    pub const FIXED_AND_WEIGHTED: &str = r#"
[[users]]
name = "Watcher"
fixed_count = 3
wait = { constant = "100ms" }

[[users.tasks]]
run = ["health"]

[users.steps.health]
path = "/api/v1/health/"

[[users]]
name = "Reader"
wait = { constant = "100ms" }

[[users.tasks]]
run = ["read"]

[users.steps.read]
path = "/api/v1/tasks"
"#;

    /// `loadgen -H http://127.0.0.1:9 -f SCENARIO ARGS...`, resolved; `scenario` is the TOML
    /// text (written to a temporary file for the resolution).
    pub fn resolved(scenario: &str, args: &[&str]) -> RunConfig {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let path = folder.path().join("scenario.toml");
        std::fs::write(&path, scenario).expect("the scenario written");
        let path = path.to_string_lossy().into_owned();
        let line = ["loadgen", "-H", "http://127.0.0.1:9", "-f", &path]
            .into_iter()
            .chain(args.iter().copied());
        let cli = crate::cli::Cli::try_parse_from(line).expect("the test's command line parses");
        cli.resolve().expect("the test's command line resolves")
    }
}
