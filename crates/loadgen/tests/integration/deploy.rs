//! The files that run distributed tests on the engines users have: `docker/compose.load.yml`
//! and `docker/stack.load.yml` (read by docker-compose itself, the stack also by the Docker
//! CLI's stack loader) and the Kubernetes manifests in `deploy/k8s/` (validated offline against
//! a pinned Kubernetes version's schemas by `kubernetes-validate`, which scripts/test.sh
//! installs), whose scenario and loadgen commands loadgen itself checks.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes release the manifests are checked against: pinned, so that a newer
/// kubernetes-validate does not change what passes (it defaults to its newest).
const KUBERNETES_VERSION: &str = "1.34.0";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// The manifests' documents as JSON, read by Debian's PyYAML.
fn documents() -> Vec<serde_json::Value> {
    let mut documents = Vec::new();
    for file in manifests() {
        let output = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            ])
            .arg(&file)
            .output()
            .expect("/usr/bin/python3 with PyYAML (scripts/test.sh installs python3-yaml)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let parsed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
        documents.extend(parsed);
    }
    documents
}

#[test]
fn the_kubernetes_manifests_are_valid_offline() {
    let validator = std::env::var("KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        workspace()
            .join("target/tools/k8s-venv/bin/kubernetes-validate")
            .display()
            .to_string()
    });
    let output = Command::new(&validator)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(manifests())
        .output()
        .unwrap_or_else(|e| {
            panic!("{validator}: {e}: scripts/test.sh installs kubernetes-validate there")
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    let release = KUBERNETES_VERSION.trim_end_matches(".0");
    for kind in [
        "deployment/loadgen-master",
        "service/loadgen-master",
        "deployment/loadgen-worker",
        "configmap/loadgen-scenario",
    ] {
        assert!(
            said.contains(&format!(
                "passed for resource {kind} against version {release}"
            )),
            "{said}"
        );
    }
}

#[test]
fn the_kubernetes_scenario_and_commands_are_what_loadgen_accepts() {
    let documents = documents();
    let scenario = documents
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["scenario.toml"].as_str())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.toml");
    std::fs::write(&file, scenario).unwrap();
    let checked = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["scenario", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    // Each container's args and plain env values, as a dry run (the scenario at our copy).
    for deployment in documents.iter().filter(|d| d["kind"] == "Deployment") {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<String> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap()
                    .replace("/scenario/scenario.toml", &file.display().to_string())
            })
            .collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
        command.arg("--dry-run").args(&args);
        for variable in container["env"].as_array().unwrap() {
            let name = variable["name"].as_str().unwrap();
            // Values from secrets and fields: a stand-in of the same shape.
            let value = variable["value"].as_str().unwrap_or("from-the-cluster");
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_compose_load_environment_is_valid_for_docker_compose() {
    let file = workspace().join("docker/compose.load.yml");
    let output = Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .args(["config"])
        .env("WORKERS", "3")
        .output()
        .expect("docker-compose (scripts/test.sh installs it)");
    let config = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for service in [
        "postgres:",
        "redis:",
        "api:",
        "monitor:",
        "master:",
        "worker:",
    ] {
        assert!(config.contains(service), "{config}");
    }
    assert!(config.contains("LOADGEN_HOST: http://api:8000"), "{config}");
    assert!(config.contains("LOADGEN_EXPECT_WORKERS: '3'"), "{config}");
}

#[test]
fn the_swarm_stack_is_valid_for_docker_compose_and_docker_stack() {
    let file = workspace().join("docker/stack.load.yml");
    let mut compose = Command::new("docker-compose");
    compose.arg("-f").arg(&file).arg("config");
    // The CLI's own loader, as `docker stack deploy` reads the file (no swarm needed).
    let mut stack = Command::new("docker");
    stack.args(["stack", "config", "-c"]).arg(&file);
    for mut command in [compose, stack] {
        let output = command
            .env("WORKERS", "3")
            .output()
            .expect("docker-compose and docker (scripts/test.sh installs them)");
        let config = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for wanted in [
            "api:",
            "master:",
            "worker:",
            "replicas: 3",
            "driver: overlay",
            "condition: none",
            "condition: on-failure",
        ] {
            assert!(config.contains(wanted), "{command:?}: {wanted}: {config}");
        }
        assert!(
            config.contains("LOADGEN_HOST: http://api:8000")
                && config.contains("LOADGEN_MASTER_HOST: master"),
            "{config}"
        );
        // Swarm's ingress would publish on every interface: the stack publishes nothing.
        assert!(!config.contains("ports:"), "{config}");
    }
}
