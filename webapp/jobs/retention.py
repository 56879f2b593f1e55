"""Retention: deleting jobs with their files, the periodic purge, orphan sweeping.

Files follow rows: whenever a Job row is deleted (by its owner, the purge,
the admin, or because its user was deleted), its folders under MEDIA_ROOT go
too, once the deletion has committed.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from webapp.jobs.models import Job, cancel_job

log = logging.getLogger(__name__)

# Every file of a job lives under one of these, in a folder named by its id.
JOB_FILE_ROOTS = ("uploads", "thumbs")
# A folder with no job row is left alone this long: its upload may still be
# in its (uncommitted) transaction, or a worker may be finishing a batch.
ORPHAN_GRACE = timedelta(hours=1)
PURGE_CHUNK = 200


def delete_job(job: Job) -> None:
    """Delete a job, its items and (after commit) its files; stops it first if it is running."""
    job_id = job.pk  # delete() sets the instance's pk to None
    with transaction.atomic():
        # Cancelled first, so a worker that claims its next batch finds nothing.
        cancel_job(job)
        job.delete()
    log.info("job %s deleted by its owner", job_id)


@receiver(post_delete, sender=Job, dispatch_uid="jobs.remove_job_files")
def _remove_files_of_deleted_job(sender, instance: Job, **kwargs) -> None:
    transaction.on_commit(partial(remove_job_files, instance.pk))


def remove_job_files(job_id: uuid.UUID) -> int:
    """Delete every stored file of a job; returns how many files went."""
    removed = 0
    for root in JOB_FILE_ROOTS:
        folder = f"{root}/{job_id}"
        try:
            _, names = default_storage.listdir(folder)
        except FileNotFoundError:
            continue
        for name in names:
            default_storage.delete(f"{folder}/{name}")
            removed += 1
        remove_empty_folder(folder)
    return removed


def remove_empty_folder(folder: str) -> None:
    """Remove a storage folder if it is empty and local; otherwise leave it."""
    try:
        os.rmdir(default_storage.path(folder))
    except (NotImplementedError, FileNotFoundError, OSError):
        pass  # not a local storage, already gone, or refilled meanwhile


def purge_expired_jobs(now: datetime | None = None) -> int:
    """Delete jobs created more than VQ_RETENTION_DAYS ago; returns how many.

    Jobs go in small transactions, so the purge never holds the database's
    write lock for long.
    """
    from webapp.security.limits import purge_old_records

    now = now or timezone.now()
    purge_old_records(now)
    if settings.VQ_RETENTION_DAYS <= 0:
        return 0
    cutoff = now - timedelta(days=settings.VQ_RETENTION_DAYS)
    purged = 0
    while True:
        chunk = list(Job.objects.filter(created_at__lt=cutoff).order_by("created_at").values_list("pk", flat=True)[:PURGE_CHUNK])
        if not chunk:
            break
        with transaction.atomic():
            # One delete per job so each one's files are removed (post_delete).
            for job in Job.objects.filter(pk__in=chunk):
                cancel_job(job)
                job.delete()
        purged += len(chunk)
    if purged:
        log.info("purged %d jobs created before %s (retention %d days)", purged, cutoff, settings.VQ_RETENTION_DAYS)
    return purged


def sweep_orphan_files(now: float | None = None) -> int:
    """Remove job folders whose job no longer exists (a worker wrote a thumbnail after the delete, say)."""
    now = now or time.time()
    removed = 0
    for root in JOB_FILE_ROOTS:
        try:
            folders, _ = default_storage.listdir(root)
        except FileNotFoundError:
            continue
        job_ids = {_as_uuid(folder) for folder in folders} - {None}
        existing = set(Job.objects.filter(pk__in=job_ids).values_list("pk", flat=True))
        for job_id in job_ids - existing:
            folder = f"{root}/{job_id}"
            if now - _newest_mtime(folder) > ORPHAN_GRACE.total_seconds():
                removed += remove_job_files(job_id)
    if removed:
        log.info("removed %d orphaned files", removed)
    return removed


def _as_uuid(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(name)
    except ValueError:
        return None


def _newest_mtime(folder: str) -> float:
    _, names = default_storage.listdir(folder)
    times = [default_storage.get_modified_time(f"{folder}/{name}").timestamp() for name in names]
    try:
        # The folder itself changes when a file is added: covers one just made.
        times.append(os.path.getmtime(default_storage.path(folder)))
    except NotImplementedError:
        pass
    return max(times, default=0.0)
