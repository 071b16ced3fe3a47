"""Open Inference Protocol infer bodies <-> the models' NumPy batches, in JSON or binary.

A request is a JSON object ``{"id"?, "parameters"?, "inputs": [...], "outputs"?: [...]}``,
optionally followed by raw tensor bytes (Triton's ``binary_tensor_data`` extension, which
``tritonclient`` uses by default): the JSON's length is then in the
``Inference-Header-Content-Length`` header, each binary input says its byte count in its
``binary_data_size`` parameter, and the bytes follow in the order of the inputs. Numbers are
little-endian, row-major; a ``BYTES`` element is a 4-byte little-endian length, then the bytes.
An answer is built the same way: outputs asked for with ``binary_data`` (or every output, with
the request's ``binary_data_output``) go as bytes after the JSON, the others as JSON ``data``.

Any signature can be called: ``serving_default``, or the one the request's ``parameters``
name in ``signature_name``. Every input of the signature must be sent, once, by name; each may
come as:

* ``BYTES`` for a string input: text (valid UTF-8, at most ``MAX_REVIEW_CHARS`` characters)
  or, in binary, any bytes;
* any numeric datatype (``BOOL``, ``INT8``..``INT64``, ``UINT8``..``UINT64``, ``FP16``,
  ``FP32``, ``FP64``, ``BF16`` in binary) for a numeric input, converted to the input's dtype
  (values that do not fit are refused); for an image input (digits' ``images``, float
  ``[-1, 28, 28]``) pixel values 0-255, or ``BYTES`` holding image files (raw in binary,
  base64 in JSON), decoded as an upload to ``/v1/digits/predict`` is.

The shape may carry a trailing axis of 1 beyond the model's (``[N, 28, 28, 1]``, ``[N, 1]``
strings); JSON ``data`` may be flat or nested as the shape. The answer holds the outputs asked
for in ``outputs`` (every output if none is), each in binary or JSON as asked. Unknown
parameters are ignored; a request's ``id`` is echoed. Nothing of HTTP: what cannot be served
raises :class:`~app.errors.InvalidInput` (400) or another of :mod:`app.errors`' exceptions.
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
from app.model import LoadedModel
from app.offload import off_loop
from app.serving import Prediction, signature_of
from app.signatures import DTYPES, Signature, TensorSpec
from app.tensors import convert, is_float, string

BINARY_HEADER = "inference-header-content-length"
PIXEL_MAX = 255.0
MAX_DIMS = 32

# Numeric datatypes and their little-endian NumPy types, from the dtype table; BYTES apart.
NUMERIC: dict[str, np.dtype[Any]] = {
    d.oip: np.dtype(d.numpy).newbyteorder("<") for d in DTYPES.values() if d.name != "string"
}
DATATYPES = (*NUMERIC, "BYTES")
_BY_DTYPE = {d.name: d.oip for d in DTYPES.values()}
_BY_NUMPY = {np.dtype(d.numpy).name: d.oip for d in DTYPES.values() if d.name != "string"}


def datatype_of(tensor_dtype: str) -> str:
    """The protocol's datatype for a TensorFlow dtype name (``string`` -> ``BYTES``)."""
    return _BY_DTYPE.get(tensor_dtype, tensor_dtype.upper())


def shape_of(spec: TensorSpec) -> list[int]:
    """The spec's shape with -1 for free sizes (and [-1] for an unknown rank)."""
    return spec.dims() if spec.shape is not None else [-1]


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """An infer body made ready for the batcher: the signature and its inputs, with what the
    answer needs."""

    signature: str
    inputs: dict[str, np.ndarray]
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
    """An infer request -> a signature's inputs; InvalidInput (400) saying what is wrong.

    A JSON part over ``INLINE_PARSE_BYTES`` is parsed, and its numbers converted, off the event
    loop (:func:`app.offload.off_loop`), as TF Serving's bodies are; image files are decoded as
    uploads are, off the loop unless small.
    """
    head, binary = split_body(body, header_length)
    if len(head) > INLINE_PARSE_BYTES:
        parsed = await off_loop(_parse, head, binary, model, settings)
    else:
        parsed = _parse(head, binary, model, settings)
    inputs = dict(parsed.inputs)
    for key, tensor in parsed.images.items():
        files = _elements(tensor)
        images = [
            await _image(item, settings, f"{tensor.where}[{i}]", binary=tensor.data is None)
            for i, item in enumerate(files)
        ]
        inputs[key] = np.stack(images).astype(parsed.signature.inputs[key].dtype_info.numpy)
    if parsed.signature.batched:
        _same_batch(inputs)
    return InferRequest(parsed.signature.name, inputs, parsed.id, parsed.outputs)


@dataclass(frozen=True)
class _Parsed:
    """A request parsed but for its image files (``images``: tensors still to decode)."""

    signature: Signature
    inputs: dict[str, np.ndarray]
    images: dict[str, _Tensor]
    id: str | None
    outputs: tuple[RequestedOutput, ...]


def _parse(head: bytes, binary: bytes, model: LoadedModel, settings: Settings) -> _Parsed:
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
    name = parameters.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidInput("the parameter signature_name must be a string")
    signature = signature_of(model, name)
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput('"inputs" must be a non-empty list of input tensors')
    tensors = [_tensor(item, f"inputs[{i}]") for i, item in enumerate(inputs)]
    _claim_binary(tensors, binary)
    _check_names([tensor.name for tensor in tensors], model, signature)
    outputs = _requested_outputs(
        payload.get("outputs"), signature, bool(parameters.get("binary_data_output", False))
    )
    arrays: dict[str, np.ndarray] = {}
    images: dict[str, _Tensor] = {}
    for tensor in tensors:
        spec = signature.inputs[tensor.name]
        array = _to_array(tensor, spec, settings)
        if array is None:
            images[tensor.name] = tensor
        else:
            arrays[tensor.name] = array
    return _Parsed(signature, arrays, images, request_id, outputs)


def _check_names(names: list[str], model: LoadedModel, signature: Signature) -> None:
    expected = list(signature.inputs)
    if sorted(names) == sorted(expected) and len(set(names)) == len(names):
        return
    described = ", ".join(
        f"{key!r} ({datatype_of(spec.dtype)} {shape_of(spec)})"
        for key, spec in signature.inputs.items()
    )
    twice = sorted({n for n in names if names.count(n) > 1})
    problem = (
        f"the request sends {', '.join(map(repr, twice))} twice"
        if twice
        else (f"the request has {names}")
    )
    raise InvalidInput(
        f"model {model.name!r} (signature {signature.name!r}) takes "
        f"{'one input' if len(expected) == 1 else f'{len(expected)} inputs'}, {described}; "
        f"{problem}"
    )


def _same_batch(inputs: dict[str, np.ndarray]) -> None:
    sizes = {key: (len(array) if array.ndim else 0) for key, array in inputs.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidInput(
            "the inputs differ in their number of instances (first dimension): "
            + ", ".join(f"{k}: {n}" for k, n in sizes.items())
        )


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


def _to_array(tensor: _Tensor, spec: TensorSpec, settings: Settings) -> np.ndarray | None:
    """The request's tensor as the input's array; None for image files, which the caller
    decodes."""
    shape = _fit_shape(tensor, spec)
    if spec.batched:
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
    values = convert(_numbers(tensor), spec, tensor.where).reshape(shape)
    if image:
        wide = values.astype(np.float64, copy=False)
        outside = ~((wide >= 0) & (wide <= PIXEL_MAX))
        if outside.any():
            at = [int(i) for i in np.argwhere(outside)[0]]
            raise InvalidInput(
                f"{tensor.where} holds {float(wide[tuple(at)]):g} at {at}; pixels are 0-255"
            )
    return values


def _fit_shape(tensor: _Tensor, spec: TensorSpec) -> tuple[int, ...]:
    """The input's shape for the request's: equal, or with one trailing axis of 1 more."""
    got = tuple(tensor.shape)
    if spec.shape is None:
        return got
    want = spec.shape
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
    return got


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


def _text(item: str | bytes, settings: Settings, where: str) -> str | bytes:
    """A string element: JSON text checked as the other protocols check it; binary bytes as
    they are (a string tensor holds bytes), within ``MAX_REVIEW_CHARS``."""
    if isinstance(item, bytes):
        if len(item) > settings.max_review_chars:
            raise InvalidInput(
                f"{where} has {len(item)} bytes; at most "
                f"MAX_REVIEW_CHARS={settings.max_review_chars} are accepted in one string"
            )
        return item
    return string(item, where, settings.max_review_chars)


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
    if is_float(dtype) and not np.isfinite(values.astype(np.float64)).all():  # JSON has no inf
        raise InvalidInput(f"{tensor.where} holds values outside {tensor.datatype}")
    return values


def _requested_outputs(
    value: Any, signature: Signature, binary_default: bool
) -> tuple[RequestedOutput, ...]:
    if value is None or value == []:  # as Triton: no output asked for is every output
        return tuple(RequestedOutput(name, binary_default) for name in signature.outputs)
    if not isinstance(value, list):
        raise InvalidInput('"outputs" must be a list of {"name": ...} objects')
    requested: list[RequestedOutput] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f'outputs[{i}] must be an object with a "name"')
        name = item["name"]
        if name not in signature.outputs:
            raise InvalidInput(
                f"signature {signature.name!r} has no output {name!r} "
                f"(outputs: {', '.join(signature.outputs)})"
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
    outputs = prediction.outputs
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for wanted in request.outputs:
        array = outputs[wanted.name]
        tensor: dict[str, Any] = {
            "name": wanted.name,
            "datatype": "BYTES" if array.dtype.kind in "OSU" else _BY_NUMPY[array.dtype.name],
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
    if array.dtype.name == "bfloat16":  # not a type JSON encoders know: as float32
        return array.astype(np.float32).ravel()
    return array.ravel()
