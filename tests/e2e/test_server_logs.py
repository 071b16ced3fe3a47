"""``LOG_FORMAT=json`` on the real server (``python -m app``): every line it writes, from
start-up to exit, is one JSON object, under concurrent load and on errors (4xx, a model call
that fails, and TensorFlow's own start-up lines); a request's ``X-Request-ID`` finds its
access line, with the keys docs/operations.md lists (a prediction's timings among them, their
sum within the request's duration), and the error records written for it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import tensorflow as tf

from app.access import key_id
from tests.support.server import server_log, start_server, stop_server

MODELS = Path(__file__).resolve().parents[2] / "models"
KEYS = ("log-test-key-alpha-0001", "log-test-key-beta-0002")
ACCESS_KEYS = {"request_id", "method", "path", "status", "duration_ms", "client"}
# A prediction's, in the order they happen; encoding only for an answer that was encoded.
TIMES = ("decode_ms", "queue_ms", "compute_ms", "encode_ms")
PREDICTION_KEYS = {"version", "signature", "instances", "batch_size", *TIMES}
INSTANCES = {"/v1/sentiment/predict": 2, "/v1/models/sentiment:predict": 1}
MAX_REQUEST_BYTES = 64 * 1024
MODEL_OF_PATH = {
    "/v1/sentiment/predict": "sentiment",
    "/v1/models/sentiment:predict": "sentiment",
    "/v1/models/nope:predict": "nope",
    "/v1/models/non_negative:predict": "non_negative",
}


class NonNegative(tf.Module):
    """float32[-1] -> float32[-1], failing on a negative number with a model error (a 500: it
    reads a file that is not there; a refused input, InvalidArgument, would be a 400)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        failed = tf.cond(
            tf.reduce_min(x) < 0,
            lambda: tf.strings.length(tf.io.read_file("/nonexistent/negative input")),
            lambda: tf.constant(0),
        )
        return {"y": x * 2.0 + tf.cast(failed, tf.float32)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    for name in ("sentiment", "digits"):
        shutil.copytree(MODELS / name / "1", folder / name / "1")
    module = NonNegative()
    tf.saved_model.save(
        module, str(folder / "non_negative" / "1"), signatures={"serving_default": module.serve}
    )
    return folder


# (request id, method, path, headers, body, expected status, expected api_key field)
Request = tuple[str, str, str, dict[str, str], bytes, int, str | None]


def _requests() -> list[Request]:
    auth = [{"Authorization": f"Bearer {key}"} for key in KEYS]
    ids = [key_id(key.encode()) for key in KEYS]
    json_type = {"Content-Type": "application/json"}
    sentiment = json.dumps({"reviews": ["A fine film.", "Dull."]}).encode()
    instances = json.dumps({"instances": ["A fine film."]}).encode()
    requests: list[Request] = []
    for i in range(60):
        requests.append(
            (f"native-{i}", "POST", "/v1/sentiment/predict", {**auth[i % 2], **json_type},
             sentiment, 200, ids[i % 2])
        )  # fmt: skip
    for i in range(30):
        requests.append(
            (f"tfs-{i}", "POST", "/v1/models/sentiment:predict", {**auth[0], **json_type},
             instances, 200, ids[0])
        )  # fmt: skip
    oversized = b'{"reviews": ["' + b"x" * MAX_REQUEST_BYTES + b'"]}'
    requests += [
        ("no-key", "POST", "/v1/sentiment/predict", json_type, sentiment, 401, None),
        ("bad-key", "POST", "/v1/sentiment/predict",
         {"Authorization": "Bearer not-a-key", **json_type}, sentiment, 401, "invalid"),
        ("no-model", "POST", "/v1/models/nope:predict", {**auth[0], **json_type}, instances, 404,
         ids[0]),
        ("bad-json", "POST", "/v1/sentiment/predict", {**auth[0], **json_type}, b"{", 400, ids[0]),
        ("too-big", "POST", "/v1/sentiment/predict", {**auth[0], **json_type}, oversized, 413,
         ids[0]),
        ("model-fails", "POST", "/v1/models/non_negative:predict", {**auth[1], **json_type},
         b'{"instances": [1.0, -1.0]}', 500, ids[1]),
        ("health", "GET", "/healthz", {}, b"", 200, None),
    ]  # fmt: skip
    return requests


async def _send(url: str, requests: list[Request]) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(request: Request) -> tuple[str, int]:
            rid, method, path, headers, body, _, _ = request
            response = await client.request(
                method, path, content=body or None, headers={**headers, "X-Request-ID": rid}
            )
            assert response.headers["x-request-id"] == rid
            return rid, response.status_code

        return dict(await asyncio.gather(*(one(request) for request in requests)))


def _parse(log: str) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(log.splitlines(), 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"line {number} is not JSON: {line[:300]!r}")
        assert isinstance(entry, dict), f"line {number} is not an object: {line[:300]!r}"
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
        time = datetime.fromisoformat(entry["time"])
        assert time.utcoffset() == timedelta(0), entry["time"]
        entries.append(entry)
    return entries


def _check_prediction(line: dict[str, Any], instances: int) -> None:
    """An answered prediction's access line: which version served it, how, how long each step."""
    assert line.keys() >= PREDICTION_KEYS, line
    assert (line["version"], line["signature"]) == (1, "serving_default"), line
    assert line["instances"] == instances, line
    assert instances <= line["batch_size"] <= 64, line  # MAX_BATCH_SIZE
    assert all(line[time] >= 0 for time in TIMES), line
    assert line["compute_ms"] > 0, line
    # One after the other, inside the request's time from arrival to answer.
    assert sum(line[time] for time in TIMES) <= line["duration_ms"], line


def test_every_line_is_json_and_each_request_id_finds_its_access_line(model_dir: Path) -> None:
    env = {
        "MODEL_DIR": str(model_dir),
        "LOG_FORMAT": "json",
        "ACCESS_LOG": "all",
        "API_KEYS": ",".join(KEYS),
        "MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
    }
    requests = _requests()
    proc, url = start_server(env, python_m_app=True, ready_timeout_s=120)
    try:
        statuses = asyncio.run(_send(url, requests))
    finally:
        exit_status = stop_server(proc)
    log = server_log(proc)
    assert exit_status == 0, log[-3000:]
    entries = _parse(log)

    assert {rid: status for rid, *_, status, _ in requests} == statuses
    access = [entry for entry in entries if entry["logger"] == "app.access"]
    by_id = Counter(entry["request_id"] for entry in access)
    for rid, method, path, _, _, status, api_key in requests:
        assert by_id[rid] == 1, f"{rid}: {by_id[rid]} access lines"
        (line,) = (entry for entry in access if entry["request_id"] == rid)
        assert line.keys() >= ACCESS_KEYS, line
        assert (line["method"], line["path"], line["status"]) == (method, path, status)
        assert line["duration_ms"] > 0
        assert line["client"].startswith("127.0.0.1:")
        assert line.get("api_key") == api_key, line
        assert line.get("model") == MODEL_OF_PATH.get(path), line
        if status == 200 and path in INSTANCES:
            _check_prediction(line, INSTANCES[path])
    # A failed model call: the version, the call's figures, no encoding; an unknown model:
    # nothing of a version.
    (failed,) = (entry for entry in access if entry["request_id"] == "model-fails")
    assert PREDICTION_KEYS - failed.keys() == {"encode_ms"}, failed
    assert (failed["version"], failed["instances"], failed["batch_size"]) == (1, 2, 2)
    (unknown,) = (entry for entry in access if entry["request_id"] == "no-model")
    assert not PREDICTION_KEYS & unknown.keys(), unknown
    # Errors: each one's own record carries the request's id (a body refused by its declared
    # length, before any route, has only its access line); the failed model call (a batch, not
    # a request) is logged once with its traceback inside one object.
    errors = [entry for entry in entries if entry["logger"] == "app.errors"]
    for rid in ("no-key", "bad-key", "no-model", "bad-json", "model-fails"):
        assert any(entry.get("request_id") == rid for entry in errors), rid
    (failed_call,) = [entry for entry in entries if "failed on a batch" in entry["message"]]
    assert "negative input" in failed_call["exception"]
    # uvicorn's own lines are there, its access log is not; the keys never are.
    loggers = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "app", "app.access"} <= loggers
    assert "uvicorn.access" not in loggers
    for key in KEYS:
        assert key not in log
