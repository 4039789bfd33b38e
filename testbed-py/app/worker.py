"""The Celery tasks: each takes a task row, runs ffmpeg on its input files and records the
output, with SQLAlchemy (sync, on psycopg 3). Run with `celery -A app.worker worker`."""

import logging
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from . import storage
from .celery_app import AUDIO_OVERLAY, JOIN, celery_app
from .config import settings
from .models import File, Task

log = logging.getLogger(__name__)

engine = create_engine(
    settings.sync_database_url,
    pool_size=2,
    pool_pre_ping=True,
    connect_args={"application_name": "ffmpeg-worker"},
)
SessionLocal = sessionmaker(engine, expire_on_commit=False)

# Celery imports this module to find the tasks; the name app.worker must serve as -A too.
app = celery_app


class FFmpegError(RuntimeError):
    """ffmpeg exited with an error; the message is the end of its stderr."""


def run_ffmpeg(args: list[str]) -> None:
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-5:])
        raise FFmpegError(f"ffmpeg failed: {tail}")


def join_args(inputs: list[str], output: Path) -> list[str]:
    args: list[str] = []
    for path in inputs:
        args += ["-i", path]
    streams = "".join(f"[{i}:v]" for i in range(len(inputs)))
    return args + [
        "-filter_complex", f"{streams}concat=n={len(inputs)}:v=1:a=0[v]",
        "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", str(output),
    ]


def overlay_args(video: str, audio: str, config: dict, output: Path) -> list[str]:
    offset_ms = round(float(config.get("offset") or 0) * 1000)
    original = config.get("original_volume", 1.0)
    overlay = config.get("overlay_volume", 1.0)
    if config.get("mode") == "mix":
        # Needs the video's own audio track: on a silent video ffmpeg fails here.
        graph = (
            f"[0:a]volume={original}[a0];[1:a]adelay={offset_ms}|{offset_ms},volume={overlay}[a1];"
            "[a0][a1]amix=inputs=2:duration=first[a]"
        )
    else:
        graph = f"[1:a]adelay={offset_ms}|{offset_ms},volume={overlay}[a]"
    args = ["-i", video, "-i", audio, "-filter_complex", graph, "-map", "0:v", "-map", "[a]",
            "-c:v", "copy", "-c:a", "aac", "-shortest"]
    if config.get("duration"):
        args += ["-t", str(config["duration"])]
    return args + [str(output)]


def _start(session: Session, task_id: int) -> Task | None:
    task = session.get(Task, task_id)
    if task is None or task.status != "pending":
        return None  # cancelled (or gone) while it waited in the queue
    task.status, task.progress = "processing", 10.0
    session.commit()
    return task


def _inputs(session: Session, task: Task) -> list[str]:
    paths = []
    for file_id in task.input_files:
        file = session.get(File, file_id)
        if file is None:
            raise FileNotFoundError(f"Input file {file_id} no longer exists")
        paths.append(file.storage_path)
    return paths


def save_output(session: Session, task: Task, path: Path, original_filename: str | None) -> File:
    """Records the job's output as a file of the user, as uploads are."""
    record = File(
        user_id=task.user_id,
        filename=path.name,
        original_filename=original_filename,
        size=path.stat().st_size,
        content_type="video/mp4",
        storage_path=str(path),
        metadata_={"task_id": task.id},
    )
    session.add(record)
    session.flush()
    return record


def _complete(session: Session, task: Task, output: File) -> None:
    task.status, task.progress = "completed", 100.0
    task.output_files = [output.id]
    task.result = {"output": output.filename, "size": output.size, "ffmpeg": True}
    task.completed_at = datetime.now(UTC)
    session.commit()


def _fail(session: Session, task: Task, error: Exception) -> None:
    session.rollback()
    task.status, task.error_message = "failed", str(error)[:1000]
    task.completed_at = datetime.now(UTC)
    session.commit()


@celery_app.task(name=JOIN)
def join_videos(task_id: int) -> dict:
    with SessionLocal() as session:
        task = _start(session, task_id)
        if task is None:
            return {"skipped": task_id}
        try:
            output = storage.output_path(task.id, task.config.get("output_filename") or "joined.mp4")
            run_ffmpeg(join_args(_inputs(session, task), output))
            record = save_output(session, task, output, task.config.get("output_filename") or output.name)
            _complete(session, task, record)
        except Exception as error:  # noqa: BLE001 - any failure marks the job failed
            log.exception("join task %s failed", task_id)
            _fail(session, task, error)
            return {"failed": task_id}
        return {"completed": task_id}


@celery_app.task(name=AUDIO_OVERLAY)
def audio_overlay(task_id: int) -> dict:
    with SessionLocal() as session:
        task = _start(session, task_id)
        if task is None:
            return {"skipped": task_id}
        try:
            name = task.config.get("output_filename")
            output = storage.output_path(task.id, name or "audio_overlay.mp4")
            video, audio = _inputs(session, task)
            run_ffmpeg(overlay_args(video, audio, task.config, output))
            if settings.plant_failing_error_handler:
                # The output keeps the name the client gave, which is optional: NULL here.
                record = save_output(session, task, output, name)
            else:
                record = save_output(session, task, output, name or output.name)
            _complete(session, task, record)
        except Exception as error:
            log.exception("audio_overlay task %s failed", task_id)
            if settings.plant_failing_error_handler:
                # Marks the job failed on the session whose flush just failed, without a
                # rollback: this raises PendingRollbackError, and the job stays processing.
                task.status, task.error_message = "failed", str(error)[:1000]
                session.commit()
                raise
            _fail(session, task, error)
            return {"failed": task_id}
        return {"completed": task_id}
