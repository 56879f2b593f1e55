"""ml.batching.MicroBatcher: crops from concurrent callers share forward passes.

These tests count forward passes and their sizes; none measures time. A
"never" (a batch that must not wait) is checked with a delay of a minute:
were the batcher to wait for it, the test would hit its timeout and fail.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ml.batching import BatcherClosed, MicroBatcher

A_MINUTE = 60.0


class RecordingForward:
    """A stand-in model: returns each crop's first pixel, and remembers batch sizes."""

    def __init__(self, gate: threading.Event | None = None):
        self.sizes: list[int] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, batch: np.ndarray) -> list[int]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=A_MINUTE)
        self.sizes.append(len(batch))
        return [int(crop[0, 0, 0]) for crop in batch]


def crop(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, dtype=np.uint8)


@pytest.fixture
def make_batcher():
    made = []

    def make(forward, max_batch=4, max_delay=A_MINUTE):
        batcher = MicroBatcher(forward, max_batch=max_batch, max_delay=max_delay)
        made.append(batcher)
        return batcher

    yield make
    for batcher in made:
        batcher.close(timeout=5)


@pytest.mark.timeout(30)
def test_a_lone_caller_is_not_kept_waiting_for_company(make_batcher):
    forward = RecordingForward()
    batcher = make_batcher(forward, max_batch=8)
    # Three crops announced, three sent: nothing else is coming, so the
    # batch runs at once although it is not full and the delay is a minute.
    assert batcher.predict([crop(1), crop(2), crop(3)]) == [1, 2, 3]
    assert forward.sizes == [3]


@pytest.mark.timeout(30)
def test_crops_of_concurrent_callers_share_one_forward_pass(make_batcher):
    forward = RecordingForward()
    batcher = make_batcher(forward, max_batch=4)
    # Alice announces two crops and sends one; the batcher waits for her
    # second (the delay is a minute) and meanwhile bob's crop arrives.
    with batcher.producer(expected=2) as alice:
        first = alice.submit(crop(10))
        with batcher.producer(expected=1) as bob:
            bobs = bob.submit(crop(20))
        assert forward.sizes == []
        second = alice.submit(crop(11))
    assert [first.result()[0], second.result()[0], bobs.result()[0]] == [10, 11, 20]
    # One forward pass for all three, and each crop knows it.
    assert forward.sizes == [3]
    assert {future.result()[1].size for future in (first, second, bobs)} == {3}


@pytest.mark.timeout(30)
def test_a_full_batch_runs_without_waiting_for_the_rest(make_batcher):
    forward = RecordingForward()
    batcher = make_batcher(forward, max_batch=2)
    with batcher.producer(expected=5) as caller:
        futures = [caller.submit(crop(value)) for value in range(4)]
        # Four of five sent: two full batches ran; the fifth never comes.
        assert [future.result()[0] for future in futures] == [0, 1, 2, 3]
        assert forward.sizes == [2, 2]


@pytest.mark.timeout(30)
def test_withdrawn_crops_are_not_waited_for(make_batcher):
    forward = RecordingForward()
    batcher = make_batcher(forward, max_batch=8)
    with batcher.producer(expected=3) as caller:
        sent = caller.submit(crop(7))
        # The other two files failed to decode.
        caller.withdraw(2)
        assert sent.result()[0] == 7
    assert forward.sizes == [1]


@pytest.mark.timeout(30)
def test_the_delay_bounds_the_wait_for_a_caller_that_never_sends(make_batcher):
    forward = RecordingForward()
    batcher = make_batcher(forward, max_batch=8, max_delay=0.05)
    with batcher.producer(expected=1):  # announced, never sent
        with batcher.producer(expected=1) as other:
            result, info = other.submit(crop(5)).result(timeout=A_MINUTE / 2)
    assert result == 5
    assert info.size == 1
    assert forward.sizes == [1]


@pytest.mark.timeout(30)
def test_crops_queue_behind_a_running_forward_pass_and_then_go_together(make_batcher):
    gate = threading.Event()
    forward = RecordingForward(gate)
    batcher = make_batcher(forward, max_batch=8, max_delay=0)
    first = batcher.submit(crop(1))  # runs alone, blocked on the gate
    assert forward.entered.wait(timeout=A_MINUTE / 2)
    later = [batcher.submit(crop(value)) for value in (2, 3, 4)]
    gate.set()
    assert [f.result()[0] for f in [first, *later]] == [1, 2, 3, 4]
    assert forward.sizes == [1, 3]


@pytest.mark.timeout(30)
def test_a_failing_forward_pass_fails_only_its_callers(make_batcher):
    calls = []

    def forward(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return [0] * len(batch)

    batcher = make_batcher(forward, max_batch=4, max_delay=0)
    failed = batcher.submit(crop(1))
    with pytest.raises(RuntimeError, match="out of memory"):
        failed.result()
    # The batcher goes on serving.
    assert batcher.submit(crop(2)).result()[0] == 0


@pytest.mark.timeout(30)
def test_many_threads_each_get_their_own_answers(make_batcher):
    forward = RecordingForward()
    batcher = make_batcher(forward, max_batch=4, max_delay=0.002)
    answers: dict[int, list[int]] = {}

    def caller(index: int) -> None:
        values = [index * 10 + k for k in range(3)]
        answers[index] = batcher.predict([crop(v) for v in values])

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {i: [i * 10, i * 10 + 1, i * 10 + 2] for i in range(16)}
    assert sum(forward.sizes) == 48
    assert max(forward.sizes) <= 4


def test_a_closed_batcher_refuses_new_work(make_batcher):
    batcher = make_batcher(RecordingForward())
    batcher.close(timeout=5)
    with pytest.raises(BatcherClosed):
        batcher.submit(crop(1))
