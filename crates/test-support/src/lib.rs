//! Helpers for the workspace's tests (never shipped: `publish = false`, and no binary links it):
//! a testbed on the real services started by `scripts/test.sh` (`TEST_DATABASE_URL`,
//! `TEST_REDIS_URL`), the media fixtures, and throwaway busybox containers. They panic, saying
//! what to do, when a service is missing: a test that needs PostgreSQL must fail without it,
//! never skip.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use testbed::{Config, Testbed};

pub mod python_stack;
pub use python_stack::PythonStack;

/// The PostgreSQL server `scripts/test.sh` started (an admin URL on its `postgres` database).
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: these tests need a real PostgreSQL; run them with scripts/test.sh",
    )
}

/// The Redis server `scripts/test.sh` started.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").expect(
        "TEST_REDIS_URL is not set: these tests need a real Redis; run them with scripts/test.sh",
    )
}

/// A new, empty database on the test server; returns its URL.
pub async fn fresh_database() -> String {
    let admin = postgres_admin_url();
    let name = format!("testbed_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(&admin)
        .await
        .expect("PostgreSQL answers at TEST_DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("CREATE DATABASE works on the test server");
    pool.close().await;
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// A testbed on real PostgreSQL and Redis (its own database and queue), after `tweak`.
pub async fn start_on_services(tweak: impl FnOnce(&mut Config)) -> Testbed {
    let mut config = Config::for_tests();
    config.database_url = Some(fresh_database().await);
    config.redis_url = Some(format!("{}/1", redis_url()));
    config.queue_name = format!("celery-test-{}", uuid::Uuid::new_v4().simple());
    config.job_seconds = Duration::from_millis(200);
    tweak(&mut config);
    testbed::start(config).await.expect("the testbed starts")
}

/// A testbed on the in-memory store, after `tweak`.
pub async fn start_in_memory(tweak: impl FnOnce(&mut Config)) -> Testbed {
    let mut config = Config::for_tests();
    config.job_seconds = Duration::from_millis(200);
    tweak(&mut config);
    testbed::start(config).await.expect("the testbed starts")
}

/// A Docker image holding only Debian's static busybox (`/bin/busybox`), imported once per test
/// binary: no image can be pulled on our machines.
pub fn busybox_image() -> &'static str {
    static IMPORTED: OnceLock<()> = OnceLock::new();
    const IMAGE: &str = "loadtest-busybox:test";
    IMPORTED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("bin")).expect("a folder for the image");
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox exists (apt-get install busybox-static)");
        let tar = dir.path().join("rootfs.tar");
        let packed = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status();
        assert!(
            packed.is_ok_and(|s| s.success()),
            "tar of the busybox root failed"
        );
        let imported = Command::new("docker")
            .arg("import")
            .arg(&tar)
            .arg(IMAGE)
            .output()
            .expect("docker runs");
        assert!(
            imported.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&imported.stderr)
        );
    });
    IMAGE
}

/// A container of [`busybox_image`] running `command` (no network), removed when dropped.
pub struct Container(pub String);

impl Container {
    /// Starts `sh -c command` in a new container named `prefix-<random>`.
    pub fn run(prefix: &str, command: &str) -> Self {
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        let output = Command::new("docker")
            .args([
                "run",
                "-d",
                "--network",
                "none",
                "--name",
                &name,
                busybox_image(),
                "/bin/busybox",
                "sh",
                "-c",
                command,
            ])
            .output()
            .expect("docker runs");
        assert!(
            output.status.success(),
            "docker run: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(name)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// Fixtures made once per test binary by fixtures-gen (1 s media: quick to make and upload).
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("loadtest-fixtures-{}", std::process::id()));
        let spec = fixtures_gen::spec::FixtureSpec {
            duration_secs: 1.0,
            ..Default::default()
        };
        fixtures_gen::Fixtures::new(&dir, spec, fixtures_gen::Tools::default())
            .generate(false)
            .expect("ffmpeg makes the fixtures (apt-get install ffmpeg)");
        dir
    })
}

/// A TLS server configuration presenting a fresh self-signed certificate for `localhost`, whose
/// PEM is written to `ca_file` (for a client's `--ca-cert`).
pub fn self_signed_tls(ca_file: &Path) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .expect("a self-signed certificate");
    std::fs::write(ca_file, certified.cert.pem()).expect("the certificate file is written");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring's default protocol versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(certified.cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        )),
    )
    .expect("the certificate and key match");
    std::sync::Arc::new(config)
}

/// A program started outside this test's process tree, as another program on the host is: its
/// launcher (`sh ... &`) exits at once, so it is reparented and no descendant of the test (which
/// a host source in the test's process counts as the load generator's); `setsid` makes it the
/// leader of its own process group. Stopped with its whole group, by its pid, when dropped.
pub struct Detached {
    /// The program's pid (its process group's too).
    pub pid: u32,
}

impl Detached {
    /// `program args...`, its output discarded (the arguments are passed as they are, never
    /// through a shell's parsing).
    pub fn start(program: &str, args: &[&str]) -> Self {
        let output = Command::new("sh")
            .arg("-c")
            .arg(r#"setsid "$0" "$@" >/dev/null 2>&1 </dev/null & echo $!"#)
            .arg(program)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .expect("sh runs");
        let pid = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid from sh for {program}: {output:?}"));
        Self { pid }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let group = format!("-{}", self.pid);
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        // stress-ng stops its workers on TERM; whatever is left goes with KILL.
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

/// Other work on the host, as on a shared CI runner: `stress-ng --cpu 2 --cpu-load 60`
/// outside the test's process tree, shared by the tests that hold it at the same time (started
/// by the first, stopped by the last), and bounded at 15 minutes whatever happens.
pub struct BusyHost(());

static BUSY_HOST: std::sync::Mutex<(usize, Option<Detached>)> = std::sync::Mutex::new((0, None));

impl BusyHost {
    /// Holds the stress until dropped.
    pub fn hold() -> Self {
        let mut busy = BUSY_HOST.lock().unwrap_or_else(|e| e.into_inner());
        if busy.0 == 0 {
            assert!(
                Command::new("stress-ng").arg("--version").output().is_ok(),
                "stress-ng is missing: apt-get install stress-ng"
            );
            busy.1 = Some(Detached::start(
                "stress-ng",
                &[
                    "--cpu",
                    "2",
                    "--cpu-load",
                    "60",
                    "--timeout",
                    "900s",
                    "--quiet",
                ],
            ));
        }
        busy.0 += 1;
        Self(())
    }

    /// The name the host's samples give it.
    pub const NAME: &'static str = "stress-ng";
}

impl Drop for BusyHost {
    fn drop(&mut self) {
        let mut busy = BUSY_HOST.lock().unwrap_or_else(|e| e.into_inner());
        busy.0 -= 1;
        if busy.0 == 0 {
            busy.1 = None;
        }
    }
}
