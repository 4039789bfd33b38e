//! The Python reference stack of `testbed-py/` (FastAPI on uvicorn, Celery on Redis), started
//! for a test as a user runs it: one uvicorn process and one celery worker (concurrency 2) from
//! the venv that `scripts/python-venv.sh` makes (`TESTBED_PY_VENV`), on a fresh PostgreSQL
//! database and a Redis db of its own. Dropping it stops both process trees by their pids.
//!
//! Its database has the pg_stat_statements extension created (the test server preloads it).
//! Redis dbs 2..=15 are handed out to stacks (0 and 1 are the contract's cache and queue): a
//! stack claims one with `SET NX` of a key (so parallel test binaries never share one), flushes
//! it, and flushes it again when it stops, so no stale Celery result outlives its stack.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{fresh_database, redis_url};

/// How long the API and the worker get to come up on a busy 2-core machine (imports, the
/// seeding of 5·10^5 audit rows).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The Redis dbs stacks take turns on.
const REDIS_DBS: std::ops::RangeInclusive<u8> = 2..=15;

/// The key by which a stack holds its Redis db (expires should the test be killed).
const CLAIM_KEY: &str = "testbed-py:claimed-by";

/// The running stack.
pub struct PythonStack {
    api: Child,
    worker: Child,
    port: u16,
    database_url: String,
    redis_db: u8,
    dir: tempfile::TempDir,
    settings: Vec<(String, String)>,
}

/// The folder of the Python project.
pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testbed-py")
}

/// The venv holding the stack's requirements.
pub fn venv() -> PathBuf {
    std::env::var_os("TESTBED_PY_VENV")
        .map(PathBuf::from)
        .expect(
            "TESTBED_PY_VENV is not set: these tests run the Python stack of testbed-py/; \
         export TESTBED_PY_VENV=$(scripts/python-venv.sh) (or run them with scripts/test.sh)",
        )
}

impl PythonStack {
    /// Starts the stack with `env` on top of its test settings (rate limit lifted, storage in
    /// a temporary folder): `[("PLANT_N_PLUS_ONE", "1")]` plants a bottleneck. Returns once
    /// `GET /api/v1/health/` answers 200 and the worker says it is ready.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let venv = venv();
        let database_url = fresh_database().await;
        install_pg_stat_statements(&database_url).await;
        let redis_db = claim_redis_db();
        let dir = tempfile::tempdir().expect("a temporary folder for the stack");
        let port = free_port();
        let redis = format!("{}/{redis_db}", redis_url());
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let storage = dir.path().join("storage");
        let mut settings: Vec<(String, String)> = [
            ("DATABASE_URL", database_url.as_str()),
            ("REDIS_URL", redis.as_str()),
            ("STORAGE_DIR", &storage.display().to_string()),
            ("JWT_SECRET_KEY", &format!("{secret}{secret}")),
            ("RATE_LIMIT_PER_MINUTE", "1000000"),
            ("PYTHONUNBUFFERED", "1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        settings.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let api = spawn_api(&settings, port, dir.path());
        let worker_name = format!("testbed-py-{}@%h", &secret[..8]);
        let worker = spawn(
            &venv.join("bin/celery"),
            &[
                "-A",
                "app.worker",
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "INFO",
                "-n",
                &worker_name,
            ],
            &settings,
            &dir.path().join("worker.log"),
        );
        let mut stack = Self {
            api,
            worker,
            port,
            database_url,
            redis_db,
            dir,
            settings,
        };
        stack.wait_until_ready();
        stack
    }

    /// `http://127.0.0.1:<port>`, the `--host` of loadgen.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The stack's own database.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The Celery broker and result backend: the test Redis with the stack's db.
    pub fn redis_url(&self) -> String {
        format!("{}/{}", redis_url(), self.redis_db)
    }

    /// Celery's queue as `--monitor-redis-queue` takes it: `<db>/celery`.
    pub fn monitor_redis_queue(&self) -> String {
        format!("{}/celery", self.redis_db)
    }

    /// The stack's Redis db number.
    pub fn redis_db(&self) -> u8 {
        self.redis_db
    }

    /// The uvicorn process.
    pub fn api_pid(&self) -> u32 {
        self.api.id()
    }

    /// The celery worker's main process (its pool's processes are its children).
    pub fn worker_pid(&self) -> u32 {
        self.worker.id()
    }

    /// Where uvicorn's output goes.
    pub fn api_log_path(&self) -> PathBuf {
        self.dir.path().join("api.log")
    }

    /// Where the worker's output goes (what `--worker-log` reads).
    pub fn worker_log_path(&self) -> PathBuf {
        self.dir.path().join("worker.log")
    }

    /// Both logs, for a panic message.
    pub fn logs(&self) -> String {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- uvicorn ---\n{}\n--- celery ---\n{}",
            read(self.api_log_path()),
            read(self.worker_log_path())
        )
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut api_up = false;
        let mut worker_up = false;
        let mut port_retries = 3;
        while !(api_up && worker_up) {
            // The free port was taken between our probe and uvicorn's bind: another one.
            if port_retries > 0
                && matches!(self.api.try_wait(), Ok(Some(_)))
                && std::fs::read_to_string(self.api_log_path())
                    .is_ok_and(|log| log.contains("address already in use"))
            {
                port_retries -= 1;
                self.port = free_port();
                self.api = spawn_api(&self.settings, self.port, self.dir.path());
            }
            let exited = [("uvicorn", &mut self.api), ("celery", &mut self.worker)]
                .into_iter()
                .find_map(|(name, child)| Some((name, child.try_wait().ok()??)));
            if let Some((name, status)) = exited {
                panic!(
                    "{name} of testbed-py exited at start-up ({status}):\n{}",
                    self.logs()
                );
            }
            api_up = api_up || health_answers(self.port);
            worker_up = worker_up
                || std::fs::read_to_string(self.worker_log_path())
                    .is_ok_and(|log| log.contains(" ready."));
            assert!(
                Instant::now() < deadline,
                "testbed-py was not ready in {START_TIMEOUT:?} (API up: {api_up}, worker up: {worker_up}):\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PythonStack {
    fn drop(&mut self) {
        for child in [&mut self.api, &mut self.worker] {
            stop_group(child);
        }
        release_redis_db(self.redis_db);
        drop_database(&self.database_url);
    }
}

/// The server preloads pg_stat_statements; its view is read in a database where the extension
/// is created, as a user who has it installed has done in theirs.
async fn install_pg_stat_statements(url: &str) {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(url)
        .await
        .expect("the stack's fresh database answers");
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut db)
        .await
        .expect("pg_stat_statements installs (scripts/services.sh preloads it)");
    let _ = db.close().await;
}

/// Drops the stack's database (5·10^5 seeded rows each: the test server's disk would fill up
/// over a run of the suite), with whatever still connects to it.
fn drop_database(url: &str) {
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    let _ = Command::new("psql")
        .arg(crate::postgres_admin_url())
        .args([
            "-qc",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// uvicorn on `port`, its output in `dir/api.log`.
fn spawn_api(settings: &[(String, String)], port: u16, dir: &Path) -> Child {
    let port = port.to_string();
    spawn(
        &venv().join("bin/uvicorn"),
        &["app.main:app", "--host", "127.0.0.1", "--port", &port],
        settings,
        &dir.join("api.log"),
    )
}

/// Starts `program` in a process group of its own (so that its children, celery's pool and
/// ffmpeg, stop with it), in the project folder, with only `settings` and PATH/HOME.
fn spawn(program: &Path, args: &[&str], settings: &[(String, String)], log: &Path) -> Child {
    let out = File::create(log).expect("the stack's log file");
    let err = out.try_clone().expect("the stack's log file");
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(project_dir())
        .env_clear()
        .env("PYTHONPATH", project_dir())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    for name in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    for (k, v) in settings {
        command.env(k, v);
    }
    command.spawn().unwrap_or_else(|e| {
        panic!(
            "{} does not start ({e}): is TESTBED_PY_VENV a venv of testbed-py/requirements.txt?",
            program.display()
        )
    })
}

/// TERM to the whole group, 10 s to go (celery finishes its running jobs), then KILL.
fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Whatever is left of the group (pool processes, an ffmpeg) goes too.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Whether `GET /api/v1/health/` answers 200.
fn health_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /api/v1/health/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

fn redis_connection() -> redis::Connection {
    redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
        .expect("Redis answers at TEST_REDIS_URL")
}

/// The first db of [`REDIS_DBS`] no other stack holds, flushed, held by this process.
fn claim_redis_db() -> u8 {
    let mut redis = redis_connection();
    let me = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    for db in REDIS_DBS {
        let claim = |redis: &mut redis::Connection| -> bool {
            redis::cmd("SELECT").arg(db).exec(redis).is_ok()
                && redis::cmd("SET")
                    .arg(CLAIM_KEY)
                    .arg(&me)
                    .arg("NX")
                    .arg("EX")
                    .arg(1800)
                    .query::<Option<String>>(redis)
                    .is_ok_and(|set| set.is_some())
        };
        if !claim(&mut redis) {
            continue;
        }
        // Keys left by a stack that was killed: flushed, then claimed again (another process
        // may take the db in between; then this one moves on).
        let size: u64 = redis::cmd("DBSIZE").query(&mut redis).unwrap_or(0);
        if size <= 1 {
            return db;
        }
        let _ = redis::cmd("FLUSHDB").exec(&mut redis);
        if claim(&mut redis) {
            return db;
        }
    }
    panic!("every Redis db in {REDIS_DBS:?} is held by another testbed-py stack")
}

fn release_redis_db(db: u8) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut redis) = client.get_connection() else {
        return;
    };
    if redis::cmd("SELECT").arg(db).exec(&mut redis).is_ok() {
        let _ = redis::cmd("FLUSHDB").exec(&mut redis);
    }
}

/// A Redis db of the stacks' range held by a test of its own (a Celery app of the test's), so
/// that no stack and no other test's monitor sees its keys: flushed when claimed and when
/// dropped.
pub struct ClaimedRedisDb(pub u8);

impl ClaimedRedisDb {
    /// Claims the first free db, as a stack does.
    pub fn claim() -> Self {
        Self(claim_redis_db())
    }

    /// `redis://.../<db>` on the test Redis.
    pub fn url(&self) -> String {
        format!("{}/{}", redis_url(), self.0)
    }
}

impl Drop for ClaimedRedisDb {
    fn drop(&mut self) {
        release_redis_db(self.0);
    }
}
