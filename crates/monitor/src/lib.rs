//! `monitor`: samples Docker containers, PostgreSQL, Redis and the host at the same instant,
//! every tick, so that load and every layer of the stack share one clock. The seed's
//! `docker stats`, `psql -c "SELECT count(*) FROM pg_stat_activity"` and `redis-cli INFO clients`
//! in three terminals, done together, with their figures kept.

pub mod celery;
pub mod cli;
pub use common::redact;
pub mod sample;
pub mod sampler;
pub mod sinks;
pub mod source;
pub mod sources;
pub mod sql;
pub mod stack;
pub mod thresholds;
pub mod tunnel;

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use cli::Cli;
use thresholds::Thresholds;

/// Runs the command line until `--duration` or Ctrl-C.
pub async fn run(cli: Cli) -> ExitCode {
    let outcome = run_inner(cli).await;
    // `--stack`'s helper containers go with the monitor.
    tunnel::close_all().await;
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("monitor: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_inner(cli: Cli) -> anyhow::Result<ExitCode> {
    cli.check().map_err(anyhow::Error::msg)?;
    if cli.dry_run {
        let Some(spec) = &cli.stack else {
            anyhow::bail!("--dry-run prints what --stack finds: give --stack compose:PROJECT");
        };
        discover_stack(spec, &cli).await?.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    // First: a signal from now on stops the sampling and keeps what was sampled.
    let signals = common::signals::Signals::install().context("cannot handle signals")?;
    let thresholds = Thresholds::default();
    let stop = CancellationToken::new();
    let mut sinks = sinks::Sinks::default();
    if !cli.quiet {
        sinks.push(sinks::console::Console(thresholds));
    }
    sinks.push(sinks::summary::SummarySink {
        summary: sinks::summary::Summary::new(cli.interval),
        thresholds,
    });
    if let Some(path) = &cli.out {
        let file = sinks::files::JsonLines::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        sinks.push(file);
    }
    if let Some(path) = &cli.csv {
        let file = sinks::files::Csv::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        sinks.push(file);
    }
    if let Some(addr) = cli.listen {
        sinks.push(serve_http(addr, stop.clone()).await?);
    }
    if let Some(endpoint) = &cli.otlp_endpoint {
        sinks.push(otlp_sink(endpoint, &cli).await?);
    }
    let mut sources = cli.sources();
    // Held to the end: its helper containers carry the connections to unpublished servers.
    let _stack = match &cli.stack {
        Some(spec) => {
            let discovery = discover_stack(spec, &cli).await?;
            discovery.fill(&mut sources);
            Some(discovery)
        }
        None => None,
    };
    let mut sampler = sampler::Sampler::new(sources.build(), cli.interval);

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
    for (name, reading) in &first.sources {
        for note in &reading.notes {
            eprintln!("monitor: {name}: WARNING: {note}");
        }
    }
    if cli.strict && !down.is_empty() {
        anyhow::bail!(
            "{} source(s) down at start-up and --strict is set",
            down.len()
        );
    }
    sinks.write(&first);

    let on_signal = stop.clone();
    signals.spawn_handler("monitor", move |signal| {
        eprintln!(
            "\nmonitor: {}: stopping, then writing the summary and the files",
            signal.name()
        );
        on_signal.cancel();
    });
    let remaining = cli.duration.map(|d| d.saturating_sub(cli.interval));
    sampler
        .run(remaining, stop.clone(), |tick| sinks.write(tick))
        .await;
    stop.cancel();
    sinks.finish().await.context("could not write every tick")?;
    Ok(ExitCode::SUCCESS)
}

/// Discovers `--stack` and prints what was found (stderr, before any tick).
async fn discover_stack(spec: &stack::StackSpec, cli: &Cli) -> anyhow::Result<stack::Discovery> {
    let request = stack::Request {
        spec: spec.clone(),
        load_port: None,
        postgres_given: cli.postgres_url.is_some(),
        redis_given: cli.redis_url.is_some(),
        flags: stack::Flags {
            postgres: "--postgres-url",
            redis: "--redis-url",
            redis_queue: "--redis-queue",
        },
    };
    let discovery = stack::discover(&request).await?;
    eprint!("{}", discovery.report("monitor: "));
    Ok(discovery)
}

#[cfg(feature = "http")]
async fn serve_http(
    addr: std::net::SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<sinks::http::Recent> {
    let recent = sinks::http::Recent::default();
    let bound = sinks::http::serve(addr, recent.clone(), stop)
        .await
        .with_context(|| format!("cannot listen on {addr} (choose another --listen)"))?;
    eprintln!("monitor: serving http://{bound}/latest, /samples?since=, /metrics");
    Ok(recent)
}

#[cfg(not(feature = "http"))]
async fn serve_http(
    _: std::net::SocketAddr,
    _: CancellationToken,
) -> anyhow::Result<sinks::Collect> {
    anyhow::bail!("--listen: this monitor was built without the `http` feature")
}

#[cfg(feature = "otlp")]
async fn otlp_sink(endpoint: &str, cli: &Cli) -> anyhow::Result<sinks::otlp::OtlpSink> {
    // Checked and tried once at start: a typo costs no run, and a collector that is down says so
    // now rather than only at the end.
    let parsed = url::Url::parse(endpoint)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .with_context(|| {
            format!(
                "--otlp-endpoint {}: not an http(s) URL; give the collector's OTLP/HTTP \
                 address, e.g. http://127.0.0.1:4318",
                redact::url(endpoint)
            )
        })?;
    if let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let connect = tokio::net::TcpStream::connect((host, port));
        match tokio::time::timeout(std::time::Duration::from_secs(3), connect).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!(
                "monitor: WARNING: --otlp-endpoint {}: {e} (the run goes on; export retried every interval)",
                redact::url(endpoint)
            ),
            Err(_) => eprintln!(
                "monitor: WARNING: --otlp-endpoint {}: no answer within 3 s (the run goes on)",
                redact::url(endpoint)
            ),
        }
    }
    let (endpoint, interval) = (endpoint.to_owned(), cli.interval);
    let instance = |url: &Option<String>| url.as_deref().map(redact::instance);
    let (postgres, redis) = (instance(&cli.postgres_url), instance(&cli.redis_url));
    // The exporter's HTTP client is a blocking one: build it off the async threads.
    let built = tokio::task::spawn_blocking(move || {
        sinks::otlp::Otlp::new(&endpoint, interval, postgres, redis)
    })
    .await
    .context("starting the OTLP exporter")?;
    Ok(sinks::otlp::OtlpSink(Some(
        built.map_err(anyhow::Error::msg)?,
    )))
}

#[cfg(not(feature = "otlp"))]
async fn otlp_sink(_: &str, _: &Cli) -> anyhow::Result<sinks::Collect> {
    anyhow::bail!("--otlp-endpoint: this monitor was built without the `otlp` feature")
}
