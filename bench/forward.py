"""F, the forward limit: the model alone on pre-made input tensors.

Every arrangement the machine allows is tried, in the same run: batch sizes,
memory layouts, and, on a CPU, one process using every core against one
single-threaded process per core (all running at once, images counted
together). F is the best of them. No decoding, no Python per image: this is
the ceiling any serving system on this machine lives under.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import asdict, dataclass

CPU_BATCHES = (1, 2, 4, 8, 16)
GPU_BATCHES = (1, 8, 32, 64, 128, 256)


@dataclass(frozen=True)
class ForwardResult:
    processes: int
    threads: int
    batch: int
    layout: str  # "channels_last" or "contiguous"
    precision: str  # "fp32", "float16", "bfloat16"
    images_per_s: float
    ms_per_batch: float

    def as_dict(self) -> dict:
        return asdict(self)


def _autocast_dtype(precision: str):
    import torch

    return {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(precision)


def _measure_in_process(
    model: str, device: str, threads: int, configs: list[tuple[int, str, str]], seconds: float, barrier, results
) -> None:
    """One process: for each (batch, layout, precision), run forward passes for `seconds`."""
    import numpy as np
    import torch

    from ml import Classifier

    torch.set_num_threads(threads)
    networks = {}
    for batch, layout, precision in configs:
        key = (layout, precision)
        if key not in networks:
            networks[key] = Classifier(
                model, device=device, channels_last=layout == "channels_last", autocast_dtype=_autocast_dtype(precision)
            )
        classifier = networks[key]
        size = classifier.spec.input_size
        crops = np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
        inputs = classifier.to_input(crops)
        sync = torch.cuda.synchronize if classifier.device.type == "cuda" else (lambda: None)

        def forward():
            if classifier.autocast_dtype is not None:
                with torch.autocast(classifier.device.type, dtype=classifier.autocast_dtype):
                    return classifier.network(inputs)
            return classifier.network(inputs)

        with torch.inference_mode():
            for _ in range(3):
                forward()
            sync()
            barrier.wait()
            count, started = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - started) < seconds or count < 3:
                forward()
                count += 1
            sync()
            elapsed = time.perf_counter() - started
        results.put((batch, layout, precision, count * batch, elapsed))
        barrier.wait()


def measure(
    model: str,
    device: str,
    seconds: float = 1.5,
    batches: tuple[int, ...] | None = None,
    gpu_precision: str = "float16",
    only: tuple[int, int, str, str] | None = None,
    log=print,
) -> list[ForwardResult]:
    """Every arrangement's throughput, fastest first.

    On a GPU both the system's mixed precision (gpu_precision) and fp32 are
    tried; on a CPU only fp32 (autocast does not pay there).
    """
    cores = len(os.sched_getaffinity(0))
    gpu = device.startswith("cuda")
    batches = batches or (GPU_BATCHES if gpu else CPU_BATCHES)
    layouts = ("channels_last", "contiguous")
    if gpu:
        precisions = tuple(dict.fromkeys([gpu_precision if gpu_precision != "off" else "fp32", "fp32"]))
        arrangements = [(1, 1)]
    else:
        precisions = ("fp32",)
        # One process with every core, and one single-threaded process per core.
        arrangements = list(dict.fromkeys([(1, cores), (cores, 1)]))
    if only is not None:  # one arrangement, layout and precision
        arrangements, layouts, precisions = [only[:2]], (only[2],), (only[3],)
    configs = [(b, layout, p) for p in precisions for layout in layouts for b in batches]
    context = multiprocessing.get_context("spawn")
    found: list[ForwardResult] = []
    for processes, threads in arrangements:
        barrier = context.Barrier(processes)
        results = context.Queue()
        workers = [
            context.Process(
                target=_measure_in_process, args=(model, device, threads, configs, seconds, barrier, results)
            )
            for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        totals: dict[tuple, list[tuple[int, float]]] = {}
        for _ in range(processes * len(configs)):
            batch, layout, precision, images, elapsed = results.get(timeout=600)
            totals.setdefault((batch, layout, precision), []).append((images, elapsed))
        for worker in workers:
            worker.join(timeout=60)
        for (batch, layout, precision), runs in totals.items():
            rate = sum(images / elapsed for images, elapsed in runs)
            per_batch_ms = 1000 * sum(elapsed / (images / batch) for images, elapsed in runs) / len(runs)
            result = ForwardResult(processes, threads, batch, layout, precision, round(rate, 1), round(per_batch_ms, 2))
            found.append(result)
            log(
                f"  F  {processes} proc x {threads} thr  batch {batch:>3}  {layout:<13} {precision:<8} "
                f"{rate:7.1f} img/s  {per_batch_ms:7.1f} ms/batch"
            )
    return sorted(found, key=lambda r: -r.images_per_s)


def batch1_forward_ms(results: list[ForwardResult]) -> float:
    """The model's batch-1 forward time: the fastest one-image forward pass measured."""
    return min(r.ms_per_batch for r in results if r.batch == 1)


def suggest(results: list[ForwardResult], cpu_processes: int, cores: int) -> dict:
    """The batch size and layout F found best for the arrangement the pool runs."""
    mixed = [r for r in results if r.precision != "fp32"]
    if mixed:  # a GPU run: the system uses mixed precision there
        best = max(mixed, key=lambda r: r.images_per_s)
        return {"VQ_GPU_FORWARD_BATCH": best.batch, "VQ_GPU_CHANNELS_LAST": best.layout == "channels_last"}
    threads = max(1, cores // max(1, cpu_processes))
    mine = [r for r in results if r.processes == max(1, cpu_processes) and r.threads == threads] or results
    best = max(mine, key=lambda r: r.images_per_s)
    return {"VQ_CPU_FORWARD_BATCH": best.batch, "VQ_CPU_CHANNELS_LAST": best.layout == "channels_last"}
