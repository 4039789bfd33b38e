//! The in-memory store: the same behaviour as PostgreSQL without a server, for the demo and for
//! machines that have none. A semaphore the size of `--db-pool` stands in for the pool, so the
//! slow-path knob queues requests the same way.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::*;

/// Everything in one mutex: the testbed's load is tiny next to the cost of a lock.
#[derive(Debug, Default)]
struct Tables {
    users: BTreeMap<i64, User>,
    user_ids_by_login: HashMap<String, i64>,
    files: BTreeMap<i64, FileRecord>,
    tasks: BTreeMap<i64, Task>,
    next_id: i64,
}

impl Tables {
    fn next_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

/// A store that lives and dies with the process.
#[derive(Debug)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    pool: Semaphore,
}

impl MemoryStore {
    /// An empty store whose simulated pool has `pool_size` connections.
    pub fn new(pool_size: u32) -> Self {
        Self {
            tables: Mutex::new(Tables::default()),
            pool: Semaphore::new(pool_size.max(1) as usize),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters to a test server, so a poisoned lock is still usable.
        self.tables
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn newest_page<T: Clone>(rows: Vec<&T>, page: Page) -> (Vec<T>, i64) {
    let total = rows.len() as i64;
    let rows = rows
        .into_iter()
        .rev()
        .skip(page.offset.max(0) as usize)
        .take(page.limit.max(0) as usize)
        .cloned()
        .collect();
    (rows, total)
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn describe(&self) -> String {
        "in-memory (data is lost on exit)".to_owned()
    }

    async fn create_user(&self, new: NewUser) -> Result<User, StoreError> {
        let mut t = self.tables();
        if t.user_ids_by_login.contains_key(&new.email) {
            return Err(StoreError::EmailTaken);
        }
        if t.user_ids_by_login.contains_key(&new.username) {
            return Err(StoreError::UsernameTaken);
        }
        let id = t.next_id();
        let user = User {
            id,
            username: new.username,
            email: new.email,
            password_hash: new.password_hash,
            is_active: true,
            is_admin: new.is_admin,
            settings: json!({}),
            created_at: Utc::now(),
        };
        t.user_ids_by_login.insert(user.username.clone(), id);
        t.user_ids_by_login.insert(user.email.clone(), id);
        t.users.insert(id, user.clone());
        Ok(user)
    }

    async fn user_by_login(&self, login: &str) -> Result<Option<User>, StoreError> {
        let t = self.tables();
        Ok(t.user_ids_by_login
            .get(login)
            .and_then(|id| t.users.get(id))
            .cloned())
    }

    async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        Ok(self.tables().users.get(&id).cloned())
    }

    async fn set_settings(&self, id: i64, settings: Value) -> Result<Option<User>, StoreError> {
        let mut t = self.tables();
        Ok(t.users.get_mut(&id).map(|user| {
            user.settings = settings;
            user.clone()
        }))
    }

    async fn insert_file(&self, new: NewFile) -> Result<FileRecord, StoreError> {
        let mut t = self.tables();
        let id = t.next_id();
        let file = FileRecord {
            id,
            user_id: new.user_id,
            filename: new.filename,
            original_filename: new.original_filename,
            size: new.size,
            content_type: new.content_type,
            storage_path: new.storage_path,
            metadata: json!({}),
            created_at: Utc::now(),
        };
        t.files.insert(id, file.clone());
        Ok(file)
    }

    async fn files(&self, user_id: i64, page: Page) -> Result<(Vec<FileRecord>, i64), StoreError> {
        let t = self.tables();
        let mine = t.files.values().filter(|f| f.user_id == user_id).collect();
        Ok(newest_page(mine, page))
    }

    async fn file(&self, user_id: i64, id: i64) -> Result<Option<FileRecord>, StoreError> {
        let t = self.tables();
        Ok(t.files.get(&id).filter(|f| f.user_id == user_id).cloned())
    }

    async fn delete_file(&self, user_id: i64, id: i64) -> Result<Option<FileRecord>, StoreError> {
        let mut t = self.tables();
        if t.files.get(&id).is_some_and(|f| f.user_id == user_id) {
            Ok(t.files.remove(&id))
        } else {
            Ok(None)
        }
    }

    async fn create_task(&self, new: NewTask) -> Result<Task, StoreError> {
        let mut t = self.tables();
        let id = t.next_id();
        let now = Utc::now();
        let task = Task {
            id,
            user_id: new.user_id,
            task_type: new.task_type,
            status: TaskStatus::Pending,
            input_files: json!(new.input_files),
            output_files: json!([]),
            config: new.config,
            error_message: None,
            progress: 0.0,
            result: None,
            retry_count: 0,
            priority: 0,
            created_at: now,
            updated_at: now,
            completed_at: None,
        };
        t.tasks.insert(id, task.clone());
        Ok(task)
    }

    async fn task(&self, user_id: Option<i64>, id: i64) -> Result<Option<Task>, StoreError> {
        let t = self.tables();
        let task = t.tasks.get(&id);
        Ok(task
            .filter(|task| user_id.is_none_or(|u| task.user_id == u))
            .cloned())
    }

    async fn tasks(
        &self,
        user_id: i64,
        filter: TaskFilter,
        page: Page,
    ) -> Result<(Vec<Task>, i64), StoreError> {
        let t = self.tables();
        let mine = t
            .tasks
            .values()
            .filter(|task| task.user_id == user_id)
            .filter(|task| filter.status.is_none_or(|s| task.status == s))
            .filter(|task| filter.task_type.is_none_or(|k| task.task_type == k))
            .collect();
        Ok(newest_page(mine, page))
    }

    async fn transition(&self, id: i64, change: Transition) -> Result<Option<Task>, StoreError> {
        let mut t = self.tables();
        let Some(task) = t.tasks.get_mut(&id) else {
            return Ok(None);
        };
        if !change.from.contains(&task.status) {
            return Ok(None);
        }
        let now = Utc::now();
        task.status = change.to;
        task.progress = change.progress;
        task.error_message = change.error_message.clone();
        if let Some(outputs) = change.output_files.clone() {
            task.output_files = outputs;
        }
        if let Some(result) = change.result.clone() {
            task.result = Some(result);
        }
        if change.increment_retry {
            task.retry_count += 1;
        }
        task.updated_at = now;
        task.completed_at = change.is_final().then_some(now);
        Ok(Some(task.clone()))
    }

    async fn user_stats(&self, user_id: i64) -> Result<UserStats, StoreError> {
        let t = self.tables();
        let mut stats = UserStats::default();
        for task in t.tasks.values().filter(|task| task.user_id == user_id) {
            stats.total_tasks += 1;
            match task.status {
                TaskStatus::Completed => stats.completed_tasks += 1,
                TaskStatus::Failed => stats.failed_tasks += 1,
                TaskStatus::Processing => stats.processing_tasks += 1,
                TaskStatus::Pending | TaskStatus::Cancelled => {}
            }
        }
        for file in t.files.values().filter(|f| f.user_id == user_id) {
            stats.total_files += 1;
            stats.storage_used += file.size;
        }
        Ok(stats)
    }

    async fn task_counts(&self) -> Result<BTreeMap<&'static str, i64>, StoreError> {
        let mut counts = BTreeMap::new();
        for task in self.tables().tasks.values() {
            *counts.entry(task.status.as_str()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    async fn hold_connection(&self, delay: Duration) -> Result<(), StoreError> {
        let _connection = self
            .pool
            .acquire()
            .await
            .map_err(|_| StoreError::Corrupt("simulated pool closed".into()))?;
        tokio::time::sleep(delay).await;
        Ok(())
    }
}
