"""TensorFlow Serving's JSON bodies <-> the models' NumPy batches, and their signatures as JSON.

A predict body holds ``instances`` (row format: one entry per instance, the value or
``{input name: value}``) or ``inputs`` (columnar: the whole batch, or ``{input name: batch}``).
Any model's ``serving_default`` input is served: values are converted to its dtype and shape,
strings may be ``{"b64": ...}`` for binary ones. Inputs of float dtype and shape
``[-1, 28, 28]`` (digits) also take ``28x28x1`` lists and ``{"b64": ...}`` image files, decoded
as the native upload endpoint decodes them (:func:`app.inputs.decode_digit`).

Differences from TensorFlow Serving, by design:

* an unknown ``signature_name`` is a 404 (:class:`~app.errors.NotFound`), as an unknown model or
  version (TF Serving: 400);
* a request may hold at most ``MAX_INSTANCES`` instances, each string at most
  ``MAX_REVIEW_CHARS`` characters; an image too large to decode is a 413
  (:class:`~app.errors.PayloadTooLarge`).

As in TF Serving, ``signature_name`` may be left out or empty, the body is read as JSON whatever
its content type (``curl -d`` sends a form type), and strings may be empty.

Nothing of HTTP: bodies come in as bytes, and what cannot be served raises one of the service's
errors (:class:`~app.errors.InvalidInput`, a 400, for a bad body), for the routes to pass on.
Bodies over ``INLINE_PARSE_BYTES``, and small ones holding an image that is slow to decode, are
parsed off the event loop (:func:`app.offload.off_loop`: bounded threads, under the request's
deadline).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from app.codecs import INLINE_PARSE_BYTES, b64decode, image_error
from app.config import Settings
from app.errors import InvalidInput, NotFound
from app.inputs import ImageError, decode_digit, decodes_quickly
from app.model import SIGNATURE, LoadedModel, TensorInfo
from app.offload import off_loop
from app.serving import Prediction

PIXEL_MAX = 255.0


# ---- Predict requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictRequest:
    """A predict body made ready for the batcher; ``columnar`` says how to answer."""

    inputs: np.ndarray  # first axis: instances
    columnar: bool


class SlowToDecode(Exception):
    """An image too slow to decode on the event loop; see :func:`parse_predict_request`."""


async def decode_predict(body: bytes, model: LoadedModel, settings: Settings) -> PredictRequest:
    """A predict body -> the model's input batch, parsed on the loop or off it by its size."""
    if len(body) <= INLINE_PARSE_BYTES:
        with contextlib.suppress(SlowToDecode):
            return parse_predict_request(body, model, settings, inline=True)
    return await off_loop(parse_predict_request, body, model, settings)


def encode_predict(prediction: Prediction[PredictRequest]) -> dict[str, Any]:
    """``predictions`` for a row-format request, ``outputs`` for a columnar one."""
    values = output_json(prediction.outputs, prediction.model.output)
    return {"outputs" if prediction.request.columnar else "predictions": values}


def parse_predict_request(
    body: bytes, model: LoadedModel, settings: Settings, *, inline: bool = False
) -> PredictRequest:
    """A TF Serving predict body -> the model's input batch; InvalidInput (400) when it cannot be.

    NotFound for a signature other than ``serving_default``; PayloadTooLarge for an image too
    large to decode. ``inline``: the caller is on the event loop, and gets SlowToDecode for an
    image that is slow to decode (a tiny PNG may declare a huge picture), to parse in a thread.
    """
    payload = _load_json(body)
    if not isinstance(payload, dict):
        raise InvalidInput(
            "the request body must be a JSON object with 'instances' (row format) "
            "or 'inputs' (columnar format)"
        )
    signature = payload.get("signature_name", SIGNATURE)
    if not isinstance(signature, str):
        raise InvalidInput("'signature_name' must be a string")
    if signature not in ("", SIGNATURE):
        raise NotFound(
            f"model {model.name!r} version {model.version} has no signature {signature!r} "
            f"(signatures: {SIGNATURE!r})"
        )
    if "instances" in payload and "inputs" in payload:
        raise InvalidInput("the request has both 'instances' and 'inputs'; send one of them")
    spec = model.input
    if "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list):
            raise InvalidInput(
                f"'instances' must be a list with one entry per instance, "
                f"not {_json_type(instances)}"
            )
        values = [
            _unwrap_named(instance, spec.name, f"instances[{index}]")
            for index, instance in enumerate(instances)
        ]
        where, columnar = "instances", False
    elif "inputs" in payload:
        values = payload["inputs"]
        where, columnar = "inputs", True
        if isinstance(values, dict) and not _is_b64(values):
            values = _unwrap_named(values, spec.name, "inputs")
            where = f"inputs.{spec.name}"
        if not isinstance(values, list):
            raise InvalidInput(
                f"{where} must be a list with one entry per instance (the model's input "
                f"{spec.name!r} is {_describe(spec)}), not {_json_type(values)}"
            )
    else:
        raise InvalidInput(
            "the request has neither 'instances' (row format) nor 'inputs' (columnar format)"
        )
    if not values:
        raise InvalidInput(f"{where} is empty; send at least one instance")
    if len(values) > settings.max_instances:
        raise InvalidInput(
            f"{where} has {len(values)} instances; at most "
            f"MAX_INSTANCES={settings.max_instances} per request"
        )
    return PredictRequest(_to_batch(values, spec, settings, where, inline), columnar)


def _load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # TF Serving also takes the NaN, Infinity and -Infinity tokens, which orjson refuses.
        if b"NaN" in body or b"Infinity" in body:
            try:
                payload = json.loads(body.decode("utf-8"))
                # What orjson would have refused besides (lone surrogates, which TensorFlow
                # cannot encode; integers past 64 bits) stays refused.
                orjson.dumps(payload)
                return payload
            except (ValueError, RecursionError, orjson.JSONEncodeError):
                pass
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _unwrap_named(value: Any, input_name: str, where: str) -> Any:
    """``{input name: value}`` -> value; anything else (``{"b64": ...}`` too) as it is."""
    if not isinstance(value, dict) or _is_b64(value):
        return value
    if set(value) != {input_name}:
        names = ", ".join(repr(key) for key in sorted(value)) or "none"
        raise InvalidInput(
            f"{where} names the inputs {names}; the model's only input is {input_name!r}"
        )
    return value[input_name]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _describe(spec: TensorInfo) -> str:
    dims = ", ".join("-1" if d is None else str(d) for d in spec.shape)
    return f"{spec.dtype}[{dims}]"


def _to_batch(
    values: list[Any], spec: TensorInfo, settings: Settings, where: str, inline: bool = False
) -> np.ndarray:
    if not spec.shape:
        raise InvalidInput(f"the model's input {spec.name!r} has no batch dimension")
    if spec.shape[0] is not None and len(values) != spec.shape[0]:
        raise InvalidInput(
            f"{where} has {len(values)} instances; the model takes exactly {spec.shape[0]}"
        )
    inner = spec.shape[1:]
    if spec.dtype == "string":
        return _string_batch(values, inner, settings, where)
    if spec.is_image and any(_is_b64(value) for value in values):
        return np.stack(
            [
                _image(value, settings, f"{where}[{index}]", inline)
                if _is_b64(value)
                else _numeric(value, inner, spec, f"{where}[{index}]")
                for index, value in enumerate(values)
            ]
        ).astype(spec.dtype)
    try:
        return _numeric(values, (len(values), *inner), spec, where)
    except InvalidInput:
        # Point at the first instance that is wrong, if one is on its own.
        for index, value in enumerate(values):
            _numeric(value, inner, spec, f"{where}[{index}]")
        raise


# ---- Strings


def _string_batch(
    values: list[Any], inner: tuple[int | None, ...], settings: Settings, where: str
) -> np.ndarray:
    if not inner:  # one string per instance: the common case, without the nesting walk
        leaves = [
            _string(value, settings, f"{where}[{index}]") for index, value in enumerate(values)
        ]
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array
    try:
        nested = [
            _strings_nested(value, settings, f"{where}[{index}]")
            for index, value in enumerate(values)
        ]
        array = np.array(nested, dtype=object)
    except (ValueError, RecursionError):
        raise InvalidInput(f"{where} is ragged: its lists differ in length") from None
    _check_depth(array, (len(values), *inner), where)
    if any(isinstance(leaf, list) for leaf in array.flat):
        raise InvalidInput(f"{where} is ragged: its lists differ in length or depth")
    _check_shape(array.shape, (len(values), *inner), where)
    return array


def _strings_nested(value: Any, settings: Settings, where: str) -> Any:
    if isinstance(value, list):
        return [_strings_nested(item, settings, f"{where}[{i}]") for i, item in enumerate(value)]
    return _string(value, settings, where)


def _string(value: Any, settings: Settings, where: str) -> str | bytes:
    text: str | bytes
    if _is_b64(value):
        text = _b64decode(value["b64"], where)
    elif isinstance(value, str):
        text = value
    else:
        raise InvalidInput(
            f"{where} is {_json_type(value)}; the model takes strings "
            '(or {"b64": "<base64>"} for binary ones)'
        )
    if len(text) > settings.max_review_chars:
        raise InvalidInput(
            f"{where} has {len(text)} characters; at most "
            f"MAX_REVIEW_CHARS={settings.max_review_chars} are accepted"
        )
    return text


def _b64decode(encoded: Any, where: str) -> bytes:
    if not isinstance(encoded, str):
        raise InvalidInput(f'{where}: the "b64" value must be a base64 string')
    return b64decode(encoded, f'{where}: the "b64" value')


# ---- Numbers and images


def _image(value: dict[str, Any], settings: Settings, where: str, inline: bool) -> np.ndarray:
    data = _b64decode(value["b64"], where)
    if inline and not decodes_quickly(data):
        raise SlowToDecode(where)
    try:
        return decode_digit(data, settings.max_image_side)
    except ImageError as exc:
        raise image_error(exc, where) from exc


_NUMBER_TYPES = {int, float}


def _numeric(value: Any, shape: tuple[int | None, ...], spec: TensorInfo, where: str) -> np.ndarray:
    """Nested lists of JSON numbers (booleans for a bool input) -> an array of ``spec.dtype``."""
    image = spec.is_image
    try:
        array = np.array(value, dtype=object)
    except (ValueError, RecursionError):
        raise InvalidInput(f"{where} is ragged: its lists differ in length") from None
    _check_depth(array, shape, where, channel_axis=image)
    types = set(map(type, array.flat)) if array.size else set()
    allowed: set[type]
    if spec.dtype == "bool":
        allowed, what = {bool}, "true or false"
    elif spec.dtype.startswith(("int", "uint")):
        allowed, what = {int}, "integers"
    else:
        allowed, what = _NUMBER_TYPES, "numbers"
    if not types <= allowed:
        if list in types:
            raise InvalidInput(
                f"{where} is ragged or nested too deep: its lists differ in length or depth "
                f"(expected shape {_shape_text(shape)})"
            )
        bad = next(item for item in array.flat if type(item) not in allowed)
        raise InvalidInput(
            f"{where} holds {_json_type(bad)}; the model's input {spec.name!r} "
            f"({_describe(spec)}) takes {what}"
            + (' (an image file goes in {"b64": "<base64>"})' if image and _is_b64(bad) else "")
        )
    if image and array.ndim == len(shape) + 1 and array.shape[-1] == 1:
        array = array[..., 0]  # 28x28x1, a channel axis: as 28x28
    _check_shape(array.shape, shape, where)
    if spec.dtype == "bool":
        return array.astype(bool)
    dtype = np.dtype(_numpy_dtype(spec.dtype))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = (min(array.flat), max(array.flat)) if array.size else (0, 0)
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"{where} holds values outside the range of {spec.dtype} ({info.min} to {info.max})"
            )
        return array.astype(dtype)
    numbers = array.astype(np.float64)
    if image:
        outside = ~((numbers >= 0) & (numbers <= PIXEL_MAX))
        if outside.any():
            at = tuple(int(i) for i in np.argwhere(outside)[0])
            raise InvalidInput(
                f"{where} holds {float(numbers[at]):g} at {list(at)}; pixel values are 0 to 255"
            )
    with np.errstate(over="ignore", invalid="ignore"):
        converted = numbers.astype(dtype)
    if (np.isfinite(numbers) & ~np.isfinite(converted)).any():
        raise InvalidInput(f"{where} holds values outside the range of {spec.dtype}")
    return converted


def _numpy_dtype(dtype: str) -> Any:
    try:
        return np.dtype(dtype)
    except TypeError:
        import tensorflow as tf  # bfloat16 and the like: ml_dtypes through TensorFlow

        try:
            return tf.as_dtype(dtype).as_numpy_dtype
        except TypeError:
            raise InvalidInput(f"inputs of dtype {dtype} are not supported by this API") from None


def _check_depth(
    array: np.ndarray, want: tuple[int | None, ...], where: str, channel_axis: bool = False
) -> None:
    """Lists nested deeper than the model's input: said here, before NumPy's iterators, which
    stop at 32 dimensions (NumPy nests up to 64), have to walk them."""
    if array.ndim > len(want) + channel_axis:
        raise InvalidInput(
            f"{where} is nested too deep (at least {array.ndim} levels of lists); "
            f"the model takes {_shape_text(want)}"
        )


def _check_shape(got: tuple[int, ...], want: tuple[int | None, ...], where: str) -> None:
    if len(got) != len(want) or any(
        w is not None and g != w for g, w in zip(got, want, strict=False)
    ):
        raise InvalidInput(
            f"{where} has shape {_shape_text(got)}; the model takes {_shape_text(want)}"
        )


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


# ---- Predict responses -------------------------------------------------------------------------


def output_json(outputs: np.ndarray, spec: TensorInfo) -> Any:
    """The model's output batch as TF Serving writes it: nested lists of JSON values."""
    kind = outputs.dtype.kind
    if kind in "iub":
        return outputs.tolist()
    if kind in "OSU":
        binary = spec.name.endswith("_bytes")
        return _strings_json(outputs.tolist(), binary)
    return outputs.astype(float).tolist()


def _strings_json(value: Any, binary: bool) -> Any:
    if isinstance(value, list):
        return [_strings_json(item, binary) for item in value]
    if isinstance(value, bytes):
        if not binary:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


# ---- Signatures --------------------------------------------------------------------------------


def signature_def_json(model: LoadedModel) -> dict[str, Any]:
    """The ``serving_default`` SignatureDef as TF Serving writes it in JSON.

    Read from the model's ``saved_model.pb`` (once per model folder), for the graph's own tensor
    names; should that fail, made up from the loaded signature with TF2's usual names.
    """
    found = _signature_def_from_file(str(model.path))
    if found is not None:
        return found
    return {
        "inputs": {
            key: _tensor_json(info, f"{SIGNATURE}_{key}:0") for key, info in model.inputs.items()
        },
        "outputs": {
            key: _tensor_json(info, f"StatefulPartitionedCall:{index}")
            for index, (key, info) in enumerate(model.outputs.items())
        },
        "method_name": "tensorflow/serving/predict",
    }


@functools.lru_cache(maxsize=256)
def _signature_def_from_file(path: str) -> dict[str, Any] | None:
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
        signature = saved.meta_graphs[0].signature_def[SIGNATURE]
    except Exception:  # read or parse error, no graph or no signature: use the fallback
        return None

    def tensor(info: Any) -> dict[str, Any]:
        shape = info.tensor_shape
        return {
            "dtype": types_pb2.DataType.Name(info.dtype),
            "tensor_shape": {
                "dim": [{"size": str(dim.size), "name": dim.name} for dim in shape.dim],
                "unknown_rank": shape.unknown_rank,
            },
            "name": info.name,
        }

    return {
        "inputs": {key: tensor(signature.inputs[key]) for key in sorted(signature.inputs)},
        "outputs": {key: tensor(signature.outputs[key]) for key in sorted(signature.outputs)},
        "method_name": signature.method_name,
    }


def _tensor_json(info: TensorInfo, tensor_name: str) -> dict[str, Any]:
    import tensorflow as tf

    return {
        "dtype": "DT_" + tf.as_dtype(info.dtype).name.upper(),
        "tensor_shape": {
            "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in info.shape],
            "unknown_rank": False,
        },
        "name": tensor_name,
    }
