"""End to end on real processes: API -> Redis -> Celery worker -> CNN -> database."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ml import load_pixels
from tests.conftest import token_for
from tests.images import image_bytes
from tests.live import all_results, api_session, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_twenty_photos_through_the_whole_system(live_system, alice, photos, classifier, client, settings):
    chosen = photos[::10][:20]
    session = api_session(alice, live_system)

    files = [("images", (p.path.name, p.path.read_bytes(), "image/jpeg")) for p in chosen]
    created = session.post(f"{live_system.web_url}/api/jobs/", files=files, timeout=60)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["total"] == 20

    status = wait_for_job(session, job_id)
    assert (status["status"], status["succeeded"], status["failed"], status["progress"]) == ("done", 20, 0, 1.0)
    assert status["finished_at"] is not None

    results = all_results(session, job_id)
    assert [r["filename"] for r in results] == [p.path.name for p in chosen]
    # The worker's answer is the ml package's answer for the same file.
    expected = classifier.predict([load_pixels(p.path, classifier.spec) for p in chosen])
    for result, local in zip(results, expected):
        assert result["status"] == "succeeded" and result["error"] is None
        assert len(result["predictions"]) == 5
        assert result["predictions"][0]["class_index"] == local[0].class_index, result["filename"]
        assert result["predictions"][0]["score"] == pytest.approx(local[0].score, abs=1e-3)

    # The job page shows each thumbnail, made once by the worker.
    settings.MEDIA_ROOT = live_system.media_root
    client.force_login(alice)
    page = client.get(f"/jobs/{job_id}/").content.decode()
    for result in results:
        thumbnail_url = f"/jobs/{job_id}/items/{result['id']}/thumbnail"
        assert thumbnail_url in page
        assert result["predictions"][0]["label"] in page
    thumbnail = client.get(thumbnail_url)
    assert thumbnail.status_code == 200
    assert b"".join(thumbnail.streaming_content)[:2] == b"\xff\xd8"  # a JPEG


def test_a_broken_image_fails_alone(live_system, alice, photos):
    session = api_session(alice, live_system)
    good = photos[0].path.read_bytes()
    truncated = good[: len(good) // 2]
    files = [("images", ("good.jpg", good)), ("images", ("truncated.jpg", truncated))]
    job_id = session.post(f"{live_system.web_url}/api/jobs/", files=files, timeout=60).json()["id"]

    status = wait_for_job(session, job_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("done", 1, 1)
    results = {r["filename"]: r for r in all_results(session, job_id)}
    assert results["good.jpg"]["status"] == "succeeded"
    assert results["truncated.jpg"]["status"] == "failed"
    assert "truncated" in results["truncated.jpg"]["error"]


def test_the_upload_limit_holds_across_gunicorn_processes(live_system, alice):
    from webapp.security.models import UploadLimits

    UploadLimits.objects.create(user=alice, uploads_per_hour=3)
    headers = {"Authorization": f"Token {token_for(alice)}"}
    photo = image_bytes(size=(32, 32))

    def upload_once(n: int) -> requests.Response:
        files = [("images", (f"small{n}.png", photo, "image/png"))]
        return requests.post(f"{live_system.web_url}/api/jobs/", files=files, headers=headers, timeout=60)

    # Six uploads at once, spread over gunicorn's worker processes and threads.
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(upload_once, range(6)))
    assert sorted(r.status_code for r in responses) == [201, 201, 201, 429, 429, 429]
    refused = [r for r in responses if r.status_code == 429]
    assert all(0 < int(r.headers["Retry-After"]) <= 3600 for r in refused)
    assert all("3 uploads per hour" in r.json()["detail"] for r in refused)
