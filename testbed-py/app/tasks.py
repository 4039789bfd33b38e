"""/tasks: creating ffmpeg jobs (a pending row, then a Celery message), listing and polling them."""

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .auth import current_user
from .celery_app import AUDIO_OVERLAY, JOIN, celery_app
from .config import settings
from .db import get_db
from .models import File, Task, User

router = APIRouter(prefix="/tasks", tags=["tasks"])


class JoinBody(BaseModel):
    file_ids: list[int] = Field(min_length=2)
    output_filename: str = "joined.mp4"


class AudioOverlayBody(BaseModel):
    video_file_id: int
    audio_file_id: int
    mode: Literal["replace", "mix"] = "replace"
    offset: float = Field(0.0, ge=0)
    duration: float | None = Field(None, gt=0)
    original_volume: float = Field(1.0, ge=0, le=2)
    overlay_volume: float = Field(1.0, ge=0, le=2)
    output_filename: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def task_json(task: Task, input_names: list[str] | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "id": task.id,
        "user_id": task.user_id,
        "type": task.type,
        "status": task.status,
        "input_files": task.input_files,
        "output_files": task.output_files or [],
        "config": task.config or {},
        "error_message": task.error_message,
        "progress": task.progress,
        "result": task.result,
        "retry_count": task.retry_count,
        "priority": task.priority,
        "created_at": _iso(task.created_at),
        "updated_at": _iso(task.updated_at),
        "completed_at": _iso(task.completed_at),
    }
    if input_names is not None:
        body["input_file_names"] = input_names
    return body


async def _check_files(db: AsyncSession, user: User, ids: list[int]) -> None:
    found = set(
        (await db.execute(select(File.id).where(File.user_id == user.id, File.id.in_(ids)))).scalars()
    )
    for file_id in ids:
        if file_id not in found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"File {file_id} not found")


async def _create(db: AsyncSession, user: User, kind: str, inputs: list[int], config: dict, job: str) -> dict:
    await _check_files(db, user, inputs)
    task = Task(user_id=user.id, type=kind, status="pending", input_files=inputs, output_files=[], config=config)
    db.add(task)
    await db.commit()
    await db.refresh(task)
    celery_app.send_task(job, args=[task.id])
    return task_json(task)


@router.post("/join", status_code=status.HTTP_201_CREATED)
async def join(body: JoinBody, user: User = Depends(current_user), db: AsyncSession = Depends(get_db)) -> dict:
    return await _create(db, user, "join", body.file_ids, {"output_filename": body.output_filename}, JOIN)


@router.post("/audio-overlay", status_code=status.HTTP_201_CREATED)
async def audio_overlay(
    body: AudioOverlayBody, user: User = Depends(current_user), db: AsyncSession = Depends(get_db)
) -> dict:
    config = body.model_dump(exclude={"video_file_id", "audio_file_id"})
    return await _create(db, user, "audio_overlay", [body.video_file_id, body.audio_file_id], config, AUDIO_OVERLAY)


async def input_names_by_task(db: AsyncSession, tasks: list[Task]) -> dict[int, list[str]]:
    """The names of each task's input files, for the list view."""
    names: dict[int, list[str]] = {}
    if settings.plant_n_plus_one:
        for task in tasks:
            rows = await db.execute(select(File.original_filename).where(File.id.in_(task.input_files)))
            names[task.id] = list(rows.scalars())
        return names
    wanted = {file_id for task in tasks for file_id in task.input_files}
    rows = await db.execute(select(File.id, File.original_filename).where(File.id.in_(wanted)))
    by_id = dict(rows.tuples().all())
    for task in tasks:
        names[task.id] = [by_id[i] for i in task.input_files if i in by_id]
    return names


@router.get("")
@router.get("/", include_in_schema=False)
async def list_tasks(
    status_: str | None = Query(None, alias="status"),
    type_: str | None = Query(None, alias="type"),
    offset: int = Query(0, ge=0),
    limit: int = Query(20, ge=1, le=100),
    user: User = Depends(current_user),
    db: AsyncSession = Depends(get_db),
) -> dict[str, object]:
    query = select(Task).where(Task.user_id == user.id)
    count = select(func.count()).select_from(Task).where(Task.user_id == user.id)
    if status_:
        query, count = query.where(Task.status == status_), count.where(Task.status == status_)
    if type_:
        query, count = query.where(Task.type == type_), count.where(Task.type == type_)
    tasks = list((await db.execute(query.order_by(Task.id.desc()).offset(offset).limit(limit))).scalars())
    total = (await db.execute(count)).scalar_one()
    names = await input_names_by_task(db, tasks)
    return {
        "tasks": [task_json(t, names.get(t.id, [])) for t in tasks],
        "total": total,
        "page": offset // limit + 1,
        "page_size": limit,
    }


async def _own_task(db: AsyncSession, user: User, task_id: int) -> Task:
    task = await db.get(Task, task_id)
    if task is None or task.user_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Task not found")
    return task


@router.get("/{task_id}")
async def get_task(task_id: int, user: User = Depends(current_user), db: AsyncSession = Depends(get_db)) -> dict:
    return task_json(await _own_task(db, user, task_id))


@router.post("/{task_id}/cancel")
async def cancel(task_id: int, user: User = Depends(current_user), db: AsyncSession = Depends(get_db)) -> dict:
    task = await _own_task(db, user, task_id)
    if task.status not in ("pending", "processing"):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"Task is {task.status}")
    task.status = "cancelled"
    task.completed_at = datetime.now(UTC)
    await db.commit()
    await db.refresh(task)
    return task_json(task)


@router.post("/{task_id}/retry")
async def retry(task_id: int, user: User = Depends(current_user), db: AsyncSession = Depends(get_db)) -> dict:
    task = await _own_task(db, user, task_id)
    if task.status not in ("failed", "cancelled"):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"Task is {task.status}")
    task.status, task.error_message, task.progress = "pending", None, 0.0
    task.retry_count += 1
    task.completed_at = None
    await db.commit()
    await db.refresh(task)
    celery_app.send_task(JOIN if task.type == "join" else AUDIO_OVERLAY, args=[task.id])
    return task_json(task)
