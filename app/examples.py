"""TF Serving's ``examples`` and ``context`` JSON -> serialized ``tf.train.Example`` protos.

What ``:classify`` and ``:regress`` feed a signature that parses ``tf.Example``s, built as
TensorFlow Serving builds them: each feature's value is one JSON value or a list of them;
whole numbers (and booleans, as 0 and 1) go in an ``int64_list``, decimals in a
``float_list``, strings (UTF-8) and ``{"b64": ...}`` (raw bytes) in a ``bytes_list``. The
``context``'s features are in every example; an example's own feature of the same name wins.

Refused with a 400 (:class:`~app.errors.InvalidInput`) saying where: a feature mixing kinds
(``[1, 2.5]`` is a float list, ``[1, "a"]`` nothing), a feature whose kind differs from one
example to another (the parser would fail the whole batch), nulls, nested lists, integers
outside int64, an example that is not an object.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2

from app.errors import InvalidInput
from app.tensors import is_b64, json_type, string

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

Kind = str  # "int64", "float", "bytes"


def serialized_examples(
    examples: Any, context: Any, max_chars: int, max_instances: int
) -> np.ndarray:
    """The request's examples as a string array of serialized protos, one per example."""
    if not isinstance(examples, list):
        raise InvalidInput(
            f"'examples' must be a list of objects (feature name -> value), not "
            f"{json_type(examples)}"
        )
    if not examples:
        raise InvalidInput("'examples' is empty; send at least one example")
    if len(examples) > max_instances:
        raise InvalidInput(
            f"'examples' has {len(examples)} examples; at most MAX_INSTANCES={max_instances} "
            "per request"
        )
    kinds: dict[str, tuple[Kind, str]] = {}  # feature -> (kind, where it was first seen)
    shared: dict[str, feature_pb2.Feature] = {}
    if context is not None:
        shared = _features(context, "context", kinds, max_chars)
    serialized = np.empty(len(examples), dtype=object)
    for index, example in enumerate(examples):
        proto = example_pb2.Example()
        features = proto.features.feature
        for name, feature in shared.items():
            features[name].CopyFrom(feature)
        for name, feature in _features(example, f"examples[{index}]", kinds, max_chars).items():
            features[name].CopyFrom(feature)
        serialized[index] = proto.SerializeToString()
    return serialized


def _features(
    value: Any, where: str, kinds: dict[str, tuple[Kind, str]], max_chars: int
) -> dict[str, feature_pb2.Feature]:
    if not isinstance(value, dict) or is_b64(value):
        raise InvalidInput(
            f"{where} must be an object (feature name -> value or list), not {json_type(value)}"
        )
    features = {}
    for name, content in value.items():
        at = f"{where}.{name}"
        items = content if isinstance(content, list) else [content]
        kind = _kind(items, at)
        seen = kinds.setdefault(name, (kind, at)) if items else (kind, at)
        if seen[0] != kind:
            raise InvalidInput(
                f"{at} is a {kind} feature, but {seen[1]} is {seen[0]}: a feature has one type "
                "in every example"
            )
        feature = feature_pb2.Feature()
        if kind == "int64":
            feature.int64_list.value.extend(int(item) for item in items)
        elif kind == "float":
            feature.float_list.value.extend(float(item) for item in items)
        else:
            feature.bytes_list.value.extend(
                _bytes(item, f"{at}[{i}]", max_chars) for i, item in enumerate(items)
            )
        features[name] = feature
    return features


def _kind(items: list[Any], where: str) -> Kind:
    kinds = set()
    for i, item in enumerate(items):
        if isinstance(item, bool):
            kinds.add("int64")
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise InvalidInput(f"{where}[{i}] is outside int64, the only integer feature type")
            kinds.add("int64")
        elif isinstance(item, float):
            kinds.add("float")
        elif isinstance(item, str) or is_b64(item):
            kinds.add("bytes")
        else:
            raise InvalidInput(
                f"{where}[{i}] is {json_type(item)}; a feature holds numbers, strings or "
                '{"b64": ...}'
            )
    if kinds == {"int64", "float"}:
        return "float"  # [1, 2.5]: decimals, as a float list
    if len(kinds) > 1:
        raise InvalidInput(f"{where} mixes {' and '.join(sorted(kinds))} values")
    return kinds.pop() if kinds else "float"


def _bytes(item: Any, where: str, max_chars: int) -> bytes:
    text = string(item, where, max_chars)
    return text if isinstance(text, bytes) else text.encode("utf-8")
