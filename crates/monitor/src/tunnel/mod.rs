//! Placeholder until the helper container lands: every tunnel fails to open.

use std::net::SocketAddr;

/// A helper container forwarding a loopback port to a server on a Docker network.
pub struct Tunnel {
    local: SocketAddr,
}

/// Why a tunnel could not open.
#[derive(Debug, thiserror::Error)]
#[error("helper containers are not built yet")]
pub struct TunnelError;

impl Tunnel {
    /// Opens a tunnel to `target_host:target_port` on `network`.
    pub async fn open(
        _network: &str,
        _target_host: &str,
        _target_port: u16,
    ) -> Result<Tunnel, TunnelError> {
        Err(TunnelError)
    }

    /// The tunnel's end on loopback.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Removes the helper container.
    pub async fn close(self) {}
}
