"""Shared fixtures: the committed models, an in-process client, and the data sets (or a skip).

In CI (``CI=true``) no test may be skipped for something missing: ``SkipsFailInCI``, registered
below, reports such a skip as a failure (``tests/support/ci.py``).
"""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.main import create_app
from tests.support.ci import SkipsFailInCI, needs
from tests.support.hangs import TeardownGuard
from tests.support.server import default_settings
from training.data import default_data_dir, imdb_local_path, mnist_local_path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"

for _name, _value in default_settings().items():  # so that a .env does not reach the tests
    os.environ.setdefault(_name, _value)


def _online(host: str) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=2):
            return True
    except OSError:
        return False


def _data_or_skip(local: Path | None, host: str, what: str) -> None:
    """Go on if the data set is on this disk (in DATA_DIR or Keras' cache) or can be
    downloaded (never with TESTS_OFFLINE=1, which ``make test-fast`` sets); else skip, or in
    CI fail, saying where to put it."""
    if local is not None:
        return
    where = f"not in DATA_DIR={default_data_dir()} nor" if default_data_dir() else "not in"
    missing = f"{what} is {where} Keras' cache"
    fix = "set DATA_DIR to a folder of local copies"
    if os.environ.get("TESTS_OFFLINE"):
        needs(f"{missing} and TESTS_OFFLINE is set", fix)
    if not _online(host):
        needs(f"{missing} and {host} is unreachable", fix)


@pytest.fixture(scope="session")
def mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST from DATA_DIR or Keras' cache, else downloaded, else skipped (in CI: fails)."""
    _data_or_skip(mnist_local_path(), "storage.googleapis.com", "mnist.npz")
    from training.data import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def imdb() -> tuple[tuple[list[str], np.ndarray], tuple[list[str], np.ndarray]]:
    """IMDB reviews from DATA_DIR or Keras' cache, else downloaded, else skipped (CI: fails)."""
    _data_or_skip(imdb_local_path(), "ai.stanford.edu", "aclImdb.tar.gz")
    from training.data import load_imdb

    return load_imdb()


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The app on the committed models, in process, with its lifespan run."""
    with TestClient(create_app(Settings(model_dir=MODELS))) as test_client:
        yield test_client


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def pytest_configure(config: pytest.Config) -> None:
    # Plugins rather than this file's own hooks: those do not see a skip raised while pytest
    # imports a folder's conftest.py (as tests/browser's would, were playwright missing).
    config.pluginmanager.register(SkipsFailInCI(), "skips-fail-in-ci")
    config.pluginmanager.register(TeardownGuard(), "teardown-guard")
