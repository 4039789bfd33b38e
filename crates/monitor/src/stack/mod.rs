//! Stack discovery: point at a Compose project (`--stack compose:NAME`, or `--stack auto` for
//! the project that publishes the load's port) and find the rest through the Docker engine:
//! the containers and what each is ([`classify`]), the PostgreSQL and Redis the application
//! uses with the credentials from the containers' own environment ([`credentials`]), and a
//! way to reach each: its published port, or a helper container on the project's network.
//! What could not be found or reached is said, with the flag that fixes it ([`report`]).

pub mod classify;
pub mod credentials;
pub mod inventory;
pub mod report;

use std::net::SocketAddr;

pub use classify::Role;
use credentials::{Found, Missing, Origin};

use crate::sources::SourcesConfig;
use crate::sources::docker::Selector;
use crate::sources::redis::Queue;

/// Which stack to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackSpec {
    /// A Compose project by name.
    Compose(String),
    /// The Compose project that publishes the port the load goes to.
    Auto,
}

impl std::str::FromStr for StackSpec {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, String> {
        match input.trim().split_once(':') {
            _ if input.trim() == "auto" => Ok(Self::Auto),
            Some(("compose", project)) if !project.trim().is_empty() => {
                Ok(Self::Compose(project.trim().to_owned()))
            }
            _ => Err(format!(
                "{input:?} is not a stack: write compose:PROJECT (the Compose project's name: \
                 its folder's by default, as `docker compose ls` shows it) or auto (the project \
                 that publishes the --host port)"
            )),
        }
    }
}

impl std::fmt::Display for StackSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Compose(project) => write!(f, "compose:{project}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// A container of the stack. Its environment holds secrets: it is read by [`credentials`],
/// and never shown (not even by `Debug`).
#[derive(Clone)]
pub struct Member {
    /// The container's name.
    pub name: String,
    /// Its Compose service.
    pub service: String,
    /// Its image reference.
    pub image: String,
    /// Entrypoint and command, joined by spaces.
    pub command: String,
    /// `running`, `exited`...
    pub state: String,
    /// What it is.
    pub role: Role,
    /// Its TCP ports, with where each is published on the host.
    pub ports: Vec<Port>,
    /// The networks it is on, with its names there.
    pub networks: Vec<Attachment>,
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("service", &self.service)
            .field("image", &self.image)
            .field("role", &self.role)
            .field("ports", &self.ports)
            .field("networks", &self.networks)
            .field("env (names only)", &keys)
            .finish()
    }
}

/// A container's TCP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port inside the container.
    pub container: u16,
    /// Where the host publishes it, if it does.
    pub published: Option<SocketAddr>,
}

/// A container's place on a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The names it answers to there (service name, aliases).
    pub aliases: Vec<String>,
    /// Its address there.
    pub ip: Option<String>,
}

impl Member {
    /// The value of an environment variable.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The service's name, or the container's when it has none.
    pub fn service_or_name(&self) -> &str {
        if self.service.is_empty() {
            &self.name
        } else {
            &self.service
        }
    }

    /// Whether `host` (from a URL the application uses) names this container.
    fn answers_to(&self, host: &str) -> bool {
        host == self.name
            || host == self.service
            || self
                .networks
                .iter()
                .any(|n| n.aliases.iter().any(|a| a == host) || n.ip.as_deref() == Some(host))
    }

    /// Where the host publishes `port`.
    fn published(&self, port: u16) -> Option<SocketAddr> {
        self.ports
            .iter()
            .find(|p| p.container == port)
            .and_then(|p| p.published)
    }

    /// A member built by hand, for tests of what reads members.
    #[doc(hidden)]
    pub fn for_tests(service: &str, role: Role, command: &str, env: &[(&str, &str)]) -> Self {
        Self {
            name: format!("project-{service}-1"),
            service: service.to_owned(),
            image: String::new(),
            command: command.to_owned(),
            state: "running".into(),
            role,
            ports: Vec::new(),
            networks: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

/// The flags that fix what discovery could not do, as the program calling it names them.
#[derive(Debug, Clone, Copy)]
pub struct Flags {
    /// The PostgreSQL URL's flag.
    pub postgres: &'static str,
    /// The Redis URL's flag.
    pub redis: &'static str,
    /// The Redis queues' flag.
    pub redis_queue: &'static str,
}

/// What discovery is asked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The stack.
    pub spec: StackSpec,
    /// The port the load goes to, for [`StackSpec::Auto`] and to tell the API under load.
    pub load_port: Option<u16>,
    /// A PostgreSQL URL the user gave: discovery leaves PostgreSQL to it.
    pub postgres_given: bool,
    /// A Redis URL the user gave.
    pub redis_given: bool,
    /// The flags to name in the report.
    pub flags: Flags,
}

/// How a server is reached from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Through the port its container publishes on the host.
    Published(SocketAddr),
    /// Through a helper container on the project's network.
    Tunnel {
        /// The network.
        network: String,
        /// The tunnel's end on loopback.
        local: SocketAddr,
    },
    /// At the URL's own address, which is no container of the project.
    AsWritten,
}

/// A server discovery will watch.
#[derive(Clone)]
pub struct Endpoint {
    /// The URL to connect to, with its password: only for the source.
    url: String,
    /// Where its address and credentials came from.
    pub origin: Origin,
    /// How it is reached.
    pub reach: Reach,
    /// The container it runs in, when it is one of the project's.
    pub container: Option<String>,
}

impl Endpoint {
    /// The URL with its password, for the source that connects.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL as it may be shown.
    pub fn shown(&self) -> String {
        common::redact::url(&self.url)
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.shown())
            .field("origin", &self.origin)
            .field("reach", &self.reach)
            .finish()
    }
}

/// Something discovery could not do, and the flag that does it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is not watched, and why.
    pub what: String,
    /// How to fix it.
    pub fix: String,
}

/// A discovered stack: what to watch and how, and what could not be.
pub struct Discovery {
    /// The Compose project.
    pub project: String,
    /// Its containers.
    pub members: Vec<Member>,
    /// Its PostgreSQL, when it can be watched.
    pub postgres: Option<Endpoint>,
    /// Its Redis, when it can be watched.
    pub redis: Option<Endpoint>,
    /// The Celery queues on the broker's database, and where that came from.
    pub queues: Vec<Queue>,
    /// Where the queues' database came from.
    pub queue_origin: Option<Origin>,
    /// What could not be watched.
    pub problems: Vec<Problem>,
    /// Whether PostgreSQL and Redis were left to the user's own flags.
    pub given: (bool, bool),
    /// The helper containers that reach unpublished servers: they live as long as this.
    tunnels: Vec<crate::tunnel::Tunnel>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("project", &self.project)
            .field("members", &self.members)
            .field("postgres", &self.postgres)
            .field("redis", &self.redis)
            .field("problems", &self.problems)
            .finish()
    }
}

/// Why discovery found nothing to watch.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The engine did not answer.
    #[error(
        "--stack needs the Docker engine, which does not answer ({0}): start it, or give the \
         monitor's flags yourself"
    )]
    Engine(String),
    /// No container has the project's label.
    #[error("--stack compose:{project}: no container of that Compose project runs here{known}")]
    NoSuchProject {
        /// The project asked for.
        project: String,
        /// The projects that do run, as a hint.
        known: String,
    },
    /// `auto` without a port, and not exactly one project running.
    #[error(
        "--stack auto: with no port to go by, it takes the one Compose project running, and \
         {projects}: name it with --stack compose:PROJECT"
    )]
    Ambiguous {
        /// The projects that run.
        projects: String,
    },
    /// `auto`, and no project publishes the port.
    #[error(
        "--stack auto: no running Compose project publishes port {port}: name it with \
         --stack compose:PROJECT{known}"
    )]
    NoProjectPublishes {
        /// The load's port.
        port: u16,
        /// The projects that do run, as a hint.
        known: String,
    },
}

impl Discovery {
    /// The containers whose logs the job findings quote: the workers, or the API when no
    /// container is a worker (it runs its jobs itself).
    pub fn log_containers(&self) -> Vec<String> {
        let of = |role: Role| -> Vec<String> {
            self.members
                .iter()
                .filter(|m| m.role == role)
                .map(|m| m.name.clone())
                .collect()
        };
        let workers = of(Role::Worker);
        if workers.is_empty() {
            of(Role::Api)
        } else {
            workers
        }
    }

    /// Fills what the user's flags left empty: every container of the project, its
    /// PostgreSQL (every database's clients, as `pg_stat_activity` shows them) and its Redis
    /// with the Celery queues.
    pub fn fill(&self, sources: &mut SourcesConfig) {
        sources
            .docker
            .get_or_insert_with(|| Selector::Compose(self.project.clone()));
        if sources.postgres.is_none()
            && let Some(postgres) = &self.postgres
        {
            sources.postgres = Some((
                postgres.url.clone(),
                crate::sources::postgres::Scope::Server,
            ));
        }
        if sources.redis.is_none()
            && let Some(redis) = &self.redis
        {
            sources.redis = Some((redis.url.clone(), self.queues.clone()));
        }
    }

    /// Removes the helper containers now (dropping the discovery does it too).
    pub async fn close(self) {
        for tunnel in self.tunnels {
            tunnel.close().await;
        }
    }
}

/// Discovers the stack `request` names.
pub async fn discover(request: &Request) -> Result<Discovery, StackError> {
    let engine = inventory::Engine::connect()
        .await
        .map_err(StackError::Engine)?;
    let project = match &request.spec {
        StackSpec::Compose(project) => project.clone(),
        StackSpec::Auto => match request.load_port {
            Some(port) => match engine
                .project_publishing(port)
                .await
                .map_err(StackError::Engine)?
            {
                Some(project) => project,
                None => {
                    return Err(StackError::NoProjectPublishes {
                        port,
                        known: known_projects(&engine).await,
                    });
                }
            },
            // No port to go by: the one project that runs, if only one does.
            None => {
                let projects = engine.projects().await.map_err(StackError::Engine)?;
                match <[String; 1]>::try_from(projects) {
                    Ok([project]) => project,
                    Err(projects) => {
                        return Err(StackError::Ambiguous {
                            projects: if projects.is_empty() {
                                "none runs here".into()
                            } else {
                                format!("running: {}", projects.join(", "))
                            },
                        });
                    }
                }
            }
        },
    };
    let mut members = engine.members(&project).await.map_err(StackError::Engine)?;
    if members.is_empty() {
        return Err(StackError::NoSuchProject {
            known: known_projects(&engine).await,
            project,
        });
    }
    // The container that publishes the load's port is the API, whatever it runs.
    if let Some(port) = request.load_port {
        for member in &mut members {
            if member
                .ports
                .iter()
                .any(|p| p.published.is_some_and(|a| a.port() == port))
                && member.role != Role::LoadTool
            {
                member.role = Role::Api;
            }
        }
    }
    let mut discovery = Discovery {
        project,
        members,
        postgres: None,
        redis: None,
        queues: Vec::new(),
        queue_origin: None,
        problems: Vec::new(),
        given: (request.postgres_given, request.redis_given),
        tunnels: Vec::new(),
    };
    if !request.postgres_given {
        discover_postgres(&mut discovery, request.flags).await;
    }
    if !request.redis_given {
        discover_redis(&mut discovery, request.flags).await;
    }
    Ok(discovery)
}

async fn known_projects(engine: &inventory::Engine) -> String {
    match engine.projects().await {
        Ok(projects) if !projects.is_empty() => {
            format!(" (running projects: {})", projects.join(", "))
        }
        _ => " (no Compose project runs here)".to_owned(),
    }
}

async fn discover_postgres(discovery: &mut Discovery, flags: Flags) {
    let has_server = discovery.members.iter().any(|m| m.role == Role::Postgres);
    match credentials::postgres(&discovery.members) {
        Ok(found) => match reach(discovery, &found, 5432).await {
            Ok(endpoint) => discovery.postgres = Some(endpoint),
            Err(why) => discovery.problems.push(Problem {
                what: format!("PostgreSQL ({}): {why}", found.origin),
                fix: format!("give its URL with {}", flags.postgres),
            }),
        },
        Err(Missing::InFile(file)) => discovery.problems.push(Problem {
            what: format!(
                "PostgreSQL: its password is in a file inside the container ({file}), which is \
                 not read"
            ),
            fix: format!("give its URL with {}", flags.postgres),
        }),
        Err(Missing::NotFound) if has_server => discovery.problems.push(Problem {
            what: "PostgreSQL: no credentials in the containers' environment (DATABASE_URL, \
                   POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB)"
                .into(),
            fix: format!("give its URL with {}", flags.postgres),
        }),
        Err(Missing::NotFound) => {}
    }
}

async fn discover_redis(discovery: &mut Discovery, flags: Flags) {
    let Some(found) = credentials::redis(&discovery.members) else {
        return;
    };
    match reach(discovery, &found.found, 6379).await {
        Ok(endpoint) => {
            discovery.redis = Some(endpoint);
            discovery.queues = found.queues;
            discovery.queue_origin = found.queue_origin;
            if discovery.queues.is_empty()
                && discovery.members.iter().any(|m| m.role == Role::Worker)
            {
                discovery.problems.push(Problem {
                    what: "the Celery queue: no broker URL in the containers' environment".into(),
                    fix: format!("name it with {} DB/NAME (e.g. 1/celery)", flags.redis_queue),
                });
            }
        }
        Err(why) => discovery.problems.push(Problem {
            what: format!("Redis ({}): {why}", found.found.origin),
            fix: format!("give its URL with {}", flags.redis),
        }),
    }
}

/// How long a server's port may take to accept a connection before it counts as unreachable.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Makes `found`'s URL reachable from here: its container's published port, else a tunnel on
/// its network; a host that is none of the project's containers is used as written.
async fn reach(
    discovery: &mut Discovery,
    found: &Found,
    default_port: u16,
) -> Result<Endpoint, String> {
    let host = found.url.host_str().unwrap_or_default().to_owned();
    let port = found.url.port().unwrap_or(default_port);
    let container = discovery
        .members
        .iter()
        .find(|m| m.answers_to(&host))
        .cloned();
    let (address, reach) = match &container {
        None => (format!("{host}:{port}"), Reach::AsWritten),
        Some(member) => match member.published(port) {
            Some(published) => (published.to_string(), Reach::Published(published)),
            None => {
                let network = member
                    .networks
                    .first()
                    .map(|n| n.network.clone())
                    .ok_or_else(|| {
                        format!(
                            "the {} container is on no network and publishes no port",
                            member.service_or_name()
                        )
                    })?;
                let tunnel = crate::tunnel::Tunnel::open(&network, &member.name, port)
                    .await
                    .map_err(|e| {
                        format!(
                            "port {port} is not published, and no helper container could \
                             reach it: {e}"
                        )
                    })?;
                let local = tunnel.local_addr();
                discovery.tunnels.push(tunnel);
                (local.to_string(), Reach::Tunnel { network, local })
            }
        },
    };
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&address));
    match connect.await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("{address} is not reachable from here ({e})")),
        Err(_) => {
            return Err(format!(
                "{address} is not reachable from here (no answer in {} s)",
                CONNECT_TIMEOUT.as_secs()
            ));
        }
    }
    let mut url = found.url.clone();
    let local = match &reach {
        Reach::Published(local) | Reach::Tunnel { local, .. } => Some(*local),
        Reach::AsWritten => None,
    };
    if let Some(local) = local {
        url.set_ip_host(local.ip())
            .map_err(|()| format!("{address}: cannot be written in a URL"))?;
        url.set_port(Some(local.port()))
            .map_err(|()| format!("{address}: cannot be written in a URL"))?;
    }
    Ok(Endpoint {
        url: url.to_string(),
        origin: found.origin.clone(),
        reach,
        container: container.map(|c| c.name),
    })
}
