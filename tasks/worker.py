"""Worker process start-up: torch threads, device, and models loaded once.

Prefork children (the CPU pool) load their models in worker_process_init,
after the fork, so no model memory or CUDA state crosses a fork. Solo and
threads pools (a GPU worker, see tasks.pools) run tasks in the main process
and load there, in worker_init; the GPU launcher sets CUDA_VISIBLE_DEVICES
before that process starts, so CUDA is first touched inside it.

Each model gets a MicroBatcher (ml.batching): the tasks running in this
process hand it their crops as they are decoded, and its thread runs the
forward passes, batched and laid out as the device class's settings say.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from celery.signals import worker_init, worker_process_init
from django.conf import settings

from ml import Classifier
from ml.batching import MicroBatcher
from ml.device import choose_device, device_class
from tasks.metrics import timed_forward
from tasks.pools import cpu_cores

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "off": None, "": None}


@dataclass(frozen=True)
class DeviceProfile:
    """How one device class runs the model, from settings chosen by measurement."""

    forward_batch: int
    channels_last: bool
    autocast_dtype: torch.dtype | None


@dataclass
class ModelRuntime:
    classifier: Classifier
    batcher: MicroBatcher


_runtimes: dict[str, ModelRuntime] = {}
# Threads-pool workers may ask for the same model at once: load it once.
_loading = threading.Lock()
_decode_pool: ThreadPoolExecutor | None = None


def device_profile(device: torch.device) -> DeviceProfile:
    if device_class(device) == "gpu":
        name = settings.VQ_GPU_AUTOCAST.lower()
        if name not in AUTOCAST_DTYPES:
            raise ValueError(f"VQ_GPU_AUTOCAST={name!r}: use float16, bfloat16 or off")
        return DeviceProfile(settings.VQ_GPU_FORWARD_BATCH, settings.VQ_GPU_CHANNELS_LAST, AUTOCAST_DTYPES[name])
    return DeviceProfile(settings.VQ_CPU_FORWARD_BATCH, settings.VQ_CPU_CHANNELS_LAST, None)


def runtime_for(model_name: str) -> ModelRuntime:
    """This process's classifier and batcher for the model, loaded on first use only."""
    runtime = _runtimes.get(model_name)
    if runtime is None:
        with _loading:
            runtime = _runtimes.get(model_name)
            if runtime is None:
                runtime = _runtimes[model_name] = _load(model_name)
    return runtime


def classifier_for(model_name: str) -> Classifier:
    return runtime_for(model_name).classifier


def decode_pool() -> ThreadPoolExecutor:
    """Threads that decode images while the model runs (Pillow releases the GIL).

    Made on first use, inside the process that uses it, never before a fork.
    """
    global _decode_pool
    if _decode_pool is None:
        with _loading:
            if _decode_pool is None:
                _decode_pool = ThreadPoolExecutor(max_workers=decode_threads(), thread_name_prefix="decode")
    return _decode_pool


def decode_threads() -> int:
    if settings.VQ_DECODE_THREADS > 0:
        return settings.VQ_DECODE_THREADS
    gpu_workers = int(os.environ.get("VQ_GPU_WORKERS") or 0)
    if gpu_workers:
        return max(2, cpu_cores() // gpu_workers)
    return 2


def _load(model_name: str) -> ModelRuntime:
    started = time.perf_counter()
    device = choose_device(settings.VQ_DEVICE)
    profile = device_profile(device)
    classifier = Classifier(
        model_name, device=device, channels_last=profile.channels_last, autocast_dtype=profile.autocast_dtype
    )
    # Warm up at both batch sizes the batcher will use most, so the first
    # real batch of either shape does not pay for lazy set-up.
    classifier.warm_up(batch_size=1)
    if profile.forward_batch > 1:
        classifier.warm_up(batch_size=profile.forward_batch)
    batcher = MicroBatcher(
        timed_forward(classifier.predict, model_name, device),
        max_batch=profile.forward_batch,
        max_delay=settings.VQ_BATCH_DELAY_MS / 1000,
        name=f"forward-{model_name}",
    )
    log.info(
        "model %s loaded on %s in %.2f s (pid %d, %d torch threads, forward batch %d, %s, autocast %s)",
        model_name, device, time.perf_counter() - started, os.getpid(), torch.get_num_threads(),
        profile.forward_batch, "channels_last" if profile.channels_last else "contiguous",
        profile.autocast_dtype or "off",
    )  # fmt: skip
    return ModelRuntime(classifier, batcher)


def torch_threads_per_process(concurrency: int) -> int:
    """Threads so that processes x threads never exceeds the cores we may use."""
    if settings.VQ_TORCH_THREADS:
        return settings.VQ_TORCH_THREADS
    return max(1, cpu_cores() // max(1, concurrency))


def models_to_load() -> list[str]:
    """VQ_WORKER_MODELS, else every model routed to the queues this worker consumes."""
    if settings.VQ_WORKER_MODELS:
        return list(settings.VQ_WORKER_MODELS)
    from tasks.routing import models_for_queues

    queues = [q for q in os.environ.get("VQ_WORKER_QUEUES_RESOLVED", "").split(",") if q]
    return models_for_queues(queues or [settings.VQ_DEFAULT_QUEUE])


def _prepare_process() -> None:
    threads = int(os.environ.get("VQ_TORCH_THREADS_RESOLVED") or torch_threads_per_process(1))
    torch.set_num_threads(threads)
    for model_name in models_to_load():
        runtime_for(model_name)


@worker_init.connect
def _on_worker_init(sender=None, **_) -> None:
    concurrency = getattr(sender, "concurrency", 1) or 1
    pool = getattr(sender, "pool_cls", None)
    forks = "prefork" in str(getattr(pool, "__module__", pool))
    # Children inherit the environment, so they learn their share of the cores
    # and the queues (hence the models) this worker serves.
    os.environ["VQ_TORCH_THREADS_RESOLVED"] = str(torch_threads_per_process(concurrency if forks else 1))
    app = getattr(sender, "app", None)
    if app is not None:
        os.environ["VQ_WORKER_QUEUES_RESOLVED"] = ",".join(sorted(app.amqp.queues.consume_from))
    if not forks:
        _prepare_process()


@worker_process_init.connect
def _on_worker_process_init(**_) -> None:
    _prepare_process()
