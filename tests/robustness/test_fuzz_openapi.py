"""Property-based fuzzing against a real uvicorn server.

Every operation in ``/openapi.json`` gets generated valid and invalid requests (schemathesis'
positive and negative modes), the predict endpoints get Hypothesis-made JSON bodies shaped
like theirs with anything inside, and every signature of the models users bring
(``zoo_server``) gets bodies near what it takes, through every protocol and method: each must be answered 2xx or 4xx, never 5xx, and the server
must still answer ``/healthz`` afterwards. Run with ``-s`` to see how many requests were sent.

The schema is loaded at run time (the server's port is only known then) and each operation's
strategy is driven by Hypothesis directly: ``schemathesis.pytest.from_fixture`` does not work
with pytest 9 (it reads ``Function._nodeid``, which pytest 9 no longer has).
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from app.signatures import DTYPES, DType
from tests.robustness.helpers import Server

MAX_EXAMPLES = 40  # per operation and mode
NAMED_EXAMPLES = 20  # per served model, for operations on /v1/models/{name}


def test_no_generated_request_gets_a_server_error(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    for operation in operations:
        runs: list[tuple[GenerationMode, dict[str, str] | None, int]] = [
            (GenerationMode.POSITIVE, None, MAX_EXAMPLES),
            (GenerationMode.NEGATIVE, None, MAX_EXAMPLES),
        ]
        if "{name}" in operation.path:
            # Random names are all 404s: also fuzz everything else on the served models.
            version = {"version": "1"} if "{version}" in operation.path else {}
            runs += [
                (GenerationMode.POSITIVE, {"name": model, **version}, NAMED_EXAMPLES)
                for model in ("sentiment", "digits")
            ]
        for mode, path_parameters, examples in runs:
            try:
                _fuzz(operation, mode, path_parameters, examples, server.url, statuses, failures)
            except Unsatisfiable:
                # Nothing to make invalid: an operation without parameters or body.
                assert mode is GenerationMode.NEGATIVE, f"no valid request for {operation.label}"

    total = sum(statuses.values())
    print(
        f"\nfuzzing: {total} requests to {len(operations)} operations (positive and negative); "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n".join(failures[:20])
    # Whatever the fuzzer sent, the server still serves.
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
    assert total >= len(operations) * 2


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    path_parameters: dict[str, str] | None,
    examples: int,
    url: str,
    statuses: Counter[int],
    failures: list[str],
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=url, timeout=30)
        statuses[response.status_code] += 1
        if not 200 <= response.status_code < 500:
            failures.append(
                f"{case.method} {case.formatted_path} ({mode.value}) -> "
                f"{response.status_code}: {response.text[:300]}"
            )

    fuzz()


# Any JSON, and JSON shaped like each endpoint's body with anything inside.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=40,
)
TEXTS = st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=5)
PIXELS = st.lists(
    st.lists(st.one_of(st.integers(-5, 300), st.floats(allow_nan=False)), min_size=27, max_size=29),
    min_size=27,
    max_size=29,
)
GOOD_PIXELS = st.lists(
    st.lists(st.integers(0, 255) | st.floats(0, 255), min_size=28, max_size=28),
    min_size=28,
    max_size=28,
)
BODIES = {
    "/v1/sentiment/predict": JSON
    | st.fixed_dictionaries({"reviews": JSON})
    | st.fixed_dictionaries({"reviews": TEXTS}),
    "/v1/models/sentiment:predict": JSON
    | st.fixed_dictionaries({"instances": JSON | TEXTS})
    | st.fixed_dictionaries(
        {"inputs": JSON | TEXTS, "signature_name": st.sampled_from(["", "serving_default"])}
    ),
    "/v1/models/digits/versions/2:predict": JSON
    | st.fixed_dictionaries(
        {"instances": st.lists(PIXELS | GOOD_PIXELS | JSON, min_size=1, max_size=3)}
    )
    | st.fixed_dictionaries(
        {"inputs": st.dictionaries(st.sampled_from(["b64", "x"]), JSON, max_size=1)}
    ),
}
SHAPES = st.lists(st.integers(-2, 2**40) | st.just(28), min_size=0, max_size=5) | JSON
DATATYPES = st.sampled_from(["FP32", "UINT8", "INT64", "BOOL", "BYTES", "FP16", "STRING"]) | JSON


def oip_tensor(name: st.SearchStrategy, data: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries(
        {"name": name, "datatype": DATATYPES, "shape": SHAPES, "data": data},
        optional={"parameters": st.dictionaries(st.sampled_from(["binary_data_size", "x"]), JSON)},
    )


VALID_REVIEWS = TEXTS.map(
    lambda texts: {
        "inputs": [{"name": "reviews", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]
    }
)
VALID_PIXELS = GOOD_PIXELS.map(
    lambda image: {
        "inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28], "data": image}]
    }
)
BODIES["/v2/models/sentiment/infer"] = (
    JSON
    | VALID_REVIEWS
    | st.fixed_dictionaries(
        {
            "inputs": st.lists(
                oip_tensor(st.sampled_from(["reviews", "x"]), TEXTS | JSON), max_size=2
            )
        },
        optional={"id": JSON, "parameters": JSON, "outputs": JSON},
    )
)
BODIES["/v2/models/digits/infer"] = (
    JSON
    | VALID_PIXELS
    | st.fixed_dictionaries(
        {
            "inputs": st.lists(
                oip_tensor(st.just("images"), PIXELS | GOOD_PIXELS | JSON), max_size=2
            )
        },
        optional={"outputs": st.lists(st.fixed_dictionaries({"name": JSON}), max_size=2)},
    )
)
BODY_EXAMPLES = 100  # per endpoint
JSON_HEADERS = {"content-type": "application/json"}


def test_structured_json_bodies_never_get_a_server_error(server: Server) -> None:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path, bodies in BODIES.items():
            _fuzz_bodies(client, path, bodies, statuses, failures)
    total = sum(statuses.values())
    print(
        f"\nbody fuzzing: {total} JSON bodies to {len(BODIES)} predict endpoints; "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n".join(failures[:20])
    assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def _fuzz_bodies(
    client: httpx.Client,
    path: str,
    bodies: st.SearchStrategy,
    statuses: Counter[int],
    failures: list[str],
) -> None:
    @given(body=bodies)
    @settings(
        max_examples=BODY_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(body: object) -> None:
        response = client.post(path, content=json.dumps(body), headers=JSON_HEADERS)
        statuses[response.status_code] += 1
        if not 200 <= response.status_code < 500:
            failures.append(
                f"{path} {json.dumps(body)[:200]} -> {response.status_code}: {response.text[:300]}"
            )

    fuzz()


# ---- any model: bodies near what each signature takes, with anything inside ---------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.integers(-3, 300)
    | st.floats()
    | st.text(max_size=6)
    | st.fixed_dictionaries({"b64": st.text(max_size=8)})
)
GOOD_SCALARS = {  # by DType.kind
    "b": st.booleans(),
    "i": st.integers(-100, 100),
    "u": st.integers(0, 200),
    "f": st.floats(width=16, allow_nan=False, allow_infinity=False),
    "S": st.text(max_size=6),
}
OIP_DATATYPES = [d.oip for d in DTYPES.values()]
ITEMSIZE = {d.oip: np.dtype(d.numpy).itemsize for d in DTYPES.values() if d.name != "string"}
ANY_MODEL_EXAMPLES = 150  # per kind of body


@dataclass(frozen=True)
class Spec:
    """One input of a signature, as the server's TF Serving metadata describes it."""

    key: str
    dtype: DType
    shape: tuple[int | None, ...]  # (None,) for an unknown rank


@dataclass(frozen=True)
class Served:
    model: str
    signature: str
    method: str
    inputs: tuple[Spec, ...]
    outputs: tuple[str, ...]


def served_signatures(url: str) -> list[Served]:
    """Every signature of every model the server serves, from its metadata API."""
    by_enum = {d.tf_enum_name: d for d in DTYPES.values()}
    found = []
    for entry in httpx.get(f"{url}/v1/models", timeout=10).json()["models"]:
        model = entry["name"]
        metadata = httpx.get(f"{url}/v1/models/{model}/metadata", timeout=10).json()
        for name, signature in metadata["metadata"]["signature_def"]["signature_def"].items():
            inputs = []
            for key, tensor in signature["inputs"].items():
                shape = tensor["tensor_shape"]
                dims: tuple[int | None, ...] = (None,)
                if not shape["unknown_rank"]:
                    dims = tuple(
                        int(d["size"]) if int(d["size"]) >= 0 else None for d in shape["dim"]
                    )
                inputs.append(Spec(key, by_enum[tensor["dtype"]], dims))
            found.append(
                Served(
                    model,
                    name,
                    signature["method_name"].rpartition("/")[2],
                    tuple(inputs),
                    tuple(signature["outputs"]),
                )
            )
    return found


def scalars(spec: Spec, clean: bool) -> st.SearchStrategy:
    """Values of the input's kind (``clean``), or those mixed with anything."""
    good = GOOD_SCALARS[spec.dtype.kind]
    return good if clean else good | SCALARS


def near(
    shape: tuple[int | None, ...], values: st.SearchStrategy, clean: bool
) -> st.SearchStrategy:
    """Nested lists of ``shape`` (a free size: 2), or (unless ``clean``) about that shape."""
    strategy = values
    for size in reversed(shape):
        n = 2 if size is None else size
        exact = st.lists(strategy, min_size=n, max_size=n)
        strategy = exact if clean else exact | st.lists(strategy, max_size=n + 1)
    return strategy


def predict_bodies(served: Served, clean: bool) -> st.SearchStrategy:
    """Row (``instances``) or columnar (``inputs``) bodies for the signature."""

    def values(spec: Spec, rows: bool) -> st.SearchStrategy:
        return near(spec.shape[1:] if rows else spec.shape, scalars(spec, clean), clean)

    instance = st.fixed_dictionaries({s.key: values(s, True) for s in served.inputs})
    columns = st.fixed_dictionaries({s.key: values(s, False) for s in served.inputs})
    if len(served.inputs) == 1:
        instance |= values(served.inputs[0], True)
        columns |= values(served.inputs[0], False)
    names = ["", served.signature] if served.signature == "serving_default" else [served.signature]
    name = st.sampled_from(names)
    rows = st.fixed_dictionaries(
        {"signature_name": name, "instances": st.lists(instance, min_size=int(clean), max_size=3)}
    )
    body = rows | st.fixed_dictionaries({"signature_name": name, "inputs": columns})
    if clean:
        return body
    # Both formats at once, or neither.
    return body | st.fixed_dictionaries(
        {"signature_name": name}, optional={"instances": st.lists(instance), "inputs": columns}
    )


def examples_bodies(served: Served) -> st.SearchStrategy:
    """Classify and regress bodies: examples with the features the zoo's parsers need
    (``half_plus_two``: ``x``, a float; the Estimator-style export: ``age``, an int64, and
    ``height``, a float; ``city``, bytes, optional), or those mixed with others of any kind;
    ``context`` too."""
    if served.model == "half_plus_two":
        good = st.fixed_dictionaries({"x": st.floats(-10, 10)})
    else:
        city = st.text(max_size=6) | st.fixed_dictionaries({"b64": st.just("cGFyaXM=")})
        good = st.fixed_dictionaries(
            {"age": st.integers(0, 100), "height": st.floats(0, 3)}, optional={"city": city}
        )
    mixed = st.lists(st.integers(-5, 5) | st.floats(-5, 5) | st.text(max_size=3), max_size=3)
    value = SCALARS | mixed | st.lists(SCALARS, max_size=3)
    other = st.dictionaries(st.sampled_from(["age", "height", "city", "x", "y"]), value, max_size=3)
    features = good | other | st.tuples(good, other).map(lambda pair: {**pair[0], **pair[1]})
    examples = st.lists(good, min_size=1, max_size=3) | st.lists(features, max_size=3) | JSON
    return st.fixed_dictionaries(
        {"signature_name": st.just(served.signature), "examples": examples},
        optional={"context": st.just({}) | features | JSON},
    )


def verbs(served: Served) -> st.SearchStrategy:
    """The verb a signature answers (a predict signature on tf.Examples: both), mostly."""
    own = ["classify", "regress"] if served.method == "predict" else [served.method]
    return st.sampled_from(own) | st.sampled_from(["classify", "regress"])


def oip_tensors(served: Served, binary: bool, clean: bool) -> st.SearchStrategy:
    """The signature's inputs, each of its datatype and shape (``clean``), or of another
    datatype and a shape near its own; JSON data of as many elements, or bytes of the size
    the shape takes (or, unless ``clean``, any)."""

    def tensor(spec: Spec) -> st.SearchStrategy:
        if clean:
            sizes = [st.just(1 if d is None else d) for d in spec.shape]
            datatypes = st.just(spec.dtype.oip)
        else:
            sizes = [
                st.integers(0, 3) if d is None else st.sampled_from([d, d + 1]) for d in spec.shape
            ]
            datatypes = st.just(spec.dtype.oip) | st.sampled_from(OIP_DATATYPES)

        def content(drawn: tuple[list[int], str]) -> st.SearchStrategy:
            shape, datatype = drawn
            count = math.prod(shape)
            if not binary:
                data = st.lists(scalars(spec, clean), min_size=count, max_size=count)
                return data.map(
                    lambda d: {"name": spec.key, "datatype": datatype, "shape": shape, "data": d}
                )
            if datatype == "BYTES":  # each element: its length, then its bytes
                element = st.binary(max_size=6).map(lambda b: struct.pack("<I", len(b)) + b)
                exact = st.lists(element, min_size=count, max_size=count).map(b"".join)
            elif datatype == "BOOL":
                exact = st.lists(
                    st.sampled_from([b"\0", b"\1"]), min_size=count, max_size=count
                ).map(b"".join)
            else:
                size = count * ITEMSIZE[datatype]
                exact = st.binary(min_size=size, max_size=size)
            blob = exact if clean else exact | st.binary(max_size=64)
            return blob.map(
                lambda b: {"name": spec.key, "datatype": datatype, "shape": shape, "blob": b}
            )

        return st.tuples(st.tuples(*sizes).map(list), datatypes).flatmap(content)

    return st.tuples(*(tensor(spec) for spec in served.inputs)).map(list)


def oip_request(
    served: Served, tensors: list[dict[str, Any]], outputs: list[str]
) -> tuple[bytes, dict[str, str]]:
    """An infer body: the JSON, then the binary tensors' bytes (if any), as tritonclient sends
    them; the outputs asked for alternately binary and JSON."""
    blobs = []
    for tensor in tensors:
        if "blob" in tensor:
            blob = tensor.pop("blob")
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
    head: dict[str, Any] = {"inputs": tensors, "parameters": {"signature_name": served.signature}}
    if outputs:
        head["outputs"] = [
            {"name": name, "parameters": {"binary_data": i % 2 == 0}}
            for i, name in enumerate(outputs)
        ]
    encoded = json.dumps(head).encode()
    if not blobs:
        return encoded, JSON_HEADERS
    return encoded + b"".join(blobs), {"Inference-Header-Content-Length": str(len(encoded))}


def test_bodies_near_any_signature_never_get_a_server_error(zoo_server: Server) -> None:
    """Every signature of the zoo's models (read from the server's metadata), through TF
    Serving's predict (row and columnar), classify and regress, and OIP's infer (JSON and
    binary): bodies of the right names, shapes and dtypes, or near them, with anything inside."""
    signatures = served_signatures(zoo_server.url)
    assert len(signatures) >= 20, [(s.model, s.signature) for s in signatures]
    chosen = st.sampled_from(signatures)
    # Those that take serialized tf.Examples: one string input, on a model that parses them.
    on_examples = [
        s
        for s in signatures
        if s.model in ("estimator", "half_plus_two") and s.inputs[0].dtype.name == "string"
    ]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    fuzzing = settings(
        max_examples=ANY_MODEL_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    with httpx.Client(base_url=zoo_server.url, timeout=30) as client:

        def check(path: str, content: bytes, headers: dict[str, str]) -> None:
            response = client.post(path, content=content, headers=headers)
            statuses[response.status_code] += 1
            if not 200 <= response.status_code < 500:
                failures.append(
                    f"{path} {content[:300]!r} -> {response.status_code}: {response.text[:300]}"
                )

        @fuzzing
        @given(
            chosen.flatmap(
                lambda s: st.tuples(
                    st.just(s), st.booleans().flatmap(lambda c: predict_bodies(s, c))
                )
            )
        )
        def predict(drawn: tuple[Served, Any]) -> None:
            served, body = drawn
            check(f"/v1/models/{served.model}:predict", json.dumps(body).encode(), JSON_HEADERS)

        @fuzzing
        @given(
            st.sampled_from(on_examples).flatmap(
                lambda s: st.tuples(st.just(s), verbs(s), examples_bodies(s))
            )
        )
        def examples(drawn: tuple[Served, str, Any]) -> None:
            served, verb, body = drawn
            check(f"/v1/models/{served.model}:{verb}", json.dumps(body).encode(), JSON_HEADERS)

        @fuzzing
        @given(
            chosen.flatmap(
                lambda s: st.tuples(
                    st.just(s),
                    st.tuples(st.booleans(), st.booleans()).flatmap(lambda f: oip_tensors(s, *f)),
                    st.lists(st.sampled_from(s.outputs), max_size=2, unique=True),
                )
            )
        )
        def infer(drawn: tuple[Served, list[dict[str, Any]], list[str]]) -> None:
            served, tensors, outputs = drawn
            content, headers = oip_request(served, tensors, outputs)
            check(f"/v2/models/{served.model}/infer", content, headers)

        predict()
        examples()
        infer()
    total = sum(statuses.values())
    print(
        f"\nany-model fuzzing: {total} bodies to {len(signatures)} signatures; "
        f"statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n".join(failures[:20])
    assert statuses[200] >= total // 5, statuses  # near enough to be served, often
    assert httpx.get(f"{zoo_server.url}/healthz", timeout=5).status_code == 200
