"""OpenAPI documentation of the service's own endpoints: request and response bodies, examples."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SentimentRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "reviews": [
                        "A beautiful, moving film with a superb cast.",
                        "Two hours of my life I will never get back.",
                    ]
                }
            ]
        },
    )
    reviews: list[str] = Field(
        min_length=1, description="Raw review texts, 1 to MAX_INSTANCES of them."
    )


class SentimentPrediction(BaseModel):
    label: Literal["positive", "negative"]
    score: float = Field(ge=0, le=1, description="Probability that the review is positive.")


class SentimentResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "sentiment",
                    "version": 1,
                    "predictions": [
                        {"label": "positive", "score": 0.97},
                        {"label": "negative", "score": 0.03},
                    ],
                }
            ]
        }
    )
    model: str
    version: int
    predictions: list[SentimentPrediction]


class DigitPrediction(BaseModel):
    digit: int = Field(ge=0, le=9)
    probabilities: list[float] = Field(min_length=10, max_length=10)


class DigitsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "digits",
                    "version": 1,
                    "predictions": [
                        {"digit": 7, "probabilities": [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]},
                    ],
                }
            ]
        }
    )
    model: str
    version: int
    predictions: list[DigitPrediction]


# The sentiment route parses its body itself (pydantic's JSON parser): its schema, for the docs.
SENTIMENT_REQUEST_BODY = {
    "required": True,
    "content": {"application/json": {"schema": SentimentRequest.model_json_schema()}},
}

DIGITS_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "One or more images (PNG, JPEG, BMP, GIF, TIFF, WebP).",
                    }
                },
            },
            "encoding": {"file": {"contentType": "image/*"}},
        }
    },
}


class TensorSpec(BaseModel):
    dtype: str
    shape: list[int | None] | None = Field(description="None: unknown rank")


class VersionInfo(BaseModel):
    version: int
    state: Literal["LOADING", "AVAILABLE", "UNLOADING", "END"]
    error: str = Field("", description="Why the version could not be loaded (END)")


class ModelInfo(BaseModel):
    name: str
    version: int | None = Field(description="What unversioned requests get: the highest available")
    versions: list[int] = Field(description="The available versions")
    labels: dict[str, int] = Field(description="Version labels, each naming an available version")
    states: list[VersionInfo] = Field(description="Every version the service knows, newest first")
    device: str
    path: str | None = Field(description="The served version's folder, relative to MODEL_DIR")
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


class ModelList(BaseModel):
    models: list[ModelInfo]


class ErrorDetail(BaseModel):
    # No examples here: each route shows its own errors (app.protocols.error_responses).
    code: str = Field(description="Stable and machine-readable: the table in docs/api.md")
    message: str = Field(description="What went wrong, in words")


class ErrorResponse(BaseModel):
    error: ErrorDetail
