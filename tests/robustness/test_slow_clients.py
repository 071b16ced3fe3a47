"""Slow and vanishing clients: a client that trickles its body, or goes away mid-request or
while its request is queued, must not block anyone else nor wedge a batcher."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.robustness.helpers import (
    FAULTY_AUTH,
    REVIEWS,
    Server,
    digit_image,
    encode,
    hold_sentiment_threads,
)
from tests.support.server import server_log
from tests.support.waiting import until, wait_until

SLOW_CLIENTS = 20
FAST_REQUESTS = 20


def _request_head(path: str, length: int, content_type: str, extra: str = "") -> bytes:
    """Request line and headers, up to and including the blank line (``extra``: more headers)."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


class SlowClients:
    """Clients that send their body one byte at a time, and the last byte only once told to:
    so the test knows they are all mid-body for as long as it needs."""

    def __init__(self, port: int, body: bytes) -> None:
        self.port = port
        self.body = body
        self.mid_body = 0  # clients that have sent part of their body
        self.finish = asyncio.Event()

    async def trickle(self, delay_s: float) -> bytes:
        """Send the headers, the body but its last byte one byte every ``delay_s``, then wait for
        ``finish`` to send the last byte; return the answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = _request_head(
            "/v1/sentiment/predict", len(self.body), "application/json", "Connection: close\r\n"
        )
        try:
            writer.write(head)
            for i, byte in enumerate(self.body[:-1]):
                writer.write(bytes([byte]))
                await writer.drain()
                if i == 0:
                    self.mid_body += 1
                await asyncio.sleep(delay_s)  # slow on purpose: the behaviour under test
            await self.finish.wait()
            writer.write(self.body[-1:])
            await writer.drain()
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
    return latencies


def test_slow_bodies_do_not_block_other_clients(server: Server) -> None:
    """Every fast request is answered while all the slow clients are still mid-body: the slow
    ones send their last byte only after that (a server that waited for them would time out)."""
    clients = SlowClients(
        server.port, json.dumps({"reviews": ["slowly typed, a great film"]}).encode()
    )

    async def scenario() -> tuple[list[bytes], list[float]]:
        slow = [asyncio.create_task(clients.trickle(delay_s=0.05)) for _ in range(SLOW_CLIENTS)]
        try:
            await until(lambda: clients.mid_body == SLOW_CLIENTS, "every slow client mid-body")
            latencies = await _fast_requests(server.url, FAST_REQUESTS)
            assert not any(task.done() for task in slow)
        finally:
            clients.finish.set()
        return await asyncio.gather(*slow), latencies

    answers, latencies = asyncio.run(scenario())
    for answer in answers:  # the slow ones are answered too, once their bodies are in
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    print(
        f"\n{SLOW_CLIENTS} clients trickling bodies byte by byte: {FAST_REQUESTS} other requests "
        f"answered meanwhile (slowest {max(latencies) * 1000:.0f} ms), the slow ones 200 too"
    )


def _closed_early(server: Server, headers: dict[str, str] | None = None) -> float:
    """Requests counted as 499 (the client closed the connection) on the predict routes."""
    return sum(
        server.metric("http_requests_total", headers, endpoint=endpoint, status="499")
        for endpoint in ("/v1/sentiment/predict", "/v1/digits/predict")
    )


def test_clients_vanishing_mid_body_leave_nothing_behind(server: Server) -> None:
    """Each is a 499 at INFO level in the log and the metrics: not an error of the server."""
    log_start = len(server_log(server.proc))
    closed_before = _closed_early(server)
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
    wait_until(
        lambda: _closed_early(server) - closed_before == 40,
        lambda: (
            f"40 counted as closed by the client, not {_closed_early(server) - closed_before:g}"
        ),
    )
    log = server_log(server.proc)[log_start:]
    assert "Traceback" not in log
    assert "ERROR" not in log
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        response = client.post("/v1/sentiment/predict", json={"reviews": REVIEWS})
        assert response.status_code == 200
        upload = {"file": ("d.png", image, "image/png")}
        assert client.post("/v1/digits/predict", files=upload).status_code == 200


def test_clients_vanishing_while_queued_do_not_wedge_the_batcher(faulty: Server) -> None:
    """Both sentiment model threads are held, so queued requests stay queued: only their
    withdrawal, when their clients hang up, can empty the queue; round after round it must,
    none of them may reach the model, and the batcher must serve normally afterwards."""
    faulty.fault("block:sentiment")
    closed_before = _closed_early(faulty)
    body = json.dumps({"reviews": ["queued, then gone"]}).encode()
    head = _request_head(
        "/v1/sentiment/predict",
        len(body),
        "application/json",
        f"Authorization: {FAULTY_AUTH['Authorization']}\r\n",
    )

    def depth() -> float:
        return faulty.metric("model_queue_depth", model="sentiment")

    with ThreadPoolExecutor(2) as pool:
        held = hold_sentiment_threads(faulty, pool)
        for round_ in range(1, 6):
            socks = []
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", faulty.port))
                sock.sendall(head + body)
                socks.append(sock)
            wait_until(lambda: depth() == 3, "three requests queued")
            for sock in socks:
                sock.close()
            wait_until(lambda: depth() == 0, f"round {round_}: the queue emptied by withdrawals")
            wait_until(
                lambda n=3 * round_: _closed_early(faulty) - closed_before == n,
                f"round {round_}: the requests counted as closed by their clients (499)",
            )
        assert [call.result() for call in held] == [504, 504]  # held past their deadline
    faulty.fault("")  # let the held calls go
    with httpx.Client(base_url=faulty.url, headers=FAULTY_AUTH, timeout=10) as client:
        for review in REVIEWS:
            response = client.post("/v1/sentiment/predict", json={"reviews": [review]})
            assert response.status_code == 200
    assert faulty.model_calls("sentiment") == [1] * 6  # the two held, then the four reviews
