"""Upload rate limit and daily image quota: 429 with Retry-After, per-user overrides."""

from datetime import timedelta

import pytest
from django.utils import timezone

from webapp.jobs.models import Job
from webapp.security.limits import Limits, limits_for
from webapp.security.models import UploadLimits, UploadRecord
from tests.images import image_bytes, upload

pytestmark = pytest.mark.django_db


def images(count: int):
    return [upload(f"photo{n}.png", image_bytes(color=(n * 20, 80, 120))) for n in range(count)]


def post_job(client, count=1):
    return client.post("/api/jobs/", {"images": images(count)}, format="multipart")


def record(user, ago: timedelta, count: int = 1):
    UploadRecord.objects.create(user=user, images=count, created_at=timezone.now() - ago)


def test_over_the_upload_rate_is_429_with_retry_after(alice, api_as, settings):
    settings.VQ_UPLOADS_PER_HOUR = 2
    record(alice, timedelta(minutes=50))
    record(alice, timedelta(minutes=10))

    response = post_job(api_as(alice))
    assert response.status_code == 429
    assert "2 uploads per hour" in response.json()["detail"]
    # The upload from 50 minutes ago leaves the hour's window in 10 minutes.
    assert 540 <= int(response["Retry-After"]) <= 600
    assert Job.objects.count() == 0 and UploadRecord.objects.count() == 2


def test_an_upload_an_hour_old_no_longer_counts(alice, api_as, settings):
    settings.VQ_UPLOADS_PER_HOUR = 2
    record(alice, timedelta(minutes=61))
    record(alice, timedelta(minutes=10))
    assert post_job(api_as(alice)).status_code == 201


def test_over_the_daily_quota_is_429_and_smaller_uploads_still_fit(alice, api_as, settings):
    settings.VQ_IMAGES_PER_DAY = 5
    record(alice, timedelta(hours=23), count=2)
    record(alice, timedelta(hours=1), count=2)
    client = api_as(alice)

    response = post_job(client, count=2)
    assert response.status_code == 429
    detail = response.json()["detail"]
    assert "4 of 5 images" in detail and "this upload has 2" in detail
    # Freeing one image is enough: the 2 from 23 hours ago age out in an hour.
    assert 3500 <= int(response["Retry-After"]) <= 3600

    assert post_job(client, count=1).status_code == 201
    assert post_job(client, count=1).status_code == 429


def test_rejected_files_do_not_count_against_the_quota(alice, api_as, settings):
    settings.VQ_IMAGES_PER_DAY = 1
    files = [*images(1), upload("notes.txt", b"not an image")]
    response = api_as(alice).post("/api/jobs/", {"images": files}, format="multipart")
    assert response.status_code == 201
    assert UploadRecord.objects.get(user=alice).images == 1


def test_one_upload_bigger_than_the_whole_quota_is_a_400(alice, api_as, settings, media_root):
    settings.VQ_IMAGES_PER_DAY = 2
    response = post_job(api_as(alice), count=3)
    # Waiting would not help, so this is not a 429.
    assert response.status_code == 400
    assert "3 images in one upload" in response.json()["detail"]
    assert Job.objects.count() == 0 and UploadRecord.objects.count() == 0
    assert not list(media_root.rglob("*.*"))


def test_deleting_jobs_does_not_give_the_quota_back(alice, api_as, settings):
    settings.VQ_IMAGES_PER_DAY = 2
    client = api_as(alice)
    job_id = post_job(client, count=2).json()["id"]
    assert client.delete(f"/api/jobs/{job_id}/").status_code == 204
    assert post_job(client).status_code == 429


def test_per_user_overrides_from_the_admin(alice, bob, api_as, settings):
    settings.VQ_UPLOADS_PER_HOUR = 1
    UploadLimits.objects.create(user=alice, uploads_per_hour=0)  # 0: no limit for alice
    UploadLimits.objects.create(user=bob, images_per_day=1)  # stricter quota, default rate
    for _ in range(3):
        assert post_job(api_as(alice)).status_code == 201
    assert post_job(api_as(bob), count=2).status_code == 400
    assert post_job(api_as(bob)).status_code == 201
    assert post_job(api_as(bob)).status_code == 429


def test_the_upload_page_answers_429_with_the_reason(client, alice, settings):
    settings.VQ_UPLOADS_PER_HOUR = 1
    record(alice, timedelta(minutes=30))
    client.force_login(alice)
    response = client.post("/upload/", {"images": images(1)})
    assert response.status_code == 429
    assert 1700 <= int(response["Retry-After"]) <= 1800
    assert "Upload rate limit reached: 1 upload per hour. Try again in 30 minutes." in response.content.decode()
    assert Job.objects.count() == 0


def test_staff_set_a_users_limits_on_the_admin_user_page(admin_client, alice, settings):
    settings.VQ_IMAGES_PER_DAY = 100
    page = admin_client.get(f"/admin/auth/user/{alice.pk}/change/")
    assert "upload_limits-0-uploads_per_hour" in page.content.decode()
    form = {
        "username": "alice", "is_active": "on",
        "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
        "upload_limits-TOTAL_FORMS": "1", "upload_limits-INITIAL_FORMS": "0",
        "upload_limits-MIN_NUM_FORMS": "0", "upload_limits-MAX_NUM_FORMS": "1",
        "upload_limits-0-uploads_per_hour": "7", "upload_limits-0-images_per_day": "",
        "upload_limits-0-user": str(alice.pk),
    }  # fmt: skip
    response = admin_client.post(f"/admin/auth/user/{alice.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    # 7 uploads an hour for alice; her daily quota stays the site's.
    assert limits_for(alice) == Limits(uploads_per_hour=7, images_per_day=100)
