//! `loadgen import locust|openapi|har`: another tool's test, an API's OpenAPI document or a
//! browser's recording written as a scenario on stdout, what was not translated listed on
//! stderr, and an exit code that says which (0 all, 3 partial, 2 an error). The output is
//! checked as `loadgen scenario check` checks a file before it is printed.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::exit_code::{EXIT_OK, EXIT_PARTIAL};
use crate::import::{Imported, har, locust, openapi};

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
    /// An OpenAPI 3.0 or 3.1 document (JSON or YAML; a file, or a URL such as FastAPI's
    /// `http://host/openapi.json`): one step per operation, a sign-up and login first, bodies
    /// from the schemas. Destructive operations are left out unless --include-unsafe.
    Openapi {
        /// The document: a file, or an http(s) URL.
        source: String,
        /// Keep DELETE and the other destructive operations (left out by default).
        #[arg(long)]
        include_unsafe: bool,
    },
    /// A browser's recording (a HAR file from DevTools, Charles, mitmproxy or Playwright),
    /// replayed in order with its think times; assets and other hosts left out, secrets
    /// redacted.
    Har {
        /// The HAR file.
        file: PathBuf,
        /// Keep scripts, styles, images, fonts and media (left out by default).
        #[arg(long)]
        include_static: bool,
        /// Write the recorded credentials as they are instead of `REDACTED`.
        #[arg(long)]
        keep_secrets: bool,
    },
}

/// Reads and imports a locustfile.
pub fn import_locustfile(file: &Path) -> anyhow::Result<Imported> {
    let source = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read locustfile {}", file.display()))?;
    Ok(locust::import(&source, &file.display().to_string())?)
}

/// Runs `loadgen import ...`; the exit code.
pub async fn run(action: &ImportAction) -> anyhow::Result<u8> {
    let (imported, name, fixtures) = match action {
        ImportAction::Locust { file, fixtures } => {
            let fixtures = fixtures.clone().unwrap_or_else(|| {
                file.parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            });
            (
                import_locustfile(file)?,
                file.display().to_string(),
                fixtures,
            )
        }
        ImportAction::Openapi {
            source,
            include_unsafe,
        } => {
            let text = read_source(source).await?;
            let options = openapi::Options {
                include_unsafe: *include_unsafe,
            };
            let name = common::redact::reference(source);
            let imported = openapi::import(&text, &name, &options)?;
            (imported, name, PathBuf::from("."))
        }
        ImportAction::Har {
            file,
            include_static,
            keep_secrets,
        } => {
            let name = file.display().to_string();
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
            let options = har::Options {
                include_static: *include_static,
                keep_secrets: *keep_secrets,
            };
            (
                har::import(&text, &name, &options)?,
                name,
                PathBuf::from("."),
            )
        }
    };
    write_out(&imported, &name, &fixtures)
}

/// Checks the scenario (when its uploads are at hand), prints it, lists what was left out;
/// the exit code.
fn write_out(imported: &Imported, name: &str, fixtures: &Path) -> anyhow::Result<u8> {
    let missing: Vec<String> = crate::scenario::fixtures_needed(&imported.toml)
        .into_iter()
        .filter(|f| !fixtures.join(f).is_file())
        .collect();
    if missing.is_empty() {
        imported
            .check(&format!("{name} (imported)"), fixtures)
            .context("the imported scenario does not pass `loadgen scenario check` (a bug of the importer: please report it with its source)")?;
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
        eprint!("{}", imported.report(name));
        eprintln!(
            "loadgen: {} place(s) of {name} not translated (each is a comment \
             in the scenario); exit code {EXIT_PARTIAL}",
            imported.untranslated.len()
        );
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}

/// A file's text, or an http(s) URL's body (a 2xx answer).
async fn read_source(source: &str) -> anyhow::Result<String> {
    if !(source.starts_with("http://") || source.starts_with("https://")) {
        return std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"));
    }
    // Messages name the URL without its credentials, which are refused: they would be sent
    // nowhere (the request goes to the origin) and printed everywhere.
    let shown = common::redact::reference(source);
    let url = url::Url::parse(source).with_context(|| format!("{shown} is not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!("{shown}: a URL with credentials is not fetched; save the document to a file");
    }
    let origin = url.origin().ascii_serialization();
    let mut path = url.path().to_owned();
    if let Some(query) = url.query() {
        path = format!("{path}?{query}");
    }
    let tls = crate::http::tls::client_config(&crate::http::tls::TlsSettings::default())
        .context("setting up TLS")?;
    let target = crate::http::Target::resolve(&origin, Some(&tls))
        .await
        .with_context(|| format!("cannot reach {shown}"))?;
    let answer = crate::http::spawn_apart(move || async move {
        let options = crate::http::Options {
            timeout: Duration::from_secs(30),
            ..crate::http::Options::default()
        };
        let mut connection = crate::http::Connection::new(std::rc::Rc::new(target), options);
        connection
            .send(
                &http::Method::GET,
                &path,
                &[],
                &crate::http::Payload::default(),
            )
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| anyhow::anyhow!("fetching {shown}: {e}"))?
    .map_err(|e| anyhow::anyhow!("fetching {shown}: {e}"))?;
    if !(200..300).contains(&answer.status) {
        bail!("fetching {shown}: HTTP {}", answer.status);
    }
    String::from_utf8(answer.body.to_vec())
        .with_context(|| format!("{shown}: the answer is not UTF-8 text"))
}
