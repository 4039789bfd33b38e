//! The code behind the symptoms, from the Python profiles of the steady state: the API's event
//! loop thread busy (or blocked) in application code while requests queue behind it, and where
//! a busy worker's job time goes. Each names the innermost application frame (the function a
//! developer edits, with its file and line: library frames such as bcrypt's or the standard
//! library's are its callees), its caller, and whether it ran on CPU. An idle loop waiting in
//! `select` is no finding: no application frame is on its stack.

use std::collections::BTreeMap;

use monitor::sample::ProcessRole;
use monitor::sample::profile::{ProcessProfile, ProfileFrame, StackCount};

use super::{Evidence, Finding, Layer, Severity};

/// The share of the loop thread's samples one application function must hold to be named.
const LOOP_SHARE_PCT: f64 = 20.0;

/// The share of a worker's samples its application code must hold for the worker to be busy.
const WORKER_BUSY_PCT: f64 = 50.0;

/// Fewer samples than this say nothing (half a second at 100 Hz).
const MIN_SAMPLES: u64 = 50;

/// The API's event loop thread spent a large share of its samples in one application function
/// while the API fell behind: the requests queued behind that code.
/// Judged on the steady state while the API falls behind; else on the ramp-up while the
/// start-up requests (register, login) are costly: a handler that hashes on the loop shows
/// while the users sign in, which a run with a ramp keeps out of its steady state.
pub fn loop_blocked(e: &Evidence<'_>) -> Vec<Finding> {
    let steady = if e.strained() {
        hot_loop(&e.steady_profiles())
    } else {
        None
    };
    let (window, waited, (p, thread, hot)) = match steady {
        Some(found) => (
            "",
            format!(
                "while requests queued behind it (steady-state p95 {:.0} ms)",
                e.p95_ms()
            ),
            found,
        ),
        None if costly_startup(e) => match hot_loop(&e.ramp_profiles()) {
            Some(found) => (
                " while the users started (register, log in)",
                "while the other requests waited behind it".to_owned(),
                found,
            ),
            None => return Vec::new(),
        },
        None => return Vec::new(),
    };
    let p = &p;
    let thread_name = p
        .thread(thread)
        .map(|t| t.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("thread {thread}"));
    // On the ramp it fires only beside costly start-up requests, which it makes everyone wait
    // for: as grave as the start-up finding it explains.
    let severity = if hot.share_pct() >= 50.0 || !window.is_empty() {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let (title, action) = if hot.on_cpu_pct() >= 50.0 {
        (
            format!(
                "The event loop runs `{}` on its one thread",
                hot.frame.function
            ),
            "CPU work in an async handler holds the event loop, and every other request waits \
             behind it: run it in a thread pool (`await run_in_threadpool(...)`, \
             `loop.run_in_executor`), or make the handler a plain `def` so the framework runs \
             it off the loop",
        )
    } else {
        (
            format!("The event loop is blocked in `{}`", hot.frame.function),
            "A blocking call in an async handler (a sync sleep, a sync client, file I/O) stops \
             the event loop while it waits, and every other request waits behind it: use the \
             async form (`await asyncio.sleep`, an async client) or run it in a thread pool",
        )
    };
    vec![
        Finding::new(
            "profiles.loop_blocked",
            Layer::Api,
            severity,
            title,
            format!(
                "the event loop thread ({thread_name} of {} pid {}){window} spent {:.0} % of its \
                 {} samples {}, {waited}",
                p.name,
                p.pid,
                hot.share_pct(),
                hot.of,
                hot.describe(),
            ),
            action,
        )
        .causing(&[
            "host.one_core_saturated",
            "containers.cpu_saturated",
            "load.slow_endpoints",
            "load.over_capacity",
            "load.stuck_users",
            "load.plateau",
            "load.costly_startup",
        ]),
    ]
}

/// The API process whose event loop thread spent the largest share (at least
/// [`LOOP_SHARE_PCT`]) of its samples in one application function: the process, the thread and
/// the function.
fn hot_loop(profiles: &[ProcessProfile]) -> Option<(ProcessProfile, u64, Hot)> {
    profiles
        .iter()
        .filter(|p| p.role == ProcessRole::Api)
        .filter_map(|p| {
            let thread = loop_thread(p)?;
            let samples = p.thread(thread).map_or(0, |t| t.samples);
            let stacks = p.stacks.iter().filter(|s| s.thread == thread);
            let hot = Hot::of(stacks, samples)?;
            Some((p.clone(), thread, hot))
        })
        .max_by(|a, b| a.2.share_pct().total_cmp(&b.2.share_pct()))
        .filter(|(_, _, hot)| hot.share_pct() >= LOOP_SHARE_PCT)
}

/// Start-up requests averaging above the average target (as `load.costly_startup` judges).
fn costly_startup(e: &Evidence<'_>) -> bool {
    e.stats
        .endpoints
        .iter()
        .any(|(k, s)| k.phase == crate::stats::Phase::Startup && s.average_ms() > e.targets.avg_ms)
}

/// A worker busy in application code most of the time: the function where its job time goes,
/// the evidence the jobs findings (a queue that grows, jobs waiting) lack.
pub fn worker_hot(e: &Evidence<'_>) -> Vec<Finding> {
    let profiles = e.steady_profiles();
    let workers: Vec<&ProcessProfile> = profiles
        .iter()
        .filter(|p| p.role == ProcessRole::Worker)
        .collect();
    // Every worker process's samples: a prefork pool's children share the jobs.
    let rounds: u64 = workers.iter().map(|p| p.samples).sum();
    let Some(hot) = Hot::of(workers.iter().flat_map(|p| p.stacks.iter()), rounds) else {
        return Vec::new();
    };
    let busy: u64 = workers
        .iter()
        .flat_map(|p| &p.stacks)
        .filter(|s| application_frame(&s.frames).is_some())
        .map(|s| s.count)
        .sum();
    let busy_pct = busy as f64 * 100.0 / rounds.max(1) as f64;
    if busy_pct < WORKER_BUSY_PCT {
        return Vec::new();
    }
    let names: Vec<String> = workers
        .iter()
        .map(|p| format!("{} pid {}", p.name, p.pid))
        .collect();
    vec![
        Finding::new(
            "profiles.worker_hot",
            Layer::Jobs,
            Severity::Info,
            format!("The workers' job time goes to `{}`", hot.frame.function),
            format!(
                "the workers ({}) ran application code in {busy_pct:.0} % of their {rounds} \
                 samples; {:.0} % of them {}",
                names.join(", "),
                hot.share_pct(),
                hot.describe()
            ),
            "This function is where the jobs spend their time: make it cheaper, or add worker \
             processes (`--concurrency`) if the jobs queue",
        )
        .causing(&["jobs.queue_grows", "jobs.queueing"]),
    ]
}

/// The thread that runs the event loop: the one whose stacks pass through asyncio's loop, else
/// the main thread (uvloop's loop is native code, without Python frames).
fn loop_thread(p: &ProcessProfile) -> Option<u64> {
    p.stacks
        .iter()
        .find(|s| s.frames.iter().any(is_loop_frame))
        .map(|s| s.thread)
        .or_else(|| {
            p.threads
                .iter()
                .find(|t| t.name == "MainThread")
                .map(|t| t.id)
        })
}

fn is_loop_frame(f: &ProfileFrame) -> bool {
    f.library
        && f.file.ends_with("asyncio/base_events.py")
        && matches!(f.function.as_str(), "_run_once" | "run_forever")
}

/// The innermost application frame that library code called (the handler a framework or the
/// loop runs), by its index. A script's `<module>`, or a `main()` that starts the server, has
/// no library caller: it is the program's entry, not the work.
fn application_frame(frames: &[ProfileFrame]) -> Option<usize> {
    let at = frames.iter().position(|f| !f.library)?;
    let called_by_library = frames[at + 1..].iter().any(|f| f.library);
    (called_by_library && frames[at].function != "<module>").then_some(at)
}

/// The application function seen most, over some stacks.
#[derive(Debug, Clone)]
struct Hot {
    /// Its frame, at the line seen most.
    frame: ProfileFrame,
    /// Its caller in the application, if any.
    caller: Option<ProfileFrame>,
    /// The library function it was in, if any (bcrypt's, the standard library's).
    callee: Option<ProfileFrame>,
    /// Samples in it.
    samples: u64,
    /// Of those, on CPU.
    on_cpu: u64,
    /// Samples of the thread(s) in all.
    of: u64,
}

impl Hot {
    /// Over `stacks` of `of` samples in all; `None` without enough samples or application code.
    fn of<'a>(stacks: impl Iterator<Item = &'a StackCount>, of: u64) -> Option<Self> {
        if of < MIN_SAMPLES {
            return None;
        }
        // (function, file) → (samples, on CPU, by line, a stack of it).
        type Seen<'a> = (u64, u64, BTreeMap<u32, u64>, &'a StackCount, usize);
        let mut by_function: BTreeMap<(&str, &str), Seen<'a>> = BTreeMap::new();
        for s in stacks {
            let Some(at) = application_frame(&s.frames) else {
                continue;
            };
            let f = &s.frames[at];
            let seen = by_function
                .entry((f.function.as_str(), f.file.as_str()))
                .or_insert((0, 0, BTreeMap::new(), s, at));
            seen.0 += s.count;
            seen.1 += if s.active { s.count } else { 0 };
            *seen.2.entry(f.line).or_default() += s.count;
            if s.count > seen.3.count {
                (seen.3, seen.4) = (s, at);
            }
        }
        let (samples, on_cpu, lines, stack, at) = by_function
            .into_values()
            .max_by(|a, b| a.0.cmp(&b.0).then(b.3.frames.cmp(&a.3.frames)))?;
        let line = lines
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map_or(0, |(line, _)| *line);
        Some(Self {
            frame: ProfileFrame {
                line,
                ..stack.frames[at].clone()
            },
            caller: stack.frames[at + 1..].iter().find(|f| !f.library).cloned(),
            callee: at.checked_sub(1).map(|i| stack.frames[i].clone()),
            samples,
            on_cpu,
            of,
        })
    }

    fn share_pct(&self) -> f64 {
        self.samples as f64 * 100.0 / self.of.max(1) as f64
    }

    fn on_cpu_pct(&self) -> f64 {
        self.on_cpu as f64 * 100.0 / self.samples.max(1) as f64
    }

    /// `in `hash_password` (app/auth.py:21), called by `register` (app/routes.py:40), on CPU`.
    fn describe(&self) -> String {
        let f = &self.frame;
        let mut out = if self.on_cpu_pct() >= 50.0 {
            format!("in `{}` ({}:{})", f.function, f.file, f.line)
        } else {
            format!(
                "blocked, not on CPU, in `{}` ({}:{})",
                f.function, f.file, f.line
            )
        };
        if let Some(callee) = &self.callee {
            out.push_str(&format!(
                " inside the library's `{}` ({})",
                callee.function, callee.file
            ));
        }
        if let Some(caller) = &self.caller {
            out.push_str(&format!(
                ", called by `{}` ({}:{})",
                caller.function, caller.file, caller.line
            ));
        }
        out.push_str(&format!(
            "; on CPU in {:.0} % of those samples",
            self.on_cpu_pct()
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use monitor::sample::Values;
    use monitor::sample::profile::{ProfilesValues, ThreadProfile};

    use super::*;
    use crate::diagnosis::testing::{outcome, slow_second, ticks, with_evidence};

    fn app(function: &str, file: &str, line: u32) -> ProfileFrame {
        ProfileFrame {
            function: function.into(),
            file: file.into(),
            line,
            library: false,
        }
    }

    fn lib(function: &str, file: &str) -> ProfileFrame {
        ProfileFrame {
            function: function.into(),
            file: file.into(),
            line: 1,
            library: true,
        }
    }

    /// uvicorn's loop thread below the application: starlette, asyncio, uvicorn, and the
    /// script that started it (an application `<module>`).
    fn under_the_loop(mut inner: Vec<ProfileFrame>) -> Vec<ProfileFrame> {
        inner.extend([
            lib("run_endpoint_function", "fastapi/routing.py"),
            lib("_run", "asyncio/events.py"),
            lib("_run_once", "asyncio/base_events.py"),
            lib("run_forever", "asyncio/base_events.py"),
            lib("run", "uvicorn/server.py"),
            app("<module>", "main.py", 3),
        ]);
        inner
    }

    fn idle_loop() -> Vec<ProfileFrame> {
        let mut frames = vec![lib("select", "selectors.py")];
        frames.extend(under_the_loop(Vec::new()).into_iter().skip(2));
        frames
    }

    /// One second of the API's loop thread: `hot` samples of `frames` (on CPU or not), the
    /// rest idle in `select`.
    fn api_second(frames: &[ProfileFrame], hot: u64, active: bool) -> Values {
        let stacks = vec![
            StackCount {
                thread: 1,
                active,
                gil: active,
                count: hot,
                frames: frames.to_vec(),
            },
            StackCount {
                thread: 1,
                active: false,
                gil: false,
                count: 100 - hot,
                frames: idle_loop(),
            },
        ];
        Values::Profiles(ProfilesValues {
            processes: vec![ProcessProfile {
                pid: 42,
                name: "uvicorn".into(),
                role: ProcessRole::Api,
                samples: 100,
                threads: vec![ThreadProfile {
                    id: 1,
                    name: "MainThread".into(),
                    samples: 100,
                    active: if active { hot } else { 0 },
                    gil: if active { hot } else { 0 },
                }],
                stacks,
                ..Default::default()
            }],
        })
    }

    /// A slow run (p95 over its target) of 10 seconds.
    fn slow_run() -> crate::engine::RunOutcome {
        let mut run = outcome(&[10; 10], &[20; 10], 50, &[5.0; 10]);
        for at in 0..10 {
            slow_second(&mut run, at, 10, 2_000);
        }
        run
    }

    fn hashing() -> Vec<ProfileFrame> {
        under_the_loop(vec![
            app("hash_password", "app/auth.py", 21),
            app("register", "app/routes.py", 40),
        ])
    }

    #[test]
    fn a_loop_busy_in_application_code_names_the_function_its_line_and_caller() {
        let backend = ticks(10, |_| vec![("profiles", api_second(&hashing(), 61, true))]);
        let found = with_evidence(&slow_run(), &backend, loop_blocked);
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.severity, Severity::Critical);
        assert!(
            f.evidence.contains(
                "spent 61 % of its 1000 samples in `hash_password` (app/auth.py:21), called by \
                 `register` (app/routes.py:40)"
            ),
            "{}",
            f.evidence
        );
        assert!(f.cause_of.contains(&"host.one_core_saturated"));
    }

    #[test]
    fn hashing_on_the_loop_while_the_users_sign_in_is_named_from_the_ramp() {
        // Five seconds of ramp-up with the loop hashing the logins, then a fast steady state
        // with an idle loop: judged on the ramp, since the start-up requests were costly.
        let mut run = outcome(&[2, 4, 6, 8, 10, 10, 10, 10, 10, 10], &[20; 10], 10, &[]);
        let login = crate::diagnosis::testing::login(&mut run);
        for _ in 0..20 {
            login.record(900_000, 10, Some(200), false);
        }
        let backend = ticks(10, |i| {
            let hot = if i < 4 { 80 } else { 0 };
            vec![("profiles", api_second(&hashing(), hot, true))]
        });
        let found = with_evidence(&run, &backend, loop_blocked);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Critical);
        assert!(
            found[0].evidence.contains(
                "(MainThread of uvicorn pid 42) while the users started (register, log in) \
                 spent 80 % of its 300 samples in `hash_password` (app/auth.py:21)"
            ),
            "{}",
            found[0].evidence
        );
        // Cheap start-up requests: the ramp is not judged.
        let mut cheap = outcome(&[2, 4, 6, 8, 10, 10, 10, 10, 10, 10], &[20; 10], 10, &[]);
        crate::diagnosis::testing::login(&mut cheap).record(20_000, 10, Some(200), false);
        assert!(with_evidence(&cheap, &backend, loop_blocked).is_empty());
    }

    #[test]
    fn a_sync_sleep_on_the_loop_is_blocked_not_on_cpu() {
        let sleeping = under_the_loop(vec![
            lib("sleep", "time.py"),
            app("list_files", "app/files.py", 40),
        ]);
        let backend = ticks(10, |_| vec![("profiles", api_second(&sleeping, 45, false))]);
        let found = with_evidence(&slow_run(), &backend, loop_blocked);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(
            found[0].evidence.contains(
                "blocked, not on CPU, in `list_files` (app/files.py:40) inside the library's \
                 `sleep` (time.py)"
            ),
            "{}",
            found[0].evidence
        );
    }

    #[test]
    fn an_idle_loop_or_a_fast_api_blames_no_code() {
        // Idle: only the loop's `select` and the script's `<module>` below it.
        let backend = ticks(10, |_| {
            vec![("profiles", api_second(&idle_loop(), 90, false))]
        });
        assert!(with_evidence(&slow_run(), &backend, loop_blocked).is_empty());
        // Busy in the application, but the API kept up: nothing queued behind it.
        let fast = outcome(&[10; 10], &[20; 10], 5, &[5.0; 10]);
        let backend = ticks(10, |_| vec![("profiles", api_second(&hashing(), 61, true))]);
        assert!(with_evidence(&fast, &backend, loop_blocked).is_empty());
        // A small share of the loop's samples is no finding.
        let backend = ticks(10, |_| vec![("profiles", api_second(&hashing(), 5, true))]);
        assert!(with_evidence(&slow_run(), &backend, loop_blocked).is_empty());
    }

    #[test]
    fn a_busy_worker_names_where_its_job_time_goes() {
        let job = vec![
            app("render", "app/tasks.py", 12),
            app("process_video", "app/tasks.py", 30),
            lib("__call__", "celery/app/trace.py"),
            app("<module>", "/venv/bin/celery", 8),
        ];
        let worker = |count: u64| {
            let mut second = api_second(&job, count, true);
            if let Values::Profiles(p) = &mut second {
                p.processes[0].role = ProcessRole::Worker;
                p.processes[0].name = "celery".into();
            }
            second
        };
        let backend = ticks(10, |_| vec![("profiles", worker(80))]);
        let found = with_evidence(&slow_run(), &backend, worker_hot);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0]
                .evidence
                .contains("in `render` (app/tasks.py:12), called by `process_video`"),
            "{}",
            found[0].evidence
        );
        // A worker mostly idle is no finding.
        let backend = ticks(10, |_| vec![("profiles", worker(10))]);
        assert!(with_evidence(&slow_run(), &backend, worker_hot).is_empty());
    }
}
