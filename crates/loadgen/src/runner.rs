//! The runner: a few OS threads, each a single-threaded tokio runtime hosting its share of the
//! virtual users (no work stealing, no cross-thread synchronisation on the request path), and a
//! controller that spawns users at the spawn rate, changes their number on demand, gathers each
//! thread's stats shard once a second, and stops everything at the end.

mod open;

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
use crate::stats::{
    self, HistoryRow, RunClock, Second, SelfWatchFigures, Shard, Stats, StatsSnapshot,
};
use crate::user::{JobTypes, ON_STOP_LIMIT, Shared, StepKeys, StopSignal, VirtualUser};

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
    /// Asks the thread to hand over its shard at once, marked [`Shard::before_reset`] with
    /// the number of the latest reset.
    flush_for_reset: Arc<tokio::sync::Notify>,
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
    /// The open model, when the settings ask for it.
    open: Option<open::OpenModel>,
    /// Resets so far: the number the threads mark their last shard before one with.
    resets: Arc<std::sync::atomic::AtomicU64>,
}

impl Runner {
    /// A runner of `scenario` against `target`.
    pub fn new(settings: LoadSettings, scenario: Scenario, target: Target) -> Self {
        let run_id = settings.run_id.clone().unwrap_or_else(new_run_id);
        let open = settings
            .arrival
            .as_ref()
            .map(|arrival| open::OpenModel::new(arrival, &scenario.users, settings.run_time));
        Self {
            open,
            settings,
            scenario: Arc::new(scenario),
            target,
            run_id,
            per_name_history: false,
            startup_window: Arc::default(),
            poll_budget: Arc::default(),
            job_types: Arc::default(),
            resets: Arc::default(),
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
        let threads = self.start_threads(clock, shard_tx)?;
        let mut state = RunLoop::new(&self, clock, started_at, threads);
        let deadline = self.settings.run_time.map(|t| clock.start + t);
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let mut steerable = true;
        loop {
            let control = *channels.control.borrow();
            let target_users = state.target_users(control.users);
            let spawn_every = Duration::from_secs_f64(1.0 / control.spawn_rate.max(0.001));
            let sleep_until = if state.running != target_users {
                state.next_spawn
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
                () = channels.stop.cancelled() => { state.interrupted = true; break; }
                Some(reply) = channels.snapshots.recv() => state.on_snapshot(reply),
                Some(reply) = channels.outcomes.recv() => {
                    state.on_outcome_asked(reply, channels.stop.is_cancelled());
                }
                () = run_over => break,
                Some(counts) = channels.fixed_counts.recv() => state.on_fixed_counts(&counts),
                Some(()) = channels.resets.recv() => state.on_reset(),
                Some((thread, shard)) = shard_rx.recv() => state.on_shard(thread, &shard),
                _ = tick.tick() => state.on_tick(target_users, &channels.updates),
                changed = channels.control.changed(), if steerable => {
                    // Every handle is gone: the run goes on as it was last set.
                    steerable = changed.is_ok();
                }
                () = tokio::time::sleep_until(sleep_until) => {
                    state.on_spawn_due(target_users, spawn_every);
                }
            }
        }
        Ok(state.finish(shard_rx, &mut channels.outcomes).await)
    }

    /// One thread per `--threads` (fewer when some cannot start; an error when none can).
    fn start_threads(
        &self,
        clock: RunClock,
        shards: mpsc::UnboundedSender<(usize, Shard)>,
    ) -> Result<Vec<UserThread>, EngineError> {
        let mut threads: Vec<UserThread> = Vec::new();
        // In the open model a thread without a user of its own would drop all its iterations.
        let count = self.open.as_ref().map_or(self.settings.threads, |open| {
            self.settings
                .threads
                .min(usize::try_from(open.cap).unwrap_or(usize::MAX))
        });
        for i in 0..count.max(1) {
            match self.start_thread(i, clock, shards.clone(), count.max(1)) {
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
        Ok(threads)
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
        threads: usize,
    ) -> std::io::Result<UserThread> {
        let (commands, inbox) = std::sync::mpsc::channel::<Command>();
        let wake = Arc::new(tokio::sync::Notify::new());
        let flush_for_reset = Arc::new(tokio::sync::Notify::new());
        let stop = CancellationToken::new();
        let setup = ThreadSetup {
            index,
            clock,
            shards,
            inbox,
            wake: wake.clone(),
            flush_for_reset: flush_for_reset.clone(),
            resets: self.resets.clone(),
            stop: stop.clone(),
            scenario: self.scenario.clone(),
            target: self.target.clone(),
            settings: self.settings.clone(),
            run_id: self.run_id.as_str().into(),
            startup_window: self.startup_window.clone(),
            poll_budget: self.poll_budget.clone(),
            job_types: self.job_types.clone(),
            open: self.open.as_ref().map(|open| open.part(index, threads)),
        };
        let join = std::thread::Builder::new()
            .name(format!("loadgen-users-{index}"))
            .spawn(move || setup.run())?;
        Ok(UserThread {
            commands,
            wake,
            flush_for_reset,
            join,
            stop,
        })
    }
}

/// The controller's state while the run goes: one handler per event of its loop.
struct RunLoop<'a> {
    runner: &'a Runner,
    clock: RunClock,
    started_at: SystemTime,
    threads: Vec<UserThread>,
    plan: TypePlan,
    started_by_type: Vec<u64>,
    running_by_thread: Vec<u64>,
    running: u64,
    /// The last user number given: a worker's range starts where its master says.
    numbers: u64,
    peak: u64,
    totals: Stats,
    history: Vec<HistoryRow>,
    second: Second,
    /// The next second of the run to make a row of.
    next_second: u64,
    /// The users at each tick, by the second of the run it fell in: a row says the users at
    /// its second's end, not those of the later tick that makes it (a shape's stages would
    /// show a second late).
    users_at: std::collections::VecDeque<(u64, u64)>,
    next_spawn: tokio::time::Instant,
    interrupted: bool,
    own: SelfWatch,
    memory_limit_hit: Option<(u64, u64, u64)>,
    own_figures: SelfWatchFigures,
    stats_reset: bool,
    /// Threads asked to hand over what they recorded before a reset, and the reset's number,
    /// while they have not: their shards until then go to the timeline, not to the totals.
    resetting: BTreeMap<usize, u64>,
}

impl<'a> RunLoop<'a> {
    fn new(
        runner: &'a Runner,
        clock: RunClock,
        started_at: SystemTime,
        threads: Vec<UserThread>,
    ) -> Self {
        let mut second = Second::starting_at(started_at);
        if runner.per_name_history {
            second.keep_per_name();
        }
        let types = runner.scenario.users.len();
        Self {
            runner,
            clock,
            started_at,
            plan: TypePlan::new(&runner.scenario.users),
            started_by_type: vec![0; types],
            running_by_thread: vec![0; threads.len()],
            threads,
            running: 0,
            numbers: runner.settings.first_user_number,
            peak: 0,
            totals: Stats::default(),
            history: Vec::new(),
            second,
            next_second: 0,
            users_at: std::collections::VecDeque::new(),
            next_spawn: tokio::time::Instant::now(),
            interrupted: false,
            own: SelfWatch::new(),
            memory_limit_hit: None,
            own_figures: SelfWatchFigures::default(),
            stats_reset: false,
            resetting: BTreeMap::new(),
        }
    }

    /// The users to reach: past --memory-limit no user is started, more would only measure
    /// our swap.
    fn target_users(&self, wanted: u64) -> u64 {
        if self.runner.open.is_some() {
            // The open model makes its users as iterations need them: none to spawn.
            return self.running;
        }
        self.memory_limit_hit
            .map_or(wanted, |(_, cap, _)| wanted.min(cap))
    }

    /// The outcome so far, for reports written before the users have finished.
    fn outcome_so_far(&self, duration: Duration, interrupted: bool) -> RunOutcome {
        RunOutcome {
            stats: in_hand(&self.totals, &self.second),
            history: self.history.clone(),
            duration,
            peak_users: self.peak,
            users_by_type: self.runner.users_by_type(&self.started_by_type),
            interrupted,
            memory_limit_hit: self.memory_limit_hit,
            ..self
                .runner
                .outcome_frame(self.started_at, self.threads.len())
        }
    }

    fn on_snapshot(&self, reply: oneshot::Sender<StatsSnapshot>) {
        let snapshot = StatsSnapshot::of(
            &self.totals,
            self.clock.secs(),
            self.running,
            self.own_figures,
        );
        let _ = reply.send(snapshot);
    }

    fn on_outcome_asked(&self, reply: oneshot::Sender<RunOutcome>, interrupted: bool) {
        let _ = reply.send(self.outcome_so_far(self.clock.start.elapsed(), interrupted));
    }

    /// Users started from now on follow the new counts; those running stay.
    fn on_fixed_counts(&mut self, counts: &BTreeMap<String, u32>) {
        self.plan.set_fixed(&self.runner.scenario.users, counts);
    }

    /// Forgets the totals. Each thread hands over at once what it recorded before (a request
    /// ended just before the reset may not have been handed over yet): those shards are left
    /// out of the totals, so that the figures after a reset are exactly those recorded after
    /// it.
    fn on_reset(&mut self) {
        self.totals = Stats::default();
        self.second.reset_window();
        let number = self
            .runner
            .resets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.resetting = (0..self.threads.len()).map(|t| (t, number)).collect();
        for thread in &self.threads {
            thread.flush_for_reset.notify_one();
        }
        tracing::info!(target: "locust.runners", "Resetting stats");
    }

    fn on_shard(&mut self, thread: usize, shard: &Shard) {
        if let Some(number) = self.resetting.get(&thread) {
            if shard.before_reset >= Some(*number) {
                self.resetting.remove(&thread);
            }
        } else {
            self.totals.merge(&shard.stats);
        }
        self.second.add(thread, shard);
    }

    /// Once a second: watch loadgen itself, make the rows of the seconds every thread has
    /// handed over, and publish the news.
    fn on_tick(&mut self, target_users: u64, updates: &watch::Sender<Option<Update>>) {
        let at_secs = self.clock.secs() as u64;
        self.count_open_users();
        let (cpu_pct, rss_bytes) = self.own.sample();
        self.check_memory(at_secs, rss_bytes);
        // A second's row once every thread has handed over its requests: each hands them over
        // every second, so the second before the last is complete. A thread later than that
        // adds them to their row when they come.
        self.users_at.push_back((at_secs, self.running));
        stats::add_late(&mut self.history, self.second.take_late(self.next_second));
        while self.next_second + 2 <= at_secs {
            let users = self.users_at_end_of(self.next_second);
            let row = self
                .second
                .row(self.next_second, users, (cpu_pct, rss_bytes), &self.totals);
            self.next_second += 1;
            self.history.push(row);
        }
        // The users and their types are news every tick, a second's row or not.
        let row = self.history.last().cloned().unwrap_or_else(|| {
            self.second
                .placeholder(self.running, (cpu_pct, rss_bytes), &self.totals)
        });
        self.own_figures = SelfWatchFigures {
            cpu_pct,
            rss_bytes,
            timer_lag_ms: row.timer_lag_ms,
        };
        let update = Update {
            elapsed: self.clock.start.elapsed(),
            users: self.running,
            target_users,
            users_by_type: Arc::new(self.runner.users_by_type(&self.started_by_type)),
            second: Arc::new(row),
        };
        updates.send_replace(Some(update));
    }

    /// The users at the end of `second` (at the first tick after it), forgetting older ticks.
    fn users_at_end_of(&mut self, second: u64) -> u64 {
        while self.users_at.front().is_some_and(|(at, _)| *at <= second) {
            self.users_at.pop_front();
        }
        self.users_at
            .front()
            .map_or(self.running, |(_, users)| *users)
    }

    /// The open model's users, as its threads made them.
    fn count_open_users(&mut self) {
        if let Some(open) = &self.runner.open {
            self.running = open.users();
            self.peak = self.peak.max(self.running);
            self.started_by_type = open.users_by_type();
        }
    }

    /// Stops the ramp where it is once loadgen's memory passes `--memory-limit`: more users
    /// would only measure our swap.
    fn check_memory(&mut self, at_secs: u64, rss_bytes: u64) {
        if let Some(limit) = self.runner.settings.memory_limit
            && rss_bytes > limit
            && self.memory_limit_hit.is_none()
        {
            let running = self.running;
            self.memory_limit_hit = Some((at_secs, running, rss_bytes));
            if let Some(open) = &self.runner.open {
                open.no_more_users
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            eprintln!(
                "loadgen: warning: memory {} MB passed --memory-limit {} MB at {running} users: no more users are started",
                rss_bytes / 1_000_000,
                limit / 1_000_000
            );
        }
    }

    /// The spawn timer: one user more or one less, towards `target_users`.
    fn on_spawn_due(&mut self, target_users: u64, spawn_every: Duration) {
        if self.running < target_users {
            self.spawn_one(target_users);
        } else if self.running > target_users {
            self.stop_one();
        }
        self.next_spawn += spawn_every;
        let now = tokio::time::Instant::now();
        if self.next_spawn < now {
            self.next_spawn = now;
        }
    }

    fn spawn_one(&mut self, target_users: u64) {
        let user_type = self.plan.next(&self.started_by_type);
        self.started_by_type[user_type] += 1;
        self.numbers += 1;
        let first = self.runner.settings.first_user_number;
        let thread = (self.numbers - first - 1) as usize % self.threads.len();
        let _ = self.threads[thread].commands.send(Command::Spawn {
            user_type,
            number: self.numbers,
        });
        self.threads[thread].wake.notify_one();
        self.running_by_thread[thread] += 1;
        self.running += 1;
        self.peak = self.peak.max(self.running);
        if self.running == target_users {
            self.all_spawned();
        }
    }

    fn all_spawned(&mut self) {
        let by_type = self
            .runner
            .scenario
            .users
            .iter()
            .zip(&self.started_by_type)
            .map(|(u, n)| (u.name.as_str(), *n));
        tracing::info!(
            target: "locust.runners",
            "All users spawned: {}",
            crate::logging::user_counts(by_type)
        );
        if self.runner.settings.reset_stats && !self.stats_reset {
            // Locust's --reset-stats: the ramp-up is forgotten.
            self.stats_reset = true;
            self.on_reset();
        }
    }

    /// Stops one user, from the busiest thread.
    fn stop_one(&mut self) {
        let (thread, _) = self
            .running_by_thread
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| **n)
            .unwrap_or((0, &0));
        let _ = self.threads[thread].commands.send(Command::StopOne);
        self.threads[thread].wake.notify_one();
        self.running_by_thread[thread] = self.running_by_thread[thread].saturating_sub(1);
        self.running -= 1;
    }

    /// Stops the threads, gathers their last shards and makes the last rows.
    async fn finish(
        mut self,
        mut shard_rx: mpsc::UnboundedReceiver<(usize, Shard)>,
        outcomes: &mut mpsc::Receiver<oneshot::Sender<RunOutcome>>,
    ) -> RunOutcome {
        let duration = self.clock.start.elapsed();
        for thread in &self.threads {
            thread.stop.cancel();
        }
        // Each thread drops its users, then sends its last shard; the channel closes when all
        // have ended. Until then (up to --stop-timeout) the figures in hand are asked for, by a
        // second signal.
        loop {
            tokio::select! {
                shard = shard_rx.recv() => match shard {
                    Some((thread, shard)) => self.on_shard(thread, &shard),
                    None => break,
                },
                Some(reply) = outcomes.recv() => {
                    let _ = reply.send(self.outcome_so_far(duration, self.interrupted));
                }
            }
        }
        let thread_count = self.threads.len();
        for thread in std::mem::take(&mut self.threads) {
            let _ = thread.join.join();
        }
        self.count_open_users();
        // Every request is in: those of seconds already made rows go to them, and the seconds
        // left (the last one partial) get theirs.
        stats::add_late(&mut self.history, self.second.take_late(self.next_second));
        if let Some(last) = self.second.last_pending() {
            let own_now = self.own.sample();
            for remaining in self.next_second..=last {
                let users = self.users_at_end_of(remaining);
                let row = self.second.row(remaining, users, own_now, &self.totals);
                self.history.push(row);
            }
        }
        RunOutcome {
            users_by_type: self.runner.users_by_type(&self.started_by_type),
            stats: self.totals,
            history: self.history,
            started_at: self.started_at,
            duration,
            peak_users: self.peak,
            interrupted: self.interrupted,
            run_id: self.runner.run_id.clone(),
            threads: thread_count,
            memory_limit_hit: self.memory_limit_hit,
            users_cap: self.runner.open.as_ref().map(|open| open.cap),
            ..RunOutcome::default()
        }
    }
}

/// What a user thread is given: it builds its runtime and its users' shared parts from it.
struct ThreadSetup {
    index: usize,
    clock: RunClock,
    shards: mpsc::UnboundedSender<(usize, Shard)>,
    inbox: std::sync::mpsc::Receiver<Command>,
    wake: Arc<tokio::sync::Notify>,
    flush_for_reset: Arc<tokio::sync::Notify>,
    /// The number of the latest reset, which its flush is marked with.
    resets: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
    scenario: Arc<Scenario>,
    target: Target,
    settings: LoadSettings,
    run_id: Arc<str>,
    startup_window: Arc<StartupWindow>,
    poll_budget: Arc<PollBudget>,
    job_types: Arc<JobTypes>,
    /// This thread's share of the open model, when the run has one.
    open: Option<open::ThreadShare>,
}

/// A running user and the signal that stops it.
type UserTask = (tokio::task::JoinHandle<()>, StopSignal);

impl ThreadSetup {
    /// The thread's body: its runtime, its users until the stop, then its last shard.
    fn run(self) {
        let index = self.index;
        let shards = self.shards.clone();
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                stats::record_exception(format!("user thread {index} could not start: {error}"));
                let _ = shards.send((index, stats::take_shard()));
                return;
            }
        };
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, self.serve());
        // Dropping the set drops every user and job poller (pollers record their jobs as
        // unfinished, or unknown if no poll read them), then the last shard goes out.
        drop(local);
        let _ = shards.send((index, stats::take_shard()));
    }

    /// What every user of this thread shares.
    fn shared(&self) -> Rc<Shared> {
        Rc::new(Shared {
            target: Rc::new(self.target.clone()),
            clock: self.clock,
            run_id: self.run_id.clone(),
            options: crate::http::Options {
                timeout: self.settings.timeout,
                limits: crate::http::Limits {
                    max_body: self.settings.max_body,
                },
                gzip: self.scenario.gzip,
            },
            job_sample: self.settings.job_sample,
            max_redirects: self.settings.max_redirects,
            startup_window: self.startup_window.clone(),
            poll_budget: self.poll_budget.clone(),
            job_types: self.job_types.clone(),
            latency_correction: self.settings.latency_correction,
            user_data: self.scenario.user_data.clone(),
        })
    }

    /// Follows the controller's commands until the stop, then gives the users
    /// `--stop-timeout` to finish.
    async fn serve(mut self) {
        tokio::task::spawn_local(flush_every_second(
            self.index,
            self.shards.clone(),
            (self.flush_for_reset.clone(), self.resets.clone()),
        ));
        let users = Users::new(&self.scenario, self.shared());
        let stop_timeout = self.settings.stop_timeout;
        if let Some(share) = self.open.take() {
            let first = self.settings.first_user_number;
            open::serve(share, users, first, self.stop.clone(), stop_timeout).await;
            return;
        }
        let mut running: Vec<UserTask> = Vec::new();
        // Users ramped down, still finishing their task or their on_stop.
        let mut leaving: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        loop {
            while let Ok(command) = self.inbox.try_recv() {
                match command {
                    Command::Spawn { user_type, number } => {
                        running.push(users.spawn(user_type, number));
                    }
                    Command::StopOne => {
                        if let Some(user) = running.pop() {
                            leaving.retain(|left| !left.is_finished());
                            leaving.push(stop_user(user, stop_timeout));
                        }
                    }
                }
            }
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = self.wake.notified() => {}
            }
        }
        // Each bounds itself: stop_timeout, then ON_STOP_LIMIT.
        let left = all_end_within(stop_timeout + ON_STOP_LIMIT, &mut leaving);
        tokio::join!(stop_all(running, stop_timeout), left);
    }
}

/// Hands this thread's shard over once a second, with how late its timer fired.
async fn flush_every_second(
    index: usize,
    shards: mpsc::UnboundedSender<(usize, Shard)>,
    (reset, resets): (Arc<tokio::sync::Notify>, Arc<std::sync::atomic::AtomicU64>),
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    loop {
        let shard = tokio::select! {
            due = every.tick() => {
                let mut shard = stats::take_shard();
                shard.timer_lag_us = due.elapsed().as_micros() as u64;
                shard
            }
            // Two resets close together may wake it once: the latest one's number says both.
            () = reset.notified() => Shard {
                before_reset: Some(resets.load(std::sync::atomic::Ordering::SeqCst)),
                ..stats::take_shard()
            },
        };
        let _ = shards.send((index, shard));
    }
}

/// Locust's --stop-timeout: the user ends its task, or is cut off when the time is up (at
/// once without one); then it runs its `on_stop`, and is dropped if that outlasts its bound.
/// Returns when that is done.
fn stop_user((mut task, signal): UserTask, stop_timeout: Duration) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(async move {
        if stop_timeout.is_zero() {
            signal.cut();
        } else {
            signal.finish();
            if tokio::time::timeout(stop_timeout, &mut task).await.is_ok() {
                return;
            }
            signal.cut();
        }
        let abort = task.abort_handle();
        if tokio::time::timeout(ON_STOP_LIMIT, task).await.is_err() {
            abort.abort();
        }
    })
}

/// The run's end on one thread: every user as [`stop_user`], all at once. Returns when all
/// have ended, or once the last bound is up (those left are dropped with the thread).
async fn stop_all(running: Vec<UserTask>, stop_timeout: Duration) {
    let (mut tasks, signals): (Vec<_>, Vec<_>) = running.into_iter().unzip();
    if !stop_timeout.is_zero() {
        signals.iter().for_each(StopSignal::finish);
        if all_end_within(stop_timeout, &mut tasks).await {
            return;
        }
    }
    signals.iter().for_each(StopSignal::cut);
    all_end_within(ON_STOP_LIMIT, &mut tasks).await;
}

/// Whether every task ends within `limit`.
async fn all_end_within(limit: Duration, tasks: &mut [tokio::task::JoinHandle<()>]) -> bool {
    let every = async {
        for task in tasks.iter_mut() {
            // A handle is polled once more after it finished only by mistake: skip those.
            if !task.is_finished() {
                let _ = task.await;
            }
        }
    };
    tokio::time::timeout(limit, every).await.is_ok()
}

/// What a thread makes its users of: each type and the keys of its steps, built once.
struct Users {
    types: Vec<Arc<UserType>>,
    keys: Vec<Rc<StepKeys>>,
    shared: Rc<Shared>,
}

impl Users {
    fn new(scenario: &Scenario, shared: Rc<Shared>) -> Self {
        Self {
            types: scenario.users.iter().map(|u| Arc::new(u.clone())).collect(),
            keys: scenario
                .users
                .iter()
                .map(|u| Rc::new(StepKeys::new(u)))
                .collect(),
            shared,
        }
    }

    /// User `number` of type `user_type`, not started.
    fn user(&self, user_type: usize, number: u64) -> VirtualUser {
        VirtualUser::new(
            self.types[user_type].clone(),
            self.keys[user_type].clone(),
            self.shared.clone(),
            number,
        )
    }

    /// Starts user `number` of type `user_type` on this thread (the closed model's loop).
    fn spawn(&self, user_type: usize, number: u64) -> UserTask {
        let user = self.user(user_type, number);
        let signal = StopSignal::new();
        let task =
            tokio::task::spawn_local(crate::user::caught("a user", user.run(signal.clone())));
        (task, signal)
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
        // Locust's order (dispatch.py `_kl_generator`): the type whose next user lowers the
        // Kullback-Leibler divergence from the weights most, ties to the type with fewer
        // users plus weight, then the lighter one, then the first. 4 users of weights 1:2 are
        // 1 and 3, as in Locust.
        let key = |i: usize| {
            let (w, x) = (self.weights[i], self.weights[i] + started[i] as f64);
            (w * (x / (x + 1.0)).log2(), x + 1.0, w)
        };
        (0..self.weights.len())
            .filter(|i| self.weights[*i] > 0.0)
            .min_by(|a, b| {
                let (ka, kb) = (key(*a), key(*b));
                ka.0.total_cmp(&kb.0)
                    .then(ka.1.total_cmp(&kb.1))
                    .then(ka.2.total_cmp(&kb.2))
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
            arrival_rate: None,
            wait: Wait::Constant(Duration::ZERO),
            tags: vec![],
            vars: vec![],
            headers: vec![],
            secret_headers: vec![],
            on_start: vec![],
            on_stop: vec![],
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
        // Locust's split of 4 users of weights 1:2 (its `_kl_generator`), and of 10 of 5:1.
        for (weights, users, expected) in [([1, 2], 4, vec![1, 3]), ([5, 1], 10, vec![8, 2])] {
            let plan = TypePlan::new(&[
                user_type("a", weights[0], None),
                user_type("b", weights[1], None),
            ]);
            let mut split = vec![0; 2];
            for _ in 0..users {
                let next = plan.next(&split);
                split[next] += 1;
            }
            assert_eq!(split, expected, "weights {weights:?}");
        }
        // A worker lost: this one's share of the fixed count rises from 1 to 2.
        plan.set_fixed(&types, &BTreeMap::from([("fixed".to_owned(), 2)]));
        let next = plan.next(&started);
        assert_eq!(next, 0, "the fixed type first");
        started[next] += 1;
        assert_eq!(plan.next(&started), 1);
    }
}
