//! Who may use the UI: basic authentication when `--web-auth` is set, and, for every call that
//! starts, steers or stops a run, a browser `Origin` that is the UI itself, so that a page on
//! another site cannot make this machine load an arbitrary host. Scripts send no `Origin` and
//! pass.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

/// `USER:PASSWORD` of `--web-auth`, if set.
#[derive(Clone, Default)]
pub struct Credentials(pub Option<String>);

/// Refuses a request without the right basic credentials.
pub async fn basic_auth(
    State(credentials): State<Credentials>,
    request: Request,
    next: Next,
) -> Response {
    let Some(expected) = &credentials.0 else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        });
    if given.as_deref() == Some(expected.as_bytes()) {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"loadgen\"")],
        "authentication required (--web-auth)",
    )
        .into_response()
}

/// Whether a request that changes the run comes from this UI's own pages (or from a script,
/// which sends no `Origin`).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Refuses a cross-origin request to anything but a read.
pub async fn origin_check(request: Request, next: Next) -> Response {
    let reads = request.method() == Method::GET || request.method() == Method::HEAD;
    let steers = matches!(request.uri().path(), "/stop" | "/stats/reset");
    if (!reads || steers) && !same_origin(request.headers()) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "success": false,
                "message": "refused: a page from another origin may not steer this load test",
            })),
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), v.parse().unwrap_or_else(|_| unreachable!())))
            .collect()
    }

    #[test]
    fn only_the_uis_own_origin_or_none_may_steer() {
        assert!(same_origin(&headers(&[(header::HOST, "127.0.0.1:8089")])));
        assert!(same_origin(&headers(&[
            (header::HOST, "127.0.0.1:8089"),
            (header::ORIGIN, "http://127.0.0.1:8089"),
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "127.0.0.1:8089"),
            (header::ORIGIN, "https://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[
            (header::HOST, "127.0.0.1:8089"),
            (header::ORIGIN, "null"),
        ])));
    }
}
