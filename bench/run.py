"""``make bench``: does batching pay off? The whole matrix in one go, in a few minutes.

1. Three servers (``python -m app`` on 127.0.0.1), all running: the default settings
   (batching), ``MAX_BATCH_SIZE=1`` (no batching) and the same with two model calls at once;
   digits uploads and sentiment reviews at concurrency 1, 16 and 64. Each point is measured in
   rounds (5 by default) that go through the servers in turn, the order reversed every other
   round (A B C, C B A, ...), each a short warm-up then a window on the same connections; the
   table gives the median of each figure. On a shared host whose speed drifts by 20-30% within
   minutes, one window each was not enough to compare servers, and three left the ratios
   swinging by 10-20% from run to run.
2. The other protocols: the same instances through TF Serving's API and the Open Inference
   Protocol (as ``tritonclient`` sends them) on the batched server, at concurrency 64, each
   point in rounds with the native endpoint's, the order reversed every other round. Then a
   general model (:mod:`bench.general`: two int32 inputs, two outputs, Triton's ``simple``
   shape) on a server of its own, through OIP (binary) and TF Serving at concurrency 64.
3. Version swaps (:mod:`bench.reload`): p99 at concurrency 16 while new versions go live,
   against the same server without swaps, and the server's memory after 20 swaps.
4. The load generator's own ceiling: ``GET /healthz`` at concurrency 16.
5. The models' throughput in-process (no HTTP, no batcher), batch 1 and batch 64.

Prints one table and writes ``bench/results.json`` and ``bench/throughput_latency.png``.
Settings the runs share (TF threads, ...) come from the environment, as the server's do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import general, reload
from bench.loadgen import Probe, build_request, run_load
from bench.payloads import GENERAL, PROTOCOLS, Payloads, digits_payloads, sentiment_payloads
from bench.server import HOST, Server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = {
    "batched": {},
    "unbatched": {"MAX_BATCH_SIZE": "1"},
    # The unbatched server at its best on 2 CPUs: two model calls at once (one is the
    # default, best for the batched server), so that the ratio is also read against it.
    "unbatched-2c": {"MAX_BATCH_SIZE": "1", "MAX_CONCURRENT_BATCHES": "2"},
    # Not run by default (--configs): one uvicorn worker per core.
    "batched-2w": {"WORKERS": "2"},
    "unbatched-2w": {"WORKERS": "2", "MAX_BATCH_SIZE": "1"},
    # Not run by default: the image's default, a worker per CPU (app/workers.py); against
    # "batched" (one worker): `--configs batched,batched-auto`.
    "batched-auto": {"WORKERS": "auto"},
    # Not run by default: what the access line costs (docs/performance.md, "Access log").
    "access-off": {"ACCESS_LOG": "off"},
    "access-errors": {"ACCESS_LOG": "errors"},
    "access-all": {"ACCESS_LOG": "all"},
    "access-all-json": {"ACCESS_LOG": "all", "LOG_FORMAT": "json"},
    # Not run by default: what tracing costs (docs/performance.md, "Tracing"), spans made but
    # not exported; and `baseline`, the code of another checkout (BENCH_BASELINE=<folder>)
    # with the same settings, for an A/B run of a change against the code before it.
    "tracing-off": {"OPENTELEMETRY": "false"},
    "tracing-on": {"OPENTELEMETRY": "true", "OTEL_TRACES_EXPORTER": "none"},
    "baseline": {"PYTHONSAFEPATH": "1", "PYTHONPATH": os.environ.get("BENCH_BASELINE", ".")},
}
DEFAULT_CONFIGS = "batched,unbatched,unbatched-2c"
SERVICE_SETTINGS = {
    "WORKERS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "ACCESS_LOG",
    "DEVICE",
    "TF_INTRA_OP_THREADS",
    "TF_INTER_OP_THREADS",
    "MAX_BATCH_SIZE",
    "MAX_BATCH_DELAY_MS",
    "MAX_QUEUE_SIZE",
    "REQUEST_TIMEOUT_S",
    "MODEL_DIR",
}
PROTOCOL_CONCURRENCY = 64
PROTOCOL_TARGET = 0.8  # each protocol's throughput, as a share of the native endpoint's


def requests_for(payloads: Payloads, port: int) -> list[bytes]:
    headers = payloads.headers or [{}] * len(payloads.bodies)
    return [
        build_request("POST", payloads.path, HOST, port, body, payloads.content_type, extra)
        for body, extra in zip(payloads.bodies, headers, strict=True)
    ]


def measure_point(
    server: Server, model: str, requests: list[bytes], concurrency: int, args
) -> dict:
    """Warm-up, then the measured window on the same connections, with the server's batch
    sizes and CPU time during the window."""
    assert server.process is not None
    probe = Probe(model=model, server_pid=server.process.pid)
    result = run_load(
        HOST, server.port, requests, concurrency, args.duration, args.warmup, probe
    ).as_dict()
    server_side = result.pop("server")
    result["batches"] = server_side.pop("batches")
    result.update({f"server_{k}": v for k, v in server_side.items()})
    return result


def median_round(rounds: list[dict]) -> dict:
    """One point from its rounds: the median of each figure; errors, requests and batches
    summed; every round's req/s kept (``rounds_rps``) to show the spread."""
    merged = dict(rounds[0])
    for key, value in rounds[0].items():
        if key != "concurrency" and isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = statistics.median(r[key] for r in rounds if r.get(key) is not None)
    for key in ("requests", "errors", "warmup_errors"):
        merged[key] = sum(r[key] for r in rounds)
    merged["seconds"] = sum(r["seconds"] for r in rounds)
    merged["rounds_rps"] = [r["rps"] for r in rounds]
    calls: dict[str, int] = {}
    for r in rounds:
        for size, count in r["batches"].get("calls_by_batch_size", {}).items():
            calls[size] = calls.get(size, 0) + count
    model_calls = sum(r["batches"].get("model_calls") or 0 for r in rounds)
    instances = sum(r["batches"].get("instances") or 0 for r in rounds)
    merged["batches"] = {
        "model_calls": model_calls,
        "instances": instances,
        "mean_batch_size": round(instances / model_calls, 2) if model_calls else None,
        "calls_by_batch_size": calls,
    }
    return merged


def measure_protocols(server: Server, args) -> list[dict]:
    """Each model through every protocol at PROTOCOL_CONCURRENCY, in interleaved rounds."""
    points = []
    for model in args.endpoints.split(","):
        protocols = ["native", *(p for p in args.protocols.split(",") if p)]
        payloads = {
            protocol: PROTOCOLS[model][protocol](data_dir=args.data_dir) for protocol in protocols
        }
        requests = {protocol: requests_for(p, server.port) for protocol, p in payloads.items()}
        rounds: dict[str, list[dict]] = {protocol: [] for protocol in protocols}
        for round_ in range(args.rounds):
            for protocol in protocols if round_ % 2 == 0 else protocols[::-1]:
                rounds[protocol].append(
                    measure_point(server, model, requests[protocol], PROTOCOL_CONCURRENCY, args)
                )
        for protocol in protocols:
            point = median_round(rounds[protocol])
            point.update(
                endpoint=model,
                protocol=protocol,
                path=payloads[protocol].path,
                config="batched",
                source=payloads[protocol].source,
            )
            points.append(point)
            print(
                f"  {model:<9} {protocol:<9} c={PROTOCOL_CONCURRENCY} {point['rps']:8.1f} req/s "
                f"(rounds {', '.join(f'{r:.0f}' for r in point['rounds_rps'])})  "
                f"p99 {point['p99_ms']:7.2f} ms  errors {point['errors']}",
                flush=True,
            )
    return points


def measure_general(args, tmp: Path) -> list[dict]:
    """The general model (bench.general) through each protocol at PROTOCOL_CONCURRENCY, in
    interleaved rounds, on a batched server (the defaults) whose MODEL_DIR holds only it."""
    points = []
    with tempfile.TemporaryDirectory(prefix="bench-general-", dir=tmp) as folder:
        model_dir = general.build(Path(folder))
        env = {**CONFIGS["batched"], "MODEL_DIR": str(model_dir)}
        with Server(env, tmp / "bench-server-general.log") as server:
            payloads = {
                protocol: make(data_dir=args.data_dir) for protocol, make in GENERAL.items()
            }
            requests = {protocol: requests_for(p, server.port) for protocol, p in payloads.items()}
            protocols = list(GENERAL)
            rounds: dict[str, list[dict]] = {protocol: [] for protocol in protocols}
            for round_ in range(args.rounds):
                for protocol in protocols if round_ % 2 == 0 else protocols[::-1]:
                    rounds[protocol].append(
                        measure_point(
                            server, general.NAME, requests[protocol], PROTOCOL_CONCURRENCY, args
                        )
                    )
    for protocol in protocols:
        point = median_round(rounds[protocol])
        point.update(
            endpoint=general.NAME,
            protocol=protocol,
            path=payloads[protocol].path,
            config="batched",
            source=payloads[protocol].source,
        )
        points.append(point)
        print(
            f"  {general.NAME:<9} {protocol:<9} c={PROTOCOL_CONCURRENCY} {point['rps']:8.1f} req/s "
            f"(rounds {', '.join(f'{r:.0f}' for r in point['rounds_rps'])})  "
            f"p99 {point['p99_ms']:7.2f} ms  mean batch {point['batches']['mean_batch_size']}  "
            f"errors {point['errors']}",
            flush=True,
        )
    return points


def run_raw(args) -> list[dict]:
    command = [sys.executable, "-m", "bench.raw", "--seconds", str(args.raw_seconds)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    out = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, check=False, env=os.environ.copy()
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench.raw failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


# ---- report ---------------------------------------------------------------------------------


def table(results: dict) -> str:
    lines = [
        f"{'endpoint':<10} {'server':<10} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'errors':>6} {'mean batch':>10}",
    ]
    order = {config: i for i, config in enumerate(CONFIGS)}
    rows = sorted(
        results["points"],
        key=lambda p: (p["endpoint"], order.get(p["config"], 99), p["concurrency"]),
    )
    for point in rows:
        batch = point["batches"]["mean_batch_size"]
        lines.append(
            f"{point['endpoint']:<10} {point['config']:<10} {point['concurrency']:>4} "
            f"{point['rps']:>8.1f} {point['p50_ms']:>8.2f} {point['p90_ms']:>8.2f} "
            f"{point['p99_ms']:>8.2f} {point['max_ms']:>8.2f} {point['errors']:>6} "
            f"{batch if batch is not None else '-':>10}"
        )
    if results.get("protocol_points"):
        lines += ["", f"{'model':<10} {'protocol':<10} {'conc':>4} {'req/s':>8} {'p99 ms':>8}"]
        for point in results["protocol_points"]:
            lines.append(
                f"{point['endpoint']:<10} {point['protocol']:<10} {point['concurrency']:>4} "
                f"{point['rps']:>8.1f} {point['p99_ms']:>8.2f}"
            )
    if results.get("general_points"):
        lines += [
            "",
            f"{'general':<10} {'protocol':<10} {'conc':>4} {'req/s':>8} {'p99 ms':>8} "
            f"{'mean batch':>10}",
        ]
        for point in results["general_points"]:
            lines.append(
                f"{point['endpoint']:<10} {point['protocol']:<10} {point['concurrency']:>4} "
                f"{point['rps']:>8.1f} {point['p99_ms']:>8.2f} "
                f"{point['batches']['mean_batch_size'] or '-':>10}"
            )
    if results.get("reload"):
        lines += ["", *reload.summary(results["reload"])]
    ceiling = results["client_ceiling"]
    lines += [
        "",
        f"load generator ceiling: GET /healthz at concurrency {ceiling['concurrency']}: "
        f"{ceiling['rps']:.0f} req/s (p50 {ceiling['p50_ms']:.2f} ms); the client's own CPU: "
        f"{ceiling['client_cpu_us_per_request']:.0f} us/request, i.e. at most "
        f"{1e6 / ceiling['client_cpu_us_per_request']:.0f} req/s on one core",
        "",
        f"{'model (in-process)':<20} {'batch':>5} {'ms/call':>8} {'instances/s':>12}",
    ]
    for row in results["raw"]:
        lines.append(
            f"{row['model']:<20} {row['batch_size']:>5} {row['ms_per_call']:>8.3f} "
            f"{row['instances_per_s']:>12.0f}"
        )
    lines += ["", "targets:"]
    for check in results["targets"]:
        mark = "met    " if check["met"] else "MISSED "
        lines.append(f"  {mark} {check['target']:<54} {check['value']}")
    return "\n".join(lines)


def speedups(results: dict) -> list[tuple[str, int, float]]:
    index = {(p["endpoint"], p["config"], p["concurrency"]): p for p in results["points"]}
    out = []
    for endpoint, config, concurrency in index:
        if config != "batched" or (endpoint, "unbatched", concurrency) not in index:
            continue
        unbatched = index[endpoint, "unbatched", concurrency]["rps"]
        if unbatched:
            out.append(
                (endpoint, concurrency, index[endpoint, config, concurrency]["rps"] / unbatched)
            )
    return out


def targets(results: dict) -> list[dict]:
    """The issue's targets, each with the figures and whether this run meets it (for each
    batched configuration measured with its unbatched twin)."""
    index = {(p["endpoint"], p["config"], p["concurrency"]): p for p in results["points"]}
    checks = []
    p99_checked: set[tuple[str, str]] = set()  # (endpoint, batched config): once each
    pairs = [("batched", "unbatched"), ("batched", "unbatched-2c"), ("batched-2w", "unbatched-2w")]
    for batched, unbatched in pairs:
        tag = "" if unbatched == "unbatched" else f" [{batched} vs {unbatched}]"
        for endpoint in dict.fromkeys(p["endpoint"] for p in results["points"]):
            for concurrency in (16, 64):
                b = index.get((endpoint, batched, concurrency))
                u = index.get((endpoint, unbatched, concurrency))
                if b and u:
                    ratio = b["rps"] / u["rps"] if u["rps"] else math.inf
                    value = f"{b['rps']:.0f} / {u['rps']:.0f} = {ratio:.2f}x"
                    pairs_rps = list(
                        zip(b.get("rounds_rps", []), u.get("rounds_rps", []), strict=True)
                    )
                    if len(pairs_rps) > 1:
                        each = [x / y for x, y in pairs_rps if y]
                        value += f" (rounds {min(each):.2f}-{max(each):.2f}x)"
                    checks.append(
                        {
                            "target": f"{endpoint} c={concurrency}: batched >= 2x unbatched{tag}",
                            "value": value,
                            "met": ratio >= 2,
                        }
                    )
            b, u = index.get((endpoint, batched, 1)), index.get((endpoint, unbatched, 1))
            if b and u:
                diff = b["p50_ms"] - u["p50_ms"]
                checks.append(
                    {
                        "target": f"{endpoint} c=1: batched p50 within 0.5 ms{tag}",
                        "value": f"{b['p50_ms']:.2f} vs {u['p50_ms']:.2f} ms ({diff:+.2f})",
                        "met": diff <= 0.5,
                    }
                )
            b = index.get((endpoint, batched, 64))
            if b and (endpoint, batched) not in p99_checked:
                p99_checked.add((endpoint, batched))
                checks.append(
                    {
                        "target": f"{endpoint} c=64: batched p99 < 80 ms{tag}",
                        "value": f"{b['p99_ms']:.1f} ms",
                        "met": b["p99_ms"] < 80,
                    }
                )
    native = {
        p["endpoint"]: p for p in results.get("protocol_points", []) if p["protocol"] == "native"
    }
    for point in results.get("protocol_points", []):
        base = native.get(point["endpoint"])
        if point["protocol"] == "native" or not base or not base["rps"]:
            continue
        ratio = point["rps"] / base["rps"]
        checks.append(
            {
                "target": f"{point['endpoint']} c={point['concurrency']}: {point['protocol']} "
                f">= {PROTOCOL_TARGET}x native",
                "value": f"{point['rps']:.0f} / {base['rps']:.0f} = {ratio:.2f}x",
                "met": ratio >= PROTOCOL_TARGET,
            }
        )
    if results.get("reload"):
        checks += reload.targets(results["reload"])
    errors = sum(p["errors"] + p["warmup_errors"] for p in results["points"])
    errors += sum(p["errors"] + p["warmup_errors"] for p in results.get("protocol_points", []))
    errors += sum(p["errors"] + p["warmup_errors"] for p in results.get("general_points", []))
    ceiling = results["client_ceiling"]
    errors += ceiling.get("errors", 0) + ceiling.get("warmup_errors", 0)
    checks.append({"target": "no errors", "value": str(errors), "met": errors == 0})
    return checks


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    endpoints = list(dict.fromkeys(p["endpoint"] for p in results["points"]))
    fig, axes = plt.subplots(2, len(endpoints), figsize=(5.5 * len(endpoints), 7.5), squeeze=False)
    styles = {
        "batched": ("tab:blue", "o-"),
        "unbatched": ("tab:orange", "s--"),
        "unbatched-2c": ("tab:brown", "d:"),
        "batched-2w": ("tab:green", "^-"),
        "unbatched-2w": ("tab:red", "v--"),
    }
    for col, endpoint in enumerate(endpoints):
        for config, (colour, style) in styles.items():
            points = sorted(
                (
                    p
                    for p in results["points"]
                    if p["endpoint"] == endpoint and p["config"] == config
                ),
                key=lambda p: p["concurrency"],
            )
            xs = [p["concurrency"] for p in points]
            if not points:
                continue
            label = f"{config} ({', '.join(f'{k}={v}' for k, v in CONFIGS[config].items())})"
            label = label.replace(" ()", " (defaults)")
            axes[0][col].plot(xs, [p["rps"] for p in points], style, color=colour, label=label)
            axes[1][col].plot(xs, [p["p99_ms"] for p in points], style, color=colour, label=label)
        axes[0][col].set_title(f"{endpoint}: throughput")
        axes[0][col].set_ylabel("requests/s")
        axes[1][col].set_title(f"{endpoint}: p99 latency")
        axes[1][col].set_ylabel("p99 latency (ms)")
        axes[1][col].set_yscale("log")
        axes[1][col].axhline(80, color="grey", linestyle=":", label="target at 64: p99 < 80 ms")
        for row in (0, 1):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrent connections")
            ax.set_xticks([1, 16, 64], ["1", "16", "64"])
            ax.grid(True, which="both", alpha=0.3)
        axes[0][col].set_ylim(bottom=0)
    info = results["machine"]
    fig.suptitle(f"make bench on {info['cores']} cores ({info['cpu']})")
    # One legend for all four plots, under them: the labels are too long to sit inside one.
    handles, labels = axes[1][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize="small")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="windows per point and server")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--endpoints", default="digits,sentiment")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"of {', '.join(CONFIGS)}")
    parser.add_argument(
        "--protocols", default="tfserving,oip", help="compared with native at c=64 ('' skips)"
    )
    parser.add_argument(
        "--general",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a general two-input model (bench.general) through OIP and TF Serving at c=64",
    )
    parser.add_argument(
        "--reload", action=argparse.BooleanOptionalAction, default=True, help="version swaps"
    )
    parser.add_argument(
        "--raw-seconds", type=float, default=3.0, help="0 skips the in-process step"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="local copies of the data sets (default: DATA_DIR, else Keras' cache)",
    )
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument(
        "--plot",
        type=lambda text: Path(text) if text else None,
        default=HERE / "throughput_latency.png",
        help="'' for none",
    )
    args = parser.parse_args(argv)

    started = time.time()
    load_before = loadavg()
    levels = [int(c) for c in args.concurrency.split(",")]
    makers = {"digits": digits_payloads, "sentiment": sentiment_payloads}
    payloads = {name: makers[name](data_dir=args.data_dir) for name in args.endpoints.split(",")}
    for name, p in payloads.items():
        print(f"{name}: {len(p.bodies)} request bodies from {p.source}", flush=True)

    points: list[dict] = []
    configs = args.configs.split(",")
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    with contextlib.ExitStack() as stack:
        # Both servers up at once (an idle one costs no CPU), the points interleaved: each
        # batched point is measured right next to its unbatched twin, under the same
        # conditions on a machine whose load may drift during the run.
        servers: dict[str, Server] = {}
        for config in configs:
            server = Server(CONFIGS[config], tmp / f"bench-server-{config}.log")
            servers[config] = stack.enter_context(server)
            print(f"server {config} {CONFIGS[config] or '(defaults)'} on port {server.port}")
        first = servers[configs[0]]
        assert first.process is not None
        healthz = [build_request("GET", "/healthz", HOST, first.port)]
        ceiling = run_load(
            HOST,
            first.port,
            healthz,
            16,
            args.duration,
            args.warmup,
            Probe(server_pid=first.process.pid),
        ).as_dict()
        ceiling.update({f"server_{k}": v for k, v in ceiling.pop("server").items()})
        print(
            f"  healthz ({configs[0]}) c=16: {ceiling['rps']:.0f} req/s, client "
            f"{ceiling['client_cpu_us_per_request']:.0f} us/request",
            flush=True,
        )
        requests = {
            (name, config): requests_for(p, servers[config].port)
            for name, p in payloads.items()
            for config in configs
        }
        for name, p in payloads.items():
            for concurrency in levels:
                rounds: dict[str, list[dict]] = {config: [] for config in configs}
                for round_ in range(args.rounds):
                    for config in configs if round_ % 2 == 0 else configs[::-1]:
                        rounds[config].append(
                            measure_point(
                                servers[config], name, requests[name, config], concurrency, args
                            )
                        )
                for config in configs:
                    point = median_round(rounds[config])
                    point.update(endpoint=name, config=config, source=p.source)
                    points.append(point)
                    print(
                        f"  {name:<9} {config:<9} c={concurrency:<3} {point['rps']:8.1f} req/s"
                        f" (rounds {', '.join(f'{r:.0f}' for r in point['rounds_rps'])})"
                        f"  p50 {point['p50_ms']:7.2f}  p99 {point['p99_ms']:7.2f} ms  "
                        f"errors {point['errors']}  mean batch "
                        f"{point['batches']['mean_batch_size']}",
                        flush=True,
                    )
        protocol_points = []
        if args.protocols and "batched" in servers:
            print("protocols ...", flush=True)
            protocol_points = measure_protocols(servers["batched"], args)
        servers_env = servers[configs[0]].env
    general_points = []
    if args.general:
        print("general model ...", flush=True)
        general_points = measure_general(args, tmp)
    reloading = None
    if args.reload:
        print("version swaps ...", flush=True)
        reloading = reload.run(args, tmp)
    raw = []
    if args.raw_seconds > 0:  # 0: not measured (an A/B of servers needs no in-process figures)
        print("in-process model throughput ...", flush=True)
        raw = run_raw(args)

    results = {
        "command": "make bench",
        "machine": machine(),
        # The service's settings that the environment set for both servers (the rest are
        # the defaults), then each configuration's own.
        "settings": {k: servers_env[k] for k in sorted(servers_env) if k in SERVICE_SETTINGS},
        "configs": {k: CONFIGS[k] or "defaults" for k in configs},
        "rounds": args.rounds,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "wall_s": round(time.time() - started, 1),
        "client_ceiling": {"endpoint": "GET /healthz", **ceiling},
        "points": points,
        "protocol_points": protocol_points,
        "general_points": general_points,
        "reload": reloading,
        "raw": raw,
    }
    results["speedup"] = [
        {"endpoint": e, "concurrency": c, "batched_over_unbatched": round(r, 2)}
        for e, c, r in speedups(results)
    ]
    results["targets"] = targets(results)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot is not None:
        plot(results, args.plot)
    print()
    print(table(results))
    print()
    print(f"load average before {load_before}, after {results['loadavg_after']}")
    print(f"wrote {args.output} and {args.plot or 'no plot'} in {results['wall_s']:.0f} s")
    errors = sum(p["errors"] for p in (*points, *protocol_points, *general_points))
    errors += ceiling.get("errors", 0)
    errors += reloading["errors"] if reloading else 0
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
