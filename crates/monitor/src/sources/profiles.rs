//! The `profiles` source: code-level profiles of the API's and the workers' Python processes.
//!
//! Each tick it finds the Python processes of the stack on the host by name (the role table of
//! [`super::host::programs`], the process table of the host source: uvicorn, gunicorn,
//! hypercorn, celery... and their Python children, such as uvicorn's and celery's workers),
//! a container's among them since its processes are the host's, and samples each on a thread
//! of its own (see [`sampler`]). The tick's reading is, per process, the threads (samples, on
//! CPU, holding the GIL) and the stacks counted, the most seen first, bounded.
//!
//! Why the `py-spy` crate as a library rather than its PyPI binary: `PythonSpy::get_stack_traces`
//! hands over, per sample, the thread (OS id and Python name), whether it was on CPU and
//! whether it held the GIL, which `py-spy record`'s collapsed output folds away; no child
//! process per sample, no second program to install, and the same code reads a container's
//! process through its host pid. Built without libunwind (`default-features = false`): Python
//! frames only, which is what the findings quote.

mod listening;
mod paths;
mod sampler;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use crate::sample::profile::{
    ProcessProfile, ProfileFrame, ProfilesValues, StackCount, ThreadProfile,
};
use crate::sample::{ProcessRole, Values};
use crate::source::{Source, SourceError};

use super::host::groups::{Key, Record};
use super::host::proc_fs::{Scanner, Units};
use super::host::programs::Programs;
use sampler::{Counts, Sampler, Status};

/// How the source samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profiling {
    /// Samples per second and process. 50, half py-spy's own default: a process's stack is
    /// read with a few system calls per thread, and the monitor samples every Python process of
    /// the stack (a Celery pool's children too); `bench/profiling.sh` measures the cost.
    pub rate_hz: u32,
    /// Stacks kept per process and tick, the most seen first.
    pub top_stacks: usize,
    /// The port the load goes to: when an API process on this host listens on it, only the
    /// API processes that serve it are profiled (another stack's uvicorn on the same host is
    /// not the target); when another program does (not a proxy), none of the host's API
    /// processes is. `None`, nobody of this host's network listening on it, or a proxy
    /// (nginx, docker-proxy before a container): every API process found.
    pub api_port: Option<u16>,
}

impl Default for Profiling {
    fn default() -> Self {
        Self {
            rate_hz: 50,
            top_stacks: 40,
            api_port: None,
        }
    }
}

/// What to say when py-spy may not read a process.
pub const REFUSED_NOTE: &str = "profiles: not allowed to read the Python processes' memory \
    (ptrace): run the monitor as the processes' user or as root with CAP_SYS_PTRACE, \
    `kernel.yama.ptrace_scope` at 0 or 1, and `--cap-add SYS_PTRACE` for a monitor in a \
    container; the run goes on without profiles";

/// One process being profiled.
struct Profiled {
    pid: u32,
    name: String,
    role: ProcessRole,
    container: Option<String>,
    /// Its working folder, as it sees it: application paths are shown relative to it.
    cwd: Option<String>,
    sampler: Sampler,
}

struct State {
    profiling: Profiling,
    programs: Programs,
    units: Units,
    scanner: Scanner,
    own_pid: u32,
    profiled: HashMap<Key, Profiled>,
    /// Processes found not to be Python, ended, or refused: not tried again.
    skipped: HashSet<Key>,
    refused_said: bool,
    notes: Vec<String>,
}

/// The source.
pub struct Profiles {
    state: Arc<Mutex<State>>,
}

impl Profiles {
    /// A source that samples at `profiling`'s rate.
    pub fn new(profiling: Profiling) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                profiling,
                programs: Programs::default(),
                units: Units::of_this_host(),
                scanner: Scanner::default(),
                own_pid: std::process::id(),
                profiled: HashMap::new(),
                skipped: HashSet::new(),
                refused_said: false,
                notes: Vec::new(),
            })),
        }
    }
}

#[async_trait::async_trait]
impl Source for Profiles {
    fn name(&self) -> &'static str {
        "profiles"
    }

    async fn read(&mut self) -> Result<Values, SourceError> {
        let state = self.state.clone();
        // /proc is read with blocking calls, and stopping a sampler joins its thread.
        tokio::task::spawn_blocking(move || {
            state.lock().unwrap_or_else(PoisonError::into_inner).read()
        })
        .await
        .map_err(|e| SourceError(format!("profiles: {e}")))?
    }

    fn notes(&mut self) -> Vec<String> {
        std::mem::take(
            &mut self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .notes,
        )
    }
}

impl State {
    fn read(&mut self) -> Result<Values, SourceError> {
        let records = self
            .scanner
            .scan(self.units)
            .map_err(|e| SourceError(format!("profiles: reading /proc: {e}")))?;
        self.follow(&records);
        let mut processes = Vec::new();
        let mut ended = Vec::new();
        for (key, p) in &self.profiled {
            let (counts, status) = p.sampler.drain();
            match status {
                Status::Refused(why) => {
                    tracing::debug!(pid = p.pid, "py-spy refused: {why}");
                    if !self.refused_said {
                        self.refused_said = true;
                        self.notes.push(REFUSED_NOTE.to_owned());
                    }
                    ended.push(*key);
                }
                Status::Ended => ended.push(*key),
                Status::Starting | Status::Running if counts.rounds > 0 => {
                    processes.push(profile(p, counts, self.profiling.top_stacks));
                }
                Status::Starting | Status::Running => {}
            }
        }
        for key in ended {
            self.profiled.remove(&key);
            self.skipped.insert(key);
        }
        processes.sort_by_key(|p| (p.role, p.pid));
        Ok(Values::Profiles(ProfilesValues { processes }))
    }

    /// Starts sampling the stack's Python processes that appeared, stops those that ended.
    fn follow(&mut self, records: &[Record]) {
        let alive: HashSet<Key> = records.iter().map(|r| r.key).collect();
        self.profiled.retain(|key, _| alive.contains(key));
        self.skipped.retain(|key| alive.contains(key));
        let found = stack_python(records, &self.programs, self.own_pid);
        let serving = self
            .profiling
            .api_port
            .map(listening::serving)
            .unwrap_or_default();
        // A process serves the port when it, or the process that started it (uvicorn's and
        // gunicorn's workers inherit the listening socket), holds the socket.
        let serves = |r: &Record| serving.contains(&r.key.pid) || serving.contains(&r.ppid);
        let apis = self.apis_under_load(records, &found, &serving);
        for (record, name, role) in found {
            let key = record.key;
            if self.profiled.contains_key(&key) || self.skipped.contains(&key) {
                continue;
            }
            let profiled_api = match apis {
                UnderLoad::Any => true,
                UnderLoad::Serving => serves(record),
                UnderLoad::NotHere => false,
            };
            if role == ProcessRole::Api && !profiled_api {
                self.skipped.insert(key);
                continue;
            }
            let pid = key.pid;
            match Sampler::start(pid, self.profiling.rate_hz) {
                Ok(sampler) => {
                    self.profiled.insert(
                        key,
                        Profiled {
                            pid,
                            name,
                            role,
                            container: container_of(pid),
                            cwd: link(pid, "cwd"),
                            sampler,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(pid, "profiles: cannot start a sampling thread: {e}");
                    self.skipped.insert(key);
                }
            }
        }
    }
}

/// Which of the host's API processes the load goes to, from who listens on its port.
#[derive(Debug, Clone, Copy, PartialEq)]
enum UnderLoad {
    /// Any of them: no port known, nobody on this host's network listens on it (the API is on
    /// another machine or in a container's network), or a proxy does (nginx, docker-proxy in
    /// front of a container), whose upstream cannot be told.
    Any,
    /// Those serving the port (or started by the one that does).
    Serving,
    /// None: another program serves the port (the API is not one of these Python processes).
    NotHere,
}

impl State {
    fn apis_under_load(
        &self,
        records: &[Record],
        found: &[(&Record, String, ProcessRole)],
        serving: &HashSet<u32>,
    ) -> UnderLoad {
        if serving.is_empty() {
            return UnderLoad::Any;
        }
        let serves = |r: &Record| serving.contains(&r.key.pid) || serving.contains(&r.ppid);
        if found
            .iter()
            .any(|(r, _, role)| *role == ProcessRole::Api && serves(r))
        {
            return UnderLoad::Serving;
        }
        let proxied = records.iter().any(|r| {
            serving.contains(&r.key.pid)
                && (r.name == "docker-proxy"
                    || self.programs.stack_role(&r.name) == Some(ProcessRole::Proxy))
        });
        if proxied {
            UnderLoad::Any
        } else {
            UnderLoad::NotHere
        }
    }
}

/// The stack's API and worker processes that run Python, with the name and role of the
/// member they belong to: a process named in the role table, and its descendants that run
/// Python (uvicorn's `--workers` are `python -c ...` children of the `uvicorn` process).
fn stack_python<'a>(
    records: &'a [Record],
    programs: &Programs,
    own_pid: u32,
) -> Vec<(&'a Record, String, ProcessRole)> {
    let by_pid: HashMap<u32, &Record> = records.iter().map(|r| (r.key.pid, r)).collect();
    let member = |record: &Record| -> Option<(String, ProcessRole)> {
        let mut at = record;
        // A tree is shallow; the bound keeps a pid reused as its own ancestor from looping.
        for _ in 0..64 {
            if let Some(role) = programs.stack_role(&at.name)
                && matches!(role, ProcessRole::Api | ProcessRole::Worker)
            {
                return Some((at.name.clone(), role));
            }
            at = by_pid.get(&at.ppid)?;
        }
        None
    };
    records
        .iter()
        .filter(|r| r.key.pid != own_pid)
        .filter_map(|r| member(r).map(|(name, role)| (r, name, role)))
        .filter(|(r, _, _)| runs_python(r.key.pid))
        .collect()
}

/// Whether the process's program is a Python interpreter. When its executable cannot be read
/// (no rights), it is tried: py-spy will say whether it may read it.
fn runs_python(pid: u32) -> bool {
    link(pid, "exe").is_none_or(|exe| {
        let base = exe.rsplit('/').next().unwrap_or(&exe);
        base.starts_with("python") || base.starts_with("pypy")
    })
}

/// A `/proc/PID/` symbolic link's target (`cwd`, `exe`).
fn link(pid: u32, name: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/{name}"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The container a process runs in, from its cgroup (Docker's and containerd's layouts):
/// the id's first 12 characters, as `docker ps` shows it.
fn container_of(pid: u32) -> Option<String> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    container_in_cgroup(&cgroup)
}

fn container_in_cgroup(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.rsplit(':').next()?;
        path.split('/').find_map(|segment| {
            let id = segment
                .strip_prefix("docker-")
                .or_else(|| segment.strip_prefix("cri-containerd-"))
                .map_or(segment, |s| s.trim_end_matches(".scope"));
            (id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| id[..12].to_owned())
        })
    })
}

/// The tick's profile of one process from its sampler's counts.
fn profile(p: &Profiled, counts: Counts, top: usize) -> ProcessProfile {
    let mut threads: Vec<ThreadProfile> = counts
        .threads
        .into_iter()
        .map(|(id, t)| ThreadProfile {
            id,
            name: t.name.unwrap_or_default(),
            samples: t.samples,
            active: t.active,
            gil: t.gil,
        })
        .collect();
    threads.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.id.cmp(&b.id)));
    let mut stacks: Vec<(sampler::StackKey, u64)> = counts.stacks.into_iter().collect();
    stacks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.frames.cmp(&b.0.frames)));
    let left_out = stacks.iter().skip(top).map(|(_, n)| n).sum();
    let stacks = stacks
        .into_iter()
        .take(top)
        .map(|(key, count)| StackCount {
            thread: key.thread,
            active: key.active,
            gil: key.gil,
            count,
            frames: key
                .frames
                .into_iter()
                .map(|(function, path, line)| {
                    let (file, library) = paths::shorten(&path, p.cwd.as_deref());
                    ProfileFrame {
                        function,
                        file,
                        line: u32::try_from(line).unwrap_or(0),
                        library,
                    }
                })
                .collect(),
        })
        .collect();
    ProcessProfile {
        pid: p.pid,
        name: p.name.clone(),
        role: p.role,
        container: p.container.clone(),
        samples: counts.rounds,
        threads,
        stacks,
        stacks_left_out: left_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_is_named_from_its_cgroup() {
        let id = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c";
        let v2 = format!("0::/system.slice/docker-{id}.scope\n");
        assert_eq!(container_in_cgroup(&v2).as_deref(), Some("4f1c2d3e4f5a"));
        let v1 = format!("12:cpu,cpuacct:/docker/{id}\n1:name=systemd:/docker/{id}\n");
        assert_eq!(container_in_cgroup(&v1).as_deref(), Some("4f1c2d3e4f5a"));
        assert_eq!(
            container_in_cgroup("0::/user.slice/session-3.scope\n"),
            None
        );
    }

    fn record(pid: u32, ppid: u32, name: &str) -> Record {
        Record {
            key: Key { pid, start: 1 },
            ppid,
            name: name.into(),
            total: 0,
            rss_bytes: 0,
        }
    }

    #[test]
    fn the_api_and_workers_and_their_children_are_found_but_nothing_else() {
        // Pids that do not exist on this host: their executable cannot be read, so they are
        // kept as candidates (py-spy would then say).
        let records = [
            record(4_000_001, 1, "uvicorn"),
            record(4_000_002, 4_000_001, "python3.11"),
            record(4_000_003, 1, "celery"),
            record(4_000_004, 4_000_003, "celery"),
            record(4_000_005, 1, "postgres"),
            record(4_000_006, 1, "bash"),
            record(4_000_007, 4_000_006, "python3"),
        ];
        let found: Vec<(u32, String, ProcessRole)> =
            stack_python(&records, &Programs::default(), 0)
                .into_iter()
                .map(|(r, name, role)| (r.key.pid, name, role))
                .collect();
        assert_eq!(
            found,
            [
                (4_000_001, "uvicorn".into(), ProcessRole::Api),
                (4_000_002, "uvicorn".into(), ProcessRole::Api),
                (4_000_003, "celery".into(), ProcessRole::Worker),
                (4_000_004, "celery".into(), ProcessRole::Worker),
            ]
        );
    }
}
