//! The last lines loadgen logged, for the web UI's Logs tab: a tracing writer that keeps them
//! in a bounded ring.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Lines kept.
const KEPT: usize = 500;

static RING: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// The lines kept, oldest first.
pub fn recent() -> Vec<String> {
    RING.lock()
        .map(|ring| ring.iter().cloned().collect())
        .unwrap_or_default()
}

/// One log event being written; its lines join the ring when it is dropped.
#[derive(Default)]
pub struct RingWriter(Vec<u8>);

impl RingWriter {
    /// For `tracing_subscriber::fmt::layer().with_writer(RingWriter::new)`.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::io::Write for RingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        if let Ok(mut ring) = RING.lock() {
            for line in text.lines().filter(|l| !l.is_empty()) {
                if ring.len() == KEPT {
                    ring.pop_front();
                }
                ring.push_back(line.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn keeps_the_last_lines_only() {
        for i in 0..KEPT + 10 {
            let mut w = RingWriter::new();
            let _ = writeln!(w, "line {i}");
        }
        let lines = recent();
        assert_eq!(lines.len(), KEPT);
        assert_eq!(
            lines.last().map(String::as_str),
            Some(&*format!("line {}", KEPT + 9))
        );
    }
}
