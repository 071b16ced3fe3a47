"""OpenAPI documentation of the TensorFlow Serving API: response models, request body, examples.

Only the docs read these: predict parses its body itself (:mod:`app.protocols.tfserving.codec`),
and every route builds its :class:`~app.responses.FastJSONResponse` by hand.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.model import SIGNATURE


class TFServingError(BaseModel):
    # No example here: each route shows its own errors (app.protocols.error_responses).
    error: str = Field(description="What went wrong, in words")


class VersionStatus(BaseModel):
    error_code: str = Field(examples=["OK"])
    error_message: str = Field(examples=[""])


class ModelVersionStatus(BaseModel):
    version: str = Field(examples=["1"])
    state: Literal["LOADING", "AVAILABLE", "UNLOADING", "END"] = Field(examples=["AVAILABLE"])
    status: VersionStatus


class ModelStatusResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    model_version_status: list[ModelVersionStatus]


class ModelSpec(BaseModel):
    name: str = Field(examples=["sentiment"])
    signature_name: str = Field(examples=[""])
    version: str = Field(examples=["1"])


METADATA_EXAMPLE: dict[str, Any] = {
    "model_spec": {"name": "sentiment", "signature_name": "", "version": "1"},
    "metadata": {
        "signature_def": {
            "signature_def": {
                "serving_default": {
                    "inputs": {
                        "reviews": {
                            "dtype": "DT_STRING",
                            "tensor_shape": {
                                "dim": [{"size": "-1", "name": ""}],
                                "unknown_rank": False,
                            },
                            "name": "serving_default_reviews:0",
                        }
                    },
                    "outputs": {
                        "positive_probability": {
                            "dtype": "DT_FLOAT",
                            "tensor_shape": {
                                "dim": [{"size": "-1", "name": ""}],
                                "unknown_rank": False,
                            },
                            "name": "StatefulPartitionedCall:0",
                        }
                    },
                    "method_name": "tensorflow/serving/predict",
                }
            }
        }
    },
}


class ModelMetadataResponse(BaseModel):
    model_config = ConfigDict(
        protected_namespaces=(), json_schema_extra={"examples": [METADATA_EXAMPLE]}
    )
    model_spec: ModelSpec
    metadata: dict[str, Any]


# Each example's "x-model" names the model it is for (the {name} in the path): tests send them.
PREDICT_EXAMPLES: dict[str, Any] = {
    "row": {
        "summary": "Row format, sentiment",
        "x-model": "sentiment",
        "value": {
            "signature_name": "serving_default",
            "instances": [
                "A beautiful, moving film with a superb cast.",
                "Two hours of my life I will never get back.",
            ],
        },
    },
    "row_named": {
        "summary": "Row format with named inputs",
        "x-model": "sentiment",
        "value": {"instances": [{"reviews": "A beautiful, moving film with a superb cast."}]},
    },
    "columnar": {
        "summary": "Columnar format, sentiment",
        "x-model": "sentiment",
        "value": {"inputs": {"reviews": ["A beautiful, moving film with a superb cast."]}},
    },
    "digits_b64": {
        "summary": "Digits: an image file in base64 (a PNG here)",
        "x-model": "digits",
        "value": {
            "instances": [
                {
                    "b64": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAO0lEQVR42mNgGEqAEUr/xybKhE8nEzHGIoH/5BqL0EiiTiSNpOlE1kiSThSNpOhE1UiCTjSN+HUOOgAAigQIIaoPDSAAAAAASUVORK5CYII="
                }
            ]
        },
    },
    "digits_pixels": {
        "summary": "Digits: 28x28 pixel values, 0-255 (one all-black image here)",
        "x-model": "digits",
        "value": {"instances": [[[0] * 28] * 28]},
    },
}

PREDICT_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": "Send `instances` (row format) or `inputs` (columnar), not both.",
                "properties": {
                    "signature_name": {
                        "type": "string",
                        "default": SIGNATURE,
                        "description": "Only `serving_default` is served.",
                    },
                    "instances": {
                        "type": "array",
                        "minItems": 1,
                        "description": "One entry per instance: the value, `{input name: value}`"
                        ' or, for images, `{"b64": "<base64 of an image file>"}`.',
                        "items": {},
                    },
                    "inputs": {
                        "description": "The whole batch: a list with one entry per instance, or"
                        " `{input name: list}`.",
                    },
                },
            },
            "examples": PREDICT_EXAMPLES,
        }
    },
}

PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`predictions` for a row-format request, `outputs` for a columnar one",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"predictions": {"type": "array", "items": {}}, "outputs": {}},
                },
                "examples": {
                    "row": {
                        "summary": "Row format, sentiment",
                        "value": {"predictions": [0.97, 0.03]},
                    },
                    "columnar": {
                        "summary": "Columnar format, sentiment",
                        "value": {"outputs": [0.97]},
                    },
                    "digits": {
                        "summary": "Digits: 10 probabilities per image",
                        "value": {"predictions": [[0, 0, 0, 0, 0, 0, 0, 1, 0, 0]]},
                    },
                },
            }
        },
    },
}
