"""/users/me: the user, their settings and their figures."""

from typing import Any

from fastapi import APIRouter, Body, Depends
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from . import storage
from .auth import current_user, user_json
from .db import get_db
from .files import STORAGE_LIMIT
from .models import File, Task, User

router = APIRouter(prefix="/users", tags=["users"])

# The user's activity of the last 30 days, from the audit trail: fast on the index
# file_events_by_user (user_id, created_at), a scan of the whole table without it.
RECENT_ACTIVITY = text(
    "SELECT count(*) FROM file_events WHERE user_id = :user_id AND created_at > now() - interval '30 days'"
)


@router.get("/me")
async def me(user: User = Depends(current_user)) -> dict[str, object]:
    return user_json(user)


@router.get("/me/stats")
async def stats(user: User = Depends(current_user), db: AsyncSession = Depends(get_db)) -> dict[str, object]:
    by_status = dict(
        (await db.execute(select(Task.status, func.count()).where(Task.user_id == user.id).group_by(Task.status)))
        .tuples()
        .all()
    )
    files = (await db.execute(select(func.count()).select_from(File).where(File.user_id == user.id))).scalar_one()
    recent = (await db.execute(RECENT_ACTIVITY, {"user_id": user.id})).scalar_one()
    # The bucket's own figure, while the request's session holds its connection.
    used = await storage.usage(user.id)
    return {
        "total_tasks": sum(by_status.values()),
        "completed_tasks": by_status.get("completed", 0),
        "failed_tasks": by_status.get("failed", 0),
        "processing_tasks": by_status.get("processing", 0),
        "total_files": files,
        "storage_used": used,
        "storage_limit": STORAGE_LIMIT,
        "recent_activity": recent,
    }


@router.get("/me/settings")
async def get_settings(user: User = Depends(current_user)) -> dict[str, Any]:
    return user.settings or {}


@router.put("/me/settings")
async def put_settings(
    new: dict[str, Any] = Body(...), user: User = Depends(current_user), db: AsyncSession = Depends(get_db)
) -> dict[str, Any]:
    user.settings = new
    await db.commit()
    return new
