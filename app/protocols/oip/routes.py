"""The Open Inference Protocol's REST routes (KServe V2; what ``tritonclient.http`` speaks).

Health (``/v2/health/live``, ``/v2/health/ready``, ``.../ready`` per model), server and model
metadata, Triton's model configuration, and ``infer``, for the latest available version or one
version. Every model under ``MODEL_DIR`` is served. Request bodies may be compressed
(``Content-Encoding: gzip`` or ``deflate``, as ``tritonclient`` can send them; the size limit
applies to the decompressed body), and answers are compressed when ``Accept-Encoding`` asks.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

from fastapi import APIRouter, Request, Response

from app.api.deps import access_record, authorized_server, unless_disconnected
from app.api.routing import RequestRoute, direct
from app.errors import InvalidInput, PayloadTooLarge, Unavailable
from app.model import LoadedModel
from app.offload import off_loop
from app.protocols import (
    BODY_TOO_LARGE,
    NOT_READY,
    UNAUTHORIZED,
    UNKNOWN_MODEL,
    ErrorExample,
    error_responses,
    model_call_errors,
)
from app.protocols.oip import codec, error_body
from app.protocols.oip.schemas import (
    INFER_REQUEST_BODY,
    INFER_RESPONSES,
    ModelConfig,
    ModelMetadata,
    OIPError,
    ServerMetadata,
)
from app.responses import FastJSONResponse
from app.serving import ModelRef, ModelServer, version_number
from app.signatures import TensorSpec

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"], route_class=RequestRoute)

SERVER_NAME = "keras-inference-service"
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
PLATFORM = "tensorflow_savedmodel"
INLINE_INFLATE_BYTES = 64 * 1024
COMPRESS_FROM_BYTES = 1024  # smaller answers gain nothing from compression


def _errors(examples: dict[int, ErrorExample]) -> dict[int | str, dict[str, Any]]:
    return error_responses(OIPError, error_body, {401: UNAUTHORIZED, **examples})


VERSION_NOT_AVAILABLE: ErrorExample = (
    "not_found",
    "model 'digits' version 3 is not available; available versions: 2",
)
READ_ERRORS = _errors({404: UNKNOWN_MODEL, 503: ("unavailable", "model 'digits' is still loading")})
READ_VERSION_ERRORS = _errors(
    {404: VERSION_NOT_AVAILABLE, 503: ("unavailable", "model 'digits' version 2 is still loading")}
)
_INFER_ERRORS: dict[int, ErrorExample] = {
    400: (
        "invalid_input",
        "input 'reviews': \"data\" is neither flat with 2 elements nor nested as the shape [2] "
        "(at depth 0)",
    ),
    404: UNKNOWN_MODEL,
    413: BODY_TOO_LARGE,
    **model_call_errors("sentiment"),
}
INFER_ERRORS = {**INFER_RESPONSES, **_errors(_INFER_ERRORS)}
INFER_VERSION_ERRORS = {**INFER_RESPONSES, **_errors({**_INFER_ERRORS, 404: VERSION_NOT_AVAILABLE})}


# Infer first: routes are matched in order, the busiest first.

# ---- Infer --------------------------------------------------------------------------------------


@router.post(
    "/models/{name}/infer",
    responses=INFER_ERRORS,
    openapi_extra={"requestBody": INFER_REQUEST_BODY},
    summary="Infer (latest version)",
)
@direct
async def infer(request: Request, name: str) -> Response:
    """Run the model on the request's input tensor: JSON, or JSON then binary tensor data."""
    return await _infer(request, authorized_server(request), ModelRef(name))


@router.post(
    "/models/{name}/versions/{version}/infer",
    responses=INFER_VERSION_ERRORS,
    openapi_extra={"requestBody": INFER_REQUEST_BODY},
    summary="Infer (one version)",
)
@direct
async def infer_version(request: Request, name: str, version: str) -> Response:
    """``infer`` on one version of the model."""
    return await _infer(
        request, authorized_server(request), ModelRef(name, version_number(version))
    )


async def _infer(request: Request, server: ModelServer, ref: ModelRef) -> Response:
    body = await _read_body(request, server.settings.max_request_bytes)
    header_length = request.headers.get(codec.BINARY_HEADER)

    async def decode(model: LoadedModel) -> codec.InferRequest:
        return await codec.decode_infer(body, header_length, model, server.settings)

    prediction = await unless_disconnected(
        request, server.predict(ref, decode, access_record(request))
    )
    content, headers = codec.encode_infer(prediction)
    return _compressed(request, content, headers)


async def _read_body(request: Request, limit: int) -> bytes:
    body = await request.body()
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if coding == "identity":
        return body
    if coding not in ("gzip", "deflate"):
        raise InvalidInput(f"Content-Encoding {coding!r} is not supported (gzip, deflate)")
    if len(body) <= INLINE_INFLATE_BYTES:
        return _inflate(body, coding, limit)
    return await off_loop(_inflate, body, coding, limit)


def _inflate(body: bytes, coding: str, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes: a small bomb is refused before it grows."""
    inflater = zlib.decompressobj(wbits=31 if coding == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the {coding} body cannot be decompressed: {exc}") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"the decompressed body is over MAX_REQUEST_BYTES={limit}")
    if not inflater.eof:
        raise InvalidInput(f"the {coding} body is truncated")
    return data


def _compressed(request: Request, content: bytes, headers: dict[str, str]) -> Response:
    if len(content) < COMPRESS_FROM_BYTES:
        return Response(content, headers=headers)
    accepted = {
        part.split(";")[0].strip().lower()
        for part in request.headers.get("accept-encoding", "").split(",")
    }
    if "gzip" in accepted:
        content, headers = (
            gzip.compress(content, compresslevel=1),
            {**headers, "content-encoding": "gzip"},
        )
    elif "deflate" in accepted:
        content, headers = zlib.compress(content, 1), {**headers, "content-encoding": "deflate"}
    return Response(content, headers=headers)


# ---- Health and metadata ----------------------------------------------------------------------


@router.get("/health/live", summary="Server live", responses={200: {"description": "Live"}})
async def live() -> Response:
    """200 while the process answers at all (no body, as the protocol asks)."""
    return Response(status_code=200)


@router.get(
    "/health/ready",
    summary="Server ready",
    responses={
        200: {"description": "Ready"},
        **error_responses(OIPError, error_body, {503: NOT_READY}),
    },
)
async def ready(request: Request) -> Response:
    """200 when the service takes requests and its models are available; 503 otherwise."""
    server: ModelServer | None = getattr(request.app.state, "server", None)
    if server is None or not server.ready:
        raise Unavailable("the models are not loaded yet, or the server is shutting down")
    return Response(status_code=200)


@router.get(
    "",
    response_model=ServerMetadata,
    responses=_errors({}),
    summary="Server metadata",
)
async def server_metadata(request: Request) -> FastJSONResponse:
    """The server's name, version and the protocol extensions it supports."""
    authorized_server(request)
    return FastJSONResponse(
        {"name": SERVER_NAME, "version": request.app.version, "extensions": EXTENSIONS}
    )


@router.get(
    "/models/{name}", response_model=ModelMetadata, responses=READ_ERRORS, summary="Model metadata"
)
async def model_metadata(name: str, request: Request) -> FastJSONResponse:
    """The latest available version's inputs and outputs, and every available version."""
    return _metadata(authorized_server(request), ModelRef(name))


@router.get(
    "/models/{name}/versions/{version}",
    response_model=ModelMetadata,
    responses=READ_VERSION_ERRORS,
    summary="Model metadata (one version)",
)
async def model_version_metadata(name: str, version: str, request: Request) -> FastJSONResponse:
    """One version's inputs and outputs."""
    return _metadata(authorized_server(request), ModelRef(name, version_number(version)))


def _metadata(server: ModelServer, ref: ModelRef) -> FastJSONResponse:
    model = server.resolve(ref).model
    versions = [str(v) for v in sorted(server.entry(ref.name).servables)]
    return FastJSONResponse(
        {
            "name": model.name,
            "versions": versions,
            "platform": PLATFORM,
            "inputs": [_tensor_metadata(spec) for spec in model.inputs.values()],
            "outputs": [_tensor_metadata(spec) for spec in model.outputs.values()],
        }
    )


def _tensor_metadata(spec: TensorSpec) -> dict[str, object]:
    return {
        "name": spec.key,
        "datatype": codec.datatype_of(spec.dtype),
        "shape": codec.shape_of(spec),
    }


@router.get(
    "/models/{name}/ready",
    summary="Model ready",
    responses={200: {"description": "Ready"}, **READ_ERRORS},
)
async def model_ready(name: str, request: Request) -> Response:
    """200 when the model has an available version; 503 while loading, 404 if unknown."""
    authorized_server(request).resolve(ModelRef(name))
    return Response(status_code=200)


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Model ready (one version)",
    responses={200: {"description": "Ready"}, **READ_VERSION_ERRORS},
)
async def model_version_ready(name: str, version: str, request: Request) -> Response:
    """200 when that version is available; 503 while it loads, 404 otherwise."""
    authorized_server(request).resolve(ModelRef(name, version_number(version)))
    return Response(status_code=200)


@router.get(
    "/models/{name}/config",
    response_model=ModelConfig,
    responses=READ_ERRORS,
    summary="Model configuration (Triton's extension)",
)
async def model_config(name: str, request: Request) -> FastJSONResponse:
    """The latest version as Triton describes a model: what ``perf_analyzer`` and other
    Triton tools read before they send requests."""
    server = authorized_server(request)
    model = server.resolve(ModelRef(name)).model
    config = model.config
    signature = model.default_signature
    batched = signature is not None and signature.batched and config.batching

    def tensors(specs: dict[str, TensorSpec]) -> list[dict[str, object]]:
        return [
            {
                "name": spec.key,
                "data_type": "TYPE_"
                + ("STRING" if spec.dtype == "string" else codec.datatype_of(spec.dtype)),
                # Triton leaves the batch dimension out of dims when max_batch_size > 0.
                "dims": (codec.shape_of(spec)[1:] if batched else codec.shape_of(spec)) or [1],
            }
            for spec in specs.values()
        ]

    answer: dict[str, object] = {
        "name": model.name,
        "platform": PLATFORM,
        "backend": "tensorflow",
        "max_batch_size": config.max_batch_size if batched else 0,
        "input": tensors(model.inputs),
        "output": tensors(model.outputs),
    }
    if batched:
        answer["dynamic_batching"] = {
            "max_queue_delay_microseconds": int(config.max_batch_delay_ms * 1000),
            **(
                {"preferred_batch_size": list(config.allowed_batch_sizes)}
                if config.allowed_batch_sizes
                else {}
            ),
        }
    return FastJSONResponse(answer)
