//! `testbed`: a reference FFmpeg API that follows `docs/api-contract.md`, backed by real
//! PostgreSQL and Redis (or memory), with knobs that plant known bottlenecks. It is the target of
//! our tests, the realistic case of our benchmarks and the demo's API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), testbed::StartError> {
//! let running = testbed::start(testbed::Config::for_tests()).await?;
//! println!("{}", running.base_url());
//! running.stop().await;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod config;
pub mod knobs;
pub mod queue;
pub mod store;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use common::redact::url as redact_url;
pub use config::Config;
use queue::{JobQueue, MemoryQueue, RedisQueue};
use store::{MemoryStore, PostgresStore, Store};

/// Why the testbed could not start. URLs in messages have their passwords masked.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// PostgreSQL did not answer or the migrations failed.
    #[error("cannot use PostgreSQL at {url}: {cause} (check --database-url / DATABASE_URL)")]
    Database {
        /// The URL, password masked.
        url: String,
        /// Why.
        cause: store::StoreError,
    },
    /// Redis did not answer.
    #[error("cannot use Redis at {url}: {cause} (check --redis-url / REDIS_URL)")]
    Redis {
        /// The URL, password masked.
        url: String,
        /// Why.
        cause: queue::QueueError,
    },
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {cause} (choose another --listen / TESTBED_LISTEN)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: std::io::Error,
    },
    /// The JWT secret is not usable.
    #[error("unusable JWT secret (--jwt-secret / TESTBED_JWT_SECRET): {0}")]
    Secret(String),
    /// The storage folder cannot be made.
    #[error("cannot use storage folder {}: {cause}", path.display())]
    Storage {
        /// The folder.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
}

/// A running testbed; stops when [`Testbed::stop`] is called or when dropped.
pub struct Testbed {
    addr: SocketAddr,
    answered: Arc<std::sync::atomic::AtomicU64>,
    store_description: String,
    queue_description: String,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    _temporary_storage: Option<tempfile::TempDir>,
}

impl Testbed {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests answered so far (any status): what a load test's totals are checked against.
    pub fn requests_answered(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `http://ADDR`, the host a load test points at.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The one line that says where it listens and what it stores in (no secrets).
    pub fn startup_line(&self) -> String {
        format!(
            "testbed listening on {} (store: {}; queue: {})",
            self.base_url(),
            self.store_description,
            self.queue_description
        )
    }

    /// Stops serving and the workers, waits for them, and says how many requests were
    /// answered in all.
    pub async fn stop(mut self) -> u64 {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.requests_answered()
    }

    /// Serves until `signal` completes, then stops; the requests answered in all.
    pub async fn serve_until(self, signal: impl std::future::Future<Output = ()>) -> u64 {
        signal.await;
        self.stop().await
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the API and its workers; returns once it accepts connections.
pub async fn start(config: Config) -> Result<Testbed, StartError> {
    let store = open_store(&config).await?;
    let queue = open_queue(&config).await?;
    let storage = Storage::make(&config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|cause| StartError::Listen {
            addr: config.listen,
            cause,
        })?;
    let addr = listener.local_addr().map_err(|cause| StartError::Listen {
        addr: config.listen,
        cause,
    })?;
    let (app, answered) = app(&config, &store, &queue, storage.uploads.clone())?;
    let shutdown = CancellationToken::new();
    let mut tasks = vec![spawn_server(&config, listener, app, shutdown.clone())?];
    for _ in 0..config.workers {
        let worker = worker::Worker {
            store: store.clone(),
            queue: queue.clone(),
            job_time: config.job_seconds,
            mode: config.job_mode,
            modes_by_type: config.job_modes_by_type.clone(),
            run_ffmpeg: config.ffmpeg,
            burns_cpu: config.job_burns_cpu,
            output_dir: storage.outputs.clone(),
        };
        tasks.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    Ok(Testbed {
        addr,
        answered,
        store_description: store.describe(),
        queue_description: queue.describe(),
        shutdown,
        tasks,
        _temporary_storage: storage.temporary,
    })
}

/// PostgreSQL at `--database-url`, migrated, or memory.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    Ok(match &config.database_url {
        Some(url) => {
            let shown = redact_url(url);
            Arc::new(
                PostgresStore::connect(url, &shown, config.db_pool)
                    .await
                    .map_err(|cause| StartError::Database { url: shown, cause })?,
            )
        }
        None => Arc::new(MemoryStore::new(config.db_pool)),
    })
}

/// The Redis list at `--redis-url`, or memory.
async fn open_queue(config: &Config) -> Result<Arc<dyn JobQueue>, StartError> {
    Ok(match &config.redis_url {
        Some(url) => {
            let shown = redact_url(url);
            Arc::new(
                RedisQueue::connect(url, &shown, &config.queue_name)
                    .await
                    .map_err(|cause| StartError::Redis { url: shown, cause })?,
            )
        }
        None => Arc::new(MemoryQueue::default()),
    })
}

/// Where uploads and outputs go: under `--storage-dir`, or a temporary folder removed with
/// the testbed.
struct Storage {
    uploads: PathBuf,
    outputs: PathBuf,
    temporary: Option<tempfile::TempDir>,
}

impl Storage {
    fn make(config: &Config) -> Result<Self, StartError> {
        let (storage_dir, temporary) = match &config.storage_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("testbed-storage-")
                    .tempdir()
                    .map_err(|cause| StartError::Storage {
                        path: std::env::temp_dir(),
                        cause,
                    })?;
                (temp.path().to_owned(), Some(temp))
            }
        };
        let uploads = storage_dir.join("uploads");
        let outputs = storage_dir.join("outputs");
        for dir in [&uploads, &outputs] {
            std::fs::create_dir_all(dir).map_err(|cause| StartError::Storage {
                path: dir.clone(),
                cause,
            })?;
        }
        Ok(Self {
            uploads,
            outputs,
            temporary,
        })
    }
}

/// The API's routes with their knobs, and the count of the requests answered.
fn app(
    config: &Config,
    store: &Arc<dyn Store>,
    queue: &Arc<dyn JobQueue>,
    upload_dir: PathBuf,
) -> Result<(axum::Router, Arc<std::sync::atomic::AtomicU64>), StartError> {
    let secret = config
        .jwt_secret
        .clone()
        .unwrap_or_else(|| format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4()));
    let knobs = knobs::Knobs::new(
        config.rate_limit_per_minute,
        config.slow.clone(),
        config.fail.clone(),
        store.clone(),
    );
    let state = api::AppState {
        store: store.clone(),
        queue: queue.clone(),
        tokens: auth::TokenKeys::new(secret.as_bytes(), config.token_ttl)
            .map_err(|cause| StartError::Secret(cause.to_string()))?,
        upload_dir,
        workers: config.workers,
        config: Arc::new(config.clone()),
    };
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = answered.clone();
    let app = api::router(state, knobs).layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let counter = counter.clone();
            async move {
                let response = next.run(request).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                response
            }
        },
    ));
    Ok((app, answered))
}

/// Serves `app` on `listener` until `shutdown`.
async fn serve(listener: TcpListener, app: axum::Router, shutdown: CancellationToken) {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "server stopped");
    }
}

/// The server's task: on the caller's runtime, or with `--hash-on-event-loop` on one event loop
/// of its own thread, as a single uvicorn worker (what blocks it blocks every request).
fn spawn_server(
    config: &Config,
    listener: TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    if !config.hash_on_event_loop {
        return Ok(tokio::spawn(serve(listener, app, shutdown)));
    }
    let listener = listener.into_std().map_err(|cause| StartError::Listen {
        addr: config.listen,
        cause,
    })?;
    let (stopped, on_stop) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("testbed-event-loop".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, app, shutdown).await,
                        Err(error) => tracing::error!(%error, "server stopped"),
                    }
                }),
                Err(error) => tracing::error!(%error, "no event loop"),
            }
            let _ = stopped.send(());
        });
    if let Err(cause) = thread {
        return Err(StartError::Listen {
            addr: config.listen,
            cause,
        });
    }
    Ok(tokio::spawn(async move {
        let _ = on_stop.await;
    }))
}
