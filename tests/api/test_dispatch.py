"""The prediction routes' short way in (:mod:`app.api.dispatch`) answers exactly as FastAPI's
full stack does: the same statuses, bodies and headers, for answers, the service's errors,
the body cap, API keys and a bug's 500; and it is the way those requests take."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.api.dispatch import ServiceApp
from app.config import Settings
from app.main import create_app
from tests.support.drawn_digits import mnist_like, png

MODELS = Path(__file__).resolve().parents[2] / "models"
KEY = "dispatch-test-key"
SEVEN = png(mnist_like(7))
AUTH = {"Authorization": f"Bearer {KEY}"}

# (method, path, httpx arguments): answers, the service's errors, the body cap, a GET.
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/sentiment/predict", {"json": {"reviews": ["A wonderful film."]}}),
    ("POST", "/v1/sentiment/predict", {"json": {"reviews": [" "]}}),
    ("POST", "/v1/sentiment/predict", {"content": b"{", "headers": {"content-type": "application/json"}}),
    ("POST", "/v1/sentiment/predict", {"content": b"{}", "headers": {"content-type": "text/plain"}}),
    ("POST", "/v1/sentiment/predict", {"content": b"x" * 5000, "headers": {"content-type": "application/json"}}),
    ("POST", "/v1/digits/predict", {"files": {"file": ("7.png", SEVEN, "image/png")}}),
    ("POST", "/v1/digits/predict", {"files": {"file": ("7.png", SEVEN[:30], "image/png")}}),
    ("POST", "/v1/models/sentiment:predict", {"json": {"instances": ["great"]}}),
    ("POST", "/v1/models/sentiment:predict", {"json": {"instances": [1]}}),
    ("POST", "/v1/models/sentiment/versions/9:predict", {"json": {"instances": ["x"]}}),
    ("POST", "/v1/models/nope:classify", {"json": {"examples": [{"x": 1}]}}),
    ("POST", "/v1/models/digits/labels/stable:predict", {"json": {"instances": [{"b64": base64.b64encode(SEVEN).decode()}]}}),
    ("POST", "/v2/models/sentiment/infer", {"json": {"inputs": [{"name": "reviews", "datatype": "BYTES", "shape": [1], "data": ["good"]}]}}),
    ("POST", "/v2/models/sentiment/versions/2/infer", {"json": {"inputs": []}}),
    ("POST", "/v2/models/sentiment/ready", {}),  # a GET route: 405 from FastAPI either way
    ("GET", "/v1/models/sentiment", {}),
]  # fmt: skip


def _client(direct: bool, **settings: Any) -> TestClient:
    app = create_app(Settings(model_dir=MODELS, max_request_bytes=4096, **settings))
    assert isinstance(app, ServiceApp)
    app.direct_dispatch = direct
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    with _client(True) as short, _client(False) as full:
        yield short, full


def _answer(response: Any) -> tuple[int, Any, dict[str, str]]:
    headers = {k: v for k, v in response.headers.items() if k not in ("x-request-id", "date")}
    try:
        body: Any = response.json()
    except ValueError:
        body = response.content
    return response.status_code, body, headers


@pytest.mark.parametrize(("method", "path", "kwargs"), REQUESTS, ids=lambda r: str(r)[:60])
def test_the_short_way_answers_as_the_full_stack(
    clients: tuple[TestClient, TestClient], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    short, full = clients
    assert _answer(short.request(method, path, **kwargs)) == _answer(
        full.request(method, path, **kwargs)
    )


def test_api_keys_and_request_ids_the_same_way() -> None:
    with _client(True, api_keys=KEY) as short, _client(False, api_keys=KEY) as full:
        body = {"json": {"reviews": ["good"]}}
        for headers in ({}, {"Authorization": "Bearer wrong"}, AUTH):
            answers = [
                c.post("/v1/sentiment/predict", headers={**headers, "X-Request-ID": "r-1"}, **body)
                for c in (short, full)
            ]
            assert _answer(answers[0]) == _answer(answers[1])
            assert [a.headers["x-request-id"] for a in answers] == ["r-1", "r-1"]


def test_prediction_routes_take_the_short_way_and_others_do_not(
    monkeypatch: pytest.MonkeyPatch, clients: tuple[TestClient, TestClient]
) -> None:
    short, _ = clients
    taken: list[str] = []
    call_direct = ServiceApp._call_direct

    async def recorded(self: ServiceApp, scope: Any, receive: Any, send: Any) -> None:
        taken.append(scope["path"])
        await call_direct(self, scope, receive, send)

    monkeypatch.setattr(ServiceApp, "_call_direct", recorded)
    monkeypatch.setattr(short.app, "_direct_stack", None)  # built again, around the spy
    for method, path, kwargs in REQUESTS:
        short.request(method, path, **kwargs)
    # All POSTs to prediction routes, but the one the middleware refuses by its declared size.
    predictions = [
        path
        for method, path, kwargs in REQUESTS
        if method == "POST" and "ready" not in path and len(kwargs.get("content", b"")) <= 4096
    ]
    assert taken == predictions
