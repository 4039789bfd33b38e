//! `loadgen import openapi|har`: writes a scenario on stdout from what the user already has,
//! checks it with the scenario parser (an import that does not parse is a bug, said so), and
//! lists on stderr what was not translated.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::exit_code::{EXIT_OK, EXIT_PARTIAL};
use crate::import::{Imported, har, openapi};

/// `loadgen import ...`.
#[derive(Debug, Subcommand)]
pub enum ImportAction {
    /// A scenario from an OpenAPI 3.0 or 3.1 document (JSON or YAML; a file, or a URL such as
    /// FastAPI's `http://host/openapi.json`): one step per operation, a login first.
    Openapi {
        /// The document: a file, or an http(s) URL.
        source: String,
        /// Keep DELETE and the other destructive operations (left out by default).
        #[arg(long)]
        include_unsafe: bool,
    },
    /// A scenario that replays a browser's recording (a HAR file from DevTools, Charles,
    /// mitmproxy or Playwright), with its think times.
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

/// Runs an import; the exit code is [`EXIT_PARTIAL`] when something was not translated.
pub async fn run(action: &ImportAction) -> anyhow::Result<u8> {
    let (imported, source) = match action {
        ImportAction::Openapi {
            source,
            include_unsafe,
        } => {
            let text = read_source(source).await?;
            let options = openapi::Options {
                include_unsafe: *include_unsafe,
            };
            let imported =
                openapi::import(&text, &options).with_context(|| format!("importing {source}"))?;
            (imported, source.clone())
        }
        ImportAction::Har {
            file,
            include_static,
            keep_secrets,
        } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let options = har::Options {
                include_static: *include_static,
                keep_secrets: *keep_secrets,
            };
            let imported = har::import(&text, &options)
                .with_context(|| format!("importing {}", file.display()))?;
            (imported, file.display().to_string())
        }
    };
    write_out(&imported, &source)
}

/// Checks the scenario, prints it, and lists what was left out.
fn write_out(imported: &Imported, source: &str) -> anyhow::Result<u8> {
    let scratch = tempfile::tempdir().context("making a scratch folder")?;
    if let Err(error) = crate::scenario::parse(&imported.toml, "<imported>", scratch.path()) {
        bail!(
            "the scenario written from {source} does not pass the checker ({error}): this is a \
             bug of the importer, please report it with the source"
        );
    }
    let mut out = std::io::stdout().lock();
    match out
        .write_all(imported.toml.as_bytes())
        .and_then(|()| out.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e).context("writing to stdout");
        }
        _ => {}
    }
    if imported.untranslated.is_empty() {
        return Ok(EXIT_OK);
    }
    eprintln!(
        "loadgen import: {} part(s) of {source} not translated (each is a comment in the \
         scenario):",
        imported.untranslated.len()
    );
    for left in &imported.untranslated {
        eprintln!("  {}: {}", left.place, left.why);
    }
    Ok(EXIT_PARTIAL)
}

/// A file's text, or an http(s) URL's body (a 2xx answer).
async fn read_source(source: &str) -> anyhow::Result<String> {
    if !(source.starts_with("http://") || source.starts_with("https://")) {
        return std::fs::read_to_string(source).with_context(|| format!("cannot read {source}"));
    }
    let url = url::Url::parse(source).with_context(|| format!("{source} is not a URL"))?;
    let origin = url.origin().ascii_serialization();
    let mut path = url.path().to_owned();
    if let Some(query) = url.query() {
        path = format!("{path}?{query}");
    }
    let tls = crate::http::tls::client_config(&crate::http::tls::TlsSettings::default())
        .context("setting up TLS")?;
    let target = crate::http::Target::resolve(&origin, Some(&tls))
        .await
        .with_context(|| format!("cannot reach {source}"))?;
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
    .map_err(|e| anyhow::anyhow!("fetching {source}: {e}"))?
    .map_err(|e| anyhow::anyhow!("fetching {source}: {e}"))?;
    if !(200..300).contains(&answer.status) {
        bail!("fetching {source}: HTTP {}", answer.status);
    }
    String::from_utf8(answer.body.to_vec())
        .with_context(|| format!("{source}: the answer is not UTF-8 text"))
}
