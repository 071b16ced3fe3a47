"""TensorFlow Serving's JSON bodies <-> a signature's named NumPy arrays; signatures as JSON.

Predict, for any signature (``signature_name``, or ``serving_default``):

* row format, ``instances``: one entry per instance; for a signature of one input the value
  itself (or ``{input name: value}``), for several a ``{input name: value}`` object each. The
  answer is ``predictions``: one value per instance for one output, an object per instance for
  several.
* columnar format, ``inputs``: ``{input name: whole tensor}``, or the tensor itself for a
  single input. The answer is ``outputs``: the tensor for one output, an object for several.

Values are converted to each input's dtype and checked against its shape
(:mod:`app.tensors`); strings may be ``{"b64": ...}``, and outputs whose name ends in
``_bytes`` or that are not UTF-8 come back that way. As TF Serving, an input lacking its
trailing dimension of size 1 is accepted (``[1.0, 2.0]`` for ``[-1, 1]``), and then the
outputs' trailing dimension of size 1 is dropped too. Inputs of float dtype and shape
``[-1, 28, 28]`` (the digits model) also take ``28x28x1`` lists and ``{"b64": ...}`` image
files, decoded as the native upload endpoint decodes them.

Classify and regress (:func:`decode_examples`): ``examples`` (and ``context``) become
serialized ``tf.Example``s (:mod:`app.examples`) for a signature of that method, or a predict
signature of one string input; the answers are ``{"results": [[[label, score], ...], ...]}``
and ``{"results": [value, ...]}``.

Differences from TensorFlow Serving, by design: an unknown ``signature_name`` is a 404, as an
unknown model or version (TF Serving: 400); a request holds at most ``MAX_INSTANCES``
instances, each string at most ``MAX_REVIEW_CHARS`` characters; an image too large to decode
is a 413. As in TF Serving, the body is read as JSON whatever its content type.

Nothing of HTTP: bodies come in as bytes, and what cannot be served raises one of the service's
errors. Bodies over ``INLINE_PARSE_BYTES``, and small ones holding an image that is slow to
decode, are parsed off the event loop (:func:`app.offload.off_loop`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.codecs import INLINE_PARSE_BYTES, b64decode, image_error
from app.config import Settings
from app.errors import InvalidInput
from app.examples import serialized_examples
from app.inputs import ImageError, decode_digit, decodes_quickly
from app.model import LoadedModel
from app.offload import off_loop
from app.serving import Prediction, signature_of
from app.signatures import CLASSIFY, PREDICT, REGRESS, Signature, TensorSpec
from app.tensors import from_json, is_b64, json_type, to_json

PIXEL_MAX = 255.0
Arrays = dict[str, np.ndarray]


# ---- Predict requests --------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictRequest:
    """A predict body made ready for the batcher: the signature and its inputs; ``columnar``
    and ``squeeze`` (a trailing 1 was left out) say how to answer."""

    signature: str
    inputs: Arrays
    columnar: bool
    squeeze: bool = False


class SlowToDecode(Exception):
    """An image too slow to decode on the event loop; see :func:`parse_predict_request`."""


async def decode_predict(body: bytes, model: LoadedModel, settings: Settings) -> PredictRequest:
    """A predict body -> a signature's inputs, parsed on the loop or off it by its size."""
    if len(body) <= INLINE_PARSE_BYTES:
        with contextlib.suppress(SlowToDecode):
            return parse_predict_request(body, model, settings, inline=True)
    return await off_loop(parse_predict_request, body, model, settings)


def parse_predict_request(
    body: bytes, model: LoadedModel, settings: Settings, *, inline: bool = False
) -> PredictRequest:
    """A TF Serving predict body -> a signature's inputs; InvalidInput (400) when it cannot be.

    NotFound for an unknown signature; PayloadTooLarge for an image too large to decode.
    ``inline``: the caller is on the event loop, and gets SlowToDecode for an image that is
    slow to decode (a tiny PNG may declare a huge picture), to parse in a thread.
    """
    payload = _load_json(body)
    if not isinstance(payload, dict):
        raise InvalidInput(
            "the request body must be a JSON object with 'instances' (row format) "
            "or 'inputs' (columnar format)"
        )
    signature = signature_of(model, _signature_name(payload))
    if "instances" in payload and "inputs" in payload:
        raise InvalidInput("the request has both 'instances' and 'inputs'; send one of them")
    if "instances" in payload:
        columns = _rows(payload["instances"], signature, settings)
        columnar = False
    elif "inputs" in payload:
        columns = _columns(payload["inputs"], signature)
        columnar = True
    else:
        raise InvalidInput(
            "the request has neither 'instances' (row format) nor 'inputs' (columnar format)"
        )
    inputs: Arrays = {}
    squeeze = False
    for key, (value, where) in columns.items():
        spec = signature.inputs[key]
        array, expanded = _tensor(value, spec, where, settings, inline, rows=not columnar)
        inputs[key] = array
        squeeze |= expanded
    if signature.batched:
        _same_batch(inputs, "inputs" if columnar else "instances", settings)
    return PredictRequest(signature.name, inputs, columnar, squeeze)


def _signature_name(payload: dict[str, Any]) -> str:
    name = payload.get("signature_name", "")
    if not isinstance(name, str):
        raise InvalidInput("'signature_name' must be a string")
    return name


def _rows(instances: Any, signature: Signature, settings: Settings) -> dict[str, tuple[Any, str]]:
    """``instances`` -> each input's column of values (with where it came from)."""
    if not isinstance(instances, list):
        raise InvalidInput(
            f"'instances' must be a list with one entry per instance, not {json_type(instances)}"
        )
    if not instances:
        raise InvalidInput("instances is empty; send at least one instance")
    if len(instances) > settings.max_instances:
        raise InvalidInput(
            f"instances has {len(instances)} instances; at most "
            f"MAX_INSTANCES={settings.max_instances} per request"
        )
    keys = list(signature.inputs)
    if len(keys) == 1:
        key = keys[0]
        column = [_unwrap_single(item, key, f"instances[{i}]") for i, item in enumerate(instances)]
        return {key: (column, "instances")}
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict) or is_b64(instance):
            raise InvalidInput(
                f"instances[{index}] is {json_type(instance)}; the signature "
                f"{signature.name!r} has several inputs ({', '.join(keys)}): send an object "
                "{input name: value} per instance"
            )
        _check_names(instance, signature, f"instances[{index}]")
    return {key: ([item[key] for item in instances], f"instances.{key}") for key in keys}


def _columns(inputs: Any, signature: Signature) -> dict[str, tuple[Any, str]]:
    """``inputs`` -> each input's whole tensor."""
    keys = list(signature.inputs)
    if isinstance(inputs, dict) and not is_b64(inputs):
        _check_names(inputs, signature, "inputs")
        return {key: (inputs[key], f"inputs.{key}") for key in keys}
    if len(keys) != 1:
        raise InvalidInput(
            f"'inputs' must be an object {{input name: tensor}}: the signature "
            f"{signature.name!r} has several inputs ({', '.join(keys)})"
        )
    return {keys[0]: (inputs, "inputs")}


def _unwrap_single(value: Any, key: str, where: str) -> Any:
    """``{input name: value}`` -> value; anything else (``{"b64": ...}`` too) as it is."""
    if not isinstance(value, dict) or is_b64(value):
        return value
    if set(value) != {key}:
        names = ", ".join(repr(k) for k in sorted(value)) or "none"
        raise InvalidInput(f"{where} names the inputs {names}; the model's only input is {key!r}")
    return value[key]


def _check_names(value: dict[str, Any], signature: Signature, where: str) -> None:
    missing = [key for key in signature.inputs if key not in value]
    unknown = sorted(key for key in value if key not in signature.inputs)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(map(repr, missing))}")
        if unknown:
            parts.append(f"has unknown inputs {', '.join(map(repr, unknown))}")
        raise InvalidInput(
            f"{where} {' and '.join(parts)}; the signature {signature.name!r} takes "
            f"{', '.join(map(repr, signature.inputs))}"
        )


def _same_batch(inputs: Arrays, where: str, settings: Settings) -> None:
    sizes = {key: (len(array) if array.ndim else 0) for key, array in inputs.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidInput(
            f"{where}: the inputs differ in their number of instances (first dimension): "
            + ", ".join(f"{k}: {n}" for k, n in sizes.items())
        )
    size = next(iter(sizes.values()))
    if size == 0:
        raise InvalidInput(f"{where} holds no instance")
    if size > settings.max_instances:
        raise InvalidInput(
            f"{where} has {size} instances; at most MAX_INSTANCES={settings.max_instances} "
            "per request"
        )


def _tensor(
    value: Any, spec: TensorSpec, where: str, settings: Settings, inline: bool, rows: bool
) -> tuple[np.ndarray, bool]:
    if spec.is_image and isinstance(value, list):
        images = _images(value, spec, where, settings, inline)
        if images is not None:
            return images, False
    try:
        array, expanded = from_json(value, spec, where, settings.max_review_chars, lenient=True)
        if spec.is_image:
            _check_pixels(array, where)
        return array, expanded
    except InvalidInput:
        if rows and spec.batched and isinstance(value, list):
            # Point at the first instance that is wrong, if one is on its own.
            one = _instance_spec(spec)
            for index, item in enumerate(value):
                from_json(item, one, f"{where}[{index}]", settings.max_review_chars, lenient=True)
        raise


def _images(
    values: list[Any], spec: TensorSpec, where: str, settings: Settings, inline: bool
) -> np.ndarray | None:
    """A digits-shaped input: image files (``{"b64"}``) and ``28x28x1`` lists become 28x28
    pixels 0-255; None if the values are plain 28x28 lists (the generic path checks them)."""
    if not any(is_b64(v) or _has_channel_axis(v) for v in values):
        return None
    pixels = []
    for index, value in enumerate(values):
        at = f"{where}[{index}]"
        if is_b64(value):
            pixels.append(_image(value, settings, at, inline))
            continue
        if _has_channel_axis(value):
            value = [
                [cell[0] if isinstance(cell, list) and len(cell) == 1 else cell for cell in row]
                for row in value
            ]
        array, _ = from_json(value, _instance_spec(spec), at, settings.max_review_chars)
        pixels.append(array)
    batch = np.stack(pixels).astype(spec.dtype_info.numpy)
    _check_pixels(batch, where)
    return batch


def _check_pixels(batch: np.ndarray, where: str) -> None:
    wide = batch.astype(np.float64, copy=False)
    outside = ~((wide >= 0) & (wide <= PIXEL_MAX))
    if outside.any():
        at_index = tuple(int(i) for i in np.argwhere(outside)[0])
        raise InvalidInput(
            f"{where}[{at_index[0]}] holds {float(wide[at_index]):g} at {list(at_index[1:])}; "
            "pixel values are 0 to 255"
        )


def _has_channel_axis(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and isinstance(value[0], list)
        and bool(value[0])
        and isinstance(value[0][0], list)
    )


def _instance_spec(spec: TensorSpec) -> TensorSpec:
    assert spec.shape is not None
    return TensorSpec(spec.key, spec.dtype, spec.shape[1:], spec.tensor_name)


def _image(value: dict[str, Any], settings: Settings, where: str, inline: bool) -> np.ndarray:
    encoded = value["b64"]
    if not isinstance(encoded, str):
        raise InvalidInput(f'{where}: the "b64" value must be a base64 string')
    data = b64decode(encoded, f'{where}: the "b64" value')
    if inline and not decodes_quickly(data):
        raise SlowToDecode(where)
    try:
        return decode_digit(data, settings.max_image_side)
    except ImageError as exc:
        raise image_error(exc, where) from exc


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


# ---- Predict responses -------------------------------------------------------------------------


def encode_predict(prediction: Prediction[PredictRequest]) -> dict[str, Any]:
    """``predictions`` for a row-format request, ``outputs`` for a columnar one."""
    request = prediction.request
    outputs = prediction.outputs
    if request.squeeze:
        outputs = {
            k: v[..., 0] if v.ndim >= 2 and v.shape[-1] == 1 else v for k, v in outputs.items()
        }
    if request.columnar:
        if len(outputs) == 1:
            ((name, array),) = outputs.items()
            return {"outputs": to_json(array, name.endswith("_bytes"))}
        return {"outputs": {k: to_json(v, k.endswith("_bytes")) for k, v in outputs.items()}}
    sizes = {k: (len(v) if v.ndim else None) for k, v in outputs.items()}
    if None in sizes.values() or len(set(sizes.values())) > 1:
        raise InvalidInput(
            "the outputs do not share a batch dimension ("
            + ", ".join(f"{k}: {v.shape}" for k, v in outputs.items())
            + "), which the row format needs: send 'inputs' (columnar format) instead"
        )
    if len(outputs) == 1:
        ((name, array),) = outputs.items()
        return {"predictions": to_json(array, name.endswith("_bytes"))}
    columns = {k: to_json(v, k.endswith("_bytes")) for k, v in outputs.items()}
    size = next(iter(sizes.values())) or 0
    return {"predictions": [{k: column[i] for k, column in columns.items()} for i in range(size)]}


# ---- Classify and regress ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExamplesRequest:
    """A classify or regress body: serialized examples for the signature's one input."""

    signature: str
    inputs: Arrays
    method: str


async def decode_examples(
    body: bytes, model: LoadedModel, settings: Settings, method: str
) -> ExamplesRequest:
    if len(body) <= INLINE_PARSE_BYTES:
        return parse_examples_request(body, model, settings, method)
    return await off_loop(parse_examples_request, body, model, settings, method)


def parse_examples_request(
    body: bytes, model: LoadedModel, settings: Settings, method: str
) -> ExamplesRequest:
    """A classify (``method`` CLASSIFY) or regress body -> serialized examples for a signature
    that can answer it; 400 for a body or a signature that cannot."""
    payload = _load_json(body)
    if not isinstance(payload, dict):
        raise InvalidInput("the request body must be a JSON object with 'examples'")
    signature = signature_of(model, _signature_name(payload))
    key = examples_input(signature, method, model.info.parses_examples)
    if "examples" not in payload:
        raise InvalidInput("the request has no 'examples' (a list of feature objects)")
    serialized = serialized_examples(
        payload["examples"],
        payload.get("context"),
        settings.max_review_chars,
        settings.max_instances,
    )
    return ExamplesRequest(signature.name, {key: serialized}, method)


def examples_input(signature: Signature, method: str, parses_examples: bool) -> str:
    """The input that takes serialized examples, if the signature can answer ``method``: one
    of that method, or a predict signature of a model that parses tf.Examples."""
    verb = "classify" if method == CLASSIFY else "regress"
    if signature.method != method and not (signature.method == PREDICT and parses_examples):
        raise InvalidInput(
            f"signature {signature.name!r} is a {signature.method} signature; :{verb} needs a "
            f"{method} signature (or a predict signature that takes serialized tf.Examples)"
        )
    inputs = list(signature.inputs.values())
    if len(inputs) != 1 or inputs[0].dtype != "string":
        raise InvalidInput(
            f"signature {signature.name!r} does not take serialized tf.Examples (one string "
            f"input); :{verb} cannot feed it"
        )
    outputs = signature.outputs
    if method == CLASSIFY and not ({"classes", "scores"} & set(outputs)):
        raise InvalidInput(
            f"signature {signature.name!r} has no 'classes' or 'scores' output to classify with"
        )
    if method == REGRESS and "outputs" not in outputs and len(outputs) != 1:
        raise InvalidInput(f"signature {signature.name!r} has no 'outputs' output to regress with")
    return inputs[0].key


def encode_examples(prediction: Prediction[ExamplesRequest]) -> dict[str, Any]:
    """TF Serving's ``results`` for classify (label-score pairs) or regress (values)."""
    outputs = prediction.outputs
    size = len(next(iter(prediction.request.inputs.values())))
    if prediction.request.method == REGRESS:
        values = outputs["outputs"] if "outputs" in outputs else next(iter(outputs.values()))
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape != (size,):
            raise InvalidInput(
                f"the regression output has shape {list(values.shape)}; expected [{size}] "
                f"or [{size}, 1]"
            )
        return {"results": values.astype(np.float64).tolist()}
    return {"results": _classifications(outputs, size)}


def _classifications(outputs: Arrays, size: int) -> list[list[list[Any]]]:
    classes = outputs.get("classes")
    scores = outputs.get("scores")
    for name, array in (("classes", classes), ("scores", scores)):
        if array is not None and (array.ndim != 2 or len(array) != size):
            raise InvalidInput(
                f"the {name} output has shape {list(array.shape)}; classify expects "
                f"[{size}, number of classes]"
            )
    count = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    labels = to_json(classes) if classes is not None else [[""] * count for _ in range(size)]
    scored = (
        scores.astype(np.float64).tolist()
        if scores is not None
        else [[0.0] * count for _ in range(size)]
    )
    return [
        [
            [label if isinstance(label, str) else "", score]
            for label, score in zip(ls, vs, strict=False)
        ]
        for ls, vs in zip(labels, scored, strict=True)
    ]


# ---- Signatures --------------------------------------------------------------------------------


def signature_defs_json(model: LoadedModel) -> dict[str, Any]:
    """Every signature as TF Serving's metadata API writes its SignatureDefs in JSON."""
    return {name: _signature_json(signature) for name, signature in model.signatures.items()}


def _signature_json(signature: Signature) -> dict[str, Any]:
    return {
        "inputs": {key: _tensor_json(spec) for key, spec in signature.inputs.items()},
        "outputs": {key: _tensor_json(spec) for key, spec in signature.outputs.items()},
        "method_name": signature.method,
    }


def _tensor_json(spec: TensorSpec) -> dict[str, Any]:
    shape: dict[str, Any]
    if spec.shape is None:
        shape = {"dim": [], "unknown_rank": True}
    else:
        shape = {
            "dim": [{"size": str(d), "name": ""} for d in spec.dims()],
            "unknown_rank": False,
        }
    return {"dtype": spec.dtype_info.tf_enum_name, "tensor_shape": shape, "name": spec.tensor_name}
