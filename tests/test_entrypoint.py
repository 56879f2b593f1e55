"""docker/entrypoint.py's roles, each started for real on this machine (no Docker engine runs here).

Every process talks to this test run's broker and database; workers listen on
a queue of their own, so they never take another test's batches.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, database_url
from webapp.stack import free_port

pytestmark = pytest.mark.integration

ENTRYPOINT = REPO / "docker" / "entrypoint.py"


@pytest.fixture
def test_db_url(django_db_setup, django_db_blocker) -> str:
    from django.db import connection

    with django_db_blocker.unblock():
        return database_url(connection.settings_dict)


@pytest.fixture
def role(tmp_path):
    """role(name, **env) starts `entrypoint.py name` in the background; all are stopped afterwards."""
    started: list[subprocess.Popen] = []

    def start(name: str, **env: str) -> subprocess.Popen:
        log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        process = subprocess.Popen(
            [sys.executable, str(ENTRYPOINT), name], env=role_env(**env), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        process.log_path = tmp_path / f"{name}.log"
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def role_env(**env: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "VQ_WAIT_SECONDS": "20", **env}


def healthcheck(name: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT), "healthcheck", name],
        env=role_env(**env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def until_healthy(
    process: subprocess.Popen, name: str, timeout: float = 120, started: str = "", times: int = 1, **env: str
) -> None:
    """Wait for the role's start-up line (cheap to watch), then for its healthcheck to pass."""
    deadline = time.monotonic() + timeout
    while started and process.log_path.read_text().count(started) < times:
        assert process.poll() is None, f"{name} exited ({process.returncode}): {process.log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{name} never logged {started!r}"
        time.sleep(0.2)
    while (check := healthcheck(name, **env)).returncode != 0:
        assert process.poll() is None, f"{name} exited ({process.returncode}): {process.log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{name} not healthy: {check.stdout}{check.stderr}"
        time.sleep(1)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    process.send_signal(sig)
    return process.wait(timeout=60)


def test_migrate_role_creates_a_fresh_database_and_is_idempotent(tmp_path, test_db_url):
    fresh = tmp_path / "fresh.sqlite3"
    env = role_env(DATABASE_URL=f"sqlite:///{fresh}")
    first = subprocess.run([sys.executable, str(ENTRYPOINT), "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "Applying jobs.0001_initial... OK" in first.stdout
    tables = {row[0] for row in sqlite3.connect(fresh).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs_job", "jobs_item", "auth_user", "django_migrations"} <= tables

    # On this run's own database (PostgreSQL in CI's second pass: the advisory lock path).
    again = subprocess.run([sys.executable, str(ENTRYPOINT), "migrate"], env=role_env(DATABASE_URL=test_db_url),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "No migrations to apply." in again.stdout


def test_web_role_migrates_then_serves(role, tmp_path):
    port = free_port()
    fresh = tmp_path / "web.sqlite3"
    web = role("web", PORT=str(port), BIND_ADDRESS="127.0.0.1", WEB_CONCURRENCY="1", DATABASE_URL=f"sqlite:///{fresh}")
    until_healthy(web, "web", started="Booting worker", PORT=str(port))
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json() == {"status": "ok"}
    log = web.log_path.read_text()
    # It migrated the empty database before gunicorn started.
    assert log.index("Applying jobs.0001_initial... OK") < log.index("entrypoint: web: ")
    assert "gunicorn webapp.wsgi:application" in log
    assert stop(web) == 0


def test_cpu_worker_role_answers_pings_and_serves_metrics(role, tmp_path, test_db_url):
    metrics_port = free_port()
    worker = role(
        "cpu-worker",
        DATABASE_URL=test_db_url,
        VQ_QUEUES=f"test-{uuid.uuid4().hex[:8]}",
        VQ_WORKER_MODELS="",  # no model to load: this is about the process, not inference
        VQ_METRICS_PORT=str(metrics_port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    until_healthy(worker, "cpu-worker", started=" ready.")
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "--pool prefork" in worker.log_path.read_text()
    assert stop(worker) == 0


def test_gpu_worker_role_without_a_gpu_says_so(test_db_url):
    env = {k: v for k, v in role_env(DATABASE_URL=test_db_url).items() if k not in ("VQ_GPU_IDS", "CUDA_VISIBLE_DEVICES")}
    env["PATH"] = str(Path(sys.executable).parent)  # no nvidia-smi on it
    result = subprocess.run([sys.executable, str(ENTRYPOINT), "gpu-worker"], env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 3
    assert "no GPU is visible" in result.stderr


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in raw if b"=" in entry)


def test_gpu_worker_role_runs_one_pinned_worker_per_gpu_and_stops_with_any(role, tmp_path, test_db_url):
    # Two "GPUs" on a CPU machine: the pool's shape is real, the device is not.
    env = dict(
        DATABASE_URL=test_db_url,
        VQ_GPU_IDS="0,1",
        VQ_DEVICE="cpu",
        VQ_WORKER_MODELS="",
        VQ_QUEUES=f"test-{uuid.uuid4().hex[:8]}",
        VQ_METRICS_PORT=str(free_port()),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    pool = role("gpu-worker", **env)
    # The healthcheck wants both gpu0@host and gpu1@host to answer.
    until_healthy(pool, "gpu-worker", started=" ready.", times=2, VQ_GPU_IDS="0,1")
    workers = children_of(pool.pid)
    assert len(workers) == 2
    pinned = sorted(environ_of(pid)["CUDA_VISIBLE_DEVICES"] for pid in workers)
    assert pinned == ["0", "1"]
    # tasks.pools' GPU workers: a threads pool each, one torch thread (the GPU does the work).
    assert [environ_of(pid)["VQ_TORCH_THREADS"] for pid in workers] == ["1", "1"]
    assert all("--pool threads" in " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0")) for pid in workers)
    assert requests.get(f"http://127.0.0.1:{env['VQ_METRICS_PORT']}/metrics", timeout=10).status_code == 200

    # One worker dies: the pool stops the other and exits non-zero, so the container restarts whole.
    os.kill(workers[0], signal.SIGKILL)
    assert pool.wait(timeout=60) != 0
    assert "stopping the pool" in pool.log_path.read_text()
    assert not any(Path(f"/proc/{pid}").exists() and "celery" in Path(f"/proc/{pid}/cmdline").read_text()
                   for pid in workers)  # fmt: skip


def test_beat_role_runs_and_reports_healthy(role, tmp_path, test_db_url):
    files = dict(VQ_BEAT_SCHEDULE=str(tmp_path / "beat-schedule"), VQ_BEAT_PIDFILE=str(tmp_path / "beat.pid"))
    beat = role("beat", DATABASE_URL=test_db_url, **files)
    until_healthy(beat, "beat", started="beat: Starting", **files)
    assert stop(beat) == 0
    # Once it is gone, the healthcheck says so.
    assert healthcheck("beat", **files).returncode == 1


def test_flower_role_serves_its_ui_behind_basic_auth(role, test_db_url):
    port = free_port()
    flower = role("flower", FLOWER_PORT=str(port), BIND_ADDRESS="127.0.0.1", FLOWER_BASIC_AUTH="admin:pw",
                  DATABASE_URL=test_db_url)  # fmt: skip
    until_healthy(flower, "flower", started="Visit me at", FLOWER_PORT=str(port))
    assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 401
    assert requests.get(f"http://127.0.0.1:{port}/", auth=("admin", "pw"), timeout=10).status_code == 200
    assert "flower_" in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    # The password reaches Flower through its environment, never its command line (ps shows that).
    assert "admin:pw" not in Path(f"/proc/{flower.pid}/cmdline").read_text()


def test_other_commands_run_as_given():
    result = subprocess.run([sys.executable, str(ENTRYPOINT), sys.executable, "-c", "print('as given')"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "as given"
