"""The FastAPI application: the routers under /api/v1, health, the error shapes of the
contract, the rate limit. Run with `uvicorn app.main:app`."""

import logging
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from . import auth, db, files, tasks, users
from .config import settings
from .ratelimit import RateLimit

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(_: FastAPI):
    await db.prepare()
    yield
    await db.engine.dispose()


app = FastAPI(title="FFmpeg API", lifespan=lifespan)
app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute)

health = APIRouter(tags=["health"])


@health.get("/health/")
async def api_health() -> dict[str, object]:
    return {"success": True, "status": "healthy", "message": "FFmpeg API is running"}


api = APIRouter(prefix="/api/v1")
api.include_router(health)
api.include_router(auth.router)
api.include_router(files.router)
api.include_router(tasks.router)
api.include_router(users.router)
app.include_router(api)


@app.get("/health")
async def root_health() -> dict[str, object]:
    return await api_health()


@app.exception_handler(Exception)
async def internal_error(_: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=error)
    return JSONResponse(
        {"success": False, "error": {"code": "INTERNAL_ERROR", "message": "Internal server error"}},
        status_code=500,
    )
