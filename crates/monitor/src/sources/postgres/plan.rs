//! `EXPLAIN` (never `ANALYZE`) of a statement's generic plan, on a connection of our own with a
//! statement timeout, in a read-only transaction, and the plan's summary: its sequential scans,
//! with the table's estimated rows, the columns the scan filters on and the sort above it.
//! Only queries are planned (`SELECT`, `UPDATE`, `DELETE`, `INSERT ... SELECT`): anything else
//! is refused before it reaches the server.

use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};

use crate::sample::{PlanSummary, SeqScan};
use crate::sql;

/// The planning connection's `application_name`.
pub const APPLICATION_NAME: &str = "monitor-explain";

/// How long planning one statement may take, whatever the server's settings.
const STATEMENT_TIMEOUT: &str = "2s";

/// Why a statement was not planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Not a query we plan: DDL, a utility statement, several statements.
    #[error("not a query to plan")]
    Refused,
    /// The server would not plan it (a parameter whose type it cannot infer, a timeout...).
    #[error("cannot plan: {0}")]
    Server(#[from] sqlx::Error),
    /// The plan was not the JSON `EXPLAIN (FORMAT JSON)` gives.
    #[error("unexpected plan: {0}")]
    Json(#[from] serde_json::Error),
}

/// Whether `query` is one we plan: a single `SELECT`, `UPDATE`, `DELETE`, `INSERT ... SELECT`,
/// or `WITH` that writes nothing.
pub fn plannable(query: &str) -> bool {
    if sql::several_statements(query) {
        return false;
    }
    let words = sql::words(query);
    let writes = || {
        words
            .iter()
            .any(|w| matches!(w.as_str(), "insert" | "update" | "delete" | "merge"))
    };
    match sql::first_keyword(query).as_deref() {
        Some("SELECT" | "UPDATE" | "DELETE") => true,
        Some("INSERT") => words.iter().any(|w| w == "select"),
        Some("WITH") => !writes(),
        _ => false,
    }
}

/// The generic plan of `query` (`$n` parameters, as `pg_stat_statements` shows it), summarized:
/// `GENERIC_PLAN` on PostgreSQL 16 and later; before, a prepared statement run with NULLs under
/// `plan_cache_mode = force_generic_plan`. On a fresh connection to `url`, closed after.
pub async fn explain(
    url: &str,
    server_version: i32,
    query: &str,
) -> Result<PlanSummary, PlanError> {
    if !plannable(query) {
        return Err(PlanError::Refused);
    }
    let query = sql::preparable(query);
    // Named, so that while it closes it is never counted in the API's pool (a pool is a
    // database, an application name and a client address).
    let options = url
        .parse::<sqlx::postgres::PgConnectOptions>()?
        .application_name(APPLICATION_NAME);
    let mut connection = PgConnection::connect_with(&options).await?;
    let result = explain_on(&mut connection, server_version, &query).await;
    let _ = connection.close().await;
    result
}

async fn explain_on(
    connection: &mut PgConnection,
    server_version: i32,
    query: &str,
) -> Result<PlanSummary, PlanError> {
    let setup = format!(
        "SET statement_timeout = '{STATEMENT_TIMEOUT}'; SET lock_timeout = '{STATEMENT_TIMEOUT}';
         SET plan_cache_mode = force_generic_plan; BEGIN READ ONLY"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&mut *connection)
        .await?;
    // The text is a single query (checked above) from the server's own statistics.
    let explain = if server_version >= 160_000 {
        format!("EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) {query}")
    } else {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "PREPARE loadgen_explain AS {query}"
        )))
        .execute(&mut *connection)
        .await?;
        let nulls = vec!["NULL"; sql::parameters(query)].join(", ");
        let arguments = if nulls.is_empty() {
            String::new()
        } else {
            format!("({nulls})")
        };
        format!("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE loadgen_explain{arguments}")
    };
    let row = sqlx::raw_sql(sqlx::AssertSqlSafe(explain))
        .fetch_one(&mut *connection)
        .await?;
    let json: String = row.try_get_unchecked(0)?;
    let (total_cost, nodes) = scan_nodes(&serde_json::from_str(&json)?);
    let mut seq_scans = Vec::with_capacity(nodes.len());
    for node in nodes {
        seq_scans.push(resolve(connection, node).await?);
    }
    sqlx::raw_sql("ROLLBACK").execute(&mut *connection).await?;
    Ok(PlanSummary {
        total_cost,
        seq_scans,
    })
}

/// A sequential scan as the plan shows it, before the catalog tells its columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanNode {
    /// Schema (from `VERBOSE`).
    pub schema: String,
    /// Table.
    pub relation: String,
    /// The filter's text, e.g. `(file_events.user_id = $1)`.
    pub filter: String,
    /// The keys of the sorts above it.
    pub sort_keys: Vec<String>,
}

/// The total cost and the sequential scans of `EXPLAIN (FORMAT JSON)`'s output.
pub fn scan_nodes(explained: &Value) -> (f64, Vec<ScanNode>) {
    let plan = &explained[0]["Plan"];
    let mut out = Vec::new();
    walk(plan, &mut Vec::new(), &mut out);
    (plan["Total Cost"].as_f64().unwrap_or(0.0), out)
}

fn walk(node: &Value, sorts: &mut Vec<String>, out: &mut Vec<ScanNode>) {
    let text = |key: &str| node[key].as_str().unwrap_or_default().to_owned();
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let keys: Vec<String> = match kind {
        "Sort" | "Incremental Sort" => node["Sort Key"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let pushed = keys.len();
    sorts.extend(keys);
    if kind == "Seq Scan" {
        out.push(ScanNode {
            schema: text("Schema"),
            relation: text("Relation Name"),
            filter: text("Filter"),
            sort_keys: sorts.clone(),
        });
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        walk(child, sorts, out);
    }
    sorts.truncate(sorts.len() - pushed);
}

/// The table's columns named in `text` (a filter or a sort key), each once, in order.
pub fn columns_in(text: &str, table_columns: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for word in sql::words(text) {
        if table_columns.contains(&word) && !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

/// The scan with its table's estimated rows and the columns its filter and sorts name.
async fn resolve(connection: &mut PgConnection, node: ScanNode) -> Result<SeqScan, PlanError> {
    let schema = if node.schema.is_empty() {
        "public"
    } else {
        node.schema.as_str()
    };
    // reltuples is -1 until the table is first vacuumed or analyzed: the live rows then.
    let table: Option<(f64, Vec<String>)> = sqlx::query_as(
        "SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples
                     ELSE pg_stat_get_live_tuples(c.oid) END::float8,
                array_agg(a.attname::text ORDER BY a.attnum)
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname = $1 AND c.relname = $2
         GROUP BY c.oid, c.reltuples",
    )
    .bind(schema)
    .bind(&node.relation)
    .fetch_optional(&mut *connection)
    .await?;
    let (table_rows, columns) = table.unwrap_or_default();
    let sort_columns = node
        .sort_keys
        .iter()
        .flat_map(|key| columns_in(key, &columns))
        .fold(Vec::new(), |mut all: Vec<String>, c| {
            if !all.contains(&c) {
                all.push(c);
            }
            all
        });
    Ok(SeqScan {
        relation: if schema == "public" {
            node.relation
        } else {
            format!("{schema}.{}", node.relation)
        },
        table_rows,
        filter_columns: columns_in(&node.filter, &columns),
        sort_columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_are_planned() {
        for query in [
            "SELECT * FROM file_events WHERE user_id = $1",
            "  (SELECT 1)",
            "UPDATE jobs SET status = $1 WHERE id = $2",
            "DELETE FROM jobs WHERE id = $1",
            "INSERT INTO archive SELECT * FROM jobs WHERE done",
            "WITH recent AS (SELECT * FROM jobs) SELECT count(*) FROM recent",
        ] {
            assert!(plannable(query), "{query}");
        }
        for query in [
            "INSERT INTO jobs (id) VALUES ($1)",
            "CREATE INDEX ON file_events (user_id)",
            "DROP TABLE jobs",
            "VACUUM jobs",
            "SET work_mem = $1",
            "SELECT 1; DROP TABLE jobs",
            "WITH gone AS (DELETE FROM jobs RETURNING id) SELECT count(*) FROM gone",
            "COPY jobs TO STDOUT",
            "",
        ] {
            assert!(!plannable(query), "{query}");
        }
    }

    /// What PostgreSQL 15 gives for `SELECT ... WHERE user_id = $1 ORDER BY created_at DESC
    /// LIMIT 20` on an unindexed table, cut to the fields read.
    const PLAN: &str = r#"[{"Plan": {"Node Type": "Limit", "Total Cost": 2185.6,
        "Plans": [{"Node Type": "Sort", "Sort Key": ["file_events.created_at DESC"],
          "Plans": [{"Node Type": "Seq Scan", "Relation Name": "file_events",
            "Schema": "public", "Alias": "file_events",
            "Filter": "(file_events.user_id = $1)"}]}]}}]"#;

    #[test]
    fn the_seq_scan_its_filter_and_the_sort_above_it() {
        let plan: Value = serde_json::from_str(PLAN).unwrap_or_default();
        let (cost, nodes) = scan_nodes(&plan);
        assert!((cost - 2185.6).abs() < 1e-9, "{cost}");
        assert_eq!(
            nodes,
            [ScanNode {
                schema: "public".into(),
                relation: "file_events".into(),
                filter: "(file_events.user_id = $1)".into(),
                sort_keys: vec!["file_events.created_at DESC".into()],
            }]
        );
        let columns: Vec<String> = ["id", "user_id", "created_at", "kind"]
            .map(String::from)
            .into();
        assert_eq!(columns_in(&nodes[0].filter, &columns), ["user_id"]);
        assert_eq!(columns_in(&nodes[0].sort_keys[0], &columns), ["created_at"]);
        // A scan without a sort above it, beside the one with.
        let join: Value = serde_json::from_str(
            r#"[{"Plan": {"Node Type": "Hash Join", "Total Cost": 10,
              "Plans": [{"Node Type": "Seq Scan", "Relation Name": "a", "Schema": "s"},
                        {"Node Type": "Sort", "Sort Key": ["b.x"], "Plans": [
                          {"Node Type": "Seq Scan", "Relation Name": "b", "Schema": "public"}]}]}}]"#,
        )
        .unwrap_or_default();
        let (_, nodes) = scan_nodes(&join);
        assert_eq!(nodes.len(), 2);
        assert!(nodes[0].sort_keys.is_empty() && nodes[0].filter.is_empty());
        assert_eq!(nodes[1].sort_keys, ["b.x"]);
    }
}
