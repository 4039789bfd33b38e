//! Error answers in the real API's shapes: `{"detail": ...}` for errors raised by handlers (a
//! list for 422 validation errors, as FastAPI gives), and the `INTERNAL_ERROR` envelope for 500s.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::queue::QueueError;
use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    /// An error with `{"detail": message}`.
    pub fn detail(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "detail": message.into() }),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::BAD_REQUEST, message)
    }

    /// 401, with `WWW-Authenticate: Bearer` added on the way out.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::UNAUTHORIZED, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::FORBIDDEN, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::NOT_FOUND, message)
    }

    /// 429 with the real API's message.
    pub fn too_many_requests() -> Self {
        Self::detail(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests. Please try again later.",
        )
    }

    /// 422 in FastAPI's shape, for one field (`loc` is the path to it, e.g. `["body", "email"]`).
    pub fn validation(loc: &[&str], kind: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({ "detail": [{ "type": kind, "loc": loc, "msg": message.into() }] }),
        }
    }

    /// 500 with the unhandled-error envelope.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(%message, "internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({
                "success": false,
                "error": { "code": "INTERNAL_ERROR", "message": message }
            }),
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::EmailTaken | StoreError::UsernameTaken => {
                Self::bad_request(error.to_string())
            }
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        Self::internal(error.to_string())
    }
}
