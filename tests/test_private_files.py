"""Files go out only through owner-checked views: streamed by Django, or handed to nginx/Apache."""

import pytest
from django.core.files.storage import default_storage

from webapp.jobs.models import Item, Job
from tests.conftest import SAMPLES
from tests.images import upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def item(alice, media_root):
    job = Job.objects.create(owner=alice, model_name="efficientnet-lite0", total=1)
    name = default_storage.save(f"uploads/{job.pk}/3f9a.png", upload("x", (SAMPLES / "coffee.png").read_bytes()))
    return Item.objects.create(job=job, filename="coffee.png", file=name, sha256="0" * 64)


def image_url(item) -> str:
    return f"/jobs/{item.job_id}/items/{item.pk}/image"


def test_django_streams_the_file_with_protective_headers(client, alice, item):
    client.force_login(alice)
    response = client.get(image_url(item))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == (SAMPLES / "coffee.png").read_bytes()
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert response["Cache-Control"] == "private, max-age=3600"


def test_x_accel_redirect_hands_nginx_the_internal_path_and_no_body(client, alice, item, settings):
    settings.VQ_FILE_SERVING = "x-accel-redirect"
    client.force_login(alice)
    response = client.get(image_url(item))
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == f"/protected-media/uploads/{item.job_id}/3f9a.png"
    assert response["Content-Type"] == "image/png"
    assert response.content == b""


def test_x_sendfile_hands_the_server_the_absolute_path(client, alice, item, settings, media_root):
    settings.VQ_FILE_SERVING = "x-sendfile"
    client.force_login(alice)
    response = client.get(image_url(item))
    assert response["X-Sendfile"] == str(media_root / "uploads" / str(item.job_id) / "3f9a.png")
    assert response.content == b""


@pytest.mark.parametrize("serving", ["django", "x-accel-redirect", "x-sendfile"])
def test_others_get_404_and_no_file_header(client, bob, item, settings, serving):
    settings.VQ_FILE_SERVING = serving
    client.force_login(bob)
    response = client.get(image_url(item))
    assert response.status_code == 404
    assert "X-Accel-Redirect" not in response and "X-Sendfile" not in response


@pytest.mark.parametrize("serving", ["django", "x-accel-redirect", "x-sendfile"])
def test_a_missing_file_is_a_404(client, alice, item, settings, serving):
    settings.VQ_FILE_SERVING = serving
    default_storage.delete(item.file.name)
    client.force_login(alice)
    assert client.get(image_url(item)).status_code == 404


@pytest.mark.parametrize("serving", ["django", "x-accel-redirect", "x-sendfile"])
def test_a_stored_name_outside_media_root_is_refused(client, alice, item, settings, serving):
    settings.VQ_FILE_SERVING = serving
    # Names are always ours, but if a row were ever tampered with, the storage refuses to leave MEDIA_ROOT.
    Item.objects.filter(pk=item.pk).update(file="../../../../etc/passwd")
    client.force_login(alice)
    response = client.get(image_url(item))
    assert response.status_code == 400
    assert "X-Accel-Redirect" not in response and "X-Sendfile" not in response


def test_stored_names_never_come_from_the_client(alice, api_as, media_root):
    from tests.conftest import SAMPLES as samples

    png = (samples / "coffee.png").read_bytes()
    files = [upload("../../../etc/passwd.png", png, "image/png"), upload("same.png", png, "image/png"),
             upload("same.png", png, "image/png"), upload("page.html", png, "text/html")]  # fmt: skip
    response = api_as(alice).post("/api/jobs/", {"images": files}, format="multipart")
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    names = [item.file.name for item in job.items.order_by("pk")]
    # One folder per job, a random name each (no overwrite), the extension from the bytes (never .html).
    assert all(name.startswith(f"uploads/{job.pk}/") and name.endswith(".png") and ".." not in name for name in names)
    assert len(set(names)) == 4
    assert [item.filename for item in job.items.order_by("pk")] == ["passwd.png", "same.png", "same.png", "page.html"]
    assert sorted(p.name for p in (media_root / "uploads" / str(job.pk)).iterdir()) == sorted(n.rsplit("/", 1)[1] for n in names)
