"""A job of thousands of small images: counts, messages, and constant-cost reads.

The timings (enqueue under 10 s, status under 50 ms) are measured by `make
bench` on a 5,000-image job; here we prove what makes them hold at any size:
uploads spill to disk, one message per batch of ids lands in the real Redis,
and status and result pages cost the same few queries however big the job.
"""

from __future__ import annotations

import io
import math

import pytest
import redis
from PIL import Image

from tests.images import upload
from webapp.jobs.models import Item, Job

pytestmark = pytest.mark.django_db

COUNT = 1500
QUEUE = "test.scale"


def tiny_jpeg(index: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), ((index * 7) % 256, (index * 13) % 256, 90)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture
def scale_queue(settings):
    """Messages go to a queue no worker reads, so the test can count them."""
    from tasks.celery_app import app

    settings.VQ_DEFAULT_QUEUE = QUEUE
    broker = redis.Redis.from_url(app.conf.broker_url)
    broker.delete(QUEUE)
    yield broker
    broker.delete(QUEUE)


def test_a_big_streamed_upload_enqueues_per_batch_and_reads_in_constant_queries(
    alice, api_as, scale_queue, settings, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    # Anything over 64 KB streams to temporary files, as a big upload does.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
    files = [upload(f"img-{index:04d}.jpg", tiny_jpeg(index), "image/jpeg") for index in range(COUNT)]
    client = api_as(alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/jobs/", {"images": files}, format="multipart")

    assert response.status_code == 201, response.content[:300]
    job_id = response.json()["id"]
    assert response.json()["total"] == COUNT
    assert Item.objects.filter(job_id=job_id, status="queued").count() == COUNT
    # One message per VQ_BATCH_SIZE ids, in the real broker, ids only.
    assert scale_queue.llen(QUEUE) == math.ceil(COUNT / settings.VQ_BATCH_SIZE)

    # The status endpoint reads the job's counters: the same queries at any size.
    Item.objects.filter(job_id=job_id, pk__in=Item.objects.filter(job_id=job_id).values("pk")[:700]).update(
        status="succeeded"
    )
    Job.objects.filter(pk=job_id).update(succeeded_count=700)
    with django_assert_max_num_queries(3):
        status = client.get(f"/api/jobs/{job_id}/").json()
    assert (status["total"], status["succeeded"], status["progress"]) == (COUNT, 700, round(700 / COUNT, 4))

    # Any results page, first or last, costs a count and one page of rows.
    last_page = math.ceil(COUNT / 100)
    for page in (1, last_page):
        with django_assert_max_num_queries(4):
            body = client.get(f"/api/jobs/{job_id}/results/?page={page}&page_size=100").json()
        assert body["count"] == COUNT
        assert len(body["results"]) == (100 if page == 1 else COUNT - 100 * (last_page - 1))
    assert body["results"][-1]["filename"] == f"img-{COUNT - 1:04d}.jpg"


def test_the_web_server_may_hold_a_temporary_file_per_image_of_a_full_job():
    import resource

    from webapp.wsgi import allow_open_files_up_to_the_hard_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        # From the common default of 1,024 up to all the machine allows.
        assert allow_open_files_up_to_the_hard_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
