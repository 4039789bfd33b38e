//! The discovery report, printed before the run: what was found, how each part will be
//! watched, and what could not be, with the flag that fixes it. It shows where secrets came
//! from, never the secrets.

use std::fmt::Write as _;

use super::{Discovery, Reach};

impl Discovery {
    /// The report, one line per fact, each line starting with `prefix` (`loadgen: `).
    pub fn report(&self, prefix: &str) -> String {
        let mut out = String::new();
        let running = self.members.iter().filter(|m| m.state == "running").count();
        let _ = writeln!(
            out,
            "{prefix}stack compose:{}: {} containers ({running} running), all watched (stats)",
            self.project,
            self.members.len()
        );
        let width = self
            .members
            .iter()
            .map(|m| m.service_or_name().len())
            .max()
            .unwrap_or(0);
        let quoted = self.log_containers();
        for member in &self.members {
            let mut how = Vec::new();
            if quoted.contains(&member.name) {
                how.push("its logs quoted in the job findings");
            }
            if member.state != "running" {
                how.push("not running");
            }
            let published: Vec<String> = member
                .ports
                .iter()
                .filter_map(|p| p.published.map(|a| format!("{}→{a}", p.container)))
                .collect();
            let _ = writeln!(
                out,
                "{prefix}  {:<width$}  {:<14} {}{}{}",
                member.service_or_name(),
                member.role.to_string(),
                member.name,
                if published.is_empty() {
                    String::new()
                } else {
                    format!(", publishes {}", published.join(" "))
                },
                if how.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", how.join(", "))
                },
            );
        }
        let reach = |reach: &Reach| match reach {
            Reach::Published(address) => format!("through its published port {address}"),
            Reach::Tunnel { network, local } => {
                format!("through a helper container on {network} (here {local})")
            }
            Reach::AsWritten => "at the address the application uses".to_owned(),
        };
        if self.given.0 {
            let _ = writeln!(out, "{prefix}  PostgreSQL: as given on the command line");
        } else if let Some(postgres) = &self.postgres {
            let _ = writeln!(
                out,
                "{prefix}  PostgreSQL: {} {}, every database's clients; {}",
                postgres.shown(),
                reach(&postgres.reach),
                credentials_phrase(postgres),
            );
        }
        if self.given.1 {
            let _ = writeln!(out, "{prefix}  Redis: as given on the command line");
        } else if let Some(redis) = &self.redis {
            let queues: Vec<String> = self
                .queues
                .iter()
                .map(|q| format!("{} on db {}", q.name, q.db))
                .collect();
            let _ = writeln!(
                out,
                "{prefix}  Redis: {} {}; {}{}",
                redis.shown(),
                reach(&redis.reach),
                credentials_phrase(redis),
                match &self.queue_origin {
                    Some(origin) if !queues.is_empty() => format!(
                        "; Celery queue {} (the broker's database: {})",
                        queues.join(", "),
                        origin
                    ),
                    _ => String::new(),
                },
            );
        }
        if !self.problems.is_empty() {
            let _ = writeln!(out, "{prefix}  not watched:");
            for problem in &self.problems {
                let _ = writeln!(out, "{prefix}    {}: {}", problem.what, problem.fix);
            }
        }
        out
    }
}

/// "address and password from the api container's environment (DATABASE_URL)": where the
/// connection's address, and its password when it has one, came from.
fn credentials_phrase(endpoint: &super::Endpoint) -> String {
    let has_password = url::Url::parse(endpoint.url()).is_ok_and(|u| u.password().is_some());
    format!(
        "{} from the {} container's environment ({})",
        if has_password {
            "address and password"
        } else {
            "address"
        },
        endpoint.origin.container,
        endpoint.origin.variables.join(", ")
    )
}
