"""/files: uploads streamed to storage, listing, info, download, delete."""

import time

from fastapi import APIRouter, Depends, HTTPException, Query, Response, UploadFile, status
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import storage
from .auth import current_user
from .config import settings
from .db import get_db
from .models import File, FileEvent, User

router = APIRouter(prefix="/files", tags=["files"])

ALLOWED_EXTENSIONS = {
    "mp4", "avi", "mov", "mkv", "wmv", "mp3", "aac", "wav", "flac", "ogg", "srt", "vtt", "ass", "ssa",
}
SUBTITLE_TYPES = {"application/x-subrip", "text/vtt", "text/x-ssa", "text/x-ass", "application/x-ass"}
MAX_UPLOAD_BYTES = 1 << 30
STORAGE_LIMIT = 10 << 30
CHUNK = 1 << 20


def file_json(file: File, with_url: bool = True) -> dict[str, object]:
    body: dict[str, object] = {
        "id": file.id,
        "filename": file.filename,
        "original_filename": file.original_filename,
        "size": file.size,
        "content_type": file.content_type,
        "metadata": file.metadata_ or {},
        "created_at": file.created_at.isoformat() if file.created_at else None,
    }
    if with_url:
        body["download_url"] = f"/api/v1/files/{file.id}/download"
    return body


def _invalid(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        [{"type": "value_error", "loc": ["body", "file"], "msg": message}],
    )


def wait_for_storage_sync() -> None:
    """Gives the storage a moment to list new uploads (written for a slow NFS mount, kept
    when the storage moved). A blocking sleep, inside the event loop's thread."""
    time.sleep(0.2)


@router.post("/upload", status_code=status.HTTP_201_CREATED)
async def upload(
    file: UploadFile, user: User = Depends(current_user), db: AsyncSession = Depends(get_db)
) -> dict[str, object]:
    original = file.filename or ""
    extension = original.rsplit(".", 1)[-1].lower() if "." in original else ""
    if extension not in ALLOWED_EXTENSIONS:
        raise _invalid(f"File type .{extension} not allowed")
    content_type = (file.content_type or "").lower()
    if not (
        content_type.startswith("video/")
        or content_type.startswith("audio/")
        or content_type in SUBTITLE_TYPES
    ):
        raise _invalid(f"Content type {content_type!r} is not a media type")
    used = (
        await db.execute(select(func.coalesce(func.sum(File.size), 0)).where(File.user_id == user.id))
    ).scalar_one()
    # The session's connection stays checked out while the bytes go to storage.
    path = storage.new_upload_path(user.id, original)
    size = 0
    with open(path, "wb") as out:
        while chunk := await file.read(CHUNK):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES or used + size > STORAGE_LIMIT:
                out.close()
                storage.remove(str(path))
                raise _invalid("File too large")
            out.write(chunk)
    if size == 0:
        storage.remove(str(path))
        raise _invalid("Empty file")
    record = File(
        user_id=user.id,
        filename=path.name,
        original_filename=original,
        size=size,
        content_type=content_type,
        storage_path=str(path),
        metadata_={},
    )
    db.add(record)
    await db.flush()
    db.add(FileEvent(user_id=user.id, file_id=record.id, event="upload"))
    await db.commit()
    await db.refresh(record)
    return file_json(record)


@router.get("")
@router.get("/", include_in_schema=False)
async def list_files(
    offset: int = Query(0, ge=0),
    limit: int = Query(20, ge=1, le=100),
    user: User = Depends(current_user),
    db: AsyncSession = Depends(get_db),
) -> dict[str, object]:
    if settings.plant_sync_sleep:
        wait_for_storage_sync()
    rows = await db.execute(
        select(File).where(File.user_id == user.id).order_by(File.id.desc()).offset(offset).limit(limit)
    )
    total = (await db.execute(select(func.count()).select_from(File).where(File.user_id == user.id))).scalar_one()
    return {
        "files": [file_json(f, with_url=False) for f in rows.scalars()],
        "total": total,
        "page": offset // limit + 1,
        "page_size": limit,
    }


async def _own_file(db: AsyncSession, user: User, file_id: int) -> File:
    file = await db.get(File, file_id)
    if file is None or file.user_id != user.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "File not found")
    return file


@router.get("/{file_id}")
async def get_file(
    file_id: int, user: User = Depends(current_user), db: AsyncSession = Depends(get_db)
) -> dict[str, object]:
    file = await _own_file(db, user, file_id)
    db.add(FileEvent(user_id=user.id, file_id=file.id, event="view"))
    await db.commit()
    return file_json(file)


@router.get("/{file_id}/download")
async def download(
    file_id: int, user: User = Depends(current_user), db: AsyncSession = Depends(get_db)
) -> FileResponse:
    file = await _own_file(db, user, file_id)
    db.add(FileEvent(user_id=user.id, file_id=file.id, event="download"))
    await db.commit()
    return FileResponse(file.storage_path, media_type=file.content_type, filename=file.original_filename)


@router.delete("/{file_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_file(
    file_id: int, user: User = Depends(current_user), db: AsyncSession = Depends(get_db)
) -> Response:
    file = await _own_file(db, user, file_id)
    path = file.storage_path
    await db.delete(file)
    await db.commit()
    storage.remove(path)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
