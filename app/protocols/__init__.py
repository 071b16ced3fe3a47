"""The wire protocols the service speaks, one folder each, every folder read the same way.

* ``__init__.py``: where the protocol lives (:func:`owns`, by path) and the body of its errors
  (:func:`error_body`);
* ``routes.py``: its HTTP routes. Each predict route checks the caller
  (:func:`app.api.deps.authorized_server`), reads the body and hands it, with the codec, to
  :meth:`app.serving.ModelServer.predict`, the one path into the models for every protocol;
* ``codec.py``: the wire format to the model's NumPy batch and back, nothing of HTTP; what
  cannot be served raises one of :mod:`app.errors`' exceptions;
* ``schemas.py``: the OpenAPI documentation of its bodies, where FastAPI cannot infer it.

To add a protocol, copy the folder closest to it, add the package to :data:`PROTOCOLS` and its
router to :func:`app.main.create_app`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import BaseModel

from app.protocols import native, oip, tfserving


class WireProtocol(Protocol):
    """What a protocol package's ``__init__`` provides."""

    def owns(self, path: str) -> bool: ...

    def error_body(self, code: str, message: str) -> dict[str, Any]: ...


# The first whose owns() is true answers a path's errors; native owns every other path.
PROTOCOLS: tuple[WireProtocol, ...] = (tfserving, oip, native)


def error_body(path: str, code: str, message: str) -> dict[str, Any]:
    """The error body of the protocol that owns ``path``: the one place that decides it."""
    for protocol in PROTOCOLS:
        if protocol.owns(path):
            return protocol.error_body(code, message)
    return native.error_body(code, message)


# An error's example in the OpenAPI document: its code and its message, as the route answers.
ErrorExample = tuple[str, str]
ErrorBody = Callable[[str, str], dict[str, Any]]

UNAUTHORIZED: ErrorExample = (
    "unauthorized",
    "this endpoint needs an 'Authorization: Bearer <key>' header",
)
NOT_READY: ErrorExample = (
    "unavailable",
    "the models are not loaded yet, or the server is shutting down",
)
UNKNOWN_MODEL: ErrorExample = (
    "not_found",
    "model 'digtis' is not served (served: digits, half_plus_two, sentiment)",
)
BODY_TOO_LARGE: ErrorExample = (
    "payload_too_large",
    "the request body has 11000001 bytes; MAX_REQUEST_BYTES is 10485760",
)


def model_call_errors(model: str) -> dict[int, ErrorExample]:
    """What any predict route may answer once its body is read, as it reads for ``model``."""
    return {
        503: (
            "overloaded",
            f"model {model!r} has 1024 instances queued (MAX_QUEUE_SIZE=1024); retry shortly",
        ),
        504: ("deadline_exceeded", f"model {model!r} did not answer within 10 s"),
        500: ("model_error", f"model {model!r} failed: ResourceExhaustedError: out of memory"),
    }


def error_responses(
    schema: type[BaseModel], body: ErrorBody, examples: Mapping[int, ErrorExample]
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route answers: its protocol's error body
    (``schema``, ``body``), each with an example of its own, so that the docs of one route
    never show another's error."""
    return {
        status: {"model": schema, "content": {"application/json": {"example": body(*example)}}}
        for status, example in sorted(examples.items())
    }
