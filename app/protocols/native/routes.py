"""The service's own routes: sentiment from reviews, digits from images, the models served."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from app.api.deps import access_record, authorized_server, check_json, unless_disconnected
from app.api.routing import RequestRoute, direct
from app.errors import InvalidInput, UnsupportedMediaType
from app.model import LoadedModel
from app.protocols import (
    BODY_TOO_LARGE,
    NOT_READY,
    UNAUTHORIZED,
    ErrorExample,
    error_responses,
    model_call_errors,
)
from app.protocols.native import codec, error_body
from app.protocols.native.schemas import (
    DIGITS_REQUEST_BODY,
    SENTIMENT_REQUEST_BODY,
    DigitsResponse,
    ErrorResponse,
    ModelInfo,
    ModelList,
    SentimentResponse,
    VersionInfo,
)
from app.responses import FastJSONResponse
from app.serving import Batch, ModelEntry, ModelRef
from app.uploads import FormError, read_form

router = APIRouter(prefix="/v1", route_class=RequestRoute)

SENTIMENT = ModelRef("sentiment")
DIGITS = ModelRef("digits")


def _errors(examples: dict[int, ErrorExample]) -> dict[int | str, dict[str, Any]]:
    return error_responses(ErrorResponse, error_body, {401: UNAUTHORIZED, **examples})


def _predict_errors(model: str, examples: dict[int, ErrorExample]) -> dict[int | str, Any]:
    return _errors(
        {
            404: ("not_found", f"model {model!r} is not served (served: half_plus_two)"),
            413: BODY_TOO_LARGE,
            **model_call_errors(model),
            **examples,
        }
    )


SENTIMENT_ERRORS = _predict_errors(
    "sentiment",
    {
        400: (
            "invalid_json",
            "the request body is not valid JSON: EOF while parsing a string at line 1 column 22",
        ),
        415: ("unsupported_media_type", "send the body as application/json, not text/plain"),
        422: ("invalid_request", "reviews[0] is empty or only whitespace"),
    },
)
DIGITS_ERRORS = _predict_errors(
    "digits",
    {
        400: (
            "invalid_input",
            "broken.png: the file is not an image in a supported format "
            "(PNG, JPEG, BMP, GIF, TIFF, WEBP)",
        ),
        413: ("payload_too_large", "wide.png: the image is 5000x10; at most 4096x4096 is accepted"),
        415: (
            "unsupported_media_type",
            "send the images as multipart/form-data 'file' fields, not application/json",
        ),
        422: ("invalid_request", "the form has no 'file' field; send each image as 'file'"),
    },
)


@router.post(
    "/sentiment/predict",
    response_model=SentimentResponse,
    responses=SENTIMENT_ERRORS,
    openapi_extra={"requestBody": SENTIMENT_REQUEST_BODY},
    summary="Sentiment of movie reviews",
)
@direct
async def predict_sentiment(request: Request) -> FastJSONResponse:
    """Probability that each review is positive, and the label it implies (score >= 0.5)."""
    server = authorized_server(request)
    check_json(request)
    body = await request.body()

    async def decode(model: LoadedModel) -> Batch:
        return codec.decode_reviews(body, model, server.settings)

    prediction = await unless_disconnected(
        request, server.predict(SENTIMENT, decode, access_record(request))
    )
    return FastJSONResponse(codec.encode_sentiment(prediction))


@router.post(
    "/digits/predict",
    response_model=DigitsResponse,
    responses=DIGITS_ERRORS,
    openapi_extra={"requestBody": DIGITS_REQUEST_BODY},
    summary="Digits in uploaded images",
)
@direct
async def predict_digits(request: Request) -> FastJSONResponse:
    """Upload images as ``file`` fields of a multipart form, one digit each.

    PNG, JPEG, BMP, GIF, TIFF or WebP, any size: each is framed as MNIST's digits were (see
    the API reference) and dark-on-light drawings are inverted first.
    """
    server = authorized_server(request)
    settings = server.settings
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMediaType(
            "send the images as multipart/form-data 'file' fields, "
            f"not {content_type or 'no content type'}"
        )
    try:
        parts = await read_form(
            content_type,
            request.stream(),
            max_files=settings.max_instances,
            max_fields=settings.max_instances,
            max_field_bytes=codec.MAX_FIELD_BYTES,
        )
    except FormError as exc:
        raise InvalidInput(str(exc)) from exc

    async def decode(model: LoadedModel) -> Batch:
        return await codec.decode_images(parts, model, settings)

    prediction = await unless_disconnected(
        request, server.predict(DIGITS, decode, access_record(request))
    )
    return FastJSONResponse(codec.encode_digits(prediction))


@router.get(
    "/models",
    response_model=ModelList,
    responses=_errors({503: NOT_READY}),
    summary="The models served",
)
async def list_models(request: Request) -> ModelList:
    """Every model: what unversioned requests get, every version's state, labels, signature."""
    server = authorized_server(request)
    return ModelList(models=[_model_info(entry, server.device) for entry in server.models.values()])


def _model_info(entry: ModelEntry, device: str) -> ModelInfo:
    served = entry.latest.model if entry.latest is not None else None
    return ModelInfo(
        name=entry.name,
        version=served.version if served is not None else None,
        versions=sorted(entry.servables),
        labels=dict(sorted(entry.labels.items())),
        states=[
            VersionInfo(version=status.version, state=status.state.value, error=status.error)
            for status in sorted(entry.versions.values(), key=lambda s: -s.version)
        ],
        device=served.device if served is not None else device,
        path=served.relative_path if served is not None else None,
        inputs={k: v.as_dict() for k, v in served.inputs.items()} if served else {},
        outputs={k: v.as_dict() for k, v in served.outputs.items()} if served else {},
    )
