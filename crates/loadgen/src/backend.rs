//! The stack beside the load: monitor samples taken on the run's clock, in-process (the
//! `monitor` crate's sources), pulled from a sidecar's HTTP endpoint, or read back from the JSON
//! Lines file a sidecar wrote.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use monitor::sample::Tick;
use monitor::source::Source;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;

/// Where backend samples come from.
pub enum BackendSource {
    /// Sampled here, by these sources.
    InProcess(Vec<Box<dyn Source>>),
    /// A sidecar's `/samples` endpoint.
    Sidecar(String),
    /// A JSON Lines file.
    File(PathBuf),
}

impl BackendSource {
    /// What the flags ask for, if anything. The host is watched whenever the monitor runs
    /// in-process.
    pub fn from_cli(cli: &Cli) -> Option<Self> {
        if let Some(from) = &cli.monitor_from {
            return Some(
                if from.starts_with("http://") || from.starts_with("https://") {
                    Self::Sidecar(from.trim_end_matches('/').to_owned())
                } else {
                    Self::File(PathBuf::from(from))
                },
            );
        }
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        if let Some(selector) = &cli.monitor_docker {
            sources.push(Box::new(monitor::sources::docker::Docker::new(
                selector.clone(),
            )));
        }
        if let Some(url) = &cli.monitor_postgres {
            sources.push(Box::new(monitor::sources::postgres::Postgres::new(
                url,
                monitor::sources::postgres::Scope::Database,
            )));
        }
        if let Some(url) = &cli.monitor_redis {
            sources.push(Box::new(monitor::sources::redis::Redis::new(
                url,
                cli.monitor_redis_queue.clone(),
            )));
        }
        if sources.is_empty() {
            return None;
        }
        sources.push(Box::new(monitor::sources::host::Host::new(
            monitor::sources::host::Capacity {
                disk_bps: 500e6,
                net_bps: 1e9 / 8.0,
            },
        )));
        Some(Self::InProcess(sources))
    }
}

/// A running watch; [`BackendWatch::finish`] returns the ticks of the run.
pub struct BackendWatch {
    task: Option<JoinHandle<Result<Vec<Tick>, String>>>,
    file: Option<PathBuf>,
    started: DateTime<Utc>,
    stop: CancellationToken,
}

impl BackendWatch {
    /// Starts sampling every second.
    pub fn start(source: BackendSource) -> Self {
        let stop = CancellationToken::new();
        let started = Utc::now();
        let (task, file) = match source {
            BackendSource::InProcess(sources) => {
                let stop = stop.clone();
                let task = tokio::spawn(async move {
                    let mut sampler =
                        monitor::sampler::Sampler::new(sources, Duration::from_secs(1));
                    let mut ticks = vec![sampler.tick().await];
                    sampler
                        .run(None, stop, |tick| ticks.push(tick.clone()))
                        .await;
                    Ok(ticks)
                });
                (Some(task), None)
            }
            BackendSource::Sidecar(url) => {
                let stop = stop.clone();
                (Some(tokio::spawn(pull(url, started, stop))), None)
            }
            BackendSource::File(path) => (None, Some(path)),
        };
        Self {
            task,
            file,
            started,
            stop,
        }
    }

    /// Stops and returns the ticks taken between the start and now.
    pub async fn finish(mut self) -> Result<Vec<Tick>, String> {
        self.stop.cancel();
        let ended = Utc::now();
        if let Some(path) = self.file.take() {
            let ticks = monitor::sinks::files::read_json_lines(&path)
                .map_err(|e| format!("--monitor-from {}: {e}", path.display()))?;
            // The file may cover more than this run: keep the run's window, a tick's slack.
            let slack = chrono::Duration::seconds(1);
            return Ok(ticks
                .into_iter()
                .filter(|t| t.timestamp >= self.started - slack && t.timestamp <= ended + slack)
                .collect());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(|e| format!("backend watch: {e}"))?,
            None => Ok(Vec::new()),
        }
    }
}

/// Polls a sidecar's `/samples?since=` once a second.
async fn pull(
    url: String,
    started: DateTime<Utc>,
    stop: CancellationToken,
) -> Result<Vec<Tick>, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut ticks: Vec<Tick> = Vec::new();
    let mut failures = 0u32;
    loop {
        let since = ticks.last().map_or(started, |t| t.timestamp);
        let query = since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        match client
            .get(format!("{url}/samples?since={query}"))
            .send()
            .await
        {
            Ok(answer) if answer.status().is_success() => match answer.json::<Vec<Tick>>().await {
                Ok(new) => ticks.extend(new),
                Err(e) => {
                    return Err(format!(
                        "--monitor-from {url}: not a monitor's samples: {e}"
                    ));
                }
            },
            Ok(answer) => {
                return Err(format!(
                    "--monitor-from {url}: answered {}",
                    answer.status()
                ));
            }
            Err(e) => {
                failures += 1;
                if ticks.is_empty() && failures >= 3 {
                    return Err(format!("--monitor-from {url}: {e}"));
                }
            }
        }
        if stop.is_cancelled() {
            return Ok(ticks);
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
