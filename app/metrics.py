"""Prometheus metrics, summed across worker processes when ``WORKERS`` > 1.

With more than one worker, ``python -m app`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start; each process then writes its samples there and ``/metrics`` adds them up
(prometheus-client's multiprocess mode).

Every metric, its labels and buckets are listed in docs/operations.md ("Metrics"). Label values
stay few: models are the folders of ``MODEL_DIR`` (a request for any other name counts as
``_other``), and statuses are grouped into classes (``2xx``...) where a histogram multiplies
them. Versions are a label only on the per-request and per-call histograms, and only while
the version is served: its series are made when it is loaded and removed once it is retired
(:class:`ModelMetrics`), so a model has series for the versions it serves, not for every
version it ever had. Gauges an autoscaler reads (queue depth, in flight) are per model, summed
over its versions. (prometheus-client's multiprocess mode, ``WORKERS`` > 1, cannot remove
series: there a retired version's series stay, unchanging, until the workers restart.)
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
# Waiting starts at nothing: an idle model takes a request into the next call at once.
QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, *LATENCY_BUCKETS)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# The model label of a request for a name that is no model folder (bounded cardinality).
OTHER_MODEL = "_other"

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
    "model_batch_size", "Instances per model call", ["model", "version"], buckets=BATCH_BUCKETS
)
MODEL_LATENCY = Histogram(
    "model_call_duration_seconds",
    "Duration of one model call (one batch)",
    ["model", "version", "outcome"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "model_queue_depth",
    "Instances waiting for a model call, all versions together",
    ["model"],
    multiprocess_mode="livesum",
)
VERSION_STATE = Gauge(
    "model_version_state",
    "1 for the state each model version is in (LOADING, AVAILABLE, UNLOADING, END), else 0",
    ["model", "version", "state"],
    multiprocess_mode="livemax",
)
LOADS = Counter(
    "model_loads_total",
    "Attempts to load a model version, by outcome (ok, error)",
    ["model", "outcome"],
)
LOAD_FAILURES = Counter(
    "model_load_failures_total",
    "Model versions given up on after every retry (shown as END with their error)",
    ["model"],
)
LOAD_SECONDS = Histogram(
    "model_load_duration_seconds",
    "Time to load and warm up one model version",
    ["model"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
POLLS = Counter("model_dir_polls_total", "Scans of MODEL_DIR by the version poller")
MODEL_REQUEST_LATENCY = Histogram(
    "model_request_duration_seconds",
    "Time from request to response of prediction requests, by model, version (empty: none "
    "answered), protocol and status class",
    ["model", "version", "protocol", "status_class"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge(
    "model_requests_in_flight",
    "Prediction requests received and not yet answered, by model",
    ["model"],
    multiprocess_mode="livesum",
)
QUEUE_WAIT = Histogram(
    "model_queue_wait_seconds",
    "Time from a request's instances entering the queue to their model call starting",
    ["model", "version"],
    buckets=QUEUE_BUCKETS,
)
# The histograms with a version label: their series of a version go when it is retired.
VERSIONED = (BATCH_SIZE, MODEL_LATENCY, MODEL_REQUEST_LATENCY, QUEUE_WAIT)
QUEUE_CAPACITY = Gauge(
    "model_queue_capacity",
    "Instances a model's queue takes (MAX_QUEUE_SIZE) before it refuses requests with 503",
    multiprocess_mode="livesum",
)
VERSIONS_FAILED = Gauge(
    "model_versions_failed",
    "Versions in END because they could not be loaded (a retired version's END is not counted)",
    ["model"],
    multiprocess_mode="livemax",
)
STATES = ("LOADING", "AVAILABLE", "UNLOADING", "END")

# Every model the service has had a version of: the model label's values.
_models: set[str] = set()
# The state of each version (for the END that follows LOADING, a failed load) and the failed.
_states: dict[tuple[str, int], str] = {}
_failed: dict[str, set[int]] = {}


def version_state(model: str, version: int, state: str | None) -> None:
    """Set a version's state gauge: 1 for ``state``, 0 for the others (all 0 for None: a
    version the service no longer knows; zeroed rather than removed, which multiprocess
    mode cannot do). A version that goes from LOADING to END failed to load: it counts in
    ``model_versions_failed`` until it is loaded again or forgotten."""
    for name in STATES:
        VERSION_STATE.labels(model, str(version), name).set(1 if name == state else 0)
    _models.add(model)
    key = (model, version)
    before = _states.pop(key, None)
    if state is not None:
        _states[key] = state
    failed = _failed.setdefault(model, set())
    if state == "END" and before == "LOADING":
        failed.add(version)
    elif state != "END":
        failed.discard(version)
    VERSIONS_FAILED.labels(model).set(len(failed))


def model_label(name: str) -> str:
    """``name`` if a version of it was ever loaded or tried here, else ``_other``."""
    return name if name in _models else OTHER_MODEL


def queue_capacity(instances: int) -> None:
    QUEUE_CAPACITY.set(instances)


def load_attempt(model: str, seconds: float, ok: bool) -> None:
    LOADS.labels(model, "ok" if ok else "error").inc()
    if ok:
        LOAD_SECONDS.labels(model).observe(seconds)


def load_given_up(model: str) -> None:
    LOAD_FAILURES.labels(model).inc()


# Instances queued for each model version and signature; a model's depth is their sum.
_depths: dict[str, dict[tuple[int, str], int]] = {}


# The versions served, with their batchers' open ModelMetrics (one per signature): only these
# get series of their own in model_request_duration_seconds.
_open_versions: dict[tuple[str, str], int] = {}


class ModelMetrics:
    """The batcher's observer for one model version and signature: batch sizes, call latency,
    queue wait, queue depth.

    The histograms are labelled by model and version (a canary's calls apart from the stable
    version's; a dashboard sums over versions), the queue depth by model alone, so that an
    autoscaler reads one series per model across rollouts: ``model_queue_depth`` is the sum
    over the model's versions. The version's series go once the last of its ModelMetrics is
    closed (:func:`_forget_version`).
    """

    def __init__(self, model: str, version: int, signature: str = "serving_default") -> None:
        self._model = model
        self._key = (model, str(version))
        self._version = (version, signature)
        self._versions = _depths.setdefault(model, {})
        _open_versions[self._key] = _open_versions.get(self._key, 0) + 1
        self._depth = QUEUE_DEPTH.labels(model)
        self._batch = BATCH_SIZE.labels(model, str(version))
        self._ok = MODEL_LATENCY.labels(model, str(version), "ok")
        self._failed = MODEL_LATENCY.labels(model, str(version), "error")
        self._wait = QUEUE_WAIT.labels(model, str(version))
        self._closed = False

    def queue_depth(self, instances: int) -> None:
        self._versions[self._version] = instances
        self._depth.set(sum(self._versions.values()) if len(self._versions) > 1 else instances)

    def close(self) -> None:
        """The version is unloaded: its queue no longer counts, and once every signature's
        metrics are closed, its series go."""
        self._versions.pop(self._version, None)
        self._depth.set(sum(self._versions.values()))
        if self._closed:
            return
        self._closed = True
        left = _open_versions.get(self._key, 1) - 1
        if left > 0:
            _open_versions[self._key] = left
        else:
            _open_versions.pop(self._key, None)
            _forget_version(*self._key)

    def batch_done(self, instances: int, seconds: float, ok: bool) -> None:
        self._batch.observe(instances)
        (self._ok if ok else self._failed).observe(seconds)

    def queue_wait(self, seconds: float) -> None:
        """One request's wait, from entering the queue to its model call starting (the batcher
        reports each part of a request split across calls)."""
        self._wait.observe(seconds)


def _forget_version(model: str, version: str) -> None:
    """Remove a retired version's series (not possible in multiprocess mode: left as they are)."""
    for key in [key for key in _model_children if key[:2] == (model, version)]:
        del _model_children[key]
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return
    for metric in VERSIONED:
        metric.remove_by_labels({"model": model, "version": version})


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


# The same for prediction requests, by (model label, version, protocol, status).
_model_children: dict[tuple[str, str, str, int], Histogram] = {}
_in_flight: dict[str, Gauge] = {}


def request_started(model: str) -> None:
    """A prediction request for ``model`` (a :func:`model_label`) has come in."""
    gauge = _in_flight.get(model)
    if gauge is None:
        gauge = _in_flight[model] = IN_FLIGHT.labels(model)
    gauge.inc()


def request_done(model: str, version: str, protocol: str, status: int, seconds: float) -> None:
    """The prediction request :func:`request_started` counted has been answered, by
    ``version`` ("" if none answered it)."""
    _in_flight[model].dec()
    key = (model, version, protocol, status)
    child = _model_children.get(key)
    if child is None:
        if version and (model, version) not in _open_versions:
            # Answered by a version retired meanwhile: no series of its own again.
            key = (model, "", protocol, status)
            child = _model_children.get(key)
        if child is None:
            child = MODEL_REQUEST_LATENCY.labels(model, key[1], protocol, f"{status // 100}xx")
            _model_children[key] = child
    child.observe(seconds)


def render() -> tuple[bytes, str]:
    """The exposition text for ``/metrics``, across processes in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead() -> None:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
