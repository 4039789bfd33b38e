//! Importers: other tools' test descriptions turned into a scenario file (`loadgen import
//! locust|openapi|har`). Each importer is a pure function from a text to an [`Imported`]: the
//! scenario's TOML and the list of what it could not translate, which stays visible three ways
//! (a comment at the place in the TOML, a list on stderr, exit code [`EXIT_PARTIAL`]).
//!
//! An importer never runs what it reads: a locustfile is parsed, never executed; an OpenAPI
//! document ([`openapi`]) and a HAR recording ([`har`]) are read as data. The last two write a
//! [`draft::Draft`], which says their findings in the scenario language.

pub mod draft;
pub mod har;
pub mod locust;
pub mod openapi;

use std::fmt::Write as _;
use std::path::Path;

pub use crate::exit_code::EXIT_PARTIAL;

/// What an importer made.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The scenario file, ready for `loadgen scenario check` and `loadgen -f`.
    pub toml: String,
    /// What it could not translate, in the source's order (each also a comment in `toml`).
    pub untranslated: Vec<Untranslated>,
    /// The target the source names, if any (a locustfile's `host = ...`), for a run without
    /// `-H`.
    pub host: Option<String>,
}

/// One place of the source that the scenario does not say.
#[derive(Debug, Clone, PartialEq)]
pub struct Untranslated {
    /// Its first line in the source, from 1.
    pub line: usize,
    /// The source's text there (whole lines).
    pub original: String,
    /// Why, and what the scenario does instead, in words.
    pub why: String,
}

/// A source that could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The source is not valid in its language (a Python syntax error, bad JSON...).
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: String,
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// Valid, but nothing to make a scenario of (no user class, no operation...).
    #[error("{file}: {why}")]
    Empty {
        /// The file.
        file: String,
        /// What is missing and what to give instead.
        why: String,
    },
}

impl Imported {
    /// Whether something was left out: the exit code is then [`EXIT_PARTIAL`].
    pub fn is_partial(&self) -> bool {
        !self.untranslated.is_empty()
    }

    /// The stderr list: one paragraph per place, `FILE:LINE: why`, then the original lines.
    pub fn report(&self, file: &str) -> String {
        let mut out = String::new();
        for u in &self.untranslated {
            let _ = writeln!(out, "{file}:{}: not translated: {}", u.line, u.why);
            for (i, line) in u.original.lines().enumerate() {
                let _ = writeln!(out, "  {:>4} | {line}", u.line + i);
            }
        }
        out
    }

    /// The round trip: the TOML made passes the scenario checker (`loadgen scenario check`),
    /// with the upload files in `fixtures`.
    pub fn check(&self, name: &str, fixtures: &Path) -> Result<(), crate::scenario::ScenarioError> {
        crate::scenario::parse(&self.toml, name, fixtures).map(|_| ())
    }
}

/// The 1-based line of the first `needle` in `text` (1 when it is not there): where a
/// structured source (a JSON or YAML document) says what an [`Untranslated`] is about.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map_or(1, |offset| line_column(text, offset).0)
}

/// The 1-based line and column of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
