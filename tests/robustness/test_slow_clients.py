"""Slow and vanishing clients: a client that trickles its body, or goes away mid-request or
while its request is queued, must not block anyone else nor wedge a batcher."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import httpx

from tests.robustness.helpers import API_KEYS, REVIEWS, Server, digit_image, encode
from tests.support.server import server_log

LATENCY_BOUND_S = 5.0  # generous bound on the fast clients' requests
SLOW_CLIENTS = 20


def _request_head(path: str, length: int, content_type: str, extra: str = "") -> bytes:
    """Request line and headers, up to and including the blank line (``extra``: more headers)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


async def _trickle(port: int, body: bytes, delay_s: float) -> bytes:
    """Send the headers, then the body one byte every ``delay_s``; return the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(_request_head("/v1/sentiment/predict", len(body), "application/json"))
        await writer.drain()
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(delay_s)
        return await reader.read()
    finally:
        writer.close()


async def _fast_requests(url: str, n: int) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for i in range(n):
            started = time.perf_counter()
            response = await client.post(
                "/v1/sentiment/predict", json={"reviews": [REVIEWS[i % 4]]}
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            await asyncio.sleep(0.05)
    return latencies


def test_slow_bodies_do_not_block_other_clients(server: Server) -> None:
    body = json.dumps({"reviews": ["slowly typed, but a great film"]}).encode()

    async def scenario() -> tuple[list[bytes], list[float]]:
        slow = [
            asyncio.create_task(_trickle(server.port, body, delay_s=0.05))
            for _ in range(SLOW_CLIENTS)
        ]
        await asyncio.sleep(0.3)  # every slow client is mid-body now
        latencies = await _fast_requests(server.url, 20)
        assert not all(task.done() for task in slow), "the slow clients were not slow"
        return await asyncio.gather(*slow), latencies

    answers, latencies = asyncio.run(scenario())
    for answer in answers:  # the slow ones are answered too, once their bodies are in
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert max(latencies) < LATENCY_BOUND_S
    print(
        f"\n{SLOW_CLIENTS} clients trickling bodies byte by byte: 20 other requests answered "
        f"meanwhile (slowest {max(latencies) * 1000:.0f} ms), the slow ones 200 too"
    )


def _closed_early(url: str) -> int:
    """Requests counted as 499 (the client closed the connection) on the predict routes."""
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.findall(
        r'http_requests_total\{endpoint="/v1/(?:sentiment|digits)/predict",method="POST",'
        r'status="499"\} (\S+)',
        metrics,
    )
    return int(sum(float(count) for count in found))


def test_clients_vanishing_mid_body_leave_nothing_behind(server: Server) -> None:
    """Each is a 499 at INFO level in the log and the metrics: not an error of the server."""
    log_start = len(server_log(server.proc))
    closed_before = _closed_early(server.url)
    body = json.dumps({"reviews": REVIEWS}).encode()
    image = encode(digit_image(28), "PNG")
    multipart = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + image + b"\r\n--b--\r\n"
    )
    for _ in range(20):
        for head, payload in (
            (_request_head("/v1/sentiment/predict", len(body), "application/json"), body),
            (
                _request_head(
                    "/v1/digits/predict", len(multipart), "multipart/form-data; boundary=b"
                ),
                multipart,
            ),
        ):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(head + payload[: len(payload) // 2])
            # closed with half the body sent
    deadline = time.monotonic() + 10
    while (closed := _closed_early(server.url) - closed_before) < 40:
        assert time.monotonic() < deadline, f"{closed} of 40 counted as closed by the client"
        time.sleep(0.1)
    log = server_log(server.proc)[log_start:]
    assert "Traceback" not in log
    assert "ERROR" not in log
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        response = client.post("/v1/sentiment/predict", json={"reviews": REVIEWS})
        assert response.status_code == 200
        upload = {"file": ("d.png", image, "image/png")}
        assert client.post("/v1/digits/predict", files=upload).status_code == 200


def test_clients_vanishing_while_queued_do_not_wedge_the_batcher(busy_server: Server) -> None:
    """busy_server holds requests 250 ms for a fuller batch: long enough to hang up meanwhile."""
    auth = {"Authorization": f"Bearer {API_KEYS[0]}"}
    body = json.dumps({"reviews": ["queued, then gone"]}).encode()
    head = _request_head(
        "/v1/sentiment/predict",
        len(body),
        "application/json",
        f"Authorization: {auth['Authorization']}\r\n",
    )
    for _ in range(5):
        socks = []
        for _ in range(3):  # under the queue's 4
            sock = socket.create_connection(("127.0.0.1", busy_server.port))
            sock.sendall(head + body)
            socks.append(sock)
        time.sleep(0.05)  # the requests are queued now
        for sock in socks:
            sock.close()
    deadline = time.monotonic() + 10
    while True:
        metrics = httpx.get(f"{busy_server.url}/metrics", headers=auth, timeout=5).text
        depth = float(re.search(r'model_queue_depth\{model="sentiment"\} (\S+)', metrics)[1])
        if depth == 0:
            break
        assert time.monotonic() < deadline, f"{depth:g} instances still queued"
        time.sleep(0.1)
    with httpx.Client(base_url=busy_server.url, headers=auth, timeout=10) as client:
        for review in REVIEWS:
            response = client.post("/v1/sentiment/predict", json={"reviews": [review]})
            assert response.status_code == 200
