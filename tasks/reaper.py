"""The reaper: finds work that nobody will finish and hands it out again.

Two kinds of stuck item, both invisible to Celery's own redelivery:

- `running` on a worker that is gone: the whole worker (main process and
  pool) was killed, or its machine died, so nobody is left to hand its batch
  back to the broker. Each item records which worker incarnation claimed it
  (worker_instance below: node name and a token made at start-up, so a worker
  restarted under the same name is a different one). The reaper asks every
  worker who it is (the `vq_instance` control command); a holder that has not
  answered for VQ_REAPER_GRACE seconds, over two passes or more, is gone.
  Items `running` for longer than the hard time limit plus VQ_REAPER_GRACE
  are stale too, whoever holds them (the hard limit would have killed a
  worker still on them): that also covers items whose message was lost with
  the broker's memory. Stuck items go back to `queued` and are sent again, or
  fail once they have had VQ_MAX_ATTEMPTS (items of a cancelled job become
  `cancelled`).
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
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import bootsteps
from celery.signals import worker_init
from celery.worker.control import inspect_command
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from tasks.celery_app import app

log = logging.getLogger(__name__)

LOCK_KEY = "vq:reaper:lock"
# Worker incarnation -> when a reaper first found it holding running items and not answering.
SILENT_KEY = "vq:reaper:silent"
# How long a reaper waits for the workers' answers. A live worker answers from
# its main process's event loop in milliseconds; one that misses a pass is
# asked again at the next, and only a silence of VQ_REAPER_GRACE counts.
ANSWER_TIMEOUT = 1.0

_instance = ""


def worker_instance() -> str:
    """This worker's incarnation ("" outside a worker): its node name and a token made at start-up."""
    return _instance


@worker_init.connect
def _name_this_incarnation(sender=None, **_) -> None:
    # In the main process, before the pool forks: its children inherit the name.
    global _instance
    _instance = f"{getattr(sender, 'hostname', socket.gethostname())}#{uuid.uuid4().hex[:12]}"


@inspect_command()
def vq_instance(state, **_):
    """Which incarnation this worker is: reapers elsewhere ask, to tell a live holder from a dead one."""
    return {"instance": _instance}


@dataclass
class ReapReport:
    requeued: int = 0  # stuck running items put back on the queue
    failed: int = 0  # stuck running items that had used all their attempts
    cancelled: int = 0  # stuck running items of cancelled jobs
    resent_jobs: list = field(default_factory=list)  # jobs whose queued items were sent again
    gone_workers: list = field(default_factory=list)  # silent holders whose running items were taken back
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
    report.gone_workers = sorted(gone_workers(now))
    # Conditional on still being stuck: a live worker that claims one meanwhile keeps it.
    stale = Item.objects.filter(
        Q(started_at__lt=stale_before) | Q(claimed_by__in=report.gone_workers), status=Item.Status.RUNNING
    )
    report.cancelled = stale.filter(job__status=Job.Status.CANCELLED).update(
        status=Item.Status.CANCELLED, finished_at=now
    )
    exhausted = stale.filter(attempts__gte=F("attempts_at_retry") + limit)
    report.failed = give_up(exhausted.values_list("pk", "job_id"), gave_up_message(limit))
    requeue_jobs = set(stale.values_list("job_id", flat=True))
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
            "reaper: %d stuck items requeued, %d failed after %d attempts, %d cancelled; jobs sent again: %s; "
            "workers gone: %s",
            report.requeued, report.failed, limit, report.cancelled, ", ".join(map(str, report.resent_jobs)) or "none",
            ", ".join(report.gone_workers) or "none",
        )  # fmt: skip
    return report


def gone_workers(now: datetime) -> set[str]:
    """Workers that hold running items and have not answered for VQ_REAPER_GRACE seconds.

    Asks only when some other worker holds running items. A holder's first
    silence is written down in Redis (shared by every reaper); it is gone
    once a pass VQ_REAPER_GRACE or more later still finds it silent. One that
    answers, or holds nothing any more, is struck off.
    """
    from webapp.jobs.models import Item

    holders = set(
        Item.objects.filter(status=Item.Status.RUNNING)
        .exclude(claimed_by="")
        .values_list("claimed_by", flat=True)
        .distinct()
    )
    # This worker is alive; and its own event loop, busy running this pass, could not answer anyway.
    holders.discard(_instance)
    silent = holders - live_workers() if holders else set()
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        silent_since = {key.decode(): float(value) for key, value in client.hgetall(SILENT_KEY).items()}
        forgotten = set(silent_since) - silent
        if forgotten:
            client.hdel(SILENT_KEY, *forgotten)
        noticed = {holder: now.timestamp() for holder in silent - set(silent_since)}
        if noticed:
            client.hset(SILENT_KEY, mapping=noticed)
    grace = settings.VQ_REAPER_GRACE
    return {holder for holder in silent if holder in silent_since and now.timestamp() - silent_since[holder] >= grace}


def live_workers() -> set[str]:
    """The incarnations of the workers that answer within ANSWER_TIMEOUT."""
    # A connection of its own: the replies are read on it, and a pooled one
    # may be stale after the broker restarted.
    with app.connection_for_write() as connection:
        replies = app.control.broadcast("vq_instance", reply=True, timeout=ANSWER_TIMEOUT, connection=connection)
    return {
        answer["instance"]
        for reply in replies or []
        for answer in reply.values()
        if isinstance(answer, dict) and answer.get("instance")
    }


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
