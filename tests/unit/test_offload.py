"""Decoding off the event loop: at most DECODE_THREADS at once, under the request's deadline.

The deadline is what these tests are about, so they set short ones; everything else waits on
what the fake decoder and the semaphore show.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from app import offload
from app.batching import DeadlineExceededError
from app.inputs import DECODE_THREADS
from app.offload import DEADLINE, off_loop


class Blocking:
    """A decode that says when it has started and runs until released."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            self.started += 1
        self.release.wait(30)
        with self._lock:
            self.finished += 1
        return "decoded"


async def until(condition: Callable[[], bool], within_s: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, "the condition did not come true"
        await asyncio.sleep(0.005)


def free_slots() -> int:
    return offload._slots[asyncio.get_running_loop()]._value


async def with_deadline(seconds: float, decode: Blocking) -> str:
    DEADLINE.set(asyncio.get_running_loop().time() + seconds)
    return await off_loop(decode)


async def test_decodes_run_at_most_one_per_slot_and_queue_for_the_rest() -> None:
    decode = Blocking()
    tasks = [asyncio.create_task(off_loop(decode)) for _ in range(DECODE_THREADS + 2)]
    await until(lambda: decode.started == DECODE_THREADS)
    slots = offload._slots[asyncio.get_running_loop()]
    await until(lambda: len(slots._waiters or ()) == 2)  # the other two wait for a slot
    assert decode.started == DECODE_THREADS
    decode.release.set()
    assert await asyncio.gather(*tasks) == ["decoded"] * (DECODE_THREADS + 2)
    await until(lambda: free_slots() == DECODE_THREADS)


async def test_waiting_for_a_slot_past_the_deadline_is_a_504_and_never_decodes() -> None:
    busy = Blocking()
    holders = [asyncio.create_task(off_loop(busy)) for _ in range(DECODE_THREADS)]
    await until(lambda: busy.started == DECODE_THREADS)
    late = Blocking()
    with pytest.raises(DeadlineExceededError):
        await asyncio.create_task(with_deadline(0.05, late))
    busy.release.set()
    await asyncio.gather(*holders)
    assert late.started == 0


async def test_a_decode_past_its_deadline_keeps_its_slot_until_it_ends() -> None:
    decode = Blocking()
    with pytest.raises(DeadlineExceededError):
        await asyncio.create_task(with_deadline(0.05, decode))
    assert decode.started == 1
    assert free_slots() == DECODE_THREADS - 1  # its thread still runs: the bound holds
    decode.release.set()
    await until(lambda: free_slots() == DECODE_THREADS)
    assert decode.finished == 1
