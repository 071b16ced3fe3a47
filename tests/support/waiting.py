"""Wait for a condition, never for a fixed time: the tests' one way of letting something happen.

``until`` (in a coroutine) and ``wait_until`` (in plain code) poll ``condition`` until it holds
and fail the test, saying ``what`` was awaited, once ``within_s`` has passed (``what`` may be a
function, called then, so that the message can show the state the test got stuck in). The
deadline is only there to turn a hang into a failure: it is generous, so that a loaded machine
makes a test slower, never red.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")

DEADLINE_S = 30.0


Message = str | Callable[[], str]


def _fail(what: Message, within_s: float) -> None:
    pytest.fail(f"not within {within_s:g} s: {what() if callable(what) else what}")


async def until(
    condition: Callable[[], T],
    what: Message,
    *,
    within_s: float = DEADLINE_S,
    poll_s: float = 0.001,
) -> T:
    """Let the event loop run until ``condition()`` is truthy; return that value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not (value := condition()):
        if loop.time() > deadline:
            _fail(what, within_s)
        await asyncio.sleep(poll_s)
    return value


def wait_until(
    condition: Callable[[], T], what: Message, *, within_s: float = DEADLINE_S, poll_s: float = 0.02
) -> T:
    """Block until ``condition()`` is truthy; return that value."""
    deadline = time.monotonic() + within_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            _fail(what, within_s)
        time.sleep(poll_s)
    return value
