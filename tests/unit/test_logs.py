"""LOG_FORMAT: the JSON formatter's objects, the text format's lines, and the wrapping of what
the process writes outside logging (TensorFlow's C++ lines above all)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta

import pytest

from app.logs import JsonFormatter, log_config, request_id, rfc3339, wrap_line


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("app.test")
    return logger.makeRecord(
        "app.test", logging.WARNING, __file__, 1, message, args, None, extra=extra
    )


def test_json_lines_have_the_keys_and_an_rfc3339_utc_time() -> None:
    record = _record("model %s is %s", "digits", "ready")
    entry = json.loads(JsonFormatter().format(record))
    assert entry.keys() == {"time", "level", "logger", "message"}
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "app.test"
    assert entry["message"] == "model digits is ready"
    parsed = datetime.fromisoformat(entry["time"])
    assert parsed.utcoffset() == timedelta(0)
    assert abs(parsed.timestamp() - record.created) < 0.001


@pytest.mark.parametrize("created", [0.0, 1738326896.0005, 1738326896.9999])
def test_rfc3339_is_the_utc_time_to_the_millisecond(created: float) -> None:
    text = rfc3339(created)
    assert text.endswith("Z")
    expected = datetime.fromtimestamp(created, UTC)
    assert abs(datetime.fromisoformat(text).timestamp() - expected.timestamp()) < 0.001
    assert text[:19] == expected.strftime("%Y-%m-%dT%H:%M:%S")


def test_json_lines_carry_the_request_id_the_fields_and_a_traceback_on_one_line() -> None:
    token = request_id.set("req-1")
    try:
        record = _record("access", fields={"status": 503, "path": "/v1/x"})
        try:
            raise RuntimeError("boom\non two lines")
        except RuntimeError:
            record.exc_info = sys.exc_info()
        line = JsonFormatter().format(record)
    finally:
        request_id.reset(token)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["request_id"] == "req-1"
    assert entry["status"] == 503
    assert entry["path"] == "/v1/x"
    assert "RuntimeError: boom\non two lines" in entry["exception"]
    assert "request_id" not in json.loads(JsonFormatter().format(_record("outside")))


def test_the_text_format_stays_the_terminals() -> None:
    config = log_config("info", "text")
    formatter = logging.Formatter(config["formatters"]["app"]["format"])
    assert formatter.format(_record("ready: %s", "digits")) == "WARNING: app.test: ready: digits"
    assert config["loggers"]["uvicorn.access"] == {"handlers": [], "propagate": False}


@pytest.mark.parametrize(
    ("line", "level", "logger", "message"),
    [
        (
            b"I0000 00:00:1796290161.917290   10932 port.cc:153] oneDNN custom operations are on.",
            "INFO",
            "tensorflow.native",
            "oneDNN custom operations are on.",
        ),
        (
            b"E0000 00:00:1796290164.544368   10932 cuda_platform.cc:52] failed call to cuInit",
            "ERROR",
            "tensorflow.native",
            "failed call to cuInit",
        ),
        (
            b"2025-01-31 12:34:56.789012: W tensorflow/core/framework/op.cc:12] an old format",
            "WARNING",
            "tensorflow.native",
            "an old format",
        ),
        (
            b"Traceback (most recent call last):",
            "WARNING",
            "stderr",
            "Traceback (most recent call last):",
        ),
        (b'  File "x.py", line 1, in <module> \xff', "WARNING", "stderr", None),
    ],
)
def test_lines_written_outside_logging_are_wrapped(
    line: bytes, level: str, logger: str, message: str | None
) -> None:
    entry = json.loads(wrap_line(line, 1738326896.5))
    assert entry["time"] == "2025-01-31T12:34:56.500Z"
    assert (entry["level"], entry["logger"]) == (level, logger)
    if message is not None:
        assert entry["message"] == message


def test_json_lines_pass_through_unwrapped() -> None:
    line = b'{"time":"2025-01-31T12:34:56.500Z","level":"INFO","logger":"app","message":"hi"}'
    assert wrap_line(line, 0.0) == line
