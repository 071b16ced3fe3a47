"""The micro-batcher with a fake model: no TensorFlow, no HTTP."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from app.batching import (
    BatcherClosedError,
    BatchFailedError,
    DeadlineExceededError,
    MicroBatcher,
    QueueFullError,
    RequestTooLargeError,
)


class FakeModel:
    """Doubles its inputs; records every batch it sees; can be slowed down or made to fail."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[np.ndarray] = []
        self.failing_calls: set[int] = set()  # 0-based indexes of the calls that raise
        self.release = threading.Event()
        self.release.set()
        self.entered = 0  # calls that have started, released or not
        self._lock = threading.Lock()

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        with self._lock:
            self.entered += 1
        self.release.wait(10)
        self.batches.append(inputs.copy())
        if self.delay_s:
            time.sleep(self.delay_s)
        if len(self.batches) - 1 in self.failing_calls:
            raise RuntimeError("boom")
        return inputs * 2

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]

    @property
    def seen(self) -> set[float]:
        return {float(v) for b in self.batches for v in b.ravel()}


class Recorder:
    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.failed = 0

    def queue_depth(self, instances: int) -> None:
        assert instances >= 0

    def batch_done(self, instances: int, seconds: float, ok: bool) -> None:
        self.batch_sizes.append(instances)
        self.failed += not ok


async def started(model: FakeModel, **kwargs) -> MicroBatcher:
    batcher = MicroBatcher("fake", model, **kwargs)
    batcher.start()
    return batcher


def instances(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float64)


async def test_concurrent_requests_get_their_own_answers_in_order() -> None:
    model = FakeModel(delay_s=0.01)
    batcher = await started(model, max_batch_size=16)
    sizes = [1, 3, 2, 5, 1, 4] * 5
    starts = np.cumsum([0, *sizes[:-1]]) * 10
    results = await asyncio.gather(
        *(batcher.predict(instances(int(s), n)) for s, n in zip(starts, sizes, strict=True))
    )
    for s, n, result in zip(starts, sizes, results, strict=True):
        np.testing.assert_array_equal(result, instances(int(s), n) * 2)
    assert sum(model.sizes) == sum(sizes)
    assert max(model.sizes) > 1, "concurrent requests should share model calls"
    assert max(model.sizes) <= 16
    await batcher.close()


async def test_busy_model_accumulates_newcomers_into_one_call() -> None:
    model = FakeModel()
    recorder = Recorder()
    batcher = await started(model, max_batch_size=64, observer=recorder)
    model.release.clear()  # the first call blocks until released
    first = asyncio.create_task(batcher.predict(instances(0, 1)))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(batcher.predict(instances(100 + i, 1))) for i in range(20)]
    await asyncio.sleep(0.05)
    model.release.set()
    await asyncio.gather(first, *rest)
    assert model.sizes == [1, 20]
    assert recorder.batch_sizes == [1, 20]
    await batcher.close()


async def test_up_to_max_concurrent_batches_calls_run_at_once() -> None:
    model = FakeModel()
    batcher = await started(model, max_batch_size=64, max_concurrent_batches=2)
    model.release.clear()  # every call blocks until released
    first = asyncio.create_task(batcher.predict(instances(0, 1)))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(batcher.predict(instances(10, 2)))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(batcher.predict(instances(100 + i, 1))) for i in range(5)]
    await asyncio.sleep(0.05)
    # Two calls are inside the model; the newcomers wait for the first free one, together.
    assert model.entered == 2
    assert batcher.queued == 5
    closing = asyncio.create_task(batcher.close())  # answers everything in flight and queued
    model.release.set()
    results = await asyncio.gather(first, second, *rest)
    await closing
    np.testing.assert_array_equal(results[1], instances(10, 2) * 2)
    assert sorted(model.sizes) == [1, 2, 5]
    assert model.entered == 3


async def test_lone_request_runs_at_once_without_delay() -> None:
    model = FakeModel()
    batcher = await started(model, max_batch_delay_s=0.0)
    started_at = time.perf_counter()
    for _ in range(20):
        await batcher.predict(instances(0, 1))
    per_request = (time.perf_counter() - started_at) / 20
    # No timer between an idle worker and a lone request: far below any plausible batching delay.
    assert per_request < 0.05
    assert model.sizes == [1] * 20
    await batcher.close()


async def test_batch_delay_waits_for_a_fuller_batch() -> None:
    model = FakeModel()
    batcher = await started(model, max_batch_size=8, max_batch_delay_s=0.2)

    async def staggered(i: int) -> np.ndarray:
        await asyncio.sleep(0.01 * i)
        return await batcher.predict(instances(i, 1))

    await asyncio.gather(*(staggered(i) for i in range(8)))
    assert model.sizes == [8]  # the queue filled up before the delay ran out
    await batcher.close()


async def test_large_request_is_split_at_the_cap_and_reassembled() -> None:
    model = FakeModel()
    batcher = await started(model, max_batch_size=4)
    result = await batcher.predict(instances(0, 10))
    np.testing.assert_array_equal(result, instances(0, 10) * 2)
    assert model.sizes == [4, 4, 2]
    await batcher.close()


async def test_multi_instance_requests_stay_whole_below_the_cap() -> None:
    model = FakeModel()
    batcher = await started(model, max_batch_size=5)
    model.release.clear()
    first = asyncio.create_task(batcher.predict(instances(0, 1)))
    await asyncio.sleep(0.05)
    tasks = [asyncio.create_task(batcher.predict(instances(10 * i, 3))) for i in range(1, 4)]
    await asyncio.sleep(0.05)
    model.release.set()
    await asyncio.gather(first, *tasks)
    assert model.sizes == [1, 3, 3, 3]  # 3 + 3 > 5: never split a 3-instance request
    await batcher.close()


async def test_overload_is_refused_at_once() -> None:
    model = FakeModel()
    batcher = await started(model, max_batch_size=2, max_queue_size=4)
    model.release.clear()
    blocker = asyncio.create_task(batcher.predict(instances(0, 2)))
    await asyncio.sleep(0.05)  # the worker holds the first batch; the queue is empty again
    queued = [asyncio.create_task(batcher.predict(instances(10 + i, 1))) for i in range(4)]
    await asyncio.sleep(0)
    with pytest.raises(QueueFullError):
        await batcher.predict(instances(99, 1))
    with pytest.raises(RequestTooLargeError):
        await batcher.predict(instances(0, 5))
    model.release.set()
    await asyncio.gather(blocker, *queued)
    assert batcher.queued == 0
    await batcher.close()


async def test_request_past_its_deadline_never_reaches_the_model() -> None:
    model = FakeModel()
    batcher = await started(model, timeout_s=0.1)
    model.release.clear()
    blocker = asyncio.create_task(batcher.predict(instances(0, 1)))
    await asyncio.sleep(0.02)
    with pytest.raises(DeadlineExceededError):
        await batcher.predict(instances(777, 1))
    assert batcher.queued == 0
    model.release.set()
    with pytest.raises(DeadlineExceededError):
        await blocker  # its call outlived the deadline too
    assert 777.0 not in model.seen
    await batcher.predict(instances(5, 1))  # and the worker is not wedged
    await batcher.close()


async def test_cancelled_request_is_dropped_from_the_queue() -> None:
    model = FakeModel()
    batcher = await started(model)
    model.release.clear()
    blocker = asyncio.create_task(batcher.predict(instances(0, 1)))
    await asyncio.sleep(0.02)
    gone = asyncio.create_task(batcher.predict(instances(555, 1)))
    await asyncio.sleep(0.02)
    assert batcher.queued == 1
    gone.cancel()  # what a disconnecting client does
    await asyncio.sleep(0)
    assert batcher.queued == 0
    model.release.set()
    await blocker
    await batcher.predict(instances(6, 1))
    assert 555.0 not in model.seen
    await batcher.close()


async def test_failing_call_fails_only_its_batch() -> None:
    model = FakeModel()
    model.failing_calls = {1}  # the second call, which holds the three queued requests
    recorder = Recorder()
    batcher = await started(model, observer=recorder)
    model.release.clear()
    blocker = asyncio.create_task(batcher.predict(instances(0, 1)))
    await asyncio.sleep(0.02)
    doomed = [asyncio.create_task(batcher.predict(instances(10 + i, 1))) for i in range(3)]
    await asyncio.sleep(0.02)
    model.release.set()
    await blocker
    for task in doomed:
        with pytest.raises(BatchFailedError, match="boom"):
            await task
    np.testing.assert_array_equal(await batcher.predict(instances(3, 2)), instances(3, 2) * 2)
    assert recorder.failed == 1
    await batcher.close()


async def test_wrong_number_of_outputs_fails_the_batch_loudly() -> None:
    batcher = MicroBatcher("short", lambda x: x[:-1])
    batcher.start()
    with pytest.raises(BatchFailedError, match="2 outputs for 3 inputs"):
        await batcher.predict(instances(0, 3))
    await batcher.close()


async def test_close_answers_queued_requests_then_refuses_new_ones() -> None:
    model = FakeModel(delay_s=0.02)
    batcher = await started(model, max_batch_size=2)
    tasks = [asyncio.create_task(batcher.predict(instances(i, 1))) for i in range(6)]
    await asyncio.sleep(0)
    await batcher.close()
    assert all(t.done() and not t.exception() for t in tasks)
    with pytest.raises(BatcherClosedError):
        await batcher.predict(instances(0, 1))


async def test_close_leaves_a_hung_call_behind_after_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = FakeModel()
    model.release.clear()  # the call never returns (until the test lets it)
    batcher = await started(model, timeout_s=0.3)
    hung = asyncio.create_task(batcher.predict(instances(0, 1)))
    queued = asyncio.create_task(batcher.predict(instances(1, 1)))
    await asyncio.sleep(0.05)
    assert model.entered == 1
    began = time.perf_counter()
    await batcher.close()
    took = time.perf_counter() - began
    assert took < 2, f"close() waited {took:.1f} s for a call that never returns"
    for task in (hung, queued):  # both answered by their deadline, neither lost
        with pytest.raises(DeadlineExceededError):
            await task
    assert "left behind" in caplog.text
    thread = next(t for t in threading.enumerate() if t.name.startswith("model-fake"))
    assert thread.daemon, "a hung model thread must not keep the process from exiting"
    model.release.set()
