//! `--config FILE`: flags kept in a TOML file, as Locust keeps them in `locust.conf`. Keys are
//! the long flag names (`spawn-rate` or `spawn_rate`), values what the flag takes:
//!
//! ```toml
//! host = "http://127.0.0.1:8000"
//! users = 100
//! spawn-rate = 10
//! run-time = "5m"
//! headless = true
//! csv = "results"
//! target = ["p95=800ms", "failure=1%"]
//! ```
//!
//! Locust's own files work too: a `locust.conf` (`key = value` lines, `tags = [a, b]`) and the
//! `[tool.locust]` table of a `pyproject.toml`.
//!
//! The file is read into the same flags the command line has, so every value is checked by the
//! same parsers. A flag given on the command line or by its `LOADGEN_*` variable wins over the
//! file (clap's `value_source` says which were given); the file wins over `--load-profile`.
//! Without --config too, Locust's own files are found as Locust finds them: `~/.locust.conf`,
//! `./locust.conf`, then `./pyproject.toml`'s `[tool.locust]` (a later one beats an earlier
//! one; --config beats them all).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

use super::Cli;

/// A command line that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The flags themselves (clap prints and exits with its own codes).
    #[error(transparent)]
    Flags(#[from] clap::Error),
    /// The config file.
    #[error("config file {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// The file's settings, whichever of the three forms it has: our TOML, `[tool.locust]` in a
/// `pyproject.toml`, or Locust's `locust.conf` (`key = value` lines).
fn settings(path: &Path, text: &str) -> Result<toml::Table, String> {
    let is_pyproject = path.file_name().is_some_and(|n| n == "pyproject.toml");
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    match text.parse::<toml::Table>() {
        Ok(mut table) => {
            let locust = table
                .get_mut("tool")
                .and_then(|tool| tool.as_table_mut())
                .and_then(|tool| tool.remove("locust"));
            match locust {
                Some(toml::Value::Table(locust)) => Ok(locust),
                Some(_) => Err("[tool.locust] is not a table".into()),
                None if is_pyproject => Err("has no [tool.locust] table".into()),
                None => Ok(table),
            }
        }
        // A `.toml` file is TOML: its mistakes are reported as such.
        Err(_) if !is_toml && looks_like_locust_conf(text) => Ok(locust_conf(text)),
        Err(e) => Err(format!("not TOML: {}", first_line(&e.to_string()))),
    }
}

/// Whether every line is blank, a comment, a `[section]` or `key = value`.
fn looks_like_locust_conf(text: &str) -> bool {
    text.lines().map(str::trim).all(|line| {
        line.is_empty()
            || line.starts_with('#')
            || line.starts_with(';')
            || (line.starts_with('[') && line.ends_with(']'))
            || line
                .split_once(['=', ':'])
                .is_some_and(|(k, _)| !k.trim().is_empty())
    })
}

/// Locust's `locust.conf` (configargparse's format): `users = 100`, `headless = true`,
/// `tags = [a, b]`; values are untyped text, so each goes to the flag's own parser.
fn locust_conf(text: &str) -> toml::Table {
    let mut table = toml::Table::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';', '[']) {
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            continue;
        };
        let value = value.trim().trim_matches(['"', '\'']);
        let value = match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "no" | "off" => toml::Value::Boolean(false),
            _ => toml::Value::String(
                value
                    .strip_prefix('[')
                    .and_then(|v| v.strip_suffix(']'))
                    .map_or(value.to_owned(), |list| {
                        list.split(',').map(str::trim).collect::<Vec<_>>().join(",")
                    }),
            ),
        };
        table.insert(key.trim().to_owned(), value);
    }
    table
}

/// Parses `args` (the program name first), then adds what the `--config` file sets and the
/// command line and environment do not.
pub fn parse<I, T>(args: I) -> Result<Cli, ParseError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    // `loadgen capacity FLAGS`: a run's flags and the search's, read as one command line.
    let capacity = args.get(1).is_some_and(|word| word == "capacity");
    if capacity {
        args.remove(1);
        if let Some(program) = args.first_mut() {
            program.push(" capacity");
        }
    }
    let mut cli = parse_flags(&args)?;
    cli.capacity.asked = capacity;
    // Locust's --headful undoes a --headless that a config file set.
    if cli.locust.headful {
        cli.headless = false;
    }
    Ok(cli)
}

/// Locust's config files, found without --config, in its order (a later one beats an earlier
/// one, and --config beats them all): `~/.locust.conf`, `./locust.conf`, and `./pyproject.toml`
/// when it has a `[tool.locust]` table.
fn default_config_files() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".locust.conf"));
    let mut found: Vec<PathBuf> = home
        .into_iter()
        .chain([PathBuf::from("locust.conf")])
        .filter(|p| p.is_file())
        .collect();
    let pyproject = Path::new("pyproject.toml");
    let has_table = std::fs::read_to_string(pyproject).is_ok_and(|text| {
        text.parse::<toml::Table>().is_ok_and(|t| {
            t.get("tool")
                .and_then(|tool| tool.get("locust"))
                .is_some_and(toml::Value::is_table)
        })
    });
    if has_table {
        found.push(pyproject.to_path_buf());
    }
    found
}

/// [`parse`] of a command line without the `capacity` word.
fn parse_flags(args: &[OsString]) -> Result<Cli, ParseError> {
    let matches = command().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    if cli.command.is_some() {
        // `loadgen scenario show` and `loadgen demo` take no load flags.
        return Ok(cli);
    }
    let mut files = default_config_files();
    files.extend(cli.config.clone());
    let Some(path) = files.last().cloned() else {
        return Ok(cli);
    };
    // A later file's setting replaces an earlier one's.
    let mut flags: Vec<(String, String)> = Vec::new();
    for file in &files {
        let of_file = file_flags(file).map_err(|message| ParseError::File {
            path: file.clone(),
            message,
        })?;
        for (id, token) in of_file {
            flags.retain(|(earlier, _)| *earlier != id);
            flags.push((id, token));
        }
    }
    let file_error = |message: String| ParseError::File {
        path: if files.len() == 1 {
            path.clone()
        } else {
            PathBuf::from(
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        },
        message,
    };
    let given = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let mut merged: Vec<OsString> = args.first().cloned().into_iter().collect();
    for (id, token) in flags {
        if !given(&id) {
            merged.push(token.into());
        }
    }
    merged.extend(args.iter().skip(1).cloned());
    command()
        .try_get_matches_from(merged)
        .and_then(|matches| Cli::from_arg_matches(&matches))
        .map_err(|e| {
            let line = first_line(&e.to_string());
            file_error(line.trim_start_matches("error: ").to_owned())
        })
}

/// The command line, where every flag also reads Locust's variable (`LOCUST_USERS`,
/// `LOCUST_RUN_TIME`, ...) when loadgen's own (`LOADGEN_USERS`) is not set, so that CI jobs
/// written for Locust keep their settings.
fn command() -> clap::Command {
    // As argparse: a flag given twice takes its last value (repeatable flags still add up).
    let mut command = Cli::command().args_override_self(true);
    // Locust's switches read `1`, `True`, `yes`, `on` (and their opposites) from the
    // environment, as configargparse does.
    let switches: Vec<String> = command
        .get_arguments()
        .filter(|arg| matches!(arg.get_action(), clap::ArgAction::SetTrue))
        .map(|arg| arg.get_id().to_string())
        .collect();
    for id in switches {
        command = command.mut_arg(id, |arg| {
            arg.value_parser(clap::builder::BoolishValueParser::new())
        });
    }
    let renamed: Vec<(String, &'static str)> = command
        .get_arguments()
        .filter_map(|arg| {
            let ours = arg.get_env()?.to_str()?;
            // Locust's own name first (`LOCUST_LOCUSTFILE`), then ours with its prefix
            // (`LOCUST_SCENARIO`), whichever is set.
            let derived = format!("LOCUST_{}", ours.strip_prefix("LOADGEN_")?);
            let locusts = LOCUST_NAMES
                .iter()
                .find(|(loadgen, _)| *loadgen == ours)
                .map(|(_, locust)| (*locust).to_owned());
            let theirs = locusts
                .into_iter()
                .chain([derived])
                .find(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))?;
            let use_theirs = std::env::var_os(ours).is_none();
            // Leaked once per flag at start-up: clap keeps `&'static str` names.
            use_theirs.then(|| (arg.get_id().to_string(), &*theirs.leak()))
        })
        .collect();
    for (id, theirs) in renamed {
        command = command.mut_arg(id, |arg| arg.env(theirs));
    }
    command
}

/// Locust's variables whose names are not `LOCUST_` and the rest of ours (the derived name,
/// `LOCUST_MASTER_HOST`, is read too).
const LOCUST_NAMES: [(&str, &str); 7] = [
    ("LOADGEN_SCENARIO", "LOCUST_LOCUSTFILE"),
    ("LOADGEN_CLASS_PICKER", "LOCUST_USERCLASS_PICKER"),
    ("LOADGEN_MASTER", "LOCUST_MODE_MASTER"),
    ("LOADGEN_WORKER", "LOCUST_MODE_WORKER"),
    ("LOADGEN_MASTER_HOST", "LOCUST_MASTER_NODE_HOST"),
    ("LOADGEN_MASTER_PORT", "LOCUST_MASTER_NODE_PORT"),
    ("LOADGEN_OTEL", "LOCUST_ENABLE_OPENTELEMETRY"),
];

/// The file's settings as `--flag=value` tokens, with the id of the flag each sets.
fn file_flags(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let table = settings(path, &text)?;
    let command = Cli::command();
    let settable: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| {
            a.get_long()
                .is_some_and(|l| !matches!(l, "config" | "help" | "version"))
        })
        .collect();
    let mut tokens = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let Some(arg) = settable.iter().find(|a| {
            a.get_long() == Some(long.as_str())
                || a.get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(&long.as_str()))
        }) else {
            let keys: Vec<&str> = settable.iter().filter_map(|a| a.get_long()).collect();
            return Err(format!(
                "unknown key `{key}` (keys are the long flags: {})",
                keys.join(", ")
            ));
        };
        let id = arg.get_id().to_string();
        let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let text = match value {
            toml::Value::Boolean(true) if is_switch => {
                tokens.push((id, format!("--{long}")));
                continue;
            }
            toml::Value::Boolean(false) if is_switch => continue,
            // A switch set by text, as Locust's files write them: `headless = 1`.
            toml::Value::String(text) if is_switch => {
                match text.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "1" => tokens.push((id, format!("--{long}"))),
                    "false" | "no" | "off" | "0" => {}
                    _ => {
                        return Err(format!(
                            "`{key}` = {text:?}: write true or false (or yes/no, on/off, 1/0)"
                        ));
                    }
                }
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    toml::Value::Integer(n) => Ok(n.to_string()),
                    toml::Value::Float(x) => Ok(x.to_string()),
                    other => Err(format!("`{key}`: {other} is not a value for --{long}")),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => return Err(format!("`{key}`: {other} is not a value for --{long}")),
        };
        tokens.push((id, format!("--{long}={text}")));
    }
    Ok(tokens)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loadgen.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path.display().to_string())
    }

    #[test]
    fn the_file_sets_flags_and_the_command_line_beats_it() {
        let (_dir, path) = config(
            "host = 'http://api:8000'\nusers = 40\nspawn_rate = 4\nrun-time = '2m'\n\
             only-summary = true\nheadless = false\ntarget = ['p95=800ms', 'users=40']\n",
        );
        let cli = parse(["loadgen", "--config", &path, "-u", "7"]).unwrap();
        assert_eq!(cli.host.as_deref(), Some("http://api:8000"));
        assert_eq!(cli.users, Some(7), "the flag wins");
        assert_eq!(cli.spawn_rate, Some(4.0));
        assert_eq!(cli.run_time, Some(Duration::from_secs(120)));
        assert!(cli.only_summary && !cli.headless);
        assert_eq!(cli.targets.len(), 2);
        // The file beats --load-profile: users from the file, the rest from the profile.
        let (_dir, path) = config("users = 3\nload-profile = 'smoke'\n");
        let shape = parse(["loadgen", "--config", &path])
            .unwrap()
            .load_shape()
            .unwrap();
        assert_eq!(shape, (3, 1.0, Some(Duration::from_secs(30))));
    }

    /// Locust's own files: `locust.conf` lines and `[tool.locust]` in `pyproject.toml`.
    #[test]
    fn reads_locust_conf_and_pyproject() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("locust.conf");
        std::fs::write(
            &conf,
            "# a comment\n[locust]\nhost = http://api:8000\nusers = 12\nspawn-rate: 3\n\
             run-time = 1m\nheadless = true\ntags = [Critical, Normal]\nexclude-tags = slow\n",
        )
        .unwrap();
        let cli = parse(["loadgen", "--config", &conf.display().to_string()]).unwrap();
        assert_eq!(cli.host.as_deref(), Some("http://api:8000"));
        assert_eq!((cli.users, cli.spawn_rate), (Some(12), Some(3.0)));
        assert_eq!(cli.run_time, Some(Duration::from_secs(60)));
        assert!(cli.headless);
        assert_eq!(cli.tags, ["Critical", "Normal"]);
        assert_eq!(cli.exclude_tags, ["slow"]);

        let pyproject = dir.path().join("pyproject.toml");
        std::fs::write(
            &pyproject,
            "[project]\nname = 'x'\n\n[tool.locust]\nusers = 9\nrun-time = '10s'\nlocustfile = 'x.toml'\n",
        )
        .unwrap();
        let cli = parse(["loadgen", "--config", &pyproject.display().to_string()]).unwrap();
        assert_eq!(
            (cli.users, cli.run_time),
            (Some(9), Some(Duration::from_secs(10)))
        );
        assert_eq!(
            cli.scenario.as_deref(),
            Some(std::path::Path::new("x.toml"))
        );
        std::fs::write(&pyproject, "[project]\nname = 'x'\n").unwrap();
        let error = parse(["loadgen", "--config", &pyproject.display().to_string()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("no [tool.locust] table"), "{error}");
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let (_dir, path) = config("users = 5\nuserz = 6\n");
        let error = parse(["loadgen", "--config", &path])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown key `userz`") && error.contains(&path),
            "{error}"
        );
        let (_dir, path) = config("users = 'many'\n");
        let error = parse(["loadgen", "--config", &path])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("'many'") && error.contains("--users"),
            "{error}"
        );
        let (_dir, path) = config("users = [\n");
        let error = parse(["loadgen", "--config", &path])
            .unwrap_err()
            .to_string();
        assert!(error.contains("not TOML"), "{error}");
        let error = parse(["loadgen", "--config", "/nonexistent/loadgen.toml"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot read it"), "{error}");
    }
}
