//! The Compose command line on one project and file: `docker compose` where the plugin is
//! installed, else docker-compose v1. The file is the repository's `docker/compose.load.yml`
//! when loadgen runs inside the repository, else the copy built into the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, bail};

use super::ProjectArgs;

/// The load environment's compose file, for a loadgen that runs outside the repository.
const EMBEDDED: &str = include_str!("../../../../docker/compose.load.yml");
/// Where the compose file sits in the repository.
const IN_REPOSITORY: &str = "docker/compose.load.yml";

/// One project of one compose file.
pub struct Compose {
    /// `docker compose` or `docker-compose`.
    program: Vec<&'static str>,
    /// The compose file.
    pub file: PathBuf,
    /// The project's name.
    pub project: String,
}

impl Compose {
    /// The Compose CLI and the file for `args`; the embedded file goes to `state`.
    pub fn find(args: &ProjectArgs, state: &Path) -> anyhow::Result<Self> {
        let program = program()?;
        let file = match &args.file {
            Some(file) if file.is_file() => file.clone(),
            Some(file) => bail!("--compose-file {}: no such file", file.display()),
            None => match in_repository() {
                Some(file) => file,
                None => {
                    std::fs::create_dir_all(state)
                        .with_context(|| format!("cannot create {}", state.display()))?;
                    let file = state.join("compose.load.yml");
                    std::fs::write(&file, EMBEDDED)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    file
                }
            },
        };
        Ok(Self {
            program,
            file,
            project: args.project.clone(),
        })
    }

    /// A command of this project and file.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.program[0]);
        command
            .args(&self.program[1..])
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&self.file)
            .args(args);
        command
    }

    /// The command line, for messages that tell the user what to run.
    pub fn describe(&self, args: &[&str]) -> String {
        format!(
            "{} -p {} -f {} {}",
            self.program.join(" "),
            self.project,
            self.file.display(),
            args.join(" ")
        )
    }

    /// Runs a command, its output captured; fails with its message.
    fn output(&self, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
        let mut command = self.command(args);
        command.envs(env.iter().copied()).stdin(Stdio::null());
        let output = command
            .output()
            .with_context(|| format!("cannot run {}", self.program.join(" ")))?;
        if !output.status.success() {
            let said = String::from_utf8_lossy(&output.stderr);
            let hint = if said.contains("port is already allocated")
                || said.contains("address already in use")
            {
                "\nthe API's port is taken: give --api-port another one (0: any free port)"
            } else {
                ""
            };
            bail!(
                "`{}` failed ({}):\n{}{hint}",
                self.describe(args),
                output.status,
                said.trim_end()
            );
        }
        Ok(output)
    }

    /// Fails naming every image of `services` that is not on this machine, with the command
    /// that builds it: nothing is pulled.
    pub fn check_images(&self, services: &[&str]) -> anyhow::Result<()> {
        let config = self.output(&["config"], &[])?;
        let images = service_images(&String::from_utf8_lossy(&config.stdout));
        let mut missing = Vec::new();
        for service in services {
            let Some(image) = images.iter().find(|(s, _)| s == service).map(|(_, i)| i) else {
                bail!(
                    "{}: no service {service} with an image: is it the load environment's file?",
                    self.file.display()
                );
            };
            let present = Command::new("docker")
                .args(["image", "inspect", "--format", "{{.Id}}", image])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("cannot run docker: is Docker installed and its engine running?")?
                .success();
            if !present {
                missing.push(format!("  {image} ({service}): {}", how_to_build(service)));
            }
        }
        if !missing.is_empty() {
            bail!(
                "images missing (loadgen env pulls nothing):\n{}",
                missing.join("\n")
            );
        }
        Ok(())
    }

    /// Starts `services` in the background; Compose waits for the health checks that their
    /// `depends_on` asks for.
    pub fn up(&self, services: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut args = vec!["up", "-d", "--no-build"];
        args.extend_from_slice(services);
        self.output(&args, env)?;
        Ok(())
    }

    /// `http://ADDRESS:PORT` where the project publishes the API's `port`.
    pub fn api_host(&self, port: u16) -> anyhow::Result<String> {
        let port = port.to_string();
        let output = self.output(&["port", "api", &port], &[])?;
        let published = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let Some((address, port)) = published.rsplit_once(':') else {
            bail!(
                "project {}: the api service publishes no port {port} (is it running? `{}`)",
                self.project,
                self.describe(&["ps"])
            );
        };
        let address = if address == "0.0.0.0" || address.is_empty() {
            "127.0.0.1"
        } else {
            address
        };
        Ok(format!("http://{address}:{port}"))
    }

    /// Removes the project's containers, networks and volumes (of this project only).
    pub fn down(&self) -> anyhow::Result<()> {
        self.output(&["down", "-v", "--remove-orphans", "-t", "5"], &[])?;
        Ok(())
    }
}

/// `docker compose` if the plugin answers, else `docker-compose`.
fn program() -> anyhow::Result<Vec<&'static str>> {
    let answers = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if answers("docker", &["compose", "version"]) {
        Ok(vec!["docker", "compose"])
    } else if answers("docker-compose", &["version"]) {
        Ok(vec!["docker-compose"])
    } else {
        bail!(
            "neither `docker compose` nor `docker-compose` runs here: install Docker Compose \
             (e.g. apt-get install docker-compose)"
        )
    }
}

/// The repository's compose file, found from the current folder upwards (relative to it, for
/// shorter messages).
fn in_repository() -> Option<PathBuf> {
    let here = std::env::current_dir().ok()?;
    let file = here
        .ancestors()
        .map(|dir| dir.join(IN_REPOSITORY))
        .find(|file| file.is_file())?;
    Some(
        file.strip_prefix(&here)
            .map_or(file.clone(), Path::to_path_buf),
    )
}

/// `(service, image)` of each service in `docker compose config`'s output.
fn service_images(config: &str) -> Vec<(String, String)> {
    let mut images = Vec::new();
    let mut in_services = false;
    let mut service = None;
    for line in config.lines() {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 0 {
            in_services = text == "services:";
            service = None;
        } else if in_services && indent == 2 && text.ends_with(':') {
            service = Some(text.trim_end_matches(':').to_owned());
        } else if in_services
            && indent == 4
            && let (Some(service), Some(image)) = (&service, text.strip_prefix("image: "))
        {
            images.push((service.clone(), image.trim_matches(['\'', '"']).to_owned()));
        }
    }
    images
}

/// What builds the image of `service` on a machine that cannot pull.
fn how_to_build(service: &str) -> &'static str {
    match service {
        "postgres" => {
            "docker/standins/build.sh builds a stand-in: then set \
             POSTGRES_IMAGE=loadtest/postgres-standin:latest (or docker pull postgres:16 where \
             pulling works)"
        }
        "redis" => {
            "docker/standins/build.sh builds a stand-in: then set \
             REDIS_IMAGE=loadtest/redis-standin:latest (or docker pull redis:7 where pulling \
             works)"
        }
        _ => {
            "build it with `LOADTEST_IMAGES=testbed docker/build.sh [TAG]` (the tag: $TAG, default latest)"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_read_from_the_config_of_each_service() {
        let config = "networks:\n  load: {}\nservices:\n  api:\n    depends_on:\n      postgres:\n        condition: service_healthy\n    image: loadtest/testbed:latest\n  postgres:\n    environment:\n      image: not-this\n    image: 'postgres:16'\nversion: '3'\n";
        assert_eq!(
            service_images(config),
            [
                ("api".to_owned(), "loadtest/testbed:latest".to_owned()),
                ("postgres".to_owned(), "postgres:16".to_owned()),
            ]
        );
    }

    #[test]
    fn the_embedded_file_is_the_load_environment() {
        for service in super::super::SERVICES {
            assert!(EMBEDDED.contains(&format!("\n  {service}:\n")), "{service}");
        }
        assert!(EMBEDDED.contains("127.0.0.1:${API_PORT:-}:8000"));
    }
}
