//! Who may use the UI: basic authentication when `--web-auth` is set; a `Host` that names this
//! machine (an IP address, `localhost`, or a name given with `--web-allowed-host`), so that a
//! page whose DNS name was rebound to this address is refused, as Jupyter and Vite refuse it;
//! and, for every call that starts, steers or stops a run, a browser `Origin` that is the UI
//! itself, so that a page on another site cannot make this machine load an arbitrary host.
//! Scripts send no `Origin` and pass.

use std::net::{IpAddr, SocketAddr};

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

/// The names a `Host` header may give besides IP addresses and `localhost`
/// (`--web-allowed-host`, lower case; `.example.com` allows its subdomains too, as Vite's).
#[derive(Clone, Default)]
pub struct AllowedHosts(pub Vec<String>);

impl AllowedHosts {
    /// Whether `host` (a `Host` header's value, with or without a port) names this machine.
    /// An IP address cannot be rebound, so every one passes; a name must be `localhost`, under
    /// `.localhost` (which resolves to loopback only, RFC 6761), or allowed by the user.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        if name.parse::<IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        self.0.iter().any(|allowed| {
            let allowed = allowed.trim_end_matches('.');
            match allowed.strip_prefix('.') {
                Some(domain) => name == domain || name.ends_with(allowed),
                None => name == allowed,
            }
        })
    }
}

/// The name in a `Host` header: without its port, brackets and trailing dot.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        // [::1]:8089
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        // An IPv6 address without brackets has several colons and no port.
        None if host.matches(':').count() > 1 => host,
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.trim_end_matches('.')
}

/// Refuses a request whose `Host` names something else than this machine: the sign of a
/// DNS-rebinding page (its own name, now resolving to this address).
pub async fn host_check(
    State(allowed): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    // HTTP/1.1 requires Host; a request without one did not come from a browser.
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    match host {
        Some(host) if !allowed.allows(&host) => {
            let name: String = host_name(&host)
                .chars()
                .filter(|c| !c.is_control())
                .take(253)
                .collect();
            (
                StatusCode::FORBIDDEN,
                format!(
                    "refused: Host {name:?} does not name this machine (a DNS-rebinding page \
                     would); if you reach the UI by that name, start loadgen with \
                     --web-allowed-host {name}\n"
                ),
            )
                .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Why the UI may not listen on `listen` as configured, if it may not: beyond loopback, anyone
/// who reaches the port could start load from this machine, so it takes `--web-auth`, or
/// `--web-insecure-no-auth` from a user who has another guard (a firewall, a private network).
pub fn check_exposure(
    listen: SocketAddr,
    auth: Option<&str>,
    insecure_no_auth: bool,
) -> Result<(), String> {
    if listen.ip().is_loopback() || auth.is_some() || insecure_no_auth {
        return Ok(());
    }
    Err(format!(
        "--web-host {}: the web UI would be open to anyone who reaches this machine, and \
         could start load from it: set --web-auth USER:PASSWORD, or pass \
         --web-insecure-no-auth if another guard (a firewall, a private network) keeps others out",
        listen.ip()
    ))
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
    fn hosts_are_ip_addresses_localhost_or_the_names_allowed() {
        let allowed = AllowedHosts(vec!["loadgen.internal".into(), ".lab.example".into()]);
        for host in [
            "127.0.0.1:8089",
            "127.0.0.1",
            "10.1.2.3:80",
            "[::1]:8089",
            "::1",
            "localhost:8089",
            "LOCALHOST",
            "ui.localhost:8089",
            "loadgen.internal:8089",
            "Loadgen.Internal.",
            "lab.example",
            "a.lab.example:8089",
        ] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in [
            "evil.example:8089",
            "evil.example",
            "localhost.evil.example",
            "loadgen.internal.evil.example",
            "xlab.example",
            "127.0.0.1.nip.io:8089",
            "",
        ] {
            assert!(!allowed.allows(host), "{host}");
        }
        assert!(!AllowedHosts::default().allows("loadgen.internal"));
    }

    #[test]
    fn beyond_loopback_the_ui_needs_auth_or_an_explicit_flag() {
        let any: SocketAddr = "0.0.0.0:8089".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8089".parse().unwrap();
        assert!(check_exposure(local, None, false).is_ok());
        assert!(check_exposure(any, Some("u:p"), false).is_ok());
        assert!(check_exposure(any, None, true).is_ok());
        let refused = check_exposure(any, None, false).unwrap_err();
        assert!(
            refused.contains("--web-auth") && refused.contains("--web-insecure-no-auth"),
            "{refused}"
        );
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
