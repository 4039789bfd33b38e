//! Optional TLS between a master and its workers (`wss://`), with rustls: the master serves a
//! PEM certificate and key (`--master-tls-cert`, `--master-tls-key`); a worker checks it
//! against the system's roots or a CA file (`--master-tls`, `--master-tls-ca`). The cluster
//! token still decides who may join; TLS keeps it, the scenario and the figures private on
//! the way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::http::{TlsSettings, tls::client_config};

/// A connection's bytes, plain or over TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterTlsError {
    /// A PEM file could not be read.
    #[error("{flag} {path}: {cause}")]
    File {
        /// The flag that named it.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// rustls refused the certificate, key or settings.
    #[error("TLS setup: {0}")]
    Setup(#[from] rustls::Error),
    /// The worker's side (its roots or CA file).
    #[error(transparent)]
    Client(#[from] crate::http::TlsError),
}

/// The master's TLS: its certificate chain and private key, PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ClusterTlsError> {
    let file_error = |flag, path: &Path, cause: String| ClusterTlsError::File {
        flag,
        path: path.to_owned(),
        cause,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error("--master-tls-cert", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error("--master-tls-cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(
            "--master-tls-cert",
            cert,
            "holds no PEM certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        file_error(
            "--master-tls-key",
            key,
            format!("{e} (a PEM private key: PKCS#8, PKCS#1 or SEC1)"),
        )
    })?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A worker's TLS: the master's certificate checked against `ca` or the system's roots.
pub fn client(ca: Option<PathBuf>) -> Result<Arc<ClientConfig>, ClusterTlsError> {
    client_config(&TlsSettings {
        ca_cert: ca,
        insecure: false,
    })
    .map_err(|e| match e {
        // Named by the worker's flag, not by the target's --ca-cert.
        crate::http::TlsError::CaCert { path, cause } => ClusterTlsError::File {
            flag: "--master-tls-ca",
            path,
            cause,
        },
        other => other.into(),
    })
}

/// The master's side of a new connection: as it came, or after a TLS handshake.
pub async fn accept(
    stream: TcpStream,
    tls: Option<&Arc<ServerConfig>>,
) -> std::io::Result<Box<dyn Io>> {
    match tls {
        None => Ok(Box::new(stream)),
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            Ok(Box::new(acceptor.accept(stream).await?))
        }
    }
}

/// A worker's connection to `host:port`, over TLS when it has a configuration.
pub async fn connect(
    host: &str,
    port: u16,
    tls: Option<&Arc<ClientConfig>>,
) -> std::io::Result<Box<dyn Io>> {
    // An IPv6 address is written in brackets in URLs, not when connecting or naming a server.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((bare, port)).await?;
    let _ = stream.set_nodelay(true);
    match tls {
        None => Ok(Box::new(stream)),
        Some(config) => {
            let name = ServerName::try_from(bare.to_owned()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{host}: not a server name for TLS ({e})"),
                )
            })?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            Ok(Box::new(connector.connect(name, stream).await?))
        }
    }
}
