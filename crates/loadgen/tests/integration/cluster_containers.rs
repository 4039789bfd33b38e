//! A master and its workers in containers, as `docker/compose.load.yml` and the Kubernetes
//! manifests run them: each test creates its own network, with the testbed in a container on
//! it, and the load never leaves that network. The faults are real: a worker killed, a
//! worker's network cut then restored, the master killed, a worker with the wrong token.

use std::path::Path;

use crate::docker::{Images, Network, docker, exit_code, logs, until_logged};
use crate::support::scenario;

const TOKEN: &str = "container-test-token";

/// The testbed, a folder for the master's scenario and report, and the network they share.
struct Cluster {
    network: Network,
    images: Images,
    out: tempfile::TempDir,
    testbed: String,
}

impl Cluster {
    fn new(prefix: &str) -> Self {
        let images = Images::hold();
        let network = Network::create(prefix);
        let out = tempfile::tempdir().unwrap();
        std::fs::copy(scenario("reads.toml"), out.path().join("reads.toml")).unwrap();
        let testbed = network.run(
            "testbed",
            &["-e", "TESTBED_LISTEN=0.0.0.0:8000"],
            &images.testbed(),
            &[],
        );
        Self {
            network,
            images,
            out,
            testbed,
        }
    }

    /// A headless master on the network (host name `master` there), against the testbed,
    /// writing its JSON report to `out`; `options` go to docker, `args` to loadgen.
    fn master(&self, options: &[&str], args: &[&str]) -> String {
        let volume = format!("{}:/out", self.out.path().display());
        let host = format!("http://{}:8000", self.testbed);
        let mut all = vec![
            "--headless",
            "--master",
            "--master-bind-host",
            "0.0.0.0",
            "--cluster-token",
            TOKEN,
            "-H",
            &host,
            "-f",
            "/out/reads.toml",
            "--report-json",
            "/out/report.json",
            "--stats-interval",
            "1s",
        ];
        all.extend_from_slice(args);
        let mut docker_options = vec!["--network-alias", "master", "-v", &volume];
        docker_options.extend_from_slice(options);
        self.network
            .run("master", &docker_options, &self.images.loadgen(), &all)
    }

    /// A worker named `name` that finds its master by the host name `master`.
    fn worker(&self, name: &str, args: &[&str]) -> String {
        let mut all = vec![
            "--worker",
            "--master-host",
            "master",
            "--worker-name",
            name,
            "--threads",
            "1",
        ];
        if !args.contains(&"--cluster-token") {
            all.extend_from_slice(&["--cluster-token", TOKEN]);
        }
        all.extend_from_slice(args);
        self.network.run(name, &[], &self.images.loadgen(), &all)
    }

    fn report(&self) -> serde_json::Value {
        let path = Path::new(self.out.path()).join("report.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// Stops the testbed: the requests it answered in all, from its last line.
    async fn testbed_answered(&self) -> u64 {
        docker(&["stop", "-t", "30", &self.testbed]);
        let logs = logs(&self.testbed);
        logs.lines()
            .find_map(|line| {
                line.strip_prefix("testbed stopped: ")?
                    .strip_suffix(" requests answered")?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("the testbed's last line: {logs}"))
    }
}

/// The master's live table counts more than `n` requests in all.
pub fn counts_more_than(n: u64) -> impl Fn(&str) -> bool {
    move |logs: &str| {
        logs.lines().any(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some("Aggregated")
                && words
                    .next()
                    .and_then(|count| count.parse::<u64>().ok())
                    .is_some_and(|count| count > n)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_container_killed_mid_run_is_rebalanced_and_the_totals_match_the_testbed() {
    let cluster = Cluster::new("lg-kill-worker");
    let master = cluster.master(
        &[],
        &["-u", "12", "-r", "50", "-t", "15s", "--expect-workers", "3"],
    );
    let _w1 = cluster.worker("w1", &[]);
    let _w2 = cluster.worker("w2", &[]);
    let w3 = cluster.worker("w3", &[]);
    until_logged(&master, "requests flow", counts_more_than(200)).await;
    docker(&["kill", &w3]);
    assert_eq!(exit_code(&master).await, 0, "{}", logs(&master));
    assert!(
        logs(&master).contains("worker w3 lost") && logs(&master).contains("2 other(s)"),
        "{}",
        logs(&master)
    );
    let report = cluster.report();
    let workers = report["cluster"]["workers"].as_array().unwrap();
    let killed = workers.iter().find(|w| w["name"] == "w3").unwrap();
    assert!(
        killed["state"].as_str().unwrap().starts_with("lost at"),
        "{killed}"
    );
    assert!(killed["requests"].as_u64().unwrap() > 0, "its figures kept");
    let others: u64 = workers
        .iter()
        .filter(|w| w["name"] != "w3")
        .map(|w| w["users"].as_u64().unwrap())
        .sum();
    assert_eq!(others, 12, "its users rebalanced: {workers:?}");

    // The 3 workers' health checks are not in the report.
    crate::cluster::lost_at_most_the_killed_workers_last_seconds(
        &report,
        cluster.testbed_answered().await - 3,
    );
    assert_eq!(report["steady_total"]["failures"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_container_cut_off_its_network_is_lost_then_rejoins() {
    let cluster = Cluster::new("lg-cut-worker");
    let master = cluster.master(
        &[],
        &["-u", "4", "-r", "50", "-t", "2m", "--expect-workers", "2"],
    );
    let _w1 = cluster.worker("w1", &[]);
    let w2 = cluster.worker("w2", &["--master-timeout", "60s"]);
    until_logged(&master, "requests flow", counts_more_than(50)).await;

    docker(&["network", "disconnect", &cluster.network.name, &w2]);
    // Each side tells the other is gone, by its silence.
    until_logged(&master, "w2 marked lost", |logs| {
        logs.contains("worker w2 lost (no message for 3 s)")
    })
    .await;
    until_logged(&w2, "the master marked lost", |logs| {
        logs.contains("lost the master (no message for 3 s)")
    })
    .await;
    docker(&["network", "connect", &cluster.network.name, &w2]);
    until_logged(&master, "w2 back", |logs| {
        logs.contains("worker w2 answers again (connected again)")
    })
    .await;
    // The master's stop ends the run early, with every report.
    docker(&["stop", "-t", "60", &master]);
    assert_eq!(exit_code(&master).await, 0, "{}", logs(&master));
    let report = cluster.report();
    let kinds: Vec<&str> = report["cluster"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    // Lost, then back for good. (Figures the worker's abandoned connection still held may
    // reach the master once the network is back, just before that connection closes: then
    // "back" and "lost" once more, in that order.)
    assert!(
        kinds.first() == Some(&"lost") && kinds.last() == Some(&"back"),
        "{kinds:?}"
    );
    let lost = &report["cluster"]["events"][0]["what"];
    assert!(
        !lost.as_str().unwrap().contains("about 0 req/s"),
        "the load lost is judged on the seconds w2 was heard in: {lost}"
    );
    let w2_report = report["cluster"]["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "w2")
        .unwrap()
        .clone();
    assert_eq!(w2_report["state"], "finished", "{report}");
    assert!(w2_report["users"].as_u64().unwrap() > 0, "{w2_report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_containers_stop_without_their_master_and_a_wrong_token_or_version_is_refused() {
    let cluster = Cluster::new("lg-kill-master");
    // The master's port published on loopback, for a client of another version.
    let master = cluster.master(
        &["-p", "127.0.0.1::5557"],
        &["-u", "4", "-r", "50", "-t", "5m", "--expect-workers", "2"],
    );
    let port = docker(&["port", &master, "5557/tcp"]);
    let port = port.lines().next().unwrap().rsplit(':').next().unwrap();

    let wrong = cluster.worker("intruder", &["--cluster-token", "guess"]);
    assert_eq!(exit_code(&wrong).await, 2, "{}", logs(&wrong));
    let said = logs(&wrong);
    assert!(
        said.contains("wrong --cluster-token") && !said.contains(TOKEN),
        "{said}"
    );

    let answer = crate::cluster::hello_from_version_0_0_1(port, TOKEN).await;
    assert_eq!(answer["type"], "refused", "{answer}");
    assert!(
        answer["data"]["reason"].as_str().unwrap().contains("0.0.1"),
        "{answer}"
    );

    let workers = [
        cluster.worker("w1", &["--master-timeout", "3s"]),
        cluster.worker("w2", &["--master-timeout", "3s"]),
    ];
    until_logged(&master, "requests flow", counts_more_than(50)).await;
    docker(&["kill", &master]);
    for worker in &workers {
        assert_eq!(exit_code(worker).await, 2, "{}", logs(worker));
        let said = logs(worker);
        assert!(
            said.contains("unreachable for 3 s") && said.contains("the users were stopped"),
            "{said}"
        );
    }
}

/// The compose project, the images only it uses, and the folders it mounts: removed whatever
/// the test's outcome.
struct ComposeProject {
    name: String,
    file: std::path::PathBuf,
    images: Vec<String>,
}

impl ComposeProject {
    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new("docker-compose");
        command.arg("-p").arg(&self.name).arg("-f").arg(&self.file);
        command
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args(["down", "-v", "--remove-orphans", "-t", "5"])
            .output();
        let mut rmi = vec!["rmi", "-f"];
        rmi.extend(self.images.iter().map(String::as_str));
        let _ = crate::docker::docker_output(&rmi);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_load_environment_runs_a_distributed_test_on_the_stack() {
    let images = Images::hold();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The monitor's image from its binary, beside ours (cargo test --workspace builds it).
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_loadgen")).parent().unwrap();
    assert!(
        bin_dir.join("monitor").exists(),
        "{}/monitor: build it first (cargo build -p monitor; cargo test --workspace does)",
        bin_dir.display()
    );
    let project = ComposeProject {
        name: format!("lg-compose-{}", std::process::id()),
        file: workspace.join("docker/compose.load.yml"),
        images: vec![
            format!("loadtest/monitor:{}", images.tag),
            format!("loadtest/postgres-standin:{}", images.tag),
            format!("loadtest/redis-standin:{}", images.tag),
        ],
    };
    for (script, env) in [
        ("docker/build.sh", Some(bin_dir)),
        ("docker/standins/build.sh", None),
    ] {
        let mut command = std::process::Command::new("bash");
        command.arg(workspace.join(script)).arg(&images.tag);
        if let Some(dir) = env {
            command
                .env("LOADTEST_BIN_DIR", dir)
                .env("LOADTEST_IMAGES", "monitor");
        }
        let built = command.output().unwrap();
        assert!(
            built.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&built.stderr)
        );
    }

    let out = tempfile::tempdir().unwrap();
    let web_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    // The command the README gives, with this test's images, folders and a short run.
    let mut up = tokio::process::Command::from(project.command());
    up.args([
        "up",
        "--scale",
        "worker=3",
        "--abort-on-container-exit",
        "--exit-code-from",
        "master",
    ])
    .env("TAG", &images.tag)
    .env(
        "POSTGRES_IMAGE",
        format!("loadtest/postgres-standin:{}", images.tag),
    )
    .env(
        "REDIS_IMAGE",
        format!("loadtest/redis-standin:{}", images.tag),
    )
    .env("WORKERS", "3")
    .env("USERS", "6")
    .env("SPAWN_RATE", "6")
    .env("RUN_TIME", "20s")
    .env("FIXTURES_DIR", crate::support::fixtures())
    .env("OUT_DIR", out.path())
    .env("WEB_PORT", &web_port)
    .kill_on_drop(true);
    let ran = tokio::time::timeout(std::time::Duration::from_secs(300), up.output())
        .await
        .expect("the compose run ends by itself")
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
    // 0 every target met, 1 one missed (a debug build on a busy machine may); never an error.
    assert!(
        matches!(ran.status.code(), Some(0 | 1)),
        "{:?}: {said}",
        ran.status
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("run.json")).unwrap())
            .unwrap();
    let workers = report["cluster"]["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 3, "{said}");
    assert!(
        workers.iter().all(|w| w["requests"].as_u64() > Some(0)),
        "{workers:?}"
    );
    // The built-in scenario against the API on PostgreSQL and Redis: everyone registered,
    // logged in and uploaded.
    assert_eq!(
        report["users_by_type"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>(),
        6,
        "{report}"
    );
    assert_eq!(report["startup_total"]["failures"], 0, "{said}");
    assert!(report["steady_total"]["requests"].as_u64() > Some(0));
    // The monitor sidecar watched the stack on the same clock.
    assert!(
        !report["backend"].as_array().unwrap().is_empty(),
        "no backend samples: {said}"
    );
    assert!(out.path().join("run_stats.csv").exists());
    assert!(out.path().join("run.html").exists());
}
