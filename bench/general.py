"""A general model for ``make bench``: a SavedModel of the shape of Triton's ``simple`` example.

Two int32 inputs ``INPUT0`` and ``INPUT1`` of ``[-1, 16]`` and two outputs, their sum
``OUTPUT0`` and difference ``OUTPUT1``: what a Triton or TF Serving user brings first, and a
model whose call costs next to nothing, so that the figures show what the service's path
costs (codec, batching, routing) for a model of several inputs and outputs.

:func:`build` writes it as ``<model_dir>/simple/1`` in a child process (``python -m
bench.general <model_dir>``), so that the benchmark's own process never loads TensorFlow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NAME = "simple"
ROOT = Path(__file__).resolve().parent.parent


def build(model_dir: Path) -> Path:
    """Write the model into ``model_dir/simple/1``; returns ``model_dir``."""
    subprocess.run(
        [sys.executable, "-m", "bench.general", str(model_dir)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return model_dir


def _save(model_dir: Path) -> None:
    # The same model the tests serve to tritonclient (tests/e2e/test_general_clients.py).
    from tests.support.savedmodels import triton_simple

    triton_simple(model_dir / NAME / "1")


if __name__ == "__main__":
    _save(Path(sys.argv[1]))
