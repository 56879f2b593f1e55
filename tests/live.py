"""Helpers for tests that run the real system: processes on the test database, and its HTTP API."""

from __future__ import annotations

import time

import requests

from webapp.stack import Stack, free_port


def stack_on_test_database(django_db_blocker, tmp_path_factory, name: str, env: dict | None = None, **options) -> Stack:
    """An unstarted Stack whose processes use this run's test database and a media folder of their own.

    `options` go to Stack (worker_concurrency, gpu_ids, flower_port, ...); `env`
    adds to every process's environment. The media folder is `stack.media_root`.
    """
    from django.db import connection

    from tests.conftest import database_url

    media = tmp_path_factory.mktemp(f"{name}-media")
    with django_db_blocker.unblock():
        database = database_url(connection.settings_dict)
    options.setdefault("web_port", free_port())
    stack = Stack(
        log_dir=tmp_path_factory.mktemp(f"{name}-logs"),
        env={"DATABASE_URL": database, "MEDIA_ROOT": str(media), **(env or {})},
        **options,
    )
    stack.media_root = media
    return stack


def api_session(user, stack: Stack) -> requests.Session:
    """A requests session that calls the stack's API as `user`; `session.base` is the web URL."""
    from tests.conftest import token_for

    session = requests.Session()
    session.headers["Authorization"] = f"Token {token_for(user)}"
    session.base = stack.web_url
    return session


def wait_for_job(session: requests.Session, job_id: str, timeout: float = 180, stack: Stack | None = None) -> dict:
    """Poll the job until it is done or cancelled; fail if a process of `stack` dies meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if stack is not None:
            stack.check_alive()
        status = session.get(f"{session.base}/api/jobs/{job_id}/", timeout=10).json()
        if status["status"] in ("done", "cancelled"):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} not finished after {timeout} s: {status}")
        time.sleep(0.3)


def all_results(session: requests.Session, job_id: str) -> list[dict]:
    """Every page of the job's results, in upload order."""
    results, url = [], f"{session.base}/api/jobs/{job_id}/results/"
    while url:
        page = session.get(url, timeout=10).json()
        results += page["results"]
        url = page["next"]
    return results
