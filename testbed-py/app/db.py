"""The API's database: an async SQLAlchemy engine on asyncpg, one session per request, and
the start-up that creates the tables and seeds the audit trail."""

from collections.abc import AsyncIterator

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from .config import settings
from .models import Base, FileEvent

engine = create_async_engine(
    settings.async_database_url,
    pool_size=settings.db_pool_size,
    max_overflow=settings.db_max_overflow,
    pool_timeout=60,
    connect_args={"server_settings": {"application_name": "ffmpeg-api"}},
)
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


async def get_db() -> AsyncIterator[AsyncSession]:
    """One session per request, held until the response is ready (as FastAPI's docs show)."""
    async with SessionLocal() as session:
        yield session


async def prepare() -> None:
    """Creates the tables, seeds file_events once, and makes its index (the migration that
    the unindexed-query plant never ran)."""
    async with engine.begin() as conn:
        # One API process at a time creates the schema (uvicorn --workers N start together).
        await conn.execute(text("SELECT pg_advisory_xact_lock(27270001)"))
        await conn.run_sync(Base.metadata.create_all)
        seeded = (await conn.execute(select(func.count()).select_from(FileEvent))).scalar_one()
        if seeded == 0 and settings.file_events_rows > 0:
            await conn.execute(
                text(
                    "INSERT INTO file_events (user_id, file_id, event, created_at) "
                    "SELECT (g % 5000) + 1, g, 'download', now() - g * interval '1 second' "
                    "FROM generate_series(1, :rows) AS g"
                ),
                {"rows": settings.file_events_rows},
            )
        if settings.plant_unindexed_query:
            await conn.execute(text("DROP INDEX IF EXISTS file_events_by_user"))
        else:
            await conn.execute(
                text(
                    "CREATE INDEX IF NOT EXISTS file_events_by_user "
                    "ON file_events (user_id, created_at)"
                )
            )
        await conn.execute(text("ANALYZE file_events"))
