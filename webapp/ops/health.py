"""Liveness and readiness checks: cheap, and the answers name no host, URL or error.

Details of a failed check go to the log, where operators look, not to callers.
"""

from __future__ import annotations

import logging
import threading

import redis
from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)

# Set for VQ_READY_WORKER_MAX_AGE seconds after a worker answered a ping, in the
# broker's Redis, so every web process shares one answer and pings rarely.
WORKER_ANSWERED_KEY = "vq:ready:worker-answered"
# Seconds to wait for a worker's pong; only paid when no answer is remembered.
PING_TIMEOUT = 0.5

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def broker_url() -> str:
    from tasks.celery_app import app

    return app.conf.broker_url


def broker_client() -> redis.Redis:
    """A Redis client for the broker with short timeouts, one pool per URL and process."""
    url = broker_url()
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = _clients[url] = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    return client


def database_ready() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        log.warning("readiness: the database does not answer", exc_info=True)
        return False


def broker_ready() -> bool:
    try:
        return bool(broker_client().ping())
    except redis.RedisError:
        log.warning("readiness: the broker does not answer", exc_info=True)
        return False


def worker_answered() -> bool:
    """True when some worker answered a ping within VQ_READY_WORKER_MAX_AGE seconds."""
    from tasks.celery_app import app

    client = broker_client()
    try:
        if client.exists(WORKER_ANSWERED_KEY):
            return True
        if not app.control.ping(timeout=PING_TIMEOUT, limit=1):
            log.warning("readiness: no worker answered a ping within %.1f s", PING_TIMEOUT)
            return False
        client.set(WORKER_ANSWERED_KEY, "1", ex=settings.VQ_READY_WORKER_MAX_AGE)
        return True
    except Exception:
        log.warning("readiness: pinging the workers failed", exc_info=True)
        return False


def readiness() -> dict[str, bool]:
    """Each check by name; the broker-dependent ones are skipped (False) when the broker is down."""
    checks = {"database": database_ready(), "broker": broker_ready()}
    if settings.VQ_READY_REQUIRES_WORKER:
        checks["workers"] = checks["broker"] and worker_answered()
    return checks
