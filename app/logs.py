"""The service's logging: plain text for a terminal, or one JSON object a line (``LOG_FORMAT``).

Every logger goes through the root logger's one handler: the service's (``app.*``),
uvicorn's (``uvicorn.error``; its access log is replaced by the service's own, ``app.access``,
written by :mod:`app.middleware`) and TensorFlow's Python loggers (``tensorflow``, ``absl``).

With ``LOG_FORMAT=json`` each record is one object with ``time`` (RFC 3339, UTC), ``level``,
``logger``, ``message``; ``request_id`` while a request is being handled (:data:`request_id`,
set by the middleware); ``exception`` for a traceback; and the record's ``fields`` (the access
line's). ``python -m app`` also routes what the process writes to its stdout and stderr outside
logging, TensorFlow's C++ warnings above all, through :func:`capture_output`, which wraps each
such line in an object of its own, so the stream stays one JSON object a line.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

# The id of the request being handled, where one is (app.middleware sets it for each request).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(levelname)s: %(name)s: %(message)s"
ACCESS_LOGGER = "app.access"

# Where this process's log records go: the real stderr once capture_output() has put a pipe
# in its place, else sys.stderr as it is when a handler is made.
_output: TextIO | None = None


def rfc3339(created: float) -> str:
    """``2025-01-31T12:34:56.789Z``: the record's time in UTC, to the millisecond."""
    seconds = int(created)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int((created - seconds) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        fields = record.__dict__.get("fields")
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class OutputHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler on the process's log output (see :func:`capture_output`)."""

    def __init__(self) -> None:
        super().__init__(_output or sys.stderr)


def log_config(level: str, log_format: str) -> dict[str, Any]:
    """The ``logging.config`` dict for ``LOG_LEVEL`` and ``LOG_FORMAT``, for uvicorn's
    ``log_config`` (applied in each worker process) and :func:`configure`."""
    formatter: dict[str, Any] = (
        {"()": "app.logs.JsonFormatter"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"app": formatter},
        "handlers": {"app": {"()": "app.logs.OutputHandler", "formatter": "app"}},
        "loggers": {
            # uvicorn's own handlers go: its records reach the root handler like any other.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            # No handler and no propagation: uvicorn sees no handler and writes no access line
            # (app.middleware writes the service's, as ACCESS_LOG says).
            "uvicorn.access": {"handlers": [], "propagate": False},
            # ACCESS_LOG, not LOG_LEVEL, decides which access lines are written.
            ACCESS_LOGGER: {"level": "INFO"},
        },
        "root": {"handlers": ["app"], "level": level.upper()},
    }


def take_over_access_log() -> None:
    """No access line from uvicorn, however it was started (without a handler it does not even
    format one): :mod:`app.middleware` writes the service's, at INFO whatever ``LOG_LEVEL``."""
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)


def configure(level: str, log_format: str) -> None:
    """Apply :func:`log_config`; with JSON, Python's warnings are logged too, as records."""
    logging.config.dictConfig(log_config(level, log_format))
    logging.captureWarnings(log_format == "json")


# ---- what the process writes outside logging -----------------------------------------------

# TensorFlow's C++ log lines, in its two formats:
#   2025-01-31 12:34:56.789012: W tensorflow/core/framework/op.cc:12] message
#   E0000 00:00:1738326896.789012   12345 cuda_dnn.cc:8310] message
_NATIVE = re.compile(
    rb"(?:\d{4}-\d\d-\d\d [\d:.]+: ([IWEF]) |([IWEF])\d{4} [\d:.]+\s+\d+ )(\S+:\d+)\] ?(.*)"
)
_NATIVE_LEVELS = {b"I": "INFO", b"W": "WARNING", b"E": "ERROR", b"F": "CRITICAL"}


def wrap_line(line: bytes, now: float) -> bytes:
    """A line written outside logging, as a JSON log line (one that is one already, as is).

    TensorFlow's C++ lines keep their level and source; anything else is a ``WARNING`` of the
    ``stderr`` logger, the line as its message.
    """
    if line.startswith(b"{") and line.endswith(b"}"):
        return line
    text = line.decode(errors="replace")
    native = _NATIVE.fullmatch(line)
    if native:
        letter = native[1] or native[2]
        entry = {
            "time": rfc3339(now),
            "level": _NATIVE_LEVELS[letter],
            "logger": "tensorflow.native",
            "message": native[4].decode(errors="replace"),
            "source": native[3].decode(errors="replace"),
        }
    else:
        entry = {"time": rfc3339(now), "level": "WARNING", "logger": "stderr", "message": text}
    return orjson.dumps(entry)


class CapturedOutput:
    """File descriptors 1 and 2 of this process (and of the worker processes it starts, which
    inherit them) are a pipe; a thread copies each line to the real stderr, through
    :func:`wrap_line`. The service's own log records skip the pipe (:class:`OutputHandler`
    writes to the real stderr), so only the rare foreign line costs the relay anything."""

    def __init__(self) -> None:
        self._real = os.dup(2)
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        os.close(write_end)
        self._read_end = read_end
        self.output = os.fdopen(os.dup(self._real), "w", buffering=1, encoding="utf-8")
        self._thread = threading.Thread(target=self._relay, name="log-relay", daemon=True)
        self._thread.start()

    def _relay(self) -> None:
        pending = b""
        while chunk := os.read(self._read_end, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            out = [wrap_line(line, time.time()) for line in lines if line.strip()]
            if out:
                os.write(self._real, b"\n".join(out) + b"\n")
        if pending.strip():
            os.write(self._real, wrap_line(pending, time.time()) + b"\n")

    def close(self, timeout_s: float = 2.0) -> None:
        """Put the real stderr back on 1 and 2 and let the relay write what it still holds."""
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._real, 1)
        os.dup2(self._real, 2)
        self._thread.join(timeout_s)  # ends at end of file: when no process holds the pipe


@contextmanager
def captured_output(enabled: bool = True) -> Iterator[None]:
    """Capture while in the block (``python -m app`` with ``LOG_FORMAT=json``, around uvicorn);
    log handlers made meanwhile in this process write to the real stderr."""
    global _output
    if not enabled:
        yield
        return
    captured = CapturedOutput()
    _output = captured.output
    try:
        yield
    finally:
        captured.close()
        _output = None
