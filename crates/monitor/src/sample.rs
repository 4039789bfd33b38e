//! One tick of the monitor: every source's values (or why it is down), each stamped with the
//! time it was taken, and the spread between the sources. This is the one `Sample` type that the
//! console, the files, the HTTP endpoint and loadgen all read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod profile;

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
    /// The Python processes of the API and the workers, sampled by py-spy.
    Profiles(profile::ProfilesValues),
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
    /// Bytes received since the container started, as the engine counts them.
    #[serde(default)]
    pub net_rx_bytes: u64,
    /// Bytes sent since the container started.
    #[serde(default)]
    pub net_tx_bytes: u64,
    /// Bytes read from block devices since the container started.
    #[serde(default)]
    pub block_read_bytes: u64,
    /// Bytes written to block devices since the container started.
    #[serde(default)]
    pub block_write_bytes: u64,
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
    /// Transactions committed, the server's own count (`pg_stat_database.xact_commit`, since
    /// its statistics were reset).
    #[serde(default)]
    pub commits_total: i64,
    /// Transactions rolled back, the server's own count (`xact_rollback`).
    #[serde(default)]
    pub rollbacks_total: i64,
    /// Deadlocks detected, the server's own count (`pg_stat_database.deadlocks`).
    #[serde(default)]
    pub deadlocks_total: i64,
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
    /// The queries running now, by normalized text (literals replaced), the most backends
    /// first (the top few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queries: Vec<ActiveQuery>,
    /// The statements that took the most execution time since the watch began
    /// (`pg_stat_statements` deltas), the most first; empty without the extension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<Statement>,
    /// Execution time of every statement since the watch began, ms: what a statement's share
    /// of database time is taken of.
    #[serde(default)]
    pub statements_total_ms: f64,
}

/// Backends running one query (normalized text) at a tick.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ActiveQuery {
    /// The text, literals replaced by `?` (`sql::normalize`), cut to a few hundred characters.
    pub query: String,
    /// Backends running it.
    pub backends: i64,
    /// Of those, the ones waiting, by `type:event` (`Lock:transactionid`, `IO:DataFileRead`).
    #[serde(default)]
    pub waits: BTreeMap<String, i64>,
    /// The longest-running of them, s.
    #[serde(default)]
    pub longest_secs: f64,
}

/// One statement's `pg_stat_statements` counters since the watch began.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Statement {
    /// PostgreSQL's id of the normalized statement.
    pub queryid: i64,
    /// Its text, as PostgreSQL normalized it (`$1` for constants), normalized again.
    pub query: String,
    /// Executions.
    pub calls: i64,
    /// Execution time in all, ms.
    pub total_ms: f64,
    /// Per execution, ms.
    pub mean_ms: f64,
    /// Rows returned or affected.
    pub rows: i64,
    /// Shared blocks read from disk (or the OS cache).
    pub shared_blks_read: i64,
    /// Shared blocks found in PostgreSQL's buffer cache.
    pub shared_blks_hit: i64,
    /// What its generic plan does (`EXPLAIN`, no `ANALYZE`), when it could be planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
}

/// The parts of a plan that name a fix.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PlanSummary {
    /// The planner's total cost estimate.
    pub total_cost: f64,
    /// The sequential scans in it.
    #[serde(default)]
    pub seq_scans: Vec<SeqScan>,
}

/// A sequential scan of a table in a plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SeqScan {
    /// The table (`schema.table` outside `public`).
    pub relation: String,
    /// Its rows as the planner estimates them (`pg_class.reltuples`).
    pub table_rows: f64,
    /// The table's columns the scan's filter reads.
    #[serde(default)]
    pub filter_columns: Vec<String>,
    /// The table's columns a sort above the scan orders by.
    #[serde(default)]
    pub sort_columns: Vec<String>,
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
    /// Commands processed since the server started (`total_commands_processed`).
    #[serde(default)]
    pub commands_total: u64,
    /// Connections rejected since the server started (`rejected_connections`).
    #[serde(default)]
    pub rejected_connections_total: u64,
    /// Keys evicted since the server started (`evicted_keys`).
    #[serde(default)]
    pub evicted_keys_total: u64,
    /// Memory used, bytes.
    pub used_memory_bytes: u64,
    /// `maxmemory` (0 = no limit).
    pub maxmemory_bytes: u64,
    /// Lengths of the watched lists, by `db/name`.
    pub lists: BTreeMap<String, i64>,
    /// Celery's task results and Kombu's unacked messages read this tick.
    #[serde(default, skip_serializing_if = "crate::celery::CeleryValues::is_empty")]
    pub celery: crate::celery::CeleryValues,
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
    /// Bytes read from the disks since the host started, as its kernel counts them.
    #[serde(default)]
    pub disk_read_bytes: u64,
    /// Bytes written to the disks since the host started.
    #[serde(default)]
    pub disk_write_bytes: u64,
    /// Bytes received since the host started (the counted interfaces).
    #[serde(default)]
    pub net_rx_bytes: u64,
    /// Bytes sent since the host started.
    #[serde(default)]
    pub net_tx_bytes: u64,
    /// Who uses the host: the busiest process groups, one per member of the stack (an API
    /// server, a worker, a database, with all their children) or per tree of other processes,
    /// busiest first. Never grouped by name across the host: two unrelated `loadgen`s are two
    /// groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessGroup>,
    /// Cores of the host (the 100 % of `cpu_pct`); 0 in samples from before it was recorded.
    #[serde(default)]
    pub cores: u32,
}

/// One process tree on the host in one tick: a top process and every descendant, with the CPU
/// of children that ended during the tick (a worker's short-lived ffmpeg counts under the
/// worker). Never a command line: arguments hold passwords and tokens (the monitor's own
/// `--postgres-url` among them), and samples go to files, web answers and reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessGroup {
    /// The group's name: the top program, or for an interpreter the script or module it runs
    /// (`python -m celery` is `celery`); past a shell or an init wrapper, the program it runs.
    pub name: String,
    /// The top process's id: tells two groups of one name apart.
    #[serde(default)]
    pub pid: u32,
    /// What the group is to the stack under test.
    #[serde(default)]
    pub role: ProcessRole,
    /// How many processes, now.
    pub count: u32,
    /// CPU, percent of one core (200 is two cores busy), children that ended included.
    pub cpu_pct: f64,
    /// Resident memory, bytes.
    pub memory_bytes: u64,
}

/// What a process group is to the stack under test, known from the programs in it.
#[derive(
    Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "snake_case")]
pub enum ProcessRole {
    /// An API server (uvicorn, gunicorn, hypercorn, our testbed).
    Api,
    /// A job worker (celery, rq, dramatiq).
    Worker,
    /// A database (postgres, mysqld).
    Database,
    /// A broker or cache (redis-server, rabbitmq).
    Broker,
    /// Object storage (minio).
    Storage,
    /// A proxy in front of the API (nginx, haproxy, envoy, traefik).
    Proxy,
    /// The process that generates the load and watches (this loadgen or monitor, by its pid).
    Generator,
    /// Anything else on the host: not the stack under test.
    #[default]
    Outside,
}

impl ProcessRole {
    /// A member of the stack under test (its CPU can be the API's bottleneck).
    pub fn in_stack(self) -> bool {
        !matches!(self, Self::Generator | Self::Outside)
    }
}

/// Every field a sample may carry, as a path in its JSON: `*` stands for a map's keys (a
/// source, a container, a wait event type, a list) and `[]` for a list's items. A source records
/// what is chosen here, never whatever the system hands over: a field added to a sample is
/// added to this list by hand, after asking whether it can hold a secret (a command line, an
/// environment, a URL). [`fields_not_allowed`] checks a sample against it, in the tests of
/// every source.
pub const ALLOWED_FIELDS: &[&str] = &[
    "tick",
    "timestamp",
    "spread_ms",
    "sources",
    "sources.*",
    "sources.*.at",
    "sources.*.up",
    "sources.*.error",
    "sources.*.notes",
    "sources.*.notes.[]",
    "sources.*.values",
    "sources.*.values.kind",
    // Docker.
    "sources.*.values.containers",
    "sources.*.values.containers.*",
    "sources.*.values.containers.*.state",
    "sources.*.values.containers.*.restart_count",
    "sources.*.values.containers.*.cpu_pct",
    "sources.*.values.containers.*.memory_bytes",
    "sources.*.values.containers.*.memory_limit_bytes",
    "sources.*.values.containers.*.memory_pct",
    "sources.*.values.containers.*.net_rx_bps",
    "sources.*.values.containers.*.net_tx_bps",
    "sources.*.values.containers.*.block_read_bps",
    "sources.*.values.containers.*.block_write_bps",
    "sources.*.values.containers.*.net_rx_bytes",
    "sources.*.values.containers.*.net_tx_bytes",
    "sources.*.values.containers.*.block_read_bytes",
    "sources.*.values.containers.*.block_write_bytes",
    // PostgreSQL.
    "sources.*.values.connections",
    "sources.*.values.max_connections",
    "sources.*.values.connections_pct",
    "sources.*.values.active",
    "sources.*.values.idle",
    "sources.*.values.idle_in_transaction",
    "sources.*.values.idle_in_transaction_aborted",
    "sources.*.values.waiting",
    "sources.*.values.waiting.*",
    "sources.*.values.blocked",
    "sources.*.values.longest_query_secs",
    "sources.*.values.longest_transaction_secs",
    "sources.*.values.longest_idle_in_transaction_secs",
    "sources.*.values.commits_per_sec",
    "sources.*.values.rollbacks_per_sec",
    "sources.*.values.cache_hit_pct",
    "sources.*.values.deadlocks",
    "sources.*.values.commits_total",
    "sources.*.values.rollbacks_total",
    "sources.*.values.deadlocks_total",
    "sources.*.values.clients",
    "sources.*.values.clients.[]",
    "sources.*.values.clients.[].database",
    "sources.*.values.clients.[].application",
    "sources.*.values.clients.[].address",
    "sources.*.values.clients.[].connections",
    "sources.*.values.clients.[].active",
    "sources.*.values.clients.[].idle_in_transaction",
    "sources.*.values.server_connections",
    "sources.*.values.database",
    "sources.*.values.queries",
    "sources.*.values.queries.[]",
    "sources.*.values.queries.[].query",
    "sources.*.values.queries.[].backends",
    "sources.*.values.queries.[].waits",
    "sources.*.values.queries.[].waits.*",
    "sources.*.values.queries.[].longest_secs",
    "sources.*.values.statements",
    "sources.*.values.statements.[]",
    "sources.*.values.statements.[].queryid",
    "sources.*.values.statements.[].query",
    "sources.*.values.statements.[].calls",
    "sources.*.values.statements.[].total_ms",
    "sources.*.values.statements.[].mean_ms",
    "sources.*.values.statements.[].rows",
    "sources.*.values.statements.[].shared_blks_read",
    "sources.*.values.statements.[].shared_blks_hit",
    "sources.*.values.statements.[].plan",
    "sources.*.values.statements.[].plan.total_cost",
    "sources.*.values.statements.[].plan.seq_scans",
    "sources.*.values.statements.[].plan.seq_scans.[]",
    "sources.*.values.statements.[].plan.seq_scans.[].relation",
    "sources.*.values.statements.[].plan.seq_scans.[].table_rows",
    "sources.*.values.statements.[].plan.seq_scans.[].filter_columns",
    "sources.*.values.statements.[].plan.seq_scans.[].filter_columns.[]",
    "sources.*.values.statements.[].plan.seq_scans.[].sort_columns",
    "sources.*.values.statements.[].plan.seq_scans.[].sort_columns.[]",
    "sources.*.values.statements_total_ms",
    // Redis.
    "sources.*.values.connected_clients",
    "sources.*.values.blocked_clients",
    "sources.*.values.maxclients",
    "sources.*.values.ops_per_sec",
    "sources.*.values.rejected_connections",
    "sources.*.values.evicted_keys",
    "sources.*.values.used_memory_bytes",
    "sources.*.values.maxmemory_bytes",
    "sources.*.values.commands_total",
    "sources.*.values.rejected_connections_total",
    "sources.*.values.evicted_keys_total",
    "sources.*.values.lists",
    "sources.*.values.lists.*",
    "sources.*.values.celery",
    "sources.*.values.celery.tasks",
    "sources.*.values.celery.tasks.*",
    "sources.*.values.celery.tasks.*.*",
    "sources.*.values.celery.failures",
    "sources.*.values.celery.failures.[]",
    "sources.*.values.celery.failures.[].task",
    "sources.*.values.celery.failures.[].exception",
    // Redacted where it is read (`celery::redact`).
    "sources.*.values.celery.failures.[].message",
    "sources.*.values.celery.failures.[].frame",
    "sources.*.values.celery.failures.[].frame.file",
    "sources.*.values.celery.failures.[].frame.line",
    "sources.*.values.celery.failures.[].frame.function",
    "sources.*.values.celery.failures.[].while_handling",
    "sources.*.values.celery.failures.[].count",
    "sources.*.values.celery.unacked",
    "sources.*.values.celery.unacked_index",
    // The host.
    "sources.*.values.cpu_pct",
    "sources.*.values.memory_pct",
    "sources.*.values.memory_used_bytes",
    "sources.*.values.disk_read_bps",
    "sources.*.values.disk_write_bps",
    "sources.*.values.disk_pct",
    "sources.*.values.net_rx_bps",
    "sources.*.values.net_tx_bps",
    "sources.*.values.net_pct",
    "sources.*.values.disk_read_bytes",
    "sources.*.values.disk_write_bytes",
    "sources.*.values.net_rx_bytes",
    "sources.*.values.net_tx_bytes",
    "sources.*.values.processes",
    "sources.*.values.cores",
    "sources.*.values.processes.[]",
    "sources.*.values.processes.[].name",
    "sources.*.values.processes.[].pid",
    "sources.*.values.processes.[].role",
    "sources.*.values.processes.[].count",
    "sources.*.values.processes.[].cpu_pct",
    "sources.*.values.processes.[].memory_bytes",
    // Profiles: code (function, file, line) and counts, never locals, arguments or commands.
    "sources.*.values.processes.[].container",
    "sources.*.values.processes.[].samples",
    "sources.*.values.processes.[].stacks_left_out",
    "sources.*.values.processes.[].threads",
    "sources.*.values.processes.[].threads.[]",
    "sources.*.values.processes.[].threads.[].id",
    "sources.*.values.processes.[].threads.[].name",
    "sources.*.values.processes.[].threads.[].samples",
    "sources.*.values.processes.[].threads.[].active",
    "sources.*.values.processes.[].threads.[].gil",
    "sources.*.values.processes.[].stacks",
    "sources.*.values.processes.[].stacks.[]",
    "sources.*.values.processes.[].stacks.[].thread",
    "sources.*.values.processes.[].stacks.[].active",
    "sources.*.values.processes.[].stacks.[].gil",
    "sources.*.values.processes.[].stacks.[].count",
    "sources.*.values.processes.[].stacks.[].frames",
    "sources.*.values.processes.[].stacks.[].frames.[]",
    "sources.*.values.processes.[].stacks.[].frames.[].function",
    "sources.*.values.processes.[].stacks.[].frames.[].file",
    "sources.*.values.processes.[].stacks.[].frames.[].line",
    "sources.*.values.processes.[].stacks.[].frames.[].library",
];

/// The fields of a tick's JSON that [`ALLOWED_FIELDS`] does not list, as paths.
pub fn fields_not_allowed(tick: &serde_json::Value) -> Vec<String> {
    fn allowed(path: &[String]) -> bool {
        ALLOWED_FIELDS.iter().any(|pattern| {
            let pattern: Vec<&str> = pattern.split('.').collect();
            pattern.len() == path.len()
                && pattern
                    .iter()
                    .zip(path)
                    .all(|(p, segment)| *p == "*" || p == segment)
        })
    }
    fn walk(value: &serde_json::Value, path: &mut Vec<String>, out: &mut Vec<String>) {
        let children: Vec<(String, &serde_json::Value)> = match value {
            serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
            serde_json::Value::Array(items) => items.iter().map(|v| ("[]".to_owned(), v)).collect(),
            _ => return,
        };
        for (segment, child) in children {
            path.push(segment);
            if allowed(path) {
                walk(child, path, out);
            } else {
                out.push(path.join("."));
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(tick, &mut Vec::new(), &mut out);
    out.sort();
    out.dedup();
    out
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
            Values::Docker(d) => docker_metrics(d, &mut push),
            Values::Postgres(p) => postgres_metrics(p, &mut push),
            Values::Redis(r) => redis_metrics(r, &mut push),
            Values::Host(h) => host_metrics(h, &mut push),
            Values::Profiles(p) => profile_metrics(p, &mut push),
        }
        out
    }
}

/// Where a source's figures go: a name, its labels and the value.
type Push<'a> = dyn FnMut(&str, Vec<(&'static str, String)>, f64) + 'a;

/// Each container's figures, labelled with its name.
fn docker_metrics(d: &DockerValues, push: &mut Push<'_>) {
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
        push("docker_net_rx_bytes_total", l(), c.net_rx_bytes as f64);
        push("docker_net_tx_bytes_total", l(), c.net_tx_bytes as f64);
        push(
            "docker_block_read_bytes_total",
            l(),
            c.block_read_bytes as f64,
        );
        push(
            "docker_block_write_bytes_total",
            l(),
            c.block_write_bytes as f64,
        );
    }
}

/// The server's figures, then the waits by type and the connections of each client.
fn postgres_metrics(p: &PostgresValues, push: &mut Push<'_>) {
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
        ("postgres_commits_total", p.commits_total as f64),
        ("postgres_rollbacks_total", p.rollbacks_total as f64),
        ("postgres_deadlocks_total", p.deadlocks_total as f64),
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

/// The server's figures, then the length of each list watched.
fn redis_metrics(r: &RedisValues, push: &mut Push<'_>) {
    for (name, value) in [
        ("redis_connected_clients", r.connected_clients as f64),
        ("redis_blocked_clients", r.blocked_clients as f64),
        ("redis_maxclients", r.maxclients as f64),
        ("redis_ops_per_sec", r.ops_per_sec),
        ("redis_rejected_connections", r.rejected_connections as f64),
        ("redis_evicted_keys", r.evicted_keys as f64),
        ("redis_used_memory_bytes", r.used_memory_bytes as f64),
        ("redis_maxmemory_bytes", r.maxmemory_bytes as f64),
        ("redis_commands_total", r.commands_total as f64),
        (
            "redis_rejected_connections_total",
            r.rejected_connections_total as f64,
        ),
        ("redis_evicted_keys_total", r.evicted_keys_total as f64),
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
    celery_metrics(&r.celery, push);
}

/// Kombu's unacked messages, and the Celery results read in the tick by task and status; none
/// for a Redis without Celery activity, whose columns would all read 0.
fn celery_metrics(c: &crate::celery::CeleryValues, push: &mut Push<'_>) {
    if c.is_empty() {
        return;
    }
    push("celery_unacked", vec![], c.unacked as f64);
    push("celery_unacked_index", vec![], c.unacked_index as f64);
    for (task, statuses) in &c.tasks {
        for (status, count) in statuses {
            push(
                "celery_task_results",
                vec![("task", task.clone()), ("status", status.clone())],
                *count as f64,
            );
        }
    }
}

/// The machine's figures, then each group of processes.
fn host_metrics(h: &HostValues, push: &mut Push<'_>) {
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
        ("host_disk_read_bytes_total", h.disk_read_bytes as f64),
        ("host_disk_write_bytes_total", h.disk_write_bytes as f64),
        ("host_net_rx_bytes_total", h.net_rx_bytes as f64),
        ("host_net_tx_bytes_total", h.net_tx_bytes as f64),
    ] {
        push(name, vec![], value);
    }
    for group in &h.processes {
        let l = || vec![("process", group.name.clone())];
        push("host_process_cpu_pct", l(), group.cpu_pct);
        push("host_process_memory_bytes", l(), group.memory_bytes as f64);
    }
}

/// Each profiled process's samples per tick (the stacks are not figures).
fn profile_metrics(p: &profile::ProfilesValues, push: &mut Push<'_>) {
    for process in &p.processes {
        let l = vec![
            ("process", process.name.clone()),
            ("pid", process.pid.to_string()),
        ];
        push("profile_samples", l, process.samples as f64);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tick where every source is up and every list and map holds an item.
    fn full_tick() -> Tick {
        let reading = |values: Values| SourceReading {
            at: Utc::now(),
            up: true,
            error: Some("was down".into()),
            values: Some(values),
            notes: vec!["a note".into()],
        };
        let docker = DockerValues {
            containers: [("api".to_owned(), ContainerValues::default())].into(),
        };
        let postgres = PostgresValues {
            waiting: [("Lock".to_owned(), 1)].into(),
            clients: vec![PostgresClients::default()],
            queries: vec![ActiveQuery {
                waits: [("Lock:relation".to_owned(), 1)].into(),
                ..Default::default()
            }],
            statements: vec![Statement {
                plan: Some(PlanSummary {
                    seq_scans: vec![SeqScan {
                        filter_columns: vec!["user_id".into()],
                        sort_columns: vec!["created_at".into()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let redis = RedisValues {
            lists: [("1/celery".to_owned(), 3)].into(),
            celery: crate::celery::CeleryValues {
                tasks: [(
                    "app.worker.join".to_owned(),
                    [("SUCCESS".to_owned(), 2)].into(),
                )]
                .into(),
                failures: vec![crate::celery::TaskFailure {
                    frame: Some(crate::celery::Frame::default()),
                    while_handling: Some("MixError".into()),
                    ..Default::default()
                }],
                unacked: 1,
                unacked_index: 1,
            },
            ..Default::default()
        };
        let host = HostValues {
            processes: vec![ProcessGroup::default()],
            ..Default::default()
        };
        let profiles = profile::ProfilesValues {
            processes: vec![profile::ProcessProfile {
                container: Some("api".into()),
                threads: vec![profile::ThreadProfile::default()],
                stacks: vec![profile::StackCount {
                    frames: vec![profile::ProfileFrame::default()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Tick {
            tick: 1,
            timestamp: Utc::now(),
            spread_ms: 0.0,
            sources: [
                ("docker".to_owned(), reading(Values::Docker(docker))),
                ("postgres".to_owned(), reading(Values::Postgres(postgres))),
                ("redis".to_owned(), reading(Values::Redis(redis))),
                ("host".to_owned(), reading(Values::Host(host))),
                ("profiles".to_owned(), reading(Values::Profiles(profiles))),
            ]
            .into(),
        }
    }

    #[test]
    fn a_sample_carries_only_the_allowed_fields() {
        let json = serde_json::to_value(full_tick()).unwrap_or_default();
        assert_eq!(fields_not_allowed(&json), Vec::<String>::new());
        // A process's command line is what the list keeps out.
        let mut leaky = json.clone();
        leaky["sources"]["host"]["values"]["processes"][0]["command"] =
            "monitor --postgres-url postgres://u:pw@db/x".into();
        leaky["sources"]["host"]["values"]["environment"] = "PGPASSWORD=pw".into();
        assert_eq!(
            fields_not_allowed(&leaky),
            [
                "sources.host.values.environment",
                "sources.host.values.processes.[].command"
            ]
        );
    }
}
