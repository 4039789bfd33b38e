//! The `profiles` source on a real Python process: uvicorn serving the fixture app
//! (`tests/fixtures/profiled`), whose `cruncher` thread burns CPU in `crunch` and whose
//! `napper` thread sleeps in `nap`. The samples must name each function with its file and
//! line, on its thread, with the on-CPU and GIL flags each deserves.

use std::time::Duration;

use monitor::sample::Values;
use monitor::sample::profile::{ProcessProfile, StackCount};
use monitor::source::Source;
use monitor::sources::profiles::{Profiles, Profiling};
use test_support::Detached;

use super::{BURNING, read_until, repo};

/// The fixture's folder (the app's working folder, so its files show as `app/work.py`).
fn fixture() -> std::path::PathBuf {
    repo().join("crates/monitor/tests/fixtures/profiled")
}

/// The venv's Python (`scripts/python-venv.sh`, or `TESTBED_PY_VENV` when the caller made it).
pub fn venv_python() -> String {
    let venv = std::env::var("TESTBED_PY_VENV").unwrap_or_else(|_| {
        let out = std::process::Command::new(repo().join("scripts/python-venv.sh"))
            .output()
            .unwrap();
        assert!(out.status.success(), "python-venv.sh: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    });
    format!("{venv}/bin/python")
}

/// uvicorn serving the fixture on a port of its own, from the fixture's folder.
pub fn start_fixture(extra_env: &str) -> Detached {
    let script = format!(r#"cd "$0" && {extra_env} exec "$1" -m uvicorn app.main:app --port 0"#);
    Detached::start(
        "sh",
        &["-c", &script, fixture().to_str().unwrap(), &venv_python()],
    )
}

/// The line in `app/work.py` that holds `marker`.
fn line_of(marker: &str) -> u32 {
    let text = std::fs::read_to_string(fixture().join("app/work.py")).unwrap();
    let at = text.lines().position(|l| l.contains(marker)).unwrap();
    u32::try_from(at + 1).unwrap()
}

/// The process's samples of `function`'s innermost frame in `app/work.py`.
fn stacks_in<'a>(p: &'a ProcessProfile, function: &str) -> Vec<&'a StackCount> {
    p.stacks
        .iter()
        .filter(|s| {
            s.frames
                .first()
                .is_some_and(|f| f.function == function || f.function == "sleep")
                && s.frames
                    .iter()
                    .any(|f| f.function == function && f.file == "app/work.py" && !f.library)
        })
        .collect()
}

#[tokio::test]
async fn a_python_process_is_profiled_down_to_the_function_file_and_line() {
    let _turn = BURNING.lock().await;
    let app = start_fixture("");
    let mut source = Profiles::new(Profiling::default());
    let pid = app.pid;
    let ours = |v: &Values| -> Option<ProcessProfile> {
        let Values::Profiles(p) = v else { return None };
        p.processes.iter().find(|p| p.pid == pid).cloned()
    };
    // Sampling starts on the first reading that sees the process, and the app starts its
    // threads once uvicorn has imported it: wait for both functions to show.
    let values = read_until(&mut source, Duration::from_secs(60), |v| {
        ours(v).is_some_and(|p| {
            !stacks_in(&p, "crunch").is_empty() && !stacks_in(&p, "nap").is_empty()
        })
    })
    .await;
    // One whole second of samples, now that everything runs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let values = {
        let next = source.read().await.unwrap();
        if ours(&next).is_some() { next } else { values }
    };
    let json = serde_json::to_value(&values).unwrap();
    let p = ours(&values).unwrap_or_else(|| panic!("uvicorn {} not profiled: {json}", app.pid));
    let said = serde_json::to_string_pretty(&p).unwrap();
    assert_eq!(
        (p.name.as_str(), p.role),
        ("uvicorn", monitor::sample::ProcessRole::Api),
        "{said}"
    );
    assert!(p.samples >= 20, "{} rounds in a second: {said}", p.samples);

    let thread = |name: &str| {
        p.threads
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no thread {name}: {said}"))
    };
    let (cruncher, napper) = (thread("cruncher"), thread("napper"));
    println!(
        "{} rounds; cruncher {}/{} active, {} GIL; napper {}/{} active, {} GIL",
        p.samples,
        cruncher.active,
        cruncher.samples,
        cruncher.gil,
        napper.active,
        napper.samples,
        napper.gil
    );
    // The cruncher is on CPU nearly always (a busy 2-core host may steal some), the napper
    // never; the GIL is held by the cruncher far more than by the napper.
    assert!(cruncher.active * 10 >= cruncher.samples * 6, "{said}");
    assert!(napper.active * 10 <= napper.samples, "{said}");
    assert!(cruncher.gil > napper.gil * 5, "{said}");

    let hot = stacks_in(&p, "crunch");
    let crunch_line = line_of("# crunch: hot loop");
    assert!(
        hot.iter().all(|s| s.thread == cruncher.id),
        "crunch seen off its thread: {said}"
    );
    let leaf = &hot[0].frames[0];
    assert!(
        leaf.function == "crunch" && (crunch_line..=crunch_line + 1).contains(&leaf.line),
        "crunch's innermost line {} is not the loop at {crunch_line}: {said}",
        leaf.line
    );
    assert!(hot.iter().any(|s| s.active && s.gil), "{said}");

    let asleep = stacks_in(&p, "nap");
    let nap_line = line_of("# nap: sleeping line");
    assert!(
        asleep.iter().all(|s| s.thread == napper.id && !s.gil),
        "{said}"
    );
    let nap = asleep[0]
        .frames
        .iter()
        .find(|f| f.function == "nap")
        .unwrap();
    assert_eq!(nap.line, nap_line, "{said}");

    // Library frames are marked and shortened: uvicorn's own, below site-packages.
    let main = thread("MainThread");
    let loop_frames: Vec<_> = p
        .stacks
        .iter()
        .filter(|s| s.thread == main.id)
        .flat_map(|s| &s.frames)
        .collect();
    assert!(
        loop_frames
            .iter()
            .any(|f| f.library && f.file.starts_with("uvicorn/")),
        "{said}"
    );
    // Only code and counts: every field is one the sample model allows.
    let as_in_a_tick = serde_json::json!({ "sources": { "profiles": { "values": json } } });
    assert_eq!(
        monitor::sample::fields_not_allowed(&as_in_a_tick),
        Vec::<String>::new()
    );
    // A process that ends mid-run is dropped quietly: the next readings succeed without it.
    drop(app);
    let gone = read_until(
        &mut source,
        Duration::from_secs(10),
        |v| matches!(v, Values::Profiles(p) if p.processes.iter().all(|p| p.pid != pid)),
    )
    .await;
    assert!(ours(&gone).is_none(), "{gone:?}");
    assert!(source.notes().is_empty(), "{:?}", source.notes());
}

/// The monitor run as another user (nobody) than uvicorn's (root), without CAP_SYS_PTRACE:
/// the kernel refuses py-spy's reads. One note says so and how to grant the right; the run
/// goes on (the host is still sampled, every tick written).
#[tokio::test]
async fn without_ptrace_rights_one_note_says_so_and_the_run_goes_on() {
    let app = start_fixture("PROFILED_THREADS=0");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = dir.path().join("ticks.jsonl");
    let status = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_monitor"))
        .args([
            "--quiet",
            "--interval",
            "500ms",
            "--duration",
            "4s",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "monitor as nobody: {status}");
    let ticks: Vec<monitor::sample::Tick> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let notes: Vec<&String> = ticks
        .iter()
        .filter_map(|t| t.sources.get("profiles"))
        .flat_map(|r| &r.notes)
        .collect();
    let profiled = ticks.iter().any(|t| {
        matches!(
            t.sources.get("profiles").and_then(|r| r.values.as_ref()),
            Some(Values::Profiles(p)) if p.processes.iter().any(|p| p.pid == app.pid)
        )
    });
    drop(app);
    assert!(ticks.len() >= 4, "{} ticks", ticks.len());
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(
        notes[0].contains("CAP_SYS_PTRACE") && notes[0].contains("ptrace_scope"),
        "{}",
        notes[0]
    );
    assert!(!profiled, "uvicorn was profiled without the right to");
    assert!(
        ticks.iter().all(|t| t.sources.values().all(|r| r.up)),
        "a source went down"
    );
}

/// uvicorn in a container (busybox, with the host's Python and the venv mounted read-only),
/// profiled from the host through its host pid: labelled with its container, its files as the
/// container sees them, and its threads' on-CPU flags right although Python names them by the
/// container's thread ids.
#[tokio::test]
async fn a_containers_python_process_is_profiled_through_its_host_pid() {
    let _turn = BURNING.lock().await;
    let python = std::path::PathBuf::from(venv_python());
    let venv = python.parent().unwrap().parent().unwrap().to_owned();
    let real = std::fs::canonicalize(&python).unwrap();
    let prefix = real.parent().unwrap().parent().unwrap().to_owned();
    let mut args: Vec<String> = ["run", "-d", "--network", "none", "-w", "/app"]
        .map(str::to_owned)
        .to_vec();
    let mut mount = |from: &std::path::Path, to: &str| {
        if from.exists() {
            args.extend(["-v".to_owned(), format!("{}:{to}:ro", from.display())]);
        }
    };
    for system in ["/usr", "/lib", "/lib64"] {
        mount(std::path::Path::new(system), system);
    }
    mount(&prefix, &prefix.display().to_string());
    mount(&venv, &venv.display().to_string());
    mount(&fixture(), "/app");
    let image = test_support::busybox_image();
    args.extend([image.to_owned(), python.display().to_string()]);
    args.extend(["-m", "uvicorn", "app.main:app", "--port", "0"].map(str::to_owned));
    let output = std::process::Command::new("docker")
        .args(&args)
        .output()
        .unwrap();
    assert!(output.status.success(), "docker run: {output:?}");
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let _container = test_support::Container(id.clone());
    let short = id[..12].to_owned();

    let mut source = Profiles::new(Profiling::default());
    let ours = |v: &Values| -> Option<ProcessProfile> {
        let Values::Profiles(p) = v else { return None };
        p.processes
            .iter()
            .find(|p| p.container.as_deref() == Some(short.as_str()))
            .cloned()
    };
    let values = read_until(&mut source, Duration::from_secs(60), |v| {
        ours(v).is_some_and(|p| {
            !stacks_in(&p, "crunch").is_empty() && !stacks_in(&p, "nap").is_empty()
        })
    })
    .await;
    // A whole second of samples.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let next = source.read().await.unwrap();
    let values = if ours(&next).is_some() { next } else { values };
    let p = ours(&values).unwrap_or_else(|| panic!("container {short} not profiled: {values:?}"));
    let said = serde_json::to_string_pretty(&p).unwrap();
    assert_eq!(p.name, "uvicorn", "{said}");
    let thread = |name: &str| p.threads.iter().find(|t| t.name == name).cloned();
    let (cruncher, napper) = (thread("cruncher").unwrap(), thread("napper").unwrap());
    println!(
        "in container {short}: pid {}, {} rounds; cruncher {}/{} active, napper {}/{} active",
        p.pid, p.samples, cruncher.active, cruncher.samples, napper.active, napper.samples
    );
    assert!(p.samples >= 20, "{said}");
    assert!(cruncher.active * 10 >= cruncher.samples * 6, "{said}");
    assert!(napper.active * 10 <= napper.samples, "{said}");
    let hot = stacks_in(&p, "crunch");
    assert!(hot.iter().all(|s| s.thread == cruncher.id), "{said}");
}
