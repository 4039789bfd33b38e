//! The HTTP API, route by route as `docs/api-contract.md` lays it out, all under
//! `/api/v1` (plus the root `/health`).

mod admin;
mod auth;
mod error;
mod extract;
mod files;
mod health;
mod tasks;
mod users;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::knobs::Knobs;
use crate::queue::JobQueue;
use crate::store::{Page, Store};

/// Uploads may be up to 1 GiB, as the contract allows; the multipart envelope needs a little more.
const MAX_UPLOAD_BYTES: u64 = 1 << 30;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Users, files, tasks.
    pub store: Arc<dyn Store>,
    /// Where new jobs go.
    pub queue: Arc<dyn JobQueue>,
    /// JWT keys.
    pub tokens: TokenKeys,
    /// The settings.
    pub config: Arc<Config>,
    /// Uploaded files live here.
    pub upload_dir: PathBuf,
    /// How many workers run (for the admin queue status).
    pub workers: u32,
}

/// The whole API, with the bottleneck knobs around it.
pub fn router(state: AppState, knobs: Knobs) -> Router {
    let api = Router::new()
        .route("/health/", get(health::health))
        .route("/health", get(health::redirect_to_slash))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/me", get(users::me))
        .route("/files/upload", post(files::upload))
        .route("/files", get(files::list))
        .route("/files/", get(files::list))
        .route("/files/{id}", get(files::get).delete(files::delete))
        .route("/files/{id}/download", get(files::download))
        .route("/tasks/join", post(tasks::join))
        .route("/tasks/audio-overlay", post(tasks::audio_overlay))
        .route("/tasks", get(tasks::list))
        .route("/tasks/", get(tasks::list))
        .route("/tasks/{id}", get(tasks::get))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/tasks/{id}/retry", post(tasks::retry))
        .route("/users/me", get(users::me))
        .route("/users/me/stats", get(users::stats))
        .route(
            "/users/me/settings",
            get(users::settings).put(users::put_settings),
        )
        .route("/admin/queue-status", get(admin::queue_status));
    Router::new()
        .nest("/api/v1", api)
        .route("/health", get(health::health))
        .fallback(|| async { ApiError::not_found("Not Found") })
        // Knobs run after routing so that they can match route templates such as /tasks/{id}.
        .route_layer(axum::middleware::from_fn_with_state(
            knobs,
            crate::knobs::apply,
        ))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES as usize + 64 * 1024))
        .with_state(state)
}

/// `?offset=&limit=` of list endpoints, FastAPI's defaults and bounds.
#[derive(Debug, serde::Deserialize)]
struct PageQuery {
    #[serde(default)]
    offset: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    20
}

impl PageQuery {
    fn validate(&self) -> Result<Page, ApiError> {
        if self.offset < 0 {
            return Err(ApiError::validation(
                &["query", "offset"],
                "greater_than_equal",
                "Input should be greater than or equal to 0",
            ));
        }
        if !(1..=100).contains(&self.limit) {
            return Err(ApiError::validation(
                &["query", "limit"],
                "less_than_equal",
                "Input should be between 1 and 100",
            ));
        }
        Ok(Page {
            offset: self.offset,
            limit: self.limit,
        })
    }
}

/// `{items, total, page, page_size}` as the list endpoints answer.
fn page_number(page: Page) -> i64 {
    page.offset / page.limit + 1
}
