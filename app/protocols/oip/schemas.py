"""OpenAPI documentation of the Open Inference Protocol routes: bodies and examples.

Only the docs read these: ``infer`` parses its body itself (:mod:`app.protocols.oip.codec`),
and every route builds its response by hand.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app import __version__


class OIPError(BaseModel):
    # No example here: each route shows its own errors (app.protocols.error_responses).
    error: str = Field(description="What went wrong, in words")


class ServerMetadata(BaseModel):
    name: str = Field(examples=["keras-inference-service"])
    version: str = Field(examples=[__version__])
    extensions: list[str] = Field(examples=[["binary_tensor_data", "model_configuration"]])


class TensorMetadata(BaseModel):
    name: str = Field(examples=["images"])
    datatype: str = Field(examples=["FP32"])
    shape: list[int] = Field(examples=[[-1, 28, 28]], description="-1: any size")


class ModelMetadata(BaseModel):
    name: str = Field(examples=["digits"])
    versions: list[str] = Field(examples=[["1"]], description="The available versions")
    platform: str = Field(examples=["tensorflow_savedmodel"])
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelConfig(BaseModel):
    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    dynamic_batching: dict[str, Any]


TENSOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "parameters": {
            "type": "object",
            "description": "`binary_data_size`: the tensor's bytes follow the JSON (binary "
            "tensor data extension); other parameters are ignored.",
        },
        "data": {"type": "array", "items": {}, "description": "Flat, or nested as the shape."},
    },
}

# Each example's "x-model" names the model it is for (the {name} in the path): tests send them.
INFER_EXAMPLES: dict[str, Any] = {
    "sentiment": {
        "summary": "Sentiment: BYTES reviews",
        "x-model": "sentiment",
        "value": {
            "id": "42",
            "inputs": [
                {
                    "name": "reviews",
                    "shape": [2],
                    "datatype": "BYTES",
                    "data": [
                        "A beautiful, moving film with a superb cast.",
                        "Two hours of my life I will never get back.",
                    ],
                }
            ],
        },
    },
    "digits_pixels": {
        "summary": "Digits: FP32 pixels 0-255, [N, 28, 28] (one blank image here)",
        "x-model": "digits",
        "value": {
            "inputs": [
                {"name": "images", "shape": [1, 28, 28], "datatype": "FP32", "data": [0] * 784}
            ],
            "outputs": [{"name": "probabilities"}],
        },
    },
    "digits_file": {
        "summary": "Digits: a PNG file as BYTES (base64 in JSON)",
        "x-model": "digits",
        "value": {
            "inputs": [
                {
                    "name": "images",
                    "shape": [1],
                    "datatype": "BYTES",
                    "data": [
                        "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAO0lEQVR42mNgGEqAEUr/xybKhE8nEzHGIoH/5BqL0EiiTiSNpOlE1kiSThSNpOhE1UiCTjSN+HUOOgAAigQIIaoPDSAAAAAASUVORK5CYII="
                    ],
                }
            ],
        },
    },
}

INFER_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {
                        "type": "object",
                        "description": "`binary_data_output`: every output as binary data.",
                    },
                    "inputs": {"type": "array", "minItems": 1, "items": TENSOR_SCHEMA},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string"},
                                "parameters": {
                                    "type": "object",
                                    "description": "`binary_data`: this output as binary data.",
                                },
                            },
                        },
                    },
                },
            },
            "examples": INFER_EXAMPLES,
        },
        "application/octet-stream": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "The JSON request, then the binary tensor data; the JSON's "
                "length in the Inference-Header-Content-Length header.",
            }
        },
    },
}

INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The output tensors: JSON, or JSON then binary tensor data (with "
        "Inference-Header-Content-Length)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model_name", "outputs"],
                    "properties": {
                        "model_name": {"type": "string"},
                        "model_version": {"type": "string"},
                        "id": {"type": "string"},
                        "outputs": {"type": "array", "items": TENSOR_SCHEMA},
                    },
                },
                "example": {
                    "model_name": "sentiment",
                    "model_version": "1",
                    "id": "42",
                    "outputs": [
                        {
                            "name": "positive_probability",
                            "datatype": "FP32",
                            "shape": [2],
                            "data": [0.97, 0.03],
                        }
                    ],
                },
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
