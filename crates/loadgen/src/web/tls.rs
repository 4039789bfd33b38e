//! `--tls-cert`/`--tls-key`: the UI over https, as Locust's. A listener for `axum::serve`
//! that completes each connection's TLS handshake (bounded in time, so that a client that
//! never finishes it holds nothing) before the UI reads a request; a failed handshake is
//! logged and skipped.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its handshake.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(10);

/// Accepts TCP connections and serves them over TLS.
pub struct TlsListener {
    /// The TCP side.
    pub tcp: TcpListener,
    /// The certificate and key.
    pub acceptor: TlsAcceptor,
}

impl TlsListener {
    /// Over `tcp`, with the server configuration of `--tls-cert`/`--tls-key`.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(config),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // As axum's own listener: a full file table passes; wait, then go on.
                    tracing::debug!("web UI: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match tokio::time::timeout(HANDSHAKE_WITHIN, self.acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(error)) => tracing::debug!("web UI: TLS handshake with {addr}: {error}"),
                Err(_) => tracing::debug!("web UI: TLS handshake with {addr} timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
