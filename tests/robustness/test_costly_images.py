"""Images that are tiny files but huge pictures, against a real server: decoding them must
neither stall the event loop nor take memory without bound.

Apart from ``test_hostile_inputs.py`` because they are meant to take memory (a 4096x4096 RGBA
image is about 256 MB while it decodes), which the allocator keeps for a while: run among the
hostile inputs in a random order, they would be counted against that module's check that
hostile inputs leave the server's memory as it was.

Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
from PIL import Image

from app.inputs import DECODE_THREADS
from tests.robustness.helpers import Server, encode

DIGITS = "/v1/digits/predict"
TFS_DIGITS = "/v1/models/digits:predict"


def upload(data: bytes, name: str = "digit.png", mime: str = "image/png") -> dict[str, object]:
    return {"files": {"file": (name, data, mime)}}


def test_small_files_of_huge_images_do_not_stall_the_server(server: Server) -> None:
    """A 4096x4096 1-bit PNG is 2 KB to send and 16.7 M pixels to decode (0.2 s or more):
    a request full of them must not hold up everyone else's requests while it is decoded."""
    huge = encode(Image.new("1", (4096, 4096)), "PNG")
    assert len(huge) < 4096
    count = 16
    native = {"files": [("file", (f"{i}.png", huge, "image/png")) for i in range(count)]}
    b64 = base64.b64encode(huge).decode()
    tf_serving = {"json": {"instances": [{"b64": b64}] * count}}

    async def scenario() -> tuple[list[httpx.Response], list[float]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            heavy = asyncio.gather(
                client.post(DIGITS, **native), client.post(TFS_DIGITS, **tf_serving)
            )
            latencies = []
            while not heavy.done():
                started = time.perf_counter()
                assert (await client.get("/healthz")).status_code == 200
                latencies.append(time.perf_counter() - started)
            return await heavy, latencies

    responses, latencies = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200, 200]
    # A loop blocked by the decoding answers only between the heavy requests' decodes (4 times
    # with the images decoded on the event loop); one that keeps serving, all along (hundreds).
    assert len(latencies) >= 20, f"/healthz answered {len(latencies)} times during the decodes"
    print(
        f"\n2 x {count} images of 4096x4096 decoding: /healthz answered {len(latencies)} times, "
        f"median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms, slowest {max(latencies) * 1000:.0f} ms"
    )


def test_concurrent_large_decodes_keep_memory_bounded(server: Server) -> None:
    """A 4096x4096 RGBA PNG is a 64 KB file and ~256 MB while it decodes: a dozen at once must
    not take a dozen times that (the decodes share DECODE_THREADS slots)."""
    rgba = encode(Image.new("RGBA", (4096, 4096)), "PNG")
    concurrent = 12
    before = server.rss_mib()

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=2 * concurrent)
        async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
            native = [client.post(DIGITS, **upload(rgba)) for _ in range(concurrent // 2)]
            b64 = base64.b64encode(rgba).decode()
            tf_serving = [
                client.post(TFS_DIGITS, json={"instances": [{"b64": b64}]})
                for _ in range(concurrent // 2)
            ]
            return [r.status_code for r in await asyncio.gather(*native, *tf_serving)]

    assert asyncio.run(burst()) == [200] * concurrent
    peak = server.peak_rss_mib()
    allowed = (DECODE_THREADS + 1) * 300
    print(
        f"\n{concurrent} concurrent 4096x4096 RGBA decodes: RSS {before:.0f} MiB before, peak "
        f"{peak:.0f} MiB ({DECODE_THREADS} decode slots; allowed growth {allowed} MiB)"
    )
    assert peak - before < allowed
