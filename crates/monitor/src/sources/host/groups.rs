//! Process trees from one reading of the process table, with the CPU each used since the
//! previous reading: pure functions over records, so that the tree and the accounting are
//! tested on tables written by hand.
//!
//! CPU is counted per process as utime + stime + cutime + cstime: the kernel adds a child's
//! whole time to its parent's cutime/cstime when the parent reaps it, so a worker's ffmpeg
//! that lived half a second between two readings still shows, under the worker. A process seen
//! at the previous reading that is gone now has its time counted again in its reaper's
//! cutime: its last seen total is taken back from the group of its nearest living ancestor.

use std::collections::{HashMap, VecDeque};

use crate::sample::{ProcessGroup, ProcessRole};

use super::programs::Programs;

/// Process groups kept per tick: the busiest by CPU (then the top 3 by memory, and every
/// group of the stack or of the generator that uses any CPU).
pub const TOP_GROUPS: usize = 8;

/// Groups kept for their memory whatever their CPU.
const TOP_BY_MEMORY: usize = 3;

/// A group of the stack or of the generator is always kept from this CPU on (percent of a
/// core): the diagnosis sums the stack's share.
const STACK_KEPT_FROM_PCT: f64 = 1.0;

/// Parent links followed at most: a table read while processes come and go may hold a
/// loop (a pid reused between two reads of the directory).
const MAX_DEPTH: usize = 128;

/// A process's identity: its pid and its start time (clock ticks since boot), since pids
/// are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// Process id.
    pub pid: u32,
    /// Start time, clock ticks after boot.
    pub start: u64,
}

/// One process in one reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Who it is.
    pub key: Key,
    /// Its parent's pid (0 for none).
    pub ppid: u32,
    /// Its program, as [`super::group_name`] names it.
    pub name: String,
    /// utime + stime + cutime + cstime, clock ticks: its CPU and that of its ended children.
    pub total: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// What a reading leaves for the next one: each process's total and parent.
#[derive(Debug, Clone, Default)]
pub struct Seen(HashMap<Key, (Option<Key>, u64)>);

impl Seen {
    fn from_records(records: &[Record]) -> Self {
        let by_pid: HashMap<u32, Key> = records.iter().map(|r| (r.key.pid, r.key)).collect();
        Self(
            records
                .iter()
                .map(|r| (r.key, (by_pid.get(&r.ppid).copied(), r.total)))
                .collect(),
        )
    }
}

/// How ticks become percents.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    /// Clock ticks per second (`_SC_CLK_TCK`).
    pub ticks_per_sec: f64,
    /// Seconds since the previous reading.
    pub elapsed_secs: f64,
    /// Cores of the host: no group uses more than all of them.
    pub cores: u32,
}

/// The processes of a reading, linked to their parents and children.
struct Tree<'a> {
    records: &'a [Record],
    by_pid: HashMap<u32, usize>,
    children: HashMap<usize, Vec<usize>>,
}

impl<'a> Tree<'a> {
    fn new(records: &'a [Record]) -> Self {
        let by_pid: HashMap<u32, usize> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key.pid, i))
            .collect();
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            if let Some(&p) = by_pid.get(&r.ppid).filter(|&&p| p != i) {
                children.entry(p).or_default().push(i);
            }
        }
        for list in children.values_mut() {
            list.sort_by_key(|&c| (records[c].key.start, records[c].key.pid));
        }
        Self {
            records,
            by_pid,
            children,
        }
    }

    /// The parent, grandparent, ... of `i`, up to the first one not in the table.
    fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(i), |&j| {
            self.by_pid
                .get(&self.records[j].ppid)
                .copied()
                .filter(|&p| p != j)
        })
        .skip(1)
        .take(MAX_DEPTH)
    }

    fn is_boundary(&self, i: usize, programs: &Programs) -> bool {
        let r = &self.records[i];
        r.key.pid <= 2 || programs.is_boundary(&r.name)
    }

    /// The top of `i`'s group and the group's role: the topmost program of the stack among
    /// `i` and its ancestors; else this process, when it is one of them (the generator); else
    /// the ancestor just below `i`'s nearest boundary ancestor (or `i` itself, when its parent
    /// is one), outside the stack.
    fn membership(
        &self,
        i: usize,
        programs: &Programs,
        own: Option<usize>,
    ) -> (usize, ProcessRole) {
        let chain = || std::iter::once(i).chain(self.ancestors(i));
        let topmost_stack = chain()
            .filter_map(|j| programs.stack_role(&self.records[j].name).map(|r| (j, r)))
            .last();
        if let Some(found) = topmost_stack {
            return found;
        }
        if let Some(own) = own.filter(|&o| chain().any(|j| j == o)) {
            return (own, ProcessRole::Generator);
        }
        let mut top = i;
        for j in self.ancestors(i) {
            if self.is_boundary(j, programs) {
                break;
            }
            top = j;
        }
        (top, ProcessRole::Outside)
    }

    /// A group's name: its top's program, or past a wrapper on top (`sh -c`, `tini`) the
    /// first program below it that is not one, the oldest child first.
    fn name(&self, top: usize, role: ProcessRole, programs: &Programs) -> String {
        let own = &self.records[top].name;
        if role != ProcessRole::Outside || !programs.is_wrapper(own) {
            return own.clone();
        }
        let mut queue = VecDeque::from([top]);
        while let Some(j) = queue.pop_front() {
            for &c in self.children.get(&j).map_or(&[][..], Vec::as_slice) {
                let name = &self.records[c].name;
                if !programs.is_wrapper(name) {
                    return name.clone();
                }
                queue.push_back(c);
            }
        }
        own.clone()
    }
}

/// A group being summed.
#[derive(Default)]
struct Sum {
    role: ProcessRole,
    count: u32,
    ticks: i64,
    rss_bytes: u64,
}

/// Every process tree of a reading with its CPU since `previous` (none on the first
/// reading: every figure is then 0), and what the next reading needs.
pub fn build(
    records: &[Record],
    previous: Option<&Seen>,
    programs: &Programs,
    own_pid: u32,
    rates: Rates,
) -> (Vec<ProcessGroup>, Seen) {
    let tree = Tree::new(records);
    let own = tree.by_pid.get(&own_pid).copied();
    let mut sums: HashMap<usize, Sum> = HashMap::new();
    let mut top_of = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let (top, role) = tree.membership(i, programs, own);
        top_of.push(top);
        let sum = sums.entry(top).or_default();
        sum.role = role;
        sum.count += 1;
        sum.rss_bytes += r.rss_bytes;
        sum.ticks += previous.map_or(0, |seen| match seen.0.get(&r.key) {
            Some(&(_, before)) => ticks(r.total.saturating_sub(before)),
            // Born since the previous reading: all its time is new.
            None => ticks(r.total),
        });
    }
    if let Some(seen) = previous {
        take_back_the_vanished(seen, records, &top_of, &mut sums);
    }
    let groups = sums
        .into_iter()
        .map(|(top, sum)| ProcessGroup {
            name: tree.name(top, sum.role, programs),
            pid: records[top].key.pid,
            role: sum.role,
            count: sum.count,
            cpu_pct: percent(sum.ticks, rates),
            memory_bytes: sum.rss_bytes,
        })
        .collect();
    (groups, Seen::from_records(records))
}

fn ticks(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A process gone since the previous reading was reaped by its nearest living ancestor,
/// whose cutime now holds its whole time: what was already counted is taken back there.
fn take_back_the_vanished(
    seen: &Seen,
    records: &[Record],
    top_of: &[usize],
    sums: &mut HashMap<usize, Sum>,
) {
    let index: HashMap<Key, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.key, i))
        .collect();
    for (key, &(parent, total)) in &seen.0 {
        if index.contains_key(key) {
            continue;
        }
        let living = std::iter::successors(parent, |p| seen.0.get(p).and_then(|(pp, _)| *pp))
            .take(MAX_DEPTH)
            .find_map(|p| index.get(&p).copied());
        if let Some(sum) = living.and_then(|i| sums.get_mut(&top_of[i])) {
            sum.ticks -= ticks(total);
        }
    }
}

/// Ticks as a percent of one core, within 0 and all the host's cores.
fn percent(ticks: i64, rates: Rates) -> f64 {
    let pct =
        ticks.max(0) as f64 / rates.ticks_per_sec.max(1.0) / rates.elapsed_secs.max(1e-3) * 100.0;
    pct.min(f64::from(rates.cores.max(1)) * 100.0)
}

/// The groups worth a sample, busiest first: [`TOP_GROUPS`] by CPU, the top 3 by memory,
/// and every group of the stack or of the generator from [`STACK_KEPT_FROM_PCT`] on.
pub fn keep(mut all: Vec<ProcessGroup>) -> Vec<ProcessGroup> {
    all.sort_by_key(|g| std::cmp::Reverse(g.memory_bytes));
    let by_memory: Vec<u32> = all.iter().take(TOP_BY_MEMORY).map(|g| g.pid).collect();
    all.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct).then(a.pid.cmp(&b.pid)));
    all.into_iter()
        .enumerate()
        .filter(|(rank, g)| {
            *rank < TOP_GROUPS
                || by_memory.contains(&g.pid)
                || ((g.role.in_stack() || g.role == ProcessRole::Generator)
                    && g.cpu_pct >= STACK_KEPT_FROM_PCT)
        })
        .map(|(_, g)| g)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This test's own process, the generator.
    const OWN: u32 = 40;

    fn rec(pid: u32, ppid: u32, name: &str, total: u64) -> Record {
        Record {
            key: Key {
                pid,
                start: u64::from(pid),
            },
            ppid,
            name: name.into(),
            total,
            rss_bytes: 1000,
        }
    }

    /// One second of readings at 100 ticks a second: a tick is a percent of a core.
    fn rates() -> Rates {
        Rates {
            ticks_per_sec: 100.0,
            elapsed_secs: 1.0,
            cores: 2,
        }
    }

    fn groups_of(
        records: &[Record],
        previous: Option<&Seen>,
    ) -> (HashMap<u32, ProcessGroup>, Seen) {
        let (groups, seen) = build(records, previous, &Programs::default(), OWN, rates());
        (groups.into_iter().map(|g| (g.pid, g)).collect(), seen)
    }

    /// A host with the stack in containers and in a shell, this generator, and other work.
    fn host() -> Vec<Record> {
        vec![
            rec(1, 0, "process_api", 0),
            rec(10, 1, "containerd-shim", 0),
            rec(11, 10, "celery", 0),
            rec(12, 11, "celery", 0),
            rec(13, 12, "ffmpeg", 0),
            rec(20, 10, "sh", 0),
            rec(21, 20, "uvicorn", 0),
            rec(22, 21, "uvicorn", 0),
            rec(30, 1, "sshd", 0),
            rec(31, 30, "bash", 0),
            rec(32, 31, "stress-ng", 0),
            rec(33, 32, "stress-ng-cpu", 0),
            rec(34, 32, "stress-ng-cpu", 0),
            rec(35, 31, "cargo", 0),
            rec(36, 35, "rustc", 0),
            rec(OWN, 31, "loadgen", 0),
            rec(41, OWN, "testbed", 0),
            rec(42, OWN, "ffmpeg", 0),
            rec(50, 31, "loadgen", 0),
            rec(60, 1, "timeout", 0),
            rec(61, 60, "yes", 0),
            rec(70, 1, "postgres", 0),
            rec(71, 70, "postgres", 0),
        ]
    }

    #[test]
    fn groups_are_trees_one_per_member_of_the_stack_never_names_across_the_host() {
        use ProcessRole::*;
        let (groups, _) = groups_of(&host(), None);
        let mut found: Vec<(u32, &str, ProcessRole, u32)> = groups
            .values()
            .map(|g| (g.pid, g.name.as_str(), g.role, g.count))
            .collect();
        found.sort_by_key(|f| f.0);
        assert_eq!(
            found,
            [
                (1, "process_api", Outside, 1),
                (10, "containerd-shim", Outside, 1),
                // The worker's ffmpeg is the worker's.
                (11, "celery", Worker, 3),
                // A wrapper on top is named after what it runs.
                (20, "uvicorn", Outside, 1),
                (21, "uvicorn", Api, 2),
                (30, "sshd", Outside, 1),
                (31, "stress-ng", Outside, 1),
                (32, "stress-ng", Outside, 3),
                (35, "cargo", Outside, 2),
                // This process and its children, but a stack program among them is the stack.
                (OWN, "loadgen", Generator, 2),
                (41, "testbed", Api, 1),
                // Someone else's loadgen is another group.
                (50, "loadgen", Outside, 1),
                (60, "yes", Outside, 1),
                (61, "yes", Outside, 1),
                (70, "postgres", Database, 2),
            ]
        );
        assert_eq!(groups[&11].memory_bytes, 3000);
    }

    #[test]
    fn ended_children_count_under_their_parent_once() {
        let before = vec![
            rec(1, 0, "init", 0),
            rec(11, 1, "celery", 100),
            rec(12, 11, "celery", 50),
            rec(13, 12, "ffmpeg", 30),
        ];
        let (_, seen) = groups_of(&before, None);
        // ffmpeg 13 used 50 more ticks and ended (80 in all), reaped by 12; another ffmpeg
        // lived 25 ticks between the readings; a third was born and lives.
        let after = vec![
            rec(1, 0, "init", 0),
            rec(11, 1, "celery", 105),
            rec(12, 11, "celery", 50 + 10 + 80 + 25),
            rec(14, 12, "ffmpeg", 40),
        ];
        let (groups, _) = groups_of(&after, Some(&seen));
        let used = 5 + 10 + 50 + 25 + 40;
        assert_eq!(groups[&11].cpu_pct, f64::from(used), "{:?}", groups[&11]);
        assert_eq!(groups[&11].count, 3);
    }

    #[test]
    fn a_reused_pid_is_another_process() {
        let mut old = rec(90, 11, "ffmpeg", 70);
        old.key.start = 1000;
        let before = vec![rec(1, 0, "init", 0), rec(11, 1, "celery", 100), old];
        let (_, seen) = groups_of(&before, None);
        // The old 90 used 5 more ticks and was reaped by the worker; pid 90 is now someone
        // else's `yes`, 20 ticks old.
        let mut new = rec(90, 1, "yes", 20);
        new.key.start = 5000;
        let after = vec![rec(1, 0, "init", 0), rec(11, 1, "celery", 175), new];
        let (groups, _) = groups_of(&after, Some(&seen));
        assert_eq!(groups[&11].cpu_pct, 5.0, "{groups:?}");
        assert_eq!(groups[&90].cpu_pct, 20.0, "{groups:?}");
        assert_eq!(groups[&90].role, ProcessRole::Outside);
    }

    #[test]
    fn a_group_is_within_zero_and_all_the_cores_and_the_first_reading_shows_none() {
        let before = vec![rec(1, 0, "init", 0), rec(5, 1, "a", 0), rec(6, 5, "b", 90)];
        let (first, seen) = groups_of(&before, None);
        assert!(first.values().all(|g| g.cpu_pct == 0.0), "{first:?}");
        // 6 ended but 5 never reaped it (SIGCHLD ignored): nothing to take back from; 7 was
        // born with more time than two cores hold in a second (read late).
        let after = vec![rec(1, 0, "init", 0), rec(5, 1, "a", 0), rec(7, 1, "c", 900)];
        let (groups, _) = groups_of(&after, Some(&seen));
        assert_eq!(groups[&5].cpu_pct, 0.0);
        assert_eq!(groups[&7].cpu_pct, 200.0);
    }

    #[test]
    fn the_stack_and_the_generator_are_kept_past_the_busiest() {
        let group = |pid: u32, role: ProcessRole, cpu_pct: f64, memory_bytes: u64| ProcessGroup {
            name: format!("p{pid}"),
            pid,
            role,
            count: 1,
            cpu_pct,
            memory_bytes,
        };
        let mut all: Vec<ProcessGroup> = (0..12)
            .map(|i| {
                let memory = u64::from(12 - i) * 1000;
                group(100 + i, ProcessRole::Outside, 10.0 + f64::from(i), memory)
            })
            .collect();
        all.push(group(1, ProcessRole::Worker, 2.0, 0));
        all.push(group(2, ProcessRole::Generator, 1.5, 0));
        all.push(group(3, ProcessRole::Database, 0.5, 0));
        all.push(group(4, ProcessRole::Outside, 0.0, 1 << 30));
        let kept: Vec<u32> = keep(all).iter().map(|g| g.pid).collect();
        // The 8 busiest, 101 and 100 with 4 for their memory, the stack's and the generator's
        // from 1 % on, busiest first.
        assert_eq!(
            kept,
            [111, 110, 109, 108, 107, 106, 105, 104, 101, 100, 1, 2, 4]
        );
    }
}
