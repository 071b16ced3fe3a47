"""The limit point: what the server answers against what its models compute on their own.

    python -m bench.limit [--rounds 3] [--seconds 8] [--output bench/results-limit.json]

For each model, on the same inputs (the load's 1,000 IMDB test reviews; 1,000 MNIST test
images, as 28x28 float32 in process and as PNG uploads when served):

* **in process**: the version the server answers with, loaded by the service's own loader
  (``app.model.LoadedModel``) in a child process with the settings the service uses (``DEVICE``,
  ``TF_INTRA_OP_THREADS``, ``TF_INTER_OP_THREADS`` from the environment, as ``app.config``
  reads them), called at batch ``MAX_BATCH_SIZE`` (64) on the inputs in turn: instances per
  second, the best of three one-second windows. No HTTP, no batcher, no image decoding;
* **served**: ``python -m app`` with one worker and the defaults, 64 keep-alive connections
  (:mod:`bench.loadgen`), 1 s of warm-up, then a window of ``--seconds``: answers per second,
  p99, mean batch;
* the two alternate, ``--rounds`` times (a shared machine's speed drifts by tens of percent
  within minutes; the rate that matters is the ratio of two measured side by side), and the
  **share** is the median of the rounds' served / in-process ratios;
* then the served rate again with ``WORKERS=auto`` (a worker per CPU), reported beside.

The models in process at batch 1 are measured once at the end (``docs/performance.md``'s
in-process table). Prints a Markdown table and writes every round to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import payloads
from bench.loadgen import Probe, run_load
from bench.run import HOST, requests_for
from bench.server import ROOT, Server

MAKERS = {"sentiment": payloads.sentiment_payloads, "digits": payloads.digits_payloads}
CONCURRENCY = 64
WINDOWS = 3  # one-second windows per in-process measurement; the best counts


def _in_process(name: str, version: int) -> None:
    """The child: load the model, then on each line of stdin print one measurement (JSON)."""
    import numpy as np

    from app.config import Settings
    from app.model import LoadedModel, Runtime, configure_tensorflow

    settings = Settings()
    device = configure_tensorflow(
        settings.device, settings.tf_intra_op_threads, settings.tf_inter_op_threads
    )
    runtime = Runtime(device, settings.tf_intra_op_threads, settings.tf_inter_op_threads)
    model = LoadedModel(name, version, ROOT / "models" / name / str(version), runtime)
    signature = model.default_signature
    key = signature.input.key
    data_dir = os.environ.get("DATA_DIR")
    if name == "sentiment":
        texts, _ = payloads.reviews(1000, data_dir)
        instances = np.array(texts, dtype=object)
    else:
        images, _ = payloads.digit_images(1000, data_dir)
        instances = images.astype(np.float32)

    def rate(batch_size: int) -> float:
        batches = [
            {key: instances[start : start + batch_size]}
            for start in range(0, len(instances) - batch_size + 1, batch_size)
        ]
        for inputs in batches[:5]:
            model.call(signature, inputs)  # warm-up
        best = 0.0
        for _ in range(WINDOWS):
            calls = 0
            started = time.perf_counter()
            while (elapsed := time.perf_counter() - started) < 1.0:
                model.call(signature, batches[calls % len(batches)])
                calls += 1
            best = max(best, calls * batch_size / elapsed)
        return best

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        batch_size = int(line)
        print(json.dumps({"batch_size": batch_size, "instances_per_s": rate(batch_size)}))
        sys.stdout.flush()


class InProcess:
    """The child process of :func:`_in_process`, idle (blocked on stdin) between measurements."""

    def __init__(self, name: str, version: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.limit", "--in-process", name, str(version)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert json.loads(self._line())["ready"]

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the in-process child exited: {self.process.wait()}")
        return line

    def rate(self, batch_size: int) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{batch_size}\n")
        self.process.stdin.flush()
        return float(json.loads(self._line())["instances_per_s"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(60)


def served_version(port: int, made: payloads.Payloads) -> int:
    """The version the server answers the load's requests with (the native answers say)."""
    request = urllib.request.Request(
        f"http://{HOST}:{port}{made.path}",
        data=made.bodies[0],
        headers={"Content-Type": made.content_type},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return int(json.loads(answer.read())["version"])


def measure(name: str, rounds: int, seconds: float, log_dir: Path) -> dict[str, Any]:
    made = MAKERS[name](1000, os.environ.get("DATA_DIR"))
    point: dict[str, Any] = {"model": name, "inputs": made.source, "rounds": []}
    with Server({}, log_dir / f"limit-{name}.log") as server:
        assert server.process is not None
        wire = requests_for(made, server.port)
        version = served_version(server.port, made)
        point["version"] = version
        child = InProcess(name, version)
        try:
            run_load(HOST, server.port, wire, CONCURRENCY, 3)  # warm-up
            for index in range(rounds):
                probe = Probe(model=name, server_pid=server.process.pid)
                result = run_load(HOST, server.port, wire, CONCURRENCY, seconds, 1, probe)
                assert result.errors == 0, result.first_error
                in_process = child.rate(64)
                batches = result.server.get("batches") or {}
                point["rounds"].append(
                    {
                        "served_rps": round(result.rps, 1),
                        "p99_ms": round(result.p99_ms, 2),
                        "mean_batch": batches.get("mean_batch_size"),
                        "loop_cpu_us_per_request": result.server.get("loop_cpu_us_per_request"),
                        "in_process_per_s": round(in_process, 1),
                        "share": round(result.rps / in_process, 3),
                    }
                )
                print(f"{name} round {index}: {point['rounds'][-1]}", flush=True)
            point["in_process_batch_1_per_s"] = round(child.rate(1), 1)
        finally:
            child.close()
    with Server({"WORKERS": "auto"}, log_dir / f"limit-{name}-auto.log") as server:
        wire = requests_for(made, server.port)
        run_load(HOST, server.port, wire, CONCURRENCY, 3)  # warm-up
        auto = [run_load(HOST, server.port, wire, CONCURRENCY, seconds, 1) for _ in range(rounds)]
    point["auto_rps"] = [round(result.rps, 1) for result in auto]
    point["auto_p99_ms"] = [round(result.p99_ms, 2) for result in auto]
    for field in ("served_rps", "in_process_per_s", "share", "p99_ms"):
        point[field] = statistics.median(r[field] for r in point["rounds"])
    return point


def table(points: list[dict[str, Any]]) -> str:
    lines = [
        "| model | in process, batch 64 (per s) | served, 1 worker, c64 (req/s) | share "
        "| shares of the rounds | p99 ms | mean batch | `WORKERS=auto`, c64 (req/s) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for p in points:
        shares = ", ".join(f"{r['share']:.0%}" for r in p["rounds"])
        batch = statistics.median(r["mean_batch"] or 0 for r in p["rounds"])
        lines.append(
            f"| {p['model']} v{p['version']} | {p['in_process_per_s']:,.0f} "
            f"| {p['served_rps']:,.0f} | **{p['share']:.0%}** | {shares} | {p['p99_ms']:.1f} "
            f"| {batch:.1f} | {statistics.median(p['auto_rps']):,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--models", nargs="*", default=list(MAKERS))
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results-limit.json")
    parser.add_argument("--in-process", nargs=2, metavar=("MODEL", "VERSION"))
    args = parser.parse_args(argv)
    if args.in_process:
        _in_process(args.in_process[0], int(args.in_process[1]))
        return
    log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    load_before = os.getloadavg()[0]
    points = [measure(name, args.rounds, args.seconds, log_dir) for name in args.models]
    print(table(points))
    result = {
        "method": __doc__,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "points": points,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
