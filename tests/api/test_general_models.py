"""Any SavedModel, through TF Serving's REST API and the Open Inference Protocol, in process.

The models are the ones users bring (``tests/support/savedmodels.py``: Keras ``export()``,
``tf.Module``, TF1 graphs with ``tf.Example`` parsing, assets and reference variables, a
signature without a batch dimension, a stateful counter, every dtype), built once for this
module. Every answer is compared with a direct TensorFlow call of the same signature on the
same inputs; every bad request gets a 4xx saying what is wrong.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.support.savedmodels import build_zoo, example

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_zoo(tmp_path_factory.mktemp("zoo") / "models")


@pytest.fixture(scope="module")
def client(zoo: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=zoo, model_poll_s=0))) as test_client:
        yield test_client


def direct(zoo: Path, model: str, signature: str, **inputs: Any) -> dict[str, np.ndarray]:
    """The signature called by TensorFlow itself: what the service must answer."""
    loaded = tf.saved_model.load(str(zoo / model / "1"))
    results = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in results.items()}


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"])


# ---- TF Serving: predict --------------------------------------------------------------------


def test_tf_servings_quickstart_half_plus_two(client: TestClient) -> None:
    """TF Serving's own example, unchanged: ``x`` is [-1, 1], the instances are scalars."""
    response = client.post("/v1/models/half_plus_two:predict", json={"instances": [1.0, 2.0, 5.0]})
    assert response.json() == {"predictions": [2.5, 3.0, 4.5]}
    # With the trailing dimension, the answer keeps it too; no leniency beyond one axis.
    response = client.post("/v1/models/half_plus_two:predict", json={"instances": [[1.0]]})
    assert response.json() == {"predictions": [[2.5]]}
    message = error(
        client.post("/v1/models/half_plus_two:predict", json={"instances": [[[1.0]]]}), 400
    )
    assert "float32[1]" in message


def test_two_inputs_two_outputs_row_and_columnar(client: TestClient, zoo: Path) -> None:
    a = np.array([[1, 2, 3], [0.5, 0, -1]], np.float32)
    b = np.array([[4, 5], [1, 1]], np.float32)
    want = direct(zoo, "keras2", "serving_default", a=a, b=b)
    rows = client.post(
        "/v1/models/keras2:predict",
        json={"instances": [{"a": a[i].tolist(), "b": b[i].tolist()} for i in range(2)]},
    ).json()["predictions"]
    assert [set(row) for row in rows] == [{"scaled", "total"}] * 2
    for key in ("scaled", "total"):
        np.testing.assert_allclose([row[key] for row in rows], want[key], rtol=1e-6)
    columns = client.post(
        "/v1/models/keras2:predict", json={"inputs": {"a": a.tolist(), "b": b.tolist()}}
    ).json()["outputs"]
    for key in ("scaled", "total"):
        np.testing.assert_allclose(columns[key], want[key], rtol=1e-6)


def test_any_signature_by_name_and_strings_both_ways(client: TestClient, zoo: Path) -> None:
    texts = ["héllo wörld", "", "a b c"]
    want = direct(zoo, "strings", "upper", text=np.array(texts, dtype=object))
    answer = client.post(
        "/v1/models/strings:predict", json={"signature_name": "upper", "instances": texts}
    ).json()["predictions"]
    assert [row["upper"] for row in answer] == [t.decode() for t in want["upper"]]
    assert [row["words"] for row in answer] == want["words"].tolist()
    # Binary strings go in and come out as {"b64": ...}.
    raw = b"\xff\xfe"
    encoded = base64.b64encode(raw).decode()
    answer = client.post(
        "/v1/models/dtypes:predict",
        json={"signature_name": "string", "instances": [["text", {"b64": encoded}]]},
    ).json()
    assert answer == {"predictions": [["text", {"b64": encoded}]]}


def test_a_signature_without_batch_dimension_takes_its_tensor_whole(client: TestClient) -> None:
    answer = client.post("/v1/models/unbatched:predict", json={"inputs": [3, 4, 0]}).json()
    assert answer["outputs"]["norm"] == pytest.approx(5.0)
    assert answer["outputs"]["unit"] == pytest.approx([0.6, 0.8, 0.0])
    message = error(
        client.post("/v1/models/unbatched:predict", json={"instances": [[3, 4, 0]]}), 400
    )
    assert "[3]" in message


@pytest.mark.parametrize(
    ("signature", "values"),
    [
        ("bool", [[True, False]]),
        ("int8", [[-128, 127]]),
        ("int16", [[-32768, 32767]]),
        ("int32", [[-(2**31), 2**31 - 1]]),
        ("int64", [[-(2**63), 2**63 - 1]]),
        ("uint8", [[0, 255]]),
        ("uint16", [[0, 65535]]),
        ("uint32", [[0, 2**32 - 1]]),
        ("uint64", [[0, 2**64 - 1]]),
        ("float16", [[1.5, -65504.0]]),
        ("bfloat16", [[1.5, -2.0]]),
        ("float32", [[1.25, -1024.5]]),
        ("float64", [[1e-300, 1e300]]),
        ("string", [["a", "b"]]),
    ],
)
def test_every_dtype_round_trips_both_protocols(
    client: TestClient, signature: str, values: list[list[Any]]
) -> None:
    tfs = client.post(
        "/v1/models/dtypes:predict", json={"signature_name": signature, "instances": values}
    )
    assert tfs.json() == {"predictions": values}, tfs.text
    datatype = {"string": "BYTES"}.get(signature) or _oip(signature)
    body = {
        "parameters": {"signature_name": signature},
        "inputs": [{"name": "x", "datatype": datatype, "shape": [1, 2], "data": values[0]}],
    }
    oip = client.post("/v2/models/dtypes/infer", json=body)
    assert oip.status_code == 200, oip.text
    (output,) = oip.json()["outputs"]
    assert output["datatype"] == datatype
    assert output["data"] == values[0]


def _oip(dtype: str) -> str:
    from app.signatures import DTYPES

    return DTYPES[dtype].oip


def test_assets_and_reference_variables(client: TestClient) -> None:
    answer = client.post("/v1/models/assets:predict", json={"instances": ["good", "zzz", "fine"]})
    assert answer.json() == {"predictions": [0, -1, 2]}
    answer = client.post("/v1/models/refvars:predict", json={"instances": [[1, 2], [0, 0]]})
    assert answer.json() == {"predictions": [[5.5], [0.5]]}
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["refvars"]["states"][0]["state"] == "AVAILABLE"


def test_metadata_lists_every_signature_with_methods_and_tensor_names(
    client: TestClient,
) -> None:
    metadata = client.get("/v1/models/estimator/metadata").json()
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {name: s["method_name"] for name, s in signatures.items()} == {
        "serving_default": "tensorflow/serving/classify",
        "regression": "tensorflow/serving/regress",
        "predict": "tensorflow/serving/predict",
    }
    inputs = signatures["serving_default"]["inputs"]["inputs"]
    assert inputs["name"] == "input_example_tensor:0"
    assert inputs["dtype"] == "DT_STRING"
    assert inputs["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    keras = client.get("/v1/models/keras2/metadata").json()["metadata"]["signature_def"]
    assert set(keras["signature_def"]) == {"serve", "serving_default"}
    oip = client.get("/v2/models/simple").json()
    assert [(t["name"], t["datatype"], t["shape"]) for t in oip["inputs"]] == [
        ("INPUT0", "INT32", [-1, 16]),
        ("INPUT1", "INT32", [-1, 16]),
    ]


# ---- TF Serving: classify and regress ---------------------------------------------------------


def test_classify_and_regress_equal_the_signatures_on_serialized_examples(
    client: TestClient, zoo: Path
) -> None:
    examples = [{"age": 30, "height": 1.8}, {"age": 50, "height": 1.6, "city": "lyon"}]
    context = {"city": "paris"}
    serialized = np.array(
        [example(age=30, height=1.8, city="paris"), example(age=50, height=1.6, city="lyon")],
        dtype=object,
    )
    want = direct(zoo, "estimator", "serving_default", inputs=serialized)
    answer = client.post(
        "/v1/models/estimator:classify", json={"context": context, "examples": examples}
    ).json()
    labels = [[label.decode() for label in row] for row in want["classes"]]
    assert [[pair[0] for pair in row] for row in answer["results"]] == labels
    np.testing.assert_allclose(
        [[pair[1] for pair in row] for row in answer["results"]], want["scores"], rtol=1e-6
    )
    want = direct(zoo, "estimator", "regression", inputs=serialized)
    answer = client.post(
        "/v1/models/estimator/versions/1:regress",
        json={"signature_name": "regression", "context": context, "examples": examples},
    ).json()
    np.testing.assert_allclose(answer["results"], want["outputs"], rtol=1e-6)


def test_classify_on_a_predict_signature_that_parses_examples(
    client: TestClient, zoo: Path
) -> None:
    serialized = np.array([example(age=30, height=1.8)], dtype=object)
    want = direct(zoo, "estimator", "predict", examples=serialized)
    answer = client.post(
        "/v1/models/estimator:classify",
        json={"signature_name": "predict", "examples": [{"age": 30, "height": 1.8}]},
    ).json()
    assert [pair[0] for pair in answer["results"][0]] == ["", "", ""]  # scores, no classes
    np.testing.assert_allclose([pair[1] for pair in answer["results"][0]], want["scores"][0])
    # A model that parses no tf.Example: its string input is text, not examples.
    message = error(client.post("/v1/models/strings:regress", json={"examples": [{"a": 1}]}), 400)
    assert "predict signature" in message


def test_half_plus_two_classify_and_regress_as_tf_serving_documents(client: TestClient) -> None:
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": 2.0}]}
    assert client.post("/v1/models/half_plus_two:regress", json=body).json() == {
        "results": [2.5, 3.0]
    }
    body["signature_name"] = "classify_x_to_y"
    results = client.post("/v1/models/half_plus_two:classify", json=body).json()["results"]
    assert [[score for _, score in row] for row in results] == [[2.5], [3.0]]


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        (":regress", {"examples": [{"age": 1, "height": 1.0}]}, 400, "classify signature"),
        (":classify", {"signature_name": "nope", "examples": [{"a": 1}]}, 404, "nope"),
        (":classify", {"examples": []}, 400, "empty"),
        (":classify", {"examples": {"age": 1}}, 400, "list"),
        (":classify", {"examples": [[1, 2]]}, 400, "object"),
        (":classify", {"examples": [{"age": None}]}, 400, "null"),
        (":classify", {"examples": [{"age": [1, "a"]}]}, 400, "mixes"),
        (":classify", {"examples": [{"age": 1}, {"age": "x"}]}, 400, "one type"),
        (":classify", {"context": {"age": 1.5}, "examples": [{"age": 1}]}, 400, "one type"),
        (":classify", {"examples": [{"age": 2**63}]}, 400, "int64"),
        (":classify", {"examples": [{"city": {"b64": "%%%"}}]}, 400, "base64"),
        # The parser needs 'height': the model refuses the examples, a 400 for this request.
        (":classify", {"examples": [{"age": 1}]}, 400, "height"),
    ],
)
def test_bad_examples_are_400s_saying_why(
    client: TestClient, path: str, body: dict[str, Any], status: int, words: str
) -> None:
    message = error(client.post(f"/v1/models/estimator{path}", json=body), status)
    assert words in message


# ---- Open Inference Protocol -----------------------------------------------------------------


def test_oip_several_inputs_requested_outputs_binary_and_json(
    client: TestClient, zoo: Path
) -> None:
    x0 = np.arange(32, dtype=np.int32).reshape(2, 16)
    x1 = np.ones((2, 16), np.int32)
    want = direct(zoo, "simple", "serving_default", INPUT0=x0, INPUT1=x1)
    head = {
        "inputs": [
            {"name": "INPUT1", "datatype": "INT32", "shape": [2, 16], "data": x1.ravel().tolist()},
            {
                "name": "INPUT0",
                "datatype": "INT32",
                "shape": [2, 16],
                "parameters": {"binary_data_size": x0.nbytes},
            },
        ],
        "outputs": [
            {"name": "OUTPUT1", "parameters": {"binary_data": True}},
            {"name": "OUTPUT0", "parameters": {"binary_data": False}},
        ],
    }
    import orjson

    json_part = orjson.dumps(head)
    response = client.post(
        "/v2/models/simple/infer",
        content=json_part + x0.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(json_part))},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    answer = orjson.loads(response.content[:length])
    first, second = answer["outputs"]
    assert first["name"] == "OUTPUT1"
    assert second == {
        "name": "OUTPUT0",
        "datatype": "INT32",
        "shape": [2, 16],
        "data": want["OUTPUT0"].ravel().tolist(),
    }
    binary = np.frombuffer(response.content[length:], dtype="<i4").reshape(2, 16)
    np.testing.assert_array_equal(binary, want["OUTPUT1"])


@pytest.mark.parametrize(
    ("inputs", "parameters", "status", "words"),
    [
        ([("INPUT0", "INT32", [1, 16])], {}, 400, "INPUT1"),
        ([("INPUT0", "INT32", [1, 16]), ("INPUT0", "INT32", [1, 16])], {}, 400, "twice"),
        ([("INPUT0", "INT32", [1, 16]), ("EXTRA", "INT32", [1, 16])], {}, 400, "EXTRA"),
        ([("INPUT0", "FP32", [1, 16]), ("INPUT1", "INT32", [1, 16])], {}, 400, "integer"),
        ([("INPUT0", "INT32", [1, 15]), ("INPUT1", "INT32", [1, 15])], {}, 400, "[-1, 16]"),
        ([("INPUT0", "INT32", [1, 16]), ("INPUT1", "INT32", [2, 16])], {}, 400, "differ"),
        (
            [("INPUT0", "INT32", [1, 16]), ("INPUT1", "INT32", [1, 16])],
            {"signature_name": "x"},
            404,
            "'x'",
        ),
        ([("INPUT0", "BYTES", [1, 16]), ("INPUT1", "INT32", [1, 16])], {}, 400, "BYTES"),
    ],
)
def test_oip_bad_tensors_are_400s(
    client: TestClient,
    inputs: list[tuple[str, str, list[int]]],
    parameters: dict[str, Any],
    status: int,
    words: str,
) -> None:
    def data(datatype: str, shape: list[int]) -> list[Any]:
        count = int(np.prod(shape))
        return ["a"] * count if datatype == "BYTES" else [1] * count

    body = {
        "parameters": parameters,
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "data": data(d, s)} for n, d, s in inputs
        ],
    }
    message = error(client.post("/v2/models/simple/infer", json=body), status)
    assert words in message


# ---- TF Serving: bad input for any model -----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "body", "status", "words"),
    [
        ("keras2", {"instances": [{"a": [1, 2, 3]}]}, 400, "lacks 'b'"),
        ("keras2", {"instances": [{"a": [1, 2, 3], "b": [1, 2], "c": 1}]}, 400, "'c'"),
        ("keras2", {"instances": [[1, 2, 3]]}, 400, "several inputs"),
        ("keras2", {"inputs": [[1, 2, 3]]}, 400, "several inputs"),
        ("keras2", {"inputs": {"a": [[1, 2, 3]], "b": [[1, 2], [3, 4]]}}, 400, "differ"),
        ("keras2", {"instances": [{"a": [1, 2], "b": [1, 2]}]}, 400, "float32[3]"),
        ("keras2", {"instances": [{"a": [1, "2", 3], "b": [1, 2]}]}, 400, "a string"),
        ("keras2", {"instances": [{"a": [[1], [2, 3], 3], "b": [1, 2]}]}, 400, "ragged"),
        ("simple", {"instances": [{"INPUT0": [1.5] * 16, "INPUT1": [1] * 16}]}, 400, "whole"),
        ("simple", {"instances": [{"INPUT0": [2**31] * 16, "INPUT1": [1] * 16}]}, 400, "range"),
        ("dtypes", {"signature_name": "uint8", "instances": [[-1, 0]]}, 400, "range"),
        # Past 64 bits, a whole number that the JSON parser reads as a float.
        ("dtypes", {"signature_name": "uint64", "instances": [[2**64, 0]]}, 400, "range"),
        ("dtypes", {"signature_name": "int64", "instances": [[-(2**65), 0]]}, 400, "range"),
        ("dtypes", {"signature_name": "bool", "instances": [[1, 0]]}, 400, "true or false"),
        ("dtypes", {"signature_name": "float16", "instances": [[1e6, 0]]}, 400, "range"),
        ("dtypes", {"signature_name": "string", "instances": [[{"b64": "*"}, "a"]]}, 400, "base64"),
        ("dtypes", {"signature_name": "nope", "instances": [[1, 2]]}, 404, "nope"),
        ("dtypes", {"signature_name": 3, "instances": [[1, 2]]}, 400, "string"),
        ("strings", {"instances": []}, 400, "empty"),
    ],
)
def test_bad_predict_bodies_are_4xx_saying_why(
    client: TestClient, model: str, body: dict[str, Any], status: int, words: str
) -> None:
    message = error(client.post(f"/v1/models/{model}:predict", json=body), status)
    assert words in message


@pytest.mark.parametrize(
    ("signature", "datatype", "values", "binary"),
    [
        ("bfloat16", "BF16", [1e39, 0.0], False),  # JSON data beyond bfloat16's range
        ("float16", "BF16", [1e30, 0.0], False),  # a bfloat16 that float16 cannot hold
        ("float16", "BF16", [1e30, 0.0], True),
        ("float16", "FP32", [1e30, 0.0], False),
        ("float16", "FP32", [1e30, 0.0], True),
        ("float16", "INT32", [100_000, 0], False),  # whole numbers past float16's range
        ("float16", "INT32", [100_000, 0], True),
    ],
)
def test_oip_floats_beyond_the_inputs_range_are_400s(
    client: TestClient, signature: str, datatype: str, values: list[float], binary: bool
) -> None:
    import ml_dtypes
    import orjson

    tensor: dict[str, Any] = {"name": "x", "datatype": datatype, "shape": [1, 2]}
    blob = b""
    if binary:
        wire = {"BF16": ml_dtypes.bfloat16, "FP32": np.float32, "INT32": np.int32}[datatype]
        blob = np.array(values, wire).tobytes()
        tensor["parameters"] = {"binary_data_size": len(blob)}
    else:
        tensor["data"] = values
    head = orjson.dumps({"parameters": {"signature_name": signature}, "inputs": [tensor]})
    response = client.post(
        "/v2/models/dtypes/infer",
        content=head + blob,
        headers={"Inference-Header-Content-Length": str(len(head))} if binary else {},
    )
    assert "outside" in error(response, 400)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"signature_name": "int32", "instances": [[NaN, 1]]}', "whole numbers"),
        (b'{"signature_name": "string", "instances": [["\\ud800", "a"]]}', "JSON"),
    ],
)
def test_json_that_only_python_reads_is_refused_clearly(
    client: TestClient, body: bytes, words: str
) -> None:
    message = error(client.post("/v1/models/dtypes:predict", content=body), 400)
    assert words in message


def test_stateful_model_runs_one_request_at_a_time(client: TestClient) -> None:
    first = client.post("/v1/models/counter:predict", json={"instances": [1, 2]}).json()
    second = client.post("/v1/models/counter:predict", json={"instances": [10]}).json()
    total = first["predictions"][0]
    assert first["predictions"] == [total, total]
    assert second["predictions"] == [total + 10]
    config = client.get("/v2/models/counter/config").json()
    assert config["max_batch_size"] == 0
    assert "dynamic_batching" not in config
