"""Version swaps under load: what a new version going live costs the requests being served.

A server (``python -m app``, ``MODEL_POLL_S=0.5``) serves a copy of the models from a
temporary folder. Each round measures sentiment reviews at concurrency 16 twice on the same
server, once quietly and once while new sentiment versions go live back to back (publish a
copy by rename, wait until it serves, publish the next); the order alternates between rounds.
The table gives the median p99 of each, the errors, and how many swaps fell in the windows.

Then memory: a fresh server swaps sentiment versions 20 times; its resident memory (RSS) after
the first swap and after the twentieth, with glibc's allocator and, where Debian's
``libjemalloc2`` is installed, with jemalloc preloaded (``LD_PRELOAD``), as TF Serving users do.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.loadgen import Probe, build_request, fetch, run_load
from bench.payloads import sentiment_payloads
from bench.server import HOST, ROOT, Server

POLL_S = 0.5
CONCURRENCY = 16
SWAPS_FOR_MEMORY = 20
P99_TARGET = 2.0  # p99 during swaps, at most this many times the p99 without
JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")


class Models:
    """A temporary MODEL_DIR holding copies of the committed models; publishes new versions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.source = ROOT / "models" / "sentiment" / "1"
        for name in ("sentiment", "digits"):
            shutil.copytree(ROOT / "models" / name / "1", root / name / "1")
        self.latest = 1

    def publish(self) -> int:
        """The next sentiment version, copied beside its place and renamed into it."""
        self.latest += 1
        staging = self.root / "sentiment" / f".{self.latest}.partial"
        shutil.copytree(self.source, staging)
        staging.rename(self.root / "sentiment" / str(self.latest))
        old = self.root / "sentiment" / str(self.latest - 2)
        if old.exists():  # keep the folder small; that version left long ago
            shutil.rmtree(old)
        return self.latest


def serving(port: int) -> int:
    """The sentiment version unversioned requests get now (from the TF Serving status API)."""
    status, body = fetch(HOST, port, "/v1/models/sentiment/metadata")
    assert status == 200, body[:200]
    return int(json.loads(body)["model_spec"]["version"])


def swap(models: Models, port: int, within_s: float = 60) -> float:
    """Publish a version and wait until it serves; the seconds that took."""
    started = time.monotonic()
    version = models.publish()
    while serving(port) != version:
        if time.monotonic() - started > within_s:
            raise RuntimeError(f"version {version} did not go live within {within_s} s")
        time.sleep(0.05)
    return time.monotonic() - started


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def settle_rss(pid: int, port: int) -> float:
    """RSS once the swap's unloading is over: the old version's state has reached END."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, body = fetch(HOST, port, "/v1/models/sentiment")
        if b'"UNLOADING"' not in body and b'"LOADING"' not in body:
            break
        time.sleep(0.05)
    return rss_mib(pid)


def measure_swaps(args: Any, tmp: Path) -> dict[str, Any]:
    payloads = sentiment_payloads(data_dir=args.data_dir)
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        models = Models(Path(folder))
        env = {"MODEL_DIR": folder, "MODEL_POLL_S": str(POLL_S)}
        with Server(env, tmp / "bench-server-reload.log") as server:
            assert server.process is not None
            requests = [
                build_request("POST", payloads.path, HOST, server.port, body, payloads.content_type)
                for body in payloads.bodies
            ]
            rounds: dict[str, list[dict[str, Any]]] = {"quiet": [], "swapping": []}
            swap_seconds: list[float] = []
            for round_ in range(args.rounds):
                for kind in ("quiet", "swapping") if round_ % 2 == 0 else ("swapping", "quiet"):
                    stop = threading.Event()
                    swapper = threading.Thread(
                        target=_swap_until, args=(models, server.port, stop, swap_seconds)
                    )
                    if kind == "swapping":
                        swapper.start()
                    before = len(swap_seconds)
                    result = run_load(
                        HOST,
                        server.port,
                        requests,
                        CONCURRENCY,
                        args.duration,
                        args.warmup,
                        Probe(model="sentiment", server_pid=server.process.pid),
                    ).as_dict()
                    stop.set()
                    if kind == "swapping":
                        swapper.join()
                    result["swaps"] = len(swap_seconds) - before
                    rounds[kind].append(result)
                    print(
                        f"  reload {kind:<8} c={CONCURRENCY} {result['rps']:8.1f} req/s  "
                        f"p99 {result['p99_ms']:7.2f} ms  errors {result['errors']}  "
                        f"swaps {result['swaps']}",
                        flush=True,
                    )
    summary: dict[str, Any] = {"concurrency": CONCURRENCY, "poll_s": POLL_S}
    for kind, results in rounds.items():
        summary[kind] = {
            "p99_ms": statistics.median(r["p99_ms"] for r in results),
            "p50_ms": statistics.median(r["p50_ms"] for r in results),
            "rps": statistics.median(r["rps"] for r in results),
            "rounds_p99_ms": [r["p99_ms"] for r in results],
            "errors": sum(r["errors"] + r["warmup_errors"] for r in results),
            "swaps": sum(r["swaps"] for r in results),
        }
    summary["swap_seconds_median"] = (
        round(statistics.median(swap_seconds), 2) if swap_seconds else None
    )
    return summary


def _swap_until(models: Models, port: int, stop: threading.Event, seconds: list[float]) -> None:
    while not stop.is_set():
        seconds.append(swap(models, port))


def measure_memory(args: Any, tmp: Path, preload: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        models = Models(Path(folder))
        env = {"MODEL_DIR": folder, "MODEL_POLL_S": str(POLL_S)}
        if preload is not None:
            env["LD_PRELOAD"] = str(preload)
        name = "jemalloc" if preload else "glibc"
        with Server(env, tmp / f"bench-server-memory-{name}.log") as server:
            assert server.process is not None
            pid = server.process.pid
            at_start = rss_mib(pid)
            after: dict[int, float] = {}
            for count in range(1, SWAPS_FOR_MEMORY + 1):
                swap(models, server.port)
                if count in (1, 10, SWAPS_FOR_MEMORY):
                    after[count] = round(settle_rss(pid, server.port), 1)
    growth = after[SWAPS_FOR_MEMORY] - after[1]
    result = {
        "allocator": name,
        "rss_mib_at_start": round(at_start, 1),
        "rss_mib_after_swaps": after,
        "growth_mib_per_swap": round(growth / (SWAPS_FOR_MEMORY - 1), 2),
    }
    print(
        f"  memory ({name}): RSS {at_start:.0f} MiB at start, {after[1]:.0f} after 1 swap, "
        f"{after[SWAPS_FOR_MEMORY]:.0f} after {SWAPS_FOR_MEMORY} "
        f"({result['growth_mib_per_swap']} MiB per swap)",
        flush=True,
    )
    return result


def run(args: Any, tmp: Path) -> dict[str, Any]:
    results = measure_swaps(args, tmp)
    allocators = [None, JEMALLOC] if JEMALLOC.exists() else [None]
    results["memory"] = [measure_memory(args, tmp, preload) for preload in allocators]
    results["errors"] = results["quiet"]["errors"] + results["swapping"]["errors"]
    return results


def summary(results: dict[str, Any]) -> list[str]:
    lines = [
        f"version swaps at c={results['concurrency']} (MODEL_POLL_S={results['poll_s']}): "
        f"p99 {results['quiet']['p99_ms']:.1f} ms quiet, {results['swapping']['p99_ms']:.1f} ms "
        f"while {results['swapping']['swaps']} swaps went live "
        f"(each {results['swap_seconds_median']} s from publish to serving); "
        f"errors {results['errors']}"
    ]
    for memory in results["memory"]:
        after = memory["rss_mib_after_swaps"]
        lines.append(
            f"memory ({memory['allocator']}): RSS {after[1]} MiB after 1 swap, "
            f"{after[SWAPS_FOR_MEMORY]} MiB after {SWAPS_FOR_MEMORY} "
            f"({memory['growth_mib_per_swap']} MiB per swap)"
        )
    return lines


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    quiet, swapping = results["quiet"]["p99_ms"], results["swapping"]["p99_ms"]
    ratio = swapping / quiet if quiet else float("inf")
    return [
        {
            "target": f"c={results['concurrency']}: p99 during swaps <= {P99_TARGET}x quiet",
            "value": f"{swapping:.1f} / {quiet:.1f} ms = {ratio:.2f}x",
            "met": ratio <= P99_TARGET,
        },
        {
            "target": "no errors during swaps",
            "value": str(results["errors"]),
            "met": results["errors"] == 0,
        },
    ]
