"""Periodic housekeeping, run by Celery beat (see celeryconfig.beat_schedule)."""

from __future__ import annotations

import logging

from tasks.celery_app import app
from webapp.jobs.retention import purge_expired_jobs, sweep_orphan_files

log = logging.getLogger(__name__)


@app.task(name="vq.purge_expired_jobs", acks_late=True, ignore_result=True)
def purge_expired_jobs_task() -> dict:
    """Delete jobs past VQ_RETENTION_DAYS with their files, then files that lost their job."""
    purged = purge_expired_jobs()
    orphans = sweep_orphan_files()
    return {"jobs": purged, "orphan_files": orphans}
