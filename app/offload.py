"""CPU-heavy decoding off the event loop: bounded threads, under the request's deadline.

Large images and large JSON bodies take milliseconds to seconds to decode; on the event loop
that would hold every other request up. :func:`off_loop` runs them on decoding threads, at most
``DECODE_THREADS`` at once (one per core: more would not decode faster, and each holds its
decoded pixels in memory). Waiting for a thread and the decode itself count against the
request's deadline (:data:`DEADLINE`, set by :meth:`app.serving.ModelServer.predict`): past it
the request gets a :class:`~app.batching.DeadlineExceededError`; a decode not yet started is
dropped, one already running keeps its thread, and its slot, until it ends, so the bound on
threads and memory holds whatever the clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, TypeVarTuple

from app.batching import DeadlineExceededError
from app.inputs import DECODE_THREADS

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# The event loop time by which the current request must be answered.
DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("deadline")

_EXECUTOR = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode")
# One semaphore per event loop: asyncio's primitives belong to the loop that first waits on them.
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


async def off_loop(fn: Callable[[*Ts], T], *args: *Ts) -> T:
    """``fn(*args)`` on a decoding thread; DeadlineExceededError past the request's deadline."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(DECODE_THREADS)
    try:
        async with asyncio.timeout_at(DEADLINE.get(None)):
            await slots.acquire()
            work = _EXECUTOR.submit(fn, *args)
            # Released when the thread is done (or the work is dropped before it starts),
            # not when this request stops waiting for it.
            work.add_done_callback(lambda _: _release(loop, slots))
            return await asyncio.wrap_future(work, loop=loop)
    except TimeoutError:
        raise DeadlineExceededError("the request was not decoded before its deadline") from None


def _release(loop: asyncio.AbstractEventLoop, slots: asyncio.Semaphore) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits for a slot
        loop.call_soon_threadsafe(slots.release)
