"""Hand-written hostile inputs against a real server: each gets its documented 4xx (or a 200
where the input is odd but valid), the server keeps serving, and its memory stays bounded.

Run with ``-s`` to see how many inputs were tried and the server's RSS before and after.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.robustness.helpers import (
    API_KEYS,
    MAX_REQUEST_BYTES,
    REVIEWS,
    Server,
    animated_gif,
    digit_image,
    encode,
    png_bomb,
    raw_request,
    status_of,
)

DIGITS = "/v1/digits/predict"
SENTIMENT = "/v1/sentiment/predict"
TFS_SENTIMENT = "/v1/models/sentiment:predict"
TFS_DIGITS = "/v1/models/digits:predict"
OIP_SENTIMENT = "/v2/models/sentiment/infer"
OIP_DIGITS = "/v2/models/digits/infer"
RSS_GROWTH_LIMIT_MIB = 300  # generous: TensorFlow and the allocator keep some memory
TRIED: list[str] = []


@dataclass
class Case:
    name: str
    status: int | tuple[int, ...]
    build: Callable[[], dict[str, Any]]  # keyword arguments of httpx.Client.request
    path: str = DIGITS
    method: str = "POST"
    message: str | None = None  # in the error's message, where the status alone says too little


def upload(data: bytes, name: str = "digit.png", mime: str = "image/png") -> dict[str, Any]:
    return {"files": {"file": (name, data, mime)}}


def png_of(image: Image.Image) -> bytes:
    return encode(image, "PNG")


def sixteen_bit_png() -> bytes:
    pixels = np.asarray(digit_image(28), dtype=np.uint16) * 257
    image = Image.fromarray(pixels)
    assert image.mode == "I;16"
    return png_of(image)


def palette_png(transparent: bool = False) -> bytes:
    image = digit_image(40).convert("P")
    if transparent:
        return encode(image, "PNG", transparency=0)
    return png_of(image)


def lab_tiff() -> bytes:
    neutral = Image.new("L", (28, 28), 128)
    return encode(Image.merge("LAB", (digit_image(28), neutral, neutral)), "TIFF")


def deep_list(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def cmyk_jpeg() -> bytes:
    return encode(digit_image(64).convert("CMYK"), "JPEG", quality=90)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def many_files(n: int) -> dict[str, Any]:
    return {"files": [("file", (f"{i}.png", b"x", "image/png")) for i in range(n)]}


def nested_json(depth: int, key: str = "reviews") -> bytes:
    return b'{"' + key.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"


def multipart_without_boundary() -> dict[str, Any]:
    body = (
        b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="d.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png_of(digit_image(28)) + b"\r\n--xyz--\r\n"
    )
    return {"content": body, "headers": {"content-type": "multipart/form-data"}}


def multipart_garbage() -> dict[str, Any]:
    return {
        "content": os.urandom(4096),
        "headers": {"content-type": "multipart/form-data; boundary=xyz"},
    }


def json_body(data: bytes, content_type: str = "application/json") -> dict[str, Any]:
    return {"content": data, "headers": {"content-type": content_type}}


def oip(name: str, datatype: str, shape: Any, data: Any = None, **extra: Any) -> dict[str, Any]:
    """An OIP infer body with one input tensor (JSON data, or binary_data_size in extra)."""
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if data is not None:
        tensor["data"] = data
    if "binary_data_size" in extra:
        tensor["parameters"] = {"binary_data_size": extra.pop("binary_data_size")}
    return {"inputs": [tensor], **extra}


def oip_binary(
    request: dict[str, Any], binary: bytes, header_length: int | str | None = None
) -> dict[str, Any]:
    """JSON then binary tensor data; the JSON's length in the header (or a lie given)."""
    head = json.dumps(request).encode()
    length = len(head) if header_length is None else header_length
    return {
        "content": head + binary,
        "headers": {"Inference-Header-Content-Length": str(length)},
    }


def gzipped(data: bytes) -> dict[str, Any]:
    import gzip

    return {
        "content": gzip.compress(data),
        "headers": {"content-type": "application/json", "content-encoding": "gzip"},
    }


def chunked(data: bytes, chunk: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


OVER_CAP = MAX_REQUEST_BYTES + 1024

CASES = [
    # ---- image uploads
    Case("decompression-bomb PNG (50000x50000 declared)", 413, lambda: upload(png_bomb())),
    Case("1-pixel image", 200, lambda: upload(png_of(Image.new("L", (1, 1), 255)))),
    Case("1x1000 image", 200, lambda: upload(png_of(Image.new("L", (1, 1000), 200)))),
    Case("10000x10000 image", 413, lambda: upload(png_of(Image.new("1", (10_000, 10_000))))),
    Case(
        "4097x1 image (one over MAX_IMAGE_SIDE)",
        413,
        lambda: upload(png_of(Image.new("L", (4097, 1)))),
    ),
    Case("16-bit PNG", 200, lambda: upload(sixteen_bit_png())),
    Case("palette PNG", 200, lambda: upload(palette_png())),
    Case("palette PNG with transparency", 200, lambda: upload(palette_png(transparent=True))),
    Case("RGBA PNG", 200, lambda: upload(png_of(digit_image(28).convert("RGBA")))),
    Case("CMYK JPEG", 200, lambda: upload(cmyk_jpeg(), "digit.jpg", "image/jpeg")),
    Case("CIELab TIFF", 200, lambda: upload(lab_tiff(), "digit.tif", "image/tiff")),
    Case(
        "EPS (a format not served)",
        400,
        lambda: upload(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n", "d.eps"),
    ),
    Case("animated GIF (first frame)", 200, lambda: upload(animated_gif(), "d.gif", "image/gif")),
    Case("truncated PNG", 400, lambda: upload(truncated(png_of(digit_image(200))))),
    Case(
        "truncated JPEG",
        400,
        lambda: upload(truncated(encode(digit_image(200), "JPEG")), "d.jpg", "image/jpeg"),
    ),
    Case(
        "PDF named .png",
        400,
        lambda: upload(b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<<>>\n%%EOF\n"),
    ),
    Case("random bytes", 400, lambda: upload(os.urandom(10_000))),
    Case("1.5 MB of random bytes", 400, lambda: upload(os.urandom(1_500_000))),
    Case("empty file", 400, lambda: upload(b"")),
    Case("'file' as a text field", 400, lambda: {"files": {"file": (None, b"not a file")}}),
    Case("form without 'file'", 422, lambda: {"files": {"image": ("d.png", b"x", "image/png")}}),
    # Refused by the form's limits, which stop reading at the 257th part (tests/unit/test_uploads.py).
    Case("10,000 'file' fields", 400, lambda: many_files(10_000), message="Too many files"),
    Case(
        "10,000 text fields",
        400,
        lambda: {"data": {f"f{i}": "x" for i in range(10_000)}, "files": many_files(1)["files"]},
        message="Too many fields",
    ),
    Case("multipart body without a boundary", 400, multipart_without_boundary),
    Case("multipart body of random bytes", (400, 422), multipart_garbage),
    Case("JSON to the upload endpoint", 415, lambda: {"json": {"file": "x"}}),
    Case("no content type on uploads", 415, lambda: {"content": b"abc"}),
    # ---- JSON bodies
    Case(
        "non-UTF-8 JSON",
        400,
        lambda: json_body(b'{"reviews": ["caf\xe9 \xff\xfe"]}'),
        path=SENTIMENT,
    ),
    Case(
        "UTF-16 JSON",
        (200, 400),  # json.loads detects UTF-16 by its BOM
        lambda: json_body(json.dumps({"reviews": ["a"]}).encode("utf-16")),
        path=SENTIMENT,
    ),
    Case("deeply nested JSON", (400, 422), lambda: json_body(nested_json(100_000)), path=SENTIMENT),
    Case(
        "deeply nested objects",
        (400, 422),
        lambda: json_body(b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        path=SENTIMENT,
    ),
    Case(
        "1 MB of whitespace as a review",
        422,
        lambda: {"json": {"reviews": [" \n\t" * 350_000]}},
        path=SENTIMENT,
    ),
    Case("a 1 MB review", 422, lambda: {"json": {"reviews": ["great " * 170_000]}}, path=SENTIMENT),
    Case(
        "control characters and emoji",
        200,
        lambda: {
            "json": {
                "reviews": ["\x00\x01\x07\x1b[31m great \u202e film 🎬🍿👍🏽 \ufeff", "😡" * 500]
            }
        },
        path=SENTIMENT,
    ),
    Case(
        "lone surrogate escape",
        400,
        lambda: json_body(b'{"reviews": ["bad \\ud800 film"]}'),
        path=SENTIMENT,
    ),
    Case("257 reviews", 422, lambda: {"json": {"reviews": ["good"] * 257}}, path=SENTIMENT),
    Case("reviews not strings", 422, lambda: {"json": {"reviews": [1, None, {}]}}, path=SENTIMENT),
    Case("JSON null", 422, lambda: json_body(b"null"), path=SENTIMENT),
    Case("empty body", (400, 422), lambda: json_body(b""), path=SENTIMENT),
    Case(
        "NaN and huge numbers",
        (400, 422),
        lambda: json_body(b'{"reviews": [NaN, 1e999999]}'),
        path=SENTIMENT,
    ),
    Case(
        "text/plain to the JSON endpoint",
        415,
        lambda: json_body(b'{"reviews": ["a"]}', "text/plain"),
        path=SENTIMENT,
    ),
    Case(
        "no content type on JSON", 415, lambda: {"content": b'{"reviews": ["a"]}'}, path=SENTIMENT
    ),
    Case("form to the JSON endpoint", 415, lambda: {"data": {"reviews": "a"}}, path=SENTIMENT),
    Case("multipart to the JSON endpoint", 415, lambda: upload(b"x"), path=SENTIMENT),
    # ---- body cap
    Case(
        "body over MAX_REQUEST_BYTES, Content-Length",
        413,
        lambda: json_body(b'{"reviews": ["' + b"a" * OVER_CAP + b'"]}'),
        path=SENTIMENT,
    ),
    Case(
        "body over MAX_REQUEST_BYTES, chunked",
        413,
        lambda: {
            "content": chunked(b'{"reviews": ["' + b"a" * OVER_CAP + b'"]}'),
            "headers": {"content-type": "application/json"},
        },
        path=SENTIMENT,
    ),
    Case(
        "upload over MAX_REQUEST_BYTES, Content-Length",
        413,
        lambda: upload(os.urandom(OVER_CAP)),
    ),
    Case(
        "upload over MAX_REQUEST_BYTES, chunked",
        413,
        lambda: {
            "content": chunked(
                b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
                + os.urandom(OVER_CAP)
            ),
            "headers": {"content-type": "multipart/form-data; boundary=xyz"},
        },
    ),
    # ---- TensorFlow Serving API
    Case(
        "TF Serving: non-UTF-8 JSON",
        400,
        lambda: json_body(b'{"instances": ["\xff"]}'),
        path=TFS_SENTIMENT,
    ),
    Case(
        "TF Serving: deeply nested JSON",
        400,
        lambda: json_body(nested_json(100_000, "instances")),
        path=TFS_SENTIMENT,
    ),
    Case(
        "TF Serving: nested NaN JSON",
        400,
        lambda: json_body(b'{"instances": ' + b"[" * 100_000 + b"NaN" + b"]" * 100_000 + b"}"),
        path=TFS_DIGITS,
    ),
    Case(
        "TF Serving: lone surrogate (through the NaN-tolerant parser)",
        400,
        lambda: json_body(b'{"instances": ["bad \\ud800 film"], "nan": NaN}'),
        path=TFS_SENTIMENT,
    ),
    Case(
        "TF Serving: an instance nested 40 deep",
        400,
        lambda: {"json": {"instances": [deep_list(40)]}},
        path=TFS_DIGITS,
    ),
    Case(
        "TF Serving: columnar inputs nested 70 deep",
        400,
        lambda: {"json": {"inputs": [deep_list(70)]}},
        path=TFS_DIGITS,
    ),
    Case(
        "TF Serving: a review nested 40 deep",
        400,
        lambda: {"json": {"instances": [deep_list(40)]}},
        path=TFS_SENTIMENT,
    ),
    Case(
        "TF Serving: bad base64",
        400,
        lambda: {"json": {"instances": [{"b64": "!!!"}]}},
        path=TFS_DIGITS,
    ),
    Case(
        "TF Serving: base64 bomb",
        413,
        lambda: {"json": {"instances": [{"b64": base64.b64encode(png_bomb()).decode()}]}},
        path=TFS_DIGITS,
    ),
    Case(
        "TF Serving: ragged digits",
        400,
        lambda: {"json": {"instances": [[[0] * 28] * 27 + [[0] * 5]]}},
        path=TFS_DIGITS,
    ),
    Case(
        "TF Serving: strings as pixels",
        400,
        lambda: {"json": {"instances": [[["x"] * 28] * 28]}},
        path=TFS_DIGITS,
    ),
    Case(
        "TF Serving: huge pixel values",
        (200, 400),
        lambda: json_body(b'{"instances": [' + json.dumps([[1e308] * 28] * 28).encode() + b"]}"),
        path=TFS_DIGITS,
    ),
    Case(
        "TF Serving: emoji review",
        200,
        lambda: {"json": {"instances": ["🎬 great \x00"]}},
        path=TFS_SENTIMENT,
    ),
    Case(
        "TF Serving: text/plain",
        (200, 400, 415),
        lambda: json_body(b'{"instances": ["a"]}', "text/plain"),
        path=TFS_SENTIMENT,
    ),
    # ---- Open Inference Protocol
    Case(
        "OIP: reviews sent as FP32",
        400,
        lambda: {"json": oip("reviews", "FP32", [1], [1.0])},
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: images sent as BOOL",
        400,
        lambda: {"json": oip("images", "BOOL", [1, 28, 28], [True] * 784)},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: unknown datatype",
        400,
        lambda: {"json": oip("images", "FLOAT", [1, 28, 28], [0] * 784)},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: shape that does not match the data",
        400,
        lambda: {"json": oip("images", "FP32", [1, 28, 28], [0.0] * 10)},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: nested data of another shape",
        400,
        lambda: {"json": oip("images", "FP32", [1, 28, 28], [[[0] * 14] * 56])},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: negative and fractional dimensions",
        400,
        lambda: {"json": oip("images", "FP32", [1, -28, 28.5], [0] * 784)},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: data nested 40 deep",
        400,
        lambda: {"json": oip("images", "FP32", [1, 28, 28], deep_list(40))},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: a pixel of 300",
        400,
        lambda: {"json": oip("images", "FP32", [1, 28, 28], [300] + [0] * 783)},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: huge declared shape",
        400,
        lambda: {"json": oip("images", "FP32", [2**40, 28, 28], [0] * 784)},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: huge declared inner shape",
        400,
        lambda: {"json": oip("reviews", "BYTES", [1, 2**31, 2**31], ["a"])},
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: binary header length past the body",
        400,
        lambda: oip_binary(
            oip("images", "FP32", [1, 28, 28], binary_data_size=3136), b"\0" * 3136, 10**9
        ),
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: binary header length inside the JSON",
        400,
        lambda: oip_binary(
            oip("images", "FP32", [1, 28, 28], binary_data_size=3136), b"\0" * 3136, 7
        ),
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: binary header length not a number",
        400,
        lambda: oip_binary(
            oip("images", "FP32", [1, 28, 28], binary_data_size=3136), b"\0" * 3136, "-5"
        ),
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: binary_data_size over what was sent",
        400,
        lambda: oip_binary(
            oip("images", "FP32", [1, 28, 28], binary_data_size=2**62), b"\0" * 3136
        ),
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: binary data left over",
        400,
        lambda: oip_binary(oip("images", "FP32", [1, 28, 28], binary_data_size=3136), b"\0" * 4000),
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: binary data of the wrong size for the shape",
        400,
        lambda: oip_binary(oip("images", "FP32", [2, 28, 28], binary_data_size=3136), b"\0" * 3136),
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: binary BYTES whose length prefix lies",
        400,
        lambda: oip_binary(
            oip("reviews", "BYTES", [1], binary_data_size=10), b"\xff\xff\xff\x7f" + b"abcdef"
        ),
        path=OIP_SENTIMENT,
    ),
    Case(
        # A string tensor holds bytes (serialized protos, files): binary ones pass as they are.
        "OIP: binary BYTES that are not UTF-8",
        200,
        lambda: oip_binary(
            oip("reviews", "BYTES", [1], binary_data_size=8), b"\x04\0\0\0\xff\xfe\xfd\xfc"
        ),
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: BYTES image that is not an image",
        400,
        lambda: {"json": oip("images", "BYTES", [1], [base64.b64encode(b"not an image").decode()])},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: BYTES image bomb",
        413,
        lambda: {"json": oip("images", "BYTES", [1], [base64.b64encode(png_bomb()).decode()])},
        path=OIP_DIGITS,
    ),
    Case(
        "OIP: both data and binary_data_size",
        400,
        lambda: oip_binary(oip("reviews", "BYTES", [1], ["a"], binary_data_size=5), b"\x01\0\0\0a"),
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: unknown output asked for",
        400,
        lambda: {"json": oip("reviews", "BYTES", [1], ["a"], outputs=[{"name": "nope"}])},
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: id not a string",
        400,
        lambda: {"json": oip("reviews", "BYTES", [1], ["a"], id=42)},
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: 257 reviews",
        400,
        lambda: {"json": oip("reviews", "BYTES", [257], ["good"] * 257)},
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: lone surrogate",
        400,
        lambda: json_body(
            b'{"inputs": [{"name": "reviews", "datatype": "BYTES", "shape": [1], '
            b'"data": ["bad \\ud800"]}]}'
        ),
        path=OIP_SENTIMENT,
    ),
    Case("OIP: JSON null", 400, lambda: json_body(b"null"), path=OIP_SENTIMENT),
    Case("OIP: no inputs", 400, lambda: {"json": {"inputs": []}}, path=OIP_SENTIMENT),
    Case(
        "OIP: gzip bomb",
        413,
        lambda: gzipped(b'{"inputs": [' + b" " * (MAX_REQUEST_BYTES * 4) + b"]}"),
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: corrupt gzip",
        400,
        lambda: {"content": b"\x1f\x8b" + os.urandom(100), "headers": {"content-encoding": "gzip"}},
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: unsupported content encoding",
        400,
        lambda: {"content": b"{}", "headers": {"content-encoding": "br"}},
        path=OIP_SENTIMENT,
    ),
    Case(
        "OIP: body over the cap, chunked",
        413,
        lambda: {
            "content": chunked(b'{"inputs": ["' + b"a" * OVER_CAP + b'"]}'),
            "headers": {"content-type": "application/json"},
        },
        path=OIP_SENTIMENT,
    ),
    Case(
        "TF Serving: body over the cap, chunked",
        413,
        lambda: {
            "content": chunked(b'{"instances": ["' + b"a" * OVER_CAP + b'"]}'),
            "headers": {"content-type": "application/json"},
        },
        path=TFS_SENTIMENT,
    ),
]


# ---- any model (``zoo_server``: tests/support/savedmodels.py's zoo) -------------------------


def tfs(model: str, verb: str = "predict") -> str:
    return f"/v1/models/{model}:{verb}"


def infer(model: str) -> str:
    return f"/v2/models/{model}/infer"


def simple(
    first: tuple[str, list[int], Any] = ("INT32", [1, 16], [1] * 16),
    second: tuple[str, list[int], Any] | None = ("INT32", [1, 16], [1] * 16),
    **extra: Any,
) -> dict[str, Any]:
    """An OIP body for ``simple`` (INT32 INPUT0 and INPUT1, [-1, 16]), JSON data."""
    tensors = [("INPUT0", first), *([("INPUT1", second)] if second else [])]
    inputs = [{"name": n, "datatype": d, "shape": s, "data": v} for n, (d, s, v) in tensors]
    return {"json": {"inputs": inputs, **extra}}


def dtype_body(signature: str, instances: bytes) -> dict[str, Any]:
    """A TF Serving body for one of ``dtypes``' identity signatures, ``x`` [-1, 2], as raw
    JSON (so that it can hold what only some parsers read: NaN, raw bytes)."""
    return json_body(
        b'{"signature_name": "' + signature.encode() + b'", "instances": ' + instances + b"}"
    )


def binary_tensor(
    name: str, datatype: str, shape: list[int], blob: bytes, **extra: Any
) -> dict[str, Any]:
    return oip_binary(oip(name, datatype, shape, binary_data_size=len(blob), **extra), blob)


def any_model(
    name: str, status: int, build: Callable[[], dict[str, Any]], path: str, message: str
) -> Case:
    """A case for ``zoo_server``: its status, and words its error must say."""
    return Case(name, status, build, path, message=message)


SIMPLE_ROW = {"INPUT0": [1] * 16, "INPUT1": [1] * 16}
ESTIMATOR_ROW = {"age": 30, "height": 1.8}

GENERAL_CASES = [
    # ---- wrong dtype
    any_model(
        "TF Serving: strings for INT32",
        400,
        lambda: {"json": {"instances": [{**SIMPLE_ROW, "INPUT0": ["1"] * 16}]}},
        tfs("simple"),
        "a string",
    ),
    any_model(
        "TF Serving: booleans for INT32",
        400,
        lambda: {"json": {"instances": [{**SIMPLE_ROW, "INPUT1": [True] * 16}]}},
        tfs("simple"),
        "whole numbers",
    ),
    any_model(
        "TF Serving: numbers for strings",
        400,
        lambda: {"json": {"instances": [1, 2]}},
        tfs("strings"),
        "strings",
    ),
    any_model(
        "TF Serving: numbers for bool",
        400,
        lambda: dtype_body("bool", b"[[1, 0]]"),
        tfs("dtypes"),
        "true or false",
    ),
    any_model(
        "OIP: FP32 for INT32",
        400,
        lambda: simple(("FP32", [1, 16], [1.0] * 16)),
        infer("simple"),
        "integer",
    ),
    any_model(
        "OIP: BYTES for INT32",
        400,
        lambda: simple(("BYTES", [1, 16], ["1"] * 16)),
        infer("simple"),
        "BYTES",
    ),
    any_model(
        "OIP: INT32 for strings",
        400,
        lambda: {"json": oip("text", "INT32", [1], [1])},
        infer("strings"),
        "BYTES",
    ),
    any_model(
        "OIP: INT8 for bool",
        400,
        lambda: {"json": oip("x", "INT8", [1, 2], [1, 0], parameters={"signature_name": "bool"})},
        infer("dtypes"),
        "BOOL",
    ),
    # ---- missing and unknown input names
    any_model(
        "TF Serving: an instance lacking an input",
        400,
        lambda: {"json": {"instances": [{"a": [1, 2, 3]}]}},
        tfs("keras2"),
        "lacks 'b'",
    ),
    any_model(
        "TF Serving: an unknown input",
        400,
        lambda: {"json": {"instances": [{**SIMPLE_ROW, "INPUT2": 1}]}},
        tfs("simple"),
        "'INPUT2'",
    ),
    any_model(
        "TF Serving: columns lacking an input",
        400,
        lambda: {"json": {"inputs": {"INPUT0": [[1] * 16]}}},
        tfs("simple"),
        "lacks 'INPUT1'",
    ),
    any_model(
        "TF Serving: bare values for two inputs",
        400,
        lambda: {"json": {"instances": [[1] * 16]}},
        tfs("simple"),
        "several inputs",
    ),
    any_model("OIP: a missing input", 400, lambda: simple(second=None), infer("simple"), "INPUT1"),
    any_model(
        "OIP: an unknown input",
        400,
        lambda: {
            "json": {
                "inputs": [
                    *simple()["json"]["inputs"],
                    {"name": "INPUT2", "datatype": "INT32", "shape": [1], "data": [1]},
                ]
            }
        },
        infer("simple"),
        "INPUT2",
    ),
    any_model(
        "OIP: an input sent twice",
        400,
        lambda: {"json": {"inputs": [simple()["json"]["inputs"][0]] * 2}},
        infer("simple"),
        "twice",
    ),
    # ---- shapes that do not match
    any_model(
        "TF Serving: 15 values for [-1, 16]",
        400,
        lambda: {"json": {"instances": [{**SIMPLE_ROW, "INPUT0": [1] * 15}]}},
        tfs("simple"),
        "int32[16]",
    ),
    any_model(
        "TF Serving: a batch for an unbatched signature",
        400,
        lambda: {"json": {"instances": [[3, 4, 0]]}},
        tfs("unbatched"),
        "[3]",
    ),
    any_model(
        "TF Serving: inputs of different batch sizes",
        400,
        lambda: {"json": {"inputs": {"INPUT0": [[1] * 16], "INPUT1": [[1] * 16] * 2}}},
        tfs("simple"),
        "differ",
    ),
    any_model(
        "TF Serving: two trailing dimensions missing",
        400,
        lambda: {"json": {"instances": [[[1.0]]]}},
        tfs("half_plus_two"),
        "float32[1]",
    ),
    any_model(
        "OIP: [1, 15] for [-1, 16]",
        400,
        lambda: simple(("INT32", [1, 15], [1] * 15), ("INT32", [1, 15], [1] * 15)),
        infer("simple"),
        "[-1, 16]",
    ),
    any_model(
        "OIP: inputs of different batch sizes",
        400,
        lambda: simple(second=("INT32", [2, 16], [1] * 32)),
        infer("simple"),
        "differ",
    ),
    any_model(
        "OIP: [2] for [3]",
        400,
        lambda: {"json": oip("v", "FP32", [2], [1.0, 2.0])},
        infer("unbatched"),
        "[3]",
    ),
    any_model(
        "OIP: no instances",
        400,
        lambda: simple(("INT32", [0, 16], []), ("INT32", [0, 16], [])),
        infer("simple"),
        "no instances",
    ),
    # ---- ragged rows
    any_model(
        "TF Serving: ragged columns",
        400,
        lambda: {"json": {"inputs": [[1.0, 2.0], [3.0]]}},
        tfs("sequences"),
        "ragged",
    ),
    any_model(
        "TF Serving: ragged instances",
        400,
        lambda: {"json": {"instances": [[1.0, 2.0], [3.0]]}},
        tfs("sequences"),
        "ragged",
    ),
    any_model(
        "TF Serving: ragged strings",
        400,
        lambda: {"json": {"signature_name": "string", "instances": [["a", "b"], ["c"]]}},
        tfs("dtypes"),
        "string[2]",
    ),
    any_model(
        "TF Serving: lists in a row of numbers",
        400,
        lambda: {"json": {"instances": [{"a": [[1], [2, 3], 3], "b": [1, 2]}]}},
        tfs("keras2"),
        "ragged",
    ),
    any_model(
        "OIP: ragged nested data",
        400,
        lambda: {"json": oip("x", "FP32", [2, 2], [[1.0, 2.0], [3.0]])},
        infer("sequences"),
        "nested",
    ),
    # ---- declared sizes far beyond MAX_REQUEST_BYTES
    any_model(
        "OIP: [2**40, 16] declared",
        400,
        lambda: simple(("INT32", [2**40, 16], [1] * 16)),
        infer("simple"),
        "MAX_INSTANCES",
    ),
    any_model(
        "OIP: [1, 2**40] declared, JSON",
        400,
        lambda: {"json": oip("x", "FP32", [1, 2**40], [1.0])},
        infer("sequences"),
        str(2**40),
    ),
    any_model(
        "OIP: [1, 2**40] declared, binary",
        400,
        lambda: binary_tensor("x", "FP32", [1, 2**40], b"\0" * 16),
        infer("sequences"),
        "binary_data_size is 16",
    ),
    any_model(
        "OIP: [2**31, 2**31] declared",
        400,
        lambda: binary_tensor("x", "FP32", [2**31, 2**31], b"\0" * 16),
        infer("sequences"),
        "MAX_INSTANCES",
    ),
    any_model(
        "OIP: [2**40] declared for [3]",
        400,
        lambda: binary_tensor("v", "FP32", [2**40], b"\0" * 12),
        infer("unbatched"),
        "[3]",
    ),
    any_model(
        "OIP: 2**40 strings declared",
        400,
        lambda: binary_tensor("text", "BYTES", [2**40], b"\1\0\0\0a"),
        infer("strings"),
        "MAX_INSTANCES",
    ),
    any_model(
        "OIP: [1, 2**40] strings declared",
        400,
        lambda: binary_tensor(
            "x", "BYTES", [1, 2**40], b"\1\0\0\0a", parameters={"signature_name": "string"}
        ),
        infer("dtypes"),
        "[-1, 2]",
    ),
    # ---- NaN, inf and fractions for integers; integers out of range
    any_model(
        "TF Serving: NaN for int32",
        400,
        lambda: dtype_body("int32", b"[[NaN, 1]]"),
        tfs("dtypes"),
        "whole numbers",
    ),
    any_model(
        "TF Serving: Infinity for uint8",
        400,
        lambda: dtype_body("uint8", b"[[Infinity, 1]]"),
        tfs("dtypes"),
        "whole numbers",
    ),
    any_model(
        "TF Serving: -Infinity for int64",
        400,
        lambda: dtype_body("int64", b"[[-Infinity, 1]]"),
        tfs("dtypes"),
        "whole numbers",
    ),
    any_model(
        "TF Serving: a fraction for int32",
        400,
        lambda: {"json": {"instances": [{**SIMPLE_ROW, "INPUT0": [1.5] * 16}]}},
        tfs("simple"),
        "whole numbers",
    ),
    any_model(
        "TF Serving: 1.0 for int16",
        400,
        lambda: dtype_body("int16", b"[[1.0, 1]]"),
        tfs("dtypes"),
        "whole numbers",
    ),
    any_model(
        "TF Serving: -1 for uint8",
        400,
        lambda: dtype_body("uint8", b"[[-1, 1]]"),
        tfs("dtypes"),
        "range",
    ),
    any_model(
        "TF Serving: 2**31 for int32",
        400,
        lambda: {"json": {"instances": [{**SIMPLE_ROW, "INPUT0": [2**31] * 16}]}},
        tfs("simple"),
        "range",
    ),
    any_model(
        "TF Serving: 2**63 for int64",
        400,
        lambda: dtype_body("int64", b"[[9223372036854775808, 1]]"),
        tfs("dtypes"),
        "range",
    ),
    any_model(
        "TF Serving: 2**64 for uint64",
        400,
        lambda: dtype_body("uint64", b"[[18446744073709551616, 1]]"),
        tfs("dtypes"),
        "range",
    ),
    any_model(
        "TF Serving: 1e6 for float16",
        400,
        lambda: dtype_body("float16", b"[[1e6, 1]]"),
        tfs("dtypes"),
        "range",
    ),
    any_model(
        "TF Serving: 1e39 for bfloat16",
        400,
        lambda: dtype_body("bfloat16", b"[[1e39, 1]]"),
        tfs("dtypes"),
        "range",
    ),
    any_model(
        "OIP: a fraction in INT32 data",
        400,
        lambda: simple(("INT32", [1, 16], [1.5] * 16)),
        infer("simple"),
        "INT32",
    ),
    any_model(
        "OIP: 2**40 in INT32 data",
        400,
        lambda: simple(("INT32", [1, 16], [2**40] * 16)),
        infer("simple"),
        "outside INT32",
    ),
    any_model(
        "OIP: INT64 values beyond int32",
        400,
        lambda: simple(("INT64", [1, 16], [2**40] * 16)),
        infer("simple"),
        "outside",
    ),
    any_model(
        "OIP: UINT64 max for int8",
        400,
        lambda: binary_tensor(
            "x",
            "UINT64",
            [1, 2],
            np.array([2**64 - 1, 0], "<u8").tobytes(),
            parameters={"signature_name": "int8"},
        ),
        infer("dtypes"),
        "outside",
    ),
    any_model(
        "OIP: NaN, binary FP32, for int32",
        400,
        lambda: binary_tensor(
            "x",
            "FP32",
            [1, 2],
            np.array([np.nan, 1], "<f4").tobytes(),
            parameters={"signature_name": "int32"},
        ),
        infer("dtypes"),
        "integer",
    ),
    any_model(
        "OIP: BF16 beyond float16",
        400,
        lambda: {
            "json": oip("x", "BF16", [1, 2], [1e30, 0.0], parameters={"signature_name": "float16"})
        },
        infer("dtypes"),
        "outside",
    ),
    any_model(
        "OIP: BOOL bytes other than 0 and 1",
        400,
        lambda: binary_tensor(
            "x", "BOOL", [1, 2], b"\x01\x07", parameters={"signature_name": "bool"}
        ),
        infer("dtypes"),
        "0 or 1",
    ),
    # ---- text: not UTF-8, lone surrogates, broken b64
    any_model(
        "TF Serving: non-UTF-8 in a JSON string",
        400,
        lambda: json_body(b'{"instances": ["caf\xe9"]}'),
        tfs("strings"),
        "JSON",
    ),
    any_model(
        "TF Serving: a lone surrogate",
        400,
        lambda: json_body(b'{"instances": ["\\udc00"]}'),
        tfs("strings"),
        "JSON",
    ),
    any_model(
        "TF Serving: a lone surrogate with NaN about",
        400,
        lambda: json_body(b'{"instances": ["\\ud800"], "x": NaN}'),
        tfs("strings"),
        "JSON",
    ),
    any_model(
        "OIP: non-UTF-8 in JSON data",
        400,
        lambda: json_body(
            b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["\xff"]}]}'
        ),
        infer("strings"),
        "JSON",
    ),
    any_model(
        "OIP: a lone surrogate in JSON data",
        400,
        lambda: json_body(
            b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["\\ud800"]}]}'
        ),
        infer("strings"),
        "JSON",
    ),
    any_model(
        "TF Serving: broken b64",
        400,
        lambda: {"json": {"instances": [{"b64": "%%%"}]}},
        tfs("strings"),
        "base64",
    ),
    any_model(
        "TF Serving: b64 not a string",
        400,
        lambda: {"json": {"instances": [{"b64": 5}]}},
        tfs("strings"),
        "base64",
    ),
    any_model(
        "TF Serving: b64 of a wrong length",
        400,
        lambda: {"json": {"signature_name": "string", "instances": [[{"b64": "A"}, "a"]]}},
        tfs("dtypes"),
        "base64",
    ),
    any_model(
        "classify: broken b64 in a feature",
        400,
        lambda: {"json": {"examples": [{**ESTIMATOR_ROW, "city": {"b64": "!"}}]}},
        tfs("estimator", "classify"),
        "base64",
    ),
    # ---- tf.Examples
    any_model(
        "classify: a feature's type clashing across examples",
        400,
        lambda: {"json": {"examples": [ESTIMATOR_ROW, {**ESTIMATOR_ROW, "age": "x"}]}},
        tfs("estimator", "classify"),
        "one type",
    ),
    any_model(
        "classify: a feature clashing with the context",
        400,
        lambda: {"json": {"context": {"age": 1.5}, "examples": [ESTIMATOR_ROW]}},
        tfs("estimator", "classify"),
        "one type",
    ),
    any_model(
        "regress: a feature mixing kinds",
        400,
        lambda: {
            "json": {
                "signature_name": "regression",
                "examples": [{**ESTIMATOR_ROW, "age": [1, "a"]}],
            }
        },
        tfs("estimator", "regress"),
        "mixes",
    ),
    any_model(
        "classify: int64 overflow in a feature",
        400,
        lambda: {"json": {"examples": [{**ESTIMATOR_ROW, "age": 2**63}]}},
        tfs("estimator", "classify"),
        "int64",
    ),
    any_model(
        "classify: a feature the parser wants as int64 sent as float",
        400,
        lambda: {"json": {"examples": [{**ESTIMATOR_ROW, "age": 1.5}]}},
        tfs("estimator", "classify"),
        "int64",
    ),
    any_model(
        "classify: a required feature missing",
        400,
        lambda: {"json": {"examples": [{"age": 1}]}},
        tfs("estimator", "classify"),
        "height",
    ),
    any_model(
        "classify: null in a feature",
        400,
        lambda: {"json": {"examples": [{**ESTIMATOR_ROW, "city": None}]}},
        tfs("estimator", "classify"),
        "null",
    ),
    any_model(
        "classify: examples not a list",
        400,
        lambda: {"json": {"examples": ESTIMATOR_ROW}},
        tfs("estimator", "classify"),
        "list",
    ),
    any_model(
        "classify: 257 examples",
        400,
        lambda: {"json": {"examples": [ESTIMATOR_ROW] * 257}},
        tfs("estimator", "classify"),
        "MAX_INSTANCES",
    ),
    # ---- signatures
    any_model(
        "TF Serving: an unknown signature_name",
        404,
        lambda: {"json": {"signature_name": "nope", "instances": [SIMPLE_ROW]}},
        tfs("simple"),
        "nope",
    ),
    any_model(
        "TF Serving: signature_name not a string",
        400,
        lambda: {"json": {"signature_name": ["x"], "instances": [SIMPLE_ROW]}},
        tfs("simple"),
        "string",
    ),
    any_model(
        "OIP: an unknown signature_name",
        404,
        lambda: simple(parameters={"signature_name": "nope"}),
        infer("simple"),
        "nope",
    ),
    any_model(
        "classify: an unknown signature_name",
        404,
        lambda: {"json": {"signature_name": "nope", "examples": [ESTIMATOR_ROW]}},
        tfs("estimator", "classify"),
        "nope",
    ),
    any_model(
        "classify on a regress signature",
        400,
        lambda: {"json": {"signature_name": "regression", "examples": [ESTIMATOR_ROW]}},
        tfs("estimator", "classify"),
        "regress signature",
    ),
    any_model(
        "regress on a classify signature",
        400,
        lambda: {"json": {"examples": [ESTIMATOR_ROW]}},
        tfs("estimator", "regress"),
        "classify signature",
    ),
    any_model(
        "classify on a model that parses no examples",
        400,
        lambda: {"json": {"examples": [{"x": 1}]}},
        tfs("simple", "classify"),
        "predict signature",
    ),
    any_model(
        "regress on a predict signature without 'outputs'",
        400,
        lambda: {"json": {"signature_name": "predict", "examples": [ESTIMATOR_ROW]}},
        tfs("estimator", "regress"),
        "'outputs'",
    ),
    any_model(
        "TF Serving: row format on outputs without a batch",
        400,
        lambda: {"json": {"instances": [3, 4, 0]}},
        tfs("unbatched"),
        "columnar",
    ),
]


@pytest.fixture(scope="module")
def zoo_client(zoo_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=zoo_server.url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("case", GENERAL_CASES, ids=[case.name for case in GENERAL_CASES])
def test_hostile_input_to_any_model(case: Case, zoo_client: httpx.Client) -> None:
    response = zoo_client.request(case.method, case.path, **case.build())
    TRIED.append(case.name)
    assert response.status_code == case.status, (
        f"{case.name}: {response.status_code} {response.text[:500]}"
    )
    error = response.json()["error"]
    assert isinstance(error, str)
    assert case.message is not None
    assert case.message in error, f"{case.name}: {error}"
    assert zoo_client.get("/healthz").status_code == 200


def test_any_model_still_serves_after_the_hostile_inputs(zoo_server: Server) -> None:
    """Whatever the cases above sent, both protocols still answer, and nothing was a 5xx."""
    with httpx.Client(base_url=zoo_server.url, timeout=60) as client:
        answer = client.post(tfs("simple"), json={"instances": [SIMPLE_ROW]})
        assert answer.json() == {"predictions": [{"OUTPUT0": [2] * 16, "OUTPUT1": [0] * 16}]}
        answer = client.post(infer("simple"), **simple())
        assert [o["data"] for o in answer.json()["outputs"]] == [[2] * 16, [0] * 16]
        answer = client.post(
            tfs("estimator", "regress"),
            json={"signature_name": "regression", "examples": [ESTIMATOR_ROW]},
        )
        assert answer.status_code == 200, answer.text
    assert zoo_server.metric("http_requests_total", status="500") == 0


@pytest.fixture(scope="module")
def rss_at_start(server: Server) -> float:
    return server.rss_mib()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input(case: Case, client: httpx.Client, rss_at_start: float) -> None:
    response = client.request(case.method, case.path, **case.build())
    TRIED.append(case.name)
    wanted = case.status if isinstance(case.status, tuple) else (case.status,)
    assert response.status_code in wanted, (
        f"{case.name}: {response.status_code} {response.text[:500]}"
    )
    if response.status_code >= 400:
        error = response.json()["error"]
        plain = case.path.startswith(("/v1/models/", "/v2/"))
        assert error if plain else error["code"] and error["message"]
        if case.message is not None:
            assert case.message in (error if plain else error["message"])
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("name", "request_bytes", "status"),
    [
        (
            "Content-Length not a number",
            b"POST /v1/sentiment/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}",
            400,
        ),
        (
            "Content-Length and chunked both",
            b"POST /v1/sentiment/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "bad chunk size",
            b"POST /v1/sentiment/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            400,
        ),
        (
            "header line of 100 KB",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 100_000 + b"\r\n\r\n",
            (200, 400, 431),  # httptools has no header size limit
        ),
        ("not HTTP at all", os.urandom(2048), 400),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_malformed_http(
    server: Server, name: str, request_bytes: bytes, status: Any, client: httpx.Client
) -> None:
    answer = raw_request(server.port, request_bytes)
    TRIED.append(name)
    wanted = status if isinstance(status, tuple) else (status,)
    if answer:  # uvicorn may also just close the connection on garbage
        assert status_of(answer) in wanted, answer[:300]
    assert client.get("/healthz").status_code == 200


def test_a_bad_review_does_not_fail_the_batch_it_joins(busy_server: Server) -> None:
    """busy_server waits 250 ms for a fuller batch, so these four share one model call."""
    auth = {"Authorization": f"Bearer {API_KEYS[0]}"}
    requests = [
        (SENTIMENT, json.dumps({"reviews": [review]}).encode())
        for review in (REVIEWS[0], REVIEWS[1], REVIEWS[3])
    ]
    # The native route's JSON parser refuses lone surrogates; TF Serving's NaN-tolerant one
    # takes them, and the service must refuse the review before it joins the batch.
    requests.append((TFS_SENTIMENT, b'{"instances": ["bad \\ud800 film"], "nan": NaN}'))

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=busy_server.url, headers=auth, timeout=30) as c:
            return await asyncio.gather(
                *(c.post(path, **json_body(body)) for path, body in requests)
            )

    statuses = [r.status_code for r in asyncio.run(together())]
    assert statuses == [200, 200, 200, 400]


def test_still_serving_with_bounded_memory(
    server: Server, client: httpx.Client, rss_at_start: float
) -> None:
    response = client.post(SENTIMENT, json={"reviews": REVIEWS})
    assert response.status_code == 200
    assert [p["label"] for p in response.json()["predictions"]][:2] == ["positive", "negative"]
    response = client.post(DIGITS, **upload(png_of(digit_image(28))))
    assert response.status_code == 200
    after = server.rss_mib()
    print(
        f"\nhostile inputs: {len(TRIED)} tried; server RSS {rss_at_start:.0f} MiB before, "
        f"{after:.0f} MiB after"
    )
    assert after - rss_at_start < RSS_GROWTH_LIMIT_MIB
