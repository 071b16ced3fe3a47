"""The service's own endpoints, in process, on the committed models."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.conftest import png
from tests.support.drawn_digits import mnist_like

POSITIVE = "A wonderful, moving film. The acting is superb and the story is beautiful."
NEGATIVE = "Awful. A boring plot, terrible acting and a complete waste of time."


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    assert response.headers["x-request-id"]
    return body["error"]


def test_sentiment_predicts_labels_and_scores(client: TestClient) -> None:
    response = client.post("/v1/sentiment/predict", json={"reviews": [POSITIVE, NEGATIVE]})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "sentiment"
    assert isinstance(body["version"], int)
    first, second = body["predictions"]
    assert first["label"] == "positive"
    assert first["score"] > 0.5
    assert second["label"] == "negative"
    assert second["score"] < 0.5


def test_sentiment_accepts_control_characters_and_emoji(client: TestClient) -> None:
    response = client.post(
        "/v1/sentiment/predict", json={"reviews": ["Loved it 😍🎬\x00\x07 best film \u202e ever"]}
    )
    assert response.status_code == 200
    assert 0 <= response.json()["predictions"][0]["score"] <= 1


def test_digits_predicts_each_uploaded_image(client: TestClient) -> None:
    files = [("file", (f"{i}.png", png(mnist_like(i)), "image/png")) for i in range(10)]
    response = client.post("/v1/digits/predict", files=files)
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "digits"
    digits = [p["digit"] for p in body["predictions"]]
    assert digits == list(range(10))
    for prediction in body["predictions"]:
        assert len(prediction["probabilities"]) == 10
        assert abs(sum(prediction["probabilities"]) - 1) < 1e-4
        assert prediction["digit"] == int(np.argmax(prediction["probabilities"]))


def test_digits_reads_black_on_white_drawings(client: TestClient) -> None:
    for digit in (3, 7):
        drawing = np.kron(255 - mnist_like(digit), np.ones((10, 10), dtype=np.uint8))  # 280x280
        response = client.post("/v1/digits/predict", files={"file": ("d.png", png(drawing))})
        assert response.status_code == 200
        assert response.json()["predictions"][0]["digit"] == digit


def test_models_lists_both_with_signatures(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    models = {m["name"]: m for m in body["models"]}
    assert set(models) >= {"sentiment", "digits"}
    assert models["sentiment"]["inputs"]["reviews"] == {"dtype": "string", "shape": [None]}
    assert models["digits"]["outputs"]["probabilities"]["shape"] == [None, 10]
    assert models["digits"]["device"].endswith("CPU:0") or "GPU" in models["digits"]["device"]
    # Paths relative to MODEL_DIR: the server's own folders are not the client's business.
    for name, model in models.items():
        assert model["path"] == f"{name}/{model['version']}", model["path"]


def test_health_readiness_metrics_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"]["sentiment"] == "AVAILABLE"
    client.post("/v1/sentiment/predict", json={"reviews": [POSITIVE]})
    metrics = client.get("/metrics").text
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "model_batch_size_bucket",
        "model_queue_depth",
        "model_call_duration_seconds_bucket",
    ):
        assert name in metrics
    assert 'endpoint="/v1/sentiment/predict",method="POST",status="200"' in metrics
    spec = client.get("/openapi.json").json()
    assert "/v1/sentiment/predict" in spec["paths"]
    digits_body = spec["paths"]["/v1/digits/predict"]["post"]["requestBody"]
    assert "multipart/form-data" in digits_body["content"]
    sentiment_body = spec["paths"]["/v1/sentiment/predict"]["post"]["requestBody"]
    sentiment_schema = sentiment_body["content"]["application/json"]["schema"]
    assert sentiment_schema["required"] == ["reviews"]
    assert sentiment_schema["examples"]
    assert client.get("/docs").status_code == 200


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert made.headers["x-request-id"] != "bad id with spaces"


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        (b'{"reviews": ["unclosed', {"content-type": "application/json"}, 400, "invalid_json"),
        (b"\xff\xfe not utf-8", {"content-type": "application/json"}, 400, "invalid_json"),
        (b'{"reviews": "not a list"}', {"content-type": "application/json"}, 422, None),
        (b'{"reviews": [1, 2]}', {"content-type": "application/json"}, 422, None),
        (b'{"texts": ["a"]}', {"content-type": "application/json"}, 422, None),
        (b'{"reviews": []}', {"content-type": "application/json"}, 422, None),
        (b'{"reviews": ["  \\n "]}', {"content-type": "application/json"}, 422, None),
        (b'{"reviews": ["good"]}', {"content-type": "text/plain"}, 415, None),
        (b'{"reviews": ["good"]}', {}, 415, None),
        (b"[" * 100_000 + b"]" * 100_000, {"content-type": "application/json"}, 400, None),
    ],
    ids=[
        "malformed",
        "not-utf8",
        "wrong-type",
        "wrong-item-type",
        "missing-field",
        "empty-list",
        "whitespace-review",
        "text-plain",
        "no-content-type",
        "deeply-nested",
    ],
)
def test_bad_sentiment_requests_get_4xx(client, body, headers, status, code) -> None:
    response = client.post("/v1/sentiment/predict", content=body, headers=headers)
    assert_error(response, status, code)


def test_review_and_instance_limits(client: TestClient) -> None:
    settings = client.app.state.settings
    too_long = "a" * (settings.max_review_chars + 1)
    assert_error(client.post("/v1/sentiment/predict", json={"reviews": [too_long]}), 422)
    too_many = ["fine"] * (settings.max_instances + 1)
    assert_error(client.post("/v1/sentiment/predict", json={"reviews": too_many}), 422)


def test_body_over_the_cap_is_413(client: TestClient) -> None:
    cap = client.app.state.settings.max_request_bytes
    body = json.dumps({"reviews": ["x" * (cap + 10)]})
    assert_error(
        client.post(
            "/v1/sentiment/predict", content=body, headers={"content-type": "application/json"}
        ),
        413,
    )


def test_bad_uploads_get_4xx(client: TestClient) -> None:
    post = client.post
    assert_error(post("/v1/digits/predict", files={"file": ("x.png", b"%PDF-1.4")}), 400)
    assert_error(
        post("/v1/digits/predict", files={"other": ("x.png", png(np.zeros((28, 28))))}), 422
    )
    assert_error(post("/v1/digits/predict", files={"file": (None, "text, not a file")}), 400)
    assert_error(post("/v1/digits/predict", data={"file": "form-urlencoded"}), 415)
    assert_error(post("/v1/digits/predict", json={"file": "x"}), 415)
    assert_error(
        post(
            "/v1/digits/predict",
            content=b"--x\r\n",
            headers={"content-type": "multipart/form-data"},
        ),
        400,
    )


def test_unknown_path_and_wrong_method(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing/here"), 404, "not_found")
    assert_error(client.get("/v1/sentiment/predict"), 405, "method_not_allowed")
