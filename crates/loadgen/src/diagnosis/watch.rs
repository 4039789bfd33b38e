//! The watch itself: a backend source that was never (or no longer) reached leaves a layer
//! undiagnosed, and the report must say so rather than "No problem found".

use super::{Evidence, Finding, Layer, Severity};

/// Validity: nothing but loadgen itself was watched, so nothing can be said of the host or the
/// stack (the validity section must not claim them quiet).
pub fn nothing_watched(e: &Evidence<'_>) -> Vec<Finding> {
    if e.backend.start().is_some() {
        return Vec::new();
    }
    // Sources were set: saying none were would contradict the command line.
    if e.backend_watched {
        return vec![Finding::new(
            "watch.no_sample",
            Layer::Load,
            Severity::Info,
            "The host and the stack were watched, but no sample came in time",
            format!(
                "monitor sources were set, but none had sent a sample when the run ended after \
                 {:.1} s: only loadgen's own figures (its CPU, its timers) were checked",
                e.duration.as_secs_f64()
            ),
            "Run longer than the monitor's first samples (a few seconds; a source reached \
             through a helper container takes longer), so that the run's validity and the \
             findings cover the stack",
        )];
    }
    vec![Finding::new(
        "watch.nothing_watched",
        Layer::Load,
        Severity::Info,
        "The host and the stack were not watched",
        "no monitor source: only loadgen's own figures (its CPU, its timers) were checked",
        "Add --monitor-postgres, --monitor-redis or --monitor-docker (the host comes with any of them) so that the run's validity and the findings cover the stack",
    )]
}

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
            action: "Do what the note says (watch what the API really uses, or install what it names): until then the figures it speaks of read 0 or are missing from the findings".into(),
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

#[cfg(test)]
mod tests {
    use super::super::testing::{host, outcome, postgres, redis, ticks, with_evidence};
    use super::*;

    /// Ticks of a watched PostgreSQL, Redis and host, with `edit` applied to each tick's readings.
    fn watched(
        n: usize,
        edit: impl Fn(usize, &str, &mut monitor::sample::SourceReading),
    ) -> Vec<monitor::sample::Tick> {
        let mut backend = ticks(n, |_| vec![postgres(|_| {}), redis(|_| {}), host(20.0)]);
        for (i, tick) in backend.iter_mut().enumerate() {
            for (name, reading) in &mut tick.sources {
                edit(i, name, reading);
            }
        }
        backend
    }

    fn down(reading: &mut monitor::sample::SourceReading, error: &str) {
        reading.up = false;
        reading.error = Some(error.into());
        reading.values = None;
    }

    #[test]
    fn a_source_down_at_the_end_is_named_with_its_error_and_a_gap_is_not() {
        let run = outcome(&[5; 8], &[20; 8], 10, &[]);
        // PostgreSQL refused from the 4th sample on; Redis missed two samples in the middle.
        let backend = watched(8, |i, name, reading| match name {
            "postgres" if i >= 3 => down(reading, "password authentication failed"),
            "redis" if (3..5).contains(&i) => down(reading, "timed out"),
            _ => {}
        });
        let found = with_evidence(&run, &backend, sources_down);
        assert_eq!(found.len(), 1, "{found:#?}");
        let pg = &found[0];
        assert_eq!(pg.rule, "watch.source_down");
        assert_eq!(pg.layer, Layer::Postgres);
        assert_eq!(
            pg.title,
            "PostgreSQL was not watched: password authentication failed"
        );
        assert!(
            pg.evidence.starts_with("down in 5 of 8 samples"),
            "{}",
            pg.evidence
        );
        assert!(pg.action.contains("--monitor-postgres"), "{}", pg.action);

        // Down in only the last two samples: a late reading on a busy host, not a lost layer.
        let late = watched(8, |i, name, reading| {
            if name == "redis" && i >= 6 {
                down(reading, "timed out");
            }
        });
        assert!(with_evidence(&run, &late, sources_down).is_empty());
        // No sample at all: nothing to judge.
        assert!(with_evidence(&run, &[], sources_down).is_empty());
    }

    #[test]
    fn a_note_repeated_in_every_sample_is_one_finding_on_its_layer() {
        let run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let note = "queue 1/celery is in database 1: the URL watches database 0";
        let backend = watched(6, |_, name, reading| {
            if name == "redis" {
                reading.notes.push(note.into());
            }
        });
        let found = with_evidence(&run, &backend, source_notes);
        assert_eq!(
            found.len(),
            1,
            "once, however many samples carried it: {found:#?}"
        );
        assert_eq!(found[0].rule, "watch.source_note");
        assert_eq!(found[0].layer, Layer::Redis);
        assert_eq!(found[0].title, "redis: queue 1/celery is in database 1");
        assert_eq!(found[0].evidence, note);
        let quiet = watched(6, |_, _, _| {});
        assert!(with_evidence(&run, &quiet, source_notes).is_empty());
    }

    #[test]
    fn a_run_without_a_monitor_says_the_stack_was_not_watched() {
        let run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let found = with_evidence(&run, &[], nothing_watched);
        assert_eq!(found[0].title, "The host and the stack were not watched");
        assert!(with_evidence(&run, &watched(3, |_, _, _| {}), nothing_watched).is_empty());
    }

    #[test]
    fn a_watched_run_that_ended_before_the_first_sample_says_so() {
        let mut run = outcome(&[5; 2], &[20; 2], 10, &[]);
        run.backend_watched = true;
        let found = with_evidence(&run, &[], nothing_watched);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].rule, "watch.no_sample");
        assert!(
            !found[0].evidence.contains("no monitor source"),
            "{}",
            found[0].evidence
        );
    }
}
