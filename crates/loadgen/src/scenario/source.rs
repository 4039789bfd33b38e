//! [`ScenarioSource`]: a scenario as the user chose it (its text, and the user types and tags
//! picked from it), which loads into a checked [`Scenario`]. The command line loads it once;
//! a master sends it to its workers, which load the very same scenario with their own fixtures,
//! checked against the master's by hash.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::data::UserData;
use super::{Scenario, ScenarioError};

/// A scenario that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A fixture is missing, unreadable, or differs from the master's.
    #[error("{0}")]
    Fixtures(String),
    /// The text is not a valid scenario.
    #[error(transparent)]
    Parse(#[from] ScenarioError),
    /// `--user-classes`, `--tags` or `--exclude-tags` leave nothing, or name what is not there.
    #[error("{0}")]
    Selection(String),
    /// The `--user-data` file does not fit the scenario.
    #[error("{0}")]
    UserData(String),
}

/// A scenario's text and what was picked from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSource {
    /// The TOML text.
    pub text: String,
    /// Its file name (or the built-in scenario's), for error messages.
    pub name: String,
    /// Only these user types (`--user-classes`; empty: all).
    pub user_classes: Vec<String>,
    /// Every task of a user type weighs the same (`--equal-weights`).
    #[serde(default)]
    pub equal_weights: bool,
    /// Only tasks with one of these tags (`--tags`).
    pub tags: Vec<String>,
    /// No task with one of these tags (`--exclude-tags`).
    pub exclude_tags: Vec<String>,
    /// SHA-256 (hex) of each fixture the scenario uploads, as the sender has them (filled by
    /// [`ScenarioSource::with_fixture_digests`]; empty: not checked).
    #[serde(default)]
    pub fixture_digests: BTreeMap<String, String>,
    /// Rows of variables for the users (`--user-data`), sent to workers with the text.
    #[serde(default)]
    pub user_data: Option<UserData>,
}

impl ScenarioSource {
    /// The built-in FFmpeg API scenario.
    pub fn builtin() -> Self {
        Self {
            text: super::BUILTIN.to_owned(),
            name: super::BUILTIN_NAME.to_owned(),
            ..Self::default()
        }
    }

    /// Loads the scenario with the fixtures in `fixtures`, then applies the picked user
    /// types and tags.
    pub fn load(&self, fixtures: &Path) -> Result<Scenario, LoadError> {
        let needed = super::fixtures_needed(&self.text);
        crate::preflight::check_fixtures(fixtures, &needed).map_err(LoadError::Fixtures)?;
        for (name, expected) in &self.fixture_digests {
            let path = fixtures.join(name);
            let ours = digest(&path)?;
            if &ours != expected {
                return Err(LoadError::Fixtures(format!(
                    "fixture {} differs from the master's (SHA-256 {} here, {} there): \
                     give this process the same files (`fixtures-gen` makes the same ones everywhere)",
                    path.display(),
                    short(&ours),
                    short(expected)
                )));
            }
        }
        let mut scenario = super::parse(&self.text, &self.name, fixtures)?;
        // Against every user type: a column may be for a type --user-classes left out.
        if let Some(data) = &self.user_data {
            data.check(&scenario).map_err(LoadError::UserData)?;
            scenario.user_data = Some(std::sync::Arc::new(data.clone()));
        }
        self.select(&mut scenario)?;
        if self.equal_weights {
            for task in scenario.users.iter_mut().flat_map(|u| &mut u.tasks) {
                task.weight = 1;
            }
        }
        Ok(scenario)
    }

    /// Records the digest of each fixture the scenario uploads, so that a receiver can tell
    /// its own files are the same.
    pub fn with_fixture_digests(mut self, fixtures: &Path) -> Result<Self, LoadError> {
        for name in super::fixtures_needed(&self.text) {
            let digest = digest(&fixtures.join(&name))?;
            self.fixture_digests.insert(name, digest);
        }
        Ok(self)
    }

    fn select(&self, scenario: &mut Scenario) -> Result<(), LoadError> {
        if !self.user_classes.is_empty() {
            for wanted in &self.user_classes {
                if !scenario.users.iter().any(|u| &u.name == wanted) {
                    let known: Vec<&str> = scenario.users.iter().map(|u| u.name.as_str()).collect();
                    return Err(LoadError::Selection(format!(
                        "--user-classes {wanted}: no such user type (the scenario has {})",
                        known.join(", ")
                    )));
                }
            }
            scenario
                .users
                .retain(|u| self.user_classes.contains(&u.name));
        }
        if !self.tags.is_empty() {
            for user in &mut scenario.users {
                if !user.tags.iter().any(|t| self.tags.contains(t)) {
                    user.tasks
                        .retain(|t| t.tags.iter().any(|tag| self.tags.contains(tag)));
                }
            }
            scenario.users.retain(|u| !u.tasks.is_empty());
            if scenario.users.is_empty() {
                return Err(LoadError::Selection(format!(
                    "--tags {}: no task or user type has these tags",
                    self.tags.join(",")
                )));
            }
        }
        if !self.exclude_tags.is_empty() {
            let excluded = |tags: &[String]| tags.iter().any(|t| self.exclude_tags.contains(t));
            scenario.users.retain(|u| !excluded(&u.tags));
            for user in &mut scenario.users {
                user.tasks.retain(|t| !excluded(&t.tags));
            }
            scenario.users.retain(|u| !u.tasks.is_empty());
            if scenario.users.is_empty() {
                return Err(LoadError::Selection(format!(
                    "--exclude-tags {}: every task has one of these tags; nothing is left to run",
                    self.exclude_tags.join(",")
                )));
            }
        }
        scenario.check_runnable().map_err(LoadError::Selection)
    }
}

fn digest(path: &Path) -> Result<String, LoadError> {
    let bytes = std::fs::read(path)
        .map_err(|e| LoadError::Fixtures(format!("cannot read fixture {}: {e}", path.display())))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
