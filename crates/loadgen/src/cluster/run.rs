//! One distributed run, as the master drives it: shares the users out to the workers, steers
//! them, notices a worker lost or back, builds the timeline from the differences of their
//! totals, and gathers their final figures into the run's outcome.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::listener::Event;
use super::protocol::{Resume, RunSpec, ToMaster, ToWorker, WorkerSnapshot};
use super::{MISSING_AFTER, share};
use crate::config::{LoadSettings, RunConfig};
use crate::outcome::{ClusterEvent, ClusterSummary, EventKind, WorkerSummary};
use crate::outcome::{EngineError, RunOutcome, Update};
use crate::runner::{Channels, Control};
use crate::stats::{Second, SelfWatchFigures, Stats, StatsSnapshot};

/// How much later than its run time a master of an open-model run stops its workers: each
/// worker ends its own schedule, started when the master's start message reached it.
const OPEN_MODEL_GRACE: Duration = Duration::from_secs(3);

/// How long stopped workers have to send their final figures, past `--stop-timeout`: their
/// users' `on_stop`, then a margin.
const FINISH_GRACE: Duration = crate::user::ON_STOP_LIMIT.saturating_add(Duration::from_secs(5));

#[derive(Debug, Clone, PartialEq)]
enum State {
    Running,
    Lost { at_secs: f64 },
    Finished,
    Failed(String),
}

/// A worker connected and not in a run: the master keeps it between runs, a run takes it in
/// and hands it back. Here, below the master, so that a run needs nothing of the master.
pub(super) struct Connected {
    pub(super) name: String,
    pub(super) cores: usize,
    pub(super) outbox: mpsc::UnboundedSender<ToWorker>,
}

/// A worker in the run.
pub(super) struct Member {
    id: u32,
    pub(super) name: String,
    pub(super) cores: usize,
    pub(super) conn: Option<u64>,
    pub(super) outbox: Option<mpsc::UnboundedSender<ToWorker>>,
    state: State,
    last_heard: Instant,
    joined: Instant,
    share: u64,
    /// Its latest figures, read.
    latest: Option<(WorkerSnapshot, Stats)>,
    /// Its totals at the last second of the timeline.
    at_last_tick: Stats,
    /// The sequence number of its figures at the last second of the timeline.
    seq_at_last_tick: u64,
    /// Its requests in each of the last seconds it reported (newest last): the load lost
    /// when it goes, judged on seconds it was heard in, not on the silence before it was
    /// marked lost.
    recent_seconds: VecDeque<u64>,
    peak_cpu_pct: f64,
    peak_timer_lag_ms: f64,
    saturated_secs: u64,
}

/// How many of a worker's last reported seconds its rate is judged on.
const RECENT_SECONDS: usize = 5;

impl Member {
    /// Its requests per second over the last seconds it reported.
    fn recent_rate(&self) -> f64 {
        if self.recent_seconds.is_empty() {
            return 0.0;
        }
        self.recent_seconds.iter().sum::<u64>() as f64 / self.recent_seconds.len() as f64
    }

    fn send(&self, message: ToWorker) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.send(message);
        }
    }

    fn is_running(&self) -> bool {
        self.state == State::Running
    }
}

pub(super) struct ClusterRun {
    config: RunConfig,
    channels: Channels,
    run_id: String,
    start: Instant,
    started_at: SystemTime,
    /// Set when the users were stopped.
    duration: Option<Duration>,
    pub(super) members: BTreeMap<u32, Member>,
    epoch: u64,
    second: Second,
    /// The next second of the run to make a row of: one each tick.
    next_second: u64,
    history: Vec<crate::stats::HistoryRow>,
    peak_users: u64,
    events: Vec<ClusterEvent>,
    control: Control,
    status: Arc<std::sync::Mutex<Vec<WorkerSummary>>>,
    /// The users count Locust's "All users spawned" was last logged for.
    all_spawned_for: Option<u64>,
}

impl ClusterRun {
    pub(super) fn new(
        config: RunConfig,
        channels: Channels,
        status: Arc<std::sync::Mutex<Vec<WorkerSummary>>>,
    ) -> Self {
        let control = *channels.control.borrow();
        let started_at = SystemTime::now();
        let mut second = Second::starting_at(started_at);
        if config.outputs.csv_full_history {
            second.keep_per_name();
        }
        Self {
            run_id: config
                .load
                .run_id
                .clone()
                .unwrap_or_else(crate::runner::new_run_id),
            config,
            channels,
            start: Instant::now(),
            started_at,
            duration: None,
            members: BTreeMap::new(),
            epoch: 0,
            second,
            next_second: 0,
            history: Vec::new(),
            peak_users: 0,
            events: Vec::new(),
            control,
            status,
            all_spawned_for: None,
        }
    }

    fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn note(&mut self, kind: EventKind, what: String) {
        let at_secs = self.secs();
        eprintln!("loadgen: master: {at_secs:.0} s: {what}");
        self.events.push(ClusterEvent {
            at_secs,
            kind,
            what,
        });
    }

    pub(super) fn add_member(&mut self, conn: u64, connected: Connected, id: Option<u32>) -> u32 {
        let id = id.unwrap_or(conn as u32);
        let now = Instant::now();
        self.members.insert(
            id,
            Member {
                id,
                name: connected.name,
                cores: connected.cores,
                conn: Some(conn),
                outbox: Some(connected.outbox),
                state: State::Running,
                last_heard: now,
                joined: now,
                share: 0,
                latest: None,
                at_last_tick: Stats::default(),
                seq_at_last_tick: 0,
                recent_seconds: VecDeque::new(),
                peak_cpu_pct: 0.0,
                peak_timer_lag_ms: 0.0,
                saturated_secs: 0,
            },
        );
        id
    }

    /// The run's body: start, then follow events, seconds and the handle until the end.
    pub(super) async fn drive(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Event>,
    ) -> Result<RunOutcome, EngineError> {
        let ids: Vec<u32> = self.members.keys().copied().collect();
        let shares = self.shares();
        for id in ids {
            self.start_member(id, shares.get(&id).copied().unwrap_or(0));
        }
        // In the open model each worker ends its own schedule, run time after it started (so
        // that the schedules add up to the whole): the master waits that much longer for them.
        let schedules_end = if self.config.load.arrival.is_some() {
            OPEN_MODEL_GRACE
        } else {
            Duration::ZERO
        };
        let deadline = self
            .config
            .load
            .run_time
            .map(|t| self.start + t + schedules_end);
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let mut steerable = true;
        let mut interrupted = false;
        loop {
            let run_over = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.channels.stop.cancelled() => { interrupted = true; break; }
                () = run_over => break,
                Some(reply) = self.channels.snapshots.recv() => {
                    let _ = reply.send(self.snapshot());
                }
                Some(reply) = self.channels.outcomes.recv() => {
                    let _ = reply.send(self.outcome(self.channels.stop.is_cancelled()));
                }
                Some(()) = self.channels.resets.recv() => self.reset(),
                changed = self.channels.control.changed(), if steerable => {
                    steerable = changed.is_ok();
                    self.control = *self.channels.control.borrow();
                    self.rebalance();
                }
                event = events.recv() => match event {
                    Some(event) => self.handle(event),
                    None => return Err(EngineError::Aborted("the master stopped listening".into())),
                },
                _ = tick.tick() => {
                    self.check_heartbeats();
                    self.push_second();
                    if !self.members.values().any(Member::is_running) {
                        let why = self.members.values().find_map(|m| match &m.state {
                            State::Failed(why) => Some(why.clone()),
                            _ => None,
                        }).unwrap_or_else(|| "every worker was lost".into());
                        eprintln!("loadgen: master: no worker is running: {why}");
                        if self.members.values().all(|m| m.latest.is_none()) {
                            return Err(EngineError::Preflight(why));
                        }
                        break;
                    }
                }
            }
        }
        self.finish(events, interrupted).await;
        Ok(self.outcome(interrupted))
    }

    /// Each running worker's users, by id.
    fn shares(&self) -> BTreeMap<u32, u64> {
        let running: Vec<u32> = self
            .members
            .values()
            .filter(|m| m.is_running())
            .map(|m| m.id)
            .collect();
        running
            .iter()
            .copied()
            .zip(share::split(self.control.users, running.len()))
            .collect()
    }

    fn start_member(&mut self, id: u32, users: u64) {
        let running = self.members.values().filter(|m| m.is_running()).count();
        let index = self
            .members
            .values()
            .filter(|m| m.is_running())
            .position(|m| m.id == id)
            .unwrap_or(0);
        let fixed_counts = self.fixed_counts(index, running);
        let load = &self.config.load;
        let spec = RunSpec {
            host: self.config.host.clone(),
            scenario: self.config.scenario_source.clone(),
            load: LoadSettings {
                users,
                spawn_rate: share::rate(self.control.spawn_rate, users, self.control.users),
                first_user_number: share::first_user_number(id),
                run_id: Some(self.run_id.clone()),
                arrival: load.arrival.as_ref().map(|a| a.share(index, running)),
                ..load.clone()
            },
            fixed_counts,
        };
        if let Some(member) = self.members.get_mut(&id) {
            member.share = users;
            member.send(ToWorker::Start(Box::new(spec)));
        }
    }

    /// Shares the users out again among the running workers.
    fn rebalance(&mut self) {
        let shares = self.shares();
        let running = shares.len();
        let (users, rate) = (self.control.users, self.control.spawn_rate);
        for (index, (id, share)) in shares.into_iter().enumerate() {
            let fixed_counts = self.fixed_counts(index, running);
            if let Some(member) = self.members.get_mut(&id) {
                member.share = share;
                member.send(ToWorker::Steer {
                    users: share,
                    spawn_rate: share::rate(rate, share, users),
                    fixed_counts,
                });
            }
        }
    }

    /// The share of each type's `fixed_count` of the `index`th of `running` workers.
    fn fixed_counts(&self, index: usize, running: usize) -> BTreeMap<String, u32> {
        self.config
            .scenario
            .users
            .iter()
            .filter_map(|u| {
                let fixed = u.fixed_count?;
                let shares = share::split(u64::from(fixed), running.max(1));
                let mine = shares.get(index).copied().unwrap_or(0);
                Some((u.name.clone(), u32::try_from(mine).unwrap_or(u32::MAX)))
            })
            .collect()
    }

    fn member_of(&self, conn: u64) -> Option<u32> {
        self.members
            .values()
            .find(|m| m.conn == Some(conn))
            .map(|m| m.id)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Hello {
                conn,
                name,
                cores,
                resume,
                outbox,
            } => self.joined(
                conn,
                Connected {
                    name,
                    cores,
                    outbox,
                },
                resume,
            ),
            Event::Left { conn, why } => {
                if let Some(id) = self.member_of(conn) {
                    self.lose(id, &why);
                    if let Some(member) = self.members.get_mut(&id) {
                        member.conn = None;
                        member.outbox = None;
                    }
                }
            }
            Event::Message { conn, message } => {
                let Some(id) = self.member_of(conn) else {
                    return;
                };
                self.heard(id);
                match message {
                    ToMaster::Snapshot(snapshot) => self.take(id, *snapshot, false),
                    ToMaster::Finished(snapshot) => self.take(id, *snapshot, true),
                    ToMaster::Failed { run_id, message } if run_id == self.run_id => {
                        let name = self.members.get(&id).map(|m| m.name.clone());
                        if let Some(member) = self.members.get_mut(&id) {
                            member.state = State::Failed(message.clone());
                        }
                        self.note(
                            EventKind::Failed,
                            format!(
                                "worker {} could not start the run: {message}",
                                name.unwrap_or_default()
                            ),
                        );
                        self.rebalance();
                    }
                    _ => {}
                }
            }
        }
    }

    /// A worker connected during the run: a new one gets its share; one that lost its
    /// connection comes back to its place.
    fn joined(&mut self, conn: u64, connected: Connected, resume: Option<Resume>) {
        let back = resume
            .filter(|r| r.run_id == self.run_id)
            .and_then(|r| self.members.get(&r.worker_id).map(|m| m.id));
        if let Some(id) = back {
            let _ = connected.outbox.send(ToWorker::Welcome { worker_id: id });
            let name = connected.name.clone();
            let mut was_lost = false;
            if let Some(member) = self.members.get_mut(&id) {
                member.conn = Some(conn);
                member.outbox = Some(connected.outbox);
                member.last_heard = Instant::now();
                if let State::Lost { .. } = member.state {
                    member.state = State::Running;
                    was_lost = true;
                }
            }
            if was_lost {
                self.note(
                    EventKind::Back,
                    format!("worker {name} answers again (connected again): the users are shared out again"),
                );
                self.rebalance();
            }
            return;
        }
        let _ = connected.outbox.send(ToWorker::Welcome {
            worker_id: conn as u32,
        });
        let name = connected.name.clone();
        let id = self.add_member(conn, connected, None);
        self.note(
            EventKind::Joined,
            format!("worker {name} joined: it gets its share of the users"),
        );
        let shares = self.shares();
        self.start_member(id, shares.get(&id).copied().unwrap_or(0));
        self.rebalance();
    }

    /// A message from a worker: a lost one is back.
    fn heard(&mut self, id: u32) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        member.last_heard = Instant::now();
        if let State::Lost { .. } = member.state {
            member.state = State::Running;
            let name = member.name.clone();
            self.note(
                EventKind::Back,
                format!("worker {name} answers again: the users are shared out again"),
            );
            self.rebalance();
        }
    }

    fn lose(&mut self, id: u32, why: &str) {
        let at_secs = self.secs();
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if !member.is_running() {
            return;
        }
        member.state = State::Lost { at_secs };
        let (name, users, rate) = (
            member.name.clone(),
            member.latest.as_ref().map_or(0, |(s, _)| s.stats.users),
            member.recent_rate().round() as u64,
        );
        let others = self.members.values().filter(|m| m.is_running()).count();
        self.note(
            EventKind::Lost,
            format!(
                "worker {name} lost ({why}): its {users} users and about {rate} req/s are gone; \
             {}",
                if others == 0 {
                    "no worker is left to take them".to_owned()
                } else {
                    format!("they are shared out to the {others} other(s)")
                }
            ),
        );
        self.rebalance();
    }

    fn check_heartbeats(&mut self) {
        let silent: Vec<u32> = self
            .members
            .values()
            .filter(|m| m.is_running() && m.last_heard.elapsed() > MISSING_AFTER)
            .map(|m| m.id)
            .collect();
        for id in silent {
            self.lose(id, &format!("no message for {} s", MISSING_AFTER.as_secs()));
        }
    }

    fn take(&mut self, id: u32, snapshot: WorkerSnapshot, last: bool) {
        if snapshot.run_id != self.run_id || snapshot.epoch != self.epoch {
            return;
        }
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if member
            .latest
            .as_ref()
            .is_some_and(|(s, _)| s.seq > snapshot.seq)
        {
            return;
        }
        let stats = match snapshot.stats.to_stats() {
            Ok(stats) => stats,
            Err(error) => {
                tracing::warn!(
                    "master: worker {}: unreadable figures: {error}",
                    member.name
                );
                return;
            }
        };
        if last {
            member.state = State::Finished;
        }
        member.latest = Some((snapshot, stats));
    }

    fn reset(&mut self) {
        self.epoch += 1;
        for member in self.members.values_mut() {
            member.latest = None;
            member.at_last_tick = Stats::default();
            member.send(ToWorker::Reset);
        }
        self.second.reset_window();
        tracing::info!(target: "locust.runners", "Resetting stats");
    }

    /// The run's totals: every worker's latest.
    fn totals(&self) -> Stats {
        let mut totals = Stats::default();
        for (_, stats) in self.members.values().filter_map(|m| m.latest.as_ref()) {
            totals.merge(stats);
        }
        totals
    }

    fn users(&self) -> u64 {
        self.members
            .values()
            .filter(|m| m.is_running())
            .filter_map(|m| m.latest.as_ref())
            .map(|(s, _)| s.stats.users)
            .sum()
    }

    fn own_figures(&self) -> SelfWatchFigures {
        let mut own = SelfWatchFigures::default();
        for (s, _) in self
            .members
            .values()
            .filter(|m| m.is_running())
            .filter_map(|m| m.latest.as_ref())
        {
            own.cpu_pct += s.stats.self_watch.cpu_pct;
            own.rss_bytes += s.stats.self_watch.rss_bytes;
            own.timer_lag_ms = own.timer_lag_ms.max(s.stats.self_watch.timer_lag_ms);
        }
        own
    }

    fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot::of(
            &self.totals(),
            self.secs(),
            self.users(),
            self.own_figures(),
        )
    }

    /// One second of the timeline: what each worker's totals grew by since the last.
    fn push_second(&mut self) {
        // The workers' totals are their own, up to the last they sent: what they grew by goes
        // into this second, whenever those requests finished.
        let this_second = self.next_second;
        self.next_second += 1;
        for member in self.members.values_mut() {
            let Some((snapshot, stats)) = &member.latest else {
                continue;
            };
            let mut shard = stats.shard_since(&member.at_last_tick, this_second);
            shard.timer_lag_us = (snapshot.stats.self_watch.timer_lag_ms * 1000.0) as u64;
            shard.jobs_in_flight = snapshot.jobs_in_flight;
            shard.in_flight = snapshot.in_flight;
            if snapshot.seq != member.seq_at_last_tick {
                member.seq_at_last_tick = snapshot.seq;
                if member.recent_seconds.len() == RECENT_SECONDS {
                    member.recent_seconds.pop_front();
                }
                member.recent_seconds.push_back(shard.interval.count());
            }
            self.second.add(member.id as usize, &shard);
            member.at_last_tick = stats.clone();
            if member.is_running() {
                let own = snapshot.stats.self_watch;
                member.peak_cpu_pct = member.peak_cpu_pct.max(own.cpu_pct);
                member.peak_timer_lag_ms = member.peak_timer_lag_ms.max(own.timer_lag_ms);
                let cores = snapshot.threads.max(1) as f64 * 100.0;
                if own.cpu_pct >= 0.9 * cores || own.timer_lag_ms >= 100.0 {
                    member.saturated_secs += 1;
                }
            }
        }
        let users = self.users();
        self.peak_users = self.peak_users.max(users);
        let by_type = self.users_by_type();
        // As Locust's master, once its workers report the users it asked for, by type too
        // (their counts by type come with their once-a-second updates, a tick behind).
        if users > 0
            && users == self.control.users
            && by_type.values().sum::<u64>() >= users
            && self.all_spawned_for != Some(users)
        {
            self.all_spawned_for = Some(users);
            tracing::info!(
                target: "locust.runners",
                "All users spawned: {}",
                crate::logging::user_counts(by_type.iter().map(|(k, v)| (k.as_str(), *v)))
            );
        }
        let own = self.own_figures();
        let totals = self.totals();
        let row = self
            .second
            .row(this_second, users, (own.cpu_pct, own.rss_bytes), &totals);
        let update = Update {
            elapsed: self.start.elapsed(),
            users,
            target_users: self.control.users,
            users_by_type: Arc::new(self.users_by_type()),
            second: Arc::new(row.clone()),
        };
        self.channels.updates.send_replace(Some(update));
        self.history.push(row);
        let summaries = self.summaries();
        if let Ok(mut status) = self.status.lock() {
            *status = summaries;
        }
    }

    /// Stops the workers and waits for their final figures.
    async fn finish(&mut self, events: &mut mpsc::UnboundedReceiver<Event>, interrupted: bool) {
        // The run's length is the master's, not the time spent gathering the last figures.
        self.duration = Some(self.start.elapsed());
        for member in self.members.values().filter(|m| m.is_running()) {
            member.send(ToWorker::Stop);
        }
        let grace = self.config.load.stop_timeout + FINISH_GRACE;
        let deadline = tokio::time::Instant::now() + grace;
        while self.members.values().any(Member::is_running) {
            let event = tokio::select! {
                event = tokio::time::timeout_at(deadline, events.recv()) => event,
                // A second signal does not wait for the workers' final figures.
                Some(reply) = self.channels.outcomes.recv() => {
                    let _ = reply.send(self.outcome(interrupted));
                    continue;
                }
            };
            match event {
                Ok(Some(Event::Hello { outbox, .. })) => {
                    let _ = outbox.send(ToWorker::Refused {
                        reason: "the run is ending; connect again for the next".into(),
                    });
                }
                Ok(Some(event)) => self.handle(event),
                Ok(None) => break,
                Err(_) => {
                    let late: Vec<String> = self
                        .members
                        .values()
                        .filter(|m| m.is_running())
                        .map(|m| m.name.clone())
                        .collect();
                    self.note(
                        EventKind::Late,
                        format!(
                            "no final figures from {} within {} s: their last ones count",
                            late.join(", "),
                            grace.as_secs()
                        ),
                    );
                    break;
                }
            }
        }
        if self
            .members
            .values()
            .filter_map(|m| m.latest.as_ref())
            .any(|(_, s)| {
                // Anything since the last second goes into a last one.
                s.endpoints.values().map(|e| e.count).sum::<u64>() > 0
            })
        {
            self.push_second();
        }
    }

    /// Each worker's part so far.
    fn summaries(&self) -> Vec<WorkerSummary> {
        let duration = self.duration.unwrap_or_else(|| self.start.elapsed());
        self.members
            .values()
            .map(|m| {
                let (requests, users, worker_threads) =
                    m.latest.as_ref().map_or((0, 0, 0), |(s, stats)| {
                        (
                            stats.endpoints.values().map(|e| e.count).sum(),
                            s.stats.users,
                            s.threads,
                        )
                    });
                let in_run = match m.state {
                    State::Lost { at_secs } => {
                        (at_secs - m.joined.duration_since(self.start).as_secs_f64()).max(1e-3)
                    }
                    _ => duration
                        .saturating_sub(m.joined.saturating_duration_since(self.start))
                        .as_secs_f64()
                        .max(1e-3),
                };
                WorkerSummary {
                    id: m.id,
                    name: m.name.clone(),
                    cores: m.cores,
                    threads: worker_threads,
                    users,
                    requests,
                    requests_per_sec: requests as f64 / in_run,
                    peak_cpu_pct: m.peak_cpu_pct,
                    peak_timer_lag_ms: m.peak_timer_lag_ms,
                    saturated_secs: m.saturated_secs,
                    state: match &m.state {
                        State::Running => "running".into(),
                        State::Finished => "finished".into(),
                        State::Lost { at_secs } => format!("lost at {at_secs:.0} s"),
                        State::Failed(why) => format!("failed: {why}"),
                    },
                }
            })
            .collect()
    }

    /// Users started by type on every worker, lost ones included (their users were started,
    /// and ran until they were lost).
    fn users_by_type(&self) -> BTreeMap<String, u64> {
        let mut users_by_type: BTreeMap<String, u64> = BTreeMap::new();
        for (snapshot, _) in self.members.values().filter_map(|m| m.latest.as_ref()) {
            for (name, n) in &snapshot.users_by_type {
                *users_by_type.entry(name.clone()).or_default() += n;
            }
        }
        users_by_type
    }

    /// The outcome of the run so far (at its end, the final one).
    fn outcome(&self, interrupted: bool) -> RunOutcome {
        let users_by_type = self.users_by_type();
        let mut threads = 0;
        let mut error = None;
        for (snapshot, _) in self.members.values().filter_map(|m| m.latest.as_ref()) {
            threads += snapshot.threads;
            if error.is_none() {
                error.clone_from(&snapshot.error);
            }
        }
        let duration = self.duration.unwrap_or_else(|| self.start.elapsed());
        let workers = self.summaries();
        RunOutcome {
            stats: self.totals(),
            history: self.history.clone(),
            started_at: self.started_at,
            duration,
            peak_users: self.peak_users,
            users_by_type,
            interrupted,
            run_id: self.run_id.clone(),
            threads,
            cluster: Some(ClusterSummary {
                workers,
                events: self.events.clone(),
            }),
            error,
            ..RunOutcome::default()
        }
    }
}

#[cfg(test)]
mod tests;
