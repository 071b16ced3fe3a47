"""Train the MNIST digit CNN and export it as a SavedModel.

Two recipes (``--recipe``); scaling lives inside the exported graph of both, so the SavedModel
takes raw 0-255 pixels and the service and its clients send images as they are:

* ``v1`` (the default, the course's): Conv2D(32) -> MaxPool -> Conv2D(64) -> MaxPool ->
  Flatten -> Dense(64) -> Dropout -> Dense(10), ``padding="same"``, on MNIST as it is.
* ``v2``: a third Conv2D(128) -> MaxPool block and Dense(128), trained on MNIST digits
  augmented as people draw and photograph digits (:mod:`training.augment`), with a cosine
  learning-rate decay. Why this one: docs/training.md.

    python -m training.digits --help
    python -m training.digits --recipe v2
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training import export
from training.augment import augment
from training.cli import base_parser
from training.data import load_mnist

VALIDATION_SIZE = 5_000
V2_LEARNING_RATE = 2e-3
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def build_model(dropout: float = 0.25) -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="mnist_digits",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def build_model_v2(
    dropout: float = 0.3,
    learning_rate: keras.optimizers.schedules.LearningRateSchedule | float = 2e-3,
) -> keras.Model:
    """v2: one more convolution block, a wider dense layer (less than twice v1's arithmetic)."""
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            layers.Rescaling(1.0 / 255),
            layers.Reshape((28, 28, 1)),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(128, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(dropout),
            layers.Dense(10, activation="softmax"),
        ],
        name="mnist_digits_v2",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def augmented_batches(
    images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int
) -> tf.data.Dataset:
    """Endless shuffled batches, each augmented with its own seed (the same run after run)."""
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    data = data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True).repeat()
    data = data.batch(batch_size, drop_remainder=True).enumerate()

    def augmented(
        step: tf.Tensor, batch: tuple[tf.Tensor, tf.Tensor]
    ) -> tuple[tf.Tensor, tf.Tensor]:
        pixels, digits = batch
        return augment(pixels, tf.stack([tf.constant(seed, tf.int64), step])), digits

    return data.map(augmented).prefetch(2)


@dataclass
class TrainedDigits:
    """What a run leaves behind: the in-memory model, where it was exported, its metrics."""

    model: keras.Model
    path: Path
    metadata: dict

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The in-memory model on raw 0-255 pixels, for comparing with the SavedModel."""
        return keras.ops.convert_to_numpy(self.model(images.astype(np.float32), training=False))


def train(argv: list[str] | None = None) -> TrainedDigits:
    parser = base_parser(__doc__.splitlines()[0], batch_size=128)
    parser.add_argument(
        "--recipe", choices=("v1", "v2"), default="v1", help="v1: the course's; v2: augmented"
    )
    parser.add_argument("--epochs", type=int, default=None, help="(v1: 6, v2: 8)")
    parser.add_argument("--dropout", type=float, default=None, help="(v1: 0.25, v2: 0.3)")
    args = parser.parse_args(argv)
    v2 = args.recipe == "v2"
    args.epochs = args.epochs or (8 if v2 else 6)
    args.dropout = args.dropout if args.dropout is not None else (0.3 if v2 else 0.25)
    export.seed_everything(args.seed)
    started = time.perf_counter()

    (x_train, y_train), (x_test, y_test) = load_mnist(args.data_dir and str(args.data_dir))
    order = np.random.default_rng(args.seed).permutation(len(x_train))[: args.limit]
    x_train, y_train = x_train[order].astype(np.float32), y_train[order]
    x_test, y_test = x_test[: args.limit].astype(np.float32), y_test[: args.limit]
    n_val = min(VALIDATION_SIZE, len(x_train) // 10)

    if v2:
        steps = (len(x_train) - n_val) // args.batch_size
        model = build_model_v2(
            args.dropout,
            keras.optimizers.schedules.CosineDecay(V2_LEARNING_RATE, args.epochs * steps),
        )
        history = model.fit(
            augmented_batches(x_train[n_val:], y_train[n_val:], args.batch_size, args.seed),
            steps_per_epoch=steps,
            validation_data=(x_train[:n_val], y_train[:n_val]),
            epochs=args.epochs,
            verbose=args.verbose,
        ).history
    else:
        model = build_model(args.dropout)
        history = model.fit(
            x_train[n_val:],
            y_train[n_val:],
            validation_data=(x_train[:n_val], y_train[:n_val]),
            epochs=args.epochs,
            batch_size=args.batch_size,
            verbose=args.verbose,
        ).history
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=1024, verbose=0)
    predicted = np.argmax(model.predict(x_test, batch_size=1024, verbose=0), axis=-1)
    seconds = time.perf_counter() - started

    path = export.version_dir(args.output_dir, "digits", args.version)

    @tf.function
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(images, training=False)}

    # Written beside its final place, then renamed into it: a running service polling
    # MODEL_DIR never sees a half-written version.
    with export.publishing(path) as staging:
        export.export_saved_model(
            staging,
            tracked=[model],
            serve=serve,
            input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name=INPUT_NAME)],
        )
        metadata = {
            "model": "digits",
            "version": int(path.name),
            "recipe": args.recipe,
            "dataset": "MNIST" + (", augmented (training.augment)" if v2 else ""),
            "train_size": len(x_train) - n_val,
            "validation_size": n_val,
            "test_size": len(x_test),
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "dropout": args.dropout,
            **({"learning_rate": f"{V2_LEARNING_RATE} cosine decay to 0"} if v2 else {}),
            "seed": args.seed,
            "test_accuracy": round(float(test_accuracy), 5),
            "test_loss": round(float(test_loss), 5),
            "training_seconds": round(seconds, 1),
            "history": {k: [round(float(v), 5) for v in vs] for k, vs in history.items()},
            "signature": {
                "inputs": {
                    INPUT_NAME: {"dtype": "float32", "shape": [None, 28, 28], "range": "0-255"}
                },
                "outputs": {OUTPUT_NAME: {"dtype": "float32", "shape": [None, 10]}},
            },
        }
        export.write_metadata(staging, metadata)
        export.plot_history(
            history, staging / "training_curves.png", "MNIST digits" + (" v2" if v2 else "")
        )
        export.plot_confusion_matrix(y_test, predicted, staging / "confusion_matrix.png")
    print(
        f"digits {args.recipe}: test accuracy {test_accuracy:.4f} (loss {test_loss:.4f}) -> {path}"
    )
    return TrainedDigits(model, path, metadata)


def main(argv: list[str] | None = None) -> None:
    train(argv)


if __name__ == "__main__":
    main()
