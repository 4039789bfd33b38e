//! The runner: a few OS threads, each a single-threaded tokio runtime hosting its share of the
//! virtual users (no work stealing, no cross-thread synchronisation on the request path), and a
//! controller that spawns users at the spawn rate, changes their number on demand, gathers each
//! thread's stats shard once a second, and stops everything at the end.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::config::LoadSettings;
use crate::http::Target;
use crate::outcome::{EngineError, RunOutcome, Update};
use crate::scenario::{Scenario, UserType};
use crate::stats::PollBudget;
use crate::stats::overlap::StartupWindow;
use crate::stats::{self, RunClock, Second, SelfWatchFigures, Shard, Stats, StatsSnapshot};
use crate::user::{JobTypes, Shared, StepKeys, VirtualUser};

/// The target user count and the rate to reach it, as the engine's handle sets them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Control {
    pub users: u64,
    pub spawn_rate: f64,
}

/// The channels between the runner and the engine's handle.
pub(crate) struct Channels {
    pub control: watch::Receiver<Control>,
    pub stop: CancellationToken,
    pub snapshots: mpsc::Receiver<oneshot::Sender<StatsSnapshot>>,
    pub updates: watch::Sender<Option<Update>>,
    /// Each message forgets the figures so far (Locust's "Reset stats").
    pub resets: mpsc::Receiver<()>,
    /// New fixed counts, by user type: a worker's share of a cluster's, when the master
    /// shares them out again.
    pub fixed_counts: mpsc::Receiver<BTreeMap<String, u32>>,
    /// Each message asks for the outcome so far (a second signal writes its reports from it).
    pub outcomes: mpsc::Receiver<oneshot::Sender<RunOutcome>>,
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

/// The figures so far, for reports written before the users have finished: with the requests
/// still waiting (as the threads last reported them) counted in flight, as at a stop.
fn in_hand(totals: &Stats, second: &Second) -> Stats {
    let mut stats = totals.clone();
    stats.in_flight_at_stop += second.requests_in_flight().requests;
    stats
}

/// A fresh run id: six base-36 characters, `${run}` in templates.
pub(crate) fn new_run_id() -> String {
    (0..6)
        .map(|_| {
            let n = rand::random::<u8>() % 36;
            char::from_digit(u32::from(n), 36).unwrap_or('x')
        })
        .collect()
}

/// A run being prepared; [`Runner::run`] runs it.
pub(crate) struct Runner {
    settings: LoadSettings,
    per_name_history: bool,
    scenario: Arc<Scenario>,
    target: Target,
    run_id: String,
    /// Start-up requests in flight across every thread, for the overlap comparison.
    startup_window: Arc<StartupWindow>,
    /// Requests answered and job polls sent across every thread: polls within a tenth.
    poll_budget: Arc<PollBudget>,
    /// When each type's jobs last ended, across every thread: the pace of their polls.
    job_types: Arc<JobTypes>,
}

impl Runner {
    /// A runner of `scenario` against `target`.
    pub fn new(settings: LoadSettings, scenario: Scenario, target: Target) -> Self {
        let run_id = settings.run_id.clone().unwrap_or_else(new_run_id);
        Self {
            settings,
            scenario: Arc::new(scenario),
            target,
            run_id,
            per_name_history: false,
            startup_window: Arc::default(),
            poll_budget: Arc::default(),
            job_types: Arc::default(),
        }
    }

    /// Keeps each of Locust's rows every second, for `--csv-full-history`.
    pub fn keep_per_name_history(&mut self) {
        self.per_name_history = true;
    }

    /// Runs to the end (run time, or a stop through the channels) and returns what was
    /// measured. Fails only when no user thread can be started.
    pub async fn run(self, mut channels: Channels) -> Result<RunOutcome, EngineError> {
        let clock = RunClock {
            start: Instant::now(),
        };
        let started_at = SystemTime::now();
        let (shard_tx, mut shard_rx) = mpsc::unbounded_channel::<(usize, Shard)>();
        let mut threads: Vec<UserThread> = Vec::new();
        for i in 0..self.settings.threads.max(1) {
            match self.start_thread(i, clock, shard_tx.clone()) {
                Ok(thread) => threads.push(thread),
                // Fewer threads than asked still run the test; none cannot.
                Err(error) if !threads.is_empty() => {
                    tracing::warn!(
                        "user thread {} could not start: {error}; the users run on {i} thread(s)",
                        i + 1
                    );
                    break;
                }
                Err(error) => return Err(EngineError::Threads(error)),
            }
        }
        drop(shard_tx);

        let mut plan = TypePlan::new(&self.scenario.users);
        let mut started_by_type = vec![0u64; self.scenario.users.len()];
        let mut running_by_thread = vec![0u64; threads.len()];
        let mut running: u64 = 0;
        // User numbers go on from the last one given: a worker's range starts where its
        // master says.
        let mut numbers: u64 = self.settings.first_user_number;
        let mut peak = 0;
        let mut totals = Stats::default();
        let mut history = Vec::new();
        let mut second = Second::starting_at(started_at);
        // The next second of the run to make a row of.
        let mut next_second: u64 = 0;
        if self.per_name_history {
            second.keep_per_name();
        }
        let deadline = self.settings.run_time.map(|t| clock.start + t);
        let mut next_spawn = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let mut interrupted = false;
        let mut own = SelfWatch::new();
        let mut memory_limit_hit = None;

        let mut own_figures = SelfWatchFigures::default();
        let mut steerable = true;
        let mut stats_reset = false;
        loop {
            let Control {
                users: wanted,
                spawn_rate,
            } = *channels.control.borrow();
            // Past --memory-limit no user is started: more would only measure our swap.
            let target_users = memory_limit_hit.map_or(wanted, |(_, cap, _)| wanted.min(cap));
            let spawn_every = Duration::from_secs_f64(1.0 / spawn_rate.max(0.001));
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
                () = channels.stop.cancelled() => { interrupted = true; break; }
                Some(reply) = channels.snapshots.recv() => {
                    let snapshot = StatsSnapshot::of(&totals, clock.secs(), running, own_figures);
                    let _ = reply.send(snapshot);
                }
                Some(reply) = channels.outcomes.recv() => {
                    let _ = reply.send(RunOutcome {
                        stats: in_hand(&totals, &second),
                        history: history.clone(),
                        duration: clock.start.elapsed(),
                        peak_users: peak,
                        users_by_type: self.users_by_type(&started_by_type),
                        interrupted: channels.stop.is_cancelled(),
                        memory_limit_hit,
                        ..self.outcome_frame(started_at, threads.len())
                    });
                }
                () = run_over => break,
                Some(counts) = channels.fixed_counts.recv() => {
                    // Users started from now on follow them; those running stay.
                    plan.set_fixed(&self.scenario.users, &counts);
                }
                Some(()) = channels.resets.recv() => {
                    totals = Stats::default();
                    second.reset_window();
                    tracing::info!("Resetting stats");
                }
                Some((thread, shard)) = shard_rx.recv() => {
                    totals.merge(&shard.stats);
                    second.add(thread, &shard);
                }
                _ = tick.tick() => {
                    let at_secs = clock.secs() as u64;
                    let (loadgen_cpu_pct, loadgen_rss_bytes) = own.sample();
                    if let Some(limit) = self.settings.memory_limit
                        && loadgen_rss_bytes > limit
                        && memory_limit_hit.is_none()
                    {
                        // Stop the ramp where it is: more users would only measure our swap.
                        memory_limit_hit = Some((at_secs, running, loadgen_rss_bytes));
                        eprintln!(
                            "loadgen: warning: memory {} MB passed --memory-limit {} MB at {running} users: no more users are started",
                            loadgen_rss_bytes / 1_000_000,
                            limit / 1_000_000
                        );
                    }
                    // A second's row once every thread has handed over its requests: each hands
                    // them over every second, so the second before the last is complete. A thread
                    // later than that adds them to their row when they come.
                    stats::add_late(&mut history, second.take_late(next_second));
                    while next_second + 2 <= at_secs {
                        let row = second.row(next_second, running, (loadgen_cpu_pct, loadgen_rss_bytes), &totals);
                        next_second += 1;
                        history.push(row);
                    }
                    // The users and their types are news every tick, a second's row or not.
                    let row = history.last().cloned().unwrap_or_else(|| {
                        second.placeholder(running, (loadgen_cpu_pct, loadgen_rss_bytes), &totals)
                    });
                    own_figures = SelfWatchFigures {
                        cpu_pct: loadgen_cpu_pct,
                        rss_bytes: loadgen_rss_bytes,
                        timer_lag_ms: row.timer_lag_ms,
                    };
                    let update = Update {
                        elapsed: clock.start.elapsed(),
                        users: running,
                        target_users,
                        users_by_type: Arc::new(self.users_by_type(&started_by_type)),
                        second: Arc::new(row),
                    };
                    channels.updates.send_replace(Some(update));
                }
                changed = channels.control.changed(), if steerable => {
                    // Every handle is gone: the run goes on as it was last set.
                    steerable = changed.is_ok();
                }
                () = tokio::time::sleep_until(sleep_until) => {
                    if running < target_users {
                        let user_type = plan.next(&started_by_type);
                        started_by_type[user_type] += 1;
                        numbers += 1;
                        let thread = (numbers - self.settings.first_user_number - 1) as usize % threads.len();
                        let _ = threads[thread].commands.send(Command::Spawn { user_type, number: numbers });
                        threads[thread].wake.notify_one();
                        running_by_thread[thread] += 1;
                        running += 1;
                        peak = peak.max(running);
                        if running == target_users {
                            let by_type: Vec<String> = self.scenario.users.iter()
                                .zip(&started_by_type)
                                .map(|(u, n)| format!("\"{}\": {n}", u.name))
                                .collect();
                            tracing::info!("All users spawned: {{{}}} ({running} total users)", by_type.join(", "));
                            if self.settings.reset_stats && !stats_reset {
                                // Locust's --reset-stats: the ramp-up is forgotten.
                                stats_reset = true;
                                totals = Stats::default();
                                second.reset_window();
                                tracing::info!("Resetting stats");
                            }
                        }
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
        // have ended. Until then (up to --stop-timeout) the figures in hand are asked for, by a
        // second signal.
        loop {
            tokio::select! {
                shard = shard_rx.recv() => match shard {
                    Some((thread, shard)) => {
                        totals.merge(&shard.stats);
                        second.add(thread, &shard);
                    }
                    None => break,
                },
                Some(reply) = channels.outcomes.recv() => {
                    let _ = reply.send(RunOutcome {
                        stats: in_hand(&totals, &second),
                        history: history.clone(),
                        duration,
                        peak_users: peak,
                        users_by_type: self.users_by_type(&started_by_type),
                        interrupted,
                        memory_limit_hit,
                        ..self.outcome_frame(started_at, threads.len())
                    });
                }
            }
        }
        let thread_count = threads.len();
        for thread in threads {
            let _ = thread.join.join();
        }
        // Every request is in: those of seconds already made rows go to them, and the seconds
        // left (the last one partial) get theirs.
        stats::add_late(&mut history, second.take_late(next_second));
        if let Some(last) = second.last_pending() {
            let own_now = own.sample();
            for remaining in next_second..=last {
                history.push(second.row(remaining, running, own_now, &totals));
            }
        }
        let users_by_type = self.users_by_type(&started_by_type);
        Ok(RunOutcome {
            stats: totals,
            history,
            started_at,
            duration,
            peak_users: peak,
            users_by_type,
            interrupted,
            run_id: self.run_id,
            threads: thread_count,
            memory_limit_hit,
            ..RunOutcome::default()
        })
    }

    /// The parts of an outcome that do not change while the run goes.
    fn outcome_frame(&self, started_at: SystemTime, threads: usize) -> RunOutcome {
        RunOutcome {
            started_at,
            run_id: self.run_id.clone(),
            threads,
            ..RunOutcome::default()
        }
    }

    /// Users started so far, by type name.
    fn users_by_type(&self, started_by_type: &[u64]) -> BTreeMap<String, u64> {
        self.scenario
            .users
            .iter()
            .zip(started_by_type)
            .map(|(u, n)| (u.name.clone(), *n))
            .collect()
    }

    fn start_thread(
        &self,
        index: usize,
        clock: RunClock,
        shards: mpsc::UnboundedSender<(usize, Shard)>,
    ) -> std::io::Result<UserThread> {
        let (commands, inbox) = std::sync::mpsc::channel::<Command>();
        let wake = Arc::new(tokio::sync::Notify::new());
        let stop = CancellationToken::new();
        let scenario = self.scenario.clone();
        let target = self.target.clone();
        let settings = self.settings.clone();
        let run_id: Arc<str> = self.run_id.as_str().into();
        let startup_window = self.startup_window.clone();
        let poll_budget = self.poll_budget.clone();
        let job_types = self.job_types.clone();
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
                    options: crate::http::Options {
                        timeout: settings.timeout,
                        limits: crate::http::Limits {
                            max_body: settings.max_body,
                        },
                        gzip: scenario.gzip,
                    },
                    job_sample: settings.job_sample,
                    max_redirects: settings.max_redirects,
                    startup_window,
                    poll_budget,
                    job_types,
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
                    let stop_timeout = settings.stop_timeout;
                    let mut users: Vec<(tokio::task::JoinHandle<()>, CancellationToken)> =
                        Vec::new();
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
                                    let user_stop = CancellationToken::new();
                                    let task = tokio::task::spawn_local(crate::user::caught(
                                        "a user",
                                        user.run(user_stop.clone()),
                                    ));
                                    users.push((task, user_stop));
                                }
                                Command::StopOne => {
                                    if let Some((task, user_stop)) = users.pop() {
                                        // Locust's --stop-timeout: the user ends its task, or
                                        // is cut off when the time is up.
                                        user_stop.cancel();
                                        if stop_timeout.is_zero() {
                                            task.abort();
                                        } else {
                                            tokio::task::spawn_local(async move {
                                                let abort = task.abort_handle();
                                                if tokio::time::timeout(stop_timeout, task)
                                                    .await
                                                    .is_err()
                                                {
                                                    abort.abort();
                                                }
                                            });
                                        }
                                    }
                                }
                            }
                        }
                        tokio::select! {
                            () = thread_stop.cancelled() => break,
                            () = thread_wake.notified() => {}
                        }
                    }
                    if !stop_timeout.is_zero() {
                        for (_, user_stop) in &users {
                            user_stop.cancel();
                        }
                        let all_done = async {
                            for (task, _) in users {
                                let _ = task.await;
                            }
                        };
                        let _ = tokio::time::timeout(stop_timeout, all_done).await;
                    }
                });
                // Dropping the set drops every user and job poller (pollers record their jobs as
                // unfinished, or unknown if no poll read them), then the last shard goes out.
                drop(local);
                let _ = shards.send((index, stats::take_shard()));
            })?;
        Ok(UserThread {
            commands,
            wake,
            join,
            stop,
        })
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

    /// Takes new fixed counts for the types named in `counts` (the others keep theirs).
    fn set_fixed(&mut self, types: &[UserType], counts: &BTreeMap<String, u32>) {
        for (fixed, user_type) in self.fixed.iter_mut().zip(types) {
            if let (Some(fixed), Some(count)) = (fixed.as_mut(), counts.get(&user_type.name)) {
                *fixed = u64::from(*count);
            }
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
            // Only fixed counts, all reached: the extra users are shared in proportion to them.
            return (0..self.fixed.len())
                .filter(|i| self.fixed[*i].is_some_and(|f| f > 0))
                .min_by(|a, b| {
                    let ratio =
                        |i: usize| started[i] as f64 / self.fixed[i].map_or(1.0, |f| f as f64);
                    ratio(*a).total_cmp(&ratio(*b))
                })
                .unwrap_or(0);
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
            secret_headers: vec![],
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

    #[test]
    fn with_only_fixed_counts_extra_users_are_shared_by_them() {
        let plan = TypePlan::new(&[user_type("one", 1, Some(1)), user_type("two", 1, Some(2))]);
        let mut started = vec![0; 2];
        for _ in 0..9 {
            let next = plan.next(&started);
            started[next] += 1;
        }
        assert_eq!(started, vec![3, 6]);
    }

    #[test]
    fn new_fixed_counts_steer_the_users_started_after_them() {
        let types = [
            user_type("fixed", 1, Some(1)),
            user_type("weighted", 1, None),
        ];
        let mut plan = TypePlan::new(&types);
        let mut started = vec![0; 2];
        for _ in 0..4 {
            let next = plan.next(&started);
            started[next] += 1;
        }
        assert_eq!(started, vec![1, 3]);
        // A worker lost: this one's share of the fixed count rises from 1 to 2.
        plan.set_fixed(&types, &BTreeMap::from([("fixed".to_owned(), 2)]));
        let next = plan.next(&started);
        assert_eq!(next, 0, "the fixed type first");
        started[next] += 1;
        assert_eq!(plan.next(&started), 1);
    }
}
