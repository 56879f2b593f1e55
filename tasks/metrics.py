"""Worker-side Prometheus metrics and the one log line per batch.

Worker processes record here; the numbers reach Prometheus in one of two ways:

- PROMETHEUS_MULTIPROC_DIR set (the stack of `make up` and the tests, every
  container): each process writes its values to files in that folder and
  whoever serves /metrics adds them up, so prefork children are counted too.
  On one machine the web's /metrics reads the same folder as the workers.
- VQ_METRICS_PORT set: the worker's main process serves /metrics on that port
  (one scrape target per worker host or pod, as in docker/ and k8s/).

prometheus_client picks its storage when it is first imported, so the folder
must be in the environment before the process starts, never set later.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter as Tally
from collections.abc import Collection

from celery import current_task
from celery.signals import task_failure, worker_init
from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess, start_http_server

log = logging.getLogger(__name__)

# Seconds: a CPU forward of a batch takes 30 ms to several seconds, a GPU one a few ms.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DECODE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

BATCH_SECONDS = Histogram(
    "vq_batch_seconds", "One batch task from claim to stored results.", ["model", "device"], buckets=_LATENCY_BUCKETS
)
INFERENCE_SECONDS = Histogram(
    "vq_inference_seconds", "One batched forward pass.", ["model", "device"], buckets=_LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "vq_batch_size", "Images in one forward pass.", ["model", "device"], buckets=_BATCH_SIZE_BUCKETS
)
DECODE_SECONDS = Histogram(
    "vq_decode_seconds", "Decode, preprocess and thumbnail of one image.", ["model"], buckets=_DECODE_BUCKETS
)
ITEMS_PROCESSED = Counter(
    "vq_items_processed_total",
    "Items a worker finished, by outcome: succeeded, failed, or deleted (the job was deleted while its batch ran; "
    "the result was dropped, and it is not counted as a failure).",
    ["model", "outcome"],
)
ITEM_FAILURES = Counter(
    "vq_item_failures_total", "Items that failed, by kind of error (items of deleted jobs are not counted).",
    ["model", "kind"],
)  # fmt: skip
TASK_FAILURES = Counter(
    "vq_task_failures_total", "Tasks that raised (time limits, lost connections), by exception.", ["task", "exception"]
)


def failure_kind(error: BaseException) -> str:
    """A short, bounded label for an item's error: the exception's class in snake case."""
    if isinstance(error, FileNotFoundError):
        return "missing_file"
    name = type(error).__name__
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def timed_forward(forward, model_name: str, device):
    """Wrap a batched forward so each pass is recorded once: its latency and its size."""
    device = getattr(device, "type", None) or str(device)
    latency = INFERENCE_SECONDS.labels(model_name, device)
    size = BATCH_SIZE.labels(model_name, device)

    def run(crops):
        started = time.perf_counter()
        results = forward(crops)
        latency.observe(time.perf_counter() - started)
        size.observe(len(crops))
        return results

    return run


def observe_batch(
    model_name: str, device, outcomes, *, written: int, forwards: str, held_max_ms: float,
    started: float, claimed: float, classified: float, deleted: Collection[int] = (),
) -> None:  # fmt: skip
    """Record a finished batch task in the metrics and log one line for it.

    `outcomes` holds one webapp.jobs.models.Outcome per claimed item; the
    times are the task's perf_counter() readings at start, after the claim
    and after classifying. `deleted` names the items whose rows were gone
    when the results were stored: their job was deleted meanwhile, so an
    error of theirs (typically their file, removed with the job) is no
    failure of the service. Forward passes are recorded by timed_forward.
    """
    now = time.perf_counter()
    device = getattr(device, "type", None) or str(device)
    kept = [outcome for outcome in outcomes if outcome.item_id not in deleted]
    succeeded = sum(1 for outcome in kept if outcome.succeeded)
    failed = len(kept) - succeeded
    gone = len(outcomes) - len(kept)
    failures = Tally(outcome.error_kind or "other" for outcome in kept if not outcome.succeeded)

    BATCH_SECONDS.labels(model_name, device).observe(now - started)
    if succeeded:
        ITEMS_PROCESSED.labels(model_name, "succeeded").inc(succeeded)
    if gone:
        ITEMS_PROCESSED.labels(model_name, "deleted").inc(gone)
    for kind, count in failures.items():
        ITEMS_PROCESSED.labels(model_name, "failed").inc(count)
        ITEM_FAILURES.labels(model_name, kind).inc(count)
    decode = DECODE_SECONDS.labels(model_name)
    for outcome in outcomes:
        if outcome.decode_ms is not None:
            decode.observe(outcome.decode_ms / 1000)

    job_ids = sorted({str(outcome.job_id) for outcome in outcomes})
    task_id = getattr(getattr(current_task, "request", None), "id", None)
    timings = {
        "claim_ms": round((claimed - started) * 1000, 1),
        "classify_ms": round((classified - claimed) * 1000, 1),
        "record_ms": round((now - classified) * 1000, 1),
        "total_ms": round((now - started) * 1000, 1),
    }
    log.info(
        # bench/ and tests/test_pools.py read the fields up to total= in this order.
        "batch done: model=%s items=%d ok=%d failed=%d deleted=%d written=%d forwards=%s held_max=%.1fms "
        "claim=%.0fms classify=%.0fms record=%.0fms total=%.0fms device=%s task=%s job=%s",
        model_name, len(outcomes), succeeded, failed, gone, written, forwards, held_max_ms, timings["claim_ms"],
        timings["classify_ms"], timings["record_ms"], timings["total_ms"], device, task_id, ",".join(job_ids),
        extra={
            "event": "batch_done", "task_id": task_id, "job_ids": job_ids,
            "item_ids": [outcome.item_id for outcome in outcomes], "model": model_name, "device": device,
            "items": len(outcomes), "succeeded": succeeded, "failed": failed, "deleted": gone,
            "failures": dict(failures),
            "written": written, "forwards": forwards, "held_max_ms": held_max_ms, **timings,
        },
    )  # fmt: skip


@task_failure.connect
def _count_task_failure(sender=None, exception=None, **_) -> None:
    TASK_FAILURES.labels(getattr(sender, "name", str(sender)), type(exception).__name__).inc()


def collector_registry() -> CollectorRegistry:
    """What this process should expose: every process's files in multiprocess mode, else its own."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def serve_metrics(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics for this host's worker processes on a port of its own (a daemon thread)."""
    start_http_server(port, addr=address, registry=collector_registry())
    log.info("worker metrics on http://%s:%d/metrics", address, port)


@worker_init.connect
def _serve_worker_metrics(sender=None, **_) -> None:
    port = settings.VQ_METRICS_PORT
    if not port:
        return
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning("VQ_METRICS_PORT is set without PROMETHEUS_MULTIPROC_DIR: prefork children's numbers are not seen")
    serve_metrics(port)
