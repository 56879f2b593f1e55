"""The REST API contract: auth, 201/400 shapes, ownership, results."""

import pytest
from rest_framework.test import APIClient

from tasks.dispatch import enqueue_job_or_leave_queued
from webapp.jobs.models import Item, Job
from tests.conftest import SAMPLES
from tests.images import image_bytes, upload

pytestmark = pytest.mark.django_db


def sample(name: str):
    return upload(name, (SAMPLES / name).read_bytes(), "image/png")


def post_job(client, files, **data):
    return client.post("/api/jobs/", {"images": files, **data}, format="multipart")


def test_anonymous_requests_are_refused_with_401():
    anonymous = APIClient()
    for response in (anonymous.get("/api/jobs/"), post_job(anonymous, [sample("coffee.png")])):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Token"
    assert Job.objects.count() == 0


def test_create_returns_201_with_the_contract_shape_and_enqueues_after_commit(
    alice, api_as, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_job(api_as(alice), [sample("coffee.png"), sample("chelsea.png")])

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "status", "total", "rejected"}
    assert (body["status"], body["total"], body["rejected"]) == ("queued", 2, [])
    job = Job.objects.get(pk=body["id"])
    assert job.owner == alice and job.model_name == "efficientnet-lite0"
    # Exactly one enqueue, and only once the transaction has committed (after the "created" log line).
    enqueues = [hook for hook in callbacks if getattr(hook, "func", None) is enqueue_job_or_leave_queued]
    assert len(enqueues) == 1 and enqueues[0].args == (job.pk,) and callbacks[-1] is enqueues[0]
    items = list(job.items.order_by("pk"))
    assert [item.filename for item in items] == ["coffee.png", "chelsea.png"]
    assert all(item.status == "queued" and len(item.sha256) == 64 for item in items)
    # Stored under a name we chose, not the client's.
    assert all(item.file.name.startswith(f"uploads/{job.pk}/") for item in items)
    assert not any("coffee" in item.file.name for item in items)


def test_non_images_are_rejected_by_name_and_the_rest_accepted(alice, api_as):
    files = [
        sample("coffee.png"),
        upload("notes.txt", b"just some text", "text/plain"),
        upload("empty.jpg", b"", "image/jpeg"),
        upload("drawing.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/png"),
    ]
    response = post_job(api_as(alice), files)
    assert response.status_code == 201
    body = response.json()
    assert body["total"] == 1
    rejected = {entry["filename"]: entry["error"] for entry in body["rejected"]}
    assert set(rejected) == {"notes.txt", "empty.jpg", "drawing.png"}
    assert "empty" in rejected["empty.jpg"]
    assert "not an image" in rejected["drawing.png"]


def test_no_acceptable_file_is_a_400_and_creates_nothing(alice, api_as, media_root):
    files = [upload("a.txt", b"hello"), upload("b.jpg", b"")]
    response = post_job(api_as(alice), files)
    assert response.status_code == 400
    body = response.json()
    assert [entry["filename"] for entry in body["rejected"]] == ["a.txt", "b.jpg"]
    assert all(entry["error"] for entry in body["rejected"])
    assert Job.objects.count() == 0 and Item.objects.count() == 0
    # Nothing half-written on disk either.
    assert not list(media_root.rglob("*.*"))


def test_no_files_at_all_is_a_400(alice, api_as):
    response = api_as(alice).post("/api/jobs/", {}, format="multipart")
    assert response.status_code == 400
    assert "images" in response.json()["detail"]


def test_unknown_model_is_a_400(alice, api_as):
    response = post_job(api_as(alice), [sample("coffee.png")], model="resnet-9000")
    assert response.status_code == 400
    assert "efficientnet-lite0" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_file_over_the_pixel_limit_is_rejected_naming_the_limit(alice, api_as, settings):
    settings.VQ_MAX_PIXELS = 10_000
    response = post_job(api_as(alice), [upload("big.png", image_bytes(size=(200, 100)))])
    assert response.status_code == 400
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "big.png" and "200x100" in entry["error"] and "limit" in entry["error"]


def test_job_detail_and_results_shapes(alice, api_as):
    client = api_as(alice)
    job_id = post_job(client, [sample("coffee.png"), sample("chelsea.png")]).json()["id"]

    detail = client.get(f"/api/jobs/{job_id}/").json()
    assert set(detail) == {"id", "status", "total", "succeeded", "failed", "progress", "model", "created_at", "finished_at"}
    assert (detail["total"], detail["succeeded"], detail["failed"], detail["progress"]) == (2, 0, 0, 0.0)
    assert detail["model"] == "efficientnet-lite0" and detail["finished_at"] is None

    page = client.get(f"/api/jobs/{job_id}/results/?page_size=1").json()
    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 2 and page["next"] and page["previous"] is None
    [result] = page["results"]
    assert set(result) == {"id", "filename", "status", "error", "predictions"}
    assert (result["filename"], result["status"], result["error"], result["predictions"]) == ("coffee.png", "queued", None, [])


def test_another_users_job_is_a_404(alice, bob, api_as):
    job_id = post_job(api_as(alice), [sample("coffee.png")]).json()["id"]
    as_bob = api_as(bob)
    # bob cannot tell alice's job from one that does not exist.
    assert as_bob.get(f"/api/jobs/{job_id}/").status_code == 404
    assert as_bob.get(f"/api/jobs/{job_id}/results/").status_code == 404
    assert as_bob.get("/api/jobs/").json()["count"] == 0
    assert api_as(alice).get("/api/jobs/").json()["count"] == 1


def test_malformed_job_id_is_a_404(alice, api_as):
    assert api_as(alice).get("/api/jobs/not-a-uuid/").status_code == 404


def test_cancel_says_queued_images_will_not_run_and_running_ones_may_still_finish(alice, api_as):
    from tests.factories import make_job, top5
    from webapp.jobs.models import Outcome, record_outcomes

    job = make_job(alice, {"done.png": ("espresso", 0.9), "busy.png": None, "a.png": None, "b.png": None})
    busy = job.items.get(filename="busy.png")
    Item.objects.claim([busy.pk])  # a worker has this one

    response = api_as(alice).post(f"/api/jobs/{job.pk}/cancel/")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["succeeded"], body["total"]) == ("cancelled", 1, 4)
    assert body["detail"] == (
        "Job cancelled: 2 queued images will not run; those already running may still finish (1 running now). "
        "1 of 4 images had finished."
    )
    # True to the letter: the queued ones will never be claimed...
    assert dict(job.items.values_list("filename", "status")) == {
        "done.png": "succeeded", "busy.png": "running", "a.png": "cancelled", "b.png": "cancelled"}  # fmt: skip
    assert Item.objects.claim(job.items.filter(status="cancelled").values_list("pk", flat=True)) == []
    # ...and the running one still finishes and counts, in a job that stays cancelled.
    assert record_outcomes([Outcome(busy.pk, job.pk, predictions=top5("tabby cat", 0.8))]) == 1
    job.refresh_from_db()
    assert (job.status, job.succeeded_count) == ("cancelled", 2)
