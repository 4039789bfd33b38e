//! The machine under the stack. Its CPU is a cause of the API's trouble only when the stack's
//! own processes (the API, its workers with their children, the databases) use it; processes
//! outside the stack that take it (a build, stress-ng, another load generator) disturb the
//! measurement, and go to the run's validity, never among the causes.

use std::collections::BTreeMap;

use monitor::sample::{HostValues, ProcessRole};

use super::{Evidence, Finding, Layer, Severity};

/// A host sample at or above this CPU share is saturated.
const HOT_PCT: f64 = 85.0;

/// The stack's share of the saturated host's CPU from which the host is (one of) the stack's
/// causes: its own processes then hold as much as 4 in 10 of all the cores, whatever else runs
/// (the evidence names the rest, and the validity section weighs it). Under it, the stack did not
/// use the CPU it lacked: others did. (Measured on 2 cores under two stress-ng: 8 ffmpeg jobs
/// held 46 to 59 %, the stack of a healthy run 1 %.)
const STACK_CAUSE_PCT: f64 = 40.0;

/// The share of the host's CPU that processes outside the stack must hold to disturb the run:
/// while the host is saturated, and over the whole run.
const OUTSIDE_WHEN_HOT_PCT: f64 = 15.0;
const OUTSIDE_ANYWAY_PCT: f64 = 25.0;

/// Who used the host's CPU: CPU-seconds per process group (a tree: a member of the stack with
/// its children, or another program's), over all samples and over the saturated ones.
struct CpuUse {
    cores: f64,
    /// Samples with the host's CPU at [`HOT_PCT`] or more, and all of them.
    hot: usize,
    samples: usize,
    /// Seconds covered, all and saturated.
    span: f64,
    hot_span: f64,
    /// When the hot samples were taken (seconds since the first tick).
    hot_at: Vec<f64>,
    /// Per group: (role, name, pid) → (CPU-seconds in all, in the hot samples).
    groups: BTreeMap<(ProcessRole, String, u32), (f64, f64)>,
    /// Whether the samples tell the stack's processes apart (a monitor that records roles).
    classified: bool,
}

impl CpuUse {
    fn of(host: &[(f64, &HostValues)]) -> Self {
        let cores = host
            .iter()
            .map(|(_, h)| h.cores)
            .find(|c| *c > 0)
            .map_or_else(local_cores, f64::from);
        let mut usage = Self {
            cores,
            hot: host.iter().filter(|(_, h)| h.cpu_pct >= HOT_PCT).count(),
            samples: host.len(),
            span: 0.0,
            hot_span: 0.0,
            hot_at: Vec::new(),
            groups: BTreeMap::new(),
            classified: host
                .iter()
                .any(|(_, h)| h.processes.iter().any(|g| g.pid != 0)),
        };
        for pair in host.windows(2) {
            let (at, now) = pair[1];
            let dt = (at - pair[0].0).max(0.0);
            let hot = now.cpu_pct >= HOT_PCT;
            usage.span += dt;
            if hot {
                usage.hot_span += dt;
                usage.hot_at.push(at);
            }
            for group in &now.processes {
                let secs = group.cpu_pct / 100.0 * dt;
                let entry = usage
                    .groups
                    .entry((group.role, group.name.clone(), group.pid))
                    .or_default();
                entry.0 += secs;
                if hot {
                    entry.1 += secs;
                }
            }
        }
        usage
    }

    /// Whether the host was saturated in a third of its samples or more (3 at least).
    fn saturated(&self) -> bool {
        self.hot >= 3 && self.hot * 3 >= self.samples
    }

    /// The share of the host's CPU (percent of all its cores) that the groups passing `which`
    /// used, over the hot samples or all of them.
    fn share(&self, hot: bool, which: impl Fn(ProcessRole) -> bool) -> f64 {
        let span = if hot { self.hot_span } else { self.span };
        let secs: f64 = self
            .groups
            .iter()
            .filter(|((role, _, _), _)| which(*role))
            .map(|(_, (all, in_hot))| if hot { *in_hot } else { *all })
            .sum();
        secs * 100.0 / (span * self.cores).max(1e-9)
    }

    /// `celery (pid 12) 160%, ...`: the groups passing `which`, busiest first, as an average
    /// share of one core over the hot samples or all of them (1 % or more).
    fn named(&self, hot: bool, which: impl Fn(ProcessRole) -> bool) -> Vec<String> {
        let span = if hot { self.hot_span } else { self.span };
        let mut rows: Vec<(f64, String)> = self
            .groups
            .iter()
            .filter(|((role, _, _), _)| which(*role))
            .map(|((role, name, pid), (all, in_hot))| {
                let pct = if hot { *in_hot } else { *all } * 100.0 / span.max(1e-9);
                let name = if *role == ProcessRole::Generator {
                    format!("{name} (this load generator)")
                } else {
                    format!("{name} (pid {pid})")
                };
                (pct, name)
            })
            .filter(|(pct, _)| *pct >= 1.0)
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        rows.into_iter()
            .take(4)
            .map(|(pct, name)| format!("{name} {pct:.0}%"))
            .collect()
    }

    /// The busiest member of the stack over the hot samples.
    fn busiest_member(&self) -> Option<ProcessRole> {
        self.groups
            .iter()
            .filter(|((role, _, _), _)| role.in_stack())
            .max_by(|a, b| a.1.1.total_cmp(&b.1.1))
            .map(|((role, _, _), _)| *role)
    }
}

fn local_cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

fn not_stack(role: ProcessRole) -> bool {
    !role.in_stack()
}

/// The host's CPU saturated (85 % or more in a third of the samples) by the stack's own
/// processes: half of it or more used by the API, its workers (their ffmpeg children counted
/// under them), the databases, or the watched containers. The evidence names who, and who
/// else; the action fits the busiest member.
pub fn cpu_saturated(e: &Evidence<'_>) -> Vec<Finding> {
    let host = e.backend.host();
    let usage = CpuUse::of(&host);
    if !usage.saturated() {
        return Vec::new();
    }
    if !usage.classified {
        return unclassified(e, &usage);
    }
    let by_processes = usage.share(true, ProcessRole::in_stack);
    let by_containers = containers_share(e, &usage);
    let stack = by_processes.max(by_containers);
    if stack < STACK_CAUSE_PCT {
        return Vec::new();
    }
    let members = usage.named(true, ProcessRole::in_stack);
    let others = usage.named(true, not_stack);
    let who = if members.is_empty() {
        String::new()
    } else {
        format!(": {}", members.join(", "))
    };
    let outside = if others.is_empty() {
        String::new()
    } else {
        format!(
            "; outside the stack {:.0}%: {}",
            usage.share(true, not_stack),
            others.join(", ")
        )
    };
    let action = match usage.busiest_member() {
        Some(ProcessRole::Worker) => {
            "The workers' jobs (ffmpeg, counted under the worker that runs it) take the CPU: run fewer jobs at once per host (the workers' concurrency), move the workers to hosts of their own, or give this one more cores; more workers here would only compete for it"
        }
        Some(ProcessRole::Api) => {
            "The API's processes take the CPU: profile the costliest endpoints (password hashing, serialisation), and give the API more cores or hosts"
        }
        Some(ProcessRole::Database) => {
            "The database takes the CPU: find its costliest statements (pg_stat_statements) and their missing indexes, or give it a host of its own"
        }
        _ => {
            "The stack's own processes compete for the CPU: give the host more cores, or move the CPU-heavy members (ffmpeg workers) to hosts of their own"
        }
    };
    let stack_fraction = stack / 100.0;
    let explained = e
        .slowdown_share_at(&usage.hot_at)
        .and_then(|share| e.slowdown(share.pct / 100.0 * stack_fraction.min(1.0)));
    vec![
        Finding::new(
            "host.cpu_saturated",
            Layer::Host,
            Severity::Critical,
            "The stack saturates the host's CPU",
            format!(
                "host CPU at {HOT_PCT:.0}% or more in {} of {} samples (over {:.0} s); in them the stack's own processes used {stack:.0}% of its {} cores{who}{outside}{}",
                usage.hot,
                usage.samples,
                usage.span,
                usage.cores,
                busiest_containers(e)
            ),
            action,
        )
        .causing(&[
            "jobs.queue_grows",
            "jobs.queueing",
            "jobs.unfinished",
            "load.slow_endpoints",
            "load.stuck_users",
            "load.connections_closed",
            "containers.cpu_saturated",
            "load.plateau",
        ])
        .explaining(explained),
    ]
}

/// Around one core, percent: a process whose one busy thread is its limit reads so.
const ONE_CORE_PCT: std::ops::RangeInclusive<f64> = 85.0..=115.0;

/// A member of the stack, one process, at about one core (85 to 115 % of it) in 7 samples of
/// 10 or more while the API fell behind ([`Evidence::strained`]: slow, or dropping the open
/// model's iterations with every user waiting on it), on a host of 2 cores or more: one thread serves it (an
/// event loop, a single worker process under Python's GIL), and the CPU work of one request
/// (password hashing) holds up every other. More cores would not help it. (On a host that
/// other programs saturate, such a process gets less than its core, and this cannot be told
/// from starvation: [`cpu_saturated`] and the validity section speak then.)
pub fn one_core_saturated(e: &Evidence<'_>) -> Vec<Finding> {
    let host = e.backend.host();
    if !e.strained() || host.len() < 5 {
        return Vec::new();
    }
    let usage = CpuUse::of(&host);
    if !usage.classified || usage.cores < 2.0 {
        return Vec::new();
    }
    // (name, pid) → (samples near one core, CPU summed over them).
    let mut near: BTreeMap<(String, u32), (usize, f64)> = BTreeMap::new();
    for (_, sample) in &host {
        for group in &sample.processes {
            if group.role.in_stack() && group.count == 1 && ONE_CORE_PCT.contains(&group.cpu_pct) {
                let entry = near.entry((group.name.clone(), group.pid)).or_default();
                entry.0 += 1;
                entry.1 += group.cpu_pct;
            }
        }
    }
    let Some(((name, pid), (samples, cpu))) = near
        .into_iter()
        .filter(|(_, (n, _))| n * 10 >= host.len() * 7)
        .max_by_key(|(_, (n, _))| *n)
    else {
        return Vec::new();
    };
    let host_cpu = host.iter().map(|(_, h)| h.cpu_pct).sum::<f64>() / host.len() as f64;
    vec![
        Finding::new(
            "host.one_core_saturated",
            Layer::Host,
            Severity::Critical,
            "One core serves the API: its one busy thread is the limit",
            format!(
                "{name} (pid {pid}) at {:.0}% of one core in {samples} of {} samples, while \
                 the host's {} cores averaged {host_cpu:.0}%; steady-state p95 {:.0} ms",
                cpu / samples as f64,
                host.len(),
                usage.cores,
                e.p95_ms()
            ),
            "One thread serves every request (an event loop, a single worker process, Python's \
             GIL), so CPU work in one request (password hashing, serialisation) holds up all the \
             others: move that work off the loop (a thread pool), or run more API processes; \
             more cores alone will not help",
        )
        .causing(&[
            "load.slow_endpoints",
            "load.over_capacity",
            "load.stuck_users",
            "load.plateau",
        ]),
    ]
}

/// The watched containers' share of the host's CPU over the hot samples (they are the stack,
/// whatever their processes are called).
fn containers_share(e: &Evidence<'_>, usage: &CpuUse) -> f64 {
    let containers = e.backend.containers();
    let hot_total: f64 = containers
        .values()
        .flat_map(|series| series.iter())
        .filter(|(at, _)| usage.hot_at.iter().any(|t| (t - at).abs() < 0.5))
        .map(|(_, c)| c.cpu_pct / 100.0)
        .sum();
    // Each hot sample stands for about a second.
    hot_total * 100.0 / (usage.hot_at.len() as f64 * usage.cores).max(1e-9)
}

/// A saturated host in samples that do not tell the stack's processes from others (an older
/// monitor): named by process, with no claim about whose they are.
fn unclassified(e: &Evidence<'_>, usage: &CpuUse) -> Vec<Finding> {
    let who = usage.named(false, |_| true);
    let who = if who.is_empty() {
        String::new()
    } else {
        format!("; CPU by process: {}", who.join(", "))
    };
    vec![
        Finding::new(
            "host.cpu_saturated",
            Layer::Host,
            Severity::Warning,
            "The host's CPU is saturated",
            format!(
                "host CPU at {HOT_PCT:.0}% or more in {} of {} samples (over {:.0} s){who}{}: these samples do not tell the stack's processes from others",
                usage.hot,
                usage.samples,
                usage.span,
                busiest_containers(e)
            ),
            "Everything on this host competes for the CPU: give it more cores, or move the CPU-heavy parts (ffmpeg workers, the load generator) to other machines",
        )
        .causing(&["jobs.queue_grows", "jobs.queueing", "load.slow_endpoints"]),
    ]
}

/// Validity: processes outside the stack (the load generator included) held a share of the
/// host's CPU: 15 % or more while the host was saturated, or 25 % or more over the run. They
/// disturbed the measurement; they are not the API's bottleneck.
pub fn outside_cpu(e: &Evidence<'_>) -> Vec<Finding> {
    let host = e.backend.host();
    let usage = CpuUse::of(&host);
    if !usage.classified || usage.span <= 0.0 {
        return Vec::new();
    }
    let saturated = usage.saturated();
    let when_hot = if saturated {
        usage.share(true, not_stack)
    } else {
        0.0
    };
    let overall = usage.share(false, not_stack);
    if when_hot < OUTSIDE_WHEN_HOT_PCT && overall < OUTSIDE_ANYWAY_PCT {
        return Vec::new();
    }
    let (pct, who, during) = if saturated && when_hot >= OUTSIDE_WHEN_HOT_PCT {
        (
            when_hot,
            usage.named(true, not_stack),
            format!(
                "while the host's CPU was at {HOT_PCT:.0}% or more ({} of {} samples)",
                usage.hot, usage.samples
            ),
        )
    } else {
        (
            overall,
            usage.named(false, not_stack),
            format!("over the run ({:.0} s)", usage.span),
        )
    };
    let stack = usage.share(saturated, ProcessRole::in_stack);
    vec![Finding::new(
        "host.outside_cpu",
        Layer::Host,
        if saturated {
            Severity::Warning
        } else {
            Severity::Info
        },
        format!("Processes outside the stack used {pct:.0}% of the host's CPU"),
        format!(
            "{} (share of one core) {during}, against {stack:.0}% for the stack's own processes, of {} cores: the stack's figures were measured on a contended host, slower than it would be alone",
            who.join(", "),
            usage.cores
        ),
        "Not the API's bottleneck: run the test on a quiet host (or stop these processes), or put the load generator on another machine, before trusting the latencies",
    )]
}

/// `; busiest containers: worker 160%, api 60%` when Docker was watched.
fn busiest_containers(e: &Evidence<'_>) -> String {
    let mut average: Vec<(f64, &str)> = e
        .backend
        .containers()
        .into_iter()
        .map(|(name, series)| {
            let avg =
                series.iter().map(|(_, c)| c.cpu_pct).sum::<f64>() / series.len().max(1) as f64;
            (avg, name)
        })
        .filter(|(avg, _)| *avg >= 5.0)
        .collect();
    if average.is_empty() {
        return String::new();
    }
    average.sort_by(|a, b| b.0.total_cmp(&a.0));
    let list: Vec<String> = average
        .iter()
        .take(3)
        .map(|(avg, name)| format!("{name} {avg:.0}%"))
        .collect();
    format!("; busiest containers on average: {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use monitor::sample::{ProcessGroup, Values};

    use super::super::testing::{container, host, outcome, ticks, with_evidence};
    use super::*;

    fn group(name: &str, pid: u32, role: ProcessRole, cpu_pct: f64) -> ProcessGroup {
        ProcessGroup {
            name: name.into(),
            pid,
            role,
            count: 1,
            cpu_pct,
            memory_bytes: 1,
        }
    }

    /// `n` host samples at `cpu_pct` of 2 cores, with these groups.
    fn host_with(n: usize, cpu_pct: f64, groups: Vec<ProcessGroup>) -> Vec<monitor::sample::Tick> {
        ticks(n, |_| {
            let (name, mut values) = host(cpu_pct);
            if let Values::Host(h) = &mut values {
                h.cores = 2;
                h.processes = groups.clone();
            }
            vec![(name, values)]
        })
    }

    #[test]
    fn the_stack_saturating_the_host_is_the_cause_named_with_its_members() {
        let run = outcome(&[5; 10], &[20; 10], 900, &[]);
        let backend = host_with(
            10,
            97.0,
            vec![
                group("celery", 40, ProcessRole::Worker, 150.0),
                group("uvicorn", 30, ProcessRole::Api, 30.0),
                group("stress-ng", 50, ProcessRole::Outside, 10.0),
            ],
        );
        let found = with_evidence(&run, &backend, cpu_saturated);
        assert_eq!(found.len(), 1, "{found:?}");
        let evidence = &found[0].evidence;
        for part in [
            "the stack's own processes used 90% of its 2 cores: celery (pid 40) 150%, uvicorn (pid 30) 30%",
            "outside the stack 5%: stress-ng (pid 50) 10%",
        ] {
            assert!(evidence.contains(part), "{evidence}");
        }
        assert!(
            found[0].action.starts_with("The workers' jobs"),
            "{}",
            found[0].action
        );
        assert!(with_evidence(&run, &backend, outside_cpu).is_empty());
        // Time spent hot decides, not the average: 2 hot samples in 10 are no saturation.
        let brief = ticks(10, |i| vec![host(if i < 2 { 99.0 } else { 30.0 })]);
        assert!(with_evidence(&run, &brief, cpu_saturated).is_empty());
    }

    #[test]
    fn one_process_of_the_stack_at_one_core_beside_idle_cores_is_its_one_thread() {
        let run = outcome(&[5; 10], &[20; 10], 900, &[]);
        let looped = host_with(
            10,
            55.0,
            vec![
                group("testbed", 30, ProcessRole::Api, 99.0),
                group("loadgen", 10, ProcessRole::Generator, 8.0),
            ],
        );
        let found = with_evidence(&run, &looped, one_core_saturated);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .evidence
                .starts_with("testbed (pid 30) at 99% of one core in 10 of 10 samples"),
            "{}",
            found[0].evidence
        );
        // Spread over cores, or fast: not one thread's limit.
        let spread = host_with(
            10,
            80.0,
            vec![group("testbed", 30, ProcessRole::Api, 160.0)],
        );
        assert!(with_evidence(&run, &spread, one_core_saturated).is_empty());
        let fast = outcome(&[5; 10], &[20; 10], 5, &[]);
        assert!(with_evidence(&fast, &looped, one_core_saturated).is_empty());
        // Fast answers while the open model dropped iterations, every user waiting on the
        // loop: it fell behind all the same.
        let mut dropping = fast.clone();
        dropping.stats.arrivals.total = crate::stats::ArrivalCounts {
            scheduled: 100,
            dropped: 20,
            late: 0,
        };
        assert_eq!(
            with_evidence(&dropping, &looped, one_core_saturated).len(),
            1
        );
        // The load generator at one core is no member of the stack.
        let ours = host_with(
            10,
            55.0,
            vec![group("loadgen", 10, ProcessRole::Generator, 100.0)],
        );
        assert!(with_evidence(&run, &ours, one_core_saturated).is_empty());
    }

    #[test]
    fn noise_outside_the_stack_is_validity_never_a_cause() {
        let run = outcome(&[5; 10], &[20; 10], 900, &[]);
        let backend = host_with(
            10,
            98.0,
            vec![
                group("stress-ng", 900, ProcessRole::Outside, 120.0),
                group("loadgen", 800, ProcessRole::Outside, 40.0),
                group("loadgen", 10, ProcessRole::Generator, 20.0),
                group("uvicorn", 30, ProcessRole::Api, 11.0),
            ],
        );
        assert!(
            with_evidence(&run, &backend, cpu_saturated).is_empty(),
            "the stack used 6% of a saturated host: not its cause"
        );
        let found = with_evidence(&run, &backend, outside_cpu);
        assert_eq!(
            found[0].title,
            "Processes outside the stack used 90% of the host's CPU"
        );
        assert!(
            found[0].evidence.starts_with(
                "stress-ng (pid 900) 120%, loadgen (pid 800) 40%, loadgen (this load generator) 20%"
            ),
            "two loadgens are two groups, and ours is named so: {}",
            found[0].evidence
        );
        assert_eq!(found[0].severity, Severity::Warning);
    }

    #[test]
    fn watched_containers_are_the_stack_whatever_their_processes_are_called() {
        let run = outcome(&[5; 6], &[20; 6], 900, &[]);
        let backend = ticks(6, |_| {
            let (name, mut values) = host(97.0);
            if let Values::Host(h) = &mut values {
                h.cores = 2;
                h.processes = vec![group("python", 70, ProcessRole::Outside, 160.0)];
            }
            vec![
                (name, values),
                container(&[("worker", 160.0), ("api", 30.0)]),
            ]
        });
        let found = with_evidence(&run, &backend, cpu_saturated);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].evidence.contains("worker 160%, api 30%"),
            "{}",
            found[0].evidence
        );
    }
}
