"""Request bodies for the benchmark: real test data when it is there, generated otherwise.

Digits: MNIST test images, each encoded as a PNG and sent as one multipart ``file`` field.
Sentiment: IMDB test reviews, each sent as ``{"reviews": [review]}``. The same instances, one
per request, through the other protocols (:data:`PROTOCOLS`), in the payload kind each
protocol's usual client sends: TF Serving's JSON (``{"b64": png}`` images), and the Open
Inference Protocol as ``tritonclient`` sends it by default (binary tensor data; images as
``BYTES`` PNG files). The general model (:mod:`bench.general`, Triton's ``simple`` shape) gets
random int32 rows, one instance per request, through OIP (binary) and TF Serving (row format).

The data sets are found as ``training.data`` finds them (``--data-dir``, else ``DATA_DIR``, else
a download already in Keras' cache); nothing is downloaded: without the files, synthetic digits
and reviews stand in, and the results say so (``source``).
"""

from __future__ import annotations

import base64
import io
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
from PIL import Image

from training.data import imdb_local_path, mnist_local_path

BOUNDARY = "benchboundary7MA4YWxkTrZu0gW"
SEED = 8


@dataclass
class Payloads:
    """Raw request bodies of one endpoint, and where they came from."""

    path: str
    content_type: str
    bodies: list[bytes]
    source: str
    # The same instances as model inputs, for the in-process measurement.
    instances: list
    headers: list[dict[str, str]] = field(default_factory=list)  # per body, if any


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def multipart(file_bytes: bytes, filename: str) -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + file_bytes
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def digit_images(count: int, data_dir: str | None = None) -> tuple[np.ndarray, str]:
    """``count`` 28x28 uint8 images: MNIST test images, or blobs of ink when it is missing."""
    rng = np.random.default_rng(SEED)
    path = mnist_local_path(data_dir)
    if path is not None:
        with np.load(path) as f:
            x_test = f["x_test"]
        return x_test[rng.choice(len(x_test), size=count, replace=False)], f"MNIST test ({path})"
    images = np.zeros((count, 28, 28), dtype=np.uint8)
    ys, xs = np.indices((28, 28))
    for image in images:
        for _ in range(rng.integers(2, 5)):  # a few thick strokes
            cy, cx = rng.uniform(8, 20, size=2)
            r = rng.uniform(2, 4)
            image[((ys - cy) ** 2 + (xs - cx) ** 2) < r * r] = 255
    return images, "generated"


def reviews(count: int, data_dir: str | None = None) -> tuple[list[str], str]:
    """``count`` IMDB test reviews (both labels), or generated text when the data is missing."""
    rng = np.random.default_rng(SEED)
    path = imdb_local_path(data_dir)
    if path is not None:
        texts = _imdb_test_reviews(path)
        chosen = rng.choice(len(texts), size=min(count, len(texts)), replace=False)
        return [texts[i] for i in chosen], f"IMDB test ({path})"
    words = (  # noqa: SIM905 - a sentence is easier to read than 40 quoted words
        "the a film movie plot acting great terrible boring wonderful story actor scene "
        "director bad good best worst love hate funny dull brilliant awful and but is was "
        "it this that not very really quite so too much watch again never"
    ).split()
    texts = []
    for _ in range(count):
        length = int(rng.lognormal(np.log(200), 0.6))  # IMDB: about 230 words on average
        texts.append(" ".join(rng.choice(words, size=max(length, 5))))
    return texts, "generated"


def _imdb_test_reviews(path) -> list[str]:
    """The test split only, in archive order; stops reading the archive after it."""
    texts: list[str] = []
    if path.is_dir():
        return [p.read_text("utf-8") for p in sorted(path.glob("test/*/*.txt"))]
    with tarfile.open(path, "r:*") as tar:
        seen_test = False
        for member in tar:
            in_test = "/test/" in f"/{member.name}"
            if seen_test and not in_test and member.name.count("/") >= 2:
                break  # past the test folder (the archive keeps a folder's files together)
            if in_test and member.isfile() and member.name.endswith(".txt"):
                seen_test = True
                handle = tar.extractfile(member)
                assert handle is not None
                texts.append(handle.read().decode("utf-8"))
    return texts


def digits_payloads(count: int = 1000, data_dir: str | None = None) -> Payloads:
    images, source = digit_images(count, data_dir)
    bodies = [multipart(png(image), f"digit{i}.png") for i, image in enumerate(images)]
    return Payloads(
        "/v1/digits/predict",
        f"multipart/form-data; boundary={BOUNDARY}",
        bodies,
        source,
        list(images.astype(np.float32)),
    )


def sentiment_payloads(count: int = 1000, data_dir: str | None = None) -> Payloads:
    texts, source = reviews(count, data_dir)
    bodies = [orjson.dumps({"reviews": [text]}) for text in texts]
    return Payloads("/v1/sentiment/predict", "application/json", bodies, source, texts)


def _oip_binary(name: str, datatype: str, shape: list[int], blob: bytes) -> tuple[bytes, dict]:
    """An infer request of one input as tritonclient sends it: JSON, then the tensor's bytes."""
    return _oip_binary_inputs([(name, datatype, shape, blob)])


def _oip_binary_inputs(inputs: list[tuple[str, str, list[int], bytes]]) -> tuple[bytes, dict]:
    """An infer request as tritonclient sends it: JSON, then each tensor's bytes in order;
    every output asked for as binary."""
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": shape,
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(blob)},
                }
                for name, datatype, shape, blob in inputs
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return head + b"".join(blob for *_, blob in inputs), {
        "Inference-Header-Content-Length": str(len(head))
    }


def _prefixed(item: bytes) -> bytes:
    return struct.pack("<I", len(item)) + item


def tfserving_digits_payloads(count: int = 1000, data_dir: str | None = None) -> Payloads:
    images, source = digit_images(count, data_dir)
    bodies = [
        orjson.dumps({"instances": [{"b64": base64.b64encode(png(image)).decode()}]})
        for image in images
    ]
    return Payloads("/v1/models/digits:predict", "application/json", bodies, source, list(images))


def tfserving_sentiment_payloads(count: int = 1000, data_dir: str | None = None) -> Payloads:
    texts, source = reviews(count, data_dir)
    bodies = [orjson.dumps({"instances": [text]}) for text in texts]
    return Payloads("/v1/models/sentiment:predict", "application/json", bodies, source, texts)


def oip_digits_payloads(count: int = 1000, data_dir: str | None = None) -> Payloads:
    images, source = digit_images(count, data_dir)
    built = [_oip_binary("images", "BYTES", [1], _prefixed(png(image))) for image in images]
    return Payloads(
        "/v2/models/digits/infer",
        "application/octet-stream",
        [body for body, _ in built],
        source,
        list(images),
        [headers for _, headers in built],
    )


def oip_sentiment_payloads(count: int = 1000, data_dir: str | None = None) -> Payloads:
    texts, source = reviews(count, data_dir)
    built = [_oip_binary("reviews", "BYTES", [1], _prefixed(text.encode())) for text in texts]
    return Payloads(
        "/v2/models/sentiment/infer",
        "application/octet-stream",
        [body for body, _ in built],
        source,
        texts,
        [headers for _, headers in built],
    )


def simple_rows(count: int) -> np.ndarray:
    """``count`` pairs of int32 rows of 16 for the general model (``bench.general``)."""
    rng = np.random.default_rng(SEED)
    return rng.integers(-1000, 1000, size=(count, 2, 16), dtype=np.int32)


def oip_simple_payloads(count: int = 1000, data_dir: str | None = None) -> Payloads:
    """One instance of INPUT0 and INPUT1 per request, binary, as tritonclient sends them."""
    rows = simple_rows(count)
    built = [
        _oip_binary_inputs(
            [
                ("INPUT0", "INT32", [1, 16], row[0].astype("<i4").tobytes()),
                ("INPUT1", "INT32", [1, 16], row[1].astype("<i4").tobytes()),
            ]
        )
        for row in rows
    ]
    return Payloads(
        "/v2/models/simple/infer",
        "application/octet-stream",
        [body for body, _ in built],
        "generated",
        list(rows),
        [headers for _, headers in built],
    )


def tfserving_simple_payloads(count: int = 1000, data_dir: str | None = None) -> Payloads:
    """One instance per request in TF Serving's row format: ``{"INPUT0": [...], "INPUT1": [...]}``."""
    rows = simple_rows(count)
    bodies = [
        orjson.dumps({"instances": [{"INPUT0": row[0].tolist(), "INPUT1": row[1].tolist()}]})
        for row in rows
    ]
    return Payloads(
        "/v1/models/simple:predict", "application/json", bodies, "generated", list(rows)
    )


PayloadMaker = Callable[..., Payloads]
# model -> protocol -> the same instances in that protocol's request bodies
PROTOCOLS: dict[str, dict[str, PayloadMaker]] = {
    "digits": {
        "native": digits_payloads,
        "tfserving": tfserving_digits_payloads,
        "oip": oip_digits_payloads,
    },
    "sentiment": {
        "native": sentiment_payloads,
        "tfserving": tfserving_sentiment_payloads,
        "oip": oip_sentiment_payloads,
    },
}
# The general model (bench.general), by protocol: what its users' clients send.
GENERAL: dict[str, PayloadMaker] = {
    "oip": oip_simple_payloads,
    "tfserving": tfserving_simple_payloads,
}
