//! Who owns a tunnel container: this machine's boot, PID namespace and name, the owning
//! user, the owning process's id and its start time, as a label. A process killed outright
//! (SIGKILL, a crash) cannot remove its tunnels; the next tunnel opened by the same user in the
//! same PID namespace of the same boot removes those whose owner is gone. Anything else (another
//! machine on a shared engine, a container's namespace, another user's processes that `/proc`
//! may hide) is never judged. The start time tells a live owner from a new process that was
//! given the same id.

use std::collections::HashMap;

use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;

/// The label that names the owner: `HOST:BOOT_ID:PID_NAMESPACE:UID:PID:START`.
pub const OWNER_LABEL: &str = "io.loadtest.tunnel.owner";

/// Where this process runs, as the label's first four parts; `None` where `/proc` does not
/// tell (then no tunnel is ever swept as orphaned).
fn here() -> Option<String> {
    let host = read_trimmed("/proc/sys/kernel/hostname")?;
    let boot = read_trimmed("/proc/sys/kernel/random/boot_id")?;
    // `pid:[4026531836]`: the namespace's inode.
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let namespace: String = namespace
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_owned();
    let clean = |part: &str| !part.is_empty() && !part.contains(':');
    [&host, &boot, &namespace, &uid]
        .iter()
        .all(|p| clean(p))
        .then(|| format!("{host}:{boot}:{namespace}:{uid}"))
}

/// This process, as [`OWNER_LABEL`] names it.
pub fn this_process() -> Option<String> {
    let pid = std::process::id();
    Some(format!("{}:{pid}:{}", here()?, start_time(pid)?))
}

/// Whether the owner `label` names is a process of this boot, PID namespace and user that is
/// gone.
pub fn is_gone(label: &str) -> bool {
    let Some((place, process)) = label.rsplit_once(':').and_then(|(rest, start)| {
        let (place, pid) = rest.rsplit_once(':')?;
        Some((place, (pid, start)))
    }) else {
        return false;
    };
    let (Ok(pid), Some(ours)) = (process.0.parse::<u32>(), here()) else {
        return false;
    };
    place == ours && start_time(pid).is_none_or(|now| now.to_string() != process.1)
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

fn read_trimmed(path: &str) -> Option<String> {
    Some(std::fs::read_to_string(path).ok()?.trim().to_owned())
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
        let place = here().unwrap();
        assert!(is_gone(&format!("{place}:{pid}:12345")));
        // The same id, another start time: a new process, and the owner is gone.
        let (pid, start) = (std::process::id(), start_time(std::process::id()).unwrap());
        assert!(is_gone(&format!("{place}:{pid}:{}", start + 1)));
        // Another machine, boot, namespace or user, or a label that is not ours: left alone.
        let (host, rest) = place.split_once(':').unwrap();
        assert!(!is_gone(&format!("other-{host}:{rest}:{pid}:1")));
        let uid_elsewhere = format!("{}9", place);
        assert!(!is_gone(&format!("{uid_elsewhere}:{pid}:1")));
        assert!(
            !is_gone(&format!("{host}:{pid}:1")),
            "the old form is not judged"
        );
        assert!(!is_gone("garbage"));
    }
}
