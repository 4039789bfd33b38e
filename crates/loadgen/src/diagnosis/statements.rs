//! PostgreSQL's statements (`pg_stat_statements` deltas and generic plans, the queries running
//! at each tick): which statement the database time went to, a sequential scan of a large table
//! that an index would spare, and N+1 queries (one statement run many times per request of an
//! endpoint). The pool and lock findings quote the statements behind them from here.

use std::collections::BTreeMap;

use monitor::sample::{PostgresValues, SeqScan, Statement};

use super::{Evidence, Finding, Layer, Severity};
use crate::stats::Phase;

/// Rows of a table from which a sequential scan is worth an index.
const LARGE_TABLE_ROWS: f64 = 10_000.0;
/// The mean time from which a statement that scans a large table is worth an index even when
/// the targets held, ms.
const SLOW_STATEMENT_MS: f64 = 10.0;
/// The share of database time from which a statement explains a slow database, percent.
const LARGE_SHARE_PCT: f64 = 20.0;
/// Calls per request of an endpoint from which a statement runs in a loop.
const N_PLUS_ONE_PER_REQUEST: f64 = 5.0;
/// The windows a statement's calls and an endpoint's requests are compared over, s at least.
const WINDOW_SECS: f64 = 3.0;
/// How closely a statement's calls must follow an endpoint's requests ([`similarity`]).
const MIN_SIMILARITY: f64 = 0.8;
/// Calls of a statement in the run, at least, before its calls per request mean anything.
const N_PLUS_ONE_MIN_CALLS: i64 = 100;

/// The symptoms a slow statement explains: slow answers, and the pool its connections hold.
const SLOW_STATEMENT_SYMPTOMS: &[&str] = &[
    "load.slow_endpoints",
    "load.stuck_users",
    "load.plateau",
    "postgres.pool_exhausted",
    "postgres.small_pool",
    "postgres.connections_near_max",
];

/// The last reading with statements: their counters since the watch began, and the database
/// time of every statement, ms.
fn last_statements<'a>(e: &Evidence<'a>) -> Option<(&'a [Statement], f64)> {
    e.backend
        .postgres()
        .into_iter()
        .rev()
        .map(|(_, p)| p)
        .find(|p| !p.statements.is_empty())
        .map(|p| {
            let listed: f64 = p.statements.iter().map(|s| s.total_ms).sum();
            (p.statements.as_slice(), p.statements_total_ms.max(listed))
        })
}

/// A statement's share of the database time, percent.
fn share_pct(statement: &Statement, total_ms: f64) -> f64 {
    if total_ms > 0.0 {
        statement.total_ms * 100.0 / total_ms
    } else {
        0.0
    }
}

/// `` `SELECT ...` (62% of database time, 4.1 ms mean, 1200 calls) ``.
fn quoted(statement: &Statement, total_ms: f64) -> String {
    // A statement run in a loop takes a few hundredths of a millisecond.
    let decimals = if statement.mean_ms < 1.0 { 2 } else { 1 };
    format!(
        "`{}` ({:.0}% of database time, {:.decimals$} ms mean, {} calls)",
        statement.query,
        share_pct(statement, total_ms),
        statement.mean_ms,
        statement.calls
    )
}

/// Where the database time went, for the findings about the pool: the top statement, when it
/// took a large share (`; the time is in ...`), or nothing.
pub fn time_note(e: &Evidence<'_>) -> String {
    let Some((statements, total_ms)) = last_statements(e) else {
        return String::new();
    };
    statements
        .first()
        .filter(|s| share_pct(s, total_ms) >= LARGE_SHARE_PCT)
        .map_or(String::new(), |s| {
            format!("; the time is in {}", quoted(s, total_ms))
        })
}

/// The query seen waiting on a lock in the most samples (`; waiting: ...`), for the lock
/// finding, or nothing.
pub fn lock_note(e: &Evidence<'_>) -> String {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, p) in e.backend.postgres() {
        for query in &p.queries {
            if query.waits.keys().any(|w| w.starts_with("Lock:")) {
                *seen.entry(query.query.as_str()).or_default() += 1;
            }
        }
    }
    seen.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map_or(String::new(), |(query, samples)| {
            format!("; waiting on the lock: `{query}` (in {samples} samples)")
        })
}

/// The scan of a large table with a filter or a sort in `statement`'s plan, if any: the one
/// of the largest table.
fn large_scan(statement: &Statement) -> Option<&SeqScan> {
    statement
        .plan
        .as_ref()?
        .seq_scans
        .iter()
        .filter(|s| s.table_rows >= LARGE_TABLE_ROWS)
        .filter(|s| !s.filter_columns.is_empty() || !s.sort_columns.is_empty())
        .max_by(|a, b| a.table_rows.total_cmp(&b.table_rows))
}

/// The index that serves `scan`: its filter's columns, then its sort's.
fn index_for(scan: &SeqScan) -> String {
    let mut columns: Vec<&str> = scan.filter_columns.iter().map(String::as_str).collect();
    for column in &scan.sort_columns {
        if !columns.contains(&column.as_str()) {
            columns.push(column);
        }
    }
    format!("CREATE INDEX ON {} ({})", scan.relation, columns.join(", "))
}

/// A statement with a large share of the database time scans a large table (10^4 rows or more)
/// to filter or sort it: the index on those columns. CRITICAL while requests were slow; a
/// WARNING when the targets held but the statement takes 10 ms or more (the next users will
/// feel it); nothing otherwise.
pub fn seq_scan(e: &Evidence<'_>) -> Vec<Finding> {
    let Some((statements, total_ms)) = last_statements(e) else {
        return Vec::new();
    };
    let strained = e.strained();
    let pg = e.backend.postgres();
    let seconds = endpoint_seconds(e);
    statements
        .iter()
        .filter(|s| share_pct(s, total_ms) >= LARGE_SHARE_PCT)
        .filter(|s| strained || s.mean_ms >= SLOW_STATEMENT_MS)
        .filter_map(|s| Some((s, large_scan(s)?)))
        .map(|(statement, scan)| {
            let mut what = Vec::new();
            if !scan.filter_columns.is_empty() {
                what.push(format!("filters on {}", scan.filter_columns.join(", ")));
            }
            if !scan.sort_columns.is_empty() {
                what.push(format!("sorts on {}", scan.sort_columns.join(", ")));
            }
            // The endpoint that runs it, when its calls follow one: the slowdown it explains
            // is at most that endpoint's; else its share of the database time.
            let caller = followed_endpoint(&call_intervals(&pg, &statement.query), &seconds);
            let called_by = caller.as_ref().map_or(String::new(), |caller| {
                format!(
                    "; run by {} ({:.1} per request)",
                    caller.name(),
                    caller.per_request()
                )
            });
            let explained = match &caller {
                Some(caller) => caller.explained(e),
                None => e.slowdown(share_pct(statement, total_ms) / 100.0),
            };
            Finding::new(
                "postgres.seq_scan",
                Layer::Postgres,
                if strained { Severity::Critical } else { Severity::Warning },
                format!(
                    "A query reads all of {} ({:.0} rows) for want of an index on {}",
                    scan.relation,
                    scan.table_rows,
                    scan.filter_columns
                        .first()
                        .or(scan.sort_columns.first())
                        .map_or("", String::as_str)
                ),
                format!(
                    "{}; its plan scans all of {} (about {:.0} rows) and {}{called_by}; steady-state p95 {:.0} ms",
                    quoted(statement, total_ms),
                    scan.relation,
                    scan.table_rows,
                    what.join(" and "),
                    e.p95_ms()
                ),
                format!(
                    "{} (CONCURRENTLY on a live database), then check the plan with EXPLAIN ANALYZE",
                    index_for(scan)
                ),
            )
            .causing(SLOW_STATEMENT_SYMPTOMS)
            .explaining(if strained { explained } else { None })
        })
        .collect()
}

/// Each endpoint's requests in each second, by method and name, past the start-up (a user's
/// login is no request a loop runs in): (seconds since the backend's first tick at the
/// second's end, requests).
fn endpoint_seconds(e: &Evidence<'_>) -> BTreeMap<(String, String), Vec<(f64, u64)>> {
    let mut by_endpoint: BTreeMap<(String, String), Vec<(f64, u64)>> = BTreeMap::new();
    let Some(start) = e.backend.start() else {
        return by_endpoint;
    };
    for row in e.history {
        let end = chrono::DateTime::<chrono::Utc>::from(row.timestamp) - start;
        let end = end.num_milliseconds() as f64 / 1000.0;
        for endpoint in row.endpoints.iter().filter(|e| e.phase != Phase::Startup) {
            by_endpoint
                .entry((endpoint.method.clone(), endpoint.name.clone()))
                .or_default()
                .push((end, endpoint.requests));
        }
    }
    by_endpoint
}

/// A statement's calls in windows of [`WINDOW_SECS`] between readings that listed it (by its
/// text, which stays when the queryid that names it changes): (from, to, calls).
fn call_intervals(pg: &[(f64, &PostgresValues)], query: &str) -> Vec<(f64, f64, f64)> {
    let calls: Vec<(f64, i64)> = pg
        .iter()
        .filter_map(|(at, p)| {
            let s = p.statements.iter().find(|s| s.query == query)?;
            Some((*at, s.calls))
        })
        .collect();
    // Windows of a few seconds: a second's requests are counted when they are handed over,
    // which on a busy host is lumpy from one second to the next (the totals are exact).
    let mut windows: Vec<(f64, f64, f64)> = Vec::new();
    let mut from = 0;
    for to in 1..calls.len() {
        if calls[to].0 - calls[from].0 >= WINDOW_SECS || to == calls.len() - 1 {
            let delta = (calls[to].1 - calls[from].1).max(0) as f64;
            windows.push((calls[from].0, calls[to].0, delta));
            from = to;
        }
    }
    windows
}

/// How well `a` is a multiple of `b`: the cosine of the two series (1 when `a = k·b`; unlike a
/// correlation, defined for steady series, which a steady load gives).
fn similarity(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norms = a.iter().map(|x| x * x).sum::<f64>() * b.iter().map(|y| y * y).sum::<f64>();
    if norms > 0.0 { dot / norms.sqrt() } else { 0.0 }
}

/// Pearson's correlation of two series (0 when either is flat).
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    if va <= 0.0 || vb <= 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

/// The endpoints whose requests a statement's calls follow, and the calls and those requests
/// over the same windows.
struct Caller<'s> {
    endpoints: Vec<&'s (String, String)>,
    fit: f64,
    calls: f64,
    requests: f64,
}

impl Caller<'_> {
    /// `GET /api/v1/tasks`, or `GET /a or GET /b` when the calls cannot be told apart between them.
    fn name(&self) -> String {
        let names: Vec<String> = self
            .endpoints
            .iter()
            .map(|(method, name)| format!("{method} {name}"))
            .collect();
        names.join(" or ")
    }

    /// Calls per request of the endpoints named.
    fn per_request(&self) -> f64 {
        self.calls / self.requests.max(1e-9)
    }

    /// At most the slowdown of the endpoints it runs in.
    fn explained(&self, e: &Evidence<'_>) -> Option<super::Explained> {
        let pct: f64 = self
            .endpoints
            .iter()
            .filter_map(|(method, name)| e.endpoint_slowdown(method, name))
            .map(|share| share.pct)
            .sum();
        e.slowdown(pct.min(100.0) / 100.0)
    }
}

/// Similarities within this are a tie: endpoints whose requests keep a fixed ratio (a weighted
/// draw) fit the same calls equally well.
const FIT_TIE: f64 = 0.05;
/// How much better a correlation must be to tell one endpoint of a tie as the caller.
const CORRELATION_LEAD: f64 = 0.3;

/// The endpoints whose requests `intervals` of calls follow: the calls must be close to a
/// multiple of their requests (see [`similarity`]). Among endpoints that fit as well, the one
/// whose ups and downs the calls follow clearly better (correlation); else all of them, their
/// requests together: the fewest calls per request is the claim the figures support.
fn followed_endpoint<'s>(
    intervals: &[(f64, f64, f64)],
    seconds: &'s BTreeMap<(String, String), Vec<(f64, u64)>>,
) -> Option<Caller<'s>> {
    let calls: Vec<f64> = intervals.iter().map(|(_, _, c)| *c).collect();
    let candidates: Vec<(&(String, String), f64, f64, f64)> = seconds
        .iter()
        .filter_map(|(endpoint, rows)| {
            let requests: Vec<f64> = intervals
                .iter()
                .map(|(from, to, _)| {
                    // A row's requests spread over its second: an interval between two ticks
                    // takes the share of each second it overlaps (ticks and seconds do not end
                    // at the same instant, and a late tick would see two seconds, the next none).
                    rows.iter()
                        .map(|(end, n)| {
                            let overlap = (end.min(*to) - (end - 1.0).max(*from)).max(0.0);
                            *n as f64 * overlap
                        })
                        .sum()
                })
                .collect();
            let total: f64 = requests.iter().sum();
            (total > 0.0).then(|| {
                let fit = similarity(&calls, &requests);
                (endpoint, fit, correlation(&calls, &requests), total)
            })
        })
        .filter(|(_, fit, ..)| *fit >= MIN_SIMILARITY)
        .collect();
    let best_fit = candidates.iter().map(|c| c.1).fold(f64::MIN, f64::max);
    let tied: Vec<_> = candidates
        .into_iter()
        .filter(|c| c.1 >= best_fit - FIT_TIE)
        .collect();
    let leader = tied.iter().max_by(|a, b| a.2.total_cmp(&b.2))?;
    let clear = tied
        .iter()
        .all(|c| std::ptr::eq(c, leader) || leader.2 >= c.2 + CORRELATION_LEAD);
    let chosen: Vec<_> = if clear { vec![*leader] } else { tied };
    Some(Caller {
        endpoints: chosen.iter().map(|c| c.0).collect(),
        fit: chosen.iter().map(|c| c.1).fold(f64::MAX, f64::min),
        calls: calls.iter().sum(),
        requests: chosen.iter().map(|c| c.3).sum(),
    })
}

/// One `SELECT` run 5 times or more per request of the endpoint whose requests its calls
/// follow best (100 calls at least): a query in a loop over the rows of another (N+1).
/// Whether `s` ran about once per request of the whole run, whatever the endpoint: the
/// lookup an authenticated API makes for every request (the user behind the token), which
/// follows its busiest endpoint as well as that endpoint's own queries do.
fn once_per_request(e: &Evidence<'_>, s: &Statement) -> bool {
    let requests = e.total_requests();
    requests > 0 && (0.8..=1.3).contains(&(s.calls as f64 / requests as f64))
}

pub fn n_plus_one(e: &Evidence<'_>) -> Vec<Finding> {
    let Some((statements, total_ms)) = last_statements(e) else {
        return Vec::new();
    };
    let pg = e.backend.postgres();
    let seconds = endpoint_seconds(e);
    statements
        .iter()
        .filter(|s| s.calls >= N_PLUS_ONE_MIN_CALLS)
        .filter(|s| monitor::sql::first_keyword(&s.query).as_deref() == Some("SELECT"))
        .filter(|s| !once_per_request(e, s))
        .filter_map(|s| {
            let caller = followed_endpoint(&call_intervals(&pg, &s.query), &seconds)?;
            (caller.per_request() >= N_PLUS_ONE_PER_REQUEST).then_some((s, caller))
        })
        .map(|(statement, caller)| {
            let strained = e.strained();
            let (per_request, endpoint) = (caller.per_request(), caller.name());
            Finding::new(
                "postgres.n_plus_one",
                Layer::Postgres,
                if strained { Severity::Critical } else { Severity::Warning },
                format!(
                    "N+1 queries: one statement runs {per_request:.0} times per request of {endpoint}"
                ),
                format!(
                    "{} runs {per_request:.1} times per request of {endpoint}, whose requests its calls follow (similarity {:.2})",
                    quoted(statement, total_ms),
                    caller.fit
                ),
                "The endpoint queries once per item of a list: load them in one query (a JOIN, or selectinload()/joinedload() on the relationship in SQLAlchemy)",
            )
            .causing(SLOW_STATEMENT_SYMPTOMS)
            // At most the slowdown of the endpoint it loops in.
            .explaining(if strained { caller.explained(e) } else { None })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use monitor::sample::{ActiveQuery, PlanSummary};

    use super::super::testing::{outcome, postgres, ticks, with_evidence};
    use super::*;
    use crate::stats::EndpointSecond;

    const SCAN_QUERY: &str =
        "SELECT id, kind FROM file_events WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2";

    fn scanning(rows: f64) -> Statement {
        Statement {
            queryid: 7,
            query: SCAN_QUERY.into(),
            calls: 400,
            total_ms: 1640.0,
            mean_ms: 4.1,
            plan: Some(PlanSummary {
                total_cost: 2185.0,
                seq_scans: vec![SeqScan {
                    relation: "file_events".into(),
                    table_rows: rows,
                    filter_columns: vec!["user_id".into()],
                    sort_columns: vec!["created_at".into()],
                }],
            }),
            ..Default::default()
        }
    }

    fn cheap(queryid: i64, total_ms: f64) -> Statement {
        Statement {
            queryid,
            query: "SELECT id FROM users WHERE id = $1".into(),
            calls: 1000,
            total_ms,
            mean_ms: total_ms / 1000.0,
            ..Default::default()
        }
    }

    fn with_statements(statements: Vec<Statement>, total_ms: f64) -> Vec<monitor::sample::Tick> {
        ticks(6, move |_| {
            let statements = statements.clone();
            vec![postgres(move |p| {
                p.statements = statements;
                p.statements_total_ms = total_ms;
            })]
        })
    }

    #[test]
    fn a_scan_of_a_large_table_in_the_top_statement_names_the_index() {
        let slow = outcome(&[5; 6], &[20; 6], 900, &[]);
        let backend = with_statements(vec![scanning(1e5), cheap(8, 100.0)], 2645.0);
        let found = with_evidence(&slow, &backend, seq_scan);
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.rule, "postgres.seq_scan");
        assert!(f.evidence.contains(SCAN_QUERY), "{}", f.evidence);
        assert!(
            f.evidence.contains("62% of database time"),
            "{}",
            f.evidence
        );
        assert!(f.evidence.contains("filters on user_id"), "{}", f.evidence);
        assert!(f.title.contains("file_events") && f.title.contains("user_id"));
        assert!(
            f.action
                .starts_with("CREATE INDEX ON file_events (user_id, created_at)"),
            "{}",
            f.action
        );
        assert!(f.cause_of.contains(&"postgres.pool_exhausted"));
        // A small table, a small share or a fast run: nothing.
        let small = with_statements(vec![scanning(500.0)], 2000.0);
        assert!(with_evidence(&slow, &small, seq_scan).is_empty());
        let minor = with_statements(vec![cheap(8, 9000.0), scanning(1e5)], 20000.0);
        assert!(with_evidence(&slow, &minor, seq_scan).is_empty());
        let fast = outcome(&[5; 6], &[20; 6], 10, &[]);
        assert!(with_evidence(&fast, &backend, seq_scan).is_empty());
        // Within the targets, a scan of 50 ms a call is still worth its index: a warning.
        let mut costly = scanning(1e5);
        costly.mean_ms = 50.0;
        let slow_scan = with_statements(vec![costly], 2000.0);
        let found = with_evidence(&fast, &slow_scan, seq_scan);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(found[0].explains.is_none());
    }

    #[test]
    fn the_pool_finding_quotes_the_statement_that_holds_the_time() {
        let slow = outcome(&[5; 6], &[20; 6], 900, &[]);
        let backend = with_statements(vec![scanning(1e5), cheap(8, 100.0)], 2645.0);
        let mut run = slow.clone();
        run.backend = backend;
        let targets = crate::targets::Targets::default();
        let e = Evidence::new(&run, &targets, &[], BTreeMap::new());
        assert_eq!(
            time_note(&e),
            format!(
                "; the time is in `{SCAN_QUERY}` (62% of database time, 4.1 ms mean, 400 calls)"
            )
        );
        let spread = with_statements(vec![cheap(8, 100.0)], 2645.0);
        run.backend = spread;
        let e = Evidence::new(&run, &targets, &[], BTreeMap::new());
        assert_eq!(time_note(&e), "");
    }

    #[test]
    fn the_lock_finding_names_the_query_that_waits() {
        let slow = outcome(&[5; 6], &[20; 6], 900, &[]);
        let backend = ticks(5, |i| {
            vec![postgres(|p| {
                p.blocked = 1;
                p.queries = vec![ActiveQuery {
                    query: "UPDATE jobs SET status = $1 WHERE id = $2".into(),
                    backends: 1,
                    waits: [("Lock:transactionid".to_owned(), 1)].into(),
                    longest_secs: i as f64,
                }];
            })]
        });
        let found = with_evidence(&slow, &backend, super::super::postgres::lock_waits);
        assert!(
            found[0].evidence.contains(
                "waiting on the lock: `UPDATE jobs SET status = $1 WHERE id = $2` (in 5 samples)"
            ),
            "{}",
            found[0].evidence
        );
    }

    /// Second `i` of a run: `files` requests of GET /api/v1/files and 20 of GET /api/v1/tasks.
    fn endpoints(files: u64) -> Vec<EndpointSecond> {
        let second = |name: &str, requests: u64| EndpointSecond {
            phase: Phase::Steady,
            method: "GET".into(),
            name: name.into(),
            requests,
            failures: 0,
            percentiles_ms: [10.0; 3],
        };
        vec![second("/api/v1/files", files), second("/api/v1/tasks", 20)]
    }

    #[test]
    fn a_statement_run_per_item_of_an_endpoint_is_n_plus_one() {
        // GET /api/v1/files varies second by second; the statement runs 12 times per request.
        let files = [4u64, 9, 3, 8, 5, 10, 6, 7, 4, 9];
        let mut run = outcome(&[5; 10], &[20; 10], 900, &[]);
        for (row, n) in run.history.iter_mut().zip(files) {
            row.endpoints = endpoints(n);
        }
        let backend = ticks(10, |i| {
            let calls: u64 = files[..=i].iter().sum::<u64>() * 12;
            vec![postgres(move |p| {
                p.statements = vec![Statement {
                    queryid: 3,
                    query: "SELECT * FROM file_events WHERE file_id = $1".into(),
                    calls: calls as i64,
                    total_ms: calls as f64 * 0.5,
                    mean_ms: 0.5,
                    ..Default::default()
                }];
                p.statements_total_ms = calls as f64 * 0.6;
            })]
        });
        let found = with_evidence(&run, &backend, n_plus_one);
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert!(
            f.title
                .contains("runs 12 times per request of GET /api/v1/files"),
            "{}",
            f.title
        );
        assert!(
            f.evidence
                .contains("`SELECT * FROM file_events WHERE file_id = $1`"),
            "{}",
            f.evidence
        );
        assert!(f.action.contains("selectinload"));
        // Logins in the first second only: a start-up request is never the loop's.
        let mut with_logins = run.clone();
        with_logins.history[1].endpoints.push(EndpointSecond {
            phase: Phase::Startup,
            method: "POST".into(),
            name: "/api/v1/auth/login".into(),
            requests: 1,
            failures: 0,
            percentiles_ms: [10.0; 3],
        });
        let found = with_evidence(&with_logins, &backend, n_plus_one);
        assert!(
            found[0].title.contains("of GET /api/v1/files"),
            "{found:#?}"
        );
        // Once per request of GET /api/v1/tasks: no loop.
        let once = ticks(10, |i| {
            vec![postgres(move |p| {
                p.statements = vec![Statement {
                    queryid: 3,
                    query: "SELECT * FROM tasks WHERE id = $1".into(),
                    calls: 20 * (i as i64 + 1),
                    ..Default::default()
                }];
            })]
        });
        let found = with_evidence(&run, &once, n_plus_one);
        assert!(found.is_empty(), "{found:#?}");
    }

    #[test]
    fn endpoints_in_a_fixed_ratio_share_the_calls_and_a_per_request_statement_is_no_loop() {
        // GET /api/v1/files 3 times as often as GET /api/v1/tasks, both varying together.
        let load = [4u64, 9, 3, 8, 5, 10, 6, 7, 4, 9];
        let mut run = outcome(&[5; 10], &[0; 10], 900, &[]);
        for (row, n) in run.history.iter_mut().zip(load) {
            let mut seconds = endpoints(3 * n);
            seconds[1].requests = n;
            row.endpoints = seconds;
        }
        let statement = |query: &str, per_tick: &dyn Fn(u64) -> u64, i: usize| Statement {
            queryid: query.len() as i64,
            query: query.into(),
            calls: load[..=i].iter().map(|n| per_tick(*n)).sum::<u64>() as i64,
            total_ms: 100.0,
            mean_ms: 0.01,
            ..Default::default()
        };
        let backend = ticks(10, |i| {
            // The user's row, once per request of either; the loop, 12 times per file list.
            let lookup = statement("SELECT * FROM users WHERE id = $1", &|n| 4 * n, i);
            let names = statement("SELECT name FROM files WHERE id = $1", &|n| 36 * n, i);
            vec![postgres(move |p| p.statements = vec![lookup, names])]
        });
        let found = with_evidence(&run, &backend, n_plus_one);
        assert_eq!(found.len(), 1, "{found:#?}");
        // Which of the two loops cannot be told from their counts: both are named, and the
        // calls per request of both together (36 for 4 requests) is the claim.
        assert!(
            found[0]
                .title
                .ends_with("runs 9 times per request of GET /api/v1/files or GET /api/v1/tasks"),
            "{}",
            found[0].title
        );
        assert!(found[0].evidence.contains("SELECT name FROM files"));
    }

    #[test]
    fn a_lookup_made_once_per_request_of_any_endpoint_is_no_loop() {
        // The user behind the token, read once per request of either endpoint; GET
        // /api/v1/tasks about 5 times as often as GET /api/v1/files, both varying together, so
        // that the lookup follows GET /api/v1/files at 6 calls per request of it.
        let files = [4u64, 9, 3, 8, 5, 10, 6, 7, 4, 9];
        let tasks: Vec<u64> = files
            .iter()
            .enumerate()
            .map(|(i, n)| 5 * n + (i as u64 % 3))
            .collect();
        let mut run = outcome(&[5; 10], &[0; 10], 900, &[]);
        for (i, row) in run.history.iter_mut().enumerate() {
            let mut seconds = endpoints(files[i]);
            seconds[1].requests = tasks[i];
            row.endpoints = seconds;
        }
        for (name, count) in [
            ("/api/v1/files", files.iter().sum::<u64>()),
            ("/api/v1/tasks", tasks.iter().sum::<u64>()),
        ] {
            let stats = run
                .stats
                .endpoints
                .entry(crate::stats::Key {
                    phase: Phase::Steady,
                    method: "GET".into(),
                    name: name.into(),
                })
                .or_default();
            for _ in 0..count {
                stats.record(10_000, 10, Some(200), false);
            }
        }
        let backend = ticks(10, |i| {
            let calls = (0..=i).map(|s| files[s] + tasks[s]).sum::<u64>() as i64;
            vec![postgres(move |p| {
                p.statements = vec![Statement {
                    queryid: 5,
                    query: "SELECT * FROM users WHERE users.id = $1".into(),
                    calls,
                    total_ms: 10.0,
                    mean_ms: 0.04,
                    ..Default::default()
                }];
            })]
        });
        let found = with_evidence(&run, &backend, n_plus_one);
        assert!(found.is_empty(), "{found:#?}");
        // The guard itself: about one call per request of the run is a lookup; 12 per request
        // of GET /api/v1/files (about 2 per request of the run) is not.
        let judged = |calls: i64| -> super::super::Rule {
            match calls {
                330 => |e| marker(once_per_request(e, &called(330))),
                _ => |e| marker(once_per_request(e, &called(780))),
            }
        };
        assert_eq!(with_evidence(&run, &[], judged(330)).len(), 1, "a lookup");
        assert!(with_evidence(&run, &[], judged(780)).is_empty(), "a loop");
    }

    fn called(calls: i64) -> Statement {
        Statement {
            calls,
            ..Default::default()
        }
    }

    /// One finding when `yes`: what a predicate said, through a rule.
    fn marker(yes: bool) -> Vec<Finding> {
        if yes {
            vec![Finding::new(
                "test",
                Layer::Postgres,
                Severity::Info,
                "",
                "",
                "",
            )]
        } else {
            Vec::new()
        }
    }

    #[test]
    fn a_healthy_run_blames_no_statement() {
        let fast = outcome(&[5; 6], &[20; 6], 10, &[]);
        let backend = with_statements(vec![cheap(8, 100.0), cheap(9, 50.0)], 150.0);
        for rule in [seq_scan, n_plus_one] {
            assert!(with_evidence(&fast, &backend, rule).is_empty());
        }
        assert!(with_evidence(&fast, &[], seq_scan).is_empty());
    }
}
