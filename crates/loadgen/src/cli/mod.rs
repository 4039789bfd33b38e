//! The command line, compatible with Locust's where it makes sense: replace
//! `locust -f locustfile.py` with `loadgen` and the seed's commands work. Every flag is also a
//! `LOADGEN_*` variable; `LOCUST_HOST` and `LOCUST_BASE_URL` are honoured. Flags beat the
//! environment, which beats a `--config` file ([`config_file`]), which beats `--load-profile`, which
//! beats the defaults.

pub mod capacity;
pub mod cluster;
pub mod config_file;
pub mod import;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use anyhow::{Context, bail};

use crate::config::baseline::{Baseline, BaselineCheck, Thresholds};
use crate::config::capacity::CapacityPlan;
use crate::config::{BackendConfig, LiveConfig, LoadSettings, Outputs, RunConfig};
use crate::http::TlsSettings;
use crate::scenario::ScenarioSource;
use crate::shape::{self, Shape};
use crate::targets::{TargetOverride, Targets};

/// Load tests for the FFmpeg API, with Locust's command line.
///
/// Serves the web UI on 127.0.0.1:8089 (as Locust's web mode), or with --headless runs at once:
/// the users, the spawn rate and the run time come from flags, LOADGEN_* variables or a
/// --load-profile. Without -f it runs the built-in FFmpeg API scenario (print it with
/// `loadgen scenario show`). Exit codes: 0 every target met, 1 a target missed (with
/// --exit-code-mode locust: 0 no request failed, 1 one did), 2 an error in the tool or its input.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do instead of a load test.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Distributed runs: --master, --worker and their flags.
    #[command(flatten)]
    pub cluster: cluster::ClusterArgs,
    /// `loadgen capacity`: the objective and the steps of the search.
    #[command(flatten)]
    pub capacity: capacity::CapacityArgs,
    /// A TOML file of flags (`users = 50`, `run-time = "5m"`, `target = ["p95=800ms"]`), as
    /// Locust's --config: flags and LOADGEN_* variables beat it, it beats --load-profile.
    #[arg(long, env = "LOADGEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Scenario file (TOML); default: the built-in FFmpeg API scenario.
    #[arg(
        short = 'f',
        long = "scenario",
        visible_alias = "locustfile",
        env = "LOADGEN_SCENARIO"
    )]
    pub scenario: Option<PathBuf>,
    /// Host to load, e.g. http://127.0.0.1:8000 (also LOCUST_HOST or LOCUST_BASE_URL).
    #[arg(short = 'H', long, env = "LOADGEN_HOST")]
    pub host: Option<String>,
    /// Peak number of concurrent users.
    #[arg(short = 'u', long, env = "LOADGEN_USERS")]
    pub users: Option<u64>,
    /// Users started per second.
    #[arg(short = 'r', long, env = "LOADGEN_SPAWN_RATE")]
    pub spawn_rate: Option<f64>,
    /// Stop after this long, e.g. 30s, 2m, 1h (default: until Ctrl-C).
    #[arg(short = 't', long, env = "LOADGEN_RUN_TIME", value_parser = common::duration::parse_positive_arg)]
    pub run_time: Option<Duration>,
    /// One of the seed's load profiles: smoke (10 users, 1/s, 30s), medium (100, 10/s, 5m),
    /// stress (500, 50/s, 10m), endurance (100, 5/s, 1h).
    #[arg(long, env = "LOADGEN_LOAD_PROFILE", value_enum, value_name = "PROFILE")]
    pub load_profile: Option<Profile>,
    /// A free label for the run, as Locust's --profile (logged at the start; to pick a load
    /// profile, use --load-profile).
    #[arg(long, env = "LOADGEN_PROFILE", value_name = "LABEL")]
    pub profile: Option<String>,
    /// User types to run, by name, as Locust's positional user classes (`locust -f f.py
    /// Reader`): the same as --user-classes.
    #[arg(value_name = "USER_TYPE")]
    pub user_types: Vec<String>,
    /// Print the scenario's user types, one a line, and exit (Locust's -l/--list).
    #[arg(short = 'l', long = "list")]
    pub list: bool,
    /// Print the share of users and tasks each user type and task gets, and exit.
    #[arg(long)]
    pub show_task_ratio: bool,
    /// As --show-task-ratio, as Locust's JSON.
    #[arg(long)]
    pub show_task_ratio_json: bool,
    /// Give every task of a user type the same weight, whatever the scenario says.
    #[arg(long, env = "LOADGEN_EQUAL_WEIGHTS")]
    pub equal_weights: bool,
    /// What the exit code follows: `targets` (0 every target met, 1 one missed) or `locust`
    /// (0 no request failed, else 1 or --exit-code-on-error's value), as Locust's.
    #[arg(
        long,
        env = "LOADGEN_EXIT_CODE_MODE",
        value_enum,
        default_value = "targets"
    )]
    pub exit_code_mode: ExitCodeMode,
    /// Locust flags that loadgen accepts without honouring them (each gets a warning).
    #[command(flatten)]
    pub locust: LocustOnlyArgs,
    /// Run without the web UI: the users, rate and run time come from flags (without it, the
    /// web UI is served, as in Locust).
    #[arg(long, env = "LOADGEN_HEADLESS")]
    pub headless: bool,
    /// Address the web UI listens on (default loopback: anything else wants --web-auth).
    #[arg(long, env = "LOADGEN_WEB_HOST", default_value = "127.0.0.1")]
    pub web_host: String,
    /// Port of the web UI.
    #[arg(short = 'P', long, env = "LOADGEN_WEB_PORT", default_value_t = 8089)]
    pub web_port: u16,
    /// Start the run at once with the command line's values (web UI).
    #[arg(long, env = "LOADGEN_AUTOSTART")]
    pub autostart: bool,
    /// Quit this many seconds after the run ends (web UI, with --autostart).
    #[arg(long, env = "LOADGEN_AUTOQUIT", value_name = "SECONDS")]
    pub autoquit: Option<u64>,
    /// Let the web UI's form choose the user classes to run.
    #[arg(long, env = "LOADGEN_CLASS_PICKER")]
    pub class_picker: bool,
    /// Basic authentication for the web UI, as USER:PASSWORD.
    #[arg(long, env = "LOADGEN_WEB_AUTH", value_name = "USER:PASSWORD")]
    pub web_auth: Option<String>,
    /// A name the web UI may be reached by, besides IP addresses and localhost (repeatable;
    /// `.example.com` allows its subdomains): requests naming another host are refused, so
    /// that a DNS-rebinding page cannot drive the UI.
    #[arg(
        long = "web-allowed-host",
        env = "LOADGEN_WEB_ALLOWED_HOST",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub web_allowed_hosts: Vec<String>,
    /// Let the web UI listen beyond loopback without --web-auth (for a UI that a firewall or a
    /// private network already guards).
    #[arg(long, env = "LOADGEN_WEB_INSECURE_NO_AUTH")]
    pub web_insecure_no_auth: bool,
    /// Write PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv, PREFIX_exceptions.csv.
    #[arg(long = "csv", env = "LOADGEN_CSV", value_name = "PREFIX")]
    pub csv: Option<String>,
    /// Write every request name's row to PREFIX_stats_history.csv each second, with the
    /// percentiles of the last 10 seconds, as Locust's --csv-full-history.
    #[arg(long, env = "LOADGEN_CSV_FULL_HISTORY", requires = "csv")]
    pub csv_full_history: bool,
    /// Write an HTML report.
    #[arg(long, env = "LOADGEN_HTML", value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print the final stats as JSON on stdout, in Locust's form (its --json).
    #[arg(long, env = "LOADGEN_JSON")]
    pub json: bool,
    /// Write the final stats to FILE.json, in Locust's form (its --json-file).
    #[arg(long, env = "LOADGEN_JSON_FILE", value_name = "FILE")]
    pub json_file: Option<String>,
    /// Write loadgen's own report, every figure, as JSON (what --baseline reads).
    #[arg(long, env = "LOADGEN_REPORT_JSON", value_name = "FILE")]
    pub report_json: Option<PathBuf>,
    /// Write a JUnit XML report (one test case per target and per endpoint's p95), which CI
    /// systems display.
    #[arg(long, env = "LOADGEN_JUNIT", value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the summary, targets, findings and baseline comparison as GitHub-flavoured
    /// Markdown (e.g. --summary-md "$GITHUB_STEP_SUMMARY").
    #[arg(long, env = "LOADGEN_SUMMARY_MD", value_name = "FILE")]
    pub summary_md: Option<PathBuf>,
    /// Compare with an earlier run's JSON report (--report-json) of the same scenario, per endpoint;
    /// exit 1 when a figure worsened past --regression. For `loadgen capacity`: an earlier
    /// search's JSON, and exit 1 when the capacity fell (by more than rps=-10%).
    #[arg(long, env = "LOADGEN_BASELINE", value_name = "PREVIOUS.json")]
    pub baseline: Option<PathBuf>,
    /// How much may worsen against --baseline, e.g. p95=+20%,failure=+1pp,rps=-10%,p99=off
    /// [default: p95=+20%,p99=+30%,failure=+1pp; for `loadgen capacity`, only rps, the
    /// capacity's fall: rps=-10%].
    #[arg(
        long,
        env = "LOADGEN_REGRESSION",
        value_name = "SPEC",
        requires = "baseline"
    )]
    pub regression: Option<Thresholds>,
    /// Check the command line, the scenario and the baseline, print what would run, and exit
    /// without sending a request.
    #[arg(long)]
    pub dry_run: bool,
    /// Log level: error, warn, info, debug (one line per request: method, URL, status, ms),
    /// trace (also the request headers).
    #[arg(short = 'L', long, env = "LOADGEN_LOGLEVEL", default_value = "info", value_parser = parse_level)]
    pub loglevel: String,
    /// Write the log here instead of stderr.
    #[arg(long, env = "LOADGEN_LOGFILE", value_name = "FILE")]
    pub logfile: Option<PathBuf>,
    /// Log lines as Locust writes them (`[date time,ms] host/LEVEL/logger: message`), or one
    /// JSON object a line.
    #[arg(long, env = "LOADGEN_LOG_FORMAT", value_enum, default_value = "locust")]
    pub log_format: crate::logging::LogFormat,
    /// Print only the end-of-run summary, no live view.
    #[arg(long, env = "LOADGEN_ONLY_SUMMARY")]
    pub only_summary: bool,
    /// Folder of the files the scenario uploads (make them with `fixtures-gen`).
    #[arg(long, env = "LOADGEN_FIXTURES", default_value = "tests/fixtures")]
    pub fixtures: PathBuf,
    /// A CSV file of variables for the users (e.g. the accounts `loadgen env seed` wrote):
    /// its header names variables, user N takes row N (in turn when there are more users), and
    /// a row's values replace the scenario's `vars` of the same name.
    #[arg(long, env = "LOADGEN_USER_DATA", value_name = "FILE.csv")]
    pub user_data: Option<PathBuf>,
    /// Run only these user types (names from the scenario).
    #[arg(long, env = "LOADGEN_USER_CLASSES", num_args = 1.., value_delimiter = ',')]
    pub user_classes: Vec<String>,
    /// Run only tasks with one of these tags (or whose user type has one).
    #[arg(short = 'T', long, env = "LOADGEN_TAGS", num_args = 1.., value_delimiter = ',')]
    pub tags: Vec<String>,
    /// Leave out tasks (and user types) with one of these tags.
    #[arg(short = 'E', long, env = "LOADGEN_EXCLUDE_TAGS", num_args = 1.., value_delimiter = ',')]
    pub exclude_tags: Vec<String>,
    /// Forget the figures once every user has been spawned, as Locust's --reset-stats (the
    /// start-up requests of on_start are reported apart either way).
    #[arg(long, env = "LOADGEN_RESET_STATS")]
    pub reset_stats: bool,
    /// How long a stopped user may take to finish its current task, as Locust's (default 0: at
    /// once; requests then in flight are counted apart, not measured).
    #[arg(short = 's', long, env = "LOADGEN_STOP_TIMEOUT", value_parser = common::duration::parse_arg, value_name = "SECONDS")]
    pub stop_timeout: Option<Duration>,
    /// Override a target: failure=5%, p95=500ms, p99=1000ms, avg=200ms, users=100 (repeatable).
    #[arg(
        long = "target",
        env = "LOADGEN_TARGET",
        value_delimiter = ',',
        value_name = "NAME=VALUE"
    )]
    pub targets: Vec<TargetOverride>,
    /// Exit with this code when any request failed or the scenario had an error (as Locust's
    /// option; without it the exit code follows the targets).
    #[arg(long, env = "LOADGEN_EXIT_CODE_ON_ERROR", value_name = "N")]
    pub exit_code_on_error: Option<u8>,
    /// OS threads that run users (default: one per available core).
    #[arg(long, env = "LOADGEN_THREADS")]
    pub threads: Option<usize>,
    /// The open model (k6's constant-arrival-rate): start this many iterations (one task of a
    /// user type) per second or minute, whatever the target does, e.g. 500/s, 30/m. With
    /// --arrival-stages, the rate the first stage ramps from. -u then means --max-users.
    #[arg(long, env = "LOADGEN_ARRIVAL_RATE", value_name = "N/s|N/m", value_parser = parse_rate)]
    pub arrival_rate: Option<crate::arrival::Rate>,
    /// The open model with ramps (k6's ramping-arrival-rate): DURATION:RATE stages, each a
    /// linear ramp from the rate before, e.g. "30s:50/s,2m:500/s,30s:0/s". The run lasts as
    /// long as the stages unless -t says otherwise.
    #[arg(long, env = "LOADGEN_ARRIVAL_STAGES", value_name = "DURATION:RATE,...")]
    pub arrival_stages: Option<String>,
    /// A load shape: a TOML file of [[shape]] stages, each a duration with users and
    /// spawn_rate (Locust's LoadTestShape stages) or with an arrival_rate (held through the
    /// stage). It beats a scenario's [[shape]], and -u, -r and the arrival flags (with a
    /// warning); the run lasts as long as the stages unless -t is shorter.
    #[arg(long, env = "LOADGEN_SHAPE", value_name = "FILE")]
    pub shape: Option<PathBuf>,
    /// The open model's cap on users (k6's maxVUs; default: the peak rate per second, and at
    /// least --pre-allocate): an iteration due
    /// when every user is busy and the cap is reached is dropped and counted. -u gives it too.
    #[arg(long, env = "LOADGEN_MAX_USERS")]
    pub max_users: Option<u64>,
    /// The open model's users made and started (on_start run) before the first iteration
    /// (k6's preAllocatedVUs; default: a tenth of the peak rate per second, at most
    /// --max-users); more are made as iterations need them, up to --max-users.
    #[arg(long, env = "LOADGEN_PRE_ALLOCATE")]
    pub pre_allocate: Option<u64>,
    /// The closed model's correction for coordinated omission, as oha's: a paced user
    /// (wait = { pacing } or { constant_throughput }) whose request overran its pacing also
    /// records the requests it should have started meanwhile (HdrHistogram's record_correct).
    #[arg(long, env = "LOADGEN_LATENCY_CORRECTION")]
    pub latency_correction: bool,
    /// A request with no complete answer within this time fails, as a timeout (a step's
    /// `timeout` in the scenario overrides it).
    #[arg(long, visible_alias = "request-timeout", env = "LOADGEN_TIMEOUT", default_value = "60s", value_parser = common::duration::parse_positive_arg)]
    pub timeout: Duration,
    /// Redirects followed for one request; one more fails it (a redirect loop), as
    /// TooManyRedirects.
    #[arg(long, env = "LOADGEN_MAX_REDIRECTS", default_value_t = crate::config::DEFAULT_MAX_REDIRECTS, value_name = "N")]
    pub max_redirects: usize,
    /// The largest answer body accepted, e.g. 64MiB, 500KB or 1048576 (bytes); a larger one
    /// is a failure that names this limit.
    #[arg(long, env = "LOADGEN_MAX_BODY", default_value = "64MiB", value_parser = parse_size)]
    pub max_body: u64,
    /// Trust the certificates in this PEM file (instead of the system's roots) for https.
    #[arg(long, env = "LOADGEN_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Do not check https certificates (Locust's `verify=False`): for self-signed test hosts.
    #[arg(
        short = 'k',
        long,
        env = "LOADGEN_INSECURE",
        conflicts_with = "ca_cert"
    )]
    pub insecure: bool,
    /// Follow this share of created jobs (overrides the scenario's `track.sample`).
    #[arg(long, env = "LOADGEN_JOB_SAMPLE", value_parser = parse_ratio)]
    pub job_sample: Option<f64>,
    /// Stop starting users (and warn) once loadgen's own memory passes this many MB.
    #[arg(long, env = "LOADGEN_MEMORY_LIMIT", value_name = "MB")]
    pub memory_limit: Option<u64>,
    /// Watch a whole Compose stack in-process: compose:PROJECT, or auto (the project that
    /// publishes the --host port). Finds its containers, its PostgreSQL and Redis (credentials
    /// from the containers' environment, never shown) and its Celery queues, and says before
    /// the run what it found; the --monitor-* flags override what it finds.
    #[arg(
        long,
        env = "LOADGEN_STACK",
        value_name = "compose:PROJECT|auto",
        conflicts_with = "monitor_from"
    )]
    pub stack: Option<monitor::stack::StackSpec>,
    /// Watch containers in-process: all, name=A,B, label=K[=V] or compose=PROJECT.
    #[arg(long, env = "LOADGEN_MONITOR_DOCKER", num_args = 0..=1, default_missing_value = "all", value_name = "SELECTOR")]
    pub monitor_docker: Option<monitor::sources::docker::Selector>,
    /// Watch this PostgreSQL in-process.
    #[arg(
        long,
        env = "LOADGEN_MONITOR_POSTGRES",
        value_name = "URL",
        hide_env_values = true
    )]
    pub monitor_postgres: Option<String>,
    /// Watch this Redis in-process.
    #[arg(
        long,
        env = "LOADGEN_MONITOR_REDIS",
        value_name = "URL",
        hide_env_values = true
    )]
    pub monitor_redis: Option<String>,
    /// Redis lists to watch, [DB/]NAME (default: the Celery queue, 1/celery).
    #[arg(
        long,
        env = "LOADGEN_MONITOR_REDIS_QUEUE",
        value_delimiter = ',',
        default_value = "1/celery"
    )]
    pub monitor_redis_queue: Vec<monitor::sources::redis::Queue>,
    /// A job worker's log file (repeatable): when jobs fail or never finish, the findings quote
    /// its last error lines, as they do a watched worker container's logs.
    #[arg(
        long = "worker-log",
        env = "LOADGEN_WORKER_LOG",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub worker_logs: Vec<PathBuf>,
    /// Read a monitor sidecar's samples (http://HOST:9187, or https:// trusted as the host is:
    /// --ca-cert, --insecure) or a JSON Lines file it wrote.
    #[arg(long, env = "LOADGEN_MONITOR_FROM", value_name = "URL|FILE")]
    pub monitor_from: Option<String>,
    /// Do not sample the API's and the workers' Python processes with py-spy while the
    /// in-process monitor runs (on by default wherever uvicorn, gunicorn, celery... run).
    #[arg(long, env = "LOADGEN_NO_PROFILING")]
    pub no_profiling: bool,
    /// How often the live view prints.
    #[arg(long, env = "LOADGEN_STATS_INTERVAL", default_value = "2s", value_parser = common::duration::parse_positive_arg)]
    pub stats_interval: Duration,
    /// Accepted for Locust compatibility: the live table is printed unless --only-summary.
    #[arg(long, env = "LOADGEN_PRINT_STATS")]
    pub print_stats: bool,
}

/// Whether `-f` names a Python locustfile rather than a TOML scenario.
fn is_locustfile(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "py")
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the testbed with a planted bottleneck, load it with the monitor on, and diagnose it
    /// (runs the `loadgen-demo` binary installed beside loadgen; its flags pass through).
    #[command(disable_help_flag = true)]
    Demo {
        /// Flags for `loadgen-demo` (see `loadgen demo --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Find the highest arrival rate the API sustains under an objective, and what breaks
    /// first beyond it: steps of the open model, then bisection (`loadgen capacity --help`
    /// lists its flags under "Capacity search"; every run flag applies to each step).
    #[command(disable_help_flag = true)]
    Capacity {
        /// The flags of the search and of its runs.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// A load environment for users without a stack of their own: `env up` starts the FFmpeg
    /// API stack of docker/compose.load.yml, `env seed` makes accounts for --user-data, `env
    /// down` removes what `up` made.
    Env {
        /// What to do.
        #[command(subcommand)]
        action: crate::env::EnvAction,
    },
    /// Print or check scenario files.
    Scenario {
        /// What to do.
        #[command(subcommand)]
        action: ScenarioAction,
    },
    /// Write a scenario on stdout from what you have: a locustfile (`loadgen import locust
    /// locustfile.py > scenario.toml`), an OpenAPI document (`import openapi URL|FILE`) or a
    /// browser's recording (`import har FILE`). Exit code: 0 all translated, 3 some places not
    /// translated (listed on stderr, each a comment in the scenario), 2 an error.
    Import {
        /// What to import.
        #[command(subcommand)]
        what: import::ImportAction,
    },
}

/// `loadgen scenario ...`.
#[derive(Debug, Subcommand)]
pub enum ScenarioAction {
    /// Print the built-in FFmpeg API scenario (copy it, edit it, run it with -f).
    Show,
    /// Check a scenario file; errors name the line and the key.
    Check {
        /// The file.
        file: PathBuf,
        /// Folder of the files the scenario uploads (as for a run).
        #[arg(long, env = "LOADGEN_FIXTURES", default_value = "tests/fixtures")]
        fixtures: PathBuf,
        /// Check this --user-data CSV file against the scenario too.
        #[arg(long, value_name = "FILE.csv")]
        user_data: Option<PathBuf>,
    },
}

pub use crate::exit_code::ExitCodeMode;

/// Locust flags that loadgen takes so that a Locust command line runs: the web UI's https
/// (`--tls-cert`, `--tls-key`) and base path, and those it does not honour, each with a warning that says
/// what is not supported ([`LocustOnlyArgs::warnings`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LocustOnlyArgs {
    /// Locust: fork N worker processes. loadgen runs its users on --threads OS threads instead.
    #[arg(
        long,
        env = "LOADGEN_PROCESSES",
        value_name = "N",
        allow_hyphen_values = true
    )]
    pub processes: Option<i64>,
    /// Locust: a login page for the web UI. Not supported: use --web-auth USER:PASSWORD.
    #[arg(long, env = "LOADGEN_WEB_LOGIN")]
    pub web_login: bool,
    /// Serve the web UI over https with this certificate chain (PEM), as Locust's.
    #[arg(long, env = "LOADGEN_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "LOADGEN_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve the web UI under this path (e.g. /loadgen, for a reverse proxy), as Locust's.
    #[arg(long, env = "LOADGEN_WEB_BASE_PATH", value_name = "PATH")]
    pub web_base_path: Option<String>,
    /// Locust: leave logging to the locustfile. loadgen always sets up its own log.
    #[arg(long, env = "LOADGEN_SKIP_LOG_SETUP")]
    pub skip_log_setup: bool,
    /// Locust: JSON settings for user classes. Not supported: set them in the scenario file.
    #[arg(long, env = "LOADGEN_CONFIG_USERS", num_args = 1.., value_name = "JSON")]
    pub config_users: Vec<String>,
    /// Locust: undo a --headless set in a config file.
    #[arg(long, env = "LOADGEN_HEADFUL")]
    pub headful: bool,
    /// Locust: the host name the web UI shows. Ignored.
    #[arg(long, env = "LOADGEN_WEB_HOST_DISPLAY_NAME", value_name = "NAME")]
    pub web_host_display_name: Option<String>,
    /// Locust: a folder of web UI assets. Ignored: loadgen's UI is built in.
    #[arg(long, env = "LOADGEN_BUILD_PATH", value_name = "DIR")]
    pub build_path: Option<PathBuf>,
    /// Locust: OpenTelemetry. Not supported.
    #[arg(long, env = "LOADGEN_OTEL")]
    pub otel: bool,
    /// Locust: move users to new workers. Ignored: a worker that joins takes its share.
    #[arg(long, env = "LOADGEN_ENABLE_REBALANCING")]
    pub enable_rebalancing: bool,
}

impl LocustOnlyArgs {
    /// One line per flag given that loadgen does not honour, saying so.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut say = |given: bool, text: &str| {
            if given {
                out.push(text.to_owned());
            }
        };
        say(
            self.processes.is_some(),
            "--processes is not supported (loadgen runs users on --threads OS threads, one per core by default); ignored",
        );
        say(
            self.web_login,
            "--web-login is not supported (use --web-auth USER:PASSWORD); ignored",
        );
        say(
            self.tls_cert.is_some() != self.tls_key.is_some(),
            "--tls-cert and --tls-key go together: with one of them the web UI is served over plain http, as Locust's",
        );
        say(
            self.skip_log_setup,
            "--skip-log-setup: loadgen always sets up its own log; ignored",
        );
        say(
            !self.config_users.is_empty(),
            "--config-users is not supported (set user types' settings in the scenario file); ignored",
        );
        say(
            self.web_host_display_name.is_some(),
            "--web-host-display-name is not supported; ignored",
        );
        say(
            self.build_path.is_some(),
            "--build-path is not supported (the web UI is built in); ignored",
        );
        say(
            self.otel,
            "--otel (OpenTelemetry) is not supported; ignored",
        );
        say(
            self.enable_rebalancing,
            "--enable-rebalancing: workers that join take their share without it; ignored",
        );
        out
    }
}

/// The seed's four profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// 10 users, 1 per second, 30 s.
    Smoke,
    /// 100 users, 10 per second, 5 min.
    Medium,
    /// 500 users, 50 per second, 10 min.
    Stress,
    /// 100 users, 5 per second, 1 h.
    Endurance,
}

impl Profile {
    /// (users, spawn rate, run time).
    pub fn settings(self) -> (u64, f64, Duration) {
        match self {
            Self::Smoke => (10, 1.0, Duration::from_secs(30)),
            Self::Medium => (100, 10.0, Duration::from_secs(300)),
            Self::Stress => (500, 50.0, Duration::from_secs(600)),
            Self::Endurance => (100, 5.0, Duration::from_secs(3600)),
        }
    }
}

/// A log level, in Locust's spelling (`DEBUG`) or tracing's (`debug`).
fn parse_level(text: &str) -> Result<String, String> {
    let level = text.trim().to_ascii_lowercase();
    let level = if level == "warning" {
        "warn".to_owned()
    } else {
        level
    };
    match level.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" => Ok(level),
        "critical" => Ok("error".to_owned()),
        _ => Err(format!(
            "{text:?}: use ERROR, WARNING, INFO, DEBUG or TRACE"
        )),
    }
}

/// `64MiB`, `500KB`, `1048576`: a byte count, with an optional binary or decimal unit.
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?}: use B, KB, KiB, MB, MiB, GB or GiB"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is not a positive size such as 64MiB"))
}

fn env_host() -> Option<String> {
    ["LOCUST_HOST", "LOCUST_BASE_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

/// `--arrival-rate`'s value: `500/s`, `30/m`.
fn parse_rate(text: &str) -> Result<crate::arrival::Rate, String> {
    crate::arrival::Rate::parse(text).map_err(|e| e.to_string())
}

impl Cli {
    /// `--html`'s file name with Locust's tags filled in: `{u}` the users, `{r}` the spawn
    /// rate, `{t}` the run time in seconds, each as given (a tag whose value was not given is
    /// left as it is, as Locust leaves it).
    fn html_file_name(&self, html: &std::path::Path) -> PathBuf {
        let Some(text) = html.to_str() else {
            return html.to_path_buf();
        };
        // As Locust's: a whole number without ".0".
        let number = |x: f64| {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{}", x as i64)
            } else {
                x.to_string()
            }
        };
        let mut name = text.to_owned();
        for (tag, value) in [
            ("{u}", self.users.map(|u| u as f64)),
            ("{r}", self.spawn_rate),
            ("{t}", self.run_time.map(|t| t.as_secs() as f64)),
        ] {
            if let Some(value) = value {
                name = name.replace(tag, &number(value));
            }
        }
        PathBuf::from(name)
    }

    /// `--tls-cert` with `--tls-key`: the web UI's https configuration (one without the other
    /// serves plain http, as Locust's, with a warning from [`Cli::locust_warnings`]).
    fn web_tls(&self) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
        use crate::cluster::tls::{ClusterTlsError, server_config};
        let (Some(cert), Some(key)) = (&self.locust.tls_cert, &self.locust.tls_key) else {
            return Ok(None);
        };
        server_config(cert, key).map(Some).map_err(|e| match e {
            // Named by the web UI's flags, not the master's.
            ClusterTlsError::File { flag, path, cause } => anyhow::anyhow!(
                "{} {}: {cause}",
                flag.replace("--master-", "--"),
                path.display()
            ),
            other => anyhow::anyhow!("--tls-cert/--tls-key: {other}"),
        })
    }

    /// What a Locust command line asks that loadgen reads another way, or takes without
    /// honouring: one warning each, printed before the run.
    pub fn locust_warnings(&self) -> Vec<String> {
        let mut out = self.locust.warnings();
        if self.cluster.expect_workers.is_some() && !self.cluster.master {
            out.push("--expect-workers without --master: ignored, as Locust ignores it".into());
        }
        if self.run_time.is_some() && !self.headless && !self.autostart && !self.cluster.worker {
            out.push(
                "-t/--run-time without --headless or --autostart: the web UI is served and \
                 waits for its form, as Locust's (pass --headless to run at once)"
                    .into(),
            );
        }
        if let Some(label) = &self.profile
            && <Profile as ValueEnum>::from_str(label, true).is_ok()
        {
            out.push(format!(
                "--profile {label} is a free label, as Locust's: to run the {label} load \
                 profile, write --load-profile {label}"
            ));
        }
        out
    }

    /// `-l/--list`, `--show-task-ratio`, `--show-task-ratio-json`: what Locust prints for them
    /// (the user types, or the share of users and tasks of each), when one was asked.
    pub fn inspection(&self) -> anyhow::Result<Option<String>> {
        if !(self.list || self.show_task_ratio || self.show_task_ratio_json) {
            return Ok(None);
        }
        let source = self.scenario_source()?;
        let scenario = source.load(&self.fixtures)?;
        if self.list {
            let mut out = "Available Users:\n".to_owned();
            for user in &scenario.users {
                out.push_str(&format!("    {}\n", user.name));
            }
            return Ok(Some(out));
        }
        let ratios = crate::report::locust_json::task_ratios(&scenario, self.users);
        if self.show_task_ratio_json {
            let json = serde_json::json!({
                "per_class": crate::report::locust_json::ratios_json(&ratios, false),
                "total": crate::report::locust_json::ratios_json(&ratios, true),
            });
            let text = crate::report::locust_json::indented(&json).map_err(anyhow::Error::msg)?;
            return Ok(Some(format!("{}\n", String::from_utf8_lossy(&text))));
        }
        let mut out = String::new();
        for (title, total) in [
            ("Task ratio per User class", false),
            ("Total task ratio", true),
        ] {
            out.push_str(&format!("\n {title}\n{}\n", "-".repeat(80)));
            for (user, share, tasks) in &ratios {
                out.push_str(&format!(
                    " {:<10} {:<50}\n",
                    format!("{:<6.1}", share * 100.0),
                    user
                ));
                for (task, task_share) in tasks {
                    let task_share = if total {
                        task_share * share
                    } else {
                        *task_share
                    };
                    out.push_str(&format!(
                        " {:<10} {:<50}\n",
                        format!("  {:<6.1}", task_share * 100.0),
                        format!("  {task}")
                    ));
                }
            }
        }
        Ok(Some(out))
    }

    /// Resolves what the user typed into a checked [`RunConfig`]: flags beat `LOADGEN_*`
    /// variables (clap applies both), which beat `--load-profile`, which beats the defaults.
    pub fn resolve(&self) -> anyhow::Result<RunConfig> {
        let host = self.host.clone().or_else(env_host).or_else(|| self.locustfile_host()).context(
            "no host to load: pass -H/--host http://HOST:PORT (or set LOADGEN_HOST or LOCUST_HOST)",
        )?;
        self.resolve_with_host(host, true)
    }

    /// As [`Cli::resolve`], for `loadgen capacity`: the run each step starts from (its rate,
    /// run time and users set per step), and the plan of the steps. Flags that choose the
    /// load themselves are refused, saying so.
    pub fn resolve_for_capacity(&self) -> anyhow::Result<(RunConfig, CapacityPlan)> {
        for (given, flag) in [
            (self.arrival_rate.is_some(), "--arrival-rate"),
            (self.arrival_stages.is_some(), "--arrival-stages"),
            (self.shape.is_some(), "--shape"),
            (self.run_time.is_some(), "-t/--run-time"),
            (self.load_profile.is_some(), "--load-profile"),
            (self.spawn_rate.is_some(), "-r/--spawn-rate"),
            (self.reset_stats, "--reset-stats"),
            (self.cluster.worker, "--worker"),
        ] {
            if given {
                bail!(
                    "{flag}: a capacity search sets each step's rate and length itself \
                     (--start-rate, --step, --step-time, --ceiling); leave {flag} out"
                );
            }
        }
        let host = self.host.clone().or_else(env_host).context(
            "no host to load: pass -H/--host http://HOST:PORT (or set LOADGEN_HOST or LOCUST_HOST)",
        )?;
        let mut config = self.resolve_with_host(host, false)?;
        if config
            .scenario
            .users
            .iter()
            .any(|u| u.arrival_rate.is_some())
            || !config.load.shape.is_empty()
        {
            bail!(
                "the scenario sets its own arrival rates or shape: a capacity search sets the \
                 rate of each step; remove them (or run the scenario headless)"
            );
        }
        config.load.threads = self.threads_for(None)?;
        let mut plan = self.capacity.plan(
            &config.targets,
            (self.max_users.or(self.users), self.pre_allocate),
        )?;
        // Read now, so that a wrong file costs no step.
        if let Some(path) = &self.baseline {
            use crate::config::capacity::{CapacityBaseline, DEFAULT_CAPACITY_FALL_PCT};
            let max_fall_pct = match self.regression {
                None => DEFAULT_CAPACITY_FALL_PCT,
                Some(asked)
                    if asked
                        == (Thresholds {
                            rps: asked.rps,
                            ..Thresholds::default()
                        }) =>
                {
                    asked.rps.unwrap_or(DEFAULT_CAPACITY_FALL_PCT)
                }
                Some(_) => bail!(
                    "--regression: a capacity search compares only its capacity; write \
                     --regression rps=-N% (how far it may fall, default {DEFAULT_CAPACITY_FALL_PCT}%)"
                ),
            };
            plan.baseline = Some(
                CapacityBaseline::load(path, &config.scenario.identity(), &plan.slo, max_fall_pct)
                    .map_err(anyhow::Error::msg)?,
            );
        }
        Ok((config, plan))
    }

    /// As [`Cli::resolve`], for the web UI, whose form may give the host: an empty host when
    /// none was given.
    pub fn resolve_for_web(&self) -> anyhow::Result<RunConfig> {
        // The form may ask for more users than the command line: threads are not capped by them.
        self.resolve_with_host(
            self.host.clone().or_else(env_host).unwrap_or_default(),
            false,
        )
    }

    /// The user threads: `--threads` (or one per core), capped at what this machine and the
    /// users (when `users_are_final`) can use, with a warning when the flag asked for more.
    pub fn threads(&self, users_are_final: bool) -> anyhow::Result<usize> {
        let (users, _, _) = self.load_shape()?;
        self.threads_for(users_are_final.then_some(users))
    }

    /// `--threads` (or one per core), refused when 0.
    fn asked_threads(&self) -> anyhow::Result<usize> {
        Ok(match self.threads {
            Some(0) => bail!("--threads 0: run users on at least one thread"),
            Some(n) => n,
            None => LoadSettings::default().threads,
        })
    }

    /// As [`Cli::threads`], capped by `users` when they are known.
    fn threads_for(&self, users: Option<u64>) -> anyhow::Result<usize> {
        let asked = self.asked_threads()?;
        let (threads, why) = crate::config::cap_threads(asked, users);
        if let (Some(why), Some(_)) = (why, self.threads) {
            eprintln!("loadgen: warning: {why}");
        }
        Ok(threads)
    }

    fn resolve_with_host(&self, host: String, users_are_final: bool) -> anyhow::Result<RunConfig> {
        let (users, spawn_rate, run_time) = self.load_shape()?;
        // Checked before the scenario's files are read, as every flag of its own.
        self.asked_threads()?;
        let scenario_source = self.scenario_source()?;
        let scenario = scenario_source.load(&self.fixtures)?;
        let shape = self.shape(&scenario)?;
        let (users, spawn_rate, run_time, stages) = match &shape {
            Some(shape @ Shape::Users(stages)) => {
                let (first, run_time) = (stages[0], self.shape_run_time(shape));
                (first.users, first.spawn_rate, run_time, stages.clone())
            }
            Some(shape) => (users, spawn_rate, self.shape_run_time(shape), Vec::new()),
            None => (users, spawn_rate, run_time, Vec::new()),
        };
        let peak = Some(shape::peak_users(&stages)).filter(|_| !stages.is_empty());
        let threads = self.threads_for(users_are_final.then_some(peak.unwrap_or(users)))?;
        let arrival = match &shape {
            Some(Shape::Users(_)) => None,
            Some(rates) => self.arrival_with(&scenario, Some(rates.arrival_stages()))?,
            None => self.arrival_with(&scenario, None)?,
        };
        // k6's ramping-arrival-rate lasts as long as its stages.
        let run_time = run_time.or(arrival.as_ref().and_then(|a| a.stages_length()));
        let backend = self.backend()?;
        if let Some(BackendConfig::File(path)) = &backend
            && !path.is_file()
        {
            bail!(
                "--monitor-from {}: no such file: give the file a monitor writes with --out, \
                 or its URL (http://HOST:9187)",
                path.display()
            );
        }
        let baseline = match &self.baseline {
            // A capacity search's baseline is an earlier search's: `resolve_for_capacity` reads it.
            Some(_) if self.capacity.asked => None,
            Some(path) => Some(BaselineCheck {
                baseline: Baseline::load(path, &scenario.identity())?,
                thresholds: self.regression.unwrap_or_default(),
            }),
            None => None,
        };
        Ok(RunConfig {
            worker_logs: self.worker_logs.clone(),
            stack: crate::config::StackConfig {
                spec: self.stack.clone(),
                discovered: None,
            },
            host,
            scenario,
            scenario_source,
            baseline,
            load: LoadSettings {
                users,
                spawn_rate,
                run_time,
                threads,
                timeout: self.timeout,
                max_redirects: self.max_redirects,
                max_body: self.max_body,
                tls: TlsSettings {
                    ca_cert: self.ca_cert.clone(),
                    insecure: self.insecure,
                },
                job_sample: self.job_sample,
                memory_limit: self.memory_limit.map(|mb| mb.saturating_mul(1_000_000)),
                reset_stats: self.reset_stats,
                stop_timeout: self.stop_timeout.unwrap_or_default(),
                arrival,
                latency_correction: self.latency_correction,
                shape: stages,
                ..LoadSettings::default()
            },
            exit_code_on_error: self.exit_code_on_error,
            exit_code_mode: self.exit_code_mode,
            targets: {
                // The concurrency target is the users asked for, unless given.
                let mut targets = Targets::with(&self.targets);
                targets.users.get_or_insert(peak.unwrap_or(users));
                targets
            },
            backend,
            outputs: Outputs {
                csv: self.csv.clone(),
                csv_full_history: self.csv_full_history,
                json: self.report_json.clone(),
                locust_json: self.json,
                locust_json_file: self
                    .json_file
                    .as_ref()
                    .map(|name| PathBuf::from(format!("{name}.json"))),
                html: self.html.as_ref().map(|html| self.html_file_name(html)),
                junit: self.junit.clone(),
                summary_md: self.summary_md.clone(),
            },
            live: LiveConfig {
                quiet: self.only_summary,
                every: self.stats_interval,
            },
        })
    }

    /// How the web UI is served.
    pub fn web_settings(&self) -> anyhow::Result<crate::web::WebSettings> {
        let ip: std::net::IpAddr = match self.web_host.as_str() {
            "" | "*" => std::net::Ipv4Addr::UNSPECIFIED.into(),
            "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
            host => host.parse().with_context(|| {
                format!("--web-host {host}: not an IP address (e.g. 127.0.0.1, or 0.0.0.0 for all)")
            })?,
        };
        if let Some(auth) = &self.web_auth
            && !auth.contains(':')
        {
            bail!("--web-auth: write USER:PASSWORD");
        }
        if self.autoquit.is_some() && !self.autostart {
            bail!("--autoquit only makes sense with --autostart");
        }
        if let Some(bad) = self
            .web_allowed_hosts
            .iter()
            .find(|h| h.trim().is_empty() || h.contains(['/', ':', '@', ' ']))
        {
            bail!("--web-allowed-host {bad:?}: give a host name only, e.g. loadgen.internal");
        }
        let listen = std::net::SocketAddr::new(ip, self.web_port);
        crate::web::check_exposure(listen, self.web_auth.as_deref(), self.web_insecure_no_auth)
            .map_err(anyhow::Error::msg)?;
        Ok(crate::web::WebSettings {
            listen,
            autostart: self.autostart,
            autoquit: self.autoquit.map(Duration::from_secs),
            class_picker: self.class_picker,
            auth: self.web_auth.clone(),
            allowed_hosts: self.web_allowed_hosts.clone(),
            insecure_no_auth: self.web_insecure_no_auth,
            tls: self.web_tls()?,
            base_path: match self
                .locust
                .web_base_path
                .as_deref()
                .map(|p| p.trim_end_matches('/'))
            {
                None | Some("") => String::new(),
                Some(path) if path.starts_with('/') && !path.contains(['?', '#']) => {
                    path.to_owned()
                }
                Some(path) => {
                    bail!("--web-base-path {path}: the path must start with a slash, e.g. /loadgen")
                }
            },
        })
    }

    /// The open model, when --arrival-rate or --arrival-stages asks for it, or `scenario`'s
    /// `[load]` table or a user type's `arrival_rate` does (the flags beat the file), checked.
    pub fn arrival(
        &self,
        scenario: &crate::scenario::Scenario,
    ) -> anyhow::Result<Option<crate::arrival::Arrival>> {
        self.arrival_with(scenario, None)
    }

    /// As [`Cli::arrival`]; a rate shape's `shaped` stages, when given, beat the flags' and the
    /// file's stages and rate.
    fn arrival_with(
        &self,
        scenario: &crate::scenario::Scenario,
        shaped: Option<Vec<crate::arrival::Stage>>,
    ) -> anyhow::Result<Option<crate::arrival::Arrival>> {
        use crate::arrival::{Arrival, Stage};
        let per_type = scenario.users.iter().any(|u| u.arrival_rate.is_some());
        if shaped.is_none()
            && self.arrival_rate.is_none()
            && self.arrival_stages.is_none()
            && scenario.load.is_none()
            && !per_type
        {
            // A capacity search is the open model: it sets each step's rate itself, caps each
            // step's users at --max-users and starts --pre-allocate of them first.
            let set_later = self.capacity.asked;
            for (given, flag) in [
                (self.max_users.is_some() && !set_later, "--max-users"),
                (self.pre_allocate.is_some() && !set_later, "--pre-allocate"),
            ] {
                if given {
                    bail!(
                        "{flag} is for the open model: give --arrival-rate or --arrival-stages too"
                    );
                }
            }
            return Ok(None);
        }
        let stages = match &self.arrival_stages {
            Some(text) => {
                Stage::parse_list(text).map_err(|e| anyhow::anyhow!("--arrival-stages: {e}"))?
            }
            None => Vec::new(),
        };
        let flags = Arrival {
            rate: self.arrival_rate,
            stages,
            max_users: None,
            pre_allocate: self.pre_allocate,
        };
        let mut merged = match &scenario.load {
            Some(file) => flags.or_file(file),
            None => flags,
        };
        if let Some(stages) = shaped {
            // Each stage jumps to its rate: the rate it would ramp from does not matter.
            (merged.rate, merged.stages) = (None, stages);
        }
        if merged.stages.is_empty()
            && !per_type
            && merged.rate.is_none_or(|r| r.count_per_minute() == 0)
        {
            bail!(
                "--arrival-rate {}: starts no iteration: give a rate above 0, or --arrival-stages",
                merged.rate.unwrap_or_default()
            );
        }
        // -u is the closed model's users; beside an arrival rate it caps the users instead.
        let max_users = match (self.max_users, self.users) {
            (Some(_), Some(_)) => bail!(
                "-u/--users and --max-users both given: in the open model -u is --max-users; give one"
            ),
            (Some(0), None) | (None, Some(0)) => bail!("--max-users 0: allow at least one user"),
            (max, users) => max.or(users).or(merged.max_users),
        };
        if let (Some(pre), Some(max)) = (merged.pre_allocate, max_users)
            && pre > max
        {
            bail!("--pre-allocate {pre} is above --max-users {max}: pre-allocate at most the cap");
        }
        Ok(Some(Arrival {
            max_users,
            ..merged
        }))
    }

    /// The load shape: `--shape FILE`, else the scenario's `[[shape]]`. The shape wins over
    /// -u, -r, --load-profile and the arrival flags (as Locust's and k6's do): each one given
    /// gets a warning that says so.
    fn shape(&self, scenario: &crate::scenario::Scenario) -> anyhow::Result<Option<Shape>> {
        let shape = match &self.shape {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--shape {}: cannot read it", path.display()))?;
                let name = path.display().to_string();
                Some(crate::scenario::parse_shape(&text, &name)?)
            }
            None => scenario.shape.clone(),
        };
        let Some(shape) = shape else {
            return Ok(None);
        };
        let from = match &self.shape {
            Some(path) => format!("--shape {}", path.display()),
            None => "the scenario's [[shape]]".to_owned(),
        };
        let users_shape = matches!(shape, Shape::Users(_));
        let ignored = [
            (self.users.is_some() && users_shape, "-u/--users"),
            (self.spawn_rate.is_some(), "-r/--spawn-rate"),
            (self.load_profile.is_some(), "--load-profile"),
            (self.arrival_rate.is_some(), "--arrival-rate"),
            (self.arrival_stages.is_some(), "--arrival-stages"),
            (
                scenario.load.is_some() && users_shape,
                "the scenario's [load]",
            ),
        ];
        for (_, what) in ignored.iter().filter(|(given, _)| *given) {
            eprintln!("loadgen: warning: {what} ignored: {from} sets the load");
        }
        Ok(Some(shape))
    }

    /// A shape's run time: the sum of its stages, or -t when it is shorter (a longer -t gets a
    /// warning: the run ends with the shape).
    fn shape_run_time(&self, shape: &Shape) -> Option<Duration> {
        let length = shape.length();
        match self.run_time {
            Some(t) if t < length => Some(t),
            Some(t) => {
                if t > length {
                    eprintln!(
                        "loadgen: warning: -t {}: the shape ends the run after {}",
                        humantime::format_duration(t),
                        humantime::format_duration(length)
                    );
                }
                Some(length)
            }
            None => Some(length),
        }
    }

    /// Users, spawn rate and run time: the flag (or its variable, or the config file), else the
    /// profile's, else 1 user, 1 a second, until stopped.
    pub fn load_shape(&self) -> anyhow::Result<(u64, f64, Option<Duration>)> {
        let profile = self.load_profile.map(Profile::settings);
        let users = self.users.or(profile.map(|p| p.0)).unwrap_or(1);
        let spawn_rate = self.spawn_rate.or(profile.map(|p| p.1)).unwrap_or(1.0);
        if !(spawn_rate.is_finite() && spawn_rate > 0.0) {
            bail!("--spawn-rate {spawn_rate}: must be a positive number of users per second");
        }
        if users == 0 {
            bail!("--users 0: run at least one user");
        }
        Ok((users, spawn_rate, self.run_time.or(profile.map(|p| p.2))))
    }

    /// The `host = ...` of a `-f locustfile.py`'s user class, as Locust takes it when no
    /// `-H` is given.
    fn locustfile_host(&self) -> Option<String> {
        let path = self.scenario.as_ref().filter(|p| is_locustfile(p))?;
        import::import_locustfile(path).ok()?.host
    }

    /// The scenario as chosen: its text (the file, or the built-in one) and the user types and
    /// tags picked.
    pub fn scenario_source(&self) -> anyhow::Result<ScenarioSource> {
        let base = match &self.scenario {
            Some(path) if is_locustfile(path) => {
                // Locust's habit kept: `-f locustfile.py` runs it, through the importer.
                let imported = import::import_locustfile(path)?;
                let name = path.display().to_string();
                if imported.is_partial() {
                    eprint!("{}", imported.report(&name));
                    eprintln!(
                        "loadgen: warning: {} place(s) of {name} not translated: the run goes \
                         on without them (`loadgen import locust {name}` writes the scenario \
                         to edit)",
                        imported.untranslated.len()
                    );
                }
                ScenarioSource {
                    text: imported.toml,
                    name: format!("{name} (imported)"),
                    ..ScenarioSource::default()
                }
            }
            Some(path) => ScenarioSource {
                text: std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read scenario file {}", path.display()))?,
                name: path.display().to_string(),
                ..ScenarioSource::default()
            },
            None => ScenarioSource::builtin(),
        };
        let user_data = match &self.user_data {
            Some(path) => {
                Some(crate::scenario::data::UserData::read(path).map_err(anyhow::Error::msg)?)
            }
            None => None,
        };
        Ok(ScenarioSource {
            user_data,
            user_classes: self
                .user_classes
                .iter()
                .chain(&self.user_types)
                .cloned()
                .collect(),
            equal_weights: self.equal_weights,
            tags: self.tags.clone(),
            exclude_tags: self.exclude_tags.clone(),
            ..base
        })
    }

    /// What the monitor flags ask for, if anything. The host is watched whenever the monitor
    /// runs in-process.
    fn backend(&self) -> anyhow::Result<Option<BackendConfig>> {
        use monitor::sources::{SourcesConfig, postgres, redis};
        // A URL that names no server is one clear error now, not a source down all run.
        if let Some(url) = &self.monitor_postgres {
            postgres::check_url(url).map_err(|why| anyhow::anyhow!("--monitor-postgres {why}"))?;
        }
        if let Some(url) = &self.monitor_redis {
            redis::check_url(url).map_err(|why| anyhow::anyhow!("--monitor-redis {why}"))?;
        }
        if let Some(from) = &self.monitor_from {
            return Ok(Some(
                if from.starts_with("http://") || from.starts_with("https://") {
                    BackendConfig::Sidecar(from.trim_end_matches('/').to_owned())
                } else {
                    BackendConfig::File(PathBuf::from(from))
                },
            ));
        }
        let sources = SourcesConfig {
            docker: self.monitor_docker.clone(),
            postgres: self
                .monitor_postgres
                .clone()
                .map(|url| (url, postgres::Scope::Database)),
            redis: self
                .monitor_redis
                .clone()
                .map(|url| (url, self.monitor_redis_queue.clone())),
            host: None,
            profiles: None,
        };
        if sources.is_empty() && self.stack.is_none() {
            return Ok(None);
        }
        let defaults = crate::backend::in_process_sources(
            self.host.as_deref().unwrap_or_default(),
            !self.no_profiling,
        );
        Ok(Some(BackendConfig::InProcess(SourcesConfig {
            host: defaults.host,
            profiles: defaults.profiles,
            ..sources
        })))
    }
}

fn parse_ratio(input: &str) -> Result<f64, String> {
    input
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("{input:?} is not a ratio from 0 to 1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--tags` keeps tagged tasks, `--exclude-tags` drops them, and a filter that leaves
    /// nothing is one clear error.
    #[test]
    fn tags_and_exclude_tags_filter_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tagged.toml");
        std::fs::write(
            &file,
            "[[users]]\nname = 'U'\n\n[[users.tasks]]\ntags = ['read']\nrun = ['a']\n\n\
             [[users.tasks]]\ntags = ['slow']\nrun = ['b']\n\n\
             [users.steps.a]\npath = '/a'\n\n[users.steps.b]\npath = '/b'\n",
        )
        .unwrap();
        let tasks = |extra: &[&str]| {
            let mut args = vec!["loadgen", "-H", "http://127.0.0.1:9", "-f"];
            let path = file.display().to_string();
            args.push(&path);
            args.extend(extra);
            Cli::try_parse_from(args).unwrap().resolve().map(|config| {
                config.scenario.users[0]
                    .tasks
                    .iter()
                    .flat_map(|t| t.tags.clone())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(tasks(&[]).unwrap(), ["read", "slow"]);
        assert_eq!(tasks(&["-T", "read"]).unwrap(), ["read"]);
        assert_eq!(tasks(&["-E", "slow"]).unwrap(), ["read"]);
        let error = tasks(&["--exclude-tags", "read,slow"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("nothing is left to run"), "{error}");
    }

    /// The in-process monitor profiles the Python processes unless `--no-profiling`.
    #[test]
    fn profiling_is_on_with_the_monitor_unless_no_profiling() {
        let profiles = |extra: &[&str]| {
            let mut args = vec![
                "loadgen",
                "-H",
                "http://127.0.0.1:9",
                "--monitor-redis",
                "redis://127.0.0.1:9",
            ];
            args.extend(extra);
            match Cli::try_parse_from(args).unwrap().backend().unwrap() {
                Some(BackendConfig::InProcess(sources)) => sources.profiles,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            profiles(&[]).map(|p| p.rate_hz),
            Some(monitor::sources::profiles::Profiling::default().rate_hz)
        );
        // The API profiled is the one serving the host's port.
        assert_eq!(profiles(&[]).and_then(|p| p.api_port), Some(9));
        assert_eq!(profiles(&["--no-profiling"]), None);
    }

    #[test]
    fn takes_the_seeds_commands() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--headless",
            "-u",
            "100",
            "-r",
            "10",
            "-t",
            "2m",
            "--host",
            "http://localhost:8000",
        ])
        .unwrap();
        assert_eq!(
            (cli.users, cli.spawn_rate, cli.run_time),
            (Some(100), Some(10.0), Some(Duration::from_secs(120)))
        );
        let cli = Cli::try_parse_from([
            "loadgen",
            "--load-profile",
            "smoke",
            "--csv",
            "out/run",
            "--target",
            "p95=800ms",
        ])
        .unwrap();
        assert_eq!(cli.load_profile, Some(Profile::Smoke));
        assert_eq!(cli.targets.len(), 1);
        for (run_time, expected) in [
            ("soon", "write e.g. 30s"),
            ("10000000000000000000", "longer than a year"),
            ("400000000000years", "longer than a year"),
            ("0s", "is zero"),
        ] {
            let error = Cli::try_parse_from(["loadgen", "-t", run_time])
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{run_time}: {error}");
        }
        let zero_threads = Cli::try_parse_from(["loadgen", "-H", "http://x", "--threads", "0"])
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(zero_threads.contains("--threads 0"), "{zero_threads}");
        let zero_timeout = Cli::try_parse_from(["loadgen", "--timeout", "0s"])
            .unwrap_err()
            .to_string();
        assert!(zero_timeout.contains("is zero"), "{zero_timeout}");
    }

    /// `--html`'s tags as Locust fills them: a whole rate without ".0", the run time in
    /// seconds, a tag without a value left as it is.
    #[test]
    fn html_tags_are_filled_as_locust_fills_them() {
        let name = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["loadgen"][..], args].concat()).unwrap();
            cli.html_file_name(std::path::Path::new("r_{u}_{r}_{t}.html"))
        };
        assert_eq!(
            name(&["-u", "10", "-r", "2", "-t", "1m"]),
            PathBuf::from("r_10_2_60.html")
        );
        assert_eq!(
            name(&["-r", "0.5", "-t", "90s"]),
            PathBuf::from("r_{u}_0.5_90.html")
        );
    }

    /// Locust's flags without a counterpart are taken, each with a warning that names it.
    #[test]
    fn locust_only_flags_are_taken_with_a_warning() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "--processes",
            "-1",
            "--web-login",
            "--tls-cert",
            "c.pem",
            "--web-base-path",
            "/lg",
            "--expect-workers",
            "2",
            "--profile",
            "stress",
            "-t",
            "5s",
        ])
        .unwrap();
        let warnings = cli.locust_warnings().join("\n");
        for flag in [
            "--processes",
            "--web-login",
            "--tls-cert and --tls-key go together",
            "--expect-workers without --master",
            "--load-profile stress",
            "-t/--run-time without --headless",
        ] {
            assert!(warnings.contains(flag), "{flag}: {warnings}");
        }
    }

    #[test]
    fn request_timeout_and_max_redirects_are_flags() {
        let defaults = Cli::try_parse_from(["loadgen"]).unwrap();
        assert_eq!(
            (defaults.timeout, defaults.max_redirects),
            (Duration::from_secs(60), 10)
        );
        let set = Cli::try_parse_from([
            "loadgen",
            "--request-timeout",
            "2500ms",
            "--max-redirects",
            "3",
        ])
        .unwrap();
        assert_eq!(
            (set.timeout, set.max_redirects),
            (Duration::from_millis(2500), 3)
        );
        let bad = Cli::try_parse_from(["loadgen", "--max-redirects", "many"])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("--max-redirects"), "{bad}");
    }
}
