"""Soak: a minute of mixed load at concurrency 64 against ``python -m app`` (``make soak``).

Native and TF Serving requests for both models, from 64 concurrent clients, for SOAK_SECONDS
(60 by default). Prints requests, errors, throughput, p50/p99 latency (as the clients see it,
and as the server measures it) and the server's RSS before and after; fails on any error or
non-200, on a request the server took more than 5 s to answer, on memory growing by more than
500 MiB, or on an unclean exit after SIGTERM.

The client shares the machine: on a small one its own CPU use is much of the latency it sees,
so the bound is on the server's own measure (its ``http_request_duration_seconds``).
"""

from __future__ import annotations

import asyncio
import base64
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


@pytest.mark.soak
def test_soak_mixed_load(mnist) -> None:
    (_, _), (x_test, _) = mnist
    images = [png(x_test[i]) for i in range(64)]
    b64 = [base64.b64encode(image).decode() for image in images]
    pixels = [x_test[i].tolist() for i in range(8)]
    proc, url = start_server({}, python_m_app=True)
    try:
        rss_before = rss_kib(proc) / 1024
        buckets_before = latency_buckets(url)
        latencies: dict[str, list[float]] = {}
        statuses: Counter[tuple[str, int]] = Counter()
        errors: Counter[str] = Counter()

        async def client(worker: int, client: httpx.AsyncClient, until: float) -> None:
            n = worker
            while time.monotonic() < until:
                n += CONCURRENCY
                kind = ("sentiment", "digits", "tfs-sentiment", "tfs-digits-b64", "tfs-digits")[
                    n % 5
                ]
                started = time.perf_counter()
                try:
                    if kind == "sentiment":
                        reviews = [REVIEWS[(n + i) % 4] for i in range(1 + n % 3)]
                        r = await client.post("/v1/sentiment/predict", json={"reviews": reviews})
                    elif kind == "digits":
                        files = [
                            ("file", (f"{i}.png", images[(n + i) % 64], "image/png"))
                            for i in range(1 + n % 2)
                        ]
                        r = await client.post("/v1/digits/predict", files=files)
                    elif kind == "tfs-sentiment":
                        r = await client.post(
                            "/v1/models/sentiment:predict", json={"instances": [REVIEWS[n % 4]]}
                        )
                    elif kind == "tfs-digits-b64":
                        r = await client.post(
                            "/v1/models/digits:predict", json={"instances": [{"b64": b64[n % 64]}]}
                        )
                    else:
                        r = await client.post(
                            "/v1/models/digits:predict", json={"instances": [pixels[n % 8]]}
                        )
                except httpx.HTTPError as exc:
                    errors[f"{kind}: {type(exc).__name__}"] += 1
                    continue
                latencies.setdefault(kind, []).append(time.perf_counter() - started)
                statuses[(kind, r.status_code)] += 1

        async def load() -> float:
            limits = httpx.Limits(
                max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY
            )
            async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
                started = time.monotonic()
                until = started + SECONDS
                await asyncio.gather(*(client(w, http, until) for w in range(CONCURRENCY)))
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
