"""Micro-benchmarks of the request path, in process: what one request costs the event loop,
without a server or a network (``docs/performance.md``).

    python -m bench.hotpath [--number N] [--only NAME ...] [--profile]

* pieces (``read_form``): the best of five runs of ``N`` calls, in microseconds per call;
* whole requests through the app (``app: ...``): the app's ASGI callable, its lifespan run on
  the committed models, called by 64 concurrent requests at a time as uvicorn would call it
  (a scope, a receive that gives the body, a send that keeps the answer), ``N`` requests in
  all; the figure is the event loop thread's CPU time per request (``time.thread_time``),
  which the model's own thread does not count in and other processes barely move. What
  uvicorn adds (HTTP parsing, writing) is not in it.

Run the same command before and after a change, interleaved, to compare; ``--profile`` prints
cProfile's top functions of each whole-request run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import timeit
from collections.abc import AsyncIterator, Callable, Coroutine, MutableMapping
from typing import Any

from app.uploads import read_form
from bench import payloads


def _read_form() -> Callable[[], object]:
    upload = payloads.digits_payloads(1, os.environ.get("DATA_DIR"))
    body, content_type = upload.bodies[0], upload.content_type
    loop = asyncio.new_event_loop()

    async def one() -> object:
        async def stream() -> AsyncIterator[bytes]:  # one chunk, as a small upload arrives
            yield body

        return await read_form(content_type, stream(), max_files=256, max_fields=256)

    return lambda: loop.run_until_complete(one())


BENCHMARKS: dict[str, Callable[[], Callable[[], object]]] = {
    "read_form (a digits upload, one chunk)": _read_form,
}

APP_REQUESTS = {
    "app: native sentiment": payloads.sentiment_payloads,
    "app: native digits": payloads.digits_payloads,
    "app: TF Serving sentiment": payloads.tfserving_sentiment_payloads,
    "app: OIP digits": payloads.oip_digits_payloads,
}


def _scope(path: str, content_type: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    raw = [
        (b"host", b"localhost"),
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _whole_requests(name: str, count: int, profile: bool) -> float:
    import cProfile
    import pstats
    import time

    from app.main import create_app

    made = APP_REQUESTS[name](1000, os.environ.get("DATA_DIR"))
    headers = made.headers or [{}] * len(made.bodies)
    app = create_app(tuned=True)  # as python -m app runs it
    statuses: list[int] = []

    async def one(index: int) -> None:
        body = made.bodies[index % len(made.bodies)]
        scope = _scope(made.path, made.content_type, body, headers[index % len(headers)])
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # no disconnect: the request is answered first
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)

    async with app.router.lifespan_context(app):
        app.state.server.accepting = True
        await asyncio.gather(*(one(i) for i in range(256)))  # warm-up
        statuses.clear()
        profiler = cProfile.Profile() if profile else None
        started = time.thread_time()
        if profiler:
            profiler.enable()
        for wave in range(0, count, 64):
            await asyncio.gather(*(one(i) for i in range(wave, min(wave + 64, count))))
        if profiler:
            profiler.disable()
        used = time.thread_time() - started
    assert statuses == [200] * count, sorted(set(statuses))
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return used / count


def _event_loop_run(main: Coroutine[Any, Any, float]) -> float:
    """On uvloop where it is installed, as uvicorn's ``loop="auto"`` picks it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    for name, make in BENCHMARKS.items():
        if args.only and not any(word in name for word in args.only):
            continue
        call = make()
        best = min(timeit.repeat(call, number=args.number, repeat=5)) / args.number
        print(f"{best * 1e6:8.1f} us  {name}", flush=True)
    for name in APP_REQUESTS:
        if args.only and not any(word in name for word in args.only):
            continue
        seconds = _event_loop_run(_whole_requests(name, args.number, args.profile))
        print(f"{seconds * 1e6:8.1f} us  {name} (event loop CPU per request)", flush=True)


if __name__ == "__main__":
    main()
