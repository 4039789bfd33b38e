//! Linux's process table, read in one pass over `/proc`: one read of `/proc/PID/stat` per
//! process, and of `/proc/PID/cmdline` once in a process's life when it is an interpreter
//! (to name it by what it runs). The command line is dropped as soon as the name is taken.

use std::collections::HashMap;
use std::io::{self, Read};

use super::groups::{Key, Record};
use super::programs::program;
use super::{INTERPRETERS, group_name};

/// `PF_KTHREAD` in the flags of `/proc/PID/stat`: a kernel thread (no program, no cmdline).
const PF_KTHREAD: u64 = 0x0020_0000;

/// The clock and page size that `/proc` counts in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Units {
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    pub ticks_per_sec: u64,
    /// Bytes per page (`rss` is in pages).
    pub page_size: u64,
}

impl Units {
    /// Read from the auxiliary vector the kernel gave this process, where libc's `sysconf`
    /// reads them (`AT_CLKTCK`, `AT_PAGESZ`); Linux's defaults when it cannot be read.
    pub fn of_this_host() -> Self {
        let mut units = Self {
            ticks_per_sec: 100,
            page_size: 4096,
        };
        let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
            return units;
        };
        const AT_PAGESZ: u64 = 6;
        const AT_CLKTCK: u64 = 17;
        const WORD: usize = std::mem::size_of::<usize>();
        let value =
            |b: &[u8]| <[u8; WORD]>::try_from(b).map_or(0, |w| usize::from_ne_bytes(w) as u64);
        for pair in auxv.chunks_exact(2 * WORD) {
            let (kind, v) = (value(&pair[..WORD]), value(&pair[WORD..]));
            match kind {
                AT_PAGESZ if v > 0 => units.page_size = v,
                AT_CLKTCK if v > 0 => units.ticks_per_sec = v,
                _ => {}
            }
        }
        units
    }
}

/// The fields of `/proc/PID/stat` the grouping needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    /// Process id.
    pub pid: u32,
    /// The kernel's name for it (`comm`, 15 bytes at most).
    pub comm: String,
    /// Parent's pid.
    pub ppid: u32,
    /// A kernel thread.
    pub kernel: bool,
    /// utime + stime + cutime + cstime, clock ticks.
    pub total: u64,
    /// Start time, clock ticks after boot.
    pub start: u64,
    /// Resident set, pages.
    pub rss_pages: u64,
}

/// Parses a `/proc/PID/stat` line. `comm` may hold spaces and `)`: it ends at the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let pid = line[..open].trim().parse().ok()?;
    let comm = line.get(open + 1..close)?.to_owned();
    // Field 3 (state) is the first after the comm.
    let fields: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let unsigned = |n: usize| field(n)?.parse::<u64>().ok();
    // cutime and cstime are signed in the kernel's format.
    let signed = |n: usize| Some(field(n)?.parse::<i64>().ok()?.max(0).unsigned_abs());
    let ppid = field(4)?.parse().ok()?;
    let total = unsigned(14)? + unsigned(15)? + signed(16)? + signed(17)?;
    Some(Stat {
        kernel: unsigned(9)? & PF_KTHREAD != 0 || pid == 2 || ppid == 2,
        pid,
        comm,
        ppid,
        total,
        start: unsigned(22)?,
        rss_pages: field(24)?.parse::<i64>().ok()?.max(0).unsigned_abs(),
    })
}

/// Reads the process table, keeping the names of interpreter processes between readings.
#[derive(Debug, Default)]
pub struct Scanner {
    names: HashMap<Key, String>,
    buf: Vec<u8>,
}

impl Scanner {
    /// Every process but kernel threads. A process that ends while the table is read is
    /// left out.
    pub fn scan(&mut self, units: Units) -> io::Result<Vec<Record>> {
        let mut records = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(record) = self.record(pid, units) {
                records.push(record);
            }
        }
        let alive: std::collections::HashSet<Key> = records.iter().map(|r| r.key).collect();
        self.names.retain(|key, _| alive.contains(key));
        Ok(records)
    }

    fn record(&mut self, pid: u32, units: Units) -> Option<Record> {
        self.buf.clear();
        std::fs::File::open(format!("/proc/{pid}/stat"))
            .ok()?
            .read_to_end(&mut self.buf)
            .ok()?;
        let stat = parse_stat(&String::from_utf8_lossy(&self.buf))?;
        if stat.kernel {
            return None;
        }
        let key = Key {
            pid,
            start: stat.start,
        };
        let program = program(&stat.comm);
        let name = if INTERPRETERS.iter().any(|i| program.starts_with(i)) {
            self.names
                .entry(key)
                .or_insert_with(|| group_name(program, &command_line(pid)))
                .clone()
        } else {
            group_name(program, &[])
        };
        Some(Record {
            key,
            ppid: stat.ppid,
            name,
            total: stat.total,
            rss_bytes: stat.rss_pages * units.page_size,
        })
    }
}

/// A process's arguments, for [`group_name`] only (empty when unreadable).
fn command_line(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comm_with_spaces_and_parentheses_ends_at_the_last_one() {
        let line = "4242 (my (odd) prog) S 17 4242 4242 0 -1 4194560 10 0 0 0 \
                    120 30 7 3 20 0 1 0 98765 1000000 250 18446744073709551615 0 0 0";
        let stat = parse_stat(line).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(
            stat,
            Stat {
                pid: 4242,
                comm: "my (odd) prog".into(),
                ppid: 17,
                kernel: false,
                total: 160,
                start: 98765,
                rss_pages: 250,
            }
        );
        let kthread = "77 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0 0 0 5 9 0 0 20 0 1 0 40 0 0";
        assert!(parse_stat(kthread).is_some_and(|s| s.kernel));
        assert_eq!(parse_stat("12 (cut"), None);
    }

    #[test]
    fn this_process_is_in_the_table_with_its_own_figures() {
        let units = Units::of_this_host();
        assert!(
            units.ticks_per_sec >= 100 && units.page_size >= 4096,
            "{units:?}"
        );
        let records = Scanner::default().scan(units).unwrap_or_default();
        let own = std::process::id();
        let me = records.iter().find(|r| r.key.pid == own);
        assert!(
            me.is_some_and(|r| r.rss_bytes > 1_000_000 && r.ppid > 0),
            "{me:?} among {} processes",
            records.len()
        );
        assert!(
            records.iter().all(|r| r.ppid != 2),
            "a kernel thread was kept"
        );
    }
}
