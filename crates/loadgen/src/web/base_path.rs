//! `--web-base-path /loadgen`: the UI under a path, as Locust's, for a reverse proxy that
//! forwards one path to it. The path is taken off each request before routing (the UI's own
//! links are relative, so they stay under it); `/loadgen` redirects to `/loadgen/`, and a
//! request outside the path is not found.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::uri::{PathAndQuery, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

/// Takes `base` (no trailing slash; empty: none) off the request's path, then routes it.
pub async fn strip(State(base): State<Arc<str>>, mut request: Request, next: Next) -> Response {
    if base.is_empty() {
        return next.run(request).await;
    }
    let path = request.uri().path();
    if path == &*base {
        return Redirect::permanent(&format!("{base}/")).into_response();
    }
    let Some(rest) = path.strip_prefix(&*base).filter(|r| r.starts_with('/')) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let rewritten = match request.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(rewritten).ok();
    match Uri::from_parts(parts) {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    next.run(request).await
}
