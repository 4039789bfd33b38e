//! The stack tunnel against real containers: a Redis stand-in on a network of the test's own,
//! its port published nowhere, reached from 127.0.0.1 through a tunnel container made from
//! this build's `monitor` binary; and the errors that say what to fix.

use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use monitor::tunnel::{LABEL, Tunnel, TunnelError, TunnelOptions};

use super::repo;

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker command runs")
}

/// Whether the engine knows this container.
fn exists(container: &str) -> bool {
    docker(&["container", "inspect", container])
        .status
        .success()
}

/// `loadtest/redis-standin:latest`, built by `docker/standins/build.sh` unless it is there.
fn redis_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    const IMAGE: &str = "loadtest/redis-standin:latest";
    BUILT.get_or_init(|| {
        if docker(&["image", "inspect", IMAGE]).status.success() {
            return;
        }
        let built = Command::new("bash")
            .arg(repo().join("docker/standins/build.sh"))
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "docker/standins/build.sh: {}",
            String::from_utf8_lossy(&built.stderr)
        );
    });
    IMAGE
}

/// A network of this test's own, with a Redis stand-in on it: both removed when dropped, with
/// whatever else is still attached (a tunnel left by a failed assertion).
struct Network {
    name: String,
    redis: String,
}

impl Network {
    fn with_redis(prefix: &str) -> Self {
        let name = format!("{prefix}-{}-{}", std::process::id(), nanos());
        let created = docker(&["network", "create", &name]);
        assert!(created.status.success(), "{created:?}");
        let network = Self {
            redis: format!("{name}-redis"),
            name,
        };
        network.start_redis();
        network
    }

    /// Starts the Redis stand-in (anew, if it ran) and waits until it answers.
    fn start_redis(&self) {
        let _ = docker(&["rm", "-f", &self.redis]);
        // No -p: the port is reachable only from inside the network.
        let run = docker(&[
            "run",
            "-d",
            "--name",
            &self.redis,
            "--network",
            &self.name,
            redis_image(),
        ]);
        assert!(
            run.status.success(),
            "docker run: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        // Listening within moments: a bound, not a pause.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !docker(&["exec", &self.redis, "redis-cli", "PING"])
            .stdout
            .starts_with(b"PONG")
        {
            assert!(
                Instant::now() < deadline,
                "{} never answered PING",
                self.redis
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A container's address on this network.
    fn address(&self, container: &str) -> String {
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            self.name
        );
        let output = docker(&["inspect", "-f", &format, container]);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `redis-cli ARGS` inside the Redis container (the way in that needs no tunnel).
    fn redis_cli(&self, args: &[&str]) -> String {
        let mut command = vec!["exec", &self.redis, "redis-cli"];
        command.extend_from_slice(args);
        let output = docker(&command);
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let attached = docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}} {{end}}",
            &self.name,
        ]);
        let attached = String::from_utf8_lossy(&attached.stdout).into_owned();
        let mut command = vec!["rm", "-f", self.redis.as_str()];
        command.extend(attached.split_whitespace());
        let _ = docker(&command);
        let _ = docker(&["network", "rm", &self.name]);
    }
}

fn nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// The test's own process is not a `monitor`: the tunnel runs this build's binary.
fn options(ready_within: Duration) -> TunnelOptions {
    TunnelOptions {
        executable: Some(env!("CARGO_BIN_EXE_monitor").into()),
        ready_within,
    }
}

/// Tunnel containers still on `network` (none once every tunnel is closed or dropped).
fn tunnels_on(network: &str) -> String {
    let listed = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={LABEL}=1"),
        "--filter",
        &format!("network={network}"),
        "--format",
        "{{.Names}}",
    ]);
    String::from_utf8_lossy(&listed.stdout).trim().to_owned()
}

/// `GET tunnel-test` on a new connection.
async fn get(client: &redis::Client) -> String {
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg("tunnel-test")
        .query_async(&mut connection)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_with_no_published_port_answers_through_the_tunnel_even_once_replaced() {
    let network = Network::with_redis("lt-tunnel");
    // A value only that server holds: the answer through the tunnel is from it.
    let planted = format!("planted-{}", nanos());
    network.redis_cli(&["SET", "tunnel-test", &planted]);

    let started = Instant::now();
    let tunnel = Tunnel::open_with(
        &network.name,
        &network.redis,
        6379,
        &options(Duration::from_secs(30)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let opened = started.elapsed();
    let local = tunnel.local_addr();
    assert!(local.ip().is_loopback() && local.port() != 0, "{local}");
    let name = tunnel.container_name().to_owned();
    assert!(name.starts_with(monitor::tunnel::NAME_PREFIX), "{name}");

    let client = redis::Client::open(format!("redis://{local}/")).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(get(&client).await, planted);
    drop(connection);

    // The service replaced by a new container of the same name at another address (a
    // placeholder takes the old one): the same tunnel finds it.
    let old_address = network.address(&network.redis);
    let _ = docker(&["rm", "-f", &network.redis]);
    let placeholder = format!("{}-placeholder", network.name);
    let run = docker(&[
        "run",
        "-d",
        "--name",
        &placeholder,
        "--network",
        &network.name,
        redis_image(),
    ]);
    assert!(run.status.success(), "{run:?}");
    network.start_redis();
    assert_ne!(network.address(&network.redis), old_address);
    network.redis_cli(&["SET", "tunnel-test", "replaced"]);
    assert_eq!(get(&client).await, "replaced");

    let closing = Instant::now();
    tunnel.close().await;
    let closed = closing.elapsed();
    assert!(!exists(&name), "{name} is still there after close");

    // Dropped instead of closed (a caller's early return): removed all the same. The image is
    // made by now, so this one shows the cost of a tunnel alone.
    let reopening = Instant::now();
    let dropped = Tunnel::open_with(
        &network.name,
        &network.redis,
        6379,
        &options(Duration::from_secs(30)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let reopened = reopening.elapsed();
    let name = dropped.container_name().to_owned();
    assert!(exists(&name));
    drop(dropped);
    assert!(!exists(&name), "{name} is still there after drop");
    assert_eq!(tunnels_on(&network.name), "");
    eprintln!(
        "tunnel: first open (image included) {opened:?}, close {closed:?}, open with the image \
         made {reopened:?}"
    );
}

#[tokio::test]
async fn an_unknown_network_is_named_in_the_error() {
    let network = format!("lt-tunnel-absent-{}", nanos());
    let error = Tunnel::open_with(&network, "redis", 6379, &options(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TunnelError::NetworkNotFound { network: n } if *n == network),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&network) && message.contains("docker network ls"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_nothing_listens_on_is_named_with_the_network_and_leaves_nothing() {
    let network = Network::with_redis("lt-tunnel-silent");
    let started = Instant::now();
    let error = Tunnel::open_with(
        &network.name,
        &network.redis,
        6390,
        &options(Duration::from_secs(3)),
    )
    .await
    .unwrap_err();
    let TunnelError::TargetNotAnswering { last, .. } = &error else {
        panic!("{error:?}")
    };
    let message = error.to_string();
    let target = format!("{}:6390", network.redis);
    assert!(
        message.contains(&target) && message.contains(&network.name),
        "{message}"
    );
    assert!(last.to_lowercase().contains("refused"), "{message}");
    assert_eq!(tunnels_on(&network.name), "");
    eprintln!("tunnel: refused target reported in {:?}", started.elapsed());
}

/// A tunnel container whose owner was killed outright (here: one labelled with a process that
/// has ended) is removed when the next tunnel opens on the machine; one whose owner lives
/// (labelled with this process) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_left_by_a_killed_process_is_removed_by_the_next_one() {
    use monitor::tunnel::owner::{OWNER_LABEL, this_process};
    let network = Network::with_redis("lt-orphan");
    let mut ended = Command::new("true").spawn().unwrap();
    let dead_pid = ended.id();
    ended.wait().unwrap();
    let me = this_process().expect("Linux tells a process's start time");
    // Where this process runs (host, boot, namespace, user): the label less its pid and start.
    let (rest, _start) = me.rsplit_once(':').unwrap();
    let (place, _pid) = rest.rsplit_once(':').unwrap();
    let orphan = format!("{}-orphan", network.name);
    let owned = format!("{}-owned", network.name);
    for (name, owner) in [
        (&orphan, format!("{place}:{dead_pid}:1")),
        (&owned, me.clone()),
    ] {
        let created = docker(&[
            "create",
            "--name",
            name,
            "--network",
            &network.name,
            "--label",
            &format!("{LABEL}=1"),
            "--label",
            &format!("{OWNER_LABEL}={owner}"),
            redis_image(),
        ]);
        assert!(created.status.success(), "{created:?}");
    }

    let tunnel = Tunnel::open_with(
        &network.name,
        &network.redis,
        6379,
        &options(Duration::from_secs(30)),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let orphan_left = exists(&orphan);
    let owned_left = exists(&owned);
    tunnel.close().await;
    let _ = docker(&["rm", "-f", &orphan, &owned]);
    assert!(
        !orphan_left,
        "the orphaned tunnel container {orphan} is still there"
    );
    assert!(owned_left, "{owned}, whose owner lives, was removed");
}
