"""/metrics: the system's state read at scrape time, plus the workers' own numbers.

Jobs and items by status, items finished per second and queue lengths come
from the database and the broker when Prometheus scrapes, so every web
process answers the same and nothing is kept in memory. Worker-side numbers
(inference latency, batch sizes, decode time, failures by kind) are added from
PROMETHEUS_MULTIPROC_DIR when the workers share it (one machine: `make up`,
the tests); elsewhere each worker serves its own (tasks/metrics.py).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from webapp.jobs.models import Item, Job
from webapp.ops.health import broker_client

log = logging.getLogger(__name__)

# Items finished in this window, divided by its length, give items per second.
RATE_WINDOW = timedelta(seconds=60)
# kombu's Redis transport keeps messages with a priority in lists beside the queue's own.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def reported_queues() -> list[str]:
    names = {settings.VQ_DEFAULT_QUEUE, *settings.VQ_MODEL_QUEUES.values(), *settings.VQ_METRICS_QUEUES}
    return sorted(name for name in names if name)


class SystemStateCollector:
    """Reads the database and the broker on each scrape; a source that fails reports up=0."""

    def collect(self):
        up = GaugeMetricFamily("vq_metrics_source_up", "Whether /metrics could read this source.", labels=["source"])
        try:
            yield from self._database()
            up.add_metric(["database"], 1)
        except Exception:
            log.warning("metrics: reading the database failed", exc_info=True)
            up.add_metric(["database"], 0)
        try:
            yield from self._queues()
            up.add_metric(["broker"], 1)
        except Exception:
            log.warning("metrics: reading the broker failed", exc_info=True)
            up.add_metric(["broker"], 0)
        yield up

    def _database(self):
        jobs = GaugeMetricFamily("vq_jobs", "Jobs by status.", labels=["status"])
        counts = dict(Job.objects.order_by().values_list("status").annotate(n=Count("pk")))
        for status in Job.Status.values:
            jobs.add_metric([status], counts.get(status, 0))

        items = GaugeMetricFamily("vq_items", "Items (images) by status.", labels=["status"])
        counts = dict(Item.objects.order_by().values_list("status").annotate(n=Count("pk")))
        for status in Item.Status.values:
            items.add_metric([status], counts.get(status, 0))

        rate = GaugeMetricFamily(
            "vq_items_per_second",
            f"Items finished (succeeded or failed) per second over the last {RATE_WINDOW.seconds} s.",
        )
        rate.add_metric([], finished_since(timezone.now() - RATE_WINDOW) / RATE_WINDOW.total_seconds())
        # Yield only once every query worked, so a failure never leaves half a picture.
        yield from (jobs, items, rate)

    def _queues(self):
        lengths = GaugeMetricFamily("vq_queue_length", "Batch messages waiting in the queue.", labels=["queue"])
        client = broker_client()
        names = reported_queues()
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(name + suffix)
            answers = pipe.execute()
        for index, name in enumerate(names):
            step = len(_PRIORITY_SUFFIXES)
            lengths.add_metric([name], sum(answers[index * step : (index + 1) * step]))
        yield lengths


def finished_since(cutoff) -> int:
    """Items that ended succeeded or failed after cutoff.

    Reached through their jobs (open ones, or finished after cutoff) so the
    query walks the (job, status) index of a few jobs, not the whole table.
    """
    recent_jobs = Job.objects.filter(Q(status__in=Job.OPEN_STATUSES) | Q(finished_at__gte=cutoff)).values("pk")
    return Item.objects.filter(
        job__in=recent_jobs,
        status__in=(Item.Status.SUCCEEDED, Item.Status.FAILED),
        finished_at__gte=cutoff,
    ).count()


_registry: CollectorRegistry | None = None


def registry() -> CollectorRegistry:
    global _registry
    if _registry is None:
        fresh = CollectorRegistry()
        if multiprocess_dir():
            multiprocess.MultiProcessCollector(fresh)
        fresh.register(SystemStateCollector())
        _registry = fresh
    return _registry


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition() -> tuple[bytes, str]:
    """The Prometheus text format and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST
