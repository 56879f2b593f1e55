"""Ownership: alice cannot reach bob's jobs, images or results by URL, in pages or the API.

Another user's ids answer 404, exactly like ids that do not exist, so no one
can even learn that a job exists. Anonymous pages redirect to the login; the
API answers 401.
"""

import pytest
from rest_framework.test import APIClient

from tests.factories import make_job
from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def bobs_done_job(bob):
    return make_job(bob, {"bob-cat.jpg": ("tabby cat", 0.8), "bob-broken.jpg": "cannot decode image data"})


@pytest.fixture
def bobs_open_job(bob):
    return make_job(bob, {"bob-queued.jpg": None})


def page_urls(job: Job) -> list[str]:
    item = job.items.order_by("pk").first()
    base = f"/jobs/{job.pk}"
    return [
        f"{base}/", f"{base}/progress", f"{base}/progress?items={item.pk}", f"{base}/results.csv",
        f"{base}/results.json", f"{base}/items/{item.pk}/", f"{base}/items/{item.pk}/image",
        f"{base}/items/{item.pk}/image?download=1", f"{base}/items/{item.pk}/thumbnail",
    ]  # fmt: skip


def test_alice_gets_404_for_every_page_and_file_of_bobs(client, alice, bob, bobs_done_job):
    client.force_login(alice)
    for url in page_urls(bobs_done_job):
        assert client.get(url).status_code == 404, url
    # The same URLs work for bob, so the 404s above are about the owner, not the URLs.
    client.force_login(bob)
    for url in page_urls(bobs_done_job):
        assert client.get(url).status_code == 200, url


def test_alice_cannot_mix_her_job_id_with_bobs_item_id(client, alice, bobs_done_job):
    alices = make_job(alice, {"mine.jpg": ("espresso", 0.9)})
    bobs_item = bobs_done_job.items.first()
    client.force_login(alice)
    for suffix in ("", "image", "thumbnail"):
        assert client.get(f"/jobs/{alices.pk}/items/{bobs_item.pk}/{suffix}").status_code == 404
    # Asking for bob's tile through her own job's progress endpoint returns nothing of his.
    assert client.get(f"/jobs/{alices.pk}/progress?items={bobs_item.pk}").json()["items"] == []


def test_alice_cannot_cancel_or_retry_bobs_jobs_from_the_pages(client, alice, bobs_done_job, bobs_open_job):
    client.force_login(alice)
    assert client.post(f"/jobs/{bobs_open_job.pk}/cancel").status_code == 404
    assert client.post(f"/jobs/{bobs_done_job.pk}/retry-failed").status_code == 404
    # Nothing changed.
    assert Job.objects.get(pk=bobs_open_job.pk).status == "queued"
    done = Job.objects.get(pk=bobs_done_job.pk)
    assert (done.status, done.failed_count) == ("done", 1)


def test_bobs_jobs_and_images_never_appear_in_alices_lists(client, alice, bobs_done_job):
    client.force_login(alice)
    assert str(bobs_done_job.pk) not in client.get("/jobs/").content.decode()
    search = client.get("/search/?q=cat").content.decode()
    assert "bob-cat.jpg" not in search and "No image of yours" in search


def test_alice_gets_404_for_bobs_jobs_in_the_api(alice, api_as, bobs_done_job, bobs_open_job):
    as_alice = api_as(alice)
    for url in (f"/api/jobs/{bobs_done_job.pk}/", f"/api/jobs/{bobs_done_job.pk}/results/"):
        assert as_alice.get(url).status_code == 404, url
    assert as_alice.post(f"/api/jobs/{bobs_open_job.pk}/cancel/").status_code == 404
    assert as_alice.post(f"/api/jobs/{bobs_done_job.pk}/retry-failed/").status_code == 404
    assert Job.objects.get(pk=bobs_open_job.pk).status == "queued"
    assert Job.objects.get(pk=bobs_done_job.pk).failed_count == 1
    assert as_alice.get("/api/jobs/").json()["count"] == 0


def test_the_owner_can_cancel_and_retry_through_the_api(
    bob, api_as, bobs_done_job, bobs_open_job, django_capture_on_commit_callbacks
):
    as_bob = api_as(bob)
    cancelled = as_bob.post(f"/api/jobs/{bobs_open_job.pk}/cancel/")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    # A finished job cannot be cancelled: 409 says why.
    again = as_bob.post(f"/api/jobs/{bobs_open_job.pk}/cancel/")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]

    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        retried = as_bob.post(f"/api/jobs/{bobs_done_job.pk}/retry-failed/")
    assert retried.status_code == 200
    body = retried.json()
    assert (body["retried"], body["job"]["status"], body["job"]["failed"]) == (1, "queued", 0)
    assert len(enqueued) == 1


def test_anonymous_api_calls_get_401(bobs_done_job, bobs_open_job):
    anonymous = APIClient()
    calls = [
        anonymous.get("/api/jobs/"),
        anonymous.get(f"/api/jobs/{bobs_done_job.pk}/"),
        anonymous.get(f"/api/jobs/{bobs_done_job.pk}/results/"),
        anonymous.post(f"/api/jobs/{bobs_open_job.pk}/cancel/"),
        anonymous.post(f"/api/jobs/{bobs_done_job.pk}/retry-failed/"),
    ]
    assert [response.status_code for response in calls] == [401] * 5
    assert Job.objects.get(pk=bobs_open_job.pk).status == "queued"
