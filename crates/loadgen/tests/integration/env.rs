//! `loadgen env up` → `env seed` → a short run with the seeded accounts → `env down`, with real
//! Docker and real Compose, under a project of the test's own: the run's start-up makes no
//! register and no login request (a run without the accounts, at the same time, makes one of
//! each per user), and `down` leaves no container, network or volume of the project behind.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Instant;

use serde_json::Value;

use crate::docker::{Images, docker, docker_output};

/// The project `up` made, and the stand-in images this test built: `env down` and removed
/// whatever the test's outcome.
struct Environment {
    project: String,
    state: tempfile::TempDir,
    images: Images,
    standins: String,
}

impl Environment {
    /// `loadgen env ARGS --project P`, from the repository (where the compose file is found),
    /// with this test's images.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
        command
            .arg("env")
            .args(args)
            .args(["--project", &self.project])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .env("LOADGEN_ENV_DIR", self.state.path())
            .env("TAG", &self.images.tag)
            .env(
                "POSTGRES_IMAGE",
                format!("loadtest/postgres-standin:{}", self.standins),
            )
            .env(
                "REDIS_IMAGE",
                format!("loadtest/redis-standin:{}", self.standins),
            )
            .kill_on_drop(true);
        command
    }

    /// Runs `loadgen env ARGS`; its stdout, after asserting it succeeded.
    async fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().await.unwrap();
        let said = text(&output);
        assert!(output.status.success(), "loadgen env {args:?}: {said}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What carries the project's label: `docker KIND ls` rows.
    fn labelled(&self, kind: &str) -> Vec<String> {
        let label = format!("label=com.docker.compose.project={}", self.project);
        let listed = match kind {
            "container" => docker(&["ps", "-a", "-q", "--filter", &label]),
            _ => docker(&[kind, "ls", "-q", "--filter", &label]),
        };
        listed.lines().map(str::to_owned).collect()
    }
}

impl Drop for Environment {
    fn drop(&mut self) {
        let down = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(["env", "down", "--project", &self.project])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
            .env("LOADGEN_ENV_DIR", self.state.path())
            .output();
        if let Ok(down) = down
            && !down.status.success()
        {
            eprintln!("loadgen env down: {}", text(&down));
        }
        let _ = docker_output(&[
            "rmi",
            "-f",
            &format!("loadtest/postgres-standin:{}", self.standins),
            &format!("loadtest/redis-standin:{}", self.standins),
        ]);
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The value printed after `flag ` in `loadgen env`'s output.
fn printed(output: &str, flag: &str) -> String {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{flag} ")))
        .unwrap_or_else(|| panic!("no {flag} in: {output}"))
        .to_owned()
}

/// `(name, requests)` of a report's start-up rows, by `METHOD name`.
fn startup(report: &Value) -> Vec<(String, u64)> {
    report["startup"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                format!(
                    "{} {}",
                    row["method"].as_str().unwrap(),
                    row["name"].as_str().unwrap()
                ),
                row["requests"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn count(rows: &[(String, u64)], request: &str) -> u64 {
    rows.iter()
        .filter(|(name, _)| name == request)
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_up_seed_run_down_leaves_nothing_behind_and_seeded_users_skip_bcrypt() {
    let began = Instant::now();
    let images = Images::hold();
    // Stand-ins of this test's own tag: another test removes the ones of the shared tag.
    let standins = format!("{}-env", images.tag);
    let built = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/standins/build.sh"))
        .arg(&standins)
        .output()
        .unwrap();
    assert!(built.status.success(), "standins: {}", text(&built));
    let env = Environment {
        project: format!("lg-env-{}", std::process::id()),
        state: tempfile::tempdir().unwrap(),
        images,
        standins,
    };
    let fixtures = crate::support::fixtures().to_str().unwrap().to_owned();

    let up = env.run(&["up", "--api-port", "0"]).await;
    let host = printed(&up, "--host");
    assert!(host.starts_with("http://127.0.0.1:"), "{up}");
    assert_eq!(
        printed(&up, "--stack"),
        format!("compose:{}", env.project),
        "{up}"
    );
    let upped = began.elapsed();

    let seeded = env
        .run(&["seed", "--accounts", "4", "--fixtures", &fixtures])
        .await;
    let accounts = PathBuf::from(printed(&seeded, "--user-data"));
    assert!(accounts.starts_with(env.state.path()), "{seeded}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&accounts).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the accounts file holds passwords");
    }
    // The file is one `scenario check` accepts against the built-in scenario.
    let builtin = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(builtin.path(), loadgen::scenario::BUILTIN).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["scenario", "check", "--fixtures", &fixtures, "--user-data"])
        .arg(&accounts)
        .arg(builtin.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));

    // The same short run, with the seeded accounts and without, at the same time.
    let out = tempfile::tempdir().unwrap();
    let run = |name: &str, user_data: Option<&Path>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadgen"));
        command
            .args(["--headless", "-H", &host, "-u", "4", "-r", "4", "-t", "5s"])
            .arg("--only-summary")
            .kill_on_drop(true)
            .args(["--fixtures", &fixtures, "--report-json"])
            .arg(out.path().join(name));
        if let Some(path) = user_data {
            command.arg("--user-data").arg(path);
        }
        command.output()
    };
    let (with, without) =
        tokio::join!(run("seeded.json", Some(&accounts)), run("plain.json", None));
    let reports: Vec<(Value, String)> = [(with, "seeded.json"), (without, "plain.json")]
        .into_iter()
        .map(|(output, name)| {
            let output = output.unwrap();
            // 0 every target met, 1 one missed (a debug build on a busy machine may).
            assert!(
                matches!(output.status.code(), Some(0 | 1)),
                "{name}: {}",
                text(&output)
            );
            let report =
                serde_json::from_str(&std::fs::read_to_string(out.path().join(name)).unwrap())
                    .unwrap();
            (report, text(&output))
        })
        .collect();
    let (seeded_run, plain_run) = (startup(&reports[0].0), startup(&reports[1].0));
    println!("start-up with seeded accounts: {seeded_run:?}; without: {plain_run:?}");
    let register = "POST /api/v1/auth/register";
    let login = "POST /api/v1/auth/login";
    let upload = "POST /api/v1/files/upload";
    assert_eq!(
        (count(&plain_run, register), count(&plain_run, login)),
        (4, 4),
        "without the accounts every user registers and logs in: {}",
        reports[1].1
    );
    assert_eq!(
        (
            count(&seeded_run, register),
            count(&seeded_run, login),
            count(&seeded_run, upload)
        ),
        (0, 0, 0),
        "the seeded users registered, logged in or uploaded: {}",
        reports[0].1
    );
    let steady = &reports[0].0["steady_total"];
    assert!(
        steady["requests"].as_u64().unwrap() > 0 && steady["failures"].as_u64() == Some(0),
        "the seeded users' own requests went through with their tokens: {steady}"
    );

    // What `up` made, then `down`: nothing of the project is left.
    let containers = env.labelled("container");
    assert_eq!(containers.len(), 3, "postgres, redis, api: {containers:?}");
    let mut volumes = env.labelled("volume");
    for container in &containers {
        let mounted = docker(&[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Name}} {{end}}",
            container,
        ]);
        volumes.extend(mounted.split_whitespace().map(str::to_owned));
    }
    let downed = env.run(&["down"]).await;
    assert!(downed.contains("removed"), "{downed}");
    for kind in ["container", "network", "volume"] {
        assert_eq!(env.labelled(kind), Vec::<String>::new(), "{kind}s left");
    }
    for volume in &volumes {
        assert!(
            !docker_output(&["volume", "inspect", volume])
                .status
                .success(),
            "volume {volume} of the project is left"
        );
    }
    assert!(
        !env.state.path().join(&env.project).exists(),
        "the accounts file is left"
    );
    println!(
        "env test: up in {:.1} s (images and stand-ins built), all in {:.1} s",
        upped.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}
