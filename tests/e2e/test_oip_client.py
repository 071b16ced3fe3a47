"""NVIDIA's own client, ``tritonclient.http``, against a real ``python -m app`` process.

The client's defaults (binary tensor data both ways) and plain JSON, FP32 and BYTES images,
BYTES reviews, a specific version: the answers must equal the native endpoints' for the same
inputs, and errors must reach the client as its ``InferenceServerException`` with our status.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import MODELS
from tests.support.predictions import REVIEWS, close_to, png, some_digits
from tests.support.server import start_server, stop_server


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc, url = start_server({"MODEL_DIR": str(MODELS)}, python_m_app=True)
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return some_digits()


@pytest.fixture(scope="module")
def native(server: str, digits: np.ndarray) -> dict[str, np.ndarray]:
    """What the service's own endpoints answer for the same reviews and images."""
    files = [("file", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(digits)]
    images = httpx.post(f"{server}/v1/digits/predict", files=files, timeout=30).json()
    reviews = httpx.post(
        f"{server}/v1/sentiment/predict", json={"reviews": REVIEWS}, timeout=30
    ).json()
    return {
        "probabilities": np.array([p["probabilities"] for p in images["predictions"]]),
        "positive_probability": np.array([p["score"] for p in reviews["predictions"]]),
    }


def test_server_and_model_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    for model, version in [("digits", ""), ("sentiment", "2")]:
        assert client.is_model_ready(model, version)
    metadata = client.get_model_metadata("digits")
    assert metadata["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]}]
    assert metadata["platform"] == "tensorflow_savedmodel"
    assert client.get_model_metadata("sentiment", "2")["inputs"][0]["datatype"] == "BYTES"
    assert client.get_model_config("digits")["max_batch_size"] > 0
    assert not client.is_model_ready("nope")


@pytest.mark.parametrize("binary", [True, False], ids=["binary (the defaults)", "JSON"])
def test_fp32_images(
    client: triton.InferenceServerClient,
    digits: np.ndarray,
    native: dict[str, np.ndarray],
    binary: bool,
) -> None:
    images = digits.astype(np.float32)
    tensor = triton.InferInput("images", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary)]
    result = client.infer("digits", [tensor], outputs=outputs, request_id="fp32")
    assert result.get_response()["id"] == "fp32"
    assert result.get_response()["model_version"] == "2"
    got = result.as_numpy("probabilities")
    assert got.shape == (len(digits), 10)
    assert got.ravel().tolist() == close_to(native["probabilities"].ravel().tolist())


@pytest.mark.parametrize("binary", [True, False], ids=["binary (the defaults)", "JSON"])
def test_bytes_reviews(
    client: triton.InferenceServerClient, native: dict[str, np.ndarray], binary: bool
) -> None:
    reviews = np.array([review.encode() for review in REVIEWS], dtype=object)
    tensor = triton.InferInput("reviews", [len(REVIEWS)], "BYTES")
    tensor.set_data_from_numpy(reviews, binary_data=binary)
    outputs = None if binary else [triton.InferRequestedOutput("positive_probability", False)]
    result = client.infer("sentiment", [tensor], outputs=outputs, model_version="2")
    got = result.as_numpy("positive_probability")
    assert got.tolist() == close_to(native["positive_probability"].tolist())


def test_bytes_images_decoded_as_uploads(
    client: triton.InferenceServerClient, digits: np.ndarray, native: dict[str, np.ndarray]
) -> None:
    files = np.array([[png(image)] for image in digits], dtype=object)  # [N, 1]
    tensor = triton.InferInput("images", list(files.shape), "BYTES")
    tensor.set_data_from_numpy(files)
    got = client.infer("digits", [tensor]).as_numpy("probabilities")
    assert got.ravel().tolist() == close_to(native["probabilities"].ravel().tolist())


def test_compression_both_ways(
    client: triton.InferenceServerClient, native: dict[str, np.ndarray]
) -> None:
    reviews = np.array([review.encode() for review in REVIEWS], dtype=object)
    tensor = triton.InferInput("reviews", [len(REVIEWS)], "BYTES")
    tensor.set_data_from_numpy(reviews)
    result = client.infer(
        "sentiment",
        [tensor],
        request_compression_algorithm="gzip",
        response_compression_algorithm="deflate",
    )
    got = result.as_numpy("positive_probability")
    assert got.tolist() == close_to(native["positive_probability"].tolist())


def test_errors_reach_the_client_with_their_status(client: triton.InferenceServerClient) -> None:
    reviews = triton.InferInput("reviews", [1], "BYTES")
    reviews.set_data_from_numpy(np.array([b"fine"], dtype=object))
    with pytest.raises(InferenceServerException) as unknown:
        client.infer("nope", [reviews])
    assert unknown.value.status() == "404"
    assert "not served" in unknown.value.message()

    wrong = triton.InferInput("reviews", [1], "FP32")
    wrong.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    with pytest.raises(InferenceServerException) as bad:
        client.infer("sentiment", [wrong])
    assert bad.value.status() == "400"
    assert "BYTES" in bad.value.message()

    pixels = triton.InferInput("images", [1, 28, 28], "FP32")
    pixels.set_data_from_numpy(np.full((1, 28, 28), 999, dtype=np.float32))
    with pytest.raises(InferenceServerException) as outside:
        client.infer("digits", [pixels])
    assert outside.value.status() == "400"

    with pytest.raises(InferenceServerException) as version:
        client.infer("sentiment", [reviews], model_version="7")
    assert version.value.status() == "404"
