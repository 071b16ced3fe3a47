"""A model version's measures, computed the same way offline and through any protocol.

Each measure asks a *reader* for answers: :class:`SavedModelDigits` and
:class:`SavedModelSentiment` call the SavedModel in process (offline); the tests pass readers
that send the same inputs through the native API, TensorFlow Serving's API and the Open
Inference Protocol, and expect the same figures. Uploads (image files) are read as the service
reads them: offline, :func:`app.inputs.decode_digit` frames them first, exactly as the native
endpoint does.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import tensorflow as tf
from PIL import Image

from app.inputs import decode_digit
from evaluation import sets
from evaluation.drawn_digits import REFRAMINGS
from training.data import load_imdb, load_mnist

UPLOAD_SIDES = (28, 64)
# The upload kinds the service promised before v2 too: inverted (dark on light) and large.
UPLOADS = ("280x280 canvas, black on white", "300x200 canvas, white on transparent")
UPLOAD_SAMPLE = 1000  # first MNIST test digits made into those uploads


class DigitReader(Protocol):
    def tensors(self, images: np.ndarray) -> np.ndarray:
        """(n, 28, 28) float32 0-255 pixels -> the digits read."""

    def uploads(self, files: Sequence[bytes]) -> np.ndarray:
        """Image files -> the digits read."""


class SentimentReader(Protocol):
    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Reviews -> the probability that each is positive."""


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


class SavedModelDigits:
    """The digits SavedModel in process; uploads framed by the service's own code."""

    def __init__(self, path: Path, batch_size: int = 1000) -> None:
        self.fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        self.batch_size = batch_size

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                self.fn(images=tf.constant(images[i : i + self.batch_size], tf.float32))[
                    "probabilities"
                ].numpy()
                for i in range(0, len(images), self.batch_size)
            ]
        )

    def tensors(self, images: np.ndarray) -> np.ndarray:
        return np.argmax(self.probabilities(images), axis=1)

    def uploads(self, files: Sequence[bytes]) -> np.ndarray:
        return self.tensors(np.stack([decode_digit(f) for f in files]))


class SavedModelSentiment:
    def __init__(self, path: Path, batch_size: int = 1000) -> None:
        self.fn = tf.saved_model.load(str(path)).signatures["serving_default"]
        self.batch_size = batch_size

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.concatenate(
            [
                self.fn(reviews=tf.constant(list(texts[i : i + self.batch_size])))[
                    "positive_probability"
                ].numpy()
                for i in range(0, len(texts), self.batch_size)
            ]
        )


def accuracy(predicted: np.ndarray, expected: np.ndarray) -> float:
    return round(float(np.mean(np.asarray(predicted) == np.asarray(expected))), 5)


def upload_sets(mnist: bool = True) -> dict[str, tuple[list[bytes], np.ndarray]]:
    """Every upload set of the digit measures: name -> (PNG files, digits); those made of
    MNIST's test digits only with ``mnist``."""
    out: dict[str, tuple[list[bytes], np.ndarray]] = {}
    for side in UPLOAD_SIDES:
        images, labels = sets.other_handwriting(side)
        out[f"other_handwriting_{side}x{side}"] = ([png(i) for i in images], labels)
        images, labels = sets.drawn(side)
        out[f"drawn_{side}x{side}"] = ([png(i) for i in images], labels)
    if not mnist:
        return out
    (_, _), (x_test, y_test) = load_mnist()
    for name in UPLOADS:
        make = REFRAMINGS[name]
        key = "mnist_" + name.split(", ")[1].replace(" ", "_")
        out[key] = ([make(x_test[i], i) for i in range(UPLOAD_SAMPLE)], y_test[:UPLOAD_SAMPLE])
    return out


def digit_measures(reader: DigitReader, mnist: bool = True) -> dict[str, float]:
    """MNIST's test set as tensors, then every upload set as files (without ``mnist``: only
    those that need no data set)."""
    measures = {}
    if mnist:
        (_, _), (x_test, y_test) = load_mnist()
        measures["mnist_test"] = accuracy(reader.tensors(x_test.astype(np.float32)), y_test)
    for name, (files, labels) in upload_sets(mnist).items():
        predicted = np.concatenate(
            [reader.uploads(files[i : i + 100]) for i in range(0, len(files), 100)]
        )
        measures[name] = accuracy(predicted, labels)
    return measures


def sentiment_measures(
    reader: SentimentReader, imdb: bool = True, snippets: bool = True
) -> dict[str, float]:
    """IMDB's test set, the negation probes (all, negated, plain), the movie snippets (each
    data set only when asked for)."""
    measures = {}
    if imdb:
        (_, _), (texts, labels) = load_imdb()
        measures["imdb_test"] = accuracy(reader.scores(texts) >= 0.5, labels.astype(bool))
    texts, positive, negated = sets.negation_probes()
    right = (reader.scores(texts) >= 0.5) == positive
    measures["negation_probes"] = round(float(np.mean(right)), 5)
    measures["negation_probes_negated"] = round(float(np.mean(right[negated])), 5)
    measures["negation_probes_plain"] = round(float(np.mean(right[~negated])), 5)
    if snippets:
        texts, positive = sets.movie_snippets()
        measures["movie_snippets"] = accuracy(reader.scores(texts) >= 0.5, positive)
    return measures


def batch64_ms(call: Callable[[], object], rounds: int = 7, calls: int = 20) -> float:
    """The fastest of ``rounds`` averages of ``calls`` calls, in ms (others' load only adds)."""
    for _ in range(5):
        call()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls)
    return round(best * 1000, 3)


def latency(path: Path, name: str) -> float:
    """One in-process call of the version on a batch of 64 test inputs, in ms."""
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    if name == "sentiment":
        (_, _), (texts, _) = load_imdb()
        reviews = tf.constant(texts[:64])
        return batch64_ms(lambda: fn(reviews=reviews))
    (_, _), (x_test, _) = load_mnist()
    images = tf.constant(x_test[:64].astype(np.float32))
    return batch64_ms(lambda: fn(images=images))
