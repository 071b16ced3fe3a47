"""The measures' readers (:mod:`evaluation.measures`) through each of the service's protocols.

Each reader sends the inputs one protocol's way to a running service and returns what it
answered: the native endpoints (which answer with the default version, checked against the one
expected), TensorFlow Serving's ``:predict`` (a version or a label in the path) and the Open
Inference Protocol's ``infer`` (a version). Image files go as files: multipart uploads,
``{"b64": ...}`` instances, ``BYTES`` tensors of base64 text. A client is anything with
``post(url, json=..., files=...)`` answering with ``.status_code`` and ``.json()``: an
``httpx.Client`` with a ``base_url``, or the tests' in-process ``Client``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluation.measures import png

CHUNK = 250  # instances per request, within MAX_INSTANCES


Client = Any  # httpx.Client or fastapi.testclient.Client


def _post(client: Client, url: str, **kwargs: Any) -> Any:
    response = client.post(url, **kwargs)
    assert response.status_code == 200, response.text[:500]
    return response.json()


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class NativeSentiment:
    def __init__(self, client: Client, version: int) -> None:
        self.client, self.version = client, version

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        out: list[float] = []
        for chunk in _chunks(texts):
            body = _post(self.client, "/v1/sentiment/predict", json={"reviews": list(chunk)})
            assert body["version"] == self.version
            out += [p["score"] for p in body["predictions"]]
        return np.array(out)


def _tfserving(name: str, version: int | str) -> str:
    """``:predict`` of a version (a number) or of a label (a name)."""
    where = f"versions/{version}" if isinstance(version, int) else f"labels/{version}"
    return f"/v1/models/{name}/{where}:predict"


class TFServingSentiment:
    def __init__(self, client: Client, version: int | str) -> None:
        self.client = client
        self.url = _tfserving("sentiment", version)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        out: list[float] = []
        for chunk in _chunks(texts):
            out += _post(self.client, self.url, json={"instances": list(chunk)})["predictions"]
        return np.array(out)


class OIPSentiment:
    def __init__(self, client: Client, version: int) -> None:
        self.client, self.version = client, version
        self.url = f"/v2/models/sentiment/versions/{version}/infer"

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        out: list[float] = []
        for chunk in _chunks(texts):
            body = _post(
                self.client,
                self.url,
                json={
                    "inputs": [
                        {"name": "reviews", "datatype": "BYTES", "shape": [len(chunk)],
                         "data": list(chunk)}
                    ]
                },
            )  # fmt: skip
            assert body["model_version"] == str(self.version)
            out += body["outputs"][0]["data"]
        return np.array(out)


class NativeDigits:
    """Uploads only: tensors go as PNG files (MNIST's are framed already, so used as they are)."""

    def __init__(self, client: Client, version: int) -> None:
        self.client, self.version = client, version

    def tensors(self, images: np.ndarray) -> np.ndarray:
        return self.uploads([png(image) for image in images])

    def uploads(self, files: Sequence[bytes]) -> np.ndarray:
        out: list[int] = []
        for chunk in _chunks(files):
            body = _post(
                self.client,
                "/v1/digits/predict",
                files=[("file", (f"{i}.png", f, "image/png")) for i, f in enumerate(chunk)],
            )
            assert body["version"] == self.version
            out += [p["digit"] for p in body["predictions"]]
        return np.array(out)


class TFServingDigits:
    def __init__(self, client: Client, version: int | str) -> None:
        self.client = client
        self.url = _tfserving("digits", version)

    def _read(self, instances: list[Any]) -> list[int]:
        predictions = _post(self.client, self.url, json={"instances": instances})["predictions"]
        return [int(np.argmax(p)) for p in predictions]

    def tensors(self, images: np.ndarray) -> np.ndarray:
        out: list[int] = []
        for chunk in _chunks(images):
            out += self._read(np.asarray(chunk).tolist())
        return np.array(out)

    def uploads(self, files: Sequence[bytes]) -> np.ndarray:
        out: list[int] = []
        for chunk in _chunks(files):
            out += self._read([{"b64": _b64(f)} for f in chunk])
        return np.array(out)


class OIPDigits:
    def __init__(self, client: Client, version: int) -> None:
        self.client, self.version = client, version
        self.url = f"/v2/models/digits/versions/{version}/infer"

    def _read(self, tensor: dict[str, Any]) -> list[int]:
        body = _post(self.client, self.url, json={"inputs": [{"name": "images", **tensor}]})
        assert body["model_version"] == str(self.version)
        output = body["outputs"][0]
        return np.argmax(np.reshape(output["data"], output["shape"]), axis=1).tolist()

    def tensors(self, images: np.ndarray) -> np.ndarray:
        out: list[int] = []
        for chunk in _chunks(images):
            shape = [len(chunk), 28, 28]
            out += self._read({"datatype": "FP32", "shape": shape, "data": chunk.ravel().tolist()})
        return np.array(out)

    def uploads(self, files: Sequence[bytes]) -> np.ndarray:
        out: list[int] = []
        for chunk in _chunks(files):
            data = [_b64(f) for f in chunk]
            out += self._read({"datatype": "BYTES", "shape": [len(chunk)], "data": data})
        return np.array(out)


SENTIMENT_READERS = {
    "native": NativeSentiment,
    "tfserving": TFServingSentiment,
    "oip": OIPSentiment,
}
DIGIT_READERS = {"native": NativeDigits, "tfserving": TFServingDigits, "oip": OIPDigits}
