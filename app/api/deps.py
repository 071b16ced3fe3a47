"""What routes take from the running app: settings, the model server, authentication.

The dependencies are ``async def`` although none awaits anything: FastAPI runs a plain ``def``
dependency on its thread pool, a thread hand-off each, several per request.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from app.config import Settings
from app.errors import ClientDisconnected, Unauthorized, Unavailable, UnsupportedMediaType
from app.serving import ModelServer

T = TypeVar("T")


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_server(request: Request) -> ModelServer:
    server: ModelServer | None = getattr(request.app.state, "server", None)
    if server is None or not server.ready:
        raise Unavailable("the models are not loaded, or the server is shutting down")
    return server


async def require_api_key(request: Request) -> None:
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


async def require_json(request: Request) -> None:
    """415 for a body that is not declared as JSON (FastAPI would otherwise try to guess)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json, not {content_type or 'no content type'}"
        )


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects first.

    Once the body is read, the next ASGI message is ``http.disconnect``, which arrives only if
    the client goes away. Cancelling takes a queued request off its batcher's queue, so it never
    reaches the model.
    """
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await task
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            raise ClientDisconnected("the client closed the connection") from None
        raise
    finally:
        watcher.cancel()
