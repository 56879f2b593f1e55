"""Worker pools: a CPU pool and a GPU pool at once, jobs routed by model.

No GPU here, so the GPU pool is rehearsed with VQ_DEVICE=cpu: the same
launcher, the same processes (one threads-pool worker per GPU id, pinned with
CUDA_VISIBLE_DEVICES, consuming infer.gpu), only the model runs on the CPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ml import Classifier, load_pixels
from tasks.pools import cpu_pool_size, cpu_worker, gpu_workers, visible_gpus
from tests.conftest import REPO
from tests.live import all_results, api_session, stack_on_test_database, wait_for_job

# --- the launcher's command lines (no processes) ---------------------------


def test_one_gpu_worker_per_gpu_each_pinned_to_its_own():
    launches = gpu_workers(["0", "3"], threads=16, queue="infer.gpu")
    assert [launch.name for launch in launches] == ["gpu0", "gpu3"]
    for launch, gpu in zip(launches, ["0", "3"]):
        # Pinned before the process starts, so CUDA is first touched inside it.
        assert launch.env["CUDA_VISIBLE_DEVICES"] == gpu
        assert launch.env["VQ_DEVICE"] == "cuda"
        # One process per GPU running tasks in threads, never a forking pool.
        command = " ".join(launch.command)
        assert "--pool threads --concurrency 16" in command
        assert "--queues infer.gpu" in command
        # Torch's host threads stay off the CPU pool's cores.
        assert launch.env["VQ_TORCH_THREADS"] == "1"


def test_the_cpu_pool_is_prefork_with_one_model_per_child():
    command = " ".join(cpu_worker("worker", processes=2, queue="infer.cpu").command)
    assert "--pool prefork --concurrency 2" in command
    assert "--queues infer.cpu" in command
    # Zero means one child per core.
    assert cpu_pool_size(0, cores=2) == 2
    assert cpu_pool_size(3, cores=2) == 3


def test_visible_gpus_come_from_cuda_visible_devices_without_touching_cuda():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == ["0", "1"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_the_launchers_never_import_torch_so_cuda_is_first_touched_in_each_worker():
    # A fresh interpreter: this one has torch loaded already.
    probe = (
        "import django, sys; django.setup(); "
        "import webapp.jobs.management.commands.gpu_workers, webapp.jobs.management.commands.up, webapp.urls; "
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# --- both pools running, on real processes --------------------------------


@pytest.fixture(scope="module")
def two_pools(django_db_setup, django_db_blocker, tmp_path_factory):
    """Web + a CPU pool (lite0, lite2) + a rehearsed GPU pool (lite1), at once."""
    env = {
        "VQ_MODEL_QUEUES": "efficientnet-lite1=infer.gpu",
        "VQ_DEVICE": "cpu",
        # Room in every forward pass for crops of several jobs, and a
        # delay long enough that announced crops are always waited for.
        "VQ_CPU_FORWARD_BATCH": "8",
        "VQ_BATCH_DELAY_MS": "3000",
    }
    stack = stack_on_test_database(django_db_blocker, tmp_path_factory, "pools", env=env, gpu_ids=["0"], gpu_threads=8)
    stack.start(timeout=240)
    yield stack
    stack.stop()


def _post(session, stack, paths: list[Path], model: str) -> str:
    files = [("images", (path.name, path.read_bytes(), "image/jpeg")) for path in paths]
    response = session.post(f"{stack.web_url}/api/jobs/", files=files, data={"model": model}, timeout=60)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _log(stack, name: str) -> str:
    child = next(child for child in stack.children if child.name == name)
    return child.log_path.read_text(errors="replace")


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in raw if b"=" in entry)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_each_job_goes_to_the_pool_that_serves_its_model(two_pools, alice, photos):
    session = api_session(alice, two_pools)
    chosen = photos[5:11]
    paths = [photo.path for photo in chosen]
    lite0_job = _post(session, two_pools, paths, "efficientnet-lite0")
    lite1_job = _post(session, two_pools, paths, "efficientnet-lite1")
    assert wait_for_job(session, lite0_job, stack=two_pools)["succeeded"] == 6
    assert wait_for_job(session, lite1_job, stack=two_pools)["succeeded"] == 6

    # Lite1 ran at its own input size (240) and agrees with the ml package.
    lite1 = Classifier("efficientnet-lite1", device="cpu")
    expected = lite1.predict([load_pixels(photo.path, lite1.spec) for photo in chosen])
    results = all_results(session, lite1_job)
    assert [r["predictions"][0]["class_index"] for r in results] == [e[0].class_index for e in expected]

    cpu_log, gpu_log = _log(two_pools, "worker"), _log(two_pools, "gpu0")
    # Each pool warmed up, at start, the models routed to its queue, and only those.
    assert "model efficientnet-lite1 loaded" in gpu_log
    assert "model efficientnet-lite0 loaded" not in gpu_log
    assert "model efficientnet-lite0 loaded" in cpu_log and "model efficientnet-lite2 loaded" in cpu_log
    assert "model efficientnet-lite1 loaded" not in cpu_log
    # And each job's batches ran in the pool that serves its model.
    assert "batch done: model=efficientnet-lite1" in gpu_log
    assert "batch done: model=efficientnet-lite1" not in cpu_log
    assert "batch done: model=efficientnet-lite0" in cpu_log

    # The GPU worker is one process, pinned to its GPU; the CPU pool forks.
    gpu_worker = next(child for child in two_pools.children if child.name == "gpu0")
    assert _environ(gpu_worker.process.pid)["CUDA_VISIBLE_DEVICES"] == "0"
    assert "--pool threads" in " ".join(gpu_worker.process.args)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_single_image_jobs_of_different_users_share_forward_passes(two_pools, alice, bob, photos):
    from tasks.celery_app import app

    [gpu_worker] = [name for reply in two_pools.ping_workers() for name in reply if name.startswith("gpu0-")]
    # The GPU worker stops taking messages while eight users each send one image ...
    app.control.cancel_consumer("infer.gpu", destination=[gpu_worker], reply=True, timeout=10)
    jobs = []
    for index, user in enumerate([alice, bob] * 4):
        session = api_session(user, two_pools)
        jobs.append((session, _post(session, two_pools, [photos[20 + index].path], "efficientnet-lite1")))
    # ... then takes them all at once, one task per thread.
    app.control.add_consumer("infer.gpu", destination=[gpu_worker], reply=True, timeout=10)
    for session, job_id in jobs:
        assert wait_for_job(session, job_id, stack=two_pools)["succeeded"] == 1

    sizes = [
        int(size)
        for line in _log(two_pools, "gpu0").splitlines()
        if "batch done: model=efficientnet-lite1 items=1 " in line
        for size in re.findall(r"forwards=(\d+)x", line)
    ]
    # Eight one-image tasks, and crops of different jobs shared forward passes.
    assert len(sizes) == 8
    assert max(sizes) > 1, sizes
