"""The dashboard and the alert rules against a real Prometheus scraping a real server.

A server (``python -m app``, a small queue so that bursts are shed with 503) gets a little
mixed load through the three protocols, with client errors and shed requests among the
answers, while a Prometheus started here scrapes it every second and evaluates
``deploy/monitoring/alerts.yml``. Then:

* ``promtool check rules`` passes on the rules file and on the PrometheusRule's groups, which
  equal the file's;
* every rule is evaluated by that Prometheus without error, every alert's quantity (its
  expression without the final comparison) returns data, and so does every query of the
  dashboard, except those on metrics listed in :data:`NOT_FED_YET`, which must return nothing
  (so that the list is emptied as soon as they are fed).

``DASHBOARD_PNG=docs/dashboard.png`` also plots the dashboard's main panels over a longer run
in phases (:func:`plot_dashboard`), for docs/operations.md.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from app.metrics import OTHER_MODEL
from tests.support.predictions import png
from tests.support.prometheus import (
    JOB,
    Prometheus,
    finite,
    promtool_check_rules,
    start_prometheus,
    stop_prometheus,
)
from tests.support.server import start_server, stop_server
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "keras-inference-service.json"
ALERTS = MONITORING / "alerts.yml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
# Grafana's $__rate_interval is at least four scrape intervals; a second here.
RATE_INTERVAL = "15s"
# Metrics that nothing feeds yet, whose queries must come back empty until something does
# (so that the list is emptied as soon as they are fed). None now.
NOT_FED_YET: set[str] = set()
QUEUE = 16  # MAX_QUEUE_SIZE: requests of 8 reviews at 24 connections overflow it
LOAD_S = 12.0
PHASES = ((4, 40.0), (24, 40.0), (64, 40.0), (8, 30.0))  # the picture's run: (connections, s)

REVIEWS = ["A moving, beautifully acted film.", "Dull and far too long."] * 4
DIGIT = png(np.zeros((28, 28), dtype=np.uint8))
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/sentiment/predict", {"json": {"reviews": REVIEWS}}),
    ("/v1/digits/predict", {"files": {"file": ("d.png", DIGIT, "image/png")}}),
    ("/v1/models/sentiment:predict", {"json": {"instances": REVIEWS[:2]}}),
    (
        "/v2/models/sentiment/infer",
        {
            "json": {
                "inputs": [
                    {"name": "reviews", "datatype": "BYTES", "shape": [1], "data": ["Fine."]}
                ]
            }
        },
    ),
    ("/v1/models/no-such-model:predict", {"json": {"instances": [1]}}),  # 404
    ("/v1/sentiment/predict", {"content": b"{", "headers": {"Content-Type": "application/json"}}),
]


async def _load(url: str, connections: int, seconds: float) -> dict[int, int]:
    """Send REQUESTS round-robin on ``connections`` connections for ``seconds``; statuses."""
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker(offset: int) -> None:
            i = offset
            while time.monotonic() < deadline:
                path, kwargs = REQUESTS[i % len(REQUESTS)]
                response = await client.post(path, **kwargs)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                i += 1

        await asyncio.gather(*(worker(i) for i in range(connections)))
    return statuses


def _scraped_after(prometheus: Prometheus, moment: float) -> bool:
    result = prometheus.query(f'timestamp(up{{job="{JOB}"}})')
    return bool(result) and float(result[0]["value"][1]) > moment + 1


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    folder = tmp_path_factory.mktemp("prometheus")
    env = {"MAX_QUEUE_SIZE": str(QUEUE), "MAX_BATCH_DELAY_MS": "20"}
    proc, url = start_server(env, python_m_app=True, ready_timeout_s=120)
    prometheus = start_prometheus(folder, [url.removeprefix("http://")], [ALERTS])
    try:
        begun = time.time()
        wait_until(lambda: _scraped_after(prometheus, begun), "a first scrape", within_s=30)
        picture = os.environ.get("DASHBOARD_PNG")
        started = time.time()
        statuses: dict[int, int] = {}
        for connections, seconds in PHASES if picture else ((24, LOAD_S),):
            for status, count in asyncio.run(_load(url, connections, seconds)).items():
                statuses[status] = statuses.get(status, 0) + count
        ended = time.time()
        assert {200, 400, 404, 503} <= statuses.keys(), statuses
        wait_until(lambda: _scraped_after(prometheus, ended), "a scrape after the load")
        if picture:
            plot_dashboard(prometheus, started, ended, Path(picture))
        yield prometheus
    finally:
        stop_prometheus(prometheus)
        stop_server(proc)


# ---- the rules ------------------------------------------------------------------------------

COMPARISON = re.compile(r"(?s)(.*\S)\s*(>|<|>=|<=|==|!=)\s*(-?[0-9.]+)\s*")


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules_and_the_prometheusrule_holds_the_same(tmp_path: Path) -> None:
    result = promtool_check_rules(ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    operator = tmp_path / "operator-rules.yml"
    operator.write_text(yaml.safe_dump(rule["spec"]))
    result = promtool_check_rules(operator)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_cover_what_an_operator_is_paged_for() -> None:
    expressions = {rule["alert"]: rule["expr"] for rule in _alerts()}
    assert len(expressions) == 6
    joined = "\n".join(expressions.values())
    for needle in (
        'status_class="5xx"',  # error rate
        "histogram_quantile(0.99",  # p99 over the SLO
        "model_queue_depth",  # queue saturation
        'status="503"',  # shedding
        "model_versions_failed",  # a version in END, failed to load
        "up{",  # no replica up
    ):
        assert needle in joined, needle
    for rule in _alerts():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]


def test_prometheus_evaluates_every_rule_without_error(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        rules = prometheus.rules()
        return rules if rules and all(rule["health"] != "unknown" for rule in rules) else None

    rules = wait_until(evaluated, "every rule evaluated once")
    assert {rule["name"] for rule in rules} == {rule["alert"] for rule in _alerts()}
    for rule in rules:
        assert rule["health"] == "ok", rule


@pytest.mark.parametrize("alert", [rule["alert"] for rule in _alerts()])
def test_each_alerts_quantity_returns_data(prometheus: Prometheus, alert: str) -> None:
    (rule,) = [rule for rule in _alerts() if rule["alert"] == alert]
    match = COMPARISON.fullmatch(rule["expr"])
    assert match, f"{alert}: write the expression as <quantity> <comparison> <threshold>"
    quantity = match[1]
    prometheus.query(rule["expr"])  # the whole expression runs too
    assert finite(prometheus.query(quantity)), f"{alert}: no data for {quantity}"


# ---- the dashboard --------------------------------------------------------------------------


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, legend, expression as Prometheus gets it) for every query."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$job", JOB).replace("$__rate_interval", RATE_INTERVAL)
            queries.append((panel["title"], target["legendFormat"], expr))
    return queries


def test_the_dashboard_uses_its_variables_and_the_rules_job() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["job"]["current"]["value"] == JOB
    assert variables["datasource"]["type"] == "datasource"
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert 'job="$job"' in target["expr"], (panel["title"], target["expr"])
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for needle in (
        "requests",
        "errors",
        "latency",
        "queue wait",
        "batch",
        "queue depth",
        "version",
    ):
        assert needle in titles, needle


@pytest.mark.parametrize(
    ("title", "legend", "expr"),
    dashboard_queries(),
    ids=[f"{title}: {legend}" for title, legend, _ in dashboard_queries()],
)
def test_each_dashboard_query_returns_data(
    prometheus: Prometheus, title: str, legend: str, expr: str
) -> None:
    result = finite(prometheus.query(expr))
    if any(metric in expr for metric in NOT_FED_YET):
        assert result == [], f"{expr} has data now: take its metric out of NOT_FED_YET"
    else:
        assert result, f"{title} ({legend}): no data for {expr}"


# ---- the picture ----------------------------------------------------------------------------

MAIN_PANELS = (
    "Requests by model",
    "Errors by model",
    "Latency by model (p50, p95, p99)",
    "Queue wait vs model time (p99)",
    "Batch size",
    "Queue depth",
)


def plot_dashboard(prometheus: Prometheus, start: float, end: float, path: Path) -> None:
    """The dashboard's main panels over ``start``-``end``, from the same queries, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = {"reqps": "requests/s", "s": "seconds", "short": ""}
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {panel["title"]: panel for panel in dashboard["panels"]}
    figure, axes = plt.subplots(3, 2, figsize=(13, 11), sharex=True)
    for ax, title in zip(axes.flat, MAIN_PANELS, strict=True):
        panel = panels[title]
        for target in panel["targets"]:
            expr = target["expr"].replace("$job", JOB).replace("$__rate_interval", RATE_INTERVAL)
            for series in prometheus.query_range(expr, start, end, 2):
                times = [float(t) - start for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                if not any(math.isfinite(v) for v in values):
                    continue
                labels = series["metric"]
                legend = re.sub(
                    r"\{\{(\w+)\}\}",
                    lambda m, labels=labels: labels.get(m[1], ""),
                    target["legendFormat"],
                )
                # matplotlib leaves labels starting with "_" out of the legend.
                legend = legend.replace(OTHER_MODEL, "other names")
                ax.plot(times, values, label=legend, linewidth=1.2)
        ax.set_title(title)
        ax.set_ylabel(units[panel["fieldConfig"]["defaults"]["unit"]])
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("seconds into the run")
    phases = ", ".join(f"{c} connections for {s:g} s" for c, s in PHASES)
    figure.suptitle(f"Keras inference service dashboard, main panels ({phases})", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
