//! Who owns a tunnel container: this machine's name, the owning process's id and its start
//! time, as a label. A process killed outright (SIGKILL, a crash) cannot remove its tunnels;
//! the next tunnel opened on the same machine removes those whose owner is gone. The start
//! time tells a live owner from a new process that was given the same id.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;

/// The label that names the owner: `HOST:PID:START`.
pub const OWNER_LABEL: &str = "io.loadtest.tunnel.owner";

/// This process, as [`OWNER_LABEL`] names it; `None` where `/proc` does not tell a process's
/// start time (then no tunnel is ever swept as orphaned).
pub fn this_process() -> Option<String> {
    let pid = std::process::id();
    Some(format!("{}:{pid}:{}", host_name()?, start_time(pid)?))
}

/// Whether the owner `label` names is a process of this machine that is gone.
pub fn is_gone(label: &str) -> bool {
    let mut parts = label.rsplitn(3, ':');
    let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(pid), Some(ours)) = (pid.parse::<u32>(), host_name()) else {
        return false;
    };
    // Another machine's process (a shared Docker engine) is not ours to judge.
    host == ours && start_time(pid).is_none_or(|now| now.to_string() != start)
}

/// Removes the tunnel containers whose owner is gone; returns their names. Errors are not the
/// caller's concern: a sweep that fails leaves what it found.
pub async fn sweep(docker: &Docker) -> Vec<String> {
    let filters = HashMap::from([("label".to_owned(), vec![OWNER_LABEL.to_owned()])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(containers) = docker.list_containers(Some(options)).await else {
        return Vec::new();
    };
    let mut swept = Vec::new();
    for container in containers {
        let owner = container
            .labels
            .as_ref()
            .and_then(|labels| labels.get(OWNER_LABEL));
        let name = container
            .names
            .as_ref()
            .and_then(|names| names.first())
            .map(|name| name.trim_start_matches('/').to_owned());
        if let (Some(owner), Some(name)) = (owner, name)
            && is_gone(owner)
            && super::remove(docker, &name).await.is_ok()
        {
            swept.push(name);
        }
    }
    swept
}

fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_owned())
}

/// The process's start time in clock ticks after boot (`/proc/PID/stat`'s 22nd field), or
/// `None` when there is no such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_an_ended_one_is_gone() {
        let me = this_process().expect("Linux tells a process's start time");
        assert!(!is_gone(&me), "{me}");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let host = host_name().unwrap();
        assert!(is_gone(&format!("{host}:{pid}:12345")));
        // The same id, another start time: a new process, and the owner is gone.
        let (pid, start) = (std::process::id(), start_time(std::process::id()).unwrap());
        assert!(is_gone(&format!("{host}:{pid}:{}", start + 1)));
        // Another machine's, or a label that is not ours: left alone.
        assert!(!is_gone(&format!("elsewhere-{host}:{pid}:1")));
        assert!(!is_gone("garbage"));
    }
}
