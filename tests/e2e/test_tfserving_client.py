"""A TensorFlow Serving client, written as TF Serving's examples are, against a real uvicorn.

The server is the service with the test-only fault switch of ``tests/support/faulty_app.py``
(no fault but while a test holds a model), so that a test can show that both APIs queue on
the same batcher.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.inputs import decode_digit
from tests.conftest import MODELS, png
from tests.support.server import metric_total, model_calls, start_server, stop_server
from tests.support.waiting import wait_until

REVIEWS = [
    "An absolute masterpiece, moving and beautifully acted.",
    "Dull, predictable and far too long. I hated it.",
]


@dataclass
class Served:
    url: str
    fault_file: Path

    def fault(self, spec: str) -> None:
        self.fault_file.write_text(spec)

    def model_calls(self, model: str) -> list[int]:
        """Instances of each call that reached ``model`` so far, in order."""
        return model_calls(self.fault_file, model)

    def queued(self, model: str) -> float:
        """``model_queue_depth`` of ``model``, all its versions together."""
        return metric_total(self.url, "model_queue_depth", model=model)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    fault_file = tmp_path_factory.mktemp("fault") / "fault"
    fault_file.write_text("")
    env = {
        "MODEL_DIR": str(MODELS),
        "FAULT_FILE": str(fault_file),
        "MAX_BATCH_SIZE": "64",
        "MAX_CONCURRENT_BATCHES": "1",
        "REQUEST_TIMEOUT_S": "60",  # a held call waits for the others to queue
    }
    proc, base_url = start_server(env, target="tests.support.faulty_app:app")
    try:
        yield Served(base_url, fault_file)
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def url(served: Served) -> str:
    return served.url


def digit_images() -> np.ndarray:
    """Four 28x28 digits drawn as bars and boxes, framed as MNIST's are (as an upload would be:
    a PNG upload is then used as it is, and gives what the same pixels as a list give)."""
    images = np.zeros((4, 28, 28), dtype=np.uint8)
    for i, image in enumerate(images):
        image[5 + i : 23, 10 + 2 * i : 13 + 2 * i] = 255
        if i % 2:
            image[5:8, 6:22] = 180
    return np.stack([decode_digit(png(image)) for image in images]).astype(np.uint8)


def test_model_status_and_metadata(url: str) -> None:
    status = httpx.get(f"{url}/v1/models/sentiment", timeout=10).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = httpx.get(f"{url}/v1/models/digits/metadata", timeout=10).json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["images"]["dtype"] == "DT_FLOAT"
    assert metadata["model_spec"]["name"] == "digits"


def test_sentiment_client(url: str) -> None:
    # As in TF Serving's examples: json={"instances": ...}, read "predictions".
    response = httpx.post(
        f"{url}/v1/models/sentiment:predict", json={"instances": REVIEWS}, timeout=30
    )
    response.raise_for_status()
    predictions = response.json()["predictions"]
    assert predictions[0] > 0.5 > predictions[1]

    native = httpx.post(f"{url}/v1/sentiment/predict", json={"reviews": REVIEWS}, timeout=30)
    scores = [p["score"] for p in native.json()["predictions"]]
    assert predictions == pytest.approx(scores, rel=1e-5, abs=1e-6)

    columnar = httpx.post(
        f"{url}/v1/models/sentiment/versions/2:predict",
        json={"signature_name": "serving_default", "inputs": {"reviews": REVIEWS}},
        timeout=30,
    )
    assert columnar.json()["outputs"] == pytest.approx(scores, rel=1e-5, abs=1e-6)


def test_digits_client(url: str) -> None:
    images = digit_images()
    pixels = httpx.post(
        f"{url}/v1/models/digits:predict", json={"instances": images.tolist()}, timeout=30
    )
    pixels.raise_for_status()
    encoded = [{"b64": base64.b64encode(png(image)).decode()} for image in images]
    files = httpx.post(f"{url}/v1/models/digits:predict", json={"instances": encoded}, timeout=30)
    files.raise_for_status()
    native = httpx.post(
        f"{url}/v1/digits/predict",
        files=[("file", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(images)],
        timeout=30,
    )
    expected = [p["probabilities"] for p in native.json()["predictions"]]
    for predictions in (pixels.json()["predictions"], files.json()["predictions"]):
        assert len(predictions) == len(images)
        for row, want in zip(predictions, expected, strict=True):
            assert row == pytest.approx(want, rel=1e-5, abs=1e-6)
            assert sum(row) == pytest.approx(1, abs=1e-4)


def test_errors_are_tf_serving_style(url: str) -> None:
    missing = httpx.post(f"{url}/v1/models/half:predict", json={"instances": [1.0]}, timeout=10)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error"}
    bad = httpx.post(
        f"{url}/v1/models/digits:predict", json={"instances": [[[300] * 28] * 28]}, timeout=10
    )
    assert bad.status_code == 400
    assert set(bad.json()) == {"error"}


def test_both_apis_at_once_share_the_batchers(served: Served) -> None:
    """Requests through both APIs wait on one queue and go to the model together.

    Sentiment's one model call is held; 12 requests through each API (2 reviews each) queue
    behind it, and once it is let go the next call takes all 48 instances at once.
    """
    send = {
        "native": lambda client: client.post("/v1/sentiment/predict", json={"reviews": REVIEWS}),
        "tf serving": lambda client: client.post(
            "/v1/models/sentiment:predict", json={"instances": REVIEWS}
        ),
    }
    first_len = len(served.model_calls("sentiment"))
    kinds = ["native", "tf serving"] * 12
    with httpx.Client(base_url=served.url, timeout=90) as client, ThreadPoolExecutor(25) as pool:
        served.fault("block:sentiment")
        try:
            held = pool.submit(client.post, "/v1/sentiment/predict", json={"reviews": ["held"]})
            wait_until(lambda: served.model_calls("sentiment")[first_len:] == [1], "one call held")
            futures = [pool.submit(send[kind], client) for kind in kinds]
            wait_until(
                lambda: served.queued("sentiment") == 2 * len(kinds),
                lambda: (
                    f"both APIs' {2 * len(kinds)} instances queued on sentiment's batcher: "
                    f"{served.queued('sentiment'):g} queued, calls since "
                    f"{served.model_calls('sentiment')[first_len:]}"
                ),
            )
        finally:
            served.fault("")  # lets the held call go (the clients' too, on a failure)
        responses = [future.result() for future in futures]
        assert held.result().status_code == 200
    assert [r.status_code for r in responses] == [200] * len(responses)
    # One call for the held request, then one for everything both APIs queued behind it.
    assert served.model_calls("sentiment")[first_len:] == [1, 2 * len(kinds)]
    pairs = list(zip(kinds, responses, strict=True))
    native = [[p["score"] for p in r.json()["predictions"]] for k, r in pairs if k == "native"]
    tf_serving = [r.json()["predictions"] for k, r in pairs if k == "tf serving"]
    for scores in native + tf_serving:
        assert scores == pytest.approx(native[0], rel=1e-5, abs=1e-6)
