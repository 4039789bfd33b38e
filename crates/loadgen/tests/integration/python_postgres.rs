//! PostgreSQL findings on the Python reference stack (`testbed-py/`), with loadgen's monitor on
//! the stack's own database (where the test creates `pg_stat_statements`): the unindexed query
//! is named with its table, its column and the index to create; the N+1 loop with its calls per
//! request of `GET /api/v1/tasks`; SQLAlchemy's small pool, held across a call to storage, with
//! the pool it is; and a healthy stack blames no statement.

use sqlx::{Connection, Executor, PgConnection};
use test_support::PythonStack;

use crate::diagnosis::{at_least_secs, finish, found, start_at};
use crate::support::{scenario, until};

/// The stack with `env` planted (bcrypt at its cheapest: the logins are not what is judged),
/// and `pg_stat_statements` in its database.
async fn stack(env: &[(&str, &str)]) -> PythonStack {
    let mut env = env.to_vec();
    env.push(("BCRYPT_ROUNDS", "4"));
    let stack = PythonStack::start(&env).await;
    let mut db = PgConnection::connect(stack.database_url()).await.unwrap();
    db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .unwrap();
    stack
}

/// Runs `scenario` with `users` against the stack, monitor on, until `requests` steady requests
/// and 10 s: the analysis, its findings as `rule | title | evidence | action` lines, and the
/// Markdown report.
async fn run(
    stack: &PythonStack,
    scenario_file: &str,
    users: &str,
    requests: u64,
) -> (loadgen::report::Analysis, String, String) {
    let queue = format!("none-{}", uuid::Uuid::new_v4().simple());
    let args = [
        "-f",
        &scenario(scenario_file),
        "-u",
        users,
        "-r",
        users,
        "--target",
        "p95=100ms",
    ];
    let (handle, config) = start_at(&stack.base_url(), stack.database_url(), &queue, &args).await;
    until(&handle, |u| {
        at_least_secs(u, 10) && u.second.cumulative.requests >= requests
    })
    .await;
    let (outcome, analysis) = finish(handle, &config).await;
    let markdown =
        loadgen::report::markdown::render(&loadgen::report::Report::of_run(&config, &outcome));
    let summary = analysis
        .findings
        .iter()
        .map(|f| format!("{} | {} | {} | {}", f.rule, f.title, f.evidence, f.action))
        .collect::<Vec<_>>()
        .join("\n");
    (analysis, summary, markdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unindexed_query_is_named_with_its_column_and_the_index_to_create() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = stack(&[("PLANT_UNINDEXED_QUERY", "1")]).await;
    let (analysis, summary, markdown) = run(&stack, "user_stats.toml", "6", 40).await;
    eprintln!("unindexed query, findings:\n{summary}");
    let top = &analysis.findings[0];
    assert_eq!(top.rule, "postgres.seq_scan", "{summary}\n{}", stack.logs());
    let scan = found(&analysis, "postgres.seq_scan");
    assert!(
        scan.evidence
            .contains("`SELECT count(*) FROM file_events WHERE user_id = $1"),
        "{summary}"
    );
    assert!(
        scan.title.contains("file_events") && scan.title.contains("user_id"),
        "{summary}"
    );
    assert!(
        scan.evidence
            .contains("run by GET /api/v1/users/me/stats ("),
        "{summary}"
    );
    assert!(
        scan.action
            .starts_with("CREATE INDEX ON file_events (user_id, created_at)"),
        "{summary}"
    );
    // The report's table shows it first, with its plan.
    let table = markdown
        .split("### Top statements")
        .nth(1)
        .unwrap_or_else(|| panic!("no statements table in {markdown}"));
    let first = table.lines().nth(4).unwrap_or_default();
    assert!(
        first.starts_with("| `SELECT count(*) FROM file_events WHERE user_id = $1")
            && first.contains("seq scan of file_events (500000 rows; filter user_id, created_at)"),
        "{table}"
    );
}

/// Under `tests/scenarios/task_history.toml` (users with 12 tasks each, who list them three
/// times as often as they read their figures), the N+1 loop is found in `GET /api/v1/tasks`,
/// not in the other steady endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_n_plus_one_loop_is_named_with_its_calls_per_request() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = stack(&[("PLANT_N_PLUS_ONE", "1")]).await;
    // 800 requests (about 30 s): the 48 join jobs the users create at start-up run ffmpeg on
    // the worker and can hold both cores for their first seconds; over a longer run they are
    // too few of its samples to call the host saturated.
    let (analysis, summary, _) = run(&stack, "task_history.toml", "4", 800).await;
    eprintln!("n+1, findings:\n{summary}");
    // The loop is the first cause; on a CPU-starved runner the jobs' ffmpeg may rank the
    // host's CPU (named after the worker) above it, a true cause as well, never another.
    let causes: Vec<&loadgen::diagnosis::Finding> = analysis
        .findings
        .iter()
        .filter(|f| f.explained_by.is_none())
        .collect();
    let top = if causes[0].rule == "host.cpu_saturated"
        && causes[0]
            .evidence
            .contains("in them the stack's own processes used")
        && causes[0].evidence.contains(": celery (pid")
    {
        causes[1]
    } else {
        causes[0]
    };
    assert_eq!(
        top.rule,
        "postgres.n_plus_one",
        "{summary}\n{}",
        stack.logs()
    );
    assert!(
        top.evidence
            .contains("`SELECT files.original_filename FROM files WHERE files.id IN (...)`"),
        "{summary}"
    );
    assert!(
        top.title.contains("per request of GET /api/v1/tasks"),
        "{summary}"
    );
    // 12 tasks on the page: 12 calls a request, give or take the requests of the seconds at
    // either end of the window the calls are counted over (a tick and a second of the run do
    // not end at the same instant).
    let per_request: f64 = top
        .title
        .split("runs ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!((8.0..=15.0).contains(&per_request), "{summary}");
    assert!(top.action.contains("selectinload"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_stack_blames_no_statement() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = stack(&[]).await;
    let (analysis, summary, _) = run(&stack, "user_stats.toml", "4", 40).await;
    eprintln!("healthy, findings:\n{summary}");
    assert!(
        analysis
            .findings
            .iter()
            .all(|f| !matches!(f.rule, "postgres.seq_scan" | "postgres.n_plus_one")),
        "{summary}"
    );
}

/// A pool of 2 without overflow, each `GET /users/me/stats` holding its connection across the
/// storage call (30 ms, idle in transaction to PostgreSQL): 20 users queue for the two
/// connections while the database has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_small_pool_is_named_with_the_api_and_its_size() {
    let _heavy = crate::support::HEAVY.lock().await;
    let stack = stack(&[("PLANT_SMALL_POOL", "1")]).await;
    let (analysis, summary, _) = run(&stack, "user_stats.toml", "20", 200).await;
    eprintln!("small pool, findings:\n{summary}");
    let top = &analysis.findings[0];
    assert_eq!(
        top.rule,
        "postgres.pool_exhausted",
        "{summary}\n{}",
        stack.logs()
    );
    assert!(
        top.evidence.contains("application ffmpeg-api") && top.evidence.contains("stayed at 2 "),
        "{summary}"
    );
    // Held across the call to storage, not by slow queries: said so, with what to change.
    assert!(
        top.evidence
            .contains("its connections were idle inside a transaction")
            && top.action.contains("end the transaction"),
        "{summary}"
    );
    assert!(
        analysis
            .findings
            .iter()
            .all(|f| !matches!(f.rule, "postgres.seq_scan" | "postgres.n_plus_one")),
        "no statement is to blame: {summary}"
    );
}
