"""Train the IMDB sentiment classifier and export it as a SavedModel.

Multi-hot bag of the 10,000 most frequent words -> Dense(16) -> Dense(16) -> Dense(1, sigmoid),
as in the course. Tokenising lives inside the exported graph: the SavedModel takes raw review
strings, so the service and its clients can never disagree with training about preprocessing.

    python -m training.sentiment --help
"""

from __future__ import annotations

import re
import string
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training import export
from training.cli import base_parser
from training.data import load_imdb

MAX_TOKENS = 10_000
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

    vectorizer: keras.layers.TextVectorization
    classifier: keras.Model
    path: Path
    metadata: dict

    def predict(self, reviews: list[str]) -> np.ndarray:
        """The in-memory model on raw strings, for comparing with the SavedModel."""
        features = self.vectorizer(tf.constant(reviews))
        return keras.ops.convert_to_numpy(self.classifier(features, training=False))[:, 0]


def train(argv: list[str] | None = None) -> TrainedSentiment:
    parser = base_parser(__doc__.splitlines()[0], batch_size=512)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs on all training reviews (default: the best epoch on the validation run)",
    )
    parser.add_argument(
        "--search-epochs",
        type=int,
        default=20,
        help="epochs of the validation run that chooses --epochs",
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

    @tf.function
    def serve(reviews: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = classifier(vectorizer(reviews), training=False)
        return {OUTPUT_NAME: tf.squeeze(probabilities, axis=-1)}

    # Written beside its final place, then renamed into it: a running service polling
    # MODEL_DIR never sees a half-written version.
    with export.publishing(path) as staging:
        export.export_saved_model(
            staging,
            tracked=[vectorizer, classifier],
            serve=serve,
            input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)],
        )
        metadata = {
            "model": "sentiment",
            "version": int(path.name),
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
            "validation_history": {
                k: [round(float(v), 5) for v in vs] for k, vs in history.items()
            },
            "signature": {
                "inputs": {INPUT_NAME: {"dtype": "string", "shape": [None]}},
                "outputs": {OUTPUT_NAME: {"dtype": "float32", "shape": [None]}},
            },
        }
        export.write_metadata(staging, metadata)
        export.plot_history(
            history, staging / "training_curves.png", "IMDB sentiment (validation run)"
        )
    print(f"sentiment: test accuracy {test_accuracy:.4f} (loss {test_loss:.4f}) -> {path}")
    return TrainedSentiment(vectorizer, classifier, path, metadata)


def main(argv: list[str] | None = None) -> None:
    train(argv)


if __name__ == "__main__":
    main()
