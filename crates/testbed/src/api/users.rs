//! The current user, their settings and their figures.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::extract::ApiJson;
use super::{ApiError, AppState};
use crate::auth::CurrentUser;
use crate::store::User;

/// Every user gets 10 GiB, as the real API's default quota.
const STORAGE_LIMIT: i64 = 10 << 30;

#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = User)))]
pub async fn me(CurrentUser(user): CurrentUser) -> Json<User> {
    Json(user)
}

#[utoipa::path(get, path = "/users/me/stats", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "Usage counts", body = Object)))]
pub async fn stats(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let stats = state.store.user_stats(user.id).await?;
    let mut body = serde_json::to_value(stats).map_err(|e| ApiError::internal(e.to_string()))?;
    body["storage_limit"] = json!(STORAGE_LIMIT);
    Ok(Json(body))
}

#[utoipa::path(get, path = "/users/me/settings", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The settings", body = Object)))]
pub async fn settings(CurrentUser(user): CurrentUser) -> Json<Value> {
    Json(user.settings)
}

#[utoipa::path(put, path = "/users/me/settings", tag = "users", security(("bearer" = [])),
    request_body(content = Object, example = json!({"quality": "high"})),
    responses((status = 200, description = "The settings", body = Object), (status = 422, description = "Not an object")))]
pub async fn put_settings(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(settings): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    if !settings.is_object() {
        return Err(ApiError::validation(
            &["body"],
            "dict_type",
            "Input should be a valid dictionary",
        ));
    }
    let user = state
        .store
        .set_settings(user.id, settings)
        .await?
        .ok_or_else(|| ApiError::not_found("User not found"))?;
    Ok(Json(user.settings))
}
