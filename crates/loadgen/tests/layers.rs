//! loadgen's top-level modules form layers without cycles (issue 24): this test reads the module
//! graph from the sources (`crate::x` and `super::` paths that reach another top-level module,
//! and the crate root's own `x::` paths) and checks it against the table of layers that
//! `src/lib.rs` documents. Test-only code (`#[cfg(test)]` items and modules) is left out: a test
//! may reach up to build its inputs, the product may not.
//!
//! It reads files only, so it is its own test binary and needs no services.

// A test is a scenario read top to bottom; the 100-line bar is for the product's functions.
#![allow(clippy::too_many_lines)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// The layers, bottom first: a module may use modules of its own layer or of a lower one, and
/// the graph as a whole has no cycle. `src/lib.rs` documents the same table (checked below).
const LAYERS: &[(&str, &[&str])] = &[
    ("leaves", &["atomic_file", "exit_code", "logging"]),
    (
        "mechanisms",
        &[
            "http",
            "stats",
            "scenario",
            "import",
            "preflight",
            "arrival",
            "shape",
        ],
    ),
    ("values", &["targets", "config", "outcome"]),
    (
        "engine",
        &["backend", "user", "runner", "cluster", "engine"],
    ),
    ("readers", &["diagnosis", "report"]),
    (
        "drivers",
        &[
            "shutdown",
            "live",
            "headless",
            "capacity",
            "web",
            "worker",
            "locust_worker",
            "env",
            "cli",
        ],
    ),
    ("root", &[ROOT]),
];

/// The crate root (`src/lib.rs`) as a node of the graph.
const ROOT: &str = "crate";

#[test]
fn top_level_modules_form_layers_without_cycles() {
    let graph = Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    println!("{}", graph.describe());

    let layer_of = layer_table();
    let declared: BTreeSet<&str> = graph.modules.iter().map(String::as_str).collect();
    let tabled: BTreeSet<&str> = layer_of.keys().copied().filter(|m| *m != ROOT).collect();
    assert_eq!(
        declared, tabled,
        "the modules that lib.rs declares and the table of layers in tests/layers.rs differ"
    );

    let upward: Vec<String> = graph
        .edges
        .iter()
        .filter(|((from, to), _)| layer_of[from.as_str()] < layer_of[to.as_str()])
        .map(|((from, to), uses)| {
            format!(
                "{from} ({}) uses {to} ({}):\n{}",
                LAYERS[layer_of[from.as_str()]].0,
                LAYERS[layer_of[to.as_str()]].0,
                lines(uses)
            )
        })
        .collect();
    assert!(
        upward.is_empty(),
        "modules use a higher layer ({} edges):\n{}",
        upward.len(),
        upward.join("\n")
    );
    // With no use of a higher layer, a cycle can only be within one layer.
    let cycles = graph.cycles();
    assert!(
        cycles.is_empty(),
        "loadgen's top-level modules form cycles:\n{}",
        cycles
            .iter()
            .map(|c| graph.explain(c))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The table of layers in lib.rs's docs is this test's table: rows `//! | NAME | [`a`], [`b`] |
/// ...`, bottom first, without the root.
#[test]
fn lib_rs_documents_these_layers() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
        .expect("read src/lib.rs");
    let documented: Vec<(String, Vec<String>)> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//! |"))
        .map(|row| row.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|cells| cells.len() > 2 && cells[1].contains('`'))
        .map(|cells| {
            let modules = cells[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            (cells[0].to_owned(), modules)
        })
        .collect();
    let tabled: Vec<(String, Vec<String>)> = LAYERS
        .iter()
        .filter(|(name, _)| *name != "root")
        .map(|(name, modules)| {
            let modules = modules.iter().map(|m| (*m).to_owned()).collect();
            ((*name).to_owned(), modules)
        })
        .collect();
    assert_eq!(
        documented, tabled,
        "the table of layers in src/lib.rs's docs differs from LAYERS in tests/layers.rs"
    );
}

/// The parser finds what it must, so that a clean result above means something.
#[test]
fn the_reader_sees_every_kind_of_path() {
    let temp = tempfile::tempdir().expect("a temporary folder");
    let dir = temp.path().join("src");
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dir");
        std::fs::write(path, text).expect("write");
    };
    write(
        "lib.rs",
        "//! crate::c in a comment\npub mod a;\nmod b;\npub mod c;\npub mod d;\npub mod e;\n\
         #[cfg(test)]\nmod f;\nfn go() { a::run(); }\n",
    );
    write(
        "a/mod.rs",
        "mod inner;\nuse crate::{b::X, c::{self, Y}};\nconst S: &str = \"crate::d::Z\";\n",
    );
    write(
        "a/inner.rs",
        "fn f() { super::super::d::g(); let _ = r#\"crate::e\"#; }\n\
         #[cfg(test)]\nmod tests { use crate::e::T; }\n",
    );
    write("b.rs", "pub struct X;\nfn f() -> u8 { crate::EXIT }\n");
    // Lifetimes, an escaped quote, a string over two lines, a test function: line 8 counts.
    write(
        "c.rs",
        r#"pub struct Y;
fn f<'a>(x: &'a str) -> char { 'x' }
fn g() -> char { '\'' }
const T: &str = "a\
 b \"crate::e\" ";
#[cfg(test)]
fn t() { crate::e::T; }
fn h() { crate::d::g(); }
"#,
    );
    write("d.rs", "pub fn g() {}\n");
    write("e.rs", "pub struct T;\n");
    write("f.rs", "use crate::a::Q;\n");

    let graph = Graph::read(&dir);
    let edges: Vec<(&str, &str)> = graph
        .edges
        .keys()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        edges,
        [
            ("a", "b"),
            ("a", "c"),
            ("a", "d"),
            ("b", ROOT),
            ("c", "d"),
            (ROOT, "a")
        ],
        "{}",
        graph.describe()
    );
    assert_eq!(graph.modules, ["a", "b", "c", "d", "e"]);
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{}", graph.describe());
    assert_eq!(cycles[0], ["a", "b", ROOT]);
    let c_to_d = &graph.edges[&("c".to_owned(), "d".to_owned())];
    assert_eq!(
        (
            c_to_d[0].file.as_str(),
            c_to_d[0].line,
            c_to_d[0].text.as_str()
        ),
        ("src/c.rs", 8, "fn h() { crate::d::g(); }")
    );
}

fn layer_table() -> BTreeMap<&'static str, usize> {
    let mut table = BTreeMap::new();
    for (index, (_, modules)) in LAYERS.iter().enumerate() {
        for module in *modules {
            assert!(
                table.insert(*module, index).is_none(),
                "{module} is in two layers"
            );
        }
    }
    table
}

fn lines(uses: &[Use]) -> String {
    uses.iter()
        .map(|u| format!("    {}:{}: {}", u.file, u.line, u.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where one module names another.
#[derive(Debug, Clone)]
struct Use {
    file: String,
    line: usize,
    text: String,
}

/// The graph of top-level modules: `modules` as lib.rs declares them, and for each edge the
/// lines that make it.
struct Graph {
    modules: Vec<String>,
    edges: BTreeMap<(String, String), Vec<Use>>,
}

impl Graph {
    fn read(src: &Path) -> Self {
        let mut graph = Graph {
            modules: Vec::new(),
            edges: BTreeMap::new(),
        };
        graph.read_module(src, &src.join("lib.rs"), &[]);
        graph
    }

    /// Reads one module's file and, through its `mod x;` lines, its children.
    fn read_module(&mut self, src: &Path, file: &Path, path: &[String]) {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let tokens = without_test_items(lex(&text));
        let shown = file
            .strip_prefix(src.parent().unwrap_or(src))
            .unwrap_or(file)
            .display()
            .to_string();
        let source_lines: Vec<&str> = text.lines().collect();
        let children = child_modules(&tokens);
        if path.is_empty() {
            self.modules = children.clone();
            self.modules.sort();
        }
        for (target, line) in references(&tokens, path, &self.modules.clone()) {
            let from = path.first().map_or(ROOT, String::as_str).to_owned();
            if from == target {
                continue;
            }
            let used = Use {
                file: shown.clone(),
                line,
                text: source_lines
                    .get(line - 1)
                    .map_or("", |l| l.trim())
                    .to_owned(),
            };
            let uses = self.edges.entry((from, target)).or_default();
            // `use crate::{A, B}` names the root twice on one line: one use.
            if !uses
                .iter()
                .any(|u| u.file == used.file && u.line == used.line)
            {
                uses.push(used);
            }
        }
        // A module's children live beside lib.rs or a mod.rs, or in a folder named after it.
        let dir = if path.is_empty() || file.ends_with("mod.rs") {
            file.parent().expect("a folder").to_path_buf()
        } else {
            file.with_extension("")
        };
        for child in children {
            let flat = dir.join(format!("{child}.rs"));
            let nested = dir.join(&child).join("mod.rs");
            let child_file = if flat.is_file() { flat } else { nested };
            let mut child_path = path.to_vec();
            child_path.push(child);
            self.read_module(src, &child_file, &child_path);
        }
    }

    /// The strongly connected components with more than one module, each sorted.
    fn cycles(&self) -> Vec<Vec<String>> {
        let mut nodes: BTreeSet<&str> = self.modules.iter().map(String::as_str).collect();
        nodes.insert(ROOT);
        let reach = |from: &str| -> BTreeSet<String> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.to_owned()];
            while let Some(node) = stack.pop() {
                for (a, b) in self.edges.keys() {
                    if *a == node && seen.insert(b.clone()) {
                        stack.push(b.clone());
                    }
                }
            }
            seen
        };
        let reached: BTreeMap<&str, BTreeSet<String>> =
            nodes.iter().map(|n| (*n, reach(n))).collect();
        let mut components: BTreeSet<Vec<String>> = BTreeSet::new();
        for node in &nodes {
            let component: Vec<String> = nodes
                .iter()
                .filter(|other| reached[node].contains(**other) && reached[**other].contains(*node))
                .map(|s| (*s).to_owned())
                .collect();
            if component.len() > 1 {
                components.insert(component);
            }
        }
        components.into_iter().collect()
    }

    /// The edges inside one cycle, with the lines that make them.
    fn explain(&self, component: &[String]) -> String {
        let mut out = format!("cycle among {}:\n", component.join(", "));
        for ((a, b), uses) in &self.edges {
            if component.contains(a) && component.contains(b) {
                let _ = writeln!(out, "  {a} -> {b}:\n{}", lines(uses));
            }
        }
        out
    }

    /// The graph, one line per module; with `LAYERS_LINES=1` in the environment, each edge
    /// with the lines that make it.
    fn describe(&self) -> String {
        let mut out = String::from("loadgen's module graph (module -> the modules it uses):\n");
        if std::env::var_os("LAYERS_LINES").is_some() {
            for ((a, b), uses) in &self.edges {
                let _ = writeln!(out, "  {a} -> {b}:\n{}", lines(uses));
            }
            return out;
        }
        let mut by_module: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (a, b) in self.edges.keys() {
            by_module.entry(a).or_default().push(b);
        }
        for (module, uses) in by_module {
            let _ = writeln!(out, "  {module} -> {}", uses.join(", "));
        }
        out
    }
}

/// A token: an identifier (or number, or keyword), `::`, or one other character.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Splits Rust source into tokens with their line numbers, dropping comments, strings and
/// character literals (so that `crate::x` in a doc comment or a string is not a use).
fn lex(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                let mut depth = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        line += usize::from(chars[i] == '\n');
                        i += 1;
                    }
                }
            }
            '"' => i = skip_string(&chars, i + 1, 0, &mut line),
            '\'' => {
                // A character literal ('x', '\n', '\u{1}'), or a lifetime ('a), which is skipped.
                if next == Some('\\') {
                    i += 3; // past ', \ and the escaped character, which may be a '
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                } else if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                } else {
                    i += 1;
                    while i < chars.len() && is_ident(chars[i]) {
                        i += 1;
                    }
                }
            }
            ':' if next == Some(':') => {
                tokens.push((Token::PathSep, line));
                i += 2;
            }
            c if is_ident(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                // Raw and byte strings: r"..", r#".."#, b"..", br#".."#; raw identifiers: r#x.
                if matches!(word.as_str(), "r" | "br" | "b" | "c" | "cr") {
                    let hashes = chars[i..].iter().take_while(|c| **c == '#').count();
                    if chars.get(i + hashes) == Some(&'"') {
                        let raw = word != "b" && word != "c";
                        i = skip_string(
                            &chars,
                            i + hashes + 1,
                            if raw { hashes + 1 } else { 0 },
                            &mut line,
                        );
                        continue;
                    }
                    if word == "b" && chars.get(i) == Some(&'\'') {
                        continue; // b'x': the character literal is skipped next.
                    }
                    if word == "r" && hashes == 1 {
                        i += 1;
                        continue; // r#ident: the identifier follows.
                    }
                }
                tokens.push((Token::Ident(word), line));
            }
            c => {
                tokens.push((Token::Punct(c), line));
                i += 1;
            }
        }
    }
    tokens
}

/// Skips a string's body from `i` (just after its opening quote); `raw` is 0 for a string with
/// escapes, or 1 + the number of `#` of a raw string. Returns the index after its end.
fn skip_string(chars: &[char], mut i: usize, raw: usize, line: &mut usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' if raw == 0 => {
                // An escaped newline continues the string on the next line.
                *line += usize::from(chars.get(i + 1) == Some(&'\n'));
                i += 2;
            }
            '"' => {
                let hashes = raw.saturating_sub(1);
                if chars[i + 1..]
                    .iter()
                    .take(hashes)
                    .filter(|c| **c == '#')
                    .count()
                    == hashes
                {
                    return i + 1 + hashes;
                }
                i += 1;
            }
            c => {
                *line += usize::from(c == '\n');
                i += 1;
            }
        }
    }
    i
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn ident(tokens: &[(Token, usize)], i: usize) -> Option<&str> {
    match tokens.get(i) {
        Some((Token::Ident(word), _)) => Some(word),
        _ => None,
    }
}

fn punct(tokens: &[(Token, usize)], i: usize, c: char) -> bool {
    matches!(tokens.get(i), Some((Token::Punct(p), _)) if *p == c)
}

fn path_sep(tokens: &[(Token, usize)], i: usize) -> bool {
    matches!(tokens.get(i), Some((Token::PathSep, _)))
}

/// Drops every item marked `#[cfg(test)]`: a `mod tests { .. }`, a `mod testing;`, a function,
/// a field.
fn without_test_items(tokens: Vec<(Token, usize)>) -> Vec<(Token, usize)> {
    let is_cfg_test = |i: usize| {
        punct(&tokens, i, '#')
            && punct(&tokens, i + 1, '[')
            && ident(&tokens, i + 2) == Some("cfg")
            && punct(&tokens, i + 3, '(')
            && ident(&tokens, i + 4) == Some("test")
            && punct(&tokens, i + 5, ')')
            && punct(&tokens, i + 6, ']')
    };
    let mut kept = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if is_cfg_test(i) {
            i = end_of_item(&tokens, i + 7);
        } else {
            kept.push(tokens[i].clone());
            i += 1;
        }
    }
    kept
}

/// The index after the item that starts at `i`: an item ends with `;` or its closing `}`, a
/// field or an argument with `,` or its enclosing bracket.
fn end_of_item(tokens: &[(Token, usize)], mut i: usize) -> usize {
    let keywords = [
        "mod",
        "fn",
        "use",
        "impl",
        "struct",
        "enum",
        "const",
        "static",
        "type",
        "trait",
        "macro_rules",
        "async",
        "unsafe",
        "extern",
    ];
    let mut is_item = false;
    let mut depth = 0i32;
    while i < tokens.len() {
        if depth == 0
            && let Some(word) = ident(tokens, i)
        {
            is_item |= keywords.contains(&word);
        }
        match &tokens[i].0 {
            Token::Punct('{' | '(' | '[') => depth += 1,
            Token::Punct('}' | ')' | ']') => {
                depth -= 1;
                if depth < 0 {
                    return i;
                }
                if depth == 0 && is_item && tokens[i].0 == Token::Punct('}') {
                    return i + 1;
                }
            }
            Token::Punct(';') if depth == 0 => return i + 1,
            Token::Punct(',') if depth == 0 && !is_item => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The `x` of every `mod x;` (with or without `pub`).
fn child_modules(tokens: &[(Token, usize)]) -> Vec<String> {
    let mut children = Vec::new();
    for i in 0..tokens.len() {
        if ident(tokens, i) == Some("mod")
            && punct(tokens, i + 2, ';')
            && let Some(name) = ident(tokens, i + 1)
        {
            children.push(name.to_owned());
        }
    }
    children
}

/// The top-level modules (or [`ROOT`]) that the tokens of the module at `path` name, with the
/// line of each naming.
fn references(
    tokens: &[(Token, usize)],
    path: &[String],
    top_level: &[String],
) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    // Inline `mod x { .. }` blocks deepen the path that `super::` climbs.
    let mut inline: Vec<(String, i32)> = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    while i < tokens.len() {
        let line = tokens[i].1;
        match &tokens[i].0 {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
            }
            Token::Ident(word) if word == "mod" && punct(tokens, i + 2, '{') => {
                if let Some(name) = ident(tokens, i + 1) {
                    inline.push((name.to_owned(), depth));
                }
            }
            Token::Ident(word) if word == "crate" && path_sep(tokens, i + 1) => {
                let after_dollar = i > 0 && punct(tokens, i - 1, '$');
                if !after_dollar {
                    for target in tree_heads(tokens, i + 2) {
                        found.push((top_or_root(&target, top_level), line));
                    }
                }
            }
            Token::Ident(word)
                if word == "super" && path_sep(tokens, i + 1) && !path_sep_before(tokens, i) =>
            {
                let mut climbs = 0;
                let mut j = i;
                while ident(tokens, j) == Some("super") && path_sep(tokens, j + 1) {
                    climbs += 1;
                    j += 2;
                }
                let mut here: Vec<&str> = path.iter().map(String::as_str).collect();
                here.extend(inline.iter().map(|(name, _)| name.as_str()));
                let base = here.len().saturating_sub(climbs);
                if base == 0 {
                    for target in tree_heads(tokens, j) {
                        found.push((top_or_root(&target, top_level), line));
                    }
                }
                i = j;
                continue;
            }
            // In the crate root, `x::` names the top-level module x.
            Token::Ident(word)
                if path.is_empty()
                    && inline.is_empty()
                    && path_sep(tokens, i + 1)
                    && !path_sep_before(tokens, i)
                    && top_level.contains(word) =>
            {
                found.push((word.clone(), line));
            }
            _ => {}
        }
        i += 1;
    }
    found
}

fn path_sep_before(tokens: &[(Token, usize)], i: usize) -> bool {
    i > 0 && path_sep(tokens, i - 1)
}

fn top_or_root(name: &str, top_level: &[String]) -> String {
    if top_level.iter().any(|m| m == name) {
        name.to_owned()
    } else {
        ROOT.to_owned()
    }
}

/// The first segment of each path in the use tree at `i`: `x::..` gives x, `{x::.., y}` gives
/// x and y, `self` stands for the root.
fn tree_heads(tokens: &[(Token, usize)], i: usize) -> Vec<String> {
    if let Some(word) = ident(tokens, i) {
        return vec![word.to_owned()];
    }
    if !punct(tokens, i, '{') {
        return Vec::new();
    }
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    for (token, _) in &tokens[i..] {
        match token {
            Token::Punct('{') => {
                depth += 1;
                expect_head = depth == 1;
            }
            Token::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Token::Punct(',') if depth == 1 => expect_head = true,
            Token::Ident(word) if expect_head && depth == 1 => {
                heads.push(word.clone());
                expect_head = false;
            }
            _ => expect_head = false,
        }
    }
    heads
}
