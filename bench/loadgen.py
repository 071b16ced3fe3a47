"""A closed-loop HTTP/1.1 load generator that costs the server as little CPU as possible.

Client and server share the same few cores, so every microsecond the client spends is one the
server does not get. Hence: uvloop, one ``asyncio.Protocol`` per keep-alive connection (no
streams, no HTTP library), request bytes built once before the run, and responses parsed only
as far as the status line and ``content-length``. Each of ``concurrency`` connections sends its
next request as soon as the previous answer is complete.

Also here: reading the ``model_batch_size`` histogram from ``/metrics``, so that a run can
report the batch sizes the server actually used (the difference before/after the run).

Ad-hoc use against a running server::

    python -m bench.loadgen --port 8000 --endpoint digits --concurrency 16 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field

try:
    import uvloop
except ImportError:  # pragma: no cover - uvicorn[standard] brings it
    uvloop = None


def build_request(
    method: str,
    path: str,
    host: str,
    port: int,
    body: bytes = b"",
    content_type: str = "",
    headers: dict[str, str] | None = None,
) -> bytes:
    """One complete HTTP/1.1 keep-alive request, as bytes to send again and again."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class LoadResult:
    """What one run measured in its window (after the warm-up); latencies in milliseconds."""

    concurrency: int
    requests: int  # answers (any status) that arrived in the window
    errors: int  # in the window: statuses other than 200, broken connections
    warmup_errors: int
    seconds: float  # length of the window
    rps: float  # 200 answers per second in the window
    p50_ms: float  # latencies of the requests sent in the window
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    client_cpu_s: float
    client_cpu_us_per_request: float
    statuses: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None
    server: dict = field(default_factory=dict)  # what the probe read, start and end of window

    def as_dict(self) -> dict:
        return asdict(self)


class _Window:
    """The measured window, and what the connections record in it."""

    __slots__ = (
        "errors",
        "first_error",
        "latencies",
        "ok_in_window",
        "start",
        "statuses",
        "stop",
        "trace",
        "warmup_errors",
    )

    def __init__(self, start: float, stop: float, trace: list | None = None) -> None:
        self.start = start
        self.stop = stop
        self.trace = trace
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.ok_in_window = 0
        self.errors = 0
        self.warmup_errors = 0
        self.first_error: str | None = None

    def error(self, message: str, at: float) -> None:
        if at < self.start:
            self.warmup_errors += 1
        else:
            self.errors += 1
        if self.first_error is None:
            self.first_error = message


class _Connection(asyncio.Protocol):
    """One keep-alive connection that sends a request, waits for its answer, sends the next."""

    def __init__(self, requests: list[bytes], offset: int, window: _Window) -> None:
        self.requests = requests
        self.index = offset % len(requests)
        self.window = window
        self.buf = bytearray()
        self.need = -1  # bytes of the whole response once its head is parsed
        self.status = 0
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self._send()

    def _send(self) -> None:
        request = self.requests[self.index]
        self.index += 1
        if self.index == len(self.requests):
            self.index = 0
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end]).lower()
                try:
                    self.status = int(head[9:12])
                    start = head.index(b"\r\ncontent-length:") + 17
                    stop = head.find(b"\r\n", start)
                    length = int(head[start : stop if stop >= 0 else len(head)])
                except ValueError:
                    self._fail("response without a status or content-length")
                    return
                self.need = end + 4 + length
            if len(buf) < self.need:
                return
            now = time.perf_counter()
            del buf[: self.need]
            self.need = -1
            self._complete(now)
            if buf:  # a response we did not ask for: pipelining is not used
                self._fail("unexpected bytes after a response")
                return

    def _complete(self, now: float) -> None:
        window = self.window
        status = self.status
        if window.start <= now < window.stop:
            window.statuses[status] = window.statuses.get(status, 0) + 1
            if status == 200:
                window.ok_in_window += 1
        if status != 200:
            window.error(f"HTTP {status}", self.sent_at)
        elif self.sent_at >= window.start:
            window.latencies.append(now - self.sent_at)
            if window.trace is not None:
                window.trace.append((self.sent_at - window.start, now - window.start))
        if now < window.stop:
            self._send()
        elif not self.done.done():
            self.done.set_result(None)
            assert self.transport is not None
            self.transport.close()

    def _fail(self, message: str) -> None:
        self.window.error(message, self.sent_at)
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.window.error(f"connection lost: {exc or 'closed by the server'}", self.sent_at)
            self.done.set_result(None)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (the value below which q% of samples fall)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Probe:
    """What to read from the server around a run.

    CPU times are read (from /proc, not from the server) at the start and at the end of the
    measured window. The batch-size histogram is read from /metrics before the first
    connection opens and after the last answer: rendering /metrics takes the event loop
    several milliseconds, which would show in the latencies of a window it fell into.
    """

    model: str | None = None  # its model_batch_size histogram, from /metrics
    server_pid: int | None = None  # CPU time of this process, and of its event loop thread

    def read_cpu(self) -> dict:
        found: dict = {"client_cpu_s": time.process_time()}
        if self.server_pid:
            found["cpu_s"] = process_cpu_seconds(self.server_pid)
            found["loop_cpu_s"] = process_cpu_seconds(self.server_pid, self.server_pid)
        return found

    async def read_batches(self, host: str, port: int) -> dict[str, float] | None:
        if not self.model:
            return None
        _, text = await fetch_async(host, port, "/metrics")
        return parse_batch_histogram(text, self.model)


async def _run(
    host: str,
    port: int,
    requests: list[bytes],
    concurrency: int,
    duration: float,
    warmup: float,
    probe: Probe,
    trace: list | None,
) -> LoadResult:
    loop = asyncio.get_running_loop()
    batches_before = await probe.read_batches(host, port)
    started = time.perf_counter()
    window = _Window(started + warmup, started + warmup + duration, trace)

    async def read_cpu_after(delay: float) -> dict:
        await asyncio.sleep(delay)
        return probe.read_cpu()

    # One window on the same connections as the warm-up: no reconnect, no burst of first
    # requests inside the window.
    readings = [
        loop.create_task(read_cpu_after(warmup)),
        loop.create_task(read_cpu_after(warmup + duration)),
    ]
    step = max(1, len(requests) // max(concurrency, 1))
    connections: list[_Connection] = []
    for i in range(concurrency):
        _, protocol = await loop.create_connection(
            lambda i=i: _Connection(requests, i * step, window), host, port
        )
        connections.append(protocol)
    await asyncio.gather(*(c.done for c in connections))
    first, last = await asyncio.gather(*readings)
    batches_after = await probe.read_batches(host, port)

    latencies = sorted(window.latencies)
    ms = [v * 1000 for v in latencies]
    completed = sum(window.statuses.values())
    cpu = last["client_cpu_s"] - first["client_cpu_s"]
    server: dict = {}
    if "cpu_s" in first and first["cpu_s"] is not None and last["cpu_s"] is not None:
        server_cpu = last["cpu_s"] - first["cpu_s"]
        loop_cpu = last["loop_cpu_s"] - first["loop_cpu_s"]
        server["cpu_pct"] = round(server_cpu / duration * 100, 1)
        server["cpu_us_per_request"] = round(server_cpu / max(completed, 1) * 1e6, 1)
        server["loop_cpu_us_per_request"] = round(loop_cpu / max(completed, 1) * 1e6, 1)
    if batches_before is not None and batches_after is not None:
        # The whole run, warm-up included: what the model got at this concurrency.
        server["batches"] = batch_distribution(batches_before, batches_after)
    return LoadResult(
        concurrency=concurrency,
        requests=completed,
        errors=window.errors,
        warmup_errors=window.warmup_errors,
        seconds=round(duration, 3),
        rps=round(window.ok_in_window / duration, 1),
        p50_ms=round(_percentile(ms, 50), 3),
        p90_ms=round(_percentile(ms, 90), 3),
        p99_ms=round(_percentile(ms, 99), 3),
        max_ms=round(ms[-1], 3) if ms else math.nan,
        mean_ms=round(sum(ms) / len(ms), 3) if ms else math.nan,
        client_cpu_s=round(cpu, 3),
        client_cpu_us_per_request=round(cpu / completed * 1e6, 1) if completed else math.nan,
        statuses={str(k): v for k, v in sorted(window.statuses.items())},
        first_error=window.first_error,
        server=server,
    )


def run_load(
    host: str,
    port: int,
    requests: list[bytes],
    concurrency: int,
    duration: float,
    warmup: float = 0.0,
    probe: Probe | None = None,
    trace: list | None = None,
) -> LoadResult:
    """``concurrency`` keep-alive connections, each sending the next request as soon as it has
    the answer: ``warmup`` seconds unmeasured, then a window of ``duration`` seconds. Latencies
    are those of the requests sent in the window; throughput counts the answers in it.
    ``trace``, a list, gets (sent, answered) in seconds from the window's start for each.
    """
    coroutine = _run(host, port, requests, concurrency, duration, warmup, probe or Probe(), trace)
    if uvloop is not None:
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


# ---- the server's side of the story: /metrics --------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def fetch(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def fetch_async(host: str, port: int, path: str) -> tuple[int, bytes]:
    """A GET on its own connection, without blocking the load generator's loop."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
        response = await reader.read()
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head[9:12]), body


def parse_batch_histogram(text: bytes, model: str) -> dict[str, float]:
    """The cumulative ``model_batch_size`` buckets of ``model``, plus ``_sum`` and ``_count``,
    summed over its versions."""
    found: dict[str, float] = {}
    for line in text.decode().splitlines():
        match = _SAMPLE.match(line)
        if not match or not match[1].startswith("model_batch_size"):
            continue
        labels = dict(_LABEL.findall(match[2] or ""))
        if labels.get("model") != model:
            continue
        if match[1] == "model_batch_size_bucket":
            key = labels["le"]
        elif match[1] in ("model_batch_size_sum", "model_batch_size_count"):
            key = match[1].removeprefix("model_batch_size")
        else:
            continue
        found[key] = found.get(key, 0.0) + float(match[3])
    return found


def batch_distribution(before: dict[str, float], after: dict[str, float]) -> dict:
    """Model calls per batch-size bucket during the run, and the mean batch size."""
    calls = after.get("_count", 0) - before.get("_count", 0)
    instances = after.get("_sum", 0) - before.get("_sum", 0)
    bounds = sorted(
        (k for k in after if not k.startswith("_")),
        key=lambda k: math.inf if k == "+Inf" else float(k),
    )
    buckets: dict[str, int] = {}
    previous = 0.0
    lower = 0.0
    for bound in bounds:
        cumulative = after[bound] - before.get(bound, 0)
        count = round(cumulative - previous)
        previous = cumulative
        upper = math.inf if bound == "+Inf" else float(bound)
        if count:
            exact = upper == lower + 1
            buckets[_fmt(upper) if exact else f"{int(lower) + 1}-{_fmt(upper)}"] = count
        lower = upper
    return {
        "model_calls": round(calls),
        "instances": round(instances),
        "mean_batch_size": round(instances / calls, 2) if calls else None,
        "calls_by_batch_size": buckets,
    }


def _fmt(value: float) -> str:
    return "inf" if math.isinf(value) else str(int(value))


def process_cpu_seconds(pid: int, thread: int | None = None) -> float | None:
    """User + system CPU seconds of a process and its children so far, or of one thread.

    Linux ``/proc`` only; None elsewhere. Children count: with ``WORKERS`` > 1 the requests
    are served by uvicorn's worker processes. The main thread's id is the process id: that
    is the server's event loop.
    """
    try:
        if thread is not None:
            return _cpu_of(f"/proc/{pid}/task/{thread}/stat")
        total = _cpu_of(f"/proc/{pid}/stat")
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
        for child in children:
            with contextlib.suppress(OSError):
                total += _cpu_of(f"/proc/{child}/stat")
        return total
    except (OSError, IndexError, ValueError):
        return None


def _cpu_of(stat_path: str) -> float:
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--endpoint", choices=["digits", "sentiment", "healthz"], default="digits")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--server-pid", type=int, help="also report this process's CPU time")
    parser.add_argument("--trace", help="write [sent, answered] of every request here (JSON)")
    args = parser.parse_args(argv)

    if args.endpoint == "healthz":
        requests = [build_request("GET", "/healthz", args.host, args.port)]
        model = None
    else:
        from bench.payloads import digits_payloads, sentiment_payloads

        make = digits_payloads if args.endpoint == "digits" else sentiment_payloads
        payloads = make(data_dir=args.data_dir)
        requests = [
            build_request("POST", payloads.path, args.host, args.port, b, payloads.content_type)
            for b in payloads.bodies
        ]
        model = args.endpoint
    probe = Probe(model=model, server_pid=args.server_pid)
    trace: list | None = [] if args.trace else None
    result = run_load(
        args.host, args.port, requests, args.concurrency, args.duration, args.warmup, probe, trace
    )
    out = result.as_dict()
    if args.trace:
        with open(args.trace, "w") as f:
            json.dump(trace, f)
    json.dump(out, sys.stdout, indent=2)
    print()
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
