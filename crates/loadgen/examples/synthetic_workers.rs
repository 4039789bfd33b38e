//! Synthetic workers for `bench/cluster-master.sh`: N connections to a master that speak the
//! real protocol and send, every second, real totals of RPS requests a second over ENDPOINTS
//! endpoints (HdrHistograms of spread latencies, a few failures), as busy workers would,
//! without sending a request. What the master spends on them is what merging costs.
//!
//!   cargo run --release --example synthetic_workers -- ws://127.0.0.1:5557/ 10 10000 20 [TOKEN]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use loadgen::cluster::protocol::{self, PROTOCOL, ToMaster, ToWorker, VERSION, WorkerSnapshot};
use loadgen::stats::{Key, Phase, Stats, StatsSnapshot};
use tokio_tungstenite::tungstenite::Message;

struct Load {
    rps: u64,
    endpoints: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, workers, rps, endpoints, rest @ ..] = args.as_slice() else {
        bail!("usage: synthetic_workers MASTER_URL WORKERS RPS ENDPOINTS [TOKEN]");
    };
    let workers: usize = workers.parse().context("WORKERS: a number")?;
    let load = Arc::new(Load {
        rps: rps.parse().context("RPS: a number")?,
        endpoints: endpoints.parse().context("ENDPOINTS: a number")?,
    });
    let token = rest.first().cloned();
    let mut tasks = Vec::new();
    for index in 0..workers {
        let (url, token, load) = (url.clone(), token.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            worker(index, &url, token, &load)
                .await
                .with_context(|| format!("synthetic worker {index}"))
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// One worker: until the master says quit.
async fn worker(index: usize, url: &str, token: Option<String>, load: &Load) -> anyhow::Result<()> {
    // The master may still be starting: try for 30 s, as real workers wait for theirs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut socket = loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((socket, _)) => break socket,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error).with_context(|| format!("connecting to {url}")),
        }
    };
    let hello = ToMaster::Hello {
        protocol: PROTOCOL,
        version: VERSION.to_owned(),
        name: format!("synthetic-{index}"),
        cores: 1,
        token,
        resume: None,
    };
    socket.send(Message::text(protocol::encode(&hello))).await?;
    let keys: Vec<Key> = (0..load.endpoints)
        .map(|e| Key {
            phase: Phase::Steady,
            method: Arc::from("GET"),
            name: Arc::from(format!("/api/v1/endpoint/{e}").as_str()),
        })
        .collect();
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1));
    let mut run: Option<Running> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = socket.next() => {
                let Some(message) = message else { bail!("the master closed the connection") };
                let Message::Text(text) = message? else { continue };
                match protocol::decode::<ToWorker>(&text).map_err(anyhow::Error::msg)? {
                    ToWorker::Start(spec) => run = Some(Running {
                        run_id: spec.run_id().to_owned(),
                        started: Instant::now(),
                        stats: Stats::default(),
                        seq: 0,
                        epoch: 0,
                    }),
                    ToWorker::Reset => if let Some(run) = &mut run {
                        run.stats = Stats::default();
                        run.epoch += 1;
                    },
                    ToWorker::Stop => if let Some(mut run) = run.take() {
                        let last = run.snapshot(spec_users(load));
                        socket.send(Message::text(protocol::encode(&ToMaster::Finished(Box::new(last))))).await?;
                    },
                    ToWorker::Refused { reason } => bail!("refused: {reason}"),
                    ToWorker::Quit => return Ok(()),
                    ToWorker::Welcome { .. } | ToWorker::Steer { .. } | ToWorker::Heartbeat => {}
                }
            }
            _ = tick.tick() => {
                let message = match &mut run {
                    Some(run) => {
                        record_second(&mut run.stats, &keys, load.rps, &mut random);
                        ToMaster::Snapshot(Box::new(run.snapshot(spec_users(load))))
                    }
                    None => ToMaster::Heartbeat,
                };
                socket.send(Message::text(protocol::encode(&message))).await?;
            }
        }
    }
}

/// A second of `rps` requests spread over `keys`: latencies from 1 ms to about 2 s, skewed
/// towards the fast end as real ones are, and 1 % failed with a 500.
fn record_second(stats: &mut Stats, keys: &[Key], rps: u64, random: &mut XorShift) {
    for n in 0..rps {
        let key = &keys[n as usize % keys.len()];
        let endpoint = stats.endpoints.entry(key.clone()).or_default();
        let spread = random.next() % 1000;
        let latency_us = 1_000 + spread * spread * 2;
        let failed = random.next().is_multiple_of(100);
        endpoint.record(
            latency_us,
            512,
            Some(if failed { 500 } else { 200 }),
            failed,
        );
        endpoint.phases.record(&loadgen::http::Timings {
            connect_us: None,
            tls_us: None,
            first_byte_us: latency_us,
        });
    }
}

/// The run a worker is in.
struct Running {
    run_id: String,
    started: Instant,
    stats: Stats,
    seq: u64,
    epoch: u64,
}

impl Running {
    /// Its totals so far, as a worker sends them.
    fn snapshot(&mut self, users: u64) -> WorkerSnapshot {
        self.seq += 1;
        WorkerSnapshot {
            run_id: self.run_id.clone(),
            seq: self.seq,
            epoch: self.epoch,
            stats: StatsSnapshot::of(
                &self.stats,
                self.started.elapsed().as_secs_f64(),
                users,
                Default::default(),
            ),
            target_users: users,
            users_by_type: BTreeMap::new(),
            threads: 1,
            jobs_in_flight: 0,
            in_flight: Default::default(),
            error: None,
        }
    }
}

/// The users a synthetic worker says it runs: one per 100 requests a second.
fn spec_users(load: &Load) -> u64 {
    (load.rps / 100).max(1)
}

/// A small, fast pseudo-random sequence (the latencies need spread, not quality).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
