//! Docker containers through bollard: CPU, memory, network and block I/O computed the way
//! `docker stats` does, restart count and state; containers chosen by name, label or compose
//! project; those that vanish are marked `gone`. Recent log lines on request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker as Client;
use bollard::models::{ContainerStatsResponse, ContainerSummary};
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder, StatsOptionsBuilder,
};
use futures::StreamExt;

use crate::sample::{ContainerValues, DockerValues, Values};
use crate::source::{Backoff, Source, SourceError};

/// Which containers to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every running container.
    All,
    /// Containers whose name contains one of these.
    Names(Vec<String>),
    /// Containers with this label (`key` or `key=value`).
    Label(String),
    /// Containers of this compose project.
    Compose(String),
}

impl std::str::FromStr for Selector {
    type Err = String;

    /// `all`, `name=api,worker`, `label=KEY[=VALUE]`, `compose=PROJECT`, or bare names.
    fn from_str(input: &str) -> Result<Self, String> {
        let input = input.trim();
        if input.is_empty() || input == "all" {
            return Ok(Self::All);
        }
        let names = |list: &str| {
            Self::Names(
                list.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )
        };
        match input.split_once('=') {
            Some(("name", list)) => Ok(names(list)),
            Some(("label", label)) if !label.is_empty() => Ok(Self::Label(label.to_owned())),
            Some(("compose", project)) if !project.is_empty() => {
                Ok(Self::Compose(project.to_owned()))
            }
            Some((other, _)) => Err(format!(
                "docker selector {other:?}: use all, name=A,B, label=KEY[=VALUE] or compose=PROJECT"
            )),
            None => Ok(names(input)),
        }
    }
}

struct Previous {
    at: Instant,
    stamp: Option<String>,
    rates: [f64; 4],
    rx: u64,
    tx: u64,
    read: u64,
    write: u64,
}

/// The latest stats a container's stream delivered.
type Latest = Arc<Mutex<Option<ContainerStatsResponse>>>;

/// A background subscription to one container's stats stream. A one-shot stats request waits
/// for the engine's next collection (up to a second), which would make every tick late; the
/// stream delivers each collection as it happens, and a tick reads the latest at once.
struct Watcher {
    latest: Latest,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The Docker source.
pub struct Docker {
    selector: Selector,
    client: Option<Client>,
    previous: HashMap<String, Previous>,
    watchers: HashMap<String, Watcher>,
    known: BTreeMap<String, String>,
    /// When each known container was first missed: shown as `gone` for [`KEEP_GONE`], then
    /// forgotten, so that a long run's output does not grow with every container removed.
    gone_since: HashMap<String, std::time::Instant>,
    keep_gone: std::time::Duration,
}

/// How long a removed container stays in the output, marked `gone`.
pub const KEEP_GONE: std::time::Duration = std::time::Duration::from_secs(60);

impl Selector {
    /// The engine's list filters for this selector (names are matched after listing).
    fn list_filters(&self) -> HashMap<String, Vec<String>> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        match self {
            Selector::Label(label) => {
                filters.insert("label".into(), vec![label.clone()]);
            }
            Selector::Compose(project) => {
                filters.insert(
                    "label".into(),
                    vec![format!("com.docker.compose.project={project}")],
                );
            }
            Selector::All | Selector::Names(_) => {}
        }
        filters
    }
}

impl Docker {
    /// How long a removed container stays in the output ([`KEEP_GONE`] by default).
    pub fn keep_gone(mut self, keep: std::time::Duration) -> Self {
        self.keep_gone = keep;
        self
    }

    /// Watches the containers `selector` picks, on the local engine.
    pub fn new(selector: Selector) -> Self {
        Self {
            selector,
            client: None,
            previous: HashMap::new(),
            watchers: HashMap::new(),
            known: BTreeMap::new(),
            gone_since: HashMap::new(),
            keep_gone: KEEP_GONE,
        }
    }

    fn watch(client: &Client, id: &str) -> Watcher {
        let latest: Latest = Arc::default();
        let task = tokio::spawn(follow_stats(client.clone(), id.to_owned(), latest.clone()));
        Watcher { latest, task }
    }

    async fn client(&mut self) -> Result<&Client, SourceError> {
        if self.client.is_none() {
            let client = Client::connect_with_local_defaults()
                .map_err(|e| SourceError(format!("cannot reach the Docker engine: {e}")))?
                .negotiate_version()
                .await
                .map_err(|e| SourceError(format!("cannot reach the Docker engine: {e}")))?;
            self.client = Some(client);
        }
        self.client
            .as_ref()
            .ok_or_else(|| SourceError("no Docker client".into()))
    }

    async fn sample(&mut self) -> Result<DockerValues, bollard::errors::Error> {
        let Some(client) = self.client.clone() else {
            return Ok(DockerValues::default());
        };
        let filters = self.selector.list_filters();
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let listed = client.list_containers(Some(options)).await?;
        let picked = self.pick(listed);
        // Every container's inspection at once: a tick must not wait on one after another.
        let inspections = futures::future::join_all(
            picked
                .iter()
                .map(|(id, _, _)| client.inspect_container(id, None::<InspectContainerOptions>)),
        )
        .await;
        let mut values = DockerValues::default();
        let mut present = Vec::new();
        for ((id, name, state), inspect) in picked.into_iter().zip(inspections) {
            present.push(name.clone());
            self.known.insert(name.clone(), id.clone());
            let restart_count = inspect.ok().and_then(|i| i.restart_count).unwrap_or(0);
            let container = self.read(&client, &id, &name, state, restart_count);
            values.containers.insert(name, container);
        }
        self.drop_stale_watchers(&present);
        self.keep_gone_ones(&present, &mut values);
        Ok(values)
    }

    /// The containers listed that the selector wants, as (id, name, state): the running ones,
    /// and the others if they were watched before.
    fn pick(&self, listed: Vec<ContainerSummary>) -> Vec<(String, String, String)> {
        let mut picked = Vec::new();
        for summary in listed {
            let Some(id) = summary.id.clone() else {
                continue;
            };
            let name = summary
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| id.chars().take(12).collect());
            if let Selector::Names(wanted) = &self.selector
                && !wanted.iter().any(|w| name.contains(w.as_str()))
            {
                continue;
            }
            let state = summary
                .state
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".into());
            // Exited containers stay listed (all=true) only if they were watched before.
            if state != "running" && !self.known.contains_key(&name) {
                continue;
            }
            picked.push((id, name, state));
        }
        picked
    }

    /// One container's figures: a running one's from the latest statistics its watcher (started
    /// on first sight) has received; a stopped one is no longer watched.
    fn read(
        &mut self,
        client: &Client,
        id: &str,
        name: &str,
        state: String,
        restart_count: i64,
    ) -> ContainerValues {
        let running = state == "running";
        let mut container = ContainerValues {
            state,
            restart_count,
            ..Default::default()
        };
        if running {
            let watcher = self
                .watchers
                .entry(id.to_owned())
                .or_insert_with(|| Self::watch(client, id));
            let latest = watcher
                .latest
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(stats) = latest {
                self.fill(name, &stats, &mut container);
            }
        } else {
            self.watchers.remove(id);
            self.previous.remove(name);
        }
        container
    }

    /// Stops watching the containers watched before and no longer listed: removed.
    fn drop_stale_watchers(&mut self, present: &[String]) {
        let listed_ids: Vec<&String> = present.iter().filter_map(|n| self.known.get(n)).collect();
        let stale: Vec<String> = self
            .watchers
            .keys()
            .filter(|id| !listed_ids.contains(id))
            .cloned()
            .collect();
        for id in stale {
            self.watchers.remove(&id);
        }
    }

    /// Containers known and no longer present show as `gone` for [`Docker::keep_gone`], then
    /// are forgotten.
    fn keep_gone_ones(&mut self, present: &[String], values: &mut DockerValues) {
        let now = std::time::Instant::now();
        self.gone_since.retain(|name, _| !present.contains(name));
        let mut forgotten = Vec::new();
        for name in self.known.keys() {
            if !present.contains(name) {
                let since = *self.gone_since.entry(name.clone()).or_insert(now);
                if now.duration_since(since) > self.keep_gone {
                    forgotten.push(name.clone());
                    continue;
                }
                values.containers.insert(
                    name.clone(),
                    ContainerValues {
                        state: "gone".into(),
                        ..Default::default()
                    },
                );
            }
        }
        for name in forgotten {
            self.known.remove(&name);
            self.gone_since.remove(&name);
        }
    }

    /// CPU % from the delta between the stream's two last collections (`cpu_stats` and
    /// `precpu_stats`) of container and system CPU time, times the online CPUs, as `docker stats`
    /// computes it; memory minus the inactive file cache (`inactive_file` on cgroup v2,
    /// `total_inactive_file` on v1), as `docker stats` does.
    fn fill(&mut self, name: &str, stats: &ContainerStatsResponse, out: &mut ContainerValues) {
        let cpu = stats.cpu_stats.as_ref();
        let precpu = stats.precpu_stats.as_ref();
        let total = |c: Option<&bollard::models::ContainerCpuStats>| {
            c.and_then(|c| c.cpu_usage.as_ref())
                .and_then(|u| u.total_usage)
                .unwrap_or(0)
        };
        let system = |c: Option<&bollard::models::ContainerCpuStats>| {
            c.and_then(|c| c.system_cpu_usage).unwrap_or(0)
        };
        let cpu_delta = total(cpu).saturating_sub(total(precpu)) as f64;
        let system_delta = system(cpu).saturating_sub(system(precpu)) as f64;
        let online = cpu
            .and_then(|c| c.online_cpus)
            .filter(|n| *n > 0)
            .or_else(|| {
                cpu.and_then(|c| c.cpu_usage.as_ref())
                    .and_then(|u| u.percpu_usage.as_ref())
                    .map(|p| p.len() as u32)
            })
            .unwrap_or(1);
        if let Some(memory) = &stats.memory_stats {
            let usage = memory.usage.unwrap_or(0);
            let inactive = memory
                .stats
                .as_ref()
                .and_then(|s| {
                    s.get("inactive_file")
                        .or_else(|| s.get("total_inactive_file"))
                        .copied()
                })
                .unwrap_or(0);
            out.memory_bytes = usage.saturating_sub(inactive);
            out.memory_limit_bytes = memory.limit.unwrap_or(0);
            if out.memory_limit_bytes > 0 {
                out.memory_pct = out.memory_bytes as f64 * 100.0 / out.memory_limit_bytes as f64;
            }
        }
        let (mut rx, mut tx) = (0, 0);
        for network in stats.networks.iter().flat_map(|n| n.values()) {
            rx += network.rx_bytes.unwrap_or(0);
            tx += network.tx_bytes.unwrap_or(0);
        }
        let (mut read, mut write) = (0, 0);
        for entry in stats
            .blkio_stats
            .iter()
            .flat_map(|b| b.io_service_bytes_recursive.iter().flatten())
        {
            match entry.op.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("read") => read += entry.value.unwrap_or(0),
                Some("write") => write += entry.value.unwrap_or(0),
                _ => {}
            }
        }
        if system_delta > 0.0 {
            out.cpu_pct = cpu_delta / system_delta * f64::from(online) * 100.0;
        }
        // The engine's own counts, since the container started.
        (
            out.net_rx_bytes,
            out.net_tx_bytes,
            out.block_read_bytes,
            out.block_write_bytes,
        ) = (rx, tx, read, write);
        // Rates between two collections of the engine: a tick that finds the same collection as
        // the last one keeps the last rates instead of reporting zero.
        let stamp = stats.read.as_ref().map(|r| format!("{r:?}"));
        let mut now = Previous {
            at: Instant::now(),
            stamp,
            rx,
            tx,
            read,
            write,
            rates: [0.0; 4],
        };
        if let Some(before) = self.previous.get(name) {
            if before.stamp.is_some() && before.stamp == now.stamp {
                now = Previous {
                    at: before.at,
                    stamp: before.stamp.clone(),
                    ..*before
                };
            } else {
                let secs = now.at.duration_since(before.at).as_secs_f64().max(1e-3);
                now.rates = [
                    now.rx.saturating_sub(before.rx) as f64 / secs,
                    now.tx.saturating_sub(before.tx) as f64 / secs,
                    now.read.saturating_sub(before.read) as f64 / secs,
                    now.write.saturating_sub(before.write) as f64 / secs,
                ];
            }
        }
        [
            out.net_rx_bps,
            out.net_tx_bps,
            out.block_read_bps,
            out.block_write_bps,
        ] = now.rates;
        self.previous.insert(name.to_owned(), now);
    }
}

/// Follows one container's stats stream for as long as the watcher lives. When the stream fails
/// or ends (the engine restarted, the container was restarted, a connection dropped), the last
/// figures are cleared, so that a tick shows no figures rather than frozen ones, and the stream
/// is opened again after a backoff.
async fn follow_stats(client: Client, id: String, latest: Latest) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    loop {
        let options = StatsOptionsBuilder::default().stream(true).build();
        let mut stream = client.stats(&id, Some(options));
        while let Some(item) = stream.next().await {
            match item {
                Ok(stats) => {
                    *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
                    backoff.succeeded();
                }
                Err(error) => {
                    tracing::debug!(container = %id, %error, "stats stream failed; reopening");
                    break;
                }
            }
        }
        *latest.lock().unwrap_or_else(|p| p.into_inner()) = None;
        tokio::time::sleep(backoff.failed(std::time::Instant::now())).await;
    }
}

/// The last `lines` log lines of a container (stdout and stderr), as
/// `docker compose logs api | tail -100` shows them, without the terminal's colour codes
/// (loggers colour their output when the container has a TTY, or by default).
pub async fn recent_logs(container: &str, lines: usize) -> Result<Vec<String>, SourceError> {
    let client = Client::connect_with_local_defaults()
        .map_err(|e| SourceError(format!("cannot reach the Docker engine: {e}")))?
        .negotiate_version()
        .await
        .map_err(|e| SourceError(format!("cannot reach the Docker engine: {e}")))?;
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .tail(&lines.to_string())
        .build();
    let mut stream = client.logs(container, Some(options));
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| SourceError(format!("logs of {container}: {e}")))?;
        let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
        out.extend(
            anstream::adapter::strip_str(&text)
                .to_string()
                .lines()
                .map(str::to_owned),
        );
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Source for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn read(&mut self) -> Result<Values, SourceError> {
        self.client().await?;
        match self.sample().await {
            Ok(values) => Ok(Values::Docker(values)),
            Err(e) => {
                self.client = None;
                Err(SourceError(format!("Docker engine: {e}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_selectors() {
        assert_eq!("".parse::<Selector>(), Ok(Selector::All));
        assert_eq!(
            "api,worker".parse::<Selector>(),
            Ok(Selector::Names(vec!["api".into(), "worker".into()]))
        );
        assert_eq!(
            "label=app=ffmpeg".parse::<Selector>(),
            Ok(Selector::Label("app=ffmpeg".into()))
        );
        assert_eq!(
            "compose=ffmpeg-api".parse::<Selector>(),
            Ok(Selector::Compose("ffmpeg-api".into()))
        );
        assert!(
            "kind=x"
                .parse::<Selector>()
                .unwrap_err()
                .contains("compose=PROJECT")
        );
    }
}
