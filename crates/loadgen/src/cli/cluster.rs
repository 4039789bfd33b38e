//! The flags of distributed runs (Locust's `--master`, `--worker` and theirs), resolved into
//! the role this process plays.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::cluster::MasterSettings;
use crate::locust_worker::LocustWorkerSettings;
use crate::worker::WorkerSettings;

/// Whose master a worker joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MasterProtocol {
    /// A loadgen master (WebSocket, our exact histograms).
    Loadgen,
    /// A Locust 2.x master (ZeroMQ and msgpack, Locust's rounded response times).
    Locust,
}

/// Distributed runs.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Run as a master: workers connect to it and run the users; it merges their figures
    /// into one report.
    #[arg(long, env = "LOADGEN_MASTER", conflicts_with = "worker")]
    pub master: bool,
    /// Address the master listens on for workers (anything but loopback needs
    /// --cluster-token).
    #[arg(long, env = "LOADGEN_MASTER_BIND_HOST", default_value = "127.0.0.1")]
    pub master_bind_host: String,
    /// Port the master listens on for workers.
    #[arg(long, env = "LOADGEN_MASTER_BIND_PORT", default_value_t = 5557)]
    pub master_bind_port: u16,
    /// A headless master waits for this many workers before it starts (ignored without
    /// --master, as Locust ignores it).
    #[arg(long, env = "LOADGEN_EXPECT_WORKERS")]
    pub expect_workers: Option<usize>,
    /// How long a headless master waits for --expect-workers, seconds.
    #[arg(
        long,
        env = "LOADGEN_EXPECT_WORKERS_MAX_WAIT",
        default_value_t = 120,
        value_name = "SECONDS"
    )]
    pub expect_workers_max_wait: u64,
    /// Run as a worker of the master at --master-host.
    #[arg(long, env = "LOADGEN_WORKER")]
    pub worker: bool,
    /// The master's host (also LOCUST_MASTER_HOST).
    #[arg(long, env = "LOADGEN_MASTER_HOST")]
    pub master_host: Option<String>,
    /// The master's port.
    #[arg(long, env = "LOADGEN_MASTER_PORT", default_value_t = 5557)]
    pub master_port: u16,
    /// The master a worker joins: another loadgen, or a Locust master (`locust`: this worker
    /// runs the -f scenario's user types named as the master's user classes).
    #[arg(
        long,
        env = "LOADGEN_MASTER_PROTOCOL",
        value_enum,
        default_value_t = MasterProtocol::Loadgen
    )]
    pub master_protocol: MasterProtocol,
    /// A worker stops its users and exits when the master has been unreachable this long.
    #[arg(long, env = "LOADGEN_MASTER_TIMEOUT", default_value = "15s", value_parser = common::duration::parse_positive_arg)]
    pub master_timeout: Duration,
    /// The worker's name in the master's report (default HOST-PID).
    #[arg(long, env = "LOADGEN_WORKER_NAME")]
    pub worker_name: Option<String>,
    /// The cluster's shared secret: a master requires it of its workers, a worker gives it.
    #[arg(long, env = "LOADGEN_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
    /// The master serves its workers over TLS (wss://) with this PEM certificate chain.
    #[arg(
        long,
        env = "LOADGEN_MASTER_TLS_CERT",
        requires = "master_tls_key",
        conflicts_with = "worker",
        value_name = "FILE"
    )]
    pub master_tls_cert: Option<PathBuf>,
    /// The PEM private key of --master-tls-cert.
    #[arg(
        long,
        env = "LOADGEN_MASTER_TLS_KEY",
        requires = "master_tls_cert",
        value_name = "FILE"
    )]
    pub master_tls_key: Option<PathBuf>,
    /// A worker reaches its master over TLS (wss://), checking its certificate against the
    /// system's roots.
    #[arg(long, env = "LOADGEN_MASTER_TLS", conflicts_with = "master")]
    pub master_tls: bool,
    /// A worker reaches its master over TLS, trusting this PEM certificate (the master's own,
    /// or its CA) instead of the system's roots.
    #[arg(
        long,
        env = "LOADGEN_MASTER_TLS_CA",
        value_name = "FILE",
        conflicts_with = "master"
    )]
    pub master_tls_ca: Option<PathBuf>,
}

/// What this process is in a run.
#[derive(Debug, Clone)]
pub enum Role {
    /// Runs its users itself.
    Single,
    /// Shares them out to workers; waits for `expect` workers (with its wait) when headless.
    Master {
        /// Where it listens.
        settings: MasterSettings,
        /// Workers to wait for, and for how long.
        expect: Option<(usize, Duration)>,
    },
    /// Runs the users a master gives it.
    Worker(WorkerSettings),
    /// Runs the users a Locust master asks for, of the scenario's user types.
    LocustWorker(LocustWorkerSettings),
}

impl ClusterArgs {
    /// The role the flags ask for, checked.
    pub fn role(&self, fixtures: &std::path::Path, threads: Option<usize>) -> anyhow::Result<Role> {
        if self.worker {
            let host = self
                .master_host
                .clone()
                .or_else(|| std::env::var("LOCUST_MASTER_HOST").ok())
                .filter(|h| !h.trim().is_empty())
                .unwrap_or_else(|| "127.0.0.1".to_owned());
            if host.contains("://") || host.contains('/') {
                bail!(
                    "--master-host {host}: give a host name or address only (the port is --master-port)"
                );
            }
            let host = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]")
            } else {
                host
            };
            if self.master_protocol == MasterProtocol::Locust {
                return self.locust_worker(host);
            }
            let name = self.worker_name.clone().unwrap_or_else(|| {
                let machine = sysinfo::System::host_name().unwrap_or_else(|| "worker".into());
                format!("{machine}-{}", std::process::id())
            });
            let tls = (self.master_tls || self.master_tls_ca.is_some())
                .then(|| crate::cluster::tls::client(self.master_tls_ca.clone()))
                .transpose()?;
            let scheme = if tls.is_some() { "wss" } else { "ws" };
            return Ok(Role::Worker(WorkerSettings {
                master_url: format!("{scheme}://{host}:{}/", self.master_port),
                master_host: host,
                master_port: self.master_port,
                tls,
                name,
                token: self.cluster_token.clone(),
                fixtures: fixtures.to_owned(),
                threads: match threads {
                    Some(0) => bail!("--threads 0: run users on at least one thread"),
                    Some(asked) => {
                        // The master gives the users later: only the machine caps them.
                        let (threads, why) = crate::config::cap_threads(asked, None);
                        if let Some(why) = why {
                            eprintln!("loadgen: warning: {why}");
                        }
                        threads
                    }
                    None => std::thread::available_parallelism().map_or(1, |n| n.get()),
                },
                master_timeout: self.master_timeout,
            }));
        }
        if !self.master {
            return Ok(Role::Single);
        }
        if self.master_protocol == MasterProtocol::Locust {
            bail!(
                "--master-protocol locust is for a worker (--worker): a loadgen master does not \
                 take Locust workers, which would run Python user classes and report rounded \
                 response times into its exact histograms; run a Locust master, or loadgen workers"
            );
        }
        let ip: IpAddr = match self.master_bind_host.as_str() {
            "" | "*" => Ipv4Addr::UNSPECIFIED.into(),
            "localhost" => Ipv4Addr::LOCALHOST.into(),
            host => host.parse().with_context(|| {
                format!(
                    "--master-bind-host {host}: not an IP address (e.g. 127.0.0.1, or 0.0.0.0 for all)"
                )
            })?,
        };
        let token = self.cluster_token.clone().filter(|t| !t.is_empty());
        if !ip.is_loopback() && token.is_none() {
            bail!(
                "--master-bind-host {ip}: workers on other machines could connect, and anyone \
                 who reaches the port could run load from them: set a shared secret with \
                 --cluster-token (or LOADGEN_CLUSTER_TOKEN) on the master and the workers"
            );
        }
        let tls = match (&self.master_tls_cert, &self.master_tls_key) {
            (Some(cert), Some(key)) => Some(crate::cluster::tls::server_config(cert, key)?),
            _ => None,
        };
        if self.expect_workers == Some(0) {
            bail!("--expect-workers 0: wait for at least one worker");
        }
        Ok(Role::Master {
            settings: MasterSettings {
                listen: SocketAddr::new(ip, self.master_bind_port),
                token,
                tls,
            },
            expect: self
                .expect_workers
                .map(|n| (n, Duration::from_secs(self.expect_workers_max_wait))),
        })
    }

    /// A worker of a Locust master: Locust's protocol has no TLS and no token.
    fn locust_worker(&self, host: String) -> anyhow::Result<Role> {
        if self.master_tls || self.master_tls_ca.is_some() || self.cluster_token.is_some() {
            bail!(
                "--master-protocol locust: Locust's worker protocol has no TLS and no token; \
                 drop --master-tls, --master-tls-ca and --cluster-token (reach the master \
                 over a private network or a tunnel)"
            );
        }
        Ok(Role::LocustWorker(LocustWorkerSettings {
            master_host: host,
            master_port: self.master_port,
            node_id: self
                .worker_name
                .clone()
                .unwrap_or_else(LocustWorkerSettings::default_node_id),
            master_timeout: self.master_timeout,
        }))
    }
}
