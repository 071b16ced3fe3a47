"""Versioned SavedModel export, ``metadata.json`` and the pictures saved beside each model."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf


def next_version(model_root: Path) -> int:
    """The next free TF Serving version number under ``models/<name>/`` (ASCII digits only, as
    the service reads them)."""
    versions = [
        int(p.name)
        for p in model_root.glob("*")
        if p.is_dir() and p.name.isascii() and p.name.isdigit()
    ]
    return max(versions, default=0) + 1


@contextmanager
def publishing(path: Path) -> Iterator[Path]:
    """A hidden staging folder beside ``path``, renamed to ``path`` once the block succeeds.

    The rename is atomic, so a service polling the models folder sees the whole version or
    nothing; the service ignores hidden folders. On failure the staging folder is removed.
    """
    staging = path.parent / f".{path.name}.partial-{os.getpid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield staging
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def version_dir(output_dir: Path, name: str, version: int | None) -> Path:
    root = output_dir / name
    path = root / str(version if version is not None else next_version(root))
    if path.exists():
        raise SystemExit(f"{path} already exists; pick another --version")
    return path


def export_saved_model(
    path: Path,
    tracked: list[keras.Layer],
    serve: Callable[..., Mapping[str, tf.Tensor]],
    input_signature: list[tf.TensorSpec],
) -> None:
    """Write a SavedModel whose ``serving_default`` signature is ``serve``.

    ``serve`` returns a dict, so the signature's output names are its keys; the input name is
    the ``TensorSpec``'s name.
    """
    archive = keras.export.ExportArchive()
    for layer in tracked:
        archive.track(layer)
    archive.add_endpoint("serving_default", serve, input_signature=input_signature)
    archive.write_out(str(path), verbose=False)


def command_line() -> str:
    module = Path(sys.argv[0]).stem
    return shlex.join(["python", "-m", f"training.{module}", *sys.argv[1:]])


def write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    full = {
        **metadata,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "command": command_line(),
    }
    (path / "metadata.json").write_text(json.dumps(full, indent=2) + "\n")


def plot_history(history: Mapping[str, list[float]], path: Path, title: str) -> None:
    """Loss and accuracy, train vs validation, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        epochs = range(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], "o-", label="training")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{title}: {metric}")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion_matrix(labels: np.ndarray, predicted: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = tf.math.confusion_matrix(labels, predicted, num_classes=10).numpy()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    image = ax.imshow(np.log1p(matrix), cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax.text(col, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title("MNIST test set confusion matrix")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def seed_everything(seed: int) -> None:
    """Same seed, same metrics on CPU: seeds Python, NumPy and TF, and makes ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
