"""The job page and owner-checked image views."""

import pytest

from webapp.jobs.models import Item, Job, Outcome, record_outcomes
from tests.conftest import SAMPLES
from tests.images import upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_job(alice, media_root):
    from django.core.files.storage import default_storage

    job = Job.objects.create(owner=alice, model_name="efficientnet-lite0", total=1)
    name = default_storage.save(f"uploads/{job.pk}/a.png", upload("x", (SAMPLES / "coffee.png").read_bytes()))
    thumb = default_storage.save(f"thumbs/{job.pk}/1.jpg", upload("t", b"\xff\xd8thumb"))
    item = Item.objects.create(job=job, filename="coffee.png", file=name, sha256="0" * 64)
    predictions = [{"label": "espresso", "class_index": 967, "score": 0.957}] + [
        {"label": f"runner-up {n}", "class_index": n, "score": 0.01} for n in range(4)
    ]
    record_outcomes([Outcome(item.pk, job.pk, predictions=predictions, thumbnail=thumb)])
    return job


def test_anonymous_pages_redirect_to_login(client, finished_job):
    item = finished_job.items.get()
    for url in ("/jobs/", f"/jobs/{finished_job.pk}/", f"/jobs/{finished_job.pk}/items/{item.pk}/thumbnail"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_job_page_shows_thumbnails_and_all_five_labels(client, alice, finished_job):
    client.force_login(alice)
    page = client.get(f"/jobs/{finished_job.pk}/").content.decode()
    item = finished_job.items.get()
    assert f"/jobs/{finished_job.pk}/items/{item.pk}/thumbnail" in page
    assert "espresso" in page and "0.957" in page
    assert all(f"runner-up {n}" in page for n in range(4))


def test_owner_gets_the_files_and_others_get_404(client, alice, bob, finished_job):
    item = finished_job.items.get()
    base = f"/jobs/{finished_job.pk}/items/{item.pk}"
    client.force_login(alice)
    image = client.get(f"{base}/image")
    assert image.status_code == 200
    assert b"".join(image.streaming_content) == (SAMPLES / "coffee.png").read_bytes()
    assert client.get(f"{base}/thumbnail").status_code == 200

    client.force_login(bob)
    for url in (f"/jobs/{finished_job.pk}/", f"{base}/image", f"{base}/thumbnail"):
        assert client.get(url).status_code == 404


def test_upload_form_creates_a_job_and_lists_rejections(client, alice):
    client.force_login(alice)
    response = client.post(
        "/jobs/",
        {"images": [upload("coffee.png", (SAMPLES / "coffee.png").read_bytes()), upload("notes.txt", b"text")]},
        follow=True,
    )
    job = Job.objects.get(owner=alice)
    assert response.redirect_chain[-1][0] == f"/jobs/{job.pk}/"
    assert job.total == 1
    assert "notes.txt" in response.content.decode()
