//! A worker: one more driver of the engine. It connects to the master, starts the runs the
//! master sends with its own [`Run::start`], steers them as told, and sends its totals every
//! second. A lost connection is tried again while the users go on; a master gone for
//! `--master-timeout` stops the users and ends the worker.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::MISSING_AFTER;
use crate::cluster::protocol::{
    self, PROTOCOL, Resume, RunSpec, ToMaster, ToWorker, VERSION, WorkerSnapshot,
};
use crate::config::{LiveConfig, LoadSettings, RunConfig};
use crate::engine::{Run, RunHandle};

/// How a worker reaches its master.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// `ws://HOST:PORT/`, or `wss://` over TLS.
    pub master_url: String,
    /// The master's host (a name, or an address; IPv6 in brackets).
    pub master_host: String,
    /// The master's port.
    pub master_port: u16,
    /// TLS to the master (`--master-tls`, `--master-tls-ca`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Its name in the master's reports.
    pub name: String,
    /// The cluster's shared secret.
    pub token: Option<String>,
    /// Folder of the files the scenario uploads.
    pub fixtures: PathBuf,
    /// Threads for users.
    pub threads: usize,
    /// Stop the users and exit when the master has been unreachable this long.
    pub master_timeout: Duration,
}

/// The run this worker is in.
struct Current {
    handle: RunHandle,
    run_id: String,
    worker_id: u32,
    seq: u64,
    epoch: u64,
    threads: usize,
    stopping: bool,
}

impl Current {
    async fn snapshot(&mut self) -> WorkerSnapshot {
        self.seq += 1;
        let update = self.handle.subscribe().borrow().clone();
        WorkerSnapshot {
            run_id: self.run_id.clone(),
            seq: self.seq,
            epoch: self.epoch,
            stats: self.handle.snapshot().await,
            target_users: update.as_ref().map_or(0, |u| u.target_users),
            users_by_type: update
                .as_ref()
                .map(|u| (*u.users_by_type).clone())
                .unwrap_or_default(),
            threads: self.threads,
            jobs_in_flight: update.as_ref().map_or(0, |u| u.second.jobs_in_flight),
            in_flight: update
                .as_ref()
                .map_or_else(Default::default, |u| u.second.in_flight),
            error: None,
        }
    }

    /// The final figures, once the users have stopped.
    async fn finished(&mut self) -> WorkerSnapshot {
        let outcome = self.handle.wait().await;
        let mut last = self.snapshot().await;
        last.stats.users = outcome.peak_users;
        last.users_by_type = outcome.users_by_type.clone();
        last.threads = outcome.threads;
        last.error.clone_from(&outcome.error);
        last
    }
}

/// Why a connection ended.
enum Ended {
    /// The master said to quit, or a signal did: the worker ends.
    Quit,
    /// The connection is gone: try again.
    Lost(String),
}

/// Serves the master until it says quit, a signal comes, or it is gone for good; returns the
/// exit code.
pub async fn serve(settings: WorkerSettings) -> anyhow::Result<u8> {
    let mut signals = common::signals::Signals::install()?;
    let mut current: Option<Current> = None;
    let mut last_contact = Instant::now();
    let mut announced = false;
    loop {
        let resume = current.as_ref().map(|c| Resume {
            run_id: c.run_id.clone(),
            worker_id: c.worker_id,
        });
        let connected = tokio::select! {
            connected = connect(&settings, resume) => connected,
            signal = signals.next() => {
                eprintln!("loadgen: worker: {}: stopping", signal.name());
                tokio::spawn(signals.exit_on_next("loadgen"));
                if let Some(run) = &mut current {
                    run.handle.stop();
                    run.handle.wait().await;
                }
                return Ok(crate::exit_code::EXIT_OK);
            }
        };
        let (socket, worker_id) = match connected {
            Ok(connected) => connected,
            Err(Refusal::Refused(reason)) => bail!("the master refused this worker: {reason}"),
            Err(Refusal::Unreachable(error)) => {
                if last_contact.elapsed() >= settings.master_timeout {
                    if let Some(run) = &mut current {
                        run.handle.stop();
                        run.handle.wait().await;
                    }
                    bail!(
                        "the master at {} is unreachable for {} s ({error}): {}",
                        settings.master_url,
                        settings.master_timeout.as_secs(),
                        if current.is_some() {
                            "the users were stopped"
                        } else {
                            "is it running? (--master-host, --master-port)"
                        }
                    );
                }
                if !announced {
                    eprintln!(
                        "loadgen: worker: waiting for the master at {} ({error})",
                        settings.master_url
                    );
                    announced = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        announced = false;
        last_contact = Instant::now();
        let session = Session {
            settings: &settings,
            worker_id,
            last_contact: &mut last_contact,
            current: &mut current,
        };
        match session.serve(socket, &mut signals).await {
            Ended::Quit => {
                if let Some(run) = &mut current {
                    run.handle.stop();
                    run.handle.wait().await;
                }
                return Ok(crate::exit_code::EXIT_OK);
            }
            Ended::Lost(why) => {
                eprintln!("loadgen: worker: lost the master ({why}); trying again");
            }
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<Box<dyn crate::cluster::tls::Io>>;

enum Refusal {
    Refused(String),
    Unreachable(String),
}

/// Connects and says hello; the socket once welcomed.
async fn connect(
    settings: &WorkerSettings,
    resume: Option<Resume>,
) -> Result<(Socket, u32), Refusal> {
    let attempt = async {
        let stream = crate::cluster::tls::connect(
            &settings.master_host,
            settings.master_port,
            settings.tls.as_ref(),
        )
        .await
        .map_err(|e| {
            // A certificate the worker does not trust will not change by trying again.
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls) => Refusal::Refused(format!(
                    "TLS with the master failed: {tls} (is --master-tls-ca the master's \
                     certificate or its CA, and is --master-host a name it is issued for?)"
                )),
                None => Refusal::Unreachable(e.to_string()),
            }
        })?;
        let (mut socket, _) = tokio_tungstenite::client_async(&settings.master_url, stream)
            .await
            .map_err(|e| Refusal::Unreachable(e.to_string()))?;
        let hello = ToMaster::Hello {
            protocol: PROTOCOL,
            version: VERSION.into(),
            name: settings.name.clone(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            token: settings.token.clone(),
            resume,
        };
        socket
            .send(Message::text(protocol::encode(&hello)))
            .await
            .map_err(|e| Refusal::Unreachable(e.to_string()))?;
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    match protocol::decode::<ToWorker>(text.as_str()) {
                        Ok(ToWorker::Welcome { worker_id }) => {
                            eprintln!(
                                "loadgen: worker: connected to the master at {} (worker {worker_id})",
                                settings.master_url
                            );
                            return Ok((socket, worker_id));
                        }
                        Ok(ToWorker::Refused { reason }) => return Err(Refusal::Refused(reason)),
                        Ok(_) => {}
                        Err(error) => return Err(Refusal::Refused(error)),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(Refusal::Unreachable(error.to_string())),
                None => return Err(Refusal::Unreachable("closed before a welcome".into())),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| Err(Refusal::Unreachable("no welcome within 10 s".into())))
}

/// One connection.
struct Session<'a> {
    settings: &'a WorkerSettings,
    /// The id the master gave this worker.
    worker_id: u32,
    /// When the master was last heard.
    last_contact: &'a mut Instant,
    /// The run this worker is in, which outlives the connection.
    current: &'a mut Option<Current>,
}

/// What a message, a second or the run's end asks to send to the master, or that the
/// connection is over.
type Reply = Result<Vec<ToMaster>, Ended>;

impl Session<'_> {
    /// Follows the master's messages until the connection ends.
    async fn serve(mut self, socket: Socket, signals: &mut common::signals::Signals) -> Ended {
        let (mut sink, mut incoming) = socket.split();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let current = &*self.current;
            let run_ended = async {
                match current {
                    Some(run) if !run.stopping => {
                        run.handle.wait().await;
                    }
                    _ => std::future::pending::<()>().await,
                }
            };
            let reply = tokio::select! {
                message = incoming.next() => self.on_message(message).await,
                () = run_ended => Ok(self.on_run_ended().await),
                _ = tick.tick() => self.on_tick().await,
                signal = signals.next() => return self.on_signal(signal, &mut sink).await,
            };
            let out = match reply {
                Ok(out) => out,
                Err(ended) => return ended,
            };
            for message in out {
                if let Err(error) = sink.send(Message::text(protocol::encode(&message))).await {
                    return Ended::Lost(error.to_string());
                }
            }
        }
    }

    async fn on_message(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Reply {
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => {
                return Err(Ended::Lost("the master closed the connection".into()));
            }
            Some(Ok(_)) => return Ok(Vec::new()),
            Some(Err(error)) => return Err(Ended::Lost(error.to_string())),
        };
        *self.last_contact = Instant::now();
        let mut out = Vec::new();
        match protocol::decode::<ToWorker>(text.as_str()) {
            Ok(ToWorker::Start(spec)) => out.extend(self.on_start(&spec).await),
            Ok(ToWorker::Steer {
                users,
                spawn_rate,
                fixed_counts,
            }) => {
                if let Some(run) = self.current.as_ref() {
                    if !fixed_counts.is_empty() {
                        run.handle.set_fixed_counts(fixed_counts);
                    }
                    if let Err(error) = run.handle.set_users(users, spawn_rate) {
                        tracing::warn!("worker: cannot steer: {error}");
                    }
                }
            }
            Ok(ToWorker::Reset) => {
                if let Some(run) = self.current.as_mut() {
                    run.handle.reset_stats();
                    run.epoch += 1;
                }
            }
            Ok(ToWorker::Stop) => {
                if let Some(run) = self.current.as_mut() {
                    run.handle.stop();
                    eprintln!("loadgen: worker: run {} finished", run.run_id);
                }
                out.extend(self.on_run_ended().await);
            }
            Ok(ToWorker::Quit) => return Err(Ended::Quit),
            Ok(ToWorker::Welcome { .. } | ToWorker::Refused { .. } | ToWorker::Heartbeat) => {}
            Err(error) => tracing::warn!("worker: {error}"),
        }
        Ok(out)
    }

    /// Starts the run (ending the one before, if any); a run that cannot start is a failure
    /// the master hears of.
    async fn on_start(&mut self, spec: &RunSpec) -> Option<ToMaster> {
        match start(self.settings, spec).await {
            Ok((handle, threads)) => {
                eprintln!(
                    "loadgen: worker: run {} started: {} users against {}",
                    spec.run_id(),
                    spec.load.users,
                    common::redact::reference(&spec.host)
                );
                if let Some(old) = self.current.take() {
                    old.handle.stop();
                }
                *self.current = Some(Current {
                    handle,
                    run_id: spec.run_id().to_owned(),
                    worker_id: self.worker_id,
                    seq: 0,
                    epoch: 0,
                    threads,
                    stopping: false,
                });
                None
            }
            Err(error) => {
                eprintln!(
                    "loadgen: worker: cannot start run {}: {error:#}",
                    spec.run_id()
                );
                Some(ToMaster::Failed {
                    run_id: spec.run_id().to_owned(),
                    message: format!("{error:#}"),
                })
            }
        }
    }

    /// The run ended (stopped by the master, or on its own after an error in it): the
    /// master gets its last figures.
    async fn on_run_ended(&mut self) -> Vec<ToMaster> {
        let Some(run) = self.current.as_mut() else {
            return Vec::new();
        };
        run.stopping = true;
        let last = run.finished().await;
        *self.current = None;
        vec![ToMaster::Finished(Box::new(last))]
    }

    /// Every second: the figures so far, or a heartbeat; a master silent too long is lost.
    async fn on_tick(&mut self) -> Reply {
        if self.last_contact.elapsed() > MISSING_AFTER {
            return Err(Ended::Lost(format!(
                "no message for {} s",
                MISSING_AFTER.as_secs()
            )));
        }
        Ok(vec![match self.current.as_mut() {
            Some(run) => ToMaster::Snapshot(Box::new(run.snapshot().await)),
            None => ToMaster::Heartbeat,
        }])
    }

    /// A signal: the users stop, the master gets the last figures, and the worker ends.
    async fn on_signal(
        &mut self,
        signal: common::signals::Signal,
        sink: &mut futures::stream::SplitSink<Socket, Message>,
    ) -> Ended {
        eprintln!(
            "loadgen: worker: {}: stopping the users, then sending the last figures",
            signal.name()
        );
        if let Some(run) = self.current.as_mut() {
            run.handle.stop();
        }
        for last in self.on_run_ended().await {
            let _ = sink.send(Message::text(protocol::encode(&last))).await;
        }
        let _ = sink.close().await;
        Ended::Quit
    }
}

/// Starts the run `spec` describes on this worker's engine.
async fn start(settings: &WorkerSettings, spec: &RunSpec) -> anyhow::Result<(RunHandle, usize)> {
    let mut scenario = spec
        .scenario
        .load(&settings.fixtures)
        .with_context(|| format!("scenario {}", spec.scenario.name))?;
    for user in &mut scenario.users {
        if let Some(share) = spec.fixed_counts.get(&user.name) {
            user.fixed_count = Some(*share);
        }
    }
    let config = RunConfig {
        load: LoadSettings {
            // This machine's own; the master ends the run, resets the figures and watches
            // its own memory. An open-model schedule ends by itself, run time after this
            // worker started, so that the workers' schedules add up to the whole.
            threads: settings.threads,
            run_time: spec.load.arrival.as_ref().and(spec.load.run_time),
            reset_stats: false,
            memory_limit: None,
            // The master drives the shape: its set_users shares each stage's users out.
            shape: Vec::new(),
            ..spec.load.clone()
        },
        live: LiveConfig {
            quiet: true,
            ..LiveConfig::default()
        },
        ..RunConfig::new(spec.host.clone(), scenario, spec.scenario.clone())
    };
    let handle = Run::start(&config).await?;
    Ok((handle, settings.threads))
}
