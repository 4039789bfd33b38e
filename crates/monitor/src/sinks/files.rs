//! JSON Lines (one tick per line, every source) and CSV in long form
//! (`timestamp,tick,source,metric,labels,value`): stable columns whatever containers come and go.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use crate::sample::Tick;

/// Appends ticks as JSON Lines.
pub struct JsonLines(BufWriter<File>);

impl JsonLines {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self(BufWriter::new(File::create(path)?)))
    }

    /// Writes one tick and flushes, so a reader (or a crash) sees whole lines.
    pub fn write(&mut self, tick: &Tick) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.0, tick).map_err(std::io::Error::other)?;
        self.0.write_all(b"\n")?;
        self.0.flush()
    }
}

/// Reads ticks back from a JSON Lines file.
pub fn read_json_lines(path: &Path) -> std::io::Result<Vec<Tick>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
        .collect()
}

/// Appends ticks as CSV rows.
pub struct Csv(csv::Writer<File>);

impl Csv {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path) -> Result<Self, csv::Error> {
        let mut writer = csv::Writer::from_path(path)?;
        writer.write_record(["timestamp", "tick", "source", "metric", "labels", "value"])?;
        writer.flush()?;
        Ok(Self(writer))
    }

    /// Writes one row per figure of `tick`.
    pub fn write(&mut self, tick: &Tick) -> Result<(), csv::Error> {
        let timestamp = tick.timestamp.to_rfc3339();
        let number = tick.tick.to_string();
        for metric in tick.metrics() {
            let source = metric.name.split('_').next().unwrap_or("").to_owned();
            let labels: Vec<String> = metric
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            self.0.write_record([
                timestamp.as_str(),
                number.as_str(),
                source.as_str(),
                metric.name.as_str(),
                labels.join(";").as_str(),
                metric.value.to_string().as_str(),
            ])?;
        }
        self.0.flush()?;
        Ok(())
    }
}

fn error(sink: &'static str, detail: impl std::fmt::Display) -> super::SinkError {
    super::SinkError {
        sink,
        detail: detail.to_string(),
    }
}

impl super::Sink for JsonLines {
    fn name(&self) -> &'static str {
        "JSON Lines"
    }

    fn write(&mut self, tick: &Tick) -> Result<(), super::SinkError> {
        JsonLines::write(self, tick).map_err(|e| error("JSON Lines", e))
    }
}

impl super::Sink for Csv {
    fn name(&self) -> &'static str {
        "CSV"
    }

    fn write(&mut self, tick: &Tick) -> Result<(), super::SinkError> {
        Csv::write(self, tick).map_err(|e| error("CSV", e))
    }
}
