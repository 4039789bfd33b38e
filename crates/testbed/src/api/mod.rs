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

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The whole API, with the bottleneck knobs around it, and its OpenAPI document at
/// `/openapi.json` (as FastAPI serves one), made from the routes and their types.
pub fn router(state: AppState, knobs: Knobs) -> Router {
    let (api, mut document) = OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(files::upload))
        .routes(routes!(files::list))
        .routes(routes!(files::get, files::delete))
        .routes(routes!(files::download))
        .routes(routes!(tasks::join))
        .routes(routes!(tasks::audio_overlay))
        .routes(routes!(tasks::list))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::cancel))
        .routes(routes!(tasks::retry))
        .routes(routes!(users::me))
        .routes(routes!(users::stats))
        .routes(routes!(users::settings, users::put_settings))
        .routes(routes!(admin::queue_status))
        .split_for_parts();
    // Aliases the contract keeps, left out of the document as FastAPI leaves them out.
    let api = api
        .route("/health", get(health::redirect_to_slash))
        .route("/auth/me", get(users::me))
        .route("/files/", get(files::list))
        .route("/tasks/", get(tasks::list));
    describe(&mut document);
    let document = Arc::new(document);
    Router::new()
        .nest("/api/v1", api)
        .route("/health", get(health::health))
        .route(
            "/openapi.json",
            get(move || {
                let document = document.clone();
                async move { Json(document) }
            }),
        )
        .fallback(|| async { ApiError::not_found("Not Found") })
        // Knobs run after routing so that they can match route templates such as /tasks/{id}.
        .route_layer(axum::middleware::from_fn_with_state(
            knobs,
            crate::knobs::apply,
        ))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES as usize + 64 * 1024))
        .with_state(state)
}

/// The document's title, its server (`/api/v1`, where the routes are nested) and its bearer
/// scheme.
fn describe(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
    document.info.title = "FFmpeg API (testbed)".to_owned();
    env!("CARGO_PKG_VERSION").clone_into(&mut document.info.version);
    document.info.description = Some("docs/api-contract.md, with bottleneck knobs".to_owned());
    document.servers = Some(vec![utoipa::openapi::Server::new("/api/v1")]);
    document
        .components
        .get_or_insert_default()
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
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
