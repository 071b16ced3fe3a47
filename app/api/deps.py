"""What routes take from the running app: the model server, behind the API key check.

Every route under ``/v1`` starts with ``server = authorized_server(request)``: a plain call,
not a FastAPI dependency, whose bookkeeping costs some 25 us per dependency and request, as
much as a model call's share in a full batch (``make bench``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from app.errors import ClientDisconnected, Unauthorized, Unavailable, UnsupportedMediaType
from app.serving import ModelServer

T = TypeVar("T")


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
    """The model server, for a caller with a valid API key, once every model is ready."""
    check_api_key(request)
    server: ModelServer | None = getattr(request.app.state, "server", None)
    if server is None or not server.ready:
        raise Unavailable("the models are not loaded, or the server is shutting down")
    return server


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
    """
    current = asyncio.current_task()
    assert current is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await request.receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        current.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:
            current.uncancel()
            raise ClientDisconnected("the client closed the connection") from None
        raise
    finally:
        watcher.cancel()
