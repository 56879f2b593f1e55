"""Faults on real processes: a real Redis, a real Celery worker (prefork) and gunicorn.

Each test breaks something on purpose (kill -9 a worker mid-batch, a batch that
outlives its time limit, Redis stopped and started, a duplicate message, a
cancel while a batch runs) and then checks the database item by item.

To hold a batch in the middle deterministically, one of its items is a named
pipe (FIFO) instead of a file: the worker blocks opening it until the test
writes the picture into it (StuckFile.release), exactly like a read from a
stalled disk. Time limits and the reaper run with short settings here (see
fault_system); the timeouts in wait_until are only guards against a hang.
Messages sent from this process carry this process's time limits (Celery
puts the sender's task_time_limit into each message), so tests that need
short limits pass them with the message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from django.db import transaction

# Imported up front (they import torch): a first import inside a test would
# open a window of seconds between a job's commit and its enqueue.
from tasks.dispatch import enqueue_job
from tasks.inference import classify_batch
from tests.conftest import SESSION_REDIS, labelled_photos
from tests.live import api_session, stack_on_test_database
from webapp.jobs.models import Item, Job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MODEL = "efficientnet-lite0"
# The hard limit is well above a worker's start-up here, so the items of a dead
# worker are recovered by the reaper's silent-holder rule, never by the hard limit.
SOFT_LIMIT, HARD_LIMIT, GRACE = 10, 120, 2
QUEUE = "infer.cpu"


# --- The system under test -------------------------------------------------------


@pytest.fixture(scope="module")
def fault_system(django_db_setup, django_db_blocker, tmp_path_factory):
    env = {
        "VQ_BATCH_SIZE": "2",
        "VQ_TASK_SOFT_TIME_LIMIT": str(SOFT_LIMIT),
        "VQ_TASK_HARD_TIME_LIMIT": str(HARD_LIMIT),
        "VQ_REAPER_INTERVAL": "1",
        "VQ_REAPER_GRACE": str(GRACE),
        "VQ_MAX_ATTEMPTS": "3",
    }
    stack = stack_on_test_database(django_db_blocker, tmp_path_factory, "fault", env=env)
    stack.start(timeout=180)
    yield stack
    stack.stop()
    forget_all_messages()


@pytest.fixture(autouse=True)
def same_settings_as_the_workers(settings, fault_system):
    # Jobs made in this process are enqueued with the workers' batch size.
    settings.VQ_BATCH_SIZE = 2
    settings.MEDIA_ROOT = fault_system.media_root


@pytest.fixture
def api(alice, fault_system):
    return api_session(alice, fault_system)


def forget_all_messages() -> None:
    """Leave the broker as the next test module expects it: no queued or in-flight message."""
    from tasks.celery_app import app

    with contextlib.suppress(Exception), app.connection_for_write() as connection:
        connection.default_channel.client.delete(QUEUE, "unacked", "unacked_index", "vq:reaper:lock", "vq:reaper:silent")


# --- Helpers ---------------------------------------------------------------------


def photo_bytes(n: int) -> bytes:
    return labelled_photos()[n].path.read_bytes()


class StuckFile:
    """A named pipe where an upload should be: reading it blocks until release()."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)

    def release(self, data: bytes = b"") -> None:
        """Hand `data` to the reader blocked on the pipe, and make the path a plain file for later readers."""
        writer = self._open_writer()
        replacement = self.path.with_suffix(".tmp")
        replacement.write_bytes(data)
        os.replace(replacement, self.path)
        if writer is not None:
            fcntl.fcntl(writer, fcntl.F_SETFL, fcntl.fcntl(writer, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            with open(writer, "wb") as pipe:
                pipe.write(data)

    def _open_writer(self) -> int | None:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno == errno.ENXIO:  # no reader waiting
                return None
            raise


def make_job(owner, media_root: Path, photos: int, stuck_at: int | None = None) -> tuple[Job, StuckFile | None]:
    """A job of `photos` labelled photos; the one at index stuck_at is a StuckFile instead.

    Files first, rows last: the reaper takes a queued job older than its
    grace period for one whose messages were lost, so the rows appear just
    before the test enqueues them.
    """
    job_id = uuid.uuid4()
    stuck, names = None, []
    for n in range(photos):
        name = f"uploads/{job_id}/{uuid.uuid4().hex}.jpg"
        path = media_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if n == stuck_at:
            stuck = StuckFile(path)
        else:
            path.write_bytes(photo_bytes(n))
        names.append(name)
    with transaction.atomic():
        job = Job.objects.create(pk=job_id, owner=owner, model_name=MODEL, total=photos)
        Item.objects.bulk_create(
            Item(job=job, filename=f"photo-{n}.jpg", file=name, sha256="0" * 64) for n, name in enumerate(names)
        )
    return job, stuck


def enqueue(job: Job) -> None:
    enqueue_job(job.pk)


def wait_until(predicate, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def item_status(item: Item) -> str:
    return Item.objects.get(pk=item.pk).status


def job_finished(job: Job) -> Job | None:
    fresh = Job.objects.get(pk=job.pk)
    return fresh if fresh.status in ("done", "cancelled") else None


def pool_children(worker_pid: int) -> list[int]:
    """Pids of the prefork children of a Celery worker (from /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == worker_pid and fields[0] != "Z":  # a killed child may linger as a zombie
                    children.append(int(entry.name))
    return children


def worker_child(stack, name: str = "worker"):
    return next(child for child in stack.children if child.name == name)


def broker_is_drained() -> bool:
    from tasks.reaper import broker_is_idle

    return broker_is_idle()


def assert_each_item_succeeded_once(job: Job) -> None:
    job = Job.objects.get(pk=job.pk)
    items = list(job.items.all())
    # Counters move once per won write: more than `total` would mean a double write.
    assert (job.status, job.succeeded_count, job.failed_count) == ("done", job.total, 0)
    for item in items:
        assert item.status == "succeeded", (item.filename, item.status, item.error)
        assert len(item.predictions) == 5 and item.top_label == item.predictions[0]["label"]
        assert item.thumbnail.name == f"thumbs/{job.pk}/{item.pk}.jpg"


# --- Crashes ---------------------------------------------------------------------


def test_kill_9_of_the_worker_process_mid_batch_loses_nothing(fault_system, alice):
    job, stuck = make_job(alice, fault_system.media_root, photos=5, stuck_at=1)
    first_batch = list(job.items.order_by("pk")[:2])
    enqueue(job)
    wait_until(lambda: item_status(first_batch[1]) == "running", what="the first batch to start")
    [child] = pool_children(worker_child(fault_system).process.pid)

    os.kill(child, signal.SIGKILL)
    # The main process puts the batch back; a new pool process claims it again.
    wait_until(lambda: child not in pool_children(worker_child(fault_system).process.pid) and
               Item.objects.get(pk=first_batch[0].pk).attempts == 2, what="the batch to be delivered again")
    stuck.release(photo_bytes(1))

    wait_until(lambda: job_finished(job), what="the job to finish")
    assert_each_item_succeeded_once(job)
    attempts = dict(job.items.values_list("pk", "attempts"))
    # The killed batch ran again (each item on its own), the others once; every result was written once.
    assert [attempts[item.pk] for item in first_batch] == [2, 2]
    assert sorted(attempts.values()) == [1, 1, 1, 2, 2]


def test_a_picture_that_kills_its_worker_every_time_fails_alone_after_three_attempts(fault_system, alice):
    job, stuck = make_job(alice, fault_system.media_root, photos=2, stuck_at=1)
    good, deadly = job.items.order_by("pk")
    enqueue(job)  # one batch of both

    # Each time the deadly item is being read, its pool process dies (as a
    # decoder crash or the hard time limit would kill it) and the batch goes
    # back on the queue. The first redelivery splits the batch, so the good
    # item runs on its own; the deadly one is given up after three attempts.
    for attempt in (1, 2, 3):
        wait_until(lambda: (row := Item.objects.get(pk=deadly.pk)).attempts == attempt and row.status == "running",
                   what=f"attempt {attempt}")  # fmt: skip
        [child] = pool_children(worker_child(fault_system).process.pid)
        os.kill(child, signal.SIGKILL)

    finished = wait_until(lambda: job_finished(job), what="the job to finish")
    stuck.release()
    assert (finished.status, finished.succeeded_count, finished.failed_count) == ("done", 1, 1)
    deadly = Item.objects.get(pk=deadly.pk)
    assert deadly.status == "failed" and deadly.attempts == 3
    assert deadly.error.startswith("gave up after 3 attempts") and "timed out or its worker stopped" in deadly.error
    good = Item.objects.get(pk=good.pk)
    assert (good.status, good.attempts, len(good.predictions)) == ("succeeded", 2, 5)


def test_a_batch_over_its_soft_limit_fails_only_the_slow_item_timed_out_and_the_job_finishes(fault_system, alice):
    job, stuck = make_job(alice, fault_system.media_root, photos=3, stuck_at=2)
    first, second, slow = job.items.order_by("pk")
    classify_batch.apply_async(args=[[first.pk, second.pk, slow.pk], MODEL], queue=QUEUE, soft_time_limit=2, time_limit=8)

    finished = wait_until(lambda: job_finished(job), timeout=120, what="the job to finish")
    # Free the decode threads the stuck reads hold, for the tests that follow.
    stuck.release()

    # The first overrun sent each item again on its own: the fast ones then
    # succeeded, the slow one used its three attempts and failed "timed out".
    assert (finished.status, finished.succeeded_count, finished.failed_count) == ("done", 2, 1)
    slow = Item.objects.get(pk=slow.pk)
    assert slow.status == "failed" and slow.attempts == 3
    assert slow.error == "timed out: no result within the 2 s limit on 3 attempts"
    for item in (first, second):
        item = Item.objects.get(pk=item.pk)
        assert (item.status, item.attempts, len(item.predictions)) == ("succeeded", 2, 5)


def test_a_dead_machine_leaves_running_items_that_the_reaper_sends_again(fault_system, alice):
    job, stuck = make_job(alice, fault_system.media_root, photos=3, stuck_at=0)
    stuck_item = job.items.order_by("pk").first()
    enqueue(job)
    wait_until(lambda: item_status(stuck_item) == "running", what="the first batch to start")
    dead_holder = Item.objects.get(pk=stuck_item.pk).claimed_by

    # The whole worker goes, main process and pool at once, as with a power cut:
    # nobody is left to hand the batch back to the broker.
    worker = worker_child(fault_system)
    for pid in [worker.process.pid, *pool_children(worker.process.pid)]:
        os.kill(pid, signal.SIGKILL)
    worker.process.wait()
    fault_system.children.remove(worker)
    fault_system.start_worker("worker")
    fault_system.wait_until_ready(timeout=180)

    # The new worker's reaper asks who is alive; the dead holder stays silent for
    # the grace period, so its batch goes back long before the hard limit. The new
    # worker (same name, a new incarnation) claims it and blocks on the pipe.
    wait_until(lambda: Item.objects.get(pk=stuck_item.pk).attempts == 2, what="the reaper to requeue the batch")
    new_holder = Item.objects.get(pk=stuck_item.pk).claimed_by
    assert new_holder != dead_holder and new_holder.split("#")[0] == dead_holder.split("#")[0]
    log = (fault_system.log_dir / "worker.log").read_text(errors="replace")
    assert f"workers gone: {dead_holder}" in log
    stuck.release(photo_bytes(0))

    wait_until(lambda: job_finished(job), what="the job to finish")
    assert_each_item_succeeded_once(job)
    assert Item.objects.get(pk=stuck_item.pk).attempts == 2
    # The dead worker's message is still marked in flight in Redis; Redis would
    # hand it out again after the visibility timeout (a harmless duplicate).
    # Drop it so the next tests start from an idle broker.
    forget_all_messages()


def test_a_reaper_leaves_the_running_items_of_a_live_worker_alone(fault_system, alice):
    from datetime import timedelta

    from tasks.reaper import reap

    job, stuck = make_job(alice, fault_system.media_root, photos=1, stuck_at=0)
    item = job.items.get()
    enqueue(job)
    wait_until(lambda: item_status(item) == "running", what="the batch to start")
    running = Item.objects.get(pk=item.pk)
    # The worker wrote down which incarnation of it holds the item.
    assert running.claimed_by.startswith("worker-") and "#" in running.claimed_by

    # A reaper outside the worker (manage.py reap_stuck_items from cron) asks twice,
    # the grace period apart, as its clock says: the worker answers both times.
    for seconds in (1, 1 + GRACE):
        report = reap(now=running.started_at + timedelta(seconds=seconds), use_lock=False)
        assert (report.requeued, report.gone_workers) == (0, [])
    assert (item_status(item), Item.objects.get(pk=item.pk).attempts) == ("running", 1)

    stuck.release(photo_bytes(0))
    wait_until(lambda: job_finished(job), what="the job to finish")
    assert_each_item_succeeded_once(job)
    assert Item.objects.get(pk=item.pk).attempts == 1


# --- Redis stopped and started -------------------------------------------------------


@pytest.mark.skipif(SESSION_REDIS is None, reason="needs the embedded Redis of the test run, to stop and start it")
def test_redis_restart_mid_job_503_meanwhile_and_nothing_lost_or_doubled(fault_system, alice, api, client):
    job, stuck = make_job(alice, fault_system.media_root, photos=6, stuck_at=1)
    first_batch = list(job.items.order_by("pk")[:2])
    enqueue(job)
    wait_until(lambda: item_status(first_batch[1]) == "running", what="the first batch to start")

    SESSION_REDIS.stop()  # loses every message: this Redis keeps nothing on disk
    try:
        jobs_before = Job.objects.count()
        files = [("images", ("coffee.jpg", photo_bytes(3), "image/jpeg"))]
        refused = api.post(f"{api.base}/api/jobs/", files=files, timeout=60)
        # A new upload is refused clearly, and nothing of it is kept.
        assert refused.status_code == 503, refused.text
        assert "queue" in refused.json()["detail"] and "nothing was created" in refused.json()["detail"]
        assert refused.headers["Retry-After"] == "30"
        # The upload page says the same, with the same status.
        from tests.images import upload

        client.force_login(alice)
        page = client.post("/upload/", {"images": [upload("coffee.jpg", photo_bytes(3))]})
        assert page.status_code == 503 and "not answering" in page.content.decode()
        assert Job.objects.count() == jobs_before
    finally:
        SESSION_REDIS.start()
    # The batch that was running finishes; the queued batches' messages are
    # gone, so the reaper sends them again once the broker is back and idle.
    stuck.release(photo_bytes(1))

    wait_until(lambda: job_finished(job), what="the job to finish")
    assert_each_item_succeeded_once(job)
    # No item ran twice: the running batch was not redelivered, the lost ones were sent once.
    assert set(job.items.values_list("attempts", flat=True)) == {1}

    # Workers and web reconnected: a new upload goes through end to end.
    created = api.post(f"{api.base}/api/jobs/", files=files, timeout=60)
    assert created.status_code == 201, created.text
    after = wait_until(lambda: job_finished(Job.objects.get(pk=created.json()["id"])), what="the new job")
    assert (after.status, after.succeeded_count) == ("done", 1)


@pytest.mark.skipif(SESSION_REDIS is None, reason="needs the embedded Redis of the test run, to stop and start it")
def test_an_enqueue_that_fails_after_commit_leaves_the_job_queued_for_the_reaper(fault_system, alice, caplog):
    from tasks.dispatch import enqueue_job_or_leave_queued

    job, _ = make_job(alice, fault_system.media_root, photos=2)
    SESSION_REDIS.stop()
    try:
        # The broker died between the upload's check and the commit: no error
        # reaches the user, the job waits.
        assert enqueue_job_or_leave_queued(job.pk) == 0
    finally:
        SESSION_REDIS.start()
    assert "stay queued for the reaper" in caplog.text
    assert set(job.items.values_list("status", flat=True)) == {"queued"}

    wait_until(lambda: job_finished(job), what="the reaper to send the job")
    assert_each_item_succeeded_once(job)


def failed_job(owner, media_root: Path) -> Job:
    """A done job whose one item failed: a readable photo, so a retry can succeed."""
    job, _ = make_job(owner, media_root, photos=1)
    job.items.update(status="failed", error="the stored file is missing", attempts=1, finished_at=job.created_at)
    Job.objects.filter(pk=job.pk).update(status="done", failed_count=1, finished_at=job.created_at)
    return Job.objects.get(pk=job.pk)


def rows_of(job: Job) -> tuple:
    job = Job.objects.get(pk=job.pk)
    item = job.items.values("status", "error", "attempts", "attempts_at_retry", "finished_at").get()
    return (job.status, job.failed_count, job.finished_at), item


@contextlib.contextmanager
def redis_paused():
    """The broker stops answering but keeps its connections open, as a frozen or cut-off server does."""
    os.kill(SESSION_REDIS.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(SESSION_REDIS.process.pid, signal.SIGCONT)


@contextlib.contextmanager
def redis_stopped():
    SESSION_REDIS.stop()
    try:
        yield
    finally:
        SESSION_REDIS.start()


@pytest.mark.skipif(SESSION_REDIS is None, reason="needs the embedded Redis of the test run, to stop and start it")
def test_retry_while_redis_is_down_is_a_503_that_changes_nothing_and_works_once_it_is_back(
    fault_system, alice, api, client, django_user_model
):
    from webapp.jobs.services import retry_failed

    job = failed_job(alice, fault_system.media_root)
    before = rows_of(job)
    staff = django_user_model.objects.create_superuser("root", password="root-secret-pw")
    for outage in (redis_stopped, redis_paused):
        with outage():
            # The API answers at once (the guard below is the HTTP timeout, far above the broker check's 1 s).
            refused = api.post(f"{api.base}/api/jobs/{job.pk}/retry-failed/", timeout=30)
            assert refused.status_code == 503, (outage.__name__, refused.text)
            assert refused.headers["Retry-After"] == "30"
            assert "not answering" in refused.json()["detail"] and "nothing was retried" in refused.json()["detail"]
            # The job page says the same, with the same status.
            client.force_login(alice)
            page = client.post(f"/jobs/{job.pk}/retry-failed")
            assert page.status_code == 503 and page["Retry-After"] == "30"
            assert "The job queue (Redis) is not answering; nothing was retried" in page.content.decode()
            # So does the admin action.
            client.force_login(staff)
            admin = client.post(
                "/admin/jobs/job/", {"action": "retry_failed_items", "_selected_action": [str(job.pk)]}, follow=True
            )
            assert "The job queue (Redis) is not answering; nothing was retried" in admin.content.decode()
            # Nothing moved: still done, still failed, the same error and attempt counters.
            assert rows_of(job) == before, outage.__name__

    # Redis is back: the same retry goes through and the item runs again.
    retried = api.post(f"{api.base}/api/jobs/{job.pk}/retry-failed/", timeout=30)
    assert retried.status_code == 200 and retried.json()["retried"] == 1, retried.text
    finished = wait_until(lambda: job_finished(job), what="the retried job")
    assert (finished.status, finished.succeeded_count, finished.failed_count) == ("done", 1, 0)
    item = finished.items.get()
    assert (item.status, item.attempts, item.attempts_at_retry, len(item.predictions)) == ("succeeded", 2, 1, 5)
    assert retry_failed(finished) == 0


# --- Delivery, commit and missing rows ---------------------------------------------


def test_the_same_batch_delivered_twice_writes_each_result_once(fault_system, alice):
    job, stuck = make_job(alice, fault_system.media_root, photos=2, stuck_at=1)
    ids = list(job.items.order_by("pk").values_list("pk", flat=True))
    for _ in range(2):
        classify_batch.apply_async(args=[ids, MODEL], queue=QUEUE)
    wait_until(lambda: Item.objects.get(pk=ids[1]).status == "running", what="the first copy to start")
    stuck.release(photo_bytes(1))

    wait_until(lambda: job_finished(job), what="the job to finish")
    wait_until(broker_is_drained, what="the second copy to be consumed")
    assert_each_item_succeeded_once(job)
    # The second copy found nothing open: no second claim, no second write.
    assert set(job.items.values_list("attempts", flat=True)) == {1}


def test_a_rolled_back_job_sends_no_task_and_a_missing_row_is_logged(fault_system, alice, api):
    from tests.images import upload
    from webapp.jobs.services import create_job

    def queue_length() -> int:
        from tasks.celery_app import app

        with app.connection_for_write() as connection:
            return connection.default_channel.client.llen(QUEUE)

    wait_until(broker_is_drained, what="an idle broker")
    with pytest.raises(RuntimeError), transaction.atomic():
        create_job(alice, [upload("a.jpg", photo_bytes(0))])
        raise RuntimeError("the surrounding transaction fails after the job was created")
    # The job never existed, so no message was sent for it.
    assert Job.objects.count() == 0 and queue_length() == 0

    # A message whose rows are gone is logged and dropped; the worker carries on.
    classify_batch.apply_async(args=[[987654321], MODEL], queue=QUEUE)
    log = fault_system.log_dir / "worker.log"
    wait_until(lambda: "batch of 1 items: nothing left to do" in log.read_text(errors="replace"), what="the log line")
    created = api.post(f"{api.base}/api/jobs/", files=[("images", ("ok.jpg", photo_bytes(2)))], timeout=60)
    finished = wait_until(lambda: job_finished(Job.objects.get(pk=created.json()["id"])), what="the next job")
    assert finished.succeeded_count == 1


def test_a_model_the_worker_does_not_have_fails_the_batch_with_a_reason(fault_system, alice):
    job, _ = make_job(alice, fault_system.media_root, photos=2)
    classify_batch.apply_async(args=[list(job.items.values_list("pk", flat=True)), "resnet-9000"], queue=QUEUE)

    finished = wait_until(lambda: job_finished(job), what="the job to finish")
    assert (finished.status, finished.failed_count) == ("done", 2)
    assert all("resnet-9000" in error for error in finished.items.values_list("error", flat=True))


def metric_samples(stack) -> dict[tuple, float]:
    """The web's /metrics (worker processes' numbers included), as {(name, labels...): value}."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{stack.web_url}/metrics", timeout=10).text
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def waiting_writer(stuck: StuckFile) -> int | None:
    """A blocking write end of the pipe once the worker is blocked reading it; None until then."""
    writer = stuck._open_writer()
    if writer is not None:
        fcntl.fcntl(writer, fcntl.F_SETFL, fcntl.fcntl(writer, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return writer


def test_items_of_a_job_deleted_while_its_batch_runs_are_counted_deleted_not_failed(fault_system, alice):
    from webapp.jobs.retention import delete_job

    job, first = make_job(alice, fault_system.media_root, photos=3, stuck_at=0)
    items = list(job.items.order_by("pk"))
    second_path = fault_system.media_root / items[1].file.name
    second_path.unlink()
    second = StuckFile(second_path)
    counted = ("vq_items_processed_total", ("model", MODEL))
    before = metric_samples(fault_system)

    # One batch of three: the worker's two decode threads block reading the first two
    # pictures; the third waits for a thread.
    classify_batch.apply_async(args=[[item.pk for item in items], MODEL], queue=QUEUE)
    writers = [wait_until(lambda stuck=stuck: waiting_writer(stuck), what="a blocked read") for stuck in (first, second)]
    # The owner deletes the job meanwhile: rows and files go. Then the two reads
    # complete, and the third picture's file is already missing.
    delete_job(Job.objects.get(pk=job.pk))
    for writer, n in zip(writers, (0, 1)):
        with open(writer, "wb") as pipe:
            pipe.write(photo_bytes(n))

    log = fault_system.log_dir / "worker.log"
    line = wait_until(
        lambda: next((l for l in log.read_text(errors="replace").splitlines() if "batch done:" in l and str(job.pk) in l), None),
        what="the batch's log line",
    )  # fmt: skip
    # None of the three is a failure: the job was deleted, and nothing was written.
    assert f"model={MODEL} items=3 ok=0 failed=0 deleted=3 written=0 " in line
    after = wait_until(
        lambda: (samples := metric_samples(fault_system)).get((*counted, ("outcome", "deleted")), 0)
        > before.get((*counted, ("outcome", "deleted")), 0) and samples,
        what="the worker's numbers in /metrics",
    )  # fmt: skip

    def delta(name: str, **labels) -> float:
        total = lambda samples: sum(  # noqa: E731
            value for key, value in samples.items()
            if key[0] == name and set(labels.items()) <= set(key[1:]) and ("model", MODEL) in key[1:]
        )  # fmt: skip
        return total(after) - total(before)

    assert delta("vq_items_processed_total", outcome="deleted") == 3
    assert delta("vq_items_processed_total", outcome="failed") == 0
    assert delta("vq_items_processed_total", outcome="succeeded") == 0
    assert delta("vq_item_failures_total") == 0


# --- Cancel and retry --------------------------------------------------------------


def test_cancel_lets_the_running_batch_finish_and_never_runs_the_rest(fault_system, alice):
    from webapp.jobs.services import cancel

    job, stuck = make_job(alice, fault_system.media_root, photos=6, stuck_at=1)
    items = list(job.items.order_by("pk"))
    enqueue(job)
    wait_until(lambda: item_status(items[1]) == "running", what="the first batch to start")

    assert cancel(Job.objects.get(pk=job.pk)) is True
    stuck.release(photo_bytes(1))
    wait_until(lambda: Item.objects.get(pk=items[1].pk).status == "succeeded", what="the running batch")
    wait_until(broker_is_drained, what="the remaining batches to be consumed")

    job = Job.objects.get(pk=job.pk)
    # The batch that was running finished and counts; the rest never ran.
    assert (job.status, job.succeeded_count, job.failed_count, job.total) == ("cancelled", 2, 0, 6)
    statuses = [(item.status, item.attempts) for item in job.items.order_by("pk")]
    assert statuses == [("succeeded", 1)] * 2 + [("cancelled", 0)] * 4
    assert all(item.predictions is None for item in job.items.filter(status="cancelled"))


def test_retry_sends_only_the_failed_items_again_and_counts_the_attempt(fault_system, alice, api):
    from webapp.jobs.services import retry_failed

    good = photo_bytes(4)
    files = [("images", ("good.jpg", good)), ("images", ("truncated.jpg", good[: len(good) // 2]))]
    created = api.post(f"{api.base}/api/jobs/", files=files, timeout=60)
    job = wait_until(lambda: job_finished(Job.objects.get(pk=created.json()["id"])), what="the job")
    assert (job.succeeded_count, job.failed_count) == (1, 1)
    good_item, bad_item = job.items.order_by("pk")

    assert retry_failed(job) == 1
    wait_until(lambda: Item.objects.get(pk=bad_item.pk).attempts == 2 and job_finished(job), what="the retry")

    job = Job.objects.get(pk=job.pk)
    assert (job.status, job.succeeded_count, job.failed_count) == ("done", 1, 1)
    again = Item.objects.get(pk=bad_item.pk)
    assert again.status == "failed" and "truncated" in again.error
    # The good item was not touched by the retry.
    untouched = Item.objects.get(pk=good_item.pk)
    assert (untouched.attempts, untouched.finished_at) == (1, good_item.finished_at)
