//! The HTTP endpoint for loadgen and scrapers: `/latest` (the last tick), `/samples?since=`
//! (ticks after a time, RFC 3339 or Unix seconds) and `/metrics` (Prometheus text, see
//! [`super::prometheus`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::prometheus::Exposition;
use crate::sample::Tick;

/// An hour of 1 s ticks.
const KEEP: usize = 3600;

/// The ticks the endpoint serves, and their Prometheus exposition.
#[derive(Clone, Default)]
pub struct Recent {
    /// Shared, so that a reader holds the lock only to copy pointers: a client hammering
    /// `/samples` never delays the sampler's next tick.
    ticks: Arc<RwLock<VecDeque<Arc<Tick>>>>,
    exposition: Arc<RwLock<Exposition>>,
}

impl Recent {
    /// Adds a tick, forgetting the oldest beyond an hour's worth.
    pub fn push(&self, tick: Tick) {
        self.exposition
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .update(&tick);
        let mut ticks = self.ticks.write().unwrap_or_else(|p| p.into_inner());
        if ticks.len() == KEEP {
            ticks.pop_front();
        }
        ticks.push_back(Arc::new(tick));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, VecDeque<Arc<Tick>>> {
        self.ticks.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Deserialize)]
struct Since {
    since: Option<String>,
}

fn parse_since(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(secs) = text.parse::<f64>() {
        return DateTime::from_timestamp_micros((secs * 1e6).round() as i64);
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

async fn latest(State(recent): State<Recent>) -> Response {
    let last = recent.read().back().cloned();
    match last {
        Some(tick) => Json(&*tick).into_response(),
        None => (StatusCode::NOT_FOUND, "no sample yet").into_response(),
    }
}

async fn samples(State(recent): State<Recent>, Query(query): Query<Since>) -> Response {
    let since = match query.since.as_deref().map(parse_since) {
        Some(None) => {
            return (
                StatusCode::BAD_REQUEST,
                "since: use RFC 3339 or Unix seconds",
            )
                .into_response();
        }
        Some(Some(t)) => Some(t),
        None => None,
    };
    let ticks: Vec<Arc<Tick>> = recent
        .read()
        .iter()
        .filter(|t| since.is_none_or(|s| t.timestamp > s))
        .cloned()
        .collect();
    // Serialised after the lock is released.
    Json(ticks.iter().map(|t| &**t).collect::<Vec<&Tick>>()).into_response()
}

async fn metrics(State(recent): State<Recent>) -> Response {
    let out = recent
        .exposition
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .render();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Serves `recent` on `addr` until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    recent: Recent,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/latest", get(latest))
        .route("/samples", get(samples))
        .route("/metrics", get(metrics))
        .with_state(recent);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok(bound)
}

impl super::Sink for Recent {
    fn name(&self) -> &'static str {
        "HTTP"
    }

    fn write(&mut self, tick: &Tick) -> Result<(), super::SinkError> {
        self.push(tick.clone());
        Ok(())
    }
}
