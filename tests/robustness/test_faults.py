"""Model calls that raise or hang, injected by ``tests.support.faulty_app`` (a test-only hook).

A raising model call fails its whole batch with 500 ``model_error``; a call that hangs longer
than REQUEST_TIMEOUT_S (1 s here) gives 504 ``deadline_exceeded`` to whoever waits on it;
health stays green throughout and, once the fault is gone, requests succeed again. A request
whose client leaves while it waits for the model is taken off the queue.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.robustness.helpers import API_KEYS, REVIEWS, Server, digit_image, encode
from tests.support.server import server_log

AUTH = {"Authorization": f"Bearer {API_KEYS[1]}"}
SENTIMENT = "/v1/sentiment/predict"


@pytest.fixture
def faulty(faulty_server: Server) -> Iterator[Server]:
    faulty_server.fault("")
    yield faulty_server
    faulty_server.fault("")
    _wait_until_healthy(faulty_server)


def _wait_until_healthy(server: Server, within_s: float = 15) -> float:
    """Seconds until a prediction succeeds again (a hung call may still be running)."""
    started = time.monotonic()
    while True:
        response = httpx.post(
            f"{server.url}{SENTIMENT}", json={"reviews": ["fine"]}, headers=AUTH, timeout=10
        )
        if response.status_code == 200:
            return time.monotonic() - started
        assert response.status_code == 504, response.text
        assert time.monotonic() - started < within_s, "the model never recovered"
        time.sleep(0.2)


async def _concurrent(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client:
        return await asyncio.gather(
            *(client.post(SENTIMENT, json={"reviews": [REVIEWS[i % 4]]}) for i in range(n))
        )


def test_a_bug_gets_a_json_500_with_its_request_id_and_one_logged_traceback(
    faulty: Server,
) -> None:
    log_start = len(server_log(faulty.proc))
    response = httpx.get(f"{faulty.url}/faults/bug", headers={"X-Request-ID": "bug-1"}, timeout=10)
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal server error"}
    }
    assert response.headers["x-request-id"] == "bug-1"
    assert httpx.get(f"{faulty.url}/healthz", timeout=10).status_code == 200
    log = server_log(faulty.proc)[log_start:]
    assert log.count("Traceback") == 1, log
    assert "request bug-1: unexpected error" in log
    assert "RuntimeError: injected bug" in log
    metrics = httpx.get(f"{faulty.url}/metrics", timeout=10).text
    assert 'http_requests_total{endpoint="/faults/bug",method="GET",status="500"} 1.0' in metrics


def test_raising_model_fails_its_batch_with_500(faulty: Server) -> None:
    faulty.fault("raise")
    responses = asyncio.run(_concurrent(faulty.url, 8))
    assert {r.status_code for r in responses} == {500}
    for response in responses:
        assert response.json()["error"]["code"] == "model_error"
        assert "injected fault" in response.json()["error"]["message"]
    # The TF Serving API answers in its own error format.
    response = httpx.post(
        f"{faulty.url}/v1/models/sentiment:predict",
        json={"instances": ["fine"]},
        headers=AUTH,
        timeout=10,
    )
    assert response.status_code == 500
    assert "injected fault" in response.json()["error"]
    upload = {"file": ("d.png", encode(digit_image(), "PNG"), "image/png")}
    response = httpx.post(f"{faulty.url}/v1/digits/predict", files=upload, headers=AUTH)
    assert response.status_code == 500
    assert httpx.get(f"{faulty.url}/healthz").status_code == 200
    assert httpx.get(f"{faulty.url}/readyz").status_code == 200

    faulty.fault("")
    responses = asyncio.run(_concurrent(faulty.url, 8))
    assert [r.status_code for r in responses] == [200] * 8


def test_model_with_too_few_outputs_fails_its_batch(faulty: Server) -> None:
    faulty.fault("short")
    responses = asyncio.run(_concurrent(faulty.url, 4))
    assert {r.status_code for r in responses} == {500}
    assert all(r.json()["error"]["code"] == "model_error" for r in responses)
    faulty.fault("")
    assert _wait_until_healthy(faulty) < 5


def test_a_queued_request_whose_client_left_never_reaches_the_model(faulty: Server) -> None:
    # Before the other hanging tests: both model threads must be free when it starts.
    faulty.fault("hang:3")

    def sentiment_depth() -> float:
        metrics = httpx.get(f"{faulty.url}/metrics", timeout=5).text
        return float(re.search(r'model_queue_depth\{model="sentiment"\} (\S+)', metrics)[1])

    def post(review: str) -> int:
        response = httpx.post(
            f"{faulty.url}{SENTIMENT}", json={"reviews": [review]}, headers=AUTH, timeout=30
        )
        return response.status_code

    with ThreadPoolExecutor(2) as pool:
        # One call per model thread (MAX_CONCURRENT_BATCHES=2), each hanging for 3 s.
        hung = [pool.submit(post, "first")]
        time.sleep(0.3)
        hung.append(pool.submit(post, "second"))
        time.sleep(0.3)
        body = json.dumps({"reviews": ["queued, then gone"]}).encode()
        head = (
            f"POST {SENTIMENT} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Authorization: {AUTH['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", int(faulty.url.rsplit(":", 1)[1]))) as sock:
            sock.sendall(head + body)
            sent = time.monotonic()
            time.sleep(0.3)
            assert sentiment_depth() == 1  # waiting for a free model thread
        # The client is gone: its request leaves the queue while both calls still hang, well
        # before its deadline (REQUEST_TIMEOUT_S=1) would have taken it off.
        while sentiment_depth() != 0:
            assert time.monotonic() - sent < 0.8, "the abandoned request is still queued"
            time.sleep(0.02)
        assert [call.result() for call in hung] == [504, 504]


def test_hanging_model_gives_504_then_recovers(faulty: Server) -> None:
    faulty.fault("hang:3")
    started = time.perf_counter()
    response = httpx.post(
        f"{faulty.url}{SENTIMENT}", json={"reviews": ["hello"]}, headers=AUTH, timeout=30
    )
    took = time.perf_counter() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert took < 2.5  # REQUEST_TIMEOUT_S=1, generously

    # Requests that queue behind the hung call time out too, and give their room back.
    faulty.fault("")
    responses = asyncio.run(_concurrent(faulty.url, 16))
    assert {r.status_code for r in responses} <= {200, 504}
    assert httpx.get(f"{faulty.url}/healthz", timeout=5).status_code == 200

    recovered = _wait_until_healthy(faulty)
    responses = asyncio.run(_concurrent(faulty.url, 16))
    assert [r.status_code for r in responses] == [200] * 16
    metrics = httpx.get(f"{faulty.url}/metrics", timeout=5).text  # public on this server
    depths = re.findall(r'model_queue_depth\{model="\w+"\} (\S+)', metrics)
    assert depths
    assert all(float(depth) == 0 for depth in depths)
    print(f"\nhang of 3 s: 504 after {took:.2f} s; answering again {recovered:.1f} s later")


def test_hang_on_one_model_does_not_block_the_other(faulty: Server) -> None:
    faulty.fault("hang:4")
    with httpx.Client(base_url=faulty.url, headers=AUTH, timeout=30) as client:
        response = client.post(SENTIMENT, json={"reviews": ["hello"]})
        assert response.status_code == 504
        # The sentiment batcher's thread is still stuck; the digits batcher has its own.
        faulty.fault("")
        started = time.perf_counter()
        upload = {"file": ("d.png", encode(digit_image(), "PNG"), "image/png")}
        response = client.post("/v1/digits/predict", files=upload)
        assert response.status_code == 200
        assert time.perf_counter() - started < 2.5  # the sentiment call hangs 3 s more
