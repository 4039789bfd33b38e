"""Settings from the environment, read once. The PLANT_* switches turn on the planted
bottlenecks (README.md lists them); all off is the healthy configuration."""

import os
from dataclasses import dataclass


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _database_url(scheme: str) -> str:
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ffmpeg_api")
    _, rest = url.split("://", 1)
    return f"{scheme}://{rest}"


@dataclass(frozen=True)
class Settings:
    async_database_url: str
    sync_database_url: str
    redis_url: str
    storage_dir: str
    jwt_secret: str
    access_token_minutes: int
    refresh_token_days: int
    rate_limit_per_minute: int
    bcrypt_rounds: int
    db_pool_size: int
    db_max_overflow: int
    file_events_rows: int
    storage_latency_ms: int
    plant_bcrypt_on_loop: bool
    plant_unindexed_query: bool
    plant_n_plus_one: bool
    plant_small_pool: bool
    plant_failing_error_handler: bool
    plant_sync_sleep: bool


def load() -> Settings:
    small_pool = _flag("PLANT_SMALL_POOL")
    return Settings(
        async_database_url=_database_url("postgresql+asyncpg"),
        sync_database_url=_database_url("postgresql+psycopg"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/1"),
        storage_dir=os.environ.get("STORAGE_DIR", "/tmp/ffmpeg-api-storage"),
        jwt_secret=os.environ.get("JWT_SECRET_KEY", "change-me-in-production-a-32-byte-secret"),
        access_token_minutes=int(os.environ.get("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", "30")),
        refresh_token_days=int(os.environ.get("JWT_REFRESH_TOKEN_EXPIRE_DAYS", "7")),
        rate_limit_per_minute=int(os.environ.get("RATE_LIMIT_PER_MINUTE", "60")),
        bcrypt_rounds=int(os.environ.get("BCRYPT_ROUNDS", "12")),
        db_pool_size=2 if small_pool else int(os.environ.get("DB_POOL_SIZE", "10")),
        db_max_overflow=0 if small_pool else int(os.environ.get("DB_MAX_OVERFLOW", "10")),
        file_events_rows=int(os.environ.get("FILE_EVENTS_ROWS", "500000")),
        storage_latency_ms=int(os.environ.get("STORAGE_LATENCY_MS", "30")),
        plant_bcrypt_on_loop=_flag("PLANT_BCRYPT_ON_LOOP"),
        plant_unindexed_query=_flag("PLANT_UNINDEXED_QUERY"),
        plant_n_plus_one=_flag("PLANT_N_PLUS_ONE"),
        plant_small_pool=small_pool,
        plant_failing_error_handler=_flag("PLANT_FAILING_ERROR_HANDLER"),
        plant_sync_sleep=_flag("PLANT_SYNC_SLEEP"),
    )


settings = load()
