//! `loadgen`: drives virtual users against the FFmpeg API, measures, reports, judges against
//! targets and diagnoses (see `shared/DESIGN.md`). The engine is built in issue #3; this crate
//! holds its place in the workspace.
