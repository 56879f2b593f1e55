#!/usr/bin/env python3
"""Container entrypoint: wait for the database and broker, migrate, start one role.

    entrypoint.py web          migrate (one migrator at a time), then gunicorn on $PORT (8000)
    entrypoint.py cpu-worker   a prefork Celery worker on $VQ_QUEUES (infer.cpu)
    entrypoint.py gpu-worker   one Celery worker per visible GPU on $VQ_QUEUES (infer.gpu), tasks.pools
    entrypoint.py beat         Celery beat (periodic tasks)
    entrypoint.py flower       Flower on $FLOWER_PORT (5555)
    entrypoint.py migrate      migrate and exit (a Kubernetes Job, a deploy step)
    entrypoint.py healthcheck ROLE   exit 0 when this container's ROLE is healthy
    entrypoint.py COMMAND ...  anything else runs as given (manage.py createsuperuser, a shell)

Workers serve their pool's Prometheus metrics on $VQ_METRICS_PORT when it is
set (docker/compose.yaml and k8s/ set 9808). Every role runs on a plain
checkout too: the tests start each one on this machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent
# Any fixed number: every migrating process takes the same PostgreSQL advisory lock.
MIGRATION_LOCK_ID = 7_270_215

ROLES = ("web", "cpu-worker", "gpu-worker", "beat", "flower", "migrate")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    role, args = argv[0], argv[1:]
    os.chdir(APP_DIR)
    sys.path.insert(0, str(APP_DIR))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    if role == "healthcheck":
        return healthcheck(args[0] if args else "web")
    if role not in ROLES:
        os.execvp(role, [role, *args])  # a plain command: run it as given
    if role in ("cpu-worker", "gpu-worker"):
        prepare_metrics_dir()
    wait_for_services(need_database=role != "flower")
    if role in ("web", "migrate") and env_bool("VQ_MIGRATE", True):
        migrate()
    if role == "migrate":
        return 0
    if role == "gpu-worker":
        return run_gpu_pool(args)
    command = {"web": web_command, "cpu-worker": cpu_worker_command, "beat": beat_command, "flower": flower_command}
    argv = command[role]() + args
    print(f"entrypoint: {role}: {' '.join(argv)}", flush=True)
    os.execvp(argv[0], argv)


# --- settings -----------------------------------------------------------------
def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"entrypoint: {name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"entrypoint: {name} must be a whole number, not {value!r}") from None


def prepare_metrics_dir() -> None:
    """prometheus_client's multiprocess folder: set before any Python child starts, emptied at start."""
    path = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "/tmp/vq-metrics"))
    path.mkdir(parents=True, exist_ok=True)
    # Files from a previous run of this container would be added to this run's numbers.
    for stale in path.glob("*.db"):
        stale.unlink()


# --- start-up -----------------------------------------------------------------
def wait_for_services(need_database: bool = True) -> None:
    """Wait up to VQ_WAIT_SECONDS (60) for the broker and the database to answer."""
    import django

    django.setup()
    from django.db import connection
    from django.db.utils import OperationalError

    from webapp.ops import health

    deadline = time.monotonic() + env_int("VQ_WAIT_SECONDS", 60)
    waiting = ["broker", "database"] if need_database else ["broker"]
    while waiting:
        if "broker" in waiting and health.broker_ready():
            waiting.remove("broker")
        if "database" in waiting:
            try:
                connection.ensure_connection()
                waiting.remove("database")
            except OperationalError:
                pass
        if waiting and time.monotonic() > deadline:
            raise SystemExit(f"entrypoint: gave up waiting for the {' and the '.join(waiting)}")
        if waiting:
            time.sleep(1)
    connection.close()


def migrate() -> None:
    """Apply migrations; on PostgreSQL one process at a time, so replicas starting together are safe."""
    from django.core.management import call_command
    from django.db import connection

    locked = connection.vendor == "postgresql"
    if locked:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_ID])
    try:
        call_command("migrate", interactive=False, verbosity=1)
    finally:
        if locked:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_ID])
        connection.close()


# --- the commands -------------------------------------------------------------
def web_command() -> list[str]:
    # gunicorn reads WEB_CONCURRENCY (worker processes) and FORWARDED_ALLOW_IPS itself.
    command = [
        sys.executable, "-m", "gunicorn", "webapp.wsgi:application",
        "--bind", f"{os.environ.get('BIND_ADDRESS', '0.0.0.0')}:{env_int('PORT', 8000)}",
        "--threads", str(env_int("WEB_THREADS", 4)),
        # Uploads of thousands of files take a while; a slow client must not kill its worker.
        "--timeout", str(env_int("WEB_TIMEOUT", 300)),
        "--graceful-timeout", "30",
        "--access-logfile", "-", "--error-logfile", "-",
    ]  # fmt: skip
    if os.path.isdir("/dev/shm"):
        # Heartbeat files on a container's overlay filesystem can stall workers; memory never does.
        command += ["--worker-tmp-dir", "/dev/shm"]
    return command


def cpu_worker_command() -> list[str]:
    from tasks import pools

    queue = os.environ.get("VQ_QUEUES", "infer.cpu")
    loglevel = os.environ.get("LOG_LEVEL", "INFO")
    return pools.cpu_worker("cpu", env_int("VQ_WORKER_CONCURRENCY", 1), queue, loglevel).command


def beat_command() -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", os.environ.get("LOG_LEVEL", "INFO"),
        "--schedule", os.environ.get("VQ_BEAT_SCHEDULE", "/tmp/celerybeat-schedule"),
        "--pidfile", beat_pidfile(),
    ]  # fmt: skip


def beat_pidfile() -> str:
    return os.environ.get("VQ_BEAT_PIDFILE", "/tmp/celerybeat.pid")


def flower_command() -> list[str]:
    # Flower reads FLOWER_BASIC_AUTH from the environment itself: the password stays out of argv.
    return [
        sys.executable, "-m", "celery", "-A", "tasks", "flower",
        f"--address={os.environ.get('BIND_ADDRESS', '0.0.0.0')}", f"--port={flower_port()}",
    ]  # fmt: skip


def flower_port() -> int:
    return env_int("FLOWER_PORT", 5555)


# --- the GPU pool -------------------------------------------------------------
def visible_gpus() -> list[str]:
    """GPU ids to run a worker on: VQ_GPU_IDS, else what tasks.pools finds (CUDA_VISIBLE_DEVICES, nvidia-smi).

    Found without touching CUDA, so no CUDA state exists in a process that starts others.
    """
    if ids := os.environ.get("VQ_GPU_IDS", "").strip():
        return [gpu.strip() for gpu in ids.split(",") if gpu.strip()]
    from tasks import pools

    return pools.visible_gpus()


def run_gpu_pool(args: list[str]) -> int:
    """Run tasks.pools' GPU pool under supervision; if one worker exits, stop all and exit.

    One threads-pool worker per GPU, each seeing only its own; the container
    restarts whole. This process serves the pool's metrics.
    """
    from django.conf import settings

    from tasks import pools

    gpus = visible_gpus()
    if not gpus:
        print("entrypoint: gpu-worker: no GPU is visible (no VQ_GPU_IDS, CUDA_VISIBLE_DEVICES or nvidia-smi)",
              file=sys.stderr)  # fmt: skip
        return 3
    launches = pools.gpu_workers(
        gpus, settings.VQ_GPU_WORKER_THREADS, os.environ.get("VQ_QUEUES", settings.VQ_GPU_QUEUE),
        device=os.environ.get("VQ_DEVICE"), loglevel=os.environ.get("LOG_LEVEL", "INFO"),
    )  # fmt: skip
    children: list[subprocess.Popen] = []
    for launch in launches:
        # The pool's metrics are served once, from here, for all of its workers.
        env = {**os.environ, **launch.env, "VQ_METRICS_PORT": "0"}
        print(f"entrypoint: gpu-worker {launch.name}: CUDA_VISIBLE_DEVICES={launch.env['CUDA_VISIBLE_DEVICES']} "
              f"{' '.join(launch.command + args)}", flush=True)  # fmt: skip
        children.append(subprocess.Popen(launch.command + args, env=env))

    if port := env_int("VQ_METRICS_PORT", 0):
        from tasks.metrics import serve_metrics

        serve_metrics(port)

    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for child in children:
            if child.poll() is not None:
                if not stopping:
                    print(f"entrypoint: gpu-worker pid {child.pid} exited ({child.returncode}); stopping the pool",
                          file=sys.stderr, flush=True)  # fmt: skip
                    stop(signal.SIGTERM, None)
                for other in children:
                    try:
                        other.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        other.kill()
                return 0 if stopping and child.returncode in (0, -signal.SIGTERM) else child.returncode or 1
        time.sleep(0.5)


# --- health -------------------------------------------------------------------
def healthcheck(role: str) -> int:
    """0 when this container's role answers; used by compose healthchecks and exec probes."""
    try:
        healthy = {
            "web": lambda: http_ok(f"http://127.0.0.1:{env_int('PORT', 8000)}/healthz"),
            "cpu-worker": lambda: workers_answer(["cpu"]),
            "gpu-worker": lambda: workers_answer([f"gpu{gpu}" for gpu in visible_gpus()]),
            "beat": beat_alive,
            "flower": lambda: http_ok(f"http://127.0.0.1:{flower_port()}/healthcheck"),
        }[role]()
    except KeyError:
        print(f"entrypoint: no healthcheck for {role!r}; roles: web, cpu-worker, gpu-worker, beat, flower")
        return 2
    print("healthy" if healthy else "unhealthy")
    return 0 if healthy else 1


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def workers_answer(names: list[str]) -> bool:
    """Every named worker of this container ("<name>-<pid>@<this host>", tasks.pools) answers a ping."""
    if not names:
        return False
    import django

    django.setup()
    from tasks.celery_app import app

    host = socket.gethostname()
    replies = app.control.ping(timeout=float(os.environ.get("VQ_PING_TIMEOUT", "3")))
    answered = [name for reply in replies for name in reply if name.endswith(f"@{host}")]
    return all(any(node.startswith(f"{name}-") for node in answered) for name in names)


def beat_alive() -> bool:
    """Beat's process is running and the broker it publishes to answers."""
    try:
        pid = int(Path(beat_pidfile()).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    import django

    django.setup()
    from webapp.ops import health

    return health.broker_ready()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
