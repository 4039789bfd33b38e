//! One Python process sampled by py-spy on a thread of its own, at a fixed rate on an absolute
//! schedule, into counts that the source drains once per tick. Non-blocking: the process is
//! never paused (py-spy's `LockingStrategy::NonBlocking`), which keeps the cost to the API low
//! at the price of an occasional torn stack, counted as an error and skipped.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use py_spy::config::LockingStrategy;
use py_spy::{Config, PythonSpy};

/// A frame as py-spy read it, before its path is shortened (once per tick, not per sample).
pub type RawFrame = (String, String, i32);

/// What one stack in one state is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StackKey {
    /// OS thread id (py-spy's Python thread id when the OS one is unknown).
    pub thread: u64,
    /// On CPU.
    pub active: bool,
    /// Holding the GIL.
    pub gil: bool,
    /// Innermost first.
    pub frames: Vec<RawFrame>,
}

/// One thread's counts.
#[derive(Debug, Clone, Default)]
pub struct ThreadCounts {
    /// Python's name for it.
    pub name: Option<String>,
    /// Samples.
    pub samples: u64,
    /// On CPU.
    pub active: u64,
    /// Holding the GIL.
    pub gil: u64,
}

/// What the thread gathered since the last drain.
#[derive(Debug, Default)]
pub struct Counts {
    /// Rounds that read the process.
    pub rounds: u64,
    /// By OS thread id.
    pub threads: HashMap<u64, ThreadCounts>,
    /// Samples per stack and state.
    pub stacks: HashMap<StackKey, u64>,
}

/// How the sampling thread stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Attaching (py-spy reads the interpreter's binary first).
    Starting,
    /// Sampling.
    Running,
    /// The process could not be read for lack of rights.
    Refused(String),
    /// Not a Python process py-spy can read, or it ended: dropped quietly.
    Ended,
}

#[derive(Debug)]
struct Shared {
    counts: Counts,
    status: Status,
}

/// A running sampler; dropping it stops its thread.
pub struct Sampler {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `pid` at `rate_hz`.
    pub fn start(pid: u32, rate_hz: u32) -> std::io::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared {
            counts: Counts::default(),
            status: Status::Starting,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs_f64(1.0 / f64::from(rate_hz.max(1)));
        let thread = std::thread::Builder::new()
            .name(format!("py-spy {pid}"))
            .spawn({
                let (shared, stop) = (shared.clone(), stop.clone());
                move || run(pid, period, &shared, &stop)
            })?;
        Ok(Self {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// The counts since the last call, and the status now.
    pub fn drain(&self) -> (Counts, Status) {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut shared.counts), shared.status.clone())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // It wakes within one period (10-20 ms).
            let _ = thread.join();
        }
    }
}

/// The thread's body: attach, then sample until told to stop or the process ends.
fn run(pid: u32, period: Duration, shared: &Mutex<Shared>, stop: &AtomicBool) {
    let set = |status: Status| {
        shared.lock().unwrap_or_else(PoisonError::into_inner).status = status;
    };
    let config = Config {
        blocking: LockingStrategy::NonBlocking,
        include_idle: true,
        // Never locals nor arguments.
        dump_locals: 0,
        ..Config::default()
    };
    let Ok(raw_pid) = py_spy::Pid::try_from(pid) else {
        return set(Status::Ended);
    };
    let mut spy = match attach(raw_pid, &config, stop) {
        Ok(spy) => spy,
        Err(status) => return set(status),
    };
    set(Status::Running);
    let mut namespaced = Namespaced::of(pid);
    let mut next = Instant::now();
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let running = namespaced.as_mut().map(Namespaced::running);
        // py-spy reads another process's memory as it changes, and may panic on what it read
        // (an overflow on a torn pointer): such a round counts as a failed one.
        let round = catch_unwind(AssertUnwindSafe(|| spy.get_stack_traces()))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("py-spy panicked reading the stacks")));
        match round {
            Ok(mut traces) => {
                failures = 0;
                if let Some(running) = running {
                    for trace in &mut traces {
                        if let Some(tid) = trace.os_thread_id {
                            trace.active = running.contains(&tid);
                        }
                    }
                }
                let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
                record(&mut shared.counts, traces);
            }
            // A torn read (the process moved on while being read) fails a round now and then;
            // an ended process fails every one.
            Err(_) if alive(pid) && failures < 100 => failures += 1,
            Err(_) => return set(Status::Ended),
        }
        next += period;
        let now = Instant::now();
        if next < now {
            // Behind (a busy host): skip the missed rounds rather than burst.
            next = now;
        }
        std::thread::sleep(next - now);
    }
}

/// How long a process that cannot be read yet is tried again: a Python process found just
/// after it started has no interpreter state to find until its imports are done (seconds on a
/// busy host), and its half-written memory can make py-spy fail, or panic, in the meantime.
const ATTACH_WINDOW: Duration = Duration::from_secs(30);

/// Attaches py-spy to the process, trying again with a growing pause while the process lives,
/// stop is not asked and the window lasts; the status to leave with when it cannot.
fn attach(pid: py_spy::Pid, config: &Config, stop: &AtomicBool) -> Result<PythonSpy, Status> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        let error = match catch_unwind(AssertUnwindSafe(|| PythonSpy::new(pid, config))) {
            Ok(Ok(spy)) => return Ok(spy),
            Ok(Err(e)) => e,
            Err(_) => anyhow::anyhow!("py-spy panicked reading the process"),
        };
        if let Some(why) = refusal(&error) {
            return Err(Status::Refused(why));
        }
        let alive = u32::try_from(pid).is_ok_and(alive);
        if !alive || stop.load(Ordering::Relaxed) || started.elapsed() + pause > ATTACH_WINDOW {
            tracing::debug!(pid, "py-spy cannot read the process: {error:#}");
            return Err(Status::Ended);
        }
        if !sleep_unless_stopped(pause, stop) {
            return Err(Status::Ended);
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Sleeps for `pause` in short steps; false when stop was asked meanwhile.
fn sleep_unless_stopped(pause: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + pause;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
    }
    !stop.load(Ordering::Relaxed)
}

/// Adds one round's traces to the counts.
fn record(counts: &mut Counts, traces: Vec<py_spy::StackTrace>) {
    counts.rounds += 1;
    for trace in traces {
        let thread = trace.os_thread_id.unwrap_or(trace.thread_id);
        let entry = counts.threads.entry(thread).or_default();
        if entry.name.is_none() {
            entry.name = trace.thread_name;
        }
        entry.samples += 1;
        entry.active += u64::from(trace.active);
        entry.gil += u64::from(trace.owns_gil);
        let key = StackKey {
            thread,
            active: trace.active,
            gil: trace.owns_gil,
            frames: trace
                .frames
                .into_iter()
                .map(|f| (f.name, f.filename, f.line))
                .collect(),
        };
        *counts.stacks.entry(key).or_default() += 1;
    }
}

/// A process in another PID namespace (a container's, read through its host pid): Python
/// knows its threads by their ids in that namespace, which py-spy looks up among the host's
/// and misses, calling every thread on CPU. This reads the threads' states itself and names
/// them by their namespace's ids (the last of `NSpid` in `/proc/PID/task/TID/status`).
struct Namespaced {
    pid: u32,
    /// Host thread id → the id inside the namespace.
    inner: HashMap<u32, u64>,
}

impl Namespaced {
    /// `Some` when `pid` is in another PID namespace than this process.
    fn of(pid: u32) -> Option<Self> {
        let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
        let theirs = ns(&pid.to_string())?;
        (Some(theirs) != ns("self")).then(|| Self {
            pid,
            inner: HashMap::new(),
        })
    }

    /// The namespace's ids of the threads running (state `R`) now.
    fn running(&mut self) -> Vec<u64> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return Vec::new();
        };
        let mut running = Vec::new();
        for task in tasks.flatten() {
            let Some(tid) = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let path = task.path();
            let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
                continue;
            };
            // The state follows the comm, which ends at the last `)`.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            if state != Some("R") {
                continue;
            }
            let inner = match self.inner.get(&tid) {
                Some(inner) => *inner,
                None => {
                    let Some(inner) = inner_id(&path.join("status")) else {
                        continue;
                    };
                    self.inner.insert(tid, inner);
                    inner
                }
            };
            running.push(inner);
        }
        running
    }
}

/// The last id of the `NSpid:` line of a task's status: its id in its own namespace.
fn inner_id(status: &std::path::Path) -> Option<u64> {
    let status = std::fs::read_to_string(status).ok()?;
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Why attaching failed, when it is a matter of rights (EPERM, EACCES anywhere in the chain).
fn refusal(error: &anyhow::Error) -> Option<String> {
    let denied = error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.kind() == std::io::ErrorKind::PermissionDenied || io.raw_os_error() == Some(1)
        }) || {
            let text = cause.to_string();
            text.contains("Permission denied") || text.contains("Operation not permitted")
        }
    });
    denied.then(|| error.to_string())
}
