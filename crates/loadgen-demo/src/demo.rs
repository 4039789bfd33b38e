//! The demo: the whole product in one command. Starts the testbed with a planted
//! bottleneck, runs the built-in scenario against it with the monitor on, prints the summary and
//! the findings, and writes the HTML report. It uses PostgreSQL and Redis when they answer
//! (`DATABASE_URL`, `REDIS_URL`), the in-memory store otherwise, and says which.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use loadgen::config::{BackendConfig, LiveConfig, LoadSettings, Outputs, RunConfig};
use monitor::sources::SourcesConfig;

/// Start the testbed with a planted bottleneck, load it with loadgen and the monitor, and
/// diagnose it.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen demo", version, args_override_self = true)]
pub struct DemoArgs {
    /// The bottleneck to plant (auto: a small database pool on PostgreSQL, a rate limit in memory).
    #[arg(long, value_enum, default_value_t = Bottleneck::Auto)]
    pub bottleneck: Bottleneck,
    /// PostgreSQL for the testbed (used when it answers).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis for the testbed's job queue (used when it answers).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Users.
    #[arg(short = 'u', long, default_value_t = 30)]
    pub users: u64,
    /// Length of the load test.
    #[arg(short = 't', long, default_value = "40s", value_parser = common::duration::parse_positive_arg)]
    pub run_time: Duration,
    /// Where the HTML report goes.
    #[arg(long, default_value = "demo-report.html")]
    pub html: PathBuf,
    /// Folder of the fixtures (made in a temporary folder when missing).
    #[arg(long, default_value = "tests/fixtures")]
    pub fixtures: PathBuf,
    /// Instead of one load test, search the planted stack's capacity (`loadgen capacity`):
    /// the highest arrival rate that meets --slo, and what breaks beyond it.
    #[arg(long)]
    pub capacity: bool,
    /// The capacity search's objective.
    #[arg(long, default_value = "p95<1s,failures<1%", requires = "capacity")]
    pub slo: loadgen::config::capacity::Slo,
    /// The capacity search's first rate.
    #[arg(long, default_value = "1/s", value_parser = parse_rate, requires = "capacity")]
    pub start_rate: loadgen::arrival::Rate,
    /// The capacity search's highest rate.
    #[arg(long, default_value = "200/s", value_parser = parse_rate, requires = "capacity")]
    pub ceiling: loadgen::arrival::Rate,
}

fn parse_rate(text: &str) -> Result<loadgen::arrival::Rate, String> {
    loadgen::arrival::Rate::parse(text).map_err(|e| e.to_string())
}

/// What the demo plants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Bottleneck {
    /// Chosen by the store.
    Auto,
    /// A database pool of 1 with a slow query on /api/v1/tasks.
    Pool,
    /// 60 requests per minute per client (the real API's default).
    RateLimit,
    /// bcrypt cost 12 for register and login.
    Hashing,
    /// One worker, 3 s jobs: the queue grows.
    Jobs,
}

async fn answers_postgres(url: &str) -> bool {
    use sqlx::Connection;
    matches!(
        tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect(url)).await,
        Ok(Ok(_))
    )
}

async fn answers_redis(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            Duration::from_secs(3),
            client.get_multiplexed_async_connection()
        )
        .await,
        Ok(Ok(_))
    )
}

/// Runs the demo; returns loadgen's exit code.
pub async fn run(args: DemoArgs) -> anyhow::Result<u8> {
    let mut config = testbed::Config::for_tests();
    let postgres = demo_postgres(&args).await;
    let redis = match &args.redis_url {
        Some(url) if answers_redis(url).await => Some(url.clone()),
        _ => None,
    };
    let queue = format!("loadgen-demo-{}", std::process::id());
    config.database_url = postgres.as_ref().map(|(url, _)| url.clone());
    config.redis_url = redis.as_ref().map(|url| with_db(url, 1));
    config.queue_name = queue.clone();
    config.job_seconds = Duration::from_millis(500);
    let bottleneck = match (args.bottleneck, &postgres) {
        (Bottleneck::Auto, Some(_)) => Bottleneck::Pool,
        (Bottleneck::Auto, None) => Bottleneck::RateLimit,
        (chosen, _) => chosen,
    };
    let planted = plant(&mut config, bottleneck)?;
    let testbed = testbed::start(config)
        .await
        .context("starting the testbed")?;
    println!("demo: {}", testbed.startup_line());
    say_where(&args, &postgres, redis.is_some(), &queue);
    println!("demo: planted bottleneck: {planted}");
    let fixtures = demo_fixtures(&args)?;
    let result = match demo_config(
        &args,
        testbed.base_url(),
        &fixtures,
        &postgres,
        &redis,
        &queue,
    ) {
        Ok(config) if args.capacity => loadgen::capacity::drive(config, capacity_plan(&args)).await,
        Ok(config) => loadgen::headless::drive(config).await,
        Err(error) => Err(error),
    };
    testbed.stop().await;
    if let (Some((_, name)), Some(admin)) = (&postgres, &args.database_url) {
        drop_database(admin, name).await;
    }
    result
}

/// A database of the demo's own on `--database-url`'s server, as (URL, name), when the server
/// answers: the demo never touches an existing database, and drops its own at the end.
async fn demo_postgres(args: &DemoArgs) -> Option<(String, String)> {
    match &args.database_url {
        Some(url) if answers_postgres(url).await => match demo_database(url).await {
            Ok(created) => Some(created),
            Err(e) => {
                println!(
                    "demo: cannot create a demo database on {}: {e}",
                    common::redact::url(url)
                );
                None
            }
        },
        _ => None,
    }
}

/// Sets the testbed's knobs for `bottleneck`; says what was planted.
fn plant(config: &mut testbed::Config, bottleneck: Bottleneck) -> anyhow::Result<&'static str> {
    Ok(match bottleneck {
        Bottleneck::Pool | Bottleneck::Auto => {
            config.db_pool = 1;
            config.workers = 8;
            config.slow = vec!["/api/v1/tasks:500".parse().map_err(anyhow::Error::msg)?];
            "a database pool of 1 connection, held 500 ms by every GET /api/v1/tasks"
        }
        Bottleneck::RateLimit => {
            config.rate_limit_per_minute = 60;
            "the real API's default rate limit, 60 requests per minute per client IP"
        }
        Bottleneck::Hashing => {
            config.hash_cost = 12;
            "bcrypt cost 12 on register and login, as the real API"
        }
        Bottleneck::Jobs => {
            config.workers = 1;
            config.job_seconds = Duration::from_secs(3);
            "one job worker taking 3 s per job"
        }
    })
}

/// Which store and which job queue the testbed uses, and why.
fn say_where(args: &DemoArgs, postgres: &Option<(String, String)>, on_redis: bool, queue: &str) {
    match (postgres, &args.database_url) {
        (Some((_, name)), _) => {
            println!("demo: using PostgreSQL (database {name}, dropped at the end)")
        }
        (None, Some(_)) => {
            println!("demo: DATABASE_URL cannot be used: the in-memory store instead")
        }
        (None, None) => println!(
            "demo: no DATABASE_URL: the in-memory store (set DATABASE_URL and REDIS_URL for the full stack)"
        ),
    }
    println!(
        "demo: job queue: {}",
        if on_redis {
            format!("Redis list 1/{queue}")
        } else {
            "in memory".into()
        }
    );
}

/// `--fixtures` when it holds both files, else short ones made with ffmpeg in a temporary
/// folder.
fn demo_fixtures(args: &DemoArgs) -> anyhow::Result<PathBuf> {
    if args.fixtures.join("test_video.mp4").is_file()
        && args.fixtures.join("test_audio.mp3").is_file()
    {
        return Ok(args.fixtures.clone());
    }
    let dir = std::env::temp_dir().join("loadgen-demo-fixtures");
    let spec = fixtures_gen::spec::FixtureSpec {
        duration_secs: 2.0,
        ..Default::default()
    };
    fixtures_gen::Fixtures::new(&dir, spec, fixtures_gen::Tools::default())
        .generate(false)
        .context("making the demo's fixtures with ffmpeg")?;
    Ok(dir)
}

/// The run the demo drives: the built-in scenario, 10 users a second up to `--users`, the
/// monitor on whatever backend services it uses (the host and loadgen itself otherwise).
fn demo_config(
    args: &DemoArgs,
    host: String,
    fixtures: &std::path::Path,
    postgres: &Option<(String, String)>,
    redis: &Option<String>,
    queue: &str,
) -> anyhow::Result<RunConfig> {
    let scenario_source = loadgen::scenario::ScenarioSource::builtin();
    let scenario = scenario_source.load(fixtures)?;
    let sources = SourcesConfig {
        postgres: postgres
            .as_ref()
            .map(|(url, _)| (url.clone(), monitor::sources::postgres::Scope::Database)),
        redis: redis.as_ref().map(|url| {
            let watched = monitor::sources::redis::Queue {
                db: 1,
                name: queue.to_owned(),
            };
            (url.clone(), vec![watched])
        }),
        host: Some(Default::default()),
        docker: None,
        // The demo's API is the Rust testbed: no Python to profile.
        profiles: None,
    };
    Ok(RunConfig {
        load: LoadSettings {
            users: args.users,
            spawn_rate: 10.0,
            run_time: Some(args.run_time.max(Duration::from_secs(5))),
            ..LoadSettings::default()
        },
        targets: loadgen::targets::Targets {
            users: Some(args.users),
            ..Default::default()
        },
        backend: Some(BackendConfig::InProcess(sources)),
        outputs: Outputs {
            html: Some(args.html.clone()),
            ..Outputs::default()
        },
        live: LiveConfig {
            quiet: true,
            ..LiveConfig::default()
        },
        ..RunConfig::new(host, scenario, scenario_source)
    })
}

/// The demo's capacity search: from `--start-rate`, doubling, 15 s steps judged after 5 s.
fn capacity_plan(args: &DemoArgs) -> loadgen::config::capacity::CapacityPlan {
    loadgen::config::capacity::CapacityPlan {
        start: args.start_rate,
        ceiling: args.ceiling,
        step_time: Duration::from_secs(15),
        settle: Duration::from_secs(5),
        ..loadgen::config::capacity::CapacityPlan::new(args.slo.clone())
    }
}

/// `url` with its path set to `/db`.
fn with_db(url: &str, db: u32) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_path(&format!("/{db}"));
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

async fn demo_database(admin_url: &str) -> anyhow::Result<(String, String)> {
    use sqlx::Connection;
    let name = format!("loadgen_demo_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(&format!("/{name}"));
    Ok((url.to_string(), name))
}

async fn drop_database(admin_url: &str, name: &str) {
    use sqlx::Connection;
    if let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
}
