"""The version label stays bounded: a version's series exist while it is served and go once it
is retired (every signature's metrics closed); a request answered by a version retired
meanwhile counts without one. Read from the real exposition text, as Prometheus reads it."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from app import metrics
from app.metrics import ModelMetrics

MODEL = "retiring-model"  # a name no other test uses: the registry is the process's


def samples(version: str) -> list[tuple[str, float]]:
    """(name, value) of every sample of MODEL with that version label."""
    text = metrics.render()[0].decode()
    return [
        (sample.name, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("model") == MODEL and sample.labels.get("version") == version
    ]


def count(name: str, version: str) -> float:
    return sum(value for sample, value in samples(version) if sample == f"{name}_count")


def test_a_versions_series_live_as_long_as_the_version() -> None:
    default, other = ModelMetrics(MODEL, 7), ModelMetrics(MODEL, 7, "other_signature")
    default.batch_done(3, 0.004, ok=True)
    default.queue_wait(0.0002)
    metrics.request_started(MODEL)
    metrics.request_done(MODEL, "7", "tfserving", 200, 0.01)
    for name in (
        "model_batch_size",
        "model_queue_wait_seconds",
        "model_call_duration_seconds",
        "model_request_duration_seconds",
    ):
        assert count(name, "7") == 1.0, name

    default.close()  # one signature's batcher: the version is still served
    assert count("model_batch_size", "7") == 1.0
    other.close()  # the last: the version is retired
    assert samples("7") == []

    # A request it answered that ends after that counts for the model, without a version.
    metrics.request_started(MODEL)
    metrics.request_done(MODEL, "7", "tfserving", 200, 0.01)
    assert samples("7") == []
    assert count("model_request_duration_seconds", "") == 1.0

    # Loaded again, it has series again.
    again = ModelMetrics(MODEL, 7)
    metrics.request_started(MODEL)
    metrics.request_done(MODEL, "7", "tfserving", 200, 0.01)
    assert count("model_request_duration_seconds", "7") == 1.0
    again.close()
