"""Jobs and their items, and every state change they go through.

Workers and web requests both write these rows, so each transition is a
conditional UPDATE whose row count says who won: a second delivery of the
same batch, or a worker racing a cancel, changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import ngettext

log = logging.getLogger(__name__)


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        CANCELLED = "cancelled"

    OPEN_STATUSES = (Status.QUEUED, Status.RUNNING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    model_name = models.CharField("model", max_length=64)
    # Counters, kept by the same UPDATE that finishes each item, so the status
    # endpoint never scans a job's items.
    total = models.PositiveIntegerField(default=0)
    succeeded_count = models.PositiveIntegerField("succeeded", default=0)
    failed_count = models.PositiveIntegerField("failed", default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The job's run is timed from here when set (its log line's queued= and total=).
    retried_at = models.DateTimeField(
        null=True, blank=True, help_text="When its owner last sent its failed items through the workers again."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="job_owner_recent")]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status}, {self.finished_count}/{self.total})"

    def get_absolute_url(self) -> str:
        return reverse("job-detail", args=[self.pk])

    @property
    def finished_count(self) -> int:
        return self.succeeded_count + self.failed_count

    @property
    def progress(self) -> float:
        return round(self.finished_count / self.total, 4) if self.total else 1.0

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


def upload_path(item: Item, filename: str) -> str:
    # Names on disk never come from the user: job id plus a random name.
    return f"uploads/{item.job_id}/{uuid.uuid4().hex}{_extension(filename)}"


def _extension(filename: str) -> str:
    return "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""


class ItemQuerySet(models.QuerySet):
    def claim(self, item_ids: Iterable[int], max_attempts: int | None = None, worker: str = "") -> list[Item]:
        """Mark these items running (held by `worker`) and return them; skip finished or cancelled ones.

        Items already `running` are claimed again: that is a batch delivered a
        second time because the worker that had it died. With max_attempts,
        an item that has already been claimed that many times since it was
        created (or last retried by its owner) without a result is failed
        instead: a picture that kills or stalls its worker every time must
        not loop forever.
        """
        now = timezone.now()
        with transaction.atomic():
            claimable = self.filter(pk__in=list(item_ids), status__in=Item.OPEN_STATUSES).exclude(
                job__status=Job.Status.CANCELLED
            )
            if max_attempts:
                exhausted = claimable.filter(attempts__gte=F("attempts_at_retry") + max_attempts)
                give_up(exhausted.values_list("pk", "job_id"), gave_up_message(max_attempts))
            claimed_ids = list(claimable.values_list("pk", flat=True))
            self.filter(pk__in=claimed_ids).update(
                status=Item.Status.RUNNING, started_at=now, attempts=F("attempts") + 1, claimed_by=worker
            )
            items = list(self.filter(pk__in=claimed_ids).select_related("job").order_by("pk"))
            Job.objects.filter(pk__in={item.job_id for item in items}, status=Job.Status.QUEUED).update(
                status=Job.Status.RUNNING, started_at=now
            )
        return items

    def release(self, item_ids: Iterable[int]) -> int:
        """Put running items back to `queued` (their batch will be sent again); returns how many.

        Items of a job cancelled meanwhile become `cancelled` instead.
        """
        with transaction.atomic():
            running = self.filter(pk__in=list(item_ids), status=Item.Status.RUNNING)
            running.filter(job__status=Job.Status.CANCELLED).update(
                status=Item.Status.CANCELLED, finished_at=timezone.now()
            )
            return running.update(status=Item.Status.QUEUED)


def gave_up_message(attempts: int) -> str:
    tries = ngettext("after %d attempt: it", "after %d attempts: each one", attempts) % attempts
    return f"gave up {tries} timed out or its worker stopped (the picture may be too slow or crash the decoder)"


def give_up(item_and_job_ids: Iterable[tuple[int, uuid.UUID]], error: str) -> int:
    """Fail these items (those still open) with one error; returns how many were failed."""
    return record_outcomes([Outcome(item_id=item_id, job_id=job_id, error=error) for item_id, job_id in item_and_job_ids])


@dataclass(frozen=True)
class Outcome:
    """What a worker learned about one item: predictions, or an error."""

    item_id: int
    job_id: uuid.UUID
    predictions: list[dict] | None = None
    error: str = ""
    # A short label for metrics (tasks.metrics.failure_kind); never stored.
    error_kind: str = ""
    thumbnail: str = ""
    decode_ms: float | None = None
    inference_ms: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.predictions is not None


class Item(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"  # its job was cancelled before it ran

    OPEN_STATUSES = (Status.QUEUED, Status.RUNNING)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="items")
    filename = models.CharField(max_length=255, help_text="The name the owner uploaded it under.")
    file = models.FileField(upload_to=upload_path, max_length=255)
    thumbnail = models.FileField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    format = models.CharField(max_length=16, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    error = models.TextField(blank=True)
    predictions = models.JSONField(null=True, blank=True)
    # Top-1, copied out of predictions so search by label is an indexed query.
    top_label = models.CharField(max_length=128, blank=True, db_index=True)
    top_score = models.FloatField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # `attempts` when the owner last retried it: VQ_MAX_ATTEMPTS counts from here.
    attempts_at_retry = models.PositiveSmallIntegerField(default=0)
    # The worker (tasks.reaper.worker_instance) that last claimed it: the reaper
    # requeues the running items of a worker that has stopped answering.
    claimed_by = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    decode_ms = models.FloatField(null=True, blank=True)
    inference_ms = models.FloatField(null=True, blank=True, help_text="Forward pass of its batch.")

    objects = ItemQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["job", "status"], name="item_job_status")]

    def __str__(self) -> str:
        return f"{self.filename} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status not in self.OPEN_STATUSES


def record_outcomes(outcomes: Iterable[Outcome]) -> int:
    """Store a batch's results in one transaction; return how many were new.

    Each item is written only if it is still open, so a duplicate delivery
    writes nothing and counts nothing. Job counters move by the number of
    writes that won, and the job is done when its counters reach its total.
    """
    now = timezone.now()
    won: Counter[tuple[uuid.UUID, bool]] = Counter()
    with transaction.atomic():
        for outcome in outcomes:
            fields = dict(
                status=Item.Status.SUCCEEDED if outcome.succeeded else Item.Status.FAILED,
                predictions=outcome.predictions,
                error=outcome.error,
                finished_at=now,
                decode_ms=outcome.decode_ms,
                inference_ms=outcome.inference_ms,
            )
            if outcome.succeeded and outcome.predictions:
                fields.update(top_label=outcome.predictions[0]["label"], top_score=outcome.predictions[0]["score"])
            if outcome.thumbnail:
                fields["thumbnail"] = outcome.thumbnail
            if Item.objects.filter(pk=outcome.item_id, status__in=Item.OPEN_STATUSES).update(**fields):
                won[(outcome.job_id, outcome.succeeded)] += 1
        for job_id in {job_id for job_id, _ in won}:
            Job.objects.filter(pk=job_id).update(
                succeeded_count=F("succeeded_count") + won[(job_id, True)],
                failed_count=F("failed_count") + won[(job_id, False)],
            )
            finish_if_complete(job_id, now)
    return sum(won.values())


def finish_if_complete(job_id: uuid.UUID, now=None) -> bool:
    """Mark an open job done once every item has a terminal status."""
    finished = bool(
        Job.objects.filter(
            Q(pk=job_id),
            Q(status__in=Job.OPEN_STATUSES),
            Q(total__lte=F("succeeded_count") + F("failed_count")),
        ).update(status=Job.Status.DONE, finished_at=now or timezone.now())
    )
    if finished:
        _log_job_done(job_id)
    return finished


def _log_job_done(job_id: uuid.UUID) -> None:
    # One line per job, written by whichever process finished it.
    job = Job.objects.get(pk=job_id)
    # A retried job is timed from its retry: the days it sat done before are no queueing.
    since, queued_at = ("retry", job.retried_at) if job.retried_at else ("upload", job.created_at)
    waited = (job.started_at - queued_at).total_seconds() if job.started_at else 0.0
    took = (job.finished_at - queued_at).total_seconds()
    log.info(
        "job %s done: model=%s items=%d succeeded=%d failed=%d queued=%.2fs total=%.2fs since=%s",
        job.pk, job.model_name, job.total, job.succeeded_count, job.failed_count, waited, took, since,
        extra={
            "event": "job_done", "job_id": str(job.pk), "model": job.model_name, "items": job.total,
            "succeeded": job.succeeded_count, "failed": job.failed_count,
            "queued_s": round(waited, 3), "total_s": round(took, 3), "since": since,
        },
    )  # fmt: skip


def cancel_job(job: Job) -> bool:
    """Stop a job: queued items never run; a batch already running may finish.

    Returns False when the job was already finished. Counters keep what was
    done; items that never ran are marked cancelled.
    """
    now = timezone.now()
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, status__in=Job.OPEN_STATUSES).update(
            status=Job.Status.CANCELLED, finished_at=now
        ):
            return False
        job.items.filter(status=Item.Status.QUEUED).update(status=Item.Status.CANCELLED, finished_at=now)
    job.refresh_from_db()
    return True


def requeue_failed_items(job: Job) -> int:
    """Put a finished job's failed items back in the queue; returns how many.

    Only `done` jobs qualify: a running job's failures may still be counted,
    and a cancelled job was stopped on purpose. The caller enqueues them after
    commit. Each item's attempt counter keeps counting across retries; the
    give-up limit (claim's max_attempts) starts afresh.
    """
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(pk=job.pk, status=Job.Status.DONE).first()
        if locked is None:
            return 0
        retried = locked.items.filter(status=Item.Status.FAILED).update(
            status=Item.Status.QUEUED, error="", started_at=None, finished_at=None, attempts_at_retry=F("attempts")
        )
        if retried:
            Job.objects.filter(pk=job.pk).update(
                status=Job.Status.QUEUED, failed_count=F("failed_count") - retried, finished_at=None,
                retried_at=timezone.now(),
            )
    job.refresh_from_db()
    return retried

