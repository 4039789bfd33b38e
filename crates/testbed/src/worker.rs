//! The worker loop: the testbed's Celery. Each of `--workers` loops takes a task id from the
//! queue, marks it `processing`, spends `--job-seconds` (and runs real ffmpeg with `--ffmpeg`),
//! then marks it `completed` or `failed`. In `hang` mode the job stays `processing` and holds its
//! worker, as a wedged Celery worker does, so the queue behind it grows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::config::JobMode;
use crate::queue::JobQueue;
use crate::store::{Store, Task, TaskStatus, TaskType, Transition};

/// What a worker needs.
#[derive(Clone)]
pub struct Worker {
    /// Tasks.
    pub store: Arc<dyn Store>,
    /// Where task ids wait.
    pub queue: Arc<dyn JobQueue>,
    /// Time each job takes.
    pub job_time: Duration,
    /// What jobs do.
    pub mode: JobMode,
    /// What jobs of some types do instead.
    pub modes_by_type: Vec<crate::config::TypeJobMode>,
    /// Whether to run real ffmpeg.
    pub run_ffmpeg: bool,
    /// Whether the job time is spent burning a core (as ffmpeg does) rather than sleeping.
    pub burns_cpu: bool,
    /// Where outputs go.
    pub output_dir: PathBuf,
}

/// Keeps one core busy for `time` in a child ffmpeg (a single-threaded `mandelbrot` render),
/// so that the CPU shows under the worker's process as Celery's ffmpeg children do: short-lived
/// processes the host's samples rarely catch alive. Without ffmpeg, in a thread of our own.
async fn burn_cpu_in_child(time: Duration) {
    // Bounded by itself too (by its CPU seconds), should the testbed be killed before it.
    let limit = (time.as_secs() + 2).to_string();
    let child = Command::new("ffmpeg")
        .args(["-timelimit", &limit])
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-filter_threads",
            "1",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "mandelbrot=size=640x480",
            "-f",
            "null",
            "-",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        let _ = tokio::task::spawn_blocking(move || burn_cpu(time)).await;
        return;
    };
    tokio::time::sleep(time).await;
    let _ = child.start_kill();
    // Reaped here: its CPU time goes to this process's children's times.
    let _ = child.wait().await;
}

/// Keeps one core busy for `time`, as an encoder does.
fn burn_cpu(time: Duration) {
    let until = std::time::Instant::now() + time;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    while std::time::Instant::now() < until {
        for _ in 0..10_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
        }
        std::hint::black_box(state);
    }
}

impl Worker {
    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut consumer = loop {
            match self.queue.consumer().await {
                Ok(consumer) => break consumer,
                Err(error) => {
                    tracing::warn!(%error, "worker cannot reach the queue; retrying in 1 s");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        loop {
            let popped = tokio::select! {
                () = shutdown.cancelled() => return,
                popped = consumer.pop(Duration::from_secs(1)) => popped,
            };
            match popped {
                Ok(Some(task_id)) => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.process(task_id) => {}
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "worker lost the queue; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn process(&self, task_id: i64) {
        if let Err(error) = self.try_process(task_id).await {
            tracing::error!(task_id, %error, "job failed inside the worker");
        }
    }

    async fn try_process(&self, task_id: i64) -> Result<(), crate::store::StoreError> {
        let start = Transition::new(&[TaskStatus::Pending], TaskStatus::Processing, 0.0);
        // A task cancelled while it waited in the queue is skipped, as Celery revokes it.
        let Some(task) = self.store.transition(task_id, start).await? else {
            return Ok(());
        };
        let mode = self
            .modes_by_type
            .iter()
            .find(|m| m.task_type == task.task_type)
            .map_or(self.mode, |m| m.mode);
        if mode == JobMode::Hang {
            std::future::pending::<()>().await;
        }
        if self.burns_cpu {
            burn_cpu_in_child(self.job_time).await;
        } else {
            tokio::time::sleep(self.job_time).await;
        }
        if mode == JobMode::Stuck {
            // What a worker logs when the task raises before it sets its status.
            tracing::error!(
                task_id,
                task_type = ?task.task_type,
                "Task raised before it set its status (planted by --job-mode-for): the task stays processing"
            );
            return Ok(());
        }
        let outcome = match mode {
            JobMode::Fail => Err("Job failed (planted by TESTBED_JOB_MODE=fail)".to_owned()),
            _ if self.run_ffmpeg => self.run_ffmpeg(&task).await,
            _ => Ok(simulated_result(&task)),
        };
        let change = match outcome {
            Ok(result) => Transition {
                output_files: Some(json!([result["output"].clone()])),
                result: Some(result),
                ..Transition::new(&[TaskStatus::Processing], TaskStatus::Completed, 100.0)
            },
            Err(message) => Transition {
                error_message: Some(message),
                ..Transition::new(&[TaskStatus::Processing], TaskStatus::Failed, 0.0)
            },
        };
        // Not applied when the task was cancelled meanwhile: cancelled stays cancelled.
        self.store.transition(task_id, change).await?;
        Ok(())
    }

    async fn run_ffmpeg(&self, task: &Task) -> Result<Value, String> {
        let ids: Vec<i64> = serde_json::from_value(task.input_files.clone())
            .map_err(|e| format!("bad input_files: {e}"))?;
        let mut inputs = Vec::new();
        for id in ids {
            let file = self
                .store
                .file(task.user_id, id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("Input file {id} no longer exists"))?;
            inputs.push(PathBuf::from(file.storage_path));
        }
        let output_name = task.config["output_filename"]
            .as_str()
            .unwrap_or("output.mp4");
        let output = self
            .output_dir
            .join(format!("task_{}_{}", task.id, sanitize(output_name)));
        let args = match task.task_type {
            TaskType::Join => join_args(&inputs, &output),
            TaskType::AudioOverlay => overlay_args(&inputs, &task.config, &output)?,
            other => {
                return Err(format!(
                    "{} jobs are not supported by the testbed",
                    other.as_str()
                ));
            }
        };
        let result = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
            .args(&args)
            .output()
            .await
            .map_err(|e| format!("could not start ffmpeg: {e}"))?;
        if !result.status.success() {
            let stderr = String::from_utf8_lossy(&result.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("ffmpeg failed: {}", tail.join(" | ")));
        }
        let size = tokio::fs::metadata(&output)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(
            json!({ "output": output.file_name().map(|n| n.to_string_lossy().into_owned()), "size": size, "ffmpeg": true }),
        )
    }
}

fn simulated_result(task: &Task) -> Value {
    let name = task.config["output_filename"]
        .as_str()
        .unwrap_or("output.mp4");
    json!({ "output": format!("task_{}_{}", task.id, sanitize(name)), "ffmpeg": false })
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn join_args(inputs: &[PathBuf], output: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for input in inputs {
        args.extend(["-i".to_owned(), input.to_string_lossy().into_owned()]);
    }
    let streams: String = (0..inputs.len()).map(|i| format!("[{i}:v]")).collect();
    args.extend([
        "-filter_complex".to_owned(),
        format!("{streams}concat=n={}:v=1:a=0[v]", inputs.len()),
        "-map".to_owned(),
        "[v]".to_owned(),
        "-c:v".to_owned(),
        "libx264".to_owned(),
        "-preset".to_owned(),
        "ultrafast".to_owned(),
        output.to_string_lossy().into_owned(),
    ]);
    args
}

fn overlay_args(inputs: &[PathBuf], config: &Value, output: &Path) -> Result<Vec<String>, String> {
    let [video, audio] = inputs else {
        return Err(format!(
            "audio overlay needs 2 inputs, got {}",
            inputs.len()
        ));
    };
    let offset_ms = (config["offset"].as_f64().unwrap_or(0.0) * 1000.0).round() as u64;
    let original = config["original_volume"].as_f64().unwrap_or(1.0);
    let overlay = config["overlay_volume"].as_f64().unwrap_or(1.0);
    // `mix` needs the video's own audio: on a silent video ffmpeg fails here, which is the
    // real API's behaviour the contract describes.
    let filter = match config["mode"].as_str() {
        Some("mix") => format!(
            "[0:a]volume={original}[a0];[1:a]adelay={offset_ms}|{offset_ms},volume={overlay}[a1];\
             [a0][a1]amix=inputs=2:duration=first[a]"
        ),
        _ => format!("[1:a]adelay={offset_ms}|{offset_ms},volume={overlay}[a]"),
    };
    let mut args: Vec<String> = vec![
        "-i".into(),
        video.to_string_lossy().into_owned(),
        "-i".into(),
        audio.to_string_lossy().into_owned(),
        "-filter_complex".into(),
        filter,
        "-map".into(),
        "0:v".into(),
        "-map".into(),
        "[a]".into(),
        "-c:v".into(),
        "copy".into(),
        "-c:a".into(),
        "aac".into(),
        "-shortest".into(),
    ];
    if let Some(duration) = config["duration"].as_f64() {
        args.extend(["-t".into(), duration.to_string()]);
    }
    args.push(output.to_string_lossy().into_owned());
    Ok(args)
}
