"""Worker process start-up: torch threads, device, and models loaded once.

Prefork children load their models in worker_process_init, after the fork, so
no model memory or CUDA state crosses a fork. Solo and thread pools run tasks
in the main process and load there, in worker_init.
"""

from __future__ import annotations

import logging
import os
import time

import torch
from celery.signals import worker_init, worker_process_init
from django.conf import settings

from ml import Classifier

log = logging.getLogger(__name__)

_classifiers: dict[str, Classifier] = {}


def classifier_for(model_name: str) -> Classifier:
    """This process's classifier for the model, loaded on first use only."""
    classifier = _classifiers.get(model_name)
    if classifier is None:
        classifier = _classifiers[model_name] = _load(model_name)
    return classifier


def _load(model_name: str) -> Classifier:
    started = time.perf_counter()
    classifier = Classifier(model_name, device=settings.VQ_DEVICE)
    classifier.warm_up(batch_size=settings.VQ_BATCH_SIZE)
    log.info(
        "model %s loaded on %s in %.2f s (pid %d, %d torch threads)",
        model_name, classifier.device, time.perf_counter() - started, os.getpid(), torch.get_num_threads(),
    )  # fmt: skip
    return classifier


def torch_threads_per_process(concurrency: int) -> int:
    """Threads so that processes x threads never exceeds the cores we may use."""
    if settings.VQ_TORCH_THREADS:
        return settings.VQ_TORCH_THREADS
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, concurrency))


def _prepare_process() -> None:
    torch.set_num_threads(int(os.environ.get("VQ_TORCH_THREADS_RESOLVED") or torch_threads_per_process(1)))
    for model_name in settings.VQ_WORKER_MODELS:
        classifier_for(model_name)


@worker_init.connect
def _on_worker_init(sender=None, **_) -> None:
    concurrency = getattr(sender, "concurrency", 1) or 1
    pool = getattr(sender, "pool_cls", None)
    forks = "prefork" in str(getattr(pool, "__module__", pool))
    # Children inherit the environment, so they learn their share of the cores.
    os.environ["VQ_TORCH_THREADS_RESOLVED"] = str(torch_threads_per_process(concurrency if forks else 1))
    if not forks:
        _prepare_process()


@worker_process_init.connect
def _on_worker_process_init(**_) -> None:
    _prepare_process()
