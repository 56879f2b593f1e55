"""Send a job's queued items to the workers, a batch of ids per message."""

from __future__ import annotations

import logging
import time

from django.conf import settings

from tasks.celery_app import app
from tasks.inference import classify_batch
from webapp.jobs.models import Item, Job

log = logging.getLogger(__name__)


def queue_for_model(model_name: str) -> str:
    """The queue of the pool that serves this model (VQ_MODEL_QUEUES), else the default."""
    return settings.VQ_MODEL_QUEUES.get(model_name, settings.VQ_DEFAULT_QUEUE)


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
    # One connection for the whole job instead of one per message.
    with app.producer_or_acquire() as producer:
        for batch in batches:
            classify_batch.apply_async(args=[batch, job.model_name], queue=queue, producer=producer)
    log.info(
        "job %s enqueued: items=%d batches=%d queue=%s in %.1f ms",
        job_id, len(item_ids), len(batches), queue, (time.perf_counter() - started) * 1000,
    )  # fmt: skip
    return len(batches)
