//! `ARCHITECTURE.md` names only paths that exist (issue 24): every `crates/...`, `scripts/...`,
//! `bench/...` and `docs/...` path it writes anywhere, and every backquoted file or folder name
//! of its tables, read from the folder the table is about (`runner.rs` in the table under
//! `crates/loadgen/src/` is `crates/loadgen/src/runner.rs`) or from the folder its row names
//! (`response.rs` in the `http/` row is `http/response.rs`). A file moved or renamed without
//! the map following fails here, with every path that is missing.
//!
//! It reads files only, so it is its own test binary and needs no services.

// A test is a scenario read top to bottom; the 100-line bar is for the product's functions.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};

/// The folders whose paths the document writes from the repository's root.
const ROOT_FOLDERS: [&str; 4] = ["crates/", "scripts/", "bench/", "docs/"];

/// Extensions of the names in tables that are files of the repository (`test_video.mp4` and
/// `manifest.json` are files the tools make, not files of the repository).
const SOURCE_EXTENSIONS: [&str; 6] = ["rs", "md", "sh", "toml", "yml", "yaml"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path the document names, where, and how it was read.
#[derive(Debug)]
struct Named {
    line: usize,
    /// The path from the repository's root.
    path: String,
    /// For a table's name: the name as written, read from another folder too if it is there.
    written: Option<String>,
    /// Other places the table's name may be read from (the table's folder, its row's folder).
    alternatives: Vec<String>,
}

/// Every backquoted span of `line`.
fn spans(line: &str) -> impl Iterator<Item = &str> {
    line.split('`').skip(1).step_by(2)
}

/// The root-relative paths of `line`: words starting with one of [`ROOT_FOLDERS`].
fn root_paths(line: &str) -> Vec<String> {
    line.split(|c: char| c.is_whitespace() || "`()[],\"'".contains(c))
        .map(|word| word.trim_end_matches(['.', ':', ';']))
        .filter(|word| is_from_root(word))
        .map(str::to_owned)
        .collect()
}

/// Whether a backquoted span of a table is a file or folder name: no spaces or code, and a
/// folder (`http/`) or a file with one of [`SOURCE_EXTENSIONS`].
fn is_table_path(span: &str) -> bool {
    if span.is_empty()
        || span.contains(|c: char| c.is_whitespace() || "(){}<>*=:$".contains(c))
        || span.starts_with(['-', '.', '/'])
    {
        return false;
    }
    span.ends_with('/')
        || span
            .rsplit_once('.')
            .is_some_and(|(_, ext)| SOURCE_EXTENSIONS.contains(&ext))
}

fn is_from_root(path: &str) -> bool {
    ROOT_FOLDERS.iter().any(|folder| path.starts_with(folder))
}

/// `name` read from `folder`, unless it is written from the root.
fn in_folder(folder: &str, name: &str) -> String {
    if is_from_root(name) {
        name.to_owned()
    } else {
        join(folder, name)
    }
}

fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{}/{name}", folder.trim_end_matches('/'))
    }
}

/// Every path `text` names, with its line. A table's folder is the last backquoted folder
/// (`.../`) written before it, since the table before; the root when there is none.
fn named_paths(text: &str) -> Vec<Named> {
    let mut named = Vec::new();
    let mut folder = String::new();
    let mut in_table = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        for path in root_paths(line) {
            named.push(Named {
                line: number,
                path,
                written: None,
                alternatives: Vec::new(),
            });
        }
        let is_row = line.trim_start().starts_with('|');
        if !is_row {
            if in_table {
                folder.clear();
            }
            in_table = false;
            if let Some(last) = spans(line).filter(|s| s.ends_with('/')).last() {
                folder = last.to_owned();
            }
            continue;
        }
        in_table = true;
        let names: Vec<&str> = spans(line).filter(|s| is_table_path(s)).collect();
        // The folder the row is about (`http/`, `scripts/`), read from the table's folder.
        let row_folder = names
            .iter()
            .find(|s| s.ends_with('/'))
            .map(|s| in_folder(&folder, s));
        // Paths from the root were read above.
        for name in names.into_iter().filter(|s| !is_from_root(s)) {
            let in_table_folder = join(&folder, name);
            let in_row_folder = row_folder
                .as_ref()
                .filter(|row| **row != in_table_folder)
                .map(|row| join(row, name));
            named.push(Named {
                line: number,
                path: in_row_folder
                    .clone()
                    .unwrap_or_else(|| in_table_folder.clone()),
                written: Some(name.to_owned()),
                alternatives: in_row_folder.map(|_| in_table_folder).into_iter().collect(),
            });
        }
    }
    named
}

/// The paths of `text` missing under `root`, one line each, as `ARCHITECTURE.md:LINE: ...`.
fn missing(text: &str, root: &Path) -> Vec<String> {
    named_paths(text)
        .into_iter()
        .filter(|n| {
            !std::iter::once(&n.path)
                .chain(&n.alternatives)
                .any(|p| exists(root, p))
        })
        .map(|n| match &n.written {
            None => format!("ARCHITECTURE.md:{}: `{}`", n.line, n.path),
            Some(written) => format!(
                "ARCHITECTURE.md:{}: `{written}` of a table, not found as {}",
                n.line,
                std::iter::once(&n.path)
                    .chain(&n.alternatives)
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        })
        .collect()
}

/// Whether `path` is in the repository; for a pattern (`crates/*/tests/`,
/// `diagnosis/<layer>.rs`), whether the folder before its first wildcard is.
fn exists(root: &Path, path: &str) -> bool {
    let fixed: Vec<&str> = path
        .split('/')
        .take_while(|part| !part.contains(['*', '{', '<']))
        .collect();
    if fixed.len() < path.trim_end_matches('/').split('/').count() {
        root.join(fixed.join("/")).is_dir()
    } else {
        root.join(path).exists()
    }
}

fn architecture() -> String {
    let path = repo_root().join("ARCHITECTURE.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_path_architecture_md_names_exists() {
    let found = missing(&architecture(), &repo_root());
    assert!(
        found.is_empty(),
        "ARCHITECTURE.md names {} path(s) that do not exist:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_map_has_paths_to_check() {
    // The check above passes trivially on a document it cannot read.
    let named = named_paths(&architecture());
    let paths: Vec<&str> = named.iter().map(|n| n.path.as_str()).collect();
    for expected in [
        "crates/loadgen/src/runner.rs",
        "crates/loadgen/src/http/response.rs",
        "crates/monitor/src/sinks/prometheus.rs",
        "crates/loadgen/src/diagnosis/watch.rs",
        "crates/loadgen/tests/layers.rs",
        "scripts/demo.sh",
        "docs/api-contract.md",
    ] {
        assert!(paths.contains(&expected), "{expected} not read: {paths:?}");
    }
    assert!(
        named.len() >= 100,
        "only {} paths read: {paths:?}",
        named.len()
    );
}

#[test]
fn the_check_names_each_missing_path() {
    let text = "See [the contract](docs/no-such-page.md) and `crates/loadgen/src/lib.rs`.\n\
                \n\
                ## The parts (`crates/loadgen/src/`)\n\
                \n\
                | layer | module | what |\n\
                |---|---|---|\n\
                | a | `runner.rs` | exists |\n\
                | b | `no_such.rs` | missing |\n\
                | c | `http/` | `response.rs`, `no_such_either.rs`, `tls.rs` |\n\
                | d | `no_such_folder/` | `mod.rs` |\n\
                \n\
                Made by the tools: `test_video.mp4`, `manifest.json`; code: `x::y`, `--json FILE`.\n";
    let found = missing(text, &repo_root());
    let expected = [
        "ARCHITECTURE.md:1: `docs/no-such-page.md`",
        "ARCHITECTURE.md:8: `no_such.rs` of a table, not found as `crates/loadgen/src/no_such.rs`",
        "ARCHITECTURE.md:9: `no_such_either.rs` of a table, not found as \
         `crates/loadgen/src/http/no_such_either.rs` or `crates/loadgen/src/no_such_either.rs`",
        "ARCHITECTURE.md:10: `no_such_folder/` of a table, not found as \
         `crates/loadgen/src/no_such_folder/`",
        "ARCHITECTURE.md:10: `mod.rs` of a table, not found as \
         `crates/loadgen/src/no_such_folder/mod.rs` or `crates/loadgen/src/mod.rs`",
    ];
    assert_eq!(found, expected, "{found:#?}");
}
