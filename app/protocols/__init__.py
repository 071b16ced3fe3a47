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


def error_responses(schema: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route answers, with its protocol's error body."""
    return {status: {"model": schema} for status in statuses}
