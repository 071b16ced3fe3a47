"""OpenAPI documentation of the TensorFlow Serving API: response models, request body, examples.

Only the docs read these: predict parses its body itself (:mod:`app.protocols.tfserving.codec`),
and every route builds its :class:`~app.responses.FastJSONResponse` by hand.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.signatures import DEFAULT_SIGNATURE


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
                        "default": DEFAULT_SIGNATURE,
                        "description": "Any signature of the model (see its metadata).",
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


def _examples_body(signature: str, examples: dict[str, Any]) -> dict[str, Any]:
    """The classify or regress request body's schema, with its own examples."""
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["examples"],
                    "properties": {
                        "signature_name": {
                            "type": "string",
                            "default": DEFAULT_SIGNATURE,
                            "description": f"A {signature} signature, or a predict signature "
                            "that takes serialized tf.Examples.",
                        },
                        "context": {
                            "type": "object",
                            "description": "Features every example shares.",
                        },
                        "examples": {
                            "type": "array",
                            "minItems": 1,
                            "description": "One object per example, feature name -> value or"
                            " list: whole numbers (int64), decimals (float), strings or"
                            ' `{"b64": ...}` (bytes).',
                            "items": {"type": "object"},
                        },
                    },
                },
                "examples": examples,
            }
        },
    }


CLASSIFY_REQUEST_BODY = _examples_body(
    "classify",
    {
        "classify": {
            "summary": "TF Serving's half_plus_two: two examples, a shared context",
            "x-model": "half_plus_two",
            "value": {
                "signature_name": "classify_x_to_y",
                "context": {"country": "fr"},
                "examples": [{"x": 1.0}, {"x": 2.0}],
            },
        }
    },
)
REGRESS_REQUEST_BODY = _examples_body(
    "regress",
    {
        "regress": {
            "summary": "TF Serving's half_plus_two",
            "x-model": "half_plus_two",
            "value": {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]},
        }
    },
)

CLASSIFY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A list of [label, score] pairs per example",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"results": {"type": "array"}}},
                "example": {"results": [[["cat", 0.9], ["dog", 0.1]]]},
            }
        },
    }
}

REGRESS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One value per example",
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"results": {"type": "array"}}},
                "example": {"results": [2.5, 3.0]},
            }
        },
    }
}
