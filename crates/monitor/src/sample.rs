//! One tick of the monitor: every source's values (or why it is down), each stamped with the
//! time it was taken, and the spread between the sources. This is the one `Sample` type that the
//! console, the files, the HTTP endpoint and loadgen all read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One tick.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Tick {
    /// Tick number, from 1.
    pub tick: u64,
    /// When the tick began.
    pub timestamp: DateTime<Utc>,
    /// Milliseconds between the first and the last source's sampling time.
    pub spread_ms: f64,
    /// By source name: `docker`, `postgres`, `redis`, `host`.
    pub sources: BTreeMap<String, SourceReading>,
}

/// A source's reading in one tick.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceReading {
    /// When the values were read.
    pub at: DateTime<Utc>,
    /// `true` when the source answered.
    pub up: bool,
    /// Why it is down (no secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The values, absent when down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Values>,
    /// What the source found worth saying once, e.g. a watched queue that is in another
    /// database than the one watched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// What each source measures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Values {
    /// Containers.
    Docker(DockerValues),
    /// A PostgreSQL server.
    Postgres(PostgresValues),
    /// A Redis server.
    Redis(RedisValues),
    /// The machine.
    Host(HostValues),
}

/// The selected containers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DockerValues {
    /// By container name.
    pub containers: BTreeMap<String, ContainerValues>,
}

/// One container, computed as `docker stats` does.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerValues {
    /// `running`, `exited`, ..., or `gone` once it vanished.
    pub state: String,
    /// Restarts so far.
    pub restart_count: i64,
    /// CPU, percent of one core (200 = two cores busy), as `docker stats`.
    pub cpu_pct: f64,
    /// Memory used: usage minus inactive file cache, bytes.
    pub memory_bytes: u64,
    /// Memory limit, bytes.
    pub memory_limit_bytes: u64,
    /// Used / limit, percent.
    pub memory_pct: f64,
    /// Network received, bytes/s.
    pub net_rx_bps: f64,
    /// Network sent, bytes/s.
    pub net_tx_bps: f64,
    /// Block reads, bytes/s.
    pub block_read_bps: f64,
    /// Block writes, bytes/s.
    pub block_write_bps: f64,
}

/// A PostgreSQL server, without the monitor's own backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PostgresValues {
    /// Client backends in all.
    pub connections: i64,
    /// `max_connections`.
    pub max_connections: i64,
    /// connections / max_connections, percent.
    pub connections_pct: f64,
    /// State `active`.
    pub active: i64,
    /// State `idle`.
    pub idle: i64,
    /// State `idle in transaction`.
    pub idle_in_transaction: i64,
    /// State `idle in transaction (aborted)`.
    pub idle_in_transaction_aborted: i64,
    /// Non-idle backends waiting, by wait-event type (Lock, LWLock, IO, ...).
    pub waiting: BTreeMap<String, i64>,
    /// Backends blocked by another (pg_blocking_pids).
    pub blocked: i64,
    /// Longest running query, s.
    pub longest_query_secs: f64,
    /// Longest open transaction, s.
    pub longest_transaction_secs: f64,
    /// Longest idle in transaction, s.
    pub longest_idle_in_transaction_secs: f64,
    /// Commits per second (pg_stat_database).
    pub commits_per_sec: f64,
    /// Rollbacks per second.
    pub rollbacks_per_sec: f64,
    /// Buffer cache hit ratio over the last interval, percent.
    pub cache_hit_pct: f64,
    /// Deadlocks since the last tick.
    pub deadlocks: i64,
    /// Client backends of the whole server (whatever the scope), by database, application
    /// name and client address, the most connections first: the API's pool shows here even
    /// when the monitor's URL names another database.
    #[serde(default)]
    pub clients: Vec<PostgresClients>,
    /// Client backends of the whole server, against `max_connections` (which is the server's).
    #[serde(default)]
    pub server_connections: i64,
    /// The database the monitor's URL names.
    #[serde(default)]
    pub database: String,
}

/// The backends of one database, application and client address.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PostgresClients {
    /// Database.
    pub database: String,
    /// `application_name` (empty when the client sets none).
    pub application: String,
    /// Client address (`local` for a Unix socket).
    pub address: String,
    /// Backends.
    pub connections: i64,
    /// Of those, running a query.
    pub active: i64,
    /// Of those, idle inside a transaction.
    pub idle_in_transaction: i64,
}

impl PostgresClients {
    /// `database ffmpeg_api, application uvicorn, from 172.18.0.3`.
    pub fn describe(&self) -> String {
        let mut out = format!("database {}", self.database);
        if !self.application.is_empty() {
            out.push_str(&format!(", application {}", self.application));
        }
        out.push_str(&format!(", from {}", self.address));
        out
    }
}

/// A Redis server.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RedisValues {
    /// Connected clients, not counting the monitor.
    pub connected_clients: i64,
    /// Clients blocked in BLPOP and the like.
    pub blocked_clients: i64,
    /// `maxclients`.
    pub maxclients: i64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Connections rejected since the last tick.
    pub rejected_connections: i64,
    /// Keys evicted since the last tick.
    pub evicted_keys: i64,
    /// Memory used, bytes.
    pub used_memory_bytes: u64,
    /// `maxmemory` (0 = no limit).
    pub maxmemory_bytes: u64,
    /// Lengths of the watched lists, by `db/name`.
    pub lists: BTreeMap<String, i64>,
}

/// The machine the monitor runs on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostValues {
    /// CPU, percent of all cores.
    pub cpu_pct: f64,
    /// Memory used, percent.
    pub memory_pct: f64,
    /// Memory used, bytes.
    pub memory_used_bytes: u64,
    /// Disk reads, bytes/s.
    pub disk_read_bps: f64,
    /// Disk writes, bytes/s.
    pub disk_write_bps: f64,
    /// Disk throughput as a percent of the capacity set.
    pub disk_pct: f64,
    /// Network received, bytes/s.
    pub net_rx_bps: f64,
    /// Network sent, bytes/s.
    pub net_tx_bps: f64,
    /// Busier direction as a percent of the capacity set.
    pub net_pct: f64,
    /// Who uses the host: the busiest process groups (by name: ffmpeg, uvicorn, celery,
    /// postgres, ...), busiest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessGroup>,
}

/// The processes of one name on the host, in one tick.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessGroup {
    /// The group's name: the program, or for an interpreter the script or module it runs
    /// (`python -m celery` is `celery`).
    pub name: String,
    /// How many processes.
    pub count: u32,
    /// CPU, percent of one core (200 is two cores busy).
    pub cpu_pct: f64,
    /// Resident memory, bytes.
    pub memory_bytes: u64,
    /// The start of one member's command line, for a user to recognise it.
    pub command: String,
}

/// One figure with a stable name and its labels, for CSV, Prometheus and OTLP.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// e.g. `docker_cpu_pct`.
    pub name: String,
    /// e.g. `[("container", "api")]`.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

impl Values {
    /// Every figure, flat, with stable names.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        let mut push = |name: &str, labels: Vec<(&'static str, String)>, value: f64| {
            out.push(Metric {
                name: name.to_owned(),
                labels,
                value,
            });
        };
        match self {
            Values::Docker(d) => {
                for (name, c) in &d.containers {
                    let l = || vec![("container", name.clone())];
                    push("docker_up", l(), f64::from(u8::from(c.state == "running")));
                    push("docker_restart_count", l(), c.restart_count as f64);
                    push("docker_cpu_pct", l(), c.cpu_pct);
                    push("docker_memory_bytes", l(), c.memory_bytes as f64);
                    push(
                        "docker_memory_limit_bytes",
                        l(),
                        c.memory_limit_bytes as f64,
                    );
                    push("docker_memory_pct", l(), c.memory_pct);
                    push("docker_net_rx_bps", l(), c.net_rx_bps);
                    push("docker_net_tx_bps", l(), c.net_tx_bps);
                    push("docker_block_read_bps", l(), c.block_read_bps);
                    push("docker_block_write_bps", l(), c.block_write_bps);
                }
            }
            Values::Postgres(p) => {
                for (name, value) in [
                    ("postgres_connections", p.connections as f64),
                    ("postgres_max_connections", p.max_connections as f64),
                    ("postgres_connections_pct", p.connections_pct),
                    ("postgres_active", p.active as f64),
                    ("postgres_idle", p.idle as f64),
                    ("postgres_idle_in_transaction", p.idle_in_transaction as f64),
                    (
                        "postgres_idle_in_transaction_aborted",
                        p.idle_in_transaction_aborted as f64,
                    ),
                    ("postgres_blocked", p.blocked as f64),
                    ("postgres_longest_query_secs", p.longest_query_secs),
                    (
                        "postgres_longest_transaction_secs",
                        p.longest_transaction_secs,
                    ),
                    (
                        "postgres_longest_idle_in_transaction_secs",
                        p.longest_idle_in_transaction_secs,
                    ),
                    ("postgres_commits_per_sec", p.commits_per_sec),
                    ("postgres_rollbacks_per_sec", p.rollbacks_per_sec),
                    ("postgres_cache_hit_pct", p.cache_hit_pct),
                    ("postgres_deadlocks", p.deadlocks as f64),
                ] {
                    push(name, vec![], value);
                }
                for (kind, count) in &p.waiting {
                    push(
                        "postgres_waiting",
                        vec![("wait_event_type", kind.clone())],
                        *count as f64,
                    );
                }
                for c in &p.clients {
                    let l = || {
                        vec![
                            ("database", c.database.clone()),
                            ("application", c.application.clone()),
                            ("address", c.address.clone()),
                        ]
                    };
                    push("postgres_client_connections", l(), c.connections as f64);
                    push("postgres_client_active", l(), c.active as f64);
                }
            }
            Values::Redis(r) => {
                for (name, value) in [
                    ("redis_connected_clients", r.connected_clients as f64),
                    ("redis_blocked_clients", r.blocked_clients as f64),
                    ("redis_maxclients", r.maxclients as f64),
                    ("redis_ops_per_sec", r.ops_per_sec),
                    ("redis_rejected_connections", r.rejected_connections as f64),
                    ("redis_evicted_keys", r.evicted_keys as f64),
                    ("redis_used_memory_bytes", r.used_memory_bytes as f64),
                    ("redis_maxmemory_bytes", r.maxmemory_bytes as f64),
                ] {
                    push(name, vec![], value);
                }
                for (list, length) in &r.lists {
                    push(
                        "redis_list_length",
                        vec![("list", list.clone())],
                        *length as f64,
                    );
                }
            }
            Values::Host(h) => {
                for (name, value) in [
                    ("host_cpu_pct", h.cpu_pct),
                    ("host_memory_pct", h.memory_pct),
                    ("host_memory_used_bytes", h.memory_used_bytes as f64),
                    ("host_disk_read_bps", h.disk_read_bps),
                    ("host_disk_write_bps", h.disk_write_bps),
                    ("host_disk_pct", h.disk_pct),
                    ("host_net_rx_bps", h.net_rx_bps),
                    ("host_net_tx_bps", h.net_tx_bps),
                    ("host_net_pct", h.net_pct),
                ] {
                    push(name, vec![], value);
                }
                for group in &h.processes {
                    let l = || vec![("process", group.name.clone())];
                    push("host_process_cpu_pct", l(), group.cpu_pct);
                    push("host_process_memory_bytes", l(), group.memory_bytes as f64);
                }
            }
        }
        out
    }
}

impl Tick {
    /// Every figure of every source that is up, plus `<source>_up`.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        for (source, reading) in &self.sources {
            out.push(Metric {
                name: "source_up".into(),
                labels: vec![("source", source.clone())],
                value: f64::from(u8::from(reading.up)),
            });
            if let Some(values) = &reading.values {
                out.extend(values.metrics());
            }
        }
        out
    }
}
