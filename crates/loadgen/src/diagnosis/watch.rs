//! The watch itself: a backend source that was never (or no longer) reached leaves a layer
//! undiagnosed, and the report must say so rather than "No problem found".

use super::{Evidence, Finding, Layer, Severity};

/// What the sources noted once (a watched queue in another database than the one watched).
pub fn source_notes(e: &Evidence<'_>) -> Vec<Finding> {
    e.backend
        .notes()
        .into_iter()
        .map(|(source, note)| Finding {
            rule: "watch.source_note",
            layer: match source {
                "redis" => Layer::Redis,
                "postgres" => Layer::Postgres,
                _ => Layer::Load,
            },
            severity: Severity::Warning,
            title: format!("{source}: {}", note.split(':').next().unwrap_or(note)),
            evidence: note.to_owned(),
            action: "Watch what the API really uses, or its figures read 0 all run".into(),
            cause_of: Vec::new(),
            explains: None,
            explained_by: None,
        })
        .collect()
}

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
                explains: None,
                explained_by: None,
            }
        })
        .collect()
}
