//! Extractors whose rejections look like FastAPI's: a body or query that does not parse is a
//! 422 with a `detail` list, never axum's plain-text 400/415.

use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// `axum::Json` with 422 rejections.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::validation(
                &["body"],
                "value_error",
                e.body_text(),
            )),
            Err(e) => Err(ApiError::validation(
                &["body"],
                "json_invalid",
                e.body_text(),
            )),
        }
    }
}

/// `axum::Form` with 422 rejections.
pub struct ApiForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|axum::Form(value)| Self(value))
            .map_err(|e: FormRejection| ApiError::validation(&["body"], "missing", e.body_text()))
    }
}

/// `axum::extract::Query` with 422 rejections.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|e: QueryRejection| {
                ApiError::validation(&["query"], "value_error", e.body_text())
            })
    }
}
