"""Traces (``OPENTELEMETRY=true``): a span per request, continuing the caller's trace, with
children for its decoding, its wait in the queue and its encoding, and one span per model call
(a batch), linked from every request it served.

Who makes what:

* **The request's span** is FastAPI's own (its OpenTelemetry hooks, ``FastAPI(telemetry=...)``
  in :mod:`app.main`): a SERVER span that continues the W3C ``traceparent`` (and baggage) the
  caller sent, named by the route (``POST /v1/models/{name}:predict``), with HTTP's semantic
  attributes and an error status for a 5xx. Kept rather than remade here: it is the
  framework's, it follows the conventions, and it costs nothing when off. Its metrics (the
  Prometheus histograms cover them), log events and per-dependency spans are turned off.
  :mod:`app.middleware` adds to it the request id and what the access line holds
  (:func:`request_attributes`: model, version, signature, instances, batch size, the times).
* **decode** (:meth:`Tracing.span`) is a live span around the protocol's codec in
  :meth:`app.serving.ModelServer.predict`; **encode** (:meth:`Tracing.encoded`) runs from the
  outputs coming back to the answer starting, from the stamps the access record keeps.
* **queue** (:meth:`Tracing.queued`) is made once the request is answered, from the batcher's
  own stamps (:class:`app.batching.Timing`): from entering the queue to its first model call
  starting, linked to the span of every call that served it.
* **model call** (:class:`CallSpans`, the batcher's :class:`~app.batching.CallTracer`) is made
  on the model thread as the call ends, from the same stamps: a child of the oldest sampled
  request in the batch, linked to every other one, with model, version, signature and batch
  size. So a lone request's trace holds its model call, and each request of a batch links to
  the one span of the call that served them all, rather than each having a span that pretends
  to be the call.

The numbers are the ones the access line and the histograms report: the same stamps, three
ways. With ``OPENTELEMETRY=false`` (the default) none of this runs: FastAPI's hooks are off,
the server has no :class:`Tracing` and the batchers no tracer; what remains is an ``is None``
test at each place.

The provider: the OpenTelemetry SDK's (the ``otel`` extra), made by :func:`tracer_provider`
from the standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``, the default, ``console``,
``none``, or several, comma-separated), ``OTEL_EXPORTER_OTLP_ENDPOINT`` and the other
``OTEL_EXPORTER_OTLP_*`` (OTLP over HTTP, or gRPC with its exporter installed),
``OTEL_SERVICE_NAME`` (default ``keras-inference-service``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``. A provider set up before the app starts (``opentelemetry-instrument
python -m app``, or a test's) is used as it is.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TracerProvider

from app import __version__
from app.batching import Call, Timing

if TYPE_CHECKING:
    from app.access import AccessRecord

SERVICE_NAME = "keras-inference-service"
# Our own attributes, beside OpenTelemetry's semantic ones.
PREFIX = "inference."
# Probes and scrapes: a trace every few seconds per replica that tells nothing.
UNTRACED = frozenset({"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})


class TracingUnavailable(RuntimeError):
    """``OPENTELEMETRY=true`` without the SDK, or with an exporter that cannot be made."""


def untraced(scope: MutableMapping[str, Any]) -> bool:
    """For FastAPI's ``exclude``: requests that get no span."""
    return scope.get("path") in UNTRACED


def tracer_provider() -> TracerProvider:
    """The global provider; made from the ``OTEL_*`` variables and set first if none is."""
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current  # set up before us (opentelemetry-instrument, a test)
    provider = provider_from_environment()
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider()


def provider_from_environment() -> TracerProvider:
    """An SDK provider exporting as ``OTEL_TRACES_EXPORTER`` says (TracingUnavailable if the
    SDK or an exporter is missing, or the value is not one of ours)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
            SpanExporter,
        )
    except ImportError as exc:
        raise TracingUnavailable(
            "OPENTELEMETRY=true needs the OpenTelemetry SDK: "
            "pip install 'keras-inference-service[otel]'"
        ) from exc
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = SdkTracerProvider(resource=resource)
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().replace(" ", "").split(",")
    for name in filter(None, names):
        if name == "none":
            continue
        if name == "console":  # for a terminal: each span as it ends
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
            continue
        if name != "otlp":
            raise TracingUnavailable(
                f"OTEL_TRACES_EXPORTER={name!r}: this service exports with otlp, console or none"
            )
        exporter: SpanExporter = _otlp_exporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _otlp_exporter() -> Any:
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    )
    try:
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()
        if protocol == "grpc":  # not a dependency: imported by name
            module = importlib.import_module(
                "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
            )
            return module.OTLPSpanExporter()
    except ImportError as exc:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        raise TracingUnavailable(f"OTLP over {protocol} needs {package} installed") from exc
    raise TracingUnavailable(
        f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use http/protobuf (or grpc, with "
        "opentelemetry-exporter-otlp-proto-grpc installed)"
    )


def flush(provider: TracerProvider) -> None:
    """Export what is buffered (at shutdown), if the provider can."""
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush()


def _epoch_ns(stamp: float, now_ns: int, now: float) -> int:
    """A ``perf_counter`` reading as wall-clock nanoseconds, against a reading of both now."""
    return now_ns - int((now - stamp) * 1e9)


def _sampled(context: object) -> SpanContext | None:
    if isinstance(context, SpanContext) and context.is_valid and context.trace_flags.sampled:
        return context
    return None


class Tracing:
    """The service's spans, for one provider."""

    def __init__(self, provider: TracerProvider) -> None:
        self.tracer = provider.get_tracer(SERVICE_NAME, __version__)

    @contextmanager
    def span(self, name: str) -> Iterator[None]:
        """A live child span of the current one (decode); an exception marks it failed."""
        with self.tracer.start_as_current_span(name):
            yield

    @staticmethod
    def context() -> SpanContext | None:
        """The current span's context (for :attr:`Timing.context`), if it is sampled."""
        return _sampled(trace.get_current_span().get_span_context())

    def queued(self, timing: Timing, error: BaseException | None) -> None:
        """The request's ``queue`` span, from its stamps: from entering the queue to its first
        call starting (or to now, if none did), linked to each call's span."""
        if not timing.queued_at or timing.context is None:
            return
        now_ns, now = time.time_ns(), time.perf_counter()
        started = [call.started for call in timing.calls if call.started]
        end = min(started) if started else now
        links = [Link(call.trace) for call in timing.calls if isinstance(call.trace, SpanContext)]
        span = self.tracer.start_span(
            "queue",
            links=links,
            start_time=_epoch_ns(timing.queued_at, now_ns, now),
            attributes={f"{PREFIX}instances": timing.instances},
        )
        if error is not None and not started:
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        span.end(end_time=_epoch_ns(end, now_ns, now))

    def encoded(self, answered_at: float) -> None:
        """The request's ``encode`` span: from its outputs coming back to its answer starting
        (now)."""
        now_ns, now = time.time_ns(), time.perf_counter()
        span = self.tracer.start_span("encode", start_time=_epoch_ns(answered_at, now_ns, now))
        span.end(end_time=now_ns)

    def call_spans(self, model: str, version: int, signature: str) -> CallSpans:
        return CallSpans(self.tracer, model, version, signature)


class CallSpans:
    """The batcher's :class:`~app.batching.CallTracer`: a ``model call`` span for each call."""

    def __init__(self, tracer: trace.Tracer, model: str, version: int, signature: str) -> None:
        self._tracer = tracer
        self._attributes: dict[str, str | int] = {
            f"{PREFIX}model": model,
            f"{PREFIX}version": version,
            f"{PREFIX}signature": signature,
        }

    def call_done(self, call: Call, contexts: list[object]) -> SpanContext | None:
        sampled = [context for c in contexts if (context := _sampled(c)) is not None]
        if not sampled:  # no request of the batch is traced
            return None
        now_ns, now = time.time_ns(), time.perf_counter()
        parent, *others = sampled
        span = self._tracer.start_span(
            "model call",
            context=trace.set_span_in_context(trace.NonRecordingSpan(parent)),
            links=[Link(context) for context in others],
            start_time=_epoch_ns(call.started, now_ns, now),
            attributes={
                **self._attributes,
                f"{PREFIX}batch_size": call.size,
                f"{PREFIX}requests": len(contexts),
            },
        )
        if not call.ok:
            span.set_status(Status(StatusCode.ERROR, "the model call failed"))
        span.end(end_time=_epoch_ns(call.ended, now_ns, now))
        return span.get_span_context()


def request_attributes(request_id: str, record: AccessRecord) -> dict[str, Any]:
    """What the request's span gets: the request id and the access line's prediction fields."""
    attributes: dict[str, Any] = {f"{PREFIX}request_id": request_id}
    for name, value in record.fields().items():
        if name != "trace_id":
            attributes[PREFIX + name] = value
    return attributes
