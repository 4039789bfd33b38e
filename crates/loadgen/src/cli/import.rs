//! `loadgen import locust FILE`: another tool's test written as a scenario on stdout, what was
//! not translated listed on stderr, and an exit code that says which (0 all, 3 partial, 2 an
//! error). The output is checked as `loadgen scenario check` checks a file before it is printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use crate::exit_code::{EXIT_OK, EXIT_PARTIAL};
use crate::import::{Imported, locust};

/// `loadgen import ...`.
#[derive(Debug, Subcommand)]
pub enum ImportAction {
    /// A locustfile (read with a Python parser, never run): HttpUser/FastHttpUser classes,
    /// @task and tasks, TaskSets, on_start, self.client requests, extractions, templates.
    /// Exit code: 0 all translated, 3 some places not translated (the scenario is printed,
    /// each place a `# NOT TRANSLATED` comment, and listed on stderr), 2 an error.
    Locust {
        /// The locustfile.
        file: PathBuf,
        /// Folder of the files it uploads (`files=`), for the check of the output [default:
        /// the locustfile's folder].
        #[arg(long, env = "LOADGEN_FIXTURES")]
        fixtures: Option<PathBuf>,
    },
}

/// Reads and imports a locustfile.
pub fn import_locustfile(file: &Path) -> anyhow::Result<Imported> {
    let source = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read locustfile {}", file.display()))?;
    Ok(locust::import(&source, &file.display().to_string())?)
}

/// Runs `loadgen import ...`; the exit code.
pub fn run(action: &ImportAction) -> anyhow::Result<u8> {
    let ImportAction::Locust { file, fixtures } = action;
    let imported = import_locustfile(file)?;
    let name = file.display().to_string();
    let fixtures = fixtures.clone().unwrap_or_else(|| {
        file.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    let missing: Vec<String> = crate::scenario::fixtures_needed(&imported.toml)
        .into_iter()
        .filter(|f| !fixtures.join(f).is_file())
        .collect();
    if missing.is_empty() {
        imported
            .check(&format!("{name} (imported)"), &fixtures)
            .context("the imported scenario does not pass `loadgen scenario check` (a bug of the importer: please report it with the locustfile)")?;
    } else {
        eprintln!(
            "loadgen: warning: the scenario uploads {} from {}: not found there; give the \
             folder with --fixtures when you run it",
            missing.join(", "),
            fixtures.display()
        );
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(imported.toml.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("cannot write the scenario to stdout")?,
    }
    if imported.is_partial() {
        eprint!("{}", imported.report(&name));
        eprintln!(
            "loadgen: {} place(s) of {name} not translated (each is a # NOT TRANSLATED comment \
             in the scenario); exit code {EXIT_PARTIAL}",
            imported.untranslated.len()
        );
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}
