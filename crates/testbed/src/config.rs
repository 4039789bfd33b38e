//! The testbed's settings: flags, each with the environment variable other tools rely on, and
//! the knobs that plant known bottlenecks (all off by default).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// A reference FFmpeg API for load tests, with knobs that plant known bottlenecks.
///
/// Without --database-url and --redis-url it keeps everything in memory and says so.
#[derive(Debug, Clone, Parser)]
#[command(name = "testbed", version)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "TESTBED_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// PostgreSQL URL; without it, users, files and tasks live in memory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis URL of the job queue (e.g. redis://127.0.0.1:6379/1); without it, in memory.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Name of the Redis list jobs are queued on (Celery's default queue is `celery`).
    #[arg(long, env = "TESTBED_QUEUE", default_value = "celery")]
    pub queue_name: String,
    /// Folder for uploaded files and job outputs (default: a new temporary folder).
    #[arg(long, env = "TESTBED_STORAGE_DIR")]
    pub storage_dir: Option<PathBuf>,

    /// bcrypt cost of password hashing; the real API uses 12, which makes login and register
    /// CPU-heavy. 4 (the minimum) keeps them cheap.
    #[arg(long, env = "TESTBED_HASH_COST", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    pub hash_cost: u32,
    /// Serve requests on one thread and hash passwords on it, as a single uvicorn worker that
    /// calls bcrypt inside `async def` does: while one request hashes, every other waits.
    #[arg(long, env = "TESTBED_HASH_ON_EVENT_LOOP")]
    pub hash_on_event_loop: bool,
    /// Size of the database connection pool (with the in-memory store, a simulated pool of the
    /// same size that --slow delays hold).
    #[arg(long, env = "TESTBED_DB_POOL", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool: u32,
    /// Requests per minute allowed per client IP, as the real API's RATE_LIMIT_PER_MINUTE
    /// (0 = no limit). Health endpoints are never limited.
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 0)]
    pub rate_limit_per_minute: u32,
    /// Delay requests to PATH by MS milliseconds, spent holding a database connection
    /// (repeatable; comma separated in the variable). PATH is a request path or a route such as
    /// /api/v1/tasks/{id}; a trailing * matches a prefix.
    #[arg(
        long = "slow",
        env = "TESTBED_SLOW",
        value_delimiter = ',',
        value_name = "PATH:MS"
    )]
    pub slow: Vec<SlowRule>,
    /// Answer requests to PATH with a 500 INTERNAL_ERROR at RATIO (0 to 1), repeatable.
    #[arg(
        long = "fail",
        env = "TESTBED_FAIL",
        value_delimiter = ',',
        value_name = "PATH:RATIO"
    )]
    pub fail: Vec<FailRule>,
    /// How many jobs are processed at once (0: this process only serves the API, and another,
    /// started with workers, takes the queue's jobs, as a Celery worker container does).
    #[arg(long, env = "TESTBED_WORKERS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=256))]
    pub workers: u32,
    /// How long each job takes (e.g. 500ms, 2s), on top of ffmpeg when --ffmpeg is on.
    #[arg(long, env = "TESTBED_JOB_SECONDS", default_value = "1s", value_parser = common::duration::parse_arg)]
    pub job_seconds: Duration,
    /// Jobs spend --job-seconds burning a CPU core in a child ffmpeg, as encoding does, instead
    /// of sleeping: with more --workers than cores, the host saturates.
    #[arg(long, env = "TESTBED_JOB_BURNS_CPU")]
    pub job_burns_cpu: bool,
    /// What jobs do: finish (ok), end in `failed` (fail), or stay `processing` forever while
    /// holding their worker (hang).
    #[arg(long, env = "TESTBED_JOB_MODE", value_enum, default_value_t = JobMode::Ok)]
    pub job_mode: JobMode,
    /// What jobs of one type do, over --job-mode (repeatable; comma separated in the
    /// variable): e.g. audio_overlay=stuck while the other types complete.
    #[arg(
        long = "job-mode-for",
        env = "TESTBED_JOB_MODE_FOR",
        value_delimiter = ',',
        value_name = "TYPE=MODE"
    )]
    pub job_modes_by_type: Vec<TypeJobMode>,
    /// Run real ffmpeg on the uploaded files in each job.
    #[arg(long, env = "TESTBED_FFMPEG")]
    pub ffmpeg: bool,
    /// Lifetime of access tokens (e.g. 30m, 5s); the real API's default is 30 minutes.
    #[arg(long, env = "TESTBED_TOKEN_TTL", default_value = "30m", value_parser = common::duration::parse_arg)]
    pub token_ttl: Duration,
    /// Users with these names are admins (repeatable; comma separated in the variable).
    #[arg(
        long = "admin",
        env = "TESTBED_ADMINS",
        value_delimiter = ',',
        value_name = "USERNAME"
    )]
    pub admins: Vec<String>,
    /// Secret that signs the JWTs (default: random per process).
    #[arg(long, env = "TESTBED_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

impl Config {
    /// Where password hashing runs.
    pub fn hashing(&self) -> crate::auth::Hashing {
        if self.hash_on_event_loop {
            crate::auth::Hashing::OnEventLoop
        } else {
            crate::auth::Hashing::Apart
        }
    }

    /// The defaults, listening on a free loopback port: what tests start from.
    pub fn for_tests() -> Self {
        let mut config = Self::parse_from(["testbed"]);
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }
}

/// What each job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JobMode {
    /// Jobs complete.
    Ok,
    /// Jobs end in `failed`.
    Fail,
    /// Jobs never finish and hold their worker.
    Hang,
    /// The worker raises inside the job, logs the traceback and goes on to the next, leaving
    /// the task `processing` forever: a Celery task that fails before it marks itself failed.
    Stuck,
}

/// `--job-mode-for TYPE=MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeJobMode {
    /// The task type, as the API names it (`join`, `audio_overlay`, ...).
    pub task_type: crate::store::TaskType,
    /// What its jobs do.
    pub mode: JobMode,
}

impl FromStr for TypeJobMode {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let (name, mode) = input
            .split_once('=')
            .ok_or_else(|| format!("{input:?}: expected TYPE=MODE, e.g. audio_overlay=stuck"))?;
        let task_type = serde_json::from_value(serde_json::Value::String(name.trim().into()))
            .map_err(|_| {
                format!(
                    "{input:?}: unknown task type {name:?} (join, audio_overlay, text_overlay, \
                     subtitles, video_overlay, combined)"
                )
            })?;
        let mode = JobMode::from_str(mode.trim(), true)
            .map_err(|_| format!("{input:?}: unknown mode (ok, fail, hang, stuck)"))?;
        Ok(Self { task_type, mode })
    }
}

/// `--slow PATH:MS`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowRule {
    /// Which requests.
    pub path: PathPattern,
    /// How long they wait.
    pub delay: Duration,
}

/// `--fail PATH:RATIO`.
#[derive(Debug, Clone, PartialEq)]
pub struct FailRule {
    /// Which requests.
    pub path: PathPattern,
    /// Share of them that fail, 0 to 1.
    pub ratio: f64,
}

/// A request path, a route template, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(String);

impl PathPattern {
    /// Whether a request with this literal `path` and matched `route` is selected.
    pub fn matches(&self, path: &str, route: Option<&str>) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => {
                let trimmed = |p: &str| p.trim_end_matches('/').to_owned();
                trimmed(path) == trimmed(&self.0) || route.is_some_and(|r| r == self.0)
            }
        }
    }
}

fn split_rule<'a>(input: &'a str, what: &str) -> Result<(PathPattern, &'a str), String> {
    let (path, value) = input
        .rsplit_once(':')
        .ok_or_else(|| format!("{input:?} is not PATH:{what}"))?;
    if !path.starts_with('/') {
        return Err(format!(
            "{input:?}: the path must start with '/', e.g. /api/v1/files:{what}"
        ));
    }
    Ok((PathPattern(path.to_owned()), value))
}

impl FromStr for SlowRule {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let (path, ms) = split_rule(input, "MS")?;
        let ms: u64 = ms
            .parse()
            .map_err(|_| format!("{input:?}: {ms:?} is not a whole number of milliseconds"))?;
        Ok(Self {
            path,
            delay: Duration::from_millis(ms),
        })
    }
}

impl FromStr for FailRule {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        let (path, ratio) = split_rule(input, "RATIO")?;
        let ratio: f64 = ratio
            .parse()
            .ok()
            .filter(|r: &f64| (0.0..=1.0).contains(r))
            .ok_or_else(|| format!("{input:?}: the ratio must be a number from 0 to 1"))?;
        Ok(Self { path, ratio })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_knobs() {
        let config = Config::try_parse_from([
            "testbed",
            "--slow",
            "/api/v1/files:250",
            "--slow",
            "/api/v1/tasks/*:10",
            "--fail",
            "/api/v1/users/me/stats:0.5",
            "--job-seconds",
            "0.2",
            "--token-ttl",
            "5s",
            "--job-mode-for",
            "audio_overlay=stuck",
        ])
        .unwrap();
        assert_eq!(
            config.job_modes_by_type,
            [TypeJobMode {
                task_type: crate::store::TaskType::AudioOverlay,
                mode: JobMode::Stuck
            }]
        );
        assert_eq!(config.slow.len(), 2);
        assert_eq!(config.slow[0].delay, Duration::from_millis(250));
        assert!(config.slow[1].path.matches("/api/v1/tasks/7", None));
        assert!(config.fail[0].path.matches("/api/v1/users/me/stats/", None));
        assert_eq!(config.fail[0].ratio, 0.5);
        assert_eq!(config.job_seconds, Duration::from_millis(200));
        assert_eq!(config.token_ttl, Duration::from_secs(5));
        let route = PathPattern("/api/v1/tasks/{id}".into());
        assert!(route.matches("/api/v1/tasks/3", Some("/api/v1/tasks/{id}")));
        assert!(!route.matches("/api/v1/tasks", Some("/api/v1/tasks")));
    }

    #[test]
    fn refuses_bad_knobs_with_the_fix() {
        for (args, expected) in [
            (["--slow", "files:100"], "must start with '/'"),
            (["--slow", "/files:abc"], "whole number of milliseconds"),
            (["--fail", "/files:2"], "from 0 to 1"),
            (["--fail", "/files"], "is not PATH:RATIO"),
            (["--token-ttl", "soon"], "write e.g. 30s"),
            (["--job-mode-for", "stuck"], "expected TYPE=MODE"),
            (["--job-mode-for", "resize=stuck"], "unknown task type"),
            (["--job-mode-for", "join=slow"], "unknown mode"),
        ] {
            let error = Config::try_parse_from(std::iter::once("testbed").chain(args))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}
