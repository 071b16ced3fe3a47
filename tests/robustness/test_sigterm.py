"""SIGTERM under load, on the production entry point ``python -m app``.

100 concurrent requests are made to wait in the sentiment queue (a 3 s batch delay with a batch
size above 100), and only once all 100 are queued does the server get SIGTERM. While they are
still in flight, new connections must be refused; then every one of the 100 must get its 200,
and the process must exit with status 0. A model call that never returns must not keep the
process from exiting.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
from pathlib import Path

import httpx

from tests.robustness.helpers import REVIEWS
from tests.support.server import server_log, start_server, stop_server

IN_FLIGHT = 100


def sentiment_depth(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    found = re.search(r'model_queue_depth\{model="sentiment"\} (\S+)', text)
    return float(found[1]) if found else 0.0


def connection_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_sigterm_answers_every_accepted_request_then_exits_0() -> None:
    proc, url = start_server(
        {"MAX_BATCH_SIZE": "128", "MAX_BATCH_DELAY_MS": "3000", "REQUEST_TIMEOUT_S": "20"},
        python_m_app=True,
    )
    port = int(url.rsplit(":", 1)[1])
    try:

        async def scenario() -> tuple[list[httpx.Response], float, float, bool]:
            limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                load = asyncio.gather(
                    *(
                        client.post("/v1/sentiment/predict", json={"reviews": [REVIEWS[i % 4]]})
                        for i in range(IN_FLIGHT)
                    )
                )
                deadline = time.monotonic() + 10
                while (queued := await asyncio.to_thread(sentiment_depth, url)) < IN_FLIGHT:
                    assert time.monotonic() < deadline, f"only {queued:g} requests queued"
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                refused = False
                while not load.done() and not refused:
                    refused = await asyncio.to_thread(connection_refused, port)
                    await asyncio.sleep(0.05)
                still_in_flight = not load.done()
                responses = await load
                return responses, signalled, time.monotonic(), refused and still_in_flight

        responses, signalled, answered, refused_during_drain = asyncio.run(scenario())
        assert [r.status_code for r in responses] == [200] * IN_FLIGHT
        labels = [r.json()["predictions"][0]["label"] for r in responses]
        clear = {0: "positive", 1: "negative", 3: "negative"}  # REVIEWS[2] is lukewarm
        assert all(labels[i] == clear[i % 4] for i in range(IN_FLIGHT) if i % 4 in clear)
        assert refused_during_drain, "new connections were still accepted while draining"
        proc.wait(30)
        exited = time.monotonic()
        assert proc.returncode == 0, server_log(proc)[-3000:]
        assert connection_refused(port)
        print(
            f"\nSIGTERM with {IN_FLIGHT} requests queued: new connections refused at once, all "
            f"{IN_FLIGHT} answered 200 {answered - signalled:.1f} s later, exit 0 after "
            f"{exited - signalled:.1f} s"
        )
    finally:
        stop_server(proc)


def test_sigterm_with_a_hung_model_call_still_exits(tmp_path: Path) -> None:
    """The call is left behind (its request has had its 504) instead of holding shutdown."""
    fault_file = tmp_path / "fault"
    fault_file.write_text("hang:600")
    proc, url = start_server(
        {"FAULT_FILE": str(fault_file), "REQUEST_TIMEOUT_S": "1"},
        target="tests.support.faulty_app:app",
    )
    try:
        response = httpx.post(f"{url}/v1/sentiment/predict", json={"reviews": ["hm"]}, timeout=10)
        assert response.status_code == 504
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        proc.wait(20)
        print(
            f"\nSIGTERM with a hung model call: exited after {time.monotonic() - signalled:.1f} s"
        )
        assert "a call still running 1 s into shutdown is left behind" in server_log(proc)
    finally:
        stop_server(proc)
