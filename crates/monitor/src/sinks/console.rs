//! One line per tick, with `!` after any value over its warning threshold.

use std::fmt::Write;

use crate::sample::{Tick, Values};
use crate::thresholds::{Level, Thresholds};

/// The line for `tick`.
pub fn line(tick: &Tick, thresholds: &Thresholds) -> String {
    let mut out = format!("{} #{:<4}", tick.timestamp.format("%H:%M:%S"), tick.tick);
    for (source, reading) in &tick.sources {
        let _ = write!(out, " | {source}: ");
        let Some(values) = &reading.values else {
            let _ = write!(out, "DOWN ({})", reading.error.as_deref().unwrap_or("?"));
            continue;
        };
        match values {
            Values::Docker(d) => {
                if d.containers.is_empty() {
                    out.push_str("no containers");
                }
                let parts: Vec<String> = d
                    .containers
                    .iter()
                    .map(|(name, c)| {
                        if c.state == "running" {
                            format!(
                                "{name} {:.0}% cpu {:.0} MB",
                                c.cpu_pct,
                                c.memory_bytes as f64 / 1e6
                            )
                        } else {
                            format!("{name} {}!", c.state)
                        }
                    })
                    .collect();
                out.push_str(&parts.join(", "));
            }
            Values::Postgres(p) => {
                let mark = if p.connections_pct >= 90.0 { "!" } else { "" };
                let _ = write!(
                    out,
                    "{}/{}{mark} conn, {} active, {} idle, {} idle-in-tx, {} blocked",
                    p.connections,
                    p.max_connections,
                    p.active,
                    p.idle,
                    p.idle_in_transaction,
                    p.blocked
                );
                for (kind, n) in &p.waiting {
                    let _ = write!(out, ", {n} wait {kind}");
                }
            }
            Values::Redis(r) => {
                let _ = write!(
                    out,
                    "{} clients, {} blocked, {:.0} ops/s",
                    r.connected_clients, r.blocked_clients, r.ops_per_sec
                );
                for (list, length) in &r.lists {
                    let _ = write!(out, ", {list}={length}");
                }
                if r.celery.unacked > 0 {
                    let _ = write!(out, ", {} unacked", r.celery.unacked);
                }
                // A task failure as it is read: the exception and where it was raised.
                for failure in &r.celery.failures {
                    let at = failure
                        .frame
                        .as_ref()
                        .map(|f| format!(" at {}", f.short()))
                        .unwrap_or_default();
                    let _ = write!(
                        out,
                        ", {}x {} FAILED: {}{at}",
                        failure.count,
                        failure.short_task(),
                        failure.exception
                    );
                }
            }
            Values::Host(h) => {
                let mark =
                    |value, check: fn(&Thresholds, f64) -> Level| match check(thresholds, value) {
                        Level::Ok => "",
                        Level::OverTarget => "+",
                        Level::Warning => "!",
                    };
                let _ = write!(
                    out,
                    "cpu {:.0}%{} mem {:.0}%{} disk {:.0}%{} net {:.0}%{}",
                    h.cpu_pct,
                    mark(h.cpu_pct, Thresholds::cpu),
                    h.memory_pct,
                    mark(h.memory_pct, Thresholds::memory),
                    h.disk_pct,
                    mark(h.disk_pct, Thresholds::disk),
                    h.net_pct,
                    mark(h.net_pct, Thresholds::network)
                );
            }
            Values::Profiles(p) => out.push_str(&profiles(p)),
        }
    }
    let _ = write!(out, " | spread {:.1} ms", tick.spread_ms);
    out
}

/// `uvicorn 4242 50 samples, celery 4250 50 samples`.
fn profiles(p: &crate::sample::profile::ProfilesValues) -> String {
    let parts: Vec<String> = p
        .processes
        .iter()
        .map(|pr| format!("{} {} {} samples", pr.name, pr.pid, pr.samples))
        .collect();
    parts.join(", ")
}

/// Prints [`line`] for every tick on stdout.
pub struct Console(pub Thresholds);

impl super::Sink for Console {
    fn name(&self) -> &'static str {
        "console"
    }

    fn write(&mut self, tick: &Tick) -> Result<(), super::SinkError> {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{}", line(tick, &self.0)) {
            // Nobody reads the console any more (`monitor | head`): the other sinks go on.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(super::SinkError {
                sink: "console",
                detail: e.to_string(),
            }),
            Ok(()) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::celery::{CeleryValues, Frame, TaskFailure};
    use crate::sample::{RedisValues, SourceReading};

    #[test]
    fn a_redis_line_names_the_celery_failures_read_in_the_tick() {
        let redis = RedisValues {
            celery: CeleryValues {
                failures: vec![TaskFailure {
                    task: "app.worker.audio_overlay".into(),
                    exception: "PendingRollbackError".into(),
                    frame: Some(Frame {
                        file: "/srv/app/worker.py".into(),
                        line: 168,
                        function: "audio_overlay".into(),
                    }),
                    count: 3,
                    ..TaskFailure::default()
                }],
                unacked: 2,
                ..CeleryValues::default()
            },
            ..RedisValues::default()
        };
        let tick = Tick {
            tick: 1,
            timestamp: chrono::Utc::now(),
            spread_ms: 0.0,
            sources: [(
                "redis".to_owned(),
                SourceReading {
                    at: chrono::Utc::now(),
                    up: true,
                    error: None,
                    values: Some(Values::Redis(redis)),
                    notes: Vec::new(),
                },
            )]
            .into(),
        };
        let line = line(&tick, &Thresholds::default());
        assert!(
            line.contains(
                ", 2 unacked, 3x audio_overlay FAILED: PendingRollbackError at app/worker.py:168 in `audio_overlay`"
            ),
            "{line}"
        );
    }
}
