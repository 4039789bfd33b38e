//! Admin endpoints (admin users only).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::auth::CurrentUser;

#[utoipa::path(get, path = "/admin/queue-status", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Queue and task counts", body = Object), (status = 403, description = "Not an admin")))]
pub async fn queue_status(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    if !user.is_admin {
        return Err(ApiError::forbidden("Not enough permissions"));
    }
    let counts = state.store.task_counts().await?;
    let count = |status: &str| counts.get(status).copied().unwrap_or(0);
    Ok(Json(json!({
        "queue_length": state.queue.queued().await?,
        "queue": state.queue.describe(),
        "workers": state.workers,
        "pending": count("pending"),
        "processing": count("processing"),
        "completed": count("completed"),
        "failed": count("failed"),
        "cancelled": count("cancelled"),
    })))
}
