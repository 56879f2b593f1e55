"""The stuck-item reaper, run in this process against the real test Redis.

No worker runs here: the tests look at the database and at the messages the
reaper leaves in a queue of their own.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from tasks.celery_app import app
from tasks.reaper import LOCK_KEY, SILENT_KEY, broker_is_idle, reap
from webapp.jobs.models import Item, Job, cancel_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(settings):
    """A queue of this test's own; no other messages, no leftover lock or in-flight message."""
    settings.VQ_DEFAULT_QUEUE = f"test.reaper.{uuid.uuid4().hex[:8]}"
    settings.VQ_TASK_HARD_TIME_LIMIT = 300
    settings.VQ_REAPER_GRACE = 60
    settings.VQ_MAX_ATTEMPTS = 3
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        client.delete(LOCK_KEY, SILENT_KEY, "unacked", "unacked_index")
        yield settings.VQ_DEFAULT_QUEUE
        client.delete(settings.VQ_DEFAULT_QUEUE, LOCK_KEY, SILENT_KEY)


def sent_batches(queue: str) -> list[list[int]]:
    """The item ids of every message waiting in the queue, oldest first."""
    with app.connection_for_write() as connection:
        raw = connection.default_channel.client.lrange(queue, 0, -1)
    messages = [json.loads(entry) for entry in reversed(raw)]
    return [json.loads(base64.b64decode(message["body"]))[0][0] for message in messages]


def make_job(owner, items: int = 3, created_minutes_ago: int = 10) -> Job:
    job = Job.objects.create(
        owner=owner, model_name="efficientnet-lite0", total=items,
        created_at=timezone.now() - timedelta(minutes=created_minutes_ago),
    )  # fmt: skip
    for n in range(items):
        Item.objects.create(job=job, filename=f"p{n}.jpg", file=f"uploads/x/{n}.jpg", sha256="0" * 64)
    return job


def run_since(job: Job, minutes: int, attempts: int = 1, worker: str = "") -> None:
    """Mark the job's items running, started this many minutes ago (on `worker`)."""
    job.items.update(
        status="running", started_at=timezone.now() - timedelta(minutes=minutes), attempts=attempts, claimed_by=worker
    )
    Job.objects.filter(pk=job.pk).update(status="running")


def test_running_items_of_a_worker_that_stopped_answering_are_requeued_after_the_grace_period(alice, queue):
    # A worker that no process answers for (no worker runs here): killed with its machine.
    ghost = "worker-1@gone-machine#0123456789ab"
    job, other = make_job(alice), make_job(alice)
    run_since(job, minutes=1, worker=ghost)  # far from the hard limit (5 min + 1)
    run_since(other, minutes=1)  # no holder recorded: only the hard limit applies
    now = timezone.now()

    # The first pass finds it silent and writes that down; a pass within the grace period waits.
    first, within_grace = reap(now=now, use_lock=False), reap(now=now + timedelta(seconds=59), use_lock=False)
    assert (first.requeued, first.gone_workers, within_grace.requeued, within_grace.gone_workers) == (0, [], 0, [])
    assert set(job.items.values_list("status", flat=True)) == {"running"}

    # Silent for the whole grace period (60 s): gone. Its items go back on the queue, attempts kept.
    report = reap(now=now + timedelta(seconds=60), use_lock=False)
    assert (report.requeued, report.gone_workers, report.resent_jobs) == (3, [ghost], [job.pk])
    assert set(job.items.values_list("status", "attempts")) == {("queued", 1)}
    assert sent_batches(queue) == [sorted(job.items.values_list("pk", flat=True))]
    assert set(other.items.values_list("status", flat=True)) == {"running"}

    # It holds nothing any more, so it is struck off the list of silent workers.
    assert reap(now=now + timedelta(seconds=61), use_lock=False).gone_workers == []
    assert app.connection_for_write().default_channel.client.hlen(SILENT_KEY) == 0


def test_items_running_past_the_hard_limit_are_queued_and_sent_again(alice, queue):
    stuck, busy = make_job(alice), make_job(alice)
    run_since(stuck, minutes=7)  # hard limit 5 min + grace 1 min: stale
    run_since(busy, minutes=4)  # a worker may still be on these

    report = reap()

    assert report.requeued == 3 and report.failed == 0
    assert set(stuck.items.values_list("status", flat=True)) == {"queued"}
    assert set(busy.items.values_list("status", flat=True)) == {"running"}
    # One message with the stuck job's items, none for the busy one.
    assert sent_batches(queue) == [sorted(stuck.items.values_list("pk", flat=True))]
    # The attempts they used are kept; the next claim counts the next one.
    assert set(stuck.items.values_list("attempts", flat=True)) == {1}


def test_stale_items_that_used_their_attempts_fail_and_the_job_finishes(alice, queue):
    job = make_job(alice)
    run_since(job, minutes=30, attempts=3)

    report = reap()

    assert (report.failed, report.requeued) == (3, 0)
    job.refresh_from_db()
    assert (job.status, job.failed_count) == ("done", 3)
    assert all(error.startswith("gave up after 3 attempts") for error in job.items.values_list("error", flat=True))
    assert sent_batches(queue) == []


def test_stale_items_of_a_cancelled_job_end_cancelled(alice, queue):
    job = make_job(alice)
    run_since(job, minutes=30)
    cancel_job(job)

    report = reap()

    assert report.cancelled == 3
    assert set(job.items.values_list("status", flat=True)) == {"cancelled"}
    job.refresh_from_db()
    assert (job.status, job.succeeded_count, job.failed_count) == ("cancelled", 0, 0)
    assert sent_batches(queue) == []


def test_queued_items_whose_messages_were_lost_are_sent_again_when_the_broker_is_idle(alice, queue):
    lost = make_job(alice, created_minutes_ago=10)
    fresh = make_job(alice, created_minutes_ago=0)  # its enqueue may still be under way

    assert broker_is_idle()
    report = reap()

    assert report.resent_jobs == [lost.pk]
    assert sent_batches(queue) == [sorted(lost.items.values_list("pk", flat=True))]
    assert set(lost.items.values_list("status", flat=True)) == {"queued"}

    # Now a message waits in the queue: the broker is busy, nothing is resent.
    app.connection_for_write().default_channel.client.delete(LOCK_KEY)
    assert not broker_is_idle()
    assert reap().resent_jobs == []
    assert len(sent_batches(queue)) == 1
    assert fresh.pk not in report.resent_jobs


def test_one_reaper_at_a_time(alice, queue):
    make_job(alice)
    first, second = reap(), reap()
    assert not first.skipped and second.skipped
    assert len(sent_batches(queue)) == 1


def test_the_management_command_runs_one_pass(alice, queue, capsys):
    job = make_job(alice)
    run_since(job, minutes=30)
    call_command("reap_stuck_items")
    assert "requeued 3, failed 0, cancelled 0; jobs sent again: 1" in capsys.readouterr().out
    assert len(sent_batches(queue)) == 1
