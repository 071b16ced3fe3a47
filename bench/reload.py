"""Version swaps under load: what a new version going live costs the requests being served.

A server (``python -m app``, ``MODEL_POLL_S=0.5``) serves a copy of the models from a
temporary folder. Each round measures sentiment reviews at concurrency 16 three times on the
same server: quietly; with one new sentiment version published as the window opens (a
rollout: it is picked up, loaded, warmed up and swapped in, and the old one unloaded, all
within the window); and with versions going live back to back (publish, wait until it serves,
publish the next: a stress case, a load under way most of the window). The order rotates from
round to round. The table gives the median p99 of each, the errors, and the swaps counted.

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
P99_TARGET = 2.0  # p99 in a window with a rollout, at most this many times the p99 without
KINDS = ("quiet", "one swap", "back to back")
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


def available(port: int, version: int) -> bool:
    """Whether ``version`` of sentiment is available, from the TF Serving status API (cheap: no
    signature to read, unlike the metadata API)."""
    status, body = fetch(HOST, port, f"/v1/models/sentiment/versions/{version}")
    return status == 200 and json.loads(body)["model_version_status"][0]["state"] == "AVAILABLE"


def swap(models: Models, port: int, within_s: float = 60) -> float:
    """Publish a version and wait until it serves; the seconds that took."""
    started = time.monotonic()
    version = models.publish()
    while not available(port, version):
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
            rounds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
            swap_seconds: list[float] = []
            for round_ in range(args.rounds):
                for kind in KINDS[round_ % 3 :] + KINDS[: round_ % 3]:
                    stop = threading.Event()
                    swapper = threading.Thread(
                        target=_swap_once if kind == "one swap" else _swap_until,
                        args=(models, server.port, stop, swap_seconds, args.warmup),
                    )
                    if kind != "quiet":
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
                    if kind != "quiet":
                        swapper.join()
                    result["swaps"] = len(swap_seconds) - before
                    rounds[kind].append(result)
                    print(
                        f"  reload {kind:<12} c={CONCURRENCY} {result['rps']:8.1f} req/s  "
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


def _swap_until(
    models: Models, port: int, stop: threading.Event, seconds: list[float], _: float
) -> None:
    while not stop.is_set():
        seconds.append(swap(models, port))


def _swap_once(
    models: Models, port: int, stop: threading.Event, seconds: list[float], warmup: float
) -> None:
    """One version, published once the window opens (the load generator's warm-up is over)."""
    if not stop.wait(warmup):
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
    results["errors"] = sum(results[kind]["errors"] for kind in KINDS)
    return results


def summary(results: dict[str, Any]) -> list[str]:
    quiet, one, stress = (results[kind] for kind in KINDS)
    lines = [
        f"version swaps at c={results['concurrency']} (MODEL_POLL_S={results['poll_s']}): "
        f"p99 {quiet['p99_ms']:.1f} ms quiet, {one['p99_ms']:.1f} ms with one rollout in the "
        f"window, {stress['p99_ms']:.1f} ms with versions going live back to back "
        f"({stress['swaps']} swaps, each {results['swap_seconds_median']} s from publish to "
        f"serving); errors {results['errors']}"
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
    quiet, swapping = results["quiet"]["p99_ms"], results["one swap"]["p99_ms"]
    ratio = swapping / quiet if quiet else float("inf")
    return [
        {
            "target": f"c={results['concurrency']}: p99 with a rollout <= {P99_TARGET}x quiet",
            "value": f"{swapping:.1f} / {quiet:.1f} ms = {ratio:.2f}x",
            "met": ratio <= P99_TARGET,
        },
        {
            "target": "no errors during swaps",
            "value": str(results["errors"]),
            "met": results["errors"] == 0,
        },
    ]
