"""Load MNIST and IMDB: the official downloads through Keras' cache, or local copies.

By default the official files are downloaded once with ``keras.utils.get_file``, checked
against their published SHA-256 and kept in Keras' cache (``~/.keras/datasets``, or
``$KERAS_HOME/datasets``); later runs read them from there. A data folder (``--data-dir``, else
``$DATA_DIR``) holding local copies is read in place instead, never copied: ``mnist.npz`` in
Keras' layout, ``aclImdb.tar.gz`` or ``aclImdb_v1.tar.gz`` or an extracted ``aclImdb/``. A file
the folder lacks is downloaded as if there were no folder.
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

_IMDB_MEMBER = re.compile(r"(?:^|/)aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")

ImdbSplit = tuple[list[str], np.ndarray]
MnistSplit = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Download:
    """An official download: its file name in Keras' cache, where it comes from, its SHA-256."""

    file_name: str
    url: str
    sha256: str


# The file and hash keras.datasets.mnist.load_data() downloads; the archive Stanford publishes.
MNIST = Download(
    "mnist.npz",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
    "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
)
IMDB = Download(
    "aclImdb_v1.tar.gz",
    "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
)
CACHE_SUBDIR = "datasets"  # Keras' own, where keras.datasets keep their files


def default_data_dir() -> Path | None:
    """``$DATA_DIR`` if set: a folder of local copies. None: download."""
    value = os.environ.get("DATA_DIR")
    return Path(value) if value else None


def resolve_data_dir(data_dir: str | os.PathLike[str] | None) -> Path | None:
    return Path(data_dir) if data_dir else default_data_dir()


def keras_home() -> Path:
    """Keras' folder, whose ``datasets/`` holds its downloads: ``$KERAS_HOME``, else
    ``~/.keras`` (as Keras decides it, but read at each call, without importing Keras)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def download(source: Download) -> Path:
    """The official file from Keras' cache, downloaded first if it is not there or its hash is
    wrong; a download whose SHA-256 is not the published one raises ``ValueError``."""
    import keras

    home = keras_home()
    home.mkdir(parents=True, exist_ok=True)  # else get_file falls back to /tmp/.keras
    return Path(
        keras.utils.get_file(
            source.file_name,
            source.url,
            file_hash=source.sha256,
            cache_dir=os.fspath(home),
            cache_subdir=CACHE_SUBDIR,
        )
    )


def _cached(source: Download) -> Path | None:
    path = keras_home() / CACHE_SUBDIR / source.file_name
    return path if path.is_file() else None


# What a data folder may hold, by data set: the first that exists is read.
MNIST_COPIES = ("mnist.npz",)
IMDB_COPIES = ("aclImdb", "aclImdb.tar.gz", "aclImdb_v1.tar.gz")


def _copy_in(data_dir: str | os.PathLike[str] | None, names: tuple[str, ...]) -> Path | None:
    root = resolve_data_dir(data_dir)
    if root is None:
        return None
    return next((root / name for name in names if (root / name).exists()), None)


def mnist_local_path(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """MNIST on this disk, no download needed: the data folder's copy, else Keras' cache's."""
    return _copy_in(data_dir, MNIST_COPIES) or _cached(MNIST)


def imdb_local_path(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """IMDB on this disk, no download needed: the data folder's copy, else Keras' cache's."""
    return _copy_in(data_dir, IMDB_COPIES) or _cached(IMDB)


@lru_cache(maxsize=4)
def load_mnist(data_dir: str | None = None) -> tuple[MnistSplit, MnistSplit]:
    """((x_train, y_train), (x_test, y_test)) as uint8 arrays, x of shape (n, 28, 28)."""
    path = _copy_in(data_dir, MNIST_COPIES) or download(MNIST)
    with np.load(path, allow_pickle=False) as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


@lru_cache(maxsize=4)
def load_imdb(data_dir: str | None = None) -> tuple[ImdbSplit, ImdbSplit]:
    """((train_texts, train_labels), (test_texts, test_labels)); label 1 = positive.

    Reviews come sorted by (label, id) so that every machine sees the same order; callers
    shuffle with their own seed.
    """
    path = _copy_in(data_dir, IMDB_COPIES) or download(IMDB)
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
