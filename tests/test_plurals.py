"""Messages that count things agree with their numbers: "1 image", "2 images", never "1 images"."""

import io
import re

import pytest
from django.core.management import call_command

from tests.factories import make_job
from tests.images import upload
from tests.conftest import SAMPLES
from webapp.jobs.models import gave_up_message
from webapp.security.limits import UploadLimitExceeded, UploadTooLargeForQuota, check_upload_allowed
from webapp.security.models import UploadRecord

pytestmark = pytest.mark.django_db


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_cancel_retry_and_delete_messages_for_one_image(client, alice, django_capture_on_commit_callbacks):
    client.force_login(alice)
    open_job = make_job(alice, {"only.png": None})
    cancelled = client.post(f"/jobs/{open_job.pk}/cancel", follow=True)
    assert messages_of(cancelled) == [
        "Job cancelled: 1 queued image will not run; those already running may still finish (0 running now). "
        "0 of 1 image had finished."
    ]

    failed_job = make_job(alice, {"bad.jpg": "cannot decode image data"})
    with django_capture_on_commit_callbacks(execute=False):
        retried = client.post(f"/jobs/{failed_job.pk}/retry-failed", follow=True)
    assert messages_of(retried) == ["1 failed image sent to the workers again."]

    deleted = client.post(f"/jobs/{open_job.pk}/delete", follow=True)
    assert messages_of(deleted) == [f"Job {str(open_job.pk)[:8]} and its 1 image were deleted."]


def test_plural_forms_stay_plural(client, alice):
    client.force_login(alice)
    job = make_job(alice, {"a.png": None, "b.png": None})
    assert messages_of(client.post(f"/jobs/{job.pk}/cancel", follow=True)) == [
        "Job cancelled: 2 queued images will not run; those already running may still finish (0 running now). "
        "0 of 2 images had finished."
    ]


def test_upload_limit_messages_count_in_the_singular(alice, settings):
    settings.VQ_UPLOADS_PER_HOUR, settings.VQ_IMAGES_PER_DAY = 1, 1
    with pytest.raises(UploadTooLargeForQuota, match=r"^2 images in one upload is more than your quota of 1 image per"):
        check_upload_allowed(alice, images=2)
    UploadRecord.objects.create(user=alice, images=1)
    with pytest.raises(UploadLimitExceeded, match=r"^upload rate limit reached: 1 upload per hour$"):
        check_upload_allowed(alice, images=1)
    settings.VQ_UPLOADS_PER_HOUR = 0
    with pytest.raises(UploadLimitExceeded, match=r"^daily image quota reached: 1 of 1 image used in the last"):
        check_upload_allowed(alice, images=1)


def test_too_many_files_counts_in_the_singular(api_as, alice, settings):
    settings.VQ_MAX_FILES_PER_JOB = 0
    response = api_as(alice).post("/api/jobs/", {"images": [upload("coffee.png", (SAMPLES / "coffee.png").read_bytes())]})
    assert response.status_code == 400
    assert response.json()["detail"] == "1 file was sent; the limit is 0 per job"


def test_gave_up_after_one_attempt():
    assert gave_up_message(1).startswith("gave up after 1 attempt: it timed out or its worker stopped")
    assert gave_up_message(3).startswith("gave up after 3 attempts: each one timed out or its worker stopped")


def test_purge_command_counts_in_the_singular(alice, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.VQ_RETENTION_DAYS = 7
    job = make_job(alice, {"a.png": None})
    type(job).objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(days=8))
    out = io.StringIO()
    call_command("purge_expired_jobs", stdout=out)
    assert re.fullmatch(r"purged 1 job \(retention 7 days\) and \d+ orphaned files?\n", out.getvalue())


def test_upload_page_says_file_for_a_limit_of_one(client, alice, settings):
    settings.VQ_MAX_FILES_PER_JOB = 1
    client.force_login(alice)
    assert "Up to 1 file, " in client.get("/upload/").content.decode()
