//! The watch itself: a backend source that was never (or no longer) reached leaves a layer
//! undiagnosed, and the report must say so rather than "No problem found".

use super::{Evidence, Finding, Layer, Severity};

/// Each source still down at the end of the run.
pub fn sources_down(e: &Evidence<'_>) -> Vec<Finding> {
    e.backend
        .unwatched()
        .into_iter()
        .map(|(source, error, down, ticks)| {
            let (name, layer, flag) = match source {
                "postgres" => ("PostgreSQL", Layer::Postgres, "--monitor-postgres"),
                "redis" => ("Redis", Layer::Redis, "--monitor-redis"),
                "docker" => ("Docker", Layer::Containers, "--monitor-docker"),
                "host" => ("The host", Layer::Host, "the host source"),
                other => (other, Layer::Load, "its URL"),
            };
            Finding {
                rule: "watch.source_down",
                layer,
                severity: Severity::Warning,
                title: format!("{name} was not watched: {error}"),
                evidence: format!(
                    "down in {down} of {ticks} samples, and still down at the end: this layer's \
                     findings are missing"
                ),
                action: format!(
                    "Check {flag} (address, user, password, database) and that loadgen can reach it"
                ),
                cause_of: Vec::new(),
            }
        })
        .collect()
}
