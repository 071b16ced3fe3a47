"""The access line and the request context: which requests get a line (``ACCESS_LOG``), what
it holds, the request id in every record of a request, and the prediction routes the metrics
and the access record recognise from the path alone.

The middleware runs here around a small Starlette app (real ASGI, no models), which stands in
for a route filling the request's :class:`AccessRecord` as the model server will.
"""

from __future__ import annotations

import hashlib
import logging
import re

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from app.access import AccessLogger, AccessRecord, key_id, prediction_target
from app.api import docs, health, playground
from app.batching import Call, Timing
from app.logs import ACCESS_LOGGER
from app.middleware import RequestContextMiddleware
from app.protocols.native import routes as native
from app.protocols.oip import routes as oip
from app.protocols.tfserving import routes as tfserving

KEYS = [SecretStr("first-key-0123"), SecretStr("second-key-4567")]
PROTOCOL_ROUTERS = {"native": native.router, "tfserving": tfserving.router, "oip": oip.router}
OTHER_ROUTERS = [health.router, docs.router, playground.router]


def _example_path(template: str, model: str) -> str:
    """The route's path with ``model`` for the model parameter and values for the others."""
    path = re.sub(r"\{name\}", model, template)
    return re.sub(r"\{(\w+)\}", lambda m: "3" if m[1] == "version" else "canary", path)


def _is_prediction(route: APIRoute) -> bool:
    return "POST" in route.methods and route.path.endswith(
        (":predict", ":classify", ":regress", "/infer", "/predict")
    )


def _routes(router: APIRouter) -> list[APIRoute]:
    return [route for route in router.routes if isinstance(route, APIRoute)]


def test_every_prediction_route_is_recognised_with_its_protocol_and_model() -> None:
    found = 0
    for protocol, router in PROTOCOL_ROUTERS.items():
        for route in filter(_is_prediction, _routes(router)):
            found += 1
            _check_recognised(route, protocol)
    assert found == 13  # native 2, TF Serving 3 x 3 (predict, classify, regress), OIP 2


def _check_recognised(route: APIRoute, protocol: str) -> None:
    if "{name}" in route.path:
        path = _example_path(route.path, "my-model.v2")
        assert prediction_target(path) == (protocol, "my-model.v2"), route.path
    else:  # the service's own routes name their model in the path
        model = route.path.split("/")[2]
        assert prediction_target(route.path) == (protocol, model), route.path


def test_no_other_route_is_taken_for_a_prediction() -> None:
    routers = [*PROTOCOL_ROUTERS.values(), *OTHER_ROUTERS]
    others = [route for router in routers for route in _routes(router) if not _is_prediction(route)]
    assert len(others) > 10
    for route in others:
        path = _example_path(route.path, "sentiment")
        assert prediction_target(path) is None, route.path
    for path in ("/v1/models/sentiment", "/v1/models/sentiment/metadata", "/v2/models/x/ready"):
        assert prediction_target(path) is None


def test_key_ids_are_a_short_hash_and_never_the_key() -> None:
    access = AccessLogger("all", KEYS)
    for key in KEYS:
        secret = key.get_secret_value().encode()
        expected = hashlib.sha256(secret).hexdigest()[:8]
        assert key_id(secret) == expected
        scope = {"headers": [(b"authorization", b"Bearer " + secret)]}
        assert access._api_key(scope) == expected
    assert access._api_key({"headers": [(b"authorization", b"Bearer nope")]}) == "invalid"
    assert access._api_key({"headers": [(b"authorization", b"Basic abc")]}) is None
    assert access._api_key({"headers": []}) is None
    # Without API_KEYS no request has a key to name.
    assert AccessLogger("all", [])._api_key({"headers": [(b"authorization", b"Bearer x")]}) is None


def test_an_access_record_gives_only_what_was_filled() -> None:
    assert AccessRecord().fields() == {}
    # The batcher's stamps (perf_counter seconds) become milliseconds, to the microsecond.
    served = Timing(None, 8, 10.0, (Call(8, 10.0015, 10.006),))
    record = AccessRecord(model="digits", version=2, timing=served, decode_s=0.0002)
    assert record.fields() == {
        "model": "digits",
        "version": 2,
        "instances": 8,
        "batch_size": 8,
        "queue_ms": 1.5,
        "compute_ms": 4.5,
        "decode_ms": 0.2,
    }
    # Answered before its call started (a deadline): how many instances, no call.
    expired = AccessRecord(model="digits", version=2, timing=Timing(None, 3, 10.0, ()))
    assert expired.fields() == {"model": "digits", "version": 2, "instances": 3}
    # A split request: its wait to its first call, the model's time to its last call's end.
    calls = (Call(4, 10.001, 10.003), Call(4, 10.003, 10.005), Call(2, 10.005, 10.006))
    split = AccessRecord(timing=Timing(None, 10, 10.0, calls)).fields()
    assert (split["batch_size"], split["queue_ms"], split["compute_ms"]) == (4, 1.0, 5.0)


async def _predict(request: Request) -> PlainTextResponse:
    """Stands in for a prediction route: logs, fills the access record, answers."""
    logging.getLogger("app.test").warning("inside the request")
    access: AccessRecord = request.state.access
    access.version, access.signature = 3, "serving_default"
    access.timing = Timing(None, 2, 1.0, (Call(16, 1.00025, 1.00475),))
    return PlainTextResponse("ok")


async def _missing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("no", status_code=404)


def _client(mode: str) -> TestClient:
    app = Starlette(
        routes=[
            Route("/v1/models/{name}:predict", _predict, methods=["POST"]),
            Route("/missing", _missing),
        ]
    )
    return TestClient(RequestContextMiddleware(app, 1 << 20, mode, KEYS))  # type: ignore[arg-type]


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS_LOGGER]


@pytest.mark.parametrize(("mode", "logged"), [("off", []), ("errors", [404]), ("all", [200, 404])])
def test_access_log_setting_picks_the_lines(
    caplog: pytest.LogCaptureFixture, mode: str, logged: list[int]
) -> None:
    caplog.set_level(logging.INFO)
    with _client(mode) as client:
        assert client.post("/v1/models/digits:predict").status_code == 200
        assert client.get("/missing").status_code == 404
    assert [record.fields["status"] for record in _access_lines(caplog)] == logged


def test_the_access_line_holds_the_request_and_what_the_route_filled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    key = KEYS[1].get_secret_value()
    with _client("all") as client:
        response = client.post(
            "/v1/models/digits:predict",
            headers={"X-Request-ID": "req-42", "Authorization": f"Bearer {key}"},
        )
    assert response.headers["x-request-id"] == "req-42"
    (line,) = _access_lines(caplog)
    fields = line.fields
    assert fields.pop("duration_ms") > 0
    assert fields.pop("client").startswith("testclient:")
    assert fields == {
        "request_id": "req-42",
        "method": "POST",
        "path": "/v1/models/digits:predict",
        "status": 200,
        "api_key": key_id(key.encode()),
        "model": "digits",
        "version": 3,
        "signature": "serving_default",
        "instances": 2,
        "batch_size": 16,
        "queue_ms": 0.25,
        "compute_ms": 4.5,
    }
    assert '"POST /v1/models/digits:predict HTTP/1.1" 200' in line.getMessage()
    assert key not in caplog.text


def test_records_written_while_a_request_is_handled_carry_its_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app.logs import request_id

    seen: list[str | None] = []

    class Remember(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(request_id.get())

    handler = Remember()
    logging.getLogger("app.test").addHandler(handler)
    try:
        with _client("off") as client:
            client.post("/v1/models/digits:predict", headers={"X-Request-ID": "req-7"})
    finally:
        logging.getLogger("app.test").removeHandler(handler)
    assert seen == ["req-7"]
    assert request_id.get() is None  # and not after it
