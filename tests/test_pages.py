"""The web pages: accounts, upload, job list, job page, progress JSON, gallery, downloads, search."""

import csv
import io
import json
import re

import pytest

from ml import available_models
from tests.conftest import SAMPLES
from tests.factories import make_job
from tests.images import upload
from webapp.jobs.models import Item, Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_job(alice):
    return make_job(
        alice,
        {
            "coffee.png": ("espresso", 0.957),
            "cat.jpg": ("tabby cat", 0.62),
            "bad.jpg": "cannot decode image data: the file is truncated",
        },
    )


def body(response) -> str:
    return response.content.decode()


# --- Accounts --------------------------------------------------------------------


def test_sign_up_logs_in_and_opens_the_upload_page(client, django_user_model):
    response = client.post(
        "/accounts/signup/",
        {"username": "carol", "password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/upload/"
    assert django_user_model.objects.filter(username="carol").exists()
    # The new account is logged in: the upload form is shown, not the login page.
    assert 'name="images"' in body(response) and "carol" in body(response)


def test_sign_up_refuses_a_weak_password_and_creates_no_one(client, django_user_model):
    response = client.post("/accounts/signup/", {"username": "dave", "password1": "123", "password2": "123"})
    assert response.status_code == 400
    assert "too short" in body(response)
    assert not django_user_model.objects.filter(username="dave").exists()


def test_log_in_and_log_out(client, alice):
    page = body(client.get("/accounts/login/"))
    assert 'href="/accounts/signup/"' in page
    response = client.post("/accounts/login/", {"username": "alice", "password": "alice-secret-pw"})
    assert (response.status_code, response["Location"]) == (302, "/jobs/")
    assert client.get("/jobs/").status_code == 200
    # Log out is a POST (a link could be triggered by any page); afterwards pages ask for a login again.
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/jobs/")["Location"].startswith("/accounts/login/")
    # No password reset by email: nothing in this service sends mail.
    assert client.get("/accounts/password_reset/").status_code == 404


def test_every_page_redirects_an_anonymous_visitor_to_log_in(client, finished_job):
    item = finished_job.items.first()
    job_url = f"/jobs/{finished_job.pk}"
    gets = ["/", "/upload/", "/jobs/", "/search/?q=cat", f"{job_url}/", f"{job_url}/progress", f"{job_url}/results.csv",
            f"{job_url}/results.json", f"{job_url}/items/{item.pk}/", f"{job_url}/items/{item.pk}/image",
            f"{job_url}/items/{item.pk}/thumbnail"]  # fmt: skip
    for url in gets:
        response = client.get(url, follow=True)
        assert response.redirect_chain[-1][0].startswith("/accounts/login/?next="), url
    for url in (f"{job_url}/cancel", f"{job_url}/retry-failed", "/upload/"):
        response = client.post(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    # Nothing happened to the job.
    assert Job.objects.get(pk=finished_job.pk).status == "done"


# --- Upload ----------------------------------------------------------------------


def test_upload_page_offers_every_registered_model_and_accepts_zip_archives(client, alice):
    client.force_login(alice)
    page = body(client.get("/upload/"))
    offered = re.findall(r'<option value="([^"]+)"', page)
    assert offered == list(available_models())
    assert re.search(r'<option value="efficientnet-lite0" selected>', page)
    [accept] = re.findall(r'accept="([^"]+)"', page)
    assert "image/*" in accept and ".zip" in accept
    assert 'multiple' in page and 'id="dropzone"' in page


def test_upload_creates_a_job_and_the_job_page_names_each_rejected_file(client, alice):
    client.force_login(alice)
    response = client.post(
        "/upload/",
        {
            "images": [upload("coffee.png", (SAMPLES / "coffee.png").read_bytes()), upload("notes.txt", b"text")],
            "model": "efficientnet-lite0",
        },
        follow=True,
    )
    job = Job.objects.get(owner=alice)
    assert response.redirect_chain[-1][0] == f"/jobs/{job.pk}/"
    assert (job.total, job.model_name) == (1, "efficientnet-lite0")
    rejected = re.search(r'<section class="card rejected".*?</section>', body(response), re.S).group(0)
    assert "Not accepted (1)" in rejected and "notes.txt" in rejected and "not an image" in rejected
    # Shown once: the next visit is clean.
    assert "notes.txt" not in body(client.get(f"/jobs/{job.pk}/"))


def test_upload_with_no_acceptable_file_is_a_400_naming_each_file(client, alice):
    client.force_login(alice)
    response = client.post("/upload/", {"images": [upload("a.txt", b"hello"), upload("empty.jpg", b"")]})
    assert response.status_code == 400
    page = body(response)
    assert "a.txt" in page and "empty.jpg" in page and "the file is empty" in page
    assert "nothing was created" in page
    assert Job.objects.count() == 0


def test_upload_with_an_unknown_model_is_a_400(client, alice):
    client.force_login(alice)
    image = upload("c.png", (SAMPLES / "coffee.png").read_bytes())
    response = client.post("/upload/", {"images": [image], "model": "resnet-9000"})
    assert response.status_code == 400
    assert "unknown model" in body(response)
    assert Job.objects.count() == 0


# --- Job list --------------------------------------------------------------------


def test_job_list_is_newest_first_paginated_and_filtered_by_status(client, alice, bob):
    from datetime import timedelta

    from django.utils import timezone

    done = make_job(alice, {f"d{n}.png": ("espresso", 0.9) for n in range(2)})
    queued = [make_job(alice, {"q.png": None}) for _ in range(22)]
    make_job(bob, {"bob.png": ("cat", 0.5)})
    now = timezone.now()
    for age, job in enumerate([*queued, done]):
        Job.objects.filter(pk=job.pk).update(created_at=now - timedelta(minutes=age))
    client.force_login(alice)

    first = body(client.get("/jobs/"))
    ids = re.findall(r'href="/jobs/([0-9a-f-]{36})/"', first)
    # 20 a page, newest first.
    assert ids == [str(job.pk) for job in queued[:20]]
    second = body(client.get("/jobs/?page=2"))
    assert re.findall(r'href="/jobs/([0-9a-f-]{36})/"', second) == [str(job.pk) for job in (*queued[20:], done)]

    only_done = body(client.get("/jobs/?status=done"))
    assert re.findall(r'href="/jobs/([0-9a-f-]{36})/"', only_done) == [str(done.pk)]
    assert 'aria-valuenow="100"' in only_done and "2 of 2 done" in only_done
    # An open job's row polls for its progress; a done one does not.
    assert 'data-progress-url' not in only_done and f'data-progress-url="/jobs/{queued[0].pk}/progress"' in first
    # Page links keep the filter.
    many_done = body(client.get("/jobs/?status=queued"))
    assert 'href="?status=queued&amp;page=2"' in many_done


# --- Job page, progress, gallery, detail -------------------------------------------


def test_job_page_shows_progress_counts_and_a_tile_per_image(client, alice, finished_job):
    client.force_login(alice)
    page = body(client.get(f"/jobs/{finished_job.pk}/"))
    assert 'id="job-bar"' in page and 'aria-valuenow="100"' in page and ">100%<" in page
    assert re.search(r'id="count-succeeded">2<', page) and re.search(r'id="count-failed" class="bad">1<', page)
    coffee, cat, bad = finished_job.items.order_by("pk")
    # A thumbnail, the top-1 label and its confidence on each good tile; the error on the failed one.
    assert f'src="/jobs/{finished_job.pk}/items/{coffee.pk}/thumbnail"' in page
    assert "espresso" in page and "95.7%" in page and "tabby cat" in page and "62.0%" in page
    assert "cannot decode image data: the file is truncated" in page
    # The job is done: no polling, no cancel, a retry button for the failure, both downloads.
    assert 'data-open="0"' in page and 'id="cancel-job"' not in page
    assert "Retry 1 failed" in page and "results.csv" in page and "results.json" in page


def test_a_tile_keeps_the_whole_name_for_the_end_first_truncation(client, alice):
    job = make_job(alice, {"holiday.zip/folder/sub/IMG_0001.jpg": ("espresso", 0.9)})
    client.force_login(alice)
    page = body(client.get(f"/jobs/{job.pk}/"))
    # The whole name, isolated for the right-to-left box that truncates it from the left; all of it in title=.
    name = "holiday.zip/folder/sub/IMG_0001.jpg"
    assert f'<span class="filename" title="{name}"><bdi>{name}</bdi></span>' in page


def test_a_cancelled_image_says_it_did_not_run(client, alice):
    job = make_job(alice, {"a.png": ("espresso", 0.9), "b.png": None})
    client.force_login(alice)
    client.post(f"/jobs/{job.pk}/cancel")
    page = body(client.get(f"/jobs/{job.pk}/"))
    # Plainly over, not an ellipsis that reads as still going.
    assert "Cancelled (not run)" in page and "Cancelled…" not in page


def test_an_open_job_page_polls_and_offers_cancel(client, alice):
    job = make_job(alice, {"a.png": ("espresso", 0.9), "b.png": None})
    client.force_login(alice)
    page = body(client.get(f"/jobs/{job.pk}/"))
    assert 'data-open="1"' in page and 'id="cancel-job"' in page and ">50%<" in page
    assert "/static/jobs/progress.js" in page


def test_progress_endpoint_reports_counters_and_renders_the_asked_tiles(client, alice):
    job = make_job(alice, {"a.png": ("espresso", 0.9), "b.png": None, "c.png": "broken"})
    a, b, c = job.items.order_by("pk")
    client.force_login(alice)
    data = client.get(f"/jobs/{job.pk}/progress?items={a.pk},{b.pk},999999").json()
    counters = (data["status"], data["is_open"], data["total"], data["succeeded"], data["failed"])
    assert counters == ("queued", True, 3, 1, 1)
    assert (data["finished"], data["percent"], data["progress"]) == (2, 66, pytest.approx(0.6667))
    # Only the asked tiles of this job come back, each rendered like the page renders it.
    assert [(entry["id"], entry["status"]) for entry in data["items"]] == [(a.pk, "succeeded"), (b.pk, "queued")]
    assert "espresso" in data["items"][0]["html"] and 'data-status="succeeded"' in data["items"][0]["html"]
    assert 'id="cancel-job"' in data["actions_html"] and data["actions_key"] == "queued:1"


def test_item_page_shows_the_full_image_and_all_five_predictions_with_bars(client, alice, finished_job):
    coffee, cat, bad = finished_job.items.order_by("pk")
    client.force_login(alice)
    page = body(client.get(f"/jobs/{finished_job.pk}/items/{cat.pk}/"))
    assert f'<img src="/jobs/{finished_job.pk}/items/{cat.pk}/image"' in page
    predictions = re.search(r'<ol class="predictions".*?</ol>', page, re.S).group(0)
    labels = re.findall(r'<span class="label">([^<]+)</span>', predictions)
    assert labels == ["tabby cat"] + [f"tabby cat runner-up {n}" for n in range(4)]
    widths = re.findall(r'style="width: ([\d.]+)%"', predictions)
    assert widths[0] == "62.0" and len(widths) == 5
    # Previous and next walk the job's images.
    assert f'href="/jobs/{finished_job.pk}/items/{coffee.pk}/" rel="prev"' in page
    assert f'href="/jobs/{finished_job.pk}/items/{bad.pk}/" rel="next"' in page

    failed = body(client.get(f"/jobs/{finished_job.pk}/items/{bad.pk}/"))
    assert "cannot decode image data" in failed and 'class="predictions"' not in failed


def test_original_download_keeps_the_uploaded_name(client, alice, finished_job):
    coffee = finished_job.items.order_by("pk").first()
    client.force_login(alice)
    response = client.get(f"/jobs/{finished_job.pk}/items/{coffee.pk}/image?download=1")
    assert response["Content-Disposition"] == 'attachment; filename="coffee.png"'
    assert b"".join(response.streaming_content) == (SAMPLES / "coffee.png").read_bytes()


# --- Cancel and retry ----------------------------------------------------------------


def test_cancel_button_stops_an_open_job(client, alice):
    job = make_job(alice, {"a.png": ("espresso", 0.9), "b.png": None})
    client.force_login(alice)
    response = client.post(f"/jobs/{job.pk}/cancel", follow=True)
    job.refresh_from_db()
    assert job.status == "cancelled" and job.succeeded_count == 1
    assert list(job.items.order_by("pk").values_list("status", flat=True)) == ["succeeded", "cancelled"]
    # The same words as the API and the admin: what will not run, what may still finish.
    assert (
        "Job cancelled: 1 queued image will not run; those already running may still finish (0 running now). "
        "1 of 2 images had finished."
    ) in body(response)
    # A second press changes nothing and says so.
    again = client.post(f"/jobs/{job.pk}/cancel", follow=True)
    assert "already finished" in body(again)


def test_retry_button_queues_only_the_failed_items_again(
    client, alice, finished_job, django_capture_on_commit_callbacks
):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = client.post(f"/jobs/{finished_job.pk}/retry-failed", follow=True)
    finished_job.refresh_from_db()
    assert (finished_job.status, finished_job.failed_count, finished_job.succeeded_count) == ("queued", 0, 2)
    assert dict(finished_job.items.values_list("filename", "status")) == {
        "coffee.png": "succeeded", "cat.jpg": "succeeded", "bad.jpg": "queued"}  # fmt: skip
    # Sent to the workers once, after the commit.
    assert len(enqueued) == 1
    assert "1 failed image sent to the workers again." in body(response)


# --- Downloads -----------------------------------------------------------------------


def test_csv_download_has_a_row_per_image_with_top5_and_error(client, alice, finished_job):
    client.force_login(alice)
    response = client.get(f"/jobs/{finished_job.pk}/results.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="visionqueue-{finished_job.pk}.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["filename"] for row in rows] == ["coffee.png", "cat.jpg", "bad.jpg"]
    coffee, cat, bad = rows
    assert (coffee["status"], coffee["label_1"], coffee["score_1"]) == ("succeeded", "espresso", "0.957000")
    assert [cat[f"label_{rank}"] for rank in range(2, 6)] == [f"tabby cat runner-up {n}" for n in range(4)]
    assert cat["error"] == "" and float(cat["score_5"]) == pytest.approx(0.092)
    assert (bad["status"], bad["label_1"]) == ("failed", "")
    assert bad["error"] == "cannot decode image data: the file is truncated"


def test_csv_keeps_a_formula_like_filename_as_text(client, alice):
    job = make_job(alice, {"=HYPERLINK(1).png": ("espresso", 0.9)})
    client.force_login(alice)
    text = b"".join(client.get(f"/jobs/{job.pk}/results.csv").streaming_content).decode()
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["filename"] == "'=HYPERLINK(1).png"


def test_json_download_lists_the_job_and_every_item(client, alice, finished_job):
    client.force_login(alice)
    response = client.get(f"/jobs/{finished_job.pk}/results.json")
    assert response["Content-Disposition"] == f'attachment; filename="visionqueue-{finished_job.pk}.json"'
    data = json.loads(b"".join(response.streaming_content))
    assert data["job"]["id"] == str(finished_job.pk)
    assert (data["job"]["status"], data["job"]["succeeded"], data["job"]["failed"]) == ("done", 2, 1)
    assert [item["filename"] for item in data["items"]] == ["coffee.png", "cat.jpg", "bad.jpg"]
    coffee, _, bad = data["items"]
    assert coffee["predictions"][0] == {"label": "espresso", "class_index": 1, "score": 0.957}
    assert len(coffee["predictions"]) == 5 and coffee["error"] is None
    assert (bad["status"], bad["predictions"]) == ("failed", [])
    assert bad["error"] == "cannot decode image data: the file is truncated"


# --- Search -----------------------------------------------------------------------------


def test_search_finds_my_images_by_top_label_across_jobs_and_never_bobs(client, alice, bob):
    first = make_job(alice, {"kitty.jpg": ("tabby cat", 0.8), "mug.jpg": ("espresso", 0.9)})
    second = make_job(alice, {"tiger.jpg": ("tiger cat", 0.7), "puppy.jpg": ("beagle", 0.9)})
    make_job(bob, {"bobs-cat.jpg": ("Persian cat", 0.9)})
    client.force_login(alice)
    page = body(client.get("/search/?q=CAT"))
    found = re.findall(r'<span class="filename" title="([^"]+)"', page)
    # Case-insensitive "contains" on the top-1 label, newest job first; bob's cat is not there.
    assert found == ["tiger.jpg", "kitty.jpg"]
    assert "2 images whose top label contains" in page
    tiger = Item.objects.get(filename="tiger.jpg")
    assert f'href="/jobs/{second.pk}/items/{tiger.pk}/"' in page
    kitty = Item.objects.get(filename="kitty.jpg")
    assert f'href="/jobs/{first.pk}/items/{kitty.pk}/"' in page
    assert "No image of yours" in body(client.get("/search/?q=giraffe"))
    # Several words: each must be in the label, in any order.
    page = body(client.get("/search/?q=cat%20TIGER"))
    assert re.findall(r'<span class="filename" title="([^"]+)"', page) == ["tiger.jpg"]
    assert "1 image whose top label contains “cat” and “TIGER”." in page
    assert "No image of yours has a top label containing “cat” and “beagle”." in body(client.get("/search/?q=cat+beagle"))
