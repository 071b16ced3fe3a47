"""TensorFlow Serving's REST API, beside the service's own endpoints.

``/v1/models/{name}`` for model status, ``.../metadata`` for the signature, ``...:predict`` in
row (``instances`` -> ``predictions``) or columnar (``inputs`` -> ``outputs``) format, each for
the latest available version, one version (``/versions/{v}``) or a label (``/labels/{l}``), so
that clients written for TensorFlow Serving work unchanged. Status lists every version the
service knows with TF Serving's states (``LOADING``, ``AVAILABLE``, ``UNLOADING``, ``END``,
with the error of a version that failed to load). Predict answers carry the version that
served them in ``X-Model-Version`` (TF Serving's body has no room for it).

``:classify`` and ``:regress`` take ``examples`` (and ``context``), turned into serialized
``tf.Example``s for a classify or regress signature. Any signature can be named with
``signature_name``; metadata lists them all. How bodies map to tensors, and where this differs
from TF Serving, is in the codec (:mod:`app.protocols.tfserving.codec`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import access_record, authorized_server, unless_disconnected
from app.api.routing import RequestRoute, direct
from app.errors import NotFound
from app.model import LoadedModel
from app.protocols import (
    BODY_TOO_LARGE,
    NOT_READY,
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    ErrorExample,
    error_responses,
    model_call_errors,
)
from app.protocols.tfserving import codec, error_body
from app.protocols.tfserving.schemas import (
    CLASSIFY_REQUEST_BODY,
    CLASSIFY_RESPONSES,
    PREDICT_REQUEST_BODY,
    PREDICT_RESPONSES,
    REGRESS_REQUEST_BODY,
    REGRESS_RESPONSES,
    ModelMetadataResponse,
    ModelStatusResponse,
    TFServingError,
)
from app.responses import FastJSONResponse
from app.serving import ModelRef, ModelServer, VersionStatus, version_number
from app.signatures import CLASSIFY, REGRESS

router = APIRouter(prefix="/v1/models", tags=["TensorFlow Serving API"], route_class=RequestRoute)


def _errors(examples: dict[int, ErrorExample]) -> dict[int | str, dict[str, Any]]:
    return error_responses(TFServingError, error_body, {401: UNAUTHORIZED, **examples})


NO_SUCH_VERSION: ErrorExample = (
    "not_found",
    "model 'sentiment' version 3 is not available; available versions: 2",
)
NO_SUCH_LABEL: ErrorExample = (
    "not_found",
    "model 'sentiment' has no label 'canary' (labels: stable)",
)
_PREDICT_ERRORS: dict[int, ErrorExample] = {
    400: (
        "invalid_input",
        'instances[0] is a number; the model takes strings (or {"b64": "<base64>"} for binary '
        "ones)",
    ),
    404: UNKNOWN_MODEL,
    413: BODY_TOO_LARGE,
    **model_call_errors("sentiment"),
}
PREDICT_ERRORS = {**PREDICT_RESPONSES, **_errors(_PREDICT_ERRORS)}
PREDICT_VERSION_ERRORS = {**PREDICT_RESPONSES, **_errors({**_PREDICT_ERRORS, 404: NO_SUCH_VERSION})}
PREDICT_LABEL_ERRORS = {**PREDICT_RESPONSES, **_errors({**_PREDICT_ERRORS, 404: NO_SUCH_LABEL})}


def _examples_errors(verb: str, method: str) -> dict[int, ErrorExample]:
    wrong = (
        "invalid_input",
        f"signature 'serving_default' is a tensorflow/serving/predict signature; :{verb} needs "
        f"a tensorflow/serving/{method} signature (or a predict signature that takes "
        "serialized tf.Examples)",
    )
    return {**_PREDICT_ERRORS, 400: wrong}


_CLASSIFY = _examples_errors("classify", "classify")
_REGRESS = _examples_errors("regress", "regress")
CLASSIFY_ERRORS = {**CLASSIFY_RESPONSES, **_errors(_CLASSIFY)}
CLASSIFY_VERSION_ERRORS = {**CLASSIFY_RESPONSES, **_errors({**_CLASSIFY, 404: NO_SUCH_VERSION})}
CLASSIFY_LABEL_ERRORS = {**CLASSIFY_RESPONSES, **_errors({**_CLASSIFY, 404: NO_SUCH_LABEL})}
REGRESS_ERRORS = {**REGRESS_RESPONSES, **_errors(_REGRESS)}
REGRESS_VERSION_ERRORS = {**REGRESS_RESPONSES, **_errors({**_REGRESS, 404: NO_SUCH_VERSION})}
REGRESS_LABEL_ERRORS = {**REGRESS_RESPONSES, **_errors({**_REGRESS, 404: NO_SUCH_LABEL})}
STATUS_ERRORS = _errors({404: UNKNOWN_MODEL, 503: NOT_READY})
STATUS_VERSION_ERRORS = _errors(
    {404: ("not_found", "model 'sentiment' has no version 3 (versions: 2)"), 503: NOT_READY}
)
STATUS_LABEL_ERRORS = _errors({404: NO_SUCH_LABEL, 503: NOT_READY})
METADATA_ERRORS = _errors(
    {404: UNKNOWN_MODEL, 503: ("unavailable", "model 'sentiment' is still loading")}
)
METADATA_VERSION_ERRORS = _errors(
    {404: NO_SUCH_VERSION, 503: ("unavailable", "model 'sentiment' version 2 is still loading")}
)
METADATA_LABEL_ERRORS = _errors(
    {404: NO_SUCH_LABEL, 503: ("unavailable", "model 'sentiment' label 'canary' is still loading")}
)


# Predict first: routes are matched in order, the busiest first.

# ---- Predict -----------------------------------------------------------------------------------


@router.post(
    "/{name}:predict",
    responses=PREDICT_ERRORS,
    openapi_extra={"requestBody": PREDICT_REQUEST_BODY},
    summary="Predict (latest version)",
)
@direct
async def predict(request: Request, name: str) -> FastJSONResponse:
    """TF Serving's predict API: ``instances`` -> ``predictions``, ``inputs`` -> ``outputs``.

    Sentiment instances are review texts; digits instances are 28x28 (or 28x28x1) lists of
    pixel values 0-255 (0 = background) or ``{"b64": "<base64 of an image file>"}``.
    """
    return await _predict(request, authorized_server(request), ModelRef(name))


@router.post(
    "/{name}/versions/{version}:predict",
    responses=PREDICT_VERSION_ERRORS,
    openapi_extra={"requestBody": PREDICT_REQUEST_BODY},
    summary="Predict (one version)",
)
@direct
async def predict_version(request: Request, name: str, version: str) -> FastJSONResponse:
    """TF Serving's predict API on one version of the model."""
    return await _predict(
        request, authorized_server(request), ModelRef(name, version_number(version))
    )


@router.post(
    "/{name}/labels/{label}:predict",
    responses=PREDICT_LABEL_ERRORS,
    openapi_extra={"requestBody": PREDICT_REQUEST_BODY},
    summary="Predict (the version a label names)",
)
@direct
async def predict_label(request: Request, name: str, label: str) -> FastJSONResponse:
    """TF Serving's predict API on the version a label points at."""
    return await _predict(request, authorized_server(request), ModelRef(name, label=label))


async def _predict(request: Request, server: ModelServer, ref: ModelRef) -> FastJSONResponse:
    body = await request.body()

    async def decode(model: LoadedModel) -> codec.PredictRequest:
        return await codec.decode_predict(body, model, server.settings)

    prediction = await unless_disconnected(
        request, server.predict(ref, decode, access_record(request))
    )
    return FastJSONResponse(
        codec.encode_predict(prediction),
        headers={"X-Model-Version": str(prediction.model.version)},
    )


# ---- Classify and regress -----------------------------------------------------------------------


@router.post(
    "/{name}:classify",
    responses=CLASSIFY_ERRORS,
    openapi_extra={"requestBody": CLASSIFY_REQUEST_BODY},
    summary="Classify (latest version)",
)
@direct
async def classify(request: Request, name: str) -> FastJSONResponse:
    """TF Serving's classify API: ``examples`` -> ``results`` of [label, score] pairs."""
    return await _examples(request, ModelRef(name), CLASSIFY)


@router.post(
    "/{name}/versions/{version}:classify",
    responses=CLASSIFY_VERSION_ERRORS,
    openapi_extra={"requestBody": CLASSIFY_REQUEST_BODY},
    summary="Classify (one version)",
)
@direct
async def classify_version(request: Request, name: str, version: str) -> FastJSONResponse:
    """TF Serving's classify API on one version of the model."""
    return await _examples(request, ModelRef(name, version_number(version)), CLASSIFY)


@router.post(
    "/{name}/labels/{label}:classify",
    responses=CLASSIFY_LABEL_ERRORS,
    openapi_extra={"requestBody": CLASSIFY_REQUEST_BODY},
    summary="Classify (the version a label names)",
)
@direct
async def classify_label(request: Request, name: str, label: str) -> FastJSONResponse:
    """TF Serving's classify API on the version a label points at."""
    return await _examples(request, ModelRef(name, label=label), CLASSIFY)


@router.post(
    "/{name}:regress",
    responses=REGRESS_ERRORS,
    openapi_extra={"requestBody": REGRESS_REQUEST_BODY},
    summary="Regress (latest version)",
)
@direct
async def regress(request: Request, name: str) -> FastJSONResponse:
    """TF Serving's regress API: ``examples`` -> ``results``, one value each."""
    return await _examples(request, ModelRef(name), REGRESS)


@router.post(
    "/{name}/versions/{version}:regress",
    responses=REGRESS_VERSION_ERRORS,
    openapi_extra={"requestBody": REGRESS_REQUEST_BODY},
    summary="Regress (one version)",
)
@direct
async def regress_version(request: Request, name: str, version: str) -> FastJSONResponse:
    """TF Serving's regress API on one version of the model."""
    return await _examples(request, ModelRef(name, version_number(version)), REGRESS)


@router.post(
    "/{name}/labels/{label}:regress",
    responses=REGRESS_LABEL_ERRORS,
    openapi_extra={"requestBody": REGRESS_REQUEST_BODY},
    summary="Regress (the version a label names)",
)
@direct
async def regress_label(request: Request, name: str, label: str) -> FastJSONResponse:
    """TF Serving's regress API on the version a label points at."""
    return await _examples(request, ModelRef(name, label=label), REGRESS)


async def _examples(request: Request, ref: ModelRef, method: str) -> FastJSONResponse:
    server = authorized_server(request)
    body = await request.body()

    async def decode(model: LoadedModel) -> codec.ExamplesRequest:
        return await codec.decode_examples(body, model, server.settings, method)

    prediction = await unless_disconnected(
        request, server.predict(ref, decode, access_record(request))
    )
    return FastJSONResponse(
        codec.encode_examples(prediction),
        headers={"X-Model-Version": str(prediction.model.version)},
    )


# ---- Status ------------------------------------------------------------------------------------


@router.get(
    "/{name}",
    response_model=ModelStatusResponse,
    responses=STATUS_ERRORS,
    summary="Model status (every version)",
)
async def model_status(name: str, request: Request) -> FastJSONResponse:
    """TF Serving's model status API: every version the service knows, newest first."""
    entry = authorized_server(request).entry(name)
    return _status(sorted(entry.versions.values(), key=lambda s: -s.version))


@router.get(
    "/{name}/versions/{version}",
    response_model=ModelStatusResponse,
    responses=STATUS_VERSION_ERRORS,
    summary="Model status (one version)",
)
async def model_version_status(name: str, version: str, request: Request) -> FastJSONResponse:
    """TF Serving's model status API for one version, whatever its state."""
    entry = authorized_server(request).entry(name)
    status = entry.versions.get(version_number(version))
    if status is None:
        known = ", ".join(str(v) for v in sorted(entry.versions)) or "none"
        raise NotFound(f"model {name!r} has no version {version} (versions: {known})")
    return _status([status])


@router.get(
    "/{name}/labels/{label}",
    response_model=ModelStatusResponse,
    responses=STATUS_LABEL_ERRORS,
    summary="Model status (the version a label names)",
)
async def model_label_status(name: str, label: str, request: Request) -> FastJSONResponse:
    """TF Serving's model status API for the version a label points at."""
    server = authorized_server(request)
    model = server.resolve(ModelRef(name, label=label)).model
    return _status([server.entry(name).versions[model.version]])


def _status(statuses: list[VersionStatus]) -> FastJSONResponse:
    return FastJSONResponse(
        {
            "model_version_status": [
                {
                    "version": str(status.version),
                    "state": status.state.value,
                    "status": {
                        "error_code": "UNKNOWN" if status.error else "OK",
                        "error_message": status.error,
                    },
                }
                for status in statuses
            ]
        }
    )


# ---- Metadata ----------------------------------------------------------------------------------


@router.get(
    "/{name}/metadata",
    response_model=ModelMetadataResponse,
    responses=METADATA_ERRORS,
    summary="Model metadata (latest version)",
)
async def model_metadata(name: str, request: Request) -> FastJSONResponse:
    """TF Serving's model metadata API: every signature of the latest version."""
    return _metadata(authorized_server(request), ModelRef(name))


@router.get(
    "/{name}/versions/{version}/metadata",
    response_model=ModelMetadataResponse,
    responses=METADATA_VERSION_ERRORS,
    summary="Model metadata (one version)",
)
async def model_version_metadata(name: str, version: str, request: Request) -> FastJSONResponse:
    """TF Serving's model metadata API for one version."""
    return _metadata(authorized_server(request), ModelRef(name, version_number(version)))


@router.get(
    "/{name}/labels/{label}/metadata",
    response_model=ModelMetadataResponse,
    responses=METADATA_LABEL_ERRORS,
    summary="Model metadata (the version a label names)",
)
async def model_label_metadata(name: str, label: str, request: Request) -> FastJSONResponse:
    """TF Serving's model metadata API for the version a label points at."""
    return _metadata(authorized_server(request), ModelRef(name, label=label))


def _metadata(server: ModelServer, ref: ModelRef) -> FastJSONResponse:
    model: LoadedModel = server.resolve(ref).model
    return FastJSONResponse(
        {
            "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": {"signature_def": codec.signature_defs_json(model)}},
        }
    )
