//! `/metrics` in the Prometheus text format, by its conventions: every family has `# HELP` and
//! `# TYPE` and its samples together; values are in base units (`_seconds`, `_bytes`, ratios
//! from 0 to 1 as `_ratio`); one label per dimension (`db` and `list`, not `list="1/celery"`);
//! and every `_total` counter is the server's own count (PostgreSQL's `xact_commit`, Redis's
//! `total_commands_processed`, the engine's and the kernel's byte counts), as an exporter of
//! that server reports it: whole numbers that agree with the server, where integrating the
//! rates would drift and give fractions.
//!
//! The ticks keep their own names (`host_cpu_pct`, ...) for the console, CSV and OTLP; this
//! module maps each one to its Prometheus family.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::sample::{Metric, Tick};

/// How a tick's figure becomes a Prometheus sample.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A level, scaled (1/100 for a percentage).
    Gauge(f64),
    /// A counter the server keeps itself (since it started, ...), as it is.
    Total,
}

/// One Prometheus family, and the tick figure it comes from.
struct Family {
    /// The figure's name in the ticks.
    source: &'static str,
    /// The family's name.
    name: &'static str,
    kind: Kind,
    help: &'static str,
    /// A label this figure adds (`state="active"`), for figures that are one family's values.
    label: Option<(&'static str, &'static str)>,
}

const PCT: Kind = Kind::Gauge(0.01);
const LEVEL: Kind = Kind::Gauge(1.0);

macro_rules! families {
    ($(($source:literal, $name:literal, $kind:expr, $help:literal $(, $label:expr)?)),* $(,)?) => {
        &[$(Family { source: $source, name: $name, kind: $kind, help: $help, label: families!(@label $($label)?) }),*]
    };
    (@label) => { None };
    (@label $label:expr) => { Some($label) };
}

/// Every figure the sources give, as its family (the README lists these names).
const FAMILIES: &[Family] = families![
    (
        "source_up",
        "monitor_source_up",
        LEVEL,
        "1 when the source answered its last sample, else 0."
    ),
    (
        "docker_up",
        "monitor_docker_container_up",
        LEVEL,
        "1 when the container is running, else 0."
    ),
    (
        "docker_restart_count",
        "monitor_docker_container_restarts_total",
        Kind::Total,
        "Restarts of the container since it was created."
    ),
    (
        "docker_cpu_pct",
        "monitor_docker_container_cpu_ratio",
        PCT,
        "CPU used by the container, in cores (1 is one core busy)."
    ),
    (
        "docker_memory_bytes",
        "monitor_docker_container_memory_bytes",
        LEVEL,
        "Memory used by the container."
    ),
    (
        "docker_memory_limit_bytes",
        "monitor_docker_container_memory_limit_bytes",
        LEVEL,
        "The container's memory limit (the host's memory when it has none)."
    ),
    (
        "docker_memory_pct",
        "monitor_docker_container_memory_ratio",
        PCT,
        "Memory used over the container's limit."
    ),
    (
        "docker_net_rx_bytes_total",
        "monitor_docker_container_network_receive_bytes_total",
        Kind::Total,
        "Bytes received by the container since it started (the engine's count)."
    ),
    (
        "docker_net_tx_bytes_total",
        "monitor_docker_container_network_transmit_bytes_total",
        Kind::Total,
        "Bytes sent by the container since it started (the engine's count)."
    ),
    (
        "docker_block_read_bytes_total",
        "monitor_docker_container_block_read_bytes_total",
        Kind::Total,
        "Bytes the container read from block devices since it started."
    ),
    (
        "docker_block_write_bytes_total",
        "monitor_docker_container_block_write_bytes_total",
        Kind::Total,
        "Bytes the container wrote to block devices since it started."
    ),
    (
        "postgres_connections",
        "monitor_postgres_connections",
        LEVEL,
        "Client connections to the server."
    ),
    (
        "postgres_max_connections",
        "monitor_postgres_max_connections",
        LEVEL,
        "The server's max_connections."
    ),
    (
        "postgres_connections_pct",
        "monitor_postgres_connections_ratio",
        PCT,
        "Client connections over max_connections."
    ),
    (
        "postgres_active",
        "monitor_postgres_backends",
        LEVEL,
        "Client backends by state.",
        ("state", "active")
    ),
    (
        "postgres_idle",
        "monitor_postgres_backends",
        LEVEL,
        "Client backends by state.",
        ("state", "idle")
    ),
    (
        "postgres_idle_in_transaction",
        "monitor_postgres_backends",
        LEVEL,
        "Client backends by state.",
        ("state", "idle_in_transaction")
    ),
    (
        "postgres_idle_in_transaction_aborted",
        "monitor_postgres_backends",
        LEVEL,
        "Client backends by state.",
        ("state", "idle_in_transaction_aborted")
    ),
    (
        "postgres_blocked",
        "monitor_postgres_blocked_backends",
        LEVEL,
        "Backends waiting for a lock another backend holds."
    ),
    (
        "postgres_waiting",
        "monitor_postgres_waiting_backends",
        LEVEL,
        "Backends waiting, by wait event type."
    ),
    (
        "postgres_longest_query_secs",
        "monitor_postgres_longest_query_seconds",
        LEVEL,
        "Age of the longest running query."
    ),
    (
        "postgres_longest_transaction_secs",
        "monitor_postgres_longest_transaction_seconds",
        LEVEL,
        "Age of the longest open transaction."
    ),
    (
        "postgres_longest_idle_in_transaction_secs",
        "monitor_postgres_longest_idle_in_transaction_seconds",
        LEVEL,
        "Longest time a backend has been idle in a transaction."
    ),
    (
        "postgres_commits_total",
        "monitor_postgres_commits_total",
        Kind::Total,
        "Transactions committed (pg_stat_database.xact_commit, since the statistics were reset)."
    ),
    (
        "postgres_rollbacks_total",
        "monitor_postgres_rollbacks_total",
        Kind::Total,
        "Transactions rolled back (pg_stat_database.xact_rollback, since the statistics were reset)."
    ),
    (
        "postgres_cache_hit_pct",
        "monitor_postgres_cache_hit_ratio",
        PCT,
        "Share of block reads served from the buffer cache in the last interval."
    ),
    (
        "postgres_deadlocks_total",
        "monitor_postgres_deadlocks_total",
        Kind::Total,
        "Deadlocks detected (pg_stat_database.deadlocks, since the statistics were reset)."
    ),
    (
        "redis_connected_clients",
        "monitor_redis_connected_clients",
        LEVEL,
        "Clients connected to Redis."
    ),
    (
        "redis_blocked_clients",
        "monitor_redis_blocked_clients",
        LEVEL,
        "Clients blocked in a blocking call (BLPOP, ...)."
    ),
    (
        "redis_maxclients",
        "monitor_redis_max_clients",
        LEVEL,
        "Redis's maxclients."
    ),
    (
        "redis_commands_total",
        "monitor_redis_commands_total",
        Kind::Total,
        "Commands processed since Redis started (total_commands_processed)."
    ),
    (
        "redis_rejected_connections_total",
        "monitor_redis_rejected_connections_total",
        Kind::Total,
        "Connections refused for maxclients since Redis started."
    ),
    (
        "redis_evicted_keys_total",
        "monitor_redis_evicted_keys_total",
        Kind::Total,
        "Keys evicted for maxmemory since Redis started."
    ),
    (
        "redis_used_memory_bytes",
        "monitor_redis_memory_used_bytes",
        LEVEL,
        "Memory used by Redis."
    ),
    (
        "redis_maxmemory_bytes",
        "monitor_redis_memory_max_bytes",
        LEVEL,
        "Redis's maxmemory (0: no limit)."
    ),
    (
        "redis_list_length",
        "monitor_redis_list_length",
        LEVEL,
        "Length of a watched list (a job queue)."
    ),
    (
        "celery_unacked",
        "monitor_celery_unacked_messages",
        LEVEL,
        "Messages taken by Celery workers and not acknowledged (Kombu's unacked hash)."
    ),
    (
        "host_cpu_pct",
        "monitor_host_cpu_ratio",
        PCT,
        "Share of the host's CPU time in use."
    ),
    (
        "host_memory_pct",
        "monitor_host_memory_ratio",
        PCT,
        "Share of the host's memory in use."
    ),
    (
        "host_memory_used_bytes",
        "monitor_host_memory_used_bytes",
        LEVEL,
        "Memory in use on the host."
    ),
    (
        "host_disk_read_bytes_total",
        "monitor_host_disk_read_bytes_total",
        Kind::Total,
        "Bytes read from the host's disks since it booted."
    ),
    (
        "host_disk_write_bytes_total",
        "monitor_host_disk_write_bytes_total",
        Kind::Total,
        "Bytes written to the host's disks since it booted."
    ),
    (
        "host_disk_pct",
        "monitor_host_disk_utilization_ratio",
        PCT,
        "Disk throughput over the disk capacity given to the monitor."
    ),
    (
        "host_net_rx_bytes_total",
        "monitor_host_network_receive_bytes_total",
        Kind::Total,
        "Bytes received by the host since it booted (physical interfaces)."
    ),
    (
        "host_net_tx_bytes_total",
        "monitor_host_network_transmit_bytes_total",
        Kind::Total,
        "Bytes sent by the host since it booted (physical interfaces)."
    ),
    (
        "host_net_pct",
        "monitor_host_network_utilization_ratio",
        PCT,
        "Network throughput over the network capacity given to the monitor."
    ),
    (
        "host_process_cpu_pct",
        "monitor_host_process_cpu_ratio",
        PCT,
        "CPU used by the busiest process groups (by program), in cores."
    ),
    (
        "host_process_memory_bytes",
        "monitor_host_process_memory_bytes",
        LEVEL,
        "Resident memory of the busiest process groups (by program)."
    ),
];

fn family(source: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| f.source == source)
}

/// A sample's labels, as (name, value).
type Labels = Vec<(String, String)>;

/// The labels of `metric` in `family`: its own, each split into one per dimension, plus the
/// family's.
fn labels(metric: &Metric, family: &Family) -> Labels {
    let mut labels: Labels = Vec::new();
    for (name, value) in &metric.labels {
        // A watched list is `DB/NAME`: two dimensions.
        if *name == "list"
            && let Some((db, list)) = value.split_once('/')
            && db.parse::<u32>().is_ok()
        {
            labels.push(("db".into(), db.into()));
            labels.push(("list".into(), list.into()));
        } else {
            labels.push(((*name).to_owned(), value.clone()));
        }
    }
    if let Some((name, value)) = family.label {
        labels.push((name.into(), value.into()));
    }
    labels
}

/// The last tick's gauges and counters. A source that is down has none: its servers' counts
/// are unknown, and Prometheus marks the series stale rather than flat.
#[derive(Debug, Default)]
pub struct Exposition {
    counters: BTreeMap<(&'static str, Labels), f64>,
    gauges: BTreeMap<(&'static str, Labels), f64>,
}

impl Exposition {
    /// Takes in a tick, in place of the last one.
    pub fn update(&mut self, tick: &Tick) {
        self.gauges.clear();
        self.counters.clear();
        for metric in tick.metrics() {
            let Some(family) = family(&metric.name) else {
                continue;
            };
            let key = (family.name, labels(&metric, family));
            let value = if metric.value.is_finite() {
                metric.value
            } else {
                0.0
            };
            match family.kind {
                Kind::Gauge(scale) => {
                    self.gauges.insert(key, value * scale);
                }
                Kind::Total => {
                    self.counters.insert(key, value);
                }
            }
        }
    }

    /// The text format: each family's HELP, TYPE and samples together, families sorted.
    pub fn render(&self) -> String {
        let mut by_family: BTreeMap<&'static str, Vec<(&Labels, f64)>> = BTreeMap::new();
        for ((name, labels), value) in self.gauges.iter().chain(&self.counters) {
            by_family.entry(name).or_default().push((labels, *value));
        }
        let mut out = String::new();
        for (name, samples) in by_family {
            let Some(family) = FAMILIES.iter().find(|f| f.name == name) else {
                continue;
            };
            let kind = if matches!(family.kind, Kind::Gauge(_)) {
                "gauge"
            } else {
                "counter"
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{} {value}", format_labels(labels));
            }
        }
        out
    }
}

fn format_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_follows_the_naming_conventions() {
        for f in FAMILIES {
            assert!(f.name.starts_with("monitor_"), "{}", f.name);
            let counter = !matches!(f.kind, Kind::Gauge(_));
            assert_eq!(f.name.ends_with("_total"), counter, "{}", f.name);
            assert_eq!(f.kind == PCT, f.name.ends_with("_ratio"), "{}", f.name);
            for bad in ["_pct", "_bps", "_per_sec", "_secs", "_count"] {
                assert!(!f.name.contains(bad), "{}", f.name);
            }
        }
    }
}
