//! `loadgen env seed`: accounts made before the run, as the built-in scenario's users would make
//! them at start-up (register, log in, upload 3 videos and 1 audio file), written as a
//! `--user-data` CSV file. A run's users that take a row skip those steps (`unless`), so the
//! run's start-up is not bcrypt (register and login hash a password inside the request).

use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::Method;
use http::header::{AUTHORIZATION, HeaderValue};
use serde_json::Value;

use crate::http::{Answer, Connection, MultipartField, Options, Payload, Target};
use crate::scenario::data;

/// The columns of the accounts file: the built-in scenario's variables.
const COLUMNS: &[&str] = &[
    "username",
    "email",
    "password",
    "user_id",
    "token",
    "videos:json",
    "audio:json",
];
/// Videos per account: enough for either user type of the built-in scenario.
const VIDEOS: usize = 3;
/// The fixtures uploaded, as the built-in scenario uploads them.
const VIDEO: (&str, &str) = ("test_video.mp4", "video/mp4");
const AUDIO: (&str, &str) = ("test_audio.mp3", "audio/mpeg");

/// What to seed.
pub struct Plan {
    /// The API.
    pub host: String,
    /// How many accounts.
    pub accounts: u32,
    /// Requests at a time.
    pub concurrency: usize,
    /// The files each account uploads, if any.
    pub files: Option<Files>,
    /// The accounts' names start with it: unique per seed, so that seeding again never
    /// collides with the accounts of an earlier one.
    pub prefix: String,
}

/// The fixtures uploaded.
pub struct Files {
    video: Bytes,
    audio: Bytes,
}

impl Files {
    /// Reads the fixtures from `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map(Bytes::from)
                .with_context(|| {
                    format!(
                        "--fixtures {}: cannot read {name}: make the fixtures with \
                     `cargo run -p fixtures-gen -- --out {}`, or seed with --no-files",
                        dir.display(),
                        dir.display()
                    )
                })
        };
        Ok(Self {
            video: read(VIDEO.0)?,
            audio: read(AUDIO.0)?,
        })
    }
}

/// A prefix for this seed's account names.
pub fn prefix() -> String {
    format!("seed{:08x}", rand::random::<u32>())
}

/// Makes the accounts; returns the accounts file's text.
pub async fn run(plan: Plan) -> anyhow::Result<String> {
    let target = Target::resolve(&plan.host, None)
        .await
        .with_context(|| format!("--host {}", plan.host))?;
    let password = format!("Seed1-{:016x}", rand::random::<u64>());
    let rows = crate::http::spawn_apart(move || async move {
        let plan = Rc::new(plan);
        let target = Rc::new(target);
        let lanes = (0..plan.concurrency).map(|lane| {
            let plan = plan.clone();
            let target = target.clone();
            let password = password.clone();
            async move {
                let options = Options {
                    timeout: Duration::from_secs(60),
                    ..Options::default()
                };
                let mut connection = Connection::new(target, options);
                let mut rows = Vec::new();
                let lanes = u32::try_from(plan.concurrency).unwrap_or(u32::MAX);
                let mine =
                    (0..plan.accounts).filter(|i| i % lanes == u32::try_from(lane).unwrap_or(0));
                for index in mine {
                    let username = format!("{}_{index}", plan.prefix);
                    let row = account(&mut connection, &plan, &username, &password)
                        .await
                        .map_err(|why| format!("account {username}: {why}"))?;
                    rows.push((index, row));
                }
                Ok::<_, String>(rows)
            }
        });
        let mut rows = Vec::new();
        for lane in futures::future::join_all(lanes).await {
            rows.extend(lane?);
        }
        rows.sort_by_key(|(index, _)| *index);
        Ok(rows.into_iter().map(|(_, row)| row).collect::<Vec<_>>())
    })
    .await
    .map_err(|e| anyhow::anyhow!("seeding: {e}"))?
    .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
    data::to_csv(COLUMNS, &rows).map_err(anyhow::Error::msg)
}

/// Registers, logs in and uploads for one account; returns its row.
async fn account(
    connection: &mut Connection,
    plan: &Plan,
    username: &str,
    password: &str,
) -> Result<Vec<Option<String>>, String> {
    let email = format!("{username}@seed.loadtest.example.com");
    let registered = send(
        connection,
        "/api/v1/auth/register",
        &[],
        &Payload::json(&serde_json::json!({
            "username": username, "email": email, "password": password,
        })),
        201,
    )
    .await?;
    let user_id = field(&registered, "id")?;
    let logged_in = send(
        connection,
        "/api/v1/auth/login",
        &[],
        &Payload::form([("username", username), ("password", password)]),
        200,
    )
    .await?;
    let token = match logged_in.get("access_token") {
        Some(Value::String(token)) => token.clone(),
        _ => return Err("login answered no access_token".to_owned()),
    };
    let (mut videos, mut audio) = (None, None);
    if let Some(files) = &plan.files {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "login answered a token that is no header value".to_owned())?;
        let headers = [(AUTHORIZATION, bearer)];
        let mut ids = Vec::new();
        for _ in 0..VIDEOS {
            ids.push(upload(connection, &headers, VIDEO, &files.video).await?);
        }
        videos = Some(Value::Array(ids).to_string());
        audio = Some(
            upload(connection, &headers, AUDIO, &files.audio)
                .await?
                .to_string(),
        );
    }
    Ok(vec![
        Some(username.to_owned()),
        Some(email),
        Some(password.to_owned()),
        Some(user_id.to_string()),
        Some(token),
        videos,
        audio,
    ])
}

/// Uploads one file; returns its id.
async fn upload(
    connection: &mut Connection,
    headers: &[(http::HeaderName, HeaderValue)],
    (name, content_type): (&str, &str),
    bytes: &[u8],
) -> Result<Value, String> {
    let payload = Payload::multipart(&[MultipartField {
        name: "file",
        filename: Some(name),
        content_type: Some(content_type),
        bytes,
    }]);
    let answer = send(connection, "/api/v1/files/upload", headers, &payload, 201).await?;
    field(&answer, "id")
}

/// POSTs and reads the JSON answer, which must have status `expect`.
async fn send(
    connection: &mut Connection,
    path: &str,
    headers: &[(http::HeaderName, HeaderValue)],
    payload: &Payload,
    expect: u16,
) -> Result<Value, String> {
    let full = format!("{}{path}", connection.target().base_path);
    let answer: Answer = connection
        .send(&Method::POST, &full, headers, payload)
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    if answer.status != expect {
        let body = String::from_utf8_lossy(&answer.body);
        let body: String = body.chars().take(200).collect();
        let hint = if answer.status == 429 {
            " (the API's rate limit: raise RATE_LIMIT_PER_MINUTE, or seed with fewer accounts)"
        } else {
            ""
        };
        return Err(format!(
            "POST {path} answered {} (expected {expect}): {body}{hint}",
            answer.status
        ));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| format!("POST {path}: the answer is not JSON: {e}"))
}

fn field(answer: &Value, name: &str) -> Result<Value, String> {
    match answer.get(name) {
        Some(value) if !value.is_null() => Ok(value.clone()),
        _ => Err(format!("the answer has no {name}: {answer}")),
    }
}

/// Writes `bytes` to `path`, readable by its owner only: the file holds passwords and tokens.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: narrow it too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}
