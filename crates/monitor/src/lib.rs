//! `monitor`: samples Docker containers, PostgreSQL, Redis and the host at the same instant,
//! every tick, so that load and every layer of the stack share one clock. The seed's
//! `docker stats`, `psql -c "SELECT count(*) FROM pg_stat_activity"` and `redis-cli INFO clients`
//! in three terminals, done together, with their figures kept.

pub mod cli;
pub use common::redact;
pub mod sample;
pub mod sampler;
pub mod sinks;
pub mod source;
pub mod sources;
pub mod thresholds;

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use cli::Cli;
use sample::Tick;
use source::Source;
use thresholds::Thresholds;

/// The sources the flags ask for.
pub fn sources(cli: &Cli) -> Vec<Box<dyn Source>> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if let Some(selector) = &cli.docker {
        sources.push(Box::new(sources::docker::Docker::new(selector.clone())));
    }
    if let Some(url) = &cli.postgres_url {
        let scope = match cli.postgres_scope {
            cli::Scope::Database => sources::postgres::Scope::Database,
            cli::Scope::Server => sources::postgres::Scope::Server,
        };
        sources.push(Box::new(sources::postgres::Postgres::new(url, scope)));
    }
    if let Some(url) = &cli.redis_url {
        sources.push(Box::new(sources::redis::Redis::new(
            url,
            cli.redis_queue.clone(),
        )));
    }
    if !cli.no_host {
        let capacity = sources::host::Capacity {
            disk_bps: cli.disk_capacity * 1e6,
            net_bps: cli.network_capacity * 1e6 / 8.0,
        };
        sources.push(Box::new(sources::host::Host::new(capacity)));
    }
    sources
}

/// Runs the command line until `--duration` or Ctrl-C.
pub async fn run(cli: Cli) -> ExitCode {
    match run_inner(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("monitor: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_inner(cli: Cli) -> anyhow::Result<ExitCode> {
    let thresholds = Thresholds::default();
    let mut jsonl = match &cli.out {
        Some(path) => Some(
            sinks::files::JsonLines::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => None,
    };
    let mut csv = match &cli.csv {
        Some(path) => Some(
            sinks::files::Csv::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        ),
        None => None,
    };
    let stop = CancellationToken::new();
    let recent = sinks::http::Recent::default();
    if let Some(addr) = cli.listen {
        let bound = sinks::http::serve(addr, recent.clone(), stop.clone())
            .await
            .with_context(|| format!("cannot listen on {addr} (choose another --listen)"))?;
        eprintln!("monitor: serving http://{bound}/latest, /samples?since=, /metrics");
    }
    let mut otlp = match &cli.otlp_endpoint {
        Some(endpoint) => {
            let (endpoint, interval) = (endpoint.clone(), cli.interval);
            let instance = |url: &Option<String>| url.as_deref().map(redact::instance);
            let (postgres, redis) = (instance(&cli.postgres_url), instance(&cli.redis_url));
            // The exporter's HTTP client is a blocking one: build it off the async threads.
            let built = tokio::task::spawn_blocking(move || {
                sinks::otlp::Otlp::new(&endpoint, interval, postgres, redis)
            })
            .await
            .context("starting the OTLP exporter")?;
            Some(built.map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let mut sampler = sampler::Sampler::new(sources(&cli), cli.interval);
    let mut summary = sinks::summary::Summary::new(cli.interval);
    let mut write_error: Option<String> = None;
    let mut handle = |tick: &Tick| {
        if !cli.quiet {
            println!("{}", sinks::console::line(tick, &thresholds));
        }
        summary.add(tick, &thresholds);
        if let Some(out) = jsonl.as_mut()
            && let Err(e) = out.write(tick)
        {
            write_error.get_or_insert(format!("JSON Lines: {e}"));
        }
        if let Some(out) = csv.as_mut()
            && let Err(e) = out.write(tick)
        {
            write_error.get_or_insert(format!("CSV: {e}"));
        }
        if let Some(otlp) = otlp.as_mut() {
            otlp.record(tick);
        }
        recent.push(tick.clone());
    };

    // The first tick now: each source that is down says why, once, on its own line.
    let first = sampler.tick().await;
    let down: Vec<String> = first
        .sources
        .iter()
        .filter(|(_, r)| !r.up)
        .map(|(name, r)| {
            format!(
                "monitor: {name}: {} (retrying with backoff)",
                r.error.as_deref().unwrap_or("down")
            )
        })
        .collect();
    for line in &down {
        eprintln!("{line}");
    }
    if cli.strict && !down.is_empty() {
        anyhow::bail!(
            "{} source(s) down at start-up and --strict is set",
            down.len()
        );
    }
    handle(&first);

    let ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let remaining = cli.duration.map(|d| d.saturating_sub(cli.interval));
    sampler.run(remaining, stop.clone(), &mut handle).await;
    stop.cancel();
    if let Some(otlp) = otlp {
        let flushed = tokio::task::spawn_blocking(move || otlp.shutdown())
            .await
            .context("stopping the OTLP exporter")?;
        if let Err(e) = flushed {
            write_error.get_or_insert(e);
        }
    }
    eprint!("{}", summary.render());
    if let Some(error) = write_error {
        anyhow::bail!("could not write every tick: {error}");
    }
    Ok(ExitCode::SUCCESS)
}
