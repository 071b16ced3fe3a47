"""A real Prometheus for tests: Debian's ``prometheus`` package (``apt-get install
prometheus``, which brings ``promtool`` too; ``.ci/run`` installs it).

``start_prometheus(folder, targets, rule_files)`` writes a config that scrapes the targets as
job ``keras-inference-service`` (the job the alert rules and the dashboard select) and
evaluates the rule files, both every second, starts Prometheus on a free port with its data in
``folder`` and waits until it is ready. Without the binaries a test is skipped, or fails with
``CI=true``, as the other tests that need a tool do.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.server import free_port

JOB = "keras-inference-service"


def tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; skips (fails under CI) without it."""
    found = shutil.which(name)
    if found:
        return found
    message = f"no {name}: apt-get install prometheus (Debian's package brings promtool)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Prometheus:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def _get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        body = response.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector ``expr`` gives (now, or at ``at``); fails on a query error."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self._get("/api/v1/query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query_range", query=expr, start=start, end=end, step=step)
        result: list[dict[str, Any]] = data["result"]
        return result

    def rules(self) -> list[dict[str, Any]]:
        """Every rule as Prometheus evaluates it (``health``, ``lastError``, ...)."""
        groups = self._get("/api/v1/rules")["groups"]
        return [rule for group in groups for rule in group["rules"]]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def finite(result: list[dict[str, Any]]) -> list[float]:
    """The finite sample values of an instant query's result (NaN: a quantile of nothing)."""
    values = [float(sample["value"][1]) for sample in result]
    return [value for value in values if math.isfinite(value)]


def start_prometheus(
    folder: Path, targets: list[str], rule_files: list[Path], interval: str = "1s"
) -> Prometheus:
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }
    config_path = folder / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = folder / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prometheus = Prometheus(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{prometheus.log()}")
        try:
            if httpx.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200:
                return prometheus
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_prometheus(prometheus)
    raise RuntimeError(f"prometheus not ready after 60 s:\n{prometheus.log()}")


def stop_prometheus(prometheus: Prometheus) -> None:
    if prometheus.proc.poll() is None:
        prometheus.proc.terminate()
        try:
            prometheus.proc.wait(30)
        except subprocess.TimeoutExpired:
            prometheus.proc.kill()
            prometheus.proc.wait()


def promtool_check_rules(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
