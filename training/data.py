"""Load MNIST and IMDB from a local folder, or download the official files.

The data folder comes from ``--data-dir``, else ``$DATA_DIR``, else ``../shared/data`` beside
the project. Files found there are read in place (never copied); when they are missing the
official downloads are fetched through Keras' ``get_file`` cache.
"""

from __future__ import annotations

import os
import re
import tarfile
from functools import lru_cache
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
_IMDB_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")

ImdbSplit = tuple[list[str], np.ndarray]
MnistSplit = tuple[np.ndarray, np.ndarray]


def default_data_dir() -> Path:
    """``$DATA_DIR`` if set, else the workplace's ``../shared/data``."""
    return Path(os.environ.get("DATA_DIR") or SHARED_DATA_DIR)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    return Path(data_dir) if data_dir else default_data_dir()


def mnist_local_path(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    path = resolve_data_dir(data_dir) / "mnist.npz"
    return path if path.is_file() else None


def imdb_local_path(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    root = resolve_data_dir(data_dir)
    for candidate in (root / "aclImdb", root / "aclImdb.tar.gz", root / "aclImdb_v1.tar.gz"):
        if candidate.exists():
            return candidate
    return None


@lru_cache(maxsize=4)
def load_mnist(data_dir: str | None = None) -> tuple[MnistSplit, MnistSplit]:
    """((x_train, y_train), (x_test, y_test)) as uint8 arrays, x of shape (n, 28, 28)."""
    path = mnist_local_path(data_dir)
    if path is None:
        import keras

        return keras.datasets.mnist.load_data()
    with np.load(path) as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


@lru_cache(maxsize=4)
def load_imdb(data_dir: str | None = None) -> tuple[ImdbSplit, ImdbSplit]:
    """((train_texts, train_labels), (test_texts, test_labels)); label 1 = positive.

    Reviews come sorted by (label, id) so that every machine sees the same order; callers
    shuffle with their own seed.
    """
    path = imdb_local_path(data_dir)
    if path is None:
        import keras

        archive = keras.utils.get_file("aclImdb_v1.tar.gz", IMDB_URL)
        path = Path(archive)
    records = _read_imdb_dir(path) if path.is_dir() else _read_imdb_tar(path)
    return _imdb_split(records, "train"), _imdb_split(records, "test")


def _read_imdb_tar(path: Path) -> list[tuple[str, str, int, str]]:
    records = []
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            match = _IMDB_MEMBER.search(member.name)
            if not match or not member.isfile():
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            text = handle.read().decode("utf-8")
            records.append((match[1], match[2], int(match[3]), text))
    return records


def _read_imdb_dir(path: Path) -> list[tuple[str, str, int, str]]:
    records = []
    for file in path.glob("*/*/*.txt"):
        match = _IMDB_MEMBER.search(file.as_posix())
        if match:
            records.append((match[1], match[2], int(match[3]), file.read_text("utf-8")))
    return records


def _imdb_split(records: list[tuple[str, str, int, str]], split: str) -> ImdbSplit:
    chosen = sorted(r for r in records if r[0] == split)
    texts = [r[3] for r in chosen]
    labels = np.array([1 if r[1] == "pos" else 0 for r in chosen], dtype=np.int64)
    return texts, labels
