//! `loadgen env up|seed|down`: a load environment for users without a stack of their own. `up`
//! starts the FFmpeg API stack of `docker/compose.load.yml` (PostgreSQL, Redis and the testbed
//! API; not the master and workers) as a Compose project of its own, waits until the API
//! answers its health check, and prints the `--host` and `--stack` to run with; `seed` makes
//! accounts with their files ahead of the run, for `--user-data`; `down` removes the project's
//! containers, network and volumes, and nothing else.

mod compose;
mod seed;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::exit_code::EXIT_OK;
use compose::Compose;

/// The project's name when `--project` is not given.
const DEFAULT_PROJECT: &str = "loadgen-env";
/// The services `up` starts: the stack a run loads, not the master and workers.
const SERVICES: &[&str] = &["postgres", "redis", "api"];
/// The API's port inside its container.
const API_PORT: u16 = 8000;
/// The path the API answers its health check on (the contract's).
const HEALTH: &str = "/api/v1/health/";

/// `loadgen env ...`.
#[derive(Debug, Subcommand)]
pub enum EnvAction {
    /// Start PostgreSQL, Redis and the API of docker/compose.load.yml, wait until the API is
    /// healthy, and print the --host and --stack to run with.
    Up(UpArgs),
    /// Make accounts (registered, logged in, with uploaded files) before the run, and write
    /// them to a CSV file for `--user-data`: the run's users then skip register, login and
    /// uploads, so bcrypt does not dominate its start-up.
    Seed(SeedArgs),
    /// Remove the project's containers, network and volumes (docker compose down -v), and
    /// the accounts file `seed` wrote.
    Down(ProjectArgs),
}

/// Which project, from which file.
#[derive(Debug, Args)]
pub struct ProjectArgs {
    /// The Compose project's name: everything `up` makes carries it.
    #[arg(long, env = "LOADGEN_ENV_PROJECT", default_value = DEFAULT_PROJECT)]
    pub project: String,
    /// The compose file [default: docker/compose.load.yml of the repository loadgen runs in,
    /// else the copy built into loadgen, written to the state folder].
    #[arg(
        long = "compose-file",
        env = "LOADGEN_ENV_COMPOSE_FILE",
        value_name = "FILE"
    )]
    pub file: Option<PathBuf>,
}

/// `loadgen env up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The project and its file.
    #[command(flatten)]
    pub project: ProjectArgs,
    /// The port the API is published on, on 127.0.0.1 (0: any free one).
    #[arg(long, env = "LOADGEN_ENV_API_PORT", default_value_t = 8000)]
    pub api_port: u16,
    /// How long the stack may take to become healthy, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// `loadgen env seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The project and its file.
    #[command(flatten)]
    pub project: ProjectArgs,
    /// The API [default: the one `env up` published for the project].
    #[arg(short = 'H', long)]
    pub host: Option<String>,
    /// How many accounts (a run's users share them in turn when there are more users).
    #[arg(long, default_value_t = 20)]
    pub accounts: u32,
    /// Requests at a time (register and login are bcrypt-heavy).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Make the accounts only, without their files: the run's users then upload their own.
    #[arg(long)]
    pub no_files: bool,
    /// Folder of the files to upload (make them with `cargo run -p fixtures-gen -- --out
    /// tests/fixtures`).
    #[arg(long, env = "LOADGEN_FIXTURES", default_value = "tests/fixtures")]
    pub fixtures: PathBuf,
    /// Where to write the accounts [default: accounts.csv in the project's state folder].
    #[arg(long, value_name = "FILE.csv")]
    pub out: Option<PathBuf>,
}

/// Runs `loadgen env ACTION`.
pub async fn run(action: &EnvAction) -> anyhow::Result<u8> {
    match action {
        EnvAction::Up(args) => up(args).await,
        EnvAction::Seed(args) => seed(args).await,
        EnvAction::Down(args) => down(args),
    }
}

async fn up(args: &UpArgs) -> anyhow::Result<u8> {
    let state = state_dir(&args.project.project)?;
    let compose = Compose::find(&args.project, &state)?;
    compose.check_images(SERVICES)?;
    // Empty: Compose picks a free port (the file's `127.0.0.1:${API_PORT:-}:8000`).
    let port = if args.api_port == 0 {
        String::new()
    } else {
        args.api_port.to_string()
    };
    let started = Instant::now();
    eprintln!(
        "loadgen: env up: starting {} of {} as project {}",
        SERVICES.join(", "),
        compose.file.display(),
        compose.project
    );
    compose
        .up(SERVICES, &[("API_PORT", &port)])
        .with_context(|| {
            format!(
                "starting the environment (`loadgen env down --project {}` removes what was started)",
                compose.project
            )
        })?;
    let host = compose.api_host(API_PORT)?;
    let remaining = Duration::from_secs(args.timeout).saturating_sub(started.elapsed());
    wait_healthy(&host, remaining).await.with_context(|| {
        format!(
            "the API did not become healthy: see `{}`",
            compose.describe(&["logs", "api"])
        )
    })?;
    // The default project needs no flag in the commands that follow.
    let project = if compose.project == DEFAULT_PROJECT {
        String::new()
    } else {
        format!(" --project {}", compose.project)
    };
    say(&format!(
        "loadgen: env up: {} healthy in {:.1} s; run with:\n  --host {host}\n  --stack compose:{}\n\
         next: `loadgen env seed{project}` (accounts for --user-data); \
         `loadgen env down{project}` when done\n",
        SERVICES.join(", "),
        started.elapsed().as_secs_f64(),
        compose.project,
    ))?;
    Ok(EXIT_OK)
}

async fn seed(args: &SeedArgs) -> anyhow::Result<u8> {
    let state = state_dir(&args.project.project)?;
    let host = match &args.host {
        Some(host) => host.clone(),
        None => Compose::find(&args.project, &state)?
            .api_host(API_PORT)
            .context("no --host given, and the project's API was not found: start it with `loadgen env up` first")?,
    };
    if args.accounts == 0 || args.concurrency == 0 {
        bail!("--accounts and --concurrency take 1 or more");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| state.join("accounts.csv"));
    let plan = seed::Plan {
        host: host.clone(),
        accounts: args.accounts,
        concurrency: args.concurrency,
        files: if args.no_files {
            None
        } else {
            Some(seed::Files::read(&args.fixtures)?)
        },
        prefix: seed::prefix(),
    };
    wait_healthy(&host, Duration::from_secs(10))
        .await
        .context("the API does not answer (start it with `loadgen env up`)")?;
    let started = Instant::now();
    let text = seed::run(plan).await?;
    seed::write_private(&out, text.as_bytes())
        .with_context(|| format!("cannot write the accounts to {}", out.display()))?;
    say(&format!(
        "loadgen: env seed: {} accounts{} in {:.1} s, written to {}; run with:\n  --user-data {}\n",
        args.accounts,
        if args.no_files {
            ""
        } else {
            " (registered, logged in, 3 videos and 1 audio file each)"
        },
        started.elapsed().as_secs_f64(),
        out.display(),
        out.display()
    ))?;
    Ok(EXIT_OK)
}

fn down(args: &ProjectArgs) -> anyhow::Result<u8> {
    let state = state_dir(&args.project)?;
    let compose = Compose::find(args, &state)?;
    compose.down()?;
    // The state folder is this project's alone: the embedded compose file and the accounts.
    if state.exists() {
        std::fs::remove_dir_all(&state)
            .with_context(|| format!("cannot remove {}", state.display()))?;
    }
    say(&format!(
        "loadgen: env down: project {} removed (containers, network, volumes)\n",
        compose.project
    ))?;
    Ok(EXIT_OK)
}

/// Writes to stdout; a reader that went away is not an error.
fn say(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// Waits until `GET host/api/v1/health/` answers 2xx, for at most `patience`.
async fn wait_healthy(host: &str, patience: Duration) -> anyhow::Result<()> {
    let target = crate::http::Target::resolve(host, None)
        .await
        .with_context(|| format!("--host {host}"))?;
    let deadline = Instant::now() + patience;
    loop {
        match crate::preflight::check_health(&target, HEALTH).await {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() >= deadline => bail!("{why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The project's own folder: `$LOADGEN_ENV_DIR`, else `$XDG_STATE_HOME/loadgen/env`, else
/// `~/.local/state/loadgen/env`, then the project's name. Checks the name on the way, since it
/// becomes a path and Compose's labels.
fn state_dir(project: &str) -> anyhow::Result<PathBuf> {
    check_project(project)?;
    let root = if let Some(dir) = std::env::var_os("LOADGEN_ENV_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        Path::new(&dir).join("loadgen/env")
    } else if let Some(home) = std::env::var_os("HOME") {
        Path::new(&home).join(".local/state/loadgen/env")
    } else {
        bail!("no state folder: set LOADGEN_ENV_DIR (or HOME)");
    };
    Ok(root.join(project))
}

/// Compose's rule for project names: lower-case letters, digits, `-` and `_`, starting with a
/// letter or digit.
fn check_project(project: &str) -> anyhow::Result<()> {
    let valid = project
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "--project {project:?}: a Compose project name takes lower-case letters, digits, - \
             and _, and starts with a letter or digit (e.g. loadgen-env)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_composes_rule() {
        check_project("loadgen-env").unwrap();
        check_project("lg_env2").unwrap();
        for bad in ["", "-x", "Loadgen", "a/b", "a b", "../x"] {
            let error = check_project(bad).unwrap_err().to_string();
            assert!(error.contains("lower-case letters"), "{bad}: {error}");
        }
    }
}
