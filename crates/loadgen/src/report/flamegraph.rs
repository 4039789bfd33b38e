//! A flame graph of each profiled Python process over the whole run, drawn by inferno (the
//! flame-graph writer py-spy itself uses): one root per thread, a frame per function with its
//! file and line, widths in samples. Off-CPU samples are kept where application code waits (a
//! sync sleep on the event loop is the trouble), left out where only library code idles (an
//! event loop in `select`, a pool waiting for work), as `py-spy record` leaves idle out.

use monitor::sample::profile::{ProcessProfile, StackCount};

/// The collapsed stacks (`thread;outer;...;inner count`), inferno's input.
pub fn collapsed(p: &ProcessProfile) -> Vec<String> {
    p.stacks
        .iter()
        .filter(|s| worth_drawing(s))
        .map(|s| {
            let thread = p
                .thread(s.thread)
                .map(|t| t.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| format!("thread {}", s.thread));
            let mut line = clean(&thread);
            for f in s.frames.iter().rev() {
                line.push(';');
                line.push_str(&clean(&format!("{} ({}:{})", f.function, f.file, f.line)));
            }
            if !s.active {
                line.push_str(";[off CPU]");
            }
            format!("{line} {}", s.count)
        })
        .collect()
}

/// On CPU, or waiting inside application code (not the outermost frame: a script's
/// `<module>` that started the server is under every stack of its thread).
fn worth_drawing(s: &StackCount) -> bool {
    s.active
        || s.frames
            .iter()
            .take(s.frames.len().saturating_sub(1))
            .any(|f| !f.library)
}

/// A frame's label without the collapsed format's separators.
fn clean(label: &str) -> String {
    label.replace([';', '\n', '\r'], " ")
}

/// The SVG of `p`, titled with its name and pid; `None` when it has nothing to draw.
pub fn svg(p: &ProcessProfile) -> Option<String> {
    let lines = collapsed(p);
    if lines.is_empty() {
        return None;
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = format!("{} (pid {}), the whole run", p.name, p.pid);
    options.count_name = "samples".into();
    // The same profile gives the same picture (colours from names, not at random).
    options.hash = true;
    options.deterministic = true;
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut out)
        .ok()?;
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use monitor::sample::profile::{ProfileFrame, ThreadProfile};

    use super::*;

    fn frame(function: &str, file: &str, library: bool) -> ProfileFrame {
        ProfileFrame {
            function: function.into(),
            file: file.into(),
            line: 7,
            library,
        }
    }

    #[test]
    fn threads_root_the_stacks_and_an_idle_loop_is_left_out() {
        let entry = frame("<module>", "main.py", false);
        let stack = |active: bool, frames: Vec<ProfileFrame>, count: u64| StackCount {
            thread: 1,
            active,
            gil: active,
            count,
            frames,
        };
        let p = ProcessProfile {
            pid: 9,
            name: "uvicorn".into(),
            threads: vec![ThreadProfile {
                id: 1,
                name: "MainThread".into(),
                ..Default::default()
            }],
            stacks: vec![
                stack(
                    true,
                    vec![
                        frame("hash_password", "app/auth.py", false),
                        frame("run", "uvicorn/server.py", true),
                        entry.clone(),
                    ],
                    60,
                ),
                stack(
                    false,
                    vec![frame("select", "selectors.py", true), entry.clone()],
                    30,
                ),
                stack(
                    false,
                    vec![
                        frame("wait;sync", "app/files.py", false),
                        frame("run", "uvicorn/server.py", true),
                        entry,
                    ],
                    10,
                ),
            ],
            ..Default::default()
        };
        assert_eq!(
            collapsed(&p),
            [
                "MainThread;<module> (main.py:7);run (uvicorn/server.py:7);hash_password \
                 (app/auth.py:7) 60",
                "MainThread;<module> (main.py:7);run (uvicorn/server.py:7);wait sync \
                 (app/files.py:7);[off CPU] 10",
            ]
        );
        let svg = svg(&p).unwrap_or_default();
        assert!(
            svg.starts_with("<?xml") && svg.contains("hash_password"),
            "{svg}"
        );
        assert!(svg.contains("uvicorn (pid 9), the whole run"));
    }
}
