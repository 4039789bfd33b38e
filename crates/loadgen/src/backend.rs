//! The stack beside the load: monitor samples taken on the run's clock, in-process (the
//! `monitor` crate's sources), pulled from a sidecar's HTTP endpoint, or read back from the JSON
//! Lines file a sidecar wrote.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use monitor::sample::Tick;
use rustls::ClientConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::BackendConfig;
use crate::http::{Connection, Limits, Options, Payload, Target};

/// The ticks taken so far, shared with the drivers that show them while the run goes.
pub type LiveTicks = Arc<std::sync::Mutex<Vec<Tick>>>;

/// `--stack`: discovers the stack before the run, prints what was found (stderr), and fills
/// the in-process monitor's sources with it where the `--monitor-*` flags left them empty.
/// Done once per configuration: the runs made from it share the discovery. A `dry_run` prints
/// nothing: its caller prints the report where a dry run's output goes.
pub async fn discover_stack(
    config: &mut crate::config::RunConfig,
    dry_run: bool,
) -> anyhow::Result<()> {
    let Some(spec) = config.stack.spec.clone() else {
        return Ok(());
    };
    if config.stack.discovered.is_some() {
        return Ok(());
    }
    let Some(BackendConfig::InProcess(sources)) = &mut config.backend else {
        anyhow::bail!("--stack watches the stack from this process: leave out --monitor-from");
    };
    let request = monitor::stack::Request {
        spec,
        load_port: url::Url::parse(&config.host)
            .ok()
            .and_then(|url| url.port_or_known_default()),
        postgres_given: sources.postgres.is_some(),
        redis_given: sources.redis.is_some(),
        flags: monitor::stack::Flags {
            postgres: "--monitor-postgres",
            redis: "--monitor-redis",
            redis_queue: "--monitor-redis-queue",
        },
    };
    let discovery = monitor::stack::discover(&request).await?;
    if !dry_run {
        eprint!("{}", discovery.report("loadgen: "));
    }
    discovery.fill(sources);
    config.stack.discovered = Some(Arc::new(discovery));
    Ok(())
}

/// The in-process monitor's sources with nothing but the host (and, with `profiling`, the
/// Python processes of the API serving `host`'s port): what `--stack` and the `--monitor-*`
/// flags fill.
pub fn in_process_sources(host: &str, profiling: bool) -> monitor::sources::SourcesConfig {
    monitor::sources::SourcesConfig {
        host: Some(monitor::sources::host::Capacity::default()),
        profiles: profiling.then(|| monitor::sources::profiles::Profiling {
            // The API under load is the one serving the host's port, when it is on this
            // machine: not another stack's uvicorn beside it.
            api_port: url::Url::parse(host)
                .ok()
                .and_then(|url| url.port_or_known_default()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A running watch; [`BackendWatch::finish`] returns the ticks of the run.
pub struct BackendWatch {
    task: Option<JoinHandle<Result<(), String>>>,
    live: LiveTicks,
    file: Option<PathBuf>,
    started: DateTime<Utc>,
    stop: CancellationToken,
}

impl BackendWatch {
    /// Starts sampling every second; a sidecar is reached with `tls` when its URL is https.
    pub fn start(source: BackendConfig, tls: Option<Arc<ClientConfig>>) -> Self {
        let stop = CancellationToken::new();
        let started = Utc::now();
        let live = LiveTicks::default();
        let (task, file) = match source {
            BackendConfig::InProcess(sources) => {
                let stop = stop.clone();
                let live = live.clone();
                let task = tokio::spawn(async move {
                    let mut sampler =
                        monitor::sampler::Sampler::new(sources.build(), Duration::from_secs(1));
                    let keep = |tick: &Tick| {
                        if let Ok(mut ticks) = live.lock() {
                            ticks.push(tick.clone());
                        }
                    };
                    let first = sampler.tick().await;
                    // Tried once at start: a source that is down says so now, loudly, not
                    // only in the report.
                    for (name, reading) in &first.sources {
                        for note in &reading.notes {
                            eprintln!("loadgen: WARNING: {name}: {note}");
                        }
                        if !reading.up {
                            eprintln!(
                                "loadgen: WARNING: {name} is not watched: {} (the run goes on; \
                                 retrying; its findings will be missing while it is down)",
                                reading.error.as_deref().unwrap_or("no answer")
                            );
                        }
                    }
                    keep(&first);
                    sampler.run(None, stop, keep).await;
                    Ok(())
                });
                (Some(task), None)
            }
            BackendConfig::Sidecar(url) => {
                let stop = stop.clone();
                (
                    Some(start_pull(url, tls, started, stop, live.clone())),
                    None,
                )
            }
            BackendConfig::File(path) => (None, Some(path)),
        };
        Self {
            task,
            live,
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
        if let Some(task) = self.task.take() {
            task.await.map_err(|e| format!("backend watch: {e}"))??;
        }
        Ok(self
            .live
            .lock()
            .map(|mut ticks| std::mem::take(&mut *ticks))
            .unwrap_or_default())
    }

    /// The ticks taken so far (none for a file, which is read at the end).
    pub fn live(&self) -> LiveTicks {
        self.live.clone()
    }
}

/// Polls a sidecar's `/samples?since=` once a second, over loadgen's own HTTP client, so that
/// an `https://` sidecar is trusted as the host is (`--ca-cert`, `--insecure`). The client is
/// single-threaded by design (the users' hot path), so the poll has a thread of its own.
fn start_pull(
    url: String,
    tls: Option<Arc<ClientConfig>>,
    started: DateTime<Utc>,
    stop: CancellationToken,
    live: LiveTicks,
) -> JoinHandle<Result<(), String>> {
    crate::http::spawn_apart(move || async move { pull(&url, tls, started, stop, live).await })
}

async fn pull(
    url: &str,
    tls: Option<Arc<ClientConfig>>,
    started: DateTime<Utc>,
    stop: CancellationToken,
    live: LiveTicks,
) -> Result<(), String> {
    let target = Target::resolve(url, tls.as_ref())
        .await
        .map_err(|e| format!("--monitor-from {}: {e}", common::redact::url(url)))?;
    let base_path = target.base_path.trim_end_matches('/').to_owned();
    let mut connection = Connection::new(
        Rc::new(target),
        Options {
            timeout: Duration::from_secs(2),
            limits: Limits::default(),
            gzip: true,
        },
    );
    let accept_json = [(
        http::header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    )];
    let mut since = started;
    let mut pulled_any = false;
    let mut failures = 0u32;
    loop {
        let query = since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let path = format!("{base_path}/samples?since={query}");
        match connection
            .send(&http::Method::GET, &path, &accept_json, &Payload::default())
            .await
        {
            Ok(answer) if (200..300).contains(&answer.status) => {
                match serde_json::from_slice::<Vec<Tick>>(&answer.body) {
                    Ok(new) => {
                        if let Some(last) = new.last() {
                            since = last.timestamp;
                            pulled_any = true;
                        }
                        if let Ok(mut ticks) = live.lock() {
                            ticks.extend(new);
                        }
                    }
                    Err(e) => {
                        return Err(format!(
                            "--monitor-from {}: not a monitor's samples: {e}",
                            common::redact::url(url)
                        ));
                    }
                }
            }
            Ok(answer) => {
                return Err(format!(
                    "--monitor-from {}: answered {}",
                    common::redact::url(url),
                    answer.status
                ));
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    eprintln!(
                        "loadgen: WARNING: --monitor-from {}: {e} (the run goes on; retrying)",
                        common::redact::url(url)
                    );
                }
                if !pulled_any && failures >= 3 {
                    return Err(format!("--monitor-from {}: {e}", common::redact::url(url)));
                }
            }
        }
        if stop.is_cancelled() {
            return Ok(());
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The lines of a worker's log file worth quoting: its last 5 error lines (an error, an
/// exception, a traceback, a task that raised), or its last 5 lines when none is. `None` when
/// it cannot be read; only its last 64 KiB are read, however long it grew.
pub fn log_file_tail(path: &std::path::Path) -> Option<Vec<String>> {
    let text = read_tail(path)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let is_error = |line: &&str| {
        let lower = line.to_lowercase();
        [
            "error",
            "exception",
            "traceback",
            "raised",
            "critical",
            "failed",
        ]
        .iter()
        .any(|word| lower.contains(word))
    };
    let errors: Vec<&str> = lines.iter().copied().filter(is_error).collect();
    let chosen = if errors.is_empty() { &lines } else { &errors };
    // An exception's message may quote SQL literals and URLs with passwords.
    Some(
        chosen[chosen.len().saturating_sub(5)..]
            .iter()
            .map(|l| monitor::celery::redact::message(l.trim_end()))
            .collect(),
    )
}

/// The last 64 KiB of a file, from its first whole line.
fn read_tail(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL_BYTES: u64 = 64 * 1024;
    let mut file = std::fs::File::open(path).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)))
        .ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // The first line read is likely cut.
    match text.split_once('\n') {
        Some((_, rest)) if length > TAIL_BYTES => Some(rest.to_owned()),
        _ => Some(text),
    }
}

/// The Celery task failures in the last 64 KiB of a worker's log file (see
/// [`monitor::celery::log`]); `None` when it cannot be read.
pub fn log_file_task_failures(path: &std::path::Path) -> Option<Vec<monitor::celery::TaskFailure>> {
    let text = read_tail(path)?;
    let lines: Vec<&str> = text.lines().collect();
    Some(monitor::celery::log::failures(&lines))
}

/// Log lines read from each worker container for its task failures: enough for the last few
/// failures with their tracebacks.
const FAILURE_LOG_LINES: usize = 1000;

/// The Celery task failures in the recent logs of each watched worker container (as
/// [`worker_logs`] picks them) and of the `known` ones, by container; containers without any
/// are left out.
pub async fn worker_task_failures(
    ticks: &[Tick],
    known: &[String],
) -> BTreeMap<String, Vec<monitor::celery::TaskFailure>> {
    let mut found = BTreeMap::new();
    for worker in worker_containers(ticks, known) {
        if let Ok(lines) = monitor::sources::docker::recent_logs(&worker, FAILURE_LOG_LINES).await {
            let failures = monitor::celery::log::failures(&lines);
            if !failures.is_empty() {
                found.insert(worker, failures);
            }
        }
    }
    found
}

/// The watched containers whose name says they are workers (`worker` or `celery`), and the
/// `known` ones (a discovered stack's API and workers, whatever their names).
fn worker_containers(ticks: &[Tick], known: &[String]) -> BTreeSet<String> {
    let mut containers: BTreeSet<String> = known.iter().cloned().collect();
    containers.extend(
        ticks
            .iter()
            .filter_map(
                |t| match t.sources.get("docker").and_then(|r| r.values.as_ref()) {
                    Some(monitor::sample::Values::Docker(d)) => Some(d.containers.keys().cloned()),
                    _ => None,
                },
            )
            .flatten()
            .filter(|name| name.contains("worker") || name.contains("celery")),
    );
    containers
}

/// The last 5 log lines of each watched container whose name says it is a worker (`worker` or
/// `celery`) and of the `known` ones, as the seed's `docker compose logs worker | tail` shows
/// them. Containers whose logs cannot be read are left out.
pub async fn worker_logs(ticks: &[Tick], known: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut logs = BTreeMap::new();
    for worker in worker_containers(ticks, known) {
        if let Ok(lines) = monitor::sources::docker::recent_logs(&worker, 5).await
            && !lines.is_empty()
        {
            // An exception's message may quote SQL literals and URLs with passwords.
            let lines = lines
                .iter()
                .map(|l| monitor::celery::redact::message(l))
                .collect();
            logs.insert(worker, lines);
        }
    }
    logs
}
