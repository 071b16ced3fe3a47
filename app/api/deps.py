"""What routes take from the running app: the model server, behind the API key check.

Every model route starts with ``server = authorized_server(request)``: a plain call rather than
a FastAPI dependency, whose per-request bookkeeping costs as much as a model call's share in a
full batch (``docs/performance.md``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from app.access import AccessRecord
from app.errors import ClientDisconnected, Unauthorized, Unavailable, UnsupportedMediaType
from app.serving import ModelServer

T = TypeVar("T")

# How long a request's work may take before its connection is watched for a disconnect.
WATCH_AFTER_S = 0.1


def check_api_key(request: Request) -> None:
    """With ``API_KEYS`` set, ask for ``Authorization: Bearer <key>`` (compared in constant time)."""
    keys = request.app.state.settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("this endpoint needs an 'Authorization: Bearer <key>' header")
    given = token.strip().encode()
    # Compare with every key, so the time taken does not tell which one nearly matched.
    matched = False
    for key in keys:
        matched |= secrets.compare_digest(given, key.get_secret_value().encode())
    if not matched:
        raise Unauthorized("the API key is not valid")


def authorized_server(request: Request) -> ModelServer:
    """The model server, for a caller with a valid API key, between start-up and shutdown."""
    check_api_key(request)
    server: ModelServer | None = getattr(request.app.state, "server", None)
    if server is None or not server.accepting:
        raise Unavailable("the models are not loaded yet, or the server is shutting down")
    return server


def access_record(request: Request) -> AccessRecord | None:
    """The request's access record (:mod:`app.access`), which the middleware put in its scope."""
    state = request.scope.get("state")
    return state.get("access") if state is not None else None


def check_json(request: Request) -> None:
    """415 for a body that is not declared as JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json, not {content_type or 'no content type'}"
        )


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first.

    Once the body is read, the next ASGI message is ``http.disconnect``, which arrives only if
    the client goes away: a watcher task then cancels this one. Cancelling takes a queued
    request off its batcher's queue, so it never reaches the model.

    The watcher starts only once the work has taken ``WATCH_AFTER_S``: most requests are
    answered sooner, and a task per request costs the event loop more than a timer
    (``docs/performance.md``). A client that leaves sooner is noticed then; an answer that
    comes first goes nowhere.
    """
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    assert current is not None
    watcher: asyncio.Task[None] | None = None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await request.receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        current.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(WATCH_AFTER_S, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:
            current.uncancel()
            raise ClientDisconnected("the client closed the connection") from None
        raise
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
