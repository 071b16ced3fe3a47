"""The playground's thresholds for people, checked against the data they were chosen from.

The page (``app/playground/assets/app.js``) says "draw a digit first" below ``MIN_INK``, shows a
digit read with a top probability under ``SURE_DIGIT`` as a guess, and calls a review whose
score is within ``MIXED_WITHIN`` of 0.5 mixed. The method (docs/api.md, "How sure the models
are"):

* ``SURE_DIGIT``: the 90th percentile of the top probability of the digits the model misreads
  in the drawn-digit set (the first 1,000 MNIST test digits re-framed the ways people frame
  theirs, ``tests/support/drawn_digits.py``), through the API: 9 in 10 misreadings are flagged.
* ``MIXED_WITHIN``: the median distance from 0.5 of the scores of the test reviews the model
  gets wrong: the mixed band holds half of its mistakes.
* ``MIN_INK``: well above a dot of the page's pen and well below the least ink of the ten
  digits drawn across the pad.

``-s`` prints the figures docs/api.md quotes. When a new model version moves a threshold by more
than :data:`SLACK`, this fails: take the printed value into app.js and the docs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.support.drawn_digits import REFRAMINGS, draw

APP_JS = Path(__file__).resolve().parents[2] / "app" / "playground" / "assets" / "app.js"
SLACK = 0.03
SAMPLE = 1000
PAD = 280  # the page's canvas, in pixels
PEN = 18  # the page's pen, in canvas pixels
PAD_BOX = (0.25, 0.12, 0.75, 0.88)  # where the browser tests draw a digit on the pad


def page_constant(name: str) -> float:
    match = re.search(rf"^const {name} = ([0-9.]+);", APP_JS.read_text(), re.MULTILINE)
    assert match, f"no const {name} in {APP_JS}"
    return float(match[1])


@pytest.mark.slow  # 9,000 digits and 24,999 reviews through the API
def test_sure_digit_flags_nine_in_ten_misread_digits(client: TestClient, mnist) -> None:
    (_, _), (x_test, y_test) = mnist
    top, right = [], []
    for make in REFRAMINGS.values():
        for start in range(0, SAMPLE, 100):
            indices = range(start, start + 100)
            files = [("file", (f"{i}.png", make(x_test[i], i), "image/png")) for i in indices]
            response = client.post("/v1/digits/predict", files=files)
            assert response.status_code == 200, response.text
            for i, prediction in zip(indices, response.json()["predictions"], strict=True):
                top.append(max(prediction["probabilities"]))
                right.append(prediction["digit"] == int(y_test[i]))
    tops, rights = np.array(top), np.array(right)
    data = float(np.quantile(tops[~rights], 0.9))
    page = page_constant("SURE_DIGIT")
    flagged = tops < page
    print(
        f"\ndrawn-digit set: {len(tops)} digits, {int((~rights).sum())} misread; 90th percentile "
        f"of the misread ones' top probability {data:.3f}; below SURE_DIGIT={page:g}: "
        f"{np.mean(flagged[~rights]):.1%} of the misread, {np.mean(flagged[rights]):.1%} of "
        f"the right ones, {np.mean(flagged):.1%} of all"
    )
    assert abs(data - page) <= SLACK, f"SURE_DIGIT should be {data:.2f} for this model"


@pytest.mark.slow
def test_mixed_band_holds_half_the_misread_reviews(client: TestClient, imdb) -> None:
    (_, _), (texts, labels) = imdb
    scores: list[float] = []
    for start in range(0, len(texts), 256):
        response = client.post(
            "/v1/sentiment/predict", json={"reviews": texts[start : start + 256]}
        )
        assert response.status_code == 200, response.text
        scores += [p["score"] for p in response.json()["predictions"]]
    score = np.array(scores)
    wrong = (score >= 0.5).astype(int) != np.asarray(labels)
    distance = np.abs(score - 0.5)
    data = float(np.median(distance[wrong]))
    page = page_constant("MIXED_WITHIN")
    mixed = distance < page
    print(
        f"\nIMDB test set: {len(score)} reviews, {int(wrong.sum())} misread; median distance "
        f"from 0.5 of the misread ones' scores {data:.3f}; mixed (within MIXED_WITHIN={page:g}): "
        f"{np.mean(mixed):.1%} of all, {np.mean(mixed[wrong]):.1%} of the misread; accuracy "
        f"{np.mean(~wrong[mixed]):.1%} inside the band, {np.mean(~wrong[~mixed]):.1%} outside"
    )
    assert abs(data - page) <= SLACK, f"MIXED_WITHIN should be {data:.2f} for this model"


def test_min_ink_lies_between_a_dot_and_a_digit() -> None:
    dot = math.pi * (PEN / 2) ** 2 / PAD**2
    inks = {d: float(np.mean(draw(d, (PAD, PAD), PAD_BOX, pen=PEN) < 128)) for d in range(10)}
    least = min(inks, key=inks.__getitem__)
    page = page_constant("MIN_INK")
    print(
        f"\npad {PAD}x{PAD}, pen {PEN}: a dot is {dot:.2%} of the pad; the least-inked digit "
        f"({least}) {inks[least]:.1%}, the most {max(inks.values()):.1%}; MIN_INK={page:g}"
    )
    assert 2 * dot <= page <= inks[least] / 3
