//! Shared helpers: the real services the tests need, a testbed per test on its own port and its
//! own database, and a small client that speaks the contract.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use testbed::Testbed;

pub use test_support::{postgres_admin_url, redis_url, start_in_memory, start_on_services};

/// Real media made once per test binary by fixtures-gen (1 s, to keep it quick).
pub fn media() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("testbed-media-{}", std::process::id()));
        let spec = fixtures_gen::spec::FixtureSpec {
            duration_secs: 1.0,
            ..Default::default()
        };
        fixtures_gen::Fixtures::new(&dir, spec, fixtures_gen::Tools::default())
            .generate(false)
            .expect("ffmpeg makes the test media (apt-get install ffmpeg)");
        let silent = dir.join("silent");
        let spec = fixtures_gen::spec::FixtureSpec {
            duration_secs: 1.0,
            video_has_audio: false,
            ..Default::default()
        };
        fixtures_gen::Fixtures::new(&silent, spec, fixtures_gen::Tools::default())
            .generate(false)
            .unwrap();
        dir
    })
}

/// A client for one user of the API.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

impl Client {
    pub fn new(testbed: &Testbed) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: format!("{}/api/v1", testbed.base_url()),
            token: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.authed(self.http.get(self.url(path)))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.authed(self.http.post(self.url(path)).json(&body))).await
    }

    pub async fn register(&self, name: &str) -> (StatusCode, Value) {
        self.post(
            "/auth/register",
            json!({ "username": name, "email": format!("{name}@example.com"), "password": "TestPass123" }),
        )
        .await
    }

    pub async fn login(&mut self, name: &str, password: &str) -> (StatusCode, Value) {
        let request = self
            .http
            .post(self.url("/auth/login"))
            .form(&[("username", name), ("password", password)]);
        let (status, body) = send(request).await;
        if status == StatusCode::OK {
            self.token = Some(body["access_token"].as_str().unwrap().to_owned());
        }
        (status, body)
    }

    /// Registers and logs in a new user.
    pub async fn signed_up(testbed: &Testbed, name: &str) -> Self {
        let mut client = Self::new(testbed);
        let (status, body) = client.register(name).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = client.login(name, "TestPass123").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        client
    }

    pub async fn upload_bytes(
        &self,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let part = Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(content_type)
            .unwrap();
        let request = self
            .http
            .post(self.url("/files/upload"))
            .multipart(Form::new().part("file", part));
        send(self.authed(request)).await
    }

    pub async fn upload(&self, path: &Path, content_type: &str) -> i64 {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let (status, body) = self
            .upload_bytes(&name, content_type, std::fs::read(path).unwrap())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Polls a task until it leaves pending/processing or `timeout` passes; returns its last state.
    pub async fn wait_for_task(&self, id: i64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, task) = self.get(&format!("/tasks/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{task}");
            let state = task["status"].as_str().unwrap();
            if !matches!(state, "pending" | "processing") || Instant::now() > deadline {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the testbed answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, body)
}
