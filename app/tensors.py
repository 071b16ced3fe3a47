"""Tensors on the wire <-> NumPy arrays of a signature's dtypes and shapes: what the protocol
codecs share.

* :func:`from_json`: a tensor as nested JSON lists (TF Serving's bodies, OIP's nested
  ``data``) -> an array of the signature input's dtype and shape. Strings may be
  ``{"b64": ...}``; booleans only for bool inputs; integers only, in range, for integer
  inputs (no fractions, no NaN); numbers for float inputs, refusing what overflows the dtype.
* :func:`convert`: an array of a wire datatype (OIP's typed data, binary buffers) -> the
  input's dtype, refusing values that do not fit.
* :func:`fit_shape`: a request's shape against the signature's, with TF Serving's one leniency
  (a missing trailing dimension of size 1) when asked for.
* :func:`to_json`: an output array -> JSON values (strings as text, or ``{"b64"}`` where they
  are not UTF-8 or the output's name ends in ``_bytes``, as TF Serving writes them).

Every refusal is an :class:`~app.errors.InvalidInput` (400) saying where and what.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from app.codecs import b64decode
from app.errors import InvalidInput
from app.signatures import TensorSpec

MAX_DIMS = 32  # NumPy's iterators stop at 32 dimensions


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def json_type(value: Any) -> str:
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


def shape_text(shape: tuple[int | None, ...] | list[int] | None) -> str:
    if shape is None:
        return "[unknown rank]"
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


# ---- shapes -----------------------------------------------------------------------------------


def fit_shape(got: tuple[int, ...], spec: TensorSpec, where: str, *, lenient: bool = False) -> bool:
    """Check ``got`` against the spec's shape; True when it lacks the spec's trailing
    dimension of size 1 (accepted only with ``lenient``: the caller adds it)."""
    want = spec.shape
    if want is None:
        return False
    if (
        lenient
        and len(want) >= 1
        and want[-1] == 1
        and len(got) == len(want) - 1
        and _matches(got, want[:-1])
    ):
        return True
    if not _matches(got, want):
        raise InvalidInput(
            f"{where} has shape {shape_text(got)}; the model's input {spec.key!r} takes "
            f"{spec.describe()}"
        )
    return False


def _matches(got: tuple[int, ...], want: tuple[int | None, ...]) -> bool:
    return len(got) == len(want) and all(
        w is None or g == w for g, w in zip(got, want, strict=True)
    )


# ---- JSON -> arrays ---------------------------------------------------------------------------


def from_json(
    value: Any, spec: TensorSpec, where: str, max_chars: int, *, lenient: bool = False
) -> tuple[np.ndarray, bool]:
    """One whole tensor from nested JSON lists; and whether a trailing 1 was added."""
    if spec.dtype == "string":
        array = strings(value, where, max_chars)
    else:
        array = numbers(value, spec, where)
    expanded = fit_shape(array.shape, spec, where, lenient=lenient)
    if expanded:
        array = array[..., np.newaxis]
    return array, expanded


def strings(value: Any, where: str, max_chars: int) -> np.ndarray:
    """Nested lists of strings (or ``{"b64"}``) -> an object array of str and bytes."""
    if isinstance(value, list) and not any(isinstance(item, list | dict) for item in value):
        # A flat list of strings: the common case, without the nesting walk.
        leaves = [string(item, f"{where}[{i}]", max_chars) for i, item in enumerate(value)]
        array = np.empty(len(leaves), dtype=object)
        array[:] = leaves
        return array
    nested = _strings_nested(value, where, max_chars, 0)
    try:
        array = np.array(nested, dtype=object)
    except (ValueError, RecursionError):
        raise InvalidInput(f"{where} is ragged: its lists differ in length") from None
    if any(isinstance(leaf, list) for leaf in array.flat):
        raise InvalidInput(f"{where} is ragged: its lists differ in length or depth")
    return array


def _strings_nested(value: Any, where: str, max_chars: int, depth: int) -> Any:
    if isinstance(value, list):
        if depth >= MAX_DIMS:
            raise InvalidInput(f"{where} is nested too deep (over {MAX_DIMS} levels of lists)")
        return [
            _strings_nested(item, f"{where}[{i}]", max_chars, depth + 1)
            for i, item in enumerate(value)
        ]
    return string(value, where, max_chars)


def string(value: Any, where: str, max_chars: int) -> str | bytes:
    """A JSON string (valid text) or ``{"b64": ...}`` (bytes), at most ``max_chars`` long."""
    text: str | bytes
    if is_b64(value):
        encoded = value["b64"]
        if not isinstance(encoded, str):
            raise InvalidInput(f'{where}: the "b64" value must be a base64 string')
        text = b64decode(encoded, f'{where}: the "b64" value')
    elif isinstance(value, str):
        text = value
        if not text.isascii():
            try:  # JSON's "\ud800" escapes: lone surrogates, which TensorFlow cannot encode
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidInput(f"{where} is not valid text: {exc.reason}") from None
    else:
        raise InvalidInput(
            f"{where} is {json_type(value)}; the model takes strings "
            '(or {"b64": "<base64>"} for binary ones)'
        )
    if len(text) > max_chars:
        raise InvalidInput(
            f"{where} has {len(text)} characters; at most MAX_REVIEW_CHARS={max_chars} are "
            "accepted in one string"
        )
    return text


def numbers(value: Any, spec: TensorSpec, where: str) -> np.ndarray:
    """Nested lists of JSON numbers (booleans for a bool input) -> an array of the spec's
    dtype; its shape is checked by the caller."""
    try:
        array = np.array(value, dtype=object)
    except (ValueError, RecursionError):
        raise InvalidInput(f"{where} is ragged: its lists differ in length") from None
    rank = len(spec.shape) if spec.shape is not None else MAX_DIMS
    if array.ndim > rank + 1:
        # Said here, before NumPy's iterators (which stop at 32 dimensions) walk them.
        raise InvalidInput(
            f"{where} is nested too deep (at least {array.ndim} levels of lists); the model's "
            f"input {spec.key!r} takes {spec.describe()}"
        )
    kind = spec.dtype_info.kind
    types = set(map(type, array.flat)) if array.size else set()
    allowed: set[type]
    if kind == "b":
        allowed, what = {bool}, "true or false"
    elif kind in "iu":
        allowed, what = {int}, "whole numbers"
    else:
        allowed, what = {int, float}, "numbers"
    if not types <= allowed:
        if list in types:
            raise InvalidInput(
                f"{where} is ragged or nested too deep: its lists differ in length or depth "
                f"(the model's input {spec.key!r} takes {spec.describe()})"
            )
        bad = next(item for item in array.flat if type(item) not in allowed)
        if kind in "iu" and type(bad) is float and bad.is_integer():
            # A whole number past 64 bits, which the JSON parser read as a float.
            info = np.iinfo(np.dtype(spec.dtype_info.numpy))
            if not info.min <= bad <= info.max:
                raise InvalidInput(
                    f"{where} holds values outside the range of {spec.dtype} "
                    f"({info.min} to {info.max})"
                )
        if kind in "iu" and type(bad) is float:
            raise InvalidInput(
                f"{where} holds {bad!r}; the model's input {spec.key!r} ({spec.describe()}) "
                "takes whole numbers"
            )
        raise InvalidInput(
            f"{where} holds {json_type(bad)}; the model's input {spec.key!r} "
            f"({spec.describe()}) takes {what}"
        )
    if kind == "b":
        return array.astype(bool)
    dtype = np.dtype(spec.dtype_info.numpy)
    if kind in "iu":
        info = np.iinfo(dtype)
        low, high = (min(array.flat), max(array.flat)) if array.size else (0, 0)
        if low < info.min or high > info.max:
            raise InvalidInput(
                f"{where} holds values outside the range of {spec.dtype} ({info.min} to {info.max})"
            )
        return array.astype(dtype)
    return _floats(array.astype(np.float64), dtype, spec.dtype, where)


def _floats(values: np.ndarray, dtype: np.dtype[Any], name: str, where: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        converted = values.astype(dtype)
    if (np.isfinite(values) & ~np.isfinite(converted.astype(np.float64))).any():
        raise InvalidInput(f"{where} holds values outside the range of {name}")
    return converted


def convert(values: np.ndarray, spec: TensorSpec, where: str) -> np.ndarray:
    """Numbers of a wire datatype -> the input's dtype, refusing what does not fit: booleans
    only for bool, whole numbers in range for integers, no booleans for numbers."""
    target = np.dtype(spec.dtype_info.numpy)
    kind = spec.dtype_info.kind
    if kind == "b":
        if values.dtype.kind != "b":
            raise InvalidInput(f"{where} must be BOOL for the model's {spec.dtype} input")
        return values
    if values.dtype.kind == "b":
        raise InvalidInput(f"{where} must be numeric, not BOOL, for the model's {spec.dtype}")
    if kind in "iu":
        if values.dtype.kind not in "iu":
            raise InvalidInput(
                f"{where} must be an integer datatype for the model's {spec.dtype} input"
            )
        info = np.iinfo(target)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise InvalidInput(f"{where} holds values outside the model's {spec.dtype}")
        return values.astype(target)
    if values.dtype == target:
        return values
    # Floats of another width, or whole numbers: through float64, refusing what overflows.
    return _floats(values.astype(np.float64), target, spec.dtype, where)


def is_float(dtype: np.dtype[Any]) -> bool:
    """Floating point, bfloat16 included (NumPy files ml_dtypes' bfloat16 under kind ``V``)."""
    return dtype.kind == "f" or dtype.name == "bfloat16"


# ---- arrays -> JSON ---------------------------------------------------------------------------


def to_json(array: np.ndarray, binary: bool = False) -> Any:
    """An output array as JSON values: numbers, booleans, strings (``{"b64"}`` for bytes that
    are not UTF-8 text, or all of them with ``binary``)."""
    kind = array.dtype.kind
    if kind in "iub":
        return array.tolist()
    if kind in "OSU":
        return _strings_json(array.tolist(), binary)
    if kind == "f" and array.dtype.itemsize == 8:
        return array.tolist()
    return array.astype(np.float64).tolist()  # float16, float32, bfloat16


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
