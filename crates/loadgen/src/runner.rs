//! The runner: a few OS threads, each a single-threaded tokio runtime hosting its share of the
//! virtual users (no work stealing, no cross-thread synchronisation on the request path), and a
//! controller that spawns users at the spawn rate, changes their number on demand, gathers each
//! thread's stats shard once a second, and stops everything at the end.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::http::Target;
use crate::scenario::{Scenario, UserType};
use crate::stats::{self, EndpointStats, RunClock, Shard, Stats};
use crate::user::{Shared, StepKeys, VirtualUser};

/// What the runner needs to know.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Users to reach.
    pub users: u64,
    /// Users started per second.
    pub spawn_rate: f64,
    /// Stop after this long (`None`: until stopped).
    pub run_time: Option<Duration>,
    /// OS threads for users.
    pub threads: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Overrides every track's sample ratio.
    pub job_sample: Option<f64>,
    /// Stop starting users once loadgen's own memory passes this, bytes.
    pub memory_limit: Option<u64>,
}

/// One second of the run.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// Seconds since the start (end of the second).
    pub at_secs: u64,
    /// Wall clock time.
    pub timestamp: SystemTime,
    /// Users running.
    pub users: u64,
    /// Requests that finished in this second (start-up and steady).
    pub interval: EndpointStats,
    /// loadgen's own CPU use, percent of one core.
    pub loadgen_cpu_pct: f64,
    /// loadgen's resident memory, bytes.
    pub loadgen_rss_bytes: u64,
    /// The latest the users' timers fired in this second, ms.
    pub timer_lag_ms: f64,
    /// Each endpoint in this second: count, failures, p50, p95, p99 (ms).
    pub endpoints: Vec<EndpointSecond>,
    /// Followed jobs that ended in this second.
    pub jobs_done: u64,
    /// Jobs being followed at the end of this second.
    pub jobs_in_flight: u64,
    /// Every request of the run so far (start-up and steady), for Locust's "Total" columns.
    pub cumulative: Cumulative,
}

/// The run so far, as Locust's history "Total ..." columns give it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Cumulative {
    /// Requests.
    pub requests: u64,
    /// Failures.
    pub failures: u64,
    /// Median, ms.
    pub median_ms: f64,
    /// Mean, ms.
    pub average_ms: f64,
    /// Fastest, ms.
    pub min_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// Mean body size, bytes.
    pub average_bytes: f64,
}

impl Cumulative {
    fn of(totals: &Stats) -> Self {
        let mut all = totals.aggregated(crate::stats::Phase::Steady);
        all.merge(&totals.aggregated(crate::stats::Phase::Startup));
        Self {
            requests: all.count,
            failures: all.failures,
            median_ms: all.percentile_ms(50.0),
            average_ms: all.average_ms(),
            min_ms: all.min_ms(),
            max_ms: all.max_ms(),
            average_bytes: all.average_bytes(),
        }
    }
}

/// One endpoint's second, reduced to a few numbers (histograms per second would cost
/// megabytes an hour).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EndpointSecond {
    /// HTTP method.
    pub method: String,
    /// Name.
    pub name: String,
    /// Requests.
    pub requests: u64,
    /// Failures.
    pub failures: u64,
    /// p50, p95, p99, ms.
    pub percentiles_ms: [f64; 3],
}

/// What the threads' shards of one second add up to.
#[derive(Default)]
struct Second {
    all: EndpointStats,
    by_endpoint: BTreeMap<crate::stats::Key, EndpointStats>,
    jobs_done: u64,
    in_flight: BTreeMap<usize, u64>,
    timer_lag_us: u64,
}

impl Second {
    fn add(&mut self, thread: usize, shard: &Shard) {
        self.all.merge(&shard.interval.all);
        for (key, stats) in &shard.stats.endpoints {
            self.by_endpoint
                .entry(key.clone())
                .or_default()
                .merge(stats);
        }
        self.jobs_done += shard
            .stats
            .jobs
            .values()
            .map(|j| j.completed + j.failed + j.unfinished + j.unknown)
            .sum::<u64>();
        self.in_flight.insert(thread, shard.jobs_in_flight);
        self.timer_lag_us = self.timer_lag_us.max(shard.timer_lag_us);
    }

    /// The row for this second; the in-flight levels carry over to the next.
    fn row(&mut self, at_secs: u64, users: u64, own: (f64, u64), totals: &Stats) -> HistoryRow {
        let endpoints = std::mem::take(&mut self.by_endpoint)
            .into_iter()
            .map(|(key, e)| EndpointSecond {
                method: key.method.to_string(),
                name: key.name.to_string(),
                requests: e.count,
                failures: e.failures,
                percentiles_ms: [
                    e.percentile_ms(50.0),
                    e.percentile_ms(95.0),
                    e.percentile_ms(99.0),
                ],
            })
            .collect();
        HistoryRow {
            at_secs,
            timestamp: SystemTime::now(),
            users,
            interval: std::mem::take(&mut self.all),
            loadgen_cpu_pct: own.0,
            loadgen_rss_bytes: own.1,
            timer_lag_ms: std::mem::take(&mut self.timer_lag_us) as f64 / 1000.0,
            endpoints,
            jobs_done: std::mem::take(&mut self.jobs_done),
            jobs_in_flight: self.in_flight.values().sum(),
            cumulative: Cumulative::of(totals),
        }
    }
}

/// Everything a finished run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Merged stats.
    pub stats: Stats,
    /// Per second.
    pub history: Vec<HistoryRow>,
    /// When it started.
    pub started_at: SystemTime,
    /// How long it ran.
    pub duration: Duration,
    /// Most users running at once.
    pub peak_users: u64,
    /// Users started, by type.
    pub users_by_type: BTreeMap<String, u64>,
    /// Whether it was stopped early (Ctrl-C).
    pub interrupted: bool,
    /// The run id used in identities.
    pub run_id: String,
    /// Cores the users' threads had.
    pub threads: usize,
    /// When `--memory-limit` stopped the ramp: (seconds into the run, users then, RSS bytes).
    pub memory_limit_hit: Option<(u64, u64, u64)>,
}

/// Live figures for the console while the run goes.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Seconds since the start.
    pub elapsed: Duration,
    /// Users running.
    pub users: u64,
    /// Totals so far (borrowed: copying every histogram each second would be waste).
    pub stats: &'a Stats,
    /// The last second.
    pub last_second: &'a EndpointStats,
}

/// Controls a running test from outside: change the user count, stop it.
#[derive(Clone)]
pub struct RunHandle {
    users: watch::Sender<u64>,
    stop: CancellationToken,
}

impl RunHandle {
    /// Ramps to `users` at the spawn rate (up or down).
    pub fn set_users(&self, users: u64) {
        let _ = self.users.send(users);
    }

    /// Stops the run; the outcome still comes back with everything measured.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

enum Command {
    Spawn { user_type: usize, number: u64 },
    StopOne,
}

struct UserThread {
    commands: std::sync::mpsc::Sender<Command>,
    wake: Arc<tokio::sync::Notify>,
    join: std::thread::JoinHandle<()>,
    stop: CancellationToken,
}

/// A run being prepared: call [`Runner::handle`] for control, then [`Runner::run`].
pub struct Runner {
    settings: RunSettings,
    scenario: Arc<Scenario>,
    target: Target,
    handle: RunHandle,
    users_rx: watch::Receiver<u64>,
    run_id: String,
}

impl Runner {
    /// A runner of `scenario` against `target`.
    pub fn new(settings: RunSettings, scenario: Scenario, target: Target) -> Self {
        let (users, users_rx) = watch::channel(settings.users);
        let run_id: String = (0..6)
            .map(|_| {
                let n = rand::random::<u8>() % 36;
                char::from_digit(u32::from(n), 36).unwrap_or('x')
            })
            .collect();
        Self {
            settings,
            scenario: Arc::new(scenario),
            target,
            handle: RunHandle {
                users,
                stop: CancellationToken::new(),
            },
            users_rx,
            run_id,
        }
    }

    /// A handle to control the run.
    pub fn handle(&self) -> RunHandle {
        self.handle.clone()
    }

    /// Runs to the end (run time, or [`RunHandle::stop`]) and returns what was measured.
    /// `on_progress` is called once a second.
    pub async fn run(mut self, mut on_progress: impl FnMut(&Progress)) -> RunOutcome {
        let clock = RunClock {
            start: Instant::now(),
        };
        let started_at = SystemTime::now();
        let (shard_tx, mut shard_rx) = mpsc::unbounded_channel::<(usize, Shard)>();
        let threads: Vec<UserThread> = (0..self.settings.threads.max(1))
            .map(|i| self.start_thread(i, clock, shard_tx.clone()))
            .collect();
        drop(shard_tx);

        let plan = TypePlan::new(&self.scenario.users);
        let mut started_by_type = vec![0u64; self.scenario.users.len()];
        let mut running_by_thread = vec![0u64; threads.len()];
        let mut running: u64 = 0;
        let mut numbers: u64 = 0;
        let mut peak = 0;
        let mut totals = Stats::default();
        let mut history = Vec::new();
        let mut second = Second::default();
        let deadline = self.settings.run_time.map(|t| clock.start + t);
        let spawn_every = Duration::from_secs_f64(1.0 / self.settings.spawn_rate.max(0.001));
        let mut next_spawn = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let mut interrupted = false;
        let mut own = SelfWatch::new();
        let mut memory_limit_hit = None;

        loop {
            let target_users = *self.users_rx.borrow();
            let spawn_due = running != target_users;
            let sleep_until = if spawn_due {
                next_spawn
            } else {
                tokio::time::Instant::now() + Duration::from_secs(3600)
            };
            let run_over = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.handle.stop.cancelled() => { interrupted = true; break; }
                () = run_over => break,
                Some((thread, shard)) = shard_rx.recv() => {
                    totals.merge(&shard.stats);
                    second.add(thread, &shard);
                }
                _ = tick.tick() => {
                    let at_secs = clock.start.elapsed().as_secs_f64().round() as u64;
                    let (loadgen_cpu_pct, loadgen_rss_bytes) = own.sample();
                    if let Some(limit) = self.settings.memory_limit
                        && loadgen_rss_bytes > limit
                        && memory_limit_hit.is_none()
                    {
                        // Stop the ramp where it is: more users would only measure our swap.
                        memory_limit_hit = Some((at_secs, running, loadgen_rss_bytes));
                        let _ = self.handle.users.send(running);
                        eprintln!(
                            "loadgen: warning: memory {} MB passed --memory-limit {} MB at {running} users: no more users are started",
                            loadgen_rss_bytes / 1_000_000,
                            limit / 1_000_000
                        );
                    }
                    let row = second.row(at_secs, running, (loadgen_cpu_pct, loadgen_rss_bytes), &totals);
                    on_progress(&Progress { elapsed: clock.start.elapsed(), users: running, stats: &totals, last_second: &row.interval });
                    history.push(row);
                }
                _ = self.users_rx.changed() => {}
                () = tokio::time::sleep_until(sleep_until) => {
                    if running < target_users {
                        let user_type = plan.next(&started_by_type);
                        started_by_type[user_type] += 1;
                        numbers += 1;
                        let thread = (numbers as usize - 1) % threads.len();
                        let _ = threads[thread].commands.send(Command::Spawn { user_type, number: numbers });
                        threads[thread].wake.notify_one();
                        running_by_thread[thread] += 1;
                        running += 1;
                        peak = peak.max(running);
                    } else if running > target_users {
                        // Stop from the busiest thread.
                        let (thread, _) = running_by_thread.iter().enumerate().max_by_key(|(_, n)| **n).unwrap_or((0, &0));
                        let _ = threads[thread].commands.send(Command::StopOne);
                        threads[thread].wake.notify_one();
                        running_by_thread[thread] = running_by_thread[thread].saturating_sub(1);
                        running -= 1;
                    }
                    next_spawn += spawn_every;
                    let now = tokio::time::Instant::now();
                    if next_spawn < now {
                        next_spawn = now;
                    }
                }
            }
        }
        let duration = clock.start.elapsed();
        for thread in &threads {
            thread.stop.cancel();
        }
        // Each thread drops its users, then sends its last shard; the channel closes when all
        // have ended.
        while let Some((thread, shard)) = shard_rx.recv().await {
            totals.merge(&shard.stats);
            second.add(thread, &shard);
        }
        for thread in threads {
            let _ = thread.join.join();
        }
        if second.all.count > 0 {
            history.push(second.row(
                duration.as_secs_f64().ceil() as u64,
                running,
                own.sample(),
                &totals,
            ));
        }
        let users_by_type = self
            .scenario
            .users
            .iter()
            .zip(&started_by_type)
            .map(|(u, n)| (u.name.clone(), *n))
            .collect();
        RunOutcome {
            stats: totals,
            history,
            started_at,
            duration,
            peak_users: peak,
            users_by_type,
            interrupted,
            run_id: self.run_id,
            threads: self.settings.threads,
            memory_limit_hit,
        }
    }

    fn start_thread(
        &self,
        index: usize,
        clock: RunClock,
        shards: mpsc::UnboundedSender<(usize, Shard)>,
    ) -> UserThread {
        let (commands, inbox) = std::sync::mpsc::channel::<Command>();
        let wake = Arc::new(tokio::sync::Notify::new());
        let stop = CancellationToken::new();
        let scenario = self.scenario.clone();
        let target = self.target.clone();
        let settings = self.settings.clone();
        let run_id: Arc<str> = self.run_id.as_str().into();
        let thread_wake = wake.clone();
        let thread_stop = stop.clone();
        let join = std::thread::Builder::new()
            .name(format!("loadgen-users-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        stats::record_exception(format!(
                            "user thread {index} could not start: {error}"
                        ));
                        let _ = shards.send((index, stats::take_shard()));
                        return;
                    }
                };
                let local = tokio::task::LocalSet::new();
                let shared = Rc::new(Shared {
                    target: Rc::new(target),
                    clock,
                    run_id,
                    timeout: settings.timeout,
                    job_sample: settings.job_sample,
                });
                let keys: Vec<Rc<StepKeys>> = scenario
                    .users
                    .iter()
                    .map(|u| Rc::new(StepKeys::new(u)))
                    .collect();
                let types: Vec<Arc<UserType>> =
                    scenario.users.iter().map(|u| Arc::new(u.clone())).collect();
                local.block_on(&runtime, async {
                    let flush = shards.clone();
                    tokio::task::spawn_local(async move {
                        let mut every = tokio::time::interval(Duration::from_secs(1));
                        every.tick().await;
                        loop {
                            let due = every.tick().await;
                            let mut shard = stats::take_shard();
                            shard.timer_lag_us = due.elapsed().as_micros() as u64;
                            let _ = flush.send((index, shard));
                        }
                    });
                    let mut users: Vec<tokio::task::JoinHandle<()>> = Vec::new();
                    loop {
                        while let Ok(command) = inbox.try_recv() {
                            match command {
                                Command::Spawn { user_type, number } => {
                                    let user = VirtualUser::new(
                                        types[user_type].clone(),
                                        keys[user_type].clone(),
                                        shared.clone(),
                                        number,
                                    );
                                    users.push(tokio::task::spawn_local(user.run()));
                                }
                                Command::StopOne => {
                                    if let Some(user) = users.pop() {
                                        user.abort();
                                    }
                                }
                            }
                        }
                        tokio::select! {
                            () = thread_stop.cancelled() => break,
                            () = thread_wake.notified() => {}
                        }
                    }
                });
                // Dropping the set drops every user and job poller (pollers record their jobs as
                // unfinished), then the last shard goes out.
                drop(local);
                let _ = shards.send((index, stats::take_shard()));
            })
            .unwrap_or_else(|error| panic!("cannot start a user thread: {error}"));
        UserThread {
            commands,
            wake,
            join,
            stop,
        }
    }
}

/// loadgen watching itself, once a second: the CPU of its user threads (read from
/// `/proc/self/task`, so that a testbed or monitor in the same process never counts) and the
/// process's resident memory.
struct SelfWatch {
    system: sysinfo::System,
    pid: Option<sysinfo::Pid>,
    last: Option<(std::time::Instant, u64)>,
}

impl SelfWatch {
    fn new() -> Self {
        Self {
            system: sysinfo::System::new(),
            pid: sysinfo::get_current_pid().ok(),
            last: None,
        }
    }

    /// (CPU of the user threads since the last call, percent of one core; resident bytes).
    fn sample(&mut self) -> (f64, u64) {
        let rss = self.pid.map_or(0, |pid| {
            self.system.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                true,
                sysinfo::ProcessRefreshKind::nothing().with_memory(),
            );
            self.system.process(pid).map_or(0, |p| p.memory())
        });
        let now = std::time::Instant::now();
        let ticks = user_thread_cpu_ticks();
        let cpu = match self.last {
            // /proc reports in USER_HZ, 100 per second on Linux.
            Some((at, before)) => {
                ticks.saturating_sub(before) as f64 / now.duration_since(at).as_secs_f64().max(1e-3)
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        (cpu, rss)
    }
}

/// utime + stime of this process's `loadgen-users-*` threads, in clock ticks (0 off Linux).
fn user_thread_cpu_ticks() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with("loadgen-users"))
        })
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Picks the next user type so that, at every moment, the users started follow the fixed
/// counts first and then the weights as closely as whole users allow.
struct TypePlan {
    fixed: Vec<Option<u64>>,
    weights: Vec<f64>,
}

impl TypePlan {
    fn new(types: &[UserType]) -> Self {
        Self {
            fixed: types.iter().map(|t| t.fixed_count.map(u64::from)).collect(),
            weights: types
                .iter()
                .map(|t| {
                    if t.fixed_count.is_some() {
                        0.0
                    } else {
                        f64::from(t.weight)
                    }
                })
                .collect(),
        }
    }

    fn next(&self, started: &[u64]) -> usize {
        if let Some(i) = self
            .fixed
            .iter()
            .zip(started)
            .position(|(fixed, n)| fixed.is_some_and(|f| *n < f))
        {
            return i;
        }
        let total: f64 = self.weights.iter().sum();
        if total <= 0.0 {
            return 0;
        }
        // The type furthest below its share.
        (0..self.weights.len())
            .filter(|i| self.weights[*i] > 0.0)
            .min_by(|a, b| {
                let ratio = |i: usize| started[i] as f64 / (self.weights[i] / total);
                ratio(*a).total_cmp(&ratio(*b))
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Task, Wait};

    fn user_type(name: &str, weight: u32, fixed: Option<u32>) -> UserType {
        UserType {
            name: name.into(),
            weight,
            fixed_count: fixed,
            wait: Wait::Constant(Duration::ZERO),
            tags: vec![],
            vars: vec![],
            headers: vec![],
            on_start: vec![],
            tasks: vec![Task {
                weight: 1,
                tags: vec![],
                run: vec![],
            }],
            steps: vec![],
        }
    }

    #[test]
    fn plans_fixed_counts_then_weights() {
        let plan = TypePlan::new(&[
            user_type("a", 3, None),
            user_type("b", 1, None),
            user_type("burst", 1, Some(2)),
        ]);
        let mut started = vec![0; 3];
        let mut order = Vec::new();
        for _ in 0..10 {
            let next = plan.next(&started);
            started[next] += 1;
            order.push(next);
        }
        assert_eq!(&order[..2], &[2, 2], "fixed counts first");
        assert_eq!(started, vec![6, 2, 2]);
    }
}
