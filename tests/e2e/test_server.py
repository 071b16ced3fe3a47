"""A real ``python -m app`` process: readiness, concurrency, batching, metrics, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

import httpx
import numpy as np
import pytest

from tests.conftest import MODELS, png
from tests.support.server import free_port, server_log, start_server, stop_server

REVIEWS = [
    "An absolute masterpiece, moving and beautifully acted.",
    "Dull, predictable and far too long. I hated it.",
    "Not bad, though the ending felt rushed.",
    "One of the worst films I have ever seen.",
]


def digit_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    return [png(rng.integers(0, 256, (28, 28))) for _ in range(4)]


def batch_count(metrics: str, model: str) -> tuple[float, float]:
    """(model calls, instances) from the model_batch_size histogram."""
    count = re.search(rf'model_batch_size_count{{model="{model}"}} (\S+)', metrics)
    total = re.search(rf'model_batch_size_sum{{model="{model}"}} (\S+)', metrics)
    return (float(count[1]) if count else 0.0, float(total[1]) if total else 0.0)


async def mixed_requests(
    url: str, n: int, per_request: int = 1
) -> list[tuple[int, str, int, dict]]:
    """n concurrent requests, alternating sentiment and digits: (index, kind, status, body).

    Each request holds ``per_request`` reviews or images.
    """
    images = digit_images()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def one(i: int) -> tuple[int, str, int, dict]:
            try:
                return await send(i)
            except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                # Refused, or closed by a server shutting down before it read the request.
                return i, "refused", 0, {}

        async def send(i: int) -> tuple[int, str, int, dict]:
            if i % 2:
                files = [("file", ("d.png", images[i % 4], "image/png"))] * per_request
                r = await client.post("/v1/digits/predict", files=files)
                return i, "digits", r.status_code, r.json()
            reviews = [REVIEWS[i % 4] * 10] * per_request if per_request > 1 else [REVIEWS[i % 4]]
            r = await client.post("/v1/sentiment/predict", json={"reviews": reviews})
            return i, "sentiment", r.status_code, r.json()

        return await asyncio.gather(*(one(i) for i in range(n)))


@pytest.fixture(scope="module")
def server():
    proc, url = start_server({"MODEL_DIR": str(MODELS)}, python_m_app=True)
    yield proc, url
    stop_server(proc)


def reference_answers(url: str) -> tuple[list[dict], list[dict]]:
    """Each input sent alone, to compare the batched answers with."""
    with httpx.Client(base_url=url) as client:
        scores = [
            client.post("/v1/sentiment/predict", json={"reviews": [r]}).json()["predictions"][0]
            for r in REVIEWS
        ]
        digits = [
            client.post("/v1/digits/predict", files={"file": ("d.png", image)}).json()[
                "predictions"
            ][0]
            for image in digit_images()
        ]
    return scores, digits


def test_concurrent_mixed_requests_are_batched_and_all_correct(server) -> None:
    _, url = server
    expected_scores, expected_digits = reference_answers(url)
    before = httpx.get(f"{url}/metrics").text

    results = asyncio.run(mixed_requests(url, 200))

    for i, kind, status, body in results:
        assert status == 200, (kind, body)
        (prediction,) = body["predictions"]
        if kind == "sentiment":
            assert prediction["label"] == expected_scores[i % 4]["label"]
            assert prediction["score"] == pytest.approx(expected_scores[i % 4]["score"], abs=1e-5)
        else:
            assert prediction["digit"] == expected_digits[i % 4]["digit"]
            np.testing.assert_allclose(
                prediction["probabilities"], expected_digits[i % 4]["probabilities"], atol=1e-5
            )

    after = httpx.get(f"{url}/metrics").text
    for model in ("sentiment", "digits"):
        calls = batch_count(after, model)[0] - batch_count(before, model)[0]
        instances = batch_count(after, model)[1] - batch_count(before, model)[1]
        assert instances == 100
        assert calls < instances, f"{model}: 100 concurrent requests took {calls} model calls"


def test_sigterm_finishes_accepted_requests_then_exits_cleanly() -> None:
    env = {"MODEL_DIR": str(MODELS), "MAX_QUEUE_SIZE": "100000"}
    proc, url = start_server(env, python_m_app=True)
    answered_after_sigterm = 0

    async def load_then_sigterm() -> list[tuple[int, str, int, dict]]:
        nonlocal answered_after_sigterm
        # 80 requests of 100 instances: seconds of model work, so that some is still queued
        # when SIGTERM comes.
        load = asyncio.create_task(mixed_requests(url, 80, per_request=100))
        await asyncio.sleep(0.05)
        before = time.monotonic()
        while time.monotonic() - before < 20:  # until the server is busy answering
            metrics = (await asyncio.to_thread(httpx.get, f"{url}/metrics")).text
            if sum(batch_count(metrics, m)[1] for m in ("sentiment", "digits")) >= 200:
                break
        done_before = sum(batch_count(metrics, m)[1] for m in ("sentiment", "digits"))
        proc.send_signal(signal.SIGTERM)
        results = await load
        answered = sum(100 for *_, status, _ in results if status == 200)
        answered_after_sigterm = answered - done_before
        return results

    try:
        results = asyncio.run(load_then_sigterm())
        accepted = [status for _, kind, status, _ in results if kind != "refused"]
        assert accepted == [200] * len(accepted)
        assert answered_after_sigterm > 0, "no request was in flight at SIGTERM"
        proc.wait(30)
        assert proc.returncode == 0, server_log(proc)[-3000:]
        # Every request the server took in was answered, and the answer reached the client.
        log = server_log(proc)
        answered = len(re.findall(r'"POST /v1/\w+/predict HTTP/1.1" 200', log))
        assert answered == len(accepted), log[-3000:]
        assert "Exception" not in log
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=2)
        assert "answering queued requests first" in log
    finally:
        stop_server(proc)


def test_metrics_add_up_across_worker_processes() -> None:
    proc, url = start_server(
        {"MODEL_DIR": str(MODELS), "WORKERS": "2"}, python_m_app=True, ready_timeout_s=120
    )
    try:
        # Wait until both workers are up, then spread requests over fresh connections.
        time.sleep(5)
        for _ in range(40):
            with httpx.Client(base_url=url) as client:
                r = client.post("/v1/sentiment/predict", json={"reviews": ["Great fun."]})
                assert r.status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        counted = re.search(
            r'http_requests_total{endpoint="/v1/sentiment/predict",method="POST",status="200"} (\S+)',
            metrics,
        )
        assert counted, metrics[:2000]
        assert float(counted[1]) == 40
        assert batch_count(metrics, "sentiment")[1] >= 40
    finally:
        assert stop_server(proc) == 0


def test_device_gpu_without_a_gpu_stops_start_up() -> None:
    import subprocess
    import sys

    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    env = {**os.environ, "MODEL_DIR": str(MODELS), "DEVICE": "gpu", "PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "DEVICE=gpu but TensorFlow sees no GPU" in done.stdout + done.stderr
