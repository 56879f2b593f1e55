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
from django.utils.translation import ngettext

from ml import available_models
from tasks.dispatch import broker_is_reachable, enqueue_job_or_leave_queued
from webapp.jobs.models import Item, Job, cancel_job, requeue_failed_items
from webapp.jobs.retention import delete_job, remove_empty_folder
from webapp.jobs.uploads import expand_uploads
from webapp.jobs.validation import AcceptedUpload, Rejection, check_upload
from webapp.security.limits import UploadLimitExceeded, UploadTooLargeForQuota, check_upload_allowed, record_upload

__all__ = [
    "CANCEL_EFFECT", "JobRequestError", "QueueUnavailable", "UploadLimitExceeded", "cancel", "cancel_summary",
    "create_job", "delete_job", "retry_failed",
]

log = logging.getLogger(__name__)


class JobRequestError(ValueError):
    """The request as a whole cannot become a job (no file, too many, bad model)."""

    status_code = 400


class QueueUnavailable(JobRequestError):
    """The broker does not answer: a new job could not be handed to the workers."""

    status_code = 503
    retry_after_seconds = 30


@dataclass
class JobCreation:
    job: Job | None
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class StoredImage:
    accepted: AcceptedUpload
    name: str  # where default_storage keeps it
    size: int


def model_choices() -> tuple[str, ...]:
    return available_models()


def create_job(
    owner, uploads: Sequence[UploadedFile], model_name: str | None = None, refused: Sequence[Rejection] = ()
) -> JobCreation:
    """Validate every file (and every member of a .zip), then store the good ones as one job.

    Returns the job (None when no file was acceptable) and the rejected files
    with their reasons, followed by `refused`: files the caller turned away
    before (sent in the wrong form field, say), reported and counted with the
    rest. Files are checked and stored one at a time; the Job and its Items
    are created in one transaction, the batch tasks are sent only after it
    commits, and on any failure the stored files are deleted, so nothing is
    left half-created. Raises UploadLimitExceeded when the
    owner is over their upload rate or daily image quota.
    """
    # None: the default model. An empty name is a mistake, and refused below.
    model_name = settings.VQ_DEFAULT_MODEL if model_name is None else model_name
    if model_name not in model_choices():
        # Quoted and cut short: the value is the client's, and may be a whole file (curl's -F model=<file).
        shown = repr(model_name[:40]) + (" (cut short)" if len(model_name) > 40 else "")
        what = "the field 'model' is empty" if not model_name else f"unknown model {shown}"
        raise JobRequestError(f"{what}; choose one of {', '.join(model_choices())} or leave it out for the default")
    if not uploads:
        raise JobRequestError("no files were sent; attach one or more images in the field 'images'")
    if len(uploads) > settings.VQ_MAX_FILES_PER_JOB:
        raise JobRequestError(
            ngettext("%d file was sent", "%d files were sent", len(uploads)) % len(uploads)
            + f"; the limit is {settings.VQ_MAX_FILES_PER_JOB} per job"
        )
    if not broker_is_reachable():
        # Refuse before storing anything: a job the workers cannot hear of would only wait.
        raise QueueUnavailable(
            "the job queue (Redis) is not answering; nothing was created, please try again in a minute"
        )

    # Before reading any file: an owner already over a limit costs us nothing.
    check_upload_allowed(owner, images=1)

    job_id = uuid.uuid4()
    stored: list[StoredImage] = []
    rejected: list[Rejection] = []
    try:
        for candidate in expand_uploads(uploads):
            if isinstance(candidate, Rejection):
                rejected.append(candidate)
                continue
            checked = check_upload(candidate.file, candidate.filename)
            if isinstance(checked, Rejection):
                rejected.append(checked)
                continue
            if len(stored) == settings.VQ_MAX_FILES_PER_JOB:
                raise JobRequestError(
                    f"the upload holds more than {settings.VQ_MAX_FILES_PER_JOB} images "
                    f"(counting the members of archives); the limit is {settings.VQ_MAX_FILES_PER_JOB} per job; "
                    "nothing was created"
                )
            name = default_storage.save(f"{_job_folder(job_id)}/{uuid.uuid4().hex}{checked.extension}", candidate.file)
            stored.append(StoredImage(checked, name, candidate.file.size))
        rejected.extend(refused)
        if not stored:
            return JobCreation(job=None, rejected=rejected)
        job = _create_rows(job_id, owner, model_name, stored, rejected=len(rejected))
    except UploadTooLargeForQuota as error:
        _delete_files(job_id, stored)
        raise JobRequestError(str(error)) from None
    except BaseException:
        # Nothing half-written: a job that did not commit leaves no files.
        _delete_files(job_id, stored)
        raise
    return JobCreation(job=job, rejected=rejected)


def _create_rows(job_id: uuid.UUID, owner, model_name: str, stored: list[StoredImage], rejected: int) -> Job:
    with transaction.atomic():
        # Counted in the job's transaction: no job, no charge; no charge, no job.
        record_upload(owner, len(stored))
        job = Job.objects.create(pk=job_id, owner=owner, model_name=model_name, total=len(stored))
        Item.objects.bulk_create(
            [
                Item(
                    job=job,
                    filename=image.accepted.filename,
                    file=image.name,
                    sha256=image.accepted.sha256,
                    format=image.accepted.info.format,
                    width=image.accepted.info.width,
                    height=image.accepted.info.height,
                    size_bytes=image.size,
                )
                for image in stored
            ],
            batch_size=500,
        )
        # Commit hooks run in order: the "created" line comes before "enqueued".
        transaction.on_commit(partial(
            log.info, "job %s created: owner=%s model=%s items=%d rejected=%d",
            job.pk, owner.pk, model_name, job.total, rejected,
        ))  # fmt: skip
        transaction.on_commit(partial(enqueue_job_or_leave_queued, job.pk))
    return job


def _delete_files(job_id: uuid.UUID, stored: list[StoredImage]) -> None:
    for image in stored:
        default_storage.delete(image.name)
    remove_empty_folder(_job_folder(job_id))


def _job_folder(job_id: uuid.UUID) -> str:
    return f"uploads/{job_id}"


# What cancelling does, in every message that reports it (API, job page, admin):
# queued items are marked cancelled and never claimed; a batch a worker has
# already claimed runs to its end and its results count.
CANCEL_EFFECT = "will not run; those already running may still finish"


def cancel(job: Job) -> bool:
    """Cancel an open job; False if it had already finished."""
    cancelled = cancel_job(job)
    if cancelled:
        log.info("job %s cancelled: %d succeeded, %d failed of %d", job.pk, job.succeeded_count, job.failed_count, job.total)
    return cancelled


def cancel_summary(job: Job) -> str:
    """The owner's message after cancel(job): what will not run, what may still finish, what had finished."""
    not_run = job.items.filter(status=Item.Status.CANCELLED).count()
    running = job.items.filter(status=Item.Status.RUNNING).count()
    return " ".join([
        ngettext("Job cancelled: %d queued image", "Job cancelled: %d queued images", not_run) % not_run,
        f"{CANCEL_EFFECT} ({running} running now).",
        ngettext("%(done)d of %(total)d image had finished.", "%(done)d of %(total)d images had finished.", job.total)
        % {"done": job.finished_count, "total": job.total},
    ])  # fmt: skip


def retry_failed(job: Job) -> int:
    """Send a done job's failed items through the workers again; returns how many.

    Raises QueueUnavailable when the broker does not answer: then nothing
    changes, the items stay `failed` with their errors and attempt counts.
    """
    if not Job.objects.filter(pk=job.pk, status=Job.Status.DONE, items__status=Item.Status.FAILED).exists():
        return 0
    if not broker_is_reachable():
        # Checked before any row changes, as for a new upload. Should the
        # broker go in the moment between this check and the publish, the
        # items wait `queued` and the reaper sends them once it is back.
        raise QueueUnavailable(
            "the job queue (Redis) is not answering; nothing was retried and the failed images stay as they were, "
            "please try again in a minute"
        )
    with transaction.atomic():
        retried = requeue_failed_items(job)
        if retried:
            transaction.on_commit(partial(enqueue_job_or_leave_queued, job.pk))
    log.info("job %s: %d failed items queued for retry", job.pk, retried)
    return retried

