"""Retention: deleting a job (API and page), the periodic purge, users' files, orphans."""

import io
import os
import time
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.utils import timezone

from webapp.jobs.models import Item, Job
from webapp.jobs.retention import purge_expired_jobs, sweep_orphan_files
from webapp.security.models import UploadRecord
from tests.images import image_bytes, upload

pytestmark = pytest.mark.django_db


def stored_job(owner, *, age: timedelta = timedelta(0), status=Job.Status.DONE) -> Job:
    """A job with one item, its upload and its thumbnail on disk."""
    job = Job.objects.create(owner=owner, model_name="efficientnet-lite0", total=1, status=status,
                             created_at=timezone.now() - age)  # fmt: skip
    name = default_storage.save(f"uploads/{job.pk}/a.png", upload("a.png", image_bytes()))
    thumb = default_storage.save(f"thumbs/{job.pk}/1.jpg", upload("t.jpg", b"\xff\xd8thumb"))
    Item.objects.create(job=job, filename="a.png", file=name, thumbnail=thumb, sha256="0" * 64)
    return job


def job_folders(media_root, job) -> list:
    return [folder for folder in (media_root / "uploads" / str(job.pk), media_root / "thumbs" / str(job.pk)) if folder.exists()]


def test_api_delete_removes_rows_and_files(alice, api_as, media_root, django_capture_on_commit_callbacks):
    job = stored_job(alice)
    assert len(job_folders(media_root, job)) == 2
    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(alice).delete(f"/api/jobs/{job.pk}/")
    assert response.status_code == 204
    assert not Job.objects.filter(pk=job.pk).exists() and not Item.objects.exists()
    # The job's folders are gone, not just emptied.
    assert job_folders(media_root, job) == []


def test_files_stay_until_the_deletion_commits(alice, api_as, media_root, django_capture_on_commit_callbacks):
    job = stored_job(alice)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        api_as(alice).delete(f"/api/jobs/{job.pk}/")
    # A rolled-back delete must not have lost the files.
    assert len(job_folders(media_root, job)) == 2
    assert len(callbacks) == 1


def test_deleting_a_running_job_cancels_it_first(alice, api_as, media_root, django_capture_on_commit_callbacks, monkeypatch):
    job = stored_job(alice, status=Job.Status.RUNNING)
    seen = []
    from webapp.jobs import retention

    original = retention.cancel_job

    def spying_cancel(target):
        seen.append((target.pk, original(target)))
        return seen[-1][1]

    monkeypatch.setattr(retention, "cancel_job", spying_cancel)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_as(alice).delete(f"/api/jobs/{job.pk}/").status_code == 204
    # Cancelled (so workers skip its batches) before its rows went.
    assert seen == [(job.pk, True)]
    assert job_folders(media_root, job) == []


def test_the_job_page_asks_then_deletes_on_post(client, alice, media_root, django_capture_on_commit_callbacks):
    job = stored_job(alice)
    client.force_login(alice)
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/jobs/{job.pk}/delete"' in page
    confirm = client.get(f"/jobs/{job.pk}/delete")
    # A GET only asks: nothing is deleted until the form is posted.
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    assert Job.objects.filter(pk=job.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/jobs/{job.pk}/delete", follow=True)
    assert response.redirect_chain[-1][0] == "/jobs/"
    assert "were deleted" in response.content.decode()
    assert not Job.objects.filter(pk=job.pk).exists()
    assert job_folders(media_root, job) == []


def test_deleting_a_user_removes_their_files_and_no_one_elses(alice, bob, media_root, django_capture_on_commit_callbacks):
    alices, bobs = stored_job(alice), stored_job(bob)
    with django_capture_on_commit_callbacks(execute=True):
        alice.delete()
    assert job_folders(media_root, alices) == []
    assert len(job_folders(media_root, bobs)) == 2
    assert Job.objects.get() == bobs


def test_purge_deletes_jobs_past_retention_with_their_files(alice, media_root, settings, django_capture_on_commit_callbacks):
    settings.VQ_RETENTION_DAYS = 30
    old = stored_job(alice, age=timedelta(days=31))
    stuck = stored_job(alice, age=timedelta(days=45), status=Job.Status.RUNNING)
    recent = stored_job(alice, age=timedelta(days=29))
    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired_jobs() == 2
    assert list(Job.objects.all()) == [recent]
    assert job_folders(media_root, old) == [] and job_folders(media_root, stuck) == []
    assert len(job_folders(media_root, recent)) == 2


def test_retention_zero_keeps_everything(alice, settings):
    settings.VQ_RETENTION_DAYS = 0
    stored_job(alice, age=timedelta(days=3650))
    assert purge_expired_jobs() == 0
    assert Job.objects.count() == 1


def test_purge_forgets_upload_records_older_than_a_day(alice):
    UploadRecord.objects.create(user=alice, images=3, created_at=timezone.now() - timedelta(hours=25))
    UploadRecord.objects.create(user=alice, images=4, created_at=timezone.now() - timedelta(hours=23))
    purge_expired_jobs()
    assert list(UploadRecord.objects.values_list("images", flat=True)) == [4]


def test_orphaned_folders_are_swept_after_a_grace_period(alice, media_root):
    kept = stored_job(alice)
    stale = media_root / "thumbs" / "0b7e4bd2-4f5d-4c36-9d2c-6f1f3c3f4a11"
    fresh = media_root / "thumbs" / "5a0d1c9e-0000-4000-8000-000000000000"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "7.jpg").write_bytes(b"\xff\xd8late thumbnail")
    two_hours_ago = time.time() - 7200
    os.utime(stale / "7.jpg", (two_hours_ago, two_hours_ago))
    os.utime(stale, (two_hours_ago, two_hours_ago))

    assert sweep_orphan_files() == 1
    assert not stale.exists()
    # Too recent to be sure it is an orphan: its upload may not have committed yet.
    assert fresh.exists()
    assert len(job_folders(media_root, kept)) == 2


def test_purge_command_and_beat_schedule_run_the_same_purge(alice, settings, django_capture_on_commit_callbacks):
    settings.VQ_RETENTION_DAYS = 7
    stored_job(alice, age=timedelta(days=8))
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_expired_jobs", stdout=out)
    assert out.getvalue().strip() == "purged 1 job (retention 7 days) and 0 orphaned files"

    from tasks.celery_app import app
    from tasks.maintenance import purge_expired_jobs_task

    entry = app.conf.beat_schedule["purge-expired-jobs"]
    # The schedule names a task the workers have registered.
    assert entry["task"] == purge_expired_jobs_task.name and entry["task"] in app.tasks
    stored_job(alice, age=timedelta(days=9))
    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired_jobs_task() == {"jobs": 1, "orphan_files": 0}


def test_deleting_a_job_logs_its_id(alice, caplog):
    from webapp.jobs.retention import delete_job

    job = stored_job(alice, status=Job.Status.RUNNING)
    job_id = job.pk
    with caplog.at_level("INFO", logger="webapp.jobs.retention"):
        delete_job(job)
    # The id it had, not the None an instance holds after delete().
    assert [record.getMessage() for record in caplog.records] == [f"job {job_id} deleted by its owner"]
