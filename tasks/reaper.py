"""The reaper: finds work that nobody will finish and hands it out again.

Two kinds of stuck item, both invisible to Celery's own redelivery:

- `running` for longer than the hard time limit plus VQ_REAPER_GRACE: no
  worker can still be on it (the hard limit would have killed it), so its
  machine died or its message was lost with the broker's memory. Such items
  go back to `queued` and are sent again, or fail once they have had
  VQ_MAX_ATTEMPTS (items of a cancelled job become `cancelled`).
- `queued` in a job older than VQ_REAPER_GRACE while the broker holds no
  message at all (every queue empty, nothing unacknowledged): their messages
  are gone, as after a restart of a Redis that keeps nothing on disk, or an
  enqueue that failed because the broker was down. They are sent again.

Sending twice is harmless: the claim and the result write are conditional
updates. Every worker runs the reaper every VQ_REAPER_INTERVAL seconds in its
main process (ReaperStep below), one at a time across workers thanks to a
short lock in Redis; `manage.py reap_stuck_items` runs it by hand or from cron.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta

from celery import bootsteps
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from tasks.celery_app import app

log = logging.getLogger(__name__)

LOCK_KEY = "vq:reaper:lock"


@dataclass
class ReapReport:
    requeued: int = 0  # stale running items put back on the queue
    failed: int = 0  # stale running items that had used all their attempts
    cancelled: int = 0  # stale running items of cancelled jobs
    resent_jobs: list = field(default_factory=list)  # jobs whose queued items were sent again
    skipped: bool = False  # another reaper holds the lock

    @property
    def changed_anything(self) -> bool:
        return bool(self.requeued or self.failed or self.cancelled or self.resent_jobs)


def reap(now=None, use_lock: bool = True) -> ReapReport:
    """One pass over stuck items; see the module docstring for the rules."""
    from tasks.dispatch import enqueue_job
    from webapp.jobs.models import Item, Job, gave_up_message, give_up

    now = now or timezone.now()
    report = ReapReport()
    if use_lock and not _take_lock():
        report.skipped = True
        return report

    limit = settings.VQ_MAX_ATTEMPTS
    grace = timedelta(seconds=settings.VQ_REAPER_GRACE)
    stale_before = now - timedelta(seconds=settings.VQ_TASK_HARD_TIME_LIMIT) - grace
    stale = Item.objects.stale(stale_before)
    report.cancelled = stale.filter(job__status=Job.Status.CANCELLED).update(
        status=Item.Status.CANCELLED, finished_at=now
    )
    exhausted = stale.filter(attempts__gte=F("attempts_at_retry") + limit)
    report.failed = give_up(exhausted.values_list("pk", "job_id"), gave_up_message(limit))
    requeue_jobs = set(stale.values_list("job_id", flat=True))
    # Conditional on still being stale: a worker that claims one meanwhile keeps it.
    report.requeued = stale.update(status=Item.Status.QUEUED)

    jobs_to_send = set(requeue_jobs)
    if broker_is_idle():
        orphaned = Item.objects.filter(
            status=Item.Status.QUEUED,
            job__status__in=Job.OPEN_STATUSES,
            job__created_at__lt=now - grace,
        )
        jobs_to_send |= set(orphaned.values_list("job_id", flat=True).distinct())
    for job_id in sorted(jobs_to_send, key=str):
        enqueue_job(job_id)
    report.resent_jobs = sorted(jobs_to_send, key=str)
    if report.changed_anything:
        log.warning(
            "reaper: %d stale items requeued, %d failed after %d attempts, %d cancelled; jobs sent again: %s",
            report.requeued, report.failed, limit, report.cancelled, ", ".join(map(str, report.resent_jobs)) or "none",
        )  # fmt: skip
    return report


def broker_is_idle() -> bool:
    """True when no queue holds a message and no message is out with a worker.

    Then no message exists for any queued item, so a queued item older than
    the grace period has lost its message. Reads the Redis transport's own
    bookkeeping (the `unacked` hash of kombu's Redis transport).
    """
    queues = {settings.VQ_DEFAULT_QUEUE, *settings.VQ_MODEL_QUEUES.values()}
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        if channel.client.hlen(channel.unacked_key):
            return False
        return all(channel.queue_declare(queue=queue).message_count == 0 for queue in queues)


def _take_lock() -> bool:
    interval = max(1, settings.VQ_REAPER_INTERVAL)
    holder = f"{socket.gethostname()}:{os.getpid()}"
    with app.connection_for_write() as connection:
        # Expires a little before the next pass, so one crashed holder blocks nothing.
        return bool(connection.default_channel.client.set(LOCK_KEY, holder, nx=True, px=int(interval * 900)))


def reap_safely() -> None:
    """The worker's periodic call: never let a reaper problem reach the worker."""
    from django.db import close_old_connections, connections

    close_old_connections()
    try:
        reap()
    except Exception:  # noqa: BLE001 - the broker or database may be down; the next pass tries again
        log.warning("reaper pass failed; trying again in %s s", settings.VQ_REAPER_INTERVAL, exc_info=True)
    finally:
        # The main process forks pool children: hold no connection across passes.
        connections.close_all()


class ReaperStep(bootsteps.StartStopStep):
    """Runs reap_safely every VQ_REAPER_INTERVAL seconds on the worker's event-loop timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        interval = settings.VQ_REAPER_INTERVAL
        if interval > 0:
            self.tref = worker.timer.call_repeatedly(interval, reap_safely, priority=10)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


app.steps["worker"].add(ReaperStep)
