//! What the load saw: the API's answers (refusals, rate limits, 401s, 5xx, slow endpoints,
//! costly start-up), the scenario's own errors, and a throughput plateau as users rise.

use super::{Evidence, Finding, Layer, Severity};
use crate::stats::overlap::StartupOverlap;
use crate::stats::{FailureKind, HistoryRow, Phase, STUCK_AFTER};

/// Not one request completed.
pub fn no_requests(e: &Evidence<'_>) -> Vec<Finding> {
    if e.total_requests() > 0 {
        return Vec::new();
    }
    vec![Finding {
        rule: "load.no_requests",
        layer: Layer::Load,
        severity: Severity::Critical,
        title: "No request completed".into(),
        evidence: "0 requests in the whole run".into(),
        action: "Check --host, and that the run time is longer than the users' start-up".into(),
        cause_of: Vec::new(),
        explains: None,
        explained_by: None,
    }]
}

/// The open model over the API's capacity (issue 25): the API answered fewer requests than
/// the schedule sent, so they queued and the latency grew through the run; iterations dropped
/// with the users at their cap, all waiting on it, are the API's capacity too, not the
/// generator's (only the generator's own CPU is, and then this rule stays silent).
pub fn over_capacity(e: &Evidence<'_>) -> Vec<Finding> {
    let Some(over) = e.over_capacity() else {
        return Vec::new();
    };
    let asked = if over.per_iteration >= 1.05 {
        format!(
            "asked {:.1} iterations/s ({:.1} req/s at {:.1} requests each)",
            over.asked_per_sec,
            over.asked_per_sec * over.per_iteration,
            over.per_iteration
        )
    } else {
        format!("asked {:.1}/s", over.asked_per_sec)
    };
    let mut evidence = format!(
        "{asked}, answered {:.1}/s; p50 from {} in the first third of the run to {} in the last",
        over.answered_per_sec,
        thousands_ms(over.early_p50_ms),
        thousands_ms(over.late_p50_ms)
    );
    if over.dropped > 0 {
        evidence.push_str(&format!(
            "; {} iterations dropped: the users, at their cap of {}, were all waiting on the API",
            over.dropped,
            e.users_cap.unwrap_or(e.peak_users)
        ));
    }
    vec![
        Finding::new(
            "load.over_capacity",
            Layer::Api,
            Severity::Critical,
            format!(
                "Over capacity: the API answers about {:.0} req/s, less than the rate asked",
                over.answered_per_sec
            ),
            evidence,
            "Work arrives faster than the API answers it, so it queues and latency grows \
             without bound: lower the rate below this capacity to measure latency, or raise \
             the capacity (more API workers or cores, the findings under this one)",
        )
        .causing(&[
            "load.slow_endpoints",
            "load.stuck_users",
            "load.plateau",
            "load.connections_closed",
        ]),
    ]
}

/// `ms` as `1,900 ms`: thousands grouped, for figures read at a glance.
fn thousands_ms(ms: f64) -> String {
    let whole = ms.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped} ms")
}

/// Users waiting for answers that do not come (issue 22: with 5 % of the requests never
/// answered, every user was stuck from the second second on, and the answered requests alone
/// made a fast, passing run). Stuck users at the stop, or in any second, or timeouts: the
/// requests the API took and never answered.
pub fn stuck_users(e: &Evidence<'_>) -> Vec<Finding> {
    let stuck = e.stuck;
    let timed_out: u64 = e.stats.endpoints.values().map(|s| s.timed_out).sum();
    if stuck.peak == 0 && timed_out == 0 {
        return Vec::new();
    }
    let after = STUCK_AFTER.as_secs();
    let mut waiting: Vec<(String, u64)> = e
        .stats
        .endpoints
        .iter()
        .filter(|(k, s)| k.phase != Phase::Poll && !s.unanswered.is_empty())
        .map(|(k, s)| (format!("{} {}", k.method, k.name), s.unanswered.len()))
        .collect();
    waiting.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let on = waiting
        .iter()
        .take(3)
        .map(|(name, n)| format!("{name} ({n})"))
        .collect::<Vec<_>>()
        .join(", ");
    let timeouts = (timed_out > 0).then(|| {
        let timed_out_on = e
            .stats
            .endpoints
            .iter()
            .filter(|(_, s)| s.timed_out > 0)
            .max_by_key(|(_, s)| s.timed_out)
            .map_or(String::new(), |(k, s)| {
                format!(", most on {} {} ({})", k.method, k.name, s.timed_out)
            });
        format!("{timed_out} requests timed out{timed_out_on}")
    });
    let action = "The API took these requests and never answered them (a deadlock, a lost worker, a call to an upstream without a timeout): look for them in the API's logs and its threads at those times; a timeout in the API would turn them into errors. loadgen fails a request after --request-timeout (60 s by default, or the step's timeout)";
    let cause_of = vec![
        "load.slow_endpoints",
        "load.plateau",
        "load.scenario_errors",
    ];
    if stuck.peak == 0 {
        let share = timed_out as f64 * 100.0 / e.total_requests().max(1) as f64;
        return vec![Finding {
            rule: "load.stuck_users",
            layer: Layer::Api,
            severity: if share >= e.targets.failure_pct {
                Severity::Critical
            } else {
                Severity::Warning
            },
            title: format!("{timed_out} requests timed out waiting for answers"),
            evidence: format!(
                "{} ({share:.2}% of requests): no complete answer within their timeout",
                timeouts.unwrap_or_default()
            ),
            action: action.into(),
            cause_of,
            explains: None,
            explained_by: None,
        }];
    }
    let mut evidence = format!(
        "{} of {} users waited more than {after} s for one answer{}",
        stuck.peak,
        e.peak_users,
        stuck
            .first_secs
            .map_or(String::new(), |s| format!(", from {s} s into the run"))
    );
    if e.stats.in_flight_at_stop > 0 {
        evidence.push_str(&format!(
            "; {} requests still unanswered when the run stopped ({} of them for more than {after} s, the oldest for {:.1} s), on {on}: in the percentiles at their age",
            e.stats.in_flight_at_stop,
            stuck.at_stop,
            stuck.oldest_at_stop_ms as f64 / 1000.0
        ));
    }
    if let Some(timeouts) = timeouts {
        evidence.push_str(&format!("; {timeouts}"));
    }
    vec![Finding {
        rule: "load.stuck_users",
        layer: Layer::Api,
        severity: if stuck.most_of(e.peak_users) {
            Severity::Critical
        } else {
            Severity::Warning
        },
        title: format!(
            "{} user{} stuck waiting for answers for more than {after} s",
            stuck.peak,
            if stuck.peak == 1 { "" } else { "s" }
        ),
        evidence,
        action: action.into(),
        cause_of,
        explains: None,
        explained_by: None,
    }]
}

/// Connections refused. "The API is down" needs a share of the requests (5 % or more) or a
/// run of them (10 or more over 3 s or longer); a refusal now and then is a warning with its
/// count, not an outage. Connections the server closed are not refusals (see
/// [`connections_closed`]): under a stall they are its symptom, with the API up throughout.
pub fn refused(e: &Evidence<'_>) -> Vec<Finding> {
    let is_refused = |k: FailureKind| k == FailureKind::Refused;
    let count: u64 = e.failures(is_refused).map(|(_, f)| f.count).sum();
    if count == 0 {
        return Vec::new();
    }
    let (first, last) = failure_span(e, is_refused);
    let share = count as f64 * 100.0 / e.total_requests().max(1) as f64;
    let outage = share >= 5.0 || (count >= 10 && last - first >= 3.0);
    let evidence = format!(
        "{count} connections refused ({share:.2}% of requests), from {first:.0} s to {last:.0} s into the run"
    );
    let explained = e.failure_share(count);
    if !outage {
        return vec![Finding::new(
            "load.refused",
            Layer::Api,
            Severity::Warning,
            format!("{count} connection{} refused (not an outage)", if count == 1 { "" } else { "s" }),
            evidence,
            "A connection refused now and then: check the API's logs at those times (worker restarts, a full listen backlog)",
        )
        .explaining(explained)];
    }
    vec![Finding::new(
        "load.refused",
        Layer::Api,
        Severity::Critical,
        "The API is down or refuses connections",
        evidence,
        "Check that the API process is up and listening (docker compose ps; its logs), and its connection backlog",
    )
    .causing(&["load.scenario_errors", "load.connections_closed"])
    .explaining(explained)]
}

/// When the failures whose kind passes `wanted` were seen first and last, s into the run.
fn failure_span(e: &Evidence<'_>, wanted: impl Fn(FailureKind) -> bool + Copy) -> (f64, f64) {
    let first = e.first_failure_secs(wanted).unwrap_or(0.0);
    let last = e
        .failures(wanted)
        .map(|(_, f)| f.last_seen_secs)
        .fold(first, f64::max);
    (first, last)
}

/// Connections the server closed before its answer (kept-alive connections dropped, answers
/// cut short): not the API down. Under a stall they are its symptom; alone, a timeout of the
/// server or of a proxy in front.
pub fn connections_closed(e: &Evidence<'_>) -> Vec<Finding> {
    let is_closed = |k: FailureKind| k == FailureKind::Connection;
    let count: u64 = e.failures(is_closed).map(|(_, f)| f.count).sum();
    if count == 0 {
        return Vec::new();
    }
    let refused: u64 = e
        .failures(|k| k == FailureKind::Refused)
        .map(|(_, f)| f.count)
        .sum();
    let (first, last) = failure_span(e, is_closed);
    let share = count as f64 * 100.0 / e.total_requests().max(1) as f64;
    vec![Finding::new(
        "load.connections_closed",
        Layer::Api,
        Severity::Warning,
        format!(
            "{count} connection{} closed by the server before the answer",
            if count == 1 { "" } else { "s" }
        ),
        format!(
            "{count} connections closed ({share:.2}% of requests), from {first:.0} s to {last:.0} s into the run; {refused} refused, so the API was listening"
        ),
        "The server (or a proxy in front) dropped connections it had accepted: under a stall (see the cause above, if any) they are its symptom; otherwise check the keep-alive and request timeouts of the API server and the proxy, and their logs at those times",
    )
    .explaining(e.failure_share(count))]
}

/// Answers 429.
pub fn rate_limited(e: &Evidence<'_>) -> Vec<Finding> {
    let limited = e.status_total(429);
    if limited == 0 {
        return Vec::new();
    }
    let total = e.total_requests();
    let since = e
        .first_failure_secs(|k| k == FailureKind::Status(429))
        .map_or(String::new(), |s| format!(", from {s:.0} s into the run"));
    let skipped = if e.stats.missing_values > 0 {
        format!(
            "; {} steps skipped for want of a value that a limited request would have set",
            e.stats.missing_values
        )
    } else {
        String::new()
    };
    vec![Finding::new(
        "load.rate_limited",
        Layer::Api,
        Severity::Critical,
        "Rate limiting",
        format!(
            "{limited} of {total} requests ({:.1}%) answered 429 Too Many Requests{since}{skipped}",
            limited as f64 * 100.0 / total.max(1) as f64
        ),
        "The API limits requests per client IP (RATE_LIMIT_PER_MINUTE, default 60): raise it for load tests, or the test measures the limiter, not the API",
    )
    .causing(&["load.scenario_errors", "load.plateau", "jobs.unknown"])
    .explaining(e.failure_share(limited))]
}

/// Answers 401. "Token expiry" needs tokens that worked for a while (a quiet start of 10 s or
/// more) and 401s that a re-login then fixed; 401s that no re-login fixed are failed
/// authentication, with the failed logins counted.
pub fn unauthorized(e: &Evidence<'_>) -> Vec<Finding> {
    let count = e.status_total(401);
    if count == 0 {
        return Vec::new();
    }
    let first = e
        .history
        .iter()
        .find(|row| row.interval.status_count(401) > 0)
        .map_or(0, |row| row.at_secs);
    let relogins: u64 = e
        .stats
        .handled
        .iter()
        .filter(|((_, s), _)| *s == 401)
        .map(|(_, n)| n)
        .sum();
    // Logins that failed: their users' requests went out without a token.
    let failed_logins: u64 = e
        .stats
        .endpoints
        .iter()
        .filter(|(k, _)| k.name.contains("login") || k.name.contains("token"))
        .map(|(_, s)| s.failures)
        .sum();
    // Nine in ten 401s followed by a re-login: the tokens expire and logging in again works.
    let fixed_by_relogin = relogins > 0 && relogins * 10 >= count * 9;
    let late = first >= 10;
    let evidence = format!(
        "{count} answers 401 Unauthorized, the first {first} s into the run{}; {relogins} re-logins{}",
        if late { " after a quiet start" } else { "" },
        if failed_logins > 0 {
            format!("; {failed_logins} logins failed")
        } else {
            String::new()
        }
    );
    let finding = |title: &str, action: &str| {
        Finding::new(
            "load.unauthorized",
            Layer::Api,
            Severity::Warning,
            title,
            evidence.clone(),
            action,
        )
        .explaining(e.failure_share(count))
    };
    vec![if fixed_by_relogin && late {
        finding(
            "Token expiry",
            "Access tokens expire during the run (JWT_ACCESS_TOKEN_EXPIRE_MINUTES): every expiry costs a bcrypt login; lengthen the lifetime or use /auth/refresh",
        )
    } else if fixed_by_relogin {
        finding(
            "Tokens expire quickly",
            "Re-logins fix the 401s, but tokens expire within seconds: check the token lifetime (JWT_ACCESS_TOKEN_EXPIRE_MINUTES) and the clocks of the API's hosts",
        )
    } else if failed_logins > 0 {
        finding(
            "Authentication failures after failed logins",
            "Logins failed, so their users' requests went out without a token: fix the login first (the failures table says why it failed)",
        )
    } else {
        finding(
            "Authentication failures",
            "Requests are not authenticated: check the scenario's login step and credentials",
        )
    }]
}

/// Answers 5xx, naming the endpoint with the most.
pub fn server_errors(e: &Evidence<'_>) -> Vec<Finding> {
    let per_endpoint = e.stats.endpoints.iter().map(|(k, s)| {
        let n: u64 = s
            .statuses
            .iter()
            .filter(|(code, _)| **code >= 500)
            .map(|(_, n)| n)
            .sum();
        (k, n)
    });
    let total: u64 = per_endpoint.clone().map(|(_, n)| n).sum();
    if total == 0 {
        return Vec::new();
    }
    let worst = per_endpoint
        .filter(|(_, n)| *n > 0)
        .max_by_key(|(_, n)| *n)
        .map_or(String::new(), |(k, n)| {
            format!("; most on {} {} ({n})", k.method, k.name)
        });
    vec![
        Finding::new(
            "load.server_errors",
            Layer::Api,
            Severity::Critical,
            "Server errors",
            format!("{total} answers 5xx{worst}"),
            "Read the API's logs for the tracebacks of these requests (docker compose logs api)",
        )
        .causing(&["load.scenario_errors"])
        .explaining(e.failure_share(total)),
    ]
}

/// Start-up requests (register, login, uploads) averaging above the average target.
pub fn costly_startup(e: &Evidence<'_>) -> Vec<Finding> {
    let slow: Vec<String> = e
        .stats
        .endpoints
        .iter()
        .filter(|(k, s)| k.phase == Phase::Startup && s.average_ms() > e.targets.avg_ms)
        .map(|(k, s)| {
            format!(
                "{} {} averaged {:.0} ms (p95 {:.0} ms)",
                k.method,
                k.name,
                s.average_ms(),
                s.percentile_ms(95.0)
            )
        })
        .collect();
    if slow.is_empty() {
        return Vec::new();
    }
    let startup = e.stats.aggregated(Phase::Startup);
    let evidence = format!(
        "of {} start-up requests, {}",
        startup.count,
        slow.join("; ")
    );
    match startup_effect(e) {
        StartupEffect::Blocks(blocking) => vec![Finding::new(
            "load.costly_startup",
            Layer::Api,
            Severity::Critical,
            "Start-up work blocks the API for everyone",
            format!("{evidence}; {blocking}"),
            "CPU-bound work in the start-up requests (password hashing with bcrypt) runs on the API's event loop or workers and stalls every other request: hash in a thread pool, lower the cost for tests, or run more API workers",
        )
        .causing(&[
            "load.slow_endpoints",
            "load.stuck_users",
            "load.plateau",
            "load.connections_closed",
        ])
        .explaining(blocked_share(e))],
        effect => {
            // "did not slow" only when the overlap comparison says so.
            let (evidence, verdict) = match effect {
                StartupEffect::NoSlowdown(figures) => (
                    format!("{evidence}; {figures}"),
                    "; the steady requests did not slow with them",
                ),
                StartupEffect::Unclear(figures) => (format!("{evidence}; {figures}"), ""),
                _ => (evidence, ""),
            };
            vec![Finding {
                rule: "load.costly_startup",
                layer: Layer::Api,
                severity: Severity::Warning,
                title: "Costly start-up (authentication, uploads)".into(),
                evidence,
                action: format!("register/login hash passwords with bcrypt inside the request: lower the cost for tests, or hash in a thread pool{verdict}"),
                cause_of: Vec::new(),
                explains: None,
                explained_by: None,
            }]
        }
    }
}

/// What the steady requests that overlapped start-up work tell of it, per request: in flight
/// beside a start-up request against the others (see [`crate::stats::overlap`]).
enum StartupEffect {
    /// The overlapped ones waited behind it: their p90 at least 5 times the others' and
    /// [`BLOCKED_MS`] above it. The p90, not the median: a blocked event loop holds the
    /// requests in flight while it hashes, and the many served between two hashes keep the
    /// median low. Hashing on a thread pool slows the others by contention only, by the
    /// runnable threads it adds over the cores (under 2.5 times on 2 cores), whatever the hash
    /// costs. (Not judged against a start-up request's own time: on one event loop, start-up
    /// requests queue behind each other's hashes, tens of seconds on a busy host.)
    Blocks(String),
    /// p90s within 1.5 times of each other: the steady requests did not slow with it.
    NoSlowdown(String),
    /// In between: the figures, with no claim either way.
    Unclear(String),
    /// Too few of either group.
    Unknown,
}

/// The steady requests' slowdown that the start-up work explains: the time the overlapped
/// requests took above the others, per request, over all the steady requests' slowdown.
fn blocked_share(e: &Evidence<'_>) -> Option<super::Explained> {
    let overlap = &e.stats.startup_overlap;
    let extra_us = overlap.overlapped.len() as f64
        * (overlap.overlapped.mean() - overlap.clear.mean()).max(0.0);
    let all_us = e.steady_excess_us();
    (all_us > 0.0).then(|| e.slowdown((extra_us / all_us).min(1.0)))?
}

/// How many overlapped steady requests must have taken [`BLOCKED_MS`] longer than the others'
/// p90 to call the start-up work blocking.
const MIN_HELD_UP: u64 = 3;

/// Overlapped steady requests from which a tenth held up is enough (see [`startup_effect`]).
const MANY_OVERLAPPED: u64 = 20;

/// How much longer, ms, the steady requests beside start-up work must take to have waited
/// behind it.
const BLOCKED_MS: f64 = 100.0;

fn startup_effect(e: &Evidence<'_>) -> StartupEffect {
    let overlap = &e.stats.startup_overlap;
    let (with, without) = (overlap.overlapped.len(), overlap.clear.len());
    if with < 5 || without < 5 {
        return StartupEffect::Unknown;
    }
    let busy = StartupOverlap::p90_ms(&overlap.overlapped);
    let quiet = StartupOverlap::p90_ms(&overlap.clear);
    let figures = format!(
        "the {with} steady requests in flight beside start-up requests had a p90 of {busy:.0} ms \
         (median {:.0} ms), the {without} others {quiet:.0} ms (median {:.0} ms)",
        StartupOverlap::median_ms(&overlap.overlapped),
        StartupOverlap::median_ms(&overlap.clear),
    );
    // Three of them at least held up that long, and most of them when they are few: with few
    // overlapped requests, the p90 is one request, and one slow request on a contended host is
    // no blocked event loop, where hashes on a thread pool of a CPU-starved host slow some (3
    // of 6, median 11 ms, seen so). With many, a tenth is enough: the requests served between
    // two hashes keep the median low (52 overlapped, p90 1980 ms, median 49 ms, against
    // 23 ms for the others, seen on a busy host with the hashing on the event loop).
    let held_up_us = ((quiet + BLOCKED_MS) * 1000.0) as u64;
    let held_up = overlap
        .overlapped
        .len()
        .saturating_sub(overlap.overlapped.count_between(0, held_up_us));
    let most_held_up = held_up >= MIN_HELD_UP
        && (held_up * 2 > with || (with >= MANY_OVERLAPPED && held_up * 10 >= with));
    if busy >= 5.0 * quiet.max(0.1) && busy - quiet >= BLOCKED_MS && most_held_up {
        StartupEffect::Blocks(format!("{figures}: they waited behind the start-up work"))
    } else if busy <= 1.5 * quiet.max(0.1) {
        StartupEffect::NoSlowdown(figures)
    } else {
        StartupEffect::Unclear(figures)
    }
}

/// The steady-state p95 at or above its target, with the endpoints that miss it.
pub fn slow_endpoints(e: &Evidence<'_>) -> Vec<Finding> {
    if !e.slow() {
        return Vec::new();
    }
    let slow: Vec<String> = e
        .stats
        .endpoints
        .iter()
        .filter(|(k, s)| k.phase == Phase::Steady && s.percentile_ms(95.0) >= e.targets.p95_ms)
        .map(|(k, s)| {
            format!(
                "{} {} p95 {:.0} ms",
                k.method,
                k.name,
                s.percentile_ms(95.0)
            )
        })
        .collect();
    vec![Finding {
        rule: "load.slow_endpoints",
        layer: Layer::Api,
        severity: Severity::Warning,
        title: "Slow endpoints".into(),
        evidence: format!("steady-state p95 {:.0} ms; {}", e.p95_ms(), slow.join(", ")),
        action: "Profile these endpoints: database queries (indexes, N+1), pool size, and CPU of the API process".into(),
        cause_of: Vec::new(),
        explains: None,
        explained_by: None,
    }]
}

/// Steps the scenario could not build: a consequence of earlier failures when every one is a
/// value never received, a fault of the scenario otherwise.
pub fn scenario_errors(e: &Evidence<'_>) -> Vec<Finding> {
    if e.stats.exceptions.is_empty() {
        return Vec::new();
    }
    let count: u64 = e.stats.exceptions.values().sum();
    let first = e
        .stats
        .exceptions
        .keys()
        .next()
        .cloned()
        .unwrap_or_default();
    // A value never received usually means the step that sets it failed (a 429 on an upload
    // leaves no file ids to pick): a consequence, not a fault of the scenario.
    let only_unset = e.stats.missing_values == count;
    vec![if only_unset && !e.stats.failures.is_empty() {
        Finding {
            rule: "load.scenario_errors",
            layer: Layer::Load,
            severity: Severity::Info,
            title: "Steps skipped after earlier failures".into(),
            evidence: format!(
                "{count} steps skipped because a value they use was never received, e.g. {first}"
            ),
            action: "Fix the failures above first; the steps that set these values failed".into(),
            cause_of: Vec::new(),
            explains: None,
            explained_by: None,
        }
    } else {
        Finding {
            rule: "load.scenario_errors",
            layer: Layer::Load,
            severity: Severity::Warning,
            title: "Scenario errors".into(),
            evidence: format!("{count} steps could not be built, e.g. {first}"),
            action: "Fix the scenario (see the scenario errors table)".into(),
            cause_of: Vec::new(),
            explains: None,
            explained_by: None,
        }
    }]
}

/// Users rise by 1.8× or more but req/s by less than 1.2×: the capacity, and where it was hit.
pub fn plateau(e: &Evidence<'_>) -> Vec<Finding> {
    let h = e.history;
    let peak = h.iter().map(|r| r.users).max().unwrap_or(0);
    if peak < 4 || h.len() < 8 {
        return Vec::new();
    }
    let rps = |rows: &[HistoryRow]| {
        rows.iter().map(|r| r.interval.count as f64).sum::<f64>() / rows.len().max(1) as f64
    };
    let (Some(half_at), Some(full_at)) = (
        h.iter().position(|r| r.users * 2 >= peak),
        h.iter().position(|r| r.users == peak),
    ) else {
        return Vec::new();
    };
    if full_at < half_at + 3 || h.len() < full_at + 3 {
        return Vec::new();
    }
    let at_half = rps(&h[half_at..(half_at + 3).min(full_at)]);
    let at_full = rps(&h[full_at..]);
    let users_half = h[half_at].users;
    if !(at_half > 0.0 && (peak as f64) >= 1.8 * users_half as f64 && at_full < 1.2 * at_half) {
        return Vec::new();
    }
    let figures = format!(
        "{at_half:.1} req/s at {users_half} users and {at_full:.1} req/s at {peak} users (from {} s into the run)",
        h[half_at].at_secs
    );
    let limits = other_limits(e);
    if !limits.is_empty() {
        return vec![Finding::new(
            "load.plateau",
            Layer::Load,
            Severity::Info,
            "Throughput did not rise with the users, for a reason other than capacity",
            format!(
                "{figures}: not the API's capacity, because {}",
                limits.join("; ")
            ),
            "Remove what held the load back (the findings above) before reading a capacity from this run",
        )];
    }
    vec![Finding::new(
        "load.plateau",
        Layer::Load,
        Severity::Warning,
        "Throughput plateau",
        format!("{figures}: capacity reached at about {users_half} users"),
        "This is the capacity limit: the findings above say which layer sets it",
    )]
}

/// What else holds throughput back when users rise: answers 429, skipped steps, the generator
/// itself, its memory limit, users stuck on answers. A plateau with any of them is no capacity.
fn other_limits(e: &Evidence<'_>) -> Vec<String> {
    let mut limits = Vec::new();
    let total = e.total_requests().max(1);
    let limited = e.status_total(429);
    if limited * 100 >= total {
        limits.push(format!(
            "{:.0}% of the answers were 429 (rate limited)",
            limited as f64 * 100.0 / total as f64
        ));
    }
    let skipped: u64 = e.stats.exceptions.values().sum();
    if skipped > 0 {
        limits.push(format!("{skipped} steps were skipped"));
    }
    let generator_busy = e.generator_busy_secs();
    if generator_busy >= 3 {
        limits.push(format!(
            "the load generator was saturated in {generator_busy} seconds"
        ));
    }
    if e.memory_limit_hit.is_some() {
        limits.push("the load generator reached its memory limit".into());
    }
    if e.stuck.most_of(e.peak_users) {
        limits.push(format!(
            "{} of {} users were stuck waiting for answers",
            e.stuck.peak, e.peak_users
        ));
    }
    limits
}

/// What [`super::diagnose`] says when no rule fired: healthy if every target was met,
/// otherwise the missed targets, with no cause found in the evidence.
pub fn nothing_found(e: &Evidence<'_>) -> Finding {
    let rps = e.steady.count as f64 / e.duration.as_secs_f64().max(1e-9);
    let figures = format!(
        "{} users, {rps:.1} req/s in the steady state, p95 {:.0} ms, {:.2}% failures",
        e.peak_users,
        e.p95_ms(),
        e.steady.failure_ratio() * 100.0
    );
    let missed: Vec<&str> = e
        .verdicts
        .iter()
        .filter(|v| !v.met)
        .map(|v| v.name.as_str())
        .collect();
    let unwatched: Vec<&str> = e
        .backend
        .unwatched()
        .into_iter()
        .map(|(source, ..)| source)
        .collect();
    if !unwatched.is_empty() {
        // A layer left unwatched is no layer found healthy (the validity section says why).
        return Finding::new(
            "load.nothing_found",
            Layer::Load,
            Severity::Warning,
            format!(
                "Nothing found in the layers watched ({} not watched)",
                unwatched.join(", ")
            ),
            format!(
                "{}{figures}",
                if missed.is_empty() {
                    String::new()
                } else {
                    format!("missed: {}; ", missed.join(", "))
                }
            ),
            "Fix the watch (see \"Is this run valid?\") and run again: the unwatched layers may hold the cause",
        );
    }
    if missed.is_empty() {
        Finding {
            rule: "load.nothing_found",
            layer: Layer::Load,
            severity: Severity::Info,
            title: "No problem found".into(),
            evidence: figures,
            action: if e.stats.arrivals.total.scheduled > 0 {
                // The open model's load is its rate, not its users.
                "Raise the arrival rate (--arrival-rate, or ramp it with --arrival-stages) to find the capacity limit"
            } else {
                "Raise the users (-u) to find the capacity limit"
            }
            .into(),
            cause_of: Vec::new(),
            explains: None,
            explained_by: None,
        }
    } else {
        Finding {
            rule: "load.nothing_found",
            layer: Layer::Load,
            severity: Severity::Warning,
            title: "Targets missed, no cause found in the evidence".into(),
            evidence: format!("missed: {}; {figures}", missed.join(", ")),
            action: "Watch the backend too (--monitor-docker, --monitor-postgres, --monitor-redis) so the findings can name the layer".into(),
            cause_of: Vec::new(),
            explains: None,
            explained_by: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{fail, login, outcome, with_evidence};
    use super::*;
    use crate::stats::{Key, Phase};

    /// An open run of 9 s at 100/s whose second `i` answered `answered` requests of
    /// `latency_ms[i]`, with `dropped` iterations dropped at a cap of 100 users.
    fn open_run(answered: u64, latency_ms: &[u64], dropped: u64) -> crate::engine::RunOutcome {
        let mut run = outcome(&[100; 9], &[0; 9], 0, &[]);
        for (i, ms) in latency_ms.iter().enumerate() {
            super::super::testing::slow_second(&mut run, i, answered, *ms);
        }
        run.stats.arrivals.total = crate::stats::ArrivalCounts {
            scheduled: 900,
            dropped,
            late: 0,
        };
        run.users_cap = Some(100);
        run
    }

    #[test]
    fn over_capacity_is_a_growing_latency_at_a_throughput_short_of_the_rate() {
        // 40/s answered of 100/s asked, p50 from 300 ms to 2.5 s: the users reached the cap.
        let growing = [300, 900, 1900, 2500, 2500, 2500, 2500, 2500, 2500];
        let over = open_run(40, &growing, 300);
        let found = with_evidence(&over, &[], over_capacity);
        assert_eq!(found.len(), 1, "{found:#?}");
        let evidence = &found[0].evidence;
        assert!(
            // The histograms' precision: 2,500 ms reads 2,501.
            evidence.starts_with("asked 100.0/s, answered 40.0/s; p50 from 300 ms in the first third of the run to 2,50")
                && evidence.contains("300 iterations dropped: the users, at their cap of 100, were all waiting on the API"),
            "{evidence}"
        );
        assert_eq!(found[0].severity, Severity::Critical);
        // Its dropped iterations are the API's capacity, not a generator's validity note.
        let ranked = super::super::diagnose(&Evidence::new(
            &over,
            &crate::targets::Targets::default(),
            &[],
            Default::default(),
        ));
        assert_eq!(ranked.findings[0].rule, "load.over_capacity", "{ranked:#?}");
        assert!(
            ranked.findings[1..]
                .iter()
                .filter(|f| f.rule == "load.slow_endpoints")
                .all(|f| f.explained_by == Some("load.over_capacity")),
            "{ranked:#?}"
        );
        assert!(
            ranked
                .validity
                .iter()
                .all(|f| f.rule != "loadgen.arrival_rate_missed"),
            "{ranked:#?}"
        );

        // A rate well under capacity: answered as asked, latency flat; the next step is a
        // higher rate, not more users.
        let healthy = open_run(100, &[100; 9], 0);
        assert!(with_evidence(&healthy, &[], over_capacity).is_empty());
        let targets = crate::targets::Targets::default();
        let calm = nothing_found(&Evidence::new(&healthy, &targets, &[], Default::default()));
        assert!(calm.action.contains("--arrival-rate"), "{calm:#?}");
        // A fixed 2 s answer and a cap of 100 users: short of the rate, latency flat; the
        // users' cap is too low for the API's latency, which the generator's note says.
        let capped = open_run(50, &[2000; 9], 450);
        assert!(with_evidence(&capped, &[], over_capacity).is_empty());
        let note = with_evidence(&capped, &[], crate::diagnosis::loadgen::arrival_rate_missed);
        assert_eq!(note.len(), 1, "{note:#?}");
        // Latency that grows while everything asked is answered: no queue without bound.
        let answered = open_run(100, &growing, 0);
        assert!(with_evidence(&answered, &[], over_capacity).is_empty());
        // The generator's own CPU saturated: its limit, not the API's.
        let mut busy = over.clone();
        for row in &mut busy.history {
            row.loadgen_cpu_pct = 99.0;
        }
        assert!(with_evidence(&busy, &[], over_capacity).is_empty());
        // Shared among workers, the summed CPU is no one process's: judged per worker.
        let mut shared = busy.clone();
        shared.cluster = Some(crate::cluster::ClusterSummary {
            workers: vec![crate::cluster::WorkerSummary {
                name: "w1".into(),
                saturated_secs: 1,
                ..Default::default()
            }],
            events: Vec::new(),
        });
        assert_eq!(with_evidence(&shared, &[], over_capacity).len(), 1);
        // A closed run has no rate to fall short of.
        let mut closed = over;
        closed.stats.arrivals = Default::default();
        assert!(with_evidence(&closed, &[], over_capacity).is_empty());
    }

    #[test]
    fn stuck_users_are_a_finding_ranked_above_the_slow_endpoints_they_cause() {
        // 20 users answered fast, 18 of them stuck from the third second on.
        let mut run = outcome(&[20; 10], &[100; 10], 2, &[]);
        for row in &mut run.history[2..] {
            row.in_flight.stuck_users = 18;
        }
        run.stats.in_flight_at_stop = 18;
        let endpoint = run.stats.endpoints.values_mut().next().unwrap();
        for _ in 0..18 {
            endpoint.record_unanswered(8_000_000);
        }
        let found = with_evidence(&run, &[], stuck_users);
        assert_eq!(
            found[0].title,
            "18 users stuck waiting for answers for more than 5 s"
        );
        assert_eq!(found[0].severity, Severity::Critical);
        let evidence = &found[0].evidence;
        for part in [
            "18 of 20 users waited more than 5 s for one answer, from 3 s into the run",
            "18 requests still unanswered when the run stopped (18 of them for more than 5 s, the oldest for 8.0 s), on GET /api/v1/tasks (18)",
        ] {
            assert!(evidence.contains(part), "{evidence}");
        }
        let targets = crate::targets::Targets {
            p95_ms: 1.0,
            ..Default::default()
        };
        let evidence = super::super::Evidence::new(&run, &targets, &[], Default::default());
        let ranked = super::super::diagnose(&evidence);
        let rules: Vec<&str> = ranked.findings.iter().map(|f| f.rule).collect();
        assert_eq!(
            &rules[..2],
            ["load.stuck_users", "load.slow_endpoints"],
            "the p95 of the stalled run is a symptom"
        );
        // Not one stuck user, not one timeout: nothing.
        let healthy = outcome(&[20; 10], &[100; 10], 2, &[]);
        assert!(with_evidence(&healthy, &[], stuck_users).is_empty());
    }

    #[test]
    fn timeouts_alone_are_named_as_such() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let endpoint = run.stats.endpoints.values_mut().next().unwrap();
        for _ in 0..12 {
            endpoint.record(1_000_000, 0, None, true);
        }
        endpoint.timed_out = 12;
        let found = with_evidence(&run, &[], stuck_users);
        assert_eq!(found[0].title, "12 requests timed out waiting for answers");
        assert!(
            found[0]
                .evidence
                .starts_with("12 requests timed out, most on GET /api/v1/tasks (12)"),
            "{}",
            found[0].evidence
        );
    }

    #[test]
    fn a_throughput_plateau_names_the_users_where_it_began() {
        let users = [5, 10, 10, 10, 15, 20, 20, 20, 20, 20];
        let flat = [25, 50, 50, 50, 51, 52, 50, 51, 50, 50];
        let found = with_evidence(&outcome(&users, &flat, 10, &[]), &[], plateau);
        assert!(
            found[0].evidence.contains("at 10 users"),
            "{}",
            found[0].evidence
        );
        let growing = [25, 50, 50, 50, 75, 100, 100, 100, 100, 100];
        assert!(with_evidence(&outcome(&users, &growing, 10, &[]), &[], plateau).is_empty());
    }

    #[test]
    fn failure_kinds_not_message_texts_decide() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        assert!(with_evidence(&run, &[], refused).is_empty());
        // A message that merely mentions a connection is not a connection failure.
        fail(
            &mut run,
            FailureKind::Status(502),
            "HTTP 502: ConnectionRefusedError upstream",
            3,
        );
        assert!(with_evidence(&run, &[], refused).is_empty());
        assert_eq!(with_evidence(&run, &[], server_errors).len(), 1);
        fail(
            &mut run,
            FailureKind::Refused,
            "ConnectionRefusedError: connection refused by 127.0.0.1:9",
            2,
        );
        let found = with_evidence(&run, &[], refused);
        assert!(
            found[0]
                .evidence
                .contains("2 connections refused (1.60% of requests)"),
            "{}",
            found[0].evidence
        );
    }

    #[test]
    fn closed_connections_are_never_down_and_refusals_are_an_outage_past_a_share() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        fail(&mut run, FailureKind::Refused, "connection refused", 1);
        let found = with_evidence(&run, &[], refused);
        assert_eq!(found[0].severity, Severity::Warning, "{:?}", found[0]);
        assert!(
            found[0].title.contains("not an outage"),
            "{}",
            found[0].title
        );
        // 13 kept-alive connections closed by the server during a stall, 0 refused: the API
        // served throughout. Not "down", whatever their share.
        let mut stalled = outcome(&[5; 6], &[20; 6], 10, &[]);
        fail(
            &mut stalled,
            FailureKind::Connection,
            "connection closed before the answer",
            13,
        );
        assert!(with_evidence(&stalled, &[], refused).is_empty());
        let closed = with_evidence(&stalled, &[], connections_closed);
        assert_eq!(
            closed[0].title,
            "13 connections closed by the server before the answer"
        );
        assert!(
            closed[0]
                .evidence
                .contains("0 refused, so the API was listening"),
            "{}",
            closed[0].evidence
        );
        fail(&mut run, FailureKind::Refused, "connection refused", 30);
        let found = with_evidence(&run, &[], refused);
        assert_eq!(found[0].severity, Severity::Critical, "{:?}", found[0]);
        assert_eq!(found[0].title, "The API is down or refuses connections");
    }

    #[test]
    fn a_plateau_under_rate_limits_is_not_called_capacity() {
        let users = [5, 10, 10, 10, 15, 20, 20, 20, 20, 20];
        let flat = [25, 50, 50, 50, 51, 52, 50, 51, 50, 50];
        let mut run = outcome(&users, &flat, 10, &[]);
        fail(&mut run, FailureKind::Status(429), "HTTP 429", 300);
        run.stats
            .exceptions
            .insert("upload: variable `file_id` is not set".into(), 291);
        let found = with_evidence(&run, &[], plateau);
        assert_eq!(found[0].severity, Severity::Info);
        assert!(
            !found[0].evidence.contains("capacity reached"),
            "{}",
            found[0].evidence
        );
        for part in ["were 429 (rate limited)", "291 steps were skipped"] {
            assert!(found[0].evidence.contains(part), "{}", found[0].evidence);
        }
    }

    /// 401s at `seconds` (one each), with `relogins` re-logins and `failed_logins` failed logins.
    fn with_401s(seconds: &[usize], relogins: u64, failed_logins: u64) -> Vec<Finding> {
        let mut run = outcome(&[5; 30], &[20; 30], 10, &[]);
        for &at in seconds {
            run.history[at].interval.record(5_000, 0, Some(401), true);
        }
        fail(
            &mut run,
            FailureKind::Status(401),
            "HTTP 401",
            seconds.len() as u64,
        );
        if relogins > 0 {
            run.stats.handled.insert(("list".into(), 401), relogins);
        }
        let login = login(&mut run);
        for i in 0..failed_logins + 3 {
            login.record(
                5_000,
                0,
                Some(if i < failed_logins { 429 } else { 200 }),
                i < failed_logins,
            );
        }
        with_evidence(&run, &[], unauthorized)
    }

    #[test]
    fn token_expiry_needs_a_quiet_start_and_re_logins_that_fix_it() {
        assert_eq!(with_401s(&[15, 16, 20], 3, 0)[0].title, "Token expiry");
        // Re-logins fix them from the start: tokens that expire fast, not "check credentials".
        assert_eq!(
            with_401s(&[1, 2, 3], 3, 0)[0].title,
            "Tokens expire quickly"
        );
        // One 401 late in the run, after a login that failed: no token was ever held.
        let found = with_401s(&[20], 0, 1);
        assert_eq!(
            found[0].title,
            "Authentication failures after failed logins"
        );
        assert!(
            found[0].evidence.contains("1 logins failed"),
            "{}",
            found[0].evidence
        );
        assert_eq!(with_401s(&[20], 0, 0)[0].title, "Authentication failures");
    }

    #[test]
    fn rate_limits_count_429_answers() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        fail(
            &mut run,
            FailureKind::Status(429),
            "HTTP 429: Too many requests.",
            12,
        );
        let found = with_evidence(&run, &[], rate_limited);
        assert!(
            found[0].evidence.starts_with("12 of 132 requests (9.1%)"),
            "{}",
            found[0].evidence
        );
    }

    #[test]
    fn costly_startup_names_the_endpoints_above_the_average_target() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        let key = Key {
            phase: Phase::Startup,
            method: "POST".into(),
            name: "/api/v1/auth/login".into(),
        };
        let login = run.stats.endpoints.entry(key).or_default();
        for _ in 0..5 {
            login.record(400_000, 10, Some(200), false);
        }
        let found = with_evidence(&run, &[], costly_startup);
        assert!(
            found[0]
                .evidence
                .contains("POST /api/v1/auth/login averaged 400 ms"),
            "{}",
            found[0].evidence
        );
        assert!(!found[0].action.contains("not skewed"));
    }

    #[test]
    fn start_up_work_that_slows_everyone_is_called_blocking() {
        // 30 logins of 400 ms; 20 steady requests beside them and 40 apart, the ones beside
        // taking `beside_ms`.
        let run_with = |beside_ms: u64| {
            let mut run = outcome(&[5; 12], &[20; 12], 10, &[]);
            let login = login(&mut run);
            for _ in 0..30 {
                login.record(400_000, 10, Some(200), false);
            }
            for _ in 0..20 {
                run.stats.startup_overlap.record(beside_ms * 1000, true);
            }
            for _ in 0..40 {
                run.stats.startup_overlap.record(10_000, false);
            }
            with_evidence(&run, &[], costly_startup)
        };
        let blocked = run_with(300);
        assert_eq!(
            blocked[0].title,
            "Start-up work blocks the API for everyone"
        );
        assert!(
            blocked[0].evidence.contains(
                "the 20 steady requests in flight beside start-up requests had a p90 of 300 ms (median 300 ms), the 40 others 10 ms (median 10 ms)"
            ),
            "{}",
            blocked[0].evidence
        );
        // Slowed a little by contention (hashing on a thread pool): costly, no claim either way.
        let contended = run_with(30);
        assert_eq!(
            contended[0].title,
            "Costly start-up (authentication, uploads)"
        );
        assert!(!contended[0].action.contains("did not slow"));
        // Not slowed at all: said so, with the figures.
        let apart = run_with(11);
        assert_eq!(apart[0].title, "Costly start-up (authentication, uploads)");
        assert!(
            apart[0].action.contains("did not slow"),
            "{}",
            apart[0].action
        );
        assert!(
            apart[0].evidence.contains("p90 of 11 ms"),
            "{}",
            apart[0].evidence
        );
    }

    #[test]
    fn many_requests_held_up_behind_start_up_are_a_blocked_loop_whatever_their_median() {
        // Seen on a busy host with the hashing on the event loop: of 52 overlapped requests a
        // seventh waited seconds behind a hash, the ones served between two hashes were fast.
        let mut run = outcome(&[5; 12], &[20; 12], 10, &[]);
        let login = login(&mut run);
        for _ in 0..16 {
            login.record(5_000_000, 10, Some(200), false);
        }
        for i in 0..52 {
            let ms = if i < 8 { 2_000 } else { 49 };
            run.stats.startup_overlap.record(ms * 1000, true);
        }
        for _ in 0..117 {
            run.stats.startup_overlap.record(23_000, false);
        }
        let found = with_evidence(&run, &[], costly_startup);
        assert_eq!(
            found[0].title, "Start-up work blocks the API for everyone",
            "{}",
            found[0].evidence
        );
    }

    #[test]
    fn one_slow_request_beside_start_up_is_no_blocked_loop() {
        // Seen under two stress-ng with hashing on a thread pool: 7 overlapped requests, one
        // of them 122 ms (their p90), against a p90 of 10 ms for the 55 others.
        let mut run = outcome(&[5; 12], &[20; 12], 10, &[]);
        let login = login(&mut run);
        for _ in 0..6 {
            login.record(700_000, 10, Some(200), false);
        }
        for latency_ms in [4, 5, 6, 6, 7, 9, 122] {
            run.stats.startup_overlap.record(latency_ms * 1000, true);
        }
        for _ in 0..55 {
            run.stats.startup_overlap.record(10_000, false);
        }
        let found = with_evidence(&run, &[], costly_startup);
        assert_eq!(
            found[0].title, "Costly start-up (authentication, uploads)",
            "{}",
            found[0].evidence
        );
        assert!(!found[0].action.contains("did not slow"));
    }

    #[test]
    fn half_the_requests_beside_start_up_held_up_is_no_blocked_loop() {
        // Seen in a stress run with hashing on a thread pool: 6 overlapped requests, 3 of them
        // over 119 ms but a median of 11 ms, against 19 ms (median 5 ms) for the 66 others.
        let mut run = outcome(&[5; 12], &[20; 12], 10, &[]);
        let login = login(&mut run);
        for _ in 0..6 {
            login.record(500_000, 10, Some(200), false);
        }
        let beside = |run: &mut crate::outcome::RunOutcome, latencies_ms: &[u64]| {
            run.stats.startup_overlap = Default::default();
            for latency_ms in latencies_ms {
                run.stats.startup_overlap.record(latency_ms * 1000, true);
            }
            for _ in 0..66 {
                run.stats.startup_overlap.record(19_000, false);
            }
        };
        beside(&mut run, &[4, 8, 11, 180, 210, 234]);
        let found = with_evidence(&run, &[], costly_startup);
        assert_eq!(
            found[0].title, "Costly start-up (authentication, uploads)",
            "{}",
            found[0].evidence
        );
        // Most of them held up: the loop was blocked.
        beside(&mut run, &[8, 180, 200, 210, 220, 234]);
        let found = with_evidence(&run, &[], costly_startup);
        assert_eq!(
            found[0].title, "Start-up work blocks the API for everyone",
            "{}",
            found[0].evidence
        );
    }

    #[test]
    fn scenario_errors_after_failures_are_consequences() {
        let mut run = outcome(&[5; 6], &[20; 6], 10, &[]);
        run.stats
            .exceptions
            .insert("join: variable `videos` is not set".into(), 4);
        run.stats.missing_values = 4;
        assert_eq!(
            with_evidence(&run, &[], scenario_errors)[0].severity,
            Severity::Warning
        );
        fail(&mut run, FailureKind::Status(429), "HTTP 429", 1);
        assert_eq!(
            with_evidence(&run, &[], scenario_errors)[0].severity,
            Severity::Info
        );
        // The same text, but not a value never received: a fault of the scenario.
        run.stats.missing_values = 0;
        assert_eq!(
            with_evidence(&run, &[], scenario_errors)[0].severity,
            Severity::Warning
        );
    }

    #[test]
    fn a_run_without_one_request_is_said_so_and_one_request_is_enough() {
        let nothing = crate::engine::RunOutcome::default();
        let found = with_evidence(&nothing, &[], no_requests);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].rule, "load.no_requests");
        assert_eq!(found[0].severity, Severity::Critical);
        assert!(with_evidence(&outcome(&[1], &[1], 10, &[]), &[], no_requests).is_empty());
    }

    #[test]
    fn slow_endpoints_name_those_over_the_target_and_only_those() {
        let mut run = outcome(&[5; 6], &[20; 6], 900, &[]);
        let health = run
            .stats
            .endpoints
            .entry(Key {
                phase: Phase::Steady,
                method: "GET".into(),
                name: "/api/v1/health/".into(),
            })
            .or_default();
        for _ in 0..30 {
            health.record(5_000, 10, Some(200), false);
        }
        let found = with_evidence(&run, &[], slow_endpoints);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].rule, "load.slow_endpoints");
        let evidence = &found[0].evidence;
        assert!(
            evidence.starts_with("steady-state p95 90")
                && evidence.contains("GET /api/v1/tasks p95 90"),
            "{evidence}"
        );
        assert!(!evidence.contains("health"), "{evidence}");
        // The same run at 10 ms: under the 500 ms target.
        assert!(
            with_evidence(&outcome(&[5; 6], &[20; 6], 10, &[]), &[], slow_endpoints).is_empty()
        );
    }
}
