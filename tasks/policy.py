"""The batch task's failure policy: what is retried, what fails, and what goes back on the queue.

- A bad picture is a permanent error of that item alone (ml.ImageError); the
  task body records it and the batch goes on. Nothing here is involved.
- Transient errors (the database locked or gone, the broker connection lost,
  CUDA out of memory) retry the whole batch with exponential back-off, up to
  VQ_TASK_MAX_RETRIES times; then its open items fail with the reason.
- The soft time limit: items that have used VQ_MAX_ATTEMPTS fail "timed out";
  the others go back on the queue one per message, so one slow picture no
  longer holds up its neighbours.
- The hard time limit, or the worker process dying (kill -9, out of memory, a
  decoder crash): the message goes back to the broker (acks_late,
  reject_on_worker_lost, acks_on_timeout off) and is delivered again. That
  delivery finds its items still `running` and sends each on its own, so the
  culprit is isolated; the claim fails an item that has already had
  VQ_MAX_ATTEMPTS, ending the loop.
- Anything else is a bug or a permanent condition (an unknown model): the
  batch's open items fail at once with a short reason, so the job finishes.
"""

from __future__ import annotations

import logging

import redis
import torch
from billiard.exceptions import WorkerLostError
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils.translation import ngettext
from kombu.exceptions import OperationalError as BrokerError

from ml import ModelUnavailable, UnknownModel

log = logging.getLogger(__name__)

# Worth another try: the same batch may well succeed in a few seconds.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,  # SQLite "database is locked", a PostgreSQL restart or failover
    InterfaceError,  # a database connection closed under us
    BrokerError,
    redis.ConnectionError,
    torch.OutOfMemoryError,  # CUDA out of memory: other batches on the GPU will finish
)
# Permanent, and their message is fit for the owner of the items.
EXPLAINED_ERRORS: tuple[type[BaseException], ...] = (UnknownModel, ModelUnavailable)


class BatchTask(Task):
    """Base class of tasks whose first argument is a list of Item ids."""

    acks_late = True
    reject_on_worker_lost = True
    # Hard time limit: put the message back instead of dropping it; the claim's
    # attempt limit (VQ_MAX_ATTEMPTS) turns a picture that always times out
    # into a failed item rather than an endless loop.
    acks_on_timeout = False
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = False  # the first retry waits 2 s, so items are released before it arrives

    @property
    def max_retries(self) -> int:
        return settings.VQ_TASK_MAX_RETRIES

    def __call__(self, *args, **kwargs):
        item_ids = item_ids_of(args, kwargs)
        if len(item_ids) > 1 and self.split_if_redelivered(item_ids, *args[1:], **kwargs):
            return None
        try:
            return super().__call__(*args, **kwargs)
        except SoftTimeLimitExceeded:
            self.after_soft_time_limit(item_ids, *args[1:], **kwargs)
            return None

    # --- a batch that comes back ------------------------------------------------
    def split_if_redelivered(self, item_ids: list[int], *args, **kwargs) -> bool:
        """A batch whose items are still `running` lost its worker (killed, or over the
        hard time limit). Send each item on its own instead of running the batch
        again, so a picture that kills its worker takes down only itself."""
        from webapp.jobs.models import Item

        lost = list(Item.objects.filter(pk__in=item_ids, status=Item.Status.RUNNING).values_list("pk", flat=True))
        if not lost:
            return False
        Item.objects.release(lost)
        waiting = list(Item.objects.filter(pk__in=item_ids, status=Item.Status.QUEUED).values_list("pk", flat=True))
        for item_id in waiting:
            self.send_again([item_id], *args, **kwargs)
        log.warning("batch of %d items came back from a lost worker: %d sent again one by one", len(item_ids), len(waiting))
        return True

    # --- soft time limit ----------------------------------------------------
    def after_soft_time_limit(self, item_ids: list[int], *args, **kwargs) -> None:
        from webapp.jobs.models import Item, give_up

        soft_limit = self.soft_limit_seconds()
        limit = settings.VQ_MAX_ATTEMPTS
        running = Item.objects.filter(pk__in=item_ids, status=Item.Status.RUNNING)
        exhausted, retry_ids = [], []
        for pk, job_id, attempts, base in running.values_list("pk", "job_id", "attempts", "attempts_at_retry"):
            if attempts - base >= limit:
                exhausted.append((pk, job_id))
            else:
                retry_ids.append(pk)
        tries = ngettext("%d attempt", "%d attempts", limit) % limit
        failed = give_up(exhausted, f"timed out: no result within the {soft_limit} s limit on {tries}")
        released = Item.objects.release(retry_ids)
        # Items of a job cancelled meanwhile were released as cancelled: not sent.
        for item_id in Item.objects.filter(pk__in=retry_ids, status=Item.Status.QUEUED).values_list("pk", flat=True):
            self.send_again([item_id], *args, **kwargs)
        log.warning(
            "batch of %d items hit the soft time limit (%s s): %d failed for good, %d sent again one by one",
            len(item_ids), soft_limit, failed, released,
        )  # fmt: skip

    def soft_limit_seconds(self):
        _hard, soft = self.request.timelimit or (None, None)
        return soft or self.soft_time_limit or self.app.conf.task_soft_time_limit

    def send_again(self, item_ids: list[int], *args, **kwargs) -> None:
        """Send these items in a new message like this one: same queue, same time limits."""
        hard, soft = self.request.timelimit or (None, None)
        queue = (self.request.delivery_info or {}).get("routing_key")
        self.apply_async(
            args=[item_ids, *args], kwargs=kwargs, queue=queue, time_limit=hard, soft_time_limit=soft,
            retries=self.request.retries + 1,
        )  # fmt: skip

    # --- retries and failures ----------------------------------------------
    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        from webapp.jobs.models import Item

        # Until the retry arrives its items are waiting, not running: the
        # reaper must not mistake them for a dead worker's.
        released = Item.objects.release(item_ids_of(args, kwargs))
        log.warning("batch retried in a while after %s: %s (%d items released)", type(exc).__name__, exc, released)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if isinstance(exc, (TimeLimitExceeded, WorkerLostError)):
            # Called in the worker's main process; the message goes back to the
            # queue and the next claim counts the attempt. Nothing to write.
            return
        from webapp.jobs.models import Item, give_up

        if isinstance(exc, EXPLAINED_ERRORS):
            reason = str(exc)
        elif isinstance(exc, TRANSIENT_ERRORS):
            retries = ngettext("%d retry", "%d retries", self.max_retries) % self.max_retries
            reason = f"gave up after {retries}: {type(exc).__name__} ({_first_line(exc)})"
        else:
            reason = f"internal error while classifying this batch ({type(exc).__name__}); it is in the worker log"
        item_ids = item_ids_of(args, kwargs)
        try:
            open_items = Item.objects.filter(pk__in=item_ids, status__in=Item.OPEN_STATUSES)
            failed = give_up(open_items.values_list("pk", "job_id"), reason)
        except DatabaseError:
            log.exception("batch failed and its items could not be marked failed; the reaper will find them")
            return
        log.error("batch of %d items failed: %s; %d items marked failed", len(item_ids), reason, failed)


def item_ids_of(args, kwargs) -> list[int]:
    ids = kwargs.get("item_ids", args[0] if args else [])
    return [int(item_id) for item_id in ids]


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]
