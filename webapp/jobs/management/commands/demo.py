"""The main job, end to end, on real processes: `make demo`."""

import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.translation import ngettext

from webapp.security.models import ApiToken
from webapp.stack import Stack, free_port

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


class Command(BaseCommand):
    help = (
        "Start the embedded broker, a worker and the web server, submit the photos in samples/ "
        "(or --images DIR) through the REST API, wait, print file -> top-1 label, stop everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("--images", type=Path, default=settings.BASE_DIR / "samples")
        parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the job")

    def handle(self, images, timeout, **options):
        folder = images.expanduser()
        paths, skipped = _images_in(folder)
        call_command("migrate", interactive=False, verbosity=0)
        token, key = _demo_token(lifetime=timedelta(seconds=timeout, hours=1))

        log_dir = settings.STATE_DIR / "log"
        self.stdout.write(f"Starting broker, worker and web server (logs in {log_dir}) ...")
        with Stack(web_port=free_port(), log_dir=log_dir) as stack, _revoked_after(token):
            images_phrase = ngettext("%d image", "%d images", len(paths)) % len(paths)
            skipped_phrase = (
                ngettext(" (%d other file skipped: not named like an image)",
                         " (%d other files skipped: not named like images)", skipped) % skipped
                if skipped else ""
            )  # fmt: skip
            self.stdout.write(
                f"Up: web {stack.web_url}, broker {stack.redis_url}. Submitting {images_phrase}{skipped_phrase}."
            )
            api = requests.Session()
            api.headers["Authorization"] = f"Token {key}"
            job = _submit(api, stack.web_url, paths, folder)
            for rejected in job["rejected"]:
                self.stdout.write(self.style.WARNING(f"rejected {rejected['filename']}: {rejected['error']}"))
            status = self._wait(api, stack, job["id"], timeout)
            results = _all_results(api, f"{stack.web_url}/api/jobs/{job['id']}/results/")

        self._print_table(results)
        elapsed = _seconds_between(status["created_at"], status["finished_at"])
        self.stdout.write(self.style.SUCCESS(
            f"\nJob {status['id']}: {status['succeeded']} succeeded, {status['failed']} failed "
            f"of {status['total']} in {elapsed:.1f} s with {status['model']}."
        ))
        self.stdout.write(
            "These jobs belong to the user 'demo', who has no password. To see them in the gallery, give it one "
            "with `.venv/bin/python manage.py changepassword demo`, run `make up` and log in as demo."
        )

    def _wait(self, api, stack, job_id, timeout):
        deadline = time.monotonic() + timeout
        shown = None
        while True:
            stack.check_alive()
            status = api.get(f"{stack.web_url}/api/jobs/{job_id}/", timeout=10).json()
            if (status["succeeded"], status["failed"]) != shown:
                shown = (status["succeeded"], status["failed"])
                self.stdout.write(f"  {status['status']:<9} {status['progress']:>6.0%}  "
                                  f"({status['succeeded']} ok, {status['failed']} failed of {status['total']})")
            if status["status"] in ("done", "cancelled"):
                return status
            if time.monotonic() > deadline:
                raise CommandError(f"job {job_id} not finished after {timeout:.0f} s")
            time.sleep(0.5)

    def _print_table(self, results):
        rows = [
            (r["filename"], r["predictions"][0]["label"], f"{r['predictions'][0]['score']:.3f}")
            if r["status"] == "succeeded"
            else (r["filename"], f"failed: {r['error']}", "")
            for r in results
        ]
        file_width = max(len("file"), *(len(row[0]) for row in rows))
        label_width = max(len("top-1 label"), *(len(row[1]) for row in rows))
        self.stdout.write(f"\n{'file':<{file_width}}  {'top-1 label':<{label_width}}  score")
        self.stdout.write(f"{'-' * file_width}  {'-' * label_width}  -----")
        for filename, label, score in rows:
            self.stdout.write(f"{filename:<{file_width}}  {label:<{label_width}}  {score}")


def _images_in(folder: Path) -> tuple[list[Path], int]:
    """The image files directly in `folder`, and how many other files it holds.

    CommandError (one line, no traceback) saying what is wrong.
    """
    if not folder.exists():
        raise CommandError(f"image folder {folder} does not exist (IMAGES= or --images must name a folder of images)")
    if not folder.is_dir():
        raise CommandError(f"{folder} is not a folder (IMAGES= or --images must name a folder of images)")
    try:
        files = [p for p in folder.iterdir() if p.is_file()]
    except OSError as error:
        raise CommandError(f"cannot read image folder {folder}: {error.strerror}") from None
    paths = sorted(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise CommandError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}; subfolders are not searched"
        )
    return paths, len(files) - len(paths)


def _demo_token(lifetime: timedelta) -> tuple[ApiToken, str]:
    from django.contrib.auth import get_user_model

    user, created = get_user_model().objects.get_or_create(username="demo")
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    # A short-lived token for this run only; revoked when the run ends.
    return ApiToken.objects.issue(user, "make demo", expires_at=timezone.now() + lifetime)


@contextmanager
def _revoked_after(token: ApiToken):
    try:
        yield
    finally:
        token.delete()


def _submit(api, web_url, paths, folder):
    files = [("images", (path.name, path.open("rb"))) for path in paths]
    try:
        response = api.post(f"{web_url}/api/jobs/", files=files, timeout=120)
    finally:
        for _, (_, handle) in files:
            handle.close()
    if response.status_code == 201:
        return response.json()
    try:
        answer = response.json()
    except ValueError:
        answer = {"detail": response.text.strip()}
    rejected = answer.get("rejected") or []
    if rejected:
        reasons = "; ".join(f"{entry['filename']}: {entry['error']}" for entry in rejected)
        raise CommandError(f"no file in {folder} is an image we can read ({reasons})")
    raise CommandError(f"upload refused ({response.status_code}): {answer.get('detail', answer)}")


def _all_results(api, url):
    results = []
    while url:
        page = api.get(url, timeout=10).json()
        results.extend(page["results"])
        url = page["next"]
    return results


def _seconds_between(start, end):
    from django.utils.dateparse import parse_datetime

    return (parse_datetime(end) - parse_datetime(start)).total_seconds()
