"""The web product on the real system, in headless Chromium, and Flower beside it.

A real worker, gunicorn and Flower run on the test database (the
`live_system` fixture). The browser signs up, uploads photos and a
non-image, watches the live progress bar, reads the gallery, downloads the
CSV and looks at the pages at laptop and phone widths. Screenshots go to
test-artifacts/screenshots/ (git-ignored) for a person to look at.

Chromium comes from Debian's packages (`make test` installs chromium when it
is missing); Playwright drives it, never downloading a browser of its own.
"""

from __future__ import annotations

import ast
import csv
import html
import json
import os
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from ml import load_pixels
from tests.conftest import REPO, SAMPLES, token_for
from webapp.jobs.models import Job
from webapp.stack import free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = Path(os.environ.get("VQ_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-gpu", "--disable-dev-shm-usage"]  # fmt: skip
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
LAPTOP = {"width": 1366, "height": 860}
# Phone widths the pages must fit: the narrowest still sold (320 px), a common one, a recent one.
PHONE_WIDTHS = (320, 375, 390)
FLOWER_USER, FLOWER_PASSWORD = "watcher", "flower-test-password"
# Generous bounds for a loaded 2-core machine; waits end as soon as the page is ready.
PAGE_WAIT_MS = 180_000


@pytest.fixture(scope="module")
def live_system_options():
    # Batches of 2, so 5 photos take 3 batches and the bar moves in steps.
    return {
        "env": {"VQ_BATCH_SIZE": "2"},
        "flower_port": free_port(),
        "flower_basic_auth": [f"{FLOWER_USER}:{FLOWER_PASSWORD}"],
    }


@pytest.fixture(scope="module")
def screenshots() -> Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@contextmanager
def chromium():
    """A headless Debian Chromium driven by Playwright.

    Playwright's sync API runs an event loop in this thread, and Django
    refuses database calls while one runs: tests touch the database only
    outside this block.
    """
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} not found: `make test` installs the Debian chromium package (needs root and apt)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# Records every value the job page's progress bar shows, and marks the page so
# a full reload would be noticed (the marker would be gone).
WATCH_PROGRESS = """
window.__vqProgress = [];
window.__vqLoaded = (window.__vqLoaded || 0) + 1;
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("job-bar");
  if (!bar) return;
  const record = () => window.__vqProgress.push(Number(bar.getAttribute("aria-valuenow")));
  record();
  new MutationObserver(record).observe(bar, { attributes: true, attributeFilter: ["aria-valuenow"] });
});
"""


# What a browser does when a file is dragged from the desktop onto the drop zone.
DROP_TEXT_FILE = """() => {
  const transfer = new DataTransfer();
  transfer.items.add(new File(["eggs, milk, a new camera\\n"], "shopping-list.txt", { type: "text/plain" }));
  const zone = document.getElementById("dropzone");
  for (const type of ["dragenter", "dragover", "drop"]) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}"""


# Puts a long zip member's name in the first tile and asks where its first and
# last characters landed, relative to the tile's name box.
LONG_NAME_IN_A_TILE = """() => {
  const box = document.querySelector("#gallery .tile .filename");
  const text = box.querySelector("bdi").firstChild;
  text.textContent = "holiday-2024.zip/beach/a-long-sub-folder/another-one/IMG_0001.jpg";
  const visible = box.getBoundingClientRect();
  const range = document.createRange();
  range.setStart(text, text.length - 4);
  range.setEnd(text, text.length);
  const extension = range.getBoundingClientRect();
  range.setStart(text, 0);
  range.setEnd(text, 7);
  const beginning = range.getBoundingClientRect();
  return {
    extension_shown: extension.left >= visible.left && extension.right <= visible.right + 0.5,
    beginning_hidden: beginning.left < visible.left,
  };
}"""


def slow_down_batches(live_system, rate: str | None) -> None:
    from tasks.celery_app import app

    workers = [name for reply in live_system.ping_workers() for name in reply]
    # limit= returns as soon as every worker has answered, instead of waiting out the timeout.
    replies = app.control.rate_limit(
        "vq.classify_batch", rate, destination=workers, reply=True, limit=len(workers), timeout=10
    )
    assert len(replies) == len(workers), replies
    assert all("ok" in reply for answer in replies for reply in answer.values()), replies


def fits_width(page) -> bool:
    """Nothing on the page is wider than the screen.

    A mobile browser widens its layout viewport to fit content that overflows
    (innerWidth grows past the device's width), so the viewport's own width
    is part of the check.
    """
    return page.evaluate(
        "document.scrollingElement.scrollWidth <= window.innerWidth && window.innerWidth === screen.width"
        # Nor is any link of the top bar pushed off the screen inside it.
        " && [...document.querySelectorAll('.topbar a, .topbar button')]"
        "      .every(el => el.getBoundingClientRect().right <= window.innerWidth)"
    )


def test_sign_up_upload_watch_progress_gallery_and_csv(live_system, photos, classifier, screenshots, tmp_path):
    chosen = photos[::40][:5]
    # What the worker should say: the ml package's own top-1 for each file.
    expected = [result[0] for result in classifier.predict([load_pixels(p.path, classifier.spec) for p in chosen])]
    web = live_system.web_url

    with chromium() as browser:
        context = browser.new_context(viewport=LAPTOP, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(30_000)

        # Anonymous: the home page asks for a login; sign up from there.
        page.goto(f"{web}/")
        assert "/accounts/login/" in page.url
        page.click("text=Create an account")
        page.fill("#id_username", "carol")
        page.fill("#id_password1", "carol-long-password")
        page.fill("#id_password2", "carol-long-password")
        page.click("button[type=submit]:has-text('Sign up')")
        page.wait_for_url(f"{web}/upload/")
        assert page.inner_text(".account .who") == "carol"

        # Choose 5 photos with the file input, then drag a text file onto the drop zone: both go.
        page.set_input_files("#images", [str(p.path) for p in chosen])
        assert page.inner_text("#chosen-summary").startswith("5 files")
        page.evaluate(DROP_TEXT_FILE)
        assert page.inner_text("#chosen-summary").startswith("6 files")
        assert page.evaluate("[...document.getElementById('images').files].map(f => f.name)") == [
            p.path.name for p in chosen
        ] + ["shopping-list.txt"]
        page.screenshot(path=str(screenshots / "01-upload.png"), full_page=True, animations="disabled")
        assert fits_width(page)

        context.add_init_script(WATCH_PROGRESS)
        # Space the job's 3 batches about 2 s apart (a real Celery rate limit on
        # the real worker), so the screenshot catches the job part-way through.
        slow_down_batches(live_system, "30/m")
        try:
            page.click("#submit")
            page.wait_for_url(f"{web}/jobs/*/")
            job_url = page.url
            job_id = job_url.rstrip("/").rsplit("/", 1)[-1]

            # The file that was not an image is named, with the reason.
            rejected = page.inner_text("#rejected")
            assert "shopping-list.txt" in rejected and "not an image" in rejected

            # Live progress: wait for the job to be under way (or already done), show it, then wait for 100%.
            page.wait_for_function(
                "Number(document.getElementById('job-bar').getAttribute('aria-valuenow')) > 0", timeout=PAGE_WAIT_MS
            )
            page.screenshot(path=str(screenshots / "02-job-running.png"), full_page=True, animations="disabled")
            page.wait_for_function(
                "document.getElementById('job-bar').getAttribute('aria-valuenow') === '100'"
                " && document.getElementById('job-status').textContent.trim() === 'Done'"
                " && document.querySelectorAll('#gallery .tile-succeeded').length === 5",
                timeout=PAGE_WAIT_MS,
            )
        finally:
            slow_down_batches(live_system, None)
        seen = page.evaluate("window.__vqProgress")
        # The bar only moved forward, ended at 100%, and the page never reloaded to get there.
        assert seen == sorted(seen) and seen[-1] == 100, seen
        assert page.evaluate("window.__vqLoaded") == 1
        assert page.inner_text("#job-percent") == "100%"
        assert (page.inner_text("#count-succeeded"), page.inner_text("#count-failed")) == ("5", "0")

        # The gallery: a thumbnail and the top-1 label for every photo, in upload order.
        tiles = page.locator("#gallery .tile")
        assert tiles.count() == 5
        assert [tiles.nth(n).locator(".filename").inner_text() for n in range(5)] == [p.path.name for p in chosen]
        assert [tiles.nth(n).locator(".top1 .label").inner_text() for n in range(5)] == [e.label for e in expected]
        page.wait_for_function(
            "[...document.querySelectorAll('#gallery .tile img')].every(img => img.complete && img.naturalWidth > 0)"
        )
        assert page.locator("#gallery .tile img").count() == 5
        page.screenshot(path=str(screenshots / "03-gallery.png"), full_page=True, animations="disabled")

        # The CSV download: one row per photo, the top-1 labels and scores the worker found.
        with page.expect_download() as download:
            page.click("#download-csv")
        assert download.value.suggested_filename == f"visionqueue-{job_id}.csv"
        csv_path = tmp_path / "results.csv"
        download.value.save_as(csv_path)
        with open(csv_path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [row["filename"] for row in rows] == [p.path.name for p in chosen]
        assert [row["status"] for row in rows] == ["succeeded"] * 5
        assert [row["label_1"] for row in rows] == [e.label for e in expected]
        for row, prediction in zip(rows, expected):
            assert float(row["score_1"]) == pytest.approx(prediction.score, abs=1e-3)
            assert all(row[f"label_{rank}"] for rank in range(1, 6)) and row["error"] == ""

        # One image: the full picture and all five predictions with bars.
        tiles.nth(0).locator("a").click()
        page.wait_for_url(f"{job_url}items/*/")
        assert page.locator("#predictions li").count() == 5
        assert page.locator("#predictions li .label").first.inner_text() == expected[0].label
        page.wait_for_function("document.querySelector('.detail-image img').naturalWidth > 0")
        page.screenshot(path=str(screenshots / "04-image.png"), full_page=True, animations="disabled")

        page.goto(f"{web}/jobs/")
        page.screenshot(path=str(screenshots / "05-jobs.png"), full_page=True, animations="disabled")
        page.goto(f"{web}/search/?q={expected[0].label.split()[-1]}")
        assert page.locator("#gallery .tile").count() >= 1
        page.screenshot(path=str(screenshots / "06-search.png"), full_page=True, animations="disabled")

        # The same pages on phones, down to 320 px: nothing wider than the screen.
        for width in PHONE_WIDTHS:
            phone = browser.new_context(
                viewport={"width": width, "height": 740}, screen={"width": width, "height": 740},
                device_scale_factor=2, is_mobile=True, has_touch=True, storage_state=context.storage_state(),
            )  # fmt: skip
            small = phone.new_page()
            for name, url in (("upload", "/upload/"), ("jobs", "/jobs/"), ("job", f"/jobs/{job_id}/"),
                              ("search", f"/search/?q={expected[0].label.split()[-1]}"), ("tokens", "/settings/tokens/")):  # fmt: skip
                small.goto(f"{web}{url}")
                small.screenshot(path=str(screenshots / f"phone-{width}-{name}.png"), full_page=True, animations="disabled")
                assert fits_width(small), (width, name)
            # A new token: its long key and the token list, on the page that shows the key once.
            small.fill("#new-token-form input[name=name]", f"phone {width} px, a token with a long descriptive name")
            small.click("#new-token-form button[type=submit]")
            small.wait_for_selector("#new-key-value")
            small.screenshot(path=str(screenshots / f"phone-{width}-new-token.png"), full_page=True, animations="disabled")
            assert fits_width(small), (width, "new token")
            # Post/Redirect/Get: reloading shows the list again, not the key, and makes no second token.
            small.reload()
            assert small.locator("#new-key-value").count() == 0
            small.goto(f"{web}/jobs/{job_id}/")
            # A zip member's long name loses its beginning, never its end.
            name_ends = small.evaluate(LONG_NAME_IN_A_TILE)
            assert name_ends == {"extension_shown": True, "beginning_hidden": True}, (width, name_ends)
            small.locator("#gallery .tile a").first.click()
            small.wait_for_url(f"{job_url}items/*/")
            small.screenshot(path=str(screenshots / f"phone-{width}-image.png"), full_page=True, animations="disabled")
            assert fits_width(small), (width, "image")
            phone.close()
        context.close()

    from webapp.security.models import ApiToken

    # One token per phone's form post, however often its page was loaded.
    assert ApiToken.objects.filter(user__username="carol").count() == len(PHONE_WIDTHS)
    for name in ("01-upload", "02-job-running", "03-gallery", "04-image", "phone-320-job", "phone-375-tokens"):
        assert (screenshots / f"{name}.png").stat().st_size > 10_000, name


def test_the_upload_pages_curl_example_works_as_written(live_system, alice, client, tmp_path):
    """The page's "From a script" command, run by a shell in a folder holding photo1.jpg and photo2.jpg."""
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    client.force_login(alice)
    host = live_system.web_url.removeprefix("http://")
    page = client.get("/upload/", HTTP_HOST=host).content.decode()
    command = html.unescape(re.search(r'<pre class="example" id="api-example">(.*?)</pre>', page, re.S).group(1))
    # It names the token page and the API docs beside it.
    assert 'href="/settings/tokens/"' in page and 'href="/api/docs/"' in page
    shutil.copy(SAMPLES / "rocket.jpg", tmp_path / "photo1.jpg")
    shutil.copy(SAMPLES / "grace_hopper.jpg", tmp_path / "photo2.jpg")

    run = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env={**os.environ, "TOKEN": token_for(alice)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    created = json.loads(run.stdout)
    # A new job of both photos, as the page promised.
    assert (created["total"], created["rejected"]) == (2, [])
    assert Job.objects.get(pk=created["id"]).owner == alice


def flower_url(live_system, path: str = "/") -> str:
    return f"http://127.0.0.1:{live_system.flower_port}{path}"


def test_flower_asks_for_the_password_and_shows_the_batches(live_system, alice, photos):
    # No password, or a wrong one: 401.
    assert requests.get(flower_url(live_system), timeout=10).status_code == 401
    assert requests.get(flower_url(live_system), auth=(FLOWER_USER, "wrong"), timeout=10).status_code == 401
    assert requests.get(flower_url(live_system), auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10).status_code == 200
    # The password travels in Flower's environment, not its command line, where `ps` would show it.
    [flower] = [child for child in live_system.children if child.name == "flower"]
    assert FLOWER_PASSWORD.encode() not in Path(f"/proc/{flower.process.pid}/cmdline").read_bytes()

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token_for(alice)}"
    files = [("images", (p.path.name, p.path.read_bytes())) for p in photos[:3]]
    job_id = session.post(f"{live_system.web_url}/api/jobs/", files=files, timeout=60).json()["id"]
    results = session.get(f"{live_system.web_url}/api/jobs/{job_id}/results/", timeout=10).json()["results"]
    item_ids = {item["id"] for item in results}

    # Worker events are on, so Flower sees each batch task of the job succeed.
    deadline = time.monotonic() + 180
    while True:
        tasks = requests.get(
            flower_url(live_system, "/api/tasks"), auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10
        ).json()
        batches = [task for task in tasks.values() if (task["name"], task["state"]) == ("vq.classify_batch", "SUCCESS")]
        covered = {item_id for task in batches for item_id in _item_ids(task["args"])}
        if item_ids <= covered or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert item_ids <= covered, (item_ids, tasks)


def test_flower_metrics_and_healthcheck_answer_without_the_password(live_system):
    # Flower 2.2 exempts these two from basic auth (Prometheus and probes call
    # them); README "Flower" says so. They carry task and worker names and
    # counts, never task arguments. The UI and its API still want the password.
    metrics = requests.get(flower_url(live_system, "/metrics"), timeout=10)
    assert metrics.status_code == 200 and "flower_" in metrics.text
    assert "Authorization" not in metrics.request.headers
    assert requests.get(flower_url(live_system, "/healthcheck"), timeout=10).text == "OK"
    for private in ("/", "/api/tasks", "/api/workers", "/tasks", "/workers"):
        assert requests.get(flower_url(live_system, private), timeout=10).status_code == 401, private
    # `make up` (this Stack) binds Flower to the loopback address only.
    [flower] = [child for child in live_system.children if child.name == "flower"]
    assert b"--address=127.0.0.1" in Path(f"/proc/{flower.process.pid}/cmdline").read_bytes()


def _item_ids(args: str) -> list[int]:
    # Flower shows args as the repr of the call's arguments: "([12, 13], 'efficientnet-lite0')".
    try:
        return list(ast.literal_eval(args)[0])
    except (ValueError, SyntaxError, IndexError, TypeError):
        return []
