"""Management commands and the embedded broker."""

import io
import os
import re
import subprocess
import sys
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from tasks.embedded_redis import EmbeddedRedis, broker_url, ping
from webapp.security.models import ApiToken, hash_key


@pytest.mark.django_db
def test_create_api_token_prints_only_a_working_key_and_creates_the_user():
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "carol", stdout=out, stderr=err)
    # stdout is the key and nothing else; the note about the new user is on stderr.
    assert re.fullmatch(r"vq_[A-Za-z0-9_-]{43}\n", out.getvalue())
    key = out.getvalue().strip()
    assert "Created user 'carol'" in err.getvalue()
    assert "python manage.py changepassword carol" in err.getvalue()
    user = get_user_model().objects.get(username="carol")
    assert not user.has_usable_password()
    # Only the hash is stored; the key itself is nowhere in the database.
    token = ApiToken.objects.get(user=user)
    assert token.key_hash == hash_key(key) and key not in token.key_hash
    assert key.startswith("vq_") and len(key) == 46 and token.prefix == key[:10]
    assert token.expires_at is None

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/jobs/").status_code == 200

    again, quiet = io.StringIO(), io.StringIO()
    call_command("create_api_token", "carol", "--name", "nightly", "--expires-in-days", "7", stdout=again, stderr=quiet)
    # A second run is a second, different token for the same user, and nothing to note.
    second = again.getvalue().strip()
    assert quiet.getvalue() == ""
    assert second != key
    assert get_user_model().objects.filter(username="carol").count() == 1
    assert ApiToken.objects.filter(user=user).count() == 2
    nightly = ApiToken.objects.get(user=user, name="nightly")
    assert 6.9 < (nightly.expires_at - nightly.created_at).total_seconds() / 86400 < 7.1


@pytest.mark.django_db(transaction=True)
def test_create_api_token_in_a_real_process_keeps_stdout_to_the_key(settings):
    from django.db import connection

    from tests.conftest import REPO, database_url

    # What a script sees: TOKEN=$(python manage.py create_api_token dave).
    env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict)}
    run = subprocess.run(
        [sys.executable, "manage.py", "create_api_token", "dave"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    assert re.fullmatch(r"vq_[A-Za-z0-9_-]{43}\n", run.stdout), run.stdout
    assert "changepassword dave" in run.stderr
    assert ApiToken.objects.get(user__username="dave").key_hash == hash_key(run.stdout.strip())


@pytest.mark.parametrize("case", ["missing", "a file", "no images"])
def test_demo_with_a_bad_image_folder_says_so_in_one_line(tmp_path, case):
    from tests.conftest import REPO

    folder = {"missing": tmp_path / "holiday", "a file": tmp_path / "notes.txt", "no images": tmp_path}[case]
    (tmp_path / "notes.txt").write_text("not a folder")
    # What `make demo IMAGES=...` runs, as a real process: no broker, no server, no traceback.
    run = subprocess.run(
        [sys.executable, "manage.py", "demo", "--images", str(folder)], cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 1 and run.stdout == ""
    expected = {
        "missing": f"image folder {folder} does not exist",
        "a file": f"{folder} is not a folder",
        "no images": f"no images (.bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp) in {folder}",
    }[case]
    [line] = run.stderr.splitlines()
    assert line.startswith(f"CommandError: {expected}"), run.stderr


@pytest.mark.integration
def test_demo_on_a_folder_with_no_readable_image_names_each_file_in_one_line(tmp_path):
    from tests.conftest import REPO

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "b.jpg").write_text("not a picture")
    (folder / "notes.txt").write_text("skipped: not named like an image")
    # The real demo, on its own database and embedded broker: the server's checks decide.
    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "DATABASE_URL")}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", MEDIA_ROOT=str(tmp_path / "media"))
    run = subprocess.run(
        [sys.executable, "manage.py", "demo", "--images", str(folder)], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    # It said what it skipped and sent, then one line naming the file and the reason, no JSON, no traceback.
    assert "Submitting 1 image (1 other file skipped: not named like an image)." in run.stdout
    [line] = run.stderr.splitlines()
    assert line == (
        f"CommandError: no file in {folder} is an image we can read "
        "(b.jpg: not an image Pillow can read (the contents, not the name, decide))"
    ), run.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["bad name!", "x" * 151, "semi;colon"])
def test_create_api_token_refuses_a_username_that_sign_up_would_refuse(username):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=f"cannot create user {re.escape(repr(username))}"):
        call_command("create_api_token", username, stdout=io.StringIO(), stderr=io.StringIO())
    # Nothing was created: no user, no token.
    assert not get_user_model().objects.filter(username=username).exists()
    assert not ApiToken.objects.exists()


@pytest.mark.django_db
def test_create_api_token_for_an_existing_user_with_an_odd_name_still_works(django_user_model):
    # Accounts made before the rule (or by the admin) keep getting tokens.
    django_user_model.objects.create(username="legacy name")
    out = io.StringIO()
    call_command("create_api_token", "legacy name", stdout=out, stderr=io.StringIO())
    assert ApiToken.objects.get(user__username="legacy name").key_hash == hash_key(out.getvalue().strip())


def test_make_up_records_its_broker_for_commands_started_beside_it(tmp_path, monkeypatch):
    from tasks import embedded_redis
    from webapp.stack import Stack

    monkeypatch.setattr(embedded_redis, "STATE_DIR", tmp_path)
    monkeypatch.setattr(embedded_redis, "RECORD", tmp_path / "embedded-redis.json")
    monkeypatch.delenv("REDIS_URL", raising=False)
    with Stack(web_port=None, worker_concurrency=0, share_broker=True) as stack:
        # A lone command in the same checkout (REDIS_URL unset) finds make up's server, not a new one.
        monkeypatch.delenv("REDIS_URL", raising=False)
        assert broker_url() == stack.redis_url
        port = stack.redis.port
    # Stopped: the record is gone with the server, and the next lone command starts its own.
    assert not (tmp_path / "embedded-redis.json").exists()
    assert not ping(port)


def test_embedded_redis_is_a_real_server_and_stops():
    with EmbeddedRedis() as server:
        import redis

        client = redis.Redis.from_url(server.url)
        client.set("answer", 42)
        assert client.get("answer") == b"42"
        port = server.port
    assert not ping(port)


def test_broker_url_prefers_redis_url(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6379/3")
    assert broker_url() == "redis://example.invalid:6379/3"
    assert os.environ["REDIS_URL"] == "redis://example.invalid:6379/3"


# What `manage.py up` does after start-up: Stack.wait() until Ctrl-C or a death.
STACK_WITH_ONLY_ITS_BROKER = """
import sys
import time
from webapp.stack import Stack

stack = Stack(web_port=None, worker_concurrency=0).start()
print(stack.redis.process.pid, flush=True)
sys.exit(stack.wait())
"""


def test_the_stack_stops_and_fails_when_its_embedded_redis_dies():
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}  # so it starts its own
    stack = subprocess.Popen(
        [sys.executable, "-c", STACK_WITH_ONLY_ITS_BROKER], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        redis_pid = int(stack.stdout.readline())
        os.kill(redis_pid, signal.SIGKILL)
        _, stderr = stack.communicate(timeout=60)
    finally:
        stack.kill()
    # It noticed, said which process died and why that matters, and exited non-zero.
    assert stack.returncode == 1, stderr
    assert "stack: the embedded Redis (redis-server on port" in stderr
    assert "exited with status -9; every queued message went with it; stopping" in stderr


def test_stopping_the_stack_leaves_no_process_of_a_child_behind(tmp_path):
    from webapp.stack import Stack

    # A child whose own child ignores SIGTERM: what a gunicorn worker stuck on
    # a lock looks like after its master has gone.
    straggler = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    parent = (
        "import subprocess, sys, time; "
        f"child = subprocess.Popen([sys.executable, '-c', {straggler!r}]); "
        "open(sys.argv[1], 'w').write(str(child.pid)); time.sleep(600)"
    )
    pid_file = tmp_path / "straggler.pid"
    stack = Stack(web_port=None, log_dir=tmp_path)
    stack._env = dict(os.environ)
    stack._spawn("parent", [sys.executable, "-c", parent, str(pid_file)])
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.1)
    straggler_pid = int(pid_file.read_text())

    stack.stop(timeout=5)

    deadline = time.monotonic() + 5  # SIGKILL is sent, not waited for
    while is_running(straggler_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_running(straggler_pid)


def is_running(pid: int) -> bool:
    """Alive and not a zombie waiting for a parent that is not reaping it."""
    try:
        state = next(line for line in open(f"/proc/{pid}/status") if line.startswith("State:"))
    except FileNotFoundError:
        return False
    return "Z" not in state.split()[1]
