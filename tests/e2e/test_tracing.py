"""Traces (``OPENTELEMETRY=true``) from a real server: what spans a request makes, how a batch's
one model call span is linked from every request it served, and the export.

The first two tests run ``tests.support.traced_app`` (the service with the fault switch and the
SDK's in-memory exporter, its spans served as JSON): a request sent with a W3C ``traceparent``
yields spans of that trace for the request, its decoding, its wait in the queue, the model call
and the encoding, with the call's link and attributes, and the same figures as its access line;
requests held in the queue behind a held model call, then served by one call, all link that
call's one span. The last runs ``python -m app`` as deployed, exporting by OTLP over HTTP to a
receiver here (and to the console), as ``OTEL_*`` variables say.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import server_log, start_server, stop_server
from tests.support.waiting import wait_until

PREDICT = "/v1/models/sentiment:predict"
REQUEST_SPAN = "POST /v1/models/{name}:predict"
CALLER_SPAN = "00f067aa0ba902b7"
BODY = {"instances": ["A fine film.", "Dull."]}
Span = dict[str, Any]


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{CALLER_SPAN}-01"


def trace_id(n: int) -> str:
    return f"{n:032x}"


class Traced:
    def __init__(self, proc: Popen, url: str, fault_file: Path) -> None:
        self.proc, self.url, self.fault_file = proc, url, fault_file

    def spans(self, trace: str) -> list[Span]:
        spans = httpx.get(f"{self.url}/test/spans", timeout=10).json()
        return [span for span in spans if span["trace_id"] == trace]

    def named(self, trace: str, *names: str) -> dict[str, Span] | None:
        """The trace's spans by name, once every one of ``names`` has ended."""
        spans = {span["name"]: span for span in self.spans(trace)}
        return spans if set(names) <= spans.keys() else None

    def calls(self) -> list[str]:
        path = self.fault_file.with_name(self.fault_file.name + ".calls")
        return path.read_text().splitlines() if path.exists() else []

    def queue_depth(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            if family.name == "model_queue_depth":
                for sample in family.samples:
                    if sample.labels.get("model") == "sentiment":
                        return sample.value
        return 0.0

    def access_line(self, request_id: str) -> dict[str, Any] | None:
        for line in server_log(self.proc).splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("logger") == "app.access" and entry["request_id"] == request_id:
                    return entry
        return None


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    fault_file = tmp_path_factory.mktemp("traced") / "fault"
    env = {
        "OPENTELEMETRY": "true",
        "FAULT_FILE": str(fault_file),
        "LOG_FORMAT": "json",
        "ACCESS_LOG": "all",
    }
    proc, url = start_server(env, target="tests.support.traced_app:app", ready_timeout_s=120)
    try:
        yield Traced(proc, url, fault_file)
    finally:
        fault_file.write_text("")
        stop_server(proc)


def test_a_request_traces_its_decoding_queue_model_call_and_encoding(traced: Traced) -> None:
    trace = trace_id(0x4BF92F3577B34DA6A3CE929D0E0E4736)
    response = httpx.post(
        f"{traced.url}{PREDICT}",
        json=BODY,
        headers={"traceparent": traceparent(trace), "X-Request-ID": "traced-one"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    names = (REQUEST_SPAN, "decode", "queue", "model call", "encode")
    spans = wait_until(lambda: traced.named(trace, *names), f"the spans {names} of the trace")
    request, decode, queue, call, encode = (spans[name] for name in names)

    # The request's span continues the caller's; the others are its children, the model call
    # too (the oldest traced request of its batch, here the only one).
    assert request["kind"] == "SERVER"
    assert request["parent_id"] == CALLER_SPAN
    for child in (decode, queue, call, encode):
        assert child["parent_id"] == request["span_id"], child
    assert queue["links"] == [{"trace_id": trace, "span_id": call["span_id"]}]
    assert call["attributes"] == {
        "inference.model": "sentiment",
        "inference.version": 2,
        "inference.signature": "serving_default",
        "inference.batch_size": 2,
        "inference.requests": 1,
    }
    assert call["links"] == []
    # In order: decoded, queued, called, encoded; the queue ends as the call starts (one
    # stamp, read into the two spans a few microseconds apart).
    assert decode["end_ns"] <= queue["start_ns"] + 1_000_000
    assert abs(queue["end_ns"] - call["start_ns"]) < 1_000_000
    assert call["end_ns"] <= encode["start_ns"] + 1_000_000
    assert request["start_ns"] <= decode["start_ns"]
    assert encode["end_ns"] <= request["end_ns"]

    # The request's span and its access line carry the same figures, and the spans' lengths
    # are those figures.
    attributes = request["attributes"]
    assert attributes["inference.request_id"] == "traced-one"
    line = wait_until(lambda: traced.access_line("traced-one"), "the access line")
    assert line["trace_id"] == trace
    for field in ("model", "version", "signature", "instances", "batch_size"):
        assert attributes[f"inference.{field}"] == line[field], field
    assert (line["version"], line["instances"], line["batch_size"]) == (2, 2, 2)
    for field, span in (("queue_ms", queue), ("compute_ms", call)):
        assert attributes[f"inference.{field}"] == line[field], field
        assert abs((span["end_ns"] - span["start_ns"]) / 1e6 - line[field]) < 0.01, field
    for field in ("decode_ms", "encode_ms"):
        assert attributes[f"inference.{field}"] == line[field] >= 0, field


async def test_requests_served_by_one_call_all_link_its_one_span(traced: Traced) -> None:
    traces = [trace_id(0xB0 + i) for i in range(4)]

    async def send(client: httpx.AsyncClient, trace: str) -> int:
        response = await client.post(
            PREDICT, json=BODY, headers={"traceparent": traceparent(trace)}
        )
        return response.status_code

    traced.fault_file.write_text("block:sentiment")
    try:
        async with httpx.AsyncClient(base_url=traced.url, timeout=60) as client:
            first = asyncio.create_task(send(client, traces[0]))
            calls = len(traced.calls())
            await asyncio.to_thread(
                wait_until, lambda: len(traced.calls()) > calls, "the first call held"
            )
            held = [asyncio.create_task(send(client, trace)) for trace in traces[1:]]
            await asyncio.to_thread(
                wait_until, lambda: traced.queue_depth() == 6, "three requests queued"
            )
            traced.fault_file.write_text("")
            assert await asyncio.gather(first, *held) == [200] * 4
    finally:
        traced.fault_file.write_text("")

    spans = [
        wait_until(lambda t=t: traced.named(t, REQUEST_SPAN, "queue"), f"the spans of {t}")
        for t in traces
    ]
    linked = {span["queue"]["links"][0]["span_id"] for span in spans[1:]}
    assert len(linked) == 1, "the three queued requests link one call"
    assert spans[0]["queue"]["links"][0]["span_id"] not in linked, "the first had its own"
    # That call's span: in the trace of the oldest of the three, linked to the other two.
    (call,) = [
        span
        for trace in traces[1:]
        for span in traced.spans(trace)
        if span["name"] == "model call" and span["span_id"] in linked
    ]
    assert call["attributes"]["inference.batch_size"] == 6
    assert call["attributes"]["inference.requests"] == 3
    requests = {s[REQUEST_SPAN]["span_id"]: s[REQUEST_SPAN]["trace_id"] for s in spans[1:]}
    parent = {call["parent_id"]: call["trace_id"]}
    links = {link["span_id"]: link["trace_id"] for link in call["links"]}
    assert parent | links == requests
    assert len(links) == 2


# ---- exporting, as deployed ----------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: keeps every span it is sent, with its service's name."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()


class _OtlpHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.server.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "service": resource.get("service.name"),
                            }
                        )
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_python_m_app_exports_by_otlp_and_to_the_console_as_otel_variables_say() -> None:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    env = {
        "OPENTELEMETRY": "true",
        "OTEL_TRACES_EXPORTER": "otlp,console",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_port}",
        "OTEL_SERVICE_NAME": "traced-service",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms between exports, not 5 s
    }
    trace = trace_id(0xC0FFEE)
    try:
        proc, url = start_server(env, python_m_app=True, ready_timeout_s=120)
        try:
            response = httpx.post(
                f"{url}{PREDICT}", json=BODY, headers={"traceparent": traceparent(trace)}
            )
            assert response.status_code == 200, response.text

            def exported() -> set[str] | None:
                with receiver.lock:
                    names = {s["name"] for s in receiver.spans if s["trace_id"] == trace}
                return names if "model call" in names and REQUEST_SPAN in names else None

            names = wait_until(exported, "the request's spans at the receiver")
            assert {"decode", "queue", "encode"} <= names
            with receiver.lock:
                assert {s["service"] for s in receiver.spans} == {"traced-service"}
                # Probes and scrapes are not traced (start_server polled /readyz).
                assert all(s["name"] != "GET /readyz" for s in receiver.spans)
        finally:
            stop_server(proc)
        assert f'"trace_id": "0x{trace}"' in server_log(proc)  # the console exporter's
    finally:
        receiver.shutdown()
        receiver.server_close()
