"""Uploads that are not one plain image: .zip archives, and requests over a limit.

Every refusal names the file (or the request) and the limit, answers 4xx,
and leaves no Job, no Item and no file behind.
"""

from __future__ import annotations

import io
import stat
import zipfile

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from ml import NOT_AN_IMAGE
from tests.conftest import SAMPLES
from tests.images import image_bytes, upload
from webapp.jobs.models import Item, Job

pytestmark = pytest.mark.django_db

COFFEE = (SAMPLES / "coffee.png").read_bytes()
ROCKET = (SAMPLES / "rocket.jpg").read_bytes()


def zip_bytes(members: dict[str, bytes] | list[tuple[zipfile.ZipInfo | str, bytes]], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in members.items() if isinstance(members, dict) else members:
            archive.writestr(name, data)
    return buffer.getvalue()


def mark_encrypted(archive: bytes, member: str) -> bytes:
    """Set the 'encrypted' flag of one member in the central directory (zipfile cannot write one)."""
    data = bytearray(archive)
    entry = data.find(b"PK\x01\x02")
    while entry != -1:
        name_length = int.from_bytes(data[entry + 28 : entry + 30], "little")
        if data[entry + 46 : entry + 46 + name_length] == member.encode():
            data[entry + 8] |= 0x1
            return bytes(data)
        entry = data.find(b"PK\x01\x02", entry + 4)
    raise AssertionError(f"{member} not in archive")


def post_job(client, files, **data):
    return client.post("/api/jobs/", {"images": files, **data}, format="multipart")


def nothing_was_created(media_root) -> bool:
    """No Job, no Item, no file, and no job's folder (`uploads/` itself may stay)."""
    leftovers = [path for path in media_root.rglob("*") if path.is_file() or len(path.relative_to(media_root).parts) > 1]
    return Job.objects.count() == 0 and Item.objects.count() == 0 and not leftovers


def results_of(job_id) -> dict[str, Item]:
    return {item.filename: item for item in Item.objects.filter(job_id=job_id)}


# --- Archives -------------------------------------------------------------------


def test_a_zip_of_folders_becomes_one_item_per_image_and_names_each_reject(alice, api_as, media_root):
    archive = zip_bytes(
        {
            "holiday/": b"",
            "holiday/beach/coffee.png": COFFEE,
            "holiday/rocket.jpg": ROCKET,
            "holiday/notes.txt": b"remember the sunscreen",
            "__MACOSX/holiday/._rocket.jpg": b"\x00\x05\x16\x07 resource fork",
            "holiday/.DS_Store": b"\x00\x00\x00\x01Bud1",
        }
    )
    response = post_job(api_as(alice), [upload("holiday.zip", archive, "application/zip")])

    assert response.status_code == 201, response.content
    body = response.json()
    # Two images, named by their place in the archive; the text file is rejected by name.
    assert body["total"] == 2
    assert set(results_of(body["id"])) == {"holiday.zip/holiday/beach/coffee.png", "holiday.zip/holiday/rocket.jpg"}
    assert [r["filename"] for r in body["rejected"]] == ["holiday.zip/holiday/notes.txt"]
    assert "not an image" in body["rejected"][0]["error"]
    # Stored under names we chose, with the format the bytes say.
    items = results_of(body["id"])
    assert items["holiday.zip/holiday/beach/coffee.png"].format == "PNG"
    assert items["holiday.zip/holiday/rocket.jpg"].file.name.endswith(".jpg")
    assert items["holiday.zip/holiday/rocket.jpg"].size_bytes == len(ROCKET)
    stored = [p for p in media_root.rglob("*") if p.is_file()]
    assert len(stored) == 2 and all("holiday" not in str(p) for p in stored)


def test_archives_and_images_are_told_apart_by_their_bytes_not_their_names(alice, api_as):
    files = [
        upload("looks-like-a-photo.jpg", zip_bytes({"inside.png": COFFEE}), "image/jpeg"),
        upload("looks-like-an-archive.zip", COFFEE, "application/zip"),
    ]
    response = post_job(api_as(alice), files)

    assert response.status_code == 201, response.content
    items = results_of(response.json()["id"])
    # The zip named .jpg was opened; the PNG named .zip is a PNG.
    assert set(items) == {"looks-like-a-photo.jpg/inside.png", "looks-like-an-archive.zip"}
    assert items["looks-like-an-archive.zip"].format == "PNG"
    assert items["looks-like-an-archive.zip"].file.name.endswith(".png")


@pytest.mark.parametrize("evil", ["../escape.png", "folder/../../escape.png", "/etc/escape.png", "C:/escape.png", "..\\escape.png"])
def test_path_traversal_rejects_the_whole_archive(alice, api_as, media_root, evil):
    archive = zip_bytes([("fine.png", COFFEE), (evil, COFFEE)])
    response = post_job(api_as(alice), [upload("evil.zip", archive)])

    assert response.status_code == 400
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "evil.zip"
    assert "unsafe path" in entry["error"] and "nothing from this archive was used" in entry["error"]
    assert nothing_was_created(media_root)


def test_a_bad_archive_beside_good_files_is_rejected_alone(alice, api_as):
    files = [upload("coffee.png", COFFEE), upload("evil.zip", zip_bytes([("../x.png", COFFEE)]))]
    response = post_job(api_as(alice), files)
    assert response.status_code == 201
    assert response.json()["total"] == 1
    assert [r["filename"] for r in response.json()["rejected"]] == ["evil.zip"]


@override_settings(VQ_MAX_ZIP_MEMBERS=3)
def test_too_many_members_rejects_the_archive_naming_the_limit(alice, api_as, media_root):
    archive = zip_bytes({f"p{n}.png": COFFEE for n in range(4)})
    response = post_job(api_as(alice), [upload("many.zip", archive)])

    assert response.status_code == 400
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "many.zip"
    assert "4 entries" in entry["error"] and "limit of 3" in entry["error"]
    assert nothing_was_created(media_root)


def test_member_count_is_read_from_the_end_record_before_the_directory(settings):
    from webapp.jobs.uploads import _check_directory

    settings.VQ_MAX_ZIP_MEMBERS = 10
    archive = io.BytesIO(zip_bytes({f"{n}.txt": b"x" for n in range(11)}))
    # Refused from the 22-byte end record, without building 11 ZipInfo objects.
    assert "11 entries" in _check_directory(upload("a.zip", archive.getvalue()))


@override_settings(VQ_MAX_ZIP_BYTES=1_000_000)
def test_a_zip_bomb_is_rejected_from_its_declared_sizes(alice, api_as, media_root):
    # 20 MB of zeros deflates to about 20 KB: small upload, huge unpacked size.
    archive = zip_bytes({"small.png": image_bytes(), "zeros.bin": bytes(20_000_000)})
    assert len(archive) < 100_000
    response = post_job(api_as(alice), [upload("bomb.zip", archive)])

    assert response.status_code == 400
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "bomb.zip"
    assert "unpacks to 19.1 MB" in entry["error"] and "limit of 976.6" in entry["error"]
    assert nothing_was_created(media_root)


def test_members_are_rejected_by_name_for_what_they_are(alice, api_as, settings):
    settings.VQ_MAX_FILE_BYTES = 200_000
    link = zipfile.ZipInfo("link-to-passwd.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    big = image_bytes(size=(600, 600), fmt="BMP")  # 1 MB, over the 200 KB limit
    members = [
        ("ok/small.png", image_bytes()),
        ("inner.zip", zip_bytes({"deeper.png": image_bytes()})),
        ("inner.tar.gz", b"\x1f\x8b\x08\x00 gzip data"),
        (link, b"/etc/passwd"),
        ("secret.png", image_bytes()),
        ("big.bmp", big),
        ("empty.png", b""),
        ("drawing.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
    ]
    archive = mark_encrypted(zip_bytes(members), "secret.png")
    response = post_job(api_as(alice), [upload("mixed.zip", archive)])

    assert response.status_code == 201, response.content
    assert response.json()["total"] == 1
    errors = {r["filename"].removeprefix("mixed.zip/"): r["error"] for r in response.json()["rejected"]}
    assert "zip archive inside an archive" in errors["inner.zip"]
    assert "gzip archive inside an archive" in errors["inner.tar.gz"]
    assert "symbolic link" in errors["link-to-passwd.png"]
    assert "encrypted" in errors["secret.png"]
    assert "over the limit of 195.3 KB per file" in errors["big.bmp"]
    assert "empty" in errors["empty.png"]
    assert "not an image" in errors["drawing.png"]


def test_a_damaged_member_is_rejected_and_the_rest_of_the_archive_used(alice, api_as):
    data = bytearray(zip_bytes({"good.png": COFFEE, "bad.png": COFFEE}, method=zipfile.ZIP_STORED))
    # Flip a byte inside the second member's stored data: its CRC no longer matches.
    second = data.rfind(COFFEE[:64])
    data[second + 5000] ^= 0xFF
    response = post_job(api_as(alice), [upload("photos.zip", bytes(data))])

    assert response.status_code == 201
    assert set(results_of(response.json()["id"])) == {"photos.zip/good.png"}
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "photos.zip/bad.png" and "damaged" in entry["error"] and "CRC" in entry["error"]


def test_a_truncated_archive_is_rejected_by_name(alice, api_as, media_root):
    archive = zip_bytes({"coffee.png": COFFEE})
    response = post_job(api_as(alice), [upload("cut.zip", archive[: len(archive) // 2])])
    assert response.status_code == 400
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "cut.zip" and "not a readable zip archive" in entry["error"]
    assert nothing_was_created(media_root)


@override_settings(VQ_MAX_FILES_PER_JOB=2)
def test_archive_members_count_towards_the_images_per_job_limit(alice, api_as, media_root):
    archive = zip_bytes({f"p{n}.png": COFFEE for n in range(3)})
    response = post_job(api_as(alice), [upload("three.zip", archive)])

    assert response.status_code == 400
    assert "more than 2 images" in response.json()["detail"] and "limit is 2 per job" in response.json()["detail"]
    # The two members stored before the limit was hit are gone again.
    assert nothing_was_created(media_root)


def test_long_member_paths_keep_the_file_name():
    from webapp.jobs.uploads import member_display_name

    name = member_display_name("a.zip", "x" * 300 + "/cat.jpg")
    assert len(name) <= 255 and name.endswith("/cat.jpg") and name.startswith("a.zip/")
    assert member_display_name("a.zip", "dir\\sub\\cat\x07.jpg") == "a.zip/dir/sub/cat.jpg"


def test_the_upload_page_takes_a_zip_too(client, alice):
    client.force_login(alice)
    archive = zip_bytes({"cats/coffee.png": COFFEE, "cats/readme.txt": b"hi"})
    response = client.post("/upload/", {"images": [upload("cats.zip", archive)]}, follow=True)
    job = Job.objects.get(owner=alice)
    assert response.redirect_chain[-1][0] == f"/jobs/{job.pk}/"
    assert list(job.items.values_list("filename", flat=True)) == ["cats.zip/cats/coffee.png"]
    assert "cats.zip/cats/readme.txt" in response.content.decode()


# --- Limits Django enforces before our view, and the request size ---------------


@override_settings(DATA_UPLOAD_MAX_NUMBER_FILES=2)
def test_more_files_than_django_accepts_is_a_clear_400_from_the_api(alice, api_as, media_root):
    files = [upload(f"{n}.png", COFFEE) for n in range(3)]
    response = post_job(api_as(alice), files)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "more than 2 files" in response.json()["detail"]
    assert nothing_was_created(media_root)


@override_settings(DATA_UPLOAD_MAX_NUMBER_FILES=2)
def test_more_files_than_django_accepts_is_a_clear_400_on_the_page(client, alice, media_root):
    client.force_login(alice)
    response = client.post("/upload/", {"images": [upload(f"{n}.png", COFFEE) for n in range(3)]})
    assert response.status_code == 400
    assert "more than 2 files" in response.content.decode()
    assert nothing_was_created(media_root)


@override_settings(VQ_MAX_REQUEST_BYTES=100_000)
def test_an_oversize_request_is_413_before_it_is_read(alice, api_as, client, media_root):
    def files():
        return [upload("a.png", COFFEE), upload("b.png", COFFEE)]  # about 2 x 466 KB

    response = post_job(api_as(alice), files())
    assert response.status_code == 413
    assert "over the limit of 97.7 KB per request" in response.json()["detail"]

    client.force_login(alice)
    page = client.post("/upload/", {"images": files()})
    assert page.status_code == 413 and "97.7 KB per request" in page.content.decode()
    assert nothing_was_created(media_root)


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_oversize_form_fields_are_413(alice, api_as, media_root):
    response = post_job(api_as(alice), [upload("a.png", COFFEE)], model="x" * 5000)
    assert response.status_code == 413
    assert "form fields besides the files exceed 1000" in response.json()["detail"]
    assert nothing_was_created(media_root)


def test_a_malformed_multipart_body_is_a_400_not_a_500(alice, api_as, client):
    body = b"--XYZ\r\nContent-Disposition: form-data; name=\"images\"; filename=\"a.png\"\r\n\r\nunterminated"
    api = api_as(alice)
    response = api.generic("POST", "/api/jobs/", body, content_type="multipart/form-data; boundary=XYZ")
    assert response.status_code == 400
    client.force_login(alice)
    page = client.generic("POST", "/upload/", body, content_type="multipart/form-data; boundary=")
    assert page.status_code == 400 and "multipart" in page.content.decode()


def test_anonymous_uploads_are_refused_before_any_parsing(media_root):
    response = post_job(APIClient(), [upload("a.png", COFFEE)])
    assert response.status_code == 401
    assert nothing_was_created(media_root)


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "XYZ") -> bytes:
    """A multipart body written by hand: (field, filename or None for a plain field, content) per part."""
    body = b""
    for field, filename, content in parts:
        disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def post_raw(client, body: bytes, content_type: str = "multipart/form-data; boundary=XYZ", **extra):
    return client.generic("POST", "/api/jobs/", body, content_type=content_type, **extra)


def test_files_named_dot_dot_or_a_folder_are_checked_not_dropped(alice, api_as):
    body = multipart(
        ("images", "..", COFFEE),
        ("images", "notes/", b"not an image"),
        ("images", ".", ROCKET),
        ("images", "", b""),  # a browser's file input left empty: no file at all
    )
    response = post_raw(api_as(alice), body)

    assert response.status_code == 201, response.content
    items = {item.filename: item.format for item in Item.objects.filter(job_id=response.json()["id"])}
    # Numbered, so two of them can be told apart; a folder-like name keeps what it has.
    assert items == {"(unnamed file 1)": "PNG", "(unnamed file 2)": "JPEG"}
    assert response.json()["rejected"] == [{"filename": "notes", "error": NOT_AN_IMAGE}]


def test_a_body_cut_short_creates_nothing(alice, api_as, media_root):
    body = multipart(("images", "coffee.png", COFFEE), ("images", "rocket.jpg", ROCKET))
    cut = body[: len(body) - len(ROCKET) // 2]
    api = api_as(alice)
    # The last boundary never came (the client sent a Content-Length for what it had).
    response = post_raw(api, cut)
    assert response.status_code == 400
    assert "does not end with its closing boundary (--XYZ--): it was cut short" in response.json()["detail"]
    # The connection closed before the announced length.
    response = post_raw(api, cut, CONTENT_LENGTH=str(len(body)), **{"wsgi.input": io.BytesIO(cut)})
    assert response.status_code == 400
    assert f"ended after {len(cut)} of the {len(body)} bytes" in response.json()["detail"]
    assert nothing_was_created(media_root)


def test_files_in_another_field_are_rejected_by_name(alice, api_as, media_root):
    api = api_as(alice)
    response = api.post("/api/jobs/", {"images": [upload("coffee.png", COFFEE)], "file": [upload("rocket.jpg", ROCKET)]})
    assert response.status_code == 201
    assert response.json()["total"] == 1
    assert response.json()["rejected"] == [
        {"filename": "rocket.jpg", "error": "sent in the field 'file'; images go in the field 'images'"}
    ]

    Job.objects.all().delete()
    only_elsewhere = api.post("/api/jobs/", {"image": [upload("rocket.jpg", ROCKET)]})
    assert only_elsewhere.status_code == 400
    assert "no files in the field 'images'" in only_elsewhere.json()["detail"]
    assert [r["filename"] for r in only_elsewhere.json()["rejected"]] == ["rocket.jpg"]
    assert Job.objects.count() == 0


def test_a_part_without_a_file_name_is_rejected_not_dropped(alice, api_as, media_root):
    # filename="" with content (some clients), and curl's -F 'images=<photo.png' typo: both arrive as text.
    body = multipart(("images", "coffee.png", COFFEE), ("images", "", ROCKET[:2000]), ("images", None, b"camera.png"))
    response = post_raw(api_as(alice), body)

    assert response.status_code == 201, response.content
    assert response.json()["total"] == 1
    rejected = response.json()["rejected"]
    assert [entry["filename"] for entry in rejected] == ["(a part with no file name)"] * 2
    assert "without a file name" in rejected[0]["error"] and "-F images=@photo.jpg" in rejected[0]["error"]


def test_a_file_in_the_model_field_is_rejected_by_name_not_shown_as_a_model(alice, api_as):
    response = api_as(alice).post("/api/jobs/", {"images": [upload("coffee.png", COFFEE)], "model": [upload("rocket.jpg", ROCKET)]})
    assert response.status_code == 201
    assert response.json()["rejected"] == [
        {"filename": "rocket.jpg", "error": "sent in the field 'model'; images go in the field 'images'"}
    ]
    assert Job.objects.get().model_name == "efficientnet-lite0"


def test_the_upload_page_reads_the_form_as_the_api_does(client, alice, media_root):
    client.force_login(alice)
    twice = client.post("/upload/", {"images": [upload("coffee.png", COFFEE)], "model": ["efficientnet-lite1", "efficientnet-lite2"]})
    assert twice.status_code == 400
    assert "The field &#x27;model&#x27; was sent 2 times" in twice.content.decode()
    assert nothing_was_created(media_root)

    elsewhere = client.post("/upload/", {"images": [upload("coffee.png", COFFEE)], "photo": [upload("rocket.jpg", ROCKET)]}, follow=True)
    job = Job.objects.get(owner=alice)
    assert list(job.items.values_list("filename", flat=True)) == ["coffee.png"]
    assert "rocket.jpg" in elsewhere.content.decode() and "sent in the field &#x27;photo&#x27;" in elsewhere.content.decode()


def test_a_model_field_holding_a_whole_file_is_not_echoed_back(alice, api_as, media_root):
    response = post_raw(api_as(alice), multipart(("images", "coffee.png", COFFEE), ("model", None, ROCKET)))
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("unknown model ") and "(cut short)" in detail and len(detail) < 300
    assert nothing_was_created(media_root)


def test_a_body_with_a_long_epilogue_is_not_taken_for_a_cut_one(alice, api_as):
    # RFC 2046 allows text after the closing boundary; only its absence means the body was cut.
    response = post_raw(api_as(alice), multipart(("images", "coffee.png", COFFEE)) + b"\r\n" * 2000)
    assert response.status_code == 201, response.content


def test_the_model_field_sent_twice_is_a_400(alice, api_as, media_root):
    response = post_raw(api_as(alice), multipart(
        ("images", "coffee.png", COFFEE), ("model", None, b"efficientnet-lite0"), ("model", None, b"efficientnet-lite2"),
    ))  # fmt: skip
    assert response.status_code == 400
    assert response.json()["detail"] == "the field 'model' was sent 2 times; send it once; nothing was created"
    assert nothing_was_created(media_root)


def test_a_chunked_body_without_a_length_is_411_not_no_files(alice, api_as, client, media_root):
    body = multipart(("images", "coffee.png", COFFEE))
    response = post_raw(api_as(alice), body, HTTP_TRANSFER_ENCODING="chunked", CONTENT_LENGTH="")
    assert response.status_code == 411
    assert "Content-Length" in response.json()["detail"]
    client.force_login(alice)
    page = client.generic(
        "POST", "/upload/", body, content_type="multipart/form-data; boundary=XYZ",
        HTTP_TRANSFER_ENCODING="chunked", CONTENT_LENGTH="",
    )  # fmt: skip
    assert page.status_code == 411 and "chunked" in page.content.decode()
    assert nothing_was_created(media_root)


def test_a_body_with_another_boundary_says_so_rather_than_no_files(alice, api_as, media_root):
    body = multipart(("images", "coffee.png", COFFEE), boundary="SOMETHING-ELSE")
    response = post_raw(api_as(alice), body)  # the Content-Type names XYZ
    assert response.status_code == 400
    assert "separated by another boundary than its Content-Type names" in response.json()["detail"]
    assert nothing_was_created(media_root)


def test_an_empty_form_says_no_files_were_sent(alice, api_as):
    response = post_raw(api_as(alice), b"--XYZ--\r\n")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("no files were sent")


@pytest.mark.parametrize(
    "members,what",
    [({}, "no files"), ({"holiday/": b"", "__MACOSX/._x.png": b"junk", "holiday/.DS_Store": b"x"}, "nothing but folders")],
    ids=["empty", "only-folders-and-junk"],
)
def test_an_archive_with_no_file_is_rejected_by_name(alice, api_as, media_root, members, what):
    response = post_job(api_as(alice), [upload("empty.zip", zip_bytes(members))])
    assert response.status_code == 400
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "empty.zip"
    assert what in entry["error"] and "no image in it" in entry["error"]
    assert nothing_was_created(media_root)


def test_the_archives_of_one_upload_share_the_unpacked_size_limit(alice, api_as, settings):
    first, second = zip_bytes({"coffee.png": COFFEE}), zip_bytes({"rocket.jpg": ROCKET})
    settings.VQ_MAX_ZIP_BYTES = len(COFFEE) + len(ROCKET) - 1  # each fits alone, not both
    response = post_job(api_as(alice), [upload("first.zip", first), upload("second.zip", second)])

    assert response.status_code == 201
    assert set(results_of(response.json()["id"])) == {"first.zip/coffee.png"}
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "second.zip"
    assert "with the archives before it in this upload" in entry["error"] and "per upload" in entry["error"]


def test_a_member_that_is_not_an_image_is_refused_from_its_first_bytes(alice, api_as, monkeypatch):
    from webapp.jobs import uploads

    unpacked = []
    real_copy = uploads.shutil.copyfileobj
    monkeypatch.setattr(uploads.shutil, "copyfileobj", lambda source, *args, **kw: unpacked.append(source) or real_copy(source, *args, **kw))
    archive = zip_bytes({"coffee.png": COFFEE, "log.txt": b"2026-12-04 started\n" + bytes(5_000_000)})
    response = post_job(api_as(alice), [upload("mixed.zip", archive)])

    assert response.status_code == 201
    assert response.json()["rejected"] == [{"filename": "mixed.zip/log.txt", "error": NOT_AN_IMAGE}]
    assert len(unpacked) == 1  # the PNG's rest; the 5 MB text file never got past its first 16 bytes


def damaged_member(method: int) -> bytes:
    """A one-member archive whose compressed data its decompressor refuses (not just a bad CRC)."""
    archive = bytearray(zip_bytes({"rocket.jpg": ROCKET}, method=method))
    data_start = 30 + len("rocket.jpg")  # after the local file header
    if method == zipfile.ZIP_DEFLATED:
        archive[data_start] = 0xFF  # deflate block type 3: "invalid block type"
    else:
        middle = data_start + len(ROCKET) // 4
        archive[middle : middle + 64] = bytes(b ^ 0xFF for b in archive[middle : middle + 64])
    return bytes(archive)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA], ids=["deflate", "lzma"])
def test_a_member_its_decompressor_refuses_is_rejected_alone(alice, api_as, media_root, method):
    files = [upload("coffee.png", COFFEE), upload("damaged.zip", damaged_member(method))]
    response = post_job(api_as(alice), files)

    assert response.status_code == 201, response.content
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "damaged.zip/rocket.jpg" and entry["error"].startswith("damaged inside the archive")


@pytest.mark.parametrize("member", ["\x01\x02", " ", ".", "x/."], ids=["control", "space", "dot", "folder-dot"])
def test_a_member_whose_name_cleans_to_nothing_is_still_checked(alice, api_as, member):
    archive = zip_bytes([("ok.png", COFFEE), (member, ROCKET)])
    response = post_job(api_as(alice), [upload("odd.zip", archive)])

    assert response.status_code == 201, response.content
    assert response.json()["total"] == 2 and response.json()["rejected"] == []
    names = set(results_of(response.json()["id"]))
    assert "odd.zip/ok.png" in names and len(names) == 2


def test_a_zip_of_a_newer_format_version_is_rejected_by_name(alice, api_as):
    archive = bytearray(zip_bytes({"ok.png": COFFEE}))
    directory_entry = archive.rfind(b"PK\x01\x02")
    archive[directory_entry + 6 : directory_entry + 8] = (64).to_bytes(2, "little")  # needs version 6.4
    response = post_job(api_as(alice), [upload("new.zip", bytes(archive)), upload("rocket.jpg", ROCKET)])

    assert response.status_code == 201, response.content
    [entry] = response.json()["rejected"]
    assert entry["filename"] == "new.zip" and "zip file version 6.4" in entry["error"]


def test_a_folder_entry_holding_bytes_is_checked_as_a_file(alice, api_as):
    response = post_job(api_as(alice), [upload("odd.zip", zip_bytes([("ok.png", COFFEE), ("cam.png/", ROCKET)]))])
    assert response.status_code == 201
    assert set(results_of(response.json()["id"])) == {"odd.zip/ok.png", "odd.zip/cam.png"}


def test_a_refused_upload_leaves_no_job_folder(alice, api_as, media_root, settings):
    settings.VQ_MAX_FILES_PER_JOB = 2
    archive = zip_bytes({"a.png": COFFEE, "b.jpg": ROCKET})
    response = post_job(api_as(alice), [upload("two.zip", archive), upload("third.png", COFFEE)])
    assert response.status_code == 400 and "more than 2 images" in response.json()["detail"]
    assert nothing_was_created(media_root)


def test_the_type_comes_from_the_bytes_never_the_name_or_content_type(alice, api_as):
    files = [upload("photo.gif", ROCKET, "text/plain"), upload("photo.png", b"GIF89a not really", "image/png")]
    response = post_job(api_as(alice), files)
    assert response.status_code == 201
    [item] = Item.objects.filter(job_id=response.json()["id"])
    # A JPEG named .gif and sent as text is stored and recorded as the JPEG it is.
    assert (item.filename, item.format) == ("photo.gif", "JPEG") and item.file.name.endswith(".jpg")
    assert [r["filename"] for r in response.json()["rejected"]] == ["photo.png"]
