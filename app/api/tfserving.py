"""TensorFlow Serving's REST API, beside the service's own endpoints.

``/v1/models/{name}[/versions/{version}]`` for model status, ``.../metadata`` for the signature,
``...:predict`` in row (``instances`` -> ``predictions``) or columnar (``inputs`` -> ``outputs``)
format, so that clients written for TensorFlow Serving work unchanged. Requests go through the
same batcher as the native endpoints (one queue per model version), and errors are TF Serving's
``{"error": "..."}`` (rendered by :mod:`app.errors` for every path under ``/v1/models/``).

How the bodies map to any model's tensors, and where they differ from TF Serving's, is in
:mod:`app.tfserving`; their OpenAPI docs are in :mod:`app.api.tfserving_schemas`. Only
``serving_default`` is served, so the metadata lists only that signature; version labels
(``/labels/{label}``) and the classify and regress verbs are not served.
"""

from __future__ import annotations

import contextlib

import anyio
from fastapi import APIRouter, Request

from app.api.deps import authorized_server, unless_disconnected
from app.api.tfserving_schemas import (
    PREDICT_REQUEST_BODY,
    PREDICT_RESPONSES,
    ModelMetadataResponse,
    ModelStatusResponse,
    error_responses,
)
from app.errors import NotFound
from app.inputs import DECODE_LIMITER
from app.registry import SIGNATURE, LoadedModel
from app.responses import FastJSONResponse
from app.serving import ModelServer
from app.tfserving import (
    SlowToDecode,
    is_image_input,
    output_json,
    parse_predict_request,
    signature_def_json,
)

router = APIRouter(prefix="/v1/models", tags=["TensorFlow Serving API"])

# Bodies this small are parsed on the event loop; larger ones (many instances, images) in a
# thread, so that the loop keeps serving meanwhile.
INLINE_PARSE_BYTES = 64 * 1024
MAX_VERSION_DIGITS = 18  # fits an int64, as TF Serving's versions do


# ---- Status and metadata -----------------------------------------------------------------------


@router.get(
    "/{name}",
    response_model=ModelStatusResponse,
    responses=error_responses(401, 404, 503),
    summary="Model status (every version)",
)
async def model_status(name: str, request: Request) -> FastJSONResponse:
    """TF Serving's model status API: the state of every version of the model."""
    server = authorized_server(request)
    server.get(name)  # NotFound, naming the served models, for an unknown name
    return _status(sorted(server.servables[name], reverse=True))


@router.get(
    "/{name}/versions/{version}",
    response_model=ModelStatusResponse,
    responses=error_responses(401, 404, 503),
    summary="Model status (one version)",
)
async def model_version_status(name: str, version: str, request: Request) -> FastJSONResponse:
    """TF Serving's model status API for one version."""
    server = authorized_server(request)
    model = server.get(name, _parse_version(version)).model
    return _status([model.version])


@router.get(
    "/{name}/metadata",
    response_model=ModelMetadataResponse,
    responses=error_responses(401, 404, 503),
    summary="Model metadata (latest version)",
)
async def model_metadata(name: str, request: Request) -> FastJSONResponse:
    """TF Serving's model metadata API: the ``serving_default`` signature of the latest version."""
    server = authorized_server(request)
    return _metadata(server.get(name).model)


@router.get(
    "/{name}/versions/{version}/metadata",
    response_model=ModelMetadataResponse,
    responses=error_responses(401, 404, 503),
    summary="Model metadata (one version)",
)
async def model_version_metadata(name: str, version: str, request: Request) -> FastJSONResponse:
    """TF Serving's model metadata API for one version."""
    server = authorized_server(request)
    return _metadata(server.get(name, _parse_version(version)).model)


def _parse_version(version: str) -> int:
    if not (version.isascii() and version.isdigit() and len(version) <= MAX_VERSION_DIGITS):
        raise NotFound(f"version {version!r} is not a version number")
    return int(version)


def _status(versions: list[int]) -> FastJSONResponse:
    # Newest first, as TF Serving lists them.
    statuses = [
        {
            "version": str(version),
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
        for version in versions
    ]
    return FastJSONResponse({"model_version_status": statuses})


def _metadata(model: LoadedModel) -> FastJSONResponse:
    return FastJSONResponse(
        {
            "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
            "metadata": {
                "signature_def": {"signature_def": {SIGNATURE: signature_def_json(model)}}
            },
        }
    )


# ---- Predict -----------------------------------------------------------------------------------


@router.post(
    "/{name}:predict",
    responses={**PREDICT_RESPONSES, **error_responses(400, 401, 404, 413, 503, 504, 500)},
    openapi_extra={"requestBody": PREDICT_REQUEST_BODY},
    summary="Predict (latest version)",
)
async def predict(name: str, request: Request) -> FastJSONResponse:
    """TF Serving's predict API: ``instances`` -> ``predictions``, ``inputs`` -> ``outputs``.

    Sentiment instances are review texts; digits instances are 28x28 (or 28x28x1) lists of
    pixel values 0-255 (0 = background) or ``{"b64": "<base64 of an image file>"}``.
    """
    return await _predict(request, authorized_server(request), name, None)


@router.post(
    "/{name}/versions/{version}:predict",
    responses={**PREDICT_RESPONSES, **error_responses(400, 401, 404, 413, 503, 504, 500)},
    openapi_extra={"requestBody": PREDICT_REQUEST_BODY},
    summary="Predict (one version)",
)
async def predict_version(name: str, version: str, request: Request) -> FastJSONResponse:
    """TF Serving's predict API on one version of the model."""
    return await _predict(request, authorized_server(request), name, _parse_version(version))


async def _predict(
    request: Request, server: ModelServer, name: str, version: int | None
) -> FastJSONResponse:
    servable = server.get(name, version)
    settings = server.settings
    body = await request.body()
    # Small bodies on the event loop, unless they hold an image that is slow to decode; others in
    # a thread (for image inputs, sharing the image decoders' limit).
    parsed = None
    if len(body) <= INLINE_PARSE_BYTES:
        with contextlib.suppress(SlowToDecode):
            parsed = parse_predict_request(body, servable.model, settings, inline=True)
    if parsed is None:
        limiter = DECODE_LIMITER if is_image_input(servable.model.input) else None
        parsed = await anyio.to_thread.run_sync(
            parse_predict_request, body, servable.model, settings, limiter=limiter
        )
    outputs = await unless_disconnected(request, servable.batcher.predict(parsed.inputs))
    values = output_json(outputs, servable.model.output)
    return FastJSONResponse({"outputs" if parsed.columnar else "predictions": values})
