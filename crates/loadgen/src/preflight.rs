//! Checks before the run, each failure one clear line: the host answers its health endpoint, the
//! fixtures the scenario uploads exist, and the open-file limit suits the user count.

use std::path::Path;
use std::time::Duration;

use crate::http::{Connection, Options, Payload, Target};

/// Fails unless `GET path` answers 2xx within 10 s.
pub async fn check_health(target: &Target, path: &str) -> Result<(), String> {
    let target = target.clone();
    let path = path.to_owned();
    crate::http::spawn_apart(move || async move {
        let url = format!("{}{path}", target.url);
        let options = Options {
            timeout: Duration::from_secs(10),
            ..Options::default()
        };
        let path = format!("{}{path}", target.base_path);
        let mut connection = Connection::new(std::rc::Rc::new(target), options);
        match connection.send(&http::Method::GET, &path, &[], &Payload::default()).await {
            Ok(answer) if (200..300).contains(&answer.status) => Ok(()),
            Ok(answer) => Err(format!("health check GET {url} answered {}: is this the FFmpeg API?", answer.status)),
            Err(error) => Err(format!("health check GET {url} failed: {error}; is the API running? (try `testbed --listen 127.0.0.1:8000`)")),
        }
    })
    .await
    .map_err(|e| format!("health check: {e}"))?
}

/// Fails naming the first fixture that is missing.
pub fn check_fixtures(dir: &Path, names: &[String]) -> Result<(), String> {
    for name in names {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(format!(
                "fixture {} is missing: run `fixtures-gen --out {}` (or pass --fixtures DIR)",
                path.display(),
                dir.display()
            ));
        }
    }
    Ok(())
}

/// Raises the soft open-file limit to what `users` need (one connection each, plus room
/// for job polls and the process itself); fails when the hard limit is too low.
pub fn raise_open_files(users: u64) -> Result<u64, String> {
    let needed = users.saturating_add(1024);
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    if soft >= needed {
        return Ok(soft);
    }
    if hard < needed {
        return Err(format!(
            "the open-file limit (hard {hard}) is below the {needed} that {users} users need: raise it (ulimit -Hn {needed}, or LimitNOFILE in systemd) or run fewer users"
        ));
    }
    rlimit::Resource::NOFILE
        .set(needed, hard)
        .map_err(|e| format!("cannot raise the open-file limit to {needed}: {e}"))?;
    Ok(needed)
}
