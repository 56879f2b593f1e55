"""Send a job's queued items to the workers, a batch of ids per message."""

from __future__ import annotations

import logging
import time
from functools import cache

import redis
from django.conf import settings
from kombu.exceptions import OperationalError as BrokerError

from tasks.celery_app import app
from tasks.routing import queue_for_model
from webapp.jobs.models import Item, Job

log = logging.getLogger(__name__)

__all__ = ["enqueue_job", "queue_for_model"]

# The task in tasks.inference; its name is its contract with the workers.
CLASSIFY_BATCH = "vq.classify_batch"


def enqueue_job(job_id) -> int:
    """Publish every queued item of the job; returns the number of messages sent.

    Called after the job's transaction commits, so a worker never receives an
    id whose row it cannot see.
    """
    started = time.perf_counter()
    job = Job.objects.only("model_name").get(pk=job_id)
    item_ids = list(
        Item.objects.filter(job_id=job_id, status=Item.Status.QUEUED).order_by("pk").values_list("pk", flat=True)
    )
    queue = queue_for_model(job.model_name)
    size = settings.VQ_BATCH_SIZE
    batches = [item_ids[start : start + size] for start in range(0, len(item_ids), size)]
    # One connection for the whole job instead of one per message. Sent by
    # name: the web process never imports the task module (nor torch).
    with app.producer_or_acquire() as producer:
        for batch in batches:
            app.send_task(CLASSIFY_BATCH, args=[batch, job.model_name], queue=queue, producer=producer)
    log.info(
        "job %s enqueued: items=%d batches=%d queue=%s in %.1f ms",
        job_id, len(item_ids), len(batches), queue, (time.perf_counter() - started) * 1000,
    )  # fmt: skip
    return len(batches)


def enqueue_job_or_leave_queued(job_id) -> int:
    """enqueue_job for transaction.on_commit: a broker outage must not fail the request.

    The job is already committed. If the broker went away between the
    upload's check and this call, its items stay `queued` with no message,
    and the reaper (tasks.reaper) sends them once the broker is back.
    """
    try:
        return enqueue_job(job_id)
    except (BrokerError, redis.RedisError, OSError) as error:
        log.warning("job %s: broker unavailable (%s); its items stay queued for the reaper to send", job_id, error)
        return 0


def broker_is_reachable() -> bool:
    """True when the broker answers a PING within VQ_BROKER_CHECK_TIMEOUT seconds."""
    try:
        return bool(_broker_client().ping())
    except (redis.RedisError, OSError):
        return False


@cache
def _broker_client() -> redis.Redis:
    # One small pool per process; redis-py reconnects by itself after an outage.
    timeout = settings.VQ_BROKER_CHECK_TIMEOUT
    return redis.Redis.from_url(app.conf.broker_url, socket_connect_timeout=timeout, socket_timeout=timeout)
