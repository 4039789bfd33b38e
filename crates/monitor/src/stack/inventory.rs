//! What the Docker engine says of a Compose project's containers: their labels, image,
//! command, environment, ports and networks, read once at discovery.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bollard::Docker as Client;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, ListContainersOptionsBuilder};

use super::classify::{Traits, classify};
use super::{Attachment, Member, Port};

/// The label Compose puts on every container of a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label that names a container's service.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// The local Docker engine.
pub struct Engine {
    client: Client,
}

impl Engine {
    /// Connects to the engine (`DOCKER_HOST` or the local socket).
    pub async fn connect() -> Result<Self, String> {
        let client = Client::connect_with_local_defaults()
            .map_err(|e| e.to_string())?
            .negotiate_version()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    async fn list(
        &self,
        filters: HashMap<String, Vec<String>>,
        all: bool,
    ) -> Result<Vec<bollard::models::ContainerSummary>, String> {
        let options = ListContainersOptionsBuilder::default()
            .all(all)
            .filters(&filters)
            .build();
        self.client
            .list_containers(Some(options))
            .await
            .map_err(|e| e.to_string())
    }

    /// The Compose projects with a running container.
    pub async fn projects(&self) -> Result<Vec<String>, String> {
        let filters = HashMap::from([("label".to_owned(), vec![PROJECT_LABEL.to_owned()])]);
        let projects: BTreeSet<String> = self
            .list(filters, false)
            .await?
            .into_iter()
            .filter_map(|c| c.labels.and_then(|mut l| l.remove(PROJECT_LABEL)))
            .collect();
        Ok(projects.into_iter().collect())
    }

    /// The Compose project of the running container that publishes `port` on the host.
    pub async fn project_publishing(&self, port: u16) -> Result<Option<String>, String> {
        let filters = HashMap::from([("label".to_owned(), vec![PROJECT_LABEL.to_owned()])]);
        Ok(self.list(filters, false).await?.into_iter().find_map(|c| {
            let publishes = c
                .ports
                .iter()
                .flatten()
                .any(|p| p.public_port == Some(port));
            publishes
                .then(|| c.labels.and_then(|mut l| l.remove(PROJECT_LABEL)))
                .flatten()
        }))
    }

    /// The project's containers (stopped ones too: the report says they are), each inspected.
    pub async fn members(&self, project: &str) -> Result<Vec<Member>, String> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{PROJECT_LABEL}={project}")],
        )]);
        let listed = self.list(filters, true).await?;
        let mut members = Vec::new();
        for summary in listed {
            let Some(id) = summary.id else { continue };
            // A container removed between the list and now is simply not a member.
            let Ok(inspect) = self
                .client
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
            else {
                continue;
            };
            members.push(member(inspect));
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(members)
    }
}

/// A member from the engine's inspection.
fn member(inspect: ContainerInspectResponse) -> Member {
    let config = inspect.config.unwrap_or_default();
    let labels = config.labels.clone().unwrap_or_default();
    let service = labels.get(SERVICE_LABEL).cloned().unwrap_or_default();
    let name = inspect
        .name
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    let command = config
        .entrypoint
        .iter()
        .flatten()
        .chain(config.cmd.iter().flatten())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let env = config
        .env
        .iter()
        .flatten()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let network_settings = inspect.network_settings.unwrap_or_default();
    let mut ports: Vec<Port> = Vec::new();
    let mut add_port = |spec: &str, published: Option<SocketAddr>| {
        let Some(number) = spec
            .strip_suffix("/tcp")
            .or((!spec.contains('/')).then_some(spec))
            .and_then(|n| n.parse::<u16>().ok())
        else {
            return;
        };
        match ports.iter_mut().find(|p| p.container == number) {
            Some(port) => {
                port.published = port.published.or(published);
            }
            None => ports.push(Port {
                container: number,
                published,
            }),
        }
    };
    for (spec, bindings) in network_settings.ports.iter().flatten() {
        let published = bindings.iter().flatten().find_map(|b| {
            let port = b.host_port.as_deref()?.parse::<u16>().ok()?;
            Some(SocketAddr::new(reachable_ip(b.host_ip.as_deref()), port))
        });
        add_port(spec, published);
    }
    for spec in config.exposed_ports.iter().flatten() {
        add_port(spec, None);
    }
    ports.sort_by_key(|p| p.container);
    let mut networks: Vec<Attachment> = network_settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(network, endpoint)| {
            let mut aliases: Vec<String> = endpoint
                .aliases
                .into_iter()
                .flatten()
                .chain(endpoint.dns_names.into_iter().flatten())
                .collect();
            aliases.sort();
            aliases.dedup();
            Attachment {
                network,
                aliases,
                ip: endpoint.ip_address.filter(|ip| !ip.is_empty()),
            }
        })
        .collect();
    // The project's own networks first: a tunnel goes there rather than to a shared one.
    networks.sort_by_key(|n| (n.network == "bridge", n.network.clone()));
    let container_ports: Vec<u16> = ports.iter().map(|p| p.container).collect();
    let image = config.image.unwrap_or_default();
    let role = classify(&Traits {
        image: &image,
        command: &command,
        service: &service,
        ports: &container_ports,
    });
    let state = inspect
        .state
        .and_then(|s| s.status)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown".into());
    Member {
        name,
        service,
        image,
        command,
        state,
        role,
        ports,
        networks,
        env,
    }
}

/// Where to connect to a port the host publishes on `host_ip`: loopback for every address
/// (`0.0.0.0`, `::`, none), else the address itself.
fn reachable_ip(host_ip: Option<&str>) -> IpAddr {
    match host_ip.and_then(|ip| ip.parse::<IpAddr>().ok()) {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    }
}
