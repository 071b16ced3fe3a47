"""One server, one endpoint, a few rounds at a concurrency: the quick A/B of a hot-path change.

    python -m bench.probe sentiment [--rounds 3] [--seconds 8] [--concurrency 64] [--env K=V ...]

Starts ``python -m app`` (one worker, this checkout) on the committed models, warms it up,
then prints for each round the answers per second, p99, the server's CPU time per request (all
threads) and its event loop's alone, and the mean batch size. Run it before and after a
change, interleaved, on the same machine: the event loop's CPU per request moves least with
the machine's load. ``make bench`` is the full measurement.

Endpoints: sentiment, digits (native), tfs-sentiment, tfs-digits, oip-sentiment, oip-digits.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench import payloads
from bench.loadgen import Probe, run_load
from bench.run import HOST, requests_for
from bench.server import Server

MAKERS = {
    "sentiment": payloads.sentiment_payloads,
    "digits": payloads.digits_payloads,
    "tfs-sentiment": payloads.tfserving_sentiment_payloads,
    "tfs-digits": payloads.tfserving_digits_payloads,
    "oip-sentiment": payloads.oip_sentiment_payloads,
    "oip-digits": payloads.oip_digits_payloads,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint", choices=sorted(MAKERS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--env", nargs="*", default=[], help="server settings, NAME=value")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    requests = MAKERS[args.endpoint](1000, os.environ.get("DATA_DIR"))
    model = "digits" if "digits" in args.endpoint else "sentiment"
    with Server(env, Path("/tmp/bench-probe-server.log")) as server:
        assert server.process is not None
        wire = requests_for(requests, server.port)
        run_load(HOST, server.port, wire, args.concurrency, 3)  # warm-up
        for index in range(args.rounds):
            probe = Probe(model=model, server_pid=server.process.pid)
            result = run_load(HOST, server.port, wire, args.concurrency, args.seconds, 1, probe)
            side = result.server
            batches = side.get("batches") or {}
            print(
                f"{args.endpoint} round {index}: {result.rps:.0f} req/s, "
                f"p99 {result.p99_ms:.1f} ms, server CPU {side.get('cpu_us_per_request', 0):.0f} "
                f"us/request, event loop {side.get('loop_cpu_us_per_request', 0):.0f} us/request, "
                f"mean batch {batches.get('mean_batch_size')}, load {os.getloadavg()[0]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
