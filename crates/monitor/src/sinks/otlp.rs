//! OpenTelemetry export: every figure of every tick as an OTLP gauge over HTTP/protobuf, with the
//! container, the PostgreSQL database and the Redis instance as attributes. The SDK's periodic
//! reader sends them on its own thread; `shutdown` flushes the last ones.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Gauge, Meter, MeterProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};

use crate::sample::Tick;

/// Where the figures go and which instances they describe.
pub struct Otlp {
    provider: SdkMeterProvider,
    meter: Meter,
    gauges: HashMap<String, Gauge<f64>>,
    postgres: Option<String>,
    redis: Option<String>,
}

/// `http://host:4318` becomes `http://host:4318/v1/metrics`; a URL with a path is kept.
pub fn metrics_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    match url::Url::parse(trimmed) {
        Ok(url) if url.path() == "/" || url.path().is_empty() => format!("{trimmed}/v1/metrics"),
        _ => trimmed.to_owned(),
    }
}

impl Otlp {
    /// Exports to `endpoint` every `interval`. `postgres` and `redis` name the watched
    /// instances (no passwords) for the attributes. Call from a blocking context: the exporter's
    /// HTTP client is a blocking one.
    pub fn new(
        endpoint: &str,
        interval: Duration,
        postgres: Option<String>,
        redis: Option<String>,
    ) -> Result<Self, String> {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(metrics_url(endpoint))
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("OTLP exporter for {endpoint}: {e}"))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(interval.max(Duration::from_millis(100)))
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(
                Resource::builder()
                    .with_service_name("loadtest-monitor")
                    .build(),
            )
            .build();
        let meter = provider.meter("monitor");
        Ok(Self {
            provider,
            meter,
            gauges: HashMap::new(),
            postgres,
            redis,
        })
    }

    /// Records every figure of `tick`.
    pub fn record(&mut self, tick: &Tick) {
        for metric in tick.metrics() {
            let mut attributes: Vec<KeyValue> = metric
                .labels
                .iter()
                .map(|(k, v)| KeyValue::new(*k, v.clone()))
                .collect();
            if metric.name.starts_with("postgres_")
                && let Some(database) = &self.postgres
            {
                attributes.push(KeyValue::new("database", database.clone()));
            }
            if metric.name.starts_with("redis_")
                && let Some(instance) = &self.redis
            {
                attributes.push(KeyValue::new("redis.instance", instance.clone()));
            }
            let meter = &self.meter;
            let gauge = self
                .gauges
                .entry(metric.name.clone())
                .or_insert_with(|| meter.f64_gauge(format!("monitor.{}", metric.name)).build());
            gauge.record(metric.value, &attributes);
        }
    }

    /// Sends what is left and stops. Call from a blocking context.
    pub fn shutdown(self) -> Result<(), String> {
        self.provider
            .force_flush()
            .map_err(|e| format!("OTLP flush: {e}"))?;
        self.provider
            .shutdown()
            .map_err(|e| format!("OTLP shutdown: {e}"))
    }
}

/// The exporter as a sink; [`super::Sink::finish`] flushes it off the async threads (its HTTP
/// client is a blocking one).
pub struct OtlpSink(pub Option<Otlp>);

#[async_trait::async_trait]
impl super::Sink for OtlpSink {
    fn name(&self) -> &'static str {
        "OTLP"
    }

    fn write(&mut self, tick: &Tick) -> Result<(), super::SinkError> {
        if let Some(otlp) = self.0.as_mut() {
            otlp.record(tick);
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), super::SinkError> {
        let Some(otlp) = self.0.take() else {
            return Ok(());
        };
        let error = |detail: String| super::SinkError {
            sink: "OTLP",
            detail,
        };
        tokio::task::spawn_blocking(move || otlp.shutdown())
            .await
            .map_err(|e| error(e.to_string()))?
            .map_err(error)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn adds_the_metrics_path() {
        assert_eq!(
            super::metrics_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/metrics"
        );
        assert_eq!(
            super::metrics_url("http://c:4318/"),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            super::metrics_url("http://c:4318/custom/path"),
            "http://c:4318/custom/path"
        );
    }
}
