"""The micro-batcher with a fake model: no TensorFlow, no HTTP, no clocks.

The fake model records each call as it enters and, while held, keeps it there; the tests wait
for what they need (a call inside the model, requests in the queue) with ``until``, never for a
fixed time, and assert on what the batcher did: which instances went into which call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest

from app.batching import (
    BatcherClosedError,
    BatchFailedError,
    Call,
    DeadlineExceededError,
    MicroBatcher,
    QueueFullError,
    RequestTooLargeError,
    Timing,
)
from tests.support.waiting import DEADLINE_S, until


class FakeModel:
    """Doubles its inputs. Records each call's inputs as it enters; while held, calls wait
    inside until released; the calls whose 0-based index is in ``failing_calls`` raise."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []  # every call's inputs, in the order they entered
        self.returned = 0  # calls that have left the model
        self.failing_calls: set[int] = set()
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()

    def hold(self) -> None:
        """From now on, calls wait inside the model until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        with self._lock:
            index = len(self.batches)
            self.batches.append(inputs.copy())
        self._open.wait()
        with self._lock:
            self.returned += 1
        if index in self.failing_calls:
            raise RuntimeError("boom")
        return inputs * 2

    @property
    def entered(self) -> int:
        return len(self.batches)

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]

    @property
    def seen(self) -> set[float]:
        return {float(v) for b in self.batches for v in b.ravel()}


class Recorder:
    """The batcher's observer: what it reported."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.failed = 0
        self.waits: list[float] = []

    def queue_depth(self, instances: int) -> None:
        assert instances >= 0

    def batch_done(self, instances: int, seconds: float, ok: bool) -> None:
        self.batch_sizes.append(instances)
        self.failed += not ok

    def queue_wait(self, seconds: float) -> None:
        self.waits.append(seconds)


@asynccontextmanager
async def running(model: FakeModel, **settings: Any) -> AsyncIterator[MicroBatcher]:
    """A started batcher on ``model``; on the way out (a failed test too) the model is released
    and the batcher closed, so that no call is left waiting."""
    batcher = MicroBatcher("fake", model, **settings)
    batcher.start()
    try:
        yield batcher
    finally:
        model.release()
        await batcher.close()


def instances(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.float64)


def spawn(batcher: MicroBatcher, start: int, n: int = 1) -> asyncio.Task[np.ndarray]:
    return asyncio.create_task(batcher.predict(instances(start, n)))


async def test_concurrent_requests_get_their_own_answers_in_order() -> None:
    model = FakeModel()
    model.hold()
    async with running(model, max_batch_size=16) as batcher:
        sizes = [1, 3, 2, 5, 1, 4] * 5
        starts = [int(s) for s in np.cumsum([0, *sizes[:-1]]) * 10]
        tasks = [spawn(batcher, s, n) for s, n in zip(starts, sizes, strict=True)]
        await until(
            lambda: model.entered == 1 and batcher.queued == sum(sizes) - model.sizes[0],
            lambda: f"one call inside the model, the rest queued ({model.sizes}, {batcher.queued})",
        )
        model.release()
        results = await asyncio.gather(*tasks)
    for s, n, result in zip(starts, sizes, results, strict=True):
        np.testing.assert_array_equal(result, instances(s, n) * 2)
    assert sum(model.sizes) == sum(sizes)
    assert max(model.sizes) <= 16
    assert model.entered < len(sizes), "concurrent requests should share model calls"


async def test_busy_model_accumulates_newcomers_into_one_call() -> None:
    model = FakeModel()
    recorder = Recorder()
    model.hold()
    async with running(model, max_batch_size=64, observer=recorder) as batcher:
        first = spawn(batcher, 0)
        await until(lambda: model.entered == 1, "the first request inside the model")
        rest = [spawn(batcher, 100 + i) for i in range(20)]
        await until(lambda: batcher.queued == 20, lambda: f"20 queued, not {batcher.queued}")
        model.release()
        await asyncio.gather(first, *rest)
    assert model.sizes == [1, 20]
    assert recorder.batch_sizes == [1, 20]


async def test_up_to_max_concurrent_batches_calls_run_at_once() -> None:
    model = FakeModel()
    model.hold()
    async with running(model, max_batch_size=64, max_concurrent_batches=2) as batcher:
        first = spawn(batcher, 0)
        await until(lambda: model.entered == 1, "the first call inside the model")
        second = spawn(batcher, 10, 2)
        await until(lambda: model.entered == 2, "a second call beside the first")
        rest = [spawn(batcher, 100 + i) for i in range(5)]
        # Two calls are inside the model; the newcomers wait for the first free one, together.
        await until(lambda: batcher.queued == 5, lambda: f"5 queued, not {batcher.queued}")
        assert model.entered == 2
        closing = asyncio.create_task(batcher.close())  # answers everything in flight and queued
        model.release()
        results = await asyncio.gather(first, second, *rest)
        await closing
    np.testing.assert_array_equal(results[1], instances(10, 2) * 2)
    assert model.sizes == [1, 2, 5]


async def test_lone_request_runs_at_once_without_delay() -> None:
    """With no batch delay an idle batcher hands a lone request to the model at once, alone."""
    model = FakeModel()
    recorder = Recorder()
    async with running(model, max_batch_delay_s=0.0, observer=recorder) as batcher:
        for i in range(20):
            np.testing.assert_array_equal(await batcher.predict(instances(i, 1)), [2.0 * i])
        model.hold()
        lone = spawn(batcher, 99)
        # No timer between an idle worker and a lone request: the worker takes it off the
        # queue within a few turns of the event loop, in which the loop's clock barely moves.
        for _ in range(10):
            await asyncio.sleep(0)  # a turn of the loop, not a wait on its clock
            if batcher.queued == 0:
                break
        assert batcher.queued == 0, "a lone request waited on a timer for company"
        await until(lambda: model.entered == 21, "the lone request inside the model")
        model.release()
        await lone
    assert model.sizes == [1] * 21
    assert recorder.batch_sizes == [1] * 21


async def test_batch_delay_waits_for_a_fuller_batch() -> None:
    model = FakeModel()
    # A delay no test outlives: only a full batch can end the wait.
    async with running(model, max_batch_size=8, max_batch_delay_s=3600) as batcher:
        tasks = []
        for i in range(7):
            tasks.append(spawn(batcher, i))
            await until(lambda n=i + 1: batcher.queued == n, f"{i + 1} requests queued")
        assert model.entered == 0  # seven of eight: still waiting for a fuller batch
        tasks.append(spawn(batcher, 7))
        await asyncio.gather(*tasks)
    assert model.sizes == [8]


async def test_batch_delay_runs_a_partial_batch_once_it_is_over() -> None:
    model = FakeModel()
    async with running(model, max_batch_size=8, max_batch_delay_s=0.05) as batcher:
        # Never a full batch: only the delay running out sends these (before their deadline).
        results = await asyncio.gather(*(batcher.predict(instances(i, 1)) for i in range(3)))
    assert [float(r[0]) for r in results] == [0.0, 2.0, 4.0]
    assert model.sizes == [3]


async def test_large_request_is_split_at_the_cap_and_reassembled() -> None:
    model = FakeModel()
    async with running(model, max_batch_size=4) as batcher:
        result = await batcher.predict(instances(0, 10))
    np.testing.assert_array_equal(result, instances(0, 10) * 2)
    assert model.sizes == [4, 4, 2]


async def test_multi_instance_requests_stay_whole_below_the_cap() -> None:
    model = FakeModel()
    model.hold()
    async with running(model, max_batch_size=5) as batcher:
        first = spawn(batcher, 0)
        await until(lambda: model.entered == 1, "the first request inside the model")
        tasks = [spawn(batcher, 10 * i, 3) for i in range(1, 4)]
        await until(lambda: batcher.queued == 9, lambda: f"9 queued, not {batcher.queued}")
        model.release()
        await asyncio.gather(first, *tasks)
    assert model.sizes == [1, 3, 3, 3]  # 3 + 3 > 5: never split a 3-instance request


def first_step(call: Coroutine[Any, Any, object]) -> BaseException:
    """What ``call`` raises in its first step, or a failure if it suspends there instead.

    No clock: a coroutine that waits for anything at all (a sleep, a lock, a future) gives the
    event loop back, and ``send`` returns instead of raising.
    """
    try:
        call.send(None)
    except StopIteration:
        pytest.fail("accepted, not refused")
    except Exception as exc:
        return exc
    call.close()
    pytest.fail("the refusal waited for something instead of coming at once")


async def test_overload_is_refused_at_once() -> None:
    """A full queue refuses a request in the call itself, before it waits for anything."""
    model = FakeModel()
    model.hold()
    async with running(model, max_batch_size=2, max_queue_size=4) as batcher:
        blocker = spawn(batcher, 0, 2)
        await until(lambda: model.entered == 1, "the first batch inside the model")
        queued = [spawn(batcher, 10 + i) for i in range(4)]
        await until(lambda: batcher.queued == 4, "a full queue")
        assert isinstance(first_step(batcher.predict(instances(99, 1))), QueueFullError)
        assert isinstance(first_step(batcher.predict(instances(0, 5))), RequestTooLargeError)
        model.release()
        await asyncio.gather(blocker, *queued)
        assert batcher.queued == 0
    assert 99.0 not in model.seen


async def test_request_past_its_deadline_never_reaches_the_model() -> None:
    model = FakeModel()
    model.hold()
    async with running(model, timeout_s=0.1) as batcher:
        blocker = spawn(batcher, 0)
        await until(lambda: model.entered == 1, "the first request inside the model")
        with pytest.raises(DeadlineExceededError):
            await batcher.predict(instances(777, 1))
        assert batcher.queued == 0
        model.release()
        with pytest.raises(DeadlineExceededError):
            await blocker  # its call outlived the deadline too
        assert 777.0 not in model.seen
        await batcher.predict(instances(5, 1))  # and the worker is not wedged


async def test_cancelled_request_is_dropped_from_the_queue() -> None:
    model = FakeModel()
    model.hold()
    async with running(model) as batcher:
        blocker = spawn(batcher, 0)
        await until(lambda: model.entered == 1, "the first request inside the model")
        gone = spawn(batcher, 555)
        await until(lambda: batcher.queued == 1, "the second request queued")
        gone.cancel()  # what a disconnecting client does
        # Its room comes back while the model is still busy: only withdrawal can empty the queue.
        await until(lambda: batcher.queued == 0, "the cancelled request off the queue")
        assert model.entered == 1
        model.release()
        await blocker
        await batcher.predict(instances(6, 1))
    assert 555.0 not in model.seen
    assert gone.cancelled()


async def test_failing_call_fails_only_its_batch() -> None:
    model = FakeModel()
    model.failing_calls = {1}  # the second call, which holds the three queued requests
    recorder = Recorder()
    model.hold()
    async with running(model, observer=recorder) as batcher:
        blocker = spawn(batcher, 0)
        await until(lambda: model.entered == 1, "the first request inside the model")
        doomed = [spawn(batcher, 10 + i) for i in range(3)]
        await until(lambda: batcher.queued == 3, "three requests queued")
        model.release()
        await blocker
        for task in doomed:
            with pytest.raises(BatchFailedError, match="boom"):
                await task
        np.testing.assert_array_equal(await batcher.predict(instances(3, 2)), instances(3, 2) * 2)
    assert model.sizes == [1, 3, 2]
    assert recorder.failed == 1


async def test_wrong_number_of_outputs_fails_the_batch_loudly() -> None:
    batcher = MicroBatcher("short", lambda x: x[:-1])
    batcher.start()
    with pytest.raises(BatchFailedError, match="2 outputs for 3 inputs"):
        await batcher.predict(instances(0, 3))
    await batcher.close()


async def test_close_answers_queued_requests_then_refuses_new_ones() -> None:
    model = FakeModel()
    model.hold()
    async with running(model, max_batch_size=2) as batcher:
        tasks = [spawn(batcher, i) for i in range(6)]
        await until(
            lambda: model.entered == 1 and batcher.queued == 6 - model.sizes[0],
            "one batch inside the model, the rest queued",
        )
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0)  # one turn of the loop, no clock: close() has begun
        with pytest.raises(BatcherClosedError):
            await batcher.predict(instances(0, 1))
        assert not closing.done()  # still answering what it took in
        model.release()
        await closing
        assert all(t.done() for t in tasks)
        results = [t.result() for t in tasks]  # every queued request answered, none refused
    assert [float(r[0]) for r in results] == [2.0 * i for i in range(6)]
    assert sum(model.sizes) == 6


async def test_close_leaves_a_hung_call_behind_after_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = FakeModel()
    model.hold()  # the call never returns (until the test is over)
    async with running(model, timeout_s=0.3) as batcher:
        hung = spawn(batcher, 0)
        queued = spawn(batcher, 1)
        await until(lambda: model.entered == 1, "the first call inside the model")
        try:
            await asyncio.wait_for(batcher.close(), DEADLINE_S)
        except TimeoutError:
            pytest.fail("close() waits for a model call that never returns")
        assert model.returned == 0  # close() came back while the call still hangs
        for task in (hung, queued):  # both answered by their deadline, neither lost
            with pytest.raises(DeadlineExceededError):
                await task
        assert "left behind" in caplog.text
        thread = next(t for t in threading.enumerate() if t.name.startswith("model-fake"))
        assert thread.daemon, "a hung model thread must not keep the process from exiting"


# ---- timings ---------------------------------------------------------------------------------


class CallLog:
    """A CallTracer: each call it saw, with its requests' contexts; answers a name per call."""

    def __init__(self) -> None:
        self.seen: list[tuple[Call, list[object]]] = []

    def call_done(self, call: Call, contexts: list[object]) -> object:
        assert call.ended >= call.started > 0, "stamped before the tracer sees it"
        self.seen.append((call, contexts))
        return f"call-{len(self.seen)}"


async def timed(batcher: MicroBatcher, start: int, n: int, context: object) -> Timing:
    timing = Timing(context)
    await batcher.predict(instances(start, n), timing=timing)
    return timing


async def test_each_request_learns_its_wait_its_call_and_the_call_s_size() -> None:
    model = FakeModel()
    recorder, log = Recorder(), CallLog()
    model.hold()
    async with running(model, max_batch_size=64, observer=recorder, tracer=log) as batcher:
        first = asyncio.create_task(timed(batcher, 0, 1, "first"))
        await until(lambda: model.entered == 1, "the first request inside the model")
        rest = [asyncio.create_task(timed(batcher, 10 * i, i, f"r{i}")) for i in (1, 2, 3)]
        await until(lambda: batcher.queued == 6, lambda: f"6 queued, not {batcher.queued}")
        model.release()
        timings = await asyncio.gather(first, *rest)
    # One Call per model call: the three that waited share the second.
    assert [len(t.calls) for t in timings] == [1, 1, 1, 1]
    (alone,), (shared,) = timings[0].calls, timings[1].calls
    assert all(t.calls == (shared,) for t in timings[1:])
    assert shared is not alone
    assert [t.batch_size for t in timings] == [1, 6, 6, 6]
    assert [t.instances for t in timings] == [1, 1, 2, 3]
    for timing in timings:
        call = timing.calls[0]
        assert timing.queue_s == call.started - timing.queued_at >= 0
        assert timing.compute_s == call.ended - call.started >= 0
    # The three were queued while the first was inside the model: they waited past its start.
    assert all(t.queued_at > alone.started and t.queue_s for t in timings[1:])
    # The tracer saw each call once, with its requests' contexts oldest first, before any of
    # them was answered: what it returned is on the Call they share.
    assert [contexts for _, contexts in log.seen] == [["first"], ["r1", "r2", "r3"]]
    assert (alone.trace, shared.trace) == ("call-1", "call-2")
    # The observer got each request's wait, the same figures.
    assert sorted(recorder.waits) == sorted(t.queue_s for t in timings)


async def test_a_split_request_is_timed_over_all_its_calls() -> None:
    model = FakeModel()
    recorder = Recorder()
    async with running(model, max_batch_size=4, observer=recorder) as batcher:
        timing = await timed(batcher, 0, 10, None)
    first, _second, last = timing.calls
    assert [c.size for c in timing.calls] == [4, 4, 2]
    assert timing.batch_size == 4
    assert timing.queue_s == first.started - timing.queued_at
    assert timing.compute_s == last.ended - first.started
    assert len(recorder.waits) == 3  # one wait per part


async def test_a_failed_call_is_stamped_and_a_request_that_never_ran_has_no_call() -> None:
    model = FakeModel()
    model.failing_calls = {0}
    log = CallLog()
    model.hold()
    async with running(model, max_batch_size=64, tracer=log) as batcher:
        failing = asyncio.create_task(timed(batcher, 0, 1, "fails"))
        await until(lambda: model.entered == 1, "the first call inside the model")
        expired = Timing("expires")
        with pytest.raises(DeadlineExceededError):
            # A deadline already passed: it never leaves the queue.
            await batcher.predict(instances(5, 1), deadline=0.0, timing=expired)
        model.release()
        with pytest.raises(BatchFailedError):
            await failing
    ((call, contexts),) = log.seen
    assert contexts == ["fails"]
    assert not call.ok
    assert call.ended >= call.started > 0
    assert expired.calls == ()
    assert expired.queue_s is None
    assert expired.batch_size is None
    assert expired.instances == 1
    assert expired.queued_at > 0
