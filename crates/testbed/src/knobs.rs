//! The knobs that plant bottlenecks: a per-IP rate limit like the real API's, delays spent
//! holding a database connection, and planted 500s. One middleware applies them in that order.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::ApiError;
use crate::config::{FailRule, SlowRule};
use crate::store::Store;

/// The knobs' settings and state.
#[derive(Clone)]
pub struct Knobs {
    rate_limit: Option<Arc<RateLimiter>>,
    slow: Arc<[SlowRule]>,
    fail: Arc<[FailRule]>,
    store: Arc<dyn Store>,
}

impl Knobs {
    /// Knobs from the settings; a `rate_limit_per_minute` of 0 means no limit.
    pub fn new(
        rate_limit_per_minute: u32,
        slow: Vec<SlowRule>,
        fail: Vec<FailRule>,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            rate_limit: (rate_limit_per_minute > 0).then(|| {
                Arc::new(RateLimiter::new(
                    rate_limit_per_minute,
                    Duration::from_secs(60),
                ))
            }),
            slow: slow.into(),
            fail: fail.into(),
            store,
        }
    }
}

/// The middleware.
pub async fn apply(State(knobs): State<Knobs>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let is_health = path.starts_with("/api/v1/health") || path == "/health";

    if let Some(limiter) = &knobs.rate_limit {
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        if let Some(ip) = client
            && !is_health
            && !limiter.allow(ip, Instant::now())
        {
            return ApiError::too_many_requests().into_response();
        }
    }
    let route = route.as_deref();
    let planted_failure = knobs
        .fail
        .iter()
        .find(|rule| rule.path.matches(&path, route))
        .is_some_and(|rule| rand::random::<f64>() < rule.ratio);
    if planted_failure {
        return ApiError::internal(format!("Planted failure on {path} (TESTBED_FAIL)"))
            .into_response();
    }
    if let Some(rule) = knobs
        .slow
        .iter()
        .find(|rule| rule.path.matches(&path, route))
        && let Err(error) = knobs.store.hold_connection(rule.delay).await
    {
        return ApiError::from(error).into_response();
    }
    next.run(request).await
}

/// Fixed one-minute windows per client IP, as a per-process in-memory limiter does.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl RateLimiter {
    /// `limit` requests per `window` per IP.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a request from `ip` at `now`; false when it is over the limit.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let (started, count) = windows.entry(ip).or_insert((now, 0));
        if now.duration_since(*started) >= self.window {
            *started = now;
            *count = 0;
        }
        *count += 1;
        *count <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_ip_and_resets_each_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let (a, b) = (IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2]));
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow(a, t0)));
        assert!(!limiter.allow(a, t0 + Duration::from_secs(59)));
        assert!(limiter.allow(b, t0), "another client has its own budget");
        assert!(
            limiter.allow(a, t0 + Duration::from_secs(60)),
            "a new window starts"
        );
    }
}
