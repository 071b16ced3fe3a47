"""Adaptive micro-batching: many concurrent requests, one model call.

Requests put their instances on a queue and await a future. One worker per model takes what is
queued (up to ``max_batch_size`` instances) and hands the blocking model call to a model thread,
so the event loop keeps accepting requests; the thread sends the outputs back to the loop in one
callback, which splits them and resolves the futures. Up to ``max_concurrent_batches`` calls
run at once: while one batch is inside the model, the next one can start (a model call is
mostly runtime work that releases the GIL).

Adaptive, not a fixed timer: an idle worker runs a lone request at once, and whatever arrives
while the calls run goes together in the next call. So batches grow with load by themselves;
``max_batch_delay_s`` optionally waits a little longer for a fuller batch.

This module knows asyncio, NumPy and a callable ``inputs -> outputs`` (first axis = instances);
nothing of HTTP or TensorFlow, so its tests can drive it with a fake model.

Invariants (what the rest relies on):

* **Every request gets exactly one answer**: its outputs, or a :class:`BatcherError`
  (deadline, overload, model failure, shutdown). A future is resolved only on the event loop,
  and only if it is not done yet, so a deadline and a late model result cannot both land.
* **Permits.** ``_calls`` holds ``max_concurrent_batches`` permits. The worker takes one
  *before* it takes a batch off the queue (so a batch never waits on the queue side for a free
  thread), and hands it with the batch to a model thread; it is released on the loop, in
  :meth:`_deliver`, in the same step that answers the batch. An empty batch (everything in it
  withdrawn) gives its permit back at once. So at most ``max_concurrent_batches`` calls run,
  and a permit is never lost, whatever the model does (a call that raises still delivers).
* **``taken``**: a queue entry whose ``taken`` is set no longer counts in ``queued`` and will
  never be put in a batch. It is set exactly once, either by the worker as it puts the entry in
  a batch, or by :meth:`_withdraw` when the request's caller stops waiting (deadline or
  cancellation) first. Withdrawn entries stay in the deque until the worker passes them (O(1)
  per withdrawal; the deque is compacted when they outnumber the live ones), so thousands of
  clients leaving at once cost the loop linear, not quadratic, time.
* **Closing** (:meth:`close`): no new request is accepted; everything queued is still answered
  by the model; the worker ends once the queue is empty and every permit is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

logger = logging.getLogger(__name__)

PredictFn = Callable[[np.ndarray], np.ndarray]


class BatcherError(Exception):
    """Base of the errors a caller of :meth:`MicroBatcher.predict` can get."""


class QueueFullError(BatcherError):
    """Too many instances are waiting; try again shortly."""


class RequestTooLargeError(BatcherError):
    """The request has more instances than the queue can ever hold."""


class DeadlineExceededError(BatcherError):
    """The request was not answered before its deadline."""


class BatchFailedError(BatcherError):
    """The model call for the request's batch raised or returned the wrong number of outputs."""


class BatcherClosedError(BatcherError):
    """The batcher is shutting down and takes no new requests."""


class BatchObserver(Protocol):
    """Where the batcher reports what it does (Prometheus metrics in the service)."""

    def queue_depth(self, instances: int) -> None: ...

    def batch_done(self, instances: int, seconds: float, ok: bool) -> None: ...


class _NullObserver:
    def queue_depth(self, instances: int) -> None:
        pass

    def batch_done(self, instances: int, seconds: float, ok: bool) -> None:
        pass


@dataclass(eq=False)
class _Pending:
    """One request's share of a batch: its inputs and the future its caller awaits.

    ``taken``: out of the queue's count, never to be batched (see the module's invariants).
    """

    inputs: np.ndarray
    future: asyncio.Future[np.ndarray]
    taken: bool = field(default=False)

    @property
    def size(self) -> int:
        return len(self.inputs)


_Work = tuple[asyncio.AbstractEventLoop, list[_Pending]]  # a batch for a model thread


class MicroBatcher:
    """Queue, worker, model threads and futures for one model."""

    def __init__(
        self,
        name: str,
        predict: PredictFn,
        *,
        max_batch_size: int = 64,
        max_batch_delay_s: float = 0.0,
        max_concurrent_batches: int = 1,
        max_queue_size: int = 1024,
        timeout_s: float = 10.0,
        observer: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.max_concurrent_batches = max_concurrent_batches
        self.max_queue_size = max_queue_size
        self.timeout_s = timeout_s
        self._predict = predict
        self._observer = observer or _NullObserver()
        self._queue: deque[_Pending] = deque()
        self._queued = 0  # instances waiting, the unit of max_queue_size
        self._withdrawn = 0  # entries still in the deque whose requests stopped waiting
        self._wakeup = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None
        self._calls = asyncio.Semaphore(max_concurrent_batches)
        # Daemon threads, not a ThreadPoolExecutor (whose threads the interpreter joins at exit):
        # a model call that never returns must not keep the process from exiting.
        self._batches: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._model_thread, name=f"model-{name}-{i}", daemon=True)
            for i in range(max_concurrent_batches)
        ]

    @property
    def queued(self) -> int:
        return self._queued

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        self._worker = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        """Take no new requests, answer every queued one, then stop the worker and threads.

        Waits ``timeout_s`` at most: by then every request has had its answer or its deadline,
        and a call still running has hung; its thread is left behind, so that shutdown ends.
        """
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            done, _ = await asyncio.wait({self._worker}, timeout=self.timeout_s)
            if not done:
                logger.error(
                    "model %r: a call still running %g s into shutdown is left behind",
                    self.name,
                    self.timeout_s,
                )
                self._worker.cancel()
        for _ in self._threads:
            self._batches.put(None)

    # ---- the caller's side -------------------------------------------------------------

    async def predict(self, inputs: np.ndarray, deadline: float | None = None) -> np.ndarray:
        """Queue ``inputs`` (first axis = instances) and return the model's outputs for them.

        ``deadline`` is in the event loop's clock (``loop.time()``); by default ``timeout_s``
        from now. A request larger than ``max_batch_size`` is split into several queue entries;
        smaller ones stay whole. Raises a :class:`BatcherError` for overload, deadline or model
        failure.
        """
        size = len(inputs)
        if self._closing:
            raise BatcherClosedError(f"model {self.name!r} is shutting down")
        if size > self.max_queue_size:
            raise RequestTooLargeError(
                f"{size} instances can never fit the queue of model {self.name!r} "
                f"(MAX_QUEUE_SIZE={self.max_queue_size})"
            )
        if self._queued + size > self.max_queue_size:
            raise QueueFullError(
                f"model {self.name!r} has {self._queued} instances queued "
                f"(MAX_QUEUE_SIZE={self.max_queue_size}); retry shortly"
            )

        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.timeout_s
        step = self.max_batch_size
        pending = [
            _Pending(inputs[start : start + step], loop.create_future())
            for start in range(0, size, step)
        ]
        self._queue.extend(pending)
        self._queued += size
        self._observer.queue_depth(self._queued)
        self._wakeup.set()

        # A bare timer rather than asyncio.timeout_at(): cheaper, and the same deadline.
        expiry = loop.call_at(deadline, self._expire, pending)
        try:
            if len(pending) == 1:
                return await pending[0].future
            parts = await asyncio.gather(*(p.future for p in pending))
            return np.concatenate(parts)
        finally:
            # Deadline passed or the client went away: whatever is still queued never
            # reaches the model, and gives its room in the queue back at once.
            expiry.cancel()
            self._withdraw(pending)

    def _expire(self, pending: list[_Pending]) -> None:
        error = f"model {self.name!r} did not answer within {self.timeout_s:g} s"
        for p in pending:
            if not p.future.done():
                p.future.set_exception(DeadlineExceededError(error))

    def _withdraw(self, pending: list[_Pending]) -> None:
        """The caller stopped waiting: what is still queued leaves the count, in O(1) each."""
        withdrawn = False
        for p in pending:
            if not p.future.done():
                p.future.cancel()
            if not p.taken:
                p.taken = True
                self._queued -= p.size
                self._withdrawn += 1
                withdrawn = True
        if withdrawn:  # the usual case, an answered request, leaves the depth as it was
            if self._withdrawn > 64 and self._withdrawn > len(self._queue) // 2:
                self._queue = deque(p for p in self._queue if not p.taken)
                self._withdrawn = 0
            self._observer.queue_depth(self._queued)

    # ---- the worker's side -------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._calls.acquire()  # a free model thread first, then the batch
            batch = await self._next_batch()
            if batch is None:
                break
            if not batch:
                self._calls.release()
                continue
            self._batches.put((loop, batch))
        for _ in range(self.max_concurrent_batches - 1):  # the calls still running
            await self._calls.acquire()

    async def _next_batch(self) -> list[_Pending] | None:
        """Wait for work, then take up to ``max_batch_size`` instances; None once closed."""
        while not self._queue:
            if self._closing:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

        if self.max_batch_delay_s > 0:
            await self._wait_for_fuller_batch()

        batch: list[_Pending] = []
        size = 0
        while self._queue:
            p = self._queue[0]
            if p.taken:  # withdrawn while queued: already out of the count
                self._queue.popleft()
                self._withdrawn -= 1
                continue
            if size + p.size > self.max_batch_size:
                break
            self._queue.popleft()
            p.taken = True
            self._queued -= p.size
            if not p.future.done():  # resolved meanwhile (its deadline): skipped
                batch.append(p)
                size += p.size
        self._observer.queue_depth(self._queued)
        return batch

    async def _wait_for_fuller_batch(self) -> None:
        loop = asyncio.get_running_loop()
        until = loop.time() + self.max_batch_delay_s
        while self._queued < self.max_batch_size and not self._closing:
            remaining = until - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    def _model_thread(self) -> None:
        """One of the model's threads: the batches the worker hands over, until closed."""
        while (work := self._batches.get()) is not None:
            self._call(*work)

    def _call(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        """On a model thread: one model call for the whole batch, its outcome sent to the loop."""
        size = sum(p.size for p in batch)
        outputs: np.ndarray | None = None
        error = ""
        started = time.perf_counter()
        try:
            inputs = (
                batch[0].inputs if len(batch) == 1 else np.concatenate([p.inputs for p in batch])
            )
            outputs = self._predict(inputs)
            if len(outputs) != size:
                raise ValueError(f"returned {len(outputs)} outputs for {size} inputs")
        except Exception as exc:
            outputs = None
            logger.exception("model %r failed on a batch of %d instances", self.name, size)
            error = f"model {self.name!r} failed: {type(exc).__name__}: {exc}"
        try:
            self._observer.batch_done(size, time.perf_counter() - started, ok=outputs is not None)
        except Exception:  # the answers must go out whatever happens to the metrics
            logger.exception("model %r: recording a batch failed", self.name)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(self._deliver, batch, outputs, error)

    def _deliver(self, batch: list[_Pending], outputs: np.ndarray | None, error: str) -> None:
        """On the loop, in one hop from the model thread: every request gets its answer."""
        self._calls.release()
        if outputs is None:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(BatchFailedError(error))
            return
        offset = 0
        for p in batch:
            if not p.future.done():
                p.future.set_result(outputs[offset : offset + p.size])
            offset += p.size
