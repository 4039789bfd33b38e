"""The FFmpeg API, as our users write it: FastAPI + SQLAlchemy (asyncpg) + Celery (Redis)."""
