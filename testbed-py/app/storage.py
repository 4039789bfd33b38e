"""File storage in a local folder (STORAGE_DIR), where the real API has MinIO: uploads under
uploads/, job outputs under outputs/."""

import os
import re
import uuid
from pathlib import Path

from .config import settings


def root() -> Path:
    return Path(settings.storage_dir)


def new_upload_path(original_filename: str) -> Path:
    extension = original_filename.rsplit(".", 1)[-1].lower()
    folder = root() / "uploads"
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
