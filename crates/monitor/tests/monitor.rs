//! The monitor against real servers: a Docker container built from busybox-static, PostgreSQL
//! and Redis servers of the test's own (so that counts are exact), and the binary's outputs.

#![allow(clippy::unwrap_used)]
// A test is a scenario read top to bottom; the 100-line bar is for the product's functions.
#![allow(clippy::too_many_lines)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use monitor::sample::{Tick, Values};
use monitor::source::Source;
use monitor::sources::docker::{Docker, Selector};
use monitor::sources::postgres::{Postgres, Scope};
use monitor::sources::redis::{Queue, Redis};
use sqlx::{Connection, Executor, PgConnection};
use test_support::Detached;

#[path = "monitor/profiles.rs"]
mod profiles;
#[path = "monitor/tunnel.rs"]
mod tunnel;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A PostgreSQL cluster and a Redis server of this test's own, stopped when dropped.
struct Services {
    dir: tempfile::TempDir,
    postgres_url: String,
    redis_url: String,
}

impl Services {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("monitor-services-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let output = Command::new(repo().join("scripts/services.sh"))
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "services.sh: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let env = String::from_utf8(output.stdout).unwrap();
        let value = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap()
                .to_owned()
        };
        Self {
            postgres_url: value("TEST_DATABASE_URL"),
            redis_url: value("TEST_REDIS_URL"),
            dir,
        }
    }

    fn postgres(&self, action: &str) {
        let status = Command::new(repo().join("scripts/services.sh"))
            .arg(action)
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "services.sh {action}");
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/services.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

use test_support::Container;

async fn read_until<S: Source>(
    source: &mut S,
    deadline: Duration,
    done: impl Fn(&Values) -> bool,
) -> Values {
    let start = Instant::now();
    loop {
        let values = source
            .read()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", source.name()));
        if done(&values) || start.elapsed() > deadline {
            return values;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A restarted container ends its stats stream: its figures must follow the new process, not
/// freeze at the last ones the old stream gave. The container burns CPU the first time and
/// sleeps after its restart (a file in its own filesystem says which run it is).
#[tokio::test]
async fn docker_figures_follow_a_restarted_container() {
    let flip = Container::run(
        "lt-restart",
        "if [ -e /ran-once ]; then exec sleep 600; fi; : > /ran-once; while :; do :; done",
    );
    let mut docker = Docker::new(Selector::Names(vec![flip.0.clone()]));
    let cpu = |v: &Values| match v {
        Values::Docker(d) => d.containers.get(&flip.0).map_or(0.0, |c| c.cpu_pct),
        _ => 0.0,
    };
    // Busy: well above what it will show once idle, however loaded this machine is.
    let busy = read_until(&mut docker, Duration::from_secs(30), |v| cpu(v) > 20.0).await;
    assert!(cpu(&busy) > 20.0, "{busy:?}");
    let restarted = Command::new("docker")
        .args(["restart", "-t", "0", &flip.0])
        .output()
        .unwrap();
    assert!(restarted.status.success());
    // Now idle: fresh figures from a reopened stream show it (stale ones would stay above 20%).
    let idle = read_until(&mut docker, Duration::from_secs(30), |v| {
        (0.0..5.0).contains(&cpu(v))
    })
    .await;
    let Values::Docker(d) = &idle else {
        panic!("{idle:?}")
    };
    let c = &d.containers[&flip.0];
    assert!(c.cpu_pct < 5.0 && c.memory_bytes > 0, "{c:?}");
    let _ = Command::new("docker").args(["rm", "-f", &flip.0]).output();
}

#[tokio::test]
async fn docker_shows_a_busy_container_and_marks_it_gone() {
    let burner = Container::run("lt-monitor", "while :; do :; done");
    let sleeper = Container::run("lt-monitor-idle", "exec sleep 600");
    let mut docker = Docker::new(Selector::Names(vec![burner.0.clone(), sleeper.0.clone()]))
        .keep_gone(Duration::from_secs(1));
    // Relative figures: on a busy machine the burner gets less than a core, but always far more
    // than a sleeping container.
    let both_measured = |v: &Values| match v {
        Values::Docker(d) => {
            d.containers
                .get(&burner.0)
                .is_some_and(|c| c.cpu_pct > 10.0)
                && d.containers
                    .get(&sleeper.0)
                    .is_some_and(|c| c.memory_bytes > 0)
        }
        _ => false,
    };
    let values = read_until(&mut docker, Duration::from_secs(30), both_measured).await;
    let Values::Docker(d) = &values else {
        panic!("{values:?}")
    };
    let (c, idle) = (&d.containers[&burner.0], &d.containers[&sleeper.0]);
    assert!(
        c.cpu_pct > 10.0 * idle.cpu_pct.max(1.0),
        "{c:?} vs {idle:?}"
    );
    assert!(
        c.memory_bytes > 0 && c.memory_limit_bytes > c.memory_bytes,
        "{c:?}"
    );
    assert_eq!(c.state, "running");
    assert_eq!(d.containers.len(), 2, "only the selected containers: {d:?}");

    let stopped = Command::new("docker")
        .args(["stop", "-t", "0", &burner.0])
        .output()
        .unwrap();
    assert!(stopped.status.success());
    let Values::Docker(d) = docker.read().await.unwrap() else {
        panic!()
    };
    assert_eq!(d.containers[&burner.0].state, "exited");
    let removed = Command::new("docker")
        .args(["rm", "-f", &burner.0])
        .output()
        .unwrap();
    assert!(removed.status.success());
    let Values::Docker(d) = docker.read().await.unwrap() else {
        panic!()
    };
    assert_eq!(d.containers[&burner.0].state, "gone");
    // After a while a removed container leaves the output.
    let forgotten = |v: &Values| match v {
        Values::Docker(d) => !d.containers.contains_key(&burner.0),
        _ => false,
    };
    let values = read_until(&mut docker, Duration::from_secs(30), forgotten).await;
    assert!(forgotten(&values), "{values:?}");

    // The last log lines, as `docker logs --tail` gives them.
    let talker = Container::run(
        "lt-monitor",
        "for i in 1 2 3 4 5; do echo line $i; done; sleep 60",
    );
    // Wait for the lines to be written, not for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = monitor::sources::docker::recent_logs(&talker.0, 2)
            .await
            .unwrap();
        if lines == ["line 4", "line 5"] || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(lines, ["line 4", "line 5"]);
}

#[tokio::test]
async fn postgres_backends_are_counted_exactly() {
    let services = Services::start();
    let url = &services.postgres_url;
    let mut setup = PgConnection::connect(url).await.unwrap();
    setup.execute("CREATE TABLE jobs (id int)").await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut c = PgConnection::connect(url).await.unwrap();
        c.execute("SELECT 1").await.unwrap();
        idle.push(c);
    }
    let mut in_tx = PgConnection::connect(url).await.unwrap();
    in_tx.execute("BEGIN; SELECT 1").await.unwrap();
    let mut holder = PgConnection::connect(url).await.unwrap();
    holder
        .execute("BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let waiter = tokio::spawn({
        let url = url.clone();
        async move {
            let mut c = PgConnection::connect(&url).await.unwrap();
            c.execute("BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE; COMMIT")
                .await
                .unwrap();
        }
    });
    drop(setup);

    let mut postgres = Postgres::new(url, Scope::Database);
    let blocked =
        |v: &Values| matches!(v, Values::Postgres(p) if p.blocked == 1 && p.connections == 6);
    let Values::Postgres(p) = read_until(&mut postgres, Duration::from_secs(10), blocked).await
    else {
        panic!()
    };
    // 3 idle, 2 idle in transaction (one holds the lock), 1 active waiting on it; never the
    // monitor's own backend.
    assert_eq!(
        (
            p.connections,
            p.idle,
            p.idle_in_transaction,
            p.active,
            p.blocked
        ),
        (6, 3, 2, 1, 1),
        "{p:?}"
    );
    assert_eq!(p.waiting.get("Lock"), Some(&1), "{p:?}");
    assert_eq!(
        p.waiting.len(),
        1,
        "idle backends' Client waits do not count: {p:?}"
    );
    assert_eq!(p.max_connections, 200);
    assert!(
        p.longest_idle_in_transaction_secs > 0.0
            && p.longest_transaction_secs >= p.longest_idle_in_transaction_secs
    );
    holder.execute("COMMIT").await.unwrap();
    waiter.await.unwrap();
}

#[tokio::test]
async fn redis_clients_blocked_clients_and_list_length() {
    let services = Services::start();
    let url = format!("{}/0", services.redis_url);
    let client = redis::Client::open(format!("{}/1", services.redis_url)).unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(client.get_multiplexed_async_connection().await.unwrap());
    }
    let _: i64 = redis::cmd("RPUSH")
        .arg("celery")
        .arg(&[1, 2, 3, 4, 5])
        .query_async(&mut clients[0])
        .await
        .unwrap();
    let blocked = tokio::spawn({
        let client = client.clone();
        async move {
            let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
            let mut c = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .unwrap();
            let _: Option<(String, String)> = redis::cmd("BLPOP")
                .arg("never-filled")
                .arg(5)
                .query_async(&mut c)
                .await
                .unwrap();
        }
    });
    let mut source = Redis::new(
        &url,
        vec![
            "1/celery".parse::<Queue>().unwrap(),
            "missing".parse().unwrap(),
        ],
    );
    let done = |v: &Values| matches!(v, Values::Redis(r) if r.blocked_clients == 1);
    let Values::Redis(r) = read_until(&mut source, Duration::from_secs(5), done).await else {
        panic!()
    };
    assert_eq!((r.connected_clients, r.blocked_clients), (4, 1), "{r:?}");
    assert_eq!(r.lists.get("1/celery"), Some(&5));
    assert_eq!(r.lists.get("0/missing"), Some(&0));
    assert!(r.maxclients > 0 && r.used_memory_bytes > 0);
    blocked.abort();
}

#[tokio::test]
async fn postgres_stopped_mid_run_leaves_the_others_flowing_and_comes_back() {
    let services = Services::start();
    let sources: Vec<Box<dyn Source>> = vec![
        Box::new(Postgres::new(&services.postgres_url, Scope::Database)),
        Box::new(Redis::new(&services.redis_url, vec![])),
        Box::new(monitor::sources::host::Host::new(
            monitor::sources::host::Capacity {
                disk_bps: 1e9,
                net_bps: 1e9,
            },
        )),
    ];
    let mut sampler = monitor::sampler::Sampler::new(sources, Duration::from_secs(1));
    let up = |tick: &Tick, name: &str| tick.sources[name].up;
    let first = sampler.tick().await;
    assert!(
        up(&first, "postgres") && up(&first, "redis") && up(&first, "host"),
        "{first:?}"
    );

    services.postgres("pg-stop");
    for _ in 0..3 {
        let tick = sampler.tick().await;
        assert!(!up(&tick, "postgres"), "{tick:?}");
        assert!(
            up(&tick, "redis") && up(&tick, "host"),
            "the others go on: {tick:?}"
        );
        let error = tick.sources["postgres"].error.as_deref().unwrap();
        assert!(
            !error.contains(
                services
                    .postgres_url
                    .split(':')
                    .nth(2)
                    .unwrap()
                    .split('@')
                    .next()
                    .unwrap()
            ),
            "{error}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    services.postgres("pg-start");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tick = sampler.tick().await;
        assert!(up(&tick, "redis"));
        if up(&tick, "postgres") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "postgres never came back: {tick:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_binary_writes_every_output_and_never_a_password() {
    let services = Services::start();
    let password = services
        .postgres_url
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_owned();
    assert!(password.len() > 8);
    let out = tempfile::tempdir().unwrap();
    let jsonl = out.path().join("samples.jsonl");
    let csv = out.path().join("samples.csv");
    // Every output at once: the console, the files, the HTTP endpoint and OTLP export.
    let (otlp, received) = otlp_receiver().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args([
            "--redis-url",
            &services.redis_url,
            "--redis-queue",
            "1/celery",
        ])
        // The URL with its password comes from the environment.
        .env("MONITOR_POSTGRES_URL", &services.postgres_url)
        .env("MONITOR_DOCKER", "name=no-such-container")
        .args([
            "--interval",
            "500ms",
            "--duration",
            "3s",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--otlp-endpoint", &format!("http://{otlp}")])
        .arg("--out")
        .arg(&jsonl)
        .arg("--csv")
        .arg(&csv)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr_lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
    let mut early_stderr = String::new();
    let base = loop {
        let line = stderr_lines
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the monitor ended early: {early_stderr}"));
        early_stderr.push_str(&line);
        early_stderr.push('\n');
        if let Some(rest) = line.strip_prefix("monitor: serving ") {
            break rest.split("/latest").next().unwrap().to_owned();
        }
    };
    // Await the first tick.
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{base}/latest"))
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "no tick served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut served = String::new();
    for path in ["/latest", "/samples", "/metrics"] {
        served.push_str(
            &reqwest::get(format!("{base}{path}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    assert!(served.contains("monitor_postgres_connections"), "{served}");
    let mut late_stderr = String::new();
    while let Some(line) = stderr_lines.next_line().await.unwrap() {
        late_stderr.push_str(&line);
        late_stderr.push('\n');
    }
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "{early_stderr}{late_stderr}");
    let exported = format!("{:?}", received.lock().unwrap());
    assert!(exported.contains("postgres"), "{exported}");
    let refused = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args([
            "--postgres-url",
            "postgres://app:hunter2secret@127.0.0.1:1/x",
            "--redis-url",
            "redis://:hunter2secret@127.0.0.1:1/0",
        ])
        .args(["--interval", "200ms", "--duration", "1s", "--no-host"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("monitor: postgres: cannot connect to postgres://app:***@127.0.0.1:1/x"),
        "{stderr}"
    );
    assert!(
        stderr.contains("monitor: redis: cannot connect to redis://:***@127.0.0.1:1/0"),
        "{stderr}"
    );
    let strict = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args([
            "--redis-url",
            "redis://127.0.0.1:1/0",
            "--strict",
            "--duration",
            "1s",
        ])
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(2));

    let everything = [
        String::from_utf8_lossy(&output.stdout).into_owned(),
        early_stderr,
        late_stderr,
        served,
        exported,
        String::from_utf8_lossy(&refused.stdout).into_owned(),
        stderr.into_owned(),
        std::fs::read_to_string(&jsonl).unwrap(),
        std::fs::read_to_string(&csv).unwrap(),
    ]
    .join("\n");
    assert!(!everything.contains(&password), "the password leaked");
    assert!(!everything.contains("hunter2secret"), "the password leaked");

    let ticks = monitor::sinks::files::read_json_lines(&jsonl).unwrap();
    assert!(ticks.len() >= 3, "{}", ticks.len());
    for tick in &ticks {
        assert!(
            tick.sources["postgres"].up && tick.sources["redis"].up && tick.sources["host"].up,
            "{tick:?}"
        );
        assert!(tick.spread_ms < 1000.0);
    }
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["timestamp", "tick", "source", "metric", "labels", "value"]
    );
    let metrics: Vec<String> = reader.records().map(|r| r.unwrap()[3].to_owned()).collect();
    for name in [
        "postgres_connections",
        "redis_list_length",
        "host_cpu_pct",
        "source_up",
    ] {
        assert!(metrics.iter().any(|m| m == name), "{name} missing");
    }
}

#[tokio::test]
async fn the_http_endpoint_serves_latest_samples_and_prometheus_text() {
    let recent = monitor::sinks::http::Recent::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let addr =
        monitor::sinks::http::serve("127.0.0.1:0".parse().unwrap(), recent.clone(), stop.clone())
            .await
            .unwrap();
    let base = format!("http://{addr}");
    assert_eq!(
        reqwest::get(format!("{base}/latest"))
            .await
            .unwrap()
            .status(),
        404,
        "no sample yet"
    );
    // Every kind of source, so that every family and label is in the text promtool checks.
    let services = Services::start();
    let sources: Vec<Box<dyn Source>> = vec![
        Box::new(monitor::sources::host::Host::new(
            monitor::sources::host::Capacity {
                disk_bps: 1e9,
                net_bps: 1e9,
            },
        )),
        Box::new(Postgres::new(&services.postgres_url, Scope::Database)),
        Box::new(Redis::new(
            &services.redis_url,
            vec!["1/celery".parse::<Queue>().unwrap()],
        )),
    ];
    let mut sampler = monitor::sampler::Sampler::new(sources, Duration::from_millis(500));
    let first = sampler.tick().await;
    recent.push(first.clone());
    let second = sampler.tick().await;
    recent.push(second.clone());
    let latest: Tick = reqwest::get(format!("{base}/latest"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (latest.tick, latest.timestamp),
        (second.tick, second.timestamp)
    );
    // RFC 3339 in UTC ("Z"): no character that needs URL encoding.
    let since = first
        .timestamp
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let after: Vec<Tick> = reqwest::get(format!("{base}/samples?since={since}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let after: Vec<u64> = after.iter().map(|t| t.tick).collect();
    assert_eq!(after, vec![second.tick]);
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("# TYPE monitor_host_cpu_ratio gauge\n"),
        "{text}"
    );
    assert!(
        text.contains("monitor_source_up{source=\"host\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE monitor_host_network_receive_bytes_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("monitor_redis_list_length{db=\"1\",list=\"celery\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("monitor_postgres_backends{state=\"active\"} "),
        "{text}"
    );
    // One group per family: source_up's three samples follow its TYPE line.
    assert_eq!(text.matches("# TYPE monitor_source_up gauge").count(), 1);
    // Prometheus's own linter finds nothing to say.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test.sh installs Debian's prometheus)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(
        reqwest::get(format!("{base}/samples?since=yesterday"))
            .await
            .unwrap()
            .status(),
        400
    );
    stop.cancel();
}

/// Metric names and their attributes, as a receiver got them.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<String>)>>>;

/// A real OTLP/HTTP receiver: decodes the protobuf ExportMetricsServiceRequest bodies it gets.
async fn otlp_receiver() -> (std::net::SocketAddr, Received) {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use prost::Message;
    let received: Received = Default::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/metrics",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let request =
                    ExportMetricsServiceRequest::decode(body).expect("a valid OTLP protobuf body");
                for resource in request.resource_metrics {
                    for scope in resource.scope_metrics {
                        for metric in scope.metrics {
                            let mut attributes = Vec::new();
                            if let Some(
                                opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(gauge),
                            ) = &metric.data
                            {
                                for point in &gauge.data_points {
                                    for kv in &point.attributes {
                                        attributes.push(format!(
                                            "{}={:?}",
                                            kv.key,
                                            kv.value.as_ref().and_then(|v| v.value.clone())
                                        ));
                                    }
                                }
                            }
                            sink.lock().unwrap().push((metric.name.clone(), attributes));
                        }
                    }
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_export_reaches_a_receiver_over_http() {
    let services = Services::start();
    let (addr, received) = otlp_receiver().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args([
            "--redis-url",
            &services.redis_url,
            "--postgres-url",
            &services.postgres_url,
        ])
        // Each source gets 80 % of the interval per tick: 1 s leaves a PostgreSQL connect room on
        // a loaded machine (300 ms did not, beside `stress-ng --cpu 2`), and 8 ticks of it.
        .args(["--interval", "1s", "--duration", "8s", "--quiet"])
        .args(["--otlp-endpoint", &format!("http://{addr}")])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let received = received.lock().unwrap().clone();
    let names: Vec<&str> = received.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "monitor.host_cpu_pct",
        "monitor.redis_connected_clients",
        "monitor.postgres_connections",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not received: {names:?}"
        );
    }
    let redis = received
        .iter()
        .find(|(n, _)| n == "monitor.redis_connected_clients")
        .unwrap();
    let port = services.redis_url.rsplit(':').next().unwrap();
    assert!(
        redis
            .1
            .iter()
            .any(|a| a.starts_with("redis.instance=") && a.contains(port)),
        "{redis:?}"
    );
    let postgres = received
        .iter()
        .find(|(n, _)| n == "monitor.postgres_connections")
        .unwrap();
    assert!(
        postgres
            .1
            .iter()
            .any(|a| a.starts_with("database=") && a.contains("/postgres")),
        "{postgres:?}"
    );
    let password = services
        .postgres_url
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    assert!(!format!("{received:?}").contains(password));
}

/// SIGTERM, SIGHUP and SIGINT all end a monitor run without a duration the same way: the
/// summary is printed and the files hold every tick taken.
#[tokio::test]
async fn every_stop_signal_prints_the_summary_and_keeps_the_files() {
    for signal in ["TERM", "HUP", "INT"] {
        let out = tempfile::tempdir().unwrap();
        let jsonl = out.path().join("samples.jsonl");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
            .args(["--interval", "200ms", "--quiet", "--out"])
            .arg(&jsonl)
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Await two ticks in the file.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::fs::read_to_string(&jsonl).map_or(0, |t| t.lines().count()) < 2 {
            assert!(tokio::time::Instant::now() < deadline, "no ticks written");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let pid = child.id().unwrap().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
        let output =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .expect("the monitor stops within a minute of the signal")
                .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "SIG{signal}: {stderr}");
        assert!(stderr.contains("MONITOR SUMMARY"), "SIG{signal}: {stderr}");
        let ticks = monitor::sinks::files::read_json_lines(&jsonl).unwrap();
        assert!(ticks.len() >= 2, "SIG{signal}: {} ticks", ticks.len());
    }
}

/// An OTLP endpoint that is not a URL is refused before the first tick, not after the run.
#[tokio::test]
async fn a_bad_otlp_endpoint_is_refused_at_start() {
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
            .args(["--otlp-endpoint", "garbage", "--duration", "10m", "--quiet"])
            .output(),
    )
    .await
    .expect("refused at once, not after the 10 minutes")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not an http(s) URL"), "{stderr}");
}

/// The monitor's binary with `args`, bounded by a minute: (exit code, stderr).
async fn monitor_output(args: &[&str]) -> (Option<i32>, String) {
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("monitor {args:?} ended within a minute"))
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The endpoint has no authentication: beyond loopback it takes the flag that says so, and a
/// URL that names no server is refused at once rather than retried all run.
#[tokio::test]
async fn an_open_endpoint_or_a_url_naming_nothing_is_refused_at_start() {
    let quiet = ["--no-host", "--quiet", "--duration", "10m"];
    for (flags, expected) in [
        (&["--listen", "0.0.0.0:0"][..], "--listen-insecure-no-auth"),
        (
            &["--postgres-url", "notaurl"][..],
            "--postgres-url <unparsable URL>: not a PostgreSQL URL",
        ),
        (
            &["--redis-url", "notaurl"][..],
            "--redis-url <unparsable URL>: not a Redis URL",
        ),
    ] {
        let mut args = flags.to_vec();
        args.extend(quiet);
        let (code, stderr) = monitor_output(&args).await;
        assert_eq!(code, Some(2), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    }
    let (code, stderr) = monitor_output(&[
        "--listen",
        "0.0.0.0:0",
        "--listen-insecure-no-auth",
        "--no-host",
        "--quiet",
        "--duration",
        "1s",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("monitor: serving http://0.0.0.0:"),
        "{stderr}"
    );
}

/// A queue watched in the wrong database reads 0 all run: a check says so, and names the
/// database where the broker's keys are (an idle Celery queue: its binding, and no list).
#[tokio::test]
async fn a_queue_watched_in_the_wrong_database_is_named_where_it_is() {
    let services = Services::start();
    let client = redis::Client::open(format!("{}/1", services.redis_url)).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("SADD")
        .arg("_kombu.binding.celery")
        .arg("celery\x06\x16\x06\x16celery")
        .query_async(&mut connection)
        .await
        .unwrap();
    let queues = ["0/celery", "1/celery", "0/no-such-queue"]
        .iter()
        .map(|q| q.parse::<Queue>().unwrap())
        .collect();
    let period = Duration::from_millis(100);
    let mut supervised = monitor::source::Supervised::new(
        Box::new(Redis::new(&services.redis_url, queues).with_check_every(period)),
        Duration::from_secs(30),
    );
    let mut notes = Vec::new();
    for _ in 0..100 {
        let reading = supervised.poll().await;
        assert!(reading.up, "{reading:?}");
        notes = reading.notes;
        if !notes.is_empty() {
            break;
        }
        tokio::time::sleep(period / 2).await;
    }
    // An absent key (an idle Celery queue has no list) is no note, nor the right database.
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains(
            "\"celery\" is watched in db 0, but the broker's keys for it \
             (_kombu.binding.celery) are in db 1: watch 1/celery"
        ),
        "{notes:?}"
    );
    // Said once, over the next checks.
    for _ in 0..4 {
        tokio::time::sleep(period / 2).await;
        assert!(supervised.poll().await.notes.is_empty());
    }
}

/// The tests that burn the CPU take turns: each measures its own burner, not a neighbour's.
static BURNING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// utime + stime + cutime + cstime of process `pid`, seconds: its CPU and that of the
/// children it reaped.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Fields 14 to 17, counted from 3 after the comm.
    let ticks: i64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<i64>().unwrap())
        .sum();
    let output = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    let per_sec: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    ticks as f64 / per_sec
}

/// The host's process groups in `values`.
fn groups(values: &Values) -> &[monitor::sample::ProcessGroup] {
    match values {
        Values::Host(h) => &h.processes,
        _ => &[],
    }
}

/// Who uses the host: a process that burns a core, outside this test's tree, shows in the
/// host's process groups by name, as a group of its own outside the stack.
#[tokio::test]
async fn the_host_names_the_process_that_burns_the_cpu() {
    let _turn = BURNING.lock().await;
    let burner = Detached::start("yes", &[]);
    let pid = burner.pid;
    let mut host = monitor::sources::host::Host::new(monitor::sources::host::Capacity::default());
    let busy = |v: &Values| {
        groups(v)
            .iter()
            .any(|g| g.pid == pid && g.name == "yes" && g.cpu_pct > 20.0)
    };
    // CPU shares need two readings; a loaded machine may need a few more.
    let values = read_until(&mut host, Duration::from_secs(30), busy).await;
    drop(burner);
    assert!(busy(&values), "{values:?}");
    let yes = groups(&values).iter().find(|g| g.name == "yes").unwrap();
    assert_eq!(yes.count, 1);
    assert_eq!(yes.role, monitor::sample::ProcessRole::Outside);
    assert!(yes.memory_bytes > 0, "{yes:?}");
}

/// Two unrelated processes of one name are two groups, told apart by their pid.
#[tokio::test]
async fn two_unrelated_processes_of_one_name_are_two_groups() {
    let _turn = BURNING.lock().await;
    let burners = [Detached::start("yes", &[]), Detached::start("yes", &[])];
    let pids = burners.each_ref().map(|b| b.pid);
    let mut host = monitor::sources::host::Host::new(monitor::sources::host::Capacity::default());
    let each = |v: &Values| {
        pids.iter().all(|&pid| {
            groups(v)
                .iter()
                .any(|g| g.pid == pid && g.name == "yes" && g.count == 1 && g.cpu_pct > 5.0)
        })
    };
    let values = read_until(&mut host, Duration::from_secs(30), each).await;
    drop(burners);
    assert!(each(&values), "{values:?}");
}

/// A worker's short-lived children count under the worker: a `celery` (a shell under that
/// name) runs `yes` for 0.3 s at a time, so that no child is alive at two readings a second
/// apart; the worker's group still shows the CPU they burned, as the kernel counts it in
/// the worker's own figures.
#[tokio::test]
async fn short_lived_children_count_under_their_parent() {
    const READINGS: u32 = 8;
    let _turn = BURNING.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let celery = dir.path().join("celery");
    std::fs::copy("/bin/sh", &celery).unwrap();
    let script = "end=$(($(date +%s)+30)); \
                  while [ $(date +%s) -lt $end ]; do timeout 0.3 yes >/dev/null; done";
    let worker = Detached::start(celery.to_str().unwrap(), &["-c", script]);
    let mut host = monitor::sources::host::Host::new(monitor::sources::host::Capacity::default());
    host.read().await.unwrap();
    let (start, truth_before) = (Instant::now(), cpu_secs(worker.pid));
    let mut figures = Vec::new();
    let mut worker_secs = 0.0;
    let mut last = start;
    for n in 1..=READINGS {
        tokio::time::sleep_until((start + Duration::from_secs(n.into())).into()).await;
        let values = host.read().await.unwrap();
        let now = Instant::now();
        // Absent: below the 1 % from which a group of the stack is always kept.
        let pct = groups(&values)
            .iter()
            .find(|g| g.pid == worker.pid)
            .map_or(0.0, |g| {
                assert_eq!(
                    (g.name.as_str(), g.role),
                    ("celery", monitor::sample::ProcessRole::Worker)
                );
                g.cpu_pct
            });
        worker_secs += pct / 100.0 * now.duration_since(last).as_secs_f64();
        last = now;
        figures.push(pct.round());
    }
    let truth = cpu_secs(worker.pid) - truth_before;
    let window = last.duration_since(start).as_secs_f64();
    drop(worker);
    let average_pct = worker_secs / window * 100.0;
    let said = format!(
        "the worker's group: {average_pct:.0} % of a core on average, {worker_secs:.2} CPU-s \
         over {window:.1} s (per reading {figures:?}); the kernel's count for the worker and \
         its reaped children: {truth:.2} CPU-s"
    );
    println!("{said}");
    // No child lives 0.3 s: a sampler that saw only the processes alive at two readings would
    // show the worker at about 0 %.
    assert!(average_pct >= 25.0, "{said}");
    assert!(
        (worker_secs / truth - 1.0).abs() < 0.3,
        "the group's CPU is not the worker's own: {said}"
    );
}

/// The value of the one sample of `family` in Prometheus text.
fn exposed(text: &str, family: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{family} ")))
        .unwrap_or_else(|| panic!("no {family} in:\n{text}"))
        .parse()
        .unwrap()
}

/// `_total` counters are the servers' own counts, read as their exporters read them: Redis's
/// `total_commands_processed` and PostgreSQL's `xact_commit` lie between what the server said
/// just before and just after the tick, whole, from the first tick on (an integral of rates
/// would start at 0 and grow by fractions).
#[tokio::test]
async fn prometheus_counters_are_the_servers_own_counts() {
    let services = Services::start();
    let client = redis::Client::open(services.redis_url.as_str()).unwrap();
    let mut redis_connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut postgres = PgConnection::connect(&services.postgres_url).await.unwrap();
    // Counts far above zero, and far above what the monitor's own queries add.
    for _ in 0..300 {
        let _: i64 = redis::cmd("INCR")
            .arg("counted")
            .query_async(&mut redis_connection)
            .await
            .unwrap();
    }
    // On a connection of their own, closed: a backend publishes its counts as it exits.
    let mut committer = PgConnection::connect(&services.postgres_url).await.unwrap();
    for _ in 0..100 {
        committer.execute("SELECT 1").await.unwrap();
    }
    committer.close().await.unwrap();
    let redis_commands = async |connection: &mut redis::aio::MultiplexedConnection| {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(connection)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.trim().strip_prefix("total_commands_processed:"))
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    let commits = async |connection: &mut PgConnection| {
        let commits: i64 = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(connection)
        .await
        .unwrap();
        commits as f64
    };
    let sources: Vec<Box<dyn Source>> = vec![
        Box::new(Postgres::new(&services.postgres_url, Scope::Database)),
        Box::new(Redis::new(&services.redis_url, vec![])),
    ];
    let mut sampler = monitor::sampler::Sampler::new(sources, Duration::from_millis(500));
    let mut exposition = monitor::sinks::prometheus::Exposition::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while commits(&mut postgres).await < 100.0 {
        assert!(
            Instant::now() < deadline,
            "the commits were never published"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = (
        redis_commands(&mut redis_connection).await,
        commits(&mut postgres).await,
    );
    exposition.update(&sampler.tick().await);
    let text = exposition.render();
    let after = (
        redis_commands(&mut redis_connection).await,
        commits(&mut postgres).await,
    );
    for (family, before, after) in [
        ("monitor_redis_commands_total", before.0, after.0),
        ("monitor_postgres_commits_total", before.1, after.1),
    ] {
        let value = exposed(&text, family);
        assert!(
            before >= 100.0 && before <= value && value <= after && value.fract() == 0.0,
            "{family} is {value}; the server counted {before} before the tick, {after} after"
        );
    }
    assert!(
        text.contains("# TYPE monitor_redis_commands_total counter\n"),
        "{text}"
    );
}

/// No command line reaches a sample: a busy process whose arguments hold a secret shows by
/// its name alone; the monitor's `--postgres-url` (its password and a `?sslpassword=`) is in no
/// file, log line or HTTP answer; every tick carries only the allowed fields.
#[tokio::test]
async fn no_command_line_and_no_url_secret_reaches_any_output() {
    const ARGUMENT: &str = "PlantedArgument96";
    const SSL: &str = "PlantedSsl97";
    let services = Services::start();
    let mut postgres = url::Url::parse(&services.postgres_url).unwrap();
    let password = postgres.password().unwrap().to_owned();
    postgres.query_pairs_mut().append_pair("sslpassword", SSL);
    let out = tempfile::tempdir().unwrap();
    let jsonl = out.path().join("samples.jsonl");
    let csv = out.path().join("samples.csv");
    // Burns a core, so that it is among the busiest groups the host source keeps.
    let _turn = BURNING.lock().await;
    let burner = Detached::start("yes", &[&format!("password={ARGUMENT}")]);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["--postgres-url", postgres.as_str()])
        .args(["--interval", "300ms", "--listen", "127.0.0.1:0"])
        .arg("--out")
        .arg(&jsonl)
        .arg("--csv")
        .arg(&csv)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr_lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
    let mut printed = String::new();
    let base = loop {
        let line = stderr_lines
            .next_line()
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the monitor ended early: {printed}"));
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.strip_prefix("monitor: serving ") {
            break rest.split("/latest").next().unwrap().to_owned();
        }
    };
    // Await a tick that counts the burner.
    let deadline = Instant::now() + Duration::from_secs(60);
    let burning = |tick: &Tick| match tick.sources["host"].values.as_ref() {
        Some(Values::Host(h)) => h.processes.iter().any(|g| g.name == "yes"),
        _ => false,
    };
    loop {
        let latest = reqwest::get(format!("{base}/latest")).await.unwrap();
        if latest.status() == 200 && burning(&latest.json::<Tick>().await.unwrap()) {
            break;
        }
        assert!(Instant::now() < deadline, "the burner was never sampled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut served = String::new();
    for path in ["/latest", "/samples", "/metrics"] {
        served.push_str(
            &reqwest::get(format!("{base}{path}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").arg(&pid).status().unwrap().success());
    while let Some(line) = stderr_lines.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
    }
    let output = child.wait_with_output().await.unwrap();
    drop(burner);
    assert!(output.status.success(), "{printed}");
    let ticks = std::fs::read_to_string(&jsonl).unwrap();
    let everything = [
        String::from_utf8_lossy(&output.stdout).into_owned(),
        printed,
        served,
        ticks.clone(),
        std::fs::read_to_string(&csv).unwrap(),
    ]
    .join("\n");
    assert!(
        everything.contains("\"postgres\"") && everything.contains("\"yes\""),
        "PostgreSQL or the burner not sampled"
    );
    for secret in [ARGUMENT, SSL, password.as_str()] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    for line in ticks.lines() {
        let tick: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            monitor::sample::fields_not_allowed(&tick),
            Vec::<String>::new()
        );
    }
}

// Where a watched Redis queue's broker lives, checked during the run (sources/redis/queues.rs).
// The keys are Celery's own, as `app.send_task` wrote them to a broker on db 2 with no worker
// (Celery 5.7, Kombu 5.7): a set `_kombu.binding.<queue>` with one member
// `<queue>\x06\x16\x06\x16<queue>`, and the list `<queue>` of JSON messages, which a worker
// deletes when it drains it while the binding stays.

/// How often the queue tests' sources check the databases.
const QUEUE_CHECK: Duration = Duration::from_millis(200);

/// The tests' Redis: `TEST_REDIS_URL`'s when set (shared by tests running in parallel, so each
/// test has queue names of its own), else a server of this test's own.
fn queue_redis() -> (String, Option<Services>) {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) => (url.trim_end_matches('/').to_owned(), None),
        Err(_) => {
            let services = Services::start();
            (services.redis_url.clone(), Some(services))
        }
    }
}

/// A queue of a name no other test uses, planted as Celery's broker writes it in any database;
/// its keys are deleted from every database when dropped.
struct Broker {
    url: String,
    name: String,
}

impl Broker {
    fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    fn binding(&self) -> String {
        format!("_kombu.binding.{}", self.name)
    }

    fn watched(&self, db: i64) -> Queue {
        format!("{db}/{}", self.name).parse().unwrap()
    }

    async fn connection(&self, db: i64) -> redis::aio::MultiplexedConnection {
        redis::Client::open(format!("{}/{db}", self.url))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Declares the queue in `db`, as a publisher or a starting worker does.
    async fn bind(&self, db: i64) {
        let _: i64 = redis::cmd("SADD")
            .arg(self.binding())
            .arg(format!("{0}\x06\x16\x06\x16{0}", self.name))
            .query_async(&mut self.connection(db).await)
            .await
            .unwrap();
    }

    /// Publishes `n` messages in `db`.
    async fn push(&self, db: i64, n: usize) {
        let messages =
            vec!["{\"body\": \"W1sxXSwge31d\", \"content-type\": \"application/json\"}"; n];
        let _: i64 = redis::cmd("RPUSH")
            .arg(&self.name)
            .arg(messages)
            .query_async(&mut self.connection(db).await)
            .await
            .unwrap();
    }

    /// Consumes every message in `db`: Redis deletes the emptied list.
    async fn drain(&self, db: i64) {
        let _: i64 = redis::cmd("DEL")
            .arg(&self.name)
            .query_async(&mut self.connection(db).await)
            .await
            .unwrap();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let Ok(mut connection) =
            redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        for db in 0..4 {
            let _: redis::RedisResult<()> = redis::pipe()
                .cmd("SELECT")
                .arg(db)
                .cmd("DEL")
                .arg(&self.name)
                .arg(self.binding())
                .query(&mut connection);
        }
    }
}

/// One reading of `source`: its values and its notes.
async fn read_with_notes(source: &mut Redis) -> (Values, Vec<String>) {
    let values = source.read().await.unwrap();
    (values, source.notes())
}

/// The length a reading gives the list `key` (`DB/NAME`).
fn list_length(values: &Values, key: &str) -> i64 {
    match values {
        Values::Redis(r) => r.lists.get(key).copied().unwrap_or(-1),
        _ => -1,
    }
}

/// The broker on db 2, the queue watched on db 1: the list there is drained to nothing after
/// the first reading (so that at most checks it exists nowhere), and the binding key that
/// outlives it names db 2, within a few checks, once.
#[tokio::test]
async fn a_redis_queue_watched_in_the_wrong_db_names_the_brokers_db() {
    let (url, _services) = queue_redis();
    let broker = Broker::new(&url, "lt-wrong-db");
    broker.bind(2).await;
    broker.push(2, 3).await;
    let mut source = Redis::new(&url, vec![broker.watched(1)]).with_check_every(QUEUE_CHECK);
    let (first, notes) = read_with_notes(&mut source).await;
    assert!(notes.is_empty(), "one check proves nothing: {notes:?}");
    assert_eq!(list_length(&first, &format!("1/{}", broker.name)), 0);
    broker.drain(2).await;
    let started = Instant::now();
    let mut noted = None;
    for reading in 2..=60 {
        tokio::time::sleep(QUEUE_CHECK / 2).await;
        let (_, notes) = read_with_notes(&mut source).await;
        if !notes.is_empty() {
            noted = Some((reading, notes));
            break;
        }
    }
    let (reading, notes) = noted.unwrap_or_else(|| {
        panic!(
            "no note in 60 readings over {:.1} s",
            started.elapsed().as_secs_f64()
        )
    });
    println!(
        "noted at reading {reading}, {:.2} s after the drain (checks every {:?})",
        started.elapsed().as_secs_f64(),
        QUEUE_CHECK
    );
    let expected = format!(
        "queue \"{0}\" is watched in db 1, but the broker's keys for it (_kombu.binding.{0}) are \
         in db 2: watch 2/{0} (it reads 0 as it is)",
        broker.name
    );
    assert_eq!(notes, [expected], "at reading {reading}");
    // At most one note per queue per run, whatever the later checks find.
    broker.push(2, 2).await;
    let later = Instant::now();
    while later.elapsed() < QUEUE_CHECK * 4 {
        tokio::time::sleep(QUEUE_CHECK / 2).await;
        let (_, notes) = read_with_notes(&mut source).await;
        assert!(notes.is_empty(), "said again: {notes:?}");
    }
}

/// A stale queue in db 0 (its list never changes length, its binding left behind) while the
/// watched db 1 is idle for several checks, then declared and growing: no note at any reading.
#[tokio::test]
async fn a_stale_redis_list_elsewhere_is_no_evidence() {
    let (url, _services) = queue_redis();
    let broker = Broker::new(&url, "lt-stale");
    broker.bind(0).await;
    broker.push(0, 5).await;
    let mut source = Redis::new(&url, vec![broker.watched(1)]).with_check_every(QUEUE_CHECK);
    let key = format!("1/{}", broker.name);
    let started = Instant::now();
    let (mut readings, mut grew) = (0, 0);
    // Idle for 4 checks, then live for 4 more.
    while started.elapsed() < QUEUE_CHECK * 8 || readings < 8 {
        if started.elapsed() >= QUEUE_CHECK * 4 {
            broker.bind(1).await;
            broker.push(1, 1).await;
            grew += 1;
        }
        let (values, notes) = read_with_notes(&mut source).await;
        readings += 1;
        assert!(
            notes.is_empty(),
            "reading {readings} at {:.2} s: {notes:?}",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(list_length(&values, &key), grew, "reading {readings}");
        tokio::time::sleep(QUEUE_CHECK / 2).await;
    }
    println!(
        "{readings} readings over {:.2} s, no note; db 1's list grew to {grew}",
        started.elapsed().as_secs_f64()
    );
    assert!(grew > 0, "db 1's list never grew in {readings} readings");
}

/// The queue watched where its broker is from the start (an idle queue: its binding, no list),
/// while a list of the same name in db 3 changes at every reading: no note.
#[tokio::test]
async fn a_redis_queue_watched_in_its_brokers_db_is_no_note() {
    let (url, _services) = queue_redis();
    let broker = Broker::new(&url, "lt-right-db");
    broker.bind(1).await;
    let mut source = Redis::new(&url, vec![broker.watched(1)]).with_check_every(QUEUE_CHECK);
    let started = Instant::now();
    let mut readings = 0;
    while started.elapsed() < QUEUE_CHECK * 6 || readings < 6 {
        broker.push(3, 1).await;
        let (values, notes) = read_with_notes(&mut source).await;
        readings += 1;
        assert!(notes.is_empty(), "reading {readings}: {notes:?}");
        assert_eq!(list_length(&values, &format!("1/{}", broker.name)), 0);
        tokio::time::sleep(QUEUE_CHECK / 2).await;
    }
    println!(
        "{readings} readings over {:.2} s, no note",
        started.elapsed().as_secs_f64()
    );
}

/// Celery's result backend as a real worker writes it (the JSON captured from Celery 5.7 in
/// `src/celery/testdata/`): 1,050 results made after the source started are each counted once,
/// over ticks that read at most 400, the failures merged into one with its count and its
/// message redacted; a result from before the start is not counted; Kombu's unacked messages
/// are counted.
#[tokio::test]
async fn celery_results_are_counted_once_in_bounded_ticks() {
    let services = Services::start();
    let client = redis::Client::open(format!("{}/1", services.redis_url)).unwrap();
    let mut db1 = client.get_multiplexed_async_connection().await.unwrap();
    let captured = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let failure = captured(include_str!("../src/celery/testdata/failure.json"));
    let success = captured(include_str!("../src/celery/testdata/success.json"));
    let mut old = failure.clone();
    old["date_done"] = "2020-01-01T00:00:00.000000+00:00".into();
    old["result"]["exc_type"] = "OldError".into();
    let _: () = redis::cmd("SET")
        .arg("celery-task-meta-old")
        .arg(old.to_string())
        .query_async(&mut db1)
        .await
        .unwrap();
    let mut source = Redis::new(
        &format!("{}/0", services.redis_url),
        vec!["1/celery".parse().unwrap()],
    );
    let now = chrono::Utc::now().to_rfc3339();
    let mut pipe = redis::pipe();
    for i in 0..1050 {
        let mut result = if i % 21 == 0 {
            failure.clone()
        } else {
            success.clone()
        };
        result["date_done"] = now.clone().into();
        pipe.cmd("SET")
            .arg(format!("celery-task-meta-{i}"))
            .arg(result.to_string())
            .ignore();
    }
    pipe.cmd("HSET")
        .arg("unacked")
        .arg(&["a", "1", "b", "2", "c", "3"])
        .ignore();
    pipe.cmd("ZADD")
        .arg("unacked_index")
        .arg(&["1", "a", "2", "b", "3", "c"])
        .ignore();
    let _: () = pipe.query_async(&mut db1).await.unwrap();

    let mut per_tick = Vec::new();
    let mut failures: Vec<monitor::celery::TaskFailure> = Vec::new();
    let mut statuses = std::collections::BTreeMap::<String, u64>::new();
    let mut unacked = 0;
    // Until the results are all read, then three ticks more that must add nothing.
    let mut quiet = 0;
    while quiet < 3 && per_tick.len() < 30 {
        let Ok(Values::Redis(r)) = source.read().await else {
            panic!("the Redis source reads");
        };
        let read: u64 = r.celery.tasks.values().flat_map(|s| s.values()).sum();
        for statuses_of_task in r.celery.tasks.values() {
            for (status, n) in statuses_of_task {
                *statuses.entry(status.clone()).or_default() += n;
            }
        }
        failures.extend(r.celery.failures);
        unacked = r.celery.unacked;
        quiet = if read == 0 && !per_tick.is_empty() {
            quiet + 1
        } else {
            0
        };
        per_tick.push(read);
    }
    assert!(
        per_tick.iter().all(|&n| n <= 400) && per_tick.iter().sum::<u64>() == 1050,
        "results read per tick: {per_tick:?}"
    );
    assert_eq!(statuses.get("FAILURE"), Some(&50), "{statuses:?}");
    assert_eq!(statuses.get("SUCCESS"), Some(&1000), "{statuses:?}");
    assert!(
        failures.iter().all(|f| f.exception == "SessionBroken"),
        "{failures:#?}"
    );
    assert_eq!(failures.iter().map(|f| f.count).sum::<u64>(), 50);
    assert!(
        failures.iter().all(|f| !f.message.contains("hunter2pass")
            && !f.message.contains("s3cr3t-literal")
            && f.task == "app.worker.audio_overlay"),
        "{failures:#?}"
    );
    assert_eq!(unacked, 3);
}
