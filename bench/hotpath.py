"""Micro-benchmarks of the request path's pieces, in process: what one request costs the event
loop in each, without a server, a network or the model (``docs/performance.md``).

    python -m bench.hotpath [--number N] [--only NAME ...]

Each line is the best of five runs of ``N`` calls, in microseconds per call. Run the same
command before and after a change, interleaved, to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import timeit
from collections.abc import Callable

from app.uploads import read_form
from bench import payloads


def _read_form() -> Callable[[], object]:
    upload = payloads.digits_payloads(1, os.environ.get("DATA_DIR"))
    body, content_type = upload.bodies[0], upload.content_type
    loop = asyncio.new_event_loop()

    async def one() -> object:
        async def stream():  # one chunk, as a small upload arrives
            yield body

        return await read_form(content_type, stream(), max_files=256, max_fields=256)

    return lambda: loop.run_until_complete(one())


BENCHMARKS: dict[str, Callable[[], Callable[[], object]]] = {
    "read_form (a digits upload, one chunk)": _read_form,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args(argv)
    for name, make in BENCHMARKS.items():
        if args.only and not any(word in name for word in args.only):
            continue
        call = make()
        best = min(timeit.repeat(call, number=args.number, repeat=5)) / args.number
        print(f"{best * 1e6:8.1f} us  {name}", flush=True)


if __name__ == "__main__":
    main()
