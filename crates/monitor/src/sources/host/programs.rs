//! What a program is to the grouping of processes, as data: the stack's programs by role,
//! the "boundaries" under which unrelated work starts (init, shells, sshd, tmux), and the
//! wrappers that only run another program. One table, so that a later `--stack` option can
//! add names without touching the logic.

use std::collections::HashMap;

use crate::sample::ProcessRole;

/// The stack's programs by role, as [`crate::sample::ProcessRole`] documents them.
const STACK: &[(ProcessRole, &[&str])] = &[
    (
        ProcessRole::Api,
        &[
            "uvicorn",
            "gunicorn",
            "hypercorn",
            "daphne",
            "granian",
            "testbed",
        ],
    ),
    // `celeryd` is how celery's processes title themselves when setproctitle is installed.
    (
        ProcessRole::Worker,
        &["celery", "celeryd", "rq", "dramatiq", "arq", "huey"],
    ),
    (
        ProcessRole::Database,
        &["postgres", "postmaster", "mysqld", "mariadbd", "mongod"],
    ),
    (
        ProcessRole::Broker,
        &[
            "redis-server",
            "valkey-server",
            "rabbitmq-server",
            "beam.smp",
            "memcached",
        ],
    ),
    (ProcessRole::Storage, &["minio"]),
    (
        ProcessRole::Proxy,
        &["nginx", "haproxy", "envoy", "traefik", "caddy"],
    ),
];

/// Programs that only run another one: a group they top is named after what they run.
const WRAPPERS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "fish",
    "ash",
    "timeout",
    "nohup",
    "env",
    "setsid",
    "xargs",
    "docker-init",
    "tini",
    "dumb-init",
];

/// Programs under which unrelated work starts, besides the wrappers: each of their children
/// tops a group of its own.
const HOSTS: &[&str] = &[
    "init",
    "systemd",
    "kthreadd",
    "sudo",
    "su",
    "sshd",
    "sshd-session",
    "tmux",
    "screen",
    "supervisord",
    "runsv",
    "make",
];

/// Boundaries known by a prefix (`containerd-shim-runc-v2`, cut to 15 bytes by the kernel).
const HOST_PREFIXES: &[&str] = &["containerd-shim"];

/// The table the grouping reads.
#[derive(Debug, Clone)]
pub struct Programs {
    stack: HashMap<String, ProcessRole>,
}

impl Default for Programs {
    fn default() -> Self {
        let stack = STACK
            .iter()
            .flat_map(|(role, names)| names.iter().map(|n| ((*n).to_owned(), *role)))
            .collect();
        Self { stack }
    }
}

impl Programs {
    /// Adds a program of the stack (a later `--stack` option's way in).
    pub fn add(&mut self, name: &str, role: ProcessRole) {
        self.stack.insert(name.to_owned(), role);
    }

    /// The role of a program of the stack, by its name after [`super::group_name`].
    pub fn stack_role(&self, name: &str) -> Option<ProcessRole> {
        self.stack.get(name).copied()
    }

    /// A program under which unrelated work starts (pid 1 and 2 are boundaries whatever
    /// their name: the caller checks them).
    pub fn is_boundary(&self, name: &str) -> bool {
        self.is_wrapper(name)
            || HOSTS.contains(&name)
            || HOST_PREFIXES.iter().any(|p| name.starts_with(p))
    }

    /// A shell or an init wrapper: a group it tops is named after the program it runs.
    pub fn is_wrapper(&self, name: &str) -> bool {
        WRAPPERS.contains(&name)
    }
}

/// The program in a kernel `comm`: setproctitle writes titles such as `[celeryd: celery@h`
/// or `gunicorn: master [a` into it, `tmux` writes `tmux: server`.
pub fn program(comm: &str) -> &str {
    if !comm.contains(':') {
        return comm;
    }
    let bare = comm.trim_start_matches('[');
    bare.split(':').next().unwrap_or(bare).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_cut_to_their_program() {
        assert_eq!(program("[celeryd: celer"), "celeryd");
        assert_eq!(program("gunicorn: maste"), "gunicorn");
        assert_eq!(program("tmux: server"), "tmux");
        assert_eq!(program("stress-ng-cpu"), "stress-ng-cpu");
    }

    #[test]
    fn the_table_answers_roles_boundaries_and_wrappers() {
        let mut programs = Programs::default();
        assert_eq!(programs.stack_role("celeryd"), Some(ProcessRole::Worker));
        assert_eq!(programs.stack_role("beam.smp"), Some(ProcessRole::Broker));
        assert_eq!(programs.stack_role("ffmpeg"), None);
        programs.add("ffmpeg-api", ProcessRole::Api);
        assert_eq!(programs.stack_role("ffmpeg-api"), Some(ProcessRole::Api));
        assert!(programs.is_boundary("containerd-shim"));
        assert!(programs.is_boundary("bash") && programs.is_wrapper("bash"));
        assert!(programs.is_boundary("sshd") && !programs.is_wrapper("sshd"));
        assert!(!programs.is_boundary("cargo"));
    }
}
