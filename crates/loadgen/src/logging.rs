//! How log lines look: Locust's line by default, so that a CI job or a log scraper written for
//! Locust's output reads ours (`[2026-12-04 08:49:50,101] host/INFO/locust.runners: Ramping to
//! 10 users at a rate of 2.00 per second`), or one JSON object a line (`--log-format json`) for
//! log pipelines. The logger name is the event's target with `::` written `.`: the messages
//! Locust also logs carry Locust's logger names as their targets (`locust.main`,
//! `locust.runners`), loadgen's own the module's path (`loadgen.runner`).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The log's format (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Locust's line: `[date time,ms] host/LEVEL/logger: message`.
    #[default]
    Locust,
    /// One JSON object a line: `timestamp`, `level`, `logger`, `host`, `message`, and the
    /// event's other fields.
    Json,
}

/// Formats events as `format` says.
#[derive(Debug, Clone)]
pub struct Formatter {
    format: LogFormat,
    host: String,
}

impl Formatter {
    /// A formatter of `format`, naming this machine as Locust does (its host name up to the
    /// first dot).
    pub fn new(format: LogFormat) -> Self {
        let host = sysinfo::System::host_name().unwrap_or_default();
        let host = host.split('.').next().unwrap_or_default().to_owned();
        Self { format, host }
    }
}

/// Python's level names.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// The logger name of a target: `loadgen::runner` is `loadgen.runner`.
fn logger(target: &str) -> String {
    target.replace("::", ".")
}

/// The event's message and its other fields.
#[derive(Default)]
struct Fields {
    message: String,
    others: serde_json::Map<String, serde_json::Value>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.others.insert(field.name().to_owned(), value.into());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.others.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.others.insert(field.name().to_owned(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.others.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.others.insert(field.name().to_owned(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.others
                .insert(field.name().to_owned(), format!("{value:?}").into());
        }
    }
}

impl<S, N> FormatEvent<S, N> for Formatter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        // Python's asctime: local time, milliseconds after a comma.
        let now = chrono::Local::now();
        match self.format {
            LogFormat::Locust => {
                write!(
                    writer,
                    "[{}] {}/{}/{}: {}",
                    now.format("%Y-%m-%d %H:%M:%S,%3f"),
                    self.host,
                    level_name(metadata.level()),
                    logger(metadata.target()),
                    fields.message
                )?;
                for (key, value) in &fields.others {
                    match value {
                        serde_json::Value::String(text) => write!(writer, " {key}={text}")?,
                        other => write!(writer, " {key}={other}")?,
                    }
                }
                writeln!(writer)
            }
            LogFormat::Json => {
                let mut line = serde_json::Map::new();
                line.insert("timestamp".into(), now.to_rfc3339().into());
                line.insert("level".into(), level_name(metadata.level()).into());
                line.insert("logger".into(), logger(metadata.target()).into());
                line.insert("host".into(), self.host.clone().into());
                line.insert("message".into(), fields.message.into());
                for (key, value) in fields.others {
                    line.entry(key).or_insert(value);
                }
                writeln!(writer, "{}", serde_json::Value::Object(line))
            }
        }
    }
}

/// Users by type as Locust's "All users spawned" line gives them: `{"A": 1, "B": 2} (3 total
/// users)`, the types sorted by name.
pub fn user_counts<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let sorted: std::collections::BTreeMap<&str, u64> = counts.into_iter().collect();
    let total: u64 = sorted.values().sum();
    let entries: Vec<String> = sorted
        .iter()
        .map(|(name, n)| format!("{}: {n}", serde_json::Value::from(*name)))
        .collect();
    format!("{{{}}} ({total} total users)", entries.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    /// The lines `format` makes of a few events.
    fn lines(format: LogFormat) -> Vec<String> {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(Formatter::new(format))
                .with_writer(move || Sink(sink.clone())),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "locust.runners", "Ramping to {} users", 3);
            tracing::warn!(users = 2, "short of users");
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn user_counts_are_written_as_locusts_json_dict() {
        assert_eq!(
            user_counts([("Reader", 1), ("Missing", 2)]),
            r#"{"Missing": 2, "Reader": 1} (3 total users)"#
        );
    }

    #[test]
    fn lines_are_locusts_by_default_and_json_when_asked() {
        let locust = lines(LogFormat::Locust);
        let shape = |line: &str, level: &str, logger: &str, message: &str| {
            // [2026-12-04 08:49:50,101] host/INFO/locust.runners: message
            let (stamp, rest) = line.split_once("] ").unwrap_or_default();
            let (_host, rest) = rest.split_once('/').unwrap_or_default();
            stamp.len() == 24
                && stamp.as_bytes()[20] == b','
                && rest == format!("{level}/{logger}: {message}")
        };
        assert!(
            shape(&locust[0], "INFO", "locust.runners", "Ramping to 3 users"),
            "{locust:?}"
        );
        assert!(
            shape(
                &locust[1],
                "WARNING",
                "loadgen.logging.tests",
                "short of users users=2"
            ),
            "{locust:?}"
        );
        let json: Vec<serde_json::Value> = lines(LogFormat::Json)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(json[0]["logger"], "locust.runners");
        assert_eq!(json[0]["message"], "Ramping to 3 users");
        assert_eq!(
            (&json[1]["level"], &json[1]["users"]),
            (&"WARNING".into(), &2.into())
        );
    }
}
