"""Error types, and the handlers that turn every failure into a JSON answer.

Every failure has one HTTP status and one machine-readable code, whichever protocol the
request came by: :class:`ServiceError` subclasses carry theirs, and the batcher's errors map
to theirs here. The body is the protocol's (:func:`app.protocols.error_body`). Every error is
logged once, with the request id that the ``X-Request-ID`` header also carries.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from app import batching
from app.protocols import error_body
from app.responses import FastJSONResponse

logger = logging.getLogger("app.errors")


class ServiceError(Exception):
    """An error with its HTTP status and a stable machine-readable code."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(ServiceError):
    status_code, code = 400, "invalid_input"


class InvalidJSON(ServiceError):
    status_code, code = 400, "invalid_json"


class Unauthorized(ServiceError):
    status_code, code = 401, "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"WWW-Authenticate": "Bearer"})


class NotFound(ServiceError):
    status_code, code = 404, "not_found"


class PayloadTooLarge(ServiceError):
    status_code, code = 413, "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status_code, code = 415, "unsupported_media_type"


class Unprocessable(ServiceError):
    status_code, code = 422, "invalid_request"


class ClientDisconnected(ServiceError):
    """The client went away before its answer was ready (nginx's 499; nobody reads it)."""

    status_code, code = 499, "client_closed_request"


class Unavailable(ServiceError):
    status_code, code = 503, "unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"Retry-After": "1"})


# What the batcher raises, as HTTP: (status, code, extra headers).
_BATCHER_ERRORS: dict[type[batching.BatcherError], tuple[int, str, dict[str, str]]] = {
    batching.QueueFullError: (503, "overloaded", {"Retry-After": "1"}),
    batching.BatcherClosedError: (503, "shutting_down", {"Retry-After": "1"}),
    batching.RequestTooLargeError: (413, "too_many_instances", {}),
    batching.InputRejectedError: (400, "invalid_input", {}),
    batching.DeadlineExceededError: (504, "deadline_exceeded", {}),
    batching.BatchFailedError: (500, "model_error", {}),
}

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> Response:
    level = logging.ERROR if status >= 500 else logging.INFO
    logger.log(
        level,
        "request %s: %s %s -> %d %s: %s",
        request_id(request),
        request.method,
        request.url.path,
        status,
        code,
        message,
    )
    body = error_body(request.url.path, code, message)
    return FastJSONResponse(body, status_code=status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    return error_response(request, exc.status_code, exc.code, exc.message, exc.headers)


async def _batcher_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, batching.BatcherError)
    status, code, headers = _BATCHER_ERRORS.get(type(exc), (500, "model_error", {}))
    return error_response(request, status, code, str(exc), headers)


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ServiceError:
    """pydantic's (or FastAPI's) validation errors as one ServiceError: bad JSON is a 400,
    JSON of the wrong shape a 422 naming the first few places."""
    if invalid := next((e for e in errors if e.get("type") == "json_invalid"), None):
        reason = (invalid.get("ctx") or {}).get("error")
        return InvalidJSON("the request body is not valid JSON" + (f": {reason}" if reason else ""))
    details = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in errors[:5]
    )
    return Unprocessable(details or "invalid request")


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = validation_error(exc.errors())
    return error_response(request, error.status_code, error.code, error.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Starlette's: the connection closed while the body was being read.
    return error_response(
        request,
        ClientDisconnected.status_code,
        ClientDisconnected.code,
        "the client closed the connection before sending the whole body",
    )


def unexpected_error(request: Request, exc: Exception) -> Response:
    """A bug's answer: 500 ``internal_error``, the traceback logged once with the request id."""
    logger.error("request %s: unexpected error", request_id(request), exc_info=exc)
    return error_response(request, 500, "internal_error", "internal server error")


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    return unexpected_error(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(batching.BatcherError, _batcher_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    # RequestContextMiddleware answers the errors raised inside it; this is for the rest.
    app.add_exception_handler(Exception, _unexpected_error)
