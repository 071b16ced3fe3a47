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

This module knows asyncio, NumPy and a callable ``inputs -> outputs``: inputs and outputs are
an array, or a dict of named arrays (a signature's tensors), first axis = instances; nothing of
HTTP or TensorFlow, so its tests can drive it with a fake model.

Which requests share a call: only those whose arrays agree beyond the first axis (their
``key``); a request of other shapes waits for a call of its own kind, the order otherwise kept.
With ``batched=False`` (a signature without a batch axis, a stateful model) every request is
one call, its arrays passed and returned whole. ``allowed_batch_sizes`` pads each batch up to
the next allowed size (repeating its last instance) and drops the padding's outputs, so that
a model traced per batch size sees only those sizes. When a merged call raises
:class:`ModelInputError` (the model refused its inputs), each request of the batch is called
alone, so that only the request that sent the bad input gets its error (a 400), and the others
their answers.

Invariants (what the rest relies on):

* **Every request gets exactly one answer**: its outputs, or a :class:`BatcherError`
  (deadline, overload, rejected input, model failure, shutdown). A future is resolved only on the event loop,
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

Timings (:class:`Timing`, :class:`Call`): the worker gives each batch one :class:`Call`, which
the model thread stamps twice (its start and its end); a request reads from its calls how long
it waited in the queue (from entering it to its first call starting), how long the model
worked on it and the size of the batch that served it. Nothing per request on the model
thread, no lock: one clock reading as a request enters the queue, attribute reads once it is
answered. An optional :class:`CallTracer` sees each call once, on the model thread, with the
``context`` each of its requests gave (OpenTelemetry's, in the service; opaque here).
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
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

# A batch: one array, or a signature's named arrays; the first axis is the instances.
Tensors = np.ndarray | dict[str, np.ndarray]
PredictFn = Callable[[Any], Any]


class ModelInputError(Exception):
    """Raised by a model callable when the model refuses its inputs (TensorFlow's
    InvalidArgument): the request that sent them gets a 400, not the whole batch a 500."""


class BatcherError(Exception):
    """Base of the errors a caller of :meth:`MicroBatcher.predict` can get."""


class QueueFullError(BatcherError):
    """Too many instances are waiting; try again shortly."""


class RequestTooLargeError(BatcherError):
    """The request has more instances than the queue can ever hold."""


class DeadlineExceededError(BatcherError):
    """The request was not answered before its deadline."""


class InputRejectedError(BatcherError):
    """The model refused this request's inputs (alone, not merged with others)."""


class BatchFailedError(BatcherError):
    """The model call for the request's batch raised or returned the wrong number of outputs."""


class BatcherClosedError(BatcherError):
    """The batcher is shutting down and takes no new requests."""


class BatchObserver(Protocol):
    """Where the batcher reports what it does (Prometheus metrics in the service)."""

    def queue_depth(self, instances: int) -> None: ...

    def batch_done(self, instances: int, seconds: float, ok: bool) -> None: ...

    def queue_wait(self, seconds: float) -> None: ...


class _NullObserver:
    def queue_depth(self, instances: int) -> None:
        pass

    def batch_done(self, instances: int, seconds: float, ok: bool) -> None:
        pass

    def queue_wait(self, seconds: float) -> None:
        pass


@dataclass(slots=True, eq=False)
class Call:
    """One model call (one batch). ``size``: its instances (padding not counted), set by the
    worker; ``started`` and ``ended`` (``time.perf_counter()``, 0 until then) and ``ok``,
    stamped by the model thread; ``trace``: what the :class:`CallTracer` made of it (a span's
    context, for the requests to link to), set before any of its requests is answered."""

    size: int = 0
    started: float = 0.0
    ended: float = 0.0
    ok: bool = True
    trace: object = None


@dataclass(slots=True, eq=False)
class Timing:
    """How one request was served, filled by :meth:`MicroBatcher.predict` for its caller.

    ``context`` is the caller's, handed to the :class:`CallTracer` with each call that serves
    the request. ``queued_at`` is when its instances entered the queue (``perf_counter``);
    ``calls`` the model calls that served it (one, unless the request was larger than
    ``max_batch_size`` and split), once it has its answer or its error.
    """

    context: object = None
    instances: int = 0
    queued_at: float = 0.0
    calls: tuple[Call, ...] = ()

    @property
    def started_calls(self) -> tuple[Call, ...]:
        """The calls that have started (a request answered by its deadline may have none)."""
        return tuple(call for call in self.calls if call.started)

    @property
    def queue_s(self) -> float | None:
        """From entering the queue to its first model call starting; None if none started."""
        started = self.started_calls
        return min(c.started for c in started) - self.queued_at if started else None

    @property
    def compute_s(self) -> float | None:
        """From its first call's start to its last call's end: the model's time on it."""
        started = self.started_calls
        if not started or not all(c.ended for c in started):
            return None
        return max(c.ended for c in started) - min(c.started for c in started)

    @property
    def batch_size(self) -> int | None:
        """Instances in the (largest) model call that served it."""
        return max((c.size for c in self.calls), default=None)


class CallTracer(Protocol):
    """Sees every model call once it has ended, on the model thread, before its requests are
    answered: ``contexts`` are those of its requests (:attr:`Timing.context`, None where a
    caller gave none), oldest first. What it returns is kept as :attr:`Call.trace`."""

    def call_done(self, call: Call, contexts: list[object]) -> object: ...


@dataclass(eq=False)
class _Pending:
    """One request's share of a batch: its inputs and the future its caller awaits.

    ``size``: its instances (1 when unbatched); ``key``: its shapes beyond the first axis, equal
    for requests that may share a call. ``taken``: out of the queue's count, never to be
    batched (see the module's invariants).
    """

    inputs: Tensors
    size: int
    key: object
    future: asyncio.Future[Tensors]
    context: object = None  # the caller's (Timing.context), for the CallTracer
    taken: bool = field(default=False)
    call: Call | None = None  # the call it was put in


_Work = tuple[asyncio.AbstractEventLoop, list[_Pending], Call]  # a batch for a model thread


class MicroBatcher:
    """Queue, worker, model threads and futures for one model signature."""

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
        batched: bool = True,
        allowed_batch_sizes: tuple[int, ...] = (),
        observer: BatchObserver | None = None,
        tracer: CallTracer | None = None,
    ) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_batch_delay_s = max_batch_delay_s
        self.max_concurrent_batches = max_concurrent_batches
        self.max_queue_size = max_queue_size
        self.timeout_s = timeout_s
        self.batched = batched
        self.allowed_batch_sizes = allowed_batch_sizes
        self._predict = predict
        self._observer = observer or _NullObserver()
        self._tracer = tracer
        self._queue: deque[_Pending] = deque()
        self._queued = 0  # instances waiting, the unit of max_queue_size
        self._withdrawn = 0  # entries still in the deque that will never be batched
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

    async def predict(
        self, inputs: Any, deadline: float | None = None, timing: Timing | None = None
    ) -> Any:
        """Queue ``inputs`` (an array or a dict of arrays, first axis = instances) and return
        the model's outputs for them, of the same kind.

        ``deadline`` is in the event loop's clock (``loop.time()``); by default ``timeout_s``
        from now. A batched request larger than ``max_batch_size`` is split into several queue
        entries; smaller ones stay whole. Raises a :class:`BatcherError` for overload,
        deadline, rejected input or model failure. ``timing``, if given, is filled in as the
        request is served (its calls once it has its answer or its error); the observer's
        ``queue_wait`` gets each part's wait whose call started.
        """
        if self._closing:
            raise BatcherClosedError(f"model {self.name!r} is shutting down")
        size = _instances(inputs) if self.batched else 1
        if timing is not None:
            timing.instances = size
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
        context = timing.context if timing is not None else None
        step = self.max_batch_size
        if not self.batched:
            pending = [_Pending(inputs, 1, None, loop.create_future(), context)]
        elif size <= step:
            pending = [_Pending(inputs, size, _key(inputs), loop.create_future(), context)]
        else:
            key = _key(inputs)
            pending = [
                _Pending(
                    _slice(inputs, start, start + step),
                    min(step, size - start),
                    key,
                    loop.create_future(),
                    context,
                )
                for start in range(0, size, step)
            ]
        queued_at = time.perf_counter()
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
            return _concatenate(parts)
        finally:
            # Deadline passed or the client went away: whatever is still queued never
            # reaches the model, and gives its room in the queue back at once.
            expiry.cancel()
            self._withdraw(pending)
            # Each part's wait to the observer, the request's calls to its timing (inline: it
            # runs for every request).
            if len(pending) == 1:
                call = pending[0].call
                calls: tuple[Call, ...] = () if call is None else (call,)
            else:
                calls = tuple([p.call for p in pending if p.call is not None])
            for call in calls:
                if call.started:
                    self._observer.queue_wait(call.started - queued_at)
            if timing is not None:
                timing.queued_at = queued_at
                timing.calls = calls

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
            self._compact()
            self._observer.queue_depth(self._queued)

    def _compact(self) -> None:
        if self._withdrawn > 64 and self._withdrawn > len(self._queue) // 2:
            self._queue = deque(p for p in self._queue if not p.taken)
            self._withdrawn = 0

    # ---- the worker's side -------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._calls.acquire()  # a free model thread first, then the batch
            taken = await self._next_batch()
            if taken is None:
                break
            batch, call = taken
            if not batch:
                self._calls.release()
                continue
            self._batches.put((loop, batch, call))
        for _ in range(self.max_concurrent_batches - 1):  # the calls still running
            await self._calls.acquire()

    async def _next_batch(self) -> tuple[list[_Pending], Call] | None:
        """Wait for work, then take up to ``max_batch_size`` instances of the oldest request's
        kind, with the :class:`Call` that will serve them; None once closed."""
        while not self._queue:
            if self._closing:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

        if self.max_batch_delay_s > 0 and self.batched:
            await self._wait_for_fuller_batch()

        batch: list[_Pending] = []
        call = Call()
        size = 0
        queue_ = self._queue
        key: object = None
        mixed = False  # an entry of another kind was left in front of what may follow
        while queue_:
            p = queue_[0]
            if p.taken:  # withdrawn while queued: already out of the count
                queue_.popleft()
                self._withdrawn -= 1
                continue
            if batch and (not self.batched or size + p.size > self.max_batch_size):
                break
            if batch and p.key != key:
                mixed = True
                break
            queue_.popleft()
            key = p.key
            size += self._take(p, batch, call)
        if mixed:
            # Entries of the batch's kind further back join it; the others keep their place.
            for p in queue_:
                if p.taken or p.key != key:
                    continue
                if size + p.size > self.max_batch_size:
                    break
                size += self._take(p, batch, call)
                self._withdrawn += 1  # left in the deque, skipped when the worker reaches it
            self._compact()
        self._observer.queue_depth(self._queued)
        call.size = size
        return batch, call

    def _take(self, p: _Pending, batch: list[_Pending], call: Call) -> int:
        p.taken = True
        self._queued -= p.size
        if p.future.done():  # resolved meanwhile (its deadline): skipped
            return 0
        batch.append(p)
        p.call = call
        return p.size

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

    def _call(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending], call: Call) -> None:
        """On a model thread: one model call for the whole batch, each request's outcome sent
        to the loop in one hop."""
        size = call.size
        call.started = started = time.perf_counter()
        results: list[Any]
        try:
            results = self._run_batch(batch, size)
            ok = True
        except ModelInputError as exc:
            if len(batch) == 1:
                results = [InputRejectedError(f"model {self.name!r} refused the input: {exc}")]
            else:  # which request sent the bad input: each alone
                results = [self._run_alone(p) for p in batch]
            ok = True
        except Exception as exc:
            logger.exception("model %r failed on a batch of %d instances", self.name, size)
            error = BatchFailedError(f"model {self.name!r} failed: {type(exc).__name__}: {exc}")
            results = [error] * len(batch)
            ok = False
        call.ended = ended = time.perf_counter()
        call.ok = ok
        try:
            self._observer.batch_done(size, ended - started, ok=ok)
            if self._tracer is not None:
                call.trace = self._tracer.call_done(call, [p.context for p in batch])
        except Exception:  # the answers must go out whatever happens to the metrics
            logger.exception("model %r: recording a batch failed", self.name)
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            loop.call_soon_threadsafe(self._deliver, batch, results)

    def _run_batch(self, batch: list[_Pending], size: int) -> list[Any]:
        if not self.batched:
            return [self._predict(batch[0].inputs)]
        inputs = batch[0].inputs if len(batch) == 1 else _concatenate([p.inputs for p in batch])
        padded = next((n for n in self.allowed_batch_sizes if n >= size), size)
        if padded > size:
            inputs = _pad(inputs, padded - size)
        outputs = self._predict(inputs)
        _check_outputs(outputs, padded)
        if len(batch) == 1 and padded == size:
            return [outputs]
        results = []
        offset = 0
        for p in batch:
            results.append(_slice(outputs, offset, offset + p.size))
            offset += p.size
        return results

    def _run_alone(self, p: _Pending) -> Any:
        try:
            return self._run_batch([p], p.size)[0]
        except ModelInputError as exc:
            return InputRejectedError(f"model {self.name!r} refused the input: {exc}")
        except Exception as exc:
            logger.exception("model %r failed on a request of %d instances", self.name, p.size)
            return BatchFailedError(f"model {self.name!r} failed: {type(exc).__name__}: {exc}")

    def _deliver(self, batch: list[_Pending], results: list[Any]) -> None:
        """On the loop, in one hop from the model thread: every request gets its answer."""
        self._calls.release()
        for p, result in zip(batch, results, strict=True):
            if p.future.done():
                continue
            if isinstance(result, BatcherError):
                p.future.set_exception(result)
            else:
                p.future.set_result(result)


# ---- arrays, or dicts of them ----------------------------------------------------------------


def _instances(inputs: Tensors) -> int:
    if isinstance(inputs, dict):
        sizes = {len(array) if array.ndim else -1 for array in inputs.values()}
        if len(sizes) != 1 or -1 in sizes:
            raise InputRejectedError(
                "the inputs differ in their number of instances (first dimension): "
                + ", ".join(f"{k}: {v.shape}" for k, v in inputs.items())
            )
        return sizes.pop()
    return len(inputs)


def _key(inputs: Tensors) -> object:
    if isinstance(inputs, dict):
        return tuple(array.shape[1:] for array in inputs.values())
    return inputs.shape[1:]


def _slice(tensors: Tensors, start: int, stop: int) -> Tensors:
    if isinstance(tensors, dict):
        return {k: v[start:stop] for k, v in tensors.items()}
    return tensors[start:stop]


def _concatenate(parts: list[Any]) -> Tensors:
    first = parts[0]
    if isinstance(first, dict):
        return {k: np.concatenate([part[k] for part in parts]) for k in first}
    return np.concatenate(parts)


def _pad(tensors: Tensors, extra: int) -> Tensors:
    """Repeat the last instance ``extra`` times: valid inputs, whose outputs are dropped."""
    if isinstance(tensors, dict):
        return {
            k: np.concatenate([v, np.repeat(v[-1:], extra, axis=0)]) for k, v in tensors.items()
        }
    return np.concatenate([tensors, np.repeat(tensors[-1:], extra, axis=0)])


def _check_outputs(outputs: Tensors, size: int) -> None:
    arrays = outputs.items() if isinstance(outputs, dict) else [("", outputs)]
    for name, array in arrays:
        if array.ndim == 0 or len(array) != size:
            got = "a scalar" if array.ndim == 0 else f"{len(array)} outputs"
            raise ValueError(f"returned {got}{f' of {name!r}' if name else ''} for {size} inputs")
