"""Model calls that raise or hang, injected by ``tests.support.faulty_app`` (a test-only hook).

A raising model call fails its whole batch with 500 ``model_error``; a call held inside the
model past REQUEST_TIMEOUT_S (3 s here) gives 504 ``deadline_exceeded`` at that deadline
(within a second of it) to whoever waits on it, queued requests included, which give their
room back; health stays green throughout and, once the fault is gone, requests succeed again.
A request whose client leaves while it waits for the model is taken off the queue.

A held call (fault ``block``) stays inside the model until the test lets it go: the tests wait
on what the server reports (the calls that entered the model, ``/metrics``), never on a clock;
the one time measured is the 504's, whose bound is the promise itself.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.robustness.helpers import (
    FAULTY_AUTH,
    FAULTY_TIMEOUT_S,
    REVIEWS,
    Server,
    answers,
    digit_image,
    encode,
    hold_sentiment_threads,
)
from tests.support.server import server_log
from tests.support.waiting import wait_until

AUTH = FAULTY_AUTH
SENTIMENT = "/v1/sentiment/predict"
DEADLINE_SLACK_S = 1.0  # how late past REQUEST_TIMEOUT_S a 504 may come


async def _concurrent(url: str, n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client:
        return await asyncio.gather(
            *(client.post(SENTIMENT, json={"reviews": [REVIEWS[i % 4]]}) for i in range(n))
        )


def _post(server: Server, review: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}{SENTIMENT}", json={"reviews": [review]}, headers=AUTH, timeout=30
    )


def _sentiment_depth(server: Server) -> float:
    return server.metric("model_queue_depth", model="sentiment")


def _closed_by_client(server: Server) -> float:
    return server.metric("http_requests_total", endpoint=SENTIMENT, status="499")


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
    responses = asyncio.run(_concurrent(faulty.url, 4))
    assert [r.status_code for r in responses] == [200] * 4  # nothing of the fault lingers


def test_a_queued_request_whose_client_left_never_reaches_the_model(faulty: Server) -> None:
    faulty.fault("block:sentiment")
    closed_before = _closed_by_client(faulty)
    with ThreadPoolExecutor(2) as pool:
        held = hold_sentiment_threads(faulty, pool)
        body = json.dumps({"reviews": ["queued, then gone"]}).encode()
        head = (
            f"POST {SENTIMENT} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Authorization: {AUTH['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        with socket.create_connection(("127.0.0.1", faulty.port)) as sock:
            sock.sendall(head + body)
            wait_until(lambda: _sentiment_depth(faulty) == 1, "the third request queued")
        # The client is gone. Only a withdrawal can empty the queue now (both threads are
        # held), and it must come from the disconnect, a 499, not from the deadline, a 504.
        wait_until(lambda: _sentiment_depth(faulty) == 0, "the abandoned request off the queue")
        wait_until(
            lambda: _closed_by_client(faulty) == closed_before + 1,
            "the abandoned request counted as closed by its client (499)",
        )
        assert [call.result() for call in held] == [504, 504]  # their deadline
    faulty.fault("")  # let the held calls go
    assert _post(faulty, "after").status_code == 200
    assert faulty.model_calls("sentiment") == [1, 1, 1]  # the two held, then "after"


def test_held_model_gives_504_to_everyone_waiting_then_recovers(faulty: Server) -> None:
    faulty.fault("block:sentiment")
    # The 504 comes at the deadline: not before, and not much after (the client's clock starts
    # a little before the server's, and the server has nothing else to do).
    deadline = (FAULTY_TIMEOUT_S, FAULTY_TIMEOUT_S + DEADLINE_SLACK_S)
    started = time.perf_counter()
    response = _post(faulty, "hello")
    took = time.perf_counter() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert deadline[0] <= took < deadline[1], f"504 after {took:.2f} s, not within {deadline} s"

    # That call is still held; the next batch takes the other model thread and is held too,
    # and the rest queue behind both. Every one of them gets its 504 at its deadline and gives
    # its room back.
    started = time.perf_counter()
    responses = asyncio.run(_concurrent(faulty.url, 16))
    took_all = time.perf_counter() - started
    assert [r.status_code for r in responses] == [504] * 16
    assert {r.json()["error"]["code"] for r in responses} == {"deadline_exceeded"}
    assert deadline[0] <= took_all < deadline[1], f"16 504s after {took_all:.2f} s"
    assert len(faulty.model_calls("sentiment")) == 2  # the rest never left the queue
    assert _sentiment_depth(faulty) == 0
    assert httpx.get(f"{faulty.url}/healthz", timeout=10).status_code == 200

    faulty.fault("")
    wait_until(lambda: answers(faulty), "the model answering once the calls are let go")
    responses = asyncio.run(_concurrent(faulty.url, 16))
    assert [r.status_code for r in responses] == [200] * 16
    assert faulty.metric("model_queue_depth") == 0  # every model's queue
    print(
        f"\nheld model call: 504 after {took:.2f} s, 16 queued behind it all answered 504 "
        f"{took_all:.2f} s after they were sent (REQUEST_TIMEOUT_S={FAULTY_TIMEOUT_S:g})"
    )


def test_a_held_call_on_one_model_does_not_block_the_other(faulty: Server) -> None:
    faulty.fault("block:sentiment")
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(_post, faulty, "hello")
        wait_until(lambda: faulty.model_calls("sentiment") == [1], "the sentiment call held")
        # The sentiment batcher's call stays inside the model; the digits batcher has its own.
        upload = {"file": ("d.png", encode(digit_image(), "PNG"), "image/png")}
        response = httpx.post(
            f"{faulty.url}/v1/digits/predict", files=upload, headers=AUTH, timeout=30
        )
        assert response.status_code == 200
        assert faulty.model_calls("sentiment") == [1]
        assert faulty.model_calls("digits") == [1]
        assert held.result().status_code == 504
