"""The service's own bodies <-> the two models' batches: thin adapters over the general path.

Sentiment: ``{"reviews": ["...", ...]}`` (parsed and validated in one step by pydantic's JSON
parser) -> a batch of strings; the scores -> ``{"label", "score"}`` per review. Digits: the
``file`` parts of a multipart form -> a batch of 28x28 images, decoded as
:func:`app.inputs.decode_digit` does (large ones off the event loop); the probabilities ->
``{"digit", "probabilities"}`` per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import ValidationError

from app.codecs import decode_image_file
from app.config import Settings
from app.errors import InvalidInput, Unprocessable, validation_error
from app.inputs import check_reviews
from app.model import LoadedModel
from app.protocols.native.schemas import SentimentRequest
from app.serving import Batch, Prediction
from app.uploads import FormPart

MAX_FIELD_BYTES = 64 * 1024  # a text field beside the images: a note, a label


def decode_reviews(body: bytes, model: LoadedModel, settings: Settings) -> Batch:
    """A sentiment body -> a batch of review strings; 400 for bad JSON, 422 for a bad body."""
    try:
        reviews = SentimentRequest.model_validate_json(body).reviews
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=True, include_input=False)
        raise validation_error([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    if len(reviews) > settings.max_instances:
        raise Unprocessable(
            f"{len(reviews)} reviews; at most MAX_INSTANCES={settings.max_instances} per request"
        )
    if problem := check_reviews(reviews, settings.max_review_chars):
        raise Unprocessable(problem)
    return Batch({input_key(model): np.array(reviews, dtype=object)})


def input_key(model: LoadedModel) -> str:
    """The key of the only input of the model's ``serving_default`` (its load checked it)."""
    return next(iter(model.inputs))


def only_output(prediction: Prediction[Batch]) -> np.ndarray:
    return next(iter(prediction.outputs.values()))


def encode_sentiment(prediction: Prediction[Batch]) -> dict[str, Any]:
    predictions = [
        {"label": "positive" if score >= 0.5 else "negative", "score": score}
        for score in only_output(prediction).astype(float).tolist()
    ]
    model = prediction.model
    return {"model": model.name, "version": model.version, "predictions": predictions}


async def decode_images(parts: list[FormPart], model: LoadedModel, settings: Settings) -> Batch:
    """The ``file`` parts of a form -> a batch of 28x28 images; 4xx naming the bad file."""
    uploads = [part for part in parts if part.name == "file"]
    if not uploads:
        raise Unprocessable("the form has no 'file' field; send each image as 'file'")
    images = [await _decode_upload(upload, index, settings) for index, upload in enumerate(uploads)]
    return Batch({input_key(model): np.stack(images)})


async def _decode_upload(upload: FormPart, index: int, settings: Settings) -> np.ndarray:
    if upload.filename is None:
        raise InvalidInput(f"'file' field {index} is text, not a file upload")
    name = upload.filename or f"file {index}"
    return await decode_image_file(upload.data, settings.max_image_side, name)


def encode_digits(prediction: Prediction[Batch]) -> dict[str, Any]:
    probabilities = only_output(prediction)
    predictions = [
        {"digit": digit, "probabilities": row}
        for digit, row in zip(
            probabilities.argmax(axis=1).tolist(), probabilities.astype(float).tolist(), strict=True
        )
    ]
    model = prediction.model
    return {"model": model.name, "version": model.version, "predictions": predictions}
