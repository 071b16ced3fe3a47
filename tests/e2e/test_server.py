"""A real ``python -m app`` process: readiness, concurrency, batching, metrics, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODELS, png
from tests.support.ci import not_applicable
from tests.support.server import free_port, server_log, start_server, stop_server
from tests.support.waiting import wait_until

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
    """(model calls, instances) from the model_batch_size histogram, over its versions."""
    count = re.findall(rf'model_batch_size_count{{model="{model}"[^}}]*}} (\S+)', metrics)
    total = re.findall(rf'model_batch_size_sum{{model="{model}"[^}}]*}} (\S+)', metrics)
    return (sum(map(float, count)), sum(map(float, total)))


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
    # ACCESS_LOG=all: the access lines are the server's own count of the answers it sent.
    env = {"MODEL_DIR": str(MODELS), "MAX_QUEUE_SIZE": "100000", "ACCESS_LOG": "all"}
    proc, url = start_server(env, python_m_app=True)
    answered_after_sigterm = 0

    async def load_then_sigterm() -> list[tuple[int, str, int, dict]]:
        nonlocal answered_after_sigterm
        # 80 requests of 100 instances: seconds of model work, so that some is still queued
        # when SIGTERM comes.
        load = asyncio.create_task(mixed_requests(url, 80, per_request=100))
        deadline = time.monotonic() + 60
        while True:  # until the server is busy answering, with more work queued
            metrics = (await asyncio.to_thread(httpx.get, f"{url}/metrics")).text
            done_before = sum(batch_count(metrics, m)[1] for m in ("sentiment", "digits"))
            queued = sum(map(float, re.findall(r"model_queue_depth\{[^}]*\} (\S+)", metrics)))
            if done_before >= 200 and queued > 0:
                break
            assert time.monotonic() < deadline, f"{done_before:g} answered, {queued:g} queued"
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


SENTIMENT_200 = {"endpoint": "/v1/sentiment/predict", "method": "POST", "status": "200"}


def answered_by_each_worker(metrics_dir: Path) -> dict[int, float]:
    """Sentiment 200s counted by each worker, from the file that worker writes its samples
    to (prometheus-client's multiprocess mode: ``counter_<pid>.db``), read one at a time."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        counts[pid] = sum(
            sample.value
            for family in MultiProcessCollector.merge([str(path)])
            for sample in family.samples
            if sample.name == "http_requests_total" and sample.labels == SENTIMENT_200
        )
    return counts


def parent_pid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)[1])


def test_metrics_add_up_across_worker_processes(tmp_path: Path) -> None:
    """Two workers each answer some of the requests (by the samples each wrote itself), and
    ``/metrics``, answered by one of them, shows the sum: exactly the requests sent."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {"MODEL_DIR": str(MODELS), "WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    proc, url = start_server(env, python_m_app=True, ready_timeout_s=120)
    try:
        wait_until(
            lambda: server_log(proc).count("Application startup complete.") == 2,
            "both workers loaded their models",
            within_s=120,
        )
        sent = 0

        async def spread(n: int) -> None:
            # A fresh connection each: the workers take turns accepting them.
            async def one() -> None:
                async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                    r = await client.post("/v1/sentiment/predict", json={"reviews": ["Great fun."]})
                    assert r.status_code == 200, r.text

            await asyncio.gather(*(one() for _ in range(n)))

        def both_workers_answered() -> bool:
            nonlocal sent
            if sum(n > 0 for n in answered_by_each_worker(metrics_dir).values()) >= 2:
                return True
            asyncio.run(spread(20))
            sent += 20
            return False

        wait_until(both_workers_answered, "requests answered by both workers", within_s=120)
        by_worker = answered_by_each_worker(metrics_dir)
        assert sum(by_worker.values()) == sent
        assert all(parent_pid(pid) == proc.pid for pid in by_worker), "not this server's workers"
        assert max(by_worker.values()) < sent  # so no worker's own count is the total

        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        shown = sum(
            sample.value
            for family in text_string_to_metric_families(metrics)
            for sample in family.samples
            if sample.name == "http_requests_total" and sample.labels == SENTIMENT_200
        )
        assert shown == sent, f"/metrics shows {shown:g} of {sent} answered by {by_worker}"
        assert batch_count(metrics, "sentiment")[1] == sent
    finally:
        assert stop_server(proc) == 0


def test_device_gpu_without_a_gpu_stops_start_up() -> None:
    import subprocess
    import sys

    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        not_applicable("this machine has a GPU")
    env = {**os.environ, "MODEL_DIR": str(MODELS), "DEVICE": "gpu", "PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "DEVICE=gpu but TensorFlow sees no GPU" in done.stdout + done.stderr
