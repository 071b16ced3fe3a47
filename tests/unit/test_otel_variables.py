"""What ``OPENTELEMETRY=true`` makes of the standard ``OTEL_*`` variables (app/tracing.py): the
exporters it knows, a clear error for those it does not, the service's name. The spans
themselves are tested on a real server (tests/e2e/test_tracing.py)."""

from __future__ import annotations

import importlib.util

import pytest
from opentelemetry.sdk.trace import TracerProvider

from app import __version__
from app.tracing import SERVICE_NAME, TracingUnavailable, provider_from_environment


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("exporters", ["otlp", "console", "none", "otlp, console", ""])
def test_the_exporters_it_knows_make_an_sdk_provider(
    monkeypatch: pytest.MonkeyPatch, exporters: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", exporters)
    provider = provider_from_environment()
    assert isinstance(provider, TracerProvider)
    provider.shutdown()


def test_the_service_is_named_unless_the_variables_name_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    attributes = provider_from_environment().resource.attributes
    assert attributes["service.name"] == SERVICE_NAME
    assert attributes["service.version"] == __version__
    monkeypatch.setenv("OTEL_SERVICE_NAME", "inference-eu")
    assert provider_from_environment().resource.attributes["service.name"] == "inference-eu"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    assert provider_from_environment().resource.attributes["service.name"] == "from-attributes"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER='zipkin'"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "use http/protobuf"),
    ],
)
def test_what_it_cannot_export_with_fails_start_up_saying_why(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(TracingUnavailable, match=message.replace("(", r"\(")):
        provider_from_environment()


def test_otlp_over_grpc_needs_its_exporter_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    if importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None:
        provider_from_environment().shutdown()  # installed: it exports over gRPC
        return
    with pytest.raises(TracingUnavailable, match="opentelemetry-exporter-otlp-proto-grpc"):
        provider_from_environment()
