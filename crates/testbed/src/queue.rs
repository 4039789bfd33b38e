//! The job queue between the API and its workers: a Redis list, as Celery's broker keeps one
//! (`celery` on the broker database, which the monitor watches), or a queue in memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;

/// A queue failure.
#[derive(Debug, thiserror::Error)]
#[error("job queue error: {0}")]
pub struct QueueError(#[from] redis::RedisError);

/// A FIFO of task ids.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// What the start-up line says about this queue (no secrets).
    fn describe(&self) -> String;
    /// Appends a task id.
    async fn push(&self, task_id: i64) -> Result<(), QueueError>;
    /// How many ids wait.
    async fn queued(&self) -> Result<u64, QueueError>;
    /// A handle for one worker to take ids with.
    async fn consumer(&self) -> Result<Box<dyn JobConsumer>, QueueError>;
}

/// One worker's end of a queue.
#[async_trait::async_trait]
pub trait JobConsumer: Send {
    /// Takes the oldest task id, waiting up to `wait` for one.
    async fn pop(&mut self, wait: Duration) -> Result<Option<i64>, QueueError>;
}

/// A queue in process memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryQueue {
    inner: Arc<MemoryQueueInner>,
}

#[derive(Debug, Default)]
struct MemoryQueueInner {
    items: Mutex<VecDeque<i64>>,
    pushed: Notify,
}

impl MemoryQueueInner {
    fn try_pop(&self) -> Option<i64> {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }
}

#[async_trait::async_trait]
impl JobQueue for MemoryQueue {
    fn describe(&self) -> String {
        "in-memory".to_owned()
    }

    async fn push(&self, task_id: i64) -> Result<(), QueueError> {
        let inner = &self.inner;
        inner
            .items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(task_id);
        inner.pushed.notify_one();
        Ok(())
    }

    async fn queued(&self) -> Result<u64, QueueError> {
        Ok(self
            .inner
            .items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u64)
    }

    async fn consumer(&self) -> Result<Box<dyn JobConsumer>, QueueError> {
        Ok(Box::new(self.clone()))
    }
}

#[async_trait::async_trait]
impl JobConsumer for MemoryQueue {
    async fn pop(&mut self, wait: Duration) -> Result<Option<i64>, QueueError> {
        if let Some(id) = self.inner.try_pop() {
            return Ok(Some(id));
        }
        // notify_one stores a permit when nobody waits, so a push between try_pop and here is
        // not lost.
        let _ = tokio::time::timeout(wait, self.inner.pushed.notified()).await;
        Ok(self.inner.try_pop())
    }
}

/// A Redis list: LPUSH to add, BRPOP to take, as Celery's Redis transport does.
pub struct RedisQueue {
    client: redis::Client,
    shared: ConnectionManager,
    key: String,
    description: String,
}

impl RedisQueue {
    /// Connects to `url` (`shown_url` has its password masked) and uses the list `key`.
    pub async fn connect(url: &str, shown_url: &str, key: &str) -> Result<Self, QueueError> {
        let client = redis::Client::open(url)?;
        let shared = ConnectionManager::new(client.clone()).await?;
        Ok(Self {
            client,
            shared,
            key: key.to_owned(),
            description: format!("Redis {shown_url} list `{key}`"),
        })
    }
}

/// One worker's end of a [`RedisQueue`], on a connection of its own: a BRPOP on the shared
/// multiplexed connection would stall every other command behind it.
struct RedisConsumer {
    connection: redis::aio::MultiplexedConnection,
    key: String,
}

#[async_trait::async_trait]
impl JobConsumer for RedisConsumer {
    async fn pop(&mut self, wait: Duration) -> Result<Option<i64>, QueueError> {
        let popped: Option<(String, i64)> =
            self.connection.brpop(&self.key, wait.as_secs_f64()).await?;
        Ok(popped.map(|(_, id)| id))
    }
}

#[async_trait::async_trait]
impl JobQueue for RedisQueue {
    fn describe(&self) -> String {
        self.description.clone()
    }

    async fn push(&self, task_id: i64) -> Result<(), QueueError> {
        let mut connection = self.shared.clone();
        let _: i64 = connection.lpush(&self.key, task_id).await?;
        Ok(())
    }

    async fn queued(&self) -> Result<u64, QueueError> {
        let mut connection = self.shared.clone();
        Ok(connection.llen(&self.key).await?)
    }

    async fn consumer(&self) -> Result<Box<dyn JobConsumer>, QueueError> {
        // No response timeout: BRPOP's own timeout bounds the wait, and the client's default
        // would cut every idle BRPOP short.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        Ok(Box::new(RedisConsumer {
            connection: self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?,
            key: self.key.clone(),
        }))
    }
}
