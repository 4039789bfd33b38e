//! The report files a run asks for (`--csv`, `--json` on stdout, `--json-file`,
//! `--report-json`, `--html`, `--junit`, `--summary-md`), rendered from one [`Report`] and each written whole through [`crate::atomic_file`]: the one
//! place every driver (headless, web UI, demo) writes them.

use std::path::PathBuf;

use super::Report;
use crate::config::Outputs;

/// What [`write_all`] did: the files written, and why the others were not.
#[derive(Debug, Default)]
pub struct Written {
    /// Files written, in the order asked for.
    pub paths: Vec<PathBuf>,
    /// One line per file (or set of CSV files) that could not be written.
    pub errors: Vec<String>,
}

impl Written {
    /// The files written, comma-separated.
    pub fn list(&self) -> String {
        self.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The content of a one-file report, or why it could not be rendered.
type Render = fn(&Report) -> Result<Vec<u8>, String>;

/// Writes every file `outputs` asks for; one that cannot be written does not stop the others.
pub fn write_all(report: &Report, outputs: &Outputs) -> Written {
    let mut written = Written::default();
    if outputs.locust_json {
        // Locust's --json: the stats on stdout, at the end.
        match super::locust_json::render(report) {
            Ok(bytes) => {
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                if let Err(e) = stdout
                    .write_all(&bytes)
                    .and_then(|()| stdout.write_all(b"\n"))
                    .and_then(|()| stdout.flush())
                {
                    written.errors.push(format!("--json on stdout: {e}"));
                }
            }
            Err(e) => written.errors.push(format!("--json: {e}")),
        }
    }
    let mut put = |what: String, rendered: Result<Vec<(PathBuf, Vec<u8>)>, String>| match rendered {
        Ok(files) => {
            for (path, bytes) in files {
                match crate::atomic_file::write(&path, &bytes) {
                    Ok(()) => written.paths.push(path),
                    Err(e) => written
                        .errors
                        .push(format!("{what} {}: {e}", path.display())),
                }
            }
        }
        Err(e) => written.errors.push(format!("{what}: {e}")),
    };
    if let Some(prefix) = &outputs.csv {
        put(
            format!("CSV files {prefix}_*.csv"),
            super::csv::files(report, prefix).map_err(|e| e.to_string()),
        );
    }
    let single: [(&str, &Option<PathBuf>, Render); 5] = [
        (
            "Locust JSON",
            &outputs.locust_json_file,
            super::locust_json::render,
        ),
        ("JSON", &outputs.json, |r| {
            serde_json::to_vec_pretty(r).map_err(|e| e.to_string())
        }),
        ("HTML", &outputs.html, |r| {
            Ok(super::html::render(r).into_bytes())
        }),
        ("JUnit", &outputs.junit, |r| {
            Ok(super::junit::render(r).into_bytes())
        }),
        ("Markdown summary", &outputs.summary_md, |r| {
            Ok(super::markdown::render(r).into_bytes())
        }),
    ];
    for (what, path, render) in single {
        if let Some(path) = path {
            put(
                what.to_owned(),
                render(report).map(|b| vec![(path.clone(), b)]),
            );
        }
    }
    written
}
