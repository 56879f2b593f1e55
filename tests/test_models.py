"""Job and Item state changes: claims, idempotent results, counters."""

import pytest

from webapp.jobs.models import Item, Job, Outcome, record_outcomes

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(alice):
    job = Job.objects.create(owner=alice, model_name="efficientnet-lite0", total=3)
    for n in range(3):
        Item.objects.create(job=job, filename=f"p{n}.jpg", file=f"uploads/x/{n}.jpg", sha256="0" * 64)
    return job


def success(item, label="tabby cat"):
    predictions = [{"label": label, "class_index": 281, "score": 0.9}] + [
        {"label": f"other {n}", "class_index": n, "score": 0.01} for n in range(4)
    ]
    return Outcome(item_id=item.pk, job_id=item.job_id, predictions=predictions, decode_ms=1.0, inference_ms=5.0)


def test_claim_marks_items_running_and_starts_the_job(job):
    items = Item.objects.claim([i.pk for i in job.items.all()])
    assert [item.status for item in items] == ["running"] * 3
    assert all(item.attempts == 1 for item in items)
    job.refresh_from_db()
    assert job.status == "running" and job.started_at is not None


def test_claim_skips_finished_items_and_cancelled_jobs(job, alice):
    first, *rest = job.items.all()
    record_outcomes([success(first)])
    # A finished item is not claimed again.
    assert [i.pk for i in Item.objects.claim([first.pk])] == []
    Job.objects.filter(pk=job.pk).update(status=Job.Status.CANCELLED)
    # Items of a cancelled job are never run.
    assert Item.objects.claim([i.pk for i in rest]) == []


def test_a_redelivered_batch_is_claimed_again(job):
    ids = [i.pk for i in job.items.all()]
    Item.objects.claim(ids)
    # The worker died; the same message comes back and the items are still running.
    again = Item.objects.claim(ids)
    assert [item.attempts for item in again] == [2, 2, 2]


def test_results_are_written_once_even_when_delivered_twice(job):
    items = list(job.items.all())
    Item.objects.claim([i.pk for i in items])
    outcomes = [success(items[0]), success(items[1]), Outcome(items[2].pk, job.pk, error="cannot decode")]

    assert record_outcomes(outcomes) == 3
    # The duplicate delivery writes nothing and counts nothing.
    assert record_outcomes(outcomes) == 0

    job.refresh_from_db()
    assert (job.succeeded_count, job.failed_count, job.status) == (2, 1, "done")
    assert job.finished_at is not None
    failed = Item.objects.get(pk=items[2].pk)
    assert failed.status == "failed" and failed.error == "cannot decode" and failed.predictions is None
    done = Item.objects.get(pk=items[0].pk)
    assert done.top_label == "tabby cat" and done.top_score == 0.9


def test_job_stays_open_until_every_item_is_finished(job):
    items = list(job.items.all())
    record_outcomes([success(items[0])])
    job.refresh_from_db()
    assert job.status == "queued" and job.progress == pytest.approx(1 / 3, abs=1e-3)


def test_cancel_keeps_counts_and_marks_unrun_items(job):
    from webapp.jobs.models import cancel_job

    first, second, third = job.items.all()
    Item.objects.claim([first.pk])
    record_outcomes([success(first)])

    assert cancel_job(job) is True
    assert (job.status, job.succeeded_count, job.failed_count) == ("cancelled", 1, 0)
    assert job.finished_at is not None
    statuses = dict(job.items.values_list("pk", "status"))
    assert statuses == {first.pk: "succeeded", second.pk: "cancelled", third.pk: "cancelled"}
    # Cancelling twice is a no-op.
    assert cancel_job(job) is False


def test_a_batch_running_during_cancel_finishes_without_reopening_the_job(job):
    from webapp.jobs.models import cancel_job

    items = list(job.items.all())
    Item.objects.claim([i.pk for i in items])  # all three are running
    cancel_job(job)
    assert record_outcomes([success(i) for i in items]) == 3
    job.refresh_from_db()
    assert (job.status, job.succeeded_count) == ("cancelled", 3)


def test_retry_requeues_only_failed_items_of_a_done_job(job):
    from webapp.jobs.models import requeue_failed_items

    ok, bad1, bad2 = job.items.all()
    Item.objects.claim([ok.pk, bad1.pk, bad2.pk])
    # Not done yet: nothing to retry.
    assert requeue_failed_items(job) == 0
    record_outcomes([success(ok), Outcome(bad1.pk, job.pk, error="x"), Outcome(bad2.pk, job.pk, error="y")])
    job.refresh_from_db()
    assert job.status == "done"

    assert requeue_failed_items(job) == 2
    assert (job.status, job.succeeded_count, job.failed_count, job.finished_at) == ("queued", 1, 0, None)
    statuses = dict(job.items.values_list("pk", "status"))
    assert statuses == {ok.pk: "succeeded", bad1.pk: "queued", bad2.pk: "queued"}
    # The next run counts as a second attempt.
    assert [i.attempts for i in Item.objects.claim([bad1.pk, bad2.pk])] == [2, 2]


def test_claim_fails_items_that_used_all_their_attempts(job):
    items = list(job.items.all())
    ids = [i.pk for i in items]
    # Three deliveries that never came back (the worker died each time).
    for _ in range(3):
        Item.objects.claim(ids, max_attempts=3)
    # The fourth delivery gives up instead of running them again.
    assert Item.objects.claim(ids, max_attempts=3) == []
    job.refresh_from_db()
    assert (job.status, job.failed_count, job.succeeded_count) == ("done", 3, 0)
    for item in job.items.all():
        assert item.status == "failed" and item.attempts == 3
        assert item.error.startswith("gave up after 3 attempts") and "timed out" in item.error


def test_an_owner_retry_starts_a_fresh_round_of_attempts(job):
    from webapp.jobs.models import requeue_failed_items

    ids = [i.pk for i in job.items.all()]
    for _ in range(4):
        Item.objects.claim(ids, max_attempts=3)
    job.refresh_from_db()
    assert job.status == "done"
    assert requeue_failed_items(job) == 3
    # attempts keeps counting (3 so far), and the limit counts from the retry.
    claimed = Item.objects.claim(ids, max_attempts=3)
    assert [i.attempts for i in claimed] == [4, 4, 4]
    assert all(i.attempts_at_retry == 3 for i in claimed)


def test_release_puts_running_items_back_and_cancels_those_of_cancelled_jobs(job):
    from webapp.jobs.models import cancel_job

    first, second, third = job.items.all()
    Item.objects.claim([first.pk, second.pk])
    assert Item.objects.release([first.pk, third.pk]) == 1
    # Only the running item moved; the queued one was not touched.
    assert dict(job.items.values_list("pk", "status")) == {first.pk: "queued", second.pk: "running", third.pk: "queued"}

    cancel_job(job)
    assert Item.objects.release([second.pk]) == 0
    assert Item.objects.get(pk=second.pk).status == "cancelled"


def test_give_up_fails_only_open_items_and_counts_once(job):
    from webapp.jobs.models import give_up

    first, second, third = job.items.all()
    record_outcomes([success(first)])
    pairs = [(i.pk, job.pk) for i in (first, second, third)]
    assert give_up(pairs, "timed out") == 2
    assert give_up(pairs, "timed out") == 0
    job.refresh_from_db()
    assert (job.succeeded_count, job.failed_count, job.status) == (1, 2, "done")


def test_a_retried_job_is_timed_from_its_retry_in_its_done_line(job, caplog):
    from datetime import timedelta

    from django.utils import timezone

    from webapp.jobs.models import requeue_failed_items

    # Uploaded a day ago; one item failed and the job finished then.
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=1))
    items = list(job.items.all())
    Item.objects.claim([i.pk for i in items])
    record_outcomes([success(items[0]), success(items[1]), Outcome(items[2].pk, job.pk, error="cannot decode")])

    # Retried now; the worker claims the item and this time it succeeds.
    assert requeue_failed_items(job) == 1
    Item.objects.claim([items[2].pk])
    caplog.clear()
    with caplog.at_level("INFO", logger="webapp.jobs.models"):
        record_outcomes([success(items[2])])

    job.refresh_from_db()
    [done] = [record for record in caplog.records if getattr(record, "event", "") == "job_done"]
    # queued= runs from the retry to the worker's claim, total= from the retry to the end; not from the upload.
    assert done.since == "retry" and job.retried_at is not None
    assert done.queued_s == round((job.started_at - job.retried_at).total_seconds(), 3)
    assert done.total_s == round((job.finished_at - job.retried_at).total_seconds(), 3)
    assert f"job {job.pk} done: model=efficientnet-lite0 items=3 succeeded=3 failed=0 queued=" in done.getMessage()
    assert done.getMessage().endswith(" since=retry")


def test_a_job_run_once_is_timed_from_its_upload(job, caplog):
    items = list(job.items.all())
    Item.objects.claim([i.pk for i in items])
    with caplog.at_level("INFO", logger="webapp.jobs.models"):
        record_outcomes([success(item) for item in items])

    job.refresh_from_db()
    [done] = [record for record in caplog.records if getattr(record, "event", "") == "job_done"]
    assert (done.since, job.retried_at) == ("upload", None)
    assert done.queued_s == round((job.started_at - job.created_at).total_seconds(), 3)
