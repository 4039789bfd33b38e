//! The master: workers connect to it; for a run it shares the users out, steers them, merges
//! their figures into one timeline and one set of totals, and notices a worker that is gone.
//! To the engine it is one more runner: [`Master::run`] takes the same channels as the local
//! runner and returns the same outcome, so every driver (headless, web UI) and every report
//! works unchanged.
//!
//! Exactness: each worker sends its totals so far, and the master keeps the latest of each
//! (a lost worker's last one included). The run's totals are their sum, so a message lost or
//! received twice changes nothing; the timeline's seconds are differences of totals.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};

use super::listener::{self, Event};
use super::protocol::ToWorker;
use super::run::{ClusterRun, Connected};
use crate::config::RunConfig;
use crate::outcome::{EngineError, RunOutcome, WorkerSummary};
use crate::runner::Channels;

/// Where a master listens.
#[derive(Debug, Clone)]
pub struct MasterSettings {
    /// Address and port (`--master-bind-host`, `--master-bind-port`).
    pub listen: SocketAddr,
    /// The shared secret workers must give (`--cluster-token`).
    pub token: Option<String>,
    /// Serve `wss://` with this (`--master-tls-cert`, `--master-tls-key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl MasterSettings {
    /// `wss` over TLS, else `ws`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "wss" } else { "ws" }
    }
}

/// A master, listening; cheap to clone.
#[derive(Clone)]
pub struct Master {
    hub: Arc<Mutex<Hub>>,
    addr: SocketAddr,
    /// The workers as last seen (for a UI, while a run holds the hub).
    status: Arc<std::sync::Mutex<Vec<WorkerSummary>>>,
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").field("addr", &self.addr).finish()
    }
}

/// The connections, between runs and during one.
struct Hub {
    events: mpsc::UnboundedReceiver<Event>,
    idle: BTreeMap<u64, Connected>,
}

impl Master {
    /// Listens for workers.
    pub async fn bind(settings: MasterSettings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen).await?;
        let addr = listener.local_addr()?;
        let (events_tx, events) = mpsc::unbounded_channel();
        listener::spawn_accept_loop(listener, settings.token, settings.tls, events_tx);
        Ok(Self {
            hub: Arc::new(Mutex::new(Hub {
                events,
                idle: BTreeMap::new(),
            })),
            addr,
            status: Arc::default(),
        })
    }

    /// The address workers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The workers: those in the run as of its last second, or those connected and ready
    /// between runs.
    pub fn workers(&self) -> Vec<WorkerSummary> {
        if let Ok(mut hub) = self.hub.try_lock() {
            hub.drain();
            return hub
                .idle
                .iter()
                .map(|(conn, c)| WorkerSummary {
                    id: *conn as u32,
                    name: c.name.clone(),
                    cores: c.cores,
                    state: "ready".into(),
                    ..WorkerSummary::default()
                })
                .collect();
        }
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `count` workers are connected, printing each; fails after `max_wait`.
    pub async fn wait_for_workers(&self, count: usize, max_wait: Duration) -> Result<(), String> {
        let mut hub = self.hub.lock().await;
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            if hub.idle.len() >= count {
                return Ok(());
            }
            let event = tokio::time::timeout_at(deadline, hub.events.recv()).await;
            match event {
                Ok(Some(event)) => {
                    if let Some(name) = hub.handle_idle(event) {
                        eprintln!(
                            "loadgen: master: worker {name} connected ({}/{count})",
                            hub.idle.len()
                        );
                    }
                }
                Ok(None) => return Err("the master stopped listening".into()),
                Err(_) => {
                    return Err(format!(
                        "--expect-workers {count}: only {} worker(s) connected in {} s; start \
                         more with `loadgen --worker --master-host {}` (or wait longer with \
                         --expect-workers-max-wait)",
                        hub.idle.len(),
                        max_wait.as_secs(),
                        self.addr.ip()
                    ));
                }
            }
        }
    }

    /// Runs `config` on the connected workers (and those that join during the run) until its
    /// run time or a stop through `channels`.
    pub(crate) async fn run(
        &self,
        config: RunConfig,
        channels: Channels,
    ) -> Result<RunOutcome, EngineError> {
        let mut hub = self.hub.lock().await;
        hub.drain();
        if hub.idle.is_empty() {
            return Err(EngineError::Preflight(format!(
                "no worker is connected to this master ({}): start one with `loadgen --worker \
                 --master-host HOST`, or give --expect-workers N",
                self.addr
            )));
        }
        let mut run = ClusterRun::new(config, channels, self.status.clone());
        for (conn, connected) in std::mem::take(&mut hub.idle) {
            run.add_member(conn, connected, None);
        }
        let result = run.drive(&mut hub.events).await;
        // Workers still connected wait for the next run.
        for member in run.members.into_values() {
            if let (Some(conn), Some(outbox)) = (member.conn, member.outbox) {
                hub.idle.insert(
                    conn,
                    Connected {
                        name: member.name,
                        cores: member.cores,
                        outbox,
                    },
                );
            }
        }
        result
    }

    /// Tells every connected worker to exit, and waits (a few seconds at most) until they
    /// have closed their connections: a master that exits at once would leave them waiting for
    /// their timeout.
    pub async fn quit(&self) {
        let mut hub = self.hub.lock().await;
        hub.drain();
        for connected in hub.idle.values() {
            let _ = connected.outbox.send(ToWorker::Quit);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !hub.idle.is_empty() {
            match tokio::time::timeout_at(deadline, hub.events.recv()).await {
                Ok(Some(Event::Left { conn, .. })) => {
                    hub.idle.remove(&conn);
                }
                Ok(Some(Event::Hello { outbox, .. })) => {
                    let _ = outbox.send(ToWorker::Quit);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

impl Hub {
    /// Takes in what happened while no one was listening.
    fn drain(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.handle_idle(event);
        }
    }

    /// An event between runs; returns the name of a worker that connected.
    fn handle_idle(&mut self, event: Event) -> Option<String> {
        match event {
            Event::Hello {
                conn,
                name,
                cores,
                outbox,
                ..
            } => {
                let _ = outbox.send(ToWorker::Welcome {
                    worker_id: conn as u32,
                });
                self.idle.insert(
                    conn,
                    Connected {
                        name: name.clone(),
                        cores,
                        outbox,
                    },
                );
                Some(name)
            }
            Event::Left { conn, why } => {
                if let Some(gone) = self.idle.remove(&conn) {
                    eprintln!("loadgen: master: worker {} left: {why}", gone.name);
                }
                None
            }
            Event::Message { .. } => None,
        }
    }
}
