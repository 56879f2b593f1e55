"""Run the whole system on one machine: broker, worker pool, web server, Flower.

`manage.py up`, `manage.py demo` and the integration tests all start the
same real processes through this class, so what the tests exercise is what a
user runs. Every child gets the same REDIS_URL; when none is configured, the
embedded redis-server is started first and stopped last.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tasks import embedded_redis, pools
from tasks.embedded_redis import EmbeddedRedis, free_port

BASE_DIR = Path(__file__).resolve().parent.parent
FLOWER_STOP_GRACE_S = 3.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path | None = None
    pool: str | None = None  # "cpu" or "gpu" for Celery workers


@dataclass
class Stack:
    web_port: int | None = 8000
    flower_port: int | None = None
    # The CPU pool: prefork children (0: no CPU pool) consuming `queues`.
    worker_concurrency: int = 1
    queues: str = "infer.cpu"
    # Celery beat, for the periodic purge (celeryconfig.beat_schedule): make up only.
    beat: bool = False
    # The GPU pool: one worker per id, pinned with CUDA_VISIBLE_DEVICES.
    gpu_ids: list[str] = field(default_factory=list)
    gpu_threads: int = 16
    gpu_queue: str = "infer.gpu"
    # Extra environment for every child (tests point DATABASE_URL at their database).
    env: dict[str, str] = field(default_factory=dict)
    # None: children write to this terminal, each line prefixed with its name.
    log_dir: Path | None = None
    # user:password pairs for Flower; None takes settings.FLOWER_BASIC_AUTH.
    flower_basic_auth: list[str] | None = None
    redis: EmbeddedRedis | None = None
    # Record the embedded Redis under var/ while it runs (make up), so commands
    # started beside the stack in this checkout use the same broker.
    share_broker: bool = False
    children: list[Child] = field(default_factory=list)
    # Where web and worker processes keep their Prometheus numbers, so the
    # web's /metrics adds up every worker process's too (tasks/metrics.py).
    metrics_dir: Path | None = None

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def redis_url(self) -> str:
        return self._env["REDIS_URL"]

    def __post_init__(self) -> None:
        self._env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self._control = None

    # --- start ------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> Stack:
        try:
            if not self._env.get("REDIS_URL"):
                self.redis = EmbeddedRedis().start()
                if self.share_broker:
                    embedded_redis.publish(self.redis)
                self._env["REDIS_URL"] = self.redis.url
                # This process talks to the workers too (ping, enqueue): same broker.
                os.environ["REDIS_URL"] = self.redis.url
            if not self._env.get("PROMETHEUS_MULTIPROC_DIR"):
                self.metrics_dir = Path(tempfile.mkdtemp(prefix="vq-metrics-"))
            if self.worker_concurrency > 0:
                self.start_worker()
            if self.gpu_ids:
                self.start_gpu_workers(self.gpu_ids)
            if self.web_port is not None:
                self._spawn("web", self.web_command(), env=self._metrics_env())
            if self.flower_port is not None:
                self.start_flower()
            if self.beat:
                self._spawn("beat", self.beat_command())
            self.wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self, name: str = "worker", concurrency: int | None = None) -> Child:
        """A CPU pool worker: prefork, `concurrency` children."""
        launch = pools.cpu_worker(name, concurrency or self.worker_concurrency or 1, self.queues)
        return self._spawn(launch.name, launch.command, {**self._metrics_env(), **launch.env}, launch.pool)

    def start_gpu_workers(self, gpu_ids: list[str]) -> list[Child]:
        """The GPU pool: one threads-pool worker per GPU id."""
        launches = pools.gpu_workers(gpu_ids, self.gpu_threads, self.gpu_queue, device=self._env.get("VQ_DEVICE"))
        return [
            self._spawn(launch.name, launch.command, {**self._metrics_env(), **launch.env}, launch.pool)
            for launch in launches
        ]

    def worker_command(self, name: str, concurrency: int) -> list[str]:
        return pools.cpu_worker(name, concurrency, self.queues).command

    def web_command(self) -> list[str]:
        return [
            sys.executable, "-m", "gunicorn", "webapp.wsgi:application",
            "--bind", f"127.0.0.1:{self.web_port}",
            "--workers", "2", "--threads", "4", "--timeout", "300",
            "--access-logfile", "-", "--error-logfile", "-",
        ]  # fmt: skip

    def start_flower(self) -> Child:
        return self._spawn("flower", self.flower_command(), env=self.flower_env())

    def flower_command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "tasks", "flower",
            "--address=127.0.0.1", f"--port={self.flower_port}",
        ]  # fmt: skip

    def flower_env(self) -> dict[str, str]:
        """Flower reads FLOWER_* variables itself: the password goes there, not into argv."""
        env = {**self._env}
        env.pop("FLOWER_BASIC_AUTH", None)
        if credentials := self._flower_credentials():
            env["FLOWER_BASIC_AUTH"] = ",".join(credentials)
        return env

    @property
    def flower_has_password(self) -> bool:
        return bool(self._flower_credentials())

    def _flower_credentials(self) -> list[str]:
        if self.flower_basic_auth is not None:
            return self.flower_basic_auth
        from django.conf import settings

        return settings.FLOWER_BASIC_AUTH

    def beat_command(self) -> list[str]:
        schedule = BASE_DIR / "var" / "celerybeat-schedule"
        schedule.parent.mkdir(exist_ok=True)
        return [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO", "--schedule", str(schedule)]

    def _metrics_env(self) -> dict[str, str]:
        """The environment of web and worker processes: they share one metrics folder (not Flower)."""
        if self.metrics_dir is None:
            return self._env
        return {**self._env, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}

    def _spawn(
        self, name: str, command: list[str], env: dict[str, str] | None = None, pool: str | None = None
    ) -> Child:
        """Start a child with `env` (default: the stack's environment); pool marks Celery workers."""
        env = env or self._env
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            output = open(log_path, "ab")  # noqa: SIM115 - the child owns it
            process = subprocess.Popen(
                command, cwd=BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
            output.close()
        else:
            process = subprocess.Popen(
                command, cwd=BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            threading.Thread(target=_prefix_lines, args=(name, process.stdout), daemon=True).start()
        child = Child(name, process, log_path, pool)
        self.children.append(child)
        return child

    # --- readiness --------------------------------------------------------
    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            waiting = [what for what, ready in self._readiness() if not ready]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f} s: {', '.join(waiting)}{self._log_hint()}")
            time.sleep(0.25)

    def _readiness(self):
        if self.web_port is not None:
            yield "web server", _http_ok(f"{self.web_url}/accounts/login/")
        if self.flower_port is not None:
            yield "flower", _http_answers(f"http://127.0.0.1:{self.flower_port}/")
        if self.workers:
            answered = {name for reply in self.ping_workers() for name in reply}
            for child in self.workers:
                yield child.name, any(name.startswith(f"{child.name}-") for name in answered)

    @property
    def workers(self) -> list[Child]:
        return [child for child in self.children if child.pool]

    def ping_workers(self, timeout: float = 1.0) -> list:
        """Ping this stack's workers through its own broker, whatever this process's Celery app uses."""
        if self._control is None:
            from celery import Celery

            self._control = Celery("vq-stack-control", broker=self.redis_url, set_as_current=False)
        # A connection of its own: kombu's pools are shared by URL across apps in this
        # process, and a pooled one may be stale after the broker restarted (the fault tests).
        with self._control.connection_for_write() as connection:
            return self._control.control.ping(timeout=timeout, connection=connection)

    def check_alive(self) -> None:
        """Raise RuntimeError naming the first process of this stack that has exited, Redis included."""
        server = self.redis.process if self.redis is not None else None
        if server is not None and server.poll() is not None:
            # Without its broker nothing can be queued or finished, and the
            # embedded server kept its messages in memory only: they are gone.
            raise RuntimeError(
                f"the embedded Redis (redis-server on port {self.redis.port}) exited with status "
                f"{server.returncode}; every queued message went with it"
            )
        for child in self.children:
            if child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with status {child.process.returncode}{self._log_hint(child)}"
                )

    def _log_hint(self, child: Child | None = None) -> str:
        paths = [c.log_path for c in ([child] if child else self.children) if c.log_path]
        return f" (see {', '.join(map(str, paths))})" if paths else ""

    # --- run and stop -----------------------------------------------------
    def wait(self) -> int:
        """Block until Ctrl-C, SIGTERM or a child's exit; then stop everything."""
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        failure = 0
        while not stop.wait(0.5):
            try:
                self.check_alive()
            except RuntimeError as error:
                print(f"stack: {error}; stopping", file=sys.stderr)
                failure = 1
                break
        self.stop()
        return failure

    def stop(self, timeout: float = 15.0) -> None:
        # Each child leads a process group of its own (start_new_session), so
        # Ctrl-C reaches only this process, which asks each child to stop (a
        # Celery worker lets its batches finish, gunicorn its requests); once
        # the child has gone, a straggler left in its group (a gunicorn worker
        # stuck on a lock after its master left) is killed instead of keeping
        # the port.
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        deadline = started + timeout
        for child in reversed(self.children):
            # Workers get the whole timeout to finish their batches; Flower
            # holds nothing, and with its broker gone it keeps retrying instead
            # of exiting, so it gets a few seconds.
            until = min(deadline, started + FLOWER_STOP_GRACE_S) if child.name == "flower" else deadline
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.1, until - time.monotonic()))
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait()
            _signal_group(child.process, signal.SIGKILL)  # whatever of its group is left
        self.children.clear()
        if self._control is not None:
            self._control.close()
            self._control = None
        if self.metrics_dir is not None:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            self.metrics_dir = None
        if self.redis:
            if self.share_broker:
                embedded_redis.unpublish(self.redis)
            self.redis.stop()
            self.redis = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _prefix_lines(name: str, stream) -> None:
    for raw in iter(stream.readline, b""):
        sys.stdout.write(f"{name:>7} | {raw.decode(errors='replace')}")
        sys.stdout.flush()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _http_answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except urllib.error.HTTPError:
        return True  # 401 from basic auth still means it is up
    except OSError:
        return False


__all__ = ["Stack", "free_port"]
