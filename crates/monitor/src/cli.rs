//! The command line; every flag is also a `MONITOR_*` variable, so the compose sidecar is
//! configured by environment alone.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::sources::docker::Selector;
use crate::sources::redis::Queue;

/// Sample Docker containers, PostgreSQL, Redis and the host at the same instant, every tick.
///
/// Any subset of sources; the host is on unless --no-host. A source that fails is marked down,
/// retried with backoff, and never stops the others (unless --strict at start-up).
#[derive(Debug, Clone, Parser)]
#[command(name = "monitor", version)]
pub struct Cli {
    /// Watch containers: all (default when given without a value), name=A,B, label=K[=V],
    /// compose=PROJECT, or bare names.
    #[arg(long, env = "MONITOR_DOCKER", num_args = 0..=1, default_missing_value = "all", value_name = "SELECTOR")]
    pub docker: Option<Selector>,
    /// A Compose stack to watch whole: compose:PROJECT, or auto (the one project running).
    /// Finds its containers, its PostgreSQL and Redis (credentials from the containers'
    /// environment, never shown) and its Celery queues; the flags below override what it finds.
    #[arg(long, env = "MONITOR_STACK", value_name = "compose:PROJECT|auto")]
    pub stack: Option<crate::stack::StackSpec>,
    /// With --stack: print what was found and how it would be watched, then exit.
    #[arg(long, env = "MONITOR_DRY_RUN")]
    pub dry_run: bool,
    /// PostgreSQL to watch (the password never appears in output).
    #[arg(long, env = "MONITOR_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Count backends of the URL's database only, or of the whole server.
    #[arg(long, env = "MONITOR_POSTGRES_SCOPE", value_enum, default_value_t = Scope::Database)]
    pub postgres_scope: Scope,
    /// Redis to watch.
    #[arg(long, env = "MONITOR_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Lists whose length to watch, [DB/]NAME (the Celery queue: 1/celery); repeatable.
    #[arg(long, env = "MONITOR_REDIS_QUEUE", value_delimiter = ',')]
    pub redis_queue: Vec<Queue>,
    /// Do not sample the host.
    #[arg(long, env = "MONITOR_NO_HOST")]
    pub no_host: bool,
    /// Time between ticks.
    #[arg(long, env = "MONITOR_INTERVAL", default_value = "1s", value_parser = common::duration::parse_positive_arg)]
    pub interval: Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, env = "MONITOR_DURATION", value_parser = common::duration::parse_arg)]
    pub duration: Option<Duration>,
    /// Write every tick as JSON Lines.
    #[arg(long, env = "MONITOR_OUT")]
    pub out: Option<PathBuf>,
    /// Write every figure as CSV rows.
    #[arg(long, env = "MONITOR_CSV")]
    pub csv: Option<PathBuf>,
    /// Serve /latest, /samples?since= and /metrics on this address (e.g. 127.0.0.1:9187).
    #[arg(long, env = "MONITOR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Let --listen take an address beyond loopback: the endpoint has no authentication, so
    /// only where another guard (a private container network, a firewall) keeps others out.
    #[arg(long, env = "MONITOR_LISTEN_INSECURE_NO_AUTH")]
    pub listen_insecure_no_auth: bool,
    /// Export every figure as OTLP metrics over HTTP/protobuf (e.g. http://127.0.0.1:4318).
    #[arg(long, env = "MONITOR_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Disk throughput that counts as 100%, MB/s.
    #[arg(long, env = "MONITOR_DISK_CAPACITY", default_value_t = 500.0, value_parser = positive_capacity)]
    pub disk_capacity: f64,
    /// Network throughput that counts as 100%, Mbit/s.
    #[arg(long, env = "MONITOR_NETWORK_CAPACITY", default_value_t = 1000.0, value_parser = positive_capacity)]
    pub network_capacity: f64,
    /// Exit at start-up if any source is down.
    #[arg(long, env = "MONITOR_STRICT")]
    pub strict: bool,
    /// No console line per tick (the summary still prints).
    #[arg(short, long, env = "MONITOR_QUIET")]
    pub quiet: bool,
    /// Do not sample the API's and the workers' Python processes with py-spy (on by default
    /// wherever uvicorn, gunicorn, celery... run).
    #[arg(long, env = "MONITOR_NO_PROFILING")]
    pub no_profiling: bool,
}

/// `--postgres-scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scope {
    /// The URL's database.
    Database,
    /// Every database.
    Server,
}

impl Cli {
    /// Refuses, with one line naming the flag, what cannot work: a URL that names no server
    /// of its kind, and an endpoint open beyond loopback without the flag that says so.
    pub fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.postgres_url {
            crate::sources::postgres::check_url(url)
                .map_err(|why| format!("--postgres-url {why}"))?;
        }
        if let Some(url) = &self.redis_url {
            crate::sources::redis::check_url(url).map_err(|why| format!("--redis-url {why}"))?;
        }
        if let Some(listen) = self.listen
            && !listen.ip().is_loopback()
            && !self.listen_insecure_no_auth
        {
            return Err(format!(
                "--listen {listen}: /latest, /samples and /metrics have no authentication, and \
                 anyone who reaches this address could read them: listen on loopback \
                 (127.0.0.1:{}), or pass --listen-insecure-no-auth if another guard (a private \
                 container network, a firewall) keeps others out",
                listen.port()
            ));
        }
        Ok(())
    }

    /// The sources the flags ask for; the host is on unless `--no-host`.
    pub fn sources(&self) -> crate::sources::SourcesConfig {
        let scope = match self.postgres_scope {
            Scope::Database => crate::sources::postgres::Scope::Database,
            Scope::Server => crate::sources::postgres::Scope::Server,
        };
        crate::sources::SourcesConfig {
            docker: self.docker.clone(),
            postgres: self.postgres_url.clone().map(|url| (url, scope)),
            redis: self
                .redis_url
                .clone()
                .map(|url| (url, self.redis_queue.clone())),
            host: (!self.no_host).then(|| crate::sources::host::Capacity {
                disk_bps: self.disk_capacity * 1e6,
                net_bps: self.network_capacity * 1e6 / 8.0,
            }),
            profiles: (!self.no_profiling).then(crate::sources::profiles::Profiling::default),
        }
    }
}

/// A capacity: a finite number above zero (a percentage of NaN or of 0 means nothing).
fn positive_capacity(input: &str) -> Result<f64, String> {
    input
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .ok_or_else(|| format!("{input:?} is not a capacity: give a number above 0, e.g. 500"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_the_workspace_rule_and_refuse_what_would_panic() {
        let cli =
            Cli::try_parse_from(["monitor", "--interval", "0.5", "--duration", "2m"]).unwrap();
        assert_eq!(cli.interval, Duration::from_millis(500));
        assert_eq!(cli.duration, Some(Duration::from_secs(120)));
        for (interval, expected) in [
            ("0", "zero"),
            ("1e19", "longer than a year"),
            ("soon", "write e.g. 30s"),
        ] {
            let error = Cli::try_parse_from(["monitor", "--interval", interval])
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{interval}: {error}");
        }
    }

    #[test]
    fn profiling_is_on_unless_no_profiling() {
        let sources = |args: &[&str]| {
            let mut all = vec!["monitor"];
            all.extend(args);
            Cli::try_parse_from(all).unwrap().sources()
        };
        assert!(sources(&[]).profiles.is_some());
        assert!(sources(&["--no-profiling"]).profiles.is_none());
    }

    #[test]
    fn bad_urls_and_an_open_endpoint_are_refused_naming_the_flag() {
        let check = |args: &[&str]| {
            let mut all = vec!["monitor"];
            all.extend(args);
            Cli::try_parse_from(all).unwrap().check()
        };
        for (args, expected) in [
            (&["--postgres-url", "notaurl"][..], "--postgres-url"),
            (&["--postgres-url", "http://x:1/db"][..], "--postgres-url"),
            (&["--redis-url", "notaurl"][..], "--redis-url"),
            (
                &["--listen", "0.0.0.0:9187"][..],
                "--listen-insecure-no-auth",
            ),
        ] {
            let error = check(args).unwrap_err();
            assert!(
                error.contains(expected) && !error.contains('\n'),
                "{args:?}: {error}"
            );
        }
        let secret = check(&["--postgres-url", "postgres://u:hunter2@h:notaport/db"]).unwrap_err();
        assert!(!secret.contains("hunter2"), "{secret}");
        for args in [
            &["--postgres-url", "postgres://u:p@127.0.0.1:5432/db"][..],
            &["--redis-url", "redis://127.0.0.1:6379/1"][..],
            &["--listen", "127.0.0.1:9187"][..],
            &["--listen", "0.0.0.0:9187", "--listen-insecure-no-auth"][..],
        ] {
            assert_eq!(check(args), Ok(()), "{args:?}");
        }
    }

    #[test]
    fn capacities_are_positive_numbers() {
        for flag in ["--disk-capacity", "--network-capacity"] {
            for bad in ["NaN", "0", "-5", "inf", "lots"] {
                let error = Cli::try_parse_from(["monitor", &format!("{flag}={bad}")])
                    .unwrap_err()
                    .to_string();
                assert!(error.contains("not a capacity"), "{flag} {bad}: {error}");
            }
            assert!(Cli::try_parse_from(["monitor", flag, "250.5"]).is_ok());
        }
    }
}
