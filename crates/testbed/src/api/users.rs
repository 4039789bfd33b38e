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

pub async fn me(CurrentUser(user): CurrentUser) -> Json<User> {
    Json(user)
}

pub async fn stats(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let stats = state.store.user_stats(user.id).await?;
    let mut body = serde_json::to_value(stats).map_err(|e| ApiError::internal(e.to_string()))?;
    body["storage_limit"] = json!(STORAGE_LIMIT);
    Ok(Json(body))
}

pub async fn settings(CurrentUser(user): CurrentUser) -> Json<Value> {
    Json(user.settings)
}

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
