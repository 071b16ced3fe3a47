"""TensorFlow Serving's REST API (/v1/models/...), in process, on real models.

Request bodies are those of TF Serving's REST API documentation (row and columnar format, with
and without version and signature_name); answers must equal the native endpoints' for the same
inputs, and every bad request must be a TF Serving style ``{"error": "..."}``, never a 500.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.serving import ModelRef
from tests.support.predictions import (
    REVIEWS,
    close_to,
    native_probabilities,
    native_scores,
    png,
    some_digits,
)

MODELS = Path(__file__).resolve().parents[2] / "models"
API_KEY = "tfserving-test-key"


# ---- helpers and fixtures ----------------------------------------------------------------------


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode("ascii")}


def assert_tf_error(response, status: int) -> str:
    """A TF Serving error: the status, and a body that is exactly ``{"error": "<message>"}``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str)
    assert body["error"]
    return body["error"]


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return some_digits()


# ---- model status ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v1/models/sentiment", "/v1/models/sentiment/versions/2", "/v1/models/digits"]
)
def test_status_lists_available_versions(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "model_version_status": [
            {
                "version": "2",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/nope",
        "/v1/models/sentiment/versions/3",
        "/v1/models/sentiment/versions/abc",
        "/v1/models/sentiment/versions/-1",
        "/v1/models/sentiment/versions/99999999999999999999999999999",
        "/v1/models/nope/metadata",
        "/v1/models/digits/versions/7/metadata",
        "/v1/models/...",
        "/v1/models/..%2F..%2F..%2Fetc",
        "/v1/models/..%2Fsentiment",
        "/v1/models/%2E%2E%2Fmodels%2Fsentiment%2F1/metadata",
        "/v1/models/sentiment%2F1",
    ],
)
def test_unknown_model_or_version_is_404(client: TestClient, path: str) -> None:
    assert_tf_error(client.get(path), 404)


# ---- metadata ----------------------------------------------------------------------------------


def test_metadata_is_tf_servings_signature_def(client: TestClient) -> None:
    unversioned = client.get("/v1/models/sentiment/metadata")
    versioned = client.get("/v1/models/sentiment/versions/2/metadata")
    assert unversioned.status_code == versioned.status_code == 200
    assert unversioned.json() == versioned.json()
    assert unversioned.json() == {
        "model_spec": {"name": "sentiment", "signature_name": "", "version": "2"},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {
                            "reviews": {
                                "dtype": "DT_STRING",
                                "tensor_shape": {
                                    "dim": [{"size": "-1", "name": ""}],
                                    "unknown_rank": False,
                                },
                                "name": "serving_default_reviews:0",
                            }
                        },
                        "outputs": {
                            "positive_probability": {
                                "dtype": "DT_FLOAT",
                                "tensor_shape": {
                                    "dim": [{"size": "-1", "name": ""}],
                                    "unknown_rank": False,
                                },
                                "name": "StatefulPartitionedCall:0",
                            }
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }


def test_digits_metadata_gives_dims_and_dtypes(client: TestClient) -> None:
    response = client.get("/v1/models/digits/metadata")
    assert response.status_code == 200
    signature = response.json()["metadata"]["signature_def"]["signature_def"]["serving_default"]
    images = signature["inputs"]["images"]
    assert images["dtype"] == "DT_FLOAT"
    assert images["name"] == "serving_default_images:0"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "28", "28"]
    probabilities = signature["outputs"]["probabilities"]
    assert [d["size"] for d in probabilities["tensor_shape"]["dim"]] == ["-1", "10"]


# ---- predict: sentiment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("/v1/models/sentiment:predict", {"instances": REVIEWS}, "predictions"),
        (
            "/v1/models/sentiment:predict",
            {"signature_name": "serving_default", "instances": REVIEWS},
            "predictions",
        ),
        (
            "/v1/models/sentiment/versions/2:predict",
            {"instances": [{"reviews": review} for review in REVIEWS]},
            "predictions",
        ),
        ("/v1/models/sentiment:predict", {"inputs": REVIEWS}, "outputs"),
        (
            "/v1/models/sentiment/versions/2:predict",
            {"signature_name": "serving_default", "inputs": {"reviews": REVIEWS}},
            "outputs",
        ),
        ("/v1/models/sentiment:predict", {"signature_name": "", "inputs": REVIEWS}, "outputs"),
        (
            "/v1/models/sentiment:predict",
            {"instances": [b64(review.encode()) for review in REVIEWS]},
            "predictions",
        ),
    ],
)
def test_sentiment_predictions_equal_the_native_endpoints(
    client: TestClient, path: str, body: dict, key: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {key}
    predictions = response.json()[key]
    assert predictions == close_to(native_scores(client, REVIEWS))
    assert all(isinstance(p, float) for p in predictions)


def test_sentiment_takes_a_body_sent_as_curl_sends_it(client: TestClient) -> None:
    """``curl -d`` sends application/x-www-form-urlencoded; TF Serving reads JSON anyway."""
    response = client.post(
        "/v1/models/sentiment:predict",
        content=b'{"instances": ["A superb film."]}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == close_to(native_scores(client, ["A superb film."]))


def test_sentiment_review_at_the_length_limit_is_accepted(client: TestClient) -> None:
    review = ("great " * 20_000)[:100_000]  # MAX_REVIEW_CHARS; a body parsed in a thread
    response = client.post("/v1/models/sentiment:predict", json={"instances": [review]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == close_to(native_scores(client, [review]))


# ---- predict: digits ---------------------------------------------------------------------------


def test_digits_pixel_instances_equal_the_native_upload(client: TestClient, digits) -> None:
    expected = native_probabilities(client, digits)
    for path, body, key in [
        ("/v1/models/digits:predict", {"instances": digits.tolist()}, "predictions"),
        (
            "/v1/models/digits/versions/2:predict",
            {"signature_name": "serving_default", "instances": digits[..., None].tolist()},
            "predictions",
        ),
        (
            "/v1/models/digits:predict",
            {"instances": [{"images": image} for image in digits.astype(float).tolist()]},
            "predictions",
        ),
        ("/v1/models/digits:predict", {"inputs": digits.tolist()}, "outputs"),
        ("/v1/models/digits:predict", {"inputs": {"images": digits.tolist()}}, "outputs"),
    ]:
        response = client.post(path, json=body)
        assert response.status_code == 200, f"{body.keys()}: {response.text}"
        outputs = response.json()[key]
        assert len(outputs) == len(digits)
        assert all(len(row) == 10 for row in outputs)
        assert outputs == [close_to(row) for row in expected]


def test_digits_b64_images_equal_the_native_upload(client: TestClient, digits) -> None:
    # A larger, inverted (dark ink on white) drawing too: decoded exactly as an upload.
    big = np.kron(255 - digits[0], np.ones((4, 4), dtype=np.uint8))
    images = [*digits[:3], big]
    files = [("file", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(images)]
    native = client.post("/v1/digits/predict", files=files)
    assert native.status_code == 200
    expected = [p["probabilities"] for p in native.json()["predictions"]]

    encoded = [b64(png(image)) for image in images]
    for body, key in [
        ({"instances": encoded}, "predictions"),
        ({"instances": [{"images": e} for e in encoded]}, "predictions"),
        ({"inputs": encoded}, "outputs"),
        ({"signature_name": "serving_default", "inputs": {"images": encoded}}, "outputs"),
    ]:
        response = client.post("/v1/models/digits:predict", json=body)
        assert response.status_code == 200, response.text
        assert response.json()[key] == [close_to(row) for row in expected]


def test_digits_mixes_pixel_lists_and_b64_images(client: TestClient, digits) -> None:
    expected = native_probabilities(client, digits[:2])
    body = {"instances": [digits[0].tolist(), b64(png(digits[1]))]}
    response = client.post("/v1/models/digits:predict", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [close_to(row) for row in expected]


def test_digits_url_safe_unpadded_base64_is_accepted(client: TestClient, digits) -> None:
    data = png(digits[0])
    encoded = base64.urlsafe_b64encode(data).decode().rstrip("=")
    response = client.post("/v1/models/digits:predict", json={"instances": [{"b64": encoded}]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [close_to(native_probabilities(client, digits[:1])[0])]


# ---- predict: errors ---------------------------------------------------------------------------

ZEROS = [[0] * 28 for _ in range(28)]


def _with(row: int, col: int, value) -> list[list]:
    image = [list(r) for r in ZEROS]
    image[row][col] = value
    return image


# TF Serving's JSON takes NaN and Infinity; a pixel value they are not.
_NAN_ROW = "[NaN" + ", 0" * 27 + "]"
_ZERO_ROW = "[" + ", ".join(["0"] * 28) + "]"
NAN_BODY = ('{"instances": [[' + ", ".join([_NAN_ROW] + [_ZERO_ROW] * 27) + "]]}").encode()

BAD_BODIES = {
    # body problems, either model
    "not json": ("sentiment", b"instances: [great]"),
    "invalid utf-8": ("sentiment", b'{"instances": ["\xff\xfe"]}'),
    "truncated json": ("sentiment", b'{"instances": ["a"'),
    "empty body": ("sentiment", b""),
    "top-level list": ("sentiment", ["a"]),
    "top-level string": ("sentiment", "a"),
    "both formats": ("sentiment", {"instances": ["a"], "inputs": ["a"]}),
    "neither format": ("sentiment", {"signature_name": "serving_default"}),
    "instances not a list": ("sentiment", {"instances": "a review"}),
    "instances an object": ("sentiment", {"instances": {"reviews": ["a"]}}),
    "empty instances": ("sentiment", {"instances": []}),
    "empty inputs": ("sentiment", {"inputs": {"reviews": []}}),
    "too many instances": ("sentiment", {"instances": ["a"] * 257}),
    "too many inputs": ("digits", {"inputs": [ZEROS] * 257}),
    "lone surrogate beside NaN": ("sentiment", b'{"instances": ["\\ud800"], "x": NaN}'),
    "signature_name not a string": ("sentiment", {"signature_name": 1, "instances": ["a"]}),
    # sentiment values
    "number review": ("sentiment", {"instances": [1.5]}),
    "null review": ("sentiment", {"instances": [None]}),
    "list review": ("sentiment", {"instances": [["a", "b"]]}),
    "review too long": ("sentiment", {"instances": ["x" * 100_001]}),
    "b64 review too long": ("sentiment", {"instances": [b64(b"x" * 100_001)]}),
    "unknown input name": ("sentiment", {"instances": [{"review": "a"}]}),
    "extra input name": ("sentiment", {"instances": [{"reviews": "a", "x": 1}]}),
    "unknown columnar name": ("sentiment", {"inputs": {"text": ["a"]}}),
    "columnar scalar": ("sentiment", {"inputs": "a review"}),
    "columnar b64 scalar": ("sentiment", {"inputs": b64(b"a review")}),
    "b64 not a string": ("sentiment", {"instances": [{"b64": 12}]}),
    "b64 not base64": ("sentiment", {"instances": [{"b64": "not base64!"}]}),
    # digits values
    "ragged rows": ("digits", {"instances": [[*ZEROS[:27], [0] * 27]]}),
    "ragged instances": ("digits", {"instances": [ZEROS, ZEROS[:27]]}),
    "too few rows": ("digits", {"instances": [ZEROS[:27]]}),
    "too many columns": ("digits", {"instances": [[[0] * 29] * 28]}),
    "flat pixels": ("digits", {"instances": [[0] * 784]}),
    "one image without batch": ("digits", {"inputs": ZEROS}),
    "two channels": ("digits", {"instances": [[[[0, 0]] * 28] * 28]}),
    "nested too deep": ("digits", {"instances": [_with(3, 4, [1])]}),
    "pixel over 255": ("digits", {"instances": [_with(3, 4, 256)]}),
    "negative pixel": ("digits", {"instances": [_with(3, 4, -1)]}),
    "huge pixel": ("digits", {"instances": [_with(3, 4, 1e300)]}),
    "infinite pixel": ("digits", NAN_BODY.replace(b"NaN", b"-Infinity")),
    "string pixel": ("digits", {"instances": [_with(3, 4, "12")]}),
    "boolean pixel": ("digits", {"instances": [_with(3, 4, True)]}),
    "null pixel": ("digits", {"instances": [_with(3, 4, None)]}),
    "object pixel": ("digits", {"instances": [_with(3, 4, {"x": 1})]}),
    "NaN pixel": ("digits", NAN_BODY),
    "string instance": ("digits", {"instances": ["an image"]}),
    "b64 not an image": ("digits", {"instances": [b64(b"GIF89a but not really")]}),
    "b64 empty": ("digits", {"instances": [{"b64": ""}]}),
    "b64 invalid": ("digits", {"instances": [{"b64": "@@@@"}]}),
    "b64 truncated png": ("digits", {"instances": [b64(png(np.zeros((28, 28)))[:40])]}),
    "b64 with other keys": ("digits", {"instances": [{"b64": "AAAA", "images": ZEROS}]}),
    "named b64 with other keys": ("digits", {"instances": [{"images": {"b64": "AA", "x": 1}}]}),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_request_is_400_tf_style(client: TestClient, case: str) -> None:
    model, body = BAD_BODIES[case]
    if isinstance(body, bytes):
        response = client.post(f"/v1/models/{model}:predict", content=body)
    else:
        response = client.post(f"/v1/models/{model}:predict", json=body)
    assert_tf_error(response, 400)


def test_error_messages_say_what_is_wrong(client: TestClient) -> None:
    def error(model: str, body: dict) -> str:
        return assert_tf_error(client.post(f"/v1/models/{model}:predict", json=body), 400)

    assert "instances[1]" in error("digits", {"instances": [ZEROS, _with(2, 5, 300)]})
    assert "0 to 255" in error("digits", {"instances": [ZEROS, _with(2, 5, 300)]})
    assert "[28, 28]" in error("digits", {"instances": [ZEROS[:27]]})
    assert "MAX_INSTANCES=256" in error("sentiment", {"instances": ["a"] * 257})
    assert "MAX_REVIEW_CHARS=100000" in error("sentiment", {"instances": ["x" * 100_001]})
    assert "'reviews'" in error("sentiment", {"instances": [{"review": "a"}]})
    assert "instances[0]" in error("digits", {"instances": [b64(b"not an image")]})


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/nope:predict",
        "/v1/models/sentiment/versions/3:predict",
        "/v1/models/sentiment/versions/x:predict",
        "/v1/models/..:predict",
        "/v1/models/..%2Fsentiment:predict",
        "/v1/models/..%2F..%2Fmodels%2Fsentiment:predict",
        "/v1/models/sentiment%2F1:predict",
    ],
)
def test_predict_on_unknown_model_or_version_is_404(client: TestClient, path: str) -> None:
    assert_tf_error(client.post(path, json={"instances": ["a"]}), 404)


def test_unknown_signature_is_404(client: TestClient) -> None:
    for path in ["/v1/models/sentiment:predict", "/v1/models/sentiment/versions/2:predict"]:
        body = {"signature_name": "predict_proba", "instances": ["a"]}
        message = assert_tf_error(client.post(path, json=body), 404)
        assert "predict_proba" in message


def test_image_too_large_to_decode_is_413(client: TestClient) -> None:
    huge = png(np.zeros((1, 5000), dtype=np.uint8))  # wider than MAX_IMAGE_SIDE=4096
    response = client.post("/v1/models/digits:predict", json={"instances": [b64(huge)]})
    assert_tf_error(response, 413)


def test_openapi_documents_both_formats(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ["/v1/models/{name}:predict", "/v1/models/{name}/versions/{version}:predict"]:
        operation = schema["paths"][path]["post"]
        examples = operation["requestBody"]["content"]["application/json"]["examples"]
        assert "instances" in examples["row"]["value"]
        assert "inputs" in examples["columnar"]["value"]
        responses = operation["responses"]
        assert {"predictions", "outputs"} <= set(
            responses["200"]["content"]["application/json"]["schema"]["properties"]
        )
        assert "404" in responses
        assert "400" in responses
    for path in ["/v1/models/{name}", "/v1/models/{name}/metadata"]:
        assert "get" in schema["paths"][path]


def test_openapi_b64_example_is_a_digit_the_model_reads(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/models/{name}:predict"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["examples"]["digits_b64"]
    response = client.post("/v1/models/digits:predict", json=body["value"])
    assert response.status_code == 200, response.text
    assert int(np.argmax(response.json()["predictions"][0])) == 7


# ---- several versions, other models, API keys -------------------------------------------------


class HalfPlusTwo(tf.Module):
    """TF Serving's toy model: y = x / 2 + 2, float32[-1] -> float32[-1]."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x * 0.5 + 2.0}


class RowSum(tf.Module):
    """int32[-1, 3] -> int32[-1]: the sum of each row."""

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int32, name="values")])
    def serve(self, values):
        return {"sum": tf.reduce_sum(values, axis=1)}


@pytest.fixture(scope="module")
def multi_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sentiment versions 1 and 2 (copies), digits, two toy models."""
    model_dir = tmp_path_factory.mktemp("models")
    shutil.copytree(MODELS / "sentiment" / "1", model_dir / "sentiment" / "1")
    shutil.copytree(MODELS / "sentiment" / "1", model_dir / "sentiment" / "2")
    shutil.copytree(MODELS / "digits" / "1", model_dir / "digits" / "1")
    for name, module in [("half_plus_two", HalfPlusTwo()), ("row_sum", RowSum())]:
        tf.saved_model.save(
            module, str(model_dir / name / "123"), signatures={"serving_default": module.serve}
        )
    return model_dir


def serving(model_dir: Path) -> TestClient:
    """The app on ``model_dir``, every version served, an API key required."""
    settings = Settings(model_dir=model_dir, api_keys=API_KEY, model_version_policy="all")
    return TestClient(create_app(settings), headers={"Authorization": f"Bearer {API_KEY}"})


@pytest.fixture(scope="module")
def multi_client(multi_model_dir: Path) -> Iterator[TestClient]:
    """Shared by the tests that leave the app as they found it."""
    with serving(multi_model_dir) as client:
        yield client


@pytest.fixture
def own_multi_client(multi_model_dir: Path) -> Iterator[TestClient]:
    """For a test that changes the app (stops a batcher): its own, gone after it."""
    with serving(multi_model_dir) as client:
        yield client


def test_two_versions_are_each_addressable(multi_client: TestClient) -> None:
    status = multi_client.get("/v1/models/sentiment").json()["model_version_status"]
    assert [s["version"] for s in status] == ["2", "1"]
    assert {s["state"] for s in status} == {"AVAILABLE"}
    for version in ("1", "2"):
        one = multi_client.get(f"/v1/models/sentiment/versions/{version}").json()
        assert [s["version"] for s in one["model_version_status"]] == [version]
        metadata = multi_client.get(f"/v1/models/sentiment/versions/{version}/metadata").json()
        assert metadata["model_spec"]["version"] == version
    assert multi_client.get("/v1/models/sentiment/metadata").json()["model_spec"]["version"] == "2"
    assert_tf_error(multi_client.get("/v1/models/sentiment/versions/3"), 404)

    expected = native_scores(multi_client, REVIEWS)
    for path in [
        "/v1/models/sentiment:predict",
        "/v1/models/sentiment/versions/1:predict",
        "/v1/models/sentiment/versions/2:predict",
    ]:
        response = multi_client.post(path, json={"instances": REVIEWS})
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == close_to(expected)


def test_unversioned_predict_is_served_by_the_highest_version(
    own_multi_client: TestClient,
) -> None:
    """Stop version 1's batcher: the unversioned path still answers, so version 2 serves it."""
    multi_client = own_multi_client
    server = multi_client.app.state.server
    multi_client.portal.call(server.resolve(ModelRef("sentiment", 1)).batcher.close)
    stopped = multi_client.post(
        "/v1/models/sentiment/versions/1:predict", json={"instances": REVIEWS}
    )
    assert_tf_error(stopped, 503)
    for path in ["/v1/models/sentiment:predict", "/v1/models/sentiment/versions/2:predict"]:
        response = multi_client.post(path, json={"instances": REVIEWS})
        assert response.status_code == 200, response.text
    # The native endpoint also uses version 2, through the same batcher.
    assert multi_client.post("/v1/sentiment/predict", json={"reviews": REVIEWS}).status_code == 200


def test_other_models_are_served_generically(multi_client: TestClient) -> None:
    # The example of TF Serving's REST API documentation.
    response = multi_client.post(
        "/v1/models/half_plus_two:predict", json={"instances": [1.0, 2.0, 5.0]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [2.5, 3.0, 4.5]}
    response = multi_client.post(
        "/v1/models/half_plus_two/versions/123:predict", json={"inputs": {"x": [1, 2]}}
    )
    assert response.json() == {"outputs": [2.5, 3.0]}
    named = multi_client.post("/v1/models/half_plus_two:predict", json={"instances": [{"x": 3}]})
    assert named.json() == {"predictions": [3.5]}
    # TF Serving's JSON takes NaN and Infinity for floats; a NaN output is written as null.
    special = multi_client.post(
        "/v1/models/half_plus_two:predict", content=b'{"instances": [NaN, -Infinity, 1]}'
    )
    assert special.status_code == 200, special.text
    assert special.json() == {"predictions": [None, None, 2.5]}

    response = multi_client.post("/v1/models/row_sum:predict", json={"instances": [[1, 2, 3]]})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [6]}
    assert multi_client.post(
        "/v1/models/row_sum:predict", json={"inputs": [[1, 2, 3], [-4, 5, 6]]}
    ).json() == {"outputs": [6, 7]}

    metadata = multi_client.get("/v1/models/row_sum/metadata").json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["values"]["dtype"] == "DT_INT32"
    assert metadata["model_spec"] == {"name": "row_sum", "signature_name": "", "version": "123"}

    for model, body in [
        ("half_plus_two", {"instances": [[1.0]]}),  # one dimension too many
        ("half_plus_two", {"instances": ["1.0"]}),
        ("half_plus_two", {"instances": [1e39]}),  # beyond float32
        ("half_plus_two", {"instances": [{"b64": "AAAA"}]}),
        ("row_sum", {"instances": [[1, 2]]}),
        ("row_sum", {"instances": [[1, 2, 3.5]]}),  # not an integer
        ("row_sum", {"instances": [[1, 2, 2**31]]}),  # beyond int32
        ("row_sum", {"instances": [[1, 2, True]]}),
    ]:
        assert_tf_error(multi_client.post(f"/v1/models/{model}:predict", json=body), 400)


def test_tf_serving_routes_need_the_api_key(multi_client: TestClient) -> None:
    no_key = {"Authorization": ""}
    for method, path in [
        ("GET", "/v1/models/sentiment"),
        ("GET", "/v1/models/sentiment/versions/2/metadata"),
        ("POST", "/v1/models/sentiment:predict"),
        ("POST", "/v1/models/sentiment/versions/2:predict"),
    ]:
        response = multi_client.request(method, path, json={"instances": ["a"]}, headers=no_key)
        assert_tf_error(response, 401)
        wrong = multi_client.request(
            method, path, json={"instances": ["a"]}, headers={"Authorization": "Bearer nope"}
        )
        assert_tf_error(wrong, 401)
