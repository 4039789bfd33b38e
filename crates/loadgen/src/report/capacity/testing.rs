//! Capacity reports made to order for the writers' unit tests: a search with figures chosen so
//! that the edge, the knee and its cause are known, built through [`CapacityReport::new`] as
//! the search builds its own.

use super::{Answer, CapacityReport, Gauges, StepKind, StepReport, StepVerdict};
use crate::arrival::Rate;
use crate::config::capacity::CapacityPlan;
use crate::diagnosis::{Finding, Layer, Severity};

/// One judged step at `rate` per second: `throughput` req/s, p50/p95/p99 in ms.
pub(crate) fn step(
    number: usize,
    kind: StepKind,
    rate: u64,
    throughput: f64,
    [p50, p95, p99]: [f64; 3],
    verdict: StepVerdict,
) -> StepReport {
    let judged_secs = 15.0;
    let requests = (throughput * judged_secs) as u64;
    StepReport {
        number,
        kind,
        rate: Rate::per_second(rate),
        rate_per_sec: rate as f64,
        judged_secs,
        requests,
        failures: 0,
        failure_pct: 0.0,
        throughput_rps: throughput,
        iterations_per_sec: throughput,
        p50_ms: p50,
        p95_ms: p95,
        p99_ms: p99,
        avg_ms: p50,
        unanswered: 0,
        scheduled: rate * 15,
        dropped: 0,
        rate_limited: 0,
        verdict,
        missed: match verdict {
            StepVerdict::Broke => vec![format!("p95 {}, not < 500 ms", crate::targets::ms(p95))],
            _ => Vec::new(),
        },
        void_because: (verdict == StepVerdict::Void)
            .then(|| "loadgen's CPU saturated: iterations started late".to_owned()),
        gauges: Gauges {
            loadgen_cpu_pct: 10.0,
            in_flight: throughput * p50 / 1000.0,
            db_active: Some((rate as f64 / 10.0).min(10.0)),
            ..Gauges::default()
        },
        findings: Vec::new(),
        interrupted: false,
    }
}

/// The database pool, all busy: the cause at the knee.
pub(crate) fn pool_finding() -> Finding {
    Finding::new(
        "postgres.pool_exhausted",
        Layer::Postgres,
        Severity::Critical,
        "Requests wait for the database pool",
        "10 of 10 connections busy for 14 of 15 s",
        "Raise the pool (DB_POOL_SIZE) or make the queries shorter",
    )
}

/// A search under `p95<500ms` that climbed 10, 20, 40, 80/s, broke at 80/s, and narrowed the
/// edge to 50/s held, 60/s broke (the pool all busy from 60/s), with `answer` as its answer.
pub(crate) fn report_with(answer: Answer) -> CapacityReport {
    use StepKind::{Bisect, Climb};
    use StepVerdict::{Broke, Held};
    let plan = CapacityPlan::new("p95<500ms,failures<1%".parse().unwrap());
    let mut steps = vec![
        step(1, Climb, 10, 10.0, [20.0, 40.0, 60.0], Held),
        step(2, Climb, 20, 20.0, [22.0, 45.0, 70.0], Held),
        step(3, Climb, 40, 39.8, [30.0, 120.0, 200.0], Held),
        step(4, Climb, 80, 44.0, [900.0, 1900.0, 2500.0], Broke),
        step(5, Bisect, 60, 45.0, [400.0, 800.0, 1100.0], Broke),
        step(6, Bisect, 50, 49.5, [60.0, 300.0, 420.0], Held),
    ];
    steps[3].findings = vec![pool_finding()];
    steps[4].findings = vec![pool_finding()];
    CapacityReport::new(
        crate::scenario::ScenarioIdentity {
            user_types: vec!["Reader".into()],
            requests: vec!["GET /api/v1/tasks".into()],
        },
        "http://127.0.0.1:8080",
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_600),
        plan,
        steps,
        answer,
    )
}

/// [`report_with`] as the search answers it: about 50/s, 60/s broke.
pub(crate) fn searched() -> CapacityReport {
    report_with(Answer::Between {
        held: Some(Rate::per_second(50)),
        broke: Rate::per_second(60),
    })
}
