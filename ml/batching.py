"""Dynamic batching: crops from many concurrent callers, one forward pass.

A worker process that runs several tasks at once (a GPU worker's thread pool)
gets each task's crops here; one thread gathers them into batches of up to
`max_batch` and runs the forward pass, so many users each sending one image
still fill the accelerator. A process that runs one task at a time (a prefork
child) uses the same path: its decode threads keep producing crops while this
thread runs the forward pass, so decoding and inference overlap.

The batcher waits for company only when company is on its way: callers
announce how many crops they will send (`producer(expected=n)`), and once
every announced crop has arrived, or the batch is full, the forward pass
starts at once. Otherwise the oldest crop waits at most `max_delay` seconds
after the forward thread became free.

No Django, no Celery: `forward` is any callable from an (N, H, W, 3) uint8
array to N results, such as `Classifier.predict`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchInfo:
    """How a crop was batched: the size of its forward pass and its batching wait."""

    size: int
    forward_ms: float
    # Time the crop was held waiting for company while the forward thread was
    # free: never more than max_delay (plus scheduling jitter).
    held_ms: float


@dataclass
class _Pending:
    crop: np.ndarray
    future: Future
    submitted: float = field(default_factory=time.perf_counter)


class BatcherClosed(RuntimeError):
    """The batcher was shut down; nothing more is accepted."""


class MicroBatcher:
    """Gathers crops from concurrent callers into forward passes on one thread."""

    def __init__(
        self,
        forward: Callable[[np.ndarray], Sequence],
        max_batch: int,
        max_delay: float,
        name: str = "batcher",
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.forward = forward
        self.max_batch = max_batch
        self.max_delay = max(0.0, max_delay)
        self._lock = threading.Condition()
        self._pending: deque[_Pending] = deque()
        # Crops that open producers have announced but not sent yet.
        self._announced = 0
        self._closed = False
        self.batches_run = 0
        self.crops_run = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- callers ----------------------------------------------------------
    def producer(self, expected: int) -> Producer:
        """A caller that will send up to `expected` crops; use it as a context manager."""
        return Producer(self, expected)

    def submit(self, crop: np.ndarray) -> Future:
        """Queue one (H, W, 3) crop; the future gives (result, BatchInfo)."""
        return self._submit(crop, announced=False)

    def predict(self, crops: Sequence[np.ndarray]) -> list:
        """Convenience for one caller: every crop's result, in order."""
        with self.producer(len(crops)) as producer:
            futures = [producer.submit(crop) for crop in crops]
        return [future.result()[0] for future in futures]

    def _submit(self, crop: np.ndarray, announced: bool) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosed("the batcher is closed")
            if announced:
                self._announced -= 1
            self._pending.append(_Pending(crop, future))
            self._lock.notify()
        return future

    def _announce(self, count: int) -> None:
        with self._lock:
            self._announced += count
            self._lock.notify()

    # --- the forward thread -----------------------------------------------
    def _run(self) -> None:
        free_since = time.perf_counter()
        while True:
            with self._lock:
                batch = self._take_batch(free_since)
                if batch is None:
                    return
            free_since = self._forward(batch, free_since)

    def _take_batch(self, free_since: float) -> list[_Pending] | None:
        """Wait (holding the lock) until a batch is due; None once closed and drained."""
        while True:
            if self._pending:
                full = len(self._pending) >= self.max_batch
                nothing_coming = self._announced <= 0
                waited_from = max(self._pending[0].submitted, free_since)
                remaining = self.max_delay - (time.perf_counter() - waited_from)
                if full or nothing_coming or remaining <= 0 or self._closed:
                    count = min(self.max_batch, len(self._pending))
                    return [self._pending.popleft() for _ in range(count)]
                self._lock.wait(timeout=remaining)
            elif self._closed:
                return None
            else:
                self._lock.wait()

    def _forward(self, batch: list[_Pending], free_since: float) -> float:
        started = time.perf_counter()
        live = [entry for entry in batch if entry.future.set_running_or_notify_cancel()]
        if live:
            try:
                results = self.forward(np.stack([entry.crop for entry in live]))
                if len(results) != len(live):
                    raise RuntimeError(f"forward returned {len(results)} results for {len(live)} crops")
            except BaseException as error:  # noqa: BLE001 - handed to every caller of this batch
                for entry in live:
                    entry.future.set_exception(error)
            else:
                forward_ms = (time.perf_counter() - started) * 1000
                for entry, result in zip(live, results):
                    held_ms = (started - max(entry.submitted, free_since)) * 1000
                    entry.future.set_result((result, BatchInfo(len(live), round(forward_ms, 2), round(held_ms, 2))))
                self.batches_run += 1
                self.crops_run += len(live)
        return time.perf_counter()

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the forward thread."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self._thread.join(timeout)


class Producer:
    """One caller's announced crops: the batcher waits for them, and only for them."""

    def __init__(self, batcher: MicroBatcher, expected: int):
        self.batcher = batcher
        self.expected = max(0, expected)
        self._left = self.expected

    def __enter__(self) -> Producer:
        self.batcher._announce(self._left)
        return self

    def submit(self, crop: np.ndarray) -> Future:
        if self._left <= 0:
            return self.batcher.submit(crop)
        self._left -= 1
        return self.batcher._submit(crop, announced=True)

    def withdraw(self, count: int = 1) -> None:
        """Announced crops that will not come (a file that failed to decode)."""
        count = min(count, self._left)
        if count > 0:
            self._left -= count
            self.batcher._announce(-count)

    def __exit__(self, *exc_info) -> None:
        self.withdraw(self._left)
