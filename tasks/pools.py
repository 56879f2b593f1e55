"""Worker pools per device class: the command lines that start them.

- CPU pool: one Celery worker, prefork, consuming infer.cpu. Each child loads
  its models after the fork and gets cores / children torch threads, so the
  pool never runs more torch threads than there are cores.
- GPU pool: one Celery worker per visible GPU, consuming infer.gpu, each
  pinned to its GPU with CUDA_VISIBLE_DEVICES and running a threads pool in
  one process: its tasks' crops meet in that process's batcher, and CUDA is
  first touched inside it (never in a process that forks, never here).

Both can run at once; a job goes to the queue of the pool that serves its
model (tasks.routing). webapp.stack starts these commands for `make up`, the
demo, the benchmark and the tests; `manage.py gpu_workers` starts the GPU
pool alone on a GPU machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

CPU_POOL = "cpu"
GPU_POOL = "gpu"


@dataclass(frozen=True)
class WorkerLaunch:
    """One Celery worker process to start: its name, command line and extra environment."""

    name: str
    pool: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)


def _celery_worker(name: str, queues: str, pool: str, concurrency: int, loglevel: str) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "tasks", "worker",
        "--queues", queues,
        "--pool", pool, "--concurrency", str(concurrency),
        # The parent's pid keeps names unique when several stacks share a broker.
        "--hostname", f"{name}-{os.getpid()}@%h",
        "--task-events", "--loglevel", loglevel, "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def cpu_worker(name: str, processes: int, queue: str, loglevel: str = "INFO") -> WorkerLaunch:
    """The CPU pool: prefork with `processes` children, each with its own models."""
    return WorkerLaunch(name, CPU_POOL, _celery_worker(name, queue, "prefork", processes, loglevel))


def gpu_workers(
    gpu_ids: list[str], threads: int, queue: str, device: str | None = None, loglevel: str = "INFO"
) -> list[WorkerLaunch]:
    """The GPU pool: one threads-pool worker per GPU, pinned with CUDA_VISIBLE_DEVICES.

    `device` is what each worker passes to VQ_DEVICE: "cuda" (its one visible
    GPU) unless the operator chose otherwise; VQ_DEVICE=cpu rehearses the
    pool's processes and routing on a machine without a GPU.
    """
    if device in (None, "", "auto"):
        device = "cuda"
    launches = []
    for gpu in gpu_ids:
        env = {
            "CUDA_VISIBLE_DEVICES": gpu,
            "VQ_DEVICE": device,
            # The model runs on the GPU: one CPU thread for torch's host-side
            # work, so GPU workers never crowd the CPU pool's cores.
            "VQ_TORCH_THREADS": "1",
            # Each GPU worker decodes with its share of the cores.
            "VQ_GPU_WORKERS": str(len(gpu_ids)),
        }
        name = f"gpu{gpu}"
        launches.append(WorkerLaunch(name, GPU_POOL, _celery_worker(name, queue, "threads", threads, loglevel), env))
    return launches


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """GPU ids this machine offers, found without initialising CUDA in this process.

    CUDA_VISIBLE_DEVICES when it is set (empty or -1 means none); otherwise
    what `nvidia-smi` lists; otherwise none.
    """
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        ids = [part.strip() for part in environ["CUDA_VISIBLE_DEVICES"].split(",") if part.strip()]
        return [] if ids[:1] == ["-1"] else ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listing = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listing.returncode != 0:
        return []
    return [line.strip() for line in listing.stdout.splitlines() if line.strip().isdigit()]


def cpu_cores() -> int:
    """Cores this process may run on (its affinity, which containers narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_pool_size(requested: int, cores: int) -> int:
    """Prefork children for the CPU pool: as asked, or one per core when 0."""
    return requested if requested > 0 else max(1, cores)
