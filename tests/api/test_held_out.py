"""The served default reads negation and people's digits: the thresholds of version 2, through
HTTP, on the held-out sets that need no data set (the probes are in tests/data; the drawn
digits are generated; scikit-learn ships the other handwriting). Never trained on.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from evaluation.measures import digit_measures, sentiment_measures
from evaluation.readers import NativeDigits, NativeSentiment

DEFAULT_VERSION = 2


def test_the_negation_probes_read_right(client: TestClient) -> None:
    reader = NativeSentiment(client, DEFAULT_VERSION)
    measured = sentiment_measures(reader, imdb=False, snippets=False)
    print(f"negation probes through HTTP: {measured}")
    assert measured["negation_probes"] >= 0.85
    assert measured["negation_probes_negated"] >= 0.75
    assert measured["negation_probes_plain"] >= 0.95


def test_digits_people_draw_to_fill_the_frame_read_right(client: TestClient) -> None:
    measured = digit_measures(NativeDigits(client, DEFAULT_VERSION), mnist=False)
    print(f"digits through HTTP: {measured}")
    assert set(measured) == {
        f"{kind}_{side}x{side}" for kind in ("drawn", "other_handwriting") for side in (28, 64)
    }
    assert {name: value for name, value in measured.items() if value < 0.95} == {}
