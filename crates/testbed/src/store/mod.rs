//! Where the testbed keeps users, files and tasks: PostgreSQL (as the real API does) or memory
//! (so that the demo runs on a machine without a database). Both sit behind one trait so the
//! handlers cannot tell them apart.

mod memory;
mod postgres;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use memory::MemoryStore;
pub use postgres::PostgresStore;

/// A storage failure the handlers cannot recover from (it becomes a 500).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The username is taken (unique constraint).
    #[error("Username already taken")]
    UsernameTaken,
    /// The email is registered (unique constraint).
    #[error("Email already registered")]
    EmailTaken,
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value has an unexpected form.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// A registered user.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Primary key.
    pub id: i64,
    /// Unique user name.
    pub username: String,
    /// Unique email.
    pub email: String,
    /// bcrypt hash; never serialized.
    #[serde(skip)]
    pub password_hash: String,
    /// Inactive users cannot log in (403).
    pub is_active: bool,
    /// Admins may call `/admin/*`.
    pub is_admin: bool,
    /// Free-form user settings.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A user to insert.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// User name.
    pub username: String,
    /// Email.
    pub email: String,
    /// bcrypt hash of the password.
    pub password_hash: String,
    /// Whether the user is an admin.
    pub is_admin: bool,
}

/// An uploaded file.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileRecord {
    /// Primary key.
    pub id: i64,
    /// Owner.
    #[serde(skip)]
    pub user_id: i64,
    /// Stored name.
    pub filename: String,
    /// Name the client sent.
    pub original_filename: String,
    /// Size in bytes.
    pub size: i64,
    /// Content type the client sent.
    pub content_type: String,
    /// Where the bytes are on disk.
    #[serde(skip)]
    pub storage_path: String,
    /// Media metadata (not probed at upload, as in the real API).
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Upload time.
    pub created_at: DateTime<Utc>,
}

/// A file to insert.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Owner.
    pub user_id: i64,
    /// Stored name.
    pub filename: String,
    /// Name the client sent.
    pub original_filename: String,
    /// Size in bytes.
    pub size: i64,
    /// Content type the client sent.
    pub content_type: String,
    /// Where the bytes are on disk.
    pub storage_path: String,
}

/// A task's kind, as the contract names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskType {
    /// Concatenate videos.
    Join,
    /// Put an audio track on a video.
    AudioOverlay,
    /// Burn text into a video.
    TextOverlay,
    /// Add subtitles.
    Subtitles,
    /// Picture in picture.
    VideoOverlay,
    /// Several operations.
    Combined,
}

/// Where a task is in its life.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Queued, not yet taken by a worker.
    Pending,
    /// A worker is on it.
    Processing,
    /// Done; output available.
    Completed,
    /// The worker gave up; `error_message` says why.
    Failed,
    /// Cancelled by the user.
    Cancelled,
}

macro_rules! string_enum {
    ($ty:ty { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            /// The name used in JSON, in the database and in query strings.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),* }
            }
            /// Parses the name produced by [`Self::as_str`].
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

string_enum!(TaskType {
    Join => "join",
    AudioOverlay => "audio_overlay",
    TextOverlay => "text_overlay",
    Subtitles => "subtitles",
    VideoOverlay => "video_overlay",
    Combined => "combined",
});

string_enum!(TaskStatus {
    Pending => "pending",
    Processing => "processing",
    Completed => "completed",
    Failed => "failed",
    Cancelled => "cancelled",
});

/// A processing task, serialized as the contract's TaskResponse.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Task {
    /// Primary key.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// Kind.
    #[serde(rename = "type")]
    pub task_type: TaskType,
    /// Status.
    pub status: TaskStatus,
    /// Input file ids.
    #[schema(value_type = Object)]
    pub input_files: Value,
    /// Output objects written by the worker.
    #[schema(value_type = Object)]
    pub output_files: Value,
    /// The request's options.
    #[schema(value_type = Object)]
    pub config: Value,
    /// Why it failed.
    pub error_message: Option<String>,
    /// 0 to 100.
    pub progress: f64,
    /// What the worker produced.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// How often it was retried.
    pub retry_count: i32,
    /// Queue priority.
    pub priority: i32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When it reached a final status.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A task to insert (always `pending`).
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Owner.
    pub user_id: i64,
    /// Kind.
    pub task_type: TaskType,
    /// Input file ids.
    pub input_files: Vec<i64>,
    /// The request's options.
    pub config: Value,
}

/// A change of status, applied only when the task is in one of the `from` states.
#[derive(Debug, Clone)]
pub struct Transition {
    /// States from which the change is allowed.
    pub from: &'static [TaskStatus],
    /// The new status.
    pub to: TaskStatus,
    /// New progress, 0 to 100.
    pub progress: f64,
    /// New error message (`None` clears it).
    pub error_message: Option<String>,
    /// New outputs (`None` keeps them).
    pub output_files: Option<Value>,
    /// New result (`None` keeps it).
    pub result: Option<Value>,
    /// Whether this is a retry.
    pub increment_retry: bool,
}

impl Transition {
    /// A plain change of status with no payload.
    pub fn new(from: &'static [TaskStatus], to: TaskStatus, progress: f64) -> Self {
        Self {
            from,
            to,
            progress,
            error_message: None,
            output_files: None,
            result: None,
            increment_retry: false,
        }
    }

    fn is_final(&self) -> bool {
        matches!(
            self.to,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

/// Offset and limit of a list request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return.
    pub limit: i64,
}

/// Filters of `GET /tasks`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<TaskStatus>,
    /// Only this kind.
    pub task_type: Option<TaskType>,
}

/// `GET /users/me/stats` figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserStats {
    /// All tasks.
    pub total_tasks: i64,
    /// Completed tasks.
    pub completed_tasks: i64,
    /// Failed tasks.
    pub failed_tasks: i64,
    /// Tasks being processed.
    pub processing_tasks: i64,
    /// Files uploaded.
    pub total_files: i64,
    /// Bytes uploaded.
    pub storage_used: i64,
}

/// The operations the API needs from its storage.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// What the start-up line says about this store (no secrets).
    fn describe(&self) -> String;
    /// Inserts a user; a taken username or email is an error of its own.
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// Finds a user by username or email.
    async fn user_by_login(&self, login: &str) -> Result<Option<User>, StoreError>;
    /// Finds a user by id.
    async fn user(&self, id: i64) -> Result<Option<User>, StoreError>;
    /// Replaces a user's settings.
    async fn set_settings(&self, id: i64, settings: Value) -> Result<Option<User>, StoreError>;
    /// Inserts a file.
    async fn insert_file(&self, file: NewFile) -> Result<FileRecord, StoreError>;
    /// A page of a user's files, newest first, and their total count.
    async fn files(&self, user_id: i64, page: Page) -> Result<(Vec<FileRecord>, i64), StoreError>;
    /// One of a user's files.
    async fn file(&self, user_id: i64, id: i64) -> Result<Option<FileRecord>, StoreError>;
    /// Deletes one of a user's files and returns it.
    async fn delete_file(&self, user_id: i64, id: i64) -> Result<Option<FileRecord>, StoreError>;
    /// Inserts a pending task.
    async fn create_task(&self, task: NewTask) -> Result<Task, StoreError>;
    /// A task by id, limited to one user's when `user_id` is given.
    async fn task(&self, user_id: Option<i64>, id: i64) -> Result<Option<Task>, StoreError>;
    /// A page of a user's tasks, newest first, and their total count.
    async fn tasks(
        &self,
        user_id: i64,
        filter: TaskFilter,
        page: Page,
    ) -> Result<(Vec<Task>, i64), StoreError>;
    /// Applies `transition` if the task is in one of its `from` states; `None` otherwise.
    async fn transition(&self, id: i64, transition: Transition)
    -> Result<Option<Task>, StoreError>;
    /// A user's figures.
    async fn user_stats(&self, user_id: i64) -> Result<UserStats, StoreError>;
    /// Count of all tasks by status.
    async fn task_counts(&self) -> Result<BTreeMap<&'static str, i64>, StoreError>;
    /// Spends `delay` holding a storage connection: with PostgreSQL, inside `pg_sleep` on a
    /// pooled connection, so that a small pool makes concurrent requests queue.
    async fn hold_connection(&self, delay: Duration) -> Result<(), StoreError>;
}
