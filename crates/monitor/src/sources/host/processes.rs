//! Who uses the host, tick after tick: the process table read from `/proc`, grouped into
//! trees (one per member of the stack, one for this generator, one per other tree), with the
//! CPU each used since the previous reading.

use std::time::Instant;

use crate::sample::ProcessGroup;

use super::groups::{self, Rates, Seen};
use super::proc_fs::{Scanner, Units};
use super::programs::Programs;

/// The state kept between readings.
#[derive(Debug)]
pub struct Processes {
    programs: Programs,
    own_pid: u32,
    units: Units,
    scanner: Scanner,
    previous: Option<(Instant, Seen)>,
}

impl Processes {
    /// Groups by `programs`; this process and its children are the generator. Takes a first
    /// reading, so that the first tick shows the CPU used since.
    pub fn new(programs: Programs) -> Self {
        let mut processes = Self {
            programs,
            own_pid: std::process::id(),
            units: Units::of_this_host(),
            scanner: Scanner::default(),
            previous: None,
        };
        processes.read(0);
        processes
    }

    /// The groups worth a sample, with their CPU since the previous reading (none where
    /// `/proc` cannot be read).
    pub fn read(&mut self, cores: u32) -> Vec<ProcessGroup> {
        let now = Instant::now();
        let records = match self.scanner.scan(self.units) {
            Ok(records) => records,
            Err(error) => {
                tracing::debug!("no process table: {error}");
                return Vec::new();
            }
        };
        let rates = Rates {
            ticks_per_sec: self.units.ticks_per_sec as f64,
            elapsed_secs: self
                .previous
                .as_ref()
                .map_or(1.0, |(at, _)| now.duration_since(*at).as_secs_f64()),
            cores,
        };
        let previous = self.previous.as_ref().map(|(_, seen)| seen);
        let (all, seen) = groups::build(&records, previous, &self.programs, self.own_pid, rates);
        self.previous = Some((now, seen));
        groups::keep(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    /// Children killed by pid when dropped.
    struct Sleepers(Vec<Child>);

    impl Drop for Sleepers {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// The fastest of `n` runs of `f`.
    fn fastest(n: usize, mut f: impl FnMut()) -> Duration {
        (0..n)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .min()
            .unwrap_or_default()
    }

    /// A reading runs every second on a 2-core host: with 300 processes it must stay a small
    /// cost, no dearer than sysinfo's refresh of the same processes that it replaces (half as
    /// much again is left for noise).
    #[test]
    fn a_reading_of_300_processes_is_cheap() {
        let mut processes = Processes::new(Programs::default());
        let mut scan = || {
            processes
                .scanner
                .scan(processes.units)
                .map_or(0, |r| r.len())
        };
        let mut sleepers = Sleepers(Vec::new());
        // 320: other processes of the machine may end before the count (298 seen).
        for _ in scan()..320 {
            match Command::new("sleep").arg("60").stdin(Stdio::null()).spawn() {
                Ok(child) => sleepers.0.push(child),
                Err(e) => panic!("sleep: {e}"),
            }
        }
        let counted = scan();
        let scanning = fastest(5, || {
            let _ = scan();
        });
        let ours = fastest(5, || drop(processes.read(2)));
        let mut system = sysinfo::System::new();
        let theirs = fastest(5, || {
            system.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::All,
                true,
                sysinfo::ProcessRefreshKind::nothing()
                    .with_cpu()
                    .with_memory()
                    .with_cmd(sysinfo::UpdateKind::OnlyIfNotSet),
            );
        });
        let said = format!(
            "{counted} processes: a reading {ours:?} (of which /proc {scanning:?}), \
             sysinfo's refresh {theirs:?}"
        );
        println!("{said}");
        assert!(counted >= 300, "{said}");
        assert!(ours.as_secs_f64() < theirs.as_secs_f64() * 1.5, "{said}");
    }
}
