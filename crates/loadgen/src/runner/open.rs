//! The open model on one user thread, as k6's arrival-rate executors: iterations arrive on a
//! schedule whatever the target does. The thread takes every `parts`-th iteration of each
//! stream's schedule (so the threads' shares add up to the schedule exactly), sleeps until
//! each one's absolute instant, and starts it on a free user of its type. With none free it
//! makes one, up to its share of `--max-users`; at the cap, the iteration is dropped and
//! counted. Users are not looped: each runs one task per iteration, then is free again.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::arrival::{Arrival, Schedule, split_exactly};
use crate::scenario::UserType;
use crate::stats::{self, Fate, RunClock};
use crate::user::{ON_STOP_LIMIT, VirtualUser};

use super::Users;

/// Iterations that arrive on one schedule, shared among user types by weight.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub schedule: Schedule,
    /// (user type's index, weight).
    pub types: Vec<(usize, u64)>,
}

impl Stream {
    /// The streams of a run: one per user type with its own `arrival_rate`, and one for the
    /// run's rate shared by the other types' weights.
    pub fn of(arrival: &Arrival, types: &[UserType]) -> Vec<Stream> {
        let mut streams: Vec<Stream> = types
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let rate = t.arrival_rate?;
                Some(Stream {
                    schedule: Schedule::constant(rate),
                    types: vec![(i, 1)],
                })
            })
            .collect();
        let weighted: Vec<(usize, u64)> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| t.arrival_rate.is_none())
            .map(|(i, t)| (i, u64::from(t.weight)))
            .filter(|(_, w)| *w > 0)
            .collect();
        if !weighted.is_empty() && (arrival.rate.is_some() || !arrival.stages.is_empty()) {
            streams.push(Stream {
                schedule: arrival.schedule(),
                types: weighted,
            });
        }
        streams
    }
}

/// The open model of a whole run, before it is shared among threads.
#[derive(Debug, Clone)]
pub(crate) struct OpenModel {
    pub streams: Vec<Stream>,
    /// Users at most, over every thread.
    pub cap: u64,
    /// Users started before the first iteration, over every thread.
    pub pre_allocate: u64,
    /// The run time: no iteration is scheduled from then on.
    pub run_time: Option<Duration>,
    /// Users made so far, by type, over every thread.
    pub made: Arc<Vec<AtomicU64>>,
    /// Set when `--memory-limit` is passed: no user is made after it (iterations that would
    /// need one are dropped).
    pub no_more_users: Arc<std::sync::atomic::AtomicBool>,
}

impl OpenModel {
    /// The model `arrival` describes for `types`.
    pub fn new(arrival: &Arrival, types: &[UserType], run_time: Option<Duration>) -> Self {
        let own_rates: f64 = types
            .iter()
            .filter_map(|t| t.arrival_rate)
            .map(crate::arrival::Rate::per_sec)
            .sum();
        Self {
            streams: Stream::of(arrival, types),
            cap: arrival.users_cap_with(own_rates),
            pre_allocate: arrival.pre_allocated_with(own_rates),
            run_time: run_time.or(arrival.stages_length()),
            made: Arc::new(types.iter().map(|_| AtomicU64::new(0)).collect()),
            no_more_users: Arc::default(),
        }
    }

    /// Users made so far, over every thread.
    pub fn users(&self) -> u64 {
        self.made.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }

    /// Users made so far, by type index.
    pub fn users_by_type(&self) -> Vec<u64> {
        self.made
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Thread `part` of `parts`'s share: every `parts`-th iteration, and its share of the
    /// users (exact: the shares add up to the whole).
    pub fn part(&self, part: usize, parts: usize) -> ThreadShare {
        let even = vec![1; parts.max(1)];
        ThreadShare {
            model: self.clone(),
            part: part as u64,
            parts: parts.max(1) as u64,
            cap: split_exactly(self.cap, &even)[part],
            pre_allocate: split_exactly(self.pre_allocate, &even)[part],
        }
    }
}

/// One thread's share of the open model.
#[derive(Debug, Clone)]
pub(crate) struct ThreadShare {
    model: OpenModel,
    part: u64,
    parts: u64,
    cap: u64,
    pre_allocate: u64,
}

/// The users of one thread: those free by type, and how many exist.
struct Pool {
    free: Vec<Vec<VirtualUser>>,
    made: u64,
    busy: u64,
    /// User numbers go up by the thread count, so they are unique in the run.
    next_number: u64,
}

/// What the thread's schedules and iterations share.
struct Executor {
    users: Users,
    names: Vec<Arc<str>>,
    pool: RefCell<Pool>,
    share: ThreadShare,
    clock: RunClock,
    /// Cuts what users still run at the stop (after `--stop-timeout`, if given): an
    /// iteration, or an `on_start`; they go on to their `on_stop`.
    cut: CancellationToken,
    idle: tokio::sync::Notify,
    /// Each stream's next iteration of this thread, and the iterations started by type slot.
    progress: RefCell<Vec<(u64, Vec<u64>)>>,
}

/// Runs the thread's share until `stop`; then gives the iterations running `stop_timeout`.
pub(super) async fn serve(
    share: ThreadShare,
    users: Users,
    first_number: u64,
    stop: CancellationToken,
    stop_timeout: Duration,
) {
    let clock = users.shared.clock;
    let names = users
        .types
        .iter()
        .map(|t| Arc::from(t.name.as_str()))
        .collect();
    let executor = Rc::new(Executor {
        pool: RefCell::new(Pool {
            free: users.types.iter().map(|_| Vec::new()).collect(),
            made: 0,
            busy: 0,
            next_number: first_number + 1 + share.part,
        }),
        users,
        names,
        clock,
        cut: CancellationToken::new(),
        idle: tokio::sync::Notify::new(),
        progress: RefCell::new(
            share
                .model
                .streams
                .iter()
                .map(|s| (share.part, vec![0; s.types.len()]))
                .collect(),
        ),
        share,
    });
    tokio::select! {
        () = executor.clone().pre_start() => {}
        () = stop.cancelled() => {}
    }
    let drivers: Vec<_> = executor
        .share
        .model
        .streams
        .iter()
        .enumerate()
        .map(|(i, stream)| tokio::task::spawn_local(executor.clone().drive(i, stream.clone())))
        .collect();
    stop.cancelled().await;
    for driver in &drivers {
        driver.abort();
    }
    executor.drop_the_overdue();
    if !stop_timeout.is_zero() {
        // Locust's --stop-timeout: the iterations (and start-ups) running may finish.
        let _ = tokio::time::timeout(stop_timeout, executor.all_idle()).await;
    }
    // Every user then runs its on_stop: the free ones here, the cut ones where they were.
    executor.cut.cancel();
    let free: Vec<VirtualUser> = (executor.pool.borrow_mut().free.iter_mut())
        .flat_map(std::mem::take)
        .collect();
    let stopping: Vec<_> = free
        .into_iter()
        .map(|mut user| tokio::task::spawn_local(async move { user.stop().await }))
        .collect();
    let every = async {
        for task in stopping {
            let _ = task.await;
        }
        executor.all_idle().await;
    };
    let _ = tokio::time::timeout(ON_STOP_LIMIT, every).await;
}

impl Executor {
    /// Makes the pre-allocated users, shared among the types by their weight, and runs their
    /// `on_start` before the first iteration (k6 initialises its VUs before the test).
    async fn pre_start(self: Rc<Self>) {
        let weights = self.type_weights();
        let per_type = split_exactly(self.share.pre_allocate, &weights);
        let mut starting = Vec::new();
        for (user_type, count) in per_type.into_iter().enumerate() {
            for _ in 0..count {
                let Some(mut user) = self.make(user_type) else {
                    break;
                };
                let executor = self.clone();
                // Counted busy, so that the stop waits for its on_start or on_stop.
                executor.pool.borrow_mut().busy += 1;
                starting.push(tokio::task::spawn_local(async move {
                    let started = executor.start(&mut user).await;
                    executor.release(user, user_type, started).await;
                }));
            }
        }
        for task in starting {
            let _ = task.await;
        }
    }

    /// Each type's share of the iterations, for sharing the pre-allocated users.
    fn type_weights(&self) -> Vec<u64> {
        let mut weights = vec![0; self.users.types.len()];
        for stream in &self.share.model.streams {
            let total: u64 = stream.types.iter().map(|(_, w)| w).sum::<u64>().max(1);
            for (user_type, weight) in &stream.types {
                // Weights as parts per million of the stream: streams add up as rates.
                weights[*user_type] += weight * 1_000_000 / total;
            }
        }
        weights
    }

    /// A new user of `user_type`, if the cap allows one.
    fn make(&self, user_type: usize) -> Option<VirtualUser> {
        let number = {
            let mut pool = self.pool.borrow_mut();
            if pool.made >= self.share.cap || self.share.model.no_more_users.load(Ordering::Relaxed)
            {
                return None;
            }
            pool.made += 1;
            let number = pool.next_number;
            pool.next_number += self.share.parts;
            number
        };
        self.share.model.made[user_type].fetch_add(1, Ordering::Relaxed);
        Some(self.users.user(user_type, number))
    }

    /// Follows one stream's schedule: this thread's iterations, each at its absolute instant
    /// from the run's start (never an interval added to the last, which drifts).
    async fn drive(self: Rc<Self>, index: usize, stream: Stream) {
        while let Some(at) = self.next_due(index, &stream, None) {
            let due = self.clock.start + at;
            until(due).await;
            let user_type = self.take_next(index, &stream);
            self.clone().dispatch(user_type, due);
        }
    }

    /// When this thread's next iteration of stream `index` is due, if before the run's end
    /// (and before `by`, when given).
    fn next_due(&self, index: usize, stream: &Stream, by: Option<Duration>) -> Option<Duration> {
        let n = self.progress.borrow()[index].0;
        let at = stream.schedule.instant(n)?;
        let end = match (self.share.model.run_time, by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (end.is_none_or(|end| at < end)).then_some(at)
    }

    /// Moves on to the next iteration of stream `index`: returns its user type, by weight.
    fn take_next(&self, index: usize, stream: &Stream) -> usize {
        let mut progress = self.progress.borrow_mut();
        let (n, started) = &mut progress[index];
        let slot = pick(&stream.types, started);
        started[slot] += 1;
        *n += self.share.parts;
        stream.types[slot].0
    }

    /// At the stop: the iterations already due that the schedule had not reached (a thread
    /// too busy to keep up) count as dropped, so that every iteration due is accounted for.
    fn drop_the_overdue(&self) {
        let now = self.clock.start.elapsed();
        for (index, stream) in self.share.model.streams.iter().enumerate() {
            while self.next_due(index, stream, Some(now)).is_some() {
                let user_type = self.take_next(index, stream);
                stats::record_iteration(&self.clock, &self.names[user_type], Fate::Dropped);
            }
        }
    }

    /// Starts one iteration of `user_type` due at `due` on a free user, a new one, or drops it.
    fn dispatch(self: Rc<Self>, user_type: usize, due: Instant) {
        let late = due.elapsed() > stats::arrivals::LATE_AFTER;
        let free = self.pool.borrow_mut().free[user_type].pop();
        let (user, fresh) = match free {
            Some(user) => (user, false),
            None => match self.make(user_type) {
                Some(user) => (user, true),
                None => {
                    stats::record_iteration(&self.clock, &self.names[user_type], Fate::Dropped);
                    return;
                }
            },
        };
        stats::record_iteration(&self.clock, &self.names[user_type], Fate::Started { late });
        self.pool.borrow_mut().busy += 1;
        tokio::task::spawn_local(crate::user::caught(
            "a user",
            self.iterate(user, user_type, fresh, due),
        ));
    }

    /// One iteration on `user` (started first when `fresh`), then the user is free again.
    async fn iterate(
        self: Rc<Self>,
        mut user: VirtualUser,
        user_type: usize,
        fresh: bool,
        due: Instant,
    ) {
        let mut done = !fresh || self.start(&mut user).await;
        if done {
            let task = user.pick_task();
            tokio::select! {
                biased;
                () = self.cut.cancelled() => done = false,
                () = user.iteration(task, Some(due)) => {}
            }
        }
        self.release(user, user_type, done).await;
    }

    /// Runs `user`'s `on_start` unless the stop cuts it off: whether it completed.
    async fn start(&self, user: &mut VirtualUser) -> bool {
        tokio::select! {
            biased;
            () = self.cut.cancelled() => false,
            started = user.start(&self.cut) => started,
        }
    }

    /// A busy user is free again, when its work `done` before the stop; otherwise (cut off,
    /// or the run has stopped meanwhile) it runs its `on_stop` and is dropped.
    async fn release(&self, mut user: VirtualUser, user_type: usize, done: bool) {
        if !done || self.cut.is_cancelled() {
            user.stop().await;
        } else {
            self.pool.borrow_mut().free[user_type].push(user);
        }
        let mut pool = self.pool.borrow_mut();
        pool.busy -= 1;
        if pool.busy == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Returns once no iteration runs.
    async fn all_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.pool.borrow().busy == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Tokio's timers fire on the first millisecond tick past their deadline, and later still when
/// the thread wakes: enough to start nearly every iteration a millisecond late. So the timer
/// sleeps to a millisecond before `due`, and the last stretch yields to the thread's other
/// tasks until the clock reaches it.
async fn until(due: Instant) {
    if let Some(early) = due.checked_sub(COARSE) {
        tokio::time::sleep_until(early.into()).await;
    }
    while Instant::now() < due {
        tokio::task::yield_now().await;
    }
}

/// What tokio's timer is trusted to within.
const COARSE: Duration = Duration::from_millis(1);

/// The type furthest below its weighted share of the iterations started so far.
fn pick(types: &[(usize, u64)], started: &[u64]) -> usize {
    (0..types.len())
        .min_by(|a, b| {
            let ratio = |i: usize| started[i] as f64 / types[i].1.max(1) as f64;
            ratio(*a).total_cmp(&ratio(*b))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrival::Rate;

    fn user_type(name: &str, weight: u32, rate: Option<Rate>) -> UserType {
        let scenario = crate::scenario::parse(
            &format!(
                "[[users]]\nname = \"{name}\"\nweight = {weight}\n[[users.tasks]]\nrun = [\"get\"]\n\
                 [users.steps.get]\npath = \"/\"\n"
            ),
            "t.toml",
            std::path::Path::new("."),
        )
        .unwrap();
        UserType {
            arrival_rate: rate,
            ..scenario.users[0].clone()
        }
    }

    #[test]
    fn a_type_with_its_own_rate_has_its_own_stream() {
        let arrival = Arrival {
            rate: Some(Rate::per_second(100)),
            ..Arrival::default()
        };
        let types = [
            user_type("a", 3, None),
            user_type("b", 1, None),
            user_type("own", 1, Some(Rate::per_second(5))),
        ];
        let streams = Stream::of(&arrival, &types);
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].types, [(2, 1)]);
        assert_eq!(streams[1].types, [(0, 3), (1, 1)]);
        let model = OpenModel::new(&arrival, &types, None);
        assert_eq!(
            (model.cap, model.pre_allocate),
            (105, 11),
            "the cap a second of both rates, a tenth of it pre-allocated"
        );
    }

    #[test]
    fn threads_share_the_users_exactly() {
        let arrival = Arrival {
            rate: Some(Rate::per_second(10)),
            max_users: Some(7),
            pre_allocate: Some(5),
            ..Arrival::default()
        };
        let model = OpenModel::new(&arrival, &[user_type("a", 1, None)], None);
        let shares: Vec<ThreadShare> = (0..3).map(|i| model.part(i, 3)).collect();
        assert_eq!(shares.iter().map(|s| s.cap).sum::<u64>(), 7);
        assert_eq!(shares.iter().map(|s| s.pre_allocate).sum::<u64>(), 5);
        assert!(shares.iter().all(|s| s.parts == 3));
    }

    #[test]
    fn iterations_follow_the_weights_exactly() {
        let types = [(0, 3), (1, 1)];
        let mut started = vec![0; 2];
        for _ in 0..8 {
            let i = pick(&types, &started);
            started[i] += 1;
        }
        assert_eq!(started, [6, 2]);
    }
}
