"""A TensorFlow Serving client, written as TF Serving's examples are, against a real uvicorn."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from app.inputs import decode_digit
from tests.conftest import MODELS, png
from tests.support.server import start_server, stop_server

REVIEWS = [
    "An absolute masterpiece, moving and beautifully acted.",
    "Dull, predictable and far too long. I hated it.",
]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    proc, base_url = start_server({"MODEL_DIR": str(MODELS)})
    try:
        yield base_url
    finally:
        stop_server(proc)


def digit_images() -> np.ndarray:
    """Four 28x28 digits drawn as bars and boxes, framed as MNIST's are (as an upload would be:
    a PNG upload is then used as it is, and gives what the same pixels as a list give)."""
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    for i, image in enumerate(images):
        image[5 + i : 23, 10 + 2 * i : 13 + 2 * i] = 255
        if i % 2:
            image[5:8, 6:22] = 180
    return np.stack([decode_digit(png(image)) for image in images]).astype(np.uint8)


def test_model_status_and_metadata(url: str) -> None:
    status = httpx.get(f"{url}/v1/models/sentiment", timeout=10).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = httpx.get(f"{url}/v1/models/digits/metadata", timeout=10).json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert metadata["model_spec"]["name"] == "digits"


def test_sentiment_client(url: str) -> None:
    # As in TF Serving's examples: json={"instances": ...}, read "predictions".
    response = httpx.post(
        f"{url}/v1/models/sentiment:predict", json={"instances": REVIEWS}, timeout=30
    )
    response.raise_for_status()
    predictions = response.json()["predictions"]
    assert predictions[0] > 0.5 > predictions[1]

    native = httpx.post(f"{url}/v1/sentiment/predict", json={"reviews": REVIEWS}, timeout=30)
    scores = [p["score"] for p in native.json()["predictions"]]
    assert predictions == pytest.approx(scores, rel=1e-5, abs=1e-6)

    columnar = httpx.post(
        f"{url}/v1/models/sentiment/versions/2:predict",
        json={"signature_name": "serving_default", "inputs": {"reviews": REVIEWS}},
        timeout=30,
    )
    assert columnar.json()["outputs"] == pytest.approx(scores, rel=1e-5, abs=1e-6)


def test_digits_client(url: str) -> None:
    images = digit_images()
    pixels = httpx.post(
        f"{url}/v1/models/digits:predict", json={"instances": images.tolist()}, timeout=30
    )
    pixels.raise_for_status()
    encoded = [{"b64": base64.b64encode(png(image)).decode()} for image in images]
    files = httpx.post(f"{url}/v1/models/digits:predict", json={"instances": encoded}, timeout=30)
    files.raise_for_status()
    native = httpx.post(
        f"{url}/v1/digits/predict",
        files=[("file", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(images)],
        timeout=30,
    )
    expected = [p["probabilities"] for p in native.json()["predictions"]]
    for predictions in (pixels.json()["predictions"], files.json()["predictions"]):
        assert len(predictions) == len(images)
        for row, want in zip(predictions, expected, strict=True):
            assert row == pytest.approx(want, rel=1e-5, abs=1e-6)
            assert sum(row) == pytest.approx(1, abs=1e-4)


def test_errors_are_tf_serving_style(url: str) -> None:
    missing = httpx.post(f"{url}/v1/models/half:predict", json={"instances": [1.0]}, timeout=10)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}
    bad = httpx.post(
        f"{url}/v1/models/digits:predict", json={"instances": [[[300] * 28] * 28]}, timeout=10
    )
    assert bad.status_code == 400
    assert set(bad.json()) == {"error"}


async def test_both_apis_at_once_share_the_batchers(url: str) -> None:
    """Concurrent requests through both APIs, all answered, each with the same scores."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        requests = []
        for i in range(24):
            if i % 2:
                requests.append(client.post("/v1/sentiment/predict", json={"reviews": REVIEWS}))
            else:
                requests.append(
                    client.post("/v1/models/sentiment:predict", json={"instances": REVIEWS})
                )
        responses = await asyncio.gather(*requests)
    assert [r.status_code for r in responses] == [200] * len(responses)
    native = [[p["score"] for p in r.json()["predictions"]] for r in responses[1::2]]
    tf_serving = [r.json()["predictions"] for r in responses[::2]]
    for scores in native + tf_serving:
        assert scores == pytest.approx(native[0], rel=1e-5, abs=1e-6)
