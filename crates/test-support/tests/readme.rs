//! The README stands alone: every path it names is in the repository (or under a git-ignored
//! folder that a command of the README fills), and every command of its code blocks starts with
//! a program a fresh clone has: one the workspace builds (`target/release/<bin>`), a script of
//! the repository, a shell builtin or common tool, or one that `scripts/test.sh` or
//! `scripts/demo.sh` installs. A README that points outside the repository (`../shared/...`) or
//! runs a bare `loadgen` that nothing put on PATH fails here, naming the line.

// A test is a scenario read top to bottom; the 100-line bar is for the product's functions.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Builtins and common tools a reader has (or that the prerequisites install), used as such.
const COMMON_PROGRAMS: &[&str] = &[
    "cd", "mkdir", "export", "eval", "echo", "kill", "head", "cat", "cp", "tar", "ls", "chmod",
    "sh", "cargo", "rustup", "docker", "curl", "python3", "git",
];

/// Extensions of the files a README names (media types such as `video/mp4` are not paths).
const FILE_EXTENSIONS: &[&str] = &[
    "rs", "md", "sh", "toml", "yml", "yaml", "py", "png", "json", "jsonl", "csv", "html", "xml",
    "lock", "txt",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(root: &Path, name: &str) -> String {
    std::fs::read_to_string(root.join(name))
        .unwrap_or_else(|e| panic!("cannot read {name} at the repository root: {e}"))
}

/// What the README says, split by where it says it.
struct Readme {
    /// Prose lines, with their line numbers.
    prose: Vec<(usize, String)>,
    /// Commands of ```sh blocks and the `$ ` lines of ```console blocks (continuations joined).
    commands: Vec<(usize, String)>,
}

fn parse_readme(text: &str) -> Readme {
    let mut readme = Readme {
        prose: Vec::new(),
        commands: Vec::new(),
    };
    let mut fence: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(rest.trim().to_owned()),
            };
            pending = None;
            continue;
        }
        let Some(language) = &fence else {
            readme.prose.push((number, line.to_owned()));
            continue;
        };
        let command_text = match (pending.take(), language.as_str()) {
            (Some((start, mut joined)), _) => {
                joined.push(' ');
                joined.push_str(line.trim());
                Some((start, joined))
            }
            (None, "sh" | "bash" | "shell") => {
                let trimmed = line.trim();
                (!trimmed.is_empty() && !trimmed.starts_with('#'))
                    .then(|| (number, trimmed.to_owned()))
            }
            (None, "console") => line
                .strip_prefix("$ ")
                .map(|command| (number, command.trim().to_owned())),
            _ => None,
        };
        if let Some((start, command)) = command_text {
            match command.strip_suffix('\\') {
                Some(head) => pending = Some((start, head.trim_end().to_owned())),
                None => readme.commands.push((start, command)),
            }
        }
    }
    readme
}

/// A shell line cut into simple commands (at `;`, `&&`, `||`, `|`, `&`), each as its words;
/// quotes and `$( )` keep their insides in one word, and a `#` comment ends the line.
fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let mut chars = line.chars().peekable();
    fn end_word(commands: &mut [Vec<String>], word: &mut String) {
        if !word.is_empty()
            && let Some(last) = commands.last_mut()
        {
            last.push(std::mem::take(word));
        }
    }
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) if c == q => {
                quote = None;
                word.push(c);
            }
            (Some(_), _) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.push(c);
            }
            (None, '$') if chars.peek() == Some(&'(') => {
                depth += 1;
                word.push(c);
            }
            (None, ')') if depth > 0 => {
                depth -= 1;
                word.push(c);
            }
            (None, _) if depth > 0 => word.push(c),
            (None, '#') if word.is_empty() => break,
            (None, ';' | '|') => {
                end_word(&mut commands, &mut word);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                commands.push(Vec::new());
            }
            // `2>&1` and `&>` are redirections, not separators.
            (None, '&') if word.ends_with('>') || chars.peek() == Some(&'>') => word.push(c),
            (None, '&') => {
                end_word(&mut commands, &mut word);
                if chars.peek() == Some(&'&') {
                    chars.next();
                }
                commands.push(Vec::new());
            }
            (None, _) if c.is_whitespace() => end_word(&mut commands, &mut word),
            (None, _) => word.push(c),
        }
    }
    end_word(&mut commands, &mut word);
    commands.retain(|words| !words.is_empty());
    commands
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// The binaries the workspace builds: each crate with a `src/main.rs`, by its package name.
fn workspace_binaries(root: &Path) -> BTreeSet<String> {
    let crates = std::fs::read_dir(root.join("crates")).expect("the repository has crates/");
    crates
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|dir| dir.join("src/main.rs").is_file())
        .filter_map(|dir| {
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
            manifest.lines().find_map(|line| {
                let value = line.trim().strip_prefix("name")?.trim_start();
                Some(value.strip_prefix('=')?.trim().trim_matches('"').to_owned())
            })
        })
        .collect()
}

/// The programs the two setup scripts install when missing: each is checked for with
/// `command -v NAME` before the script asks apt-get for its package.
fn installed_by_scripts(root: &Path) -> BTreeSet<String> {
    let mut programs = BTreeSet::new();
    for script in ["scripts/test.sh", "scripts/demo.sh"] {
        for piece in read(root, script).split("command -v ").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
                .collect();
            if !name.is_empty() {
                programs.insert(name);
            }
        }
    }
    programs
}

/// Why `program` (the first word of a simple command) is not one a fresh clone has, if so.
fn unknown_program(root: &Path, program: &str, context: &Context) -> Option<String> {
    if COMMON_PROGRAMS.contains(&program) || context.installed.contains(program) {
        return None;
    }
    // `$(scripts/locust-venv.sh)/bin/locust`: a program a repository script installs and names.
    if let Some((inner, _)) = program.strip_prefix("$(").and_then(|p| p.split_once(')')) {
        let script = inner.split_whitespace().next().unwrap_or_default();
        if script.starts_with("scripts/") && root.join(script).is_file() {
            return None;
        }
    }
    if let Some(binary) = program.strip_prefix("target/release/") {
        return (!context.binaries.contains(binary)).then(|| {
            format!(
                "`{program}`: the workspace builds no binary `{binary}` (it builds {:?})",
                context.binaries
            )
        });
    }
    if ["scripts/", "bench/", "docker/"]
        .iter()
        .any(|folder| program.starts_with(folder))
    {
        return (!root.join(program).is_file())
            .then(|| format!("`{program}`: no such script in the repository"));
    }
    Some(format!(
        "`{program}` is neither built by the workspace (write target/release/{program} after \
         `cargo build --release`), a script of the repository, a common tool, nor installed by \
         scripts/test.sh or scripts/demo.sh"
    ))
}

struct Context {
    binaries: BTreeSet<String>,
    installed: BTreeSet<String>,
    ignored: Vec<String>,
    top_folders: BTreeSet<String>,
}

/// The root .gitignore's entries, as paths relative to the root (`results`, `tests/fixtures`).
fn ignored_folders(root: &Path) -> Vec<String> {
    read(root, ".gitignore")
        .lines()
        .map(|line| line.trim().trim_matches('/').to_owned())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// The path `word` names in the repository, if it names one: `../` anything, a word under a
/// top-level folder of the repository, a folder (`docs/`), or a file with a known extension.
fn named_path(word: &str, context: &Context) -> Option<String> {
    let word = word
        .trim_start_matches(['"', '\'', '('])
        .trim_end_matches(['"', '\'', ')', ',', '.', ':', ';']);
    if word.starts_with("../") {
        return Some(word.to_owned());
    }
    if word.contains("://")
        || word.starts_with(['/', '~', '$', '-', '[', '<'])
        || !word.contains('/')
    {
        return None;
    }
    let first = word.split('/').next().unwrap_or_default();
    let extension = word
        .rsplit('/')
        .next()
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext);
    let looks_like_path = context.top_folders.contains(first)
        || word.ends_with('/')
        || extension.is_some_and(|ext| FILE_EXTENSIONS.contains(&ext));
    looks_like_path.then(|| word.to_owned())
}

/// Why `path` (named by the README) is not in the repository, if it is not.
fn missing_path(root: &Path, path: &str, context: &Context) -> Option<String> {
    if path.starts_with("../") {
        return Some(format!(
            "`{path}` is outside the repository: a clone does not have it"
        ));
    }
    let path = path.split(['#', '?']).next().unwrap_or_default();
    // Outputs: a git-ignored folder (or file) is made by the commands that write it.
    let relative = path.trim_end_matches('/');
    if context
        .ignored
        .iter()
        .any(|ignored| relative == ignored || relative.starts_with(&format!("{ignored}/")))
    {
        return None;
    }
    // A pattern (`diagnosis/<layer>.rs`, `{a,b}.rs`, `*.toml`): its fixed folder must exist.
    let fixed: Vec<&str> = path
        .split('/')
        .take_while(|part| !part.contains(['<', '{', '*', '[']))
        .collect();
    let checked = fixed.join("/");
    let exists = if fixed.len() < path.split('/').count() {
        root.join(&checked).is_dir()
    } else {
        root.join(&checked).exists()
    };
    (!exists).then(|| format!("`{path}` does not exist in the repository"))
}

/// Every backtick span and link target of a prose line.
fn prose_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    for (index, span) in line.split('`').enumerate() {
        if index % 2 == 1 {
            words.extend(span.split_whitespace().map(str::to_owned));
        }
    }
    for target in line.split("](").skip(1) {
        if let Some(end) = target.find(')') {
            words.push(target[..end].to_owned());
        }
    }
    words
}

fn problems(readme_text: &str, root: &Path) -> Vec<String> {
    let top_folders = std::fs::read_dir(root)
        .expect("the repository root is readable")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.') && name != "target")
        .collect();
    let context = Context {
        binaries: workspace_binaries(root),
        installed: installed_by_scripts(root),
        ignored: ignored_folders(root),
        top_folders,
    };
    let readme = parse_readme(readme_text);
    let mut found = Vec::new();
    for (number, line) in &readme.prose {
        for word in prose_words(line) {
            let is_link = line.contains(&format!("]({word})"));
            let path = if is_link && !word.contains("://") && !word.starts_with('#') {
                Some(word.clone())
            } else {
                named_path(&word, &context)
            };
            if let Some(problem) = path.and_then(|p| missing_path(root, &p, &context)) {
                found.push(format!("README.md:{number}: {problem}"));
            }
        }
    }
    for (number, line) in &readme.commands {
        for words in simple_commands(line) {
            let mut rest = words.iter().skip_while(|word| is_assignment(word));
            let mut program = rest.next();
            if program.is_some_and(|p| p == "sudo") {
                program = rest.next();
                if program.is_none_or(|p| p != "apt-get") {
                    found.push(format!(
                        "README.md:{number}: `sudo` is for apt-get only: {line}"
                    ));
                }
                continue;
            }
            if let Some(problem) = program.and_then(|p| unknown_program(root, p, &context)) {
                found.push(format!("README.md:{number}: {problem}: {line}"));
            }
            // The program was judged above; its arguments may name paths too.
            for word in words.iter().filter(|word| Some(*word) != program) {
                let value = word.split_once('=').map_or(word.as_str(), |(_, v)| v);
                if let Some(problem) =
                    named_path(value, &context).and_then(|p| missing_path(root, &p, &context))
                {
                    found.push(format!("README.md:{number}: {problem}: {line}"));
                }
            }
        }
    }
    found
}

#[test]
fn every_path_and_command_of_the_readme_is_in_a_fresh_clone() {
    let root = repo_root();
    let readme = read(&root, "README.md");
    let found = problems(&readme, &root);
    assert!(
        found.is_empty(),
        "the README names {} thing(s) a fresh clone does not have:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_readme_has_commands_and_paths_to_check() {
    // The check above passes trivially on a README whose blocks it cannot read.
    let root = repo_root();
    let readme = parse_readme(&read(&root, "README.md"));
    let commands: Vec<&str> = readme.commands.iter().map(|(_, c)| c.as_str()).collect();
    assert!(
        commands.len() >= 10,
        "only {} commands found in the README's code blocks: {commands:?}",
        commands.len()
    );
    for expected in [
        "scripts/demo.sh",
        "scripts/test.sh",
        "target/release/loadgen",
    ] {
        assert!(
            commands.iter().any(|c| c.starts_with(expected)),
            "no README command starts with {expected}: {commands:?}"
        );
    }
}

#[test]
fn the_check_refuses_what_a_fresh_clone_lacks() {
    let root = repo_root();
    let bad = "See `../shared/DESIGN.md` and [the API](docs/no-such-page.md).\n\
               Layout: `crates/no-such-crate/src/lib.rs`.\n\
               ```console\n\
               $ loadgen --headless -u 1\n\
               $ target/release/no-such-binary\n\
               $ mkdir -p results && scripts/no-such.sh \\\n\
                   --flag\n\
               $ DATABASE_URL=x monitor --duration 5s\n\
               $ sudo rm -rf /\n\
               ```\n\
               ```\n\
               $ loadgen output lines are not commands\n\
               ```\n";
    let found = problems(bad, &root);
    let expected = [
        "README.md:1: `../shared/DESIGN.md` is outside",
        "README.md:1: `docs/no-such-page.md` does not exist",
        "README.md:2: `crates/no-such-crate/src/lib.rs` does not exist",
        "README.md:4: `loadgen` is neither built",
        "README.md:5: `target/release/no-such-binary`: the workspace builds no binary",
        "README.md:6: `scripts/no-such.sh`: no such script",
        "README.md:8: `monitor` is neither built",
        "README.md:9: `sudo` is for apt-get only",
    ];
    for prefix in expected {
        assert!(
            found.iter().any(|problem| problem.starts_with(prefix)),
            "expected a problem starting with {prefix:?}; found:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(
        found.len(),
        expected.len(),
        "found more than expected:\n{}",
        found.join("\n")
    );
    let good = "```sh\n\
                d=$(mktemp -d); chmod 755 $d; eval \"$(scripts/services.sh start $d)\"\n\
                target/release/loadgen --headless --csv results/run 2>&1 | head -3 &\n\
                sudo apt-get install -y ffmpeg\n\
                ```\n\
                Outputs land in `results/run_stats.csv`; see [the map](ARCHITECTURE.md).\n";
    let found = problems(good, &root);
    assert!(
        found.is_empty(),
        "a README a fresh clone can follow was refused:\n{}",
        found.join("\n")
    );
}
