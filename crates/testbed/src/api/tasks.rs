//! Task creation (join, audio-overlay), listing, status, cancel and retry.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{ApiJson, ApiQuery};
use super::{ApiError, AppState, PageQuery, page_number};
use crate::auth::CurrentUser;
use crate::store::{NewTask, Task, TaskFilter, TaskStatus, TaskType, Transition};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Join {
    /// The videos to join, in order: at least two of the caller's files.
    #[schema(min_items = 2)]
    file_ids: Vec<i64>,
    #[serde(default = "default_join_output")]
    #[schema(default = "joined.mp4")]
    output_filename: String,
}

fn default_join_output() -> String {
    "joined.mp4".to_owned()
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AudioOverlay {
    video_file_id: i64,
    audio_file_id: i64,
    #[serde(default = "default_mode")]
    #[schema(default = "replace", pattern = "^(replace|mix)$")]
    mode: String,
    #[serde(default)]
    #[schema(default = 0.0, minimum = 0.0)]
    offset: f64,
    duration: Option<f64>,
    #[serde(default = "one")]
    #[schema(default = 1.0, minimum = 0.0, maximum = 2.0)]
    original_volume: f64,
    #[serde(default = "one")]
    #[schema(default = 1.0, minimum = 0.0, maximum = 2.0)]
    overlay_volume: f64,
    output_filename: Option<String>,
}

fn default_mode() -> String {
    "replace".to_owned()
}

fn one() -> f64 {
    1.0
}

async fn require_files(state: &AppState, user_id: i64, ids: &[i64]) -> Result<(), ApiError> {
    for &id in ids {
        if state.store.file(user_id, id).await?.is_none() {
            return Err(ApiError::not_found(format!("File {id} not found")));
        }
    }
    Ok(())
}

async fn enqueue(state: &AppState, task: NewTask) -> Result<(StatusCode, Json<Task>), ApiError> {
    let task = state.store.create_task(task).await?;
    state.queue.push(task.id).await?;
    Ok((StatusCode::CREATED, Json(task)))
}

#[utoipa::path(post, path = "/tasks/join", tag = "tasks", security(("bearer" = [])), request_body = Join,
    responses((status = 201, description = "The queued task", body = Task), (status = 404, description = "A file is not the caller's")))]
pub async fn join(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<Join>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    if body.file_ids.len() < 2 {
        return Err(ApiError::validation(
            &["body", "file_ids"],
            "too_short",
            "List should have at least 2 items",
        ));
    }
    require_files(&state, user.id, &body.file_ids).await?;
    let task = NewTask {
        user_id: user.id,
        task_type: TaskType::Join,
        input_files: body.file_ids,
        config: json!({ "output_filename": body.output_filename }),
    };
    enqueue(&state, task).await
}

#[utoipa::path(post, path = "/tasks/audio-overlay", tag = "tasks", security(("bearer" = [])), request_body = AudioOverlay,
    responses((status = 201, description = "The queued task", body = Task), (status = 404, description = "A file is not the caller's")))]
pub async fn audio_overlay(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<AudioOverlay>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    let invalid = |field, message| {
        Err(ApiError::validation(
            &["body", field],
            "value_error",
            message,
        ))
    };
    if body.mode != "replace" && body.mode != "mix" {
        return invalid("mode", "Input should be 'replace' or 'mix'");
    }
    if body.offset.is_nan() || body.offset < 0.0 {
        return invalid("offset", "Input should be greater than or equal to 0");
    }
    if body.duration.is_some_and(|d| d.is_nan() || d <= 0.0) {
        return invalid("duration", "Input should be greater than 0");
    }
    for (field, volume) in [
        ("original_volume", body.original_volume),
        ("overlay_volume", body.overlay_volume),
    ] {
        if !(0.0..=2.0).contains(&volume) {
            return invalid(field, "Input should be between 0 and 2");
        }
    }
    require_files(&state, user.id, &[body.video_file_id, body.audio_file_id]).await?;
    let task = NewTask {
        user_id: user.id,
        task_type: TaskType::AudioOverlay,
        input_files: vec![body.video_file_id, body.audio_file_id],
        config: json!({
            "mode": body.mode, "offset": body.offset, "duration": body.duration,
            "original_volume": body.original_volume, "overlay_volume": body.overlay_volume,
            "output_filename": body.output_filename.unwrap_or_else(|| "overlay.mp4".to_owned()),
        }),
    };
    enqueue(&state, task).await
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    #[serde(rename = "type")]
    task_type: Option<String>,
    // Not `#[serde(flatten)]` of a `PageQuery`: a flattened struct gets its query values as
    // strings, and `?offset=0` then failed as "expected i64" (found by `loadgen import openapi`).
    #[serde(default)]
    offset: i64,
    #[serde(default = "super::default_limit")]
    limit: i64,
}

#[utoipa::path(get, path = "/tasks", tag = "tasks", security(("bearer" = [])), params(
        ("status" = Option<String>, Query, description = "pending, processing, completed, failed or cancelled"),
        ("type" = Option<String>, Query, description = "join, audio_overlay, ..."),
        ("offset" = Option<i64>, Query, description = "Items to skip", example = 0),
        ("limit" = Option<i64>, Query, description = "Items per page, 1 to 100", example = 20)
    ),
    responses((status = 200, description = "A page of tasks", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = PageQuery {
        offset: query.offset,
        limit: query.limit,
    }
    .validate()?;
    let blank_is_none = |v: Option<String>| v.filter(|s| !s.is_empty());
    let status = match blank_is_none(query.status) {
        None => None,
        Some(s) => Some(TaskStatus::parse(&s).ok_or_else(|| {
            ApiError::validation(
                &["query", "status"],
                "enum",
                format!("unknown status {s:?}"),
            )
        })?),
    };
    let task_type = match blank_is_none(query.task_type) {
        None => None,
        Some(t) => Some(TaskType::parse(&t).ok_or_else(|| {
            ApiError::validation(&["query", "type"], "enum", format!("unknown type {t:?}"))
        })?),
    };
    let (tasks, total) = state
        .store
        .tasks(user.id, TaskFilter { status, task_type }, page)
        .await?;
    Ok(Json(json!({
        "tasks": tasks, "total": total, "page": page_number(page), "page_size": page.limit,
    })))
}

async fn owned_task(state: &AppState, user_id: i64, id: i64) -> Result<Task, ApiError> {
    state
        .store
        .task(Some(user_id), id)
        .await?
        .ok_or_else(|| ApiError::not_found("Task not found"))
}

#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The task's id")),
    responses((status = 200, description = "The task", body = Task), (status = 404, description = "No such task of the caller's")))]
pub async fn get(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Task>, ApiError> {
    Ok(Json(owned_task(&state, user.id, id).await?))
}

#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = "tasks", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The task's id")),
    responses((status = 200, description = "The cancelled task", body = Task), (status = 400, description = "Not pending nor processing")))]
pub async fn cancel(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Task>, ApiError> {
    let task = owned_task(&state, user.id, id).await?;
    let change = Transition::new(
        &[TaskStatus::Pending, TaskStatus::Processing],
        TaskStatus::Cancelled,
        task.progress,
    );
    let cancelled = state.store.transition(id, change).await?;
    cancelled.map(Json).ok_or_else(|| {
        ApiError::bad_request(format!(
            "Task cannot be cancelled (status: {})",
            task.status.as_str()
        ))
    })
}

#[utoipa::path(post, path = "/tasks/{id}/retry", tag = "tasks", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The task's id")),
    responses((status = 200, description = "The task, queued again", body = Task), (status = 400, description = "Neither failed nor cancelled")))]
pub async fn retry(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<i64>,
) -> Result<Json<Task>, ApiError> {
    let task = owned_task(&state, user.id, id).await?;
    let mut change = Transition::new(
        &[TaskStatus::Failed, TaskStatus::Cancelled],
        TaskStatus::Pending,
        0.0,
    );
    change.increment_retry = true;
    let Some(retried) = state.store.transition(id, change).await? else {
        return Err(ApiError::bad_request(format!(
            "Only failed or cancelled tasks can be retried (status: {})",
            task.status.as_str()
        )));
    };
    state.queue.push(id).await?;
    Ok(Json(retried))
}
