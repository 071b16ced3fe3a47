"""Make the example images that README.md and docs/api.md send: ``python examples/make_examples.py``.

Drawn with the hand-written stroke shapes of ``tests/support/drawn_digits.py``, as people make
digits: ``seven.png`` light on dark at 28x28, as MNIST's are; ``two.png`` a black-on-white
drawing on a 200x200 pad, which the service inverts and frames as MNIST's digits. The digits
model reads both right (``tests/e2e/test_doc_examples.py`` sends them as the docs do).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a script from anywhere

from tests.support.drawn_digits import draw, png  # noqa: E402


def images() -> dict[str, np.ndarray]:
    """Each example's file name and pixels (8-bit greyscale)."""
    return {
        "seven.png": draw(7, (28, 28), box=(0.25, 0.18, 0.75, 0.82), pen=2.2, ink=255, paper=0),
        "two.png": draw(2, (200, 200), pen=14),
    }


def main() -> None:
    for name, pixels in images().items():
        (HERE / name).write_bytes(png(pixels))
        print(f"{HERE / name}: {pixels.shape[1]}x{pixels.shape[0]}")


if __name__ == "__main__":
    main()
