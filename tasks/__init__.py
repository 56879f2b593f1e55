"""Celery side of VisionQueue: the app, worker start-up and the inference task.

`celery -A tasks worker` finds the app here.
"""

from tasks.celery_app import app

__all__ = ["app"]
