"""The clients users of Triton and TF Serving bring, against a real server on the models they
bring: every answer equals TensorFlow's own call of the signature.

The server (a real uvicorn process, ``tests/support/faulty_app.py`` with no fault but while a
test holds a model) serves a zoo built for this module (``tests/support/savedmodels.py``):

* ``tritonclient.http`` doing what Triton's own HTTP examples do (``simple_http_infer_client``,
  ``simple_http_async_infer_client``, ``simple_http_string_infer_client``,
  ``simple_http_health_metadata``) against ``simple``, a SavedModel of the shape of Triton's
  ``simple`` model, then the Keras two-in, two-out export and the string model;
* TF Serving's JSON over HTTP (row, columnar, classify, regress, metadata, status) against the
  TF1 exports: ``half_plus_two``, the Estimator-style export, a graph with assets, one with
  reference variables (served from a TF1 session);
* a burst of one-instance requests through both protocols, held behind one model call, goes
  to the model as one batch, as ``/metrics``' ``model_batch_size`` shows.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.support.savedmodels import build_zoo, call_directly, example
from tests.support.server import metric_total, model_calls, start_server, stop_server
from tests.support.waiting import wait_until

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODELS = ("simple", "keras2", "strings", "half_plus_two", "estimator", "assets", "refvars")
MAX_BATCH_SIZE = 64


@dataclass
class Served:
    url: str
    zoo: Path
    fault_file: Path

    def fault(self, spec: str) -> None:
        self.fault_file.write_text(spec)

    def model_calls(self, model: str) -> list[int]:
        """Instances of each call that reached ``model`` so far, in order."""
        return model_calls(self.fault_file, model)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``/metrics``' samples called ``name`` with these labels (0 if none)."""
        return metric_total(self.url, name, **labels)

    def direct(self, model: str, signature: str = "serving_default", **inputs: Any) -> Any:
        """TensorFlow's own answer: the signature called on the SavedModel, not served."""
        return call_directly(self.zoo / model / "1", signature, **inputs)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    zoo = build_zoo(tmp_path_factory.mktemp("zoo") / "models", MODELS)
    fault_file = tmp_path_factory.mktemp("fault") / "fault"
    fault_file.write_text("")
    env = {
        "MODEL_DIR": str(zoo),
        "FAULT_FILE": str(fault_file),
        "MAX_BATCH_SIZE": str(MAX_BATCH_SIZE),
        "MAX_CONCURRENT_BATCHES": "1",
        "REQUEST_TIMEOUT_S": "60",  # a held call waits for the burst to queue
    }
    proc, url = start_server(env, target="tests.support.faulty_app:app")
    try:
        yield Served(url, zoo, fault_file)
    finally:
        fault_file.write_text("")
        stop_server(proc)


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(served.url.removeprefix("http://"))
    yield client
    client.close()


# ---- tritonclient, as Triton's examples use it -------------------------------------------------


def simple_inputs(
    input0: np.ndarray, input1: np.ndarray, binary: tuple[bool, bool] = (False, True)
) -> list[triton.InferInput]:
    """INPUT0 and INPUT1 as ``simple_http_infer_client`` builds them (the first as JSON, the
    second as binary data, by default)."""
    inputs = [
        triton.InferInput("INPUT0", list(input0.shape), "INT32"),
        triton.InferInput("INPUT1", list(input1.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(input0, binary_data=binary[0])
    inputs[1].set_data_from_numpy(input1, binary_data=binary[1])
    return inputs


def test_health_metadata_and_config_as_tritons_example_reads_them(
    client: triton.InferenceServerClient,
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.is_model_ready("simple", "1")
    assert not client.is_model_ready("simple", "2")
    metadata = client.get_model_metadata("simple")
    assert metadata["name"] == "simple"
    assert metadata["versions"] == ["1"]
    tensors = [{"datatype": "INT32", "shape": [-1, 16]}] * 2
    assert metadata["inputs"] == [{"name": f"INPUT{i}", **t} for i, t in enumerate(tensors)]
    assert metadata["outputs"] == [{"name": f"OUTPUT{i}", **t} for i, t in enumerate(tensors)]
    config = client.get_model_config("simple")
    assert config["max_batch_size"] == MAX_BATCH_SIZE  # the batch dimension is left out:
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("INPUT0", "TYPE_INT32", [16]),
        ("INPUT1", "TYPE_INT32", [16]),
    ]
    assert [t["name"] for t in config["output"]] == ["OUTPUT0", "OUTPUT1"]


@pytest.mark.parametrize(
    "binary",
    [(False, True), (True, True), (False, False)],
    ids=["JSON and binary inputs (the example)", "binary inputs", "JSON inputs"],
)
def test_simple_infer_as_tritons_example(
    served: Served, client: triton.InferenceServerClient, binary: tuple[bool, bool]
) -> None:
    input0 = np.arange(16, dtype=np.int32).reshape(1, 16)
    input1 = np.ones((1, 16), dtype=np.int32)
    outputs = [
        triton.InferRequestedOutput("OUTPUT0", binary_data=True),
        triton.InferRequestedOutput("OUTPUT1", binary_data=False),
    ]
    result = client.infer(
        "simple",
        simple_inputs(input0, input1, binary),
        outputs=outputs,
        request_id="1",
        query_params={"test_1": 1, "test_2": 2},  # as the example sends them: ignored
    )
    want = served.direct("simple", INPUT0=input0, INPUT1=input1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), want["OUTPUT0"])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), want["OUTPUT1"])
    response = result.get_response()
    assert response["id"] == "1"
    assert response["model_version"] == "1"
    sent = {output["name"]: output for output in response["outputs"]}
    assert "binary_data_size" in sent["OUTPUT0"]["parameters"]  # binary, as asked
    assert sent["OUTPUT1"]["data"] == want["OUTPUT1"].ravel().tolist()  # JSON, as asked


def test_only_the_requested_outputs_come_back(
    served: Served, client: triton.InferenceServerClient
) -> None:
    input0 = np.arange(32, dtype=np.int32).reshape(2, 16)
    input1 = np.full((2, 16), -7, dtype=np.int32)
    result = client.infer(
        "simple", simple_inputs(input0, input1), outputs=[triton.InferRequestedOutput("OUTPUT1")]
    )
    assert result.as_numpy("OUTPUT0") is None
    want = served.direct("simple", INPUT0=input0, INPUT1=input1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), want["OUTPUT1"])
    # No outputs named: every output, binary by the client's default.
    result = client.infer("simple", simple_inputs(input0, input1))
    for name in ("OUTPUT0", "OUTPUT1"):
        np.testing.assert_array_equal(result.as_numpy(name), want[name])


def test_async_infer_as_tritons_example(served: Served) -> None:
    """``simple_http_async_infer_client``: requests sent at once, answers collected later."""
    client = triton.InferenceServerClient(served.url.removeprefix("http://"), concurrency=4)
    try:
        pairs = [
            (np.full((1, 16), i, np.int32), np.arange(16, dtype=np.int32).reshape(1, 16))
            for i in range(8)
        ]
        pending = [client.async_infer("simple", simple_inputs(a, b)) for a, b in pairs]
        results = [request.get_result() for request in pending]
    finally:
        client.close()
    for (a, b), result in zip(pairs, results, strict=True):
        want = served.direct("simple", INPUT0=a, INPUT1=b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), want["OUTPUT0"])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), want["OUTPUT1"])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "JSON"])
def test_strings_as_tritons_string_example(
    served: Served, client: triton.InferenceServerClient, binary: bool
) -> None:
    """``simple_http_string_infer_client``'s way with BYTES, on a string model: its default
    signature (int64 and bool outputs) and, named in the request's parameters, another."""
    texts = np.array(["héllo wörld".encode(), b"", b"a b c"], dtype=object)
    text = triton.InferInput("text", [3], "BYTES")
    text.set_data_from_numpy(texts, binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("length", "empty")]
    result = client.infer("strings", [text], outputs=outputs)
    want = served.direct("strings", text=texts)
    np.testing.assert_array_equal(result.as_numpy("length"), want["length"])
    np.testing.assert_array_equal(result.as_numpy("empty"), want["empty"])
    assert result.as_numpy("length").dtype == np.int64
    assert result.as_numpy("empty").dtype == np.bool_

    result = client.infer("strings", [text], parameters={"signature_name": "upper"})
    want = served.direct("strings", "upper", text=texts)
    assert result.as_numpy("upper").tolist() == want["upper"].tolist()
    np.testing.assert_array_equal(result.as_numpy("words"), want["words"])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "JSON"])
def test_keras_two_inputs_two_outputs(
    served: Served, client: triton.InferenceServerClient, binary: bool
) -> None:
    a = np.array([[1, 2, 3], [0.5, 0, -1]], np.float32)
    b = np.array([[4, 5], [1, 1]], np.float32)
    inputs = [triton.InferInput("a", [2, 3], "FP32"), triton.InferInput("b", [2, 2], "FP32")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("total", "scaled")]
    result = client.infer("keras2", inputs, outputs=outputs)
    want = served.direct("keras2", a=a, b=b)
    np.testing.assert_allclose(result.as_numpy("total"), want["total"], rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("scaled"), want["scaled"], rtol=1e-6)


def test_errors_reach_tritonclient_with_their_status(client: triton.InferenceServerClient) -> None:
    wrong = [
        triton.InferInput("INPUT0", [1, 16], "FP32"),
        triton.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    wrong[0].set_data_from_numpy(np.zeros((1, 16), np.float32))
    wrong[1].set_data_from_numpy(np.zeros((1, 16), np.int32))
    with pytest.raises(InferenceServerException) as dtype:
        client.infer("simple", wrong)
    assert dtype.value.status() == "400"
    assert "integer" in dtype.value.message()

    missing = simple_inputs(np.zeros((1, 16), np.int32), np.zeros((1, 16), np.int32))[:1]
    with pytest.raises(InferenceServerException) as names:
        client.infer("simple", missing)
    assert names.value.status() == "400"
    assert "INPUT1" in names.value.message()

    right = simple_inputs(np.zeros((1, 16), np.int32), np.zeros((1, 16), np.int32))
    with pytest.raises(InferenceServerException) as signature:
        client.infer("simple", right, parameters={"signature_name": "nope"})
    assert signature.value.status() == "404"


# ---- TF Serving's JSON, on TF1 exports --------------------------------------------------------


def post(served: Served, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{served.url}{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_tf_servings_quickstart_half_plus_two(served: Served) -> None:
    """TF Serving's own quickstart, unchanged: ``x`` is [-1, 1], the instances scalars."""
    answer = post(served, "/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]})
    want = served.direct("half_plus_two", x=np.array([[1.0], [2.0], [5.0]], np.float32))
    assert answer == {"predictions": want["y"][:, 0].tolist()} == {"predictions": [2.5, 3.0, 4.5]}
    columns = post(served, "/v1/models/half_plus_two:predict", {"inputs": {"x": [[1.0], [2.0]]}})
    assert columns == {"outputs": want["y"][:2].tolist()}


def test_half_plus_two_classify_and_regress(served: Served) -> None:
    examples = [{"x": 1.0}, {"x": 2.0}, {"x": -4.0}]
    serialized = np.array([example(x=e["x"]) for e in examples], dtype=object)
    regress = post(
        served,
        "/v1/models/half_plus_two:regress",
        {"signature_name": "regress_x_to_y", "examples": examples},
    )
    want = served.direct("half_plus_two", "regress_x_to_y", inputs=serialized)
    assert regress == {"results": want["outputs"][:, 0].tolist()}
    classify = post(
        served,
        "/v1/models/half_plus_two:classify",
        {"signature_name": "classify_x_to_y", "examples": examples},
    )
    want = served.direct("half_plus_two", "classify_x_to_y", inputs=serialized)
    labels = [[label.decode() for label in row] for row in want["classes"]]
    assert classify == {
        "results": [
            [[label, score] for label, score in zip(ls, vs, strict=True)]
            for ls, vs in zip(labels, want["scores"].tolist(), strict=True)
        ]
    }


def test_estimator_export_every_method(served: Served) -> None:
    examples = [{"age": 30, "height": 1.8}, {"age": 50, "height": 1.6, "city": "lyon"}]
    context = {"city": "paris"}
    serialized = np.array(
        [example(age=30, height=1.8, city="paris"), example(age=50, height=1.6, city="lyon")],
        dtype=object,
    )
    classify = post(
        served, "/v1/models/estimator:classify", {"context": context, "examples": examples}
    )
    want = served.direct("estimator", inputs=serialized)
    assert [[label for label, _ in row] for row in classify["results"]] == [
        [label.decode() for label in row] for row in want["classes"]
    ]
    scores = [[score for _, score in row] for row in classify["results"]]
    np.testing.assert_allclose(scores, want["scores"], rtol=1e-6)

    regress = post(
        served,
        "/v1/models/estimator/versions/1:regress",
        {"signature_name": "regression", "context": context, "examples": examples},
    )
    want = served.direct("estimator", "regression", inputs=serialized)
    np.testing.assert_allclose(regress["results"], want["outputs"], rtol=1e-6)

    # Predict on serialized examples sent as {"b64": ...}, row and columnar.
    encoded = [{"b64": base64.b64encode(item).decode()} for item in serialized]
    want = served.direct("estimator", "predict", examples=serialized)
    rows = post(
        served,
        "/v1/models/estimator:predict",
        {"signature_name": "predict", "instances": encoded},
    )["predictions"]
    np.testing.assert_allclose([row["scores"] for row in rows], want["scores"], rtol=1e-6)
    np.testing.assert_allclose([row["value"] for row in rows], want["value"], rtol=1e-6)
    columns = post(
        served,
        "/v1/models/estimator:predict",
        {"signature_name": "predict", "inputs": {"examples": encoded}},
    )["outputs"]
    np.testing.assert_allclose(columns["scores"], want["scores"], rtol=1e-6)
    np.testing.assert_allclose(columns["value"], want["value"], rtol=1e-6)


def test_assets_and_reference_variables(served: Served) -> None:
    words = ["good", "zzz", "fine", "bad"]
    answer = post(served, "/v1/models/assets:predict", {"instances": words})
    want = served.direct("assets", words=np.array(words, dtype=object))
    assert answer == {"predictions": want["ids"].tolist()}

    x = [[1.0, 2.0], [0.0, 0.0], [-1.5, 4.0]]
    answer = post(served, "/v1/models/refvars:predict", {"instances": x})
    want = served.direct("refvars", x=np.array(x, np.float32))  # in a TF1 session
    assert answer == {"predictions": want["y"].tolist()}
    columns = post(served, "/v1/models/refvars/versions/1:predict", {"inputs": {"x": x}})
    assert columns == {"outputs": want["y"].tolist()}


def test_status_and_metadata_of_tf1_exports(served: Served) -> None:
    for model in ("half_plus_two", "estimator", "assets", "refvars"):
        status = httpx.get(f"{served.url}/v1/models/{model}", timeout=10).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE", status
    metadata = httpx.get(f"{served.url}/v1/models/half_plus_two/metadata", timeout=10).json()
    assert metadata["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert {name: s["method_name"] for name, s in signatures.items()} == {
        "serving_default": "tensorflow/serving/predict",
        "classify_x_to_y": "tensorflow/serving/classify",
        "regress_x_to_y": "tensorflow/serving/regress",
    }
    assert signatures["serving_default"]["inputs"]["x"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
            "unknown_rank": False,
        },
        "name": "x:0",
    }
    refvars = httpx.get(f"{served.url}/v1/models/refvars/metadata", timeout=10).json()
    assert set(refvars["metadata"]["signature_def"]["signature_def"]) == {
        "serving_default",
        "count",
    }


# ---- batching --------------------------------------------------------------------------------


def test_a_burst_of_single_requests_goes_to_the_model_as_one_batch(served: Served) -> None:
    """One call of ``simple`` is held in the model; a burst of one-instance requests, half
    through OIP (binary, as tritonclient encodes it) and half through TF Serving's JSON, queues
    behind it. Let go, the next call takes the whole burst: ``model_batch_size`` records a
    batch of that size, and each request still gets its own answer."""
    burst = 12
    rows = [np.full((1, 16), i, np.int32) for i in range(burst)]
    ones = np.ones((1, 16), np.int32)

    def oip(i: int, client: httpx.Client) -> np.ndarray:
        body, json_size = triton.InferenceServerClient.generate_request_body(
            simple_inputs(rows[i], ones, (True, True)),
            outputs=[triton.InferRequestedOutput("OUTPUT0", binary_data=True)],
        )
        response = client.post(
            "/v2/models/simple/infer",
            content=body,
            headers={"Inference-Header-Content-Length": str(json_size)},
        )
        assert response.status_code == 200, response.text
        length = int(response.headers["inference-header-content-length"])
        result = triton.InferResult.from_response_body(response.content, header_length=length)
        return result.as_numpy("OUTPUT0")

    def tf_serving(i: int, client: httpx.Client) -> np.ndarray:
        instance = {"INPUT0": rows[i][0].tolist(), "INPUT1": ones[0].tolist()}
        response = client.post("/v1/models/simple:predict", json={"instances": [instance]})
        assert response.status_code == 200, response.text
        return np.array([response.json()["predictions"][0]["OUTPUT0"]], np.int32)

    def batches_over_one() -> float:
        count = served.metric("model_batch_size_count", model="simple")
        return count - served.metric("model_batch_size_bucket", model="simple", le="1.0")

    calls_before = len(served.model_calls("simple"))
    batches_before = served.metric("model_batch_size_count", model="simple")
    instances_before = served.metric("model_batch_size_sum", model="simple")
    over_one_before = batches_over_one()
    with (
        httpx.Client(base_url=served.url, timeout=90) as client,
        ThreadPoolExecutor(burst + 1) as pool,
    ):
        served.fault("block:simple")
        try:
            held = pool.submit(oip, 0, client)
            wait_until(
                lambda: served.model_calls("simple")[calls_before:] == [1],
                "one call of simple held",
            )
            futures = [pool.submit(oip if i % 2 else tf_serving, i, client) for i in range(burst)]
            wait_until(
                lambda: served.metric("model_queue_depth", model="simple") == burst,
                lambda: (
                    f"{burst} instances queued for simple: "
                    f"{served.metric('model_queue_depth', model='simple'):g} queued"
                ),
            )
        finally:
            served.fault("")  # lets the held call go (and the burst, on a failure)
        answers = [future.result() for future in futures]
        held.result()
    assert served.model_calls("simple")[calls_before:] == [1, burst]
    assert served.metric("model_batch_size_count", model="simple") - batches_before == 2
    assert served.metric("model_batch_size_sum", model="simple") - instances_before == 1 + burst
    assert batches_over_one() - over_one_before == 1
    for i, answer in enumerate(answers):
        want = served.direct("simple", INPUT0=rows[i], INPUT1=ones)["OUTPUT0"]
        np.testing.assert_array_equal(answer, want)
