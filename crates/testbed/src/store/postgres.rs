//! The PostgreSQL store, as the real API keeps its data. Migrations run at start-up; the pool's
//! size is the `--db-pool` knob.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;
use sqlx::{Connection, PgPool};

use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A store on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    description: String,
}

impl PostgresStore {
    /// Connects with a pool of `pool_size` connections and runs the migrations. `shown_url` is the
    /// URL with its password masked, for the start-up line.
    pub async fn connect(url: &str, shown_url: &str, pool_size: u32) -> Result<Self, StoreError> {
        // One direct attempt first: the pool retries a refused connection until its acquire
        // timeout, while a wrong URL at start-up should fail at once.
        let probe = sqlx::PgConnection::connect(url);
        let probe = tokio::time::timeout(Duration::from_secs(10), probe)
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))??;
        probe.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            // Requests wait for a connection as long as a client would wait for an answer.
            .acquire_timeout(Duration::from_secs(60))
            .connect(url)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(e.into()))?;
        Ok(Self {
            pool,
            description: format!("PostgreSQL {shown_url} (pool of {})", pool_size.max(1)),
        })
    }

    /// The pool, for tests that inspect the database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    email: String,
    password_hash: String,
    is_active: bool,
    is_admin: bool,
    settings: Json<Value>,
    created_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        Self {
            id: r.id,
            username: r.username,
            email: r.email,
            password_hash: r.password_hash,
            is_active: r.is_active,
            is_admin: r.is_admin,
            settings: r.settings.0,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct FileRow {
    id: i64,
    user_id: i64,
    filename: String,
    original_filename: String,
    size: i64,
    content_type: String,
    storage_path: String,
    metadata: Json<Value>,
    created_at: DateTime<Utc>,
}

impl From<FileRow> for FileRecord {
    fn from(r: FileRow) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            filename: r.filename,
            original_filename: r.original_filename,
            size: r.size,
            content_type: r.content_type,
            storage_path: r.storage_path,
            metadata: r.metadata.0,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: i64,
    user_id: i64,
    #[sqlx(rename = "type")]
    task_type: String,
    status: String,
    input_files: Json<Value>,
    output_files: Json<Value>,
    config: Json<Value>,
    error_message: Option<String>,
    progress: f64,
    result: Option<Json<Value>>,
    retry_count: i32,
    priority: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;

    fn try_from(r: TaskRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            user_id: r.user_id,
            task_type: TaskType::parse(&r.task_type)
                .ok_or_else(|| StoreError::Corrupt(format!("task type {:?}", r.task_type)))?,
            status: TaskStatus::parse(&r.status)
                .ok_or_else(|| StoreError::Corrupt(format!("task status {:?}", r.status)))?,
            input_files: r.input_files.0,
            output_files: r.output_files.0,
            config: r.config.0,
            error_message: r.error_message,
            progress: r.progress,
            result: r.result.map(|j| j.0),
            retry_count: r.retry_count,
            priority: r.priority,
            created_at: r.created_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
        })
    }
}

fn tasks_from(rows: Vec<TaskRow>) -> Result<Vec<Task>, StoreError> {
    rows.into_iter().map(Task::try_from).collect()
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let inserted = sqlx::query_as::<_, UserRow>(
            "INSERT INTO users (username, email, password_hash, is_admin) VALUES ($1, $2, $3, $4)
             RETURNING *",
        )
        .bind(&new.username)
        .bind(&new.email)
        .bind(&new.password_hash)
        .bind(new.is_admin)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => Ok(row.into()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                // PostgreSQL reports whichever constraint it checked first; the real API checks
                // the email before the username, so say that when both collide.
                let email_taken: bool =
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)")
                        .bind(&new.email)
                        .fetch_one(&self.pool)
                        .await?;
                Err(if email_taken {
                    StoreError::EmailTaken
                } else {
                    StoreError::UsernameTaken
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query_as::<_, UserRow>(
            "SELECT * FROM users WHERE username = $1 OR email = $1 LIMIT 1",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(User::from))
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row = sqlx::query_as::<_, UserRow>("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(User::from))
    }

    async fn set_settings(&self, id: i64, settings: Value) -> Result<Option<User>, StoreError> {
        let row = sqlx::query_as::<_, UserRow>(
            "UPDATE users SET settings = $2 WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(Json(settings))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(User::from))
    }

    async fn insert_file(&self, new: NewFile) -> Result<FileRecord, StoreError> {
        let row = sqlx::query_as::<_, FileRow>(
            "INSERT INTO files (user_id, filename, original_filename, size, content_type, storage_path)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(new.user_id)
        .bind(&new.filename)
        .bind(&new.original_filename)
        .bind(new.size)
        .bind(&new.content_type)
        .bind(&new.storage_path)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn files(&self, user_id: i64, page: Page) -> Result<(Vec<FileRecord>, i64), StoreError> {
        let rows = sqlx::query_as::<_, FileRow>(
            "SELECT * FROM files WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT $3",
        )
        .bind(user_id)
        .bind(page.offset)
        .bind(page.limit)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM files WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows.into_iter().map(FileRecord::from).collect(), total))
    }

    async fn file(&self, user_id: i64, id: i64) -> Result<Option<FileRecord>, StoreError> {
        let row =
            sqlx::query_as::<_, FileRow>("SELECT * FROM files WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(FileRecord::from))
    }

    async fn delete_file(&self, user_id: i64, id: i64) -> Result<Option<FileRecord>, StoreError> {
        let row = sqlx::query_as::<_, FileRow>(
            "DELETE FROM files WHERE id = $1 AND user_id = $2 RETURNING *",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(FileRecord::from))
    }

    async fn create_task(&self, new: NewTask) -> Result<Task, StoreError> {
        let row = sqlx::query_as::<_, TaskRow>(
            "INSERT INTO tasks (user_id, type, status, input_files, config)
             VALUES ($1, $2, 'pending', $3, $4) RETURNING *",
        )
        .bind(new.user_id)
        .bind(new.task_type.as_str())
        .bind(Json(&new.input_files))
        .bind(Json(&new.config))
        .fetch_one(&self.pool)
        .await?;
        row.try_into()
    }

    async fn task(&self, user_id: Option<i64>, id: i64) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query_as::<_, TaskRow>(
            "SELECT * FROM tasks WHERE id = $1 AND ($2::BIGINT IS NULL OR user_id = $2)",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Task::try_from).transpose()
    }

    async fn tasks(
        &self,
        user_id: i64,
        filter: TaskFilter,
        page: Page,
    ) -> Result<(Vec<Task>, i64), StoreError> {
        macro_rules! filtered {
            () => {
                "WHERE user_id = $1 AND ($2::TEXT IS NULL OR status = $2)
                 AND ($3::TEXT IS NULL OR type = $3)"
            };
        }
        let status = filter.status.map(TaskStatus::as_str);
        let task_type = filter.task_type.map(TaskType::as_str);
        let rows = sqlx::query_as::<_, TaskRow>(concat!(
            "SELECT * FROM tasks ",
            filtered!(),
            " ORDER BY id DESC OFFSET $4 LIMIT $5"
        ))
        .bind(user_id)
        .bind(status)
        .bind(task_type)
        .bind(page.offset)
        .bind(page.limit)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(concat!("SELECT count(*) FROM tasks ", filtered!()))
            .bind(user_id)
            .bind(status)
            .bind(task_type)
            .fetch_one(&self.pool)
            .await?;
        Ok((tasks_from(rows)?, total))
    }

    async fn transition(&self, id: i64, change: Transition) -> Result<Option<Task>, StoreError> {
        let from: Vec<&str> = change.from.iter().map(|s| s.as_str()).collect();
        // One conditional UPDATE: the check and the change cannot race with another worker or a
        // cancel request.
        let row = sqlx::query_as::<_, TaskRow>(
            "UPDATE tasks SET status = $3, progress = $4, error_message = $5,
                    output_files = COALESCE($6, output_files), result = COALESCE($7, result),
                    retry_count = retry_count + $8, updated_at = now(),
                    completed_at = CASE WHEN $9 THEN now() ELSE NULL END
             WHERE id = $1 AND status = ANY($2) RETURNING *",
        )
        .bind(id)
        .bind(&from)
        .bind(change.to.as_str())
        .bind(change.progress)
        .bind(&change.error_message)
        .bind(change.output_files.as_ref().map(Json))
        .bind(change.result.as_ref().map(Json))
        .bind(i32::from(change.increment_retry))
        .bind(change.is_final())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Task::try_from).transpose()
    }

    async fn user_stats(&self, user_id: i64) -> Result<UserStats, StoreError> {
        let (total_tasks, completed_tasks, failed_tasks, processing_tasks): (i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT count(*),
                        count(*) FILTER (WHERE status = 'completed'),
                        count(*) FILTER (WHERE status = 'failed'),
                        count(*) FILTER (WHERE status = 'processing')
                 FROM tasks WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        let (total_files, storage_used): (i64, i64) = sqlx::query_as(
            "SELECT count(*), COALESCE(sum(size), 0)::BIGINT FROM files WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(UserStats {
            total_tasks,
            completed_tasks,
            failed_tasks,
            processing_tasks,
            total_files,
            storage_used,
        })
    }

    async fn task_counts(&self) -> Result<BTreeMap<&'static str, i64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM tasks GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(status, count)| {
                TaskStatus::parse(&status)
                    .map(|s| (s.as_str(), count))
                    .ok_or_else(|| StoreError::Corrupt(format!("task status {status:?}")))
            })
            .collect()
    }

    async fn hold_connection(&self, delay: Duration) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_sleep($1)")
            .bind(delay.as_secs_f64())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
