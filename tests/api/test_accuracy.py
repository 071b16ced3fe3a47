"""Each committed version's measures in its metadata.json are what it answers through every
protocol: the native endpoints, TensorFlow Serving's API and the Open Inference Protocol.

The measures (:mod:`evaluation.measures`) are computed offline by ``python -m evaluation``; here
the same inputs go through HTTP, one protocol at a time, to one version at a time: the app is
started with ``MODEL_VERSION_POLICY=specific:V``, so its unversioned (native) endpoints answer
with version V. Slow (whole test sets, three times per version) and needs the data sets: left
out of ``make test-fast``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from evaluation.measures import digit_measures, sentiment_measures
from evaluation.readers import DIGIT_READERS, SENTIMENT_READERS
from tests.conftest import MODELS

pytestmark = pytest.mark.slow


def committed(name: str) -> list[int]:
    return sorted(int(p.name) for p in (MODELS / name).iterdir() if p.name.isdigit())


def recorded(name: str, version: int) -> dict[str, float]:
    metadata = json.loads((MODELS / name / str(version) / "metadata.json").read_text())
    return {k: v for k, v in metadata["measures"].items() if k not in ("command", "batch64_ms")}


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[int, TestClient]]:
    """One app per committed version, serving it to unversioned requests."""
    versions = sorted(set(committed("sentiment")) | set(committed("digits")))
    with_versions = {
        v: TestClient(create_app(Settings(model_dir=MODELS, model_version_policy=f"specific:{v}")))
        for v in versions
    }
    for client in with_versions.values():
        client.__enter__()
    yield with_versions
    for client in with_versions.values():
        client.__exit__(None, None, None)


@pytest.mark.parametrize("protocol", SENTIMENT_READERS)
@pytest.mark.parametrize("version", committed("sentiment"))
def test_sentiment_measures_are_the_same_through_every_protocol(
    clients: dict[int, TestClient], imdb: object, version: int, protocol: str
) -> None:
    measured = sentiment_measures(SENTIMENT_READERS[protocol](clients[version], version))
    print(f"sentiment v{version} through {protocol}: {measured}")
    assert measured == pytest.approx(recorded("sentiment", version), abs=1e-4)


@pytest.mark.parametrize("protocol", DIGIT_READERS)
@pytest.mark.parametrize("version", committed("digits"))
def test_digit_measures_are_the_same_through_every_protocol(
    clients: dict[int, TestClient], mnist: object, version: int, protocol: str
) -> None:
    measured = digit_measures(DIGIT_READERS[protocol](clients[version], version))
    print(f"digits v{version} through {protocol}: {measured}")
    assert measured == pytest.approx(recorded("digits", version), abs=1e-4)
