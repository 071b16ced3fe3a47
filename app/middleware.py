"""One pure-ASGI middleware for what every request needs: an id, a body cap, metrics, the
access line, and a JSON 500 with that id should a bug escape the routes.

The id is the request's ``X-Request-ID`` (a well-formed one the client sent, else a new one):
in the answer's header, in every log record written while the request is handled
(:data:`app.logs.request_id`), in its access line (:mod:`app.access`) and, when tracing
(``OPENTELEMETRY=true``), on its span with the access line's prediction fields; the access line
then carries the trace's id.

Pure ASGI rather than ``BaseHTTPMiddleware`` so that it costs microseconds on the hot path
and never buffers bodies.
"""

from __future__ import annotations

import os
import re
import time

import orjson
from opentelemetry import trace
from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import metrics
from app.access import AccessLog, AccessLogger, AccessRecord, prediction_target
from app.errors import unexpected_error
from app.logs import request_id as current_request_id
from app.protocols import error_body
from app.tracing import request_attributes

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestContextMiddleware:
    """Request ids (``X-Request-ID``), ``MAX_REQUEST_BYTES``, request counts and latency, the
    access line (``ACCESS_LOG``), 500s."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        access_log: AccessLog = "off",
        api_keys: list[SecretStr] | None = None,
        tracing: bool = False,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access = AccessLogger(access_log, api_keys or [])
        self.tracing = tracing  # FastAPI's request spans are on: add to them

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        id_token = current_request_id.set(request_id)
        record = AccessRecord()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["access"] = record
        target = prediction_target(scope["path"]) if scope["method"] == "POST" else None
        if target is not None:
            protocol, record.model = target
            model = metrics.model_label(record.model)
            metrics.request_started(model)
        id_header = (b"x-request-id", request_id.encode())
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), id_header]
                if record.answered_at is not None:  # a prediction: its encoding ends here
                    record.encode_s = time.perf_counter() - record.answered_at
                if self.tracing:  # before the answer ends, which ends FastAPI's span
                    self._add_to_span(scope, request_id, record)
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
            seconds = time.perf_counter() - started
            status = status or 500
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            metrics.observe_request(endpoint, scope["method"], status, seconds)
            if target is not None:
                version = str(record.version) if record.version is not None else ""
                metrics.request_done(model, version, protocol, status, seconds)
            if self.access.wanted(status):
                if self.tracing:
                    context = trace.get_current_span().get_span_context()
                    if context.is_valid:
                        record.trace_id = trace.format_trace_id(context.trace_id)
                self.access.write(scope, request_id, status, seconds, record)
            current_request_id.reset(id_token)

    @staticmethod
    def _add_to_span(scope: Scope, request_id: str, record: AccessRecord) -> None:
        """The request's ``encode`` span (from the record's stamps) and its attributes."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        server = getattr(scope["app"].state, "server", None)
        if record.answered_at is not None and server is not None and server.tracing is not None:
            server.tracing.encoded(record.answered_at)
        span.set_attributes(request_attributes(request_id, record))

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
