//! The files a capacity search writes, from the run flags that ask for them: `--report-json` (the
//! whole report), `--csv PREFIX` (`PREFIX_capacity.csv`, one row per step), `--html` (the
//! latency–throughput curve), `--junit` (the capacity required, and kept against
//! `--baseline`) and `--summary-md`. Each is written whole through [`crate::atomic_file`].

use std::path::PathBuf;

use super::CapacityReport;
use super::baseline::CapacityComparison;
use crate::config::Outputs;
use crate::report::files::Written;

/// The content of one file, or why it could not be rendered.
type Render = fn(&CapacityReport) -> Result<Vec<u8>, String>;

/// The whole report, with the comparison with `--baseline` (`baseline_comparison`) when the
/// search had one, as a run's report carries its own.
fn json(report: &CapacityReport) -> Result<Vec<u8>, String> {
    let mut value = serde_json::to_value(report).map_err(|e| e.to_string())?;
    if let (Some(comparison), Some(fields)) =
        (CapacityComparison::of(report), value.as_object_mut())
    {
        fields.insert(
            "baseline_comparison".to_owned(),
            serde_json::to_value(comparison).map_err(|e| e.to_string())?,
        );
    }
    serde_json::to_vec_pretty(&value).map_err(|e| e.to_string())
}

/// Writes every file `outputs` asks for; one that cannot be written does not stop the others.
pub fn write_all(report: &CapacityReport, outputs: &Outputs) -> Written {
    let mut written = Written::default();
    let csv = outputs
        .csv
        .as_ref()
        .map(|prefix| PathBuf::from(format!("{prefix}_capacity.csv")));
    let files: [(&str, Option<PathBuf>, Render); 5] = [
        ("JSON", outputs.json.clone(), json),
        ("CSV", csv, |r| {
            super::csv::render(r).map_err(|e| e.to_string())
        }),
        ("HTML", outputs.html.clone(), |r| {
            Ok(super::html::render(r).into_bytes())
        }),
        ("JUnit", outputs.junit.clone(), |r| {
            Ok(super::junit::render(r).into_bytes())
        }),
        ("Markdown summary", outputs.summary_md.clone(), |r| {
            Ok(super::markdown::render(r).into_bytes())
        }),
    ];
    for (what, path, render) in files {
        let Some(path) = path else { continue };
        match render(report)
            .and_then(|bytes| crate::atomic_file::write(&path, &bytes).map_err(|e| e.to_string()))
        {
            Ok(()) => written.paths.push(path),
            Err(e) => written
                .errors
                .push(format!("{what} {}: {e}", path.display())),
        }
    }
    written
}
