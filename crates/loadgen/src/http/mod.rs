//! HTTP/1.1 (plain or TLS) for virtual users: each user holds its own keep-alive connection, as
//! Locust's and k6's users do, so the server sees as many connections as there are users.
//! Requests are encoded and answers parsed (with `httparse`, hyper's parser) right in the
//! user's task.

mod connection;
mod payload;
pub mod response;
mod stream;
mod target;
pub mod tls;
mod tls_stream;

use std::net::SocketAddr;
use std::time::Duration;

pub use connection::{Answer, Connection, Options, Sends, Timings};
pub use payload::{MultipartField, Payload};
pub use response::Limits;
pub use target::{Target, TargetError};
pub use tls::{TlsError, TlsSettings};

/// A request failure, worded for the failures table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Nothing listens there.
    #[error("ConnectionRefusedError: connection refused by {0}")]
    Refused(SocketAddr),
    /// Connect or exchange failed.
    #[error("ConnectionError: {0}")]
    Connection(String),
    /// The TLS handshake failed (a certificate, a protocol version).
    #[error("SSLError: {0}")]
    Tls(String),
    /// The answer breaks HTTP/1.1.
    #[error("ProtocolError: {0}")]
    Protocol(String),
    /// The answer is past one of loadgen's size limits.
    #[error("LimitExceeded: {0}")]
    Limit(String),
    /// No complete answer in time.
    #[error("Timeout: no complete answer within {0:?} (--request-timeout, or the step's timeout)")]
    Timeout(Duration),
    /// Redirected more times than allowed: a loop, most likely.
    #[error("TooManyRedirects: Exceeded {0} redirects (--max-redirects)")]
    TooManyRedirects(usize),
}

/// Runs a future that uses the client (single-threaded by design: the users' hot path) on a
/// thread of its own, for callers on a multi-threaded runtime (health checks, the sidecar
/// poll, the web UI's handlers).
pub fn spawn_apart<T, F, Fut>(make: F) -> tokio::task::JoinHandle<Result<T, String>>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a client thread: {e}"))?;
        runtime.block_on(make())
    })
}
