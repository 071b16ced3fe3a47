"""The access line: one log record per request (``ACCESS_LOG=off|errors|all``), and what a
request is for the metrics (which model, which protocol).

:mod:`app.middleware` makes an :class:`AccessRecord` for each request and puts it in the ASGI
scope (``scope["state"]["access"]``, ``request.state.access`` in a route), so that whatever
serves the request can fill in what only it knows: :meth:`app.serving.ModelServer.predict`
the version that answered, the signature, the number of instances, the time it took to decode
them, and the size, queue wait and compute time of the model call that served it (from the
batcher's stamps, :class:`app.batching.Timing`); the route the time to encode the answer. The
middleware writes the line once the answer is sent, with whatever was filled, and gives the
same fields to the request's span when tracing (:func:`app.tracing.request_attributes`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import SecretStr
from starlette.types import Scope

from app.batching import Timing
from app.logs import ACCESS_LOGGER

logger = logging.getLogger(ACCESS_LOGGER)

AccessLog = Literal["off", "errors", "all"]

# The prediction routes of the three protocols: (protocol, model name) from the path alone,
# so that the middleware knows the model before the route runs (in-flight requests).
# tests/unit/test_access.py checks these against every prediction route the app has.
_PREDICTION = re.compile(
    r"/v1/models/(?P<tfserving>[^/:]+)(?:/(?:versions|labels)/[^/:]+)?:(?:predict|classify|regress)"
    r"|/v2/models/(?P<oip>[^/]+)(?:/versions/[^/]+)?/infer"
    r"|/v1/(?P<native>sentiment|digits)/predict"
)


def prediction_target(path: str) -> tuple[str, str] | None:
    """``(protocol, model name)`` of a prediction route's path, else None."""
    match = _PREDICTION.fullmatch(path)
    if match is None:
        return None
    protocol = match.lastgroup
    assert protocol is not None
    return protocol, match[protocol]


@dataclass(slots=True)
class AccessRecord:
    """What a prediction adds to its access line; None: not known (not filled, or not a
    prediction).

    Filled with what costs nothing to keep: the batcher's :class:`Timing` and raw
    ``perf_counter`` differences; :meth:`fields` turns them into the line's keys, only for a
    line (or a span) that is written. Times there in milliseconds, to the microsecond.

    A request larger than ``MAX_BATCH_SIZE`` is split across calls: then ``queue_ms`` runs to
    its first call's start, ``compute_ms`` from there to its last call's end, and
    ``batch_size`` is the largest of its calls.
    """

    model: str | None = None
    version: int | None = None
    signature: str | None = None
    timing: Timing | None = None  # the batcher's, once the request was queued
    decode_s: float | None = None  # the request's body to the model's inputs
    answered_at: float | None = None  # when the outputs came back (perf_counter): encoding
    encode_s: float | None = None  # the outputs to the answer's start (set by the middleware)
    trace_id: str | None = None  # with OPENTELEMETRY=true: the request's trace

    def fields(self) -> dict[str, Any]:
        """The access line's prediction keys, those that are known."""
        found: dict[str, Any] = {}
        if self.model is not None:
            found["model"] = self.model
        if self.version is not None:
            found["version"] = self.version
        if self.signature is not None:
            found["signature"] = self.signature
        timing = self.timing
        if timing is not None:
            found["instances"] = timing.instances
            if timing.calls:
                found["batch_size"] = timing.batch_size
            queue_s, compute_s = timing.queue_s, timing.compute_s
            if queue_s is not None:
                found["queue_ms"] = ms(queue_s)
            if compute_s is not None:
                found["compute_ms"] = ms(compute_s)
        if self.decode_s is not None:
            found["decode_ms"] = ms(self.decode_s)
        if self.encode_s is not None:
            found["encode_ms"] = ms(self.encode_s)
        if self.trace_id is not None:
            found["trace_id"] = self.trace_id
        return found


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def key_id(key: bytes) -> str:
    """A short id of an API key that says which key was used and nothing of the key: the
    first 8 hex digits of its SHA-256 (``printf %s "$KEY" | sha256sum | cut -c1-8``)."""
    return hashlib.sha256(key).hexdigest()[:8]


class AccessLogger:
    """Writes the access line of each request that ``ACCESS_LOG`` asks for."""

    def __init__(self, mode: AccessLog, api_keys: list[SecretStr]) -> None:
        self.mode = mode
        # By each key's digest: the id of the key a request carries is found without keeping
        # or comparing the keys themselves here.
        self._ids = {
            hashlib.sha256(key.get_secret_value().encode()).digest(): key_id(
                key.get_secret_value().encode()
            )
            for key in api_keys
        }

    def wanted(self, status: int) -> bool:
        return (self.mode == "all" or (self.mode == "errors" and status >= 400)) and (
            logger.isEnabledFor(logging.INFO)
        )

    def write(
        self, scope: Scope, request_id: str, status: int, seconds: float, record: AccessRecord
    ) -> None:
        method = scope["method"]
        path = scope["path"]
        client = scope.get("client")
        address = f"{client[0]}:{client[1]}" if client else None
        api_key = self._api_key(scope)
        duration_ms = round(seconds * 1000, 3)
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "client": address,
        }
        if api_key is not None:
            fields["api_key"] = api_key
        fields.update(record.fields())
        # The text is uvicorn's access line with the duration and ids added.
        message = (
            f'{address or "-"} - "{method} {path} HTTP/{scope.get("http_version", "1.1")}" '
            f"{status} {duration_ms:.1f} ms request_id={request_id}"
        )
        if api_key is not None:
            message += f" api_key={api_key}"
        logger.info(message, extra={"fields": fields})

    def _api_key(self, scope: Scope) -> str | None:
        """The id of the API key the request carried; ``invalid`` for a bearer token that is
        none of ``API_KEYS``; None without ``API_KEYS`` or without a token."""
        if not self._ids:
            return None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer" or not token.strip():
                    return None
                return self._ids.get(hashlib.sha256(token.strip()).digest(), "invalid")
        return None
