//! `--stack compose:NAME` on a real Compose project: the testbed as the API and as a separate
//! worker (jobs taken from the Redis queue), the PostgreSQL and Redis stand-ins, under a
//! project name of the test's own. With that one flag and no other monitor flag, the run is
//! watched whole; a database whose port is not published is reached through a helper
//! container; credentials that cannot be read are said, and the run goes on. Secrets planted
//! in the containers' environment appear in no output.

use std::path::Path;
use std::process::Output;

use crate::docker::{Images, Standins, docker_output};
use crate::support::scenario;

/// Secrets planted in the containers' environment: none may reach any output.
const PG_PASSWORD: &str = "planted-pg-Secret-93xq";
const S3_SECRET: &str = "planted-s3-Secret-51vz";

/// How the project is set up.
#[derive(Clone, Copy, PartialEq)]
enum Variant {
    /// PostgreSQL and Redis publish their ports on loopback.
    Published,
    /// Neither does: only the project's network reaches them.
    Unpublished,
    /// PostgreSQL's password is a file inside its container, and the API keeps its data in
    /// memory: no credentials anywhere in the environment.
    PasswordInFile,
}

/// A Compose project of the test's own, taken down (with its volumes) on drop.
struct Project {
    name: String,
    dir: tempfile::TempDir,
    _images: Images,
    _standins: Standins,
}

impl Project {
    /// Writes the compose file for `variant`, starts PostgreSQL, Redis and the API (waiting
    /// for each to answer), then the worker.
    async fn start(prefix: &str, variant: Variant) -> Self {
        let images = Images::hold();
        let standins = Standins::hold();
        let dir = tempfile::tempdir().unwrap();
        let publish = |port: u16| match variant {
            Variant::Unpublished => String::new(),
            _ => format!("    ports: [\"127.0.0.1::{port}\"]\n"),
        };
        let (postgres_password, api_database) = match variant {
            Variant::PasswordInFile => {
                std::fs::write(dir.path().join("pg-password"), PG_PASSWORD).unwrap();
                (
                    "      POSTGRES_PASSWORD_FILE: /run/pg-password\n    volumes: [\"./pg-password:/run/pg-password:ro\"]\n".to_owned(),
                    String::new(),
                )
            }
            _ => (
                format!("      POSTGRES_PASSWORD: {PG_PASSWORD}\n"),
                format!("      DATABASE_URL: postgres://app:{PG_PASSWORD}@postgres:5432/videos\n"),
            ),
        };
        let app_env = format!(
            "      TESTBED_LISTEN: 0.0.0.0:8000\n{api_database}      REDIS_URL: redis://redis:6379/1\n      AWS_SECRET_ACCESS_KEY: {S3_SECRET}\n"
        );
        let compose = format!(
            "services:
  postgres:
    image: {postgres}
    environment:
      POSTGRES_USER: app
      POSTGRES_DB: videos
{postgres_password}{postgres_ports}    healthcheck:
      test: [\"CMD\", \"pg_isready\", \"-h\", \"127.0.0.1\", \"-U\", \"app\", \"-d\", \"videos\"]
      interval: 1s
      retries: 60
  redis:
    image: {redis}
{redis_ports}    healthcheck:
      test: [\"CMD\", \"redis-cli\", \"ping\"]
      interval: 1s
      retries: 60
  api:
    image: {testbed}
    environment:
{app_env}      TESTBED_WORKERS: \"0\"
    ports: [\"127.0.0.1::8000\"]
    depends_on:
      postgres: {{ condition: service_healthy }}
      redis: {{ condition: service_healthy }}
  worker:
    image: {testbed}
    environment:
{app_env}      TESTBED_JOB_SECONDS: 200ms
      TESTBED_JOB_MODE_FOR: audio_overlay=stuck
",
            postgres = standins.postgres(),
            redis = standins.redis(),
            testbed = images.testbed(),
            postgres_ports = publish(5432),
            redis_ports = publish(6379),
        );
        std::fs::write(dir.path().join("compose.yml"), compose).unwrap();
        let project = Self {
            name: format!("{prefix}-{}", std::process::id()),
            dir,
            _images: images,
            _standins: standins,
        };
        project.compose(&["up", "-d", "api"]);
        let api = project.api_url();
        until_answers(&format!("{api}/api/v1/health/")).await;
        // The worker after the API: the two would create the tables at the same time.
        project.compose(&["up", "-d", "worker"]);
        project
    }

    /// `docker-compose -p NAME ARGS`, which must succeed.
    fn compose(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("docker-compose")
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(self.dir.path().join("compose.yml"))
            .args(args)
            .output()
            .expect("docker-compose (scripts/test.sh installs it)");
        assert!(
            output.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The API's URL on loopback.
    fn api_url(&self) -> String {
        let port = self.compose(&["port", "api", "8000"]);
        format!("http://{}", port.trim())
    }

    /// The containers on the project's network (its own, and any helper left behind).
    fn on_network(&self) -> Vec<String> {
        let network = format!("{}_default", self.name.replace('-', ""));
        let output = docker_output(&[
            "network",
            "inspect",
            &network,
            "--format",
            "{{range .Containers}}{{.Name}} {{end}}",
        ]);
        let output = if output.status.success() {
            output
        } else {
            // Compose v1 keeps the dashes of a project name.
            docker_output(&[
                "network",
                "inspect",
                &format!("{}_default", self.name),
                "--format",
                "{{range .Containers}}{{.Name}} {{end}}",
            ])
        };
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker-compose")
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(self.dir.path().join("compose.yml"))
            .args(["down", "-v", "-t", "2"])
            .output();
    }
}

/// Waits (2 minutes at most, a bound only) until `url` answers 2xx.
async fn until_answers(url: &str) {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let answer = client.get(url).send().await;
        if answer.as_ref().is_ok_and(|a| a.status().is_success()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{url}: {answer:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// loadgen with `args`, run to its end (3 minutes at most, a bound only).
async fn loadgen(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(std::time::Duration::from_secs(180), run)
        .await
        .expect("loadgen ends by itself")
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every file under `dir`, read as text (lossily).
fn files_text(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    all
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [PG_PASSWORD, S3_SECRET] {
        assert!(
            !text.contains(secret),
            "{what} shows a planted secret: {text}"
        );
    }
}

/// The values of `source` in every tick of a report's backend where it was up.
fn values<'a>(report: &'a serde_json::Value, source: &str) -> Vec<&'a serde_json::Value> {
    report["backend"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["sources"][source]["up"] == true)
        .map(|t| &t["sources"][source]["values"])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flag_watches_a_compose_stack_whole_and_no_secret_leaks() {
    let project = Project::start("lg-stack", Variant::Published).await;
    let api = project.api_url();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("run.json");
    let csv = out.path().join("run");
    let html = out.path().join("run.html");
    let stack = format!("compose:{}", project.name);
    let jobs = scenario("jobs.toml");
    let ran = loadgen(&[
        "--headless",
        "-H",
        &api,
        "-f",
        &jobs,
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        "12s",
        "--job-sample",
        "1",
        "--fixtures",
        crate::support::fixtures().to_str().unwrap(),
        "--stack",
        &stack,
        "--report-json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ])
    .await;
    let said = text(&ran);
    assert!(matches!(ran.status.code(), Some(0 | 1)), "{said}");
    // The discovery report, before the run: where each part is and where its secrets came from.
    assert!(
        said.contains(&format!("stack {stack}: 4 containers")),
        "{said}"
    );
    assert!(
        said.contains("PostgreSQL: postgres://app:***@127.0.0.1:")
            && said.contains(
                "address and password from the api container's environment (DATABASE_URL)"
            ),
        "{said}"
    );
    assert!(said.contains("Celery queue celery on db 1"), "{said}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Every container, PostgreSQL's clients server-wide, the queue on the broker's database.
    let containers = values(&report, "docker");
    let seen: std::collections::BTreeSet<&str> = containers
        .iter()
        .flat_map(|v| v["containers"].as_object().unwrap().keys())
        .map(String::as_str)
        .collect();
    for service in ["api", "worker", "postgres", "redis"] {
        assert!(
            seen.iter()
                .any(|name| name.contains(&format!("{service}_1"))
                    || name.contains(&format!("{service}-1"))),
            "no {service} container among {seen:?}"
        );
    }
    let postgres = values(&report, "postgres");
    assert!(
        postgres.iter().any(|v| v["clients"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["database"] == "videos"))),
        "no PostgreSQL clients sampled: {postgres:?}"
    );
    let redis = values(&report, "redis");
    assert!(
        redis.iter().any(|v| v["lists"].get("1/celery").is_some()),
        "no sample of the queue on db 1: {redis:?}"
    );
    // The worker container's log, quoted in the job finding it explains.
    let findings = report["analysis"]["findings"].as_array().unwrap();
    let jobs = findings
        .iter()
        .find(|f| f["rule"] == "jobs.unfinished")
        .unwrap_or_else(|| panic!("no jobs.unfinished finding: {findings:#?}"));
    let evidence = jobs["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("worker") && evidence.contains("Task raised before it set its status"),
        "{evidence}"
    );
    assert!(
        !evidence.contains('\u{1b}'),
        "colour codes quoted: {evidence:?}"
    );
    assert_no_secret("the run's console", &said);
    assert_no_secret("the run's files", &files_text(out.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_servers_are_reached_through_a_helper_container_that_goes_away() {
    let project = Project::start("lg-stack-tunnel", Variant::Unpublished).await;
    let stack = format!("compose:{}", project.name);
    let reads = scenario("reads.toml");
    let dry = loadgen(&[
        "--dry-run",
        "--headless",
        "-H",
        &project.api_url(),
        "-f",
        &reads,
        "--stack",
        &stack,
    ])
    .await;
    let said = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{said}");
    assert_eq!(
        said.matches("through a helper container on").count(),
        2,
        "PostgreSQL and Redis through helpers: {said}"
    );
    assert_no_secret("the dry run", &said);
    // The monitor, with the same one flag: PostgreSQL sampled through the helper, served on its
    // endpoint without a secret.
    let out = tempfile::tempdir().unwrap();
    let ticks = out.path().join("ticks.jsonl");
    let monitor = Path::new(env!("CARGO_BIN_EXE_loadgen")).with_file_name("monitor");
    let watched = tokio::process::Command::new(&monitor)
        .args([
            "--stack",
            &stack,
            "--duration",
            "4s",
            "--quiet",
            "--no-profiling",
            "--out",
        ])
        .arg(&ticks)
        .kill_on_drop(true)
        .output();
    let watched = tokio::time::timeout(std::time::Duration::from_secs(120), watched)
        .await
        .expect("the monitor ends by itself")
        .unwrap();
    let said = text(&watched);
    assert_eq!(watched.status.code(), Some(0), "{said}");
    let lines = std::fs::read_to_string(&ticks).unwrap();
    let up = |source: &str| {
        lines
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .any(|t| t["sources"][source]["up"] == true)
    };
    assert!(up("postgres") && up("redis"), "{said}\n{lines}");
    assert_no_secret("the monitor's console", &said);
    assert_no_secret("the monitor's ticks", &lines);
    // The helpers went with the monitor.
    let left = project.on_network();
    assert_eq!(
        left.len(),
        4,
        "containers left on the project's network: {left:?}"
    );

    // The web UI's start form takes the stack; its pages and answers show no secret.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["-H", &project.api_url(), "-f", &scenario("reads.toml")])
        .args(["--web-port", "0", "--no-profiling"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ui = crate::support::web_ui_url(&mut child).await;
    let client = reqwest::Client::new();
    let started: serde_json::Value = client
        .post(format!("{ui}/swarm"))
        .form(&[
            ("user_count", "2"),
            ("spawn_rate", "2"),
            ("stack", stack.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(started["success"], true, "{started}");
    // The run the form started watches the stack's PostgreSQL through its helper: awaited in
    // the live report (the first sample may come seconds after the first requests on a busy
    // machine), then the run is stopped.
    crate::support::poll_json(&client, &format!("{ui}/api/stats"), |s| {
        s["report"]["backend"].is_array() && !values(&s["report"], "postgres").is_empty()
    })
    .await;
    client.post(format!("{ui}/stop")).send().await.unwrap();
    for page in [
        "/",
        "/stats/requests",
        "/api/logs",
        "/api/report.json",
        "/api/report.html",
    ] {
        let body = client
            .get(format!("{ui}{page}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_no_secret(page, &body);
    }
    crate::support::send("INT", &child);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await;
    // Its helpers went with it too.
    let left = project.on_network();
    assert_eq!(left.len(), 4, "left on the project's network: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_that_cannot_be_read_are_said_and_the_run_goes_on() {
    let project = Project::start("lg-stack-nocreds", Variant::PasswordInFile).await;
    let stack = format!("compose:{}", project.name);
    let reads = scenario("reads.toml");
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("run.json");
    let ran = loadgen(&[
        "--headless",
        "-H",
        &project.api_url(),
        "-f",
        &reads,
        "-u",
        "2",
        "-t",
        "4s",
        "--stack",
        &stack,
        "--report-json",
        json.to_str().unwrap(),
    ])
    .await;
    let said = text(&ran);
    assert!(matches!(ran.status.code(), Some(0 | 1)), "{said}");
    assert!(
        said.contains("its password is in a file inside the container (/run/pg-password)")
            && said.contains("give its URL with --monitor-postgres"),
        "{said}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(!values(&report, "docker").is_empty() && !values(&report, "redis").is_empty());
    assert!(values(&report, "postgres").is_empty());
    assert!(
        report["steady_total"]["requests"].as_u64() > Some(0),
        "{said}"
    );
    assert_no_secret("the run's console", &said);
    assert_no_secret("the run's files", &files_text(out.path()));
}
