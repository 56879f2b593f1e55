"""Everything measured on the running system, through its API.

Server-side timestamps come from the database the system writes (Job
created_at, Item started_at / finished_at); the client's clock is the same
machine's, so "first request to last stored result" is one timeline.
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.db.models import Max, Min
from PIL import Image

from bench.client import Client
from bench.procs import RssSampler, cpu_seconds, machine_idle_seconds, memory_mb, tree
from webapp.jobs.models import Item, Job
from webapp.stack import Stack

FORWARDS = re.compile(r"forwards=(\S+) held_max=([\d.]+)ms")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def cycle(paths: list[Path], count: int) -> list[Path]:
    return [paths[i % len(paths)] for i in range(count)]


@dataclass
class SystemBench:
    stack: Stack
    client: Client
    model: str
    log: Callable[[str], None] = print
    results: dict = field(default_factory=dict)

    # --- helpers ------------------------------------------------------------
    def post(self, paths: list[Path], client: Client | None = None) -> str:
        files = [(path.name, path) for path in paths]
        return (client or self.client).post_job(files, model=self.model)["id"]

    def wait_done(self, job_ids: list[str], timeout: float = 1800) -> None:
        deadline = time.monotonic() + timeout
        while Job.objects.filter(pk__in=job_ids, status__in=Job.OPEN_STATUSES).exists():
            self.stack.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs not finished after {timeout:.0f} s")
            # Times come from the database's timestamps, not from this loop:
            # poll gently, the CPU belongs to the system under test.
            time.sleep(0.05)

    def last_finished(self, job_ids: list[str]) -> float:
        return Item.objects.filter(job_id__in=job_ids).aggregate(last=Max("finished_at"))["last"].timestamp()

    def failed(self, job_ids: list[str]) -> int:
        return Item.objects.filter(job_id__in=job_ids).exclude(status=Item.Status.SUCCEEDED).count()

    def worker_log_offsets(self) -> dict[str, int]:
        return {c.name: c.log_path.stat().st_size for c in self.stack.workers if c.log_path}

    def forwards_since(self, offsets: dict[str, int]) -> tuple[dict[int, int], float]:
        """Crops per forward-pass size, and the longest batching hold, from worker logs."""
        sizes: dict[int, int] = {}
        held = 0.0
        for child in self.stack.workers:
            with open(child.log_path, "rb") as handle:
                handle.seek(offsets.get(child.name, 0))
                text = handle.read().decode(errors="replace")
            for described, held_ms in FORWARDS.findall(text):
                held = max(held, float(held_ms))
                for part in described.split("+"):
                    if "x" in part:
                        size, count = part.split("x")
                        sizes[int(size)] = sizes.get(int(size), 0) + int(count)
        return sizes, held

    # --- phases -------------------------------------------------------------
    def warm_up(self, paths: list[Path]) -> None:
        job = self.post(cycle(paths, 16))
        self.wait_done([job])

    def latency(self, paths: list[Path], samples: int) -> dict:
        """One image at a time on an idle system: job created -> result stored."""
        total, queued = [], []
        for index in range(samples):
            job_id = self.post([paths[index % len(paths)]])
            self.wait_done([job_id])
            created = Job.objects.get(pk=job_id).created_at
            item = Item.objects.get(job_id=job_id)
            total.append((item.finished_at - created).total_seconds() * 1000)
            queued.append((item.started_at - created).total_seconds() * 1000)
            time.sleep(0.05)
        result = {
            "samples": samples,
            "p50_ms": round(percentile(total, 50), 1),
            "p95_ms": round(percentile(total, 95), 1),
            "queue_p50_ms": round(percentile(queued, 50), 1),
        }
        self.log(f"  latency  p50 {result['p50_ms']} ms  p95 {result['p95_ms']} ms  (to claim: p50 {result['queue_p50_ms']} ms)")
        return result

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds used so far by the web server's and the workers' process trees."""
        roles: dict[str, list[int]] = {}
        for child in self.stack.children:
            role = "web" if child.name == "web" else "workers" if child.pool else None
            if role:
                roles.setdefault(role, []).extend(tree(child.process.pid))
        used = {role: cpu_seconds(pids) for role, pids in roles.items()}
        # The benchmark's own clients and polling run on the same cores.
        used["bench"] = cpu_seconds([os.getpid()])
        # Left idle: what nobody used. The rest went to other processes.
        used["idle"] = machine_idle_seconds()
        return used

    def throughput(self, paths: list[Path], upload_chunk: int) -> dict:
        """S: the files through the API, first request to last stored result."""
        cpu_before = self.cpu_by_role()
        started = time.time()
        job_ids = [self.post(paths[i : i + upload_chunk]) for i in range(0, len(paths), upload_chunk)]
        uploaded = time.time()
        self.wait_done(job_ids)
        elapsed = self.last_finished(job_ids) - started
        cpu_after = self.cpu_by_role()
        result = {
            "images": len(paths),
            # Where the machine's CPU went during the run (the rest: idle, or other processes).
            "cpu_s": {role: round(cpu_after[role] - cpu_before.get(role, 0), 1) for role in cpu_after},
            "cpu_available_s": round(elapsed * len(os.sched_getaffinity(0)), 1),
            "upload_chunk": upload_chunk,
            "requests": len(job_ids),
            "upload_s": round(uploaded - started, 2),
            "seconds": round(elapsed, 2),
            "images_per_s": round(len(paths) / elapsed, 1),
            "failed": self.failed(job_ids),
            "job_ids": job_ids,
        }
        self.log(
            f"  S        {result['images_per_s']} img/s  ({len(paths)} images, {len(job_ids)} uploads, {elapsed:.1f} s; "
            f"CPU s used: {result['cpu_s']} of {result['cpu_available_s']})"
        )
        return result

    def concurrent_clients(self, paths: list[Path], clients: int, token: str) -> dict:
        """Many users, each sending one image per job, all at once."""
        offsets = self.worker_log_offsets()
        job_ids: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()

        def user(share: list[Path]) -> None:
            client = Client(self.client.web_url, token)
            try:
                for path in share:
                    job_id = self.post([path], client)
                    with lock:
                        job_ids.append(job_id)
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(str(error))

        threads = [threading.Thread(target=user, args=(paths[i::clients],)) for i in range(clients)]
        cpu_before = self.cpu_by_role()
        started = time.time()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"{len(errors)} clients failed: {errors[0]}")
        self.wait_done(job_ids)
        elapsed = self.last_finished(job_ids) - started
        sizes, held = self.forwards_since(offsets)
        cpu_after = self.cpu_by_role()
        result = {
            "clients": clients,
            "cpu_s": {role: round(cpu_after[role] - cpu_before.get(role, 0), 1) for role in cpu_after},
            "cpu_available_s": round(elapsed * len(os.sched_getaffinity(0)), 1),
            "images": len(job_ids),
            "seconds": round(elapsed, 2),
            "images_per_s": round(len(job_ids) / elapsed, 1),
            "forward_sizes": {str(k): v for k, v in sorted(sizes.items())},
            "held_max_ms": held,
            "failed": self.failed(job_ids),
        }
        self.log(
            f"  {clients} clients  {result['images_per_s']} img/s  forwards (size: crops) {result['forward_sizes']}  "
            f"longest hold {held:.1f} ms; CPU s used: {result['cpu_s']} of {result['cpu_available_s']}"
        )
        return result

    def memory_over_a_big_job(self, paths: list[Path]) -> dict:
        """One job of len(paths) images in one streamed request; worker RSS sampled throughout."""
        sampler = RssSampler({child.name: child.process.pid for child in self.stack.workers}).start()
        started = time.time()
        job_id = self.post(paths)
        uploaded = time.time()
        self.wait_done([job_id])
        sampler.stop()
        first = Item.objects.filter(job_id=job_id).aggregate(first=Min("finished_at"))["first"].timestamp()
        elapsed = self.last_finished([job_id]) - started
        per_process = {}
        for role in {child.name for child in self.stack.workers}:
            for pid, series in sampler.series(role, since=first).items():
                if series:
                    per_process[f"{role}:{pid}"] = {
                        "min_mb": round(min(series)),
                        "max_mb": round(max(series)),
                        "growth_mb": round(series[-1] - series[0]),
                    }
        result = {
            "images": len(paths),
            "upload_s": round(uploaded - started, 2),
            "seconds": round(elapsed, 2),
            "images_per_s": round(len(paths) / elapsed, 1),
            "failed": self.failed([job_id]),
            "worker_rss": per_process,
            "worker_rss_max_mb": max((p["max_mb"] for p in per_process.values()), default=0),
            "worker_rss_spread_mb": max((p["max_mb"] - p["min_mb"] for p in per_process.values()), default=0),
        }
        self.log(
            f"  {len(paths)}-image job  {result['images_per_s']} img/s, worker RSS max {result['worker_rss_max_mb']} MB, "
            f"spread {result['worker_rss_spread_mb']} MB while it ran"
        )
        return result

    def scale(self, folder: Path, count: int) -> dict:
        """A job of `count` small generated images: enqueue, status and pagination times."""
        from webapp.jobs.services import cancel

        files = make_small_images(folder, count)
        web_log = next(c.log_path for c in self.stack.children if c.name == "web")
        started = time.perf_counter()
        job_id = self.post(files)
        request_s = time.perf_counter() - started
        enqueue_ms = _enqueue_ms(web_log, job_id)

        status_ms = []
        for _ in range(30):
            t = time.perf_counter()
            self.client.get(f"/api/jobs/{job_id}/")
            status_ms.append((time.perf_counter() - t) * 1000)
            time.sleep(0.05)
        pages = {}
        last_page = -(-count // 100)
        for page in (1, last_page // 2, last_page):
            timings = []
            for _ in range(5):
                t = time.perf_counter()
                body = self.client.get(f"/api/jobs/{job_id}/results/?page={page}&page_size=100").json()
                timings.append((time.perf_counter() - t) * 1000)
            assert body["count"] == count and len(body["results"]) > 0
            pages[str(page)] = round(statistics.median(timings), 1)
        done = Job.objects.get(pk=job_id).finished_count
        cancel(Job.objects.get(pk=job_id))  # the counts and timings are what this phase is for
        result = {
            "images": count,
            "request_s": round(request_s, 2),
            "enqueue_ms": enqueue_ms,
            "status_p50_ms": round(percentile(status_ms, 50), 1),
            "status_p95_ms": round(percentile(status_ms, 95), 1),
            "status_max_ms": round(max(status_ms), 1),
            "results_page_ms": pages,
            "finished_while_measuring": done,
        }
        self.log(
            f"  {count}-image job  upload+check+store+enqueue {request_s:.1f} s (enqueue {enqueue_ms} ms), "
            f"status p50 {result['status_p50_ms']} ms max {result['status_max_ms']} ms, results pages {pages} ms"
        )
        return result

    def peak_rss(self) -> dict:
        peaks = {}
        for child in self.stack.children:
            if child.name == "flower":
                continue
            values = [memory_mb(pid, "VmHWM") for pid in tree(child.process.pid)]
            values = [v for v in values if v is not None]
            peaks[child.name] = {"max_process_mb": round(max(values, default=0)), "processes": len(values)}
        return peaks


def make_small_images(folder: Path, count: int) -> list[Path]:
    """count small JPEGs, each different (a gradient and a colour), made once per folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"small-{index:05d}.jpg" for index in range(count)]
    ramp = np.linspace(0, 255, 96, dtype=np.uint8)
    for index, path in enumerate(paths):
        if path.exists():
            continue
        pixels = np.zeros((96, 96, 3), dtype=np.uint8)
        pixels[..., 0] = ramp[None, :]
        pixels[..., 1] = ramp[:, None]
        pixels[..., 2] = (index * 37) % 256
        Image.fromarray(pixels).save(path, quality=85)
    return paths


def _enqueue_ms(web_log: Path, job_id: str) -> float | None:
    pattern = re.compile(rf"job {job_id} enqueued: .* in ([\d.]+) ms")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        match = pattern.search(web_log.read_text(errors="replace"))
        if match:
            return float(match.group(1))
        time.sleep(0.1)
    return None
