"""One pure-ASGI middleware for what every request needs: an id, a body cap, metrics, and a
JSON 500 with that id should a bug escape the routes.

Pure ASGI rather than ``BaseHTTPMiddleware`` so that it costs microseconds on the hot path
and never buffers bodies.
"""

from __future__ import annotations

import os
import re
import time

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import unexpected_error
from app.metrics import observe_request
from app.protocols import error_body

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestContextMiddleware:
    """Request ids (``X-Request-ID``), ``MAX_REQUEST_BYTES``, request counts and latency, 500s."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                await self._reject_too_large(scope, send_with_id, declared)
                return
            await self.app(scope, self._capped(receive), send_with_id)
        except Exception as exc:
            if status:  # the answer has begun: the server can only close the connection
                raise
            # Answered here rather than by Starlette's outermost handler, so that the 500
            # carries the request id too and the traceback is logged once, not re-raised.
            await unexpected_error(Request(scope), exc)(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            observe_request(endpoint, scope["method"], status or 500, time.perf_counter() - started)

    def _capped(self, receive: Receive) -> Receive:
        """``receive`` that raises a 413 HTTPException once more than the cap has arrived.

        An HTTPException, not PayloadTooLarge: FastAPI turns anything else raised while it
        reads a JSON body into "400 There was an error parsing the body".
        """
        received = 0

        async def receive_capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise HTTPException(
                        413, f"the request body is over MAX_REQUEST_BYTES={self.max_body_bytes}"
                    )
            return message

        return receive_capped

    async def _reject_too_large(self, scope: Scope, send: Send, declared: int) -> None:
        message = (
            f"the request body has {declared} bytes; MAX_REQUEST_BYTES is {self.max_body_bytes}"
        )
        body = orjson.dumps(error_body(scope["path"], "payload_too_large", message))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _CLIENT_ID.fullmatch(candidate):
                return candidate
    return os.urandom(16).hex()  # as random as uuid4().hex, and cheaper


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
