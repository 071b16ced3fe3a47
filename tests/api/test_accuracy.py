"""The accuracy seen through the API equals the offline accuracy in metadata.json.

Slow (the whole MNIST and IMDB test sets through the API) and needs the data sets: left out of
``make test-fast``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.conftest import MODELS, png

pytestmark = pytest.mark.slow


def offline_accuracy(name: str, version: int) -> float:
    metadata = json.loads((MODELS / name / str(version) / "metadata.json").read_text())
    return metadata["test_accuracy"]


def test_digits_accuracy_through_the_api_matches_metadata(client: TestClient, mnist) -> None:
    (_, _), (x_test, y_test) = mnist
    predicted, version = [], None
    for start in range(0, len(x_test), 100):
        files = [
            ("file", (f"{i}.png", png(x_test[i]), "image/png")) for i in range(start, start + 100)
        ]
        response = client.post("/v1/digits/predict", files=files)
        assert response.status_code == 200
        body = response.json()
        version = body["version"]
        predicted += [p["digit"] for p in body["predictions"]]
    accuracy = float(np.mean(np.array(predicted) == y_test))
    print(f"digits through the API: {accuracy:.4f} on {len(y_test)} PNG uploads")
    assert accuracy == pytest.approx(offline_accuracy("digits", version), abs=1e-4)


def test_sentiment_accuracy_through_the_api_matches_metadata(client: TestClient, imdb) -> None:
    (_, _), (texts, labels) = imdb
    predicted, version = [], None
    for start in range(0, len(texts), 250):
        response = client.post(
            "/v1/sentiment/predict", json={"reviews": texts[start : start + 250]}
        )
        assert response.status_code == 200
        body = response.json()
        version = body["version"]
        predicted += [p["label"] == "positive" for p in body["predictions"]]
    accuracy = float(np.mean(np.array(predicted) == labels.astype(bool)))
    print(f"sentiment through the API: {accuracy:.4f} on {len(texts)} reviews")
    assert accuracy == pytest.approx(offline_accuracy("sentiment", version), abs=1e-4)
