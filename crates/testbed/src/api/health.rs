//! Health: `/api/v1/health/`, its no-slash redirect, and the root `/health`.

use axum::Json;
use axum::response::Redirect;
use serde_json::{Value, json};

#[utoipa::path(get, path = "/health/", tag = "health", responses((status = 200, description = "The API runs")))]
pub async fn health() -> Json<Value> {
    Json(json!({ "success": true, "status": "healthy", "message": "FFmpeg API is running" }))
}

/// FastAPI answers the path without its trailing slash with a 307 to the canonical one.
pub async fn redirect_to_slash() -> Redirect {
    Redirect::temporary("/api/v1/health/")
}
