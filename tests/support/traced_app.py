"""Test-only: the real service with the fault switch of :mod:`tests.support.faulty_app`, tracing
into memory, its spans served as JSON.

Run ``uvicorn tests.support.traced_app:app`` with ``OPENTELEMETRY=true`` (and ``FAULT_FILE`` to
hold model calls). Before the app is made, an SDK tracer provider with the SDK's
``InMemorySpanExporter`` is set as OpenTelemetry's global provider, as
``opentelemetry-instrument`` would set one up: the service then uses it as it is, for
FastAPI's request spans and its own. ``GET /test/spans`` answers every span that has ended, as
JSON (:func:`span_json`); ids as OpenTelemetry's hex strings.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.faulty_app import create_faulty_app

EXPORTER = InMemorySpanExporter()


def span_json(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": trace.format_trace_id(context.trace_id),
        "span_id": trace.format_span_id(context.span_id),
        "parent_id": trace.format_span_id(span.parent.span_id) if span.parent else None,
        "links": [
            {
                "trace_id": trace.format_trace_id(link.context.trace_id),
                "span_id": trace.format_span_id(link.context.span_id),
            }
            for link in span.links
        ],
        "attributes": dict(span.attributes or {}),
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "status": span.status.status_code.name,
    }


def create_traced_app() -> FastAPI:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)
    app = create_faulty_app()

    @app.get("/test/spans", include_in_schema=False)
    async def spans() -> list[dict[str, Any]]:
        return [span_json(span) for span in EXPORTER.get_finished_spans()]

    return app


app = create_traced_app()
