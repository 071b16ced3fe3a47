"""training.data's download path, for real, against a local HTTP server.

Without a data folder the data sets are the official downloads, fetched by
``keras.utils.get_file`` into Keras' cache and checked against their SHA-256. Here the test
builds a small ``mnist.npz`` and a small ``aclImdb_v1.tar.gz`` of the official layouts, serves
them from ``http.server`` on 127.0.0.1, points ``training.data``'s two downloads at them (URL
and hash: the only things swapped) and ``KERAS_HOME`` at a temporary folder, and loads.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from training import data

REVIEWS = {
    "train/pos/0_9.txt": "A wonderful film.",
    "train/neg/1_2.txt": "A dull film.<br />Dull.",
    "test/pos/2_8.txt": "Superb acting, a moving story.",
    "test/neg/3_1.txt": "Two hours of my life I will never get back.",
}


class Files:
    """A local HTTP server for a folder, counting the requests for each path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        files = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                files.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=root))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def small_mnist(path: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "y_train": np.arange(6, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "y_test": np.array([7, 2, 1], dtype=np.uint8),
    }
    np.savez(path, **arrays)
    return arrays


def small_imdb(path: Path) -> None:
    """The official archive's layout: aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, plus
    files the loader must pass over (the unlabelled reviews, the vocabulary)."""
    extra = {"train/unsup/4_0.txt": "Unlabelled.", "imdb.vocab": "film\n"}
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {**REVIEWS, **extra}.items():
            blob = text.encode()
            member = tarfile.TarInfo(f"aclImdb/{name}")
            member.size = len(blob)
            tar.addfile(member, io.BytesIO(blob))


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Files, dict]]:
    """The two small archives served locally, training.data's downloads pointed at them,
    Keras' cache in a temporary folder and no DATA_DIR."""
    root = tmp_path / "served"
    root.mkdir()
    mnist = small_mnist(root / "mnist.npz")
    small_imdb(root / "aclImdb_v1.tar.gz")
    files = Files(root)
    monkeypatch.setattr(
        data,
        "MNIST",
        data.Download("mnist.npz", files.url("mnist.npz"), sha256(root / "mnist.npz")),
    )
    monkeypatch.setattr(
        data,
        "IMDB",
        data.Download(
            "aclImdb_v1.tar.gz",
            files.url("aclImdb_v1.tar.gz"),
            sha256(root / "aclImdb_v1.tar.gz"),
        ),
    )
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("DATA_DIR", raising=False)
    data.load_mnist.cache_clear()
    data.load_imdb.cache_clear()
    yield files, mnist
    files.close()
    data.load_mnist.cache_clear()
    data.load_imdb.cache_clear()


def test_mnist_is_downloaded_into_keras_cache_once(served, tmp_path: Path) -> None:
    files, expected = served
    assert data.mnist_local_path() is None  # nothing on disk yet
    (x_train, y_train), (x_test, y_test) = data.load_mnist()
    assert files.requests == ["/mnist.npz"]
    for name, array in [("x_train", x_train), ("y_train", y_train), ("x_test", x_test)]:
        np.testing.assert_array_equal(array, expected[name])
    np.testing.assert_array_equal(y_test, [7, 2, 1])
    cached = tmp_path / "keras" / "datasets" / "mnist.npz"
    assert cached.is_file()
    assert data.mnist_local_path() == cached  # what the tests and the benchmark look for

    data.load_mnist.cache_clear()
    data.load_mnist()
    assert files.requests == ["/mnist.npz"], "read from the cache the second time"


def test_imdb_is_downloaded_and_read_from_the_archive(served, tmp_path: Path) -> None:
    files, _ = served
    (train_texts, train_labels), (test_texts, test_labels) = data.load_imdb()
    assert files.requests == ["/aclImdb_v1.tar.gz"]
    assert train_texts == ["A dull film.<br />Dull.", "A wonderful film."]  # by (label, id)
    assert train_labels.tolist() == [0, 1]
    assert test_texts == [
        "Two hours of my life I will never get back.",
        REVIEWS["test/pos/2_8.txt"],
    ]
    assert test_labels.tolist() == [0, 1]
    assert data.imdb_local_path() == tmp_path / "keras" / "datasets" / "aclImdb_v1.tar.gz"


def test_a_download_with_the_wrong_hash_is_refused(served, monkeypatch: pytest.MonkeyPatch) -> None:
    files, _ = served
    wrong = data.Download("mnist.npz", files.url("mnist.npz"), "0" * 64)
    monkeypatch.setattr(data, "MNIST", wrong)
    with pytest.raises(ValueError, match=r"[Ii]ncomplete or corrupted"):
        data.load_mnist()


def test_a_data_folder_is_read_in_place_without_a_download(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files, _ = served
    folder = tmp_path / "copies"
    folder.mkdir()
    copy = small_mnist(folder / "mnist.npz")
    small_imdb(folder / "aclImdb.tar.gz")
    monkeypatch.setenv("DATA_DIR", str(folder))
    (x_train, _), _ = data.load_mnist()
    np.testing.assert_array_equal(x_train, copy["x_train"])
    assert len(data.load_imdb()[0][0]) == 2
    assert files.requests == []
    assert data.mnist_local_path() == folder / "mnist.npz"
    assert not (tmp_path / "keras" / "datasets" / "mnist.npz").exists()  # never copied
