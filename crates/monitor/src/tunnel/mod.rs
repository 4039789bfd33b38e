//! A way into a Docker network from the host: a short-lived helper container, made from our own
//! executable (see [`image`]), attached to the network and forwarding a port published on
//! 127.0.0.1 to a service there (see [`forward`]). Stack discovery uses it to watch a Compose
//! project's PostgreSQL or Redis whose port is not published (issue 28).
//!
//! A tunnel is open only once a connection through it has reached the target; it is removed by
//! [`Tunnel::close`], or when dropped. A process killed outright leaves its tunnel behind; the
//! next tunnel opened on the machine removes it ([`owner`]), and
//! `docker rm -f $(docker ps -qf label=io.loadtest.tunnel=1)` removes them all.

pub mod forward;
pub mod image;
pub mod owner;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures::{Stream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub use forward::main_if_asked;

/// The label every tunnel container carries (value `1`).
pub const LABEL: &str = "io.loadtest.tunnel";

/// The start of every tunnel container's name; a random part follows.
pub const NAME_PREFIX: &str = "loadtest-tunnel-";

/// The port the forwarder listens on inside its container.
const LISTEN_PORT: u16 = 4000;

/// Why a tunnel could not be opened, each saying what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The Docker engine did not answer.
    #[error(
        "cannot reach the Docker engine ({detail}): is it running, and may this user use its \
         socket (/var/run/docker.sock, or the one DOCKER_HOST names)?"
    )]
    Engine {
        /// The client's error.
        detail: String,
    },
    /// No network of that name.
    #[error(
        "Docker network {network:?} not found: name an existing one (`docker network ls`; a \
         Compose project's is usually PROJECT_default)"
    )]
    NetworkNotFound {
        /// The network asked for.
        network: String,
    },
    /// The image could not be made from this executable.
    #[error("cannot make the tunnel's image: {0}")]
    Image(#[from] image::ImageError),
    /// The engine would not create or start the container, or it stopped.
    #[error("the tunnel container on network {network:?} did not start: {detail}")]
    Container {
        /// The network.
        network: String,
        /// The engine's error, or what the container said before it stopped.
        detail: String,
    },
    /// Nothing answered at the target from inside the network.
    #[error(
        "{target} does not answer from inside Docker network {network:?} (waited {} s; {last}): \
         check that the service runs on that network under that name and listens on that port",
        waited.as_secs()
    )]
    TargetNotAnswering {
        /// The network.
        network: String,
        /// `host:port` on that network.
        target: String,
        /// How long it was tried.
        waited: Duration,
        /// The last attempt's outcome.
        last: String,
    },
}

/// How a tunnel is opened; [`Tunnel::open`] takes the defaults.
#[derive(Debug, Clone)]
pub struct TunnelOptions {
    /// The executable the tunnel container runs (it must handle `__tunnel LISTEN TO`, as
    /// `loadgen` and `monitor` do); the running one if `None`. Tests name the `monitor` binary.
    pub executable: Option<PathBuf>,
    /// How long the target may take to answer through the tunnel.
    pub ready_within: Duration,
}

impl Default for TunnelOptions {
    fn default() -> Self {
        Self {
            executable: None,
            ready_within: Duration::from_secs(20),
        }
    }
}

/// The tunnel containers this process has open, by name: [`close_all`] removes them before the
/// process exits, whatever still holds their [`Tunnel`] (a task the runtime will not wait for,
/// a configuration shared with a signal handler).
static OPEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn forget(name: &str) {
    OPEN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|open| open != name);
}

/// Removes every tunnel container this process opened and has not closed yet; for a program
/// about to exit.
pub async fn close_all() {
    let names = std::mem::take(
        &mut *OPEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    if names.is_empty() {
        return;
    }
    let docker = match Docker::connect_with_local_defaults() {
        Ok(docker) => docker,
        Err(error) => {
            for name in &names {
                warn_left_behind(name, &error.to_string());
            }
            return;
        }
    };
    let removals = names.iter().map(|name| remove(&docker, name));
    for (name, result) in names.iter().zip(futures::future::join_all(removals).await) {
        if let Err(error) = result {
            warn_left_behind(name, &error);
        }
    }
}

/// An open tunnel: connections to [`Tunnel::local_addr`] reach the target inside the network.
#[derive(Debug)]
pub struct Tunnel {
    docker: Docker,
    name: String,
    local: SocketAddr,
    removed: bool,
}

impl Tunnel {
    /// Opens a tunnel from 127.0.0.1 to `target_host:target_port` on Docker network `network`,
    /// with a container made from the running executable; returns once a connection through it
    /// reached the target.
    pub async fn open(
        network: &str,
        target_host: &str,
        target_port: u16,
    ) -> Result<Tunnel, TunnelError> {
        Self::open_with(network, target_host, target_port, &TunnelOptions::default()).await
    }

    /// [`Tunnel::open`] with options.
    pub async fn open_with(
        network: &str,
        target_host: &str,
        target_port: u16,
        options: &TunnelOptions,
    ) -> Result<Tunnel, TunnelError> {
        let engine = |e: DockerError| TunnelError::Engine {
            detail: e.to_string(),
        };
        let docker = Docker::connect_with_local_defaults().map_err(engine)?;
        docker.ping().await.map_err(engine)?;
        match docker.inspect_network(network, None).await {
            Ok(_) => {}
            Err(error) if status(&error) == Some(404) => {
                return Err(TunnelError::NetworkNotFound {
                    network: network.to_owned(),
                });
            }
            Err(error) => return Err(engine(error)),
        }
        for orphan in owner::sweep(&docker).await {
            tracing::info!("removed tunnel container {orphan}: its owner process is gone");
        }
        let tag = image::ensure(&docker, options.executable.as_deref()).await?;
        let target = host_port(target_host, target_port);
        let name = format!("{NAME_PREFIX}{}", random_suffix());
        let failed = |detail: String| TunnelError::Container {
            network: network.to_owned(),
            detail,
        };
        docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                container_config(&tag, network, &target),
            )
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut tunnel = Tunnel {
            docker,
            name,
            local: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            removed: false,
        };
        match tunnel.start(network, &target, options.ready_within).await {
            Ok(()) => {
                OPEN.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(tunnel.name.clone());
                Ok(tunnel)
            }
            Err(error) => {
                tunnel.close().await;
                Err(error)
            }
        }
    }

    /// Where to connect on this machine: 127.0.0.1 and the port published for the tunnel.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The tunnel container's name.
    pub fn container_name(&self) -> &str {
        &self.name
    }

    /// Removes the tunnel container, and returns once it is gone.
    pub async fn close(mut self) {
        self.removed = true;
        forget(&self.name);
        if let Err(error) = remove(&self.docker, &self.name).await {
            warn_left_behind(&self.name, &error);
        }
    }

    async fn start(
        &mut self,
        network: &str,
        target: &str,
        within: Duration,
    ) -> Result<(), TunnelError> {
        let failed = |detail: String| TunnelError::Container {
            network: network.to_owned(),
            detail,
        };
        self.docker
            .start_container(&self.name, None)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let port = self.published_port().await.map_err(failed)?;
        self.local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log = self.docker.logs(
            &self.name,
            Some(
                LogsOptionsBuilder::new()
                    .follow(true)
                    .stdout(true)
                    .stderr(true)
                    .build(),
            ),
        );
        match wait_reached(self.local, target, log, within).await {
            Ok(()) => Ok(()),
            Err(Unanswered::Stopped(said)) => Err(failed(format!(
                "it stopped at once, saying: {}",
                said.trim()
            ))),
            Err(Unanswered::Last(last)) => Err(TunnelError::TargetNotAnswering {
                network: network.to_owned(),
                target: target.to_owned(),
                waited: within,
                last,
            }),
        }
    }

    /// The host port the engine chose for the forwarder's.
    async fn published_port(&self) -> Result<u16, String> {
        let key = format!("{LISTEN_PORT}/tcp");
        let mut last = String::from("no port published");
        // The engine sets the binding as it starts the container; a moment at most.
        for _ in 0..20 {
            match self.docker.inspect_container(&self.name, None).await {
                Ok(inspect) => {
                    let port = inspect
                        .network_settings
                        .and_then(|s| s.ports)
                        .and_then(|mut ports| ports.remove(&key).flatten())
                        .and_then(|bindings| {
                            bindings
                                .into_iter()
                                .find_map(|b| b.host_port?.parse::<u16>().ok())
                        });
                    if let Some(port) = port.filter(|p| *p != 0) {
                        return Ok(port);
                    }
                }
                Err(error) => last = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("no host port published for {key}: {last}"))
    }
}

impl Drop for Tunnel {
    /// Removes the container from a thread of its own (the caller may have no runtime, or a
    /// single-threaded one that this would block), waiting a bounded time for it.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        forget(&self.name);
        let name = self.name.clone();
        let (done, removed) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("tunnel-remove".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|runtime| {
                        runtime.block_on(async {
                            // A client of this runtime's own: the opener's may be bound to a
                            // runtime that is shutting down.
                            let docker =
                                Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
                            remove(&docker, &name).await
                        })
                    });
                let _ = done.send(result);
            });
        let outcome = match spawned {
            Ok(_) => removed
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| Err("no answer from the engine within 10 s".into())),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = outcome {
            warn_left_behind(&self.name, &error);
        }
    }
}

/// A container left behind is the user's to remove: said on stderr whatever logging is set up
/// (loadgen's filter keeps only its own crate's events).
fn warn_left_behind(name: &str, error: &str) {
    eprintln!("WARNING: tunnel container {name} not removed ({error}): docker rm -f {name}");
}

/// The container: the forwarder on [`LISTEN_PORT`], published on 127.0.0.1 only, on a port
/// the engine chooses.
fn container_config(image: &str, network: &str, target: &str) -> ContainerCreateBody {
    let port = format!("{LISTEN_PORT}/tcp");
    let binding = PortBinding {
        host_ip: Some(Ipv4Addr::LOCALHOST.to_string()),
        host_port: Some(String::new()),
    };
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd: Some(vec![
            forward::MODE.to_owned(),
            format!("0.0.0.0:{LISTEN_PORT}"),
            target.to_owned(),
        ]),
        labels: Some(
            [
                (LABEL.to_owned(), "1".to_owned()),
                (format!("{LABEL}.target"), target.to_owned()),
            ]
            .into_iter()
            .chain(owner::this_process().map(|o| (owner::OWNER_LABEL.to_owned(), o)))
            .collect(),
        ),
        exposed_ports: Some(vec![port.clone()]),
        host_config: Some(HostConfig {
            auto_remove: Some(true),
            network_mode: Some(network.to_owned()),
            port_bindings: Some(HashMap::from([(port, Some(vec![binding]))])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Why no connection through the tunnel reached the target.
enum Unanswered {
    /// The container stopped; what it said.
    Stopped(String),
    /// Time ran out; the last attempt's outcome.
    Last(String),
}

/// Connects through the tunnel until the forwarder's log says that a connection reached the
/// target. The engine's port proxy accepts a connection even before the forwarder listens, so
/// an accepted connection alone proves nothing.
async fn wait_reached(
    local: SocketAddr,
    target: &str,
    log: impl Stream<Item = Result<bollard::container::LogOutput, DockerError>> + Unpin,
    within: Duration,
) -> Result<(), Unanswered> {
    let deadline = tokio::time::Instant::now() + within;
    let mut lines = LogLines {
        log,
        target,
        pending: String::new(),
        said: String::new(),
    };
    let mut last = String::from("no connection reached the forwarder");
    loop {
        let attempt = async {
            let mut probe = match TcpStream::connect(local).await {
                Ok(probe) => probe,
                Err(error) => return Ok(Some(format!("{local}: {error}"))),
            };
            let mut byte = [0u8; 1];
            tokio::select! {
                event = lines.next_event() => match event {
                    Some(forward::Event::Reached) => Ok(None),
                    Some(forward::Event::Unreachable(why)) => Ok(Some(why)),
                    None => Err(Unanswered::Stopped(lines.said.clone())),
                },
                // Let go without a word: the forwarder was not listening yet.
                _ = probe.read(&mut byte) => Ok(Some("the forwarder is not listening yet".into())),
            }
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(why))) => last = why,
            Ok(Err(stopped)) => return Err(stopped),
            Err(_) => return Err(Unanswered::Last(last)),
        }
        tokio::time::sleep_until(
            (tokio::time::Instant::now() + Duration::from_millis(100)).min(deadline),
        )
        .await;
    }
}

/// The forwarder's log, line by line.
struct LogLines<'a, S> {
    log: S,
    /// The forwarder's target, as its lines name it.
    target: &'a str,
    pending: String,
    /// Everything it said that is not a connection's event.
    said: String,
}

impl<S> LogLines<'_, S>
where
    S: Stream<Item = Result<bollard::container::LogOutput, DockerError>> + Unpin,
{
    /// The next connection event; `None` once the log ends (the container stopped).
    async fn next_event(&mut self) -> Option<forward::Event> {
        loop {
            while let Some(end) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=end).collect();
                match forward::Event::parse(line.trim_end(), self.target) {
                    Some(event) => return Some(event),
                    None => self.said.push_str(&line),
                }
            }
            match self.log.next().await {
                Some(Ok(output)) => self
                    .pending
                    .push_str(&String::from_utf8_lossy(output.as_ref())),
                Some(Err(_)) | None => {
                    self.said.push_str(&std::mem::take(&mut self.pending));
                    return None;
                }
            }
        }
    }
}

/// Force-removes the container, then waits (5 s at most) until the engine no longer knows it:
/// its auto-removal may be under way already.
async fn remove(docker: &Docker, name: &str) -> Result<(), String> {
    let options = RemoveContainerOptionsBuilder::new().force(true).build();
    match docker.remove_container(name, Some(options)).await {
        Ok(()) => {}
        // Gone already, or its removal in progress.
        Err(error) if matches!(status(&error), Some(404 | 409)) => {}
        Err(error) => return Err(error.to_string()),
    }
    for _ in 0..100 {
        match docker.inspect_container(name, None).await {
            Err(error) if status(&error) == Some(404) => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    Err("still there 5 s after its removal".into())
}

fn status(error: &DockerError) -> Option<u16> {
    match error {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// `host:port`, with an IPv6 literal in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Twelve hex digits that differ between calls and processes.
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_names() {
        assert_eq!(host_port("redis", 6379), "redis:6379");
        assert_eq!(host_port("fd00::2", 5432), "[fd00::2]:5432");
        assert_eq!(host_port("[fd00::2]", 5432), "[fd00::2]:5432");
        let (a, b) = (random_suffix(), random_suffix());
        assert_ne!(a, b);
        assert_eq!(a.len(), 12);
    }
}
