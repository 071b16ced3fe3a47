"""The held-out sets: data no model version was trained on, to measure how it does on ours.

* :func:`negation_probes`: 80 short phrases written for this project (``tests/data/
  negation_probes.tsv``), half positive, half negative, half with a negation ("not bad at
  all", "I didn't enjoy it").
* :func:`movie_snippets`: 10,568 sentences from movie reviews (Pang and Lee's Rotten Tomatoes
  snippets, each rated by 20 people; Hutto and Gilbert, ICWSM 2014): a review source other than
  IMDB, and short. They ship in the source release of the ``vaderSentiment`` package; the file
  is read from ``$DATA_DIR`` if it is there, else fetched once by ``pip download`` into a cache.
  Positive when the mean rating is above 0, negative below; the 37 rated exactly 0 are left out.
* :func:`other_handwriting`: scikit-learn's 1,797 handwritten digits (8x8, other writers than
  MNIST's), scaled up to fill a ``side`` x ``side`` frame as people fill a small canvas.
* :func:`drawn`: :func:`evaluation.drawn_digits.scribble`, 100 hands per digit, filling the frame.
"""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
import tarfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.drawn_digits import scribble
from training.data import default_data_dir

ROOT = Path(__file__).resolve().parent.parent
PROBES = ROOT / "tests" / "data" / "negation_probes.tsv"
VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_SNIPPETS = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
CACHE = Path.home() / ".cache" / "keras-inference-service"


def negation_probes(path: Path = PROBES) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(phrases, positive?, negated?) from the probes file (tab-separated, with a header)."""
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    texts = [row["text"] for row in rows]
    positive = np.array([row["label"] == "positive" for row in rows])
    negated = np.array([row["negated"] == "yes" for row in rows])
    return texts, positive, negated


def vader_sdist(data_dir: Path | None = None) -> Path:
    """The ``vaderSentiment`` source release: in ``$DATA_DIR``, in the cache, or downloaded."""
    for folder in (data_dir or default_data_dir(), CACHE):
        path = folder / VADER_SDIST
        if path.is_file():
            return _checked(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
         "--dest", str(CACHE), "vaderSentiment==3.3.2"],
        check=True,
    )  # fmt: skip
    return _checked(CACHE / VADER_SDIST)


def _checked(path: Path) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != VADER_SHA256:
        raise RuntimeError(f"{path} has SHA-256 {digest}, not {VADER_SHA256}")
    return path


@lru_cache(maxsize=1)
def movie_snippets() -> tuple[list[str], np.ndarray]:
    """(sentences, positive?) of the Rotten Tomatoes snippets whose mean rating is not 0."""
    with tarfile.open(vader_sdist()) as outer:
        inner_file = outer.extractfile(_INNER)
        assert inner_file is not None
        with tarfile.open(fileobj=io.BytesIO(inner_file.read())) as inner:
            member = inner.extractfile(_SNIPPETS)
            assert member is not None
            lines = member.read().decode("utf-8").splitlines()
    texts, positive = [], []
    for line in lines:
        _, rating, sentence = line.split("\t", 2)
        if float(rating) != 0:
            texts.append(sentence)
            positive.append(float(rating) > 0)
    return texts, np.array(positive)


@lru_cache(maxsize=4)
def other_handwriting(side: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, side, side), digits): scikit-learn's 8x8 digits filling the frame."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = np.round(digits.images * (255 / 16)).astype(np.uint8)
    images = np.stack(
        [np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))
         for image in small]
    )  # fmt: skip
    return images, digits.target.astype(np.int64)


@lru_cache(maxsize=4)
def drawn(side: int, per_digit: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, side, side), digits): ``per_digit`` scribbles of each digit."""
    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(10), per_digit)
    images = np.stack([scribble(int(digit), rng, side) for digit in labels])
    return images, labels
