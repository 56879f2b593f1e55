"""Measure the two shared parts that bound scale-out: database writes and the broker.

Workers and web processes scale out; every one of them writes results to one
database and passes messages through one Redis. This times, on the configured
database and broker, the work those two do per batch, without the model:

- database: claim a batch of items (conditional UPDATE) and store its results
  (one conditional UPDATE per item + job counters), as a worker does;
- broker: publish batch messages as the web does, and take and acknowledge
  them one by one as workers do (kombu's Redis transport, acks emulated).

It creates a scratch user, job and queue, and deletes them at the end. Run it
against a scratch database, not production.
"""

from __future__ import annotations

import time
import uuid

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from kombu import Connection, Exchange, Queue

from tasks.celery_app import app
from webapp.jobs.models import Item, Job, Outcome, record_outcomes

PREDICTIONS = [{"label": f"label {rank}", "class_index": rank, "score": 0.2} for rank in range(5)]


class Command(BaseCommand):
    help = "Time database writes and broker messages per batch (scratch rows and queue, removed after)."

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=4000)
        parser.add_argument("--batch-size", type=int, default=8)

    def handle(self, items, batch_size, **options):
        owner, _ = get_user_model().objects.get_or_create(username=f"measure-limits-{uuid.uuid4().hex[:8]}")
        job = Job.objects.create(owner=owner, model_name="efficientnet-lite0", total=items)
        try:
            rows = self._time_database(job, items, batch_size)
        finally:
            job.delete()
            owner.delete()
        messages = self._time_broker(items // batch_size, batch_size)

        self.stdout.write(f"database  {_vendor()}: {items} items in batches of {batch_size}")
        self.stdout.write(f"  insert items (upload):        {rows['insert']:>9,.0f} items/s")
        self.stdout.write(
            f"  claim + store results:        {rows['store']:>9,.0f} items/s  "
            f"= {rows['store'] / batch_size:,.0f} batches/s on one connection"
        )
        self.stdout.write(f"broker    {_redact(app.conf.broker_url)}: {items // batch_size} messages")
        self.stdout.write(f"  publish (web, one connection): {messages['publish']:>8,.0f} messages/s")
        self.stdout.write(f"  take + ack (one worker):       {messages['consume']:>8,.0f} messages/s")

    def _time_database(self, job: Job, items: int, batch_size: int) -> dict[str, float]:
        started = time.perf_counter()
        Item.objects.bulk_create(
            [Item(job=job, filename=f"{n}.jpg", file=f"scratch/{n}.jpg", sha256="0" * 64) for n in range(items)],
            batch_size=500,
        )
        insert_seconds = time.perf_counter() - started
        ids = list(Item.objects.filter(job=job).order_by("pk").values_list("pk", flat=True))

        started = time.perf_counter()
        for start in range(0, len(ids), batch_size):
            claimed = Item.objects.claim(ids[start : start + batch_size])
            record_outcomes(
                Outcome(item_id=item.pk, job_id=job.pk, predictions=PREDICTIONS, decode_ms=1.0, inference_ms=10.0)
                for item in claimed
            )
        store_seconds = time.perf_counter() - started
        job.refresh_from_db()
        assert job.succeeded_count == items and job.status == Job.Status.DONE
        return {"insert": items / insert_seconds, "store": items / store_seconds}

    def _time_broker(self, count: int, batch_size: int) -> dict[str, float]:
        name = f"vq-measure-{uuid.uuid4().hex[:8]}"
        queue = Queue(name, Exchange(name, type="direct"), routing_key=name)
        body = {"args": [list(range(batch_size)), "efficientnet-lite0"]}
        with Connection(app.conf.broker_url) as connection:
            try:
                producer = connection.Producer(serializer="json")
                started = time.perf_counter()
                for _ in range(count):
                    producer.publish(body, exchange=queue.exchange, routing_key=name, declare=[queue])
                publish_seconds = time.perf_counter() - started

                simple = connection.SimpleQueue(queue)
                started = time.perf_counter()
                for _ in range(count):
                    simple.get(timeout=5).ack()
                consume_seconds = time.perf_counter() - started
                simple.close()
            finally:
                queue(connection.default_channel).delete()
        return {"publish": count / publish_seconds, "consume": count / consume_seconds}


def _vendor() -> str:
    from django.db import connection

    return connection.vendor


def _redact(url: str) -> str:
    return url.split("@")[-1] if "@" in url else url
