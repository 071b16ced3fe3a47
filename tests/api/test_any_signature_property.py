"""Property: for any signature, every protocol answers what TensorFlow itself answers.

The signatures are drawn once (a seeded generator, so the same every run): for every dtype of
the table (:data:`app.signatures.DTYPES`), an identity-like signature (``x`` -> ``y``) and an
arithmetic one of two inputs (``a``, ``b`` -> ``combined`` = a + b, a XOR b for booleans, the
strings joined; and ``first`` = a), each of rank 1 to 3 with free and fixed dimensions, the
first free most of the time (a batch dimension) and fixed otherwise (called unbatched). They
are ``tf.function``s of one ``tf.Module``, saved once for this module and served in process.

Hypothesis then draws a signature and inputs valid for it (values over each dtype's whole
range; strings as text or any bytes) and checks that the answers through TF Serving's API (the
columnar format, and the row format where the signature has a batch dimension, with the
trailing dimension of size 1 left out where TF Serving allows it) and the Open Inference
Protocol (JSON, and binary as ``tritonclient`` encodes and decodes it) equal a direct call of
the signature on the loaded SavedModel, value for value.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf
import tritonclient.http as triton
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.main import create_app
from app.signatures import DTYPES, DType

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SEED = 35  # 10 of the 28 signatures unbatched, 9 with a free inner dimension
EXAMPLES = 300  # drawn (signature, inputs) pairs; each is sent four ways
MODEL = "anysig"


@dataclass(frozen=True)
class Drawn:
    """One signature of the module: its name, inputs' names, dtype and shape."""

    name: str
    dtype: DType
    inputs: tuple[str, ...]
    shape: tuple[int | None, ...]

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("y",) if self.inputs == ("x",) else ("combined", "first")

    @property
    def batched(self) -> bool:
        return self.shape[0] is None


def draw_signatures() -> list[Drawn]:
    rng = np.random.default_rng(SEED)
    drawn = []
    for dtype in DTYPES.values():
        for kind, inputs in (("identity", ("x",)), ("pair", ("a", "b"))):
            rank = int(rng.integers(1, 4))
            shape = tuple(
                None
                if (i == 0 and rng.random() < 0.75) or (i > 0 and rng.random() < 0.3)
                else int(rng.integers(1, 4))
                for i in range(rank)
            )
            drawn.append(Drawn(f"{kind}_{dtype.name}", dtype, inputs, shape))
    return drawn


SIGNATURES = draw_signatures()


def _function(signature: Drawn) -> Any:
    dtype = tf.as_dtype(signature.dtype.name)
    specs = [tf.TensorSpec(signature.shape, dtype, name=key) for key in signature.inputs]
    if signature.inputs == ("x",):
        return tf.function(lambda x: {"y": tf.identity(x)}, input_signature=specs)

    def combine(a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        if dtype == tf.bool:
            combined = tf.math.logical_xor(a, b)
        elif dtype == tf.string:
            combined = tf.strings.join([a, b])
        else:
            combined = a + b  # integers wrap around, in TensorFlow and here alike
        return {"combined": combined, "first": tf.identity(a)}

    return tf.function(combine, input_signature=specs)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("anysig") / "models"
    module = tf.Module()
    signatures = {}
    for signature in SIGNATURES:
        function = _function(signature)
        setattr(module, signature.name, function)
        signatures[signature.name] = function.get_concrete_function()
    tf.saved_model.save(module, str(root / MODEL / "1"), signatures=signatures)
    return root


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    settings_ = Settings(model_dir=model_dir, model_poll_s=0, max_batch_size=8)
    with TestClient(create_app(settings_)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def loaded(model_dir: Path) -> Any:
    return tf.saved_model.load(str(model_dir / MODEL / "1"))


# ---- values valid for a signature ----------------------------------------------------------


def elements(dtype: DType, text_only: bool) -> st.SearchStrategy:
    """Any value of the dtype, as NumPy will hold it."""
    if dtype.name == "bool":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype.numpy)
        return st.integers(int(info.min), int(info.max))
    if dtype.name == "string":
        texts = st.text(max_size=8).map(str.encode)
        return texts if text_only else texts | st.binary(max_size=8)
    if dtype.name == "bfloat16":
        finite = st.floats(width=32, allow_nan=False, allow_infinity=False)
        rounded = finite.map(lambda v: float(np.float32(v).astype(ml_dtypes.bfloat16)))
        return rounded.filter(np.isfinite)
    width = {"float16": 16, "float32": 32, "float64": 64}[dtype.name]
    return st.floats(width=width, allow_nan=False, allow_infinity=False)


@dataclass(frozen=True)
class Case:
    signature: Drawn
    inputs: dict[str, np.ndarray]
    drop_trailing_one: bool  # TF Serving's leniency: the input sent without its last axis


@st.composite
def cases(draw: st.DrawFn) -> Case:
    signature = draw(st.sampled_from(SIGNATURES))
    shape = tuple(draw(st.integers(1, 3)) if d is None else d for d in signature.shape)
    text_only = draw(st.booleans())  # else strings may be any bytes, which OIP's JSON cannot carry
    count = int(np.prod(shape))
    inputs = {}
    for key in signature.inputs:
        values = draw(
            st.lists(elements(signature.dtype, text_only), min_size=count, max_size=count)
        )
        if signature.dtype.name == "string":
            array = np.empty(count, dtype=object)
            array[:] = values
        elif signature.dtype.kind == "f":
            array = np.array(values, dtype=np.float64).astype(signature.dtype.numpy)
        else:
            array = np.array(values, dtype=signature.dtype.numpy)
        inputs[key] = array.reshape(shape)
    lenient = len(shape) >= 1 and signature.shape[-1] == 1 and draw(st.booleans())
    return Case(signature, inputs, lenient)


# ---- what the service answers, as arrays ---------------------------------------------------


def from_json(value: Any, dtype: DType) -> np.ndarray:
    """A JSON answer (TF Serving's, or OIP's data) as an array of the dtype."""
    if dtype.name == "string":
        shape = np.shape(np.array(value, dtype=object))
        items = [
            base64.b64decode(item["b64"]) if isinstance(item, dict) else item.encode()
            for item in _leaves(value)
        ]
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    if dtype.kind == "f":
        return np.array(value, dtype=np.float64).astype(dtype.numpy)
    return np.array(value, dtype=dtype.numpy)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def as_json(array: np.ndarray, dtype: DType, base64_bytes: bool) -> Any:
    """An input array as TF Serving's JSON (strings as text, or ``{"b64"}`` when asked)."""
    if dtype.name == "string":

        def encode(item: Any) -> Any:
            if isinstance(item, list):
                return [encode(i) for i in item]
            if base64_bytes:
                return {"b64": base64.b64encode(item).decode()}
            return item.decode()

        return encode(array.tolist())
    if dtype.kind == "f":
        return array.astype(np.float64).tolist()
    return array.tolist()


def assert_same(got: np.ndarray, want: np.ndarray, where: str) -> None:
    assert got.shape == want.shape, f"{where}: shape {got.shape}, TensorFlow's {want.shape}"
    if want.dtype == object:
        assert got.tolist() == want.tolist(), where
    else:
        np.testing.assert_array_equal(got.astype(want.dtype), want, err_msg=where)


def tf_serving_answers(client: TestClient, case: Case) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The outputs through TF Serving's columnar format, and its row format where the
    signature has a batch dimension."""
    signature = case.signature
    dtype = signature.dtype
    binary = dtype.name == "string" and any(
        not _is_text(item) for array in case.inputs.values() for item in array.ravel()
    )
    inputs = dict(case.inputs)
    if case.drop_trailing_one:
        inputs = {key: array[..., 0] for key, array in inputs.items()}
    columns = {key: as_json(array, dtype, binary) for key, array in inputs.items()}
    answers = []
    body: dict[str, Any] = {"signature_name": signature.name, "inputs": columns}
    if len(columns) == 1 and not binary:
        body["inputs"] = next(iter(columns.values()))  # a bare value for a single input
    response = client.post(f"/v1/models/{MODEL}:predict", json=body)
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    if signature.inputs == ("x",):  # one output: the tensor itself
        outputs = {"y": outputs}
    answers.append(("TF Serving columnar", {k: from_json(v, dtype) for k, v in outputs.items()}))
    if signature.batched:
        size = len(next(iter(inputs.values())))
        rows = [{key: column[i] for key, column in columns.items()} for i in range(size)]
        instances: list[Any] = rows if len(columns) > 1 else [next(iter(r.values())) for r in rows]
        response = client.post(
            f"/v1/models/{MODEL}:predict",
            json={"signature_name": signature.name, "instances": instances},
        )
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        if signature.inputs == ("x",):
            got = {"y": from_json(predictions, dtype)}
        else:
            got = {k: from_json([row[k] for row in predictions], dtype) for k in predictions[0]}
        answers.append(("TF Serving row", got))
    return answers


def _is_text(item: bytes) -> bool:
    try:
        item.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def oip_json_answer(client: TestClient, case: Case) -> dict[str, np.ndarray]:
    signature = case.signature
    tensors = [
        {
            "name": key,
            "datatype": signature.dtype.oip,
            "shape": list(array.shape),
            "data": as_json(array.ravel(), signature.dtype, False),
        }
        for key, array in case.inputs.items()
    ]
    body = {"parameters": {"signature_name": signature.name}, "inputs": tensors}
    response = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    return {
        output["name"]: from_json(output["data"], signature.dtype).reshape(output["shape"])
        for output in response.json()["outputs"]
    }


def oip_binary_answer(client: TestClient, case: Case) -> dict[str, np.ndarray]:
    """As ``tritonclient`` sends and reads it: binary tensors both ways."""
    signature = case.signature
    inputs = []
    for key, array in case.inputs.items():
        tensor = triton.InferInput(key, list(array.shape), signature.dtype.oip)
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    body, json_size = triton.InferenceServerClient.generate_request_body(
        inputs,
        outputs=[triton.InferRequestedOutput(name, binary_data=True) for name in signature.outputs],
        parameters={"signature_name": signature.name},
    )
    response = client.post(
        f"/v2/models/{MODEL}/infer",
        content=body,
        headers={"Inference-Header-Content-Length": str(json_size)},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    result = triton.InferResult.from_response_body(response.content, header_length=length)
    return {
        output["name"]: result.as_numpy(output["name"])
        for output in result.get_response()["outputs"]
    }


# ---- the property ------------------------------------------------------------------------------


def test_the_signatures_are_drawn_across_dtypes_ranks_and_batching() -> None:
    """What the property ranges over: every dtype, ranks 1 to 3, batched or not, free and
    fixed dimensions besides the batch's."""
    assert {s.dtype.name for s in SIGNATURES} == set(DTYPES)
    assert {len(s.shape) for s in SIGNATURES} == {1, 2, 3}
    assert {s.batched for s in SIGNATURES} == {True, False}
    inner = [d for s in SIGNATURES for d in s.shape[1:]]
    assert None in inner
    assert any(d is not None for d in inner)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_every_protocol_answers_what_tensorflow_does(
    case: Case, client: TestClient, loaded: Any
) -> None:
    signature = case.signature
    results = loaded.signatures[signature.name](
        **{key: tf.constant(array) for key, array in case.inputs.items()}
    )
    want = {key: value.numpy() for key, value in results.items()}
    tf_serving_want = want
    if case.drop_trailing_one:  # sent without their trailing 1, the outputs lose theirs too
        tf_serving_want = {
            key: value[..., 0] if value.ndim >= 2 and value.shape[-1] == 1 else value
            for key, value in want.items()
        }
    checks = [(where, got, tf_serving_want) for where, got in tf_serving_answers(client, case)]
    binary_strings = signature.dtype.name == "string" and not all(
        _is_text(item) for array in case.inputs.values() for item in array.ravel()
    )
    if not binary_strings:  # OIP's JSON carries strings as text only
        checks.append(("OIP JSON", oip_json_answer(client, case), want))
    checks.append(("OIP binary", oip_binary_answer(client, case), want))
    for where, got, expected in checks:
        assert set(got) == set(expected), where
        for key, value in expected.items():
            assert_same(got[key], value, f"{where}, signature {signature.name}, output {key}")
