//! The UI's HTTP surface: the page, Locust's web API (`/swarm`, `/stop`, `/stats/reset`,
//! `/stats/requests`, `/stats/report`, `/exceptions`, `/tasks`, `/logs`, `/worker-count`, the
//! CSV downloads) and our own JSON API under `/api`, which the page
//! itself uses, with the capacity search's (`/api/capacity`). Each handler is a thin reading of
//! the [`Session`].

use std::sync::Arc;

use super::capacity::CapacitySearch;
use axum::extract::{Form, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::capacity::Refusal;
use super::guard::{self, AllowedHosts, Credentials};
use super::session::{Session, SwarmRequest};
use super::{locust_api, page};
use crate::report::{self, Report};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The session.
    pub session: Arc<Mutex<Session>>,
    /// Whether the form lets the user pick classes.
    pub class_picker: bool,
}

/// Every route, behind the host check, (when set) basic authentication and the origin check.
pub fn router(state: AppState, credentials: Credentials, allowed: AllowedHosts) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/ui.js", get(script))
        .route("/assets/ui.css", get(style))
        .route("/swarm", post(locust_swarm))
        .route("/stop", get(stop).post(stop))
        .route("/stats/reset", get(reset).post(reset))
        .route("/stats/requests", get(locust_stats))
        .route("/stats/requests/csv", get(|s| csv(s, "stats")))
        .route("/stats/failures/csv", get(|s| csv(s, "failures")))
        .route("/exceptions/csv", get(|s| csv(s, "exceptions")))
        .route("/stats/report", get(stats_report))
        .route("/exceptions", get(exceptions))
        .route("/tasks", get(tasks))
        .route(
            "/logs",
            get(|| async { Json(json!({"master": super::logs::recent(), "workers": {}})) }),
        )
        .route("/worker-count", get(worker_count))
        .route("/api/stats", get(api_stats))
        .route("/api/swarm", post(api_swarm))
        .route("/api/stop", post(stop))
        .route("/api/reset", post(reset))
        .route("/api/charts", get(charts))
        .route("/api/profiles/{pid}/flamegraph.svg", get(flame_graph))
        .route("/api/logs", get(|| async { Json(super::logs::recent()) }))
        .route("/api/report.json", get(report_json))
        .route("/api/report.html", get(report_html))
        .route("/api/report.csv", get(|s| csv(s, "stats")))
        .route("/api/capacity", get(capacity))
        .route("/api/capacity/start", post(capacity_start))
        .route("/api/capacity/stop", post(capacity_stop))
        .route("/api/capacity/report.json", get(capacity_report))
        .route("/api/capacity/charts", get(capacity_charts))
        .layer(axum::middleware::from_fn(guard::origin_check))
        .layer(axum::middleware::from_fn_with_state(
            credentials,
            guard::basic_auth,
        ))
        // Outermost: a rebound page gets nothing, not even an authentication prompt.
        .layer(axum::middleware::from_fn_with_state(
            allowed,
            guard::host_check,
        ))
        .with_state(state)
}

async fn index(State(state): State<AppState>) -> Html<String> {
    let session = state.session.lock().await;
    Html(page::index(&session, state.class_picker))
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        page::SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        page::STYLE,
    )
        .into_response()
}

/// Parses Locust's form: `user_count`, `spawn_rate`, `host`, `run_time`, `user_classes`, and
/// ours, `arrival_rate` (absent from Locust's form: the closed model).
fn swarm_from_form(fields: &[(String, String)]) -> Result<SwarmRequest, String> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    };
    let users = field("user_count").unwrap_or("");
    let users: u64 = users.parse().map_err(|_| {
        format!("Invalid user_count value: {users:?} (must be a whole number of users, 1 or more)")
    })?;
    let rate = field("spawn_rate").unwrap_or("");
    let spawn_rate: f64 = rate
        .parse()
        .map_err(|_| format!("Invalid spawn_rate value: {rate:?} (must be a number)"))?;
    let run_time = match field("run_time").filter(|t| !t.is_empty()) {
        Some(text) => Some(common::duration::parse(text).map_err(|e| format!("run time: {e}"))?),
        None => None,
    };
    Ok(SwarmRequest {
        users,
        spawn_rate,
        host: field("host").map(str::to_owned),
        run_time,
        user_classes: fields
            .iter()
            .filter(|(k, _)| k == "user_classes")
            .map(|(_, v)| v.clone())
            .collect(),
        arrival_rate: field("arrival_rate").map(str::to_owned),
        stack: field("stack").map(str::to_owned),
    })
}

async fn swarm(state: &AppState, request: Result<SwarmRequest, String>) -> Value {
    let mut session = state.session.lock().await;
    let run_time = request.as_ref().ok().and_then(|r| r.run_time);
    let result = match request {
        Ok(request) => session.swarm(request).await,
        Err(message) => Err(message),
    };
    let host = session.shown_host();
    match result {
        Ok(message) => {
            let mut answer = json!({"success": true, "message": message, "host": host});
            if let Some(run_time) = run_time {
                answer["run_time"] = json!(run_time.as_secs_f64());
            }
            answer
        }
        Err(message) => json!({"success": false, "message": message, "host": host}),
    }
}

async fn locust_swarm(
    State(state): State<AppState>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Json<Value> {
    Json(swarm(&state, swarm_from_form(&fields)).await)
}

/// `POST /api/swarm`: the same as Locust's form, as JSON.
#[derive(Deserialize)]
struct ApiSwarm {
    users: u64,
    spawn_rate: f64,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    run_time: Option<String>,
    #[serde(default)]
    user_classes: Vec<String>,
    /// The open model's rate or stages, as in the form.
    #[serde(default)]
    arrival_rate: Option<String>,
    /// The stack to discover and watch, as in the form.
    #[serde(default)]
    stack: Option<String>,
}

async fn api_swarm(State(state): State<AppState>, Json(body): Json<ApiSwarm>) -> Json<Value> {
    let request = match body
        .run_time
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(text) => common::duration::parse(text)
            .map(Some)
            .map_err(|e| format!("run time: {e}")),
        None => Ok(None),
    }
    .map(|run_time| SwarmRequest {
        users: body.users,
        spawn_rate: body.spawn_rate,
        host: body.host,
        run_time,
        user_classes: body.user_classes,
        arrival_rate: body.arrival_rate,
        stack: body.stack,
    });
    Json(swarm(&state, request).await)
}

async fn stop(State(state): State<AppState>) -> Json<Value> {
    state.session.lock().await.stop();
    Json(json!({"success": true, "message": "Test stopped"}))
}

async fn reset(State(state): State<AppState>) -> &'static str {
    state.session.lock().await.reset_stats();
    "ok"
}

/// The state, the users and the report so far, without its per-second history (the charts
/// come apart, drawn by the server).
async fn api_stats(State(state): State<AppState>) -> Json<Value> {
    let session = state.session.lock().await;
    // The state before the report: a run that ends between the two is then "running" with
    // its figures so far, never "stopped" with figures short of its last second.
    let run_state = session.state();
    let (users, target_users) = session.users();
    let report = session.report().await.map(|mut r: Report| {
        r.history.clear();
        r
    });
    let elapsed = report.as_ref().map_or(0.0, |r| r.duration_secs);
    Json(json!({
        "state": run_state,
        "user_count": users,
        "target_users": target_users,
        // Where the run is on its load shape: {number, of, users, left}, or null.
        "stage": session.stage(),
        "host": session.shown_host(),
        "elapsed_secs": elapsed,
        "workers": session.master.as_ref().map(crate::cluster::Master::workers),
        // The percentile of each figure of the rows' `percentiles_ms`, in order: the UI reads
        // them by percentile.
        "percentiles": report::PERCENTILES,
        "report": report,
    }))
}

async fn locust_stats(State(state): State<AppState>) -> Json<Value> {
    let session = state.session.lock().await;
    // As in `api_stats`: the state first, so that "stopped" comes with the final figures.
    let run_state = session.state();
    let users = session.users().0;
    let report = session.report().await;
    let mut answer = locust_api::stats_requests(report.as_ref(), run_state, users);
    if let Some(master) = &session.master {
        locust_api::add_workers(&mut answer, &master.workers());
    }
    Json(answer)
}

/// `GET /exceptions`: Locust's shape.
async fn exceptions(State(state): State<AppState>) -> Json<Value> {
    let report = state.session.lock().await.report().await;
    Json(locust_api::exceptions(report.as_ref()))
}

/// `GET /tasks`: the task ratios of the users running, of the run's scenario (the form may
/// have picked user classes) or, before one, of the scenario loaded.
async fn tasks(State(state): State<AppState>) -> Json<Value> {
    let session = state.session.lock().await;
    let users = session.users().0;
    let scenario = session
        .run
        .as_ref()
        .map_or(&session.template.scenario, |run| &run.config.scenario);
    Json(locust_api::tasks(scenario, users))
}

/// `GET /worker-count`: the workers connected to this master; 0 when this is no master, as
/// Locust answers.
async fn worker_count(State(state): State<AppState>) -> Json<Value> {
    let session = state.session.lock().await;
    let count = session.master.as_ref().map_or(0, |m| m.workers().len());
    Json(json!({ "worker_count": count }))
}

/// `GET /stats/report`: the HTML report of the run so far (of no request before the first
/// run, as Locust's); `?download=1` makes it an attachment named as Locust names it, with
/// loadgen's name and the scenario's in place of Locust's and the locustfile's.
async fn stats_report(
    State(state): State<AppState>,
    axum::extract::Query(query): axum::extract::Query<Vec<(String, String)>>,
) -> Response {
    let session = state.session.lock().await;
    let (report, config) = match (session.report().await, &session.run) {
        (Some(report), Some(run)) => (report, &run.config),
        _ => (
            Report::of_run(
                &session.template,
                &crate::outcome::RunOutcome {
                    started_at: std::time::SystemTime::now(),
                    ..Default::default()
                },
            ),
            &session.template,
        ),
    };
    let html = report::html::render(&report);
    let download = query
        .iter()
        .any(|(key, value)| key == "download" && !value.is_empty());
    if !download {
        return Html(html).into_response();
    }
    let started = chrono::DateTime::from_timestamp(report.started_at as i64, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d-%Hh%M")
                .to_string()
        })
        .unwrap_or_default();
    let host = if report.host.is_empty() {
        String::new()
    } else {
        format!("_{}", report.host)
    };
    let name = format!(
        "loadgen_{started}_{}{host}.html",
        config.scenario_source.name
    );
    // A header value takes no control character: a name with one is left out.
    let disposition = header::HeaderValue::from_str(&format!("attachment;filename={name}"))
        .unwrap_or(header::HeaderValue::from_static("attachment"));
    (
        [
            (
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        html,
    )
        .into_response()
}

/// `POST /api/capacity/start`: the capacity form's fields; 400 for a value no plan can follow,
/// 409 while a run or a search goes, each with the message for the form.
async fn capacity_start(
    State(state): State<AppState>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let mut session = state.session.lock().await;
    let (status, success, message) = match session.start_search(&fields) {
        Ok(message) => (StatusCode::OK, true, message),
        Err(Refusal::BadValue(message)) => (StatusCode::BAD_REQUEST, false, message),
        Err(Refusal::Busy(message)) => (StatusCode::CONFLICT, false, message),
    };
    let host = session.shown_host();
    (
        status,
        Json(json!({"success": success, "message": message, "host": host})),
    )
        .into_response()
}

/// The capacity search going or done (see `CapacitySearch::to_json`); `{"state": "ready"}`
/// before the first.
async fn capacity(State(state): State<AppState>) -> Json<Value> {
    let session = state.session.lock().await;
    Json(
        session
            .search
            .as_ref()
            .map_or_else(|| json!({"state": "ready", "steps": []}), |s| s.to_json()),
    )
}

/// The capacity search's charts so far, as SVG (empty before its first step).
async fn capacity_charts(State(state): State<AppState>) -> Html<String> {
    let session = state.session.lock().await;
    Html(
        session
            .search
            .as_ref()
            .map_or_else(String::new, CapacitySearch::charts),
    )
}

async fn capacity_stop(State(state): State<AppState>) -> Json<Value> {
    let session = state.session.lock().await;
    let message = match session.search.as_ref().filter(|s| s.goes()) {
        Some(search) => {
            search.stop_by("the web UI");
            "Capacity search stopped"
        }
        None => "no capacity search is going",
    };
    Json(json!({"success": true, "message": message}))
}

async fn capacity_report(State(state): State<AppState>) -> Response {
    match state
        .session
        .lock()
        .await
        .search
        .as_ref()
        .map(|s| s.report())
    {
        Some(Some(report)) => (
            [(
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"loadgen_capacity.json\"",
            )],
            Json(report),
        )
            .into_response(),
        Some(None) => (
            StatusCode::NOT_FOUND,
            "the capacity search has no report yet: it goes, or its first step could not start",
        )
            .into_response(),
        None => no_run_yet(),
    }
}

async fn charts(State(state): State<AppState>) -> Html<String> {
    let report = state.session.lock().await.report().await;
    Html(report.map_or_else(String::new, |r| report::html::charts_section(&r)))
}

/// The flame graph of a process profiled in the current run, over the whole run.
async fn flame_graph(
    State(state): State<AppState>,
    axum::extract::Path(pid): axum::extract::Path<u32>,
) -> Response {
    let Some(report) = state.session.lock().await.report().await else {
        return no_run_yet();
    };
    let svg = report
        .analysis
        .profiles
        .iter()
        .find(|p| p.pid == pid)
        .and_then(report::flamegraph::svg);
    match svg {
        Some(svg) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no profile of process {pid} in this run"),
        )
            .into_response(),
    }
}

async fn report_json(State(state): State<AppState>) -> Response {
    match state.session.lock().await.report().await {
        Some(report) => (
            [(
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"loadgen_report.json\"",
            )],
            Json(report),
        )
            .into_response(),
        None => no_run_yet(),
    }
}

async fn report_html(State(state): State<AppState>) -> Response {
    match state.session.lock().await.report().await {
        Some(report) => Html(report::html::render(&report)).into_response(),
        None => no_run_yet(),
    }
}

async fn csv(State(state): State<AppState>, file: &'static str) -> Response {
    let Some(report) = state.session.lock().await.report().await else {
        return no_run_yet();
    };
    match report::csv::to_bytes(&report, file) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"loadgen_{file}.csv\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

fn no_run_yet() -> Response {
    (
        StatusCode::NOT_FOUND,
        "no run yet: start one from the form first",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::web::testing::form;

    #[test]
    fn locusts_form_fields_are_read_and_bad_ones_named() {
        let request = swarm_from_form(&form(&[
            ("user_count", "20"),
            ("spawn_rate", "2.5"),
            ("host", "http://127.0.0.1:8000"),
            ("run_time", "1m30s"),
            ("user_classes", "A"),
            ("user_classes", "B"),
        ]))
        .unwrap();
        assert_eq!((request.users, request.spawn_rate), (20, 2.5));
        assert_eq!(request.run_time, Some(std::time::Duration::from_secs(90)));
        assert_eq!(request.user_classes, ["A", "B"]);
        for (fields, named) in [
            (
                form(&[("user_count", "x"), ("spawn_rate", "1")]),
                "user_count",
            ),
            (
                form(&[("user_count", "-3"), ("spawn_rate", "1")]),
                "user_count",
            ),
            (
                form(&[("user_count", "3"), ("spawn_rate", "fast")]),
                "spawn_rate",
            ),
            (
                form(&[
                    ("user_count", "3"),
                    ("spawn_rate", "1"),
                    ("run_time", "soon"),
                ]),
                "run time",
            ),
        ] {
            let error = swarm_from_form(&fields).err().unwrap_or_default();
            assert!(error.contains(named), "{fields:?}: {error}");
        }
    }
}
