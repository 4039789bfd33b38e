//! Where the stack's PostgreSQL and Redis are and how to log in, read from the containers' own
//! environment the way the application itself finds them: its `DATABASE_URL`, its Celery
//! broker URL, or the database container's `POSTGRES_*` variables. The URLs found carry
//! secrets: they go to the sources and nowhere else; what is shown is where they came from.

use url::Url;

use super::{Member, Role};
use crate::sources::redis::Queue;

/// Where a connection's address and secrets came from, for the report ("password from the
/// postgres container's environment").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The container whose environment held it.
    pub container: String,
    /// The variables read.
    pub variables: Vec<String>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} from the {} container's environment",
            self.variables.join(", "),
            self.container
        )
    }
}

/// A server's URL as the stack names it (its host may be a service name), with its origin.
#[derive(Clone, PartialEq, Eq)]
pub struct Found {
    /// The URL, with its password: never shown.
    pub url: Url,
    /// Where it came from.
    pub origin: Origin,
}

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found")
            .field("url", &common::redact::url(self.url.as_str()))
            .field("origin", &self.origin)
            .finish()
    }
}

/// Why a server's credentials could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// No container holds them.
    NotFound,
    /// The password sits in a file inside the container (`POSTGRES_PASSWORD_FILE`).
    InFile(String),
}

/// The variables that hold a PostgreSQL URL, in the order applications read them.
const POSTGRES_URL_VARIABLES: [&str; 6] = [
    "DATABASE_URL",
    "SQLALCHEMY_DATABASE_URI",
    "SQLALCHEMY_DATABASE_URL",
    "POSTGRES_URL",
    "POSTGRES_DSN",
    "DB_URL",
];

/// The variables that hold the Celery broker's URL.
const BROKER_VARIABLES: [&str; 3] = ["CELERY_BROKER_URL", "BROKER_URL", "CELERY_BROKER"];

/// The variables that hold another Redis URL (result backend, cache).
const REDIS_URL_VARIABLES: [&str; 4] = [
    "REDIS_URL",
    "CELERY_RESULT_BACKEND",
    "RESULT_BACKEND",
    "REDIS_DSN",
];

/// Containers whose environment says how the application connects: the API first, then the
/// workers, then the rest (never the database servers themselves).
fn applications(members: &[Member]) -> impl Iterator<Item = &Member> {
    let rank = |m: &&Member| match m.role {
        Role::Api => 0,
        Role::Worker => 1,
        _ => 2,
    };
    let mut apps: Vec<&Member> = members
        .iter()
        .filter(|m| {
            !matches!(
                m.role,
                Role::Postgres | Role::Redis | Role::ObjectStorage | Role::LoadTool
            )
        })
        .collect();
    apps.sort_by_key(rank);
    apps.into_iter()
}

/// A PostgreSQL URL whose scheme a driver chose (`postgresql+asyncpg://`), as libpq writes it.
fn postgres_url(value: &str) -> Option<Url> {
    let (scheme, rest) = value.split_once("://")?;
    let base = scheme
        .split('+')
        .next()
        .unwrap_or(scheme)
        .to_ascii_lowercase();
    if base != "postgres" && base != "postgresql" {
        return None;
    }
    let url = Url::parse(&format!("postgres://{rest}")).ok()?;
    url.host_str().filter(|h| !h.is_empty())?;
    Some(url)
}

/// The application's PostgreSQL, else the one the database container's variables describe.
pub fn postgres(members: &[Member]) -> Result<Found, Missing> {
    for app in applications(members) {
        for variable in POSTGRES_URL_VARIABLES {
            if let Some(url) = app.env(variable).and_then(postgres_url) {
                return Ok(Found {
                    url,
                    origin: Origin {
                        container: app.service_or_name().to_owned(),
                        variables: vec![variable.to_owned()],
                    },
                });
            }
        }
        if let Some(found) = postgres_from_parts(app) {
            return Ok(found);
        }
    }
    let mut missing = Missing::NotFound;
    for server in members.iter().filter(|m| m.role == Role::Postgres) {
        match postgres_from_server(server) {
            Ok(found) => return Ok(found),
            Err(Missing::InFile(file)) => missing = Missing::InFile(file),
            Err(Missing::NotFound) => {}
        }
    }
    Err(missing)
}

/// `POSTGRES_SERVER`/`POSTGRES_HOST` with `POSTGRES_USER`, `POSTGRES_PASSWORD` and
/// `POSTGRES_DB` in an application's environment (FastAPI's full-stack template does this).
fn postgres_from_parts(app: &Member) -> Option<Found> {
    let (host_variable, host) = ["POSTGRES_SERVER", "POSTGRES_HOST", "DB_HOST"]
        .into_iter()
        .find_map(|v| app.env(v).map(|h| (v, h)))?;
    let user = app.env("POSTGRES_USER")?;
    let password = app.env("POSTGRES_PASSWORD")?;
    let port = app.env("POSTGRES_PORT").unwrap_or("5432");
    let database = app.env("POSTGRES_DB").unwrap_or(user);
    let mut url = Url::parse(&format!("postgres://{host}:{port}/")).ok()?;
    url.set_username(user).ok()?;
    url.set_password(Some(password)).ok()?;
    url.set_path(database);
    let mut variables = vec![host_variable.to_owned(), "POSTGRES_USER".into()];
    variables.push("POSTGRES_PASSWORD".into());
    Some(Found {
        url,
        origin: Origin {
            container: app.service_or_name().to_owned(),
            variables,
        },
    })
}

/// What the official image's variables make of a server: `POSTGRES_USER` (default
/// `postgres`), `POSTGRES_PASSWORD`, `POSTGRES_DB` (default: the user).
fn postgres_from_server(server: &Member) -> Result<Found, Missing> {
    let user = server.env("POSTGRES_USER").unwrap_or("postgres");
    let database = server.env("POSTGRES_DB").unwrap_or(user);
    let trusted = server
        .env("POSTGRES_HOST_AUTH_METHOD")
        .is_some_and(|m| m.eq_ignore_ascii_case("trust"));
    let password = server.env("POSTGRES_PASSWORD");
    if password.is_none() && !trusted {
        return Err(match server.env("POSTGRES_PASSWORD_FILE") {
            Some(file) => Missing::InFile(file.to_owned()),
            None => Missing::NotFound,
        });
    }
    let host = server.service_or_name();
    let mut url = Url::parse(&format!("postgres://{host}:5432/")).map_err(|_| Missing::NotFound)?;
    url.set_username(user).map_err(|()| Missing::NotFound)?;
    if let Some(password) = password {
        url.set_password(Some(password))
            .map_err(|()| Missing::NotFound)?;
    }
    url.set_path(database);
    let mut variables: Vec<String> = ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]
        .into_iter()
        .filter(|v| server.env(v).is_some())
        .map(str::to_owned)
        .collect();
    if trusted && password.is_none() {
        variables.push("POSTGRES_HOST_AUTH_METHOD=trust".into());
    }
    Ok(Found {
        url,
        origin: Origin {
            container: server.service_or_name().to_owned(),
            variables,
        },
    })
}

/// The stack's Redis: its URL, and the Celery queues on its broker database when a broker URL
/// (or, failing one, the application's `REDIS_URL`) says where they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisFound {
    /// The server's URL and where it came from.
    pub found: Found,
    /// The queues to watch, `DB/NAME`.
    pub queues: Vec<Queue>,
    /// Where the queues' database came from: the broker URL's variable.
    pub queue_origin: Option<Origin>,
}

fn redis_url(value: &str) -> Option<Url> {
    let url = Url::parse(value).ok()?;
    matches!(url.scheme(), "redis" | "rediss").then_some(())?;
    url.host_str().filter(|h| !h.is_empty())?;
    Some(url)
}

/// The database number in a Redis URL's path (`/1`), 0 when none.
fn redis_db(url: &Url) -> i64 {
    url.path().trim_start_matches('/').parse().unwrap_or(0)
}

/// The Celery queues the workers consume (`-Q a,b` in their command, else the default queue's
/// variable, else `celery`).
fn celery_queue_names(members: &[Member]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for worker in members.iter().filter(|m| m.role == Role::Worker) {
        let words: Vec<&str> = worker.command.split_whitespace().collect();
        for (i, word) in words.iter().enumerate() {
            let list = if let Some(list) = word.strip_prefix("--queues=") {
                Some(list)
            } else if *word == "-Q" || *word == "--queues" {
                words.get(i + 1).copied()
            } else {
                word.strip_prefix("-Q").filter(|l| !l.is_empty())
            };
            for name in list.into_iter().flat_map(|l| l.split(',')) {
                if !name.is_empty() && !names.iter().any(|n| n == name) {
                    names.push(name.to_owned());
                }
            }
        }
    }
    if names.is_empty() {
        let default = members.iter().find_map(|m| {
            ["CELERY_TASK_DEFAULT_QUEUE", "CELERY_DEFAULT_QUEUE"]
                .into_iter()
                .find_map(|v| m.env(v))
        });
        names.push(default.unwrap_or("celery").to_owned());
    }
    names
}

/// The application's Redis (its broker first), else the Redis container with the password its
/// command or environment sets.
pub fn redis(members: &[Member]) -> Option<RedisFound> {
    let queue_names = celery_queue_names(members);
    let has_workers = members.iter().any(|m| m.role == Role::Worker);
    for app in applications(members) {
        let broker = BROKER_VARIABLES
            .into_iter()
            .find_map(|v| app.env(v).and_then(redis_url).map(|u| (v, u)));
        let other = REDIS_URL_VARIABLES
            .into_iter()
            .find_map(|v| app.env(v).and_then(redis_url).map(|u| (v, u)));
        // Without a broker URL, the application's own REDIS_URL is taken for the queue's
        // database only when something consumes a queue (a worker), or the app runs its jobs.
        let (variable, url, is_broker) = match (broker, other) {
            (Some((v, u)), _) => (v, u, true),
            (None, Some((v, u))) => (v, u, has_workers || app.role == Role::Api),
            (None, None) => continue,
        };
        let origin = Origin {
            container: app.service_or_name().to_owned(),
            variables: vec![variable.to_owned()],
        };
        let db = redis_db(&url);
        let queues = if is_broker {
            queue_names
                .iter()
                .map(|name| Queue {
                    db,
                    name: name.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        return Some(RedisFound {
            found: Found {
                url,
                origin: origin.clone(),
            },
            queue_origin: is_broker.then_some(origin),
            queues,
        });
    }
    let server = members.iter().find(|m| m.role == Role::Redis)?;
    let mut url = Url::parse(&format!("redis://{}:6379/0", server.service_or_name())).ok()?;
    let mut variables = Vec::new();
    let from_command = server
        .command
        .split_whitespace()
        .skip_while(|w| *w != "--requirepass")
        .nth(1);
    if let Some(password) = from_command {
        url.set_password(Some(password)).ok()?;
        variables.push("its command's --requirepass".to_owned());
    } else if let Some(password) = server.env("REDIS_PASSWORD") {
        url.set_password(Some(password)).ok()?;
        variables.push("REDIS_PASSWORD".to_owned());
    } else {
        variables.push("no password".to_owned());
    }
    Some(RedisFound {
        found: Found {
            url,
            origin: Origin {
                container: server.service_or_name().to_owned(),
                variables,
            },
        },
        queues: Vec::new(),
        queue_origin: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::Member;

    fn member(service: &str, role: Role, command: &str, env: &[(&str, &str)]) -> Member {
        Member::for_tests(service, role, command, env)
    }

    #[test]
    fn the_applications_database_url_wins_whatever_its_driver() {
        let members = [
            member(
                "db",
                Role::Postgres,
                "postgres",
                &[
                    ("POSTGRES_USER", "admin"),
                    ("POSTGRES_PASSWORD", "server-secret"),
                ],
            ),
            member(
                "api",
                Role::Api,
                "uvicorn app:app",
                &[(
                    "DATABASE_URL",
                    "postgresql+asyncpg://app:app-secret@db:5432/videos?ssl=disable",
                )],
            ),
        ];
        let found = postgres(&members).unwrap();
        assert_eq!(found.url.scheme(), "postgres");
        assert_eq!(found.url.host_str(), Some("db"));
        assert_eq!(found.url.username(), "app");
        assert_eq!(found.url.password(), Some("app-secret"));
        assert_eq!(found.url.path(), "/videos");
        assert_eq!(
            found.origin.to_string(),
            "DATABASE_URL from the api container's environment"
        );
        assert!(!format!("{found:?}").contains("app-secret"), "{found:?}");
    }

    #[test]
    fn the_servers_own_variables_and_their_defaults_otherwise() {
        let server = |env: &[(&str, &str)]| [member("postgres", Role::Postgres, "postgres", env)];
        let found = postgres(&server(&[("POSTGRES_PASSWORD", "pw")])).unwrap();
        assert_eq!(
            found.url.as_str(),
            "postgres://postgres:pw@postgres:5432/postgres"
        );
        assert_eq!(
            found.origin.to_string(),
            "POSTGRES_PASSWORD from the postgres container's environment"
        );
        let found = postgres(&server(&[
            ("POSTGRES_USER", "u"),
            ("POSTGRES_PASSWORD", "p@ss/word"),
            ("POSTGRES_DB", "d"),
        ]))
        .unwrap();
        assert_eq!(found.url.password(), Some("p%40ss%2Fword"));
        assert_eq!(found.url.path(), "/d");
        let trusted = postgres(&server(&[("POSTGRES_HOST_AUTH_METHOD", "trust")])).unwrap();
        assert_eq!(trusted.url.password(), None);
        assert_eq!(
            postgres(&server(&[("POSTGRES_PASSWORD_FILE", "/run/secrets/pg")])),
            Err(Missing::InFile("/run/secrets/pg".into()))
        );
        assert_eq!(postgres(&server(&[])), Err(Missing::NotFound));
    }

    #[test]
    fn discrete_variables_of_the_fastapi_template_make_a_url() {
        let members = [member(
            "backend",
            Role::Api,
            "fastapi run",
            &[
                ("POSTGRES_SERVER", "db"),
                ("POSTGRES_USER", "postgres"),
                ("POSTGRES_PASSWORD", "changethis"),
                ("POSTGRES_DB", "app"),
            ],
        )];
        let found = postgres(&members).unwrap();
        assert_eq!(
            found.url.as_str(),
            "postgres://postgres:changethis@db:5432/app"
        );
    }

    #[test]
    fn the_brokers_database_and_the_workers_queues_are_watched() {
        let members = [
            member(
                "api",
                Role::Api,
                "uvicorn app:app",
                &[
                    ("REDIS_URL", "redis://redis:6379/0"),
                    ("CELERY_BROKER_URL", "redis://:brokerpw@redis:6379/3"),
                ],
            ),
            member(
                "worker",
                Role::Worker,
                "celery -A app worker -Q video,audio",
                &[],
            ),
            member("redis", Role::Redis, "redis-server", &[]),
        ];
        let found = redis(&members).unwrap();
        assert_eq!(found.found.url.password(), Some("brokerpw"));
        let queues: Vec<String> = found
            .queues
            .iter()
            .map(|q| format!("{}/{}", q.db, q.name))
            .collect();
        assert_eq!(queues, ["3/video", "3/audio"]);
        assert_eq!(
            found.queue_origin.unwrap().to_string(),
            "CELERY_BROKER_URL from the api container's environment"
        );
    }

    #[test]
    fn a_redis_url_alone_is_the_queues_database_and_a_bare_server_has_no_queue() {
        let members = [
            member(
                "api",
                Role::Api,
                "/bin/testbed",
                &[("REDIS_URL", "redis://redis:6379/1")],
            ),
            member("redis", Role::Redis, "redis-server", &[]),
        ];
        let found = redis(&members).unwrap();
        assert_eq!(
            found.queues,
            vec![Queue {
                db: 1,
                name: "celery".into()
            }]
        );
        let bare = redis(&[member(
            "cache",
            Role::Redis,
            "redis-server --requirepass s3cret --port 6379",
            &[],
        )])
        .unwrap();
        assert_eq!(bare.found.url.as_str(), "redis://:s3cret@cache:6379/0");
        assert!(bare.queues.is_empty());
    }
}
