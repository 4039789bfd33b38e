//! Scenarios written for the user from what they already have: an OpenAPI document
//! ([`openapi`]) or a browser's recording ([`har`]). Each importer reads its source, never runs
//! it, and writes a [`draft::Draft`]; what it could not say in the scenario language stays
//! visible, as a comment at the place and in [`Imported::untranslated`].

pub mod draft;
pub mod har;
pub mod openapi;

/// A scenario written by an importer.
#[derive(Debug)]
pub struct Imported {
    /// The scenario file's text.
    pub toml: String,
    /// What the importer could not translate, in the order of the source.
    pub untranslated: Vec<Untranslated>,
}

/// A part of the source the scenario does not carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Untranslated {
    /// Where it is in the source (a path and method, an entry's number, a line).
    pub place: String,
    /// Why it was left out, and what to do about it.
    pub why: String,
}

/// A source that cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Neither JSON nor YAML, or not the document it should be.
    #[error("{0}")]
    Format(String),
}
