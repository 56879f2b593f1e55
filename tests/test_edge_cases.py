"""Every file in ../shared/data/edge-cases, through the API and a real worker, against manifest.json.

manifest.json says what a correct product does with each file: "ok" (the item
succeeds, with the same top-1 as a reference photo where one is named),
"item_failed" (accepted, then fails alone with a clear error), "rejected"
(refused at upload by name, 4xx-class reason) or "rejected_or_item_failed".
All files go up in one job, so a bad one must not disturb the others.
"""

from __future__ import annotations

import io
import json
import time

import pytest
import requests
from PIL import Image

from tests.conftest import EDGE_CASES, SHARED_DATA, token_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def manifest() -> dict[str, dict]:
    path = EDGE_CASES / "manifest.json"
    if not path.exists():
        pytest.skip(f"edge cases not found at {EDGE_CASES} (set VQ_SHARED_DATA)")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def outcome(live_system, django_db_blocker):
    """Upload every edge case (and the reference photos) in one request; wait for the job."""
    from django.contrib.auth import get_user_model

    cases = manifest()
    references = sorted({spec["same_top1_as"] for spec in cases.values() if "same_top1_as" in spec})
    with django_db_blocker.unblock():
        carol = get_user_model().objects.create_user("carol-edge-cases", password="carol-secret-pw")
        token = token_for(carol)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    files = [("images", (name, (EDGE_CASES / name).read_bytes(), "application/octet-stream")) for name in cases]
    files += [("images", (f"reference-{ref.replace('/', '-')}", (SHARED_DATA / ref).read_bytes())) for ref in references]
    created = session.post(f"{live_system.web_url}/api/jobs/", files=files, timeout=120)
    assert created.status_code == 201, created.text
    body = created.json()

    deadline = time.monotonic() + 180
    while (status := session.get(f"{live_system.web_url}/api/jobs/{body['id']}/", timeout=10).json())["status"] != "done":
        assert time.monotonic() < deadline, f"job not done: {status}"
        time.sleep(0.3)
    results, url = [], f"{live_system.web_url}/api/jobs/{body['id']}/results/?page_size=100"
    while url:
        page = session.get(url, timeout=10).json()
        results += page["results"]
        url = page["next"]
    # Read the thumbnails now: each test's teardown empties the database.
    from webapp.jobs.models import Item

    with django_db_blocker.unblock():
        thumbnails = {
            item.filename: (live_system.media_root / item.thumbnail.name).read_bytes()
            for item in Item.objects.filter(job_id=body["id"]).exclude(thumbnail="")
        }
    yield {
        "created": body,
        "status": status,
        "results": {r["filename"]: r for r in results},
        "rejected": {r["filename"]: r["error"] for r in body["rejected"]},
        "thumbnails": thumbnails,
    }


@pytest.mark.parametrize("name", sorted(manifest()) if (EDGE_CASES / "manifest.json").exists() else [])
def test_each_edge_case_behaves_as_the_manifest_says(outcome, name):
    spec = manifest()[name]
    expect = spec["expect"]
    result = outcome["results"].get(name)
    rejected = outcome["rejected"].get(name)

    if expect == "ok":
        assert rejected is None and result is not None, f"{name} was rejected: {rejected}"
        assert result["status"] == "succeeded", result["error"]
        assert len(result["predictions"]) == 5
    elif expect == "item_failed":
        assert rejected is None and result is not None
        assert result["status"] == "failed" and result["error"]
    elif expect == "rejected":
        assert result is None and rejected, f"{name} was accepted"
    elif expect == "rejected_or_item_failed":
        assert (rejected and result is None) or (result and result["status"] == "failed" and result["error"])
    else:
        raise AssertionError(f"manifest expectation {expect!r} for {name} is not known to this test")

    if "same_top1_as" in spec:
        reference = outcome["results"][f"reference-{spec['same_top1_as'].replace('/', '-')}"]
        assert result["predictions"][0]["class_index"] == reference["predictions"][0]["class_index"], (
            f"{name}: {result['predictions'][0]['label']} vs {reference['predictions'][0]['label']}"
        )


def test_the_whole_job_finishes_and_counts_every_accepted_file(outcome):
    status, results = outcome["status"], outcome["results"]
    assert status["total"] == len(results)
    assert status["succeeded"] == sum(r["status"] == "succeeded" for r in results.values())
    assert status["failed"] == sum(r["status"] == "failed" for r in results.values())
    assert status["succeeded"] + status["failed"] == status["total"]


def test_the_reasons_are_clear(outcome):
    # What the manifest's "why" asks for, in words an owner understands.
    rejected, results = outcome["rejected"], outcome["results"]
    assert "empty" in rejected["empty.jpg"]
    assert "not an image" in rejected["drawing.png"]
    bomb = rejected.get("bomb_20000x20000.jpg") or results["bomb_20000x20000.jpg"]["error"]
    assert "20000x20000" in bomb and "limit" in bomb
    assert "truncated" in results["truncated_cat.jpg"]["error"]


def thumbnail(outcome, name) -> Image.Image:
    return Image.open(io.BytesIO(outcome["thumbnails"][name]))


def test_transparency_is_composited_on_white_and_exif_rotation_applied(outcome):
    ring = thumbnail(outcome, "transparent_ring.png").convert("RGB")
    # The transparent corners of the ring are white (within JPEG noise), never black.
    assert all(min(ring.getpixel(point)) >= 245 for point in ((2, 2), (ring.width - 3, ring.height - 3)))
    # Stored 500x335 with Orientation=6: shown (and classified) as a portrait.
    rotated = thumbnail(outcome, "exif_rotated_cat.jpg")
    assert rotated.height > rotated.width
