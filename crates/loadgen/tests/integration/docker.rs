//! Helpers for the tests on real containers: the images of this test build (made by
//! `docker/build.sh`, as users make theirs), and a network with its containers, removed
//! whatever the test's outcome.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// `docker ARGS`, which must succeed; its standard output.
pub fn docker(args: &[&str]) -> String {
    let output = docker_output(args);
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `docker ARGS`, whatever its outcome.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker command runs")
}

/// A container's output and errors so far (`docker logs` gives the container's stdout on its
/// own stdout and its stderr on its own stderr).
pub fn logs(container: &str) -> String {
    let output = docker_output(&["logs", container]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits (2 minutes at most, a bound only) until `container`'s logs pass `wanted`.
pub async fn until_logged(container: &str, what: &str, wanted: impl Fn(&str) -> bool) {
    let wait = async {
        while !wanted(&logs(container)) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .unwrap_or_else(|_| panic!("{container}: {what}: {}", logs(container)));
}

/// Waits for `container` to exit (2 minutes at most, a bound only): its exit code.
pub async fn exit_code(container: &str) -> i64 {
    let name = container.to_owned();
    let wait = tokio::task::spawn_blocking(move || docker(&["wait", &name]));
    let code = tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .unwrap_or_else(|_| panic!("{container} exits by itself: {}", logs(container)))
        .unwrap();
    code.trim().parse().unwrap()
}

/// The images made from this test build's binaries, shared by the tests running at the same
/// time: built by the first, removed by the last.
pub struct Images {
    pub tag: String,
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

/// How many tests hold the images now.
static HOLDERS: Mutex<usize> = Mutex::new(0);

/// The engine's networks, shared by the tests whose containers are on them, or had by one test
/// alone: leaving a swarm drops the DNS names of every container then on a user-defined network
/// (moby/moby#45144), so the Swarm test runs beside none of theirs.
static NETWORKS: RwLock<()> = RwLock::new(());

impl Images {
    /// `loadtest/loadgen:TAG` and `loadtest/testbed:TAG` from the binaries this test runs, for
    /// a test whose containers may run beside other tests' (it waits while one runs alone).
    pub fn hold() -> Self {
        let shared = NETWORKS.read().unwrap_or_else(|e| e.into_inner());
        Self {
            tag: Self::build(),
            _shared: Some(shared),
            _alone: None,
        }
    }

    /// The same images, for a test that changes the engine for every container (joins or
    /// leaves a swarm): it waits for the others' containers to be gone, and runs alone.
    pub fn hold_alone() -> Self {
        let alone = NETWORKS.write().unwrap_or_else(|e| e.into_inner());
        Self {
            tag: Self::build(),
            _shared: None,
            _alone: Some(alone),
        }
    }

    /// Builds the images unless another test holds them: their tag. The caller holds the lock.
    fn build() -> String {
        let tag = format!("test-{}", std::process::id());
        let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        if *holders == 0 {
            let binary = Path::new(env!("CARGO_BIN_EXE_loadgen"));
            let built = Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/build.sh"))
                .arg(&tag)
                .env("LOADTEST_BIN_DIR", binary.parent().unwrap())
                .env("LOADTEST_IMAGES", "loadgen testbed")
                .output()
                .unwrap();
            assert!(
                built.status.success(),
                "docker/build.sh: {}",
                String::from_utf8_lossy(&built.stderr)
            );
        }
        *holders += 1;
        tag
    }

    pub fn loadgen(&self) -> String {
        format!("loadtest/loadgen:{}", self.tag)
    }

    pub fn testbed(&self) -> String {
        format!("loadtest/testbed:{}", self.tag)
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let mut holders = HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        *holders -= 1;
        if *holders == 0 {
            let _ = docker_output(&["rmi", "-f", &self.loadgen(), &self.testbed()]);
        }
    }
}

/// A network this test creates, and the containers it starts on it: all removed on drop.
pub struct Network {
    pub name: String,
    containers: Mutex<Vec<String>>,
}

impl Network {
    /// A new bridge network named after the test (`prefix`) and this process.
    pub fn create(prefix: &str) -> Self {
        let name = format!("{prefix}-{}", std::process::id());
        docker(&["network", "create", &name]);
        Self {
            name,
            containers: Mutex::new(Vec::new()),
        }
    }

    /// A container's name on this network (also its host name there).
    pub fn container_name(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    /// Starts `image` as `role` on the network, detached, with `options` before the image and
    /// `args` after it; its container name.
    pub fn run(&self, role: &str, options: &[&str], image: &str, args: &[&str]) -> String {
        let name = self.container_name(role);
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        let mut command = vec!["run", "-d", "--name", &name, "--network", &self.name];
        command.extend_from_slice(options);
        command.push(image);
        command.extend_from_slice(args);
        docker(&command);
        name
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let containers = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if !containers.is_empty() {
            let mut command = vec!["rm", "-f"];
            command.extend(containers.iter().map(String::as_str));
            let _ = docker_output(&command);
        }
        let _ = docker_output(&["network", "rm", &self.name]);
    }
}

/// The PostgreSQL and Redis stand-ins (`docker/standins/build.sh`), shared by the tests
/// running at the same time under one tag of their own: built by the first, removed by the
/// last.
pub struct Standins {
    pub tag: String,
}

/// How many tests hold the stand-ins now.
static STANDIN_HOLDERS: Mutex<usize> = Mutex::new(0);

impl Standins {
    /// `loadtest/postgres-standin:TAG` and `loadtest/redis-standin:TAG`.
    pub fn hold() -> Self {
        let tag = format!("standins-{}", std::process::id());
        let mut holders = STANDIN_HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        if *holders == 0 {
            let built = Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker/standins/build.sh"))
                .arg(&tag)
                .output()
                .unwrap();
            assert!(
                built.status.success(),
                "docker/standins/build.sh: {}",
                String::from_utf8_lossy(&built.stderr)
            );
        }
        *holders += 1;
        Self { tag }
    }

    pub fn postgres(&self) -> String {
        format!("loadtest/postgres-standin:{}", self.tag)
    }

    pub fn redis(&self) -> String {
        format!("loadtest/redis-standin:{}", self.tag)
    }
}

impl Drop for Standins {
    fn drop(&mut self) {
        let mut holders = STANDIN_HOLDERS.lock().unwrap_or_else(|e| e.into_inner());
        *holders -= 1;
        if *holders == 0 {
            let _ = docker_output(&["rmi", "-f", &self.postgres(), &self.redis()]);
        }
    }
}
