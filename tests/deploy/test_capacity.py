"""bench/capacity.py: the capacity model, its docs table and the pod it plans for."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from k8s_manifests import DEPLOY, ROOT, quantity, rendered, workloads

from bench import capacity

RESULTS = json.loads(capacity.RESULTS.read_text())


def test_docs_table_is_generated_from_the_committed_results() -> None:
    """Regenerated, not typed: `python -m bench.capacity --update-docs` after `make bench`."""
    docs = capacity.DOCS.read_text()
    assert capacity.docs_section(RESULTS, "bench/results.json") in docs


def test_update_docs_rewrites_a_stale_table_once(tmp_path: Path) -> None:
    docs = tmp_path / "kubernetes.md"
    docs.write_text(f"# intro\n\n{capacity.BEGIN}\n| stale |\n{capacity.END}\n\nafter\n")
    assert capacity.update_docs(capacity.RESULTS, docs) is True
    text = docs.read_text()
    assert "| stale |" not in text
    assert capacity.table(RESULTS) in text
    assert text.startswith("# intro\n")
    assert text.endswith("\nafter\n")
    assert capacity.update_docs(capacity.RESULTS, docs) is False


def test_pods_are_the_deployments() -> None:
    """The model plans pods of the Deployment that deploy/k8s applies."""
    (workload,) = workloads(rendered(DEPLOY / "k8s" / "overlays" / "cpu"))
    assert quantity(workload.container["resources"]["limits"]["cpu"]) == capacity.POD_CPUS


def test_operating_point_is_the_fastest_within_the_target() -> None:
    points = capacity.candidates(RESULTS)["digits", "native"]
    for p99 in (10.0, 30.0, 80.0, 1000.0):
        operating = capacity.operating_point(points, p99)
        within = [p for p in points if p["p99_ms"] <= p99]
        assert operating is not None
        assert operating.p99_ms <= p99
        assert operating.rps == max(p["rps"] for p in within)
    assert capacity.operating_point(points, min(p["p99_ms"] for p in points) - 0.1) is None


def test_plans_grow_with_the_rate_and_cover_it() -> None:
    previous = 0
    for rate in (100, 1_000, 5_000, 20_000, 100_000):
        for (_, _), plan, _ in capacity.plans(RESULTS, rate, 80.0):
            assert plan is not None
            worker = plan.operating.rps * plan.utilization
            assert plan.workers * worker >= rate > (plan.workers - 1) * worker
            assert plan.pods * capacity.POD_CPUS >= max(plan.workers, plan.cores)
        pods = sum(plan.pods for _, plan, _ in capacity.plans(RESULTS, rate, 80.0) if plan)
        assert pods >= previous
        previous = pods


def test_protocol_points_get_their_own_rows() -> None:
    """When make bench has measured the protocols, each gets its rows, ordered after native."""
    results: dict[str, Any] = copy.deepcopy(RESULTS)
    native = [p for p in results["points"] if p["config"] == "batched" and p["concurrency"] == 64]
    results["protocol_points"] = [
        {**point, "protocol": "oip", "rps": point["rps"] / 2} for point in native
    ]
    rows = [key for key, _, _ in capacity.plans(results, 5_000, 80.0)]
    assert rows == [
        ("digits", "native"),
        ("digits", "oip"),
        ("sentiment", "native"),
        ("sentiment", "oip"),
    ]
    by_key = {key: plan for key, plan, _ in capacity.plans(results, 5_000, 80.0)}
    for model in ("digits", "sentiment"):
        oip, own = by_key[model, "oip"], by_key[model, "native"]
        assert oip is not None
        assert own is not None
        assert oip.workers >= own.workers
        assert oip.workers == math.ceil(5_000 / (oip.operating.rps * capacity.UTILIZATION))
    assert "| digits | oip | 80 ms |" in capacity.table(results)


def test_command_line_answers_and_fails_on_an_unreachable_target() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bench.capacity", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    met = run("--rate", "2000", "--p99-ms", "80")
    assert met.returncode == 0, met.stderr
    assert "digits" in met.stdout
    assert "sentiment" in met.stdout
    assert "pod" in met.stdout
    missed = run("--rate", "2000", "--p99-ms", "0.5")
    assert missed.returncode == 1
    assert "not met" in missed.stdout
    assert run("--utilization", "0").returncode == 2
