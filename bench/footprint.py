"""What one pod needs: start-up time, memory per worker and CPU per request, measured.

The Kubernetes manifests (``deploy/k8s``) size their probes and resources from these figures,
and ``tests/deploy`` checks them against ``bench/footprint.json``, so rerun this after a change
that moves them::

    python -m bench.footprint                 # ~2 min: WORKERS=1 and 2, writes bench/footprint.json

For each worker count, a server (``python -m app``) serves a copy of the committed models:

1. **Start-up**: seconds from starting the process to the first 200 from ``/readyz`` (both
   models loaded and warmed up): what the ``startupProbe`` must wait for.
2. **Memory once ready**: resident memory of every process of the server (the uvicorn
   supervisor and its workers), summed, and as a container holds it (see :func:`memory`).
3. **Under load**: each endpoint at concurrency 64 (:mod:`bench.loadgen`): req/s, p99 and the
   server's CPU per request (all its processes, from ``/proc``).
4. **A version swap**: a new sentiment version is published (copy, then rename) and the
   figures are read once it serves and the old one is gone; the high-water mark (``VmHWM``,
   summed over the processes) covers the moment both versions were loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.loadgen import Probe, build_request, run_load
from bench.payloads import digits_payloads, sentiment_payloads
from bench.reload import Models, settle_rss, swap
from bench.run import loadavg, machine
from bench.server import HOST, Server

HERE = Path(__file__).resolve().parent
CONCURRENCY = 64


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's supervisor and its worker processes)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += process_tree(int(child))
    return found


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def memory(pid: int) -> dict[str, Any]:
    """Resident memory of the server's processes in MiB: each, summed, and as a container
    would hold it.

    ``RssFile`` (the mapped libraries: TensorFlow's alone are hundreds of MiB) is shared
    between the workers, as the page cache holds one copy for the whole container; ``RssAnon``
    (the heap: models, buffers) is each process's own. So the container's estimate is the
    largest ``RssFile`` plus every ``RssAnon``; the plain sum of RSS counts the libraries once
    per process and is an upper bound.
    """
    pids = process_tree(pid)
    rss = [_status_kib(p, "VmRSS") / 1024 for p in pids]
    anon = [_status_kib(p, "RssAnon") / 1024 for p in pids]
    shared = [(_status_kib(p, "RssFile") + _status_kib(p, "RssShmem")) / 1024 for p in pids]
    peak = [_status_kib(p, "VmHWM") / 1024 for p in pids]
    return {
        "processes": len(pids),
        "rss_mib": [round(v, 1) for v in rss],
        "rss_mib_total": round(sum(rss), 1),
        "anon_mib": [round(v, 1) for v in anon],
        "container_mib": round(max(shared) + sum(anon), 1),
        "peak_rss_mib_total": round(sum(peak), 1),
    }


def measure(workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    payloads = {
        "digits": digits_payloads(data_dir=args.data_dir),
        "sentiment": sentiment_payloads(data_dir=args.data_dir),
    }
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        models = Models(Path(folder))
        env = {"WORKERS": str(workers), "MODEL_DIR": folder, "MODEL_POLL_S": "0.5"}
        started = time.monotonic()
        with Server(env, tmp / f"bench-footprint-{workers}.log") as server:
            ready_s = time.monotonic() - started
            assert server.process is not None
            pid = server.process.pid
            result: dict[str, Any] = {
                "workers": workers,
                "ready_s": round(ready_s, 1),
                "ready": memory(pid),
                "load": {},
            }
            print(f"WORKERS={workers}: ready in {ready_s:.1f} s, {result['ready']}", flush=True)
            for name, p in payloads.items():
                requests = [
                    build_request("POST", p.path, HOST, server.port, body, p.content_type)
                    for body in p.bodies
                ]
                load = run_load(
                    HOST,
                    server.port,
                    requests,
                    CONCURRENCY,
                    args.duration,
                    args.warmup,
                    Probe(model=name, server_pid=pid),
                ).as_dict()
                server_side = load["server"]
                result["load"][name] = {
                    "concurrency": CONCURRENCY,
                    "rps": load["rps"],
                    "p99_ms": load["p99_ms"],
                    "errors": load["errors"],
                    "server_cpu_pct": server_side.get("cpu_pct"),
                    "server_cpu_us_per_request": server_side.get("cpu_us_per_request"),
                    "source": p.source,
                }
                print(f"  {name}: {result['load'][name]}", flush=True)
            result["after_load"] = memory(pid)
            print(f"  after load: {result['after_load']}", flush=True)
            result["swap_s"] = round(swap(models, server.port), 1)
            settle_rss(pid, server.port)
            result["after_swap"] = memory(pid)
            print(f"  after a swap: {result['after_swap']}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts to measure")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per endpoint")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="local copies of the data sets (default: DATA_DIR, else Keras' cache)",
    )
    parser.add_argument("--output", type=Path, default=HERE / "footprint.json")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.gettempdir())
    before = loadavg()
    runs = [measure(int(n), args, tmp) for n in args.workers.split(",")]
    results = {
        "command": " ".join(
            ["python -m bench.footprint", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": machine(),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "runs": runs,
    }
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 1 if any(load["errors"] for run in runs for load in run["load"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
