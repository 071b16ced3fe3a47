"""Every example in ``/openapi.json``, checked against its schema and against a real server.

1. Every example (a schema's ``examples``, a media type's ``example`` or ``examples``) is valid
   for the schema it stands beside (jsonschema, Draft 2020-12, as OpenAPI 3.1 has it).
2. Every request example is sent to the server, the ``{name}`` in its path being the example's
   ``x-model``, and must be answered 200: that is what the docs promise for it.
3. Each operation's error examples are its own and real: the requests in :data:`TRIGGERS`
   provoke the errors each route documents, and the answer must be the documented example,
   word for word; on a server with ``API_KEYS`` every operation called without a key must
   answer its own documented 401. The statuses checked that way are :data:`PROVOKED`; an
   example of them that nothing provokes fails the test, unless :data:`NOT_PROVOKED` says why.
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from PIL import Image

from tests.support.savedmodels import tf1_half_plus_two
from tests.support.server import ROOT, start_server, stop_server

JSON = {"content-type": "application/json"}
KEY = "openapi-examples-key"
PROVOKED = {400, 401, 404, 413, 415, 422}
# Documented, checked against the schema, but provoked by no request here (and why).
NOT_PROVOKED: dict[tuple[str, str, int], str] = {}
# Provoked on a server of a user's model alone (test_native_routes_of_missing_models_are_404s).
WITHOUT_SHOWCASE = {("post", "/v1/sentiment/predict", 404), ("post", "/v1/digits/predict", 404)}
OVER_THE_LIMIT = b"x" * 11_000_001  # MAX_REQUEST_BYTES (10 MiB) + 515,241 bytes: the examples'


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


# (method, documented path, the path requested, httpx arguments, the status it provokes)
TRIGGERS: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("post", "/v1/sentiment/predict", "", {"content": b'{"reviews": ["unclosed', "headers": JSON}, 400),
    ("post", "/v1/sentiment/predict", "", {"content": OVER_THE_LIMIT, "headers": JSON}, 413),
    ("post", "/v1/sentiment/predict", "", {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415),
    ("post", "/v1/sentiment/predict", "", {"json": {"reviews": [" "]}}, 422),
    ("post", "/v1/digits/predict", "", {"files": {"file": ("broken.png", png(28, 28)[:40])}}, 400),
    ("post", "/v1/digits/predict", "", {"files": {"file": ("wide.png", png(5000, 10))}}, 413),
    ("post", "/v1/digits/predict", "", {"json": {}}, 415),
    ("post", "/v1/digits/predict", "", {"files": {"note": (None, "hello")}}, 422),
    ("post", "/v1/models/{name}:predict", "/v1/models/sentiment:predict", {"json": {"instances": [1]}}, 400),
    ("post", "/v1/models/{name}:predict", "/v1/models/digtis:predict", {"json": {"instances": [1]}}, 404),
    ("post", "/v1/models/{name}:predict", "/v1/models/sentiment:predict", {"content": OVER_THE_LIMIT}, 413),
    ("post", "/v1/models/{name}/versions/{version}:predict", "/v1/models/sentiment/versions/2:predict", {"json": {"instances": [1]}}, 400),
    ("post", "/v1/models/{name}/versions/{version}:predict", "/v1/models/sentiment/versions/3:predict", {"json": {"instances": ["x"]}}, 404),
    ("post", "/v1/models/{name}/versions/{version}:predict", "/v1/models/sentiment/versions/2:predict", {"content": OVER_THE_LIMIT}, 413),
    ("post", "/v1/models/{name}/labels/{label}:predict", "/v1/models/sentiment/labels/stable:predict", {"json": {"instances": [1]}}, 400),
    ("post", "/v1/models/{name}/labels/{label}:predict", "/v1/models/sentiment/labels/canary:predict", {"json": {"instances": ["x"]}}, 404),
    ("post", "/v1/models/{name}/labels/{label}:predict", "/v1/models/sentiment/labels/stable:predict", {"content": OVER_THE_LIMIT}, 413),
    ("post", "/v1/models/{name}:classify", "/v1/models/sentiment:classify", {"json": {"examples": [{"x": 1}]}}, 400),
    ("post", "/v1/models/{name}:classify", "/v1/models/digtis:classify", {"json": {"examples": [{"x": 1}]}}, 404),
    ("post", "/v1/models/{name}:classify", "/v1/models/sentiment:classify", {"content": OVER_THE_LIMIT}, 413),
    ("post", "/v1/models/{name}/versions/{version}:classify", "/v1/models/sentiment/versions/2:classify", {"json": {"examples": [{"x": 1}]}}, 400),
    ("post", "/v1/models/{name}/versions/{version}:classify", "/v1/models/sentiment/versions/3:classify", {"json": {"examples": [{"x": 1}]}}, 404),
    ("post", "/v1/models/{name}/versions/{version}:classify", "/v1/models/sentiment/versions/2:classify", {"content": OVER_THE_LIMIT}, 413),
    ("post", "/v1/models/{name}/labels/{label}:classify", "/v1/models/sentiment/labels/stable:classify", {"json": {"examples": [{"x": 1}]}}, 400),
    ("post", "/v1/models/{name}/labels/{label}:classify", "/v1/models/sentiment/labels/canary:classify", {"json": {"examples": [{"x": 1}]}}, 404),
    ("post", "/v1/models/{name}/labels/{label}:classify", "/v1/models/sentiment/labels/stable:classify", {"content": OVER_THE_LIMIT}, 413),
    ("post", "/v1/models/{name}:regress", "/v1/models/sentiment:regress", {"json": {"examples": [{"x": 1}]}}, 400),
    ("post", "/v1/models/{name}:regress", "/v1/models/digtis:regress", {"json": {"examples": [{"x": 1}]}}, 404),
    ("post", "/v1/models/{name}:regress", "/v1/models/sentiment:regress", {"content": OVER_THE_LIMIT}, 413),
    ("post", "/v1/models/{name}/versions/{version}:regress", "/v1/models/sentiment/versions/2:regress", {"json": {"examples": [{"x": 1}]}}, 400),
    ("post", "/v1/models/{name}/versions/{version}:regress", "/v1/models/sentiment/versions/3:regress", {"json": {"examples": [{"x": 1}]}}, 404),
    ("post", "/v1/models/{name}/versions/{version}:regress", "/v1/models/sentiment/versions/2:regress", {"content": OVER_THE_LIMIT}, 413),
    ("post", "/v1/models/{name}/labels/{label}:regress", "/v1/models/sentiment/labels/stable:regress", {"json": {"examples": [{"x": 1}]}}, 400),
    ("post", "/v1/models/{name}/labels/{label}:regress", "/v1/models/sentiment/labels/canary:regress", {"json": {"examples": [{"x": 1}]}}, 404),
    ("post", "/v1/models/{name}/labels/{label}:regress", "/v1/models/sentiment/labels/stable:regress", {"content": OVER_THE_LIMIT}, 413),
    ("get", "/v1/models/{name}", "/v1/models/digtis", {}, 404),
    ("get", "/v1/models/{name}/versions/{version}", "/v1/models/sentiment/versions/3", {}, 404),
    ("get", "/v1/models/{name}/labels/{label}", "/v1/models/sentiment/labels/canary", {}, 404),
    ("get", "/v1/models/{name}/metadata", "/v1/models/digtis/metadata", {}, 404),
    ("get", "/v1/models/{name}/versions/{version}/metadata", "/v1/models/sentiment/versions/3/metadata", {}, 404),
    ("get", "/v1/models/{name}/labels/{label}/metadata", "/v1/models/sentiment/labels/canary/metadata", {}, 404),
    ("post", "/v2/models/{name}/infer", "/v2/models/sentiment/infer", {"json": {"inputs": [{"name": "reviews", "datatype": "BYTES", "shape": [2], "data": ["x"]}]}}, 400),
    ("post", "/v2/models/{name}/infer", "/v2/models/digtis/infer", {"json": {}}, 404),
    ("post", "/v2/models/{name}/infer", "/v2/models/sentiment/infer", {"content": OVER_THE_LIMIT}, 413),
    ("post", "/v2/models/{name}/versions/{version}/infer", "/v2/models/sentiment/versions/2/infer", {"json": {"inputs": [{"name": "reviews", "datatype": "BYTES", "shape": [2], "data": ["x"]}]}}, 400),
    ("post", "/v2/models/{name}/versions/{version}/infer", "/v2/models/digits/versions/3/infer", {"json": {}}, 404),
    ("post", "/v2/models/{name}/versions/{version}/infer", "/v2/models/sentiment/versions/2/infer", {"content": OVER_THE_LIMIT}, 413),
    ("get", "/v2/models/{name}", "/v2/models/digtis", {}, 404),
    ("get", "/v2/models/{name}/versions/{version}", "/v2/models/digits/versions/3", {}, 404),
    ("get", "/v2/models/{name}/ready", "/v2/models/digtis/ready", {}, 404),
    ("get", "/v2/models/{name}/versions/{version}/ready", "/v2/models/digits/versions/3/ready", {}, 404),
    ("get", "/v2/models/{name}/config", "/v2/models/digtis/config", {}, 404),
]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed models, and TF Serving's half_plus_two for the classify and regress
    examples."""
    root = tmp_path_factory.mktemp("openapi") / "models"
    shutil.copytree(ROOT / "models", root)
    tf1_half_plus_two(root / "half_plus_two" / "2")
    (root / "half_plus_two" / "labels.json").write_text('{"stable": 2}')
    return root


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[str]:
    proc, url = start_server({"MODEL_DIR": str(model_dir)})
    yield url
    stop_server(proc)


@pytest.fixture(scope="module")
def document(server: str) -> dict[str, Any]:
    return httpx.get(f"{server}/openapi.json").json()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method, path, operation


def validator(schema: dict[str, Any], document: dict[str, Any]) -> Draft202012Validator:
    """A validator for ``schema`` whose ``#/components/...`` references resolve."""
    return Draft202012Validator({**schema, "components": document.get("components", {})})


def media_examples(media: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(name, value, Example Object) of a Media Type Object's ``example`` and ``examples``."""
    if "example" in media:
        yield "example", media["example"], {}
    for name, example in media.get("examples", {}).items():
        yield name, example["value"], example


SUBSCHEMA_MAPS = ("properties", "$defs", "patternProperties")
SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
SUBSCHEMAS = ("items", "additionalProperties", "not", "contains")


def schema_examples(schema: Any, where: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(where, value, the schema it documents) for every ``examples`` in a schema and below."""
    if not isinstance(schema, dict):
        return
    for index, value in enumerate(schema.get("examples", [])):
        yield f"{where}.examples[{index}]", value, schema
    for key in SUBSCHEMA_MAPS:
        for name, sub in schema.get(key, {}).items():
            yield from schema_examples(sub, f"{where}.{name}")
    for key in SUBSCHEMA_LISTS:
        for index, sub in enumerate(schema.get(key, [])):
            yield from schema_examples(sub, f"{where}.{key}[{index}]")
    for key in SUBSCHEMAS:
        yield from schema_examples(schema.get(key), f"{where}.{key}")


def every_example(document: dict[str, Any]) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        yield from schema_examples(schema, f"components.{name}")
    for method, path, operation in operations(document):
        at = f"{method.upper()} {path}"
        body = operation.get("requestBody", {}).get("content", {})
        answers = [
            (f"{status} {media_type}", media)
            for status, response in operation["responses"].items()
            for media_type, media in response.get("content", {}).items()
        ]
        for label, media in [*body.items(), *answers]:
            schema = media.get("schema", {})
            yield from schema_examples(schema, f"{at} {label} schema")
            for name, value, _ in media_examples(media):
                yield f"{at} {label} {name}", value, schema


def test_every_example_is_valid_for_its_schema(document: dict[str, Any]) -> None:
    checked = 0
    problems = []
    for where, value, schema in every_example(document):
        errors = list(validator(schema, document).iter_errors(value))
        problems += [f"{where}: {error.message[:200]}" for error in errors]
        checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 80, checked  # the error examples of every operation, and the rest


def test_a_wrong_example_would_be_caught(document: dict[str, Any]) -> None:
    """The check above can fail: a native error example with a number for its message."""
    schema = document["paths"]["/v1/digits/predict"]["post"]["responses"]["422"]["content"][
        "application/json"
    ]["schema"]
    wrong = {"error": {"code": "invalid_request", "message": 42}}
    assert list(validator(schema, document).iter_errors(wrong))


def fill(path: str, model: str) -> str:
    return path.replace("{name}", model).replace("{version}", "2").replace("{label}", "stable")


def test_every_request_example_is_answered_200(server: str, document: dict[str, Any]) -> None:
    sent = []
    for method, path, operation in operations(document):
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            for name, value, example in media_examples(media):
                model = example.get("x-model", "")
                assert model or "{name}" not in path, f"{path} example {name}: no x-model"
                response = httpx.request(
                    method, f"{server}{fill(path, model)}", json=value, timeout=30
                )
                assert response.status_code == 200, (path, name, response.text[:500])
                assert media_type == "application/json"
                sent.append((path, name))
    assert len(sent) >= 16, sent  # sentiment, three each for both predict and infer routes


def documented_error(document: dict[str, Any], method: str, path: str, status: int) -> Any:
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    return responses[str(status)]["content"]["application/json"]["example"]


def test_each_route_s_errors_are_the_documented_ones(server: str, document: dict[str, Any]) -> None:
    for method, path, requested, arguments, status in TRIGGERS:
        url = f"{server}{requested or path}"
        response = httpx.request(method, url, timeout=30, **arguments)
        expected = documented_error(document, method, path, status)
        assert (response.status_code, response.json()) == (status, expected), (method, url)


def test_every_documented_client_error_is_provoked(document: dict[str, Any]) -> None:
    """The two tests that provoke errors leave none of the :data:`PROVOKED` statuses out: 401
    is asked of every operation, the rest by :data:`TRIGGERS`."""
    provoked = {(method, path, status) for method, path, _, _, status in TRIGGERS}
    missing = [
        f"{method.upper()} {path} {status}"
        for method, path, operation in operations(document)
        for status in map(int, filter(str.isdigit, operation["responses"]))
        if status in PROVOKED - {401}
        and (method, path, status) not in provoked | set(NOT_PROVOKED) | WITHOUT_SHOWCASE
    ]
    assert not missing, f"documented errors that no request here provokes: {missing}"


@pytest.fixture(scope="module")
def locked_server() -> Iterator[str]:
    proc, url = start_server({"API_KEYS": KEY})
    yield url
    stop_server(proc)


def test_every_route_without_a_key_answers_its_documented_401(
    locked_server: str, document: dict[str, Any]
) -> None:
    checked = 0
    for method, path, operation in operations(document):
        if "401" not in operation["responses"]:
            continue
        url = f"{locked_server}{fill(path, 'sentiment')}"
        response = httpx.request(method, url, timeout=30)
        expected = documented_error(document, method, path, 401)
        assert (response.status_code, response.json()) == (401, expected), (method, path)
        checked += 1
    assert checked >= 20, checked


def test_no_route_shows_another_model_s_errors(document: dict[str, Any]) -> None:
    """The issue that started this: /v1/digits/predict showed a review's error everywhere."""
    for path, others in [("/v1/digits/predict", r"review|sentiment"), ("/v1/sentiment/predict", r"image|file|digits")]:  # fmt: skip
        for status, response in document["paths"][path]["post"]["responses"].items():
            example = response.get("content", {}).get("application/json", {}).get("example")
            if status != "200" and example is not None:
                assert not re.search(others, str(example)), (path, status, example)


def test_the_native_error_schema_holds_no_shared_example(document: dict[str, Any]) -> None:
    """Examples on the shared error schemas would show on every route: each route has its own."""
    schemas = document["components"]["schemas"]
    for name in ("ErrorResponse", "ErrorDetail", "OIPError", "TFServingError"):
        assert not list(schema_examples(schemas[name], name)), name


def test_native_routes_of_missing_models_are_404s(
    model_dir: Path, document: dict[str, Any], tmp_path: Path
) -> None:
    """A MODEL_DIR of a user's model alone: the service starts, and the showcase models'
    routes answer their documented 404 naming the missing model."""
    alone = tmp_path / "models"
    shutil.copytree(model_dir / "half_plus_two", alone / "half_plus_two")
    proc, url = start_server({"MODEL_DIR": str(alone)})
    try:
        ready = httpx.get(f"{url}/readyz").json()
        assert ready == {"ready": True, "models": {"half_plus_two": "AVAILABLE"}}
        requests = {
            "/v1/sentiment/predict": {"json": {"reviews": ["great"]}},
            "/v1/digits/predict": {"files": {"file": ("d.png", png(28, 28))}},
        }
        for method, path, status in sorted(WITHOUT_SHOWCASE):
            response = httpx.request(method, f"{url}{path}", timeout=30, **requests[path])
            expected = documented_error(document, method, path, status)
            assert (response.status_code, response.json()) == (status, expected), path
    finally:
        stop_server(proc)
