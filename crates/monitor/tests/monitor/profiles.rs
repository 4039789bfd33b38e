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
    let ours = |v: &Values| -> Option<ProcessProfile> {
        let Values::Profiles(p) = v else { return None };
        p.processes.iter().find(|p| p.pid == app.pid).cloned()
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
    drop(app);
}
