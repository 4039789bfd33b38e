//! What the `profiles` source records of the Python processes it samples: per process and tick,
//! the threads (samples, on CPU, holding the GIL) and the stacks seen, counted, as function,
//! file and line. Never a local variable, an argument or a command line: a frame is code, and
//! code is what a developer edits.

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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
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
