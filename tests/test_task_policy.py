"""The batch task's failure hooks, called here as Celery's worker calls them.

The behaviour under real crashes, time limits and broker restarts is in
test_faults.py; this checks what each hook writes for each kind of error.
"""

import pytest
from billiard.exceptions import WorkerLostError
from celery.exceptions import TimeLimitExceeded
from django.db import OperationalError

from tasks.inference import classify_batch
from tasks.policy import TRANSIENT_ERRORS
from webapp.jobs.models import Item, Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_job(alice):
    job = Job.objects.create(owner=alice, model_name="efficientnet-lite0", total=2)
    for n in range(2):
        Item.objects.create(job=job, filename=f"p{n}.jpg", file=f"uploads/x/{n}.jpg", sha256="0" * 64)
    Item.objects.claim(job.items.values_list("pk", flat=True))
    return job


def fail_with(job, error):
    ids = list(job.items.values_list("pk", flat=True))
    classify_batch.on_failure(error, "task-id", (ids, "efficientnet-lite0"), {}, None)
    job.refresh_from_db()
    return {item.status: item.error for item in job.items.all()}


def test_only_transient_errors_are_retried():
    # A corrupt picture (ml.ImageError) is handled per item in the task body;
    # an unknown model or a bug must not be retried.
    from ml import CorruptImage, UnknownModel

    assert classify_batch.autoretry_for == TRANSIENT_ERRORS
    assert OperationalError in TRANSIENT_ERRORS
    assert not any(issubclass(kind, t) for kind in (CorruptImage, UnknownModel, ValueError) for t in TRANSIENT_ERRORS)


def test_retries_used_up_fail_the_open_items_with_the_reason(running_job):
    errors = fail_with(running_job, OperationalError("database is locked"))
    assert errors == {"failed": "gave up after 3 retries: OperationalError (database is locked)"}
    # Both items failed, the job is finished and counts them.
    assert (running_job.status, running_job.failed_count) == ("done", 2)


def test_one_retry_is_counted_in_the_singular(running_job, settings):
    settings.VQ_TASK_MAX_RETRIES = 1
    errors = fail_with(running_job, OperationalError("database is locked"))
    assert errors == {"failed": "gave up after 1 retry: OperationalError (database is locked)"}


def test_an_unexpected_error_fails_the_batch_without_showing_internals(running_job):
    errors = fail_with(running_job, KeyError("/srv/secret/path"))
    assert errors == {"failed": "internal error while classifying this batch (KeyError); it is in the worker log"}


@pytest.mark.parametrize("error", [TimeLimitExceeded(300), WorkerLostError("signal 9")])
def test_a_lost_or_killed_batch_is_left_for_its_redelivery(running_job, error):
    # Celery puts the message back; the next claim counts the attempt.
    assert fail_with(running_job, error) == {"running": ""}
    assert running_job.status == "running"


def test_a_retry_releases_the_items_until_it_arrives(running_job):
    ids = list(running_job.items.values_list("pk", flat=True))
    classify_batch.on_retry(OperationalError("database is locked"), "task-id", (ids, "efficientnet-lite0"), {}, None)
    assert set(running_job.items.values_list("status", flat=True)) == {"queued"}


def test_a_message_for_rows_that_are_gone_is_logged_and_dropped(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="tasks.inference")
    # Called directly in this process: the task body, not a worker.
    assert classify_batch([987654321, 987654322], "efficientnet-lite0") is None
    assert "batch of 2 items: nothing left to do" in caplog.text
