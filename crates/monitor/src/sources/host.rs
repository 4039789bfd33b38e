//! The machine, through sysinfo: CPU, memory, disk and network rates, with disk and network as
//! a share of a capacity the user sets (no portable way to read a link's or a disk's speed);
//! and who uses it, as process trees read from `/proc` (the modules below).

pub(crate) mod groups;
pub(crate) mod proc_fs;
mod processes;
pub mod programs;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sysinfo::{Disks, Networks, System};

use crate::sample::{HostValues, Values};
use crate::source::{Source, SourceError};

use processes::Processes;
use programs::Programs;

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
    processes: Processes,
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
                processes: Processes::new(Programs::default()),
                last: Instant::now(),
            })),
            capacity,
        }
    }
}

/// Interpreters whose processes are named by what they run, not by themselves.
const INTERPRETERS: [&str; 4] = ["python", "node", "ruby", "java"];

/// Interpreter flags whose next argument is code, not a script: the group is the interpreter.
const CODE_FLAGS: [&str; 3] = ["-c", "-e", "--eval"];

/// The name a process is grouped under: the program, or for an interpreter the script or
/// module it runs (`python3 -m celery worker` and `/usr/bin/python3 /app/bin/uvicorn app:app`
/// are `celery` and `uvicorn`). Only a name is ever taken from the arguments, and only when it
/// looks like one: the arguments themselves may hold secrets.
pub fn group_name(name: &str, cmd: &[String]) -> String {
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    let program = base(name);
    if !INTERPRETERS.iter().any(|i| program.starts_with(i)) {
        return program;
    }
    let named = |arg: &str| {
        let name = base(arg).trim_end_matches(".py").to_owned();
        let plain = !name.is_empty()
            && name.len() <= 40
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if plain { name } else { program.clone() }
    };
    let mut args = cmd.iter().skip(1);
    while let Some(arg) = args.next() {
        if CODE_FLAGS.contains(&arg.as_str()) {
            return program;
        }
        if arg == "-m" {
            return args.next().map_or(program.clone(), |m| named(m));
        }
        if !arg.starts_with('-') {
            return named(arg);
        }
    }
    program
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
    let (mut read_total, mut written_total) = (0u64, 0u64);
    for disk in r.disks.list() {
        // The same device can be mounted at several places.
        if seen.insert(disk.name().to_owned()) {
            let usage = disk.usage();
            read += usage.read_bytes;
            written += usage.written_bytes;
            read_total += usage.total_read_bytes;
            written_total += usage.total_written_bytes;
        }
    }
    let (mut rx, mut tx) = (0u64, 0u64);
    let (mut rx_total, mut tx_total) = (0u64, 0u64);
    for (name, data) in r.networks.iter() {
        if counted_interface(name) {
            rx += data.received();
            tx += data.transmitted();
            rx_total += data.total_received();
            tx_total += data.total_transmitted();
        }
    }
    let (disk_read_bps, disk_write_bps) = (read as f64 / secs, written as f64 / secs);
    let (net_rx_bps, net_tx_bps) = (rx as f64 / secs, tx as f64 / secs);
    let cores = r.system.cpus().len() as u32;
    let processes = r.processes.read(cores);
    Values::Host(HostValues {
        processes,
        cpu_pct: f64::from(r.system.global_cpu_usage()),
        memory_pct: used as f64 * 100.0 / total as f64,
        memory_used_bytes: used,
        disk_read_bps,
        disk_write_bps,
        disk_pct: (disk_read_bps + disk_write_bps) * 100.0 / capacity.disk_bps.max(1.0),
        net_rx_bps,
        net_tx_bps,
        net_pct: net_rx_bps.max(net_tx_bps) * 100.0 / capacity.net_bps.max(1.0),
        disk_read_bytes: read_total,
        disk_write_bytes: written_total,
        net_rx_bytes: rx_total,
        net_tx_bytes: tx_total,
        cores,
    })
}

#[cfg(test)]
mod tests {
    use super::group_name;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn interpreters_are_named_by_what_they_run() {
        assert_eq!(
            group_name("ffmpeg", &args(&["ffmpeg", "-i", "x"])),
            "ffmpeg"
        );
        assert_eq!(
            group_name("python3", &args(&["python3", "-m", "celery", "worker"])),
            "celery"
        );
        assert_eq!(
            group_name(
                "python3.11",
                &args(&["/usr/bin/python3.11", "/app/bin/uvicorn", "app:app"])
            ),
            "uvicorn"
        );
        assert_eq!(
            group_name("python3", &args(&["python3", "-u", "serve.py"])),
            "serve"
        );
        assert_eq!(
            group_name("postgres", &args(&["postgres: app ffmpeg_api idle"])),
            "postgres"
        );
    }

    #[test]
    fn no_argument_but_a_plain_name_becomes_a_group() {
        for cmd in [
            &["python3", "-c", "import os; os.system('x --password=P1')"][..],
            &["node", "-e", "run('token=T1')"],
            &["python3", "/app/serve.py?token=T1"],
            &["python3", "-m", "a b=c"],
            &["ruby", "--verbose", "token=T1"],
        ] {
            assert_eq!(
                group_name(cmd[0], &args(cmd)),
                cmd[0],
                "{cmd:?} names a group by its arguments"
            );
        }
    }
}
