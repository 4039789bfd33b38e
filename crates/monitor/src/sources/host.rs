//! The machine, through sysinfo: CPU, memory, disk and network rates, with disk and network as
//! a share of a capacity the user sets (no portable way to read a link's or a disk's speed).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sysinfo::{Disks, Networks, System};

use crate::sample::{HostValues, Values};
use crate::source::{Source, SourceError};

/// Capacities that disk and network rates are judged against.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    /// Disk throughput, bytes/s.
    pub disk_bps: f64,
    /// Network throughput per direction, bytes/s.
    pub net_bps: f64,
}

impl Default for Capacity {
    /// A 500 MB/s disk and a 1 Gbit/s link, as `monitor`'s flags default to.
    fn default() -> Self {
        Self {
            disk_bps: 500e6,
            net_bps: 1e9 / 8.0,
        }
    }
}

/// What sysinfo reads, kept between ticks (rates need the previous reading).
struct Readers {
    system: System,
    disks: Disks,
    networks: Networks,
    last: Instant,
}

/// The host source. sysinfo reads `/proc` and `/sys` with blocking calls (the disk list can
/// take tens of milliseconds on a busy machine), so each reading runs on tokio's blocking
/// pool, never on the runtime's threads that the other sources share.
pub struct Host {
    readers: Arc<Mutex<Readers>>,
    capacity: Capacity,
}

impl Host {
    /// Starts measuring (rates need a first reading to compare with).
    pub fn new(capacity: Capacity) -> Self {
        let mut system = System::new();
        system.refresh_cpu_usage();
        system.refresh_memory();
        Self {
            readers: Arc::new(Mutex::new(Readers {
                system,
                disks: Disks::new_with_refreshed_list(),
                networks: Networks::new_with_refreshed_list(),
                last: Instant::now(),
            })),
            capacity,
        }
    }
}

/// Virtual interfaces that would count the same bytes twice.
fn counted_interface(name: &str) -> bool {
    !(name == "lo"
        || name.starts_with("veth")
        || name.starts_with("docker")
        || name.starts_with("br-"))
}

#[async_trait::async_trait]
impl Source for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    async fn read(&mut self) -> Result<Values, SourceError> {
        let readers = self.readers.clone();
        let capacity = self.capacity;
        tokio::task::spawn_blocking(move || {
            let mut readers = readers.lock().unwrap_or_else(|p| p.into_inner());
            read_host(&mut readers, capacity)
        })
        .await
        .map_err(|e| SourceError(format!("host reading did not finish: {e}")))
    }
}

fn read_host(r: &mut Readers, capacity: Capacity) -> Values {
    let secs = r.last.elapsed().as_secs_f64().max(1e-3);
    r.last = Instant::now();
    r.system.refresh_cpu_usage();
    r.system.refresh_memory();
    r.disks.refresh(true);
    r.networks.refresh(true);
    let total = r.system.total_memory().max(1);
    let used = r.system.used_memory();
    let mut seen = HashSet::new();
    let (mut read, mut written) = (0u64, 0u64);
    for disk in r.disks.list() {
        // The same device can be mounted at several places.
        if seen.insert(disk.name().to_owned()) {
            let usage = disk.usage();
            read += usage.read_bytes;
            written += usage.written_bytes;
        }
    }
    let (mut rx, mut tx) = (0u64, 0u64);
    for (name, data) in r.networks.iter() {
        if counted_interface(name) {
            rx += data.received();
            tx += data.transmitted();
        }
    }
    let (disk_read_bps, disk_write_bps) = (read as f64 / secs, written as f64 / secs);
    let (net_rx_bps, net_tx_bps) = (rx as f64 / secs, tx as f64 / secs);
    Values::Host(HostValues {
        cpu_pct: f64::from(r.system.global_cpu_usage()),
        memory_pct: used as f64 * 100.0 / total as f64,
        memory_used_bytes: used,
        disk_read_bps,
        disk_write_bps,
        disk_pct: (disk_read_bps + disk_write_bps) * 100.0 / capacity.disk_bps.max(1.0),
        net_rx_bps,
        net_tx_bps,
        net_pct: net_rx_bps.max(net_tx_bps) * 100.0 / capacity.net_bps.max(1.0),
    })
}
