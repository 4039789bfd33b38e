//! "Top statements": PostgreSQL's statements that took the most database time over the run
//! (`pg_stat_statements` deltas the monitor sampled), with what their plans scan, as a table in
//! the HTML and Markdown reports. The JSON report carries them in its backend ticks.

use std::fmt::Write;

use monitor::sample::{Statement, Tick, Values};

use super::markup::escape;

/// Rows of the table.
const SHOWN: usize = 10;

/// The statements of the last tick that had some (their counters run from the watch's start),
/// and the database time of all statements, ms.
fn top(backend: &[Tick]) -> Option<(&[Statement], f64)> {
    let mut ticks: Vec<&Tick> = backend.iter().collect();
    ticks.sort_by_key(|t| (t.timestamp, t.tick));
    ticks.iter().rev().find_map(|tick| {
        tick.sources
            .values()
            .find_map(|reading| match &reading.values {
                Some(Values::Postgres(p)) if !p.statements.is_empty() => {
                    let listed: f64 = p.statements.iter().map(|s| s.total_ms).sum();
                    Some((p.statements.as_slice(), p.statements_total_ms.max(listed)))
                }
                _ => None,
            })
    })
}

/// What the plan scans: `seq scan of file_events (500000 rows; filter user_id; sort created_at)`.
fn plan_cell(statement: &Statement) -> String {
    let Some(plan) = &statement.plan else {
        return String::new();
    };
    plan.seq_scans
        .iter()
        .map(|scan| {
            let mut parts = vec![format!("{:.0} rows", scan.table_rows)];
            if !scan.filter_columns.is_empty() {
                parts.push(format!("filter {}", scan.filter_columns.join(", ")));
            }
            if !scan.sort_columns.is_empty() {
                parts.push(format!("sort {}", scan.sort_columns.join(", ")));
            }
            format!("seq scan of {} ({})", scan.relation, parts.join("; "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The row's cells after the statement: share, calls, mean, total, rows, blocks read, plan.
fn figures(statement: &Statement, total_ms: f64) -> [String; 7] {
    let share = if total_ms > 0.0 {
        statement.total_ms * 100.0 / total_ms
    } else {
        0.0
    };
    [
        format!("{share:.0}%"),
        statement.calls.to_string(),
        format!("{:.2}", statement.mean_ms),
        format!("{:.0}", statement.total_ms),
        statement.rows.to_string(),
        statement.shared_blks_read.to_string(),
        plan_cell(statement),
    ]
}

const HEADERS: [&str; 8] = [
    "Statement",
    "Database time",
    "Calls",
    "Mean ms",
    "Total ms",
    "Rows",
    "Blocks read",
    "Plan",
];

/// The HTML table, when the run sampled statements.
pub fn html(out: &mut String, backend: &[Tick]) {
    let Some((statements, total_ms)) = top(backend) else {
        return;
    };
    out.push_str("<h2>Top statements</h2>\n<table><tr>");
    for header in HEADERS {
        let _ = write!(out, "<th>{header}</th>");
    }
    out.push_str("</tr>\n");
    for statement in statements.iter().take(SHOWN) {
        let _ = write!(
            out,
            "<tr><td style=\"text-align:left\"><code>{}</code></td>",
            escape(&statement.query)
        );
        for cell in figures(statement, total_ms) {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

/// The Markdown table, when the run sampled statements.
pub fn markdown(out: &mut String, backend: &[Tick]) {
    let Some((statements, total_ms)) = top(backend) else {
        return;
    };
    let _ = writeln!(
        out,
        "\n### Top statements\n\n| {} |\n|---|--:|--:|--:|--:|--:|--:|---|",
        HEADERS.join(" | ")
    );
    let cell = |text: &str| {
        text.replace('\\', "\\\\")
            .replace('|', "\\|")
            .replace('`', "'")
            .replace(['\r', '\n'], " ")
    };
    for statement in statements.iter().take(SHOWN) {
        let figures = figures(statement, total_ms).map(|f| cell(&f));
        let _ = writeln!(
            out,
            "| `{}` | {} |",
            cell(&statement.query),
            figures.join(" | ")
        );
    }
}

#[cfg(test)]
mod tests {
    use monitor::sample::{PlanSummary, PostgresValues, SeqScan, SourceReading};

    use super::*;

    fn backend() -> Vec<Tick> {
        let statement = Statement {
            queryid: 1,
            query: "SELECT count(*) FROM file_events WHERE user_id = $1 AND note <> '|'".into(),
            calls: 232,
            total_ms: 28_140.0,
            mean_ms: 121.3,
            rows: 232,
            shared_blks_read: 9,
            shared_blks_hit: 100,
            plan: Some(PlanSummary {
                total_cost: 9000.0,
                seq_scans: vec![SeqScan {
                    relation: "file_events".into(),
                    table_rows: 5e5,
                    filter_columns: vec!["user_id".into()],
                    sort_columns: Vec::new(),
                }],
            }),
        };
        let values = PostgresValues {
            statements: vec![statement],
            statements_total_ms: 28_200.0,
            ..Default::default()
        };
        let reading = SourceReading {
            at: chrono::Utc::now(),
            up: true,
            error: None,
            values: Some(Values::Postgres(values)),
            notes: Vec::new(),
        };
        vec![Tick {
            tick: 1,
            timestamp: chrono::Utc::now(),
            spread_ms: 0.0,
            sources: [("postgres".to_owned(), reading)].into(),
        }]
    }

    #[test]
    fn the_tables_show_the_statement_its_share_and_its_plan() {
        let mut md = String::new();
        markdown(&mut md, &backend());
        assert!(md.contains("### Top statements"), "{md}");
        assert!(
            md.contains(
                "| `SELECT count(*) FROM file_events WHERE user_id = $1 AND note <> '\\|'` | 100% | 232 | 121.30 | 28140 | 232 | 9 | seq scan of file_events (500000 rows; filter user_id) |"
            ),
            "{md}"
        );
        let mut html = String::new();
        super::html(&mut html, &backend());
        assert!(html.contains("<h2>Top statements</h2>"), "{html}");
        assert!(html.contains("note &lt;&gt; &#39;|&#39;"), "{html}");
        // Without statements, no section.
        let mut none = String::new();
        markdown(&mut none, &[]);
        super::html(&mut none, &[]);
        assert!(none.is_empty());
    }
}
