//! loadgen as a worker of a real Locust master (`--worker --master-protocol locust`): a team
//! keeps its Locust master (web UI, CSV files, CI) and adds loadgen workers, which run the
//! `-f` TOML scenario's user types under the names of the master's user classes.
//!
//! Locust 2.47's protocol (`locust/rpc/`, `runners.py`'s `WorkerRunner`): a ZeroMQ DEALER,
//! whose identity is the worker's node id, to the master's ROUTER; each frame a msgpack
//! `[type, data, node_id]` ([`message`]). The worker says `client_ready` with Locust's version
//! until the master's `ack`; then the master sends `spawn` (the users of each class this
//! worker runs), `stop`, `quit`, `reconnect` and a `heartbeat` for each of ours; the worker
//! answers `spawning` and `spawning_complete`, sends a `heartbeat` (state, CPU) every second
//! and its figures since the last report every 3 s (`stats`, made in [`report`]), and
//! `client_stopped`, then `client_ready` again, after a stop.
//!
//! One more driver of the engine: it holds a [`RunHandle`] and nothing else of it. The reverse
//! (Locust workers joining a loadgen master) is not built: the master would have to run
//! Python user classes, and mix Locust's rounded response times into our exact histograms.

pub mod message;
pub mod report;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use rmpv::Value;
use zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

use crate::config::RunConfig;
use crate::engine::{Run, RunHandle};
use message::{Message, field, map};
use report::Reporter;

/// The Locust version this worker speaks (the master warns when its minor version differs).
pub const LOCUST_VERSION: &str = "2.47.0";
/// Locust's `WORKER_REPORT_INTERVAL`.
const REPORT_EVERY: Duration = Duration::from_secs(3);
/// Locust's `HEARTBEAT_INTERVAL`.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Locust's `CONNECT_TIMEOUT`: `client_ready` is sent again when no `ack` came in this long.
const ACK_WITHIN: Duration = Duration::from_secs(5);
/// The master waits 0.5 s for the last figures after `quit`: the users get this long to stop.
const STOP_WITHIN_ON_QUIT: Duration = Duration::from_millis(250);
/// How long the last messages get to leave before the worker ends (the master waits 0.5 s
/// for the last report after `quit`).
const LINGER: Duration = Duration::from_millis(200);
/// Users start as the master sends them (it paces the spawn rate itself).
const AT_ONCE: f64 = 1_000_000.0;

/// Where the Locust master is, and who this worker is to it.
#[derive(Debug, Clone)]
pub struct LocustWorkerSettings {
    /// The master's host (a name, or an address; IPv6 in brackets).
    pub master_host: String,
    /// Its port (`--master-port`, Locust's 5557 by default).
    pub master_port: u16,
    /// The node id the master knows this worker by (Locust's is `HOST_UUIDHEX`).
    pub node_id: String,
    /// The worker ends when the master cannot be reached, or is silent, this long.
    pub master_timeout: Duration,
}

impl LocustWorkerSettings {
    /// `tcp://HOST:PORT`.
    pub fn endpoint(&self) -> String {
        format!("tcp://{}:{}", self.master_host, self.master_port)
    }

    /// A node id as Locust makes them: this machine's name, `_`, 32 hex digits.
    pub fn default_node_id() -> String {
        let machine = sysinfo::System::host_name().unwrap_or_else(|| "loadgen".into());
        format!("{machine}_{:032x}", rand::random::<u128>())
    }
}

/// Locust's worker states, as its heartbeats name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    Spawning,
    Running,
    Stopped,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Spawning => "spawning",
            State::Running => "running",
            State::Stopped => "stopped",
        }
    }
}

/// The run the master started on this worker.
struct Current {
    handle: RunHandle,
    started_unix: f64,
    /// The users of each class the master asked for last.
    counts: BTreeMap<String, u32>,
}

/// The connection to the master broke: the worker connects again (the users go on) for
/// `--master-timeout`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Lost(String);

/// What ended a connection.
enum Ended {
    /// The master said quit, or a signal came: the worker ends.
    Quit,
    /// The master asked the worker to connect again.
    Reconnect,
}

/// Serves the Locust master until it says quit, a signal comes, or it is gone for
/// `master_timeout`; returns the exit code.
pub async fn serve(settings: LocustWorkerSettings, config: RunConfig) -> anyhow::Result<u8> {
    let mut signals = common::signals::Signals::install()?;
    let mut worker = Worker {
        settings,
        config,
        current: None,
        reporter: Reporter::default(),
        state: State::Ready,
        last_spawn: f64::MIN,
        warned: false,
        cpu_pct: 0.0,
        rss_bytes: 0,
    };
    loop {
        let connected = tokio::select! {
            socket = worker.connect() => socket,
            signal = signals.next() => {
                eprintln!("loadgen: worker: {}: stopping", signal.name());
                worker.stop_run(None).await;
                return Ok(crate::exit_code::EXIT_OK);
            }
        };
        let socket = match connected {
            Ok(socket) => socket,
            Err(error) => {
                if worker.current.is_some() {
                    worker.stop_run(None).await;
                    return Err(error.context("the users were stopped"));
                }
                return Err(error);
            }
        };
        match worker.session(socket, &mut signals).await {
            Ok(Ended::Quit) => return Ok(crate::exit_code::EXIT_OK),
            Ok(Ended::Reconnect) => {
                eprintln!("loadgen: worker: the Locust master asked to reconnect");
            }
            Err(error) if error.is::<Lost>() => {
                eprintln!("loadgen: worker: lost the Locust master ({error}); trying again");
            }
            Err(error) => {
                worker.stop_run(None).await;
                return Err(error);
            }
        }
    }
}

struct Worker {
    settings: LocustWorkerSettings,
    config: RunConfig,
    current: Option<Current>,
    reporter: Reporter,
    state: State,
    /// The `timestamp` of the last spawn message followed (older ones are dropped, as Locust
    /// does).
    last_spawn: f64,
    /// Unknown classes were named once.
    warned: bool,
    cpu_pct: f64,
    rss_bytes: u64,
}

/// The two halves of the connection.
struct Socket2 {
    send: zeromq::DealerSendHalf,
    recv: zeromq::DealerRecvHalf,
}

impl Socket2 {
    async fn send(&mut self, message: &Message) -> Result<(), Lost> {
        self.send
            .send(ZmqMessage::from(message.encode()))
            .await
            .map_err(|e| Lost(format!("sending {}: {e}", message.kind)))
    }

    /// Gives the last messages time to leave: the `zeromq` crate's `send` returns once a
    /// message is queued for the connection's writer task, and has no `ZMQ_LINGER`, so a
    /// process that ended at once could lose its last report (seen: 1 run in 6).
    async fn linger(&self) {
        tokio::time::sleep(LINGER).await;
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Worker {
    fn message(&self, kind: &str, data: Value) -> Message {
        Message::new(kind, data, &self.settings.node_id)
    }

    /// Connects, says `client_ready` until the master's `ack`.
    async fn connect(&self) -> anyhow::Result<Socket2> {
        let endpoint = self.settings.endpoint();
        let identity =
            zeromq::util::PeerIdentity::try_from(self.settings.node_id.clone().into_bytes())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--worker-name {:?}: not a ZeroMQ identity ({e}): give 1 to 255 bytes",
                        self.settings.node_id
                    )
                })?;
        let mut options = SocketOptions::default();
        options.peer_identity(identity);
        let mut socket = DealerSocket::with_options(options);
        let waited = self.settings.master_timeout;
        let connected = {
            let connecting = socket.connect(&endpoint);
            tokio::pin!(connecting);
            match tokio::time::timeout(Duration::from_secs(1), &mut connecting).await {
                Ok(connected) => Ok(connected),
                Err(_) => {
                    eprintln!("loadgen: worker: waiting for the Locust master at {endpoint}");
                    let rest = waited.saturating_sub(Duration::from_secs(1));
                    tokio::time::timeout(rest, connecting).await
                }
            }
        };
        connected
            .map_err(|_| {
                anyhow::anyhow!(
                    "the Locust master at {endpoint} is unreachable for {} s: is it running \
                     with --master? (--master-host, --master-port)",
                    waited.as_secs()
                )
            })?
            .with_context(|| format!("cannot connect to the Locust master at {endpoint}"))?;
        let (send, recv) = socket.split();
        let mut socket = Socket2 { send, recv };
        let deadline = Instant::now() + waited;
        loop {
            socket
                .send(&self.message("client_ready", Value::from(LOCUST_VERSION)))
                .await?;
            let acked = tokio::time::timeout(ACK_WITHIN, async {
                loop {
                    match socket.recv.recv().await {
                        Ok(frame) => match frame.get(0).map(|f| Message::decode(f)) {
                            Some(Ok(m)) if m.kind == "ack" => return Ok(m),
                            _ => {}
                        },
                        Err(e) => return Err(e),
                    }
                }
            })
            .await;
            match acked {
                Ok(Ok(ack)) => {
                    let index = field(&ack.data, "index").and_then(Value::as_i64);
                    eprintln!(
                        "loadgen: worker: connected to the Locust master at {endpoint} as {}{}",
                        self.settings.node_id,
                        index.map_or_else(String::new, |i| format!(" (worker index {i})"))
                    );
                    return Ok(socket);
                }
                Ok(Err(e)) => bail!("the Locust master at {endpoint}: {e}"),
                Err(_) if Instant::now() >= deadline => bail!(
                    "the Locust master at {endpoint} did not answer client_ready within {} s",
                    waited.as_secs()
                ),
                Err(_) => {}
            }
        }
    }

    /// Follows the master's messages until it says quit or reconnect, or is silent too long.
    async fn session(
        &mut self,
        mut socket: Socket2,
        signals: &mut common::signals::Signals,
    ) -> anyhow::Result<Ended> {
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        let mut reports =
            tokio::time::interval_at(tokio::time::Instant::now() + REPORT_EVERY, REPORT_EVERY);
        let mut last_heard = Instant::now();
        let mut ready_again: Option<tokio::time::Instant> = None;
        loop {
            let ready_at = async {
                match ready_again {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = socket.recv.recv() => {
                    let frame = frame.map_err(|e| Lost(format!("receiving: {e}")))?;
                    last_heard = Instant::now();
                    let Some(Ok(message)) = frame.get(0).map(|f| Message::decode(f)) else {
                        tracing::warn!("locust worker: a frame that is not a Locust message");
                        continue;
                    };
                    match message.kind.as_str() {
                        "spawn" => {
                            // A spawn within the stop timeout: ready first, as a Locust worker
                            // whose sleep ends before it reads the spawn (else the master would
                            // take a later client_ready from a running worker for a new one).
                            if ready_again.take().is_some() {
                                self.state = State::Ready;
                                let ready = self.message("client_ready", Value::from(LOCUST_VERSION));
                                socket.send(&ready).await?;
                            }
                            if let Err(error) = self.on_spawn(&message.data, &mut socket).await {
                                if !error.is::<Lost>() {
                                    // The master hears that this worker is gone, at once.
                                    let _ = socket.send(&self.message("quit", Value::Nil)).await;
                                    socket.linger().await;
                                }
                                return Err(error);
                            }
                        }
                        "stop" => {
                            self.on_stop(&mut socket).await?;
                            // As Locust's workers: ready again once the stop timeout is over.
                            ready_again = Some(tokio::time::Instant::now()
                                + self.config.load.stop_timeout);
                        }
                        "quit" => {
                            eprintln!("loadgen: worker: the Locust master said quit");
                            self.stop_run(Some(STOP_WITHIN_ON_QUIT)).await;
                            self.send_stats(&mut socket).await?;
                            socket.linger().await;
                            return Ok(Ended::Quit);
                        }
                        "reconnect" => return Ok(Ended::Reconnect),
                        "heartbeat" | "ack" | "spawning_complete" => {}
                        other => tracing::debug!("locust worker: {other} ignored"),
                    }
                }
                () = ready_at => {
                    ready_again = None;
                    self.state = State::Ready;
                    socket.send(&self.message("client_ready", Value::from(LOCUST_VERSION))).await?;
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > self.settings.master_timeout {
                        return Err(Lost(format!(
                            "silent for {} s",
                            self.settings.master_timeout.as_secs()
                        ))
                        .into());
                    }
                    let beat = map([
                        ("state", Value::from(self.state.name())),
                        ("current_cpu_usage", Value::from(self.cpu_pct)),
                        ("current_memory_usage", Value::from(self.rss_bytes)),
                    ]);
                    socket.send(&self.message("heartbeat", beat)).await?;
                }
                _ = reports.tick() => self.send_stats(&mut socket).await?,
                signal = signals.next() => {
                    eprintln!(
                        "loadgen: worker: {}: stopping the users, then telling the master",
                        signal.name()
                    );
                    self.stop_run(None).await;
                    self.send_stats(&mut socket).await?;
                    socket.send(&self.message("quit", Value::Nil)).await?;
                    socket.linger().await;
                    return Ok(Ended::Quit);
                }
            }
        }
    }

    /// `spawn`: start the run, or steer it to the master's counts of each class.
    async fn on_spawn(&mut self, job: &Value, socket: &mut Socket2) -> anyhow::Result<()> {
        socket.send(&self.message("spawning", Value::Nil)).await?;
        let timestamp = field(job, "timestamp")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        if timestamp <= self.last_spawn {
            return Ok(());
        }
        self.last_spawn = timestamp;
        // The master's --stop-timeout (None: 0), for the users to finish their task.
        let stop_timeout = field(job, "stop_timeout")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(0.0);
        self.config.load.stop_timeout = Duration::from_secs_f64(stop_timeout);
        let asked = class_counts(job);
        self.warn_of_unknown(&asked);
        // The users of a class the scenario has no type for are not run: the master hears the
        // counts this worker runs (an extra user would otherwise go to the first type).
        let known = self.known(&asked);
        let counts: BTreeMap<String, u32> = asked
            .keys()
            .map(|name| (name.clone(), known.get(name).copied().unwrap_or(0)))
            .collect();
        let total: u64 = known.values().map(|n| u64::from(*n)).sum();
        self.state = State::Spawning;
        match &mut self.current {
            Some(run) => {
                run.handle.set_fixed_counts(known);
                run.handle
                    .set_users(total, AT_ONCE)
                    .context("steering the users")?;
                run.counts = counts.clone();
            }
            None if total == 0 => {}
            None => {
                let host = field(job, "host")
                    .and_then(Value::as_str)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned);
                self.start_run(&known, &counts, total, host).await?;
            }
        }
        let data = map([
            ("user_classes_count", counts_value(&counts)),
            ("user_count", Value::from(total)),
        ]);
        socket
            .send(&self.message("spawning_complete", data))
            .await?;
        self.state = State::Running;
        Ok(())
    }

    /// The master's counts for the types the scenario has (the others are 0).
    fn known(&self, counts: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
        self.config
            .scenario
            .users
            .iter()
            .map(|u| (u.name.clone(), counts.get(&u.name).copied().unwrap_or(0)))
            .collect()
    }

    /// Says once which of the master's classes have users and no user type here.
    fn warn_of_unknown(&mut self, asked: &BTreeMap<String, u32>) {
        let names: Vec<&str> = self
            .config
            .scenario
            .users
            .iter()
            .map(|u| u.name.as_str())
            .collect();
        let unknown: Vec<&str> = asked
            .iter()
            .filter(|(name, n)| **n > 0 && !names.contains(&name.as_str()))
            .map(|(name, _)| name.as_str())
            .collect();
        if !unknown.is_empty() && !self.warned {
            self.warned = true;
            eprintln!(
                "loadgen: worker: warning: the Locust master's user classes {} are not user \
                 types of the scenario ({}): their users are not run; name a [[users]] after each",
                unknown.join(", "),
                names.join(", ")
            );
        }
    }

    /// Starts the users: `known` of each scenario type, `total` in all; the master hears
    /// `counts`.
    async fn start_run(
        &mut self,
        known: &BTreeMap<String, u32>,
        counts: &BTreeMap<String, u32>,
        total: u64,
        host: Option<String>,
    ) -> anyhow::Result<()> {
        let mut config = self.config.clone();
        if let Some(host) = host {
            config.host = host;
        }
        if config.host.is_empty() {
            bail!(
                "no host to load: give it to the Locust master (-H), or to this worker (-H, \
                 used when the master has none)"
            );
        }
        for user in &mut config.scenario.users {
            user.fixed_count = Some(known.get(&user.name).copied().unwrap_or(0));
        }
        config.load.users = total;
        config.load.spawn_rate = AT_ONCE;
        config.load.run_time = None;
        config.load.shape = Vec::new();
        config.live.quiet = true;
        let handle = Run::start(&config)
            .await
            .context("cannot start the users the Locust master asked for")?;
        eprintln!(
            "loadgen: worker: {total} users against {}",
            common::redact::reference(&config.host)
        );
        let started_unix = unix_now();
        self.reporter = Reporter::new(started_unix);
        self.current = Some(Current {
            handle,
            started_unix,
            counts: counts.clone(),
        });
        Ok(())
    }

    /// `stop`: the users stop, the master gets the last figures and `client_stopped`.
    async fn on_stop(&mut self, socket: &mut Socket2) -> anyhow::Result<()> {
        self.stop_run(None).await;
        self.send_stats(socket).await?;
        self.current = None;
        self.state = State::Stopped;
        self.last_spawn = f64::MIN;
        socket
            .send(&self.message("client_stopped", Value::Nil))
            .await?;
        Ok(())
    }

    /// Stops the users and waits for them (at most `within`, if given).
    async fn stop_run(&mut self, within: Option<Duration>) {
        let Some(run) = &self.current else { return };
        run.handle.stop();
        match within {
            Some(within) => {
                let _ = tokio::time::timeout(within, run.handle.wait()).await;
            }
            None => {
                run.handle.wait().await;
            }
        }
    }

    /// The figures since the last report, and the users running by class.
    async fn send_stats(&mut self, socket: &mut Socket2) -> anyhow::Result<()> {
        let now = unix_now();
        let (report, by_class) = match &self.current {
            Some(run) => {
                let snapshot = run.handle.snapshot().await;
                self.cpu_pct = snapshot.self_watch.cpu_pct;
                self.rss_bytes = snapshot.self_watch.rss_bytes;
                let stats = snapshot
                    .to_stats()
                    .map_err(|e| anyhow::anyhow!("reading this worker's figures: {e}"))?;
                // The users running of each of the master's classes, as the engine counted
                // them at its last second (Locust's workers report theirs).
                let by_type = run
                    .handle
                    .subscribe()
                    .borrow()
                    .as_ref()
                    .filter(|_| !run.handle.is_finished())
                    .map(|u| u.users_by_type.clone())
                    .unwrap_or_default();
                let running: BTreeMap<String, u32> = run
                    .counts
                    .keys()
                    .map(|name| {
                        let n = by_type.get(name).copied().unwrap_or(0);
                        (name.clone(), u32::try_from(n).unwrap_or(u32::MAX))
                    })
                    .collect();
                (self.reporter.report(&stats, run.started_unix, now), running)
            }
            None => (
                self.reporter
                    .report(&crate::stats::Stats::default(), now, now),
                BTreeMap::new(),
            ),
        };
        tracing::debug!("locust worker: reporting {} requests", report.requests);
        let users: u64 = by_class.values().map(|n| u64::from(*n)).sum();
        let data = map([
            ("stats", report.stats),
            ("stats_total", report.stats_total),
            ("errors", report.errors),
            ("user_count", Value::from(users)),
            ("user_classes_count", counts_value(&by_class)),
        ]);
        socket.send(&self.message("stats", data)).await?;
        Ok(())
    }
}

/// The spawn message's `user_classes_count`.
fn class_counts(job: &Value) -> BTreeMap<String, u32> {
    field(job, "user_classes_count")
        .and_then(Value::as_map)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.as_str()?.to_owned(),
                        u32::try_from(v.as_u64()?).unwrap_or(u32::MAX),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn counts_value(counts: &BTreeMap<String, u32>) -> Value {
    Value::Map(
        counts
            .iter()
            .map(|(k, v)| (Value::from(k.as_str()), Value::from(*v)))
            .collect(),
    )
}
