"""Prometheus metrics, summed across worker processes when ``WORKERS`` > 1.

With more than one worker, ``python -m app`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start; each process then writes its samples there and ``/metrics`` adds them up
(prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests by endpoint, method and status",
    ["endpoint", "method", "status"],
)
REQUEST_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from request to response, by endpoint",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "model_batch_size", "Instances per model call", ["model"], buckets=BATCH_BUCKETS
)
MODEL_LATENCY = Histogram(
    "model_call_duration_seconds",
    "Duration of one model call (one batch)",
    ["model", "outcome"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "model_queue_depth",
    "Instances waiting for a model call",
    ["model"],
    multiprocess_mode="livesum",
)


class ModelMetrics:
    """The batcher's observer for one model: batch sizes, call latency, queue depth."""

    def __init__(self, model: str) -> None:
        self._depth = QUEUE_DEPTH.labels(model)
        self._batch = BATCH_SIZE.labels(model)
        self._ok = MODEL_LATENCY.labels(model, "ok")
        self._failed = MODEL_LATENCY.labels(model, "error")

    def queue_depth(self, instances: int) -> None:
        self._depth.set(instances)

    def batch_done(self, instances: int, seconds: float, ok: bool) -> None:
        self._batch.observe(instances)
        (self._ok if ok else self._failed).observe(seconds)


# Each request's children, found once: .labels() builds and locks a key every call.
_request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    key = (endpoint, method, status)
    children = _request_children.get(key)
    if children is None:
        children = (
            REQUESTS.labels(endpoint, method, str(status)),
            REQUEST_LATENCY.labels(endpoint),
        )
        _request_children[key] = children
    count, latency = children
    count.inc()
    latency.observe(seconds)


def render() -> tuple[bytes, str]:
    """The exposition text for ``/metrics``, across processes in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead() -> None:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(os.getpid())
