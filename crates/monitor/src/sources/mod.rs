//! One file per source, each behind [`crate::source::Source`], and [`SourcesConfig`]: which
//! sources to build, shared by the `monitor` binary and loadgen's in-process monitor so that
//! both watch the same things the same way.

pub mod docker;
pub mod host;
pub mod postgres;
pub mod profiles;
pub mod redis;

use crate::source::Source;

/// Which sources to sample, resolved from flags or built by a program.
#[derive(Debug, Clone, Default)]
pub struct SourcesConfig {
    /// Containers to watch.
    pub docker: Option<docker::Selector>,
    /// PostgreSQL to watch: its URL, and whether to count one database or the server.
    pub postgres: Option<(String, postgres::Scope)>,
    /// Redis to watch: its URL and the lists whose length to read.
    pub redis: Option<(String, Vec<redis::Queue>)>,
    /// The host, with the capacities its disk and network rates are judged against.
    pub host: Option<host::Capacity>,
    /// The API's and the workers' Python processes, sampled with py-spy.
    pub profiles: Option<profiles::Profiling>,
}

impl SourcesConfig {
    /// Whether anything is to be watched.
    pub fn is_empty(&self) -> bool {
        self.docker.is_none()
            && self.postgres.is_none()
            && self.redis.is_none()
            && self.host.is_none()
            && self.profiles.is_none()
    }

    /// The sources, in a fixed order (docker, postgres, redis, host, profiles).
    pub fn build(&self) -> Vec<Box<dyn Source>> {
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        if let Some(selector) = &self.docker {
            sources.push(Box::new(docker::Docker::new(selector.clone())));
        }
        if let Some((url, scope)) = &self.postgres {
            sources.push(Box::new(postgres::Postgres::new(url, *scope)));
        }
        if let Some((url, queues)) = &self.redis {
            sources.push(Box::new(redis::Redis::new(url, queues.clone())));
        }
        if let Some(capacity) = self.host {
            sources.push(Box::new(host::Host::new(capacity)));
        }
        if let Some(profiling) = self.profiles {
            sources.push(Box::new(profiles::Profiles::new(profiling)));
        }
        sources
    }
}
