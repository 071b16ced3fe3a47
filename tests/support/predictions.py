"""What the protocol tests compare with: the native endpoints' answers for the same inputs."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.inputs import decode_digit, framed_like_mnist
from training.data import mnist_local_path

REVIEWS = [
    "A wonderful, moving film. The acting is superb and the story is beautiful.",
    "Awful. A boring plot, terrible acting and a complete waste of time.",
    "It was fine, I suppose; nothing special but the ending surprised me.",
]


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def some_digits() -> np.ndarray:
    """Eight 28x28 uint8 digits: MNIST test images when the data set is here, else drawn ones."""
    path = mnist_local_path()
    if path is not None:
        with np.load(path) as data:
            return np.asarray(data["x_test"][:8])
    images = np.zeros((8, 28, 28), dtype=np.uint8)
    for i, image in enumerate(images):  # bars and boxes at different places
        image[4 + i : 24 - i // 2, 8 + i : 11 + i] = 255
        if i % 2:
            image[6:9, 6:22] = 200
    # Framed as MNIST's are, as an upload would be: a PNG upload is then used as it is, and
    # gives what the same pixels sent as a tensor give.
    framed = np.stack([decode_digit(png(image)) for image in images]).astype(np.uint8)
    assert all(framed_like_mnist(image) for image in framed)
    return framed


def native_scores(client: TestClient, reviews: list[str]) -> list[float]:
    response = client.post("/v1/sentiment/predict", json={"reviews": reviews})
    assert response.status_code == 200, response.text
    return [p["score"] for p in response.json()["predictions"]]


def native_probabilities(client: TestClient, images: np.ndarray) -> list[list[float]]:
    files = [("file", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(images)]
    response = client.post("/v1/digits/predict", files=files)
    assert response.status_code == 200, response.text
    return [p["probabilities"] for p in response.json()["predictions"]]


def close_to(expected: Any) -> Any:
    return pytest.approx(expected, rel=1e-5, abs=1e-6)
