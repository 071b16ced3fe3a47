"""The Open Inference Protocol (/v2/...), in process, on the committed models.

Bodies are the protocol's (JSON, and JSON followed by binary tensor data as Triton's extension
has it); answers must equal the native endpoints' for the same inputs, and every bad request
must be ``{"error": "..."}`` with a 4xx, never a 500. The real ``tritonclient`` against a real
server is in ``tests/e2e/test_oip_client.py``.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.predictions import (
    REVIEWS,
    close_to,
    native_probabilities,
    native_scores,
    png,
    some_digits,
)

SENTIMENT = "/v2/models/sentiment/infer"
DIGITS = "/v2/models/digits/infer"


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return some_digits()


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def assert_oip_error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    return body["error"]


def binary_body(request: dict[str, Any], *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(request).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


def split_answer(response: Any) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers["inference-header-content-length"])
    return json.loads(response.content[:length]), response.content[length:]


def length_prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


# ---- health and metadata ------------------------------------------------------------------------


def test_health_and_server_metadata(client: TestClient) -> None:
    live = client.get("/v2/health/live")
    assert live.status_code == 200
    assert live.content == b""
    assert client.get("/v2/health/ready").status_code == 200
    metadata = client.get("/v2").json()
    assert metadata["name"] == "keras-inference-service"
    assert "binary_tensor_data" in metadata["extensions"]
    assert metadata["version"] == client.app.version


def test_one_version_number_pyproject_s(client: TestClient) -> None:
    """GET /v2 and the OpenAPI document show pyproject.toml's version, read from the installed
    package's metadata (no second copy of the number to keep in step)."""
    with (Path(__file__).resolve().parents[2] / "pyproject.toml").open("rb") as file:
        expected = tomllib.load(file)["project"]["version"]
    assert client.get("/v2").json()["version"] == expected
    assert client.get("/openapi.json").json()["info"]["version"] == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/v2/models/sentiment",
            {
                "name": "sentiment",
                "versions": ["2"],
                "platform": "tensorflow_savedmodel",
                "inputs": [{"name": "reviews", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "positive_probability", "datatype": "FP32", "shape": [-1]}],
            },
        ),
        (
            "/v2/models/digits/versions/2",
            {
                "name": "digits",
                "versions": ["2"],
                "platform": "tensorflow_savedmodel",
                "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]}],
                "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
            },
        ),
    ],
)
def test_model_metadata(client: TestClient, path: str, expected: dict[str, Any]) -> None:
    assert client.get(path).json() == expected


def test_model_readiness_and_config(client: TestClient) -> None:
    assert client.get("/v2/models/digits/ready").status_code == 200
    assert client.get("/v2/models/digits/versions/2/ready").status_code == 200
    assert_oip_error(client.get("/v2/models/digits/versions/3/ready"), 404)
    assert_oip_error(client.get("/v2/models/nope/ready"), 404)
    config = client.get("/v2/models/digits/config").json()
    assert config["input"] == [{"name": "images", "data_type": "TYPE_FP32", "dims": [28, 28]}]
    assert config["max_batch_size"] == client.app.state.settings.max_batch_size


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/nope",
        "/v2/models/sentiment/versions/3",
        "/v2/models/sentiment/versions/abc",
        "/v2/models/sentiment/versions/%D9%A2",  # an Arabic-Indic two, which int() reads as 2
        "/v2/models/..%2Fsentiment",
        "/v2/nothing/here",
    ],
)
def test_unknown_model_version_or_path_is_404(client: TestClient, path: str) -> None:
    assert_oip_error(client.get(path), 404)


# ---- infer: JSON ---------------------------------------------------------------------------------


def test_sentiment_json_equals_the_native_endpoint(client: TestClient) -> None:
    response = client.post(
        SENTIMENT,
        json={"id": "req-7", "inputs": [tensor("reviews", "BYTES", [3], REVIEWS)]},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["model_name"] == "sentiment"
    assert body["model_version"] == "2"
    assert body["id"] == "req-7"
    (output,) = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == (
        "positive_probability",
        "FP32",
        [3],
    )
    assert output["data"] == close_to(native_scores(client, REVIEWS))


@pytest.mark.parametrize("layout", ["flat", "nested", "channel axis"])
def test_digits_pixels_equal_the_native_endpoint(
    client: TestClient, digits: np.ndarray, layout: str
) -> None:
    images = digits.astype(np.float32)
    shape = [len(images), 28, 28]
    data: Any = images.ravel().tolist()
    if layout == "nested":
        data = images.tolist()
    elif layout == "channel axis":
        shape = [*shape, 1]
    response = client.post(DIGITS, json={"inputs": [tensor("images", "FP32", shape, data)]})
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [len(images), 10]
    expected = np.array(native_probabilities(client, digits)).ravel().tolist()
    assert output["data"] == close_to(expected)


@pytest.mark.parametrize("datatype", ["UINT8", "INT32", "INT64", "FP64", "FP16"])
def test_digits_take_any_numeric_datatype(
    client: TestClient, digits: np.ndarray, datatype: str
) -> None:
    data = digits[:2].ravel().tolist()
    response = client.post(DIGITS, json={"inputs": [tensor("images", datatype, [2, 28, 28], data)]})
    assert response.status_code == 200, response.text
    expected = np.array(native_probabilities(client, digits[:2])).ravel().tolist()
    assert response.json()["outputs"][0]["data"] == close_to(expected)


def test_digits_bytes_are_image_files_decoded_as_uploads(
    client: TestClient, digits: np.ndarray
) -> None:
    files = [base64.b64encode(png(image)).decode() for image in digits[:3]]
    response = client.post(DIGITS, json={"inputs": [tensor("images", "BYTES", [3, 1], files)]})
    assert response.status_code == 200, response.text
    expected = np.array(native_probabilities(client, digits[:3])).ravel().tolist()
    assert response.json()["outputs"][0]["data"] == close_to(expected)


def test_unknown_parameters_are_ignored_and_outputs_honoured(client: TestClient) -> None:
    request = {
        "parameters": {"priority": 3, "something_else": "x"},
        "inputs": [
            {**tensor("reviews", "BYTES", [1], REVIEWS[:1]), "parameters": {"unknown": True}}
        ],
        "outputs": [{"name": "positive_probability", "parameters": {"binary_data": False}}],
    }
    response = client.post(SENTIMENT, json=request)
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["positive_probability"]
    assert "id" not in response.json()


def test_an_empty_outputs_list_asks_for_every_output(client: TestClient) -> None:
    """As Triton reads it: no output named is every output, not an answer without any."""
    request = {"inputs": [tensor("reviews", "BYTES", [1], REVIEWS[:1])], "outputs": []}
    response = client.post(SENTIMENT, json=request)
    assert response.status_code == 200, response.text
    assert [o["name"] for o in response.json()["outputs"]] == ["positive_probability"]


# ---- infer: binary tensor data -----------------------------------------------------------------


def test_binary_inputs_and_outputs(client: TestClient, digits: np.ndarray) -> None:
    images = digits[:4].astype("<f4")
    request = {
        "inputs": [
            {
                "name": "images",
                "datatype": "FP32",
                "shape": [4, 28, 28],
                "parameters": {"binary_data_size": images.nbytes},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    content, headers = binary_body(request, images.tobytes())
    response = client.post(DIGITS, content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    head, blob = split_answer(response)
    (output,) = head["outputs"]
    assert output["parameters"] == {"binary_data_size": 4 * 10 * 4}
    probabilities = np.frombuffer(blob, dtype="<f4").reshape(4, 10)
    expected = np.array(native_probabilities(client, digits[:4])).ravel().tolist()
    assert probabilities.ravel().tolist() == close_to(expected)


def test_binary_bytes_reviews_and_json_output(client: TestClient) -> None:
    blob = length_prefixed(*(review.encode() for review in REVIEWS))
    request = {
        "inputs": [
            {
                "name": "reviews",
                "datatype": "BYTES",
                "shape": [3],
                "parameters": {"binary_data_size": len(blob)},
            }
        ],
        "outputs": [{"name": "positive_probability"}],
    }
    content, headers = binary_body(request, blob)
    response = client.post(SENTIMENT, content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == close_to(native_scores(client, REVIEWS))


def test_binary_image_files(client: TestClient, digits: np.ndarray) -> None:
    blob = length_prefixed(*(png(image) for image in digits[:2]))
    request = {
        "inputs": [
            {
                "name": "images",
                "datatype": "BYTES",
                "shape": [2],
                "parameters": {"binary_data_size": len(blob)},
            }
        ]
    }
    content, headers = binary_body(request, blob)
    response = client.post(DIGITS, content=content, headers=headers)
    assert response.status_code == 200, response.text
    expected = np.array(native_probabilities(client, digits[:2])).ravel().tolist()
    assert response.json()["outputs"][0]["data"] == close_to(expected)


def test_compressed_request_and_answer(client: TestClient) -> None:
    body = json.dumps({"inputs": [tensor("reviews", "BYTES", [3], REVIEWS)]}).encode()
    response = client.post(
        SENTIMENT,
        content=gzip.compress(body),
        headers={"Content-Encoding": "gzip", "Accept-Encoding": "identity"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == close_to(native_scores(client, REVIEWS))


# ---- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "request_body", "words"),
    [
        (SENTIMENT, {"inputs": [tensor("reviews", "FP32", [1], [1.0])]}, "must be BYTES"),
        (SENTIMENT, {"inputs": [tensor("texts", "BYTES", [1], ["a"])]}, "takes one input"),
        (SENTIMENT, {"inputs": [tensor("reviews", "BYTES", [2], ["a"])]}, "neither flat"),
        (SENTIMENT, {"inputs": [tensor("reviews", "BYTES", [1], [1])]}, "must be a string"),
        (SENTIMENT, {"inputs": [tensor("reviews", "BYTES", [0], [])]}, "no instances"),
        (DIGITS, {"inputs": [tensor("images", "FP32", [1, 28], [0] * 28)]}, "has shape"),
        (DIGITS, {"inputs": [tensor("images", "INT8", [1, 28, 28], [0.5] * 784)]}, "takes int"),
        (DIGITS, {"inputs": [tensor("images", "UINT8", [1, 28, 28], [-1] * 784)]}, "outside"),
        (DIGITS, {"inputs": [tensor("images", "FP32", [1, 28, 28], [256] * 784)]}, "0-255"),
        (DIGITS, {"inputs": [tensor("images", "FP32", [1, 28, 28], [1e300] * 784)]}, "outside"),
        (DIGITS, {"inputs": [tensor("images", "BOOL", [1, 28, 28], [True] * 784)]}, "BOOL"),
        (DIGITS, {"inputs": [tensor("images", "BYTES", [1], ["***"])]}, "base64"),
        (DIGITS, {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1]}]}, 'no "data"'),
        (DIGITS, {"inputs": "x"}, "non-empty list"),
        (DIGITS, {"outputs": []}, "non-empty list"),
    ],
)
def test_bad_tensors_are_400_saying_why(
    client: TestClient, path: str, request_body: dict[str, Any], words: str
) -> None:
    assert words in assert_oip_error(client.post(path, json=request_body), 400)


def test_binary_framing_that_lies_is_400(client: TestClient) -> None:
    images = np.zeros((1, 28, 28), "<f4").tobytes()
    request = {
        "inputs": [
            {
                "name": "images",
                "datatype": "FP32",
                "shape": [1, 28, 28],
                "parameters": {"binary_data_size": len(images)},
            }
        ]
    }
    content, headers = binary_body(request, images)
    for length, words in [
        (str(len(content) + 1), "the body has"),
        ("12", "not valid JSON"),
        ("x", "must be a number"),
    ]:
        response = client.post(
            DIGITS, content=content, headers={"Inference-Header-Content-Length": length}
        )
        assert words in assert_oip_error(response, 400)
    short = client.post(DIGITS, content=content[:-1], headers=headers)
    assert "only" in assert_oip_error(short, 400)
    extra = client.post(DIGITS, content=content + b"\0", headers=headers)
    assert "belong to no input" in assert_oip_error(extra, 400)


def test_limits_apply_as_on_the_other_apis(client: TestClient) -> None:
    settings = client.app.state.settings
    too_many = settings.max_instances + 1
    response = client.post(
        SENTIMENT, json={"inputs": [tensor("reviews", "BYTES", [too_many], ["a"] * too_many)]}
    )
    assert "MAX_INSTANCES" in assert_oip_error(response, 400)
    long = "a" * (settings.max_review_chars + 1)
    response = client.post(SENTIMENT, json={"inputs": [tensor("reviews", "BYTES", [1], [long])]})
    assert "MAX_REVIEW_CHARS" in assert_oip_error(response, 400)
    big = b"{" + b" " * settings.max_request_bytes + b"}"
    assert "MAX_REQUEST_BYTES" in assert_oip_error(client.post(SENTIMENT, content=big), 413)
    bomb = gzip.compress(b" " * (settings.max_request_bytes + 10))
    response = client.post(SENTIMENT, content=bomb, headers={"Content-Encoding": "gzip"})
    assert "MAX_REQUEST_BYTES" in assert_oip_error(response, 413)


def test_unknown_model_is_404(client: TestClient) -> None:
    request = {"inputs": [tensor("reviews", "BYTES", [1], ["a"])]}
    assert "not served" in assert_oip_error(client.post("/v2/models/nope/infer", json=request), 404)
    response = client.post("/v2/models/sentiment/versions/9/infer", json=request)
    assert "not available" in assert_oip_error(response, 404)
