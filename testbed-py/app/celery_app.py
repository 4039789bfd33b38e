"""The Celery application, on Redis as broker and result backend. The API only sends tasks by
name; app.worker defines them."""

from celery import Celery

from .config import settings

celery_app = Celery("ffmpeg_api", broker=settings.redis_url, backend=settings.redis_url)
celery_app.conf.update(
    # Results carry the task's name and arguments, so that the backend tells what failed.
    result_extended=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    include=["app.worker"],
)

JOIN = "app.worker.join_videos"
AUDIO_OVERLAY = "app.worker.audio_overlay"
