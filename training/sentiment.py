"""Train the IMDB sentiment classifier and export it as a SavedModel.

Two recipes (``--recipe``), both taking raw review strings, with tokenising inside the exported
graph so that the service and its clients can never disagree with training about it:

* ``v1`` (the default, the course's): multi-hot bag of the 10,000 most frequent words ->
  Dense(16) -> Dense(16) -> Dense(1, sigmoid).
* ``v2``: a bag of 50,000 words and word pairs that reads negation (:mod:`training.text`:
  contractions spelled out, negated terms counted negative, TF-IDF, unit length) -> one
  Dense(1, sigmoid): logistic regression. Why this one: docs/training.md.

    python -m training.sentiment --help
    python -m training.sentiment --recipe v2
"""

from __future__ import annotations

import argparse
import re
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from training import export, text
from training.cli import base_parser
from training.data import load_imdb

MAX_TOKENS = 10_000
V2_MAX_WORDS = 30_000
V2_MAX_PAIRS = 40_000
V2_L2 = 1e-6
V2_LEARNING_RATE = 0.01
VALIDATION_SIZE = 10_000
INPUT_NAME = "reviews"
OUTPUT_NAME = "positive_probability"
_PUNCTUATION = f"[{re.escape(string.punctuation)}]"


def standardize(text: tf.Tensor) -> tf.Tensor:
    """Lower-case, turn the reviews' ``<br />`` tags into spaces, drop punctuation."""
    text = tf.strings.lower(text)
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    return tf.strings.regex_replace(text, _PUNCTUATION, " ")


def build_vectorizer(texts: list[str]) -> keras.layers.TextVectorization:
    vectorizer = keras.layers.TextVectorization(
        max_tokens=MAX_TOKENS, output_mode="multi_hot", standardize=standardize
    )
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(texts).batch(1024))
    return vectorizer


def build_classifier() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input(shape=(MAX_TOKENS,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="imdb_sentiment",
    )
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def vectorize(vectorizer: keras.layers.TextVectorization, texts: list[str]) -> np.ndarray:
    """Multi-hot rows as uint8 (a quarter of float32's memory), computed once, not per epoch."""
    chunks = [
        keras.ops.convert_to_numpy(vectorizer(tf.constant(texts[i : i + 2048]))).astype(np.uint8)
        for i in range(0, len(texts), 2048)
    ]
    return np.concatenate(chunks)


@dataclass
class TrainedSentiment:
    """What a run leaves behind: the in-memory model, where it was exported, its metrics."""

    vectorizer: keras.layers.Layer  # raw strings -> the classifier's features
    classifier: keras.Model
    path: Path
    metadata: dict

    def predict(self, reviews: list[str]) -> np.ndarray:
        """The in-memory model on raw strings, for comparing with the SavedModel."""
        features = self.vectorizer(tf.constant(reviews))
        return keras.ops.convert_to_numpy(self.classifier(features, training=False))[:, 0]


def train(argv: list[str] | None = None) -> TrainedSentiment:
    parser = base_parser(__doc__.splitlines()[0], batch_size=None)
    parser.add_argument(
        "--recipe", choices=("v1", "v2"), default="v1", help="v1: the course's; v2: negation"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs on all training reviews (default: the best epoch on the validation run)",
    )
    parser.add_argument(
        "--search-epochs",
        type=int,
        default=None,
        help="epochs of the validation run that chooses --epochs (v1: 20, v2: 15)",
    )
    args = parser.parse_args(argv)
    export.seed_everything(args.seed)
    started = time.perf_counter()

    (train_texts, train_labels), (test_texts, test_labels) = load_imdb(
        args.data_dir and str(args.data_dir)
    )
    order = np.random.default_rng(args.seed).permutation(len(train_texts))
    train_texts = [train_texts[i] for i in order][: args.limit]
    train_labels = train_labels[order][: args.limit]
    test_order = np.random.default_rng(args.seed + 1).permutation(len(test_texts))[: args.limit]
    test_texts, test_labels = [test_texts[i] for i in test_order], test_labels[test_order]
    data = (train_texts, train_labels, test_texts, test_labels)
    if args.recipe == "v2":
        return _train_v2(args, data, started)
    args.batch_size = args.batch_size or 512
    args.search_epochs = args.search_epochs or 20

    vectorizer = build_vectorizer(train_texts)
    x_train = vectorize(vectorizer, train_texts)
    x_test = vectorize(vectorizer, test_texts)
    y_train = train_labels.astype(np.float32)
    y_test = test_labels.astype(np.float32)

    # 1. Hold out validation reviews to see where the model starts to overfit.
    n_val = min(VALIDATION_SIZE, len(x_train) * 2 // 5)
    search_epochs = args.epochs or args.search_epochs
    history = (
        build_classifier()
        .fit(
            x_train[n_val:],
            y_train[n_val:],
            validation_data=(x_train[:n_val], y_train[:n_val]),
            epochs=search_epochs,
            batch_size=args.batch_size,
            verbose=args.verbose,
        )
        .history
    )
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    epochs = args.epochs or best_epoch

    # 2. Train a fresh model on every training review for the chosen number of epochs.
    classifier = build_classifier()
    classifier.fit(
        x_train, y_train, epochs=epochs, batch_size=args.batch_size, verbose=args.verbose
    )
    test_loss, test_accuracy = classifier.evaluate(x_test, y_test, batch_size=2048, verbose=0)
    seconds = time.perf_counter() - started

    path = export.version_dir(args.output_dir, "sentiment", args.version)
    metadata = _publish(
        path,
        vectorizer,
        classifier,
        {
            "recipe": "v1",
            "dataset": "IMDB Large Movie Review Dataset (aclImdb)",
            "train_size": len(x_train),
            "validation_size": n_val,
            "test_size": len(x_test),
            "max_tokens": MAX_TOKENS,
            "search_epochs": search_epochs,
            "best_validation_epoch": best_epoch,
            "epochs": epochs,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "test_accuracy": round(float(test_accuracy), 5),
            "test_loss": round(float(test_loss), 5),
            "training_seconds": round(seconds, 1),
        },
        history,
        "IMDB sentiment (validation run)",
    )
    print(f"sentiment: test accuracy {test_accuracy:.4f} (loss {test_loss:.4f}) -> {path}")
    return TrainedSentiment(vectorizer, classifier, path, metadata)


def build_linear_classifier(size: int) -> keras.Model:
    """v2's classifier: logistic regression on the sparse features of :mod:`training.text`."""
    model = keras.Sequential(
        [
            keras.Input(shape=(size,), sparse=True),
            keras.layers.Dense(
                1, activation="sigmoid", kernel_regularizer=keras.regularizers.L2(V2_L2)
            ),
        ],
        name="imdb_sentiment_v2",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(V2_LEARNING_RATE),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _batches(
    features: tf.SparseTensor, labels: np.ndarray, batch_size: int, seed: int | None
) -> tf.data.Dataset:
    """Sparse rows and labels in batches, shuffled with ``seed`` (None: in order)."""
    data = tf.data.Dataset.from_tensor_slices((features, labels))
    if seed is not None:
        data = data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size)


def _train_v2(
    args: argparse.Namespace,
    data: tuple[list[str], np.ndarray, list[str], np.ndarray],
    started: float,
) -> TrainedSentiment:
    """v2: vocabulary and IDF from the training reviews, a validation run, then all reviews."""
    train_texts, train_labels, test_texts, test_labels = data
    batch_size = args.batch_size or 256
    search_epochs = args.epochs or args.search_epochs or 15
    words, pairs, idf = text.build_vocabulary(train_texts, V2_MAX_WORDS, V2_MAX_PAIRS)
    bag = text.NegationBag(words, pairs, idf, name="negation_bag")

    def features(texts: list[str]) -> tf.SparseTensor:
        chunks = [bag(tf.constant(texts[i : i + 2048])) for i in range(0, len(texts), 2048)]
        return tf.sparse.reorder(tf.sparse.concat(0, chunks))

    x_train, x_test = features(train_texts), features(test_texts)
    y_train, y_test = train_labels.astype(np.float32), test_labels.astype(np.float32)

    # 1. Hold out validation reviews to see where the model starts to overfit.
    n_val = min(VALIDATION_SIZE, len(train_texts) * 2 // 5)
    n_train = len(train_texts)
    x_val = tf.sparse.slice(x_train, [0, 0], [n_val, bag.size])
    x_fit = tf.sparse.slice(x_train, [n_val, 0], [n_train - n_val, bag.size])
    history = (
        build_linear_classifier(bag.size)
        .fit(
            _batches(x_fit, y_train[n_val:], batch_size, args.seed),
            validation_data=_batches(x_val, y_train[:n_val], 2048, None),
            epochs=search_epochs,
            verbose=args.verbose,
        )
        .history
    )
    best_epoch = int(np.argmin(history["val_loss"])) + 1
    epochs = args.epochs or best_epoch

    # 2. Train a fresh model on every training review for the chosen number of epochs.
    classifier = build_linear_classifier(bag.size)
    classifier.fit(
        _batches(x_train, y_train, batch_size, args.seed), epochs=epochs, verbose=args.verbose
    )
    test_loss, test_accuracy = classifier.evaluate(_batches(x_test, y_test, 2048, None), verbose=0)
    seconds = time.perf_counter() - started

    path = export.version_dir(args.output_dir, "sentiment", args.version)
    metadata = _publish(
        path,
        bag,
        classifier,
        {
            "recipe": "v2",
            "dataset": "IMDB Large Movie Review Dataset (aclImdb)",
            "train_size": n_train,
            "validation_size": n_val,
            "test_size": len(test_texts),
            "features": (
                f"signed TF-IDF of words and word pairs, negation scope {text.SCOPE} words, "
                "unit length"
            ),
            "vocabulary_size": bag.size,
            "l2": V2_L2,
            "learning_rate": V2_LEARNING_RATE,
            "search_epochs": search_epochs,
            "best_validation_epoch": best_epoch,
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": args.seed,
            "test_accuracy": round(float(test_accuracy), 5),
            "test_loss": round(float(test_loss), 5),
            "training_seconds": round(seconds, 1),
        },
        history,
        "IMDB sentiment v2 (validation run)",
    )
    print(f"sentiment v2: test accuracy {test_accuracy:.4f} (loss {test_loss:.4f}) -> {path}")
    return TrainedSentiment(bag, classifier, path, metadata)


def _publish(
    path: Path,
    features: Any,
    classifier: keras.Model,
    recipe_metadata: dict[str, Any],
    history: dict[str, list[float]],
    title: str,
) -> dict[str, Any]:
    """Export ``features`` then ``classifier`` as the serving signature (reviews -> positive
    probability) into ``path``, with its metadata and training curves; returns the metadata.

    The version is written beside its final place, then renamed into it: a running service
    polling MODEL_DIR never sees a half-written version.
    """

    @tf.function
    def serve(reviews: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = classifier(features(reviews), training=False)
        return {OUTPUT_NAME: tf.squeeze(probabilities, axis=-1)}

    with export.publishing(path) as staging:
        export.export_saved_model(
            staging,
            tracked=[features, classifier],
            serve=serve,
            input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)],
        )
        metadata = {
            "model": "sentiment",
            "version": int(path.name),
            **recipe_metadata,
            "validation_history": {
                k: [round(float(v), 5) for v in vs] for k, vs in history.items()
            },
            "signature": {
                "inputs": {INPUT_NAME: {"dtype": "string", "shape": [None]}},
                "outputs": {OUTPUT_NAME: {"dtype": "float32", "shape": [None]}},
            },
        }
        export.write_metadata(staging, metadata)
        export.plot_history(history, staging / "training_curves.png", title)
    return metadata


def main(argv: list[str] | None = None) -> None:
    train(argv)


if __name__ == "__main__":
    main()
