"""Soak: a minute of mixed load at concurrency 64 against ``python -m app`` (``make soak``).

Native and TF Serving requests for both models, from 64 concurrent clients, for SOAK_SECONDS
(60 by default). Prints requests, errors, throughput, p50/p99 latency (as the clients see it,
and as the server measures it) and the server's RSS before and after; fails on any error or
non-200, on a request the server took more than 5 s to answer, on memory growing by more than
500 MiB, or on an unclean exit after SIGTERM.

The clients are raw HTTP/1.1 keep-alive connections sending ready-made requests (httpx would
spend more CPU than the server). They still share the machine: on a small one their CPU use is
part of the latency they see, so the bound is on the server's own measure (its
``http_request_duration_seconds``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import re
import time
from collections import Counter

import httpx
import numpy as np
import pytest

from tests.conftest import png
from tests.robustness.helpers import REVIEWS
from tests.support.server import rss_kib, server_log, start_server, stop_server

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
CONCURRENCY = int(os.environ.get("SOAK_CONCURRENCY", "64"))
SERVER_LATENCY_BOUND_S = 5.0  # generous: every request answered within this, server-side
RSS_GROWTH_LIMIT_MIB = 500


def _request(path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _json(path: str, payload: object) -> bytes:
    return _request(path, json.dumps(payload).encode(), "application/json")


def _multipart(images: list[bytes]) -> bytes:
    body = b"".join(
        b'--soak\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + image + b"\r\n"
        for image in images
    )
    return _request(
        "/v1/digits/predict", body + b"--soak--\r\n", "multipart/form-data; boundary=soak"
    )


def mixed_requests(mnist) -> list[tuple[str, bytes]]:
    """Ready-made requests, cycled through by the clients: (kind, raw HTTP/1.1 request)."""
    (_, _), (x_test, _) = mnist
    images = [png(x_test[i]) for i in range(64)]
    requests = []
    for n in range(64):
        reviews = [REVIEWS[(n + i) % 4] for i in range(1 + n % 3)]
        requests += [
            ("sentiment", _json("/v1/sentiment/predict", {"reviews": reviews})),
            ("digits", _multipart([images[(n + i) % 64] for i in range(1 + n % 2)])),
            (
                "tfs-sentiment",
                _json("/v1/models/sentiment:predict", {"instances": [REVIEWS[n % 4]]}),
            ),
            (
                "tfs-digits-b64",
                _json(
                    "/v1/models/digits:predict",
                    {"instances": [{"b64": base64.b64encode(images[n]).decode()}]},
                ),
            ),
            (
                "tfs-digits",
                _json("/v1/models/digits:predict", {"instances": [x_test[n % 8].tolist()]}),
            ),
        ]
    return requests


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])
    return status, await reader.readexactly(length)


@pytest.mark.soak
@pytest.mark.timeout(SECONDS + 600)  # the load itself, then start-up and checks
def test_soak_mixed_load(mnist) -> None:
    requests = mixed_requests(mnist)
    proc, url = start_server({}, python_m_app=True)
    port = int(url.rsplit(":", 1)[1])
    try:
        rss_before = rss_kib(proc) / 1024
        buckets_before = latency_buckets(url)
        latencies: dict[str, list[float]] = {}
        statuses: Counter[tuple[str, int]] = Counter()
        errors: Counter[str] = Counter()

        async def client(worker: int, until: float) -> None:
            """One keep-alive connection; a raw client, so that it costs the CPU little."""
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            n = worker
            try:
                while time.monotonic() < until:
                    kind, request = requests[n % len(requests)]
                    n += CONCURRENCY
                    started = time.perf_counter()
                    writer.write(request)
                    try:
                        status, body = await asyncio.wait_for(_answer(reader), 30)
                    except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                        errors[f"{kind}: {type(exc).__name__}"] += 1
                        writer.close()
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                        continue
                    latencies.setdefault(kind, []).append(time.perf_counter() - started)
                    statuses[(kind, status)] += 1
                    if status != 200:
                        errors[f"{kind}: {status} {body[:200]!r}"] += 1
            finally:
                writer.close()

        async def load() -> float:
            started = time.monotonic()
            until = started + SECONDS
            await asyncio.gather(*(client(w, until) for w in range(CONCURRENCY)))
            return time.monotonic() - started

        took = asyncio.run(load())
        rss_after = rss_kib(proc) / 1024
        server_side = {
            le: count - buckets_before.get(le, 0) for le, count in latency_buckets(url).items()
        }
        total = sum(statuses.values())
        everything = np.array([s for values in latencies.values() for s in values])
        print(
            f"\nsoak: {SECONDS:g} s at concurrency {CONCURRENCY}: {total} requests "
            f"({total / took:.0f}/s), {sum(errors.values())} errors, "
            f"p50 {np.percentile(everything, 50) * 1000:.0f} ms, "
            f"p99 {np.percentile(everything, 99) * 1000:.0f} ms; "
            f"RSS {rss_before:.0f} MiB before, {rss_after:.0f} MiB after"
        )
        for kind, values in sorted(latencies.items()):
            print(
                f"  {kind:15} {len(values):6} requests, p50 {np.percentile(values, 50) * 1000:5.0f} ms, "
                f"p99 {np.percentile(values, 99) * 1000:5.0f} ms"
            )
        print(
            f"  server-side: p50 <= {bucket_quantile(server_side, 0.5) * 1000:.0f} ms, "
            f"p99 <= {bucket_quantile(server_side, 0.99) * 1000:.0f} ms (histogram bucket bounds)"
        )
        print(f"  statuses: {dict(sorted(statuses.items()))}")
        assert not errors, dict(errors)
        assert all(status == 200 for _, status in statuses), dict(statuses)
        assert total > 0
        assert server_side[SERVER_LATENCY_BOUND_S] == server_side[math.inf] == total
        assert rss_after - rss_before < RSS_GROWTH_LIMIT_MIB
        assert stop_server(proc) == 0, server_log(proc)[-3000:]
    finally:
        stop_server(proc)


def latency_buckets(url: str) -> dict[float, float]:
    """Cumulative request counts by latency bound, all predict endpoints together."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    buckets: dict[float, float] = {}
    for endpoint, le, count in re.findall(
        r'http_request_duration_seconds_bucket\{endpoint="([^"]+)",le="([^"]+)"\} (\S+)', text
    ):
        if "predict" in endpoint:
            bound = math.inf if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0) + float(count)
    return buckets


def bucket_quantile(buckets: dict[float, float], q: float) -> float:
    """The smallest bucket bound under which a fraction q of the requests fall."""
    total = buckets[math.inf]
    return next(bound for bound, count in sorted(buckets.items()) if count >= q * total)
