"""Open Inference Protocol infer bodies <-> the models' NumPy batches, in JSON or binary.

A request is a JSON object ``{"id"?, "parameters"?, "inputs": [...], "outputs"?: [...]}``,
optionally followed by raw tensor bytes (Triton's ``binary_tensor_data`` extension, which
``tritonclient`` uses by default): the JSON's length is then in the
``Inference-Header-Content-Length`` header, each binary input says its byte count in its
``binary_data_size`` parameter, and the bytes follow in the order of the inputs. Numbers are
little-endian, row-major; a ``BYTES`` element is a 4-byte little-endian length, then the bytes.
An answer is built the same way: outputs asked for with ``binary_data`` (or every output, with
the request's ``binary_data_output``) go as bytes after the JSON, the others as JSON ``data``.

The model's one input is matched by name. Its tensor may be sent as:

* strings (``BYTES``) for a string input (sentiment's ``reviews``): UTF-8 text, at most
  ``MAX_REVIEW_CHARS`` characters each;
* any numeric datatype for a numeric input, converted to the input's dtype (values that do not
  fit are refused); for an image input (digits' ``images``, float ``[-1, 28, 28]``) pixel
  values 0-255, or ``BYTES`` holding image files (raw in binary, base64 in JSON), decoded as an
  upload to ``/v1/digits/predict`` is.

The shape may carry a trailing axis of 1 beyond the model's (``[N, 28, 28, 1]``, ``[N, 1]``
strings); JSON ``data`` may be flat or nested as the shape. Unknown parameters are ignored; a
request's ``id`` is echoed. Nothing of HTTP: what cannot be served raises
:class:`~app.errors.InvalidInput` (400) or another of :mod:`app.errors`' exceptions.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.codecs import INLINE_PARSE_BYTES, b64decode, decode_image_file
from app.config import Settings
from app.errors import InvalidInput
from app.model import LoadedModel, TensorInfo
from app.offload import off_loop
from app.serving import Prediction

BINARY_HEADER = "inference-header-content-length"
PIXEL_MAX = 255.0
MAX_DIMS = 32

# Numeric datatypes and their little-endian NumPy types; BYTES is handled apart.
NUMERIC: dict[str, np.dtype[Any]] = {
    name: np.dtype(code).newbyteorder("<")
    for name, code in {
        "BOOL": "bool",
        "UINT8": "uint8",
        "UINT16": "uint16",
        "UINT32": "uint32",
        "UINT64": "uint64",
        "INT8": "int8",
        "INT16": "int16",
        "INT32": "int32",
        "INT64": "int64",
        "FP16": "float16",
        "FP32": "float32",
        "FP64": "float64",
    }.items()
}
DATATYPES = (*NUMERIC, "BYTES")
_BY_DTYPE = {dtype.name: name for name, dtype in NUMERIC.items()}


def datatype_of(tensor_dtype: str) -> str:
    """The protocol's datatype for a TensorFlow/NumPy dtype name (``string`` -> ``BYTES``)."""
    if tensor_dtype in ("string", "object", "bytes"):
        return "BYTES"
    return _BY_DTYPE.get(tensor_dtype, tensor_dtype.upper())


def shape_of(info: TensorInfo) -> list[int]:
    return [-1 if d is None else d for d in info.shape]


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """An infer body made ready for the batcher, with what the answer needs."""

    inputs: np.ndarray
    id: str | None
    outputs: tuple[RequestedOutput, ...]


# ---- Requests -----------------------------------------------------------------------------------


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part and the binary part, by ``Inference-Header-Content-Length``."""
    if header_length is None:
        return body, b""
    text = header_length.strip()
    if not (text.isascii() and text.isdigit()):
        raise InvalidInput(f"Inference-Header-Content-Length must be a number, not {text!r}")
    length = int(text)
    if length > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length says the JSON has {length} bytes; "
            f"the body has {len(body)}"
        )
    return body[:length], body[length:]


async def decode_infer(
    body: bytes, header_length: str | None, model: LoadedModel, settings: Settings
) -> InferRequest:
    """An infer request -> the model's input batch; InvalidInput (400) saying what is wrong.

    A JSON part over ``INLINE_PARSE_BYTES`` is parsed, and its numbers converted, off the event
    loop (:func:`app.offload.off_loop`), as TF Serving's bodies are; image files are decoded as
    uploads are, off the loop unless small.
    """
    head, binary = split_body(body, header_length)
    if len(head) > INLINE_PARSE_BYTES:
        parsed = await off_loop(_parse, head, binary, model, settings)
    else:
        parsed = _parse(head, binary, model, settings)
    if isinstance(parsed, InferRequest):
        return parsed
    tensor, request_id, outputs = parsed
    files = _elements(tensor)
    images = [
        await _image(item, settings, f"{tensor.where}[{i}]", binary=tensor.data is None)
        for i, item in enumerate(files)
    ]
    return InferRequest(np.stack(images).astype(model.input.dtype), request_id, outputs)


def _parse(
    head: bytes, binary: bytes, model: LoadedModel, settings: Settings
) -> InferRequest | tuple[_Tensor, str | None, tuple[RequestedOutput, ...]]:
    """The request, or, when its input is image files, the tensor of files still to decode."""
    try:
        payload = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInput('the request must be a JSON object with "inputs"')
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput('"id" must be a string')
    parameters = _parameters(payload.get("parameters"), "the request's parameters")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput('"inputs" must be a non-empty list of input tensors')
    tensors = [_tensor(item, f"inputs[{i}]") for i, item in enumerate(inputs)]
    _claim_binary(tensors, binary)
    spec = model.input
    names = [tensor.name for tensor in tensors]
    if names != [spec.name]:
        raise InvalidInput(
            f"model {model.name!r} takes one input, {spec.name!r} "
            f"({datatype_of(spec.dtype)} {shape_of(spec)}); the request has {names}"
        )
    outputs = _requested_outputs(
        payload.get("outputs"), model, bool(parameters.get("binary_data_output", False))
    )
    batch = _to_batch(tensors[0], spec, settings)
    if batch is None:
        return tensors[0], request_id, outputs
    return InferRequest(batch, request_id, outputs)


@dataclass
class _Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: Any  # the JSON data, or None when the tensor comes as binary
    binary_size: int | None
    binary: bytes = b""
    where: str = ""

    @property
    def count(self) -> int:
        return math.prod(self.shape)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be an object")
    return value


def _tensor(item: Any, where: str) -> _Tensor:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} must be an object with name, datatype, shape and data")
    name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
    if not isinstance(name, str):
        raise InvalidInput(f'{where}: "name" must be a string')
    where = f"input {name!r}"
    if datatype not in DATATYPES:
        raise InvalidInput(
            f'{where}: "datatype" must be one of {", ".join(DATATYPES)}, not {datatype!r}'
        )
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidInput(
            f'{where}: "shape" must be a list of 1 to {MAX_DIMS} sizes (whole numbers >= 0), '
            f"not {orjson.dumps(shape).decode()[:100]}"
        )
    parameters = _parameters(item.get("parameters"), f"{where}'s parameters")
    size = parameters.get("binary_data_size")
    has_data = "data" in item
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidInput(f"{where}: binary_data_size must be a whole number >= 0")
        if has_data:
            raise InvalidInput(f'{where} has both "data" and binary_data_size; send one')
    elif not has_data:
        raise InvalidInput(f'{where} has no "data" (or binary_data_size for binary data)')
    return _Tensor(name, datatype, shape, item.get("data"), size, where=where)


def _claim_binary(tensors: list[_Tensor], binary: bytes) -> None:
    """Hand each binary input its bytes, in order; the sizes must add up to what was sent."""
    offset = 0
    for tensor in tensors:
        if tensor.binary_size is None:
            continue
        end = offset + tensor.binary_size
        if end > len(binary):
            raise InvalidInput(
                f"{tensor.where}: binary_data_size is {tensor.binary_size} bytes, but only "
                f"{len(binary) - offset} bytes of binary data are left after the JSON"
            )
        tensor.binary = binary[offset:end]
        offset = end
    if offset != len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} bytes after the JSON belong to no input "
            "(binary_data_size or Inference-Header-Content-Length is wrong)"
        )


def _to_batch(tensor: _Tensor, spec: TensorInfo, settings: Settings) -> np.ndarray | None:
    """The request's tensor as the model's input batch; None for image files, which the
    caller decodes."""
    shape = _fit_shape(tensor, spec)
    size = shape[0]
    if size == 0:
        raise InvalidInput(f"{tensor.where} has no instances (shape {tensor.shape})")
    if size > settings.max_instances:
        raise InvalidInput(
            f"{tensor.where} has {size} instances; at most "
            f"MAX_INSTANCES={settings.max_instances} per request"
        )
    if spec.dtype == "string":
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"{tensor.where} must be BYTES (strings), not {tensor.datatype}")
        texts = [
            _text(item, settings, f"{tensor.where}[{i}]")
            for i, item in enumerate(_elements(tensor))
        ]
        array = np.empty(len(texts), dtype=object)
        array[:] = texts
        return array.reshape(shape)
    image = spec.is_image
    if tensor.datatype == "BYTES":
        if not image:
            raise InvalidInput(
                f"{tensor.where} must be numeric ({datatype_of(spec.dtype)}), not BYTES"
            )
        return None
    values = _numbers(tensor)
    return _convert(values.reshape(shape), spec, tensor.where, image)


def _fit_shape(tensor: _Tensor, spec: TensorInfo) -> tuple[int, ...]:
    """The model's shape for the request's: equal, or with one trailing axis of 1 more."""
    want = spec.shape
    got = tensor.shape
    image_bytes = spec.is_image and tensor.datatype == "BYTES"
    if image_bytes:  # one file per instance: [N] or [N, 1]
        want = (None,)
    if len(got) == len(want) + 1 and got[-1] == 1:
        got = got[:-1]
    if len(got) != len(want) or any(
        w is not None and g != w for g, w in zip(got, want, strict=True)
    ):
        expected = "[-1] or [-1, 1] (one image file each)" if image_bytes else str(shape_of(spec))
        raise InvalidInput(f"{tensor.where} has shape {tensor.shape}; the model takes {expected}")
    return tuple(got)


def _elements(tensor: _Tensor) -> list[Any]:
    """A BYTES tensor's elements: JSON strings, or the length-prefixed items of its bytes."""
    count = tensor.count
    if tensor.data is not None:
        items = _flat(tensor.data, tensor)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise InvalidInput(f"{tensor.where}[{i}] must be a string")
        return items
    items = []
    data, offset = tensor.binary, 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise InvalidInput(f"{tensor.where}: binary BYTES data ends inside a length prefix")
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if length > len(data) - offset:
            raise InvalidInput(
                f"{tensor.where}[{len(items)}]: an element of {length} bytes, "
                f"but only {len(data) - offset} are left"
            )
        items.append(data[offset : offset + length])
        offset += length
        if len(items) > count:
            break
    if len(items) != count:
        raise InvalidInput(
            f"{tensor.where}: shape {tensor.shape} holds {count} elements; "
            f"the binary data holds {len(items)}{' or more' if len(items) > count else ''}"
        )
    return items


def _flat(data: Any, tensor: _Tensor) -> list[Any]:
    """JSON ``data``, flat or nested as the shape, as a flat list of ``tensor.count`` items."""
    if not isinstance(data, list):
        raise InvalidInput(f'{tensor.where}: "data" must be a list')
    count = tensor.count
    if len(data) == count and not any(isinstance(item, list) for item in data):
        return data
    level: list[Any] = [data]
    for depth, size in enumerate(tensor.shape):
        if any(not isinstance(item, list) or len(item) != size for item in level):
            raise InvalidInput(
                f'{tensor.where}: "data" is neither flat with {count} elements nor nested '
                f"as the shape {tensor.shape} (at depth {depth})"
            )
        level = [element for item in level for element in item]
    if any(isinstance(item, list) for item in level):
        raise InvalidInput(f'{tensor.where}: "data" is nested deeper than the shape {tensor.shape}')
    return level


def _text(item: str | bytes, settings: Settings, where: str) -> str:
    if isinstance(item, bytes):
        try:
            item = item.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{where} is not valid UTF-8 text: {exc.reason}") from None
    elif not item.isascii():
        try:  # JSON's "\ud800" escapes: lone surrogates, which TensorFlow cannot encode
            item.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"{where} is not valid text: {exc.reason}") from None
    if len(item) > settings.max_review_chars:
        raise InvalidInput(
            f"{where} has {len(item)} characters; at most "
            f"MAX_REVIEW_CHARS={settings.max_review_chars} are accepted"
        )
    return item


async def _image(item: str | bytes, settings: Settings, where: str, binary: bool) -> np.ndarray:
    if isinstance(item, str):
        item = b64decode(item, f"{where}:", "an image in JSON data must be base64 text")
    return await decode_image_file(item, settings.max_image_side, where)


def _numbers(tensor: _Tensor) -> np.ndarray:
    """A numeric tensor as a flat array of its datatype."""
    dtype = NUMERIC[tensor.datatype]
    count = tensor.count
    if tensor.data is None:
        if len(tensor.binary) != count * dtype.itemsize:
            raise InvalidInput(
                f"{tensor.where}: shape {tensor.shape} of {tensor.datatype} takes "
                f"{count * dtype.itemsize} bytes; binary_data_size is {len(tensor.binary)}"
            )
        values = np.frombuffer(tensor.binary, dtype=dtype)
        if tensor.datatype == "BOOL" and values.view(np.uint8).max(initial=0) > 1:
            raise InvalidInput(f"{tensor.where}: BOOL bytes must be 0 or 1")
        return values
    items = _flat(tensor.data, tensor)
    if tensor.datatype == "BOOL":
        allowed: tuple[type, ...] = (bool,)
    elif tensor.datatype.startswith(("INT", "UINT")):
        allowed = (int,)
    else:
        allowed = (int, float)
    for i, item in enumerate(items):
        if type(item) not in allowed:
            raise InvalidInput(
                f"{tensor.where}[{i}] is {type(item).__name__}; {tensor.datatype} data "
                f"takes {' or '.join(t.__name__ for t in allowed)}"
            )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if items and (min(items) < info.min or max(items) > info.max):
            raise InvalidInput(f"{tensor.where} holds values outside {tensor.datatype}")
    with np.errstate(over="ignore"):
        values = np.array(items, dtype=dtype)
    if dtype.kind == "f" and not np.isfinite(values).all():  # JSON has no inf: an overflow
        raise InvalidInput(f"{tensor.where} holds values outside {tensor.datatype}")
    return values


def _convert(values: np.ndarray, spec: TensorInfo, where: str, image: bool) -> np.ndarray:
    """Numbers of the request's datatype -> the model's dtype, refusing what does not fit."""
    target = np.dtype(spec.dtype)
    if target.kind == "b" and values.dtype.kind != "b":
        raise InvalidInput(f"{where} must be BOOL for the model's {spec.dtype} input")
    if target.kind in "iu":
        if values.dtype.kind not in "iub":
            raise InvalidInput(f"{where} must be an integer datatype for the model's {spec.dtype}")
        info = np.iinfo(target)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise InvalidInput(f"{where} holds values outside the model's {spec.dtype}")
        return values.astype(target)
    if values.dtype.kind == "b":
        raise InvalidInput(f"{where} must be numeric, not BOOL, for the model's {spec.dtype}")
    if image:
        wide = values.astype(np.float64, copy=False)
        outside = ~((wide >= 0) & (wide <= PIXEL_MAX))
        if outside.any():
            at = [int(i) for i in np.argwhere(outside)[0]]
            raise InvalidInput(
                f"{where} holds {float(wide[tuple(at)]):g} at {at}; pixels are 0-255"
            )
    with np.errstate(over="ignore", invalid="ignore"):
        converted = values.astype(target)
    if (
        converted.dtype.kind == "f"
        and values.dtype.kind == "f"
        and (np.isfinite(values) & ~np.isfinite(converted)).any()
    ):
        raise InvalidInput(f"{where} holds values outside the model's {spec.dtype}")
    return converted


def _requested_outputs(
    value: Any, model: LoadedModel, binary_default: bool
) -> tuple[RequestedOutput, ...]:
    if value is None:
        return tuple(RequestedOutput(name, binary_default) for name in model.outputs)
    if not isinstance(value, list):
        raise InvalidInput('"outputs" must be a list of {"name": ...} objects')
    requested: list[RequestedOutput] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f'outputs[{i}] must be an object with a "name"')
        name = item["name"]
        if name not in model.outputs:
            raise InvalidInput(
                f"model {model.name!r} has no output {name!r} (outputs: {', '.join(model.outputs)})"
            )
        if any(r.name == name for r in requested):
            raise InvalidInput(f"output {name!r} is asked for twice")
        parameters = _parameters(item.get("parameters"), f"output {name!r}'s parameters")
        binary = parameters.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise InvalidInput(f"output {name!r}: binary_data must be true or false")
        requested.append(RequestedOutput(name, binary))
    return tuple(requested)


# ---- Answers ------------------------------------------------------------------------------------


def encode_infer(prediction: Prediction[InferRequest]) -> tuple[bytes, dict[str, str]]:
    """The answer's body and headers: JSON, or JSON then binary tensors."""
    model = prediction.model
    request = prediction.request
    outputs = {model.output.name: prediction.outputs}
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for wanted in request.outputs:
        array = outputs[wanted.name]
        tensor: dict[str, Any] = {
            "name": wanted.name,
            "datatype": datatype_of(
                array.dtype.name if array.dtype.kind not in "OSU" else "object"
            ),
            "shape": list(array.shape),
        }
        if wanted.binary:
            blob = _binary(array)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = _json_data(array)
        tensors.append(tensor)
    answer: dict[str, Any] = {"model_name": model.name, "model_version": str(model.version)}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = tensors
    head = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return head, {"content-type": "application/json"}
    return head + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }


def _binary(array: np.ndarray) -> bytes:
    if array.dtype.kind in "OSU":
        return b"".join(_length_prefixed(item) for item in array.ravel().tolist())
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _length_prefixed(item: Any) -> bytes:
    data = item if isinstance(item, bytes) else str(item).encode("utf-8")
    return struct.pack("<I", len(data)) + data


def _json_data(array: np.ndarray) -> Sequence[Any] | np.ndarray:
    if array.dtype.kind in "OSU":
        return [
            item.decode("utf-8", errors="replace") if isinstance(item, bytes) else item
            for item in array.ravel().tolist()
        ]
    return array.ravel()
