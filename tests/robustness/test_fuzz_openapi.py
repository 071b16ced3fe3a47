"""Property-based fuzzing against a real uvicorn server.

Every operation in ``/openapi.json`` gets generated valid and invalid requests (schemathesis'
positive and negative modes), and the predict endpoints get Hypothesis-made JSON bodies shaped
like theirs with anything inside: each must be answered 2xx or 4xx, never 5xx, and the server
must still answer ``/healthz`` afterwards. Run with ``-s`` to see how many requests were sent.

The schema is loaded at run time (the server's port is only known then) and each operation's
strategy is driven by Hypothesis directly: ``schemathesis.pytest.from_fixture`` does not work
with pytest 9 (it reads ``Function._nodeid``, which pytest 9 no longer has).
"""

from __future__ import annotations

import json
from collections import Counter

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

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
