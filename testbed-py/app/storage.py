"""File storage in a local folder (STORAGE_DIR), where the real API has MinIO: uploads under
uploads/<user id>/, job outputs under outputs/. A listing of the bucket awaits
STORAGE_LATENCY_MS first, standing in for MinIO's round trip that a local folder does not have."""

import asyncio
import os
import re
import uuid
from pathlib import Path

from fastapi.concurrency import run_in_threadpool

from .config import settings


def root() -> Path:
    return Path(settings.storage_dir)


def new_upload_path(user_id: int, original_filename: str) -> Path:
    extension = original_filename.rsplit(".", 1)[-1].lower()
    folder = root() / "uploads" / str(user_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{uuid.uuid4().hex}.{extension}"


def output_path(task_id: int, name: str) -> Path:
    folder = root() / "outputs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"task_{task_id}_{re.sub(r'[^A-Za-z0-9._-]', '_', name)}"


def remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _folder_size(folder: Path) -> int:
    try:
        return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    except FileNotFoundError:
        return 0


async def usage(user_id: int) -> int:
    """Bytes the user's uploads take in the bucket (a listing of their prefix)."""
    await asyncio.sleep(settings.storage_latency_ms / 1000)
    return await run_in_threadpool(_folder_size, root() / "uploads" / str(user_id))
