//! What each container of a stack is, from what the engine says of it: its image, its command,
//! its Compose service name and the ports it exposes. No single signal is enough (the API and
//! its Celery workers usually share one image; a service may be called anything), so the
//! command speaks first, then the image, then the ports, then the service's name.

use std::fmt;

/// A container's part in the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The HTTP API under load (uvicorn, gunicorn...).
    Api,
    /// A job worker (a Celery worker...).
    Worker,
    /// A PostgreSQL server.
    Postgres,
    /// A Redis server (broker, result backend, cache).
    Redis,
    /// Object storage (MinIO...).
    ObjectStorage,
    /// Our own load generator or monitor, running in the project.
    LoadTool,
    /// Anything else (a proxy, Flower, Celery beat...): watched, not interpreted.
    Other,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Api => "API",
            Role::Worker => "worker",
            Role::Postgres => "PostgreSQL",
            Role::Redis => "Redis",
            Role::ObjectStorage => "object storage",
            Role::LoadTool => "load tool",
            Role::Other => "other",
        })
    }
}

/// What classification reads of a container.
#[derive(Debug, Clone, Default)]
pub struct Traits<'a> {
    /// The image reference (`postgres:16`, `registry/app:1.2`).
    pub image: &'a str,
    /// Entrypoint and command, joined by spaces.
    pub command: &'a str,
    /// The Compose service's name.
    pub service: &'a str,
    /// Container ports exposed or published (TCP).
    pub ports: &'a [u16],
}

/// The command words that name a kind of program, first match wins: workers before APIs, since
/// `celery -A app worker` and `uvicorn app:app` often run from one image.
const WORKER_COMMANDS: [&str; 5] = ["celery worker", "rq worker", "dramatiq", "arq ", "huey"];
const OTHER_COMMANDS: [&str; 3] = ["flower", "celery beat", " beat"];
const API_COMMANDS: [&str; 8] = [
    "uvicorn",
    "gunicorn",
    "hypercorn",
    "daphne",
    "granian",
    "fastapi run",
    "runserver",
    "flask run",
];
const POSTGRES_IMAGES: [&str; 5] = [
    "postgres",
    "postgis",
    "timescale",
    "pgvector",
    "supabase/postgres",
];
const REDIS_IMAGES: [&str; 4] = ["redis", "valkey", "keydb", "dragonfly"];
const STORAGE_IMAGES: [&str; 4] = ["minio", "localstack", "seaweedfs", "garage"];
const LOAD_TOOL_IMAGES: [&str; 3] = ["loadtest/loadgen", "loadtest/monitor", "locust"];

/// The role these traits suggest.
pub fn classify(traits: &Traits<'_>) -> Role {
    let command = normalized_command(traits.command);
    let image = image_name(traits.image);
    let service = traits.service.to_ascii_lowercase();
    let has = |words: &[&str], text: &str| words.iter().any(|w| text.contains(w));
    if has(&LOAD_TOOL_IMAGES, &traits.image.to_ascii_lowercase()) {
        return Role::LoadTool;
    }
    if has(&OTHER_COMMANDS, &command) {
        return Role::Other;
    }
    if has(&WORKER_COMMANDS, &command) {
        return Role::Worker;
    }
    if has(&API_COMMANDS, &command) {
        return Role::Api;
    }
    if has(&POSTGRES_IMAGES, &image) || command.starts_with("postgres") {
        return Role::Postgres;
    }
    if has(&REDIS_IMAGES, &image) || command.contains("redis-server") {
        return Role::Redis;
    }
    if has(&STORAGE_IMAGES, &image) || command.contains("minio server") {
        return Role::ObjectStorage;
    }
    // Images of unknown names: the well-known ports, then what the service is called.
    if traits.ports.contains(&5432) {
        return Role::Postgres;
    }
    if traits.ports.contains(&6379) {
        return Role::Redis;
    }
    if service.contains("worker") || service.contains("celery") {
        return Role::Worker;
    }
    let api_names = ["api", "web", "app", "backend", "server"];
    if api_names
        .iter()
        .any(|n| service == *n || service.contains("api"))
    {
        return Role::Api;
    }
    Role::Other
}

/// The command in lower case with `celery -A app worker`'s options taken out, so that
/// "celery worker" matches however the application is named.
fn normalized_command(command: &str) -> String {
    let mut words = Vec::new();
    let mut skip_value = false;
    for word in command.split_whitespace() {
        let word = word.to_ascii_lowercase();
        // Paths name the program by their last part (`/usr/local/bin/celery`).
        let word = word.rsplit('/').next().unwrap_or(&word).to_owned();
        if skip_value {
            skip_value = false;
            continue;
        }
        if word.starts_with('-') {
            // `-A app` and `--app app` take a value; `--app=app` and flags do not.
            skip_value = matches!(
                word.as_str(),
                "-a" | "--app" | "-b" | "--broker" | "-q" | "-Q"
            );
            continue;
        }
        words.push(word);
    }
    // A trailing space lets "arq " match the program and not a word that starts with it.
    format!("{} ", words.join(" "))
}

/// An image reference's repository path in lower case, without registry port or tag:
/// `registry:5000/library/postgres:16` → `library/postgres`.
fn image_name(image: &str) -> String {
    let image = image.to_ascii_lowercase();
    let without_digest = image.split('@').next().unwrap_or(&image);
    let mut parts: Vec<&str> = without_digest.split('/').collect();
    if let Some(last) = parts.last_mut() {
        *last = last.split(':').next().unwrap_or(last);
    }
    // A first part with a dot or a port is a registry.
    if parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':')) {
        parts.remove(0);
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(image: &str, command: &str, service: &str, ports: &[u16]) -> Role {
        classify(&Traits {
            image,
            command,
            service,
            ports,
        })
    }

    #[test]
    fn the_command_tells_the_api_from_its_workers_in_one_image() {
        let image = "registry.example.com:5000/acme/ffmpeg-api:1.4";
        assert_eq!(
            role(
                image,
                "uvicorn app.main:app --host 0.0.0.0 --port 8000",
                "api",
                &[8000]
            ),
            Role::Api
        );
        assert_eq!(
            role(
                image,
                "celery -A app.worker worker --loglevel=info",
                "worker",
                &[]
            ),
            Role::Worker
        );
        assert_eq!(
            role(
                image,
                "/usr/local/bin/celery --app=app.tasks worker -c 4",
                "jobs",
                &[]
            ),
            Role::Worker
        );
        assert_eq!(
            role(
                image,
                "gunicorn -k uvicorn.workers.UvicornWorker app:app",
                "frontend",
                &[]
            ),
            Role::Api
        );
        assert_eq!(
            role(image, "celery -A app flower", "flower", &[5555]),
            Role::Other
        );
        assert_eq!(
            role(image, "celery -A app beat", "scheduler", &[]),
            Role::Other
        );
    }

    #[test]
    fn servers_are_known_by_image_then_by_port() {
        assert_eq!(
            role("postgres:16-alpine", "postgres", "db", &[5432]),
            Role::Postgres
        );
        assert_eq!(
            role("docker.io/library/postgres:15", "", "database", &[]),
            Role::Postgres
        );
        assert_eq!(
            role("postgis/postgis:16-3.4", "", "gis", &[]),
            Role::Postgres
        );
        assert_eq!(
            role("redis:7", "redis-server --appendonly yes", "cache", &[]),
            Role::Redis
        );
        assert_eq!(role("valkey/valkey:8", "", "broker", &[]), Role::Redis);
        assert_eq!(
            role("minio/minio", "minio server /data", "s3", &[9000]),
            Role::ObjectStorage
        );
        assert_eq!(
            role("acme/pg-standin", "/entrypoint.sh", "store", &[5432]),
            Role::Postgres
        );
        assert_eq!(role("acme/kv", "/bin/kv", "kv", &[6379]), Role::Redis);
    }

    #[test]
    fn names_decide_last_and_our_own_tools_are_not_the_stack() {
        assert_eq!(
            role("acme/thing", "/bin/thing", "video-worker", &[]),
            Role::Worker
        );
        assert_eq!(
            role("loadtest/testbed:latest", "/bin/testbed", "api", &[]),
            Role::Api
        );
        assert_eq!(
            role("acme/thing", "/bin/thing", "ffmpeg-api", &[]),
            Role::Api
        );
        assert_eq!(
            role("nginx:1", "nginx -g daemon off;", "proxy", &[80]),
            Role::Other
        );
        assert_eq!(
            role("loadtest/loadgen:latest", "--worker", "worker", &[]),
            Role::LoadTool
        );
        assert_eq!(
            role("loadtest/monitor:latest", "", "monitor", &[9187]),
            Role::LoadTool
        );
    }
}
