"""Shared fixtures. People: alice owns things, bob is another user."""

from __future__ import annotations

import atexit
import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasks.embedded_redis import EmbeddedRedis

# A real Redis for the whole run, started before anything in this process
# configures Celery, so the test process and every worker share one broker.
# CI's second pass sets REDIS_URL to the machine's server instead.
# The fault tests stop and restart it (SESSION_REDIS is None with an outside server).
SESSION_REDIS: EmbeddedRedis | None = None
if not os.environ.get("REDIS_URL"):
    SESSION_REDIS = EmbeddedRedis().start()
    os.environ["REDIS_URL"] = SESSION_REDIS.url
    atexit.register(SESSION_REDIS.stop)

REPO = Path(__file__).resolve().parent.parent


def _find_shared_data() -> Path:
    """The team's labelled photos: VQ_SHARED_DATA, else ../shared/data beside the checkout."""
    if os.environ.get("VQ_SHARED_DATA"):
        return Path(os.environ["VQ_SHARED_DATA"])
    # A clone made elsewhere (CI clones into a temporary folder) still finds the workspace copy.
    candidates = [REPO.parent / "shared" / "data", Path("/work/shared/data")]
    return next((path for path in candidates if path.is_dir()), candidates[0])


SHARED_DATA = _find_shared_data()
PHOTOS = SHARED_DATA / "photos"
EDGE_CASES = SHARED_DATA / "edge-cases"
SAMPLES = REPO / "samples"


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    class_index: int
    class_name: str


def labelled_photos() -> list[LabelledPhoto]:
    if not (PHOTOS / "labels.csv").exists():
        pytest.skip(f"labelled photos not found at {PHOTOS} (set VQ_SHARED_DATA)")
    with open(PHOTOS / "labels.csv", newline="") as handle:
        return [
            LabelledPhoto(PHOTOS / row["file"], int(row["class_index"]), row["class_name"])
            for row in csv.DictReader(handle)
        ]


@pytest.fixture(scope="session")
def photos() -> list[LabelledPhoto]:
    return labelled_photos()


@pytest.fixture(scope="session")
def classifier():
    from ml import Classifier

    return Classifier("efficientnet-lite0", device="cpu")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # PBKDF2 at Django's default strength costs ~0.2 s a hash here, and most
    # tests create alice and bob. Only this process hashes this way: users
    # the tests create log in through the Django test client, never through
    # a live_system server (which keeps the production hashers).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-secret-pw")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-secret-pw")


def token_for(user, name: str = "tests") -> str:
    """A new API token for `user`; returns its key (the only time it is readable)."""
    from webapp.security.models import ApiToken

    return ApiToken.objects.issue(user, name)[1]


@pytest.fixture
def api_as():
    """api_as(user) -> a DRF client authenticated with the user's token."""
    from rest_framework.test import APIClient

    def client_for(user):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_for(user)}")
        return client

    return client_for


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL that points a child process at this test run's database."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{password}@" if user else ""
    return f"postgres://{credentials}{settings_dict['HOST']}:{settings_dict['PORT']}/{settings_dict['NAME']}"


@pytest.fixture(scope="module")
def live_system_options() -> dict:
    """A test module overrides this to change its live system: extra `env` for
    every process, or a `flower_port` (with `flower_basic_auth`) to start Flower too."""
    return {}


@pytest.fixture(scope="module")
def live_system(django_db_setup, django_db_blocker, tmp_path_factory, live_system_options):
    """Real processes on the test database: a Celery worker and the gunicorn web server.

    Tests that use it need `transactional_db`, so the rows they create are
    committed where the other processes can see them.
    """
    from tests.live import stack_on_test_database

    stack = stack_on_test_database(
        django_db_blocker,
        tmp_path_factory,
        "live",
        env=live_system_options.get("env"),
        flower_port=live_system_options.get("flower_port"),
        flower_basic_auth=live_system_options.get("flower_basic_auth"),
    )
    stack.start(timeout=180)
    yield stack
    stack.stop()
