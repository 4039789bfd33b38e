//! The master/worker load environment under Docker Swarm, a real orchestrator:
//! `docker/stack.load.yml` deployed as a stack on a single-node swarm (made for the test when
//! the engine is in none, and left after it), its workers a replicated service. A worker's
//! task is killed; Swarm starts another, which joins the running test. The load stays on the
//! stack's overlay network: nothing is published, the report comes through a bind mount.

use std::path::Path;
use std::time::Duration;

use crate::docker::{Images, docker, docker_output, exit_code, logs, until_logged};
use crate::support::scenario;

/// The engine in a swarm for the test: one made with the node's loopback address (listening on
/// loopback only) when it was in none, left on drop with what it made; one found, left as it is.
/// Leaving drops the DNS names of the containers then on user-defined networks (the engine's
/// bug, moby/moby#45144): no other test's run then, and the README tells users.
struct Swarm {
    made: bool,
    /// Whether `docker_gwbridge`, the bridge Swarm makes for its containers, was there before.
    had_gateway_bridge: bool,
}

impl Swarm {
    fn join() -> Self {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let had_gateway_bridge = docker_output(&["network", "inspect", "docker_gwbridge"])
            .status
            .success();
        match state.trim() {
            "inactive" => {
                docker(&[
                    "swarm",
                    "init",
                    "--advertise-addr",
                    "127.0.0.1",
                    "--listen-addr",
                    "127.0.0.1:2377",
                ]);
                Self {
                    made: true,
                    had_gateway_bridge,
                }
            }
            "active" => Self {
                made: false,
                had_gateway_bridge,
            },
            other => panic!("the engine's swarm is {other}: neither in one nor free to make one"),
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if self.made {
            let _ = docker_output(&["swarm", "leave", "--force"]);
            if !self.had_gateway_bridge {
                let _ = docker_output(&["network", "rm", "docker_gwbridge"]);
            }
        }
    }
}

/// A stack deployed for the test: removed on drop, waiting (a bound only) for its containers
/// and its network to be gone.
struct Stack {
    name: String,
}

impl Stack {
    /// The running containers of the stack's `service` (all on this node: see the test).
    fn containers(&self, service: &str) -> Vec<String> {
        let label = format!(
            "label=com.docker.swarm.service.name={}_{service}",
            self.name
        );
        docker(&["ps", "-q", "--no-trunc", "--filter", &label])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits (2 minutes at most, a bound only) until `service` has `n` running containers.
    async fn running(&self, service: &str, n: usize) -> Vec<String> {
        let wait = async {
            loop {
                let running = self.containers(service);
                if running.len() >= n {
                    return running;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(120), wait)
            .await
            .unwrap_or_else(|_| panic!("{n} running {service} task(s): {}", self.tasks(service)))
    }

    /// `docker service ps`: Swarm's account of a service's tasks, for the messages.
    fn tasks(&self, service: &str) -> String {
        let output = docker_output(&[
            "service",
            "ps",
            "--no-trunc",
            "--format",
            "{{.Name}} {{.CurrentState}} {{.Error}}",
            &format!("{}_{service}", self.name),
        ]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = docker_output(&["stack", "rm", &self.name]);
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let containers = docker_output(&["ps", "-aq", "--filter", &label]);
            let networks = docker_output(&["network", "ls", "-q", "--filter", &label]);
            if containers.stdout.is_empty() && networks.stdout.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A worker's name in the master's report: its host name (the container's short ID, under
/// Swarm as under `docker run`) and its PID, 1 in its container.
fn worker_name(container: &str) -> String {
    format!("{}-1", &container[..12])
}

/// How many workers the master's log says joined: before the run or during it.
fn joined(master_logs: &str) -> usize {
    master_logs
        .lines()
        .filter(|l| {
            l.starts_with("loadgen: master: ")
                && (l.contains(" connected (") || l.contains(" joined: "))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_swarm_a_killed_worker_task_is_replaced_and_joins_the_running_test() {
    // Alone among the tests with containers: leaving the swarm would cost theirs their names.
    let images = Images::hold_alone();
    let started = std::time::Instant::now();
    let _swarm = Swarm::join();
    let out = tempfile::tempdir().unwrap();
    std::fs::copy(scenario("reads.toml"), out.path().join("reads.toml")).unwrap();
    let stack = Stack {
        name: format!("lgswarm{}", std::process::id()),
    };
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/stack.load.yml");
    // Our scenario, in a second file as the stack's comment says. It uploads nothing: the
    // report's folder stands for the fixtures too. Every task on this node, where the images
    // and the folder are (a swarm found may have others).
    let node = docker(&["info", "--format", "{{.Swarm.NodeID}}"]);
    let here = format!(
        "    deploy:\n      placement:\n        constraints: [\"node.id == {}\"]\n",
        node.trim()
    );
    let ours = out.path().join("scenario.yml");
    std::fs::write(
        &ours,
        format!(
            "services:\n  master:\n    environment:\n      LOADGEN_SCENARIO: /out/reads.toml\n\
             {here}  api:\n{here}  worker:\n{here}"
        ),
    )
    .unwrap();
    // The README's command, with this test's images, folder, scenario and a short run.
    let deployed = std::process::Command::new("docker")
        .args(["stack", "deploy", "--resolve-image", "never", "-c"])
        .arg(&file)
        .arg("-c")
        .arg(&ours)
        .arg(&stack.name)
        .env("TAG", &images.tag)
        .env("WORKERS", "3")
        .env("USERS", "12")
        .env("SPAWN_RATE", "50")
        .env("RUN_TIME", "16s")
        .env("CLUSTER_TOKEN", "swarm-test-token")
        .env("OUT_DIR", out.path())
        .env("FIXTURES_DIR", out.path())
        .output()
        .unwrap();
    assert!(
        deployed.status.success(),
        "docker stack deploy: {}",
        String::from_utf8_lossy(&deployed.stderr)
    );

    let master = stack.running("master", 1).await.remove(0);
    until_logged(&master, "3 workers connected", |logs| joined(logs) >= 3).await;
    until_logged(&master, "requests flow", |logs| {
        crate::cluster_containers::counts_more_than(200)(logs)
    })
    .await;
    let first = stack.containers("worker");
    assert_eq!(first.len(), 3, "{}", stack.tasks("worker"));
    let killed = &first[0];
    docker(&["kill", killed]);
    let lost = format!("worker {} lost", worker_name(killed));
    until_logged(&master, "the killed worker lost", |logs| {
        logs.contains(&lost)
    })
    .await;

    // Swarm starts a new task in the killed one's slot, and its worker joins the run.
    let replacement = stack
        .running("worker", 3)
        .await
        .into_iter()
        .find(|c| !first.contains(c))
        .unwrap_or_else(|| panic!("a new worker task: {}", stack.tasks("worker")));
    let back = format!(
        "worker {} joined: it gets its share of the users",
        worker_name(&replacement)
    );
    until_logged(&master, "the new worker joined", |logs| {
        logs.contains(&back)
    })
    .await;
    let tasks = stack.tasks("worker");
    assert!(
        tasks.contains("non-zero exit (137)") && tasks.matches("Running").count() == 3,
        "{tasks}"
    );

    assert_eq!(exit_code(&master).await, 0, "{}", logs(&master));
    let master_logs = logs(&master);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("run.json")).unwrap())
            .unwrap();
    let workers = report["cluster"]["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 4, "{workers:?}");
    let by_name = |name: String| {
        workers
            .iter()
            .find(|w| w["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} in {workers:?}"))
    };
    let gone = by_name(worker_name(killed));
    assert!(
        gone["state"].as_str().unwrap().starts_with("lost at"),
        "{gone}"
    );
    // The new worker ran its share of the users (12 over 3) to the end.
    let new = by_name(worker_name(&replacement));
    assert_eq!(new["state"], "finished", "{new}");
    assert_eq!(new["users"], 4, "{new}");
    assert!(new["requests"].as_u64() > Some(0), "{new}");
    assert_eq!(report["steady_total"]["failures"], 0, "{report}");

    // The testbed's own count, from its last line on SIGTERM, less each worker's health check.
    let api = stack.running("api", 1).await.remove(0);
    docker(&["stop", "-t", "30", &api]);
    let api_logs = logs(&api);
    let answered: u64 = api_logs
        .lines()
        .find_map(|line| {
            line.strip_prefix("testbed stopped: ")?
                .strip_suffix(" requests answered")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("the testbed's last line: {api_logs}"));
    let checks = joined(&master_logs) as u64;
    assert_eq!(checks, 4, "{master_logs}");
    crate::cluster::lost_at_most_the_killed_workers_last_seconds(&report, answered - checks);
    eprintln!(
        "swarm test: {} s from the images on, testbed {answered} answered, report {} + {}",
        started.elapsed().as_secs(),
        report["steady_total"]["requests"],
        report["startup_total"]["requests"]
    );
}
