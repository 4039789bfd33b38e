//! What the `profiles` source records of the Python processes it samples: per process and tick,
//! the threads (samples, on CPU, holding the GIL) and the stacks seen, counted, as function,
//! file and line. Never a local variable, an argument or a command line: a frame is code, and
//! code is what a developer edits.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::ProcessRole;

/// The profiled processes in one tick.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProfilesValues {
    /// One per Python process of the API or of the workers.
    #[serde(default)]
    pub processes: Vec<ProcessProfile>,
}

/// One Python process's samples during one tick.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcessProfile {
    /// Its id on the monitor's host (a container's process by its host pid).
    pub pid: u32,
    /// As the host source names it (`uvicorn`, `celery`).
    pub name: String,
    /// API or worker.
    pub role: ProcessRole,
    /// The container it runs in, if any (the engine's name, or the id's first 12 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Sampling rounds taken during the tick (each sees every thread once).
    pub samples: u64,
    /// Its threads, the most sampled first.
    #[serde(default)]
    pub threads: Vec<ThreadProfile>,
    /// The stacks seen, the most counted first, at most the source's limit per tick.
    #[serde(default)]
    pub stacks: Vec<StackCount>,
    /// Samples whose stacks were left out by that limit.
    #[serde(default)]
    pub stacks_left_out: u64,
}

/// One thread's share of a process's samples.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThreadProfile {
    /// The OS thread id (the key [`StackCount::thread`] names).
    pub id: u64,
    /// Python's name for it (`MainThread`, `ThreadPoolExecutor-0_0`), empty when unknown.
    pub name: String,
    /// Samples of this thread.
    pub samples: u64,
    /// Of those, on CPU.
    pub active: u64,
    /// Of those, holding the GIL.
    pub gil: u64,
}

/// One stack of one thread, and how often it was seen in one state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StackCount {
    /// The OS thread id.
    pub thread: u64,
    /// On CPU.
    pub active: bool,
    /// Holding the GIL.
    pub gil: bool,
    /// Samples.
    pub count: u64,
    /// The frames, innermost first (as py-spy gives them).
    pub frames: Vec<ProfileFrame>,
}

/// One frame: code, never data.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileFrame {
    /// The function.
    pub function: String,
    /// The file as a developer knows it: the application's path relative to the process's
    /// working folder, a library's below its `site-packages` or the standard library's folder.
    pub file: String,
    /// The line being run.
    pub line: u32,
    /// Library code (site-packages, the standard library, frozen modules): the callee of the
    /// application, not what the developer edits.
    #[serde(default)]
    pub library: bool,
}

impl ProfileFrame {
    /// `hash_password (app/auth.py:21)`.
    pub fn describe(&self) -> String {
        format!("{} ({}:{})", self.function, self.file, self.line)
    }
}

impl ProcessProfile {
    /// The thread named `id`, if it was sampled.
    pub fn thread(&self, id: u64) -> Option<&ThreadProfile> {
        self.threads.iter().find(|t| t.id == id)
    }
}

/// The profiles of several ticks merged per process (by pid and name): samples, threads and
/// stacks summed, the most seen first. What a run's findings and flame graphs read.
pub fn merge<'a>(profiles: impl IntoIterator<Item = &'a ProcessProfile>) -> Vec<ProcessProfile> {
    type StackKey = (u64, bool, bool, Vec<ProfileFrame>);
    let mut merged: Vec<(ProcessProfile, HashMap<StackKey, u64>)> = Vec::new();
    for p in profiles {
        let at = match merged
            .iter()
            .position(|(m, _)| m.pid == p.pid && m.name == p.name)
        {
            Some(at) => at,
            None => {
                let first = ProcessProfile {
                    threads: Vec::new(),
                    stacks: Vec::new(),
                    samples: 0,
                    stacks_left_out: 0,
                    ..p.clone()
                };
                merged.push((first, HashMap::new()));
                merged.len() - 1
            }
        };
        let (into, stacks) = &mut merged[at];
        into.samples += p.samples;
        into.stacks_left_out += p.stacks_left_out;
        for t in &p.threads {
            match into.threads.iter_mut().find(|m| m.id == t.id) {
                Some(m) => {
                    m.samples += t.samples;
                    m.active += t.active;
                    m.gil += t.gil;
                    if m.name.is_empty() {
                        m.name.clone_from(&t.name);
                    }
                }
                None => into.threads.push(t.clone()),
            }
        }
        for s in &p.stacks {
            *stacks
                .entry((s.thread, s.active, s.gil, s.frames.clone()))
                .or_default() += s.count;
        }
    }
    merged
        .into_iter()
        .map(|(mut p, stacks)| {
            p.threads
                .sort_by(|a, b| b.samples.cmp(&a.samples).then(a.id.cmp(&b.id)));
            p.stacks = stacks
                .into_iter()
                .map(|((thread, active, gil, frames), count)| StackCount {
                    thread,
                    active,
                    gil,
                    count,
                    frames,
                })
                .collect();
            p.stacks.sort_by(|a, b| {
                b.count
                    .cmp(&a.count)
                    .then_with(|| a.frames.len().cmp(&b.frames.len()))
                    .then_with(|| a.thread.cmp(&b.thread))
            });
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str) -> ProfileFrame {
        ProfileFrame {
            function: function.into(),
            file: "app/x.py".into(),
            line: 1,
            library: false,
        }
    }

    fn tick(samples: u64, count: u64) -> ProcessProfile {
        ProcessProfile {
            pid: 7,
            name: "uvicorn".into(),
            samples,
            threads: vec![ThreadProfile {
                id: 1,
                name: "MainThread".into(),
                samples,
                active: count,
                gil: count,
            }],
            stacks: vec![StackCount {
                thread: 1,
                active: true,
                gil: true,
                count,
                frames: vec![frame("hot")],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn ticks_of_one_process_merge_into_one_profile() {
        let other = ProcessProfile {
            pid: 8,
            ..tick(5, 5)
        };
        let merged = merge(&[tick(100, 60), other, tick(100, 40)]);
        assert_eq!(merged.len(), 2);
        let p = &merged[0];
        assert_eq!((p.pid, p.samples), (7, 200));
        assert_eq!((p.threads[0].samples, p.threads[0].active), (200, 100));
        assert_eq!(p.stacks.len(), 1);
        assert_eq!(p.stacks[0].count, 100);
        assert_eq!(p.stacks[0].frames[0].describe(), "hot (app/x.py:1)");
    }
}
