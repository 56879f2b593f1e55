"""Domain actions on jobs. Views call these; they never touch rows directly."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from django.conf import settings
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from ml import available_models
from tasks.dispatch import enqueue_job
from webapp.jobs.models import Item, Job, cancel_job, requeue_failed_items
from webapp.jobs.retention import delete_job
from webapp.jobs.validation import AcceptedUpload, Rejection, check_upload
from webapp.security.limits import UploadLimitExceeded, UploadTooLargeForQuota, check_upload_allowed, record_upload

__all__ = ["JobRequestError", "UploadLimitExceeded", "cancel", "create_job", "delete_job", "retry_failed"]

log = logging.getLogger(__name__)


class JobRequestError(ValueError):
    """The request as a whole cannot become a job (no file, too many, bad model)."""


@dataclass
class JobCreation:
    job: Job | None
    rejected: list[Rejection] = field(default_factory=list)


def model_choices() -> tuple[str, ...]:
    return available_models()


def create_job(owner, uploads: Sequence[UploadedFile], model_name: str | None = None) -> JobCreation:
    """Validate every file, then store the good ones as one job in one transaction.

    Returns the job (None when no file was acceptable) and the rejected files
    with their reasons. The batch tasks are sent only after the commit.
    Raises UploadLimitExceeded when the owner is over their upload rate or
    daily image quota.
    """
    # None: the default model. An empty name is a mistake, and refused below.
    model_name = settings.VQ_DEFAULT_MODEL if model_name is None else model_name
    if model_name not in model_choices():
        raise JobRequestError(f"unknown model {model_name!r}; choose one of {', '.join(model_choices())}")
    if not uploads:
        raise JobRequestError("no files were sent; attach one or more images in the field 'images'")
    if len(uploads) > settings.VQ_MAX_FILES_PER_JOB:
        raise JobRequestError(
            f"{len(uploads)} files were sent; the limit is {settings.VQ_MAX_FILES_PER_JOB} per job"
        )

    # Before reading any file: an owner already over a limit costs us nothing.
    check_upload_allowed(owner, images=1)

    checked = [check_upload(upload) for upload in uploads]
    accepted = [result for result in checked if isinstance(result, AcceptedUpload)]
    rejected = [result for result in checked if isinstance(result, Rejection)]
    if not accepted:
        return JobCreation(job=None, rejected=rejected)

    try:
        job = _store_job(owner, model_name, accepted)
    except UploadTooLargeForQuota as error:
        raise JobRequestError(str(error)) from None
    log.info("job %s created: owner=%s model=%s items=%d rejected=%d",
             job.pk, owner.pk, model_name, job.total, len(rejected))
    return JobCreation(job=job, rejected=rejected)


def _store_job(owner, model_name: str, accepted: list[AcceptedUpload]) -> Job:
    stored: list[str] = []
    try:
        with transaction.atomic():
            # Counted in the job's transaction: no job, no charge; no charge, no job.
            record_upload(owner, len(accepted))
            job = Job.objects.create(owner=owner, model_name=model_name, total=len(accepted))
            items = []
            for upload in accepted:
                name = default_storage.save(f"uploads/{job.pk}/{uuid.uuid4().hex}{upload.extension}", upload.upload)
                stored.append(name)
                items.append(
                    Item(
                        job=job,
                        filename=upload.filename,
                        file=name,
                        sha256=upload.sha256,
                        format=upload.info.format,
                        width=upload.info.width,
                        height=upload.info.height,
                        size_bytes=upload.upload.size,
                    )
                )
            Item.objects.bulk_create(items, batch_size=500)
            transaction.on_commit(partial(enqueue_job, job.pk))
    except BaseException:
        # Nothing half-written: a job that did not commit leaves no files.
        for name in stored:
            default_storage.delete(name)
        raise
    return job


def cancel(job: Job) -> bool:
    """Cancel an open job; False if it had already finished."""
    cancelled = cancel_job(job)
    if cancelled:
        log.info("job %s cancelled: %d succeeded, %d failed of %d", job.pk, job.succeeded_count, job.failed_count, job.total)
    return cancelled


def retry_failed(job: Job) -> int:
    """Send a done job's failed items through the workers again; returns how many."""
    with transaction.atomic():
        retried = requeue_failed_items(job)
        if retried:
            transaction.on_commit(partial(enqueue_job, job.pk))
    log.info("job %s: %d failed items queued for retry", job.pk, retried)
    return retried

