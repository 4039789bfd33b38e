//! Where ticks go, each behind the [`Sink`] trait: the console, JSON Lines and CSV files, the
//! HTTP endpoint, OTLP, the end-of-run summary, and [`Collect`] (loadgen's in-process
//! collector). The sampler hands every tick to a [`Sinks`] fan-out; a sink that fails keeps
//! failing alone, and its first error is reported at the end.

pub mod console;
pub mod files;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "http")]
pub mod prometheus;
pub mod summary;

use crate::sample::Tick;

/// Why a sink could not take a tick.
#[derive(Debug, thiserror::Error)]
#[error("{sink}: {detail}")]
pub struct SinkError {
    /// Which sink.
    pub sink: &'static str,
    /// What went wrong.
    pub detail: String,
}

/// Something that takes every tick.
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Its name in error messages.
    fn name(&self) -> &'static str;
    /// Takes one tick.
    fn write(&mut self, tick: &Tick) -> Result<(), SinkError>;
    /// Called once after the last tick: flush, print, shut down.
    async fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Keeps every tick in memory: loadgen's in-process monitor.
#[derive(Debug, Default)]
pub struct Collect(pub Vec<Tick>);

impl Sink for Collect {
    fn name(&self) -> &'static str {
        "collector"
    }

    fn write(&mut self, tick: &Tick) -> Result<(), SinkError> {
        self.0.push(tick.clone());
        Ok(())
    }
}

/// Several sinks fed the same ticks.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
    first_error: Option<SinkError>,
}

impl Sinks {
    /// Adds a sink.
    pub fn push(&mut self, sink: impl Sink + 'static) {
        self.sinks.push(Box::new(sink));
    }

    /// Hands `tick` to every sink; an error is kept (the first one) and the others go on.
    pub fn write(&mut self, tick: &Tick) {
        for sink in &mut self.sinks {
            if let Err(error) = sink.write(tick) {
                self.first_error.get_or_insert(error);
            }
        }
    }

    /// Finishes every sink in order; returns the first error of the whole run, if any.
    pub async fn finish(mut self) -> Result<(), SinkError> {
        for sink in &mut self.sinks {
            if let Err(error) = sink.finish().await {
                self.first_error.get_or_insert(error);
            }
        }
        self.first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;

    impl Sink for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn write(&mut self, _: &Tick) -> Result<(), SinkError> {
            Err(SinkError {
                sink: "failing",
                detail: "disk full".into(),
            })
        }
    }

    struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Sink for Counting {
        fn name(&self) -> &'static str {
            "counting"
        }
        fn write(&mut self, _: &Tick) -> Result<(), SinkError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failing_sink_fails_alone_and_its_error_is_kept() {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut sinks = Sinks::default();
        sinks.push(Failing);
        sinks.push(Counting(count.clone()));
        let tick = Tick {
            tick: 1,
            timestamp: chrono::Utc::now(),
            spread_ms: 0.0,
            sources: Default::default(),
        };
        sinks.write(&tick);
        sinks.write(&tick);
        assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 2);
        let error = sinks.finish().await.unwrap_err().to_string();
        assert_eq!(error, "failing: disk full");
    }
}
